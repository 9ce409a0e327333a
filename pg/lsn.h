/* WAL positions: parse and format PostgreSQL's "X/Y" text form. */
#ifndef PGW_PG_LSN_H
#define PGW_PG_LSN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef uint64_t pg_lsn;
#define PG_LSN_INVALID ((pg_lsn)0)

/* "16/B374D848" -> value; false on malformed input (hex digits, one '/',
 * each half at most 8 digits). */
bool pg_lsn_parse(const char *s, pg_lsn *out);
/* buf must hold at least 18 bytes. */
void pg_lsn_format(pg_lsn lsn, char *buf, size_t len);
/* a - b, or 0 when b >= a (lag never goes negative). */
uint64_t pg_lsn_diff(pg_lsn a, pg_lsn b);

#endif
