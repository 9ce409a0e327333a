/* Replication slots: the plan (pure) and the step that applies it.
 *
 * Happy path of pgnode_slots_sync: read pg_replication_slots on a local
 * superuser connection -> pgslots_plan -> one statement per action, in
 * order (a logical slot is created on a connection to its database) ->
 * callback with the counts.
 * Failure modes: the read fails (the step ends with that error, nothing
 * changed); a statement fails (logged, counted, the next one still runs;
 * status PGW_EIO at the end with the first message); a statement hangs (the
 * connection's query deadline, 30 s; creating a logical slot waits for
 * running transactions); the node is destroyed meanwhile
 * (pgnode__slots_abandon drops the connection and the callback). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "pg/pgnode_internal.h"
#include "pg/slots.h"

#define SLOTS_QUERY_TIMEOUT_MS 30000

/* ---- the plan ---------------------------------------------------------------- */

static bool field_matches(const char *want, const char *have)
{
    return want == NULL || strcmp(want, have) == 0;
}

bool pgslots_ignored(const struct cfg_slot_matchers *ignore, const struct pgslots_existing *e)
{
    for (size_t i = 0; ignore != NULL && i < ignore->n; i++) {
        const struct cfg_slot_matcher *m = &ignore->items[i];
        const char *type = e->kind == PGSLOTS_LOGICAL ? "logical" : "physical";
        if (field_matches(m->name, e->name) && field_matches(m->type, type) &&
            field_matches(m->database, e->database) && field_matches(m->plugin, e->plugin))
            return true;
    }
    return false;
}

/* What this node wants, by slot name. */
struct want {
    char name[PGCONF_SLOT_MAX];
    enum pgslots_kind kind;
    const char *database, *plugin;
    bool reserve;      /* create reserving WAL */
    bool permanent;
    bool keep_only;    /* an expired member slot kept this round: neither created nor dropped */
    char why[96];
};

struct wants {
    struct want *items;
    size_t n, cap;
};

static struct want *want_find(struct wants *w, const char *name)
{
    for (size_t i = 0; i < w->n; i++)
        if (strcmp(w->items[i].name, name) == 0)
            return &w->items[i];
    return NULL;
}

static struct want *want_add(struct wants *w, const char *name)
{
    struct want *x = want_find(w, name);
    if (x != NULL)
        return x;
    if (w->n == w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 16;
        struct want *items = realloc(w->items, cap * sizeof *items);
        if (items == NULL)
            return NULL;
        w->items = items;
        w->cap = cap;
    }
    x = &w->items[w->n++];
    memset(x, 0, sizeof *x);
    snprintf(x->name, sizeof x->name, "%s", name);
    return x;
}

static bool member_expired(const struct pgslots_input *in, const struct pgslots_member *m)
{
    uint64_t age = in->now_ms > m->last_seen_ms ? in->now_ms - m->last_seen_ms : 0;
    return age > in->absent_after_ms + in->member_slots_ttl_ms;
}

static int compute_wants(const struct pgslots_input *in, struct wants *w, size_t *kept_expired)
{
    char self[PGCONF_SLOT_MAX] = "";
    if (in->self != NULL)
        pgconf_slot_name(in->self, self, sizeof self);
    for (size_t i = 0; i < in->n_members; i++) {
        const struct pgslots_member *m = &in->members[i];
        char slot[PGCONF_SLOT_MAX];
        pgconf_slot_name(m->name, slot, sizeof slot);
        if (m->witness || slot[0] == '\0' || strcmp(slot, self) == 0)
            continue;
        bool cascades_here = m->replicatefrom != NULL && in->self != NULL &&
                             strcmp(m->replicatefrom, in->self) == 0;
        if (!in->primary && !cascades_here)
            continue;
        bool expired = member_expired(in, m);
        if (expired && in->may_drop_members)
            continue;
        struct want *x = want_add(w, slot);
        if (x == NULL)
            return PGW_ENOMEM;
        x->kind = PGSLOTS_PHYSICAL;
        x->reserve = true;
        x->keep_only = expired;
        if (expired)
            (*kept_expired)++;
        snprintf(x->why, sizeof x->why, "slot of member %s", m->name);
    }
    for (size_t i = 0; in->permanent != NULL && i < in->permanent->n; i++) {
        const struct cfg_slot *s = &in->permanent->items[i];
        if (s->cluster_type != NULL && strcmp(s->cluster_type, "standby") == 0)
            continue; /* only for standby clusters, which pgwarden does not run */
        if (strcmp(s->name, self) == 0)
            continue; /* a node never needs a slot for itself */
        bool logical = strcmp(s->type, "logical") == 0;
        if (logical && !in->primary)
            continue;
        struct want *x = want_add(w, s->name);
        if (x == NULL)
            return PGW_ENOMEM;
        if (x->why[0] != '\0' && !logical) {
            /* also a member's: kept whatever the member does */
            x->keep_only = false;
            x->permanent = true;
            continue;
        }
        x->kind = logical ? PGSLOTS_LOGICAL : PGSLOTS_PHYSICAL;
        x->database = s->database;
        x->plugin = s->plugin;
        x->reserve = in->primary;
        x->permanent = true;
        x->keep_only = false;
        snprintf(x->why, sizeof x->why, "permanent %s slot", logical ? "logical" : "physical");
    }
    return PGW_OK;
}

static int add_action(struct pgslots_plan *p, size_t *cap, enum pgslots_op op, const char *name,
                      const struct want *x, const char *why)
{
    if (p->n == *cap) {
        size_t c = *cap ? *cap * 2 : 8;
        struct pgslots_action *items = realloc(p->items, c * sizeof *items);
        if (items == NULL)
            return PGW_ENOMEM;
        p->items = items;
        *cap = c;
    }
    struct pgslots_action *a = &p->items[p->n++];
    memset(a, 0, sizeof *a);
    a->op = op;
    snprintf(a->name, sizeof a->name, "%s", name);
    if (x != NULL) {
        a->kind = x->kind;
        a->reserve = x->reserve;
        snprintf(a->database, sizeof a->database, "%s", x->database ? x->database : "");
        snprintf(a->plugin, sizeof a->plugin, "%s", x->plugin ? x->plugin : "");
    }
    snprintf(a->why, sizeof a->why, "%s", why);
    return PGW_OK;
}

static bool same_kind(const struct want *x, const struct pgslots_existing *e)
{
    if (x->kind != e->kind)
        return false;
    return x->kind == PGSLOTS_PHYSICAL ||
           (strcmp(x->database ? x->database : "", e->database) == 0 &&
            strcmp(x->plugin ? x->plugin : "", e->plugin) == 0);
}

/* Why an existing slot nobody wants goes, for the log. */
static void drop_reason(const struct pgslots_input *in, const char *slot, char *why, size_t len)
{
    for (size_t i = 0; i < in->n_members; i++) {
        char s[PGCONF_SLOT_MAX];
        pgconf_slot_name(in->members[i].name, s, sizeof s);
        if (strcmp(s, slot) != 0)
            continue;
        if (member_expired(in, &in->members[i]))
            snprintf(why, len, "member %s not seen for longer than ttl + member_slots_ttl (%llu s)",
                     in->members[i].name,
                     (unsigned long long)((in->absent_after_ms + in->member_slots_ttl_ms) / 1000));
        else
            snprintf(why, len, "slot of member %s, not kept on a %s", in->members[i].name,
                     in->primary ? "primary" : "replica");
        return;
    }
    for (size_t i = 0; in->permanent != NULL && i < in->permanent->n; i++)
        if (strcmp(in->permanent->items[i].name, slot) == 0) {
            snprintf(why, len, "permanent %s slot, not kept on a %s",
                     in->permanent->items[i].type, in->primary ? "primary" : "replica (PostgreSQL "
                     "cannot keep a logical slot in step on a standby before 17)");
            return;
        }
    snprintf(why, len, "belongs to no member, is not permanent and matches no ignore_slots entry");
}

int pgslots_plan(const struct pgslots_input *in, struct pgslots_plan *out)
{
    memset(out, 0, sizeof *out);
    struct wants w = {0};
    size_t cap = 0;
    int rc = compute_wants(in, &w, &out->kept_expired);
    bool *exists = rc == PGW_OK && w.n ? calloc(w.n, sizeof *exists) : NULL;
    if (rc == PGW_OK && w.n && exists == NULL)
        rc = PGW_ENOMEM;
    char why[160];
    /* drops (and the drop half of a re-creation) */
    for (size_t i = 0; rc == PGW_OK && i < in->n_existing; i++) {
        const struct pgslots_existing *e = &in->existing[i];
        if (e->temporary)
            continue;
        struct want *x = want_find(&w, e->name);
        if (x != NULL) {
            exists[x - w.items] = true;
            if (x->keep_only)
                continue;
            bool recreate = !same_kind(x, e) || (x->kind == PGSLOTS_PHYSICAL && e->lost);
            if (!recreate || e->active)
                continue; /* an active slot cannot be dropped: later */
            snprintf(why, sizeof why, "%s: %s", x->why,
                     e->lost ? "its WAL was removed (wal_status lost), creating it again"
                             : "type, database or plugin changed, creating it again");
            rc = add_action(out, &cap, PGSLOTS_DROP, e->name, NULL, why);
            exists[x - w.items] = false;
            continue;
        }
        if (pgslots_ignored(in->ignore, e) || e->active)
            continue;
        drop_reason(in, e->name, why, sizeof why);
        rc = add_action(out, &cap, PGSLOTS_DROP, e->name, NULL, why);
    }
    /* creations */
    for (size_t i = 0; rc == PGW_OK && i < w.n; i++) {
        const struct want *x = &w.items[i];
        if (!exists[i] && !x->keep_only)
            rc = add_action(out, &cap, PGSLOTS_CREATE, x->name, x, x->why);
    }
    /* on a replica, a permanent physical slot must not pin WAL */
    for (size_t i = 0; rc == PGW_OK && !in->primary && i < in->n_existing; i++) {
        const struct pgslots_existing *e = &in->existing[i];
        struct want *x = want_find(&w, e->name);
        if (x != NULL && x->permanent && x->kind == PGSLOTS_PHYSICAL && !x->reserve &&
            e->kind == PGSLOTS_PHYSICAL && e->reserved && !e->active && !e->temporary)
            rc = add_action(out, &cap, PGSLOTS_ADVANCE, e->name, x,
                            "permanent slot on a replica: released up to the replay position");
    }
    free(exists);
    free(w.items);
    if (rc != PGW_OK)
        pgslots_plan_free(out);
    return rc;
}

void pgslots_plan_free(struct pgslots_plan *p)
{
    free(p->items);
    p->items = NULL;
    p->n = 0;
}

static uint64_t mix(uint64_t h, const char *s)
{
    for (; s != NULL && *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return (h ^ 0xff) * 1099511628211ull;
}

uint64_t pgslots_wanted_sig(const struct pgslots_input *in)
{
    uint64_t h = 1469598103934665603ull;
    struct wants w = {0};
    size_t kept = 0;
    if (compute_wants(in, &w, &kept) != PGW_OK) {
        free(w.items);
        return 0; /* never equal to a real digest in practice: syncs again */
    }
    h = mix(h, in->primary ? "P" : "R");
    for (size_t i = 0; i < w.n; i++) {
        h = mix(h, w.items[i].name);
        h = mix(h, w.items[i].keep_only ? "k" : w.items[i].reserve ? "r" : "n");
        h = mix(h, w.items[i].database);
        h = mix(h, w.items[i].plugin);
    }
    for (size_t i = 0; in->ignore != NULL && i < in->ignore->n; i++) {
        const struct cfg_slot_matcher *m = &in->ignore->items[i];
        h = mix(mix(mix(mix(h, m->name), m->type), m->database), m->plugin);
    }
    free(w.items);
    return h;
}

/* ---- the step ----------------------------------------------------------------- */

struct pgslots_run {
    struct pgnode *n;
    pgnode_slots_cb cb;
    void *ctx;
    /* copies of the input */
    char *self;
    struct pgslots_member *members;
    char **strs; /* member names and replicatefrom values, owned */
    size_t n_strs;
    struct cfg_dcs dcs; /* holds the copies of slots and ignore_slots */
    struct pgslots_input in;
    struct pgslots_existing *existing;
    struct pgslots_plan plan;
    size_t next;
    struct pgconn *conn;
    char conn_db[64];
    char *sql;
    struct pgslots_result res;
    char first_err[512];
    bool reading; /* the first query (the read) is in flight */
};

static void run_free(struct pgslots_run *r)
{
    if (r->conn != NULL)
        pgconn_destroy(r->conn);
    for (size_t i = 0; i < r->n_strs; i++)
        free(r->strs[i]);
    free(r->strs);
    free(r->members);
    free(r->self);
    free(r->existing);
    free(r->sql);
    cfg_dcs_free(&r->dcs);
    pgslots_plan_free(&r->plan);
    free(r);
}

void pgnode__slots_abandon(struct pgnode *n)
{
    if (n->slots_run != NULL)
        run_free(n->slots_run);
    n->slots_run = NULL;
}

static void run_done(struct pgslots_run *r, int status)
{
    struct pgnode *n = r->n;
    pgnode_slots_cb cb = r->cb;
    void *ctx = r->ctx;
    struct pgslots_result res = r->res;
    if (status == PGW_OK && res.failed > 0) {
        status = PGW_EIO;
        pgnode__set_err(n, "replication slots: %u of %zu change(s) failed, first: %s", res.failed,
                        r->plan.n, r->first_err);
    }
    run_free(r);
    n->slots_run = NULL;
    pgnode__finish(n, status);
    if (cb != NULL)
        cb(n, status, &res, ctx);
}

static char *dup_or_null(const char *s, bool *oom)
{
    if (s == NULL)
        return NULL;
    char *c = strdup(s);
    if (c == NULL)
        *oom = true;
    return c;
}

static int copy_input(struct pgslots_run *r, const struct pgslots_input *in)
{
    bool oom = false;
    r->in = *in;
    r->self = dup_or_null(in->self, &oom);
    r->in.self = r->self;
    if (in->n_members > 0) {
        r->members = calloc(in->n_members, sizeof *r->members);
        r->strs = calloc(2 * in->n_members, sizeof *r->strs);
        if (r->members == NULL || r->strs == NULL)
            return PGW_ENOMEM;
    }
    for (size_t i = 0; i < in->n_members; i++) {
        r->members[i] = in->members[i];
        r->members[i].name = r->strs[r->n_strs++] = dup_or_null(in->members[i].name, &oom);
        r->members[i].replicatefrom = r->strs[r->n_strs++] =
            dup_or_null(in->members[i].replicatefrom, &oom);
    }
    r->in.members = r->members;
    struct cfg_dcs tmp;
    memset(&tmp, 0, sizeof tmp);
    if (in->permanent != NULL)
        tmp.slots = *in->permanent;
    if (in->ignore != NULL)
        tmp.ignore_slots = *in->ignore;
    if (oom || cfg_dcs_copy(&r->dcs, &tmp) != PGW_OK)
        return PGW_ENOMEM;
    r->in.permanent = &r->dcs.slots;
    r->in.ignore = &r->dcs.ignore_slots;
    r->in.existing = NULL;
    r->in.n_existing = 0;
    return PGW_OK;
}

static void on_query(struct pgconn *c, const struct pgconn_result *res, void *ctx);

/* Run sql (taken over) on a connection to database db. */
static int run_sql(struct pgslots_run *r, char *sql, const char *db)
{
    free(r->sql);
    r->sql = sql;
    if (sql == NULL)
        return PGW_ENOMEM;
    if (r->conn != NULL && strcmp(r->conn_db, db) != 0) {
        pgconn_destroy(r->conn);
        r->conn = NULL;
    }
    if (r->conn == NULL) {
        struct pgconn_params p;
        int rc = pgnode_local_conn_params(r->n, &p);
        if (rc == PGW_OK)
            rc = pgconn_params_set(&p, "dbname", db);
        if (rc == PGW_OK) {
            struct pgconn_opts o = {.name = "slots", .connect_timeout_ms = 10000,
                                    .query_timeout_ms = SLOTS_QUERY_TIMEOUT_MS};
            rc = pgconn_new(r->n->loop, &p, &o, &r->conn);
        }
        pgconn_params_free(&p);
        if (rc != PGW_OK)
            return rc;
        snprintf(r->conn_db, sizeof r->conn_db, "%s", db);
    }
    return pgconn_query(r->conn, r->sql, SLOTS_QUERY_TIMEOUT_MS, on_query, r);
}

static char *action_sql(const struct pgslots_action *a)
{
    char *name = pgconn_quote_literal(a->name);
    char *plugin = a->op == PGSLOTS_CREATE && a->kind == PGSLOTS_LOGICAL
                       ? pgconn_quote_literal(a->plugin) : NULL;
    char *sql = NULL;
    size_t len = 1024 + 3 * strlen(a->name) + strlen(a->plugin) * 2;
    if (name == NULL || (a->op == PGSLOTS_CREATE && a->kind == PGSLOTS_LOGICAL && plugin == NULL) ||
        (sql = malloc(len)) == NULL)
        goto out;
    switch (a->op) {
    case PGSLOTS_DROP:
        /* never an active one: it may have become active since the read */
        snprintf(sql, len, "SELECT pg_catalog.pg_drop_replication_slot(slot_name) FROM "
                 "pg_catalog.pg_replication_slots WHERE slot_name = %s AND NOT active", name);
        break;
    case PGSLOTS_CREATE:
        if (a->kind == PGSLOTS_LOGICAL)
            snprintf(sql, len, "SELECT pg_catalog.pg_create_logical_replication_slot(%s, %s) WHERE "
                     "NOT EXISTS (SELECT 1 FROM pg_catalog.pg_replication_slots WHERE slot_name = %s)",
                     name, plugin, name);
        else
            snprintf(sql, len, "SELECT pg_catalog.pg_create_physical_replication_slot(%s, %s) WHERE "
                     "NOT EXISTS (SELECT 1 FROM pg_catalog.pg_replication_slots WHERE slot_name = %s)",
                     name, a->reserve ? "true" : "false", name);
        break;
    case PGSLOTS_ADVANCE:
        snprintf(sql, len, "SELECT pg_catalog.pg_replication_slot_advance(slot_name, "
                 "pg_catalog.pg_last_wal_replay_lsn()) FROM pg_catalog.pg_replication_slots WHERE "
                 "slot_name = %s AND NOT active AND restart_lsn < pg_catalog.pg_last_wal_replay_lsn()",
                 name);
        break;
    }
out:
    free(name);
    free(plugin);
    return sql;
}

static const char *op_name(const struct pgslots_action *a)
{
    switch (a->op) {
    case PGSLOTS_DROP: return "drop";
    case PGSLOTS_ADVANCE: return "advance";
    case PGSLOTS_CREATE:
    default: return a->kind == PGSLOTS_LOGICAL ? "create logical" : "create physical";
    }
}

static void action_failed(struct pgslots_run *r, const struct pgslots_action *a, const char *err)
{
    r->res.failed++;
    log_warn("pg", "replication slot %s: %s failed: %s", a->name, op_name(a), err);
    if (r->first_err[0] == '\0')
        snprintf(r->first_err, sizeof r->first_err, "%s %s: %s", op_name(a), a->name, err);
}

/* Start the next action; failures to start count and move on. */
static void next_action(struct pgslots_run *r)
{
    while (r->next < r->plan.n) {
        const struct pgslots_action *a = &r->plan.items[r->next];
        const char *db = a->op == PGSLOTS_CREATE && a->kind == PGSLOTS_LOGICAL ? a->database
                                                                                : "postgres";
        int rc = run_sql(r, action_sql(a), db);
        if (rc == PGW_OK)
            return;
        action_failed(r, a, pgw_strerror(rc));
        r->next++;
    }
    run_done(r, PGW_OK);
}

static void read_rows(struct pgslots_run *r, PGresult *res)
{
    int rows = PQntuples(res);
    r->existing = rows > 0 ? calloc((size_t)rows, sizeof *r->existing) : NULL;
    if (rows > 0 && r->existing == NULL)
        return;
    for (int i = 0; i < rows; i++) {
        struct pgslots_existing *e = &r->existing[r->in.n_existing++];
        snprintf(e->name, sizeof e->name, "%s", PQgetvalue(res, i, 0));
        e->kind = strcmp(PQgetvalue(res, i, 1), "logical") == 0 ? PGSLOTS_LOGICAL : PGSLOTS_PHYSICAL;
        snprintf(e->database, sizeof e->database, "%s", PQgetvalue(res, i, 2));
        snprintf(e->plugin, sizeof e->plugin, "%s", PQgetvalue(res, i, 3));
        e->active = PQgetvalue(res, i, 4)[0] == 't';
        e->temporary = PQgetvalue(res, i, 5)[0] == 't';
        e->reserved = PQgetvalue(res, i, 6)[0] == 't';
        e->lost = PQgetvalue(res, i, 7)[0] == 't';
    }
    r->in.existing = r->existing;
}

static void on_query(struct pgconn *c, const struct pgconn_result *res, void *ctx)
{
    (void)c;
    struct pgslots_run *r = ctx;
    if (r->reading) {
        r->reading = false;
        if (res->status != PGW_OK) {
            pgnode__set_err(r->n, "replication slots: cannot read pg_replication_slots: %s",
                            res->error);
            run_done(r, res->status);
            return;
        }
        if (res->nresults > 0)
            read_rows(r, res->results[res->nresults - 1]);
        if (pgslots_plan(&r->in, &r->plan) != PGW_OK) {
            pgnode__set_err(r->n, "replication slots: out of memory");
            run_done(r, PGW_ENOMEM);
            return;
        }
        if (r->plan.kept_expired > 0)
            log_info("pg", "replication slots: keeping %zu slot(s) of long-gone members until "
                     "the view of the cluster is confirmed", r->plan.kept_expired);
        next_action(r);
        return;
    }
    const struct pgslots_action *a = &r->plan.items[r->next];
    if (res->status != PGW_OK) {
        action_failed(r, a, res->error);
    } else {
        switch (a->op) {
        case PGSLOTS_DROP: r->res.dropped++; break;
        case PGSLOTS_CREATE: r->res.created++; break;
        case PGSLOTS_ADVANCE: r->res.advanced++; break;
        }
        log_info("pg", "replication slot %s: %s (%s)", a->name,
                 a->op == PGSLOTS_DROP     ? "dropped"
                 : a->op == PGSLOTS_ADVANCE ? "advanced"
                 : a->kind == PGSLOTS_LOGICAL ? "created (logical)"
                                             : "created (physical)",
                 a->why);
    }
    r->next++;
    next_action(r);
}

int pgnode_slots_sync(struct pgnode *n, const struct pgslots_input *in, pgnode_slots_cb cb,
                      void *ctx)
{
    int rc = pgnode__begin(n, F_SLOTS, ctx);
    if (rc)
        return rc;
    n->cb = NULL;
    struct pgslots_run *r = calloc(1, sizeof *r);
    if (r == NULL || copy_input(r, in) != PGW_OK) {
        if (r != NULL)
            run_free(r);
        pgnode__set_err(n, "replication slots: out of memory");
        return pgnode__abort_begin(n, PGW_ENOMEM);
    }
    r->n = n;
    r->cb = cb;
    r->ctx = ctx;
    n->slots_run = r;
    r->reading = true;
    rc = run_sql(r, strdup("SELECT slot_name, slot_type, coalesce(database, ''), "
                           "coalesce(plugin, ''), active, temporary, restart_lsn IS NOT NULL, "
                           "coalesce(wal_status = 'lost', false) FROM pg_catalog.pg_replication_slots"),
                 "postgres");
    if (rc != PGW_OK) {
        pgnode__set_err(n, "replication slots: cannot query the local instance: %s",
                        pgw_strerror(rc));
        run_free(r);
        n->slots_run = NULL;
        return pgnode__abort_begin(n, rc);
    }
    return PGW_OK;
}
