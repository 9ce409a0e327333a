/* The fence keeper: a small child process that kills PostgreSQL when the
 * primary lease runs out and pgwarden itself cannot (it is stopped with
 * SIGSTOP, hung, or killed while PostgreSQL keeps running).
 *
 * pgwarden forks it at start, before the event loop creates any thread, and
 * shares one page with it (a file in raft.data_dir, mapped by both): the
 * fence deadline on CLOCK_MONOTONIC (system-wide, so both processes read the
 * same clock) and the pid of the pgwarden that owns it. pgwarden moves the
 * deadline with every confirmed lease renewal (ha/lease.h) and clears it only
 * once PostgreSQL cannot be writing as a primary. The keeper checks every
 * KEEPER_TICK_MS; past the deadline it SIGKILLs every process of the
 * instance (pg/instance.h: the postmaster first, then every backend, each of
 * which runs in a session of its own), clears the deadline once none is left
 * and says so in the log.
 *
 * It stands on its own: a session and process group of its own (a signal to
 * pgwarden's group does not stop it), its memory locked when the limits
 * allow (RLIMIT_MEMLOCK; the Debian unit raises it), and what it kills known
 * from memory set up at start: at fence time it reads /proc, never the data
 * directory (a hung disk cannot stall it).
 *
 * When pgwarden dies or exits without vouching for PostgreSQL, the keeper
 * keeps watching until the deadline, then fences and exits; if a new
 * pgwarden takes the page over first (it writes its own pid), the old keeper
 * exits without touching anything. */
#ifndef PGW_HA_KEEPER_H
#define PGW_HA_KEEPER_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/status.h"

#define KEEPER_TICK_MS 20
#define KEEPER_FILE "fence.state"

struct keeper;

/* Fork the keeper and take the page over. state_dir: where the shared page
 * lives (raft.data_dir), which the caller has locked against a second
 * pgwarden; pg_data_dir: the instance to kill. Call before any thread
 * exists. The deadline already on the page is kept. */
int keeper_start(const char *state_dir, const char *pg_data_dir, struct keeper **out, char *err,
                 size_t errlen) PGW_MUST_CHECK;
/* Monotonic ms after which PostgreSQL must be dead; 0 = nothing to guard. */
void keeper_set_deadline(struct keeper *k, uint64_t deadline_ms);
uint64_t keeper_deadline(const struct keeper *k);
/* Times the keeper killed PostgreSQL since the page was made. */
uint64_t keeper_fences(const struct keeper *k);
/* The keeper locked its memory (mlockall). */
bool keeper_memory_locked(const struct keeper *k);
/* pgwarden stops and vouches for PostgreSQL (stopped, a replica, or left
 * running in maintenance mode): clear the deadline, tell the keeper to exit,
 * reap it, free k. */
void keeper_stop(struct keeper *k);
/* pgwarden exits without vouching (a failed start, a stop that could not
 * stop PostgreSQL): the deadline stays and the keeper guards it alone, then
 * exits. Frees k. */
void keeper_detach(struct keeper *k);
pid_t keeper_pid(const struct keeper *k);
/* The keeper process still runs (not exited, not a zombie). */
bool keeper_alive(const struct keeper *k);

#endif
