/* raft/tls_link on a real loop over 127.0.0.1: certificates made at test
 * time with OpenSSL's API (a CA, two nodes, a rogue CA and its node), an
 * 8 MiB echo through a link pair (with and without a stalled reader, to
 * drive backpressure), refusals both ways, plain TCP and a silent peer
 * against a TLS server, teardown in both directions, close_all, reload, and
 * the context's file errors. Every test ends with uv_loop_close() == 0. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <signal.h>
#include <sys/stat.h>

#include <raft.h>
#include <uv.h>

#include "raft/tls_link.h"
#include "tests/unit/api/tls_certs.h"

#define ECHO_BYTES (8u << 20)

static char dir[64];
static const char *const files[] = {"ca", "node1", "node2", "rogue_ca", "rogue", "bundle",
                                    "srv", "bad"};

static void path_of(char *out, size_t len, const char *name, const char *ext)
{
    tls_path(out, len, dir, name, ext);
}

static bool concat(const char *dst, const char *a, const char *b)
{
    FILE *o = fopen(dst, "w");
    if (o == NULL)
        return false;
    const char *srcs[2] = {a, b};
    bool ok = true;
    for (int i = 0; i < 2 && ok; i++) {
        FILE *in = fopen(srcs[i], "r");
        if (in == NULL) {
            ok = false;
            break;
        }
        char buf[4096];
        size_t n;
        while ((n = fread(buf, 1, sizeof buf, in)) > 0)
            ok = ok && fwrite(buf, 1, n, o) == n;
        fclose(in);
    }
    return fclose(o) == 0 && ok;
}

static bool copy_id(const char *from, const char *to)
{
    char a[512], b[512];
    path_of(a, sizeof a, from, "crt");
    path_of(b, sizeof b, to, "crt");
    FILE *o = fopen(b, "w");
    if (o == NULL)
        return false;
    fclose(o);
    if (!concat(b, a, "/dev/null"))
        return false;
    path_of(a, sizeof a, from, "key");
    path_of(b, sizeof b, to, "key");
    return concat(b, a, "/dev/null");
}

static int group_setup(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN); /* writes to a closed socket: EPIPE, like the daemon */
    snprintf(dir, sizeof dir, "/tmp/pgw-rafttls-XXXXXX");
    if (mkdtemp(dir) == NULL)
        return -1;
    struct tls_id ca, n1, n2, rca, rogue;
    const char *eku = "serverAuth,clientAuth";
    bool ok = tls_id_make(&ca, "pgw-test-ca", NULL, NULL, NULL, 30, 1) &&
              tls_id_make(&n1, "node1", &ca, NULL, eku, 30, 2) &&
              tls_id_make(&n2, "node2", &ca, NULL, NULL, 30, 3) &&
              tls_id_make(&rca, "rogue-ca", NULL, NULL, NULL, 30, 4) &&
              tls_id_make(&rogue, "rogue", &rca, NULL, eku, 30, 5) &&
              tls_id_write(&ca, dir, "ca") && tls_id_write(&n1, dir, "node1") &&
              tls_id_write(&n2, dir, "node2") && tls_id_write(&rca, dir, "rogue_ca") &&
              tls_id_write(&rogue, dir, "rogue");
    tls_id_free(&ca);
    tls_id_free(&n1);
    tls_id_free(&n2);
    tls_id_free(&rca);
    tls_id_free(&rogue);
    char a[512], b[512], bundle[512];
    path_of(a, sizeof a, "ca", "crt");
    path_of(b, sizeof b, "rogue_ca", "crt");
    path_of(bundle, sizeof bundle, "bundle", "crt");
    /* The rogue trusts both CAs (so it accepts our servers) but holds a
     * certificate only the rogue CA signed. */
    ok = ok && concat(bundle, a, b);
    return ok ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    tls_dir_remove(dir, files, sizeof files / sizeof files[0]);
    return 0;
}

static struct tls_link_ctx *ctx_for(const char *id, const char *ca)
{
    char c[512], k[512], a[512], err[512];
    path_of(c, sizeof c, id, "crt");
    path_of(k, sizeof k, id, "key");
    path_of(a, sizeof a, ca, "crt");
    struct tls_link_ctx *ctx = NULL;
    int rc = tls_link_ctx_new(c, k, a, &ctx, err, sizeof err);
    if (rc != 0)
        fail_msg("tls_link_ctx_new(%s): %s", id, err);
    return ctx;
}

/* --- a loop with one server and one client -------------------------------- */

struct side {
    int calls;
    int status;
    uv_stream_t *plain;
    char detail[512];
    uint64_t at_ms;
    /* data */
    uint8_t *rx;
    size_t rx_have, rx_cap;
    bool eof;
    bool echo;          /* server: write back what arrives */
    uint64_t echoed;
    bool mismatch;
    int pending_writes;
};

struct env {
    uv_loop_t loop;
    uv_tcp_t listener;
    int port;
    struct tls_link_ctx *srv_ctx, *cli_ctx;
    uint32_t srv_timeout_ms;
    bool raw_server;      /* accept without TLS (for a client against a silent server) */
    uv_tcp_t *raw_accepted;
    struct side srv, cli;
    uint64_t started_ms;
    /* a raw TCP client (no TLS) */
    uv_tcp_t raw;
    bool raw_open;
    bool raw_eof;
    bool raw_garbage;     /* the raw client sends an HTTP request */
    uint32_t cli_timeout_ms;
    uv_connect_t raw_conn;
    uv_write_t raw_write;
    char raw_buf[256];
    uv_connect_t conn;
    int pending_closes;
};

static void on_link(int status, uv_stream_t *plain, const char *detail, void *data)
{
    struct side *s = data;
    s->calls++;
    s->status = status;
    s->plain = plain;
    snprintf(s->detail, sizeof s->detail, "%s", detail != NULL ? detail : "(null)");
}

static void count_closed(uv_handle_t *h)
{
    struct env *e = h->loop->data;
    e->pending_closes--;
}

static void plain_closed(uv_handle_t *h)
{
    struct env *e = h->loop->data;
    e->pending_closes--;
    raft_free(h);
}

static void close_plain(struct env *e, struct side *s)
{
    if (s->plain != NULL && !uv_is_closing((uv_handle_t *)s->plain)) {
        e->pending_closes++;
        uv_close((uv_handle_t *)s->plain, plain_closed);
    }
}

static void on_accept(uv_stream_t *server, int status)
{
    struct env *e = server->data;
    assert_int_equal(status, 0);
    uv_tcp_t *tcp = raft_malloc(sizeof *tcp);
    assert_non_null(tcp);
    uv_tcp_init(&e->loop, tcp);
    assert_int_equal(uv_accept(server, (uv_stream_t *)tcp), 0);
    if (e->raw_server) {
        e->raw_accepted = tcp;
        return;
    }
    int rc = tls_link_start(&e->loop, e->srv_ctx, tcp, 1, "client", e->srv_timeout_ms, on_link,
                            &e->srv);
    assert_int_equal(rc, 0);
}

static void env_init(struct env *e)
{
    memset(e, 0, sizeof *e);
    assert_int_equal(uv_loop_init(&e->loop), 0);
    e->loop.data = e;
    e->srv_timeout_ms = 3000;
    e->cli_timeout_ms = 3000;
    uv_tcp_init(&e->loop, &e->listener);
    e->listener.data = e;
    struct sockaddr_in sa;
    uv_ip4_addr("127.0.0.1", 0, &sa);
    assert_int_equal(uv_tcp_bind(&e->listener, (const struct sockaddr *)&sa, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&e->listener, 16, on_accept), 0);
    struct sockaddr_in got;
    int len = sizeof got;
    assert_int_equal(uv_tcp_getsockname(&e->listener, (struct sockaddr *)&got, &len), 0);
    e->port = ntohs(got.sin_port);
    e->started_ms = uv_now(&e->loop);
}

static void wake(uv_timer_t *t)
{
    (void)t;
}

/* Run the loop until pred(e) holds, at most `ms` and 200000 iterations. */
static bool run_until(struct env *e, bool (*pred)(struct env *), uint64_t ms)
{
    uv_timer_t tick;
    uv_timer_init(&e->loop, &tick);
    uv_timer_start(&tick, wake, 5, 5);
    uint64_t end = uv_now(&e->loop) + ms;
    bool ok = false;
    for (int i = 0; i < 200000; i++) {
        if (pred(e)) {
            ok = true;
            break;
        }
        if (uv_now(&e->loop) > end)
            break;
        uv_run(&e->loop, UV_RUN_ONCE);
    }
    e->pending_closes++;
    uv_close((uv_handle_t *)&tick, count_closed);
    uv_run(&e->loop, UV_RUN_NOWAIT);
    return ok;
}

static bool all_closed(struct env *e)
{
    bool links_gone = true;
    struct tls_link_stats st;
    if (e->srv_ctx != NULL) {
        tls_link_ctx_get_stats(e->srv_ctx, &st);
        links_gone = links_gone && st.live == 0;
    }
    if (e->cli_ctx != NULL) {
        tls_link_ctx_get_stats(e->cli_ctx, &st);
        links_gone = links_gone && st.live == 0;
    }
    return e->pending_closes == 0 && links_gone;
}

static bool links_gone(struct env *e)
{
    return all_closed(e);
}

/* Close what the test holds and check that the loop ends empty. */
static void env_finish(struct env *e)
{
    close_plain(e, &e->srv);
    close_plain(e, &e->cli);
    if (e->raw_open && !uv_is_closing((uv_handle_t *)&e->raw)) {
        e->pending_closes++;
        uv_close((uv_handle_t *)&e->raw, count_closed);
    }
    if (e->raw_accepted != NULL) {
        e->pending_closes++;
        uv_close((uv_handle_t *)e->raw_accepted, plain_closed);
        e->raw_accepted = NULL;
    }
    e->pending_closes++;
    uv_close((uv_handle_t *)&e->listener, count_closed);
    assert_true(run_until(e, all_closed, 5000));
    tls_link_ctx_free(e->srv_ctx);
    tls_link_ctx_free(e->cli_ctx);
    free(e->srv.rx);
    free(e->cli.rx);
    assert_int_equal(uv_loop_close(&e->loop), 0);
}

static void on_connected(uv_connect_t *c, int status)
{
    struct env *e = c->data;
    uv_tcp_t *tcp = (uv_tcp_t *)c->handle;
    if (status != 0)
        fail_msg("connect: %s", uv_strerror(status));
    int rc = tls_link_start(&e->loop, e->cli_ctx, tcp, 0, "server", e->cli_timeout_ms, on_link,
                            &e->cli);
    assert_int_equal(rc, 0);
}

static void connect_tls(struct env *e)
{
    uv_tcp_t *tcp = raft_malloc(sizeof *tcp);
    assert_non_null(tcp);
    uv_tcp_init(&e->loop, tcp);
    struct sockaddr_in sa;
    uv_ip4_addr("127.0.0.1", e->port, &sa);
    e->conn.data = e;
    assert_int_equal(uv_tcp_connect(&e->conn, tcp, (const struct sockaddr *)&sa, on_connected), 0);
}

static bool both_called(struct env *e)
{
    return e->srv.calls > 0 && e->cli.calls > 0;
}

static bool srv_called(struct env *e)
{
    return e->srv.calls > 0;
}

static bool cli_called(struct env *e)
{
    return e->cli.calls > 0;
}

/* --- data ---------------------------------------------------------------- */

static uint8_t pattern(size_t i)
{
    return (uint8_t)(i * 31u + (i >> 13));
}

static void rx_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    buf->base = malloc(suggested);
    buf->len = buf->base != NULL ? suggested : 0;
}

struct wr {
    uv_write_t req;
    struct side *s;
    char data[];
};

static void side_written(uv_write_t *req, int status)
{
    struct wr *w = req->data;
    w->s->pending_writes--;
    (void)status;
    free(w);
}

static void side_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    struct side *s = st->data;
    if (n < 0) {
        s->eof = true;
        uv_read_stop(st);
    } else if (n > 0 && s->echo) {
        struct wr *w = malloc(sizeof *w + (size_t)n);
        assert_non_null(w);
        memcpy(w->data, buf->base, (size_t)n);
        w->req.data = w;
        w->s = s;
        uv_buf_t b = uv_buf_init(w->data, (unsigned)n);
        s->pending_writes++;
        assert_int_equal(uv_write(&w->req, st, &b, 1, side_written), 0);
        s->echoed += (uint64_t)n;
    } else if (n > 0) {
        for (ssize_t i = 0; i < n; i++) {
            if (s->rx_have + (size_t)i >= s->rx_cap ||
                (uint8_t)buf->base[i] != pattern(s->rx_have + (size_t)i)) {
                s->mismatch = true;
                break;
            }
        }
        s->rx_have += (size_t)n;
    }
    free(buf->base);
}

static void side_start_reading(struct side *s)
{
    s->plain->data = s;
    assert_int_equal(uv_read_start(s->plain, rx_alloc, side_read), 0);
}

static void send_pattern(struct side *s, size_t n)
{
    struct wr *w = malloc(sizeof *w + n);
    assert_non_null(w);
    for (size_t i = 0; i < n; i++)
        w->data[i] = (char)pattern(i);
    w->req.data = w;
    w->s = s;
    uv_buf_t b = uv_buf_init(w->data, (unsigned)n);
    s->pending_writes++;
    assert_int_equal(uv_write(&w->req, s->plain, &b, 1, side_written), 0);
}

static bool echo_done(struct env *e)
{
    return e->cli.rx_have >= ECHO_BYTES || e->cli.mismatch || e->cli.eof;
}

static bool never(struct env *e)
{
    (void)e;
    return false;
}

static bool srv_paused(struct env *e)
{
    struct tls_link_stats st;
    tls_link_ctx_get_stats(e->srv_ctx, &st);
    return st.paused >= 1;
}

static bool srv_eof(struct env *e)
{
    return e->srv.eof;
}

static bool cli_eof(struct env *e)
{
    return e->cli.eof;
}

static void establish(struct env *e, const char *srv_id, const char *cli_id)
{
    e->srv_ctx = ctx_for(srv_id, "ca");
    e->cli_ctx = ctx_for(cli_id, "ca");
    connect_tls(e);
    assert_true(run_until(e, both_called, 5000));
    if (e->srv.status != 0 || e->cli.status != 0)
        fail_msg("handshake: server %d (%s), client %d (%s)", e->srv.status, e->srv.detail,
                 e->cli.status, e->cli.detail);
    assert_non_null(e->srv.plain);
    assert_non_null(e->cli.plain);
    assert_int_equal(e->srv.plain->type, UV_NAMED_PIPE);
}

/* --- tests ----------------------------------------------------------------- */

static void echo_through(bool stall_server)
{
    struct env e;
    env_init(&e);
    establish(&e, "node1", "node2");
    /* each side learns the other's certificate name */
    assert_string_equal(e.cli.detail, "node1");
    assert_string_equal(e.srv.detail, "node2");
    e.srv.echo = true;
    e.cli.rx_cap = ECHO_BYTES;
    if (!stall_server)
        side_start_reading(&e.srv);
    side_start_reading(&e.cli);
    send_pattern(&e.cli, ECHO_BYTES);
    if (stall_server) {
        /* Nobody reads the server's plain stream: the server's link must
         * stop reading TCP once 4 MiB wait for the pipe, rather than queue
         * all 8 MiB. */
        assert_true(run_until(&e, srv_paused, 15000));
        assert_false(run_until(&e, never, 200)); /* and stays stopped */
        struct tls_link_stats st;
        tls_link_ctx_get_stats(e.srv_ctx, &st);
        assert_int_equal(st.paused, 1);
        side_start_reading(&e.srv);
    }
    assert_true(run_until(&e, echo_done, 20000));
    assert_false(e.cli.mismatch);
    assert_false(e.cli.eof);
    assert_int_equal(e.cli.rx_have, ECHO_BYTES);
    assert_int_equal(e.srv.echoed, ECHO_BYTES);
    struct tls_link_stats st;
    tls_link_ctx_get_stats(e.srv_ctx, &st);
    assert_int_equal(st.established, 1);
    assert_int_equal(st.live, 1);
    /* the client closes its end: the server's user sees EOF, both links go */
    close_plain(&e, &e.cli);
    e.cli.plain = NULL;
    assert_true(run_until(&e, srv_eof, 5000));
    close_plain(&e, &e.srv);
    e.srv.plain = NULL;
    assert_true(run_until(&e, links_gone, 5000));
    env_finish(&e);
}

static void test_echo_8mib(void **state)
{
    (void)state;
    echo_through(false);
}

static void test_echo_backpressure(void **state)
{
    (void)state;
    echo_through(true);
}

static void test_rogue_client_refused(void **state)
{
    (void)state;
    struct env e;
    env_init(&e);
    e.srv_ctx = ctx_for("node1", "ca");
    e.cli_ctx = ctx_for("rogue", "bundle");
    connect_tls(&e);
    assert_true(run_until(&e, both_called, 5000));
    assert_true(e.srv.status < 0);
    assert_null(e.srv.plain);
    print_message("server: %s\nclient: %s\n", e.srv.detail, e.cli.detail);
    assert_non_null(strstr(e.srv.detail, "TLS handshake with client failed"));
    assert_non_null(strstr(e.srv.detail, "certificate verify failed"));
    /* The client learns it was refused (not a dead stream after success),
     * with the server's alert as the reason. */
    assert_true(e.cli.status < 0);
    assert_null(e.cli.plain);
    assert_non_null(strstr(e.cli.detail, "TLS handshake with server failed"));
    assert_non_null(strstr(e.cli.detail, "alert"));
    struct tls_link_stats st;
    tls_link_ctx_get_stats(e.srv_ctx, &st);
    assert_int_equal(st.established, 0);
    assert_int_equal(st.failed, 1);
    env_finish(&e);
}

static void test_rogue_server_refused(void **state)
{
    (void)state;
    struct env e;
    env_init(&e);
    e.srv_ctx = ctx_for("rogue", "bundle");
    e.cli_ctx = ctx_for("node2", "ca");
    connect_tls(&e);
    assert_true(run_until(&e, both_called, 5000));
    print_message("server: %s\nclient: %s\n", e.srv.detail, e.cli.detail);
    assert_int_equal(e.cli.status, PGW_EREFUSED);
    assert_non_null(strstr(e.cli.detail, "certificate verify failed"));
    assert_true(e.srv.status < 0);
    env_finish(&e);
}

static void raw_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct env *e = h->data;
    (void)suggested;
    *buf = uv_buf_init(e->raw_buf, sizeof e->raw_buf);
}

static void raw_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct env *e = s->data;
    (void)buf;
    if (n < 0) {
        e->raw_eof = true;
        uv_read_stop(s);
    }
}

static void raw_written(uv_write_t *w, int status)
{
    (void)w;
    (void)status;
}

static const char garbage[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";

static void raw_connected(uv_connect_t *c, int status)
{
    struct env *e = c->data;
    assert_int_equal(status, 0);
    assert_int_equal(uv_read_start((uv_stream_t *)&e->raw, raw_alloc, raw_read), 0);
    if (e->raw_garbage) {
        uv_buf_t b = uv_buf_init((char *)garbage, sizeof garbage - 1);
        assert_int_equal(uv_write(&e->raw_write, (uv_stream_t *)&e->raw, &b, 1, raw_written), 0);
    }
}

static void raw_connect(struct env *e, bool send_garbage)
{
    uv_tcp_init(&e->loop, &e->raw);
    e->raw.data = e;
    e->raw_open = true;
    e->raw_garbage = send_garbage;
    struct sockaddr_in sa;
    uv_ip4_addr("127.0.0.1", e->port, &sa);
    e->raw_conn.data = e;
    assert_int_equal(uv_tcp_connect(&e->raw_conn, &e->raw, (const struct sockaddr *)&sa,
                                    raw_connected), 0);
}

static bool srv_called_and_raw_eof(struct env *e)
{
    return e->srv.calls > 0 && e->raw_eof;
}

static void test_plain_tcp_refused(void **state)
{
    (void)state;
    struct env e;
    env_init(&e);
    e.srv_ctx = ctx_for("node1", "ca");
    raw_connect(&e, true);
    assert_true(run_until(&e, srv_called_and_raw_eof, 5000));
    print_message("server: %s\n", e.srv.detail);
    assert_int_equal(e.srv.status, PGW_EREFUSED);
    assert_null(e.srv.plain);
    assert_non_null(strstr(e.srv.detail, "TLS handshake with client failed: "));
    assert_true(strlen(e.srv.detail) > strlen("TLS handshake with client failed: "));
    env_finish(&e);
}

static void test_handshake_deadline(void **state)
{
    (void)state;
    struct env e;
    env_init(&e);
    e.srv_ctx = ctx_for("node1", "ca");
    e.srv_timeout_ms = 200;
    uint64_t t0 = uv_now(&e.loop);
    raw_connect(&e, false); /* connects, then says nothing */
    assert_true(run_until(&e, srv_called, 5000));
    uint64_t took = uv_now(&e.loop) - t0;
    assert_int_equal(e.srv.status, PGW_ETIMEDOUT);
    assert_non_null(strstr(e.srv.detail, "not completed within 200 ms"));
    assert_true(took >= 190 && took < 2000);
    /* and the silent peer's connection is closed */
    assert_true(run_until(&e, srv_called_and_raw_eof, 5000));
    env_finish(&e);
}

/* A client whose server never answers: its own deadline fires. */
static void test_client_deadline(void **state)
{
    (void)state;
    struct env e;
    env_init(&e);
    e.raw_server = true;
    e.cli_ctx = ctx_for("node2", "ca");
    e.cli_timeout_ms = 300;
    connect_tls(&e);
    assert_true(run_until(&e, cli_called, 3000));
    assert_int_equal(e.cli.status, PGW_ETIMEDOUT);
    assert_non_null(strstr(e.cli.detail, "server"));
    env_finish(&e);
}

static void test_server_side_close_reaches_client(void **state)
{
    (void)state;
    struct env e;
    env_init(&e);
    establish(&e, "node1", "node2");
    side_start_reading(&e.cli);
    /* The server's user closes: the client's user sees EOF. */
    close_plain(&e, &e.srv);
    e.srv.plain = NULL;
    assert_true(run_until(&e, cli_eof, 5000));
    env_finish(&e);
}

static void test_close_all(void **state)
{
    (void)state;
    struct env e;
    env_init(&e);
    establish(&e, "node1", "node2");
    side_start_reading(&e.cli);
    /* plus a handshake that will never finish */
    struct side pending = {0};
    e.srv.calls = 0;
    struct side keep = e.srv;
    e.srv = pending;
    raw_connect(&e, false);
    assert_true(run_until(&e, srv_called, 300) == false);
    struct tls_link_stats st;
    tls_link_ctx_get_stats(e.srv_ctx, &st);
    assert_int_equal(st.live, 2);
    tls_link_ctx_close_all(e.srv_ctx);
    assert_true(run_until(&e, srv_called, 2000));
    assert_int_equal(e.srv.status, PGW_ECANCELED);
    /* the established link is gone too: its client sees EOF */
    assert_true(run_until(&e, cli_eof, 5000));
    assert_true(run_until(&e, srv_called_and_raw_eof, 5000));
    e.srv = keep; /* its plain stream is still ours to close */
    env_finish(&e);
}

static void test_reload(void **state)
{
    (void)state;
    assert_true(copy_id("node1", "srv"));
    struct env e;
    env_init(&e);
    e.srv_ctx = ctx_for("srv", "ca");
    e.cli_ctx = ctx_for("node2", "ca");
    connect_tls(&e);
    assert_true(run_until(&e, both_called, 5000));
    assert_int_equal(e.cli.status, 0);
    assert_string_equal(e.cli.detail, "node1");
    close_plain(&e, &e.cli);
    close_plain(&e, &e.srv);
    e.cli = (struct side){0};
    e.srv = (struct side){0};

    /* renewed certificate in the same files */
    struct tls_id ca = {0}, renewed;
    char p[512];
    path_of(p, sizeof p, "ca", "crt");
    FILE *f = fopen(p, "r");
    assert_non_null(f);
    ca.cert = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    path_of(p, sizeof p, "ca", "key");
    f = fopen(p, "r");
    assert_non_null(f);
    ca.key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    assert_true(tls_id_make(&renewed, "node1-renewed", &ca, NULL, NULL, 30, 9));
    assert_true(tls_id_write(&renewed, dir, "srv"));
    tls_id_free(&renewed);
    tls_id_free(&ca);
    char err[512];
    assert_int_equal(tls_link_ctx_reload(e.srv_ctx, err, sizeof err), 0);
    connect_tls(&e);
    assert_true(run_until(&e, both_called, 5000));
    assert_int_equal(e.cli.status, 0);
    assert_string_equal(e.cli.detail, "node1-renewed");
    close_plain(&e, &e.cli);
    close_plain(&e, &e.srv);
    e.cli = (struct side){0};
    e.srv = (struct side){0};

    /* a broken file: the reload fails, naming it, and the old context stays */
    path_of(p, sizeof p, "srv", "crt");
    f = fopen(p, "w");
    assert_non_null(f);
    fputs("not a certificate\n", f);
    fclose(f);
    assert_true(tls_link_ctx_reload(e.srv_ctx, err, sizeof err) < 0);
    assert_non_null(strstr(err, p));
    connect_tls(&e);
    assert_true(run_until(&e, both_called, 5000));
    assert_int_equal(e.cli.status, 0);
    assert_string_equal(e.cli.detail, "node1-renewed");
    env_finish(&e);
}

static void expect_ctx_error(const char *cert, const char *key, const char *ca, const char *want1,
                             const char *want2)
{
    char c[512], k[512], a[512], err[512];
    path_of(c, sizeof c, cert, "crt");
    path_of(k, sizeof k, key, "key");
    path_of(a, sizeof a, ca, "crt");
    struct tls_link_ctx *ctx = (struct tls_link_ctx *)(uintptr_t)1; /* must be reset to NULL */
    err[0] = '\0';
    int rc = tls_link_ctx_new(c, k, a, &ctx, err, sizeof err);
    assert_true(rc < 0);
    assert_null(ctx);
    if (strstr(err, want1) == NULL || strstr(err, want2) == NULL)
        fail_msg("error \"%s\" lacks \"%s\" / \"%s\"", err, want1, want2);
    print_message("ctx error: %s\n", err);
}

static void free_handle(uv_handle_t *h)
{
    raft_free(h);
}

static void test_ctx_errors(void **state)
{
    (void)state;
    char p[512];
    path_of(p, sizeof p, "missing", "crt");
    expect_ctx_error("missing", "node1", "ca", p, "No such file");
    path_of(p, sizeof p, "node2", "key");
    expect_ctx_error("node1", "node2", "ca", p, "does not match");
    path_of(p, sizeof p, "rogue", "crt");
    expect_ctx_error("rogue", "rogue", "ca", p, "does not verify against CA file");
    /* garbage where a certificate should be */
    path_of(p, sizeof p, "bad", "crt");
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs("-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n", f);
    fclose(f);
    expect_ctx_error("bad", "node1", "ca", p, "certificate file");
    /* a key with a passphrase is refused, without prompting */
    struct tls_id id = {0};
    path_of(p, sizeof p, "node1", "key");
    f = fopen(p, "r");
    assert_non_null(f);
    id.key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    assert_non_null(id.key);
    path_of(p, sizeof p, "bad", "key");
    f = fopen(p, "w");
    assert_non_null(f);
    assert_int_equal(PEM_write_PrivateKey(f, id.key, EVP_aes_128_cbc(),
                                          (unsigned char *)"secret", 6, NULL, NULL), 1);
    fclose(f);
    tls_id_free(&id);
    path_of(p, sizeof p, "node1", "crt");
    char bad_crt[512];
    path_of(bad_crt, sizeof bad_crt, "bad", "crt");
    assert_true(concat(bad_crt, p, "/dev/null"));
    expect_ctx_error("bad", "bad", "ca", "key file", "passphrase");
    /* a CA file without certificates */
    path_of(p, sizeof p, "bad", "crt");
    char cert_ok[512], key_ok[512], err[512];
    path_of(cert_ok, sizeof cert_ok, "node1", "crt");
    path_of(key_ok, sizeof key_ok, "node1", "key");
    f = fopen(p, "w");
    assert_non_null(f);
    fclose(f);
    struct tls_link_ctx *ctx = NULL;
    assert_true(tls_link_ctx_new(cert_ok, key_ok, p, &ctx, err, sizeof err) < 0);
    assert_null(ctx);
    assert_non_null(strstr(err, p));
    /* bad arguments to start: nothing taken */
    struct tls_link_ctx *good = ctx_for("node1", "ca");
    uv_loop_t loop;
    uv_loop_init(&loop);
    uv_tcp_t *tcp = raft_malloc(sizeof *tcp);
    uv_tcp_init(&loop, tcp);
    assert_int_equal(tls_link_start(&loop, good, tcp, 1, "x", 0, on_link, NULL), PGW_EINVAL);
    assert_int_equal(tls_link_start(&loop, good, tcp, 1, "x", 100, NULL, NULL), PGW_EINVAL);
    uv_close((uv_handle_t *)tcp, free_handle);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    tls_link_ctx_free(good);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ctx_errors),
        cmocka_unit_test(test_echo_8mib),
        cmocka_unit_test(test_echo_backpressure),
        cmocka_unit_test(test_rogue_client_refused),
        cmocka_unit_test(test_rogue_server_refused),
        cmocka_unit_test(test_plain_tcp_refused),
        cmocka_unit_test(test_handshake_deadline),
        cmocka_unit_test(test_client_deadline),
        cmocka_unit_test(test_server_side_close_reaches_client),
        cmocka_unit_test(test_close_all),
        cmocka_unit_test(test_reload),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
