/* This node's membership of the Raft group: libraft on the daemon's loop
 * with our transport (raft/transport.h), the FSM (raft/fsm.h), and the
 * lifecycle around them: node ids, first-start discovery, bootstrap or join,
 * leadership tracking, applying commands, membership changes.
 *
 * Node ids. Every node of the initial cluster must build the identical first
 * configuration, so those ids come from the sorted list raft.self_addr +
 * raft.partner_addrs (id = position + 1). The id is then kept in
 * <data_dir>/pgwarden-node.json. A node whose data dir is empty first asks
 * its partners (a PROBE on their Raft port) whether a cluster exists:
 *   - nobody has one: bootstrap that deterministic configuration;
 *   - one exists and lists our address under an id that never registered
 *     as a member: start under that id (a late first start);
 *   - otherwise (a new node, or one that lost its data dir): ask the leader
 *     to add us under a fresh id (libraft wedges a node that comes back
 *     empty under its old id), replacing the stale entry for our address.
 *
 * Leadership is polled from a uv_prepare handle (libraft has no state-change
 * callback; a prepare runs after timers and I/O, right before the loop
 * blocks, so changes are seen in the same iteration). */
#ifndef PGW_RAFT_CLUSTER_H
#define PGW_RAFT_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <raft.h>
#include <uv.h>

#include "common/clock.h"
#include "common/status.h"
#include "raft/fsm.h"
#include "raft/transport.h"

struct cluster;

enum cluster_role { CLUSTER_STARTING = 0, CLUSTER_FOLLOWER, CLUSTER_CANDIDATE, CLUSTER_LEADER,
                    CLUSTER_UNAVAILABLE, CLUSTER_STOPPED };

const char *cluster_role_name(enum cluster_role r);

/* Called on every role or leader change; `since_ms` is the local monotonic
 * time the new role was first observed. */
typedef void (*cluster_event_fn)(struct cluster *c, enum cluster_role role, void *ctx);

/* Asks the current leader (over its REST API) to add this node; the
 * transport-agnostic hook keeps raft/ free of HTTP details. The callback
 * receives the id assigned, or a negative status with a message. */
typedef void (*cluster_join_done_fn)(struct cluster *c, int status, uint64_t id, const char *msg);
typedef int (*cluster_join_fn)(struct cluster *c, const char *leader_api_url, const char *name,
                               const char *raft_addr, cluster_join_done_fn done, void *ctx);

struct cluster_opts {
    uv_loop_t *loop;
    const char *scope;
    const char *name;
    const char *data_dir;
    const char *self_addr;
    const char *const *partners;
    size_t n_partners;
    const char *api_url;               /* ours: told to probing peers */
    struct transport_security sec;     /* raft.password (copied), TLS context (borrowed) */
    unsigned election_timeout_ms;
    unsigned heartbeat_ms;
    unsigned snapshot_threshold;       /* default 512 */
    unsigned snapshot_trailing;        /* default 128 */
    struct fsm *fsm;
    const struct clock_src *clock;
    cluster_event_fn on_event;
    cluster_join_fn join;
    void *ctx;
};

/* Validate the data dir and start (discovery, then raft_start). Errors that
 * must stop the daemon (bad data dir, address in use, data dir of another
 * node or cluster) are returned with a message. Discovery itself is
 * asynchronous; until it ends the role is CLUSTER_STARTING. */
/* raft.data_dir exists (created if its parent does), is a directory and is
 * writable by this user; err says which is not. One process per data dir:
 * the daemon locks <data_dir>/pgwarden.lock right after this, before
 * anything else starts (cmd/run.c, common/dirlock.h). */
int cluster_prepare_data_dir(const char *dir, char *err, size_t errlen) PGW_MUST_CHECK;
/* The same checks without creating anything (`pgwarden validate`, and run
 * before it touches the disk): raft.data_dir is a usable directory, or could
 * be created, and any node file in it names this scope and member; raft
 * files without a node file are refused as cluster_start refuses them. */
int cluster_check_data_dir(const char *dir, const char *scope, const char *name, char *err,
                           size_t errlen) PGW_MUST_CHECK;
int cluster_start(const struct cluster_opts *opts, struct cluster **out, char *err, size_t errlen)
    PGW_MUST_CHECK;

/* Close raft and the transport; `done` runs once both are closed. The
 * memory stays until cluster_free, called once the loop has stopped: libraft
 * can finish a close of its own after it reported itself closed. With done
 * NULL the cluster frees itself once closed. */
void cluster_close(struct cluster *c, void (*done)(void *ctx), void *ctx);
void cluster_free(struct cluster *c);

/* Set when a fatal error happened after start (e.g. libraft became
 * unavailable); the daemon should stop. NULL otherwise. */
const char *cluster_fatal_error(const struct cluster *c);

enum cluster_role cluster_role(const struct cluster *c);
uint64_t cluster_self_id(const struct cluster *c);
/* Leader id and address as this node knows them (0/"" when none). */
uint64_t cluster_leader(const struct cluster *c, const char **addr);
/* Local monotonic ms since this node is leader (0 when not leader). */
uint64_t cluster_leader_since(const struct cluster *c);
/* True once this node, as leader, has committed a barrier in its term: its
 * FSM then reflects every committed entry (Raft §6.4). */
bool cluster_leader_ready(const struct cluster *c);
struct fsm *cluster_fsm(const struct cluster *c);

/* Apply a command on this node, which must be the leader. */
typedef void (*cluster_apply_cb)(void *ctx, int status, const struct fsm_result *res,
                                 const char *msg);
int cluster_apply(struct cluster *c, const struct fsm_cmd *cmd, cluster_apply_cb cb, void *ctx)
    PGW_MUST_CHECK;
/* Same with an already encoded command (forwarded from a follower); the
 * bytes are validated first. */
int cluster_apply_raw(struct cluster *c, const char *buf, size_t len, cluster_apply_cb cb, void *ctx)
    PGW_MUST_CHECK;

/* Membership (leader only). add: a new server as spare (promoted to voter
 * by the leader once the node has registered as a member, i.e. is running
 * and caught up). If `addr` already belongs to a server, that stale entry is
 * removed first. The callback gets the id. */
typedef void (*cluster_change_cb)(void *ctx, int status, uint64_t id, const char *msg);
int cluster_member_add(struct cluster *c, const char *addr, cluster_change_cb cb, void *ctx)
    PGW_MUST_CHECK;
int cluster_member_remove(struct cluster *c, uint64_t id, cluster_change_cb cb, void *ctx)
    PGW_MUST_CHECK;
int cluster_transfer(struct cluster *c, uint64_t id, cluster_change_cb cb, void *ctx) PGW_MUST_CHECK;

/* Observability (GET /raft). */
struct cluster_server {
    uint64_t id;
    char addr[64];
    int role; /* RAFT_VOTER / RAFT_STANDBY / RAFT_SPARE */
};
struct cluster_info {
    uint64_t id;
    enum cluster_role role;
    uint64_t term;
    uint64_t leader_id;
    char leader_addr[64];
    uint64_t commit_index, last_applied, last_index, snapshot_index;
    struct cluster_server servers[FSM_MAX_MEMBERS];
    unsigned n_servers;
    unsigned election_timeout_ms, heartbeat_ms;
};
void cluster_get_info(const struct cluster *c, struct cluster_info *out);

/* Runtime change of the election timeout (ttl changed through PATCH
 * /config); the heartbeat period is fixed at start by libraft. */
void cluster_set_election_timeout(struct cluster *c, unsigned ms);

/* Election timeout and heartbeat derived from the lease length (ttl):
 * ET = clamp(ttl/10, 100, 2000) ms, HB = max(ET/10, 10) ms. A leader crash
 * then costs about ET..2ET with pre-vote, well inside ttl - retry_timeout. */
void cluster_timing_from_ttl(uint32_t ttl_ms, unsigned *et_ms, unsigned *hb_ms);

/* Initial ids: position + 1 of self_addr in the sorted list of all addresses. */
uint64_t cluster_initial_id(const char *self_addr, const char *const *partners, size_t n);

#endif
