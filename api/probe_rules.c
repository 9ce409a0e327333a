/* Pure rules for the health checks and metrics (see probe_rules.h). */
#include "api/probe_rules.h"

#include <stddef.h>
#include <string.h>

enum api_standby_kind api_standby_kind(enum cfg_sync_mode mode, bool in_sync_set, bool replica_role)
{
    if (mode == CFG_SYNC_OFF || !in_sync_set || !replica_role)
        return API_STANDBY_ASYNC;
    return mode == CFG_SYNC_QUORUM ? API_STANDBY_QUORUM : API_STANDBY_SYNC;
}

bool api_probe_decide(enum api_probe_path path, const struct api_probe_facts *f)
{
    bool leader = f->primary || f->standby_leader;
    switch (path) {
    case API_PROBE_SYNC:
        return f->kind == API_STANDBY_SYNC && f->replica_ok;
    case API_PROBE_QUORUM:
        return f->kind == API_STANDBY_QUORUM && f->replica_ok;
    case API_PROBE_ASYNC:
        /* neither kind: a quorum standby is not asynchronous either */
        return f->kind == API_STANDBY_ASYNC && f->replica_ok;
    case API_PROBE_RO_SYNC:
        return leader || (f->kind == API_STANDBY_SYNC && f->replica_ok);
    case API_PROBE_RO_QUORUM:
        return leader || (f->kind == API_STANDBY_QUORUM && f->replica_ok);
    }
    return false;
}

/* Patroni's numbers never change once assigned (patroni/postgresql/misc.py
 * PostgresqlState); pgwarden's texts that mean the same map to them. */
static const struct {
    const char *state;
    int index;
} pg_states[] = {
    {"initializing new cluster", 0},
    {"bootstrap failed", 1},          /* initdb failed; pgwarden does not tell a custom bootstrap's apart */
    {"creating replica", 4},
    {"reinitializing", 4},            /* Patroni's reinitialize shows creating replica */
    {"running", 5},
    {"promoting", 5},                 /* PostgreSQL runs while it is promoted, as in Patroni */
    {"running pre_promote", 5},
    {"starting", 6},
    {"start failed", 8},
    {"restarting", 9},
    {"restarting (hung)", 9},
    {"stopping", 11},
    {"stopping (fenced)", 11},
    {"demoting", 11},                 /* Patroni's demote stops PostgreSQL first */
    {"stopped", 12},
};

int api_pg_state_index(bool has_postgres, const char *state)
{
    if (!has_postgres || state == NULL)
        return -1;
    for (size_t i = 0; i < sizeof pg_states / sizeof pg_states[0]; i++)
        if (strcmp(pg_states[i].state, state) == 0)
            return pg_states[i].index;
    return -1;
}

uint64_t api_dcs_last_seen_s(uint64_t wall_now_ms, uint64_t mono_now_ms, uint64_t last_mono_ms)
{
    if (last_mono_ms == 0 || last_mono_ms > mono_now_ms)
        return 0;
    uint64_t ago = mono_now_ms - last_mono_ms;
    return ago > wall_now_ms ? 0 : (wall_now_ms - ago) / 1000;
}
