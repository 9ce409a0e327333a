/* Node operations (write methods: REST credentials required when set):
 *   POST   /restart {restart_pending?, role?, timeout?, schedule?}
 *   DELETE /restart
 *   POST   /reload
 *   POST   /reinitialize {force?, from_leader?}
 *   POST   /backup {type?: full|diff|incr}   (on the primary)
 *   GET    /backup   what runs, the last result, the repository (any node)
 * Status codes as Patroni documents them. */
#include "api/api_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/log.h"

struct pending_op {
    struct http_exchange *x;
    const char *what;
};

static void op_done(void *vp, int status, const char *msg)
{
    struct pending_op *p = vp;
    if (status == 0)
        api_reply_json(p->x, strcmp(msg, "scheduled") == 0 ? 202 : 200,
                       json_pack("{s:s}", "message", strcmp(msg, "scheduled") == 0
                                     ? "restart scheduled" : msg));
    else
        api_reply_error(p->x, 503, "%s: %s", p->what, msg);
    free(p);
}

static void h_restart(struct http_exchange *x, const struct http_request *req, void *vctx)
{
    struct api_ctx *ctx = vctx;
    if (!api_check_auth(x, req, ctx))
        return;
    json_t *j = NULL;
    if (req->body_len > 0 && (j = api_body_object(x, req)) == NULL)
        return;
    struct ha_restart_req r = {0};
    const char *k;
    json_t *v;
    json_object_foreach(j, k, v) {
        if (strcmp(k, "restart_pending") == 0 && json_is_boolean(v)) {
            r.only_pending = json_is_true(v);
        } else if (strcmp(k, "role") == 0 && json_is_string(v) &&
                   (strcmp(json_string_value(v), "primary") == 0 ||
                    strcmp(json_string_value(v), "master") == 0 ||
                    strcmp(json_string_value(v), "replica") == 0 ||
                    strcmp(json_string_value(v), "any") == 0)) {
            r.role = json_string_value(v);
        } else if (strcmp(k, "timeout") == 0 && json_is_number(v) && json_number_value(v) > 0 &&
                   json_number_value(v) < 86400) {
            r.timeout_ms = (uint32_t)(json_number_value(v) * 1000);
        } else if (strcmp(k, "schedule") == 0 && json_is_string(v)) {
            if (!api_parse_iso8601(json_string_value(v), &r.scheduled_wall_ms)) {
                api_reply_error(x, 400, "schedule: expected an ISO 8601 time with a time zone");
                json_decref(j);
                return;
            }
            if (r.scheduled_wall_ms <= clock_wall_ms()) {
                api_reply_error(x, 422, "schedule is in the past");
                json_decref(j);
                return;
            }
            if (ctx->fsm->st.pause) {
                api_reply_error(x, 500, "cannot schedule a restart in maintenance mode");
                json_decref(j);
                return;
            }
        } else if (strcmp(k, "postgres_version") == 0 && json_is_string(v)) {
            /* accepted for compatibility: every restart uses the binaries in bin_dir */
        } else {
            api_reply_error(x, 400, "restart: bad or unknown key \"%s\"", k);
            json_decref(j);
            return;
        }
    }
    struct pending_op *p = malloc(sizeof *p);
    if (p == NULL) {
        json_decref(j);
        api_reply_error(x, 500, "out of memory");
        return;
    }
    p->x = x;
    p->what = "restart";
    char why[256];
    int rc = ha_request_restart(ctx->ha, &r, op_done, p, why, sizeof why);
    json_decref(j);
    if (rc != 0) {
        free(p);
        api_reply_error(x, rc == PGW_EBUSY ? 409 : 503, "%s", why);
    }
}

static void h_restart_delete(struct http_exchange *x, const struct http_request *req, void *vctx)
{
    struct api_ctx *ctx = vctx;
    if (!api_check_auth(x, req, ctx))
        return;
    if (ha_cancel_restart(ctx->ha) != 0)
        api_reply_error(x, 404, "no restart is scheduled");
    else
        api_reply_json(x, 200, json_pack("{s:s}", "message", "scheduled restart deleted"));
}

static void h_reload(struct http_exchange *x, const struct http_request *req, void *vctx)
{
    struct api_ctx *ctx = vctx;
    if (!api_check_auth(x, req, ctx))
        return;
    if (ctx->reload == NULL) {
        api_reply_error(x, 501, "reload is not available on this node");
        return;
    }
    char err[1024];
    if (ctx->reload(ctx->reload_ctx, err, sizeof err) != 0) {
        api_reply_error(x, 500, "reload failed, the running configuration is kept: %s", err);
        return;
    }
    api_reply_json(x, 202, json_pack("{s:s}", "message", "reload scheduled"));
}

static void h_reinit(struct http_exchange *x, const struct http_request *req, void *vctx)
{
    struct api_ctx *ctx = vctx;
    if (!api_check_auth(x, req, ctx))
        return;
    json_t *j = NULL;
    if (req->body_len > 0 && (j = api_body_object(x, req)) == NULL)
        return;
    const json_t *force = json_object_get(j, "force");
    if (force != NULL && !json_is_boolean(force)) {
        api_reply_error(x, 400, "force: expected true or false");
        json_decref(j);
        return;
    }
    struct pending_op *p = malloc(sizeof *p);
    if (p == NULL) {
        json_decref(j);
        api_reply_error(x, 500, "out of memory");
        return;
    }
    p->x = x;
    p->what = "reinitialize";
    char why[256];
    /* from_leader: clones always come from the primary (or a clonefrom member) */
    int rc = ha_request_reinit(ctx->ha, json_is_true(force), op_done, p, why, sizeof why);
    json_decref(j);
    if (rc != 0) {
        free(p);
        api_reply_error(x, 503, "%s", why);
    }
}

static void h_backup_get(struct http_exchange *x, const struct http_request *req, void *vctx)
{
    struct api_ctx *ctx = vctx;
    (void)req;
    json_t *j = ha_backup_status(ctx->ha);
    if (j == NULL)
        api_reply_error(x, 404, "backups are off on this node (no backup section)");
    else
        api_reply_json(x, 200, j);
}

static void h_backup_post(struct http_exchange *x, const struct http_request *req, void *vctx)
{
    struct api_ctx *ctx = vctx;
    if (!api_check_auth(x, req, ctx))
        return;
    json_t *j = NULL;
    if (req->body_len > 0 && (j = api_body_object(x, req)) == NULL)
        return;
    const char *type = NULL;
    const char *k;
    json_t *v;
    json_object_foreach(j, k, v) {
        if (strcmp(k, "type") == 0 && json_is_string(v)) {
            type = json_string_value(v);
        } else {
            api_reply_error(x, 400, "backup: bad or unknown key \"%s\" (only type: full, diff "
                            "or incr)", k);
            json_decref(j);
            return;
        }
    }
    char why[256];
    int rc = ha_backup_request(ctx->ha, type, why, sizeof why);
    if (rc == PGW_OK)
        api_reply_json(x, 202, json_pack("{s:s,s:s}", "message", "backup started", "type",
                                         type ? type : "full"));
    else
        api_reply_error(x, rc == PGW_EBUSY ? 409 : rc == PGW_ENOTFOUND ? 404
                           : type != NULL && strstr(why, "type:") == why ? 400 : 503,
                        "%s", why);
    json_decref(j);
}

static const struct http_route routes[] = {
    {"/backup", HTTP_M_GET, false, h_backup_get},
    {"/backup", HTTP_M_POST, false, h_backup_post},
    {"/restart", HTTP_M_POST, false, h_restart},
    {"/restart", HTTP_M_DELETE, false, h_restart_delete},
    {"/reload", HTTP_M_POST, false, h_reload},
    {"/reinitialize", HTTP_M_POST, false, h_reinit},
};

int api_register_ops(struct http_server *s, struct api_ctx *ctx)
{
    return http_server_add_routes(s, routes, sizeof routes / sizeof routes[0], ctx);
}
