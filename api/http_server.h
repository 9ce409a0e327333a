/* HTTP/1.1 server on the daemon's libuv loop, parsing with llhttp.
 *
 * Handlers are rows in a route table; later features only add rows. A
 * handler receives a parsed request and answers through http_reply(), either
 * before it returns or later (an action that waits for a Raft commit or for a
 * switchover's outcome). Requests on one connection are answered in order
 * (pipelining); while one is pending, the connection reads no further.
 *
 * Protection for load-balancer probes: a per-request read deadline (a slow or
 * silent client is dropped), limits on header (431) and body (413) size, a
 * cap on concurrent connections, 400 for malformed HTTP, 404 for an unknown
 * path, 405 (with Allow) for a method the route does not take. */
#ifndef PGW_API_HTTP_SERVER_H
#define PGW_API_HTTP_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "common/status.h"

/* Method bits for route tables. */
enum {
    HTTP_M_GET = 1u << 0,
    HTTP_M_HEAD = 1u << 1,
    HTTP_M_OPTIONS = 1u << 2,
    HTTP_M_POST = 1u << 3,
    HTTP_M_PUT = 1u << 4,
    HTTP_M_PATCH = 1u << 5,
    HTTP_M_DELETE = 1u << 6,
};
#define HTTP_M_PROBE (HTTP_M_GET | HTTP_M_HEAD | HTTP_M_OPTIONS)

struct http_server;
struct http_exchange; /* one request and its (future) reply */

struct http_header {
    const char *name; /* lower-cased */
    const char *value;
};

struct http_request {
    unsigned method;           /* one HTTP_M_* bit */
    const char *method_name;   /* "GET" */
    const char *path;          /* percent-decoded path, without the query */
    const char *query;         /* raw query string without '?', "" if none */
    const char *body;          /* NUL-terminated copy; body_len excludes the NUL */
    size_t body_len;
    const struct http_header *headers;
    size_t n_headers;
    char client_ip[64];        /* peer address as text */
    bool tls;                  /* arrived over TLS */
    /* TLS only: the client presented a certificate that verified against
     * the server's CA file (see http_request_client_verified). */
    bool client_verified;
};

typedef void (*http_handler_fn)(struct http_exchange *x, const struct http_request *req, void *ctx);

struct http_route {
    const char *path;   /* exact path, or a prefix when prefix is true */
    unsigned methods;   /* HTTP_M_* bits accepted */
    bool prefix;
    http_handler_fn fn;
};

struct http_server_opts {
    const char *host;            /* listen address, IPv4 or IPv6 literal */
    uint16_t port;               /* 0 = pick a free port (tests) */
    uint32_t request_timeout_ms; /* read deadline for one request (headers+body); default 5000 */
    uint32_t idle_timeout_ms;    /* keep-alive idle close; default 60000 */
    size_t max_header_bytes;     /* total request line + headers; default 16384 -> 431 */
    size_t max_body_bytes;       /* default 1 MiB -> 413 */
    unsigned max_connections;    /* default 1024; beyond it new connections are closed at once */
    const char *server_name;     /* Server: header; default "pgwarden" */
    /* HTTPS: set tls_certfile and tls_keyfile (PEM; the certificate file may
     * hold the chain). TLS 1.2 and newer only; the handshake must complete
     * within request_timeout_ms of accept. The files are read at start. */
    const char *tls_certfile, *tls_keyfile;
    const char *tls_cafile;        /* CAs that verify client certificates */
    const char *tls_verify_client; /* "none" (default), "optional", "required" */
};

/* What http_server_start checks of its options before it binds, for
 * `pgwarden validate`: the listen host is an IPv4 or IPv6 literal (no
 * name: nothing is resolved), and the TLS files load (readable PEM, the key
 * matches the certificate, the CA file holds certificates, verify_client
 * has what it needs). The messages are those http_server_start gives. */
int http_server_check_addr(const char *host, uint16_t port, char *errbuf, size_t errlen)
    PGW_MUST_CHECK;
int http_server_check_tls(const char *certfile, const char *keyfile, const char *cafile,
                          const char *verify_client, char *errbuf, size_t errlen) PGW_MUST_CHECK;

/* Create and start listening. Errors (bad address, port in use) are returned
 * with a message in errbuf. */
int http_server_start(uv_loop_t *loop, const struct http_server_opts *opts,
                      struct http_server **out, char *errbuf, size_t errlen) PGW_MUST_CHECK;

/* Add rows to the route table. `routes` must outlive the server; ctx is passed
 * to every handler of these rows. Later rows do not override earlier ones. */
int http_server_add_routes(struct http_server *s, const struct http_route *routes, size_t n,
                           void *ctx) PGW_MUST_CHECK;

/* Load new TLS files (certificate reload on SIGHUP): new connections use
 * them, established ones keep what they were accepted with. On any error the
 * running settings stay and errbuf says what was wrong (file, OpenSSL's
 * reason). Refused (PGW_EINVAL) on a server started without TLS: turning TLS
 * on or off needs a restart. verify_client: NULL or "none", "optional",
 * "required" ("optional" and "required" need cafile). */
int http_server_reload_tls(struct http_server *s, const char *certfile, const char *keyfile,
                           const char *cafile, const char *verify_client, char *errbuf,
                           size_t errlen) PGW_MUST_CHECK;

/* Whether the server speaks TLS. */
bool http_server_is_tls(const struct http_server *s);

/* True when the request came over TLS with a client certificate that
 * verified against tls_cafile (verify_client optional or required). */
bool http_request_client_verified(const struct http_request *req);

/* The verify_client "optional" policy: true when a request must be refused
 * for want of a client certificate, i.e. verify_client is "optional", the
 * method writes (anything but GET, HEAD, OPTIONS) and no verified
 * certificate came with it. ("required" is enforced by the handshake.) */
bool http_request_needs_client_cert(const struct http_request *req, const char *verify_client);

/* The port actually bound (useful when opts.port was 0). */
uint16_t http_server_port(const struct http_server *s);

/* Stop accepting, close every connection, free everything once all handles
 * are closed; `done` (may be NULL) runs then. Pending exchanges are
 * cancelled: their abort callbacks run, later http_reply() calls are no-ops. */
void http_server_close(struct http_server *s, void (*done)(void *ctx), void *ctx);
/* From now on every request gets 503 with this reason instead of reaching
 * its handler: the daemon is closing what the handlers read, while the
 * server itself must keep running a little longer. s may be NULL. */
void http_server_drain(struct http_server *s, const char *reason);

/* --- answering ------------------------------------------------------ */

/* Answer the request exactly once. The body is copied. For HEAD and OPTIONS
 * requests the body is not sent (status and headers only), so a health route
 * can serve GET, HEAD and OPTIONS from one handler. content_type may be NULL
 * (application/json is assumed when there is a body). */
void http_reply(struct http_exchange *x, int status, const char *content_type,
                const char *body, size_t len);

/* Add a response header before http_reply (e.g. WWW-Authenticate, Allow). */
void http_reply_header(struct http_exchange *x, const char *name, const char *value);

/* Convenience: reply with a JSON body {"error": msg} or plain text. */
void http_reply_text(struct http_exchange *x, int status, const char *text);

/* For handlers that answer later: called if the client goes away or the
 * server closes before the reply. After it runs, http_reply() is a no-op but
 * still required (it frees the exchange). */
void http_exchange_on_abort(struct http_exchange *x, void (*fn)(void *ctx), void *ctx);

/* Look up a request header (name case-insensitive); NULL if absent. */
const char *http_request_header(const struct http_request *req, const char *name);

/* Look up a query parameter, percent-decoded into buf; returns NULL if absent. */
const char *http_query_param(const struct http_request *req, const char *name, char *buf,
                             size_t len);

/* Counters for /metrics and tests. */
struct http_server_stats {
    uint64_t connections_accepted, connections_rejected, requests, timeouts, bad_requests;
    uint64_t tls_handshake_failures; /* refused certificates, not TLS, protocol errors */
    unsigned connections_open;
};
void http_server_get_stats(const struct http_server *s, struct http_server_stats *out);

#endif
