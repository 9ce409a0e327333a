/* One accepted HTTP connection.
 *
 * Happy path: accept -> read -> llhttp parses one request and pauses at its
 * end (on_message_complete returns HPE_PAUSED) -> the request goes to its
 * handler -> http_reply serializes the answer -> uv_write -> back to reading
 * (keep-alive): the parser resumes on bytes that arrived meanwhile
 * (pipelining), so replies leave in request order. While a request is out
 * with its handler, input is buffered (up to HTTP_IN_MAX, then reading
 * stops) so that a client hanging up is still noticed.
 *
 * Failure modes, each ending in uv_close of the socket and the timer:
 * - malformed HTTP (400), URL over 8 KiB (414), request line + headers over
 *   max_header_bytes or more than 64 headers (431), body over max_body_bytes
 *   (413): a JSON error reply with Connection: close, then linger;
 * - no complete request within request_timeout_ms of its first byte, or no
 *   first byte within request_timeout_ms of accept (stats.timeouts);
 * - keep-alive connection idle for idle_timeout_ms;
 * - a reply not written within request_timeout_ms (client not reading);
 * - peer hangs up or the socket fails: a pending exchange is aborted (its
 *   abort callback runs from the close callback, never synchronously).
 *
 * "Linger": after a reply that ends the connection we shut down our side and
 * read and discard the peer's bytes until it closes (bounded in time and
 * bytes), so that the rest of a refused upload does not turn our close into
 * an RST that destroys the reply in flight. */
#include "api/http_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/log.h"

static void conn_process(struct http_conn *c);

/* --- timer ----------------------------------------------------------- */

static void on_timer(uv_timer_t *t)
{
    struct http_conn *c = t->data;
    enum http_timer_mode m = c->tmode;
    c->tmode = TM_NONE;
    switch (m) {
    case TM_FIRST_BYTE:
        c->srv->stats.timeouts++;
        /* The TLS handshake runs under this deadline too: a client that
         * connects and never finishes it gives its slot back here. */
        http_conn_close(c, c->tls != NULL && http_tls_conn_handshaking(c)
                               ? "TLS handshake not completed in time"
                               : "no request received in time");
        break;
    case TM_REQUEST:
        c->srv->stats.timeouts++;
        http_conn_close(c, "request not completely received in time");
        break;
    case TM_WRITE:
        c->srv->stats.timeouts++;
        http_conn_close(c, "reply not written in time (client not reading)");
        break;
    case TM_IDLE:
        http_conn_close(c, "idle keep-alive connection");
        break;
    case TM_LINGER:
        http_conn_close(c, "linger time over");
        break;
    case TM_NONE:
        break;
    }
}

static void timer_arm(struct http_conn *c, enum http_timer_mode m, uint64_t ms)
{
    c->tmode = m;
    uv_timer_start(&c->timer, on_timer, ms, 0);
}

static void timer_stop(struct http_conn *c)
{
    c->tmode = TM_NONE;
    uv_timer_stop(&c->timer);
}

/* --- plain TCP transport ---------------------------------------------- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf);

static int plain_read_start(struct http_conn *c)
{
    int rc = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    if (rc == 0)
        c->reading = true;
    return rc;
}

static void plain_read_stop(struct http_conn *c)
{
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->reading = false;
}

static int plain_write(struct http_conn *c, uv_write_t *req, const char *data, size_t len,
                       uv_write_cb cb)
{
    uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
    return uv_write(req, (uv_stream_t *)&c->tcp, &b, 1, cb);
}

static ssize_t plain_try_write(struct http_conn *c, const char *data, size_t len)
{
    uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
    return uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
}

static int plain_shutdown(struct http_conn *c)
{
    return uv_shutdown(&c->sreq, (uv_stream_t *)&c->tcp, http_conn_on_shutdown);
}

static const struct http_io_ops plain_io = {
    .read_start = plain_read_start,
    .read_stop = plain_read_stop,
    .write = plain_write,
    .try_write = plain_try_write,
    .shutdown = plain_shutdown,
};

/* --- closing --------------------------------------------------------- */

static void on_close(uv_handle_t *h)
{
    struct http_conn *c = h->data;
    if (--c->handles_open > 0)
        return;
    struct http_server *s = c->srv;
    struct http_exchange *x = c->x;
    c->x = NULL;
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    s->stats.connections_open--;
    http_tls_conn_free(c);
    free(c->in);
    free(c->out);
    free(c);
    if (x != NULL) {
        if (x->dispatched) {
            /* The handler still owes a reply; tell it nobody will read it. */
            x->conn = NULL;
            if (x->abort_fn != NULL)
                x->abort_fn(x->abort_ctx);
        } else {
            http_exchange_free(x);
        }
    }
    http_server_object_gone(s);
}

void http_conn_close(struct http_conn *c, const char *why)
{
    if (c->state == CONN_CLOSING)
        return;
    log_debug("http", "closing connection from %s: %s", c->client_ip, why);
    c->state = CONN_CLOSING;
    if (c->x != NULL && !c->x->dispatched) {
        http_exchange_free(c->x);
        c->x = NULL;
    }
    timer_stop(c);
    uv_close((uv_handle_t *)&c->timer, on_close);
    uv_close((uv_handle_t *)&c->tcp, on_close);
}

void http_conn_on_shutdown(uv_shutdown_t *req, int status)
{
    struct http_conn *c = req->data;
    if (status < 0 && c->state != CONN_CLOSING)
        http_conn_close(c, "shutdown failed");
}

static void conn_linger(struct http_conn *c)
{
    c->state = CONN_LINGER;
    c->in_off = c->in_len = 0;
    uint64_t ms = c->srv->opts.request_timeout_ms < HTTP_LINGER_MS
                      ? c->srv->opts.request_timeout_ms
                      : HTTP_LINGER_MS;
    timer_arm(c, TM_LINGER, ms);
    if (c->io->shutdown(c) != 0) {
        http_conn_close(c, "shutdown failed");
        return;
    }
    if (!c->reading && !c->peer_eof) {
        int rc = c->io->read_start(c);
        if (rc == HTTP_IO_EOF)
            http_conn_close(c, "peer closed its side");
        else if (rc != 0)
            http_conn_close(c, "cannot read");
    }
}

/* --- writing --------------------------------------------------------- */

static void write_finished(struct http_conn *c, int status)
{
    free(c->out);
    c->out = NULL;
    if (c->state == CONN_CLOSING)
        return;
    if (status < 0) {
        http_conn_close(c, uv_strerror(status));
        return;
    }
    c->served++;
    if (c->peer_eof) {
        http_conn_close(c, "peer closed its side");
        return;
    }
    if (c->close_after) {
        conn_linger(c);
        return;
    }
    c->state = CONN_READING;
    if (!c->processing) /* else conn_process, up the stack, goes on */
        conn_process(c);
}

static void on_write(uv_write_t *req, int status)
{
    write_finished(req->data, status);
}

void http_conn_send(struct http_conn *c, char *data, size_t len, bool close_after)
{
    if (c->state == CONN_CLOSING || c->state == CONN_LINGER) {
        free(data);
        return;
    }
    c->out = data;
    c->close_after = close_after;
    c->state = CONN_WRITING;
    size_t done = 0;
    /* A handler that answers at once (every health check) runs inside
     * conn_process. A reply the socket takes whole is finished here, without
     * uv_write: libuv re-arms the socket's epoll registration when a
     * uv_write completes, one epoll_ctl per request. Replies given later
     * (a switchover's outcome) take the uv_write path, so that no handler
     * is entered from inside another's reply. */
    if (c->processing && c->io->try_write != NULL) {
        ssize_t n = c->io->try_write(c, data, len);
        if (n == (ssize_t)len) {
            write_finished(c, 0);
            return;
        }
        if (n > 0) {
            done = (size_t)n;
        } else if (n != UV_EAGAIN) {
            write_finished(c, (int)n);
            return;
        }
    }
    timer_arm(c, TM_WRITE, c->srv->opts.request_timeout_ms);
    int rc = c->io->write(c, &c->wreq, data + done, len - done, on_write);
    if (rc != 0) {
        free(c->out);
        c->out = NULL;
        http_conn_close(c, uv_strerror(rc));
    }
}

static void on_continue_written(uv_write_t *req, int status)
{
    struct http_conn *c = req->data;
    free(req);
    if (status < 0 && c->state != CONN_CLOSING)
        http_conn_close(c, uv_strerror(status));
}

/* Refuse a request the parser could not take; the connection ends. */
static void conn_refuse(struct http_conn *c, llhttp_errno_t e)
{
    char msg[256];
    int status = c->err_status != 0 ? c->err_status : 400;
    if (c->err_status != 0) {
        snprintf(msg, sizeof msg, "%s", c->err_msg);
    } else {
        const char *reason = llhttp_get_error_reason(&c->parser);
        snprintf(msg, sizeof msg, "bad request: %s (%s)",
                 reason != NULL ? reason : "malformed HTTP", llhttp_errno_name(e));
    }
    c->srv->stats.bad_requests++;
    log_debug("http", "refusing request from %s with %d: %s", c->client_ip, status, msg);
    http_exchange_free(c->x);
    c->x = NULL;
    c->in_message = false;
    c->in_off = c->in_len = 0;
    size_t blen = 0, len = 0;
    char *body = http_json_error("", msg, &blen);
    char *out = body != NULL ? http_response_build(c->srv, status, NULL, body, blen, NULL, 0,
                                                   false, false, &len)
                             : NULL;
    free(body);
    if (out == NULL) {
        http_conn_close(c, "out of memory");
        return;
    }
    http_conn_send(c, out, len, true);
}

/* --- parser callbacks ------------------------------------------------- */

static int cb_fail(struct http_conn *c, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int cb_fail(struct http_conn *c, int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err_msg, sizeof c->err_msg, fmt, ap);
    va_end(ap);
    c->err_status = status;
    llhttp_set_error_reason(&c->parser, "request refused");
    return HPE_USER;
}

static int hdr_add(struct http_conn *c, size_t n)
{
    c->hdr_bytes += n;
    if (c->hdr_bytes > c->srv->opts.max_header_bytes)
        return cb_fail(c, 431, "request line and headers larger than %zu bytes",
                       c->srv->opts.max_header_bytes);
    return 0;
}

static int oom(struct http_conn *c)
{
    return cb_fail(c, 500, "out of memory");
}

static int on_message_begin(llhttp_t *p)
{
    struct http_conn *c = p->data;
    c->in_message = true;
    c->hdr_bytes = 0;
    c->err_status = 0;
    http_exchange_free(c->x);
    c->x = http_exchange_new(c);
    if (c->x == NULL) {
        oom(c);
        return -1;
    }
    if (c->tmode != TM_REQUEST)
        timer_arm(c, TM_REQUEST, c->srv->opts.request_timeout_ms);
    return 0;
}

static int on_method(llhttp_t *p, const char *at, size_t len)
{
    return hdr_add(p->data, len + 1);
}

static int on_url(llhttp_t *p, const char *at, size_t len)
{
    struct http_conn *c = p->data;
    if (c->x->url.len + len > HTTP_MAX_URL)
        return cb_fail(c, 414, "request target longer than %d bytes", HTTP_MAX_URL);
    if (http_buf_append(&c->x->url, at, len) != 0)
        return oom(c);
    return hdr_add(c, len);
}

static int on_version(llhttp_t *p, const char *at, size_t len)
{
    return hdr_add(p->data, len + 3);
}

static int on_header_field(llhttp_t *p, const char *at, size_t len)
{
    struct http_conn *c = p->data;
    struct http_exchange *x = c->x;
    if (!x->in_field) {
        if (x->n_headers >= HTTP_MAX_HEADERS)
            return cb_fail(c, 431, "more than %d header fields", HTTP_MAX_HEADERS);
        x->in_field = true;
        x->name_off = x->hdrs.len;
    }
    size_t start = x->hdrs.len;
    if (http_buf_append(&x->hdrs, at, len) != 0)
        return oom(c);
    for (size_t i = start; i < x->hdrs.len; i++) {
        char ch = x->hdrs.p[i];
        if (ch >= 'A' && ch <= 'Z')
            x->hdrs.p[i] = (char)(ch - 'A' + 'a');
    }
    return hdr_add(c, len);
}

static int on_header_field_complete(llhttp_t *p)
{
    struct http_conn *c = p->data;
    struct http_exchange *x = c->x;
    if (!x->in_field) { /* empty name: llhttp rejects these, stay safe anyway */
        x->in_field = true;
        x->name_off = x->hdrs.len;
    }
    if (http_buf_append(&x->hdrs, "", 1) != 0)
        return oom(c);
    x->in_field = false;
    x->value_off = x->hdrs.len;
    return hdr_add(c, 4);
}

static int on_header_value(llhttp_t *p, const char *at, size_t len)
{
    struct http_conn *c = p->data;
    if (http_buf_append(&c->x->hdrs, at, len) != 0)
        return oom(c);
    return hdr_add(c, len);
}

static int on_header_value_complete(llhttp_t *p)
{
    struct http_conn *c = p->data;
    struct http_exchange *x = c->x;
    while (x->hdrs.len > x->value_off &&
           (x->hdrs.p[x->hdrs.len - 1] == ' ' || x->hdrs.p[x->hdrs.len - 1] == '\t'))
        x->hdrs.len--;
    if (http_buf_append(&x->hdrs, "", 1) != 0)
        return oom(c);
    x->hoff[x->n_headers][0] = x->name_off;
    x->hoff[x->n_headers][1] = x->value_off;
    x->n_headers++;
    return 0;
}

static const char *parsed_header(const struct http_exchange *x, const char *name)
{
    for (size_t i = 0; i < x->n_headers; i++) {
        if (strcmp(x->hdrs.p + x->hoff[i][0], name) == 0)
            return x->hdrs.p + x->hoff[i][1];
    }
    return NULL;
}

static int on_headers_complete(llhttp_t *p)
{
    struct http_conn *c = p->data;
    if (hdr_add(c, 2) != 0)
        return -1;
    if ((p->flags & F_CONTENT_LENGTH) && p->content_length > c->srv->opts.max_body_bytes) {
        cb_fail(c, 413, "request body larger than %zu bytes", c->srv->opts.max_body_bytes);
        return -1;
    }
    /* curl and others wait for "100 Continue" before sending a large body
     * (RFC 9110 10.1.1); answering it spares them a one-second stall. */
    const char *expect = parsed_header(c->x, "expect");
    if (expect != NULL && strcasecmp(expect, "100-continue") == 0 && p->http_major == 1 &&
        p->http_minor >= 1) {
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        /* Each one gets its own write request: libuv keeps a request until
         * its callback has run, and a pipelined request answered at once
         * (uv_try_write) lets the parser reach the next one's headers
         * before that. */
        uv_write_t *req = malloc(sizeof *req);
        if (req == NULL)
            return oom(c);
        req->data = c;
        int rc = c->io->write(c, req, cont, sizeof cont - 1, on_continue_written);
        if (rc != 0) {
            log_debug("http", "cannot send 100 Continue to %s: %s", c->client_ip,
                      uv_strerror(rc));
            free(req);
        }
    }
    return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t len)
{
    struct http_conn *c = p->data;
    if (c->x->body.len + len > c->srv->opts.max_body_bytes)
        return cb_fail(c, 413, "request body larger than %zu bytes", c->srv->opts.max_body_bytes);
    if (http_buf_append(&c->x->body, at, len) != 0)
        return oom(c);
    return 0;
}

static int on_message_complete(llhttp_t *p)
{
    struct http_conn *c = p->data;
    c->in_message = false;
    /* We never switch protocols: answer an upgrade request and close. */
    c->x->keep_alive = llhttp_should_keep_alive(p) && !llhttp_get_upgrade(p);
    return HPE_PAUSED;
}

static const llhttp_settings_t parser_settings = {
    .on_message_begin = on_message_begin,
    .on_method = on_method,
    .on_url = on_url,
    .on_version = on_version,
    .on_header_field = on_header_field,
    .on_header_field_complete = on_header_field_complete,
    .on_header_value = on_header_value,
    .on_header_value_complete = on_header_value_complete,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* --- reading and parsing ------------------------------------------------ */

bool http_conn_input_reserve(struct http_conn *c, char **p, size_t *len)
{
    if (c->state == CONN_LINGER || c->in_len == 0)
        c->in_off = c->in_len = 0;
    size_t tail = c->in_cap - c->in_off - c->in_len;
    if (tail < 1024 && c->in_off > 0) {
        memmove(c->in, c->in + c->in_off, c->in_len);
        c->in_off = 0;
        tail = c->in_cap - c->in_len;
    }
    if (tail < 1024 && c->in_cap < HTTP_IN_MAX) {
        size_t cap = c->in_cap == 0 ? HTTP_IN_INITIAL : c->in_cap * 2;
        if (cap > HTTP_IN_MAX)
            cap = HTTP_IN_MAX;
        char *grown = realloc(c->in, cap);
        if (grown != NULL) {
            c->in = grown;
            c->in_cap = cap;
        }
    }
    *p = c->in != NULL ? c->in + c->in_off + c->in_len : NULL;
    *len = c->in != NULL ? c->in_cap - c->in_off - c->in_len : 0;
    return *len > 0;
}

void http_conn_input_commit(struct http_conn *c, size_t n)
{
    c->in_len += n;
}

void http_conn_input_ready(struct http_conn *c)
{
    if (c->state == CONN_READING)
        conn_process(c);
}

bool http_conn_linger_input(struct http_conn *c, size_t n)
{
    if (c->state != CONN_LINGER)
        return false;
    c->linger_bytes += n;
    if (c->linger_bytes > HTTP_LINGER_MAX_BYTES)
        http_conn_close(c, "too much input after the final reply");
    return true;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct http_conn *c = h->data;
    char *p;
    size_t len;
    /* A full buffer yields len 0, which libuv reports as UV_ENOBUFS. */
    (void)http_conn_input_reserve(c, &p, &len);
    buf->base = p;
    buf->len = len;
}

void http_conn_input_eof(struct http_conn *c)
{
    c->reading = false; /* libuv stops reading at EOF */
    switch (c->state) {
    case CONN_WRITING:
        c->peer_eof = true; /* finish the reply, then close */
        break;
    case CONN_HANDLING:
        http_conn_close(c, "client went away before the reply");
        break;
    default:
        http_conn_close(c, "peer closed the connection");
        break;
    }
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    struct http_conn *c = st->data;
    if (nread == 0 || c->state == CONN_CLOSING)
        return;
    if (nread == UV_ENOBUFS) {
        c->io->read_stop(c); /* backlog full; resumed when it drains */
        return;
    }
    if (nread < 0) {
        if (nread == UV_EOF)
            http_conn_input_eof(c);
        else
            http_conn_close(c, uv_strerror((int)nread));
        return;
    }
    if (http_conn_linger_input(c, (size_t)nread))
        return;
    c->in_len += (size_t)nread;
    if (c->state == CONN_READING)
        conn_process(c);
}

static void conn_dispatch(struct http_conn *c)
{
    struct http_exchange *x = c->x;
    c->state = CONN_HANDLING;
    timer_stop(c);
    if (http_exchange_finish(x, c->client_ip) != 0) {
        http_exchange_free(x);
        c->x = NULL;
        http_conn_close(c, "out of memory");
        return;
    }
    x->req.tls = c->tls != NULL;
    x->req.client_verified = c->tls != NULL && http_tls_conn_verified(c);
    x->dispatched = true;
    c->srv->stats.requests++;
    http_server_dispatch(c->srv, x);
}

static void conn_parse(struct http_conn *c)
{
    while (c->state == CONN_READING && c->in_len > 0) {
        const char *d = c->in + c->in_off;
        llhttp_errno_t e = llhttp_execute(&c->parser, d, c->in_len);
        if (e == HPE_OK) {
            c->in_off = c->in_len = 0;
        } else if (e == HPE_PAUSED) {
            size_t used = (size_t)(llhttp_get_error_pos(&c->parser) - d);
            c->in_off += used;
            c->in_len -= used;
            llhttp_resume(&c->parser); /* runs again only once we are READING */
            conn_dispatch(c);
        } else {
            conn_refuse(c, e);
        }
    }
}

static void conn_process_input(struct http_conn *c)
{
    for (;;) {
        conn_parse(c);
        if (c->state != CONN_READING)
            return;
        if (c->reading || c->peer_eof)
            break;
        /* TLS may hand over input it had buffered (read_start's contract):
         * parse it in this loop rather than from inside read_start. */
        int rc = c->io->read_start(c);
        if (rc < 0) {
            http_conn_close(c, "cannot read");
            return;
        }
        if (rc == HTTP_IO_EOF && c->in_len == 0) {
            http_conn_input_eof(c);
            return;
        }
        if (c->in_len == 0)
            break;
    }
    if (!c->in_message && c->tmode != TM_IDLE && c->tmode != TM_FIRST_BYTE)
        timer_arm(c, TM_IDLE, c->srv->opts.idle_timeout_ms);
}

static void conn_process(struct http_conn *c)
{
    bool outer = c->processing;
    c->processing = true;
    conn_process_input(c);
    c->processing = outer;
}

/* --- accepting -------------------------------------------------------- */

static void peer_name(uv_tcp_t *t, char *out, size_t len)
{
    struct sockaddr_storage ss;
    int sl = (int)sizeof ss;
    snprintf(out, len, "?");
    if (uv_tcp_getpeername(t, (struct sockaddr *)&ss, &sl) != 0)
        return;
    if (ss.ss_family == AF_INET)
        uv_ip4_name((const struct sockaddr_in *)&ss, out, len);
    else if (ss.ss_family == AF_INET6)
        uv_ip6_name((const struct sockaddr_in6 *)&ss, out, len);
}

int http_conn_accept(struct http_server *s)
{
    struct http_conn *c = calloc(1, sizeof *c);
    if (c == NULL)
        return UV_ENOMEM;
    c->srv = s;
    c->io = &plain_io;
    c->state = CONN_READING;
    /* Both inits cannot fail on Linux for an AF_UNSPEC tcp handle and a
     * timer; they are checked anyway. */
    int rc = uv_tcp_init(s->loop, &c->tcp);
    if (rc != 0) {
        free(c);
        return rc;
    }
    c->tcp.data = c;
    c->handles_open = 1;
    rc = uv_timer_init(s->loop, &c->timer);
    if (rc == 0)
        c->handles_open = 2;
    c->timer.data = c;
    c->wreq.data = c;
    c->sreq.data = c;
    llhttp_init(&c->parser, HTTP_REQUEST, &parser_settings);
    c->parser.data = c;

    c->next = s->conns;
    if (s->conns != NULL)
        s->conns->prev = c;
    s->conns = c;
    s->live++;
    s->stats.connections_open++;

    if (rc == 0)
        rc = uv_accept((uv_stream_t *)&s->listener, (uv_stream_t *)&c->tcp);
    if (rc != 0) {
        c->state = CONN_CLOSING;
        if (c->handles_open == 2)
            uv_close((uv_handle_t *)&c->timer, on_close);
        uv_close((uv_handle_t *)&c->tcp, on_close);
        return rc;
    }
    s->stats.connections_accepted++;
    peer_name(&c->tcp, c->client_ip, sizeof c->client_ip);
    /* Probes are tiny request/response pairs: do not let Nagle hold the
     * reply back waiting for an ACK. */
    (void)uv_tcp_nodelay(&c->tcp, 1);
    timer_arm(c, TM_FIRST_BYTE, s->opts.request_timeout_ms);
    if (s->tls_ctx != NULL) {
        rc = http_tls_conn_attach(c);
        if (rc != 0) {
            http_conn_close(c, uv_strerror(rc));
            return 0;
        }
    }
    rc = c->io->read_start(c);
    if (rc < 0)
        http_conn_close(c, uv_strerror(rc));
    return 0;
}
