/* Operator hooks as child processes on the loop (see hooks.h).
 *
 * Happy path: split the command line -> uv_spawn in a new session (setsid:
 * the child leads its own process group) with stdout/stderr pipes -> lines
 * logged as "[hooks] <kind>: <line>" -> exit callback and EOF on both pipes
 * -> the owner's callback -> the run's four handles closed -> freed in the
 * last close callback.
 * Failure modes: a bad command line or a spawn error (synchronous, with the
 * reason; no callback); a non-zero exit or a signal (PGW_ECHILD); the
 * deadline (SIGKILL to the whole group; PGW_ETIMEDOUT); a newer run of the
 * same kind or hooks_cancel (SIGKILL to the group; PGW_ECANCELED); a
 * grandchild that keeps our pipes open after the command exited (we stop
 * waiting for EOF after EOF_GRACE_MS and leave it alone: a callback may
 * start a daemon on purpose); a command that writes without end (after
 * LOG_LINES_MAX lines the rest is read and dropped, so it never blocks on a
 * full pipe); hooks_close while runs are going (they get the grace period,
 * then SIGKILL; no owner callback runs after close).
 *
 * Killing a group by id after its leader was reaped is safe: Linux does not
 * hand out a pid while a process group of that id still has members, and a
 * group without members answers ESRCH. */
#include "ha/hooks.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/child_lines.h"
#include "common/clock.h"
#include "common/log.h"

extern char **environ;

#define LOG_LINES_MAX 1000
#define EOF_GRACE_MS 2000

static const char *const kind_names[HOOK__COUNT] = {
    [HOOK_ON_START] = "on_start",
    [HOOK_ON_STOP] = "on_stop",
    [HOOK_ON_RESTART] = "on_restart",
    [HOOK_ON_RELOAD] = "on_reload",
    [HOOK_ON_ROLE_CHANGE] = "on_role_change",
    [HOOK_PRE_PROMOTE] = "pre_promote",
    [HOOK_BEFORE_STOP] = "before_stop",
};

const char *hooks_kind_name(enum hook_kind k)
{
    return (unsigned)k < HOOK__COUNT ? kind_names[k] : "hook";
}

/* --- the word splitter (shlex.split, POSIX mode) ----------------------------- */

struct words {
    char **v;
    size_t n;
    char *cur;      /* word being built */
    size_t len;
    bool open;      /* a word has started (even an empty quoted one) */
};

static void words_free(struct words *w)
{
    for (size_t i = 0; i < w->n; i++)
        free(w->v[i]);
    free(w->v);
    free(w->cur);
}

static int words_end(struct words *w)
{
    if (!w->open)
        return 0;
    if (w->n + 1 >= HOOKS_MAX_WORDS)
        return PGW_EINVAL;
    w->cur[w->len] = '\0';
    char *word = realloc(w->cur, w->len + 1); /* words_put sized it for the whole line */
    w->v[w->n++] = word != NULL ? word : w->cur;
    w->cur = NULL;
    w->len = 0;
    w->open = false;
    return 0;
}

static int words_put(struct words *w, char c, size_t cap)
{
    if (w->cur == NULL) {
        /* a word is never longer than the line it comes from */
        w->cur = malloc(cap + 1);
        if (w->cur == NULL)
            return PGW_ENOMEM;
    }
    w->open = true;
    if (c != '\0')
        w->cur[w->len++] = c;
    return 0;
}

int hooks_split(const char *line, char ***argv, size_t *argc, char *err, size_t errlen)
{
    *argv = NULL;
    *argc = 0;
    if (errlen > 0)
        err[0] = '\0';
    if (line == NULL) {
        snprintf(err, errlen, "empty command");
        return PGW_EINVAL;
    }
    size_t n = strlen(line);
    if (n > HOOKS_MAX_LINE) {
        snprintf(err, errlen, "command line of %zu bytes (at most %d)", n, HOOKS_MAX_LINE);
        return PGW_EINVAL;
    }
    struct words w = {0};
    w.v = calloc(HOOKS_MAX_WORDS, sizeof *w.v);
    if (w.v == NULL)
        return PGW_ENOMEM;
    enum { NORMAL, SINGLE, DOUBLE } st = NORMAL;
    size_t quote_at = 0;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        char c = line[i];
        switch (st) {
        case NORMAL:
            if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
                rc = words_end(&w);
            } else if (c == '\\') {
                if (i + 1 == n) {
                    snprintf(err, errlen, "no character after the backslash at byte %zu", i + 1);
                    rc = PGW_EINVAL;
                } else {
                    rc = words_put(&w, line[++i], n);
                }
            } else if (c == '\'' || c == '"') {
                st = c == '\'' ? SINGLE : DOUBLE;
                quote_at = i;
                rc = words_put(&w, '\0', n); /* '' is a word of its own */
            } else {
                rc = words_put(&w, c, n);
            }
            break;
        case SINGLE:
            if (c == '\'')
                st = NORMAL;
            else
                rc = words_put(&w, c, n);
            break;
        case DOUBLE:
            if (c == '"') {
                st = NORMAL;
            } else if (c == '\\' && i + 1 < n && (line[i + 1] == '"' || line[i + 1] == '\\')) {
                rc = words_put(&w, line[++i], n);
            } else {
                rc = words_put(&w, c, n); /* other backslashes stay, as in shlex */
            }
            break;
        }
    }
    if (rc == 0 && st != NORMAL) {
        snprintf(err, errlen, "no closing quotation (%c) for the quote at byte %zu",
                 st == SINGLE ? '\'' : '"', quote_at + 1);
        rc = PGW_EINVAL;
    }
    if (rc == 0)
        rc = words_end(&w);
    if (rc == PGW_EINVAL && err[0] == '\0')
        snprintf(err, errlen, "more than %d words", HOOKS_MAX_WORDS - 1);
    if (rc == 0 && w.n == 0) {
        snprintf(err, errlen, "empty command");
        rc = PGW_EINVAL;
    }
    if (rc != 0) {
        if (rc == PGW_ENOMEM)
            snprintf(err, errlen, "out of memory");
        words_free(&w);
        return rc;
    }
    free(w.cur);
    w.v[w.n] = NULL;
    *argv = w.v;
    *argc = w.n;
    return 0;
}

void hooks_argv_free(char **argv)
{
    if (argv == NULL)
        return;
    for (size_t i = 0; argv[i] != NULL; i++)
        free(argv[i]);
    free(argv);
}

/* --- runs ---------------------------------------------------------------------- */

struct hook_run;

struct stream {
    uv_pipe_t pipe; /* first member: the handle's address is the stream's */
    struct hook_run *run;
    bool open;
    struct child_lines lines;
};

struct hook_run {
    struct hooks *hk;
    struct hook_run *next;
    enum hook_kind kind;
    uv_process_t process;
    uv_timer_t timer; /* the deadline, then the EOF grace */
    struct stream out, err;
    int open_handles;
    int pid;
    uint64_t started_ms, exited_ms;
    unsigned lines;
    bool exited, reported, timed_out, canceled;
    int64_t exit_status;
    int term_signal;
    hook_done_cb cb;
    void *ctx;
};

struct hooks {
    uv_loop_t *loop;
    struct hook_run *runs;               /* every run whose handles are not all closed */
    struct hook_run *current[HOOK__COUNT]; /* the newest run of each kind, until reported */
    uv_timer_t grace;                    /* hooks_close: then SIGKILL what is left */
    bool closing, grace_closed;
    void (*close_done)(void *);
    void *close_ctx;
};

static void kill_group(struct hook_run *r)
{
    if (r->pid <= 0)
        return;
    if (kill(-r->pid, SIGKILL) != 0 && errno != ESRCH)
        log_warn("hooks", "%s: cannot kill process group %d: %s", hooks_kind_name(r->kind), r->pid,
                 strerror(errno));
    if (!r->exited)
        uv_process_kill(&r->process, SIGKILL); /* in case the child had left its group */
}

static void grace_closed(uv_handle_t *h)
{
    struct hooks *hk = h->data;
    void (*done)(void *) = hk->close_done;
    void *ctx = hk->close_ctx;
    free(hk);
    if (done != NULL)
        done(ctx);
}

static void maybe_closed(struct hooks *hk)
{
    if (!hk->closing || hk->runs != NULL || hk->grace_closed)
        return;
    hk->grace_closed = true;
    uv_timer_stop(&hk->grace);
    uv_close((uv_handle_t *)&hk->grace, grace_closed);
}

static void run_handle_closed(uv_handle_t *h)
{
    struct hook_run *r = h->data;
    if (--r->open_handles > 0)
        return;
    struct hooks *hk = r->hk;
    for (struct hook_run **pp = &hk->runs; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == r) {
            *pp = r->next;
            break;
        }
    }
    free(r);
    maybe_closed(hk);
}

static void close_run(struct hook_run *r)
{
    uv_handle_t *hs[] = {(uv_handle_t *)&r->process, (uv_handle_t *)&r->timer,
                         (uv_handle_t *)&r->out.pipe, (uv_handle_t *)&r->err.pipe};
    for (size_t i = 0; i < sizeof hs / sizeof hs[0]; i++)
        if (!uv_is_closing(hs[i]))
            uv_close(hs[i], run_handle_closed);
}

static void log_line(void *ctx, const char *line, size_t len)
{
    (void)len;
    struct hook_run *r = ((struct stream *)ctx)->run;
    if (++r->lines < LOG_LINES_MAX)
        log_info("hooks", "%s: %s", hooks_kind_name(r->kind), line);
    else if (r->lines == LOG_LINES_MAX)
        log_warn("hooks", "%s: more than %d lines of output; not logging the rest",
                 hooks_kind_name(r->kind), LOG_LINES_MAX);
}

static void finish(struct hook_run *r)
{
    if (r->reported)
        return;
    r->reported = true;
    child_lines_flush(&r->out.lines, log_line, &r->out);
    child_lines_flush(&r->err.lines, log_line, &r->err);
    struct hook_result res = {
        .exit_code = r->term_signal ? -1 : (int)r->exit_status,
        .term_signal = r->term_signal,
        .ran_ms = r->exited_ms - r->started_ms,
    };
    if (r->canceled)
        res.status = PGW_ECANCELED;
    else if (r->timed_out)
        res.status = PGW_ETIMEDOUT;
    else if (r->exit_status != 0 || r->term_signal != 0)
        res.status = PGW_ECHILD;
    else
        res.status = PGW_OK;
    const char *name = hooks_kind_name(r->kind);
    if (res.status == PGW_OK)
        log_info("hooks", "%s: exited with 0 after %llu ms", name, (unsigned long long)res.ran_ms);
    else if (res.status == PGW_ECANCELED)
        log_info("hooks", "%s (pid %d) killed: superseded or cancelled", name, r->pid);
    else if (res.status == PGW_ETIMEDOUT)
        log_warn("hooks", "%s (pid %d) killed at its deadline after %llu ms", name, r->pid,
                 (unsigned long long)res.ran_ms);
    else if (r->term_signal != 0)
        log_warn("hooks", "%s: killed by signal %d", name, r->term_signal);
    else
        log_warn("hooks", "%s: exited with %d", name, res.exit_code);
    struct hooks *hk = r->hk;
    if (hk->current[r->kind] == r)
        hk->current[r->kind] = NULL;
    hook_done_cb cb = r->cb;
    void *ctx = r->ctx;
    r->cb = NULL;
    close_run(r); /* before the callback: it may start the next run of this kind */
    if (cb != NULL && !hk->closing)
        cb(ctx, &res);
}

static void maybe_finish(struct hook_run *r)
{
    if (r->exited && !r->out.open && !r->err.open)
        finish(r);
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    struct stream *s = (struct stream *)st;
    if (nread > 0)
        child_lines_feed(&s->lines, buf->base, (size_t)nread, log_line, s);
    if (buf->len > 0)
        free(buf->base);
    if (nread < 0) {
        child_lines_flush(&s->lines, log_line, s);
        if (s->open) {
            s->open = false;
            uv_read_stop(st);
        }
        maybe_finish(s->run);
    }
}

static void on_timer(uv_timer_t *t)
{
    struct hook_run *r = t->data;
    if (r->exited) {
        finish(r); /* EOF grace over: a grandchild holds our pipes */
        return;
    }
    if (!r->timed_out && !r->canceled) {
        r->timed_out = true;
        log_warn("hooks", "%s (pid %d) overran its deadline: killing its process group",
                 hooks_kind_name(r->kind), r->pid);
        kill_group(r);
    }
}

static void on_exit_cb(uv_process_t *p, int64_t exit_status, int term_signal)
{
    struct hook_run *r = p->data;
    r->exited = true;
    r->exited_ms = clock_now(&clock_monotonic);
    r->exit_status = exit_status;
    r->term_signal = term_signal;
    uv_timer_stop(&r->timer);
    if (r->out.open || r->err.open)
        uv_timer_start(&r->timer, on_timer, EOF_GRACE_MS, 0);
    maybe_finish(r);
}

static size_t env_key_len(const char *e)
{
    const char *eq = strchr(e, '=');
    return eq != NULL ? (size_t)(eq - e) : strlen(e);
}

/* Our environment without the secrets pgwarden itself was given there, plus
 * `extra` ("NAME=value", each replacing a variable of that name). The array
 * points into environ and extra: valid until either changes. */
static char **hook_env(const char *const *extra)
{
    size_t n = 0, x = 0;
    while (environ != NULL && environ[n] != NULL)
        n++;
    while (extra != NULL && extra[x] != NULL)
        x++;
    char **env = calloc(n + x + 1, sizeof *env);
    if (env == NULL)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const char *e = environ[i];
        size_t klen = env_key_len(e);
        if (strncmp(e, "PGWARDEN_", 9) == 0 && memmem(e, klen, "PASSWORD", 8) != NULL)
            continue;
        bool replaced = false;
        for (size_t j = 0; j < x && !replaced; j++)
            replaced = env_key_len(extra[j]) == klen && strncmp(extra[j], e, klen) == 0;
        if (!replaced)
            env[k++] = environ[i];
    }
    for (size_t j = 0; j < x; j++)
        env[k++] = (char *)extra[j];
    env[k] = NULL;
    return env;
}

int hooks_new(uv_loop_t *loop, struct hooks **out)
{
    *out = NULL;
    struct hooks *hk = calloc(1, sizeof *hk);
    if (hk == NULL)
        return PGW_ENOMEM;
    hk->loop = loop;
    uv_timer_init(loop, &hk->grace);
    hk->grace.data = hk;
    *out = hk;
    return PGW_OK;
}

bool hooks_running(const struct hooks *hk, enum hook_kind kind)
{
    return (unsigned)kind < HOOK__COUNT && hk->current[kind] != NULL;
}

int hooks_pid(const struct hooks *hk, enum hook_kind kind)
{
    return hooks_running(hk, kind) ? hk->current[kind]->pid : 0;
}

void hooks_cancel(struct hooks *hk, enum hook_kind kind)
{
    if ((unsigned)kind >= HOOK__COUNT || hk->current[kind] == NULL)
        return;
    struct hook_run *r = hk->current[kind];
    hk->current[kind] = NULL;
    if (r->reported)
        return;
    r->canceled = true;
    kill_group(r);
    /* Only a grandchild kept the pipes open: report now, but from the loop,
     * never from inside this call (or the hooks_run that superseded it). */
    if (r->exited)
        uv_timer_start(&r->timer, on_timer, 0, 0);
}

/* argv = the command's words, then the appended arguments. */
static char **build_argv(char **words, size_t nwords, const char *const *args)
{
    size_t nargs = 0;
    while (args != NULL && args[nargs] != NULL)
        nargs++;
    char **v = calloc(nwords + nargs + 1, sizeof *v);
    if (v == NULL)
        return NULL;
    memcpy(v, words, nwords * sizeof *v);
    for (size_t i = 0; i < nargs; i++)
        v[nwords + i] = (char *)args[i];
    return v;
}

int hooks_run(struct hooks *hk, const struct hook_spec *spec, hook_done_cb cb, void *ctx,
              char *err, size_t errlen)
{
    const char *name = hooks_kind_name(spec->kind);
    if (hk->closing) {
        snprintf(err, errlen, "%s: not started: shutting down", name);
        return PGW_ECANCELED;
    }
    if ((unsigned)spec->kind >= HOOK__COUNT || spec->timeout_ms == 0) {
        snprintf(err, errlen, "%s: invalid hook (kind %d, timeout %u ms)", name, (int)spec->kind,
                 spec->timeout_ms);
        return PGW_EINVAL;
    }
    char **words;
    size_t nwords;
    char why[256] = "";
    int rc = hooks_split(spec->command, &words, &nwords, why, sizeof why);
    if (rc != 0) {
        snprintf(err, errlen, "postgresql.%s%s: cannot split the command line: %s",
                 spec->kind <= HOOK_ON_ROLE_CHANGE ? "callbacks." : "", name, why);
        return rc;
    }
    struct hook_run *r = calloc(1, sizeof *r);
    char **argv = build_argv(words, nwords, spec->args);
    char **env = hook_env(spec->env);
    if (r == NULL || argv == NULL || env == NULL) {
        free(r);
        free(argv);
        free(env);
        hooks_argv_free(words);
        snprintf(err, errlen, "%s: out of memory", name);
        return PGW_ENOMEM;
    }
    /* Patroni kills a callback still running when the next one of its kind
     * comes: what it was doing is out of date. */
    if (hk->current[spec->kind] != NULL) {
        log_info("hooks", "%s: a newer call replaces the one still running (pid %d)", name,
                 hk->current[spec->kind]->pid);
        hooks_cancel(hk, spec->kind);
    }
    r->hk = hk;
    r->kind = spec->kind;
    r->cb = cb;
    r->ctx = ctx;
    r->out.run = r->err.run = r;
    uv_pipe_init(hk->loop, &r->out.pipe, 0);
    uv_pipe_init(hk->loop, &r->err.pipe, 0);
    uv_timer_init(hk->loop, &r->timer);
    r->out.pipe.data = r->err.pipe.data = r->timer.data = r->process.data = r;

    uv_stdio_container_t stdio[3];
    stdio[0].flags = UV_IGNORE;
    stdio[1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
    stdio[1].data.stream = (uv_stream_t *)&r->out.pipe;
    stdio[2].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
    stdio[2].data.stream = (uv_stream_t *)&r->err.pipe;
    uv_process_options_t o;
    memset(&o, 0, sizeof o);
    o.file = argv[0];
    o.args = argv;
    o.env = env;
    o.exit_cb = on_exit_cb;
    o.stdio_count = 3;
    o.stdio = stdio;
    o.flags = UV_PROCESS_DETACHED; /* setsid: its own process group, to kill as a whole */
    r->started_ms = clock_now(&clock_monotonic);
    rc = uv_spawn(hk->loop, &r->process, &o);
    free(env);
    r->open_handles = 4;
    r->next = hk->runs;
    hk->runs = r;
    if (rc != 0) {
        snprintf(err, errlen, "%s: cannot run %s: %s", name, argv[0], uv_strerror(rc));
        free(argv);
        hooks_argv_free(words);
        r->reported = true;
        close_run(r); /* the process handle needs closing even though spawn failed */
        return rc == UV_ENOENT || rc == UV_EACCES ? PGW_ENOTFOUND : PGW_EIO;
    }
    r->pid = r->process.pid;
    /* The command's own words may hold something private (a token for a
     * cloud API): only the program and our arguments are logged. */
    char shown[512];
    size_t off = (size_t)snprintf(shown, sizeof shown, "%s%s", argv[0], nwords > 1 ? " ..." : "");
    for (size_t i = nwords; argv[i] != NULL && off < sizeof shown; i++)
        off += (size_t)snprintf(shown + off, sizeof shown - off, " %s", argv[i]);
    log_info("hooks", "%s: started %s (pid %d)", name, shown, r->pid);
    free(argv);
    hooks_argv_free(words);
    r->out.open = r->err.open = true;
    uv_read_start((uv_stream_t *)&r->out.pipe, child_lines_alloc, on_read);
    uv_read_start((uv_stream_t *)&r->err.pipe, child_lines_alloc, on_read);
    uv_update_time(hk->loop); /* the deadline counts from the spawn, not the last tick */
    uv_timer_start(&r->timer, on_timer, spec->timeout_ms, 0);
    hk->current[spec->kind] = r;
    return PGW_OK;
}

static void on_grace(uv_timer_t *t)
{
    struct hooks *hk = t->data;
    for (struct hook_run *r = hk->runs; r != NULL; r = r->next) {
        if (r->reported)
            continue;
        log_warn("hooks", "%s (pid %d) still running at shutdown: killing its process group",
                 hooks_kind_name(r->kind), r->pid);
        r->canceled = true;
        kill_group(r);
        if (r->exited)
            finish(r);
    }
}

void hooks_close(struct hooks *hk, uint32_t grace_ms, void (*done)(void *ctx), void *ctx)
{
    if (hk->closing)
        return;
    hk->closing = true;
    hk->close_done = done;
    hk->close_ctx = ctx;
    for (struct hook_run *r = hk->runs; r != NULL; r = r->next)
        r->cb = NULL;
    for (int k = 0; k < HOOK__COUNT; k++)
        hk->current[k] = NULL;
    if (hk->runs == NULL) {
        maybe_closed(hk);
        return;
    }
    log_info("hooks", "waiting up to %u ms for running hooks to finish", grace_ms);
    uv_update_time(hk->loop);
    uv_timer_start(&hk->grace, on_grace, grace_ms, 0);
}
