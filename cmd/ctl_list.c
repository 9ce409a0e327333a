/* ctl list / topology / history / version: read-only views, laid out like
 * patronictl's (`list`: ctl.py output_members; `history`; `version`). */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "build_info.h"
#include "cmd/ctl_internal.h"
#include "common/jsonyaml.h"
#include "common/table.h"
#include "pg/lsn.h"

/* --- list ------------------------------------------------------------------------- */

enum col {
    C_CLUSTER, C_MEMBER, C_HOST, C_ROLE, C_STATE, C_TL, C_RLSN, C_RLAG, C_PLSN, C_PLAG,
    C_PENDING, C_PENDING_REASON, C_SCHEDULED, C_TAGS, C_NOT_CANDIDATE, C_NCOLS
};

static const char *const col_names[C_NCOLS] = {
    "Cluster", "Member", "Host", "Role", "State", "TL", "Receive LSN", "Receive Lag",
    "Replay LSN", "Replay Lag", "Pending restart", "Pending restart reason", "Scheduled restart",
    "Tags", "Not a candidate",
};

/* The tags an operator set: pgwarden reports every tag with its default. */
static json_t *set_tags(const json_t *tags)
{
    json_t *out = json_object();
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)tags, k, v) {
        bool dflt = ((strcmp(k, "nofailover") == 0 || strcmp(k, "noloadbalance") == 0 ||
                      strcmp(k, "clonefrom") == 0 || strcmp(k, "nosync") == 0) && json_is_false(v)) ||
                    ((strcmp(k, "failover_priority") == 0 || strcmp(k, "sync_priority") == 0) &&
                     json_is_integer(v) && json_integer_value(v) == 1);
        if (!dflt)
            json_object_set(out, k, v);
    }
    return out;
}

/* 0 is what a member reports before it knows its position: shown empty. */
static json_t *lsn_value(const json_t *v)
{
    if (!json_is_integer(v) || json_integer_value(v) <= 0)
        return NULL;
    char buf[24];
    pg_lsn_format((pg_lsn)json_integer_value(v), buf, sizeof buf);
    return json_string(buf);
}

static json_t *lag_mb(const json_t *v)
{
    if (!json_is_integer(v))
        return NULL;
    return json_integer((json_int_t)llround((double)json_integer_value(v) / 1048576.0));
}

static json_t *pending_reason(const json_t *m)
{
    const json_t *r = json_object_get(m, "pending_restart_reason");
    if (!json_is_object(r) || json_object_size(r) == 0)
        return NULL;
    char buf[2048];
    size_t used = 0;
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)r, k, v) {
        const char *o = json_string_value(json_object_get(v, "old_value"));
        const char *n = json_string_value(json_object_get(v, "new_value"));
        int w = snprintf(buf + used, sizeof buf - used, "%s%s: %s->%s", used ? "\n" : "", k,
                         o ? o : "?", n ? n : "?");
        if (w < 0 || (size_t)w >= sizeof buf - used)
            break;
        used += (size_t)w;
    }
    return json_string(buf);
}

static json_t *scheduled_restart(const json_t *m)
{
    const json_t *s = json_object_get(m, "scheduled_restart");
    const char *at = json_string_value(json_object_get(s, "schedule"));
    return at != NULL ? json_string(at) : NULL;
}

/* Leader first, each member followed by those that replicate from it
 * (replicatefrom naming a replica; anything else hangs off the leader). */
static void topo_visit(const json_t *members, const char *parent, int level, const json_t **order,
                       int *levels, size_t *n, size_t max, const char *leader)
{
    size_t i;
    json_t *m;
    if (level > 16)
        return;
    json_array_foreach(members, i, m) {
        const char *name = json_string_value(json_object_get(m, "name"));
        const char *role = json_string_value(json_object_get(m, "role"));
        if (name == NULL || (role != NULL && (strcmp(role, "leader") == 0 ||
                                              strcmp(role, "standby_leader") == 0)))
            continue;
        const char *up = json_string_value(json_object_get(json_object_get(m, "tags"), "replicatefrom"));
        const json_t *upm = NULL;
        if (up != NULL && strcmp(up, name) != 0) {
            size_t j;
            json_t *x;
            json_array_foreach(members, j, x) {
                const char *xn = json_string_value(json_object_get(x, "name"));
                const char *xr = json_string_value(json_object_get(x, "role"));
                if (xn != NULL && strcmp(xn, up) == 0 && (xr == NULL || (strcmp(xr, "leader") != 0 &&
                                                                strcmp(xr, "standby_leader") != 0)))
                    upm = x;
            }
        }
        const char *eff = upm != NULL ? up : leader;
        if ((eff == NULL && parent == NULL) || (eff != NULL && parent != NULL && strcmp(eff, parent) == 0)) {
            if (*n >= max)
                return;
            order[*n] = m;
            levels[*n] = level;
            (*n)++;
            topo_visit(members, name, level + 1, order, levels, n, max, leader);
        }
    }
}

static int by_name(const void *a, const void *b)
{
    const char *x = json_string_value(json_object_get(*(const json_t *const *)a, "name"));
    const char *y = json_string_value(json_object_get(*(const json_t *const *)b, "name"));
    return strcmp(x ? x : "", y ? y : "");
}

static size_t member_order(const json_t *cluster, bool topology, const json_t **order, int *levels,
                           size_t max)
{
    const json_t *members = json_object_get(cluster, "members");
    size_t n = 0;
    size_t i;
    json_t *m;
    if (!topology) {
        json_array_foreach(members, i, m) {
            if (n < max) {
                levels[n] = 0;
                order[n++] = m;
            }
        }
        /* by name, as patronictl shows them */
        qsort(order, n, sizeof order[0], by_name);
        return n;
    }
    const char *leader = ctl_leader(cluster);
    if (leader != NULL) {
        order[n] = ctl_member(cluster, leader);
        levels[n++] = 0;
    }
    topo_visit(members, leader, leader != NULL ? 1 : 0, order, levels, &n, max, leader);
    /* members caught in a replicatefrom cycle still get shown */
    json_array_foreach(members, i, m) {
        bool seen = false;
        for (size_t k = 0; k < n; k++)
            seen = seen || order[k] == m;
        if (!seen && n < max) {
            levels[n] = 0;
            order[n++] = m;
        }
    }
    return n;
}

/* Values of one member's row, typed (NULL = empty). */
static void member_row(const json_t *m, const char *scope, bool append_port, json_t **v)
{
    memset(v, 0, C_NCOLS * sizeof *v);
    v[C_CLUSTER] = json_string(scope);
    v[C_MEMBER] = json_incref(json_object_get(m, "name"));
    const char *host = json_string_value(json_object_get(m, "host"));
    if (host != NULL) {
        const json_t *port = json_object_get(m, "port");
        char buf[300];
        if (append_port && json_is_integer(port))
            snprintf(buf, sizeof buf, strchr(host, ':') ? "[%s]:%" JSON_INTEGER_FORMAT : "%s:%" JSON_INTEGER_FORMAT,
                     host, json_integer_value(port));
        else
            snprintf(buf, sizeof buf, "%s", host);
        v[C_HOST] = json_string(buf);
    }
    const char *role = json_string_value(json_object_get(m, "role"));
    if (role != NULL) {
        /* patronictl: role.replace('_', ' ').title() */
        char buf[64];
        snprintf(buf, sizeof buf, "%s", role);
        bool start = true;
        for (char *p = buf; *p; p++) {
            if (*p == '_')
                *p = ' ';
            if (start && *p >= 'a' && *p <= 'z')
                *p = (char)(*p - 'a' + 'A');
            start = *p == ' ';
        }
        v[C_ROLE] = json_string(buf);
    }
    v[C_STATE] = json_incref(json_object_get(m, "state"));
    if (json_is_integer(json_object_get(m, "timeline")))
        v[C_TL] = json_incref(json_object_get(m, "timeline"));
    v[C_RLSN] = lsn_value(json_object_get(m, "receive_lsn"));
    if (v[C_RLSN] != NULL)
        v[C_RLAG] = lag_mb(json_object_get(m, "receive_lag"));
    v[C_PLSN] = lsn_value(json_object_get(m, "replay_lsn"));
    if (v[C_PLSN] != NULL)
        v[C_PLAG] = lag_mb(json_object_get(m, "replay_lag"));
    if (json_is_true(json_object_get(m, "pending_restart")))
        v[C_PENDING] = json_string("*");
    v[C_PENDING_REASON] = pending_reason(m);
    v[C_SCHEDULED] = scheduled_restart(m);
    json_t *tags = set_tags(json_object_get(m, "tags"));
    if (json_object_size(tags) > 0)
        v[C_TAGS] = tags;
    else
        json_decref(tags);
    if (json_is_string(json_object_get(m, "not_candidate_reason")))
        v[C_NOT_CANDIDATE] = json_incref(json_object_get(m, "not_candidate_reason"));
}

/* Text of a cell in the pretty/tsv layouts. */
static char *cell_text(const json_t *v, bool pretty)
{
    if (v == NULL)
        return strdup("");
    if (json_is_string(v))
        return strdup(json_string_value(v));
    if (json_is_integer(v)) {
        char buf[32];
        snprintf(buf, sizeof buf, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return strdup(buf);
    }
    if (json_is_object(v) && pretty) {
        char *y = jy_to_yaml(v);
        if (y != NULL) {
            size_t n = strlen(y);
            while (n > 0 && y[n - 1] == '\n')
                y[--n] = '\0';
        }
        return y;
    }
    return json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
}

static void footer(const json_t *cluster)
{
    if (json_is_true(json_object_get(cluster, "pause")))
        printf(" Maintenance mode: on\n");
    const json_t *sw = json_object_get(cluster, "scheduled_switchover");
    if (json_is_object(sw)) {
        const char *at = json_string_value(json_object_get(sw, "at"));
        printf(" Switchover scheduled at: %s\n", at ? at : "(not given)");
        const char *from = json_string_value(json_object_get(sw, "from"));
        const char *to = json_string_value(json_object_get(sw, "to"));
        if (from != NULL)
            printf("%24s: %s\n", "from", from);
        if (to != NULL)
            printf("%24s: %s\n", "to", to);
    }
    const json_t *fo = json_object_get(cluster, "pending_failover");
    if (json_is_object(fo)) {
        const char *to = json_string_value(json_object_get(fo, "to"));
        printf(" Failover pending to: %s\n", to ? to : "(the best candidate)");
    }
    const json_t *pr = json_object_get(cluster, "primary");
    const char *pstate = json_string_value(json_object_get(pr, "state"));
    if (pstate != NULL && strcmp(pstate, "running") != 0) {
        const char *pm = json_string_value(json_object_get(pr, "member"));
        const char *why = json_string_value(json_object_get(pr, "reason"));
        printf(" Primary: %s (%s)%s%s\n", pm && pm[0] ? pm : "none", pstate, why ? ": " : "", why ? why : "");
    }
    const char *note = json_string_value(json_object_get(cluster, "controller_note"));
    if (note != NULL && note[0] != '\0')
        printf(" Controller: %s\n", note);
}

#define MAX_MEMBERS 256

int ctl_print_cluster(struct ctl *c, const json_t *cluster, bool extended, bool topology)
{
    const char *scope = json_string_value(json_object_get(cluster, "scope"));
    if (scope == NULL)
        scope = "";
    const json_t *order[MAX_MEMBERS];
    int levels[MAX_MEMBERS];
    size_t n = member_order(cluster, topology, order, levels, MAX_MEMBERS);

    /* Host is host:port when a port is not 5432 or two members share a host */
    bool append_port = false;
    for (size_t i = 0; i < n && !append_port; i++) {
        const char *h = json_string_value(json_object_get(order[i], "host"));
        const json_t *p = json_object_get(order[i], "port");
        if (h == NULL)
            continue;
        if (json_is_integer(p) && json_integer_value(p) != 5432)
            append_port = true;
        for (size_t k = 0; k < i; k++) {
            const char *h2 = json_string_value(json_object_get(order[k], "host"));
            if (h2 != NULL && strcmp(h, h2) == 0)
                append_port = true;
        }
    }
    json_t *(*rows)[C_NCOLS] = calloc(n ? n : 1, sizeof *rows);
    if (rows == NULL)
        return CTL_FAILED;
    bool show[C_NCOLS];
    for (int k = 0; k < C_NCOLS; k++)
        show[k] = k < C_PENDING || extended;
    for (size_t i = 0; i < n; i++) {
        member_row(order[i], scope, append_port, rows[i]);
        for (int k = C_PENDING; k < C_NCOLS; k++)
            show[k] = show[k] || rows[i][k] != NULL;
    }
    int rc = CTL_OK;
    if (c->format == CTL_FMT_JSON || c->format == CTL_FMT_YAML) {
        json_t *arr = json_array();
        for (size_t i = 0; i < n; i++) {
            json_t *o = json_object();
            for (int k = 0; k < C_NCOLS; k++)
                if (show[k] && rows[i][k] != NULL)
                    json_object_set(o, col_names[k], rows[i][k]);
            json_array_append_new(arr, o);
        }
        rc = ctl_print_doc(c, arr);
        json_decref(arr);
    } else {
        bool pretty = c->format == CTL_FMT_PRETTY;
        const char *names[C_NCOLS];
        int cols[C_NCOLS];
        size_t nc = 0;
        for (int k = 0; k < C_NCOLS; k++) {
            if (!show[k] || (pretty && k == C_CLUSTER))
                continue;
            names[nc] = pretty && (k == C_RLAG || k == C_PLAG) ? "Lag" : col_names[k];
            cols[nc++] = k;
        }
        struct table *t = table_new(nc, names);
        if (t == NULL) {
            rc = CTL_FAILED;
            goto out;
        }
        for (size_t j = 0; j < nc; j++)
            if (cols[j] == C_TL || cols[j] == C_RLSN || cols[j] == C_RLAG || cols[j] == C_PLSN ||
                cols[j] == C_PLAG)
                table_set_align(t, j, TABLE_RIGHT);
        for (size_t i = 0; i < n && rc == CTL_OK; i++) {
            char *cells[C_NCOLS] = {0};
            for (size_t j = 0; j < nc; j++) {
                cells[j] = cell_text(rows[i][cols[j]], pretty);
                if (cells[j] != NULL && cols[j] == C_MEMBER && pretty && levels[i] > 0) {
                    /* patronictl's tree: "+ n2", " + n3" */
                    char *s = NULL;
                    if (asprintf(&s, "%*s+ %s", levels[i] - 1, "", cells[j]) >= 0) {
                        free(cells[j]);
                        cells[j] = s;
                    }
                }
            }
            if (table_add_row(t, (const char *const *)cells) != 0)
                rc = CTL_FAILED;
            for (size_t j = 0; j < nc; j++)
                free(cells[j]);
        }
        char title[512];
        const char *sysid = json_string_value(json_object_get(cluster, "system_identifier"));
        snprintf(title, sizeof title, "Cluster: %s (%s)", scope, sysid ? sysid : "uninitialized");
        char *s = rc == CTL_OK ? (pretty ? table_render_pretty(t, title) : table_render_tsv(t)) : NULL;
        table_free(t);
        if (s == NULL) {
            rc = CTL_FAILED;
            goto out;
        }
        fputs(s, stdout);
        free(s);
        if (pretty)
            footer(cluster);
    }
out:
    for (size_t i = 0; i < n; i++)
        for (int k = 0; k < C_NCOLS; k++)
            json_decref(rows[i][k]);
    free(rows);
    fflush(stdout);
    return rc;
}

enum { L_EXTENDED = 1, L_TIMESTAMP, L_W, L_WATCH };

static const struct ctl_opt list_opts[] = {
    {"extended", 'e', false, L_EXTENDED},
    {"timestamp", 't', false, L_TIMESTAMP},
    {NULL, 'W', false, L_W},
    {"watch", 'w', true, L_WATCH},
    {NULL, 0, false, 0},
};

static int list_common(struct ctl *c, struct ctl_iter *it, bool topology)
{
    bool extended = false, ts = false;
    double watch = 0;
    const char *cluster_word = NULL;
    const char *val;
    int id;
    while ((id = ctl_next_arg(c, it, list_opts, &val)) != CTL_ARG_END) {
        switch (id) {
        case CTL_ARG_ERROR:
            return CTL_USAGE;
        case CTL_ARG_HELP:
            ctl_sub_help(stdout, c->sub);
            return CTL_OK;
        case L_EXTENDED:
            extended = true;
            break;
        case L_TIMESTAMP:
            ts = true;
            break;
        case L_W:
            watch = 2;
            break;
        case L_WATCH:
            if (!ctl_parse_seconds(c, "--watch", val, 0.1, true, 86400, &watch))
                return CTL_USAGE;
            break;
        case CTL_ARG_POSITIONAL:
            if (cluster_word != NULL) {
                ctl_err(c, "unexpected argument \"%s\" (one cluster name at most)", val);
                return CTL_USAGE;
            }
            cluster_word = val;
            break;
        default:
            return CTL_USAGE;
        }
    }
    int rc = ctl_ready(c);
    if (rc != CTL_OK)
        return rc;
    bool clear = watch > 0 && isatty(STDOUT_FILENO);
    for (unsigned long round = 0;; round++) {
        if (clear)
            fputs("\033[H\033[2J", stdout);
        if (ts) {
            char now[32];
            ctl_now(now, sizeof now);
            printf("%s\n", now);
        }
        json_t *cl = ctl_get_json(c, "/cluster");
        if (cl != NULL) {
            rc = ctl_check_cluster_arg(c, cl, cluster_word);
            if (rc == CTL_OK)
                rc = ctl_print_cluster(c, cl, extended, topology);
            json_decref(cl);
            if (rc != CTL_OK && watch == 0)
                return rc;
        } else {
            rc = CTL_FAILED;
        }
        fflush(stdout);
        if (watch <= 0)
            return rc;
        /* watching runs until interrupted, as patronictl's -W does */
        ctl_sleep_ms(c, (uint64_t)(watch * 1000));
        (void)round;
    }
}

int ctl_cmd_list(struct ctl *c, struct ctl_iter *it)
{
    return list_common(c, it, false);
}

int ctl_cmd_topology(struct ctl *c, struct ctl_iter *it)
{
    return list_common(c, it, true);
}

/* --- history ------------------------------------------------------------------------ */

static int no_options(struct ctl *c, struct ctl_iter *it, const char **cluster_word)
{
    const char *val;
    int id;
    *cluster_word = NULL;
    while ((id = ctl_next_arg(c, it, NULL, &val)) != CTL_ARG_END) {
        if (id == CTL_ARG_HELP) {
            ctl_sub_help(stdout, c->sub);
            return -1;
        }
        if (id != CTL_ARG_POSITIONAL)
            return CTL_USAGE;
        if (*cluster_word != NULL) {
            ctl_err(c, "unexpected argument \"%s\"", val);
            return CTL_USAGE;
        }
        *cluster_word = val;
    }
    return CTL_OK;
}

int ctl_cmd_history(struct ctl *c, struct ctl_iter *it)
{
    const char *word;
    int rc = no_options(c, it, &word);
    if (rc != CTL_OK)
        return rc < 0 ? CTL_OK : rc;
    if ((rc = ctl_ready(c)) != CTL_OK)
        return rc;
    if (word != NULL) {
        json_t *cl = ctl_get_json(c, "/cluster");
        rc = cl != NULL ? ctl_check_cluster_arg(c, cl, word) : CTL_FAILED;
        json_decref(cl);
        if (rc != CTL_OK)
            return rc;
    }
    json_t *h = ctl_get_json(c, "/history");
    if (h == NULL)
        return CTL_FAILED;
    if (!json_is_array(h)) {
        ctl_err(c, "GET /history did not answer a list");
        json_decref(h);
        return CTL_FAILED;
    }
    static const char *const names[] = {"TL", "LSN", "Reason", "Timestamp", "New Leader"};
    json_t *arr = json_array();
    struct table *t = table_new(5, names);
    if (t == NULL || arr == NULL) {
        table_free(t);
        json_decref(arr);
        json_decref(h);
        return CTL_FAILED;
    }
    table_set_align(t, 0, TABLE_RIGHT);
    table_set_align(t, 1, TABLE_RIGHT);
    size_t i;
    json_t *e;
    json_array_foreach(h, i, e) {
        json_t *o = json_object();
        char *cells[5] = {0};
        for (size_t k = 0; k < 5; k++) {
            json_t *v = json_array_get(e, k);
            json_t *typed = k == 1 ? lsn_value(v) : json_incref(v);
            if (typed == NULL)
                typed = json_null();
            json_object_set(o, names[k], typed);
            cells[k] = json_is_null(typed) ? strdup("") : cell_text(typed, false);
            json_decref(typed);
        }
        json_array_append_new(arr, o);
        if (table_add_row(t, (const char *const *)cells) != 0)
            rc = CTL_FAILED;
        for (size_t k = 0; k < 5; k++)
            free(cells[k]);
    }
    if (rc == CTL_OK) {
        if (c->format == CTL_FMT_JSON || c->format == CTL_FMT_YAML) {
            rc = ctl_print_doc(c, arr);
        } else {
            char *s = c->format == CTL_FMT_TSV ? table_render_tsv(t) : table_render_pretty(t, NULL);
            if (s != NULL)
                fputs(s, stdout);
            else
                rc = CTL_FAILED;
            free(s);
        }
    }
    table_free(t);
    json_decref(arr);
    json_decref(h);
    return rc;
}

/* --- version ------------------------------------------------------------------------ */

int ctl_cmd_version(struct ctl *c, struct ctl_iter *it)
{
    const char *names[64];
    size_t nn = 0;
    const char *val;
    int id;
    while ((id = ctl_next_arg(c, it, NULL, &val)) != CTL_ARG_END) {
        if (id == CTL_ARG_HELP) {
            ctl_sub_help(stdout, c->sub);
            return CTL_OK;
        }
        if (id != CTL_ARG_POSITIONAL)
            return CTL_USAGE;
        if (nn == 64) {
            ctl_err(c, "too many members named");
            return CTL_USAGE;
        }
        names[nn++] = val;
    }
    printf("pgwarden ctl version %s\n", PGW_VERSION);
    fflush(stdout);
    json_t *cl;
    int rc = ctl_ready_cluster(c, &cl);
    if (rc != CTL_OK)
        return rc;
    char all[1024];
    ctl_member_names(cl, all, sizeof all);
    for (size_t k = 0; k < nn; k++) {
        if (ctl_member(cl, names[k]) == NULL) {
            ctl_err(c, "%s is not a member (members: %s)", names[k], all);
            json_decref(cl);
            return CTL_FAILED;
        }
    }
    size_t i;
    json_t *m;
    json_array_foreach(json_object_get(cl, "members"), i, m) {
        const char *name = json_string_value(json_object_get(m, "name"));
        const char *api = json_string_value(json_object_get(m, "api_url"));
        bool wanted = nn == 0;
        for (size_t k = 0; k < nn; k++)
            wanted = wanted || (name != NULL && strcmp(names[k], name) == 0);
        if (!wanted || name == NULL || api == NULL)
            continue;
        char url[600];
        ctl_member_url(api, "/patroni", url, sizeof url);
        struct ctl_resp r;
        char why[512];
        if (ctl_request(c, "GET", url, NULL, CTL_GET_TIMEOUT_MS, &r) != 0 || r.http_status != 200) {
            printf("%s: unreachable (%s)\n", name, ctl_resp_reason(&r, why, sizeof why));
            rc = CTL_FAILED;
            ctl_resp_free(&r);
            continue;
        }
        json_t *st = ctl_resp_json(&r);
        const char *ver = json_string_value(json_object_get(json_object_get(st, "patroni"), "version"));
        json_int_t sv = json_integer_value(json_object_get(st, "server_version"));
        if (sv >= 100000)
            printf("%s: pgwarden %s PostgreSQL %d.%d\n", name, ver ? ver : "?", (int)(sv / 10000),
                   (int)(sv % 10000));
        else if (sv > 0)
            printf("%s: pgwarden %s PostgreSQL %d.%d.%d\n", name, ver ? ver : "?", (int)(sv / 10000),
                   (int)(sv / 100 % 100), (int)(sv % 100));
        else
            printf("%s: pgwarden %s (no PostgreSQL)\n", name, ver ? ver : "?");
        json_decref(st);
        ctl_resp_free(&r);
    }
    json_decref(cl);
    return rc;
}
