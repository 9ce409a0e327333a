/* Timeline history parsing, pg_waldump end-of-checkpoint parsing and the
 * rewind decision table (patroni-behaviour.md §4.7). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pg/pgrewind.h"

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

static void test_history_fixture(void **state)
{
    (void)state;
    size_t len;
    char *t = load("timeline_00000002.history", &len);
    struct pg_tli_history h;
    char eb[256];
    assert_int_equal(pg_tli_history_parse(t, len, &h, eb, sizeof eb), 0);
    assert_int_equal(h.n, 1);
    assert_int_equal(h.items[0].parent_tli, 1);
    assert_int_equal(h.items[0].switchpoint, 0x3000000);
    free(t);
    const char *multi = "# comment\n1\t0/3000148\tno recovery target specified\n\n"
                        "2\t0/5000000\tno recovery target specified\n3\t1/A0\tx\n";
    assert_int_equal(pg_tli_history_parse(multi, strlen(multi), &h, eb, sizeof eb), 0);
    assert_int_equal(h.n, 3);
    assert_int_equal(h.items[2].parent_tli, 3);
    assert_int_equal(h.items[2].switchpoint, 0x1000000A0ull);
    assert_int_equal(pg_tli_history_parse("", 0, &h, eb, sizeof eb), 0);
    assert_int_equal(h.n, 0);
}

static void test_history_bad(void **state)
{
    (void)state;
    struct pg_tli_history h;
    char eb[256];
    const char *bad[] = {"x\t0/1\treason\n", "1\tnot-an-lsn\tr\n", "1\n", "0\t0/1\tr\n",
                         "2\t0/5\tr\n1\t0/6\tr\n", "1\t0/9\tr\n2\t0/5\tr\n"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        eb[0] = '\0';
        assert_int_equal(pg_tli_history_parse(bad[i], strlen(bad[i]), &h, eb, sizeof eb), PGW_EPROTO);
        assert_non_null(strstr(eb, "line"));
    }
}

static void test_waldump(void **state)
{
    (void)state;
    size_t lo, le;
    char *out = load("waldump_ckpt.out", &lo);
    char *err = load("waldump_ckpt.err", &le);
    assert_int_equal(pgrewind_parse_waldump_end(out, err, 0x3000028), 0x30000A0);
    /* a different checkpoint than the one printed: unknown */
    assert_int_equal(pgrewind_parse_waldump_end(out, err, 0x3000000), 0);
    assert_int_equal(pgrewind_parse_waldump_end(out, "pg_waldump: error: could not find file", 0x3000028), 0);
    assert_int_equal(pgrewind_parse_waldump_end(NULL, err, 0x3000028), 0);
    free(out);
    free(err);
}

static struct pgrewind_primary primary_on(uint32_t tli)
{
    struct pgrewind_primary p;
    memset(&p, 0, sizeof p);
    p.system_identifier = 77;
    p.timeline = tli;
    /* 1 -> 2 at 0/3000000, 2 -> 3 at 0/5000000 */
    p.history.items[0] = (struct pg_tli_switch){1, 0x3000000};
    p.history.items[1] = (struct pg_tli_switch){2, 0x5000000};
    p.history.n = tli >= 3 ? 2 : tli == 2 ? 1 : 0;
    return p;
}

static void expect(const struct pgrewind_local *l, const struct pgrewind_primary *p,
                   enum pgrewind_verdict v, const char *reason_part)
{
    struct pgrewind_decision d;
    pgrewind_decide(l, p, &d);
    if (d.verdict != v || !strstr(d.reason, reason_part))
        fail_msg("verdict %d (want %d), reason \"%s\" (want \"%s\")", d.verdict, v, d.reason,
                 reason_part);
}

static void test_decision_table(void **state)
{
    (void)state;
    struct pgrewind_primary p2 = primary_on(2), p3 = primary_on(3), p1 = primary_on(1);
    struct pgrewind_local l = {.system_identifier = 77};

    l = (struct pgrewind_local){.timeline = 2, .lsn = 0x9000000, .was_primary = true, .system_identifier = 77};
    expect(&l, &p1, PGREWIND_NEEDED, "ahead");
    l.timeline = 2;
    /* a former primary on the primary's own timeline: both wrote there (the
     * candidate killed after its promotion, the next one promoted from the
     * same point: identical history files, different WAL) */
    expect(&l, &p2, PGREWIND_IMPOSSIBLE, "was a primary on timeline 2");
    l.was_primary = false;
    expect(&l, &p2, PGREWIND_NOT_NEEDED, "same timeline");
    /* the same timeline number over another history: this node promoted
     * from timeline 1 at another point (killed before it could confirm,
     * while the next candidate promoted too), seen in an e2e run where the
     * node then could never stream again */
    l.history_known = true;
    l.history.n = 1;
    l.history.items[0] = (struct pg_tli_switch){1, 0x3000000};
    expect(&l, &p2, PGREWIND_NOT_NEEDED, "same timeline");
    l.history.items[0].switchpoint = 0x2800000;
    expect(&l, &p2, PGREWIND_IMPOSSIBLE, "two histories under one number");
    l.history.items[0] = (struct pg_tli_switch){1, 0x3000000};
    l.history_known = false; /* unread: by number, as before */
    expect(&l, &p2, PGREWIND_NOT_NEEDED, "same timeline");
    /* replica on tl 1 that stopped before the fork */
    l = (struct pgrewind_local){.timeline = 1, .lsn = 0x2FFFFFF, .was_primary = false};
    expect(&l, &p2, PGREWIND_NOT_NEEDED, "not beyond");
    l.lsn = 0x3000000;
    expect(&l, &p2, PGREWIND_NOT_NEEDED, "not beyond");
    l.lsn = 0x3000001;
    expect(&l, &p2, PGREWIND_NEEDED, "beyond");
    /* former primary: checkpoint at/after the fork */
    l = (struct pgrewind_local){.timeline = 1, .lsn = 0x3000028, .checkpoint_end = 0x30000A0, .was_primary = true};
    expect(&l, &p2, PGREWIND_NEEDED, "at or beyond");
    l.lsn = 0x3000000;
    expect(&l, &p2, PGREWIND_NEEDED, "at or beyond");
    /* clean switchover: the fork is exactly the end of the shutdown checkpoint */
    l = (struct pgrewind_local){.timeline = 1, .lsn = 0x2FFFF88, .checkpoint_end = 0x3000000, .was_primary = true};
    expect(&l, &p2, PGREWIND_NOT_NEEDED, "exactly");
    l.checkpoint_end = 0x2FFFFF0;
    expect(&l, &p2, PGREWIND_NEEDED, "not at the switch point");
    l.checkpoint_end = 0;
    expect(&l, &p2, PGREWIND_NEEDED, "unknown");
    /* two timelines behind: our tl 2 forked at 0/5000000 */
    l = (struct pgrewind_local){.timeline = 2, .lsn = 0x4000000, .was_primary = false};
    expect(&l, &p3, PGREWIND_NOT_NEEDED, "timeline 2");
    l.lsn = 0x6000000;
    expect(&l, &p3, PGREWIND_NEEDED, "beyond");
    /* our timeline is not in the primary's history */
    struct pgrewind_primary odd = primary_on(3);
    odd.history.items[1].parent_tli = 4; /* nonsense history without tl 2 */
    odd.history.n = 1;
    l = (struct pgrewind_local){.timeline = 2, .lsn = 0x1000, .was_primary = false};
    expect(&l, &odd, PGREWIND_NEEDED, "not in the primary's history");
    /* different cluster */
    l = (struct pgrewind_local){.timeline = 1, .lsn = 1, .system_identifier = 78};
    expect(&l, &p2, PGREWIND_IMPOSSIBLE, "different clusters");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_history_fixture),
        cmocka_unit_test(test_history_bad),
        cmocka_unit_test(test_waldump),
        cmocka_unit_test(test_decision_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
