/* Probe a peer's Raft port: "who are you, and is there a cluster?".
 *
 * Happy path: connect -> write a kind-2 hello -> [with a secret: read the
 * server's challenge, check its MAC, write ours] -> read a 4-byte length and
 * that much JSON -> callback(0, json).
 * Failure modes: refused, deadline passed, answer malformed or too large,
 * peer closes early, either side fails authentication (PGW_EREFUSED; all:
 * callback with a negative status). The callback
 * runs exactly once, never from transport_probe_peer().
 * TLS (sec->tls): once TCP is connected a tls_link takes the socket; the
 * probe then runs over the link's plain stream. A refused TLS handshake ends
 * the probe with PGW_EREFUSED (logged at most every 10 s), a slow one with
 * PGW_ETIMEDOUT; the probe's deadline covers connect, TLS and the answer. */
#include "raft/transport.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "common/log.h"
#include "raft/tls_link.h" /* TLS */
#include "raft/transport_auth.h"

struct probe {
    uv_tcp_t tcp;        /* without TLS */
    uv_stream_t *stream; /* &tcp; TLS: a raft_malloc'd uv_tcp_t until connected, NULL during
                            the link's handshake, then the link's plain pipe */
    struct tls_link_ctx *tls; /* TLS */
    uint64_t deadline;        /* TLS: loop time the probe must end by */
    char addr[TRANSPORT_ADDR_MAX + 1];
    uv_timer_t timer;
    uv_connect_t connect;
    uv_write_t write;
    uint8_t hello[TRANSPORT_HELLO_MAX];
    size_t hello_len; /* without the nonce */
    uint8_t *secret;
    size_t secret_len;
    bool authenticating; /* reading the challenge (true until our MAC is written) */
    uint8_t chal[TRANSPORT_CHALLENGE_LEN];
    size_t chal_have;
    uint8_t mac[TRANSPORT_MAC_LEN];
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
    if (h != (uv_handle_t *)&p->tcp && h != (uv_handle_t *)&p->timer)
        raft_free(h); /* TLS: the socket or the link's plain stream */
    if (--p->pending_closes > 0)
        return;
    if (p->status == 0)
        p->cb(0, p->answer, p->answer_len, p->ctx);
    else
        p->cb(p->status, NULL, 0, p->ctx);
    free(p->answer);
    if (p->secret != NULL) {
        OPENSSL_cleanse(p->secret, p->secret_len);
        free(p->secret);
    }
    free(p);
}

static void probe_finish(struct probe *p, int status)
{
    if (p->done)
        return;
    p->done = true;
    p->status = status;
    p->pending_closes = p->stream != NULL ? 2 : 1; /* TLS: the link closed the socket */
    uv_close((uv_handle_t *)&p->timer, probe_closed);
    if (p->stream != NULL)
        uv_close((uv_handle_t *)p->stream, probe_closed);
}

static void probe_timeout(uv_timer_t *t)
{
    probe_finish(t->data, PGW_ETIMEDOUT);
}

static void probe_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct probe *p = h->data;
    (void)suggested;
    if (p->authenticating)
        *buf = uv_buf_init((char *)p->chal + p->chal_have, (unsigned)(sizeof p->chal - p->chal_have));
    else if (p->have_len < 4)
        *buf = uv_buf_init((char *)p->lenbuf + p->have_len, (unsigned)(4 - p->have_len));
    else
        *buf = uv_buf_init(p->answer + p->have, (unsigned)(p->answer_len - p->have));
}

static void probe_mac_written(uv_write_t *w, int status)
{
    struct probe *p = w->data;
    if (!p->done && status != 0)
        probe_finish(p, PGW_EIO);
}

/* The server's challenge is in: check it, answer with our MAC, then read on
 * (the probe answer follows once the server checked our MAC). */
static void probe_challenge(struct probe *p)
{
    uint8_t ns[TRANSPORT_NONCE_LEN], theirs[TRANSPORT_MAC_LEN], want[TRANSPORT_MAC_LEN];
    const uint8_t *nc = p->hello + p->hello_len;
    if (transport_auth_challenge_parse(p->chal, ns, theirs) != 0 ||
        transport_auth_mac(p->secret, p->secret_len, TRANSPORT_AUTH_SERVER, p->hello, p->hello_len,
                           nc, ns, want) != 0 ||
        !transport_auth_mac_equal(theirs, want) ||
        transport_auth_mac(p->secret, p->secret_len, TRANSPORT_AUTH_CLIENT, p->hello, p->hello_len,
                           nc, ns, p->mac) != 0) {
        probe_finish(p, PGW_EREFUSED);
        return;
    }
    p->authenticating = false;
    uv_buf_t b = uv_buf_init((char *)p->mac, sizeof p->mac);
    p->write.data = p;
    if (uv_write(&p->write, p->stream, &b, 1, probe_mac_written) != 0)
        probe_finish(p, PGW_EIO);
}

static void probe_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct probe *p = s->data;
    (void)buf;
    if (p->done)
        return;
    if (n < 0) {
        /* closed while we proved ourselves: the server refused our secret */
        probe_finish(p, p->secret != NULL && p->have_len == 0 ? PGW_EREFUSED : PGW_EPROTO);
        return;
    }
    if (p->authenticating) {
        p->chal_have += (size_t)n;
        if (p->chal_have == sizeof p->chal)
            probe_challenge(p);
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
    if (status != 0 || uv_read_start(p->stream, probe_alloc, probe_read) != 0)
        probe_finish(p, PGW_EIO);
}

static void probe_start_tls(struct probe *p); /* TLS */

static void probe_connected(uv_connect_t *c, int status)
{
    struct probe *p = c->data;
    if (p->done)
        return;
    if (status != 0) {
        probe_finish(p, PGW_EUNAVAIL);
        return;
    }
    if (p->tls != NULL && p->stream->type == UV_TCP) { /* TLS: the hello goes over the link */
        probe_start_tls(p);
        return;
    }
    size_t len = p->hello_len + (p->secret != NULL ? TRANSPORT_NONCE_LEN : 0);
    uv_buf_t b = uv_buf_init((char *)p->hello, (unsigned)len);
    p->write.data = p;
    if (uv_write(&p->write, p->stream, &b, 1, probe_written) != 0)
        probe_finish(p, PGW_EIO);
}

/* --- TLS ------------------------------------------------------------------------ */

static void probe_tls_ready(int status, uv_stream_t *plain, const char *detail, void *data)
{
    struct probe *p = data;
    if (status != 0) {
        /* Discovery probes every partner twice a second: one line per 10 s. */
        static uint64_t last_log;
        uint64_t now = uv_now(p->timer.loop);
        if (status != PGW_ECANCELED && (last_log == 0 || now >= last_log + 10000)) {
            last_log = now;
            log_warn("raft", "probe of %s: %s", p->addr, detail);
        }
        probe_finish(p, status == PGW_ETIMEDOUT || status == PGW_ECANCELED ? status
                                                                            : PGW_EREFUSED);
        return;
    }
    p->stream = plain;
    plain->data = p;
    uint64_t now = uv_now(p->timer.loop);
    uv_timer_start(&p->timer, probe_timeout, p->deadline > now ? p->deadline - now : 1, 0);
    probe_connected(&p->connect, 0);
}

static void probe_start_tls(struct probe *p)
{
    uint64_t now = uv_now(p->timer.loop);
    uint64_t left = p->deadline > now + 1 ? p->deadline - now : 1;
    if (tls_link_start(p->timer.loop, p->tls, (uv_tcp_t *)p->stream, 0, p->addr,
                       (uint32_t)left, probe_tls_ready, p) != 0) {
        probe_finish(p, PGW_ENOMEM);
        return;
    }
    uv_timer_stop(&p->timer); /* the link's deadline runs instead */
    p->stream = NULL;         /* the link's now */
}

int transport_probe_peer(uv_loop_t *loop, const char *scope, const char *addr,
                         const struct transport_security *sec, uint32_t timeout_ms,
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
    if (sec != NULL && sec->secret != NULL && sec->secret_len > 0) {
        p->secret = malloc(sec->secret_len);
        if (p->secret == NULL || transport_auth_nonce(p->hello + n) != 0) {
            free(p->secret);
            free(p);
            return PGW_ENOMEM;
        }
        memcpy(p->secret, sec->secret, sec->secret_len);
        p->secret_len = sec->secret_len;
        p->hello[4] = TRANSPORT_VERSION_AUTH;
        p->authenticating = true;
    }
    p->cb = cb;
    p->ctx = ctx;
    p->stream = (uv_stream_t *)&p->tcp;
    if (sec != NULL && sec->tls != NULL) { /* TLS: the link frees its socket with raft_free */
        p->tls = sec->tls;
        p->stream = raft_malloc(sizeof(uv_tcp_t));
        if (p->stream == NULL) {
            if (p->secret != NULL) {
                OPENSSL_cleanse(p->secret, p->secret_len);
                free(p->secret);
            }
            free(p);
            return PGW_ENOMEM;
        }
    }
    snprintf(p->addr, sizeof p->addr, "%s", addr);
    uv_tcp_init(loop, (uv_tcp_t *)p->stream);
    uv_timer_init(loop, &p->timer);
    p->stream->data = p;
    p->timer.data = p;
    p->connect.data = p;
    p->deadline = uv_now(loop) + timeout_ms;
    uv_timer_start(&p->timer, probe_timeout, timeout_ms, 0);
    if (uv_tcp_connect(&p->connect, (uv_tcp_t *)p->stream, (const struct sockaddr *)&sa,
                       probe_connected) != 0)
        probe_finish(p, PGW_EUNAVAIL);
    return PGW_OK;
}
