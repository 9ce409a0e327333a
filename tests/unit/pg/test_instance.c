/* Finding and killing every process of an instance (pg/instance.h), on a
 * fake instance: a copy of /bin/sleep named `postgres` plays the postmaster
 * and its children, each child in a session of its own as PostgreSQL's are,
 * all in the data directory; bystanders that must survive sit beside them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "pg/instance.h"

struct fake {
    char root[64], data[128], bin[128];
    pid_t postmaster;
    pid_t shell_in_data;     /* an operator's process in the data dir: not the instance */
    pid_t postgres_elsewhere; /* another instance's postgres: not this one */
};

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static bool alive(pid_t pid)
{
    char path[64], buf[256];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return false;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return false;
    buf[n] = '\0';
    const char *p = strrchr(buf, ')');
    return p != NULL && p[2] != 'Z' && p[2] != 'X';
}

static void copy_file(const char *from, const char *to)
{
    int in = open(from, O_RDONLY), out = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0755);
    assert_true(in >= 0 && out >= 0);
    char buf[65536];
    ssize_t n;
    while ((n = read(in, buf, sizeof buf)) > 0)
        assert_int_equal(write(out, buf, (size_t)n), n);
    close(in);
    close(out);
}

static pid_t spawn_in(const char *dir, const char *exe, const char *arg0, bool new_session)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (chdir(dir) != 0 || (new_session && setsid() < 0))
            _exit(127);
        execl(exe, arg0, "1000", (char *)NULL);
        _exit(127);
    }
    return pid;
}

/* The "postmaster": two children each in its own session (as every child
 * of a real postmaster), one child running a shell program (archive_command),
 * then it becomes a long sleep itself. */
static pid_t spawn_instance(const struct fake *f)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (chdir(f->data) != 0)
            _exit(127);
        for (int i = 0; i < 2; i++)
            if (fork() == 0) {
                setsid();
                execl(f->bin, "postgres", "1000", (char *)NULL);
                _exit(127);
            }
        if (fork() == 0) {
            setsid();
            execl("/bin/sh", "sh", "-c", "exec /bin/sleep 1000", (char *)NULL);
            _exit(127);
        }
        execl(f->bin, "postgres", "1000", (char *)NULL);
        _exit(127);
    }
    return pid;
}

static void wait_count(const struct pginst *pi, unsigned want)
{
    for (int i = 0; i < 200 && pginst_count(pi) != want; i++)
        sleep_ms(10);
    assert_int_equal(pginst_count(pi), want);
}

static int setup(void **state)
{
    struct fake *f = calloc(1, sizeof *f);
    snprintf(f->root, sizeof f->root, "/tmp/pgw-inst-XXXXXX");
    if (mkdtemp(f->root) == NULL)
        return -1;
    snprintf(f->data, sizeof f->data, "%s/data", f->root);
    snprintf(f->bin, sizeof f->bin, "%s/postgres", f->root);
    mkdir(f->data, 0700);
    copy_file("/bin/sleep", f->bin);
    /* orphans come back to this process, so their end can be seen and reaped */
    prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    f->shell_in_data = spawn_in(f->data, "/bin/sleep", "sleep", false);
    f->postgres_elsewhere = spawn_in(f->root, f->bin, "postgres", false);
    *state = f;
    return 0;
}

/* Every process this test started, or adopted as a subreaper. */
static void kill_children(void)
{
    for (int round = 0; round < 200; round++) {
        bool any = false;
        char cmd[64];
        snprintf(cmd, sizeof cmd, "/proc/%d/task/%d/children", (int)getpid(), (int)getpid());
        FILE *fp = fopen(cmd, "r");
        int pid;
        while (fp != NULL && fscanf(fp, "%d", &pid) == 1) {
            kill(pid, SIGKILL);
            any = true;
        }
        if (fp != NULL)
            fclose(fp);
        while (waitpid(-1, NULL, WNOHANG) > 0)
            ;
        if (!any)
            return;
        sleep_ms(5);
    }
}

static int teardown(void **state)
{
    struct fake *f = *state;
    kill_children();
    unlink(f->bin);
    rmdir(f->data);
    rmdir(f->root);
    free(f);
    return 0;
}

static void reap(void)
{
    while (waitpid(-1, NULL, WNOHANG) > 0)
        ;
}

static void test_kills_every_process_postmaster_first(void **state)
{
    struct fake *f = *state;
    struct pginst pi;
    char err[256];
    assert_int_equal(pginst_init(&pi, f->data, err, sizeof err), 0);
    f->postmaster = spawn_instance(f);
    wait_count(&pi, 4); /* postmaster, two children, the shell child */
    struct pginst_kill_result r;
    pginst_kill(&pi, 2000, &r);
    assert_int_equal(r.found, 4);
    assert_int_equal(r.left, 0);
    assert_true(r.killed >= 4);
    assert_int_equal(r.first_killed, f->postmaster);
    assert_int_equal(pginst_count(&pi), 0);
    /* The scan stops counting a process once its working directory is
     * released in its exit (it runs no more code of its own), a moment
     * before it turns zombie; under load that moment was seen here (CI). */
    for (int i = 0; i < 400 && alive(f->postmaster); i++) {
        reap();
        sleep_ms(5);
    }
    assert_false(alive(f->postmaster));
    assert_true(alive(f->shell_in_data));
    assert_true(alive(f->postgres_elsewhere));
}

/* The postmaster already died (OOM killer, or a fence that signalled it
 * alone): its children run on, in sessions of their own, re-parented. */
static void test_kills_backends_that_outlived_their_postmaster(void **state)
{
    struct fake *f = *state;
    struct pginst pi;
    char err[256];
    assert_int_equal(pginst_init(&pi, f->data, err, sizeof err), 0);
    f->postmaster = spawn_instance(f);
    wait_count(&pi, 4);
    kill(f->postmaster, SIGKILL);
    for (int i = 0; i < 200 && alive(f->postmaster); i++) {
        reap();
        sleep_ms(5);
    }
    /* a signal to the postmaster's process group reaches none of them */
    kill(-f->postmaster, SIGKILL);
    sleep_ms(20);
    reap();
    unsigned orphans = pginst_count(&pi);
    assert_int_equal(orphans, 2); /* the two postgres children; the shell's parent is gone */
    struct pginst_kill_result r;
    pginst_kill(&pi, 2000, &r);
    assert_int_equal(r.left, 0);
    assert_int_equal(r.found, 2);
    reap();
    assert_int_equal(pginst_count(&pi), 0);
    assert_true(alive(f->shell_in_data));
}

/* `postgres --single` (crash recovery pgwarden runs before pg_rewind) is
 * part of the instance, so a fence kills it, but it serves no client: it
 * is not counted as something that could still acknowledge a commit. */
static void test_single_user_serves_nothing(void **state)
{
    struct fake *f = *state;
    char sh[160];
    snprintf(sh, sizeof sh, "%s/postgres-sh", f->root);
    copy_file("/bin/sh", sh);
    char named[160];
    snprintf(named, sizeof named, "%s/bin", f->root);
    mkdir(named, 0755);
    snprintf(named, sizeof named, "%s/bin/postgres", f->root);
    assert_int_equal(rename(sh, named), 0);
    int in[2];
    assert_int_equal(pipe(in), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(in[0], 0);
        close(in[1]);
        if (chdir(f->data) != 0)
            _exit(127);
        /* a builtin read that never returns: the shell stays the only process */
        execl(named, "postgres", "-c", "read x", "--single", (char *)NULL);
        _exit(127);
    }
    close(in[0]);
    struct pginst pi;
    char err[256];
    assert_int_equal(pginst_init(&pi, f->data, err, sizeof err), 0);
    wait_count(&pi, 1);
    assert_int_equal(pginst_count_serving(&pi), 0);
    struct pginst_kill_result r;
    pginst_kill(&pi, 2000, &r);
    assert_int_equal(r.found, 1);
    assert_int_equal(r.left, 0);
    close(in[1]);
    waitpid(pid, NULL, 0);
    unlink(named);
    snprintf(named, sizeof named, "%s/bin", f->root);
    rmdir(named);
}

static void test_nothing_to_kill(void **state)
{
    struct fake *f = *state;
    struct pginst pi;
    char err[256];
    assert_int_equal(pginst_init(&pi, f->data, err, sizeof err), 0);
    struct pginst_kill_result r;
    pginst_kill(&pi, 0, &r);
    assert_int_equal(r.found, 0);
    assert_int_equal(r.killed, 0);
    assert_int_equal(r.left, 0);
    assert_true(alive(f->shell_in_data));
}

static void test_init_resolves_paths(void **state)
{
    struct fake *f = *state;
    struct pginst pi;
    char err[256];
    assert_int_equal(pginst_init(&pi, "relative/data", err, sizeof err), PGW_EINVAL);
    assert_non_null(strstr(err, "absolute"));
    char link[160], want[PATH_MAX], path[200];
    snprintf(link, sizeof link, "%s/link", f->root);
    assert_int_equal(symlink(f->data, link), 0);
    /* through a symlink, with a trailing slash */
    snprintf(path, sizeof path, "%s/", link);
    assert_int_equal(pginst_init(&pi, path, err, sizeof err), 0);
    assert_non_null(realpath(f->data, want));
    assert_string_equal(pi.dir, want);
    /* not created yet: resolved through its parent */
    snprintf(path, sizeof path, "%s/not-yet", link);
    assert_int_equal(pginst_init(&pi, path, err, sizeof err), 0);
    char want2[PATH_MAX + 16];
    snprintf(want2, sizeof want2, "%s/not-yet", want);
    assert_string_equal(pi.dir, want2);
    unlink(link);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_kills_every_process_postmaster_first, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kills_backends_that_outlived_their_postmaster, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_single_user_serves_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nothing_to_kill, setup, teardown),
        cmocka_unit_test_setup_teardown(test_init_resolves_paths, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
