/* Operator requests (restart, reinitialize), configuration changes applied
 * to PostgreSQL, and the graceful shutdown of a node (a primary hands its
 * role over with a switchover before PostgreSQL stops). */
#include "ha/agent_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "ha/keeper.h"
#include "pg/pgconf.h"

/* --- operator requests and configuration changes ------------------------------- */

void agent_request_done(ha_action_cb *cbp, void **ctxp, int status, const char *msg)
{
    ha_action_cb cb = *cbp;
    void *ctx = *ctxp;
    *cbp = NULL;
    *ctxp = NULL;
    if (cb != NULL)
        cb(ctx, status, msg);
}

static void restart_done(struct pgctl *ctl, int status, void *vctx)
{
    struct ha *h = vctx;
    (void)ctl;
    if (h->closing)
        return;
    struct agent *ag = &h->ag;
    char msg[HA_ERR_MAX];
    if (status == 0) {
        snprintf(msg, sizeof msg, "restarted successfully");
        log_info("ha", "PostgreSQL restarted on request");
    } else {
        snprintf(msg, sizeof msg, "restart failed: %s", pgctl_error(pgnode_ctl(ag->node)));
    }
    agent_hook_restarted(h, status);
    agent_request_done(&ag->restart_cb, &ag->restart_ctx, status, msg);
    agent_op_finish(h, status);
}

static void act_restart(struct ha *h)
{
    struct agent *ag = &h->ag;
    ag->restart_pending = false;
    const struct pg_status *ps = pgmon_status(ag->mon);
    if (ag->restart.only_pending && !ps->pending_restart) {
        agent_request_done(&ag->restart_cb, &ag->restart_ctx, PGW_EREFUSED,
                     "restart not needed: no setting is pending a restart");
        return;
    }
    uint32_t timeout = ag->restart.timeout_ms ? ag->restart.timeout_ms
                                              : h->cfg->postgresql.pg_ctl_timeout_ms;
    if (!agent_hook_before_stop(h, "restart")) {
        ag->restart_pending = true; /* comes back here when before_stop is done */
        return;
    }
    agent_op_begin(h, "restart", "restarting");
    log_info("ha", "restarting PostgreSQL on request");
    if (pgnode_sanitize_auto_conf(ag->node) != 0)
        log_warn("ha", "restart: %s", pgnode_error(ag->node));
    if (pgctl_restart(pgnode_ctl(ag->node), PGCTL_STOP_FAST, NULL, timeout, restart_done, h) != 0) {
        agent_request_done(&ag->restart_cb, &ag->restart_ctx, PGW_EIO, pgctl_error(pgnode_ctl(ag->node)));
        agent_op_end(h, PGW_EIO, "restart");
    }
}

static void reinit_stopped(struct pgnode *n, int status, void *vctx)
{
    struct ha *h = vctx;
    (void)n;
    if (h->closing)
        return;
    struct agent *ag = &h->ag;
    if (status != 0) {
        agent_request_done(&ag->reinit_cb, &ag->reinit_ctx, status, pgnode_error(ag->node));
        agent_op_finish(h, status);
        return;
    }
    char moved[4096], err[512];
    if (pgnode_move_aside(h->cfg->postgresql.data_dir, moved, sizeof moved, err, sizeof err) != 0) {
        agent_request_done(&ag->reinit_cb, &ag->reinit_ctx, PGW_EIO, err);
        log_error("ha", "reinitialize: %s", err);
        agent_op_finish(h, PGW_EIO);
        return;
    }
    log_info("ha", "reinitialize: old data directory kept at %s; cloning again", moved);
    ag->needs_reinit[0] = '\0';
    ag->last_error[0] = '\0';
    char msg[4200];
    snprintf(msg, sizeof msg, "reinitialize started (old data kept at %s)", moved);
    agent_request_done(&ag->reinit_cb, &ag->reinit_ctx, PGW_OK, msg);
    agent_op_finish(h, PGW_OK);
}

static void act_reinit(struct ha *h)
{
    struct agent *ag = &h->ag;
    ag->reinit_pending = false;
    agent_op_begin(h, "reinitialize", "reinitializing");
    log_info("ha", "reinitialize requested: stopping PostgreSQL to clone it again");
    if (agent_hook_pg_stop(h, PGCTL_STOP_FAST, reinit_stopped) != 0) {
        agent_request_done(&ag->reinit_cb, &ag->reinit_ctx, PGW_EIO, pgnode_error(ag->node));
        agent_op_end(h, PGW_EIO, "reinitialize");
    }
}

static void reload_done(struct pgctl *ctl, int status, void *vctx)
{
    struct ha *h = vctx;
    (void)ctl;
    if (h->closing)
        return;
    agent_hook_reloaded(h, status);
    agent_op_finish(h, status);
}

/* Local or cluster-wide settings changed: rewrite the managed files for the
 * current role and reload; pending_restart then comes from the server. */
static void act_apply_config(struct ha *h, enum agent_local local)
{
    struct agent *ag = &h->ag;
    ag->config_applied_gen = ag->config_gen;
    struct pgconf_role role = {.standby = local == AL_REPLICA};
    if (role.standby && ag->upstream_host[0] != '\0')
        role = pgnode_standby_role(ag->node, ag->upstream_host, ag->upstream_port);
    struct pgconf_write_result wr;
    if (pgnode_configure(ag->node, &role, &wr) != 0) {
        snprintf(ag->last_error, sizeof ag->last_error, "write configuration: %s",
                 pgnode_error(ag->node));
        log_error("ha", "%s", ag->last_error);
        return;
    }
    if (!wr.changed)
        return;
    log_info("ha", "configuration changed (%s): reloading PostgreSQL%s", wr.changed_names,
             wr.restart_hint ? "; some settings need a restart (pending_restart)" : "");
    agent_op_begin(h, "reload", NULL);
    if (pgctl_reload(pgnode_ctl(ag->node), reload_done, h) != 0)
        agent_op_end(h, PGW_EIO, "reload");
}

/* Requests handled before the table; true when one started work. */
bool agent_operator_step(struct ha *h, enum agent_local local)
{
    struct agent *ag = &h->ag;
    if (ag->reinit_pending) {
        act_reinit(h);
        return true;
    }
    if (ag->restart_pending && (ag->restart.scheduled_wall_ms == 0 ||
                                clock_wall_ms() >= ag->restart.scheduled_wall_ms)) {
        if (local == AL_PRIMARY || local == AL_REPLICA) {
            act_restart(h);
            return true;
        }
        agent_request_done(&ag->restart_cb, &ag->restart_ctx, PGW_EUNAVAIL, "PostgreSQL is not running");
        ag->restart_pending = false;
    }
    if (ag->config_gen != ag->config_applied_gen && (local == AL_PRIMARY || local == AL_REPLICA)) {
        act_apply_config(h, local);
        return ag->busy;
    }
    return false;
}

int ha_request_restart(struct ha *h, const struct ha_restart_req *r, ha_action_cb cb, void *ctx,
                       char *why, size_t whylen)
{
    if (h->witness) {
        snprintf(why, whylen, "this node is a witness (no PostgreSQL)");
        return PGW_EREFUSED;
    }
    if (h->shutting_down || h->closing) {
        snprintf(why, whylen, "pgwarden is shutting down on this node");
        return PGW_EREFUSED;
    }
    struct agent *ag = &h->ag;
    if (ag->restart_pending) {
        snprintf(why, whylen, "a restart is already %s", ag->restart.scheduled_wall_ms ? "scheduled" : "pending");
        return PGW_EBUSY;
    }
    enum agent_local local = agent_local_state(h);
    if (r->role != NULL && strcmp(r->role, "any") != 0) {
        bool primary = local == AL_PRIMARY;
        if ((strcmp(r->role, "primary") == 0 || strcmp(r->role, "master") == 0) != primary) {
            snprintf(why, whylen, "restart conditions are not satisfied: this node is not a %s", r->role);
            return PGW_EREFUSED;
        }
    }
    if (r->scheduled_wall_ms == 0 && local != AL_PRIMARY && local != AL_REPLICA) {
        snprintf(why, whylen, "PostgreSQL is not running (%s)", agent_local_name(local));
        return PGW_EUNAVAIL;
    }
    ag->restart = *r;
    ag->restart.role = NULL;
    ag->restart_pending = true;
    if (r->scheduled_wall_ms != 0) {
        ag->restart_cb = NULL;
        ag->restart_ctx = NULL;
        cb(ctx, PGW_OK, "scheduled");
    } else {
        ag->restart_cb = cb;
        ag->restart_ctx = ctx;
    }
    ha_kick(h);
    return PGW_OK;
}

int ha_cancel_restart(struct ha *h)
{
    struct agent *ag = &h->ag;
    if (h->witness || !ag->restart_pending || ag->restart.scheduled_wall_ms == 0)
        return PGW_ENOTFOUND;
    ag->restart_pending = false;
    return PGW_OK;
}

uint64_t ha_scheduled_restart(const struct ha *h)
{
    return !h->witness && h->ag.restart_pending ? h->ag.restart.scheduled_wall_ms : 0;
}

int ha_request_reinit(struct ha *h, bool force, ha_action_cb cb, void *ctx, char *why, size_t whylen)
{
    (void)force;
    if (h->witness) {
        snprintf(why, whylen, "this node is a witness (no PostgreSQL)");
        return PGW_EREFUSED;
    }
    if (h->shutting_down || h->closing) {
        snprintf(why, whylen, "pgwarden is shutting down on this node");
        return PGW_EREFUSED;
    }
    if (agent_am_holder(h)) {
        snprintf(why, whylen, "I am the leader: a primary cannot be reinitialized (switch over first)");
        return PGW_EREFUSED;
    }
    const struct fsm_primary *p = &h->fsm->st.primary;
    if (p->state != FSM_PRIMARY_RUNNING) {
        snprintf(why, whylen, "the cluster has no running primary to clone from");
        return PGW_EUNAVAIL;
    }
    struct agent *ag = &h->ag;
    if (ag->reinit_pending || (ag->busy && strcmp(ag->op, "reinitialize") == 0)) {
        snprintf(why, whylen, "a reinitialize is already in progress");
        return PGW_EBUSY;
    }
    ag->reinit_pending = true;
    ag->reinit_cb = cb;
    ag->reinit_ctx = ctx;
    ha_kick(h);
    return PGW_OK;
}

/* --- graceful shutdown ------------------------------------------------------------ */

static void shutdown_finish(struct ha *h)
{
    void (*done)(void *) = h->shutdown_done;
    void *ctx = h->shutdown_ctx;
    h->shutdown_done = NULL;
    h->shutting_down = false;
    if (done != NULL)
        done(ctx);
}

static void handover_req_done(void *ctx, int status, const struct fsm_result *res, const char *msg)
{
    struct ha *h = ctx;
    (void)res;
    h->ag.busy = false;
    if (status != 0) {
        log_warn("ha", "shutdown: switchover request refused (%s); stopping without handover", msg);
        h->shutdown_deadline_ms = 0;
    }
    ha_kick(h);
}

void agent_shutdown_step(struct ha *h)
{
    struct agent *ag = &h->ag;
    uint64_t now = ha_now(h);
    if (ag->busy || h->shutdown_done == NULL)
        return;
    if (h->fsm->st.pause) {
        log_info("ha", "shutdown in maintenance mode: leaving PostgreSQL running");
        shutdown_finish(h);
        return;
    }
    enum agent_local local = agent_local_state(h);
    enum agent_goal goal = agent_compute_goal(h);
    const struct fsm_state *st = &h->fsm->st;
    bool before_deadline = now < h->shutdown_deadline_ms;
    if (goal == AG_PRIMARY && local == AL_PRIMARY && before_deadline) {
        if (!h->handover_requested) {
            h->handover_requested = true;
            struct fsm_cmd c;
            fsm_cmd_init(&c, FSM_OP_SWITCHOVER_SET, NULL);
            snprintf(c.u.sw.from, sizeof c.u.sw.from, "%s", ha_name(h));
            c.u.sw.requested_wall_ms = clock_wall_ms();
            log_info("ha", "shutdown of the primary: handing the role over with a switchover first");
            agent_op_begin(h, "shutdown switchover", NULL);
            /* reported once applied here, so the next step sees it pending */
            if (submit_cmd_applied(h->sub, &c, h->timing.retry_timeout_ms * 2, handover_req_done, h) != 0)
                ag->busy = false;
            return;
        }
        if (st->sw.pending)
            return; /* the controller is on it */
        /* the controller dropped the request: no candidate */
        log_warn("ha", "shutdown: no replica can take over (%s); stopping the primary anyway",
                 ha_controller_note(h)[0] ? ha_controller_note(h) : "no eligible candidate");
        h->shutdown_deadline_ms = 0;
    }
    if (goal == AG_HANDOVER && before_deadline)
        return; /* agent_step performs the handover */
    if (st->primary.state == FSM_PRIMARY_STOPPED && strcmp(st->primary.member, ha_name(h)) == 0 &&
        before_deadline && h->handover_requested)
        return; /* wait until the controller assigned the new primary */
    if (local == AL_PRIMARY || local == AL_REPLICA || local == AL_STARTING || local == AL_HUNG) {
        if (local != AL_HUNG && !agent_hook_before_stop(h, "shutdown"))
            return;
        agent_op_begin(h, "shutdown stop", "stopping");
        log_info("ha", "shutdown: stopping PostgreSQL (fast)");
        if (agent_hook_pg_stop(h, local == AL_HUNG ? PGCTL_STOP_IMMEDIATE : PGCTL_STOP_FAST, agent_pg_done) != 0)
            agent_op_end(h, PGW_EIO, "shutdown stop");
        return;
    }
    if (agent_am_holder(h) && ag->released_epoch != st->primary.epoch) {
        agent_release(h, "pgwarden shutting down");
        if (ag->busy)
            return;
    }
    shutdown_finish(h);
}

