#include "ha/watchdog.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/watchdog.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"

static int lx_open(const char *path)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    return fd >= 0 ? fd : -errno;
}

static int lx_set_timeout(int fd, int seconds)
{
    return ioctl(fd, WDIOC_SETTIMEOUT, &seconds) == 0 ? 0 : -errno;
}

static int lx_get_timeout(int fd, int *seconds)
{
    return ioctl(fd, WDIOC_GETTIMEOUT, seconds) == 0 ? 0 : -errno;
}

static int lx_keepalive(int fd)
{
    int dummy = 0;
    return ioctl(fd, WDIOC_KEEPALIVE, &dummy) == 0 ? 0 : -errno;
}

static int lx_magic_close(int fd)
{
    return write(fd, "V", 1) == 1 ? 0 : -errno;
}

static void lx_close(int fd)
{
    close(fd);
}

const struct wd_ops wd_linux_ops = {lx_open, lx_set_timeout, lx_get_timeout, lx_keepalive,
                                    lx_magic_close, lx_close};

void watchdog_init(struct watchdog *w, const struct wd_ops *ops, const char *device)
{
    memset(w, 0, sizeof *w);
    w->ops = ops != NULL ? ops : &wd_linux_ops;
    snprintf(w->device, sizeof w->device, "%s", device != NULL ? device : "/dev/watchdog");
    w->fd = -1;
}

int watchdog_check_device(const char *device, char *err, size_t errlen)
{
    struct watchdog w;
    if (strlen(device) >= sizeof w.device) {
        snprintf(err, errlen, "watchdog.device: the path is longer than %zu bytes",
                 sizeof w.device - 1);
        return PGW_EINVAL;
    }
    struct stat st;
    if (stat(device, &st) != 0) {
        snprintf(err, errlen, "watchdog.device %s: %s (load a watchdog driver, e.g. "
                 "`modprobe softdog`)", device, strerror(errno));
        return PGW_ENOTFOUND;
    }
    if (!S_ISCHR(st.st_mode)) {
        snprintf(err, errlen, "watchdog.device %s is not a character device (a watchdog "
                 "driver's device, e.g. /dev/watchdog)", device);
        return PGW_EINVAL;
    }
    if (access(device, W_OK) != 0) {
        snprintf(err, errlen, "watchdog.device %s is not writable by this user: %s", device,
                 strerror(errno));
        return PGW_EIO;
    }
    return PGW_OK;
}

int watchdog_timeout_for(unsigned ttl_ms, int safety_margin_s)
{
    int ttl_s = (int)(ttl_ms / 1000);
    int t = safety_margin_s < 0 ? ttl_s / 2 : ttl_s - safety_margin_s;
    return t >= 1 ? t : 0;
}

int watchdog_arm(struct watchdog *w, int timeout_s, char *err, size_t errlen)
{
    if (timeout_s < 1) {
        snprintf(err, errlen, "watchdog timeout must be at least 1 s (ttl - safety_margin)");
        return PGW_EINVAL;
    }
    if (w->fd < 0) {
        int fd = w->ops->open(w->device);
        if (fd < 0) {
            snprintf(err, errlen, "cannot open watchdog device %s: %s", w->device, strerror(-fd));
            return PGW_EUNAVAIL;
        }
        w->fd = fd;
        log_info("ha", "watchdog %s armed", w->device);
    }
    if (timeout_s != w->timeout_s) {
        int rc = w->ops->set_timeout(w->fd, timeout_s);
        int actual = 0;
        if (rc != 0 || w->ops->get_timeout(w->fd, &actual) != 0 || actual != timeout_s) {
            snprintf(err, errlen, "watchdog %s does not accept a %d s timeout (%s)", w->device,
                     timeout_s, rc != 0 ? strerror(-rc) : "device kept another value");
            /* a device that would fire at an unknown time is worse than none */
            watchdog_disarm(w);
            return PGW_EUNAVAIL;
        }
        w->timeout_s = timeout_s;
        log_info("ha", "watchdog timeout %d s", timeout_s);
    }
    watchdog_keepalive(w);
    return PGW_OK;
}

void watchdog_keepalive(struct watchdog *w)
{
    if (w->fd < 0)
        return;
    int rc = w->ops->keepalive(w->fd);
    if (rc != 0 && !w->warned) {
        w->warned = true;
        log_error("ha", "watchdog keepalive on %s failed: %s", w->device, strerror(-rc));
    }
}

void watchdog_disarm(struct watchdog *w)
{
    if (w->fd < 0)
        return;
    if (w->ops->write_magic_close(w->fd) != 0)
        log_error("ha", "watchdog %s: magic close failed; the machine may reset", w->device);
    w->ops->close(w->fd);
    w->fd = -1;
    w->timeout_s = 0;
    w->warned = false;
    log_info("ha", "watchdog %s disarmed", w->device);
}

bool watchdog_armed(const struct watchdog *w)
{
    return w->fd >= 0;
}
