/* TLS links under the Raft transport (see tls_link.h for why and the wire).
 *
 * Happy path: tls_link_start -> read the TCP socket into a memory BIO,
 * SSL_do_handshake, write what OpenSSL produced -> handshake done: the
 * server sends the confirmation byte, the client waits for it -> socketpair,
 * our end read, the other end handed to the caller (cb status 0) -> pump:
 * TCP -> SSL_read -> pipe, pipe -> SSL_write -> TCP, each direction paused
 * while its destination has more than LINK_BACKLOG bytes queued and resumed
 * from that destination's write callback -> either side ends (the caller
 * closes its stream, or the peer sends close_notify / FIN): close_notify,
 * uv_shutdown of both sockets after their queued bytes, then close.
 *
 * Failure modes:
 * - handshake refused either way (certificate not signed by the CA,
 *   expired, missing; no common protocol; plain TCP or garbage): the alert
 *   is flushed, cb(PGW_EREFUSED, "TLS handshake with <peer> failed: <reason>");
 * - the handshake deadline passes (silent peer): cb(PGW_ETIMEDOUT);
 * - the peer closes or resets during the handshake: cb(PGW_EIO);
 * - tls_link_ctx_close_all during the handshake: cb(PGW_ECANCELED);
 * - after the hand-over: a socket error, a TLS error or a close on either
 *   side closes the whole link; the caller sees EOF or a write error on its
 *   plain stream (TLS errors, which a disconnect does not cause, are logged
 *   as warnings with the peer and reason; resets only at debug level);
 * - a graceful close that cannot flush (peer not reading) is cut after
 *   LINK_CLOSE_MS.
 * Every handle is closed with uv_close; the link is freed, and a pending
 * failure callback run, only in the last close callback. */
#include "raft/tls_link.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <raft.h>

#include "common/log.h"

#define LINK_BACKLOG (4u << 20) /* bytes queued on a destination before its source pauses */
#define LINK_CHUNK (64 * 1024)
#define LINK_CLOSE_MS 2000      /* graceful close: flush and shutdown deadline */
#define LINK_CONFIRM 0x01       /* the server's first application byte */

enum link_state { LS_HANDSHAKE, LS_CONFIRM, LS_OPEN, LS_CLOSING };

struct tls_link_ctx {
    SSL_CTX *ssl; /* for new links; an SSL holds a reference to its own */
    char *certfile, *keyfile, *cafile;
    unsigned refs; /* the owner's + one per live link */
    struct tls_link *links;
    struct tls_link_stats stats;
};

struct tls_link {
    struct tls_link_ctx *ctx;
    uv_loop_t *loop;
    enum link_state state;
    int is_server;
    uint32_t timeout_ms;
    uv_tcp_t *tcp;    /* the caller's raft_malloc'd socket, ours now */
    uv_timer_t timer; /* handshake deadline, then the close deadline */
    uv_pipe_t pipe;   /* our end of the socketpair */
    bool pipe_open;
    bool tcp_paused, pipe_paused; /* reading stopped by backpressure */
    bool closing_handles;
    bool cb_done;
    int open_handles;
    int shutdowns; /* uv_shutdown requests in flight */
    uv_shutdown_t sd_tcp, sd_pipe;
    SSL *ssl;
    BIO *rbio, *wbio; /* owned by ssl */
    int status;       /* failure to report */
    char detail[384];
    char peer[72];
    char cn[128];
    tls_link_cb cb;
    void *data;
    struct tls_link *next, *prev;
    char tcp_buf[LINK_CHUNK];   /* ciphertext read; consumed by BIO_write at once */
    char pipe_buf[LINK_CHUNK];  /* plaintext read; consumed by SSL_write at once */
    char plain_buf[LINK_CHUNK]; /* SSL_read output before it is copied out */
};

/* One uv_write of a copy of the data. */
struct link_write {
    uv_write_t req;
    struct tls_link *l;
    char data[];
};

/* --- errors ------------------------------------------------------------------ */

/* OpenSSL's queued reasons, "; "-separated, duplicates dropped; empties the
 * queue. */
static void ssl_reasons(char *buf, size_t len)
{
    size_t o = 0;
    unsigned long e;
    buf[0] = '\0';
    while ((e = ERR_get_error()) != 0) {
        char code[40];
        const char *r = ERR_reason_error_string(e);
        if (r == NULL) {
            snprintf(code, sizeof code, "OpenSSL error %lx", e);
            r = code;
        }
        if (o >= len - 1 || strstr(buf, r) != NULL)
            continue;
        int n = snprintf(buf + o, len - o, "%s%s", o > 0 ? "; " : "", r);
        if (n > 0)
            o += (size_t)n;
    }
}

/* Why the handshake (or the confirmation read) failed, for the callback. */
static void describe_failure(const struct tls_link *l, int ssl_err, char *out, size_t outlen)
{
    char why[256];
    ssl_reasons(why, sizeof why);
    long v = SSL_get_verify_result(l->ssl);
    if (v != X509_V_OK) {
        size_t o = strlen(why);
        snprintf(why + o, sizeof why - o, "%s(%s)", o > 0 ? " " : "",
                 X509_verify_cert_error_string(v));
    }
    if (why[0] == '\0')
        snprintf(why, sizeof why, "%s",
                 ssl_err == SSL_ERROR_ZERO_RETURN ? "the peer closed the TLS session"
                                                  : "the peer closed the connection");
    const char *hint = "";
    if (strstr(why, "wrong version number") != NULL || strstr(why, "http request") != NULL ||
        strstr(why, "packet length too long") != NULL || strstr(why, "unknown protocol") != NULL)
        hint = " (the peer does not speak TLS: is raft TLS configured there?)";
    snprintf(out, outlen, "TLS handshake with %s failed: %s%s", l->peer, why, hint);
}

/* --- teardown ------------------------------------------------------------------ */

static void ctx_unref(struct tls_link_ctx *ctx)
{
    if (--ctx->refs > 0)
        return;
    SSL_CTX_free(ctx->ssl);
    free(ctx->certfile);
    free(ctx->keyfile);
    free(ctx->cafile);
    free(ctx);
}

static void link_finish(struct tls_link *l)
{
    struct tls_link_ctx *ctx = l->ctx;
    if (l->prev != NULL)
        l->prev->next = l->next;
    else
        ctx->links = l->next;
    if (l->next != NULL)
        l->next->prev = l->prev;
    ctx->stats.live--;
    if (!l->cb_done) {
        l->cb_done = true;
        ctx->stats.failed++;
        l->cb(l->status != 0 ? l->status : PGW_EIO, NULL, l->detail, l->data);
    }
    SSL_free(l->ssl);
    free(l);
    ctx_unref(ctx);
}

static void handle_closed(uv_handle_t *h)
{
    struct tls_link *l = h->data;
    if (h == (uv_handle_t *)l->tcp)
        raft_free(l->tcp);
    if (--l->open_handles > 0)
        return;
    link_finish(l);
}

static void close_handles(struct tls_link *l)
{
    if (l->closing_handles)
        return;
    l->closing_handles = true;
    l->state = LS_CLOSING;
    l->open_handles = l->pipe_open ? 3 : 2;
    uv_close((uv_handle_t *)l->tcp, handle_closed);
    uv_close((uv_handle_t *)&l->timer, handle_closed);
    if (l->pipe_open)
        uv_close((uv_handle_t *)&l->pipe, handle_closed);
}

/* Record why the link failed, unless the callback already ran (then the
 * detail is only logged by the caller of this function, if at all). */
static void set_failure(struct tls_link *l, int status, const char *detail)
{
    if (l->cb_done || l->status != 0)
        return;
    l->status = status;
    snprintf(l->detail, sizeof l->detail, "%s", detail);
}

/* Close at once, dropping whatever is queued. */
static void link_abort(struct tls_link *l, int status, const char *detail)
{
    set_failure(l, status, detail);
    close_handles(l);
}

static int flush_out(struct tls_link *l);
static void on_timer(uv_timer_t *t);

static void shutdown_done(uv_shutdown_t *req, int status)
{
    struct tls_link *l = req->data;
    (void)status;
    if (--l->shutdowns == 0)
        close_handles(l);
}

/* Close after what is queued has gone out: close_notify to the peer, then
 * FIN on both sockets, all within LINK_CLOSE_MS. */
static void link_close(struct tls_link *l, int status, const char *detail)
{
    if (l->state == LS_CLOSING)
        return;
    bool established = l->state == LS_OPEN;
    l->state = LS_CLOSING;
    set_failure(l, status, detail);
    uv_read_stop((uv_stream_t *)l->tcp);
    if (l->pipe_open)
        uv_read_stop((uv_stream_t *)&l->pipe);
    if (established) {
        ERR_clear_error();
        (void)SSL_shutdown(l->ssl); /* queues close_notify; the answer is not awaited */
        ERR_clear_error();
    }
    (void)flush_out(l);
    l->sd_tcp.data = l;
    l->sd_pipe.data = l;
    if (uv_shutdown(&l->sd_tcp, (uv_stream_t *)l->tcp, shutdown_done) == 0)
        l->shutdowns++;
    if (l->pipe_open && uv_shutdown(&l->sd_pipe, (uv_stream_t *)&l->pipe, shutdown_done) == 0)
        l->shutdowns++;
    uv_timer_stop(&l->timer);
    if (l->shutdowns == 0)
        close_handles(l);
    else
        uv_timer_start(&l->timer, on_timer, LINK_CLOSE_MS, 0);
}

static void on_timer(uv_timer_t *t)
{
    struct tls_link *l = t->data;
    if (l->state == LS_CLOSING) {
        close_handles(l); /* the graceful close did not finish in time */
        return;
    }
    char d[sizeof l->detail];
    snprintf(d, sizeof d, "TLS handshake with %s not completed within %u ms", l->peer,
             (unsigned)l->timeout_ms);
    link_abort(l, PGW_ETIMEDOUT, d);
}

/* --- writes -------------------------------------------------------------------- */

static struct link_write *write_new(struct tls_link *l, size_t n)
{
    struct link_write *w = malloc(sizeof *w + n);
    if (w != NULL) {
        w->l = l;
        w->req.data = w;
    }
    return w;
}

static void resume_pipe(struct tls_link *l);
static void drain_in(struct tls_link *l);

static void tcp_written(uv_write_t *req, int status)
{
    struct link_write *w = req->data;
    struct tls_link *l = w->l;
    free(w);
    if (l->state == LS_CLOSING)
        return;
    if (status != 0) {
        char d[sizeof l->detail];
        snprintf(d, sizeof d, "TLS connection with %s: write: %s", l->peer, uv_strerror(status));
        if (l->cb_done) /* an ordinary disconnect, as on plain TCP */
            log_debug("raft", "%s", d);
        link_abort(l, PGW_EIO, d);
        return;
    }
    if (l->pipe_paused && l->tcp->write_queue_size <= LINK_BACKLOG)
        resume_pipe(l);
}

/* Everything OpenSSL has produced (handshake records, alerts, application
 * records, close_notify) goes to the socket in one write. */
static int flush_out(struct tls_link *l)
{
    size_t n = BIO_ctrl_pending(l->wbio);
    if (n == 0)
        return 0;
    struct link_write *w = write_new(l, n);
    if (w == NULL)
        return PGW_ENOMEM;
    int got = BIO_read(l->wbio, w->data, (int)n);
    if (got <= 0) {
        free(w);
        return PGW_EIO;
    }
    uv_buf_t b = uv_buf_init(w->data, (unsigned)got);
    int rv = uv_write(&w->req, (uv_stream_t *)l->tcp, &b, 1, tcp_written);
    if (rv != 0) {
        free(w);
        return PGW_EIO;
    }
    return 0;
}

static void pipe_written(uv_write_t *req, int status)
{
    struct link_write *w = req->data;
    struct tls_link *l = w->l;
    free(w);
    if (l->state == LS_CLOSING)
        return;
    if (status != 0) {
        link_close(l, PGW_EIO, "the local end closed"); /* the caller closed its stream */
        return;
    }
    if (l->tcp_paused && l->pipe.write_queue_size <= LINK_BACKLOG)
        drain_in(l);
}

/* --- pumping --------------------------------------------------------------------- */

static void tcp_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct tls_link *l = h->data;
    (void)suggested;
    *buf = uv_buf_init(l->tcp_buf, sizeof l->tcp_buf);
}

static void pipe_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct tls_link *l = h->data;
    (void)suggested;
    *buf = uv_buf_init(l->pipe_buf, sizeof l->pipe_buf);
}

static void tcp_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void pipe_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

/* A TLS error on an established link: log it (the caller only sees EOF). */
static void open_failed(struct tls_link *l, const char *what)
{
    char why[256];
    ssl_reasons(why, sizeof why);
    log_warn("raft", "TLS connection with %s (%s) closed: %s%s%s", l->peer,
             l->cn[0] ? l->cn : "no CN", what, why[0] ? ": " : "", why);
    link_abort(l, PGW_EIO, what);
}

/* Decrypt what the TCP side brought and pass it to the pipe, as long as the
 * pipe's queue allows; otherwise stop reading TCP until pipe_written. */
static void drain_in(struct tls_link *l)
{
    while (l->state == LS_OPEN) {
        if (l->pipe.write_queue_size > LINK_BACKLOG) {
            if (!l->tcp_paused) {
                uv_read_stop((uv_stream_t *)l->tcp);
                l->tcp_paused = true;
                l->ctx->stats.paused++;
            }
            return;
        }
        size_t got = 0;
        int end = SSL_ERROR_NONE;
        while (got < sizeof l->plain_buf) {
            ERR_clear_error();
            int r = SSL_read(l->ssl, l->plain_buf + got, (int)(sizeof l->plain_buf - got));
            if (r > 0) {
                got += (size_t)r;
                continue;
            }
            end = SSL_get_error(l->ssl, r);
            break;
        }
        if (flush_out(l) != 0) {
            open_failed(l, "cannot write to the socket");
            return;
        }
        if (got > 0) {
            struct link_write *w = write_new(l, got);
            if (w == NULL) {
                open_failed(l, "out of memory");
                return;
            }
            memcpy(w->data, l->plain_buf, got);
            uv_buf_t b = uv_buf_init(w->data, (unsigned)got);
            if (uv_write(&w->req, (uv_stream_t *)&l->pipe, &b, 1, pipe_written) != 0) {
                free(w);
                link_close(l, PGW_EIO, "the local end closed");
                return;
            }
        }
        if (end == SSL_ERROR_NONE)
            continue; /* a full chunk: there may be more */
        if (end == SSL_ERROR_WANT_READ) {
            if (l->tcp_paused) {
                l->tcp_paused = false;
                if (uv_read_start((uv_stream_t *)l->tcp, tcp_alloc, tcp_read) != 0)
                    link_abort(l, PGW_EIO, "cannot read the socket");
            }
            return;
        }
        if (end == SSL_ERROR_ZERO_RETURN) {
            link_close(l, PGW_EIO, "the peer closed the TLS session");
            return;
        }
        open_failed(l, "TLS error");
        return;
    }
}

static void resume_pipe(struct tls_link *l)
{
    l->pipe_paused = false;
    if (uv_read_start((uv_stream_t *)&l->pipe, pipe_alloc, pipe_read) != 0)
        link_abort(l, PGW_EIO, "cannot read the local end");
}

/* Plaintext from the caller: encrypt and send. */
static void pipe_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct tls_link *l = s->data;
    if (l->state != LS_OPEN || nread == 0)
        return;
    if (nread < 0) {
        link_close(l, PGW_EIO, "the local end closed"); /* EOF: the caller closed its stream */
        return;
    }
    ERR_clear_error();
    if (SSL_write(l->ssl, buf->base, (int)nread) != (int)nread) {
        open_failed(l, "cannot encrypt");
        return;
    }
    if (flush_out(l) != 0) {
        open_failed(l, "cannot write to the socket");
        return;
    }
    if (l->tcp->write_queue_size > LINK_BACKLOG) {
        uv_read_stop((uv_stream_t *)&l->pipe);
        l->pipe_paused = true;
        l->ctx->stats.paused++;
    }
}

/* --- handshake ----------------------------------------------------------------- */

static void peer_cn(struct tls_link *l)
{
    X509 *cert = SSL_get1_peer_certificate(l->ssl);
    l->cn[0] = '\0';
    if (cert == NULL)
        return;
    int n = X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, l->cn,
                                      (int)sizeof l->cn);
    X509_free(cert);
    if (n < 0) {
        l->cn[0] = '\0';
        return;
    }
    for (char *p = l->cn; *p != '\0'; p++) /* it goes into log lines */
        if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
            *p = '?';
}

static void plain_closed(uv_handle_t *h)
{
    raft_free(h);
}

/* Both sides accepted: create the socketpair and hand its other end over. */
static void become_open(struct tls_link *l)
{
    uv_timer_stop(&l->timer);
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
        char d[sizeof l->detail];
        snprintf(d, sizeof d, "TLS with %s: cannot create a socketpair: %s", l->peer,
                 strerror(errno));
        link_abort(l, PGW_EIO, d);
        return;
    }
    uv_pipe_t *plain = raft_malloc(sizeof *plain);
    if (plain == NULL || uv_pipe_init(l->loop, &l->pipe, 0) != 0) {
        raft_free(plain);
        close(sv[0]);
        close(sv[1]);
        link_abort(l, PGW_ENOMEM, "out of memory");
        return;
    }
    l->pipe.data = l;
    l->pipe_open = true;
    int rv = uv_pipe_open(&l->pipe, sv[0]);
    if (rv != 0) {
        close(sv[0]);
        close(sv[1]);
        raft_free(plain);
        link_abort(l, PGW_EIO, "cannot open the socketpair");
        return;
    }
    (void)uv_pipe_init(l->loop, plain, 0);
    rv = uv_pipe_open(plain, sv[1]);
    if (rv != 0)
        close(sv[1]); /* not plain's yet */
    else
        rv = uv_read_start((uv_stream_t *)&l->pipe, pipe_alloc, pipe_read);
    if (rv != 0) {
        uv_close((uv_handle_t *)plain, plain_closed);
        link_abort(l, PGW_EIO, "cannot use the socketpair");
        return;
    }
    l->state = LS_OPEN;
    l->cb_done = true;
    l->ctx->stats.established++;
    l->cb(0, (uv_stream_t *)plain, l->cn, l->data);
    /* application data that arrived with the handshake */
    if (l->state == LS_OPEN)
        drain_in(l);
}

/* Client: the server's confirmation byte says it accepted our certificate. */
static void read_confirm(struct tls_link *l)
{
    unsigned char b;
    ERR_clear_error();
    int r = SSL_read(l->ssl, &b, 1);
    int e = r == 1 ? SSL_ERROR_NONE : SSL_get_error(l->ssl, r);
    if (r == 1 && b == LINK_CONFIRM) {
        become_open(l);
        return;
    }
    if (r == 1) {
        char d[sizeof l->detail];
        snprintf(d, sizeof d, "TLS handshake with %s failed: the peer is not a pgwarden Raft "
                 "endpoint (unexpected first byte 0x%02x)", l->peer, b);
        link_close(l, PGW_EPROTO, d);
        return;
    }
    if (flush_out(l) != 0) {
        link_abort(l, PGW_EIO, "cannot write to the socket");
        return;
    }
    if (e == SSL_ERROR_WANT_READ)
        return;
    char d[sizeof l->detail];
    describe_failure(l, e, d, sizeof d);
    link_close(l, PGW_EREFUSED, d);
}

static void advance_handshake(struct tls_link *l)
{
    ERR_clear_error();
    int r = SSL_do_handshake(l->ssl);
    int e = r == 1 ? SSL_ERROR_NONE : SSL_get_error(l->ssl, r);
    if (e != SSL_ERROR_NONE && e != SSL_ERROR_WANT_READ) {
        /* Keep the reason before anything else touches the error queue;
         * the alert OpenSSL produced still goes out below. */
        char d[sizeof l->detail];
        describe_failure(l, e, d, sizeof d);
        (void)flush_out(l);
        link_close(l, e == SSL_ERROR_SSL ? PGW_EREFUSED : PGW_EIO, d);
        return;
    }
    if (flush_out(l) != 0) {
        link_abort(l, PGW_EIO, "cannot write to the socket");
        return;
    }
    if (e == SSL_ERROR_WANT_READ)
        return;
    peer_cn(l);
    if (l->is_server) {
        unsigned char b = LINK_CONFIRM;
        ERR_clear_error();
        if (SSL_write(l->ssl, &b, 1) != 1 || flush_out(l) != 0) {
            link_abort(l, PGW_EIO, "cannot write to the socket");
            return;
        }
        become_open(l);
        return;
    }
    l->state = LS_CONFIRM;
    read_confirm(l);
}

static void tcp_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct tls_link *l = s->data;
    if (l->state == LS_CLOSING || nread == 0)
        return;
    if (nread < 0) {
        char d[sizeof l->detail];
        if (l->state != LS_OPEN) {
            snprintf(d, sizeof d, "TLS handshake with %s failed: %s", l->peer,
                     nread == UV_EOF ? "the peer closed the connection without a TLS alert "
                                       "(is raft TLS configured there?)"
                                     : uv_strerror((int)nread));
            link_abort(l, PGW_EIO, d);
        } else if (nread == UV_EOF) {
            link_close(l, PGW_EIO, "the peer closed the connection"); /* no close_notify */
        } else { /* a reset: an ordinary disconnect, as on plain TCP */
            log_debug("raft", "TLS connection with %s (%s) closed: %s", l->peer,
                      l->cn[0] ? l->cn : "no CN", uv_strerror((int)nread));
            link_abort(l, PGW_EIO, "socket error");
        }
        return;
    }
    if (BIO_write(l->rbio, buf->base, (int)nread) != (int)nread) {
        link_abort(l, PGW_ENOMEM, "out of memory");
        return;
    }
    switch (l->state) {
    case LS_HANDSHAKE: advance_handshake(l); break;
    case LS_CONFIRM: read_confirm(l); break;
    case LS_OPEN: drain_in(l); break;
    case LS_CLOSING: break;
    }
}

int tls_link_start(uv_loop_t *loop, struct tls_link_ctx *ctx, uv_tcp_t *tcp, int is_server,
                   const char *peer_label, uint32_t handshake_timeout_ms, tls_link_cb cb,
                   void *data)
{
    if (loop == NULL || ctx == NULL || tcp == NULL || cb == NULL || handshake_timeout_ms == 0)
        return PGW_EINVAL;
    struct tls_link *l = calloc(1, sizeof *l);
    if (l == NULL)
        return PGW_ENOMEM;
    l->ssl = SSL_new(ctx->ssl);
    l->rbio = BIO_new(BIO_s_mem());
    l->wbio = BIO_new(BIO_s_mem());
    if (l->ssl == NULL || l->rbio == NULL || l->wbio == NULL) {
        BIO_free(l->rbio);
        BIO_free(l->wbio);
        SSL_free(l->ssl);
        free(l);
        ERR_clear_error();
        return PGW_ENOMEM;
    }
    /* an empty read BIO means "wait for more", not end of stream */
    BIO_set_mem_eof_return(l->rbio, -1);
    SSL_set_bio(l->ssl, l->rbio, l->wbio);
    if (is_server)
        SSL_set_accept_state(l->ssl);
    else
        SSL_set_connect_state(l->ssl);
    l->ctx = ctx;
    ctx->refs++;
    ctx->stats.live++;
    l->next = ctx->links;
    if (ctx->links != NULL)
        ctx->links->prev = l;
    ctx->links = l;
    l->loop = loop;
    l->is_server = is_server;
    l->timeout_ms = handshake_timeout_ms;
    l->cb = cb;
    l->data = data;
    snprintf(l->peer, sizeof l->peer, "%s", peer_label != NULL ? peer_label : "?");
    l->tcp = tcp;
    tcp->data = l;
    (void)uv_timer_init(loop, &l->timer);
    l->timer.data = l;
    l->state = LS_HANDSHAKE;
    /* From here on every failure is reported through cb, on a later tick:
     * close callbacks never run inside the call that closes. */
    if (uv_read_start((uv_stream_t *)tcp, tcp_alloc, tcp_read) != 0) {
        char d[sizeof l->detail];
        snprintf(d, sizeof d, "TLS with %s: cannot read the socket", l->peer);
        link_abort(l, PGW_EIO, d);
        return 0;
    }
    uv_timer_start(&l->timer, on_timer, handshake_timeout_ms, 0);
    if (!is_server)
        advance_handshake(l); /* the ClientHello */
    return 0;
}

/* --- context --------------------------------------------------------------------- */

/* A key with a passphrase is refused: nobody is there to type it. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return 0;
}

static int readable(const char *what, const char *path, char *err, size_t errlen)
{
    if (path == NULL || path[0] == '\0') {
        snprintf(err, errlen, "%s is not set", what);
        return PGW_EINVAL;
    }
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        snprintf(err, errlen, "%s %s: %s", what, path, strerror(errno));
        return PGW_EINVAL;
    }
    fclose(f);
    return 0;
}

/* Does the (PEM, small) file contain `word`? */
static bool file_mentions(const char *path, const char *word)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return false;
    char line[512];
    bool found = false;
    for (int i = 0; i < 10000 && !found && fgets(line, sizeof line, f) != NULL; i++)
        found = strstr(line, word) != NULL;
    fclose(f);
    return found;
}

/* Our own certificate must verify against the CA too: a mismatch found here
 * is one clear error at start instead of a refusal on every connection. */
static int check_own_chain(SSL_CTX *s, const char *certfile, const char *cafile, char *err,
                           size_t errlen)
{
    X509 *leaf = SSL_CTX_get0_certificate(s);
    STACK_OF(X509) *chain = NULL;
    (void)SSL_CTX_get0_chain_certs(s, &chain);
    X509_STORE_CTX *vc = X509_STORE_CTX_new();
    if (leaf == NULL || vc == NULL ||
        X509_STORE_CTX_init(vc, SSL_CTX_get_cert_store(s), leaf, chain) != 1) {
        X509_STORE_CTX_free(vc);
        snprintf(err, errlen, "certificate file %s: cannot check it against CA file %s",
                 certfile, cafile);
        return PGW_EINVAL;
    }
    int ok = X509_verify_cert(vc);
    int v = X509_STORE_CTX_get_error(vc);
    X509_STORE_CTX_free(vc);
    ERR_clear_error();
    if (ok != 1) {
        snprintf(err, errlen, "certificate file %s does not verify against CA file %s: %s",
                 certfile, cafile, X509_verify_cert_error_string(v));
        return PGW_EINVAL;
    }
    return 0;
}

static int build_ssl_ctx(const struct tls_link_ctx *c, SSL_CTX **out, char *err, size_t errlen)
{
    *out = NULL;
    int rv;
    if ((rv = readable("certificate file", c->certfile, err, errlen)) != 0 ||
        (rv = readable("key file", c->keyfile, err, errlen)) != 0 ||
        (rv = readable("CA file", c->cafile, err, errlen)) != 0)
        return rv;
    ERR_clear_error();
    SSL_CTX *s = SSL_CTX_new(TLS_method());
    char why[256];
    if (s == NULL) {
        ssl_reasons(why, sizeof why);
        snprintf(err, errlen, "cannot create a TLS context: %s", why);
        return PGW_ENOMEM;
    }
    /* TLS 1.2 at least (1.3 is OpenSSL's maximum and preferred); no
     * renegotiation, compression or session resumption: links are few and
     * long-lived. */
    SSL_CTX_set_min_proto_version(s, TLS1_2_VERSION);
    SSL_CTX_set_options(s, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION | SSL_OP_NO_TICKET |
                               SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_num_tickets(s, 0);
    SSL_CTX_set_session_cache_mode(s, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_default_passwd_cb(s, no_passphrase);
    const char *file = c->certfile, *what = "certificate file";
    if (SSL_CTX_use_certificate_chain_file(s, c->certfile) != 1)
        goto ssl_fail;
    file = c->keyfile;
    what = "key file";
    if (SSL_CTX_use_PrivateKey_file(s, c->keyfile, SSL_FILETYPE_PEM) != 1)
        goto ssl_fail;
    if (SSL_CTX_check_private_key(s) != 1) {
        ERR_clear_error();
        snprintf(err, errlen, "key file %s does not match certificate file %s", c->keyfile,
                 c->certfile);
        SSL_CTX_free(s);
        return PGW_EINVAL;
    }
    file = c->cafile;
    what = "CA file";
    if (SSL_CTX_load_verify_locations(s, c->cafile, NULL) != 1)
        goto ssl_fail;
    STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(c->cafile);
    if (names != NULL)
        SSL_CTX_set_client_CA_list(s, names); /* takes ownership */
    ERR_clear_error();
    SSL_CTX_set_verify(s, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    if ((rv = check_own_chain(s, c->certfile, c->cafile, err, errlen)) != 0) {
        SSL_CTX_free(s);
        return rv;
    }
    *out = s;
    return 0;

ssl_fail:
    ssl_reasons(why, sizeof why);
    SSL_CTX_free(s);
    if (strstr(why, "key values mismatch") != NULL) {
        snprintf(err, errlen, "key file %s does not match certificate file %s", c->keyfile,
                 c->certfile);
        return PGW_EINVAL;
    }
    snprintf(err, errlen, "%s %s: %s%s", what, file, why,
             file == c->keyfile && file_mentions(file, "ENCRYPTED")
                 ? " (the key is protected by a passphrase: not supported, nobody is there "
                   "to type it)"
                 : "");
    return PGW_EINVAL;
}

int tls_link_ctx_new(const char *certfile, const char *keyfile, const char *cafile,
                     struct tls_link_ctx **out, char *err, size_t errlen)
{
    *out = NULL;
    struct tls_link_ctx *c = calloc(1, sizeof *c);
    if (c == NULL) {
        snprintf(err, errlen, "out of memory");
        return PGW_ENOMEM;
    }
    c->refs = 1;
    c->certfile = certfile != NULL ? strdup(certfile) : NULL;
    c->keyfile = keyfile != NULL ? strdup(keyfile) : NULL;
    c->cafile = cafile != NULL ? strdup(cafile) : NULL;
    if ((certfile != NULL && c->certfile == NULL) || (keyfile != NULL && c->keyfile == NULL) ||
        (cafile != NULL && c->cafile == NULL)) {
        ctx_unref(c);
        snprintf(err, errlen, "out of memory");
        return PGW_ENOMEM;
    }
    int rv = build_ssl_ctx(c, &c->ssl, err, errlen);
    if (rv != 0) {
        ctx_unref(c);
        return rv;
    }
    *out = c;
    return 0;
}

int tls_link_ctx_reload(struct tls_link_ctx *ctx, char *err, size_t errlen)
{
    SSL_CTX *s;
    int rv = build_ssl_ctx(ctx, &s, err, errlen);
    if (rv != 0)
        return rv;
    SSL_CTX_free(ctx->ssl); /* established links keep a reference to theirs */
    ctx->ssl = s;
    return 0;
}

void tls_link_ctx_free(struct tls_link_ctx *ctx)
{
    if (ctx != NULL)
        ctx_unref(ctx);
}

void tls_link_ctx_close_all(struct tls_link_ctx *ctx)
{
    if (ctx == NULL)
        return;
    /* close_handles does not unlink (that happens in the last close
     * callback), so walking the list while closing is safe */
    for (struct tls_link *l = ctx->links; l != NULL; l = l->next) {
        if (l->closing_handles)
            continue;
        char d[sizeof l->detail];
        snprintf(d, sizeof d, "TLS handshake with %s cancelled: shutting down", l->peer);
        link_abort(l, PGW_ECANCELED, d);
    }
}

void tls_link_ctx_get_stats(const struct tls_link_ctx *ctx, struct tls_link_stats *out)
{
    *out = ctx->stats;
}
