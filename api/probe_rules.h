/* Pure decisions behind the health checks and the Patroni metrics that
 * need more than one fact: which kind of standby this node is, what the
 * synchronous and quorum endpoints answer, how a state is encoded in
 * patroni_postgres_state, and when the DCS (here: a Raft majority) was last
 * seen. No I/O and no clock reads: the handlers pass the facts in, and
 * tests/unit/api/test_probe_rules.c checks the tables against Patroni's
 * rules (patroni/api.py do_GET, get_postgresql_status, do_GET_metrics). */
#ifndef PGW_API_PROBE_RULES_H
#define PGW_API_PROBE_RULES_H

#include <stdbool.h>
#include <stdint.h>

#include "common/cfg.h"

/* Patroni flags a replica `sync_standby` (synchronous_mode on) or
 * `quorum_standby` (synchronous_mode quorum) when it is in the /sync key,
 * never both; with synchronous_mode off it is neither. */
enum api_standby_kind { API_STANDBY_ASYNC = 0, API_STANDBY_SYNC, API_STANDBY_QUORUM };

enum api_standby_kind api_standby_kind(enum cfg_sync_mode mode, bool in_sync_set, bool replica_role);

/* The paths whose answer depends on the standby kind. */
enum api_probe_path {
    API_PROBE_SYNC,         /* /sync, /synchronous */
    API_PROBE_ASYNC,        /* /async, /asynchronous */
    API_PROBE_QUORUM,       /* /quorum */
    API_PROBE_RO_SYNC,      /* /read-only-sync, /read-only-synchronous */
    API_PROBE_RO_QUORUM,    /* /read-only-quorum */
};

struct api_probe_facts {
    bool primary;        /* the primary endpoints would answer 200 */
    bool standby_leader; /* /standby-leader would answer 200 */
    bool replica_ok;     /* /replica would answer 200 (lag, state, tags included) */
    enum api_standby_kind kind;
};

/* true: 200, false: 503. */
bool api_probe_decide(enum api_probe_path path, const struct api_probe_facts *f);

/* patroni_postgres_state: Patroni's PostgresqlState index (0 initializing
 * new cluster ... 5 running ... 14 crashed) for pgwarden's state text; -1
 * for a state Patroni has no number for, and for a node without PostgreSQL
 * (a witness), as Patroni gives -1 when the state is not one of its own. */
int api_pg_state_index(bool has_postgres, const char *state);

/* patroni_dcs_last_seen: epoch seconds of last_mono_ms (a monotonic time on
 * the same clock as mono_now_ms), 0 when it never happened. */
uint64_t api_dcs_last_seen_s(uint64_t wall_now_ms, uint64_t mono_now_ms, uint64_t last_mono_ms);

#endif
