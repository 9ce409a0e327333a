/* High availability: the node agent (every node with PostgreSQL), the
 * controller (whichever node leads Raft) and the primary lease that ties
 * them together. See DESIGN.md "Safety" for the invariants.
 *
 * This header is what the daemon (cmd/run.c) and the REST handlers use:
 * lifecycle, configuration reload, graceful shutdown, and read-only views of
 * the node's state for the health endpoints, which never wait. */
#ifndef PGW_HA_HA_H
#define PGW_HA_HA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <uv.h>

#include "common/cfg.h"
#include "common/clock.h"
#include "raft/cluster.h"
#include "raft/fsm.h"
#include "raft/submit.h"

struct keeper;

struct ha;

struct ha_opts {
    uv_loop_t *loop;
    const struct cfg *cfg;       /* borrowed; replaced with ha_set_config */
    struct cluster *cluster;
    struct fsm *fsm;
    struct submitter *sub;
    const struct clock_src *clock;
    struct keeper *keeper;       /* fence keeper (data nodes), may be NULL */
};

/* On failure *out may still be set: close and free it like a started one. */
int ha_start(const struct ha_opts *o, struct ha **out, char *err, size_t errlen) PGW_MUST_CHECK;
/* New local configuration (SIGHUP): tags, parameters, pg_hba, log level... */
void ha_set_config(struct ha *h, const struct cfg *cfg);
/* Called by the daemon on FSM changes and Raft role changes: re-evaluate soon. */
void ha_kick(struct ha *h);
/* Graceful stop (SIGTERM): on a running primary, hand the role over with a
 * switchover first; then stop PostgreSQL (unless paused); `done` runs when
 * it is safe to exit. */
void ha_shutdown(struct ha *h, void (*done)(void *ctx), void *ctx);
/* Stop acting: timers, PostgreSQL monitor and actions end; `done` runs once
 * nothing of ha's own is pending. Submissions made through the submitter
 * may still call back (and see a closing ha): close the submitter before
 * ha_free(). */
void ha_close(struct ha *h, void (*done)(void *ctx), void *ctx);
void ha_free(struct ha *h);
/* After ha_close: pgwarden may disarm the fence keeper, because PostgreSQL
 * cannot be writing as a primary (no process of the instance runs, or it
 * runs as a standby), or maintenance mode left it running on purpose, or
 * this is a witness. False when it was never decided. */
bool ha_fence_may_disarm(const struct ha *h);

/* The dynamic configuration in effect (the cluster's, or bootstrap.dcs until
 * the cluster has one). */
const struct cfg_dcs *ha_dcs(const struct ha *h);

/* --- views for the REST API (answered from memory) --------------------- */

struct ha_pg_view {
    bool present;            /* this node runs PostgreSQL (not a witness) */
    const char *state;       /* running, stopped, starting, creating replica, hung, ... */
    bool running;            /* PostgreSQL answered its last probe */
    bool in_recovery;
    int server_version;
    uint32_t timeline;
    uint64_t wal_lsn, received_lsn, replayed_lsn;
    bool has_replay_ts;
    int64_t replay_ts_ms;
    bool replay_paused;
    uint64_t sysid;
    int64_t postmaster_start_ms;
    bool pending_restart;
    const char *repl_state;  /* "streaming", "in archive recovery" or "" */
    bool status_known;
    /* pg_stat_archiver (present when the status query read it) */
    bool archiver_known;
    uint64_t archived_count, archive_failed_count;
    int64_t last_archived_ms, last_archive_failed_ms; /* epoch ms, 0: never */
    bool archive_lag_known;
    uint64_t archive_lag_bytes;
};

struct ha_view {
    const char *role;        /* primary | replica | standby_leader | demoted | uninitialized | witness */
    bool lease_serving;      /* holds the primary lease and may answer 200 */
    uint64_t lease_expires_in_ms;
    uint64_t epoch;
    bool paused;
    struct ha_pg_view pg;
    bool loop_alive;         /* the HA tick ran within 2 x ttl */
    const char *last_error;  /* last failed action, "" if none */
};

void ha_get_view(const struct ha *h, struct ha_view *out);

/* Fresh local status for the controller's decisions (GET /pgwarden/status):
 * a new PostgreSQL status query is run first (bounded by retry_timeout). */
typedef void (*ha_status_cb)(void *ctx, json_t *status /* owned by callee */);
void ha_local_status(struct ha *h, bool fresh, ha_status_cb cb, void *ctx);

/* Per-member reason why it cannot be a failover candidate, "" if it can
 * (from the controller's last decision round; NULL when unknown). */
const char *ha_candidate_reason(const struct ha *h, const char *member);
/* Why a member could not be promoted, judged from the replicated reports
 * (any node can answer; "" when it could be); operator_named: as the
 * candidate an operator named, not as an automatic choice. */
void ha_member_eligibility(const struct ha *h, const char *member, bool operator_named, char *buf,
                           size_t len);
/* The controller's last explanation when it could not act ("" if none). */
const char *ha_controller_note(const struct ha *h);

/* --- backups (ha/backup.h) ------------------------------------------------ */

/* GET /backup: NULL when backups are off on this node. */
json_t *ha_backup_status(const struct ha *h);
/* POST /backup: PGW_ENOTFOUND when off; else backup_request's statuses. */
int ha_backup_request(struct ha *h, const char *type, char *why, size_t whylen);
struct backup_metrics;
/* false when backups are off on this node */
bool ha_backup_metrics(const struct ha *h, struct backup_metrics *m);

/* --- operator requests (POST /restart, /reinitialize, /reload) --------- */

typedef void (*ha_action_cb)(void *ctx, int status, const char *msg);

struct ha_restart_req {
    bool only_pending;          /* restart only when a setting needs it */
    const char *role;           /* NULL/"any", "primary" or "replica": only if the node is that */
    uint32_t timeout_ms;        /* 0 = pg_ctl_timeout */
    uint64_t scheduled_wall_ms; /* 0 = now */
};
/* Restart PostgreSQL in place (a primary keeps its role and lease). Now:
 * the callback runs when it is done; scheduled: the callback runs at once
 * with PGW_OK and msg "scheduled". PGW_EREFUSED (msg says why) when the
 * conditions do not match, PGW_EBUSY when one is already scheduled. */
int ha_request_restart(struct ha *h, const struct ha_restart_req *r, ha_action_cb cb, void *ctx,
                       char *why, size_t whylen) PGW_MUST_CHECK;
/* Delete a scheduled restart: PGW_ENOTFOUND when there is none. */
int ha_cancel_restart(struct ha *h) PGW_MUST_CHECK;
/* Wall ms of the scheduled restart, 0 if none. */
uint64_t ha_scheduled_restart(const struct ha *h);
/* Reinitialize this replica: stop, move the data dir aside (never deleted),
 * clone again from the primary. The callback runs once the old data is out
 * of the way. Refused on the primary or without a running primary. */
int ha_request_reinit(struct ha *h, bool force, ha_action_cb cb, void *ctx, char *why,
                      size_t whylen) PGW_MUST_CHECK;

/* Upper bounds (ms) of the tick-delay histogram buckets; the last bucket
 * (+Inf) is implied. */
#define HA_TICK_DELAY_BOUNDS_MS {1, 5, 10, 50, 100, 500}
#define HA_TICK_DELAY_BUCKETS 7

/* Counters for /metrics. */
struct ha_stats {
    uint64_t failovers, switchovers, fences, lease_renewals, lease_renew_failures;
    /* How late each periodic tick ran after its schedule (loop_wait after
     * the previous one): what the REST load or a slow callback costs the
     * HA loop. bucket[i] counts delays <= bound i (not cumulative). */
    uint64_t tick_delay_bucket[HA_TICK_DELAY_BUCKETS];
    uint64_t ticks;
    double tick_delay_sum_ms;
};
void ha_get_stats(const struct ha *h, struct ha_stats *out);

#endif
