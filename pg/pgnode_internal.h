/* Internals shared by the pgnode files: pgnode.c (lifecycle, plumbing,
 * bootstrap, clone, follow, demote, promote, adopt and the state machine),
 * pgnode_sql.c (roles and slots SQL), pgnode_rejoin.c (rewind check and
 * rejoin), pgnode_methods.c (bootstrap and clone with their methods),
 * slots.c (replication slots). Not for other modules: they use pgnode.h. */
#ifndef PGW_PG_PGNODE_INTERNAL_H
#define PGW_PG_PGNODE_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include "pg/pgnode.h"
#include "pg/proc.h"

enum flow {
    F_NONE = 0, F_BOOTSTRAP, F_ROLES, F_START, F_STOP, F_CLONE, F_FOLLOW, F_DEMOTE, F_PROMOTE,
    F_SLOTS, F_REWIND_CHECK, F_REJOIN, F_ADOPT, F_NUDGE,
};

enum step {
    S_NONE = 0,
    S_INITDB, S_START, S_ROLES, S_STOP, S_BASEBACKUP, S_RELOAD, S_PROMOTE, S_SLOTS,
    S_CD1, S_RECOVER, S_CD2, S_WALDUMP, S_FETCH, S_REWIND, S_ADOPT_INFO, S_CHECKPOINT, S_SRC_CHECKPOINT,
    S_CLEAN, S_METHOD, S_RECOVERY_WAIT, S_POST_BOOTSTRAP, S_FAIL_STOP, S_NUDGE, S_USERS,
};

struct pgslots_run;

struct pgnode {
    uv_loop_t *loop;
    const struct cfg *cfg;
    const struct cfg_dcs *dcs;
    char *sync_names; /* managed synchronous_standby_names, NULL = not managed */
    bool standby_leader; /* standby configurations follow dcs standby_cluster */
    struct pgctl *ctl;
    char err[PGNODE_ERR_MAX];
    enum flow flow;
    enum step step;
    pgnode_done_cb cb;
    pgnode_rewind_check_cb rccb;
    pgnode_rejoin_cb rjcb;
    pgnode_adopt_cb adcb;
    void *ctx;
    uv_timer_t timer; /* only to free the node from a close callback */
    struct pgconn *conn;
    bool conn_remote; /* conn goes to n->host, not to the local instance */
    bool conn_quiet;  /* conn started with statement logging off (pgnode__do_sql_at) */
    struct pgrewind_fetch *fetch;
    struct proc *proc;
    char host[256];
    uint16_t port;
    uint16_t local_port; /* 0 = from the configuration */
    char slot[PGCONF_SLOT_MAX];
    enum pgctl_stop_mode stop_mode;
    char *sql;
    struct pgrewind_local local;
    struct pgrewind_primary primary;
    struct pgrewind_decision decision;
    struct pgnode_rejoin_result rj;
    struct pgnode_adopt_result ad;
    bool recloning;
    /* pgnode_methods.c */
    unsigned method_idx;      /* next entry of create_replica_methods to try */
    const char *method_name;  /* the method running (points into cfg) */
    bool no_source;           /* clone with no running primary: no_leader methods only */
    bool pg_started;          /* bootstrap: this step started PostgreSQL */
    bool in_recovery;         /* last answer of pg_is_in_recovery() (S_RECOVERY_WAIT) */
    uint64_t wait_deadline;   /* uv_now() deadline of the end-of-recovery wait */
    int fail_rc;              /* bootstrap: the failure being cleaned up after */
    char fail_err[PGNODE_ERR_MAX];
    struct pgslots_run *slots_run; /* slots.c */
};

void pgnode__set_err(struct pgnode *n, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void pgnode__copy_str(char *dst, size_t len, const char *src);
int pgnode__pg_major(const struct pgnode *n);
bool pgnode__use_slots(const struct pgnode *n);
bool pgnode__use_rewind(const struct pgnode *n);
/* begin a step (PGW_EBUSY if one runs) / undo it after a synchronous
 * failure / end it and call back */
int pgnode__begin(struct pgnode *n, enum flow f, void *ctx);
int pgnode__abort_begin(struct pgnode *n, int rc);
void pgnode__finish(struct pgnode *n, int status);
/* move the running step on when a primitive reports */
void pgnode__advance(struct pgnode *n, int status);
void pgnode__advance_rejoin(struct pgnode *n, enum step done, int status);
/* primitives */
void pgnode__ctl_done(struct pgctl *ctl, int status, void *ctx);
int pgnode__ctl_rc(struct pgnode *n, int rc);
int pgnode__do_start(struct pgnode *n);
int pgnode__do_stop(struct pgnode *n, enum pgctl_stop_mode mode);
/* sql is taken over (freed by the node); host NULL = the local instance */
int pgnode__do_sql_at(struct pgnode *n, enum step step, char *sql, const char *host, uint16_t port);
int pgnode__do_sql(struct pgnode *n, enum step step, char *sql);
int pgnode__do_roles(struct pgnode *n);
int pgnode__do_roles_if_missing(struct pgnode *n); /* adoption: create, never alter */
/* bootstrap.users, after post_bootstrap of the cluster's own bootstrap only */
bool pgnode__has_users(const struct pgnode *n);
int pgnode__do_users(struct pgnode *n);
/* pgconf_sanitize_auto_conf, logging what it removed; error text in eb. */
int pgnode__sanitize_auto_conf(struct pgnode *n, bool recovery, char *eb, size_t eblen);
/* remove_data_directory_on_rewind_failure / _diverged_timelines as in
 * effect: the node's own when given, else the cluster-wide value */
bool pgnode__remove_on_rewind_failure(const struct pgnode *n);
bool pgnode__remove_on_diverged(const struct pgnode *n);
int pgnode__write_files(struct pgnode *n, const struct pgconf_role *role, bool bootstrap_hba,
                        bool hba, struct pgconf_write_result *res);
int pgnode__configure_standby(struct pgnode *n, bool *changed);
int pgnode__do_basebackup(struct pgnode *n);
/* pgnode_methods.c: the bootstrap and clone flows */
void pgnode__advance_bootstrap(struct pgnode *n, enum step done, int status);
void pgnode__advance_clone(struct pgnode *n, enum step done, int status);
/* slots.c: drop a running slots step (the node is being destroyed) */
void pgnode__slots_abandon(struct pgnode *n);

#endif
