/* The command lines pgctl runs, seen by the programs themselves: fake
 * pg_ctl, postgres, pg_rewind and pg_controldata scripts in a scratch
 * bin_dir write their arguments to files. With postgresql.config_dir apart
 * from data_dir, PostgreSQL must be started with --config-file (as Patroni
 * starts it): through pg_ctl's -o, which pg_ctl pastes into the postmaster's
 * /bin/sh command line (the fake pg_ctl does the same, so the quoting is
 * checked by a real shell), and on the command lines of the single-user
 * crash recovery and of pg_rewind (version 15 on). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <uv.h>

#include "pg/pgctl.h"

struct fixture {
    char dir[64];
    char bin[128];
    char data[128];
    char etc[160];     /* a config_dir whose name needs quoting in a shell */
    char conf[200];    /* <etc>/postgresql.conf */
};

static void write_file(const char *path, const char *text, mode_t mode)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    assert_int_equal(chmod(path, mode), 0);
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return NULL;
    char *buf = calloc(1, 65536);
    size_t n = fread(buf, 1, 65535, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static void copy_fixture(const char *name, const char *to)
{
    const char *base = getenv("PGW_TEST_DATA");
    assert_non_null(base);
    char path[1024];
    snprintf(path, sizeof path, "%s/pg/%s", base, name);
    char *text = slurp(path);
    assert_non_null(text);
    write_file(to, text, 0644);
    free(text);
}

static void set_version(struct fixture *f, const char *major)
{
    char p[300];
    snprintf(p, sizeof p, "%s/version", f->bin);
    write_file(p, major, 0644);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/pgw-test-pgctl-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->bin, sizeof f->bin, "%s/bin", f->dir);
    snprintf(f->data, sizeof f->data, "%s/data", f->dir);
    snprintf(f->etc, sizeof f->etc, "%s/etc dir/it's", f->dir);
    snprintf(f->conf, sizeof f->conf, "%s/postgresql.conf", f->etc);
    assert_int_equal(mkdir(f->bin, 0755), 0);
    assert_int_equal(mkdir(f->data, 0700), 0);
    char p[300];
    /* pg_ctl: --version, else its arguments, and the postmaster's as
     * /bin/sh splits the -o string pasted into its command line */
    snprintf(p, sizeof p, "%s/pg_ctl", f->bin);
    write_file(p,
               "#!/bin/sh\n"
               "d=${0%/*}\n"
               "if [ \"$1\" = --version ]; then\n"
               "    echo \"pg_ctl (PostgreSQL) $(cat \"$d/version\").5\"; exit 0\n"
               "fi\n"
               "printf '%s\\n' \"$@\" > \"$d/pg_ctl.args\"\n"
               "opts=\n"
               "while [ $# -gt 0 ]; do if [ \"$1\" = -o ]; then opts=$2; fi; shift; done\n"
               "/bin/sh -c \"printf '%s\\n' $opts\" > \"$d/postmaster.args\"\n",
               0755);
    snprintf(p, sizeof p, "%s/postgres", f->bin);
    write_file(p, "#!/bin/sh\nprintf '%s\\n' \"$@\" > \"${0%/*}/postgres.args\"\n", 0755);
    snprintf(p, sizeof p, "%s/pg_rewind", f->bin);
    write_file(p, "#!/bin/sh\nprintf '%s\\n' \"$@\" > \"${0%/*}/pg_rewind.args\"\n", 0755);
    /* not run here, but pgctl_new wants every program of a bin_dir */
    snprintf(p, sizeof p, "%s/initdb", f->bin);
    write_file(p, "#!/bin/sh\nexit 1\n", 0755);
    snprintf(p, sizeof p, "%s/pg_basebackup", f->bin);
    write_file(p, "#!/bin/sh\nexit 1\n", 0755);
    /* crashed the first time (crash recovery runs), shut down after */
    snprintf(p, sizeof p, "%s/pg_controldata", f->bin);
    write_file(p,
               "#!/bin/sh\n"
               "d=${0%/*}\n"
               "if [ -e \"$d/cd.once\" ]; then cat \"$d/shut_down.txt\"; "
               "else : > \"$d/cd.once\"; cat \"$d/crashed.txt\"; fi\n",
               0755);
    snprintf(p, sizeof p, "%s/crashed.txt", f->bin);
    copy_fixture("controldata_crashed.txt", p);
    snprintf(p, sizeof p, "%s/shut_down.txt", f->bin);
    copy_fixture("controldata_shut_down.txt", p);
    set_version(f, "15");
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    static const char *const files[] = {"pg_ctl", "postgres", "pg_rewind", "pg_controldata",
                                        "initdb", "pg_basebackup", "crashed.txt", "shut_down.txt", "version", "cd.once",
                                        "pg_ctl.args", "postmaster.args", "postgres.args",
                                        "pg_rewind.args"};
    char p[300];
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", f->bin, files[i]);
        unlink(p);
    }
    rmdir(f->bin);
    rmdir(f->data);
    snprintf(p, sizeof p, "%s.startup.log", f->data);
    unlink(p);
    rmdir(f->dir);
    free(f);
    return 0;
}

static void done(struct pgctl *ctl, int status, void *ctx)
{
    (void)ctl;
    *(int *)ctx = status;
}

/* Run the loop until the operation called back. */
static void wait_done(uv_loop_t *loop, int *status)
{
    for (int i = 0; i < 10000 && *status == 1; i++)
        uv_run(loop, UV_RUN_ONCE);
    assert_int_not_equal(*status, 1);
}

static char *args_of(struct fixture *f, const char *prog)
{
    char p[300];
    snprintf(p, sizeof p, "%s/%s.args", f->bin, prog);
    char *t = slurp(p);
    if (t == NULL)
        fail_msg("%s did not run", prog);
    unlink(p);
    return t;
}

static struct pgctl *new_ctl(uv_loop_t *loop, struct fixture *f, const char *config_file)
{
    struct pgctl_opts o = {.bin_dir = f->bin, .data_dir = f->data, .config_file = config_file,
                           .timeout_ms = 20000};
    struct pgctl *ctl = NULL;
    char eb[512];
    if (pgctl_new(loop, &o, &ctl, eb, sizeof eb) != PGW_OK)
        fail_msg("pgctl_new: %s", eb);
    return ctl;
}

static void close_ctl(uv_loop_t *loop, struct pgctl *ctl)
{
    pgctl_destroy(ctl);
    uv_run(loop, UV_RUN_DEFAULT);
}

static void rewind_once(uv_loop_t *loop, struct fixture *f, struct pgctl *ctl)
{
    char p[300];
    snprintf(p, sizeof p, "%s/cd.once", f->bin);
    unlink(p);
    int st = 1;
    assert_int_equal(pgctl_rewind(ctl, "host=10.0.0.2 port=5432 user=postgres dbname=postgres",
                                  20000, done, &st), PGW_OK);
    wait_done(loop, &st);
    if (st != PGW_OK)
        fail_msg("rewind: %s", pgctl_error(ctl));
}

static void test_config_file_on_every_command_line(void **state)
{
    struct fixture *f = *state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct pgctl *ctl = new_ctl(&loop, f, f->conf);
    char want[400];

    /* pg_ctl start: -o carries the file, quoted for the shell */
    int st = 1;
    assert_int_equal(pgctl_start(ctl, NULL, 20000, done, &st), PGW_OK);
    wait_done(&loop, &st);
    if (st != PGW_OK)
        fail_msg("start: %s", pgctl_error(ctl));
    char *a = args_of(f, "pg_ctl");
    snprintf(want, sizeof want, "start\n-w\n-t\n20\n-D\n%s\n-l\n%s.startup.log\n-o\n"
             "--config-file='%s/etc dir/it'\\''s/postgresql.conf'\n", f->data, f->data, f->dir);
    assert_string_equal(a, want);
    free(a);
    a = args_of(f, "postmaster");
    snprintf(want, sizeof want, "--config-file=%s\n", f->conf);
    assert_string_equal(a, want); /* one word, as written, after the shell */
    free(a);

    /* with options of the caller's: after the file */
    st = 1;
    assert_int_equal(pgctl_start(ctl, "-c work_mem=1MB", 20000, done, &st), PGW_OK);
    wait_done(&loop, &st);
    assert_int_equal(st, PGW_OK);
    free(args_of(f, "pg_ctl"));
    a = args_of(f, "postmaster");
    snprintf(want, sizeof want, "--config-file=%s\n-c\nwork_mem=1MB\n", f->conf);
    assert_string_equal(a, want);
    free(a);

    /* rewind: crash recovery in single-user mode, then pg_rewind (15) */
    rewind_once(&loop, f, ctl);
    a = args_of(f, "postgres");
    snprintf(want, sizeof want, "--single\n-D\n%s\n-c\narchive_mode=on\n-c\narchive_command=false\n"
             "-c\nhot_standby=off\n--config-file=%s\ntemplate1\n", f->data, f->conf);
    assert_string_equal(a, want);
    free(a);
    a = args_of(f, "pg_rewind");
    snprintf(want, sizeof want, "--target-pgdata=%s\n--source-server=host=10.0.0.2 port=5432 "
             "user=postgres dbname=postgres\n--progress\n--config-file=%s\n", f->data, f->conf);
    assert_string_equal(a, want);
    free(a);
    close_ctl(&loop, ctl);

    /* pg_rewind 14 has no --config-file (and runs no postgres after ours) */
    set_version(f, "14");
    ctl = new_ctl(&loop, f, f->conf);
    rewind_once(&loop, f, ctl);
    a = args_of(f, "postgres");
    assert_non_null(strstr(a, "--config-file="));
    free(a);
    a = args_of(f, "pg_rewind");
    assert_null(strstr(a, "--config-file"));
    free(a);
    close_ctl(&loop, ctl);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* config_dir = data_dir: PostgreSQL finds postgresql.conf by itself; the
 * command lines are what they always were. */
static void test_no_config_file(void **state)
{
    struct fixture *f = *state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct pgctl *ctl = new_ctl(&loop, f, "");
    int st = 1;
    assert_int_equal(pgctl_start(ctl, NULL, 20000, done, &st), PGW_OK);
    wait_done(&loop, &st);
    assert_int_equal(st, PGW_OK);
    char *a = args_of(f, "pg_ctl");
    assert_null(strstr(a, "-o\n"));
    free(a);
    free(args_of(f, "postmaster"));
    rewind_once(&loop, f, ctl);
    a = args_of(f, "postgres");
    assert_null(strstr(a, "config-file"));
    assert_non_null(strstr(a, "hot_standby=off\ntemplate1\n"));
    free(a);
    a = args_of(f, "pg_rewind");
    assert_null(strstr(a, "config-file"));
    free(a);
    close_ctl(&loop, ctl);
    assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_config_file_on_every_command_line, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_config_file, setup, teardown),
    };
    return cmocka_run_group_tests_name("pgctl_cmdline", tests, NULL, NULL);
}
