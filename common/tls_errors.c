#include "common/tls_errors.h"

#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509.h>

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

bool tls_error_key_mismatch(void)
{
    unsigned long e = ERR_peek_last_error();
    bool mismatch = ERR_GET_LIB(e) == ERR_LIB_X509 && ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH;
    if (mismatch)
        ERR_clear_error();
    return mismatch;
}

int tls_no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return 0;
}
