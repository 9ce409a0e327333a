/* The local PostgreSQL node: composable, idempotent async steps the HA
 * agent's state table calls. One step at a time per node (PGW_EBUSY).
 *
 * Steps and their happy paths:
 *  bootstrap:  initdb (or the bootstrap.<method> command, then its recovery
 *              until it promotes) -> pgpass, pg_hba (+bootstrap lines),
 *              managed config as primary -> start -> roles (superuser
 *              password, replication, rewind + grants) -> post_bootstrap.
 *              Refuses a data dir that already holds data; on a failure
 *              after the start, PostgreSQL is stopped (immediate) first.
 *  clone:      create_replica_methods in order (pg_basebackup from
 *              host:port, or a postgresql.<method> command) until one
 *              leaves a cluster -> standby config -> start
 *              (pgnode_methods.c).
 *  configure:  (sync) rewrite postgresql.conf / pg_hba / pgpass for a role.
 *  follow:     standby config for a new upstream -> reload if running
 *              (primary_conninfo is reloadable since PG13), start if not.
 *  demote:     stop (fast|immediate) -> standby config -> start.
 *  promote:    pg_ctl promote, verified in the control file -> CHECKPOINT
 *              (so that pg_rewind against this new primary sees the new
 *              timeline in its control file) -> primary config.
 *  slots:      create missing physical slots for the given members, drop
 *              physical slots not wanted and not ignored.
 *  rewind_check / rejoin: timelines + LSNs decide whether pg_rewind is
 *              needed; rejoin stops the instance (fast), rewinds if needed
 *              (after a CHECKPOINT on the primary, as the superuser), writes
 *              the standby config and starts; on rewind failure it moves the
 *              data dir aside and re-clones when
 *              remove_data_directory_on_rewind_failure, else reports
 *              needs_reinit with the reason.
 *  adopt:      take over an existing data dir (running or stopped) without
 *              initdb and without a restart when it runs; roles created if
 *              missing; never deletes anything.
 * Failure modes: the message is on the node (pgnode_error), naming the step
 * and the cause (program output tail, libpq message, errno). */
#ifndef PGW_PG_PGNODE_H
#define PGW_PG_PGNODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "common/cfg.h"
#include "common/status.h"
#include "pg/pgconf.h"
#include "pg/pgctl.h"
#include "pg/pgrewind.h"

#define PGNODE_ERR_MAX 2048

struct pgnode;

typedef void (*pgnode_done_cb)(struct pgnode *n, int status, void *ctx);

/* cfg and dcs are borrowed: they must stay valid (and unchanged) while a
 * step runs; swap them between steps with pgnode_set_config(). dcs may be
 * NULL (defaults). Fails when cfg has no postgresql section, or the
 * binaries in bin_dir are missing ("postgresql.bin_dir: ... not found"). */
int pgnode_new(uv_loop_t *loop, const struct cfg *cfg, const struct cfg_dcs *dcs,
               struct pgnode **out, char *errbuf, size_t errlen) PGW_MUST_CHECK;
void pgnode_set_config(struct pgnode *n, const struct cfg *cfg, const struct cfg_dcs *dcs);
/* synchronous_standby_names written into every configuration of this node
 * from now on (NULL: not managed). Copied. */
int pgnode_set_sync_names(struct pgnode *n, const char *names) PGW_MUST_CHECK;
/* Drops a pending callback; keep running the loop until handles closed. */
void pgnode_destroy(struct pgnode *n);
/* This node is the standby leader of a standby cluster: every standby
 * configuration written from now on carries the dcs standby_cluster settings
 * (remote slot, restore_command, ...). The agent sets it before it follows,
 * clones from or rejoins the remote primary, and clears it otherwise. */
void pgnode_set_standby_leader(struct pgnode *n, bool on);
bool pgnode_busy(const struct pgnode *n);
const char *pgnode_error(const struct pgnode *n);
/* The process controller (for start/stop/reload/restart/controldata). */
struct pgctl *pgnode_ctl(struct pgnode *n);
/* Superuser libpq parameters for the local instance (for pgmon). */
int pgnode_local_conn_params(const struct pgnode *n, struct pgconn_params *out) PGW_MUST_CHECK;

enum pgnode_datadir {
    PGNODE_DATADIR_ABSENT = 0,
    PGNODE_DATADIR_EMPTY,
    PGNODE_DATADIR_CLUSTER,   /* PG_VERSION and global/pg_control present */
    PGNODE_DATADIR_OTHER,     /* non-empty but not a cluster */
};
const char *pgnode_datadir_name(enum pgnode_datadir d);
/* Synchronous look at the data dir. PGW_EIO when it cannot be read
 * (e.g. owned by another user), message in errbuf. */
int pgnode_inspect_datadir(const char *data_dir, enum pgnode_datadir *out, char *errbuf,
                           size_t errlen) PGW_MUST_CHECK;
/* The system identifier of a (stopped) cluster, from global/pg_control. */
int pgnode_read_sysid(const char *data_dir, uint64_t *out) PGW_MUST_CHECK;
/* rename(data_dir, <data_dir>.<YYYYmmddHHMMSS>) within its parent; never
 * deletes. PGW_EREFUSED with "parent directory ... is not writable" when it
 * cannot. newpath (may be NULL) receives the new name. */
int pgnode_move_aside(const char *data_dir, char *newpath, size_t newlen, char *errbuf,
                      size_t errlen) PGW_MUST_CHECK;

int pgnode_bootstrap(struct pgnode *n, pgnode_done_cb cb, void *ctx) PGW_MUST_CHECK;
/* Only the role step (idempotent: CREATE or ALTER). Needs a running primary. */
int pgnode_create_roles(struct pgnode *n, pgnode_done_cb cb, void *ctx) PGW_MUST_CHECK;
/* Synchronous rewrite of the managed files for a role (idempotent). */
int pgnode_configure(struct pgnode *n, const struct pgconf_role *role,
                     struct pgconf_write_result *res) PGW_MUST_CHECK;
/* The role this node would use to follow host:port (slot from own name
 * when dcs use_slots). Strings point into n; valid until the next call. */
struct pgconf_role pgnode_standby_role(struct pgnode *n, const char *host, uint16_t port);

int pgnode_start(struct pgnode *n, pgnode_done_cb cb, void *ctx) PGW_MUST_CHECK;
int pgnode_stop(struct pgnode *n, enum pgctl_stop_mode mode, pgnode_done_cb cb,
                void *ctx) PGW_MUST_CHECK;
int pgnode_clone(struct pgnode *n, const char *host, uint16_t port, pgnode_done_cb cb,
                 void *ctx) PGW_MUST_CHECK;
/* A clone with no running primary: only the create_replica_methods with
 * no_leader (a restore from a backup repository); the replica starts with
 * no primary_conninfo (restore_command from postgresql.recovery_conf).
 * PGW_ENOTFOUND (synchronously) when no such method is configured. */
int pgnode_clone_no_source(struct pgnode *n, pgnode_done_cb cb, void *ctx) PGW_MUST_CHECK;
bool pgnode_has_no_leader_method(const struct pgnode *n);
int pgnode_follow(struct pgnode *n, const char *host, uint16_t port, pgnode_done_cb cb,
                  void *ctx) PGW_MUST_CHECK;
int pgnode_demote(struct pgnode *n, enum pgctl_stop_mode mode, const char *host, uint16_t port,
                  pgnode_done_cb cb, void *ctx) PGW_MUST_CHECK;
int pgnode_promote(struct pgnode *n, pgnode_done_cb cb, void *ctx) PGW_MUST_CHECK;
/* On a primary, after synchronous_standby_names changed: write one small
 * WAL record (a transaction id, committed with synchronous_commit local).
 * Commits already waiting are released only when a listed standby sends a
 * reply, and an idle standby that has everything sends none until
 * wal_receiver_status_interval (10 s by default); new WAL makes it reply. */
int pgnode_nudge_wal(struct pgnode *n, pgnode_done_cb cb, void *ctx) PGW_MUST_CHECK;

/* The simple form used before permanent slots (pg/slots.h has the full
 * one): members: member names that should have a slot here (own name is
 * skipped); ignore: slot names never dropped. Both NULL-terminated (may be
 * NULL). */
int pgnode_sync_slots(struct pgnode *n, const char *const *members, const char *const *ignore,
                      pgnode_done_cb cb, void *ctx) PGW_MUST_CHECK;

typedef void (*pgnode_rewind_check_cb)(struct pgnode *n, int status,
                                       const struct pgrewind_decision *d, void *ctx);
/* Needs the instance stopped (PGW_ECONFLICT otherwise): reads the control
 * file (single-user crash recovery first when it was not shut down
 * cleanly), the end of the last checkpoint record (pg_waldump) and the
 * primary's timeline history (replication connection as the replication
 * user), then applies pgrewind_decide(). Crash recovery removes
 * standby.signal (single-user mode refuses standby mode): follow a check
 * by rejoin/follow/configure, which write the role's files again. */
int pgnode_rewind_check(struct pgnode *n, const char *host, uint16_t port,
                        pgnode_rewind_check_cb cb, void *ctx) PGW_MUST_CHECK;

struct pgnode_rejoin_result {
    bool rewound;        /* pg_rewind ran and succeeded */
    bool recloned;       /* the data dir was moved aside and cloned again */
    bool needs_reinit;   /* stuck: operator (or reinit) needed; reason says why */
    char moved_to[512];  /* where the old data dir went, if moved */
    char reason[512];
};
typedef void (*pgnode_rejoin_cb)(struct pgnode *n, int status, const struct pgnode_rejoin_result *r,
                                 void *ctx);
int pgnode_rejoin(struct pgnode *n, const char *host, uint16_t port, pgnode_rejoin_cb cb,
                  void *ctx) PGW_MUST_CHECK;

struct pgnode_adopt_result {
    bool was_running;
    bool started;        /* adopt started it (it was stopped) */
    bool in_recovery;
    uint64_t system_identifier;
    char detail[256];
};
typedef void (*pgnode_adopt_cb)(struct pgnode *n, int status, const struct pgnode_adopt_result *r,
                                void *ctx);
int pgnode_adopt(struct pgnode *n, pgnode_adopt_cb cb, void *ctx) PGW_MUST_CHECK;

/* Before a restart pgwarden does not write the configuration for: remove
 * what postgresql.auto.conf must not override (pgconf_sanitize_auto_conf). */
int pgnode_sanitize_auto_conf(struct pgnode *n) PGW_MUST_CHECK;

#endif
