/* api/probe_rules: the synchronous and quorum endpoints, the standby kind,
 * patroni_postgres_state and patroni_dcs_last_seen, against Patroni's rules
 * (patroni/api.py: do_GET, get_postgresql_status, do_GET_metrics). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "api/probe_rules.h"

static void test_standby_kind(void **state)
{
    (void)state;
    /* the mode decides which flag; off means neither, whatever the set says */
    assert_int_equal(api_standby_kind(CFG_SYNC_ON, true, true), API_STANDBY_SYNC);
    assert_int_equal(api_standby_kind(CFG_SYNC_QUORUM, true, true), API_STANDBY_QUORUM);
    assert_int_equal(api_standby_kind(CFG_SYNC_OFF, true, true), API_STANDBY_ASYNC);
    assert_int_equal(api_standby_kind(CFG_SYNC_QUORUM, false, true), API_STANDBY_ASYNC);
    /* only a replica is flagged (Patroni: role == replica) */
    assert_int_equal(api_standby_kind(CFG_SYNC_QUORUM, true, false), API_STANDBY_ASYNC);
}

static bool decide(enum api_probe_path path, bool primary, bool standby_leader, bool replica_ok,
                   enum api_standby_kind kind)
{
    struct api_probe_facts f = {primary, standby_leader, replica_ok, kind};
    return api_probe_decide(path, &f);
}

static void test_quorum_paths(void **state)
{
    (void)state;
    /* a healthy quorum standby */
    assert_true(decide(API_PROBE_QUORUM, false, false, true, API_STANDBY_QUORUM));
    assert_true(decide(API_PROBE_RO_QUORUM, false, false, true, API_STANDBY_QUORUM));
    /* ... is neither synchronous nor asynchronous for Patroni */
    assert_false(decide(API_PROBE_SYNC, false, false, true, API_STANDBY_QUORUM));
    assert_false(decide(API_PROBE_RO_SYNC, false, false, true, API_STANDBY_QUORUM));
    assert_false(decide(API_PROBE_ASYNC, false, false, true, API_STANDBY_QUORUM));
    /* lagging, noloadbalance, a tag mismatch: the replica conditions fail */
    assert_false(decide(API_PROBE_QUORUM, false, false, false, API_STANDBY_QUORUM));
    assert_false(decide(API_PROBE_RO_QUORUM, false, false, false, API_STANDBY_QUORUM));
    /* the primary and the standby leader answer the read-only ones only */
    assert_false(decide(API_PROBE_QUORUM, true, false, false, API_STANDBY_ASYNC));
    assert_true(decide(API_PROBE_RO_QUORUM, true, false, false, API_STANDBY_ASYNC));
    assert_true(decide(API_PROBE_RO_QUORUM, false, true, false, API_STANDBY_ASYNC));
    assert_true(decide(API_PROBE_RO_SYNC, false, true, false, API_STANDBY_ASYNC));
    /* an asynchronous replica */
    assert_false(decide(API_PROBE_QUORUM, false, false, true, API_STANDBY_ASYNC));
    assert_false(decide(API_PROBE_RO_QUORUM, false, false, true, API_STANDBY_ASYNC));
    assert_true(decide(API_PROBE_ASYNC, false, false, true, API_STANDBY_ASYNC));
}

static void test_sync_paths(void **state)
{
    (void)state;
    assert_true(decide(API_PROBE_SYNC, false, false, true, API_STANDBY_SYNC));
    assert_true(decide(API_PROBE_RO_SYNC, false, false, true, API_STANDBY_SYNC));
    assert_false(decide(API_PROBE_QUORUM, false, false, true, API_STANDBY_SYNC));
    assert_false(decide(API_PROBE_RO_QUORUM, false, false, true, API_STANDBY_SYNC));
    assert_false(decide(API_PROBE_ASYNC, false, false, true, API_STANDBY_SYNC));
    assert_false(decide(API_PROBE_SYNC, false, false, false, API_STANDBY_SYNC));
    assert_true(decide(API_PROBE_RO_SYNC, true, false, false, API_STANDBY_ASYNC));
}

static void test_pg_state_index(void **state)
{
    (void)state;
    /* Patroni's fixed numbers */
    assert_int_equal(api_pg_state_index(true, "initializing new cluster"), 0);
    assert_int_equal(api_pg_state_index(true, "creating replica"), 4);
    assert_int_equal(api_pg_state_index(true, "running"), 5);
    assert_int_equal(api_pg_state_index(true, "starting"), 6);
    assert_int_equal(api_pg_state_index(true, "start failed"), 8);
    assert_int_equal(api_pg_state_index(true, "restarting"), 9);
    assert_int_equal(api_pg_state_index(true, "stopping (fenced)"), 11);
    assert_int_equal(api_pg_state_index(true, "stopped"), 12);
    /* no Patroni number: -1, as Patroni gives for 'unknown' */
    assert_int_equal(api_pg_state_index(true, "unknown"), -1);
    assert_int_equal(api_pg_state_index(true, "needs reinit"), -1);
    assert_int_equal(api_pg_state_index(true, "hung"), -1);
    assert_int_equal(api_pg_state_index(true, NULL), -1);
    /* a witness has no PostgreSQL, whatever its status says */
    assert_int_equal(api_pg_state_index(false, "running"), -1);
}

static void test_dcs_last_seen(void **state)
{
    (void)state;
    /* never: 0, as Patroni before its first successful DCS read */
    assert_int_equal(api_dcs_last_seen_s(1700000000000ull, 5000, 0), 0);
    /* 2.5 s ago on the monotonic clock */
    assert_int_equal(api_dcs_last_seen_s(1700000000000ull, 10000, 7500), 1699999997ull);
    /* just now */
    assert_int_equal(api_dcs_last_seen_s(1700000000999ull, 10000, 10000), 1700000000ull);
    /* a time ahead of now (not on the same clock): no claim */
    assert_int_equal(api_dcs_last_seen_s(1700000000000ull, 10000, 20000), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_standby_kind),
        cmocka_unit_test(test_quorum_paths),
        cmocka_unit_test(test_sync_paths),
        cmocka_unit_test(test_pg_state_index),
        cmocka_unit_test(test_dcs_last_seen),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
