/* Managed configuration files of the local instance (synchronous: small
 * files written durably: temp file, fsync, rename, fsync of the directory).
 *
 * postgresql.conf layout:
 *   # managed by pgwarden, do not edit
 *   include 'postgresql.base.conf'      (the operator's original file, renamed once)
 *   name = 'value'                      (sorted)
 * Parameters = postgresql.parameters (local) merged with the cluster-wide
 * dcs.pg_parameters (cluster-wide win). The parameters PostgreSQL requires
 * to be equal on all nodes come only from the cluster-wide list (a local
 * value is ignored with a warning), with Patroni's defaults when unset.
 * Forced: listen_addresses and port (postgresql.listen), cluster_name
 * (scope), hot_standby=on. A standby gets primary_conninfo (passfile, never
 * the password), primary_slot_name, recovery_target_timeline='latest' in the
 * same file, and standby.signal; a primary loses standby.signal.
 *
 * Restart detection: pgconf_write() reports which parameters changed
 * against the previous managed file and whether one of them is known to be
 * postmaster-context (a static list, a hint). The authoritative answer is
 * the server's: after a reload, pg_settings.pending_restart (pg_status
 * .pending_restart in pgmon). */
#ifndef PGW_PG_PGCONF_H
#define PGW_PG_PGCONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/cfg.h"
#include "common/status.h"
#include "pg/pgconn.h"

#define PGCONF_ERR_MAX 1024
#define PGCONF_SLOT_MAX 64 /* NAMEDATALEN */

struct pgconf_param {
    char *name;
    char *value; /* unquoted */
};

struct pgconf_params {
    struct pgconf_param *items; /* sorted by name */
    size_t n;
};

void pgconf_params_free(struct pgconf_params *p);
const char *pgconf_params_get(const struct pgconf_params *p, const char *name);

/* What the node should be configured as. */
struct pgconf_role {
    bool standby;
    const char *primary_host;      /* standby: upstream host */
    uint16_t primary_port;
    const char *primary_slot_name; /* standby: NULL = no slot (use_slots off) */
    /* the standby leader of a standby cluster: the upstream is the remote
     * primary, and dcs standby_cluster gives the slot on it, restore_command,
     * archive_cleanup_command and recovery_min_apply_delay */
    bool standby_leader;
};

struct pgconf_input {
    const struct cfg *cfg;       /* scope, name, postgresql.* */
    const struct cfg_dcs *dcs;   /* cluster-wide parameters; may be NULL (defaults) */
    int pg_major;                /* 13..17; 0 = 15 */
    struct pgconf_role role;
    /* Managed synchronous_standby_names for a primary (synchronous mode);
     * NULL = not managed (the configured value, if any, is kept). A standby
     * always gets '' so a promoted node starts from what it is told. */
    const char *sync_standby_names;
};

/* Compute the parameter set (no I/O). Warnings (ignored local values) go to
 * the log (module "pg") and, if warn is not NULL, are counted there. */
int pgconf_build(const struct pgconf_input *in, struct pgconf_params *out, size_t *nwarn,
                 char *errbuf, size_t errlen) PGW_MUST_CHECK;
/* Render a parameter set as the managed postgresql.conf text (malloc'ed). */
char *pgconf_render(const struct pgconf_params *p, const char *include_file);

struct pgconf_write_result {
    bool changed;                /* the file content changed */
    bool base_renamed;           /* this call renamed postgresql.conf to postgresql.base.conf */
    bool restart_hint;           /* a changed parameter is known postmaster-context */
    char changed_names[512];     /* comma-separated changed parameter names (truncated) */
};

/* Write <config_dir>/postgresql.conf (taking over the original once),
 * standby.signal (created / removed in data_dir). A config_dir apart from
 * data_dir first gets the files it lacks from data_dir (pgconf_dir.c). */
int pgconf_write(const struct pgconf_input *in, struct pgconf_write_result *res, char *errbuf,
                 size_t errlen) PGW_MUST_CHECK;

/* Remove from <data_dir>/postgresql.auto.conf the parameters that must be
 * equal on all nodes and, when `recovery`, the recovery settings
 * (restore_command, recovery_target_*, primary_conninfo, ...): there they
 * would override pgwarden's. removed gets their names ("" when none). */
int pgconf_sanitize_auto_conf(const char *data_dir, bool recovery, char *removed,
                              size_t removed_len, char *errbuf, size_t errlen) PGW_MUST_CHECK;

/* pg_hba.conf from postgresql.pg_hba (or, when empty, dcs pg_hba), with
 * bootstrap.pg_hba first when include_bootstrap (a data directory pgwarden
 * has just created). When the configuration gives no lines, a file that
 * pgwarden did not write is the operator's and is left as it is, as Patroni
 * does; otherwise (no file, or one with pgwarden's header, or a bootstrap)
 * pgwarden writes its default: peer locally, scram-sha-256 over TCP. */
int pgconf_write_hba(const struct cfg *cfg, const struct cfg_dcs *dcs, bool include_bootstrap,
                     char *errbuf, size_t errlen) PGW_MUST_CHECK;

/* The pgpass file (0600) with one line per replication / rewind (when a
 * rewind section is configured) / superuser credential that has a password,
 * "*:*:*:user:password" escaped. Path: cfg postgresql.pgpass. */
int pgconf_write_pgpass(const struct cfg *cfg, char *errbuf, size_t errlen) PGW_MUST_CHECK;
/* Escape ':' and '\' with '\' (pgpass field rules). PGW_EINVAL when too small. */
int pgconf_pgpass_escape(const char *in, char *out, size_t outlen) PGW_MUST_CHECK;

/* postgresql.config_dir (the loader sets it to data_dir when not given). */
const char *pgconf_config_dir(const struct cfg *cfg);
/* The --config-file PostgreSQL must be started with, in buf:
 * <config_dir>/postgresql.conf when config_dir is not the data directory
 * (Patroni starts it so); NULL otherwise (PostgreSQL then reads
 * <data_dir>/postgresql.conf by itself). */
const char *pgconf_config_file(const struct cfg *cfg, char *buf, size_t len);

/* Patroni's slot_name_from_member_name: lower-case, '-' and '.' -> '_',
 * other characters outside [a-z0-9_] -> "u%04x" (code point, UTF-8
 * decoded), truncated to 63 bytes. out must hold PGCONF_SLOT_MAX bytes. */
void pgconf_slot_name(const char *member, char *out, size_t outlen);

enum pgconf_user { PGCONF_SUPERUSER = 0, PGCONF_REPLICATION, PGCONF_REWIND };

/* libpq parameters to reach host:port as the given user (password
 * included, for our own libpq connections; ssl* options copied).
 * host NULL = the local instance (postgresql.listen, a wildcard becomes
 * 127.0.0.1). replication: add replication=1 (physical walsender). */
int pgconf_conn_params(const struct cfg *cfg, enum pgconf_user user, const char *host,
                       uint16_t port, const char *dbname, bool replication,
                       struct pgconn_params *out) PGW_MUST_CHECK;

/* The unix socket directory of the local instance for use_unix_socket:
 * the first absolute directory of unix_socket_directories (the node's
 * postgresql.parameters over the cluster-wide ones). 1 with it in buf; 0
 * when unix_socket_directories is not set (libpq's default directory);
 * -1 when it names no absolute directory (TCP then, as Patroni does). */
int pgconf_local_socket_dir(const struct cfg *cfg, const struct cfg_dcs *dcs, char *buf,
                            size_t len);
/* pgwarden's own superuser connection to the local instance: as
 * pgconf_conn_params with host NULL, or, with postgresql.use_unix_socket,
 * through the socket (Patroni's local_connect_kwargs): host is the
 * directory, or absent when unix_socket_directories is not set. */
int pgconf_local_conn_params(const struct cfg *cfg, const struct cfg_dcs *dcs, const char *dbname,
                             struct pgconn_params *out) PGW_MUST_CHECK;

/* Durable write helper: temp file in the same dir, fsync, rename, fsync
 * dir. mode e.g. 0600. */
int pgconf_write_file(const char *path, const char *data, size_t len, unsigned mode, char *errbuf,
                      size_t errlen) PGW_MUST_CHECK;

/* The parameters that must be equal on all nodes (NULL-terminated). */
extern const char *const pgconf_cluster_only_params[];

#endif
