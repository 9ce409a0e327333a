/* HTTPS for the REST server: the TLS implementation of struct http_io_ops,
 * OpenSSL over memory BIOs, so the socket stays a plain libuv stream on the
 * daemon's one loop.
 *
 * Happy path: accept -> SSL_new from the server's current SSL_CTX (a
 * reference: a reload swaps the server's context for new connections only)
 * -> ciphertext read from the socket goes into the read BIO -> the
 * handshake advances; its output is flushed from the write BIO with
 * uv_write -> once done, SSL_read decrypts into the connection's input
 * buffer (http_conn_input_reserve/commit) and the parser runs as for plain
 * HTTP -> a reply is SSL_write'n and its ciphertext written; the caller's
 * write callback runs when that uv_write completes -> closing: close_notify,
 * then the TCP shutdown.
 *
 * Failure modes:
 * - handshake never completed: the connection's first-byte deadline
 *   (request_timeout_ms from accept) closes it and frees its slot;
 * - handshake refused (no or bad client certificate with verify_client, no
 *   common protocol version, garbage): the alert is sent, the connection
 *   closed, stats.tls_handshake_failures counted and a line logged (rate
 *   limited: at most one per 10 s, with the number left unlogged);
 * - plain HTTP sent to the TLS port: answered with a plain-text 400 saying
 *   to use https://, then closed;
 * - a protocol error after the handshake: closed with OpenSSL's reason;
 * - input backlog full (pipelining while a request is out): the socket stops
 *   being read; what OpenSSL holds is decrypted when read_start runs again.
 *
 * Private keys are read from files only; a passphrase-protected key is
 * refused (no prompt, nothing logged about it). */
#include "api/http_internal.h"
#include "common/tls_errors.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "common/log.h"

#define TLS_RBUF_SIZE (64 * 1024)
#define TLS_LOG_EVERY_MS 10000

struct http_tls_conn {
    SSL *ssl;
    BIO *rbio, *wbio; /* owned by ssl */
    bool done;        /* handshake complete */
    bool verified;    /* a client certificate verified against the CA file */
    bool eof;         /* close_notify or the TCP end seen */
    bool failed;      /* handshake refused: only the alert goes out */
};

/* One ciphertext write. user_req/user_cb: the http_conn write it carries
 * (the callback runs when the ciphertext is written); close_why: close the
 * connection once written (an alert or a refusal). */
struct tls_wr {
    uv_write_t req;
    struct http_conn *c;
    uv_write_t *user_req;
    uv_write_cb user_cb;
    const char *close_why;
    char data[];
};

/* --- contexts ---------------------------------------------------------------- */

static int readable(const char *what, const char *path, char *errbuf, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        snprintf(errbuf, errlen, "%s %s: %s", what, path, strerror(errno));
        return PGW_EINVAL;
    }
    fclose(f);
    return PGW_OK;
}

static void describe_cert(SSL_CTX *ctx, const char *certfile)
{
    X509 *x = SSL_CTX_get0_certificate(ctx);
    if (x == NULL)
        return;
    char subject[256] = "?", until[64] = "?";
    X509_NAME_oneline(X509_get_subject_name(x), subject, sizeof subject);
    const ASN1_TIME *na = X509_get0_notAfter(x);
    struct tm tm;
    if (ASN1_TIME_to_tm(na, &tm) == 1)
        strftime(until, sizeof until, "%Y-%m-%d %H:%M:%S UTC", &tm);
    if (X509_cmp_current_time(na) < 0)
        log_warn("http", "TLS certificate %s (%s) EXPIRED on %s: clients will refuse it",
                 certfile, subject, until);
    else if (X509_cmp_current_time(X509_get0_notBefore(x)) > 0)
        log_warn("http", "TLS certificate %s (%s) is not valid yet", certfile, subject);
    else
        log_info("http", "TLS certificate %s: %s, valid until %s", certfile, subject, until);
}

int http_tls_ctx_new(const char *certfile, const char *keyfile, const char *cafile,
                     const char *verify_client, struct ssl_ctx_st **out, char *errbuf,
                     size_t errlen)
{
    int mode;
    *out = NULL;
    if (verify_client == NULL || strcmp(verify_client, "none") == 0)
        mode = SSL_VERIFY_NONE;
    else if (strcmp(verify_client, "optional") == 0)
        mode = SSL_VERIFY_PEER; /* asked for; missing is allowed, bad is refused */
    else if (strcmp(verify_client, "required") == 0)
        mode = SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
    else {
        snprintf(errbuf, errlen, "verify_client must be none, optional or required, not \"%s\"",
                 verify_client);
        return PGW_EINVAL;
    }
    if (certfile == NULL || keyfile == NULL) {
        snprintf(errbuf, errlen, "TLS needs both a certificate file and a key file (%s missing)",
                 certfile == NULL ? "certificate" : "key");
        return PGW_EINVAL;
    }
    if (mode != SSL_VERIFY_NONE && cafile == NULL) {
        snprintf(errbuf, errlen, "verify_client %s needs a CA file to verify client "
                 "certificates with", verify_client);
        return PGW_EINVAL;
    }
    int rc = readable("TLS certificate file", certfile, errbuf, errlen);
    if (rc == 0)
        rc = readable("TLS key file", keyfile, errbuf, errlen);
    if (rc == 0 && cafile != NULL)
        rc = readable("TLS CA file", cafile, errbuf, errlen);
    if (rc != 0)
        return rc;

    char why[256];
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL) {
        tls_error_reasons(why, sizeof why);
        snprintf(errbuf, errlen, "TLS: cannot create a context: %s", why);
        return PGW_ENOMEM;
    }
    (void)SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE);
    /* Idle keep-alive connections give their record buffers back. */
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_default_passwd_cb(ctx, tls_no_passphrase);
    static const unsigned char sid[] = "pgwarden";
    (void)SSL_CTX_set_session_id_context(ctx, sid, sizeof sid - 1);

    if (SSL_CTX_use_certificate_chain_file(ctx, certfile) != 1) {
        tls_error_reasons(why, sizeof why);
        snprintf(errbuf, errlen, "TLS certificate file %s: cannot load a PEM certificate: %s",
                 certfile, why);
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, keyfile, SSL_FILETYPE_PEM) != 1) {
        if (tls_error_key_mismatch()) {
            snprintf(errbuf, errlen, "TLS key file %s does not match the certificate in %s",
                     keyfile, certfile);
            goto fail;
        }
        tls_error_reasons(why, sizeof why);
        snprintf(errbuf, errlen, "TLS key file %s: cannot load a PEM private key (not "
                 "PEM, or protected by a passphrase, which is not supported): %s", keyfile, why);
        goto fail;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        ERR_clear_error();
        snprintf(errbuf, errlen, "TLS key file %s does not match the certificate in %s",
                 keyfile, certfile);
        goto fail;
    }
    if (cafile != NULL) {
        if (SSL_CTX_load_verify_locations(ctx, cafile, NULL) != 1) {
            tls_error_reasons(why, sizeof why);
            snprintf(errbuf, errlen, "TLS CA file %s: cannot load PEM certificates: %s", cafile,
                     why);
            goto fail;
        }
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(cafile);
        if (names == NULL) {
            ERR_clear_error();
            snprintf(errbuf, errlen, "TLS CA file %s holds no certificate", cafile);
            goto fail;
        }
        SSL_CTX_set_client_CA_list(ctx, names); /* takes ownership */
    }
    SSL_CTX_set_verify(ctx, mode, NULL);
    describe_cert(ctx, certfile);
    *out = ctx;
    return PGW_OK;
fail:
    SSL_CTX_free(ctx);
    return PGW_EINVAL;
}

void http_tls_ctx_free(struct ssl_ctx_st *ctx)
{
    SSL_CTX_free(ctx);
}

int http_server_reload_tls(struct http_server *s, const char *certfile, const char *keyfile,
                           const char *cafile, const char *verify_client, char *errbuf,
                           size_t errlen)
{
    if (errlen > 0)
        errbuf[0] = '\0';
    if (s == NULL || s->tls_ctx == NULL) {
        snprintf(errbuf, errlen, "this server was started without TLS: turning TLS on needs "
                 "a restart");
        return PGW_EINVAL;
    }
    SSL_CTX *ctx;
    int rc = http_tls_ctx_new(certfile, keyfile, cafile, verify_client, &ctx, errbuf, errlen);
    if (rc != PGW_OK)
        return rc;
    /* Connections hold their own reference (SSL_new): they keep the old one. */
    SSL_CTX_free(s->tls_ctx);
    s->tls_ctx = ctx;
    log_info("http", "TLS settings reloaded (verify_client %s): new connections use them",
             verify_client != NULL ? verify_client : "none");
    return PGW_OK;
}

bool http_server_is_tls(const struct http_server *s)
{
    return s != NULL && s->tls_ctx != NULL;
}

bool http_request_client_verified(const struct http_request *req)
{
    return req != NULL && req->tls && req->client_verified;
}

bool http_request_needs_client_cert(const struct http_request *req, const char *verify_client)
{
    if (verify_client == NULL || strcmp(verify_client, "optional") != 0)
        return false;
    if (req->method & HTTP_M_PROBE)
        return false;
    return !http_request_client_verified(req);
}

/* --- writing ----------------------------------------------------------------- */

static void on_tls_written(uv_write_t *req, int status)
{
    struct tls_wr *w = req->data;
    struct http_conn *c = w->c;
    if (w->user_cb != NULL)
        w->user_cb(w->user_req, status);
    else if (c->state != CONN_CLOSING && w->close_why != NULL)
        http_conn_close(c, w->close_why);
    else if (c->state != CONN_CLOSING && status < 0)
        http_conn_close(c, uv_strerror(status));
    free(w);
}

static struct tls_wr *wr_new(struct http_conn *c, size_t n, uv_write_t *user_req,
                             uv_write_cb user_cb, const char *close_why)
{
    struct tls_wr *w = malloc(sizeof *w + n);
    if (w == NULL)
        return NULL;
    w->c = c;
    w->user_req = user_req;
    w->user_cb = user_cb;
    w->close_why = close_why;
    w->req.data = w;
    return w;
}

static int wr_send(struct tls_wr *w, size_t n)
{
    uv_buf_t b = uv_buf_init(w->data, (unsigned)n);
    int rc = uv_write(&w->req, (uv_stream_t *)&w->c->tcp, &b, 1, on_tls_written);
    if (rc != 0)
        free(w);
    return rc;
}

/* Write out whatever OpenSSL has produced. With a user write, its callback
 * runs once those bytes are written; with close_why, the connection is
 * closed then (at once when there is nothing to send). */
static int tls_flush(struct http_conn *c, uv_write_t *user_req, uv_write_cb user_cb,
                     const char *close_why)
{
    struct http_tls_conn *t = c->tls;
    size_t n = BIO_ctrl_pending(t->wbio);
    if (n == 0 && user_req == NULL) {
        if (close_why != NULL)
            http_conn_close(c, close_why);
        return 0;
    }
    if (n > INT_MAX)
        return UV_E2BIG;
    struct tls_wr *w = wr_new(c, n, user_req, user_cb, close_why);
    if (w == NULL)
        return UV_ENOMEM;
    if (n > 0 && BIO_read(t->wbio, w->data, (int)n) != (int)n) {
        free(w);
        return UV_EPROTO;
    }
    return wr_send(w, n);
}

static int tls_write(struct http_conn *c, uv_write_t *req, const char *data, size_t len,
                     uv_write_cb cb)
{
    struct http_tls_conn *t = c->tls;
    if (!t->done || t->failed || len > INT_MAX)
        return UV_EPROTO;
    ERR_clear_error();
    /* A memory BIO never pushes back: the whole reply is encrypted now. */
    if (SSL_write(t->ssl, data, (int)len) != (int)len) {
        char why[256];
        tls_error_reasons(why, sizeof why);
        log_debug("http", "TLS write to %s failed: %s", c->client_ip, why);
        return UV_EPROTO;
    }
    return tls_flush(c, req, cb, NULL);
}

static int tls_shutdown(struct http_conn *c)
{
    struct http_tls_conn *t = c->tls;
    if (t->done && !t->failed) {
        ERR_clear_error();
        (void)SSL_shutdown(t->ssl); /* queues close_notify; the peer's is not awaited */
        ERR_clear_error();
        int rc = tls_flush(c, NULL, NULL, NULL);
        if (rc != 0)
            return rc;
    }
    /* Runs after the pending writes (libuv orders them). */
    return uv_shutdown(&c->sreq, (uv_stream_t *)&c->tcp, http_conn_on_shutdown);
}

/* --- reading ----------------------------------------------------------------- */

enum { DEC_MORE, DEC_FULL, DEC_EOF, DEC_ERR };

/* Decrypt what OpenSSL can give into the input buffer; *got counts bytes. */
static int tls_decrypt(struct http_conn *c, size_t *got, char *why, size_t whylen)
{
    struct http_tls_conn *t = c->tls;
    for (;;) {
        char *p;
        size_t room;
        if (!http_conn_input_reserve(c, &p, &room))
            return DEC_FULL;
        ERR_clear_error();
        int r = SSL_read(t->ssl, p, room > INT_MAX ? INT_MAX : (int)room);
        if (r > 0) {
            http_conn_input_commit(c, (size_t)r);
            *got += (size_t)r;
            continue;
        }
        int e = SSL_get_error(t->ssl, r);
        if (e == SSL_ERROR_WANT_READ)
            return DEC_MORE;
        if (e == SSL_ERROR_ZERO_RETURN) {
            t->eof = true;
            return DEC_EOF;
        }
        tls_error_reasons(why, whylen);
        return DEC_ERR;
    }
}

static void tls_read_stop(struct http_conn *c)
{
    if (c->reading)
        uv_read_stop((uv_stream_t *)&c->tcp);
    c->reading = false;
}

static void log_handshake_failure(struct http_conn *c, const char *why)
{
    struct http_server *s = c->srv;
    s->stats.tls_handshake_failures++;
    log_debug("http", "TLS handshake with %s failed: %s", c->client_ip, why);
    uint64_t now = uv_now(s->loop);
    if (s->last_tls_log != 0 && now - s->last_tls_log < TLS_LOG_EVERY_MS) {
        s->tls_failures_unlogged++;
        return;
    }
    if (s->tls_failures_unlogged > 0)
        log_warn("http", "TLS handshake with %s failed: %s (and %llu more failures not logged "
                 "in the last %d s)", c->client_ip, why,
                 (unsigned long long)s->tls_failures_unlogged, TLS_LOG_EVERY_MS / 1000);
    else
        log_warn("http", "TLS handshake with %s failed: %s", c->client_ip, why);
    s->last_tls_log = now;
    s->tls_failures_unlogged = 0;
}

static void handshake_failed(struct http_conn *c)
{
    struct http_tls_conn *t = c->tls;
    unsigned long first = ERR_peek_error();
    bool plain_http = ERR_GET_LIB(first) == ERR_LIB_SSL &&
                      ERR_GET_REASON(first) == SSL_R_HTTP_REQUEST;
    char why[300], reasons[256];
    tls_error_reasons(reasons, sizeof reasons);
    long vr = SSL_get_verify_result(t->ssl);
    if (plain_http)
        snprintf(why, sizeof why, "plain HTTP sent to the HTTPS port");
    else if (vr != X509_V_OK)
        snprintf(why, sizeof why, "%s (client certificate: %s)", reasons,
                 X509_verify_cert_error_string(vr));
    else
        snprintf(why, sizeof why, "%s", reasons);
    log_handshake_failure(c, why);
    t->failed = true;
    tls_read_stop(c);
    int rc;
    if (plain_http) {
        /* Someone used http:// on the HTTPS port: say so in their language. */
        static const char body[] = "{\"error\":\"this port speaks HTTPS (TLS): use https://\"}";
        char msg[256];
        int n = snprintf(msg, sizeof msg,
                         "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n"
                         "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
                         sizeof body - 1, body);
        (void)BIO_reset(t->wbio);
        struct tls_wr *w = wr_new(c, (size_t)n, NULL, NULL, "plain HTTP on the TLS port");
        rc = UV_ENOMEM;
        if (w != NULL) {
            memcpy(w->data, msg, (size_t)n);
            rc = wr_send(w, (size_t)n);
        }
    } else {
        rc = tls_flush(c, NULL, NULL, "TLS handshake failed"); /* the alert, then close */
    }
    if (rc != 0)
        http_conn_close(c, "TLS handshake failed");
}

/* New ciphertext is in the read BIO: advance the handshake, decrypt, parse. */
static void tls_advance(struct http_conn *c)
{
    struct http_tls_conn *t = c->tls;
    if (!t->done) {
        ERR_clear_error();
        int r = SSL_do_handshake(t->ssl);
        if (r != 1) {
            int e = SSL_get_error(t->ssl, r);
            if (e == SSL_ERROR_WANT_READ) {
                if (tls_flush(c, NULL, NULL, NULL) != 0)
                    http_conn_close(c, "cannot send the TLS handshake");
                return;
            }
            handshake_failed(c);
            return;
        }
        t->done = true;
        t->verified = SSL_get0_peer_certificate(t->ssl) != NULL &&
                      SSL_get_verify_result(t->ssl) == X509_V_OK;
        log_debug("http", "TLS %s with %s, %s, client certificate %s", SSL_get_version(t->ssl),
                  c->client_ip, SSL_get_cipher_name(t->ssl),
                  t->verified ? "verified" : "none");
    }
    size_t got = 0;
    char why[256];
    int d = tls_decrypt(c, &got, why, sizeof why);
    if (tls_flush(c, NULL, NULL, NULL) != 0) {
        http_conn_close(c, "TLS write failed");
        return;
    }
    if (d == DEC_ERR) {
        log_debug("http", "TLS error from %s: %s", c->client_ip, why);
        http_conn_close(c, "TLS protocol error");
        return;
    }
    if (d == DEC_FULL || d == DEC_EOF)
        tls_read_stop(c); /* read_start resumes (or reports the end) once parsed */
    if (got > 0)
        http_conn_input_ready(c);
    else if (d == DEC_EOF && c->state == CONN_READING && c->in_len == 0)
        http_conn_input_eof(c);
}

static void tls_on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct http_conn *c = h->data;
    (void)suggested;
    buf->base = c->srv->tls_rbuf;
    buf->len = TLS_RBUF_SIZE;
}

static void tls_on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    struct http_conn *c = st->data;
    struct http_tls_conn *t = c->tls;
    if (nread == 0 || c->state == CONN_CLOSING)
        return;
    if (nread < 0) {
        if (nread != UV_EOF) {
            http_conn_close(c, uv_strerror((int)nread));
            return;
        }
        c->reading = false; /* libuv stops reading at EOF */
        t->eof = true;
        if (c->state == CONN_LINGER || t->failed) {
            http_conn_input_eof(c);
        } else if (!t->done) {
            /* TCP health checks connect and close: not worth a warning. */
            http_conn_close(c, "peer closed during the TLS handshake");
        } else if (BIO_ctrl_pending(t->rbio) == 0) {
            http_conn_input_eof(c);
        }
        /* else: input is still buffered; read_start reports the end after it */
        return;
    }
    if (http_conn_linger_input(c, (size_t)nread) || t->eof || t->failed)
        return;
    if (BIO_write(t->rbio, buf->base, (int)nread) != (int)nread) {
        http_conn_close(c, "out of memory");
        return;
    }
    tls_advance(c);
}

static int tls_read_start(struct http_conn *c)
{
    struct http_tls_conn *t = c->tls;
    if (t->failed)
        return UV_EPROTO;
    if (t->eof && c->state == CONN_LINGER)
        return HTTP_IO_EOF;
    if (t->done && c->state != CONN_LINGER) { /* lingering input is discarded unread */
        size_t got = 0;
        char why[256];
        int d = tls_decrypt(c, &got, why, sizeof why);
        if (d == DEC_ERR) {
            log_debug("http", "TLS error from %s: %s", c->client_ip, why);
            http_conn_close(c, "TLS protocol error");
            return UV_EPROTO;
        }
        if (d == DEC_FULL || got > 0)
            return 0; /* the caller parses this first, then calls again */
        if (t->eof)
            return HTTP_IO_EOF;
    }
    if (c->reading)
        return 0;
    int rc = uv_read_start((uv_stream_t *)&c->tcp, tls_on_alloc, tls_on_read);
    if (rc == 0)
        c->reading = true;
    return rc;
}

static const struct http_io_ops tls_io = {
    .read_start = tls_read_start,
    .read_stop = tls_read_stop,
    .write = tls_write,
    .shutdown = tls_shutdown,
};

/* --- connections --------------------------------------------------------------- */

int http_tls_conn_attach(struct http_conn *c)
{
    struct http_server *s = c->srv;
    if (s->tls_rbuf == NULL) {
        s->tls_rbuf = malloc(TLS_RBUF_SIZE);
        if (s->tls_rbuf == NULL)
            return UV_ENOMEM;
    }
    struct http_tls_conn *t = calloc(1, sizeof *t);
    if (t == NULL)
        return UV_ENOMEM;
    ERR_clear_error();
    t->ssl = SSL_new(s->tls_ctx);
    t->rbio = BIO_new(BIO_s_mem());
    t->wbio = BIO_new(BIO_s_mem());
    if (t->ssl == NULL || t->rbio == NULL || t->wbio == NULL) {
        BIO_free(t->rbio);
        BIO_free(t->wbio);
        SSL_free(t->ssl);
        free(t);
        ERR_clear_error();
        return UV_ENOMEM;
    }
    /* An empty read BIO means "more to come", not the end. */
    BIO_set_mem_eof_return(t->rbio, -1);
    SSL_set_bio(t->ssl, t->rbio, t->wbio);
    SSL_set_accept_state(t->ssl);
    c->tls = t;
    c->io = &tls_io;
    return 0;
}

void http_tls_conn_free(struct http_conn *c)
{
    if (c->tls == NULL)
        return;
    SSL_free(c->tls->ssl); /* frees the BIOs and drops its context reference */
    free(c->tls);
    c->tls = NULL;
}

bool http_tls_conn_verified(const struct http_conn *c)
{
    return c->tls != NULL && c->tls->verified;
}

bool http_tls_conn_handshaking(const struct http_conn *c)
{
    return c->tls != NULL && !c->tls->done;
}
