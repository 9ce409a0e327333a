/* The fence keeper as a real forked process: past its deadline it kills a
 * stand-in "postmaster" and that process's whole group (a "backend" forked
 * by it) and counts the fence; with no postmaster.pid it clears the
 * deadline and counts nothing (pgwarden reads the count to learn that the
 * keeper, not itself, stopped PostgreSQL); a deadline in the future or
 * cleared leaves the processes alone. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "ha/keeper.h"

static char dir[64];
static pid_t started[2]; /* killed in teardown whatever happened */

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

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/pgw-keeper-XXXXXX");
    assert_non_null(mkdtemp(dir));
    /* the "backend" is reparented to us when its postmaster dies: reap it */
    assert_int_equal(prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), 0);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    for (int i = 0; i < 2; i++) {
        if (started[i] > 0 && kill(started[i], SIGKILL) == 0)
            waitpid(started[i], NULL, 0);
        started[i] = 0;
    }
    char p[128];
    snprintf(p, sizeof p, "%s/postmaster.pid", dir);
    unlink(p);
    snprintf(p, sizeof p, "%s/%s", dir, KEEPER_FILE);
    unlink(p);
    rmdir(dir);
    return 0;
}

/* A postmaster stand-in in its own session with one child; returns both
 * pids (the backend's through a pipe). */
static pid_t fake_postmaster(pid_t *backend)
{
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pm = fork();
    assert_true(pm >= 0);
    if (pm == 0) {
        setsid();
        pid_t b = fork();
        if (b == 0) {
            for (;;)
                pause();
        }
        if (write(fds[1], &b, sizeof b) != (ssize_t)sizeof b)
            _exit(1);
        for (;;)
            pause();
    }
    close(fds[1]);
    assert_int_equal(read(fds[0], backend, sizeof *backend), (ssize_t)sizeof *backend);
    close(fds[0]);
    started[0] = pm;
    started[1] = *backend;
    char p[128];
    snprintf(p, sizeof p, "%s/postmaster.pid", dir);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fprintf(f, "%d\n%s\n", (int)pm, dir);
    fclose(f);
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

static void kill_and_reap(pid_t pid)
{
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

static void test_kills_the_group_past_the_deadline(void **state)
{
    (void)state;
    pid_t backend;
    pid_t pm = fake_postmaster(&backend);
    struct keeper *k;
    char err[256];
    assert_int_equal(keeper_start(dir, dir, &k, err, sizeof err), 0);
    assert_int_equal(keeper_fences(k), 0);

    keeper_set_deadline(k, mono_ms() + 60000);
    sleep_ms(10 * KEEPER_TICK_MS);
    still_running(pm); /* a deadline in the future: nothing happens */
    still_running(backend);
    keeper_set_deadline(k, 0);
    sleep_ms(10 * KEEPER_TICK_MS);
    still_running(pm); /* no lease: nothing happens */

    keeper_set_deadline(k, mono_ms());
    assert_true(reaped_killed(pm, 5000));
    assert_true(reaped_killed(backend, 5000));
    /* the keeper counts the fence after its kill: it may not have yet */
    for (int i = 0; i < 250 && (keeper_fences(k) == 0 || keeper_deadline(k) != 0); i++)
        sleep_ms(KEEPER_TICK_MS);
    assert_int_equal(keeper_fences(k), 1);
    assert_int_equal(keeper_deadline(k), 0); /* acted once, then idle */
    assert_true(keeper_alive(k));
    keeper_stop(k);
}

/* A keeper whose deadline passes with no live postmaster to kill: it
 * clears the deadline and counts no fence. */
static void expect_deadline_without_fence(void)
{
    struct keeper *k;
    char err[256];
    assert_int_equal(keeper_start(dir, dir, &k, err, sizeof err), 0);
    keeper_set_deadline(k, mono_ms());
    for (int i = 0; i < 250 && keeper_deadline(k) != 0; i++)
        sleep_ms(KEEPER_TICK_MS);
    assert_int_equal(keeper_deadline(k), 0);
    assert_int_equal(keeper_fences(k), 0);
    keeper_stop(k);
}

static void test_no_postmaster_is_no_fence(void **state)
{
    (void)state;
    expect_deadline_without_fence();
}

static void test_stale_pid_file_kills_nothing(void **state)
{
    (void)state;
    pid_t backend;
    pid_t pm = fake_postmaster(&backend);
    kill_and_reap(pm); /* the postmaster is gone; its pid file stays */
    kill_and_reap(backend);
    expect_deadline_without_fence();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_kills_the_group_past_the_deadline, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_postmaster_is_no_fence, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stale_pid_file_kills_nothing, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
