/* Operations on one instance through its programs (see pgctl.h); this file
 * holds the process control, pgctl_data.c the data-directory operations.
 *
 * Happy paths:
 *  start:      already running => done; else pg_ctl start -w (detached) -> ok.
 *  stop:       not running => done; fast/smart: pg_ctl stop -m <mode> -w;
 *              immediate: SIGQUIT to the postmaster now, poll its pid every
 *              20 ms, SIGKILL at the deadline.
 *  promote:    pg_ctl promote -w -> pg_controldata every 100 ms until
 *              "in production".
 *  controldata: pg_controldata, parsed.
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
#include "pg/pgctl_internal.h"

/* ---- small helpers -------------------------------------------------------- */

void pgctl__set_err(struct pgctl *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void pgctl__set_err(struct pgctl *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err, sizeof c->err, fmt, ap);
    va_end(ap);
}

/* The last few lines of a program's output, on one line. */
void pgctl__flat_tail(const char *tail, char *out, size_t len, int max_lines)
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

char *pgctl__path_join(const char *a, const char *b)
{
    size_t n = strlen(a) + strlen(b) + 2;
    char *s = malloc(n);
    if (s)
        snprintf(s, n, "%s/%s", a, b);
    return s;
}

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
    free(c->config_file);
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

void pgctl__op_done(struct pgctl *c, int status)
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
void pgctl__defer_done(struct pgctl *c, int status)
{
    c->step = ST_DEFERRED;
    c->deferred_status = status;
    uv_timer_start(&c->timer, pgctl__on_timer, 0, 0);
}

int pgctl__begin(struct pgctl *c, enum op op, pgctl_done_cb cb, void *ctx, uint32_t timeout_ms)
{
    if (c->op != OP_NONE) {
        pgctl__set_err(c, "another operation is running on %s", c->data_dir);
        return PGW_EBUSY;
    }
    c->op = op;
    c->cb = cb;
    c->ctx = ctx;
    c->op_timeout = timeout_ms ? timeout_ms : c->timeout_ms;
    c->deadline = uv_now(c->loop) + c->op_timeout;
    c->err[0] = '\0';
    c->start_retried = false;
    return PGW_OK;
}

/* A synchronous failure after pgctl__begin(): undo pgctl__begin, keep the message. */
int pgctl__abort_begin(struct pgctl *c, int status)
{
    clear_op_args(c);
    c->op = OP_NONE;
    c->step = ST_NONE;
    c->cb = NULL;
    c->cdcb = NULL;
    return status;
}

uint32_t pgctl__remaining(struct pgctl *c)
{
    uint64_t now = uv_now(c->loop);
    return c->deadline > now ? (uint32_t)(c->deadline - now) : 1;
}

int pgctl__run(struct pgctl *c, const char *prog, char **argv, uint32_t timeout_ms, bool log_output,
               size_t capture, bool detached, proc_done_cb done)
{
    char *file = pgctl__path_join(c->bin_dir, prog);
    if (!file) {
        pgctl__set_err(c, "out of memory");
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
        pgctl__set_err(c, "%s (postgresql.bin_dir %s)", eb, c->bin_dir);
        c->proc = NULL;
    }
    return rc;
}

void pgctl__child_failed(struct pgctl *c, const char *what, const struct proc_result *r)
{
    char tail[1200];
    pgctl__flat_tail(r->tail, tail, sizeof tail, 6);
    if (r->status == PGW_ETIMEDOUT)
        pgctl__set_err(c, "%s timed out after %u ms%s%s", what, (unsigned)c->op_timeout,
                tail[0] ? ": " : "", tail);
    else if (r->term_signal)
        pgctl__set_err(c, "%s killed by signal %d%s%s", what, r->term_signal, tail[0] ? ": " : "", tail);
    else
        pgctl__set_err(c, "%s failed (exit %d)%s%s", what, r->exit_code, tail[0] ? ": " : "", tail);
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
    /* every program pgwarden runs, so that a missing one is an error at
     * start rather than at the first rejoin or clone */
    static const char *const progs[] = {"pg_ctl", "initdb", "pg_basebackup", "pg_rewind",
                                        "pg_controldata", NULL};
    for (const char *const *p = progs; *p != NULL; p++) {
        char *f = pgctl__path_join(bin_dir, *p);
        if (!f) {
            snprintf(errbuf, errlen, "out of memory");
            return -1;
        }
        struct stat st;
        int e = stat(f, &st) != 0 ? errno : !S_ISREG(st.st_mode) ? EISDIR
                                    : access(f, X_OK) != 0    ? errno
                                                              : 0;
        if (e != 0) {
            snprintf(errbuf, errlen, "postgresql.bin_dir: %s is not an executable file (%s); "
                     "bin_dir must hold PostgreSQL's programs, e.g. /usr/lib/postgresql/15/bin",
                     f, e == EISDIR ? "not a regular file" : strerror(e));
            free(f);
            return -1;
        }
        free(f);
    }
    char *file = pgctl__path_join(bin_dir, "pg_ctl");
    if (!file) {
        snprintf(errbuf, errlen, "out of memory");
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
        /* one line, printable, for the message */
        out[strcspn(out, "\r\n")] = '\0';
        for (char *q = out; *q != '\0'; q++)
            if ((unsigned char)*q < 0x20 || (unsigned char)*q == 0x7f)
                *q = '?';
        snprintf(errbuf, errlen, "postgresql.bin_dir: %s --version said \"%s\", not a PostgreSQL "
                 "version", file, out);
        free(file);
        return -1;
    }
    free(file);
    return major;
}

int pgctl_check_bin_dir(const char *bin_dir, int *major, char *err, size_t errlen)
{
    int m = probe_bin_version(bin_dir, err, errlen);
    if (m < 0)
        return PGW_ENOTFOUND;
    if (major != NULL)
        *major = m;
    return PGW_OK;
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
    char ierr[256];
    if (pginst_init(&c->inst, opts->data_dir, ierr, sizeof ierr) != 0) {
        snprintf(errbuf, errlen, "postgresql.data_dir: %s", ierr);
        free(c);
        return PGW_EINVAL;
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
    bool cf = opts->config_file && *opts->config_file;
    c->config_file = cf ? strdup(opts->config_file) : NULL;
    c->timeout_ms = opts->timeout_ms ? opts->timeout_ms : 60000;
    uv_timer_init(loop, &c->timer);
    c->timer.data = c;
    if (!c->bin_dir || !c->data_dir || !c->log_file || (opts->pgpass_file && !c->pgpass) ||
        (cf && !c->config_file)) {
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

int pgctl__spawn_controldata(struct pgctl *c, proc_done_cb done)
{
    char *argv[] = {NULL, "-D", c->data_dir, NULL};
    return pgctl__run(c, "pg_controldata", argv, 10000, false, 64 * 1024, false, done);
}

/* Parse a finished pg_controldata; sets c->cd / c->err. */
int pgctl__take_controldata(struct pgctl *c, const struct proc_result *r)
{
    if (r->status != PGW_OK) {
        pgctl__child_failed(c, "pg_controldata", r);
        return r->status;
    }
    char eb[256];
    int rc = pg_controldata_parse(r->output, r->output_len, &c->cd, eb, sizeof eb);
    if (rc != PGW_OK) {
        pgctl__set_err(c, "%s", eb);
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
    pgctl__op_done(c, pgctl__take_controldata(c, r));
}

int pgctl_controldata(struct pgctl *c, pgctl_controldata_cb cb, void *ctx)
{
    int rc = pgctl__begin(c, OP_CONTROLDATA, NULL, ctx, 10000);
    if (rc)
        return rc;
    c->cdcb = cb;
    rc = pgctl__spawn_controldata(c, controldata_done);
    if (rc)
        return pgctl__abort_begin(c, rc);
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

static int spawn_start(struct pgctl *c);

static void start_done(struct proc *p, const struct proc_result *r, void *ctx)
{
    (void)p;
    struct pgctl *c = ctx;
    c->proc = NULL;
    if (r->status != PGW_OK) {
        char tail[600], ex[1200];
        pgctl__flat_tail(r->tail, tail, sizeof tail, 3);
        log_excerpt(c->log_file, c->log_offset, ex, sizeof ex);
        if (!c->start_retried && r->status != PGW_ETIMEDOUT && pg_socklock_clear_stale(ex)) {
            c->start_retried = true;
            log_info("pg", "starting PostgreSQL on %s again", c->data_dir);
            int rc = spawn_start(c);
            if (rc == PGW_OK)
                return;
            pgctl__op_done(c, rc);
            return;
        }
        pgctl__set_err(c, "pg_ctl start of %s failed (%s%d)%s%s%s%s", c->data_dir,
                r->status == PGW_ETIMEDOUT ? "timeout, exit " : "exit ", r->exit_code,
                tail[0] ? ": " : "", tail, ex[0] ? "; server log: " : "", ex);
        pgctl__op_done(c, r->status);
        return;
    }
    log_info("pg", "PostgreSQL started on %s", c->data_dir);
    pgctl__op_done(c, PGW_OK);
}

/* pg_ctl start's -o: pg_ctl pastes it into the postmaster's command line,
 * which /bin/sh runs, so the config file goes in single quotes ('\'' for a
 * quote in the path). NULL when there is nothing to pass. */
static char *start_options(const struct pgctl *c)
{
    const char *cf = c->config_file, *extra = c->options && *c->options ? c->options : NULL;
    if (cf == NULL && extra == NULL)
        return NULL;
    size_t n = 32 + (cf ? 4 * strlen(cf) : 0) + (extra ? strlen(extra) : 0);
    char *s = malloc(n);
    if (s == NULL)
        return NULL;
    size_t o = 0;
    if (cf != NULL) {
        o += (size_t)snprintf(s, n, "--config-file='");
        for (const char *p = cf; *p; p++) {
            if (*p == '\'') {
                memcpy(s + o, "'\\''", 4); /* close, escaped quote, reopen */
                o += 4;
            } else {
                s[o++] = *p;
            }
        }
        s[o++] = '\'';
    }
    snprintf(s + o, n - o, "%s%s", extra && o ? " " : "", extra ? extra : "");
    return s;
}

static int spawn_start(struct pgctl *c)
{
    pid_t pid;
    if (pg_postmaster_running(c->data_dir, &pid)) {
        log_info("pg", "PostgreSQL already running on %s (pid %d)", c->data_dir, (int)pid);
        pgctl__defer_done(c, PGW_OK);
        return PGW_OK;
    }
    struct stat st;
    if (stat(c->data_dir, &st) != 0) {
        pgctl__set_err(c, "cannot start: data directory %s: %s", c->data_dir, strerror(errno));
        return PGW_ENOTFOUND;
    }
    char eb[512];
    if (pg_pidfile_clear_stale(c->data_dir, eb, sizeof eb) != PGW_OK) {
        pgctl__set_err(c, "cannot start: %s", eb);
        return PGW_ECONFLICT;
    }
    if (st.st_uid != geteuid()) {
        pgctl__set_err(c, "cannot start: data directory %s is owned by uid %d, not by us (uid %d)",
                c->data_dir, (int)st.st_uid, (int)geteuid());
        return PGW_EREFUSED;
    }
    c->log_offset = file_size(c->log_file);
    char secs[16];
    uint32_t s = (c->op_timeout + 999) / 1000;
    snprintf(secs, sizeof secs, "%u", s ? s : 1);
    char *argv[16] = {NULL, "start", "-w", "-t", secs, "-D", c->data_dir, "-l", c->log_file};
    size_t k = 9;
    char *opts = start_options(c);
    if (opts == NULL && (c->config_file || (c->options && *c->options))) {
        pgctl__set_err(c, "out of memory");
        return PGW_ENOMEM;
    }
    if (opts != NULL) {
        argv[k++] = "-o";
        argv[k++] = opts;
    }
    argv[k] = NULL;
    /* pg_ctl puts the postmaster in its own session; detaching pg_ctl too
     * keeps our process group's signals away from it */
    int rc = pgctl__run(c, "pg_ctl", argv, c->op_timeout + 10000, true, 0, true, start_done);
    free(opts); /* the child has its copy */
    return rc;
}

int pgctl_start(struct pgctl *c, const char *options, uint32_t timeout_ms, pgctl_done_cb cb,
                void *ctx)
{
    int rc = pgctl__begin(c, OP_START, cb, ctx, timeout_ms);
    if (rc)
        return rc;
    if (options && !(c->options = strdup(options))) {
        pgctl__set_err(c, "out of memory");
        return pgctl__abort_begin(c, PGW_ENOMEM);
    }
    rc = spawn_start(c);
    if (rc)
        return pgctl__abort_begin(c, rc);
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
            pgctl__op_done(c, rc);
        return;
    }
    pgctl__op_done(c, status);
}

static void stop_poll(struct pgctl *c)
{
    if (!pg_pid_alive(c->stop_pid)) {
        /* A postmaster that died of SIGKILL leaves its children running
         * (each in a session of its own): an immediate stop is over when
         * every process of the instance is gone. */
        struct pginst_kill_result r;
        pginst_kill(&c->inst, 0, &r);
        if (r.found > 0 && !c->orphans_said) {
            c->orphans_said = true;
            log_warn("pg", "%u processes of %s outlived their postmaster: SIGKILL", r.found,
                     c->data_dir);
        }
        if (r.left == 0) {
            stop_finished(c, PGW_OK);
            return;
        }
    }
    if (uv_now(c->loop) >= c->deadline) {
        if (!c->sent_kill) {
            /* a hung (SIGSTOPped) postmaster ignores SIGQUIT, and passes
             * nothing on to its children */
            log_warn("pg", "postmaster %d did not stop in time: SIGKILL to every process of %s",
                     (int)c->stop_pid, c->data_dir);
            struct pginst_kill_result r;
            pginst_kill(&c->inst, 0, &r);
            kill(c->stop_pid, SIGKILL);
            c->sent_kill = true;
            c->deadline = uv_now(c->loop) + 5000;
        } else {
            pgctl__set_err(c, "processes of %s (postmaster %d) survived SIGKILL", c->data_dir,
                           (int)c->stop_pid);
            pgctl__op_done(c, PGW_ETIMEDOUT);
            return;
        }
    }
    c->step = ST_STOP_WAIT;
    uv_timer_start(&c->timer, pgctl__on_timer, 20, 0);
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
        pgctl__child_failed(c, "pg_ctl stop", r);
        pgctl__op_done(c, r->status);
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
        pgctl__defer_done(c, PGW_OK);
        return PGW_OK;
    }
    c->stop_pid = pf.pid;
    if (c->mode == PGCTL_STOP_IMMEDIATE) {
        /* the fencing path: no program to start, signal right now */
        log_info("pg", "immediate stop of postmaster %d (%s)", (int)pf.pid, c->data_dir);
        if (kill(pf.pid, SIGQUIT) != 0 && errno != ESRCH) {
            pgctl__set_err(c, "cannot signal postmaster %d: %s", (int)pf.pid, strerror(errno));
            return PGW_EIO;
        }
        c->sent_kill = false;
        c->orphans_said = false;
        /* fencing must be quick: a postmaster that ignores SIGQUIT (hung,
         * SIGSTOPped) gets SIGKILL after a short grace, not the full timeout */
        if (c->op_timeout > IMMEDIATE_KILL_AFTER_MS)
            c->deadline = uv_now(c->loop) + IMMEDIATE_KILL_AFTER_MS;
        c->step = ST_STOP_WAIT;
        uv_timer_start(&c->timer, pgctl__on_timer, 10, 0);
        return PGW_OK;
    }
    char secs[16];
    uint32_t s = (c->op_timeout + 999) / 1000;
    snprintf(secs, sizeof secs, "%u", s ? s : 1);
    char *argv[] = {NULL, "stop", "-w", "-t", secs, "-D", c->data_dir, "-m",
                    (char *)pgctl_stop_mode_name(c->mode), NULL};
    return pgctl__run(c, "pg_ctl", argv, c->op_timeout + 5000, true, 0, false, stop_done);
}

int pgctl_stop(struct pgctl *c, enum pgctl_stop_mode mode, uint32_t timeout_ms, pgctl_done_cb cb,
               void *ctx)
{
    int rc = pgctl__begin(c, OP_STOP, cb, ctx, timeout_ms);
    if (rc)
        return rc;
    c->mode = mode;
    rc = spawn_stop(c);
    if (rc)
        return pgctl__abort_begin(c, rc);
    return PGW_OK;
}

int pgctl_restart(struct pgctl *c, enum pgctl_stop_mode mode, const char *options,
                  uint32_t timeout_ms, pgctl_done_cb cb, void *ctx)
{
    int rc = pgctl__begin(c, OP_RESTART, cb, ctx, timeout_ms);
    if (rc)
        return rc;
    c->mode = mode;
    if (options && !(c->options = strdup(options))) {
        pgctl__set_err(c, "out of memory");
        return pgctl__abort_begin(c, PGW_ENOMEM);
    }
    rc = spawn_stop(c);
    if (rc)
        return pgctl__abort_begin(c, rc);
    return PGW_OK;
}

/* ---- reload --------------------------------------------------------------- */

static void reload_done(struct proc *p, const struct proc_result *r, void *ctx)
{
    (void)p;
    struct pgctl *c = ctx;
    c->proc = NULL;
    if (r->status != PGW_OK)
        pgctl__child_failed(c, "pg_ctl reload", r);
    pgctl__op_done(c, r->status);
}

int pgctl_reload(struct pgctl *c, pgctl_done_cb cb, void *ctx)
{
    int rc = pgctl__begin(c, OP_RELOAD, cb, ctx, 10000);
    if (rc)
        return rc;
    char *argv[] = {NULL, "reload", "-D", c->data_dir, NULL};
    rc = pgctl__run(c, "pg_ctl", argv, 10000, true, 0, false, reload_done);
    if (rc)
        return pgctl__abort_begin(c, rc);
    return PGW_OK;
}

/* ---- promote -------------------------------------------------------------- */

static void promote_poll_done(struct proc *p, const struct proc_result *r, void *ctx)
{
    (void)p;
    struct pgctl *c = ctx;
    c->proc = NULL;
    int rc = pgctl__take_controldata(c, r);
    if (rc == PGW_OK && c->cd.state == PG_CLUSTER_IN_PRODUCTION) {
        log_info("pg", "promoted: %s is in production", c->data_dir);
        pgctl__op_done(c, PGW_OK);
        return;
    }
    if (uv_now(c->loop) >= c->deadline) {
        pgctl__set_err(c, "promote of %s: the control file still says \"%s\" after %u ms", c->data_dir,
                c->have_cd ? c->cd.state_text : "?", (unsigned)c->op_timeout);
        pgctl__op_done(c, PGW_ETIMEDOUT);
        return;
    }
    c->step = ST_PROMOTE_POLL;
    uv_timer_start(&c->timer, pgctl__on_timer, 100, 0);
}

static void promote_ctl_done(struct proc *p, const struct proc_result *r, void *ctx)
{
    (void)p;
    struct pgctl *c = ctx;
    c->proc = NULL;
    if (r->status != PGW_OK) {
        /* "server is not in standby mode" is fine if the control file agrees */
        char tail[600];
        pgctl__flat_tail(r->tail, tail, sizeof tail, 3);
        log_warn("pg", "pg_ctl promote exited %d (%s); checking the control file", r->exit_code,
                 tail);
        if (!pg_postmaster_running(c->data_dir, NULL)) {
            pgctl__child_failed(c, "pg_ctl promote", r);
            pgctl__op_done(c, r->status);
            return;
        }
    }
    c->step = ST_PROMOTE_POLL;
    int rc = pgctl__spawn_controldata(c, promote_poll_done);
    if (rc)
        pgctl__op_done(c, rc);
}

int pgctl_promote(struct pgctl *c, uint32_t timeout_ms, pgctl_done_cb cb, void *ctx)
{
    int rc = pgctl__begin(c, OP_PROMOTE, cb, ctx, timeout_ms);
    if (rc)
        return rc;
    if (!pg_postmaster_running(c->data_dir, NULL)) {
        pgctl__set_err(c, "cannot promote %s: PostgreSQL is not running", c->data_dir);
        return pgctl__abort_begin(c, PGW_EUNAVAIL);
    }
    char secs[16];
    uint32_t s = (c->op_timeout + 999) / 1000;
    snprintf(secs, sizeof secs, "%u", s ? s : 1);
    char *argv[] = {NULL, "promote", "-w", "-t", secs, "-D", c->data_dir, NULL};
    c->step = ST_PROMOTE_CTL;
    rc = pgctl__run(c, "pg_ctl", argv, c->op_timeout + 5000, true, 0, false, promote_ctl_done);
    if (rc)
        return pgctl__abort_begin(c, rc);
    return PGW_OK;
}

/* ---- timer ------------------------------------------------------------------ */

void pgctl__on_timer(uv_timer_t *t)
{
    struct pgctl *c = t->data;
    switch (c->step) {
    case ST_DEFERRED:
        pgctl__op_done(c, c->deferred_status);
        return;
    case ST_STOP_WAIT:
        stop_poll(c);
        return;
    case ST_PROMOTE_POLL: {
        int rc = pgctl__spawn_controldata(c, promote_poll_done);
        if (rc)
            pgctl__op_done(c, rc);
        return;
    }
    case ST_BB_PAUSE:
        pgctl__bb_attempt(c);
        return;
    default:
        return;
    }
}
