/* Snapshot form of the replicated state: canonical JSON (sorted keys,
 * compact), so dump(load(dump(s))) == dump(s) byte for byte. */
#include "raft/fsm.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void put_str(json_t *o, const char *k, const char *v)
{
    json_object_set_new(o, k, json_string(v));
}

static void put_u64(json_t *o, const char *k, uint64_t v)
{
    json_object_set_new(o, k, json_integer((json_int_t)v));
}

static json_t *report_json(const struct fsm_report *r)
{
    json_t *o = json_object();
    put_str(o, "role", r->role);
    put_str(o, "state", r->state);
    put_str(o, "repl_state", r->repl_state);
    put_u64(o, "timeline", r->timeline);
    put_u64(o, "lsn", r->lsn);
    put_u64(o, "receive_lsn", r->receive_lsn);
    put_u64(o, "replay_lsn", r->replay_lsn);
    json_object_set_new(o, "pending_restart", json_boolean(r->pending_restart));
    json_object_set_new(o, "server_version", json_integer(r->server_version));
    put_str(o, "sysid", r->sysid);
    put_str(o, "reason", r->reason);
    return o;
}

char *fsm_state_dump(const struct fsm_state *st)
{
    json_t *root = json_object();
    put_u64(root, "v", FSM_SNAPSHOT_VERSION);
    put_str(root, "sysid", st->sysid);
    json_object_set(root, "config", st->config != NULL ? st->config : json_null());
    put_u64(root, "config_version", st->config_version);
    json_object_set_new(root, "pause", json_boolean(st->pause));
    put_u64(root, "applied_index", st->applied_index);

    const struct fsm_primary *p = &st->primary;
    json_t *pj = json_object();
    put_str(pj, "member", p->member);
    put_u64(pj, "epoch", p->epoch);
    put_u64(pj, "state", p->state);
    put_u64(pj, "timeline", p->timeline);
    put_u64(pj, "lsn", p->lsn);
    put_str(pj, "target", p->target);
    put_u64(pj, "final_lsn", p->final_lsn);
    put_str(pj, "reason", p->reason);
    put_u64(pj, "renewals", p->renewals);
    if (p->lease_ttl_ms != 0)
        put_u64(pj, "lease_ttl_ms", p->lease_ttl_ms);
    if (p->former[0] != '\0')
        put_str(pj, "former", p->former);
    if (p->previous[0] != '\0')
        put_str(pj, "previous", p->previous);
    json_object_set_new(root, "primary", pj);

    json_t *ms = json_array();
    for (unsigned i = 0; i < st->n_members; i++) {
        const struct fsm_member *m = &st->members[i];
        json_t *mj = json_object();
        put_str(mj, "name", m->name);
        put_u64(mj, "raft_id", m->raft_id);
        put_str(mj, "raft_addr", m->raft_addr);
        put_str(mj, "api_url", m->api_url);
        put_str(mj, "conn_host", m->conn_host);
        put_u64(mj, "conn_port", m->conn_port);
        json_object_set_new(mj, "witness", json_boolean(m->witness));
        json_object_set(mj, "tags", m->tags);
        json_object_set_new(mj, "reported", json_boolean(m->reported));
        json_object_set_new(mj, "report", report_json(&m->report));
        put_u64(mj, "report_index", m->report_index);
        /* only when set: a snapshot of a cluster where nobody ever refused
         * stays what older versions wrote and read */
        if (m->promote_refusals != 0)
            put_u64(mj, "promote_refusals", m->promote_refusals);
        if (m->level != 0)
            put_u64(mj, "level", m->level);
        if (m->refused_epoch != 0)
            put_u64(mj, "refused_epoch", m->refused_epoch);
        json_array_append_new(ms, mj);
    }
    json_object_set_new(root, "members", ms);

    const struct fsm_switchover *sw = &st->sw;
    json_t *swj = json_object();
    json_object_set_new(swj, "pending", json_boolean(sw->pending));
    json_object_set_new(swj, "failover", json_boolean(sw->failover));
    put_str(swj, "from", sw->from);
    put_str(swj, "to", sw->to);
    put_u64(swj, "scheduled_wall_ms", sw->scheduled_wall_ms);
    json_object_set_new(swj, "allow_data_loss", json_boolean(sw->allow_data_loss));
    put_u64(swj, "requested_wall_ms", sw->requested_wall_ms);
    json_object_set_new(root, "switchover", swj);

    json_t *sy = json_array();
    for (unsigned i = 0; i < st->n_sync; i++)
        json_array_append_new(sy, json_string(st->sync[i]));
    json_object_set_new(root, "sync", sy);
    put_u64(root, "sync_epoch", st->sync_epoch);
    put_u64(root, "sync_count", st->sync_count);
    if (st->sync_version != 0)
        put_u64(root, "sync_version", st->sync_version);
    json_object_set_new(root, "sync_quorum", json_boolean(st->sync_quorum));

    json_t *hs = json_array();
    for (unsigned i = 0; i < st->n_history; i++) {
        const struct fsm_history_entry *h = &st->history[i];
        json_t *hj = json_object();
        put_u64(hj, "timeline", h->timeline);
        put_u64(hj, "lsn", h->lsn);
        put_str(hj, "reason", h->reason);
        put_u64(hj, "wall_ms", h->wall_ms);
        put_str(hj, "new_leader", h->new_leader);
        json_array_append_new(hs, hj);
    }
    json_object_set_new(root, "history", hs);
    if (st->n_backups > 0) { /* absent when none: older snapshots stay byte-identical */
        json_t *bs = json_array();
        for (unsigned i = 0; i < st->n_backups; i++) {
            const struct fsm_backup_rec *b = &st->backups[i];
            json_t *bj = json_object();
            put_str(bj, "member", b->member);
            put_str(bj, "type", b->type);
            put_str(bj, "label", b->label);
            json_object_set_new(bj, "ok", json_boolean(b->ok));
            put_u64(bj, "started_wall_ms", b->started_wall_ms);
            put_u64(bj, "ended_wall_ms", b->ended_wall_ms);
            put_str(bj, "result", b->result);
            json_array_append_new(bs, bj);
        }
        json_object_set_new(root, "backups", bs);
    }

    /* Request ids oldest first, so the ring is rebuilt in the same order. */
    json_t *rs = json_array();
    unsigned start = st->n_rids < FSM_RID_WINDOW ? 0 : st->rid_next;
    for (unsigned k = 0; k < st->n_rids; k++) {
        const struct fsm_rid *r = &st->rids[(start + k) % FSM_RID_WINDOW];
        json_t *rj = json_array();
        json_array_append_new(rj, json_string(r->rid));
        json_array_append_new(rj, json_integer(r->status));
        json_array_append_new(rs, rj);
    }
    json_object_set_new(root, "rids", rs);

    char *text = json_dumps(root, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(root);
    return text;
}

/* --- load -------------------------------------------------------------- */

struct ld {
    char *err;
    size_t errlen;
    int rc;
};

static void lfail(struct ld *l, const char *what, const char *key)
{
    if (l->rc == 0)
        snprintf(l->err, l->errlen, "snapshot: %s: %s", key, what);
    l->rc = PGW_EINVAL;
}

static void ld_str(struct ld *l, const json_t *o, const char *k, char *dst, size_t cap)
{
    const json_t *v = json_object_get(o, k);
    if (!json_is_string(v) || json_string_length(v) >= cap) {
        lfail(l, "expected a string that fits", k);
        dst[0] = '\0';
        return;
    }
    memcpy(dst, json_string_value(v), json_string_length(v) + 1);
}

static uint64_t ld_u64(struct ld *l, const json_t *o, const char *k)
{
    const json_t *v = json_object_get(o, k);
    if (!json_is_integer(v) || json_integer_value(v) < 0) {
        lfail(l, "expected a non-negative integer", k);
        return 0;
    }
    return (uint64_t)json_integer_value(v);
}

/* A non-negative integer at most `max`: a corrupt snapshot must not load as
 * a different state through a narrowing cast. */
static uint64_t ld_uint(struct ld *l, const json_t *o, const char *k, uint64_t max)
{
    uint64_t v = ld_u64(l, o, k);
    if (v > max) {
        lfail(l, "out of range", k);
        return 0;
    }
    return v;
}

static bool ld_bool(struct ld *l, const json_t *o, const char *k)
{
    const json_t *v = json_object_get(o, k);
    if (!json_is_boolean(v)) {
        lfail(l, "expected a boolean", k);
        return false;
    }
    return json_is_true(v);
}

static void ld_report(struct ld *l, const json_t *o, struct fsm_report *r)
{
    if (!json_is_object(o)) {
        lfail(l, "expected an object", "report");
        return;
    }
    ld_str(l, o, "role", r->role, sizeof r->role);
    ld_str(l, o, "state", r->state, sizeof r->state);
    ld_str(l, o, "repl_state", r->repl_state, sizeof r->repl_state);
    r->timeline = (uint32_t)ld_uint(l, o, "timeline", UINT32_MAX);
    r->lsn = ld_u64(l, o, "lsn");
    r->receive_lsn = ld_u64(l, o, "receive_lsn");
    r->replay_lsn = ld_u64(l, o, "replay_lsn");
    r->pending_restart = ld_bool(l, o, "pending_restart");
    r->server_version = (int)ld_uint(l, o, "server_version", 9999999);
    ld_str(l, o, "sysid", r->sysid, sizeof r->sysid);
    ld_str(l, o, "reason", r->reason, sizeof r->reason);
}

static void free_state(struct fsm_state *st)
{
    for (unsigned i = 0; i < st->n_members; i++)
        if (st->members[i].tags != NULL)
            json_decref(st->members[i].tags);
    if (st->config != NULL)
        json_decref(st->config);
}

static void ld_state(struct ld *l, const json_t *root, struct fsm_state *st)
{
    if (ld_u64(l, root, "v") != FSM_SNAPSHOT_VERSION) {
        lfail(l, "unsupported snapshot version", "v");
        return;
    }
    ld_str(l, root, "sysid", st->sysid, sizeof st->sysid);
    const json_t *cfg = json_object_get(root, "config");
    if (json_is_object(cfg))
        st->config = json_deep_copy(cfg);
    else if (!json_is_null(cfg))
        lfail(l, "expected an object or null", "config");
    st->config_version = ld_u64(l, root, "config_version");
    st->pause = ld_bool(l, root, "pause");
    st->applied_index = ld_u64(l, root, "applied_index");

    const json_t *pj = json_object_get(root, "primary");
    if (!json_is_object(pj)) {
        lfail(l, "expected an object", "primary");
        return;
    }
    struct fsm_primary *p = &st->primary;
    ld_str(l, pj, "member", p->member, sizeof p->member);
    p->epoch = ld_u64(l, pj, "epoch");
    uint64_t state = ld_u64(l, pj, "state");
    if (state > FSM_PRIMARY_STOPPED)
        lfail(l, "unknown primary state", "primary.state");
    p->state = (enum fsm_primary_state)state;
    p->timeline = (uint32_t)ld_uint(l, pj, "timeline", UINT32_MAX);
    p->lsn = ld_u64(l, pj, "lsn");
    ld_str(l, pj, "target", p->target, sizeof p->target);
    p->final_lsn = ld_u64(l, pj, "final_lsn");
    ld_str(l, pj, "reason", p->reason, sizeof p->reason);
    p->renewals = ld_u64(l, pj, "renewals");
    if (json_object_get(pj, "lease_ttl_ms") != NULL)
        p->lease_ttl_ms = (uint32_t)ld_uint(l, pj, "lease_ttl_ms", UINT32_MAX);
    if (json_object_get(pj, "former") != NULL)
        ld_str(l, pj, "former", p->former, sizeof p->former);
    if (json_object_get(pj, "previous") != NULL)
        ld_str(l, pj, "previous", p->previous, sizeof p->previous);

    const json_t *ms = json_object_get(root, "members");
    if (!json_is_array(ms) || json_array_size(ms) > FSM_MAX_MEMBERS) {
        lfail(l, "expected an array of at most 32 members", "members");
        return;
    }
    size_t i;
    const json_t *mj;
    json_array_foreach(ms, i, mj) {
        struct fsm_member *m = &st->members[st->n_members++];
        if (!json_is_object(mj)) {
            lfail(l, "expected an object", "members[]");
            return;
        }
        ld_str(l, mj, "name", m->name, sizeof m->name);
        m->raft_id = ld_u64(l, mj, "raft_id");
        ld_str(l, mj, "raft_addr", m->raft_addr, sizeof m->raft_addr);
        ld_str(l, mj, "api_url", m->api_url, sizeof m->api_url);
        ld_str(l, mj, "conn_host", m->conn_host, sizeof m->conn_host);
        m->conn_port = (uint16_t)ld_uint(l, mj, "conn_port", 65535);
        m->witness = ld_bool(l, mj, "witness");
        const json_t *tags = json_object_get(mj, "tags");
        if (!json_is_object(tags)) {
            lfail(l, "expected an object", "members[].tags");
            m->tags = json_object();
        } else {
            m->tags = json_deep_copy(tags);
        }
        m->reported = ld_bool(l, mj, "reported");
        ld_report(l, json_object_get(mj, "report"), &m->report);
        m->report_index = ld_u64(l, mj, "report_index");
        if (json_object_get(mj, "promote_refusals") != NULL)
            m->promote_refusals = ld_u64(l, mj, "promote_refusals");
        if (json_object_get(mj, "level") != NULL)
            m->level = (uint32_t)ld_uint(l, mj, "level", UINT32_MAX);
        if (json_object_get(mj, "refused_epoch") != NULL)
            m->refused_epoch = ld_u64(l, mj, "refused_epoch");
    }

    const json_t *swj = json_object_get(root, "switchover");
    if (!json_is_object(swj)) {
        lfail(l, "expected an object", "switchover");
        return;
    }
    st->sw.pending = ld_bool(l, swj, "pending");
    st->sw.failover = ld_bool(l, swj, "failover");
    ld_str(l, swj, "from", st->sw.from, sizeof st->sw.from);
    ld_str(l, swj, "to", st->sw.to, sizeof st->sw.to);
    st->sw.scheduled_wall_ms = ld_u64(l, swj, "scheduled_wall_ms");
    st->sw.allow_data_loss = ld_bool(l, swj, "allow_data_loss");
    st->sw.requested_wall_ms = ld_u64(l, swj, "requested_wall_ms");

    const json_t *sy = json_object_get(root, "sync");
    if (!json_is_array(sy) || json_array_size(sy) > FSM_MAX_SYNC) {
        lfail(l, "expected an array", "sync");
        return;
    }
    const json_t *v;
    json_array_foreach(sy, i, v) {
        if (!json_is_string(v) || !fsm_name_valid(json_string_value(v))) {
            lfail(l, "expected member names", "sync");
            return;
        }
        snprintf(st->sync[st->n_sync++], FSM_NAME_MAX, "%s", json_string_value(v));
    }
    st->sync_epoch = ld_u64(l, root, "sync_epoch");
    st->sync_count = (unsigned)ld_uint(l, root, "sync_count", FSM_MAX_SYNC);
    if (json_object_get(root, "sync_version") != NULL)
        st->sync_version = ld_u64(l, root, "sync_version");
    st->sync_quorum = ld_bool(l, root, "sync_quorum");

    const json_t *hs = json_object_get(root, "history");
    if (!json_is_array(hs) || json_array_size(hs) > FSM_HISTORY_MAX) {
        lfail(l, "expected an array", "history");
        return;
    }
    json_array_foreach(hs, i, v) {
        struct fsm_history_entry *h = &st->history[st->n_history++];
        if (!json_is_object(v)) {
            lfail(l, "expected an object", "history[]");
            return;
        }
        h->timeline = (uint32_t)ld_uint(l, v, "timeline", UINT32_MAX);
        h->lsn = ld_u64(l, v, "lsn");
        ld_str(l, v, "reason", h->reason, sizeof h->reason);
        h->wall_ms = ld_u64(l, v, "wall_ms");
        ld_str(l, v, "new_leader", h->new_leader, sizeof h->new_leader);
    }

    const json_t *bs = json_object_get(root, "backups");
    if (bs != NULL && (!json_is_array(bs) || json_array_size(bs) > FSM_BACKUPS_MAX)) {
        lfail(l, "expected an array", "backups");
        return;
    }
    json_array_foreach(bs, i, v) {
        struct fsm_backup_rec *b = &st->backups[st->n_backups++];
        if (!json_is_object(v)) {
            lfail(l, "expected an object", "backups[]");
            return;
        }
        ld_str(l, v, "member", b->member, sizeof b->member);
        ld_str(l, v, "type", b->type, sizeof b->type);
        ld_str(l, v, "label", b->label, sizeof b->label);
        b->ok = ld_bool(l, v, "ok");
        b->started_wall_ms = ld_u64(l, v, "started_wall_ms");
        b->ended_wall_ms = ld_u64(l, v, "ended_wall_ms");
        ld_str(l, v, "result", b->result, sizeof b->result);
    }

    const json_t *rs = json_object_get(root, "rids");
    if (!json_is_array(rs) || json_array_size(rs) > FSM_RID_WINDOW) {
        lfail(l, "expected an array", "rids");
        return;
    }
    json_array_foreach(rs, i, v) {
        const json_t *id = json_array_get(v, 0), *status = json_array_get(v, 1);
        if (!json_is_string(id) || json_string_length(id) >= FSM_RID_MAX || !json_is_integer(status) ||
            json_integer_value(status) < INT_MIN || json_integer_value(status) > INT_MAX) {
            lfail(l, "expected [rid, status] pairs", "rids");
            return;
        }
        struct fsm_rid *r = &st->rids[st->n_rids++];
        snprintf(r->rid, sizeof r->rid, "%s", json_string_value(id));
        r->status = (int)json_integer_value(status);
    }
    st->rid_next = st->n_rids % FSM_RID_WINDOW;
}

int fsm_state_load(struct fsm *f, const char *text, size_t len, char *err, size_t errlen)
{
    json_error_t jerr;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        snprintf(err, errlen, "snapshot: malformed JSON: %s", jerr.text);
        return PGW_EINVAL;
    }
    struct fsm_state *st = calloc(1, sizeof *st);
    if (st == NULL) {
        json_decref(root);
        return PGW_ENOMEM;
    }
    struct ld l = {err, errlen, 0};
    if (!json_is_object(root))
        lfail(&l, "expected an object", "snapshot");
    else
        ld_state(&l, root, st);
    json_decref(root);
    if (l.rc != 0) {
        free_state(st);
        free(st);
        return l.rc;
    }
    free_state(&f->st);
    f->st = *st;
    free(st);
    /* A snapshot does not say when a refusal happened. While the role it
     * refused is still vacant, count the back-off from now: longer, never
     * shorter. */
    const struct fsm_primary *p = &f->st.primary;
    for (unsigned i = 0; i < f->st.n_members; i++) {
        struct fsm_member *m = &f->st.members[i];
        if (m->refused_epoch != 0 && m->refused_epoch == p->epoch && p->state == FSM_PRIMARY_NONE &&
            strcmp(p->member, m->name) == 0)
            m->local_refused_ms = clock_now(f->clock);
    }
    return PGW_OK;
}
