/* Authentication of Raft-port connections with the cluster secret
 * (raft.password): a mutual challenge/response bound to the hello.
 *
 * Wire (after the TCP connect; see transport.h for the hello itself):
 *   client -> server  hello, version 2, followed by Nc (16 random bytes)
 *   server -> client  "PGWA" | Ns (16 random bytes) | MACs (32)
 *   client -> server  MACc (32)
 * with T    = SHA-256(hello bytes | Nc | Ns)
 *      MACs = HMAC-SHA256(secret, "pgwarden raft server" | T)
 *      MACc = HMAC-SHA256(secret, "pgwarden raft client" | T)
 * Each side checks the other's MAC before a byte reaches libraft (or a probe
 * answer is trusted), so a process without the secret can neither talk to
 * the consensus group nor impersonate a server to one of its members; fresh
 * nonces on both sides stop replay, the labels stop reflection. Without TLS
 * the stream after the handshake is not protected against an on-path
 * attacker (raft.certfile/keyfile/cafile add that). */
#ifndef PGW_RAFT_TRANSPORT_AUTH_H
#define PGW_RAFT_TRANSPORT_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/status.h"

#define TRANSPORT_NONCE_LEN 16
#define TRANSPORT_MAC_LEN 32
#define TRANSPORT_CHALLENGE_MAGIC "PGWA"
#define TRANSPORT_CHALLENGE_LEN (4 + TRANSPORT_NONCE_LEN + TRANSPORT_MAC_LEN)

enum transport_auth_role { TRANSPORT_AUTH_SERVER, TRANSPORT_AUTH_CLIENT };

/* Fill `out` with unpredictable bytes (OpenSSL's CSPRNG). */
int transport_auth_nonce(uint8_t out[TRANSPORT_NONCE_LEN]) PGW_MUST_CHECK;

/* The MAC `role` sends for this handshake. `hello` is the hello as sent,
 * without the trailing client nonce. */
int transport_auth_mac(const uint8_t *secret, size_t secret_len, enum transport_auth_role role,
                       const uint8_t *hello, size_t hello_len,
                       const uint8_t nc[TRANSPORT_NONCE_LEN], const uint8_t ns[TRANSPORT_NONCE_LEN],
                       uint8_t out[TRANSPORT_MAC_LEN]) PGW_MUST_CHECK;

/* Constant-time comparison of two MACs. */
bool transport_auth_mac_equal(const uint8_t a[TRANSPORT_MAC_LEN], const uint8_t b[TRANSPORT_MAC_LEN]);

/* Build the server's challenge; parse it on the client (checks the magic
 * only: the MAC is checked with transport_auth_mac + _equal). */
void transport_auth_challenge_encode(const uint8_t ns[TRANSPORT_NONCE_LEN],
                                     const uint8_t mac[TRANSPORT_MAC_LEN],
                                     uint8_t out[TRANSPORT_CHALLENGE_LEN]);
int transport_auth_challenge_parse(const uint8_t in[TRANSPORT_CHALLENGE_LEN],
                                   uint8_t ns[TRANSPORT_NONCE_LEN],
                                   uint8_t mac[TRANSPORT_MAC_LEN]) PGW_MUST_CHECK;

#endif
