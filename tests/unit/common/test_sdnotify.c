/* systemd notifications: what arrives on NOTIFY_SOCKET (a datagram socket
 * this test binds, standing in for systemd), the watchdog interval derived
 * from WATCHDOG_USEC/WATCHDOG_PID, and silence when NOTIFY_SOCKET is unset. */
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/log.h"
#include "common/sdnotify.h"

struct sock {
    int fd;
    char dir[64];
    char path[108];
};

static int setup(void **state)
{
    struct sock *s = calloc(1, sizeof *s);
    assert_non_null(s);
    snprintf(s->dir, sizeof s->dir, "/tmp/pgw-sdnotify-XXXXXX");
    assert_non_null(mkdtemp(s->dir));
    snprintf(s->path, sizeof s->path, "%s/notify", s->dir);
    s->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    assert_true(s->fd >= 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path, sizeof a.sun_path, "%s", s->path);
    assert_int_equal(bind(s->fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(setenv("NOTIFY_SOCKET", s->path, 1), 0);
    *state = s;
    return 0;
}

static int teardown(void **state)
{
    struct sock *s = *state;
    unsetenv("NOTIFY_SOCKET");
    unsetenv("WATCHDOG_USEC");
    unsetenv("WATCHDOG_PID");
    close(s->fd);
    unlink(s->path);
    rmdir(s->dir);
    free(s);
    return 0;
}

/* One datagram within timeout_ms, or "" when none came. */
static void recv_msg(struct sock *s, char *buf, size_t len, int timeout_ms)
{
    buf[0] = '\0';
    struct pollfd p = {.fd = s->fd, .events = POLLIN};
    if (poll(&p, 1, timeout_ms) != 1)
        return;
    ssize_t n = recv(s->fd, buf, len - 1, 0);
    assert_true(n >= 0);
    buf[n] = '\0';
}

static void test_states_arrive(void **state)
{
    struct sock *s = *state;
    char m[512];
    assert_true(sdnotify_enabled());
    sdnotify_ready(NULL);
    recv_msg(s, m, sizeof m, 2000);
    assert_string_equal(m, "READY=1");
    sdnotify_ready("member n1 of cluster main");
    recv_msg(s, m, sizeof m, 2000);
    assert_string_equal(m, "READY=1\nSTATUS=member n1 of cluster main");
    sdnotify_reloading();
    recv_msg(s, m, sizeof m, 2000);
    assert_string_equal(m, "RELOADING=1");
    sdnotify_stopping();
    recv_msg(s, m, sizeof m, 2000);
    assert_string_equal(m, "STOPPING=1");
    sdnotify_extend_timeout(345000000);
    recv_msg(s, m, sizeof m, 2000);
    assert_string_equal(m, "EXTEND_TIMEOUT_USEC=345000000");
    /* more than 32 bits of microseconds (71 minutes) */
    sdnotify_extend_timeout(UINT64_C(18446744073709551615));
    recv_msg(s, m, sizeof m, 2000);
    assert_string_equal(m, "EXTEND_TIMEOUT_USEC=18446744073709551615");
    /* 0 extends nothing: no line at all */
    sdnotify_extend_timeout(0);
    recv_msg(s, m, sizeof m, 100);
    assert_string_equal(m, "");
    sdnotify_watchdog();
    recv_msg(s, m, sizeof m, 2000);
    assert_string_equal(m, "WATCHDOG=1");
    /* NOTIFY_SOCKET stays set: later notifications still reach systemd */
    assert_non_null(getenv("NOTIFY_SOCKET"));
}

static void test_status_newline_cannot_inject(void **state)
{
    struct sock *s = *state;
    char m[512];
    sdnotify_ready("a\nWATCHDOG_USEC=1");
    recv_msg(s, m, sizeof m, 2000);
    assert_string_equal(m, "READY=1\nSTATUS=a WATCHDOG_USEC=1");
}

static void test_unset_socket_is_silent(void **state)
{
    struct sock *s = *state;
    char m[64];
    unsetenv("NOTIFY_SOCKET");
    assert_false(sdnotify_enabled());
    sdnotify_ready("x");
    sdnotify_stopping();
    sdnotify_extend_timeout(1000000);
    sdnotify_watchdog();
    recv_msg(s, m, sizeof m, 100);
    assert_string_equal(m, "");
    assert_int_equal(setenv("NOTIFY_SOCKET", "", 1), 0);
    assert_false(sdnotify_enabled());
    sdnotify_ready(NULL);
    recv_msg(s, m, sizeof m, 100);
    assert_string_equal(m, "");
}

static int hook_count;
static char hook_msg[256];

static void hook(enum log_level l, const char *module, const char *msg, void *ctx)
{
    (void)ctx;
    if (l == LOGL_WARN && strcmp(module, "main") == 0) {
        hook_count++;
        snprintf(hook_msg, sizeof hook_msg, "%s", msg);
    }
}

static void test_unreachable_socket_warns_once(void **state)
{
    (void)state;
    assert_int_equal(setenv("NOTIFY_SOCKET", "/nonexistent-dir/notify", 1), 0);
    log_set_hook(hook, NULL);
    sdnotify_ready(NULL);
    sdnotify_watchdog();
    log_set_hook(NULL, NULL);
    assert_int_equal(hook_count, 1);
    assert_non_null(strstr(hook_msg, "cannot notify the service manager (READY=1)"));
}

static void test_watchdog_interval(void **state)
{
    (void)state;
    char pid[32];
    snprintf(pid, sizeof pid, "%d", (int)getpid());
    unsetenv("WATCHDOG_USEC");
    unsetenv("WATCHDOG_PID");
    assert_int_equal(sdnotify_watchdog_interval_ms(), 0);
    /* WatchdogSec=10: ping every 5 s */
    assert_int_equal(setenv("WATCHDOG_USEC", "10000000", 1), 0);
    assert_int_equal(sdnotify_watchdog_interval_ms(), 5000);
    assert_int_equal(setenv("WATCHDOG_PID", pid, 1), 0);
    assert_int_equal(sdnotify_watchdog_interval_ms(), 5000);
    /* meant for another process (e.g. inherited by a child) */
    snprintf(pid, sizeof pid, "%d", (int)getpid() + 1);
    assert_int_equal(setenv("WATCHDOG_PID", pid, 1), 0);
    assert_int_equal(sdnotify_watchdog_interval_ms(), 0);
    unsetenv("WATCHDOG_PID");
    assert_int_equal(setenv("WATCHDOG_USEC", "not-a-number", 1), 0);
    assert_int_equal(sdnotify_watchdog_interval_ms(), 0);
    assert_int_equal(setenv("WATCHDOG_USEC", "0", 1), 0);
    assert_int_equal(sdnotify_watchdog_interval_ms(), 0);
    /* a tiny value never gives a 0 ms timer */
    assert_int_equal(setenv("WATCHDOG_USEC", "1", 1), 0);
    assert_int_equal(sdnotify_watchdog_interval_ms(), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_states_arrive, setup, teardown),
        cmocka_unit_test_setup_teardown(test_status_newline_cannot_inject, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unset_socket_is_silent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unreachable_socket_warns_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_watchdog_interval, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
