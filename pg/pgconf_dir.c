/* postgresql.config_dir apart from the data directory (Debian's layout,
 * /etc/postgresql/<version>/<cluster>), run as Patroni runs it
 * (postgresql/config.py): PostgreSQL starts with
 * --config-file=<config_dir>/postgresql.conf (pgctl), and the managed file
 * points hba_file and ident_file into config_dir (pgconf_build) unless the
 * parameters name other files. Synchronous: a few small local files.
 *
 * A file config_dir lacks is taken from the data directory, where
 * PostgreSQL found it until then (initdb writes its three files there, a
 * base backup copies the primary's): the operator's postgresql.conf becomes
 * postgresql.base.conf, which the managed file includes; pg_hba.conf and
 * pg_ident.conf are copied as they are. A pg_ident.conf found nowhere is
 * created empty, as Patroni does: PostgreSQL starts without one, but logs an
 * error at every start and reload. A pg_hba.conf found nowhere is left
 * missing: PostgreSQL then refuses to start and says which file it wants. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/log.h"
#include "pg/pgconf_internal.h"

const char *pgconf_config_dir(const struct cfg *cfg)
{
    const char *d = cfg->postgresql.config_dir;
    return d != NULL && *d ? d : cfg->postgresql.data_dir;
}

bool pgconf__separate_config_dir(const struct cfg *cfg)
{
    const char *d = cfg->postgresql.data_dir;
    return d != NULL && *d && strcmp(pgconf_config_dir(cfg), d) != 0;
}

const char *pgconf_config_file(const struct cfg *cfg, char *buf, size_t len)
{
    if (!pgconf__separate_config_dir(cfg))
        return NULL;
    snprintf(buf, len, "%s/postgresql.conf", pgconf_config_dir(cfg));
    return buf;
}

static bool exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* dst (0600, durably) from src's text, unless src is missing or, with
 * unless_managed, a file pgwarden wrote. *done tells whether it was. */
static int copy_from(const char *src, const char *dst, bool unless_managed, bool *done,
                     char *errbuf, size_t errlen)
{
    bool missing;
    *done = false;
    char *text = pgconf__read_small(src, &missing, errbuf, errlen);
    if (text == NULL)
        return missing ? PGW_OK : PGW_EIO;
    int rc = PGW_OK;
    if (!unless_managed || strncmp(text, MANAGED_MARK, strlen(MANAGED_MARK)) != 0) {
        rc = pgconf_write_file(dst, text, strlen(text), 0600, errbuf, errlen);
        *done = rc == PGW_OK;
        if (*done)
            log_info("pg", "copied %s to %s (postgresql.config_dir had none)", src, dst);
    }
    free(text);
    return rc;
}

/* The file a parameter names is config_dir/name (it is ours to provide). */
static bool names_ours(const struct pgconf_params *p, const char *param, const char *path)
{
    const char *v = pgconf_params_get(p, param);
    return v != NULL && strcmp(v, path) == 0;
}

int pgconf__seed_config_dir(const struct cfg *cfg, const struct pgconf_params *p, char *errbuf,
                            size_t errlen)
{
    if (!pgconf__separate_config_dir(cfg))
        return PGW_OK;
    const char *cdir = pgconf_config_dir(cfg), *ddir = cfg->postgresql.data_dir;
    char from[4200], to[4200], conf[4200];
    bool done = false;
    int rc = PGW_OK;
    snprintf(to, sizeof to, "%s/" BASE_CONF, cdir);
    snprintf(conf, sizeof conf, "%s/postgresql.conf", cdir);
    if (!exists(to) && !exists(conf)) {
        /* a data directory pgwarden managed keeps the operator's file as
         * its base; an unmanaged one has it as postgresql.conf */
        snprintf(from, sizeof from, "%s/" BASE_CONF, ddir);
        rc = copy_from(from, to, false, &done, errbuf, errlen);
        if (rc == PGW_OK && !done) {
            snprintf(from, sizeof from, "%s/postgresql.conf", ddir);
            rc = copy_from(from, to, true, &done, errbuf, errlen);
        }
    }
    static const char *const files[][2] = {{"hba_file", "pg_hba.conf"},
                                           {"ident_file", "pg_ident.conf"}};
    for (size_t i = 0; i < 2 && rc == PGW_OK; i++) {
        snprintf(to, sizeof to, "%s/%s", cdir, files[i][1]);
        if (!names_ours(p, files[i][0], to) || exists(to))
            continue;
        snprintf(from, sizeof from, "%s/%s", ddir, files[i][1]);
        rc = copy_from(from, to, false, &done, errbuf, errlen);
        if (rc == PGW_OK && !done && i == 1) {
            static const char empty[] = "# pg_ident.conf: user name maps (none), created by "
                                        "pgwarden\n";
            rc = pgconf_write_file(to, empty, sizeof empty - 1, 0600, errbuf, errlen);
            if (rc == PGW_OK)
                log_info("pg", "created an empty %s (postgresql.config_dir had none, nor the "
                         "data directory)", to);
        }
    }
    return rc;
}
