/* pgwarden ctl backup: start a backup on the primary, or list what the
 * repository holds (GET /backup, docs/backups.md). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cmd/ctl_internal.h"
#include "common/cfg.h"
#include "common/jsonyaml.h"
#include "common/table.h"
#include "pg/pgconf.h"

enum { B_TYPE = 1, B_WAIT, B_TIMEOUT };

static const struct ctl_opt backup_opts[] = {
    {"type", 't', true, B_TYPE},
    {"wait", 0, false, B_WAIT},
    {"timeout", 0, true, B_TIMEOUT},
    {NULL, 0, false, 0},
};

static void fmt_time(json_int_t s, char *buf, size_t len)
{
    time_t t = (time_t)s;
    struct tm tm;
    if (s <= 0 || localtime_r(&t, &tm) == NULL || strftime(buf, len, "%Y-%m-%d %H:%M:%S %Z", &tm) == 0)
        snprintf(buf, len, "%s", "");
}

static void fmt_size(json_int_t b, char *buf, size_t len)
{
    static const char *const units[] = {"B", "kB", "MB", "GB", "TB"};
    double v = (double)b;
    size_t u = 0;
    while (v >= 1024 && u + 1 < sizeof units / sizeof units[0]) {
        v /= 1024;
        u++;
    }
    snprintf(buf, len, u == 0 ? "%.0f %s" : "%.1f %s", v, units[u]);
}

static int print_list(struct ctl *c, json_t *st)
{
    const json_t *repo = json_object_get(st, "repository");
    if (c->format == CTL_FMT_JSON || c->format == CTL_FMT_YAML)
        return ctl_print_doc(c, st);
    if (!json_is_object(repo)) {
        const json_t *e = json_object_get(st, "repository_error");
        ctl_err(c, "the repository could not be read%s%s", json_is_string(e) ? ": " : "",
                json_is_string(e) ? json_string_value(e) : " yet");
        return CTL_FAILED;
    }
    static const char *const names[] = {"Label", "Type", "Start", "Stop", "WAL start", "WAL stop",
                                        "Size", "Stored"};
    struct table *t = table_new(8, names);
    if (t == NULL)
        return CTL_FAILED;
    int rc = CTL_OK;
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(repo, "list"), i, e) {
        char start[64], stop[64], size[32], stored[32];
        fmt_time(json_integer_value(json_object_get(e, "start")), start, sizeof start);
        fmt_time(json_integer_value(json_object_get(e, "stop")), stop, sizeof stop);
        fmt_size(json_integer_value(json_object_get(e, "size")), size, sizeof size);
        fmt_size(json_integer_value(json_object_get(e, "repo_size")), stored, sizeof stored);
        const char *cells[8] = {json_string_value(json_object_get(e, "label")),
                                json_string_value(json_object_get(e, "type")), start, stop,
                                json_string_value(json_object_get(e, "wal_start")),
                                json_string_value(json_object_get(e, "wal_stop")), size, stored};
        for (size_t k = 0; k < 8; k++)
            if (cells[k] == NULL)
                cells[k] = "";
        if (table_add_row(t, cells) != 0)
            rc = CTL_FAILED;
    }
    char title[256];
    const json_t *stanza = json_object_get(st, "stanza");
    snprintf(title, sizeof title, "Stanza: %s (%s)", json_is_string(stanza) ? json_string_value(stanza) : "?",
             json_string_value(json_object_get(repo, "status")) ? json_string_value(json_object_get(repo, "status")) : "");
    char *s = c->format == CTL_FMT_TSV ? table_render_tsv(t) : table_render_pretty(t, title);
    if (s != NULL)
        fputs(s, stdout);
    else
        rc = CTL_FAILED;
    free(s);
    table_free(t);
    const json_t *run = json_object_get(st, "running");
    if (json_is_object(run) && c->format != CTL_FMT_TSV)
        printf("Running: a %s backup (%s)\n", json_string_value(json_object_get(run, "type")),
               json_string_value(json_object_get(run, "why")));
    return rc;
}

/* GET /backup from the primary (it knows what runs), else any member. */
static json_t *backup_status(struct ctl *c, const char *url)
{
    struct ctl_resp r;
    char why[512];
    if (url != NULL && ctl_request(c, "GET", url, NULL, CTL_GET_TIMEOUT_MS, &r) == 0 &&
        r.http_status == 200) {
        json_t *j = ctl_resp_json(&r);
        ctl_resp_free(&r);
        if (j != NULL)
            return j;
    } else if (url != NULL) {
        if (r.http_status == 404) {
            ctl_err(c, "%s", ctl_resp_reason(&r, why, sizeof why));
            ctl_resp_free(&r);
            return NULL;
        }
        ctl_resp_free(&r);
    }
    return ctl_get_json(c, "/backup");
}

int ctl_cmd_backup(struct ctl *c, struct ctl_iter *it)
{
    const char *type = NULL, *val, *word = NULL;
    bool wait = false;
    double timeout_s = 24 * 3600;
    int id;
    while ((id = ctl_next_arg(c, it, backup_opts, &val)) != CTL_ARG_END) {
        switch (id) {
        case CTL_ARG_ERROR:
            return CTL_USAGE;
        case CTL_ARG_HELP:
            ctl_sub_help(stdout, c->sub);
            return CTL_OK;
        case B_TYPE:
            if (strcmp(val, "full") != 0 && strcmp(val, "diff") != 0 && strcmp(val, "incr") != 0) {
                ctl_err(c, "--type: expected full, diff or incr, got \"%s\"", val);
                return CTL_USAGE;
            }
            type = val;
            break;
        case B_WAIT:
            wait = true;
            break;
        case B_TIMEOUT:
            if (!ctl_parse_seconds(c, "--timeout", val, 0, false, 7 * 86400, &timeout_s))
                return CTL_USAGE;
            break;
        case CTL_ARG_POSITIONAL:
            if (word != NULL) {
                ctl_err(c, "unexpected argument \"%s\"", val);
                return CTL_USAGE;
            }
            word = val;
            break;
        }
    }
    bool list = word != NULL && strcmp(word, "list") == 0;
    if (word != NULL && !list && strcmp(word, "now") != 0) {
        ctl_err(c, "expected list or now, got \"%s\"", word);
        return CTL_USAGE;
    }
    if (list && (type != NULL || wait)) {
        ctl_err(c, "list takes no --type or --wait");
        return CTL_USAGE;
    }
    json_t *cl;
    int rc = ctl_ready_cluster(c, &cl);
    if (rc != CTL_OK)
        return rc;
    const char *leader = ctl_leader(cl);
    const json_t *m = leader != NULL ? ctl_member(cl, leader) : NULL;
    const char *api = m != NULL ? json_string_value(json_object_get(m, "api_url")) : NULL;
    char url[600];
    if (api != NULL)
        ctl_member_url(api, "/backup", url, sizeof url);
    if (list) {
        json_t *st = backup_status(c, api != NULL ? url : NULL);
        json_decref(cl);
        if (st == NULL)
            return CTL_FAILED;
        rc = print_list(c, st);
        json_decref(st);
        return rc;
    }
    if (api == NULL) {
        ctl_err(c, "no primary: backups run on the primary");
        json_decref(cl);
        return CTL_FAILED;
    }
    json_t *body = json_pack("{s:s}", "type", type != NULL ? type : "full");
    struct ctl_resp r;
    rc = ctl_request(c, "POST", url, body, CTL_GET_TIMEOUT_MS, &r);
    json_decref(body);
    if (rc != 0 || r.http_status != 202) {
        rc = ctl_refused(c, "backup", &r);
        ctl_resp_free(&r);
        json_decref(cl);
        return rc;
    }
    ctl_resp_free(&r);
    printf("A %s backup started on %s\n", type != NULL ? type : "full", leader);
    json_decref(cl);
    if (!wait)
        return CTL_OK;
    /* until the primary reports the run over; bounded by --timeout */
    uint64_t waited = 0, limit = (uint64_t)(timeout_s * 1000);
    time_t asked = time(NULL);
    while (waited < limit) {
        ctl_sleep_ms(c, 1000);
        waited += 1000;
        json_t *st = backup_status(c, url);
        if (st == NULL)
            continue;
        const json_t *last = json_object_get(st, "last");
        bool running = !json_is_null(json_object_get(st, "running"));
        json_int_t ended = json_integer_value(json_object_get(last, "ended"));
        if (!running && json_is_object(last) && ended >= (json_int_t)asked - 1) {
            bool ok = json_is_true(json_object_get(last, "ok"));
            const char *res = json_string_value(json_object_get(last, "result"));
            printf("%s\n", res != NULL ? res : ok ? "done" : "failed");
            json_decref(st);
            return ok ? CTL_OK : CTL_FAILED;
        }
        json_decref(st);
    }
    ctl_err(c, "the backup did not finish within %.0f s (it goes on; see ctl backup list)",
            timeout_s);
    return CTL_FAILED;
}

/* ---- restore: a new cluster at a point in time ------------------------------------ */

enum { R_TIME = 1, R_LATEST, R_STANZA, R_OUT };

static const struct ctl_opt restore_opts[] = {
    {"target-time", 0, true, R_TIME},
    {"latest", 0, false, R_LATEST},
    {"from-stanza", 0, true, R_STANZA},
    {"output", 'o', true, R_OUT},
    {NULL, 0, false, 0},
};

/* The bootstrap section: pgBackRest restores the data directory, PostgreSQL
 * replays to the target and promotes (keep_existing_recovery_conf keeps
 * the settings pgBackRest wrote), then pgwarden removes them and founds
 * the new cluster on it. */
static json_t *restore_bootstrap(const struct cfg *cf, const char *stanza, const char *target)
{
    char conf[4200], cmd[9000];
    snprintf(conf, sizeof conf, "%s/pgbackrest.conf", cf->raft.data_dir);
    int n;
    if (target != NULL)
        n = snprintf(cmd, sizeof cmd, "%s --config=%s --stanza=%s --pg1-path=%s --type=time "
                     "\"--target=%s\" --target-action=promote --target-timeline=latest restore",
                     cf->backup.command, conf, stanza, cf->postgresql.data_dir, target);
    else
        n = snprintf(cmd, sizeof cmd, "%s --config=%s --stanza=%s --pg1-path=%s "
                     "--target-timeline=latest restore",
                     cf->backup.command, conf, stanza, cf->postgresql.data_dir);
    if (n < 0 || (size_t)n >= sizeof cmd)
        return NULL;
    return json_pack("{s:s,s:{s:s,s:b,s:b}}", "method", "pgbackrest_restore",
                     "pgbackrest_restore", "command", cmd, "no_params", 1,
                     "keep_existing_recovery_conf", 1);
}

int ctl_cmd_restore(struct ctl *c, struct ctl_iter *it)
{
    const char *target = NULL, *stanza = NULL, *out = NULL, *val;
    bool latest = false;
    int id;
    while ((id = ctl_next_arg(c, it, restore_opts, &val)) != CTL_ARG_END) {
        switch (id) {
        case CTL_ARG_ERROR:
            return CTL_USAGE;
        case CTL_ARG_HELP:
            ctl_sub_help(stdout, c->sub);
            return CTL_OK;
        case R_TIME:
            if (*val == '\0' || strpbrk(val, "\"\\\n\r") != NULL) {
                ctl_err(c, "--target-time: expected a time such as \"2026-12-07 10:00:00+00\", "
                        "got \"%s\"", val);
                return CTL_USAGE;
            }
            target = val;
            break;
        case R_LATEST:
            latest = true;
            break;
        case R_STANZA:
            stanza = val;
            break;
        case R_OUT:
            out = val;
            break;
        case CTL_ARG_POSITIONAL:
            ctl_err(c, "unexpected argument \"%s\"", val);
            return CTL_USAGE;
        }
    }
    if ((target == NULL) == !latest) {
        ctl_err(c, "give --target-time TIME or --latest");
        return CTL_USAGE;
    }
    if (c->config_path == NULL) {
        ctl_err(c, "-c FILE: the configuration of the node that founds the new cluster");
        return CTL_USAGE;
    }
    struct cfg cf;
    struct cfg_error err;
    if (cfg_load(c->config_path, &cf, &err, NULL) != 0) {
        ctl_err(c, "%s", err.msg);
        return CTL_FAILED;
    }
    int rc = CTL_FAILED;
    char *text = NULL, *yaml = NULL;
    size_t len = 0;
    json_t *doc = NULL, *boot = NULL;
    if (!cfg_backup_enabled(&cf.backup) || cf.witness) {
        ctl_err(c, "%s: needs a postgresql section and backup.method pgbackrest (the repository "
                "to restore from)", c->config_path);
        goto done;
    }
    if (stanza == NULL)
        stanza = cf.backup.stanza;
    if (cfg_read_file(c->config_path, &text, &len, NULL, &err) != 0) {
        ctl_err(c, "%s", err.msg);
        goto done;
    }
    char why[512];
    if ((doc = jy_from_yaml(text, len, why, sizeof why)) == NULL || !json_is_object(doc)) {
        ctl_err(c, "%s: %s", c->config_path, doc == NULL ? why : "not a mapping");
        goto done;
    }
    if ((boot = restore_bootstrap(&cf, stanza, target)) == NULL) {
        ctl_err(c, "the restore command is too long");
        goto done;
    }
    json_t *b = json_object_get(doc, "bootstrap");
    if (!json_is_object(b)) {
        b = json_object();
        json_object_set_new(doc, "bootstrap", b);
    }
    const json_t *old = json_object_get(b, "method");
    if (json_is_string(old) && strcmp(json_string_value(old), "initdb") != 0)
        json_object_del(b, json_string_value(old));
    json_object_update(b, boot);
    if ((yaml = jy_to_yaml(doc)) == NULL) {
        ctl_err(c, "out of memory");
        goto done;
    }
    struct cfg check;
    if (cfg_load_buffer(out ? out : "(output)", yaml, strlen(yaml), &check, &err, NULL) != 0) {
        ctl_err(c, "the written configuration would not load: %s", err.msg);
        goto done;
    }
    cfg_free(&check);
    if (out != NULL) {
        char eb[512];
        if (pgconf_write_file(out, yaml, strlen(yaml), 0600, eb, sizeof eb) != 0) {
            ctl_err(c, "%s", eb);
            goto done;
        }
    } else {
        fputs(yaml, stdout);
    }
    fprintf(stderr,
            "A new cluster restored from stanza %s to %s.\n"
            "Start pgwarden with this configuration on one node whose data directory (%s) and\n"
            "raft.data_dir (%s) are empty; it restores, replays, promotes and founds the\n"
            "cluster; then start the others (they clone from it).\n",
            stanza, target != NULL ? target : "the end of the archive", cf.postgresql.data_dir,
            cf.raft.data_dir);
    if (strcmp(stanza, cf.backup.stanza) == 0)
        fprintf(stderr,
                "Note: the new cluster archives into the stanza it is restored from (%s). Stop\n"
                "the old cluster first, or give the new one its own backup.stanza.\n", stanza);
    rc = CTL_OK;
done:
    json_decref(boot);
    json_decref(doc);
    free(yaml);
    free(text);
    cfg_free(&cf);
    return rc;
}
