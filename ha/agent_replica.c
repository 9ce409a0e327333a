/* Creating this node's data when it has none, and what a failed bootstrap
 * leaves behind.
 *
 * Clone: from the primary (or a running clonefrom replica) through
 * postgresql.create_replica_methods (pg/pgnode_methods.c); a failed clone
 * is retried after a backoff growing with the failures (CLONE_BACKOFF_MS
 * per failure, at most CLONE_BACKOFF_MAX_MS), so a failing backup tool is
 * not hammered.
 * Restore without a primary: a node with no data in an initialized cluster
 * that has had no running primary for NO_PRIMARY_WAIT_TTLS * ttl (a failover
 * in progress is not "no primary") may run the no_leader methods (Patroni:
 * replica_method_can_work_without_replication_connection); only when one is
 * configured. "No running primary" is Patroni's "no leader key": no primary
 * assigned, or its lease expired as this node judges it (the record still
 * says running when nobody could be promoted in its place). The restored node starts as a standby without an upstream
 * (replaying restore_command from postgresql.recovery_conf, if any) and is
 * then a candidate like any replica.
 * Bootstrap failure: Patroni removes the initialize key, moves the data dir
 * to <dir>.failed and exits. pgwarden moves the data dir aside (never
 * deletes), releases the role, and remembers the failure until pgwarden is
 * restarted: this node reports the state "bootstrap failed", the controller
 * does not choose it to found the cluster again, and another member may try.
 * So a broken bootstrap never loops. */
#include "ha/agent_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"

#define CLONE_BACKOFF_MS 5000u
#define CLONE_BACKOFF_MAX_MS 60000u
#define NO_PRIMARY_WAIT_TTLS 3u

static void clone_done(struct pgnode *n, int status, void *ctx)
{
    struct ha *h = ctx;
    (void)n;
    if (h->closing)
        return;
    struct agent *ag = &h->ag;
    if (status == 0) {
        ag->clone_failures = 0;
        ag->clone_next_ms = 0;
    } else {
        if (ag->clone_failures < 100)
            ag->clone_failures++;
        uint64_t wait = (uint64_t)CLONE_BACKOFF_MS * ag->clone_failures;
        if (wait > CLONE_BACKOFF_MAX_MS)
            wait = CLONE_BACKOFF_MAX_MS;
        ag->clone_next_ms = ha_now(h) + wait;
        log_warn("ha", "creating the replica failed (%u time(s)); next try in %" PRIu64 " s",
                 ag->clone_failures, wait / 1000);
    }
    agent_op_finish(h, status);
}

static void restore_done(struct pgnode *n, int status, void *ctx)
{
    struct ha *h = ctx;
    if (!h->closing)
        agent_hook_started(h, status, false); /* on_start, as after any clone */
    clone_done(n, status, ctx);
}

static bool clone_allowed(struct ha *h)
{
    return h->ag.clone_next_ms == 0 || ha_now(h) >= h->ag.clone_next_ms;
}

void agent_clone_from(struct ha *h, const struct fsm_member *src)
{
    if (!clone_allowed(h))
        return;
    agent_op_begin(h, "clone", "creating replica");
    log_info("ha", "no data: creating a replica from %s (%s:%u)", src->name, src->conn_host,
             src->conn_port);
    snprintf(h->ag.upstream_host, sizeof h->ag.upstream_host, "%s", src->conn_host);
    h->ag.upstream_port = src->conn_port;
    /* through the hooks: on_start once it runs */
    if (agent_hook_pg_clone(h, src->conn_host, src->conn_port, clone_done) != 0)
        agent_op_end(h, PGW_EIO, "clone");
}

bool agent_primary_up(const struct ha *h)
{
    const struct fsm_state *st = &h->fsm->st;
    if (st->primary.state != FSM_PRIMARY_RUNNING && st->primary.state != FSM_PRIMARY_PROMOTING)
        return false;
    return ha_now(h) < lease_judged_expiry(h->fsm->local_lease_ms, h->fsm->st.primary.lease_ttl_ms, &h->timing);
}

void agent_act_restore(struct ha *h)
{
    struct agent *ag = &h->ag;
    const struct fsm_state *st = &h->fsm->st;
    uint64_t now = ha_now(h);
    bool primary_up = agent_primary_up(h);
    if (primary_up || st->sysid[0] == '\0') {
        ag->no_primary_since_ms = 0;
        return; /* a clone from it, or a bootstrap, is coming */
    }
    if (ag->no_primary_since_ms == 0)
        ag->no_primary_since_ms = now;
    if (!h->fresh || st->pause || !pgnode_has_no_leader_method(ag->node) || !clone_allowed(h))
        return;
    if (now - ag->no_primary_since_ms < NO_PRIMARY_WAIT_TTLS * (uint64_t)h->timing.ttl_ms)
        return;
    agent_op_begin(h, "clone", "creating replica");
    log_warn("ha", "no data and no running primary for %" PRIu64 " s: creating a replica with the "
             "no_leader replica methods", (now - ag->no_primary_since_ms) / 1000);
    agent_forget_upstream(ag);
    if (pgnode_clone_no_source(ag->node, restore_done, h) != 0)
        agent_op_end(h, PGW_EIO, "clone");
}

void agent_bootstrap_failed(struct ha *h, const char *why)
{
    struct agent *ag = &h->ag;
    snprintf(ag->bootstrap_failed, sizeof ag->bootstrap_failed, "%s", why && *why ? why : "failed");
    log_error("ha", "bootstrap failed: %s; this node will not try to create the cluster again "
              "until pgwarden restarts", ag->bootstrap_failed);
    const char *dd = h->cfg->postgresql.data_dir;
    enum pgnode_datadir kind;
    char err[512], moved[4200];
    if (pg_postmaster_running(dd, NULL)) {
        log_error("ha", "bootstrap failed and PostgreSQL still runs in %s: leaving it there", dd);
        return;
    }
    if (pgnode_inspect_datadir(dd, &kind, err, sizeof err) != 0 ||
        kind == PGNODE_DATADIR_ABSENT || kind == PGNODE_DATADIR_EMPTY)
        return;
    if (pgnode_move_aside(dd, moved, sizeof moved, err, sizeof err) != 0)
        log_error("ha", "after the failed bootstrap: %s", err);
    else
        log_warn("ha", "the data directory of the failed bootstrap is kept at %s", moved);
}

bool agent_bootstrap_refused(struct ha *h)
{
    if (h->ag.bootstrap_failed[0] == '\0')
        return false;
    char why[HA_ERR_MAX + 32];
    snprintf(why, sizeof why, "bootstrap failed here: %s", h->ag.bootstrap_failed);
    agent_release(h, why);
    return true;
}
