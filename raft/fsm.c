/* Applying commands to the replicated cluster state. Each op is one small
 * function; a refused command changes nothing and says why. */
#include "raft/fsm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cfg.h"
#include "common/log.h"

static const char *const primary_state_names[] = {
    [FSM_PRIMARY_NONE] = "none",
    [FSM_PRIMARY_BOOTSTRAPPING] = "bootstrapping",
    [FSM_PRIMARY_PROMOTING] = "promoting",
    [FSM_PRIMARY_RUNNING] = "running",
    [FSM_PRIMARY_DEMOTING] = "demoting",
    [FSM_PRIMARY_STOPPED] = "stopped",
};

const char *fsm_primary_state_name(enum fsm_primary_state s)
{
    if ((unsigned)s >= sizeof primary_state_names / sizeof primary_state_names[0])
        return "?";
    return primary_state_names[s];
}

static int refuse(struct fsm_result *r, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int refuse(struct fsm_result *r, int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->msg, sizeof r->msg, fmt, ap);
    va_end(ap);
    r->status = status;
    return status;
}

static uint64_t now_ms(const struct fsm *f)
{
    return clock_now(f->clock);
}

/* --- members --------------------------------------------------------- */

uint32_t fsm_cluster_level(const struct fsm_state *st)
{
    uint32_t lvl = UINT32_MAX;
    for (unsigned i = 0; i < st->n_members; i++)
        if (st->members[i].level < lvl)
            lvl = st->members[i].level;
    return st->n_members ? lvl : 0;
}

const struct fsm_member *fsm_member_find(const struct fsm_state *st, const char *name)
{
    for (unsigned i = 0; i < st->n_members; i++)
        if (strcmp(st->members[i].name, name) == 0)
            return &st->members[i];
    return NULL;
}

const struct fsm_member *fsm_member_by_raft_id(const struct fsm_state *st, uint64_t id)
{
    for (unsigned i = 0; i < st->n_members; i++)
        if (st->members[i].raft_id == id)
            return &st->members[i];
    return NULL;
}

static struct fsm_member *member_find_mut(struct fsm_state *st, const char *name)
{
    return (struct fsm_member *)fsm_member_find(st, name);
}

unsigned fsm_sync_size(const struct fsm_state *st)
{
    return st->sync_epoch == st->primary.epoch ? st->n_sync : 0;
}

bool fsm_in_sync_set(const struct fsm_state *st, const char *name)
{
    if (st->sync_epoch != st->primary.epoch)
        return false;
    for (unsigned i = 0; i < st->n_sync; i++)
        if (strcmp(st->sync[i], name) == 0)
            return true;
    return false;
}

bool fsm_member_tag_bool(const struct fsm_member *m, const char *tag)
{
    const json_t *v = json_object_get(m->tags, tag);
    if (json_is_boolean(v))
        return json_is_true(v);
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        return strcmp(s, "true") == 0 || strcmp(s, "on") == 0 || strcmp(s, "yes") == 0;
    }
    return false;
}

int fsm_member_failover_priority(const struct fsm_member *m)
{
    const json_t *v = json_object_get(m->tags, "failover_priority");
    if (json_is_integer(v))
        return (int)json_integer_value(v);
    return 1;
}

bool fsm_member_refused_recently(const struct fsm_member *m, uint64_t now, uint64_t window_ms)
{
    return m->local_refused_ms != 0 && now >= m->local_refused_ms &&
           now - m->local_refused_ms < window_ms;
}

bool fsm_member_nofailover(const struct fsm_member *m)
{
    return m->witness || fsm_member_tag_bool(m, "nofailover") || fsm_member_failover_priority(m) <= 0;
}

static void member_clear(struct fsm_member *m)
{
    if (m->tags != NULL)
        json_decref(m->tags);
    memset(m, 0, sizeof *m);
}

static int op_member_register(struct fsm *f, const struct fsm_cmd *c, struct fsm_result *r)
{
    struct fsm_state *st = &f->st;
    for (unsigned i = 0; i < st->n_members; i++) {
        const struct fsm_member *o = &st->members[i];
        if (strcmp(o->name, c->member) == 0)
            continue;
        if (strcmp(o->raft_addr, c->u.reg.raft_addr) == 0)
            return refuse(r, PGW_ECONFLICT, "raft address %s already belongs to member %s",
                          c->u.reg.raft_addr, o->name);
        if (o->raft_id == c->u.reg.raft_id)
            return refuse(r, PGW_ECONFLICT, "raft id %llu already belongs to member %s",
                          (unsigned long long)c->u.reg.raft_id, o->name);
    }
    struct fsm_member *m = member_find_mut(st, c->member);
    if (m == NULL) {
        if (st->n_members == FSM_MAX_MEMBERS)
            return refuse(r, PGW_EBUSY, "cluster already has %d members", FSM_MAX_MEMBERS);
        m = &st->members[st->n_members++];
        memset(m, 0, sizeof *m);
        snprintf(m->name, sizeof m->name, "%s", c->member);
    }
    m->raft_id = c->u.reg.raft_id;
    snprintf(m->raft_addr, sizeof m->raft_addr, "%s", c->u.reg.raft_addr);
    snprintf(m->api_url, sizeof m->api_url, "%s", c->u.reg.api_url);
    snprintf(m->conn_host, sizeof m->conn_host, "%s", c->u.reg.conn_host);
    m->conn_port = c->u.reg.conn_port;
    m->witness = c->u.reg.witness;
    if (m->tags != NULL)
        json_decref(m->tags);
    m->tags = c->u.reg.tags != NULL ? json_deep_copy(c->u.reg.tags) : json_object();
    m->level = c->u.reg.level;
    return 0;
}

static void sync_remove(struct fsm_state *st, const char *name)
{
    unsigned o = 0;
    for (unsigned i = 0; i < st->n_sync; i++)
        if (strcmp(st->sync[i], name) != 0)
            memmove(st->sync[o++], st->sync[i], FSM_NAME_MAX);
    if (o != st->n_sync)
        st->sync_version++;
    st->n_sync = o;
}

static int op_member_remove(struct fsm *f, const struct fsm_cmd *c, struct fsm_result *r)
{
    struct fsm_state *st = &f->st;
    struct fsm_member *m = member_find_mut(st, c->member);
    if (m == NULL)
        return refuse(r, PGW_ENOTFOUND, "no member named %s", c->member);
    if (strcmp(st->primary.member, c->member) == 0 && st->primary.state != FSM_PRIMARY_NONE &&
        st->primary.state != FSM_PRIMARY_STOPPED)
        return refuse(r, PGW_ECONFLICT, "%s holds the primary role; switch over first", c->member);
    member_clear(m);
    unsigned idx = (unsigned)(m - st->members);
    memmove(&st->members[idx], &st->members[idx + 1],
            (st->n_members - idx - 1) * sizeof st->members[0]);
    st->n_members--;
    memset(&st->members[st->n_members], 0, sizeof st->members[0]);
    sync_remove(st, c->member);
    return 0;
}

static int op_member_report(struct fsm *f, const struct fsm_cmd *c, struct fsm_result *r)
{
    struct fsm_member *m = member_find_mut(&f->st, c->member);
    if (m == NULL)
        return refuse(r, PGW_ENOTFOUND, "no member named %s (register first)", c->member);
    m->report = c->u.report;
    m->reported = true;
    m->report_index = r->index;
    m->local_report_ms = now_ms(f);
    return 0;
}

/* --- primary record ---------------------------------------------------- */

static bool holds(const struct fsm_primary *p, const struct fsm_cmd *c)
{
    return strcmp(p->member, c->member) == 0 && p->epoch == c->epoch;
}

static int stale(struct fsm_result *r, const struct fsm_primary *p, const struct fsm_cmd *c)
{
    return refuse(r, PGW_ECONFLICT,
                  "stale %s from %s for epoch %llu: epoch %llu is held by %s (%s)",
                  fsm_op_name(c->op), c->member, (unsigned long long)c->epoch,
                  (unsigned long long)p->epoch, p->member[0] ? p->member : "nobody",
                  fsm_primary_state_name(p->state));
}

static int op_lease_renew(struct fsm *f, const struct fsm_cmd *c, struct fsm_result *r)
{
    struct fsm_primary *p = &f->st.primary;
    if (!holds(p, c) || p->state == FSM_PRIMARY_NONE || p->state == FSM_PRIMARY_STOPPED)
        return stale(r, p, c);
    if (c->u.lease.lsn > p->lsn)
        p->lsn = c->u.lease.lsn;
    /* While promoting, the timeline changes with primary_running, which
     * records the history entry of the switch. */
    if (c->u.lease.timeline > 0 && p->state == FSM_PRIMARY_RUNNING)
        p->timeline = c->u.lease.timeline;
    p->renewals++;
    p->lease_ttl_ms = c->u.lease.ttl_ms > c->u.lease.held_ttl_ms ? c->u.lease.ttl_ms
                                                                  : c->u.lease.held_ttl_ms;
    f->local_lease_ms = now_ms(f);
    return 0;
}

static int op_primary_assign(struct fsm *f, const struct fsm_cmd *c, struct fsm_result *r)
{
    struct fsm_state *st = &f->st;
    struct fsm_primary *p = &st->primary;
    if (c->epoch != p->epoch)
        return refuse(r, PGW_ECONFLICT, "assignment expected epoch %llu but it is %llu",
                      (unsigned long long)c->epoch, (unsigned long long)p->epoch);
    /* A decision is only as good as the view it was made from: a controller
     * that stalled (a former Raft leader whose decision a new leader still
     * commits) must not take the role from a holder that renewed since. */
    if (c->u.assign.if_renewals_set && c->u.assign.if_renewals != p->renewals)
        return refuse(r, PGW_ECONFLICT, "assignment decided when %s had renewed %llu times, "
                      "but it has renewed %llu times since", p->member[0] ? p->member : "the holder",
                      (unsigned long long)c->u.assign.if_renewals,
                      (unsigned long long)p->renewals);
    const struct fsm_member *m = fsm_member_find(st, c->member);
    if (m == NULL)
        return refuse(r, PGW_ENOTFOUND, "no member named %s", c->member);
    if (m->witness)
        return refuse(r, PGW_EREFUSED, "%s is a witness (no PostgreSQL)", c->member);
    if (c->u.assign.mode == FSM_ASSIGN_BOOTSTRAP && st->sysid[0] != '\0')
        return refuse(r, PGW_ECONFLICT, "cluster already initialized (system id %s)", st->sysid);
    if (c->u.assign.mode == FSM_ASSIGN_PROMOTE && st->sysid[0] == '\0')
        return refuse(r, PGW_EUNAVAIL, "cluster not initialized yet: nothing to promote");
    uint32_t tl = p->timeline;
    uint64_t lsn = p->lsn;
    /* what a fencing hook needs to know about the epoch that ends here */
    char former[FSM_NAME_MAX], previous[FSM_NAME_MAX];
    const struct fsm_member *held = p->member[0] != '\0' ? fsm_member_find(st, p->member) : NULL;
    bool refused = held != NULL && p->epoch != 0 && held->refused_epoch == p->epoch;
    snprintf(former, sizeof former, "%s", p->former);
    snprintf(previous, sizeof previous, "%s", refused ? p->previous : p->member);
    memset(p, 0, sizeof *p);
    snprintf(p->former, sizeof p->former, "%s", former);
    snprintf(p->previous, sizeof p->previous, "%s", previous);
    snprintf(p->member, sizeof p->member, "%s", c->member);
    p->epoch = c->epoch + 1;
    p->state = c->u.assign.mode == FSM_ASSIGN_BOOTSTRAP ? FSM_PRIMARY_BOOTSTRAPPING
                                                         : FSM_PRIMARY_PROMOTING;
    p->timeline = tl;
    p->lsn = lsn;
    snprintf(p->reason, sizeof p->reason, "%s", c->u.assign.reason);
    f->local_lease_ms = now_ms(f);
    /* An assignment fulfils (or overtakes) any pending switchover. */
    memset(&st->sw, 0, sizeof st->sw);
    return 0;
}

static void history_append(struct fsm_state *st, uint32_t timeline, uint64_t lsn,
                           const char *reason, uint64_t wall_ms, const char *leader)
{
    if (st->n_history == FSM_HISTORY_MAX) {
        memmove(&st->history[0], &st->history[1], (FSM_HISTORY_MAX - 1) * sizeof st->history[0]);
        st->n_history--;
    }
    struct fsm_history_entry *h = &st->history[st->n_history++];
    memset(h, 0, sizeof *h);
    h->timeline = timeline;
    h->lsn = lsn;
    snprintf(h->reason, sizeof h->reason, "%s", reason);
    h->wall_ms = wall_ms;
    snprintf(h->new_leader, sizeof h->new_leader, "%s", leader);
}

static int op_primary_running(struct fsm *f, const struct fsm_cmd *c, struct fsm_result *r)
{
    struct fsm_primary *p = &f->st.primary;
    if (!holds(p, c))
        return stale(r, p, c);
    if (p->state == FSM_PRIMARY_RUNNING)
        return 0; /* already confirmed: idempotent */
    if (p->state != FSM_PRIMARY_PROMOTING && p->state != FSM_PRIMARY_BOOTSTRAPPING)
        return refuse(r, PGW_ECONFLICT, "%s is %s, not promoting", p->member,
                      fsm_primary_state_name(p->state));
    if (p->timeline > 0 && c->u.running.timeline > p->timeline)
        history_append(&f->st, p->timeline, c->u.running.lsn,
                       p->reason[0] ? p->reason : "promoted", c->u.running.wall_ms, p->member);
    p->state = FSM_PRIMARY_RUNNING;
    snprintf(p->former, sizeof p->former, "%s", p->member);
    p->timeline = c->u.running.timeline;
    if (c->u.running.lsn > p->lsn)
        p->lsn = c->u.running.lsn;
    f->local_lease_ms = now_ms(f);
    return 0;
}

static int op_primary_demote(struct fsm *f, const struct fsm_cmd *c, struct fsm_result *r)
{
    struct fsm_state *st = &f->st;
    struct fsm_primary *p = &st->primary;
    if (!holds(p, c))
        return stale(r, p, c);
    if (p->state != FSM_PRIMARY_RUNNING)
        return refuse(r, PGW_ECONFLICT, "%s is %s, not running", p->member,
                      fsm_primary_state_name(p->state));
    if (c->u.demote.target[0] != '\0') {
        const struct fsm_member *t = fsm_member_find(st, c->u.demote.target);
        if (t == NULL)
            return refuse(r, PGW_ENOTFOUND, "no member named %s", c->u.demote.target);
        if (t->witness)
            return refuse(r, PGW_EREFUSED, "%s is a witness", c->u.demote.target);
    }
    p->state = FSM_PRIMARY_DEMOTING;
    snprintf(p->target, sizeof p->target, "%s", c->u.demote.target);
    snprintf(p->reason, sizeof p->reason, "switchover to %s",
             c->u.demote.target[0] ? c->u.demote.target : "best candidate");
    return 0;
}

static int op_primary_stopped(struct fsm *f, const struct fsm_cmd *c, struct fsm_result *r)
{
    struct fsm_primary *p = &f->st.primary;
    if (!holds(p, c))
        return stale(r, p, c);
    if (p->state == FSM_PRIMARY_STOPPED)
        return 0;
    if (p->state != FSM_PRIMARY_DEMOTING && p->state != FSM_PRIMARY_RUNNING)
        return refuse(r, PGW_ECONFLICT, "%s is %s", p->member, fsm_primary_state_name(p->state));
    p->state = FSM_PRIMARY_STOPPED;
    p->final_lsn = c->u.stopped.final_lsn;
    if (c->u.stopped.final_lsn > p->lsn)
        p->lsn = c->u.stopped.final_lsn;
    if (c->u.stopped.timeline > 0)
        p->timeline = c->u.stopped.timeline;
    return 0;
}

static int op_primary_release(struct fsm *f, const struct fsm_cmd *c, struct fsm_result *r)
{
    struct fsm_primary *p = &f->st.primary;
    if (!holds(p, c))
        return stale(r, p, c);
    p->state = FSM_PRIMARY_NONE;
    snprintf(p->reason, sizeof p->reason, "released by %s: %s", c->member,
             c->u.release.reason[0] ? c->u.release.reason : "no reason given");
    p->target[0] = '\0';
    struct fsm_member *m = member_find_mut(&f->st, c->member);
    if (c->u.release.promote_refused && m != NULL) {
        m->promote_refusals++;
        m->refused_epoch = p->epoch;
        m->local_refused_ms = now_ms(f);
    }
    return 0;
}

static int op_cluster_init(struct fsm *f, const struct fsm_cmd *c, struct fsm_result *r)
{
    struct fsm_state *st = &f->st;
    if (st->sysid[0] != '\0') {
        if (strcmp(st->sysid, c->u.init.sysid) == 0)
            return 0;
        return refuse(r, PGW_ECONFLICT, "cluster already has system id %s, not %s", st->sysid,
                      c->u.init.sysid);
    }
    if (strcmp(st->primary.member, c->member) != 0 ||
        st->primary.state != FSM_PRIMARY_BOOTSTRAPPING)
        return refuse(r, PGW_ECONFLICT, "%s was not assigned to bootstrap the cluster", c->member);
    snprintf(st->sysid, sizeof st->sysid, "%s", c->u.init.sysid);
    return 0;
}

static int op_config_set(struct fsm *f, const struct fsm_cmd *c, struct fsm_result *r)
{
    struct fsm_state *st = &f->st;
    if (c->u.config.expect_version != st->config_version)
        return refuse(r, PGW_ECONFLICT, "configuration changed meanwhile (version %llu, expected %llu)",
                      (unsigned long long)st->config_version,
                      (unsigned long long)c->u.config.expect_version);
    struct cfg_dcs d;
    struct cfg_error err;
    if (cfg_dcs_from_json(c->u.config.config, &d, &err) != 0)
        return refuse(r, PGW_EINVAL, "%s", err.msg);
    cfg_dcs_free(&d);
    if (st->config != NULL)
        json_decref(st->config);
    st->config = json_deep_copy(c->u.config.config);
    st->config_version++;
    return 0;
}

static int op_switchover_set(struct fsm *f, const struct fsm_cmd *c, struct fsm_result *r)
{
    struct fsm_state *st = &f->st;
    if (st->sw.pending)
        return refuse(r, PGW_EBUSY, "a %s is already pending (to %s)",
                      st->sw.failover ? "failover" : "switchover", st->sw.to[0] ? st->sw.to : "any");
    if (c->u.sw.to[0] != '\0') {
        const struct fsm_member *t = fsm_member_find(st, c->u.sw.to);
        if (t == NULL)
            return refuse(r, PGW_ENOTFOUND, "no member named %s", c->u.sw.to);
        if (t->witness)
            return refuse(r, PGW_EREFUSED, "%s is a witness (no PostgreSQL)", c->u.sw.to);
    }
    if (!c->u.sw.failover && strcmp(c->u.sw.from, st->primary.member) != 0)
        return refuse(r, PGW_EREFUSED, "%s is not the primary (%s is)", c->u.sw.from,
                      st->primary.member[0] ? st->primary.member : "nobody");
    st->sw.pending = true;
    st->sw.failover = c->u.sw.failover;
    snprintf(st->sw.from, sizeof st->sw.from, "%s", c->u.sw.from);
    snprintf(st->sw.to, sizeof st->sw.to, "%s", c->u.sw.to);
    st->sw.scheduled_wall_ms = c->u.sw.scheduled_wall_ms;
    st->sw.allow_data_loss = c->u.sw.allow_data_loss;
    st->sw.requested_wall_ms = c->u.sw.requested_wall_ms;
    return 0;
}

static int op_sync_set(struct fsm *f, const struct fsm_cmd *c, struct fsm_result *r)
{
    struct fsm_state *st = &f->st;
    if (c->u.sync.primary_epoch != st->primary.epoch)
        return refuse(r, PGW_ECONFLICT, "sync set for epoch %llu but the primary epoch is %llu",
                      (unsigned long long)c->u.sync.primary_epoch,
                      (unsigned long long)st->primary.epoch);
    if (c->u.sync.if_version_set && c->u.sync.if_version != st->sync_version)
        return refuse(r, PGW_ECONFLICT, "sync set decided at version %llu but it is at %llu",
                      (unsigned long long)c->u.sync.if_version,
                      (unsigned long long)st->sync_version);
    for (unsigned i = 0; i < c->u.sync.n; i++)
        if (fsm_member_find(st, c->u.sync.members[i]) == NULL)
            return refuse(r, PGW_ENOTFOUND, "no member named %s", c->u.sync.members[i]);
    st->sync_version++;
    memcpy(st->sync, c->u.sync.members, sizeof st->sync);
    st->n_sync = c->u.sync.n;
    st->sync_epoch = c->u.sync.primary_epoch;
    st->sync_count = c->u.sync.count;
    st->sync_quorum = c->u.sync.quorum;
    return 0;
}

/* --- request-id window -------------------------------------------------- */

static const struct fsm_rid *rid_find(const struct fsm_state *st, const char *rid)
{
    for (unsigned i = 0; i < st->n_rids; i++)
        if (strcmp(st->rids[i].rid, rid) == 0)
            return &st->rids[i];
    return NULL;
}

static void rid_remember(struct fsm_state *st, const char *rid, int status)
{
    struct fsm_rid *slot = &st->rids[st->rid_next];
    snprintf(slot->rid, sizeof slot->rid, "%s", rid);
    slot->status = status;
    st->rid_next = (st->rid_next + 1) % FSM_RID_WINDOW;
    if (st->n_rids < FSM_RID_WINDOW)
        st->n_rids++;
}

/* --- apply ---------------------------------------------------------------- */

static void op_backup_done(struct fsm *f, const struct fsm_cmd *c, struct fsm_result *r)
{
    struct fsm_state *st = &f->st;
    if (fsm_member_find(st, c->member) == NULL) {
        refuse(r, PGW_ENOTFOUND, "no member %s", c->member);
        return;
    }
    if (st->n_backups == FSM_BACKUPS_MAX) {
        memmove(&st->backups[0], &st->backups[1], sizeof st->backups[0] * (FSM_BACKUPS_MAX - 1));
        st->n_backups--;
    }
    struct fsm_backup_rec *b = &st->backups[st->n_backups++];
    memset(b, 0, sizeof *b);
    snprintf(b->member, sizeof b->member, "%s", c->member);
    snprintf(b->type, sizeof b->type, "%s", c->u.backup.type);
    snprintf(b->label, sizeof b->label, "%s", c->u.backup.label);
    b->ok = c->u.backup.ok;
    b->started_wall_ms = c->u.backup.started_wall_ms;
    b->ended_wall_ms = c->u.backup.ended_wall_ms;
    snprintf(b->result, sizeof b->result, "%s", c->u.backup.result);
}

const struct fsm_result *fsm_apply_buf(struct fsm *f, const void *buf, size_t len, uint64_t index)
{
    struct fsm_result *r = &f->results[index % FSM_RESULT_RING];
    memset(r, 0, sizeof *r);
    r->index = index;
    if (index > f->st.applied_index)
        f->st.applied_index = index;

    struct fsm_cmd c;
    char err[FSM_TEXT_MAX];
    int rc = fsm_cmd_decode(buf, len, &c, err, sizeof err);
    if (rc != 0) {
        /* Cannot happen for entries our own encoder produced; a peer running
         * other code may have sent it. The entry is skipped on every node alike. */
        refuse(r, rc, "%s", err);
        log_warn("fsm", "skipped malformed entry at index %llu: %s", (unsigned long long)index, err);
        if (f->on_change != NULL)
            f->on_change(f, NULL, r, f->on_change_ctx);
        return r;
    }
    const struct fsm_rid *seen = rid_find(&f->st, c.rid);
    if (seen != NULL) {
        r->status = seen->status;
        snprintf(r->msg, sizeof r->msg, "request %s was already applied", c.rid);
        fsm_cmd_free(&c);
        return r;
    }
    switch (c.op) {
    case FSM_OP_NOOP: break;
    case FSM_OP_MEMBER_REGISTER: op_member_register(f, &c, r); break;
    case FSM_OP_MEMBER_REMOVE: op_member_remove(f, &c, r); break;
    case FSM_OP_MEMBER_REPORT: op_member_report(f, &c, r); break;
    case FSM_OP_LEASE_RENEW: op_lease_renew(f, &c, r); break;
    case FSM_OP_PRIMARY_ASSIGN: op_primary_assign(f, &c, r); break;
    case FSM_OP_PRIMARY_RUNNING: op_primary_running(f, &c, r); break;
    case FSM_OP_PRIMARY_DEMOTE: op_primary_demote(f, &c, r); break;
    case FSM_OP_PRIMARY_STOPPED: op_primary_stopped(f, &c, r); break;
    case FSM_OP_PRIMARY_RELEASE: op_primary_release(f, &c, r); break;
    case FSM_OP_CLUSTER_INIT: op_cluster_init(f, &c, r); break;
    case FSM_OP_CONFIG_SET: op_config_set(f, &c, r); break;
    case FSM_OP_PAUSE_SET: f->st.pause = c.u.pause.pause; break;
    case FSM_OP_SWITCHOVER_SET: op_switchover_set(f, &c, r); break;
    case FSM_OP_SWITCHOVER_CLEAR: memset(&f->st.sw, 0, sizeof f->st.sw); break;
    case FSM_OP_SYNC_SET: op_sync_set(f, &c, r); break;
    case FSM_OP_BACKUP_DONE: op_backup_done(f, &c, r); break;
    default: refuse(r, PGW_EINVAL, "unknown command"); break;
    }
    /* Reports and renewals are frequent and carry no retry risk worth a
     * window slot; everything else is remembered so a retried request is
     * applied once. */
    if (c.op != FSM_OP_MEMBER_REPORT && c.op != FSM_OP_LEASE_RENEW && c.op != FSM_OP_NOOP)
        rid_remember(&f->st, c.rid, r->status);
    if (r->status != 0)
        log_debug("fsm", "refused %s (%s): %s", fsm_op_name(c.op), c.rid, r->msg);
    if (f->on_change != NULL)
        f->on_change(f, &c, r, f->on_change_ctx);
    fsm_cmd_free(&c);
    return r;
}

/* --- raft_fsm glue ---------------------------------------------------------- */

static int fsm_raft_apply(struct raft_fsm *rf, const struct raft_buffer *buf, void **result)
{
    struct fsm *f = rf->data;
    /* raft does not pass the index; it is last_applied + 1 while applying. */
    uint64_t index = f->st.applied_index + 1;
    if (f->raft != NULL)
        index = raft_last_applied(f->raft) + 1;
    *result = (void *)fsm_apply_buf(f, buf->base, buf->len, index);
    f->local_commit_ms = now_ms(f);
    return 0; /* a non-zero return would make a follower unavailable */
}

static int fsm_raft_snapshot(struct raft_fsm *rf, struct raft_buffer *bufs[], unsigned *n_bufs)
{
    struct fsm *f = rf->data;
    char *text = fsm_state_dump(&f->st);
    if (text == NULL)
        return RAFT_NOMEM;
    size_t n = strlen(text);
    struct raft_buffer *arr = raft_malloc(sizeof *arr);
    void *base = raft_malloc(n);
    if (arr == NULL || base == NULL) {
        raft_free(arr);
        raft_free(base);
        free(text);
        return RAFT_NOMEM;
    }
    memcpy(base, text, n);
    free(text);
    arr[0].base = base;
    arr[0].len = n;
    *bufs = arr;
    *n_bufs = 1;
    return 0;
}

static int fsm_raft_restore(struct raft_fsm *rf, struct raft_buffer *buf)
{
    struct fsm *f = rf->data;
    char err[256];
    if (fsm_state_load(f, buf->base, buf->len, err, sizeof err) != 0) {
        log_error("fsm", "cannot restore snapshot: %s", err);
        return RAFT_MALFORMED;
    }
    raft_free(buf->base);
    /* Every lease is treated as renewed now: conservative for the controller. */
    f->local_lease_ms = now_ms(f);
    log_info("fsm", "restored state from snapshot (applied index %llu)",
             (unsigned long long)f->st.applied_index);
    if (f->on_change != NULL)
        f->on_change(f, NULL, &f->results[0], f->on_change_ctx);
    return 0;
}

void fsm_init(struct fsm *f, const struct clock_src *clock)
{
    memset(f, 0, sizeof *f);
    f->clock = clock != NULL ? clock : &clock_monotonic;
    f->raft_fsm.version = 1;
    f->raft_fsm.data = f;
    f->raft_fsm.apply = fsm_raft_apply;
    f->raft_fsm.snapshot = fsm_raft_snapshot;
    f->raft_fsm.restore = fsm_raft_restore;
    f->local_lease_ms = now_ms(f);
}

static void state_clear(struct fsm_state *st)
{
    for (unsigned i = 0; i < st->n_members; i++)
        member_clear(&st->members[i]);
    if (st->config != NULL)
        json_decref(st->config);
    memset(st, 0, sizeof *st);
}

void fsm_close(struct fsm *f)
{
    state_clear(&f->st);
}
