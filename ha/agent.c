/* The node agent: makes the local PostgreSQL match what the replicated
 * state asks of this node, as a table of {goal, local state, action}.
 * Every action is idempotent and one runs at a time; each completion
 * re-evaluates the table at once.
 *
 * Before the table, on every step, two things that must never wait:
 *  - the lease: renew every loop_wait while this node holds the primary
 *    role; a refusal (stale epoch) drops the lease at once;
 *  - fencing: PostgreSQL running as primary without a valid lease is
 *    stopped immediately (SIGQUIT to the postmaster, then pg_ctl stop -m
 *    immediate to make sure), whatever else is running.
 * Failure modes: an action fails (logged once with its cause, state shown
 * in /patroni and ctl list, retried on later ticks with backoff), the
 * postmaster hangs (primary: stopped and the role released so the
 * controller fails over; replica: restarted), the data dir belongs to
 * another cluster (moved aside, never deleted, and cloned again). */
#include "ha/ha_internal.h"

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

#define START_BACKOFF_MS 2000

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

static void set_state(struct ha *h, const char *s)
{
    snprintf(h->ag.state_text, sizeof h->ag.state_text, "%s", s);
}

static const struct fsm_member *primary_member(const struct ha *h)
{
    const struct fsm_primary *p = &h->fsm->st.primary;
    return p->member[0] ? fsm_member_find(&h->fsm->st, p->member) : NULL;
}

static bool holder_state(enum fsm_primary_state s)
{
    return s == FSM_PRIMARY_BOOTSTRAPPING || s == FSM_PRIMARY_PROMOTING ||
           s == FSM_PRIMARY_RUNNING || s == FSM_PRIMARY_DEMOTING;
}

static bool am_holder(const struct ha *h)
{
    const struct fsm_primary *p = &h->fsm->st.primary;
    return strcmp(p->member, ha_name(h)) == 0 && holder_state(p->state);
}

static enum agent_goal compute_goal(const struct ha *h)
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
    const struct fsm_member *pm = primary_member(h);
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

static bool standby_signal_exists(const struct ha *h)
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
    h->ag.was_primary = !standby_signal_exists(h);
    return AL_STOPPED;
}

/* --- action plumbing ---------------------------------------------------- */

static void op_begin(struct ha *h, const char *name, const char *state)
{
    struct agent *ag = &h->ag;
    ag->busy = true;
    snprintf(ag->op, sizeof ag->op, "%s", name);
    ag->op_started_ms = ha_now(h);
    if (state != NULL)
        set_state(h, state);
}

static void op_end(struct ha *h, int status, const char *what)
{
    struct agent *ag = &h->ag;
    ag->busy = false;
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
    op_end(h, op_status, h->ag.op);
}

static void op_finish(struct ha *h, int status)
{
    struct finish_req *f = malloc(sizeof *f);
    if (f != NULL) {
        f->h = h;
        f->status = status;
        if (pgmon_refresh(h->ag.mon, op_refreshed, f) == 0)
            return;
        free(f);
    }
    op_end(h, status, h->ag.op);
}

static void pg_done(struct pgnode *n, int status, void *ctx)
{
    struct ha *h = ctx;
    (void)n;
    if (h->closing)
        return;
    op_finish(h, status);
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

static bool submit_op(struct ha *h, struct fsm_cmd *c, const char *opname)
{
    op_begin(h, opname, NULL);
    if (submit_cmd(h->sub, c, h->timing.retry_timeout_ms * 2, submit_done, h) != 0) {
        h->ag.busy = false;
        return false;
    }
    return true;
}

/* --- lease ------------------------------------------------------------------ */

/* The keeper kills PostgreSQL a little after the point where this process
 * fences it itself: it only acts when this process could not. */
#define KEEPER_GRACE_MS 100

static void keeper_sync(struct ha *h)
{
    if (h->keeper == NULL)
        return;
    uint64_t d = lease_holder_fence_deadline(&h->ag.lease, &h->timing);
    keeper_set_deadline(h->keeper, d != 0 ? d + KEEPER_GRACE_MS : 0);
}

static void lease_file_save(struct ha *h)
{
    keeper_sync(h);
    struct agent *ag = &h->ag;
    if (ag->lease_fd < 0)
        return;
    char boot[64] = "";
    FILE *f = fopen("/proc/sys/kernel/random/boot_id", "r");
    if (f != NULL) {
        if (fgets(boot, sizeof boot, f) == NULL)
            boot[0] = '\0';
        fclose(f);
    }
    boot[strcspn(boot, "\n")] = '\0';
    char line[192];
    int n = snprintf(line, sizeof line, "%s %" PRIu64 " %" PRIu64 "\n", boot, ag->lease.epoch,
                     ag->lease.confirmed_send_ms);
    /* No fsync: the value only means something until the next reboot. */
    if (n > 0 && pwrite(ag->lease_fd, line, (size_t)n, 0) == n)
        (void)ftruncate(ag->lease_fd, n);
}

/* A restart of pgwarden on a healthy primary keeps PostgreSQL running when
 * the lease it confirmed before (same boot: monotonic clock still valid) is
 * not over yet. */
static void lease_file_restore(struct ha *h)
{
    struct agent *ag = &h->ag;
    char buf[192];
    ssize_t n = pread(ag->lease_fd, buf, sizeof buf - 1, 0);
    if (n <= 0)
        return;
    buf[n] = '\0';
    char boot[64] = "", now_boot[64] = "";
    uint64_t epoch = 0, sent = 0;
    if (sscanf(buf, "%63s %" SCNu64 " %" SCNu64, boot, &epoch, &sent) != 3 || epoch == 0)
        return;
    FILE *f = fopen("/proc/sys/kernel/random/boot_id", "r");
    if (f != NULL) {
        if (fgets(now_boot, sizeof now_boot, f) == NULL)
            now_boot[0] = '\0';
        fclose(f);
    }
    now_boot[strcspn(now_boot, "\n")] = '\0';
    if (strcmp(boot, now_boot) != 0)
        return;
    lease_holder_reset(&ag->lease, epoch);
    ag->lease.confirmed = true;
    ag->lease.confirmed_send_ms = sent;
    uint64_t left = lease_holder_remaining(&ag->lease, &h->timing, ha_now(h));
    if (left > 0)
        log_info("ha", "restored the primary lease of epoch %" PRIu64 " (%" PRIu64 " ms left): "
                 "PostgreSQL may keep running while it is renewed", epoch, left);
    else
        lease_holder_reset(&ag->lease, 0);
    keeper_sync(h);
}

static void renew_done(void *ctx, int status, const struct fsm_result *res, const char *msg)
{
    struct ha *h = ctx;
    (void)res;
    if (h->closing)
        return;
    struct agent *ag = &h->ag;
    ag->renew_inflight = false;
    if (status == 0) {
        lease_holder_confirmed(&ag->lease);
        h->stats.lease_renewals++;
        lease_file_save(h);
        return;
    }
    h->stats.lease_renew_failures++;
    if (status == PGW_ECONFLICT) {
        log_error("ha", "primary lease lost: %s", msg);
        lease_holder_reset(&ag->lease, 0);
        lease_file_save(h);
    } else {
        lease_holder_failed(&ag->lease);
        log_warn("ha", "lease renewal failed (%s); %" PRIu64 " ms left before fencing", msg,
                 lease_holder_remaining(&ag->lease, &h->timing, ha_now(h)));
    }
    ha_kick(h);
}

static void lease_step(struct ha *h)
{
    struct agent *ag = &h->ag;
    if (h->fresh) {
        uint64_t want = am_holder(h) ? h->fsm->st.primary.epoch : 0;
        if (want != ag->lease.epoch) {
            if (want != 0)
                log_info("ha", "holding the primary role, epoch %" PRIu64, want);
            else if (ag->lease.epoch != 0)
                log_info("ha", "no longer holding the primary role (epoch %" PRIu64 " ended)",
                         ag->lease.epoch);
            lease_holder_reset(&ag->lease, want);
            lease_file_save(h);
        }
    }
    uint64_t now = ha_now(h);
    if (ag->renew_inflight || !lease_holder_due(&ag->lease, &h->timing, now))
        return;
    const struct pg_status *ps = pgmon_status(ag->mon);
    struct fsm_cmd c;
    fsm_cmd_init(&c, FSM_OP_LEASE_RENEW, NULL);
    snprintf(c.member, sizeof c.member, "%s", ha_name(h));
    c.epoch = ag->lease.epoch;
    if (ps->query_ok && !ps->in_recovery) {
        c.u.lease.lsn = ps->wal_lsn;
        c.u.lease.timeline = ps->timeline;
    }
    lease_holder_sent(&ag->lease, now); /* the lease counts from before the send */
    if (submit_cmd(h->sub, &c, h->timing.retry_timeout_ms, renew_done, h) == 0)
        ag->renew_inflight = true;
    else
        lease_holder_failed(&ag->lease);
}

/* --- fencing ----------------------------------------------------------------- */

static void fence_now(struct ha *h, const char *why)
{
    struct agent *ag = &h->ag;
    const struct pg_status *ps = pgmon_status(ag->mon);
    pid_t pid = ps->postmaster_pid;
    if (pid <= 0)
        (void)pg_postmaster_running(h->cfg->postgresql.data_dir, &pid);
    if (!ag->fencing) {
        log_error("ha", "FENCING: %s: stopping PostgreSQL immediately", why);
        h->stats.fences++;
    }
    ag->fencing = true;
    set_state(h, "stopping (fenced)");
    /* SIGQUIT is what pg_ctl stop -m immediate sends; doing it here costs no
     * fork and cannot wait behind another action. */
    if (pid > 0 && kill(pid, SIGQUIT) != 0 && errno != ESRCH)
        log_error("ha", "cannot signal postmaster %d: %s", (int)pid, strerror(errno));
}

static bool must_fence(struct ha *h, enum agent_local local, uint64_t now, const char **why)
{
    if (local != AL_PRIMARY)
        return false;
    struct agent *ag = &h->ag;
    if (lease_holder_valid(&ag->lease, &h->timing, now))
        return false;
    if (h->fresh) {
        /* A cluster not initialized yet has no other primary: the running
         * server is the one to adopt. */
        if (h->fsm->st.sysid[0] == '\0')
            return false;
        *why = ag->lease.epoch != 0 ? "the primary lease expired before it could be renewed"
                                    : "PostgreSQL runs as primary but this node does not hold the primary role";
        return true;
    }
    /* Not caught up with the cluster yet: a restarted pgwarden must not keep
     * an unleased primary running longer than it takes to catch up when
     * the cluster is reachable. */
    if (now - h->started_ms < 2 * (uint64_t)h->timing.retry_timeout_ms)
        return false;
    *why = "PostgreSQL runs as primary and this node could not confirm its lease";
    return true;
}

/* --- actions ---------------------------------------------------------------- */

static void act_none(struct ha *h)
{
    (void)h;
}

static void bootstrap_done(struct pgnode *n, int status, void *ctx)
{
    struct ha *h = ctx;
    (void)n;
    if (h->closing)
        return;
    if (status == 0)
        h->ag.founded_epoch = h->fsm->st.primary.epoch;
    op_finish(h, status);
}

static void act_bootstrap(struct ha *h)
{
    if (!lease_holder_valid(&h->ag.lease, &h->timing, ha_now(h)))
        return; /* the lease must be confirmed before a primary starts */
    op_begin(h, "bootstrap", "initializing new cluster");
    log_info("ha", "assigned to create the cluster: running initdb in %s", h->cfg->postgresql.data_dir);
    if (pgnode_bootstrap(h->ag.node, bootstrap_done, h) != 0)
        op_end(h, PGW_EIO, "bootstrap");
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
    op_finish(h, status);
}

static void act_adopt(struct ha *h)
{
    if (!lease_holder_valid(&h->ag.lease, &h->timing, ha_now(h)))
        return;
    op_begin(h, "adopt", "adopting existing data");
    log_info("ha", "assigned to create the cluster over existing data in %s: adopting it",
             h->cfg->postgresql.data_dir);
    if (pgnode_adopt(h->ag.node, adopt_done, h) != 0)
        op_end(h, PGW_EIO, "adopt");
}

static void release(struct ha *h, const char *why)
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
    if (submit_op(h, &c, "release"))
        ag->released_epoch = p->epoch;
}

static void act_refuse_bootstrap(struct ha *h)
{
    release(h, "cannot found the cluster here: the local data is a standby or not a cluster");
}

static void act_release_nodata(struct ha *h)
{
    release(h, "no usable data directory");
}

static void confirm_running(struct ha *h)
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
        submit_op(h, &c, "cluster_init");
        return;
    }
    if (p->state == FSM_PRIMARY_RUNNING || ag->running_reported_epoch == p->epoch)
        return;
    struct fsm_cmd c;
    fsm_cmd_init(&c, FSM_OP_PRIMARY_RUNNING, NULL);
    snprintf(c.member, sizeof c.member, "%s", ha_name(h));
    c.epoch = p->epoch;
    c.u.running.timeline = ps->timeline;
    c.u.running.lsn = ps->wal_lsn;
    c.u.running.wall_ms = clock_wall_ms();
    if (submit_op(h, &c, "confirm primary")) {
        ag->running_reported_epoch = p->epoch;
        log_info("ha", "running as primary on timeline %u (epoch %" PRIu64 ")", ps->timeline, p->epoch);
    }
}

static void sync_slots_done(struct pgnode *n, int status, void *ctx)
{
    struct ha *h = ctx;
    (void)n;
    if (h->closing)
        return;
    h->ag.busy = false;
    if (status != 0)
        log_warn("ha", "replication slots: %s", pgnode_error(h->ag.node));
    ha_kick(h);
}

/* One physical slot per other data member, redone when membership or the
 * epoch changes. Done before confirming a promotion: replicas re-pointed at
 * the new primary need their slot there at once. Returns true when it
 * started work. */
static bool sync_slots(struct ha *h)
{
    if (h->ag.busy || !h->dcs.use_slots)
        return false;
    const struct fsm_state *st = &h->fsm->st;
    uint64_t sig = st->n_members;
    for (unsigned i = 0; i < st->n_members; i++)
        sig = sig * 131 + st->members[i].raft_id + (st->members[i].witness ? 7 : 0);
    sig ^= st->primary.epoch << 32;
    if (sig == h->ag.slots_sig)
        return false;
    const char *names[FSM_MAX_MEMBERS + 1];
    size_t n = 0;
    for (unsigned i = 0; i < st->n_members; i++)
        if (!st->members[i].witness && strcmp(st->members[i].name, ha_name(h)) != 0)
            names[n++] = st->members[i].name;
    names[n] = NULL;
    op_begin(h, "replication slots", NULL);
    if (pgnode_sync_slots(h->ag.node, names, NULL, sync_slots_done, h) != 0) {
        h->ag.busy = false;
        return false;
    }
    h->ag.slots_sig = sig;
    return true;
}

static void act_confirm_primary(struct ha *h)
{
    set_state(h, "running");
    if (!sync_slots(h))
        confirm_running(h);
}

static void act_promote(struct ha *h)
{
    if (!lease_holder_valid(&h->ag.lease, &h->timing, ha_now(h)))
        return;
    op_begin(h, "promote", "promoting");
    log_info("ha", "assigned primary (epoch %" PRIu64 "): promoting", h->fsm->st.primary.epoch);
    h->stats.failovers++;
    if (pgnode_promote(h->ag.node, pg_done, h) != 0)
        op_end(h, PGW_EIO, "promote");
}

static void act_start_primary(struct ha *h)
{
    struct agent *ag = &h->ag;
    uint64_t now = ha_now(h);
    if (!lease_holder_valid(&ag->lease, &h->timing, now))
        return;
    if (ag->primary_down_since_ms == 0)
        ag->primary_down_since_ms = now;
    if (h->dcs.primary_start_timeout_ms > 0 &&
        now - ag->primary_down_since_ms > h->dcs.primary_start_timeout_ms) {
        release(h, "PostgreSQL could not be started within primary_start_timeout");
        return;
    }
    if (now - ag->last_start_ms < START_BACKOFF_MS * (ag->start_failures > 4 ? 5 : ag->start_failures))
        return;
    ag->last_start_ms = now;
    struct pgconf_role role = {.standby = !ag->was_primary};
    struct pgconf_write_result wr;
    if (pgnode_configure(ag->node, &role, &wr) != 0) {
        op_end(h, PGW_EIO, "write configuration");
        return;
    }
    op_begin(h, "start", "starting");
    log_info("ha", "assigned primary and PostgreSQL is stopped: starting it %s",
             ag->was_primary ? "as primary (restart in place)" : "as a standby, to promote it");
    if (pgnode_start(ag->node, pg_done, h) != 0)
        op_end(h, PGW_EIO, "start");
}

static void handover_cd(struct pgctl *ctl, int status, const struct pg_controldata *cd, void *ctx)
{
    struct ha *h = ctx;
    (void)ctl;
    if (h->closing)
        return;
    if (status != 0) {
        op_end(h, status, "read the final checkpoint");
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
    if (submit_op(h, &c, "report stopped"))
        h->ag.stopped_reported_epoch = p->epoch;
}

static void act_report_stopped(struct ha *h)
{
    if (h->ag.stopped_reported_epoch == h->fsm->st.primary.epoch)
        return;
    op_begin(h, "read the final checkpoint", "demoting");
    if (pgctl_controldata(pgnode_ctl(h->ag.node), handover_cd, h) != 0)
        op_end(h, PGW_EIO, "read the final checkpoint");
}

static void handover_stopped(struct pgnode *n, int status, void *ctx)
{
    struct ha *h = ctx;
    (void)n;
    if (h->closing)
        return;
    if (status != 0) {
        op_finish(h, status);
        return;
    }
    h->ag.busy = false;
    act_report_stopped(h);
}

static void act_handover(struct ha *h)
{
    op_begin(h, "switchover stop", "demoting");
    h->stats.switchovers++;
    log_info("ha", "switchover to %s: stopping PostgreSQL cleanly (shutdown checkpoint)",
             h->fsm->st.primary.target[0] ? h->fsm->st.primary.target : "the best candidate");
    if (pgnode_stop(h->ag.node, PGCTL_STOP_FAST, handover_stopped, h) != 0)
        op_end(h, PGW_EIO, "switchover stop");
}

static void act_release_hung(struct ha *h)
{
    struct agent *ag = &h->ag;
    uint64_t now = ha_now(h);
    const struct pg_status *ps = pgmon_status(ag->mon);
    if (now - ps->state_since_ms < 2 * (uint64_t)h->timing.retry_timeout_ms)
        return; /* not hung for long enough to be sure */
    if (ag->released_epoch != h->fsm->st.primary.epoch) {
        fence_now(h, "the postmaster is hung (accepts connections but never answers)");
        release(h, "PostgreSQL is hung");
    }
}

static void act_kill_hung(struct ha *h)
{
    uint64_t now = ha_now(h);
    const struct pg_status *ps = pgmon_status(h->ag.mon);
    if (now - ps->state_since_ms < 2 * (uint64_t)h->timing.retry_timeout_ms)
        return;
    op_begin(h, "stop hung instance", "restarting (hung)");
    log_warn("ha", "PostgreSQL is hung: stopping it immediately to restart it");
    if (pgnode_stop(h->ag.node, PGCTL_STOP_IMMEDIATE, pg_done, h) != 0)
        op_end(h, PGW_EIO, "stop hung instance");
}

static void act_fence_stop(struct ha *h)
{
    op_begin(h, "fence", "stopping (fenced)");
    if (pgnode_stop(h->ag.node, PGCTL_STOP_IMMEDIATE, pg_done, h) != 0)
        op_end(h, PGW_EIO, "fence");
}

static const struct fsm_member *upstream_member(const struct ha *h)
{
    const char *rf = h->cfg->tags.replicatefrom;
    if (rf != NULL && rf[0] != '\0' && strcmp(rf, ha_name(h)) != 0) {
        const struct fsm_member *m = fsm_member_find(&h->fsm->st, rf);
        if (m != NULL && !m->witness && m->conn_host[0] != '\0' &&
            strcmp(m->report.state, "running") == 0)
            return m;
    }
    return primary_member(h);
}

static void act_clone(struct ha *h)
{
    if (h->fsm->st.primary.state != FSM_PRIMARY_RUNNING)
        return; /* clone only from a confirmed primary */
    const struct fsm_member *src = primary_member(h);
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
    op_begin(h, "clone", "creating replica");
    log_info("ha", "no data: cloning from %s (%s:%u)", src->name, src->conn_host, src->conn_port);
    snprintf(h->ag.upstream_host, sizeof h->ag.upstream_host, "%s", src->conn_host);
    h->ag.upstream_port = src->conn_port;
    if (pgnode_clone(h->ag.node, src->conn_host, src->conn_port, pg_done, h) != 0)
        op_end(h, PGW_EIO, "clone");
}

static void act_replace_data(struct ha *h)
{
    struct agent *ag = &h->ag;
    const struct pg_status *ps = pgmon_status(ag->mon);
    if (ps->state == PG_RUN_RUNNING || ps->state == PG_RUN_HUNG) {
        op_begin(h, "stop foreign instance", "stopping");
        log_warn("ha", "the local PostgreSQL belongs to another cluster (system id %" PRIu64
                 ", cluster %s): stopping it to move it aside", ps->system_identifier, h->fsm->st.sysid);
        if (pgnode_stop(ag->node, PGCTL_STOP_FAST, pg_done, h) != 0)
            op_end(h, PGW_EIO, "stop foreign instance");
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
            set_state(h, "needs reinit");
            ha_kick(h);
            return;
        }
        ag->needs_reinit[0] = '\0';
        if (r->rewound)
            log_info("ha", "rewound with pg_rewind and restarted as a replica");
        if (r->recloned)
            log_info("ha", "re-cloned after a failed rewind (old data kept at %s)", r->moved_to);
    }
    op_finish(h, status);
}

static void act_rejoin(struct ha *h)
{
    struct agent *ag = &h->ag;
    uint64_t now = ha_now(h);
    if (ag->needs_reinit[0] != '\0' && now < ag->reinit_retry_ms)
        return;
    const struct fsm_member *up = upstream_member(h);
    if (up == NULL)
        return;
    if (now - ag->last_start_ms < START_BACKOFF_MS * (ag->start_failures > 4 ? 5 : ag->start_failures))
        return;
    ag->last_start_ms = now;
    op_begin(h, "rejoin", "starting");
    log_info("ha", "rejoining as a replica of %s (%s:%u)%s", up->name, up->conn_host, up->conn_port,
             ag->was_primary ? ", checking whether pg_rewind is needed" : "");
    snprintf(ag->upstream_host, sizeof ag->upstream_host, "%s", up->conn_host);
    ag->upstream_port = up->conn_port;
    if (pgnode_rejoin(ag->node, up->conn_host, up->conn_port, rejoin_done, h) != 0)
        op_end(h, PGW_EIO, "rejoin");
}

static void act_follow(struct ha *h)
{
    struct agent *ag = &h->ag;
    const struct fsm_member *up = upstream_member(h);
    if (up == NULL)
        return;
    set_state(h, "running");
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
            return;
        }
        /* Not streaming from the right upstream: if the primary moved to a
         * newer timeline we may have diverged; rejoin checks and rewinds. */
        if (ag->upstream_lost_since_ms == 0)
            ag->upstream_lost_since_ms = now;
        if (now - ag->upstream_lost_since_ms > 4 * (uint64_t)h->timing.loop_wait_ms + 2000 &&
            h->fsm->st.primary.state == FSM_PRIMARY_RUNNING &&
            h->fsm->st.primary.timeline > ps->timeline) {
            ag->upstream_lost_since_ms = 0;
            op_begin(h, "stop to rejoin", "stopping");
            log_warn("ha", "not streaming from %s and the primary is on timeline %u (we are on %u): "
                     "stopping to rejoin", up->name, h->fsm->st.primary.timeline, ps->timeline);
            if (pgnode_stop(ag->node, PGCTL_STOP_FAST, pg_done, h) != 0)
                op_end(h, PGW_EIO, "stop to rejoin");
        }
        return;
    }
    op_begin(h, "follow", NULL);
    log_info("ha", "following %s (%s:%u)", up->name, up->conn_host, up->conn_port);
    snprintf(ag->upstream_host, sizeof ag->upstream_host, "%s", up->conn_host);
    ag->upstream_port = up->conn_port;
    ag->upstream_lost_since_ms = 0;
    if (pgnode_follow(ag->node, up->conn_host, up->conn_port, pg_done, h) != 0)
        op_end(h, PGW_EIO, "follow");
}

/* Nothing assigned and PostgreSQL stopped: run it as a replica (of the last
 * known primary, if any) so that it reports its position and can be
 * promoted; never as a primary. Not before the cluster exists: the data
 * may be what the controller will ask us to adopt. */
static void act_start_standby(struct ha *h)
{
    struct agent *ag = &h->ag;
    if (!h->fresh || h->fsm->st.sysid[0] == '\0' || h->fsm->st.pause)
        return;
    uint64_t now = ha_now(h);
    if (now - ag->last_start_ms < START_BACKOFF_MS * (ag->start_failures > 4 ? 5 : ag->start_failures + 1))
        return;
    ag->last_start_ms = now;
    const struct fsm_member *up = upstream_member(h);
    if (up != NULL && strcmp(up->name, ha_name(h)) != 0) {
        act_rejoin(h);
        return;
    }
    struct pgconf_role role = {.standby = true};
    struct pgconf_write_result wr;
    if (pgnode_configure(ag->node, &role, &wr) != 0) {
        op_end(h, PGW_EIO, "write configuration");
        return;
    }
    op_begin(h, "start as replica", "starting");
    log_info("ha", "no primary assigned: starting PostgreSQL as a replica until one is");
    if (pgnode_start(ag->node, pg_done, h) != 0)
        op_end(h, PGW_EIO, "start as replica");
}

static void act_founding_primary(struct ha *h)
{
    if (h->ag.founded_epoch == h->fsm->st.primary.epoch)
        confirm_running(h);
    else
        act_adopt(h);
}


/* --- operator requests and configuration changes ------------------------------- */

static void request_done(ha_action_cb *cbp, void **ctxp, int status, const char *msg)
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
    request_done(&ag->restart_cb, &ag->restart_ctx, status, msg);
    op_finish(h, status);
}

static void act_restart(struct ha *h)
{
    struct agent *ag = &h->ag;
    ag->restart_pending = false;
    const struct pg_status *ps = pgmon_status(ag->mon);
    if (ag->restart.only_pending && !ps->pending_restart) {
        request_done(&ag->restart_cb, &ag->restart_ctx, PGW_EREFUSED,
                     "restart not needed: no setting is pending a restart");
        return;
    }
    uint32_t timeout = ag->restart.timeout_ms ? ag->restart.timeout_ms
                                              : h->cfg->postgresql.pg_ctl_timeout_ms;
    op_begin(h, "restart", "restarting");
    log_info("ha", "restarting PostgreSQL on request");
    if (pgctl_restart(pgnode_ctl(ag->node), PGCTL_STOP_FAST, NULL, timeout, restart_done, h) != 0) {
        request_done(&ag->restart_cb, &ag->restart_ctx, PGW_EIO, pgctl_error(pgnode_ctl(ag->node)));
        op_end(h, PGW_EIO, "restart");
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
        request_done(&ag->reinit_cb, &ag->reinit_ctx, status, pgnode_error(ag->node));
        op_finish(h, status);
        return;
    }
    char moved[4096], err[512];
    if (pgnode_move_aside(h->cfg->postgresql.data_dir, moved, sizeof moved, err, sizeof err) != 0) {
        request_done(&ag->reinit_cb, &ag->reinit_ctx, PGW_EIO, err);
        log_error("ha", "reinitialize: %s", err);
        op_finish(h, PGW_EIO);
        return;
    }
    log_info("ha", "reinitialize: old data directory kept at %s; cloning again", moved);
    ag->needs_reinit[0] = '\0';
    ag->last_error[0] = '\0';
    char msg[4200];
    snprintf(msg, sizeof msg, "reinitialize started (old data kept at %s)", moved);
    request_done(&ag->reinit_cb, &ag->reinit_ctx, PGW_OK, msg);
    op_finish(h, PGW_OK);
}

static void act_reinit(struct ha *h)
{
    struct agent *ag = &h->ag;
    ag->reinit_pending = false;
    op_begin(h, "reinitialize", "reinitializing");
    log_info("ha", "reinitialize requested: stopping PostgreSQL to clone it again");
    if (pgnode_stop(ag->node, PGCTL_STOP_FAST, reinit_stopped, h) != 0) {
        request_done(&ag->reinit_cb, &ag->reinit_ctx, PGW_EIO, pgnode_error(ag->node));
        op_end(h, PGW_EIO, "reinitialize");
    }
}

static void reload_done(struct pgctl *ctl, int status, void *vctx)
{
    struct ha *h = vctx;
    (void)ctl;
    if (h->closing)
        return;
    op_finish(h, status);
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
    op_begin(h, "reload", NULL);
    if (pgctl_reload(pgnode_ctl(ag->node), reload_done, h) != 0)
        op_end(h, PGW_EIO, "reload");
}

/* Requests handled before the table; true when one started work. */
static bool operator_step(struct ha *h, enum agent_local local)
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
        request_done(&ag->restart_cb, &ag->restart_ctx, PGW_EUNAVAIL, "PostgreSQL is not running");
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
    if (am_holder(h)) {
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

/* --- the table ----------------------------------------------------------------- */

typedef void (*agent_action)(struct ha *h);

struct agent_rule {
    enum agent_goal goal;
    enum agent_local local;
    agent_action action;
    const char *comment;
};

static const struct agent_rule rules[] = {
    {AG_BOOTSTRAP, AL_NO_DATA, act_bootstrap, "create the cluster: initdb, roles, start"},
    {AG_BOOTSTRAP, AL_STOPPED, act_adopt, "found the cluster on the existing stopped data"},
    {AG_BOOTSTRAP, AL_PRIMARY, act_founding_primary, "found the cluster on the running server, then confirm"},
    {AG_BOOTSTRAP, AL_REPLICA, act_refuse_bootstrap, "a standby cannot found the cluster"},
    {AG_BOOTSTRAP, AL_BAD_DATA, act_refuse_bootstrap, "the data dir is not a cluster"},
    {AG_PRIMARY, AL_REPLICA, act_promote, "assigned primary: promote"},
    {AG_PRIMARY, AL_STOPPED, act_start_primary, "assigned primary: start (in place) within primary_start_timeout"},
    {AG_PRIMARY, AL_PRIMARY, act_confirm_primary, "running as primary: confirm, keep slots"},
    {AG_PRIMARY, AL_HUNG, act_release_hung, "hung: stop it and hand the role over"},
    {AG_PRIMARY, AL_NO_DATA, act_release_nodata, "no data: hand the role over"},
    {AG_PRIMARY, AL_BAD_DATA, act_release_nodata, "unusable data: hand the role over"},
    {AG_HANDOVER, AL_PRIMARY, act_handover, "switchover: stop cleanly"},
    {AG_HANDOVER, AL_STOPPED, act_report_stopped, "switchover: report the final LSN"},
    {AG_HANDOVER, AL_HUNG, act_release_hung, "hung during switchover"},
    {AG_REPLICA, AL_NO_DATA, act_clone, "no data: clone from the primary"},
    {AG_REPLICA, AL_BAD_DATA, act_replace_data, "foreign data: move aside, then clone"},
    {AG_REPLICA, AL_STOPPED, act_rejoin, "stopped: rewind if needed, start as replica"},
    {AG_REPLICA, AL_PRIMARY, act_fence_stop, "an unassigned primary: stop it"},
    {AG_REPLICA, AL_REPLICA, act_follow, "replica: follow the current primary"},
    {AG_REPLICA, AL_HUNG, act_kill_hung, "hung replica: restart it"},
    {AG_WAIT, AL_STOPPED, act_start_standby, "no assignment: run as a replica"},
    {AG_WAIT, AL_HUNG, act_kill_hung, "hung: restart it"},
    {AG_WAIT, AL_REPLICA, act_none, "no primary yet: keep replaying"},
    {AG_WAIT, AL_PRIMARY, act_none, "unassigned primary: fenced by the lease check if needed"},
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
        set_state(h, "needs reinit");
        return;
    }
    switch (local) {
    case AL_PRIMARY:
    case AL_REPLICA: set_state(h, "running"); break;
    case AL_STOPPED: set_state(h, ag->last_error[0] ? "start failed" : "stopped"); break;
    case AL_STARTING: set_state(h, "starting"); break;
    case AL_HUNG: set_state(h, "hung"); break;
    case AL_NO_DATA: set_state(h, "uninitialized"); break;
    case AL_BAD_DATA: set_state(h, "unusable data directory"); break;
    case AL_UNKNOWN: set_state(h, "unknown"); break;
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
    lease_step(h);
    enum agent_local local = agent_local_state(h);
    if (local != AL_PRIMARY && local != AL_STARTING && local != AL_HUNG)
        ag->fencing = false;
    if (local == AL_PRIMARY || local == AL_REPLICA) {
        ag->primary_down_since_ms = 0;
        ag->start_failures = 0;
    }
    const char *why = NULL;
    if (must_fence(h, local, now, &why)) {
        fence_now(h, why);
        return;
    }
    update_state_text(h, local);
    if (ag->busy || h->shutting_down)
        goto table;
    if (operator_step(h, local))
        return;
table:
    if (ag->busy || h->fsm->st.pause)
        return;
    if (h->shutting_down) {
        enum agent_goal g = compute_goal(h);
        if (g != AG_HANDOVER && !(g == AG_PRIMARY && local == AL_PRIMARY))
            return; /* agent_shutdown_step decides */
    }
    enum agent_goal goal = compute_goal(h);
    const struct agent_rule *r = find_rule(goal, local);
    if (r == NULL)
        return;
    if (log_enabled(LOGL_DEBUG))
        log_debug("ha", "agent: goal %s, local %s -> %s", agent_goal_name(goal),
                  agent_local_name(local), r->comment);
    /* count start failures for backoff */
    if (local == AL_STOPPED && ag->last_error[0] != '\0' && now - ag->last_start_ms < 60000 &&
        (r->action == act_start_primary || r->action == act_rejoin || r->action == act_start_standby))
        ag->start_failures++;
    r->action(h);
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
    enum agent_goal goal = compute_goal(h);
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
            op_begin(h, "shutdown switchover", NULL);
            if (submit_cmd(h->sub, &c, h->timing.retry_timeout_ms * 2, handover_req_done, h) != 0)
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
        op_begin(h, "shutdown stop", "stopping");
        log_info("ha", "shutdown: stopping PostgreSQL (fast)");
        if (pgnode_stop(ag->node, local == AL_HUNG ? PGCTL_STOP_IMMEDIATE : PGCTL_STOP_FAST, pg_done, h) != 0)
            op_end(h, PGW_EIO, "shutdown stop");
        return;
    }
    if (am_holder(h) && ag->released_epoch != st->primary.epoch) {
        release(h, "pgwarden shutting down");
        if (ag->busy)
            return;
    }
    shutdown_finish(h);
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
    int rc = cfg_dcs_copy(&ag->node_dcs, &h->dcs);
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
    lease_file_restore(h);
    set_state(h, "unknown");
    return PGW_OK;
}

bool agent_idle(const struct ha *h)
{
    return !h->ag.busy;
}

void agent_close(struct ha *h)
{
    struct agent *ag = &h->ag;
    request_done(&ag->restart_cb, &ag->restart_ctx, PGW_ECANCELED, "shutting down");
    request_done(&ag->reinit_cb, &ag->reinit_ctx, PGW_ECANCELED, "shutting down");
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
