/* Private to api/http_*.c: the server, connection and exchange objects and
 * the helpers the three files share. Nothing outside api/http_*.c includes
 * this; the public contract is api/http_server.h. */
#ifndef PGW_API_HTTP_INTERNAL_H
#define PGW_API_HTTP_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <llhttp.h>
#include <uv.h>

#include "api/http_server.h"

#define HTTP_MAX_HEADERS 64
#define HTTP_MAX_URL 8192
/* Unparsed input kept while a request is being answered (pipelining). When
 * this fills up the connection stops reading until the backlog drains. */
#define HTTP_IN_INITIAL 8192
#define HTTP_IN_MAX (64 * 1024)
/* After a reply that closes the connection we shut down our side and drain
 * the peer's input for a while, so that unread bytes (the rest of an
 * oversize body) do not make the kernel answer with RST and destroy the
 * reply before the client has read it. */
#define HTTP_LINGER_MS 2000
#define HTTP_LINGER_MAX_BYTES (1024 * 1024)

/* Growable byte buffer; `p` is always NUL-terminated when len > 0 via
 * http_buf_nul(). */
struct http_buf {
    char *p;
    size_t len, cap;
};

int http_buf_append(struct http_buf *b, const void *data, size_t n);
int http_buf_nul(struct http_buf *b); /* append a NUL that len does not count */
void http_buf_free(struct http_buf *b);

struct http_route_row {
    const struct http_route *route;
    void *ctx;
};

struct http_conn;
struct ssl_ctx_st; /* OpenSSL's SSL_CTX, kept out of this header */
struct http_tls_conn;

struct http_server {
    uv_loop_t *loop;
    uv_tcp_t listener;
    struct http_server_opts opts; /* defaults applied; strings point to copies below */
    char *host;
    char *server_name;
    uint16_t port;

    struct http_route_row *routes;
    size_t n_routes, cap_routes;

    struct http_conn *conns; /* doubly linked, every connection not yet freed */
    /* Objects whose handles are not yet closed: the listener, each
     * connection, each rejected socket. The server is freed at zero. */
    unsigned live;
    bool closing;
    char *drain_reason; /* http_server_drain(): answer 503 with it */
    void (*done)(void *ctx);
    void *done_ctx;

    struct http_server_stats stats;
    uint64_t last_reject_log; /* uv_now() of the last "max_connections" warning */

    /* TLS (api/http_tls.c): NULL for plain HTTP. New connections take a
     * reference to the current context, so a reload never affects them. */
    struct ssl_ctx_st *tls_ctx;
    char *tls_rbuf; /* ciphertext read buffer shared by the connections */
    uint64_t last_tls_log; /* uv_now() of the last handshake-failure line */
    uint64_t tls_failures_unlogged;
};

enum http_conn_state {
    CONN_READING,  /* parsing; no request outstanding */
    CONN_HANDLING, /* a request was dispatched; waiting for http_reply */
    CONN_WRITING,  /* the reply is being written */
    CONN_LINGER,   /* reply written, our side shut down, draining input */
    CONN_CLOSING,  /* uv_close issued; freed in the last close callback */
};

enum http_timer_mode {
    TM_NONE,
    TM_FIRST_BYTE, /* fresh connection waiting for its first request */
    TM_REQUEST,    /* a request is arriving: request_timeout_ms from its first byte */
    TM_IDLE,       /* keep-alive connection between requests */
    TM_WRITE,      /* a reply is being written to a client that may not read */
    TM_LINGER,
};

/* The byte-stream layer between the socket and the parser: plain TCP
 * (api/http_conn.c) or TLS (api/http_tls.c, which decrypts into the
 * connection's input buffer with http_conn_input_reserve/commit and encrypts
 * in write). */
#define HTTP_IO_EOF 1 /* read_start: the peer has finished sending */
struct http_io_ops {
    /* Start reading. May append input that was already received (and
     * buffered below the parser) to c->in synchronously: the caller parses
     * it. Returns 0, HTTP_IO_EOF when the peer's input is over and all of it
     * has been delivered, or a negative libuv error. */
    int (*read_start)(struct http_conn *c);
    void (*read_stop)(struct http_conn *c);
    /* Write one buffer; cb runs later with 0 or a negative libuv error. */
    int (*write)(struct http_conn *c, uv_write_t *req, const char *data, size_t len,
                 uv_write_cb cb);
    /* Optional: write what the socket takes now, without waiting; returns
     * the bytes written or a negative libuv error (UV_EAGAIN: none). */
    ssize_t (*try_write)(struct http_conn *c, const char *data, size_t len);
    int (*shutdown)(struct http_conn *c);
};

struct http_conn {
    struct http_server *srv;
    struct http_conn *prev, *next;
    const struct http_io_ops *io;
    struct http_tls_conn *tls; /* NULL for plain HTTP */

    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_write_t wreq;     /* the reply */
    uv_shutdown_t sreq;
    int handles_open;

    enum http_conn_state state;
    enum http_timer_mode tmode;
    llhttp_t parser;

    char *in; /* unparsed input: in[in_off .. in_off+in_len) */
    size_t in_off, in_len, in_cap;
    bool reading;
    bool processing; /* inside conn_process: a reply written at once lets it go on */
    size_t linger_bytes;

    char *out; /* reply being written */
    bool close_after; /* close once the reply is written */
    bool peer_eof;
    bool in_message;
    uint64_t served;

    /* Per request, reset at message begin. */
    struct http_exchange *x; /* being parsed, or dispatched and unanswered */
    size_t hdr_bytes;
    int err_status; /* 413/414/431/500 decided in a parser callback */
    char err_msg[160];

    char client_ip[64];
};

struct http_exchange {
    struct http_conn *conn; /* NULL once the connection is gone */
    struct http_request req;
    bool no_body;  /* HEAD or OPTIONS */
    bool keep_alive;
    bool bad_path; /* invalid percent-encoding: answered 400 */
    bool dispatched; /* handed to a handler: the abort callback applies */

    struct http_buf url, hdrs, body, extra;
    size_t name_off, value_off;
    bool in_field;
    size_t hoff[HTTP_MAX_HEADERS][2];
    struct http_header hv[HTTP_MAX_HEADERS];
    size_t n_headers;
    char *path; /* decoded */

    void (*abort_fn)(void *ctx);
    void *abort_ctx;
};

/* http_server.c */
void http_server_object_gone(struct http_server *s); /* live-- and maybe finish closing */
void http_server_dispatch(struct http_server *s, struct http_exchange *x);

/* http_conn.c */
int http_conn_accept(struct http_server *s); /* after on_connection: 0 or negative */
void http_conn_close(struct http_conn *c, const char *why);
/* Queue a serialized reply (ownership of `data` passes to the connection). */
void http_conn_send(struct http_conn *c, char *data, size_t len, bool close_after);
/* For the TLS layer: where decrypted input goes. reserve returns false when
 * the backlog is full (then read_stop, and wait for read_start); commit adds
 * n bytes written at the reserved place; input_ready parses when the
 * connection is reading; input_eof is the peer's end of input. */
bool http_conn_input_reserve(struct http_conn *c, char **p, size_t *len);
void http_conn_input_commit(struct http_conn *c, size_t n);
void http_conn_input_ready(struct http_conn *c);
void http_conn_input_eof(struct http_conn *c);
/* Raw bytes arriving after the final reply: true when the connection is
 * lingering (the bytes are discarded and counted). */
bool http_conn_linger_input(struct http_conn *c, size_t n);
void http_conn_on_shutdown(uv_shutdown_t *req, int status);

/* http_tls.c */
/* Build a server context; verify_client NULL means "none". */
int http_tls_ctx_new(const char *certfile, const char *keyfile, const char *cafile,
                     const char *verify_client, struct ssl_ctx_st **out, char *errbuf,
                     size_t errlen);
void http_tls_ctx_free(struct ssl_ctx_st *ctx);
/* Make an accepted connection speak TLS with the server's current context
 * (c->io and c->tls set). 0 or a negative libuv error. */
int http_tls_conn_attach(struct http_conn *c);
void http_tls_conn_free(struct http_conn *c); /* from the close callback */
bool http_tls_conn_verified(const struct http_conn *c);
bool http_tls_conn_handshaking(const struct http_conn *c);

/* http_reply.c */
struct http_exchange *http_exchange_new(struct http_conn *c);
void http_exchange_free(struct http_exchange *x);
int http_exchange_finish(struct http_exchange *x, const char *client_ip); /* build req */
/* Serialize a complete response; NULL on allocation failure. */
char *http_response_build(const struct http_server *s, int status, const char *content_type,
                          const char *body, size_t len, const char *extra, size_t extra_len,
                          bool keep_alive, bool no_body, size_t *out_len);
/* {"error":"<prefix><msg>"} with JSON escaping; NULL on allocation failure. */
char *http_json_error(const char *prefix, const char *msg, size_t *out_len);
const char *http_status_reason(int status);
/* Percent-decode; '+' means space only when plus_space. Rejects %00, bad
 * escapes and overflow (-1). Writes a NUL; *out_len excludes it. */
int http_pct_decode(const char *s, size_t n, char *out, size_t cap, bool plus_space,
                    size_t *out_len);

#endif
