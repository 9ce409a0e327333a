/* pg_controldata parsing (captured real output) and postmaster.pid reading. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "pg/pgctl.h"

static char *load(const char *name, size_t *len)
{
    const char *dir = getenv("PGW_TEST_DATA");
    assert_non_null(dir);
    char path[1024];
    snprintf(path, sizeof path, "%s/pg/%s", dir, name);
    FILE *f = fopen(path, "r");
    if (!f)
        fail_msg("cannot open fixture %s", path);
    char *buf = calloc(1, 65536);
    *len = fread(buf, 1, 65535, f);
    fclose(f);
    return buf;
}

static void parse_fixture(const char *name, struct pg_controldata *cd)
{
    size_t len;
    char *t = load(name, &len);
    char eb[256];
    int rc = pg_controldata_parse(t, len, cd, eb, sizeof eb);
    if (rc != 0)
        fail_msg("%s: %s", name, eb);
    free(t);
}

static void test_in_production(void **state)
{
    (void)state;
    struct pg_controldata cd;
    parse_fixture("controldata_in_production.txt", &cd);
    assert_int_equal(cd.state, PG_CLUSTER_IN_PRODUCTION);
    assert_string_equal(cd.state_text, "in production");
    assert_true(cd.system_identifier == 7712280671462400567ull);
    assert_int_equal(cd.pg_control_version, 1300);
    assert_int_equal(cd.checkpoint_lsn, 0x17529B0);
    assert_int_equal(cd.redo_lsn, 0x17529B0);
    assert_int_equal(cd.checkpoint_tli, 1);
    assert_int_equal(cd.prev_tli, 1);
    assert_int_equal(cd.min_recovery_lsn, 0);
    assert_int_equal(cd.min_recovery_tli, 0);
    assert_false(cd.wal_log_hints);
    assert_int_equal(cd.data_checksum_version, 1);
    assert_string_equal(cd.wal_level, "replica");
    assert_int_equal(cd.max_connections, 100);
    assert_int_equal(cd.max_worker_processes, 8);
    assert_int_equal(cd.max_wal_senders, 10);
    assert_int_equal(cd.max_prepared_xacts, 0);
    assert_int_equal(cd.max_locks_per_xact, 64);
    assert_false(cd.track_commit_timestamp);
}

static void test_other_states(void **state)
{
    (void)state;
    struct pg_controldata cd;
    parse_fixture("controldata_shut_down.txt", &cd);
    assert_int_equal(cd.state, PG_CLUSTER_SHUT_DOWN);
    parse_fixture("controldata_crashed.txt", &cd);
    /* kill -9 leaves "in production" behind: not a clean shutdown */
    assert_int_equal(cd.state, PG_CLUSTER_IN_PRODUCTION);
    parse_fixture("controldata_standby_stopped.txt", &cd);
    assert_int_equal(cd.state, PG_CLUSTER_SHUT_DOWN_RECOVERY);
    assert_true(cd.min_recovery_lsn != 0);
    assert_true(cd.min_recovery_tli >= 1);
    parse_fixture("controldata_standby_running.txt", &cd);
    assert_int_equal(cd.state, PG_CLUSTER_ARCHIVE_RECOVERY);
    parse_fixture("controldata_promoted.txt", &cd);
    assert_int_equal(cd.state, PG_CLUSTER_IN_PRODUCTION);
    assert_int_equal(cd.checkpoint_tli, 2);
    assert_true(cd.wal_log_hints);
}

static void test_state_names(void **state)
{
    (void)state;
    assert_string_equal(pg_cluster_state_name(PG_CLUSTER_SHUT_DOWN_RECOVERY), "shut down in recovery");
    assert_string_equal(pg_cluster_state_name(PG_CLUSTER_CRASH_RECOVERY), "in crash recovery");
    assert_string_equal(pg_cluster_state_name(PG_CLUSTER_SHUTTING_DOWN), "shutting down");
    assert_string_equal(pg_cluster_state_name(PG_CLUSTER_UNKNOWN), "unknown");
    const char *t = "Database system identifier: 1\nDatabase cluster state: in crash recovery\n"
                    "Latest checkpoint location: 0/10\n";
    struct pg_controldata cd;
    char eb[128];
    assert_int_equal(pg_controldata_parse(t, strlen(t), &cd, eb, sizeof eb), 0);
    assert_int_equal(cd.state, PG_CLUSTER_CRASH_RECOVERY);
}

static void test_bad_output(void **state)
{
    (void)state;
    struct pg_controldata cd;
    char eb[256];
    const char *t1 = "pg_controldata: error: could not open file \"global/pg_control\"\n";
    assert_int_equal(pg_controldata_parse(t1, strlen(t1), &cd, eb, sizeof eb), PGW_EPROTO);
    assert_non_null(strstr(eb, "Database system identifier"));
    const char *t2 = "Database system identifier: abc\n";
    assert_int_equal(pg_controldata_parse(t2, strlen(t2), &cd, eb, sizeof eb), PGW_EPROTO);
    assert_non_null(strstr(eb, "abc"));
    const char *t3 = "Database system identifier: 5\nDatabase cluster state: in production\n"
                     "Latest checkpoint location: nope\n";
    assert_int_equal(pg_controldata_parse(t3, strlen(t3), &cd, eb, sizeof eb), PGW_EPROTO);
    assert_non_null(strstr(eb, "nope"));
    const char *t4 = "Database system identifier: 5\nDatabase cluster state: exploded\n"
                     "Latest checkpoint location: 0/1\n";
    assert_int_equal(pg_controldata_parse(t4, strlen(t4), &cd, eb, sizeof eb), 0);
    assert_int_equal(cd.state, PG_CLUSTER_UNKNOWN);
    assert_string_equal(cd.state_text, "exploded");
    assert_int_equal(pg_controldata_parse("", 0, &cd, eb, sizeof eb), PGW_EPROTO);
}

static void test_pidfile(void **state)
{
    (void)state;
    char dir[] = "/tmp/pgw-test-pidfile-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof path, "%s/postmaster.pid", dir);
    struct pg_pidfile pf;
    char eb[256];
    assert_int_equal(pg_pidfile_read(dir, &pf, eb, sizeof eb), PGW_ENOTFOUND);
    assert_false(pg_postmaster_running(dir, NULL));

    size_t len;
    char *t = load("postmaster.pid.ready", &len);
    FILE *f = fopen(path, "w");
    fwrite(t, 1, len, f);
    fclose(f);
    free(t);
    assert_int_equal(pg_pidfile_read(dir, &pf, eb, sizeof eb), 0);
    assert_int_equal(pf.pid, 8770);
    assert_false(pf.single_user);
    assert_string_equal(pf.data_dir, "/tmp/pgfx/d");
    assert_int_equal(pf.port, 54399);
    assert_string_equal(pf.socket_dir, "/tmp/pgfx");
    assert_string_equal(pf.listen_addr, "");
    assert_int_equal(pf.status, PG_PIDFILE_READY);
    assert_true(pf.start_time > 1700000000);

    /* our own pid is alive but is not a postgres process: a stale file */
    f = fopen(path, "w");
    fprintf(f, "%d\n%s\n1\n5432\n/tmp\n*\n  1 2\nstarting\n", (int)getpid(), dir);
    fclose(f);
    assert_int_equal(pg_pidfile_read(dir, &pf, eb, sizeof eb), 0);
    assert_int_equal(pf.status, PG_PIDFILE_STARTING);
    assert_false(pg_pid_alive(getpid())); /* alive, but not a postgres program */
    assert_false(pg_postmaster_running(dir, NULL));

    f = fopen(path, "w");
    fprintf(f, "-4242\n%s\n", dir);
    fclose(f);
    assert_int_equal(pg_pidfile_read(dir, &pf, eb, sizeof eb), 0);
    assert_true(pf.single_user);
    assert_int_equal(pf.pid, 4242);

    f = fopen(path, "w");
    fclose(f);
    assert_int_equal(pg_pidfile_read(dir, &pf, eb, sizeof eb), PGW_EPROTO);
    f = fopen(path, "w");
    fprintf(f, "12x\n");
    fclose(f);
    assert_int_equal(pg_pidfile_read(dir, &pf, eb, sizeof eb), PGW_EPROTO);
    assert_non_null(strstr(eb, "12x"));
    unlink(path);
    rmdir(dir);
    assert_false(pg_pid_alive(0));
    assert_false(pg_pid_alive(-5));
}

/* A socket lock whose pid is a zombie (a killed postmaster nobody reaped
 * yet) is removed when PostgreSQL's start names it; a live owner, another
 * kind of lock file or a message without a lock file leave things alone. */
static void test_socklock_clear_stale(void **state)
{
    (void)state;
    char dir[] = "/tmp/pgw-socklock-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char lock[128], msg[512];
    snprintf(lock, sizeof lock, "%s/.s.PGSQL.54321.lock", dir);
    snprintf(msg, sizeof msg, "2026-11-26 08:15:06.241 UTC [12444] FATAL:  lock file \"%s\" "
             "already exists | HINT:  Is another postmaster (PID 1) using socket file?", lock);

    pid_t z = fork();
    assert_true(z >= 0);
    if (z == 0)
        _exit(0);
    /* wait (bounded) until the child is a zombie: /proc/<pid>/stat says Z */
    for (int i = 0; i < 500; i++) {
        char p[64], b[256] = "";
        snprintf(p, sizeof p, "/proc/%d/stat", (int)z);
        FILE *f = fopen(p, "r");
        if (f != NULL) {
            size_t n = fread(b, 1, sizeof b - 1, f);
            b[n] = '\0';
            fclose(f);
        }
        if (strstr(b, ") Z ") != NULL)
            break;
        usleep(10000);
    }
    assert_int_equal(kill(z, 0), 0); /* a zombie still answers kill(pid, 0) */
    FILE *f = fopen(lock, "w");
    fprintf(f, "%d\n%s\n", (int)z, dir);
    fclose(f);
    assert_true(pg_socklock_clear_stale(msg));
    assert_int_not_equal(access(lock, F_OK), 0);
    waitpid(z, NULL, 0);

    /* the owner is alive and a postgres program: left alone. A sleeping
     * child renamed "postgres" stands in for the postmaster. */
    pid_t live = fork();
    assert_true(live >= 0);
    if (live == 0) {
        prctl(PR_SET_NAME, "postgres", 0, 0, 0);
        for (int i = 0; i < 3000; i++)
            usleep(10000);
        _exit(0);
    }
    for (int i = 0; i < 500 && !pg_pid_alive(live); i++)
        usleep(10000);
    assert_true(pg_pid_alive(live));
    f = fopen(lock, "w");
    fprintf(f, "%d\n%s\n", (int)live, dir);
    fclose(f);
    assert_false(pg_socklock_clear_stale(msg));
    assert_int_equal(access(lock, F_OK), 0);
    kill(live, SIGKILL);
    waitpid(live, NULL, 0);

    /* not a socket lock: postmaster.pid has its own, stricter check */
    char pm[128], pmmsg[300];
    snprintf(pm, sizeof pm, "%s/postmaster.pid", dir);
    f = fopen(pm, "w");
    fprintf(f, "%d\n", (int)z); /* z is reaped now: dead */
    fclose(f);
    snprintf(pmmsg, sizeof pmmsg, "FATAL:  lock file \"%s\" already exists", pm);
    assert_false(pg_socklock_clear_stale(pmmsg));
    assert_int_equal(access(pm, F_OK), 0);
    assert_false(pg_socklock_clear_stale("FATAL:  could not bind IPv4 address"));
    assert_false(pg_socklock_clear_stale("lock file \"/tmp/.s.PGSQL.1.lock"));  /* cut off */

    unlink(pm);
    unlink(lock);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_in_production),
        cmocka_unit_test(test_other_states),
        cmocka_unit_test(test_state_names),
        cmocka_unit_test(test_bad_output),
        cmocka_unit_test(test_pidfile),
        cmocka_unit_test(test_socklock_clear_stale),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
