/* Child processes on the loop: output lines, exit codes, deadlines,
 * cancellation, spawn errors; the loop always closes cleanly. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "pg/proc.h"

struct outcome {
    int calls;
    int status, exit_code, term_signal;
    char tail[4200];
    char output[256];
};

static void done(struct proc *p, const struct proc_result *r, void *ctx)
{
    (void)p;
    struct outcome *o = ctx;
    o->calls++;
    o->status = r->status;
    o->exit_code = r->exit_code;
    o->term_signal = r->term_signal;
    snprintf(o->tail, sizeof o->tail, "%s", r->tail);
    size_t n = r->output_len < sizeof o->output - 1 ? r->output_len : sizeof o->output - 1;
    memcpy(o->output, r->output, n);
    o->output[n] = '\0';
}

static void run_loop(uv_loop_t *loop)
{
    for (int i = 0; i < 1000 && uv_run(loop, UV_RUN_ONCE); i++)
        ;
}

static void test_output_and_exit_code(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    char *argv[] = {"sh", "-c", "echo first; echo err >&2; printf 'p1\\rp2'; echo \"$PGW_X\"; exit 3", NULL};
    char *env[] = {"PGW_X=from-env", NULL};
    struct proc_spec spec = {.name = "sh", .file = "/bin/sh", .argv = argv, .env_extra = env,
                             .timeout_ms = 5000, .capture_stdout = 1024};
    struct outcome o = {0};
    struct proc *p;
    char eb[256];
    assert_int_equal(proc_spawn(&loop, &spec, done, &o, &p, eb, sizeof eb), 0);
    assert_true(proc_pid(p) > 0);
    assert_int_equal(o.calls, 0); /* never from the starting call */
    run_loop(&loop);
    assert_int_equal(o.calls, 1);
    assert_int_equal(o.status, PGW_ECHILD);
    assert_int_equal(o.exit_code, 3);
    assert_int_equal(o.term_signal, 0);
    assert_non_null(strstr(o.tail, "first\n"));
    assert_non_null(strstr(o.tail, "err\n"));
    assert_non_null(strstr(o.tail, "p1\n")); /* '\r' ends a progress line */
    assert_non_null(strstr(o.tail, "p2"));
    assert_non_null(strstr(o.tail, "from-env"));
    assert_non_null(strstr(o.output, "first\np1\rp2"));
    assert_null(strstr(o.output, "err"));
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_success(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    char *argv[] = {"true", NULL};
    struct proc_spec spec = {.file = "/bin/true", .argv = argv, .timeout_ms = 5000};
    struct outcome o = {0};
    char eb[256];
    assert_int_equal(proc_spawn(&loop, &spec, done, &o, NULL, eb, sizeof eb), 0);
    run_loop(&loop);
    assert_int_equal(o.calls, 1);
    assert_int_equal(o.status, PGW_OK);
    assert_int_equal(o.exit_code, 0);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_timeout(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    char *argv[] = {"sleep", "30", NULL};
    struct proc_spec spec = {.file = "/bin/sleep", .argv = argv, .timeout_ms = 200};
    struct outcome o = {0};
    char eb[256];
    uint64_t t0 = uv_hrtime();
    assert_int_equal(proc_spawn(&loop, &spec, done, &o, NULL, eb, sizeof eb), 0);
    run_loop(&loop);
    uint64_t ms = (uv_hrtime() - t0) / 1000000;
    assert_int_equal(o.calls, 1);
    assert_int_equal(o.status, PGW_ETIMEDOUT);
    assert_int_equal(o.term_signal, SIGTERM);
    assert_true(ms >= 200 && ms < 3000);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_timeout_escalates_to_sigkill(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    char *argv[] = {"sh", "-c", "trap '' TERM; while :; do sleep 0.1; done", NULL};
    struct proc_spec spec = {.file = "/bin/sh", .argv = argv, .timeout_ms = 100};
    struct outcome o = {0};
    char eb[256];
    assert_int_equal(proc_spawn(&loop, &spec, done, &o, NULL, eb, sizeof eb), 0);
    run_loop(&loop);
    assert_int_equal(o.calls, 1);
    assert_int_equal(o.status, PGW_ETIMEDOUT);
    assert_int_equal(o.term_signal, SIGKILL);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_cancel(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    char *argv[] = {"sleep", "30", NULL};
    struct proc_spec spec = {.file = "/bin/sleep", .argv = argv, .timeout_ms = 60000};
    struct outcome o = {0};
    struct proc *p;
    char eb[256];
    assert_int_equal(proc_spawn(&loop, &spec, done, &o, &p, eb, sizeof eb), 0);
    proc_cancel(p);
    assert_int_equal(o.calls, 0);
    run_loop(&loop);
    assert_int_equal(o.calls, 1);
    assert_int_equal(o.status, PGW_ECANCELED);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_abandon(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    char *argv[] = {"sleep", "30", NULL};
    struct proc_spec spec = {.file = "/bin/sleep", .argv = argv, .timeout_ms = 60000};
    struct outcome o = {0};
    struct proc *p;
    char eb[256];
    assert_int_equal(proc_spawn(&loop, &spec, done, &o, &p, eb, sizeof eb), 0);
    proc_abandon(p);
    run_loop(&loop);
    assert_int_equal(o.calls, 0);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_missing_program(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    char *argv[] = {"nope", NULL};
    struct proc_spec spec = {.name = "initdb", .file = "/nonexistent/bin/initdb", .argv = argv,
                             .timeout_ms = 1000};
    struct outcome o = {0};
    char eb[256] = "";
    int rc = proc_spawn(&loop, &spec, done, &o, NULL, eb, sizeof eb);
    assert_int_equal(rc, PGW_ENOTFOUND);
    assert_non_null(strstr(eb, "/nonexistent/bin/initdb"));
    run_loop(&loop);
    assert_int_equal(o.calls, 0);
    assert_int_equal(uv_loop_close(&loop), 0);
    struct proc_spec bad = {.file = NULL};
    assert_int_equal(proc_spawn(&loop, &bad, done, &o, NULL, eb, sizeof eb), PGW_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_output_and_exit_code),
        cmocka_unit_test(test_success),
        cmocka_unit_test(test_timeout),
        cmocka_unit_test(test_timeout_escalates_to_sigkill),
        cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_abandon),
        cmocka_unit_test(test_missing_program),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
