/* The local node's composable steps (see pgnode.h for each step's happy
 * path). Every step is a small state machine: `step` says which async
 * primitive (a pgctl operation, an SQL query on a short-lived superuser
 * connection, the primary's timeline fetch, pg_waldump) is running, and
 * advance() moves on when it reports.
 * Failure modes: the first failure ends the step with its message on the
 * node (pgnode_error), naming the step and the cause; nothing is deleted
 * (a data dir to replace is moved aside). */
#include "pg/pgnode.h"

#include <dirent.h>
#include <errno.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "pg/proc.h"

enum flow {
    F_NONE = 0, F_BOOTSTRAP, F_ROLES, F_START, F_STOP, F_CLONE, F_FOLLOW, F_DEMOTE, F_PROMOTE,
    F_SLOTS, F_REWIND_CHECK, F_REJOIN, F_ADOPT,
};

enum step {
    S_NONE = 0,
    S_INITDB, S_START, S_ROLES, S_STOP, S_BASEBACKUP, S_RELOAD, S_PROMOTE, S_SLOTS,
    S_CD1, S_RECOVER, S_CD2, S_WALDUMP, S_FETCH, S_REWIND, S_ADOPT_INFO, S_CHECKPOINT, S_SRC_CHECKPOINT,
};

struct pgnode {
    uv_loop_t *loop;
    const struct cfg *cfg;
    const struct cfg_dcs *dcs;
    struct pgctl *ctl;
    char err[PGNODE_ERR_MAX];
    enum flow flow;
    enum step step;
    pgnode_done_cb cb;
    pgnode_rewind_check_cb rccb;
    pgnode_rejoin_cb rjcb;
    pgnode_adopt_cb adcb;
    void *ctx;
    uv_timer_t timer; /* only to free the node from a close callback */
    struct pgconn *conn;
    bool conn_remote; /* conn goes to n->host, not to the local instance */
    struct pgrewind_fetch *fetch;
    struct proc *proc;
    char host[256];
    uint16_t port;
    uint16_t local_port; /* 0 = from the configuration */
    char slot[PGCONF_SLOT_MAX];
    enum pgctl_stop_mode stop_mode;
    char *sql;
    struct pgrewind_local local;
    struct pgrewind_primary primary;
    struct pgrewind_decision decision;
    struct pgnode_rejoin_result rj;
    struct pgnode_adopt_result ad;
    bool recloning;
};

static void advance(struct pgnode *n, int status);

static void set_err(struct pgnode *n, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_err(struct pgnode *n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(n->err, sizeof n->err, fmt, ap);
    va_end(ap);
}

static void copy_str(char *dst, size_t len, const char *src)
{
    size_t l = strlen(src ? src : "");
    if (l >= len)
        l = len - 1;
    if (l)
        memcpy(dst, src, l);
    dst[l] = '\0';
}

/* ---- lifecycle ------------------------------------------------------------ */

int pgnode_new(uv_loop_t *loop, const struct cfg *cfg, const struct cfg_dcs *dcs,
               struct pgnode **out, char *errbuf, size_t errlen)
{
    *out = NULL;
    if (!cfg || !cfg->postgresql.present) {
        snprintf(errbuf, errlen, "no postgresql section in the configuration (witness node)");
        return PGW_EINVAL;
    }
    const struct cfg_postgresql *pg = &cfg->postgresql;
    if (!pg->data_dir || !*pg->data_dir) {
        snprintf(errbuf, errlen, "postgresql.data_dir is required");
        return PGW_EINVAL;
    }
    struct pgnode *n = calloc(1, sizeof *n);
    if (!n) {
        snprintf(errbuf, errlen, "out of memory");
        return PGW_ENOMEM;
    }
    struct pgctl_opts o = {
        .bin_dir = pg->bin_dir && *pg->bin_dir ? pg->bin_dir : "/usr/lib/postgresql/15/bin",
        .data_dir = pg->data_dir,
        .pgpass_file = pg->pgpass,
        .timeout_ms = pg->pg_ctl_timeout_ms ? pg->pg_ctl_timeout_ms : 60000,
    };
    int rc = pgctl_new(loop, &o, &n->ctl, errbuf, errlen);
    if (rc) {
        free(n);
        return rc;
    }
    n->loop = loop;
    n->cfg = cfg;
    n->dcs = dcs;
    uv_timer_init(loop, &n->timer);
    n->timer.data = n;
    *out = n;
    return PGW_OK;
}

void pgnode_set_config(struct pgnode *n, const struct cfg *cfg, const struct cfg_dcs *dcs)
{
    n->cfg = cfg;
    n->dcs = dcs;
}

static void on_timer_closed(uv_handle_t *h)
{
    free(h->data);
}

void pgnode_destroy(struct pgnode *n)
{
    if (!n)
        return;
    if (n->conn)
        pgconn_destroy(n->conn);
    if (n->fetch)
        pgrewind_fetch_cancel(n->fetch);
    if (n->proc)
        proc_abandon(n->proc);
    pgctl_destroy(n->ctl);
    free(n->sql);
    uv_timer_stop(&n->timer);
    uv_close((uv_handle_t *)&n->timer, on_timer_closed);
}

bool pgnode_busy(const struct pgnode *n) { return n->flow != F_NONE; }
const char *pgnode_error(const struct pgnode *n) { return n->err; }
struct pgctl *pgnode_ctl(struct pgnode *n) { return n->ctl; }

static int pg_major(const struct pgnode *n)
{
    int v = pgctl_data_version(n->ctl);
    return v ? v : pgctl_bin_version(n->ctl);
}

static bool use_slots(const struct pgnode *n)
{
    return n->dcs ? n->dcs->use_slots : true;
}

static bool use_rewind(const struct pgnode *n)
{
    if (n->cfg->postgresql.use_pg_rewind_set)
        return n->cfg->postgresql.use_pg_rewind;
    return n->dcs ? n->dcs->use_pg_rewind : true;
}

int pgnode_local_conn_params(const struct pgnode *n, struct pgconn_params *out)
{
    int rc = pgconf_conn_params(n->cfg, PGCONF_SUPERUSER, NULL, 0, "postgres", false, out);
    if (rc == PGW_OK && n->local_port) {
        char p[16];
        snprintf(p, sizeof p, "%u", (unsigned)n->local_port);
        rc = pgconn_params_set(out, "port", p);
        if (rc)
            pgconn_params_free(out);
    }
    return rc;
}

struct pgconf_role pgnode_standby_role(struct pgnode *n, const char *host, uint16_t port)
{
    if (host != n->host)
        copy_str(n->host, sizeof n->host, host);
    n->port = port;
    n->slot[0] = '\0';
    if (use_slots(n))
        pgconf_slot_name(n->cfg->name, n->slot, sizeof n->slot);
    struct pgconf_role r = {.standby = true, .primary_host = n->host, .primary_port = port,
                            .primary_slot_name = n->slot[0] ? n->slot : NULL};
    return r;
}

/* ---- data dir ----------------------------------------------------------- */

const char *pgnode_datadir_name(enum pgnode_datadir d)
{
    switch (d) {
    case PGNODE_DATADIR_ABSENT: return "absent";
    case PGNODE_DATADIR_EMPTY: return "empty";
    case PGNODE_DATADIR_CLUSTER: return "cluster";
    case PGNODE_DATADIR_OTHER:
    default: return "other";
    }
}

int pgnode_inspect_datadir(const char *data_dir, enum pgnode_datadir *out, char *errbuf,
                           size_t errlen)
{
    struct stat st;
    if (stat(data_dir, &st) != 0) {
        if (errno == ENOENT) {
            *out = PGNODE_DATADIR_ABSENT;
            return PGW_OK;
        }
        snprintf(errbuf, errlen, "data directory %s: %s", data_dir, strerror(errno));
        return PGW_EIO;
    }
    if (!S_ISDIR(st.st_mode)) {
        snprintf(errbuf, errlen, "data directory %s is not a directory", data_dir);
        return PGW_EINVAL;
    }
    DIR *d = opendir(data_dir);
    if (!d) {
        int e = errno;
        snprintf(errbuf, errlen, "data directory %s cannot be read: %s (owner uid %d, we are uid %d)",
                 data_dir, strerror(e), (int)st.st_uid, (int)geteuid());
        return e == EACCES ? PGW_EREFUSED : PGW_EIO;
    }
    bool empty = true;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            empty = false;
            break;
        }
    closedir(d);
    if (empty) {
        *out = PGNODE_DATADIR_EMPTY;
        return PGW_OK;
    }
    char p1[4200], p2[4200];
    snprintf(p1, sizeof p1, "%s/PG_VERSION", data_dir);
    snprintf(p2, sizeof p2, "%s/global/pg_control", data_dir);
    *out = access(p1, F_OK) == 0 && access(p2, F_OK) == 0 ? PGNODE_DATADIR_CLUSTER
                                                          : PGNODE_DATADIR_OTHER;
    return PGW_OK;
}

int pgnode_move_aside(const char *data_dir, char *newpath, size_t newlen, char *errbuf,
                      size_t errlen)
{
    char *copy = strdup(data_dir);
    if (!copy) {
        snprintf(errbuf, errlen, "out of memory");
        return PGW_ENOMEM;
    }
    char parent[4096];
    copy_str(parent, sizeof parent, dirname(copy));
    free(copy);
    if (access(parent, W_OK) != 0) {
        snprintf(errbuf, errlen, "cannot move %s aside: its parent directory %s is not writable "
                 "(%s; we are uid %d). Make %s writable for pgwarden's user or move the data "
                 "directory yourself", data_dir, parent, strerror(errno), (int)geteuid(), parent);
        return PGW_EREFUSED;
    }
    char stamp[32];
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    strftime(stamp, sizeof stamp, "%Y%m%d%H%M%S", &tm);
    char target[4200];
    for (int i = 0; i < 100; i++) {
        if (i == 0)
            snprintf(target, sizeof target, "%s.%s", data_dir, stamp);
        else
            snprintf(target, sizeof target, "%s.%s-%d", data_dir, stamp, i);
        if (access(target, F_OK) != 0)
            break;
    }
    if (rename(data_dir, target) != 0) {
        snprintf(errbuf, errlen, "cannot move %s to %s: %s", data_dir, target, strerror(errno));
        return PGW_EIO;
    }
    log_warn("pg", "moved data directory %s aside to %s (nothing deleted)", data_dir, target);
    if (newpath)
        copy_str(newpath, newlen, target);
    return PGW_OK;
}

/* ---- flow plumbing --------------------------------------------------------- */

static void finish(struct pgnode *n, int status)
{
    enum flow f = n->flow;
    void *ctx = n->ctx;
    pgnode_done_cb cb = n->cb;
    pgnode_rewind_check_cb rccb = n->rccb;
    pgnode_rejoin_cb rjcb = n->rjcb;
    pgnode_adopt_cb adcb = n->adcb;
    n->flow = F_NONE;
    n->step = S_NONE;
    n->cb = NULL;
    n->rccb = NULL;
    n->rjcb = NULL;
    n->adcb = NULL;
    free(n->sql);
    n->sql = NULL;
    if (n->conn) {
        pgconn_destroy(n->conn);
        n->conn = NULL;
    }
    if (status == PGW_OK)
        n->err[0] = '\0';
    else
        log_error("pg", "%s", n->err);
    switch (f) {
    case F_REWIND_CHECK:
        if (rccb)
            rccb(n, status, status == PGW_OK ? &n->decision : NULL, ctx);
        break;
    case F_REJOIN:
        if (status != PGW_OK && !n->rj.reason[0])
            copy_str(n->rj.reason, sizeof n->rj.reason, n->err);
        if (rjcb)
            rjcb(n, status, &n->rj, ctx);
        break;
    case F_ADOPT:
        if (adcb)
            adcb(n, status, &n->ad, ctx);
        break;
    default:
        if (cb)
            cb(n, status, ctx);
        break;
    }
}

static int begin(struct pgnode *n, enum flow f, void *ctx)
{
    if (n->flow != F_NONE) {
        set_err(n, "another step is running on %s", n->cfg->postgresql.data_dir);
        return PGW_EBUSY;
    }
    n->flow = f;
    n->ctx = ctx;
    n->err[0] = '\0';
    return PGW_OK;
}

static int abort_begin(struct pgnode *n, int rc)
{
    n->flow = F_NONE;
    n->step = S_NONE;
    n->cb = NULL;
    n->rccb = NULL;
    n->rjcb = NULL;
    n->adcb = NULL;
    log_error("pg", "%s", n->err);
    return rc;
}

static void ctl_done(struct pgctl *ctl, int status, void *ctx)
{
    struct pgnode *n = ctx;
    if (status != PGW_OK)
        copy_str(n->err, sizeof n->err, pgctl_error(ctl));
    advance(n, status);
}

/* Start a pgctl step; on a synchronous failure the message is copied. */
static int ctl_rc(struct pgnode *n, int rc)
{
    if (rc != PGW_OK)
        copy_str(n->err, sizeof n->err, pgctl_error(n->ctl));
    return rc;
}

static int do_start(struct pgnode *n)
{
    n->step = S_START;
    return ctl_rc(n, pgctl_start(n->ctl, NULL, 0, ctl_done, n));
}

static int do_stop(struct pgnode *n, enum pgctl_stop_mode mode)
{
    n->step = S_STOP;
    return ctl_rc(n, pgctl_stop(n->ctl, mode, 0, ctl_done, n));
}

static void on_sql(struct pgconn *c, const struct pgconn_result *r, void *ctx)
{
    (void)c;
    struct pgnode *n = ctx;
    if (r->status != PGW_OK && n->step == S_SRC_CHECKPOINT) {
        /* pg_rewind reads the source's control file: without this
         * checkpoint a fresh primary may still show its old timeline */
        log_warn("pg", "CHECKPOINT on the rewind source %s:%u failed (%s); rewinding anyway",
                 n->host, (unsigned)n->port, r->error);
        advance(n, PGW_OK);
        return;
    }
    if (r->status != PGW_OK) {
        set_err(n, "SQL on %s failed: %s", n->step == S_SRC_CHECKPOINT ? "the primary" : "the local instance",
                r->error);
        advance(n, r->status);
        return;
    }
    if (n->step == S_ADOPT_INFO && r->nresults > 0 && PQntuples(r->results[r->nresults - 1]) == 1) {
        PGresult *res = r->results[r->nresults - 1];
        n->ad.in_recovery = PQgetvalue(res, 0, 0)[0] == 't';
        n->ad.system_identifier = strtoull(PQgetvalue(res, 0, 1), NULL, 10);
    }
    advance(n, PGW_OK);
}

/* Run sql (taken over) on a short-lived superuser connection to the local
 * instance, or to host:port when host is not NULL. */
static int do_sql_at(struct pgnode *n, enum step step, char *sql, const char *host, uint16_t port)
{
    free(n->sql);
    n->sql = sql;
    if (!sql) {
        set_err(n, "out of memory");
        return PGW_ENOMEM;
    }
    n->step = step;
    if (n->conn && (host != NULL || n->conn_remote)) {
        pgconn_destroy(n->conn); /* never reuse a connection across targets */
        n->conn = NULL;
    }
    n->conn_remote = host != NULL;
    if (!n->conn) {
        struct pgconn_params p;
        int rc = host ? pgconf_conn_params(n->cfg, PGCONF_SUPERUSER, host, port, "postgres", false, &p)
                      : pgnode_local_conn_params(n, &p);
        if (rc) {
            set_err(n, "out of memory");
            return rc;
        }
        struct pgconn_opts o = {.name = "admin", .connect_timeout_ms = 10000,
                                .query_timeout_ms = 30000};
        rc = pgconn_new(n->loop, &p, &o, &n->conn);
        pgconn_params_free(&p);
        if (rc) {
            set_err(n, "out of memory");
            return rc;
        }
    }
    int rc = pgconn_query(n->conn, n->sql, 30000, on_sql, n);
    if (rc)
        set_err(n, "cannot send SQL: %s", pgw_strerror(rc));
    return rc;
}

static int do_sql(struct pgnode *n, enum step step, char *sql)
{
    return do_sql_at(n, step, sql, NULL, 0);
}

static int write_files(struct pgnode *n, const struct pgconf_role *role, bool bootstrap_hba,
                       bool hba, struct pgconf_write_result *res)
{
    char eb[PGCONF_ERR_MAX];
    int rc = PGW_OK;
    if (n->cfg->postgresql.pgpass && *n->cfg->postgresql.pgpass)
        rc = pgconf_write_pgpass(n->cfg, eb, sizeof eb);
    if (rc == PGW_OK && hba)
        rc = pgconf_write_hba(n->cfg, n->dcs, bootstrap_hba, eb, sizeof eb);
    if (rc == PGW_OK) {
        struct pgconf_input in = {.cfg = n->cfg, .dcs = n->dcs, .pg_major = pg_major(n),
                                  .role = *role};
        rc = pgconf_write(&in, res, eb, sizeof eb);
    }
    if (rc)
        set_err(n, "configuration of %s: %s", n->cfg->postgresql.data_dir, eb);
    return rc;
}

int pgnode_configure(struct pgnode *n, const struct pgconf_role *role,
                     struct pgconf_write_result *res)
{
    return write_files(n, role, false, true, res);
}

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

static void sq_role(struct sqlbuf *b, const struct cfg_pgauth *a, const char *attrs, bool create)
{
    char *id = pgconn_quote_ident(a->username);
    char *lit = pgconn_quote_literal(a->username);
    char *pw = a->password ? pgconn_quote_literal(a->password) : NULL;
    if (!id || !lit || (a->password && !pw)) {
        b->oom = true;
        goto out;
    }
    if (create) {
        /* CREATE ROLE has no IF NOT EXISTS */
        sq_add(b, "DO $pgw$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = ");
        sq_add(b, lit);
        sq_add(b, ") THEN CREATE ROLE ");
        sq_add(b, id);
        sq_add(b, "; END IF; END $pgw$;\n");
    }
    sq_add(b, "ALTER ROLE ");
    sq_add(b, id);
    sq_add(b, " WITH ");
    sq_add(b, attrs);
    if (pw) {
        sq_add(b, " PASSWORD ");
        sq_add(b, pw);
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

static char *roles_sql(const struct cfg *cfg)
{
    struct sqlbuf b = {0};
    const struct cfg_pgauth *su = &cfg->postgresql.superuser;
    const struct cfg_pgauth *rep = &cfg->postgresql.replication;
    const struct cfg_pgauth *rw = &cfg->postgresql.rewind;
    /* a plain SET: the statements below must not be logged with their passwords */
    sq_add(&b, "SET log_statement = 'none';\nSET log_min_duration_statement = -1;\n");
    if (su->username && *su->username)
        sq_role(&b, su, "SUPERUSER LOGIN", false);
    if (rep->username && *rep->username &&
        !(su->username && strcmp(rep->username, su->username) == 0))
        sq_role(&b, rep, "REPLICATION LOGIN", true);
    if (rw->username && *rw->username &&
        !(su->username && strcmp(rw->username, su->username) == 0)) {
        sq_role(&b, rw, "LOGIN", true);
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

static int do_roles(struct pgnode *n)
{
    return do_sql(n, S_ROLES, roles_sql(n->cfg));
}

int pgnode_create_roles(struct pgnode *n, pgnode_done_cb cb, void *ctx)
{
    int rc = begin(n, F_ROLES, ctx);
    if (rc)
        return rc;
    n->cb = cb;
    rc = do_roles(n);
    if (rc)
        return abort_begin(n, rc);
    return PGW_OK;
}

/* ---- bootstrap ----------------------------------------------------------------- */

int pgnode_bootstrap(struct pgnode *n, pgnode_done_cb cb, void *ctx)
{
    int rc = begin(n, F_BOOTSTRAP, ctx);
    if (rc)
        return rc;
    n->cb = cb;
    n->local_port = 0;
    enum pgnode_datadir kind;
    char eb[512];
    rc = pgnode_inspect_datadir(n->cfg->postgresql.data_dir, &kind, eb, sizeof eb);
    if (rc) {
        set_err(n, "bootstrap: %s", eb);
        return abort_begin(n, rc);
    }
    if (kind == PGNODE_DATADIR_CLUSTER || kind == PGNODE_DATADIR_OTHER) {
        set_err(n, "bootstrap refused: data directory %s is not empty (%s); pgwarden never runs "
                "initdb over existing data (adopt it, or move it away)",
                n->cfg->postgresql.data_dir, pgnode_datadir_name(kind));
        return abort_begin(n, PGW_EREFUSED);
    }
    const struct cfg_strlist *opts = &n->cfg->bootstrap.initdb;
    const char *list[65];
    size_t k = 0;
    for (size_t i = 0; i < opts->n && k < 64; i++)
        list[k++] = opts->items[i];
    list[k] = NULL;
    struct pgctl_initdb_args a = {.options = list,
                                  .superuser = n->cfg->postgresql.superuser.username,
                                  .password = n->cfg->postgresql.superuser.password};
    n->step = S_INITDB;
    rc = ctl_rc(n, pgctl_initdb(n->ctl, &a, ctl_done, n));
    if (rc)
        return abort_begin(n, rc);
    return PGW_OK;
}

/* ---- start / stop ---------------------------------------------------------------- */

int pgnode_start(struct pgnode *n, pgnode_done_cb cb, void *ctx)
{
    int rc = begin(n, F_START, ctx);
    if (rc)
        return rc;
    n->cb = cb;
    rc = do_start(n);
    if (rc)
        return abort_begin(n, rc);
    return PGW_OK;
}

int pgnode_stop(struct pgnode *n, enum pgctl_stop_mode mode, pgnode_done_cb cb, void *ctx)
{
    int rc = begin(n, F_STOP, ctx);
    if (rc)
        return rc;
    n->cb = cb;
    rc = do_stop(n, mode);
    if (rc)
        return abort_begin(n, rc);
    return PGW_OK;
}

/* ---- clone ------------------------------------------------------------------------ */

static int do_basebackup(struct pgnode *n)
{
    struct pgconn_params p;
    int rc = pgconf_conn_params(n->cfg, PGCONF_REPLICATION, n->host, n->port, NULL, false, &p);
    if (rc) {
        set_err(n, "out of memory");
        return rc;
    }
    char ci[2048];
    rc = pgconn_params_set(&p, "dbname", NULL);
    if (!rc)
        rc = pgconn_params_set(&p, "application_name", n->cfg->name);
    if (!rc)
        rc = pgconn_params_to_conninfo(&p, false, ci, sizeof ci);
    pgconn_params_free(&p);
    if (rc) {
        set_err(n, "clone: source connection string too long");
        return rc;
    }
    char eb[512];
    if (n->cfg->postgresql.pgpass && *n->cfg->postgresql.pgpass &&
        pgconf_write_pgpass(n->cfg, eb, sizeof eb) != PGW_OK) {
        set_err(n, "clone: %s", eb);
        return PGW_EIO;
    }
    const struct cfg_strlist *bo = &n->cfg->postgresql.basebackup;
    const char *list[65];
    size_t k = 0;
    for (size_t i = 0; i < bo->n && k < 64; i++)
        list[k++] = bo->items[i];
    list[k] = NULL;
    struct pgctl_basebackup_args a = {.conninfo = ci, .options = list, .attempts = 2,
                                      .retry_pause_ms = 5000};
    n->step = S_BASEBACKUP;
    log_info("pg", "cloning %s from %s:%u", n->cfg->postgresql.data_dir, n->host, (unsigned)n->port);
    return ctl_rc(n, pgctl_basebackup(n->ctl, &a, ctl_done, n));
}

int pgnode_clone(struct pgnode *n, const char *host, uint16_t port, pgnode_done_cb cb, void *ctx)
{
    if (!host || !*host || !port) {
        set_err(n, "clone: the source host and port are required");
        return PGW_EINVAL;
    }
    int rc = begin(n, F_CLONE, ctx);
    if (rc)
        return rc;
    n->cb = cb;
    n->local_port = 0;
    copy_str(n->host, sizeof n->host, host);
    n->port = port;
    enum pgnode_datadir kind;
    char eb[512];
    rc = pgnode_inspect_datadir(n->cfg->postgresql.data_dir, &kind, eb, sizeof eb);
    if (rc) {
        set_err(n, "clone: %s", eb);
        return abort_begin(n, rc);
    }
    if (kind != PGNODE_DATADIR_ABSENT && kind != PGNODE_DATADIR_EMPTY) {
        set_err(n, "clone refused: data directory %s is not empty (%s)",
                n->cfg->postgresql.data_dir, pgnode_datadir_name(kind));
        return abort_begin(n, PGW_EREFUSED);
    }
    rc = do_basebackup(n);
    if (rc)
        return abort_begin(n, rc);
    return PGW_OK;
}

/* ---- follow / demote / promote ------------------------------------------------------ */

static int configure_standby(struct pgnode *n, bool *changed)
{
    struct pgconf_role role = pgnode_standby_role(n, n->host, n->port);
    struct pgconf_write_result res;
    int rc = write_files(n, &role, false, true, &res);
    if (changed)
        *changed = res.changed;
    return rc;
}

int pgnode_follow(struct pgnode *n, const char *host, uint16_t port, pgnode_done_cb cb, void *ctx)
{
    if (!host || !*host || !port) {
        set_err(n, "follow: the primary's host and port are required");
        return PGW_EINVAL;
    }
    int rc = begin(n, F_FOLLOW, ctx);
    if (rc)
        return rc;
    n->cb = cb;
    copy_str(n->host, sizeof n->host, host);
    n->port = port;
    rc = configure_standby(n, NULL);
    if (rc)
        return abort_begin(n, rc);
    if (pg_postmaster_running(n->cfg->postgresql.data_dir, NULL)) {
        /* primary_conninfo and primary_slot_name are reloadable since PG13 */
        n->step = S_RELOAD;
        rc = ctl_rc(n, pgctl_reload(n->ctl, ctl_done, n));
    } else {
        rc = do_start(n);
    }
    if (rc)
        return abort_begin(n, rc);
    return PGW_OK;
}

int pgnode_demote(struct pgnode *n, enum pgctl_stop_mode mode, const char *host, uint16_t port,
                  pgnode_done_cb cb, void *ctx)
{
    if (!host || !*host || !port) {
        set_err(n, "demote: the new primary's host and port are required");
        return PGW_EINVAL;
    }
    int rc = begin(n, F_DEMOTE, ctx);
    if (rc)
        return rc;
    n->cb = cb;
    copy_str(n->host, sizeof n->host, host);
    n->port = port;
    rc = do_stop(n, mode);
    if (rc)
        return abort_begin(n, rc);
    return PGW_OK;
}

int pgnode_promote(struct pgnode *n, pgnode_done_cb cb, void *ctx)
{
    int rc = begin(n, F_PROMOTE, ctx);
    if (rc)
        return rc;
    n->cb = cb;
    n->step = S_PROMOTE;
    rc = ctl_rc(n, pgctl_promote(n->ctl, 0, ctl_done, n));
    if (rc)
        return abort_begin(n, rc);
    return PGW_OK;
}

/* ---- slots ------------------------------------------------------------------------------ */

int pgnode_sync_slots(struct pgnode *n, const char *const *members, const char *const *ignore,
                      pgnode_done_cb cb, void *ctx)
{
    int rc = begin(n, F_SLOTS, ctx);
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
        set_err(n, "out of memory");
        return abort_begin(n, PGW_ENOMEM);
    }
    rc = do_sql(n, S_SLOTS, b.s);
    if (rc)
        return abort_begin(n, rc);
    return PGW_OK;
}

/* ---- rewind check ----------------------------------------------------------------------- */

static void cd_done(struct pgctl *ctl, int status, const struct pg_controldata *cd, void *ctx)
{
    (void)cd;
    struct pgnode *n = ctx;
    if (status != PGW_OK)
        copy_str(n->err, sizeof n->err, pgctl_error(ctl));
    advance(n, status);
}

static int do_controldata(struct pgnode *n, enum step step)
{
    n->step = step;
    return ctl_rc(n, pgctl_controldata(n->ctl, cd_done, n));
}

static void fetch_done(int status, const char *error, const struct pgrewind_primary *p, void *ctx)
{
    struct pgnode *n = ctx;
    n->fetch = NULL;
    if (status != PGW_OK) {
        set_err(n, "cannot read the primary's timeline from %s:%u: %s", n->host, (unsigned)n->port,
                error);
    } else {
        n->primary = *p;
    }
    advance(n, status);
}

static int do_fetch(struct pgnode *n)
{
    struct pgconn_params p;
    int rc = pgconf_conn_params(n->cfg, PGCONF_REPLICATION, n->host, n->port, NULL, true, &p);
    if (rc) {
        set_err(n, "out of memory");
        return rc;
    }
    n->step = S_FETCH;
    rc = pgrewind_fetch_primary(n->loop, &p, 10000, fetch_done, n, &n->fetch);
    pgconn_params_free(&p);
    if (rc)
        set_err(n, "cannot query the primary's timeline: %s", pgw_strerror(rc));
    return rc;
}

static void waldump_done(struct proc *p, const struct proc_result *r, void *ctx)
{
    (void)p;
    struct pgnode *n = ctx;
    n->proc = NULL;
    /* pg_waldump is expected to fail on the 2nd record: its error is the answer */
    n->local.checkpoint_end = pgrewind_parse_waldump_end(r->output, r->tail, n->local.lsn);
    char a[24];
    pg_lsn_format(n->local.checkpoint_end, a, sizeof a);
    log_info("pg", "end of the last checkpoint record: %s", n->local.checkpoint_end ? a : "unknown");
    advance(n, PGW_OK);
}

static int do_waldump(struct pgnode *n)
{
    char file[4200], waldir[4200], tli[16], lsn[24];
    snprintf(file, sizeof file, "%s/pg_waldump", pgctl_bin_dir(n->ctl));
    snprintf(waldir, sizeof waldir, "%s/pg_wal", n->cfg->postgresql.data_dir);
    snprintf(tli, sizeof tli, "%u", n->local.timeline);
    pg_lsn_format(n->local.lsn, lsn, sizeof lsn);
    char *argv[] = {file, "-p", waldir, "-t", tli, "-s", lsn, "-n", "2", NULL};
    char *env[] = {"LC_ALL=C", NULL};
    struct proc_spec spec = {.name = "pg_waldump", .file = file, .argv = argv, .env_extra = env,
                             .timeout_ms = 30000, .capture_stdout = 16384};
    char eb[512];
    n->step = S_WALDUMP;
    int rc = proc_spawn(n->loop, &spec, waldump_done, n, &n->proc, eb, sizeof eb);
    if (rc)
        set_err(n, "%s", eb);
    return rc;
}

/* Local timeline and position from the control file (Patroni's
 * _get_local_timeline_lsn_from_controldata). */
static void local_from_controldata(struct pgnode *n)
{
    const struct pg_controldata *cd = pgctl_last_controldata(n->ctl);
    memset(&n->local, 0, sizeof n->local);
    n->local.system_identifier = cd->system_identifier;
    bool recovery = cd->state == PG_CLUSTER_SHUT_DOWN_RECOVERY ||
                    cd->state == PG_CLUSTER_ARCHIVE_RECOVERY;
    if (recovery && cd->min_recovery_lsn != 0 && cd->min_recovery_tli != 0) {
        n->local.was_primary = false;
        n->local.lsn = cd->min_recovery_lsn;
        n->local.timeline = cd->min_recovery_tli;
    } else {
        n->local.was_primary = true;
        n->local.lsn = cd->checkpoint_lsn;
        n->local.timeline = cd->checkpoint_tli;
    }
}

static bool cd_clean(const struct pg_controldata *cd)
{
    return cd->state == PG_CLUSTER_SHUT_DOWN || cd->state == PG_CLUSTER_SHUT_DOWN_RECOVERY;
}

static int start_rewind_check(struct pgnode *n)
{
    if (pg_postmaster_running(n->cfg->postgresql.data_dir, NULL)) {
        set_err(n, "rewind check: PostgreSQL is running on %s; stop it first",
                n->cfg->postgresql.data_dir);
        return PGW_ECONFLICT;
    }
    memset(&n->decision, 0, sizeof n->decision);
    return do_controldata(n, S_CD1);
}

int pgnode_rewind_check(struct pgnode *n, const char *host, uint16_t port,
                        pgnode_rewind_check_cb cb, void *ctx)
{
    if (!host || !*host || !port) {
        set_err(n, "rewind check: the primary's host and port are required");
        return PGW_EINVAL;
    }
    int rc = begin(n, F_REWIND_CHECK, ctx);
    if (rc)
        return rc;
    n->rccb = cb;
    copy_str(n->host, sizeof n->host, host);
    n->port = port;
    rc = start_rewind_check(n);
    if (rc)
        return abort_begin(n, rc);
    return PGW_OK;
}

/* ---- rejoin ----------------------------------------------------------------------------- */

int pgnode_rejoin(struct pgnode *n, const char *host, uint16_t port, pgnode_rejoin_cb cb, void *ctx)
{
    if (!host || !*host || !port) {
        set_err(n, "rejoin: the primary's host and port are required");
        return PGW_EINVAL;
    }
    int rc = begin(n, F_REJOIN, ctx);
    if (rc)
        return rc;
    n->rjcb = cb;
    memset(&n->rj, 0, sizeof n->rj);
    n->recloning = false;
    copy_str(n->host, sizeof n->host, host);
    n->port = port;
    rc = do_stop(n, PGCTL_STOP_FAST);
    if (rc)
        return abort_begin(n, rc);
    return PGW_OK;
}

static int do_rewind(struct pgnode *n)
{
    struct pgconn_params p;
    int rc = pgconf_conn_params(n->cfg, PGCONF_REWIND, n->host, n->port, "postgres", false, &p);
    if (rc) {
        set_err(n, "out of memory");
        return rc;
    }
    char ci[2048];
    rc = pgconn_params_to_conninfo(&p, false, ci, sizeof ci);
    pgconn_params_free(&p);
    if (rc) {
        set_err(n, "rewind: source connection string too long");
        return rc;
    }
    n->step = S_REWIND;
    return ctl_rc(n, pgctl_rewind(n->ctl, ci, 0, ctl_done, n));
}

/* Rewind impossible or failed: re-clone when allowed, else report. */
static int rejoin_fallback(struct pgnode *n, const char *why, bool allowed)
{
    copy_str(n->rj.reason, sizeof n->rj.reason, why);
    if (!allowed) {
        n->rj.needs_reinit = true;
        set_err(n, "rejoin: needs reinit: %s", why);
        return PGW_EREFUSED;
    }
    char eb[1024];
    int rc = pgnode_move_aside(n->cfg->postgresql.data_dir, n->rj.moved_to, sizeof n->rj.moved_to,
                               eb, sizeof eb);
    if (rc) {
        n->rj.needs_reinit = true;
        set_err(n, "rejoin: %s; %s", why, eb);
        return rc;
    }
    n->recloning = true;
    return do_basebackup(n);
}

static void rejoin_decided(struct pgnode *n)
{
    const struct cfg_postgresql *pg = &n->cfg->postgresql;
    int rc;
    switch (n->decision.verdict) {
    case PGREWIND_NOT_NEEDED:
        log_info("pg", "rejoin: no rewind needed (%s)", n->decision.reason);
        copy_str(n->rj.reason, sizeof n->rj.reason, n->decision.reason);
        rc = configure_standby(n, NULL);
        if (rc == PGW_OK)
            rc = do_start(n);
        break;
    case PGREWIND_IMPOSSIBLE:
        rc = rejoin_fallback(n, n->decision.reason, pg->remove_data_directory_on_diverged_timelines);
        break;
    case PGREWIND_NEEDED:
    default:
        log_info("pg", "rejoin: pg_rewind needed (%s)", n->decision.reason);
        if (!use_rewind(n)) {
            char why[600];
            snprintf(why, sizeof why, "%s, and use_pg_rewind is off", n->decision.reason);
            rc = rejoin_fallback(n, why, pg->remove_data_directory_on_diverged_timelines ||
                                             pg->remove_data_directory_on_rewind_failure);
        } else {
            copy_str(n->rj.reason, sizeof n->rj.reason, n->decision.reason);
            rc = do_sql_at(n, S_SRC_CHECKPOINT, strdup("CHECKPOINT"), n->host, n->port);
        }
        break;
    }
    if (rc)
        finish(n, rc);
}

/* ---- adopt ----------------------------------------------------------------------------- */

int pgnode_adopt(struct pgnode *n, pgnode_adopt_cb cb, void *ctx)
{
    int rc = begin(n, F_ADOPT, ctx);
    if (rc)
        return rc;
    n->adcb = cb;
    memset(&n->ad, 0, sizeof n->ad);
    n->local_port = 0;
    const char *dd = n->cfg->postgresql.data_dir;
    enum pgnode_datadir kind;
    char eb[512];
    rc = pgnode_inspect_datadir(dd, &kind, eb, sizeof eb);
    if (rc) {
        set_err(n, "adopt: %s", eb);
        return abort_begin(n, rc);
    }
    if (kind != PGNODE_DATADIR_CLUSTER) {
        set_err(n, "adopt: %s holds no PostgreSQL cluster (%s); nothing to adopt", dd,
                pgnode_datadir_name(kind));
        return abort_begin(n, kind == PGNODE_DATADIR_OTHER ? PGW_EREFUSED : PGW_ENOTFOUND);
    }
    struct stat st;
    if (stat(dd, &st) == 0 && st.st_uid != geteuid()) {
        set_err(n, "adopt: data directory %s is owned by uid %d, not by pgwarden's user (uid %d)",
                dd, (int)st.st_uid, (int)geteuid());
        return abort_begin(n, PGW_EREFUSED);
    }
    int dv = pgctl_data_version(n->ctl), bv = pgctl_bin_version(n->ctl);
    if (dv != bv) {
        set_err(n, "adopt: %s is a PostgreSQL %d cluster but postgresql.bin_dir %s holds "
                "PostgreSQL %d", dd, dv, pgctl_bin_dir(n->ctl), bv);
        return abort_begin(n, PGW_EREFUSED);
    }
    char sig[4200];
    snprintf(sig, sizeof sig, "%s/standby.signal", dd);
    if (access(sig, F_OK) == 0) {
        set_err(n, "adopt: %s is a standby (standby.signal); adopt the standalone primary first, "
                "then clone or rejoin the standbys", dd);
        return abort_begin(n, PGW_EREFUSED);
    }
    struct pg_pidfile pf;
    bool running = pg_pidfile_read(dd, &pf, eb, sizeof eb) == PGW_OK && pg_pid_alive(pf.pid);
    n->ad.was_running = running;
    if (running && pf.port > 0 && pf.port != n->cfg->postgresql.listen.port) {
        /* the new port only applies at the next restart: talk to the current one */
        n->local_port = (uint16_t)pf.port;
        log_warn("pg", "adopt: PostgreSQL runs on port %d; the configured port %u applies after a "
                 "restart", pf.port, (unsigned)n->cfg->postgresql.listen.port);
    }
    struct pgconf_role primary = {0};
    struct pgconf_write_result res;
    /* keep the operator's pg_hba.conf unless the configuration gives one */
    bool hba = n->cfg->postgresql.pg_hba.n > 0 || (n->dcs && n->dcs->pg_hba.n > 0);
    rc = write_files(n, &primary, false, hba, &res);
    if (rc)
        return abort_begin(n, rc);
    if (running) {
        n->step = S_RELOAD;
        rc = ctl_rc(n, pgctl_reload(n->ctl, ctl_done, n));
    } else {
        n->ad.started = true;
        rc = do_start(n);
    }
    if (rc)
        return abort_begin(n, rc);
    return PGW_OK;
}

/* ---- the state machine ---------------------------------------------------------------- */

static void advance(struct pgnode *n, int status)
{
    int rc = status;
    enum step done = n->step;
    n->step = S_NONE;
    switch (n->flow) {
    case F_BOOTSTRAP:
        if (rc)
            break;
        if (done == S_INITDB) {
            struct pgconf_role primary = {0};
            struct pgconf_write_result res;
            rc = write_files(n, &primary, true, true, &res);
            if (!rc)
                rc = do_start(n);
        } else if (done == S_START) {
            rc = do_roles(n);
        } else if (done == S_ROLES) {
            log_info("pg", "bootstrap of %s done", n->cfg->postgresql.data_dir);
            finish(n, PGW_OK);
            return;
        }
        break;
    case F_CLONE:
        if (rc)
            break;
        if (done == S_BASEBACKUP) {
            rc = configure_standby(n, NULL);
            if (!rc)
                rc = do_start(n);
        } else if (done == S_START) {
            finish(n, PGW_OK);
            return;
        }
        break;
    case F_DEMOTE:
        if (rc)
            break;
        if (done == S_STOP) {
            rc = configure_standby(n, NULL);
            if (!rc)
                rc = do_start(n);
        } else if (done == S_START) {
            finish(n, PGW_OK);
            return;
        }
        break;
    case F_PROMOTE:
        if (rc)
            break;
        if (done == S_PROMOTE) {
            /* the end-of-recovery checkpoint is only requested by a
             * promotion: force it so that the control file (which
             * pg_rewind reads on this new primary) shows the new timeline */
            rc = do_sql(n, S_CHECKPOINT, strdup("CHECKPOINT"));
        } else if (done == S_CHECKPOINT) {
            struct pgconf_role primary = {0};
            struct pgconf_write_result res;
            rc = write_files(n, &primary, false, true, &res);
            if (!rc) {
                finish(n, PGW_OK);
                return;
            }
        }
        break;
    case F_ROLES:
    case F_START:
    case F_STOP:
    case F_FOLLOW:
    case F_SLOTS:
        if (!rc) {
            finish(n, PGW_OK);
            return;
        }
        break;
    case F_REWIND_CHECK:
    case F_REJOIN:
        if (rc) {
            if (n->flow == F_REJOIN && done == S_REWIND) {
                char why[PGNODE_ERR_MAX + 32] = "pg_rewind failed: ";
                copy_str(why + strlen(why), PGNODE_ERR_MAX, n->err);
                rc = rejoin_fallback(n, why, n->cfg->postgresql.remove_data_directory_on_rewind_failure);
            }
            break;
        }
        if (done == S_STOP) {
            rc = start_rewind_check(n);
        } else if (done == S_CD1 || done == S_CD2) {
            const struct pg_controldata *cd = pgctl_last_controldata(n->ctl);
            if (!cd_clean(cd) && done == S_CD1) {
                log_info("pg", "%s was not shut down cleanly (\"%s\"): crash recovery first, in "
                         "single-user mode", n->cfg->postgresql.data_dir, cd->state_text);
                n->step = S_RECOVER;
                rc = ctl_rc(n, pgctl_crash_recover(n->ctl, 0, ctl_done, n));
            } else if (!cd_clean(cd)) {
                set_err(n, "%s is still \"%s\" after crash recovery", n->cfg->postgresql.data_dir,
                        cd->state_text);
                rc = PGW_ECONFLICT;
            } else {
                local_from_controldata(n);
                rc = n->local.was_primary ? do_waldump(n) : do_fetch(n);
            }
        } else if (done == S_RECOVER) {
            rc = do_controldata(n, S_CD2);
        } else if (done == S_WALDUMP) {
            rc = do_fetch(n);
        } else if (done == S_FETCH) {
            pgrewind_decide(&n->local, &n->primary, &n->decision);
            log_info("pg", "rewind check against %s:%u: %s (%s)", n->host, (unsigned)n->port,
                     n->decision.verdict == PGREWIND_NEEDED       ? "rewind needed"
                     : n->decision.verdict == PGREWIND_NOT_NEEDED ? "no rewind needed"
                                                                  : "rewind impossible",
                     n->decision.reason);
            if (n->flow == F_REWIND_CHECK) {
                finish(n, PGW_OK);
                return;
            }
            rejoin_decided(n);
            return;
        } else if (done == S_SRC_CHECKPOINT) {
            rc = do_rewind(n);
        } else if (done == S_REWIND) {
            n->rj.rewound = true;
            rc = configure_standby(n, NULL);
            if (!rc)
                rc = do_start(n);
        } else if (done == S_BASEBACKUP) {
            n->rj.recloned = true;
            rc = configure_standby(n, NULL);
            if (!rc)
                rc = do_start(n);
        } else if (done == S_START) {
            finish(n, PGW_OK);
            return;
        }
        break;
    case F_ADOPT:
        if (rc)
            break;
        if (done == S_RELOAD || done == S_START) {
            rc = do_roles(n);
        } else if (done == S_ROLES) {
            rc = do_sql(n, S_ADOPT_INFO,
                        strdup("SELECT pg_is_in_recovery(), (SELECT system_identifier FROM "
                               "pg_control_system())"));
        } else if (done == S_ADOPT_INFO) {
            snprintf(n->ad.detail, sizeof n->ad.detail, "adopted %s (%s, system identifier %llu)",
                     n->cfg->postgresql.data_dir, n->ad.was_running ? "was running" : "started",
                     (unsigned long long)n->ad.system_identifier);
            log_info("pg", "%s", n->ad.detail);
            finish(n, PGW_OK);
            return;
        }
        break;
    case F_NONE:
    default:
        return;
    }
    if (rc)
        finish(n, rc);
}
