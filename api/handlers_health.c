/* Health checks for load balancers, with Patroni's paths and semantics
 * (200 or 503; GET carries the status document, HEAD and OPTIONS only the
 * status line, for HAProxy's option httpchk) and one deliberate fix: the
 * primary endpoints answer 200 only when this node holds the primary lease
 * AND PostgreSQL is running AND not in recovery (Patroni answers from the
 * lease alone, even while PostgreSQL is down: patroni#2756). */
#include "api/api_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/probe_rules.h"
#include "pg/lsn.h"

static bool is_primary(const struct api_ctx *ctx, const struct ha_view *v)
{
    /* not while the cluster is being founded here: the roles, post_bootstrap
     * and the final configuration come after PostgreSQL first runs, and
     * Patroni takes the leader key only once they are done */
    return v->lease_serving && v->pg.present && v->pg.running && v->pg.status_known &&
           !v->pg.in_recovery && ctx->fsm->st.primary.state != FSM_PRIMARY_BOOTSTRAPPING;
}

static bool member_tag_matches(const struct api_ctx *ctx, const char *key, const char *want)
{
    const struct fsm_member *m = fsm_member_find(&ctx->fsm->st, ctx->cfg->name);
    const json_t *v = m != NULL ? json_object_get(m->tags, key) : NULL;
    if (v == NULL)
        return false;
    char buf[64];
    const char *have = buf;
    if (json_is_string(v))
        have = json_string_value(v);
    else if (json_is_true(v))
        have = "true";
    else if (json_is_false(v))
        have = "false";
    else if (json_is_integer(v))
        snprintf(buf, sizeof buf, "%lld", (long long)json_integer_value(v));
    else
        return false;
    return strcasecmp(have, want) == 0;
}

/* Every ?tag_<key>=<value> must match this member's tags. */
static bool tags_match(const struct api_ctx *ctx, const struct http_request *req)
{
    const char *q = req->query;
    while (q != NULL && *q) {
        const char *amp = strchr(q, '&');
        size_t len = amp != NULL ? (size_t)(amp - q) : strlen(q);
        if (len > 4 && strncmp(q, "tag_", 4) == 0) {
            char key[128];
            const char *eq = memchr(q, '=', len);
            size_t klen = eq != NULL ? (size_t)(eq - q) - 4 : len - 4;
            if (klen >= sizeof key)
                return false;
            memcpy(key, q + 4, klen);
            key[klen] = '\0';
            char name[140], val[256];
            snprintf(name, sizeof name, "tag_%s", key);
            if (http_query_param(req, name, val, sizeof val) == NULL ||
                !member_tag_matches(ctx, key, val))
                return false;
        }
        q = amp != NULL ? amp + 1 : NULL;
    }
    return true;
}

/* ?lag=<bytes|16kB|64MB>: -1 when absent, -2 when malformed. */
static int64_t lag_param(const struct http_request *req)
{
    char buf[64];
    if (http_query_param(req, "lag", buf, sizeof buf) == NULL)
        return -1;
    uint64_t v;
    if (cfg_parse_size(buf, &v) != 0 || v > INT64_MAX)
        return -2;
    return (int64_t)v;
}

/* The lease holder of a standby cluster, running and replicating (from the
 * remote primary or its archive). */
static bool is_standby_leader(const struct ha_view *v)
{
    return strcmp(v->role, "standby_leader") == 0 && v->lease_serving && v->pg.running &&
           v->pg.status_known && v->pg.in_recovery;
}

static bool replica_ok(const struct api_ctx *ctx, const struct ha_view *v,
                       const struct http_request *req, bool allow_noloadbalance)
{
    if (!v->pg.present || !v->pg.running || !v->pg.status_known || !v->pg.in_recovery)
        return false;
    if (strcmp(v->role, "standby_leader") == 0)
        return false; /* the leader endpoints answer for it, as in Patroni */
    if (!allow_noloadbalance && ctx->cfg->tags.noloadbalance)
        return false;
    int64_t lag = lag_param(req);
    if (lag == -2)
        return false;
    if (lag >= 0 && pg_lsn_diff(api_primary_lsn(ctx), v->pg.replayed_lsn) > (uint64_t)lag)
        return false;
    char rs[32];
    if (http_query_param(req, "replication_state", rs, sizeof rs) != NULL &&
        strcmp(rs, v->pg.repl_state) != 0)
        return false;
    return tags_match(ctx, req);
}

/* v: the view the decision was made from; the body shows the same one */
static void answer(struct http_exchange *x, struct api_ctx *ctx, const struct ha_view *v, bool ok)
{
    api_reply_status(x, ctx, v, ok ? 200 : 503);
}

static void h_primary(struct http_exchange *x, const struct http_request *req, void *vctx)
{
    (void)req;
    struct api_ctx *ctx = vctx;
    struct ha_view v;
    ha_get_view(ctx->ha, &v);
    answer(x, ctx, &v, is_primary(ctx, &v));
}

static void h_replica(struct http_exchange *x, const struct http_request *req, void *vctx)
{
    struct api_ctx *ctx = vctx;
    struct ha_view v;
    ha_get_view(ctx->ha, &v);
    answer(x, ctx, &v, replica_ok(ctx, &v, req, false));
}

static void h_read_only(struct http_exchange *x, const struct http_request *req, void *vctx)
{
    struct api_ctx *ctx = vctx;
    struct ha_view v;
    ha_get_view(ctx->ha, &v);
    answer(x, ctx, &v,
           is_primary(ctx, &v) || is_standby_leader(&v) || replica_ok(ctx, &v, req, false));
}

/* What this node is, for the endpoints that depend on the synchronous set. */
static void probe_facts(const struct api_ctx *ctx, const struct ha_view *v,
                        const struct http_request *req, struct api_probe_facts *f)
{
    f->primary = is_primary(ctx, v);
    f->standby_leader = is_standby_leader(v);
    f->replica_ok = replica_ok(ctx, v, req, false);
    f->kind = api_standby_kind(ha_dcs(ctx->ha)->synchronous_mode,
                               fsm_in_sync_set(&ctx->fsm->st, ctx->cfg->name),
                               strcmp(v->role, "replica") == 0);
}

static void answer_path(struct http_exchange *x, const struct http_request *req, void *vctx,
                        enum api_probe_path path)
{
    struct api_ctx *ctx = vctx;
    struct ha_view v;
    ha_get_view(ctx->ha, &v);
    struct api_probe_facts f;
    probe_facts(ctx, &v, req, &f);
    answer(x, ctx, &v, api_probe_decide(path, &f));
}

static void h_sync(struct http_exchange *x, const struct http_request *req, void *vctx)
{
    answer_path(x, req, vctx, API_PROBE_SYNC);
}

static void h_async(struct http_exchange *x, const struct http_request *req, void *vctx)
{
    answer_path(x, req, vctx, API_PROBE_ASYNC);
}

static void h_quorum(struct http_exchange *x, const struct http_request *req, void *vctx)
{
    answer_path(x, req, vctx, API_PROBE_QUORUM);
}

static void h_read_only_sync(struct http_exchange *x, const struct http_request *req, void *vctx)
{
    answer_path(x, req, vctx, API_PROBE_RO_SYNC);
}

static void h_read_only_quorum(struct http_exchange *x, const struct http_request *req, void *vctx)
{
    answer_path(x, req, vctx, API_PROBE_RO_QUORUM);
}

/* Any other path. Patroni's generic do_GET answers every GET (and HEAD,
 * OPTIONS) it has no handler for with 503 and the status document, so a
 * load balancer probing a misspelt path sees "down", never an error page.
 * Write methods on an unknown path get Patroni's answer too: 501 (its
 * BaseHTTPRequestHandler has no do_POST/do_PUT/...). A known path with the
 * wrong method is not routed here: it gets 405 with Allow. */
static void h_unknown(struct http_exchange *x, const struct http_request *req, void *vctx)
{
    struct api_ctx *ctx = vctx;
    if (req->method & HTTP_M_PROBE) {
        struct ha_view v;
        ha_get_view(ctx->ha, &v);
        answer(x, ctx, &v, false);
        return;
    }
    api_reply_error(x, 501, "unsupported method %s for %s: no such endpoint", req->method_name,
                    req->path);
}

static void h_health(struct http_exchange *x, const struct http_request *req, void *vctx)
{
    (void)req;
    struct api_ctx *ctx = vctx;
    struct ha_view v;
    ha_get_view(ctx->ha, &v);
    answer(x, ctx, &v, v.pg.present ? v.pg.running : true);
}

static void h_standby_leader(struct http_exchange *x, const struct http_request *req, void *vctx)
{
    (void)req;
    struct api_ctx *ctx = vctx;
    struct ha_view v;
    ha_get_view(ctx->ha, &v);
    answer(x, ctx, &v, is_standby_leader(&v));
}

/* Patroni's /leader: the primary or the standby leader (a load balancer
 * pointed at it needs no change when a standby cluster is promoted). */
static void h_leader(struct http_exchange *x, const struct http_request *req, void *vctx)
{
    (void)req;
    struct api_ctx *ctx = vctx;
    struct ha_view v;
    ha_get_view(ctx->ha, &v);
    answer(x, ctx, &v, is_primary(ctx, &v) || is_standby_leader(&v));
}

static void h_liveness(struct http_exchange *x, const struct http_request *req, void *vctx)
{
    (void)req;
    struct api_ctx *ctx = vctx;
    struct ha_view v;
    ha_get_view(ctx->ha, &v);
    bool ok = v.paused || v.loop_alive;
    if (req->method == HTTP_M_GET)
        api_reply_json(x, ok ? 200 : 503, json_pack("{s:b}", "alive", ok));
    else
        http_reply(x, ok ? 200 : 503, NULL, NULL, 0);
}

static void h_readiness(struct http_exchange *x, const struct http_request *req, void *vctx)
{
    struct api_ctx *ctx = vctx;
    struct ha_view v;
    ha_get_view(ctx->ha, &v);
    bool ok = is_primary(ctx, &v);
    if (!ok && v.pg.present && v.pg.running && v.pg.in_recovery &&
        strcmp(v.pg.repl_state, "streaming") == 0) {
        int64_t lag = lag_param(req);
        if (lag == -1)
            lag = (int64_t)ha_dcs(ctx->ha)->maximum_lag_on_failover;
        char mode[16];
        uint64_t pos = v.pg.replayed_lsn;
        if (http_query_param(req, "mode", mode, sizeof mode) != NULL && strcmp(mode, "write") == 0)
            pos = v.pg.received_lsn;
        ok = lag >= 0 && pg_lsn_diff(api_primary_lsn(ctx), pos) <= (uint64_t)lag;
    }
    if (req->method == HTTP_M_GET)
        answer(x, ctx, &v, ok);
    else
        http_reply(x, ok ? 200 : 503, NULL, NULL, 0);
}

static const struct http_route routes[] = {
    {"/", HTTP_M_PROBE, false, h_primary},
    {"/primary", HTTP_M_PROBE, false, h_primary},
    {"/master", HTTP_M_PROBE, false, h_primary},
    {"/read-write", HTTP_M_PROBE, false, h_primary},
    {"/leader", HTTP_M_PROBE, false, h_leader},
    {"/standby-leader", HTTP_M_PROBE, false, h_standby_leader},
    {"/standby_leader", HTTP_M_PROBE, false, h_standby_leader},
    {"/replica", HTTP_M_PROBE, false, h_replica},
    {"/read-only", HTTP_M_PROBE, false, h_read_only},
    {"/synchronous", HTTP_M_PROBE, false, h_sync},
    {"/sync", HTTP_M_PROBE, false, h_sync},
    {"/asynchronous", HTTP_M_PROBE, false, h_async},
    {"/async", HTTP_M_PROBE, false, h_async},
    {"/read-only-sync", HTTP_M_PROBE, false, h_read_only_sync},
    {"/read-only-synchronous", HTTP_M_PROBE, false, h_read_only_sync},
    {"/quorum", HTTP_M_PROBE, false, h_quorum},
    {"/read-only-quorum", HTTP_M_PROBE, false, h_read_only_quorum},
    {"/health", HTTP_M_PROBE, false, h_health},
    {"/liveness", HTTP_M_PROBE, false, h_liveness},
    {"/readiness", HTTP_M_PROBE, false, h_readiness},
    /* the shortest prefix: only what no other route takes comes here */
    {"/", HTTP_M_PROBE | HTTP_M_POST | HTTP_M_PUT | HTTP_M_PATCH | HTTP_M_DELETE, true, h_unknown},
};

int api_register_health(struct http_server *s, struct api_ctx *ctx)
{
    return http_server_add_routes(s, routes, sizeof routes / sizeof routes[0], ctx);
}
