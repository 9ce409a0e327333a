#include "ha/sync.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct ranked {
    const struct sync_standby *s;
};

static int rank(const struct sync_standby *s)
{
    return strcmp(s->sync_state, "sync") == 0 || strcmp(s->sync_state, "quorum") == 0;
}

static int cmp(const void *pa, const void *pb)
{
    const struct sync_standby *a = ((const struct ranked *)pa)->s, *b = ((const struct ranked *)pb)->s;
    /* Stability first: a member already in the set keeps its place. */
    if (a->in_set != b->in_set)
        return a->in_set ? -1 : 1;
    if (a->sync_priority != b->sync_priority)
        return a->sync_priority > b->sync_priority ? -1 : 1;
    if (rank(a) != rank(b))
        return rank(a) ? -1 : 1;
    if (a->flush_lsn != b->flush_lsn)
        return a->flush_lsn > b->flush_lsn ? -1 : 1;
    return strcmp(a->name, b->name);
}

unsigned sync_choose(const struct sync_choice_in *in, char (*out)[SYNC_NAME_MAX], unsigned max)
{
    struct ranked r[SYNC_MAX * 2];
    size_t m = 0;
    for (size_t i = 0; i < in->n && m < sizeof r / sizeof r[0]; i++) {
        const struct sync_standby *s = &in->s[i];
        if (!s->streaming || !s->reporting || s->nosync || s->sync_priority <= 0)
            continue;
        if (in->max_lag > 0 && in->primary_lsn > s->flush_lsn &&
            in->primary_lsn - s->flush_lsn > (uint64_t)in->max_lag)
            continue;
        r[m++].s = s;
    }
    qsort(r, m, sizeof r[0], cmp);
    unsigned limit = in->quorum ? max : (in->node_count < max ? in->node_count : max);
    unsigned k = 0;
    for (size_t i = 0; i < m && k < limit; i++)
        snprintf(out[k++], SYNC_NAME_MAX, "%s", r[i].s->name);
    return k;
}

void sync_standby_names(bool quorum, unsigned count, char (*members)[SYNC_NAME_MAX], unsigned n,
                        bool strict, char *buf, size_t len)
{
    buf[0] = '\0';
    if (count == 0)
        count = 1;
    unsigned listed = n;
    unsigned need = quorum ? (n < count ? n : count) : n;
    if (strict && need < count) {
        need = count;
    }
    if (need == 0) {
        return; /* nobody to wait for, not strict: asynchronous */
    }
    size_t o = (size_t)snprintf(buf, len, "%s %u (", quorum ? "ANY" : "FIRST", need);
    for (unsigned i = 0; i < listed && o < len; i++)
        o += (size_t)snprintf(buf + o, len - o, "%s\"%s\"", i ? "," : "", members[i]);
    /* strict with too few standbys: a placeholder nobody can satisfy keeps
     * commits waiting instead of acknowledging them unprotected */
    if (strict && listed < need && o < len)
        o += (size_t)snprintf(buf + o, len - o, "%s\"%s\"", listed ? "," : "", SYNC_PLACEHOLDER);
    if (o < len)
        snprintf(buf + o, len - o, ")");
}
