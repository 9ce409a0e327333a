/* The local node's composable steps (see pgnode.h for each step's happy
 * path). Every step is a small state machine: `step` says which async
 * primitive (a pgctl operation, an SQL query on a short-lived superuser
 * connection, the primary's timeline fetch, pg_waldump) is running, and
 * advance() moves on when it reports.
 * Failure modes: the first failure ends the step with its message on the
 * node (pgnode_error), naming the step and the cause; nothing is deleted
 * (a data dir to replace is moved aside). */
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
#include "common/mkdirs.h"
#include "pg/pgnode_internal.h"

void pgnode__set_err(struct pgnode *n, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void pgnode__set_err(struct pgnode *n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(n->err, sizeof n->err, fmt, ap);
    va_end(ap);
}

void pgnode__copy_str(char *dst, size_t len, const char *src)
{
    size_t l = strlen(src ? src : "");
    if (l >= len)
        l = len - 1;
    if (l)
        memcpy(dst, src, l);
    dst[l] = '\0';
}

/* Log a step's failure once: pgctl already logged its own messages. */
static void log_once(const struct pgnode *n)
{
    if (strcmp(n->err, pgctl_error(n->ctl)) != 0)
        log_error("pg", "%s", n->err);
}

/* The roles SQL carries passwords: zero it before freeing. */
static void wipe_sql(struct pgnode *n)
{
    if (n->sql) {
        memset(n->sql, 0, strlen(n->sql));
        free(n->sql);
        n->sql = NULL;
    }
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
    char cfile[4200];
    struct pgctl_opts o = {
        .bin_dir = pg->bin_dir && *pg->bin_dir ? pg->bin_dir : "/usr/lib/postgresql/15/bin",
        .data_dir = pg->data_dir,
        .config_file = pgconf_config_file(cfg, cfile, sizeof cfile),
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

int pgnode_set_sync_names(struct pgnode *n, const char *names)
{
    char *copy = NULL;
    if (names != NULL && (copy = strdup(names)) == NULL)
        return PGW_ENOMEM;
    free(n->sync_names);
    n->sync_names = copy;
    return PGW_OK;
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
    pgnode__slots_abandon(n);
    pgctl_destroy(n->ctl);
    wipe_sql(n);
    free(n->sync_names);
    n->sync_names = NULL;
    uv_timer_stop(&n->timer);
    uv_close((uv_handle_t *)&n->timer, on_timer_closed);
}

bool pgnode_busy(const struct pgnode *n) { return n->flow != F_NONE; }

void pgnode_set_standby_leader(struct pgnode *n, bool on)
{
    n->standby_leader = on;
}
const char *pgnode_error(const struct pgnode *n) { return n->err; }
struct pgctl *pgnode_ctl(struct pgnode *n) { return n->ctl; }

int pgnode__pg_major(const struct pgnode *n)
{
    int v = pgctl_data_version(n->ctl);
    return v ? v : pgctl_bin_version(n->ctl);
}

bool pgnode__use_slots(const struct pgnode *n)
{
    return n->dcs ? n->dcs->use_slots : true;
}

bool pgnode__use_rewind(const struct pgnode *n)
{
    if (n->cfg->postgresql.use_pg_rewind_set)
        return n->cfg->postgresql.use_pg_rewind;
    return n->dcs ? n->dcs->use_pg_rewind : true;
}

/* Patroni's effective configuration: the node's postgresql.* when given,
 * else the cluster-wide (dynamic) value. */
bool pgnode__remove_on_rewind_failure(const struct pgnode *n)
{
    if (n->cfg->postgresql.remove_on_rewind_failure_set)
        return n->cfg->postgresql.remove_data_directory_on_rewind_failure;
    return n->dcs != NULL && n->dcs->remove_data_directory_on_rewind_failure;
}

bool pgnode__remove_on_diverged(const struct pgnode *n)
{
    if (n->cfg->postgresql.remove_on_diverged_set)
        return n->cfg->postgresql.remove_data_directory_on_diverged_timelines;
    return n->dcs != NULL && n->dcs->remove_data_directory_on_diverged_timelines;
}

int pgnode_local_conn_params(const struct pgnode *n, struct pgconn_params *out)
{
    int rc = pgconf_local_conn_params(n->cfg, n->dcs, "postgres", out);
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
        pgnode__copy_str(n->host, sizeof n->host, host);
    n->port = port;
    n->slot[0] = '\0';
    if (pgnode__use_slots(n))
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

int pgnode_read_sysid(const char *data_dir, uint64_t *out)
{
    /* ControlFileData starts with the uint64 system identifier, in the
     * machine's byte order, in every PostgreSQL version since 8.x. */
    char path[4200];
    snprintf(path, sizeof path, "%s/global/pg_control", data_dir);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? PGW_ENOTFOUND : PGW_EIO;
    uint64_t v = 0;
    ssize_t n = read(fd, &v, sizeof v);
    close(fd);
    if (n != (ssize_t)sizeof v || v == 0)
        return PGW_EIO;
    *out = v;
    return PGW_OK;
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
    pgnode__copy_str(parent, sizeof parent, dirname(copy));
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
        pgnode__copy_str(newpath, newlen, target);
    return PGW_OK;
}

/* ---- flow plumbing --------------------------------------------------------- */

void pgnode__finish(struct pgnode *n, int status)
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
    wipe_sql(n);
    n->sql = NULL;
    if (n->conn) {
        pgconn_destroy(n->conn);
        n->conn = NULL;
    }
    if (status == PGW_OK)
        n->err[0] = '\0';
    else
        log_once(n);
    switch (f) {
    case F_REWIND_CHECK:
        if (rccb)
            rccb(n, status, status == PGW_OK ? &n->decision : NULL, ctx);
        break;
    case F_REJOIN:
        if (status != PGW_OK && !n->rj.reason[0])
            pgnode__copy_str(n->rj.reason, sizeof n->rj.reason, n->err);
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

int pgnode__begin(struct pgnode *n, enum flow f, void *ctx)
{
    if (n->flow != F_NONE) {
        pgnode__set_err(n, "another step is running on %s", n->cfg->postgresql.data_dir);
        return PGW_EBUSY;
    }
    n->flow = f;
    n->ctx = ctx;
    n->err[0] = '\0';
    return PGW_OK;
}

int pgnode__abort_begin(struct pgnode *n, int rc)
{
    n->flow = F_NONE;
    n->step = S_NONE;
    n->cb = NULL;
    n->rccb = NULL;
    n->rjcb = NULL;
    n->adcb = NULL;
    log_once(n);
    return rc;
}

void pgnode__ctl_done(struct pgctl *ctl, int status, void *ctx)
{
    struct pgnode *n = ctx;
    if (status != PGW_OK)
        pgnode__copy_str(n->err, sizeof n->err, pgctl_error(ctl));
    pgnode__advance(n, status);
}

/* Start a pgctl step; on a synchronous failure the message is copied. */
int pgnode__ctl_rc(struct pgnode *n, int rc)
{
    if (rc != PGW_OK)
        pgnode__copy_str(n->err, sizeof n->err, pgctl_error(n->ctl));
    return rc;
}

int pgnode__do_start(struct pgnode *n)
{
    char eb[512];
    if (pgnode__sanitize_auto_conf(n, false, eb, sizeof eb) != PGW_OK)
        log_warn("pg", "%s: starting anyway", eb); /* an unreadable auto.conf: PostgreSQL says */
    n->step = S_START;
    return pgnode__ctl_rc(n, pgctl_start(n->ctl, NULL, 0, pgnode__ctl_done, n));
}

int pgnode__do_stop(struct pgnode *n, enum pgctl_stop_mode mode)
{
    n->step = S_STOP;
    return pgnode__ctl_rc(n, pgctl_stop(n->ctl, mode, 0, pgnode__ctl_done, n));
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
        pgnode__advance(n, PGW_OK);
        return;
    }
    if (r->status != PGW_OK) {
        pgnode__set_err(n, "SQL on %s failed: %s", n->step == S_SRC_CHECKPOINT ? "the primary" : "the local instance",
                r->error);
        pgnode__advance(n, r->status);
        return;
    }
    if (n->step == S_RECOVERY_WAIT && r->nresults > 0 && PQntuples(r->results[r->nresults - 1]) == 1)
        n->in_recovery = PQgetvalue(r->results[r->nresults - 1], 0, 0)[0] == 't';
    if (n->step == S_ADOPT_INFO && r->nresults > 0 && PQntuples(r->results[r->nresults - 1]) == 1) {
        PGresult *res = r->results[r->nresults - 1];
        n->ad.in_recovery = PQgetvalue(res, 0, 0)[0] == 't';
        n->ad.system_identifier = strtoull(PQgetvalue(res, 0, 1), NULL, 10);
    }
    pgnode__advance(n, PGW_OK);
}

/* The steps whose SQL holds passwords (CREATE / ALTER ROLE ... PASSWORD). */
static bool step_has_passwords(enum step step)
{
    return step == S_ROLES || step == S_USERS;
}

/* Statement logging off from the start of the session. A SET at the head
 * of the query string is too late for log_statement: PostgreSQL logs a
 * simple query's whole text (the passwords after the SET included) before
 * it runs any of it, when log_statement is ddl, mod or all. Superusers may
 * set these at connection start. log_min_error_statement 'log' keeps a
 * failing statement out of the log too (ERROR ranks below LOG there), as
 * Patroni's create_or_update_role does. */
#define QUIET_SESSION_OPTIONS                                                                     \
    "-c log_statement=none -c log_min_duration_statement=-1 -c log_min_error_statement=log"

/* Run sql (taken over) on a short-lived superuser connection to the local
 * instance, or to host:port when host is not NULL. */
int pgnode__do_sql_at(struct pgnode *n, enum step step, char *sql, const char *host, uint16_t port)
{
    wipe_sql(n);
    n->sql = sql;
    if (!sql) {
        pgnode__set_err(n, "out of memory");
        return PGW_ENOMEM;
    }
    n->step = step;
    bool quiet = step_has_passwords(step);
    if (n->conn && (host != NULL || n->conn_remote || quiet != n->conn_quiet)) {
        /* never reuse a connection across targets, nor across logging modes */
        pgconn_destroy(n->conn);
        n->conn = NULL;
    }
    n->conn_remote = host != NULL;
    if (!n->conn) {
        struct pgconn_params p;
        int rc = host ? pgconf_conn_params(n->cfg, PGCONF_SUPERUSER, host, port, "postgres", false, &p)
                      : pgnode_local_conn_params(n, &p);
        if (rc == PGW_OK && quiet && (rc = pgconn_params_set(&p, "options", QUIET_SESSION_OPTIONS)))
            pgconn_params_free(&p);
        n->conn_quiet = quiet;
        if (rc) {
            pgnode__set_err(n, "out of memory");
            return rc;
        }
        struct pgconn_opts o = {.name = "admin", .connect_timeout_ms = 10000,
                                .query_timeout_ms = 30000};
        rc = pgconn_new(n->loop, &p, &o, &n->conn);
        pgconn_params_free(&p);
        if (rc) {
            pgnode__set_err(n, "out of memory");
            return rc;
        }
    }
    int rc = pgconn_query(n->conn, n->sql, 30000, on_sql, n);
    if (rc)
        pgnode__set_err(n, "cannot send SQL: %s", pgw_strerror(rc));
    return rc;
}

int pgnode__do_sql(struct pgnode *n, enum step step, char *sql)
{
    return pgnode__do_sql_at(n, step, sql, NULL, 0);
}

int pgnode__sanitize_auto_conf(struct pgnode *n, bool recovery, char *eb, size_t eblen)
{
    char removed[512];
    int rc = pgconf_sanitize_auto_conf(n->cfg->postgresql.data_dir, recovery, removed,
                                       sizeof removed, eb, eblen);
    if (rc == PGW_OK && removed[0])
        log_warn("pg", "removed %s from %s/postgresql.auto.conf (ALTER SYSTEM or a restore tool "
                 "wrote them): pgwarden manages the recovery settings, and the parameters that "
                 "must be equal on all nodes are set cluster-wide (pgwarden ctl edit-config), "
                 "as Patroni's command line enforces", removed, n->cfg->postgresql.data_dir);
    return rc;
}

int pgnode_sanitize_auto_conf(struct pgnode *n)
{
    char eb[512];
    int rc = pgnode__sanitize_auto_conf(n, true, eb, sizeof eb);
    if (rc != PGW_OK)
        pgnode__set_err(n, "%s", eb);
    return rc;
}

int pgnode__write_files(struct pgnode *n, const struct pgconf_role *role, bool bootstrap_hba,
                       bool hba, struct pgconf_write_result *res)
{
    char eb[PGCONF_ERR_MAX];
    int rc = PGW_OK;
    /* a config_dir apart from the data directory (Debian's
     * /etc/postgresql/<version>/<cluster>) is made when missing: a replica
     * cloned with pg_basebackup has none yet (Debian's pg_clonecluster
     * would make it) */
    if (strcmp(pgconf_config_dir(n->cfg), n->cfg->postgresql.data_dir) != 0)
        rc = mkdirs(pgconf_config_dir(n->cfg), 0700, "postgresql.config_dir", eb, sizeof eb);
    if (rc == PGW_OK && n->cfg->postgresql.pgpass && *n->cfg->postgresql.pgpass)
        rc = pgconf_write_pgpass(n->cfg, eb, sizeof eb);
    if (rc == PGW_OK && hba)
        rc = pgconf_write_hba(n->cfg, n->dcs, bootstrap_hba, eb, sizeof eb);
    if (rc == PGW_OK && !bootstrap_hba)
        rc = pgnode__sanitize_auto_conf(n, true, eb, sizeof eb);
    if (rc == PGW_OK) {
        struct pgconf_input in = {.cfg = n->cfg, .dcs = n->dcs, .pg_major = pgnode__pg_major(n),
                                  .role = *role, .sync_standby_names = n->sync_names};
        if (n->standby_leader && in.role.standby)
            in.role.standby_leader = true;
        rc = pgconf_write(&in, res, eb, sizeof eb);
    }
    if (rc)
        pgnode__set_err(n, "configuration of %s: %s", n->cfg->postgresql.data_dir, eb);
    return rc;
}

int pgnode_configure(struct pgnode *n, const struct pgconf_role *role,
                     struct pgconf_write_result *res)
{
    return pgnode__write_files(n, role, false, true, res);
}

/* ---- start / stop ---------------------------------------------------------------- */

int pgnode_start(struct pgnode *n, pgnode_done_cb cb, void *ctx)
{
    int rc = pgnode__begin(n, F_START, ctx);
    if (rc)
        return rc;
    n->cb = cb;
    rc = pgnode__do_start(n);
    if (rc)
        return pgnode__abort_begin(n, rc);
    return PGW_OK;
}

int pgnode_stop(struct pgnode *n, enum pgctl_stop_mode mode, pgnode_done_cb cb, void *ctx)
{
    int rc = pgnode__begin(n, F_STOP, ctx);
    if (rc)
        return rc;
    n->cb = cb;
    rc = pgnode__do_stop(n, mode);
    if (rc)
        return pgnode__abort_begin(n, rc);
    return PGW_OK;
}

/* ---- clone (the flow is in pgnode_methods.c) ---------------------------------------- */

int pgnode__do_basebackup(struct pgnode *n)
{
    struct pgconn_params p;
    int rc = pgconf_conn_params(n->cfg, PGCONF_REPLICATION, n->host, n->port, NULL, false, &p);
    if (rc) {
        pgnode__set_err(n, "out of memory");
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
        pgnode__set_err(n, "clone: source connection string too long");
        return rc;
    }
    char eb[512];
    if (n->cfg->postgresql.pgpass && *n->cfg->postgresql.pgpass &&
        pgconf_write_pgpass(n->cfg, eb, sizeof eb) != PGW_OK) {
        pgnode__set_err(n, "clone: %s", eb);
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
    return pgnode__ctl_rc(n, pgctl_basebackup(n->ctl, &a, pgnode__ctl_done, n));
}

/* ---- follow / demote / promote ------------------------------------------------------ */

int pgnode__configure_standby(struct pgnode *n, bool *changed)
{
    struct pgconf_role role = pgnode_standby_role(n, n->host, n->port);
    struct pgconf_write_result res;
    int rc = pgnode__write_files(n, &role, false, true, &res);
    if (changed)
        *changed = res.changed;
    return rc;
}

int pgnode_follow(struct pgnode *n, const char *host, uint16_t port, pgnode_done_cb cb, void *ctx)
{
    if (!host || !*host || !port) {
        pgnode__set_err(n, "follow: the primary's host and port are required");
        return PGW_EINVAL;
    }
    int rc = pgnode__begin(n, F_FOLLOW, ctx);
    if (rc)
        return rc;
    n->cb = cb;
    pgnode__copy_str(n->host, sizeof n->host, host);
    n->port = port;
    rc = pgnode__configure_standby(n, NULL);
    if (rc)
        return pgnode__abort_begin(n, rc);
    if (pg_postmaster_running(n->cfg->postgresql.data_dir, NULL)) {
        /* primary_conninfo and primary_slot_name are reloadable since PG13 */
        n->step = S_RELOAD;
        rc = pgnode__ctl_rc(n, pgctl_reload(n->ctl, pgnode__ctl_done, n));
    } else {
        rc = pgnode__do_start(n);
    }
    if (rc)
        return pgnode__abort_begin(n, rc);
    return PGW_OK;
}

int pgnode_demote(struct pgnode *n, enum pgctl_stop_mode mode, const char *host, uint16_t port,
                  pgnode_done_cb cb, void *ctx)
{
    if (!host || !*host || !port) {
        pgnode__set_err(n, "demote: the new primary's host and port are required");
        return PGW_EINVAL;
    }
    int rc = pgnode__begin(n, F_DEMOTE, ctx);
    if (rc)
        return rc;
    n->cb = cb;
    pgnode__copy_str(n->host, sizeof n->host, host);
    n->port = port;
    rc = pgnode__do_stop(n, mode);
    if (rc)
        return pgnode__abort_begin(n, rc);
    return PGW_OK;
}

int pgnode_promote(struct pgnode *n, pgnode_done_cb cb, void *ctx)
{
    int rc = pgnode__begin(n, F_PROMOTE, ctx);
    if (rc)
        return rc;
    n->cb = cb;
    n->step = S_PROMOTE;
    rc = pgnode__ctl_rc(n, pgctl_promote(n->ctl, 0, pgnode__ctl_done, n));
    if (rc)
        return pgnode__abort_begin(n, rc);
    return PGW_OK;
}

int pgnode_nudge_wal(struct pgnode *n, pgnode_done_cb cb, void *ctx)
{
    int rc = pgnode__begin(n, F_NUDGE, ctx);
    if (rc)
        return rc;
    n->cb = cb;
    rc = pgnode__do_sql(n, S_NUDGE,
                        strdup("BEGIN; SET LOCAL synchronous_commit TO local; "
                               "SELECT txid_current(); COMMIT"));
    if (rc)
        return pgnode__abort_begin(n, rc);
    return PGW_OK;
}

/* ---- adopt ----------------------------------------------------------------------------- */

int pgnode_adopt(struct pgnode *n, pgnode_adopt_cb cb, void *ctx)
{
    int rc = pgnode__begin(n, F_ADOPT, ctx);
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
        pgnode__set_err(n, "adopt: %s", eb);
        return pgnode__abort_begin(n, rc);
    }
    if (kind != PGNODE_DATADIR_CLUSTER) {
        pgnode__set_err(n, "adopt: %s holds no PostgreSQL cluster (%s); nothing to adopt", dd,
                pgnode_datadir_name(kind));
        return pgnode__abort_begin(n, kind == PGNODE_DATADIR_OTHER ? PGW_EREFUSED : PGW_ENOTFOUND);
    }
    struct stat st;
    if (stat(dd, &st) == 0 && st.st_uid != geteuid()) {
        pgnode__set_err(n, "adopt: data directory %s is owned by uid %d, not by pgwarden's user (uid %d)",
                dd, (int)st.st_uid, (int)geteuid());
        return pgnode__abort_begin(n, PGW_EREFUSED);
    }
    int dv = pgctl_data_version(n->ctl), bv = pgctl_bin_version(n->ctl);
    if (dv != bv) {
        pgnode__set_err(n, "adopt: %s is a PostgreSQL %d cluster but postgresql.bin_dir %s holds "
                "PostgreSQL %d", dd, dv, pgctl_bin_dir(n->ctl), bv);
        return pgnode__abort_begin(n, PGW_EREFUSED);
    }
    char sig[4200];
    snprintf(sig, sizeof sig, "%s/standby.signal", dd);
    if (access(sig, F_OK) == 0) {
        pgnode__set_err(n, "adopt: %s is a standby (standby.signal); adopt the standalone primary first, "
                "then clone or rejoin the standbys", dd);
        return pgnode__abort_begin(n, PGW_EREFUSED);
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
    rc = pgnode__write_files(n, &primary, false, hba, &res);
    if (rc)
        return pgnode__abort_begin(n, rc);
    if (running) {
        n->step = S_RELOAD;
        rc = pgnode__ctl_rc(n, pgctl_reload(n->ctl, pgnode__ctl_done, n));
    } else {
        n->ad.started = true;
        rc = pgnode__do_start(n);
    }
    if (rc)
        return pgnode__abort_begin(n, rc);
    return PGW_OK;
}

/* ---- the state machine ---------------------------------------------------------------- */

void pgnode__advance(struct pgnode *n, int status)
{
    int rc = status;
    enum step done = n->step;
    n->step = S_NONE;
    switch (n->flow) {
    case F_BOOTSTRAP:
        pgnode__advance_bootstrap(n, done, rc);
        return;
    case F_CLONE:
        pgnode__advance_clone(n, done, rc);
        return;
    case F_DEMOTE:
        if (rc)
            break;
        if (done == S_STOP) {
            rc = pgnode__configure_standby(n, NULL);
            if (!rc)
                rc = pgnode__do_start(n);
        } else if (done == S_START) {
            pgnode__finish(n, PGW_OK);
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
            rc = pgnode__do_sql(n, S_CHECKPOINT, strdup("CHECKPOINT"));
        } else if (done == S_CHECKPOINT) {
            struct pgconf_role primary = {0};
            struct pgconf_write_result res;
            rc = pgnode__write_files(n, &primary, false, true, &res);
            if (!rc) {
                pgnode__finish(n, PGW_OK);
                return;
            }
        }
        break;
    case F_ROLES:
    case F_START:
    case F_STOP:
    case F_FOLLOW:
    case F_SLOTS:
    case F_NUDGE:
        if (!rc) {
            pgnode__finish(n, PGW_OK);
            return;
        }
        break;
    case F_REWIND_CHECK:
    case F_REJOIN:
        pgnode__advance_rejoin(n, done, rc);
        return;
    case F_ADOPT:
        if (rc)
            break;
        if (done == S_RELOAD || done == S_START) {
            rc = pgnode__do_roles_if_missing(n);
        } else if (done == S_ROLES) {
            rc = pgnode__do_sql(n, S_ADOPT_INFO,
                        strdup("SELECT pg_is_in_recovery(), (SELECT system_identifier FROM "
                               "pg_control_system())"));
        } else if (done == S_ADOPT_INFO) {
            snprintf(n->ad.detail, sizeof n->ad.detail, "adopted %s (%s, system identifier %llu)",
                     n->cfg->postgresql.data_dir, n->ad.was_running ? "was running" : "started",
                     (unsigned long long)n->ad.system_identifier);
            log_info("pg", "%s", n->ad.detail);
            pgnode__finish(n, PGW_OK);
            return;
        }
        break;
    case F_NONE:
    default:
        return;
    }
    if (rc)
        pgnode__finish(n, rc);
}
