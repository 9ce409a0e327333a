/* TLS under the Raft transport: mutually authenticated TLS (OpenSSL) on a
 * TCP connection, seen by its user as a plain libuv stream.
 *
 * libraft's uv backend only ever calls uv_read_start / uv_read_stop /
 * uv_write / uv_close on the streams a transport gives it (checked in the
 * 0.15 sources, src/uv_send.c and src/uv_recv.c, and in the dynamic symbol
 * table of Debian's libraft.so.2: no uv_tcp_* call besides its own
 * raft_uv_tcp transport's listen/connect), so TLS sits below it: each link
 * owns the TCP socket and one end of a socketpair; the other end, a
 * uv_pipe_t, is the "plain" stream handed to the caller. The link pumps
 * TCP -> SSL_read -> pipe and pipe -> SSL_write -> TCP.
 *
 * Authentication: both sides present a certificate signed by cafile and
 * verify the peer's (TLS 1.2 minimum, 1.3 preferred). Any certificate that
 * cafile signed is a member: use a CA dedicated to this cluster's Raft port.
 * Peers are not matched by host name or IP (Raft addresses are bare IPv4
 * addresses that certificates rarely carry); the subject CN is reported for
 * logs. Node certificates must allow both TLS client and server use (no
 * extendedKeyUsage, or both serverAuth and clientAuth).
 *
 * On the wire, after the TLS handshake the server sends one byte (0x01)
 * before any application data, and the client reports success only once it
 * has it. Why: in TLS 1.3 the client's handshake completes before the server
 * has checked the client's certificate, so without it a refused client would
 * see success and then a dead connection instead of the server's reason. */
#ifndef PGW_RAFT_TLS_LINK_H
#define PGW_RAFT_TLS_LINK_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "common/status.h"

/* Settings and the current SSL_CTX, shared by every link of one transport
 * (server and client side alike). Reference counted: each live link holds a
 * reference, so tls_link_ctx_free() may be called while links still run. */
struct tls_link_ctx;

/* Read the PEM files (cert chain, unencrypted key, CA bundle) and check that
 * key and certificate match and that the certificate verifies against the CA
 * (so an expired or foreign certificate is one error at start, not a refusal
 * on every connection). Errors name the file and OpenSSL's reason. */
int tls_link_ctx_new(const char *certfile, const char *keyfile, const char *cafile,
                     struct tls_link_ctx **out, char *err, size_t errlen) PGW_MUST_CHECK;

/* Re-read the same files (SIGHUP: renewed certificates) into a new SSL_CTX
 * used by new connections; established ones keep theirs. On failure the
 * old context stays in use and err says why. */
int tls_link_ctx_reload(struct tls_link_ctx *ctx, char *err, size_t errlen) PGW_MUST_CHECK;

/* Drop the owner's reference; the context goes when its last link does. */
void tls_link_ctx_free(struct tls_link_ctx *ctx);

/* Close every live link at once (transport shutdown): handshakes in progress
 * complete with PGW_ECANCELED; established links close both sockets, so their
 * users see EOF (or a write error) on their plain streams. */
void tls_link_ctx_close_all(struct tls_link_ctx *ctx);

/* Counters (observability, tests). */
struct tls_link_stats {
    unsigned live;            /* links not yet freed */
    uint64_t established;     /* handshakes that succeeded */
    uint64_t failed;          /* handshakes that failed, timed out or were cancelled */
    uint64_t paused;          /* times a direction stopped reading for backpressure */
};
void tls_link_ctx_get_stats(const struct tls_link_ctx *ctx, struct tls_link_stats *out);

/* status 0: `plain` is the caller's (a raft_malloc'd uv_pipe_t, already
 * initialised on the loop; close it with uv_close and raft_free it in the
 * close callback, or hand it to libraft which does both) and `detail` is the
 * peer certificate's subject CN ("" when it has none).
 * status < 0: plain is NULL and `detail` names the peer and the reason,
 * e.g. "TLS handshake with 10.0.0.2:5000 failed: certificate verify failed
 * (unable to get local issuer certificate)". PGW_EREFUSED: TLS refused,
 * by either side (certificate, protocol, not TLS at all); PGW_ETIMEDOUT: the
 * deadline passed; PGW_EIO: the connection closed or failed; PGW_EPROTO: the
 * server is TLS but not a tls_link; PGW_ECANCELED: tls_link_ctx_close_all;
 * PGW_ENOMEM.
 * `detail` is valid only during the call. */
typedef void (*tls_link_cb)(int status, uv_stream_t *plain, const char *detail, void *data);

/* Start TLS on `tcp`, an initialised and connected (or accepted) uv_tcp_t
 * allocated with raft_malloc and not being read.
 * Returns 0: the link owns `tcp` from now on (it closes it and frees it with
 * raft_free; the caller must not touch it again), and `cb` runs exactly once,
 * on a later loop iteration, with the outcome; the handshake must complete
 * within handshake_timeout_ms.
 * Returns < 0 (PGW_ENOMEM, PGW_EINVAL): nothing happened, the caller still
 * owns `tcp` and cb never runs.
 * peer_label (copied) names the peer in error texts, e.g. "10.0.0.2:5000". */
int tls_link_start(uv_loop_t *loop, struct tls_link_ctx *ctx, uv_tcp_t *tcp, int is_server,
                   const char *peer_label, uint32_t handshake_timeout_ms, tls_link_cb cb,
                   void *data) PGW_MUST_CHECK;

#endif
