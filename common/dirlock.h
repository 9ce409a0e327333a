/* One daemon per state directory: an exclusive flock(2) on a file in it,
 * held for the life of the process and released by the kernel when it ends
 * (however it ends). The file holds the owner's pid, for the message a
 * second instance gets. */
#ifndef PGW_COMMON_DIRLOCK_H
#define PGW_COMMON_DIRLOCK_H

#include <stddef.h>

#include "common/status.h"

/* Take <dir>/<name>. PGW_OK with *fd_out open (O_CLOEXEC: programs pgwarden
 * runs do not inherit it; a forked child must close its copy, or the lock
 * outlives this process); PGW_EBUSY when another process holds it (err names
 * its pid); PGW_EIO otherwise. */
int dirlock_take(const char *dir, const char *name, int *fd_out, char *err,
                 size_t errlen) PGW_MUST_CHECK;

/* Whether another process holds <dir>/<name> now, without taking it for
 * longer than this call (a shared lock, released at once) and without
 * creating the file. PGW_OK when it is free or absent; PGW_EBUSY with the
 * message dirlock_take would give. For `pgwarden validate`: the answer holds
 * only at this moment. */
int dirlock_probe(const char *dir, const char *name, char *err, size_t errlen) PGW_MUST_CHECK;

#endif
