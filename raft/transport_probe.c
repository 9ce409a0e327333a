/* Probe a peer's Raft port: "who are you, and is there a cluster?".
 *
 * Happy path: connect -> write a kind-2 hello -> read a 4-byte length and
 * that much JSON -> callback(0, json).
 * Failure modes: refused, deadline passed, answer malformed or too large,
 * peer closes early (all: callback with a negative status). The callback
 * runs exactly once, never from transport_probe_peer(). */
#include "raft/transport.h"

#include <stdlib.h>
#include <string.h>

struct probe {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_connect_t connect;
    uv_write_t write;
    uint8_t hello[TRANSPORT_HELLO_FIXED + TRANSPORT_SCOPE_MAX];
    size_t hello_len;
    uint8_t lenbuf[4];
    size_t have_len;
    char *answer;
    size_t answer_len, have;
    int status;
    int pending_closes;
    bool done;
    transport_probe_cb cb;
    void *ctx;
};

static void probe_closed(uv_handle_t *h)
{
    struct probe *p = h->data;
    if (--p->pending_closes > 0)
        return;
    if (p->status == 0)
        p->cb(0, p->answer, p->answer_len, p->ctx);
    else
        p->cb(p->status, NULL, 0, p->ctx);
    free(p->answer);
    free(p);
}

static void probe_finish(struct probe *p, int status)
{
    if (p->done)
        return;
    p->done = true;
    p->status = status;
    p->pending_closes = 2;
    uv_close((uv_handle_t *)&p->timer, probe_closed);
    uv_close((uv_handle_t *)&p->tcp, probe_closed);
}

static void probe_timeout(uv_timer_t *t)
{
    probe_finish(t->data, PGW_ETIMEDOUT);
}

static void probe_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct probe *p = h->data;
    (void)suggested;
    if (p->have_len < 4)
        *buf = uv_buf_init((char *)p->lenbuf + p->have_len, (unsigned)(4 - p->have_len));
    else
        *buf = uv_buf_init(p->answer + p->have, (unsigned)(p->answer_len - p->have));
}

static void probe_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct probe *p = s->data;
    (void)buf;
    if (p->done)
        return;
    if (n < 0) {
        probe_finish(p, PGW_EPROTO);
        return;
    }
    if (p->have_len < 4) {
        p->have_len += (size_t)n;
        if (p->have_len < 4)
            return;
        p->answer_len = ((size_t)p->lenbuf[0] << 24) | ((size_t)p->lenbuf[1] << 16) |
                        ((size_t)p->lenbuf[2] << 8) | p->lenbuf[3];
        if (p->answer_len == 0 || p->answer_len > TRANSPORT_PROBE_MAX) {
            probe_finish(p, PGW_EPROTO);
            return;
        }
        p->answer = malloc(p->answer_len + 1);
        if (p->answer == NULL) {
            probe_finish(p, PGW_ENOMEM);
            return;
        }
        return;
    }
    p->have += (size_t)n;
    if (p->have == p->answer_len) {
        p->answer[p->answer_len] = '\0';
        probe_finish(p, 0);
    }
}

static void probe_written(uv_write_t *w, int status)
{
    struct probe *p = w->data;
    if (p->done)
        return;
    if (status != 0 || uv_read_start((uv_stream_t *)&p->tcp, probe_alloc, probe_read) != 0)
        probe_finish(p, PGW_EIO);
}

static void probe_connected(uv_connect_t *c, int status)
{
    struct probe *p = c->data;
    if (p->done)
        return;
    if (status != 0) {
        probe_finish(p, PGW_EUNAVAIL);
        return;
    }
    uv_buf_t b = uv_buf_init((char *)p->hello, (unsigned)p->hello_len);
    p->write.data = p;
    if (uv_write(&p->write, (uv_stream_t *)&p->tcp, &b, 1, probe_written) != 0)
        probe_finish(p, PGW_EIO);
}

int transport_probe_peer(uv_loop_t *loop, const char *scope, const char *addr, uint32_t timeout_ms,
                         transport_probe_cb cb, void *ctx)
{
    struct sockaddr_in sa;
    if (transport_addr_parse(addr, &sa) != 0)
        return PGW_EINVAL;
    struct probe *p = calloc(1, sizeof *p);
    if (p == NULL)
        return PGW_ENOMEM;
    int n = transport_hello_encode(TRANSPORT_KIND_PROBE, scope, 0, NULL, p->hello, sizeof p->hello);
    if (n <= 0) {
        free(p);
        return PGW_EINVAL;
    }
    p->hello_len = (size_t)n;
    p->cb = cb;
    p->ctx = ctx;
    uv_tcp_init(loop, &p->tcp);
    uv_timer_init(loop, &p->timer);
    p->tcp.data = p;
    p->timer.data = p;
    p->connect.data = p;
    uv_timer_start(&p->timer, probe_timeout, timeout_ms, 0);
    if (uv_tcp_connect(&p->connect, &p->tcp, (const struct sockaddr *)&sa, probe_connected) != 0)
        probe_finish(p, PGW_EUNAVAIL);
    return PGW_OK;
}
