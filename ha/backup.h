/* Backups as a cluster feature (backup.method: pgbackrest).
 *
 * Who runs what: only the node serving as primary (it holds the lease and
 * PostgreSQL runs as primary) creates the stanza and takes backups, so at
 * most one node does at a time; every node reads the repository
 * (`pgbackrest info`) now and then for GET /backup and /metrics. The
 * repository is the record of what exists: a new primary, after a failover
 * or a switchover, reads it and goes on with the schedule from there, and
 * a backup taken by hand counts too.
 *
 * Happy path (primary): stanza-create (idempotent), the previous
 * timeline's segments pushed again (pg/pgbackrest.h, pgbackrest_fill:
 * what the old primary may have died before archiving), info, then a full
 * backup when the newest full one is full_interval old (or none exists), a
 * differential one when the newest backup is diff_interval old; info again
 * after each. Failure modes: a command fails or overruns backup.timeout
 * (logged with pgbackrest's last lines, retried after a back-off that
 * grows with each failure); the node stops being primary while a backup
 * runs (pgbackrest is stopped: the next primary takes over the schedule).
 * pgbackrest's own output is in the log line by line (its progress). */
#ifndef PGW_HA_BACKUP_H
#define PGW_HA_BACKUP_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>
#include <uv.h>

#include "common/cfg.h"
#include "common/status.h"

struct backup;

/* A backup ended (done, failed, or stopped because the node stopped being
 * primary); label is pgBackRest's when the repository shows it, else "".
 * The owner records it in the replicated state (FSM_OP_BACKUP_DONE). */
struct backup_record {
    const char *type, *label, *result;
    bool ok;
    uint64_t started_wall_ms, ended_wall_ms;
};
typedef void (*backup_record_fn)(void *ctx, const struct backup_record *r);

/* *out NULL when backups are off. Writes pgbackrest.conf (pg/pgbackrest.h);
 * an error (err says which file and why) fails pgwarden's start. */
int backup_new(uv_loop_t *loop, const struct cfg *cfg, backup_record_fn record, void *record_ctx,
               struct backup **out, char *err, size_t errlen) PGW_MUST_CHECK;
/* The configuration was reloaded (the backup keys need a restart: only
 * the pointer changes). */
void backup_set_config(struct backup *b, const struct cfg *cfg);
/* Abandon a running command (it is killed) and free. */
void backup_free(struct backup *b);

struct backup_input {
    bool primary;        /* serving as primary: lease held, PostgreSQL a primary */
    uint64_t epoch;      /* the primary epoch this node serves in */
    uint32_t timeline;   /* PostgreSQL's */
    uint64_t now_ms;     /* monotonic */
    uint64_t wall_ms;
};

/* Called every HA tick; starts at most one command. */
void backup_step(struct backup *b, const struct backup_input *in);

/* POST /backup: take a backup of this type (full, diff, incr) now.
 * PGW_EREFUSED (why says so) when this node is not the primary or the
 * type is unknown, PGW_EBUSY when one is running. */
int backup_request(struct backup *b, const char *type, char *why, size_t whylen);

/* GET /backup: what runs, the last result here, what the repository holds. */
json_t *backup_status_json(const struct backup *b, uint64_t now_ms, uint64_t wall_ms);

struct backup_metrics {
    bool repo_known;
    uint64_t last_backup_age_s; /* valid when has_backup */
    bool has_backup;
    uint64_t last_full_age_s;   /* valid when has_full */
    bool has_full;
    bool running;
    uint64_t failures;          /* backups that failed here since start */
    uint64_t successes;
};
void backup_get_metrics(const struct backup *b, uint64_t wall_ms, struct backup_metrics *m);

/* The schedule: "full" when the newest full backup is full_interval old
 * (or there is none), else "diff" when the newest backup of any type is
 * diff_interval old, else NULL; why says which rule fired. */
struct pgbackrest_info;
const char *backup_due(const struct cfg_backup *c, const struct pgbackrest_info *info,
                       uint64_t wall_ms, char *why, size_t len);

#endif
