/* How long the event loop is busy between two waits for I/O.
 *
 * Everything pgwarden does runs on one libuv loop: the health endpoints,
 * Raft, the lease renewals, the PostgreSQL monitor. A callback that blocks
 * (a synchronous computation, a slow system call) delays all of them, and a
 * health probe that arrives meanwhile waits. This measures it: at every
 * iteration's check phase, the wall time since the previous one minus the
 * time spent waiting in epoll (libuv's idle-time metric). The result includes
 * time the process was runnable but not scheduled: what a probe sees.
 *
 * One owner (cmd/run.c); /metrics reads it. */
#ifndef PGW_COMMON_LOOPSTAT_H
#define PGW_COMMON_LOOPSTAT_H

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include "common/status.h"

/* Upper bounds of the histogram buckets, in microseconds; the last bucket
 * (+Inf) is implied. */
#define LOOPSTAT_BOUNDS_US {100, 500, 1000, 5000, 10000, 50000, 100000, 1000000}
#define LOOPSTAT_BUCKETS 9
/* An iteration busy this long gets a warning in the log (at most one per
 * LOOPSTAT_WARN_EVERY_MS): probes and lease renewals waited that long. */
#define LOOPSTAT_WARN_MS 500
#define LOOPSTAT_WARN_EVERY_MS 10000

struct loopstat_counts {
    uint64_t bucket[LOOPSTAT_BUCKETS]; /* bucket[i]: busy <= bound i (not cumulative) */
    uint64_t iterations;
    double busy_sum_s;
    uint64_t busy_max_us;
};

struct loopstat {
    uv_check_t check;
    bool started;
    uint64_t last_ns, last_idle_ns, last_warn_ms;
    struct loopstat_counts c;
};

/* Call before the loop first runs: turns on libuv's idle-time accounting
 * (UV_METRICS_IDLE_TIME); a libuv without it is logged, and nothing is
 * measured. The check handle never keeps the loop alive. */
void loopstat_start(uv_loop_t *loop, struct loopstat *ls);
void loopstat_close(struct loopstat *ls);
/* Record one iteration busy for busy_ns (what the check callback does). */
void loopstat_record(struct loopstat *ls, uint64_t busy_ns);
void loopstat_get(const struct loopstat *ls, struct loopstat_counts *out);

#endif
