/* The fence keeper as a real forked process, on a fake instance: a copy of
 * /bin/sleep named `postgres` plays the postmaster and two children, each
 * child in a session of its own as PostgreSQL's are, all working in the
 * data directory. Past its deadline the keeper kills all three and counts
 * the fence (pgwarden reads the count to learn that the keeper, not itself,
 * stopped PostgreSQL); with no instance running it clears the deadline and
 * counts nothing; a deadline in the future or cleared leaves the processes
 * alone. It runs in a session of its own, and a pgwarden that exits without
 * vouching for PostgreSQL (a failed start) leaves it guarding the deadline. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "ha/keeper.h"

static char dir[64], data[96], bin[96];
static pid_t started[3]; /* killed in teardown whatever happened */

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
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

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/pgw-keeper-XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(data, sizeof data, "%s/data", dir);
    snprintf(bin, sizeof bin, "%s/postgres", dir);
    assert_int_equal(mkdir(data, 0700), 0);
    copy_file("/bin/sleep", bin);
    /* the children are reparented to us when their postmaster dies: reap them */
    assert_int_equal(prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), 0);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    for (int i = 0; i < 3; i++) {
        if (started[i] > 0 && kill(started[i], SIGKILL) == 0)
            waitpid(started[i], NULL, 0);
        started[i] = 0;
    }
    while (waitpid(-1, NULL, WNOHANG) > 0)
        ;
    char p[128];
    snprintf(p, sizeof p, "%s/%s", dir, KEEPER_FILE);
    unlink(p);
    unlink(bin);
    rmdir(data);
    rmdir(dir);
    return 0;
}

/* A postmaster stand-in working in the data directory, with two children
 * each in a session of its own; their pids in pm, b[0], b[1]. */
static pid_t fake_postmaster(pid_t b[2])
{
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pm = fork();
    assert_true(pm >= 0);
    if (pm == 0) {
        if (chdir(data) != 0)
            _exit(1);
        pid_t kids[2];
        for (int i = 0; i < 2; i++) {
            kids[i] = fork();
            if (kids[i] == 0) {
                setsid();
                execl(bin, "postgres", "1000", (char *)NULL);
                _exit(127);
            }
        }
        if (write(fds[1], kids, sizeof kids) != (ssize_t)sizeof kids)
            _exit(1);
        execl(bin, "postgres", "1000", (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    assert_int_equal(read(fds[0], b, 2 * sizeof *b), (ssize_t)(2 * sizeof *b));
    close(fds[0]);
    started[0] = pm;
    started[1] = b[0];
    started[2] = b[1];
    sleep_ms(50); /* each has exec()ed: its executable is `postgres` */
    return pm;
}

/* Waits (bounded) for pid to exit; true when it died of SIGKILL. */
static bool reaped_killed(pid_t pid, long within_ms)
{
    for (long waited = 0; waited <= within_ms; waited += 10) {
        int st;
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid)
            return WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL;
        sleep_ms(10);
    }
    return false;
}

static void still_running(pid_t pid)
{
    assert_int_equal(kill(pid, 0), 0);
}

static void test_kills_every_process_past_the_deadline(void **state)
{
    (void)state;
    pid_t b[2];
    pid_t pm = fake_postmaster(b);
    struct keeper *k;
    char err[256];
    assert_int_equal(keeper_start(dir, data, &k, err, sizeof err), 0);
    assert_int_equal(keeper_fences(k), 0);

    keeper_set_deadline(k, mono_ms() + 60000);
    sleep_ms(10 * KEEPER_TICK_MS);
    still_running(pm); /* a deadline in the future: nothing happens */
    still_running(b[0]);
    keeper_set_deadline(k, 0);
    sleep_ms(10 * KEEPER_TICK_MS);
    still_running(pm); /* no lease: nothing happens */

    keeper_set_deadline(k, mono_ms());
    assert_true(reaped_killed(pm, 5000));
    /* each child has a session of its own: the postmaster's group is not theirs */
    assert_true(reaped_killed(b[0], 5000));
    assert_true(reaped_killed(b[1], 5000));
    /* the keeper counts the fence after its kill: it may not have yet */
    for (int i = 0; i < 250 && (keeper_fences(k) == 0 || keeper_deadline(k) != 0); i++)
        sleep_ms(KEEPER_TICK_MS);
    assert_int_equal(keeper_fences(k), 1);
    assert_int_equal(keeper_deadline(k), 0); /* acted once, then idle */
    assert_true(keeper_alive(k));
    keeper_stop(k);
}

/* A keeper whose deadline passes with nothing of the instance running: it
 * clears the deadline and counts no fence. */
static void test_no_instance_is_no_fence(void **state)
{
    (void)state;
    struct keeper *k;
    char err[256];
    assert_int_equal(keeper_start(dir, data, &k, err, sizeof err), 0);
    keeper_set_deadline(k, mono_ms());
    for (int i = 0; i < 250 && keeper_deadline(k) != 0; i++)
        sleep_ms(KEEPER_TICK_MS);
    assert_int_equal(keeper_deadline(k), 0);
    assert_int_equal(keeper_fences(k), 0);
    keeper_stop(k);
}

/* Stopping pgwarden's process group (kill -STOP -PGID) must not stop the
 * keeper: it has a session of its own. Its memory is locked when the limits
 * allow it (always for root, which has CAP_IPC_LOCK). */
static void test_own_session_and_locked_memory(void **state)
{
    (void)state;
    struct keeper *k;
    char err[256];
    assert_int_equal(keeper_start(dir, data, &k, err, sizeof err), 0);
    pid_t kp = keeper_pid(k);
    for (int i = 0; i < 100 && getsid(kp) != kp; i++)
        sleep_ms(5);
    assert_int_equal(getsid(kp), kp);
    assert_int_equal(getpgid(kp), kp);
    assert_int_not_equal(getpgid(kp), getpgid(0));
    if (geteuid() == 0) {
        for (int i = 0; i < 100 && !keeper_memory_locked(k); i++)
            sleep_ms(5);
        assert_true(keeper_memory_locked(k));
    }
    keeper_stop(k);
}

/* A pgwarden whose start failed exits without vouching for PostgreSQL: the
 * deadline it found stays, and its keeper fences at that deadline alone,
 * then exits. */
static void test_failed_start_leaves_the_fence_armed(void **state)
{
    (void)state;
    pid_t b[2];
    pid_t pm = fake_postmaster(b);
    pid_t daemon = fork();
    assert_true(daemon >= 0);
    if (daemon == 0) {
        struct keeper *k;
        char err[256];
        if (keeper_start(dir, data, &k, err, sizeof err) != 0)
            _exit(2);
        keeper_set_deadline(k, mono_ms() + 300); /* the lease it was counting on */
        keeper_detach(k); /* start-up failed after this */
        _exit(1);
    }
    int st;
    assert_int_equal(waitpid(daemon, &st, 0), daemon);
    assert_int_equal(WEXITSTATUS(st), 1);
    still_running(pm);
    assert_true(reaped_killed(pm, 5000));
    assert_true(reaped_killed(b[0], 5000));
    assert_true(reaped_killed(b[1], 5000));
    /* then the orphaned keeper, with nothing left to guard, exits (we reap it) */
    bool keeper_gone = false;
    for (int i = 0; i < 250 && !keeper_gone; i++) {
        pid_t r = waitpid(-1, NULL, WNOHANG);
        keeper_gone = r < 0 && errno == ECHILD;
        sleep_ms(KEEPER_TICK_MS);
    }
    assert_true(keeper_gone);
}

/* The page cannot be created (a directory stands where it goes): an error
 * naming it, nothing forked, nothing leaked (ASan), the directory intact. */
static void test_page_unusable_is_an_error(void **state)
{
    (void)state;
    char page[600];
    snprintf(page, sizeof page, "%s/%s", dir, KEEPER_FILE);
    assert_int_equal(mkdir(page, 0700), 0);
    struct keeper *k = NULL;
    char err[512] = "";
    assert_int_not_equal(keeper_start(dir, data, &k, err, sizeof err), 0);
    assert_null(k);
    assert_non_null(strstr(err, page));
    assert_non_null(strstr(err, "Is a directory"));
    assert_true(waitpid(-1, NULL, WNOHANG) < 0 && errno == ECHILD); /* no keeper forked */
    assert_int_equal(rmdir(page), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_kills_every_process_past_the_deadline, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_instance_is_no_fence, setup, teardown),
        cmocka_unit_test_setup_teardown(test_own_session_and_locked_memory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_start_leaves_the_fence_armed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_page_unusable_is_an_error, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
