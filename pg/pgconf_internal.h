/* Internals shared by pgconf.c (parameters, postgresql.conf, pg_hba.conf,
 * pgpass) and pgconf_dir.c (postgresql.config_dir apart from the data
 * directory). Not for other modules: they use pgconf.h. */
#ifndef PGW_PG_PGCONF_INTERNAL_H
#define PGW_PG_PGCONF_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>

#include "pg/pgconf.h"

#define MANAGED_MARK "# managed by pgwarden, do not edit"
#define BASE_CONF "postgresql.base.conf"

/* A small file's text (malloc'ed); NULL with *missing when it does not
 * exist, NULL with the reason in errbuf when it cannot be read. */
char *pgconf__read_small(const char *path, bool *missing, char *errbuf, size_t errlen);

/* config_dir is not the data directory. */
bool pgconf__separate_config_dir(const struct cfg *cfg);
/* Before the managed postgresql.conf is written: give config_dir the files
 * it lacks (see pgconf_dir.c). p: the parameters about to be written. */
int pgconf__seed_config_dir(const struct cfg *cfg, const struct pgconf_params *p, char *errbuf,
                            size_t errlen) PGW_MUST_CHECK;

#endif
