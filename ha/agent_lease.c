/* The lease loop of the agent and fencing (see ha/lease.h, ha/keeper.h).
 *
 * Happy path: every loop_wait while this node holds the primary role, send
 * a renewal (timed from before the send), and on its confirmation move the
 * fence deadline (lease file, keeper page).
 * Failure modes: a renewal refused as stale (the role is gone: the lease is
 * dropped at once, and fencing follows), one that times out (the deadline
 * stays; /primary answers 503 until one succeeds), PostgreSQL that may be
 * writing as a primary without a valid lease (every process of the instance
 * SIGKILLed now; the keeper does the same if this process cannot). The
 * keeper's deadline is cleared only once PostgreSQL cannot be writing. */
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
#include "ha/watchdog.h"
#include "pg/pgconf.h"

/* --- lease ------------------------------------------------------------------ */

/* The keeper kills PostgreSQL a little after the point where this process
 * fences it itself: it only acts when this process could not. */
#define KEEPER_GRACE_MS 100

void agent_keeper_sync(struct ha *h)
{
    if (h->ag.test_no_fencing)
        return;
    uint64_t d = lease_holder_fence_deadline(&h->ag.lease);
    ha_arm_fence_timer(h, d);
    if (h->keeper == NULL)
        return;
    if (d != 0) {
        keeper_set_deadline(h->keeper, d + KEEPER_GRACE_MS);
        return;
    }
    /* No lease: the keeper keeps the last one's deadline for as long as
     * PostgreSQL may still be writing, so that a pgwarden frozen right after
     * losing its lease is still fenced. */
    if (keeper_deadline(h->keeper) != 0 && !agent_pg_may_write(h))
        keeper_set_deadline(h->keeper, 0);
}

/* The keeper only acts when this process was stopped or too slow: say so
 * as loudly as our own fence, and let on_stop run for that stop too. */
void agent_keeper_fenced(struct ha *h)
{
    struct agent *ag = &h->ag;
    if (ag->fencing) {
        log_warn("ha", "the fence keeper killed PostgreSQL, which had not finished its immediate stop");
        return;
    }
    log_error("ha", "FENCING: the fence keeper killed PostgreSQL: the primary lease ran out and "
              "this process did not stop it in time (it was stopped or its event loop stalled)");
    h->stats.fences++;
    ag->fencing = true;
    agent_set_state(h, "stopping (fenced)");
}

/* The kernel's boot id: a lease file written in another boot means nothing
 * (the monotonic clock restarted). Read once. */
static const char *boot_id(void)
{
    static char boot[64];
    static bool read_once;
    if (!read_once) {
        read_once = true;
        FILE *f = fopen("/proc/sys/kernel/random/boot_id", "r");
        if (f != NULL) {
            if (fgets(boot, sizeof boot, f) == NULL)
                boot[0] = '\0';
            fclose(f);
        }
        boot[strcspn(boot, "\n")] = '\0';
    }
    return boot;
}

void agent_lease_file_save(struct ha *h)
{
    agent_keeper_sync(h);
    struct agent *ag = &h->ag;
    if (ag->lease_fd < 0)
        return;
    const struct lease_holder *l = &ag->lease;
    char line[192];
    int n = snprintf(line, sizeof line, "%s %" PRIu64 " %" PRIu64 " %" PRIu32 " %" PRIu32 "\n",
                     boot_id(), l->epoch, l->confirmed_send_ms, l->confirmed_ttl_ms,
                     l->confirmed_retry_ms);
    /* No fsync: the value only means something until the next reboot. */
    if (n > 0 && pwrite(ag->lease_fd, line, (size_t)n, 0) == n)
        (void)ftruncate(ag->lease_fd, n);
}

/* A restart of pgwarden on a healthy primary keeps PostgreSQL running when
 * the lease it confirmed before (same boot: monotonic clock still valid) is
 * not over yet. */
void agent_lease_file_restore(struct ha *h)
{
    struct agent *ag = &h->ag;
    char buf[192];
    ssize_t n = pread(ag->lease_fd, buf, sizeof buf - 1, 0);
    if (n <= 0)
        return;
    buf[n] = '\0';
    char boot[64] = "";
    uint64_t epoch = 0, sent = 0;
    uint32_t ttl = 0, retry = 0;
    int got = sscanf(buf, "%63s %" SCNu64 " %" SCNu64 " %" SCNu32 " %" SCNu32, boot, &epoch, &sent,
                     &ttl, &retry);
    if (got < 3 || epoch == 0 || strcmp(boot, boot_id()) != 0)
        return;
    if (got < 5 || ttl == 0 || retry >= ttl) {
        /* written by an older pgwarden: it counted on the configuration then */
        ttl = h->timing.ttl_ms;
        retry = h->timing.retry_timeout_ms;
    }
    lease_holder_restore(&ag->lease, epoch, sent, ttl, retry);
    uint64_t left = lease_holder_remaining(&ag->lease, ha_now(h));
    if (left > 0)
        log_info("ha", "restored the primary lease of epoch %" PRIu64 " (%" PRIu64 " ms left): "
                 "PostgreSQL may keep running while it is renewed", epoch, left);
    else
        lease_holder_reset(&ag->lease, 0);
    agent_keeper_sync(h);
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
        agent_lease_file_save(h);
        /* the next renewal at its own time, not at the next tick */
        if (ag->lease.confirmed)
            ha_arm_renew_timer(h, ag->lease.confirmed_send_ms + h->timing.loop_wait_ms + 1);
        return;
    }
    h->stats.lease_renew_failures++;
    if (status == PGW_ECONFLICT) {
        log_error("ha", "primary lease lost: %s", msg);
        lease_holder_reset(&ag->lease, 0);
        agent_lease_file_save(h);
    } else {
        lease_holder_failed(&ag->lease);
        log_warn("ha", "lease renewal failed (%s); %" PRIu64 " ms left before fencing", msg,
                 lease_holder_remaining(&ag->lease, ha_now(h)));
    }
    ha_kick(h);
}

void agent_lease_step(struct ha *h)
{
    struct agent *ag = &h->ag;
    if (h->fresh) {
        uint64_t want = agent_am_holder(h) ? h->fsm->st.primary.epoch : 0;
        if (want != ag->lease.epoch) {
            if (want != 0)
                log_info("ha", "holding the primary role, epoch %" PRIu64, want);
            else if (ag->lease.epoch != 0)
                log_info("ha", "no longer holding the primary role (epoch %" PRIu64 " ended)",
                         ag->lease.epoch);
            lease_holder_reset(&ag->lease, want);
            agent_lease_file_save(h);
        }
    }
    uint64_t now = ha_now(h);
    agent_watchdog_tick(h, now);
    if (ag->lease.epoch == 0 && h->keeper != NULL && keeper_deadline(h->keeper) != 0)
        agent_keeper_sync(h); /* cleared once PostgreSQL cannot be writing */
    if (ag->renew_inflight)
        return;
    if (!lease_holder_due(&ag->lease, &h->timing, now)) {
        /* a step before the renewal is due (a timer that fired a little
         * early among them): the timer again, for what is left */
        if (ag->lease.epoch != 0 && ag->lease.confirmed && !ag->lease.last_failed)
            ha_arm_renew_timer(h, ag->lease.confirmed_send_ms + h->timing.loop_wait_ms + 1);
        return;
    }
    const struct pg_status *ps = pgmon_status(ag->mon);
    struct fsm_cmd c;
    fsm_cmd_init(&c, FSM_OP_LEASE_RENEW, NULL);
    snprintf(c.member, sizeof c.member, "%s", ha_name(h));
    c.epoch = ag->lease.epoch;
    if (ps->query_ok && !ps->in_recovery) {
        c.u.lease.lsn = ps->wal_lsn;
        c.u.lease.timeline = ps->timeline;
    } else if (ps->query_ok && agent_standby_mode(h)) {
        /* a standby leader: its timeline can go back (rewound onto the
         * remote primary's history after demote-cluster); the record must
         * follow, its cascading replicas compare against it */
        c.u.lease.timeline = ps->timeline;
    }
    c.u.lease.ttl_ms = h->timing.ttl_ms;
    c.u.lease.held_ttl_ms = lease_holder_held_ttl(&ag->lease);
    lease_holder_sent(&ag->lease, now, &h->timing); /* the lease counts from before the send */
    if (submit_cmd(h->sub, &c, h->timing.retry_timeout_ms, renew_done, h) == 0)
        ag->renew_inflight = true;
    else
        lease_holder_failed(&ag->lease);
}

/* --- watchdog ---------------------------------------------------------------- */

/* Before this node starts or promotes a primary: arm the watchdog. false
 * when watchdog.mode is required and it cannot be armed (the role is then
 * given back). */
bool agent_watchdog_ready(struct ha *h)
{
    const struct cfg_watchdog *wc = &h->cfg->watchdog;
    if (wc->mode == CFG_WD_OFF)
        return true;
    char err[320];
    int t = watchdog_timeout_for(h->timing.ttl_ms, wc->safety_margin_s);
    if (watchdog_arm(&h->ag.wd, t, err, sizeof err) == 0)
        return true;
    if (wc->mode == CFG_WD_REQUIRED) {
        log_error("ha", "watchdog required but not available: %s", err);
        agent_release(h, "watchdog required but not available");
        return false;
    }
    if (!h->ag.wd_warned) {
        h->ag.wd_warned = true;
        log_warn("ha", "running without a watchdog (watchdog.mode automatic): %s", err);
    }
    return true;
}

/* Keep the watchdog fed only while the lease is valid: when the lease runs
 * out and PostgreSQL could not be stopped, the machine is reset. Once this
 * node no longer runs a primary the watchdog is disarmed. */
void agent_watchdog_tick(struct ha *h, uint64_t now)
{
    struct agent *ag = &h->ag;
    if (!watchdog_armed(&ag->wd))
        return;
    if (lease_holder_valid(&ag->lease, now)) {
        watchdog_keepalive(&ag->wd);
        return;
    }
    if (ag->lease.epoch == 0 && !agent_pg_may_write(h))
        watchdog_disarm(&ag->wd); /* stopped, or demoted to a replica */
}

/* --- fencing ----------------------------------------------------------------- */

void agent_observe_role(struct ha *h)
{
    struct agent *ag = &h->ag;
    const struct pg_status *ps = pgmon_status(ag->mon);
    if (ps->state == PG_RUN_RUNNING && ps->query_ok)
        ag->seen_primary = !ps->in_recovery;
    else if (ps->state == PG_RUN_DOWN && ag->seen_primary && pginst_count_serving(&ag->inst) == 0)
        ag->seen_primary = false;
}

/* A running PostgreSQL is known not to write only when the monitor's status
 * query says it is in recovery; while that query fails (a role that cannot
 * log in, a fast shutdown in progress, a start, a hung postmaster) it may
 * write unless it was started as a standby and has not been seen as a
 * primary since. Then: does any process of the instance still run? The
 * monitor's "running primary" can be one step old (a clean stop just
 * ended), and processes that outlived their postmaster count: each of them
 * can still commit its current statement. */
bool agent_pg_may_write(struct ha *h)
{
    struct agent *ag = &h->ag;
    const struct pg_status *ps = pgmon_status(ag->mon);
    bool answered = ps->state == PG_RUN_RUNNING && ps->query_ok;
    if (answered && ps->in_recovery)
        return false;
    if (!(answered || ag->seen_primary) && agent_standby_signal(h))
        return false;
    pid_t pm = ps->postmaster_pid;
    if (answered && pm > 0 && pg_pid_alive(pm))
        return true; /* the common case, without a scan of /proc */
    /* not postmaster.pid: `postgres --single` (our own crash recovery before
     * pg_rewind) writes one too, and serves no client */
    return pginst_count_serving(&ag->inst) > 0;
}

static void kill_instance(struct ha *h, const char *what)
{
    struct pginst_kill_result r;
    pginst_kill(&h->ag.inst, 50, &r);
    if (r.found > 0 && r.left == 0)
        log_warn("ha", "%s: SIGKILL to every process of PostgreSQL (%u found, all gone)", what,
                 r.found);
    else if (r.found > 0)
        log_warn("ha", "%s: SIGKILL to every process of PostgreSQL (%u found, %u not gone yet: "
                 "in uninterruptible sleep, they die when their I/O returns)", what, r.found, r.left);
}

/* SIGKILL to every process of the instance, the postmaster first: a stopped
 * or hung postmaster never acts on SIGQUIT, and a signal to its process
 * group reaches none of its children (pg/instance.h). */
void agent_kill_postgres(struct ha *h)
{
    kill_instance(h, "killing PostgreSQL");
}

void agent_fence_now(struct ha *h, const char *why)
{
    struct agent *ag = &h->ag;
    if (!ag->fencing) {
        log_error("ha", "FENCING: %s: killing PostgreSQL immediately", why);
        h->stats.fences++;
    }
    ag->fencing = true;
    agent_set_state(h, "stopping (fenced)");
    /* the keeper backs this up at once, whatever deadline it had */
    uint64_t now = ha_now(h);
    if (h->keeper != NULL && !ag->test_no_fencing) {
        uint64_t kd = keeper_deadline(h->keeper);
        if (kd == 0 || kd > now + KEEPER_GRACE_MS)
            keeper_set_deadline(h->keeper, now + KEEPER_GRACE_MS);
    }
    /* SIGKILL, not the SIGQUIT of an immediate shutdown: the outcome is the
     * same (crash recovery at the next start), but nothing depends on the
     * postmaster passing the signal on. */
    kill_instance(h, "fence");
}

bool agent_must_fence(struct ha *h, enum agent_local local, uint64_t now, const char **why)
{
    (void)local;
    struct agent *ag = &h->ag;
    if (ag->test_no_fencing)
        return false;
    if (lease_holder_valid(&ag->lease, now))
        return false;
    if (!agent_pg_may_write(h))
        return false;
    if (h->fresh) {
        /* A cluster not initialized yet has no other primary: the running
         * server is the one to adopt. */
        if (h->fsm->st.sysid[0] == '\0')
            return false;
        *why = ag->lease.epoch != 0 ? "the primary lease expired before it could be renewed"
                                    : "PostgreSQL may be running as primary but this node does not "
                                      "hold the primary role";
        return true;
    }
    /* Not caught up with the cluster yet: a restarted pgwarden must not keep
     * an unleased primary running longer than it takes to catch up when
     * the cluster is reachable. */
    if (now - h->started_ms < 2 * (uint64_t)h->timing.retry_timeout_ms)
        return false;
    *why = "PostgreSQL may be running as primary and this node could not confirm its lease";
    return true;
}
