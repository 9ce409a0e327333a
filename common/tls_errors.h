#ifndef PGW_COMMON_TLS_ERRORS_H
#define PGW_COMMON_TLS_ERRORS_H

#include <stdbool.h>
#include <stddef.h>

/* OpenSSL's queued error reasons into buf, "; "-separated, duplicates
 * dropped; empties the queue. "unknown TLS error" when it was empty. */
void tls_error_reasons(char *buf, size_t len);

/* The last error says the key belongs to another certificate; then the
 * queue is emptied. */
bool tls_error_key_mismatch(void);

/* pem_password_cb that never prompts: a daemon has no terminal. */
int tls_no_passphrase(char *buf, int size, int rwflag, void *u);

#endif
