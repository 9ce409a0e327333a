/* common/httpc against http_server (and a canned raw server for responses
 * our server never sends: chunked, close-delimited, interim, malformed) on
 * one loop, single-threaded. It lives under tests/unit/api because it needs
 * the server; the client itself is in pgw_common. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <uv.h>

#include "api/http_server.h"
#include "common/httpc.h"
#include "common/log.h"

struct res {
    int called;
    int status;
    int http_status;
    char body[256];
    size_t body_len;
    char err[512];
};

struct canned_conn {
    uv_tcp_t tcp;
    uv_write_t w;
    char in[4096];
    size_t in_len;
    bool answered;
    struct fx *f;
};

struct fx {
    uv_loop_t loop;
    struct http_server *srv;
    uint16_t port;
    int closed;
    struct http_exchange *held[4];
    int n_held;
    char big[100000];

    uv_tcp_t canned;
    uint16_t canned_port;
    const char *canned_reply;
};

/* --- server side ---------------------------------------------------------- */

static void h_hello(struct http_exchange *x, const struct http_request *req, void *ctx)
{
    http_reply(x, 200, "text/plain", "hello", 5);
}

static void h_echo(struct http_exchange *x, const struct http_request *req, void *ctx)
{
    char out[1024];
    const char *auth = http_request_header(req, "authorization");
    const char *ct = http_request_header(req, "content-type");
    const char *host = http_request_header(req, "host");
    int n = snprintf(out, sizeof out, "%s %s?%s ct=%s auth=%s host=%s conn=%s body=%s",
                     req->method_name, req->path, req->query, ct ? ct : "-", auth ? auth : "-",
                     host ? host : "-", http_request_header(req, "connection"), req->body);
    http_reply(x, 201, "text/plain", out, (size_t)n);
}

static void h_big(struct http_exchange *x, const struct http_request *req, void *ctx)
{
    struct fx *f = ctx;
    http_reply(x, 200, "text/plain", f->big, sizeof f->big);
}

static void held_abort(void *ctx)
{
    struct http_exchange **slot = ctx;
    http_reply(*slot, 200, NULL, NULL, 0); /* frees it */
    *slot = NULL;
}

static void h_never(struct http_exchange *x, const struct http_request *req, void *ctx)
{
    struct fx *f = ctx;
    int i = f->n_held++ % 4;
    f->held[i] = x;
    http_exchange_on_abort(x, held_abort, &f->held[i]);
}

static const struct http_route routes[] = {
    {"/hello", HTTP_M_PROBE, false, h_hello},
    {"/", HTTP_M_GET, false, h_hello},
    {"/echo", HTTP_M_POST | HTTP_M_GET | HTTP_M_PATCH, false, h_echo},
    {"/big", HTTP_M_GET, false, h_big},
    {"/never", HTTP_M_GET, false, h_never},
};

/* --- canned raw server ------------------------------------------------------ */

static void canned_closed(uv_handle_t *h)
{
    free(h->data);
}

static void canned_written(uv_write_t *w, int status)
{
    struct canned_conn *cc = w->data;
    uv_close((uv_handle_t *)&cc->tcp, canned_closed);
}

static void canned_alloc(uv_handle_t *h, size_t s, uv_buf_t *b)
{
    struct canned_conn *cc = h->data;
    b->base = cc->in + cc->in_len;
    b->len = sizeof cc->in - cc->in_len - 1;
}

static void canned_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b)
{
    struct canned_conn *cc = st->data;
    if (n < 0) {
        if (!cc->answered) {
            cc->answered = true;
            uv_close((uv_handle_t *)&cc->tcp, canned_closed);
        }
        return;
    }
    cc->in_len += (size_t)n;
    cc->in[cc->in_len] = '\0';
    if (!cc->answered && strstr(cc->in, "\r\n\r\n") != NULL) {
        cc->answered = true;
        uv_read_stop(st);
        const char *r = cc->f->canned_reply;
        uv_buf_t out = uv_buf_init((char *)r, (unsigned)strlen(r));
        cc->w.data = cc;
        assert_int_equal(uv_write(&cc->w, st, &out, 1, canned_written), 0);
    }
}

static void canned_conn(uv_stream_t *server, int status)
{
    struct fx *f = server->data;
    struct canned_conn *cc = calloc(1, sizeof *cc);
    assert_non_null(cc);
    cc->f = f;
    uv_tcp_init(&f->loop, &cc->tcp);
    cc->tcp.data = cc;
    assert_int_equal(uv_accept(server, (uv_stream_t *)&cc->tcp), 0);
    uv_read_start((uv_stream_t *)&cc->tcp, canned_alloc, canned_read);
}

/* --- fixture ------------------------------------------------------------ */

static void fx_start(struct fx *f)
{
    char err[256];
    memset(f, 0, sizeof *f);
    memset(f->big, 'B', sizeof f->big);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    struct http_server_opts o = {.host = "127.0.0.1"};
    if (http_server_start(&f->loop, &o, &f->srv, err, sizeof err) != 0)
        fail_msg("%s", err);
    f->port = http_server_port(f->srv);
    assert_int_equal(http_server_add_routes(f->srv, routes, sizeof routes / sizeof routes[0], f),
                     0);

    struct sockaddr_in sa;
    uv_ip4_addr("127.0.0.1", 0, &sa);
    assert_int_equal(uv_tcp_init(&f->loop, &f->canned), 0);
    f->canned.data = f;
    assert_int_equal(uv_tcp_bind(&f->canned, (struct sockaddr *)&sa, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&f->canned, 16, canned_conn), 0);
    int sl = sizeof sa;
    uv_tcp_getsockname(&f->canned, (struct sockaddr *)&sa, &sl);
    f->canned_port = ntohs(sa.sin_port);
}

static void on_closed(void *ctx)
{
    ((struct fx *)ctx)->closed++;
}

static void fx_stop(struct fx *f)
{
    http_server_close(f->srv, on_closed, f);
    uv_close((uv_handle_t *)&f->canned, NULL);
    for (int i = 0; i < 1000 && uv_loop_alive(&f->loop); i++)
        uv_run(&f->loop, UV_RUN_ONCE);
    assert_int_equal(f->closed, 1);
    assert_int_equal(uv_loop_close(&f->loop), 0);
}

static void on_resp(const struct httpc_response *r, void *ctx)
{
    struct res *out = ctx;
    out->called++;
    out->status = r->status;
    out->http_status = r->http_status;
    out->body_len = r->body_len;
    snprintf(out->body, sizeof out->body, "%s", r->body);
    snprintf(out->err, sizeof out->err, "%s", r->error);
}

/* Start a request; asserts it starts and did not call back synchronously. */
static struct httpc_request *start(struct fx *f, struct httpc_opts *o, struct res *res)
{
    struct httpc_request *r = NULL;
    char err[256];
    memset(res, 0, sizeof *res);
    int rc = httpc_request_start(&f->loop, o, on_resp, res, &r, err, sizeof err);
    if (rc != 0)
        fail_msg("httpc_request_start(%s): %s", o->url, err);
    assert_non_null(r);
    assert_int_equal(res->called, 0);
    return r;
}

static void wait_for(struct fx *f, struct res *res)
{
    for (int i = 0; i < 10000 && res->called == 0; i++)
        uv_run(&f->loop, UV_RUN_ONCE);
    assert_int_equal(res->called, 1);
}

static void url(char *buf, size_t len, const char *host, uint16_t port, const char *path)
{
    snprintf(buf, len, "http://%s:%u%s", host, port, path);
}

/* --- tests -------------------------------------------------------------------- */

static void test_get_post_auth(void **state)
{
    struct fx *f = malloc(sizeof *f);
    fx_start(f);
    char u[128];
    struct res a, b, c, d;

    url(u, sizeof u, "127.0.0.1", f->port, "/hello");
    struct httpc_opts o = {.method = "GET", .url = u};
    start(f, &o, &a);
    wait_for(f, &a);
    assert_int_equal(a.status, 0);
    assert_int_equal(a.http_status, 200);
    assert_string_equal(a.body, "hello");
    assert_int_equal(a.body_len, 5);
    assert_string_equal(a.err, "");

    char u2[128];
    url(u2, sizeof u2, "127.0.0.1", f->port, "/echo?x=1&y=%20");
    struct httpc_opts p = {.method = "POST", .url = u2, .body = "{\"a\":1}", .body_len = 7,
                           .auth_user = "user", .auth_password = "pass"};
    start(f, &p, &b);
    wait_for(f, &b);
    assert_int_equal(b.status, 0);
    assert_int_equal(b.http_status, 201);
    char want[256];
    snprintf(want, sizeof want,
             "POST /echo?x=1&y=%%20 ct=application/json auth=Basic dXNlcjpwYXNz "
             "host=127.0.0.1:%u conn=close body={\"a\":1}", f->port);
    assert_string_equal(b.body, want);

    /* PATCH, explicit content type, empty password, no path in the URL */
    struct httpc_opts q = {.method = "PATCH", .url = u2, .body = "k=v", .body_len = 3,
                           .content_type = "text/plain", .auth_user = "admin"};
    start(f, &q, &c);
    wait_for(f, &c);
    assert_int_equal(c.http_status, 201);
    assert_non_null(strstr(c.body, "ct=text/plain auth=Basic YWRtaW46 "));
    assert_non_null(strstr(c.body, "body=k=v"));

    snprintf(u, sizeof u, "http://127.0.0.1:%u", f->port);
    struct httpc_opts r = {.url = u};
    start(f, &r, &d);
    wait_for(f, &d);
    assert_int_equal(d.http_status, 200);
    assert_string_equal(d.body, "hello");

    /* HEAD: headers only, whatever Content-Length says */
    url(u, sizeof u, "127.0.0.1", f->port, "/hello");
    struct httpc_opts h = {.method = "HEAD", .url = u};
    start(f, &h, &a);
    wait_for(f, &a);
    assert_int_equal(a.status, 0);
    assert_int_equal(a.http_status, 200);
    assert_int_equal(a.body_len, 0);
    fx_stop(f);
    free(f);
}

static void test_names_and_ipv6(void **state)
{
    struct fx *f = malloc(sizeof *f);
    fx_start(f);
    char u[128];
    struct res a;
    /* "localhost" may resolve to ::1 first: the client must fall through to
     * 127.0.0.1 where the server listens. */
    url(u, sizeof u, "localhost", f->port, "/hello");
    struct httpc_opts o = {.url = u};
    start(f, &o, &a);
    wait_for(f, &a);
    assert_int_equal(a.status, 0);
    assert_int_equal(a.http_status, 200);

    struct http_server *s6 = NULL;
    char err[256];
    struct http_server_opts so = {.host = "::1"};
    if (http_server_start(&f->loop, &so, &s6, err, sizeof err) == 0) {
        assert_int_equal(http_server_add_routes(s6, routes, 1, f), 0);
        snprintf(u, sizeof u, "http://[::1]:%u/hello", http_server_port(s6));
        start(f, &o, &a);
        wait_for(f, &a);
        assert_int_equal(a.status, 0);
        assert_int_equal(a.http_status, 200);
        http_server_close(s6, NULL, NULL);
    }
    /* a name that cannot resolve (.invalid is reserved, RFC 6761) */
    snprintf(u, sizeof u, "http://no-such-host.invalid:80/");
    struct httpc_opts n = {.url = u, .timeout_ms = 3000};
    start(f, &n, &a);
    wait_for(f, &a);
    assert_true(a.status == PGW_EIO || a.status == PGW_ETIMEDOUT);
    assert_non_null(strstr(a.err, "no-such-host.invalid"));
    fx_stop(f);
    free(f);
}

static void test_canned_responses(void **state)
{
    struct fx *f = malloc(sizeof *f);
    fx_start(f);
    char u[128];
    struct res a;
    url(u, sizeof u, "127.0.0.1", f->canned_port, "/x");
    struct httpc_opts o = {.url = u};

    f->canned_reply = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                      "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
    start(f, &o, &a);
    wait_for(f, &a);
    assert_int_equal(a.status, 0);
    assert_string_equal(a.body, "hello world");

    f->canned_reply = "HTTP/1.1 503 Service Unavailable\r\n\r\nbody until close";
    start(f, &o, &a);
    wait_for(f, &a);
    assert_int_equal(a.status, 0);
    assert_int_equal(a.http_status, 503);
    assert_string_equal(a.body, "body until close");

    f->canned_reply = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    start(f, &o, &a);
    wait_for(f, &a);
    assert_int_equal(a.http_status, 200);
    assert_string_equal(a.body, "ok");

    f->canned_reply = "HTTX/1.1 200 OK\r\n\r\n";
    start(f, &o, &a);
    wait_for(f, &a);
    assert_int_equal(a.status, PGW_EPROTO);
    assert_int_equal(a.http_status, 0);
    assert_non_null(strstr(a.err, "malformed response"));

    f->canned_reply = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc";
    start(f, &o, &a);
    wait_for(f, &a);
    assert_int_equal(a.status, PGW_EPROTO);
    assert_non_null(strstr(a.err, "before the response was complete"));
    fx_stop(f);
    free(f);
}

static void test_refused_timeout_large(void **state)
{
    struct fx *f = malloc(sizeof *f);
    fx_start(f);
    /* a port nobody listens on: bind, read it back, close */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    socklen_t sl = sizeof sa;
    getsockname(fd, (struct sockaddr *)&sa, &sl);
    close(fd);
    char u[128];
    struct res a;
    url(u, sizeof u, "127.0.0.1", ntohs(sa.sin_port), "/");
    struct httpc_opts o = {.url = u};
    start(f, &o, &a);
    wait_for(f, &a);
    assert_int_equal(a.status, PGW_EIO);
    assert_int_equal(a.http_status, 0);
    char want[64];
    snprintf(want, sizeof want, "connect to 127.0.0.1:%u", ntohs(sa.sin_port));
    assert_non_null(strstr(a.err, want));
    assert_non_null(strstr(a.err, "refused"));

    /* a route that never answers: the deadline ends it */
    url(u, sizeof u, "127.0.0.1", f->port, "/never");
    struct httpc_opts t = {.url = u, .timeout_ms = 200};
    uint64_t t0 = uv_now(&f->loop);
    start(f, &t, &a);
    wait_for(f, &a);
    uv_update_time(&f->loop);
    uint64_t took = uv_now(&f->loop) - t0;
    assert_int_equal(a.status, PGW_ETIMEDOUT);
    assert_non_null(strstr(a.err, "within 200 ms"));
    assert_true(took >= 190 && took < 2000);

    /* a response over max_response_bytes */
    url(u, sizeof u, "127.0.0.1", f->port, "/big");
    struct httpc_opts b = {.url = u, .max_response_bytes = 10000};
    start(f, &b, &a);
    wait_for(f, &a);
    assert_int_equal(a.status, PGW_EPROTO);
    assert_non_null(strstr(a.err, "larger than 10000 bytes"));
    /* and under the default limit it arrives whole */
    struct httpc_opts b2 = {.url = u};
    start(f, &b2, &a);
    wait_for(f, &a);
    assert_int_equal(a.status, 0);
    assert_int_equal(a.body_len, sizeof f->big);
    fx_stop(f);
    free(f);
}

static void test_cancel(void **state)
{
    struct fx *f = malloc(sizeof *f);
    fx_start(f);
    char u[128];
    struct res a, b, c;
    url(u, sizeof u, "127.0.0.1", f->port, "/never");
    struct httpc_opts o = {.url = u};
    struct httpc_request *r = start(f, &o, &a);
    httpc_request_cancel(r);
    assert_int_equal(a.called, 0); /* never synchronous */
    wait_for(f, &a);
    assert_int_equal(a.status, PGW_ECANCELED);

    /* cancel while the request is out on the server */
    r = start(f, &o, &b);
    for (int i = 0; i < 1000 && f->n_held < 1; i++)
        uv_run(&f->loop, UV_RUN_ONCE);
    assert_int_equal(f->n_held, 1);
    httpc_request_cancel(r);
    wait_for(f, &b);
    assert_int_equal(b.status, PGW_ECANCELED);

    /* cancel during name resolution */
    url(u, sizeof u, "localhost", f->port, "/hello");
    r = start(f, &o, &c);
    httpc_request_cancel(r);
    wait_for(f, &c);
    assert_int_equal(c.status, PGW_ECANCELED);
    fx_stop(f);
    free(f);
}

static void test_bad_urls(void **state)
{
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    static const struct {
        const char *url, *msg;
    } cases[] = {
        {"https://h:0/", "port must be 1-65535"},
        {"https://", "missing host"},
        {"ftp://x/", "expected http://"},
        {"127.0.0.1:8008/x", "expected http://"},
        {"http://", "missing host"},
        {"http:///x", "missing host"},
        {"http://h:0/", "port must be 1-65535"},
        {"http://h:70000/", "port must be 1-65535"},
        {"http://h:80a/", "invalid port"},
        {"http://h:/", "invalid port"},
        {"http://[::1/", "missing ']'"},
        {"http://[::1]x/", "after ']'"},
        {"http://[zz]:80/", "not an IPv6 address"},
        {"http://::1:80/", "brackets"},
        {"http://u:p@h/", "auth_user"},
        {"http://h/a b", "spaces or control"},
        {"http://h/a\r\nX: y", "spaces or control"},
        {"http://h$x/", "invalid character"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct httpc_opts o = {.url = cases[i].url};
        struct httpc_request *r = (struct httpc_request *)&loop; /* must be reset */
        char err[256] = "";
        struct res res = {0};
        int rc = httpc_request_start(&loop, &o, on_resp, &res, &r, err, sizeof err);
        if (rc != PGW_EINVAL || strstr(err, cases[i].msg) == NULL)
            fail_msg("url '%s': rc %d, err '%s' (wanted '%s')", cases[i].url, rc, err,
                     cases[i].msg);
        assert_null(r);
    }
    struct httpc_opts o = {.url = "http://h/", .method = "GE T"};
    char err[256];
    assert_int_equal(httpc_request_start(&loop, &o, on_resp, NULL, NULL, err, sizeof err),
                     PGW_EINVAL);
    assert_non_null(strstr(err, "method"));
    struct httpc_opts o2 = {.url = "http://h/", .auth_user = "a:b"};
    assert_int_equal(httpc_request_start(&loop, &o2, on_resp, NULL, NULL, err, sizeof err),
                     PGW_EINVAL);
    struct httpc_opts o3 = {.url = "http://h/", .body_len = 3};
    assert_int_equal(httpc_request_start(&loop, &o3, on_resp, NULL, NULL, NULL, 0), PGW_EINVAL);
    /* nothing was left on the loop */
    assert_int_equal(uv_run(&loop, UV_RUN_NOWAIT), 0);
    assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get_post_auth),
        cmocka_unit_test(test_names_and_ipv6),
        cmocka_unit_test(test_canned_responses),
        cmocka_unit_test(test_refused_timeout_large),
        cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_bad_urls),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
