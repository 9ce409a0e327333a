/* GET /patroni, /cluster, /history, /config: Patroni's documents, answered
 * from memory (the agent's last PostgreSQL status and the applied FSM). */
#include "api/api_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/probe_rules.h"
#include "build_info.h"
#include "common/clock.h"
#include "common/log.h"
#include "pg/lsn.h"

static void iso(int64_t ms, char *buf, size_t len)
{
    clock_format_iso((uint64_t)ms, buf, len);
}

uint64_t api_primary_lsn(const struct api_ctx *ctx)
{
    const struct fsm_state *st = &ctx->fsm->st;
    uint64_t lsn = st->primary.lsn;
    const struct fsm_member *pm = fsm_member_find(st, st->primary.member);
    if (pm != NULL && pm->report.lsn > lsn)
        lsn = pm->report.lsn;
    return lsn;
}

static json_t *tags_of(const struct api_ctx *ctx)
{
    const struct fsm_member *m = fsm_member_find(&ctx->fsm->st, ctx->cfg->name);
    if (m != NULL && m->tags != NULL)
        return json_deep_copy(m->tags);
    return json_object();
}

/* Everything the status document is made of, by value: strings are copied
 * and the struct is zeroed first (padding too), so two inputs that compare
 * equal (memcmp) render the same bytes. What comes from the replicated state
 * is covered by the FSM's applied index (tags) or copied (the rest). */
struct status_input {
    struct ha_view v; /* its string pointers are cleared: the copies below count */
    char role[32], state[48], repl_state[32], last_error[256];
    const struct api_ctx *ctx;
    const struct cfg *cfg; /* scope, name */
    uint64_t fsm_applied;  /* this member's tags */
    int primary_state;
    bool pause;
    int standby_kind; /* enum api_standby_kind */
    int raft_role;
};

/* The last rendering, reused while its input is unchanged: a health probe
 * otherwise builds and serializes the same document each time. The one
 * value that changes every millisecond, lease_expires_in, is not part of
 * the input: the rendering is kept as the text before that value and the
 * text after it, and each reply puts the current value between the two. So
 * probes at any rate, a few a second from HAProxy included, reuse it. */
struct api_status_cache {
    struct status_input in;
    char *body;           /* the rendering; lease_expires_in's value is cut out */
    size_t len;
    size_t value_at;      /* where the value goes: body[0, value_at) comes before it */
    char *reply;          /* body with the current value, reused (len + LEASE_TEXT_MAX) */
};

#define LEASE_KEY "\"lease_expires_in\":"
#define LEASE_TEXT_MAX 24 /* "18446744073709551.615" */

static void copy_str(char *dst, size_t len, const char *src)
{
    snprintf(dst, len, "%s", src != NULL ? src : "");
}

static void status_input_take(const struct api_ctx *ctx, const struct ha_view *view,
                              struct status_input *in)
{
    memset(in, 0, sizeof *in);
    if (view != NULL)
        in->v = *view; /* ha_get_view zeroes the struct first: padding stays zero */
    else
        ha_get_view(ctx->ha, &in->v);
    copy_str(in->role, sizeof in->role, in->v.role);
    copy_str(in->state, sizeof in->state, in->v.pg.state);
    copy_str(in->repl_state, sizeof in->repl_state, in->v.pg.repl_state);
    copy_str(in->last_error, sizeof in->last_error, in->v.last_error);
    in->v.role = in->v.pg.state = in->v.pg.repl_state = in->v.last_error = NULL;
    const struct fsm_state *st = &ctx->fsm->st;
    in->ctx = ctx;
    in->cfg = ctx->cfg;
    in->fsm_applied = st->applied_index;
    in->primary_state = (int)st->primary.state;
    in->pause = st->pause;
    in->standby_kind = (int)api_standby_kind(ha_dcs(ctx->ha)->synchronous_mode,
                                             fsm_in_sync_set(st, ctx->cfg->name),
                                             strcmp(in->role, "replica") == 0);
    in->raft_role = (int)cluster_role(ctx->cluster);
}

/* The document, from the input alone (and the tags its FSM index stands for). */
static json_t *status_render(const struct status_input *in)
{
    const struct api_ctx *ctx = in->ctx;
    const struct ha_pg_view *p = &in->v.pg;
    json_t *j = json_object();
    json_object_set_new(j, "state", json_string(p->present ? in->state : "running"));
    if (p->present && p->running && p->postmaster_start_ms > 0) {
        char ts[40];
        iso(p->postmaster_start_ms, ts, sizeof ts);
        json_object_set_new(j, "postmaster_start_time", json_string(ts));
    }
    json_object_set_new(j, "role", json_string(in->role));
    if (p->present && p->status_known) {
        json_object_set_new(j, "server_version", json_integer(p->server_version));
        json_object_set_new(j, "timeline", json_integer(p->timeline));
        json_t *x = json_object();
        if (p->in_recovery) {
            json_object_set_new(x, "received_location", json_integer((json_int_t)p->received_lsn));
            json_object_set_new(x, "replayed_location", json_integer((json_int_t)p->replayed_lsn));
            if (p->has_replay_ts) {
                char ts[40];
                iso(p->replay_ts_ms, ts, sizeof ts);
                json_object_set_new(x, "replayed_timestamp", json_string(ts));
            } else {
                json_object_set_new(x, "replayed_timestamp", json_null());
            }
            json_object_set_new(x, "paused", json_boolean(p->replay_paused));
        } else {
            json_object_set_new(x, "location", json_integer((json_int_t)p->wal_lsn));
        }
        json_object_set_new(j, "xlog", x);
        if (in->repl_state[0] != '\0')
            json_object_set_new(j, "replication_state", json_string(in->repl_state));
        char sysid[24];
        snprintf(sysid, sizeof sysid, "%" PRIu64, p->sysid);
        json_object_set_new(j, "database_system_identifier", json_string(sysid));
    }
    if (p->present)
        json_object_set_new(j, "pending_restart", json_boolean(p->pending_restart));
    if (in->primary_state == FSM_PRIMARY_NONE)
        json_object_set_new(j, "cluster_unlocked", json_true());
    if (in->pause)
        json_object_set_new(j, "pause", json_true());
    /* Patroni: one or the other, by synchronous_mode */
    if (in->standby_kind == API_STANDBY_SYNC)
        json_object_set_new(j, "sync_standby", json_true());
    else if (in->standby_kind == API_STANDBY_QUORUM)
        json_object_set_new(j, "quorum_standby", json_true());
    json_object_set_new(j, "tags", tags_of(ctx));
    json_object_set_new(j, "patroni", json_pack("{s:s, s:s, s:s}", "version", PGW_VERSION, "scope",
                                                 in->cfg->scope, "name", in->cfg->name));
    json_t *pw = json_object();
    json_object_set_new(pw, "raft_state",
                        json_string(cluster_role_name((enum cluster_role)in->raft_role)));
    json_object_set_new(pw, "lease_expires_in", json_integer(0)); /* api_reply_status puts the value */
    json_object_set_new(pw, "epoch", json_integer((json_int_t)in->v.epoch));
    if (in->last_error[0] != '\0')
        json_object_set_new(pw, "last_error", json_string(in->last_error));
    json_object_set_new(j, "pgwarden", pw);
    return j;
}

/* Cuts the placeholder value out of a fresh rendering: the last
 * "lease_expires_in": in the text is ours, since only epoch (a number) and
 * last_error (a value, never followed by ':') come after it in the document,
 * and an escaped string cannot end in an unescaped '"'. */
static int cache_take(struct api_status_cache *c, char *text)
{
    char *at = NULL;
    for (char *p = strstr(text, LEASE_KEY); p != NULL; p = strstr(p + 1, LEASE_KEY))
        at = p;
    if (at == NULL || at[sizeof LEASE_KEY - 1] != '0')
        return -1;
    size_t len = strlen(text);
    char *reply = malloc(len + LEASE_TEXT_MAX);
    if (reply == NULL)
        return -1;
    size_t value_at = (size_t)(at - text) + sizeof LEASE_KEY - 1;
    memmove(text + value_at, text + value_at + 1, len - value_at); /* drop the '0' and keep the NUL */
    free(c->body);
    free(c->reply);
    c->body = text;
    c->len = len - 1;
    c->value_at = value_at;
    c->reply = reply;
    return 0;
}

void api_reply_status(struct http_exchange *x, struct api_ctx *ctx, const struct ha_view *view,
                      int status)
{
    struct status_input in;
    status_input_take(ctx, view, &in);
    uint64_t lease_ms = in.v.lease_expires_in_ms;
    in.v.lease_expires_in_ms = 0;
    struct api_status_cache *c = ctx->status_cache;
    if (c == NULL) {
        c = calloc(1, sizeof *c);
        if (c == NULL) {
            http_reply_text(x, 500, "out of memory");
            return;
        }
        ctx->status_cache = c;
    }
    if (c->body == NULL || memcmp(&c->in, &in, sizeof in) != 0) {
        json_t *j = status_render(&in);
        char *text = j != NULL ? json_dumps(j, JSON_COMPACT) : NULL;
        json_decref(j);
        if (text == NULL || cache_take(c, text) != 0) {
            const char *why = text == NULL ? "out of memory"
                                           : "status document: no place for lease_expires_in";
            if (text != NULL)
                log_error("api", "%s", why); /* a jansson that formats differently */
            free(text);
            free(c->body);
            c->body = NULL; /* render again next time */
            http_reply_text(x, 500, why);
            return;
        }
        c->in = in;
    }
    /* seconds, to the millisecond (a JSON number) */
    char value[LEASE_TEXT_MAX];
    int n = snprintf(value, sizeof value, "%" PRIu64 ".%03u", lease_ms / 1000,
                     (unsigned)(lease_ms % 1000));
    memcpy(c->reply, c->body, c->value_at);
    memcpy(c->reply + c->value_at, value, (size_t)n);
    memcpy(c->reply + c->value_at + (size_t)n, c->body + c->value_at, c->len - c->value_at);
    http_reply(x, status, "application/json", c->reply, c->len + (size_t)n);
}

void api_status_cache_free(struct api_ctx *ctx)
{
    if (ctx->status_cache != NULL) {
        free(ctx->status_cache->body);
        free(ctx->status_cache->reply);
        free(ctx->status_cache);
        ctx->status_cache = NULL;
    }
}

static void h_patroni(struct http_exchange *x, const struct http_request *req, void *vctx)
{
    (void)req;
    api_reply_status(x, vctx, NULL, 200);
}

static const char *member_role(const struct fsm_state *st, const struct fsm_member *m,
                               bool standby_cluster, enum cfg_sync_mode sync_mode)
{
    if (strcmp(st->primary.member, m->name) == 0 &&
        (st->primary.state == FSM_PRIMARY_RUNNING || st->primary.state == FSM_PRIMARY_PROMOTING ||
         st->primary.state == FSM_PRIMARY_BOOTSTRAPPING || st->primary.state == FSM_PRIMARY_DEMOTING))
        return standby_cluster ? "standby_leader" : "leader";
    if (m->witness)
        return "witness";
    if (fsm_in_sync_set(st, m->name) && sync_mode != CFG_SYNC_OFF)
        return sync_mode == CFG_SYNC_QUORUM ? "quorum_standby" : "sync_standby";
    return "replica";
}

json_t *api_cluster_json(const struct api_ctx *ctx);
json_t *api_cluster_json(const struct api_ctx *ctx)
{
    const struct fsm_state *st = &ctx->fsm->st;
    uint64_t plsn = api_primary_lsn(ctx);
    uint64_t now = clock_now(&clock_monotonic);
    const struct cfg_dcs *dcs = ha_dcs(ctx->ha);
    json_t *members = json_array();
    for (unsigned i = 0; i < st->n_members; i++) {
        const struct fsm_member *m = &st->members[i];
        json_t *o = json_object();
        json_object_set_new(o, "name", json_string(m->name));
        const char *role = member_role(st, m, cfg_standby_enabled(dcs), dcs->synchronous_mode);
        bool leader = strcmp(role, "leader") == 0 || strcmp(role, "standby_leader") == 0;
        json_object_set_new(o, "role", json_string(role));
        const char *state = m->reported ? m->report.state : "unknown";
        /* A member whose reports stopped reaching this node is shown so. */
        if (m->reported && m->local_report_ms != 0 && now - m->local_report_ms > 2 * (uint64_t)dcs->ttl_ms)
            state = "unreachable";
        else if (m->reported && m->report.repl_state[0] != '\0' && !leader)
            state = m->report.repl_state;
        json_object_set_new(o, "state", json_string(state));
        json_object_set_new(o, "api_url", json_string(m->api_url));
        if (!m->witness) {
            json_object_set_new(o, "host", json_string(m->conn_host));
            json_object_set_new(o, "port", json_integer(m->conn_port));
        }
        if (m->reported && !m->witness) {
            json_object_set_new(o, "timeline", json_integer(m->report.timeline));
            json_object_set_new(o, "pending_restart", json_boolean(m->report.pending_restart));
            if (leader && !cfg_standby_enabled(dcs)) {
                json_object_set_new(o, "lsn", json_integer((json_int_t)m->report.lsn));
            } else {
                json_object_set_new(o, "receive_lsn", json_integer((json_int_t)m->report.receive_lsn));
                json_object_set_new(o, "replay_lsn", json_integer((json_int_t)m->report.replay_lsn));
                json_object_set_new(o, "receive_lag", json_integer((json_int_t)pg_lsn_diff(plsn, m->report.receive_lsn)));
                json_object_set_new(o, "replay_lag", json_integer((json_int_t)pg_lsn_diff(plsn, m->report.replay_lsn)));
                json_object_set_new(o, "lag", json_integer((json_int_t)pg_lsn_diff(plsn, m->report.replay_lsn)));
            }
            if (m->report.reason[0] != '\0')
                json_object_set_new(o, "error", json_string(m->report.reason));
        }
        json_object_set_new(o, "tags", json_deep_copy(m->tags));
        if (!leader) {
            /* the controller's verdict from its last fresh round when this
             * node runs it, else the same rules on the replicated reports */
            const char *why = ha_candidate_reason(ctx->ha, m->name);
            char buf[256] = "";
            if (why == NULL || why[0] == '\0') {
                ha_member_eligibility(ctx->ha, m->name, false, buf, sizeof buf);
                why = buf;
            }
            if (why[0] != '\0')
                json_object_set_new(o, "not_candidate_reason", json_string(why));
        }
        json_object_set_new(o, "raft_id", json_integer((json_int_t)m->raft_id));
        json_array_append_new(members, o);
    }
    json_t *j = json_object();
    json_object_set_new(j, "members", members);
    json_object_set_new(j, "scope", json_string(ctx->cfg->scope));
    if (st->sysid[0] != '\0')
        json_object_set_new(j, "system_identifier", json_string(st->sysid));
    if (st->pause)
        json_object_set_new(j, "pause", json_true());
    if (st->sw.pending) {
        json_t *sw = json_object();
        if (st->sw.scheduled_wall_ms != 0) {
            char ts[40];
            clock_format_iso(st->sw.scheduled_wall_ms, ts, sizeof ts);
            json_object_set_new(sw, "at", json_string(ts));
        }
        json_object_set_new(sw, "from", json_string(st->sw.from));
        if (st->sw.to[0] != '\0')
            json_object_set_new(sw, "to", json_string(st->sw.to));
        json_object_set_new(j, st->sw.failover ? "pending_failover" : "scheduled_switchover", sw);
    }
    json_t *pr = json_object();
    json_object_set_new(pr, "member", json_string(st->primary.member));
    json_object_set_new(pr, "epoch", json_integer((json_int_t)st->primary.epoch));
    json_object_set_new(pr, "state", json_string(fsm_primary_state_name(st->primary.state)));
    json_object_set_new(pr, "timeline", json_integer(st->primary.timeline));
    /* the position the holder's last renewal carried: what failover
     * candidates are measured against (maximum_lag_on_failover) */
    json_object_set_new(pr, "lsn", json_integer((json_int_t)st->primary.lsn));
    if (st->primary.reason[0] != '\0')
        json_object_set_new(pr, "reason", json_string(st->primary.reason));
    json_object_set_new(j, "primary", pr);
    const char *note = ha_controller_note(ctx->ha);
    if (note != NULL && note[0] != '\0')
        json_object_set_new(j, "controller_note", json_string(note));
    return j;
}

static void h_cluster(struct http_exchange *x, const struct http_request *req, void *vctx)
{
    (void)req;
    api_reply_json(x, 200, api_cluster_json(vctx));
}

static void h_history(struct http_exchange *x, const struct http_request *req, void *vctx)
{
    (void)req;
    const struct api_ctx *ctx = vctx;
    const struct fsm_state *st = &ctx->fsm->st;
    json_t *arr = json_array();
    for (unsigned i = 0; i < st->n_history; i++) {
        const struct fsm_history_entry *h = &st->history[i];
        char ts[40];
        clock_format_iso(h->wall_ms, ts, sizeof ts);
        json_array_append_new(arr, json_pack("[i, I, s, s, s]", (int)h->timeline, (json_int_t)h->lsn,
                                             h->reason, ts, h->new_leader));
    }
    api_reply_json(x, 200, arr);
}

static void h_config_get(struct http_exchange *x, const struct http_request *req, void *vctx)
{
    (void)req;
    const struct api_ctx *ctx = vctx;
    const struct fsm_state *st = &ctx->fsm->st;
    if (st->config == NULL) {
        api_reply_error(x, 502, "the cluster has no dynamic configuration yet");
        return;
    }
    json_t *c = json_deep_copy(st->config);
    if (st->pause)
        json_object_set_new(c, "pause", json_true());
    api_reply_json(x, 200, c);
}

static const struct http_route routes[] = {
    {"/patroni", HTTP_M_GET, false, h_patroni},
    {"/cluster", HTTP_M_GET, false, h_cluster},
    {"/history", HTTP_M_GET, false, h_history},
    {"/config", HTTP_M_GET, false, h_config_get},
};

int api_register_status(struct http_server *s, struct api_ctx *ctx)
{
    return http_server_add_routes(s, routes, sizeof routes / sizeof routes[0], ctx);
}
