/* Operator hooks: commands from the configuration run as child processes on
 * the loop (Patroni's postgresql.callbacks, pre_promote and before_stop).
 *
 * A command line is split into words like Python's shlex.split (POSIX mode,
 * which is what Patroni does): no shell is involved, so `;`, `|`, `$VAR`,
 * globs and redirections are plain characters. An operator who wants a
 * shell writes it: `/bin/sh -c '...'`.
 *
 * Each run is a new session and process group (setsid), so that a deadline,
 * a newer run of the same kind or shutdown can kill the command together
 * with everything it started. stdin is /dev/null; stdout and stderr are
 * logged line by line as "[hooks] <kind>: <line>". The environment is
 * pgwarden's own minus the PGWARDEN_*PASSWORD* variables (secrets given to
 * pgwarden through its environment never reach a hook), plus what the
 * caller adds (hook_spec.env: pre_promote's PGWARDEN_* facts).
 *
 * Ownership: struct hooks belongs to its creator until hooks_close(), after
 * which this module frees it once the last child is gone. */
#ifndef PGW_HA_HOOKS_H
#define PGW_HA_HOOKS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "common/status.h"

struct hooks;

#define HOOKS_MAX_WORDS 256
#define HOOKS_MAX_LINE 65536

enum hook_kind {
    HOOK_ON_START = 0,
    HOOK_ON_STOP,
    HOOK_ON_RESTART,
    HOOK_ON_RELOAD,
    HOOK_ON_ROLE_CHANGE,
    HOOK_PRE_PROMOTE,
    HOOK_BEFORE_STOP,
    HOOK__COUNT
};

/* "on_start", ..., "pre_promote", "before_stop" (the configuration key and,
 * for callbacks, the action argument). */
const char *hooks_kind_name(enum hook_kind k);

/* Split a command line into words (shlex.split, POSIX mode, no comments):
 * blanks separate words; '...' is literal; "..." is literal except that \"
 * and \\ stand for " and \; outside quotes \ makes the next character
 * literal; adjacent parts join into one word; '' is an empty word. On
 * success *argv is a NULL-terminated malloc'd array (free with
 * hooks_argv_free) of *argc >= 1 words. PGW_EINVAL with the reason in err
 * ("no closing quotation (') for the quote at byte 7", "empty command"). */
int hooks_split(const char *line, char ***argv, size_t *argc, char *err, size_t errlen)
    PGW_MUST_CHECK;
void hooks_argv_free(char **argv);

struct hook_result {
    int status;      /* PGW_OK (exit 0), PGW_ECHILD (non-zero exit or a signal),
                        PGW_ETIMEDOUT (killed at its deadline), PGW_ECANCELED
                        (superseded by a newer run of its kind, or hooks_cancel) */
    int exit_code;   /* -1 when killed by a signal */
    int term_signal; /* 0 when it exited */
    uint64_t ran_ms; /* from spawn to exit */
};

typedef void (*hook_done_cb)(void *ctx, const struct hook_result *r);

struct hook_spec {
    enum hook_kind kind;
    const char *command;      /* the configured command line */
    const char *const *args;  /* appended after its words; NULL-terminated, or NULL */
    const char *const *env;   /* "NAME=value" added to the environment (replacing a
                                 variable of that name); NULL-terminated, or NULL */
    uint32_t timeout_ms;      /* deadline: the process group is SIGKILLed; must be > 0 */
};

int hooks_new(uv_loop_t *loop, struct hooks **out) PGW_MUST_CHECK;

/* Start a run. A run of the same kind still going is killed first (its
 * callback gets PGW_ECANCELED). cb (may be NULL) runs exactly once, never
 * from inside this call. Synchronous failure (bad command line, spawn
 * error, closing): PGW_EINVAL / PGW_ENOTFOUND / PGW_EIO / PGW_ECANCELED with
 * the reason in err, and no callback. */
int hooks_run(struct hooks *hk, const struct hook_spec *spec, hook_done_cb cb, void *ctx,
              char *err, size_t errlen) PGW_MUST_CHECK;

/* A run of this kind is going (not yet reported). */
bool hooks_running(const struct hooks *hk, enum hook_kind kind);
/* pid (= process group id) of the current run of this kind, 0 if none. */
int hooks_pid(const struct hooks *hk, enum hook_kind kind);
/* Kill the current run of this kind (its group); its callback gets
 * PGW_ECANCELED on a later iteration. No-op when none. */
void hooks_cancel(struct hooks *hk, enum hook_kind kind);

/* Stop: no callback of any run is invoked from now on; runs still going get
 * grace_ms to finish, then their groups are SIGKILLed. done (may be NULL)
 * runs on a later iteration once every child exited and every handle is
 * closed; hk is freed right after it returns. */
void hooks_close(struct hooks *hk, uint32_t grace_ms, void (*done)(void *ctx), void *ctx);

#endif
