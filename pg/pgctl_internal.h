/* Internals shared by pgctl.c (process control: start, stop, reload,
 * promote, controldata) and pgctl_data.c (operations that create or
 * rewrite a data directory: initdb, pg_basebackup, pg_rewind, crash
 * recovery). Not for other modules: they use pgctl.h. */
#ifndef PGW_PG_PGCTL_INTERNAL_H
#define PGW_PG_PGCTL_INTERNAL_H

#include "pg/instance.h"
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <uv.h>

#include "pg/pgctl.h"
#include "pg/proc.h"

#define IMMEDIATE_KILL_AFTER_MS 3000

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
    char *config_file; /* --config-file of postgres; NULL = <data_dir>/postgresql.conf */
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
    struct pginst inst; /* every process of the instance: an immediate stop waits for all */
    bool orphans_said;  /* this stop logged the processes that outlived the postmaster */
    char pwfile[256];
    long log_offset;
    bool start_retried; /* once per start, after clearing a stale socket lock */
    char *conninfo;
    char **bb_opts;
    unsigned attempts_left, attempt;
    uint32_t retry_pause_ms;
    bool bb_created_dir;
    bool destroyed;
};

void pgctl__set_err(struct pgctl *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void pgctl__flat_tail(const char *tail, char *out, size_t len, int max_lines);
char *pgctl__path_join(const char *a, const char *b);
/* Start operation op (PGW_EBUSY if one runs); abort_begin undoes it after
 * a synchronous failure; op_done ends it and calls back. */
int pgctl__begin(struct pgctl *c, enum op op, pgctl_done_cb cb, void *ctx, uint32_t timeout_ms);
int pgctl__abort_begin(struct pgctl *c, int status);
void pgctl__op_done(struct pgctl *c, int status);
void pgctl__defer_done(struct pgctl *c, int status);
uint32_t pgctl__remaining(struct pgctl *c);
/* Spawn bin_dir/prog with LC_ALL=C (+ PGPASSFILE); argv[0] is filled in. */
int pgctl__run(struct pgctl *c, const char *prog, char **argv, uint32_t timeout_ms, bool log_output,
               size_t capture, bool detached, proc_done_cb done);
void pgctl__child_failed(struct pgctl *c, const char *what, const struct proc_result *r);
int pgctl__spawn_controldata(struct pgctl *c, proc_done_cb done);
int pgctl__take_controldata(struct pgctl *c, const struct proc_result *r);
void pgctl__on_timer(uv_timer_t *t);
void pgctl__bb_attempt(struct pgctl *c);

#endif
