/* Operator hooks (ha/hooks.c): the shlex-like word splitter against what
 * Python's shlex.split gives for the same lines, output captured into the
 * log, exit codes, the deadline killing the whole process group, a newer
 * call of a kind killing the older one (and only that kind), spawn errors,
 * close with a grace period. Every loop is bounded; every test ends with
 * uv_loop_close() == 0. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/log.h"
#include "ha/hooks.h"

/* --- the splitter --------------------------------------------------------- */

struct split_case {
    const char *line;
    const char *words[6]; /* NULL-terminated; from Python 3.11 shlex.split(line) */
};

static void test_split_like_shlex(void **state)
{
    (void)state;
    static const struct split_case cases[] = {
        {"/bin/echo a  b", {"/bin/echo", "a", "b", NULL}},
        {"cmd 'a b' \"c d\"", {"cmd", "a b", "c d", NULL}},
        {"cmd a\"b\"'c'", {"cmd", "abc", NULL}},
        {"cmd ''", {"cmd", "", NULL}},
        {"cmd \"\"\"\" a\"\"b", {"cmd", "", "ab", NULL}},
        {"cmd \"a\\\"b\" \"a\\\\b\" \"a\\nb\"", {"cmd", "a\"b", "a\\b", "a\\nb", NULL}},
        {"cmd a\\ b \\'x", {"cmd", "a b", "'x", NULL}},
        {"cmd 'it''s'", {"cmd", "its", NULL}},
        {"cmd '\\\\'", {"cmd", "\\\\", NULL}},
        {"a;b|c $X #c", {"a;b|c", "$X", "#c", NULL}},
        {"\tx\ny\r z ", {"x", "y", "z", NULL}},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        char **argv = NULL;
        size_t argc = 0;
        char err[256] = "stale text";
        int rc = hooks_split(cases[c].line, &argv, &argc, err, sizeof err);
        if (rc != 0)
            fail_msg("case %zu <%s>: %s", c, cases[c].line, err);
        size_t want = 0;
        while (cases[c].words[want] != NULL)
            want++;
        if (argc != want)
            fail_msg("case %zu <%s>: %zu words, want %zu", c, cases[c].line, argc, want);
        for (size_t i = 0; i < want; i++)
            if (strcmp(argv[i], cases[c].words[i]) != 0)
                fail_msg("case %zu <%s>: word %zu is <%s>, want <%s>", c, cases[c].line, i,
                         argv[i], cases[c].words[i]);
        assert_null(argv[argc]);
        hooks_argv_free(argv);
    }
}

static void expect_split_error(const char *line, const char *needle)
{
    char **argv = (char **)1;
    size_t argc = 99;
    char err[256] = "";
    assert_int_equal(hooks_split(line, &argv, &argc, err, sizeof err), PGW_EINVAL);
    assert_null(argv);
    assert_int_equal(argc, 0);
    if (strstr(err, needle) == NULL)
        fail_msg("<%s>: error <%s> does not say <%s>", line ? line : "(null)", err, needle);
}

static void test_split_errors(void **state)
{
    (void)state;
    expect_split_error("cmd 'abc", "no closing quotation (') for the quote at byte 5");
    expect_split_error("cmd \"abc", "no closing quotation (\") for the quote at byte 5");
    expect_split_error("cmd \"a\\\"", "no closing quotation (\")");
    expect_split_error("cmd abc\\", "no character after the backslash at byte 8");
    expect_split_error("   ", "empty command");
    expect_split_error("", "empty command");
    expect_split_error(NULL, "empty command");
    /* too many words */
    size_t n = 2 * HOOKS_MAX_WORDS;
    char *many = malloc(n + 1);
    assert_non_null(many);
    for (size_t i = 0; i < n; i += 2) {
        many[i] = 'x';
        many[i + 1] = ' ';
    }
    many[n] = '\0';
    expect_split_error(many, "more than");
    free(many);
    /* too long */
    char *longline = malloc(HOOKS_MAX_LINE + 2);
    assert_non_null(longline);
    memset(longline, 'y', HOOKS_MAX_LINE + 1);
    longline[HOOKS_MAX_LINE + 1] = '\0';
    expect_split_error(longline, "command line of");
    free(longline);
}

/* --- runs ------------------------------------------------------------------- */

#define LOG_KEEP 64

struct logcap {
    char lines[LOG_KEEP][512];
    int n;
};

static struct logcap g_log;

static void log_hook(enum log_level l, const char *module, const char *msg, void *ctx)
{
    (void)l;
    (void)ctx;
    if (strcmp(module, "hooks") != 0 || g_log.n == LOG_KEEP)
        return;
    snprintf(g_log.lines[g_log.n++], sizeof g_log.lines[0], "%s", msg);
}

static const char *log_find(const char *needle)
{
    for (int i = 0; i < g_log.n; i++)
        if (strstr(g_log.lines[i], needle) != NULL)
            return g_log.lines[i];
    return NULL;
}

static int setup(void **state)
{
    (void)state;
    memset(&g_log, 0, sizeof g_log);
    log_set_hook(log_hook, NULL);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    log_set_hook(NULL, NULL);
    return 0;
}

struct outcome {
    int calls;
    struct hook_result r;
};

static void done(void *ctx, const struct hook_result *r)
{
    struct outcome *o = ctx;
    o->calls++;
    o->r = *r;
}

/* Run the loop until *flag is non-zero, at most `ms` milliseconds. */
static void run_until(uv_loop_t *loop, const int *flag, uint64_t ms)
{
    uint64_t end = clock_now(&clock_monotonic) + ms;
    while (*flag == 0 && clock_now(&clock_monotonic) < end)
        uv_run(loop, UV_RUN_NOWAIT), usleep(2000);
}

static void drain(uv_loop_t *loop)
{
    for (int i = 0; i < 2000 && uv_run(loop, UV_RUN_NOWAIT) != 0; i++)
        usleep(2000);
}

static void closed(void *ctx)
{
    (*(int *)ctx)++;
}

static void close_all(uv_loop_t *loop, struct hooks *hk)
{
    int n = 0;
    hooks_close(hk, 1000, closed, &n);
    assert_int_equal(n, 0); /* never from inside hooks_close */
    run_until(loop, &n, 5000);
    assert_int_equal(n, 1);
    drain(loop);
    assert_int_equal(uv_loop_close(loop), 0);
}

/* A process that is gone: no /proc entry, or a zombie nobody reaped yet. */
static bool gone(int pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return true;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')');
    return p != NULL && p[1] == ' ' && p[2] == 'Z';
}

static bool gone_within(int pid, uint64_t ms)
{
    uint64_t end = clock_now(&clock_monotonic) + ms;
    while (!gone(pid) && clock_now(&clock_monotonic) < end)
        usleep(5000);
    return gone(pid);
}

static void test_output_args_and_env(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct hooks *hk;
    assert_int_equal(hooks_new(&loop, &hk), 0);
    setenv("PGWARDEN_RAFT_PASSWORD", "s3cret", 1);
    setenv("PGWARDEN_NAME", "n7", 1);
    const char *args[] = {"on_start", "replica", "e2e", NULL};
    struct hook_spec s = {
        .kind = HOOK_ON_START,
        .command = "/bin/sh -c 'echo \"args: $*\"; echo \"to stderr\" >&2; "
                   "echo \"env: ${PGWARDEN_RAFT_PASSWORD:-unset} $PGWARDEN_NAME\"; "
                   "printf \"no newline\"' sh",
        .args = args,
        .timeout_ms = 10000,
    };
    struct outcome o = {0};
    char err[256];
    assert_int_equal(hooks_run(hk, &s, done, &o, err, sizeof err), 0);
    assert_int_equal(o.calls, 0);
    assert_true(hooks_running(hk, HOOK_ON_START));
    assert_true(hooks_pid(hk, HOOK_ON_START) > 0);
    assert_false(hooks_running(hk, HOOK_ON_STOP));
    run_until(&loop, &o.calls, 10000);
    assert_int_equal(o.calls, 1);
    assert_int_equal(o.r.status, PGW_OK);
    assert_int_equal(o.r.exit_code, 0);
    assert_false(hooks_running(hk, HOOK_ON_START));
    assert_non_null(log_find("on_start: args: on_start replica e2e"));
    assert_non_null(log_find("on_start: to stderr"));
    assert_non_null(log_find("on_start: env: unset n7")); /* the secret was not passed on */
    assert_non_null(log_find("on_start: no newline"));
    assert_null(log_find("s3cret"));
    /* the program and our arguments are logged, the command's own words not */
    assert_non_null(log_find("on_start: started /bin/sh ... on_start replica e2e (pid"));
    unsetenv("PGWARDEN_RAFT_PASSWORD");
    unsetenv("PGWARDEN_NAME");

    /* what the caller adds to the environment, replacing a variable of that
     * name (pre_promote's facts about the former primary) */
    setenv("PGWARDEN_FORMER_PRIMARY", "stale", 1);
    const char *extra[] = {"PGWARDEN_FORMER_PRIMARY=n1", "PGWARDEN_EPOCH=7", NULL};
    struct hook_spec e = {.kind = HOOK_ON_STOP,
                          .command = "/bin/sh -c 'echo \"former=$PGWARDEN_FORMER_PRIMARY "
                                     "epoch=$PGWARDEN_EPOCH n=$(env | grep -c ^PGWARDEN_FORMER_)\"'",
                          .env = extra, .timeout_ms = 10000};
    struct outcome oe = {0};
    assert_int_equal(hooks_run(hk, &e, done, &oe, err, sizeof err), 0);
    run_until(&loop, &oe.calls, 10000);
    assert_int_equal(oe.r.status, PGW_OK);
    assert_non_null(log_find("on_stop: former=n1 epoch=7 n=1"));
    unsetenv("PGWARDEN_FORMER_PRIMARY");

    /* a non-zero exit */
    struct hook_spec f = {.kind = HOOK_PRE_PROMOTE, .command = "/bin/sh -c 'exit 3'",
                          .timeout_ms = 10000};
    struct outcome o2 = {0};
    assert_int_equal(hooks_run(hk, &f, done, &o2, err, sizeof err), 0);
    run_until(&loop, &o2.calls, 10000);
    assert_int_equal(o2.calls, 1);
    assert_int_equal(o2.r.status, PGW_ECHILD);
    assert_int_equal(o2.r.exit_code, 3);
    assert_int_equal(o2.r.term_signal, 0);
    assert_non_null(log_find("pre_promote: exited with 3"));
    close_all(&loop, hk);
}

static void test_deadline_kills_the_group(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct hooks *hk;
    assert_int_equal(hooks_new(&loop, &hk), 0);
    /* the shell starts a grandchild in the background and waits for it */
    struct hook_spec s = {.kind = HOOK_BEFORE_STOP,
                          .command = "/bin/sh -c 'sleep 30 & echo \"child $!\"; wait'",
                          .timeout_ms = 300};
    struct outcome o = {0};
    char err[256];
    uint64_t t0 = clock_now(&clock_monotonic);
    assert_int_equal(hooks_run(hk, &s, done, &o, err, sizeof err), 0);
    int leader = hooks_pid(hk, HOOK_BEFORE_STOP);
    run_until(&loop, &o.calls, 10000);
    uint64_t took = clock_now(&clock_monotonic) - t0;
    assert_int_equal(o.calls, 1);
    assert_int_equal(o.r.status, PGW_ETIMEDOUT);
    assert_int_equal(o.r.term_signal, SIGKILL);
    assert_true(took >= 300 && took < 5000);
    const char *line = log_find("before_stop: child ");
    assert_non_null(line);
    int child = (int)strtol(strstr(line, "child ") + 6, NULL, 10);
    assert_true(child > 0 && child != leader);
    assert_true(gone_within(child, 3000)); /* the grandchild went with the group */
    assert_true(gone(leader));
    assert_non_null(log_find("overran its deadline"));
    close_all(&loop, hk);
}

static void test_newer_call_kills_older_of_same_kind(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct hooks *hk;
    assert_int_equal(hooks_new(&loop, &hk), 0);
    char err[256];
    struct hook_spec slow = {.kind = HOOK_ON_ROLE_CHANGE,
                             .command = "/bin/sh -c 'sleep 30 & wait'", .timeout_ms = 20000};
    struct hook_spec other = {.kind = HOOK_ON_STOP, .command = "/bin/sh -c 'sleep 0.5'",
                              .timeout_ms = 20000};
    struct outcome first = {0}, second = {0}, stop = {0};
    assert_int_equal(hooks_run(hk, &slow, done, &first, err, sizeof err), 0);
    assert_int_equal(hooks_run(hk, &other, done, &stop, err, sizeof err), 0);
    int old = hooks_pid(hk, HOOK_ON_ROLE_CHANGE);
    int stop_pid = hooks_pid(hk, HOOK_ON_STOP);
    /* let the first one get going (its shell starts the sleep) */
    int never = 0;
    run_until(&loop, &never, 100);
    struct hook_spec quick = {.kind = HOOK_ON_ROLE_CHANGE, .command = "/bin/true",
                              .timeout_ms = 20000};
    assert_int_equal(hooks_run(hk, &quick, done, &second, err, sizeof err), 0);
    assert_int_equal(first.calls, 0); /* reported later, never from hooks_run */
    assert_true(hooks_pid(hk, HOOK_ON_ROLE_CHANGE) != old);
    run_until(&loop, &second.calls, 10000);
    run_until(&loop, &first.calls, 10000);
    assert_int_equal(first.calls, 1);
    assert_int_equal(first.r.status, PGW_ECANCELED);
    assert_int_equal(second.calls, 1);
    assert_int_equal(second.r.status, PGW_OK);
    assert_true(gone_within(old, 3000));
    /* another kind is left alone: on_stop runs to its end */
    assert_int_equal(stop.calls, 0);
    assert_false(gone(stop_pid));
    run_until(&loop, &stop.calls, 10000);
    assert_int_equal(stop.calls, 1);
    assert_int_equal(stop.r.status, PGW_OK);
    /* hooks_cancel: the same report, on a later iteration */
    struct outcome third = {0};
    assert_int_equal(hooks_run(hk, &slow, done, &third, err, sizeof err), 0);
    int pid3 = hooks_pid(hk, HOOK_ON_ROLE_CHANGE);
    hooks_cancel(hk, HOOK_ON_ROLE_CHANGE);
    assert_int_equal(third.calls, 0);
    assert_false(hooks_running(hk, HOOK_ON_ROLE_CHANGE));
    run_until(&loop, &third.calls, 10000);
    assert_int_equal(third.r.status, PGW_ECANCELED);
    assert_true(gone_within(pid3, 3000));
    close_all(&loop, hk);
}

static void test_spawn_errors(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct hooks *hk;
    assert_int_equal(hooks_new(&loop, &hk), 0);
    char err[256];
    struct outcome o = {0};
    struct hook_spec missing = {.kind = HOOK_ON_START, .command = "/nonexistent/hook arg",
                                .timeout_ms = 1000};
    assert_int_equal(hooks_run(hk, &missing, done, &o, err, sizeof err), PGW_ENOTFOUND);
    assert_non_null(strstr(err, "on_start: cannot run /nonexistent/hook"));
    struct hook_spec bad = {.kind = HOOK_ON_RELOAD, .command = "/bin/true 'oops", .timeout_ms = 1000};
    assert_int_equal(hooks_run(hk, &bad, done, &o, err, sizeof err), PGW_EINVAL);
    assert_non_null(strstr(err, "postgresql.callbacks.on_reload: cannot split the command line: "
                                "no closing quotation"));
    struct hook_spec bad2 = {.kind = HOOK_PRE_PROMOTE, .command = "", .timeout_ms = 1000};
    assert_int_equal(hooks_run(hk, &bad2, done, &o, err, sizeof err), PGW_EINVAL);
    assert_non_null(strstr(err, "postgresql.pre_promote: cannot split the command line: empty"));
    struct hook_spec zero = {.kind = HOOK_ON_START, .command = "/bin/true", .timeout_ms = 0};
    assert_int_equal(hooks_run(hk, &zero, done, &o, err, sizeof err), PGW_EINVAL);
    drain(&loop);
    assert_int_equal(o.calls, 0); /* a synchronous failure never calls back */
    assert_false(hooks_running(hk, HOOK_ON_START));
    close_all(&loop, hk);
}

static void test_close_waits_then_kills(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct hooks *hk;
    assert_int_equal(hooks_new(&loop, &hk), 0);
    char err[256];
    struct outcome quick = {0}, slow = {0};
    struct hook_spec q = {.kind = HOOK_ON_STOP, .command = "/bin/sh -c 'sleep 0.2; echo finished'",
                          .timeout_ms = 20000};
    struct hook_spec s = {.kind = HOOK_ON_ROLE_CHANGE, .command = "/bin/sh -c 'sleep 30 & wait'",
                          .timeout_ms = 20000};
    assert_int_equal(hooks_run(hk, &q, done, &quick, err, sizeof err), 0);
    assert_int_equal(hooks_run(hk, &s, done, &slow, err, sizeof err), 0);
    int slow_pid = hooks_pid(hk, HOOK_ON_ROLE_CHANGE);
    int n = 0;
    uint64_t t0 = clock_now(&clock_monotonic);
    hooks_close(hk, 1000, closed, &n);
    assert_int_equal(n, 0);
    struct hook_spec late = {.kind = HOOK_ON_START, .command = "/bin/true", .timeout_ms = 1000};
    assert_int_equal(hooks_run(hk, &late, done, &quick, err, sizeof err), PGW_ECANCELED);
    run_until(&loop, &n, 10000);
    uint64_t took = clock_now(&clock_monotonic) - t0;
    assert_int_equal(n, 1);
    assert_true(took >= 1000 && took < 5000);
    assert_non_null(log_find("on_stop: finished")); /* allowed to finish within the grace */
    assert_non_null(log_find("still running at shutdown"));
    assert_true(gone(slow_pid));
    assert_int_equal(quick.calls, 0); /* no owner callback after close */
    assert_int_equal(slow.calls, 0);
    drain(&loop);
    assert_int_equal(uv_loop_close(&loop), 0);

    /* nothing running: done still comes on a later iteration */
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(hooks_new(&loop, &hk), 0);
    close_all(&loop, hk);
}

/* A command that leaves a child behind holding our pipes: we stop waiting
 * for EOF a little after the command exited and leave the child alone (a
 * callback may start a daemon on purpose); cancelling such a run kills the
 * group and reports on a later iteration. */
static void test_leftover_child(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct hooks *hk;
    assert_int_equal(hooks_new(&loop, &hk), 0);
    char err[256];
    struct hook_spec s = {.kind = HOOK_ON_START,
                          .command = "/bin/sh -c 'sleep 30 & echo \"daemon $!\"'",
                          .timeout_ms = 20000};
    struct outcome o = {0};
    uint64_t t0 = clock_now(&clock_monotonic);
    assert_int_equal(hooks_run(hk, &s, done, &o, err, sizeof err), 0);
    run_until(&loop, &o.calls, 10000);
    uint64_t took = clock_now(&clock_monotonic) - t0;
    assert_int_equal(o.calls, 1);
    assert_int_equal(o.r.status, PGW_OK);
    assert_true(took >= 1500 && took < 8000); /* the EOF grace, not the 30 s */
    const char *line = log_find("on_start: daemon ");
    assert_non_null(line);
    int daemon = (int)strtol(strstr(line, "daemon ") + 7, NULL, 10);
    assert_true(daemon > 0);
    assert_false(gone(daemon));
    kill(daemon, SIGKILL);
    assert_true(gone_within(daemon, 3000));

    /* the same, cancelled after the command exited */
    g_log.n = 0;
    struct outcome c = {0};
    s.kind = HOOK_ON_STOP;
    assert_int_equal(hooks_run(hk, &s, done, &c, err, sizeof err), 0);
    int never = 0;
    run_until(&loop, &never, 500); /* the shell has exited, the sleep holds the pipes */
    line = log_find("on_stop: daemon ");
    assert_non_null(line);
    daemon = (int)strtol(strstr(line, "daemon ") + 7, NULL, 10);
    assert_int_equal(c.calls, 0);
    hooks_cancel(hk, HOOK_ON_STOP);
    assert_int_equal(c.calls, 0); /* not from inside hooks_cancel */
    run_until(&loop, &c.calls, 5000);
    assert_int_equal(c.calls, 1);
    assert_int_equal(c.r.status, PGW_ECANCELED);
    assert_true(gone_within(daemon, 3000));
    close_all(&loop, hk);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_split_like_shlex),
        cmocka_unit_test(test_split_errors),
        cmocka_unit_test_setup_teardown(test_output_args_and_env, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deadline_kills_the_group, setup, teardown),
        cmocka_unit_test_setup_teardown(test_newer_call_kills_older_of_same_kind, setup, teardown),
        cmocka_unit_test_setup_teardown(test_spawn_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_waits_then_kills, setup, teardown),
        cmocka_unit_test_setup_teardown(test_leftover_child, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
