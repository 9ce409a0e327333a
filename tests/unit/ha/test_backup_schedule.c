/* The backup schedule (ha/backup.c backup_due): what the repository holds
 * decides, so a new primary goes on where the old one stopped. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "ha/backup.h"
#include "pg/pgbackrest.h"

#define DAY 86400ull

static void test_schedule(void **state)
{
    (void)state;
    struct cfg_backup c = {.full_interval_ms = 7 * DAY * 1000, .diff_interval_ms = DAY * 1000};
    struct pgbackrest_info i;
    memset(&i, 0, sizeof i);
    char why[160];
    uint64_t now = 1800000000ull * 1000;
    /* an empty repository: a full backup at once */
    assert_string_equal(backup_due(&c, &i, now, why, sizeof why), "full");
    assert_non_null(strstr(why, "no full backup"));
    /* a full one 2 days old, nothing since: a differential one */
    i.last_full_stop_s = i.last_stop_s = now / 1000 - 2 * DAY;
    assert_string_equal(backup_due(&c, &i, now, why, sizeof why), "diff");
    assert_non_null(strstr(why, "diff_interval"));
    /* a differential one an hour ago: nothing */
    i.last_stop_s = now / 1000 - 3600;
    assert_null(backup_due(&c, &i, now, why, sizeof why));
    /* the full one 7 days old: full, whatever came since */
    i.last_full_stop_s = now / 1000 - 7 * DAY;
    assert_string_equal(backup_due(&c, &i, now, why, sizeof why), "full");
    /* a clock behind the repository's timestamps: nothing is due */
    i.last_full_stop_s = i.last_stop_s = now / 1000 + 3600;
    assert_null(backup_due(&c, &i, now, why, sizeof why));
    /* both intervals 0: never scheduled, not even into an empty repository */
    struct cfg_backup off = {0};
    memset(&i, 0, sizeof i);
    assert_null(backup_due(&off, &i, now, why, sizeof why));
    /* diff only: no differential backup without a base to differ from */
    struct cfg_backup diff_only = {.diff_interval_ms = DAY * 1000};
    assert_null(backup_due(&diff_only, &i, now, why, sizeof why));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_schedule),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
