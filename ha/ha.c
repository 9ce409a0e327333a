/* HA lifecycle: the tick, the effective dynamic configuration, member
 * registration and reports, the read barrier that makes this node's view
 * fresh after a start, views for the REST API, graceful shutdown.
 *
 * Happy path per tick (loop_wait, and at once on any FSM or Raft change):
 * refresh the dynamic config -> register if needed -> read barrier until
 * fresh -> agent step (local PostgreSQL) -> controller step (when leader)
 * -> report this member's state.
 * Failure modes: submissions time out or are refused (logged, retried next
 * tick; a lost lease is handled by the agent), the controller's fetches
 * fail (that member is reported unreachable). */
#include "ha/ha_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "ha/backup.h"
#include "ha/keeper.h"

uint64_t ha_now(const struct ha *h)
{
    return clock_now(h->clock);
}

const char *ha_name(const struct ha *h)
{
    return h->cfg->name;
}

bool ha_paused(const struct ha *h)
{
    return h->fsm->st.pause;
}

const struct cfg_dcs *ha_dcs(const struct ha *h)
{
    return &h->dcs;
}

/* Adopt the cluster's dynamic configuration when it changed. */
static void refresh_dcs(struct ha *h)
{
    const struct fsm_state *st = &h->fsm->st;
    uint64_t want = st->config != NULL ? st->config_version : UINT64_MAX;
    if (want == h->dcs_version)
        return;
    struct cfg_dcs d;
    if (st->config != NULL) {
        struct cfg_error err;
        if (cfg_dcs_from_json(st->config, &d, &err) != 0) {
            log_error("ha", "cluster configuration version %" PRIu64 " is invalid, keeping the "
                      "previous one: %s", want, err.msg);
            h->dcs_version = want;
            return;
        }
    } else if (cfg_dcs_copy(&d, &h->cfg->bootstrap.dcs) != 0) {
        return;
    }
    bool had = h->dcs_version != 0;
    if (had)
        cfg_dcs_free(&h->dcs);
    h->dcs = d;
    h->dcs_version = want;
    h->timing.ttl_ms = d.ttl_ms;
    h->timing.loop_wait_ms = d.loop_wait_ms;
    h->timing.retry_timeout_ms = d.retry_timeout_ms;
    if (h->cluster != NULL) {
        unsigned et, hb;
        cluster_timing_from_ttl(d.ttl_ms, &et, &hb);
        cluster_set_election_timeout(h->cluster, et);
    }
    if (had)
        log_info("ha", "dynamic configuration now version %" PRIu64 " (ttl %gs, loop_wait %gs, "
                 "retry_timeout %gs)", want == UINT64_MAX ? 0 : want, d.ttl_ms / 1000.0,
                 d.loop_wait_ms / 1000.0, d.retry_timeout_ms / 1000.0);
    uv_timer_set_repeat(&h->tick, d.loop_wait_ms);
    h->ag.config_gen++; /* the agent hands it to pgnode between actions */
}

/* --- registration and reports -------------------------------------------- */

static json_t *tags_json(const struct cfg *c)
{
    json_t *t = json_object();
    for (size_t i = 0; i < c->tags.custom.n; i++)
        json_object_set_new(t, c->tags.custom.items[i].key, json_string(c->tags.custom.items[i].value));
    json_object_set_new(t, "nofailover", json_boolean(c->tags.nofailover));
    json_object_set_new(t, "failover_priority", json_integer(c->tags.failover_priority));
    json_object_set_new(t, "noloadbalance", json_boolean(c->tags.noloadbalance));
    json_object_set_new(t, "clonefrom", json_boolean(c->tags.clonefrom));
    json_object_set_new(t, "nosync", json_boolean(c->tags.nosync));
    json_object_set_new(t, "sync_priority", json_integer(c->tags.sync_priority));
    if (c->tags.replicatefrom != NULL)
        json_object_set_new(t, "replicatefrom", json_string(c->tags.replicatefrom));
    return t;
}

static void build_register(struct ha *h, struct fsm_cmd *c)
{
    const struct cfg *cfg = h->cfg;
    fsm_cmd_init(c, FSM_OP_MEMBER_REGISTER, NULL);
    snprintf(c->member, sizeof c->member, "%s", cfg->name);
    c->u.reg.raft_id = cluster_self_id(h->cluster);
    snprintf(c->u.reg.raft_addr, sizeof c->u.reg.raft_addr, "%s", cfg->raft.self_addr);
    const struct cfg_hostport *api = &cfg->restapi.connect_address;
    bool v6 = strchr(api->host, ':') != NULL;
    snprintf(c->u.reg.api_url, sizeof c->u.reg.api_url, "%s://%s%s%s:%u",
             cfg->restapi.certfile != NULL ? "https" : "http", v6 ? "[" : "", api->host,
             v6 ? "]" : "", api->port);
    c->u.reg.witness = h->witness;
    c->u.reg.level = FSM_LEVEL;
    if (!h->witness) {
        snprintf(c->u.reg.conn_host, sizeof c->u.reg.conn_host, "%s",
                 cfg->postgresql.connect_address.host);
        c->u.reg.conn_port = cfg->postgresql.connect_address.port;
    }
    c->u.reg.tags = tags_json(cfg);
}

static void register_done(void *ctx, int status, const struct fsm_result *res, const char *msg)
{
    struct ha *h = ctx;
    (void)res;
    h->register_inflight = false;
    if (status == 0) {
        h->registered = true;
        log_info("ha", "registered as member %s", ha_name(h));
        ha_kick(h);
    } else if (!h->closing) {
        log_warn("ha", "member registration failed: %s", msg);
    }
}

static void maybe_register(struct ha *h)
{
    if (h->register_inflight || cluster_self_id(h->cluster) == 0)
        return;
    struct fsm_cmd c;
    build_register(h, &c);
    char *sig = json_dumps(c.u.reg.tags, JSON_COMPACT | JSON_SORT_KEYS);
    char buf[sizeof h->register_sig];
    snprintf(buf, sizeof buf, "%" PRIu64 "|%s|%s|%s:%u|%s", c.u.reg.raft_id, c.u.reg.raft_addr,
             c.u.reg.api_url, c.u.reg.conn_host, c.u.reg.conn_port, sig != NULL ? sig : "");
    free(sig);
    /* Re-register when the identity changed or the FSM lost us (restored
     * from an older snapshot, or removed). */
    const struct fsm_member *m = fsm_member_find(&h->fsm->st, ha_name(h));
    bool in_fsm = h->fresh ? m != NULL && m->raft_id == c.u.reg.raft_id : true;
    if (h->registered && strcmp(buf, h->register_sig) == 0 && in_fsm) {
        fsm_cmd_free(&c);
        return;
    }
    snprintf(h->register_sig, sizeof h->register_sig, "%s", buf);
    h->registered = false;
    if (submit_cmd(h->sub, &c, h->timing.retry_timeout_ms * 2, register_done, h) == 0)
        h->register_inflight = true;
    fsm_cmd_free(&c);
}

static void report_done(void *ctx, int status, const struct fsm_result *res, const char *msg)
{
    struct ha *h = ctx;
    (void)res;
    h->report_inflight = false;
    if (status == PGW_ENOTFOUND)
        h->registered = false; /* the FSM forgot us: register again */
    else if (status != 0 && !h->closing)
        log_debug("ha", "member report failed: %s", msg);
}

static void maybe_report(struct ha *h)
{
    if (!h->registered || h->report_inflight)
        return;
    uint64_t now = ha_now(h);
    if (now - h->last_report_ms < h->timing.loop_wait_ms)
        return;
    struct fsm_cmd c;
    fsm_cmd_init(&c, FSM_OP_MEMBER_REPORT, NULL);
    snprintf(c.member, sizeof c.member, "%s", ha_name(h));
    if (h->witness) {
        snprintf(c.u.report.role, sizeof c.u.report.role, "witness");
        snprintf(c.u.report.state, sizeof c.u.report.state, "running");
    } else {
        agent_fill_report(h, &c.u.report);
    }
    if (submit_cmd(h->sub, &c, h->timing.retry_timeout_ms, report_done, h) == 0) {
        h->report_inflight = true;
        h->last_report_ms = now;
    }
}

static void barrier_done(void *ctx, int status, const struct fsm_result *res, const char *msg)
{
    struct ha *h = ctx;
    (void)res;
    h->barrier_inflight = false;
    if (status == 0) {
        if (!h->fresh)
            log_info("ha", "caught up with the cluster: acting on the replicated state from now on");
        h->fresh = true;
        ha_kick(h);
    } else if (!h->closing) {
        log_debug("ha", "read barrier: %s", msg);
    }
}

/* --- the tick ---------------------------------------------------------------- */

static void backup_tick(struct ha *h)
{
    struct ha_view v;
    ha_get_view(h, &v);
    struct backup_input in = {
        .primary = v.lease_serving && v.pg.running && !v.pg.in_recovery && !h->shutting_down,
        .epoch = v.epoch,
        .timeline = v.pg.timeline,
        .now_ms = ha_now(h),
        .wall_ms = clock_wall_ms(),
    };
    backup_step(h->bk, &in);
}

static void step(struct ha *h)
{
    if (h->closing)
        return;
    h->last_tick_ms = ha_now(h);
    if (h->keeper != NULL && !h->keeper_dead && !keeper_alive(h->keeper)) {
        h->keeper_dead = true;
        log_error("ha", "the fence keeper (pid %d) is gone: a stopped or killed pgwarden could no "
                  "longer fence this node's PostgreSQL; restart pgwarden", (int)keeper_pid(h->keeper));
    }
    uint64_t kf = keeper_fences(h->keeper);
    if (kf != h->keeper_fences_seen) {
        h->keeper_fences_seen = kf;
        if (!h->witness)
            agent_keeper_fenced(h);
    }
    refresh_dcs(h);
    if (cluster_role(h->cluster) == CLUSTER_STARTING || cluster_role(h->cluster) == CLUSTER_STOPPED)
        return;
    maybe_register(h);
    if (!h->fresh && !h->barrier_inflight &&
        submit_read_barrier(h->sub, h->timing.retry_timeout_ms * 2, barrier_done, h) == 0)
        h->barrier_inflight = true;
    if (!h->witness)
        agent_step(h);
    if (h->bk != NULL && !h->closing)
        backup_tick(h);
    if (h->shutting_down)
        agent_shutdown_step(h);
    if (h->closing)
        return; /* the shutdown finished inside that step and ha_close ran */
    /* A leader that is shutting down still decides: it may be the one that
     * must carry out its own handover. */
    controller_step(h);
    maybe_report(h);
}

/* libuv re-arms a repeating timer loop_wait after it ran, so each
 * interval beyond loop_wait is that tick's own delay. */
static void count_tick_delay(struct ha *h)
{
    static const uint64_t bounds[] = HA_TICK_DELAY_BOUNDS_MS;
    uint64_t now = clock_now(&clock_monotonic);
    uint64_t prev = h->last_periodic_tick_ms;
    h->last_periodic_tick_ms = now;
    if (prev == 0)
        return;
    uint64_t gap = now - prev;
    uint64_t late = gap > h->timing.loop_wait_ms ? gap - h->timing.loop_wait_ms : 0;
    size_t i = 0;
    while (i < sizeof bounds / sizeof bounds[0] && late > bounds[i])
        i++;
    h->stats.tick_delay_bucket[i]++;
    h->stats.ticks++;
    h->stats.tick_delay_sum_ms += (double)late;
}

static void tick_cb(uv_timer_t *t)
{
    count_tick_delay(t->data);
    step(t->data);
}

/* ha_kick() and the fence deadline timer: a step now, outside the schedule */
static void step_cb(uv_timer_t *t)
{
    step(t->data);
}

void ha_arm_fence_timer(struct ha *h, uint64_t deadline_ms)
{
    if (h->closing)
        return;
    if (deadline_ms == 0) {
        uv_timer_stop(&h->fence_timer);
        return;
    }
    uint64_t now = ha_now(h);
    /* +1: lease_holder_valid() is still true at the deadline's own ms */
    uv_timer_start(&h->fence_timer, step_cb, deadline_ms > now ? deadline_ms - now + 1 : 0, 0);
}

void ha_arm_renew_timer(struct ha *h, uint64_t due_ms)
{
    if (h->closing)
        return;
    if (due_ms == 0) {
        uv_timer_stop(&h->renew_timer);
        return;
    }
    uint64_t now = ha_now(h);
    uv_timer_start(&h->renew_timer, step_cb, due_ms > now ? due_ms - now : 0, 0);
}

void ha_kick(struct ha *h)
{
    if (h->closing)
        return;
    /* Coalesce bursts of events into one step on the next iteration. */
    if (!uv_is_active((uv_handle_t *)&h->kick))
        uv_timer_start(&h->kick, step_cb, 0, 0);
}

static void backup_record_done(void *ctx, int status, const struct fsm_result *res,
                               const char *msg)
{
    struct ha *h = ctx;
    (void)res;
    if (status != 0 && !h->closing)
        log_warn("backup", "the backup's result was not recorded in the cluster state: %s", msg);
}

/* ha/backup.c: a backup ended here; every node keeps the last ones
 * (GET /backup "recorded") */
static void backup_recorded(void *ctx, const struct backup_record *r)
{
    struct ha *h = ctx;
    if (h->closing)
        return;
    if (fsm_cluster_level(&h->fsm->st) < 3) {
        log_info("backup", "not recorded in the cluster state: a member runs an older pgwarden");
        return;
    }
    struct fsm_cmd c;
    fsm_cmd_init(&c, FSM_OP_BACKUP_DONE, NULL);
    snprintf(c.member, sizeof c.member, "%s", ha_name(h));
    snprintf(c.u.backup.type, sizeof c.u.backup.type, "%s", r->type);
    snprintf(c.u.backup.label, sizeof c.u.backup.label, "%s", r->label);
    snprintf(c.u.backup.result, sizeof c.u.backup.result, "%s", r->result);
    c.u.backup.ok = r->ok;
    c.u.backup.started_wall_ms = r->started_wall_ms;
    c.u.backup.ended_wall_ms = r->ended_wall_ms;
    if (submit_cmd(h->sub, &c, h->timing.retry_timeout_ms * 4, backup_record_done, h) != 0)
        log_warn("backup", "the backup's result was not recorded in the cluster state");
    fsm_cmd_free(&c);
}

int ha_start(const struct ha_opts *o, struct ha **out, char *err, size_t errlen)
{
    struct ha *h = calloc(1, sizeof *h);
    if (h == NULL)
        return PGW_ENOMEM;
    h->loop = o->loop;
    h->cfg = o->cfg;
    h->cluster = o->cluster;
    h->fsm = o->fsm;
    h->sub = o->sub;
    h->keeper = o->keeper;
    h->clock = o->clock != NULL ? o->clock : &clock_monotonic;
    h->witness = o->cfg->witness || !o->cfg->postgresql.present;
    h->ag.lease_fd = -1;
    h->started_ms = clock_now(h->clock);
    uv_timer_init(h->loop, &h->tick);
    uv_timer_init(h->loop, &h->kick);
    uv_timer_init(h->loop, &h->fence_timer);
    uv_timer_init(h->loop, &h->renew_timer);
    h->tick.data = h;
    h->kick.data = h;
    h->fence_timer.data = h;
    h->renew_timer.data = h;
    h->open_handles = 4;
    h->keeper_fences_seen = keeper_fences(h->keeper);
    refresh_dcs(h);
    if (!h->witness) {
        int rc = agent_init(h, err, errlen);
        if (rc == 0)
            rc = backup_new(h->loop, h->cfg, backup_recorded, h, &h->bk, err, errlen);
        if (rc != 0) {
            h->start_failed = true;
            *out = h; /* the caller closes it (ha_close, then ha_free) */
            return rc;
        }
    }
    uv_timer_start(&h->tick, tick_cb, 0, h->timing.loop_wait_ms);
    *out = h;
    return PGW_OK;
}

void ha_set_config(struct ha *h, const struct cfg *cfg)
{
    h->cfg = cfg;
    backup_set_config(h->bk, cfg);
    if (h->dcs_version == UINT64_MAX)
        h->dcs_version = 0; /* re-read bootstrap.dcs from the new file */
    h->ag.config_gen++; /* the agent hands it to pgnode between actions */
    ha_kick(h);
}

static void maybe_closed(struct ha *h)
{
    if (!h->closing || h->open_handles > 0 || h->async_inflight > 0 || h->close_reported)
        return;
    h->close_reported = true;
    if (h->close_done != NULL)
        h->close_done(h->close_ctx);
}

static void handle_closed(uv_handle_t *hd)
{
    struct ha *h = hd->data;
    h->open_handles--;
    maybe_closed(h);
}

void ha_async_done(struct ha *h)
{
    h->async_inflight--;
    maybe_closed(h);
}

void ha_close(struct ha *h, void (*done)(void *ctx), void *ctx)
{
    if (h->closing)
        return;
    h->closing = true;
    h->close_done = done;
    h->close_ctx = ctx;
    h->fence_may_disarm = h->witness || ha_paused(h) || !agent_pg_may_write(h);
    if (!h->fence_may_disarm)
        log_warn("ha", "stopping while PostgreSQL may still run as a primary: the fence keeper "
                 "goes on guarding the lease and kills it when the lease runs out");
    if (!h->witness)
        agent_close(h);
    backup_free(h->bk);
    h->bk = NULL;
    uv_close((uv_handle_t *)&h->tick, handle_closed);
    uv_close((uv_handle_t *)&h->kick, handle_closed);
    uv_close((uv_handle_t *)&h->fence_timer, handle_closed);
    uv_close((uv_handle_t *)&h->renew_timer, handle_closed);
}

bool ha_fence_may_disarm(const struct ha *h)
{
    return h->closing && h->fence_may_disarm;
}

void ha_free(struct ha *h)
{
    if (h == NULL)
        return;
    if (h->dcs_version != 0)
        cfg_dcs_free(&h->dcs);
    free(h);
}

void ha_shutdown(struct ha *h, void (*done)(void *ctx), void *ctx)
{
    if (h->shutting_down)
        return;
    h->shutting_down = true;
    h->shutdown_done = done;
    h->shutdown_ctx = ctx;
    /* A switchover needs the candidate to catch up and promote: allow it
     * a generous but bounded time. */
    h->shutdown_deadline_ms = ha_now(h) + 4 * (uint64_t)h->timing.ttl_ms + 10000;
    if (h->witness) {
        h->shutting_down = false;
        if (done != NULL)
            done(ctx);
        return;
    }
    ha_kick(h);
}

/* --- views ------------------------------------------------------------------ */

void ha_get_view(const struct ha *h, struct ha_view *v)
{
    memset(v, 0, sizeof *v);
    uint64_t now = ha_now(h);
    v->paused = h->fsm->st.pause;
    v->loop_alive = now - h->last_tick_ms < 2 * (uint64_t)h->timing.ttl_ms;
    v->last_error = h->witness ? "" : h->ag.last_error;
    if (h->witness) {
        v->role = "witness";
        return;
    }
    const struct agent *ag = &h->ag;
    v->lease_serving = lease_holder_serving(&ag->lease, now) ||
                       (ag->test_no_fencing && ag->lease.epoch != 0);
    v->lease_expires_in_ms = lease_holder_remaining(&ag->lease, now);
    v->epoch = ag->lease.epoch;
    const struct pg_status *ps = pgmon_status(ag->mon);
    struct ha_pg_view *p = &v->pg;
    p->present = true;
    p->state = ag->state_text;
    p->running = ps->state == PG_RUN_RUNNING;
    p->status_known = ps->query_ok;
    p->in_recovery = ps->in_recovery;
    p->server_version = ps->server_version;
    p->timeline = ps->timeline;
    p->wal_lsn = ps->wal_lsn;
    p->received_lsn = ps->received_lsn;
    p->replayed_lsn = ps->replayed_lsn;
    p->has_replay_ts = ps->has_replay_ts;
    p->replay_ts_ms = ps->last_replay_ts_ms;
    p->replay_paused = ps->replay_paused;
    p->sysid = ps->system_identifier;
    p->postmaster_start_ms = ps->postmaster_start_ms;
    p->pending_restart = ps->pending_restart;
    p->archiver_known = ps->archiver.present;
    p->archived_count = ps->archiver.archived_count;
    p->archive_failed_count = ps->archiver.failed_count;
    p->last_archived_ms = ps->archiver.last_archived_ms;
    p->last_archive_failed_ms = ps->archiver.last_failed_ms;
    p->archive_lag_known = ps->archiver.lag_known;
    p->archive_lag_bytes = ps->archiver.lag_bytes;
    if (p->running && ps->in_recovery)
        p->repl_state = ps->receiver.present && strcmp(ps->receiver.status, "streaming") == 0
                            ? "streaming" : "in archive recovery";
    else
        p->repl_state = "";
    if (!p->running)
        v->role = ag->was_primary && ps->state != PG_RUN_UNKNOWN ? "demoted" : "uninitialized";
    else
        v->role = ps->in_recovery ? "replica" : "primary";
    if (p->running && ps->in_recovery && ag->was_primary)
        v->role = "replica";
    /* the lease holder of a standby cluster, replicating from the remote */
    if (p->running && ps->in_recovery && v->lease_serving && cfg_standby_enabled(&h->dcs))
        v->role = "standby_leader";
}

const char *ha_candidate_reason(const struct ha *h, const char *member)
{
    for (unsigned i = 0; i < h->ctl.n_reasons; i++)
        if (strcmp(h->ctl.reason_member[i], member) == 0)
            return h->ctl.reason[i];
    return NULL;
}

const char *ha_controller_note(const struct ha *h)
{
    return h->ctl.note;
}

void ha_get_stats(const struct ha *h, struct ha_stats *out)
{
    *out = h->stats;
}

struct local_status_req {
    struct ha *h;
    ha_status_cb cb;
    void *ctx;
};

static json_t *status_json(struct ha *h)
{
    json_t *j = json_object();
    json_object_set_new(j, "name", json_string(ha_name(h)));
    if (h->witness) {
        json_object_set_new(j, "witness", json_true());
        return j;
    }
    const struct pg_status *ps = pgmon_status(h->ag.mon);
    json_object_set_new(j, "state", json_string(pg_run_state_name(ps->state)));
    json_object_set_new(j, "running", json_boolean(ps->state == PG_RUN_RUNNING && ps->query_ok));
    json_object_set_new(j, "in_recovery", json_boolean(ps->in_recovery));
    char sysid[24];
    snprintf(sysid, sizeof sysid, "%" PRIu64, ps->system_identifier);
    json_object_set_new(j, "sysid", json_string(sysid));
    json_object_set_new(j, "timeline", json_integer(ps->timeline));
    json_object_set_new(j, "lsn", json_integer((json_int_t)ps->wal_lsn));
    json_object_set_new(j, "receive_lsn", json_integer((json_int_t)ps->received_lsn));
    json_object_set_new(j, "replay_lsn", json_integer((json_int_t)ps->replayed_lsn));
    const char *delay = NULL;
    for (size_t i = 0; i < h->cfg->postgresql.parameters.n; i++)
        if (strcmp(h->cfg->postgresql.parameters.items[i].key, "recovery_min_apply_delay") == 0)
            delay = h->cfg->postgresql.parameters.items[i].value;
    json_object_set_new(j, "delayed", json_boolean(delay != NULL && strcmp(delay, "0") != 0 &&
                                                   delay[0] != '\0'));
    if (ps->error[0] != '\0')
        json_object_set_new(j, "error", json_string(ps->error));
    return j;
}

static void local_refreshed(struct pgmon *m, int status, const struct pg_status *st, void *ctx)
{
    struct local_status_req *r = ctx;
    (void)m;
    (void)st;
    struct ha *h = r->h;
    if (status != PGW_ECANCELED)
        r->cb(r->ctx, status_json(h));
    else
        r->cb(r->ctx, NULL);
    free(r);
    ha_async_done(h);
}

void ha_local_status(struct ha *h, bool fresh, ha_status_cb cb, void *ctx)
{
    if (fresh && !h->witness && h->ag.mon != NULL) { /* no monitor once closed */
        struct local_status_req *r = malloc(sizeof *r);
        if (r != NULL) {
            r->h = h;
            r->cb = cb;
            r->ctx = ctx;
            if (pgmon_refresh(h->ag.mon, local_refreshed, r) == 0) {
                h->async_inflight++;
                return;
            }
            free(r);
        }
    }
    cb(ctx, status_json(h));
}

json_t *ha_backup_status(const struct ha *h)
{
    if (h->bk == NULL)
        return NULL;
    json_t *o = backup_status_json(h->bk, ha_now(h), clock_wall_ms());
    json_t *rec = json_array();
    const struct fsm_state *st = &h->fsm->st;
    for (unsigned i = 0; o != NULL && rec != NULL && i < st->n_backups; i++) {
        const struct fsm_backup_rec *b = &st->backups[i];
        json_array_append_new(rec, json_pack("{s:s,s:s,s:s,s:b,s:I,s:I,s:s}", "member", b->member,
                                             "type", b->type, "label", b->label, "ok", b->ok,
                                             "started", (json_int_t)(b->started_wall_ms / 1000),
                                             "ended", (json_int_t)(b->ended_wall_ms / 1000),
                                             "result", b->result));
    }
    if (o != NULL)
        json_object_set_new(o, "recorded", rec != NULL ? rec : json_array());
    else
        json_decref(rec);
    return o;
}

int ha_backup_request(struct ha *h, const char *type, char *why, size_t whylen)
{
    if (h->bk == NULL) {
        snprintf(why, whylen, "backups are off on this node (no backup section)");
        return PGW_ENOTFOUND;
    }
    int rc = backup_request(h->bk, type, why, whylen);
    if (rc == PGW_OK)
        ha_kick(h);
    return rc;
}

bool ha_backup_metrics(const struct ha *h, struct backup_metrics *m)
{
    if (h->bk == NULL)
        return false;
    backup_get_metrics(h->bk, clock_wall_ms(), m);
    return true;
}
