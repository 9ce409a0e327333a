#include "ha/candidate.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

void cand_check(const struct cand_member *m, const struct cand_rules *r, char *reason, size_t len)
{
    reason[0] = '\0';
    if (r->exclude != NULL && strcmp(m->name, r->exclude) == 0) {
        snprintf(reason, len, "the failed primary");
    } else if (r->only != NULL && strcmp(m->name, r->only) != 0) {
        snprintf(reason, len, "not the requested candidate");
    } else if (m->witness) {
        snprintf(reason, len, "witness (no PostgreSQL)");
    } else if (m->nofailover) {
        snprintf(reason, len, "tagged nofailover (or failover_priority <= 0)");
    } else if (m->backoff != NULL) {
        snprintf(reason, len, "%s", m->backoff);
    } else if (!m->reachable) {
        snprintf(reason, len, "unreachable: %s", m->error != NULL && m->error[0] ? m->error : "no answer");
    } else if (!m->running) {
        snprintf(reason, len, "PostgreSQL is not running");
    } else if (!m->in_recovery) {
        snprintf(reason, len, "running as a primary, not as a replica");
    } else if (r->sysid != 0 && m->sysid != 0 && m->sysid != r->sysid) {
        snprintf(reason, len, "different system identifier %" PRIu64 " (cluster has %" PRIu64 ")",
                 m->sysid, r->sysid);
    } else if (r->timeline != 0 && m->timeline != 0 && m->timeline < r->timeline) {
        snprintf(reason, len, "on timeline %u, the cluster is on %u", m->timeline, r->timeline);
    } else if (r->sync_only && !m->in_sync_set && !r->ignore_lag) {
        snprintf(reason, len, "not a synchronous standby");
    } else if (!r->ignore_lag && r->primary_lsn != 0) {
        uint64_t pos = m->receive_lsn > m->replay_lsn ? m->receive_lsn : m->replay_lsn;
        uint64_t lag = r->primary_lsn > pos ? r->primary_lsn - pos : 0;
        if (lag > r->max_lag)
            snprintf(reason, len, "lagging %" PRIu64 " bytes behind the primary "
                     "(maximum_lag_on_failover %" PRIu64 ")", lag, r->max_lag);
    }
}

/* a is better than b */
static bool better(const struct cand_member *a, const struct cand_member *b)
{
    /* A delayed replica would first have to replay its whole delay: only
     * when no other eligible member exists. */
    if (a->delayed != b->delayed)
        return !a->delayed;
    uint64_t ar = a->receive_lsn > a->replay_lsn ? a->receive_lsn : a->replay_lsn;
    uint64_t br = b->receive_lsn > b->replay_lsn ? b->receive_lsn : b->replay_lsn;
    if (ar != br)
        return ar > br;
    if (a->replay_lsn != b->replay_lsn)
        return a->replay_lsn > b->replay_lsn;
    if (a->failover_priority != b->failover_priority)
        return a->failover_priority > b->failover_priority;
    return strcmp(a->name, b->name) < 0;
}

int cand_choose(const struct cand_member *m, size_t n, const struct cand_rules *r,
                char (*reasons)[CAND_REASON_MAX])
{
    int best = -1;
    for (size_t i = 0; i < n; i++) {
        cand_check(&m[i], r, reasons[i], CAND_REASON_MAX);
        if (reasons[i][0] != '\0')
            continue;
        if (best < 0 || better(&m[i], &m[best]))
            best = (int)i;
    }
    return best;
}
