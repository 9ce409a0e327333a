/* Changes a node asks of the Raft group: log appends (cluster_apply),
 * membership changes and leadership transfer. What this node can tell at
 * once (not the leader, a change already in flight, a removal that would
 * leave no quorum, an undecodable command) is refused synchronously with a
 * status; what only libraft learns later (leadership lost, shutdown) comes
 * through the callback, mapped to the same statuses. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <netinet/in.h>
#include <raft.h>

#include "common/log.h"
#include "raft/cluster.h"
#include "raft/cluster_internal.h"
#include "raft/fsm_cmd.h"
#include "raft/transport.h"

/* --- apply ------------------------------------------------------------------------ */

struct apply_req {
    struct raft_apply req;
    struct raft_buffer buf;
    cluster_apply_cb cb;
    void *ctx;
};

static int map_raft_status(int rv)
{
    switch (rv) {
    case 0: return PGW_OK;
    case RAFT_NOTLEADER:
    case RAFT_LEADERSHIPLOST: return PGW_ENOTLEADER;
    case RAFT_SHUTDOWN:
    case RAFT_CANCELED: return PGW_ECANCELED;
    case RAFT_NOMEM: return PGW_ENOMEM;
    case RAFT_BUSY:
    case RAFT_CANTCHANGE: return PGW_EBUSY;
    case RAFT_BADID:
    case RAFT_NOTFOUND: return PGW_ENOTFOUND;
    case RAFT_DUPLICATEID:
    case RAFT_DUPLICATEADDRESS: return PGW_ECONFLICT;
    default: return PGW_EIO;
    }
}

static void apply_cb(struct raft_apply *req, int status, void *result)
{
    struct apply_req *a = req->data;
    if (status != 0) {
        a->cb(a->ctx, map_raft_status(status), NULL, raft_strerror(status));
    } else {
        struct fsm_result copy = *(const struct fsm_result *)result;
        a->cb(a->ctx, copy.status, &copy, copy.msg);
    }
    free(a);
}

int cluster_apply_raw(struct cluster *c, const char *buf, size_t len, cluster_apply_cb cb, void *ctx)
{
    if (c->closing || !c->raft_started)
        return PGW_ECANCELED;
    if (c->role != CLUSTER_LEADER)
        return PGW_ENOTLEADER;
    struct fsm_cmd check;
    char err[FSM_TEXT_MAX];
    int rc = fsm_cmd_decode(buf, len, &check, err, sizeof err);
    if (rc != 0)
        return rc;
    fsm_cmd_free(&check);
    struct apply_req *a = calloc(1, sizeof *a);
    if (a == NULL)
        return PGW_ENOMEM;
    /* libraft 0.15 sends entry data unpadded but decodes it as if each entry
     * were padded to 8 bytes (uv_encoding.c, uvDecodeEntriesBatch): any
     * other length corrupts the follower's read of the batch. JSON allows
     * trailing blanks, so pad with spaces. */
    size_t padded = (len + 7) & ~(size_t)7;
    a->buf.base = raft_malloc(padded);
    if (a->buf.base == NULL) {
        free(a);
        return PGW_ENOMEM;
    }
    memcpy(a->buf.base, buf, len);
    memset((char *)a->buf.base + len, ' ', padded - len);
    a->buf.len = padded;
    a->cb = cb;
    a->ctx = ctx;
    a->req.data = a;
    int rv = raft_apply(&c->raft, &a->req, &a->buf, 1, apply_cb);
    if (rv != 0) {
        raft_free(a->buf.base); /* still ours when raft_apply fails */
        free(a);
        return map_raft_status(rv);
    }
    return PGW_OK;
}

int cluster_apply(struct cluster *c, const struct fsm_cmd *cmd, cluster_apply_cb cb, void *ctx)
{
    char *buf;
    size_t len;
    char err[FSM_TEXT_MAX];
    int rc = fsm_cmd_encode(cmd, &buf, &len, err, sizeof err);
    if (rc != 0) {
        log_error("raft", "refusing to submit %s: %s", fsm_op_name(cmd->op), err);
        return rc;
    }
    rc = cluster_apply_raw(c, buf, len, cb, ctx);
    raft_free(buf);
    return rc;
}

/* --- membership ---------------------------------------------------------------------- */

struct change_req {
    struct cluster *c;
    struct raft_change change;
    uint64_t id;
    char addr[64];
    bool then_add;
    cluster_change_cb cb;
    void *ctx;
};

static void member_change_done(struct raft_change *req, int status)
{
    struct change_req *r = req->data;
    struct cluster *c = r->c;
    c->change_pending = false;
    if (status == 0 && r->then_add && !c->closing) {
        r->then_add = false;
        r->id = raft_digest(r->addr, cluster_now_ms(c)) & 0x3fffffffffffffffULL;
        if (r->id < 1000)
            r->id += 1000;
        int rv = raft_add(&c->raft, &r->change, r->id, r->addr, member_change_done);
        if (rv == 0) {
            c->change_pending = true;
            return;
        }
        status = rv;
    }
    r->cb(r->ctx, map_raft_status(status), r->id, status == 0 ? "" : raft_strerror(status));
    free(r);
}

int cluster_member_add(struct cluster *c, const char *addr, cluster_change_cb cb, void *ctx)
{
    if (c->role != CLUSTER_LEADER || !c->leader_ready)
        return PGW_ENOTLEADER;
    if (c->change_pending)
        return PGW_EBUSY;
    struct sockaddr_in sa;
    if (transport_addr_parse(addr, &sa) != 0)
        return PGW_EINVAL;
    struct change_req *r = calloc(1, sizeof *r);
    if (r == NULL)
        return PGW_ENOMEM;
    r->c = c;
    r->change.data = r;
    r->cb = cb;
    r->ctx = ctx;
    snprintf(r->addr, sizeof r->addr, "%s", addr);
    uint64_t stale = 0;
    for (unsigned i = 0; i < c->raft.configuration.n; i++)
        if (strcmp(c->raft.configuration.servers[i].address, addr) == 0)
            stale = c->raft.configuration.servers[i].id;
    int rv;
    if (stale != 0) {
        if (stale == c->id) {
            free(r);
            return PGW_ECONFLICT;
        }
        log_info("raft", "replacing stale server id %llu at %s", (unsigned long long)stale, addr);
        r->then_add = true;
        rv = raft_remove(&c->raft, &r->change, stale, member_change_done);
    } else {
        r->id = raft_digest(addr, cluster_now_ms(c)) & 0x3fffffffffffffffULL;
        if (r->id < 1000)
            r->id += 1000;
        rv = raft_add(&c->raft, &r->change, r->id, addr, member_change_done);
    }
    if (rv != 0) {
        free(r);
        return map_raft_status(rv);
    }
    c->change_pending = true;
    return PGW_OK;
}

int cluster_member_remove(struct cluster *c, uint64_t id, cluster_change_cb cb, void *ctx)
{
    if (c->role != CLUSTER_LEADER || !c->leader_ready)
        return PGW_ENOTLEADER;
    if (c->change_pending)
        return PGW_EBUSY;
    const struct raft_configuration *conf = &c->raft.configuration;
    int idx = -1;
    unsigned voters = 0, reachable = 0;
    for (unsigned i = 0; i < conf->n; i++) {
        if (conf->servers[i].id == id)
            idx = (int)i;
    }
    if (idx < 0)
        return PGW_ENOTFOUND;
    if (id == c->id)
        return PGW_EREFUSED; /* transfer leadership first */
    for (unsigned i = 0; i < conf->n; i++) {
        if (conf->servers[i].role != RAFT_VOTER || (int)i == idx)
            continue;
        voters++;
        if (conf->servers[i].id == c->id || c->raft.leader_state.progress[i].recent_recv)
            reachable++;
    }
    if (conf->servers[idx].role == RAFT_VOTER && reachable < voters / 2 + 1)
        return PGW_EUNAVAIL; /* the remaining voters could not form a quorum */
    struct change_req *r = calloc(1, sizeof *r);
    if (r == NULL)
        return PGW_ENOMEM;
    r->c = c;
    r->change.data = r;
    r->id = id;
    r->cb = cb;
    r->ctx = ctx;
    int rv = raft_remove(&c->raft, &r->change, id, member_change_done);
    if (rv != 0) {
        free(r);
        return map_raft_status(rv);
    }
    c->change_pending = true;
    return PGW_OK;
}

struct transfer_req {
    struct cluster *c;
    struct raft_transfer req;
    uint64_t id;
    cluster_change_cb cb;
    void *ctx;
};

static void transfer_done(struct raft_transfer *req)
{
    struct transfer_req *t = req->data;
    raft_id lid = 0;
    const char *addr;
    raft_leader(&t->c->raft, &lid, &addr);
    /* The callback fires on success and on timeout alike (libraft notes §2c). */
    bool ok = lid == t->id;
    t->cb(t->ctx, ok ? PGW_OK : PGW_ETIMEDOUT, t->id,
          ok ? "" : "leadership transfer did not complete");
    free(t);
}

int cluster_transfer(struct cluster *c, uint64_t id, cluster_change_cb cb, void *ctx)
{
    if (c->role != CLUSTER_LEADER)
        return PGW_ENOTLEADER;
    if (id == c->id)
        return PGW_EINVAL;
    struct transfer_req *t = calloc(1, sizeof *t);
    if (t == NULL)
        return PGW_ENOMEM;
    t->c = c;
    t->req.data = t;
    t->id = id;
    t->cb = cb;
    t->ctx = ctx;
    int rv = raft_transfer(&c->raft, &t->req, id, transfer_done);
    if (rv != 0) {
        free(t);
        return map_raft_status(rv);
    }
    return PGW_OK;
}
