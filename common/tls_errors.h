#ifndef PGW_COMMON_TLS_ERRORS_H
#define PGW_COMMON_TLS_ERRORS_H

#include <stddef.h>

/* OpenSSL's queued error reasons into buf, "; "-separated, duplicates
 * dropped; empties the queue. "unknown TLS error" when it was empty. */
void tls_error_reasons(char *buf, size_t len);

#endif
