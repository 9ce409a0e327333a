/* pgBackRest as pgwarden drives it: the generated configuration file, the
 * archive/restore commands PostgreSQL runs through /bin/sh, the argv of a
 * run, the reading of `pgbackrest info --output=json` (a real 2.45 output),
 * and the configuration rules of the backup section. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cfg.h"
#include "pg/pgbackrest.h"

static const char base_yaml[] =
    "scope: demo\n"
    "name: n1\n"
    "raft: {self_addr: 127.0.0.1:5010, partner_addrs: [127.0.0.1:5011], data_dir: /var/lib/pgw}\n"
    "postgresql:\n"
    "  listen: 127.0.0.1:5432\n"
    "  data_dir: /var/lib/pg/data\n"
    "  authentication: {superuser: {username: postgres}}\n"
    "  parameters:\n"
    "    unix_socket_directories: '/run/pg, /tmp'\n";

static int load(const char *extra, struct cfg *c, struct cfg_error *e)
{
    char buf[4096];
    snprintf(buf, sizeof buf, "%s%s", base_yaml, extra);
    return cfg_load_buffer("t.yml", buf, strlen(buf), c, e, NULL);
}

static void test_conf_and_commands(void **state)
{
    (void)state;
    struct cfg c;
    struct cfg_error e;
    int rc = load("backup:\n  method: pgbackrest\n  options: {repo1-path: /srv/repo, "
                  "repo1-retention-full: 2}\n",
                  &c, &e);
    if (rc != 0)
        fail_msg("%s", e.msg);
    assert_string_equal(c.backup.stanza, "demo"); /* defaults to the scope */
    char *t = pgbackrest_conf_text(&c);
    assert_non_null(t);
    assert_non_null(strstr(t, "[global]\nrepo1-path=/srv/repo\nrepo1-retention-full=2\n"));
    assert_non_null(strstr(t, "[demo]\npg1-path=/var/lib/pg/data\npg1-port=5432\n"
                              "pg1-socket-path=/run/pg\npg1-user=postgres\n"));
    free(t);
    char cmd[1024];
    assert_int_equal(pgbackrest_archive_command(&c, cmd, sizeof cmd), 0);
    assert_string_equal(cmd, "'/usr/bin/pgbackrest' '--config=/var/lib/pgw/pgbackrest.conf' "
                             "'--stanza=demo' archive-push %p");
    assert_int_equal(pgbackrest_restore_command(&c, cmd, sizeof cmd), 0);
    assert_string_equal(cmd, "'/usr/bin/pgbackrest' '--config=/var/lib/pgw/pgbackrest.conf' "
                             "'--stanza=demo' archive-get %f \"%p\"");
    char small[16];
    assert_int_not_equal(pgbackrest_archive_command(&c, small, sizeof small), 0);
    const char *extra[] = {"--type=full", NULL};
    char **argv = pgbackrest_argv(&c, "backup", extra, NULL);
    assert_non_null(argv);
    assert_string_equal(argv[0], "/usr/bin/pgbackrest");
    assert_string_equal(argv[1], "--config=/var/lib/pgw/pgbackrest.conf");
    assert_string_equal(argv[2], "--stanza=demo");
    assert_string_equal(argv[3], "--type=full");
    assert_string_equal(argv[4], "backup");
    assert_null(argv[5]);
    pgbackrest_argv_free(argv);
    cfg_free(&c);
}

static void test_quoting(void **state)
{
    (void)state;
    struct cfg c;
    struct cfg_error e;
    /* a quote in a path must not end the shell word */
    static const char y[] = "scope: demo\nname: n1\n"
                            "raft: {self_addr: 127.0.0.1:5010, partner_addrs: [127.0.0.1:5011], "
                            "data_dir: \"/var/lib/it's\"}\n"
                            "postgresql: {listen: 127.0.0.1:5432, data_dir: /d}\n"
                            "backup: {method: pgbackrest}\n";
    int rc = cfg_load_buffer("t.yml", y, strlen(y), &c, &e, NULL);
    if (rc != 0)
        fail_msg("%s", e.msg);
    char cmd[1024];
    assert_int_equal(pgbackrest_archive_command(&c, cmd, sizeof cmd), 0);
    assert_non_null(strstr(cmd, "'--config=/var/lib/it'\\''s/pgbackrest.conf'"));
    cfg_free(&c);
}

static void expect_refused(const char *extra, const char *key, const char *why)
{
    struct cfg c;
    struct cfg_error e;
    assert_int_not_equal(load(extra, &c, &e), 0);
    if (strstr(e.msg, key) == NULL || strstr(e.msg, why) == NULL)
        fail_msg("expected \"%s\" and \"%s\" in: %s", key, why, e.msg);
}

static void test_config_rules(void **state)
{
    (void)state;
    /* archive_command would silently lose to pgwarden's: refused, named */
    expect_refused("    archive_command: 'cp %p /x/%f'\nbackup: {method: pgbackrest}\n",
                   "postgresql.parameters.archive_command", "set by pgwarden");
    expect_refused("  recovery_conf: {restore_command: 'cp /x/%f %p'}\n"
                   "backup: {method: pgbackrest}\n",
                   "postgresql.recovery_conf.restore_command", "set by pgwarden");
    expect_refused("backup: {method: pgbackrest, options: {pg1-path: /x}}\n", "backup.options",
                   "pg1-path");
    expect_refused("backup: {method: pgbackrest, options: [repo1-path]}\n", "backup.options",
                   "expected `name: value`");
    expect_refused("backup: {method: barman}\n", "backup.method", "pgbackrest");
    expect_refused("backup: {method: pgbackrest, timeout: 5}\n", "backup.timeout", "");
    /* without the backup section, archive_command is the operator's */
    struct cfg c;
    struct cfg_error e;
    assert_int_equal(load("    archive_command: 'cp %p /x/%f'\n", &c, &e), 0);
    assert_false(cfg_backup_enabled(&c.backup));
    cfg_free(&c);
}

static char *fixture(size_t *len)
{
    const char *dir = getenv("PGW_TEST_DATA");
    assert_non_null(dir);
    char path[1024];
    snprintf(path, sizeof path, "%s/pg/pgbackrest_info.json", dir);
    FILE *f = fopen(path, "r");
    if (!f)
        fail_msg("cannot open fixture %s", path);
    char *buf = calloc(1, 1 << 20);
    *len = fread(buf, 1, (1 << 20) - 1, f);
    fclose(f);
    return buf;
}

static void test_info_parse(void **state)
{
    (void)state;
    size_t len;
    char *j = fixture(&len);
    struct pgbackrest_info i;
    char err[256];
    assert_int_equal(pgbackrest_info_parse(j, len, "demo", &i, err, sizeof err), 0);
    assert_true(i.stanza_found);
    assert_int_equal(i.status_code, 0);
    assert_int_equal(i.n_backups, 2);
    assert_int_equal(i.n_list, 2);
    assert_string_equal(i.last_type, "diff");
    assert_string_equal(i.last_label, "20261207-195738F_20261207-195742D");
    assert_string_equal(i.list[0].type, "full");
    assert_true(i.last_full_stop_s > 1700000000);
    assert_true(i.last_stop_s >= i.last_full_stop_s);
    assert_string_equal(i.list[0].wal_start, "000000010000000000000007");
    assert_true(i.list[0].size > 0);
    assert_string_equal(i.archive_max, "000000010000000000000009");
    /* another stanza: not found, nothing invented */
    assert_int_equal(pgbackrest_info_parse(j, len, "other", &i, err, sizeof err), 0);
    assert_false(i.stanza_found);
    assert_int_equal(i.n_backups, 0);
    /* not JSON */
    assert_int_not_equal(pgbackrest_info_parse("ERROR: [055]", 12, "demo", &i, err, sizeof err), 0);
    assert_non_null(strstr(err, "pgbackrest info"));
    free(j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conf_and_commands),
        cmocka_unit_test(test_quoting),
        cmocka_unit_test(test_config_rules),
        cmocka_unit_test(test_info_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
