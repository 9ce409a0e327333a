/* Shared by the agent's files (agent.c: the state table and lifecycle,
 * agent_lease.c: lease and fencing, agent_actions.c: the table's actions,
 * agent_ops.c: operator requests and graceful stop, agent_sync.c:
 * synchronous replication). Not for other modules. */
#ifndef PGW_HA_AGENT_INTERNAL_H
#define PGW_HA_AGENT_INTERNAL_H

#include "ha/agent_hooks.h"
#include "ha/ha_internal.h"

/* After a failed start, wait this long (times the failure count) before the next try. */
#define START_BACKOFF_MS 2000

void agent_set_state(struct ha *h, const char *s);
/* PostgreSQL was configured without an upstream (a primary, or a standby
 * waiting for one): the next one it follows is pointed at anew. */
void agent_forget_upstream(struct agent *ag);
const struct fsm_member *agent_primary_member(const struct ha *h);
bool agent_am_holder(const struct ha *h);
enum agent_goal agent_compute_goal(const struct ha *h);
void agent_op_begin(struct ha *h, const char *name, const char *state);
void agent_op_end(struct ha *h, int status, const char *what);
void agent_op_finish(struct ha *h, int status);
void agent_pg_done(struct pgnode *n, int status, void *ctx);
bool agent_submit_op(struct ha *h, struct fsm_cmd *c, const char *opname);
bool agent_has_rule(int goal, int local);
void agent_step(struct ha *h);
void agent_fill_report(struct ha *h, struct fsm_report *r);
int agent_init(struct ha *h, char *err, size_t errlen);
bool agent_idle(const struct ha *h);
void agent_close(struct ha *h);
void agent_keeper_sync(struct ha *h);
void agent_lease_file_save(struct ha *h);
void agent_lease_file_restore(struct ha *h);
void agent_lease_step(struct ha *h);
void agent_fence_now(struct ha *h, const char *why);
void agent_kill_postgres(struct ha *h);
/* standby.signal is in the data directory */
bool agent_standby_signal(const struct ha *h);
/* Update what the agent knows of the instance's role from the monitor. */
void agent_observe_role(struct ha *h);
bool agent_watchdog_ready(struct ha *h);
void agent_watchdog_tick(struct ha *h, uint64_t now);
bool agent_must_fence(struct ha *h, enum agent_local local, uint64_t now, const char **why);
void agent_act_none(struct ha *h);
void agent_act_bootstrap(struct ha *h);
void agent_act_adopt(struct ha *h);
void agent_release(struct ha *h, const char *why);
void agent_act_refuse_bootstrap(struct ha *h);
void agent_act_release_nodata(struct ha *h);
void agent_confirm_running(struct ha *h);
void agent_act_confirm_primary(struct ha *h);
void agent_act_promote(struct ha *h);
void agent_act_start_primary(struct ha *h);
void agent_act_report_stopped(struct ha *h);
void agent_act_handover(struct ha *h);
void agent_act_release_hung(struct ha *h);
void agent_act_kill_hung(struct ha *h);
void agent_act_fence_stop(struct ha *h);
const struct fsm_member *agent_upstream_member(const struct ha *h);
void agent_act_clone(struct ha *h);
void agent_act_replace_data(struct ha *h);
void agent_act_rejoin(struct ha *h);
void agent_act_follow(struct ha *h);
void agent_act_start_standby(struct ha *h);
void agent_act_founding_primary(struct ha *h);
void agent_request_done(ha_action_cb *cbp, void **ctxp, int status, const char *msg);
bool agent_operator_step(struct ha *h, enum agent_local local);
void agent_shutdown_step(struct ha *h);
/* standby cluster (agent_standby.c): true when the cluster replicates from
 * a remote primary; the step takes over the holder's actions then (true
 * when it handled this goal/local pair) */
bool agent_standby_mode(const struct ha *h);
bool agent_standby_step(struct ha *h, enum agent_goal goal, enum agent_local local);
/* synchronous replication step on the primary; true when it started work */
bool agent_sync_step(struct ha *h);
/* agent_slots.c: sync this node's replication slots when what it wants
 * changed or the recheck period passed; true when it started work */
bool agent_slots_step(struct ha *h, bool primary);
/* agent_replica.c */
void agent_clone_from(struct ha *h, const struct fsm_member *src);
void agent_act_restore(struct ha *h);
/* A primary runs: assigned and its lease not expired as this node judges it. */
bool agent_primary_up(const struct ha *h);
void agent_bootstrap_failed(struct ha *h, const char *why);
/* true (and the role released) when a bootstrap failed here before */
bool agent_bootstrap_refused(struct ha *h);

#endif
