/* A small asynchronous HTTP/1.1 client on libuv, used by command forwarding
 * to the Raft leader, the controller's fresh-status probes of members, and
 * `pgwarden ctl`. One request per connection (Connection: close), a total
 * deadline per request, responses with Content-Length or chunked bodies.
 * https:// URLs speak TLS 1.2+ (OpenSSL), verifying the server's certificate
 * and its host name or IP address unless told otherwise.
 *
 * Happy path: resolve (IPv4/IPv6 literal or name) -> connect -> [TLS
 * handshake] -> write -> read until the response is complete -> callback
 * once.
 * Failure modes: bad URL or unusable TLS files (returned synchronously),
 * connect refused, TLS handshake refused (certificate not trusted, name
 * mismatch, client certificate required), deadline passed, malformed
 * response, response too large (all via the callback, on a later loop
 * iteration, with a message). */
#ifndef PGW_COMMON_HTTPC_H
#define PGW_COMMON_HTTPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "common/status.h"

struct httpc_request; /* opaque, alive until the callback has run */

struct httpc_response {
    int status;        /* PGW_OK, or a negative PGW_E* for transport failure */
    int http_status;   /* 200, 503, ... (0 on transport failure) */
    const char *body;  /* NUL-terminated; valid only during the callback */
    size_t body_len;
    const char *error; /* transport failure message, "" on success */
};

typedef void (*httpc_cb)(const struct httpc_response *resp, void *ctx);

/* TLS settings for https:// URLs (ignored for http://). The files are read
 * when the request starts; a context per distinct setting is cached and
 * re-read when a file changes (a renewed certificate). */
struct httpc_tls_opts {
    const char *cafile;   /* CAs that must have signed the server's certificate;
                             NULL = the system's trust store */
    const char *certfile; /* client certificate (PEM, may hold the chain), with keyfile */
    const char *keyfile;  /* its private key (no passphrase) */
    bool insecure;        /* verify neither the certificate nor the name (tests) */
};

struct cfg;
/* The settings a node uses for cluster-internal calls to other members'
 * REST APIs: restapi.cafile, and restapi.certfile/keyfile as a client
 * certificate when restapi.verify_client is optional or required. The
 * strings point into cfg. */
void httpc_tls_from_cfg(const struct cfg *cfg, struct httpc_tls_opts *out);

struct httpc_opts {
    const char *method;       /* "GET", "POST", ... */
    const char *url;          /* http[s]://host:port/path?query */
    const char *body;         /* may be NULL */
    size_t body_len;
    const char *content_type; /* default application/json when body != NULL */
    const char *auth_user;    /* basic auth, may be NULL */
    const char *auth_password;
    uint32_t timeout_ms;      /* total deadline, default 5000 */
    size_t max_response_bytes; /* default 4 MiB */
    struct httpc_tls_opts tls; /* for https:// */
};

/* Start a request. Returns 0 and (optionally) the request handle, or a
 * negative status if the options are unusable (the callback will not run),
 * with the reason in errbuf (e.g. "url 'ftp://...': expected http:// or
 * https://", "TLS CA file /x: No such file or directory"). errbuf may be NULL
 * when errlen is 0. */
int httpc_request_start(uv_loop_t *loop, const struct httpc_opts *opts, httpc_cb cb, void *ctx,
                        struct httpc_request **out, char *errbuf, size_t errlen) PGW_MUST_CHECK;

/* Cancel: the callback still runs once, later, with PGW_ECANCELED. Only
 * valid before the callback has run (the handle is freed after it); a
 * cancel after the request has already completed but before its callback
 * ran is a no-op. */
void httpc_request_cancel(struct httpc_request *r);

#endif
