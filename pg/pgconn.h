/* One asynchronous libpq connection on the loop.
 *
 * Happy path: pgconn_query() on a disconnected object connects first
 * (PQconnectStartParams + PQconnectPoll driven by a uv_poll_t on PQsocket,
 * re-initialised when the socket changes during connect), then sends the
 * query (PQsendQuery), reads with PQconsumeInput/PQisBusy/PQgetResult and
 * calls back with every PGresult of the (possibly multi-statement) query.
 * Failure modes: connect refused or failed (PGW_EUNAVAIL, libpq's message),
 * connect or query deadline passed (PGW_ETIMEDOUT: the connection is closed,
 * because PQcancel blocks), an SQL error (PGW_EIO with the server's message,
 * the connection stays usable), the server closing the connection
 * (PGW_EUNAVAIL), a query while another is in flight (PGW_EBUSY, returned
 * synchronously).
 *
 * Reconnection is lazy and bounded: after a failed connect, or a lost
 * connection, the next connect is not attempted before a backoff delay
 * (exponential from backoff_min_ms to backoff_max_ms, +-25% jitter); a query
 * asked during the backoff window fails (asynchronously) with PGW_EUNAVAIL.
 * Whoever drives the connection (a monitor tick) bounds the retries in count.
 *
 * No blocking libpq call is ever made (no PQconnectdb/PQexec/PQcancel/
 * PQreset/PQping). The password lives only in the parameters handed to
 * libpq; log lines show host, port, user and dbname only. */
#ifndef PGW_PG_PGCONN_H
#define PGW_PG_PGCONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>
#include <uv.h>

#include "common/status.h"

#define PGCONN_MAX_PARAMS 24

/* libpq connection keywords (host, port, user, password, dbname,
 * replication, sslmode, application_name, connect_timeout...). Owned copies. */
struct pgconn_params {
    size_t n;
    char *keys[PGCONN_MAX_PARAMS + 1];
    char *vals[PGCONN_MAX_PARAMS + 1];
};

/* Set (or replace) key; value NULL or "" removes it. PGW_ENOMEM, or
 * PGW_EINVAL when the table is full. */
int pgconn_params_set(struct pgconn_params *p, const char *key, const char *value) PGW_MUST_CHECK;
const char *pgconn_params_get(const struct pgconn_params *p, const char *key);
int pgconn_params_copy(struct pgconn_params *dst, const struct pgconn_params *src) PGW_MUST_CHECK;
void pgconn_params_free(struct pgconn_params *p);
/* Render "host=... port=... user=..." with values quoted as libpq wants
 * ('...' with \' and \\). The password is left out unless include_password
 * (never pass true for anything that reaches a log, argv or a file other
 * than a 0600 one). Returns PGW_EINVAL when buf is too small. */
int pgconn_params_to_conninfo(const struct pgconn_params *p, bool include_password, char *buf,
                              size_t len) PGW_MUST_CHECK;

struct pgconn_opts {
    const char *name;              /* shown in logs: "monitor", "probe", "slots" */
    uint32_t connect_timeout_ms;   /* default 5000 */
    uint32_t query_timeout_ms;     /* default for pgconn_query(timeout 0); default 10000 */
    uint32_t backoff_min_ms;       /* default 250 */
    uint32_t backoff_max_ms;       /* default 10000 */
};

struct pgconn;

struct pgconn_result {
    int status;                 /* PGW_OK or a negative PGW_E* */
    const char *error;          /* human-readable; "" on success */
    PGresult *const *results;   /* every result of the query, valid during the callback */
    size_t nresults;
};

typedef void (*pgconn_connect_cb)(struct pgconn *c, int status, const char *error, void *ctx);
typedef void (*pgconn_query_cb)(struct pgconn *c, const struct pgconn_result *r, void *ctx);

/* Copies params. Does not connect yet. */
int pgconn_new(uv_loop_t *loop, const struct pgconn_params *params, const struct pgconn_opts *opts,
               struct pgconn **out) PGW_MUST_CHECK;

/* Connect now (ignores the backoff window). PGW_EBUSY if connecting or a
 * query is in flight; calls back with PGW_OK at once (next tick) when
 * already connected. */
int pgconn_connect(struct pgconn *c, pgconn_connect_cb cb, void *ctx) PGW_MUST_CHECK;

/* Send one query (may hold several ';'-separated statements: one round
 * trip, one PGresult each). timeout_ms 0 = opts.query_timeout_ms; the
 * deadline includes connecting when not connected. */
int pgconn_query(struct pgconn *c, const char *sql, uint32_t timeout_ms, pgconn_query_cb cb,
                 void *ctx) PGW_MUST_CHECK;

bool pgconn_is_connected(const struct pgconn *c);
bool pgconn_is_busy(const struct pgconn *c);
/* Server version (e.g. 150004) of the current connection, 0 if none. */
int pgconn_server_version(const struct pgconn *c);
/* Close the connection (not the object); a pending callback gets
 * PGW_ECANCELED on a later tick. The backoff is not armed. */
void pgconn_disconnect(struct pgconn *c);
/* Destroy: the pending callback, if any, is NOT called; memory is released
 * once the handles' close callbacks ran (keep running the loop). */
void pgconn_destroy(struct pgconn *c);

/* Quote an SQL identifier / literal (for role names, passwords in
 * CREATE ROLE). Returns a malloc'ed string or NULL on ENOMEM. */
char *pgconn_quote_ident(const char *s);
char *pgconn_quote_literal(const char *s);

#endif
