/* patronictl-style tables: borders, the title in the top border, alignment,
 * multi-line cells, UTF-8 widths and the tab-separated layout. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/table.h"

static struct table *members_table(void)
{
    const char *cols[] = {"Member", "Host", "Role", "TL", "Lag"};
    struct table *t = table_new(5, cols);
    assert_non_null(t);
    table_set_align(t, 3, TABLE_RIGHT);
    table_set_align(t, 4, TABLE_RIGHT);
    const char *r1[] = {"n1", "127.0.0.1:5432", "Leader", "1", NULL};
    const char *r2[] = {"node-two", "127.0.0.1:5433", "Replica", "12", "0"};
    assert_int_equal(table_add_row(t, r1), 0);
    assert_int_equal(table_add_row(t, r2), 0);
    return t;
}

static void test_pretty_with_title(void **state)
{
    (void)state;
    struct table *t = members_table();
    char *s = table_render_pretty(t, "Cluster: demo (7712)");
    assert_non_null(s);
    const char *want =
        "+ Cluster: demo (7712) -----+---------+----+-----+\n"
        "| Member   | Host           | Role    | TL | Lag |\n"
        "+----------+----------------+---------+----+-----+\n"
        "| n1       | 127.0.0.1:5432 | Leader  |  1 |     |\n"
        "| node-two | 127.0.0.1:5433 | Replica | 12 |   0 |\n"
        "+----------+----------------+---------+----+-----+\n";
    assert_string_equal(s, want);
    /* every line of the table has the same width */
    size_t first = strchr(s, '\n') - s;
    for (const char *p = s; *p; p = strchr(p, '\n') + 1)
        assert_int_equal((size_t)(strchr(p, '\n') - p), first);
    free(s);
    table_free(t);
}

static void test_pretty_without_title(void **state)
{
    (void)state;
    struct table *t = members_table();
    char *s = table_render_pretty(t, NULL);
    assert_non_null(s);
    assert_true(strncmp(s, "+----------+----------------+", 29) == 0);
    free(s);
    table_free(t);
}

static void test_long_title_widens_last_column(void **state)
{
    (void)state;
    const char *cols[] = {"A", "B"};
    struct table *t = table_new(2, cols);
    assert_non_null(t);
    const char *r[] = {"x", "y"};
    assert_int_equal(table_add_row(t, r), 0);
    char *s = table_render_pretty(t, "Cluster: a-rather-long-name (7712289201553529298)");
    assert_non_null(s);
    const char *nl = strchr(s, '\n');
    /* the whole title is there, followed by " -+" at least */
    assert_non_null(strstr(s, "+ Cluster: a-rather-long-name (7712289201553529298) -+\n"));
    size_t w = (size_t)(nl - s);
    for (const char *p = s; *p; p = strchr(p, '\n') + 1)
        assert_int_equal((size_t)(strchr(p, '\n') - p), w);
    free(s);
    table_free(t);
}

static void test_multiline_cells_get_rules(void **state)
{
    (void)state;
    const char *cols[] = {"Member", "Tags"};
    struct table *t = table_new(2, cols);
    assert_non_null(t);
    const char *r1[] = {"n1", "nofailover: true\nnosync: true"};
    const char *r2[] = {"n2", ""};
    assert_int_equal(table_add_row(t, r1), 0);
    assert_int_equal(table_add_row(t, r2), 0);
    char *s = table_render_pretty(t, NULL);
    assert_non_null(s);
    const char *want =
        "+--------+------------------+\n"
        "| Member | Tags             |\n"
        "+--------+------------------+\n"
        "| n1     | nofailover: true |\n"
        "|        | nosync: true     |\n"
        "+--------+------------------+\n"
        "| n2     |                  |\n"
        "+--------+------------------+\n";
    assert_string_equal(s, want);
    free(s);
    table_free(t);
}

static void test_utf8_width(void **state)
{
    (void)state;
    assert_int_equal(table_text_width("n\xc3\xb6" "de", 5), 4); /* n, o-umlaut (2 bytes), d, e */
    const char *cols[] = {"Member"};
    struct table *t = table_new(1, cols);
    assert_non_null(t);
    const char *r[] = {"kn\xc3\xb6" "del"}; /* 7 bytes, 6 characters */
    assert_int_equal(table_add_row(t, r), 0);
    char *s = table_render_pretty(t, NULL);
    assert_non_null(s);
    assert_non_null(strstr(s, "| kn\xc3\xb6" "del |\n"));
    assert_non_null(strstr(s, "+--------+\n"));
    free(s);
    table_free(t);
}

static void test_tsv(void **state)
{
    (void)state;
    const char *cols[] = {"Cluster", "Member", "Tags"};
    struct table *t = table_new(3, cols);
    assert_non_null(t);
    const char *r[] = {"demo", "n\t1", "a: 1\nb: 2"};
    assert_int_equal(table_add_row(t, r), 0);
    const char *r2[] = {"demo", "n2", NULL};
    assert_int_equal(table_add_row(t, r2), 0);
    assert_int_equal(table_rows(t), 2);
    char *s = table_render_tsv(t);
    assert_non_null(s);
    assert_string_equal(s, "Cluster\tMember\tTags\ndemo\tn 1\ta: 1 b: 2\ndemo\tn2\t\n");
    free(s);
    table_free(t);
}

static void test_empty_table(void **state)
{
    (void)state;
    const char *cols[] = {"TL", "LSN"};
    struct table *t = table_new(2, cols);
    assert_non_null(t);
    char *s = table_render_pretty(t, NULL);
    assert_non_null(s);
    assert_string_equal(s, "+----+-----+\n| TL | LSN |\n+----+-----+\n");
    free(s);
    table_free(t);
    assert_null(table_new(0, cols));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pretty_with_title),
        cmocka_unit_test(test_pretty_without_title),
        cmocka_unit_test(test_long_title_widens_last_column),
        cmocka_unit_test(test_multiline_cells_get_rules),
        cmocka_unit_test(test_utf8_width),
        cmocka_unit_test(test_tsv),
        cmocka_unit_test(test_empty_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
