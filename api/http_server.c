/* The listening side of the HTTP server and the route table.
 *
 * Happy path: http_server_start binds and listens synchronously (so that
 * "address in use" is a return value, not a callback), then every accepted
 * socket becomes a connection (api/http_conn.c) whose complete requests come
 * back here to be routed.
 * Failure modes: bad listen address or bind/listen error (returned, with
 * host:port in errbuf); accept failures (logged, the listener carries on);
 * more than max_connections open (the new socket is accepted and closed at
 * once, so the kernel's accept queue never fills up behind slow clients).
 *
 * Closing: http_server_close closes the listener and every connection; the
 * server is freed, and `done` runs, in the close callback of the last handle,
 * so the loop can be closed right after. */
#include "api/http_internal.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/log.h"

#define HTTP_BACKLOG 511

/* --- closing --------------------------------------------------------- */

static void server_free(struct http_server *s)
{
    http_tls_ctx_free(s->tls_ctx);
    free(s->tls_rbuf);
    free(s->routes);
    free(s->host);
    free(s->server_name);
    free(s->drain_reason);
    free(s);
}

void http_server_object_gone(struct http_server *s)
{
    s->live--;
    if (!s->closing || s->live > 0)
        return;
    void (*done)(void *) = s->done;
    void *ctx = s->done_ctx;
    server_free(s);
    if (done != NULL)
        done(ctx);
}

static void on_listener_closed(uv_handle_t *h)
{
    http_server_object_gone(h->data);
}

void http_server_close(struct http_server *s, void (*done)(void *ctx), void *ctx)
{
    if (s == NULL || s->closing)
        return;
    s->closing = true;
    s->done = done;
    s->done_ctx = ctx;
    uv_close((uv_handle_t *)&s->listener, on_listener_closed);
    for (struct http_conn *c = s->conns; c != NULL; c = c->next)
        http_conn_close(c, "server shutting down");
}

void http_server_drain(struct http_server *s, const char *reason)
{
    if (s == NULL || s->drain_reason != NULL)
        return;
    s->drain_reason = strdup(reason != NULL ? reason : "shutting down");
}

/* --- accepting -------------------------------------------------------- */

struct rejected {
    uv_tcp_t tcp;
    struct http_server *srv;
};

static void on_rejected_closed(uv_handle_t *h)
{
    struct rejected *r = h->data;
    struct http_server *s = r->srv;
    free(r);
    http_server_object_gone(s);
}

static void reject_one(struct http_server *s)
{
    struct rejected *r = calloc(1, sizeof *r);
    if (r == NULL || uv_tcp_init(s->loop, &r->tcp) != 0) {
        /* Without a handle libuv keeps the socket queued; nothing better to
         * do than retry on the next connection event. */
        free(r);
        log_error("http", "out of memory rejecting a connection");
        return;
    }
    r->srv = s;
    r->tcp.data = r;
    s->live++;
    (void)uv_accept((uv_stream_t *)&s->listener, (uv_stream_t *)&r->tcp);
    uv_close((uv_handle_t *)&r->tcp, on_rejected_closed);
    s->stats.connections_rejected++;
    uint64_t now = uv_now(s->loop);
    if (s->last_reject_log == 0 || now - s->last_reject_log >= 10000) {
        s->last_reject_log = now;
        log_warn("http", "%u connections open (max_connections): closing new ones at once "
                 "(%llu rejected so far)", s->stats.connections_open,
                 (unsigned long long)s->stats.connections_rejected);
    }
}

static void on_connection(uv_stream_t *server, int status)
{
    struct http_server *s = server->data;
    if (status < 0) {
        log_warn("http", "accept on %s:%u failed: %s", s->host, s->port, uv_strerror(status));
        return;
    }
    if (s->closing)
        return;
    if (s->stats.connections_open >= s->opts.max_connections) {
        reject_one(s);
        return;
    }
    int rc = http_conn_accept(s);
    if (rc != 0)
        log_warn("http", "cannot accept a connection on %s:%u: %s", s->host, s->port,
                 uv_strerror(rc));
}

/* --- starting -------------------------------------------------------- */

static char *dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d != NULL)
        memcpy(d, s, n);
    return d;
}

/* Parse an IPv4 or IPv6 literal ("[::1]" accepted too) into ss. */
static int parse_addr(const char *host, uint16_t port, struct sockaddr_storage *ss)
{
    char buf[64];
    size_t n = strlen(host);
    memset(ss, 0, sizeof *ss);
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)ss) == 0)
        return 0;
    if (n >= 2 && host[0] == '[' && host[n - 1] == ']' && n - 2 < sizeof buf) {
        memcpy(buf, host + 1, n - 2);
        buf[n - 2] = '\0';
        host = buf;
    }
    if (strchr(host, ':') != NULL && uv_ip6_addr(host, port, (struct sockaddr_in6 *)ss) == 0)
        return 0;
    return -1;
}

static void fmt_hostport(char *out, size_t len, const char *host, unsigned port)
{
    if (strchr(host, ':') != NULL && host[0] != '[')
        snprintf(out, len, "[%s]:%u", host, port);
    else
        snprintf(out, len, "%s:%u", host, port);
}

/* Bind and listen with plain sockets: errors are then synchronous and no
 * libuv handle exists yet that would need an asynchronous close. */
static int open_listener(const struct sockaddr_storage *ss, const char *where, uint16_t *port,
                         int *out_fd, char *errbuf, size_t errlen)
{
    socklen_t sl = ss->ss_family == AF_INET ? sizeof(struct sockaddr_in)
                                            : sizeof(struct sockaddr_in6);
    int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(errbuf, errlen, "cannot listen on %s: socket: %s", where, strerror(errno));
        return PGW_EIO;
    }
    int one = 1;
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (const struct sockaddr *)ss, sl) != 0) {
        int e = errno;
        close(fd);
        snprintf(errbuf, errlen, "cannot listen on %s: %s", where, strerror(e));
        return e == EADDRNOTAVAIL ? PGW_EINVAL : PGW_EIO;
    }
    if (listen(fd, HTTP_BACKLOG) != 0) {
        int e = errno;
        close(fd);
        snprintf(errbuf, errlen, "cannot listen on %s: %s", where, strerror(e));
        return PGW_EIO;
    }
    struct sockaddr_storage bound;
    socklen_t bl = sizeof bound;
    if (getsockname(fd, (struct sockaddr *)&bound, &bl) != 0) {
        int e = errno;
        close(fd);
        snprintf(errbuf, errlen, "cannot listen on %s: getsockname: %s", where, strerror(e));
        return PGW_EIO;
    }
    *port = ntohs(bound.ss_family == AF_INET ? ((struct sockaddr_in *)&bound)->sin_port
                                             : ((struct sockaddr_in6 *)&bound)->sin6_port);
    *out_fd = fd;
    return PGW_OK;
}

static void on_failed_listener_closed(uv_handle_t *h)
{
    server_free(h->data);
}

int http_server_check_addr(const char *host, uint16_t port, char *errbuf, size_t errlen)
{
    char where[128];
    struct sockaddr_storage ss;
    fmt_hostport(where, sizeof where, host, port);
    if (parse_addr(host, port, &ss) != 0) {
        snprintf(errbuf, errlen, "cannot listen on %s: '%s' is not an IPv4 or IPv6 address",
                 where, host);
        return PGW_EINVAL;
    }
    return PGW_OK;
}

int http_server_check_tls(const char *certfile, const char *keyfile, const char *cafile,
                          const char *verify_client, char *errbuf, size_t errlen)
{
    struct ssl_ctx_st *ctx = NULL;
    int rc = http_tls_ctx_new(certfile, keyfile, cafile, verify_client, &ctx, errbuf, errlen);
    if (rc == PGW_OK)
        http_tls_ctx_free(ctx);
    return rc;
}

int http_server_start(uv_loop_t *loop, const struct http_server_opts *opts,
                      struct http_server **out, char *errbuf, size_t errlen)
{
    char where[128];
    if (errlen > 0)
        errbuf[0] = '\0';
    *out = NULL;
    if (loop == NULL || opts == NULL || opts->host == NULL || opts->host[0] == '\0') {
        snprintf(errbuf, errlen, "http server: listen address missing");
        return PGW_EINVAL;
    }
    fmt_hostport(where, sizeof where, opts->host, opts->port);
    struct sockaddr_storage ss;
    if (http_server_check_addr(opts->host, opts->port, errbuf, errlen) != PGW_OK)
        return PGW_EINVAL;
    (void)parse_addr(opts->host, opts->port, &ss);

    struct http_server *s = calloc(1, sizeof *s);
    if (s == NULL) {
        snprintf(errbuf, errlen, "http server: out of memory");
        return PGW_ENOMEM;
    }
    s->loop = loop;
    s->opts = *opts;
    s->host = dup_str(opts->host);
    s->server_name = dup_str(opts->server_name != NULL ? opts->server_name : "pgwarden");
    if (s->host == NULL || s->server_name == NULL) {
        server_free(s);
        snprintf(errbuf, errlen, "http server: out of memory");
        return PGW_ENOMEM;
    }
    s->opts.host = s->host;
    s->opts.server_name = s->server_name;
    if (s->opts.request_timeout_ms == 0)
        s->opts.request_timeout_ms = 5000;
    if (s->opts.idle_timeout_ms == 0)
        s->opts.idle_timeout_ms = 60000;
    if (s->opts.max_header_bytes == 0)
        s->opts.max_header_bytes = 16384;
    if (s->opts.max_body_bytes == 0)
        s->opts.max_body_bytes = 1024 * 1024;
    if (s->opts.max_connections == 0)
        s->opts.max_connections = 1024;
    /* TLS files are read now, so a bad one is an error of this call; the
     * paths are not kept (a reload passes them again). */
    if (opts->tls_certfile != NULL || opts->tls_keyfile != NULL) {
        int trc = http_tls_ctx_new(opts->tls_certfile, opts->tls_keyfile, opts->tls_cafile,
                                   opts->tls_verify_client, &s->tls_ctx, errbuf, errlen);
        if (trc != PGW_OK) {
            server_free(s);
            return trc;
        }
    } else if (opts->tls_verify_client != NULL && strcmp(opts->tls_verify_client, "none") != 0) {
        server_free(s);
        snprintf(errbuf, errlen, "verify_client %s needs TLS (a certificate and a key file)",
                 opts->tls_verify_client);
        return PGW_EINVAL;
    }
    s->opts.tls_certfile = s->opts.tls_keyfile = s->opts.tls_cafile = NULL;
    s->opts.tls_verify_client = NULL;

    int fd = -1;
    int rc = open_listener(&ss, where, &s->port, &fd, errbuf, errlen);
    if (rc != PGW_OK) {
        server_free(s);
        return rc;
    }
    if (uv_tcp_init(loop, &s->listener) != 0) {
        close(fd);
        server_free(s);
        snprintf(errbuf, errlen, "cannot listen on %s: uv_tcp_init failed", where);
        return PGW_EIO;
    }
    s->listener.data = s;
    int uvrc = uv_tcp_open(&s->listener, fd);
    bool fd_owned = (uvrc == 0);
    if (uvrc == 0)
        uvrc = uv_listen((uv_stream_t *)&s->listener, HTTP_BACKLOG, on_connection);
    if (uvrc != 0) {
        /* Practically unreachable (the socket already listens). The handle
         * exists now, so it is released on the loop's next turn. */
        snprintf(errbuf, errlen, "cannot listen on %s: %s", where, uv_strerror(uvrc));
        if (!fd_owned)
            close(fd);
        uv_close((uv_handle_t *)&s->listener, on_failed_listener_closed);
        return PGW_EIO;
    }
    s->live = 1;
    fmt_hostport(where, sizeof where, s->host, s->port);
    log_info("http", "listening on %s%s", where, s->tls_ctx != NULL ? " (HTTPS)" : "");
    *out = s;
    return PGW_OK;
}

uint16_t http_server_port(const struct http_server *s)
{
    return s->port;
}

void http_server_get_stats(const struct http_server *s, struct http_server_stats *out)
{
    *out = s->stats;
}

/* --- routing ---------------------------------------------------------- */

int http_server_add_routes(struct http_server *s, const struct http_route *routes, size_t n,
                           void *ctx)
{
    if (s == NULL || (routes == NULL && n > 0))
        return PGW_EINVAL;
    for (size_t i = 0; i < n; i++) {
        const struct http_route *r = &routes[i];
        if (r->path == NULL || r->path[0] != '/' || r->fn == NULL || r->methods == 0) {
            log_error("http", "route %zu (%s): needs a path starting with '/', methods and a "
                      "handler", i, r->path != NULL ? r->path : "(null)");
            return PGW_EINVAL;
        }
    }
    if (s->n_routes + n > s->cap_routes) {
        size_t cap = s->cap_routes ? s->cap_routes : 16;
        while (cap < s->n_routes + n)
            cap *= 2;
        struct http_route_row *rows = realloc(s->routes, cap * sizeof *rows);
        if (rows == NULL)
            return PGW_ENOMEM;
        s->routes = rows;
        s->cap_routes = cap;
    }
    for (size_t i = 0; i < n; i++) {
        s->routes[s->n_routes].route = &routes[i];
        s->routes[s->n_routes].ctx = ctx;
        s->n_routes++;
    }
    return PGW_OK;
}

static void allow_list(unsigned methods, char *out, size_t len)
{
    static const struct { unsigned bit; const char *name; } names[] = {
        {HTTP_M_GET, "GET"},     {HTTP_M_HEAD, "HEAD"},   {HTTP_M_OPTIONS, "OPTIONS"},
        {HTTP_M_POST, "POST"},   {HTTP_M_PUT, "PUT"},     {HTTP_M_PATCH, "PATCH"},
        {HTTP_M_DELETE, "DELETE"},
    };
    size_t o = 0;
    out[0] = '\0';
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (!(methods & names[i].bit))
            continue;
        int n = snprintf(out + o, len - o, "%s%s", o > 0 ? ", " : "", names[i].name);
        if (n < 0 || (size_t)n >= len - o)
            return;
        o += (size_t)n;
    }
}

/* Exact match first, then the longest prefix. Rows for the same path may
 * split the methods between handlers; the first row taking the method wins.
 * If none takes it, *allowed gets the union of their methods (405). */
static const struct http_route_row *route_find(const struct http_server *s, const char *path,
                                               unsigned method, unsigned *allowed)
{
    bool exact_found = false, prefix_found = false;
    size_t best_len = 0;
    *allowed = 0;
    for (size_t i = 0; i < s->n_routes; i++) {
        const struct http_route *r = s->routes[i].route;
        size_t len = strlen(r->path);
        if (!r->prefix && strcmp(r->path, path) == 0) {
            exact_found = true;
        } else if (r->prefix && strncmp(r->path, path, len) == 0 && len > best_len) {
            prefix_found = true;
            best_len = len;
        }
    }
    if (!exact_found && !prefix_found)
        return NULL;
    for (size_t i = 0; i < s->n_routes; i++) {
        const struct http_route *r = s->routes[i].route;
        bool at_level = exact_found ? !r->prefix && strcmp(r->path, path) == 0
                                    : r->prefix && strlen(r->path) == best_len &&
                                          strncmp(r->path, path, best_len) == 0;
        if (!at_level)
            continue;
        *allowed |= r->methods;
        if (r->methods & method)
            return &s->routes[i];
    }
    return NULL;
}

void http_server_dispatch(struct http_server *s, struct http_exchange *x)
{
    const struct http_request *req = &x->req;
    if (x->bad_path) {
        s->stats.bad_requests++;
        http_reply_text(x, 400, "bad request: invalid path (bad percent-encoding, %00, or not "
                                 "starting with '/')");
        return;
    }
    if (s->drain_reason != NULL) {
        http_reply_text(x, 503, s->drain_reason);
        return;
    }
    unsigned allowed = 0;
    const struct http_route_row *row = route_find(s, req->path, req->method, &allowed);
    if (row != NULL) {
        row->route->fn(x, req, row->ctx);
        return;
    }
    char msg[HTTP_MAX_URL + 64];
    if (allowed == 0) {
        snprintf(msg, sizeof msg, "not found: %s", req->path);
        http_reply_text(x, 404, msg);
        return;
    }
    char allow[96];
    allow_list(allowed, allow, sizeof allow);
    http_reply_header(x, "Allow", allow);
    snprintf(msg, sizeof msg, "method %s not allowed on %s", req->method_name, req->path);
    http_reply_text(x, 405, msg);
}
