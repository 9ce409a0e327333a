/* Cluster-internal and Raft routes:
 *   GET  /raft                 this node's Raft view (id, term, leader, indexes, configuration)
 *   POST /raft/apply           apply a command forwarded by a follower (leader only)
 *   POST /raft/members         add a node {"name","raft_addr"} (leader only)
 *   DELETE /raft/members/NAME  remove a node (leader only; refused if it would lose quorum)
 *   GET  /pgwarden/status      fresh local status for the controller (?fresh=1 runs a query)
 * Write routes need the REST credentials when restapi.authentication is set. */
#include "api/api_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"

static void h_raft(struct http_exchange *x, const struct http_request *req, void *vctx)
{
    (void)req;
    const struct api_ctx *ctx = vctx;
    struct cluster_info ci;
    cluster_get_info(ctx->cluster, &ci);
    const struct fsm_state *st = &ctx->fsm->st;
    json_t *j = json_object();
    json_object_set_new(j, "id", json_integer((json_int_t)ci.id));
    json_object_set_new(j, "name", json_string(ctx->cfg->name));
    json_object_set_new(j, "state", json_string(cluster_role_name(ci.role)));
    json_object_set_new(j, "term", json_integer((json_int_t)ci.term));
    json_t *leader = json_object();
    json_object_set_new(leader, "id", json_integer((json_int_t)ci.leader_id));
    json_object_set_new(leader, "address", json_string(ci.leader_addr));
    const struct fsm_member *lm = ci.leader_id ? fsm_member_by_raft_id(st, ci.leader_id) : NULL;
    json_object_set_new(leader, "name", lm != NULL ? json_string(lm->name) : json_null());
    json_object_set_new(j, "leader", leader);
    json_object_set_new(j, "commit_index", json_integer((json_int_t)ci.commit_index));
    json_object_set_new(j, "applied_index", json_integer((json_int_t)ci.last_applied));
    json_object_set_new(j, "last_index", json_integer((json_int_t)ci.last_index));
    json_object_set_new(j, "last_snapshot_index", json_integer((json_int_t)ci.snapshot_index));
    json_object_set_new(j, "election_timeout_ms", json_integer(ci.election_timeout_ms));
    json_object_set_new(j, "heartbeat_ms", json_integer(ci.heartbeat_ms));
    json_t *conf = json_array();
    for (unsigned i = 0; i < ci.n_servers; i++) {
        const struct cluster_server *s = &ci.servers[i];
        const struct fsm_member *m = fsm_member_by_raft_id(st, s->id);
        const char *role = s->role == RAFT_VOTER ? "voter" : s->role == RAFT_STANDBY ? "standby" : "spare";
        json_array_append_new(conf, json_pack("{s:I, s:s, s:s, s:o}", "id", (json_int_t)s->id,
                                              "address", s->addr, "role", role, "name",
                                              m != NULL ? json_string(m->name) : json_null()));
    }
    json_object_set_new(j, "configuration", conf);
    api_reply_json(x, 200, j);
}

struct pending {
    struct http_exchange *x;
};

static void apply_done(void *vp, int status, const struct fsm_result *res, const char *msg)
{
    struct pending *p = vp;
    json_t *j = json_pack("{s:i, s:I, s:s}", "status", status, "index",
                          (json_int_t)(res != NULL ? res->index : 0), "message", msg != NULL ? msg : "");
    api_reply_json(p->x, status == PGW_ENOTLEADER ? 503 : 200, j);
    free(p);
}

static void h_apply(struct http_exchange *x, const struct http_request *req, void *vctx)
{
    struct api_ctx *ctx = vctx;
    if (!api_member_without_secret(ctx, req) && !api_check_auth(x, req, ctx))
        return;
    struct pending *p = malloc(sizeof *p);
    if (p == NULL) {
        api_reply_error(x, 500, "out of memory");
        return;
    }
    p->x = x;
    int rc = cluster_apply_raw(ctx->cluster, req->body, req->body_len, apply_done, p);
    if (rc != 0) {
        free(p);
        /* Not applied: the submitter retries on a not-leader answer, and
         * gives up on anything else (a malformed command stays malformed). */
        api_reply_json(x, rc == PGW_ENOTLEADER ? 503 : 400,
                       json_pack("{s:i, s:I, s:s}", "status", rc, "index", (json_int_t)0, "message",
                                 rc == PGW_ENOTLEADER ? "not the Raft leader" : pgw_strerror(rc)));
    }
}

static void change_done(void *vp, int status, uint64_t id, const char *msg)
{
    struct pending *p = vp;
    if (status == 0)
        api_reply_json(p->x, 200, json_pack("{s:I}", "id", (json_int_t)id));
    else
        api_reply_json(p->x, status == PGW_ENOTLEADER ? 503 : 409,
                       json_pack("{s:i, s:s}", "status", status, "error", msg != NULL ? msg : ""));
    free(p);
}

static int change_status_http(int rc)
{
    switch (rc) {
    case PGW_ENOTLEADER: return 503;
    case PGW_EINVAL: return 400;
    case PGW_ENOTFOUND: return 404;
    case PGW_EUNAVAIL: return 412;
    default: return 409;
    }
}

static void h_member_add(struct http_exchange *x, const struct http_request *req, void *vctx)
{
    struct api_ctx *ctx = vctx;
    if (!api_check_auth(x, req, ctx))
        return;
    json_t *j = api_body_object(x, req);
    if (j == NULL)
        return;
    const char *name = json_string_value(json_object_get(j, "name"));
    const char *addr = json_string_value(json_object_get(j, "raft_addr"));
    if (name == NULL || !fsm_name_valid(name) || addr == NULL) {
        json_decref(j);
        api_reply_error(x, 400, "expected {\"name\": member name, \"raft_addr\": \"a.b.c.d:port\"}");
        return;
    }
    const struct fsm_member *m = fsm_member_find(&ctx->fsm->st, name);
    if (m != NULL && strcmp(m->raft_addr, addr) != 0) {
        json_decref(j);
        api_reply_error(x, 409, "member %s already exists at raft address %s", name, m->raft_addr);
        return;
    }
    struct pending *p = malloc(sizeof *p);
    if (p == NULL) {
        json_decref(j);
        api_reply_error(x, 500, "out of memory");
        return;
    }
    p->x = x;
    log_info("api", "adding %s at %s to the Raft configuration", name, addr);
    int rc = cluster_member_add(ctx->cluster, addr, change_done, p);
    if (rc != 0) {
        free(p);
        api_reply_error(x, change_status_http(rc), "cannot add %s: %s", addr, pgw_strerror(rc));
    }
    json_decref(j); /* addr points into it */
}

struct removal {
    struct http_exchange *x;
    struct api_ctx *ctx;
    char name[FSM_NAME_MAX];
    bool by_id; /* a Raft server with no member record */
};

static void fsm_remove_done(void *vp, int status, const struct fsm_result *res, const char *msg)
{
    struct removal *r = vp;
    (void)res;
    if (status == 0 || status == PGW_ENOTFOUND)
        api_reply_json(r->x, 200, json_pack("{s:s}", "removed", r->name));
    else
        api_reply_error(r->x, 503, "removed from Raft, but not from the member list: %s", msg);
    free(r);
}

static void raft_remove_done(void *vp, int status, uint64_t id, const char *msg)
{
    struct removal *r = vp;
    (void)id;
    if (status != 0) {
        api_reply_error(r->x, change_status_http(status), "cannot remove %s: %s", r->name, msg);
        free(r);
        return;
    }
    if (r->by_id) {
        api_reply_json(r->x, 200, json_pack("{s:s}", "removed", r->name));
        free(r);
        return;
    }
    struct fsm_cmd c;
    fsm_cmd_init(&c, FSM_OP_MEMBER_REMOVE, NULL);
    snprintf(c.member, sizeof c.member, "%s", r->name);
    if (submit_cmd_applied(r->ctx->sub, &c, 5000, fsm_remove_done, r) != 0) {
        api_reply_error(r->x, 503, "removed from Raft, but not from the member list");
        free(r);
    }
}

static void h_member_remove(struct http_exchange *x, const struct http_request *req, void *vctx)
{
    struct api_ctx *ctx = vctx;
    if (!api_check_auth(x, req, ctx))
        return;
    const char *name = req->path + strlen("/raft/members/");
    const struct fsm_member *m = fsm_member_find(&ctx->fsm->st, name);
    if (m == NULL) {
        /* A server added but never started has no member record: it can be
         * removed by its Raft id (GET /raft lists it). */
        char *end;
        unsigned long long id = strtoull(name, &end, 10);
        if (*name != '\0' && *end == '\0' && id > 0) {
            struct removal *r = calloc(1, sizeof *r);
            if (r == NULL) {
                api_reply_error(x, 500, "out of memory");
                return;
            }
            r->x = x;
            r->ctx = ctx;
            r->by_id = true;
            snprintf(r->name, sizeof r->name, "%s", name);
            int rc = cluster_member_remove(ctx->cluster, id, raft_remove_done, r);
            if (rc != 0) {
                free(r);
                api_reply_error(x, change_status_http(rc), "cannot remove server %s: %s", name,
                                pgw_strerror(rc));
            }
            return;
        }
        api_reply_error(x, 404, "no member named %s (a server that never registered can be removed "
                        "by its Raft id)", name);
        return;
    }
    const struct fsm_state *st = &ctx->fsm->st;
    if (strcmp(st->primary.member, name) == 0 && st->primary.state != FSM_PRIMARY_NONE &&
        st->primary.state != FSM_PRIMARY_STOPPED) {
        api_reply_error(x, 412, "%s holds the primary role: switch over first", name);
        return;
    }
    struct removal *r = calloc(1, sizeof *r);
    if (r == NULL) {
        api_reply_error(x, 500, "out of memory");
        return;
    }
    r->x = x;
    r->ctx = ctx;
    snprintf(r->name, sizeof r->name, "%s", name);
    log_info("api", "removing %s (raft id %" PRIu64 ") from the cluster", name, m->raft_id);
    int rc = cluster_member_remove(ctx->cluster, m->raft_id, raft_remove_done, r);
    if (rc == PGW_ENOTFOUND) {
        /* already out of the Raft configuration: only the member record is left */
        raft_remove_done(r, 0, m->raft_id, "");
        return;
    }
    if (rc != 0) {
        free(r);
        api_reply_error(x, change_status_http(rc), "cannot remove %s: %s%s", name, pgw_strerror(rc),
                        rc == PGW_EUNAVAIL ? " (the remaining voters could not form a quorum)"
                        : rc == PGW_EREFUSED ? " (it is the Raft leader: transfer leadership first)" : "");
    }
}

static void status_done(void *vp, json_t *status)
{
    struct pending *p = vp;
    if (status == NULL)
        api_reply_error(p->x, 503, "shutting down");
    else
        api_reply_json(p->x, 200, status);
    free(p);
}

static void h_local_status(struct http_exchange *x, const struct http_request *req, void *vctx)
{
    struct api_ctx *ctx = vctx;
    char buf[8];
    bool fresh = http_query_param(req, "fresh", buf, sizeof buf) != NULL;
    struct pending *p = malloc(sizeof *p);
    if (p == NULL) {
        api_reply_error(x, 500, "out of memory");
        return;
    }
    p->x = x;
    ha_local_status(ctx->ha, fresh, status_done, p);
}

static const struct http_route routes[] = {
    {"/raft", HTTP_M_GET, false, h_raft},
    {"/raft/apply", HTTP_M_POST, false, h_apply},
    {"/raft/members", HTTP_M_POST, false, h_member_add},
    {"/raft/members/", HTTP_M_DELETE, true, h_member_remove},
    {"/pgwarden/status", HTTP_M_GET, false, h_local_status},
};

int api_register_raft(struct http_server *s, struct api_ctx *ctx)
{
    return http_server_add_routes(s, routes, sizeof routes / sizeof routes[0], ctx);
}
