/* Does PostgreSQL accept connections? Answered the way pg_isready does it,
 * without authenticating: send a startup packet and read the first message.
 * An authentication request (or an error such as "too many clients") proves
 * that the postmaster accepted the connection and forked a backend that got
 * as far as authentication; 57P03 says it is starting up or shutting down;
 * no answer by the deadline says it hangs.
 *
 * Why not libpq: a libpq connection with a password runs SCRAM's PBKDF2
 * inside PQconnectPoll, 8-12 ms of CPU on a 2-core VM, on the event loop
 * that also serves the health endpoints and renews the lease. The monitor
 * probes every loop_wait, so that was a periodic stall of the whole loop.
 * This probe costs a connect, one small write and one small read. */
#ifndef PGW_PG_PGPROBE_H
#define PGW_PG_PGPROBE_H

#include <stdint.h>

#include <uv.h>

#include "common/status.h"

enum pgprobe_outcome {
    PGPROBE_AUTH_REQUEST = 0, /* the server asked us to authenticate (or let us in) */
    PGPROBE_SERVER_ERROR,     /* it answered with an ErrorResponse: sqlstate, message */
    PGPROBE_FAILED,           /* no answer: refused, reset, closed, not a PostgreSQL reply */
    PGPROBE_TIMEOUT,          /* nothing within the deadline */
};

struct pgprobe_result {
    enum pgprobe_outcome outcome;
    char sqlstate[6];  /* PGPROBE_SERVER_ERROR: e.g. "57P03"; "" otherwise */
    char message[256]; /* the server's message, or why the probe failed */
};

typedef void (*pgprobe_cb)(const struct pgprobe_result *r, void *ctx);

struct pgprobe;

/* Probe host:port; host is an IPv4 or IPv6 address, a name (resolved with
 * uv_getaddrinfo, off the loop), or a directory holding the Unix socket
 * (".s.PGSQL.<port>") when it starts with '/'. user and dbname go in the
 * startup packet (errors such as a missing pg_hba entry name them). cb runs
 * exactly once, on a later loop iteration, unless pgprobe_cancel came first;
 * the probe frees itself after cb returns. PGW_EINVAL for bad arguments,
 * PGW_ENOMEM. */
int pgprobe_start(uv_loop_t *loop, const char *host, uint16_t port, const char *user,
                  const char *dbname, uint32_t timeout_ms, pgprobe_cb cb, void *ctx,
                  struct pgprobe **out) PGW_MUST_CHECK;

/* Abandon a probe whose callback has not run: cb will not run, and the
 * probe frees itself once its handles are closed. */
void pgprobe_cancel(struct pgprobe *p);

#endif
