/* The startup-packet probe against a scripted stand-in server on the same
 * loop: each answer a PostgreSQL server can give before authentication
 * (a request to authenticate, trust's ReadyForQuery, an ErrorResponse, a
 * notice first, an answer split across reads), and each way it can fail
 * (closed, silent, refused, not PostgreSQL), over TCP, a Unix socket and a
 * name. Every loop is bounded; ASan checks that nothing leaks, cancelled
 * probes included. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pg/pgprobe.h"

enum mode { M_REPLY, M_CLOSE, M_SILENT };

struct fake {
    uv_loop_t *loop;
    union {
        uv_handle_t h;
        uv_stream_t s;
        uv_tcp_t tcp;
        uv_pipe_t pipe;
    } srv, cli;
    bool cli_open, answered;
    enum mode mode;
    const char *reply;
    size_t replylen, split; /* split > 0: send reply[0, split) now, the rest 30 ms later */
    uv_timer_t later;
    uv_write_t w1, w2;
    unsigned char got[2048];
    size_t gotlen;
    int port;
};

struct res {
    int calls;
    struct pgprobe_result r;
    uint64_t at_ms;
};

static uint64_t now_ms(void)
{
    return uv_hrtime() / 1000000;
}

static void on_result(const struct pgprobe_result *r, void *ctx)
{
    struct res *o = ctx;
    o->calls++;
    o->r = *r;
    o->at_ms = now_ms();
}

static uint32_t be32(const unsigned char *b)
{
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

static void fake_alloc(uv_handle_t *h, size_t sz, uv_buf_t *buf)
{
    (void)sz;
    struct fake *f = h->data;
    *buf = uv_buf_init((char *)f->got + f->gotlen, (unsigned)(sizeof f->got - f->gotlen));
}

static void noop_written(uv_write_t *w, int status)
{
    (void)w;
    (void)status;
}

static void send_rest(uv_timer_t *t)
{
    struct fake *f = t->data;
    if (!f->cli_open)
        return;
    uv_buf_t b = uv_buf_init((char *)f->reply + f->split, (unsigned)(f->replylen - f->split));
    assert_int_equal(uv_write(&f->w2, &f->cli.s, &b, 1, noop_written), 0);
}

static void fake_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    (void)buf;
    struct fake *f = s->data;
    if (n < 0) {
        if (f->cli_open) {
            f->cli_open = false;
            uv_close(&f->cli.h, NULL);
        }
        return;
    }
    f->gotlen += (size_t)n;
    if (f->answered || f->gotlen < 4 || f->gotlen < be32(f->got))
        return;
    f->answered = true;
    if (f->mode == M_CLOSE) {
        f->cli_open = false;
        uv_close(&f->cli.h, NULL);
    } else if (f->mode == M_REPLY) {
        size_t first = f->split ? f->split : f->replylen;
        uv_buf_t b = uv_buf_init((char *)f->reply, (unsigned)first);
        assert_int_equal(uv_write(&f->w1, &f->cli.s, &b, 1, noop_written), 0);
        if (f->split)
            uv_timer_start(&f->later, send_rest, 30, 0);
    }
}

static void fake_conn(uv_stream_t *srv, int status)
{
    struct fake *f = srv->data;
    assert_int_equal(status, 0);
    if (f->srv.h.type == UV_NAMED_PIPE)
        assert_int_equal(uv_pipe_init(f->loop, &f->cli.pipe, 0), 0);
    else
        assert_int_equal(uv_tcp_init(f->loop, &f->cli.tcp), 0);
    f->cli.h.data = f;
    f->cli_open = true;
    assert_int_equal(uv_accept(srv, &f->cli.s), 0);
    assert_int_equal(uv_read_start(&f->cli.s, fake_alloc, fake_read), 0);
}

static void fake_tcp(struct fake *f, uv_loop_t *loop, enum mode mode, const char *reply, size_t len)
{
    memset(f, 0, sizeof *f);
    f->loop = loop;
    f->mode = mode;
    f->reply = reply;
    f->replylen = len;
    assert_int_equal(uv_tcp_init(loop, &f->srv.tcp), 0);
    f->srv.h.data = f;
    struct sockaddr_in sa;
    assert_int_equal(uv_ip4_addr("127.0.0.1", 0, &sa), 0);
    assert_int_equal(uv_tcp_bind(&f->srv.tcp, (const struct sockaddr *)&sa, 0), 0);
    assert_int_equal(uv_listen(&f->srv.s, 8, fake_conn), 0);
    struct sockaddr_storage ss;
    int sl = sizeof ss;
    assert_int_equal(uv_tcp_getsockname(&f->srv.tcp, (struct sockaddr *)&ss, &sl), 0);
    f->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    uv_timer_init(loop, &f->later);
    f->later.data = f;
}

static void drain(uv_loop_t *loop)
{
    for (int i = 0; i < 1000 && uv_run(loop, UV_RUN_NOWAIT); i++)
        ;
}

/* Closes the fake and runs the loop until its handles are gone (the
 * struct is reused by the next case). */
static void fake_close(struct fake *f)
{
    uv_close(&f->srv.h, NULL);
    if (f->cli_open)
        uv_close(&f->cli.h, NULL);
    f->cli_open = false;
    uv_close((uv_handle_t *)&f->later, NULL);
    drain(f->loop);
}

static void spin_until(uv_loop_t *loop, const int *flag, int max_ms)
{
    uint64_t end = now_ms() + (uint64_t)max_ms;
    while (*flag == 0 && now_ms() < end)
        uv_run(loop, UV_RUN_ONCE);
}

/* Probe host:port; returns the single result. */
static struct res probe_at(uv_loop_t *loop, const char *host, int port, uint32_t timeout_ms)
{
    struct res o = {0};
    struct pgprobe *p = NULL;
    assert_int_equal(pgprobe_start(loop, host, (uint16_t)port, "postgres", "postgres", timeout_ms,
                                   on_result, &o, &p),
                     PGW_OK);
    assert_non_null(p);
    assert_int_equal(o.calls, 0); /* never from inside pgprobe_start */
    spin_until(loop, &o.calls, 5000);
    drain(loop);
    assert_int_equal(o.calls, 1);
    return o;
}

static struct res probe_fake(uv_loop_t *loop, struct fake *f, uint32_t timeout_ms)
{
    return probe_at(loop, "127.0.0.1", f->port, timeout_ms);
}

/* The startup packet carries protocol 3.0, the user and the database. */
static void assert_startup_packet(const struct fake *f)
{
    assert_true(f->gotlen >= 8);
    uint32_t len = be32(f->got);
    assert_true(len >= 8 && len <= f->gotlen);
    assert_int_equal(be32(f->got + 4), 196608);
    const char *kv = (const char *)f->got + 8;
    assert_string_equal(kv, "user");
    kv += strlen(kv) + 1;
    assert_string_equal(kv, "postgres");
    kv += strlen(kv) + 1;
    assert_string_equal(kv, "database");
    kv += strlen(kv) + 1;
    assert_string_equal(kv, "postgres");
    assert_int_equal(f->got[len - 1], 0);
}

#define SASL_REQ "R\0\0\0\x17\0\0\0\x0aSCRAM-SHA-256\0\0"
#define E_STARTING                                                                               \
    "E\0\0\0\x4c"                                                                                \
    "SFATAL\0VFATAL\0C57P03\0Mthe database system is starting up\0Fpostmaster.c\0\0"

static void test_auth_request(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct fake f;
    fake_tcp(&f, &loop, M_REPLY, SASL_REQ, sizeof SASL_REQ - 1);
    struct res o = probe_fake(&loop, &f, 2000);
    assert_int_equal(o.r.outcome, PGPROBE_AUTH_REQUEST);
    assert_string_equal(o.r.sqlstate, "");
    assert_non_null(strstr(o.r.message, "method 10"));
    assert_startup_packet(&f);
    fake_close(&f);
    drain(&loop);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_server_error(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct fake f;
    fake_tcp(&f, &loop, M_REPLY, E_STARTING, sizeof E_STARTING - 1);
    struct res o = probe_fake(&loop, &f, 2000);
    assert_int_equal(o.r.outcome, PGPROBE_SERVER_ERROR);
    assert_string_equal(o.r.sqlstate, "57P03");
    assert_string_equal(o.r.message, "FATAL:  the database system is starting up");
    fake_close(&f);
    drain(&loop);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* A notice first, then an MD5 request; and an answer whose header is split
 * across two reads. */
static void test_notice_and_split_answer(void **state)
{
    (void)state;
    static const char reply[] = "N\0\0\0\x10SNOTICE\0Mx\0\0"
                                "R\0\0\0\x0c\0\0\0\x05salt";
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct fake f;
    fake_tcp(&f, &loop, M_REPLY, reply, sizeof reply - 1);
    struct res o = probe_fake(&loop, &f, 2000);
    assert_int_equal(o.r.outcome, PGPROBE_AUTH_REQUEST);
    assert_non_null(strstr(o.r.message, "method 5"));
    fake_close(&f);

    fake_tcp(&f, &loop, M_REPLY, SASL_REQ, sizeof SASL_REQ - 1);
    f.split = 3; /* type and half of the length now, the rest 30 ms later */
    uint64_t t0 = now_ms();
    o = probe_fake(&loop, &f, 2000);
    assert_int_equal(o.r.outcome, PGPROBE_AUTH_REQUEST);
    assert_true(o.at_ms - t0 >= 25); /* it waited for the rest */
    fake_close(&f);
    drain(&loop);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* trust: AuthenticationOk, parameters, key, ReadyForQuery; the probe reads
 * them all and ends the session with Terminate instead of a reset. */
static void test_trust_terminates_cleanly(void **state)
{
    (void)state;
    static const char reply[] = "R\0\0\0\x08\0\0\0\0"
                                "S\0\0\0\x18server_version\0" "15.4\0"
                                "K\0\0\0\x0c\0\0\0\x01\0\0\0\x02"
                                "Z\0\0\0\x05I";
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct fake f;
    fake_tcp(&f, &loop, M_REPLY, reply, sizeof reply - 1);
    struct res o = probe_fake(&loop, &f, 2000);
    assert_int_equal(o.r.outcome, PGPROBE_AUTH_REQUEST);
    assert_non_null(strstr(o.r.message, "trust"));
    /* the fake read the Terminate message after the startup packet */
    uint64_t end = now_ms() + 2000;
    uint32_t len = be32(f.got);
    while (f.gotlen < len + 5 && now_ms() < end)
        uv_run(&loop, UV_RUN_ONCE);
    assert_true(f.gotlen >= len + 5);
    assert_int_equal(f.got[len], 'X');
    assert_int_equal(be32(f.got + len + 1), 4);
    fake_close(&f);
    drain(&loop);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* An authenticated backend that never becomes ready is a timeout. */
static void test_trust_without_ready_times_out(void **state)
{
    (void)state;
    static const char reply[] = "R\0\0\0\x08\0\0\0\0";
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct fake f;
    fake_tcp(&f, &loop, M_REPLY, reply, sizeof reply - 1);
    struct res o = probe_fake(&loop, &f, 200);
    assert_int_equal(o.r.outcome, PGPROBE_TIMEOUT);
    assert_non_null(strstr(o.r.message, "authenticated"));
    fake_close(&f);
    drain(&loop);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_closed_silent_refused_and_not_postgres(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct fake f;

    fake_tcp(&f, &loop, M_CLOSE, NULL, 0);
    struct res o = probe_fake(&loop, &f, 2000);
    assert_int_equal(o.r.outcome, PGPROBE_FAILED);
    assert_non_null(strstr(o.r.message, "closed"));
    fake_close(&f);

    fake_tcp(&f, &loop, M_SILENT, NULL, 0);
    uint64_t t0 = now_ms();
    o = probe_fake(&loop, &f, 200);
    assert_int_equal(o.r.outcome, PGPROBE_TIMEOUT);
    assert_true(o.at_ms - t0 >= 190);
    assert_true(o.at_ms - t0 < 3000);
    fake_close(&f);

    static const char http[] = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n";
    fake_tcp(&f, &loop, M_REPLY, http, sizeof http - 1);
    o = probe_fake(&loop, &f, 2000);
    assert_int_equal(o.r.outcome, PGPROBE_FAILED);
    assert_non_null(strstr(o.r.message, "not a PostgreSQL answer"));
    fake_close(&f);

    /* a port nobody listens on: the fake's, once it is closed */
    fake_tcp(&f, &loop, M_SILENT, NULL, 0);
    int port = f.port;
    fake_close(&f);
    drain(&loop);
    f.port = port;
    o = probe_fake(&loop, &f, 2000);
    assert_int_equal(o.r.outcome, PGPROBE_FAILED);
    assert_non_null(strstr(o.r.message, "connection refused"));
    drain(&loop);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_unix_socket(void **state)
{
    (void)state;
    char dir[] = "/tmp/pgw-probe-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof path, "%s/.s.PGSQL.5999", dir);
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct fake f;
    memset(&f, 0, sizeof f);
    f.loop = &loop;
    f.mode = M_REPLY;
    f.reply = SASL_REQ;
    f.replylen = sizeof SASL_REQ - 1;
    assert_int_equal(uv_pipe_init(&loop, &f.srv.pipe, 0), 0);
    f.srv.h.data = &f;
    assert_int_equal(uv_pipe_bind(&f.srv.pipe, path), 0);
    assert_int_equal(uv_listen(&f.srv.s, 8, fake_conn), 0);
    uv_timer_init(&loop, &f.later);

    struct res o = probe_at(&loop, dir, 5999, 2000);
    assert_int_equal(o.r.outcome, PGPROBE_AUTH_REQUEST);
    assert_startup_packet(&f);
    fake_close(&f);

    /* no server on the socket any more */
    unlink(path);
    o = probe_at(&loop, dir, 5999, 2000);
    assert_int_equal(o.r.outcome, PGPROBE_FAILED);
    assert_non_null(strstr(o.r.message, "no such file"));
    rmdir(dir);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* A name goes through uv_getaddrinfo; "localhost" may list ::1 before
 * 127.0.0.1, and the fake listens on 127.0.0.1 only: the probe tries each
 * address in turn. */
static void test_name_tries_each_address(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct fake f;
    fake_tcp(&f, &loop, M_REPLY, SASL_REQ, sizeof SASL_REQ - 1);
    struct res o = probe_at(&loop, "localhost", f.port, 3000);
    assert_int_equal(o.r.outcome, PGPROBE_AUTH_REQUEST);
    fake_close(&f);

    /* one lookup at a time: a second name while the first is resolving
     * fails at once (on a later iteration) instead of queueing */
    struct res o1 = {0}, o2 = {0};
    struct pgprobe *p;
    assert_int_equal(pgprobe_start(&loop, "localhost", 5999, "postgres", "postgres", 3000,
                                   on_result, &o1, &p),
                     PGW_OK);
    assert_int_equal(pgprobe_start(&loop, "localhost", 5999, "postgres", "postgres", 3000,
                                   on_result, &o2, &p),
                     PGW_OK);
    assert_int_equal(o2.calls, 0);
    spin_until(&loop, &o2.calls, 5000);
    assert_int_equal(o2.calls, 1);
    assert_int_equal(o2.r.outcome, PGPROBE_FAILED);
    assert_non_null(strstr(o2.r.message, "an earlier lookup has not come back yet"));
    spin_until(&loop, &o1.calls, 5000);
    drain(&loop);
    assert_int_equal(o1.calls, 1);
    assert_int_equal(o1.r.outcome, PGPROBE_FAILED); /* nobody listens on 5999 */

    o = probe_at(&loop, "no-such-host.invalid", 5432, 3000);
    assert_int_equal(o.r.outcome, PGPROBE_FAILED);
    assert_non_null(strstr(o.r.message, "resolving no-such-host.invalid"));
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* Cancelled in flight (connected and waiting, or still resolving): no
 * callback, and everything is freed (ASan). */
static void test_cancel(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct fake f;
    fake_tcp(&f, &loop, M_SILENT, NULL, 0);
    struct res o = {0};
    struct pgprobe *p;
    assert_int_equal(pgprobe_start(&loop, "127.0.0.1", (uint16_t)f.port, "postgres", "postgres",
                                   5000, on_result, &o, &p),
                     PGW_OK);
    uint64_t end = now_ms() + 2000;
    while (!f.answered && now_ms() < end)
        uv_run(&loop, UV_RUN_ONCE);
    assert_true(f.answered); /* the startup packet arrived: the probe is waiting */
    pgprobe_cancel(p);
    assert_int_equal(pgprobe_start(&loop, "localhost", 5432, "postgres", "postgres", 5000,
                                   on_result, &o, &p),
                     PGW_OK);
    pgprobe_cancel(p);
    fake_close(&f);
    /* the cancelled lookup (thread pool) comes back in its own time */
    uint64_t until = now_ms() + 5000;
    while (uv_loop_alive(&loop) && now_ms() < until)
        uv_run(&loop, UV_RUN_ONCE);
    assert_int_equal(o.calls, 0);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_bad_arguments(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct res o = {0};
    struct pgprobe *p = (struct pgprobe *)&o;
    assert_int_equal(pgprobe_start(&loop, "", 5432, "u", "d", 100, on_result, &o, &p), PGW_EINVAL);
    assert_null(p);
    assert_int_equal(pgprobe_start(&loop, "127.0.0.1", 0, "u", "d", 100, on_result, &o, &p),
                     PGW_EINVAL);
    assert_int_equal(pgprobe_start(&loop, "127.0.0.1", 5432, "", "d", 100, on_result, &o, &p),
                     PGW_EINVAL);
    char longdir[200];
    memset(longdir, 'a', sizeof longdir - 1);
    longdir[0] = '/';
    longdir[sizeof longdir - 1] = '\0';
    assert_int_equal(pgprobe_start(&loop, longdir, 5432, "u", "d", 100, on_result, &o, &p),
                     PGW_EINVAL);
    char longuser[600];
    memset(longuser, 'u', sizeof longuser - 1);
    longuser[sizeof longuser - 1] = '\0';
    assert_int_equal(pgprobe_start(&loop, "127.0.0.1", 5432, longuser, "d", 100, on_result, &o, &p),
                     PGW_EINVAL);
    drain(&loop);
    assert_int_equal(o.calls, 0);
    assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_auth_request),
        cmocka_unit_test(test_server_error),
        cmocka_unit_test(test_notice_and_split_answer),
        cmocka_unit_test(test_trust_terminates_cleanly),
        cmocka_unit_test(test_trust_without_ready_times_out),
        cmocka_unit_test(test_closed_silent_refused_and_not_postgres),
        cmocka_unit_test(test_unix_socket),
        cmocka_unit_test(test_name_tries_each_address),
        cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_bad_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
