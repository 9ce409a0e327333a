#include "common/tls_errors.h"

#include <stdio.h>
#include <string.h>

#include <openssl/err.h>

void tls_error_reasons(char *buf, size_t len)
{
    size_t o = 0;
    unsigned long e;
    buf[0] = '\0';
    while ((e = ERR_get_error()) != 0) {
        const char *r = ERR_reason_error_string(e);
        char code[32];
        if (r == NULL) {
            snprintf(code, sizeof code, "error %lx", e);
            r = code;
        }
        if (o < len && strstr(buf, r) == NULL) {
            int n = snprintf(buf + o, len - o, "%s%s", o > 0 ? "; " : "", r);
            if (n > 0)
                o += (size_t)n;
        }
    }
    if (buf[0] == '\0')
        snprintf(buf, len, "unknown TLS error");
}
