/* The controller: runs on whichever node leads Raft (once its barrier made
 * the FSM current) and writes decisions into the replicated state. Its
 * state lives in the FSM, so a new leader resumes a failover or switchover
 * where the old one stopped.
 *
 * Each tick:
 *  - no dynamic configuration yet: store bootstrap.dcs;
 *  - paused: nothing automatic;
 *  - cluster not initialized: pick the member that founds it (one with
 *    data first, so existing data is adopted, never replaced);
 *  - the primary's lease expired (judged on this node's clock from when
 *    it applied the last renewal, plus drift: ha/lease.h),
 *    or the role was released: fail over to the best eligible replica,
 *    with positions fetched fresh from each member;
 *  - a switchover is due: ask the primary to stop (PRIMARY_DEMOTE); once it
 *    reports its final LSN, promote the candidate when it has replayed it.
 * Failure modes: no eligible candidate (nothing is done; the reason per
 * member is kept for /cluster and logged when it changes), a member
 * unreachable (not eligible), a submission refused because the state moved
 * on (compare-and-set on the epoch: re-evaluated next tick). */
#include "ha/ha_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"

#define SWITCHOVER_CATCHUP_MS 30000

static void note(struct ha *h, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void note(struct ha *h, const char *fmt, ...)
{
    struct controller *c = &h->ctl;
    char buf[HA_ERR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    uint64_t now = ha_now(h);
    if (strcmp(buf, c->note) != 0 || now - c->note_logged_ms > 30000) {
        if (buf[0] != '\0')
            log_warn("ha", "controller: %s", buf);
        c->note_logged_ms = now;
    }
    snprintf(c->note, sizeof c->note, "%s", buf);
}

static void decision_done(void *ctx, int status, const struct fsm_result *res, const char *msg)
{
    struct ha *h = ctx;
    (void)res;
    h->ctl.submitting = false;
    if (h->closing)
        return;
    if (status != 0)
        log_warn("ha", "controller: decision not applied: %s", msg);
    ha_kick(h);
}

static void submit_decision(struct ha *h, struct fsm_cmd *c)
{
    h->ctl.submitting = true;
    if (submit_cmd(h->sub, c, h->timing.retry_timeout_ms * 2, decision_done, h) != 0)
        h->ctl.submitting = false;
    fsm_cmd_free(c);
}

/* Why `name` is not to be chosen for a while, or NULL. A member whose lease
 * was lost is kept out of automatic choices for ttl so a flapping node is
 * not promoted straight back; an operator who names it (switchover or
 * failover --candidate) is obeyed once it is a healthy replica, as in
 * Patroni. A refused pre_promote holds even then: the fencing script said
 * no, and it is replicated, so any leader knows. */
static const char *in_backoff(const struct ha *h, const char *name, bool operator_named)
{
    uint64_t now = ha_now(h);
    const struct fsm_member *fm = fsm_member_find(&h->fsm->st, name);
    if (fm != NULL && fsm_member_refused_recently(fm, now, h->timing.ttl_ms))
        return "pre_promote refused to promote it less than ttl ago";
    for (unsigned i = 0; i < h->ctl.n_backoff; i++) {
        if (strcmp(h->ctl.backoff_member[i], name) != 0 || now >= h->ctl.backoff_until[i])
            continue;
        if (h->ctl.backoff_why[i] == BACKOFF_FOUNDING)
            return "did not finish founding the cluster; not chosen again for a while";
        if (!operator_named)
            return "lost the primary lease less than ttl ago; chosen automatically again after "
                   "ttl, at once when named as the candidate";
    }
    return NULL;
}

static void add_backoff(struct ha *h, const char *name, uint64_t ms, enum ctl_backoff_why why)
{
    struct controller *c = &h->ctl;
    unsigned i;
    for (i = 0; i < c->n_backoff; i++)
        if (strcmp(c->backoff_member[i], name) == 0)
            break;
    if (i == c->n_backoff) {
        if (c->n_backoff == FSM_MAX_MEMBERS)
            i = 0;
        else
            c->n_backoff++;
    }
    snprintf(c->backoff_member[i], FSM_NAME_MAX, "%s", name);
    c->backoff_until[i] = ha_now(h) + ms;
    c->backoff_why[i] = why;
}

/* --- candidate choice on fresh statuses -------------------------------------- */

enum round_kind { ROUND_FAILOVER = 1, ROUND_SWITCHOVER_CHECK, ROUND_SWITCHOVER_PROMOTE };

struct round_ctx {
    enum round_kind kind;
    uint64_t epoch;            /* primary epoch the round was started for */
    uint64_t renewals;         /* the holder's renewals when the round was decided */
    char exclude[FSM_NAME_MAX];
};

static int choose(struct ha *h, struct peer_status *ps, size_t n, const struct round_ctx *rc,
                  bool *ok_lag_ignored)
{
    const struct fsm_state *st = &h->fsm->st;
    const struct fsm_primary *p = &st->primary;
    struct cand_member m[FSM_MAX_MEMBERS];
    struct cand_rules rules = {
        .sysid = strtoull(st->sysid, NULL, 10),
        .timeline = p->timeline,
        .primary_lsn = p->lsn,
        .max_lag = h->dcs.maximum_lag_on_failover,
        /* synchronous modes: only a member of the current epoch's set has
         * every acknowledged commit; an empty set means nobody does */
        .sync_only = h->dcs.synchronous_mode != CFG_SYNC_OFF,
        .exclude = rc->exclude[0] ? rc->exclude : NULL,
    };
    if (st->sw.pending && st->sw.to[0] != '\0')
        rules.only = st->sw.to;
    if (rc->kind != ROUND_FAILOVER)
        rules.exclude = p->member;
    if (st->sw.pending && st->sw.failover && st->sw.allow_data_loss) {
        rules.ignore_lag = true;
        *ok_lag_ignored = true;
    }
    /* The primary is alive in a switchover: its fresh position is the bar. */
    for (size_t i = 0; i < n; i++)
        if (strcmp(ps[i].name, p->member) == 0 && ps[i].ok && ps[i].running && !ps[i].in_recovery &&
            ps[i].lsn > rules.primary_lsn)
            rules.primary_lsn = ps[i].lsn;
    if (rc->kind == ROUND_SWITCHOVER_PROMOTE) {
        /* after a clean stop the candidate must have everything: no lag allowed */
        rules.primary_lsn = p->final_lsn;
        rules.max_lag = 0;
    }
    for (size_t i = 0; i < n; i++) {
        const struct fsm_member *fm = fsm_member_find(st, ps[i].name);
        m[i] = (struct cand_member){
            .name = ps[i].name,
            .witness = fm != NULL && fm->witness,
            .nofailover = fm != NULL && fsm_member_nofailover(fm),
            .failover_priority = fm != NULL ? fsm_member_failover_priority(fm) : 1,
            .reachable = ps[i].ok,
            .error = ps[i].error,
            .running = ps[i].running,
            .in_recovery = ps[i].in_recovery,
            .sysid = ps[i].sysid,
            .timeline = ps[i].timeline,
            .receive_lsn = ps[i].receive_lsn,
            .replay_lsn = ps[i].replay_lsn,
            .delayed = ps[i].delayed,
            .in_sync_set = fsm_in_sync_set(st, ps[i].name),
            .backoff = in_backoff(h, ps[i].name,
                                  rules.only != NULL && strcmp(rules.only, ps[i].name) == 0),
        };
    }
    char reasons[FSM_MAX_MEMBERS][CAND_REASON_MAX];
    int best = cand_choose(m, n, &rules, reasons);
    /* Quorum (ANY k of Q): each acknowledged commit is on k members of Q, so
     * the most advanced of any |Q|-k+1 of them has it. Fewer answers than
     * that prove nothing. */
    if (best >= 0 && h->dcs.synchronous_mode == CFG_SYNC_QUORUM && !rules.ignore_lag &&
        rc->kind != ROUND_SWITCHOVER_PROMOTE) {
        unsigned q = fsm_sync_size(st), k = st->sync_count ? st->sync_count : 1, answered = 0;
        for (size_t i = 0; i < n; i++)
            if (m[i].in_sync_set && m[i].reachable && m[i].running)
                answered++;
        unsigned need = q >= k ? q - k + 1 : 1;
        if (answered < need) {
            for (size_t i = 0; i < n; i++)
                if (reasons[i][0] == '\0')
                    snprintf(reasons[i], CAND_REASON_MAX, "quorum: %u of %u synchronous members "
                             "answered, %u needed to prove which has every commit", answered, q, need);
            best = -1;
        }
    }
    struct controller *c = &h->ctl;
    c->n_reasons = 0;
    for (size_t i = 0; i < n; i++) {
        snprintf(c->reason_member[c->n_reasons], FSM_NAME_MAX, "%s", ps[i].name);
        snprintf(c->reason[c->n_reasons], CAND_REASON_MAX, "%s", reasons[i]);
        c->n_reasons++;
    }
    if (best < 0) {
        char all[HA_ERR_MAX] = "";
        size_t off = 0;
        for (size_t i = 0; i < n && off < sizeof all - 1; i++)
            off += (size_t)snprintf(all + off, sizeof all - off, "%s%s: %s", i ? "; " : "", ps[i].name,
                                    reasons[i]);
        note(h, "no member can be promoted (%s)", n ? all : "no member with PostgreSQL");
    }
    return best;
}

/* The assignment holds only if the holder has not renewed since the view it
 * was decided from (expect_renewals): a controller that stalled between the
 * decision and its commit must not take the role from a live holder. */
static void assign(struct ha *h, const char *member, uint64_t expect_epoch,
                   uint64_t expect_renewals, const char *reason, bool allow_data_loss)
{
    struct fsm_cmd c;
    fsm_cmd_init(&c, FSM_OP_PRIMARY_ASSIGN, NULL);
    snprintf(c.member, sizeof c.member, "%s", member);
    c.epoch = expect_epoch;
    c.u.assign.if_renewals_set = fsm_cluster_level(&h->fsm->st) >= 2;
    c.u.assign.if_renewals = expect_renewals;
    c.u.assign.mode = FSM_ASSIGN_PROMOTE;
    c.u.assign.allow_data_loss = allow_data_loss;
    snprintf(c.u.assign.reason, sizeof c.u.assign.reason, "%s", reason);
    log_info("ha", "controller: assigning the primary role to %s (epoch %" PRIu64 "): %s", member,
             expect_epoch + 1, reason);
    note(h, "%s", "");
    submit_decision(h, &c);
}

static void clear_switchover(struct ha *h, const char *why)
{
    log_warn("ha", "controller: dropping the pending %s: %s",
             h->fsm->st.sw.failover ? "failover" : "switchover", why);
    note(h, "%s", why);
    struct fsm_cmd c;
    fsm_cmd_init(&c, FSM_OP_SWITCHOVER_CLEAR, NULL);
    submit_decision(h, &c);
}

static void round_done(struct ha *h, struct peer_status *ps, size_t n, void *ctx)
{
    struct round_ctx *rc = ctx;
    struct controller *c = &h->ctl;
    c->fetching = false;
    const struct fsm_state *st = &h->fsm->st;
    const struct fsm_primary *p = &st->primary;
    if (!cluster_leader_ready(h->cluster) || p->epoch != rc->epoch || c->submitting) {
        free(rc);
        ha_kick(h);
        return;
    }
    bool lag_ignored = false;
    int best = choose(h, ps, n, rc, &lag_ignored);
    switch (rc->kind) {
    case ROUND_FAILOVER:
        if (best >= 0) {
            char why[FSM_TEXT_MAX];
            if (st->sw.pending && st->sw.failover)
                snprintf(why, sizeof why, "manual failover%s",
                         lag_ignored ? " accepting data loss" : "");
            else
                snprintf(why, sizeof why, "%s %s",
                         p->member[0] ? p->member : "the primary",
                         p->state == FSM_PRIMARY_NONE ? "gave the role up" : "lost its lease");
            if (lag_ignored)
                log_warn("ha", "controller: MANUAL FAILOVER TO %s ACCEPTS DATA LOSS (lag checks "
                         "skipped on request)", ps[best].name);
            h->stats.failovers++;
            assign(h, ps[best].name, p->epoch, rc->renewals, why, lag_ignored);
        } else if (st->sw.pending && st->sw.failover) {
            clear_switchover(h, h->ctl.note);
        }
        break;
    case ROUND_SWITCHOVER_CHECK:
        if (best < 0) {
            clear_switchover(h, h->ctl.note);
        } else {
            struct fsm_cmd cmd;
            fsm_cmd_init(&cmd, FSM_OP_PRIMARY_DEMOTE, NULL);
            snprintf(cmd.member, sizeof cmd.member, "%s", p->member);
            cmd.epoch = p->epoch;
            snprintf(cmd.u.demote.target, sizeof cmd.u.demote.target, "%s", ps[best].name);
            log_info("ha", "controller: switchover from %s to %s: asking %s to stop cleanly",
                     p->member, ps[best].name, p->member);
            h->stats.switchovers++;
            submit_decision(h, &cmd);
        }
        break;
    case ROUND_SWITCHOVER_PROMOTE: {
        /* Prefer the chosen target; any member that replayed the final LSN
         * would do, and the old primary itself if nobody did in time. */
        int pick = -1;
        for (size_t i = 0; i < n; i++) {
            if (p->target[0] && strcmp(ps[i].name, p->target) == 0 && h->ctl.reason[i][0] == '\0' &&
                ps[i].replay_lsn > p->final_lsn)
                pick = (int)i;
        }
        if (pick < 0 && best >= 0 && ps[best].replay_lsn > p->final_lsn &&
            ha_now(h) - c->stopped_since_ms > SWITCHOVER_CATCHUP_MS / 2)
            pick = best;
        if (pick >= 0) {
            char why[FSM_TEXT_MAX];
            snprintf(why, sizeof why, "switchover from %s", p->member);
            assign(h, ps[pick].name, p->epoch, rc->renewals, why, false);
        } else if (ha_now(h) - c->stopped_since_ms > SWITCHOVER_CATCHUP_MS) {
            log_warn("ha", "controller: switchover candidate did not replay the final LSN in %d s; "
                     "giving the role back to %s", SWITCHOVER_CATCHUP_MS / 1000, p->member);
            assign(h, p->member, p->epoch, rc->renewals, "switchover aborted: candidate did not catch up",
                   false);
        } else {
            note(h, "switchover: waiting for %s to replay the final LSN", p->target[0] ? p->target : "a candidate");
        }
        break;
    }
    }
    free(rc);
}

static void start_round(struct ha *h, enum round_kind kind, const char *exclude)
{
    struct controller *c = &h->ctl;
    if (c->fetching || c->submitting)
        return;
    struct round_ctx *rc = calloc(1, sizeof *rc);
    if (rc == NULL)
        return;
    rc->kind = kind;
    rc->epoch = h->fsm->st.primary.epoch;
    rc->renewals = h->fsm->st.primary.renewals;
    if (exclude != NULL)
        snprintf(rc->exclude, sizeof rc->exclude, "%s", exclude);
    c->fetching = true;
    c->round++;
    if (peers_fetch(h, round_done, rc) != 0) {
        c->fetching = false;
        free(rc);
    }
}

/* Eligibility from the replicated reports alone (no fresh fetch): what any
 * node can say in GET /cluster about why a member would not be promoted. */
void ha_member_eligibility(const struct ha *h, const char *name, bool operator_named, char *buf,
                           size_t len)
{
    const struct fsm_state *st = &h->fsm->st;
    const struct fsm_member *m = fsm_member_find(st, name);
    buf[0] = '\0';
    if (m == NULL)
        return;
    uint64_t now = ha_now(h);
    bool fresh = m->reported && m->local_report_ms != 0 &&
                 now - m->local_report_ms <= 2 * (uint64_t)h->timing.ttl_ms;
    struct cand_member cm = {
        .name = m->name,
        .witness = m->witness,
        .nofailover = fsm_member_nofailover(m),
        .failover_priority = fsm_member_failover_priority(m),
        .reachable = fresh,
        .error = m->reported ? "no recent report" : "never reported",
        .running = strcmp(m->report.state, "running") == 0,
        .in_recovery = strcmp(m->report.role, "replica") == 0,
        .sysid = strtoull(m->report.sysid, NULL, 10),
        .timeline = m->report.timeline,
        .receive_lsn = m->report.receive_lsn,
        .replay_lsn = m->report.replay_lsn,
        .in_sync_set = fsm_in_sync_set(st, m->name),
        .backoff = in_backoff(h, m->name, operator_named),
    };
    struct cand_rules rules = {
        .sysid = strtoull(st->sysid, NULL, 10),
        .timeline = st->primary.timeline,
        .primary_lsn = st->primary.lsn,
        .max_lag = h->dcs.maximum_lag_on_failover,
        .sync_only = h->dcs.synchronous_mode != CFG_SYNC_OFF,
    };
    cand_check(&cm, &rules, buf, len);
}

/* --- founding the cluster --------------------------------------------------------- */

/* True when every server of the Raft configuration has a member record
 * with a status report. */
static bool all_servers_reported(const struct ha *h)
{
    struct cluster_info info;
    cluster_get_info(h->cluster, &info);
    for (unsigned i = 0; i < info.n_servers; i++) {
        const struct fsm_member *m = fsm_member_by_raft_id(&h->fsm->st, info.servers[i].id);
        if (m == NULL || !m->reported)
            return false;
    }
    return true;
}

static uint64_t founding_grace_ms(const struct ha *h)
{
    uint64_t g = 3 * (uint64_t)h->timing.ttl_ms;
    return g < 10000 ? 10000 : g;
}

static void choose_founder(struct ha *h)
{
    const struct fsm_state *st = &h->fsm->st;
    const struct fsm_member *best = NULL;
    bool best_has_data = false;
    unsigned failed = 0;
    for (unsigned i = 0; i < st->n_members; i++) {
        const struct fsm_member *m = &st->members[i];
        if (m->witness || fsm_member_nofailover(m) || !m->reported ||
            in_backoff(h, m->name, false) != NULL)
            continue;
        /* a bootstrap failed there: not again until its pgwarden restarts
         * (agent_replica.c), so a broken bootstrap method never loops */
        if (strcmp(m->report.state, "bootstrap failed") == 0) {
            failed++;
            continue;
        }
        /* A member reporting a system identifier has data: adopt it rather
         * than create a new cluster next to it. */
        bool has_data = m->report.sysid[0] != '\0';
        if (best == NULL || (has_data && !best_has_data) ||
            (has_data == best_has_data && has_data && m->report.lsn > best->report.lsn)) {
            best = m;
            best_has_data = has_data;
        }
    }
    if (best != NULL && !best_has_data && !all_servers_reported(h)) {
        /* A new cluster next to a member with data that simply has not
         * reported yet would take over its role (and move its data aside):
         * give every configured server a grace period to speak first. */
        uint64_t now = ha_now(h), grace = founding_grace_ms(h);
        if (h->ctl.founding_wait_since == 0)
            h->ctl.founding_wait_since = now;
        if (now < h->ctl.founding_wait_since + grace) {
            note(h, "waiting up to %llu s for every member to report before creating a new "
                 "cluster (a member with existing data is preferred)",
                 (unsigned long long)(grace / 1000));
            return;
        }
    }
    if (best == NULL) {
        if (failed > 0)
            note(h, "the bootstrap failed on %u member(s) (see their logs); restart pgwarden there "
                 "to try again", failed);
        else
            note(h, "waiting for a member with PostgreSQL to report before creating the cluster");
        return;
    }
    struct fsm_cmd c;
    fsm_cmd_init(&c, FSM_OP_PRIMARY_ASSIGN, NULL);
    snprintf(c.member, sizeof c.member, "%s", best->name);
    c.epoch = st->primary.epoch;
    c.u.assign.if_renewals_set = fsm_cluster_level(st) >= 2;
    c.u.assign.if_renewals = st->primary.renewals;
    c.u.assign.mode = FSM_ASSIGN_BOOTSTRAP;
    snprintf(c.u.assign.reason, sizeof c.u.assign.reason, "%s",
             best_has_data ? "found the cluster on existing data" : "create a new cluster");
    log_info("ha", "controller: %s on %s", c.u.assign.reason, best->name);
    note(h, "%s", "");
    submit_decision(h, &c);
}

static void config_done(void *ctx, int status, const struct fsm_result *res, const char *msg)
{
    struct ha *h = ctx;
    (void)res;
    h->ctl.config_inflight = false;
    if (status != 0 && !h->closing)
        log_warn("ha", "controller: storing the dynamic configuration failed: %s", msg);
}

/* --- the step --------------------------------------------------------------------- */

void controller_step(struct ha *h)
{
    struct controller *c = &h->ctl;
    if (!cluster_leader_ready(h->cluster) || h->closing) {
        c->n_reasons = 0;
        return;
    }
    const struct fsm_state *st = &h->fsm->st;
    if (st->config == NULL && !c->config_inflight) {
        struct fsm_cmd cmd;
        fsm_cmd_init(&cmd, FSM_OP_CONFIG_SET, NULL);
        cmd.u.config.config = cfg_dcs_to_json(&h->cfg->bootstrap.dcs);
        cmd.u.config.expect_version = 0;
        c->config_inflight = true;
        if (submit_cmd(h->sub, &cmd, h->timing.retry_timeout_ms * 2, config_done, h) != 0)
            c->config_inflight = false;
        fsm_cmd_free(&cmd);
    }
    if (c->fetching || c->submitting)
        return;
    /* Maintenance mode: nothing automatic; only an operator's request with
     * a named candidate is carried out (as Patroni does). */
    if (st->pause && !(st->sw.pending && st->sw.to[0] != '\0'))
        return;
    const struct fsm_primary *p = &st->primary;
    uint64_t now = ha_now(h);
    uint64_t expiry = lease_judged_expiry(h->fsm->local_lease_ms, h->fsm->st.primary.lease_ttl_ms, &h->timing);
    bool holding = p->state == FSM_PRIMARY_BOOTSTRAPPING || p->state == FSM_PRIMARY_PROMOTING ||
                   p->state == FSM_PRIMARY_RUNNING || p->state == FSM_PRIMARY_DEMOTING;
    bool expired = holding && now >= expiry;

    if (st->sysid[0] == '\0') {
        if (holding && !expired)
            return; /* founding in progress */
        if (expired) {
            log_warn("ha", "controller: %s did not finish founding the cluster in time",
                     p->member);
            add_backoff(h, p->member, 2 * (uint64_t)h->timing.ttl_ms, BACKOFF_FOUNDING);
        } else if (p->state == FSM_PRIMARY_NONE && p->member[0] != '\0' &&
                   c->backoff_epoch != p->epoch) {
            /* it gave the founding role up (its bootstrap failed): not at
             * once again, its report saying why arrives meanwhile */
            add_backoff(h, p->member, (uint64_t)h->timing.ttl_ms, BACKOFF_FOUNDING);
            c->backoff_epoch = p->epoch;
        }
        choose_founder(h);
        return;
    }
    if (expired || p->state == FSM_PRIMARY_NONE) {
        if (p->member[0] != '\0' && c->backoff_epoch != p->epoch) {
            /* The old holder is stopped or fencing itself; it may come back
             * as a replica and be chosen again, but not straight away. */
            if (expired)
                log_warn("ha", "controller: the primary lease of %s (epoch %" PRIu64 ") expired",
                         p->member, p->epoch);
            add_backoff(h, p->member, (uint64_t)h->timing.ttl_ms, BACKOFF_LEASE_LOST);
            c->backoff_epoch = p->epoch;
        }
        start_round(h, ROUND_FAILOVER, NULL);
        return;
    }
    if (p->state == FSM_PRIMARY_RUNNING && st->sw.pending) {
        if (st->sw.scheduled_wall_ms != 0 && clock_wall_ms() < st->sw.scheduled_wall_ms)
            return;
        start_round(h, ROUND_SWITCHOVER_CHECK, NULL);
        return;
    }
    if (p->state == FSM_PRIMARY_STOPPED) {
        if (c->stopped_epoch != p->epoch || c->stopped_since_ms == 0) {
            c->stopped_epoch = p->epoch;
            c->stopped_since_ms = now;
        }
        start_round(h, ROUND_SWITCHOVER_PROMOTE, NULL);
        return;
    }
}
