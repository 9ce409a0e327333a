/* A config file holding secrets must not be readable by every user: refused
 * at mode o+r, warned about at g+r, accepted at 0600; secrets given through
 * PGWARDEN_* variables keep a world-readable file acceptable. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/cfg.h"

#define BASE "scope: demo\nname: node1\nraft:\n  self_addr: 10.0.0.1:5010\n  data_dir: /r\n"

static char path[64];

static int setup(void **state)
{
    (void)state;
    snprintf(path, sizeof path, "/tmp/pgw-cfg-perms-XXXXXX");
    int fd = mkstemp(path);
    if (fd < 0)
        return -1;
    close(fd);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    unlink(path);
    unsetenv("PGWARDEN_RAFT_PASSWORD");
    return 0;
}

static void write_file(const char *text, mode_t mode)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    assert_int_equal(chmod(path, mode), 0);
}

static int load(struct cfg *c, struct cfg_error *e, struct cfg_warnings *w)
{
    return cfg_load(path, c, e, w);
}

static void test_world_readable_with_secret_refused(void **state)
{
    (void)state;
    write_file(BASE "  password: hunter2-raft\n", 0644);
    struct cfg c;
    struct cfg_error e;
    struct cfg_warnings w = {0};
    assert_int_equal(load(&c, &e, &w), PGW_EINVAL);
    assert_non_null(strstr(e.msg, "holds secrets (raft.password)"));
    assert_non_null(strstr(e.msg, "every user can read it (mode 0644)"));
    assert_null(strstr(e.msg, "hunter2"));
    cfg_warnings_free(&w);
}

static void test_group_readable_warns(void **state)
{
    (void)state;
    write_file(BASE "  password: hunter2-raft\n", 0640);
    struct cfg c;
    struct cfg_error e;
    struct cfg_warnings w = {0};
    assert_int_equal(load(&c, &e, &w), 0);
    int found = 0;
    for (size_t i = 0; i < w.n; i++)
        found |= strstr(w.items[i], "its group can read it (mode 0640)") != NULL;
    assert_true(found);
    assert_string_equal(c.file_secret_key, "raft.password");
    cfg_free(&c);
    cfg_warnings_free(&w);
}

static void test_private_file_accepted(void **state)
{
    (void)state;
    write_file(BASE "  password: hunter2-raft\n", 0600);
    struct cfg c;
    struct cfg_error e;
    struct cfg_warnings w = {0};
    assert_int_equal(load(&c, &e, &w), 0);
    for (size_t i = 0; i < w.n; i++)
        assert_null(strstr(w.items[i], "read it"));
    assert_string_equal(c.raft.password, "hunter2-raft");
    cfg_free(&c);
    cfg_warnings_free(&w);
}

static void test_secret_from_environment(void **state)
{
    (void)state;
    write_file(BASE, 0644);
    setenv("PGWARDEN_RAFT_PASSWORD", "from-the-env", 1);
    struct cfg c;
    struct cfg_error e;
    struct cfg_warnings w = {0};
    assert_int_equal(load(&c, &e, &w), 0);
    assert_null(c.file_secret_key);
    assert_string_equal(c.raft.password, "from-the-env");
    cfg_free(&c);
    cfg_warnings_free(&w);
    /* the environment overriding a password written in the file: the file still holds one */
    write_file(BASE "  password: hunter2-raft\n", 0644);
    assert_int_equal(load(&c, &e, &w), PGW_EINVAL);
    assert_non_null(strstr(e.msg, "holds secrets (raft.password)"));
    cfg_warnings_free(&w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_world_readable_with_secret_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_group_readable_warns, setup, teardown),
        cmocka_unit_test_setup_teardown(test_private_file_accepted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_secret_from_environment, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
