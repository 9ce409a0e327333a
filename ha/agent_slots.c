/* Replication slots of this node, from the replicated state (pg/slots.h
 * has the rules): the members and when this node last saw each of them
 * report, the permanent slots and ignore_slots of the dynamic
 * configuration (so PATCH /config applies without a restart: the digest of
 * what is wanted changes and the slots are synced again at once).
 *
 * Happy path: the wanted digest changed, PostgreSQL was restarted (its data
 * may have been rewound), or SLOTS_RECHECK_MS passed (a slot dropped behind
 * our back, an earlier failure) -> one pgnode_slots_sync.
 * Failure modes: the sync fails (logged; retried at the next recheck); the
 * view of the cluster may be stale: a member's slot is dropped for absence
 * only by a primary holding a valid lease (its Raft log is then current
 * within a renewal), and "last seen" is never older than this process's
 * start (a restarted node has not seen reports it did not apply), so a
 * member cut off for less than ttl + member_slots_ttl keeps its slot. */
#include "ha/agent_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "pg/slots.h"

#define SLOTS_RECHECK_MS 30000

static void slots_done(struct pgnode *n, int status, const struct pgslots_result *r, void *ctx)
{
    struct ha *h = ctx;
    (void)n;
    (void)status; /* a failure was logged by pgnode; retried at the next recheck */
    (void)r;
    if (h->closing)
        return;
    h->ag.busy = false;
    ha_kick(h);
}

/* Fills in (members points into the FSM: use before returning to the loop). */
static size_t build_input(struct ha *h, bool primary, struct pgslots_member *mem,
                          struct pgslots_input *in)
{
    const struct fsm_state *st = &h->fsm->st;
    uint64_t now = ha_now(h);
    size_t n = 0;
    for (unsigned i = 0; i < st->n_members && n < FSM_MAX_MEMBERS; i++) {
        const struct fsm_member *m = &st->members[i];
        const json_t *rf = json_object_get(m->tags, "replicatefrom");
        uint64_t seen = m->local_report_ms;
        if (seen < h->started_ms)
            seen = h->started_ms; /* not seen by this process yet: since it started */
        mem[n++] = (struct pgslots_member){
            .name = m->name,
            .witness = m->witness,
            .last_seen_ms = seen,
            .replicatefrom = json_is_string(rf) ? json_string_value(rf) : NULL,
        };
    }
    *in = (struct pgslots_input){
        .self = ha_name(h),
        .primary = primary,
        .now_ms = now,
        .absent_after_ms = h->timing.ttl_ms,
        .member_slots_ttl_ms = h->dcs.member_slots_ttl_ms,
        .may_drop_members = !primary || lease_holder_valid(&h->ag.lease, now),
        .members = mem,
        .n_members = n,
        .permanent = &h->dcs.slots,
        .ignore = &h->dcs.ignore_slots,
    };
    return n;
}

bool agent_slots_step(struct ha *h, bool primary)
{
    struct agent *ag = &h->ag;
    if (ag->busy || !h->dcs.use_slots || pgnode_busy(ag->node))
        return false;
    struct pgslots_member mem[FSM_MAX_MEMBERS];
    struct pgslots_input in;
    build_input(h, primary, mem, &in);
    uint64_t sig = pgslots_wanted_sig(&in) ^ (h->fsm->st.primary.epoch * 0x9e3779b97f4a7c15ull);
    uint64_t now = ha_now(h);
    /* A new postmaster may run on data without pg_replslot (pg_rewind and a
     * clone leave it empty): its members' slots are synced at once, not at
     * the next recheck, or a replica cannot stream from it for up to 30 s. */
    const struct pg_status *ps = pgmon_status(ag->mon);
    bool new_postmaster = ps->query_ok && ps->postmaster_start_ms != ag->slots_postmaster;
    if (!new_postmaster && sig == ag->slots_sig && now - ag->slots_synced_ms < SLOTS_RECHECK_MS)
        return false;
    if (ps->query_ok)
        ag->slots_postmaster = ps->postmaster_start_ms;
    agent_op_begin(h, "replication slots", NULL);
    if (pgnode_slots_sync(ag->node, &in, slots_done, h) != 0) {
        log_warn("ha", "replication slots: %s", pgnode_error(ag->node));
        ag->busy = false;
        ag->slots_sig = sig; /* not again before the recheck */
        ag->slots_synced_ms = now;
        return false;
    }
    ag->slots_sig = sig;
    ag->slots_synced_ms = now;
    return true;
}
