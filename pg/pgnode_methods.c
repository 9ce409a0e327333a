/* Creating a data directory: the bootstrap of a new cluster (initdb or a
 * custom bootstrap.<method>, then post_bootstrap) and the clone of a
 * replica (postgresql.create_replica_methods in order: basebackup or a
 * custom postgresql.<method>). Patroni's semantics (postgresql/bootstrap.py),
 * with a deadline on every run.
 *
 * Clone, happy path: data dir absent or empty -> for each method in order:
 *   (empty the data dir first unless keep_data; basebackup always needs it
 *   empty) -> run it -> the data dir holds a cluster -> standby
 *   configuration (standby.signal, our postgresql.conf, primary_conninfo
 *   when there is a source) -> start.
 * Clone, failure modes: a method fails, times out or leaves no cluster (the
 * next one is tried, its output tail logged); every method failed (the step
 * fails naming the last error); emptying the data dir fails (the step fails:
 * nothing else may run over leftovers); the start fails (the step fails; the
 * agent starts or rejoins the stopped replica later). The data dir is only
 * emptied of what this step put there: it was absent or empty at the start.
 *
 * Bootstrap, happy path: data dir absent or empty -> initdb | the custom
 * command -> our configuration as a primary (custom: plus the method's
 * recovery_conf and recovery.signal, and a temporary pg_hba.conf trusting
 * the superuser locally, since the restored cluster knows other passwords)
 * -> start -> (custom with recovery: wait until PostgreSQL leaves recovery,
 * i.e. it promoted at its recovery target) -> roles (passwords, replication,
 * rewind) -> post_bootstrap <conninfo> -> the roles of bootstrap.users ->
 * (custom: final configuration and pg_hba.conf, reload). Only this flow
 * creates bootstrap.users: not a clone, not the adoption of existing data.
 * Bootstrap, failure modes: any step fails or overruns its deadline; when
 * PostgreSQL was already started it is stopped (immediate) before the step
 * ends with the first error, so the caller can move the data dir aside. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "pg/pgnode_internal.h"

#define POST_BOOTSTRAP_TIMEOUT_MS (3600u * 1000u)
#define CLEAN_TIMEOUT_MS (3600u * 1000u)
#define RECOVERY_POLL_MS 1000

static const struct cfg_strlist *methods_list(const struct pgnode *n)
{
    return &n->cfg->postgresql.create_replica_methods;
}

static const struct cfg_method *replica_method(const struct pgnode *n, const char *name)
{
    return cfg_method_find(&n->cfg->postgresql.replica_methods, name);
}

bool pgnode_has_no_leader_method(const struct pgnode *n)
{
    const struct cfg_strlist *l = methods_list(n);
    for (size_t i = 0; i < l->n; i++) {
        const struct cfg_method *m = replica_method(n, l->items[i]);
        if (m != NULL && m->no_leader)
            return true;
    }
    return false;
}

/* ---- running a command -------------------------------------------------------- */

static void on_proc_done(struct proc *p, const struct proc_result *r, void *ctx)
{
    (void)p;
    struct pgnode *n = ctx;
    n->proc = NULL;
    const char *what = n->step == S_POST_BOOTSTRAP ? "post_bootstrap"
                       : n->step == S_CLEAN        ? "emptying the data directory"
                                                   : n->method_name;
    if (r->status != PGW_OK) {
        char tail[1200] = "";
        if (r->tail != NULL) {
            /* the last lines, on one line */
            size_t len = strlen(r->tail), o = 0;
            const char *from = len > sizeof tail - 1 ? r->tail + len - (sizeof tail - 1) : r->tail;
            for (; *from && o < sizeof tail - 1; from++)
                tail[o++] = *from == '\n' ? ' ' : *from;
            tail[o] = '\0';
        }
        if (r->status == PGW_ETIMEDOUT)
            pgnode__set_err(n, "%s timed out%s%s", what, tail[0] ? ": " : "", tail);
        else if (r->term_signal != 0)
            pgnode__set_err(n, "%s was killed by signal %d%s%s", what, r->term_signal,
                            tail[0] ? ": " : "", tail);
        else
            pgnode__set_err(n, "%s exited with code %d%s%s", what, r->exit_code,
                            tail[0] ? ": " : "", tail);
    }
    pgnode__advance(n, r->status);
}

/* Spawn argv (argv[0] is looked up in PATH when it has no '/') with
 * PGPASSFILE set; output lines go to the log as "<name>: <line>". */
static int spawn(struct pgnode *n, enum step step, const char *name, char **argv,
                 uint32_t timeout_ms, bool pgoptions)
{
    char pgpass[4200], eb[600];
    char *env[4] = {NULL, NULL, NULL, NULL};
    size_t k = 0;
    const char *pp = n->cfg->postgresql.pgpass;
    if (pp != NULL && *pp) {
        if (pgconf_write_pgpass(n->cfg, eb, sizeof eb) != PGW_OK) {
            pgnode__set_err(n, "%s: %s", name, eb);
            return PGW_EIO;
        }
        snprintf(pgpass, sizeof pgpass, "PGPASSFILE=%s", pp);
        env[k++] = pgpass;
    }
    if (pgoptions) /* Patroni's, for post_bootstrap: no waiting for a standby, no timeout */
        env[k++] = "PGOPTIONS=-c synchronous_commit=local -c statement_timeout=0";
    struct proc_spec spec = {
        .name = name,
        .file = argv[0],
        .argv = argv,
        .env_extra = env,
        .timeout_ms = timeout_ms,
        .log_output = true,
    };
    n->step = step;
    int rc = proc_spawn(n->loop, &spec, on_proc_done, n, &n->proc, eb, sizeof eb);
    if (rc != PGW_OK) {
        n->proc = NULL;
        pgnode__set_err(n, "%s", eb);
    }
    return rc;
}

struct argvbuf {
    struct cfg_strlist words; /* owned strings */
};

static int argv_add(struct argvbuf *a, const char *fmt_key, const char *value)
{
    char buf[8192];
    if (value == NULL)
        snprintf(buf, sizeof buf, "%s", fmt_key);
    else
        snprintf(buf, sizeof buf, "--%s=%s", fmt_key, value);
    char *copy = strdup(buf);
    char **items = copy ? realloc(a->words.items, (a->words.n + 2) * sizeof *items) : NULL;
    if (items == NULL) {
        free(copy);
        return PGW_ENOMEM;
    }
    a->words.items = items;
    a->words.items[a->words.n++] = copy;
    a->words.items[a->words.n] = NULL; /* always NULL-terminated, for argv */
    return PGW_OK;
}

/* The command line of a method: its words, its extra keys as --key=value,
 * then pgwarden's arguments unless no_params (bootstrap.py create_replica /
 * _custom_bootstrap). */
static int method_argv(struct pgnode *n, const struct cfg_method *m, bool bootstrap,
                       const char *connstring, struct argvbuf *a)
{
    char why[200];
    struct cfg_strlist words = {0};
    int rc = cfg_split_command(m->command, &words, why, sizeof why);
    if (rc != PGW_OK) {
        pgnode__set_err(n, "%s.%s.command: %s", bootstrap ? "bootstrap" : "postgresql", m->name,
                        why);
        return rc;
    }
    for (size_t i = 0; rc == PGW_OK && i < words.n; i++)
        rc = argv_add(a, words.items[i], NULL);
    cfg_strlist_free(&words);
    for (size_t i = 0; rc == PGW_OK && i < m->params.n; i++)
        rc = argv_add(a, m->params.items[i].key, m->params.items[i].value);
    if (rc == PGW_OK && !m->no_params) {
        rc = argv_add(a, "scope", n->cfg->scope);
        if (rc == PGW_OK && !bootstrap)
            rc = argv_add(a, "role", "replica");
        if (rc == PGW_OK)
            rc = argv_add(a, "datadir", n->cfg->postgresql.data_dir);
        if (rc == PGW_OK && !bootstrap)
            rc = argv_add(a, "connstring", connstring ? connstring : "");
    }
    if (rc == PGW_ENOMEM)
        pgnode__set_err(n, "out of memory");
    return rc;
}

/* The source's conninfo for a method: the replication user, no password
 * (it is in the pgpass file), as Patroni's format_dsn. "" with no source. */
static int source_conninfo(struct pgnode *n, char *buf, size_t len)
{
    buf[0] = '\0';
    if (n->no_source)
        return PGW_OK;
    struct pgconn_params p;
    int rc = pgconf_conn_params(n->cfg, PGCONF_REPLICATION, n->host, n->port, "postgres", false, &p);
    if (rc == PGW_OK)
        rc = pgconn_params_set(&p, "application_name", n->cfg->name);
    if (rc == PGW_OK)
        rc = pgconn_params_to_conninfo(&p, false, buf, len);
    pgconn_params_free(&p);
    if (rc != PGW_OK)
        pgnode__set_err(n, "the source's connection string is too long");
    return rc;
}

static int run_method(struct pgnode *n, const struct cfg_method *m, bool bootstrap)
{
    char ci[2048];
    struct argvbuf a = {0};
    int rc = bootstrap ? PGW_OK : source_conninfo(n, ci, sizeof ci);
    if (rc == PGW_OK)
        rc = method_argv(n, m, bootstrap, bootstrap ? NULL : ci, &a);
    if (rc == PGW_OK) {
        log_info("pg", "%s: running %s method %s (%s), deadline %u s", n->cfg->postgresql.data_dir,
                 bootstrap ? "bootstrap" : "replica", m->name, a.words.items[0],
                 (unsigned)(m->timeout_ms / 1000));
        rc = spawn(n, S_METHOD, m->name, a.words.items, m->timeout_ms, false);
    }
    cfg_strlist_free(&a.words);
    return rc;
}

/* Remove the contents of the data dir (what this step's earlier methods
 * left there), by a child: it can be big. */
static int clean_datadir(struct pgnode *n)
{
    char *argv[] = {"/usr/bin/find", (char *)n->cfg->postgresql.data_dir, "-mindepth", "1",
                    "-delete", NULL};
    log_info("pg", "emptying %s before the next replica method", n->cfg->postgresql.data_dir);
    return spawn(n, S_CLEAN, "find", argv, CLEAN_TIMEOUT_MS, false);
}

static bool datadir_is(struct pgnode *n, enum pgnode_datadir want)
{
    enum pgnode_datadir kind;
    char eb[512];
    return pgnode_inspect_datadir(n->cfg->postgresql.data_dir, &kind, eb, sizeof eb) == PGW_OK &&
           kind == want;
}

/* PostgreSQL refuses a data dir open to others (0700 or 0750 only); a
 * tool (or mkdir with the usual umask) may leave it 0755. */
static void fix_datadir_mode(struct pgnode *n)
{
    struct stat st;
    const char *dd = n->cfg->postgresql.data_dir;
    if (stat(dd, &st) != 0 || (st.st_mode & 0027) == 0)
        return;
    if (chmod(dd, 0700) == 0)
        log_info("pg", "%s had mode %04o: set to 0700 (PostgreSQL requires it)", dd,
                 (unsigned)(st.st_mode & 07777));
    else
        log_warn("pg", "cannot chmod %s to 0700: %s", dd, strerror(errno));
}

static bool datadir_empty(struct pgnode *n)
{
    enum pgnode_datadir kind;
    char eb[512];
    return pgnode_inspect_datadir(n->cfg->postgresql.data_dir, &kind, eb, sizeof eb) == PGW_OK &&
           (kind == PGNODE_DATADIR_ABSENT || kind == PGNODE_DATADIR_EMPTY);
}

/* ---- clone --------------------------------------------------------------------------- */

/* Start the method at method_idx - 1 (chosen by next_method): empty the
 * data dir first when it must be. */
static int start_method(struct pgnode *n, bool cleaned)
{
    const char *name = n->method_name;
    bool basebackup = strcmp(name, "basebackup") == 0;
    const struct cfg_method *m = basebackup ? NULL : replica_method(n, name);
    if (!basebackup && m == NULL) {
        pgnode__set_err(n, "replica method %s has no section postgresql.%s", name, name);
        return PGW_EINVAL;
    }
    if (!cleaned && !datadir_empty(n) && (basebackup || !m->keep_data))
        return clean_datadir(n);
    if (basebackup)
        return pgnode__do_basebackup(n);
    if (m->keep_data && !datadir_empty(n))
        log_info("pg", "replica method %s: keep_data, leaving %s as it is", name,
                 n->cfg->postgresql.data_dir);
    return run_method(n, m, false);
}

/* Try the next usable method; ends the step when none is left (n->err
 * holds the last failure). */
static void next_method(struct pgnode *n)
{
    const struct cfg_strlist *l = methods_list(n);
    while (n->method_idx < l->n) {
        const char *name = l->items[n->method_idx++];
        const struct cfg_method *m = replica_method(n, name);
        if (n->no_source && (m == NULL || !m->no_leader))
            continue; /* needs a running source */
        n->method_name = name;
        if (start_method(n, false) == PGW_OK)
            return;
        log_warn("pg", "replica method %s could not start: %s", name, n->err);
    }
    char why[PGNODE_ERR_MAX];
    pgnode__copy_str(why, sizeof why, n->err);
    pgnode__set_err(n, "clone of %s: no replica method succeeded (create_replica_methods%s); last "
                    "error: %s", n->cfg->postgresql.data_dir,
                    n->no_source ? ", no_leader ones only: no running primary" : "",
                    why[0] ? why : "none could run");
    pgnode__finish(n, PGW_ECHILD);
}

void pgnode__advance_clone(struct pgnode *n, enum step done, int rc)
{
    switch (done) {
    case S_CLEAN:
        if (rc != PGW_OK) {
            /* nothing else may run over leftovers */
            pgnode__finish(n, rc);
            return;
        }
        rc = start_method(n, true);
        if (rc != PGW_OK) {
            log_warn("pg", "replica method %s could not start: %s", n->method_name, n->err);
            next_method(n);
        }
        return;
    case S_BASEBACKUP:
    case S_METHOD:
        if (rc == PGW_OK && !datadir_is(n, PGNODE_DATADIR_CLUSTER)) {
            pgnode__set_err(n, "%s succeeded but %s holds no PostgreSQL cluster", n->method_name,
                            n->cfg->postgresql.data_dir);
            rc = PGW_EINVAL;
        }
        if (rc != PGW_OK) {
            log_warn("pg", "replica method %s failed: %s; trying the next one", n->method_name,
                     n->err);
            next_method(n);
            return;
        }
        log_info("pg", "replica created in %s by %s", n->cfg->postgresql.data_dir, n->method_name);
        fix_datadir_mode(n);
        /* configured exactly as after basebackup; no source: a standby
         * that replays what it has (and restore_command, if configured) */
        rc = pgnode__configure_standby(n, NULL);
        if (rc == PGW_OK)
            rc = pgnode__do_start(n);
        break;
    case S_START:
        if (rc == PGW_OK) {
            pgnode__finish(n, PGW_OK);
            return;
        }
        break;
    default:
        break;
    }
    if (rc != PGW_OK)
        pgnode__finish(n, rc);
}

static int clone_begin(struct pgnode *n, const char *host, uint16_t port, pgnode_done_cb cb,
                       void *ctx)
{
    int rc = pgnode__begin(n, F_CLONE, ctx);
    if (rc)
        return rc;
    n->cb = cb;
    n->local_port = 0;
    n->no_source = host == NULL;
    pgnode__copy_str(n->host, sizeof n->host, host ? host : "");
    n->port = port;
    n->method_idx = 0;
    n->method_name = NULL;
    enum pgnode_datadir kind;
    char eb[512];
    rc = pgnode_inspect_datadir(n->cfg->postgresql.data_dir, &kind, eb, sizeof eb);
    if (rc) {
        pgnode__set_err(n, "clone: %s", eb);
        return pgnode__abort_begin(n, rc);
    }
    if (kind != PGNODE_DATADIR_ABSENT && kind != PGNODE_DATADIR_EMPTY) {
        pgnode__set_err(n, "clone refused: data directory %s is not empty (%s)",
                        n->cfg->postgresql.data_dir, pgnode_datadir_name(kind));
        return pgnode__abort_begin(n, PGW_EREFUSED);
    }
    /* the first usable method; a synchronous failure of every one is the
     * return value (no callback) */
    const struct cfg_strlist *l = methods_list(n);
    while (n->method_idx < l->n) {
        const char *name = l->items[n->method_idx++];
        const struct cfg_method *m = replica_method(n, name);
        if (n->no_source && (m == NULL || !m->no_leader))
            continue;
        n->method_name = name;
        rc = start_method(n, false);
        if (rc == PGW_OK)
            return PGW_OK;
        log_warn("pg", "replica method %s could not start: %s", name, n->err);
    }
    if (n->method_name == NULL) {
        pgnode__set_err(n, "clone of %s: %s", n->cfg->postgresql.data_dir,
                        n->no_source ? "no running primary and no create_replica_methods entry "
                                       "with no_leader: true"
                                     : "create_replica_methods is empty");
        return pgnode__abort_begin(n, PGW_ENOTFOUND);
    }
    return pgnode__abort_begin(n, rc ? rc : PGW_ECHILD);
}

int pgnode_clone(struct pgnode *n, const char *host, uint16_t port, pgnode_done_cb cb, void *ctx)
{
    if (!host || !*host || !port) {
        pgnode__set_err(n, "clone: the source host and port are required");
        return PGW_EINVAL;
    }
    return clone_begin(n, host, port, cb, ctx);
}

int pgnode_clone_no_source(struct pgnode *n, pgnode_done_cb cb, void *ctx)
{
    return clone_begin(n, NULL, 0, cb, ctx);
}

/* ---- bootstrap ------------------------------------------------------------------------ */

static const struct cfg_method *bootstrap_method(const struct pgnode *n)
{
    const char *m = n->cfg->bootstrap.method;
    if (m == NULL || strcmp(m, "initdb") == 0)
        return NULL;
    return cfg_method_find(&n->cfg->bootstrap.methods, m);
}

static char *read_file(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? strdup("") : NULL;
    struct stat st;
    char *buf = NULL;
    if (fstat(fd, &st) == 0 && st.st_size < 16 * 1024 * 1024 &&
        (buf = malloc((size_t)st.st_size + 1)) != NULL) {
        ssize_t r = read(fd, buf, (size_t)st.st_size);
        if (r < 0) {
            free(buf);
            buf = NULL;
        } else {
            buf[r] = '\0';
        }
    }
    close(fd);
    return buf;
}

/* While a custom bootstrap runs, the restored cluster has its own
 * passwords: let the superuser in locally without one until the roles step
 * set ours (Patroni does the same, config.py replace_pg_hba). */
static int write_trust_hba(struct pgnode *n)
{
    const char *su = n->cfg->postgresql.superuser.username;
    if (su == NULL || strpbrk(su, "\" \t\n") != NULL)
        return PGW_OK;
    char path[4200], head[2048], eb[512];
    snprintf(path, sizeof path, "%s/pg_hba.conf", pgconf_config_dir(n->cfg));
    const char *lh = n->cfg->postgresql.listen.host;
    char extra[300] = "";
    if (lh != NULL && strchr(lh, ',') == NULL && strspn(lh, "0123456789.") == strlen(lh) &&
        strcmp(lh, "0.0.0.0") != 0 && strcmp(lh, "127.0.0.1") != 0)
        snprintf(extra, sizeof extra, "host all \"%s\" %s/32 trust\n", su, lh);
    snprintf(head, sizeof head,
             "# pgwarden: custom bootstrap in progress, replaced when it ends\n"
             "local all \"%s\" trust\nhost all \"%s\" 127.0.0.1/32 trust\n"
             "host all \"%s\" ::1/128 trust\n%s",
             su, su, su, extra);
    char *rest = read_file(path);
    if (rest == NULL) {
        pgnode__set_err(n, "bootstrap: cannot read %s: %s", path, strerror(errno));
        return PGW_EIO;
    }
    size_t hl = strlen(head), rl = strlen(rest);
    char *all = malloc(hl + rl + 1);
    if (all == NULL) {
        free(rest);
        pgnode__set_err(n, "out of memory");
        return PGW_ENOMEM;
    }
    memcpy(all, head, hl);
    memcpy(all + hl, rest, rl + 1);
    free(rest);
    int rc = pgconf_write_file(path, all, hl + rl, 0600, eb, sizeof eb);
    free(all);
    if (rc != PGW_OK)
        pgnode__set_err(n, "bootstrap: %s", eb);
    return rc;
}

/* 'value' for postgresql.conf: ' and \ doubled. */
static void conf_quote(const char *v, char *out, size_t len)
{
    size_t o = 0;
    if (len < 3) {
        out[0] = '\0';
        return;
    }
    out[o++] = '\'';
    for (; *v && o + 3 < len; v++) {
        if (*v == '\'' || *v == '\\')
            out[o++] = *v;
        out[o++] = *v;
    }
    out[o++] = '\'';
    out[o] = '\0';
}

static int touch(struct pgnode *n, const char *name)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", n->cfg->postgresql.data_dir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        pgnode__set_err(n, "bootstrap: cannot create %s: %s", path, strerror(errno));
        return PGW_EIO;
    }
    close(fd);
    return PGW_OK;
}

static bool exists_in_datadir(const struct pgnode *n, const char *name)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", n->cfg->postgresql.data_dir, name);
    return access(path, F_OK) == 0;
}

static void remove_in_datadir(const struct pgnode *n, const char *name)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", n->cfg->postgresql.data_dir, name);
    if (unlink(path) == 0)
        log_info("pg", "bootstrap: removed %s", path);
}

/* After the custom command: our files as a primary, then what recovery
 * needs (bootstrap.py _post_restore and _custom_bootstrap). Sets
 * *recovery when PostgreSQL will start in recovery. */
static int configure_restored(struct pgnode *n, const struct cfg_method *m, bool *recovery)
{
    bool had_standby = exists_in_datadir(n, "standby.signal");
    struct pgconf_role primary = {0};
    struct pgconf_write_result res;
    int rc = pgnode__write_files(n, &primary, true, true, &res);
    if (rc == PGW_OK)
        rc = write_trust_hba(n);
    if (rc != PGW_OK)
        return rc;
    remove_in_datadir(n, "promote"); /* a leftover trigger would promote at once */
    /* the tool's recovery settings in postgresql.auto.conf would override
     * recovery_conf (or start a recovery nobody asked for) */
    if (!m->keep_existing_recovery_conf) {
        char eb[512];
        if ((rc = pgnode__sanitize_auto_conf(n, true, eb, sizeof eb)) != PGW_OK) {
            pgnode__set_err(n, "bootstrap: %s", eb);
            return rc;
        }
    }
    *recovery = false;
    if (m->recovery_conf.n > 0) {
        /* appended to the managed file: the final rewrite drops them */
        char path[4200], line[4096], q[3000], eb[512];
        snprintf(path, sizeof path, "%s/postgresql.conf", pgconf_config_dir(n->cfg));
        char *text = read_file(path);
        if (text == NULL) {
            pgnode__set_err(n, "bootstrap: cannot read %s: %s", path, strerror(errno));
            return PGW_EIO;
        }
        size_t cap = strlen(text) + 256, len = strlen(text);
        for (size_t i = 0; i < m->recovery_conf.n; i++)
            cap += strlen(m->recovery_conf.items[i].key) + 2 * strlen(m->recovery_conf.items[i].value) + 8;
        char *all = realloc(text, cap);
        if (all == NULL) {
            free(text);
            pgnode__set_err(n, "out of memory");
            return PGW_ENOMEM;
        }
        len += (size_t)snprintf(all + len, cap - len, "# recovery of bootstrap method %s\n", m->name);
        for (size_t i = 0; i < m->recovery_conf.n; i++) {
            conf_quote(m->recovery_conf.items[i].value, q, sizeof q);
            snprintf(line, sizeof line, "%s = %s\n", m->recovery_conf.items[i].key, q);
            len += (size_t)snprintf(all + len, cap - len, "%s", line);
        }
        rc = pgconf_write_file(path, all, len, 0600, eb, sizeof eb);
        free(all);
        if (rc != PGW_OK) {
            pgnode__set_err(n, "bootstrap: %s", eb);
            return rc;
        }
        remove_in_datadir(n, "standby.signal");
        rc = touch(n, "recovery.signal");
        *recovery = rc == PGW_OK;
    } else if (m->keep_existing_recovery_conf) {
        if (had_standby && (rc = touch(n, "standby.signal")) != PGW_OK)
            return rc;
        *recovery = had_standby || exists_in_datadir(n, "recovery.signal");
    } else {
        remove_in_datadir(n, "recovery.signal");
        remove_in_datadir(n, "standby.signal");
    }
    return rc;
}

static int start_post_bootstrap(struct pgnode *n)
{
    const char *cmd = n->cfg->bootstrap.post_bootstrap;
    struct pgconn_params p;
    char ci[2048], why[200];
    int rc = pgnode_local_conn_params(n, &p);
    if (rc == PGW_OK)
        rc = pgconn_params_to_conninfo(&p, false, ci, sizeof ci);
    pgconn_params_free(&p);
    if (rc != PGW_OK) {
        pgnode__set_err(n, "post_bootstrap: connection string too long");
        return rc;
    }
    struct cfg_strlist words = {0};
    if ((rc = cfg_split_command(cmd, &words, why, sizeof why)) != PGW_OK) {
        pgnode__set_err(n, "bootstrap.post_bootstrap: %s", why);
        return rc;
    }
    struct argvbuf a = {0};
    for (size_t i = 0; rc == PGW_OK && i < words.n; i++)
        rc = argv_add(&a, words.items[i], NULL);
    cfg_strlist_free(&words);
    if (rc == PGW_OK)
        rc = argv_add(&a, ci, NULL);
    if (rc == PGW_OK) {
        log_info("pg", "bootstrap: running post_bootstrap %s", a.words.items[0]);
        rc = spawn(n, S_POST_BOOTSTRAP, "post_bootstrap", a.words.items, POST_BOOTSTRAP_TIMEOUT_MS,
                   true);
    } else {
        pgnode__set_err(n, "out of memory");
    }
    cfg_strlist_free(&a.words);
    return rc;
}

static void on_poll_timer(uv_timer_t *t)
{
    struct pgnode *n = t->data;
    if (n->flow != F_BOOTSTRAP || n->step != S_RECOVERY_WAIT)
        return;
    int rc = pgnode__do_sql(n, S_RECOVERY_WAIT, strdup("SELECT pg_catalog.pg_is_in_recovery()"));
    if (rc != PGW_OK)
        uv_timer_start(&n->timer, on_poll_timer, RECOVERY_POLL_MS, 0);
}

/* The end of the recovery the custom method asked for: poll until
 * pg_is_in_recovery() is false, the postmaster dies, or the deadline. */
static int recovery_wait(struct pgnode *n, int last_rc)
{
    if (last_rc == PGW_OK && !n->in_recovery) {
        log_info("pg", "bootstrap: recovery ended, %s runs as a primary", n->cfg->postgresql.data_dir);
        return pgnode__do_roles(n);
    }
    if (!pg_postmaster_running(n->cfg->postgresql.data_dir, NULL)) {
        pgnode__set_err(n, "bootstrap: PostgreSQL stopped during the recovery of the restored data "
                        "(see its log in the data directory's parent)");
        return PGW_ECHILD;
    }
    if (uv_now(n->loop) >= n->wait_deadline) {
        pgnode__set_err(n, "bootstrap: still in recovery when the method's deadline passed (does "
                        "recovery_conf end with recovery_target_action: promote?)");
        return PGW_ETIMEDOUT;
    }
    n->step = S_RECOVERY_WAIT;
    uv_timer_start(&n->timer, on_poll_timer, RECOVERY_POLL_MS, 0);
    return PGW_OK;
}

static int final_config(struct pgnode *n)
{
    struct pgconf_role primary = {0};
    struct pgconf_write_result res;
    char eb[512];
    int rc = pgnode__sanitize_auto_conf(n, true, eb, sizeof eb);
    if (rc != PGW_OK) {
        pgnode__set_err(n, "bootstrap: %s", eb);
        return rc;
    }
    rc = pgnode__write_files(n, &primary, true, true, &res);
    if (rc != PGW_OK)
        return rc;
    remove_in_datadir(n, "recovery.signal");
    n->step = S_RELOAD;
    return pgnode__ctl_rc(n, pgctl_reload(n->ctl, pgnode__ctl_done, n));
}

/* A failure: stop PostgreSQL first when this step started it. */
static void bootstrap_fail(struct pgnode *n, int rc)
{
    bool running = n->pg_started || pg_postmaster_running(n->cfg->postgresql.data_dir, NULL);
    if (running && n->step != S_FAIL_STOP) {
        n->fail_rc = rc;
        pgnode__copy_str(n->fail_err, sizeof n->fail_err, n->err);
        n->pg_started = false;
        log_warn("pg", "bootstrap failed (%s): stopping PostgreSQL", n->err);
        n->step = S_FAIL_STOP;
        if (pgctl_stop(n->ctl, PGCTL_STOP_IMMEDIATE, 0, pgnode__ctl_done, n) == PGW_OK)
            return;
        n->step = S_NONE;
    }
    pgnode__finish(n, rc);
}

void pgnode__advance_bootstrap(struct pgnode *n, enum step done, int rc)
{
    const struct cfg_method *m = bootstrap_method(n);
    bool recovery = false;
    if (done == S_FAIL_STOP) {
        if (rc != PGW_OK)
            log_warn("pg", "bootstrap: could not stop PostgreSQL: %s", n->err);
        pgnode__copy_str(n->err, sizeof n->err, n->fail_err);
        pgnode__finish(n, n->fail_rc);
        return;
    }
    if (done == S_RECOVERY_WAIT) {
        rc = recovery_wait(n, rc);
        if (rc != PGW_OK)
            bootstrap_fail(n, rc);
        return;
    }
    if (rc != PGW_OK) {
        bootstrap_fail(n, rc);
        return;
    }
    switch (done) {
    case S_INITDB: {
        struct pgconf_role primary = {0};
        struct pgconf_write_result res;
        rc = pgnode__write_files(n, &primary, true, true, &res);
        if (rc == PGW_OK)
            rc = pgnode__do_start(n);
        break;
    }
    case S_METHOD:
        if (!datadir_is(n, PGNODE_DATADIR_CLUSTER)) {
            pgnode__set_err(n, "bootstrap method %s succeeded but %s holds no PostgreSQL cluster",
                            m ? m->name : "?", n->cfg->postgresql.data_dir);
            rc = PGW_EINVAL;
            break;
        }
        fix_datadir_mode(n);
        rc = configure_restored(n, m, &recovery);
        if (rc == PGW_OK) {
            n->in_recovery = recovery;
            n->wait_deadline = uv_now(n->loop) + m->timeout_ms;
            /* archive recovery may take long before it accepts connections */
            n->step = S_START;
            rc = pgnode__ctl_rc(n, pgctl_start(n->ctl, NULL, m->timeout_ms, pgnode__ctl_done, n));
        }
        break;
    case S_START:
        n->pg_started = true;
        if (m != NULL && n->in_recovery) {
            log_info("pg", "bootstrap: %s started in recovery; waiting until it ends",
                     n->cfg->postgresql.data_dir);
            rc = recovery_wait(n, PGW_EUNAVAIL); /* not asked yet */
        } else {
            rc = pgnode__do_roles(n);
        }
        break;
    case S_ROLES:
        if (n->cfg->bootstrap.post_bootstrap != NULL && *n->cfg->bootstrap.post_bootstrap) {
            rc = start_post_bootstrap(n);
            break;
        }
        /* fall through */
    case S_POST_BOOTSTRAP:
        /* after post_bootstrap, as Patroni (bootstrap.py post_bootstrap) */
        if (pgnode__has_users(n)) {
            rc = pgnode__do_users(n);
            break;
        }
        /* fall through */
    case S_USERS:
        if (m != NULL) {
            rc = final_config(n);
            break;
        }
        /* fall through */
    case S_RELOAD:
        n->pg_started = false;
        log_info("pg", "bootstrap of %s done", n->cfg->postgresql.data_dir);
        pgnode__finish(n, PGW_OK);
        return;
    default:
        break;
    }
    if (rc != PGW_OK)
        bootstrap_fail(n, rc);
}

int pgnode_bootstrap(struct pgnode *n, pgnode_done_cb cb, void *ctx)
{
    int rc = pgnode__begin(n, F_BOOTSTRAP, ctx);
    if (rc)
        return rc;
    n->cb = cb;
    n->local_port = 0;
    n->pg_started = false;
    n->in_recovery = false;
    enum pgnode_datadir kind;
    char eb[512];
    rc = pgnode_inspect_datadir(n->cfg->postgresql.data_dir, &kind, eb, sizeof eb);
    if (rc) {
        pgnode__set_err(n, "bootstrap: %s", eb);
        return pgnode__abort_begin(n, rc);
    }
    if (kind == PGNODE_DATADIR_CLUSTER || kind == PGNODE_DATADIR_OTHER) {
        pgnode__set_err(n, "bootstrap refused: data directory %s is not empty (%s); pgwarden never runs "
                "initdb over existing data (adopt it, or move it away)",
                n->cfg->postgresql.data_dir, pgnode_datadir_name(kind));
        return pgnode__abort_begin(n, PGW_EREFUSED);
    }
    const char *method = n->cfg->bootstrap.method;
    if (method != NULL && strcmp(method, "initdb") != 0) {
        const struct cfg_method *m = bootstrap_method(n);
        if (m == NULL) {
            pgnode__set_err(n, "bootstrap.method %s has no section bootstrap.%s", method, method);
            return pgnode__abort_begin(n, PGW_EINVAL);
        }
        n->method_name = m->name;
        rc = run_method(n, m, true);
        if (rc)
            return pgnode__abort_begin(n, rc);
        return PGW_OK;
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
    rc = pgnode__ctl_rc(n, pgctl_initdb(n->ctl, &a, pgnode__ctl_done, n));
    if (rc)
        return pgnode__abort_begin(n, rc);
    return PGW_OK;
}
