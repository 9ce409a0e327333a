/* Linux watchdog (/dev/watchdog, or the softdog module): the last fence.
 * Armed while this node is the primary, kept alive by the HA tick only while
 * the primary lease is valid, disarmed (magic close 'V') on demotion and on
 * a clean stop. If pgwarden and the fence keeper both stop working (the
 * whole machine is wedged), the kernel resets the machine before another
 * node can be promoted: timeout = ttl - safety_margin (ttl/2 with -1).
 *
 * Device access goes through an ops table so the unit test can replace the
 * kernel with a recorder. Failure modes: no device, a device that refuses
 * the timeout (watchdog.mode: required refuses to promote; automatic logs
 * and goes on without), a keepalive write that fails (logged once). */
#ifndef PGW_HA_WATCHDOG_H
#define PGW_HA_WATCHDOG_H

#include <stdbool.h>
#include <stddef.h>

#include "common/status.h"

struct wd_ops {
    int (*open)(const char *path);                /* fd or -errno */
    int (*set_timeout)(int fd, int seconds);      /* 0 or -errno; *seconds the device accepted */
    int (*get_timeout)(int fd, int *seconds);     /* 0 or -errno */
    int (*keepalive)(int fd);                     /* 0 or -errno */
    int (*write_magic_close)(int fd);             /* writes 'V' */
    void (*close)(int fd);
};

extern const struct wd_ops wd_linux_ops;

struct watchdog {
    const struct wd_ops *ops;
    char device[256];
    int fd; /* -1 when disarmed */
    int timeout_s;
    bool warned;
};

void watchdog_init(struct watchdog *w, const struct wd_ops *ops, const char *device);
/* Arm with the given timeout (seconds >= 1). 0 or a negative status with
 * the reason in err. Arming an armed watchdog only refreshes it. */
int watchdog_arm(struct watchdog *w, int timeout_s, char *err, size_t errlen) PGW_MUST_CHECK;
void watchdog_keepalive(struct watchdog *w);
/* Magic close: the kernel stops the countdown. */
void watchdog_disarm(struct watchdog *w);
bool watchdog_armed(const struct watchdog *w);

/* Whether `device` can be a watchdog for this user, without opening it
 * (opening arms it): it exists, is a character device and is writable, and
 * its path fits. 0, or a negative status with err naming the device. */
int watchdog_check_device(const char *device, char *err, size_t errlen) PGW_MUST_CHECK;

/* ttl - safety_margin, or ttl/2 for a margin of -1, in whole seconds
 * (rounded down, at least 1); 0 when the setting is unusable. */
int watchdog_timeout_for(unsigned ttl_ms, int safety_margin_s);

#endif
