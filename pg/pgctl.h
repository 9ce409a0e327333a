/* Operations on one PostgreSQL instance through its programs (uv_spawn):
 * initdb, pg_ctl start/stop/restart/reload/promote, pg_basebackup,
 * pg_rewind, pg_controldata, postgres --single (crash recovery).
 *
 * Happy path: one operation at a time per object; the program runs with
 * LC_ALL=C (and PGPASSFILE when a pgpass file is configured), its output is
 * logged line by line as "<program>: <line>", its exit status is checked and
 * the callback gets PGW_OK.
 * Failure modes: program missing / not executable (returned synchronously,
 * message names the path), non-zero exit (PGW_ECHILD), timeout
 * (PGW_ETIMEDOUT), bad state found by a check (PGW_EINVAL / PGW_ECONFLICT).
 * The message is kept on the object (pgctl_error), e.g.
 *   "pg_ctl start failed (exit 1): FATAL:  could not create any TCP/IP
 *    sockets ... Address already in use"
 * Secrets: passwords reach children only through a 0600 file (initdb
 * --pwfile, PGPASSFILE); never through argv. */
#ifndef PGW_PG_PGCTL_H
#define PGW_PG_PGCTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <uv.h>

#include "common/status.h"
#include "pg/lsn.h"

#define PGCTL_ERR_MAX 2048

/* ---- pg_controldata ---------------------------------------------------- */

enum pg_cluster_state {
    PG_CLUSTER_UNKNOWN = 0,
    PG_CLUSTER_STARTING_UP,        /* "starting up" */
    PG_CLUSTER_SHUT_DOWN,          /* "shut down" */
    PG_CLUSTER_SHUT_DOWN_RECOVERY, /* "shut down in recovery" */
    PG_CLUSTER_SHUTTING_DOWN,      /* "shutting down" */
    PG_CLUSTER_CRASH_RECOVERY,     /* "in crash recovery" */
    PG_CLUSTER_ARCHIVE_RECOVERY,   /* "in archive recovery" */
    PG_CLUSTER_IN_PRODUCTION,      /* "in production" */
};

struct pg_controldata {
    uint32_t pg_control_version;
    uint64_t system_identifier;
    enum pg_cluster_state state;
    char state_text[48];
    pg_lsn checkpoint_lsn;      /* "Latest checkpoint location" */
    pg_lsn redo_lsn;            /* "Latest checkpoint's REDO location" */
    uint32_t checkpoint_tli;    /* "Latest checkpoint's TimeLineID" */
    uint32_t prev_tli;          /* "Latest checkpoint's PrevTimeLineID" */
    pg_lsn min_recovery_lsn;    /* "Minimum recovery ending location" */
    uint32_t min_recovery_tli;  /* "Min recovery ending loc's timeline" */
    bool wal_log_hints;         /* "wal_log_hints setting" */
    uint32_t data_checksum_version; /* 0 = no checksums */
    char wal_level[16];
    int max_connections, max_worker_processes, max_wal_senders;
    int max_prepared_xacts, max_locks_per_xact;
    bool track_commit_timestamp;
};

const char *pg_cluster_state_name(enum pg_cluster_state s);
/* Parse pg_controldata's output (LC_ALL=C). PGW_EPROTO names the missing
 * field when the essential ones (system identifier, state, checkpoint) are
 * absent. */
int pg_controldata_parse(const char *text, size_t len, struct pg_controldata *out, char *errbuf,
                         size_t errlen) PGW_MUST_CHECK;

/* ---- postmaster.pid (synchronous: a small local file) ------------------- */

enum pg_pidfile_status { PG_PIDFILE_UNKNOWN = 0, PG_PIDFILE_STARTING, PG_PIDFILE_STOPPING,
                         PG_PIDFILE_READY, PG_PIDFILE_STANDBY };

struct pg_pidfile {
    pid_t pid;              /* line 1 (a negative pid, single-user mode, is made positive) */
    bool single_user;
    char data_dir[512];     /* line 2 */
    int64_t start_time;     /* line 3, epoch seconds */
    int port;               /* line 4 */
    char socket_dir[256];   /* line 5 */
    char listen_addr[256];  /* line 6 */
    enum pg_pidfile_status status; /* line 8, PG10+ */
    unsigned long shm_key, shm_id;  /* line 7 */
};

/* PGW_ENOTFOUND when there is no postmaster.pid, PGW_EPROTO when it is
 * malformed (e.g. being written), PGW_EIO otherwise. */
int pg_pidfile_read(const char *data_dir, struct pg_pidfile *out, char *errbuf,
                    size_t errlen) PGW_MUST_CHECK;
/* kill(pid, 0), EPERM counting as alive; a zombie (nobody reaps a
 * re-parented postmaster in some containers) or a process that is not a
 * postgres program (a stale pid file's reused pid) counts as dead. */
bool pg_pid_alive(pid_t pid);
/* A postmaster.pid whose pid is dead but still exists as a process (a
 * zombie nobody reaps, or a pid reused by another program) makes
 * PostgreSQL refuse to start ("lock file already exists"). Remove it only
 * when the shared memory segment it names has no process attached (what
 * PostgreSQL itself checks: no orphaned backend still runs). PGW_OK when
 * there is nothing stale (or it was removed), PGW_ECONFLICT with the
 * reason otherwise. */
int pg_pidfile_clear_stale(const char *data_dir, char *errbuf, size_t errlen) PGW_MUST_CHECK;
/* PostgreSQL's start failed with 'lock file "PATH" already exists': when
 * PATH is a Unix socket lock (.s.PGSQL.<port>.lock) whose pid is no live
 * postmaster (a zombie nobody reaped yet, or a reused pid), remove it and
 * return true: the start may be tried again at once. The message is
 * searched for in text (the server log excerpt). */
bool pg_socklock_clear_stale(const char *text);
/* Read postmaster.pid and check its pid: true when a postmaster runs for
 * data_dir; *pid_out (may be NULL) gets the pid. */
bool pg_postmaster_running(const char *data_dir, pid_t *pid_out);

/* ---- the operations ------------------------------------------------------ */

struct pgctl_opts {
    const char *bin_dir;     /* e.g. /usr/lib/postgresql/15/bin */
    const char *data_dir;
    /* postgres --config-file (postgresql.config_dir apart from data_dir, as
     * Patroni starts it); NULL or "" = PostgreSQL's <data_dir>/postgresql.conf */
    const char *config_file;
    const char *log_file;    /* startup log for pg_ctl -l; default <data_dir>/../<basename>.startup.log */
    const char *pgpass_file; /* PGPASSFILE for children (may be NULL) */
    uint32_t timeout_ms;     /* default timeout for operations given 0; default 60000 */
};

struct pgctl;

typedef void (*pgctl_done_cb)(struct pgctl *ctl, int status, void *ctx);
typedef void (*pgctl_controldata_cb)(struct pgctl *ctl, int status, const struct pg_controldata *cd,
                                     void *ctx);

/* bin_dir holds every program pgwarden runs (pg_ctl, initdb, pg_basebackup,
 * pg_rewind, pg_controldata) as executable files, and `pg_ctl --version`
 * names a PostgreSQL major version, put in *major (may be NULL). Runs pg_ctl
 * on a private loop, bounded by 5 s. PGW_ENOTFOUND with err naming the
 * program and the reason ("postgresql.bin_dir: ..."). pgctl_new checks
 * this too; `pgwarden validate` calls it directly. */
int pgctl_check_bin_dir(const char *bin_dir, int *major, char *err, size_t errlen) PGW_MUST_CHECK;

int pgctl_new(uv_loop_t *loop, const struct pgctl_opts *opts, struct pgctl **out, char *errbuf,
              size_t errlen) PGW_MUST_CHECK;
/* Must not be busy (pgctl_busy() false); otherwise the running child is
 * cancelled and the callback dropped. Keep running the loop to finish. */
void pgctl_destroy(struct pgctl *ctl);
bool pgctl_busy(const struct pgctl *ctl);
/* The message of the last failed operation ("" after a success). */
const char *pgctl_error(const struct pgctl *ctl);
const char *pgctl_data_dir(const struct pgctl *ctl);
const char *pgctl_bin_dir(const struct pgctl *ctl);
/* Major version of the binaries (pg_ctl --version, read synchronously at
 * pgctl_new: 15) and of the data dir (PG_VERSION; 0 if none). */
int pgctl_bin_version(const struct pgctl *ctl);
int pgctl_data_version(const struct pgctl *ctl);

struct pgctl_initdb_args {
    const char *const *options;  /* "data-checksums", "encoding=UTF8", "locale=C"; NULL-terminated */
    const char *superuser;       /* --username */
    const char *password;        /* via a 0600 --pwfile, removed afterwards; NULL = none */
    uint32_t timeout_ms;
};
int pgctl_initdb(struct pgctl *ctl, const struct pgctl_initdb_args *a, pgctl_done_cb cb,
                 void *ctx) PGW_MUST_CHECK;

/* pg_ctl start -w -t <timeout> -D <data> -l <log_file> [-o <options>].
 * The postmaster lives in its own session and outlives pgwarden. On failure
 * the error carries the tail (FATAL/PANIC/ERROR lines first) of the log file
 * written by this start. options: extra postgres arguments, may be NULL;
 * with a config_file, -o starts with --config-file='<file>' (quoted for the
 * shell pg_ctl runs the postmaster through). */
int pgctl_start(struct pgctl *ctl, const char *options, uint32_t timeout_ms, pgctl_done_cb cb,
                void *ctx) PGW_MUST_CHECK;

enum pgctl_stop_mode { PGCTL_STOP_FAST = 0, PGCTL_STOP_IMMEDIATE, PGCTL_STOP_SMART };
const char *pgctl_stop_mode_name(enum pgctl_stop_mode m);
int pgctl_stop_mode_parse(const char *s, enum pgctl_stop_mode *out) PGW_MUST_CHECK;
/* Stop. Already stopped is success. FAST/SMART: pg_ctl stop -m <mode> -w.
 * IMMEDIATE (the fencing path) runs no program: SIGQUIT to the postmaster
 * from postmaster.pid, its pid polled every 20 ms, and SIGKILL after
 * min(timeout, 3 s) if it still lives (a hung or SIGSTOPped postmaster). */
int pgctl_stop(struct pgctl *ctl, enum pgctl_stop_mode mode, uint32_t timeout_ms, pgctl_done_cb cb,
               void *ctx) PGW_MUST_CHECK;
/* stop (mode) then start (options). */
int pgctl_restart(struct pgctl *ctl, enum pgctl_stop_mode mode, const char *options,
                  uint32_t timeout_ms, pgctl_done_cb cb, void *ctx) PGW_MUST_CHECK;
int pgctl_reload(struct pgctl *ctl, pgctl_done_cb cb, void *ctx) PGW_MUST_CHECK;
/* pg_ctl promote, then pg_controldata every 100 ms until "in production"
 * (success is the control file, not the exit code) or the deadline. */
int pgctl_promote(struct pgctl *ctl, uint32_t timeout_ms, pgctl_done_cb cb, void *ctx) PGW_MUST_CHECK;
int pgctl_controldata(struct pgctl *ctl, pgctl_controldata_cb cb, void *ctx) PGW_MUST_CHECK;

struct pgctl_basebackup_args {
    const char *conninfo;         /* source, WITHOUT password (PGPASSFILE is used) */
    const char *const *options;   /* long options "max-rate=100M", "checkpoint=spread"; NULL-terminated */
    unsigned attempts;            /* default 2 */
    uint32_t retry_pause_ms;      /* default 5000 */
    uint32_t timeout_ms;          /* per attempt; default 1 hour */
};
/* pg_basebackup -D <data> -X stream --checkpoint=fast --progress --verbose
 * -d <conninfo> [options]. The data dir must be absent or empty; on failure
 * only what this run created is removed (the dir itself if this run created
 * it, else its contents). */
int pgctl_basebackup(struct pgctl *ctl, const struct pgctl_basebackup_args *a, pgctl_done_cb cb,
                     void *ctx) PGW_MUST_CHECK;

/* pg_rewind -D <data> --source-server=<conninfo> --progress.
 * Prerequisites, checked first with pg_controldata: the postmaster is not
 * running; wal_log_hints or data checksums (else PGW_EREFUSED); a clean
 * shutdown: when the control file says otherwise, single-user crash
 * recovery runs first (postgres --single -D <data> -c archive_mode=on
 * -c archive_command=false template1 </dev/null, which replays WAL and
 * writes a shutdown checkpoint, without ever accepting connections). With
 * a config_file, both get --config-file=<file> (pg_rewind from version 15,
 * which has the option; an older one runs no postgres after our crash
 * recovery). */
int pgctl_rewind(struct pgctl *ctl, const char *source_conninfo, uint32_t timeout_ms,
                 pgctl_done_cb cb, void *ctx) PGW_MUST_CHECK;
/* The single-user crash recovery above, on its own. It removes
 * standby.signal / recovery.signal first (single-user mode refuses standby
 * mode): the caller rewrites the role configuration afterwards. */
int pgctl_crash_recover(struct pgctl *ctl, uint32_t timeout_ms, pgctl_done_cb cb,
                        void *ctx) PGW_MUST_CHECK;

/* Last parsed controldata (after pgctl_controldata/promote/rewind), or NULL. */
const struct pg_controldata *pgctl_last_controldata(const struct pgctl *ctl);

#endif
