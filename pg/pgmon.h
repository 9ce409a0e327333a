/* Status monitor of the local PostgreSQL instance.
 *
 * Every interval (one tick):
 *  1. postmaster.pid is read (small file, synchronous) and the pid checked
 *     with kill(pid, 0): no file or a dead pid => DOWN at once, so a crashed
 *     postmaster is reported within one tick.
 *  2. a FRESH connection probe (connect + SELECT 1, deadline probe_timeout)
 *     tells RUNNING from HUNG (accepts TCP but never answers, e.g. SIGSTOP)
 *     and from STARTING/STOPPING ("the database system is starting up").
 *  3. ONE status query (three statements, one round trip) on a persistent
 *     connection fills struct pg_status.
 * A probe or query still in flight at the next tick is not duplicated.
 * Failure modes: connection errors set state/error but never stop the
 * monitor; every wait has the probe or query deadline. */
#ifndef PGW_PG_PGMON_H
#define PGW_PG_PGMON_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <uv.h>

#include "common/status.h"
#include "pg/lsn.h"
#include "pg/pgconn.h"

enum pg_run_state {
    PG_RUN_UNKNOWN = 0, /* not yet observed, or inconsistent observations */
    PG_RUN_DOWN,        /* no postmaster (no pid file, dead pid, connection refused with no pid) */
    PG_RUN_STARTING,    /* pid file says starting, or "the database system is starting up" */
    PG_RUN_RUNNING,     /* the fresh probe answered */
    PG_RUN_STOPPING,    /* pid file says stopping, or "the database system is shutting down" */
    PG_RUN_HUNG,        /* the postmaster is alive but the probe missed its deadline */
};
const char *pg_run_state_name(enum pg_run_state s);

#define PG_STATUS_MAX_REPL 32

struct pg_repl_row {
    char application_name[64];
    char usename[64];
    char client_addr[64];
    char state[32];      /* streaming, catchup, startup, backup, stopping */
    char sync_state[16]; /* async, potential, sync, quorum */
    int sync_priority;
    pg_lsn sent_lsn, write_lsn, flush_lsn, replay_lsn;
};

struct pg_wal_receiver {
    bool present;     /* a row exists in pg_stat_wal_receiver */
    char status[32];  /* streaming, starting, waiting, stopping, ... */
    char sender_host[128];
    int sender_port;
    char slot_name[64];
    pg_lsn written_lsn, flushed_lsn;
    uint32_t received_tli;
};

/* pg_stat_archiver */
struct pg_archiver {
    bool present;
    uint64_t archived_count, failed_count;
    int64_t last_archived_ms, last_failed_ms; /* epoch ms; 0: never */
    bool lag_known;     /* a primary that archived a segment */
    uint64_t lag_bytes; /* WAL written past the last archived segment */
};

struct pg_status {
    enum pg_run_state state;
    uint64_t taken_ms;       /* monotonic time (uv_now) of the observation */
    uint64_t state_since_ms; /* monotonic time the state last changed */
    pid_t postmaster_pid;    /* 0 when unknown */
    char error[256];         /* why DOWN/HUNG/UNKNOWN, or the last query error; "" if none */

    /* Filled by the status query; valid only when query_ok. */
    bool query_ok;
    uint64_t query_ms;       /* monotonic time of the last successful status query */
    uint64_t query_seq;      /* counts successful status queries: orders observations */
    int server_version;      /* e.g. 150004 */
    bool in_recovery;
    pg_lsn wal_lsn;          /* primary: pg_current_wal_lsn(); replica: max(received, replayed) */
    pg_lsn received_lsn;     /* replica only */
    pg_lsn replayed_lsn;     /* replica only */
    bool has_replay_ts;
    int64_t last_replay_ts_ms; /* epoch ms of pg_last_xact_replay_timestamp() */
    bool replay_paused;
    uint32_t timeline;       /* primary: insert timeline; replica: received_tli or checkpoint tli */
    uint64_t system_identifier;
    int64_t postmaster_start_ms; /* epoch ms */
    bool pending_restart;    /* some pg_settings row has pending_restart */
    size_t nrepl;
    struct pg_repl_row repl[PG_STATUS_MAX_REPL];
    struct pg_wal_receiver receiver;
    struct pg_archiver archiver;
};

struct pgmon;

typedef void (*pgmon_change_cb)(struct pgmon *m, const struct pg_status *st,
                                enum pg_run_state old_state, void *ctx);
typedef void (*pgmon_refresh_cb)(struct pgmon *m, int status, const struct pg_status *st, void *ctx);

struct pgmon_opts {
    const char *data_dir;               /* for postmaster.pid */
    const struct pgconn_params *conn;   /* superuser connection to the local instance (copied) */
    uint32_t interval_ms;               /* default 1000 */
    uint32_t query_timeout_ms;          /* default interval */
    uint32_t probe_timeout_ms;          /* default interval */
    pgmon_change_cb on_change;          /* run state changed (may be NULL) */
    void *ctx;
};

int pgmon_new(uv_loop_t *loop, const struct pgmon_opts *opts, struct pgmon **out) PGW_MUST_CHECK;
/* Starts ticking (first tick on the next loop iteration). */
int pgmon_start(struct pgmon *m) PGW_MUST_CHECK;
/* The latest status; always valid, state UNKNOWN before the first tick.
 * m may be NULL (the monitor is already destroyed: pgwarden shutting down
 * while the REST API still answers): an all-zero status, state UNKNOWN. */
const struct pg_status *pgmon_status(const struct pgmon *m);
/* Run a tick now and call back with the fresh status once the pid check,
 * probe and status query of that tick finished (deadline = probe/query
 * timeouts). status is PGW_OK when the status query succeeded. Several
 * refreshes may be pending; each is called once. */
int pgmon_refresh(struct pgmon *m, pgmon_refresh_cb cb, void *ctx) PGW_MUST_CHECK;
/* Stop and free; pending refresh callbacks are called with PGW_ECANCELED.
 * Keep running the loop until the handles closed. */
void pgmon_destroy(struct pgmon *m);

/* Parse the three result sets of the status query into st (exposed for
 * unit tests; results as returned by pgconn). */
int pgmon_parse_status(PGresult *const *res, size_t n, struct pg_status *st, char *errbuf,
                       size_t errlen) PGW_MUST_CHECK;
/* The status query text (for tests and for humans). */
/* The status query, reading pending_restart or leaving it NULL (the
 * costly part: pg_settings). */
const char *pgmon_status_sql(bool with_pending_restart);

#endif
