/* IP addresses and CIDR ranges, IPv4 or IPv6 ("10.0.0.0/8", "::1",
 * "fd00::/8"), as restapi.allowlist writes them: one parser for the
 * configuration's check and the API's match. */
#ifndef PGW_COMMON_CIDR_H
#define PGW_COMMON_CIDR_H

#include <stdbool.h>

/* entry is an address or a range with a prefix length that fits its family. */
bool cidr_valid(const char *entry);

/* ip (an address) falls inside entry. */
bool cidr_match(const char *entry, const char *ip);

#endif
