/* Replication slots of the local instance: which to create, drop or
 * advance (pgslots_plan, a pure function of the members, the permanent
 * slots, ignore_slots, the slots that exist and the time), and the
 * asynchronous step that reads pg_replication_slots and carries the plan
 * out (pgnode_slots_sync).
 *
 * The rules (Patroni's, postgresql/slots.py, with pgwarden's choices where
 * the replicated state differs):
 *  - member slots: one physical slot per other data member, named by
 *    pgconf_slot_name. On the primary for every member; on a replica for
 *    the members that cascade from it (tags.replicatefrom). A member that
 *    stopped reporting keeps its slot until last_seen + absent_after +
 *    member_slots_ttl (Patroni: the member key lives ttl, then the slot
 *    member_slots_ttl); after that it is dropped, and only when the caller
 *    says the view is current (may_drop_members).
 *  - permanent slots (dcs `slots`): physical ones everywhere (reserving WAL
 *    on the primary; on a replica created without reserving, and a
 *    reserving one left inactive there is advanced to the replay position,
 *    so it never pins WAL on a standby); logical ones on the primary only
 *    (PostgreSQL 15 cannot keep them in step on a standby): created in
 *    their database with their plugin, dropped and created again when the
 *    database or plugin changed.
 *  - any other slot is dropped unless it matches ignore_slots; temporary
 *    slots are never touched, active ones are left for a later round;
 *    a wanted physical slot whose WAL was lost (wal_status 'lost') is
 *    dropped and created again (Patroni 4.1.4). */
#ifndef PGW_PG_SLOTS_H
#define PGW_PG_SLOTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/cfg.h"
#include "common/status.h"
#include "pg/pgconf.h"

struct pgnode;

enum pgslots_kind { PGSLOTS_PHYSICAL = 0, PGSLOTS_LOGICAL };

/* One row of pg_replication_slots. */
struct pgslots_existing {
    char name[PGCONF_SLOT_MAX];
    enum pgslots_kind kind;
    char database[64];
    char plugin[64];
    bool active;
    bool temporary;
    bool reserved; /* restart_lsn is set */
    bool lost;     /* wal_status = 'lost' */
};

struct pgslots_member {
    const char *name;
    bool witness;
    uint64_t last_seen_ms;     /* monotonic; the caller's conservative "last report seen" */
    const char *replicatefrom; /* its tags.replicatefrom, or NULL */
};

struct pgslots_input {
    const char *self;              /* this node's member name */
    bool primary;                  /* the local instance runs as the primary */
    uint64_t now_ms;
    uint64_t absent_after_ms;      /* a member counts as gone this long after its last report (ttl) */
    uint64_t member_slots_ttl_ms;  /* then its slot is kept this much longer */
    bool may_drop_members;         /* false: expired member slots are kept this round */
    const struct pgslots_member *members;
    size_t n_members;
    const struct cfg_slots *permanent;        /* may be NULL */
    const struct cfg_slot_matchers *ignore;   /* may be NULL */
    const struct pgslots_existing *existing;  /* ignored by pgnode_slots_sync (it reads them) */
    size_t n_existing;
};

enum pgslots_op { PGSLOTS_DROP = 0, PGSLOTS_CREATE, PGSLOTS_ADVANCE };

struct pgslots_action {
    enum pgslots_op op;
    char name[PGCONF_SLOT_MAX];
    enum pgslots_kind kind;
    char database[64], plugin[64]; /* logical create */
    bool reserve;                  /* physical create: reserve WAL at once */
    char why[160];                 /* for the log */
};

struct pgslots_plan {
    struct pgslots_action *items; /* drops first, then creations, then advances */
    size_t n;
    size_t kept_expired;          /* expired member slots kept because !may_drop_members */
};

/* Compute what to do. PGW_ENOMEM only. */
int pgslots_plan(const struct pgslots_input *in, struct pgslots_plan *out) PGW_MUST_CHECK;
void pgslots_plan_free(struct pgslots_plan *p);
/* A digest of the slots this node wants (members with a live slot, the
 * permanent slots, ignore_slots, the role): when it changes the slots are
 * synced again at once. */
uint64_t pgslots_wanted_sig(const struct pgslots_input *in);
/* Whether a slot matches one of the ignore_slots entries. */
bool pgslots_ignored(const struct cfg_slot_matchers *ignore, const struct pgslots_existing *e);

struct pgslots_result {
    unsigned created, dropped, advanced, failed;
};
typedef void (*pgnode_slots_cb)(struct pgnode *n, int status, const struct pgslots_result *r,
                                void *ctx);
/* Read the local slots, plan (in->existing is ignored) and apply the plan
 * one statement at a time on short-lived superuser connections (a logical
 * slot is created from its own database). Everything in `in` is copied.
 * Each failed statement is logged and the others still run; the callback
 * gets PGW_EIO when any failed (first message in pgnode_error). */
int pgnode_slots_sync(struct pgnode *n, const struct pgslots_input *in, pgnode_slots_cb cb,
                      void *ctx) PGW_MUST_CHECK;

#endif
