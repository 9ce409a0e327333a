/* pgwarden's Raft transport (see transport.h for the wire format).
 *
 * Happy path, outbound: raft asks connect(id, addr) -> TCP connect under a
 * deadline -> write our hello -> hand the stream to raft.
 * Happy path, inbound: accept -> read exactly the hello (fixed part, then
 * scope and address; never a byte more, so raft's first message stays in the
 * socket) -> check it -> hand the stream to raft, or answer a probe.
 * Failure modes: connect refused or timed out (raft gets RAFT_NOCONNECTION
 * and retries after its connect-retry delay), transport closing (pending
 * connects complete with RAFT_CANCELED, pending accepts are dropped), a bad
 * or slow hello (connection closed, logged with the peer's address).
 *
 * Streams handed to raft are allocated with raft_malloc: raft frees them with
 * raft_free in its close callbacks.
 *
 * TLS (opts->sec.tls): right after the TCP connect / accept the socket goes
 * to a tls_link (raft/tls_link.h); the hello and everything after it then run
 * over the link's plain stream, which is what raft gets. A refused or slow
 * TLS handshake fails the connect (RAFT_NOCONNECTION) or drops the accepted
 * connection, logged with the peer's address and OpenSSL's reason (the same
 * refusal at most once per 10 s).
 *
 * The hello's encoding and the address syntax are in transport_wire.c. */
#include "raft/transport.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "raft/transport_auth.h"
#include "raft/tls_link.h" /* TLS */

#include <openssl/crypto.h>

struct tp;

/* One outbound connect request from raft. */
struct tconn {
    struct tp *tp;
    struct raft_uv_connect *req;
    uv_stream_t *tcp;      /* raft_malloc'd: becomes raft's stream (TLS: a uv_tcp_t until
                              connected, NULL while the link's handshake runs, then the
                              link's plain uv_pipe_t) */
    uv_timer_t timer;
    uv_connect_t connect;
    uv_write_t write;
    uint8_t hello[TRANSPORT_HELLO_MAX];
    size_t hello_len;      /* without the nonce: what the MACs cover */
    bool authenticating;   /* the challenge is being read, or our MAC written */
    uint8_t chal[TRANSPORT_CHALLENGE_LEN];
    size_t chal_have;
    uint8_t mac[TRANSPORT_MAC_LEN];
    char addr[TRANSPORT_ADDR_MAX + 1];
    int status;            /* RAFT_NOCONNECTION / RAFT_CANCELED when failing */
    int pending_closes;
    struct tconn *next, *prev;
};

/* One inbound connection still in its handshake. */
struct tacc {
    struct tp *tp;
    uv_stream_t *tcp; /* raft_malloc'd (TLS: as in tconn) */
    uv_timer_t timer;
    uint8_t buf[TRANSPORT_HELLO_MAX];
    size_t have, want;
    char peer[64];
    /* authentication (version-2 hello) */
    struct transport_hello hello;
    size_t hello_len; /* without the nonce */
    bool reading_mac;
    uint8_t ns[TRANSPORT_NONCE_LEN];
    uint8_t chal[TRANSPORT_CHALLENGE_LEN];
    uv_write_t chal_write;
    uint8_t mac[TRANSPORT_MAC_LEN];
    size_t mac_have;
    int pending_closes;
    bool handed_over;
    /* probe answer */
    uv_write_t write;
    uint8_t *answer;
    struct tacc *next, *prev;
};

struct tp {
    struct raft_uv_transport *t;
    uv_loop_t *loop;
    char *scope;
    char *bind_addr;
    uint32_t connect_timeout_ms, handshake_timeout_ms, user_timeout_ms;
    transport_probe_fn probe;
    void *probe_ctx;
    bool (*admit)(void *ctx, uint64_t id, const char *addr);
    uint8_t *secret; /* NULL: no authentication */
    size_t secret_len;
    uint64_t auth_log_ms; /* outbound auth failures are logged at most every 10 s */
    struct tls_link_ctx *tls;            /* TLS: NULL = plain TCP */
    struct tls_log_entry {               /* TLS: the same refusal (peer host, reason) */
        char key[200];                   /* is logged at most every 10 s */
        uint64_t at;
        unsigned skipped;
    } tls_log[4];
    raft_id id;
    char address[TRANSPORT_ADDR_MAX + 1];
    uv_tcp_t listener;
    bool listening, listener_open;
    raft_uv_accept_cb accept_cb;
    struct tconn *conns;
    struct tacc *accs;
    bool closing;
    bool deferring;  /* close callback must come on a later tick */
    uv_timer_t defer;
    raft_uv_transport_close_cb close_cb;
    struct transport_stats stats;
};

static void tune_socket(uv_stream_t *s, uint32_t user_timeout_ms)
{
    if (s->type != UV_TCP)
        return; /* TLS: a plain pipe; the link's socket was tuned before the handshake */
    uv_tcp_t *tcp = (uv_tcp_t *)s;
    uv_tcp_nodelay(tcp, 1);
    uv_tcp_keepalive(tcp, 1, 5);
    uv_os_fd_t fd;
    if (user_timeout_ms > 0 && uv_fileno((uv_handle_t *)tcp, &fd) == 0) {
        unsigned int v = user_timeout_ms;
        (void)setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &v, sizeof v);
    }
}

/* --- close bookkeeping ---------------------------------------------------- */

static void maybe_closed(struct tp *tp)
{
    if (!tp->closing || tp->conns != NULL || tp->accs != NULL || tp->listener_open ||
        tp->deferring)
        return;
    if (tp->close_cb != NULL) {
        raft_uv_transport_close_cb cb = tp->close_cb;
        tp->close_cb = NULL;
        cb(tp->t);
    }
}

#define LIST_ADD(head, x) do { (x)->prev = NULL; (x)->next = (head); if (head) (head)->prev = (x); (head) = (x); } while (0)
#define LIST_DEL(head, x) do { if ((x)->prev) (x)->prev->next = (x)->next; else (head) = (x)->next; if ((x)->next) (x)->next->prev = (x)->prev; } while (0)

/* --- outbound ------------------------------------------------------------- */

static void conn_handle_closed(uv_handle_t *h)
{
    struct tconn *c = h->data;
    if (h == (uv_handle_t *)c->tcp)
        raft_free(c->tcp);
    if (--c->pending_closes > 0)
        return;
    struct tp *tp = c->tp;
    LIST_DEL(tp->conns, c);
    c->req->cb(c->req, NULL, c->status);
    free(c);
    maybe_closed(tp);
}

static void conn_fail(struct tconn *c, int status)
{
    if (c->pending_closes != 0)
        return; /* already failing, or already handed over */
    if (c->tcp == NULL)
        return; /* TLS: the link's handshake runs; its callback finishes */
    c->status = status;
    if (status == RAFT_NOCONNECTION)
        c->tp->stats.connect_failures++;
    c->pending_closes = 2;
    uv_close((uv_handle_t *)&c->timer, conn_handle_closed);
    uv_close((uv_handle_t *)c->tcp, conn_handle_closed);
}

static void conn_timer_closed(uv_handle_t *h)
{
    struct tconn *c = h->data;
    struct tp *tp = c->tp;
    if (tp->closing) {
        /* The transport closed while the hello was in flight: raft expects
         * RAFT_CANCELED and no stream now. */
        c->status = RAFT_CANCELED;
        c->pending_closes = 1;
        uv_close((uv_handle_t *)c->tcp, conn_handle_closed);
        return;
    }
    LIST_DEL(tp->conns, c);
    uv_stream_t *stream = (uv_stream_t *)c->tcp;
    struct raft_uv_connect *req = c->req;
    free(c);
    tp->stats.connects++;
    req->cb(req, stream, 0);
}

static void conn_auth_failed(struct tconn *c, const char *why)
{
    struct tp *tp = c->tp;
    tp->stats.auth_failures++;
    uint64_t now = uv_now(tp->loop);
    if (tp->auth_log_ms == 0 || now >= tp->auth_log_ms + 10000) {
        tp->auth_log_ms = now;
        log_warn("raft", "connection to %s refused: %s", c->addr, why);
    }
    conn_fail(c, RAFT_NOCONNECTION);
}

static void conn_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct tconn *c = h->data;
    (void)suggested;
    /* exactly the challenge: nothing else is sent to a connecting side */
    *buf = uv_buf_init((char *)c->chal + c->chal_have,
                       (unsigned)(sizeof c->chal - c->chal_have));
}

static void conn_written(uv_write_t *w, int status);

static void conn_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct tconn *c = s->data;
    (void)buf;
    if (c->pending_closes != 0)
        return;
    if (nread < 0) {
        conn_auth_failed(c, nread == UV_EOF ? "the peer closed the connection during "
                                              "authentication (is raft.password the same there?)"
                                            : uv_strerror((int)nread));
        return;
    }
    c->chal_have += (size_t)nread;
    if (c->chal_have < sizeof c->chal)
        return;
    uv_read_stop(s);
    struct tp *tp = c->tp;
    uint8_t ns[TRANSPORT_NONCE_LEN], theirs[TRANSPORT_MAC_LEN], want[TRANSPORT_MAC_LEN];
    const uint8_t *nc = c->hello + c->hello_len;
    if (transport_auth_challenge_parse(c->chal, ns, theirs) != 0) {
        conn_auth_failed(c, "the peer's answer is not a pgwarden challenge");
        return;
    }
    if (transport_auth_mac(tp->secret, tp->secret_len, TRANSPORT_AUTH_SERVER, c->hello,
                           c->hello_len, nc, ns, want) != 0 ||
        !transport_auth_mac_equal(theirs, want)) {
        conn_auth_failed(c, "the peer failed authentication (wrong raft.password there?)");
        return;
    }
    if (transport_auth_mac(tp->secret, tp->secret_len, TRANSPORT_AUTH_CLIENT, c->hello,
                           c->hello_len, nc, ns, c->mac) != 0) {
        conn_fail(c, RAFT_NOCONNECTION);
        return;
    }
    uv_buf_t b = uv_buf_init((char *)c->mac, sizeof c->mac);
    c->write.data = c;
    if (uv_write(&c->write, s, &b, 1, conn_written) != 0)
        conn_fail(c, RAFT_NOCONNECTION);
}

static void conn_written(uv_write_t *w, int status)
{
    struct tconn *c = w->data;
    if (c->pending_closes != 0)
        return; /* cancelled or timed out meanwhile: close callbacks finish it */
    if (status != 0) {
        conn_fail(c, RAFT_NOCONNECTION);
        return;
    }
    if (c->tp->secret != NULL && !c->authenticating) {
        /* hello sent: the server's challenge comes next */
        c->authenticating = true;
        if (uv_read_start((uv_stream_t *)c->tcp, conn_alloc, conn_read) != 0)
            conn_fail(c, RAFT_NOCONNECTION);
        return;
    }
    tune_socket(c->tcp, c->tp->user_timeout_ms);
    /* Success: only the timer is ours to close; the stream goes to raft. */
    c->pending_closes = -1;
    uv_close((uv_handle_t *)&c->timer, conn_timer_closed);
}

static void conn_start_tls(struct tconn *c); /* TLS */

static void conn_connected(uv_connect_t *creq, int status)
{
    struct tconn *c = creq->data;
    if (c->pending_closes != 0)
        return;
    if (status != 0) {
        conn_fail(c, RAFT_NOCONNECTION);
        return;
    }
    if (c->tp->tls != NULL && c->tcp->type == UV_TCP) { /* TLS: the hello goes over the link */
        conn_start_tls(c);
        return;
    }
    int n = transport_hello_encode(TRANSPORT_KIND_RAFT, c->tp->scope, c->tp->id, c->tp->address,
                                   c->hello, sizeof c->hello);
    if (n > 0) {
        c->hello_len = (size_t)n;
        if (c->tp->secret != NULL) {
            c->hello[4] = TRANSPORT_VERSION_AUTH;
            if (transport_auth_nonce(c->hello + n) != 0)
                n = -1;
            else
                n += TRANSPORT_NONCE_LEN;
        }
    }
    uv_buf_t b = uv_buf_init((char *)c->hello, (unsigned)(n > 0 ? n : 0));
    c->write.data = c;
    if (n <= 0 || uv_write(&c->write, (uv_stream_t *)c->tcp, &b, 1, conn_written) != 0)
        conn_fail(c, RAFT_NOCONNECTION);
}

static void conn_timeout(uv_timer_t *timer)
{
    conn_fail(timer->data, RAFT_NOCONNECTION);
}

/* --- TLS ------------------------------------------------------------------------ */

/* A refused peer retries every connect-retry delay (100 ms): the same
 * refusal (same direction, host and reason; the port left out) is logged
 * once per 10 s, with the count of the lines left out; a different one at
 * once. */
static void tls_log_refusal(struct tp *tp, const char *what, const char *detail)
{
    char key[sizeof tp->tls_log[0].key];
    size_t k = (size_t)snprintf(key, sizeof key, "%s|", what);
    for (const char *p = detail; *p != '\0' && k + 1 < sizeof key; p++) {
        key[k++] = *p;
        if (*p == ':' && p[1] >= '0' && p[1] <= '9')
            while (p[1] >= '0' && p[1] <= '9')
                p++;
    }
    key[k < sizeof key ? k : sizeof key - 1] = '\0';
    uint64_t now = uv_now(tp->loop);
    struct tls_log_entry *e = NULL, *oldest = &tp->tls_log[0];
    for (size_t i = 0; i < sizeof tp->tls_log / sizeof tp->tls_log[0]; i++) {
        if (strcmp(tp->tls_log[i].key, key) == 0)
            e = &tp->tls_log[i];
        if (tp->tls_log[i].at < oldest->at)
            oldest = &tp->tls_log[i];
    }
    if (e != NULL && now < e->at + 10000) {
        e->skipped++;
        return;
    }
    if (e != NULL && e->skipped > 0)
        log_warn("raft", "%s: %s (%u more like it in the last 10 s)", what, detail, e->skipped);
    else
        log_warn("raft", "%s: %s", what, detail);
    if (e == NULL) {
        e = oldest;
        snprintf(e->key, sizeof e->key, "%s", key);
    }
    e->at = now;
    e->skipped = 0;
}

/* The link's handshake ended: continue at conn_connected over the plain
 * stream (hello, authentication, hand-over to raft), or fail the connect. */
static void conn_tls_ready(int status, uv_stream_t *plain, const char *detail, void *data)
{
    struct tconn *c = data;
    struct tp *tp = c->tp;
    if (status != 0) {
        if (status != PGW_ECANCELED && !tp->closing) {
            tp->stats.connect_failures++;
            tls_log_refusal(tp, "outbound connection", detail);
        }
        c->status = tp->closing ? RAFT_CANCELED : RAFT_NOCONNECTION;
        c->pending_closes = 1; /* the link closed and freed the socket */
        uv_close((uv_handle_t *)&c->timer, conn_handle_closed);
        return;
    }
    log_debug("raft", "TLS connection to %s (certificate CN \"%s\")", c->addr, detail);
    c->tcp = plain;
    plain->data = c;
    if (tp->closing) {
        conn_fail(c, RAFT_CANCELED);
        return;
    }
    uv_timer_start(&c->timer, conn_timeout, tp->connect_timeout_ms, 0);
    conn_connected(&c->connect, 0);
}

static void conn_start_tls(struct tconn *c)
{
    struct tp *tp = c->tp;
    tune_socket(c->tcp, tp->user_timeout_ms);
    /* TCP is up (connect_timeout_ms caught a black hole): the handshake gets
     * the same time as an inbound hello */
    if (tls_link_start(tp->loop, tp->tls, (uv_tcp_t *)c->tcp, 0, c->addr,
                       tp->handshake_timeout_ms, conn_tls_ready, c) != 0) {
        conn_fail(c, RAFT_NOCONNECTION);
        return;
    }
    uv_timer_stop(&c->timer); /* the link's deadline runs instead */
    c->tcp = NULL;            /* the link's now */
}

static void acc_timeout(uv_timer_t *timer);
static void acc_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void acc_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void acc_drop(struct tacc *a, const char *why);
static void acc_handle_closed(uv_handle_t *h);

/* Inbound: the hello is read from the plain stream, under a fresh deadline. */
static void acc_tls_ready(int status, uv_stream_t *plain, const char *detail, void *data)
{
    struct tacc *a = data;
    struct tp *tp = a->tp;
    if (status != 0) {
        if (status != PGW_ECANCELED && !tp->closing) {
            tp->stats.handshake_failures++;
            tls_log_refusal(tp, "dropped connection", detail);
        }
        a->pending_closes = 1; /* the link closed and freed the socket */
        uv_close((uv_handle_t *)&a->timer, acc_handle_closed);
        return;
    }
    log_debug("raft", "TLS connection from %s (certificate CN \"%s\")", a->peer, detail);
    a->tcp = plain;
    plain->data = a;
    if (tp->closing) {
        acc_drop(a, NULL);
        return;
    }
    uv_timer_start(&a->timer, acc_timeout, tp->handshake_timeout_ms, 0);
    if (uv_read_start(a->tcp, acc_alloc, acc_read) != 0)
        acc_drop(a, "cannot read");
}

static void acc_start_tls(struct tacc *a)
{
    struct tp *tp = a->tp;
    tune_socket(a->tcp, tp->user_timeout_ms);
    if (tls_link_start(tp->loop, tp->tls, (uv_tcp_t *)a->tcp, 1, a->peer,
                       tp->handshake_timeout_ms, acc_tls_ready, a) != 0) {
        acc_drop(a, "out of memory starting TLS");
        return;
    }
    a->tcp = NULL; /* the link's now */
}

static int tp_connect(struct raft_uv_transport *t, struct raft_uv_connect *req, raft_id id,
                      const char *address, raft_uv_connect_cb cb)
{
    struct tp *tp = t->impl;
    (void)id;
    struct sockaddr_in sa;
    if (tp->closing)
        return RAFT_CANCELED;
    if (transport_addr_parse(address, &sa) != 0) {
        snprintf(t->errmsg, sizeof t->errmsg, "bad peer address \"%s\" (expected a.b.c.d:port)",
                 address);
        return RAFT_NOCONNECTION;
    }
    struct tconn *c = calloc(1, sizeof *c);
    uv_tcp_t *tcp = raft_malloc(sizeof *tcp);
    if (c == NULL || tcp == NULL) {
        free(c);
        raft_free(tcp);
        return RAFT_NOMEM;
    }
    c->tp = tp;
    c->req = req;
    snprintf(c->addr, sizeof c->addr, "%s", address);
    req->cb = cb;
    c->tcp = (uv_stream_t *)tcp;
    uv_tcp_init(tp->loop, tcp);
    tcp->data = c;
    uv_timer_init(tp->loop, &c->timer);
    c->timer.data = c;
    c->connect.data = c;
    LIST_ADD(tp->conns, c);
    int rv = uv_tcp_connect(&c->connect, tcp, (const struct sockaddr *)&sa, conn_connected);
    if (rv != 0) {
        /* Fail asynchronously: raft expects the callback later either way. */
        conn_fail(c, RAFT_NOCONNECTION);
        return 0;
    }
    uv_timer_start(&c->timer, conn_timeout, tp->connect_timeout_ms, 0);
    return 0;
}

/* --- inbound ---------------------------------------------------------------- */

static void acc_handle_closed(uv_handle_t *h)
{
    struct tacc *a = h->data;
    if (h == (uv_handle_t *)a->tcp)
        raft_free(a->tcp);
    if (--a->pending_closes > 0)
        return;
    struct tp *tp = a->tp;
    LIST_DEL(tp->accs, a);
    free(a->answer);
    free(a);
    maybe_closed(tp);
}

static void acc_drop(struct tacc *a, const char *why)
{
    if (a->pending_closes > 0)
        return;
    if (a->tcp == NULL)
        return; /* TLS: the link's handshake runs; its callback finishes */
    if (why != NULL) {
        a->tp->stats.handshake_failures++;
        log_warn("raft", "dropped connection from %s: %s", a->peer, why);
    }
    a->pending_closes = a->handed_over ? 1 : 2;
    uv_close((uv_handle_t *)&a->timer, acc_handle_closed);
    if (!a->handed_over)
        uv_close((uv_handle_t *)a->tcp, acc_handle_closed);
}

static void acc_timeout(uv_timer_t *timer)
{
    acc_drop(timer->data, "handshake not completed in time");
}

static void acc_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct tacc *a = h->data;
    (void)suggested;
    /* Exactly the bytes still missing from the hello (or the MAC): anything
     * after it belongs to raft and must stay in the socket. */
    if (a->reading_mac)
        *buf = uv_buf_init((char *)a->mac + a->mac_have, (unsigned)(sizeof a->mac - a->mac_have));
    else
        *buf = uv_buf_init((char *)a->buf + a->have, (unsigned)(a->want - a->have));
}

static void probe_answer_written(uv_write_t *w, int status)
{
    struct tacc *a = w->data;
    (void)status;
    acc_drop(a, NULL);
}

static void acc_answer_probe(struct tacc *a)
{
    struct tp *tp = a->tp;
    char *json = tp->probe != NULL ? tp->probe(tp->probe_ctx) : NULL;
    size_t n = json != NULL ? strlen(json) : 0;
    if (n > TRANSPORT_PROBE_MAX)
        n = 0;
    a->answer = malloc(4 + n);
    if (a->answer == NULL) {
        free(json);
        acc_drop(a, "out of memory answering a probe");
        return;
    }
    a->answer[0] = (uint8_t)(n >> 24);
    a->answer[1] = (uint8_t)(n >> 16);
    a->answer[2] = (uint8_t)(n >> 8);
    a->answer[3] = (uint8_t)n;
    if (n > 0)
        memcpy(a->answer + 4, json, n);
    free(json);
    tp->stats.probes_answered++;
    uv_buf_t b = uv_buf_init((char *)a->answer, (unsigned)(4 + n));
    a->write.data = a;
    if (uv_write(&a->write, (uv_stream_t *)a->tcp, &b, 1, probe_answer_written) != 0)
        acc_drop(a, "cannot write probe answer");
}

/* The peer is who it says (or nobody asked): answer its probe or hand its
 * stream to raft. */
static void acc_proceed(struct tacc *a)
{
    struct tp *tp = a->tp;
    const struct transport_hello *h = &a->hello;
    if (h->kind == TRANSPORT_KIND_PROBE) {
        acc_answer_probe(a);
        return;
    }
    if (tp->accept_cb == NULL) {
        acc_drop(a, NULL); /* raft not started yet (first-start discovery): the peer retries */
        return;
    }
    if (tp->admit != NULL && !tp->admit(tp->probe_ctx, h->id, h->addr)) {
        char why[160];
        snprintf(why, sizeof why, "server %llu at %s is not in the Raft configuration",
                 (unsigned long long)h->id, h->addr);
        acc_drop(a, why);
        return;
    }
    tune_socket(a->tcp, tp->user_timeout_ms);
    a->handed_over = true;
    tp->stats.accepted++;
    uv_stream_t *stream = (uv_stream_t *)a->tcp;
    uint64_t id = h->id;
    char addr[TRANSPORT_ADDR_MAX + 1];
    snprintf(addr, sizeof addr, "%s", h->addr);
    acc_drop(a, NULL); /* closes only our timer */
    tp->accept_cb(tp->t, id, addr, stream);
}

static void acc_challenge_written(uv_write_t *w, int status)
{
    struct tacc *a = w->data;
    if (status != 0 && a->pending_closes == 0)
        acc_drop(a, uv_strerror(status));
}

/* A complete hello: check it against our settings, then prove ourselves
 * and wait for the peer's proof when a secret is configured. */
static void acc_hello_done(struct tacc *a)
{
    struct tp *tp = a->tp;
    const struct transport_hello *h = &a->hello;
    if (tp->secret != NULL && h->version != TRANSPORT_VERSION_AUTH) {
        a->tp->stats.auth_failures++;
        acc_drop(a, "the peer did not authenticate (raft.password is set here: is it set there?)");
        return;
    }
    if (tp->secret == NULL && h->version == TRANSPORT_VERSION_AUTH) {
        a->tp->stats.auth_failures++;
        acc_drop(a, "the peer authenticates but raft.password is not set here");
        return;
    }
    if (strcmp(h->scope, tp->scope) != 0) {
        char why[TRANSPORT_SCOPE_MAX + 96];
        snprintf(why, sizeof why, "peer belongs to cluster \"%s\", we are \"%s\"", h->scope,
                 tp->scope);
        acc_drop(a, why);
        return;
    }
    if (tp->secret == NULL) {
        uv_read_stop((uv_stream_t *)a->tcp);
        acc_proceed(a);
        return;
    }
    uint8_t mac[TRANSPORT_MAC_LEN];
    if (transport_auth_nonce(a->ns) != 0 ||
        transport_auth_mac(tp->secret, tp->secret_len, TRANSPORT_AUTH_SERVER, a->buf,
                           a->hello_len, h->nonce, a->ns, mac) != 0) {
        acc_drop(a, "cannot compute the authentication challenge");
        return;
    }
    transport_auth_challenge_encode(a->ns, mac, a->chal);
    a->reading_mac = true;
    uv_buf_t b = uv_buf_init((char *)a->chal, sizeof a->chal);
    a->chal_write.data = a;
    if (uv_write(&a->chal_write, (uv_stream_t *)a->tcp, &b, 1, acc_challenge_written) != 0)
        acc_drop(a, "cannot write the authentication challenge");
}

static void acc_mac_done(struct tacc *a)
{
    struct tp *tp = a->tp;
    uint8_t want[TRANSPORT_MAC_LEN];
    if (transport_auth_mac(tp->secret, tp->secret_len, TRANSPORT_AUTH_CLIENT, a->buf, a->hello_len,
                           a->hello.nonce, a->ns, want) != 0 ||
        !transport_auth_mac_equal(a->mac, want)) {
        tp->stats.auth_failures++;
        acc_drop(a, "authentication failed (wrong raft.password?)");
        return;
    }
    acc_proceed(a);
}

static void acc_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct tacc *a = s->data;
    (void)buf;
    if (a->pending_closes > 0)
        return;
    if (nread < 0) {
        if (a->reading_mac) {
            /* it read our challenge and hung up: its secret is not ours */
            a->tp->stats.auth_failures++;
            acc_drop(a, "authentication failed: the peer rejected our challenge "
                        "(wrong raft.password?)");
            return;
        }
        acc_drop(a, nread == UV_EOF ? NULL : uv_strerror((int)nread));
        return;
    }
    if (a->reading_mac) {
        a->mac_have += (size_t)nread;
        if (a->mac_have == sizeof a->mac) {
            uv_read_stop(s);
            acc_mac_done(a);
        }
        return;
    }
    a->have += (size_t)nread;
    char err[128];
    int rc = transport_hello_parse(a->buf, a->have, &a->hello, err, sizeof err);
    if (rc < 0) {
        acc_drop(a, err);
        return;
    }
    if (rc == 0) {
        /* Need more: the fixed part tells how much in total. */
        if (a->have >= TRANSPORT_HELLO_FIXED)
            a->want = transport_hello_size(a->buf);
        return;
    }
    a->hello_len = (size_t)rc - (a->hello.version == TRANSPORT_VERSION_AUTH ? TRANSPORT_NONCE_LEN : 0);
    acc_hello_done(a);
}

static void on_connection(uv_stream_t *server, int status)
{
    struct tp *tp = server->data;
    if (status != 0 || tp->closing)
        return;
    struct tacc *a = calloc(1, sizeof *a);
    uv_tcp_t *tcp = raft_malloc(sizeof *tcp);
    if (a == NULL || tcp == NULL) {
        free(a);
        raft_free(tcp);
        return;
    }
    a->tp = tp;
    a->tcp = (uv_stream_t *)tcp;
    uv_tcp_init(tp->loop, tcp);
    tcp->data = a;
    uv_timer_init(tp->loop, &a->timer);
    a->timer.data = a;
    a->want = TRANSPORT_HELLO_FIXED;
    LIST_ADD(tp->accs, a);
    if (uv_accept(server, (uv_stream_t *)tcp) != 0) {
        snprintf(a->peer, sizeof a->peer, "?");
        acc_drop(a, "accept failed");
        return;
    }
    struct sockaddr_storage ss;
    int len = sizeof ss;
    snprintf(a->peer, sizeof a->peer, "?");
    if (uv_tcp_getpeername(tcp, (struct sockaddr *)&ss, &len) == 0 && ss.ss_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)&ss;
        char ip[INET_ADDRSTRLEN];
        uv_ip4_name(sin, ip, sizeof ip);
        snprintf(a->peer, sizeof a->peer, "%s:%u", ip, ntohs(sin->sin_port));
    }
    if (tp->tls != NULL) { /* TLS: the hello is read once the link is up */
        acc_start_tls(a);
        return;
    }
    uv_timer_start(&a->timer, acc_timeout, tp->handshake_timeout_ms, 0);
    if (uv_read_start((uv_stream_t *)tcp, acc_alloc, acc_read) != 0)
        acc_drop(a, "cannot read");
}

/* --- raft_uv_transport methods ---------------------------------------------- */

static int tp_init(struct raft_uv_transport *t, raft_id id, const char *address)
{
    struct tp *tp = t->impl;
    tp->id = id;
    snprintf(tp->address, sizeof tp->address, "%s", address);
    return 0;
}

static int start_listening(struct tp *tp, const char *bind)
{
    struct raft_uv_transport *t = tp->t;
    struct sockaddr_in sa;
    if (transport_addr_parse(bind, &sa) != 0) {
        snprintf(t->errmsg, sizeof t->errmsg, "raft address \"%s\" is not a.b.c.d:port", bind);
        return RAFT_INVALID;
    }
    uv_tcp_init(tp->loop, &tp->listener);
    tp->listener.data = tp;
    tp->listener_open = true;
    int rv = uv_tcp_bind(&tp->listener, (const struct sockaddr *)&sa, 0);
    if (rv == 0)
        rv = uv_listen((uv_stream_t *)&tp->listener, 128, on_connection);
    if (rv != 0) {
        snprintf(t->errmsg, sizeof t->errmsg, "cannot listen on %s: %s", bind, uv_strerror(rv));
        return RAFT_IOERR;
    }
    tp->listening = true;
    return 0;
}

static int tp_listen(struct raft_uv_transport *t, raft_uv_accept_cb cb)
{
    struct tp *tp = t->impl;
    if (!tp->listening) {
        int rv = start_listening(tp, tp->bind_addr != NULL ? tp->bind_addr : tp->address);
        if (rv != 0)
            return rv;
    }
    tp->accept_cb = cb;
    return 0;
}

int transport_listen_early(struct raft_uv_transport *t, const char *address, char *err, size_t errlen)
{
    struct tp *tp = t->impl;
    if (tp->listening)
        return PGW_OK;
    int rv = start_listening(tp, tp->bind_addr != NULL ? tp->bind_addr : address);
    if (rv != 0) {
        snprintf(err, errlen, "%s", t->errmsg);
        return rv == RAFT_INVALID ? PGW_EINVAL : PGW_EIO;
    }
    return PGW_OK;
}

static void listener_closed(uv_handle_t *h)
{
    struct tp *tp = h->data;
    tp->listener_open = false;
    maybe_closed(tp);
}

static void defer_closed(uv_handle_t *h)
{
    struct tp *tp = h->data;
    tp->deferring = false;
    maybe_closed(tp);
}

static void tp_close(struct raft_uv_transport *t, raft_uv_transport_close_cb cb)
{
    struct tp *tp = t->impl;
    tp->closing = true;
    tp->close_cb = cb;
    for (struct tconn *c = tp->conns; c != NULL; c = c->next)
        if (c->pending_closes == 0)
            conn_fail(c, RAFT_CANCELED);
    for (struct tacc *a = tp->accs; a != NULL; a = a->next)
        acc_drop(a, NULL);
    tls_link_ctx_close_all(tp->tls); /* TLS: handshakes end with PGW_ECANCELED */
    if (tp->listener_open && !uv_is_closing((uv_handle_t *)&tp->listener))
        uv_close((uv_handle_t *)&tp->listener, listener_closed);
    /* Raft must not see its callback inside its own close call, even when
     * nothing was pending: a throwaway handle's close defers it a tick. */
    tp->deferring = true;
    uv_timer_init(tp->loop, &tp->defer);
    tp->defer.data = tp;
    uv_close((uv_handle_t *)&tp->defer, defer_closed);
}

int transport_setup(struct raft_uv_transport *t, const struct transport_opts *o)
{
    memset(t, 0, sizeof *t);
    struct tp *tp = calloc(1, sizeof *tp);
    if (tp == NULL)
        return PGW_ENOMEM;
    tp->t = t;
    tp->loop = o->loop;
    tp->scope = strdup(o->scope);
    tp->bind_addr = o->bind_addr != NULL ? strdup(o->bind_addr) : NULL;
    tp->connect_timeout_ms = o->connect_timeout_ms ? o->connect_timeout_ms : 1000;
    tp->handshake_timeout_ms = o->handshake_timeout_ms ? o->handshake_timeout_ms : 2000;
    tp->user_timeout_ms = o->user_timeout_ms;
    tp->probe = o->probe;
    tp->probe_ctx = o->probe_ctx;
    tp->admit = o->admit;
    tp->tls = o->sec.tls; /* TLS */
    if (o->sec.secret != NULL && o->sec.secret_len > 0) {
        tp->secret = malloc(o->sec.secret_len);
        if (tp->secret == NULL) {
            free(tp->scope);
            free(tp->bind_addr);
            free(tp);
            return PGW_ENOMEM;
        }
        memcpy(tp->secret, o->sec.secret, o->sec.secret_len);
        tp->secret_len = o->sec.secret_len;
    }
    if (tp->scope == NULL || strlen(tp->scope) == 0 || strlen(tp->scope) > TRANSPORT_SCOPE_MAX) {
        free(tp->scope);
        free(tp->bind_addr);
        free(tp->secret);
        free(tp);
        return PGW_EINVAL;
    }
    t->impl = tp;
    t->init = tp_init;
    t->listen = tp_listen;
    t->connect = tp_connect;
    t->close = tp_close;
    return PGW_OK;
}

void transport_free(struct raft_uv_transport *t)
{
    struct tp *tp = t->impl;
    if (tp == NULL)
        return;
    free(tp->scope);
    free(tp->bind_addr);
    if (tp->secret != NULL) {
        OPENSSL_cleanse(tp->secret, tp->secret_len);
        free(tp->secret);
    }
    free(tp);
    t->impl = NULL;
}

void transport_get_stats(const struct raft_uv_transport *t, struct transport_stats *out)
{
    const struct tp *tp = t->impl;
    *out = tp->stats;
}
