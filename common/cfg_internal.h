/* Internals of the configuration module, shared by common/cfg*.c only.
 *
 * One table (cfg__keys, in cfg_schema.c) describes every key: its path, type,
 * where it is stored, its default (as YAML text, parsed by the same code as a
 * file value), whether it can change at run time, its environment variable
 * and its documentation. Parsing, defaults, freeing, cfg_diff, the JSON form
 * of the dynamic configuration and docs/configuration.md are all driven by
 * it, so they cannot drift apart. */
#ifndef PGW_CFG_INTERNAL_H
#define PGW_CFG_INTERNAL_H

#include <stdio.h>

#include "common/cfg.h"
#include "common/yaml_tree.h"

enum cfg_ktype {
    KT_SECTION,    /* a mapping of further keys */
    KT_STR,        /* char *: any scalar, as text */
    KT_IDENT,      /* char *: [A-Za-z0-9_.-]{1,63} (scope, name) */
    KT_CHOICE,     /* char *: one of k->choices */
    KT_BOOL,       /* bool */
    KT_DURATION,   /* uint32_t milliseconds; written in seconds */
    KT_UINT,       /* uint32_t */
    KT_INT,        /* int */
    KT_SIZE,       /* uint64_t bytes */
    KT_LAG,        /* int64_t bytes, -1 = off */
    KT_HOSTPORT,   /* struct cfg_hostport */
    KT_PGLISTEN,   /* struct cfg_hostport; host may be a comma-separated list */
    KT_IPV4,       /* char *: "a.b.c.d:port" */
    KT_IPV4LIST,   /* struct cfg_strlist of "a.b.c.d:port" */
    KT_STRLIST,    /* struct cfg_strlist (items limited to k->choices if set) */
    KT_PARAMS,     /* struct cfg_kvlist of PostgreSQL settings */
    KT_OPTIONS,    /* struct cfg_strlist of "opt" / "opt=value" (initdb, basebackup) */
    KT_SYNCMODE,   /* enum cfg_sync_mode */
    KT_WDMODE,     /* enum cfg_watchdog_mode */
    KT_LOGLEVEL,   /* enum log_level */
    KT_LOGFORMAT,  /* enum log_format */
    KT_SLOTS,      /* struct cfg_slots: mapping name: {type, database, plugin} (cfg_slots.c) */
    KT_SLOTMATCH,  /* struct cfg_slot_matchers: list of {name, type, database, plugin} */
    KT_USERS,      /* struct cfg_users: mapping name: {password, options} (cfg_users.c) */
};

enum cfg_change {
    CH_RESTART,   /* read at start only */
    CH_RELOAD,    /* applied on SIGHUP / POST /reload */
    CH_CLUSTER,   /* dynamic configuration: PATCH /config */
    CH_BOOTSTRAP, /* used once, when the cluster is created */
    CH_CLIENT,    /* read by each `pgwarden ctl` command */
};

enum cfg_base { BASE_CFG, BASE_DCS };

#define KF_REQUIRED 0x01    /* every node needs it */
#define KF_REQUIRED_PG 0x02 /* a PostgreSQL (non-witness) node needs it */
#define KF_SECRET 0x04      /* never printed */
#define KF_MIN 0x08
#define KF_MAX 0x10
#define KF_LEGACY 0x20      /* `alias` is a deprecated name: warn when used */
#define KF_SETFLAG 0x40     /* giving the key sets the bool at off2 */
#define KF_OMIT_FALSE 0x100 /* KT_BOOL of the dynamic configuration: left out of its JSON
                               while false (a key older nodes do not know) */
#define KF_PATH 0x80        /* KT_STR naming a file or directory: a relative one is resolved
                               against the working directory when the file is read */

struct cfg_key {
    const char *path;     /* full YAML path: "postgresql.authentication.superuser.username" */
    const char *alias;    /* another accepted name at the same level, or NULL */
    enum cfg_ktype type;
    enum cfg_base base;   /* struct the offsets are relative to */
    size_t off, off2;
    const char *def;      /* default as YAML text, or NULL */
    const char *def_doc;  /* the default as documented when it is computed */
    enum cfg_change change;
    unsigned flags;
    const char *env;      /* PGWARDEN_* override, or NULL */
    long long min, max;   /* bounds in stored units (ms for durations) */
    const char *choices;  /* "a|b|c": allowed values (KT_CHOICE, KT_STRLIST) or
                             forbidden options (KT_OPTIONS) */
    const char *doc;
};

extern const struct cfg_key cfg__keys[];
extern const size_t cfg__nkeys;

#define CFG__MAX_KEYS 192
#define CFG__MAX_EXTRA 32

/* Paths of keys accepted but ignored in the dynamic configuration (features
 * not implemented yet); NULL-terminated. */
extern const char *const cfg__dcs_ignored[];

const struct cfg_key *cfg__key_find(const char *path);
void *cfg__field(const struct cfg_key *k, struct cfg *c, struct cfg_dcs *dcs);

/* Why a value was refused. `at` is the node the problem is in (a list item,
 * say) and `sub` what to append to the key path ("[2]", ".encoding"). */
struct cfg__perr {
    const struct ynode *at;
    char sub[96];
    char why[600];
};

int cfg__parse_value(const struct cfg_key *k, const struct ynode *v, void *dst,
                     struct cfg__perr *pe);
void cfg__free_value(const struct cfg_key *k, void *dst);
int cfg__copy_value(const struct cfg_key *k, void *dst, const void *src);
bool cfg__value_equal(const struct cfg_key *k, const void *a, const void *b);
/* The value as it would be written in YAML ("0.5", "[a, b]", "(unset)"). */
void cfg__format_value(const struct cfg_key *k, const void *v, char *buf, size_t len);
/* Parse k->def into dst (freeing what dst held). */
int cfg__apply_default(const struct cfg_key *k, void *dst);

/* cfg_text.c: text-level parsers. Each returns 0 or PGW_EINVAL; those with
 * `why` put the reason there. */
bool cfg__host_is_wildcard(const char *h);
bool cfg__bool_word(const char *s, bool *val); /* true/yes/on, false/no/off, any case */
bool cfg__in_choices(const char *choices, const char *s);
void cfg__choices_text(const char *choices, char *buf, size_t len); /* "a, b or c" */
bool cfg__parse_ll(const char *s, long long *out);
#define CFG__DUR_TOO_LARGE 1
int cfg__parse_duration_ms(const char *s, uint64_t *out, bool *negative);
int cfg__parse_hostport(const char *s, bool list, struct cfg_hostport *hp, char *why,
                        size_t whylen);
int cfg__parse_ipv4(const char *s, char *host_out, size_t host_len, uint16_t *port_out,
                    char *why, size_t whylen);

/* "\"text\"", escaped and cut at 60 characters, for messages. */
void cfg__quote(const char *s, char *buf, size_t len);
/* A value's parse error: the reason into pe->why, the node (when given)
 * into pe->at; returns PGW_EINVAL. */
__attribute__((format(printf, 3, 4)))
int cfg__perr(struct cfg__perr *pe, const struct ynode *at, const char *fmt, ...);
/* Equal strings, NULL equal only to NULL. */
bool cfg__str_eq(const char *a, const char *b);
/* *dst = a copy of s, or NULL for NULL; PGW_ENOMEM when the copy failed. */
int cfg__strdup_or_null(char **dst, const char *s);
/* Milliseconds as seconds: 500 -> "0.5", 3000 -> "3". */
void cfg__fmt_seconds(uint64_t ms, char *buf, size_t len);

int cfg__strlist_push(struct cfg_strlist *l, const char *s);
bool cfg__strlist_equal(const struct cfg_strlist *a, const struct cfg_strlist *b);
void cfg__strlist_free(struct cfg_strlist *l);
int cfg__kvlist_push(struct cfg_kvlist *l, const char *k, const char *v);
void cfg__kvlist_free(struct cfg_kvlist *l);
const char *cfg__kvlist_get(const struct cfg_kvlist *l, const char *k);

/* A walk over a YAML (or JSON-derived) mapping, driven by the key table. */
struct cfg__walk {
    const char *file;  /* NULL: JSON mode (unknown keys are errors, no positions) */
    const char *strip; /* prefix left out of paths in messages ("bootstrap.dcs.") */
    struct cfg *c;
    struct cfg_dcs *dcs;
    struct cfg_error *err;
    struct cfg_warnings *warn;
    const struct ynode *seen[CFG__MAX_KEYS];     /* value node of each key given */
    const struct ynode *seen_key[CFG__MAX_KEYS]; /* its key node */
    /* Mappings under postgresql / bootstrap the table does not know: the
     * sections of custom methods, sorted out once the whole file is read
     * (cfg_methods.c); the others become unknown-key warnings, inserted
     * at warn_pos to keep the file's order. */
    struct {
        const struct ynode *key, *val;
        const char *section; /* "postgresql" or "bootstrap" */
        size_t warn_pos;
    } extra[CFG__MAX_EXTRA];
    size_t n_extra;
};

int cfg__walk_map(struct cfg__walk *w, const struct ynode *map, const char *path);

/* cfg_methods.c: custom replica / bootstrap method sections. */
bool cfg__method_candidate(const struct cfg__walk *w, const char *path, const struct ynode *vn);
int cfg__method_stash(struct cfg__walk *w, const struct ynode *kn, const struct ynode *vn,
                      const char *path);
/* After the walk and the environment: parse the referenced sections, warn
 * about the others. `seq` is the create_replica_methods node (may be NULL),
 * `method` the bootstrap.method node (may be NULL), `root` for positions. */
int cfg__methods_finalize(struct cfg__walk *w, const struct ynode *seq, const struct ynode *method,
                          const struct ynode *root);
void cfg__methods_free(struct cfg_methods *m);
void cfg__print_methods_reference(FILE *out);

/* cfg_backup.c: after the walk, on a PostgreSQL node with backup on: the
 * keys pgwarden then owns are refused, the stanza defaults to the scope. */
int cfg__backup_finalize(struct cfg__walk *w);

/* cfg_slots.c: the KT_SLOTS and KT_SLOTMATCH value types. */
int cfg__slots_parse_value(const struct cfg_key *k, const struct ynode *v, void *dst,
                           struct cfg__perr *pe);
void cfg__slots_free_value(const struct cfg_key *k, void *dst);
int cfg__slots_copy_value(const struct cfg_key *k, void *dst, const void *src);
bool cfg__slots_value_equal(const struct cfg_key *k, const void *a, const void *b);
void cfg__slots_format_value(const struct cfg_key *k, const void *v, char *buf, size_t len);
/* JSON form; NULL when the value is empty (left out of GET /config). */
json_t *cfg__slots_value_json(const struct cfg_key *k, const void *v);

/* cfg_users.c: the KT_USERS value type (bootstrap.users). The format
 * never shows a password. */
int cfg__users_parse_value(const struct ynode *v, void *dst, struct cfg__perr *pe);
void cfg__users_free_value(void *dst);
int cfg__users_copy_value(void *dst, const void *src);
bool cfg__users_value_equal(const void *a, const void *b);
void cfg__users_format_value(const void *v, char *buf, size_t len);
bool cfg__users_have_password(const void *v);
/* After the walk and the environment: drop (with a warning) the users named
 * like pgwarden's own roles, as Patroni skips them. */
int cfg__users_finalize(struct cfg__walk *w);

__attribute__((format(printf, 5, 6)))
void cfg__error(struct cfg_error *e, const char *file, const struct ynode *at, const char *path,
                const char *fmt, ...);
int cfg__warn(struct cfg_warnings *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
