/* Node lifecycle around libraft (see cluster.h).
 *
 * Happy path: check the data dir and lock it -> read pgwarden-node.json ->
 * (first start only: probe partners, then bootstrap or join) -> raft_uv_init
 * + our transport -> raft_init -> settings -> raft_bootstrap (ignored when
 * the log exists) -> raft_start -> poll role changes each loop iteration.
 * Failure modes: data dir missing/unwritable/locked/belonging to another node
 * (cluster_start returns the reason), raft_init/raft_start errors (address in
 * use, corrupted files: returned, or fatal after discovery), libraft turning
 * UNAVAILABLE (fatal, reported through cluster_fatal_error), partners not
 * answering during discovery (keeps probing, logs every 10 s).
 * Requests to change the group (appends, membership, leadership transfer)
 * are in cluster_changes.c. */
#include "raft/cluster.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <raft/uv.h>

#include "common/log.h"
#include "raft/cluster_internal.h"
#include "raft/node_file.h"
#include "raft/transport.h"

#define DISCOVERY_ROUND_MS 500

const char *cluster_role_name(enum cluster_role r)
{
    switch (r) {
    case CLUSTER_STARTING: return "starting";
    case CLUSTER_FOLLOWER: return "follower";
    case CLUSTER_CANDIDATE: return "candidate";
    case CLUSTER_LEADER: return "leader";
    case CLUSTER_UNAVAILABLE: return "unavailable";
    case CLUSTER_STOPPED: return "stopped";
    }
    return "?";
}

void cluster_timing_from_ttl(uint32_t ttl_ms, unsigned *et_ms, unsigned *hb_ms)
{
    unsigned et = ttl_ms / 10;
    if (et < 100)
        et = 100;
    if (et > 2000)
        et = 2000;
    unsigned hb = et / 10;
    if (hb < 10)
        hb = 10;
    *et_ms = et;
    *hb_ms = hb;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

uint64_t cluster_initial_id(const char *self_addr, const char *const *partners, size_t n)
{
    const char **all = calloc(n + 1, sizeof *all);
    if (all == NULL)
        return 0;
    all[0] = self_addr;
    for (size_t i = 0; i < n; i++)
        all[i + 1] = partners[i];
    qsort(all, n + 1, sizeof *all, cmp_str);
    uint64_t id = 0;
    for (size_t i = 0; i <= n; i++)
        if (strcmp(all[i], self_addr) == 0) {
            id = i + 1;
            break;
        }
    free(all);
    return id;
}

/* --- data dir -------------------------------------------------------------- */

static bool dir_has_raft_files(const char *dir)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return false;
    bool found = false;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        const char *n = e->d_name;
        if (strcmp(n, "metadata1") == 0 || strcmp(n, "metadata2") == 0 ||
            strncmp(n, "snapshot-", 9) == 0 || strncmp(n, "open-", 5) == 0 ||
            (n[0] >= '0' && n[0] <= '9')) {
            found = true;
            break;
        }
    }
    closedir(d);
    return found;
}

/* Whether mkdir(dir) could succeed: the errno it would fail with, or 0. */
static int creatable(const char *dir)
{
    char parent[4096];
    snprintf(parent, sizeof parent, "%s", dir);
    char *slash = strrchr(parent, '/');
    if (slash == NULL)
        snprintf(parent, sizeof parent, ".");
    else if (slash == parent)
        parent[1] = '\0';
    else
        *slash = '\0';
    struct stat st;
    if (stat(parent, &st) != 0)
        return errno;
    if (!S_ISDIR(st.st_mode))
        return ENOTDIR;
    return access(parent, W_OK | X_OK) != 0 ? errno : 0;
}

/* The checks of raft.data_dir shared by cluster_prepare_data_dir (which
 * then creates it) and cluster_check_data_dir (which must not). *missing
 * is set when it does not exist but could be created. */
static int dir_usable(const char *dir, bool *missing, char *err, size_t errlen)
{
    struct stat st;
    *missing = false;
    if (stat(dir, &st) != 0) {
        if (errno != ENOENT) {
            snprintf(err, errlen, "raft.data_dir %s: %s", dir, strerror(errno));
            return PGW_EIO;
        }
        int e = creatable(dir);
        if (e != 0) {
            snprintf(err, errlen, "raft.data_dir %s does not exist and cannot be created: %s",
                     dir, strerror(e));
            return PGW_EIO;
        }
        *missing = true;
        return PGW_OK;
    }
    if (!S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "raft.data_dir %s is not a directory", dir);
        return PGW_EINVAL;
    }
    if (access(dir, R_OK | W_OK | X_OK) != 0) {
        snprintf(err, errlen, "raft.data_dir %s is not writable by this user: %s", dir,
                 strerror(errno));
        return PGW_EIO;
    }
    return PGW_OK;
}

int cluster_prepare_data_dir(const char *dir, char *err, size_t errlen)
{
    bool missing;
    int rc = dir_usable(dir, &missing, err, errlen);
    if (rc != PGW_OK || !missing)
        return rc;
    if (mkdir(dir, 0700) != 0) {
        snprintf(err, errlen, "raft.data_dir %s does not exist and cannot be created: %s",
                 dir, strerror(errno));
        return PGW_EIO;
    }
    log_info("raft", "created raft.data_dir %s", dir);
    return PGW_OK;
}

/* The node file names the member the directory belongs to; Raft files
 * without one are not ours. */
static int check_node_file(const char *dir, const char *scope, const char *name,
                           struct node_file *nf, bool *found, char *err, size_t errlen)
{
    int rc = node_file_read(dir, nf, found, err, errlen);
    if (rc != 0)
        return rc;
    if (*found && (strcmp(nf->scope, scope) != 0 || strcmp(nf->name, name) != 0)) {
        snprintf(err, errlen, "raft.data_dir %s belongs to member \"%s\" of cluster \"%s\", but "
                 "this configuration is member \"%s\" of cluster \"%s\"", dir, nf->name,
                 nf->scope, name, scope);
        return PGW_EINVAL;
    }
    if (!*found && dir_has_raft_files(dir)) {
        snprintf(err, errlen, "raft.data_dir %s holds Raft files but no %s: not created by "
                 "pgwarden, or damaged; move it aside to start this node afresh", dir,
                 NODE_FILE_NAME);
        return PGW_EINVAL;
    }
    return PGW_OK;
}

int cluster_check_data_dir(const char *dir, const char *scope, const char *name, char *err,
                           size_t errlen)
{
    bool missing;
    int rc = dir_usable(dir, &missing, err, errlen);
    if (rc != PGW_OK || missing)
        return rc;
    struct node_file nf;
    bool found;
    return check_node_file(dir, scope, name, &nf, &found, err, errlen);
}

/* --- raft instance ------------------------------------------------------------ */

static char *probe_answer(void *ctx);
static bool admit_peer(void *ctx, uint64_t id, const char *addr);
static void poll_cb(uv_prepare_t *p);
static void timer_cb(uv_timer_t *t);

static int transport_start(struct cluster *c, char *err, size_t errlen)
{
    struct transport_opts to = {
        .loop = c->o.loop,
        .scope = c->scope,
        .connect_timeout_ms = c->o.election_timeout_ms,
        .handshake_timeout_ms = 2000,
        .user_timeout_ms = c->o.election_timeout_ms * 3 < 2000 ? 2000 : c->o.election_timeout_ms * 3,
        .probe = probe_answer,
        .probe_ctx = c,
        .admit = admit_peer,
        .sec = c->o.sec,
    };
    int rv = transport_setup(&c->transport, &to);
    if (rv != 0) {
        snprintf(err, errlen, "cannot set up the raft transport");
        return rv;
    }
    c->transport_ready = true;
    char terr[256];
    rv = transport_listen_early(&c->transport, c->self_addr, terr, sizeof terr);
    if (rv != 0) {
        snprintf(err, errlen, "raft.self_addr: %s", terr);
        return rv;
    }
    return PGW_OK;
}

/* libraft 0.15 keeps its io close callback after calling it, and calls it
 * again whenever a late completion re-checks whether everything is closed
 * (most likely an open segment's writer whose last write was still in
 * flight: its queue entry goes before its close completes). Raft's own
 * close then ran twice and freed its address twice (seen once, at a SIGTERM
 * under load). Raft hears of the io's close once. */
static void io_closed_once(struct raft_io *io)
{
    struct cluster *c = (struct cluster *)((char *)io - offsetof(struct cluster, io));
    raft_io_close_cb cb = c->raft_io_closed;
    c->raft_io_closed = NULL;
    if (cb == NULL) {
        log_debug("raft", "libraft reported its I/O closed a second time: ignored");
        return;
    }
    cb(io);
}

static void io_close_once(struct raft_io *io, raft_io_close_cb cb)
{
    struct cluster *c = (struct cluster *)((char *)io - offsetof(struct cluster, io));
    c->raft_io_closed = cb;
    c->uv_io_close(io, io_closed_once);
}

static int raft_setup(struct cluster *c, bool bootstrap, char *err, size_t errlen)
{
    int rv;
    rv = raft_uv_init(&c->io, c->o.loop, c->data_dir, &c->transport);
    if (rv != 0) {
        snprintf(err, errlen, "raft.data_dir %s: %s", c->data_dir,
                 c->io.errmsg[0] ? c->io.errmsg : raft_strerror(rv));
        return PGW_EIO;
    }
    c->io_ready = true;
    c->uv_io_close = c->io.close;
    c->io.close = io_close_once;
    raft_uv_set_connect_retry_delay(&c->io, 100);
    c->o.fsm->raft = &c->raft;
    rv = raft_init(&c->raft, &c->io, &c->o.fsm->raft_fsm, c->id, c->self_addr);
    if (rv != 0) {
        snprintf(err, errlen, "raft.data_dir %s: %s", c->data_dir,
                 raft_errmsg(&c->raft)[0] ? raft_errmsg(&c->raft) : raft_strerror(rv));
        return PGW_EIO;
    }
    c->raft.data = c;
    c->raft_ready = true;
    /* Settings after raft_init, which resets them (libraft notes §4.7). */
    raft_set_election_timeout(&c->raft, c->o.election_timeout_ms);
    raft_set_heartbeat_timeout(&c->raft, c->o.heartbeat_ms);
    raft_set_pre_vote(&c->raft, true);
    raft_set_snapshot_threshold(&c->raft, c->o.snapshot_threshold ? c->o.snapshot_threshold : 512);
    raft_set_snapshot_trailing(&c->raft, c->o.snapshot_trailing ? c->o.snapshot_trailing : 128);

    if (bootstrap) {
        /* Every initial node builds this same list: ids are positions in it. */
        struct raft_configuration conf;
        raft_configuration_init(&conf);
        const char **all = calloc(c->n_partners + 1, sizeof *all);
        if (all == NULL)
            return PGW_ENOMEM;
        all[0] = c->self_addr;
        for (size_t i = 0; i < c->n_partners; i++)
            all[i + 1] = c->partners[i];
        qsort(all, c->n_partners + 1, sizeof *all, cmp_str);
        rv = 0;
        for (size_t i = 0; rv == 0 && i <= c->n_partners; i++)
            rv = raft_configuration_add(&conf, i + 1, all[i], RAFT_VOTER);
        free(all);
        if (rv == 0)
            rv = raft_bootstrap(&c->raft, &conf);
        raft_configuration_close(&conf);
        if (rv != 0 && rv != RAFT_CANTBOOTSTRAP) {
            snprintf(err, errlen, "raft bootstrap in %s: %s", c->data_dir,
                     raft_errmsg(&c->raft)[0] ? raft_errmsg(&c->raft) : raft_strerror(rv));
            return PGW_EIO;
        }
        if (rv == 0)
            log_info("raft", "bootstrapped a new cluster of %zu voters (this node id %llu)",
                     c->n_partners + 1, (unsigned long long)c->id);
    }
    rv = raft_start(&c->raft);
    if (rv != 0) {
        const char *m = raft_errmsg(&c->raft);
        if ((m == NULL || m[0] == '\0') && c->transport.errmsg[0] != '\0')
            m = c->transport.errmsg;
        snprintf(err, errlen, "cannot start raft on %s (data dir %s): %s", c->self_addr,
                 c->data_dir, m != NULL && m[0] ? m : raft_strerror(rv));
        return PGW_EIO;
    }
    c->raft_started = true;
    c->role = CLUSTER_FOLLOWER;
    log_info("raft", "started as node id %llu at %s (election timeout %u ms, heartbeat %u ms, pre-vote on)",
             (unsigned long long)c->id, c->self_addr, c->o.election_timeout_ms, c->o.heartbeat_ms);
    return PGW_OK;
}

static void set_fatal(struct cluster *c, const char *msg)
{
    if (c->fatal[0] == '\0') {
        snprintf(c->fatal, sizeof c->fatal, "%s", msg);
        log_error("raft", "%s", msg);
    }
    c->role = CLUSTER_UNAVAILABLE;
    if (c->o.on_event != NULL)
        c->o.on_event(c, c->role, c->o.ctx);
}

/* --- discovery ---------------------------------------------------------------- */

static void finish_discovery(struct cluster *c, bool bootstrap, uint64_t id)
{
    c->discovering = false;
    c->id = id;
    struct node_file nf = {.id = id, .mode = bootstrap ? NODE_MODE_BOOTSTRAP : NODE_MODE_JOIN};
    snprintf(nf.name, sizeof nf.name, "%s", c->name);
    snprintf(nf.scope, sizeof nf.scope, "%s", c->scope);
    char err[512];
    if (node_file_write(c->data_dir, &nf, err, sizeof err) != 0) {
        set_fatal(c, err);
        return;
    }
    if (raft_setup(c, bootstrap, err, sizeof err) != 0) {
        set_fatal(c, err);
        return;
    }
    uv_prepare_start(&c->poll, poll_cb);
}

static void join_done(struct cluster *c, int status, uint64_t id, const char *msg)
{
    c->join_inflight = false;
    if (c->closing || !c->discovering)
        return;
    if (status != 0) {
        log_warn("raft", "join request failed: %s (will retry)", msg != NULL ? msg : "");
        return;
    }
    log_info("raft", "the cluster added this node under id %llu", (unsigned long long)id);
    finish_discovery(c, false, id);
}

/* Is `conf` (a probe answer's configuration) exactly the one this node
 * would bootstrap from its own raft.self_addr and partner_addrs? Ids of
 * added servers are always fresh, so only the bootstrap configuration can
 * look like this, and bootstrapping it here writes the same entry 1 the
 * other initial servers hold. That matters: libraft refuses to vote while
 * its own configuration does not list it as a voter, so an initial server
 * that starts after the leader died, with an empty log, could never help
 * elect a new one. */
static bool is_initial_configuration(const struct cluster *c, const json_t *conf)
{
    size_t n = c->n_partners + 1;
    if (!json_is_array(conf) || json_array_size(conf) != n)
        return false;
    const char **all = calloc(n, sizeof *all);
    if (all == NULL)
        return false;
    all[0] = c->self_addr;
    for (size_t k = 0; k < c->n_partners; k++)
        all[k + 1] = c->partners[k];
    qsort(all, n, sizeof *all, cmp_str); /* as raft_setup builds it: id = position + 1 */
    bool same = true;
    size_t i;
    const json_t *s;
    json_array_foreach(conf, i, s) {
        const char *addr = json_string_value(json_object_get(s, "address"));
        json_int_t id = json_integer_value(json_object_get(s, "id"));
        if (addr == NULL || id < 1 || (size_t)id > n || strcmp(all[id - 1], addr) != 0 ||
            json_integer_value(json_object_get(s, "role")) != RAFT_VOTER) {
            same = false;
            break;
        }
    }
    free(all);
    return same;
}

static void handle_probe_answer(struct cluster *c, const char *peer, const char *json, size_t len)
{
    json_error_t jerr;
    json_t *j = json_loadb(json, len, 0, &jerr);
    if (!json_is_object(j)) {
        log_warn("raft", "probe of %s: unreadable answer", peer);
        json_decref(j);
        return;
    }
    bool initialized = json_is_true(json_object_get(j, "initialized"));
    if (!initialized) {
        c->answered_uninit++;
        json_decref(j);
        return;
    }
    c->saw_initialized = true;
    if (c->join_inflight || !c->discovering) {
        json_decref(j);
        return;
    }
    /* Is our address in the configuration under an id that never registered? */
    uint64_t conf_id = 0;
    size_t i;
    const json_t *s;
    json_array_foreach(json_object_get(j, "configuration"), i, s) {
        const char *addr = json_string_value(json_object_get(s, "address"));
        if (addr != NULL && strcmp(addr, c->self_addr) == 0)
            conf_id = (uint64_t)json_integer_value(json_object_get(s, "id"));
    }
    bool registered = false;
    json_array_foreach(json_object_get(j, "members"), i, s) {
        const char *addr = json_string_value(json_object_get(s, "raft_addr"));
        const char *nm = json_string_value(json_object_get(s, "name"));
        if ((addr != NULL && strcmp(addr, c->self_addr) == 0) || (nm != NULL && strcmp(nm, c->name) == 0))
            registered = true;
    }
    if (conf_id != 0 && !registered) {
        bool initial = is_initial_configuration(c, json_object_get(j, "configuration")) &&
                       conf_id == cluster_initial_id(c->self_addr,
                                                     (const char *const *)c->partners, c->n_partners);
        log_info("raft", "%s reports a running cluster that lists this node (id %llu) but never "
                 "heard from it: starting under that id%s", peer, (unsigned long long)conf_id,
                 initial ? ", with the initial configuration it was bootstrapped with" : "");
        json_decref(j);
        finish_discovery(c, initial, conf_id);
        return;
    }
    const char *leader_api = json_string_value(json_object_get(j, "leader_api_url"));
    /* A stale answer may still name this node (a wiped former leader) */
    if (leader_api != NULL && c->api_url[0] != '\0' && strcmp(leader_api, c->api_url) == 0)
        leader_api = NULL;
    if (leader_api == NULL || leader_api[0] == '\0' || c->o.join == NULL) {
        json_decref(j);
        return; /* no leader known yet: next round */
    }
    log_info("raft", "%s reports a running cluster%s: asking the leader (%s) to add this node "
             "under a fresh id", peer,
             conf_id != 0 ? " in which this node's data was lost" : " that does not list this node",
             leader_api);
    c->join_inflight = true;
    if (c->o.join(c, leader_api, c->name, c->self_addr, join_done, c->o.ctx) != 0)
        c->join_inflight = false;
    json_decref(j);
}

struct probe_ctx {
    struct cluster *c;
    char peer[64];
};

static void maybe_finish_close(struct cluster *c);

static void probe_done(int status, const char *json, size_t len, void *ctx)
{
    struct probe_ctx *pc = ctx;
    struct cluster *c = pc->c;
    c->probes_inflight--;
    if (!c->closing && c->discovering && status == 0)
        handle_probe_answer(c, pc->peer, json, len);
    free(pc);
    if (c->closing)
        maybe_finish_close(c);
}

static void discovery_round(struct cluster *c)
{
    /* Decide on what the previous round learnt. */
    if (c->round > 0 && !c->saw_initialized && c->answered_uninit > 0 && !c->join_inflight) {
        log_info("raft", "no partner has a cluster yet (%u answered): bootstrapping the initial "
                 "configuration", c->answered_uninit);
        finish_discovery(c, true,
                         cluster_initial_id(c->self_addr, (const char *const *)c->partners,
                                            c->n_partners));
        return;
    }
    uint64_t now = cluster_now_ms(c);
    if (now - c->last_wait_log_ms >= 10000) {
        c->last_wait_log_ms = now;
        if (c->round > 0)
            log_info("raft", "first start: waiting for a partner to answer (%llu s so far)",
                     (unsigned long long)((now - c->discovery_started_ms) / 1000));
    }
    c->round++;
    c->answered_uninit = 0;
    c->saw_initialized = false;
    for (size_t i = 0; i < c->n_partners; i++) {
        struct probe_ctx *pc = calloc(1, sizeof *pc);
        if (pc == NULL)
            return;
        pc->c = c;
        snprintf(pc->peer, sizeof pc->peer, "%s", c->partners[i]);
        if (transport_probe_peer(c->o.loop, c->scope, c->partners[i], &c->o.sec,
                                 DISCOVERY_ROUND_MS - 50, probe_done, pc) == 0)
            c->probes_inflight++;
        else
            free(pc);
    }
}

static bool admit_peer(void *ctx, uint64_t id, const char *addr)
{
    struct cluster *c = ctx;
    const struct raft_configuration *conf = &c->raft.configuration;
    /* A node that is joining has no configuration yet: the leader adding
     * it must get through. */
    if (!c->raft_started || conf->n == 0)
        return true;
    for (unsigned i = 0; i < conf->n; i++)
        if (conf->servers[i].id == id && strcmp(conf->servers[i].address, addr) == 0)
            return true;
    return false;
}

/* What a probing peer learns from us. */
static char *probe_answer(void *ctx)
{
    struct cluster *c = ctx;
    json_t *j = json_object();
    json_object_set_new(j, "scope", json_string(c->scope));
    json_object_set_new(j, "name", json_string(c->name));
    json_object_set_new(j, "id", json_integer((json_int_t)c->id));
    json_object_set_new(j, "initialized", json_boolean(c->raft_started));
    json_object_set_new(j, "role", json_string(cluster_role_name(c->role)));
    const struct fsm_state *st = &c->o.fsm->st;
    if (c->raft_started) {
        json_t *conf = json_array();
        for (unsigned i = 0; i < c->raft.configuration.n; i++) {
            const struct raft_server *s = &c->raft.configuration.servers[i];
            json_array_append_new(conf, json_pack("{s:I, s:s, s:i}", "id", (json_int_t)s->id,
                                                  "address", s->address, "role", s->role));
        }
        json_object_set_new(j, "configuration", conf);
        json_t *ms = json_array();
        for (unsigned i = 0; i < st->n_members; i++)
            json_array_append_new(ms, json_pack("{s:s, s:I, s:s}", "name", st->members[i].name,
                                                "raft_id", (json_int_t)st->members[i].raft_id,
                                                "raft_addr", st->members[i].raft_addr));
        json_object_set_new(j, "members", ms);
        json_object_set_new(j, "leader_id", json_integer((json_int_t)c->leader_id));
        const struct fsm_member *lm = fsm_member_by_raft_id(st, c->leader_id);
        if (lm != NULL)
            json_object_set_new(j, "leader_api_url", json_string(lm->api_url));
    }
    char *text = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    return text;
}

/* --- role tracking ------------------------------------------------------------ */

static void barrier_cb(struct raft_barrier *req, int status)
{
    struct cluster *c = req->data;
    c->barrier_pending = false;
    if (c->closing)
        return;
    if (status == 0 && c->role == CLUSTER_LEADER && c->raft.current_term == c->barrier_term) {
        c->leader_ready = true;
        log_info("raft", "leader ready: every committed entry is applied (term %llu)",
                 (unsigned long long)c->barrier_term);
        if (c->o.on_event != NULL)
            c->o.on_event(c, c->role, c->o.ctx);
    }
}

static void start_barrier(struct cluster *c)
{
    if (c->barrier_pending)
        return;
    c->barrier.data = c;
    c->barrier_term = c->raft.current_term;
    if (raft_barrier(&c->raft, &c->barrier, barrier_cb) == 0)
        c->barrier_pending = true;
}

static void poll_cb(uv_prepare_t *p)
{
    struct cluster *c = p->data;
    if (!c->raft_started || c->closing)
        return;
    int st = raft_state(&c->raft);
    enum cluster_role role = st == RAFT_LEADER ? CLUSTER_LEADER
                             : st == RAFT_CANDIDATE ? CLUSTER_CANDIDATE
                             : st == RAFT_FOLLOWER ? CLUSTER_FOLLOWER : CLUSTER_UNAVAILABLE;
    raft_id lid = 0;
    const char *laddr = NULL;
    raft_leader(&c->raft, &lid, &laddr);
    bool changed = role != c->role || lid != c->leader_id;
    if (role == CLUSTER_UNAVAILABLE) {
        char msg[300];
        snprintf(msg, sizeof msg, "raft became unavailable: %s", raft_errmsg(&c->raft));
        uv_prepare_stop(p);
        set_fatal(c, msg);
        return;
    }
    if (!changed) {
        if (role == CLUSTER_LEADER && !c->leader_ready)
            start_barrier(c);
        return;
    }
    if (role != c->role)
        log_info("raft", "%s -> %s (term %llu)", cluster_role_name(c->role), cluster_role_name(role),
                 (unsigned long long)c->raft.current_term);
    if (role == CLUSTER_LEADER && c->role != CLUSTER_LEADER) {
        c->leader_since = cluster_now_ms(c);
        c->leader_ready = false;
    } else if (role != CLUSTER_LEADER) {
        c->leader_since = 0;
        c->leader_ready = false;
    }
    c->role = role;
    c->leader_id = lid;
    snprintf(c->leader_addr, sizeof c->leader_addr, "%s", laddr != NULL ? laddr : "");
    if (role == CLUSTER_LEADER)
        start_barrier(c);
    if (c->o.on_event != NULL)
        c->o.on_event(c, role, c->o.ctx);
}

/* --- leader maintenance: promote registered spares to voters ------------------ */

static void change_done(struct raft_change *req, int status)
{
    struct cluster *c = req->data;
    c->change_pending = false;
    if (status != 0 && !c->closing)
        log_warn("raft", "membership change failed: %s", raft_strerror(status));
}

/* A node added with raft_add is a spare: libraft does not replicate to
 * spares, so it would never learn who leads. It becomes a standby at once
 * (replicated, not voting), and a voter once it registered as a member,
 * which proves it is running and caught up. */
static void maintain_membership(struct cluster *c)
{
    if (c->role != CLUSTER_LEADER || !c->leader_ready || c->change_pending)
        return;
    for (unsigned i = 0; i < c->raft.configuration.n; i++) {
        const struct raft_server *s = &c->raft.configuration.servers[i];
        if (s->role == RAFT_VOTER)
            continue;
        const struct fsm_member *m = fsm_member_by_raft_id(&c->o.fsm->st, s->id);
        int to = s->role == RAFT_SPARE ? RAFT_STANDBY : m != NULL ? RAFT_VOTER : -1;
        if (to < 0)
            continue; /* standby not registered yet */
        c->change.data = c;
        if (raft_assign(&c->raft, &c->change, s->id, to, change_done) == 0) {
            c->change_pending = true;
            log_info("raft", "server %llu (%s) becomes %s", (unsigned long long)s->id,
                     m != NULL ? m->name : s->address, to == RAFT_VOTER ? "a voter" : "a standby");
        }
        return;
    }
}

static void timer_cb(uv_timer_t *t)
{
    struct cluster *c = t->data;
    if (c->closing)
        return;
    if (c->discovering)
        discovery_round(c);
    else
        maintain_membership(c);
}

/* --- start / close -------------------------------------------------------------- */

static void free_cluster(struct cluster *c)
{
    for (size_t i = 0; i < c->n_partners; i++)
        free(c->partners[i]);
    free(c->partners);
    free(c->scope);
    free(c->name);
    free(c->data_dir);
    free(c->self_addr);
    free(c->api_url);
    if (c->secret != NULL) {
        OPENSSL_cleanse(c->secret, c->o.sec.secret_len);
        free(c->secret);
    }
    free(c);
}

int cluster_start(const struct cluster_opts *o, struct cluster **out, char *err, size_t errlen)
{
    *out = NULL;
    struct cluster *c = calloc(1, sizeof *c);
    if (c == NULL)
        return PGW_ENOMEM;
    c->o = *o;
    if (c->o.clock == NULL)
        c->o.clock = &clock_monotonic;
    c->scope = strdup(o->scope);
    c->name = strdup(o->name);
    c->data_dir = strdup(o->data_dir);
    c->self_addr = strdup(o->self_addr);
    c->api_url = strdup(o->api_url != NULL ? o->api_url : "");
    if (o->sec.secret != NULL && o->sec.secret_len > 0) {
        c->secret = malloc(o->sec.secret_len);
        if (c->secret == NULL) {
            free_cluster(c);
            return PGW_ENOMEM;
        }
        memcpy(c->secret, o->sec.secret, o->sec.secret_len);
        c->o.sec.secret = c->secret;
    } else {
        c->o.sec.secret = NULL;
        c->o.sec.secret_len = 0;
    }
    c->partners = calloc(o->n_partners + 1, sizeof *c->partners);
    c->n_partners = o->n_partners;
    if (c->scope == NULL || c->name == NULL || c->data_dir == NULL || c->self_addr == NULL ||
        c->api_url == NULL || c->partners == NULL) {
        free_cluster(c);
        return PGW_ENOMEM;
    }
    for (size_t i = 0; i < o->n_partners; i++)
        c->partners[i] = strdup(o->partners[i]);
    c->o.scope = c->scope;
    c->o.name = c->name;
    c->o.data_dir = c->data_dir;
    c->o.self_addr = c->self_addr;
    c->o.api_url = c->api_url;
    c->o.partners = (const char *const *)c->partners;
    if (c->o.heartbeat_ms == 0 || c->o.heartbeat_ms >= c->o.election_timeout_ms) {
        snprintf(err, errlen, "raft heartbeat (%u ms) must be below the election timeout (%u ms)",
                 c->o.heartbeat_ms, c->o.election_timeout_ms);
        free_cluster(c);
        return PGW_EINVAL;
    }
    int rc = cluster_prepare_data_dir(c->data_dir, err, errlen);
    if (rc != 0) {
        free_cluster(c);
        return rc;
    }
    struct node_file nf;
    bool found;
    rc = check_node_file(c->data_dir, c->scope, c->name, &nf, &found, err, errlen);
    if (rc != 0) {
        free_cluster(c);
        return rc;
    }
    uv_prepare_init(o->loop, &c->poll);
    c->poll.data = c;
    uv_timer_init(o->loop, &c->timer);
    c->timer.data = c;
    c->open_handles = 2;
    c->role = CLUSTER_STARTING;
    rc = transport_start(c, err, errlen);
    if (rc != 0) {
        *out = c;
        cluster_close(c, NULL, NULL);
        *out = NULL;
        return rc;
    }

    if (found) {
        c->id = nf.id;
        rc = raft_setup(c, nf.mode == NODE_MODE_BOOTSTRAP, err, errlen);
        if (rc != 0) {
            *out = c;
            cluster_close(c, NULL, NULL); /* releases what raft_setup opened */
            *out = NULL;
            return rc;
        }
        uv_prepare_start(&c->poll, poll_cb);
        uv_timer_start(&c->timer, timer_cb, 200, 200);
    } else if (c->n_partners == 0) {
        finish_discovery(c, true, 1);
        if (c->fatal[0] != '\0') {
            snprintf(err, errlen, "%s", c->fatal);
            cluster_close(c, NULL, NULL);
            return PGW_EIO;
        }
        uv_timer_start(&c->timer, timer_cb, 200, 200);
    } else {
        c->discovering = true;
        c->discovery_started_ms = cluster_now_ms(c);
        c->last_wait_log_ms = c->discovery_started_ms;
        log_info("raft", "raft.data_dir %s is empty: asking partners whether a cluster exists",
                 c->data_dir);
        uv_timer_start(&c->timer, timer_cb, 0, DISCOVERY_ROUND_MS);
    }
    *out = c;
    return PGW_OK;
}

static void maybe_finish_close(struct cluster *c)
{
    if (c->closed || c->open_handles > 0 || c->probes_inflight > 0 || c->raft_ready ||
        c->transport_closing)
        return;
    c->closed = true;
    c->o.fsm->raft = NULL;
    if (c->close_done != NULL)
        c->close_done(c->close_ctx);
    else
        cluster_free(c); /* a failed start: raft never ran, nobody holds it */
}

void cluster_free(struct cluster *c)
{
    if (c == NULL)
        return;
    if (!c->closed) {
        log_error("raft", "cluster_free before its close finished: leaked");
        return;
    }
    if (c->io_ready)
        raft_uv_close(&c->io);
    if (c->transport_ready)
        transport_free(&c->transport);
    free_cluster(c);
}

static void handle_closed(uv_handle_t *h)
{
    struct cluster *c = h->data;
    c->open_handles--;
    maybe_finish_close(c);
}

static void raft_closed(struct raft *r)
{
    struct cluster *c = r->data;
    c->raft_ready = false;
    maybe_finish_close(c);
}

static void transport_closed(struct raft_uv_transport *t)
{
    struct cluster *c = t->data;
    c->transport_closing = false;
    maybe_finish_close(c);
}

void cluster_close(struct cluster *c, void (*done)(void *ctx), void *ctx)
{
    if (c == NULL || c->closing)
        return;
    c->closing = true;
    c->close_done = done;
    c->close_ctx = ctx;
    c->role = CLUSTER_STOPPED;
    uv_close((uv_handle_t *)&c->poll, handle_closed);
    uv_close((uv_handle_t *)&c->timer, handle_closed);
    if (c->raft_ready) {
        /* raft closes its io, which closes our transport */
        c->raft.data = c;
        raft_close(&c->raft, raft_closed);
    } else if (c->transport_ready) {
        c->transport_closing = true;
        c->transport.data = c;
        c->transport.close(&c->transport, transport_closed);
    }
}

const char *cluster_fatal_error(const struct cluster *c)
{
    return c->fatal[0] ? c->fatal : NULL;
}

enum cluster_role cluster_role(const struct cluster *c)
{
    return c->role;
}

uint64_t cluster_self_id(const struct cluster *c)
{
    return c->id;
}

uint64_t cluster_leader(const struct cluster *c, const char **addr)
{
    if (addr != NULL)
        *addr = c->leader_addr;
    return c->leader_id;
}

uint64_t cluster_leader_since(const struct cluster *c)
{
    return c->role == CLUSTER_LEADER ? c->leader_since : 0;
}

bool cluster_leader_ready(const struct cluster *c)
{
    return c->role == CLUSTER_LEADER && c->leader_ready;
}

struct fsm *cluster_fsm(const struct cluster *c)
{
    return c->o.fsm;
}

void cluster_set_election_timeout(struct cluster *c, unsigned ms)
{
    if (c->raft_ready && ms > c->o.heartbeat_ms && ms != c->o.election_timeout_ms) {
        raft_set_election_timeout(&c->raft, ms);
        c->o.election_timeout_ms = ms;
        log_info("raft", "election timeout now %u ms", ms);
    }
}

void cluster_get_info(const struct cluster *c, struct cluster_info *out)
{
    memset(out, 0, sizeof *out);
    out->id = c->id;
    out->role = c->role;
    out->election_timeout_ms = c->o.election_timeout_ms;
    out->heartbeat_ms = c->o.heartbeat_ms;
    if (!c->raft_started)
        return;
    out->term = c->raft.current_term;
    out->leader_id = c->leader_id;
    snprintf(out->leader_addr, sizeof out->leader_addr, "%s", c->leader_addr);
    out->commit_index = c->raft.commit_index;
    out->last_applied = c->raft.last_applied;
    out->last_index = raft_last_index((struct raft *)&c->raft);
    out->snapshot_index = c->raft.log.snapshot.last_index;
    for (unsigned i = 0; i < c->raft.configuration.n && i < FSM_MAX_MEMBERS; i++) {
        const struct raft_server *s = &c->raft.configuration.servers[i];
        out->servers[i].id = s->id;
        snprintf(out->servers[i].addr, sizeof out->servers[i].addr, "%s", s->address);
        out->servers[i].role = s->role;
        out->n_servers++;
    }
}
