/* The hello's wire format (see transport.h) and the address syntax raft
 * servers are known by: pure functions, no I/O, so the fuzzer and the unit
 * tests reach them without a loop. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "raft/transport.h"

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static uint16_t get16(const uint8_t *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}

static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
}

static uint64_t get64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | p[i];
    return v;
}

int transport_hello_encode(uint8_t kind, const char *scope, uint64_t id, const char *addr,
                           uint8_t *buf, size_t cap)
{
    size_t n = strlen(scope), m = addr != NULL ? strlen(addr) : 0;
    if (n == 0 || n > TRANSPORT_SCOPE_MAX || m > TRANSPORT_ADDR_MAX)
        return PGW_EINVAL;
    if (cap < TRANSPORT_HELLO_FIXED + n + m)
        return PGW_EINVAL;
    memcpy(buf, TRANSPORT_MAGIC, 4);
    buf[4] = TRANSPORT_VERSION;
    buf[5] = kind;
    put16(buf + 6, (uint16_t)n);
    put64(buf + 8, id);
    put16(buf + 16, (uint16_t)m);
    memcpy(buf + TRANSPORT_HELLO_FIXED, scope, n);
    if (m > 0)
        memcpy(buf + TRANSPORT_HELLO_FIXED + n, addr, m);
    return (int)(TRANSPORT_HELLO_FIXED + n + m);
}

size_t transport_hello_size(const uint8_t *buf)
{
    return TRANSPORT_HELLO_FIXED + get16(buf + 6) + get16(buf + 16) +
           (buf[4] == TRANSPORT_VERSION_AUTH ? 16 : 0);
}

int transport_hello_parse(const uint8_t *buf, size_t len, struct transport_hello *out, char *err,
                          size_t errlen)
{
    if (len < TRANSPORT_HELLO_FIXED)
        return 0;
    if (memcmp(buf, TRANSPORT_MAGIC, 4) != 0) {
        if (buf[0] == 0x16 && buf[1] == 0x03) /* a TLS record: handshake, version 3.x */
            snprintf(err, errlen, "not a pgwarden Raft peer (bad magic): it speaks TLS, is "
                     "raft.certfile set there but not here?");
        else
            snprintf(err, errlen, "not a pgwarden Raft peer (bad magic)");
        return PGW_EPROTO;
    }
    if (buf[4] != TRANSPORT_VERSION && buf[4] != TRANSPORT_VERSION_AUTH) {
        snprintf(err, errlen, "unsupported handshake version %u (we speak %u and %u)", buf[4],
                 TRANSPORT_VERSION, TRANSPORT_VERSION_AUTH);
        return PGW_EPROTO;
    }
    uint8_t kind = buf[5];
    if (kind != TRANSPORT_KIND_RAFT && kind != TRANSPORT_KIND_PROBE) {
        snprintf(err, errlen, "unknown connection kind %u", kind);
        return PGW_EPROTO;
    }
    size_t n = get16(buf + 6), m = get16(buf + 16);
    uint64_t id = get64(buf + 8);
    if (n == 0 || n > TRANSPORT_SCOPE_MAX) {
        snprintf(err, errlen, "scope length %zu outside 1..%d", n, TRANSPORT_SCOPE_MAX);
        return PGW_EPROTO;
    }
    if (m > TRANSPORT_ADDR_MAX) {
        snprintf(err, errlen, "address length %zu over %d", m, TRANSPORT_ADDR_MAX);
        return PGW_EPROTO;
    }
    if (kind == TRANSPORT_KIND_RAFT && (id == 0 || m == 0)) {
        snprintf(err, errlen, "raft connection without a server id or address");
        return PGW_EPROTO;
    }
    size_t total = transport_hello_size(buf);
    if (len < total)
        return 0;
    out->version = buf[4];
    if (out->version == TRANSPORT_VERSION_AUTH)
        memcpy(out->nonce, buf + TRANSPORT_HELLO_FIXED + n + m, sizeof out->nonce);
    out->kind = kind;
    out->id = id;
    memcpy(out->scope, buf + TRANSPORT_HELLO_FIXED, n);
    out->scope[n] = '\0';
    memcpy(out->addr, buf + TRANSPORT_HELLO_FIXED + n, m);
    out->addr[m] = '\0';
    if (strlen(out->scope) != n || strlen(out->addr) != m) {
        snprintf(err, errlen, "NUL byte in scope or address");
        return PGW_EPROTO;
    }
    if (m > 0) {
        struct sockaddr_in sa;
        if (transport_addr_parse(out->addr, &sa) != 0) {
            snprintf(err, errlen, "sender address is not a.b.c.d:port");
            return PGW_EPROTO;
        }
    }
    return (int)total;
}

int transport_addr_parse(const char *addr, struct sockaddr_in *out)
{
    char host[INET_ADDRSTRLEN];
    const char *colon = strrchr(addr, ':');
    if (colon == NULL || (size_t)(colon - addr) >= sizeof host || colon == addr)
        return PGW_EINVAL;
    memcpy(host, addr, (size_t)(colon - addr));
    host[colon - addr] = '\0';
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*(colon + 1) == '\0' || *end != '\0' || port < 1 || port > 65535)
        return PGW_EINVAL;
    if (uv_ip4_addr(host, (int)port, out) != 0)
        return PGW_EINVAL;
    struct in_addr probe;
    if (inet_pton(AF_INET, host, &probe) != 1)
        return PGW_EINVAL;
    return PGW_OK;
}
