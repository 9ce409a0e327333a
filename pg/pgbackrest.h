/* pgBackRest as pgwarden drives it (backup.method: pgbackrest).
 *
 * Every command pgwarden runs, and the archive_command / restore_command it
 * gives PostgreSQL, reads one configuration file pgwarden writes:
 * <raft.data_dir>/pgbackrest.conf, with the operator's backup.options in
 * [global] and this node's pg1-* options in [<stanza>]. A file rather than
 * command-line options because pgBackRest refuses, on the command line, an
 * option the command does not take (repo1-retention-full on archive-push)
 * and ignores it in a file; one file so that nothing pgBackRest finds on
 * its own (/etc/pgbackrest.conf) changes what pgwarden's commands do.
 *
 * Pure text builders plus the `info --output=json` reader; the runs are in
 * ha/backup.c. */
#ifndef PGW_PG_PGBACKREST_H
#define PGW_PG_PGBACKREST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/cfg.h"
#include "common/status.h"

/* <raft.data_dir>/pgbackrest.conf */
void pgbackrest_conf_path(const struct cfg *c, char *buf, size_t len);
/* The file's text (malloc'd), or NULL when out of memory. */
char *pgbackrest_conf_text(const struct cfg *c);
/* Write it (0600, atomically). */
int pgbackrest_conf_write(const struct cfg *c, char *err, size_t errlen) PGW_MUST_CHECK;

/* archive_command / restore_command as PostgreSQL runs them (through
 * /bin/sh: every word single-quoted). PGW_EINVAL when buf is too small. */
int pgbackrest_archive_command(const struct cfg *c, char *buf, size_t len) PGW_MUST_CHECK;
int pgbackrest_restore_command(const struct cfg *c, char *buf, size_t len) PGW_MUST_CHECK;

/* argv of `pgbackrest --config=F --stanza=S [extra...] <command> [arg]`:
 * malloc'd words, NULL-terminated; free with pgbackrest_argv_free. */
char **pgbackrest_argv(const struct cfg *c, const char *command, const char *const *extra,
                       const char *arg);
void pgbackrest_argv_free(char **argv);

#define PGBR_LIST_MAX 32

struct pgbackrest_backup {
    char label[64];
    char type[8];
    uint64_t start_s, stop_s;          /* Unix seconds */
    char wal_start[32], wal_stop[32];  /* first and last WAL file it needs */
    uint64_t size;                     /* database size, bytes */
    uint64_t repo_size;                /* stored in the repository, bytes */
};

/* What `pgbackrest info --output=json` says of the stanza. */
struct pgbackrest_info {
    struct pgbackrest_backup list[PGBR_LIST_MAX]; /* the newest, oldest first */
    unsigned n_list;
    bool stanza_found;
    int status_code;         /* pgBackRest's: 0 ok, 2 no valid backups, ... */
    char status_msg[128];
    unsigned n_backups;
    char last_label[64];     /* newest backup */
    char last_type[8];       /* full | diff | incr */
    uint64_t last_stop_s;    /* newest backup's end (Unix seconds); 0: none */
    uint64_t last_full_stop_s;
    char archive_min[32], archive_max[32]; /* WAL in the archive, "" when none */
};

int pgbackrest_info_parse(const char *json, size_t len, const char *stanza,
                          struct pgbackrest_info *out, char *err, size_t errlen) PGW_MUST_CHECK;

/* After a promotion: the segments of the timeline it ended (the parent
 * in pg_wal/<timeline>.history) that lie wholly before the switch point
 * and are still in pg_wal. The promoted node received them by streaming
 * and never archived them (archive_mode on archives only what a node
 * writes); the old primary may have died before it did. Pushing them
 * again is harmless: pgBackRest accepts a segment it already holds with
 * the same checksum. The segment holding the switch point is PostgreSQL's
 * own business (it archives it as .partial). */
struct pgbackrest_fill {
    uint32_t parent_tli;
    uint64_t switch_lsn;
    char switch_segment[25]; /* the parent's segment that holds the switch */
    size_t n;
    char (*names)[25];       /* sorted; malloc'd */
};

/* PGW_ENOTFOUND when there is nothing to look at (timeline 1, or no
 * history file); PGW_EIO/PGW_EPROTO with err otherwise. */
int pgbackrest_fill_plan(const char *data_dir, uint32_t timeline, struct pgbackrest_fill *out,
                         char *err, size_t errlen) PGW_MUST_CHECK;
void pgbackrest_fill_free(struct pgbackrest_fill *f);

#endif
