/* Rewind check and rejoin of the local node (see pgnode.h).
 *
 * Happy path: [stop] -> pg_controldata -> [single-user crash recovery ->
 * pg_controldata] -> [pg_waldump: end of the last checkpoint record, for a
 * former primary] -> IDENTIFY_SYSTEM + TIMELINE_HISTORY on the primary ->
 * pgrewind_decide() -> (rejoin) [CHECKPOINT on the primary -> pg_rewind] ->
 * standby configuration -> start.
 * Failure modes: primary unreachable or refusing the replication
 * connection; pg_rewind failing (then: data dir moved aside + re-clone when
 * remove_data_directory_on_rewind_failure, else needs_reinit with the
 * reason); a different system identifier (IMPOSSIBLE). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "pg/pgnode_internal.h"

/* ---- rewind check ----------------------------------------------------------------------- */

static void cd_done(struct pgctl *ctl, int status, const struct pg_controldata *cd, void *ctx)
{
    (void)cd;
    struct pgnode *n = ctx;
    if (status != PGW_OK)
        pgnode__copy_str(n->err, sizeof n->err, pgctl_error(ctl));
    pgnode__advance(n, status);
}

static int do_controldata(struct pgnode *n, enum step step)
{
    n->step = step;
    return pgnode__ctl_rc(n, pgctl_controldata(n->ctl, cd_done, n));
}

static void fetch_done(int status, const char *error, const struct pgrewind_primary *p, void *ctx)
{
    struct pgnode *n = ctx;
    n->fetch = NULL;
    if (status != PGW_OK) {
        pgnode__set_err(n, "cannot read the primary's timeline from %s:%u: %s", n->host, (unsigned)n->port,
                error);
    } else {
        n->primary = *p;
    }
    pgnode__advance(n, status);
}

static int do_fetch(struct pgnode *n)
{
    struct pgconn_params p;
    int rc = pgconf_conn_params(n->cfg, PGCONF_REPLICATION, n->host, n->port, NULL, true, &p);
    if (rc) {
        pgnode__set_err(n, "out of memory");
        return rc;
    }
    n->step = S_FETCH;
    rc = pgrewind_fetch_primary(n->loop, &p, 10000, fetch_done, n, &n->fetch);
    pgconn_params_free(&p);
    if (rc)
        pgnode__set_err(n, "cannot query the primary's timeline: %s", pgw_strerror(rc));
    return rc;
}

static void waldump_done(struct proc *p, const struct proc_result *r, void *ctx)
{
    (void)p;
    struct pgnode *n = ctx;
    n->proc = NULL;
    /* pg_waldump is expected to fail on the 2nd record: its error is the answer */
    n->local.checkpoint_end = pgrewind_parse_waldump_end(r->output, r->tail, n->local.lsn);
    char a[24];
    pg_lsn_format(n->local.checkpoint_end, a, sizeof a);
    log_info("pg", "end of the last checkpoint record: %s", n->local.checkpoint_end ? a : "unknown");
    pgnode__advance(n, PGW_OK);
}

static int do_waldump(struct pgnode *n)
{
    char file[4200], waldir[4200], tli[16], lsn[24];
    snprintf(file, sizeof file, "%s/pg_waldump", pgctl_bin_dir(n->ctl));
    snprintf(waldir, sizeof waldir, "%s/pg_wal", n->cfg->postgresql.data_dir);
    snprintf(tli, sizeof tli, "%u", n->local.timeline);
    pg_lsn_format(n->local.lsn, lsn, sizeof lsn);
    char *argv[] = {file, "-p", waldir, "-t", tli, "-s", lsn, "-n", "2", NULL};
    char *env[] = {"LC_ALL=C", NULL};
    struct proc_spec spec = {.name = "pg_waldump", .file = file, .argv = argv, .env_extra = env,
                             .timeout_ms = 30000, .capture_stdout = 16384};
    char eb[512];
    n->step = S_WALDUMP;
    int rc = proc_spawn(n->loop, &spec, waldump_done, n, &n->proc, eb, sizeof eb);
    if (rc)
        pgnode__set_err(n, "%s", eb);
    return rc;
}

/* The history file of the local timeline, if there is one to read: the
 * rewind decision compares it with the primary's when both are on one
 * timeline number (pgrewind_decide). */
static void local_history(struct pgnode *n)
{
    n->local.history_known = false;
    if (n->local.timeline <= 1)
        return;
    char eb[600];
    int rc = pg_tli_history_read(n->cfg->postgresql.data_dir, n->local.timeline,
                                 &n->local.history, eb, sizeof eb);
    if (rc == PGW_ENOTFOUND)
        return;
    if (rc != PGW_OK) {
        log_warn("pg", "%s: not read: timelines compared by number only", eb);
        return;
    }
    n->local.history_known = true;
}

/* Local timeline and position from the control file (Patroni's
 * _get_local_timeline_lsn_from_controldata). */
static void local_from_controldata(struct pgnode *n)
{
    const struct pg_controldata *cd = pgctl_last_controldata(n->ctl);
    memset(&n->local, 0, sizeof n->local);
    n->local.system_identifier = cd->system_identifier;
    bool recovery = cd->state == PG_CLUSTER_SHUT_DOWN_RECOVERY ||
                    cd->state == PG_CLUSTER_ARCHIVE_RECOVERY;
    if (recovery && cd->min_recovery_lsn != 0 && cd->min_recovery_tli != 0) {
        n->local.was_primary = false;
        n->local.lsn = cd->min_recovery_lsn;
        n->local.timeline = cd->min_recovery_tli;
    } else {
        n->local.was_primary = true;
        n->local.lsn = cd->checkpoint_lsn;
        n->local.timeline = cd->checkpoint_tli;
    }
    local_history(n);
}

static bool cd_clean(const struct pg_controldata *cd)
{
    return cd->state == PG_CLUSTER_SHUT_DOWN || cd->state == PG_CLUSTER_SHUT_DOWN_RECOVERY;
}

/* A standby that crashed (kill -9, power loss). Its minimum recovery point
 * bounds every page on disk, so it decides the rewind question as well as
 * a clean shutdown would, and PostgreSQL resumes recovery by itself on
 * start. Single-user crash recovery here would END recovery: an
 * end-of-recovery checkpoint the primary never wrote, after which the
 * replica cannot stream until the primary's WAL passes that point. It is
 * run only when pg_rewind is needed (pg_rewind wants a clean shutdown). */
static bool cd_crashed_standby(const struct pg_controldata *cd)
{
    return cd->state == PG_CLUSTER_ARCHIVE_RECOVERY && cd->min_recovery_lsn != 0 &&
           cd->min_recovery_tli != 0;
}

/* A base backup whose first start failed (e.g. a stale socket lock): its
 * control file still says "in production" (copied from the primary) and
 * backup_label names where replay must begin. It holds nothing of its own
 * past that backup, so it needs neither a rewind nor crash recovery; and
 * single-user crash recovery would do harm: it ends recovery with a
 * checkpoint the primary never wrote, and the copy can no longer stream.
 * (A primary's leftover exclusive-backup backup_label has no
 * standby.signal: standbys cannot take exclusive backups.) */
static bool unstarted_base_backup(const struct pgnode *n)
{
    char p[4200];
    snprintf(p, sizeof p, "%s/backup_label", n->cfg->postgresql.data_dir);
    if (access(p, F_OK) != 0)
        return false;
    snprintf(p, sizeof p, "%s/standby.signal", n->cfg->postgresql.data_dir);
    return access(p, F_OK) == 0;
}

static int start_rewind_check(struct pgnode *n)
{
    if (pg_postmaster_running(n->cfg->postgresql.data_dir, NULL)) {
        pgnode__set_err(n, "rewind check: PostgreSQL is running on %s; stop it first",
                n->cfg->postgresql.data_dir);
        return PGW_ECONFLICT;
    }
    memset(&n->decision, 0, sizeof n->decision);
    return do_controldata(n, S_CD1);
}

int pgnode_rewind_check(struct pgnode *n, const char *host, uint16_t port,
                        pgnode_rewind_check_cb cb, void *ctx)
{
    if (!host || !*host || !port) {
        pgnode__set_err(n, "rewind check: the primary's host and port are required");
        return PGW_EINVAL;
    }
    int rc = pgnode__begin(n, F_REWIND_CHECK, ctx);
    if (rc)
        return rc;
    n->rccb = cb;
    pgnode__copy_str(n->host, sizeof n->host, host);
    n->port = port;
    rc = start_rewind_check(n);
    if (rc)
        return pgnode__abort_begin(n, rc);
    return PGW_OK;
}

/* ---- rejoin ----------------------------------------------------------------------------- */

int pgnode_rejoin(struct pgnode *n, const char *host, uint16_t port, pgnode_rejoin_cb cb, void *ctx)
{
    if (!host || !*host || !port) {
        pgnode__set_err(n, "rejoin: the primary's host and port are required");
        return PGW_EINVAL;
    }
    int rc = pgnode__begin(n, F_REJOIN, ctx);
    if (rc)
        return rc;
    n->rjcb = cb;
    memset(&n->rj, 0, sizeof n->rj);
    n->recloning = false;
    pgnode__copy_str(n->host, sizeof n->host, host);
    n->port = port;
    rc = pgnode__do_stop(n, PGCTL_STOP_FAST);
    if (rc)
        return pgnode__abort_begin(n, rc);
    return PGW_OK;
}

static int do_rewind(struct pgnode *n)
{
    struct pgconn_params p;
    int rc = pgconf_conn_params(n->cfg, PGCONF_REWIND, n->host, n->port, "postgres", false, &p);
    if (rc) {
        pgnode__set_err(n, "out of memory");
        return rc;
    }
    char ci[2048];
    rc = pgconn_params_to_conninfo(&p, false, ci, sizeof ci);
    pgconn_params_free(&p);
    if (rc) {
        pgnode__set_err(n, "rewind: source connection string too long");
        return rc;
    }
    n->step = S_REWIND;
    return pgnode__ctl_rc(n, pgctl_rewind(n->ctl, ci, 0, pgnode__ctl_done, n));
}

/* Rewind impossible or failed: re-clone when allowed, else report. */
static int rejoin_fallback(struct pgnode *n, const char *why, bool allowed)
{
    pgnode__copy_str(n->rj.reason, sizeof n->rj.reason, why);
    if (!allowed) {
        n->rj.needs_reinit = true;
        pgnode__set_err(n, "rejoin: needs reinit: %s", why);
        return PGW_EREFUSED;
    }
    char eb[1024];
    int rc = pgnode_move_aside(n->cfg->postgresql.data_dir, n->rj.moved_to, sizeof n->rj.moved_to,
                               eb, sizeof eb);
    if (rc) {
        n->rj.needs_reinit = true;
        pgnode__set_err(n, "rejoin: %s; %s", why, eb);
        return rc;
    }
    n->recloning = true;
    return pgnode__do_basebackup(n);
}

static void rejoin_decided(struct pgnode *n)
{
    const struct cfg_postgresql *pg = &n->cfg->postgresql;
    int rc;
    switch (n->decision.verdict) {
    case PGREWIND_NOT_NEEDED:
        log_info("pg", "rejoin: no rewind needed (%s)", n->decision.reason);
        pgnode__copy_str(n->rj.reason, sizeof n->rj.reason, n->decision.reason);
        rc = pgnode__configure_standby(n, NULL);
        if (rc == PGW_OK)
            rc = pgnode__do_start(n);
        break;
    case PGREWIND_IMPOSSIBLE:
        rc = rejoin_fallback(n, n->decision.reason, pgnode__remove_on_diverged(n));
        break;
    case PGREWIND_NEEDED:
    default:
        log_info("pg", "rejoin: pg_rewind needed (%s)", n->decision.reason);
        if (pgnode__use_rewind(n) && !cd_clean(pgctl_last_controldata(n->ctl))) {
            /* a crashed standby: pg_rewind needs it shut down cleanly */
            log_info("pg", "%s was not shut down cleanly: crash recovery first, in single-user "
                     "mode, then the rewind check again", pg->data_dir);
            n->step = S_RECOVER;
            rc = pgnode__ctl_rc(n, pgctl_crash_recover(n->ctl, 0, pgnode__ctl_done, n));
        } else if (!pgnode__use_rewind(n)) {
            char why[600];
            snprintf(why, sizeof why, "%s, and use_pg_rewind is off", n->decision.reason);
            /* Patroni: without pg_rewind only the diverged-timelines flag */
            rc = rejoin_fallback(n, why, pgnode__remove_on_diverged(n));
        } else {
            pgnode__copy_str(n->rj.reason, sizeof n->rj.reason, n->decision.reason);
            rc = pgnode__do_sql_at(n, S_SRC_CHECKPOINT, strdup("CHECKPOINT"), n->host, n->port);
        }
        break;
    }
    if (rc)
        pgnode__finish(n, rc);
}


/* The state machine of the rewind-check and rejoin steps. */
void pgnode__advance_rejoin(struct pgnode *n, enum step done, int status)
{
    int rc = status;
    if (rc) {
        if (n->flow == F_REJOIN && done == S_REWIND) {
            char why[PGNODE_ERR_MAX + 32] = "pg_rewind failed: ";
            pgnode__copy_str(why + strlen(why), PGNODE_ERR_MAX, n->err);
            /* Patroni (rewind.py): after a failed pg_rewind, either flag */
            rc = rejoin_fallback(n, why, pgnode__remove_on_rewind_failure(n) ||
                                             pgnode__remove_on_diverged(n));
        }
        if (rc)
            pgnode__finish(n, rc); /* else the re-clone runs */
        return;
    }
    if (done == S_STOP) {
        rc = start_rewind_check(n);
    } else if (done == S_CD1 || done == S_CD2) {
        const struct pg_controldata *cd = pgctl_last_controldata(n->ctl);
        if (cd_crashed_standby(cd) && done == S_CD1) {
            log_info("pg", "%s: a standby that was not shut down cleanly (\"%s\"); deciding from "
                     "its minimum recovery point %X/%X on timeline %u", n->cfg->postgresql.data_dir,
                     cd->state_text, (unsigned)(cd->min_recovery_lsn >> 32),
                     (unsigned)cd->min_recovery_lsn, cd->min_recovery_tli);
            local_from_controldata(n);
            rc = do_fetch(n);
        } else if (!cd_clean(cd) && done == S_CD1 && unstarted_base_backup(n)) {
            log_info("pg", "%s is a base backup that never started (backup_label and "
                     "standby.signal present): starting it as a standby without crash recovery",
                     n->cfg->postgresql.data_dir);
            n->decision.verdict = PGREWIND_NOT_NEEDED;
            pgnode__copy_str(n->decision.reason, sizeof n->decision.reason,
                             "a base backup that never started replays from its own start");
            if (n->flow == F_REWIND_CHECK) {
                pgnode__finish(n, PGW_OK);
                return;
            }
            rejoin_decided(n);
            return;
        } else if (!cd_clean(cd) && done == S_CD1) {
            log_info("pg", "%s was not shut down cleanly (\"%s\"): crash recovery first, in "
                     "single-user mode", n->cfg->postgresql.data_dir, cd->state_text);
            n->step = S_RECOVER;
            rc = pgnode__ctl_rc(n, pgctl_crash_recover(n->ctl, 0, pgnode__ctl_done, n));
        } else if (!cd_clean(cd)) {
            pgnode__set_err(n, "%s is still \"%s\" after crash recovery", n->cfg->postgresql.data_dir,
                    cd->state_text);
            rc = PGW_ECONFLICT;
        } else {
            local_from_controldata(n);
            rc = n->local.was_primary ? do_waldump(n) : do_fetch(n);
        }
    } else if (done == S_RECOVER) {
        rc = do_controldata(n, S_CD2);
    } else if (done == S_WALDUMP) {
        rc = do_fetch(n);
    } else if (done == S_FETCH) {
        pgrewind_decide(&n->local, &n->primary, &n->decision);
        log_info("pg", "rewind check against %s:%u: %s (%s)", n->host, (unsigned)n->port,
                 n->decision.verdict == PGREWIND_NEEDED       ? "rewind needed"
                 : n->decision.verdict == PGREWIND_NOT_NEEDED ? "no rewind needed"
                                                              : "rewind impossible",
                 n->decision.reason);
        if (n->flow == F_REWIND_CHECK) {
            pgnode__finish(n, PGW_OK);
            return;
        }
        rejoin_decided(n);
        return;
    } else if (done == S_SRC_CHECKPOINT) {
        rc = do_rewind(n);
    } else if (done == S_REWIND) {
        n->rj.rewound = true;
        rc = pgnode__configure_standby(n, NULL);
        if (!rc)
            rc = pgnode__do_start(n);
    } else if (done == S_BASEBACKUP) {
        n->rj.recloned = true;
        rc = pgnode__configure_standby(n, NULL);
        if (!rc)
            rc = pgnode__do_start(n);
    } else if (done == S_START) {
        pgnode__finish(n, PGW_OK);
        return;
    }
    if (rc)
        pgnode__finish(n, rc);
}
