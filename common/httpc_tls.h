/* Private to common/httpc*.c: the TLS layer of the HTTP client, OpenSSL
 * over memory BIOs. httpc.c moves bytes between the socket and this layer:
 * ciphertext from the socket goes in with httpc_tls_feed, the ciphertext
 * OpenSSL produces comes out with httpc_tls_take_out, plaintext responses
 * with httpc_tls_read. */
#ifndef PGW_COMMON_HTTPC_TLS_H
#define PGW_COMMON_HTTPC_TLS_H

#include <stdbool.h>
#include <stddef.h>

#include "common/httpc.h"

struct httpc_tls;

#define HTTPC_TLS_EOF (-1000) /* httpc_tls_read: the server closed the TLS session */

/* TLS state for one request to `host` (a name, or an IP literal without
 * brackets), which the certificate must match unless insecure. Reads the
 * files (through a cache): errors are returned, with the file named. */
int httpc_tls_new(const struct httpc_tls_opts *o, const char *host, struct httpc_tls **out,
                  char *errbuf, size_t errlen) PGW_MUST_CHECK;
void httpc_tls_free(struct httpc_tls *t);

/* Start the handshake; `req` (not copied: it must stay valid) is encrypted
 * and queued once the handshake completes. 0, or negative with
 * httpc_tls_error() saying why. */
int httpc_tls_begin(struct httpc_tls *t, const char *req, size_t len) PGW_MUST_CHECK;
/* Ciphertext from the server; advances the handshake. 0 or negative. */
int httpc_tls_feed(struct httpc_tls *t, const char *data, size_t n) PGW_MUST_CHECK;
/* Decrypted response bytes: > 0, 0 when more input is needed,
 * HTTPC_TLS_EOF, or another negative value on error. */
int httpc_tls_read(struct httpc_tls *t, char *buf, size_t cap);
/* Ciphertext waiting to be sent: moves up to cap bytes into buf. */
size_t httpc_tls_out_pending(const struct httpc_tls *t);
size_t httpc_tls_take_out(struct httpc_tls *t, char *buf, size_t cap);
bool httpc_tls_handshake_done(const struct httpc_tls *t);
/* Why the last call failed, e.g. "certificate verify failed (unable to get
 * local issuer certificate)". */
const char *httpc_tls_error(const struct httpc_tls *t);

#endif
