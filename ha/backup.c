#include "ha/backup.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/log.h"
#include "pg/pgbackrest.h"
#include "pg/proc.h"

/* how often a node re-reads the repository when nothing changed it */
#define INFO_PERIOD_MS (300u * 1000u)
#define INFO_TIMEOUT_MS (120u * 1000u)
#define STANZA_TIMEOUT_MS (300u * 1000u)
#define RETRY_FIRST_MS (60u * 1000u)
#define RETRY_MAX_MS (3600u * 1000u)
#define INFO_CAPTURE (4u << 20)

enum bstep { B_IDLE = 0, B_STANZA, B_INFO, B_BACKUP, B_FILL };

struct backup {
    uv_loop_t *loop;
    const struct cfg *cfg;
    struct proc *proc;
    enum bstep step;
    uint64_t step_epoch;      /* epoch the running command was started in */
    uint64_t started_ms, started_wall_ms;
    char running_type[8];
    char running_why[128];

    uint64_t prepared_epoch;  /* stanza-create succeeded as primary of this epoch */
    uint64_t filled_epoch;    /* the previous timeline's segments pushed in this epoch */
    uint64_t fill_retry_at_ms;
    unsigned fill_failures;
    struct pgbackrest_fill fill;
    size_t fill_next;
    bool info_ok;             /* the last info succeeded */
    struct pgbackrest_info info;
    uint64_t info_wall_ms;    /* when it was read */
    uint64_t info_due_ms;     /* monotonic: read again at (0: now) */
    char info_error[256];

    unsigned failures;        /* consecutive failed backups or stanza-creates */
    uint64_t retry_at_ms;
    uint64_t failures_total, successes;
    bool last_ok;
    char last_type[8];
    char last_result[512];
    uint64_t last_end_wall_ms;

    char requested_type[8];
    /* a backup ended: it is reported (GET /backup "last") once the
     * repository was read again, so its list shows it */
    bool reread_pending;
    bool cancelled;           /* stopped because this node stopped serving as primary */
    backup_record_fn record;
    void *record_ctx;
    bool record_pending;      /* the ended backup is recorded once the repository was read */
    uint64_t last_start_wall_ms;
    uint64_t serving_epoch;   /* the epoch it serves as primary in; 0: not serving */
    uint64_t now_ms;          /* the owner's monotonic clock at the last step */
};

int backup_new(uv_loop_t *loop, const struct cfg *cfg, backup_record_fn record, void *record_ctx,
               struct backup **out, char *err, size_t errlen)
{
    *out = NULL;
    if (!cfg_backup_enabled(&cfg->backup) || cfg->witness)
        return PGW_OK;
    char e[512];
    int rc = pgbackrest_conf_write(cfg, e, sizeof e);
    if (rc != PGW_OK) {
        snprintf(err, errlen, "backup: %s", e);
        return rc;
    }
    struct backup *b = calloc(1, sizeof *b);
    if (b == NULL) {
        snprintf(err, errlen, "backup: out of memory");
        return PGW_ENOMEM;
    }
    b->loop = loop;
    b->cfg = cfg;
    b->record = record;
    b->record_ctx = record_ctx;
    *out = b;
    return PGW_OK;
}

void backup_set_config(struct backup *b, const struct cfg *cfg)
{
    if (b != NULL)
        b->cfg = cfg;
}

void backup_free(struct backup *b)
{
    if (b == NULL)
        return;
    if (b->proc != NULL)
        proc_abandon(b->proc);
    pgbackrest_fill_free(&b->fill);
    free(b);
}

static uint64_t backoff_ms(unsigned failures)
{
    uint64_t ms = RETRY_FIRST_MS;
    for (unsigned i = 1; i < failures && ms < RETRY_MAX_MS; i++)
        ms *= 2;
    return ms < RETRY_MAX_MS ? ms : RETRY_MAX_MS;
}

/* pgbackrest's verdict: its last "ERROR: [nnn]: ..." line (the lines
 * after it only say that the command ended), else its last line. */
static void verdict(const char *t, size_t n, const char **line, int *len)
{
    const char *last = NULL;
    size_t last_len = 0, e = n;
    while (e > 0) {
        size_t b = e;
        while (b > 0 && t[b - 1] != '\n')
            b--;
        if (last == NULL && e > b) {
            last = t + b;
            last_len = e - b;
        }
        if (memmem(t + b, e - b, "ERROR:", 6) != NULL) {
            *line = t + b;
            *len = (int)(e - b);
            return;
        }
        if (b == 0)
            break;
        e = b - 1;
    }
    *line = last != NULL ? last : "";
    *len = (int)last_len;
}

static void last_lines(const struct proc_result *res, char *buf, size_t len)
{
    const char *t = res->tail != NULL ? res->tail : "";
    size_t n = strlen(t);
    while (n > 0 && (t[n - 1] == '\n' || t[n - 1] == ' '))
        n--;
    const char *line;
    int ll;
    verdict(t, n, &line, &ll);
    if (res->status == PGW_ETIMEDOUT)
        snprintf(buf, len, "timed out (backup.timeout); last output: %.*s", ll, line);
    else if (res->term_signal != 0)
        snprintf(buf, len, "killed by signal %d; last output: %.*s", res->term_signal, ll, line);
    else
        snprintf(buf, len, "exit %d: %.*s", res->exit_code, ll, line);
}

static void done(struct proc *p, const struct proc_result *res, void *ctx);

static int run(struct backup *b, enum bstep step, const char *command, const char *const *extra,
               const char *arg, uint32_t timeout_ms, bool log_output, const char *name, uint64_t epoch,
               uint64_t now_ms, uint64_t wall_ms)
{
    char **argv = pgbackrest_argv(b->cfg, command, extra, arg);
    if (argv == NULL) {
        log_error("backup", "out of memory starting pgbackrest %s", command);
        return PGW_ENOMEM;
    }
    struct proc_spec spec = {
        .name = name,
        .file = argv[0],
        .argv = argv,
        .timeout_ms = timeout_ms,
        .log_output = log_output,
        .capture_stdout = step == B_INFO ? INFO_CAPTURE : 0,
    };
    char eb[512];
    int rc = proc_spawn(b->loop, &spec, done, b, &b->proc, eb, sizeof eb);
    pgbackrest_argv_free(argv);
    if (rc != 0) {
        log_error("backup", "cannot run pgbackrest %s: %s", command, eb);
        return rc;
    }
    b->step = step;
    b->step_epoch = epoch;
    b->started_ms = now_ms;
    b->started_wall_ms = wall_ms;
    return PGW_OK;
}

static void fail(struct backup *b, uint64_t now_ms, const char *what, const char *why)
{
    b->failures++;
    uint64_t wait = backoff_ms(b->failures);
    b->retry_at_ms = now_ms + wait;
    log_error("backup", "%s failed (%s); next try in %" PRIu64 " s", what, why, wait / 1000);
}

/* Hand the ended backup to the owner; the repository's newest backup is
 * its label when it ended after this one started. */
static void record_last(struct backup *b)
{
    if (b->record == NULL)
        return;
    const char *label = "";
    if (b->last_ok && b->info_ok && b->info.last_stop_s * 1000 + 1000 >= b->last_start_wall_ms)
        label = b->info.last_label;
    struct backup_record r = {
        .type = b->last_type,
        .label = label,
        .result = b->last_result,
        .ok = b->last_ok,
        .started_wall_ms = b->last_start_wall_ms,
        .ended_wall_ms = b->last_end_wall_ms,
    };
    b->record(b->record_ctx, &r);
}

static void done(struct proc *p, const struct proc_result *res, void *ctx)
{
    (void)p;
    struct backup *b = ctx;
    enum bstep step = b->step;
    b->proc = NULL;
    b->step = B_IDLE;
    bool cancelled = b->cancelled;
    uint64_t now = b->now_ms; /* the owner's clock, as retry_at_ms is compared with */
    char why[400];
    last_lines(res, why, sizeof why);
    switch (step) {
    case B_STANZA:
        if (cancelled) {
            /* no longer primary: the next epoch prepares again */
        } else if (res->status == PGW_OK) {
            b->prepared_epoch = b->step_epoch;
            b->failures = 0;
            b->info_due_ms = 0;
            log_info("backup", "stanza %s ready in the repository", b->cfg->backup.stanza);
        } else {
            fail(b, now, "pgbackrest stanza-create", why);
        }
        break;
    case B_INFO: {
        b->info_due_ms = now + INFO_PERIOD_MS;
        b->reread_pending = false;
        /* recorded after this read either way (a repository that cannot be
         * read still gets the result recorded, without a label) */
        bool record = b->record_pending;
        b->record_pending = false;
        char err[256];
        if (res->status != PGW_OK) {
            snprintf(b->info_error, sizeof b->info_error, "pgbackrest info: %s", why);
        } else if (pgbackrest_info_parse(res->output ? res->output : "", res->output_len,
                                         b->cfg->backup.stanza, &b->info, err,
                                         sizeof err) != PGW_OK) {
            snprintf(b->info_error, sizeof b->info_error, "%s", err);
        } else {
            b->info_ok = true;
            b->info_wall_ms = clock_wall_ms();
            b->info_error[0] = '\0';
            if (record)
                record_last(b);
            break;
        }
        if (b->info_ok || b->info_wall_ms == 0)
            log_warn("backup", "cannot read the repository: %s", b->info_error);
        b->info_ok = false;
        if (record)
            record_last(b);
        break;
    }
    case B_BACKUP: {
        uint64_t secs = (now - b->started_ms) / 1000;
        b->last_end_wall_ms = clock_wall_ms();
        snprintf(b->last_type, sizeof b->last_type, "%s", b->running_type);
        b->info_due_ms = 0; /* the repository changed (or not: look) */
        b->reread_pending = true;
        b->record_pending = true;
        b->last_start_wall_ms = b->started_wall_ms;
        if (b->cancelled) {
            b->last_ok = false;
            snprintf(b->last_result, sizeof b->last_result, "%s backup stopped after %" PRIu64
                     " s: this node is no longer the primary (the new primary takes over the "
                     "schedule)", b->running_type, secs);
        } else if (res->status == PGW_OK) {
            b->last_ok = true;
            b->failures = 0;
            b->successes++;
            snprintf(b->last_result, sizeof b->last_result, "%s backup done in %" PRIu64 " s",
                     b->running_type, secs);
            log_info("backup", "%s", b->last_result);
        } else {
            b->last_ok = false;
            b->failures_total++;
            snprintf(b->last_result, sizeof b->last_result, "%s backup failed after %" PRIu64
                     " s: %s", b->running_type, secs, why);
            char what[32];
            snprintf(what, sizeof what, "%s backup", b->running_type);
            fail(b, now, what, why);
        }
        break;
    }
    case B_FILL:
        if (cancelled) {
            pgbackrest_fill_free(&b->fill);
            break;
        }
        if (res->status != PGW_OK) {
            b->fill_failures++;
            uint64_t wait = backoff_ms(b->fill_failures);
            b->fill_retry_at_ms = now + wait;
            log_error("backup", "pushing %s of timeline %u to the archive failed (%s); the "
                      "archive may lack it until the next try in %" PRIu64 " s",
                      b->fill.names[b->fill_next], b->fill.parent_tli, why, wait / 1000);
            pgbackrest_fill_free(&b->fill);
            break;
        }
        if (++b->fill_next < b->fill.n)
            break; /* the next one at the next step */
        log_info("backup", "pushed %zu segments of timeline %u (%s to %s, before the switch at "
                 "%X/%X) to the archive again: the archive has no gap across the switch",
                 b->fill.n, b->fill.parent_tli, b->fill.names[0], b->fill.names[b->fill.n - 1],
                 (unsigned)(b->fill.switch_lsn >> 32), (unsigned)b->fill.switch_lsn);
        b->filled_epoch = b->step_epoch;
        b->fill_failures = 0;
        pgbackrest_fill_free(&b->fill);
        break;
    case B_IDLE:
        break;
    }
    b->cancelled = false;
}

/* The previous timeline's segments, one pgbackrest archive-push at a time. */
static bool fill_step(struct backup *b, const struct backup_input *in)
{
    if (b->filled_epoch == in->epoch)
        return false;
    if (b->fill.n == 0) {
        if (in->now_ms < b->fill_retry_at_ms)
            return false;
        char err[600];
        int rc = pgbackrest_fill_plan(b->cfg->postgresql.data_dir, in->timeline, &b->fill, err,
                                      sizeof err);
        if (rc == PGW_ENOTFOUND || (rc == PGW_OK && b->fill.n == 0)) {
            b->filled_epoch = in->epoch;
            pgbackrest_fill_free(&b->fill);
            return false;
        }
        if (rc != PGW_OK) {
            b->fill_failures++;
            b->fill_retry_at_ms = in->now_ms + backoff_ms(b->fill_failures);
            log_error("backup", "cannot list the previous timeline's segments: %s", err);
            return false;
        }
        b->fill_next = 0;
        log_info("backup", "timeline %u began at %X/%X: pushing %zu segments of timeline %u "
                 "this node holds (%s to %s) to the archive, in case the old primary never did",
                 in->timeline, (unsigned)(b->fill.switch_lsn >> 32), (unsigned)b->fill.switch_lsn,
                 b->fill.n, b->fill.parent_tli, b->fill.names[0], b->fill.names[b->fill.n - 1]);
    }
    char path[4300];
    snprintf(path, sizeof path, "%s/pg_wal/%s", b->cfg->postgresql.data_dir,
             b->fill.names[b->fill_next]);
    if (run(b, B_FILL, "archive-push", NULL, path, STANZA_TIMEOUT_MS, false,
            "pgbackrest archive-push", in->epoch, in->now_ms, in->wall_ms) != PGW_OK) {
        b->fill_failures++;
        b->fill_retry_at_ms = in->now_ms + backoff_ms(b->fill_failures);
        pgbackrest_fill_free(&b->fill);
    }
    return true;
}

const char *backup_due(const struct cfg_backup *c, const struct pgbackrest_info *i,
                       uint64_t wall_ms, char *why, size_t len)
{
    uint64_t now_s = wall_ms / 1000;
    if (c->full_interval_ms > 0) {
        if (i->last_full_stop_s == 0) {
            snprintf(why, len, "the repository holds no full backup");
            return "full";
        }
        uint64_t age = now_s > i->last_full_stop_s ? now_s - i->last_full_stop_s : 0;
        if (age * 1000 >= c->full_interval_ms) {
            snprintf(why, len, "the newest full backup is %" PRIu64 " s old (full_interval %" PRIu32
                     " s)", age, c->full_interval_ms / 1000);
            return "full";
        }
    }
    if (c->diff_interval_ms > 0 && i->last_stop_s > 0) {
        uint64_t age = now_s > i->last_stop_s ? now_s - i->last_stop_s : 0;
        if (age * 1000 >= c->diff_interval_ms) {
            snprintf(why, len, "the newest backup is %" PRIu64 " s old (diff_interval %" PRIu32
                     " s)", age, c->diff_interval_ms / 1000);
            return "diff";
        }
    }
    return NULL;
}

static void start_backup(struct backup *b, const char *type, const char *why,
                         const struct backup_input *in)
{
    char t[32];
    snprintf(t, sizeof t, "--type=%s", type);
    const char *extra[] = {"--log-level-console=info", t, NULL};
    log_info("backup", "starting a %s backup: %s", type, why);
    snprintf(b->running_type, sizeof b->running_type, "%s", type);
    snprintf(b->running_why, sizeof b->running_why, "%s", why);
    if (run(b, B_BACKUP, "backup", extra, NULL, b->cfg->backup.timeout_ms, true, "pgbackrest backup",
            in->epoch, in->now_ms, in->wall_ms) != PGW_OK)
        fail(b, in->now_ms, "starting pgbackrest backup", "see above");
}

void backup_step(struct backup *b, const struct backup_input *in)
{
    if (b == NULL)
        return;
    b->serving_epoch = in->primary ? in->epoch : 0;
    b->now_ms = in->now_ms;
    if (b->proc != NULL) {
        if ((b->step == B_BACKUP || b->step == B_STANZA || b->step == B_FILL) &&
            (!in->primary || in->epoch != b->step_epoch)) {
            if (!b->cancelled) {
                log_warn("backup", "no longer the primary: stopping pgbackrest %s",
                         b->step == B_BACKUP ? "backup" : b->step == B_FILL ? "archive-push"
                                                                            : "stanza-create");
                b->cancelled = true;
                proc_cancel(b->proc);
            }
        }
        return;
    }
    if (!in->primary) {
        b->prepared_epoch = 0;
        pgbackrest_fill_free(&b->fill);
        b->requested_type[0] = '\0';
        if (in->now_ms >= b->info_due_ms) {
            const char *extra[] = {"--output=json", NULL};
            if (run(b, B_INFO, "info", extra, NULL, INFO_TIMEOUT_MS, false, "pgbackrest info",
                    in->epoch, in->now_ms, in->wall_ms) != PGW_OK)
                b->info_due_ms = in->now_ms + INFO_PERIOD_MS;
        }
        return;
    }
    if (b->prepared_epoch != in->epoch) {
        if (in->now_ms < b->retry_at_ms)
            return;
        const char *extra[] = {"--log-level-console=info", NULL};
        if (run(b, B_STANZA, "stanza-create", extra, NULL, STANZA_TIMEOUT_MS, true,
                "pgbackrest stanza-create", in->epoch, in->now_ms, in->wall_ms) != PGW_OK)
            fail(b, in->now_ms, "starting pgbackrest stanza-create", "see above");
        return;
    }
    if (fill_step(b, in))
        return;
    if (b->requested_type[0] != '\0') {
        char type[8];
        snprintf(type, sizeof type, "%s", b->requested_type);
        b->requested_type[0] = '\0';
        start_backup(b, type, "requested (POST /backup)", in);
        return;
    }
    if (in->now_ms >= b->info_due_ms) {
        const char *extra[] = {"--output=json", NULL};
        if (run(b, B_INFO, "info", extra, NULL, INFO_TIMEOUT_MS, false, "pgbackrest info", in->epoch,
                in->now_ms, in->wall_ms) != PGW_OK)
            b->info_due_ms = in->now_ms + INFO_PERIOD_MS;
        return;
    }
    if (!b->info_ok || in->now_ms < b->retry_at_ms)
        return;
    char why[160];
    const char *type = backup_due(&b->cfg->backup, &b->info, in->wall_ms, why, sizeof why);
    if (type != NULL)
        start_backup(b, type, why, in);
}

int backup_request(struct backup *b, const char *type, char *why, size_t whylen)
{
    if (type == NULL)
        type = "full";
    if (strcmp(type, "full") != 0 && strcmp(type, "diff") != 0 && strcmp(type, "incr") != 0) {
        snprintf(why, whylen, "type: expected full, diff or incr");
        return PGW_EREFUSED;
    }
    if ((b->proc != NULL && b->step == B_BACKUP) || b->requested_type[0] != '\0') {
        snprintf(why, whylen, "a %s backup is already running here",
                 b->requested_type[0] ? b->requested_type : b->running_type);
        return PGW_EBUSY;
    }
    if (b->serving_epoch == 0) {
        snprintf(why, whylen, "this node is not the primary: backups run on the primary");
        return PGW_EREFUSED;
    }
    snprintf(b->requested_type, sizeof b->requested_type, "%s", type);
    b->retry_at_ms = 0;
    return PGW_OK;
}

static json_t *wall_json(uint64_t ms)
{
    return ms ? json_integer((json_int_t)(ms / 1000)) : json_null();
}

json_t *backup_status_json(const struct backup *b, uint64_t now_ms, uint64_t wall_ms)
{
    json_t *o = json_object();
    if (o == NULL)
        return NULL;
    json_object_set_new(o, "method", json_string("pgbackrest"));
    json_object_set_new(o, "stanza", json_string(b->cfg->backup.stanza));
    json_object_set_new(o, "scheduler", json_boolean(b->prepared_epoch != 0));
    if (b->proc != NULL && b->step == B_BACKUP)
        json_object_set_new(o, "running",
                            json_pack("{s:s,s:s,s:I,s:I}", "type", b->running_type, "why",
                                      b->running_why, "started", (json_int_t)(b->started_wall_ms / 1000),
                                      "elapsed", (json_int_t)((now_ms - b->started_ms) / 1000)));
    else if (b->reread_pending)
        json_object_set_new(o, "running", json_pack("{s:s,s:s}", "type", b->last_type, "why",
                                                     "done, reading the repository"));
    else if (b->requested_type[0] != '\0')
        json_object_set_new(o, "running", json_pack("{s:s,s:s}", "type", b->requested_type,
                                                     "why", "requested, starting"));
    else
        json_object_set_new(o, "running", json_null());
    if (b->last_end_wall_ms != 0 && !b->reread_pending)
        json_object_set_new(o, "last", json_pack("{s:s,s:b,s:s,s:o}", "type", b->last_type, "ok",
                                                 b->last_ok, "result", b->last_result, "ended",
                                                 wall_json(b->last_end_wall_ms)));
    else
        json_object_set_new(o, "last", json_null());
    json_object_set_new(o, "failures", json_integer((json_int_t)b->failures_total));
    const struct pgbackrest_info *i = &b->info;
    if (b->info_ok) {
        json_t *r = json_pack("{s:b,s:i,s:s,s:i,s:o,s:o,s:o,s:I}", "stanza_found", i->stanza_found,
                              "status_code", i->status_code, "status", i->status_msg, "backups",
                              (int)i->n_backups, "last_label",
                              i->last_label[0] ? json_string(i->last_label) : json_null(),
                              "last_type", i->last_type[0] ? json_string(i->last_type) : json_null(),
                              "last_stop", wall_json(i->last_stop_s * 1000), "read",
                              (json_int_t)(b->info_wall_ms / 1000));
        if (r != NULL) {
            json_object_set_new(r, "last_full_stop", wall_json(i->last_full_stop_s * 1000));
            json_object_set_new(r, "archive_min",
                                i->archive_min[0] ? json_string(i->archive_min) : json_null());
            json_object_set_new(r, "archive_max",
                                i->archive_max[0] ? json_string(i->archive_max) : json_null());
            json_t *list = json_array();
            for (unsigned k = 0; k < i->n_list && list != NULL; k++) {
                const struct pgbackrest_backup *e = &i->list[k];
                json_array_append_new(list, json_pack("{s:s,s:s,s:I,s:I,s:s,s:s,s:I,s:I}", "label",
                                                      e->label, "type", e->type, "start",
                                                      (json_int_t)e->start_s, "stop",
                                                      (json_int_t)e->stop_s, "wal_start",
                                                      e->wal_start, "wal_stop", e->wal_stop,
                                                      "size", (json_int_t)e->size, "repo_size",
                                                      (json_int_t)e->repo_size));
            }
            json_object_set_new(r, "list", list ? list : json_array());
            if (i->last_stop_s != 0 && wall_ms / 1000 >= i->last_stop_s)
                json_object_set_new(r, "last_age", json_integer((json_int_t)(wall_ms / 1000 -
                                                                              i->last_stop_s)));
        }
        json_object_set_new(o, "repository", r ? r : json_null());
    } else {
        json_object_set_new(o, "repository", json_null());
        if (b->info_error[0])
            json_object_set_new(o, "repository_error", json_string(b->info_error));
    }
    return o;
}

void backup_get_metrics(const struct backup *b, uint64_t wall_ms, struct backup_metrics *m)
{
    memset(m, 0, sizeof *m);
    uint64_t now_s = wall_ms / 1000;
    m->repo_known = b->info_ok;
    if (b->info_ok && b->info.last_stop_s != 0) {
        m->has_backup = true;
        m->last_backup_age_s = now_s > b->info.last_stop_s ? now_s - b->info.last_stop_s : 0;
    }
    if (b->info_ok && b->info.last_full_stop_s != 0) {
        m->has_full = true;
        m->last_full_age_s = now_s > b->info.last_full_stop_s ? now_s - b->info.last_full_stop_s : 0;
    }
    m->running = b->proc != NULL && b->step == B_BACKUP;
    m->failures = b->failures_total;
    m->successes = b->successes;
}
