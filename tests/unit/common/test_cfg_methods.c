/* Custom replica / bootstrap method sections (postgresql.<name>,
 * bootstrap.<name>), command splitting, and the dynamic configuration's
 * slots / ignore_slots (YAML and JSON, errors naming the key path). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/cfg.h"
#include "cfg_load.h"

#define BASE "scope: demo\nname: node1\nraft:\n  self_addr: 10.0.0.1:5010\n  data_dir: /r\n"
#define PG "postgresql:\n  listen: 10.0.0.1:5432\n  data_dir: /d\n"


/* The load must fail with "t.yml:<line>:<col>: <path>: ..." containing `what`. */
static void expect_err_at(const char *yaml, int line, int col, const char *path, const char *what)
{
    struct cfg c;
    struct cfg_error e;
    int rc = load(yaml, &c, &e, NULL);
    if (rc == 0) {
        cfg_free(&c);
        fail_msg("accepted, expected an error at %d:%d %s: %s\n---\n%s", line, col, path, what,
                 yaml);
    }
    assert_int_equal(rc, PGW_EINVAL);
    char prefix[512];
    snprintf(prefix, sizeof prefix, "t.yml:%d:%d: %s: ", line, col, path);
    if (strncmp(e.msg, prefix, strlen(prefix)) != 0 || strstr(e.msg, what) == NULL)
        fail_msg("got:      %s\nexpected: %s...%s", e.msg, prefix, what);
}

static const char *kv(const struct cfg_kvlist *l, const char *k)
{
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->items[i].key, k) == 0)
            return l->items[i].value;
    return NULL;
}

/* ---------- replica methods ---------- */

static void test_replica_methods(void **state)
{
    (void)state;
    struct cfg c;
    struct cfg_warnings w = {0};
    load_ok(BASE PG "  create_replica_methods: [pgbackrest, walg, basebackup]\n"
                    "  pgbackrest:\n"
                    "    command: /usr/bin/pgbackrest --stanza=main --delta restore\n"
                    "    keep_data: true\n"
                    "    no_params: true\n"
                    "  walg:\n"
                    "    command: \"'/opt/my tools/wal-g' backup-fetch\"\n"
                    "    no_master: yes\n"
                    "    timeout: 3h\n"
                    "    envdir: /etc/wal-g.d/env\n"
                    "  misc:\n"
                    "    foo: bar\n",
            &c, &w);
    const struct cfg_postgresql *p = &c.postgresql;
    assert_int_equal(p->create_replica_methods.n, 3);
    assert_int_equal(p->replica_methods.n, 2);
    const struct cfg_method *m = cfg_method_find(&p->replica_methods, "pgbackrest");
    assert_non_null(m);
    assert_string_equal(m->command, "/usr/bin/pgbackrest --stanza=main --delta restore");
    assert_true(m->keep_data);
    assert_true(m->no_params);
    assert_false(m->no_leader);
    assert_int_equal(m->timeout_ms, 24u * 3600u * 1000u);
    assert_int_equal(m->params.n, 0);
    m = cfg_method_find(&p->replica_methods, "walg");
    assert_non_null(m);
    assert_true(m->no_leader);
    assert_false(m->keep_data);
    assert_int_equal(m->timeout_ms, 3u * 3600u * 1000u);
    assert_int_equal(m->params.n, 1);
    assert_string_equal(kv(&m->params, "envdir"), "/etc/wal-g.d/env");
    assert_null(cfg_method_find(&p->replica_methods, "basebackup"));
    assert_null(cfg_method_find(&p->replica_methods, "misc"));
    /* the legacy name warns; the unreferenced mapping is an unknown key */
    assert_int_equal(w.n, 2);
    assert_string_equal(w.items[0],
                        "t.yml:16:5: postgresql.walg.no_master is a deprecated name; use no_leader");
    assert_string_equal(w.items[1], "t.yml:19:3: unknown key postgresql.misc (ignored)");
    cfg_warnings_free(&w);
    cfg_free(&c);
}

static void test_replica_method_errors(void **state)
{
    (void)state;
    expect_err_at(BASE PG "  create_replica_methods: [walg]\n", 9, 28,
                  "postgresql.create_replica_methods[0]",
                  "method \"walg\" needs a section postgresql.walg with its command");
    expect_err_at(BASE PG "  create_replica_methods: [basebackup, basebackup]\n", 9, 40,
                  "postgresql.create_replica_methods[1]", "listed twice");
    expect_err_at(BASE PG "  create_replica_methods: [walg]\n  walg:\n    keep_data: true\n", 10,
                  3, "postgresql.walg.command", "required key is missing");
    expect_err_at(BASE PG "  create_replica_methods: [walg]\n  walg:\n    command: \"a 'b\"\n",
                  11, 14, "postgresql.walg.command", "unterminated ' quote");
    expect_err_at(BASE PG "  create_replica_methods: [walg]\n  walg:\n    command: x\n"
                          "    keep_data: maybe\n",
                  12, 16, "postgresql.walg.keep_data", "expected true or false");
    expect_err_at(BASE PG "  create_replica_methods: [walg]\n  walg:\n    command: x\n"
                          "    timeout: 0.5\n",
                  12, 14, "postgresql.walg.timeout", "expected a duration from 1 s");
    expect_err_at(BASE PG "  create_replica_methods: [walg]\n  walg:\n    command: x\n"
                          "    datadir: /x\n",
                  12, 5, "postgresql.walg.datadir", "pgwarden passes --datadir itself");
    expect_err_at(BASE PG "  create_replica_methods: [walg]\n  walg:\n    command: x\n"
                          "    opts: [a, b]\n",
                  12, 11, "postgresql.walg.opts", "expected a value passed to the command");
    expect_err_at(BASE PG "  create_replica_methods: [walg]\n  walg:\n    command: x\n"
                          "    \"a b\": 1\n",
                  12, 5, "postgresql.walg.a b", "not usable as a command option");
    /* with no_params the own names are the user's to pass */
    struct cfg c;
    load_ok(BASE PG "  create_replica_methods: [walg]\n  walg:\n    command: x\n"
                    "    datadir: /x\n    no_params: true\n",
            &c, NULL);
    assert_string_equal(kv(&cfg_method_find(&c.postgresql.replica_methods, "walg")->params,
                           "datadir"), "/x");
    cfg_free(&c);
    /* an empty list means the default, as in Patroni */
    load_ok(BASE PG "  create_replica_methods: []\n", &c, NULL);
    assert_int_equal(c.postgresql.create_replica_methods.n, 1);
    assert_string_equal(c.postgresql.create_replica_methods.items[0], "basebackup");
    cfg_free(&c);
}

/* ---------- bootstrap method ---------- */

static void test_bootstrap_method(void **state)
{
    (void)state;
    struct cfg c;
    struct cfg_warnings w = {0};
    load_ok(BASE PG "bootstrap:\n  method: restore\n  post_init: /bin/post\n  restore:\n"
                    "    command: /bin/restore --from=/backups\n"
                    "    keep_existing_recovery_conf: true\n"
                    "    recovery_conf:\n"
                    "      restore_command: cp /arch/%f %p\n"
                    "      recovery_target_action: promote\n"
                    "      recovery_target_inclusive: false\n"
                    "    label: nightly\n",
            &c, &w);
    assert_int_equal(w.n, 0);
    assert_string_equal(c.bootstrap.method, "restore");
    assert_string_equal(c.bootstrap.post_bootstrap, "/bin/post");
    const struct cfg_method *m = cfg_method_find(&c.bootstrap.methods, "restore");
    assert_non_null(m);
    assert_string_equal(m->command, "/bin/restore --from=/backups");
    assert_true(m->keep_existing_recovery_conf);
    assert_int_equal(m->recovery_conf.n, 3);
    assert_string_equal(kv(&m->recovery_conf, "restore_command"), "cp /arch/%f %p");
    assert_string_equal(kv(&m->recovery_conf, "recovery_target_inclusive"), "off");
    assert_string_equal(kv(&m->params, "label"), "nightly");
    cfg_warnings_free(&w);
    cfg_free(&c);

    expect_err_at(BASE PG "bootstrap:\n  method: restore\n  restore:\n    recovery_conf:\n"
                          "      9bad: x\n    command: x\n",
                  13, 7, "bootstrap.restore.recovery_conf.9bad", "not a valid PostgreSQL parameter");
    expect_err_at(BASE PG "bootstrap:\n  method: restore\n  restore:\n    command: x\n"
                          "    recovery_conf: [a]\n",
                  13, 20, "bootstrap.restore.recovery_conf", "expected a mapping");
    expect_err_at(BASE PG "bootstrap:\n  method: restore\n  restore:\n    command: x\n"
                          "    scope: other\n",
                  13, 5, "bootstrap.restore.scope", "pgwarden passes --scope itself");
    /* a replica-only key in a bootstrap section is an argument, as in Patroni */
    load_ok(BASE PG "bootstrap:\n  method: restore\n  restore:\n    command: x\n"
                    "    keep_data: true\n",
            &c, NULL);
    assert_string_equal(kv(&cfg_method_find(&c.bootstrap.methods, "restore")->params,
                           "keep_data"), "true");
    cfg_free(&c);
}

/* ---------- command splitting ---------- */

static void split_is(const char *cmd, size_t n, ...)
{
    struct cfg_strlist l = {0};
    char why[128];
    if (cfg_split_command(cmd, &l, why, sizeof why) != 0)
        fail_msg("%s: %s", cmd, why);
    assert_int_equal(l.n, n);
    va_list ap;
    va_start(ap, n);
    for (size_t i = 0; i < n; i++)
        assert_string_equal(l.items[i], va_arg(ap, const char *));
    va_end(ap);
    cfg_strlist_free(&l);
}

static void test_split_command(void **state)
{
    (void)state;
    split_is("a", 1, "a");
    split_is("  /bin/x  --y=1\t z ", 3, "/bin/x", "--y=1", "z");
    split_is("'a b' \"c \\\"d\\\" $e\" f\\ g", 3, "a b", "c \"d\" $e", "f g");
    split_is("x'y'\"z\"", 1, "xyz");
    split_is("'' b", 2, "", "b");
    struct cfg_strlist l = {0};
    char why[128];
    assert_int_equal(cfg_split_command("   ", &l, why, sizeof why), PGW_EINVAL);
    assert_string_equal(why, "the command is empty");
    assert_int_equal(cfg_split_command("a \"b", &l, why, sizeof why), PGW_EINVAL);
    assert_string_equal(why, "unterminated \" quote");
    assert_int_equal(cfg_split_command("a \\", &l, why, sizeof why), PGW_EINVAL);
    assert_int_equal(l.n, 0);
}

/* ---------- slots ---------- */

static void test_slots_yaml(void **state)
{
    (void)state;
    struct cfg c;
    load_ok(BASE PG "bootstrap:\n  dcs:\n    slots:\n      keep_me: {type: physical}\n"
                    "      cdc:\n        type: logical\n        database: app\n"
                    "        plugin: pgoutput\n      bare:\n"
                    "    ignore_slots:\n      - name: ext1\n      - {type: logical, plugin: wal2json}\n",
            &c, NULL);
    const struct cfg_dcs *d = &c.bootstrap.dcs;
    assert_int_equal(d->slots.n, 3);
    assert_string_equal(d->slots.items[0].name, "keep_me");
    assert_string_equal(d->slots.items[0].type, "physical");
    assert_string_equal(d->slots.items[1].type, "logical");
    assert_string_equal(d->slots.items[1].database, "app");
    assert_string_equal(d->slots.items[1].plugin, "pgoutput");
    assert_string_equal(d->slots.items[2].type, "physical"); /* no value: physical */
    assert_int_equal(d->ignore_slots.n, 2);
    assert_string_equal(d->ignore_slots.items[0].name, "ext1");
    assert_null(d->ignore_slots.items[0].type);
    assert_string_equal(d->ignore_slots.items[1].plugin, "wal2json");

    /* JSON round trip through the replicated form, and copy */
    json_t *j = cfg_dcs_to_json(d);
    assert_non_null(j);
    char *s = json_dumps(json_object_get(j, "slots"), JSON_COMPACT | JSON_SORT_KEYS);
    assert_string_equal(s, "{\"bare\":{\"type\":\"physical\"},\"cdc\":{\"database\":\"app\","
                           "\"plugin\":\"pgoutput\",\"type\":\"logical\"},\"keep_me\":"
                           "{\"type\":\"physical\"}}");
    free(s);
    s = json_dumps(json_object_get(j, "ignore_slots"), JSON_COMPACT | JSON_SORT_KEYS);
    assert_string_equal(s, "[{\"name\":\"ext1\"},{\"plugin\":\"wal2json\",\"type\":\"logical\"}]");
    free(s);
    struct cfg_dcs back;
    struct cfg_error e;
    if (cfg_dcs_from_json(j, &back, &e) != 0)
        fail_msg("%s", e.msg);
    json_decref(j);
    assert_int_equal(back.slots.n, 3);
    assert_string_equal(back.slots.items[1].plugin, "pgoutput");
    struct cfg_dcs cp;
    assert_int_equal(cfg_dcs_copy(&cp, &back), 0);
    assert_int_equal(cp.ignore_slots.n, 2);
    assert_string_equal(cp.ignore_slots.items[1].type, "logical");
    cfg_dcs_free(&cp);
    cfg_dcs_free(&back);
    cfg_free(&c);

    /* empty: left out of GET /config */
    struct cfg_dcs def;
    cfg_dcs_defaults(&def);
    j = cfg_dcs_to_json(&def);
    assert_null(json_object_get(j, "slots"));
    assert_null(json_object_get(j, "ignore_slots"));
    json_decref(j);
    cfg_dcs_free(&def);
}

#define DCS BASE PG "bootstrap:\n  dcs:\n"

static void test_slots_errors(void **state)
{
    (void)state;
    expect_err_at(DCS "    slots:\n      Bad-Name: {type: physical}\n", 12, 7,
                  "bootstrap.dcs.slots.Bad-Name", "not a valid slot name");
    expect_err_at(DCS "    slots:\n      s1: {type: sideways}\n", 12, 18,
                  "bootstrap.dcs.slots.s1.type", "expected physical or logical, got \"sideways\"");
    expect_err_at(DCS "    slots:\n      s1: {type: logical, database: app}\n", 12, 11,
                  "bootstrap.dcs.slots.s1", "a logical slot needs both database and plugin");
    expect_err_at(DCS "    slots:\n      s1: {type: physical, plugin: x}\n", 12, 11,
                  "bootstrap.dcs.slots.s1", "database and plugin are only for logical slots");
    expect_err_at(DCS "    slots:\n      s1: {type: physical, colour: red}\n", 12, 28,
                  "bootstrap.dcs.slots.s1.colour", "unknown key");
    expect_err_at(DCS "    slots: [a]\n", 11, 12, "bootstrap.dcs.slots", "expected a mapping");
    expect_err_at(DCS "    ignore_slots: {name: x}\n", 11, 19, "bootstrap.dcs.ignore_slots",
                  "expected a list");
    expect_err_at(DCS "    ignore_slots:\n      - {}\n", 12, 9, "bootstrap.dcs.ignore_slots[0]",
                  "at least one of name, type, database, plugin");
    expect_err_at(DCS "    ignore_slots:\n      - {name: a}\n      - {kind: logical}\n", 13, 10,
                  "bootstrap.dcs.ignore_slots[1].kind", "unknown key");
    expect_err_at(DCS "    ignore_slots:\n      - {type: both}\n", 12, 16,
                  "bootstrap.dcs.ignore_slots[0].type", "expected physical or logical");

    /* PATCH /config: the same checks, paths without the bootstrap.dcs prefix */
    json_error_t je;
    json_t *j = json_loads("{\"slots\":{\"s1\":{\"type\":\"logical\",\"plugin\":\"x\"}}}", 0, &je);
    assert_non_null(j);
    struct cfg_dcs d;
    struct cfg_error e;
    assert_int_equal(cfg_dcs_from_json(j, &d, &e), PGW_EINVAL);
    assert_string_equal(e.msg, "slots.s1: a logical slot needs both database and plugin");
    json_decref(j);
    j = json_loads("{\"ignore_slots\":[{\"name\":\"a\",\"database\":5}]}", 0, &je);
    assert_non_null(j);
    assert_int_equal(cfg_dcs_from_json(j, &d, &e), 0);
    assert_string_equal(d.ignore_slots.items[0].database, "5");
    cfg_dcs_free(&d);
    json_decref(j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_replica_methods),
        cmocka_unit_test(test_replica_method_errors),
        cmocka_unit_test(test_bootstrap_method),
        cmocka_unit_test(test_split_command),
        cmocka_unit_test(test_slots_yaml),
        cmocka_unit_test(test_slots_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
