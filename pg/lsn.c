#include "pg/lsn.h"

#include <stdio.h>

static bool parse_hex_half(const char *s, size_t n, uint32_t *out)
{
    if (n == 0 || n > 8)
        return false;
    uint32_t v = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        uint32_t d;
        if (c >= '0' && c <= '9')
            d = (uint32_t)(c - '0');
        else if (c >= 'a' && c <= 'f')
            d = (uint32_t)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            d = (uint32_t)(c - 'A' + 10);
        else
            return false;
        v = (v << 4) | d;
    }
    *out = v;
    return true;
}

bool pg_lsn_parse(const char *s, pg_lsn *out)
{
    if (s == NULL)
        return false;
    const char *slash = NULL;
    size_t len = 0;
    for (const char *p = s; *p; p++, len++) {
        if (*p == '/') {
            if (slash != NULL)
                return false;
            slash = p;
        }
    }
    if (slash == NULL)
        return false;
    uint32_t hi, lo;
    size_t nhi = (size_t)(slash - s);
    if (!parse_hex_half(s, nhi, &hi) || !parse_hex_half(slash + 1, len - nhi - 1, &lo))
        return false;
    *out = ((pg_lsn)hi << 32) | lo;
    return true;
}

void pg_lsn_format(pg_lsn lsn, char *buf, size_t len)
{
    if (len == 0)
        return;
    snprintf(buf, len, "%X/%X", (unsigned)(lsn >> 32), (unsigned)(lsn & 0xffffffffu));
}

uint64_t pg_lsn_diff(pg_lsn a, pg_lsn b)
{
    return a > b ? a - b : 0;
}
