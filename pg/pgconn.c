/* One asynchronous libpq connection (see pgconn.h for the contract).
 *
 * Happy path: PQconnectStartParams -> PQconnectPoll each time the socket is
 * ready as it asked (uv_poll_t) -> CONNECTION_OK -> PQsendQuery -> PQflush
 * until sent -> PQconsumeInput / PQisBusy / PQgetResult until NULL ->
 * callback with every result -> idle, watching the socket so that a server
 * closing the connection is noticed.
 * Failure modes: connect failure (PGW_EUNAVAIL + libpq message, backoff
 * armed); deadline (PGW_ETIMEDOUT, connection closed: PQcancel would block);
 * SQL error (PGW_EIO + server message, connection kept); connection lost
 * (PGW_EUNAVAIL, connection closed).
 *
 * A host NAME is looked up first with uv_getaddrinfo (libuv's thread pool),
 * and libpq gets its addresses as hostaddr: given only a name, libpq calls
 * getaddrinfo inside PQconnectStartParams/PQconnectPoll and the whole event
 * loop (health checks, Raft, lease renewals) would wait for DNS, seconds
 * when a resolver does not answer.
 *
 * During connect a NEW uv_poll_t is made after every PQconnectPoll step:
 * libpq may close the socket and open another one (next host, SSL
 * fallback) that can reuse the same descriptor number, which an old epoll
 * registration would silently miss. */
#include "pg/pgconn.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"

#define PGCONN_MAX_ADDRS 8 /* addresses of a name tried in turn (libpq's multi-host) */

enum cstate { CS_IDLE = 0, CS_CONNECTING, CS_READY, CS_QUERY };

struct pgconn {
    uv_loop_t *loop;
    struct pgconn_params params;
    struct pgconn_opts opts;
    char name[32];
    char where[160]; /* "user@host:port/db" for log lines, no secrets */
    PGconn *conn;
    uv_poll_t *poll;
    int poll_events;
    uv_timer_t timer;
    enum cstate state;
    bool flushing;
    /* the pending operation */
    pgconn_connect_cb ccb;
    void *cctx;
    pgconn_query_cb qcb;
    void *qctx;
    char *sql;
    uint32_t q_timeout_ms;
    uint64_t q_deadline; /* uv_now() by which the whole query (connect included) ends */
    PGresult **res;
    size_t nres, capres;
    char err[1024];
    char lasterr[512]; /* the last connection failure, for backoff messages */
    int first_error; /* status of the first failed result */
    /* delivery on a later tick */
    bool deferred;
    int deferred_status;
    /* backoff */
    uint64_t backoff_until;
    uint32_t backoff_cur;
    unsigned seed;
    bool destroyed;
    int open_handles; /* the timer, a poll handle, a name lookup in flight */
    uv_getaddrinfo_t gai;
    bool resolving;
    char looked_up[320]; /* 'host "db1" is 10.0.0.5': libpq's messages show only the address */
};

static void conn_fail(struct pgconn *c, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void copy_str(char *dst, size_t len, const char *src)
{
    size_t n = strlen(src);
    if (n >= len)
        n = len - 1;
    memcpy(dst, src, n);
    dst[n] = '\0';
}

/* Query texts may carry passwords (CREATE/ALTER ROLE): zeroed when freed. */
static void wipe_free(char *s)
{
    if (s) {
        memset(s, 0, strlen(s));
        free(s);
    }
}

/* ---- parameters ------------------------------------------------------- */

int pgconn_params_set(struct pgconn_params *p, const char *key, const char *value)
{
    size_t i;
    for (i = 0; i < p->n; i++)
        if (strcmp(p->keys[i], key) == 0)
            break;
    if (!value || !*value) {
        if (i < p->n) {
            free(p->keys[i]);
            free(p->vals[i]);
            memmove(&p->keys[i], &p->keys[i + 1], (p->n - i) * sizeof p->keys[0]);
            memmove(&p->vals[i], &p->vals[i + 1], (p->n - i) * sizeof p->vals[0]);
            p->n--;
            p->keys[p->n] = p->vals[p->n] = NULL;
        }
        return PGW_OK;
    }
    char *v = strdup(value);
    if (!v)
        return PGW_ENOMEM;
    if (i < p->n) {
        free(p->vals[i]);
        p->vals[i] = v;
        return PGW_OK;
    }
    if (p->n >= PGCONN_MAX_PARAMS) {
        free(v);
        return PGW_EINVAL;
    }
    char *k = strdup(key);
    if (!k) {
        free(v);
        return PGW_ENOMEM;
    }
    p->keys[p->n] = k;
    p->vals[p->n] = v;
    p->n++;
    p->keys[p->n] = p->vals[p->n] = NULL;
    return PGW_OK;
}

const char *pgconn_params_get(const struct pgconn_params *p, const char *key)
{
    for (size_t i = 0; i < p->n; i++)
        if (strcmp(p->keys[i], key) == 0)
            return p->vals[i];
    return NULL;
}

int pgconn_params_copy(struct pgconn_params *dst, const struct pgconn_params *src)
{
    memset(dst, 0, sizeof *dst);
    for (size_t i = 0; i < src->n; i++) {
        int rc = pgconn_params_set(dst, src->keys[i], src->vals[i]);
        if (rc) {
            pgconn_params_free(dst);
            return rc;
        }
    }
    return PGW_OK;
}

void pgconn_params_free(struct pgconn_params *p)
{
    for (size_t i = 0; i < p->n; i++) {
        if (strcmp(p->keys[i], "password") == 0)
            memset(p->vals[i], 0, strlen(p->vals[i]));
        free(p->keys[i]);
        free(p->vals[i]);
    }
    memset(p, 0, sizeof *p);
}

int pgconn_params_to_conninfo(const struct pgconn_params *p, bool include_password, char *buf,
                              size_t len)
{
    size_t o = 0;
    if (len == 0)
        return PGW_EINVAL;
    buf[0] = '\0';
    for (size_t i = 0; i < p->n; i++) {
        if (!include_password && strcmp(p->keys[i], "password") == 0)
            continue;
        const char *k = p->keys[i];
        size_t need = strlen(k) + 4;
        if (o + need >= len)
            return PGW_EINVAL;
        o += (size_t)snprintf(buf + o, len - o, "%s%s='", o ? " " : "", k);
        for (const char *c = p->vals[i]; *c; c++) {
            if (*c == '\'' || *c == '\\') {
                if (o + 2 >= len)
                    return PGW_EINVAL;
                buf[o++] = '\\';
            }
            if (o + 2 >= len)
                return PGW_EINVAL;
            buf[o++] = *c;
        }
        if (o + 2 >= len)
            return PGW_EINVAL;
        buf[o++] = '\'';
        buf[o] = '\0';
    }
    return PGW_OK;
}

/* ---- handles ------------------------------------------------------------ */

static void maybe_free(struct pgconn *c)
{
    if (c->destroyed && c->open_handles == 0) {
        pgconn_params_free(&c->params);
        wipe_free(c->sql);
        free(c);
    }
}

static void on_poll_closed(uv_handle_t *h)
{
    struct pgconn *c = h->data;
    free(h);
    c->open_handles--;
    maybe_free(c);
}

static void on_timer_closed(uv_handle_t *h)
{
    struct pgconn *c = h->data;
    c->open_handles--;
    maybe_free(c);
}

static void poll_close(struct pgconn *c)
{
    if (c->poll) {
        uv_close((uv_handle_t *)c->poll, on_poll_closed);
        c->poll = NULL;
        c->poll_events = 0;
    }
}

static void on_poll(uv_poll_t *h, int status, int events);

static int poll_watch(struct pgconn *c, int events, bool fresh)
{
    int fd = PQsocket(c->conn);
    if (fd < 0)
        return PGW_EIO;
    if (c->poll && !fresh) {
        if (c->poll_events != events) {
            c->poll_events = events;
            return uv_poll_start(c->poll, events, on_poll) == 0 ? PGW_OK : PGW_EIO;
        }
        return PGW_OK;
    }
    poll_close(c);
    uv_poll_t *p = malloc(sizeof *p);
    if (!p)
        return PGW_ENOMEM;
    if (uv_poll_init_socket(c->loop, p, fd) != 0) {
        free(p);
        return PGW_EIO;
    }
    p->data = c;
    c->open_handles++;
    c->poll = p;
    c->poll_events = events;
    if (uv_poll_start(p, events, on_poll) != 0)
        return PGW_EIO;
    return PGW_OK;
}

static void close_conn(struct pgconn *c)
{
    poll_close(c); /* before PQfinish closes the descriptor */
    if (c->conn) {
        PQfinish(c->conn);
        c->conn = NULL;
    }
    c->flushing = false;
    c->state = CS_IDLE;
}

static void arm_backoff(struct pgconn *c)
{
    uint32_t cur = c->backoff_cur ? c->backoff_cur * 2 : c->opts.backoff_min_ms;
    if (cur > c->opts.backoff_max_ms)
        cur = c->opts.backoff_max_ms;
    c->backoff_cur = cur;
    /* +-25% jitter so that several nodes do not retry in step */
    uint32_t span = cur / 2 + 1;
    uint32_t j = (uint32_t)rand_r(&c->seed) % span;
    uint64_t delay = (uint64_t)cur - cur / 4 + j;
    c->backoff_until = uv_now(c->loop) + delay;
}

static void clear_results(struct pgconn *c)
{
    for (size_t i = 0; i < c->nres; i++)
        PQclear(c->res[i]);
    free(c->res);
    c->res = NULL;
    c->nres = c->capres = 0;
}

/* Deliver the pending operation's outcome. */
static void deliver(struct pgconn *c, int status)
{
    uv_timer_stop(&c->timer);
    if (c->ccb) {
        pgconn_connect_cb cb = c->ccb;
        void *ctx = c->cctx;
        c->ccb = NULL;
        cb(c, status, status ? c->err : "", ctx);
        return;
    }
    if (c->qcb) {
        pgconn_query_cb cb = c->qcb;
        void *ctx = c->qctx;
        c->qcb = NULL;
        wipe_free(c->sql);
        c->sql = NULL;
        struct pgconn_result r = {status, status ? c->err : "", c->res, c->nres};
        PGresult **res = c->res;
        size_t n = c->nres;
        c->res = NULL;
        c->nres = c->capres = 0;
        cb(c, &r, ctx);
        for (size_t i = 0; i < n; i++)
            PQclear(res[i]);
        free(res);
    }
}

static void on_timer(uv_timer_t *t);

static void defer(struct pgconn *c, int status)
{
    c->deferred = true;
    c->deferred_status = status;
    uv_timer_start(&c->timer, on_timer, 0, 0);
}

static void trim_msg(char *s)
{
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == ' '))
        s[--n] = '\0';
    for (char *p = s; *p; p++)
        if (*p == '\n')
            *p = ' ';
}

static void conn_fail(struct pgconn *c, int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err, sizeof c->err, fmt, ap);
    va_end(ap);
    trim_msg(c->err);
    copy_str(c->lasterr, sizeof c->lasterr, c->err);
    bool was_connecting = c->state == CS_CONNECTING;
    close_conn(c);
    if (was_connecting)
        arm_backoff(c);
    log_debug("pg", "%s connection to %s: %s", c->name, c->where, c->err);
    deliver(c, status);
}

static void send_query(struct pgconn *c);

static void connected(struct pgconn *c)
{
    c->state = CS_READY;
    c->backoff_cur = 0;
    c->backoff_until = 0;
    if (PQsetnonblocking(c->conn, 1) != 0) {
        conn_fail(c, PGW_EIO, "cannot set non-blocking mode: %s", PQerrorMessage(c->conn));
        return;
    }
    log_debug("pg", "%s connected to %s (server %d)", c->name, c->where,
              PQserverVersion(c->conn));
    if (c->qcb) {
        /* the query's own deadline, counted from pgconn_query() */
        uint64_t now = uv_now(c->loop);
        uv_timer_start(&c->timer, on_timer, c->q_deadline > now ? c->q_deadline - now : 1, 0);
        send_query(c);
        return;
    }
    if (poll_watch(c, UV_READABLE, true) != PGW_OK) {
        conn_fail(c, PGW_EIO, "cannot watch the socket");
        return;
    }
    if (c->ccb)
        deliver(c, PGW_OK);
}

static void connect_step(struct pgconn *c)
{
    PostgresPollingStatusType r = PQconnectPoll(c->conn);
    switch (r) {
    case PGRES_POLLING_OK:
        connected(c);
        return;
    case PGRES_POLLING_FAILED:
        if (c->looked_up[0])
            conn_fail(c, PGW_EUNAVAIL, "%s (%s)", PQerrorMessage(c->conn), c->looked_up);
        else
            conn_fail(c, PGW_EUNAVAIL, "%s", PQerrorMessage(c->conn));
        return;
    case PGRES_POLLING_READING:
        if (poll_watch(c, UV_READABLE, true) != PGW_OK)
            conn_fail(c, PGW_EIO, "cannot watch the socket");
        return;
    case PGRES_POLLING_WRITING:
    default:
        if (poll_watch(c, UV_WRITABLE, true) != PGW_OK)
            conn_fail(c, PGW_EIO, "cannot watch the socket");
        return;
    }
}

/* PQconnectStartParams with the parameters, or with host/hostaddr replaced
 * by a looked-up name's lists. The deadline timer is started by the caller. */
static int start_libpq(struct pgconn *c, const char *hosts, const char *addrs)
{
    struct pgconn_params tmp;
    const struct pgconn_params *p = &c->params;
    if (hosts != NULL) {
        if (pgconn_params_copy(&tmp, &c->params) != PGW_OK ||
            pgconn_params_set(&tmp, "host", hosts) != PGW_OK ||
            pgconn_params_set(&tmp, "hostaddr", addrs) != PGW_OK) {
            pgconn_params_free(&tmp);
            snprintf(c->err, sizeof c->err, "out of memory starting a connection");
            return PGW_ENOMEM;
        }
        p = &tmp;
    }
    c->conn = PQconnectStartParams((const char *const *)p->keys, (const char *const *)p->vals, 0);
    if (hosts != NULL)
        pgconn_params_free(&tmp);
    if (!c->conn) {
        snprintf(c->err, sizeof c->err, "out of memory starting a connection");
        return PGW_ENOMEM;
    }
    c->state = CS_CONNECTING;
    if (PQstatus(c->conn) == CONNECTION_BAD) {
        snprintf(c->err, sizeof c->err, "%s", PQerrorMessage(c->conn));
        trim_msg(c->err);
        copy_str(c->lasterr, sizeof c->lasterr, c->err);
        PQfinish(c->conn);
        c->conn = NULL;
        c->state = CS_IDLE;
        arm_backoff(c);
        return PGW_EUNAVAIL;
    }
    /* libpq: after PQconnectStart, act as if PQconnectPoll said WRITING */
    if (poll_watch(c, UV_WRITABLE, true) != PGW_OK) {
        close_conn(c);
        snprintf(c->err, sizeof c->err, "cannot watch the socket");
        return PGW_EIO;
    }
    return PGW_OK;
}

/* The host to look up before libpq may connect, or NULL: none given (libpq's
 * default socket), a socket directory, an address, hostaddr already set, or
 * a list of hosts (left to libpq, which then resolves them itself). */
static const char *name_to_look_up(const struct pgconn *c)
{
    const char *host = pgconn_params_get(&c->params, "host");
    if (!host || !*host || host[0] == '/' || host[0] == '@' || strchr(host, ',') ||
        pgconn_params_get(&c->params, "hostaddr"))
        return NULL;
    unsigned char a[sizeof(struct in6_addr)];
    if (inet_pton(AF_INET, host, a) == 1 || inet_pton(AF_INET6, host, a) == 1)
        return NULL;
    return host;
}

static void on_resolved(uv_getaddrinfo_t *g, int status, struct addrinfo *ai)
{
    struct pgconn *c = g->data;
    c->resolving = false;
    c->open_handles--;
    /* still the attempt that asked: not destroyed, not timed out (a new
     * attempt cannot start while a lookup runs) */
    if (!c->destroyed && c->state == CS_CONNECTING && c->conn == NULL) {
        const char *name = pgconn_params_get(&c->params, "host");
        size_t hcap = (strlen(name) + 1) * PGCONN_MAX_ADDRS + 1;
        size_t acap = (INET6_ADDRSTRLEN + 1) * PGCONN_MAX_ADDRS + 1;
        char *hosts = malloc(hcap);
        char *addrs = malloc(acap);
        size_t hl = 0, al = 0;
        int n = 0;
        for (const struct addrinfo *a = ai; status == 0 && a && n < PGCONN_MAX_ADDRS && hosts && addrs;
             a = a->ai_next) {
            char ip[INET6_ADDRSTRLEN] = "";
            if (a->ai_family == AF_INET)
                uv_ip4_name((const struct sockaddr_in *)a->ai_addr, ip, sizeof ip);
            else if (a->ai_family == AF_INET6)
                uv_ip6_name((const struct sockaddr_in6 *)a->ai_addr, ip, sizeof ip);
            if (!ip[0])
                continue;
            hl += (size_t)snprintf(hosts + hl, hcap - hl, "%s%s", n ? "," : "", name);
            al += (size_t)snprintf(addrs + al, acap - al, "%s%s", n ? "," : "", ip);
            n++;
        }
        int rc;
        if (!hosts || !addrs) {
            rc = PGW_ENOMEM;
            snprintf(c->err, sizeof c->err, "out of memory starting a connection");
        } else if (status < 0 || n == 0) {
            rc = PGW_EUNAVAIL;
            snprintf(c->err, sizeof c->err, "could not translate host name \"%s\" to an address: %s",
                     name, status < 0 ? uv_strerror(status) : "no IPv4 or IPv6 address");
        } else {
            snprintf(c->looked_up, sizeof c->looked_up, "host \"%s\" is %s", name, addrs);
            rc = start_libpq(c, hosts, addrs);
        }
        free(hosts);
        free(addrs);
        if (rc != PGW_OK) {
            char why[sizeof c->err];
            copy_str(why, sizeof why, c->err);
            conn_fail(c, rc, "%s", why);
        }
    }
    uv_freeaddrinfo(ai);
    maybe_free(c);
}

static int start_connect(struct pgconn *c, uint32_t timeout_ms)
{
    c->looked_up[0] = '\0';
    const char *name = name_to_look_up(c);
    if (name == NULL) {
        int rc = start_libpq(c, NULL, NULL);
        if (rc == PGW_OK)
            uv_timer_start(&c->timer, on_timer, timeout_ms, 0);
        return rc;
    }
    if (c->resolving) {
        /* uv_getaddrinfo cannot be cancelled once running: no second one */
        snprintf(c->err, sizeof c->err,
                 "the lookup of \"%s\" from an earlier attempt has not come back yet", name);
        copy_str(c->lasterr, sizeof c->lasterr, c->err);
        arm_backoff(c);
        return PGW_EUNAVAIL;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    c->gai.data = c;
    int rc = uv_getaddrinfo(c->loop, &c->gai, on_resolved, name, NULL, &hints);
    if (rc != 0) {
        snprintf(c->err, sizeof c->err, "cannot look up \"%s\": %s", name, uv_strerror(rc));
        copy_str(c->lasterr, sizeof c->lasterr, c->err);
        arm_backoff(c);
        return PGW_EUNAVAIL;
    }
    c->resolving = true;
    c->open_handles++;
    c->state = CS_CONNECTING; /* the deadline covers the lookup */
    uv_timer_start(&c->timer, on_timer, timeout_ms, 0);
    return PGW_OK;
}

static void add_result(struct pgconn *c, PGresult *r)
{
    if (c->nres == c->capres) {
        size_t cap = c->capres ? c->capres * 2 : 4;
        PGresult **n = realloc(c->res, cap * sizeof *n);
        if (!n) {
            PQclear(r);
            if (!c->first_error) {
                c->first_error = PGW_ENOMEM;
                snprintf(c->err, sizeof c->err, "out of memory");
            }
            return;
        }
        c->res = n;
        c->capres = cap;
    }
    c->res[c->nres++] = r;
    ExecStatusType st = PQresultStatus(r);
    if ((st == PGRES_FATAL_ERROR || st == PGRES_BAD_RESPONSE || st == PGRES_NONFATAL_ERROR) &&
        !c->first_error && st != PGRES_NONFATAL_ERROR) {
        c->first_error = PGW_EIO;
        snprintf(c->err, sizeof c->err, "%s", PQresultErrorMessage(r));
        trim_msg(c->err);
    }
}

static void read_results(struct pgconn *c)
{
    if (!PQconsumeInput(c->conn)) {
        conn_fail(c, PGW_EUNAVAIL, "connection lost: %s", PQerrorMessage(c->conn));
        return;
    }
    while (!PQisBusy(c->conn)) {
        PGresult *r = PQgetResult(c->conn);
        if (!r) {
            c->state = CS_READY;
            int st = c->first_error;
            if (PQstatus(c->conn) == CONNECTION_BAD) {
                if (!st)
                    st = PGW_EUNAVAIL;
                close_conn(c);
            } else if (poll_watch(c, UV_READABLE, false) != PGW_OK) {
                close_conn(c);
            }
            deliver(c, st);
            return;
        }
        ExecStatusType s = PQresultStatus(r);
        if (s == PGRES_COPY_IN || s == PGRES_COPY_OUT || s == PGRES_COPY_BOTH) {
            PQclear(r);
            conn_fail(c, PGW_EPROTO, "unexpected COPY result");
            return;
        }
        add_result(c, r);
    }
}

static void send_query(struct pgconn *c)
{
    c->first_error = 0;
    c->err[0] = '\0';
    if (!PQsendQuery(c->conn, c->sql)) {
        conn_fail(c, PGW_EUNAVAIL, "cannot send query: %s", PQerrorMessage(c->conn));
        return;
    }
    c->state = CS_QUERY;
    int f = PQflush(c->conn);
    if (f < 0) {
        conn_fail(c, PGW_EUNAVAIL, "cannot send query: %s", PQerrorMessage(c->conn));
        return;
    }
    c->flushing = f == 1;
    if (poll_watch(c, UV_READABLE | (c->flushing ? UV_WRITABLE : 0), false) != PGW_OK)
        conn_fail(c, PGW_EIO, "cannot watch the socket");
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    struct pgconn *c = h->data;
    if (h != c->poll)
        return; /* stale handle, being closed */
    if (status < 0) {
        /* libuv reports POLLERR as an error (e.g. a refused non-blocking
         * connect): let libpq read the socket and name the real cause */
        if (c->state == CS_IDLE) {
            conn_fail(c, PGW_EIO, "socket error: %s", uv_strerror(status));
            return;
        }
        events = UV_READABLE | UV_WRITABLE;
        if (c->state == CS_QUERY && !c->flushing)
            events = UV_READABLE;
    }
    switch (c->state) {
    case CS_CONNECTING:
        connect_step(c);
        return;
    case CS_QUERY:
        if (c->flushing && (events & UV_WRITABLE)) {
            int f = PQflush(c->conn);
            if (f < 0) {
                conn_fail(c, PGW_EUNAVAIL, "cannot send query: %s", PQerrorMessage(c->conn));
                return;
            }
            c->flushing = f == 1;
            if (!c->flushing && poll_watch(c, UV_READABLE, false) != PGW_OK) {
                conn_fail(c, PGW_EIO, "cannot watch the socket");
                return;
            }
        }
        if (events & UV_READABLE)
            read_results(c);
        return;
    case CS_READY:
        /* idle: the server may have closed the connection (shutdown) */
        if (!PQconsumeInput(c->conn) || PQstatus(c->conn) == CONNECTION_BAD) {
            snprintf(c->err, sizeof c->err, "%s", PQerrorMessage(c->conn));
            trim_msg(c->err);
            log_debug("pg", "%s connection to %s closed: %s", c->name, c->where, c->err);
            close_conn(c);
            return;
        }
        /* drain notices / stray results */
        while (!PQisBusy(c->conn)) {
            PGresult *r = PQgetResult(c->conn);
            if (!r)
                break;
            PQclear(r);
        }
        return;
    case CS_IDLE:
    default:
        return;
    }
}

static void on_timer(uv_timer_t *t)
{
    struct pgconn *c = t->data;
    if (c->deferred) {
        c->deferred = false;
        int st = c->deferred_status;
        if (st == PGW_OK && c->qcb && c->state == CS_READY) {
            uint64_t now = uv_now(c->loop);
            uv_timer_start(&c->timer, on_timer, c->q_deadline > now ? c->q_deadline - now : 1, 0);
            send_query(c);
            return;
        }
        deliver(c, st);
        return;
    }
    if (c->state == CS_CONNECTING) {
        conn_fail(c, PGW_ETIMEDOUT, "connection to %s timed out", c->where);
    } else if (c->state == CS_QUERY) {
        /* PQcancel blocks: drop the connection instead */
        conn_fail(c, PGW_ETIMEDOUT, "query on %s timed out after %u ms", c->where,
                  (unsigned)c->q_timeout_ms);
    }
}

/* ---- public ---------------------------------------------------------------- */

int pgconn_new(uv_loop_t *loop, const struct pgconn_params *params, const struct pgconn_opts *opts,
               struct pgconn **out)
{
    *out = NULL;
    struct pgconn *c = calloc(1, sizeof *c);
    if (!c)
        return PGW_ENOMEM;
    if (pgconn_params_copy(&c->params, params) != PGW_OK) {
        free(c);
        return PGW_ENOMEM;
    }
    c->loop = loop;
    if (opts)
        c->opts = *opts;
    if (!c->opts.connect_timeout_ms)
        c->opts.connect_timeout_ms = 5000;
    if (!c->opts.query_timeout_ms)
        c->opts.query_timeout_ms = 10000;
    if (!c->opts.backoff_min_ms)
        c->opts.backoff_min_ms = 250;
    if (!c->opts.backoff_max_ms)
        c->opts.backoff_max_ms = 10000;
    if (c->opts.backoff_max_ms < c->opts.backoff_min_ms)
        c->opts.backoff_max_ms = c->opts.backoff_min_ms;
    snprintf(c->name, sizeof c->name, "%s", opts && opts->name ? opts->name : "pg");
    c->opts.name = c->name;
    const char *user = pgconn_params_get(params, "user");
    const char *host = pgconn_params_get(params, "host");
    const char *port = pgconn_params_get(params, "port");
    const char *db = pgconn_params_get(params, "dbname");
    snprintf(c->where, sizeof c->where, "%s@%s:%s/%s", user ? user : "", host ? host : "",
             port ? port : "", pgconn_params_get(params, "replication") ? "replication" : (db ? db : ""));
    c->seed = (unsigned)uv_hrtime() ^ (unsigned)(uintptr_t)c;
    uv_timer_init(loop, &c->timer);
    c->timer.data = c;
    c->open_handles = 1;
    *out = c;
    return PGW_OK;
}

int pgconn_connect(struct pgconn *c, pgconn_connect_cb cb, void *ctx)
{
    if (c->ccb || c->qcb || c->state == CS_CONNECTING || c->state == CS_QUERY || c->deferred)
        return PGW_EBUSY;
    c->ccb = cb;
    c->cctx = ctx;
    if (c->state == CS_READY) {
        defer(c, PGW_OK);
        return PGW_OK;
    }
    int rc = start_connect(c, c->opts.connect_timeout_ms);
    if (rc != PGW_OK)
        defer(c, rc);
    return PGW_OK;
}

int pgconn_query(struct pgconn *c, const char *sql, uint32_t timeout_ms, pgconn_query_cb cb,
                 void *ctx)
{
    if (c->ccb || c->qcb || c->state == CS_CONNECTING || c->state == CS_QUERY || c->deferred)
        return PGW_EBUSY;
    if (!sql)
        return PGW_EINVAL;
    char *copy = strdup(sql);
    if (!copy)
        return PGW_ENOMEM;
    wipe_free(c->sql);
    c->sql = copy;
    c->qcb = cb;
    c->qctx = ctx;
    c->q_timeout_ms = timeout_ms ? timeout_ms : c->opts.query_timeout_ms;
    c->q_deadline = uv_now(c->loop) + c->q_timeout_ms;
    c->err[0] = '\0';
    c->first_error = 0;
    if (c->state == CS_READY) {
        /* sent from the next tick: a send failure must not call back from here */
        defer(c, PGW_OK);
        return PGW_OK;
    }
    uint64_t now = uv_now(c->loop);
    if (c->backoff_until > now) {
        snprintf(c->err, sizeof c->err, "not connected to %s: next attempt in %llu ms (last error: %s)",
                 c->where, (unsigned long long)(c->backoff_until - now),
                 c->lasterr[0] ? c->lasterr : "none");
        defer(c, PGW_EUNAVAIL);
        return PGW_OK;
    }
    uint32_t ct = c->opts.connect_timeout_ms < c->q_timeout_ms ? c->opts.connect_timeout_ms
                                                               : c->q_timeout_ms;
    int rc = start_connect(c, ct);
    if (rc != PGW_OK)
        defer(c, rc);
    return PGW_OK;
}

bool pgconn_is_connected(const struct pgconn *c)
{
    return c->state == CS_READY || c->state == CS_QUERY;
}

bool pgconn_is_busy(const struct pgconn *c)
{
    return c->ccb || c->qcb || c->state == CS_CONNECTING || c->state == CS_QUERY;
}

int pgconn_server_version(const struct pgconn *c)
{
    return c->conn && (c->state == CS_READY || c->state == CS_QUERY) ? PQserverVersion(c->conn) : 0;
}

void pgconn_disconnect(struct pgconn *c)
{
    bool pending = c->ccb || c->qcb;
    uv_timer_stop(&c->timer);
    close_conn(c);
    if (pending) {
        snprintf(c->err, sizeof c->err, "disconnected");
        defer(c, PGW_ECANCELED);
    }
}

void pgconn_destroy(struct pgconn *c)
{
    if (!c)
        return;
    c->ccb = NULL;
    c->qcb = NULL;
    c->deferred = false;
    clear_results(c);
    close_conn(c);
    c->destroyed = true;
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, on_timer_closed);
}

char *pgconn_quote_ident(const char *s)
{
    size_t n = strlen(s);
    char *o = malloc(n * 2 + 3);
    if (!o)
        return NULL;
    size_t k = 0;
    o[k++] = '"';
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '"')
            o[k++] = '"';
        o[k++] = s[i];
    }
    o[k++] = '"';
    o[k] = '\0';
    return o;
}

char *pgconn_quote_literal(const char *s)
{
    size_t n = strlen(s);
    char *o = malloc(n * 2 + 4);
    if (!o)
        return NULL;
    size_t k = 0;
    bool bs = strchr(s, '\\') != NULL;
    if (bs)
        o[k++] = 'E';
    o[k++] = '\'';
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\'' || s[i] == '\\')
            o[k++] = s[i];
        o[k++] = s[i];
    }
    o[k++] = '\'';
    o[k] = '\0';
    return o;
}
