/* Time comes in through this interface so that the lease and the controller
 * can run on a virtual clock in tests (raft_fixture, cmocka). */
#ifndef PGW_CLOCK_H
#define PGW_CLOCK_H

#include <stdint.h>

struct clock_src {
    uint64_t (*now_ms)(void *ctx); /* monotonic milliseconds */
    void *ctx;
};

/* The process's real monotonic clock (CLOCK_MONOTONIC). */
extern const struct clock_src clock_monotonic;

static inline uint64_t clock_now(const struct clock_src *c)
{
    return c->now_ms(c->ctx);
}

/* Wall clock in milliseconds since the epoch, for timestamps shown to people. */
uint64_t clock_wall_ms(void);
/* Format a wall-clock time as ISO-8601 UTC with milliseconds into buf (>= 32 bytes). */
void clock_format_iso(uint64_t wall_ms, char *buf, unsigned long len);

#endif
