/* Choosing the member to promote (pure: unit-tested without a cluster).
 *
 * Eligible: a running replica, not a witness, not nofailover /
 * failover_priority <= 0, same system identifier, on the cluster's timeline
 * or newer, not more than maximum_lag_on_failover behind the primary's last
 * known WAL position (checked against positions fetched fresh from each
 * member when the decision is made), and in synchronous mode a member of the
 * synchronous set. Among the eligible: a delayed replica only if nothing
 * else qualifies, then most advanced received WAL, then replayed WAL, then
 * higher failover_priority, then name. Every member that is not eligible
 * gets the reason in plain words. */
#ifndef PGW_HA_CANDIDATE_H
#define PGW_HA_CANDIDATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CAND_REASON_MAX 200

struct cand_member {
    const char *name;
    bool witness;
    bool nofailover;
    int failover_priority;
    bool reachable;           /* fresh status fetched */
    const char *error;        /* why not reachable */
    bool running;             /* PostgreSQL running (not hung) */
    bool in_recovery;
    uint64_t sysid;
    uint32_t timeline;
    uint64_t receive_lsn, replay_lsn;
    bool delayed;             /* recovery_min_apply_delay > 0 */
    bool in_sync_set;
    const char *backoff;      /* why not chosen for a while (lost the lease,
                               * pre_promote refused, founding failed); NULL if not */
};

struct cand_rules {
    uint64_t sysid;            /* 0 = do not check */
    uint32_t timeline;         /* cluster timeline; 0 = do not check */
    uint64_t primary_lsn;      /* last known primary WAL position; 0 = unknown */
    uint64_t max_lag;          /* maximum_lag_on_failover */
    bool ignore_lag;           /* manual failover accepting data loss */
    bool sync_only;            /* synchronous_mode: only the sync set */
    const char *exclude;       /* the failed primary, or NULL */
    const char *only;          /* a named candidate (switchover/failover), or NULL */
};

/* Returns the index of the chosen member, or -1 when nobody qualifies.
 * reasons[i] gets "" for an eligible member, else why not. */
int cand_choose(const struct cand_member *m, size_t n, const struct cand_rules *r,
                char (*reasons)[CAND_REASON_MAX]);

/* Why one member is not eligible ("" if it is). */
void cand_check(const struct cand_member *m, const struct cand_rules *r, char *reason, size_t len);

#endif
