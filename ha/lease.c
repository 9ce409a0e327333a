#include "ha/lease.h"

#include <string.h>

void lease_holder_reset(struct lease_holder *h, uint64_t epoch)
{
    memset(h, 0, sizeof *h);
    h->epoch = epoch;
}

void lease_holder_sent(struct lease_holder *h, uint64_t now_ms, const struct lease_timing *t)
{
    h->inflight = true;
    h->inflight_send_ms = now_ms;
    h->inflight_ttl_ms = t->ttl_ms;
    h->inflight_retry_ms = t->retry_timeout_ms;
}

void lease_holder_confirmed(struct lease_holder *h)
{
    if (!h->inflight)
        return;
    h->inflight = false;
    h->last_failed = false;
    /* the later renewal replaces the earlier one whole: its timing may give
     * an earlier deadline (ttl lowered), never a lease the judge was not told of */
    if (!h->confirmed || h->inflight_send_ms > h->confirmed_send_ms) {
        h->confirmed_send_ms = h->inflight_send_ms;
        h->confirmed_ttl_ms = h->inflight_ttl_ms;
        h->confirmed_retry_ms = h->inflight_retry_ms;
    }
    h->confirmed = true;
}

void lease_holder_failed(struct lease_holder *h)
{
    h->inflight = false;
    h->last_failed = true;
}

void lease_holder_restore(struct lease_holder *h, uint64_t epoch, uint64_t send_ms,
                          uint32_t ttl_ms, uint32_t retry_ms)
{
    lease_holder_reset(h, epoch);
    h->confirmed = true;
    h->confirmed_send_ms = send_ms;
    h->confirmed_ttl_ms = ttl_ms;
    h->confirmed_retry_ms = retry_ms;
}

uint64_t lease_holder_fence_deadline(const struct lease_holder *h)
{
    if (h->epoch == 0 || !h->confirmed)
        return 0;
    return h->confirmed_send_ms + h->confirmed_ttl_ms - h->confirmed_retry_ms;
}

bool lease_holder_valid(const struct lease_holder *h, uint64_t now_ms)
{
    uint64_t d = lease_holder_fence_deadline(h);
    return d != 0 && now_ms < d;
}

bool lease_holder_serving(const struct lease_holder *h, uint64_t now_ms)
{
    return lease_holder_valid(h, now_ms) && !h->last_failed;
}

uint64_t lease_holder_remaining(const struct lease_holder *h, uint64_t now_ms)
{
    uint64_t d = lease_holder_fence_deadline(h);
    return d > now_ms ? d - now_ms : 0;
}

bool lease_holder_due(const struct lease_holder *h, const struct lease_timing *t, uint64_t now_ms)
{
    if (h->epoch == 0 || h->inflight)
        return false;
    if (!h->confirmed || h->last_failed)
        return true;
    return now_ms >= h->confirmed_send_ms + t->loop_wait_ms;
}

uint32_t lease_holder_held_ttl(const struct lease_holder *h)
{
    return h->epoch != 0 && h->confirmed ? h->confirmed_ttl_ms : 0;
}

uint64_t lease_judged_expiry(uint64_t last_apply_ms, uint32_t holder_ttl_ms,
                             const struct lease_timing *t)
{
    uint64_t ttl = holder_ttl_ms > t->ttl_ms ? holder_ttl_ms : t->ttl_ms;
    return last_apply_ms + ttl + ttl * LEASE_DRIFT_NUM / LEASE_DRIFT_DEN;
}
