/* The fence keeper: a small child process that stops PostgreSQL when the
 * primary lease runs out and pgwarden itself cannot (it is stopped with
 * SIGSTOP, hung, or killed while PostgreSQL keeps running).
 *
 * pgwarden forks it at start, before the event loop creates any thread, and
 * shares one page with it (a file in raft.data_dir, mapped by both): the
 * fence deadline on CLOCK_MONOTONIC (system-wide, so both processes read the
 * same clock) and the pid of the pgwarden that owns it. pgwarden moves the
 * deadline with every confirmed lease renewal (ha/lease.h) and clears it
 * when it holds no lease. The keeper checks every KEEPER_TICK_MS; past the
 * deadline it kills the whole PostgreSQL process group with SIGKILL (the
 * postmaster and every backend at once, so an open session cannot commit
 * another transaction), clears the deadline and says so in the log.
 *
 * When pgwarden dies the keeper keeps watching until the deadline, then
 * fences and exits; if a new pgwarden takes the page over first (it writes
 * its own pid), the old keeper exits without touching anything. */
#ifndef PGW_HA_KEEPER_H
#define PGW_HA_KEEPER_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/status.h"

#define KEEPER_TICK_MS 20
#define KEEPER_FILE "fence.state"

struct keeper;

/* Fork the keeper. state_dir: where the shared page lives (raft.data_dir);
 * pg_data_dir: whose postmaster.pid names the process group to kill. Call
 * before any thread exists. */
int keeper_start(const char *state_dir, const char *pg_data_dir, struct keeper **out, char *err,
                 size_t errlen) PGW_MUST_CHECK;
/* Monotonic ms after which PostgreSQL must be dead; 0 = no lease held. */
void keeper_set_deadline(struct keeper *k, uint64_t deadline_ms);
uint64_t keeper_deadline(const struct keeper *k);
/* Times the keeper killed PostgreSQL since it started (from the shared page). */
uint64_t keeper_fences(const struct keeper *k);
/* Clean stop: clear the deadline, tell the keeper to exit, reap it. */
void keeper_stop(struct keeper *k);
pid_t keeper_pid(const struct keeper *k);
/* The keeper process still runs (not exited, not a zombie). */
bool keeper_alive(const struct keeper *k);

#endif
