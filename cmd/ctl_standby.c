/* ctl demote-cluster / promote-cluster: turn the cluster into a standby
 * cluster of a remote primary and back, by adding or removing
 * standby_cluster in the dynamic configuration (PATCH /config), then
 * waiting until the members show the new leader role. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/ctl_internal.h"

#define ROLE_WAIT_MS 90000u

enum { S_HOST = 1, S_PORT, S_RESTORE, S_SLOT, S_FORCE };

static const struct ctl_opt demote_opts[] = {
    {"host", 0, true, S_HOST},
    {"port", 0, true, S_PORT},
    {"restore-command", 0, true, S_RESTORE},
    {"primary-slot-name", 0, true, S_SLOT},
    {"force", 0, false, S_FORCE},
    {NULL, 0, false, 0},
};

static const struct ctl_opt promote_opts[] = {
    {"force", 0, false, S_FORCE},
    {NULL, 0, false, 0},
};

/* Wait until /cluster names a member with `role` (leader or standby_leader). */
static int wait_role(struct ctl *c, const char *role)
{
    for (uint64_t waited = 0; waited <= ROLE_WAIT_MS; waited += 500) {
        json_t *cl = ctl_get_json(c, "/cluster");
        const json_t *ms = json_object_get(cl, "members");
        for (size_t i = 0; i < json_array_size(ms); i++) {
            const json_t *m = json_array_get(ms, i);
            const char *r = json_string_value(json_object_get(m, "role"));
            const char *st = json_string_value(json_object_get(m, "state"));
            if (r != NULL && strcmp(r, role) == 0 && st != NULL && strcmp(st, "running") == 0) {
                printf("Success: %s is the %s\n", json_string_value(json_object_get(m, "name")),
                       strcmp(role, "leader") == 0 ? "primary" : "standby leader");
                json_decref(cl);
                return CTL_OK;
            }
        }
        json_decref(cl);
        ctl_sleep_ms(c, 500);
    }
    ctl_err(c, "no member runs as %s after %u s (see pgwarden ctl list and the logs)", role,
            ROLE_WAIT_MS / 1000);
    return CTL_FAILED;
}

static int patch_standby(struct ctl *c, const char *word, json_t *value, const char *what,
                         const char *role)
{
    int rc = ctl_ready(c);
    if (rc != CTL_OK) {
        json_decref(value);
        return rc;
    }
    json_t *cl = ctl_get_json(c, "/cluster");
    json_t *conf = cl != NULL ? ctl_get_json(c, "/config") : NULL;
    json_t *body = json_pack("{s:o}", "standby_cluster", value);
    if (cl == NULL || conf == NULL || body == NULL) {
        rc = CTL_FAILED;
        goto out;
    }
    if ((rc = ctl_check_cluster_arg(c, cl, word)) != CTL_OK)
        goto out;
    bool standby = json_object_get(conf, "standby_cluster") != NULL;
    if (strcmp(role, "leader") == 0 && !standby) {
        ctl_err(c, "the cluster is not a standby cluster");
        rc = CTL_FAILED;
        goto out;
    }
    if (strcmp(role, "standby_leader") == 0 && standby) {
        ctl_err(c, "the cluster is already a standby cluster (change standby_cluster with "
                   "edit-config)");
        rc = CTL_FAILED;
        goto out;
    }
    if (!ctl_confirm(c, "Are you sure you want to %s the cluster?", what)) {
        printf("Aborted\n");
        rc = CTL_FAILED;
        goto out;
    }
    struct ctl_resp r;
    if (ctl_request_any(c, "PATCH", "/config", body, CTL_ACTION_TIMEOUT_MS, &r) != 0 ||
        r.http_status != 200) {
        rc = ctl_refused(c, what, &r);
        ctl_resp_free(&r);
        goto out;
    }
    ctl_resp_free(&r);
    printf("standby_cluster %s: waiting for the %s\n", strcmp(role, "leader") == 0 ? "removed" : "set",
           strcmp(role, "leader") == 0 ? "promotion" : "demotion");
    fflush(stdout);
    rc = wait_role(c, role);
out:
    json_decref(body);
    json_decref(conf);
    json_decref(cl);
    return rc;
}

int ctl_cmd_demote_cluster(struct ctl *c, struct ctl_iter *it)
{
    const char *host = NULL, *restore = NULL, *slot = NULL, *word = NULL, *val;
    long port = 0;
    int id;
    while ((id = ctl_next_arg(c, it, demote_opts, &val)) != CTL_ARG_END) {
        switch (id) {
        case CTL_ARG_ERROR: return CTL_USAGE;
        case CTL_ARG_HELP: ctl_sub_help(stdout, c->sub); return CTL_OK;
        case S_HOST: host = val; break;
        case S_RESTORE: restore = val; break;
        case S_SLOT: slot = val; break;
        case S_FORCE: c->force = true; break;
        case S_PORT: {
            char *end;
            port = strtol(val, &end, 10);
            if (*val == '\0' || *end != '\0' || port < 1 || port > 65535) {
                ctl_err(c, "--port expects 1..65535, got \"%s\"", val);
                return CTL_USAGE;
            }
            break;
        }
        case CTL_ARG_POSITIONAL:
            if (word == NULL) {
                word = val;
                break;
            }
            /* fall through */
        default: ctl_err(c, "unexpected argument \"%s\"", val ? val : ""); return CTL_USAGE;
        }
    }
    if (host == NULL && restore == NULL) {
        ctl_err(c, "give the remote primary with --host (and --port), or --restore-command");
        return CTL_USAGE;
    }
    int rc = ctl_need_confirmation_ok(c, "demoting the cluster");
    if (rc != CTL_OK)
        return rc;
    json_t *sb = json_object();
    if (host != NULL)
        json_object_set_new(sb, "host", json_string(host));
    if (port != 0)
        json_object_set_new(sb, "port", json_integer(port));
    if (restore != NULL)
        json_object_set_new(sb, "restore_command", json_string(restore));
    if (slot != NULL)
        json_object_set_new(sb, "primary_slot_name", json_string(slot));
    return patch_standby(c, word, sb, "demote", "standby_leader");
}

int ctl_cmd_promote_cluster(struct ctl *c, struct ctl_iter *it)
{
    const char *word = NULL, *val;
    int id;
    while ((id = ctl_next_arg(c, it, promote_opts, &val)) != CTL_ARG_END) {
        if (id == CTL_ARG_ERROR)
            return CTL_USAGE;
        if (id == CTL_ARG_HELP) {
            ctl_sub_help(stdout, c->sub);
            return CTL_OK;
        }
        if (id == S_FORCE) {
            c->force = true;
        } else if (id == CTL_ARG_POSITIONAL && word == NULL) {
            word = val;
        } else {
            ctl_err(c, "unexpected argument \"%s\"", val ? val : "");
            return CTL_USAGE;
        }
    }
    int rc = ctl_need_confirmation_ok(c, "promoting the cluster");
    if (rc != CTL_OK)
        return rc;
    return patch_standby(c, word, json_null(), "promote", "leader");
}
