/* Child processes on the loop (uv_spawn, never a shell): initdb, pg_ctl,
 * pg_basebackup, pg_rewind, pg_controldata, callbacks.
 *
 * Happy path: spawn -> stdout/stderr read line by line and logged as
 * "<name>: <line>" (module "pg") -> exit -> callback with the exit status.
 * Failure modes: the program cannot be started (returned synchronously with
 * a message naming the path and errno), it exits non-zero or by a signal
 * (PGW_ECHILD), or it overruns its timeout (SIGTERM, then SIGKILL after 5 s;
 * PGW_ETIMEDOUT). The callback runs exactly once, never from proc_spawn(). */
#ifndef PGW_PG_PROC_H
#define PGW_PG_PROC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "common/status.h"

struct proc;

struct proc_result {
    int status;       /* PGW_OK (exit 0), PGW_ECHILD, PGW_ETIMEDOUT, PGW_ECANCELED */
    int exit_code;    /* valid when the child exited */
    int term_signal;  /* non-zero when killed by a signal */
    const char *tail; /* last lines of output (up to ~4 KiB), for error messages */
    const char *output; /* whole captured stdout (up to capture limit), e.g. pg_controldata */
    size_t output_len;
};

typedef void (*proc_done_cb)(struct proc *p, const struct proc_result *res, void *ctx);

struct proc_spec {
    const char *name;         /* shown in logs: "initdb", "pg_basebackup" */
    const char *file;         /* absolute path of the program */
    char *const *argv;        /* argv[0] included, NULL-terminated */
    char *const *env_extra;   /* "K=V" added to the inherited environment; NULL-terminated or NULL */
    const char *cwd;          /* NULL = inherit */
    uint32_t timeout_ms;      /* 0 = no timeout (avoid) */
    bool log_output;          /* log every line at INFO (progress of long steps) */
    size_t capture_stdout;    /* keep up to this many bytes of stdout in res->output */
    bool detached;            /* for pg_ctl start: child lives beyond us (setsid) */
};

int proc_spawn(uv_loop_t *loop, const struct proc_spec *spec, proc_done_cb cb, void *ctx,
               struct proc **out, char *errbuf, size_t errlen) PGW_MUST_CHECK;

/* Signal the child (e.g. SIGTERM). The callback still runs once. */
void proc_signal(struct proc *p, int sig);
/* Cancel: kill the child; the callback runs with PGW_ECANCELED. */
void proc_cancel(struct proc *p);
/* Kill the child and never call back (the owner is going away). */
void proc_abandon(struct proc *p);
int proc_pid(const struct proc *p);
/* Note: the struct proc is freed by this module after the callback returned. */

#endif
