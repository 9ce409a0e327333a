/* mkdir -p: the directories of a path that do not exist yet are created,
 * each with `mode` (initdb's 0700 for what PostgreSQL's files go in), and
 * each one is logged (module "pg"). Shared by the start-up preparation of
 * postgresql.data_dir's parents and by a postgresql.config_dir apart from
 * the data directory. */
#ifndef PGW_COMMON_MKDIRS_H
#define PGW_COMMON_MKDIRS_H

#include <stddef.h>
#include <sys/types.h>

#include "common/status.h"

/* `what` names the directory in the log and in err ("the parent of
 * postgresql.data_dir"). PGW_EIO with err naming the directory that could
 * not be made. An absolute path is expected; a relative one is left alone. */
int mkdirs(const char *path, mode_t mode, const char *what, char *err, size_t errlen)
    PGW_MUST_CHECK;

#endif
