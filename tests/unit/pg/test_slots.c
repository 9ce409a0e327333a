/* The replication slot plan (pg/slots.h): which slots a node creates, drops
 * or advances given the members and when each was last seen, the permanent
 * slots, ignore_slots and the slots that exist. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "pg/slots.h"

#define MINUTE (60u * 1000u)
#define NOW (100u * 60u * MINUTE)
#define TTL 2000u          /* absent_after: the lease ttl */
#define MSTTL (30u * MINUTE)  /* member_slots_ttl */

static struct cfg_slot perm_items[] = {
    {.name = "keep_me", .type = "physical"},
    {.name = "cdc", .type = "logical", .database = "app", .plugin = "pgoutput"},
    {.name = "standby_only", .type = "physical", .cluster_type = "standby"},
};
static const struct cfg_slots perm = {perm_items, 3};

static struct cfg_slot_matcher ign_items[] = {
    {.name = "ext1"},
    {.type = "logical", .plugin = "wal2json"},
};
static const struct cfg_slot_matchers ign = {ign_items, 2};

static struct pgslots_existing ex(const char *name, enum pgslots_kind kind, const char *db,
                                  const char *plugin, bool active)
{
    struct pgslots_existing e;
    memset(&e, 0, sizeof e);
    snprintf(e.name, sizeof e.name, "%s", name);
    e.kind = kind;
    snprintf(e.database, sizeof e.database, "%s", db ? db : "");
    snprintf(e.plugin, sizeof e.plugin, "%s", plugin ? plugin : "");
    e.active = active;
    e.reserved = true;
    return e;
}

static struct pgslots_input base_input(const struct pgslots_member *m, size_t nm,
                                       const struct pgslots_existing *e, size_t ne)
{
    struct pgslots_input in = {
        .self = "n1",
        .primary = true,
        .now_ms = NOW,
        .absent_after_ms = TTL,
        .member_slots_ttl_ms = MSTTL,
        .may_drop_members = true,
        .members = m,
        .n_members = nm,
        .permanent = &perm,
        .ignore = &ign,
        .existing = e,
        .n_existing = ne,
    };
    return in;
}

/* "drop n3, create keep_me/p/r, ..." in plan order */
static void plan_is(const struct pgslots_input *in, const char *want)
{
    struct pgslots_plan p;
    assert_int_equal(pgslots_plan(in, &p), PGW_OK);
    char got[2048] = "";
    size_t o = 0;
    for (size_t i = 0; i < p.n; i++) {
        const struct pgslots_action *a = &p.items[i];
        const char *op = a->op == PGSLOTS_DROP ? "drop" : a->op == PGSLOTS_CREATE ? "create" : "advance";
        o += (size_t)snprintf(got + o, sizeof got - o, "%s%s %s", i ? ", " : "", op, a->name);
        if (a->op == PGSLOTS_CREATE && a->kind == PGSLOTS_LOGICAL)
            o += (size_t)snprintf(got + o, sizeof got - o, "/%s/%s", a->database, a->plugin);
        else if (a->op == PGSLOTS_CREATE)
            o += (size_t)snprintf(got + o, sizeof got - o, "/%s", a->reserve ? "reserve" : "lazy");
    }
    pgslots_plan_free(&p);
    if (strcmp(got, want) != 0)
        fail_msg("plan\n  got:  %s\n  want: %s", got, want);
}

static void test_primary(void **state)
{
    (void)state;
    struct pgslots_member m[] = {
        {.name = "n1", .last_seen_ms = NOW},
        {.name = "n2", .last_seen_ms = NOW - 500},
        {.name = "n3", .last_seen_ms = NOW - TTL - MSTTL - 1},  /* gone for too long */
        {.name = "n4-new.x", .last_seen_ms = NOW - 10 * MINUTE},   /* gone, within the ttl */
        {.name = "w", .witness = true, .last_seen_ms = NOW},
    };
    struct pgslots_existing e[] = {
        ex("n2", PGSLOTS_PHYSICAL, NULL, NULL, true),
        ex("n3", PGSLOTS_PHYSICAL, NULL, NULL, false),
        ex("old_member", PGSLOTS_PHYSICAL, NULL, NULL, false),
        ex("ext1", PGSLOTS_PHYSICAL, NULL, NULL, false),
        ex("debezium", PGSLOTS_LOGICAL, "app", "wal2json", false),
        ex("cdc", PGSLOTS_LOGICAL, "app", "test_decoding", false),
        ex("busy", PGSLOTS_PHYSICAL, NULL, NULL, true),
        ex("pg_basebackup_123", PGSLOTS_PHYSICAL, NULL, NULL, false),
    };
    e[7].temporary = true;
    struct pgslots_input in = base_input(m, 5, e, 8);
    /* n2 exists; n3 expired: dropped; old_member unknown: dropped; ext1 and
     * debezium ignored; cdc has another plugin: dropped and created again;
     * busy is active: left; the temporary one is never touched; n4 (its
     * name mapped like Patroni's) and keep_me are created; a standby-cluster
     * slot is not for us, nor a slot for ourselves, nor for the witness */
    plan_is(&in, "drop n3, drop old_member, drop cdc, create n4_new_x/reserve, "
                 "create keep_me/reserve, create cdc/app/pgoutput");
}

static void test_member_ttl(void **state)
{
    (void)state;
    struct pgslots_member m[] = {{.name = "n1", .last_seen_ms = NOW},
                                 {.name = "n2", .last_seen_ms = NOW - TTL - MSTTL}};
    struct pgslots_existing e[] = {ex("n2", PGSLOTS_PHYSICAL, NULL, NULL, false)};
    struct pgslots_input in = base_input(m, 2, e, 1);
    in.permanent = NULL;
    /* exactly at the limit: kept */
    plan_is(&in, "");
    /* one millisecond later: dropped */
    m[1].last_seen_ms--;
    plan_is(&in, "drop n2");
    /* ...unless the caller is not sure its view is current */
    in.may_drop_members = false;
    plan_is(&in, "");
    struct pgslots_plan p;
    assert_int_equal(pgslots_plan(&in, &p), PGW_OK);
    assert_int_equal(p.kept_expired, 1);
    pgslots_plan_free(&p);
    /* a kept expired member's missing slot is not created either */
    in.n_existing = 0;
    plan_is(&in, "");
    in.may_drop_members = true;
    /* member_slots_ttl 0: gone once it missed the lease ttl */
    in.member_slots_ttl_ms = 0;
    m[1].last_seen_ms = NOW - TTL;
    in.n_existing = 1;
    plan_is(&in, "");
    m[1].last_seen_ms = NOW - TTL - 1;
    plan_is(&in, "drop n2");
    /* a clock that went backwards (seen "in the future") counts as now */
    m[1].last_seen_ms = NOW + 5000;
    plan_is(&in, "");
    /* a permanent slot named like an expired member is kept */
    static struct cfg_slot p2[] = {{.name = "n2", .type = "physical"}};
    struct cfg_slots perm2 = {p2, 1};
    in.permanent = &perm2;
    m[1].last_seen_ms = 0;
    plan_is(&in, "");
}

static void test_replica(void **state)
{
    (void)state;
    struct pgslots_member m[] = {
        {.name = "n1", .last_seen_ms = NOW},
        {.name = "n2", .last_seen_ms = NOW},
        {.name = "n3", .last_seen_ms = NOW, .replicatefrom = "n1"},
    };
    struct pgslots_existing e[] = {
        ex("n2", PGSLOTS_PHYSICAL, NULL, NULL, false),      /* left from when we were primary */
        ex("cdc", PGSLOTS_LOGICAL, "app", "pgoutput", false), /* likewise */
        ex("keep_me", PGSLOTS_PHYSICAL, NULL, NULL, false),   /* reserved: pins WAL */
    };
    struct pgslots_input in = base_input(m, 3, e, 3);
    in.primary = false;
    /* a replica keeps a slot only for a member cascading from it; logical
     * slots live on the primary only; the permanent physical one stays
     * and is released up to the replay position */
    plan_is(&in, "drop n2, drop cdc, create n3/reserve, advance keep_me");
    /* created without reserving WAL when missing */
    in.n_existing = 0;
    plan_is(&in, "create n3/reserve, create keep_me/lazy");
    /* not reserved (or active): nothing to release */
    e[2].reserved = false;
    in.existing = &e[2];
    in.n_existing = 1;
    plan_is(&in, "create n3/reserve");
}

static void test_lost_and_types(void **state)
{
    (void)state;
    struct pgslots_member m[] = {{.name = "n1", .last_seen_ms = NOW},
                                 {.name = "n2", .last_seen_ms = NOW}};
    struct pgslots_existing e[] = {
        ex("n2", PGSLOTS_PHYSICAL, NULL, NULL, false),
        ex("keep_me", PGSLOTS_LOGICAL, "app", "pgoutput", false), /* wrong type */
        ex("cdc", PGSLOTS_LOGICAL, "app", "pgoutput", true),
    };
    e[0].lost = true;
    struct pgslots_input in = base_input(m, 2, e, 3);
    plan_is(&in, "drop n2, drop keep_me, create n2/reserve, create keep_me/reserve");
    /* an active lost slot waits */
    e[0].active = true;
    plan_is(&in, "drop keep_me, create keep_me/reserve");
}

static void test_ignored(void **state)
{
    (void)state;
    struct pgslots_existing a = ex("ext1", PGSLOTS_LOGICAL, "x", "y", false);
    assert_true(pgslots_ignored(&ign, &a));
    struct pgslots_existing b = ex("ext2", PGSLOTS_LOGICAL, "x", "wal2json", false);
    assert_true(pgslots_ignored(&ign, &b));
    struct pgslots_existing c = ex("ext2", PGSLOTS_PHYSICAL, "", "", false);
    assert_false(pgslots_ignored(&ign, &c));
    struct pgslots_existing d = ex("ext2", PGSLOTS_LOGICAL, "x", "pgoutput", false);
    assert_false(pgslots_ignored(&ign, &d));
    assert_false(pgslots_ignored(NULL, &a));
    static struct cfg_slot_matcher all[] = {{.database = "x", .type = "logical"}};
    struct cfg_slot_matchers db = {all, 1};
    assert_true(pgslots_ignored(&db, &d));
    assert_false(pgslots_ignored(&db, &c));
}

static void test_wanted_sig(void **state)
{
    (void)state;
    struct pgslots_member m[] = {{.name = "n1", .last_seen_ms = NOW},
                                 {.name = "n2", .last_seen_ms = NOW}};
    struct pgslots_input in = base_input(m, 2, NULL, 0);
    uint64_t s1 = pgslots_wanted_sig(&in);
    assert_int_equal(s1, pgslots_wanted_sig(&in));
    /* time passing within the ttl changes nothing */
    in.now_ms += MSTTL;
    assert_int_equal(s1, pgslots_wanted_sig(&in));
    /* the member's slot expiring does */
    in.now_ms += TTL + 1;
    uint64_t s2 = pgslots_wanted_sig(&in);
    assert_true(s2 != s1);
    in.now_ms = NOW;
    in.primary = false;
    assert_true(pgslots_wanted_sig(&in) != s1);
    in.primary = true;
    in.permanent = NULL;
    assert_true(pgslots_wanted_sig(&in) != s1);
    in.permanent = &perm;
    in.ignore = NULL;
    assert_true(pgslots_wanted_sig(&in) != s1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_primary),
        cmocka_unit_test(test_member_ttl),
        cmocka_unit_test(test_replica),
        cmocka_unit_test(test_lost_and_types),
        cmocka_unit_test(test_ignored),
        cmocka_unit_test(test_wanted_sig),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
