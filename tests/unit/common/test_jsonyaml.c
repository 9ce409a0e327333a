/* JSON <-> YAML, scalar resolution, merge patches, key.path=value and the
 * unified diff used by `pgwarden ctl edit-config`. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/jsonyaml.h"

static json_t *J(const char *text)
{
    json_error_t je;
    json_t *j = json_loads(text, JSON_DECODE_ANY, &je);
    if (j == NULL)
        fail_msg("bad test JSON %s: %s", text, je.text);
    return j;
}

static char *dump(const json_t *j)
{
    char *s = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
    assert_non_null(s);
    return s;
}

static void assert_json(const json_t *got, const char *want)
{
    json_t *w = J(want);
    if (!json_equal(got, w)) {
        char *g = dump(got);
        fail_msg("got %s, want %s", g, want);
    }
    json_decref(w);
}

static void test_scalars(void **state)
{
    (void)state;
    static const struct {
        const char *in, *want;
    } cases[] = {
        {"", "null"},          {"~", "null"},         {"NULL", "null"},
        {"true", "true"},      {"On", "true"},        {"yes", "true"},
        {"off", "false"},      {"FALSE", "false"},    {"42", "42"},
        {"-7", "-7"},          {"+3", "3"},           {"1_000", "1000"},
        {"0x1F", "31"},        {"0.25", "0.25"},      {"-1.5e3", "-1500.0"},
        {".5", "0.5"},         {"1e3", "1000.0"},     {"007", "\"007\""},
        {"16MB", "\"16MB\""},  {"abc", "\"abc\""},    {"1.2.3", "\"1.2.3\""},
        {"y", "\"y\""},        {"99999999999999999999", "\"99999999999999999999\""},
        {"_1", "\"_1\""},      {"0x", "\"0x\""},      {"e5", "\"e5\""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_t *j = jy_scalar(cases[i].in);
        assert_non_null(j);
        json_t *w = J(cases[i].want);
        if (!json_equal(j, w)) {
            char *g = dump(j);
            fail_msg("jy_scalar(\"%s\") = %s, want %s", cases[i].in, g, cases[i].want);
        }
        json_decref(w);
        json_decref(j);
    }
}

static void test_to_yaml(void **state)
{
    (void)state;
    json_t *j = J("{\"ttl\": 30, \"loop_wait\": 0.25, \"pause\": true, \"x\": null,"
                  " \"postgresql\": {\"parameters\": {\"wal_level\": \"replica\", \"fsync\": \"on\","
                  " \"port\": \"5432\", \"empty\": \"\"}, \"pg_hba\": [\"host all all 0.0.0.0/0 md5\"]},"
                  " \"list\": [], \"obj\": {}, \"whole\": 2.0}");
    char *y = jy_to_yaml(j);
    assert_non_null(y);
    const char *want = "ttl: 30\n"
                       "loop_wait: 0.25\n"
                       "pause: true\n"
                       "x: null\n"
                       "postgresql:\n"
                       "  parameters:\n"
                       "    wal_level: replica\n"
                       "    fsync: 'on'\n"
                       "    port: '5432'\n"
                       "    empty: ''\n"
                       "  pg_hba:\n"
                       "  - host all all 0.0.0.0/0 md5\n"
                       "list: []\n"
                       "obj: {}\n"
                       "whole: 2.0\n";
    assert_string_equal(y, want);
    json_t *back = jy_from_yaml(y, strlen(y), NULL, 0);
    assert_non_null(back);
    assert_true(json_equal(back, j));
    json_decref(back);
    free(y);
    json_decref(j);
}

static void test_round_trip_tricky_strings(void **state)
{
    (void)state;
    json_t *j = J("{\"a\": \"- dash\", \"b\": \"key: value\", \"c\": \"# not a comment\","
                  " \"d\": \"two\\nlines\", \"e\": \"caf\\u00e9\", \"f\": \"  padded \","
                  " \"g\": \"'quote'\", \"h\": \"1e3\", \"i\": \"null\", \"on\": \"k\","
                  " \"j\": [1, \"2\", [true, \"true\"], {\"k\": -0.5}], \"big\": 1e+20,"
                  " \"tab\": \"a\\tb\", \"star\": \"*x\", \"amp\": \"&y\"}");
    char *y = jy_to_yaml(j);
    assert_non_null(y);
    char err[256] = "";
    json_t *back = jy_from_yaml(y, strlen(y), err, sizeof err);
    if (back == NULL)
        fail_msg("re-reading failed: %s\n%s", err, y);
    if (!json_equal(back, j)) {
        char *g = dump(back);
        fail_msg("round trip changed the document:\n%s\n-> %s", y, g);
    }
    json_decref(back);
    free(y);
    json_decref(j);
}

static void test_from_yaml(void **state)
{
    (void)state;
    const char *text = "# comment\n"
                       "ttl: 30\n"
                       "name: \"42\"\n"
                       "tag: !!str 7\n"
                       "flow: {a: 1, b: [x, 'y']}\n"
                       "block:\n"
                       "  - on\n"
                       "  - ~\n"
                       "multi: |\n"
                       "  l1\n"
                       "  l2\n";
    char err[256] = "";
    json_t *j = jy_from_yaml(text, strlen(text), err, sizeof err);
    if (j == NULL)
        fail_msg("%s", err);
    assert_json(j, "{\"ttl\": 30, \"name\": \"42\", \"tag\": \"7\", \"flow\": {\"a\": 1, \"b\": [\"x\", \"y\"]},"
                   " \"block\": [true, null], \"multi\": \"l1\\nl2\\n\"}");
    json_decref(j);

    j = jy_from_yaml("", 0, err, sizeof err);
    assert_non_null(j);
    assert_true(json_is_null(j));
    json_decref(j);
    j = jy_from_yaml("# only a comment\n", 17, err, sizeof err);
    assert_non_null(j);
    assert_true(json_is_null(j));
    json_decref(j);
}

static void expect_error(const char *text, const char *fragment)
{
    char err[256] = "";
    json_t *j = jy_from_yaml(text, strlen(text), err, sizeof err);
    if (j != NULL) {
        char *g = dump(j);
        fail_msg("accepted %s as %s", text, g);
    }
    if (strstr(err, fragment) == NULL)
        fail_msg("error for %s is \"%s\", expected it to contain \"%s\"", text, err, fragment);
}

static void test_from_yaml_errors(void **state)
{
    (void)state;
    expect_error("a: 1\na: 2\n", "line 2, column 1: duplicate key \"a\"");
    expect_error("a: &x 1\nb: *x\n", "aliases (*x) are not supported");
    expect_error("a: [1, 2\n", "line ");
    expect_error("a: 1\n---\nb: 2\n", "only one YAML document");
    expect_error("? [1, 2]\n: v\n", "a mapping key must be a scalar");
    expect_error("a:\tb: c\n  - x\n", "line ");
    char deep[80];
    memset(deep, '[', 70);
    deep[70] = '\0';
    expect_error(deep, "nested deeper than 64 levels");
}

static void test_merge_patch(void **state)
{
    (void)state;
    json_t *from = J("{\"ttl\": 30, \"loop_wait\": 10, \"postgresql\": {\"parameters\": {\"a\": 1, \"b\": 2},"
                     " \"use_slots\": true}, \"tags\": [1, 2], \"gone\": \"x\"}");
    json_t *to = J("{\"ttl\": 30, \"loop_wait\": 0.25, \"postgresql\": {\"parameters\": {\"a\": 1, \"c\": 3},"
                   " \"use_slots\": true}, \"tags\": [1, 2, 3], \"new\": {\"k\": \"v\"}}");
    json_t *patch = jy_merge_patch_diff(from, to);
    assert_non_null(patch);
    assert_json(patch, "{\"gone\": null, \"loop_wait\": 0.25, \"postgresql\": {\"parameters\": {\"b\": null,"
                       " \"c\": 3}}, \"tags\": [1, 2, 3], \"new\": {\"k\": \"v\"}}");
    json_t *applied = json_deep_copy(from);
    assert_int_equal(jy_merge_patch_apply(applied, patch), 0);
    assert_true(json_equal(applied, to));
    json_t *none = jy_merge_patch_diff(to, to);
    assert_non_null(none);
    assert_int_equal(json_object_size(none), 0);
    json_t *arr = J("[1]");
    assert_null(jy_merge_patch_diff(arr, to));
    assert_int_equal(jy_merge_patch_apply(applied, arr), PGW_EINVAL);
    json_decref(arr);
    json_decref(none);
    json_decref(applied);
    json_decref(patch);
    json_decref(from);
    json_decref(to);
}

static void set_ok(json_t *root, const char *assignment)
{
    char err[256] = "";
    if (jy_set_path(root, assignment, err, sizeof err) != 0)
        fail_msg("jy_set_path(%s): %s", assignment, err);
}

static void test_set_path(void **state)
{
    (void)state;
    json_t *c = J("{\"ttl\": 30, \"postgresql\": {\"parameters\": {\"max_connections\": 100}}, \"s\": 5}");
    set_ok(c, "loop_wait=0.25");
    set_ok(c, "ttl=abc");
    set_ok(c, " pause = true");
    set_ok(c, "postgresql.parameters.max_connections=200");
    set_ok(c, "postgresql.parameters.auto_explain.log_min_duration=1s");
    set_ok(c, "postgresql.pg_hba=[host all all 0.0.0.0/0 md5, local all all trust]");
    set_ok(c, "s.t.u='x=y'");
    set_ok(c, "nothing.here=");
    assert_json(c, "{\"ttl\": \"abc\", \"postgresql\": {\"parameters\": {\"max_connections\": 200,"
                   " \"auto_explain.log_min_duration\": \"1s\"}, \"pg_hba\": [\"host all all 0.0.0.0/0 md5\","
                   " \"local all all trust\"]}, \"s\": {\"t\": {\"u\": \"x=y\"}}, \"loop_wait\": 0.25,"
                   " \"pause\": true}");
    /* deleting the last key of an object removes the emptied parents */
    set_ok(c, "s.t.u=null");
    set_ok(c, "postgresql.parameters.max_connections=");
    set_ok(c, "postgresql.parameters.auto_explain.log_min_duration=~");
    assert_json(c, "{\"ttl\": \"abc\", \"postgresql\": {\"pg_hba\": [\"host all all 0.0.0.0/0 md5\","
                   " \"local all all trust\"]}, \"loop_wait\": 0.25, \"pause\": true}");

    char err[256];
    static const struct {
        const char *in, *frag;
    } bad[] = {
        {"ttl", "expected key.path=value, got \"ttl\""},
        {"=5", "expected key.path=value"},
        {"a..b=1", "empty part in the key path"},
        {".a=1", "empty part"},
        {"a.=1", "empty part"},
        {"a=[1, 2", "the value is not valid YAML"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        assert_int_equal(jy_set_path(c, bad[i].in, err, sizeof err), PGW_EINVAL);
        if (strstr(err, bad[i].frag) == NULL)
            fail_msg("jy_set_path(%s): \"%s\" lacks \"%s\"", bad[i].in, err, bad[i].frag);
    }
    json_decref(c);
}

static void test_text_diff(void **state)
{
    (void)state;
    char *d = jy_text_diff("a\nb\n", "a\nb\n", "old", "new");
    assert_non_null(d);
    assert_string_equal(d, "");
    free(d);

    const char *a = "l1\nl2\nl3\nl4\nl5\nl6\nl7\nl8\nl9\nl10\nl11\nl12\nl13\nl14\nl15\n";
    const char *b = "l1\nl2\nl3\nl4\nl5\nX6\nl7\nl8\nl9\nl10\nl11\nl12\nl13\nl14\nl15\nl16\n";
    d = jy_text_diff(a, b, "before", "after");
    assert_non_null(d);
    const char *want = "--- before\n+++ after\n"
                       "@@ -3,7 +3,7 @@\n l3\n l4\n l5\n-l6\n+X6\n l7\n l8\n l9\n"
                       "@@ -13,3 +13,4 @@\n l13\n l14\n l15\n+l16\n";
    assert_string_equal(d, want);
    free(d);

    /* changes close together share one hunk; an empty side counts from 0 */
    d = jy_text_diff("a\nb\nc\n", "a\nB\nc\nd\n", "x", "y");
    assert_non_null(d);
    assert_string_equal(d, "--- x\n+++ y\n@@ -1,3 +1,4 @@\n a\n-b\n+B\n c\n+d\n");
    free(d);
    d = jy_text_diff("", "new\n", "x", "y");
    assert_non_null(d);
    assert_string_equal(d, "--- x\n+++ y\n@@ -0,0 +1 @@\n+new\n");
    free(d);
}

/* A real that a configuration file will hold (a converted retry_timeout of
 * 10 s, computed as a double) is written as a plain decimal that pgwarden's
 * own duration and size parsers read back, never as "1.0e+01". */
static void test_real_written_without_exponent(void **state)
{
    (void)state;
    static const struct { double d; const char *want; } cases[] = {
        {10.0, "10.0\n"}, {100.0, "100.0\n"}, {0.75, "0.75\n"}, {1048576.0, "1048576.0\n"},
        {1e-7, "1.0e-07\n"}, {2.5e20, "2.5e+20\n"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_t *j = json_real(cases[i].d);
        char *y = jy_to_yaml(j);
        assert_non_null(y);
        assert_string_equal(y, cases[i].want);
        json_t *back = jy_from_yaml(y, strlen(y), NULL, 0);
        assert_non_null(back);
        assert_true(json_is_real(back) && json_real_value(back) == cases[i].d);
        json_decref(back);
        free(y);
        json_decref(j);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scalars),
        cmocka_unit_test(test_to_yaml),
        cmocka_unit_test(test_real_written_without_exponent),
        cmocka_unit_test(test_round_trip_tricky_strings),
        cmocka_unit_test(test_from_yaml),
        cmocka_unit_test(test_from_yaml_errors),
        cmocka_unit_test(test_merge_patch),
        cmocka_unit_test(test_set_path),
        cmocka_unit_test(test_text_diff),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
