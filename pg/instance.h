/* Every process of one PostgreSQL instance, found from /proc, and killing
 * them all: what a fence must stop.
 *
 * Neither the postmaster's process group nor its session tells: each child
 * of the postmaster calls setsid() (InitPostmasterChild), so a signal to the
 * postmaster's group reaches the postmaster alone, and a backend busy in a
 * statement notices its postmaster's death only when it next waits for its
 * client: a long INSERT ... SELECT goes on and commits. What they all share
 * is the working directory: the postmaster chdir()s to the data directory
 * (ChangeToDataDir) and every process it forks inherits it, including one
 * that outlived a killed postmaster.
 *
 * A process belongs to the instance when its working directory is the data
 * directory and it is a `postgres` executable, or a descendant of one seen in
 * the same scan (archive_command, restore_command). An operator's shell
 * sitting in the data directory is not one. Reading another user's cwd is
 * refused by the kernel, so only our own user's processes can match.
 *
 * Safe in the fence keeper (a forked child, possibly with a hung disk): no
 * allocation, no stdio, nothing read from the data directory; /proc only.
 * Not reentrant (one scan buffer per process). */
#ifndef PGW_PG_INSTANCE_H
#define PGW_PG_INSTANCE_H

#include <stdbool.h>
#include <sys/types.h>

#include "common/status.h"

#define PGINST_PATH_MAX 1024

struct pginst {
    char dir[PGINST_PATH_MAX]; /* the data directory as the kernel shows a cwd */
    /* PGW_TEST_FENCE_POSTMASTER_GROUP=1: a deliberately broken fence for the
     * chaos suite's self-test (the old one: SIGKILL to the postmaster's
     * process group only); its busy-session checker must catch it */
    bool test_group_only;
};

struct pginst_kill_result {
    unsigned found;     /* processes of the instance seen, over all passes */
    unsigned killed;    /* SIGKILLs delivered */
    unsigned left;      /* still running when the budget ran out (0: all gone) */
    pid_t first_killed; /* the first process signalled: a postmaster when one ran */
};

/* Resolve data_dir (symlinks, "..") as the kernel reports a working
 * directory. A data directory that does not exist yet is resolved through
 * its parent. PGW_EINVAL when it is relative or too long. */
int pginst_init(struct pginst *pi, const char *data_dir, char *err, size_t errlen) PGW_MUST_CHECK;

/* SIGKILL every process of the instance: postmasters first (so nothing new
 * is forked), then every other process, scan after scan until a scan finds
 * none or budget_ms has passed (a process in uninterruptible sleep dies only
 * when its I/O returns; it can run no more code of its own meanwhile). */
void pginst_kill(const struct pginst *pi, unsigned budget_ms, struct pginst_kill_result *res);

/* Processes of the instance alive now (zombies do not count). */
unsigned pginst_count(const struct pginst *pi);
/* The same, without `postgres --single` (pgwarden's own crash recovery
 * before pg_rewind): what could still acknowledge a commit to a client. */
unsigned pginst_count_serving(const struct pginst *pi);

#endif
