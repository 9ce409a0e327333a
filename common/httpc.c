/* Asynchronous HTTP/1.1 client: one request per connection.
 *
 * Happy path: parse the URL and serialize the request (synchronously, so a
 * bad URL or an unusable TLS file is a return value) -> resolve the name
 * with uv_getaddrinfo unless the host is an IP literal -> connect (trying
 * each resolved address in turn) -> [https: TLS handshake through
 * common/httpc_tls.c, the request sent encrypted once it completes] ->
 * write -> read, parsing with llhttp in response mode, until the message is
 * complete (Content-Length, chunked, or end of connection) -> close the
 * socket and the deadline timer -> callback.
 * Failure modes, all reported through the callback: resolution failed,
 * connect refused/unreachable (PGW_EIO), write/read errors (PGW_EIO), peer
 * closed before the response was complete or sent something that is not
 * HTTP or more than max_response_bytes (PGW_EPROTO), the TLS handshake or
 * session failed (PGW_EPROTO, with OpenSSL's reason and the certificate
 * check's verdict), the total deadline
 * passed (PGW_ETIMEDOUT), cancelled (PGW_ECANCELED).
 *
 * The callback runs from the close callback of the last handle, so it is
 * never synchronous and, once it has run, the request holds nothing on the
 * loop. */
#include "common/httpc.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <llhttp.h>

#include "common/httpc_tls.h"

#define HTTPC_HOST_MAX 256
#define HTTPC_READ_BUF 65536

struct httpc_request {
    uv_loop_t *loop;
    httpc_cb cb;
    void *ctx;

    char host[HTTPC_HOST_MAX]; /* without brackets */
    char port_s[8];
    char where[HTTPC_HOST_MAX + 16]; /* host:port for messages */
    struct sockaddr_storage literal;
    bool is_literal;
    bool head;
    struct httpc_tls *tls; /* https:// */

    char *reqbuf;
    size_t reqlen;

    uv_getaddrinfo_t gai;
    struct addrinfo *ai_list, *ai_next;
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_connect_t creq;
    uv_write_t wreq;
    bool gai_pending, tcp_open, timer_open;
    int pending; /* handles open + getaddrinfo outstanding */

    llhttp_t parser;
    int http_status;
    char *body;
    size_t body_len, body_cap;
    size_t received, max_bytes;
    uint32_t timeout_ms;
    char *rbuf;
    char write_err[128];

    bool finishing;
    int status;
    char err[384];
};

static void maybe_done(struct httpc_request *r);
static void connect_next(struct httpc_request *r);

/* --- completion ------------------------------------------------------ */

static void on_handle_closed(uv_handle_t *h)
{
    struct httpc_request *r = h->data;
    r->pending--;
    maybe_done(r);
}

static void finish(struct httpc_request *r, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void finish(struct httpc_request *r, int status, const char *fmt, ...)
{
    if (r->finishing)
        return;
    r->finishing = true;
    r->status = status;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->err, sizeof r->err, fmt, ap);
    va_end(ap);
    if (r->gai_pending)
        (void)uv_cancel((uv_req_t *)&r->gai); /* its callback still runs */
    if (r->tcp_open) {
        r->tcp_open = false;
        uv_close((uv_handle_t *)&r->tcp, on_handle_closed);
    }
    if (r->timer_open) {
        r->timer_open = false;
        uv_close((uv_handle_t *)&r->timer, on_handle_closed);
    }
}

static void maybe_done(struct httpc_request *r)
{
    if (!r->finishing || r->pending > 0)
        return;
    struct httpc_response resp = {
        .status = r->status,
        .http_status = r->status == 0 ? r->http_status : 0,
        .body = (r->status == 0 && r->body != NULL) ? r->body : "",
        .body_len = r->status == 0 ? r->body_len : 0,
        .error = r->status == 0 ? "" : r->err,
    };
    r->cb(&resp, r->ctx);
    if (r->ai_list != NULL)
        uv_freeaddrinfo(r->ai_list);
    httpc_tls_free(r->tls);
    free(r->reqbuf);
    free(r->body);
    free(r->rbuf);
    free(r);
}

void httpc_request_cancel(struct httpc_request *r)
{
    if (r != NULL)
        finish(r, PGW_ECANCELED, "request to %s cancelled", r->where);
}

static void on_timeout(uv_timer_t *t)
{
    struct httpc_request *r = t->data;
    finish(r, PGW_ETIMEDOUT, "no complete response from %s within %u ms", r->where,
           r->timeout_ms);
}

/* --- response parsing -------------------------------------------------- */

static int on_headers_complete(llhttp_t *p)
{
    struct httpc_request *r = p->data;
    r->http_status = llhttp_get_status_code(p);
    return r->head ? 1 : 0; /* a reply to HEAD has no body whatever it says */
}

static int on_body(llhttp_t *p, const char *at, size_t len)
{
    struct httpc_request *r = p->data;
    if (r->body_len + len + 1 > r->body_cap) {
        size_t cap = r->body_cap ? r->body_cap : 1024;
        while (cap < r->body_len + len + 1)
            cap *= 2;
        char *b = realloc(r->body, cap);
        if (b == NULL) {
            llhttp_set_error_reason(p, "out of memory");
            return HPE_USER;
        }
        r->body = b;
        r->body_cap = cap;
    }
    memcpy(r->body + r->body_len, at, len);
    r->body_len += len;
    r->body[r->body_len] = '\0';
    return 0;
}

static int on_message_complete(llhttp_t *p)
{
    struct httpc_request *r = p->data;
    int code = llhttp_get_status_code(p);
    if (code >= 100 && code < 200) { /* interim response: the real one follows */
        r->body_len = 0;
        return 0;
    }
    finish(r, PGW_OK, "%s", "");
    return HPE_PAUSED;
}

static const llhttp_settings_t parser_settings = {
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* --- I/O ------------------------------------------------------------- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct httpc_request *r = h->data;
    buf->base = r->rbuf;
    buf->len = HTTPC_READ_BUF;
}

static void on_input_end(struct httpc_request *r, ssize_t nread)
{
    if (nread == UV_EOF && llhttp_finish(&r->parser) == HPE_OK && r->finishing)
        return; /* a body delimited by the end of the connection */
    if (r->write_err[0] != '\0')
        finish(r, PGW_EIO, "write to %s failed: %s", r->where, r->write_err);
    else if (nread == UV_EOF && r->tls != NULL && !httpc_tls_handshake_done(r->tls))
        finish(r, PGW_EPROTO, "TLS handshake with %s failed: the server closed the connection "
               "(is it an HTTPS port?)", r->where);
    else if (nread == UV_EOF)
        finish(r, PGW_EPROTO, "%s closed the connection before the response was complete",
               r->where);
    else
        finish(r, PGW_EIO, "read from %s: %s", r->where, uv_strerror((int)nread));
}

static void parse_input(struct httpc_request *r, const char *data, size_t n)
{
    r->received += n;
    if (r->received > r->max_bytes) {
        finish(r, PGW_EPROTO, "response from %s larger than %zu bytes", r->where, r->max_bytes);
        return;
    }
    llhttp_errno_t e = llhttp_execute(&r->parser, data, n);
    if (e != HPE_OK && e != HPE_PAUSED && !r->finishing) {
        const char *why = llhttp_get_error_reason(&r->parser);
        finish(r, PGW_EPROTO, "malformed response from %s: %s (%s)", r->where,
               why != NULL ? why : "?", llhttp_errno_name(e));
    }
}

/* --- TLS ---------------------------------------------------------------- */

struct tls_out {
    uv_write_t req;
    struct httpc_request *r;
    char data[];
};

static void on_tls_written(uv_write_t *req, int status)
{
    struct tls_out *w = req->data;
    struct httpc_request *r = w->r;
    if (status < 0 && status != UV_ECANCELED && !r->finishing && r->write_err[0] == '\0')
        snprintf(r->write_err, sizeof r->write_err, "%s", uv_strerror(status));
    free(w);
}

/* Send the ciphertext OpenSSL produced (handshake messages, the request). */
static int tls_flush(struct httpc_request *r)
{
    size_t n = httpc_tls_out_pending(r->tls);
    if (n == 0)
        return 0;
    struct tls_out *w = malloc(sizeof *w + n);
    if (w == NULL)
        return UV_ENOMEM;
    w->r = r;
    w->req.data = w;
    n = httpc_tls_take_out(r->tls, w->data, n);
    uv_buf_t b = uv_buf_init(w->data, (unsigned)n);
    int rc = uv_write(&w->req, (uv_stream_t *)&r->tcp, &b, 1, on_tls_written);
    if (rc != 0)
        free(w);
    return rc;
}

static void tls_input(struct httpc_request *r, const char *data, size_t n)
{
    bool was_done = httpc_tls_handshake_done(r->tls);
    if (httpc_tls_feed(r->tls, data, n) != 0) {
        finish(r, PGW_EPROTO, "TLS handshake with %s failed: %s", r->where,
               httpc_tls_error(r->tls));
        return;
    }
    char plain[16384];
    int got = 0;
    while (!r->finishing && (got = httpc_tls_read(r->tls, plain, sizeof plain)) > 0)
        parse_input(r, plain, (size_t)got);
    if (r->finishing)
        return;
    int rc = tls_flush(r);
    if (rc != 0) {
        finish(r, PGW_EIO, "send to %s: %s", r->where, uv_strerror(rc));
    } else if (got == HTTPC_TLS_EOF) {
        on_input_end(r, UV_EOF);
    } else if (got < 0) {
        /* TLS 1.3: a refused client certificate arrives as an alert after
         * our side of the handshake has completed. */
        finish(r, PGW_EPROTO, "TLS %s %s: %s", was_done ? "session with" : "handshake with",
               r->where, httpc_tls_error(r->tls));
    }
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    struct httpc_request *r = st->data;
    if (nread == 0 || r->finishing)
        return;
    if (nread < 0)
        on_input_end(r, nread);
    else if (r->tls != NULL)
        tls_input(r, buf->base, (size_t)nread);
    else
        parse_input(r, buf->base, (size_t)nread);
}

static void on_write(uv_write_t *req, int status)
{
    struct httpc_request *r = req->data;
    /* A server may answer and close before reading everything we sent (a
     * 413, say): keep reading and report the write error only if no
     * complete response arrives. */
    if (status < 0 && !r->finishing)
        snprintf(r->write_err, sizeof r->write_err, "%s", uv_strerror(status));
}

static void on_connect(uv_connect_t *req, int status)
{
    struct httpc_request *r = req->data;
    if (r->finishing)
        return;
    if (status < 0) {
        if (r->ai_next != NULL) {
            connect_next(r); /* closes this socket and tries the next address */
            return;
        }
        finish(r, PGW_EIO, "connect to %s: %s", r->where, uv_strerror(status));
        return;
    }
    (void)uv_tcp_nodelay(&r->tcp, 1);
    int rc;
    if (r->tls != NULL) {
        if (httpc_tls_begin(r->tls, r->reqbuf, r->reqlen) != 0) {
            finish(r, PGW_EPROTO, "TLS handshake with %s failed: %s", r->where,
                   httpc_tls_error(r->tls));
            return;
        }
        rc = tls_flush(r);
    } else {
        uv_buf_t b = uv_buf_init(r->reqbuf, (unsigned)r->reqlen);
        rc = uv_write(&r->wreq, (uv_stream_t *)&r->tcp, &b, 1, on_write);
    }
    if (rc == 0)
        rc = uv_read_start((uv_stream_t *)&r->tcp, on_alloc, on_read);
    if (rc != 0)
        finish(r, PGW_EIO, "send to %s: %s", r->where, uv_strerror(rc));
}

static void connect_addr(struct httpc_request *r, const struct sockaddr *sa)
{
    int rc = uv_tcp_init(r->loop, &r->tcp);
    if (rc != 0) {
        finish(r, PGW_EIO, "connect to %s: %s", r->where, uv_strerror(rc));
        return;
    }
    r->tcp.data = r;
    r->tcp_open = true;
    r->pending++;
    rc = uv_tcp_connect(&r->creq, &r->tcp, sa, on_connect);
    if (rc != 0) {
        if (r->ai_next != NULL)
            connect_next(r);
        else
            finish(r, PGW_EIO, "connect to %s: %s", r->where, uv_strerror(rc));
    }
}

static void on_closed_for_retry(uv_handle_t *h)
{
    struct httpc_request *r = h->data;
    r->pending--;
    if (r->finishing) {
        maybe_done(r);
        return;
    }
    struct addrinfo *ai = r->ai_next;
    r->ai_next = ai->ai_next;
    connect_addr(r, ai->ai_addr);
}

/* Close the current socket (if any) and connect to r->ai_next. */
static void connect_next(struct httpc_request *r)
{
    if (r->tcp_open) {
        r->tcp_open = false;
        uv_close((uv_handle_t *)&r->tcp, on_closed_for_retry);
        return;
    }
    struct addrinfo *ai = r->ai_next;
    r->ai_next = ai->ai_next;
    connect_addr(r, ai->ai_addr);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct httpc_request *r = req->data;
    r->gai_pending = false;
    r->pending--;
    r->ai_list = res;
    if (r->finishing) {
        maybe_done(r);
        return;
    }
    if (status < 0 || res == NULL) {
        finish(r, PGW_EIO, "cannot resolve %s: %s", r->host,
               status < 0 ? uv_strerror(status) : "no address");
        return;
    }
    r->ai_next = res;
    connect_next(r);
}

/* --- request preparation -------------------------------------------------- */

static void set_err(char *errbuf, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *errbuf, size_t errlen, const char *fmt, ...)
{
    if (errbuf == NULL || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errbuf, errlen, fmt, ap);
    va_end(ap);
}

static bool valid_token(const char *s)
{
    if (*s == '\0')
        return false;
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch <= 0x20 || ch >= 0x7F || strchr("\"(),/:;<=>?@[\\]{}", ch) != NULL)
            return false;
    }
    return true;
}

static bool has_ctl(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch < 0x20 || ch == 0x7F)
            return true;
    }
    return false;
}

struct url_parts {
    char host[HTTPC_HOST_MAX];
    bool v6;
    bool tls; /* https:// */
    uint16_t port;
    const char *target; /* path?query, "/" if empty */
    size_t target_len;
};

static int url_parse(const char *url, struct url_parts *u, char *errbuf, size_t errlen)
{
    memset(u, 0, sizeof *u);
    if (strncasecmp(url, "https://", 8) == 0) {
        u->tls = true;
    } else if (strncasecmp(url, "http://", 7) != 0) {
        set_err(errbuf, errlen, "url '%s': expected http://host:port/path or https://...", url);
        return PGW_EINVAL;
    }
    const char *a = url + (u->tls ? 8 : 7);
    size_t alen = strcspn(a, "/?#");
    if (alen == 0) {
        set_err(errbuf, errlen, "url '%s': missing host", url);
        return PGW_EINVAL;
    }
    if (memchr(a, '@', alen) != NULL) {
        set_err(errbuf, errlen, "url '%s': user:password@ in urls is not supported; use "
                "auth_user/auth_password", url);
        return PGW_EINVAL;
    }
    const char *hs = a, *he, *colon = NULL;
    if (a[0] == '[') {
        const char *rb = memchr(a, ']', alen);
        if (rb == NULL) {
            set_err(errbuf, errlen, "url '%s': missing ']' after IPv6 address", url);
            return PGW_EINVAL;
        }
        hs = a + 1;
        he = rb;
        u->v6 = true;
        if (rb + 1 < a + alen) {
            if (rb[1] != ':') {
                set_err(errbuf, errlen, "url '%s': unexpected text after ']'", url);
                return PGW_EINVAL;
            }
            colon = rb + 1;
        }
    } else {
        colon = memchr(a, ':', alen);
        he = colon != NULL ? colon : a + alen;
        if (colon != NULL && memchr(colon + 1, ':', (size_t)(a + alen - colon - 1)) != NULL) {
            set_err(errbuf, errlen, "url '%s': IPv6 addresses must be written in brackets, "
                    "e.g. http://[::1]:8008/", url);
            return PGW_EINVAL;
        }
    }
    size_t hlen = (size_t)(he - hs);
    if (hlen == 0 || hlen >= sizeof u->host) {
        set_err(errbuf, errlen, "url '%s': %s host", url, hlen == 0 ? "empty" : "too long a");
        return PGW_EINVAL;
    }
    memcpy(u->host, hs, hlen);
    u->host[hlen] = '\0';
    for (size_t i = 0; i < hlen; i++) {
        char ch = u->host[i];
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                  (ch >= '0' && ch <= '9') || ch == '-' || ch == '.' || ch == '_' ||
                  (u->v6 && (ch == ':' || ch == '%'));
        if (!ok) {
            set_err(errbuf, errlen, "url '%s': invalid character '%c' in host", url, ch);
            return PGW_EINVAL;
        }
    }
    u->port = u->tls ? 443 : 80;
    if (colon != NULL) {
        const char *ps = colon + 1;
        size_t plen = (size_t)(a + alen - ps);
        char pbuf[8];
        char *end = NULL;
        if (plen == 0 || plen >= sizeof pbuf || strspn(ps, "0123456789") < plen) {
            set_err(errbuf, errlen, "url '%s': invalid port", url);
            return PGW_EINVAL;
        }
        memcpy(pbuf, ps, plen);
        pbuf[plen] = '\0';
        long port = strtol(pbuf, &end, 10);
        if (end == NULL || *end != '\0' || port < 1 || port > 65535) {
            set_err(errbuf, errlen, "url '%s': port must be 1-65535", url);
            return PGW_EINVAL;
        }
        u->port = (uint16_t)port;
    }
    const char *t = a + alen;
    size_t tlen = strcspn(t, "#");
    if (has_ctl(t, tlen) || memchr(t, ' ', tlen) != NULL) {
        set_err(errbuf, errlen, "url '%s': spaces or control characters in the path", url);
        return PGW_EINVAL;
    }
    u->target = t;
    u->target_len = tlen;
    return PGW_OK;
}

static char *base64(const char *in, size_t n)
{
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *out = malloc((n + 2) / 3 * 4 + 1);
    if (out == NULL)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)(unsigned char)in[i] << 16;
        if (i + 1 < n)
            v |= (unsigned)(unsigned char)in[i + 1] << 8;
        if (i + 2 < n)
            v |= (unsigned char)in[i + 2];
        out[o++] = tbl[(v >> 18) & 63];
        out[o++] = tbl[(v >> 12) & 63];
        out[o++] = i + 1 < n ? tbl[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < n ? tbl[v & 63] : '=';
    }
    out[o] = '\0';
    return out;
}

static int build_request(struct httpc_request *r, const struct httpc_opts *o, const char *method,
                         const struct url_parts *u, char *errbuf, size_t errlen)
{
    char auth[1024] = "";
    if (o->auth_user != NULL) {
        const char *pw = o->auth_password != NULL ? o->auth_password : "";
        char cred[512];
        int n = snprintf(cred, sizeof cred, "%s:%s", o->auth_user, pw);
        if (strchr(o->auth_user, ':') != NULL || n < 0 || (size_t)n >= sizeof cred) {
            set_err(errbuf, errlen, "basic auth: user must not contain ':' and user:password "
                    "must be shorter than %zu bytes", sizeof cred);
            return PGW_EINVAL;
        }
        char *b64 = base64(cred, (size_t)n);
        if (b64 == NULL)
            return PGW_ENOMEM;
        snprintf(auth, sizeof auth, "Authorization: Basic %s\r\n", b64);
        free(b64);
    }
    const char *ctype = o->content_type;
    if (ctype == NULL && o->body != NULL)
        ctype = "application/json";
    if (ctype != NULL && has_ctl(ctype, strlen(ctype))) {
        set_err(errbuf, errlen, "content type contains control characters");
        return PGW_EINVAL;
    }
    size_t blen = o->body != NULL ? o->body_len : 0;
    bool send_len = o->body != NULL || strcmp(method, "POST") == 0 ||
                    strcmp(method, "PUT") == 0 || strcmp(method, "PATCH") == 0;
    char hostport[HTTPC_HOST_MAX + 16];
    snprintf(hostport, sizeof hostport, u->v6 ? "[%s]" : "%s", u->host);
    if (u->port != (u->tls ? 443 : 80)) {
        size_t hl = strlen(hostport);
        snprintf(hostport + hl, sizeof hostport - hl, ":%u", u->port);
    }
    char clen[64] = "";
    if (send_len)
        snprintf(clen, sizeof clen, "Content-Length: %zu\r\n", blen);
    /* "" and "?q" are sent as "/" and "/?q". */
    const char *lead = (u->target_len == 0 || u->target[0] == '?') ? "/" : "";
#define REQ_FMT "%s %s%.*s HTTP/1.1\r\nHost: %s\r\nUser-Agent: pgwarden\r\nAccept: */*\r\n" \
                "Connection: close\r\n%s%s%s%s%s\r\n"
#define REQ_ARGS method, lead, (int)u->target_len, u->target, hostport, auth, \
                 ctype != NULL ? "Content-Type: " : "", ctype != NULL ? ctype : "", \
                 ctype != NULL ? "\r\n" : "", clen
    int n = snprintf(NULL, 0, REQ_FMT, REQ_ARGS);
    if (n < 0 || (size_t)n > SIZE_MAX - blen - 1)
        return PGW_ENOMEM;
    r->reqbuf = malloc((size_t)n + 1 + blen);
    if (r->reqbuf == NULL)
        return PGW_ENOMEM;
    snprintf(r->reqbuf, (size_t)n + 1, REQ_FMT, REQ_ARGS);
#undef REQ_FMT
#undef REQ_ARGS
    if (blen > 0)
        memcpy(r->reqbuf + n, o->body, blen);
    r->reqlen = (size_t)n + blen;
    return PGW_OK;
}

int httpc_request_start(uv_loop_t *loop, const struct httpc_opts *opts, httpc_cb cb, void *ctx,
                        struct httpc_request **out, char *errbuf, size_t errlen)
{
    if (out != NULL)
        *out = NULL;
    set_err(errbuf, errlen, "%s", "");
    if (loop == NULL || opts == NULL || opts->url == NULL || cb == NULL) {
        set_err(errbuf, errlen, "http request: loop, url and callback are required");
        return PGW_EINVAL;
    }
    const char *method = opts->method != NULL ? opts->method : "GET";
    if (!valid_token(method)) {
        set_err(errbuf, errlen, "http request: invalid method '%s'", method);
        return PGW_EINVAL;
    }
    if (opts->body == NULL && opts->body_len > 0) {
        set_err(errbuf, errlen, "http request: body_len without body");
        return PGW_EINVAL;
    }
    struct url_parts u;
    int rc = url_parse(opts->url, &u, errbuf, errlen);
    if (rc != PGW_OK)
        return rc;

    struct httpc_request *r = calloc(1, sizeof *r);
    if (r == NULL)
        return PGW_ENOMEM;
    r->loop = loop;
    r->cb = cb;
    r->ctx = ctx;
    r->head = strcmp(method, "HEAD") == 0;
    r->timeout_ms = opts->timeout_ms != 0 ? opts->timeout_ms : 5000;
    r->max_bytes = opts->max_response_bytes != 0 ? opts->max_response_bytes : 4u << 20;
    snprintf(r->host, sizeof r->host, "%s", u.host);
    snprintf(r->port_s, sizeof r->port_s, "%u", u.port);
    snprintf(r->where, sizeof r->where, u.v6 ? "[%s]:%u" : "%s:%u", u.host, u.port);
    if (u.v6) {
        if (uv_ip6_addr(u.host, u.port, (struct sockaddr_in6 *)&r->literal) != 0) {
            set_err(errbuf, errlen, "url '%s': '%s' is not an IPv6 address", opts->url, u.host);
            free(r);
            return PGW_EINVAL;
        }
        r->is_literal = true;
    } else if (uv_ip4_addr(u.host, u.port, (struct sockaddr_in *)&r->literal) == 0) {
        r->is_literal = true;
    }
    rc = build_request(r, opts, method, &u, errbuf, errlen);
    if (rc == PGW_OK && u.tls) {
        rc = httpc_tls_new(&opts->tls, u.host, &r->tls, errbuf, errlen);
    }
    if (rc == PGW_OK) {
        r->rbuf = malloc(HTTPC_READ_BUF);
        if (r->rbuf == NULL)
            rc = PGW_ENOMEM;
    }
    if (rc == PGW_OK && uv_timer_init(loop, &r->timer) != 0)
        rc = PGW_EIO;
    if (rc != PGW_OK) {
        if (rc == PGW_ENOMEM && errbuf != NULL && errlen > 0 && errbuf[0] == '\0')
            set_err(errbuf, errlen, "http request: out of memory");
        httpc_tls_free(r->tls);
        free(r->reqbuf);
        free(r->rbuf);
        free(r);
        return rc;
    }
    r->timer.data = r;
    r->timer_open = true;
    r->pending = 1;
    uv_timer_start(&r->timer, on_timeout, r->timeout_ms, 0);
    llhttp_init(&r->parser, HTTP_RESPONSE, &parser_settings);
    r->parser.data = r;
    r->creq.data = r;
    r->wreq.data = r;
    r->gai.data = r;

    /* From here on every failure goes through the callback. */
    if (r->is_literal) {
        connect_addr(r, (const struct sockaddr *)&r->literal);
    } else {
        struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
        rc = uv_getaddrinfo(loop, &r->gai, on_resolved, r->host, r->port_s, &hints);
        if (rc == 0) {
            r->gai_pending = true;
            r->pending++;
        } else {
            finish(r, PGW_EIO, "cannot resolve %s: %s", r->host, uv_strerror(rc));
        }
    }
    if (out != NULL)
        *out = r;
    return PGW_OK;
}
