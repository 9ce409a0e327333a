/* Actions that change the cluster, accepted on any node and carried out
 * through the Raft leader (write methods need the REST credentials when
 * restapi.authentication is set):
 *   POST   /switchover {leader, candidate?, scheduled_at?}
 *   DELETE /switchover
 *   POST   /failover   {candidate, allow_data_loss?}
 *   PATCH  /config     JSON merge patch (null deletes); {"pause": true|null}
 *   PUT    /config     full replacement
 * A switchover or failover reply waits for the outcome (at most
 * ACTION_WAIT_MS) and says what happened, or exactly what is still in
 * progress; it never answers "status unknown". */
#include "api/api_internal.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/clock.h"
#include "common/log.h"

#define ACTION_WAIT_MS 60000

/* --- ISO-8601 with a time zone: 2026-11-26T10:00:00+01:00 / ...Z ------------- */

bool api_parse_iso8601(const char *s, uint64_t *wall_ms)
{
    int Y, M, D, h, m, sec = 0, n = 0;
    if (sscanf(s, "%4d-%2d-%2d%*1[T ]%2d:%2d%n", &Y, &M, &D, &h, &m, &n) != 5)
        return false;
    const char *p = s + n;
    int ms = 0;
    if (*p == ':') {
        if (!isdigit((unsigned char)p[1]) || !isdigit((unsigned char)p[2]))
            return false;
        sec = (p[1] - '0') * 10 + (p[2] - '0');
        p += 3;
        if (*p == '.') {
            p++;
            int digits = 0;
            while (isdigit((unsigned char)*p)) {
                if (digits < 3)
                    ms = ms * 10 + (*p - '0');
                digits++;
                p++;
            }
            for (; digits < 3 && digits > 0; digits++)
                ms *= 10;
        }
    }
    long off = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        long sign = *p == '-' ? -1 : 1;
        int oh, om;
        if (sscanf(p + 1, "%2d:%2d", &oh, &om) == 2 && p[3] == ':')
            p += 6;
        else if (sscanf(p + 1, "%2d%2d", &oh, &om) == 2)
            p += 5;
        else
            return false;
        off = sign * (oh * 3600L + om * 60L);
    } else {
        return false; /* a time zone is required */
    }
    if (*p != '\0' || M < 1 || M > 12 || D < 1 || D > 31 || h > 23 || m > 59 || sec > 60)
        return false;
    struct tm tm = {.tm_year = Y - 1900, .tm_mon = M - 1, .tm_mday = D, .tm_hour = h,
                    .tm_min = m, .tm_sec = sec};
    time_t t = timegm(&tm);
    if (t == (time_t)-1)
        return false;
    *wall_ms = (uint64_t)(t - off) * 1000u + (uint64_t)ms;
    return true;
}

/* --- waiting for the outcome ------------------------------------------------------ */

struct action_wait {
    struct http_exchange *x;
    struct api_ctx *ctx;
    uv_timer_t timer;
    uint64_t start_epoch;
    char from[FSM_NAME_MAX];
    char to[FSM_NAME_MAX];
    bool failover;
    bool submitted;
    bool answered;
    uint64_t started_ms;
};

static void wait_closed(uv_handle_t *h)
{
    free(h->data);
}

static void finish(struct action_wait *w, int status, json_t *body)
{
    if (w->answered)
        return;
    w->answered = true;
    api_reply_json(w->x, status, body);
    uv_timer_stop(&w->timer);
    uv_close((uv_handle_t *)&w->timer, wait_closed);
}

static void wait_tick(uv_timer_t *t)
{
    struct action_wait *w = t->data;
    const struct fsm_state *st = &w->ctx->fsm->st;
    const struct fsm_primary *p = &st->primary;
    const char *what = w->failover ? "failover" : "switchover";
    if (!w->submitted)
        return;
    if (p->epoch > w->start_epoch && p->state == FSM_PRIMARY_RUNNING) {
        char msg[256];
        if (w->to[0] != '\0' && strcmp(w->to, p->member) != 0)
            snprintf(msg, sizeof msg, "Successfully %s to %s instead of %s",
                     w->failover ? "failed over" : "switched over", p->member, w->to);
        else if (strcmp(p->member, w->from) == 0 && w->from[0] != '\0')
            snprintf(msg, sizeof msg, "%s aborted: %s is the primary again (%s)", what, p->member,
                     p->reason);
        else
            snprintf(msg, sizeof msg, "Successfully %s to %s",
                     w->failover ? "failed over" : "switched over", p->member);
        bool ok = strcmp(p->member, w->from) != 0 || w->from[0] == '\0';
        finish(w, ok ? 200 : 503, json_pack("{s:s, s:s, s:I}", "message", msg, "primary", p->member,
                                             "epoch", (json_int_t)p->epoch));
        return;
    }
    if (p->epoch == w->start_epoch && !st->sw.pending &&
        (p->state == FSM_PRIMARY_RUNNING || p->state == FSM_PRIMARY_NONE || w->failover)) {
        /* The controller dropped the request. Its note is only on the Raft
         * leader; the candidate's eligibility can be judged anywhere. */
        char why[512] = "";
        const char *note = ha_controller_note(w->ctx->ha);
        if (w->to[0] != '\0') {
            char elig[256];
            ha_member_eligibility(w->ctx->ha, w->to, true, elig, sizeof elig);
            /* judged from its last report, up to a loop_wait old; the
             * controller's own reason (fresh statuses) when this node has it */
            if (elig[0] != '\0')
                snprintf(why, sizeof why, "%s is not eligible: %s (its last report)%s%s", w->to,
                         elig, note != NULL && note[0] ? "; controller: " : "",
                         note != NULL ? note : "");
        }
        if (why[0] == '\0')
            snprintf(why, sizeof why, "%s", note != NULL && note[0] ? note
                     : "the controller dropped the request: no eligible candidate");
        finish(w, 412, json_pack("{s:s}", "error", why));
        return;
    }
    uint64_t now = clock_now(&clock_monotonic);
    if (now - w->started_ms > ACTION_WAIT_MS) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s still in progress after %d s: primary record is %s "
                 "(member %s, epoch %" PRIu64 ")%s%s", what, ACTION_WAIT_MS / 1000,
                 fsm_primary_state_name(p->state), p->member[0] ? p->member : "none", p->epoch,
                 ha_controller_note(w->ctx->ha)[0] ? "; controller: " : "",
                 ha_controller_note(w->ctx->ha));
        finish(w, 503, json_pack("{s:s, s:b}", "error", msg, "in_progress", 1));
    }
}

static void wait_abort(void *vp)
{
    struct action_wait *w = vp;
    finish(w, 503, json_pack("{s:s}", "error", "client went away"));
}

static void action_submitted(void *vp, int status, const struct fsm_result *res, const char *msg)
{
    struct action_wait *w = vp;
    (void)res;
    if (w->answered)
        return;
    if (status != 0) {
        int code = status == PGW_EBUSY ? 409 : status == PGW_EREFUSED || status == PGW_ENOTFOUND ? 412 : 503;
        finish(w, code, json_pack("{s:s}", "error", msg));
        return;
    }
    w->submitted = true;
}

static void start_action(struct http_exchange *x, struct api_ctx *ctx, struct fsm_cmd *c)
{
    struct action_wait *w = calloc(1, sizeof *w);
    if (w == NULL) {
        fsm_cmd_free(c);
        api_reply_error(x, 500, "out of memory");
        return;
    }
    w->x = x;
    w->ctx = ctx;
    w->start_epoch = ctx->fsm->st.primary.epoch;
    w->failover = c->u.sw.failover;
    snprintf(w->from, sizeof w->from, "%s", c->u.sw.from);
    snprintf(w->to, sizeof w->to, "%s", c->u.sw.to);
    w->started_ms = clock_now(&clock_monotonic);
    uv_timer_init(ctx->loop, &w->timer);
    w->timer.data = w;
    http_exchange_on_abort(x, wait_abort, w);
    uv_timer_start(&w->timer, wait_tick, 100, 100);
    if (submit_cmd_applied(ctx->sub, c, 5000, action_submitted, w) != 0)
        finish(w, 503, json_pack("{s:s}", "error", "cannot submit the request"));
    fsm_cmd_free(c);
}

static void sched_done(void *vp, int status, const struct fsm_result *res, const char *msg)
{
    struct action_wait *w = vp;
    (void)res;
    if (status == 0)
        finish(w, 202, json_pack("{s:s}", "message", "Switchover scheduled"));
    else
        finish(w, status == PGW_EBUSY ? 409 : 412, json_pack("{s:s}", "error", msg));
}

static bool check_candidate(struct http_exchange *x, const struct api_ctx *ctx, const char *name)
{
    const struct fsm_member *m = fsm_member_find(&ctx->fsm->st, name);
    if (m == NULL) {
        api_reply_error(x, 412, "candidate %s is not a member of the cluster", name);
        return false;
    }
    if (m->witness) {
        api_reply_error(x, 412, "candidate %s is a witness (no PostgreSQL)", name);
        return false;
    }
    if (fsm_member_nofailover(m)) {
        api_reply_error(x, 412, "candidate %s is tagged nofailover (or failover_priority <= 0)", name);
        return false;
    }
    return true;
}

static void h_switchover(struct http_exchange *x, const struct http_request *req, void *vctx)
{
    struct api_ctx *ctx = vctx;
    if (!api_check_auth(x, req, ctx))
        return;
    json_t *j = api_body_object(x, req);
    if (j == NULL)
        return;
    const struct fsm_state *st = &ctx->fsm->st;
    const char *leader = json_string_value(json_object_get(j, "leader"));
    if (leader == NULL)
        leader = json_string_value(json_object_get(j, "primary"));
    const char *cand = json_string_value(json_object_get(j, "candidate"));
    const json_t *sched = json_object_get(j, "scheduled_at");
    struct fsm_cmd c;
    fsm_cmd_init(&c, FSM_OP_SWITCHOVER_SET, NULL);
    if (leader == NULL || leader[0] == '\0') {
        api_reply_error(x, 400, "switchover: \"leader\" (the current primary) is required");
        goto out;
    }
    if (cand != NULL && strcmp(cand, leader) == 0) {
        api_reply_error(x, 400, "switchover: leader and candidate are both %s", leader);
        goto out;
    }
    if (strcmp(st->primary.member, leader) != 0 || st->primary.state != FSM_PRIMARY_RUNNING) {
        api_reply_error(x, 412, "switchover: %s is not the running primary (the primary is %s, %s)",
                        leader, st->primary.member[0] ? st->primary.member : "nobody",
                        fsm_primary_state_name(st->primary.state));
        goto out;
    }
    if (cand == NULL && st->pause) {
        api_reply_error(x, 400, "switchover without a candidate is not possible in maintenance mode");
        goto out;
    }
    if (cand != NULL && !check_candidate(x, ctx, cand))
        goto out;
    snprintf(c.u.sw.from, sizeof c.u.sw.from, "%s", leader);
    if (cand != NULL)
        snprintf(c.u.sw.to, sizeof c.u.sw.to, "%s", cand);
    c.u.sw.requested_wall_ms = clock_wall_ms();
    if (sched != NULL && !json_is_null(sched)) {
        uint64_t at;
        if (!json_is_string(sched) || !api_parse_iso8601(json_string_value(sched), &at)) {
            api_reply_error(x, 400, "scheduled_at: expected an ISO 8601 time with a time zone, "
                            "e.g. 2026-11-26T10:00:00+00:00");
            goto out;
        }
        if (at <= clock_wall_ms()) {
            api_reply_error(x, 422, "scheduled_at is in the past");
            goto out;
        }
        if (st->pause) {
            api_reply_error(x, 400, "cannot schedule a switchover in maintenance mode");
            goto out;
        }
        c.u.sw.scheduled_wall_ms = at;
        log_info("api", "switchover from %s to %s scheduled at %s", leader, cand ? cand : "best candidate",
                 json_string_value(sched));
        /* Answer 202 once the request is committed. */
        struct action_wait *w = calloc(1, sizeof *w);
        if (w == NULL) {
            api_reply_error(x, 500, "out of memory");
            goto out;
        }
        w->x = x;
        w->ctx = ctx;
        uv_timer_init(ctx->loop, &w->timer);
        w->timer.data = w;
        http_exchange_on_abort(x, wait_abort, w);
        if (submit_cmd_applied(ctx->sub, &c, 5000, sched_done, w) != 0)
            finish(w, 503, json_pack("{s:s}", "error", "cannot submit the request"));
        goto out;
    }
    log_info("api", "switchover requested from %s to %s", leader, cand ? cand : "the best candidate");
    start_action(x, ctx, &c);
    json_decref(j);
    return;
out:
    fsm_cmd_free(&c);
    json_decref(j);
}

static void h_failover(struct http_exchange *x, const struct http_request *req, void *vctx)
{
    struct api_ctx *ctx = vctx;
    if (!api_check_auth(x, req, ctx))
        return;
    json_t *j = api_body_object(x, req);
    if (j == NULL)
        return;
    const char *cand = json_string_value(json_object_get(j, "candidate"));
    const json_t *adl = json_object_get(j, "allow_data_loss");
    if (cand == NULL || cand[0] == '\0') {
        api_reply_error(x, 400, "failover: \"candidate\" is required");
        json_decref(j);
        return;
    }
    if (adl != NULL && !json_is_boolean(adl)) {
        api_reply_error(x, 400, "allow_data_loss: expected true or false");
        json_decref(j);
        return;
    }
    if (json_object_get(j, "scheduled_at") != NULL) {
        api_reply_error(x, 400, "failover cannot be scheduled; use a switchover");
        json_decref(j);
        return;
    }
    if (!check_candidate(x, ctx, cand)) {
        json_decref(j);
        return;
    }
    const struct fsm_state *st = &ctx->fsm->st;
    if (strcmp(st->primary.member, cand) == 0 && st->primary.state == FSM_PRIMARY_RUNNING) {
        api_reply_error(x, 412, "failover: %s is already the primary", cand);
        json_decref(j);
        return;
    }
    struct fsm_cmd c;
    fsm_cmd_init(&c, FSM_OP_SWITCHOVER_SET, NULL);
    c.u.sw.failover = true;
    snprintf(c.u.sw.to, sizeof c.u.sw.to, "%s", cand);
    if (st->primary.state == FSM_PRIMARY_RUNNING)
        snprintf(c.u.sw.from, sizeof c.u.sw.from, "%s", st->primary.member);
    c.u.sw.allow_data_loss = json_is_true(adl);
    c.u.sw.requested_wall_ms = clock_wall_ms();
    if (c.u.sw.allow_data_loss)
        log_warn("api", "MANUAL FAILOVER to %s requested ACCEPTING DATA LOSS (from %s)", cand,
                 req->client_ip);
    else
        log_info("api", "manual failover to %s requested", cand);
    json_decref(j);
    start_action(x, ctx, &c);
}

static void cleared(void *vp, int status, const struct fsm_result *res, const char *msg)
{
    struct http_exchange *x = vp;
    (void)res;
    if (status == 0)
        api_reply_json(x, 200, json_pack("{s:s}", "message", "scheduled switchover deleted"));
    else
        api_reply_error(x, 503, "%s", msg);
}

static void h_switchover_delete(struct http_exchange *x, const struct http_request *req, void *vctx)
{
    struct api_ctx *ctx = vctx;
    if (!api_check_auth(x, req, ctx))
        return;
    if (!ctx->fsm->st.sw.pending) {
        api_reply_error(x, 404, "no switchover is scheduled");
        return;
    }
    struct fsm_cmd c;
    fsm_cmd_init(&c, FSM_OP_SWITCHOVER_CLEAR, NULL);
    if (submit_cmd_applied(ctx->sub, &c, 5000, cleared, x) != 0)
        api_reply_error(x, 503, "cannot submit the request");
}

/* --- configuration -------------------------------------------------------------- */

struct config_req {
    struct http_exchange *x;
    struct api_ctx *ctx;
    json_t *result;       /* the new configuration, for the reply */
    int pause_change;     /* -1 none, 0 resume, 1 pause */
    bool config_change;
    unsigned pending;
    int status;
    char msg[FSM_TEXT_MAX];
};

static void config_step_done(void *vp, int status, const struct fsm_result *res, const char *msg)
{
    struct config_req *r = vp;
    (void)res;
    if (status != 0 && r->status == 0) {
        r->status = status;
        snprintf(r->msg, sizeof r->msg, "%s", msg);
    }
    if (--r->pending > 0)
        return;
    if (r->status == 0)
        api_reply_json(r->x, 200, r->result);
    else {
        json_decref(r->result);
        api_reply_error(r->x, r->status == PGW_ECONFLICT ? 409 : r->status == PGW_EINVAL ? 400 : 503,
                        "%s", r->msg);
    }
    free(r);
}

/* RFC 7386 merge patch. */
static void merge_patch(json_t *target, const json_t *patch)
{
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)patch, k, v) {
        if (json_is_null(v)) {
            json_object_del(target, k);
        } else if (json_is_object(v)) {
            json_t *t = json_object_get(target, k);
            if (!json_is_object(t)) {
                t = json_object();
                json_object_set_new(target, k, t);
            }
            merge_patch(t, v);
        } else {
            json_object_set(target, k, v);
        }
    }
}

static void config_write(struct http_exchange *x, const struct http_request *req, struct api_ctx *ctx,
                         bool replace)
{
    if (!api_check_auth(x, req, ctx))
        return;
    json_t *patch = api_body_object(x, req);
    if (patch == NULL)
        return;
    const struct fsm_state *st = &ctx->fsm->st;
    json_t *cur = st->config != NULL ? json_deep_copy(st->config) : cfg_dcs_to_json(ha_dcs(ctx->ha));
    int pause_change = -1;
    const json_t *pv = json_object_get(patch, "pause");
    if (pv != NULL) {
        if (!json_is_null(pv) && !json_is_boolean(pv)) {
            json_decref(cur);
            json_decref(patch);
            api_reply_error(x, 400, "pause: expected true, false or null");
            return;
        }
        pause_change = json_is_true(pv) ? 1 : 0;
        json_object_del(patch, "pause");
    } else if (replace) {
        pause_change = 0;
    }
    json_t *next;
    if (replace) {
        next = json_deep_copy(patch);
    } else {
        next = json_deep_copy(cur);
        merge_patch(next, patch);
    }
    json_decref(patch);
    struct cfg_dcs d;
    struct cfg_error err;
    if (cfg_dcs_from_json(next, &d, &err) != 0) {
        json_decref(cur);
        json_decref(next);
        api_reply_error(x, 400, "%s (nothing was changed)", err.msg);
        return;
    }
    cfg_dcs_free(&d);
    bool config_change = !json_equal(cur, next);
    json_decref(cur);
    struct config_req *r = calloc(1, sizeof *r);
    if (r == NULL) {
        json_decref(next);
        api_reply_error(x, 500, "out of memory");
        return;
    }
    r->x = x;
    r->ctx = ctx;
    r->result = json_deep_copy(next);
    bool will_pause = pause_change == 1 || (pause_change == -1 && st->pause);
    if (will_pause)
        json_object_set_new(r->result, "pause", json_true());
    r->pending = 1;
    if (config_change) {
        struct fsm_cmd c;
        fsm_cmd_init(&c, FSM_OP_CONFIG_SET, NULL);
        c.u.config.config = next;
        c.u.config.expect_version = st->config_version;
        r->pending++;
        log_info("api", "dynamic configuration change requested");
        if (submit_cmd_applied(ctx->sub, &c, 5000, config_step_done, r) != 0)
            r->pending--;
        fsm_cmd_free(&c);
    } else {
        json_decref(next);
    }
    if (pause_change != -1 && (pause_change == 1) != st->pause) {
        struct fsm_cmd c;
        fsm_cmd_init(&c, FSM_OP_PAUSE_SET, NULL);
        c.u.pause.pause = pause_change == 1;
        r->pending++;
        log_info("api", "%s requested", pause_change == 1 ? "maintenance mode (pause)" : "resume");
        if (submit_cmd_applied(ctx->sub, &c, 5000, config_step_done, r) != 0)
            r->pending--;
    }
    config_step_done(r, 0, NULL, "");
}

static void h_config_patch(struct http_exchange *x, const struct http_request *req, void *vctx)
{
    config_write(x, req, vctx, false);
}

static void h_config_put(struct http_exchange *x, const struct http_request *req, void *vctx)
{
    config_write(x, req, vctx, true);
}

static const struct http_route routes[] = {
    {"/switchover", HTTP_M_POST, false, h_switchover},
    {"/switchover", HTTP_M_DELETE, false, h_switchover_delete},
    {"/failover", HTTP_M_POST, false, h_failover},
    {"/config", HTTP_M_PATCH, false, h_config_patch},
    {"/config", HTTP_M_PUT, false, h_config_put},
};

int api_register_actions(struct http_server *s, struct api_ctx *ctx)
{
    return http_server_add_routes(s, routes, sizeof routes / sizeof routes[0], ctx);
}
