/* The dynamic configuration's JSON form (GET/PATCH /config), the timing rule,
 * and the small parsers other modules call (sizes, IPv4 addresses). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/cfg.h"

static json_t *parse_json(const char *text)
{
    json_error_t je;
    json_t *j = json_loads(text, 0, &je);
    if (j == NULL)
        fail_msg("bad test JSON %s: %s", text, je.text);
    return j;
}

static char *dump(const json_t *j)
{
    char *s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
    assert_non_null(s);
    return s;
}

static void test_defaults_to_json(void **state)
{
    (void)state;
    struct cfg_dcs d;
    cfg_dcs_defaults(&d);
    json_t *j = cfg_dcs_to_json(&d);
    assert_non_null(j);
    char *s = json_dumps(j, JSON_COMPACT);
    /* Patroni's names and seconds as numbers, in the table's order */
    assert_string_equal(s,
        "{\"ttl\":2,\"loop_wait\":0.5,\"retry_timeout\":0.75,\"maximum_lag_on_failover\":1048576,"
        "\"maximum_lag_on_syncnode\":-1,\"primary_start_timeout\":300,\"primary_stop_timeout\":0,"
        "\"synchronous_mode\":false,\"synchronous_mode_strict\":false,"
        "\"synchronous_node_count\":1,\"member_slots_ttl\":1800,\"check_timeline\":false,"
        "\"postgresql\":{\"use_pg_rewind\":true,\"use_slots\":true,\"parameters\":{},"
        "\"pg_hba\":[]}}");
    free(s);
    json_decref(j);
    cfg_dcs_free(&d);
}

static void test_round_trip(void **state)
{
    (void)state;
    const char *in =
        "{\"ttl\":10,\"loop_wait\":1.25,\"retry_timeout\":2,\"maximum_lag_on_failover\":2097152,"
        "\"maximum_lag_on_syncnode\":65536,\"primary_start_timeout\":0,"
        "\"primary_stop_timeout\":12.5,\"synchronous_mode\":\"quorum\","
        "\"synchronous_mode_strict\":true,\"synchronous_node_count\":2,"
        "\"member_slots_ttl\":60,\"check_timeline\":true,"
        "\"postgresql\":{\"use_pg_rewind\":false,\"use_slots\":false,"
        "\"parameters\":{\"max_connections\":\"200\",\"wal_log_hints\":\"on\"},"
        "\"pg_hba\":[\"host all all 0.0.0.0/0 md5\",\"local all all peer\"]}}";
    json_t *j = parse_json(in);
    struct cfg_dcs d;
    struct cfg_error e;
    if (cfg_dcs_from_json(j, &d, &e) != 0)
        fail_msg("%s", e.msg);
    assert_int_equal(d.ttl_ms, 10000);
    assert_int_equal(d.loop_wait_ms, 1250);
    assert_int_equal(d.retry_timeout_ms, 2000);
    assert_int_equal(d.maximum_lag_on_failover, 2097152);
    assert_int_equal(d.maximum_lag_on_syncnode, 65536);
    assert_int_equal(d.primary_start_timeout_ms, 0);
    assert_int_equal(d.primary_stop_timeout_ms, 12500);
    assert_int_equal(d.synchronous_mode, CFG_SYNC_QUORUM);
    assert_true(d.synchronous_mode_strict);
    assert_int_equal(d.synchronous_node_count, 2);
    assert_int_equal(d.member_slots_ttl_ms, 60000);
    assert_true(d.check_timeline);
    assert_false(d.use_pg_rewind);
    assert_false(d.use_slots);
    assert_int_equal(d.pg_parameters.n, 2);
    assert_string_equal(d.pg_parameters.items[0].key, "max_connections");
    assert_string_equal(d.pg_parameters.items[0].value, "200");
    assert_int_equal(d.pg_hba.n, 2);

    json_t *back = cfg_dcs_to_json(&d);
    char *a = dump(j), *b = dump(back);
    assert_string_equal(a, b);
    free(a);
    free(b);

    /* copy is deep */
    struct cfg_dcs c;
    assert_int_equal(cfg_dcs_copy(&c, &d), 0);
    cfg_dcs_free(&d);
    json_t *again = cfg_dcs_to_json(&c);
    a = dump(again);
    b = dump(back);
    assert_string_equal(a, b);
    free(a);
    free(b);
    json_decref(again);
    json_decref(back);
    json_decref(j);
    cfg_dcs_free(&c);
    assert_null(c.pg_parameters.items);
}

static void test_from_json_accepts(void **state)
{
    (void)state;
    struct cfg_dcs d;
    struct cfg_error e;
    /* missing keys take defaults; legacy names; keys of later features ignored;
     * YAML-style values (on, strings of numbers, booleans as parameters) */
    json_t *j = parse_json(
        "{\"ttl\":3,\"loop_wait\":1,\"master_start_timeout\":30,\"master_stop_timeout\":5,"
        "\"pause\":true,\"standby_cluster\":{\"host\":\"x\"},\"slots\":{\"s\":{}},"
        "\"ignore_slots\":[],\"failsafe_mode\":true,\"synchronous_mode\":true,"
        "\"postgresql\":{\"parameters\":{\"hot_standby_feedback\":true,\"work_mem\":4096}}}");
    if (cfg_dcs_from_json(j, &d, &e) != 0)
        fail_msg("%s", e.msg);
    assert_int_equal(d.ttl_ms, 3000);
    assert_int_equal(d.loop_wait_ms, 1000);
    assert_int_equal(d.retry_timeout_ms, 750);
    assert_int_equal(d.primary_start_timeout_ms, 30000);
    assert_int_equal(d.primary_stop_timeout_ms, 5000);
    assert_int_equal(d.synchronous_mode, CFG_SYNC_ON);
    assert_true(d.use_pg_rewind);
    assert_string_equal(d.pg_parameters.items[0].value, "on");
    assert_string_equal(d.pg_parameters.items[1].value, "4096");
    cfg_dcs_free(&d);
    json_decref(j);

    j = parse_json("{\"synchronous_mode\":\"off\",\"ttl\":\"30\"}");
    if (cfg_dcs_from_json(j, &d, &e) != 0)
        fail_msg("%s", e.msg);
    assert_int_equal(d.synchronous_mode, CFG_SYNC_OFF);
    assert_int_equal(d.ttl_ms, 30000);
    cfg_dcs_free(&d);
    json_decref(j);

    j = parse_json("{}");
    assert_int_equal(cfg_dcs_from_json(j, &d, &e), 0);
    assert_int_equal(d.ttl_ms, 2000);
    cfg_dcs_free(&d);
    json_decref(j);
}

static void expect_json_err(const char *text, const char *msg)
{
    json_t *j = parse_json(text);
    struct cfg_dcs d;
    memset(&d, 0x5A, sizeof d); /* untouched on failure */
    struct cfg_error e;
    assert_int_equal(cfg_dcs_from_json(j, &d, &e), PGW_EINVAL);
    assert_string_equal(e.msg, msg);
    assert_int_equal(e.line, 0);
    assert_int_equal(d.ttl_ms, 0x5A5A5A5A);
    json_decref(j);
}

static void test_from_json_errors(void **state)
{
    (void)state;
    expect_json_err("{\"foo\":1}", "foo: unknown key");
    expect_json_err("{\"postgresql\":{\"use_slots\":true,\"recovery_conf\":{}}}",
                    "postgresql.recovery_conf: unknown key");
    expect_json_err("{\"ttl\":\"x\"}", "ttl: expected a number of seconds, got \"x\"");
    expect_json_err("{\"ttl\":[1]}", "ttl: expected a number of seconds, got a list");
    expect_json_err("{\"ttl\":-5}", "ttl: expected a number of seconds >= 0, got \"-5\"");
    expect_json_err("{\"ttl\":0.5}", "ttl: must be at least 1 s, got \"0.5\"");
    expect_json_err("{\"loop_wait\":true}", "loop_wait: expected a number of seconds, got \"true\"");
    expect_json_err("{\"postgresql\":{\"use_slots\":5}}",
                    "postgresql.use_slots: expected true or false, got \"5\"");
    expect_json_err("{\"postgresql\":[]}", "postgresql: expected a mapping, got a list");
    expect_json_err("{\"postgresql\":{\"parameters\":{\"work_mem\":{\"a\":1}}}}",
                    "postgresql.parameters.work_mem: expected a string, number or boolean, got a "
                    "mapping");
    expect_json_err("{\"postgresql\":{\"pg_hba\":[\"ok\",3,null]}}",
                    "postgresql.pg_hba[2]: expected a string, got nothing");
    expect_json_err("{\"synchronous_mode\":\"sometimes\"}",
                    "synchronous_mode: expected off, on or quorum, got \"sometimes\"");
    expect_json_err("{\"maximum_lag_on_failover\":-1}",
                    "maximum_lag_on_failover: expected a size in bytes (or with kB, MB, GB, TB), "
                    "got \"-1\"");
    expect_json_err("{\"primary_start_timeout\":1,\"master_start_timeout\":2}",
                    "master_start_timeout: set twice: also as primary_start_timeout");
    expect_json_err("{\"ttl\":3,\"loop_wait\":1,\"retry_timeout\":1.5}",
                    "timing rule loop_wait + 2*retry_timeout <= ttl is broken: 1 + 2*1.5 = 4 > 3");
    expect_json_err("[1]", "expected a JSON object with the dynamic configuration");
}

/* standby_cluster: absent from /config while off; only the keys set while on;
 * removing it (merge patch null) turns it off. */
static void test_standby_cluster(void **state)
{
    (void)state;
    struct cfg_dcs d;
    struct cfg_error e;
    json_t *in = parse_json("{\"standby_cluster\":{\"host\":\"10.1.2.3\",\"port\":5433,"
                            "\"primary_slot_name\":\"dr\",\"recovery_min_apply_delay\":\"5min\"}}");
    assert_int_equal(cfg_dcs_from_json(in, &d, &e), 0);
    json_decref(in);
    assert_true(cfg_standby_enabled(&d));
    assert_string_equal(d.standby.host, "10.1.2.3");
    assert_int_equal(d.standby.port, 5433);
    assert_string_equal(d.standby.primary_slot_name, "dr");
    assert_null(d.standby.restore_command);
    json_t *out = cfg_dcs_to_json(&d);
    char *s = dump(json_object_get(out, "standby_cluster"));
    assert_string_equal(s, "{\"host\":\"10.1.2.3\",\"port\":5433,\"primary_slot_name\":\"dr\","
                           "\"recovery_min_apply_delay\":\"5min\"}");
    free(s);
    json_decref(out);
    cfg_dcs_free(&d);

    in = parse_json("{\"standby_cluster\":{\"restore_command\":\"cp /a/%f %p\"}}");
    assert_int_equal(cfg_dcs_from_json(in, &d, &e), 0);
    json_decref(in);
    assert_true(cfg_standby_enabled(&d));
    cfg_dcs_free(&d);

    cfg_dcs_defaults(&d);
    assert_false(cfg_standby_enabled(&d));
    out = cfg_dcs_to_json(&d);
    assert_null(json_object_get(out, "standby_cluster"));
    json_decref(out);
    cfg_dcs_free(&d);

    expect_json_err("{\"standby_cluster\":{\"port\":70000,\"host\":\"h\"}}",
                    "standby_cluster.port: must be at most 65535, got \"70000\"");
    expect_json_err("{\"standby_cluster\":{\"hots\":\"h\"}}",
                    "standby_cluster.hots: unknown key");
}

static void test_check_timing(void **state)
{
    (void)state;
    struct cfg_dcs d;
    struct cfg_error e;
    cfg_dcs_defaults(&d);
    assert_int_equal(cfg_dcs_check_timing(&d, &e), 0);
    d.ttl_ms = 500;
    assert_int_equal(cfg_dcs_check_timing(&d, &e), PGW_EINVAL);
    assert_string_equal(e.msg, "ttl: must be at least 1 s, got 0.5");
    d.ttl_ms = 3600001;
    assert_int_equal(cfg_dcs_check_timing(&d, &e), PGW_EINVAL);
    assert_string_equal(e.msg, "ttl: must be at most 3600 s, got 3600.001");
    d.ttl_ms = 3000;
    d.loop_wait_ms = 50;
    assert_int_equal(cfg_dcs_check_timing(&d, &e), PGW_EINVAL);
    assert_string_equal(e.msg, "loop_wait: must be at least 0.1 s, got 0.05");
    d.loop_wait_ms = 500;
    d.retry_timeout_ms = 199;
    assert_int_equal(cfg_dcs_check_timing(&d, &e), PGW_EINVAL);
    assert_string_equal(e.msg, "retry_timeout: must be at least 0.2 s, got 0.199");
    d.retry_timeout_ms = 2000;
    assert_int_equal(cfg_dcs_check_timing(&d, &e), PGW_EINVAL);
    assert_string_equal(e.msg,
                        "timing rule loop_wait + 2*retry_timeout <= ttl is broken: 0.5 + 2*2 = 4.5 > 3");
    d.retry_timeout_ms = 1250; /* 0.5 + 2.5 = 3: on the limit */
    assert_int_equal(cfg_dcs_check_timing(&d, &e), 0);
    d.synchronous_node_count = 0;
    assert_int_equal(cfg_dcs_check_timing(&d, &e), PGW_EINVAL);
    assert_string_equal(e.msg, "synchronous_node_count: must be at least 1, got 0");
    cfg_dcs_free(&d);
}

static void test_parse_size(void **state)
{
    (void)state;
    const struct {
        const char *in;
        uint64_t out;
    } good[] = {
        {"0", 0}, {"1024", 1024}, {"1kB", 1024}, {"16 kB", 16384}, {"100MB", 100ull << 20},
        {"1GB", 1ull << 30}, {"2TB", 2ull << 40}, {"7B", 7},
        {"18446744073709551615", UINT64_MAX}, {"16777215TB", 16777215ull << 40},
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        uint64_t v = 0;
        if (cfg_parse_size(good[i].in, &v) != 0)
            fail_msg("\"%s\" refused", good[i].in);
        assert_int_equal(v, good[i].out);
    }
    const char *bad[] = {"", "-1", "1.5MB", "1mb", "1KB", "abc", "1 PB", "16777216TB",
                         "18446744073709551616", " 1", "1MB ", "0x10", "+5"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint64_t v = 42;
        if (cfg_parse_size(bad[i], &v) == 0)
            fail_msg("\"%s\" accepted as %llu", bad[i], (unsigned long long)v);
        assert_int_equal(v, 42);
    }
    uint64_t v;
    assert_int_equal(cfg_parse_size(NULL, &v), PGW_EINVAL);
}

static void test_parse_ipv4_addr(void **state)
{
    (void)state;
    char host[16];
    uint16_t port = 0;
    assert_int_equal(cfg_parse_ipv4_addr("10.0.0.1:5010", host, sizeof host, &port), 0);
    assert_string_equal(host, "10.0.0.1");
    assert_int_equal(port, 5010);
    assert_int_equal(cfg_parse_ipv4_addr("255.255.255.255:65535", host, sizeof host, &port), 0);
    assert_int_equal(port, 65535);
    assert_int_equal(cfg_parse_ipv4_addr("1.2.3.4:1", NULL, 0, NULL), 0);
    const char *bad[] = {"10.0.0.1", "10.0.0.1:", "10.0.0.1:0", "10.0.0.1:65536",
                         "10.0.0.1:-1", "10.0.0.1:50x", "10.0.0:5010", "10.0.0.1.5:5010",
                         "256.0.0.1:5010", "010.0.0.1:5010", "host:5010", "[::1]:5010",
                         "::1:5010", "0.0.0.0:5010", ":5010", "", "10..0.1:5010"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (cfg_parse_ipv4_addr(bad[i], host, sizeof host, &port) == 0)
            fail_msg("\"%s\" accepted", bad[i]);
    }
    char tiny[4];
    assert_int_equal(cfg_parse_ipv4_addr("10.0.0.1:5010", tiny, sizeof tiny, &port), PGW_EINVAL);
    assert_int_equal(cfg_parse_ipv4_addr(NULL, host, sizeof host, &port), PGW_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_to_json),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_from_json_accepts),
        cmocka_unit_test(test_from_json_errors),
        cmocka_unit_test(test_standby_cluster),
        cmocka_unit_test(test_check_timing),
        cmocka_unit_test(test_parse_size),
        cmocka_unit_test(test_parse_ipv4_addr),
    };
    return cmocka_run_group_tests_name("cfg_dcs", tests, NULL, NULL);
}
