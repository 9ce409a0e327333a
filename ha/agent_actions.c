/* The actions of the agent's state table (ha/agent.c): each starts one
 * asynchronous step on the local PostgreSQL (pg/pgnode.h) or one command
 * through Raft, and ends with agent_op_finish, which observes PostgreSQL
 * again before the table is evaluated anew. Each is idempotent: running it
 * twice in the same situation does the same thing or nothing. */
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
#include "ha/sync.h"
#include "pg/pgconf.h"

/* --- actions ---------------------------------------------------------------- */

void agent_act_none(struct ha *h)
{
    (void)h;
}

static void bootstrap_done(struct pgnode *n, int status, void *ctx)
{
    struct ha *h = ctx;
    if (h->closing)
        return;
    if (status == 0)
        h->ag.founded_epoch = h->fsm->st.primary.epoch;
    else
        agent_bootstrap_failed(h, pgnode_error(n)); /* agent_replica.c: never loops */
    agent_hook_started(h, status, false);
    agent_op_finish(h, status);
}

void agent_act_bootstrap(struct ha *h)
{
    if (agent_bootstrap_refused(h))
        return;
    if (!lease_holder_valid(&h->ag.lease, ha_now(h)))
        return; /* the lease must be confirmed before a primary starts */
    if (!agent_watchdog_ready(h))
        return;
    agent_op_begin(h, "bootstrap", "initializing new cluster");
    log_info("ha", "assigned to create the cluster: running %s in %s",
             h->cfg->bootstrap.method ? h->cfg->bootstrap.method : "initdb",
             h->cfg->postgresql.data_dir);
    if (pgnode_bootstrap(h->ag.node, bootstrap_done, h) != 0)
        agent_op_end(h, PGW_EIO, "bootstrap");
}

static void adopt_done(struct pgnode *n, int status, const struct pgnode_adopt_result *r, void *ctx)
{
    struct ha *h = ctx;
    (void)n;
    if (h->closing)
        return;
    if (status == 0 && r->in_recovery) {
        snprintf(h->ag.last_error, sizeof h->ag.last_error,
                 "cannot found the cluster on a standby: start pgwarden on the primary first");
        log_error("ha", "%s", h->ag.last_error);
    } else if (status == 0) {
        h->ag.founded_epoch = h->fsm->st.primary.epoch;
    }
    if (status == 0 && r->started)
        agent_hook_started(h, status, false);
    agent_op_finish(h, status);
}

void agent_act_adopt(struct ha *h)
{
    if (agent_bootstrap_refused(h))
        return; /* never adopt what a failed bootstrap left running */
    if (!lease_holder_valid(&h->ag.lease, ha_now(h)))
        return;
    if (!agent_watchdog_ready(h))
        return;
    agent_op_begin(h, "adopt", "adopting existing data");
    log_info("ha", "assigned to create the cluster over existing data in %s: adopting it",
             h->cfg->postgresql.data_dir);
    if (pgnode_adopt(h->ag.node, adopt_done, h) != 0)
        agent_op_end(h, PGW_EIO, "adopt");
}

void agent_release(struct ha *h, const char *why)
{
    struct agent *ag = &h->ag;
    const struct fsm_primary *p = &h->fsm->st.primary;
    if (ag->released_epoch == p->epoch)
        return;
    struct fsm_cmd c;
    fsm_cmd_init(&c, FSM_OP_PRIMARY_RELEASE, NULL);
    snprintf(c.member, sizeof c.member, "%s", ha_name(h));
    c.epoch = p->epoch;
    snprintf(c.u.release.reason, sizeof c.u.release.reason, "%s", why);
    log_warn("ha", "giving up the primary role (epoch %" PRIu64 "): %s", p->epoch, why);
    if (agent_submit_op(h, &c, "release"))
        ag->released_epoch = p->epoch;
}

void agent_act_refuse_bootstrap(struct ha *h)
{
    agent_release(h, "cannot found the cluster here: the local data is a standby or not a cluster");
}

void agent_act_release_nodata(struct ha *h)
{
    agent_release(h, "no usable data directory");
}

void agent_confirm_running(struct ha *h)
{
    struct agent *ag = &h->ag;
    const struct fsm_state *st = &h->fsm->st;
    const struct fsm_primary *p = &st->primary;
    const struct pg_status *ps = pgmon_status(ag->mon);
    if (st->sysid[0] == '\0' && ps->system_identifier != 0) {
        struct fsm_cmd c;
        fsm_cmd_init(&c, FSM_OP_CLUSTER_INIT, NULL);
        snprintf(c.member, sizeof c.member, "%s", ha_name(h));
        snprintf(c.u.init.sysid, sizeof c.u.init.sysid, "%" PRIu64, ps->system_identifier);
        log_info("ha", "cluster initialized: system identifier %s", c.u.init.sysid);
        agent_submit_op(h, &c, "cluster_init");
        return;
    }
    if (p->state == FSM_PRIMARY_RUNNING || ag->running_reported_epoch == p->epoch)
        return;
    struct fsm_cmd c;
    fsm_cmd_init(&c, FSM_OP_PRIMARY_RUNNING, NULL);
    snprintf(c.member, sizeof c.member, "%s", ha_name(h));
    c.epoch = p->epoch;
    c.u.running.timeline = ps->timeline;
    c.u.running.lsn = ps->in_recovery ? ps->replayed_lsn : ps->wal_lsn;
    c.u.running.wall_ms = clock_wall_ms();
    if (agent_submit_op(h, &c, "confirm primary")) {
        ag->running_reported_epoch = p->epoch;
        log_info("ha", "running as %s on timeline %u (epoch %" PRIu64 ")",
                 ps->in_recovery ? "standby leader" : "primary", ps->timeline, p->epoch);
    }
}

void agent_act_confirm_primary(struct ha *h)
{
    agent_set_state(h, "running");
    if (h->cfg->watchdog.mode != CFG_WD_OFF && !watchdog_armed(&h->ag.wd)) {
        /* a primary found running (pgwarden restarted, or the mode just
         * turned on): arm now; refusing here would only leave it unguarded */
        char err[320];
        int t = watchdog_timeout_for(h->timing.ttl_ms, h->cfg->watchdog.safety_margin_s);
        if (watchdog_arm(&h->ag.wd, t, err, sizeof err) != 0 && !h->ag.wd_warned) {
            h->ag.wd_warned = true;
            log_error("ha", "cannot arm the watchdog for the running primary: %s", err);
        }
    }
    /* before confirming a promotion: replicas re-pointed at the new primary
     * need their slots there at once (agent_slots.c) */
    if (agent_slots_step(h, true))
        return;
    agent_confirm_running(h);
    if (!h->ag.busy && h->fsm->st.primary.state == FSM_PRIMARY_RUNNING)
        (void)agent_sync_step(h);
}

void agent_act_promote(struct ha *h)
{
    if (!lease_holder_valid(&h->ag.lease, ha_now(h)))
        return;
    if (!agent_watchdog_ready(h))
        return;
    if (!agent_hook_pre_promote(h))
        return;
    /* The configuration written at promotion already carries what commits
     * must wait for: in strict synchronous mode nothing is acknowledged
     * before a standby of this primary is synchronous. */
    if (h->dcs.synchronous_mode != CFG_SYNC_OFF) {
        char names[256] = "";
        unsigned count = h->dcs.synchronous_node_count ? h->dcs.synchronous_node_count : 1;
        if (h->dcs.synchronous_mode_strict)
            sync_standby_names(h->dcs.synchronous_mode == CFG_SYNC_QUORUM, count, NULL, 0, true,
                               names, sizeof names);
        if (pgnode_set_sync_names(h->ag.node, names) == 0) {
            snprintf(h->ag.sync_applied, sizeof h->ag.sync_applied, "%s", names);
            h->ag.sync_names_set = true;
            h->ag.sync_managed = true;
        }
    }
    agent_op_begin(h, "promote", "promoting");
    log_info("ha", "assigned primary (epoch %" PRIu64 "): promoting", h->fsm->st.primary.epoch);
    h->stats.failovers++;
    if (pgnode_promote(h->ag.node, agent_hook_pg_promoted, h) != 0)
        agent_op_end(h, PGW_EIO, "promote");
}

void agent_act_start_primary(struct ha *h)
{
    struct agent *ag = &h->ag;
    uint64_t now = ha_now(h);
    if (ag->hung_epoch == h->fsm->st.primary.epoch) {
        /* killed because it hung: hand over rather than restart in place */
        agent_release(h, "PostgreSQL was hung");
        return;
    }
    if (!lease_holder_valid(&ag->lease, now))
        return;
    if (!agent_watchdog_ready(h))
        return;
    if (ag->primary_down_since_ms == 0)
        ag->primary_down_since_ms = now;
    if (h->dcs.primary_start_timeout_ms > 0 &&
        now - ag->primary_down_since_ms > h->dcs.primary_start_timeout_ms) {
        agent_release(h, "PostgreSQL could not be started within primary_start_timeout");
        return;
    }
    if (now - ag->last_start_ms < START_BACKOFF_MS * (ag->start_failures > 4 ? 5 : ag->start_failures))
        return;
    ag->last_start_ms = now;
    struct pgconf_role role = {.standby = !ag->was_primary};
    struct pgconf_write_result wr;
    if (pgnode_configure(ag->node, &role, &wr) != 0) {
        agent_op_end(h, PGW_EIO, "write configuration");
        return;
    }
    agent_op_begin(h, "start", "starting");
    log_info("ha", "assigned primary and PostgreSQL is stopped: starting it %s",
             ag->was_primary ? "as primary (restart in place)" : "as a standby, to promote it");
    if (agent_hook_pg_start(h, agent_pg_done) != 0)
        agent_op_end(h, PGW_EIO, "start");
}

static void handover_cd(struct pgctl *ctl, int status, const struct pg_controldata *cd, void *ctx)
{
    struct ha *h = ctx;
    (void)ctl;
    if (h->closing)
        return;
    if (status != 0) {
        agent_op_end(h, status, "read the final checkpoint");
        return;
    }
    h->ag.busy = false;
    const struct fsm_primary *p = &h->fsm->st.primary;
    struct fsm_cmd c;
    fsm_cmd_init(&c, FSM_OP_PRIMARY_STOPPED, NULL);
    snprintf(c.member, sizeof c.member, "%s", ha_name(h));
    c.epoch = p->epoch;
    c.u.stopped.final_lsn = cd->checkpoint_lsn;
    c.u.stopped.timeline = cd->checkpoint_tli;
    char lsn[32];
    pg_lsn_format(cd->checkpoint_lsn, lsn, sizeof lsn);
    log_info("ha", "switchover: stopped cleanly, final checkpoint at %s on timeline %u", lsn,
             cd->checkpoint_tli);
    if (agent_submit_op(h, &c, "report stopped"))
        h->ag.stopped_reported_epoch = p->epoch;
}

void agent_act_report_stopped(struct ha *h)
{
    if (h->ag.stopped_reported_epoch == h->fsm->st.primary.epoch)
        return;
    agent_op_begin(h, "read the final checkpoint", "demoting");
    if (pgctl_controldata(pgnode_ctl(h->ag.node), handover_cd, h) != 0)
        agent_op_end(h, PGW_EIO, "read the final checkpoint");
}

static void handover_stopped(struct pgnode *n, int status, void *ctx)
{
    struct ha *h = ctx;
    (void)n;
    if (h->closing)
        return;
    if (status != 0) {
        agent_op_finish(h, status);
        return;
    }
    h->ag.busy = false;
    agent_act_report_stopped(h);
}

void agent_act_handover(struct ha *h)
{
    if (!agent_hook_before_stop(h, "switchover"))
        return;
    agent_op_begin(h, "switchover stop", "demoting");
    h->stats.switchovers++;
    log_info("ha", "switchover to %s: stopping PostgreSQL cleanly (shutdown checkpoint)",
             h->fsm->st.primary.target[0] ? h->fsm->st.primary.target : "the best candidate");
    if (agent_hook_pg_stop(h, PGCTL_STOP_FAST, handover_stopped) != 0)
        agent_op_end(h, PGW_EIO, "switchover stop");
}

void agent_act_release_hung(struct ha *h)
{
    struct agent *ag = &h->ag;
    uint64_t now = ha_now(h);
    const struct pg_status *ps = pgmon_status(ag->mon);
    if (now - ps->state_since_ms < 2 * (uint64_t)h->timing.retry_timeout_ms)
        return; /* not hung for long enough to be sure */
    if (ag->released_epoch == h->fsm->st.primary.epoch)
        return;
    agent_fence_now(h, "the postmaster is hung (accepts connections but never answers)");
    ag->hung_epoch = h->fsm->st.primary.epoch;
    /* The controller promotes at once after a release (no lease to wait
     * out): release only once every process of the instance is gone. */
    if (pginst_count(&ag->inst) > 0)
        return;
    agent_release(h, "PostgreSQL is hung");
}

void agent_act_kill_hung(struct ha *h)
{
    uint64_t now = ha_now(h);
    const struct pg_status *ps = pgmon_status(h->ag.mon);
    if (now - ps->state_since_ms < 2 * (uint64_t)h->timing.retry_timeout_ms)
        return;
    if (ps->postmaster_pid > 0 && !pg_postmaster_running(h->cfg->postgresql.data_dir, NULL)) {
        /* an orphan without its postmaster.pid (data directory removed):
         * pg_ctl cannot find it, and it keeps the port */
        log_warn("ha", "PostgreSQL (pid %d) runs without its data directory's postmaster.pid: "
                 "killing it so that this node can be rebuilt", (int)ps->postmaster_pid);
        agent_kill_postgres(h);
        return;
    }
    agent_op_begin(h, "stop hung instance", "restarting (hung)");
    log_warn("ha", "PostgreSQL is hung: stopping it immediately to restart it");
    if (pgnode_stop(h->ag.node, PGCTL_STOP_IMMEDIATE, agent_pg_done, h) != 0)
        agent_op_end(h, PGW_EIO, "stop hung instance");
}

void agent_act_fence_stop(struct ha *h)
{
    agent_op_begin(h, "fence", "stopping (fenced)");
    if (agent_hook_pg_stop(h, PGCTL_STOP_IMMEDIATE, agent_pg_done) != 0)
        agent_op_end(h, PGW_EIO, "fence");
}

/* The member's pgwarden reports to the cluster and its PostgreSQL runs. */
static bool member_alive(const struct ha *h, const struct fsm_member *m)
{
    uint64_t now = ha_now(h);
    return m->reported && strcmp(m->report.state, "running") == 0 && m->local_report_ms != 0 &&
           now - m->local_report_ms <= 2 * (uint64_t)h->timing.ttl_ms;
}

/* The primary's lease was renewed here lately. Its last report stays fresh
 * for 2 * ttl after it died, longer than a replica waits before suspecting
 * divergence (long_lost below), and a replica that stopped to rejoin a dead
 * primary was no candidate until the lease ran out and a rejoin timed out:
 * with ttl 10, a failover took 32 s instead of 11. A renewal every
 * loop_wait is what a live primary does; one round may take retry_timeout. */
static bool primary_renewing(const struct ha *h)
{
    uint64_t now = ha_now(h), last = h->fsm->local_lease_ms;
    uint64_t window = 2 * (uint64_t)h->timing.loop_wait_ms + (uint64_t)h->timing.retry_timeout_ms;
    return last != 0 && now >= last && now - last <= window;
}

/* Start the stopped local PostgreSQL as a standby with the configuration it
 * has: it stays a candidate even while its upstream cannot be reached. */
static void start_as_is(struct ha *h, const char *why)
{
    struct agent *ag = &h->ag;
    uint64_t now = ha_now(h);
    if (now - ag->last_start_ms < START_BACKOFF_MS * (ag->start_failures > 4 ? 5 : ag->start_failures + 1))
        return;
    ag->last_start_ms = now;
    agent_op_begin(h, "start as replica", "starting");
    log_info("ha", "%s: starting PostgreSQL as a replica without rejoining for now", why);
    if (agent_hook_pg_start(h, agent_pg_done) != 0)
        agent_op_end(h, PGW_EIO, "start as replica");
}

/* The upstream is the member the record assigned and it has not confirmed
 * its promotion yet. A walreceiver connected to it now would stream from a
 * standby; the promotion cuts every cascading walsender, and PostgreSQL then
 * waits wal_retrieve_retry_interval (pgwarden's default 1 s, an operator's
 * may be longer) before it tries again, while the history file of the new
 * timeline it needs was never fetched.
 * Pointed at it once it serves on the new timeline, the walreceiver fetches
 * that history at connection and crosses the switch point at once. */
static bool upstream_promoting(const struct ha *h, const struct fsm_member *up)
{
    const struct fsm_primary *fp = &h->fsm->st.primary;
    return fp->state == FSM_PRIMARY_PROMOTING && strcmp(up->name, fp->member) == 0;
}

const struct fsm_member *agent_upstream_member(const struct ha *h)
{
    const char *rf = h->cfg->tags.replicatefrom;
    if (rf != NULL && rf[0] != '\0' && strcmp(rf, ha_name(h)) != 0) {
        const struct fsm_member *m = fsm_member_find(&h->fsm->st, rf);
        if (m != NULL && !m->witness && m->conn_host[0] != '\0' &&
            strcmp(m->report.state, "running") == 0)
            return m;
    }
    return agent_primary_member(h);
}

void agent_act_clone(struct ha *h)
{
    if (h->fsm->st.primary.state != FSM_PRIMARY_RUNNING)
        return; /* clone only from a confirmed primary */
    if (!agent_primary_up(h)) {
        agent_act_restore(h); /* its lease expired: no_leader methods, if any */
        return;
    }
    const struct fsm_member *src = agent_primary_member(h);
    /* a running replica tagged clonefrom is preferred (keeps load off the primary) */
    const struct fsm_state *st = &h->fsm->st;
    for (unsigned i = 0; i < st->n_members; i++) {
        const struct fsm_member *m = &st->members[i];
        if (strcmp(m->name, ha_name(h)) != 0 && !m->witness && fsm_member_tag_bool(m, "clonefrom") &&
            strcmp(m->report.state, "running") == 0 && m->conn_host[0]) {
            src = m;
            break;
        }
    }
    if (src == NULL)
        return;
    h->ag.no_primary_since_ms = 0;
    agent_clone_from(h, src); /* create_replica_methods, with a backoff (agent_replica.c) */
}

void agent_act_replace_data(struct ha *h)
{
    struct agent *ag = &h->ag;
    const struct pg_status *ps = pgmon_status(ag->mon);
    if (ps->state == PG_RUN_RUNNING || ps->state == PG_RUN_HUNG) {
        agent_op_begin(h, "stop foreign instance", "stopping");
        log_warn("ha", "the local PostgreSQL belongs to another cluster (system id %" PRIu64
                 ", cluster %s): stopping it to move it aside", ps->system_identifier, h->fsm->st.sysid);
        if (pgnode_stop(ag->node, PGCTL_STOP_FAST, agent_pg_done, h) != 0)
            agent_op_end(h, PGW_EIO, "stop foreign instance");
        return;
    }
    char moved[4096], err[512];
    if (pgnode_move_aside(h->cfg->postgresql.data_dir, moved, sizeof moved, err, sizeof err) != 0) {
        snprintf(ag->last_error, sizeof ag->last_error, "%s", err);
        log_error("ha", "%s", err);
        return;
    }
    log_warn("ha", "moved the data directory that cannot join this cluster to %s (nothing deleted)",
             moved);
    ha_kick(h);
}

static void rejoin_done(struct pgnode *n, int status, const struct pgnode_rejoin_result *r, void *ctx)
{
    struct ha *h = ctx;
    (void)n;
    if (h->closing)
        return;
    struct agent *ag = &h->ag;
    if (status == 0 && r != NULL) {
        if (r->needs_reinit) {
            snprintf(ag->needs_reinit, sizeof ag->needs_reinit, "%s", r->reason);
            ag->reinit_retry_ms = ha_now(h) + 10 * (uint64_t)h->timing.ttl_ms;
            log_error("ha", "cannot rejoin as a replica: %s (needs reinit: pgwarden ctl reinit %s)",
                      r->reason, ha_name(h));
            ag->busy = false;
            agent_set_state(h, "needs reinit");
            ha_kick(h);
            return;
        }
        ag->needs_reinit[0] = '\0';
        if (r->rewound)
            log_info("ha", "rewound with pg_rewind and restarted as a replica");
        if (r->recloned)
            log_info("ha", "re-cloned after a failed rewind (old data kept at %s)", r->moved_to);
    }
    agent_op_finish(h, status);
}

void agent_act_rejoin(struct ha *h)
{
    struct agent *ag = &h->ag;
    uint64_t now = ha_now(h);
    if (ag->needs_reinit[0] != '\0' && now < ag->reinit_retry_ms)
        return;
    const struct fsm_member *up = agent_upstream_member(h);
    if (up == NULL)
        return;
    if (!member_alive(h, up) && !ag->was_primary) {
        /* A rejoin needs the upstream (timeline history, pg_rewind); a
         * stopped replica must not wait for it, or it stops being a
         * candidate exactly when its primary is gone. */
        start_as_is(h, "the upstream does not answer");
        return;
    }
    if (!ag->was_primary && ag->rejoin_is_check && ag->start_failures > 0) {
        /* the rejoin was only a check, for lack of evidence either way;
         * once it failed (the upstream went away meanwhile, most often)
         * the replica must not stay down for it */
        start_as_is(h, "the rejoin that checked for divergence failed");
        return;
    }
    if (upstream_promoting(h, up)) {
        /* a replica runs meanwhile (it reports its position, stays a
         * candidate); a former primary has to be checked against the new
         * timeline, which does not exist yet */
        if (!ag->was_primary)
            start_as_is(h, "the new primary has not confirmed its promotion yet");
        return;
    }
    if (now - ag->last_start_ms < START_BACKOFF_MS * (ag->start_failures > 4 ? 5 : ag->start_failures))
        return;
    ag->last_start_ms = now;
    agent_op_begin(h, "rejoin", "starting");
    log_info("ha", "rejoining as a replica of %s (%s:%u)%s", up->name, up->conn_host, up->conn_port,
             ag->was_primary ? ", checking whether pg_rewind is needed" : "");
    snprintf(ag->upstream_host, sizeof ag->upstream_host, "%s", up->conn_host);
    ag->upstream_port = up->conn_port;
    if (agent_hook_pg_rejoin(h, up->conn_host, up->conn_port, rejoin_done) != 0)
        agent_op_end(h, PGW_EIO, "rejoin");
}

void agent_act_follow(struct ha *h)
{
    struct agent *ag = &h->ag;
    const struct fsm_member *up = agent_upstream_member(h);
    if (up == NULL)
        return;
    agent_set_state(h, "running");
    const struct pg_status *ps = pgmon_status(ag->mon);
    bool same = strcmp(ag->upstream_host, up->conn_host) == 0 && ag->upstream_port == up->conn_port;
    if (!same && ag->upstream_host[0] == '\0' && ps->receiver.present &&
        strcmp(ps->receiver.sender_host, up->conn_host) == 0 && ps->receiver.sender_port == up->conn_port) {
        snprintf(ag->upstream_host, sizeof ag->upstream_host, "%s", up->conn_host);
        ag->upstream_port = up->conn_port;
        same = true;
    }
    uint64_t now = ha_now(h);
    bool streaming = ps->receiver.present && strcmp(ps->receiver.status, "streaming") == 0;
    if (same) {
        if (streaming) {
            ag->upstream_lost_since_ms = 0;
            ag->upstream_rechecked = false;
            ag->rejoin_is_check = false;
            (void)agent_slots_step(h, false); /* permanent and cascading slots */
            return;
        }
        /* Not streaming from the right upstream: if the primary moved to a
         * newer timeline we may have diverged; rejoin checks and rewinds. */
        if (ag->upstream_lost_since_ms == 0) {
            ag->upstream_lost_since_ms = now;
            ag->upstream_lost_said = false;
        }
        /* Only a live upstream we cannot stream from means divergence; a
         * dead one is the controller's business, and stopping here would
         * take this candidate out of the race. Its timeline may be newer
         * (a failover we missed) or older (a standby cluster's leader
         * rewound back onto the remote primary's history): either way a
         * rejoin checks and rewinds. */
        const struct fsm_primary *fp = &h->fsm->st.primary;
        /* A primary's record carries the timeline it confirmed at promotion,
         * ahead of its own reports; a standby leader stays confirmed across
         * a rewind onto the remote's older history, so only its report
         * says where it is now. */
        bool record_tl = strcmp(up->name, fp->member) == 0 && !agent_standby_mode(h);
        uint32_t up_tl = record_tl ? fp->timeline : up->report.timeline;
        bool long_lost = now - ag->upstream_lost_since_ms > 4 * (uint64_t)h->timing.loop_wait_ms + 3000;
        bool live_primary = fp->state == FSM_PRIMARY_RUNNING && member_alive(h, up) &&
                            (strcmp(up->name, fp->member) != 0 || primary_renewing(h));
        bool other_tl = live_primary && up_tl != 0 && up_tl != ps->timeline;
        /* A replica without a walreceiver reports its last restartpoint's
         * timeline: it may have replayed a newer one that its upstream never
         * had (a standby cluster's leader promoted, then rewound back onto
         * the remote's history). Once per episode, a live upstream it cannot
         * stream from sends it through a rejoin, whose check reads the
         * control file after a clean stop and rewinds if it diverged. */
        bool recheck = live_primary && !other_tl && !ag->upstream_rechecked && !ps->receiver.present;
        if (long_lost && !ag->upstream_lost_said && !other_tl && !recheck) {
            /* once per episode: why this replica does not rejoin */
            ag->upstream_lost_said = true;
            log_warn("ha", "not streaming from %s for %" PRIu64 " s (receiver %s), not rejoining: "
                     "primary record %s, %s %s alive, its timeline %u, ours %u", up->name,
                     (now - ag->upstream_lost_since_ms) / 1000,
                     ps->receiver.present ? ps->receiver.status : "absent",
                     fsm_primary_state_name(fp->state), up->name,
                     member_alive(h, up) ? "is" : "is not", up_tl, ps->timeline);
        }
        if (long_lost && (other_tl || recheck)) {
            ag->upstream_lost_since_ms = 0;
            agent_op_begin(h, "stop to rejoin", "stopping");
            ag->rejoin_is_check = !other_tl;
            if (other_tl) {
                log_warn("ha", "not streaming from %s, which is on timeline %u (we are on %u): "
                         "stopping to rejoin", up->name, up_tl, ps->timeline);
            } else {
                ag->upstream_rechecked = true;
                log_warn("ha", "not streaming from %s, which is alive, on timeline %u as far as our "
                         "last restartpoint says: stopping once to rejoin, in case we diverged",
                         up->name, up_tl);
            }
            if (agent_hook_pg_stop(h, PGCTL_STOP_FAST, agent_pg_done) != 0)
                agent_op_end(h, PGW_EIO, "stop to rejoin");
        }
        return;
    }
    if (upstream_promoting(h, up))
        return;
    agent_op_begin(h, "follow", NULL);
    log_info("ha", "following %s (%s:%u)", up->name, up->conn_host, up->conn_port);
    snprintf(ag->upstream_host, sizeof ag->upstream_host, "%s", up->conn_host);
    ag->upstream_port = up->conn_port;
    ag->upstream_lost_since_ms = 0;
    if (pgnode_follow(ag->node, up->conn_host, up->conn_port, agent_pg_done, h) != 0)
        agent_op_end(h, PGW_EIO, "follow");
}

/* Nothing assigned and PostgreSQL stopped: run it as a replica (of the last
 * known primary, if any) so that it reports its position and can be
 * promoted; never as a primary. Not before the cluster exists: the data
 * may be what the controller will ask us to adopt. */
void agent_act_start_standby(struct ha *h)
{
    struct agent *ag = &h->ag;
    if (!h->fresh || h->fsm->st.sysid[0] == '\0' || h->fsm->st.pause)
        return;
    uint64_t now = ha_now(h);
    if (now - ag->last_start_ms < START_BACKOFF_MS * (ag->start_failures > 4 ? 5 : ag->start_failures + 1))
        return;
    ag->last_start_ms = now;
    const struct fsm_member *up = agent_upstream_member(h);
    if (up != NULL && strcmp(up->name, ha_name(h)) != 0) {
        agent_act_rejoin(h);
        return;
    }
    struct pgconf_role role = {.standby = true};
    struct pgconf_write_result wr;
    agent_forget_upstream(ag); /* written without one */
    if (pgnode_configure(ag->node, &role, &wr) != 0) {
        agent_op_end(h, PGW_EIO, "write configuration");
        return;
    }
    agent_op_begin(h, "start as replica", "starting");
    log_info("ha", "no primary assigned: starting PostgreSQL as a replica until one is");
    if (agent_hook_pg_start(h, agent_pg_done) != 0)
        agent_op_end(h, PGW_EIO, "start as replica");
}

void agent_act_founding_primary(struct ha *h)
{
    if (h->ag.founded_epoch == h->fsm->st.primary.epoch)
        agent_confirm_running(h);
    else
        agent_act_adopt(h);
}


