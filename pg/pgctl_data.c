/* Operations that create or rewrite a data directory (see pgctl.h):
 * initdb, pg_basebackup, single-user crash recovery, pg_rewind.
 *
 * Happy paths:
 *  initdb:     pwfile (0600, mkstemp) -> initdb -> pwfile removed.
 *  basebackup: pg_basebackup -> ok | cleanup of what we created -> pause ->
 *              next attempt (bounded).
 *  rewind:     controldata -> [crash recovery -> controldata] -> pg_rewind.
 * Failure modes: exit != 0 (PGW_ECHILD with the program's last lines),
 * deadline (PGW_ETIMEDOUT), a prerequisite missing (PGW_EREFUSED: no
 * wal_log_hints nor checksums; PGW_ECONFLICT: running, not empty). */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "pg/pgctl_internal.h"

/* ---- initdb --------------------------------------------------------------- */

static void initdb_done(struct proc *p, const struct proc_result *r, void *ctx)
{
    (void)p;
    struct pgctl *c = ctx;
    c->proc = NULL;
    if (r->status != PGW_OK)
        pgctl__child_failed(c, "initdb", r);
    else
        log_info("pg", "initdb: initialised %s", c->data_dir);
    pgctl__op_done(c, r->status);
}

static bool option_forbidden(const char *name, const char *const *list)
{
    for (size_t i = 0; list[i]; i++)
        if (strcmp(list[i], name) == 0)
            return true;
    return false;
}

/* "name" / "name=value" -> "--name" / "--name=value"; NULL if forbidden. */
static char *long_option(const char *opt, const char *const *forbidden, const char *what,
                         struct pgctl *c)
{
    while (*opt == '-')
        opt++;
    size_t nl = strcspn(opt, "=");
    char name[64];
    if (nl == 0 || nl >= sizeof name) {
        pgctl__set_err(c, "%s: bad option \"%s\"", what, opt);
        return NULL;
    }
    memcpy(name, opt, nl);
    name[nl] = '\0';
    for (size_t i = 0; i < nl; i++) {
        char ch = name[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-' || ch == '_')) {
            pgctl__set_err(c, "%s: bad option name \"%s\"", what, name);
            return NULL;
        }
    }
    if (option_forbidden(name, forbidden)) {
        pgctl__set_err(c, "%s: option \"%s\" is not allowed (pgwarden sets it)", what, name);
        return NULL;
    }
    size_t n = strlen(opt) + 3;
    char *s = malloc(n);
    if (!s) {
        pgctl__set_err(c, "out of memory");
        return NULL;
    }
    snprintf(s, n, "--%s", opt);
    return s;
}

int pgctl_initdb(struct pgctl *c, const struct pgctl_initdb_args *a, pgctl_done_cb cb, void *ctx)
{
    static const char *const forbidden[] = {"pgdata", "nosync", "no-sync", "pwfile", "sync-only",
                                            "version", "username", "pwprompt", "D", "U", NULL};
    int rc = pgctl__begin(c, OP_INITDB, cb, ctx, a->timeout_ms ? a->timeout_ms : 300000);
    if (rc)
        return rc;
    size_t nopt = 0;
    while (a->options && a->options[nopt])
        nopt++;
    char **argv = calloc(nopt + 8, sizeof *argv);
    char **owned = calloc(nopt + 1, sizeof *owned);
    if (!argv || !owned) {
        free(argv);
        free(owned);
        pgctl__set_err(c, "out of memory");
        return pgctl__abort_begin(c, PGW_ENOMEM);
    }
    size_t k = 1;
    argv[k++] = "-D";
    argv[k++] = c->data_dir;
    char user[300] = "";
    if (a->superuser && *a->superuser) {
        snprintf(user, sizeof user, "--username=%s", a->superuser);
        argv[k++] = user;
    }
    char pwopt[300];
    rc = PGW_OK;
    if (a->password) {
        const char *tmp = getenv("TMPDIR");
        snprintf(c->pwfile, sizeof c->pwfile, "%s/pgwarden-pwfile-XXXXXX", tmp && *tmp ? tmp : "/tmp");
        int fd = mkstemp(c->pwfile);
        if (fd < 0) {
            pgctl__set_err(c, "initdb: cannot create a password file in %s: %s", tmp && *tmp ? tmp : "/tmp",
                    strerror(errno));
            c->pwfile[0] = '\0';
            rc = PGW_EIO;
        } else {
            size_t pl = strlen(a->password);
            bool ok = fchmod(fd, 0600) == 0 && write(fd, a->password, pl) == (ssize_t)pl &&
                      write(fd, "\n", 1) == 1;
            close(fd);
            if (!ok) {
                pgctl__set_err(c, "initdb: cannot write the password file: %s", strerror(errno));
                rc = PGW_EIO;
            }
            snprintf(pwopt, sizeof pwopt, "--pwfile=%s", c->pwfile);
            argv[k++] = pwopt;
        }
    }
    size_t no = 0;
    for (size_t i = 0; i < nopt && rc == PGW_OK; i++) {
        char *o = long_option(a->options[i], forbidden, "bootstrap.initdb", c);
        if (!o) {
            rc = PGW_EINVAL;
            break;
        }
        owned[no++] = o;
        argv[k++] = o;
    }
    argv[k] = NULL;
    if (rc == PGW_OK)
        rc = pgctl__run(c, "initdb", argv, c->op_timeout, true, 0, false, initdb_done);
    for (size_t i = 0; i < no; i++)
        free(owned[i]);
    free(owned);
    free(argv);
    if (rc)
        return pgctl__abort_begin(c, rc);
    return PGW_OK;
}

/* ---- basebackup ----------------------------------------------------------- */


static void bb_clean_done(struct proc *p, const struct proc_result *r, void *ctx)
{
    (void)p;
    struct pgctl *c = ctx;
    c->proc = NULL;
    if (r->status != PGW_OK)
        log_warn("pg", "could not clean up %s after a failed pg_basebackup", c->data_dir);
    if (c->attempts_left == 0) {
        pgctl__op_done(c, PGW_ECHILD);
        return;
    }
    log_info("pg", "pg_basebackup: retrying in %u ms (%u attempt(s) left)",
             (unsigned)c->retry_pause_ms, c->attempts_left);
    c->step = ST_BB_PAUSE;
    uv_timer_start(&c->timer, pgctl__on_timer, c->retry_pause_ms, 0);
}

/* Remove only what this run created: the directory if pg_basebackup made
 * it, else (it existed empty) its contents. Done by a child: it can be big. */
static void bb_cleanup(struct pgctl *c)
{
    c->step = ST_BB_CLEAN;
    int rc;
    struct proc_spec spec;
    memset(&spec, 0, sizeof spec);
    char eb[256];
    if (c->bb_created_dir) {
        char *argv[] = {"rm", "-rf", "--one-file-system", "--", c->data_dir, NULL};
        spec = (struct proc_spec){.name = "rm", .file = "/bin/rm", .argv = argv, .timeout_ms = 600000};
        rc = proc_spawn(c->loop, &spec, bb_clean_done, c, &c->proc, eb, sizeof eb);
    } else {
        char *argv[] = {"find", c->data_dir, "-mindepth", "1", "-delete", NULL};
        spec = (struct proc_spec){.name = "find", .file = "/usr/bin/find", .argv = argv,
                                  .timeout_ms = 600000};
        rc = proc_spawn(c->loop, &spec, bb_clean_done, c, &c->proc, eb, sizeof eb);
    }
    if (rc != PGW_OK) {
        log_warn("pg", "cleanup after pg_basebackup: %s", eb);
        c->proc = NULL;
        if (c->attempts_left == 0) {
            pgctl__op_done(c, PGW_ECHILD);
            return;
        }
        c->step = ST_BB_PAUSE;
        uv_timer_start(&c->timer, pgctl__on_timer, c->retry_pause_ms, 0);
    }
}

static void bb_done(struct proc *p, const struct proc_result *r, void *ctx)
{
    (void)p;
    struct pgctl *c = ctx;
    c->proc = NULL;
    if (r->status == PGW_OK) {
        log_info("pg", "pg_basebackup: %s cloned (attempt %u)", c->data_dir, c->attempt);
        pgctl__op_done(c, PGW_OK);
        return;
    }
    char what[64];
    snprintf(what, sizeof what, "pg_basebackup (attempt %u)", c->attempt);
    pgctl__child_failed(c, what, r);
    log_warn("pg", "%s", c->err);
    bb_cleanup(c);
}

/* 0: absent, 1: empty dir, 2: not empty / not a dir, -1 error */
static int dir_state(const char *path)
{
    DIR *d = opendir(path);
    if (!d)
        return errno == ENOENT ? 0 : (errno == ENOTDIR ? 2 : -1);
    struct dirent *e;
    int st = 1;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
            st = 2;
            break;
        }
    }
    closedir(d);
    return st;
}

void pgctl__bb_attempt(struct pgctl *c)
{
    int ds = dir_state(c->data_dir);
    if (ds < 0 || ds == 2) {
        pgctl__set_err(c, "pg_basebackup: data directory %s %s", c->data_dir,
                ds < 0 ? "cannot be read" : "is not empty");
        pgctl__op_done(c, ds < 0 ? PGW_EIO : PGW_ECONFLICT);
        return;
    }
    c->bb_created_dir = ds == 0;
    c->attempt++;
    c->attempts_left--;
    size_t nopt = 0;
    while (c->bb_opts && c->bb_opts[nopt])
        nopt++;
    char **argv = calloc(nopt + 12, sizeof *argv);
    if (!argv) {
        pgctl__set_err(c, "out of memory");
        pgctl__op_done(c, PGW_ENOMEM);
        return;
    }
    size_t k = 1;
    char dopt[4200], conn[4200];
    snprintf(dopt, sizeof dopt, "--pgdata=%s", c->data_dir);
    snprintf(conn, sizeof conn, "--dbname=%s", c->conninfo);
    argv[k++] = dopt;
    argv[k++] = "--wal-method=stream";
    bool has_ckpt = false;
    for (size_t i = 0; i < nopt; i++)
        if (strncmp(c->bb_opts[i], "--checkpoint", 12) == 0)
            has_ckpt = true;
    if (!has_ckpt)
        argv[k++] = "--checkpoint=fast";
    argv[k++] = "--progress";
    argv[k++] = "--verbose";
    argv[k++] = conn;
    for (size_t i = 0; i < nopt; i++)
        argv[k++] = c->bb_opts[i];
    argv[k] = NULL;
    c->step = ST_BB_RUN;
    int rc = pgctl__run(c, "pg_basebackup", argv, c->op_timeout, true, 0, false, bb_done);
    free(argv);
    if (rc)
        pgctl__op_done(c, rc);
}

int pgctl_basebackup(struct pgctl *c, const struct pgctl_basebackup_args *a, pgctl_done_cb cb,
                     void *ctx)
{
    static const char *const forbidden[] = {"pgdata", "format", "wal-method", "xlog-method", "gzip",
                                            "version", "dbname", "host", "port", "username",
                                            "password", "compress", "D", "F", "X", "d", "h", "p",
                                            "U", "W", "Z", NULL};
    if (!a || !a->conninfo || !*a->conninfo) {
        pgctl__set_err(c, "pg_basebackup: no source connection given");
        return PGW_EINVAL;
    }
    if (strstr(a->conninfo, "password")) {
        pgctl__set_err(c, "pg_basebackup: the source connection string must not carry a password "
                "(it would show in the process list); the pgpass file is used");
        return PGW_EINVAL;
    }
    int rc = pgctl__begin(c, OP_BASEBACKUP, cb, ctx, a->timeout_ms ? a->timeout_ms : 3600000);
    if (rc)
        return rc;
    size_t nopt = 0;
    while (a->options && a->options[nopt])
        nopt++;
    c->bb_opts = calloc(nopt + 1, sizeof *c->bb_opts);
    c->conninfo = strdup(a->conninfo);
    if (!c->bb_opts || !c->conninfo) {
        pgctl__set_err(c, "out of memory");
        return pgctl__abort_begin(c, PGW_ENOMEM);
    }
    for (size_t i = 0; i < nopt; i++) {
        c->bb_opts[i] = long_option(a->options[i], forbidden, "postgresql.basebackup", c);
        if (!c->bb_opts[i])
            return pgctl__abort_begin(c, PGW_EINVAL);
    }
    int ds = dir_state(c->data_dir);
    if (ds < 0 || ds == 2) {
        pgctl__set_err(c, "pg_basebackup: data directory %s %s", c->data_dir,
                ds < 0 ? "cannot be read" : "is not empty");
        return pgctl__abort_begin(c, ds < 0 ? PGW_EIO : PGW_ECONFLICT);
    }
    c->attempts_left = a->attempts ? a->attempts : 2;
    c->attempt = 0;
    c->retry_pause_ms = a->retry_pause_ms ? a->retry_pause_ms : 5000;
    /* first attempt on the next tick: keeps every outcome asynchronous */
    c->step = ST_BB_PAUSE;
    uv_timer_start(&c->timer, pgctl__on_timer, 0, 0);
    return PGW_OK;
}

/* ---- crash recovery and rewind ------------------------------------------ */

static void rw_step_controldata2(struct proc *p, const struct proc_result *r, void *ctx);
static void rw_run_rewind(struct pgctl *c);

static void single_done(struct proc *p, const struct proc_result *r, void *ctx)
{
    (void)p;
    struct pgctl *c = ctx;
    c->proc = NULL;
    if (r->status != PGW_OK) {
        pgctl__child_failed(c, "postgres --single (crash recovery)", r);
        pgctl__op_done(c, r->status);
        return;
    }
    log_info("pg", "crash recovery of %s done", c->data_dir);
    if (c->op == OP_CRASH_RECOVER) {
        pgctl__op_done(c, PGW_OK);
        return;
    }
    c->step = ST_RW_CD2;
    int rc = pgctl__spawn_controldata(c, rw_step_controldata2);
    if (rc)
        pgctl__op_done(c, rc);
}

/* Single-user mode replays WAL and writes a shutdown checkpoint without
 * ever accepting a connection. It refuses standby mode, so the signal
 * files go: whoever runs this rewrites the role configuration next.
 * archive_command=false keeps it from archiving anything meanwhile. */
static int spawn_single(struct pgctl *c)
{
    static const char *const sigs[] = {"standby.signal", "recovery.signal"};
    for (size_t i = 0; i < 2; i++) {
        char path[4200];
        snprintf(path, sizeof path, "%s/%s", c->data_dir, sigs[i]);
        if (unlink(path) == 0)
            log_info("pg", "removed %s for single-user crash recovery", path);
    }
    char eb[512];
    if (pg_pidfile_clear_stale(c->data_dir, eb, sizeof eb) != PGW_OK) {
        pgctl__set_err(c, "crash recovery: %s", eb);
        return PGW_ECONFLICT;
    }
    log_info("pg", "%s was not shut down cleanly: running single-user crash recovery", c->data_dir);
    char cf[4200];
    if (c->config_file)
        snprintf(cf, sizeof cf, "--config-file=%s", c->config_file);
    /* the database name ends the options */
    char *argv[] = {NULL, "--single", "-D", c->data_dir, "-c", "archive_mode=on",
                    "-c", "archive_command=false", "-c", "hot_standby=off",
                    c->config_file ? cf : "template1", c->config_file ? "template1" : NULL, NULL};
    c->step = ST_RW_SINGLE;
    return pgctl__run(c, "postgres", argv, c->op_timeout, true, 0, false, single_done);
}

int pgctl_crash_recover(struct pgctl *c, uint32_t timeout_ms, pgctl_done_cb cb, void *ctx)
{
    int rc = pgctl__begin(c, OP_CRASH_RECOVER, cb, ctx, timeout_ms ? timeout_ms : 600000);
    if (rc)
        return rc;
    if (pg_postmaster_running(c->data_dir, NULL)) {
        pgctl__set_err(c, "crash recovery of %s: PostgreSQL is running", c->data_dir);
        return pgctl__abort_begin(c, PGW_ECONFLICT);
    }
    rc = spawn_single(c);
    if (rc)
        return pgctl__abort_begin(c, rc);
    return PGW_OK;
}

static bool clean_shutdown(const struct pg_controldata *cd)
{
    return cd->state == PG_CLUSTER_SHUT_DOWN || cd->state == PG_CLUSTER_SHUT_DOWN_RECOVERY;
}

static void rewind_done(struct proc *p, const struct proc_result *r, void *ctx)
{
    (void)p;
    struct pgctl *c = ctx;
    c->proc = NULL;
    if (r->status != PGW_OK)
        pgctl__child_failed(c, "pg_rewind", r);
    else
        log_info("pg", "pg_rewind of %s done", c->data_dir);
    pgctl__op_done(c, r->status);
}

static void rw_run_rewind(struct pgctl *c)
{
    char src[4200], dopt[4200];
    snprintf(src, sizeof src, "--source-server=%s", c->conninfo);
    snprintf(dopt, sizeof dopt, "--target-pgdata=%s", c->data_dir);
    /* pg_rewind runs postgres only for a crash recovery of its own (ours
     * ran first) or restore_command; --config-file exists from version 15 */
    char cf[4200];
    bool with_cf = c->config_file && c->bin_major >= 15;
    if (with_cf)
        snprintf(cf, sizeof cf, "--config-file=%s", c->config_file);
    char *argv[] = {NULL, dopt, src, "--progress", with_cf ? cf : NULL, NULL};
    c->step = ST_RW_RUN;
    int rc = pgctl__run(c, "pg_rewind", argv, pgctl__remaining(c), true, 0, false, rewind_done);
    if (rc)
        pgctl__op_done(c, rc);
}

static void rw_step_controldata2(struct proc *p, const struct proc_result *r, void *ctx)
{
    (void)p;
    struct pgctl *c = ctx;
    c->proc = NULL;
    int rc = pgctl__take_controldata(c, r);
    if (rc) {
        pgctl__op_done(c, rc);
        return;
    }
    if (!clean_shutdown(&c->cd)) {
        pgctl__set_err(c, "pg_rewind: %s still says \"%s\" after crash recovery", c->data_dir,
                c->cd.state_text);
        pgctl__op_done(c, PGW_ECONFLICT);
        return;
    }
    rw_run_rewind(c);
}

static void rw_step_controldata1(struct proc *p, const struct proc_result *r, void *ctx)
{
    (void)p;
    struct pgctl *c = ctx;
    c->proc = NULL;
    int rc = pgctl__take_controldata(c, r);
    if (rc) {
        pgctl__op_done(c, rc);
        return;
    }
    if (!c->cd.wal_log_hints && c->cd.data_checksum_version == 0) {
        pgctl__set_err(c, "pg_rewind impossible on %s: neither wal_log_hints nor data checksums are on",
                c->data_dir);
        pgctl__op_done(c, PGW_EREFUSED);
        return;
    }
    if (clean_shutdown(&c->cd)) {
        rw_run_rewind(c);
        return;
    }
    rc = spawn_single(c);
    if (rc)
        pgctl__op_done(c, rc);
}

int pgctl_rewind(struct pgctl *c, const char *source_conninfo, uint32_t timeout_ms,
                 pgctl_done_cb cb, void *ctx)
{
    if (!source_conninfo || !*source_conninfo) {
        pgctl__set_err(c, "pg_rewind: no source connection given");
        return PGW_EINVAL;
    }
    if (strstr(source_conninfo, "password")) {
        pgctl__set_err(c, "pg_rewind: the source connection string must not carry a password; the "
                "pgpass file is used");
        return PGW_EINVAL;
    }
    int rc = pgctl__begin(c, OP_REWIND, cb, ctx, timeout_ms ? timeout_ms : 3600000);
    if (rc)
        return rc;
    if (pg_postmaster_running(c->data_dir, NULL)) {
        pgctl__set_err(c, "pg_rewind: PostgreSQL is running on %s; stop it first", c->data_dir);
        return pgctl__abort_begin(c, PGW_ECONFLICT);
    }
    if (!(c->conninfo = strdup(source_conninfo))) {
        pgctl__set_err(c, "out of memory");
        return pgctl__abort_begin(c, PGW_ENOMEM);
    }
    c->step = ST_RW_CD1;
    rc = pgctl__spawn_controldata(c, rw_step_controldata1);
    if (rc)
        return pgctl__abort_begin(c, rc);
    return PGW_OK;
}
