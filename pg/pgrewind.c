/* Rejoin decision (see pgrewind.h).
 *
 * Happy path of the fetch: replication connection -> IDENTIFY_SYSTEM ->
 * TIMELINE_HISTORY <tli> (only when tli > 1) -> callback.
 * Failure modes: connection or query failure (the pgconn status and the
 * server's message), deadline (PGW_ETIMEDOUT, one deadline for the whole
 * exchange), malformed answers (PGW_EPROTO naming the field). */
#include "pg/pgrewind.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"

int pg_tli_history_parse(const char *text, size_t len, struct pg_tli_history *out, char *errbuf,
                         size_t errlen)
{
    memset(out, 0, sizeof *out);
    const char *p = text, *end = text + len;
    int lineno = 0;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t ll = nl ? (size_t)(nl - p) : (size_t)(end - p);
        char line[512];
        if (ll >= sizeof line)
            ll = sizeof line - 1;
        memcpy(line, p, ll);
        line[ll] = '\0';
        p = nl ? nl + 1 : end;
        lineno++;
        char *s = line;
        while (*s == ' ' || *s == '\t' || *s == '\r')
            s++;
        if (*s == '\0' || *s == '#')
            continue;
        char *e;
        errno = 0;
        unsigned long tli = strtoul(s, &e, 10);
        if (errno || e == s || tli == 0 || tli > 0xffffffffUL || (*e != '\t' && *e != ' ')) {
            snprintf(errbuf, errlen, "timeline history line %d: bad timeline id in \"%s\"", lineno, line);
            return PGW_EPROTO;
        }
        while (*e == '\t' || *e == ' ')
            e++;
        char lsn[32];
        size_t n = strcspn(e, " \t\r");
        if (n == 0 || n >= sizeof lsn) {
            snprintf(errbuf, errlen, "timeline history line %d: no switch point in \"%s\"", lineno, line);
            return PGW_EPROTO;
        }
        memcpy(lsn, e, n);
        lsn[n] = '\0';
        pg_lsn sp;
        if (!pg_lsn_parse(lsn, &sp)) {
            snprintf(errbuf, errlen, "timeline history line %d: bad switch point \"%s\"", lineno, lsn);
            return PGW_EPROTO;
        }
        if (out->n > 0 && (tli <= out->items[out->n - 1].parent_tli ||
                           sp < out->items[out->n - 1].switchpoint)) {
            snprintf(errbuf, errlen, "timeline history line %d: timelines or switch points go backwards",
                     lineno);
            return PGW_EPROTO;
        }
        if (out->n >= PGREWIND_MAX_HISTORY) {
            snprintf(errbuf, errlen, "timeline history longer than %d entries", PGREWIND_MAX_HISTORY);
            return PGW_EPROTO;
        }
        out->items[out->n].parent_tli = (uint32_t)tli;
        out->items[out->n].switchpoint = sp;
        out->n++;
    }
    return PGW_OK;
}

void pgrewind_decide(const struct pgrewind_local *l, const struct pgrewind_primary *p,
                     struct pgrewind_decision *d)
{
    char a[24], b[24];
    memset(d, 0, sizeof *d);
    if (l->system_identifier && p->system_identifier &&
        l->system_identifier != p->system_identifier) {
        d->verdict = PGREWIND_IMPOSSIBLE;
        snprintf(d->reason, sizeof d->reason,
                 "different clusters: local system identifier %llu, primary's %llu",
                 (unsigned long long)l->system_identifier, (unsigned long long)p->system_identifier);
        return;
    }
    if (l->timeline > p->timeline) {
        d->verdict = PGREWIND_NEEDED;
        snprintf(d->reason, sizeof d->reason, "local timeline %u is ahead of the primary's %u",
                 l->timeline, p->timeline);
        return;
    }
    if (l->timeline == p->timeline) {
        /* the same number is the same history only if the two forks into
         * it are the same: each history file's last line says from which
         * timeline, and where, its timeline began */
        if (l->timeline > 1 && l->history_known && l->history.n > 0 && p->history.n > 0) {
            const struct pg_tli_switch *ls = &l->history.items[l->history.n - 1];
            const struct pg_tli_switch *ps = &p->history.items[p->history.n - 1];
            if (ls->parent_tli != ps->parent_tli || ls->switchpoint != ps->switchpoint) {
                pg_lsn_format(ls->switchpoint, a, sizeof a);
                pg_lsn_format(ps->switchpoint, b, sizeof b);
                /* pg_rewind sees one timeline and rewinds nothing */
                d->verdict = PGREWIND_IMPOSSIBLE;
                snprintf(d->reason, sizeof d->reason,
                         "timeline %u here began at %s of timeline %u, the primary's at %s of "
                         "timeline %u: two histories under one number, which pg_rewind cannot "
                         "rewind", l->timeline, a, ls->parent_tli, b, ps->parent_tli);
                return;
            }
        }
        /* A promotion always starts a new timeline: a node that was itself
         * a primary on the timeline another primary now writes on, forked
         * from the same point or not, wrote WAL there that the primary does
         * not have (at least its end-of-recovery record) */
        if (l->was_primary) {
            d->verdict = PGREWIND_IMPOSSIBLE;
            snprintf(d->reason, sizeof d->reason,
                     "this node was a primary on timeline %u, which the primary writes on too: "
                     "two histories under one number, which pg_rewind cannot rewind", l->timeline);
            return;
        }
        d->verdict = PGREWIND_NOT_NEEDED;
        snprintf(d->reason, sizeof d->reason, "same timeline %u as the primary", l->timeline);
        return;
    }
    for (size_t i = 0; i < p->history.n; i++) {
        const struct pg_tli_switch *s = &p->history.items[i];
        if (s->parent_tli != l->timeline)
            continue;
        pg_lsn_format(l->lsn, a, sizeof a);
        pg_lsn_format(s->switchpoint, b, sizeof b);
        if (!l->was_primary) {
            /* a replica only diverged if it replayed past the fork */
            bool need = l->lsn > s->switchpoint;
            d->verdict = need ? PGREWIND_NEEDED : PGREWIND_NOT_NEEDED;
            snprintf(d->reason, sizeof d->reason, "replayed %s is %s the switch point %s of timeline %u",
                     a, need ? "beyond" : "not beyond", b, l->timeline);
        } else if (l->lsn >= s->switchpoint) {
            d->verdict = PGREWIND_NEEDED;
            snprintf(d->reason, sizeof d->reason,
                     "former primary's checkpoint %s is at or beyond the switch point %s of timeline %u",
                     a, b, l->timeline);
        } else if (l->checkpoint_end != s->switchpoint) {
            /* a clean switchover forks exactly at the end of the old
             * primary's shutdown checkpoint; anything else diverged */
            char c[24];
            pg_lsn_format(l->checkpoint_end, c, sizeof c);
            d->verdict = PGREWIND_NEEDED;
            if (l->checkpoint_end == 0)
                snprintf(d->reason, sizeof d->reason,
                         "the end of the former primary's checkpoint record %s is unknown "
                         "(switch point %s): rewinding to be safe", a, b);
            else
                snprintf(d->reason, sizeof d->reason,
                         "former primary's checkpoint record ends at %s, not at the switch point %s",
                         c, b);
        } else {
            d->verdict = PGREWIND_NOT_NEEDED;
            snprintf(d->reason, sizeof d->reason,
                     "former primary's checkpoint record ends exactly at the switch point %s", b);
        }
        return;
    }
    d->verdict = PGREWIND_NEEDED;
    snprintf(d->reason, sizeof d->reason,
             "local timeline %u is not in the primary's history (primary on timeline %u)",
             l->timeline, p->timeline);
}

pg_lsn pgrewind_parse_waldump_end(const char *out, const char *err, pg_lsn checkpoint)
{
    if (!out || !err)
        return 0;
    char want[64];
    snprintf(want, sizeof want, "lsn: %X/%08X,", (unsigned)(checkpoint >> 32),
             (unsigned)(checkpoint & 0xffffffffu));
    /* exactly one record was printed, the checkpoint itself */
    const char *first_nl = strchr(out, '\n');
    if (first_nl && first_nl[1] != '\0' && strchr(first_nl + 1, '\n') != NULL)
        return 0;
    if (!strstr(out, want))
        return 0;
    const char *pat = "invalid record length at ";
    const char *e = strstr(err, pat);
    if (!e || !strstr(err, "error in WAL record at"))
        return 0;
    e += strlen(pat);
    char lsn[32];
    size_t n = strcspn(e, ":");
    if (n == 0 || n >= sizeof lsn)
        return 0;
    memcpy(lsn, e, n);
    lsn[n] = '\0';
    pg_lsn end;
    return pg_lsn_parse(lsn, &end) ? end : 0;
}

/* ---- fetch over a replication connection ------------------------------ */

struct pgrewind_fetch {
    struct pgconn *conn;
    pgrewind_fetch_cb cb;
    void *ctx;
    uint64_t deadline;
    uv_loop_t *loop;
    struct pgrewind_primary primary;
};

static void fetch_finish(struct pgrewind_fetch *f, int status, const char *error)
{
    pgrewind_fetch_cb cb = f->cb;
    void *ctx = f->ctx;
    pgconn_destroy(f->conn);
    if (cb)
        cb(status, error, status == PGW_OK ? &f->primary : NULL, ctx);
    free(f);
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static void on_history(struct pgconn *c, const struct pgconn_result *r, void *ctx)
{
    (void)c;
    struct pgrewind_fetch *f = ctx;
    if (r->status != PGW_OK) {
        fetch_finish(f, r->status, r->error);
        return;
    }
    const PGresult *res = r->nresults ? r->results[r->nresults - 1] : NULL;
    if (!res || PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1 || PQnfields(res) < 2) {
        fetch_finish(f, PGW_EPROTO, "TIMELINE_HISTORY: unexpected answer");
        return;
    }
    const char *content = PQgetvalue(res, 0, 1);
    size_t len = (size_t)PQgetlength(res, 0, 1);
    char *decoded = NULL;
    /* a bytea rendered as \x... hex: decode it */
    if (len >= 2 && content[0] == '\\' && content[1] == 'x') {
        decoded = malloc(len / 2 + 1);
        if (!decoded) {
            fetch_finish(f, PGW_ENOMEM, "out of memory");
            return;
        }
        size_t o = 0;
        for (size_t i = 2; i + 1 < len; i += 2) {
            int h = hexval(content[i]), l = hexval(content[i + 1]);
            if (h < 0 || l < 0)
                break;
            decoded[o++] = (char)(h * 16 + l);
        }
        decoded[o] = '\0';
        content = decoded;
        len = o;
    }
    char eb[256];
    int rc = pg_tli_history_parse(content, len, &f->primary.history, eb, sizeof eb);
    free(decoded);
    if (rc != PGW_OK) {
        fetch_finish(f, rc, eb);
        return;
    }
    fetch_finish(f, PGW_OK, "");
}

static void on_identify(struct pgconn *c, const struct pgconn_result *r, void *ctx)
{
    struct pgrewind_fetch *f = ctx;
    if (r->status != PGW_OK) {
        fetch_finish(f, r->status, r->error);
        return;
    }
    const PGresult *res = r->nresults ? r->results[r->nresults - 1] : NULL;
    if (!res || PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1 || PQnfields(res) < 3) {
        fetch_finish(f, PGW_EPROTO, "IDENTIFY_SYSTEM: unexpected answer (is replication=1 set?)");
        return;
    }
    char *end;
    const char *v = PQgetvalue(res, 0, 0);
    errno = 0;
    unsigned long long sysid = strtoull(v, &end, 10);
    if (errno || end == v || *end) {
        fetch_finish(f, PGW_EPROTO, "IDENTIFY_SYSTEM: bad systemid");
        return;
    }
    v = PQgetvalue(res, 0, 1);
    unsigned long tli = strtoul(v, &end, 10);
    if (end == v || *end || tli == 0 || tli > 0xffffffffUL) {
        fetch_finish(f, PGW_EPROTO, "IDENTIFY_SYSTEM: bad timeline");
        return;
    }
    f->primary.system_identifier = sysid;
    f->primary.timeline = (uint32_t)tli;
    (void)pg_lsn_parse(PQgetvalue(res, 0, 2), &f->primary.xlogpos);
    if (tli == 1) {
        fetch_finish(f, PGW_OK, "");
        return;
    }
    char q[64];
    snprintf(q, sizeof q, "TIMELINE_HISTORY %lu", tli);
    uint64_t now = uv_now(f->loop);
    uint32_t left = f->deadline > now ? (uint32_t)(f->deadline - now) : 1;
    int rc = pgconn_query(c, q, left, on_history, f);
    if (rc != PGW_OK)
        fetch_finish(f, rc, "cannot send TIMELINE_HISTORY");
}

int pgrewind_fetch_primary(uv_loop_t *loop, const struct pgconn_params *params, uint32_t timeout_ms,
                           pgrewind_fetch_cb cb, void *ctx, struct pgrewind_fetch **out)
{
    if (out)
        *out = NULL;
    if (!pgconn_params_get(params, "replication"))
        return PGW_EINVAL;
    struct pgrewind_fetch *f = calloc(1, sizeof *f);
    if (!f)
        return PGW_ENOMEM;
    f->cb = cb;
    f->ctx = ctx;
    f->loop = loop;
    if (!timeout_ms)
        timeout_ms = 10000;
    f->deadline = uv_now(loop) + timeout_ms;
    struct pgconn_opts o = {.name = "rewind-check", .connect_timeout_ms = timeout_ms,
                            .query_timeout_ms = timeout_ms};
    int rc = pgconn_new(loop, params, &o, &f->conn);
    if (rc) {
        free(f);
        return rc;
    }
    rc = pgconn_query(f->conn, "IDENTIFY_SYSTEM", timeout_ms, on_identify, f);
    if (rc) {
        pgconn_destroy(f->conn);
        free(f);
        return rc;
    }
    if (out)
        *out = f;
    return PGW_OK;
}

void pgrewind_fetch_cancel(struct pgrewind_fetch *f)
{
    if (!f)
        return;
    pgconn_destroy(f->conn);
    free(f);
}

int pg_tli_history_read(const char *data_dir, uint32_t tli, struct pg_tli_history *out,
                        char *errbuf, size_t errlen)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/pg_wal/%08X.history", data_dir, (unsigned)tli);
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        snprintf(errbuf, errlen, "%s: %s", path, strerror(errno));
        return errno == ENOENT ? PGW_ENOTFOUND : PGW_EIO;
    }
    char buf[16384];
    size_t len = fread(buf, 1, sizeof buf, f);
    bool whole = feof(f) && !ferror(f);
    fclose(f);
    if (!whole) {
        snprintf(errbuf, errlen, "%s: unreadable or larger than 16 kB", path);
        return PGW_EIO;
    }
    char eb[200];
    if (pg_tli_history_parse(buf, len, out, eb, sizeof eb) != PGW_OK) {
        snprintf(errbuf, errlen, "%s: %s", path, eb);
        return PGW_EPROTO;
    }
    return PGW_OK;
}
