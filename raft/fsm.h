/* The replicated cluster state: what etcd keys hold for Patroni, here as one
 * small state machine changed only through Raft (fsm_apply). Every node
 * applies the same commands in the same order and so holds the same state;
 * snapshots serialise it to canonical JSON, and restore gives it back
 * byte-for-byte (a unit test checks that).
 *
 * Besides the replicated state, the FSM object keeps a little local,
 * non-replicated bookkeeping that must be taken where commands are applied:
 * the local monotonic time at which the current lease was last renewed and
 * each member last reported. The controller judges lease expiry with those
 * times (DESIGN.md, invariant 3). They are never part of a snapshot. */
#ifndef PGW_RAFT_FSM_H
#define PGW_RAFT_FSM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <raft.h>

#include "common/clock.h"
#include "raft/fsm_cmd.h"

#define FSM_HISTORY_MAX 64
#define FSM_BACKUPS_MAX 16
#define FSM_RID_WINDOW 1024
#define FSM_SNAPSHOT_VERSION 1
#define FSM_RESULT_RING 256

enum fsm_primary_state {
    FSM_PRIMARY_NONE = 0,      /* no primary assigned (vacant) */
    FSM_PRIMARY_BOOTSTRAPPING, /* assigned to create or adopt the cluster */
    FSM_PRIMARY_PROMOTING,     /* assigned, promotion not yet confirmed */
    FSM_PRIMARY_RUNNING,       /* confirmed primary */
    FSM_PRIMARY_DEMOTING,      /* switchover: asked to stop and hand over */
    FSM_PRIMARY_STOPPED,       /* stopped cleanly, final LSN known, lease released */
};

const char *fsm_primary_state_name(enum fsm_primary_state s);

struct fsm_primary {
    char member[FSM_NAME_MAX]; /* "" when NONE and never assigned */
    uint64_t epoch;            /* increases with every assignment; 0 = never */
    enum fsm_primary_state state;
    uint32_t timeline;
    uint64_t lsn;              /* primary's WAL position at its last renewal */
    char target[FSM_NAME_MAX]; /* switchover candidate (DEMOTING/STOPPED) */
    uint64_t final_lsn;        /* STOPPED: shutdown checkpoint end */
    char reason[FSM_TEXT_MAX]; /* why this record last changed */
    uint64_t renewals;         /* count of renewals this epoch */
    /* the longest ttl the holder may count on after its latest renewal (the
     * one it was sent under, or the one it held meanwhile); 0: not known */
    uint32_t lease_ttl_ms;
    /* Who may have written as primary before this epoch, for a pre_promote
     * hook that fences it (STONITH). former: the member that last reached
     * RUNNING (confirmed primary). previous: the holder of the epoch before
     * this one, unless its promotion was refused (then that epoch's own
     * previous): it may have promoted without confirming it. Usually both
     * name the same member; "" when unknown (never assigned, or a snapshot
     * written before these fields existed). */
    char former[FSM_NAME_MAX];
    char previous[FSM_NAME_MAX];
};

struct fsm_member {
    char name[FSM_NAME_MAX];
    uint64_t raft_id;
    char raft_addr[FSM_ADDR_MAX];
    char api_url[FSM_URL_MAX];
    char conn_host[FSM_URL_MAX];
    uint16_t conn_port;
    bool witness;
    json_t *tags; /* object, never NULL */
    uint32_t level; /* FSM_LEVEL its binary registered with (0: older) */
    bool reported;
    struct fsm_report report;
    uint64_t report_index; /* Raft index of the last report */
    /* promotions this member refused (pre_promote failed), and the epoch of
     * the last one; 0 if never (snapshot fields only when non-zero) */
    uint64_t promote_refusals;
    uint64_t refused_epoch;
    /* local, not replicated: monotonic ms when the last report was applied here */
    uint64_t local_report_ms;
    /* local: monotonic ms when its last refusal was applied here (or the
     * snapshot restored while the role it refused was still vacant); 0 if none */
    uint64_t local_refused_ms;
};

struct fsm_switchover {
    bool pending;
    bool failover;
    char from[FSM_NAME_MAX];
    char to[FSM_NAME_MAX];
    uint64_t scheduled_wall_ms;
    bool allow_data_loss;
    uint64_t requested_wall_ms;
};

struct fsm_history_entry {
    uint32_t timeline; /* the timeline that ended */
    uint64_t lsn;      /* where it ended */
    char reason[FSM_TEXT_MAX];
    uint64_t wall_ms;
    char new_leader[FSM_NAME_MAX];
};

/* A backup that ended on the primary (ha/backup.c), newest last. */
struct fsm_backup_rec {
    char member[FSM_NAME_MAX];
    char type[8];
    char label[64];
    bool ok;
    uint64_t started_wall_ms, ended_wall_ms;
    char result[FSM_TEXT_MAX];
};

struct fsm_result {
    int status;             /* PGW_OK or negative */
    char msg[FSM_TEXT_MAX]; /* reason when refused */
    uint64_t index;         /* Raft index of the entry */
};

struct fsm_rid {
    char rid[FSM_RID_MAX];
    int status;
};

struct fsm_state {
    char sysid[24];          /* PostgreSQL system identifier, "" until initialized */
    json_t *config;          /* dynamic configuration (object); NULL until set */
    uint64_t config_version; /* bumps on each CONFIG_SET */
    bool pause;
    struct fsm_primary primary;
    struct fsm_member members[FSM_MAX_MEMBERS];
    unsigned n_members;
    struct fsm_switchover sw;
    char sync[FSM_MAX_SYNC][FSM_NAME_MAX];
    unsigned n_sync;
    uint64_t sync_epoch; /* primary epoch the sync set belongs to */
    unsigned sync_count; /* quorum: commits are acknowledged by ANY sync_count of the set */
    bool sync_quorum;
    uint64_t sync_version; /* bumps with every change of the set (compare-and-set) */
    struct fsm_history_entry history[FSM_HISTORY_MAX];
    unsigned n_history;
    struct fsm_backup_rec backups[FSM_BACKUPS_MAX]; /* the newest, oldest first */
    unsigned n_backups;
    struct fsm_rid rids[FSM_RID_WINDOW]; /* ring of recent request ids */
    unsigned rid_next, n_rids;
    uint64_t applied_index;
};

struct fsm;

/* Called after every applied command (also refused ones) so the agent and
 * controller can react at once instead of on their next tick. */
typedef void (*fsm_change_fn)(struct fsm *f, const struct fsm_cmd *cmd,
                              const struct fsm_result *res, void *ctx);

struct fsm {
    struct raft_fsm raft_fsm; /* handed to raft_init */
    struct fsm_state st;
    const struct clock_src *clock;
    /* local: monotonic ms when the current lease was last renewed (or the
     * current epoch assigned, or a snapshot restored) on this node */
    uint64_t local_lease_ms;
    /* local: monotonic ms when this node last applied a committed entry
     * through Raft (0: not yet). A commit needs a majority, so this is the
     * last time this node was in contact with one (patroni_dcs_last_seen);
     * members report every loop_wait, so it advances at least that often. */
    uint64_t local_commit_ms;
    /* Results handed to raft's apply callback, by index modulo the ring size:
     * libraft 0.15 runs the callback right after apply, later versions queue
     * callbacks for a batch, so each entry gets its own slot. */
    struct fsm_result results[FSM_RESULT_RING];
    struct raft *raft;              /* set by the cluster; NULL in unit tests */
    fsm_change_fn on_change;
    void *on_change_ctx;
};

void fsm_init(struct fsm *f, const struct clock_src *clock);
void fsm_close(struct fsm *f);

/* Apply one encoded command at Raft index `index` (0 in unit tests). Never
 * fails at the Raft level: a refused command leaves the state unchanged and
 * reports why in the result. */
const struct fsm_result *fsm_apply_buf(struct fsm *f, const void *buf, size_t len, uint64_t index);

/* Canonical JSON of the replicated state (malloc'd). */
char *fsm_state_dump(const struct fsm_state *st);
/* Replace the state from a dump; returns PGW_EINVAL with err on bad input. */
int fsm_state_load(struct fsm *f, const char *text, size_t len, char *err, size_t errlen)
    PGW_MUST_CHECK;

const struct fsm_member *fsm_member_find(const struct fsm_state *st, const char *name);
/* The lowest FSM_LEVEL any member registered with: a command may carry a
 * condition of level L only when this is at least L (0 with no member). */
uint32_t fsm_cluster_level(const struct fsm_state *st);
const struct fsm_member *fsm_member_by_raft_id(const struct fsm_state *st, uint64_t id);
/* Member of the synchronous set of the CURRENT primary epoch (a set
 * recorded under an earlier primary says nothing about this one). */
bool fsm_in_sync_set(const struct fsm_state *st, const char *name);
unsigned fsm_sync_size(const struct fsm_state *st);

/* Tags helpers (Patroni semantics): failover_priority <= 0 means nofailover. */
bool fsm_member_nofailover(const struct fsm_member *m);
int fsm_member_failover_priority(const struct fsm_member *m);
bool fsm_member_tag_bool(const struct fsm_member *m, const char *tag);

/* The member refused a promotion (pre_promote) less than window_ms ago, as
 * judged on this node's monotonic clock (now_ms) from when the refusal was
 * applied here: every node, so a new Raft leader too, backs it off. */
bool fsm_member_refused_recently(const struct fsm_member *m, uint64_t now_ms, uint64_t window_ms);

#endif
