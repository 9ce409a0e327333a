/* The primary lease: the rule that keeps at most one PostgreSQL primary
 * (DESIGN.md, "Safety"). Pure logic on times supplied by the caller.
 *
 * Holder side. The primary renews through Raft every loop_wait. A renewal
 * counts from the moment it was SENT (taken before submission), under the
 * timing in force when it was sent, and only once its commit is confirmed.
 * With T the send time and ttl, retry_timeout the timing of the last
 * confirmed renewal:
 *   - it answers 200 on the primary endpoints only while its last renewal
 *     attempt succeeded and now < T + ttl - retry_timeout;
 *   - at T + ttl - retry_timeout (the fence deadline) it must already be
 *     stopping PostgreSQL hard.
 * A change of the dynamic configuration reaches the holder's lease only with
 * its next renewal: what it counts on is always what it told the judge.
 * Judge side (the controller, on the Raft leader). It measures with its own
 * monotonic clock from when it APPLIED the holder's latest renewal (or the
 * assignment), and waits ttl * (1 + LEASE_DRIFT) before it may promote
 * anyone else, where ttl is the longest of: the current configuration's,
 * the one that renewal was sent under, and the one of the lease the holder
 * held when it sent it (a renewal is sent only once the previous one was
 * answered, so that is the only older lease the holder can still count on).
 * Lowering ttl at run time therefore never shortens a lease a frozen or
 * cut-off holder still counts on. The judge decides only once its leader
 * barrier has applied every committed entry, so every renewal the holder
 * saw confirmed has been applied here, after it was sent. A newly elected
 * leader therefore needs no extra wait of its own: the lease already ran
 * while it was elected.
 * Why that is safe: the holder's T precedes any apply time, and it fences
 * retry_timeout before its own ttl is up, so it is down before the judge's
 * ttl * 1.0625 after a later instant, even with clocks running up to
 * retry_timeout/ttl (>= 1/5 by the timing rule) apart in rate, minus the
 * time killing PostgreSQL takes (well under 100 ms). */
#ifndef PGW_HA_LEASE_H
#define PGW_HA_LEASE_H

#include <stdbool.h>
#include <stdint.h>

/* Judge-side allowance for clock-rate drift between nodes: 1/16. */
#define LEASE_DRIFT_NUM 1
#define LEASE_DRIFT_DEN 16

struct lease_timing {
    uint32_t ttl_ms;
    uint32_t loop_wait_ms;
    uint32_t retry_timeout_ms;
};

struct lease_holder {
    uint64_t epoch;           /* 0: holds nothing */
    bool confirmed;           /* at least one renewal confirmed this epoch */
    uint64_t confirmed_send_ms; /* T: send time of the last confirmed renewal */
    uint32_t confirmed_ttl_ms, confirmed_retry_ms; /* the timing it was sent under */
    bool inflight;
    uint64_t inflight_send_ms;
    uint32_t inflight_ttl_ms, inflight_retry_ms;
    bool last_failed;         /* the last attempt was refused or timed out */
};

void lease_holder_reset(struct lease_holder *h, uint64_t epoch);
/* The caller is about to submit a renewal now, under timing t. */
void lease_holder_sent(struct lease_holder *h, uint64_t now_ms, const struct lease_timing *t);
/* Result of the renewal in flight. */
void lease_holder_confirmed(struct lease_holder *h);
void lease_holder_failed(struct lease_holder *h);
/* A lease confirmed before a restart of pgwarden (lease.state). */
void lease_holder_restore(struct lease_holder *h, uint64_t epoch, uint64_t send_ms,
                          uint32_t ttl_ms, uint32_t retry_ms);

/* PostgreSQL may run as primary: a confirmed renewal and now before the
 * fence deadline. */
bool lease_holder_valid(const struct lease_holder *h, uint64_t now_ms);
/* Valid and the last attempt succeeded: the primary endpoints may say 200. */
bool lease_holder_serving(const struct lease_holder *h, uint64_t now_ms);
/* T + ttl - retry_timeout of the confirmed renewal (0 when nothing is confirmed). */
uint64_t lease_holder_fence_deadline(const struct lease_holder *h);
/* ms left until the fence deadline (0 if passed or unconfirmed). */
uint64_t lease_holder_remaining(const struct lease_holder *h, uint64_t now_ms);
/* A renewal should be sent now (due every loop_wait, none in flight). */
bool lease_holder_due(const struct lease_holder *h, const struct lease_timing *t, uint64_t now_ms);
/* The ttl of the lease the holder counts on now (0: none): a renewal
 * carries it, so that the judge covers it too. */
uint32_t lease_holder_held_ttl(const struct lease_holder *h);

/* Judge side: when the current lease expires as this node judges it, from
 * the apply time of the holder's latest renewal and the longest ttl that
 * renewal said the holder may count on (0: not known, older pgwarden). */
uint64_t lease_judged_expiry(uint64_t last_apply_ms, uint32_t holder_ttl_ms,
                             const struct lease_timing *t);

#endif
