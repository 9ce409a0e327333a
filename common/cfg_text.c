/* Text-level parsing and formatting shared by the configuration module:
 * numbers, durations, sizes, host:port and IPv4 addresses, YAML 1.1
 * booleans, quoting for messages. No YAML nodes here (see cfg_value.c). */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <arpa/inet.h>

#include "common/cfg_internal.h"

/* ---------- small helpers ---------- */

int cfg__perr(struct cfg__perr *pe, const struct ynode *at, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(pe->why, sizeof pe->why, fmt, ap);
    va_end(ap);
    if (at != NULL)
        pe->at = at;
    return PGW_EINVAL;
}

bool cfg__str_eq(const char *a, const char *b)
{
    return (a == NULL || b == NULL) ? a == b : strcmp(a, b) == 0;
}

int cfg__strdup_or_null(char **dst, const char *s)
{
    *dst = s != NULL ? strdup(s) : NULL;
    return s != NULL && *dst == NULL ? PGW_ENOMEM : PGW_OK;
}

void cfg__quote(const char *s, char *buf, size_t len)
{
    size_t o = 0, shown = 0;
    if (len < 8) {
        if (len)
            buf[0] = '\0';
        return;
    }
    buf[o++] = '"';
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        if (shown == 60) {
            if (o + 5 < len) {
                memcpy(buf + o, "...", 3);
                o += 3;
            }
            break;
        }
        char esc[8];
        if (*p == '"' || *p == '\\')
            snprintf(esc, sizeof esc, "\\%c", *p);
        else if (*p < 0x20 || *p == 0x7f)
            snprintf(esc, sizeof esc, "\\x%02X", *p);
        else
            snprintf(esc, sizeof esc, "%c", *p);
        size_t el = strlen(esc);
        if (o + el + 2 >= len)
            break;
        memcpy(buf + o, esc, el);
        o += el;
        shown++;
    }
    buf[o++] = '"';
    buf[o] = '\0';
}

void cfg__fmt_seconds(uint64_t ms, char *buf, size_t len)
{
    if (ms % 1000 == 0)
        snprintf(buf, len, "%" PRIu64, ms / 1000);
    else if (ms % 100 == 0)
        snprintf(buf, len, "%" PRIu64 ".%" PRIu64, ms / 1000, (ms % 1000) / 100);
    else if (ms % 10 == 0)
        snprintf(buf, len, "%" PRIu64 ".%02" PRIu64, ms / 1000, (ms % 1000) / 10);
    else
        snprintf(buf, len, "%" PRIu64 ".%03" PRIu64, ms / 1000, ms % 1000);
}

bool cfg__strlist_equal(const struct cfg_strlist *a, const struct cfg_strlist *b)
{
    if (a->n != b->n)
        return false;
    for (size_t i = 0; i < a->n; i++)
        if (strcmp(a->items[i], b->items[i]) != 0)
            return false;
    return true;
}

int cfg__strlist_push(struct cfg_strlist *l, const char *s)
{
    char *copy = strdup(s);
    char **items = copy ? realloc(l->items, (l->n + 1) * sizeof *items) : NULL;
    if (items == NULL) {
        free(copy);
        return PGW_ENOMEM;
    }
    l->items = items;
    l->items[l->n++] = copy;
    return PGW_OK;
}

void cfg__strlist_free(struct cfg_strlist *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->items[i]);
    free(l->items);
    l->items = NULL;
    l->n = 0;
}

int cfg__kvlist_push(struct cfg_kvlist *l, const char *k, const char *v)
{
    char *kc = strdup(k), *vc = strdup(v);
    struct cfg_kv *items = (kc && vc) ? realloc(l->items, (l->n + 1) * sizeof *items) : NULL;
    if (items == NULL) {
        free(kc);
        free(vc);
        return PGW_ENOMEM;
    }
    l->items = items;
    l->items[l->n].key = kc;
    l->items[l->n].value = vc;
    l->n++;
    return PGW_OK;
}

void cfg__kvlist_free(struct cfg_kvlist *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->items[i].key);
        free(l->items[i].value);
    }
    free(l->items);
    l->items = NULL;
    l->n = 0;
}

const char *cfg__kvlist_get(const struct cfg_kvlist *l, const char *k)
{
    for (size_t i = 0; i < l->n; i++) {
        if (strcmp(l->items[i].key, k) == 0)
            return l->items[i].value;
    }
    return NULL;
}

bool cfg__bool_word(const char *s, bool *val)
{
    static const char *const t[] = {"true", "yes", "on"}, *const f[] = {"false", "no", "off"};
    for (size_t i = 0; i < 3; i++) {
        if (strcasecmp(s, t[i]) == 0) {
            *val = true;
            return true;
        }
        if (strcasecmp(s, f[i]) == 0) {
            *val = false;
            return true;
        }
    }
    return false;
}

bool cfg__in_choices(const char *choices, const char *s)
{
    size_t n = strlen(s);
    for (const char *p = choices; p != NULL && *p != '\0';) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == n && strncmp(p, s, n) == 0)
            return true;
        p = bar ? bar + 1 : NULL;
    }
    return false;
}

/* "a, b or c" from "a|b|c". */
void cfg__choices_text(const char *choices, char *buf, size_t len)
{
    size_t o = 0, total = 1;
    for (const char *p = choices; *p; p++)
        total += *p == '|';
    size_t i = 0;
    buf[0] = '\0';
    for (const char *p = choices; p != NULL && *p != '\0' && o < len; i++) {
        const char *bar = strchr(p, '|');
        int plen = bar ? (int)(bar - p) : (int)strlen(p);
        const char *sep = i == 0 ? "" : (i + 1 == total ? " or " : ", ");
        int w = snprintf(buf + o, len - o, "%s%.*s", sep, plen, p);
        if (w < 0)
            break;
        o += (size_t)w;
        p = bar ? bar + 1 : NULL;
    }
}

/* ---------- numbers ---------- */

/* Decimal integer, no sign handling beyond an optional '-', full check. */
bool cfg__parse_ll(const char *s, long long *out)
{
    if (*s == '\0' || isspace((unsigned char)*s))
        return false;
    errno = 0;
    char *end;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0')
        return false;
    *out = v;
    return true;
}

/* Seconds with decimals, or with a unit (ms, s, min, h, d) -> ms. Hex, exponents,
 * inf and nan are refused by only accepting digits and one dot. */
int cfg__parse_duration_ms(const char *s, uint64_t *out, bool *negative)
{
    *negative = false;
    const char *p = s;
    if (*p == '-') {
        *negative = true;
        p++;
    } else if (*p == '+') {
        p++;
    }
    const char *num = p;
    size_t digits = 0, dots = 0;
    while (isdigit((unsigned char)*p) || *p == '.') {
        if (*p == '.')
            dots++;
        else
            digits++;
        p++;
    }
    if (digits == 0 || dots > 1 || digits > 15)
        return PGW_EINVAL;
    char numbuf[32];
    snprintf(numbuf, sizeof numbuf, "%.*s", (int)(p - num), num);
    while (*p == ' ')
        p++;
    double mult = 1000.0;
    if (*p == '\0' || strcmp(p, "s") == 0)
        mult = 1000.0;
    else if (strcmp(p, "ms") == 0)
        mult = 1.0;
    else if (strcmp(p, "min") == 0)
        mult = 60000.0;
    else if (strcmp(p, "h") == 0)
        mult = 3600000.0;
    else if (strcmp(p, "d") == 0)
        mult = 86400000.0;
    else
        return PGW_EINVAL;
    double v = strtod(numbuf, NULL) * mult;
    if (!isfinite(v) || v > (double)UINT32_MAX)
        return CFG__DUR_TOO_LARGE;
    *out = (uint64_t)llround(v);
    return PGW_OK;
}

int cfg_parse_size(const char *s, uint64_t *out)
{
    if (s == NULL || !isdigit((unsigned char)*s))
        return PGW_EINVAL;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0)
        return PGW_EINVAL;
    while (*end == ' ')
        end++;
    unsigned shift = 0;
    if (*end == '\0' || strcmp(end, "B") == 0)
        shift = 0;
    else if (strcmp(end, "kB") == 0)
        shift = 10;
    else if (strcmp(end, "MB") == 0)
        shift = 20;
    else if (strcmp(end, "GB") == 0)
        shift = 30;
    else if (strcmp(end, "TB") == 0)
        shift = 40;
    else
        return PGW_EINVAL;
    if (shift > 0 && v > (UINT64_MAX >> shift))
        return PGW_EINVAL;
    *out = (uint64_t)v << shift;
    return PGW_OK;
}

/* ---------- addresses ---------- */

static bool valid_hostname(const char *h, size_t len)
{
    if (len == 0 || len > 253)
        return false;
    size_t label = 0;
    for (size_t i = 0; i < len; i++) {
        char ch = h[i];
        if (ch == '.') {
            if (label == 0 || h[i - 1] == '-')
                return false;
            label = 0;
            continue;
        }
        if (!(isalnum((unsigned char)ch) || ch == '-' || ch == '_'))
            return false;
        if (ch == '-' && label == 0)
            return false;
        if (++label > 63)
            return false;
    }
    return h[len - 1] != '-';
}

/* Strict dotted quad: four decimal parts 0..255 without leading zeros (which
 * some resolvers read as octal). */
static bool valid_ipv4(const char *h, size_t len)
{
    int parts = 0;
    size_t i = 0;
    while (i < len) {
        size_t start = i;
        unsigned v = 0;
        while (i < len && isdigit((unsigned char)h[i]) && i - start < 4)
            v = v * 10 + (unsigned)(h[i++] - '0');
        size_t nd = i - start;
        if (nd == 0 || nd > 3 || v > 255 || (nd > 1 && h[start] == '0'))
            return false;
        parts++;
        if (i == len)
            break;
        if (h[i] != '.' || parts == 4)
            return false;
        i++;
        if (i == len)
            return false;
    }
    return parts == 4;
}

static bool all_digits_dots(const char *h, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (!isdigit((unsigned char)h[i]) && h[i] != '.')
            return false;
    }
    return len > 0;
}

static int parse_port(const char *p, uint16_t *port)
{
    long long v;
    if (!isdigit((unsigned char)*p) || !cfg__parse_ll(p, &v) || v < 1 || v > 65535)
        return PGW_EINVAL;
    *port = (uint16_t)v;
    return PGW_OK;
}

/* One host of host:port: a name, an IPv4 address, or [IPv6] (brackets dropped). */
static int parse_host(const char *h, size_t len, bool allow_star, char *out, size_t outlen,
                      const char **why)
{
    if (len >= 2 && h[0] == '[' && h[len - 1] == ']') {
        char v6[64];
        struct in6_addr a;
        if (len - 2 >= sizeof v6) {
            *why = "not a valid IPv6 address";
            return PGW_EINVAL;
        }
        memcpy(v6, h + 1, len - 2);
        v6[len - 2] = '\0';
        if (inet_pton(AF_INET6, v6, &a) != 1) {
            *why = "not a valid IPv6 address";
            return PGW_EINVAL;
        }
        snprintf(out, outlen, "%s", v6);
        return PGW_OK;
    }
    if (allow_star && len == 1 && h[0] == '*') {
        snprintf(out, outlen, "*");
        return PGW_OK;
    }
    if (len == 0) {
        *why = "the host is missing";
        return PGW_EINVAL;
    }
    if (memchr(h, ':', len) != NULL) {
        *why = "an IPv6 address needs brackets, as in [::1]:5432";
        return PGW_EINVAL;
    }
    if (all_digits_dots(h, len) ? !valid_ipv4(h, len) : !valid_hostname(h, len)) {
        *why = all_digits_dots(h, len) ? "not a valid IPv4 address" : "not a valid host name";
        return PGW_EINVAL;
    }
    if (len >= outlen) {
        *why = "the host is too long";
        return PGW_EINVAL;
    }
    memcpy(out, h, len);
    out[len] = '\0';
    return PGW_OK;
}

static bool is_wildcard(const char *h)
{
    return strcmp(h, "0.0.0.0") == 0 || strcmp(h, "::") == 0 || strcmp(h, "*") == 0;
}

/* host:port or, with `list`, "h1,h2:port" (Patroni's postgresql.listen).
 * `why` gets a reason, or stays empty when the text is not host:port at all. */
int cfg__parse_hostport(const char *s, bool list, struct cfg_hostport *hp, char *why,
                          size_t whylen)
{
    const char *colon = strrchr(s, ':');
    const char *rb = strrchr(s, ']');
    why[0] = '\0';
    if (colon == NULL || (rb != NULL && colon < rb))
        return PGW_EINVAL;
    uint16_t port;
    if (parse_port(colon + 1, &port) != 0) {
        snprintf(why, whylen, "the port must be a number from 1 to 65535");
        return PGW_EINVAL;
    }
    size_t hl = (size_t)(colon - s);
    char hosts[512];
    size_t o = 0;
    const char *p = s;
    while (p <= s + hl) {
        const char *comma = list ? memchr(p, ',', (size_t)(s + hl - p)) : NULL;
        const char *end = comma ? comma : s + hl;
        while (p < end && *p == ' ')
            p++;
        const char *e = end;
        while (e > p && e[-1] == ' ')
            e--;
        char one[300];
        const char *reason = NULL;
        if (parse_host(p, (size_t)(e - p), list, one, sizeof one, &reason) != 0) {
            snprintf(why, whylen, "%s", reason);
            return PGW_EINVAL;
        }
        int w = snprintf(hosts + o, sizeof hosts - o, "%s%s", o ? "," : "", one);
        if (w < 0 || (size_t)w >= sizeof hosts - o) {
            snprintf(why, whylen, "the host list is too long");
            return PGW_EINVAL;
        }
        o += (size_t)w;
        if (comma == NULL)
            break;
        p = comma + 1;
    }
    char *h = strdup(hosts);
    if (h == NULL) {
        snprintf(why, whylen, "out of memory");
        return PGW_ENOMEM;
    }
    free(hp->host);
    hp->host = h;
    hp->port = port;
    return PGW_OK;
}

/* a.b.c.d:port with a reason that names the usual mistakes. */
int cfg__parse_ipv4(const char *s, char *host_out, size_t host_len, uint16_t *port_out,
                           char *why, size_t whylen)
{
    const char *colon = strrchr(s, ':');
    size_t hl = colon ? (size_t)(colon - s) : strlen(s);
    if (s[0] == '[' || (colon != NULL && memchr(s, ':', hl) != NULL)) {
        snprintf(why, whylen, "IPv6 is not supported: libraft accepts only IPv4 addresses");
        return PGW_EINVAL;
    }
    if (!all_digits_dots(s, hl)) {
        snprintf(why, whylen, "a host name is not accepted: libraft accepts only IPv4 addresses");
        return PGW_EINVAL;
    }
    if (!valid_ipv4(s, hl)) {
        snprintf(why, whylen, "not a valid IPv4 address");
        return PGW_EINVAL;
    }
    if (colon == NULL) {
        snprintf(why, whylen, "the port is missing");
        return PGW_EINVAL;
    }
    uint16_t port;
    if (parse_port(colon + 1, &port) != 0) {
        snprintf(why, whylen, "the port must be a number from 1 to 65535");
        return PGW_EINVAL;
    }
    if (hl == 7 && strncmp(s, "0.0.0.0", 7) == 0) {
        snprintf(why, whylen, "0.0.0.0 is not an address other nodes can reach");
        return PGW_EINVAL;
    }
    if (host_out != NULL) {
        if (hl >= host_len) {
            snprintf(why, whylen, "the address is too long");
            return PGW_EINVAL;
        }
        memcpy(host_out, s, hl);
        host_out[hl] = '\0';
    }
    if (port_out != NULL)
        *port_out = port;
    return PGW_OK;
}

int cfg_parse_ipv4_addr(const char *s, char *host_out, size_t host_len, uint16_t *port_out)
{
    char why[128];
    if (s == NULL)
        return PGW_EINVAL;
    return cfg__parse_ipv4(s, host_out, host_len, port_out, why, sizeof why);
}

bool cfg__host_is_wildcard(const char *h)
{
    return h != NULL && is_wildcard(h);
}
