/* The watchdog driver: arm/keepalive/disarm against a recording fake, a
 * device refusing the timeout, a missing device, and the real Linux ops on
 * a fake device path (a regular file: the ioctls fail, the arm is refused and
 * nothing stays open). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "ha/watchdog.h"

static char trace[512];
static int dev_timeout, accept_timeout = 1, open_fail;

static void rec(const char *what)
{
    size_t n = strlen(trace);
    snprintf(trace + n, sizeof trace - n, "%s%s", n ? " " : "", what);
}

static int f_open(const char *path)
{
    (void)path;
    rec("open");
    return open_fail ? -2 /* ENOENT */ : 42;
}

static int f_set(int fd, int s)
{
    assert_int_equal(fd, 42);
    char b[32];
    snprintf(b, sizeof b, "set%d", s);
    rec(b);
    if (!accept_timeout)
        return -22;
    dev_timeout = s;
    return 0;
}

static int f_get(int fd, int *s)
{
    assert_int_equal(fd, 42);
    *s = dev_timeout;
    return 0;
}

static int f_keep(int fd)
{
    assert_int_equal(fd, 42);
    rec("keep");
    return 0;
}

static int f_magic(int fd)
{
    assert_int_equal(fd, 42);
    rec("V");
    return 0;
}

static void f_close(int fd)
{
    assert_int_equal(fd, 42);
    rec("close");
}

static const struct wd_ops fake = {f_open, f_set, f_get, f_keep, f_magic, f_close};

static int reset(void **state)
{
    (void)state;
    trace[0] = '\0';
    dev_timeout = 60;
    accept_timeout = 1;
    open_fail = 0;
    return 0;
}

static void test_arm_keepalive_disarm(void **state)
{
    (void)state;
    struct watchdog w;
    char err[256];
    watchdog_init(&w, &fake, "/dev/fake");
    assert_false(watchdog_armed(&w));
    assert_int_equal(watchdog_arm(&w, 25, err, sizeof err), 0);
    assert_true(watchdog_armed(&w));
    watchdog_keepalive(&w);
    assert_int_equal(watchdog_arm(&w, 25, err, sizeof err), 0); /* same timeout: no re-set */
    watchdog_disarm(&w);
    assert_false(watchdog_armed(&w));
    watchdog_keepalive(&w); /* disarmed: nothing */
    assert_string_equal(trace, "open set25 keep keep keep V close");
}

static void test_refused_timeout_disarms(void **state)
{
    (void)state;
    struct watchdog w;
    char err[256];
    accept_timeout = 0;
    watchdog_init(&w, &fake, "/dev/fake");
    assert_int_equal(watchdog_arm(&w, 7, err, sizeof err), PGW_EUNAVAIL);
    assert_non_null(strstr(err, "does not accept a 7 s timeout"));
    assert_false(watchdog_armed(&w));
    assert_string_equal(trace, "open set7 V close");
}

static void test_missing_device(void **state)
{
    (void)state;
    struct watchdog w;
    char err[256];
    open_fail = 1;
    watchdog_init(&w, &fake, "/dev/nowatchdog");
    assert_int_equal(watchdog_arm(&w, 7, err, sizeof err), PGW_EUNAVAIL);
    assert_non_null(strstr(err, "cannot open watchdog device /dev/nowatchdog"));
    assert_false(watchdog_armed(&w));
    assert_int_equal(watchdog_arm(&w, 0, err, sizeof err), PGW_EINVAL);
}

static void test_linux_ops_on_fake_device_path(void **state)
{
    (void)state;
    char path[] = "/tmp/pgw-fake-watchdog-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    struct watchdog w;
    char err[256];
    watchdog_init(&w, NULL, path); /* the real driver */
    assert_int_equal(watchdog_arm(&w, 10, err, sizeof err), PGW_EUNAVAIL);
    assert_non_null(strstr(err, "does not accept a 10 s timeout"));
    assert_false(watchdog_armed(&w));
    /* the magic close was written before closing */
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char buf[8] = "";
    assert_int_equal(fread(buf, 1, sizeof buf, f), 1);
    fclose(f);
    assert_int_equal(buf[0], 'V');
    unlink(path);
}

static void test_timeout_for(void **state)
{
    (void)state;
    assert_int_equal(watchdog_timeout_for(30000, 5), 25);
    assert_int_equal(watchdog_timeout_for(30000, -1), 15);
    assert_int_equal(watchdog_timeout_for(2000, -1), 1);
    assert_int_equal(watchdog_timeout_for(2000, 5), 0); /* unusable */
    assert_int_equal(watchdog_timeout_for(10500, 5), 5);
}

/* watchdog.mode required is refused at start when the device cannot be one,
 * checked without opening it (opening arms it). */
static void test_check_device(void **state)
{
    (void)state;
    char err[512];
    assert_int_not_equal(watchdog_check_device("/nonexistent/watchdog", err, sizeof err), 0);
    assert_non_null(strstr(err, "/nonexistent/watchdog"));
    assert_non_null(strstr(err, "No such file or directory"));
    assert_int_not_equal(watchdog_check_device("/etc/hostname", err, sizeof err), 0);
    assert_non_null(strstr(err, "not a character device"));
    char longp[400];
    memset(longp, 'a', sizeof longp - 1);
    longp[0] = '/';
    longp[sizeof longp - 1] = '\0';
    assert_int_not_equal(watchdog_check_device(longp, err, sizeof err), 0);
    assert_non_null(strstr(err, "longer than 255 bytes"));
    /* a character device this user may write: /dev/null passes the check */
    assert_int_equal(watchdog_check_device("/dev/null", err, sizeof err), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_arm_keepalive_disarm, reset),
        cmocka_unit_test_setup(test_refused_timeout_disarms, reset),
        cmocka_unit_test_setup(test_missing_device, reset),
        cmocka_unit_test_setup(test_linux_ops_on_fake_device_path, reset),
        cmocka_unit_test_setup(test_timeout_for, reset),
        cmocka_unit_test(test_check_device),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
