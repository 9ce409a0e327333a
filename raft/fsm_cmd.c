#include "raft/fsm_cmd.h"

#include <stdio.h>
#include <string.h>

#include <raft.h>

static const char *const op_names[FSM_OP__COUNT] = {
    [FSM_OP_NOOP] = "noop",
    [FSM_OP_MEMBER_REGISTER] = "member_register",
    [FSM_OP_MEMBER_REMOVE] = "member_remove",
    [FSM_OP_MEMBER_REPORT] = "member_report",
    [FSM_OP_LEASE_RENEW] = "lease_renew",
    [FSM_OP_PRIMARY_ASSIGN] = "primary_assign",
    [FSM_OP_PRIMARY_RUNNING] = "primary_running",
    [FSM_OP_PRIMARY_DEMOTE] = "primary_demote",
    [FSM_OP_PRIMARY_STOPPED] = "primary_stopped",
    [FSM_OP_PRIMARY_RELEASE] = "primary_release",
    [FSM_OP_CLUSTER_INIT] = "cluster_init",
    [FSM_OP_CONFIG_SET] = "config_set",
    [FSM_OP_PAUSE_SET] = "pause_set",
    [FSM_OP_BACKUP_DONE] = "backup_done",
    [FSM_OP_SWITCHOVER_SET] = "switchover_set",
    [FSM_OP_SWITCHOVER_CLEAR] = "switchover_clear",
    [FSM_OP_SYNC_SET] = "sync_set",
};

const char *fsm_op_name(enum fsm_op op)
{
    if (op <= 0 || op >= FSM_OP__COUNT || op_names[op] == NULL)
        return "unknown";
    return op_names[op];
}

bool fsm_name_valid(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n >= FSM_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '-'))
            return false;
    }
    return true;
}

void fsm_cmd_init(struct fsm_cmd *cmd, enum fsm_op op, const char *rid)
{
    memset(cmd, 0, sizeof *cmd);
    cmd->op = op;
    if (rid != NULL)
        snprintf(cmd->rid, sizeof cmd->rid, "%s", rid);
}

void fsm_cmd_free(struct fsm_cmd *cmd)
{
    if (cmd->op == FSM_OP_MEMBER_REGISTER && cmd->u.reg.tags != NULL) {
        json_decref(cmd->u.reg.tags);
        cmd->u.reg.tags = NULL;
    }
    if (cmd->op == FSM_OP_CONFIG_SET && cmd->u.config.config != NULL) {
        json_decref(cmd->u.config.config);
        cmd->u.config.config = NULL;
    }
}

/* --- decoding helpers: each names the field it rejects ------------------ */

struct dec {
    const json_t *obj;
    char *err;
    size_t errlen;
    int rc;
};

static void fail(struct dec *d, const char *field, const char *what)
{
    if (d->rc == 0)
        snprintf(d->err, d->errlen, "%s: %s", field, what);
    d->rc = PGW_EINVAL;
}

static void get_str(struct dec *d, const char *field, char *dst, size_t cap, bool required)
{
    const json_t *v = json_object_get(d->obj, field);
    dst[0] = '\0';
    if (v == NULL || json_is_null(v)) {
        if (required)
            fail(d, field, "missing");
        return;
    }
    if (!json_is_string(v)) {
        fail(d, field, "expected a string");
        return;
    }
    size_t n = json_string_length(v);
    if (n == 0 && required) {
        /* the encoder leaves empty strings out: a required one must not be empty */
        fail(d, field, "empty");
        return;
    }
    if (n >= cap) {
        fail(d, field, "too long");
        return;
    }
    if (memchr(json_string_value(v), '\0', n) != NULL) {
        fail(d, field, "contains a NUL byte");
        return;
    }
    memcpy(dst, json_string_value(v), n + 1);
}

static void get_name(struct dec *d, const char *field, char *dst, bool required)
{
    get_str(d, field, dst, FSM_NAME_MAX, required);
    if (d->rc == 0 && dst[0] != '\0' && !fsm_name_valid(dst))
        fail(d, field, "not a valid member name ([A-Za-z0-9_.-], 1..63 bytes)");
}

static uint64_t get_u64(struct dec *d, const char *field, bool required, uint64_t max)
{
    const json_t *v = json_object_get(d->obj, field);
    if (v == NULL || json_is_null(v)) {
        if (required)
            fail(d, field, "missing");
        return 0;
    }
    /* jansson integers are signed 64-bit; LSNs and epochs fit. */
    if (!json_is_integer(v) || json_integer_value(v) < 0) {
        fail(d, field, "expected a non-negative integer");
        return 0;
    }
    uint64_t x = (uint64_t)json_integer_value(v);
    if (x > max) {
        fail(d, field, "out of range");
        return 0;
    }
    return x;
}

static bool get_bool(struct dec *d, const char *field)
{
    const json_t *v = json_object_get(d->obj, field);
    if (v == NULL || json_is_null(v))
        return false;
    if (!json_is_boolean(v)) {
        fail(d, field, "expected true or false");
        return false;
    }
    return json_is_true(v);
}

static json_t *get_object(struct dec *d, const char *field, bool required)
{
    json_t *v = json_object_get(d->obj, field);
    if (v == NULL || json_is_null(v)) {
        if (required)
            fail(d, field, "missing");
        return NULL;
    }
    if (!json_is_object(v)) {
        fail(d, field, "expected an object");
        return NULL;
    }
    return json_incref(v);
}

#define U32MAX 0xffffffffull
#define I63MAX 0x7fffffffffffffffull

static void decode_report(struct dec *d, struct fsm_report *r)
{
    get_str(d, "role", r->role, sizeof r->role, true);
    get_str(d, "state", r->state, sizeof r->state, true);
    get_str(d, "repl_state", r->repl_state, sizeof r->repl_state, false);
    r->timeline = (uint32_t)get_u64(d, "timeline", false, U32MAX);
    r->lsn = get_u64(d, "lsn", false, I63MAX);
    r->receive_lsn = get_u64(d, "receive_lsn", false, I63MAX);
    r->replay_lsn = get_u64(d, "replay_lsn", false, I63MAX);
    r->pending_restart = get_bool(d, "pending_restart");
    r->server_version = (int)get_u64(d, "server_version", false, 9999999);
    get_str(d, "sysid", r->sysid, sizeof r->sysid, false);
    get_str(d, "reason", r->reason, sizeof r->reason, false);
}

static void decode_sync(struct dec *d, struct fsm_cmd *c)
{
    const json_t *arr = json_object_get(d->obj, "members");
    if (!json_is_array(arr)) {
        fail(d, "members", "expected an array of member names");
        return;
    }
    if (json_array_size(arr) > FSM_MAX_SYNC) {
        fail(d, "members", "too many synchronous standbys");
        return;
    }
    size_t i;
    const json_t *v;
    json_array_foreach(arr, i, v) {
        if (!json_is_string(v) || !fsm_name_valid(json_string_value(v))) {
            fail(d, "members", "expected an array of member names");
            return;
        }
        snprintf(c->u.sync.members[i], FSM_NAME_MAX, "%s", json_string_value(v));
    }
    c->u.sync.n = (unsigned)json_array_size(arr);
    c->u.sync.primary_epoch = get_u64(d, "primary_epoch", true, I63MAX);
    c->u.sync.count = (unsigned)get_u64(d, "count", false, FSM_MAX_SYNC);
    c->u.sync.quorum = get_bool(d, "quorum");
    c->u.sync.if_version_set = json_object_get(d->obj, "if_version") != NULL;
    c->u.sync.if_version = get_u64(d, "if_version", false, I63MAX);
}

static enum fsm_op op_from_name(const char *s)
{
    for (int i = 1; i < FSM_OP__COUNT; i++) {
        if (op_names[i] != NULL && strcmp(op_names[i], s) == 0)
            return (enum fsm_op)i;
    }
    return 0;
}

int fsm_cmd_decode(const char *buf, size_t len, struct fsm_cmd *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (len == 0 || len > FSM_CMD_MAX_BYTES) {
        snprintf(err, errlen, "command size %zu outside 1..%d bytes", len, FSM_CMD_MAX_BYTES);
        return PGW_EINVAL;
    }
    json_error_t jerr;
    json_t *root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        snprintf(err, errlen, "malformed JSON at byte %d: %s", jerr.position, jerr.text);
        return PGW_EINVAL;
    }
    struct dec d = {root, err, errlen, 0};
    if (!json_is_object(root)) {
        fail(&d, "command", "expected a JSON object");
        goto out;
    }
    const json_t *v = json_object_get(root, "v");
    if (!json_is_integer(v)) {
        fail(&d, "v", "missing command format version");
        goto out;
    }
    if (json_integer_value(v) != FSM_CMD_VERSION) {
        snprintf(err, errlen, "v: unsupported command format version %lld (this node speaks %d)",
                 (long long)json_integer_value(v), FSM_CMD_VERSION);
        d.rc = PGW_EPROTO;
        goto out;
    }
    char opname[32];
    get_str(&d, "op", opname, sizeof opname, true);
    if (d.rc != 0)
        goto out;
    out->op = op_from_name(opname);
    if (out->op == 0) {
        snprintf(err, errlen, "op: unknown command \"%s\"", opname);
        d.rc = PGW_EINVAL;
        goto out;
    }
    get_str(&d, "rid", out->rid, sizeof out->rid, true);
    if (d.rc == 0 && out->rid[0] == '\0')
        fail(&d, "rid", "empty request id");

    struct fsm_cmd *c = out;
    switch (c->op) {
    case FSM_OP_NOOP:
        break;
    case FSM_OP_MEMBER_REGISTER:
        get_name(&d, "member", c->member, true);
        c->u.reg.raft_id = get_u64(&d, "raft_id", true, I63MAX);
        if (d.rc == 0 && c->u.reg.raft_id == 0)
            fail(&d, "raft_id", "must be greater than 0");
        get_str(&d, "raft_addr", c->u.reg.raft_addr, sizeof c->u.reg.raft_addr, true);
        get_str(&d, "api_url", c->u.reg.api_url, sizeof c->u.reg.api_url, true);
        get_str(&d, "conn_host", c->u.reg.conn_host, sizeof c->u.reg.conn_host, false);
        c->u.reg.conn_port = (uint16_t)get_u64(&d, "conn_port", false, 65535);
        c->u.reg.witness = get_bool(&d, "witness");
        c->u.reg.tags = get_object(&d, "tags", false);
        c->u.reg.level = (uint32_t)get_u64(&d, "level", false, U32MAX);
        break;
    case FSM_OP_MEMBER_REMOVE:
        get_name(&d, "member", c->member, true);
        break;
    case FSM_OP_MEMBER_REPORT:
        get_name(&d, "member", c->member, true);
        decode_report(&d, &c->u.report);
        break;
    case FSM_OP_LEASE_RENEW:
        get_name(&d, "member", c->member, true);
        c->epoch = get_u64(&d, "epoch", true, I63MAX);
        c->u.lease.lsn = get_u64(&d, "lsn", false, I63MAX);
        c->u.lease.timeline = (uint32_t)get_u64(&d, "timeline", false, U32MAX);
        c->u.lease.ttl_ms = (uint32_t)get_u64(&d, "ttl_ms", false, U32MAX);
        c->u.lease.held_ttl_ms = (uint32_t)get_u64(&d, "held_ttl_ms", false, U32MAX);
        break;
    case FSM_OP_PRIMARY_ASSIGN: {
        get_name(&d, "member", c->member, true);
        c->epoch = get_u64(&d, "epoch", true, I63MAX); /* the epoch being replaced */
        char mode[16];
        get_str(&d, "mode", mode, sizeof mode, false);
        if (d.rc == 0) {
            if (mode[0] == '\0' || strcmp(mode, "promote") == 0)
                c->u.assign.mode = FSM_ASSIGN_PROMOTE;
            else if (strcmp(mode, "bootstrap") == 0)
                c->u.assign.mode = FSM_ASSIGN_BOOTSTRAP;
            else
                fail(&d, "mode", "expected promote or bootstrap");
        }
        get_str(&d, "reason", c->u.assign.reason, sizeof c->u.assign.reason, false);
        c->u.assign.allow_data_loss = get_bool(&d, "allow_data_loss");
        c->u.assign.if_renewals_set = json_object_get(d.obj, "if_renewals") != NULL;
        c->u.assign.if_renewals = get_u64(&d, "if_renewals", false, I63MAX);
        break;
    }
    case FSM_OP_PRIMARY_RUNNING:
        get_name(&d, "member", c->member, true);
        c->epoch = get_u64(&d, "epoch", true, I63MAX);
        c->u.running.timeline = (uint32_t)get_u64(&d, "timeline", true, U32MAX);
        c->u.running.lsn = get_u64(&d, "lsn", false, I63MAX);
        c->u.running.wall_ms = get_u64(&d, "wall_ms", false, I63MAX);
        break;
    case FSM_OP_PRIMARY_DEMOTE:
        get_name(&d, "member", c->member, true);
        c->epoch = get_u64(&d, "epoch", true, I63MAX);
        get_name(&d, "target", c->u.demote.target, false);
        break;
    case FSM_OP_PRIMARY_STOPPED:
        get_name(&d, "member", c->member, true);
        c->epoch = get_u64(&d, "epoch", true, I63MAX);
        c->u.stopped.final_lsn = get_u64(&d, "final_lsn", true, I63MAX);
        c->u.stopped.timeline = (uint32_t)get_u64(&d, "timeline", false, U32MAX);
        break;
    case FSM_OP_PRIMARY_RELEASE:
        get_name(&d, "member", c->member, true);
        c->epoch = get_u64(&d, "epoch", true, I63MAX);
        get_str(&d, "reason", c->u.release.reason, sizeof c->u.release.reason, false);
        c->u.release.promote_refused = get_bool(&d, "refused");
        break;
    case FSM_OP_CLUSTER_INIT:
        get_name(&d, "member", c->member, true);
        get_str(&d, "sysid", c->u.init.sysid, sizeof c->u.init.sysid, true);
        if (d.rc == 0) {
            for (const char *p = c->u.init.sysid; *p; p++)
                if (*p < '0' || *p > '9') {
                    fail(&d, "sysid", "expected decimal digits");
                    break;
                }
            if (d.rc == 0 && c->u.init.sysid[0] == '\0')
                fail(&d, "sysid", "empty");
        }
        break;
    case FSM_OP_CONFIG_SET:
        c->u.config.config = get_object(&d, "config", true);
        c->u.config.expect_version = get_u64(&d, "expect_version", true, I63MAX);
        break;
    case FSM_OP_BACKUP_DONE: {
        get_name(&d, "member", c->member, true);
        get_str(&d, "type", c->u.backup.type, sizeof c->u.backup.type, true);
        const char *t = c->u.backup.type;
        if (d.rc == 0 && strcmp(t, "full") != 0 && strcmp(t, "diff") != 0 &&
            strcmp(t, "incr") != 0)
            fail(&d, "type", "expected full, diff or incr");
        get_str(&d, "label", c->u.backup.label, sizeof c->u.backup.label, false);
        c->u.backup.ok = get_bool(&d, "ok");
        c->u.backup.started_wall_ms = get_u64(&d, "started_wall_ms", true, I63MAX);
        c->u.backup.ended_wall_ms = get_u64(&d, "ended_wall_ms", true, I63MAX);
        get_str(&d, "result", c->u.backup.result, sizeof c->u.backup.result, false);
        break;
    }
    case FSM_OP_PAUSE_SET:
        if (!json_is_boolean(json_object_get(root, "pause")))
            fail(&d, "pause", "expected true or false");
        c->u.pause.pause = get_bool(&d, "pause");
        break;
    case FSM_OP_SWITCHOVER_SET:
        c->u.sw.failover = get_bool(&d, "failover");
        get_name(&d, "from", c->u.sw.from, false);
        get_name(&d, "to", c->u.sw.to, false);
        c->u.sw.scheduled_wall_ms = get_u64(&d, "scheduled_wall_ms", false, I63MAX);
        c->u.sw.allow_data_loss = get_bool(&d, "allow_data_loss");
        c->u.sw.requested_wall_ms = get_u64(&d, "requested_wall_ms", false, I63MAX);
        if (d.rc == 0 && c->u.sw.failover && c->u.sw.to[0] == '\0')
            fail(&d, "to", "a failover needs a candidate");
        if (d.rc == 0 && !c->u.sw.failover && c->u.sw.from[0] == '\0')
            fail(&d, "from", "a switchover needs the current leader");
        break;
    case FSM_OP_SWITCHOVER_CLEAR:
        break;
    case FSM_OP_SYNC_SET:
        decode_sync(&d, c);
        break;
    default:
        fail(&d, "op", "unknown command");
    }

out:
    json_decref(root);
    if (d.rc != 0)
        fsm_cmd_free(out);
    return d.rc;
}

/* --- encoding ------------------------------------------------------------ */

static void set_str(json_t *o, const char *k, const char *v)
{
    if (v != NULL && v[0] != '\0')
        json_object_set_new(o, k, json_string(v));
}

static void set_u64(json_t *o, const char *k, uint64_t v)
{
    json_object_set_new(o, k, json_integer((json_int_t)v));
}

static void encode_report(json_t *o, const struct fsm_report *r)
{
    set_str(o, "role", r->role);
    set_str(o, "state", r->state);
    set_str(o, "repl_state", r->repl_state);
    set_u64(o, "timeline", r->timeline);
    set_u64(o, "lsn", r->lsn);
    set_u64(o, "receive_lsn", r->receive_lsn);
    set_u64(o, "replay_lsn", r->replay_lsn);
    json_object_set_new(o, "pending_restart", json_boolean(r->pending_restart));
    set_u64(o, "server_version", (uint64_t)r->server_version);
    set_str(o, "sysid", r->sysid);
    set_str(o, "reason", r->reason);
}

int fsm_cmd_encode(const struct fsm_cmd *c, char **out, size_t *len, char *err, size_t errlen)
{
    *out = NULL;
    *len = 0;
    json_t *o = json_object();
    if (o == NULL)
        return PGW_ENOMEM;
    set_u64(o, "v", FSM_CMD_VERSION);
    json_object_set_new(o, "op", json_string(fsm_op_name(c->op)));
    set_str(o, "rid", c->rid);
    set_str(o, "member", c->member);
    switch (c->op) {
    case FSM_OP_MEMBER_REGISTER:
        set_u64(o, "raft_id", c->u.reg.raft_id);
        set_str(o, "raft_addr", c->u.reg.raft_addr);
        set_str(o, "api_url", c->u.reg.api_url);
        set_str(o, "conn_host", c->u.reg.conn_host);
        set_u64(o, "conn_port", c->u.reg.conn_port);
        json_object_set_new(o, "witness", json_boolean(c->u.reg.witness));
        if (c->u.reg.tags != NULL)
            json_object_set(o, "tags", c->u.reg.tags);
        if (c->u.reg.level != 0)
            set_u64(o, "level", c->u.reg.level);
        break;
    case FSM_OP_MEMBER_REPORT:
        encode_report(o, &c->u.report);
        break;
    case FSM_OP_LEASE_RENEW:
        set_u64(o, "epoch", c->epoch);
        set_u64(o, "lsn", c->u.lease.lsn);
        set_u64(o, "timeline", c->u.lease.timeline);
        if (c->u.lease.ttl_ms != 0)
            set_u64(o, "ttl_ms", c->u.lease.ttl_ms);
        if (c->u.lease.held_ttl_ms != 0)
            set_u64(o, "held_ttl_ms", c->u.lease.held_ttl_ms);
        break;
    case FSM_OP_PRIMARY_ASSIGN:
        set_u64(o, "epoch", c->epoch);
        json_object_set_new(o, "mode", json_string(c->u.assign.mode == FSM_ASSIGN_BOOTSTRAP
                                                       ? "bootstrap" : "promote"));
        set_str(o, "reason", c->u.assign.reason);
        json_object_set_new(o, "allow_data_loss", json_boolean(c->u.assign.allow_data_loss));
        if (c->u.assign.if_renewals_set)
            set_u64(o, "if_renewals", c->u.assign.if_renewals);
        break;
    case FSM_OP_PRIMARY_RUNNING:
        set_u64(o, "epoch", c->epoch);
        set_u64(o, "timeline", c->u.running.timeline);
        set_u64(o, "lsn", c->u.running.lsn);
        set_u64(o, "wall_ms", c->u.running.wall_ms);
        break;
    case FSM_OP_PRIMARY_DEMOTE:
        set_u64(o, "epoch", c->epoch);
        set_str(o, "target", c->u.demote.target);
        break;
    case FSM_OP_PRIMARY_STOPPED:
        set_u64(o, "epoch", c->epoch);
        set_u64(o, "final_lsn", c->u.stopped.final_lsn);
        set_u64(o, "timeline", c->u.stopped.timeline);
        break;
    case FSM_OP_PRIMARY_RELEASE:
        set_u64(o, "epoch", c->epoch);
        set_str(o, "reason", c->u.release.reason);
        if (c->u.release.promote_refused)
            json_object_set_new(o, "refused", json_true());
        break;
    case FSM_OP_CLUSTER_INIT:
        set_str(o, "sysid", c->u.init.sysid);
        break;
    case FSM_OP_CONFIG_SET:
        if (c->u.config.config != NULL)
            json_object_set(o, "config", c->u.config.config);
        set_u64(o, "expect_version", c->u.config.expect_version);
        break;
    case FSM_OP_PAUSE_SET:
        json_object_set_new(o, "pause", json_boolean(c->u.pause.pause));
        break;
    case FSM_OP_BACKUP_DONE:
        set_str(o, "member", c->member);
        set_str(o, "type", c->u.backup.type);
        set_str(o, "label", c->u.backup.label);
        json_object_set_new(o, "ok", json_boolean(c->u.backup.ok));
        set_u64(o, "started_wall_ms", c->u.backup.started_wall_ms);
        set_u64(o, "ended_wall_ms", c->u.backup.ended_wall_ms);
        set_str(o, "result", c->u.backup.result);
        break;
    case FSM_OP_SWITCHOVER_SET:
        json_object_set_new(o, "failover", json_boolean(c->u.sw.failover));
        set_str(o, "from", c->u.sw.from);
        set_str(o, "to", c->u.sw.to);
        set_u64(o, "scheduled_wall_ms", c->u.sw.scheduled_wall_ms);
        json_object_set_new(o, "allow_data_loss", json_boolean(c->u.sw.allow_data_loss));
        set_u64(o, "requested_wall_ms", c->u.sw.requested_wall_ms);
        break;
    case FSM_OP_SYNC_SET: {
        json_t *arr = json_array();
        for (unsigned i = 0; i < c->u.sync.n && i < FSM_MAX_SYNC; i++)
            json_array_append_new(arr, json_string(c->u.sync.members[i]));
        json_object_set_new(o, "members", arr);
        set_u64(o, "primary_epoch", c->u.sync.primary_epoch);
        set_u64(o, "count", c->u.sync.count);
        json_object_set_new(o, "quorum", json_boolean(c->u.sync.quorum));
        if (c->u.sync.if_version_set)
            set_u64(o, "if_version", c->u.sync.if_version);
        break;
    }
    default:
        break;
    }
    char *text = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(o);
    if (text == NULL)
        return PGW_ENOMEM;
    size_t n = strlen(text);

    /* Refuse on the submitting side exactly what apply would refuse. */
    struct fsm_cmd check;
    int rc = fsm_cmd_decode(text, n, &check, err, errlen);
    if (rc != 0) {
        free(text);
        return rc;
    }
    fsm_cmd_free(&check);

    char *buf = raft_malloc(n);
    if (buf == NULL) {
        free(text);
        return PGW_ENOMEM;
    }
    memcpy(buf, text, n);
    free(text);
    *out = buf;
    *len = n;
    return PGW_OK;
}
