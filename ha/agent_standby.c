/* Standby cluster (dcs standby_cluster): the whole cluster replicates from a
 * remote primary. The member holding the primary lease is the standby
 * leader: it follows the remote host:port (and/or restore_command) with the
 * remote slot; the other members cascade from it as they would from a
 * primary. Nothing else changes: the controller still assigns the role
 * (a lost standby leader is replaced like a lost primary), the lease still
 * decides who holds it.
 *
 * Transitions, all driven by PATCH /config (ctl promote-cluster /
 * demote-cluster):
 *  - standby_cluster set, holder running as a replica: re-point it at the
 *    remote primary, confirm it as running (founding: cluster_init with its
 *    system identifier);
 *  - holder stopped: rejoin the remote (pg_rewind when its timeline forked)
 *    and start as a standby;
 *  - holder running as a primary (demote-cluster): stop it cleanly, then as
 *    above;
 *  - founder without data: clone from the remote primary (or run the
 *    no_leader replica methods when only restore_command is given);
 *  - standby_cluster removed (promote-cluster): the ordinary table promotes
 *    the standby leader.
 * Failure modes: the remote is unreachable (the standby leader keeps
 * replaying what it has and retries; a clone retries with the clone
 * backoff), a rejoin that needs a reinit (reported like any rejoin). */
#include "ha/agent_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "common/log.h"
#include "pg/pgconf.h"

bool agent_standby_mode(const struct ha *h)
{
    return cfg_standby_enabled(&h->dcs);
}

static const char *remote_host(const struct ha *h)
{
    const char *host = h->dcs.standby.host;
    return host != NULL && host[0] != '\0' ? host : NULL;
}

static uint16_t remote_port(const struct ha *h)
{
    return (uint16_t)(h->dcs.standby.port ? h->dcs.standby.port : 5432);
}

static void rejoin_remote_done(struct pgnode *n, int status, const struct pgnode_rejoin_result *r,
                               void *ctx)
{
    struct ha *h = ctx;
    (void)n;
    if (h->closing)
        return;
    if (status == 0 && r != NULL && r->needs_reinit) {
        snprintf(h->ag.needs_reinit, sizeof h->ag.needs_reinit, "%s", r->reason);
        log_error("ha", "standby leader: cannot replicate from the remote primary: %s", r->reason);
    } else if (status == 0 && r != NULL && r->rewound) {
        log_info("ha", "standby leader: rewound to the remote primary's timeline");
    }
    agent_op_finish(h, status);
}

/* Holder, running in recovery: follow the remote, then confirm. */
static void follow_remote(struct ha *h)
{
    struct agent *ag = &h->ag;
    if (!lease_holder_valid(&ag->lease, ha_now(h)))
        return;
    const char *host = remote_host(h);
    uint16_t port = host != NULL ? remote_port(h) : 0;
    bool same = ag->standby_following && ag->standby_cfg_gen == ag->config_gen &&
                strcmp(ag->upstream_host, host != NULL ? host : "") == 0 &&
                ag->upstream_port == port;
    if (!same) {
        agent_op_begin(h, "follow the remote primary", NULL);
        if (host != NULL)
            log_info("ha", "standby leader (epoch %" PRIu64 "): replicating from the remote "
                     "primary %s:%u%s%s", h->fsm->st.primary.epoch, host, port,
                     h->dcs.standby.primary_slot_name ? " with slot " : "",
                     h->dcs.standby.primary_slot_name ? h->dcs.standby.primary_slot_name : "");
        else
            log_info("ha", "standby leader (epoch %" PRIu64 "): replaying WAL from "
                     "restore_command", h->fsm->st.primary.epoch);
        snprintf(ag->upstream_host, sizeof ag->upstream_host, "%s", host != NULL ? host : "");
        ag->upstream_port = port;
        ag->standby_following = true;
        ag->standby_cfg_gen = ag->config_gen;
        if (pgnode_follow(ag->node, host != NULL ? host : "", port, agent_pg_done, h) != 0)
            agent_op_end(h, PGW_EIO, "follow the remote primary");
        return;
    }
    agent_set_state(h, "running");
    if (agent_slots_step(h, true)) /* slots of the members cascading from us */
        return;
    agent_confirm_running(h);
}

/* Holder, PostgreSQL stopped (or never started here). */
static void start_remote(struct ha *h)
{
    struct agent *ag = &h->ag;
    uint64_t now = ha_now(h);
    if (!lease_holder_valid(&ag->lease, now))
        return;
    if (now - ag->last_start_ms < START_BACKOFF_MS * (ag->start_failures > 4 ? 5 : ag->start_failures))
        return;
    ag->last_start_ms = now;
    ag->standby_following = false;
    const char *host = remote_host(h);
    if (host != NULL) {
        agent_op_begin(h, "rejoin the remote primary", "starting");
        log_info("ha", "standby leader: starting as a standby of the remote primary %s:%u%s", host,
                 remote_port(h), ag->was_primary ? ", checking whether pg_rewind is needed" : "");
        snprintf(ag->upstream_host, sizeof ag->upstream_host, "%s", host);
        ag->upstream_port = remote_port(h);
        if (agent_hook_pg_rejoin(h, host, remote_port(h), rejoin_remote_done) != 0)
            agent_op_end(h, PGW_EIO, "rejoin the remote primary");
        return;
    }
    struct pgconf_role role = {.standby = true};
    struct pgconf_write_result wr;
    if (pgnode_configure(ag->node, &role, &wr) != 0) {
        agent_op_end(h, PGW_EIO, "write configuration");
        return;
    }
    agent_op_begin(h, "start as standby leader", "starting");
    log_info("ha", "standby leader: starting to replay WAL from restore_command");
    if (agent_hook_pg_start(h, agent_pg_done) != 0)
        agent_op_end(h, PGW_EIO, "start as standby leader");
}

/* Holder running as a primary while the cluster is a standby cluster:
 * demote-cluster. */
static void demote_to_standby_leader(struct ha *h)
{
    struct agent *ag = &h->ag;
    if (!agent_hook_before_stop(h, "demote-cluster"))
        return;
    agent_op_begin(h, "demote to standby leader", "demoting");
    log_warn("ha", "standby_cluster is set: stopping the primary to run it as the standby leader "
             "of %s:%u", remote_host(h) ? remote_host(h) : "(restore_command)", remote_port(h));
    ag->standby_following = false;
    if (agent_hook_pg_stop(h, PGCTL_STOP_FAST, agent_pg_done) != 0)
        agent_op_end(h, PGW_EIO, "demote to standby leader");
}

static void clone_remote_done(struct pgnode *n, int status, void *ctx)
{
    struct ha *h = ctx;
    if (h->closing)
        return;
    if (status != 0)
        log_error("ha", "standby cluster: creating the standby leader's data failed: %s",
                  pgnode_error(n));
    agent_op_finish(h, status);
}

/* Founder of a standby cluster without data. */
static void clone_remote(struct ha *h)
{
    struct agent *ag = &h->ag;
    uint64_t now = ha_now(h);
    if (!lease_holder_valid(&ag->lease, now))
        return;
    if (now - ag->last_start_ms < START_BACKOFF_MS * (ag->start_failures > 4 ? 5 : ag->start_failures))
        return;
    ag->last_start_ms = now;
    ag->standby_following = false;
    const char *host = remote_host(h);
    agent_op_begin(h, "clone the remote primary", "creating replica");
    if (host != NULL) {
        log_info("ha", "founding a standby cluster: cloning the remote primary %s:%u", host,
                 remote_port(h));
        snprintf(ag->upstream_host, sizeof ag->upstream_host, "%s", host);
        ag->upstream_port = remote_port(h);
        if (agent_hook_pg_clone(h, host, remote_port(h), clone_remote_done) != 0)
            agent_op_end(h, PGW_EIO, "clone the remote primary");
        return;
    }
    if (!pgnode_has_no_leader_method(ag->node)) {
        agent_op_end(h, PGW_EINVAL, "clone the remote primary");
        snprintf(ag->last_error, sizeof ag->last_error,
                 "standby_cluster has no host: a standby leader without data needs a "
                 "create_replica_methods entry with no_leader (a restore from the archive)");
        log_error("ha", "%s", ag->last_error);
        return;
    }
    log_info("ha", "founding a standby cluster: restoring with the no_leader replica methods");
    if (pgnode_clone_no_source(ag->node, clone_remote_done, h) != 0)
        agent_op_end(h, PGW_EIO, "clone the remote primary");
}

bool agent_standby_step(struct ha *h, enum agent_goal goal, enum agent_local local)
{
    bool holder = goal == AG_PRIMARY || goal == AG_BOOTSTRAP;
    pgnode_set_standby_leader(h->ag.node, holder && agent_standby_mode(h));
    if (!holder || !agent_standby_mode(h)) {
        h->ag.standby_following = false;
        return false;
    }
    switch (local) {
    case AL_REPLICA: follow_remote(h); return true;
    case AL_STOPPED: start_remote(h); return true;
    case AL_PRIMARY:
        if (goal == AG_BOOTSTRAP)
            return false; /* the table refuses: a primary cannot found a standby cluster */
        demote_to_standby_leader(h);
        return true;
    case AL_NO_DATA:
        if (goal != AG_BOOTSTRAP)
            return false; /* hand the role over, as without a standby cluster */
        clone_remote(h);
        return true;
    default: return false;
    }
}
