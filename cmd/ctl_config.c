/* ctl pause / resume / show-config / edit-config: the dynamic configuration
 * (GET /config, PATCH /config as a JSON merge patch, PUT /config).
 *
 * edit-config's editor session, the only asynchronous step besides HTTP:
 * happy path: write the YAML to a private temp file -> uv_spawn $EDITOR on
 * it with our terminal -> wait for it to exit -> read the file back.
 * Failure modes: the editor cannot be started, exits non-zero or is killed,
 * outlives EDITOR_DEADLINE_MS (then it gets SIGTERM), or the result is not
 * YAML (each is reported; the temp file is always removed). */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cmd/ctl_internal.h"
#include "common/jsonyaml.h"

#define PAUSE_WAIT_MS 30000u
#define EDITOR_DEADLINE_MS (6u * 3600u * 1000u)

/* --- pause / resume ----------------------------------------------------------------- */

enum { P_WAIT = 1 };

static const struct ctl_opt pause_opts[] = {
    {"wait", 0, false, P_WAIT},
    {NULL, 0, false, 0},
};

/* Poll every member's GET /config until all show the flag or the deadline. */
static int wait_pause(struct ctl *c, const json_t *cl, bool paused)
{
    printf("'%s' request sent, waiting until it is recognized by all nodes\n", paused ? "pause" : "resume");
    fflush(stdout);
    const json_t *members = json_object_get(cl, "members");
    size_t n = json_array_size(members);
    char pending[2048] = "";
    for (uint64_t waited = 0;; waited += 250) {
        size_t used = 0;
        pending[0] = '\0';
        for (size_t i = 0; i < n; i++) {
            const json_t *m = json_array_get(members, i);
            const char *name = json_string_value(json_object_get(m, "name"));
            const char *api = json_string_value(json_object_get(m, "api_url"));
            char url[600];
            ctl_member_url(api ? api : "", "/config", url, sizeof url);
            struct ctl_resp r;
            bool ok = false;
            if (api != NULL && ctl_request(c, "GET", url, NULL, CTL_GET_TIMEOUT_MS, &r) == 0 &&
                r.http_status == 200) {
                json_t *j = ctl_resp_json(&r);
                ok = json_is_true(json_object_get(j, "pause")) == paused;
                json_decref(j);
            }
            ctl_resp_free(&r);
            if (!ok) {
                int w = snprintf(pending + used, sizeof pending - used, "%s%s", used ? ", " : "",
                                 name ? name : "?");
                if (w > 0 && (size_t)w < sizeof pending - used)
                    used += (size_t)w;
            }
        }
        if (used == 0) {
            printf("Success: cluster management is %s\n", paused ? "paused" : "resumed");
            return CTL_OK;
        }
        if (waited >= PAUSE_WAIT_MS)
            break;
        ctl_sleep_ms(c, 250);
    }
    ctl_err(c, "%s did not show pause: %s within %u s", pending, paused ? "true" : "false",
            PAUSE_WAIT_MS / 1000);
    return CTL_FAILED;
}

static int pause_common(struct ctl *c, struct ctl_iter *it, bool paused)
{
    bool wait = false;
    const char *word = NULL, *val;
    int id;
    while ((id = ctl_next_arg(c, it, pause_opts, &val)) != CTL_ARG_END) {
        if (id == CTL_ARG_ERROR)
            return CTL_USAGE;
        if (id == CTL_ARG_HELP) {
            ctl_sub_help(stdout, c->sub);
            return CTL_OK;
        }
        if (id == P_WAIT) {
            wait = true;
        } else if (id == CTL_ARG_POSITIONAL && word == NULL) {
            word = val;
        } else {
            ctl_err(c, "unexpected argument \"%s\"", val ? val : "");
            return CTL_USAGE;
        }
    }
    json_t *cl;
    int rc = ctl_ready_cluster(c, &cl);
    if (rc != CTL_OK)
        return rc;
    json_t *body = NULL;
    if ((rc = ctl_check_cluster_arg(c, cl, word)) != CTL_OK)
        goto out;
    if (json_is_true(json_object_get(cl, "pause")) == paused) {
        ctl_err(c, "the cluster is %s paused", paused ? "already" : "not");
        rc = CTL_FAILED;
        goto out;
    }
    body = json_pack("{s:o}", "pause", paused ? json_true() : json_null());
    struct ctl_resp r;
    if (ctl_request_any(c, "PATCH", "/config", body, CTL_ACTION_TIMEOUT_MS, &r) != 0 ||
        r.http_status != 200) {
        rc = ctl_refused(c, paused ? "pause" : "resume", &r);
    } else if (wait) {
        rc = wait_pause(c, cl, paused);
    } else {
        printf("Success: cluster management is %s\n", paused ? "paused" : "resumed");
        rc = CTL_OK;
    }
    ctl_resp_free(&r);
out:
    json_decref(body);
    json_decref(cl);
    return rc;
}

int ctl_cmd_pause(struct ctl *c, struct ctl_iter *it)
{
    return pause_common(c, it, true);
}

int ctl_cmd_resume(struct ctl *c, struct ctl_iter *it)
{
    return pause_common(c, it, false);
}

/* --- show-config -------------------------------------------------------------------- */

static int get_config(struct ctl *c, const char *word, json_t **out)
{
    if (word != NULL) {
        json_t *cl = ctl_get_json(c, "/cluster");
        int rc = cl != NULL ? ctl_check_cluster_arg(c, cl, word) : CTL_FAILED;
        json_decref(cl);
        if (rc != CTL_OK)
            return rc;
    }
    *out = ctl_get_json(c, "/config");
    if (*out == NULL)
        return CTL_FAILED;
    if (!json_is_object(*out)) {
        ctl_err(c, "GET /config did not answer a mapping");
        json_decref(*out);
        *out = NULL;
        return CTL_FAILED;
    }
    return CTL_OK;
}

int ctl_cmd_show_config(struct ctl *c, struct ctl_iter *it)
{
    const char *word = NULL, *val;
    int id;
    while ((id = ctl_next_arg(c, it, NULL, &val)) != CTL_ARG_END) {
        if (id == CTL_ARG_HELP) {
            ctl_sub_help(stdout, c->sub);
            return CTL_OK;
        }
        if (id != CTL_ARG_POSITIONAL || word != NULL) {
            if (id == CTL_ARG_POSITIONAL)
                ctl_err(c, "unexpected argument \"%s\"", val);
            return CTL_USAGE;
        }
        word = val;
    }
    int rc = ctl_ready(c);
    if (rc != CTL_OK)
        return rc;
    json_t *conf;
    if ((rc = get_config(c, word, &conf)) != CTL_OK)
        return rc;
    rc = ctl_print_doc(c, conf);
    json_decref(conf);
    return rc;
}

/* --- edit-config -------------------------------------------------------------------- */

enum { E_SET = 1, E_PG, E_APPLY, E_REPLACE, E_QUIET, E_FORCE };

static const struct ctl_opt edit_opts[] = {
    {"set", 's', true, E_SET},
    {"pg", 'p', true, E_PG},
    {"apply", 0, true, E_APPLY},
    {"replace", 0, true, E_REPLACE},
    {"quiet", 'q', false, E_QUIET},
    {"force", 0, false, E_FORCE},
    {NULL, 0, false, 0},
};

#define MAX_SETS 128

/* Read a whole file ("-": standard input), at most JY_MAX_BYTES. */
static char *slurp(const struct ctl *c, const char *path, size_t *len)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
    if (f == NULL) {
        ctl_err(c, "cannot read %s: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    while (buf != NULL) {
        if (n + 1 >= cap) {
            if (cap > JY_MAX_BYTES) {
                ctl_err(c, "%s is larger than %u bytes", path, JY_MAX_BYTES);
                free(buf);
                buf = NULL;
                break;
            }
            char *p = realloc(buf, cap * 2);
            if (p == NULL) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = p;
            cap *= 2;
        }
        size_t k = fread(buf + n, 1, cap - n - 1, f);
        n += k;
        if (k == 0) {
            if (ferror(f)) {
                ctl_err(c, "cannot read %s: %s", path, strerror(errno));
                free(buf);
                buf = NULL;
            }
            break;
        }
    }
    if (f != stdin)
        fclose(f);
    if (buf != NULL) {
        buf[n] = '\0';
        *len = n;
    }
    return buf;
}

static json_t *read_yaml_file(const struct ctl *c, const char *path)
{
    size_t len;
    char *text = slurp(c, path, &len);
    if (text == NULL)
        return NULL;
    char err[512];
    json_t *j = jy_from_yaml(text, len, err, sizeof err);
    free(text);
    if (j == NULL) {
        ctl_err(c, "%s: %s", strcmp(path, "-") == 0 ? "standard input" : path, err);
        return NULL;
    }
    if (!json_is_object(j)) {
        ctl_err(c, "%s: expected a mapping of configuration keys", strcmp(path, "-") == 0 ? "standard input" : path);
        json_decref(j);
        return NULL;
    }
    return j;
}

struct editor {
    uv_process_t proc;
    uv_timer_t timer;
    int64_t exit_status;
    int term_signal;
    bool exited;
    int open; /* handles not yet closed */
};

static void editor_closed(uv_handle_t *h)
{
    struct editor *e = h->data;
    e->open--;
}

static void editor_exit(uv_process_t *p, int64_t status, int sig)
{
    struct editor *e = p->data;
    e->exited = true;
    e->exit_status = status;
    e->term_signal = sig;
    uv_close((uv_handle_t *)&e->proc, editor_closed);
    uv_timer_stop(&e->timer);
    uv_close((uv_handle_t *)&e->timer, editor_closed);
}

static void editor_deadline(uv_timer_t *t)
{
    struct editor *e = t->data;
    if (!e->exited)
        uv_process_kill(&e->proc, SIGTERM);
}

/* Run $VISUAL / $EDITOR (default vi) on path; CTL_OK when it exited 0. */
static int run_editor(struct ctl *c, const char *path)
{
    const char *ed = getenv("VISUAL");
    if (ed == NULL || ed[0] == '\0')
        ed = getenv("EDITOR");
    if (ed == NULL || ed[0] == '\0')
        ed = "vi";
    char *copy = strdup(ed);
    char *args[17];
    size_t n = 0;
    char *save = NULL;
    for (char *w = copy ? strtok_r(copy, " \t", &save) : NULL; w != NULL && n < 15;
         w = strtok_r(NULL, " \t", &save))
        args[n++] = w;
    if (n == 0) {
        free(copy);
        ctl_err(c, "the editor \"%s\" is empty", ed);
        return CTL_FAILED;
    }
    args[n++] = (char *)path;
    args[n] = NULL;
    uv_stdio_container_t stdio[3] = {
        {.flags = UV_INHERIT_FD, .data.fd = 0},
        {.flags = UV_INHERIT_FD, .data.fd = 1},
        {.flags = UV_INHERIT_FD, .data.fd = 2},
    };
    uv_process_options_t o = {.file = args[0], .args = args, .exit_cb = editor_exit,
                              .stdio_count = 3, .stdio = stdio};
    struct editor e = {0};
    e.proc.data = &e;
    e.timer.data = &e;
    if (uv_timer_init(&c->loop, &e.timer) != 0) {
        free(copy);
        return CTL_FAILED;
    }
    e.open = 1;
    int rc = uv_spawn(&c->loop, &e.proc, &o);
    if (rc != 0) {
        ctl_err(c, "cannot start the editor %s: %s (set $EDITOR)", args[0], uv_strerror(rc));
        uv_close((uv_handle_t *)&e.proc, NULL); /* uv_spawn failure still needs a close */
        uv_close((uv_handle_t *)&e.timer, editor_closed);
        uv_run(&c->loop, UV_RUN_DEFAULT);
        free(copy);
        return CTL_FAILED;
    }
    e.open = 2;
    uv_timer_start(&e.timer, editor_deadline, EDITOR_DEADLINE_MS, 0);
    uv_run(&c->loop, UV_RUN_DEFAULT); /* until the editor exited and both handles closed */
    free(copy);
    if (!e.exited || e.term_signal != 0 || e.exit_status != 0) {
        ctl_err(c, "the editor did not finish cleanly (%s %d); nothing was changed",
                e.term_signal ? "signal" : "exit status", e.term_signal ? e.term_signal : (int)e.exit_status);
        return CTL_FAILED;
    }
    return CTL_OK;
}

static json_t *edit_interactively(struct ctl *c, const char *yaml)
{
    const char *dir = getenv("TMPDIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/pgwarden-config-XXXXXX.yaml", dir && dir[0] ? dir : "/tmp");
    int fd = mkstemps(path, 5);
    if (fd < 0) {
        ctl_err(c, "cannot create a temporary file in %s: %s", dir && dir[0] ? dir : "/tmp", strerror(errno));
        return NULL;
    }
    size_t len = strlen(yaml), off = 0;
    while (off < len) {
        ssize_t w = write(fd, yaml + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            ctl_err(c, "cannot write %s: %s", path, strerror(errno));
            close(fd);
            unlink(path);
            return NULL;
        }
        off += (size_t)w;
    }
    close(fd);
    json_t *j = NULL;
    if (run_editor(c, path) == CTL_OK)
        j = read_yaml_file(c, path);
    unlink(path);
    return j;
}

int ctl_cmd_edit_config(struct ctl *c, struct ctl_iter *it)
{
    char *sets[MAX_SETS];
    size_t nsets = 0;
    const char *apply = NULL, *replace = NULL, *word = NULL, *val;
    bool quiet = false;
    int id, rc = CTL_USAGE;
    while ((id = ctl_next_arg(c, it, edit_opts, &val)) != CTL_ARG_END) {
        switch (id) {
        case CTL_ARG_ERROR:
            goto free_sets;
        case CTL_ARG_HELP:
            ctl_sub_help(stdout, c->sub);
            rc = CTL_OK;
            goto free_sets;
        case E_SET:
        case E_PG:
            if (nsets == MAX_SETS) {
                ctl_err(c, "more than %d -s/-p", MAX_SETS);
                goto free_sets;
            }
            if (strchr(val, '=') == NULL || val[0] == '=') {
                ctl_err(c, "%s expects %s=VALUE, got \"%s\"", id == E_SET ? "-s" : "-p",
                        id == E_SET ? "KEY.PATH" : "PARAM", val);
                goto free_sets;
            }
            if (id == E_PG ? asprintf(&sets[nsets], "postgresql.parameters.%s", val) < 0
                           : (sets[nsets] = strdup(val)) == NULL) {
                rc = CTL_FAILED;
                goto free_sets;
            }
            nsets++;
            break;
        case E_APPLY:
            apply = val;
            break;
        case E_REPLACE:
            replace = val;
            break;
        case E_QUIET:
            quiet = true;
            break;
        case E_FORCE:
            c->force = true;
            break;
        case CTL_ARG_POSITIONAL:
            if (word != NULL) {
                ctl_err(c, "unexpected argument \"%s\"", val);
                goto free_sets;
            }
            word = val;
            break;
        default:
            goto free_sets;
        }
    }
    if (replace != NULL && (apply != NULL || nsets > 0)) {
        ctl_err(c, "--replace takes the whole configuration: not with --apply, -s or -p");
        goto free_sets;
    }
    bool editor = replace == NULL && apply == NULL && nsets == 0;
    if (editor && !(ctl_interactive() && isatty(STDOUT_FILENO))) {
        ctl_err(c, "nothing to change: give -s KEY.PATH=VALUE, -p PARAM=VALUE, --apply FILE or "
                   "--replace FILE (there is no terminal for $EDITOR)");
        goto free_sets;
    }
    bool stdin_used = (apply != NULL && strcmp(apply, "-") == 0) || (replace != NULL && strcmp(replace, "-") == 0);
    if (stdin_used && !c->force) {
        ctl_err(c, "the changes come from standard input, so I cannot ask to confirm them: add --force");
        goto free_sets;
    }
    if (!editor && (rc = ctl_need_confirmation_ok(c, "changing the configuration")) != CTL_OK)
        goto free_sets;
    if ((rc = ctl_ready(c)) != CTL_OK)
        goto free_sets;

    json_t *old = NULL, *next = NULL, *patch = NULL;
    char *old_yaml = NULL, *new_yaml = NULL, *diff = NULL;
    if ((rc = get_config(c, word, &old)) != CTL_OK)
        goto out;
    rc = CTL_FAILED;
    old_yaml = jy_to_yaml(old);
    if (old_yaml == NULL)
        goto out;
    if (replace != NULL) {
        next = read_yaml_file(c, replace);
    } else if (editor) {
        next = edit_interactively(c, old_yaml);
    } else {
        next = json_deep_copy(old);
        if (next != NULL && apply != NULL) {
            json_t *p = read_yaml_file(c, apply);
            if (p == NULL || jy_merge_patch_apply(next, p) != 0) {
                json_decref(next);
                next = NULL;
            }
            json_decref(p);
        }
        for (size_t i = 0; next != NULL && i < nsets; i++) {
            char err[512];
            if (jy_set_path(next, sets[i], err, sizeof err) != 0) {
                ctl_err(c, "%s", err);
                rc = CTL_USAGE;
                json_decref(next);
                next = NULL;
            }
        }
    }
    if (next == NULL)
        goto out;
    new_yaml = jy_to_yaml(next);
    if (new_yaml == NULL || (diff = jy_text_diff(old_yaml, new_yaml, "before", "after")) == NULL)
        goto out;
    if (diff[0] == '\0') {
        printf("Not changing configuration.\n");
        rc = CTL_OK;
        goto out;
    }
    if (!quiet) {
        fputs(diff, stdout);
        fflush(stdout);
    }
    if (!ctl_confirm(c, "Apply these changes?")) {
        ctl_err(c, "aborted: nothing was changed");
        rc = CTL_FAILED;
        goto out;
    }
    struct ctl_resp r;
    if (replace != NULL) {
        rc = ctl_request_any(c, "PUT", "/config", next, CTL_ACTION_TIMEOUT_MS, &r);
    } else {
        patch = jy_merge_patch_diff(old, next);
        if (patch == NULL)
            goto out;
        rc = ctl_request_any(c, "PATCH", "/config", patch, CTL_ACTION_TIMEOUT_MS, &r);
    }
    if (rc != 0 || r.http_status != 200) {
        rc = ctl_refused(c, "the configuration change", &r);
    } else {
        printf("Configuration changed\n");
        rc = CTL_OK;
    }
    ctl_resp_free(&r);
out:
    free(diff);
    free(old_yaml);
    free(new_yaml);
    json_decref(patch);
    json_decref(next);
    json_decref(old);
free_sets:
    for (size_t i = 0; i < nsets; i++)
        free(sets[i]);
    return rc;
}
