/* Configuration: the local YAML file (Patroni-compatible keys, `raft:` in
 * place of `etcd:`) read with libyaml into one typed struct that is passed
 * explicitly to whoever needs it. The dynamic, cluster-wide part
 * (`bootstrap.dcs`, later edited with PATCH /config) has its own struct and a
 * JSON form, because it lives in the replicated state.
 *
 * Every error names the file, line, column and full key path, e.g.
 *   pgwarden.yml:12:11: postgresql.listen: expected host:port, got "5432"
 * Unknown keys are warnings, never errors. */
#ifndef PGW_CFG_H
#define PGW_CFG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include <jansson.h>

#include "common/log.h"
#include "common/status.h"

#define CFG_ERR_MAX 1024

struct cfg_error {
    char msg[CFG_ERR_MAX]; /* "file:line:col: key.path: what was wrong" */
    int line, column;      /* 1-based; 0 when not tied to a position */
};

/* Warnings (unknown keys, deprecated names) are collected, not fatal. */
struct cfg_warnings {
    char **items;
    size_t n;
};

struct cfg_kv {
    char *key;
    char *value; /* scalar rendered as text, as PostgreSQL expects it */
};

struct cfg_kvlist {
    struct cfg_kv *items;
    size_t n;
};

struct cfg_strlist {
    char **items;
    size_t n;
};

/* host:port, both always set after parsing (host may be "0.0.0.0"). An IPv6
 * host is stored without brackets; postgresql.listen's host may be "*" or a
 * comma-separated list "h1,h2" (Patroni's form). */
struct cfg_hostport {
    char *host;
    uint16_t port;
};

/* postgresql.authentication.{superuser,replication,rewind} */
struct cfg_pgauth {
    char *username;
    char *password; /* secret: never logged */
    char *sslmode, *sslcert, *sslkey, *sslrootcert, *sslcrl, *sslpassword;
    char *channel_binding, *gssencmode;
};

enum cfg_sync_mode { CFG_SYNC_OFF = 0, CFG_SYNC_ON, CFG_SYNC_QUORUM };

/* A permanent replication slot of the dynamic configuration (`slots:`):
 * created and kept on the primary (physical ones on replicas too). */
struct cfg_slot {
    char *name;         /* [a-z0-9_]{1,63} */
    char *type;         /* "physical" or "logical" */
    char *database;     /* logical only (required there) */
    char *plugin;       /* logical only (required there) */
    char *cluster_type; /* Patroni's any|primary|standby; NULL = any */
};

struct cfg_slots {
    struct cfg_slot *items;
    size_t n;
};

/* One entry of `ignore_slots:`: a slot matching every field given (NULL =
 * any) is never dropped by pgwarden. */
struct cfg_slot_matcher {
    char *name, *type, *database, *plugin;
};

struct cfg_slot_matchers {
    struct cfg_slot_matcher *items;
    size_t n;
};

/* A role of bootstrap.users (Patroni's), created after the cluster's own
 * bootstrap. `attrs` are PostgreSQL role attributes, validated at load and
 * normalised (upper case, single spaces): "CREATEDB", "CONNECTION LIMIT 5",
 * "VALID UNTIL '2030-01-01'". */
struct cfg_user {
    char *name;
    char *password; /* secret: never logged; NULL = none (an empty one too, as Patroni) */
    struct cfg_strlist attrs;
};

struct cfg_users {
    struct cfg_user *items;
    size_t n;
};

/* A custom replica-creation method (postgresql.<name>, listed in
 * postgresql.create_replica_methods) or bootstrap method (bootstrap.<name>,
 * named by bootstrap.method), with Patroni's keys. */
struct cfg_method {
    char *name;
    char *command;        /* split like a shell splits words (quotes, backslashes); no shell runs */
    bool keep_data;       /* replica: do not empty the data directory before running */
    bool no_params;       /* do not append --scope, --datadir, --role, --connstring */
    bool no_leader;       /* replica: may run with no running primary (legacy no_master) */
    uint32_t timeout_ms;  /* deadline of one run (pgwarden's key `timeout`); default 24 h */
    bool keep_existing_recovery_conf; /* bootstrap: keep the restored recovery settings */
    struct cfg_kvlist recovery_conf;  /* bootstrap: settings of the recovery after the command */
    struct cfg_kvlist params;         /* any other key: passed as --key=value */
};

struct cfg_methods {
    struct cfg_method *items;
    size_t n;
};

/* The dynamic configuration (bootstrap.dcs / the cluster-wide config held in
 * Raft). Durations are milliseconds; YAML and JSON give them in seconds and
 * accept decimals (loop_wait: 0.5). */
struct cfg_dcs {
    uint32_t ttl_ms;                   /* primary lease length; default 3000 */
    uint32_t loop_wait_ms;             /* HA tick and lease renewal period; default 500 */
    uint32_t retry_timeout_ms;         /* deadline of one Raft/PG operation; default 1000 */
    uint64_t maximum_lag_on_failover;  /* bytes; default 1048576 */
    int64_t maximum_lag_on_syncnode;   /* bytes; -1 = off (default) */
    uint32_t primary_start_timeout_ms; /* default 300000; legacy master_start_timeout */
    uint32_t primary_stop_timeout_ms;  /* 0 = none (default) */
    enum cfg_sync_mode synchronous_mode;
    bool synchronous_mode_strict;
    uint32_t synchronous_node_count; /* default 1 */
    uint32_t member_slots_ttl_ms;    /* default 1800000 */
    bool check_timeline;
    /* dcs.postgresql */
    bool use_pg_rewind; /* default true in pgwarden */
    /* Patroni reads these from the dynamic configuration too (a node's own
     * postgresql.* wins when given) */
    bool remove_data_directory_on_rewind_failure;
    bool remove_data_directory_on_diverged_timelines;
    bool use_slots;     /* default true */
    struct cfg_kvlist pg_parameters; /* cluster-wide parameters; win over local ones */
    struct cfg_strlist pg_hba;       /* cluster-wide pg_hba lines (optional) */
    struct cfg_slots slots;                /* permanent slots */
    struct cfg_slot_matchers ignore_slots; /* slots never dropped */
    /* standby_cluster: the whole cluster replicates from a remote primary;
     * the lease holder is a standby leader. On when host or restore_command
     * is set (cfg_standby_enabled). */
    struct cfg_standby {
        char *host;
        uint32_t port; /* default 5432 */
        char *primary_slot_name;
        char *restore_command;
        char *archive_cleanup_command;
        char *recovery_min_apply_delay; /* as PostgreSQL takes it: "5min", "300000" */
    } standby;
};

static inline bool cfg_standby_enabled(const struct cfg_dcs *d)
{
    return (d->standby.host != NULL && d->standby.host[0] != '\0') ||
           (d->standby.restore_command != NULL && d->standby.restore_command[0] != '\0');
}

struct cfg_restapi {
    struct cfg_hostport listen;          /* default 0.0.0.0:8008 */
    struct cfg_hostport connect_address; /* default: listen host; raft.self_addr's if wildcard */
    char *auth_username, *auth_password; /* restapi.authentication */
    char *certfile, *keyfile, *cafile;
    char *verify_client; /* none|optional|required */
    struct cfg_strlist allowlist;
    uint32_t request_timeout_ms; /* per-request read deadline; default 5000 */
    uint32_t max_connections;    /* default 1024 */
    /* restapi.health_listen: a second, plain-HTTP listener serving only the
     * health checks (for probes that cannot speak TLS); host NULL = none */
    struct cfg_hostport health_listen;
};

struct cfg_raft {
    char *self_addr;                 /* "a.b.c.d:port" (IPv4 only: libraft) */
    struct cfg_strlist partner_addrs; /* the OTHER nodes */
    char *data_dir;                  /* required */
    char *password;                  /* raft.password: transport secret (issue 10) */
    char *certfile, *keyfile, *cafile; /* raft TLS (raft/tls_link.h): all three or none */
};

struct cfg_bootstrap {
    struct cfg_dcs dcs;
    /* bootstrap.initdb: list of "opt" or "opt=value" (data-checksums, encoding=UTF8) */
    struct cfg_strlist initdb;
    struct cfg_strlist pg_hba;
    char *method;          /* "initdb" or the name of a section bootstrap.<method> */
    char *post_bootstrap;  /* alias post_init */
    struct cfg_users users;     /* roles created after post_bootstrap (cfg_users.c) */
    struct cfg_methods methods; /* the custom method's section (n is 0 or 1) */
};

struct cfg_callbacks {
    char *on_start, *on_stop, *on_restart, *on_reload, *on_role_change;
};

struct cfg_postgresql {
    bool present; /* a postgresql section (or PGWARDEN_POSTGRESQL_LISTEN/_DATA_DIR) was given;
                     whether PostgreSQL runs is !cfg.witness (witness: true ignores it) */
    struct cfg_hostport listen;          /* required when present */
    struct cfg_hostport connect_address; /* default: listen, or raft.self_addr's host if wildcard */
    char *data_dir;                      /* required when present */
    char *bin_dir;                       /* default /usr/lib/postgresql/15/bin */
    char *config_dir;                    /* default data_dir */
    char *pgpass;                        /* default <raft.data_dir>/pgpass */
    struct cfg_pgauth superuser, replication, rewind;
    struct cfg_kvlist parameters;
    struct cfg_strlist pg_hba;
    struct cfg_kvlist recovery_conf;
    struct cfg_strlist create_replica_methods; /* default [basebackup] */
    struct cfg_methods replica_methods;        /* sections of the custom ones, in list order */
    struct cfg_strlist basebackup;             /* long options "max-rate=100M" / "checkpoint=fast" */
    bool use_pg_rewind;                        /* default true */
    bool use_pg_rewind_set;                    /* given locally (overrides dcs) */
    /* pgwarden's own connections to the local instance go through the unix
     * socket (the first absolute directory of unix_socket_directories; none
     * set: libpq's default), as Patroni's use_unix_socket */
    bool use_unix_socket;
    bool use_unix_socket_repl;                 /* only false is accepted (cfg.c) */
    bool remove_data_directory_on_rewind_failure, remove_on_rewind_failure_set;
    bool remove_data_directory_on_diverged_timelines, remove_on_diverged_set;
    uint32_t pg_ctl_timeout_ms; /* default 60000 */
    struct cfg_callbacks callbacks;
    char *pre_promote, *before_stop;
};

struct cfg_tags {
    bool nofailover;
    int failover_priority; /* default 1; <= 0 behaves like nofailover */
    bool noloadbalance;
    bool clonefrom;
    bool nosync;
    int sync_priority; /* default 1 */
    char *replicatefrom;
    struct cfg_kvlist custom; /* any other tag, value as text */
};

enum cfg_watchdog_mode { CFG_WD_OFF = 0, CFG_WD_AUTOMATIC, CFG_WD_REQUIRED };

struct cfg_watchdog {
    enum cfg_watchdog_mode mode; /* default off in pgwarden until issue 9 lands */
    char *device;                /* default /dev/watchdog */
    int safety_margin_s;         /* default 5; -1 = ttl/2 */
};

/* backup: continuous WAL archiving and scheduled base backups with
 * pgBackRest (ha/backup.c runs them, pg/pgbackrest.c builds the commands). */
struct cfg_backup {
    char *method;                /* NULL (off) or "pgbackrest" */
    char *command;               /* the pgbackrest program; default /usr/bin/pgbackrest */
    char *stanza;                /* default: scope */
    struct cfg_strlist options;  /* "repo1-path=/x": lines of the generated pgbackrest.conf */
    uint32_t full_interval_ms;   /* 0: no scheduled full backup */
    uint32_t diff_interval_ms;   /* 0: no scheduled differential backup */
    uint32_t timeout_ms;         /* deadline of one backup */
};

static inline bool cfg_backup_enabled(const struct cfg_backup *b)
{
    return b->method != NULL;
}

struct cfg_ctl {
    char *auth_username, *auth_password; /* falls back to restapi.authentication */
    char *cacert, *certfile, *keyfile;
    bool insecure;
};

struct cfg {
    char *path;  /* the file this was read from */
    char *scope; /* required */
    char *name;  /* required */
    bool witness; /* explicit witness: true, or no postgresql section */
    struct cfg_restapi restapi;
    struct cfg_ctl ctl;
    struct cfg_raft raft;
    struct cfg_bootstrap bootstrap;
    struct cfg_postgresql postgresql;
    struct cfg_tags tags;
    struct cfg_watchdog watchdog;
    struct cfg_backup backup;
    struct log_settings log; /* log.{level, format, dir}; dir points into owned storage */
    const char *file_secret_key; /* first secret key written in the file (not the environment),
                                    e.g. "raft.password"; NULL when the file holds none */
    char *log_dir_storage;
};

/* Read and validate `path`, then apply PGWARDEN_* environment overrides.
 * On failure returns a negative status, fills err (one clear message) and
 * leaves *out zeroed. Warnings are appended to *warn (may be NULL). */
int cfg_load(const char *path, struct cfg *out, struct cfg_error *err,
             struct cfg_warnings *warn) PGW_MUST_CHECK;

/* Read a configuration-sized file (a regular file of at most 1 MiB) into a
 * NUL-terminated buffer the caller frees (zero it first if it may hold
 * passwords). mode_out (may be NULL) gets st_mode. On failure fills err
 * ("<path>: cannot open: No such file or directory", "not a regular file",
 * "file is larger than 1 MiB") and returns PGW_ENOTFOUND, PGW_EIO or
 * PGW_EINVAL. */
int cfg_read_file(const char *path, char **buf_out, size_t *len_out, mode_t *mode_out,
                  struct cfg_error *err) PGW_MUST_CHECK;

/* Same, from a buffer; `name` is used in messages in place of a file name. */
int cfg_load_buffer(const char *name, const char *text, size_t len, struct cfg *out,
                    struct cfg_error *err, struct cfg_warnings *warn) PGW_MUST_CHECK;

void cfg_free(struct cfg *c);
/* Append a copy of msg (0, or PGW_ENOMEM). */
int cfg_warnings_add(struct cfg_warnings *w, const char *msg) PGW_MUST_CHECK;
void cfg_warnings_free(struct cfg_warnings *w);

/* Describe what differs between two configs (for SIGHUP), one line per key,
 * secrets shown as "(changed)". Calls fn for each difference; returns the count. */
size_t cfg_diff(const struct cfg *a, const struct cfg *b,
                void (*fn)(const char *line, void *ctx), void *ctx);

/* Dynamic configuration <-> JSON (the form kept in the replicated state and
 * served by GET /config). from_json validates every key and names the bad
 * one in err->msg ("ttl: expected a number of seconds >= 1, got \"x\"");
 * unknown keys are an error here (PATCH /config must not silently drop them).
 * Missing keys take their defaults; "pause", "standby_cluster" and
 * "failsafe_mode" are accepted and ignored. from_json and
 * copy overwrite *out / *dst without freeing it (cfg_dcs_free it first if it
 * held a configuration); from_json leaves *out untouched on failure. */
void cfg_dcs_defaults(struct cfg_dcs *d);
int cfg_dcs_from_json(const json_t *j, struct cfg_dcs *out, struct cfg_error *err) PGW_MUST_CHECK;
json_t *cfg_dcs_to_json(const struct cfg_dcs *d);
int cfg_dcs_copy(struct cfg_dcs *dst, const struct cfg_dcs *src) PGW_MUST_CHECK;
void cfg_dcs_free(struct cfg_dcs *d);
/* The timing rule, shared by YAML and PATCH /config validation:
 * loop_wait + 2*retry_timeout <= ttl (Patroni's rule) and the Raft timing
 * derived from it must fit. Returns 0 or PGW_EINVAL with the reason in err. */
int cfg_dcs_check_timing(const struct cfg_dcs *d, struct cfg_error *err) PGW_MUST_CHECK;

/* Print the configuration reference (Markdown) generated from the key table
 * that also drives parsing and defaults; docs/configuration.md is exactly
 * this output (`pgwarden validate --print-reference`). */
void cfg_print_reference(FILE *out);

/* The section of a custom method by name (NULL when none). */
const struct cfg_method *cfg_method_find(const struct cfg_methods *m, const char *name);
/* Split a command line into words the way a POSIX shell would without
 * expanding anything: blanks separate words, '...' and "..." quote, a
 * backslash escapes the next character (inside "..." only before " \ $ `).
 * PGW_EINVAL with the reason in why (unterminated quote, empty command). */
int cfg_split_command(const char *s, struct cfg_strlist *out, char *why, size_t whylen)
    PGW_MUST_CHECK;
void cfg_strlist_free(struct cfg_strlist *l);

/* Parse "a.b.c.d:port" (IPv4 only, port 1..65535). */
int cfg_parse_ipv4_addr(const char *s, char *host_out, size_t host_len, uint16_t *port_out);
/* Parse a size: bytes, or with unit kB/MB/GB/TB (PostgreSQL style, 1024-based). */
int cfg_parse_size(const char *s, uint64_t *out);

#endif
