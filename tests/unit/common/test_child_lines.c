/* A child's output cut into log lines: '\n' and '\r' end lines (\r\n gives
 * one), lines split across reads are joined, trailing blanks trimmed, empty
 * lines skipped, an overlong line given in pieces with no byte lost, the
 * unfinished line given at EOF. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "common/child_lines.h"

struct got {
    char lines[8][CHILD_LINE_MAX];
    size_t lens[8];
    int n;
};

static void collect(void *ctx, const char *line, size_t len)
{
    struct got *g = ctx;
    assert_true(g->n < 8);
    assert_int_equal(strlen(line), len);
    memcpy(g->lines[g->n], line, len + 1);
    g->lens[g->n] = len;
    g->n++;
}

static void feed(struct child_lines *cl, const char *s, struct got *g)
{
    child_lines_feed(cl, s, strlen(s), collect, g);
}

static void test_line_endings_and_split_reads(void **state)
{
    (void)state;
    struct child_lines cl = {0};
    struct got g = {0};
    feed(&cl, "first\r\nsec", &g);
    assert_int_equal(g.n, 1);
    feed(&cl, "ond  \t\n\n   \n1024/2048 kB (50%)\r2048/2048 kB (100%)\r", &g);
    assert_int_equal(g.n, 4);
    assert_string_equal(g.lines[0], "first");
    assert_string_equal(g.lines[1], "second");
    assert_string_equal(g.lines[2], "1024/2048 kB (50%)");
    assert_string_equal(g.lines[3], "2048/2048 kB (100%)");
}

static void test_unfinished_line_at_eof(void **state)
{
    (void)state;
    struct child_lines cl = {0};
    struct got g = {0};
    feed(&cl, "done\nno newline at the end ", &g);
    assert_int_equal(g.n, 1);
    child_lines_flush(&cl, collect, &g);
    assert_int_equal(g.n, 2);
    assert_string_equal(g.lines[1], "no newline at the end");
    child_lines_flush(&cl, collect, &g); /* nothing left: nothing given */
    assert_int_equal(g.n, 2);
}

static void test_overlong_line_in_pieces(void **state)
{
    (void)state;
    struct child_lines cl = {0};
    struct got g = {0};
    static char big[2 * CHILD_LINE_MAX + 11];
    for (size_t i = 0; i < sizeof big - 1; i++)
        big[i] = (char)('a' + i % 26);
    big[sizeof big - 1] = '\0';
    feed(&cl, big, &g);
    feed(&cl, "\n", &g);
    assert_int_equal(g.n, 3);
    assert_int_equal(g.lens[0], CHILD_LINE_MAX - 1);
    assert_int_equal(g.lens[1], CHILD_LINE_MAX - 1);
    char joined[sizeof big];
    size_t at = 0;
    for (int i = 0; i < g.n; i++) {
        memcpy(joined + at, g.lines[i], g.lens[i]);
        at += g.lens[i];
    }
    joined[at] = '\0';
    assert_string_equal(joined, big);
}

static void test_alloc_gives_a_buffer_of_the_suggested_size(void **state)
{
    (void)state;
    uv_buf_t buf;
    child_lines_alloc(NULL, 65536, &buf);
    assert_non_null(buf.base);
    assert_int_equal(buf.len, 65536);
    memset(buf.base, 0, buf.len); /* ASan: the whole length is ours */
    free(buf.base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_line_endings_and_split_reads),
        cmocka_unit_test(test_unfinished_line_at_eof),
        cmocka_unit_test(test_overlong_line_in_pieces),
        cmocka_unit_test(test_alloc_gives_a_buffer_of_the_suggested_size),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
