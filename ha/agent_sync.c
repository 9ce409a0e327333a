/* Synchronous replication on the primary (issue 7), one small step per
 * call, in the order that keeps "every member of the replicated sync set
 * has every acknowledged commit" true at each instant (ha/sync.h).
 *
 * Happy path (on): choose the standbys to wait for -> drop from the
 * replicated set whoever is no longer chosen -> write
 * synchronous_standby_names and reload -> wait until the walsenders show
 * they applied it (pg_stat_replication.sync_priority is set by each
 * walsender from its own configuration) -> read the primary's WAL position
 * in a later status query: the change's LSN -> once a chosen standby
 * reports sync and has flushed past that LSN, add it to the replicated set.
 * An LSN read before PostgreSQL applied the change could be older than a
 * commit acknowledged without the new standby meanwhile.
 * Quorum: the replicated set grows before PostgreSQL's list does, and
 * shrinks only once k members of the new list flushed past the change.
 * Failure modes: a standby dies or lags past maximum_lag_on_syncnode (it is
 * no longer chosen, next step replaces it: commits block at most about one
 * loop_wait), the reload fails (retried next step), a submission is refused
 * because the epoch moved on (this node is no longer primary). */
#include "ha/agent_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "common/log.h"
#include "ha/sync.h"
#include "pg/pgconf.h"

static void set_done(void *ctx, int status, const struct fsm_result *res, const char *msg)
{
    struct ha *h = ctx;
    (void)res;
    if (h->closing)
        return;
    h->ag.sync_inflight = false;
    if (status != 0)
        log_warn("ha", "synchronous set not recorded: %s", msg);
    ha_kick(h);
}

static bool submit_set(struct ha *h, char (*names)[SYNC_NAME_MAX], unsigned n, unsigned count,
                       bool quorum, const char *why)
{
    struct fsm_cmd c;
    fsm_cmd_init(&c, FSM_OP_SYNC_SET, NULL);
    for (unsigned i = 0; i < n && i < FSM_MAX_SYNC; i++)
        snprintf(c.u.sync.members[i], FSM_NAME_MAX, "%s", names[i]);
    c.u.sync.n = n < FSM_MAX_SYNC ? n : FSM_MAX_SYNC;
    c.u.sync.count = count;
    c.u.sync.quorum = quorum;
    c.u.sync.primary_epoch = h->fsm->st.primary.epoch;
    c.u.sync.if_version_set = fsm_cluster_level(&h->fsm->st) >= 2;
    c.u.sync.if_version = h->fsm->st.sync_version;
    char list[512] = "";
    size_t o = 0;
    for (unsigned i = 0; i < c.u.sync.n && o < sizeof list; i++)
        o += (size_t)snprintf(list + o, sizeof list - o, "%s%s", i ? ", " : "", names[i]);
    log_info("ha", "synchronous set: [%s] (%s)", list, why);
    h->ag.sync_inflight = true;
    if (submit_cmd(h->sub, &c, h->timing.retry_timeout_ms * 2, set_done, h) != 0) {
        h->ag.sync_inflight = false;
        return false;
    }
    return true;
}

static void nudge_done(struct pgnode *n, int status, void *ctx)
{
    struct ha *h = ctx;
    if (h->closing)
        return;
    if (status != 0)
        log_warn("ha", "after changing synchronous_standby_names: %s (commits waiting for a "
                 "standby may wait until its next status message)", pgnode_error(n));
    agent_op_finish(h, 0);
}

static void reload_done(struct pgctl *ctl, int status, void *vctx)
{
    struct ha *h = vctx;
    (void)ctl;
    if (h->closing)
        return;
    if (status == 0) /* status queries after this one were sent after the SIGHUP */
        h->ag.sync_reload_seq = pgmon_status(h->ag.mon)->query_seq;
    if (status == 0 && pgnode_nudge_wal(h->ag.node, nudge_done, h) == 0)
        return; /* the op ends in nudge_done */
    agent_op_finish(h, status);
}

/* Write synchronous_standby_names into the managed configuration and reload. */
static bool apply_names(struct ha *h, const char *names)
{
    struct agent *ag = &h->ag;
    if (pgnode_set_sync_names(ag->node, names) != 0)
        return false;
    struct pgconf_role role = {.standby = false};
    struct pgconf_write_result wr;
    if (pgnode_configure(ag->node, &role, &wr) != 0) {
        log_error("ha", "synchronous_standby_names: %s", pgnode_error(ag->node));
        return false;
    }
    snprintf(ag->sync_applied, sizeof ag->sync_applied, "%s", names);
    /* nobody joins until PostgreSQL is seen to apply it (sync_threshold) */
    ag->sync_change_lsn = UINT64_MAX;
    ag->sync_reload_seq = UINT64_MAX;
    ag->sync_seen_seq = 0;
    log_info("ha", "synchronous_standby_names = '%s'", names);
    agent_op_begin(h, "reload (synchronous_standby_names)", NULL);
    if (pgctl_reload(pgnode_ctl(ag->node), reload_done, h) != 0) {
        agent_op_end(h, PGW_EIO, "reload");
        return false;
    }
    return true;
}

static bool listed(char (*set)[SYNC_NAME_MAX], unsigned n, const char *name)
{
    for (unsigned i = 0; i < n; i++)
        if (strcmp(set[i], name) == 0)
            return true;
    return false;
}

static const struct pg_repl_row *repl_row(const struct pg_status *ps, const char *name)
{
    for (size_t i = 0; i < ps->nrepl; i++)
        if (strcmp(ps->repl[i].application_name, name) == 0)
            return &ps->repl[i];
    return NULL;
}

/* Every walsender's priority agrees with the new list (listed: > 0, not
 * listed: 0): each has re-read its configuration. */
static bool walsenders_applied(const struct pg_status *ps, char (*want)[SYNC_NAME_MAX], unsigned n)
{
    for (size_t i = 0; i < ps->nrepl; i++)
        if (listed(want, n, ps->repl[i].application_name) != (ps->repl[i].sync_priority > 0))
            return false;
    return true;
}

/* The LSN a joining standby must have flushed: read in a status query that
 * ran after one in which the walsenders had applied the change (the
 * query's pg_current_wal_lsn() comes before its pg_stat_replication). */
static void sync_threshold(struct ha *h, char (*want)[SYNC_NAME_MAX], unsigned n)
{
    struct agent *ag = &h->ag;
    const struct pg_status *ps = pgmon_status(ag->mon);
    if (ag->sync_change_lsn != UINT64_MAX || ag->sync_reload_seq == UINT64_MAX ||
        !ps->query_ok || ps->query_seq <= ag->sync_reload_seq)
        return;
    if (ag->sync_seen_seq == 0) {
        if (walsenders_applied(ps, want, n))
            ag->sync_seen_seq = ps->query_seq;
        return;
    }
    if (ps->query_seq > ag->sync_seen_seq) {
        ag->sync_change_lsn = ps->wal_lsn;
        log_info("ha", "synchronous_standby_names applied by PostgreSQL; a standby joins the "
                 "synchronous set once it flushed past %X/%X",
                 (unsigned)(ag->sync_change_lsn >> 32), (unsigned)ag->sync_change_lsn);
    }
}

bool agent_sync_step(struct ha *h)
{
    struct agent *ag = &h->ag;
    const struct cfg_dcs *d = &h->dcs;
    const struct fsm_state *st = &h->fsm->st;
    if (ag->busy || ag->sync_inflight)
        return ag->sync_inflight;
    bool quorum = d->synchronous_mode == CFG_SYNC_QUORUM;
    unsigned count = d->synchronous_node_count ? d->synchronous_node_count : 1;

    /* current replicated set, for this primary epoch only */
    char cur[SYNC_MAX][SYNC_NAME_MAX];
    unsigned ncur = 0;
    if (st->sync_epoch == st->primary.epoch)
        for (unsigned i = 0; i < st->n_sync && ncur < SYNC_MAX; i++)
            snprintf(cur[ncur++], SYNC_NAME_MAX, "%s", st->sync[i]);

    if (d->synchronous_mode == CFG_SYNC_OFF) {
        if (ncur > 0)
            return submit_set(h, NULL, 0, 0, false, "synchronous mode turned off");
        if (ag->sync_managed) {
            /* back to asynchronous: an empty list, still written by us */
            ag->sync_managed = false;
            return apply_names(h, "") || ag->busy;
        }
        return false;
    }
    ag->sync_managed = true;

    const struct pg_status *ps = pgmon_status(ag->mon);
    struct sync_standby sb[SYNC_MAX * 2];
    size_t n = 0;
    uint64_t now = ha_now(h);
    for (unsigned i = 0; i < st->n_members && n < sizeof sb / sizeof sb[0]; i++) {
        const struct fsm_member *m = &st->members[i];
        if (m->witness || strcmp(m->name, ha_name(h)) == 0)
            continue;
        const struct pg_repl_row *r = repl_row(ps, m->name);
        const json_t *prio = json_object_get(m->tags, "sync_priority");
        sb[n++] = (struct sync_standby){
            .name = m->name,
            .streaming = r != NULL && strcmp(r->state, "streaming") == 0,
            .sync_state = r != NULL ? r->sync_state : "",
            .flush_lsn = r != NULL ? r->flush_lsn : 0,
            .sync_priority = json_is_integer(prio) ? (int)json_integer_value(prio) : 1,
            .nosync = fsm_member_tag_bool(m, "nosync"),
            /* a standby whose pgwarden stopped reporting is gone or cut off,
             * even if its walsender has not timed out yet */
            .reporting = m->local_report_ms == 0 || now - m->local_report_ms <= 2 * (uint64_t)h->timing.ttl_ms,
            .in_set = listed(cur, ncur, m->name),
        };
    }
    struct sync_choice_in in = {
        .s = sb, .n = n, .node_count = count, .max_lag = d->maximum_lag_on_syncnode,
        .primary_lsn = ps->wal_lsn, .quorum = quorum,
    };
    char want[SYNC_MAX][SYNC_NAME_MAX];
    unsigned nwant = sync_choose(&in, want, SYNC_MAX);
    char names[1024];
    sync_standby_names(quorum, count, want, nwant, d->synchronous_mode_strict, names, sizeof names);
    /* strict with nobody chosen: keep waiting on whoever was required last */
    if (d->synchronous_mode_strict && nwant == 0 && ag->sync_applied[0] != '\0' &&
        strstr(ag->sync_applied, SYNC_PLACEHOLDER) == NULL && strncmp(ag->sync_applied, "ANY", 3) != 0)
        snprintf(names, sizeof names, "%s", ag->sync_applied);

    if (!quorum) {
        /* 1. shrink the replicated set first */
        char keep[SYNC_MAX][SYNC_NAME_MAX];
        unsigned nkeep = 0;
        for (unsigned i = 0; i < ncur; i++)
            if (listed(want, nwant, cur[i]))
                snprintf(keep[nkeep++], SYNC_NAME_MAX, "%s", cur[i]);
        if (nkeep != ncur)
            return submit_set(h, keep, nkeep, nkeep, false, "a synchronous standby left");
        /* 2. then PostgreSQL */
        if (strcmp(names, ag->sync_applied) != 0 || !ag->sync_names_set) {
            ag->sync_names_set = true;
            return apply_names(h, names) || ag->busy;
        }
        /* 3. record standbys that are sync and caught up */
        sync_threshold(h, want, nwant);
        char next[SYNC_MAX][SYNC_NAME_MAX];
        unsigned nnext = 0;
        for (unsigned i = 0; i < ncur; i++)
            snprintf(next[nnext++], SYNC_NAME_MAX, "%s", cur[i]);
        for (unsigned i = 0; i < nwant; i++) {
            const struct pg_repl_row *r = repl_row(ps, want[i]);
            if (!listed(next, nnext, want[i]) && r != NULL && strcmp(r->sync_state, "sync") == 0 &&
                r->flush_lsn >= ag->sync_change_lsn && nnext < SYNC_MAX)
                snprintf(next[nnext++], SYNC_NAME_MAX, "%s", want[i]);
        }
        if (nnext != ncur)
            return submit_set(h, next, nnext, nnext, false, "standby is synchronous and caught up");
        return false;
    }

    /* quorum: 1. grow the replicated set before PostgreSQL's list */
    char grow[SYNC_MAX][SYNC_NAME_MAX];
    unsigned ngrow = 0;
    for (unsigned i = 0; i < ncur; i++)
        snprintf(grow[ngrow++], SYNC_NAME_MAX, "%s", cur[i]);
    for (unsigned i = 0; i < nwant && ngrow < SYNC_MAX; i++)
        if (!listed(grow, ngrow, want[i]))
            snprintf(grow[ngrow++], SYNC_NAME_MAX, "%s", want[i]);
    if (ngrow != ncur || st->sync_count != count)
        return submit_set(h, grow, ngrow, count, true, "quorum members before they may acknowledge");
    /* 2. PostgreSQL's list */
    if (strcmp(names, ag->sync_applied) != 0 || !ag->sync_names_set) {
        ag->sync_names_set = true;
        return apply_names(h, names) || ag->busy;
    }
    /* 3. shrink once k members of the list have flushed past the change */
    sync_threshold(h, want, nwant);
    unsigned caught = 0;
    for (unsigned i = 0; i < nwant; i++) {
        const struct pg_repl_row *r = repl_row(ps, want[i]);
        if (r != NULL && r->flush_lsn >= ag->sync_change_lsn)
            caught++;
    }
    if (ncur > nwant && caught >= count) {
        return submit_set(h, want, nwant, count, true, "members that left the quorum list");
    }
    return false;
}
