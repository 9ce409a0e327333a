/* Synchronous replication: which standbys the primary waits for, and the
 * text of synchronous_standby_names (pure: unit-tested).
 *
 * Ordering keeps the invariant "every member of the replicated sync set has
 * every acknowledged commit" at each instant (issue 7):
 *   on (FIRST n): remove from the replicated set first, then from
 *     PostgreSQL; add to PostgreSQL first, wait until the standby reports
 *     sync and has flushed past the position of the change, then record it.
 *   quorum (ANY k): the replicated set may only grow before PostgreSQL's
 *     list does (a larger set makes promotion stricter), and shrinks only
 *     once k members of the new list have flushed past the change. */
#ifndef PGW_HA_SYNC_H
#define PGW_HA_SYNC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SYNC_NAME_MAX 64
#define SYNC_MAX 16
#define SYNC_PLACEHOLDER "pgwarden_strict_placeholder"

struct sync_standby {
    const char *name;
    bool streaming;         /* pg_stat_replication.state = streaming */
    const char *sync_state; /* async | potential | sync | quorum */
    uint64_t flush_lsn;
    int sync_priority;      /* tag; <= 0 never synchronous */
    bool nosync;            /* tag */
    bool reporting;         /* its pgwarden still reports to the cluster */
    bool in_set;            /* already in the replicated sync set */
};

struct sync_choice_in {
    const struct sync_standby *s;
    size_t n;
    unsigned node_count;  /* synchronous_node_count */
    int64_t max_lag;      /* maximum_lag_on_syncnode; 0 or less = off, as in Patroni */
    uint64_t primary_lsn;
    bool quorum;
};

/* The standbys the primary should wait for, best first: at most
 * node_count in FIRST mode, every eligible one in quorum mode. Returns the
 * count written to out. */
unsigned sync_choose(const struct sync_choice_in *in, char (*out)[SYNC_NAME_MAX], unsigned max);

/* synchronous_standby_names for the chosen members: "FIRST n (...)" or
 * "ANY k (...)". strict: never fewer than `count` required acknowledgements
 * (missing ones are a placeholder nobody can satisfy, so commits wait);
 * otherwise with nobody chosen the result is "" (asynchronous). */
void sync_standby_names(bool quorum, unsigned count, char (*members)[SYNC_NAME_MAX], unsigned n,
                        bool strict, char *buf, size_t len);

#endif
