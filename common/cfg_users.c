/* The value type of bootstrap.users (Patroni's key):
 *   users: {alice: {password: secret, options: [createrole, createdb]}}
 * Roles created once, after the bootstrap of a new cluster (pg/pgnode_sql.c).
 * Unlike Patroni, which pastes the options into its SQL as they are, only
 * PostgreSQL role attributes are accepted, so that a typo fails at load
 * instead of the bootstrap, and nothing but an attribute reaches the SQL.
 * The passwords are secrets: never printed, compared only for equality. */
#include <ctype.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cfg_internal.h"

static void wipe_free(char *s)
{
    if (s != NULL) {
        memset(s, 0, strlen(s));
        free(s);
    }
}

static void user_free(struct cfg_user *u)
{
    free(u->name);
    wipe_free(u->password);
    cfg__strlist_free(&u->attrs);
    memset(u, 0, sizeof *u);
}

void cfg__users_free_value(void *dst)
{
    struct cfg_users *l = dst;
    for (size_t i = 0; i < l->n; i++)
        user_free(&l->items[i]);
    free(l->items);
    l->items = NULL;
    l->n = 0;
}

/* ---- role attributes ---------------------------------------------------------- */

/* The attributes of CREATE ROLE that take no argument, each with its NO form. */
static const char *const flag_attrs[] = {"SUPERUSER", "CREATEDB", "CREATEROLE", "INHERIT",
                                         "LOGIN",     "REPLICATION", "BYPASSRLS", NULL};

/* `in` with its whitespace runs made one space and trimmed, upper case
 * outside single quotes (a timestamp literal keeps its text). False when it
 * does not fit. */
static bool normalise(const char *in, char *out, size_t len)
{
    size_t o = 0;
    bool quoted = false, space = false;
    for (const char *p = in; *p; p++) {
        bool ws = !quoted && isspace((unsigned char)*p);
        if (ws) {
            space = o > 0;
            continue;
        }
        if (o + (space ? 2 : 1) >= len)
            return false;
        if (space)
            out[o++] = ' ';
        space = false;
        if (*p == '\'')
            quoted = !quoted;
        out[o++] = quoted || *p == '\'' ? *p : (char)toupper((unsigned char)*p);
    }
    out[o] = '\0';
    return true;
}

/* CONNECTION LIMIT's argument: an integer from -1 (no limit) up. */
static bool connection_limit(const char *s)
{
    long long v;
    return cfg__parse_ll(s, &v) && v >= -1 && v <= INT_MAX;
}

/* VALID UNTIL's argument: one single-quoted literal with no quote or
 * backslash inside, so it cannot end the literal early. */
static bool timestamp_literal(const char *s)
{
    size_t n = strlen(s);
    return n >= 3 && s[0] == '\'' && s[n - 1] == '\'' && strcspn(s + 1, "'\\") == n - 2;
}

/* The attribute an option sets ("CREATEDB" for NOCREATEDB too), to refuse
 * the same one twice as PostgreSQL would; NULL when `a` is not one. */
static const char *attr_key(const char *a)
{
    for (const char *const *f = flag_attrs; *f != NULL; f++)
        if (strcmp(a, *f) == 0 || (strncmp(a, "NO", 2) == 0 && strcmp(a + 2, *f) == 0))
            return *f;
    if (strncmp(a, "CONNECTION LIMIT ", 17) == 0 && connection_limit(a + 17))
        return "CONNECTION LIMIT";
    if (strncmp(a, "VALID UNTIL ", 12) == 0 && timestamp_literal(a + 12))
        return "VALID UNTIL";
    return NULL;
}

/* ---- parsing ---------------------------------------------------------------- */

static int parse_options(const char *user, const struct ynode *v, struct cfg_strlist *attrs,
                         struct cfg__perr *pe)
{
    if (v->kind != YN_SEQ)
        return cfg__perr(pe, v, "user %s: expected a list of role attributes ([createrole, createdb]), "
                         "got %s", user, ynode_is_null(v) ? "nothing" : ynode_kind_name(v));
    const char *keys[64];
    if (v->n > sizeof keys / sizeof keys[0])
        return cfg__perr(pe, v, "user %s: more than 64 options", user);
    for (size_t i = 0; i < v->n; i++) {
        const struct ynode *it = v->items[i];
        char a[160], q[96];
        snprintf(pe->sub, sizeof pe->sub, ".%.60s.options[%zu]", user, i);
        if (it->kind != YN_SCALAR || ynode_is_null(it))
            return cfg__perr(pe, it, "user %s: expected a role attribute, got %s", user,
                             ynode_is_null(it) ? "nothing" : ynode_kind_name(it));
        cfg__quote(it->text, q, sizeof q);
        if (!normalise(it->text, a, sizeof a) || (keys[i] = attr_key(a)) == NULL)
            return cfg__perr(pe, it, "user %s: option %s is not a PostgreSQL role attribute pgwarden "
                             "accepts ([NO]SUPERUSER, [NO]CREATEDB, [NO]CREATEROLE, [NO]INHERIT, "
                             "[NO]LOGIN, [NO]REPLICATION, [NO]BYPASSRLS, CONNECTION LIMIT <integer>, "
                             "VALID UNTIL '<timestamp>'; the password goes in password:)", user, q);
        for (size_t j = 0; j < i; j++)
            if (keys[j] == keys[i])
                return cfg__perr(pe, it, "user %s: option %s sets %s again (PostgreSQL refuses "
                                 "conflicting or redundant options)", user, q, keys[i]);
        if (cfg__strlist_push(attrs, a) != 0)
            return cfg__perr(pe, it, "out of memory");
    }
    return PGW_OK;
}

/* PostgreSQL's limits on a role name: 63 bytes (longer ones are cut,
 * silently), and the pg_ prefix is reserved (CREATE ROLE refuses it). */
static const char *bad_role_name(const char *s)
{
    if (s[0] == '\0')
        return "an empty role name";
    if (strlen(s) > 63)
        return "longer than 63 bytes (PostgreSQL would cut it)";
    if (strncmp(s, "pg_", 3) == 0)
        return "role names starting with pg_ are reserved by PostgreSQL";
    return NULL;
}

/* One `name: {password, options}`; pe->sub names the user (and field). */
static int parse_user(const struct ynode *kn, const struct ynode *v, struct cfg_user *u,
                      struct cfg__perr *pe)
{
    const char *why;
    snprintf(pe->sub, sizeof pe->sub, ".%.80s", kn->text);
    if ((why = bad_role_name(kn->text)) != NULL)
        return cfg__perr(pe, kn, "user %s: %s", kn->text, why);
    if ((u->name = strdup(kn->text)) == NULL)
        return cfg__perr(pe, kn, "out of memory");
    if (v->kind != YN_MAP)
        return cfg__perr(pe, v, "user %s: expected a mapping {password, options}, got %s", kn->text,
                         ynode_is_null(v) ? "nothing" : ynode_kind_name(v));
    for (size_t i = 0; i + 1 < v->n; i += 2) {
        const struct ynode *fk = v->items[i], *fv = v->items[i + 1];
        snprintf(pe->sub, sizeof pe->sub, ".%.60s.%.30s", kn->text, fk->text);
        if (strcmp(fk->text, "options") == 0) {
            if (parse_options(kn->text, fv, &u->attrs, pe) != 0)
                return PGW_EINVAL;
        } else if (strcmp(fk->text, "password") == 0) {
            /* never echoed, even in an error */
            if (fv->kind != YN_SCALAR)
                return cfg__perr(pe, fv, "user %s: expected a password, got %s", kn->text,
                                 ynode_kind_name(fv));
            wipe_free(u->password);
            u->password = NULL;
            if (!ynode_is_null(fv) && fv->text[0] != '\0' &&
                (u->password = strdup(fv->text)) == NULL)
                return cfg__perr(pe, fv, "out of memory");
        } else {
            return cfg__perr(pe, fk, "user %s: unknown key (a user has password and options)",
                             kn->text);
        }
    }
    pe->sub[0] = '\0';
    return PGW_OK;
}

int cfg__users_parse_value(const struct ynode *v, void *dst, struct cfg__perr *pe)
{
    if (v->kind != YN_MAP)
        return cfg__perr(pe, v, "expected a mapping of user name: {password, options}, got %s",
                         ynode_is_null(v) ? "nothing" : ynode_kind_name(v));
    struct cfg_users l = {0};
    if (v->n / 2 > 0 && (l.items = calloc(v->n / 2, sizeof *l.items)) == NULL)
        return cfg__perr(pe, v, "out of memory");
    for (size_t i = 0; i + 1 < v->n; i += 2) {
        if (parse_user(v->items[i], v->items[i + 1], &l.items[l.n++], pe) != 0) {
            cfg__users_free_value(&l);
            return PGW_EINVAL;
        }
    }
    cfg__users_free_value(dst);
    *(struct cfg_users *)dst = l;
    return PGW_OK;
}

/* ---- copy, compare, print ------------------------------------------------------ */

int cfg__users_copy_value(void *dst, const void *src)
{
    const struct cfg_users *s = src;
    struct cfg_users l = {0};
    if (s->n > 0 && (l.items = calloc(s->n, sizeof *l.items)) == NULL)
        return PGW_ENOMEM;
    for (size_t i = 0; i < s->n; i++) {
        const struct cfg_user *a = &s->items[i];
        struct cfg_user *b = &l.items[l.n++];
        int rc = cfg__strdup_or_null(&b->name, a->name);
        if (rc == PGW_OK)
            rc = cfg__strdup_or_null(&b->password, a->password);
        for (size_t j = 0; rc == PGW_OK && j < a->attrs.n; j++)
            rc = cfg__strlist_push(&b->attrs, a->attrs.items[j]);
        if (rc != PGW_OK) {
            cfg__users_free_value(&l);
            return PGW_ENOMEM;
        }
    }
    cfg__users_free_value(dst);
    *(struct cfg_users *)dst = l;
    return PGW_OK;
}

bool cfg__users_value_equal(const void *a, const void *b)
{
    const struct cfg_users *x = a, *y = b;
    if (x->n != y->n)
        return false;
    for (size_t i = 0; i < x->n; i++) {
        const struct cfg_user *p = &x->items[i], *q = &y->items[i];
        if (!cfg__str_eq(p->name, q->name) || !cfg__str_eq(p->password, q->password) ||
            !cfg__strlist_equal(&p->attrs, &q->attrs))
            return false;
    }
    return true;
}

/* {alice: {password: (secret), options: [CREATEDB]}}: the password never. */
void cfg__users_format_value(const void *v, char *buf, size_t len)
{
    const struct cfg_users *l = v;
    size_t o = 0;
    int w = snprintf(buf, len, "{");
    for (size_t i = 0; w >= 0 && (o += (size_t)w) < len && i < l->n; i++) {
        const struct cfg_user *u = &l->items[i];
        w = snprintf(buf + o, len - o, "%s%s: {%soptions: [", i ? ", " : "", u->name,
                     u->password ? "password: (secret), " : "");
        for (size_t j = 0; w >= 0 && (o += (size_t)w) < len && j < u->attrs.n; j++)
            w = snprintf(buf + o, len - o, "%s%s", j ? ", " : "", u->attrs.items[j]);
        if (w >= 0 && o < len)
            w = snprintf(buf + o, len - o, "]}");
    }
    if (w >= 0 && o < len)
        snprintf(buf + o, len - o, "}");
}

bool cfg__users_have_password(const void *v)
{
    const struct cfg_users *l = v;
    for (size_t i = 0; i < l->n; i++)
        if (l->items[i].password != NULL)
            return true;
    return false;
}

/* ---- after the whole file ---------------------------------------------------------- */

/* Which of pgwarden's own roles `name` is, or NULL. Patroni skips a user
 * named like the superuser, replication or rewind user (bootstrap.py
 * post_bootstrap): their attributes and passwords come from
 * postgresql.authentication. */
static const char *own_role(const struct cfg *c, const char *name)
{
    const struct cfg_postgresql *pg = &c->postgresql;
    if (cfg__str_eq(pg->superuser.username, name))
        return "superuser";
    if (cfg__str_eq(pg->replication.username, name))
        return "replication";
    if (cfg__str_eq(pg->rewind.username, name))
        return "rewind";
    return NULL;
}

static const struct ynode *user_key_node(const struct ynode *map, const char *name)
{
    for (size_t i = 0; map != NULL && map->kind == YN_MAP && i + 1 < map->n; i += 2)
        if (strcmp(map->items[i]->text, name) == 0)
            return map->items[i];
    return map;
}

int cfg__users_finalize(struct cfg__walk *w)
{
    const struct cfg_key *k = cfg__key_find("bootstrap.users");
    struct cfg_users *l = &w->c->bootstrap.users;
    const struct ynode *map = k != NULL ? w->seen[k - cfg__keys] : NULL;
    size_t kept = 0;
    int rc = PGW_OK;
    for (size_t i = 0; i < l->n; i++) {
        const char *which = own_role(w->c, l->items[i].name);
        if (which == NULL) {
            struct cfg_user u = l->items[i];
            memset(&l->items[i], 0, sizeof l->items[i]);
            l->items[kept++] = u;
            continue;
        }
        const struct ynode *at = user_key_node(map, l->items[i].name);
        if (rc == PGW_OK)
            rc = cfg__warn(w->warn, "%s:%d:%d: bootstrap.users.%s is "
                           "postgresql.authentication.%s.username, a role pgwarden creates "
                           "itself: skipped, as Patroni does", w->file ? w->file : "", at ? at->line : 0,
                           at ? at->col : 0, l->items[i].name, which);
        user_free(&l->items[i]);
    }
    l->n = kept;
    return rc;
}
