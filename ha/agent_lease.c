/* The lease loop of the agent and fencing (see ha/lease.h, ha/keeper.h).
 *
 * Happy path: every loop_wait while this node holds the primary role, send
 * a renewal (timed from before the send), and on its confirmation move the
 * fence deadline (lease file, keeper page).
 * Failure modes: a renewal refused as stale (the role is gone: the lease is
 * dropped at once, and fencing follows), one that times out (the deadline
 * stays; /primary answers 503 until one succeeds), PostgreSQL running as
 * primary without a valid lease (SIGQUIT to the postmaster now; the keeper
 * kills the process group if this process cannot). */
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
    uint64_t d = lease_holder_fence_deadline(&h->ag.lease, &h->timing);
    ha_arm_fence_timer(h, d);
    if (h->keeper != NULL)
        keeper_set_deadline(h->keeper, d != 0 ? d + KEEPER_GRACE_MS : 0);
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

void agent_lease_file_save(struct ha *h)
{
    agent_keeper_sync(h);
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
void agent_lease_file_restore(struct ha *h)
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
                 lease_holder_remaining(&ag->lease, &h->timing, ha_now(h)));
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
    } else if (ps->query_ok && agent_standby_mode(h)) {
        /* a standby leader: its timeline can go back (rewound onto the
         * remote primary's history after demote-cluster); the record must
         * follow, its cascading replicas compare against it */
        c.u.lease.timeline = ps->timeline;
    }
    lease_holder_sent(&ag->lease, now); /* the lease counts from before the send */
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
    if (lease_holder_valid(&ag->lease, &h->timing, now)) {
        watchdog_keepalive(&ag->wd);
        return;
    }
    const struct pg_status *ps = pgmon_status(ag->mon);
    bool primary_running = ps->state == PG_RUN_RUNNING && ps->query_ok && !ps->in_recovery;
    if (ag->lease.epoch == 0 && !primary_running && !pg_postmaster_running(h->cfg->postgresql.data_dir, NULL))
        watchdog_disarm(&ag->wd);
    else if (ag->lease.epoch == 0 && ps->in_recovery && ps->query_ok)
        watchdog_disarm(&ag->wd); /* demoted to a replica */
}

/* --- fencing ----------------------------------------------------------------- */

/* SIGKILL to PostgreSQL's whole process group: a stopped or hung postmaster
 * never acts on SIGQUIT, and its backends would go on committing. The
 * postmaster runs in its own session (pg_ctl is started detached), so the
 * group is exactly PostgreSQL's processes. */
void agent_kill_postgres(struct ha *h)
{
    pid_t pid = pgmon_status(h->ag.mon)->postmaster_pid;
    if (pid <= 0)
        (void)pg_postmaster_running(h->cfg->postgresql.data_dir, &pid);
    if (pid <= 0)
        return;
    pid_t grp = getpgid(pid);
    if (grp > 1 && grp != getpgid(0))
        (void)kill(-grp, SIGKILL);
    (void)kill(pid, SIGKILL);
}

void agent_fence_now(struct ha *h, const char *why)
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
    agent_set_state(h, "stopping (fenced)");
    /* SIGQUIT is what pg_ctl stop -m immediate sends; doing it here costs no
     * fork and cannot wait behind another action. */
    if (pid > 0 && kill(pid, SIGQUIT) != 0 && errno != ESRCH)
        log_error("ha", "cannot signal postmaster %d: %s", (int)pid, strerror(errno));
}

bool agent_must_fence(struct ha *h, enum agent_local local, uint64_t now, const char **why)
{
    if (local != AL_PRIMARY || h->ag.test_no_fencing)
        return false;
    struct agent *ag = &h->ag;
    if (lease_holder_valid(&ag->lease, &h->timing, now))
        return false;
    /* The monitor's "running primary" can be one step old: right after a
     * clean stop (switchover) the postmaster is already gone, and a fence
     * then would only count and report a stop that never happened. */
    pid_t pm = pgmon_status(ag->mon)->postmaster_pid;
    if (!(pm > 0 && pg_pid_alive(pm)) && !pg_postmaster_running(h->cfg->postgresql.data_dir, NULL))
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

