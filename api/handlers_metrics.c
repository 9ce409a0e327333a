/* GET /metrics: Prometheus text format, Patroni's metric names with the
 * labels {scope, name}, plus pgwarden_* for Raft, the lease and counters. */
#include "api/api_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/probe_rules.h"
#include "build_info.h"
#include "common/clock.h"
#include "ha/backup.h"

struct buf {
    char *p;
    size_t len, cap;
    const char *labels;
};

static void put(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(struct buf *b, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0)
            return;
        if ((size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap * 2 + (size_t)n;
        char *np = realloc(b->p, cap);
        if (np == NULL)
            return;
        b->p = np;
        b->cap = cap;
    }
}

static void metric(struct buf *b, const char *name, const char *type, const char *help, double v)
{
    put(b, "# HELP %s %s\n# TYPE %s %s\n%s{%s} %.17g\n", name, help, name, type, name, b->labels, v);
}

/* Prometheus wants cumulative buckets, in seconds. counts[i] is the number
 * of observations <= bounds_s[i] (not cumulative); counts[nbounds] the rest. */
static void histogram(struct buf *b, const char *name, const char *help, const double *bounds_s,
                      size_t nbounds, const uint64_t *counts, double sum_s, uint64_t count)
{
    put(b, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    uint64_t cum = 0;
    for (size_t i = 0; i < nbounds; i++) {
        cum += counts[i];
        put(b, "%s_bucket{%s,le=\"%g\"} %llu\n", name, b->labels, bounds_s[i], (unsigned long long)cum);
    }
    cum += counts[nbounds];
    put(b, "%s_bucket{%s,le=\"+Inf\"} %llu\n", name, b->labels, (unsigned long long)cum);
    put(b, "%s_sum{%s} %.17g\n%s_count{%s} %llu\n", name, b->labels, sum_s, name, b->labels,
        (unsigned long long)count);
}

static void tick_delay_histogram(struct buf *b, const struct ha_stats *hs)
{
    static const uint64_t bounds_ms[] = HA_TICK_DELAY_BOUNDS_MS;
    double bounds[sizeof bounds_ms / sizeof bounds_ms[0]];
    for (size_t i = 0; i < sizeof bounds / sizeof bounds[0]; i++)
        bounds[i] = (double)bounds_ms[i] / 1000.0;
    histogram(b, "pgwarden_ha_tick_delay_seconds",
              "How late each periodic HA tick ran after its schedule.", bounds,
              sizeof bounds / sizeof bounds[0], hs->tick_delay_bucket, hs->tick_delay_sum_ms / 1000.0,
              hs->ticks);
}

static void loop_busy_metrics(struct buf *b, const struct loopstat *ls)
{
    static const uint64_t bounds_us[] = LOOPSTAT_BOUNDS_US;
    double bounds[sizeof bounds_us / sizeof bounds_us[0]];
    for (size_t i = 0; i < sizeof bounds / sizeof bounds[0]; i++)
        bounds[i] = (double)bounds_us[i] / 1e6;
    struct loopstat_counts c = {0};
    if (ls != NULL)
        loopstat_get(ls, &c);
    histogram(b, "pgwarden_loop_busy_seconds",
              "Time the event loop ran callbacks (or waited for a CPU) between two waits for I/O, "
              "per iteration: how long a probe or a Raft message can be kept waiting.",
              bounds, sizeof bounds / sizeof bounds[0], c.bucket, c.busy_sum_s, c.iterations);
    metric(b, "pgwarden_loop_busy_max_seconds", "gauge",
           "Longest single event-loop iteration since start.", (double)c.busy_max_us / 1e6);
}

/* Patroni's encoding, with its "# Values:" line listing the numbers. */
static void pg_state_metric(struct buf *b, const struct ha_pg_view *p)
{
    put(b, "# HELP patroni_postgres_state Numeric representation of Postgres state.\n"
           "# Values: 0=initdb, 1=initdb_failed, 2=custom_bootstrap, 3=custom_bootstrap_failed, "
           "4=creating_replica, 5=running, 6=starting, 7=bootstrap_starting, 8=start_failed, "
           "9=restarting, 10=restart_failed, 11=stopping, 12=stopped, 13=stop_failed, 14=crashed\n"
           "# TYPE patroni_postgres_state gauge\npatroni_postgres_state{%s} %d\n",
        b->labels, api_pg_state_index(p->present, p->state));
}

static void h_metrics(struct http_exchange *x, const struct http_request *req, void *vctx)
{
    (void)req;
    const struct api_ctx *ctx = vctx;
    struct ha_view v;
    ha_get_view(ctx->ha, &v);
    const struct fsm_state *st = &ctx->fsm->st;
    struct cluster_info ci;
    cluster_get_info(ctx->cluster, &ci);
    struct ha_stats hs;
    ha_get_stats(ctx->ha, &hs);
    struct http_server_stats ws;
    http_server_get_stats(ctx->server, &ws);
    struct submit_stats ss;
    submitter_get_stats(ctx->sub, &ss);

    char labels[256];
    snprintf(labels, sizeof labels, "scope=\"%s\",name=\"%s\"", ctx->cfg->scope, ctx->cfg->name);
    struct buf b = {malloc(8192), 0, 8192, labels};
    if (b.p == NULL) {
        http_reply_text(x, 500, "out of memory");
        return;
    }
    const struct ha_pg_view *p = &v.pg;
    bool primary = v.lease_serving && p->running && !p->in_recovery;
    int major = 0, minor = 0, patch = 0;
    sscanf(PGW_VERSION, "%d.%d.%d", &major, &minor, &patch);
    metric(&b, "patroni_version", "gauge", "Version of pgwarden, as major*10000+minor*100+patch.",
           major * 10000 + minor * 100 + patch);
    metric(&b, "patroni_postgres_running", "gauge", "1 if PostgreSQL is running.", p->running);
    metric(&b, "patroni_postmaster_start_time", "gauge", "Epoch seconds of the postmaster start.",
           p->postmaster_start_ms / 1000.0);
    metric(&b, "patroni_primary", "gauge", "1 if this node is the primary.", primary);
    /* Patroni 3.x served both names; dashboards written for it still read this one */
    metric(&b, "patroni_master", "gauge", "1 if this node is the primary (patroni_primary's old name).",
           primary);
    metric(&b, "patroni_xlog_location", "counter", "Current WAL location (primary).",
           primary ? (double)p->wal_lsn : 0);
    /* Patroni counts the standby leader as that and not as a replica */
    bool standby_leader = strcmp(v.role, "standby_leader") == 0 && v.lease_serving && p->running &&
                          p->in_recovery;
    metric(&b, "patroni_standby_leader", "gauge", "1 if this node is a standby leader.", standby_leader);
    metric(&b, "patroni_replica", "gauge", "1 if this node is a running replica.",
           p->running && p->in_recovery && strcmp(v.role, "standby_leader") != 0);
    enum api_standby_kind kind = api_standby_kind(ha_dcs(ctx->ha)->synchronous_mode,
                                                  fsm_in_sync_set(st, ctx->cfg->name),
                                                  strcmp(v.role, "replica") == 0);
    metric(&b, "patroni_sync_standby", "gauge", "1 if this node is a synchronous standby.",
           kind == API_STANDBY_SYNC);
    metric(&b, "patroni_quorum_standby", "gauge", "1 if this node is a quorum standby.",
           kind == API_STANDBY_QUORUM);
    metric(&b, "patroni_xlog_received_location", "counter", "WAL received (replica).",
           p->in_recovery ? (double)p->received_lsn : 0);
    metric(&b, "patroni_xlog_replayed_location", "counter", "WAL replayed (replica).",
           p->in_recovery ? (double)p->replayed_lsn : 0);
    metric(&b, "patroni_xlog_replayed_timestamp", "gauge", "Epoch seconds of the last replayed transaction.",
           p->has_replay_ts ? p->replay_ts_ms / 1000.0 : 0);
    metric(&b, "patroni_xlog_paused", "gauge", "1 if WAL replay is paused.", p->replay_paused);
    metric(&b, "patroni_postgres_streaming", "gauge", "1 if streaming from the primary.",
           strcmp(p->repl_state, "streaming") == 0);
    metric(&b, "patroni_postgres_in_archive_recovery", "gauge", "1 if replaying from the archive.",
           strcmp(p->repl_state, "in archive recovery") == 0);
    metric(&b, "patroni_postgres_server_version", "gauge", "PostgreSQL version number.", p->server_version);
    metric(&b, "patroni_cluster_unlocked", "gauge", "1 if no member holds the primary role.",
           st->primary.state == FSM_PRIMARY_NONE);
    metric(&b, "patroni_postgres_timeline", "counter", "PostgreSQL timeline.", p->timeline);
    metric(&b, "patroni_dcs_last_seen", "gauge",
           "Epoch seconds of the last Raft commit applied here (the last contact with a majority).",
           (double)api_dcs_last_seen_s(clock_wall_ms(), clock_now(ctx->fsm->clock),
                                       ctx->fsm->local_commit_ms));
    metric(&b, "patroni_pending_restart", "gauge", "1 if a setting needs a restart.", p->pending_restart);
    metric(&b, "patroni_is_paused", "gauge", "1 if the cluster is in maintenance mode.", st->pause);
    pg_state_metric(&b, p);
    const struct fsm_member *me = fsm_member_find(st, ctx->cfg->name);
    metric(&b, "patroni_failover_priority", "gauge", "failover_priority tag.",
           me != NULL ? fsm_member_failover_priority(me) : 0);
    if (p->archiver_known) {
        metric(&b, "pgwarden_archive_archived_total", "counter",
               "WAL files archived (pg_stat_archiver.archived_count).", (double)p->archived_count);
        metric(&b, "pgwarden_archive_failed_total", "counter",
               "Failed attempts to archive a WAL file (pg_stat_archiver.failed_count).",
               (double)p->archive_failed_count);
        metric(&b, "pgwarden_archive_last_archived_timestamp", "gauge",
               "Epoch seconds of the last WAL file archived (0: none).", p->last_archived_ms / 1000.0);
        metric(&b, "pgwarden_archive_last_failed_timestamp", "gauge",
               "Epoch seconds of the last failed archive attempt (0: none).",
               p->last_archive_failed_ms / 1000.0);
        if (p->archive_lag_known)
            metric(&b, "pgwarden_archive_lag_bytes", "gauge",
                   "Primary: WAL written past the end of the last archived segment.",
                   (double)p->archive_lag_bytes);
    }
    struct backup_metrics bm;
    if (ha_backup_metrics(ctx->ha, &bm)) {
        metric(&b, "pgwarden_backup_repository_readable", "gauge",
               "1 if the last pgbackrest info succeeded.", bm.repo_known);
        if (bm.has_backup)
            metric(&b, "pgwarden_backup_last_age_seconds", "gauge",
                   "Age of the newest backup in the repository.", (double)bm.last_backup_age_s);
        if (bm.has_full)
            metric(&b, "pgwarden_backup_last_full_age_seconds", "gauge",
                   "Age of the newest full backup in the repository.", (double)bm.last_full_age_s);
        metric(&b, "pgwarden_backup_running", "gauge", "1 while this node takes a backup.",
               bm.running);
        metric(&b, "pgwarden_backups_total", "counter", "Backups this node completed.",
               (double)bm.successes);
        metric(&b, "pgwarden_backup_failures_total", "counter", "Backups that failed on this node.",
               (double)bm.failures);
    }
    metric(&b, "pgwarden_raft_term", "counter", "Current Raft term.", (double)ci.term);
    metric(&b, "pgwarden_raft_leader", "gauge", "1 if this node leads Raft.", ci.role == CLUSTER_LEADER);
    metric(&b, "pgwarden_raft_commit_index", "counter", "Raft commit index.", (double)ci.commit_index);
    metric(&b, "pgwarden_raft_applied_index", "counter", "Raft index applied here.", (double)ci.last_applied);
    metric(&b, "pgwarden_raft_voters", "gauge", "Voters in the Raft configuration.", ci.n_servers);
    metric(&b, "pgwarden_lease_held", "gauge", "1 if this node holds a valid primary lease.", v.lease_serving);
    metric(&b, "pgwarden_lease_expires_in_seconds", "gauge", "Seconds until this node must fence.",
           v.lease_expires_in_ms / 1000.0);
    metric(&b, "pgwarden_primary_epoch", "counter", "Epoch of the primary record.", (double)st->primary.epoch);
    metric(&b, "pgwarden_lease_renewals_total", "counter", "Lease renewals confirmed.", (double)hs.lease_renewals);
    metric(&b, "pgwarden_lease_renew_failures_total", "counter", "Lease renewals refused or timed out.",
           (double)hs.lease_renew_failures);
    metric(&b, "pgwarden_fences_total", "counter", "Times this node fenced PostgreSQL.", (double)hs.fences);
    metric(&b, "pgwarden_failovers_total", "counter", "Failovers decided or performed here.", (double)hs.failovers);
    metric(&b, "pgwarden_switchovers_total", "counter", "Switchovers decided or performed here.",
           (double)hs.switchovers);
    tick_delay_histogram(&b, &hs);
    loop_busy_metrics(&b, ctx->loopstat);
    metric(&b, "pgwarden_commands_forwarded_total", "counter", "Commands forwarded to the Raft leader.",
           (double)ss.forwarded);
    metric(&b, "pgwarden_command_retries_total", "counter", "Command submissions retried.", (double)ss.retries);
    metric(&b, "pgwarden_http_requests_total", "counter", "REST requests served.", (double)ws.requests);
    metric(&b, "pgwarden_http_timeouts_total", "counter", "REST clients dropped for being slow.",
           (double)ws.timeouts);
    metric(&b, "pgwarden_http_tls_handshake_failures_total", "counter", /* tls */
           "TLS handshakes refused (bad or missing client certificate, not TLS, no common "
           "protocol).", (double)ws.tls_handshake_failures);
    http_reply(x, 200, "text/plain; version=0.0.4", b.p, b.len);
    free(b.p);
}

static const struct http_route routes[] = {
    {"/metrics", HTTP_M_GET, false, h_metrics},
};

int api_register_metrics(struct http_server *s, struct api_ctx *ctx)
{
    return http_server_add_routes(s, routes, sizeof routes / sizeof routes[0], ctx);
}
