/* Command submission from any node (see submit.h).
 *
 * Happy path: leader here -> cluster_apply -> callback with the FSM result;
 * or follower -> POST <leader api>/raft/apply -> JSON result -> callback.
 * Failure modes: no leader known or leader unreachable or leadership lost
 * mid-flight (retried every 100 ms with the same request id until the
 * deadline, then PGW_ENOTLEADER/PGW_ETIMEDOUT); the leader it was forwarded
 * to is replaced while the request waits (a frozen or cut-off leader: sent
 * again to the new one at once; both copies carry the same request id, and
 * a lease renewal applied twice only makes the judges wait longer); FSM
 * refusal (final, passed through), submitter closing (PGW_ECANCELED). */
#include "raft/submit.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <raft.h>

#include "common/httpc.h"
#include "common/log.h"

#define RETRY_MS 100
/* how often a request forwarded to the leader checks that it still is the
 * leader: a frozen leader never answers, and waiting for the deadline
 * (retry_timeout) made a primary fence itself while a new leader had long
 * been elected */
#define LEADER_WATCH_MS 50

struct sub_req;

struct submitter {
    uv_loop_t *loop;
    struct cluster *cluster;
    char member[FSM_NAME_MAX];
    char *auth_user, *auth_password;
    const struct httpc_tls_opts *tls; /* tls: https:// leader API */
    uint32_t nonce;
    uint64_t seq;
    struct sub_req *reqs;
    bool closing;
    void (*close_done)(void *);
    void *close_ctx;
    struct submit_stats stats;
};

struct sub_req {
    struct submitter *s;
    char *buf; /* encoded command (malloc) */
    size_t len;
    enum fsm_op op;
    uint64_t deadline_ms;
    uv_timer_t timer;
    bool timer_open;
    bool inflight;            /* local apply or HTTP request running */
    struct httpc_request *http;
    uint64_t sent_to;         /* raft id of the leader the HTTP request went to */
    bool moved;               /* cancelled because another node leads now */
    bool done;
    int last_status;
    char last_msg[FSM_TEXT_MAX];
    /* read barrier: wait for local applied_index >= target */
    bool barrier;
    uint64_t target_index;
    struct fsm_result saved; /* the result to report once applied locally */
    submit_cb cb;
    void *ctx;
    struct sub_req *next, *prev;
};

static uint64_t now_ms(void)
{
    return uv_hrtime() / 1000000u;
}

int submitter_create(const struct submitter_opts *o, struct submitter **out)
{
    struct submitter *s = calloc(1, sizeof *s);
    if (s == NULL)
        return PGW_ENOMEM;
    s->loop = o->loop;
    s->cluster = o->cluster;
    snprintf(s->member, sizeof s->member, "%s", o->member);
    s->auth_user = o->auth_user != NULL ? strdup(o->auth_user) : NULL;
    s->auth_password = o->auth_password != NULL ? strdup(o->auth_password) : NULL;
    s->tls = o->tls; /* tls */
    /* A boot nonce keeps request ids unique across restarts of this node. */
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd < 0 || read(fd, &s->nonce, sizeof s->nonce) != (ssize_t)sizeof s->nonce)
        s->nonce = (uint32_t)(uv_hrtime() ^ (uint64_t)getpid());
    if (fd >= 0)
        close(fd);
    *out = s;
    return PGW_OK;
}

void submitter_set_cluster(struct submitter *s, struct cluster *c)
{
    s->cluster = c;
}

void submit_new_rid(struct submitter *s, char *buf, size_t len)
{
    snprintf(buf, len, "%s.%08x.%llu", s->member, s->nonce, (unsigned long long)++s->seq);
}

void submitter_get_stats(const struct submitter *s, struct submit_stats *out)
{
    *out = s->stats;
}

static void maybe_closed(struct submitter *s)
{
    if (!s->closing || s->reqs != NULL)
        return;
    void (*done)(void *) = s->close_done;
    void *ctx = s->close_ctx;
    free(s->auth_user);
    free(s->auth_password);
    free(s);
    if (done != NULL)
        done(ctx);
}

static void req_timer_closed(uv_handle_t *h)
{
    struct sub_req *r = h->data;
    struct submitter *s = r->s;
    if (r->prev)
        r->prev->next = r->next;
    else
        s->reqs = r->next;
    if (r->next)
        r->next->prev = r->prev;
    free(r->buf);
    free(r);
    maybe_closed(s);
}

/* Deliver the result once; the request is freed after its timer closes. */
static void finish(struct sub_req *r, int status, const struct fsm_result *res, const char *msg)
{
    if (r->done)
        return;
    r->done = true;
    if (status != 0 && status != PGW_ECONFLICT && status != PGW_EREFUSED && status != PGW_EINVAL &&
        status != PGW_ENOTFOUND && status != PGW_EBUSY && status != PGW_EUNAVAIL)
        r->s->stats.failed++;
    r->cb(r->ctx, status, res, msg != NULL ? msg : "");
    uv_close((uv_handle_t *)&r->timer, req_timer_closed);
}

static void schedule_retry(struct sub_req *r, int status, const char *msg);
static void attempt(struct sub_req *r);
static void retry_timer(uv_timer_t *t);
static void watch_leader(uv_timer_t *t);

static bool barrier_reached(struct sub_req *r)
{
    struct fsm *f = r->s->cluster != NULL ? cluster_fsm(r->s->cluster) : NULL;
    return f != NULL && f->st.applied_index >= r->target_index;
}

static void complete(struct sub_req *r, int status, const struct fsm_result *res, const char *msg)
{
    if (r->barrier && status == 0) {
        r->target_index = res != NULL ? res->index : 0;
        if (res != NULL)
            r->saved = *res;
        if (!barrier_reached(r)) {
            /* wait for the local FSM to catch up (checked by the timer) */
            uv_timer_start(&r->timer, retry_timer, 10, 0);
            return;
        }
    }
    finish(r, status, res, msg);
}

static void local_applied(void *ctx, int status, const struct fsm_result *res, const char *msg)
{
    struct sub_req *r = ctx;
    r->inflight = false;
    if (r->s->closing) {
        finish(r, PGW_ECANCELED, NULL, "shutting down");
        return;
    }
    if (status == PGW_ENOTLEADER) {
        schedule_retry(r, status, msg);
        return;
    }
    complete(r, status, res, msg);
}

static void http_done(const struct httpc_response *resp, void *ctx)
{
    struct sub_req *r = ctx;
    r->inflight = false;
    r->http = NULL;
    uv_timer_stop(&r->timer); /* the leader watch */
    bool moved = r->moved;
    r->moved = false;
    /* an answer that arrived before the cancel took effect is used as it is */
    if (moved && resp->status == PGW_ECANCELED && !r->s->closing) {
        r->s->stats.retries++;
        attempt(r); /* to the new leader, now */
        return;
    }
    if (r->s->closing || resp->status == PGW_ECANCELED) {
        finish(r, PGW_ECANCELED, NULL, "shutting down");
        return;
    }
    if (resp->status != 0) {
        schedule_retry(r, PGW_ENOTLEADER, resp->error);
        return;
    }
    json_error_t jerr;
    json_t *j = json_loadb(resp->body, resp->body_len, 0, &jerr);
    const json_t *st = json_object_get(j, "status");
    if (!json_is_integer(st)) {
        char msg[FSM_TEXT_MAX];
        snprintf(msg, sizeof msg, "leader answered HTTP %d without a result", resp->http_status);
        json_decref(j);
        schedule_retry(r, PGW_EPROTO, msg);
        return;
    }
    int status = (int)json_integer_value(st);
    struct fsm_result res;
    memset(&res, 0, sizeof res);
    res.status = status;
    res.index = (uint64_t)json_integer_value(json_object_get(j, "index"));
    const char *m = json_string_value(json_object_get(j, "message"));
    snprintf(res.msg, sizeof res.msg, "%s", m != NULL ? m : "");
    json_decref(j);
    if (status == PGW_ENOTLEADER || status == PGW_ECANCELED || status == PGW_EIO) {
        schedule_retry(r, status, res.msg);
        return;
    }
    complete(r, status, &res, res.msg);
}

static void attempt(struct sub_req *r)
{
    struct submitter *s = r->s;
    if (r->done || r->inflight)
        return;
    if (s->closing) {
        finish(r, PGW_ECANCELED, NULL, "shutting down");
        return;
    }
    if (r->target_index > 0) { /* read barrier waiting for local apply */
        if (barrier_reached(r)) {
            finish(r, 0, &r->saved, r->saved.msg);
        } else if (now_ms() >= r->deadline_ms) {
            finish(r, PGW_ETIMEDOUT, NULL, "this node did not catch up with the leader in time");
        } else {
            uv_timer_start(&r->timer, retry_timer, 10, 0);
        }
        return;
    }
    if (now_ms() >= r->deadline_ms) {
        char msg[FSM_TEXT_MAX + 64];
        snprintf(msg, sizeof msg, "no Raft leader committed %s in time: %s", fsm_op_name(r->op),
                 r->last_msg[0] ? r->last_msg : "no leader known");
        finish(r, r->last_status == PGW_ENOTLEADER || r->last_status == 0 ? PGW_ENOTLEADER
                                                                             : PGW_ETIMEDOUT,
               NULL, msg);
        return;
    }
    struct cluster *c = s->cluster;
    if (c == NULL) {
        schedule_retry(r, PGW_ENOTLEADER, "raft not started yet");
        return;
    }
    if (cluster_role(c) == CLUSTER_LEADER) {
        int rc = cluster_apply_raw(c, r->buf, r->len, local_applied, r);
        if (rc == 0) {
            r->inflight = true;
            return;
        }
        if (rc == PGW_ENOTLEADER) {
            schedule_retry(r, rc, "leadership changing");
            return;
        }
        finish(r, rc, NULL, "the command was refused before submission");
        return;
    }
    uint64_t lid = cluster_leader(c, NULL);
    const struct fsm_member *lm = lid != 0 ? fsm_member_by_raft_id(&cluster_fsm(c)->st, lid) : NULL;
    if (lm == NULL || lm->api_url[0] == '\0') {
        schedule_retry(r, PGW_ENOTLEADER, lid ? "leader's REST address not known yet" : "no leader");
        return;
    }
    char url[FSM_URL_MAX + 32];
    snprintf(url, sizeof url, "%s/raft/apply", lm->api_url);
    uint64_t left = r->deadline_ms - now_ms();
    struct httpc_opts ho = {
        .method = "POST",
        .url = url,
        .body = r->buf,
        .body_len = r->len,
        .content_type = "application/json",
        .auth_user = s->auth_user,
        .auth_password = s->auth_password,
        .timeout_ms = (uint32_t)(left < 100 ? 100 : left),
        .tls = s->tls != NULL ? *s->tls : (struct httpc_tls_opts){0}, /* tls */
    };
    char err[256];
    int rc = httpc_request_start(s->loop, &ho, http_done, r, &r->http, err, sizeof err);
    if (rc != 0) {
        schedule_retry(r, PGW_ENOTLEADER, err);
        return;
    }
    r->inflight = true;
    r->sent_to = lid;
    s->stats.forwarded++;
    uv_timer_start(&r->timer, watch_leader, LEADER_WATCH_MS, LEADER_WATCH_MS);
}

static void watch_leader(uv_timer_t *t)
{
    struct sub_req *r = t->data;
    struct cluster *c = r->s->cluster;
    if (!r->inflight || r->http == NULL || r->done || c == NULL) {
        uv_timer_stop(t);
        return;
    }
    uint64_t lid = cluster_leader(c, NULL);
    if (cluster_role(c) != CLUSTER_LEADER && (lid == 0 || lid == r->sent_to))
        return;
    log_debug("raft", "%s forwarded to raft id %llu: another node leads now, sending it again",
              fsm_op_name(r->op), (unsigned long long)r->sent_to);
    uv_timer_stop(t);
    r->moved = true;
    httpc_request_cancel(r->http);
}

static void retry_timer(uv_timer_t *t)
{
    attempt(t->data);
}

static void schedule_retry(struct sub_req *r, int status, const char *msg)
{
    r->last_status = status;
    snprintf(r->last_msg, sizeof r->last_msg, "%s", msg != NULL ? msg : "");
    r->s->stats.retries++;
    uv_timer_start(&r->timer, retry_timer, RETRY_MS, 0);
}

static int start_req(struct submitter *s, char *buf, size_t len, enum fsm_op op, bool barrier,
                     uint32_t timeout_ms, submit_cb cb, void *ctx)
{
    struct sub_req *r = calloc(1, sizeof *r);
    if (r == NULL) {
        free(buf);
        return PGW_ENOMEM;
    }
    r->s = s;
    r->buf = buf;
    r->len = len;
    r->op = op;
    r->barrier = barrier;
    r->cb = cb;
    r->ctx = ctx;
    r->deadline_ms = now_ms() + (timeout_ms ? timeout_ms : 5000);
    uv_timer_init(s->loop, &r->timer);
    r->timer.data = r;
    r->next = s->reqs;
    if (s->reqs)
        s->reqs->prev = r;
    s->reqs = r;
    s->stats.submitted++;
    /* First attempt on the next loop iteration: never call back from here. */
    uv_timer_start(&r->timer, retry_timer, 0, 0);
    return PGW_OK;
}

static int encode(struct submitter *s, struct fsm_cmd *cmd, char **buf, size_t *len)
{
    if (cmd->rid[0] == '\0')
        submit_new_rid(s, cmd->rid, sizeof cmd->rid);
    char *rbuf;
    char err[FSM_TEXT_MAX];
    int rc = fsm_cmd_encode(cmd, &rbuf, len, err, sizeof err);
    if (rc != 0) {
        log_error("raft", "refusing to submit %s: %s", fsm_op_name(cmd->op), err);
        return rc;
    }
    *buf = malloc(*len);
    if (*buf == NULL) {
        raft_free(rbuf);
        return PGW_ENOMEM;
    }
    memcpy(*buf, rbuf, *len);
    raft_free(rbuf);
    return PGW_OK;
}

int submit_cmd(struct submitter *s, struct fsm_cmd *cmd, uint32_t timeout_ms, submit_cb cb, void *ctx)
{
    if (s->closing)
        return PGW_ECANCELED;
    char *buf;
    size_t len;
    int rc = encode(s, cmd, &buf, &len);
    if (rc != 0)
        return rc;
    return start_req(s, buf, len, cmd->op, false, timeout_ms, cb, ctx);
}

int submit_cmd_applied(struct submitter *s, struct fsm_cmd *cmd, uint32_t timeout_ms, submit_cb cb,
                       void *ctx)
{
    if (s->closing)
        return PGW_ECANCELED;
    char *buf;
    size_t len;
    int rc = encode(s, cmd, &buf, &len);
    if (rc != 0)
        return rc;
    return start_req(s, buf, len, cmd->op, true, timeout_ms, cb, ctx);
}

int submit_read_barrier(struct submitter *s, uint32_t timeout_ms, submit_cb cb, void *ctx)
{
    if (s->closing)
        return PGW_ECANCELED;
    struct fsm_cmd cmd;
    fsm_cmd_init(&cmd, FSM_OP_NOOP, NULL);
    char *buf;
    size_t len;
    int rc = encode(s, &cmd, &buf, &len);
    if (rc != 0)
        return rc;
    return start_req(s, buf, len, FSM_OP_NOOP, true, timeout_ms, cb, ctx);
}

void submitter_close(struct submitter *s, void (*done)(void *ctx), void *ctx)
{
    s->closing = true;
    s->close_done = done;
    s->close_ctx = ctx;
    for (struct sub_req *r = s->reqs; r != NULL; r = r->next) {
        if (r->http != NULL)
            httpc_request_cancel(r->http); /* its callback finishes the request */
        else if (!r->inflight && !r->done)
            uv_timer_start(&r->timer, retry_timer, 0, 0);
    }
    if (s->reqs == NULL) {
        /* nothing pending: still report on a later tick */
        maybe_closed(s);
    }
}
