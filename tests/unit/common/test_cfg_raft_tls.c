/* raft.certfile / raft.keyfile / raft.cafile: parsed, all three or none
 * (the message names the missing key and points at a given one), and
 * shown in cfg_diff when they change. The files themselves are checked
 * when the daemon starts (raft/tls_link.c; tests/unit/raft/test_tls_link.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/cfg.h"

#define BASE                                                                                     \
    "scope: demo\n"                                                                              \
    "name: node1\n"                                                                              \
    "raft:\n"                                                                                    \
    "  self_addr: 127.0.0.1:5010\n"                                                              \
    "  partner_addrs: [127.0.0.1:5011, 127.0.0.1:5012]\n"                                        \
    "  data_dir: /tmp/raft1\n"

static int load(const char *yaml, struct cfg *c, struct cfg_error *e)
{
    return cfg_load_buffer("t.yml", yaml, strlen(yaml), c, e, NULL);
}

static void test_none(void **state)
{
    (void)state;
    struct cfg c;
    struct cfg_error e;
    assert_int_equal(load(BASE, &c, &e), 0);
    assert_null(c.raft.certfile);
    assert_null(c.raft.keyfile);
    assert_null(c.raft.cafile);
    cfg_free(&c);
}

static void test_all_three(void **state)
{
    (void)state;
    struct cfg c;
    struct cfg_error e;
    const char *y = BASE "  certfile: /etc/pgw/n1.crt\n"
                         "  keyfile: /etc/pgw/n1.key\n"
                         "  cafile: /etc/pgw/ca.crt\n";
    if (load(y, &c, &e) != 0)
        fail_msg("%s", e.msg);
    assert_string_equal(c.raft.certfile, "/etc/pgw/n1.crt");
    assert_string_equal(c.raft.keyfile, "/etc/pgw/n1.key");
    assert_string_equal(c.raft.cafile, "/etc/pgw/ca.crt");
    cfg_free(&c);
}

static void expect_missing(const char *y, const char *missing, const char *at_key, int line)
{
    struct cfg c;
    struct cfg_error e;
    assert_int_equal(load(y, &c, &e), PGW_EINVAL);
    char want[64];
    snprintf(want, sizeof want, "%s is missing", missing);
    if (strstr(e.msg, want) == NULL || strstr(e.msg, at_key) == NULL)
        fail_msg("message \"%s\" should name %s and point at %s", e.msg, missing, at_key);
    assert_int_equal(e.line, line);
}

static void test_partial_refused(void **state)
{
    (void)state;
    expect_missing(BASE "  certfile: /a.crt\n  keyfile: /a.key\n", "raft.cafile", "raft.certfile",
                   7);
    expect_missing(BASE "  certfile: /a.crt\n  cafile: /ca.crt\n", "raft.keyfile", "raft.certfile",
                   7);
    expect_missing(BASE "  keyfile: /a.key\n  cafile: /ca.crt\n", "raft.certfile", "raft.keyfile",
                   7);
    expect_missing(BASE "  cafile: /ca.crt\n", "raft.certfile", "raft.cafile", 7);
}

static void count_line(const char *line, void *ctx)
{
    if (strstr(line, "raft.certfile") != NULL)
        (*(int *)ctx)++;
}

static void test_diff(void **state)
{
    (void)state;
    struct cfg a, b;
    struct cfg_error e;
    const char *ya = BASE "  certfile: /a.crt\n  keyfile: /a.key\n  cafile: /ca.crt\n";
    const char *yb = BASE "  certfile: /b.crt\n  keyfile: /a.key\n  cafile: /ca.crt\n";
    assert_int_equal(load(ya, &a, &e), 0);
    assert_int_equal(load(yb, &b, &e), 0);
    int n = 0;
    assert_int_equal(cfg_diff(&a, &b, count_line, &n), 1);
    assert_int_equal(n, 1);
    cfg_free(&a);
    cfg_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_none),
        cmocka_unit_test(test_all_three),
        cmocka_unit_test(test_partial_refused),
        cmocka_unit_test(test_diff),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
