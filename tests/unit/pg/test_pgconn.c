/* The async libpq connection without a server: refused connections,
 * backoff, a "black hole" listener that accepts TCP but never answers (what
 * a SIGSTOPped postmaster looks like), and the monitor's status parsing and
 * DOWN detection. Every loop is bounded and closes cleanly. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "pg/pgconn.h"
#include "pg/pgmon.h"

struct res {
    int calls;
    int status;
    char error[1024];
    uint64_t at_ms;
};

static void on_query(struct pgconn *c, const struct pgconn_result *r, void *ctx)
{
    (void)c;
    struct res *o = ctx;
    o->calls++;
    o->status = r->status;
    snprintf(o->error, sizeof o->error, "%s", r->error);
    o->at_ms = uv_hrtime() / 1000000;
}

static void on_connect(struct pgconn *c, int status, const char *error, void *ctx)
{
    (void)c;
    struct res *o = ctx;
    o->calls++;
    o->status = status;
    snprintf(o->error, sizeof o->error, "%s", error);
}

static void spin(uv_loop_t *loop, int *flag, int want, int max_ms)
{
    uint64_t end = uv_hrtime() / 1000000 + (uint64_t)max_ms;
    while (*flag < want && uv_hrtime() / 1000000 < end)
        uv_run(loop, UV_RUN_ONCE);
}

static void drain(uv_loop_t *loop)
{
    for (int i = 0; i < 1000 && uv_run(loop, UV_RUN_NOWAIT); i++)
        ;
}

/* A listening socket nobody accepts on: the kernel completes the TCP
 * handshake, the server never speaks. */
static int black_hole(uint16_t *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(fd, 16), 0);
    socklen_t l = sizeof a;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &l), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

/* A port with nothing listening (bound, then closed). */
static uint16_t dead_port(void)
{
    uint16_t port;
    int fd = black_hole(&port);
    close(fd);
    return port;
}

static void params_for(struct pgconn_params *p, uint16_t port)
{
    char ps[16];
    snprintf(ps, sizeof ps, "%u", port);
    memset(p, 0, sizeof *p);
    assert_int_equal(pgconn_params_set(p, "host", "127.0.0.1"), 0);
    assert_int_equal(pgconn_params_set(p, "port", ps), 0);
    assert_int_equal(pgconn_params_set(p, "user", "postgres"), 0);
    assert_int_equal(pgconn_params_set(p, "password", "secret"), 0);
    assert_int_equal(pgconn_params_set(p, "dbname", "postgres"), 0);
    assert_int_equal(pgconn_params_set(p, "sslmode", "disable"), 0);
    assert_int_equal(pgconn_params_set(p, "gssencmode", "disable"), 0);
}

static void test_params(void **state)
{
    (void)state;
    struct pgconn_params p = {0};
    assert_int_equal(pgconn_params_set(&p, "host", "h"), 0);
    assert_int_equal(pgconn_params_set(&p, "host", "h2"), 0);
    assert_int_equal(p.n, 1);
    assert_string_equal(pgconn_params_get(&p, "host"), "h2");
    assert_int_equal(pgconn_params_set(&p, "application_name", "it's\\me"), 0);
    char ci[128];
    assert_int_equal(pgconn_params_to_conninfo(&p, false, ci, sizeof ci), 0);
    assert_string_equal(ci, "host='h2' application_name='it\\'s\\\\me'");
    assert_int_equal(pgconn_params_set(&p, "host", NULL), 0);
    assert_null(pgconn_params_get(&p, "host"));
    assert_int_equal(p.n, 1);
    for (int i = 0; i < PGCONN_MAX_PARAMS - 1; i++) {
        char k[16];
        snprintf(k, sizeof k, "k%d", i);
        assert_int_equal(pgconn_params_set(&p, k, "v"), 0);
    }
    assert_int_equal(pgconn_params_set(&p, "overflow", "v"), PGW_EINVAL);
    pgconn_params_free(&p);
    char *q = pgconn_quote_ident("we\"ird");
    assert_string_equal(q, "\"we\"\"ird\"");
    free(q);
    q = pgconn_quote_literal("o'k");
    assert_string_equal(q, "'o''k'");
    free(q);
    q = pgconn_quote_literal("a\\b");
    assert_string_equal(q, "E'a\\\\b'");
    free(q);
}

static void test_refused_then_backoff(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct pgconn_params p;
    params_for(&p, dead_port());
    struct pgconn_opts o = {.name = "t", .connect_timeout_ms = 2000, .backoff_min_ms = 400,
                            .backoff_max_ms = 800};
    struct pgconn *c;
    assert_int_equal(pgconn_new(&loop, &p, &o, &c), 0);
    pgconn_params_free(&p);
    struct res r = {0};
    assert_int_equal(pgconn_query(c, "SELECT 1", 1000, on_query, &r), 0);
    assert_int_equal(r.calls, 0); /* asynchronous */
    assert_int_equal(pgconn_query(c, "SELECT 1", 1000, on_query, &r), PGW_EBUSY);
    spin(&loop, &r.calls, 1, 3000);
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.status, PGW_EUNAVAIL);
    assert_non_null(strstr(r.error, "refused"));
    assert_null(strstr(r.error, "secret"));
    assert_false(pgconn_is_connected(c));
    /* inside the backoff window: no new attempt, says when the next one is */
    struct res r2 = {0};
    assert_int_equal(pgconn_query(c, "SELECT 1", 1000, on_query, &r2), 0);
    assert_int_equal(r2.calls, 0);
    spin(&loop, &r2.calls, 1, 1000);
    assert_int_equal(r2.status, PGW_EUNAVAIL);
    assert_non_null(strstr(r2.error, "next attempt"));
    assert_non_null(strstr(r2.error, "refused"));
    /* explicit connect ignores the backoff and fails the same way */
    struct res r3 = {0};
    assert_int_equal(pgconn_connect(c, on_connect, &r3), 0);
    spin(&loop, &r3.calls, 1, 3000);
    assert_int_equal(r3.status, PGW_EUNAVAIL);
    pgconn_destroy(c);
    drain(&loop);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_black_hole_times_out(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    uint16_t port;
    int fd = black_hole(&port);
    struct pgconn_params p;
    params_for(&p, port);
    struct pgconn_opts o = {.name = "probe", .connect_timeout_ms = 300, .query_timeout_ms = 300};
    struct pgconn *c;
    assert_int_equal(pgconn_new(&loop, &p, &o, &c), 0);
    pgconn_params_free(&p);
    struct res r = {0};
    uint64_t t0 = uv_hrtime() / 1000000;
    assert_int_equal(pgconn_query(c, "SELECT 1", 300, on_query, &r), 0);
    spin(&loop, &r.calls, 1, 5000);
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.status, PGW_ETIMEDOUT);
    assert_true(r.at_ms - t0 >= 290 && r.at_ms - t0 < 2000);
    assert_non_null(strstr(r.error, "timed out"));
    pgconn_destroy(c);
    drain(&loop);
    close(fd);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* A host name is looked up off the loop (uv_getaddrinfo) and libpq gets
 * host plus hostaddr lists: the failures name the host, every address is
 * tried, the deadline covers the lookup, and destroying the connection
 * while the lookup runs frees everything once it comes back (ASan). */
static void test_host_name_is_looked_up_off_the_loop(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct pgconn_opts o = {.name = "t", .connect_timeout_ms = 3000, .backoff_min_ms = 1,
                            .backoff_max_ms = 1};
    struct pgconn_params p;
    struct pgconn *c;

    /* nothing listens: refused on each of localhost's addresses */
    params_for(&p, dead_port());
    assert_int_equal(pgconn_params_set(&p, "host", "localhost"), 0);
    assert_int_equal(pgconn_new(&loop, &p, &o, &c), 0);
    pgconn_params_free(&p);
    struct res r = {0};
    assert_int_equal(pgconn_query(c, "SELECT 1", 3000, on_query, &r), 0);
    assert_int_equal(r.calls, 0);
    spin(&loop, &r.calls, 1, 5000);
    assert_int_equal(r.status, PGW_EUNAVAIL);
    assert_non_null(strstr(r.error, "host \"localhost\" is "));
    assert_non_null(strstr(r.error, "127.0.0.1"));
    assert_non_null(strstr(r.error, "refused"));
    pgconn_destroy(c);
    drain(&loop);

    /* a name that does not resolve: our lookup's message, not libpq's */
    params_for(&p, 5432);
    assert_int_equal(pgconn_params_set(&p, "host", "no-such-host.invalid"), 0);
    assert_int_equal(pgconn_new(&loop, &p, &o, &c), 0);
    pgconn_params_free(&p);
    memset(&r, 0, sizeof r);
    assert_int_equal(pgconn_query(c, "SELECT 1", 3000, on_query, &r), 0);
    spin(&loop, &r.calls, 1, 8000);
    assert_int_equal(r.status, PGW_EUNAVAIL);
    assert_non_null(strstr(r.error, "could not translate host name \"no-such-host.invalid\" to an address"));
    pgconn_destroy(c);
    drain(&loop);

    /* a black hole behind the name: the deadline covers lookup and connect */
    uint16_t port;
    int fd = black_hole(&port);
    params_for(&p, port);
    assert_int_equal(pgconn_params_set(&p, "host", "localhost"), 0);
    o.connect_timeout_ms = 400;
    assert_int_equal(pgconn_new(&loop, &p, &o, &c), 0);
    pgconn_params_free(&p);
    memset(&r, 0, sizeof r);
    uint64_t t0 = uv_hrtime() / 1000000;
    assert_int_equal(pgconn_query(c, "SELECT 1", 400, on_query, &r), 0);
    spin(&loop, &r.calls, 1, 5000);
    assert_int_equal(r.status, PGW_ETIMEDOUT);
    assert_true(r.at_ms - t0 >= 390 && r.at_ms - t0 < 3000);
    pgconn_destroy(c);
    drain(&loop);
    close(fd);

    /* destroyed while its lookup runs: no callback, nothing leaks */
    params_for(&p, 5432);
    assert_int_equal(pgconn_params_set(&p, "host", "localhost"), 0);
    assert_int_equal(pgconn_new(&loop, &p, &o, &c), 0);
    pgconn_params_free(&p);
    memset(&r, 0, sizeof r);
    assert_int_equal(pgconn_query(c, "SELECT 1", 1000, on_query, &r), 0);
    pgconn_destroy(c);
    /* the lookup (thread pool) comes back in its own time: run until it has */
    uint64_t end = uv_hrtime() / 1000000 + 5000;
    while (uv_loop_alive(&loop) && uv_hrtime() / 1000000 < end)
        uv_run(&loop, UV_RUN_ONCE);
    assert_int_equal(r.calls, 0);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_destroy_with_pending_query(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    uint16_t port;
    int fd = black_hole(&port);
    struct pgconn_params p;
    params_for(&p, port);
    struct pgconn *c;
    assert_int_equal(pgconn_new(&loop, &p, NULL, &c), 0);
    pgconn_params_free(&p);
    struct res r = {0};
    assert_int_equal(pgconn_query(c, "SELECT 1", 5000, on_query, &r), 0);
    uv_run(&loop, UV_RUN_NOWAIT);
    pgconn_destroy(c);
    drain(&loop);
    assert_int_equal(r.calls, 0); /* dropped, never called after destroy */
    close(fd);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* ---- the monitor ---------------------------------------------------------- */

static PGresult *mkres(int ncols, const char *const *names, int nrows, const char *const *vals)
{
    PGresult *r = PQmakeEmptyPGresult(NULL, PGRES_TUPLES_OK);
    PGresAttDesc att[16];
    memset(att, 0, sizeof att);
    for (int i = 0; i < ncols; i++) {
        att[i].name = (char *)names[i];
        att[i].typid = 25;
        att[i].typlen = -1;
        att[i].atttypmod = -1;
    }
    assert_int_equal(PQsetResultAttrs(r, ncols, att), 1);
    for (int row = 0; row < nrows; row++)
        for (int col = 0; col < ncols; col++) {
            const char *v = vals[row * ncols + col];
            assert_int_equal(PQsetvalue(r, row, col, (char *)v, v ? (int)strlen(v) : -1), 1);
        }
    return r;
}

static void test_parse_status_replica(void **state)
{
    (void)state;
    const char *n1[] = {"v", "rec", "cur", "recv", "repl", "ts", "paused", "tli", "sysid", "start", "pend"};
    const char *v1[] = {"150004", "t", NULL, "0/5000060", "0/5000028", "1700000000123", "f", "3",
                        "-1234", "1699999999000", "t"};
    const char *n2[] = {"app", "user", "addr", "state", "sync", "prio", "sent", "write", "flush", "replay"};
    const char *v2[] = {"node3", "replicator", "10.0.0.3/32", "streaming", "async", "0",
                        "0/5000060", "0/5000060", "0/5000000", "0/4FFFFFF"};
    const char *n3[] = {"status", "host", "port", "slot", "written", "flushed", "tli"};
    const char *v3[] = {"streaming", "10.0.0.1", "5432", "node2", "0/5000060", "0/5000000", "3"};
    PGresult *res[3] = {mkres(11, n1, 1, v1), mkres(10, n2, 1, v2), mkres(7, n3, 1, v3)};
    struct pg_status st;
    memset(&st, 0, sizeof st);
    char eb[256];
    assert_int_equal(pgmon_parse_status(res, 3, &st, eb, sizeof eb), 0);
    assert_int_equal(st.server_version, 150004);
    assert_true(st.in_recovery);
    assert_int_equal(st.received_lsn, 0x5000060);
    assert_int_equal(st.replayed_lsn, 0x5000028);
    assert_int_equal(st.wal_lsn, 0x5000060); /* max(received, replayed) on a replica */
    assert_true(st.has_replay_ts);
    assert_int_equal(st.last_replay_ts_ms, 1700000000123LL);
    assert_false(st.replay_paused);
    assert_int_equal(st.timeline, 3);
    assert_true(st.system_identifier == (uint64_t)-1234); /* bigint wrap-around kept */
    assert_true(st.pending_restart);
    assert_int_equal(st.nrepl, 1);
    assert_string_equal(st.repl[0].application_name, "node3");
    assert_string_equal(st.repl[0].sync_state, "async");
    assert_int_equal(st.repl[0].replay_lsn, 0x4FFFFFF);
    assert_true(st.receiver.present);
    assert_string_equal(st.receiver.status, "streaming");
    assert_int_equal(st.receiver.sender_port, 5432);
    assert_string_equal(st.receiver.slot_name, "node2");
    assert_int_equal(st.receiver.received_tli, 3);
    for (int i = 0; i < 3; i++)
        PQclear(res[i]);

    /* a primary: no receiver row, no replay timestamp */
    const char *v1p[] = {"150004", "f", "0/7000000", NULL, NULL, NULL, "f", "2", "42", "1", "f"};
    PGresult *rp[3] = {mkres(11, n1, 1, v1p), mkres(10, n2, 0, NULL), mkres(7, n3, 0, NULL)};
    assert_int_equal(pgmon_parse_status(rp, 3, &st, eb, sizeof eb), 0);
    assert_false(st.in_recovery);
    assert_int_equal(st.wal_lsn, 0x7000000);
    assert_false(st.has_replay_ts);
    assert_int_equal(st.nrepl, 0);
    assert_false(st.receiver.present);
    assert_int_equal(st.system_identifier, 42);
    /* wrong shapes are rejected with a reason */
    assert_int_equal(pgmon_parse_status(rp, 2, &st, eb, sizeof eb), PGW_EPROTO);
    PGresult *bad[3] = {rp[1], rp[1], rp[2]};
    assert_int_equal(pgmon_parse_status(bad, 3, &st, eb, sizeof eb), PGW_EPROTO);
    assert_non_null(strstr(eb, "shape"));
    for (int i = 0; i < 3; i++)
        PQclear(rp[i]);
    assert_non_null(strstr(pgmon_status_sql(true), "pg_stat_get_wal_senders"));
    assert_non_null(strstr(pgmon_status_sql(true), "pending_restart"));
    assert_null(strstr(pgmon_status_sql(false), "pg_settings"));

    /* pending_restart not asked (NULL): the last answer stands */
    const char *v1n[] = {"150004", "f", "0/7000000", NULL, NULL, NULL, "f", "2", "42", "1", NULL};
    PGresult *rn[3] = {mkres(11, n1, 1, v1n), mkres(10, n2, 0, NULL), mkres(7, n3, 0, NULL)};
    st.pending_restart = true;
    assert_int_equal(pgmon_parse_status(rn, 3, &st, eb, sizeof eb), 0);
    assert_true(st.pending_restart);
    st.pending_restart = false;
    assert_int_equal(pgmon_parse_status(rn, 3, &st, eb, sizeof eb), 0);
    assert_false(st.pending_restart);
    for (int i = 0; i < 3; i++)
        PQclear(rn[i]);
}

struct mon_res {
    int calls;
    int status;
    enum pg_run_state state;
    char error[256];
    int changes;
};

static void on_refresh(struct pgmon *m, int status, const struct pg_status *st, void *ctx)
{
    (void)m;
    struct mon_res *o = ctx;
    o->calls++;
    o->status = status;
    o->state = st->state;
    snprintf(o->error, sizeof o->error, "%s", st->error);
}

static void on_change(struct pgmon *m, const struct pg_status *st, enum pg_run_state old, void *ctx)
{
    (void)m;
    (void)st;
    (void)old;
    struct mon_res *o = ctx;
    o->changes++;
}

static void test_monitor_down(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    char dir[] = "/tmp/pgw-test-pgmon-XXXXXX";
    assert_non_null(mkdtemp(dir));
    struct pgconn_params p;
    params_for(&p, dead_port());
    struct mon_res o = {0};
    struct pgmon_opts mo = {.data_dir = dir, .conn = &p, .interval_ms = 100, .on_change = on_change,
                            .ctx = &o};
    struct pgmon *m;
    assert_int_equal(pgmon_new(&loop, &mo, &m), 0);
    pgconn_params_free(&p);
    assert_int_equal(pgmon_status(m)->state, PG_RUN_UNKNOWN);
    /* a destroyed monitor (shutdown) still gives a readable status */
    assert_int_equal(pgmon_status(NULL)->state, PG_RUN_UNKNOWN);
    assert_false(pgmon_status(NULL)->query_ok);
    assert_int_equal(pgmon_start(m), 0);
    assert_int_equal(pgmon_refresh(m, on_refresh, &o), 0);
    assert_int_equal(o.calls, 0);
    spin(&loop, &o.calls, 1, 3000);
    assert_int_equal(o.calls, 1);
    assert_int_equal(o.status, PGW_EUNAVAIL);
    assert_int_equal(o.state, PG_RUN_DOWN);
    assert_non_null(strstr(o.error, "no postmaster.pid"));
    assert_int_equal(o.changes, 1);
    /* a pid file naming a dead pid: DOWN, "gone" */
    char path[128];
    snprintf(path, sizeof path, "%s/postmaster.pid", dir);
    FILE *f = fopen(path, "w");
    fprintf(f, "999999999\n%s\n1\n5432\n/tmp\n*\n 1 2\nready   \n", dir);
    fclose(f);
    assert_int_equal(pgmon_refresh(m, on_refresh, &o), 0);
    spin(&loop, &o.calls, 2, 3000);
    assert_int_equal(o.state, PG_RUN_DOWN);
    assert_non_null(strstr(o.error, "gone"));
    unlink(path);
    rmdir(dir);
    pgmon_destroy(m);
    drain(&loop);
    assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_params),
        cmocka_unit_test(test_refused_then_backoff),
        cmocka_unit_test(test_black_hole_times_out),
        cmocka_unit_test(test_host_name_is_looked_up_off_the_loop),
        cmocka_unit_test(test_destroy_with_pending_query),
        cmocka_unit_test(test_parse_status_replica),
        cmocka_unit_test(test_monitor_down),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
