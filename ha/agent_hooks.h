/* The agent's operator hooks (ha/agent_hooks.c), called from its actions:
 *  - callbacks (postgresql.callbacks.*), run asynchronously as
 *    `<command> <action> <role> <scope>` after the agent changed PostgreSQL;
 *  - pre_promote before pg_ctl promote: the promotion waits for it (the loop
 *    keeps ticking and the lease keeps being renewed); a failure gives the
 *    role back and the controller leaves this member out for ttl;
 *  - before_stop before a graceful stop (switchover, shutdown, restart).
 * Wrappers take the place of the pgnode_* call (or its completion) at the
 * call site, so that each hook point is one line in the action. */
#ifndef PGW_HA_AGENT_HOOKS_H
#define PGW_HA_AGENT_HOOKS_H

#include <stdbool.h>
#include <stdint.h>

#include "common/status.h"
#include "pg/pgnode.h"

struct ha;

/* Callbacks run at most this long (Patroni has no limit). */
#define AGENT_HOOK_CALLBACK_TIMEOUT_MS 60000
/* At shutdown, callbacks still running get this long, then are killed. */
#define AGENT_HOOK_CLOSE_GRACE_MS 5000

/* pgnode_start / pgnode_rejoin / pgnode_clone: on success, on_start with the
 * role it started as; a former primary's data started as a replica gets
 * on_role_change replica instead (as in Patroni: the role changed). Then cb. */
int agent_hook_pg_start(struct ha *h, pgnode_done_cb cb) PGW_MUST_CHECK;
int agent_hook_pg_rejoin(struct ha *h, const char *host, uint16_t port, pgnode_rejoin_cb cb)
    PGW_MUST_CHECK;
int agent_hook_pg_clone(struct ha *h, const char *host, uint16_t port, pgnode_done_cb cb)
    PGW_MUST_CHECK;
/* pgnode_stop: on success, on_stop with the role PostgreSQL had. Then cb. */
int agent_hook_pg_stop(struct ha *h, enum pgctl_stop_mode mode, pgnode_done_cb cb) PGW_MUST_CHECK;
/* Completion of pgnode_promote (in place of agent_pg_done): on success,
 * on_role_change primary. */
void agent_hook_pg_promoted(struct pgnode *n, int status, void *ctx);

/* From completions that have their own callback (bootstrap, adopt): on
 * success, PostgreSQL was started; from_primary as for agent_hook_pg_start. */
void agent_hook_started(struct ha *h, int status, bool from_primary);
/* A fence (SIGQUIT to the postmaster, not through agent_hook_pg_stop) has
 * stopped the primary: on_stop with the role primary. */
void agent_hook_fenced(struct ha *h);
void agent_hook_restarted(struct ha *h, int status);
void agent_hook_reloaded(struct ha *h, int status);

/* In the promotion, once the role and the lease are held, before pg_ctl
 * promote: true when the promotion may go on (no pre_promote configured, or
 * it succeeded for this epoch); false while it runs (the agent is busy) or
 * after it failed (the role is being given back with the reason). */
bool agent_hook_pre_promote(struct ha *h);
/* Before a graceful stop: true when the stop may go on (no before_stop,
 * PostgreSQL not running, or before_stop just finished for this `what` and
 * epoch, whatever its exit code); false while it runs (the agent is busy:
 * the caller's action runs again when it is done). */
bool agent_hook_before_stop(struct ha *h, const char *what);

/* From agent_close: callbacks still running get AGENT_HOOK_CLOSE_GRACE_MS;
 * ha's close waits for them (async_inflight). */
void agent_hooks_close(struct ha *h);

#endif
