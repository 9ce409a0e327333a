/* Operations on one instance through its programs (see pgctl.h).
 *
 * Happy paths:
 *  initdb:     pwfile (0600, mkstemp) -> initdb -> pwfile removed.
 *  start:      already running => done; else pg_ctl start -w (detached) -> ok.
 *  stop:       not running => done; fast/smart: pg_ctl stop -m <mode> -w;
 *              immediate: SIGQUIT to the postmaster now, poll its pid every
 *              20 ms, SIGKILL at the deadline.
 *  promote:    pg_ctl promote -w -> pg_controldata every 100 ms until
 *              "in production".
 *  basebackup: pg_basebackup -> ok | cleanup of what we created -> pause ->
 *              next attempt (bounded).
 *  rewind:     controldata -> [crash recovery -> controldata] -> pg_rewind.
 * Failure modes: program missing (synchronous), exit != 0 (PGW_ECHILD,
 * message with the program's last lines, and for start the FATAL lines of
 * the startup log), deadline (PGW_ETIMEDOUT), a state check failing
 * (PGW_EREFUSED / PGW_ECONFLICT). The callback always runs on a later tick. */
#include "pg/pgctl.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "pg/proc.h"

enum op {
    OP_NONE = 0, OP_INITDB, OP_START, OP_STOP, OP_RESTART, OP_RELOAD, OP_PROMOTE,
    OP_CONTROLDATA, OP_BASEBACKUP, OP_REWIND, OP_CRASH_RECOVER,
};

enum step {
    ST_NONE = 0,
    ST_STOP_WAIT,         /* immediate: polling the pid */
    ST_START_AFTER_STOP,  /* restart */
    ST_PROMOTE_CTL,       /* pg_ctl promote running */
    ST_PROMOTE_POLL,      /* polling controldata */
    ST_BB_RUN, ST_BB_CLEAN, ST_BB_PAUSE,
    ST_RW_CD1, ST_RW_SINGLE, ST_RW_CD2, ST_RW_RUN,
    ST_DEFERRED,          /* result delivered on the next tick */
};

struct pgctl {
    uv_loop_t *loop;
    char *bin_dir, *data_dir, *log_file, *pgpass;
    uint32_t timeout_ms;
    int bin_major;
    char err[PGCTL_ERR_MAX];
    struct proc *proc;
    uv_timer_t timer;
    enum op op;
    enum step step;
    pgctl_done_cb cb;
    pgctl_controldata_cb cdcb;
    void *ctx;
    int deferred_status;
    struct pg_controldata cd;
    bool have_cd;
    uint64_t deadline;
    uint32_t op_timeout;
    /* per-op arguments */
    char *options;
    enum pgctl_stop_mode mode;
    pid_t stop_pid;
    bool sent_kill;
    char pwfile[256];
    long log_offset;
    char *conninfo;
    char **bb_opts;
    unsigned attempts_left, attempt;
    uint32_t retry_pause_ms;
    bool bb_created_dir;
    bool destroyed;
};

/* ---- small helpers -------------------------------------------------------- */

static void set_err(struct pgctl *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_err(struct pgctl *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err, sizeof c->err, fmt, ap);
    va_end(ap);
}

/* The last few lines of a program's output, on one line. */
static void flat_tail(const char *tail, char *out, size_t len, int max_lines)
{
    out[0] = '\0';
    if (!tail || !*tail)
        return;
    const char *start = tail + strlen(tail);
    int lines = 0;
    while (start > tail && lines <= max_lines) {
        start--;
        if (*start == '\n' && start[1] != '\0')
            lines++;
    }
    if (*start == '\n')
        start++;
    size_t o = 0;
    for (const char *p = start; *p && o + 3 < len; p++) {
        if (*p == '\n') {
            if (p[1] != '\0') {
                out[o++] = ' ';
                out[o++] = '|';
                out[o++] = ' ';
            }
        } else {
            out[o++] = *p;
        }
    }
    out[o] = '\0';
}

static char *path_join(const char *a, const char *b)
{
    size_t n = strlen(a) + strlen(b) + 2;
    char *s = malloc(n);
    if (s)
        snprintf(s, n, "%s/%s", a, b);
    return s;
}

static void on_timer(uv_timer_t *t);
static void on_timer_closed(uv_handle_t *h)
{
    free(h->data);
}

static void free_ctl(struct pgctl *c)
{
    free(c->bin_dir);
    free(c->data_dir);
    free(c->log_file);
    free(c->pgpass);
    free(c->options);
    free(c->conninfo);
    if (c->bb_opts) {
        for (size_t i = 0; c->bb_opts[i]; i++)
            free(c->bb_opts[i]);
        free(c->bb_opts);
    }
    c->timer.data = c;
    uv_close((uv_handle_t *)&c->timer, on_timer_closed);
}

static void clear_op_args(struct pgctl *c)
{
    free(c->options);
    c->options = NULL;
    free(c->conninfo);
    c->conninfo = NULL;
    if (c->bb_opts) {
        for (size_t i = 0; c->bb_opts[i]; i++)
            free(c->bb_opts[i]);
        free(c->bb_opts);
        c->bb_opts = NULL;
    }
    if (c->pwfile[0]) {
        unlink(c->pwfile);
        c->pwfile[0] = '\0';
    }
}

static void op_done(struct pgctl *c, int status)
{
    enum op op = c->op;
    pgctl_done_cb cb = c->cb;
    pgctl_controldata_cb cdcb = c->cdcb;
    void *ctx = c->ctx;
    uv_timer_stop(&c->timer);
    clear_op_args(c);
    c->op = OP_NONE;
    c->step = ST_NONE;
    c->cb = NULL;
    c->cdcb = NULL;
    c->proc = NULL;
    if (status == PGW_OK)
        c->err[0] = '\0';
    else
        log_error("pg", "%s", c->err);
    if (op == OP_CONTROLDATA) {
        if (cdcb)
            cdcb(c, status, status == PGW_OK ? &c->cd : NULL, ctx);
    } else if (cb) {
        cb(c, status, ctx);
    }
}

/* Deliver on the next tick (never from the starting call). */
static void defer_done(struct pgctl *c, int status)
{
    c->step = ST_DEFERRED;
    c->deferred_status = status;
    uv_timer_start(&c->timer, on_timer, 0, 0);
}

static int begin(struct pgctl *c, enum op op, pgctl_done_cb cb, void *ctx, uint32_t timeout_ms)
{
    if (c->op != OP_NONE) {
        set_err(c, "another operation is running on %s", c->data_dir);
        return PGW_EBUSY;
    }
    c->op = op;
    c->cb = cb;
    c->ctx = ctx;
    c->op_timeout = timeout_ms ? timeout_ms : c->timeout_ms;
    c->deadline = uv_now(c->loop) + c->op_timeout;
    c->err[0] = '\0';
    return PGW_OK;
}

/* A synchronous failure after begin(): undo begin, keep the message. */
static int abort_begin(struct pgctl *c, int status)
{
    clear_op_args(c);
    c->op = OP_NONE;
    c->step = ST_NONE;
    c->cb = NULL;
    c->cdcb = NULL;
    return status;
}

static uint32_t remaining(struct pgctl *c)
{
    uint64_t now = uv_now(c->loop);
    return c->deadline > now ? (uint32_t)(c->deadline - now) : 1;
}

static int run(struct pgctl *c, const char *prog, char **argv, uint32_t timeout_ms, bool log_output,
               size_t capture, bool detached, proc_done_cb done)
{
    char *file = path_join(c->bin_dir, prog);
    if (!file) {
        set_err(c, "out of memory");
        return PGW_ENOMEM;
    }
    char pgpass_env[4200];
    char *env[4] = {"LC_ALL=C", "LANG=C", NULL, NULL};
    if (c->pgpass) {
        snprintf(pgpass_env, sizeof pgpass_env, "PGPASSFILE=%s", c->pgpass);
        env[2] = pgpass_env;
    }
    argv[0] = file;
    struct proc_spec spec = {
        .name = prog,
        .file = file,
        .argv = argv,
        .env_extra = env,
        .timeout_ms = timeout_ms,
        .log_output = log_output,
        .capture_stdout = capture,
        .detached = detached,
    };
    char eb[512];
    int rc = proc_spawn(c->loop, &spec, done, c, &c->proc, eb, sizeof eb);
    free(file);
    argv[0] = NULL;
    if (rc != PGW_OK) {
        set_err(c, "%s (postgresql.bin_dir %s)", eb, c->bin_dir);
        c->proc = NULL;
    }
    return rc;
}

static void child_failed(struct pgctl *c, const char *what, const struct proc_result *r)
{
    char tail[1200];
    flat_tail(r->tail, tail, sizeof tail, 6);
    if (r->status == PGW_ETIMEDOUT)
        set_err(c, "%s timed out after %u ms%s%s", what, (unsigned)c->op_timeout,
                tail[0] ? ": " : "", tail);
    else if (r->term_signal)
        set_err(c, "%s killed by signal %d%s%s", what, r->term_signal, tail[0] ? ": " : "", tail);
    else
        set_err(c, "%s failed (exit %d)%s%s", what, r->exit_code, tail[0] ? ": " : "", tail);
}

/* ---- construction --------------------------------------------------------- */

static void ver_exit(uv_process_t *p, int64_t st, int sig)
{
    (void)st;
    (void)sig;
    uv_handle_t *timer = p->data;
    if (!uv_is_closing(timer))
        uv_close(timer, NULL);
    uv_close((uv_handle_t *)p, NULL);
}

static void ver_alloc(uv_handle_t *h, size_t sz, uv_buf_t *buf)
{
    (void)sz;
    char *b = h->data;
    size_t used = strlen(b);
    buf->base = b + used;
    buf->len = 127 - used;
}

static void ver_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    if (n > 0)
        buf->base[n] = '\0';
    else if (n < 0)
        uv_close((uv_handle_t *)s, NULL);
}

static void ver_timeout(uv_timer_t *t)
{
    uv_process_t *p = t->data;
    uv_process_kill(p, SIGKILL);
    if (!uv_is_closing((uv_handle_t *)t))
        uv_close((uv_handle_t *)t, NULL);
}

/* "pg_ctl (PostgreSQL) 15.4 (Debian 15.4-1)" -> 15. Runs on a private,
 * short-lived loop once at construction (bounded by 5 s): the binaries'
 * version decides which parameters the managed configuration may use. */
static int probe_bin_version(const char *bin_dir, char *errbuf, size_t errlen)
{
    char *file = path_join(bin_dir, "pg_ctl");
    if (!file)
        return -1;
    if (access(file, X_OK) != 0) {
        snprintf(errbuf, errlen, "postgresql.bin_dir: %s is not an executable file (%s); "
                 "bin_dir must hold PostgreSQL's programs, e.g. /usr/lib/postgresql/15/bin",
                 file, strerror(errno));
        free(file);
        return -1;
    }
    uv_loop_t loop;
    if (uv_loop_init(&loop) != 0) {
        free(file);
        snprintf(errbuf, errlen, "cannot create a loop");
        return -1;
    }
    char out[128] = "";
    uv_pipe_t pipe;
    uv_pipe_init(&loop, &pipe, 0);
    pipe.data = out;
    uv_stdio_container_t stdio[3] = {{.flags = UV_IGNORE},
                                     {.flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE,
                                      .data.stream = (uv_stream_t *)&pipe},
                                     {.flags = UV_IGNORE}};
    char *args[] = {file, "--version", NULL};
    uv_process_options_t o = {.file = file, .args = args, .exit_cb = ver_exit,
                              .stdio_count = 3, .stdio = stdio};
    uv_process_t proc;
    uv_timer_t timer;
    uv_timer_init(&loop, &timer);
    timer.data = &proc;
    proc.data = &timer;
    int rc = uv_spawn(&loop, &proc, &o);
    if (rc != 0) {
        uv_close((uv_handle_t *)&proc, NULL);
        uv_close((uv_handle_t *)&pipe, NULL);
        uv_close((uv_handle_t *)&timer, NULL);
        uv_run(&loop, UV_RUN_DEFAULT);
        (void)uv_loop_close(&loop);
        snprintf(errbuf, errlen, "postgresql.bin_dir: cannot run %s: %s", file, uv_strerror(rc));
        free(file);
        return -1;
    }
    uv_read_start((uv_stream_t *)&pipe, ver_alloc, ver_read);
    uv_timer_start(&timer, ver_timeout, 5000, 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    (void)uv_loop_close(&loop);
    const char *v = strstr(out, "(PostgreSQL) ");
    int major = 0;
    if (v) {
        v += strlen("(PostgreSQL) ");
        char *end;
        long m = strtol(v, &end, 10);
        if (end != v && m >= 9 && m < 100)
            major = (int)m;
    }
    if (major == 0) {
        snprintf(errbuf, errlen, "postgresql.bin_dir: %s --version said \"%s\", not a PostgreSQL "
                 "version", file, out);
        free(file);
        return -1;
    }
    free(file);
    return major;
}

int pgctl_new(uv_loop_t *loop, const struct pgctl_opts *opts, struct pgctl **out, char *errbuf,
              size_t errlen)
{
    *out = NULL;
    if (!opts || !opts->bin_dir || !*opts->bin_dir || !opts->data_dir || !*opts->data_dir) {
        snprintf(errbuf, errlen, "pgctl: bin_dir and data_dir are required");
        return PGW_EINVAL;
    }
    if (opts->data_dir[0] != '/') {
        snprintf(errbuf, errlen, "postgresql.data_dir: \"%s\" must be an absolute path",
                 opts->data_dir);
        return PGW_EINVAL;
    }
    int major = probe_bin_version(opts->bin_dir, errbuf, errlen);
    if (major < 0)
        return PGW_ENOTFOUND;
    struct pgctl *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(errbuf, errlen, "out of memory");
        return PGW_ENOMEM;
    }
    c->loop = loop;
    c->bin_major = major;
    c->bin_dir = strdup(opts->bin_dir);
    c->data_dir = strdup(opts->data_dir);
    size_t dl = strlen(c->data_dir ? c->data_dir : "");
    while (dl > 1 && c->data_dir[dl - 1] == '/')
        c->data_dir[--dl] = '\0';
    if (opts->log_file) {
        c->log_file = strdup(opts->log_file);
    } else if (c->data_dir) {
        size_t n = strlen(c->data_dir) + 32;
        c->log_file = malloc(n);
        if (c->log_file)
            snprintf(c->log_file, n, "%s.startup.log", c->data_dir);
    }
    c->pgpass = opts->pgpass_file ? strdup(opts->pgpass_file) : NULL;
    c->timeout_ms = opts->timeout_ms ? opts->timeout_ms : 60000;
    uv_timer_init(loop, &c->timer);
    c->timer.data = c;
    if (!c->bin_dir || !c->data_dir || !c->log_file || (opts->pgpass_file && !c->pgpass)) {
        free_ctl(c);
        snprintf(errbuf, errlen, "out of memory");
        return PGW_ENOMEM;
    }
    *out = c;
    return PGW_OK;
}

void pgctl_destroy(struct pgctl *c)
{
    if (!c)
        return;
    if (c->proc)
        proc_abandon(c->proc);
    c->proc = NULL;
    uv_timer_stop(&c->timer);
    if (c->pwfile[0])
        unlink(c->pwfile);
    c->pwfile[0] = '\0';
    free_ctl(c);
}

bool pgctl_busy(const struct pgctl *c) { return c->op != OP_NONE; }
const char *pgctl_error(const struct pgctl *c) { return c->err; }
const char *pgctl_data_dir(const struct pgctl *c) { return c->data_dir; }
const char *pgctl_bin_dir(const struct pgctl *c) { return c->bin_dir; }
int pgctl_bin_version(const struct pgctl *c) { return c->bin_major; }
const struct pg_controldata *pgctl_last_controldata(const struct pgctl *c)
{
    return c->have_cd ? &c->cd : NULL;
}

int pgctl_data_version(const struct pgctl *c)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/PG_VERSION", c->data_dir);
    FILE *f = fopen(path, "re");
    if (!f)
        return 0;
    char buf[16] = "";
    if (!fgets(buf, sizeof buf, f))
        buf[0] = '\0';
    fclose(f);
    char *end;
    long v = strtol(buf, &end, 10);
    return end != buf && v > 0 && v < 100 ? (int)v : 0;
}

const char *pgctl_stop_mode_name(enum pgctl_stop_mode m)
{
    switch (m) {
    case PGCTL_STOP_IMMEDIATE: return "immediate";
    case PGCTL_STOP_SMART: return "smart";
    case PGCTL_STOP_FAST:
    default: return "fast";
    }
}

int pgctl_stop_mode_parse(const char *s, enum pgctl_stop_mode *out)
{
    if (!s)
        return PGW_EINVAL;
    if (strcmp(s, "fast") == 0)
        *out = PGCTL_STOP_FAST;
    else if (strcmp(s, "immediate") == 0)
        *out = PGCTL_STOP_IMMEDIATE;
    else if (strcmp(s, "smart") == 0)
        *out = PGCTL_STOP_SMART;
    else
        return PGW_EINVAL;
    return PGW_OK;
}

/* ---- controldata ---------------------------------------------------------- */

static int spawn_controldata(struct pgctl *c, proc_done_cb done)
{
    char *argv[] = {NULL, "-D", c->data_dir, NULL};
    return run(c, "pg_controldata", argv, 10000, false, 64 * 1024, false, done);
}

/* Parse a finished pg_controldata; sets c->cd / c->err. */
static int take_controldata(struct pgctl *c, const struct proc_result *r)
{
    if (r->status != PGW_OK) {
        child_failed(c, "pg_controldata", r);
        return r->status;
    }
    char eb[256];
    int rc = pg_controldata_parse(r->output, r->output_len, &c->cd, eb, sizeof eb);
    if (rc != PGW_OK) {
        set_err(c, "%s", eb);
        return rc;
    }
    c->have_cd = true;
    return PGW_OK;
}

static void controldata_done(struct proc *p, const struct proc_result *r, void *ctx)
{
    (void)p;
    struct pgctl *c = ctx;
    c->proc = NULL;
    op_done(c, take_controldata(c, r));
}

int pgctl_controldata(struct pgctl *c, pgctl_controldata_cb cb, void *ctx)
{
    int rc = begin(c, OP_CONTROLDATA, NULL, ctx, 10000);
    if (rc)
        return rc;
    c->cdcb = cb;
    rc = spawn_controldata(c, controldata_done);
    if (rc)
        return abort_begin(c, rc);
    return PGW_OK;
}

/* ---- initdb --------------------------------------------------------------- */

static void initdb_done(struct proc *p, const struct proc_result *r, void *ctx)
{
    (void)p;
    struct pgctl *c = ctx;
    c->proc = NULL;
    if (r->status != PGW_OK)
        child_failed(c, "initdb", r);
    else
        log_info("pg", "initdb: initialised %s", c->data_dir);
    op_done(c, r->status);
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
        set_err(c, "%s: bad option \"%s\"", what, opt);
        return NULL;
    }
    memcpy(name, opt, nl);
    name[nl] = '\0';
    for (size_t i = 0; i < nl; i++) {
        char ch = name[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-' || ch == '_')) {
            set_err(c, "%s: bad option name \"%s\"", what, name);
            return NULL;
        }
    }
    if (option_forbidden(name, forbidden)) {
        set_err(c, "%s: option \"%s\" is not allowed (pgwarden sets it)", what, name);
        return NULL;
    }
    size_t n = strlen(opt) + 3;
    char *s = malloc(n);
    if (!s) {
        set_err(c, "out of memory");
        return NULL;
    }
    snprintf(s, n, "--%s", opt);
    return s;
}

int pgctl_initdb(struct pgctl *c, const struct pgctl_initdb_args *a, pgctl_done_cb cb, void *ctx)
{
    static const char *const forbidden[] = {"pgdata", "nosync", "no-sync", "pwfile", "sync-only",
                                            "version", "username", "pwprompt", "D", "U", NULL};
    int rc = begin(c, OP_INITDB, cb, ctx, a->timeout_ms ? a->timeout_ms : 300000);
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
        set_err(c, "out of memory");
        return abort_begin(c, PGW_ENOMEM);
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
            set_err(c, "initdb: cannot create a password file in %s: %s", tmp && *tmp ? tmp : "/tmp",
                    strerror(errno));
            c->pwfile[0] = '\0';
            rc = PGW_EIO;
        } else {
            size_t pl = strlen(a->password);
            bool ok = fchmod(fd, 0600) == 0 && write(fd, a->password, pl) == (ssize_t)pl &&
                      write(fd, "\n", 1) == 1;
            close(fd);
            if (!ok) {
                set_err(c, "initdb: cannot write the password file: %s", strerror(errno));
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
        rc = run(c, "initdb", argv, c->op_timeout, true, 0, false, initdb_done);
    for (size_t i = 0; i < no; i++)
        free(owned[i]);
    free(owned);
    free(argv);
    if (rc)
        return abort_begin(c, rc);
    return PGW_OK;
}

/* ---- start ---------------------------------------------------------------- */

static long file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (long)st.st_size : 0;
}

/* Lines this start wrote to the startup log: FATAL/PANIC/ERROR ones first. */
static void log_excerpt(const char *path, long offset, char *out, size_t len)
{
    out[0] = '\0';
    FILE *f = fopen(path, "re");
    if (!f)
        return;
    if (offset > 0 && fseek(f, offset, SEEK_SET) != 0)
        rewind(f);
    char line[1024];
    char last[3][1024] = {"", "", ""};
    size_t o = 0;
    int nlast = 0;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        if (strstr(line, "FATAL:") || strstr(line, "PANIC:") || strstr(line, "ERROR:") ||
            strstr(line, "could not") || strstr(line, "invalid") || strstr(line, "CONTEXT:")) {
            if (o + strlen(line) + 4 < len) {
                o += (size_t)snprintf(out + o, len - o, "%s%s", o ? " | " : "", line);
            }
        }
        snprintf(last[nlast % 3], sizeof last[0], "%s", line);
        nlast++;
    }
    fclose(f);
    if (o == 0) {
        for (int i = nlast > 3 ? nlast - 3 : 0; i < nlast; i++)
            if (o + strlen(last[i % 3]) + 4 < len)
                o += (size_t)snprintf(out + o, len - o, "%s%s", o ? " | " : "", last[i % 3]);
    }
}

static void start_done(struct proc *p, const struct proc_result *r, void *ctx)
{
    (void)p;
    struct pgctl *c = ctx;
    c->proc = NULL;
    if (r->status != PGW_OK) {
        char tail[600], ex[1200];
        flat_tail(r->tail, tail, sizeof tail, 3);
        log_excerpt(c->log_file, c->log_offset, ex, sizeof ex);
        set_err(c, "pg_ctl start of %s failed (%s%d)%s%s%s%s", c->data_dir,
                r->status == PGW_ETIMEDOUT ? "timeout, exit " : "exit ", r->exit_code,
                tail[0] ? ": " : "", tail, ex[0] ? "; server log: " : "", ex);
        op_done(c, r->status);
        return;
    }
    log_info("pg", "PostgreSQL started on %s", c->data_dir);
    op_done(c, PGW_OK);
}

static int spawn_start(struct pgctl *c)
{
    pid_t pid;
    if (pg_postmaster_running(c->data_dir, &pid)) {
        log_info("pg", "PostgreSQL already running on %s (pid %d)", c->data_dir, (int)pid);
        defer_done(c, PGW_OK);
        return PGW_OK;
    }
    struct stat st;
    if (stat(c->data_dir, &st) != 0) {
        set_err(c, "cannot start: data directory %s: %s", c->data_dir, strerror(errno));
        return PGW_ENOTFOUND;
    }
    char eb[512];
    if (pg_pidfile_clear_stale(c->data_dir, eb, sizeof eb) != PGW_OK) {
        set_err(c, "cannot start: %s", eb);
        return PGW_ECONFLICT;
    }
    if (st.st_uid != geteuid()) {
        set_err(c, "cannot start: data directory %s is owned by uid %d, not by us (uid %d)",
                c->data_dir, (int)st.st_uid, (int)geteuid());
        return PGW_EREFUSED;
    }
    c->log_offset = file_size(c->log_file);
    char secs[16];
    uint32_t s = (c->op_timeout + 999) / 1000;
    snprintf(secs, sizeof secs, "%u", s ? s : 1);
    char *argv[16] = {NULL, "start", "-w", "-t", secs, "-D", c->data_dir, "-l", c->log_file};
    size_t k = 9;
    if (c->options && *c->options) {
        argv[k++] = "-o";
        argv[k++] = c->options;
    }
    argv[k] = NULL;
    /* pg_ctl puts the postmaster in its own session; detaching pg_ctl too
     * keeps our process group's signals away from it */
    return run(c, "pg_ctl", argv, c->op_timeout + 10000, true, 0, true, start_done);
}

int pgctl_start(struct pgctl *c, const char *options, uint32_t timeout_ms, pgctl_done_cb cb,
                void *ctx)
{
    int rc = begin(c, OP_START, cb, ctx, timeout_ms);
    if (rc)
        return rc;
    if (options && !(c->options = strdup(options))) {
        set_err(c, "out of memory");
        return abort_begin(c, PGW_ENOMEM);
    }
    rc = spawn_start(c);
    if (rc)
        return abort_begin(c, rc);
    return PGW_OK;
}

/* ---- stop ----------------------------------------------------------------- */

static void stop_finished(struct pgctl *c, int status)
{
    if (status == PGW_OK)
        log_info("pg", "PostgreSQL on %s stopped (%s)", c->data_dir, pgctl_stop_mode_name(c->mode));
    if (status == PGW_OK && c->op == OP_RESTART) {
        c->step = ST_START_AFTER_STOP;
        c->deadline = uv_now(c->loop) + c->op_timeout;
        int rc = spawn_start(c);
        if (rc)
            op_done(c, rc);
        return;
    }
    op_done(c, status);
}

static void stop_poll(struct pgctl *c)
{
    if (!pg_pid_alive(c->stop_pid)) {
        stop_finished(c, PGW_OK);
        return;
    }
    if (uv_now(c->loop) >= c->deadline) {
        if (!c->sent_kill) {
            /* a hung (SIGSTOPped) postmaster ignores SIGQUIT */
            log_warn("pg", "postmaster %d did not stop in time: SIGKILL", (int)c->stop_pid);
            kill(c->stop_pid, SIGKILL);
            c->sent_kill = true;
            c->deadline = uv_now(c->loop) + 5000;
        } else {
            set_err(c, "postmaster %d of %s survived SIGKILL", (int)c->stop_pid, c->data_dir);
            op_done(c, PGW_ETIMEDOUT);
            return;
        }
    }
    c->step = ST_STOP_WAIT;
    uv_timer_start(&c->timer, on_timer, 20, 0);
}

static void stop_done(struct proc *p, const struct proc_result *r, void *ctx)
{
    (void)p;
    struct pgctl *c = ctx;
    c->proc = NULL;
    if (r->status != PGW_OK) {
        if (!pg_postmaster_running(c->data_dir, NULL)) {
            stop_finished(c, PGW_OK);
            return;
        }
        child_failed(c, "pg_ctl stop", r);
        op_done(c, r->status);
        return;
    }
    stop_finished(c, PGW_OK);
}

static int spawn_stop(struct pgctl *c)
{
    struct pg_pidfile pf;
    char eb[256];
    int rc = pg_pidfile_read(c->data_dir, &pf, eb, sizeof eb);
    if (rc != PGW_OK || !pg_pid_alive(pf.pid)) {
        log_info("pg", "PostgreSQL on %s is not running", c->data_dir);
        if (c->op == OP_RESTART) {
            c->step = ST_START_AFTER_STOP;
            return spawn_start(c);
        }
        defer_done(c, PGW_OK);
        return PGW_OK;
    }
    c->stop_pid = pf.pid;
    if (c->mode == PGCTL_STOP_IMMEDIATE) {
        /* the fencing path: no program to start, signal right now */
        log_info("pg", "immediate stop of postmaster %d (%s)", (int)pf.pid, c->data_dir);
        if (kill(pf.pid, SIGQUIT) != 0 && errno != ESRCH) {
            set_err(c, "cannot signal postmaster %d: %s", (int)pf.pid, strerror(errno));
            return PGW_EIO;
        }
        c->sent_kill = false;
        c->step = ST_STOP_WAIT;
        uv_timer_start(&c->timer, on_timer, 10, 0);
        return PGW_OK;
    }
    char secs[16];
    uint32_t s = (c->op_timeout + 999) / 1000;
    snprintf(secs, sizeof secs, "%u", s ? s : 1);
    char *argv[] = {NULL, "stop", "-w", "-t", secs, "-D", c->data_dir, "-m",
                    (char *)pgctl_stop_mode_name(c->mode), NULL};
    return run(c, "pg_ctl", argv, c->op_timeout + 5000, true, 0, false, stop_done);
}

int pgctl_stop(struct pgctl *c, enum pgctl_stop_mode mode, uint32_t timeout_ms, pgctl_done_cb cb,
               void *ctx)
{
    int rc = begin(c, OP_STOP, cb, ctx, timeout_ms);
    if (rc)
        return rc;
    c->mode = mode;
    rc = spawn_stop(c);
    if (rc)
        return abort_begin(c, rc);
    return PGW_OK;
}

int pgctl_restart(struct pgctl *c, enum pgctl_stop_mode mode, const char *options,
                  uint32_t timeout_ms, pgctl_done_cb cb, void *ctx)
{
    int rc = begin(c, OP_RESTART, cb, ctx, timeout_ms);
    if (rc)
        return rc;
    c->mode = mode;
    if (options && !(c->options = strdup(options))) {
        set_err(c, "out of memory");
        return abort_begin(c, PGW_ENOMEM);
    }
    rc = spawn_stop(c);
    if (rc)
        return abort_begin(c, rc);
    return PGW_OK;
}

/* ---- reload --------------------------------------------------------------- */

static void reload_done(struct proc *p, const struct proc_result *r, void *ctx)
{
    (void)p;
    struct pgctl *c = ctx;
    c->proc = NULL;
    if (r->status != PGW_OK)
        child_failed(c, "pg_ctl reload", r);
    op_done(c, r->status);
}

int pgctl_reload(struct pgctl *c, pgctl_done_cb cb, void *ctx)
{
    int rc = begin(c, OP_RELOAD, cb, ctx, 10000);
    if (rc)
        return rc;
    char *argv[] = {NULL, "reload", "-D", c->data_dir, NULL};
    rc = run(c, "pg_ctl", argv, 10000, true, 0, false, reload_done);
    if (rc)
        return abort_begin(c, rc);
    return PGW_OK;
}

/* ---- promote -------------------------------------------------------------- */

static void promote_poll_done(struct proc *p, const struct proc_result *r, void *ctx)
{
    (void)p;
    struct pgctl *c = ctx;
    c->proc = NULL;
    int rc = take_controldata(c, r);
    if (rc == PGW_OK && c->cd.state == PG_CLUSTER_IN_PRODUCTION) {
        log_info("pg", "promoted: %s is in production", c->data_dir);
        op_done(c, PGW_OK);
        return;
    }
    if (uv_now(c->loop) >= c->deadline) {
        set_err(c, "promote of %s: the control file still says \"%s\" after %u ms", c->data_dir,
                c->have_cd ? c->cd.state_text : "?", (unsigned)c->op_timeout);
        op_done(c, PGW_ETIMEDOUT);
        return;
    }
    c->step = ST_PROMOTE_POLL;
    uv_timer_start(&c->timer, on_timer, 100, 0);
}

static void promote_ctl_done(struct proc *p, const struct proc_result *r, void *ctx)
{
    (void)p;
    struct pgctl *c = ctx;
    c->proc = NULL;
    if (r->status != PGW_OK) {
        /* "server is not in standby mode" is fine if the control file agrees */
        char tail[600];
        flat_tail(r->tail, tail, sizeof tail, 3);
        log_warn("pg", "pg_ctl promote exited %d (%s); checking the control file", r->exit_code,
                 tail);
        if (!pg_postmaster_running(c->data_dir, NULL)) {
            child_failed(c, "pg_ctl promote", r);
            op_done(c, r->status);
            return;
        }
    }
    c->step = ST_PROMOTE_POLL;
    int rc = spawn_controldata(c, promote_poll_done);
    if (rc)
        op_done(c, rc);
}

int pgctl_promote(struct pgctl *c, uint32_t timeout_ms, pgctl_done_cb cb, void *ctx)
{
    int rc = begin(c, OP_PROMOTE, cb, ctx, timeout_ms);
    if (rc)
        return rc;
    if (!pg_postmaster_running(c->data_dir, NULL)) {
        set_err(c, "cannot promote %s: PostgreSQL is not running", c->data_dir);
        return abort_begin(c, PGW_EUNAVAIL);
    }
    char secs[16];
    uint32_t s = (c->op_timeout + 999) / 1000;
    snprintf(secs, sizeof secs, "%u", s ? s : 1);
    char *argv[] = {NULL, "promote", "-w", "-t", secs, "-D", c->data_dir, NULL};
    c->step = ST_PROMOTE_CTL;
    rc = run(c, "pg_ctl", argv, c->op_timeout + 5000, true, 0, false, promote_ctl_done);
    if (rc)
        return abort_begin(c, rc);
    return PGW_OK;
}

/* ---- basebackup ----------------------------------------------------------- */

static void bb_attempt(struct pgctl *c);

static void bb_clean_done(struct proc *p, const struct proc_result *r, void *ctx)
{
    (void)p;
    struct pgctl *c = ctx;
    c->proc = NULL;
    if (r->status != PGW_OK)
        log_warn("pg", "could not clean up %s after a failed pg_basebackup", c->data_dir);
    if (c->attempts_left == 0) {
        op_done(c, PGW_ECHILD);
        return;
    }
    log_info("pg", "pg_basebackup: retrying in %u ms (%u attempt(s) left)",
             (unsigned)c->retry_pause_ms, c->attempts_left);
    c->step = ST_BB_PAUSE;
    uv_timer_start(&c->timer, on_timer, c->retry_pause_ms, 0);
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
            op_done(c, PGW_ECHILD);
            return;
        }
        c->step = ST_BB_PAUSE;
        uv_timer_start(&c->timer, on_timer, c->retry_pause_ms, 0);
    }
}

static void bb_done(struct proc *p, const struct proc_result *r, void *ctx)
{
    (void)p;
    struct pgctl *c = ctx;
    c->proc = NULL;
    if (r->status == PGW_OK) {
        log_info("pg", "pg_basebackup: %s cloned (attempt %u)", c->data_dir, c->attempt);
        op_done(c, PGW_OK);
        return;
    }
    char what[64];
    snprintf(what, sizeof what, "pg_basebackup (attempt %u)", c->attempt);
    child_failed(c, what, r);
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

static void bb_attempt(struct pgctl *c)
{
    int ds = dir_state(c->data_dir);
    if (ds < 0 || ds == 2) {
        set_err(c, "pg_basebackup: data directory %s %s", c->data_dir,
                ds < 0 ? "cannot be read" : "is not empty");
        op_done(c, ds < 0 ? PGW_EIO : PGW_ECONFLICT);
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
        set_err(c, "out of memory");
        op_done(c, PGW_ENOMEM);
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
    int rc = run(c, "pg_basebackup", argv, c->op_timeout, true, 0, false, bb_done);
    free(argv);
    if (rc)
        op_done(c, rc);
}

int pgctl_basebackup(struct pgctl *c, const struct pgctl_basebackup_args *a, pgctl_done_cb cb,
                     void *ctx)
{
    static const char *const forbidden[] = {"pgdata", "format", "wal-method", "xlog-method", "gzip",
                                            "version", "dbname", "host", "port", "username",
                                            "password", "compress", "D", "F", "X", "d", "h", "p",
                                            "U", "W", "Z", NULL};
    if (!a || !a->conninfo || !*a->conninfo) {
        set_err(c, "pg_basebackup: no source connection given");
        return PGW_EINVAL;
    }
    if (strstr(a->conninfo, "password")) {
        set_err(c, "pg_basebackup: the source connection string must not carry a password "
                "(it would show in the process list); the pgpass file is used");
        return PGW_EINVAL;
    }
    int rc = begin(c, OP_BASEBACKUP, cb, ctx, a->timeout_ms ? a->timeout_ms : 3600000);
    if (rc)
        return rc;
    size_t nopt = 0;
    while (a->options && a->options[nopt])
        nopt++;
    c->bb_opts = calloc(nopt + 1, sizeof *c->bb_opts);
    c->conninfo = strdup(a->conninfo);
    if (!c->bb_opts || !c->conninfo) {
        set_err(c, "out of memory");
        return abort_begin(c, PGW_ENOMEM);
    }
    for (size_t i = 0; i < nopt; i++) {
        c->bb_opts[i] = long_option(a->options[i], forbidden, "postgresql.basebackup", c);
        if (!c->bb_opts[i])
            return abort_begin(c, PGW_EINVAL);
    }
    int ds = dir_state(c->data_dir);
    if (ds < 0 || ds == 2) {
        set_err(c, "pg_basebackup: data directory %s %s", c->data_dir,
                ds < 0 ? "cannot be read" : "is not empty");
        return abort_begin(c, ds < 0 ? PGW_EIO : PGW_ECONFLICT);
    }
    c->attempts_left = a->attempts ? a->attempts : 2;
    c->attempt = 0;
    c->retry_pause_ms = a->retry_pause_ms ? a->retry_pause_ms : 5000;
    /* first attempt on the next tick: keeps every outcome asynchronous */
    c->step = ST_BB_PAUSE;
    uv_timer_start(&c->timer, on_timer, 0, 0);
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
        child_failed(c, "postgres --single (crash recovery)", r);
        op_done(c, r->status);
        return;
    }
    log_info("pg", "crash recovery of %s done", c->data_dir);
    if (c->op == OP_CRASH_RECOVER) {
        op_done(c, PGW_OK);
        return;
    }
    c->step = ST_RW_CD2;
    int rc = spawn_controldata(c, rw_step_controldata2);
    if (rc)
        op_done(c, rc);
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
        set_err(c, "crash recovery: %s", eb);
        return PGW_ECONFLICT;
    }
    log_info("pg", "%s was not shut down cleanly: running single-user crash recovery", c->data_dir);
    char *argv[] = {NULL, "--single", "-D", c->data_dir, "-c", "archive_mode=on",
                    "-c", "archive_command=false", "-c", "hot_standby=off", "template1", NULL};
    c->step = ST_RW_SINGLE;
    return run(c, "postgres", argv, c->op_timeout, true, 0, false, single_done);
}

int pgctl_crash_recover(struct pgctl *c, uint32_t timeout_ms, pgctl_done_cb cb, void *ctx)
{
    int rc = begin(c, OP_CRASH_RECOVER, cb, ctx, timeout_ms ? timeout_ms : 600000);
    if (rc)
        return rc;
    if (pg_postmaster_running(c->data_dir, NULL)) {
        set_err(c, "crash recovery of %s: PostgreSQL is running", c->data_dir);
        return abort_begin(c, PGW_ECONFLICT);
    }
    rc = spawn_single(c);
    if (rc)
        return abort_begin(c, rc);
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
        child_failed(c, "pg_rewind", r);
    else
        log_info("pg", "pg_rewind of %s done", c->data_dir);
    op_done(c, r->status);
}

static void rw_run_rewind(struct pgctl *c)
{
    char src[4200], dopt[4200];
    snprintf(src, sizeof src, "--source-server=%s", c->conninfo);
    snprintf(dopt, sizeof dopt, "--target-pgdata=%s", c->data_dir);
    char *argv[] = {NULL, dopt, src, "--progress", NULL};
    c->step = ST_RW_RUN;
    int rc = run(c, "pg_rewind", argv, remaining(c), true, 0, false, rewind_done);
    if (rc)
        op_done(c, rc);
}

static void rw_step_controldata2(struct proc *p, const struct proc_result *r, void *ctx)
{
    (void)p;
    struct pgctl *c = ctx;
    c->proc = NULL;
    int rc = take_controldata(c, r);
    if (rc) {
        op_done(c, rc);
        return;
    }
    if (!clean_shutdown(&c->cd)) {
        set_err(c, "pg_rewind: %s still says \"%s\" after crash recovery", c->data_dir,
                c->cd.state_text);
        op_done(c, PGW_ECONFLICT);
        return;
    }
    rw_run_rewind(c);
}

static void rw_step_controldata1(struct proc *p, const struct proc_result *r, void *ctx)
{
    (void)p;
    struct pgctl *c = ctx;
    c->proc = NULL;
    int rc = take_controldata(c, r);
    if (rc) {
        op_done(c, rc);
        return;
    }
    if (!c->cd.wal_log_hints && c->cd.data_checksum_version == 0) {
        set_err(c, "pg_rewind impossible on %s: neither wal_log_hints nor data checksums are on",
                c->data_dir);
        op_done(c, PGW_EREFUSED);
        return;
    }
    if (clean_shutdown(&c->cd)) {
        rw_run_rewind(c);
        return;
    }
    rc = spawn_single(c);
    if (rc)
        op_done(c, rc);
}

int pgctl_rewind(struct pgctl *c, const char *source_conninfo, uint32_t timeout_ms,
                 pgctl_done_cb cb, void *ctx)
{
    if (!source_conninfo || !*source_conninfo) {
        set_err(c, "pg_rewind: no source connection given");
        return PGW_EINVAL;
    }
    if (strstr(source_conninfo, "password")) {
        set_err(c, "pg_rewind: the source connection string must not carry a password; the "
                "pgpass file is used");
        return PGW_EINVAL;
    }
    int rc = begin(c, OP_REWIND, cb, ctx, timeout_ms ? timeout_ms : 3600000);
    if (rc)
        return rc;
    if (pg_postmaster_running(c->data_dir, NULL)) {
        set_err(c, "pg_rewind: PostgreSQL is running on %s; stop it first", c->data_dir);
        return abort_begin(c, PGW_ECONFLICT);
    }
    if (!(c->conninfo = strdup(source_conninfo))) {
        set_err(c, "out of memory");
        return abort_begin(c, PGW_ENOMEM);
    }
    c->step = ST_RW_CD1;
    rc = spawn_controldata(c, rw_step_controldata1);
    if (rc)
        return abort_begin(c, rc);
    return PGW_OK;
}

/* ---- timer ------------------------------------------------------------------ */

static void on_timer(uv_timer_t *t)
{
    struct pgctl *c = t->data;
    switch (c->step) {
    case ST_DEFERRED:
        op_done(c, c->deferred_status);
        return;
    case ST_STOP_WAIT:
        stop_poll(c);
        return;
    case ST_PROMOTE_POLL: {
        int rc = spawn_controldata(c, promote_poll_done);
        if (rc)
            op_done(c, rc);
        return;
    }
    case ST_BB_PAUSE:
        bb_attempt(c);
        return;
    default:
        return;
    }
}
