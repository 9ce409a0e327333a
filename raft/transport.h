/* pgwarden's Raft transport: libraft's raft_uv_transport interface over TCP,
 * with our own handshake in front of libraft's byte stream.
 *
 * Why not raft_uv_tcp: (1) a connect to a black-holed peer has no deadline
 * there (the kernel's SYN retries take minutes, so a healed partition stays
 * "down" for a long time), (2) established connections to a partitioned peer
 * need TCP_USER_TIMEOUT to fail in bounded time, (3) a node with an empty
 * data dir must be able to ask its partners whether a cluster already exists
 * before it bootstraps (a PROBE on the Raft port), and (4) the handshake is
 * where cluster membership is checked (scope) and, later, authenticated.
 *
 * Wire format of the hello, sent by the connecting side (big-endian):
 *   0  4  magic "PGWR"
 *   4  1  version: 1 = unauthenticated, 2 = authenticated (raft.password set)
 *   5  1  kind: 1 = Raft stream, 2 = probe
 *   6  2  scope length N (1..255)
 *   8  8  sender's Raft id (0 for a probe)
 *  16  2  sender's address length M (0..64)
 *  18  N  scope (the cluster name; must equal ours)
 *  18+N M sender's Raft address "a.b.c.d:port"
 *  version 2 only: 16 bytes, the client's nonce, then the challenge/response
 *  of transport_auth.h (the server answers a challenge, the client its MAC).
 * Both sides must agree: a server with a secret drops version-1 hellos, a
 * server without one drops version-2 hellos, each with a log line saying so.
 * After a kind-1 hello the connection carries libraft's own messages. After
 * a probe the server answers a 4-byte length and that many bytes of JSON
 * (at most 64 KiB), then closes.
 * A hello that is malformed, for another cluster, or not complete within the
 * handshake deadline gets the connection closed and a log line naming the
 * peer's address; libraft never sees it. */
#ifndef PGW_RAFT_TRANSPORT_H
#define PGW_RAFT_TRANSPORT_H

#include <stdint.h>

#include <raft.h>
#include <raft/uv.h>
#include <uv.h>

#include "common/status.h"

#define TRANSPORT_MAGIC "PGWR"
#define TRANSPORT_VERSION 1      /* no authentication */
#define TRANSPORT_VERSION_AUTH 2 /* followed by the challenge/response */
#define TRANSPORT_KIND_RAFT 1
#define TRANSPORT_KIND_PROBE 2
#define TRANSPORT_HELLO_FIXED 18
#define TRANSPORT_SCOPE_MAX 255
#define TRANSPORT_ADDR_MAX 64
#define TRANSPORT_PROBE_MAX (64 * 1024)

/* Who may speak on the Raft port. */
struct tls_link_ctx;
struct transport_security {
    const uint8_t *secret; /* raft.password; NULL = connections are not authenticated */
    size_t secret_len;
    struct tls_link_ctx *tls; /* raft TLS; NULL = plain TCP */
};

/* Answer to a probe: a malloc'd JSON text (the transport frees it), or NULL. */
typedef char *(*transport_probe_fn)(void *ctx);

struct transport_opts {
    uv_loop_t *loop;
    const char *scope;
    const char *bind_addr;          /* "a.b.c.d:port"; NULL = the raft address */
    uint32_t connect_timeout_ms;    /* TCP connect + hello write */
    uint32_t handshake_timeout_ms;  /* inbound hello must arrive within this */
    uint32_t user_timeout_ms;       /* TCP_USER_TIMEOUT on established links */
    transport_probe_fn probe;
    void *probe_ctx;
    /* May a Raft connection from (id, address) reach libraft? libraft 0.15
     * trusts every byte it is given (a malformed message can crash it), so
     * only servers of the current configuration are let through. NULL = all. */
    bool (*admit)(void *ctx, uint64_t id, const char *addr);
    /* copied: the secret's bytes are duplicated, the TLS context is borrowed
     * and must outlive the transport */
    struct transport_security sec;
};

/* Fill `t` with our implementation. Release with transport_free() after raft
 * has closed it (raft_close callback, then raft_uv_close). */
int transport_setup(struct raft_uv_transport *t, const struct transport_opts *opts) PGW_MUST_CHECK;
void transport_free(struct raft_uv_transport *t);

/* Listen before raft starts, so probes are answered during a first start's
 * discovery (Raft connections are closed until raft listens too). */
int transport_listen_early(struct raft_uv_transport *t, const char *address, char *err,
                           size_t errlen) PGW_MUST_CHECK;

/* Counters for observability and tests. */
struct transport_stats {
    uint64_t accepted, handshake_failures, probes_answered, connects, connect_failures;
    uint64_t auth_failures; /* inbound or outbound: the peer did not prove the secret */
};
void transport_get_stats(const struct raft_uv_transport *t, struct transport_stats *out);

/* Ask the node at `addr` (its Raft address) about itself. The callback runs
 * once, later: status 0 with the JSON answer, or a negative status. */
typedef void (*transport_probe_cb)(int status, const char *json, size_t len, void *ctx);
int transport_probe_peer(uv_loop_t *loop, const char *scope, const char *addr,
                         const struct transport_security *sec, uint32_t timeout_ms,
                         transport_probe_cb cb, void *ctx) PGW_MUST_CHECK;

/* Encode/parse the hello (exposed for unit tests and fuzzing). encode
 * writes a version-1 hello (version 2: set buf[4] and append the nonce).
 * parse returns the total hello length (nonce included) once `len` bytes
 * suffice, 0 if more bytes are needed, or a negative status with err set. */
int transport_hello_encode(uint8_t kind, const char *scope, uint64_t id, const char *addr,
                           uint8_t *buf, size_t cap);
/* Bytes the hello starting in buf needs in total, once its fixed part is in. */
size_t transport_hello_size(const uint8_t *buf);
#define TRANSPORT_HELLO_MAX (TRANSPORT_HELLO_FIXED + TRANSPORT_SCOPE_MAX + TRANSPORT_ADDR_MAX + 16)
struct transport_hello {
    uint8_t version;
    uint8_t kind;
    uint8_t nonce[16]; /* version 2 */
    uint64_t id;
    char scope[TRANSPORT_SCOPE_MAX + 1];
    char addr[TRANSPORT_ADDR_MAX + 1];
};
int transport_hello_parse(const uint8_t *buf, size_t len, struct transport_hello *out, char *err,
                          size_t errlen);

/* Split "a.b.c.d:port" (IPv4 only: libraft's rule). */
int transport_addr_parse(const char *addr, struct sockaddr_in *out) PGW_MUST_CHECK;

#endif
