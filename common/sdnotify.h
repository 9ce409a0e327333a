/* systemd service notifications (sd_notify(3)) for `pgwarden run` under the
 * unit shipped in the Debian package (Type=notify, WatchdogSec=).
 *
 * Every function is a no-op when NOTIFY_SOCKET is unset (pgwarden started by
 * hand, by the e2e tests or by another supervisor), so callers never check.
 * A failure to notify is logged once and otherwise ignored: systemd then
 * reports the start as timed out, which is the right outcome. */
#ifndef PGW_SDNOTIFY_H
#define PGW_SDNOTIFY_H

#include <stdbool.h>
#include <stdint.h>

/* true when NOTIFY_SOCKET is set: the service manager listens. */
bool sdnotify_enabled(void);

/* READY=1 (the REST API listens and Raft started), with an optional
 * human-readable STATUS= line (NULL: none). Also sent after a reload. */
void sdnotify_ready(const char *status);
/* RELOADING=1: SIGHUP received, the configuration is being re-read. */
void sdnotify_reloading(void);
/* STOPPING=1: a graceful stop began (it may include a switchover). */
void sdnotify_stopping(void);
/* EXTEND_TIMEOUT_USEC=usec: the state being left (here the stop that
 * STOPPING=1 announced) may last usec more from now, even past the unit's
 * TimeoutStopSec= (systemd 236 and later; older ones ignore the line).
 * 0 sends nothing. */
void sdnotify_extend_timeout(uint64_t usec);
/* WATCHDOG=1: the event loop is alive. */
void sdnotify_watchdog(void);

/* How often to send WATCHDOG=1, in ms: half of WATCHDOG_USEC when systemd
 * asked this process for keep-alives (WATCHDOG_USEC set and WATCHDOG_PID
 * unset or equal to our pid), else 0. Never below 1 ms. */
uint64_t sdnotify_watchdog_interval_ms(void);

#endif
