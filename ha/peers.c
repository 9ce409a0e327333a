/* Fresh status of every member with PostgreSQL, for the controller's
 * decisions: GET <api_url>/pgwarden/status (the member runs a new status
 * query before answering), all in parallel, deadline retry_timeout. The
 * local member is asked directly. One callback when all have answered or
 * timed out; an unreachable member is reported with the error. */
#include "ha/ha_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/httpc.h"

struct round {
    struct ha *h;
    struct peer_status st[FSM_MAX_MEMBERS];
    size_t n;
    unsigned pending;
    peers_done_cb cb;
    void *ctx;
};

void peer_status_from_json(const json_t *j, struct peer_status *out)
{
    out->ok = json_is_object(j);
    if (!out->ok) {
        snprintf(out->error, sizeof out->error, "unreadable status");
        return;
    }
    out->running = json_is_true(json_object_get(j, "running"));
    out->in_recovery = json_is_true(json_object_get(j, "in_recovery"));
    const char *sysid = json_string_value(json_object_get(j, "sysid"));
    out->sysid = sysid != NULL ? strtoull(sysid, NULL, 10) : 0;
    out->timeline = (uint32_t)json_integer_value(json_object_get(j, "timeline"));
    out->lsn = (uint64_t)json_integer_value(json_object_get(j, "lsn"));
    out->receive_lsn = (uint64_t)json_integer_value(json_object_get(j, "receive_lsn"));
    out->replay_lsn = (uint64_t)json_integer_value(json_object_get(j, "replay_lsn"));
    out->delayed = json_is_true(json_object_get(j, "delayed"));
    const char *err = json_string_value(json_object_get(j, "error"));
    if (!out->running && err != NULL)
        snprintf(out->error, sizeof out->error, "%s", err);
}

static void one_done(struct round *r)
{
    if (--r->pending > 0)
        return;
    struct ha *h = r->h;
    if (!h->closing)
        r->cb(h, r->st, r->n, r->ctx);
    free(r);
    ha_async_done(h);
}

struct one {
    struct round *r;
    size_t i;
};

static void http_done(const struct httpc_response *resp, void *ctx)
{
    struct one *o = ctx;
    struct peer_status *ps = &o->r->st[o->i];
    if (resp->status != 0) {
        snprintf(ps->error, sizeof ps->error, "%s", resp->error[0] ? resp->error : pgw_strerror(resp->status));
    } else if (resp->http_status != 200) {
        snprintf(ps->error, sizeof ps->error, "HTTP %d", resp->http_status);
    } else {
        json_t *j = json_loadb(resp->body, resp->body_len, 0, NULL);
        peer_status_from_json(j, ps);
        json_decref(j);
    }
    struct round *r = o->r;
    free(o);
    one_done(r);
}

static void local_done(void *ctx, json_t *status)
{
    struct one *o = ctx;
    struct peer_status *ps = &o->r->st[o->i];
    if (status == NULL)
        snprintf(ps->error, sizeof ps->error, "shutting down");
    else
        peer_status_from_json(status, ps);
    json_decref(status);
    struct round *r = o->r;
    free(o);
    one_done(r);
}

int peers_fetch(struct ha *h, peers_done_cb cb, void *ctx)
{
    struct round *r = calloc(1, sizeof *r);
    if (r == NULL)
        return PGW_ENOMEM;
    r->h = h;
    r->cb = cb;
    r->ctx = ctx;
    r->pending = 1; /* held until every request is started */
    h->async_inflight++;
    const struct fsm_state *st = &h->fsm->st;
    for (unsigned i = 0; i < st->n_members; i++) {
        const struct fsm_member *m = &st->members[i];
        if (m->witness)
            continue;
        size_t k = r->n++;
        snprintf(r->st[k].name, sizeof r->st[k].name, "%s", m->name);
        struct one *o = malloc(sizeof *o);
        if (o == NULL) {
            snprintf(r->st[k].error, sizeof r->st[k].error, "out of memory");
            continue;
        }
        o->r = r;
        o->i = k;
        /* A member that stopped reporting (dead or cut off) would only make
         * every decision wait for its HTTP deadline. */
        uint64_t now = ha_now(h);
        if (strcmp(m->name, ha_name(h)) != 0 && m->reported && m->local_report_ms != 0 &&
            now - m->local_report_ms > (uint64_t)h->timing.ttl_ms) {
            snprintf(r->st[k].error, sizeof r->st[k].error, "no report for %.1f s",
                     (double)(now - m->local_report_ms) / 1000.0);
            free(o);
            continue;
        }
        r->pending++;
        if (strcmp(m->name, ha_name(h)) == 0 && !h->witness) {
            ha_local_status(h, true, local_done, o);
            continue;
        }
        char url[FSM_URL_MAX + 32];
        snprintf(url, sizeof url, "%s/pgwarden/status?fresh=1", m->api_url);
        struct httpc_opts ho = {.method = "GET", .url = url, .timeout_ms = h->timing.retry_timeout_ms};
        httpc_tls_from_cfg(h->cfg, &ho.tls); /* tls: https:// member APIs */
        char err[160];
        if (httpc_request_start(h->loop, &ho, http_done, o, NULL, err, sizeof err) != 0) {
            snprintf(r->st[k].error, sizeof r->st[k].error, "%s", err);
            free(o);
            r->pending--;
        }
    }
    one_done(r);
    return PGW_OK;
}
