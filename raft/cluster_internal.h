/* The state of one node's Raft membership (struct cluster), shared by the
 * files that make up raft/cluster: cluster.c (start, discovery, role
 * tracking, close) and cluster_changes.c (log appends, membership changes,
 * leadership transfer). Nothing outside raft/cluster*.c includes this. */
#ifndef PGW_RAFT_CLUSTER_INTERNAL_H
#define PGW_RAFT_CLUSTER_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include <raft.h>
#include <raft/uv.h>
#include <uv.h>

#include "common/clock.h"
#include "raft/cluster.h"

struct cluster {
    struct cluster_opts o;
    char *scope, *name, *data_dir, *self_addr, *api_url;
    uint8_t *secret; /* raft.password's bytes; o.sec.secret points here */
    char **partners;
    size_t n_partners;

    struct raft raft;
    struct raft_io io;
    /* libraft's own io close, wrapped (io_close_once) */
    void (*uv_io_close)(struct raft_io *io, raft_io_close_cb cb);
    raft_io_close_cb raft_io_closed; /* raft's callback, until it has run once */
    bool closed;                     /* close done: only cluster_free is left */
    struct raft_uv_transport transport;
    bool transport_ready, io_ready, raft_ready, raft_started;
    bool transport_closing;
    uint64_t id;

    uv_prepare_t poll;
    uv_timer_t timer; /* discovery rounds, then leader maintenance */
    int open_handles;

    enum cluster_role role;
    uint64_t leader_id;
    char leader_addr[64];
    uint64_t leader_since;
    bool leader_ready;
    bool barrier_pending;
    struct raft_barrier barrier;
    uint64_t barrier_term;

    /* discovery */
    bool discovering;
    unsigned probes_inflight;
    unsigned round, answered_uninit;
    bool saw_initialized;
    uint64_t discovery_started_ms, last_wait_log_ms;
    bool join_inflight;

    /* membership */
    bool change_pending;
    struct raft_change change;

    char fatal[256];
    bool closing;
    void (*close_done)(void *);
    void *close_ctx;
};

static inline uint64_t cluster_now_ms(const struct cluster *c)
{
    return clock_now(c->o.clock);
}

#endif
