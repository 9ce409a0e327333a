/* common/cidr: the allowlist's addresses and ranges, for the configuration
 * check and the API's match alike. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "common/cidr.h"

static void test_valid(void **state)
{
    (void)state;
    assert_true(cidr_valid("10.0.0.0/8"));
    assert_true(cidr_valid("192.168.1.7"));
    assert_true(cidr_valid("::1"));
    assert_true(cidr_valid("fd00::/8"));
    assert_true(cidr_valid("0.0.0.0/0"));
    assert_false(cidr_valid("db1.example.com"));
    assert_false(cidr_valid("10.0.0.0/33"));
    assert_false(cidr_valid("fd00::/129"));
    assert_false(cidr_valid("10.0.0.0/"));
    assert_false(cidr_valid("10.0.0.0/8x"));
    assert_false(cidr_valid(""));
}

static void test_match(void **state)
{
    (void)state;
    assert_true(cidr_match("10.0.0.0/8", "10.200.3.4"));
    assert_false(cidr_match("10.0.0.0/8", "11.0.0.1"));
    assert_true(cidr_match("192.168.1.7", "192.168.1.7"));
    assert_false(cidr_match("192.168.1.7", "192.168.1.8"));
    assert_true(cidr_match("10.1.2.0/23", "10.1.3.255"));
    assert_false(cidr_match("10.1.2.0/23", "10.1.4.0"));
    assert_true(cidr_match("fd00::/8", "fd12::5"));
    assert_false(cidr_match("fd00::/8", "fe80::1"));
    assert_true(cidr_match("0.0.0.0/0", "203.0.113.9"));
    assert_false(cidr_match("10.0.0.0/8", "::1")); /* another family */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid),
        cmocka_unit_test(test_match),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
