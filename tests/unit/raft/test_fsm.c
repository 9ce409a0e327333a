/* The replicated state machine on its own: every command's effect, every
 * refusal, idempotency, stale epochs, malformed entries, snapshot round trip. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "raft/fsm.h"

static uint64_t fake_now;
static uint64_t fake_clock(void *ctx)
{
    (void)ctx;
    return fake_now;
}
static const struct clock_src fake = {fake_clock, NULL};

static uint64_t next_index;

static const struct fsm_result *apply(struct fsm *f, const struct fsm_cmd *c)
{
    char *buf;
    size_t len;
    char err[256];
    int rc = fsm_cmd_encode(c, &buf, &len, err, sizeof err);
    if (rc != 0)
        fail_msg("encode failed: %s", err);
    const struct fsm_result *r = fsm_apply_buf(f, buf, len, ++next_index);
    raft_free(buf);
    return r;
}

static const struct fsm_result *apply_text(struct fsm *f, const char *text)
{
    return fsm_apply_buf(f, text, strlen(text), ++next_index);
}

static void reg(struct fsm *f, const char *name, uint64_t id, bool witness)
{
    struct fsm_cmd c;
    char rid[64];
    snprintf(rid, sizeof rid, "reg-%s-%llu", name, (unsigned long long)id);
    fsm_cmd_init(&c, FSM_OP_MEMBER_REGISTER, rid);
    snprintf(c.member, sizeof c.member, "%s", name);
    c.u.reg.raft_id = id;
    snprintf(c.u.reg.raft_addr, sizeof c.u.reg.raft_addr, "127.0.0.1:%llu", 5000 + (unsigned long long)id);
    snprintf(c.u.reg.api_url, sizeof c.u.reg.api_url, "http://127.0.0.1:%llu", 8000 + (unsigned long long)id);
    c.u.reg.witness = witness;
    c.u.reg.tags = json_pack("{s:b}", "nofailover", 0);
    assert_int_equal(apply(f, &c)->status, 0);
    fsm_cmd_free(&c);
}

static int rid_seq;
static const struct fsm_result *assign(struct fsm *f, const char *member, uint64_t expect_epoch,
                                       enum fsm_assign_mode mode)
{
    struct fsm_cmd c;
    char rid[32];
    snprintf(rid, sizeof rid, "assign-%d", ++rid_seq);
    fsm_cmd_init(&c, FSM_OP_PRIMARY_ASSIGN, rid);
    snprintf(c.member, sizeof c.member, "%s", member);
    c.epoch = expect_epoch;
    c.u.assign.mode = mode;
    snprintf(c.u.assign.reason, sizeof c.u.assign.reason, "test");
    return apply(f, &c);
}

static const struct fsm_result *simple(struct fsm *f, enum fsm_op op, const char *member, uint64_t epoch)
{
    struct fsm_cmd c;
    char rid[32];
    snprintf(rid, sizeof rid, "op-%d", ++rid_seq);
    fsm_cmd_init(&c, op, rid);
    snprintf(c.member, sizeof c.member, "%s", member);
    c.epoch = epoch;
    if (op == FSM_OP_PRIMARY_RUNNING)
        c.u.running.timeline = 1;
    if (op == FSM_OP_CLUSTER_INIT)
        snprintf(c.u.init.sysid, sizeof c.u.init.sysid, "7312345678901234567");
    return apply(f, &c);
}

static int setup(void **state)
{
    struct fsm *f = calloc(1, sizeof *f);
    fake_now = 1000;
    next_index = 0;
    fsm_init(f, &fake);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fsm_close(*state);
    free(*state);
    return 0;
}

static void bootstrap_cluster(struct fsm *f)
{
    reg(f, "n1", 1, false);
    reg(f, "n2", 2, false);
    reg(f, "w3", 3, true);
    assert_int_equal(assign(f, "n1", 0, FSM_ASSIGN_BOOTSTRAP)->status, 0);
    assert_int_equal(simple(f, FSM_OP_CLUSTER_INIT, "n1", 0)->status, 0);
    assert_int_equal(simple(f, FSM_OP_PRIMARY_RUNNING, "n1", 1)->status, 0);
}

static void test_register_and_bootstrap(void **state)
{
    struct fsm *f = *state;
    bootstrap_cluster(f);
    assert_int_equal(f->st.n_members, 3);
    assert_string_equal(f->st.primary.member, "n1");
    assert_int_equal(f->st.primary.epoch, 1);
    assert_int_equal(f->st.primary.state, FSM_PRIMARY_RUNNING);
    assert_string_equal(f->st.sysid, "7312345678901234567");
    assert_true(fsm_member_find(&f->st, "w3")->witness);
    assert_true(fsm_member_nofailover(fsm_member_find(&f->st, "w3")));
    assert_false(fsm_member_nofailover(fsm_member_find(&f->st, "n2")));
}

static void test_witness_never_assigned(void **state)
{
    struct fsm *f = *state;
    bootstrap_cluster(f);
    const struct fsm_result *r = assign(f, "w3", 1, FSM_ASSIGN_PROMOTE);
    assert_int_equal(r->status, PGW_EREFUSED);
    assert_non_null(strstr(r->msg, "witness"));
    assert_string_equal(f->st.primary.member, "n1");
}

static void test_lease_and_stale_epoch(void **state)
{
    struct fsm *f = *state;
    bootstrap_cluster(f);
    fake_now = 5000;
    assert_int_equal(simple(f, FSM_OP_LEASE_RENEW, "n1", 1)->status, 0);
    assert_int_equal(f->local_lease_ms, 5000);
    /* the controller moves the role to n2: epoch 2 */
    fake_now = 9000;
    assert_int_equal(assign(f, "n2", 1, FSM_ASSIGN_PROMOTE)->status, 0);
    assert_int_equal(f->st.primary.epoch, 2);
    assert_int_equal(f->local_lease_ms, 9000);
    /* the old primary's renewal for epoch 1 is stale and changes nothing */
    fake_now = 9500;
    const struct fsm_result *r = simple(f, FSM_OP_LEASE_RENEW, "n1", 1);
    assert_int_equal(r->status, PGW_ECONFLICT);
    assert_non_null(strstr(r->msg, "stale"));
    assert_int_equal(f->local_lease_ms, 9000);
    /* a second assignment racing on the old epoch loses the compare-and-set */
    assert_int_equal(assign(f, "n1", 1, FSM_ASSIGN_PROMOTE)->status, PGW_ECONFLICT);
    assert_string_equal(f->st.primary.member, "n2");
    /* n2 confirms on a new timeline: history records the old one */
    struct fsm_cmd c;
    fsm_cmd_init(&c, FSM_OP_PRIMARY_RUNNING, "run-n2");
    snprintf(c.member, sizeof c.member, "n2");
    c.epoch = 2;
    c.u.running.timeline = 2;
    c.u.running.lsn = 0x3000060;
    c.u.running.wall_ms = 1700000000000ull;
    assert_int_equal(apply(f, &c)->status, 0);
    assert_int_equal(f->st.n_history, 1);
    assert_int_equal(f->st.history[0].timeline, 1);
    assert_int_equal(f->st.history[0].lsn, 0x3000060);
    assert_string_equal(f->st.history[0].new_leader, "n2");
}

static void test_idempotent_request_id(void **state)
{
    struct fsm *f = *state;
    bootstrap_cluster(f);
    struct fsm_cmd c;
    fsm_cmd_init(&c, FSM_OP_SWITCHOVER_SET, "sw-1");
    snprintf(c.u.sw.from, sizeof c.u.sw.from, "n1");
    snprintf(c.u.sw.to, sizeof c.u.sw.to, "n2");
    assert_int_equal(apply(f, &c)->status, 0);
    /* the same request retried after a leader change: applied once, same answer */
    const struct fsm_result *r = apply(f, &c);
    assert_int_equal(r->status, 0);
    assert_non_null(strstr(r->msg, "already applied"));
    /* a different request for the same thing is refused: one is pending */
    fsm_cmd_init(&c, FSM_OP_SWITCHOVER_SET, "sw-2");
    snprintf(c.u.sw.from, sizeof c.u.sw.from, "n1");
    assert_int_equal(apply(f, &c)->status, PGW_EBUSY);
}

static void test_switchover_sequence(void **state)
{
    struct fsm *f = *state;
    bootstrap_cluster(f);
    struct fsm_cmd c;
    fsm_cmd_init(&c, FSM_OP_PRIMARY_DEMOTE, "d1");
    snprintf(c.member, sizeof c.member, "n1");
    c.epoch = 1;
    snprintf(c.u.demote.target, sizeof c.u.demote.target, "n2");
    assert_int_equal(apply(f, &c)->status, 0);
    assert_int_equal(f->st.primary.state, FSM_PRIMARY_DEMOTING);
    fsm_cmd_init(&c, FSM_OP_PRIMARY_STOPPED, "s1");
    snprintf(c.member, sizeof c.member, "n1");
    c.epoch = 1;
    c.u.stopped.final_lsn = 0x5000028;
    assert_int_equal(apply(f, &c)->status, 0);
    assert_int_equal(f->st.primary.state, FSM_PRIMARY_STOPPED);
    assert_int_equal(f->st.primary.final_lsn, 0x5000028);
    /* a stopped primary has no lease to renew */
    assert_int_equal(simple(f, FSM_OP_LEASE_RENEW, "n1", 1)->status, PGW_ECONFLICT);
    assert_int_equal(assign(f, "n2", 1, FSM_ASSIGN_PROMOTE)->status, 0);
    assert_int_equal(f->st.primary.state, FSM_PRIMARY_PROMOTING);
}

static void test_refusals(void **state)
{
    struct fsm *f = *state;
    /* nothing to promote before the cluster exists */
    reg(f, "n1", 1, false);
    assert_int_equal(assign(f, "n1", 0, FSM_ASSIGN_PROMOTE)->status, PGW_EUNAVAIL);
    assert_int_equal(assign(f, "nobody", 0, FSM_ASSIGN_BOOTSTRAP)->status, PGW_ENOTFOUND);
    /* cluster_init only by the bootstrapping member */
    assert_int_equal(simple(f, FSM_OP_CLUSTER_INIT, "n1", 0)->status, PGW_ECONFLICT);
    assert_int_equal(assign(f, "n1", 0, FSM_ASSIGN_BOOTSTRAP)->status, 0);
    assert_int_equal(simple(f, FSM_OP_CLUSTER_INIT, "n1", 0)->status, 0);
    /* a second bootstrap is refused once initialized */
    assert_int_equal(assign(f, "n1", 1, FSM_ASSIGN_BOOTSTRAP)->status, PGW_ECONFLICT);
    /* the primary cannot be removed */
    struct fsm_cmd c;
    fsm_cmd_init(&c, FSM_OP_MEMBER_REMOVE, "rm1");
    snprintf(c.member, sizeof c.member, "n1");
    assert_int_equal(apply(f, &c)->status, PGW_ECONFLICT);
    /* a second member cannot steal n1's raft address */
    fsm_cmd_init(&c, FSM_OP_MEMBER_REGISTER, "reg-x");
    snprintf(c.member, sizeof c.member, "x");
    c.u.reg.raft_id = 9;
    snprintf(c.u.reg.raft_addr, sizeof c.u.reg.raft_addr, "127.0.0.1:5001");
    snprintf(c.u.reg.api_url, sizeof c.u.reg.api_url, "http://x");
    assert_int_equal(apply(f, &c)->status, PGW_ECONFLICT);
    fsm_cmd_free(&c);
    /* reports from unknown members */
    fsm_cmd_init(&c, FSM_OP_MEMBER_REPORT, "rep");
    snprintf(c.member, sizeof c.member, "ghost");
    snprintf(c.u.report.role, sizeof c.u.report.role, "replica");
    snprintf(c.u.report.state, sizeof c.u.report.state, "running");
    assert_int_equal(apply(f, &c)->status, PGW_ENOTFOUND);
}

static void test_malformed_entries_are_noops(void **state)
{
    struct fsm *f = *state;
    bootstrap_cluster(f);
    char *before = fsm_state_dump(&f->st);
    static const char *const bad[] = {
        "", "{", "[]", "null", "{\"v\":1}", "{\"v\":2,\"op\":\"noop\",\"rid\":\"x\"}",
        "{\"v\":1,\"op\":\"frobnicate\",\"rid\":\"x\"}",
        "{\"v\":1,\"op\":\"lease_renew\",\"rid\":\"x\",\"member\":\"n1\"}",
        "{\"v\":1,\"op\":\"lease_renew\",\"rid\":\"x\",\"member\":\"n1\",\"epoch\":-1}",
        "{\"v\":1,\"op\":\"lease_renew\",\"rid\":\"x\",\"member\":\"bad name\",\"epoch\":1}",
        "{\"v\":1,\"op\":\"member_register\",\"rid\":\"x\",\"member\":\"n9\",\"raft_id\":0,\"raft_addr\":\"a\",\"api_url\":\"b\"}",
        "{\"v\":1,\"op\":\"pause_set\",\"rid\":\"x\",\"pause\":\"yes\"}",
        "{\"v\":1,\"op\":\"sync_set\",\"rid\":\"x\",\"members\":[1],\"primary_epoch\":1}",
        "{\"v\":1,\"v\":1,\"op\":\"noop\",\"rid\":\"x\"}",
        "{\"v\":1,\"op\":\"cluster_init\",\"rid\":\"x\",\"member\":\"n1\",\"sysid\":\"12a\"}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const struct fsm_result *r = apply_text(f, bad[i]);
        assert_true(r->status < 0);
        assert_true(strlen(r->msg) > 0);
    }
    /* binary garbage */
    unsigned char junk[300];
    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = (unsigned char)(i * 37 + 11);
    assert_true(fsm_apply_buf(f, junk, sizeof junk, ++next_index)->status < 0);
    char *after = fsm_state_dump(&f->st);
    /* only applied_index moved */
    json_t *a = json_loads(before, 0, NULL), *b = json_loads(after, 0, NULL);
    json_object_del(a, "applied_index");
    json_object_del(b, "applied_index");
    assert_true(json_equal(a, b));
    json_decref(a);
    json_decref(b);
    free(before);
    free(after);
}

static const struct fsm_result *renew(struct fsm *f, uint64_t epoch, uint32_t ttl, uint32_t held)
{
    struct fsm_cmd c;
    char rid[32];
    snprintf(rid, sizeof rid, "renew-%d", ++rid_seq);
    fsm_cmd_init(&c, FSM_OP_LEASE_RENEW, rid);
    snprintf(c.member, sizeof c.member, "n1");
    c.epoch = epoch;
    c.u.lease.ttl_ms = ttl;
    c.u.lease.held_ttl_ms = held;
    return apply(f, &c);
}

/* Issue 15, item 2: each renewal records the longest ttl the holder may
 * count on (the one it was sent under, or the one it held meanwhile), for
 * the judge; an assignment starts a lease nobody counts on yet. */
static void test_renewal_records_the_holders_ttl(void **state)
{
    struct fsm *f = *state;
    bootstrap_cluster(f);
    assert_int_equal(f->st.primary.lease_ttl_ms, 0);
    assert_int_equal(renew(f, 1, 30000, 0)->status, 0);
    assert_int_equal(f->st.primary.lease_ttl_ms, 30000);
    /* ttl lowered: the first renewal under 2 s still holds the 30 s lease */
    assert_int_equal(renew(f, 1, 2000, 30000)->status, 0);
    assert_int_equal(f->st.primary.lease_ttl_ms, 30000);
    assert_int_equal(renew(f, 1, 2000, 2000)->status, 0);
    assert_int_equal(f->st.primary.lease_ttl_ms, 2000);
    /* an older pgwarden sends neither: unknown, the judge uses its own */
    assert_int_equal(renew(f, 1, 0, 0)->status, 0);
    assert_int_equal(f->st.primary.lease_ttl_ms, 0);
    assert_int_equal(renew(f, 1, 30000, 2000)->status, 0);
    char *dump = fsm_state_dump(&f->st);
    assert_non_null(strstr(dump, "\"lease_ttl_ms\":30000"));
    struct fsm g;
    fsm_init(&g, &fake);
    char err[256];
    assert_int_equal(fsm_state_load(&g, dump, strlen(dump), err, sizeof err), 0);
    assert_int_equal(g.st.primary.lease_ttl_ms, 30000);
    fsm_close(&g);
    free(dump);
    assert_int_equal(assign(f, "n2", 1, FSM_ASSIGN_PROMOTE)->status, 0);
    assert_int_equal(f->st.primary.lease_ttl_ms, 0);
}

/* Issue 15, item 4: a decision is refused when what it was decided from
 * changed: an assignment when the holder renewed since, a sync-set change
 * when the set changed since. */
static void test_stale_decisions_are_refused(void **state)
{
    struct fsm *f = *state;
    bootstrap_cluster(f);
    assert_int_equal(renew(f, 1, 2000, 0)->status, 0);
    uint64_t seen = f->st.primary.renewals;
    /* the holder renews while a stalled controller's decision is in flight */
    assert_int_equal(renew(f, 1, 2000, 2000)->status, 0);
    struct fsm_cmd c;
    fsm_cmd_init(&c, FSM_OP_PRIMARY_ASSIGN, "stale-assign");
    snprintf(c.member, sizeof c.member, "n2");
    c.epoch = 1;
    c.u.assign.if_renewals_set = true;
    c.u.assign.if_renewals = seen;
    const struct fsm_result *r = apply(f, &c);
    assert_int_equal(r->status, PGW_ECONFLICT);
    assert_non_null(strstr(r->msg, "renewed"));
    assert_string_equal(f->st.primary.member, "n1");
    /* decided from the current view: applied */
    fsm_cmd_init(&c, FSM_OP_PRIMARY_ASSIGN, "fresh-assign");
    snprintf(c.member, sizeof c.member, "n2");
    c.epoch = 1;
    c.u.assign.if_renewals_set = true;
    c.u.assign.if_renewals = f->st.primary.renewals;
    assert_int_equal(apply(f, &c)->status, 0);
    assert_string_equal(f->st.primary.member, "n2");

    uint64_t v = f->st.sync_version;
    fsm_cmd_init(&c, FSM_OP_SYNC_SET, "sync-a");
    snprintf(c.u.sync.members[0], FSM_NAME_MAX, "n1");
    c.u.sync.n = 1;
    c.u.sync.primary_epoch = 2;
    c.u.sync.if_version_set = true;
    c.u.sync.if_version = v;
    assert_int_equal(apply(f, &c)->status, 0);
    assert_int_equal(f->st.sync_version, v + 1);
    /* a second change decided from the same (now old) version */
    fsm_cmd_init(&c, FSM_OP_SYNC_SET, "sync-b");
    c.u.sync.n = 0;
    c.u.sync.primary_epoch = 2;
    c.u.sync.if_version_set = true;
    c.u.sync.if_version = v;
    r = apply(f, &c);
    assert_int_equal(r->status, PGW_ECONFLICT);
    assert_int_equal(f->st.n_sync, 1);
    /* the wire form keeps both conditions, and the version is in snapshots */
    char *buf;
    size_t len;
    char err[256];
    assert_int_equal(fsm_cmd_encode(&c, &buf, &len, err, sizeof err), 0);
    assert_non_null(memmem(buf, len, "\"if_version\":", 13));
    raft_free(buf);
    char *dump = fsm_state_dump(&f->st);
    assert_non_null(strstr(dump, "\"sync_version\":"));
    free(dump);
}

/* Conditions are sent only once every member's binary understands them:
 * an older node would apply what the others refuse. */
static void test_cluster_level_is_the_lowest_registered(void **state)
{
    struct fsm *f = *state;
    bootstrap_cluster(f); /* registered by an "older" binary: no level */
    assert_int_equal(fsm_cluster_level(&f->st), 0);
    const char *names[] = {"n1", "n2", "w3"};
    for (int i = 0; i < 3; i++) {
        struct fsm_cmd c;
        char rid[32];
        snprintf(rid, sizeof rid, "lvl-%d", i);
        fsm_cmd_init(&c, FSM_OP_MEMBER_REGISTER, rid);
        snprintf(c.member, sizeof c.member, "%s", names[i]);
        c.u.reg.raft_id = (uint64_t)i + 1;
        snprintf(c.u.reg.raft_addr, sizeof c.u.reg.raft_addr, "127.0.0.1:%d", 5001 + i);
        snprintf(c.u.reg.api_url, sizeof c.u.reg.api_url, "http://127.0.0.1:%d", 8001 + i);
        c.u.reg.witness = i == 2;
        c.u.reg.level = FSM_LEVEL;
        assert_int_equal(apply(f, &c)->status, 0);
        fsm_cmd_free(&c);
        /* one member still older: the lowest counts */
        assert_int_equal(fsm_cluster_level(&f->st), i < 2 ? 0 : FSM_LEVEL);
    }
    char *dump = fsm_state_dump(&f->st);
    struct fsm g;
    fsm_init(&g, &fake);
    char err[256];
    assert_int_equal(fsm_state_load(&g, dump, strlen(dump), err, sizeof err), 0);
    assert_int_equal(fsm_cluster_level(&g.st), FSM_LEVEL);
    fsm_close(&g);
    free(dump);
}

static void test_snapshot_round_trip(void **state)
{
    struct fsm *f = *state;
    bootstrap_cluster(f);
    struct fsm_cmd c;
    fsm_cmd_init(&c, FSM_OP_MEMBER_REPORT, "rep-1");
    snprintf(c.member, sizeof c.member, "n2");
    snprintf(c.u.report.role, sizeof c.u.report.role, "replica");
    snprintf(c.u.report.state, sizeof c.u.report.state, "running");
    snprintf(c.u.report.repl_state, sizeof c.u.report.repl_state, "streaming");
    c.u.report.receive_lsn = 12345;
    assert_int_equal(apply(f, &c)->status, 0);
    fsm_cmd_init(&c, FSM_OP_SYNC_SET, "sync-1");
    snprintf(c.u.sync.members[0], FSM_NAME_MAX, "n2");
    c.u.sync.n = 1;
    c.u.sync.primary_epoch = 1;
    assert_int_equal(apply(f, &c)->status, 0);
    fsm_cmd_init(&c, FSM_OP_PAUSE_SET, "pause-1");
    c.u.pause.pause = true;
    assert_int_equal(apply(f, &c)->status, 0);
    /* many requests so the rid ring wraps */
    for (int i = 0; i < FSM_RID_WINDOW + 10; i++) {
        char rid[32];
        snprintf(rid, sizeof rid, "wrap-%d", i);
        fsm_cmd_init(&c, FSM_OP_SWITCHOVER_CLEAR, rid);
        assert_int_equal(apply(f, &c)->status, 0);
    }
    char *dump = fsm_state_dump(&f->st);
    struct fsm g;
    fsm_init(&g, &fake);
    char err[256];
    assert_int_equal(fsm_state_load(&g, dump, strlen(dump), err, sizeof err), 0);
    char *dump2 = fsm_state_dump(&g.st);
    assert_string_equal(dump, dump2);
    /* the restored ring still recognises recent ids (and forgot the oldest) */
    fsm_cmd_init(&c, FSM_OP_SWITCHOVER_CLEAR, "wrap-1030");
    assert_non_null(strstr(apply(&g, &c)->msg, "already applied"));
    fsm_cmd_init(&c, FSM_OP_SWITCHOVER_CLEAR, "wrap-1");
    assert_int_equal(apply(&g, &c)->msg[0], '\0');
    /* corrupted snapshots are refused without touching the state */
    assert_int_equal(fsm_state_load(&g, "{\"v\":1}", 7, err, sizeof err), PGW_EINVAL);
    assert_int_equal(fsm_state_load(&g, "nope", 4, err, sizeof err), PGW_EINVAL);
    assert_true(g.st.pause);
    fsm_close(&g);
    free(dump);
    free(dump2);
}

/* pre_promote refusals: a release with the refused flag counts against the
 * member, is timed on this node's clock for the back-off, survives a
 * snapshot, and stays compatible on the wire both ways. */
static const struct fsm_result *release(struct fsm *f, const char *member, uint64_t epoch,
                                        bool refused)
{
    struct fsm_cmd c;
    char rid[32];
    snprintf(rid, sizeof rid, "rel-%d", ++rid_seq);
    fsm_cmd_init(&c, FSM_OP_PRIMARY_RELEASE, rid);
    snprintf(c.member, sizeof c.member, "%s", member);
    c.epoch = epoch;
    snprintf(c.u.release.reason, sizeof c.u.release.reason, "pre_promote failed: exit 3");
    c.u.release.promote_refused = refused;
    return apply(f, &c);
}

static void test_promote_refused(void **state)
{
    struct fsm *f = *state;
    bootstrap_cluster(f);
    const uint64_t ttl = 3000;
    /* the wire form: "refused" only when set */
    struct fsm_cmd c;
    fsm_cmd_init(&c, FSM_OP_PRIMARY_RELEASE, "enc-1");
    snprintf(c.member, sizeof c.member, "n2");
    c.epoch = 2;
    c.u.release.promote_refused = true;
    char *buf;
    size_t len;
    char err[256];
    assert_int_equal(fsm_cmd_encode(&c, &buf, &len, err, sizeof err), 0);
    assert_non_null(memmem(buf, len, "\"refused\":true", 14));
    struct fsm_cmd back;
    assert_int_equal(fsm_cmd_decode(buf, len, &back, err, sizeof err), 0);
    assert_true(back.u.release.promote_refused);
    raft_free(buf);
    c.u.release.promote_refused = false;
    assert_int_equal(fsm_cmd_encode(&c, &buf, &len, err, sizeof err), 0);
    assert_null(memmem(buf, len, "refused", 7));
    raft_free(buf);
    const char *bad = "{\"v\":1,\"op\":\"primary_release\",\"rid\":\"x\",\"member\":\"n2\","
                      "\"epoch\":2,\"refused\":\"yes\"}";
    assert_int_equal(fsm_cmd_decode(bad, strlen(bad), &back, err, sizeof err), PGW_EINVAL);
    assert_non_null(strstr(err, "refused: expected true or false"));

    /* n2 is assigned, refuses: the role is vacant, n2 counted and timed */
    assert_int_equal(assign(f, "n2", 1, FSM_ASSIGN_PROMOTE)->status, 0);
    assert_int_equal(f->st.primary.epoch, 2);
    fake_now = 5000;
    assert_int_equal(release(f, "n2", 2, true)->status, 0);
    assert_int_equal(f->st.primary.state, FSM_PRIMARY_NONE);
    assert_non_null(strstr(f->st.primary.reason, "released by n2: pre_promote failed: exit 3"));
    const struct fsm_member *n2 = fsm_member_find(&f->st, "n2");
    assert_int_equal(n2->promote_refusals, 1);
    assert_int_equal(n2->refused_epoch, 2);
    assert_int_equal(n2->local_refused_ms, 5000);
    assert_true(fsm_member_refused_recently(n2, 5000, ttl));
    assert_true(fsm_member_refused_recently(n2, 5000 + ttl - 1, ttl));
    assert_false(fsm_member_refused_recently(n2, 5000 + ttl, ttl));
    assert_false(fsm_member_refused_recently(fsm_member_find(&f->st, "n1"), 5000, ttl));
    /* a stale refusal changes nothing */
    assert_int_equal(release(f, "n2", 1, true)->status, PGW_ECONFLICT);
    assert_int_equal(fsm_member_find(&f->st, "n2")->promote_refusals, 1);

    /* the snapshot keeps the count; the restoring node times the back-off
     * from the restore while the role n2 refused is still vacant */
    char *dump = fsm_state_dump(&f->st);
    assert_non_null(strstr(dump, "\"promote_refusals\":1"));
    assert_non_null(strstr(dump, "\"refused_epoch\":2"));
    struct fsm g;
    fsm_init(&g, &fake);
    fake_now = 9000;
    assert_int_equal(fsm_state_load(&g, dump, strlen(dump), err, sizeof err), 0);
    const struct fsm_member *g2 = fsm_member_find(&g.st, "n2");
    assert_int_equal(g2->promote_refusals, 1);
    assert_int_equal(g2->local_refused_ms, 9000);
    assert_true(fsm_member_refused_recently(g2, 9000 + ttl - 1, ttl));
    assert_int_equal(fsm_member_find(&g.st, "n1")->local_refused_ms, 0);
    char *dump2 = fsm_state_dump(&g.st);
    assert_string_equal(dump, dump2);
    free(dump2);
    fsm_close(&g);
    free(dump);

    /* a plain release (shutdown, no data) is no refusal */
    assert_int_equal(assign(f, "n1", 2, FSM_ASSIGN_PROMOTE)->status, 0);
    assert_int_equal(release(f, "n1", 3, false)->status, 0);
    assert_int_equal(fsm_member_find(&f->st, "n1")->promote_refusals, 0);
    assert_int_equal(fsm_member_find(&f->st, "n1")->local_refused_ms, 0);
    /* once someone else took the role, a restore does not back n2 off */
    dump = fsm_state_dump(&f->st);
    fsm_init(&g, &fake);
    assert_int_equal(fsm_state_load(&g, dump, strlen(dump), err, sizeof err), 0);
    assert_int_equal(fsm_member_find(&g.st, "n2")->promote_refusals, 1);
    assert_int_equal(fsm_member_find(&g.st, "n2")->local_refused_ms, 0);
    fsm_close(&g);
    free(dump);
    /* an entry from an older node (no field) is a plain release */
    assert_int_equal(assign(f, "n2", 3, FSM_ASSIGN_PROMOTE)->status, 0);
    assert_int_equal(apply_text(f, "{\"v\":1,\"op\":\"primary_release\",\"rid\":\"old-1\",\"member\":"
                                   "\"n2\",\"epoch\":4,\"reason\":\"x\"}")->status, 0);
    assert_int_equal(f->st.primary.state, FSM_PRIMARY_NONE);
    assert_int_equal(fsm_member_find(&f->st, "n2")->promote_refusals, 1);
}

/* The former primary a pre_promote (STONITH) hook is told about: the member
 * that last reached RUNNING, and the previous epoch's holder unless it
 * refused its promotion; both survive a snapshot, and an older snapshot
 * without them loads with "" (unknown). */
static void test_former_primary(void **state)
{
    struct fsm *f = *state;
    reg(f, "n1", 1, false);
    reg(f, "n2", 2, false);
    reg(f, "n3", 3, false);
    assert_int_equal(assign(f, "n1", 0, FSM_ASSIGN_BOOTSTRAP)->status, 0);
    assert_string_equal(f->st.primary.former, "");
    assert_string_equal(f->st.primary.previous, "");
    assert_int_equal(simple(f, FSM_OP_CLUSTER_INIT, "n1", 0)->status, 0);
    assert_int_equal(simple(f, FSM_OP_PRIMARY_RUNNING, "n1", 1)->status, 0);
    assert_string_equal(f->st.primary.former, "n1");
    /* n1 is lost: n2 is told n1 held it and ran */
    assert_int_equal(assign(f, "n2", 1, FSM_ASSIGN_PROMOTE)->status, 0);
    assert_string_equal(f->st.primary.member, "n2");
    assert_string_equal(f->st.primary.former, "n1");
    assert_string_equal(f->st.primary.previous, "n1");
    /* n2 refuses (its fencing failed): n3 is still told n1, not n2 */
    assert_int_equal(release(f, "n2", 2, true)->status, 0);
    assert_int_equal(assign(f, "n3", 2, FSM_ASSIGN_PROMOTE)->status, 0);
    assert_string_equal(f->st.primary.former, "n1");
    assert_string_equal(f->st.primary.previous, "n1");
    /* n3 is lost before it confirmed running: it may have promoted, so the
     * next holder is told both n1 (last confirmed) and n3 */
    assert_int_equal(assign(f, "n2", 3, FSM_ASSIGN_PROMOTE)->status, 0);
    assert_string_equal(f->st.primary.former, "n1");
    assert_string_equal(f->st.primary.previous, "n3");
    struct fsm_cmd c;
    fsm_cmd_init(&c, FSM_OP_PRIMARY_RUNNING, "run-n2");
    snprintf(c.member, sizeof c.member, "n2");
    c.epoch = 4;
    c.u.running.timeline = 2;
    assert_int_equal(apply(f, &c)->status, 0);
    assert_string_equal(f->st.primary.former, "n2");
    /* the snapshot keeps both */
    char *dump = fsm_state_dump(&f->st);
    assert_non_null(strstr(dump, "\"former\":\"n2\""));
    assert_non_null(strstr(dump, "\"previous\":\"n3\""));
    struct fsm g;
    char err[256];
    fsm_init(&g, &fake);
    assert_int_equal(fsm_state_load(&g, dump, strlen(dump), err, sizeof err), 0);
    assert_string_equal(g.st.primary.former, "n2");
    assert_string_equal(g.st.primary.previous, "n3");
    fsm_close(&g);
    free(dump);
}

/* A snapshot written before refusals existed (no such fields) loads. */
static void test_snapshot_without_refusal_fields(void **state)
{
    struct fsm *f = *state;
    bootstrap_cluster(f);
    char *dump = fsm_state_dump(&f->st);
    assert_null(strstr(dump, "promote_refusals"));
    assert_null(strstr(dump, "refused_epoch"));
    assert_null(strstr(dump, "\"previous\"")); /* bootstrap: no previous holder */
    struct fsm g;
    fsm_init(&g, &fake);
    char err[256];
    assert_int_equal(fsm_state_load(&g, dump, strlen(dump), err, sizeof err), 0);
    assert_int_equal(fsm_member_find(&g.st, "n2")->promote_refusals, 0);
    fsm_close(&g);
    free(dump);
}

/* backup_done (level 3): the last FSM_BACKUPS_MAX results, newest last,
 * kept in snapshots (and absent from them when there is none); a bad type
 * or an unknown member is refused. */
static void test_backup_records(void **state)
{
    struct fsm *f = *state;
    bootstrap_cluster(f);
    char *empty = fsm_state_dump(&f->st);
    assert_null(strstr(empty, "backups"));
    free(empty);
    struct fsm_cmd c;
    for (int i = 0; i < FSM_BACKUPS_MAX + 3; i++) {
        char rid[32];
        snprintf(rid, sizeof rid, "bk-%d", i);
        fsm_cmd_init(&c, FSM_OP_BACKUP_DONE, rid);
        snprintf(c.member, sizeof c.member, "n1");
        snprintf(c.u.backup.type, sizeof c.u.backup.type, "%s", i == 0 ? "full" : "diff");
        snprintf(c.u.backup.label, sizeof c.u.backup.label, "L%d", i);
        c.u.backup.ok = i % 2 == 0;
        c.u.backup.started_wall_ms = 1000u * (unsigned)i;
        c.u.backup.ended_wall_ms = 1000u * (unsigned)i + 500;
        snprintf(c.u.backup.result, sizeof c.u.backup.result, "result %d", i);
        assert_int_equal(apply(f, &c)->status, 0);
    }
    assert_int_equal(f->st.n_backups, FSM_BACKUPS_MAX);
    assert_string_equal(f->st.backups[0].label, "L3");
    assert_string_equal(f->st.backups[FSM_BACKUPS_MAX - 1].label, "L18");
    assert_true(f->st.backups[FSM_BACKUPS_MAX - 1].ok);
    fsm_cmd_init(&c, FSM_OP_BACKUP_DONE, "bk-ghost");
    snprintf(c.member, sizeof c.member, "ghost");
    snprintf(c.u.backup.type, sizeof c.u.backup.type, "full");
    assert_int_equal(apply(f, &c)->status, PGW_ENOTFOUND);
    assert_int_equal(apply_text(f, "{\"v\":1,\"op\":\"backup_done\",\"rid\":\"bk-x\","
                                   "\"member\":\"n1\",\"type\":\"weekly\","
                                   "\"started_wall_ms\":1,\"ended_wall_ms\":2}")->status,
                     PGW_EINVAL);
    assert_int_equal(f->st.n_backups, FSM_BACKUPS_MAX);
    char *dump = fsm_state_dump(&f->st);
    struct fsm g;
    fsm_init(&g, &fake);
    char err[256];
    assert_int_equal(fsm_state_load(&g, dump, strlen(dump), err, sizeof err), 0);
    char *dump2 = fsm_state_dump(&g.st);
    assert_string_equal(dump, dump2);
    assert_string_equal(g.st.backups[0].result, "result 3");
    fsm_close(&g);
    free(dump);
    free(dump2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_register_and_bootstrap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_witness_never_assigned, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lease_and_stale_epoch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idempotent_request_id, setup, teardown),
        cmocka_unit_test_setup_teardown(test_switchover_sequence, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed_entries_are_noops, setup, teardown),
        cmocka_unit_test_setup_teardown(test_renewal_records_the_holders_ttl, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stale_decisions_are_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cluster_level_is_the_lowest_registered, setup, teardown),
        cmocka_unit_test_setup_teardown(test_snapshot_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_promote_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_snapshot_without_refusal_fields, setup, teardown),
        cmocka_unit_test_setup_teardown(test_backup_records, setup, teardown),
        cmocka_unit_test_setup_teardown(test_former_primary, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
