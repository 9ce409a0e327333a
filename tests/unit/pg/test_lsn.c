/* LSN parse / format / diff, including malformed input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "pg/lsn.h"

static void test_parse_ok(void **state)
{
    (void)state;
    pg_lsn l;
    assert_true(pg_lsn_parse("16/B374D848", &l));
    assert_int_equal(l, ((uint64_t)0x16 << 32) | 0xB374D848u);
    assert_true(pg_lsn_parse("0/0", &l));
    assert_int_equal(l, 0);
    assert_true(pg_lsn_parse("FFFFFFFF/FFFFFFFF", &l));
    assert_int_equal(l, UINT64_MAX);
    assert_true(pg_lsn_parse("0/3000148", &l));
    assert_int_equal(l, 0x3000148u);
    assert_true(pg_lsn_parse("a/bc", &l));
    assert_int_equal(l, ((uint64_t)0xa << 32) | 0xbc);
}

static void test_parse_bad(void **state)
{
    (void)state;
    const char *bad[] = {"", "/", "0/", "/0", "0//0", "0/0/0", "G/0", "0/1G", "123456789/0",
                         "0/123456789", " 0/1", "0/1 ", "0x1/2", "-1/0", "1/-0", "12345"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        pg_lsn l = 42;
        assert_false(pg_lsn_parse(bad[i], &l));
        assert_int_equal(l, 42); /* untouched on failure */
    }
    pg_lsn l;
    assert_false(pg_lsn_parse(NULL, &l));
}

static void test_format_roundtrip(void **state)
{
    (void)state;
    char buf[18];
    pg_lsn_format(((uint64_t)0x16 << 32) | 0xB374D848u, buf, sizeof buf);
    assert_string_equal(buf, "16/B374D848");
    pg_lsn_format(0, buf, sizeof buf);
    assert_string_equal(buf, "0/0");
    pg_lsn_format(UINT64_MAX, buf, sizeof buf);
    assert_string_equal(buf, "FFFFFFFF/FFFFFFFF");
    uint64_t vals[] = {1, 0x100000000ull, 0x3000148, 0xdeadbeefcafeull};
    for (size_t i = 0; i < 4; i++) {
        pg_lsn back;
        pg_lsn_format(vals[i], buf, sizeof buf);
        assert_true(pg_lsn_parse(buf, &back));
        assert_int_equal(back, vals[i]);
    }
    /* a short buffer is truncated, never overrun */
    char small[4] = "xxx";
    pg_lsn_format(UINT64_MAX, small, sizeof small);
    assert_int_equal(strlen(small), 3);
}

static void test_diff(void **state)
{
    (void)state;
    pg_lsn a, b;
    assert_true(pg_lsn_parse("1/0", &a));
    assert_true(pg_lsn_parse("0/FFFFFFFF", &b));
    assert_int_equal(pg_lsn_diff(a, b), 1);
    assert_int_equal(pg_lsn_diff(b, a), 0); /* never negative */
    assert_int_equal(pg_lsn_diff(a, a), 0);
    assert_int_equal(pg_lsn_diff(0x3000148, 0x3000000), 0x148);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_ok),
        cmocka_unit_test(test_parse_bad),
        cmocka_unit_test(test_format_roundtrip),
        cmocka_unit_test(test_diff),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
