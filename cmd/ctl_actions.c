/* ctl switchover / failover: one POST to any node (it carries the request
 * through the Raft leader and answers with the outcome);
 * ctl restart / reload / reinit: one POST to each chosen member's own API.
 * Every answer other than 200/202 is shown with the server's reason and
 * makes the command exit 1. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cmd/ctl_internal.h"

static void say_done(const struct ctl_resp *r)
{
    char now[32], why[1024];
    ctl_now(now, sizeof now);
    printf("%s %s\n", now, ctl_resp_reason(r, why, sizeof why));
}

/* After a switchover or failover, show where the cluster stands. */
static void show_after(struct ctl *c)
{
    if (c->format != CTL_FMT_PRETTY)
        return;
    json_t *cl = ctl_get_json(c, "/cluster");
    if (cl != NULL)
        (void)ctl_print_cluster(c, cl, false, false);
    json_decref(cl);
}

/* --- switchover ------------------------------------------------------------------- */

enum { S_LEADER = 1, S_CANDIDATE, S_SCHEDULED, S_FORCE, S_ALLOW_LOSS };

static const struct ctl_opt switchover_opts[] = {
    {"leader", 0, true, S_LEADER},
    {"primary", 0, true, S_LEADER},
    {"master", 0, true, S_LEADER},
    {"candidate", 0, true, S_CANDIDATE},
    {"scheduled", 0, true, S_SCHEDULED},
    {"force", 0, false, S_FORCE},
    {NULL, 0, false, 0},
};

static const struct ctl_opt failover_opts[] = {
    {"candidate", 0, true, S_CANDIDATE},
    {"allow-data-loss", 0, false, S_ALLOW_LOSS},
    {"force", 0, false, S_FORCE},
    {NULL, 0, false, 0},
};

static int cmp_name(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* "['n2', 'n3']": the members other than `except`, as patronictl prompts. */
static void others(const json_t *cl, const char *except, char *buf, size_t len)
{
    const char *names[256];
    size_t n = 0, i;
    json_t *m;
    json_array_foreach(json_object_get(cl, "members"), i, m) {
        const char *name = json_string_value(json_object_get(m, "name"));
        const char *role = json_string_value(json_object_get(m, "role"));
        if (name == NULL || (except != NULL && strcmp(name, except) == 0) ||
            (role != NULL && strcmp(role, "witness") == 0) || n == sizeof names / sizeof names[0])
            continue;
        names[n++] = name;
    }
    qsort(names, n, sizeof names[0], cmp_name);
    size_t used = (size_t)snprintf(buf, len, "[");
    for (size_t k = 0; k < n; k++) {
        int w = snprintf(buf + used, len - used, "%s'%s'", k ? ", " : "", names[k]);
        if (w < 0 || (size_t)w >= len - used)
            break;
        used += (size_t)w;
    }
    if (used < len - 1)
        snprintf(buf + used, len - used, "]");
}

static int check_candidate(const struct ctl *c, const json_t *cl, const char *cand, const char *leader)
{
    if (ctl_member(cl, cand) == NULL) {
        char all[1024];
        ctl_member_names(cl, all, sizeof all);
        ctl_err(c, "--candidate %s is not a member (members: %s)", cand, all);
        return CTL_FAILED;
    }
    if (leader != NULL && strcmp(cand, leader) == 0) {
        ctl_err(c, "--candidate %s is already the leader", cand);
        return CTL_FAILED;
    }
    return CTL_OK;
}

static int switch_common(struct ctl *c, struct ctl_iter *it, bool failover)
{
    const char *leader_opt = NULL, *cand = NULL, *sched = NULL, *word = NULL;
    bool allow_loss = false;
    const char *val;
    int id;
    while ((id = ctl_next_arg(c, it, failover ? failover_opts : switchover_opts, &val)) != CTL_ARG_END) {
        switch (id) {
        case CTL_ARG_ERROR:
            return CTL_USAGE;
        case CTL_ARG_HELP:
            ctl_sub_help(stdout, c->sub);
            return CTL_OK;
        case S_LEADER:
            leader_opt = val;
            break;
        case S_CANDIDATE:
            cand = val;
            break;
        case S_SCHEDULED:
            sched = val;
            break;
        case S_FORCE:
            c->force = true;
            break;
        case S_ALLOW_LOSS:
            allow_loss = true;
            break;
        case CTL_ARG_POSITIONAL:
            if (word != NULL) {
                ctl_err(c, "unexpected argument \"%s\"", val);
                return CTL_USAGE;
            }
            word = val;
            break;
        default:
            return CTL_USAGE;
        }
    }
    char when[64] = "";
    if (sched != NULL && strcmp(sched, "now") != 0 && !ctl_parse_time(sched, when, sizeof when)) {
        ctl_err(c, "--scheduled expects an ISO 8601 time like 2026-11-26T10:00+00:00, or now; got \"%s\"",
                sched);
        return CTL_USAGE;
    }
    if (failover && cand == NULL && (c->force || !ctl_interactive())) {
        ctl_err(c, "--candidate NAME is required");
        return CTL_USAGE;
    }
    int rc = ctl_need_confirmation_ok(c, failover ? "a failover" : "a switchover");
    if (rc != CTL_OK)
        return rc;
    json_t *cl;
    if ((rc = ctl_ready_cluster(c, &cl)) != CTL_OK)
        return rc;
    char *owned_leader = NULL, *owned_cand = NULL, *owned_when = NULL;
    json_t *body = NULL;
    const char *scope = json_string_value(json_object_get(cl, "scope"));
    const char *leader = ctl_leader(cl);
    rc = ctl_check_cluster_arg(c, cl, word);
    if (rc != CTL_OK)
        goto out;
    if (!failover) {
        if (leader == NULL) {
            ctl_err(c, "the cluster has no leader to switch over from; use 'pgwarden ctl failover "
                       "--candidate NAME'");
            rc = CTL_FAILED;
            goto out;
        }
        if (leader_opt == NULL && !c->force) {
            owned_leader = ctl_prompt("Primary", leader);
            leader_opt = owned_leader != NULL ? owned_leader : leader;
        }
        if (leader_opt != NULL && strcmp(leader_opt, leader) != 0) {
            ctl_err(c, "--leader %s is not the leader (the leader is %s)", leader_opt, leader);
            rc = CTL_FAILED;
            goto out;
        }
    }
    if (cand == NULL && !c->force) {
        char list[1024];
        others(cl, leader, list, sizeof list);
        char q[1100];
        snprintf(q, sizeof q, "Candidate %s", list);
        owned_cand = ctl_prompt(q, "");
        if (owned_cand != NULL && owned_cand[0] != '\0')
            cand = owned_cand;
        if (cand == NULL && failover) {
            ctl_err(c, "a failover needs a candidate");
            rc = CTL_USAGE;
            goto out;
        }
    }
    if (cand != NULL && (rc = check_candidate(c, cl, cand, leader)) != CTL_OK)
        goto out;
    if (!failover && sched == NULL && !c->force) {
        owned_when = ctl_prompt("When should the switchover take place (e.g. 2026-11-26T10:00+01:00)", "now");
        if (owned_when != NULL && strcmp(owned_when, "now") != 0 &&
            !ctl_parse_time(owned_when, when, sizeof when)) {
            ctl_err(c, "\"%s\" is not an ISO 8601 time", owned_when);
            rc = CTL_USAGE;
            goto out;
        }
    }
    if (!c->force) {
        if (!failover && when[0] == '\0') {
            printf("Current cluster topology\n");
            (void)ctl_print_cluster(c, cl, false, false);
        }
        bool yes;
        if (when[0] != '\0')
            yes = ctl_confirm(c, "Are you sure you want to schedule switchover of cluster %s at %s, "
                              "demoting current leader %s?", scope, when, leader);
        else if (failover && allow_loss)
            yes = ctl_confirm(c, "%s may lack commits the leader acknowledged: are you sure you want to "
                              "failover cluster %s to it, ACCEPTING DATA LOSS?", cand, scope);
        else if (leader != NULL)
            yes = ctl_confirm(c, "Are you sure you want to %s cluster %s, demoting current leader %s?",
                              failover ? "failover" : "switchover", scope, leader);
        else
            yes = ctl_confirm(c, "Are you sure you want to failover cluster %s to %s?", scope, cand);
        if (!yes) {
            ctl_err(c, "aborted");
            rc = CTL_FAILED;
            goto out;
        }
    }
    body = json_object();
    if (failover) {
        json_object_set_new(body, "candidate", json_string(cand));
        if (allow_loss)
            json_object_set_new(body, "allow_data_loss", json_true());
    } else {
        json_object_set_new(body, "leader", json_string(leader));
        if (cand != NULL)
            json_object_set_new(body, "candidate", json_string(cand));
        if (when[0] != '\0')
            json_object_set_new(body, "scheduled_at", json_string(when));
    }
    struct ctl_resp r;
    const char *path = failover ? "/failover" : "/switchover";
    if (ctl_request_any(c, "POST", path, body, CTL_ACTION_TIMEOUT_MS, &r) != 0) {
        rc = ctl_refused(c, failover ? "failover" : "switchover", &r);
        if (r.sent)
            ctl_err(c, "the request may have reached the cluster: check with 'pgwarden ctl list'");
    } else if (r.http_status == 200 || r.http_status == 202) {
        say_done(&r);
        rc = CTL_OK;
        if (r.http_status == 200)
            show_after(c);
    } else {
        rc = ctl_refused(c, failover ? "failover" : "switchover", &r);
    }
    ctl_resp_free(&r);
out:
    json_decref(body);
    free(owned_leader);
    free(owned_cand);
    free(owned_when);
    json_decref(cl);
    return rc;
}

int ctl_cmd_switchover(struct ctl *c, struct ctl_iter *it)
{
    return switch_common(c, it, false);
}

int ctl_cmd_failover(struct ctl *c, struct ctl_iter *it)
{
    return switch_common(c, it, true);
}

/* --- restart / reload / reinit: per member ----------------------------------------- */

enum { M_ROLE = 1, M_PENDING, M_SCHEDULED, M_TIMEOUT, M_FORCE, M_FROM_LEADER, M_WAIT, M_ANY };

static const struct ctl_opt restart_opts[] = {
    {"role", 'r', true, M_ROLE},
    {"any", 0, false, M_ANY},
    {"pending", 0, false, M_PENDING},
    {"scheduled", 0, true, M_SCHEDULED},
    {"timeout", 0, true, M_TIMEOUT},
    {"force", 0, false, M_FORCE},
    {NULL, 0, false, 0},
};

static const struct ctl_opt reload_opts[] = {
    {"role", 'r', true, M_ROLE},
    {"force", 0, false, M_FORCE}, /* patronictl has it; nothing to confirm here */
    {NULL, 0, false, 0},
};

static const struct ctl_opt reinit_opts[] = {
    {"from-leader", 0, false, M_FROM_LEADER},
    {"wait", 0, false, M_WAIT},
    {"force", 0, false, M_FORCE},
    {NULL, 0, false, 0},
};

#define MAX_NAMED 64

struct targets {
    const char *names[MAX_NAMED]; /* as given */
    size_t n;
    const json_t *chosen[MAX_NAMED * 4];
    size_t nchosen;
};

/* Resolve the named members (or all) against the cluster, by role. */
static int choose(const struct ctl *c, const json_t *cl, struct targets *t, enum ctl_role f,
                  const char *action)
{
    char all[1024];
    ctl_member_names(cl, all, sizeof all);
    /* patronictl's syntax puts the cluster name first: skip it when it is the scope */
    const char *scope = json_string_value(json_object_get(cl, "scope"));
    size_t first = 0;
    if (t->n > 0 && scope != NULL && strcmp(t->names[0], scope) == 0 && ctl_member(cl, scope) == NULL)
        first = 1;
    for (size_t k = first; k < t->n; k++) {
        const json_t *m = ctl_member(cl, t->names[k]);
        if (m == NULL) {
            ctl_err(c, "%s is not a member (members: %s)", t->names[k], all);
            return CTL_FAILED;
        }
        const char *role = json_string_value(json_object_get(m, "role"));
        if (role != NULL && strcmp(role, "witness") == 0) {
            ctl_err(c, "%s is a witness (no PostgreSQL to %s)", t->names[k], action);
            return CTL_FAILED;
        }
    }
    size_t i;
    json_t *m;
    json_array_foreach(json_object_get(cl, "members"), i, m) {
        const char *name = json_string_value(json_object_get(m, "name"));
        const char *role = json_string_value(json_object_get(m, "role"));
        if (name == NULL || (role != NULL && strcmp(role, "witness") == 0) || !ctl_role_matches(m, f))
            continue;
        bool wanted = t->n == first;
        for (size_t k = first; k < t->n; k++)
            wanted = wanted || strcmp(t->names[k], name) == 0;
        if (wanted && t->nchosen < sizeof t->chosen / sizeof t->chosen[0])
            t->chosen[t->nchosen++] = m;
    }
    if (t->nchosen == 0) {
        ctl_err(c, "no member to %s: none of the named ones has the role asked for (members: %s)",
                action, all);
        return CTL_FAILED;
    }
    return CTL_OK;
}

/* restart --any: one of the chosen members, picked at random as patronictl
 * does (so repeated runs spread restarts over the members). */
static void keep_one_at_random(struct targets *t)
{
    if (t->nchosen <= 1)
        return;
    unsigned seed = (unsigned)time(NULL) ^ ((unsigned)getpid() << 16);
    t->chosen[0] = t->chosen[(size_t)rand_r(&seed) % t->nchosen];
    t->nchosen = 1;
}

static void chosen_names(const struct targets *t, char *buf, size_t len)
{
    size_t used = 0;
    buf[0] = '\0';
    for (size_t k = 0; k < t->nchosen; k++) {
        const char *n = json_string_value(json_object_get(t->chosen[k], "name"));
        int w = snprintf(buf + used, len - used, "%s%s", k ? ", " : "", n);
        if (w < 0 || (size_t)w >= len - used)
            break;
        used += (size_t)w;
    }
}

/* Send `method path` to one member and print the outcome; true on 200/202.
 * *code gets the HTTP status (0 on transport failure); an answer equal to
 * `quiet` is left to the caller to report. */
static bool send_member(struct ctl *c, const json_t *m, const char *method, const char *path,
                        const json_t *body, const char *action, uint32_t timeout_ms, int quiet, int *code)
{
    const char *name = json_string_value(json_object_get(m, "name"));
    const char *api = json_string_value(json_object_get(m, "api_url"));
    *code = 0;
    if (api == NULL) {
        fprintf(stderr, "Failed: %s for member %s: it has no REST API address\n", action, name);
        return false;
    }
    char url[600], why[1024];
    ctl_member_url(api, path, url, sizeof url);
    struct ctl_resp r;
    bool ok = false;
    if (ctl_request(c, method, url, body, timeout_ms, &r) != 0) {
        fprintf(stderr, "Failed: %s for member %s: %s\n", action, name, r.error);
    } else if ((*code = r.http_status) == quiet) {
        /* the caller says what this means */
    } else if (r.http_status == 200) {
        printf("Success: %s on member %s\n", action, name);
        ok = true;
    } else if (r.http_status == 202) {
        printf("Success: %s on member %s: %s\n", action, name, ctl_resp_reason(&r, why, sizeof why));
        ok = true;
    } else {
        fprintf(stderr, "Failed: %s for member %s, status code=%d, (%s)\n", action, name, r.http_status,
                ctl_resp_reason(&r, why, sizeof why));
    }
    ctl_resp_free(&r);
    return ok;
}

static bool post_member(struct ctl *c, const json_t *m, const char *method, const char *path,
                        const json_t *body, const char *action, uint32_t timeout_ms)
{
    int code;
    return send_member(c, m, method, path, body, action, timeout_ms, -1, &code);
}

struct member_args {
    struct targets t;
    enum ctl_role role;
    bool pending, from_leader, wait, any;
    const char *sched;
    double timeout_s;
};

static int parse_member_args(struct ctl *c, struct ctl_iter *it, const struct ctl_opt *opts,
                             struct member_args *a)
{
    const char *val;
    int id;
    while ((id = ctl_next_arg(c, it, opts, &val)) != CTL_ARG_END) {
        switch (id) {
        case CTL_ARG_ERROR:
            return CTL_USAGE;
        case CTL_ARG_HELP:
            ctl_sub_help(stdout, c->sub);
            return -1;
        case M_ROLE:
            if (ctl_parse_role(c, val, &a->role) != CTL_OK)
                return CTL_USAGE;
            break;
        case M_PENDING:
            a->pending = true;
            break;
        case M_SCHEDULED:
            a->sched = val;
            break;
        case M_TIMEOUT:
            if (!ctl_parse_seconds(c, "--timeout", val, 0, false, 86400, &a->timeout_s))
                return CTL_USAGE;
            break;
        case M_FORCE:
            c->force = true;
            break;
        case M_FROM_LEADER:
            a->from_leader = true;
            break;
        case M_WAIT:
            a->wait = true;
            break;
        case M_ANY:
            a->any = true;
            break;
        case CTL_ARG_POSITIONAL:
            if (a->t.n == MAX_NAMED) {
                ctl_err(c, "more than %d members named", MAX_NAMED);
                return CTL_USAGE;
            }
            a->t.names[a->t.n++] = val;
            break;
        default:
            return CTL_USAGE;
        }
    }
    return CTL_OK;
}

int ctl_cmd_restart(struct ctl *c, struct ctl_iter *it)
{
    struct member_args a = {0};
    int rc = parse_member_args(c, it, restart_opts, &a);
    if (rc != CTL_OK)
        return rc < 0 ? CTL_OK : rc;
    char when[64] = "";
    if (a.sched != NULL && strcmp(a.sched, "now") != 0 && !ctl_parse_time(a.sched, when, sizeof when)) {
        ctl_err(c, "--scheduled expects an ISO 8601 time like 2026-11-26T10:00+00:00; got \"%s\"", a.sched);
        return CTL_USAGE;
    }
    json_t *cl;
    if ((rc = ctl_need_confirmation_ok(c, "a restart")) != CTL_OK ||
        (rc = ctl_ready_cluster(c, &cl)) != CTL_OK)
        return rc;
    json_t *body = NULL;
    if ((rc = choose(c, cl, &a.t, a.role, "restart")) != CTL_OK)
        goto out;
    if (a.any)
        keep_one_at_random(&a.t);
    char names[2048];
    chosen_names(&a.t, names, sizeof names);
    bool yes;
    if (when[0] != '\0')
        yes = ctl_confirm(c, "Are you sure you want to schedule restart of members %s at %s?", names, when);
    else
        yes = ctl_confirm(c, "Are you sure you want to restart members %s?", names);
    if (!yes) {
        ctl_err(c, "aborted");
        rc = CTL_FAILED;
        goto out;
    }
    body = json_object();
    if (a.pending)
        json_object_set_new(body, "restart_pending", json_true());
    if (when[0] != '\0')
        json_object_set_new(body, "schedule", json_string(when));
    if (a.timeout_s > 0)
        json_object_set_new(body, "timeout", json_real(a.timeout_s));
    uint32_t timeout_ms = CTL_ACTION_TIMEOUT_MS;
    if (a.timeout_s > 0)
        timeout_ms = (uint32_t)(a.timeout_s * 1000) + 15000;
    for (size_t k = 0; k < a.t.nchosen; k++) {
        const json_t *m = a.t.chosen[k];
        int code;
        /* 409: a restart is already scheduled there; --force replaces it */
        int quiet = when[0] != '\0' && c->force ? 409 : -1;
        if (send_member(c, m, "POST", "/restart", body, "restart", timeout_ms, quiet, &code))
            continue;
        if (code == 409 && quiet == 409 &&
            post_member(c, m, "DELETE", "/restart", NULL, "flush scheduled restart", CTL_GET_TIMEOUT_MS) &&
            post_member(c, m, "POST", "/restart", body, "restart", timeout_ms))
            continue;
        rc = CTL_FAILED;
    }
out:
    json_decref(body);
    json_decref(cl);
    return rc;
}

int ctl_cmd_reload(struct ctl *c, struct ctl_iter *it)
{
    struct member_args a = {0};
    int rc = parse_member_args(c, it, reload_opts, &a);
    if (rc != CTL_OK)
        return rc < 0 ? CTL_OK : rc;
    json_t *cl;
    if ((rc = ctl_ready_cluster(c, &cl)) != CTL_OK)
        return rc;
    if ((rc = choose(c, cl, &a.t, a.role, "reload")) == CTL_OK) {
        for (size_t k = 0; k < a.t.nchosen; k++)
            if (!post_member(c, a.t.chosen[k], "POST", "/reload", NULL, "reload", CTL_GET_TIMEOUT_MS))
                rc = CTL_FAILED;
    }
    json_decref(cl);
    return rc;
}

/* Poll each member's /patroni until it runs again after leaving "running"
 * (or never left it within 10 s); bounded by REINIT_WAIT_MS. */
#define REINIT_WAIT_MS (60u * 60u * 1000u)

static int wait_reinit(struct ctl *c, const json_t **members, size_t n)
{
    bool left[MAX_NAMED * 4] = {false}, done[MAX_NAMED * 4] = {false};
    size_t remaining = n;
    char names[2048];
    size_t used = 0;
    for (size_t k = 0; k < n; k++) {
        int w = snprintf(names + used, sizeof names - used, "%s%s", k ? ", " : "",
                         json_string_value(json_object_get(members[k], "name")));
        if (w > 0 && (size_t)w < sizeof names - used)
            used += (size_t)w;
    }
    printf("Waiting for reinitialize to complete on: %s\n", names);
    fflush(stdout);
    for (uint64_t waited = 0; remaining > 0 && waited < REINIT_WAIT_MS; waited += 1000) {
        ctl_sleep_ms(c, 1000);
        for (size_t k = 0; k < n; k++) {
            if (done[k])
                continue;
            const char *name = json_string_value(json_object_get(members[k], "name"));
            const char *api = json_string_value(json_object_get(members[k], "api_url"));
            char url[600];
            ctl_member_url(api ? api : "", "/patroni", url, sizeof url);
            struct ctl_resp r;
            const char *state = NULL;
            json_t *st = NULL;
            if (ctl_request(c, "GET", url, NULL, CTL_GET_TIMEOUT_MS, &r) == 0 && r.http_status == 200) {
                st = ctl_resp_json(&r);
                state = json_string_value(json_object_get(st, "state"));
            }
            bool running = state != NULL && strcmp(state, "running") == 0;
            if (!running)
                left[k] = true;
            if (running && (left[k] || waited >= 10000)) {
                done[k] = true;
                remaining--;
                printf("Reinitialize is completed on: %s\n", name);
                fflush(stdout);
            }
            json_decref(st);
            ctl_resp_free(&r);
        }
    }
    if (remaining > 0) {
        ctl_err(c, "still not running again after %u minutes", REINIT_WAIT_MS / 60000);
        return CTL_FAILED;
    }
    return CTL_OK;
}

int ctl_cmd_reinit(struct ctl *c, struct ctl_iter *it)
{
    struct member_args a = {0};
    int rc = parse_member_args(c, it, reinit_opts, &a);
    if (rc != CTL_OK)
        return rc < 0 ? CTL_OK : rc;
    if (a.t.n == 0) {
        ctl_err(c, "which member? (pgwarden ctl reinit MEMBER)");
        return CTL_USAGE;
    }
    json_t *cl;
    if ((rc = ctl_need_confirmation_ok(c, "reinitializing a member")) != CTL_OK ||
        (rc = ctl_ready_cluster(c, &cl)) != CTL_OK)
        return rc;
    json_t *body = NULL;
    if ((rc = choose(c, cl, &a.t, CTL_ROLE_ANY, "reinitialize")) != CTL_OK)
        goto out;
    for (size_t k = 0; k < a.t.nchosen; k++) {
        if (!ctl_role_matches(a.t.chosen[k], CTL_ROLE_REPLICA)) {
            ctl_err(c, "%s is the leader: only replicas are reinitialized (switch over first)",
                    json_string_value(json_object_get(a.t.chosen[k], "name")));
            rc = CTL_FAILED;
            goto out;
        }
    }
    char names[2048];
    chosen_names(&a.t, names, sizeof names);
    if (!ctl_confirm(c, "Are you sure you want to reinitialize members %s? Their data directories "
                        "are wiped and cloned again.", names)) {
        ctl_err(c, "aborted");
        rc = CTL_FAILED;
        goto out;
    }
    /* patronictl sends its --force along: it cancels a task the member is running */
    body = json_pack("{s:b, s:b}", "force", c->force, "from_leader", a.from_leader);
    const json_t *started[MAX_NAMED * 4];
    size_t ns = 0;
    for (size_t k = 0; k < a.t.nchosen; k++) {
        if (post_member(c, a.t.chosen[k], "POST", "/reinitialize", body, "reinitialize",
                        CTL_ACTION_TIMEOUT_MS))
            started[ns++] = a.t.chosen[k];
        else
            rc = CTL_FAILED;
    }
    if (a.wait && ns > 0 && wait_reinit(c, started, ns) != CTL_OK)
        rc = CTL_FAILED;
out:
    json_decref(body);
    json_decref(cl);
    return rc;
}

/* --- flush: discard a scheduled switchover or scheduled restarts ---------------------- */

int ctl_cmd_flush(struct ctl *c, struct ctl_iter *it)
{
    struct member_args a = {0};
    int rc = parse_member_args(c, it, reload_opts, &a);
    if (rc != CTL_OK)
        return rc < 0 ? CTL_OK : rc;
    const char *target = a.t.n > 0 ? a.t.names[a.t.n - 1] : NULL;
    if (target == NULL || (strcmp(target, "restart") != 0 && strcmp(target, "switchover") != 0)) {
        ctl_err(c, "what to flush? (pgwarden ctl flush [MEMBER...] restart|switchover)");
        return CTL_USAGE;
    }
    a.t.n--;
    json_t *cl;
    if ((rc = ctl_ready_cluster(c, &cl)) != CTL_OK)
        return rc;
    if (strcmp(target, "switchover") == 0) {
        if (a.t.n > 0 && (rc = ctl_check_cluster_arg(c, cl, a.t.names[0])) != CTL_OK)
            goto out;
        if (!json_is_object(json_object_get(cl, "scheduled_switchover"))) {
            printf("No pending scheduled switchover\n");
            goto out;
        }
        struct ctl_resp r;
        if (ctl_request_any(c, "DELETE", "/switchover", NULL, CTL_GET_TIMEOUT_MS, &r) != 0 ||
            r.http_status != 200) {
            rc = ctl_refused(c, "flush", &r);
        } else {
            char why[512];
            printf("Success: %s\n", ctl_resp_reason(&r, why, sizeof why));
        }
        ctl_resp_free(&r);
        goto out;
    }
    if ((rc = choose(c, cl, &a.t, a.role, "flush")) != CTL_OK)
        goto out;
    /* asked of each member: its scheduled restart is not part of GET /cluster */
    for (size_t k = 0; k < a.t.nchosen; k++) {
        int code = 0;
        if (!send_member(c, a.t.chosen[k], "DELETE", "/restart", NULL, "flush scheduled restart",
                         CTL_GET_TIMEOUT_MS, 404, &code) && code != 404)
            rc = CTL_FAILED;
        if (code == 404)
            printf("No scheduled restart for member %s\n",
                   json_string_value(json_object_get(a.t.chosen[k], "name")));
    }
out:
    json_decref(cl);
    return rc;
}
