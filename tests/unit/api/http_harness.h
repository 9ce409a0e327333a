/* Shared by the http_server tests: the server runs on the test's loop in the
 * main thread; a client thread talks to it with blocking sockets (every
 * recv/send has a 3 s timeout) while the main thread pumps the loop. All
 * assertions are made in the main thread after the client thread joined.
 * Included by one test file each (static helpers; some go unused). */
#ifndef PGW_TEST_HTTP_HARNESS_H
#define PGW_TEST_HTTP_HARNESS_H

#pragma GCC diagnostic ignored "-Wunused-function"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <uv.h>

#include "api/http_server.h"
#include "common/log.h"

/* --- fixture ------------------------------------------------------------- */

struct resp {
    int status;
    char head[8192];
    char body[70000];
    size_t body_len;
};

struct fx;
typedef void (*client_fn)(struct fx *f);

struct later {
    uv_timer_t t;
    struct http_exchange *x;
    struct fx *f;
    char msg[64];
};

struct fx {
    uv_loop_t loop;
    uv_timer_t pump;
    struct http_server *srv;
    uint16_t port;
    int closed_done;

    /* handler bookkeeping (main thread only) */
    int abort_count;
    int later_fired;
    int never_count;
    struct http_exchange *never_x[8];

    /* client thread */
    pthread_t th;
    atomic_int th_done;
    atomic_int phase;
    client_fn fn;

    /* results written by the client thread, read after join */
    struct resp r[4];
    long v[16];
    char s[4][512];
};

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* --- handlers ------------------------------------------------------------ */

static void h_hello(struct http_exchange *x, const struct http_request *req, void *ctx)
{
    http_reply(x, 200, "text/plain", "hello\n", 6);
}

static void h_echo(struct http_exchange *x, const struct http_request *req, void *ctx)
{
    char buf[70000];
    int n = snprintf(buf, sizeof buf, "%s %s ?%s [%zu] %s", req->method_name, req->path,
                     req->query, req->body_len, req->body);
    http_reply(x, 200, "text/plain", buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
}

static void h_path(struct http_exchange *x, const struct http_request *req, void *ctx)
{
    http_reply(x, 200, "text/plain", req->path, strlen(req->path));
}

static void h_hdr(struct http_exchange *x, const struct http_request *req, void *ctx)
{
    char name[128], out[600];
    if (http_query_param(req, "name", name, sizeof name) == NULL) {
        http_reply_text(x, 400, "name missing");
        return;
    }
    const char *v = http_request_header(req, name);
    snprintf(out, sizeof out, "%s=%s ip=%s", name, v != NULL ? v : "(none)", req->client_ip);
    http_reply(x, 200, "text/plain", out, strlen(out));
}

static void h_const(struct http_exchange *x, const struct http_request *req, void *ctx)
{
    const char *s = ctx;
    http_reply_header(x, "X-Route", s);
    http_reply(x, 200, "text/plain", s, strlen(s));
}

static void later_closed(uv_handle_t *h)
{
    free(h->data);
}

static void later_fire(uv_timer_t *t)
{
    struct later *l = t->data;
    l->f->later_fired++;
    http_reply(l->x, 200, "text/plain", l->msg, strlen(l->msg));
    uv_close((uv_handle_t *)t, later_closed);
}

static void on_abort_count(void *ctx)
{
    struct fx *f = ctx;
    f->abort_count++;
}

/* Answers from a timer: ?ms=N&tag=T -> "later:T" after N ms. */
static void h_later(struct http_exchange *x, const struct http_request *req, void *ctx)
{
    struct fx *f = ctx;
    char ms[16], tag[32];
    struct later *l = calloc(1, sizeof *l);
    assert_non_null(l);
    l->x = x;
    l->f = f;
    snprintf(l->msg, sizeof l->msg, "later:%s",
             http_query_param(req, "tag", tag, sizeof tag) ? tag : "");
    long delay = http_query_param(req, "ms", ms, sizeof ms) ? strtol(ms, NULL, 10) : 50;
    http_exchange_on_abort(x, on_abort_count, f);
    uv_timer_init(&f->loop, &l->t);
    l->t.data = l;
    uv_timer_start(&l->t, later_fire, (uint64_t)delay, 0);
}

struct never_slot {
    struct fx *f;
    int i;
};

static void never_abort2(void *ctx)
{
    struct never_slot *ns = ctx;
    ns->f->abort_count++;
    http_reply(ns->f->never_x[ns->i], 200, NULL, "{}", 2);
    ns->f->never_x[ns->i] = NULL;
    free(ns);
}

/* Never answers on its own: only the abort path frees it. */
static void h_never(struct http_exchange *x, const struct http_request *req, void *ctx)
{
    struct fx *f = ctx;
    int i = f->never_count++ % 8;
    f->never_x[i] = x;
    struct never_slot *ns = malloc(sizeof *ns);
    assert_non_null(ns);
    ns->f = f;
    ns->i = i;
    http_exchange_on_abort(x, never_abort2, ns);
}

/* 16 MiB: more than loopback socket buffers hold, so a client that does
 * not read leaves the write pending. */
static char big_body[16 << 20];

static void h_big(struct http_exchange *x, const struct http_request *req, void *ctx)
{
    http_reply(x, 200, "application/octet-stream", big_body, sizeof big_body);
}

static const struct http_route routes_fx[] = {
    {"/big", HTTP_M_GET, false, h_big},
    {"/hello", HTTP_M_PROBE, false, h_hello},
    {"/echo", HTTP_M_GET | HTTP_M_POST | HTTP_M_PUT, false, h_echo},
    {"/p/", HTTP_M_GET, true, h_path},
    {"/hdr", HTTP_M_GET, false, h_hdr},
    {"/later", HTTP_M_GET, false, h_later},
    {"/never", HTTP_M_GET, false, h_never},
};

static const struct http_route routes_match[] = {
    {"/api/x", HTTP_M_GET, false, h_const},
    {"/api/", HTTP_M_GET, true, h_const},
    {"/api/x/", HTTP_M_GET, true, h_const},
    {"/split", HTTP_M_GET, false, h_const},
    {"/split", HTTP_M_POST, false, h_const},
    {"/", HTTP_M_GET, false, h_const},
};
static const char *const match_ctx[] = {"exact", "short", "long", "split-get", "split-post",
                                        "root"};

static void pump_cb(uv_timer_t *t)
{
    (void)t;
}

static void fx_start(struct fx *f, const struct http_server_opts *o)
{
    struct http_server_opts def = {.host = "127.0.0.1", .port = 0, .request_timeout_ms = 2000,
                                   .idle_timeout_ms = 5000, .max_header_bytes = 4096,
                                   .max_body_bytes = 65536};
    char err[256];
    memset(f, 0, sizeof *f);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    assert_int_equal(uv_timer_init(&f->loop, &f->pump), 0);
    uv_timer_start(&f->pump, pump_cb, 1, 1);
    int rc = http_server_start(&f->loop, o != NULL ? o : &def, &f->srv, err, sizeof err);
    if (rc != 0)
        fail_msg("http_server_start: %s", err);
    f->port = http_server_port(f->srv);
    assert_true(f->port > 0);
    assert_int_equal(http_server_add_routes(f->srv, routes_fx,
                                            sizeof routes_fx / sizeof routes_fx[0], f), 0);
    for (size_t i = 0; i < sizeof routes_match / sizeof routes_match[0]; i++)
        assert_int_equal(http_server_add_routes(f->srv, &routes_match[i], 1,
                                                (void *)match_ctx[i]), 0);
}

static void on_server_closed(void *ctx)
{
    struct fx *f = ctx;
    f->closed_done++;
}

static void close_walk(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        fprintf(stderr, "handle still open at teardown: type %d\n", (int)h->type);
}

/* Close everything and prove the loop can be closed. */
static void fx_stop(struct fx *f)
{
    if (f->srv != NULL) {
        http_server_close(f->srv, on_server_closed, f);
        f->srv = NULL;
    }
    uv_close((uv_handle_t *)&f->pump, NULL);
    uint64_t start = now_ms();
    while (uv_loop_alive(&f->loop) && now_ms() - start < 5000)
        uv_run(&f->loop, UV_RUN_NOWAIT);
    uv_walk(&f->loop, close_walk, NULL);
    assert_int_equal(f->closed_done, 1);
    assert_int_equal(uv_loop_close(&f->loop), 0);
}

static void *thread_main(void *arg)
{
    struct fx *f = arg;
    f->fn(f);
    atomic_store(&f->th_done, 1);
    return NULL;
}

/* Run fn in a client thread while the loop turns; tick (may be NULL) runs
 * on the loop thread after every turn. Bounded by 30 s. */
static void run_client(struct fx *f, client_fn fn, void (*tick)(struct fx *))
{
    atomic_store(&f->th_done, 0);
    f->fn = fn;
    assert_int_equal(pthread_create(&f->th, NULL, thread_main, f), 0);
    uint64_t start = now_ms();
    bool late = false;
    while (!atomic_load(&f->th_done)) {
        uv_run(&f->loop, UV_RUN_ONCE);
        if (tick != NULL)
            tick(f);
        if (now_ms() - start > 30000) {
            late = true;
            break;
        }
    }
    pthread_join(f->th, NULL);
    assert_false(late);
}

/* Turn the loop until cond holds (bounded). */
static bool pump_until(struct fx *f, bool (*cond)(struct fx *), unsigned ms)
{
    uint64_t start = now_ms();
    while (!cond(f) && now_ms() - start < ms)
        uv_run(&f->loop, UV_RUN_ONCE);
    return cond(f);
}

static struct http_server_stats stats(struct fx *f)
{
    struct http_server_stats st;
    http_server_get_stats(f->srv, &st);
    return st;
}

/* --- client helpers (client thread) -------------------------------------- */

struct cc {
    int fd;
    char buf[200000];
    size_t len;
};

static struct cc *cc_open(uint16_t port)
{
    struct cc *c = calloc(1, sizeof *c);
    if (c == NULL)
        return NULL;
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    struct timeval tv = {3, 0};
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    if (connect(c->fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(c->fd);
        free(c);
        return NULL;
    }
    return c;
}

static void cc_close(struct cc *c)
{
    if (c != NULL) {
        close(c->fd);
        free(c);
    }
}

static int cc_send(struct cc *c, const void *data, size_t n)
{
    const char *p = data;
    while (n > 0) {
        ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int cc_sends(struct cc *c, const char *s)
{
    return cc_send(c, s, strlen(s));
}

/* Parse one response from c->buf; 1 complete, 0 need more, -1 malformed. */
static int parse_resp(struct cc *c, struct resp *r, bool head)
{
    char *end = memmem(c->buf, c->len, "\r\n\r\n", 4);
    if (end == NULL)
        return 0;
    size_t hlen = (size_t)(end - c->buf) + 4;
    if (hlen >= sizeof r->head)
        return -1;
    memcpy(r->head, c->buf, hlen);
    r->head[hlen] = '\0';
    if (strncmp(r->head, "HTTP/1.1 ", 9) != 0)
        return -1;
    r->status = (int)strtol(r->head + 9, NULL, 10);
    size_t cl = 0;
    for (char *line = strstr(r->head, "\r\n"); line != NULL; line = strstr(line + 2, "\r\n")) {
        if (strncasecmp(line + 2, "content-length:", 15) == 0)
            cl = (size_t)strtoul(line + 17, NULL, 10);
    }
    if (head || r->status == 100)
        cl = 0;
    if (c->len < hlen + cl)
        return 0;
    if (cl >= sizeof r->body)
        return -1;
    memcpy(r->body, c->buf + hlen, cl);
    r->body[cl] = '\0';
    r->body_len = cl;
    memmove(c->buf, c->buf + hlen + cl, c->len - hlen - cl);
    c->len -= hlen + cl;
    return 1;
}

/* Read one response (body skipped for HEAD): 0, or -1 on EOF/timeout. */
static int cc_resp(struct cc *c, struct resp *r, bool head)
{
    memset(r, 0, sizeof *r);
    for (;;) {
        int p = parse_resp(c, r, head);
        if (p != 0)
            return p > 0 ? 0 : -1;
        if (c->len >= sizeof c->buf)
            return -1;
        ssize_t n = recv(c->fd, c->buf + c->len, sizeof c->buf - c->len, 0);
        if (n <= 0)
            return -1;
        c->len += (size_t)n;
    }
}

/* Wait for the server to close: ms until EOF/reset, or -1 if still open. */
static long cc_wait_eof(struct cc *c, unsigned max_ms)
{
    uint64_t start = now_ms();
    while (now_ms() - start < max_ms) {
        struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
        if (poll(&pfd, 1, 50) <= 0)
            continue;
        char tmp[4096];
        ssize_t n = recv(c->fd, tmp, sizeof tmp, 0);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
            return (long)(now_ms() - start);
    }
    return -1;
}

static bool has_header(const struct resp *r, const char *line)
{
    return strcasestr(r->head, line) != NULL;
}

/* One request on a fresh connection: status, or -1. */
static int one_shot(struct fx *f, const char *req, struct resp *r)
{
    struct cc *c = cc_open(f->port);
    if (c == NULL)
        return -1;
    int rc = cc_sends(c, req) == 0 && cc_resp(c, r, false) == 0 ? r->status : -1;
    cc_close(c);
    return rc;
}


#endif
