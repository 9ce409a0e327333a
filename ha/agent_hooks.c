/* The agent's operator hooks (see agent_hooks.h for where each runs).
 *
 * Happy paths:
 *  - callback: the agent's step succeeded -> hooks_run(kind, command,
 *    <action> <role> <scope>) -> nobody waits for it; its output and exit go
 *    to the log;
 *  - pre_promote: assigned primary, lease held -> agent busy ("running
 *    pre_promote"), the lease renewed as usual -> exit 0 -> the promote
 *    action runs again, finds this epoch cleared, promotes;
 *  - before_stop: a graceful stop is due -> agent busy -> it exits (any
 *    code) -> the stopping action runs again and stops.
 * Failure modes: a callback that cannot start (bad command line, missing
 * program: logged, nothing else changes); pre_promote exits non-zero, is
 * killed at its deadline, cannot start, or cannot be parsed -> the role is
 * released with the reason and the refusal flag, so the controller leaves
 * this member out for ttl (raft/fsm.h fsm_member_refused_recently); the
 * role is lost while pre_promote runs (epoch moved on, lease expired) -> it
 * is killed and nothing is promoted; before_stop fails or overruns -> logged,
 * the stop goes on.
 *
 * Deadlines: callbacks AGENT_HOOK_CALLBACK_TIMEOUT_MS; pre_promote and
 * before_stop postgresql.pg_ctl_timeout, like the pg_ctl step each precedes
 * (Patroni bounds neither: a hung fencing script would stall failover). */
#include "ha/agent_internal.h"

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "ha/hooks.h"

/* before_stop counts as done for the stop that follows within this long. */
#define BEFORE_STOP_FRESH_MS 10000

struct agent_hooks {
    struct ha *h;
    struct hooks *hk;
    int pending_close;          /* hooks and the watch timer, at close */
    /* the pgnode step a wrapper stands in for (one at a time: agent busy) */
    pgnode_done_cb step_cb;
    pgnode_rejoin_cb rejoin_cb;
    bool from_primary;          /* the data was a primary's before this start */
    char stop_role[16];         /* the role PostgreSQL had when we stopped it */
    /* pre_promote */
    uv_timer_t watch;           /* kills it when the role is lost meanwhile */
    uint64_t pre_epoch, pre_ok_epoch, pre_failed_epoch;
    char pre_reason[FSM_TEXT_MAX];
    /* before_stop */
    char bs_key[96];
    uint64_t bs_done_ms;
};

static struct agent_hooks *get(struct ha *h)
{
    struct agent *ag = &h->ag;
    if (ag->hooks != NULL || h->closing)
        return ag->hooks;
    struct agent_hooks *ah = calloc(1, sizeof *ah);
    if (ah == NULL)
        return NULL;
    if (hooks_new(h->loop, &ah->hk) != 0) {
        free(ah);
        return NULL;
    }
    ah->h = h;
    uv_timer_init(h->loop, &ah->watch);
    ah->watch.data = ah;
    ag->hooks = ah;
    return ah;
}

static uint32_t hook_deadline(const struct ha *h)
{
    uint32_t t = h->cfg->postgresql.pg_ctl_timeout_ms;
    return t != 0 ? t : 60000;
}

static const char *role_now(struct ha *h)
{
    struct ha_view v;
    ha_get_view(h, &v);
    return v.role;
}

/* --- callbacks ---------------------------------------------------------------- */

static const char *callback_command(const struct ha *h, enum hook_kind k)
{
    const struct cfg_callbacks *c = &h->cfg->postgresql.callbacks;
    switch (k) {
    case HOOK_ON_START: return c->on_start;
    case HOOK_ON_STOP: return c->on_stop;
    case HOOK_ON_RESTART: return c->on_restart;
    case HOOK_ON_RELOAD: return c->on_reload;
    case HOOK_ON_ROLE_CHANGE: return c->on_role_change;
    default: return NULL;
    }
}

static void fire(struct ha *h, enum hook_kind k, const char *role)
{
    const char *cmd = callback_command(h, k);
    if (cmd == NULL || cmd[0] == '\0' || h->closing)
        return;
    struct agent_hooks *ah = get(h);
    if (ah == NULL)
        return;
    const char *args[] = {hooks_kind_name(k), role, h->cfg->scope, NULL};
    struct hook_spec s = {.kind = k, .command = cmd, .args = args,
                          .timeout_ms = AGENT_HOOK_CALLBACK_TIMEOUT_MS};
    char err[512];
    if (hooks_run(ah->hk, &s, NULL, NULL, err, sizeof err) != 0)
        log_error("hooks", "%s", err);
}

static bool standby_signal(const struct ha *h)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/standby.signal", h->cfg->postgresql.data_dir);
    return access(path, F_OK) == 0;
}

/* The role of an instance we just started, restarted or reloaded: how it
 * was started (PostgreSQL removes standby.signal when it is promoted), not
 * what the monitor saw last, which may be the instance down mid-restart. */
static const char *started_role(const struct ha *h)
{
    return standby_signal(h) ? "replica" : "primary";
}

void agent_hook_started(struct ha *h, int status, bool from_primary)
{
    if (status != 0)
        return;
    const char *role = started_role(h);
    if (from_primary && strcmp(role, "replica") == 0)
        fire(h, HOOK_ON_ROLE_CHANGE, role);
    else
        fire(h, HOOK_ON_START, role);
}

void agent_hook_fenced(struct ha *h)
{
    fire(h, HOOK_ON_STOP, "primary");
}

void agent_hook_restarted(struct ha *h, int status)
{
    if (status == 0)
        fire(h, HOOK_ON_RESTART, started_role(h));
}

void agent_hook_reloaded(struct ha *h, int status)
{
    if (status == 0)
        fire(h, HOOK_ON_RELOAD, started_role(h));
}

void agent_hook_pg_promoted(struct pgnode *n, int status, void *ctx)
{
    struct ha *h = ctx;
    if (!h->closing && status == 0) {
        agent_forget_upstream(&h->ag); /* a primary has none */
        fire(h, HOOK_ON_ROLE_CHANGE, "primary");
    }
    agent_pg_done(n, status, ctx);
}

static void step_started(struct pgnode *n, int status, void *ctx)
{
    struct ha *h = ctx;
    struct agent_hooks *ah = h->ag.hooks;
    if (ah == NULL || ah->step_cb == NULL)
        return; /* closed meanwhile (pgnode drops callbacks then: defensive) */
    pgnode_done_cb cb = ah->step_cb;
    ah->step_cb = NULL;
    if (!h->closing)
        agent_hook_started(h, status, ah->from_primary);
    cb(n, status, ctx);
}

int agent_hook_pg_start(struct ha *h, pgnode_done_cb cb)
{
    struct agent_hooks *ah = get(h);
    if (ah == NULL)
        return pgnode_start(h->ag.node, cb, h);
    /* observed in this step, before the action rewrote standby.signal */
    ah->from_primary = h->ag.was_primary;
    ah->step_cb = cb;
    return pgnode_start(h->ag.node, step_started, h);
}

int agent_hook_pg_clone(struct ha *h, const char *host, uint16_t port, pgnode_done_cb cb)
{
    struct agent_hooks *ah = get(h);
    if (ah == NULL)
        return pgnode_clone(h->ag.node, host, port, cb, h);
    ah->from_primary = false; /* new data: whatever was here before is gone */
    ah->step_cb = cb;
    return pgnode_clone(h->ag.node, host, port, step_started, h);
}

static void step_rejoined(struct pgnode *n, int status, const struct pgnode_rejoin_result *r,
                          void *ctx)
{
    struct ha *h = ctx;
    struct agent_hooks *ah = h->ag.hooks;
    if (ah == NULL || ah->rejoin_cb == NULL)
        return;
    pgnode_rejoin_cb cb = ah->rejoin_cb;
    ah->rejoin_cb = NULL;
    if (!h->closing && r != NULL && !r->needs_reinit)
        agent_hook_started(h, status, ah->from_primary);
    cb(n, status, r, ctx);
}

int agent_hook_pg_rejoin(struct ha *h, const char *host, uint16_t port, pgnode_rejoin_cb cb)
{
    struct agent_hooks *ah = get(h);
    if (ah == NULL)
        return pgnode_rejoin(h->ag.node, host, port, cb, h);
    ah->from_primary = h->ag.was_primary;
    ah->rejoin_cb = cb;
    return pgnode_rejoin(h->ag.node, host, port, step_rejoined, h);
}

static void step_stopped(struct pgnode *n, int status, void *ctx)
{
    struct ha *h = ctx;
    struct agent_hooks *ah = h->ag.hooks;
    if (ah == NULL || ah->step_cb == NULL)
        return; /* closed meanwhile (pgnode drops callbacks then: defensive) */
    pgnode_done_cb cb = ah->step_cb;
    ah->step_cb = NULL;
    if (!h->closing && status == 0)
        fire(h, HOOK_ON_STOP, ah->stop_role);
    cb(n, status, ctx);
}

int agent_hook_pg_stop(struct ha *h, enum pgctl_stop_mode mode, pgnode_done_cb cb)
{
    struct agent_hooks *ah = get(h);
    if (ah == NULL)
        return pgnode_stop(h->ag.node, mode, cb, h);
    snprintf(ah->stop_role, sizeof ah->stop_role, "%s", role_now(h));
    ah->step_cb = cb;
    return pgnode_stop(h->ag.node, mode, step_stopped, h);
}

/* --- pre_promote ------------------------------------------------------------------ */

/* agent_release, plus the refusal flag the controller's back-off reads. */
static void release_refused(struct ha *h, const char *why)
{
    struct agent *ag = &h->ag;
    const struct fsm_primary *p = &h->fsm->st.primary;
    if (ag->released_epoch == p->epoch || !agent_am_holder(h))
        return;
    struct fsm_cmd c;
    fsm_cmd_init(&c, FSM_OP_PRIMARY_RELEASE, NULL);
    snprintf(c.member, sizeof c.member, "%s", ha_name(h));
    c.epoch = p->epoch;
    snprintf(c.u.release.reason, sizeof c.u.release.reason, "%s", why);
    c.u.release.promote_refused = true;
    log_warn("ha", "giving up the primary role (epoch %" PRIu64 "): %s", p->epoch, why);
    if (agent_submit_op(h, &c, "release"))
        ag->released_epoch = p->epoch;
}

static bool holds_epoch(struct ha *h, uint64_t epoch)
{
    return agent_am_holder(h) && h->fsm->st.primary.epoch == epoch &&
           lease_holder_valid(&h->ag.lease, ha_now(h));
}

static void pre_watch(uv_timer_t *t)
{
    struct agent_hooks *ah = t->data;
    struct ha *h = ah->h;
    if (!hooks_running(ah->hk, HOOK_PRE_PROMOTE)) {
        uv_timer_stop(t);
        return;
    }
    if (!holds_epoch(h, ah->pre_epoch)) {
        log_warn("ha", "the primary role (epoch %" PRIu64 ") was lost while pre_promote ran: "
                 "stopping it, nothing is promoted", ah->pre_epoch);
        hooks_cancel(ah->hk, HOOK_PRE_PROMOTE);
        uv_timer_stop(t);
    }
}

static void pre_done(void *ctx, const struct hook_result *r)
{
    struct ha *h = ctx;
    struct agent_hooks *ah = h->ag.hooks;
    uv_timer_stop(&ah->watch);
    h->ag.busy = false;
    uint64_t epoch = ah->pre_epoch;
    if (r->status == PGW_OK) {
        if (holds_epoch(h, epoch)) {
            ah->pre_ok_epoch = epoch;
            log_info("ha", "pre_promote succeeded (epoch %" PRIu64 "): promoting", epoch);
        }
        ha_kick(h);
        return;
    }
    if (r->status == PGW_ECANCELED) {
        ha_kick(h);
        return;
    }
    if (r->status == PGW_ETIMEDOUT)
        snprintf(ah->pre_reason, sizeof ah->pre_reason,
                 "pre_promote failed: no result within %u ms (killed)", hook_deadline(h));
    else if (r->term_signal != 0)
        snprintf(ah->pre_reason, sizeof ah->pre_reason, "pre_promote failed: killed by signal %d",
                 r->term_signal);
    else
        snprintf(ah->pre_reason, sizeof ah->pre_reason, "pre_promote failed: exit %d", r->exit_code);
    ah->pre_failed_epoch = epoch;
    snprintf(h->ag.last_error, sizeof h->ag.last_error, "%s", ah->pre_reason);
    log_error("ha", "%s: not promoting", ah->pre_reason);
    if (h->fsm->st.primary.epoch == epoch)
        release_refused(h, ah->pre_reason);
    ha_kick(h);
}

bool agent_hook_pre_promote(struct ha *h)
{
    const char *cmd = h->cfg->postgresql.pre_promote;
    if (cmd == NULL || cmd[0] == '\0')
        return true;
    uint64_t epoch = h->fsm->st.primary.epoch;
    struct agent_hooks *ah = get(h);
    if (ah == NULL) {
        release_refused(h, "pre_promote failed: out of memory");
        return false;
    }
    if (ah->pre_ok_epoch == epoch)
        return true;
    if (ah->pre_failed_epoch == epoch) {
        release_refused(h, ah->pre_reason); /* again, if the first one did not go out */
        return false;
    }
    if (hooks_running(ah->hk, HOOK_PRE_PROMOTE))
        return false;
    /* What a fencing script needs: who it is, and who may have written as
     * primary before it (raft/fsm.h: former, previous). */
    const struct fsm_primary *p = &h->fsm->st.primary;
    char e_member[FSM_NAME_MAX + 24], e_scope[256], e_epoch[64];
    char e_former[FSM_NAME_MAX + 32], e_previous[FSM_NAME_MAX + 32];
    snprintf(e_member, sizeof e_member, "PGWARDEN_MEMBER=%s", ha_name(h));
    snprintf(e_scope, sizeof e_scope, "PGWARDEN_SCOPE=%s", h->cfg->scope);
    snprintf(e_epoch, sizeof e_epoch, "PGWARDEN_EPOCH=%" PRIu64, epoch);
    snprintf(e_former, sizeof e_former, "PGWARDEN_FORMER_PRIMARY=%s", p->former);
    snprintf(e_previous, sizeof e_previous, "PGWARDEN_PREVIOUS_HOLDER=%s", p->previous);
    const char *env[] = {e_member, e_scope, e_epoch, e_former, e_previous, NULL};
    struct hook_spec s = {.kind = HOOK_PRE_PROMOTE, .command = cmd, .env = env,
                          .timeout_ms = hook_deadline(h)};
    char err[512];
    ah->pre_epoch = epoch;
    if (hooks_run(ah->hk, &s, pre_done, h, err, sizeof err) != 0) {
        snprintf(ah->pre_reason, sizeof ah->pre_reason, "pre_promote failed: %s", err);
        ah->pre_failed_epoch = epoch;
        snprintf(h->ag.last_error, sizeof h->ag.last_error, "%s", ah->pre_reason);
        log_error("ha", "%s: not promoting", ah->pre_reason);
        release_refused(h, ah->pre_reason);
        return false;
    }
    agent_op_begin(h, "pre_promote", "running pre_promote");
    log_info("ha", "assigned primary (epoch %" PRIu64 "): running pre_promote before promoting "
             "(former primary %s, previous holder %s)", epoch, p->former[0] ? p->former : "unknown",
             p->previous[0] ? p->previous : "unknown");
    uv_timer_start(&ah->watch, pre_watch, h->timing.loop_wait_ms, h->timing.loop_wait_ms);
    return false;
}

/* --- before_stop -------------------------------------------------------------------- */

static void bs_done(void *ctx, const struct hook_result *r)
{
    struct ha *h = ctx;
    struct agent_hooks *ah = h->ag.hooks;
    (void)r; /* its exit status is ignored, as in Patroni (hooks logged it) */
    h->ag.busy = false;
    ah->bs_done_ms = ha_now(h);
    ha_kick(h);
}

bool agent_hook_before_stop(struct ha *h, const char *what)
{
    const char *cmd = h->cfg->postgresql.before_stop;
    if (cmd == NULL || cmd[0] == '\0')
        return true;
    if (pgmon_status(h->ag.mon)->state == PG_RUN_DOWN)
        return true; /* nothing to stop */
    struct agent_hooks *ah = get(h);
    if (ah == NULL)
        return true;
    char key[sizeof ah->bs_key];
    snprintf(key, sizeof key, "%s/%" PRIu64, what, h->fsm->st.primary.epoch);
    uint64_t now = ha_now(h);
    if (ah->bs_done_ms != 0 && strcmp(ah->bs_key, key) == 0 &&
        now - ah->bs_done_ms < BEFORE_STOP_FRESH_MS) {
        ah->bs_done_ms = 0;
        return true;
    }
    struct hook_spec s = {.kind = HOOK_BEFORE_STOP, .command = cmd,
                          .timeout_ms = hook_deadline(h)};
    char err[512];
    if (hooks_run(ah->hk, &s, bs_done, h, err, sizeof err) != 0) {
        log_warn("ha", "%s; stopping PostgreSQL without it", err);
        return true;
    }
    snprintf(ah->bs_key, sizeof ah->bs_key, "%s", key);
    ah->bs_done_ms = 0;
    agent_op_begin(h, "before_stop", NULL);
    log_info("ha", "%s: running before_stop before stopping PostgreSQL", what);
    return false;
}

/* --- close -------------------------------------------------------------------------- */

static void close_step(struct agent_hooks *ah)
{
    if (--ah->pending_close > 0)
        return;
    struct ha *h = ah->h;
    free(ah);
    ha_async_done(h);
}

static void hooks_closed(void *ctx)
{
    close_step(ctx);
}

static void watch_closed(uv_handle_t *t)
{
    close_step(t->data);
}

void agent_hooks_close(struct ha *h)
{
    struct agent_hooks *ah = h->ag.hooks;
    if (ah == NULL)
        return;
    h->ag.hooks = NULL;
    ah->pending_close = 2;
    h->async_inflight++;
    uv_timer_stop(&ah->watch);
    uv_close((uv_handle_t *)&ah->watch, watch_closed);
    hooks_close(ah->hk, AGENT_HOOK_CLOSE_GRACE_MS, hooks_closed, ah);
}
