/* The pure decision pieces of HA: the lease arithmetic (holder and judge),
 * candidate choice, synchronous standby choice and names, the watchdog
 * against a recording fake device, and the agent table's coverage. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "ha/candidate.h"
#include "ha/lease.h"
#include "ha/sync.h"
#include "ha/watchdog.h"

static const struct lease_timing T = {.ttl_ms = 2000, .loop_wait_ms = 500, .retry_timeout_ms = 750};

static void test_holder_lease(void **state)
{
    (void)state;
    struct lease_holder h;
    lease_holder_reset(&h, 0);
    assert_false(lease_holder_due(&h, &T, 0)); /* holds nothing */
    lease_holder_reset(&h, 7);
    assert_true(lease_holder_due(&h, &T, 1000));
    assert_false(lease_holder_valid(&h, 1000)); /* nothing confirmed yet */
    lease_holder_sent(&h, 1000, &T);
    assert_false(lease_holder_due(&h, &T, 1100)); /* one in flight */
    lease_holder_confirmed(&h);
    /* counted from the SEND time: fence deadline = 1000 + 2000 - 750 */
    assert_int_equal(lease_holder_fence_deadline(&h), 2250);
    assert_true(lease_holder_valid(&h, 2249));
    assert_false(lease_holder_valid(&h, 2250));
    assert_true(lease_holder_serving(&h, 1200));
    assert_false(lease_holder_due(&h, &T, 1499));
    assert_true(lease_holder_due(&h, &T, 1500));
    /* a failed attempt stops the 200s at once but not the lease */
    lease_holder_sent(&h, 1500, &T);
    lease_holder_failed(&h);
    assert_false(lease_holder_serving(&h, 1600));
    assert_true(lease_holder_valid(&h, 1600));
    assert_int_equal(lease_holder_remaining(&h, 1600), 650);
    /* a later confirmation moves the deadline; an older one never moves it back */
    lease_holder_sent(&h, 1700, &T);
    lease_holder_confirmed(&h);
    assert_int_equal(lease_holder_fence_deadline(&h), 2950);
    assert_true(lease_holder_serving(&h, 1800));
}

static void test_judge_waits_longer_than_holder_fences(void **state)
{
    (void)state;
    /* whatever the holder's send time, its fence deadline is earlier than the
     * judge's expiry counted from any apply time after the send */
    for (uint64_t send = 0; send < 5000; send += 37)
        for (uint64_t delay = 0; delay < 600; delay += 53) {
            struct lease_holder h;
            lease_holder_reset(&h, 1);
            lease_holder_sent(&h, send, &T);
            lease_holder_confirmed(&h);
            uint64_t fence = lease_holder_fence_deadline(&h);
            uint64_t judged = lease_judged_expiry(send + delay, 0, &T);
            assert_true(judged > fence + T.retry_timeout_ms);
        }
    assert_int_equal(lease_judged_expiry(10000, 0, &T), 10000 + 2000 + 125);
}

/* Issue 15, item 2: lowering ttl at run time never shortens a lease the
 * holder still counts on. The holder keeps the timing each renewal was sent
 * under; every renewal tells the judge that ttl and the one it holds. */
static void test_ttl_lowered_at_run_time(void **state)
{
    (void)state;
    const struct lease_timing slow = {.ttl_ms = 30000, .loop_wait_ms = 10000,
                                      .retry_timeout_ms = 10000};
    const struct lease_timing fast = {.ttl_ms = 2000, .loop_wait_ms = 500, .retry_timeout_ms = 750};
    struct lease_holder h;
    lease_holder_reset(&h, 3);
    lease_holder_sent(&h, 1000, &slow);
    lease_holder_confirmed(&h);
    assert_int_equal(lease_holder_fence_deadline(&h), 1000 + 30000 - 10000);
    /* the configuration is lowered: nothing changes until the next renewal */
    assert_int_equal(lease_holder_held_ttl(&h), 30000);
    /* the judge applied the last renewal at 1010 under ttl 30 and now runs
     * with ttl 2: it still waits out 30 s * 17/16 */
    uint64_t judged = lease_judged_expiry(1010, 30000, &fast);
    assert_int_equal(judged, 1010 + 30000 + 1875);
    assert_true(judged > lease_holder_fence_deadline(&h) + 100);
    /* a renewal under the new timing is sent while the slow lease is held:
     * it carries both; committed but not yet confirmed at the holder (frozen),
     * the judge must cover the held 30 s lease counted from before it */
    lease_holder_sent(&h, 11000, &fast);
    uint32_t carried = lease_holder_held_ttl(&h) > fast.ttl_ms ? lease_holder_held_ttl(&h) : fast.ttl_ms;
    assert_int_equal(carried, 30000);
    assert_true(lease_judged_expiry(11005, carried, &fast) > lease_holder_fence_deadline(&h) + 100);
    /* once confirmed, the holder counts on the short lease only ... */
    lease_holder_confirmed(&h);
    assert_int_equal(lease_holder_fence_deadline(&h), 11000 + 2000 - 750);
    assert_int_equal(lease_holder_held_ttl(&h), 2000);
    /* ... and its next renewal lets the judge use 2 s again */
    lease_holder_sent(&h, 11500, &fast);
    assert_int_equal(lease_judged_expiry(11505, lease_holder_held_ttl(&h), &fast), 11505 + 2000 + 125);
    /* a raised ttl reaches the holder only with a renewal: the judge, already
     * on the longer configuration, covers it from the start */
    lease_holder_confirmed(&h);
    assert_int_equal(lease_holder_fence_deadline(&h), 11500 + 2000 - 750);
    assert_true(lease_judged_expiry(11505, 2000, &slow) > lease_holder_fence_deadline(&h));
    /* a lease restored after a restart keeps the timing it was written with */
    lease_holder_restore(&h, 3, 50000, 30000, 10000);
    assert_int_equal(lease_holder_fence_deadline(&h), 70000);
}

static struct cand_member replica(const char *name, uint64_t recv, uint64_t replay)
{
    return (struct cand_member){.name = name, .failover_priority = 1, .reachable = true,
                                .running = true, .in_recovery = true, .sysid = 42, .timeline = 3,
                                .receive_lsn = recv, .replay_lsn = replay};
}

static void test_candidate_rules(void **state)
{
    (void)state;
    struct cand_rules r = {.sysid = 42, .timeline = 3, .primary_lsn = 10000000, .max_lag = 1048576};
    struct cand_member m[6] = {
        replica("a", 9500000, 9500000),
        replica("b", 9900000, 9000000),   /* most advanced received WAL */
        replica("c", 9990000, 9990000),
        replica("d", 9999999, 9999999),
        replica("e", 9999999, 9999999),
        replica("f", 1, 1),
    };
    m[2].nofailover = true;
    m[3].timeline = 2;
    m[4].reachable = false;
    m[4].error = "connection refused";
    char reasons[6][CAND_REASON_MAX];
    int best = cand_choose(m, 6, &r, reasons);
    assert_int_equal(best, 1);
    assert_string_equal(reasons[1], "");
    assert_non_null(strstr(reasons[2], "nofailover"));
    assert_non_null(strstr(reasons[3], "timeline 2"));
    assert_non_null(strstr(reasons[4], "connection refused"));
    assert_non_null(strstr(reasons[5], "lagging"));
    /* ties: equal WAL, higher failover_priority wins, then name */
    struct cand_member t[3] = {replica("z", 100, 100), replica("y", 100, 100), replica("x", 100, 100)};
    t[0].failover_priority = 5;
    struct cand_rules loose = {.max_lag = 1 << 30};
    assert_int_equal(cand_choose(t, 3, &loose, reasons), 0);
    t[0].failover_priority = 1;
    assert_int_equal(cand_choose(t, 3, &loose, reasons), 2);
    /* a delayed replica only when nothing else qualifies */
    struct cand_member dl[2] = {replica("delayed", 200, 10), replica("fresh", 150, 150)};
    dl[0].delayed = true;
    assert_int_equal(cand_choose(dl, 2, &loose, reasons), 1);
    dl[1].running = false;
    assert_int_equal(cand_choose(dl, 2, &loose, reasons), 0);
    /* synchronous mode: only the sync set, unless the operator accepts loss */
    struct cand_member s[2] = {replica("async", 500, 500), replica("sync", 400, 400)};
    s[1].in_sync_set = true;
    struct cand_rules sr = {.max_lag = 1 << 30, .sync_only = true};
    assert_int_equal(cand_choose(s, 2, &sr, reasons), 1);
    assert_non_null(strstr(reasons[0], "not a synchronous standby"));
    s[1].reachable = false;
    assert_int_equal(cand_choose(s, 2, &sr, reasons), -1);
    sr.ignore_lag = true;
    assert_int_equal(cand_choose(s, 2, &sr, reasons), 0);
    /* witness and a named candidate */
    struct cand_member w[2] = {replica("w", 900, 900), replica("n", 100, 100)};
    w[0].witness = true;
    struct cand_rules named = {.max_lag = 1 << 30, .only = "n"};
    assert_int_equal(cand_choose(w, 2, &named, reasons), 1);
    assert_non_null(strstr(reasons[0], "not the requested candidate"));
}

static void test_sync_choice_and_names(void **state)
{
    (void)state;
    struct sync_standby sb[4] = {
        {.name = "a", .streaming = true, .sync_state = "async", .flush_lsn = 100, .sync_priority = 1, .reporting = true},
        {.name = "b", .streaming = true, .sync_state = "sync", .flush_lsn = 90, .sync_priority = 1, .reporting = true},
        {.name = "c", .streaming = true, .sync_state = "async", .flush_lsn = 100, .sync_priority = 1, .nosync = true, .reporting = true},
        {.name = "d", .streaming = false, .sync_state = "", .flush_lsn = 0, .sync_priority = 9, .reporting = true},
    };
    char out[4][SYNC_NAME_MAX];
    struct sync_choice_in in = {.s = sb, .n = 4, .node_count = 1, .max_lag = -1, .primary_lsn = 100};
    /* the one already reporting sync wins over a more advanced async one */
    assert_int_equal(sync_choose(&in, out, 4), 1);
    assert_string_equal(out[0], "b");
    /* stability: a member of the current set keeps its place */
    sb[0].in_set = true;
    assert_int_equal(sync_choose(&in, out, 4), 1);
    assert_string_equal(out[0], "a");
    sb[0].in_set = false;
    /* lagging past maximum_lag_on_syncnode is not chosen */
    in.max_lag = 5;
    assert_int_equal(sync_choose(&in, out, 4), 1);
    assert_string_equal(out[0], "a");
    /* 0 turns the limit off, as in Patroni ("less or equal of 0 keeps the
     * behaviour backward compatible"), it is not a zero-byte limit */
    in.max_lag = 0;
    assert_int_equal(sync_choose(&in, out, 4), 1);
    assert_string_equal(out[0], "b");
    in.max_lag = 5;
    /* a standby whose pgwarden stopped reporting is not chosen */
    sb[0].reporting = false;
    assert_int_equal(sync_choose(&in, out, 4), 0);
    /* quorum: every eligible one */
    in.max_lag = -1;
    sb[0].reporting = true;
    in.quorum = true;
    assert_int_equal(sync_choose(&in, out, 4), 2);

    char names[256];
    char m2[2][SYNC_NAME_MAX] = {"n-1", "n.2"};
    sync_standby_names(false, 1, m2, 1, false, names, sizeof names);
    assert_string_equal(names, "FIRST 1 (\"n-1\")");
    sync_standby_names(true, 1, m2, 2, false, names, sizeof names);
    assert_string_equal(names, "ANY 1 (\"n-1\",\"n.2\")");
    sync_standby_names(false, 1, m2, 0, false, names, sizeof names);
    assert_string_equal(names, ""); /* nobody, not strict: asynchronous */
    sync_standby_names(false, 1, m2, 0, true, names, sizeof names);
    assert_string_equal(names, "FIRST 1 (\"" SYNC_PLACEHOLDER "\")");
    sync_standby_names(false, 2, m2, 1, true, names, sizeof names);
    assert_string_equal(names, "FIRST 2 (\"n-1\",\"" SYNC_PLACEHOLDER "\")");
}

/* --- watchdog against a recording device --- */
static char wdlog[512];
static int wd_refuse_timeout;
static void rec(const char *s)
{
    strncat(wdlog, s, sizeof wdlog - strlen(wdlog) - 1);
}
static int f_open(const char *p) { (void)p; rec("open;"); return 7; }
static int cur_timeout;
static int f_set(int fd, int s) { (void)fd; char b[32]; snprintf(b, sizeof b, "set%d;", s); rec(b); if (wd_refuse_timeout) return -22; cur_timeout = s; return 0; }
static int f_get(int fd, int *s) { (void)fd; *s = cur_timeout; return 0; }
static int f_keep(int fd) { (void)fd; rec("keep;"); return 0; }
static int f_magic(int fd) { (void)fd; rec("V;"); return 0; }
static void f_close(int fd) { (void)fd; rec("close;"); }
static const struct wd_ops fake = {f_open, f_set, f_get, f_keep, f_magic, f_close};

static void test_watchdog(void **state)
{
    (void)state;
    assert_int_equal(watchdog_timeout_for(2000, -1), 1);
    assert_int_equal(watchdog_timeout_for(30000, 5), 25);
    assert_int_equal(watchdog_timeout_for(2000, 5), 0); /* unusable */
    struct watchdog w;
    char err[256];
    wdlog[0] = '\0';
    watchdog_init(&w, &fake, "/dev/fake");
    assert_int_equal(watchdog_arm(&w, 0, err, sizeof err), PGW_EINVAL);
    assert_int_equal(watchdog_arm(&w, 25, err, sizeof err), 0);
    assert_true(watchdog_armed(&w));
    watchdog_keepalive(&w);
    assert_int_equal(watchdog_arm(&w, 25, err, sizeof err), 0); /* re-arm: keepalive only */
    watchdog_disarm(&w);
    assert_false(watchdog_armed(&w));
    assert_string_equal(wdlog, "open;set25;keep;keep;keep;V;close;");
    /* a device that refuses the timeout is closed with the magic byte */
    wdlog[0] = '\0';
    wd_refuse_timeout = 1;
    assert_int_equal(watchdog_arm(&w, 25, err, sizeof err), PGW_EUNAVAIL);
    assert_non_null(strstr(err, "does not accept"));
    assert_false(watchdog_armed(&w));
    assert_string_equal(wdlog, "open;set25;V;close;");
    wd_refuse_timeout = 0;
}

/* Every goal the replicated state can give this node has a row for the
 * states PostgreSQL is commonly found in (STYLE.md, habit 6). */
bool agent_has_rule(int goal, int local);
static void test_agent_table_covers_assignments(void **state)
{
    (void)state;
    enum { AG_WAIT = 0, AG_BOOTSTRAP, AG_PRIMARY, AG_HANDOVER, AG_REPLICA };
    enum { AL_UNKNOWN = 0, AL_NO_DATA, AL_BAD_DATA, AL_STOPPED, AL_STARTING, AL_PRIMARY, AL_REPLICA, AL_HUNG };
    const int stable[] = {AL_NO_DATA, AL_STOPPED, AL_PRIMARY, AL_REPLICA, AL_HUNG};
    for (size_t i = 0; i < sizeof stable / sizeof stable[0]; i++) {
        assert_true(agent_has_rule(AG_PRIMARY, stable[i]));
        assert_true(agent_has_rule(AG_REPLICA, stable[i]));
        assert_true(agent_has_rule(AG_BOOTSTRAP, stable[i]) || stable[i] == AL_HUNG);
    }
    assert_true(agent_has_rule(AG_HANDOVER, AL_PRIMARY));
    assert_true(agent_has_rule(AG_HANDOVER, AL_STOPPED));
    assert_true(agent_has_rule(AG_WAIT, AL_STOPPED));
    /* while starting, nothing is done: the next observation decides */
    assert_false(agent_has_rule(AG_PRIMARY, AL_STARTING));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_holder_lease),
        cmocka_unit_test(test_judge_waits_longer_than_holder_fences),
        cmocka_unit_test(test_ttl_lowered_at_run_time),
        cmocka_unit_test(test_candidate_rules),
        cmocka_unit_test(test_sync_choice_and_names),
        cmocka_unit_test(test_watchdog),
        cmocka_unit_test(test_agent_table_covers_assignments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
