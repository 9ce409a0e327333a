/* Child processes on the loop.
 *
 * Happy path: uv_spawn (stdin /dev/null, stdout+stderr pipes) -> lines read
 * and logged as "<name>: <line>" (pg_basebackup's '\r' progress lines count
 * as lines) -> the exit callback and EOF on both pipes -> done callback ->
 * handles closed -> freed in the last close callback.
 * Failure modes: spawn error (synchronous, errbuf names the program and the
 * errno text); exit != 0 or a signal (PGW_ECHILD); the deadline (SIGTERM,
 * then SIGKILL 5 s later; PGW_ETIMEDOUT); proc_cancel (SIGKILL;
 * PGW_ECANCELED). A grandchild keeping our pipes open does not hold us:
 * after the exit we wait at most 2 s for EOF.
 * Every child but a detached one (pg_ctl start, whose postmaster outlives
 * us) leads a session and process group of its own, and the deadline and
 * proc_cancel signal that whole group: a script's children and pgBackRest's
 * helper processes go with it (the child alone was killed before, and a
 * backup's children outlived pgwarden's stop).
 *
 * Ownership: the struct proc belongs to this file; it is freed after the
 * done callback returned, so the caller forgets its pointer in the callback. */
#include "pg/proc.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/child_lines.h"
#include "common/log.h"

extern char **environ;

#define TAIL_MAX 4096
#define KILL_GRACE_MS 5000
#define EOF_GRACE_MS 2000

struct stream {
    uv_pipe_t pipe;
    struct proc *p;
    bool is_stdout;
    bool open;     /* reading, not yet EOF */
    struct child_lines lines;
};

struct proc {
    uv_loop_t *loop;
    uv_process_t process;
    uv_timer_t timer;
    struct stream out, err;
    int open_handles;
    char *name;
    bool log_output;
    size_t capture_max;
    char *captured;
    size_t captured_len;
    char tail[TAIL_MAX + 1];
    size_t tail_len;
    proc_done_cb cb;
    void *ctx;
    bool exited;
    bool done;          /* callback delivered */
    bool timed_out;
    bool canceled;
    bool killed_hard;
    bool own_group;     /* pid is also the process group to signal */
    int64_t exit_status;
    int term_signal;
    int pid;
};

static void on_handle_closed(uv_handle_t *h)
{
    struct proc *p = h->data;
    if (--p->open_handles == 0) {
        free(p->name);
        free(p->captured);
        free(p);
    }
}

static void close_if_open(struct proc *p, uv_handle_t *h)
{
    if (!uv_is_closing(h))
        uv_close(h, on_handle_closed);
    (void)p;
}

static void tail_append(struct proc *p, const char *line, size_t len)
{
    if (len > TAIL_MAX / 2)
        len = TAIL_MAX / 2;
    while (p->tail_len + len + 1 > TAIL_MAX) {
        char *nl = memchr(p->tail, '\n', p->tail_len);
        size_t drop = nl ? (size_t)(nl - p->tail) + 1 : p->tail_len;
        memmove(p->tail, p->tail + drop, p->tail_len - drop);
        p->tail_len -= drop;
    }
    memcpy(p->tail + p->tail_len, line, len);
    p->tail_len += len;
    p->tail[p->tail_len++] = '\n';
    p->tail[p->tail_len] = '\0';
}

static void log_line(void *ctx, const char *line, size_t len)
{
    struct stream *s = ctx;
    struct proc *p = s->p;
    tail_append(p, line, len);
    if (p->log_output || !s->is_stdout)
        log_info("pg", "%s: %s", p->name, line);
    else
        log_debug("pg", "%s: %s", p->name, line);
}

static void maybe_finish(struct proc *p);

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    struct stream *s = (struct stream *)st; /* pipe is the first member */
    struct proc *p = s->p;
    if (nread > 0) {
        if (s->is_stdout && p->capture_max > 0 && p->captured_len < p->capture_max) {
            size_t n = (size_t)nread;
            if (n > p->capture_max - p->captured_len)
                n = p->capture_max - p->captured_len;
            memcpy(p->captured + p->captured_len, buf->base, n);
            p->captured_len += n;
            p->captured[p->captured_len] = '\0';
        }
        child_lines_feed(&s->lines, buf->base, (size_t)nread, log_line, s);
    }
    if (buf->len > 0)
        free(buf->base);
    if (nread < 0) {
        child_lines_flush(&s->lines, log_line, s);
        if (s->open) {
            s->open = false;
            uv_read_stop(st);
        }
        maybe_finish(p);
    }
}

static void finish(struct proc *p)
{
    if (p->done)
        return;
    p->done = true;
    child_lines_flush(&p->out.lines, log_line, &p->out);
    child_lines_flush(&p->err.lines, log_line, &p->err);
    struct proc_result r;
    memset(&r, 0, sizeof r);
    r.exit_code = p->term_signal ? -1 : (int)p->exit_status;
    r.term_signal = p->term_signal;
    if (p->canceled)
        r.status = PGW_ECANCELED;
    else if (p->timed_out)
        r.status = PGW_ETIMEDOUT;
    else if (p->exit_status != 0 || p->term_signal != 0)
        r.status = PGW_ECHILD;
    else
        r.status = PGW_OK;
    r.tail = p->tail;
    r.output = p->captured ? p->captured : "";
    r.output_len = p->captured_len;
    if (r.status != PGW_OK && !p->canceled)
        log_debug("pg", "%s (pid %d) finished: %s, exit %d, signal %d", p->name, p->pid,
                  pgw_strerror(r.status), r.exit_code, r.term_signal);
    if (p->cb)
        p->cb(p, &r, p->ctx);
    uv_timer_stop(&p->timer);
    close_if_open(p, (uv_handle_t *)&p->timer);
    close_if_open(p, (uv_handle_t *)&p->out.pipe);
    close_if_open(p, (uv_handle_t *)&p->err.pipe);
    close_if_open(p, (uv_handle_t *)&p->process);
}

/* The whole group while it may hold something of ours; after the leader
 * was reaped its group lives on only through its descendants (the id
 * cannot be taken by a new group while they do), else ESRCH. */
static void kill_child(struct proc *p, int sig)
{
    if (p->own_group && kill(-(pid_t)p->pid, sig) == 0)
        return;
    if (!p->exited)
        uv_process_kill(&p->process, sig);
}

static void on_timer(uv_timer_t *t)
{
    struct proc *p = t->data;
    if (p->exited) {
        /* EOF grace over: a grandchild holds our pipes; stop waiting. */
        finish(p);
        return;
    }
    if (!p->timed_out && !p->canceled) {
        p->timed_out = true;
        log_warn("pg", "%s (pid %d) overran its deadline: SIGTERM, SIGKILL in %d s", p->name,
                 p->pid, KILL_GRACE_MS / 1000);
        kill_child(p, SIGTERM);
        uv_timer_start(&p->timer, on_timer, KILL_GRACE_MS, 0);
        return;
    }
    if (!p->killed_hard) {
        p->killed_hard = true;
        log_warn("pg", "%s (pid %d) still running: SIGKILL", p->name, p->pid);
        kill_child(p, SIGKILL);
        uv_timer_start(&p->timer, on_timer, KILL_GRACE_MS, 0);
    }
}

static void maybe_finish(struct proc *p)
{
    if (!p->exited || p->done)
        return;
    if (!p->out.open && !p->err.open) {
        finish(p);
        return;
    }
}

static void on_exit_cb(uv_process_t *proc, int64_t exit_status, int term_signal)
{
    struct proc *p = proc->data;
    p->exited = true;
    p->exit_status = exit_status;
    p->term_signal = term_signal;
    uv_timer_stop(&p->timer);
    if (p->out.open || p->err.open)
        uv_timer_start(&p->timer, on_timer, EOF_GRACE_MS, 0);
    maybe_finish(p);
}

static char **build_env(char *const *extra)
{
    size_t nenv = 0, nextra = 0;
    while (environ && environ[nenv])
        nenv++;
    while (extra && extra[nextra])
        nextra++;
    char **env = calloc(nenv + nextra + 1, sizeof *env);
    if (!env)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < nenv; i++) {
        const char *eq = strchr(environ[i], '=');
        size_t klen = eq ? (size_t)(eq - environ[i]) : strlen(environ[i]);
        bool overridden = false;
        for (size_t j = 0; j < nextra; j++)
            if (strncmp(extra[j], environ[i], klen) == 0 && extra[j][klen] == '=')
                overridden = true;
        if (!overridden)
            env[k++] = environ[i];
    }
    for (size_t j = 0; j < nextra; j++)
        env[k++] = extra[j];
    env[k] = NULL;
    return env;
}

int proc_spawn(uv_loop_t *loop, const struct proc_spec *spec, proc_done_cb cb, void *ctx,
               struct proc **out, char *errbuf, size_t errlen)
{
    if (out)
        *out = NULL;
    if (!spec || !spec->file || !spec->argv || !spec->argv[0]) {
        snprintf(errbuf, errlen, "proc_spawn: no program given");
        return PGW_EINVAL;
    }
    const char *name = spec->name ? spec->name : spec->argv[0];
    struct proc *p = calloc(1, sizeof *p);
    if (!p) {
        snprintf(errbuf, errlen, "%s: out of memory", name);
        return PGW_ENOMEM;
    }
    p->loop = loop;
    p->name = strdup(name);
    p->log_output = spec->log_output;
    p->capture_max = spec->capture_stdout;
    p->cb = cb;
    p->ctx = ctx;
    if (p->capture_max)
        p->captured = malloc(p->capture_max + 1);
    if (!p->name || (p->capture_max && !p->captured)) {
        free(p->name);
        free(p->captured);
        free(p);
        snprintf(errbuf, errlen, "%s: out of memory", name);
        return PGW_ENOMEM;
    }
    if (p->captured)
        p->captured[0] = '\0';

    char **env = build_env(spec->env_extra);
    if (!env) {
        free(p->name);
        free(p->captured);
        free(p);
        snprintf(errbuf, errlen, "%s: out of memory", name);
        return PGW_ENOMEM;
    }

    uv_pipe_init(loop, &p->out.pipe, 0);
    uv_pipe_init(loop, &p->err.pipe, 0);
    uv_timer_init(loop, &p->timer);
    p->out.pipe.data = p;
    p->err.pipe.data = p;
    p->timer.data = p;
    p->process.data = p;
    p->out.p = p->err.p = p;
    p->out.is_stdout = true;
    p->open_handles = 3;

    uv_stdio_container_t stdio[3];
    stdio[0].flags = UV_IGNORE;
    stdio[1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
    stdio[1].data.stream = (uv_stream_t *)&p->out.pipe;
    stdio[2].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
    stdio[2].data.stream = (uv_stream_t *)&p->err.pipe;

    uv_process_options_t o;
    memset(&o, 0, sizeof o);
    o.file = spec->file;
    o.args = (char **)spec->argv;
    o.env = env;
    o.cwd = spec->cwd;
    o.exit_cb = on_exit_cb;
    o.stdio_count = 3;
    o.stdio = stdio;
    o.flags = UV_PROCESS_DETACHED; /* setsid(): a session and group of its own */

    int rc = uv_spawn(loop, &p->process, &o);
    free(env);
    if (rc != 0) {
        snprintf(errbuf, errlen, "%s: cannot run %s: %s", name, spec->file, uv_strerror(rc));
        log_error("pg", "%s", errbuf);
        /* uv_spawn failed: the process handle still needs closing. */
        p->done = true;
        p->open_handles = 4;
        uv_close((uv_handle_t *)&p->process, on_handle_closed);
        uv_close((uv_handle_t *)&p->out.pipe, on_handle_closed);
        uv_close((uv_handle_t *)&p->err.pipe, on_handle_closed);
        uv_close((uv_handle_t *)&p->timer, on_handle_closed);
        return rc == UV_ENOENT || rc == UV_EACCES ? PGW_ENOTFOUND : PGW_EIO;
    }
    p->open_handles = 4;
    p->pid = p->process.pid;
    p->own_group = !spec->detached;
    p->out.open = p->err.open = true;
    p->out.pipe.data = p;
    p->err.pipe.data = p;
    uv_read_start((uv_stream_t *)&p->out.pipe, child_lines_alloc, on_read);
    uv_read_start((uv_stream_t *)&p->err.pipe, child_lines_alloc, on_read);
    if (spec->timeout_ms)
        uv_timer_start(&p->timer, on_timer, spec->timeout_ms, 0);
    log_debug("pg", "%s started (pid %d)", name, p->pid);
    if (out)
        *out = p;
    return PGW_OK;
}

void proc_signal(struct proc *p, int sig)
{
    if (p && !p->exited && !p->done)
        uv_process_kill(&p->process, sig);
}

void proc_cancel(struct proc *p)
{
    if (!p || p->done)
        return;
    p->canceled = true;
    kill_child(p, SIGKILL);
}

void proc_abandon(struct proc *p)
{
    if (!p || p->done)
        return;
    p->cb = NULL;
    proc_cancel(p);
}

int proc_pid(const struct proc *p)
{
    return p ? p->pid : 0;
}
