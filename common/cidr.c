/* See cidr.h. */
#include "common/cidr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct cidr {
    int fam;
    unsigned char addr[16];
    int bits; /* -1: no prefix length given */
};

static bool cidr_parse(const char *entry, struct cidr *out)
{
    char net[INET6_ADDRSTRLEN + 8];
    if (strlen(entry) >= sizeof net)
        return false;
    snprintf(net, sizeof net, "%s", entry);
    out->fam = strchr(net, ':') != NULL ? AF_INET6 : AF_INET;
    out->bits = -1;
    char *slash = strchr(net, '/');
    if (slash != NULL) {
        *slash = '\0';
        char *end;
        errno = 0;
        long b = strtol(slash + 1, &end, 10);
        if (slash[1] == '\0' || *end != '\0' || errno != 0 || b < 0 ||
            b > (out->fam == AF_INET ? 32 : 128))
            return false;
        out->bits = (int)b;
    }
    return inet_pton(out->fam, net, out->addr) == 1;
}

bool cidr_valid(const char *entry)
{
    struct cidr c;
    return cidr_parse(entry, &c);
}

bool cidr_match(const char *entry, const char *ip)
{
    struct cidr net;
    unsigned char a[16];
    if (!cidr_parse(entry, &net) || inet_pton(net.fam, ip, a) != 1)
        return strcmp(entry, ip) == 0;
    int bits = net.bits < 0 ? (net.fam == AF_INET ? 32 : 128) : net.bits;
    for (int i = 0; i < bits / 8; i++)
        if (net.addr[i] != a[i])
            return false;
    if (bits % 8 != 0) {
        unsigned char mask = (unsigned char)(0xff << (8 - bits % 8));
        if ((net.addr[bits / 8] & mask) != (a[bits / 8] & mask))
            return false;
    }
    return true;
}
