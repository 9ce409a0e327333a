/* cfg_load: file -> YAML tree -> struct cfg, driven by the key table.
 *
 * Order: defaults from the table, then the file (stops at the first error,
 * unknown keys are warnings), then PGWARDEN_* environment overrides, then the
 * checks that need the whole picture (required keys, raft.partner_addrs, the
 * timing rule, conflicting ports) and the computed defaults. Validation runs
 * after the environment so a variable can supply a required key. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cfg_internal.h"
#include "common/cidr.h"

/* Patroni's DCS sections: pgwarden's consensus is built in. */
static const char *const foreign_dcs[] = {
    "etcd", "etcd3", "consul", "zookeeper", "kubernetes", "exhibitor", NULL,
};

struct loader {
    struct cfg__walk w;
    const struct ynode *root;
    const char *env_set[CFG__MAX_KEYS]; /* variable that set each key, if any */
    char env_alias[CFG__MAX_KEYS][64];  /* Patroni's name, when that one set it */
    bool pg_from_env;
};

/* ---------- messages ---------- */

void cfg__error(struct cfg_error *e, const char *file, const struct ynode *at, const char *path,
                const char *fmt, ...)
{
    char what[800];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    int line = at ? at->line : 0, col = at ? at->col : 0;
    char pos[300] = "";
    if (file != NULL && line > 0)
        snprintf(pos, sizeof pos, "%s:%d:%d: ", file, line, col);
    else if (file != NULL)
        snprintf(pos, sizeof pos, "%s: ", file);
    e->line = line;
    e->column = col;
    if (path != NULL && *path != '\0')
        snprintf(e->msg, sizeof e->msg, "%s%s: %s", pos, path, what);
    else
        snprintf(e->msg, sizeof e->msg, "%s%s", pos, what);
}

int cfg__warn(struct cfg_warnings *w, const char *fmt, ...)
{
    if (w == NULL)
        return PGW_OK;
    char buf[CFG_ERR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    char *copy = strdup(buf);
    char **items = copy ? realloc(w->items, (w->n + 1) * sizeof *items) : NULL;
    if (items == NULL) {
        free(copy);
        return PGW_ENOMEM;
    }
    w->items = items;
    w->items[w->n++] = copy;
    return PGW_OK;
}

int cfg_warnings_add(struct cfg_warnings *w, const char *msg)
{
    return cfg__warn(w, "%s", msg);
}

void cfg_warnings_free(struct cfg_warnings *w)
{
    if (w == NULL)
        return;
    for (size_t i = 0; i < w->n; i++)
        free(w->items[i]);
    free(w->items);
    w->items = NULL;
    w->n = 0;
}

/* ---------- the walk ---------- */

static bool in_list(const char *const *list, const char *s)
{
    for (size_t i = 0; list[i] != NULL; i++) {
        if (strcmp(list[i], s) == 0)
            return true;
    }
    return false;
}

/* The key `name` inside section `path`, by its name or its alias. */
static const struct cfg_key *lookup(const char *path, const char *name, bool *via_alias)
{
    char full[512];
    snprintf(full, sizeof full, "%s%s%s", path, *path ? "." : "", name);
    *via_alias = false;
    if (strchr(name, '.') != NULL)
        return NULL; /* "restapi.listen: x" at the top level is not restapi: {listen: x} */
    const struct cfg_key *k = cfg__key_find(full);
    if (k != NULL)
        return k;
    size_t pl = strlen(path);
    for (size_t i = 0; i < cfg__nkeys; i++) {
        const struct cfg_key *c = &cfg__keys[i];
        if (c->alias == NULL || strcmp(c->alias, name) != 0)
            continue;
        const char *dot = strrchr(c->path, '.');
        size_t parent = dot ? (size_t)(dot - c->path) : 0;
        if (parent == pl && strncmp(c->path, path, pl) == 0) {
            *via_alias = true;
            return c;
        }
    }
    return NULL;
}

static const char *shown(const struct cfg__walk *w, const char *path)
{
    size_t n = w->strip ? strlen(w->strip) : 0;
    return (n > 0 && strncmp(path, w->strip, n) == 0) ? path + n : path;
}

static int custom_tag(struct cfg__walk *w, const struct ynode *kn, const struct ynode *vn,
                      const char *full)
{
    if (ynode_is_null(vn))
        return PGW_OK;
    if (vn->kind != YN_SCALAR) {
        cfg__error(w->err, w->file, vn, full, "expected a tag value (string, number or boolean), "
                   "got %s", ynode_kind_name(vn));
        return PGW_EINVAL;
    }
    const char *text = vn->text;
    bool b;
    if (vn->plain && cfg__bool_word(text, &b))
        text = b ? "true" : "false"; /* one spelling, so ?tag_ssd=true matches `ssd: yes` */
    /* Patroni's nostream replicates from the WAL archive alone; a custom
     * tag of that name would stream in silence */
    if (strcmp(kn->text, "nostream") == 0) {
        if (vn->plain && cfg__bool_word(vn->text, &b) && !b)
            return PGW_OK;
        cfg__error(w->err, w->file, vn, full, "not supported: pgwarden streams every replica from its "
                   "upstream, where Patroni's nostream replica only restores from the WAL archive "
                   "(restore_command); remove the tag, or set it to false");
        return PGW_EINVAL;
    }
    if (cfg__kvlist_push(&w->c->tags.custom, kn->text, text) != 0) {
        cfg__error(w->err, w->file, NULL, NULL, "out of memory");
        return PGW_ENOMEM;
    }
    return PGW_OK;
}

/* A key the table does not know: an error in JSON, a warning in YAML. */
static int unknown_key(struct cfg__walk *w, const struct ynode *kn, const char *path,
                       const char *full)
{
    bool ignored = strcmp(path, "bootstrap.dcs") == 0 && in_list(cfg__dcs_ignored, kn->text);
    if (w->file == NULL) {
        if (ignored)
            return PGW_OK;
        cfg__error(w->err, NULL, NULL, shown(w, full), "unknown key");
        return PGW_EINVAL;
    }
    if (ignored)
        return cfg__warn(w->warn, "%s:%d:%d: %s is not supported by pgwarden yet (ignored)",
                         w->file, kn->line, kn->col, full);
    return cfg__warn(w->warn, "%s:%d:%d: unknown key %s (ignored)", w->file, kn->line, kn->col,
                     full);
}

int cfg__walk_map(struct cfg__walk *w, const struct ynode *map, const char *path)
{
    for (size_t i = 0; i + 1 < map->n; i += 2) {
        const struct ynode *kn = map->items[i], *vn = map->items[i + 1];
        char full[512];
        snprintf(full, sizeof full, "%s%s%s", path, *path ? "." : "", kn->text);
        if (*path == '\0' && in_list(foreign_dcs, kn->text)) {
            cfg__error(w->err, w->file, kn, full,
                       "pgwarden has its own consensus among the pgwarden nodes (Raft) and "
                       "needs no %s; replace this section with raft: {self_addr, partner_addrs, "
                       "data_dir}", kn->text);
            return PGW_EINVAL;
        }
        bool via_alias;
        const struct cfg_key *k = lookup(path, kn->text, &via_alias);
        void *dst = k && k->type != KT_SECTION ? cfg__field(k, w->c, w->dcs) : NULL;
        if (k == NULL || (k->type != KT_SECTION && dst == NULL)) {
            int rc = (w->c != NULL && strcmp(path, "tags") == 0) ? custom_tag(w, kn, vn, full)
                     : cfg__method_candidate(w, path, vn) ? cfg__method_stash(w, kn, vn, path)
                                                          : unknown_key(w, kn, path, full);
            if (rc != 0)
                return rc;
            continue;
        }
        size_t idx = (size_t)(k - cfg__keys);
        if (w->seen_key[idx] != NULL) {
            const struct ynode *prev = w->seen_key[idx];
            if (prev->line > 0)
                cfg__error(w->err, w->file, kn, shown(w, full),
                           "set twice: also as %s at line %d, column %d", prev->text, prev->line,
                           prev->col);
            else
                cfg__error(w->err, w->file, kn, shown(w, full), "set twice: also as %s",
                           prev->text);
            return PGW_EINVAL;
        }
        w->seen_key[idx] = kn;
        w->seen[idx] = vn;
        if (via_alias && (k->flags & KF_LEGACY) && w->file != NULL) {
            if (cfg__warn(w->warn, "%s:%d:%d: %s is a deprecated name; use %s", w->file,
                          kn->line, kn->col, full, strrchr(k->path, '.') + 1) != 0)
                return PGW_ENOMEM;
        }
        if (k->type == KT_SECTION) {
            if (ynode_is_null(vn))
                continue;
            if (vn->kind != YN_MAP) {
                cfg__error(w->err, w->file, vn, shown(w, full), "expected a mapping, got %s",
                           ynode_kind_name(vn));
                return PGW_EINVAL;
            }
            int rc = cfg__walk_map(w, vn, k->path);
            if (rc != 0)
                return rc;
            continue;
        }
        if (ynode_is_null(vn))
            continue; /* `key:` with no value keeps the default */
        struct cfg__perr pe;
        int rc = cfg__parse_value(k, vn, dst, &pe);
        if (rc != 0) {
            char p[700];
            snprintf(p, sizeof p, "%s%s", shown(w, full), pe.sub);
            cfg__error(w->err, w->file, pe.at, p, "%s", pe.why);
            return rc;
        }
        if (k->flags & KF_SETFLAG) {
            char *base = k->base == BASE_DCS ? (char *)w->dcs : (char *)w->c;
            *(bool *)(base + k->off2) = true;
        }
    }
    return PGW_OK;
}

/* ---------- environment ---------- */

static int env_value(struct loader *x, const struct cfg_key *k, const char *name, const char *val)
{
    struct ynode one = {.kind = YN_SCALAR, .text = (char *)val, .len = strlen(val)};
    struct ynode seq = {.kind = YN_SEQ};
    struct ynode *items = NULL, **ptrs = NULL;
    char *copy = NULL;
    const struct ynode *v = &one;
    int rc = PGW_OK;
    if (k->type == KT_IPV4LIST) {
        size_t n = 1;
        for (const char *p = val; *p; p++)
            n += *p == ',';
        copy = strdup(val);
        items = calloc(n, sizeof *items);
        ptrs = calloc(n, sizeof *ptrs);
        if (copy == NULL || items == NULL || ptrs == NULL) {
            rc = PGW_ENOMEM;
            cfg__error(x->w.err, NULL, NULL, name, "out of memory");
            goto out;
        }
        char *p = copy;
        for (size_t i = 0; i < n; i++) {
            char *comma = strchr(p, ',');
            if (comma)
                *comma = '\0';
            while (*p == ' ')
                p++;
            size_t len = strlen(p);
            while (len > 0 && p[len - 1] == ' ')
                p[--len] = '\0';
            /* Patroni's form: 'a:1','b:2' */
            if (len >= 2 && (p[0] == '\'' || p[0] == '"') && p[len - 1] == p[0]) {
                p[--len] = '\0';
                p++;
                len--;
            }
            /* an empty item reads as "nothing", like `- ` in YAML */
            items[i] = (struct ynode){.kind = YN_SCALAR, .text = p, .len = len, .plain = len == 0};
            ptrs[i] = &items[i];
            p = comma ? comma + 1 : p + len;
        }
        seq.items = ptrs;
        seq.n = n;
        v = &seq;
    }
    struct cfg__perr pe;
    void *dst = cfg__field(k, x->w.c, x->w.dcs);
    rc = cfg__parse_value(k, v, dst, &pe);
    if (rc != 0) {
        char p[200];
        snprintf(p, sizeof p, "%s%s", name, pe.sub);
        cfg__error(x->w.err, NULL, NULL, p, "%s", pe.why);
    }
out:
    free(items);
    free(ptrs);
    free(copy);
    return rc;
}

/* Patroni's name of a variable: PATRONI_ in place of PGWARDEN_ (the rest of
 * every name is Patroni's). */
static void patroni_name(const char *env, char *out, size_t outlen)
{
    static const char ours[] = "PGWARDEN_";
    /* Patroni's LOG_FORMAT is a Python format string; its LOG_TYPE is ours */
    if (strcmp(env, "PGWARDEN_LOG_FORMAT") == 0) {
        snprintf(out, outlen, "PATRONI_LOG_TYPE");
        return;
    }
    snprintf(out, outlen, "PATRONI_%s", env + (strncmp(env, ours, sizeof ours - 1) == 0 ? sizeof ours - 1 : 0));
}

/* PATRONI_* variables that are not one of ours under Patroni's name: named
 * in a warning, never ignored in silence (a password among them would
 * otherwise surface only as a failed login). */
static void warn_unread_patroni_env(struct loader *x)
{
    extern char **environ;
    for (char **e = environ; e != NULL && *e != NULL; e++) {
        if (strncmp(*e, "PATRONI_", 8) != 0)
            continue;
        size_t n = strcspn(*e, "=");
        bool known = false;
        for (size_t i = 0; i < cfg__nkeys && !known; i++) {
            char alias[128];
            if (cfg__keys[i].env == NULL)
                continue;
            patroni_name(cfg__keys[i].env, alias, sizeof alias);
            known = strlen(alias) == n && strncmp(alias, *e, n) == 0;
        }
        if (!known && x->w.warn != NULL)
            (void)cfg__warn(x->w.warn, "environment variable %.*s: not read by pgwarden (ignored); "
                            "the variables it reads are listed in docs/configuration.md", (int)n, *e);
    }
}

static int apply_env(struct loader *x)
{
    warn_unread_patroni_env(x);
    for (size_t i = 0; i < cfg__nkeys; i++) {
        const struct cfg_key *k = &cfg__keys[i];
        if (k->env == NULL)
            continue;
        /* Patroni's name is read too, so that a Patroni unit's environment
         * means the same; when both are set they must agree */
        char alias[128];
        patroni_name(k->env, alias, sizeof alias);
        const char *name = k->env;
        const char *val = getenv(k->env);
        const char *pval = getenv(alias);
        if (val == NULL || *val == '\0') {
            val = pval;
            name = alias;
        } else if (pval != NULL && *pval != '\0' && strcmp(val, pval) != 0) {
            cfg__error(x->w.err, NULL, NULL, k->env, "disagrees with %s, which sets %s too: "
                       "unset one of them", alias, k->path);
            return PGW_EINVAL;
        }
        if (val == NULL || *val == '\0')
            continue; /* `PGWARDEN_X= pgwarden ...` means "not set" */
        int rc = env_value(x, k, name, val);
        if (rc != 0)
            return rc;
        if (name == k->env) {
            x->env_set[i] = k->env;
        } else {
            snprintf(x->env_alias[i], sizeof x->env_alias[i], "%s", alias);
            x->env_set[i] = x->env_alias[i];
        }
        x->w.seen[i] = NULL;
        if (strcmp(k->path, "postgresql.listen") == 0 || strcmp(k->path, "postgresql.data_dir") == 0)
            x->pg_from_env = true;
    }
    return PGW_OK;
}

/* ---------- whole-config checks and computed defaults ---------- */

static bool is_unset(const struct cfg_key *k, const void *v)
{
    switch (k->type) {
    case KT_HOSTPORT:
    case KT_PGLISTEN:
        return ((const struct cfg_hostport *)v)->host == NULL;
    case KT_STR:
    case KT_IDENT:
    case KT_CHOICE:
    case KT_IPV4:
        return *(char *const *)v == NULL;
    default:
        return false;
    }
}

/* Where to point for a key that is missing: its nearest section that was
 * written in the file, else the top-level mapping. */
static const struct ynode *anchor_for(const struct loader *x, const char *path)
{
    char p[512];
    snprintf(p, sizeof p, "%s", path);
    for (char *dot = strrchr(p, '.'); dot != NULL; dot = strrchr(p, '.')) {
        *dot = '\0';
        const struct cfg_key *k = cfg__key_find(p);
        if (k != NULL && x->w.seen_key[k - cfg__keys] != NULL)
            return x->w.seen_key[k - cfg__keys];
    }
    return x->root;
}

static int check_required(struct loader *x, unsigned flag)
{
    for (size_t i = 0; i < cfg__nkeys; i++) {
        const struct cfg_key *k = &cfg__keys[i];
        if (!(k->flags & flag) || !is_unset(k, cfg__field(k, x->w.c, x->w.dcs)))
            continue;
        char env[100] = "";
        if (k->env != NULL)
            snprintf(env, sizeof env, " (or set %s)", k->env);
        cfg__error(x->w.err, x->w.file, anchor_for(x, k->path), k->path,
                   "required key is missing%s%s",
                   flag == KF_REQUIRED_PG ? " on a node with a postgresql section" : "", env);
        return PGW_EINVAL;
    }
    return PGW_OK;
}

static size_t key_index(const char *path)
{
    const struct cfg_key *k = cfg__key_find(path);
    return k ? (size_t)(k - cfg__keys) : 0;
}

/* restapi.allowlist: Patroni resolves a host name once, when it starts;
 * pgwarden matches addresses only (no resolver on the event loop), so a
 * name would never match: refused, saying so. */
static int check_allowlist(struct loader *x)
{
    const struct cfg_strlist *al = &x->w.c->restapi.allowlist;
    size_t idx = key_index("restapi.allowlist");
    for (size_t i = 0; i < al->n; i++) {
        const char *e = al->items[i] ? al->items[i] : "";
        if (cidr_valid(e))
            continue;
        const struct ynode *seq = x->w.seen[idx];
        const struct ynode *at = seq && i < seq->n ? seq->items[i] : x->root;
        char p[100];
        snprintf(p, sizeof p, "restapi.allowlist[%zu]", i);
        cfg__error(x->w.err, x->w.file, at, p, "\"%s\" is not an IP address or a CIDR range; "
                   "pgwarden does not resolve host names here (Patroni resolves them once at "
                   "start): write the address", e);
        return PGW_EINVAL;
    }
    return PGW_OK;
}

static int check_partners(struct loader *x)
{
    const struct cfg *c = x->w.c;
    size_t idx = key_index("raft.partner_addrs");
    for (size_t i = 0; i < c->raft.partner_addrs.n; i++) {
        if (strcmp(c->raft.partner_addrs.items[i], c->raft.self_addr) != 0)
            continue;
        const char *what = "lists this node's own raft.self_addr";
        if (x->env_set[idx] != NULL) {
            char p[100];
            snprintf(p, sizeof p, "%s[%zu]", x->env_set[idx], i);
            cfg__error(x->w.err, NULL, NULL, p, "%s %s; partner_addrs must name only the other "
                       "nodes", what, c->raft.self_addr);
        } else {
            const struct ynode *seq = x->w.seen[idx];
            const struct ynode *at = seq && i < seq->n ? seq->items[i] : x->root;
            char p[100];
            snprintf(p, sizeof p, "raft.partner_addrs[%zu]", i);
            cfg__error(x->w.err, x->w.file, at, p, "%s %s; partner_addrs must name only the "
                       "other nodes", what, c->raft.self_addr);
        }
        return PGW_EINVAL;
    }
    return PGW_OK;
}

/* Error at the value of `path` (or at its env variable / its section). */
__attribute__((format(printf, 3, 4)))
static int fail_at(struct loader *x, const char *path, const char *fmt, ...)
{
    char what[800];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    const struct cfg_key *k = cfg__key_find(path);
    size_t idx = k ? (size_t)(k - cfg__keys) : 0;
    if (k != NULL && x->env_set[idx] != NULL) {
        cfg__error(x->w.err, NULL, NULL, x->env_set[idx], "%s", what);
        return PGW_EINVAL;
    }
    const struct ynode *at = k ? x->w.seen[idx] : NULL;
    if (at == NULL && k != NULL)
        at = x->w.seen_key[idx];
    cfg__error(x->w.err, x->w.file, at ? at : anchor_for(x, path), path, "%s", what);
    return PGW_EINVAL;
}

/* Every path key (KF_PATH) that is relative is resolved against the
 * working directory here, in the one load path `validate`, `run` and `ctl`
 * share, as Patroni resolves it: Patroni hands data_dir to PostgreSQL as
 * written, relative to its working directory, and abspath()s config_dir and
 * pgpass. Resolving once, when the file is read, keeps what a path names
 * from changing under a later chdir (the postmaster's into the data
 * directory, where a relative passfile in primary_conninfo would be looked
 * up, or a child's working directory). Leading "./" and trailing slashes
 * go, so equal directories compare equal (config_dir against data_dir);
 * ".." and symbolic links are kept as written. */
static int resolve_paths(struct loader *x)
{
    char cwd[PATH_MAX] = "";
    for (size_t i = 0; i < cfg__nkeys; i++) {
        const struct cfg_key *k = &cfg__keys[i];
        if (!(k->flags & KF_PATH) || k->base != BASE_CFG || k->type != KT_STR)
            continue;
        char **v = cfg__field(k, x->w.c, x->w.dcs);
        if (*v == NULL || (*v)[0] == '\0')
            continue; /* unset, or "" (bin_dir: its default) */
        size_t len = strlen(*v);
        while (len > 1 && (*v)[len - 1] == '/')
            (*v)[--len] = '\0';
        if ((*v)[0] == '/')
            continue;
        const char *rel = *v;
        while (rel[0] == '.' && rel[1] == '/') {
            rel += 2;
            while (*rel == '/')
                rel++;
        }
        if (strcmp(rel, ".") == 0)
            rel = "";
        if (cwd[0] == '\0' && getcwd(cwd, sizeof cwd) == NULL)
            return fail_at(x, k->path, "\"%s\" is a relative path and the working directory "
                           "to resolve it against cannot be read (%s); write an absolute path",
                           *v, strerror(errno));
        size_t n = strlen(cwd) + 1 + strlen(rel) + 1;
        char *abs = malloc(n);
        if (abs == NULL) {
            cfg__error(x->w.err, x->w.file, NULL, NULL, "out of memory");
            return PGW_ENOMEM;
        }
        snprintf(abs, n, "%s%s%s", cwd, rel[0] == '\0' || strcmp(cwd, "/") == 0 ? "" : "/", rel);
        free(*v);
        *v = abs;
    }
    return PGW_OK;
}

/* postgresql.authentication.rewind: without it pg_rewind connects as the
 * superuser (Patroni's rewind_credentials: the rewind section, else the
 * superuser's, as a whole); with it, it needs a user name (Patroni's
 * validator requires one too). Anything of the section given, in the file
 * or the environment, counts as the section. */
static int check_rewind(struct loader *x)
{
    static const char prefix[] = "postgresql.authentication.rewind";
    const struct cfg_pgauth *rw = &x->w.c->postgresql.rewind;
    if (rw->username != NULL && rw->username[0] != '\0')
        return PGW_OK;
    const char *given = NULL; /* a key of the section that was set, else the section */
    for (size_t i = 0; i < cfg__nkeys && given == NULL; i++) {
        const struct cfg_key *k = &cfg__keys[i];
        if (strncmp(k->path, prefix, sizeof prefix - 1) == 0 &&
            (k->type == KT_STR || k->type == KT_CHOICE) &&
            *(char *const *)cfg__field(k, x->w.c, x->w.dcs) != NULL)
            given = k->path;
    }
    size_t sect = key_index(prefix);
    if (given == NULL && x->w.seen[sect] != NULL && !ynode_is_null(x->w.seen[sect]))
        given = prefix;
    if (given == NULL)
        return PGW_OK;
    return fail_at(x, given, "a rewind section needs postgresql.authentication.rewind.username "
                   "(the user pg_rewind connects as); remove the section to rewind as the "
                   "superuser, as Patroni does without one");
}

struct bound_port {
    const char *path;
    const char *hosts; /* comma-separated */
    uint16_t port;
};

static bool hosts_overlap(const char *a, const char *b)
{
    char x[512], y[512];
    snprintf(x, sizeof x, "%s", a);
    for (char *s1 = NULL, *h = strtok_r(x, ",", &s1); h; h = strtok_r(NULL, ",", &s1)) {
        snprintf(y, sizeof y, "%s", b);
        for (char *s2 = NULL, *g = strtok_r(y, ",", &s2); g; g = strtok_r(NULL, ",", &s2)) {
            if (cfg__host_is_wildcard(h) || cfg__host_is_wildcard(g) || strcmp(h, g) == 0)
                return true;
        }
    }
    return false;
}

static int check_ports(struct loader *x)
{
    const struct cfg *c = x->w.c;
    char raft_host[16] = "";
    uint16_t raft_port = 0;
    if (cfg_parse_ipv4_addr(c->raft.self_addr, raft_host, sizeof raft_host, &raft_port) != 0)
        return PGW_OK; /* validated when parsed */
    struct bound_port b[4] = {
        {"raft.self_addr", raft_host, raft_port},
        {"restapi.listen", c->restapi.listen.host, c->restapi.listen.port},
        {"restapi.health_listen", c->restapi.health_listen.host, c->restapi.health_listen.port},
        {"postgresql.listen", c->postgresql.listen.host, c->postgresql.listen.port},
    };
    size_t n = c->witness ? 3 : 4;
    for (size_t i = 1; i < n; i++) {
        for (size_t j = 0; j < i; j++) {
            if (b[i].hosts && b[j].hosts && b[i].port == b[j].port &&
                hosts_overlap(b[i].hosts, b[j].hosts))
                return fail_at(x, b[i].path, "port %u is also used by %s", (unsigned)b[i].port,
                               b[j].path);
        }
    }
    return PGW_OK;
}

static int dup_hostport(struct cfg_hostport *dst, const char *host, uint16_t port)
{
    if ((dst->host = strdup(host)) == NULL)
        return PGW_ENOMEM;
    dst->port = port;
    return PGW_OK;
}

static int dup_str(char **dst, const char *src)
{
    if (*dst != NULL || src == NULL)
        return PGW_OK;
    return (*dst = strdup(src)) ? PGW_OK : PGW_ENOMEM;
}

/* The host others should use for a listen address: itself, unless it is a
 * wildcard (or a list containing one or the Raft host): then raft.self_addr's. */
static const char *reachable_host(const char *hosts, const char *raft_host, char *buf, size_t len)
{
    if (strchr(hosts, ',') == NULL)
        return cfg__host_is_wildcard(hosts) ? raft_host : hosts;
    char copy[512];
    snprintf(copy, sizeof copy, "%s", hosts);
    const char *first = NULL;
    for (char *s = NULL, *h = strtok_r(copy, ",", &s); h; h = strtok_r(NULL, ",", &s)) {
        if (cfg__host_is_wildcard(h) || strcmp(h, raft_host) == 0)
            return raft_host;
        if (first == NULL)
            first = h;
    }
    snprintf(buf, len, "%s", first ? first : raft_host);
    return buf;
}

static int computed_defaults(struct cfg *c)
{
    char raft_host[16] = "", buf[512];
    if (cfg_parse_ipv4_addr(c->raft.self_addr, raft_host, sizeof raft_host, NULL) != 0)
        return PGW_EINVAL;
    int rc = PGW_OK;
    if (c->restapi.connect_address.host == NULL)
        rc |= dup_hostport(&c->restapi.connect_address,
                           reachable_host(c->restapi.listen.host, raft_host, buf, sizeof buf),
                           c->restapi.listen.port);
    if (!c->witness && c->postgresql.connect_address.host == NULL)
        rc |= dup_hostport(&c->postgresql.connect_address,
                           reachable_host(c->postgresql.listen.host, raft_host, buf, sizeof buf),
                           c->postgresql.listen.port);
    if (!c->witness)
        rc |= dup_str(&c->postgresql.config_dir, c->postgresql.data_dir);
    if (c->postgresql.pgpass == NULL) {
        snprintf(buf, sizeof buf, "%s/pgpass", c->raft.data_dir);
        rc |= dup_str(&c->postgresql.pgpass, buf);
    }
    rc |= dup_str(&c->ctl.auth_username, c->restapi.auth_username);
    rc |= dup_str(&c->ctl.auth_password, c->restapi.auth_password);
    rc |= dup_str(&c->ctl.cacert, c->restapi.cafile);
    c->log.dir = c->log_dir_storage;
    return rc != 0 ? PGW_ENOMEM : PGW_OK;
}

static int finalize(struct loader *x)
{
    struct cfg *c = x->w.c;
    int rc = check_required(x, KF_REQUIRED);
    if (rc != 0)
        return rc;
    size_t pg_idx = key_index("postgresql");
    bool pg_section = x->w.seen_key[pg_idx] != NULL;
    c->postgresql.present = pg_section || x->pg_from_env;
    if (c->witness && c->postgresql.present) {
        const struct ynode *k = x->w.seen_key[pg_idx];
        if (k != NULL)
            rc = cfg__warn(x->w.warn, "%s:%d:%d: postgresql: ignored, this node is a witness "
                           "(witness: true)", x->w.file, k->line, k->col);
        else
            rc = cfg__warn(x->w.warn, "%s: PGWARDEN_POSTGRESQL_* ignored, this node is a "
                           "witness (witness: true)", x->w.file);
        if (rc != 0)
            return rc;
    }
    c->witness = c->witness || !c->postgresql.present;
    if (!c->witness && (rc = check_required(x, KF_REQUIRED_PG)) != 0)
        return rc;
    if (!c->witness && (rc = check_rewind(x)) != 0)
        return rc;
    /* Patroni's use_unix_socket_repl is for its replication connections to
     * the local PostgreSQL (IDENTIFY_SYSTEM on itself); pgwarden makes none,
     * and a replica's stream comes from another member, which a socket
     * cannot reach: accepting true would change nothing in silence. */
    if (!c->witness && c->postgresql.use_unix_socket_repl)
        return fail_at(x, "postgresql.use_unix_socket_repl",
                       "use_unix_socket_repl: true is not supported: pgwarden makes no replication "
                       "connection to its local PostgreSQL (Patroni's only use of it) and replicas "
                       "stream from other members over TCP; remove it or set it to false");
    if ((rc = check_partners(x)) != 0 || (rc = check_allowlist(x)) != 0)
        return rc;
    if ((rc = resolve_paths(x)) != 0)
        return rc;
    struct cfg_error terr;
    if (cfg_dcs_check_timing(&c->bootstrap.dcs, &terr) != 0) {
        size_t i = key_index("bootstrap.dcs");
        const struct ynode *at = x->w.seen_key[i] ? x->w.seen_key[i] : anchor_for(x, "bootstrap.dcs");
        cfg__error(x->w.err, x->w.file, at, "bootstrap.dcs", "%s", terr.msg);
        return PGW_EINVAL;
    }
    if ((c->restapi.auth_username == NULL) != (c->restapi.auth_password == NULL))
        return fail_at(x, c->restapi.auth_username ? "restapi.authentication.username"
                                                   : "restapi.authentication.password",
                       "restapi.authentication needs both username and password");
    /* HTTPS (api/http_tls.c): the pair of files, and what verify_client needs. */
    const struct cfg_restapi *ra = &c->restapi;
    if ((ra->certfile == NULL) != (ra->keyfile == NULL))
        return fail_at(x, ra->certfile != NULL ? "restapi.certfile" : "restapi.keyfile",
                       "HTTPS needs both restapi.certfile and restapi.keyfile");
    if (ra->verify_client != NULL && strcmp(ra->verify_client, "none") != 0 &&
        (ra->certfile == NULL || ra->cafile == NULL))
        return fail_at(x, "restapi.verify_client", "verify_client %s needs HTTPS "
                       "(restapi.certfile and keyfile) and restapi.cafile to verify client "
                       "certificates with", ra->verify_client);
    /* TLS on the Raft port (raft/tls_link.c): the three files or none */
    const struct cfg_raft *rf = &c->raft;
    if (rf->certfile != NULL || rf->keyfile != NULL || rf->cafile != NULL) {
        const char *missing = rf->certfile == NULL  ? "raft.certfile"
                              : rf->keyfile == NULL ? "raft.keyfile"
                              : rf->cafile == NULL  ? "raft.cafile"
                                                    : NULL;
        const char *given = rf->certfile != NULL  ? "raft.certfile"
                            : rf->keyfile != NULL ? "raft.keyfile"
                                                  : "raft.cafile";
        if (missing != NULL)
            return fail_at(x, given, "raft TLS needs raft.certfile, raft.keyfile and raft.cafile "
                           "together: %s is missing", missing);
    }
    if (c->watchdog.mode != CFG_WD_OFF && c->watchdog.safety_margin_s >= 0 &&
        (uint64_t)c->watchdog.safety_margin_s * 1000 >= c->bootstrap.dcs.ttl_ms) {
        char ttl[32];
        cfg__fmt_seconds(c->bootstrap.dcs.ttl_ms, ttl, sizeof ttl);
        return fail_at(x, "watchdog.safety_margin",
                       "the watchdog timeout ttl - safety_margin = %s - %d is not positive; "
                       "use a smaller safety_margin or -1 (ttl/2)", ttl,
                       c->watchdog.safety_margin_s);
    }
    if ((rc = check_ports(x)) != 0)
        return rc;
    if ((rc = cfg__methods_finalize(&x->w, x->w.seen[key_index("postgresql.create_replica_methods")],
                                    x->w.seen[key_index("bootstrap.method")], x->root)) != 0)
        return rc;
    if ((rc = cfg__backup_finalize(&x->w)) != 0)
        return rc;
    if ((rc = cfg__users_finalize(&x->w)) != 0) {
        cfg__error(x->w.err, x->w.file, NULL, NULL, "out of memory");
        return rc;
    }
    if ((rc = computed_defaults(c)) != 0) {
        cfg__error(x->w.err, x->w.file, NULL, NULL, "out of memory");
        return rc;
    }
    return PGW_OK;
}

/* ---------- load ---------- */

/* Whether the value given for secret key i holds a secret: bootstrap.users
 * does only when one of its users has a password. */
static bool holds_secret(const struct loader *x, size_t i)
{
    const struct cfg_key *k = &cfg__keys[i];
    if (k->type != KT_USERS)
        return true;
    return cfg__users_have_password(cfg__field(k, x->w.c, x->w.dcs));
}

static int apply_defaults(struct cfg *c)
{
    for (size_t i = 0; i < cfg__nkeys; i++) {
        const struct cfg_key *k = &cfg__keys[i];
        if (k->def != NULL && cfg__apply_default(k, cfg__field(k, c, &c->bootstrap.dcs)) != 0)
            return PGW_EINVAL;
    }
    return PGW_OK;
}

int cfg_load_buffer(const char *name, const char *text, size_t len, struct cfg *out,
                    struct cfg_error *err, struct cfg_warnings *warn)
{
    memset(out, 0, sizeof *out);
    err->msg[0] = '\0';
    err->line = err->column = 0;
    struct ytree t = {0};
    struct loader *x = calloc(1, sizeof *x);
    if (x == NULL) {
        cfg__error(err, name, NULL, NULL, "out of memory");
        return PGW_ENOMEM;
    }
    int rc = ytree_parse(name, text, len, &t, err);
    if (rc != 0)
        goto fail;
    if (t.root == NULL || ynode_is_null(t.root)) {
        struct ynode first = {.line = 1, .col = 1};
        cfg__error(err, name, &first, NULL, "the file holds no configuration (it is empty or "
                   "only comments); expected a mapping with at least scope, name and raft");
        rc = PGW_EINVAL;
        goto fail;
    }
    if (t.root->kind != YN_MAP) {
        cfg__error(err, name, t.root, NULL, "the top level must be a mapping of keys (scope, "
                   "name, raft, ...), got %s", ynode_kind_name(t.root));
        rc = PGW_EINVAL;
        goto fail;
    }
    if ((rc = apply_defaults(out)) != 0) {
        cfg__error(err, name, NULL, NULL, "internal error: a default of the key table is invalid");
        goto fail;
    }
    if ((out->path = strdup(name)) == NULL) {
        rc = PGW_ENOMEM;
        cfg__error(err, name, NULL, NULL, "out of memory");
        goto fail;
    }
    x->w.file = name;
    x->w.strip = "";
    x->w.c = out;
    x->w.dcs = &out->bootstrap.dcs;
    x->w.err = err;
    x->w.warn = warn;
    x->root = t.root;
    if ((rc = cfg__walk_map(&x->w, t.root, "")) != 0)
        goto fail;
    /* before the environment: a secret written in the file is there even
     * when a variable overrides it */
    for (size_t i = 0; i < cfg__nkeys && out->file_secret_key == NULL; i++)
        if ((cfg__keys[i].flags & KF_SECRET) && x->w.seen[i] != NULL && holds_secret(x, i))
            out->file_secret_key = cfg__keys[i].path;
    if ((rc = apply_env(x)) != 0 || (rc = finalize(x)) != 0)
        goto fail;
    ytree_free(&t);
    free(x);
    return PGW_OK;
fail:
    ytree_free(&t);
    free(x);
    cfg_free(out);
    return rc;
}

int cfg_read_file(const char *path, char **buf_out, size_t *len_out, mode_t *mode_out,
                  struct cfg_error *err)
{
    *buf_out = NULL;
    *len_out = 0;
    err->line = err->column = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        cfg__error(err, path, NULL, NULL, "cannot open: %s", strerror(errno));
        return errno == ENOENT ? PGW_ENOTFOUND : PGW_EIO;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        cfg__error(err, path, NULL, NULL, "not a regular file");
        close(fd);
        return PGW_EIO;
    }
    if ((uint64_t)st.st_size > YTREE_MAX_BYTES) {
        cfg__error(err, path, NULL, NULL, "file is larger than 1 MiB (%lld bytes)",
                   (long long)st.st_size);
        close(fd);
        return PGW_EINVAL;
    }
    /* Read one byte past the limit in case the file grew since fstat. */
    size_t cap = YTREE_MAX_BYTES + 1, len = 0;
    char *buf = malloc(cap + 1);
    if (buf == NULL) {
        close(fd);
        cfg__error(err, path, NULL, NULL, "out of memory");
        return PGW_ENOMEM;
    }
    while (len < cap) {
        ssize_t r = read(fd, buf + len, cap - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            cfg__error(err, path, NULL, NULL, "cannot read: %s", strerror(errno));
            free(buf);
            close(fd);
            return PGW_EIO;
        }
        if (r == 0)
            break;
        len += (size_t)r;
    }
    close(fd);
    buf[len] = '\0';
    *buf_out = buf;
    *len_out = len;
    if (mode_out != NULL)
        *mode_out = st.st_mode;
    return 0;
}

int cfg_load(const char *path, struct cfg *out, struct cfg_error *err, struct cfg_warnings *warn)
{
    memset(out, 0, sizeof *out);
    char *buf;
    size_t len;
    mode_t mode;
    int rrc = cfg_read_file(path, &buf, &len, &mode, err);
    if (rrc != 0)
        return rrc;
    struct stat st = {.st_mode = mode};
    int rc = cfg_load_buffer(path, buf, len, out, err, warn);
    if (len > 0)
        memset(buf, 0, len); /* the text may hold passwords */
    free(buf);
    if (rc == 0 && out->file_secret_key != NULL && (st.st_mode & (S_IRGRP | S_IROTH))) {
        /* Passwords in a file others can read: refuse when every user can,
         * warn when the group can (a deliberate shared-group setup). */
        if (st.st_mode & S_IROTH) {
            cfg__error(err, path, NULL, NULL,
                       "holds secrets (%s) and every user can read it (mode %04o): "
                       "chmod 600 it, or give the secrets through PGWARDEN_* environment "
                       "variables (see docs/configuration.md)",
                       out->file_secret_key, (unsigned)(st.st_mode & 07777));
            cfg_free(out);
            return PGW_EINVAL;
        }
        if (cfg__warn(warn, "%s: holds secrets (%s) and its group can read it (mode %04o): "
                      "chmod 600 it unless that is intended",
                      path, out->file_secret_key, (unsigned)(st.st_mode & 07777)) != 0) {
            cfg_free(out);
            return PGW_ENOMEM;
        }
    }
    return rc;
}

void cfg_free(struct cfg *c)
{
    if (c == NULL)
        return;
    for (size_t i = 0; i < cfg__nkeys; i++) {
        const struct cfg_key *k = &cfg__keys[i];
        if (k->type != KT_SECTION)
            cfg__free_value(k, cfg__field(k, c, &c->bootstrap.dcs));
    }
    cfg__kvlist_free(&c->tags.custom);
    cfg__methods_free(&c->postgresql.replica_methods);
    cfg__methods_free(&c->bootstrap.methods);
    free(c->path);
    memset(c, 0, sizeof *c);
}

/* ---------- diff ---------- */

static void emit(size_t *count, void (*fn)(const char *, void *), void *ctx, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void emit(size_t *count, void (*fn)(const char *, void *), void *ctx, const char *fmt, ...)
{
    char line[2 * CFG_ERR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    (*count)++;
    if (fn != NULL)
        fn(line, ctx);
}

static void diff_kv(const char *path, const struct cfg_kvlist *a, const struct cfg_kvlist *b,
                    size_t *count, void (*fn)(const char *, void *), void *ctx)
{
    for (size_t i = 0; i < a->n; i++) {
        const char *nv = cfg__kvlist_get(b, a->items[i].key);
        if (nv == NULL)
            emit(count, fn, ctx, "%s.%s: %s -> (unset)", path, a->items[i].key, a->items[i].value);
        else if (strcmp(nv, a->items[i].value) != 0)
            emit(count, fn, ctx, "%s.%s: %s -> %s", path, a->items[i].key, a->items[i].value, nv);
    }
    for (size_t i = 0; i < b->n; i++) {
        if (cfg__kvlist_get(a, b->items[i].key) == NULL)
            emit(count, fn, ctx, "%s.%s: (unset) -> %s", path, b->items[i].key, b->items[i].value);
    }
}

size_t cfg_diff(const struct cfg *a, const struct cfg *b,
                void (*fn)(const char *line, void *ctx), void *ctx)
{
    size_t count = 0;
    struct cfg *ma = (struct cfg *)a, *mb = (struct cfg *)b; /* fields are only read */
    for (size_t i = 0; i < cfg__nkeys; i++) {
        const struct cfg_key *k = &cfg__keys[i];
        if (k->type == KT_SECTION)
            continue;
        const void *va = cfg__field(k, ma, &ma->bootstrap.dcs);
        const void *vb = cfg__field(k, mb, &mb->bootstrap.dcs);
        if (cfg__value_equal(k, va, vb))
            continue;
        if (k->type == KT_PARAMS) {
            diff_kv(k->path, va, vb, &count, fn, ctx);
            continue;
        }
        if (k->flags & KF_SECRET) {
            emit(&count, fn, ctx, "%s: (changed)", k->path);
            continue;
        }
        char x[CFG_ERR_MAX / 2], y[CFG_ERR_MAX / 2];
        cfg__format_value(k, va, x, sizeof x);
        cfg__format_value(k, vb, y, sizeof y);
        emit(&count, fn, ctx, "%s: %s -> %s", k->path, x, y);
    }
    diff_kv("tags", &a->tags.custom, &b->tags.custom, &count, fn, ctx);
    return count;
}
