/* ctl members: the Raft configuration (GET /raft) and changes to it, which
 * only the Raft leader can make: POST /raft/members {name, raft_addr} and
 * DELETE /raft/members/NAME are sent to the leader's REST API, found through
 * GET /raft (its name) and GET /cluster (its api_url). When leadership moves
 * in between (503), the leader is looked up again, at most 3 times. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/ctl_internal.h"
#include "common/cfg.h"
#include "common/table.h"

static bool name_ok(const char *s)
{
    if (*s == '\0' || strlen(s) > 63)
        return false;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '-' && *s != '_' && *s != '.')
            return false;
    return true;
}

static int show(struct ctl *c)
{
    json_t *raft = ctl_get_json(c, "/raft");
    if (raft == NULL)
        return CTL_FAILED;
    const json_t *conf = json_object_get(raft, "configuration");
    json_int_t leader_id = json_integer_value(json_object_get(json_object_get(raft, "leader"), "id"));
    static const char *const names[] = {"ID", "Name", "Raft address", "Role", "Raft leader"};
    int rc = CTL_OK;
    json_t *arr = json_array();
    struct table *t = table_new(5, names);
    if (t == NULL || arr == NULL) {
        rc = CTL_FAILED;
        goto out;
    }
    table_set_align(t, 0, TABLE_RIGHT);
    size_t i;
    json_t *s;
    json_array_foreach(conf, i, s) {
        json_int_t id = json_integer_value(json_object_get(s, "id"));
        const char *name = json_string_value(json_object_get(s, "name"));
        const char *addr = json_string_value(json_object_get(s, "address"));
        const char *role = json_string_value(json_object_get(s, "role"));
        char ids[32];
        snprintf(ids, sizeof ids, "%" JSON_INTEGER_FORMAT, id);
        bool is_leader = id == leader_id && leader_id != 0;
        const char *cells[5] = {ids, name ? name : "", addr ? addr : "", role ? role : "",
                                is_leader ? "*" : ""};
        if (table_add_row(t, cells) != 0)
            rc = CTL_FAILED;
        json_t *o = json_pack("{s:I, s:o, s:s, s:s, s:b}", "ID", (json_int_t)id, "Name",
                              name ? json_string(name) : json_null(), "Raft address", addr ? addr : "",
                              "Role", role ? role : "", "Raft leader", is_leader);
        json_array_append_new(arr, o);
    }
    if (rc != CTL_OK)
        goto out;
    if (c->format == CTL_FMT_JSON || c->format == CTL_FMT_YAML) {
        rc = ctl_print_doc(c, arr);
    } else {
        char title[128];
        snprintf(title, sizeof title, "Raft: term %" JSON_INTEGER_FORMAT,
                 json_integer_value(json_object_get(raft, "term")));
        char *out = c->format == CTL_FMT_TSV ? table_render_tsv(t) : table_render_pretty(t, title);
        if (out == NULL)
            rc = CTL_FAILED;
        else
            fputs(out, stdout);
        free(out);
    }
out:
    table_free(t);
    json_decref(arr);
    json_decref(raft);
    return rc;
}

/* The Raft leader's REST API base URL, or CTL_FAILED after saying why. */
static int leader_api(struct ctl *c, char *url, size_t len)
{
    json_t *raft = ctl_get_json(c, "/raft");
    if (raft == NULL)
        return CTL_FAILED;
    const char *leader = json_string_value(json_object_get(json_object_get(raft, "leader"), "name"));
    if (leader == NULL) {
        ctl_err(c, "the cluster has no Raft leader right now (term %" JSON_INTEGER_FORMAT "); try again",
                json_integer_value(json_object_get(raft, "term")));
        json_decref(raft);
        return CTL_FAILED;
    }
    json_t *cl = ctl_get_json(c, "/cluster");
    const json_t *m = cl != NULL ? ctl_member(cl, leader) : NULL;
    const char *api = json_string_value(json_object_get(m, "api_url"));
    int rc = CTL_OK;
    if (api == NULL) {
        if (cl != NULL)
            ctl_err(c, "the Raft leader %s has no REST API address in the member list", leader);
        rc = CTL_FAILED;
    } else {
        ctl_member_url(api, "", url, len);
    }
    json_decref(cl);
    json_decref(raft);
    return rc;
}

static int change(struct ctl *c, const char *method, const char *path, const json_t *body,
                  const char *what, const char *doing)
{
    struct ctl_resp r = {0};
    for (int attempt = 0; attempt < 3; attempt++) {
        char base[600], url[800];
        if (leader_api(c, base, sizeof base) != CTL_OK)
            return CTL_FAILED;
        snprintf(url, sizeof url, "%s%s", base, path);
        ctl_resp_free(&r);
        if (ctl_request(c, method, url, body, CTL_ACTION_TIMEOUT_MS, &r) != 0) {
            if (r.sent)
                break; /* it may have happened: do not repeat it */
        } else if (r.http_status != 503) {
            break;
        }
        ctl_sleep_ms(c, 500);
    }
    int rc;
    if (r.status == 0 && r.http_status == 200) {
        json_t *j = ctl_resp_json(&r);
        json_int_t id = json_integer_value(json_object_get(j, "id"));
        if (id > 0)
            printf("Success: %s (raft id %" JSON_INTEGER_FORMAT ")\n", what, id);
        else
            printf("Success: %s\n", what);
        json_decref(j);
        rc = CTL_OK;
    } else {
        rc = ctl_refused(c, doing, &r);
    }
    ctl_resp_free(&r);
    return rc;
}

int ctl_cmd_members(struct ctl *c, struct ctl_iter *it)
{
    static const struct ctl_opt opts[] = {{"force", 0, false, 1}, {NULL, 0, false, 0}};
    const char *words[4];
    size_t n = 0;
    const char *val;
    int id;
    while ((id = ctl_next_arg(c, it, opts, &val)) != CTL_ARG_END) {
        if (id == CTL_ARG_ERROR)
            return CTL_USAGE;
        if (id == CTL_ARG_HELP) {
            ctl_sub_help(stdout, c->sub);
            return CTL_OK;
        }
        if (id == 1) {
            c->force = true;
            continue;
        }
        if (n == 4) {
            ctl_err(c, "unexpected argument \"%s\"", val);
            return CTL_USAGE;
        }
        words[n++] = val;
    }
    if (n == 0) {
        int rc = ctl_ready(c);
        return rc != CTL_OK ? rc : show(c);
    }
    if (strcmp(words[0], "add") == 0) {
        if (n != 3) {
            ctl_err(c, "usage: pgwarden ctl members add RAFT_ADDR NAME");
            return CTL_USAGE;
        }
        char host[64];
        uint16_t port;
        if (cfg_parse_ipv4_addr(words[1], host, sizeof host, &port) != 0) {
            ctl_err(c, "RAFT_ADDR must be an IPv4 address and port like 10.0.0.4:5010, got \"%s\"", words[1]);
            return CTL_USAGE;
        }
        if (!name_ok(words[2])) {
            ctl_err(c, "NAME must be 1-63 letters, digits, '-', '_' or '.', got \"%s\"", words[2]);
            return CTL_USAGE;
        }
        int rc = ctl_ready(c);
        if (rc != CTL_OK)
            return rc;
        json_t *body = json_pack("{s:s, s:s}", "name", words[2], "raft_addr", words[1]);
        char what[256], doing[256];
        snprintf(what, sizeof what, "added %s at %s to the Raft configuration", words[2], words[1]);
        snprintf(doing, sizeof doing, "adding %s", words[2]);
        rc = change(c, "POST", "/raft/members", body, what, doing);
        if (rc == CTL_OK)
            printf("Now start pgwarden on that node with name: %s and raft.self_addr: %s\n", words[2], words[1]);
        json_decref(body);
        return rc;
    }
    if (strcmp(words[0], "remove") == 0) {
        if (n != 2) {
            ctl_err(c, "usage: pgwarden ctl members remove NAME");
            return CTL_USAGE;
        }
        if (!name_ok(words[1])) {
            ctl_err(c, "NAME must be 1-63 letters, digits, '-', '_' or '.', got \"%s\"", words[1]);
            return CTL_USAGE;
        }
        int rc = ctl_need_confirmation_ok(c, "removing a member");
        if (rc != CTL_OK || (rc = ctl_ready(c)) != CTL_OK)
            return rc;
        json_t *cl = ctl_get_json(c, "/cluster");
        if (cl == NULL)
            return CTL_FAILED;
        if (ctl_member(cl, words[1]) == NULL) {
            char all[1024];
            ctl_member_names(cl, all, sizeof all);
            ctl_err(c, "%s is not a member (members: %s)", words[1], all);
            json_decref(cl);
            return CTL_FAILED;
        }
        json_decref(cl);
        if (!ctl_confirm(c, "Are you sure you want to remove %s from the cluster (Raft and member list)?",
                         words[1])) {
            ctl_err(c, "aborted");
            return CTL_FAILED;
        }
        char path[128], what[128], doing[128];
        snprintf(path, sizeof path, "/raft/members/%s", words[1]);
        snprintf(what, sizeof what, "removed %s", words[1]);
        snprintf(doing, sizeof doing, "removing %s", words[1]);
        return change(c, "DELETE", path, NULL, what, doing);
    }
    ctl_err(c, "unknown action \"%s\": members, members add RAFT_ADDR NAME, members remove NAME", words[0]);
    return CTL_USAGE;
}
