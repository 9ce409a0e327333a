/* Submitting commands from any node. Only the Raft leader may call
 * raft_apply; a follower forwards the encoded command to the leader's REST
 * API (POST /raft/apply, answered once the entry is applied there) and gets
 * the commit result back. Why REST and not the Raft port: the leader's API
 * already has request deadlines, limits and authentication, and the answer
 * must wait for the commit, which raft's one-way streams cannot carry.
 *
 * Every command carries a request id "<member>.<boot nonce>.<seq>". A retry
 * after a leader change re-sends the same id, so the FSM applies it once
 * (raft/fsm.c keeps a window of recent ids). Retries stop at the deadline
 * with a clear, retryable error: PGW_ENOTLEADER (no leader reachable) or
 * PGW_ETIMEDOUT; a refusal by the FSM (stale epoch, conflict) is final. */
#ifndef PGW_RAFT_SUBMIT_H
#define PGW_RAFT_SUBMIT_H

#include <stdint.h>

#include <uv.h>

#include "common/httpc.h"
#include "raft/cluster.h"
#include "raft/fsm.h"

struct submitter;

struct submitter_opts {
    uv_loop_t *loop;
    struct cluster *cluster;
    const char *member;        /* this node's name, used in request ids */
    const char *auth_user;     /* restapi.authentication, when set */
    const char *auth_password;
    /* tls: settings for an https:// leader API (may be NULL); read at each
     * forward, so the owner may update it (SIGHUP) and must keep it alive */
    const struct httpc_tls_opts *tls;
};

int submitter_create(const struct submitter_opts *o, struct submitter **out) PGW_MUST_CHECK;
/* Pending submissions complete (later) with PGW_ECANCELED; `done` runs when
 * everything is released. */
void submitter_close(struct submitter *s, void (*done)(void *ctx), void *ctx);

/* Cluster handle can be attached after start (the daemon creates the
 * submitter before raft). */
void submitter_set_cluster(struct submitter *s, struct cluster *c);

typedef void (*submit_cb)(void *ctx, int status, const struct fsm_result *res, const char *msg);

/* Fills cmd->rid when empty. The callback runs exactly once, never from
 * inside this call. */
int submit_cmd(struct submitter *s, struct fsm_cmd *cmd, uint32_t timeout_ms, submit_cb cb,
               void *ctx) PGW_MUST_CHECK;

/* Like submit_cmd, but a success is reported only once this node has
 * applied the entry too, so a reply built from local state afterwards
 * already shows its effect (REST actions answered by a follower). */
int submit_cmd_applied(struct submitter *s, struct fsm_cmd *cmd, uint32_t timeout_ms, submit_cb cb,
                       void *ctx) PGW_MUST_CHECK;

/* Read barrier: completes once this node has applied every entry that was
 * committed when the call was made (a no-op entry through the leader, then
 * wait for the local FSM to reach its index). */
int submit_read_barrier(struct submitter *s, uint32_t timeout_ms, submit_cb cb, void *ctx)
    PGW_MUST_CHECK;

void submit_new_rid(struct submitter *s, char *buf, size_t len);

/* Counters (metrics). */
struct submit_stats {
    uint64_t submitted, forwarded, retries, failed;
};
void submitter_get_stats(const struct submitter *s, struct submit_stats *out);

#endif
