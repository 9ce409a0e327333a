/* The startup-packet probe (see pgprobe.h).
 *
 * Happy path: (resolve a name off the loop) -> connect -> write the
 * StartupMessage -> read until the first AuthenticationRequest or
 * ErrorResponse -> callback -> close. With trust authentication the server
 * lets us in at once: we read on to ReadyForQuery and send Terminate, so the
 * session ends as a client's should; closing with its ParameterStatus
 * messages unread would reset the connection, and the backend would log
 * "connection reset by peer" every loop_wait. Closing while the server waits
 * for a password is what pg_isready does; PostgreSQL logs nothing for it.
 * Failure modes: refused / reset / closed before an answer, a reply that is
 * not the PostgreSQL protocol (PGPROBE_FAILED); the deadline (PGPROBE_TIMEOUT).
 *
 * Lifetime: the object is freed when its last handle is closed and a name
 * lookup still running has come back (uv_cancel cannot always stop one). */
#include "pg/pgprobe.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#define PROTOCOL_3_0 196608u
#define MAX_MESSAGE 4096u /* a startup answer is a few hundred bytes */

/* Name lookups run in libuv's thread pool, which Raft's disk I/O shares:
 * with a DNS server that does not answer, a lookup per loop_wait would pile
 * up there and starve it. One at a time (loop thread only). */
static int lookups_running;

struct pgprobe {
    uv_loop_t *loop;
    pgprobe_cb cb;
    void *ctx;
    uv_timer_t timer;
    union {
        uv_handle_t handle;
        uv_stream_t stream;
        uv_tcp_t tcp;
        uv_pipe_t pipe;
    } s;
    uv_connect_t creq;
    uv_write_t wreq;
    uv_getaddrinfo_t gai;
    struct addrinfo *addrs, *next_addr; /* a name's addresses, tried in turn */
    int refs; /* open handles + a pending name lookup */
    bool stream_open, gai_pending, finished, cancelled;
    bool authenticated;          /* AuthenticationOk seen: read on to ReadyForQuery */
    bool has_early;              /* a failure found before any I/O, delivered by the timer */
    struct pgprobe_result early; /* that failure */
    uint16_t port;
    char host[256];
    size_t outlen, inlen;
    char out[512];
    unsigned char in[MAX_MESSAGE + 8];
};

static void unref(struct pgprobe *p)
{
    if (--p->refs > 0)
        return;
    if (p->addrs)
        uv_freeaddrinfo(p->addrs);
    free(p);
}

static void on_close(uv_handle_t *h)
{
    unref(h->data);
}

static void release(struct pgprobe *p)
{
    uv_timer_stop(&p->timer);
    uv_close((uv_handle_t *)&p->timer, on_close);
    if (p->stream_open) {
        p->stream_open = false;
        uv_close(&p->s.handle, on_close);
    }
    if (p->gai_pending)
        uv_cancel((uv_req_t *)&p->gai); /* its callback still comes and unrefs */
}

static void finish(struct pgprobe *p, const struct pgprobe_result *r)
{
    if (p->finished)
        return;
    p->finished = true;
    if (!p->cancelled && p->cb)
        p->cb(r, p->ctx);
    release(p);
}

static void finish_fmt(struct pgprobe *p, enum pgprobe_outcome o, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void finish_fmt(struct pgprobe *p, enum pgprobe_outcome o, const char *fmt, ...)
{
    struct pgprobe_result r = {.outcome = o};
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r.message, sizeof r.message, fmt, ap);
    va_end(ap);
    finish(p, &r);
}

static void on_timer(uv_timer_t *t)
{
    struct pgprobe *p = t->data;
    if (p->has_early) {
        finish(p, &p->early);
        return;
    }
    if (p->authenticated)
        finish_fmt(p, PGPROBE_TIMEOUT, "authenticated, but the backend was not ready within the deadline");
    else
        finish_fmt(p, PGPROBE_TIMEOUT, "no answer to the startup packet within the deadline");
}

/* A failure before any I/O started: delivered from the timer, so that the
 * callback never runs inside pgprobe_start. */
static void fail_soon_msg(struct pgprobe *p, const char *msg)
{
    p->has_early = true;
    p->early.outcome = PGPROBE_FAILED;
    snprintf(p->early.message, sizeof p->early.message, "%s", msg);
    uv_timer_stop(&p->timer);
    uv_timer_start(&p->timer, on_timer, 0, 0);
}

static void fail_soon(struct pgprobe *p, const char *what, int uverr)
{
    char msg[sizeof p->early.message];
    snprintf(msg, sizeof msg, "%s: %s", what, uv_strerror(uverr));
    fail_soon_msg(p, msg);
}

static uint32_t be32(const unsigned char *b)
{
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | (uint32_t)b[3];
}

static void put32(char *b, uint32_t v)
{
    b[0] = (char)(v >> 24);
    b[1] = (char)(v >> 16);
    b[2] = (char)(v >> 8);
    b[3] = (char)v;
}

/* ErrorResponse: (field type byte, C string)* then a zero byte. */
static void parse_error(const unsigned char *body, size_t len, struct pgprobe_result *r)
{
    const char *severity = "", *message = "";
    size_t i = 0;
    while (i < len && body[i] != 0) {
        unsigned char field = body[i++];
        const unsigned char *end = memchr(body + i, 0, len - i);
        if (end == NULL)
            break; /* unterminated: keep what we have */
        const char *val = (const char *)body + i;
        if (field == 'C')
            snprintf(r->sqlstate, sizeof r->sqlstate, "%s", val);
        else if (field == 'V' || (field == 'S' && !*severity))
            severity = val;
        else if (field == 'M')
            message = val;
        i = (size_t)(end - body) + 1;
    }
    snprintf(r->message, sizeof r->message, "%s%s%s", severity, *severity ? ":  " : "",
             *message ? message : "(the server's error has no message)");
}

/* Handles every complete message in the buffer; finishes the probe once
 * the answer is known. */
static void consume(struct pgprobe *p)
{
    size_t off = 0;
    while (!p->finished && p->inlen - off >= 5) {
        unsigned char type = p->in[off];
        uint32_t len = be32(p->in + off + 1);
        if (len < 4 || len > MAX_MESSAGE) {
            finish_fmt(p, PGPROBE_FAILED,
                       "not a PostgreSQL answer (message type 0x%02x, length %u)", type, len);
            return;
        }
        if (p->inlen - off < 1 + (size_t)len)
            break;
        const unsigned char *body = p->in + off + 5;
        size_t blen = len - 4;
        off += 1 + (size_t)len;
        if (type == 'R' && blen >= 4) {
            uint32_t code = be32(body);
            if (code != 0 || p->authenticated) {
                if (!p->authenticated)
                    finish_fmt(p, PGPROBE_AUTH_REQUEST,
                               "the server asked for authentication (method %u)", code);
                continue;
            }
            p->authenticated = true; /* trust: read on to ReadyForQuery */
        } else if (type == 'E') {
            struct pgprobe_result r = {.outcome = PGPROBE_SERVER_ERROR};
            parse_error(body, blen, &r);
            finish(p, &r);
        } else if (type == 'Z' && p->authenticated) {
            static const char terminate[5] = {'X', 0, 0, 0, 4};
            uv_buf_t b = uv_buf_init((char *)terminate, sizeof terminate);
            (void)uv_try_write(&p->s.stream, &b, 1); /* best effort: we close anyway */
            finish_fmt(p, PGPROBE_AUTH_REQUEST, "the server let us in (trust) and is ready");
        } else if (type == 'N' || (p->authenticated && (type == 'S' || type == 'K'))) {
            continue; /* notices; session parameters and the cancel key */
        } else {
            finish_fmt(p, PGPROBE_FAILED, "not a PostgreSQL answer (message type 0x%02x)", type);
        }
    }
    if (off > 0 && !p->finished) {
        memmove(p->in, p->in + off, p->inlen - off);
        p->inlen -= off;
    }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    struct pgprobe *p = h->data;
    *buf = uv_buf_init((char *)p->in + p->inlen, (unsigned)(sizeof p->in - p->inlen));
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    (void)buf;
    struct pgprobe *p = s->data;
    if (p->finished)
        return;
    if (n == UV_EOF) {
        finish_fmt(p, PGPROBE_FAILED, "the server closed the connection without answering");
        return;
    }
    if (n < 0) {
        finish_fmt(p, PGPROBE_FAILED, "reading the answer: %s", uv_strerror((int)n));
        return;
    }
    p->inlen += (size_t)n;
    consume(p);
    if (!p->finished && p->inlen == sizeof p->in)
        finish_fmt(p, PGPROBE_FAILED, "not a PostgreSQL answer (more than %u bytes in one message)",
                   MAX_MESSAGE);
}

static void on_written(uv_write_t *w, int status)
{
    struct pgprobe *p = w->data;
    if (status < 0 && status != UV_ECANCELED && !p->finished)
        finish_fmt(p, PGPROBE_FAILED, "sending the startup packet: %s", uv_strerror(status));
}

static void on_closed_try_next(uv_handle_t *h);

static void on_connected(uv_connect_t *c, int status)
{
    struct pgprobe *p = c->data;
    if (p->finished)
        return;
    if (status < 0 && p->next_addr != NULL && status != UV_ECANCELED) {
        /* the name has another address: a fresh handle for it, once this
         * one is closed */
        p->stream_open = false;
        uv_close(&p->s.handle, on_closed_try_next);
        return;
    }
    if (status < 0) {
        finish_fmt(p, PGPROBE_FAILED, "connecting to %s:%u: %s", p->host, (unsigned)p->port,
                   uv_strerror(status));
        return;
    }
    uv_buf_t b = uv_buf_init(p->out, (unsigned)p->outlen);
    p->wreq.data = p;
    int rc = uv_write(&p->wreq, &p->s.stream, &b, 1, on_written);
    if (rc == 0)
        rc = uv_read_start(&p->s.stream, on_alloc, on_read);
    if (rc != 0)
        finish_fmt(p, PGPROBE_FAILED, "sending the startup packet: %s", uv_strerror(rc));
}

static void connect_tcp(struct pgprobe *p, const struct sockaddr *sa)
{
    int rc = uv_tcp_init(p->loop, &p->s.tcp);
    if (rc != 0) {
        fail_soon(p, "socket", rc);
        return;
    }
    p->s.handle.data = p;
    p->stream_open = true;
    p->refs++;
    p->creq.data = p;
    rc = uv_tcp_connect(&p->creq, &p->s.tcp, sa, on_connected);
    if (rc != 0)
        fail_soon(p, "connect", rc);
}

static void connect_next(struct pgprobe *p)
{
    const struct addrinfo *a = p->next_addr;
    p->next_addr = a->ai_next;
    connect_tcp(p, a->ai_addr);
}

static void on_closed_try_next(uv_handle_t *h)
{
    struct pgprobe *p = h->data;
    if (!p->finished)
        connect_next(p); /* takes a new reference before dropping this one */
    unref(p);
}

static void on_resolved(uv_getaddrinfo_t *g, int status, struct addrinfo *ai)
{
    struct pgprobe *p = g->data;
    p->gai_pending = false;
    lookups_running--;
    p->addrs = ai;
    if (!p->finished) {
        if (status < 0 || ai == NULL) {
            finish_fmt(p, PGPROBE_FAILED, "resolving %s: %s", p->host,
                       status < 0 ? uv_strerror(status) : "no address");
        } else {
            p->next_addr = ai;
            connect_next(p);
        }
    }
    unref(p);
}

static int build_startup(struct pgprobe *p, const char *user, const char *dbname)
{
    const char *kv[][2] = {{"user", user}, {"database", dbname}, {"application_name", "pgwarden-probe"}};
    size_t n = 8;
    for (size_t i = 0; i < sizeof kv / sizeof kv[0]; i++)
        for (int j = 0; j < 2; j++) {
            size_t l = strlen(kv[i][j]) + 1;
            if (n + l + 1 > sizeof p->out)
                return PGW_EINVAL;
            memcpy(p->out + n, kv[i][j], l);
            n += l;
        }
    p->out[n++] = '\0';
    put32(p->out, (uint32_t)n);
    put32(p->out + 4, PROTOCOL_3_0);
    p->outlen = n;
    return PGW_OK;
}

int pgprobe_start(uv_loop_t *loop, const char *host, uint16_t port, const char *user,
                  const char *dbname, uint32_t timeout_ms, pgprobe_cb cb, void *ctx,
                  struct pgprobe **out)
{
    if (out)
        *out = NULL;
    if (!loop || !host || !*host || !port || !user || !*user || !dbname || !*dbname || !cb ||
        strlen(host) >= sizeof ((struct pgprobe *)0)->host)
        return PGW_EINVAL;
    struct pgprobe *p = calloc(1, sizeof *p);
    if (!p)
        return PGW_ENOMEM;
    p->loop = loop;
    p->cb = cb;
    p->ctx = ctx;
    p->port = port;
    snprintf(p->host, sizeof p->host, "%s", host);
    if (build_startup(p, user, dbname) != PGW_OK) {
        free(p);
        return PGW_EINVAL;
    }
    char path[sizeof ((struct sockaddr_un *)0)->sun_path + 32];
    if (host[0] == '/' && (size_t)snprintf(path, sizeof path, "%s/.s.PGSQL.%u", host, (unsigned)port) >=
                              sizeof ((struct sockaddr_un *)0)->sun_path) {
        free(p);
        return PGW_EINVAL;
    }
    uv_timer_init(loop, &p->timer);
    p->timer.data = p;
    p->refs = 1;
    uv_timer_start(&p->timer, on_timer, timeout_ms ? timeout_ms : 1, 0);

    struct sockaddr_storage ss;
    if (host[0] == '/') {
        int rc = uv_pipe_init(loop, &p->s.pipe, 0);
        if (rc != 0) {
            fail_soon(p, "socket", rc);
        } else {
            p->s.handle.data = p;
            p->stream_open = true;
            p->refs++;
            p->creq.data = p;
            uv_pipe_connect(&p->creq, &p->s.pipe, path, on_connected);
        }
    } else if (uv_ip4_addr(host, port, (struct sockaddr_in *)&ss) == 0 ||
               uv_ip6_addr(host, port, (struct sockaddr_in6 *)&ss) == 0) {
        connect_tcp(p, (const struct sockaddr *)&ss);
    } else if (lookups_running > 0) {
        char msg[sizeof p->early.message];
        snprintf(msg, sizeof msg, "resolving %s: an earlier lookup has not come back yet", host);
        fail_soon_msg(p, msg);
    } else {
        char service[8];
        snprintf(service, sizeof service, "%u", (unsigned)port);
        struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
        p->gai.data = p;
        int rc = uv_getaddrinfo(loop, &p->gai, on_resolved, host, service, &hints);
        if (rc != 0) {
            fail_soon(p, "resolving", rc);
        } else {
            p->gai_pending = true;
            lookups_running++;
            p->refs++;
        }
    }
    if (out)
        *out = p;
    return PGW_OK;
}

void pgprobe_cancel(struct pgprobe *p)
{
    if (p == NULL || p->finished)
        return;
    p->cancelled = true;
    finish(p, NULL);
}
