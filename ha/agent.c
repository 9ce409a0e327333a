/* The node agent: makes the local PostgreSQL match what the replicated
 * state asks of this node, as a table of {goal, local state, action}.
 * Every action is idempotent and one runs at a time; each completion
 * re-evaluates the table at once.
 *
 * Before the table, on every step, two things that must never wait:
 *  - the lease: renew every loop_wait while this node holds the primary
 *    role; a refusal (stale epoch) drops the lease at once;
 *  - fencing: PostgreSQL that may be writing without a valid lease is
 *    killed at once, every process of the instance (pg/instance.h),
 *    whatever else is running.
 * Failure modes: an action fails (logged once with its cause, state shown
 * in /patroni and ctl list, retried on later ticks with backoff), the
 * postmaster hangs (primary: stopped and the role released so the
 * controller fails over; replica: restarted), the data dir belongs to
 * another cluster (moved aside, never deleted, and cloned again). */
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

const char *agent_goal_name(enum agent_goal g)
{
    static const char *const n[] = {"wait", "bootstrap", "primary", "handover", "replica"};
    return (unsigned)g < sizeof n / sizeof n[0] ? n[g] : "?";
}

const char *agent_local_name(enum agent_local l)
{
    static const char *const n[] = {"unknown", "no data", "foreign data", "stopped", "starting",
                                    "primary", "replica", "hung"};
    return (unsigned)l < sizeof n / sizeof n[0] ? n[l] : "?";
}

void agent_forget_upstream(struct agent *ag)
{
    ag->upstream_host[0] = '\0';
    ag->upstream_port = 0;
}

void agent_set_state(struct ha *h, const char *s)
{
    snprintf(h->ag.state_text, sizeof h->ag.state_text, "%s", s);
}

const struct fsm_member *agent_primary_member(const struct ha *h)
{
    const struct fsm_primary *p = &h->fsm->st.primary;
    return p->member[0] ? fsm_member_find(&h->fsm->st, p->member) : NULL;
}

static bool holder_state(enum fsm_primary_state s)
{
    return s == FSM_PRIMARY_BOOTSTRAPPING || s == FSM_PRIMARY_PROMOTING ||
           s == FSM_PRIMARY_RUNNING || s == FSM_PRIMARY_DEMOTING;
}

bool agent_am_holder(const struct ha *h)
{
    const struct fsm_primary *p = &h->fsm->st.primary;
    return strcmp(p->member, ha_name(h)) == 0 && holder_state(p->state);
}

enum agent_goal agent_compute_goal(const struct ha *h)
{
    if (!h->fresh)
        return AG_WAIT;
    const struct fsm_state *st = &h->fsm->st;
    const struct fsm_primary *p = &st->primary;
    if (strcmp(p->member, ha_name(h)) == 0) {
        switch (p->state) {
        case FSM_PRIMARY_BOOTSTRAPPING: return AG_BOOTSTRAP;
        case FSM_PRIMARY_PROMOTING:
        case FSM_PRIMARY_RUNNING: return AG_PRIMARY;
        case FSM_PRIMARY_DEMOTING: return AG_HANDOVER;
        default: return AG_WAIT;
        }
    }
    const struct fsm_member *pm = agent_primary_member(h);
    if (st->sysid[0] != '\0' && pm != NULL && pm->conn_host[0] != '\0' &&
        (p->state == FSM_PRIMARY_RUNNING || p->state == FSM_PRIMARY_PROMOTING))
        return AG_REPLICA;
    return AG_WAIT;
}

/* The cluster's system identifier as a number (0 if none). */
static uint64_t cluster_sysid(const struct ha *h)
{
    return strtoull(h->fsm->st.sysid, NULL, 10);
}

bool agent_standby_signal(const struct ha *h)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/standby.signal", h->cfg->postgresql.data_dir);
    return access(path, F_OK) == 0;
}

enum agent_local agent_local_state(struct ha *h)
{
    const struct pg_status *ps = pgmon_status(h->ag.mon);
    uint64_t sysid = cluster_sysid(h);
    switch (ps->state) {
    case PG_RUN_UNKNOWN:
        return AL_UNKNOWN;
    case PG_RUN_HUNG:
        return AL_HUNG;
    case PG_RUN_STARTING:
    case PG_RUN_STOPPING:
        return AL_STARTING;
    case PG_RUN_RUNNING:
        if (!ps->query_ok)
            return AL_STARTING;
        if (h->fresh && sysid != 0 && ps->system_identifier != 0 && ps->system_identifier != sysid)
            return AL_BAD_DATA;
        return ps->in_recovery ? AL_REPLICA : AL_PRIMARY;
    case PG_RUN_DOWN:
        break;
    }
    enum pgnode_datadir d;
    char err[256];
    h->ag.stopped_sysid = 0;
    if (pgnode_inspect_datadir(h->cfg->postgresql.data_dir, &d, err, sizeof err) != 0) {
        snprintf(h->ag.last_error, sizeof h->ag.last_error, "%s", err);
        return AL_BAD_DATA;
    }
    switch (d) {
    case PGNODE_DATADIR_ABSENT:
    case PGNODE_DATADIR_EMPTY: return AL_NO_DATA;
    case PGNODE_DATADIR_OTHER: return AL_BAD_DATA;
    case PGNODE_DATADIR_CLUSTER: break;
    }
    h->ag.was_primary = !agent_standby_signal(h);
    /* reported, so that the controller prefers data to a new initdb */
    if (pgnode_read_sysid(h->cfg->postgresql.data_dir, &h->ag.stopped_sysid) != 0)
        h->ag.stopped_sysid = 0;
    return AL_STOPPED;
}

/* --- action plumbing ---------------------------------------------------- */

void agent_op_begin(struct ha *h, const char *name, const char *state)
{
    struct agent *ag = &h->ag;
    ag->busy = true;
    snprintf(ag->op, sizeof ag->op, "%s", name);
    ag->op_started_ms = ha_now(h);
    if (state != NULL)
        agent_set_state(h, state);
}

void agent_op_end(struct ha *h, int status, const char *what)
{
    struct agent *ag = &h->ag;
    ag->busy = false;
    /* one failed start, one more step of backoff before the next try */
    if (status != 0 && (strcmp(ag->op, "start") == 0 || strcmp(ag->op, "rejoin") == 0 ||
                        strcmp(ag->op, "start as replica") == 0))
        ag->start_failures++;
    if (status != 0) {
        const char *why = ag->node != NULL ? pgnode_error(ag->node) : "";
        snprintf(ag->last_error, sizeof ag->last_error, "%s failed: %s", what,
                 why != NULL && why[0] ? why : pgw_strerror(status));
        log_error("ha", "%s", ag->last_error);
    } else {
        ag->last_error[0] = '\0';
    }
    ha_kick(h);
}

/* An action changed PostgreSQL: look again before deciding anything else,
 * so the next step never acts on an observation from before the action. */
struct finish_req {
    struct ha *h;
    int status;
};

static void op_refreshed(struct pgmon *m, int status, const struct pg_status *st, void *ctx)
{
    struct finish_req *f = ctx;
    (void)m;
    (void)st;
    struct ha *h = f->h;
    int op_status = f->status;
    free(f);
    if (status == PGW_ECANCELED || h->closing)
        return;
    agent_op_end(h, op_status, h->ag.op);
}

void agent_op_finish(struct ha *h, int status)
{
    struct finish_req *f = malloc(sizeof *f);
    if (f != NULL) {
        f->h = h;
        f->status = status;
        if (pgmon_refresh(h->ag.mon, op_refreshed, f) == 0)
            return;
        free(f);
    }
    agent_op_end(h, status, h->ag.op);
}

void agent_pg_done(struct pgnode *n, int status, void *ctx)
{
    struct ha *h = ctx;
    (void)n;
    if (h->closing)
        return;
    agent_op_finish(h, status);
}

static void submit_done(void *ctx, int status, const struct fsm_result *res, const char *msg)
{
    struct ha *h = ctx;
    (void)res;
    if (h->closing)
        return;
    h->ag.busy = false;
    if (status != 0) {
        snprintf(h->ag.last_error, sizeof h->ag.last_error, "%s: %s", h->ag.op, msg);
        log_warn("ha", "%s", h->ag.last_error);
    }
    ha_kick(h);
}

bool agent_submit_op(struct ha *h, struct fsm_cmd *c, const char *opname)
{
    agent_op_begin(h, opname, NULL);
    if (submit_cmd(h->sub, c, h->timing.retry_timeout_ms * 2, submit_done, h) != 0) {
        h->ag.busy = false;
        return false;
    }
    return true;
}

/* --- the table ----------------------------------------------------------------- */

typedef void (*agent_action)(struct ha *h);

struct agent_rule {
    enum agent_goal goal;
    enum agent_local local;
    agent_action action;
    const char *comment;
};

static const struct agent_rule rules[] = {
    {AG_BOOTSTRAP, AL_NO_DATA, agent_act_bootstrap, "create the cluster: initdb, roles, start"},
    {AG_BOOTSTRAP, AL_STOPPED, agent_act_adopt, "found the cluster on the existing stopped data"},
    {AG_BOOTSTRAP, AL_PRIMARY, agent_act_founding_primary, "found the cluster on the running server, then confirm"},
    {AG_BOOTSTRAP, AL_REPLICA, agent_act_refuse_bootstrap, "a standby cannot found the cluster"},
    {AG_BOOTSTRAP, AL_BAD_DATA, agent_act_refuse_bootstrap, "the data dir is not a cluster"},
    {AG_PRIMARY, AL_REPLICA, agent_act_promote, "assigned primary: promote"},
    {AG_PRIMARY, AL_STOPPED, agent_act_start_primary, "assigned primary: start (in place) within primary_start_timeout"},
    {AG_PRIMARY, AL_PRIMARY, agent_act_confirm_primary, "running as primary: confirm, keep slots"},
    {AG_PRIMARY, AL_HUNG, agent_act_release_hung, "hung: stop it and hand the role over"},
    {AG_PRIMARY, AL_NO_DATA, agent_act_release_nodata, "no data: hand the role over"},
    {AG_PRIMARY, AL_BAD_DATA, agent_act_release_nodata, "unusable data: hand the role over"},
    {AG_HANDOVER, AL_PRIMARY, agent_act_handover, "switchover: stop cleanly"},
    {AG_HANDOVER, AL_STOPPED, agent_act_report_stopped, "switchover: report the final LSN"},
    {AG_HANDOVER, AL_HUNG, agent_act_release_hung, "hung during switchover"},
    {AG_REPLICA, AL_NO_DATA, agent_act_clone, "no data: clone from the primary"},
    {AG_REPLICA, AL_BAD_DATA, agent_act_replace_data, "foreign data: move aside, then clone"},
    {AG_REPLICA, AL_STOPPED, agent_act_rejoin, "stopped: rewind if needed, start as replica"},
    {AG_REPLICA, AL_PRIMARY, agent_act_fence_stop, "an unassigned primary: stop it"},
    {AG_REPLICA, AL_REPLICA, agent_act_follow, "replica: follow the current primary"},
    {AG_REPLICA, AL_HUNG, agent_act_kill_hung, "hung replica: restart it"},
    {AG_WAIT, AL_STOPPED, agent_act_start_standby, "no assignment: run as a replica"},
    {AG_WAIT, AL_NO_DATA, agent_act_restore, "no data, no primary: a no_leader replica method, if any"},
    {AG_WAIT, AL_HUNG, agent_act_kill_hung, "hung: restart it"},
    {AG_WAIT, AL_REPLICA, agent_act_none, "no primary yet: keep replaying"},
    {AG_WAIT, AL_PRIMARY, agent_act_none, "unassigned primary: fenced by the lease check if needed"},
};

static const struct agent_rule *find_rule(enum agent_goal g, enum agent_local l)
{
    for (size_t i = 0; i < sizeof rules / sizeof rules[0]; i++)
        if (rules[i].goal == g && rules[i].local == l)
            return &rules[i];
    return NULL;
}

/* Exposed for the unit test that every role the controller can assign has
 * an agent path. */
bool agent_has_rule(int goal, int local);
bool agent_has_rule(int goal, int local)
{
    return find_rule((enum agent_goal)goal, (enum agent_local)local) != NULL;
}

static void update_state_text(struct ha *h, enum agent_local local)
{
    struct agent *ag = &h->ag;
    if (ag->busy)
        return;
    if (ag->needs_reinit[0] != '\0' && local != AL_REPLICA && local != AL_PRIMARY) {
        agent_set_state(h, "needs reinit");
        return;
    }
    if (ag->bootstrap_failed[0] != '\0' && local != AL_REPLICA && local != AL_PRIMARY) {
        /* the controller reads it: this node is not chosen to found the cluster again */
        agent_set_state(h, "bootstrap failed");
        return;
    }
    switch (local) {
    case AL_PRIMARY:
    case AL_REPLICA: agent_set_state(h, "running"); break;
    case AL_STOPPED: agent_set_state(h, ag->last_error[0] ? "start failed" : "stopped"); break;
    case AL_STARTING: agent_set_state(h, "starting"); break;
    case AL_HUNG: agent_set_state(h, "hung"); break;
    case AL_NO_DATA: agent_set_state(h, "uninitialized"); break;
    case AL_BAD_DATA: agent_set_state(h, "unusable data directory"); break;
    case AL_UNKNOWN: agent_set_state(h, "unknown"); break;
    }
}

static void sync_node_config(struct ha *h)
{
    struct agent *ag = &h->ag;
    if (ag->busy || pgnode_busy(ag->node) || ag->node_config_gen == ag->config_gen)
        return;
    struct cfg_dcs d;
    if (cfg_dcs_copy(&d, &h->dcs) != 0)
        return;
    if (ag->node_dcs_set)
        cfg_dcs_free(&ag->node_dcs);
    ag->node_dcs = d;
    ag->node_dcs_set = true;
    pgnode_set_config(ag->node, h->cfg, &ag->node_dcs);
    ag->node_config_gen = ag->config_gen;
}

void agent_step(struct ha *h)
{
    struct agent *ag = &h->ag;
    uint64_t now = ha_now(h);
    sync_node_config(h);
    agent_observe_role(h);
    agent_lease_step(h);
    enum agent_local local = agent_local_state(h);
    if (local != AL_PRIMARY && local != AL_STARTING && local != AL_HUNG) {
        if (ag->fencing)
            agent_hook_fenced(h); /* on_stop: the fence stopped a primary */
        ag->fencing = false;
    }
    if (local == AL_PRIMARY || local == AL_REPLICA) {
        ag->primary_down_since_ms = 0;
        ag->start_failures = 0;
    }
    const char *why = NULL;
    if (agent_must_fence(h, local, now, &why)) {
        agent_fence_now(h, why);
        return;
    }
    update_state_text(h, local);
    if (ag->busy || h->shutting_down)
        goto table;
    if (agent_operator_step(h, local))
        return;
table:
    if (ag->busy || h->fsm->st.pause)
        return;
    if (h->shutting_down) {
        enum agent_goal g = agent_compute_goal(h);
        if (g != AG_HANDOVER && !(g == AG_PRIMARY && local == AL_PRIMARY))
            return; /* agent_shutdown_step decides */
    }
    enum agent_goal goal = agent_compute_goal(h);
    if (agent_standby_step(h, goal, local))
        return;
    const struct agent_rule *r = find_rule(goal, local);
    if (r == NULL)
        return;
    if (log_enabled(LOGL_DEBUG))
        log_debug("ha", "agent: goal %s, local %s -> %s", agent_goal_name(goal),
                  agent_local_name(local), r->comment);
    r->action(h);
}

/* --- reports, lifecycle ------------------------------------------------------------ */

void agent_fill_report(struct ha *h, struct fsm_report *r)
{
    struct agent *ag = &h->ag;
    const struct pg_status *ps = pgmon_status(ag->mon);
    struct ha_view v;
    ha_get_view(h, &v);
    snprintf(r->role, sizeof r->role, "%s", v.role);
    snprintf(r->state, sizeof r->state, "%s", ag->state_text[0] ? ag->state_text : "unknown");
    snprintf(r->repl_state, sizeof r->repl_state, "%s", v.pg.repl_state);
    r->timeline = ps->timeline;
    if (ps->query_ok) {
        if (ps->in_recovery) {
            r->receive_lsn = ps->received_lsn;
            r->replay_lsn = ps->replayed_lsn;
        } else {
            r->lsn = ps->wal_lsn;
        }
    }
    r->pending_restart = ps->pending_restart;
    r->server_version = ps->server_version;
    if (ps->system_identifier != 0)
        snprintf(r->sysid, sizeof r->sysid, "%" PRIu64, ps->system_identifier);
    else if (ps->state == PG_RUN_DOWN && h->ag.stopped_sysid != 0)
        snprintf(r->sysid, sizeof r->sysid, "%" PRIu64, h->ag.stopped_sysid);
    snprintf(r->reason, sizeof r->reason, "%s",
             ag->needs_reinit[0] ? ag->needs_reinit : ag->last_error);
}

static void mon_changed(struct pgmon *m, const struct pg_status *st, enum pg_run_state old, void *ctx)
{
    struct ha *h = ctx;
    (void)m;
    if (st->state != old)
        log_info("ha", "PostgreSQL %s -> %s%s%s", pg_run_state_name(old), pg_run_state_name(st->state),
                 st->error[0] ? ": " : "", st->error);
    ha_kick(h);
}

int agent_init(struct ha *h, char *err, size_t errlen)
{
    struct agent *ag = &h->ag;
    /* first: agent_close() runs after a failed init too, and disarms it */
    watchdog_init(&h->ag.wd, NULL, h->cfg->watchdog.device);
    int rc = pginst_init(&ag->inst, h->cfg->postgresql.data_dir, err, errlen);
    if (rc != 0)
        return rc;
    rc = cfg_dcs_copy(&ag->node_dcs, &h->dcs);
    if (rc != 0)
        return rc;
    ag->node_dcs_set = true;
    ag->node_config_gen = ag->config_gen;
    rc = pgnode_new(h->loop, h->cfg, &ag->node_dcs, &ag->node, err, errlen);
    if (rc != 0)
        return rc;
    struct pgconn_params params;
    memset(&params, 0, sizeof params);
    rc = pgnode_local_conn_params(ag->node, &params);
    if (rc != 0) {
        snprintf(err, errlen, "cannot build the local connection parameters");
        return rc;
    }
    struct pgmon_opts mo = {
        .data_dir = h->cfg->postgresql.data_dir,
        .conn = &params,
        .interval_ms = h->timing.loop_wait_ms,
        .query_timeout_ms = h->timing.retry_timeout_ms,
        .probe_timeout_ms = h->timing.retry_timeout_ms,
        .on_change = mon_changed,
        .ctx = h,
    };
    rc = pgmon_new(h->loop, &mo, &ag->mon);
    pgconn_params_free(&params);
    if (rc != 0) {
        snprintf(err, errlen, "cannot create the PostgreSQL monitor");
        return rc;
    }
    rc = pgmon_start(ag->mon);
    if (rc != 0) {
        snprintf(err, errlen, "cannot start the PostgreSQL monitor");
        return rc;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/lease.state", h->cfg->raft.data_dir);
    ag->lease_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (ag->lease_fd < 0) {
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return PGW_EIO;
    }
    agent_lease_file_restore(h);
    const char *nofence = getenv("PGW_TEST_DISABLE_FENCING");
    if (nofence != NULL && strcmp(nofence, "1") == 0) {
        h->ag.test_no_fencing = true;
        if (h->keeper != NULL)
            keeper_set_deadline(h->keeper, 0);
        log_error("ha", "PGW_TEST_DISABLE_FENCING=1: FENCING IS DISABLED (test-only switch); this "
                  "node can run a second primary");
    }
    if (h->ag.inst.test_group_only)
        log_error("ha", "PGW_TEST_FENCE_POSTMASTER_GROUP=1: THE FENCE KILLS THE POSTMASTER'S "
                  "PROCESS GROUP ONLY (test-only switch); busy backends survive it");
    agent_set_state(h, "unknown");
    return PGW_OK;
}

bool agent_idle(const struct ha *h)
{
    return !h->ag.busy;
}

void agent_close(struct ha *h)
{
    struct agent *ag = &h->ag;
    watchdog_disarm(&ag->wd);
    agent_request_done(&ag->restart_cb, &ag->restart_ctx, PGW_ECANCELED, "shutting down");
    agent_request_done(&ag->reinit_cb, &ag->reinit_ctx, PGW_ECANCELED, "shutting down");
    agent_hooks_close(h);
    if (ag->mon != NULL)
        pgmon_destroy(ag->mon);
    if (ag->node != NULL)
        pgnode_destroy(ag->node);
    ag->mon = NULL;
    ag->node = NULL;
    if (ag->lease_fd >= 0)
        close(ag->lease_fd);
    ag->lease_fd = -1;
    if (ag->node_dcs_set)
        cfg_dcs_free(&ag->node_dcs);
    ag->node_dcs_set = false;
}
