/* http_server connection life: deadlines (slowloris, silent, idle, a
 * client that does not read), the connection cap, deferred replies and
 * aborts, closing with connections open, and a fuzz run. */
#include "http_harness.h"

/* --- tests: timeouts and connection limits ------------------------------- */

static void c_slowloris(struct fx *f)
{
    struct cc *slow = cc_open(f->port);
    if (slow == NULL)
        return;
    const char *req = "GET /hello HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    uint64_t start = now_ms();
    f->v[0] = -1;
    f->v[2] = -1;
    for (size_t i = 0; req[i] != '\0' && now_ms() - start < 5000; i++) {
        if (send(slow->fd, req + i, 1, MSG_NOSIGNAL) != 1) {
            f->v[0] = (long)(now_ms() - start);
            break;
        }
        if (i == 2) /* another client is served meanwhile */
            f->v[1] = one_shot(f, "GET /hello HTTP/1.1\r\n\r\n", &f->r[0]);
        struct pollfd pfd = {.fd = slow->fd, .events = POLLIN};
        if (poll(&pfd, 1, 100) > 0) {
            char tmp[256];
            ssize_t n = recv(slow->fd, tmp, sizeof tmp, 0);
            if (n <= 0) {
                f->v[0] = (long)(now_ms() - start);
                break;
            }
            f->v[2] = n; /* the server must not answer a slowloris */
        }
    }
    cc_close(slow);
}

static void test_slowloris(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    struct http_server_opts o = {.host = "127.0.0.1", .request_timeout_ms = 600};
    fx_start(f, &o);
    run_client(f, c_slowloris, NULL);
    assert_int_equal(f->v[1], 200);
    assert_int_equal(f->v[2], -1);
    /* dropped about request_timeout_ms after its first byte */
    assert_true(f->v[0] >= 500);
    assert_true(f->v[0] < 2500);
    assert_int_equal(stats(f).timeouts, 1);
    fx_stop(f);
    free(f);
}

static void c_silent(struct fx *f)
{
    struct cc *c = cc_open(f->port);
    if (c != NULL) {
        f->v[0] = cc_wait_eof(c, 3000);
        cc_close(c);
    }
    /* idle keep-alive: one request, then silence */
    c = cc_open(f->port);
    if (c != NULL) {
        cc_sends(c, "GET /hello HTTP/1.1\r\n\r\n");
        f->v[1] = cc_resp(c, &f->r[0], false) == 0 ? f->r[0].status : -1;
        f->v[2] = cc_wait_eof(c, 3000);
        cc_close(c);
    }
}

static void test_silent_and_idle(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    struct http_server_opts o = {.host = "127.0.0.1", .request_timeout_ms = 300,
                                 .idle_timeout_ms = 700};
    fx_start(f, &o);
    run_client(f, c_silent, NULL);
    assert_true(f->v[0] >= 200 && f->v[0] < 1500);
    assert_int_equal(f->v[1], 200);
    assert_true(f->v[2] >= 550 && f->v[2] < 2000);
    /* only the silent client counts as a timeout; idle closes are normal */
    assert_int_equal(stats(f).timeouts, 1);
    fx_stop(f);
    free(f);
}

static void c_maxconn(struct fx *f)
{
    struct cc *a = cc_open(f->port), *b = cc_open(f->port);
    sleep_ms(100);
    struct cc *c = cc_open(f->port);
    f->v[0] = c != NULL ? cc_wait_eof(c, 2000) : -2;
    cc_close(c);
    if (a != NULL && b != NULL) {
        cc_sends(a, "GET /hello HTTP/1.1\r\n\r\n");
        cc_sends(b, "GET /hello HTTP/1.1\r\n\r\n");
        f->v[1] = cc_resp(a, &f->r[0], false) == 0 ? f->r[0].status : -1;
        f->v[2] = cc_resp(b, &f->r[1], false) == 0 ? f->r[1].status : -1;
    }
    cc_close(a);
    cc_close(b);
}

static bool no_conns(struct fx *f)
{
    return stats(f).connections_open == 0;
}

static void test_max_connections(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    struct http_server_opts o = {.host = "127.0.0.1", .max_connections = 2};
    fx_start(f, &o);
    run_client(f, c_maxconn, NULL);
    assert_true(f->v[0] >= 0 && f->v[0] < 1000); /* closed at once */
    assert_int_equal(f->v[1], 200);
    assert_int_equal(f->v[2], 200);
    assert_true(pump_until(f, no_conns, 3000));
    struct http_server_stats st = stats(f);
    assert_int_equal(st.connections_rejected, 1);
    assert_int_equal(st.connections_accepted, 2);
    fx_stop(f);
    free(f);
}

static void c_no_reader(struct fx *f)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int small = 4096;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(f->port)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        return;
    }
    const char *req = "GET /big HTTP/1.1\r\n\r\n";
    f->v[0] = send(fd, req, strlen(req), MSG_NOSIGNAL);
    sleep_ms(200);
    /* the stuck writer does not block anyone else */
    f->v[1] = one_shot(f, "GET /hello HTTP/1.1\r\n\r\n", &f->r[0]);
    sleep_ms(1200); /* never read: the server's write deadline (400 ms) ends it */
    close(fd);
}

static void test_client_not_reading(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    struct http_server_opts o = {.host = "127.0.0.1", .request_timeout_ms = 400};
    fx_start(f, &o);
    run_client(f, c_no_reader, NULL);
    assert_int_equal(f->v[0], 21);
    assert_int_equal(f->v[1], 200);
    assert_true(pump_until(f, no_conns, 3000));
    assert_int_equal(stats(f).timeouts, 1);
    fx_stop(f);
    free(f);
}

/* --- tests: deferred replies, aborts, close ------------------------------- */

static void c_deferred(struct fx *f)
{
    uint64_t t0 = now_ms();
    f->v[0] = one_shot(f, "GET /later?ms=120&tag=x HTTP/1.1\r\n\r\n", &f->r[0]);
    f->v[1] = (long)(now_ms() - t0);
    /* disconnect before the deferred reply */
    struct cc *c = cc_open(f->port);
    if (c != NULL) {
        cc_sends(c, "GET /later?ms=300&tag=gone HTTP/1.1\r\n\r\n");
        sleep_ms(50);
        cc_close(c);
    }
}

static bool later_twice(struct fx *f)
{
    return f->later_fired == 2 && f->abort_count == 1;
}

static void test_deferred_and_abort(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    fx_start(f, NULL);
    run_client(f, c_deferred, NULL);
    assert_int_equal(f->v[0], 200);
    assert_string_equal(f->r[0].body, "later:x");
    assert_true(f->v[1] >= 110);
    /* the second timer fires after the abort; its reply is dropped */
    assert_true(pump_until(f, later_twice, 3000));
    assert_true(pump_until(f, no_conns, 3000));
    fx_stop(f);
    free(f);
}

static void c_close_open(struct fx *f)
{
    struct cc *a = cc_open(f->port), *b = cc_open(f->port);
    if (a == NULL || b == NULL) {
        cc_close(a);
        cc_close(b);
        return;
    }
    cc_sends(a, "GET /hello HTTP/1.1\r\n\r\n");
    f->v[0] = cc_resp(a, &f->r[0], false) == 0 ? f->r[0].status : -1;
    cc_sends(b, "GET /never HTTP/1.1\r\n\r\n");
    atomic_store(&f->phase, 1);
    f->v[1] = cc_wait_eof(a, 3000);
    f->v[2] = cc_wait_eof(b, 3000);
    cc_close(a);
    cc_close(b);
}

static void tick_close(struct fx *f)
{
    if (atomic_load(&f->phase) == 1 && f->never_count == 1 && f->srv != NULL) {
        struct http_server_stats st = stats(f);
        f->v[3] = st.connections_open;
        http_server_close(f->srv, on_server_closed, f);
        f->srv = NULL;
        f->v[4] = f->abort_count; /* aborts run later, not inside close */
    }
}

static void test_close_with_open_connections(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    fx_start(f, NULL);
    run_client(f, c_close_open, tick_close);
    assert_int_equal(f->v[0], 200);
    assert_int_equal(f->v[3], 2);
    assert_int_equal(f->v[4], 0);
    assert_true(f->v[1] >= 0);
    assert_true(f->v[2] >= 0);
    assert_null(f->srv);
    fx_stop(f);
    assert_int_equal(f->abort_count, 1);
    free(f);
}

/* --- fuzz ------------------------------------------------------------------ */

static uint64_t rng_state;

static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static const char *const seeds[] = {
    "GET /hello HTTP/1.1\r\nHost: a\r\n\r\n",
    "POST /echo?x=1 HTTP/1.1\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello",
    "POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    "GET /p/%41%42 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    "HEAD /hello HTTP/1.1\r\n\r\nGET /hello HTTP/1.1\r\n\r\n",
    "OPTIONS * HTTP/1.1\r\n\r\n",
    "GET /hdr?name=a HTTP/1.1\r\nA: b\r\nA: c\r\nExpect: 100-continue\r\n\r\n",
    "GET /later?ms=1 HTTP/1.1\r\n\r\nGET /hello HTTP/1.1\r\n\r\n",
};

static size_t mutate(char *out, size_t cap)
{
    const char *s = seeds[rng() % (sizeof seeds / sizeof seeds[0])];
    size_t n = strlen(s);
    memcpy(out, s, n);
    int ops = 1 + (int)(rng() % 6);
    for (int k = 0; k < ops; k++) {
        size_t pos = n > 0 ? (size_t)(rng() % n) : 0;
        switch (rng() % 8) {
        case 0: /* flip a byte */
            if (n > 0)
                out[pos] = (char)(rng() & 0xFF);
            break;
        case 1: /* insert random bytes */
            for (int j = (int)(rng() % 8); j > 0 && n < cap; j--) {
                memmove(out + pos + 1, out + pos, n - pos);
                out[pos] = (char)(rng() & 0xFF);
                n++;
            }
            break;
        case 2: /* truncate */
            n = pos;
            break;
        case 3: /* delete a span */
        {
            size_t len = (size_t)(rng() % 10);
            if (pos + len > n)
                len = n - pos;
            memmove(out + pos, out + pos + len, n - pos - len);
            n -= len;
            break;
        }
        case 4: /* insert a line break or delimiter */
        {
            static const char *const ins[] = {"\r\n", "\n", "\r", ":", " ", "%", "\0", "\r\n\r\n",
                                              "Content-Length: 99999999999999999999\r\n",
                                              "Transfer-Encoding: chunked\r\n", "ffffffffff\r\n"};
            const char *t = ins[rng() % (sizeof ins / sizeof ins[0])];
            size_t tl = t[0] == '\0' ? 1 : strlen(t);
            if (n + tl <= cap) {
                memmove(out + pos + tl, out + pos, n - pos);
                memcpy(out + pos, t, tl);
                n += tl;
            }
            break;
        }
        case 5: /* duplicate the tail (pipelining, repeated headers) */
            if (n + (n - pos) <= cap) {
                memcpy(out + n, out + pos, n - pos);
                n += n - pos;
            }
            break;
        case 6: /* pure garbage */
            n = (size_t)(rng() % 200);
            for (size_t j = 0; j < n; j++)
                out[j] = (char)(rng() & 0xFF);
            break;
        default: /* upper-case/lower-case games */
            if (n > 0)
                out[pos] = (char)(out[pos] ^ 0x20);
            break;
        }
    }
    return n;
}

static void c_fuzz(struct fx *f)
{
    char in[4096];
    rng_state = 0x9E3779B97F4A7C15ull;
    for (int i = 0; i < 2000; i++) {
        size_t n = mutate(in, sizeof in);
        struct cc *c = cc_open(f->port);
        if (c == NULL) {
            f->v[0]++;
            continue;
        }
        cc_send(c, in, n);
        shutdown(c->fd, SHUT_WR);
        /* the server must answer and/or close: never leave us hanging */
        if (cc_wait_eof(c, 3000) < 0)
            f->v[1]++;
        cc_close(c);
        f->v[2]++;
    }
    f->v[3] = one_shot(f, "GET /hello HTTP/1.1\r\n\r\n", &f->r[0]);
}

static void test_fuzz(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    struct http_server_opts o = {.host = "127.0.0.1", .request_timeout_ms = 1000,
                                 .max_header_bytes = 2048, .max_body_bytes = 4096};
    fx_start(f, &o);
    run_client(f, c_fuzz, NULL);
    assert_int_equal(f->v[0], 0); /* every connect succeeded */
    assert_int_equal(f->v[1], 0); /* every connection ended */
    assert_int_equal(f->v[2], 2000);
    assert_int_equal(f->v[3], 200);
    assert_string_equal(f->r[0].body, "hello\n");
    assert_true(pump_until(f, no_conns, 3000));
    struct http_server_stats st = stats(f);
    assert_int_equal(st.connections_accepted, 2001);
    assert_true(st.bad_requests > 100); /* the mutations did reach the parser */
    assert_true(st.requests > 100);
    fx_stop(f);
    free(f);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_slowloris),
        cmocka_unit_test(test_silent_and_idle),
        cmocka_unit_test(test_max_connections),
        cmocka_unit_test(test_client_not_reading),
        cmocka_unit_test(test_deferred_and_abort),
        cmocka_unit_test(test_close_with_open_connections),
        cmocka_unit_test(test_fuzz),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
