/* Sections of custom methods, whose names the key table cannot know:
 *   postgresql.create_replica_methods: [pgbackrest, basebackup]
 *   postgresql.pgbackrest: {command: ..., keep_data: true, no_params: true}
 *   bootstrap.method: restore
 *   bootstrap.restore: {command: ..., recovery_conf: {...}}
 * During the walk every mapping under postgresql or bootstrap that is not a
 * known key is set aside (cfg__method_stash); once the whole file is read,
 * the sections the lists name are parsed and checked, and the others become
 * the usual unknown-key warnings, at the place in the file's order where
 * they were found. Keys follow Patroni (postgresql/bootstrap.py); `timeout`
 * is pgwarden's own (every run has a deadline). */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cfg_internal.h"

#define METHOD_DEFAULT_TIMEOUT_MS (24u * 3600u * 1000u)

const struct cfg_method *cfg_method_find(const struct cfg_methods *m, const char *name)
{
    for (size_t i = 0; m != NULL && name != NULL && i < m->n; i++)
        if (strcmp(m->items[i].name, name) == 0)
            return &m->items[i];
    return NULL;
}

void cfg_strlist_free(struct cfg_strlist *l)
{
    cfg__strlist_free(l);
}

/* ---------- command splitting ---------- */

static bool blank(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r';
}

int cfg_split_command(const char *s, struct cfg_strlist *out, char *why, size_t whylen)
{
    struct cfg_strlist l = {0};
    size_t n = strlen(s);
    char *word = malloc(n + 1);
    if (word == NULL) {
        snprintf(why, whylen, "out of memory");
        return PGW_ENOMEM;
    }
    const char *p = s;
    for (;;) {
        while (blank(*p))
            p++;
        if (*p == '\0')
            break;
        size_t k = 0;
        while (*p != '\0' && !blank(*p)) {
            if (*p == '\'') {
                const char *end = strchr(p + 1, '\'');
                if (end == NULL) {
                    snprintf(why, whylen, "unterminated ' quote");
                    goto fail;
                }
                memcpy(word + k, p + 1, (size_t)(end - p - 1));
                k += (size_t)(end - p - 1);
                p = end + 1;
            } else if (*p == '"') {
                p++;
                while (*p != '"') {
                    if (*p == '\0') {
                        snprintf(why, whylen, "unterminated \" quote");
                        goto fail;
                    }
                    if (*p == '\\' && (p[1] == '"' || p[1] == '\\' || p[1] == '$' || p[1] == '`'))
                        p++;
                    word[k++] = *p++;
                }
                p++;
            } else if (*p == '\\') {
                if (p[1] == '\0') {
                    snprintf(why, whylen, "a backslash ends the command");
                    goto fail;
                }
                word[k++] = p[1];
                p += 2;
            } else {
                word[k++] = *p++;
            }
        }
        word[k] = '\0';
        if (cfg__strlist_push(&l, word) != 0) {
            snprintf(why, whylen, "out of memory");
            free(word);
            cfg__strlist_free(&l);
            return PGW_ENOMEM;
        }
    }
    free(word);
    if (l.n == 0) {
        snprintf(why, whylen, "the command is empty");
        return PGW_EINVAL;
    }
    cfg__strlist_free(out);
    *out = l;
    return PGW_OK;
fail:
    free(word);
    cfg__strlist_free(&l);
    return PGW_EINVAL;
}

/* ---------- the walk's side table ---------- */

bool cfg__method_candidate(const struct cfg__walk *w, const char *path, const struct ynode *vn)
{
    return w->c != NULL && w->file != NULL && vn->kind == YN_MAP &&
           (strcmp(path, "postgresql") == 0 || strcmp(path, "bootstrap") == 0);
}

int cfg__method_stash(struct cfg__walk *w, const struct ynode *kn, const struct ynode *vn,
                      const char *path)
{
    if (w->n_extra == CFG__MAX_EXTRA)
        return cfg__warn(w->warn, "%s:%d:%d: unknown key %s.%s (ignored)", w->file, kn->line,
                         kn->col, path, kn->text);
    w->extra[w->n_extra].key = kn;
    w->extra[w->n_extra].val = vn;
    w->extra[w->n_extra].section = strcmp(path, "postgresql") == 0 ? "postgresql" : "bootstrap";
    w->extra[w->n_extra].warn_pos = w->warn ? w->warn->n : 0;
    w->n_extra++;
    return PGW_OK;
}

static int find_extra(const struct cfg__walk *w, const char *section, const char *name)
{
    for (size_t i = 0; i < w->n_extra; i++)
        if (strcmp(w->extra[i].section, section) == 0 && strcmp(w->extra[i].key->text, name) == 0)
            return (int)i;
    return -1;
}

/* ---------- one section ---------- */

void cfg__methods_free(struct cfg_methods *m)
{
    for (size_t i = 0; i < m->n; i++) {
        struct cfg_method *x = &m->items[i];
        free(x->name);
        free(x->command);
        cfg__kvlist_free(&x->recovery_conf);
        cfg__kvlist_free(&x->params);
    }
    free(m->items);
    m->items = NULL;
    m->n = 0;
}

__attribute__((format(printf, 5, 6)))
static int fail(struct cfg__walk *w, const struct ynode *at, const char *path, const char *sub,
                const char *fmt, ...)
{
    char why[700], p[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    snprintf(p, sizeof p, "%s%s%s", path, sub ? "." : "", sub ? sub : "");
    cfg__error(w->err, w->file, at, p, "%s", why);
    return PGW_EINVAL;
}

static const char *shown_value(const struct ynode *v, char *buf, size_t len)
{
    if (ynode_is_null(v))
        return "nothing";
    if (v->kind != YN_SCALAR)
        return ynode_kind_name(v);
    cfg__quote(v->text, buf, len);
    return buf;
}

static bool valid_param_name(const char *s)
{
    if (*s == '\0' || *s == '-')
        return false;
    for (; *s; s++)
        if (!(isalnum((unsigned char)*s) || *s == '_' || *s == '-'))
            return false;
    return true;
}

static bool valid_guc_name(const char *s)
{
    if (!(isalpha((unsigned char)*s) || *s == '_'))
        return false;
    for (; *s; s++)
        if (!(isalnum((unsigned char)*s) || *s == '_' || *s == '.'))
            return false;
    return true;
}

static int parse_bool_node(struct cfg__walk *w, const struct ynode *v, const char *path,
                           const char *key, bool *dst)
{
    char g[96];
    if (v->kind != YN_SCALAR || !cfg__bool_word(v->text, dst))
        return fail(w, v, path, key, "expected true or false, got %s", shown_value(v, g, sizeof g));
    return PGW_OK;
}

static int parse_recovery_conf(struct cfg__walk *w, const struct ynode *v, const char *path,
                               struct cfg_kvlist *dst)
{
    char g[96], sub[128];
    if (v->kind != YN_MAP)
        return fail(w, v, path, "recovery_conf", "expected a mapping of name: value, got %s",
                    shown_value(v, g, sizeof g));
    for (size_t i = 0; i + 1 < v->n; i += 2) {
        const struct ynode *kn = v->items[i], *vn = v->items[i + 1];
        snprintf(sub, sizeof sub, "recovery_conf.%.100s", kn->text);
        if (!valid_guc_name(kn->text))
            return fail(w, kn, path, sub, "not a valid PostgreSQL parameter name");
        if (vn->kind != YN_SCALAR || ynode_is_null(vn))
            return fail(w, vn, path, sub, "expected a string, number or boolean, got %s",
                        shown_value(vn, g, sizeof g));
        bool b;
        const char *text = vn->plain && cfg__bool_word(vn->text, &b) ? (b ? "on" : "off") : vn->text;
        if (cfg__kvlist_push(dst, kn->text, text) != 0)
            return fail(w, vn, path, sub, "out of memory");
    }
    return PGW_OK;
}

/* Arguments pgwarden passes itself unless no_params (Patroni: bootstrap.py). */
static bool own_param(const char *key, bool bootstrap)
{
    return strcmp(key, "scope") == 0 || strcmp(key, "datadir") == 0 ||
           (!bootstrap && (strcmp(key, "role") == 0 || strcmp(key, "connstring") == 0));
}

static int parse_section(struct cfg__walk *w, const struct ynode *kn, const struct ynode *map,
                         const char *section, bool bootstrap, struct cfg_method *m,
                         struct cfg_warnings *warn)
{
    char path[300], g[96];
    snprintf(path, sizeof path, "%s.%s", section, kn->text);
    m->timeout_ms = METHOD_DEFAULT_TIMEOUT_MS;
    if ((m->name = strdup(kn->text)) == NULL)
        return fail(w, kn, path, NULL, "out of memory");
    for (size_t i = 0; i + 1 < map->n; i += 2) {
        const struct ynode *k = map->items[i], *v = map->items[i + 1];
        const char *key = k->text;
        int rc = PGW_OK;
        if (strcmp(key, "command") == 0) {
            struct cfg_strlist words = {0};
            char why[200];
            if (v->kind != YN_SCALAR || ynode_is_null(v) || v->text[0] == '\0')
                return fail(w, v, path, key, "expected the command to run, got %s",
                            shown_value(v, g, sizeof g));
            if (cfg_split_command(v->text, &words, why, sizeof why) != 0)
                return fail(w, v, path, key, "%s", why);
            cfg__strlist_free(&words);
            free(m->command);
            if ((m->command = strdup(v->text)) == NULL)
                return fail(w, v, path, key, "out of memory");
        } else if (strcmp(key, "no_params") == 0) {
            rc = parse_bool_node(w, v, path, key, &m->no_params);
        } else if (strcmp(key, "timeout") == 0) {
            uint64_t ms = 0;
            bool neg = false;
            int r = v->kind == YN_SCALAR ? cfg__parse_duration_ms(v->text, &ms, &neg) : PGW_EINVAL;
            if (r != 0 || neg || ms < 1000 || ms > UINT32_MAX)
                return fail(w, v, path, key, "expected a duration from 1 s to 49 days, got %s",
                            shown_value(v, g, sizeof g));
            m->timeout_ms = (uint32_t)ms;
        } else if (!bootstrap && strcmp(key, "keep_data") == 0) {
            rc = parse_bool_node(w, v, path, key, &m->keep_data);
        } else if (!bootstrap && (strcmp(key, "no_leader") == 0 || strcmp(key, "no_master") == 0)) {
            rc = parse_bool_node(w, v, path, key, &m->no_leader);
            if (rc == 0 && strcmp(key, "no_master") == 0 &&
                cfg__warn(warn, "%s:%d:%d: %s.no_master is a deprecated name; use no_leader",
                          w->file, k->line, k->col, path) != 0)
                return fail(w, k, path, key, "out of memory");
        } else if (bootstrap && strcmp(key, "keep_existing_recovery_conf") == 0) {
            rc = parse_bool_node(w, v, path, key, &m->keep_existing_recovery_conf);
        } else if (bootstrap && strcmp(key, "recovery_conf") == 0) {
            rc = parse_recovery_conf(w, v, path, &m->recovery_conf);
        } else {
            /* anything else is an argument of the command: --key=value */
            if (!valid_param_name(key))
                return fail(w, k, path, key, "not usable as a command option --%s=... (letters, "
                            "digits, _ and - only)", key);
            if (v->kind != YN_SCALAR || ynode_is_null(v))
                return fail(w, v, path, key, "expected a value passed to the command as --%s=..., "
                            "got %s", key, shown_value(v, g, sizeof g));
            if (cfg__kvlist_push(&m->params, key, v->text) != 0)
                return fail(w, v, path, key, "out of memory");
        }
        if (rc != 0)
            return rc;
    }
    if (m->command == NULL)
        return fail(w, kn, path, "command", "required key is missing (the program to run%s)",
                    bootstrap ? " to create the data directory" : " to create the replica");
    if (!m->no_params) { /* no_params may come after the key: checked once all are read */
        for (size_t i = 0; i < m->params.n; i++)
            if (own_param(m->params.items[i].key, bootstrap)) {
                const struct ynode *at = kn;
                for (size_t j = 0; j + 1 < map->n; j += 2)
                    if (strcmp(map->items[j]->text, m->params.items[i].key) == 0)
                        at = map->items[j];
                return fail(w, at, path, m->params.items[i].key,
                            "pgwarden passes --%s itself; set no_params: true to pass your own",
                            m->params.items[i].key);
            }
    }
    return PGW_OK;
}

static int add_method(struct cfg__walk *w, struct cfg_methods *dst, const struct ynode *kn,
                      const struct ynode *map, const char *section, bool bootstrap,
                      struct cfg_warnings *warn)
{
    struct cfg_method *items = realloc(dst->items, (dst->n + 1) * sizeof *items);
    if (items == NULL)
        return fail(w, kn, section, NULL, "out of memory");
    dst->items = items;
    struct cfg_method *m = &dst->items[dst->n++];
    memset(m, 0, sizeof *m);
    return parse_section(w, kn, map, section, bootstrap, m, warn);
}

/* Insert a warning at position pos of the list (the file's order). */
static int warn_at(struct cfg_warnings *wl, size_t pos, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int warn_at(struct cfg_warnings *wl, size_t pos, const char *fmt, ...)
{
    if (wl == NULL)
        return PGW_OK;
    char buf[CFG_ERR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    char *copy = strdup(buf);
    char **items = copy ? realloc(wl->items, (wl->n + 1) * sizeof *items) : NULL;
    if (items == NULL) {
        free(copy);
        return PGW_ENOMEM;
    }
    wl->items = items;
    if (pos > wl->n)
        pos = wl->n;
    memmove(&wl->items[pos + 1], &wl->items[pos], (wl->n - pos) * sizeof *items);
    wl->items[pos] = copy;
    wl->n++;
    return PGW_OK;
}

static int finalize(struct cfg__walk *w, const struct ynode *seq, const struct ynode *method,
                    const struct ynode *root, bool *used, struct cfg_warnings *pend)
{
    struct cfg *c = w->c;
    struct cfg_strlist *l = &c->postgresql.create_replica_methods;
    if (l->n == 0 && cfg__strlist_push(l, "basebackup") != 0) /* Patroni: [] means the default */
        return fail(w, root, "postgresql.create_replica_methods", NULL, "out of memory");
    for (size_t i = 0; i < l->n; i++) {
        const char *name = l->items[i];
        char path[96];
        snprintf(path, sizeof path, "postgresql.create_replica_methods[%zu]", i);
        const struct ynode *at = seq != NULL && seq->kind == YN_SEQ && i < seq->n ? seq->items[i]
                                 : seq != NULL                                     ? seq
                                                                                   : root;
        for (size_t j = 0; j < i; j++)
            if (strcmp(l->items[j], name) == 0)
                return fail(w, at, path, NULL, "method \"%s\" is listed twice", name);
        if (strcmp(name, "basebackup") == 0)
            continue;
        int x = find_extra(w, "postgresql", name);
        if (x < 0)
            return fail(w, at, path, NULL,
                        "method \"%s\" needs a section postgresql.%s with its command (only "
                        "basebackup is built in)", name, name);
        used[x] = true;
        int rc = add_method(w, &c->postgresql.replica_methods, w->extra[x].key, w->extra[x].val,
                            "postgresql", false, &pend[x]);
        if (rc != 0)
            return rc;
    }
    const char *bm = c->bootstrap.method;
    if (bm != NULL && strcmp(bm, "initdb") != 0) {
        int x = find_extra(w, "bootstrap", bm);
        if (x < 0)
            return fail(w, method ? method : root, "bootstrap.method", NULL,
                        "method \"%s\" needs a section bootstrap.%s with its command (only initdb "
                        "is built in)", bm, bm);
        used[x] = true;
        int rc = add_method(w, &c->bootstrap.methods, w->extra[x].key, w->extra[x].val,
                            "bootstrap", true, &pend[x]);
        if (rc != 0)
            return rc;
    }
    /* the others are unknown keys */
    for (size_t i = 0; i < w->n_extra; i++) {
        const struct ynode *k = w->extra[i].key;
        if (!used[i] && cfg__warn(&pend[i], "%s:%d:%d: unknown key %s.%s (ignored)", w->file,
                                  k->line, k->col, w->extra[i].section, k->text) != 0)
            return fail(w, k, w->extra[i].section, NULL, "out of memory");
    }
    return PGW_OK;
}

int cfg__methods_finalize(struct cfg__walk *w, const struct ynode *seq, const struct ynode *method,
                          const struct ynode *root)
{
    bool used[CFG__MAX_EXTRA] = {false};
    struct cfg_warnings pend[CFG__MAX_EXTRA];
    memset(pend, 0, sizeof pend);
    int rc = finalize(w, seq, method, root, used, pend);
    /* every section's warnings where the file had it: extras are in file
     * order, each insert shifts the later positions by one */
    size_t inserted = 0;
    for (size_t i = 0; i < w->n_extra; i++) {
        for (size_t j = 0; rc == PGW_OK && j < pend[i].n; j++) {
            if (warn_at(w->warn, w->extra[i].warn_pos + inserted, "%s", pend[i].items[j]) != 0)
                rc = fail(w, w->extra[i].key, w->extra[i].section, NULL, "out of memory");
            inserted++;
        }
        cfg_warnings_free(&pend[i]);
    }
    return rc;
}

/* ---------- reference ---------- */

void cfg__print_methods_reference(FILE *out)
{
    fputs("\n## Custom replica and bootstrap methods\n\n"
          "`postgresql.create_replica_methods` is tried in order when a replica has no data;\n"
          "`basebackup` is built in, any other name refers to a section `postgresql.<name>`.\n"
          "`bootstrap.method` other than `initdb` refers to a section `bootstrap.<name>`.\n"
          "The command is split into words like a shell would (quotes, backslashes) but no\n"
          "shell runs it. A replica method gets `--scope=<scope> --datadir=<data_dir>\n"
          "--role=replica --connstring=<conninfo of the source>` (no password: it is in the file\n"
          "PGPASSFILE names), a bootstrap method `--scope --datadir`, unless `no_params`; every\n"
          "other key of the section is passed as `--key=value`. Its output goes to the log.\n"
          "See docs/replica-methods.md.\n\n", out);
    fputs("| Key | Type | Default | Description |\n|---|---|---|---|\n"
          "| `command` | string | **required** | The program and its fixed arguments. |\n"
          "| `no_params` | boolean | `false` | Do not append pgwarden's arguments. |\n"
          "| `timeout` | duration | `24h` | Deadline of one run; the program is stopped (SIGTERM, "
          "then SIGKILL) and the run fails after it. pgwarden's own key. |\n"
          "| `keep_data` (replica) | boolean | `false` | Do not empty the data directory before "
          "this method (what earlier failed methods of the same attempt left). |\n"
          "| `no_leader` (replica; legacy name `no_master`) | boolean | `false` | The method "
          "needs no running primary (a restore from a backup repository): it may run when the "
          "cluster has none. |\n"
          "| `keep_existing_recovery_conf` (bootstrap) | boolean | `false` | Keep the recovery "
          "settings and recovery.signal the command left (pgBackRest, Barman). |\n"
          "| `recovery_conf` (bootstrap) | mapping name: value | none | Recovery settings "
          "(`restore_command`, `recovery_target_*`): PostgreSQL is started in archive recovery "
          "with them and the node waits until recovery ends (promotion) before it becomes the "
          "primary. |\n", out);
}
