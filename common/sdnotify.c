/* Thin wrapper over libsystemd's sd_notify (common/sdnotify.h). Synchronous:
 * one datagram on a local socket, never blocks the loop for long (systemd
 * reads it; a full socket buffer makes sd_notify fail, not wait). */
#include "common/sdnotify.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <systemd/sd-daemon.h>

#include "common/log.h"

static bool warned;

bool sdnotify_enabled(void)
{
    const char *s = getenv("NOTIFY_SOCKET");
    return s != NULL && s[0] != '\0';
}

static void send_state(const char *state)
{
    if (!sdnotify_enabled())
        return;
    /* 0: keep NOTIFY_SOCKET, later notifications (watchdog, reload) need it */
    int rc = sd_notify(0, state);
    if (rc < 0 && !warned) {
        warned = true;
        log_warn("main", "cannot notify the service manager (%s): %s", state, strerror(-rc));
    }
}

void sdnotify_ready(const char *status)
{
    if (status == NULL || status[0] == '\0') {
        send_state("READY=1");
        return;
    }
    char buf[512];
    /* a newline would start another assignment: keep the status on one line */
    int n = snprintf(buf, sizeof buf, "READY=1\nSTATUS=%s", status);
    if (n < 0)
        return;
    for (char *p = buf + strlen("READY=1\n"); *p != '\0'; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' ';
    send_state(buf);
}

void sdnotify_reloading(void)
{
    send_state("RELOADING=1");
}

void sdnotify_stopping(void)
{
    send_state("STOPPING=1");
}

void sdnotify_extend_timeout(uint64_t usec)
{
    if (usec == 0)
        return;
    char buf[64];
    snprintf(buf, sizeof buf, "EXTEND_TIMEOUT_USEC=%" PRIu64, usec);
    send_state(buf);
}

void sdnotify_watchdog(void)
{
    send_state("WATCHDOG=1");
}

uint64_t sdnotify_watchdog_interval_ms(void)
{
    uint64_t usec = 0;
    /* > 0 only when WATCHDOG_USEC is valid and meant for this pid */
    if (sd_watchdog_enabled(0, &usec) <= 0 || usec == 0)
        return 0;
    uint64_t ms = usec / 2000;
    return ms > 0 ? ms : 1;
}
