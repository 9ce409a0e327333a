/* bootstrap.users (common/cfg_users.c): the roles created after the
 * bootstrap. Options are PostgreSQL role attributes only, normalised;
 * anything else is refused naming the user and the option; the users named
 * like pgwarden's own roles are dropped with a warning; a password is never
 * printed (reload diff, messages). */
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
#define PG                                                                                        \
    "postgresql:\n  listen: 10.0.0.1:5432\n  data_dir: /d\n  authentication:\n"                  \
    "    superuser: {username: postgres}\n    replication: {username: replicator}\n"             \
    "    rewind: {username: rewinder}\n"
#define SECRET "Sekr1t-pw"


/* Refused with a message holding every one of the NULL-terminated pieces,
 * and never the password. */
static void expect_refused(const char *yaml, ...)
{
    struct cfg c;
    struct cfg_error e;
    int rc = load(yaml, &c, &e, NULL);
    if (rc == 0) {
        cfg_free(&c);
        fail_msg("accepted:\n%s", yaml);
    }
    assert_int_equal(rc, PGW_EINVAL);
    va_list ap;
    va_start(ap, yaml);
    for (const char *p = va_arg(ap, const char *); p != NULL; p = va_arg(ap, const char *))
        if (strstr(e.msg, p) == NULL)
            fail_msg("message lacks \"%s\": %s", p, e.msg);
    va_end(ap);
    if (strstr(e.msg, SECRET) != NULL)
        fail_msg("the password is in the message: %s", e.msg);
}

static const struct cfg_user *find(const struct cfg_users *l, const char *name)
{
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->items[i].name, name) == 0)
            return &l->items[i];
    return NULL;
}

static void test_users_parsed(void **state)
{
    (void)state;
    struct cfg c;
    load_ok(BASE PG "bootstrap:\n  users:\n"
                    "    admin:\n      password: " SECRET "\n      options:\n"
                    "        - createrole\n        - CreateDB\n"
                    "    app:\n      options: ['connection   limit 5', \"valid until '2030-01-01 "
                    "00:00:00+00'\", nologin, noInherit]\n"
                    "    reader: {password: '', options: []}\n",
            &c, NULL);
    const struct cfg_users *l = &c.bootstrap.users;
    assert_int_equal(l->n, 3);
    const struct cfg_user *a = find(l, "admin");
    assert_non_null(a);
    assert_string_equal(a->password, SECRET);
    assert_int_equal(a->attrs.n, 2);
    assert_string_equal(a->attrs.items[0], "CREATEROLE");
    assert_string_equal(a->attrs.items[1], "CREATEDB");
    const struct cfg_user *b = find(l, "app");
    assert_non_null(b);
    assert_null(b->password);
    assert_int_equal(b->attrs.n, 4);
    assert_string_equal(b->attrs.items[0], "CONNECTION LIMIT 5");
    /* the literal keeps its text and case; the keywords are upper-cased */
    assert_string_equal(b->attrs.items[1], "VALID UNTIL '2030-01-01 00:00:00+00'");
    assert_string_equal(b->attrs.items[2], "NOLOGIN");
    assert_string_equal(b->attrs.items[3], "NOINHERIT");
    const struct cfg_user *r = find(l, "reader");
    assert_non_null(r);
    assert_null(r->password); /* an empty password is none, as Patroni's `if password` */
    assert_int_equal(r->attrs.n, 0);
    cfg_free(&c);

    /* nothing given: no users */
    load_ok(BASE PG, &c, NULL);
    assert_int_equal(c.bootstrap.users.n, 0);
    cfg_free(&c);
}

static void test_every_attribute_accepted(void **state)
{
    (void)state;
    static const char *const ok[] = {
        "superuser", "nosuperuser", "createdb", "nocreatedb", "createrole", "nocreaterole",
        "inherit", "noinherit", "login", "nologin", "replication", "noreplication",
        "bypassrls", "nobypassrls", "CONNECTION LIMIT -1", "valid until 'infinity'",
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        char yaml[1024];
        snprintf(yaml, sizeof yaml, BASE PG "bootstrap:\n  users:\n    u1: {options: [\"%s\"]}\n",
                 ok[i]);
        struct cfg c;
        load_ok(yaml, &c, NULL);
        assert_int_equal(c.bootstrap.users.items[0].attrs.n, 1);
        cfg_free(&c);
    }
}

static void test_bad_options_refused(void **state)
{
    (void)state;
#define USERS BASE PG "bootstrap:\n  users:\n"
    /* not an attribute: the user and the option are named */
    expect_refused(USERS "    admin:\n      password: " SECRET "\n      options: [createrole, "
                         "superpower]\n",
                   "bootstrap.users.admin.options[1]", "user admin", "\"superpower\"",
                   "not a PostgreSQL role attribute", NULL);
    /* SQL pasted into an option, which Patroni would run */
    expect_refused(USERS "    eve: {options: [\"login; DROP TABLE x\"]}\n", "user eve",
                   "not a PostgreSQL role attribute", NULL);
    /* the password belongs in password: */
    expect_refused(USERS "    bob: {options: [\"password 'x'\"]}\n", "user bob",
                   "the password goes in password:", NULL);
    expect_refused(USERS "    bob: {options: [connection limit lots]}\n", "user bob",
                   "\"connection limit lots\"", NULL);
    expect_refused(USERS "    bob: {options: [\"valid until 2030-01-01\"]}\n", "user bob",
                   "not a PostgreSQL role attribute", NULL);
    expect_refused(USERS "    bob: {options: [\"valid until '2030' || 'x'\"]}\n", "user bob",
                   "not a PostgreSQL role attribute", NULL);
    expect_refused(USERS "    bob: {options: [login, nologin]}\n", "user bob",
                   "\"nologin\" sets LOGIN again", NULL);
    expect_refused(USERS "    bob: {options: [[login]]}\n", "user bob", "expected a role attribute",
                   NULL);
    expect_refused(USERS "    bob: {options: createdb}\n", "user bob", "expected a list", NULL);
    expect_refused(USERS "    bob: {password: " SECRET ", colour: red}\n",
                   "bootstrap.users.bob.colour", "unknown key", NULL);
    expect_refused(USERS "    bob: {password: [" SECRET "]}\n", "user bob",
                   "expected a password", NULL);
    expect_refused(USERS "    pg_bob: {}\n", "user pg_bob", "reserved", NULL);
#undef USERS
}

static void test_non_mapping_refused(void **state)
{
    (void)state;
    expect_refused(BASE PG "bootstrap:\n  users: [admin, app]\n", "bootstrap.users",
                   "expected a mapping of user name: {password, options}", NULL);
    expect_refused(BASE PG "bootstrap:\n  users: admin\n", "bootstrap.users",
                   "expected a mapping", NULL);
    expect_refused(BASE PG "bootstrap:\n  users:\n    admin: " SECRET "\n",
                   "bootstrap.users.admin", "user admin: expected a mapping {password, options}",
                   NULL);
    expect_refused(BASE PG "bootstrap:\n  users:\n    admin:\n", "user admin",
                   "expected a mapping", NULL);
}

/* Patroni skips a user named like the superuser, replication or rewind
 * user: pgwarden too, saying so. */
static void test_own_roles_skipped(void **state)
{
    (void)state;
    struct cfg c;
    struct cfg_warnings w = {0};
    load_ok(BASE PG "bootstrap:\n  users:\n    postgres: {options: [createdb]}\n"
                    "    app: {}\n    replicator: {}\n    rewinder: {}\n",
            &c, &w);
    assert_int_equal(c.bootstrap.users.n, 1);
    assert_string_equal(c.bootstrap.users.items[0].name, "app");
    const char *which[] = {"users.postgres is postgresql.authentication.superuser.username",
                           "users.replicator is postgresql.authentication.replication.username",
                           "users.rewinder is postgresql.authentication.rewind.username"};
    for (size_t i = 0; i < 3; i++) {
        bool found = false;
        for (size_t j = 0; j < w.n; j++)
            found |= strstr(w.items[j], which[i]) != NULL && strstr(w.items[j], "skipped") != NULL;
        if (!found)
            fail_msg("no warning \"%s ... skipped\"", which[i]);
    }
    cfg_warnings_free(&w);
    cfg_free(&c);
}

static void collect(const char *line, void *ctx)
{
    char *out = ctx;
    strncat(out, line, 4096 - strlen(out) - 2);
    strcat(out, "\n");
}

/* A reload's diff says that bootstrap.users changed, never the password. */
static void test_password_never_printed(void **state)
{
    (void)state;
    struct cfg a, b;
    load_ok(BASE PG "bootstrap:\n  users:\n    admin: {password: " SECRET ", options: [createdb]}\n",
            &a, NULL);
    load_ok(BASE PG "bootstrap:\n  users:\n    admin: {password: " SECRET "2, options: [createdb]}\n",
            &b, NULL);
    char out[4096] = "";
    assert_int_equal(cfg_diff(&a, &b, collect, out), 1);
    assert_non_null(strstr(out, "bootstrap.users"));
    assert_null(strstr(out, SECRET));
    /* same users: no difference */
    out[0] = '\0';
    assert_int_equal(cfg_diff(&a, &a, collect, out), 0);
    cfg_free(&a);
    cfg_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_users_parsed),
        cmocka_unit_test(test_every_attribute_accepted),
        cmocka_unit_test(test_bad_options_refused),
        cmocka_unit_test(test_non_mapping_refused),
        cmocka_unit_test(test_own_roles_skipped),
        cmocka_unit_test(test_password_never_printed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
