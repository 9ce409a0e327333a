/* Shared between ha.c (lifecycle, registration, reports), agent.c (the
 * local PostgreSQL state table), controller.c (decisions on the Raft
 * leader) and peers.c (fresh status of members). Not for other modules. */
#ifndef PGW_HA_INTERNAL_H
#define PGW_HA_INTERNAL_H

#include "ha/candidate.h"
#include "ha/ha.h"
#include "ha/lease.h"
#include "ha/watchdog.h"
#include "pg/instance.h"
#include "pg/pgmon.h"
#include "pg/pgnode.h"

#define HA_ERR_MAX 512

/* What the replicated state asks of this node. */
enum agent_goal {
    AG_WAIT = 0,  /* nothing assigned: keep replicating if possible, never run as primary */
    AG_BOOTSTRAP, /* create (or adopt) the cluster */
    AG_PRIMARY,   /* be the primary (promote, start, restart in place) */
    AG_HANDOVER,  /* switchover: stop cleanly and report the final LSN */
    AG_REPLICA,   /* follow the running primary */
};

/* What the local PostgreSQL is. */
enum agent_local {
    AL_UNKNOWN = 0,    /* not observed yet */
    AL_NO_DATA,        /* data dir absent or empty */
    AL_BAD_DATA,       /* non-empty but not a cluster, or another cluster's */
    AL_STOPPED,        /* a cluster, postmaster not running */
    AL_STARTING,       /* starting or stopping */
    AL_PRIMARY,        /* running, not in recovery */
    AL_REPLICA,        /* running, in recovery */
    AL_HUNG,           /* postmaster alive, not answering */
};

const char *agent_goal_name(enum agent_goal g);
const char *agent_local_name(enum agent_local l);

struct agent {
    struct pgnode *node;
    struct pgmon *mon;
    struct agent_hooks *hooks; /* operator hooks (agent_hooks.c), created on first use */
    struct lease_holder lease;
    int lease_fd;             /* lease file, rewritten on each confirmed renewal */
    bool renew_inflight;
    bool busy;                /* one PostgreSQL action at a time */
    char op[48];              /* the action running */
    uint64_t op_started_ms;
    char state_text[48];      /* Patroni-style state shown to operators */
    char last_error[HA_ERR_MAX];
    char needs_reinit[HA_ERR_MAX];
    uint64_t reinit_retry_ms; /* when to try rejoining again */
    bool was_primary;         /* data dir has no standby.signal */
    uint64_t stopped_sysid;   /* system identifier of the stopped data dir (0: none) */
    bool standby_following;   /* standby leader: configured to follow the remote primary */
    uint64_t standby_cfg_gen; /* config_gen when it was */
    uint64_t primary_down_since_ms;
    uint64_t upstream_lost_since_ms;
    bool upstream_lost_said;  /* why it does not rejoin was logged for this episode */
    bool upstream_rechecked;  /* stopped once to check for a divergence the timelines hide */
    bool rejoin_is_check;     /* ...and the rejoin that follows is that check only */
    char upstream_host[256];
    uint16_t upstream_port;
    uint64_t running_reported_epoch;
    uint64_t stopped_reported_epoch;
    uint64_t released_epoch;
    bool fencing;             /* killed, waiting for every process of the instance to go */
    bool seen_primary;        /* the monitor saw it out of recovery since it last stopped */
    struct pginst inst;       /* every process of the local instance (pg/instance.h) */
    unsigned start_failures;
    uint64_t last_start_ms;
    uint64_t slots_sig;       /* what the slots were last synced for (agent_slots.c) */
    uint64_t slots_synced_ms; /* when */
    int64_t slots_postmaster;  /* the postmaster (its start time) they were synced on */
    /* replica creation and bootstrap failures (agent_replica.c) */
    unsigned clone_failures;
    uint64_t clone_next_ms;       /* no clone attempt before this */
    uint64_t no_primary_since_ms; /* the cluster has had no running primary since (0: it has one) */
    char bootstrap_failed[HA_ERR_MAX]; /* bootstrap failed here: never again until a restart */
    uint64_t founded_epoch;   /* epoch in which this node ran bootstrap/adopt */
    uint64_t hung_epoch;      /* epoch in which PostgreSQL was killed for hanging */
    /* PGW_TEST_DISABLE_FENCING=1: a deliberately broken build for the chaos
     * suite's self-test (it must detect the double primary this causes) */
    bool test_no_fencing;
    struct watchdog wd;
    bool wd_warned;
    /* operator requests */
    bool restart_pending;
    struct ha_restart_req restart;
    ha_action_cb restart_cb;
    void *restart_ctx;
    bool reinit_pending;
    ha_action_cb reinit_cb;
    void *reinit_ctx;
    uint64_t config_gen, config_applied_gen;
    /* What pgnode reads during an action: swapped only between actions, so
     * a configuration change never frees what a running step uses. */
    /* synchronous replication (agent_sync.c) */
    bool sync_inflight, sync_managed, sync_names_set;
    char sync_applied[1024];
    uint64_t sync_change_lsn;  /* a joining standby must have flushed past it; UINT64_MAX: not known yet */
    uint64_t sync_reload_seq;  /* status query count when the reload was done (UINT64_MAX: pending) */
    uint64_t sync_seen_seq;    /* status query in which the walsenders had applied it (0: not yet) */
    struct cfg_dcs node_dcs;
    bool node_dcs_set;
    uint64_t node_config_gen;
};

struct peer_status {
    char name[FSM_NAME_MAX];
    bool ok;
    char error[160];
    bool running, in_recovery;
    uint64_t sysid;
    uint32_t timeline;
    uint64_t lsn, receive_lsn, replay_lsn;
    bool delayed;
};

struct controller {
    bool fetching;             /* a round of fresh status requests is out */
    bool submitting;           /* a decision is being committed */
    bool config_inflight;
    uint64_t round;
    char note[HA_ERR_MAX];     /* why nothing was done */
    uint64_t note_logged_ms;
    char reason_member[FSM_MAX_MEMBERS][FSM_NAME_MAX];
    char reason[FSM_MAX_MEMBERS][CAND_REASON_MAX];
    unsigned n_reasons;
    uint64_t stopped_since_ms; /* switchover: old primary stopped at */
    uint64_t stopped_epoch;
    uint64_t backoff_epoch;    /* epoch whose holder was put in backoff */
    uint64_t founding_wait_since; /* first time a founder without data could be chosen */
    /* members not chosen automatically until backoff_until, and why */
    char backoff_member[FSM_MAX_MEMBERS][FSM_NAME_MAX];
    uint64_t backoff_until[FSM_MAX_MEMBERS];
    enum ctl_backoff_why { BACKOFF_LEASE_LOST = 1, BACKOFF_FOUNDING } backoff_why[FSM_MAX_MEMBERS];
    unsigned n_backoff;
};

struct ha {
    uv_loop_t *loop;
    const struct cfg *cfg;
    struct cluster *cluster;
    struct fsm *fsm;
    struct submitter *sub;
    const struct clock_src *clock;
    struct keeper *keeper;
    bool keeper_dead;
    bool witness;

    struct cfg_dcs dcs;
    uint64_t dcs_version; /* FSM config_version in use; UINT64_MAX = bootstrap.dcs */
    struct lease_timing timing;

    uv_timer_t tick;
    uv_timer_t kick;
    /* fires at the lease's fence deadline: fencing must not wait for the
     * next tick (up to loop_wait late), or the keeper, which acts
     * KEEPER_GRACE_MS after it, gets there first */
    uv_timer_t fence_timer;
    /* fires when the next renewal is due (confirmed send + loop_wait): the
     * tick's phase is not the renewal's, and waiting for the next tick
     * could leave up to 2 x loop_wait between renewals, eating the
     * retry_timeout margin the timing rule counts on (with Patroni's
     * 30/10/10, ttl - retry_timeout = 2 x loop_wait: no margin at all) */
    uv_timer_t renew_timer;
    uint64_t keeper_fences_seen; /* keeper_fences() already accounted for */
    int open_handles;
    uint64_t last_tick_ms;
    uint64_t last_periodic_tick_ms; /* for the tick-delay histogram */
    uint64_t started_ms;

    bool fresh;               /* a read barrier completed since start */
    bool barrier_inflight;
    bool registered;
    bool register_inflight;
    char register_sig[1024];
    bool report_inflight;
    uint64_t last_report_ms;

    struct agent ag;
    struct controller ctl;
    struct backup *bk; /* NULL when backups are off */
    struct ha_stats stats;

    bool shutting_down;
    bool handover_requested;
    uint64_t shutdown_deadline_ms;
    void (*shutdown_done)(void *);
    void *shutdown_ctx;
    bool closing;
    bool close_reported;
    bool fence_may_disarm;    /* decided in ha_close, before the agent closes */
    bool start_failed;
    unsigned async_inflight;  /* peer fetches and local status requests */
    void (*close_done)(void *);
    void *close_ctx;
};

uint64_t ha_now(const struct ha *h);
void ha_async_done(struct ha *h);
/* Step at this monotonic ms (the lease's fence deadline); 0 disarms. */
void ha_arm_fence_timer(struct ha *h, uint64_t deadline_ms);
/* Run a step at due_ms (monotonic, ha_now's clock); 0 stops it. */
void ha_arm_renew_timer(struct ha *h, uint64_t due_ms);
const char *ha_name(const struct ha *h);
bool ha_paused(const struct ha *h);

/* agent.c */
int agent_init(struct ha *h, char *err, size_t errlen);
void agent_step(struct ha *h);
void agent_close(struct ha *h);
bool agent_idle(const struct ha *h);
enum agent_local agent_local_state(struct ha *h);
void agent_fill_report(struct ha *h, struct fsm_report *r);
void agent_shutdown_step(struct ha *h);
/* The fence keeper killed PostgreSQL (this process was too late). */
void agent_keeper_fenced(struct ha *h);
/* PostgreSQL could be accepting writes as a primary: a process of the
 * instance runs and it is not known to be a standby (agent_lease.c). */
bool agent_pg_may_write(struct ha *h);

/* controller.c */
void controller_step(struct ha *h);

/* peers.c: fresh status of every member with PostgreSQL (the local one
 * through the agent), all requests in parallel, one callback at the end. */
typedef void (*peers_done_cb)(struct ha *h, struct peer_status *st, size_t n, void *ctx);
int peers_fetch(struct ha *h, peers_done_cb cb, void *ctx) PGW_MUST_CHECK;
void peer_status_from_json(const json_t *j, struct peer_status *out);

#endif
