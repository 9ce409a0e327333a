/* The SQL steps of the node: roles (superuser password, replication role,
 * rewind role with the grants pg_rewind needs, when a rewind section is
 * configured: without one pg_rewind connects as the superuser), the roles
 * of bootstrap.users (after post_bootstrap, as in Patroni) and
 * physical replication slots, each one idempotent multi-statement query on
 * a short-lived superuser connection (see pgnode__do_sql). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "pg/pgnode_internal.h"

/* ---- roles ------------------------------------------------------------------- */

struct sqlbuf {
    char *s;
    size_t len, cap;
    bool oom;
};

static void sq_add(struct sqlbuf *b, const char *s)
{
    size_t n = strlen(s);
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 1024;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *ns = realloc(b->s, cap);
        if (!ns) {
            b->oom = true;
            return;
        }
        b->s = ns;
        b->cap = cap;
    }
    memcpy(b->s + b->len, s, n + 1);
    b->len += n;
}

/* What a role statement does to the role: ALTER an existing one (the
 * superuser), create it when missing then ALTER it (a cluster pgwarden
 * created), or only create it when missing (an adopted cluster: an existing
 * role stays exactly as it is, as in Patroni, which touches roles only after
 * its own initdb; resetting a password would lock out whoever else uses it). */
enum role_how { ROLE_ALTER, ROLE_ENSURE_AND_ALTER, ROLE_CREATE_IF_MISSING };

static void sq_role(struct sqlbuf *b, const char *name, const char *password, const char *attrs,
                    enum role_how how)
{
    char *id = pgconn_quote_ident(name);
    char *lit = pgconn_quote_literal(name);
    char *pw = password ? pgconn_quote_literal(password) : NULL;
    if (!id || !lit || (password && !pw)) {
        b->oom = true;
        goto out;
    }
    /* CREATE ROLE has no IF NOT EXISTS: a DO block, dollar-quoted with a
     * tag that appears in none of the quoted pieces */
    char tag[32] = "$pgw$";
    for (unsigned i = 0; i < 1000 && (strstr(id, tag) || strstr(lit, tag) || (pw && strstr(pw, tag)));
         i++)
        snprintf(tag, sizeof tag, "$pgw%u$", i);
    if (how != ROLE_ALTER) {
        sq_add(b, "DO ");
        sq_add(b, tag);
        sq_add(b, " BEGIN IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = ");
        sq_add(b, lit);
        sq_add(b, ") THEN CREATE ROLE ");
        sq_add(b, id);
    }
    if (how != ROLE_CREATE_IF_MISSING) {
        if (how == ROLE_ENSURE_AND_ALTER) {
            sq_add(b, "; END IF; END ");
            sq_add(b, tag);
            sq_add(b, ";\n");
        }
        sq_add(b, "ALTER ROLE ");
        sq_add(b, id);
    }
    sq_add(b, " WITH ");
    sq_add(b, attrs);
    if (pw) {
        sq_add(b, " PASSWORD ");
        sq_add(b, pw);
    }
    if (how == ROLE_CREATE_IF_MISSING) {
        sq_add(b, "; END IF; END ");
        sq_add(b, tag);
    }
    sq_add(b, ";\n");
out:
    free(id);
    free(lit);
    if (pw) {
        memset(pw, 0, strlen(pw));
        free(pw);
    }
}

/* First in a query that holds passwords. pgnode__do_sql_at already starts
 * the session with these, which is what keeps log_statement quiet (a SET
 * here comes too late for it); repeated so that the SQL carries its own
 * guard whatever session runs it. */
static void sq_no_statement_log(struct sqlbuf *b)
{
    sq_add(b, "SET log_statement = 'none';\nSET log_min_duration_statement = -1;\n"
              "SET log_min_error_statement = 'log';\n");
}

static char *roles_sql(const struct cfg *cfg, bool keep_existing)
{
    struct sqlbuf b = {0};
    const struct cfg_pgauth *su = &cfg->postgresql.superuser;
    const struct cfg_pgauth *rep = &cfg->postgresql.replication;
    const struct cfg_pgauth *rw = &cfg->postgresql.rewind;
    sq_no_statement_log(&b);
    enum role_how other = keep_existing ? ROLE_CREATE_IF_MISSING : ROLE_ENSURE_AND_ALTER;
    /* the superuser pgwarden connected as exists: kept as it is on adoption */
    if (su->username && *su->username && !keep_existing)
        sq_role(&b, su->username, su->password, "SUPERUSER LOGIN", ROLE_ALTER);
    if (rep->username && *rep->username &&
        !(su->username && strcmp(rep->username, su->username) == 0))
        sq_role(&b, rep->username, rep->password, "REPLICATION LOGIN", other);
    if (rw->username && *rw->username &&
        !(su->username && strcmp(rw->username, su->username) == 0)) {
        sq_role(&b, rw->username, rw->password, "LOGIN", other);
        char *id = pgconn_quote_ident(rw->username);
        if (!id) {
            free(b.s);
            return NULL;
        }
        /* what pg_rewind needs as a non-superuser (PostgreSQL docs, pg_rewind) */
        static const char *const fns[] = {
            "pg_catalog.pg_ls_dir(text, boolean, boolean)",
            "pg_catalog.pg_stat_file(text, boolean)",
            "pg_catalog.pg_read_binary_file(text)",
            "pg_catalog.pg_read_binary_file(text, bigint, bigint, boolean)",
        };
        for (size_t i = 0; i < 4; i++) {
            sq_add(&b, "GRANT EXECUTE ON FUNCTION ");
            sq_add(&b, fns[i]);
            sq_add(&b, " TO ");
            sq_add(&b, id);
            sq_add(&b, ";\n");
        }
        free(id);
    }
    if (b.oom) {
        free(b.s);
        return NULL;
    }
    return b.s;
}

/* The attributes of a bootstrap.users role as Patroni's
 * create_or_update_role builds them: the options (validated and upper-cased
 * at load, common/cfg_users.c), then LOGIN unless LOGIN or NOLOGIN is one. */
static void sq_user_attrs(struct sqlbuf *b, const struct cfg_user *u)
{
    bool login_given = false;
    for (size_t i = 0; i < u->attrs.n; i++) {
        const char *a = u->attrs.items[i];
        sq_add(b, i ? " " : "");
        sq_add(b, a);
        login_given |= strcmp(a, "LOGIN") == 0 || strcmp(a, "NOLOGIN") == 0;
    }
    if (!login_given)
        sq_add(b, u->attrs.n ? " LOGIN" : "LOGIN");
}

/* bootstrap.users: each one created when missing, else altered (Patroni's
 * create_or_update_role). The users named like pgwarden's own roles were
 * dropped at load. NULL when there are none (or out of memory: *oom). */
static char *users_sql(const struct cfg *cfg, bool *oom)
{
    const struct cfg_users *l = &cfg->bootstrap.users;
    struct sqlbuf b = {0};
    *oom = false;
    if (l->n == 0)
        return NULL;
    sq_no_statement_log(&b);
    for (size_t i = 0; i < l->n; i++) {
        struct sqlbuf attrs = {0};
        sq_user_attrs(&attrs, &l->items[i]);
        b.oom |= attrs.oom;
        if (!attrs.oom)
            sq_role(&b, l->items[i].name, l->items[i].password, attrs.s, ROLE_ENSURE_AND_ALTER);
        free(attrs.s);
    }
    if (b.oom) {
        if (b.s)
            memset(b.s, 0, b.len);
        free(b.s);
        *oom = true;
        return NULL;
    }
    return b.s;
}

bool pgnode__has_users(const struct pgnode *n)
{
    return n->cfg->bootstrap.users.n > 0;
}

int pgnode__do_users(struct pgnode *n)
{
    bool oom;
    char *sql = users_sql(n->cfg, &oom);
    if (sql == NULL && !oom)
        return PGW_EINVAL; /* callers check pgnode__has_users first */
    log_info("pg", "bootstrap: creating the %zu role(s) of bootstrap.users",
             n->cfg->bootstrap.users.n);
    return pgnode__do_sql(n, S_USERS, sql);
}

int pgnode__do_roles(struct pgnode *n)
{
    return pgnode__do_sql(n, S_ROLES, roles_sql(n->cfg, false));
}

int pgnode__do_roles_if_missing(struct pgnode *n)
{
    return pgnode__do_sql(n, S_ROLES, roles_sql(n->cfg, true));
}

int pgnode_create_roles(struct pgnode *n, pgnode_done_cb cb, void *ctx)
{
    int rc = pgnode__begin(n, F_ROLES, ctx);
    if (rc)
        return rc;
    n->cb = cb;
    rc = pgnode__do_roles(n);
    if (rc)
        return pgnode__abort_begin(n, rc);
    return PGW_OK;
}

/* ---- slots ------------------------------------------------------------------------------ */

int pgnode_sync_slots(struct pgnode *n, const char *const *members, const char *const *ignore,
                      pgnode_done_cb cb, void *ctx)
{
    int rc = pgnode__begin(n, F_SLOTS, ctx);
    if (rc)
        return rc;
    n->cb = cb;
    struct sqlbuf b = {0};
    struct sqlbuf keep = {0};
    char self[PGCONF_SLOT_MAX];
    pgconf_slot_name(n->cfg->name, self, sizeof self);
    sq_add(&keep, "''");
    for (size_t i = 0; members && members[i]; i++) {
        char slot[PGCONF_SLOT_MAX];
        pgconf_slot_name(members[i], slot, sizeof slot);
        if (!slot[0] || strcmp(slot, self) == 0)
            continue;
        char *lit = pgconn_quote_literal(slot);
        if (!lit) {
            b.oom = true;
            break;
        }
        /* idempotent: only when missing */
        sq_add(&b, "SELECT pg_catalog.pg_create_physical_replication_slot(");
        sq_add(&b, lit);
        sq_add(&b, ") WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_replication_slots WHERE slot_name = ");
        sq_add(&b, lit);
        sq_add(&b, ");\n");
        sq_add(&keep, ", ");
        sq_add(&keep, lit);
        free(lit);
    }
    for (size_t i = 0; ignore && ignore[i]; i++) {
        char *lit = pgconn_quote_literal(ignore[i]);
        if (!lit) {
            b.oom = true;
            break;
        }
        sq_add(&keep, ", ");
        sq_add(&keep, lit);
        free(lit);
    }
    /* drop the others; an active slot (a connected standby, pg_basebackup's
     * temporary one) is left alone this time */
    sq_add(&b, "SELECT pg_catalog.pg_drop_replication_slot(slot_name) FROM "
               "pg_catalog.pg_replication_slots WHERE slot_type = 'physical' AND NOT active "
               "AND NOT temporary AND slot_name NOT IN (");
    sq_add(&b, keep.s ? keep.s : "''");
    sq_add(&b, ")");
    free(keep.s);
    if (b.oom || keep.oom) {
        free(b.s);
        pgnode__set_err(n, "out of memory");
        return pgnode__abort_begin(n, PGW_ENOMEM);
    }
    rc = pgnode__do_sql(n, S_SLOTS, b.s);
    if (rc)
        return pgnode__abort_begin(n, rc);
    return PGW_OK;
}
