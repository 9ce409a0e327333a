/* pgtool: the pg/ module's operations as a CLI for the e2e tests. Each
 * invocation loads a pgwarden YAML configuration, runs ONE operation on a
 * libuv loop and prints one JSON object on stdout ("monitor" prints one
 * JSON line per state change). Exit status 0 on success, 1 on failure,
 * 2 on usage errors. Logs go to stderr.
 *
 *   pgtool bootstrap CONFIG
 *   pgtool adopt CONFIG
 *   pgtool start|reload|promote|controldata|roles CONFIG
 *   pgtool stop CONFIG [fast|immediate|smart]
 *   pgtool clone|follow|rewind-check|rejoin CONFIG HOST PORT
 *   pgtool demote CONFIG MODE HOST PORT
 *   pgtool slots CONFIG MEMBER[,MEMBER...] [IGNORE,...]
 *   pgtool status CONFIG
 *   pgtool monitor CONFIG SECONDS [INTERVAL_MS [PROBE_TIMEOUT_MS]]
 *   pgtool move-aside CONFIG
 */
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/cfg.h"
#include "common/log.h"
#include "pg/lsn.h"
#include "pg/pgctl.h"
#include "pg/pgmon.h"
#include "pg/pgnode.h"

static uv_loop_t *loop;
static struct cfg cfg;
static struct pgnode *node;
static struct pgmon *mon;
static json_t *result;
static int exit_code = 1;
static uv_timer_t guard;
static uv_timer_t stop_timer;
static uint64_t t0;

static void done_common(int status, const char *err)
{
    json_object_set_new(result, "ok", json_boolean(status == 0));
    json_object_set_new(result, "status", json_string(pgw_strerror(status)));
    json_object_set_new(result, "error", json_string(err ? err : ""));
    exit_code = status == 0 ? 0 : 1;
    if (node) {
        pgnode_destroy(node);
        node = NULL;
    }
    if (mon) {
        pgmon_destroy(mon);
        mon = NULL;
    }
    uv_timer_stop(&guard);
    uv_close((uv_handle_t *)&guard, NULL);
}

static void on_done(struct pgnode *n, int status, void *ctx)
{
    (void)ctx;
    done_common(status, pgnode_error(n));
}

static void on_ctl_done(struct pgctl *c, int status, void *ctx)
{
    (void)ctx;
    done_common(status, pgctl_error(c));
}

static const char *verdict_name(enum pgrewind_verdict v)
{
    return v == PGREWIND_NEEDED ? "needed" : v == PGREWIND_NOT_NEEDED ? "not_needed" : "impossible";
}

static void on_rewind_check(struct pgnode *n, int status, const struct pgrewind_decision *d, void *ctx)
{
    (void)ctx;
    if (d) {
        json_object_set_new(result, "verdict", json_string(verdict_name(d->verdict)));
        json_object_set_new(result, "reason", json_string(d->reason));
    }
    done_common(status, pgnode_error(n));
}

static void on_rejoin(struct pgnode *n, int status, const struct pgnode_rejoin_result *r, void *ctx)
{
    (void)ctx;
    json_object_set_new(result, "rewound", json_boolean(r->rewound));
    json_object_set_new(result, "recloned", json_boolean(r->recloned));
    json_object_set_new(result, "needs_reinit", json_boolean(r->needs_reinit));
    json_object_set_new(result, "moved_to", json_string(r->moved_to));
    json_object_set_new(result, "reason", json_string(r->reason));
    done_common(status, pgnode_error(n));
}

static void on_adopt(struct pgnode *n, int status, const struct pgnode_adopt_result *r, void *ctx)
{
    (void)ctx;
    json_object_set_new(result, "was_running", json_boolean(r->was_running));
    json_object_set_new(result, "started", json_boolean(r->started));
    json_object_set_new(result, "in_recovery", json_boolean(r->in_recovery));
    char sysid[32];
    snprintf(sysid, sizeof sysid, "%llu", (unsigned long long)r->system_identifier);
    json_object_set_new(result, "system_identifier", json_string(sysid));
    done_common(status, pgnode_error(n));
}

static void on_controldata(struct pgctl *c, int status, const struct pg_controldata *cd, void *ctx)
{
    (void)ctx;
    if (cd) {
        char b[24], sysid[32];
        snprintf(sysid, sizeof sysid, "%llu", (unsigned long long)cd->system_identifier);
        json_object_set_new(result, "system_identifier", json_string(sysid));
        json_object_set_new(result, "state", json_string(cd->state_text));
        pg_lsn_format(cd->checkpoint_lsn, b, sizeof b);
        json_object_set_new(result, "checkpoint_lsn", json_string(b));
        json_object_set_new(result, "timeline", json_integer(cd->checkpoint_tli));
        json_object_set_new(result, "wal_log_hints", json_boolean(cd->wal_log_hints));
        json_object_set_new(result, "data_checksum_version", json_integer(cd->data_checksum_version));
        json_object_set_new(result, "max_connections", json_integer(cd->max_connections));
    }
    done_common(status, pgctl_error(c));
}

static json_t *lsn_json(pg_lsn l)
{
    char b[24];
    pg_lsn_format(l, b, sizeof b);
    return json_string(b);
}

static json_t *status_json(const struct pg_status *st)
{
    json_t *o = json_object();
    json_object_set_new(o, "state", json_string(pg_run_state_name(st->state)));
    json_object_set_new(o, "error", json_string(st->error));
    json_object_set_new(o, "postmaster_pid", json_integer(st->postmaster_pid));
    json_object_set_new(o, "query_ok", json_boolean(st->query_ok));
    if (st->query_ok) {
        json_object_set_new(o, "server_version", json_integer(st->server_version));
        json_object_set_new(o, "in_recovery", json_boolean(st->in_recovery));
        json_object_set_new(o, "wal_lsn", lsn_json(st->wal_lsn));
        json_object_set_new(o, "received_lsn", lsn_json(st->received_lsn));
        json_object_set_new(o, "replayed_lsn", lsn_json(st->replayed_lsn));
        json_object_set_new(o, "replay_paused", json_boolean(st->replay_paused));
        json_object_set_new(o, "timeline", json_integer(st->timeline));
        char sysid[32];
        snprintf(sysid, sizeof sysid, "%llu", (unsigned long long)st->system_identifier);
        json_object_set_new(o, "system_identifier", json_string(sysid));
        json_object_set_new(o, "pending_restart", json_boolean(st->pending_restart));
        json_object_set_new(o, "postmaster_start_ms", json_integer(st->postmaster_start_ms));
        json_t *rows = json_array();
        for (size_t i = 0; i < st->nrepl; i++) {
            const struct pg_repl_row *r = &st->repl[i];
            json_t *row = json_object();
            json_object_set_new(row, "application_name", json_string(r->application_name));
            json_object_set_new(row, "usename", json_string(r->usename));
            json_object_set_new(row, "client_addr", json_string(r->client_addr));
            json_object_set_new(row, "state", json_string(r->state));
            json_object_set_new(row, "sync_state", json_string(r->sync_state));
            json_object_set_new(row, "replay_lsn", lsn_json(r->replay_lsn));
            json_object_set_new(row, "flush_lsn", lsn_json(r->flush_lsn));
            json_array_append_new(rows, row);
        }
        json_object_set_new(o, "replication", rows);
        if (st->receiver.present) {
            json_t *w = json_object();
            json_object_set_new(w, "status", json_string(st->receiver.status));
            json_object_set_new(w, "sender_host", json_string(st->receiver.sender_host));
            json_object_set_new(w, "sender_port", json_integer(st->receiver.sender_port));
            json_object_set_new(w, "slot_name", json_string(st->receiver.slot_name));
            json_object_set_new(w, "flushed_lsn", lsn_json(st->receiver.flushed_lsn));
            json_object_set_new(w, "received_tli", json_integer(st->receiver.received_tli));
            json_object_set_new(o, "wal_receiver", w);
        }
    }
    return o;
}

static void on_refresh(struct pgmon *m, int status, const struct pg_status *st, void *ctx)
{
    (void)m;
    (void)ctx;
    json_object_set_new(result, "pg", status_json(st));
    done_common(status, st->error);
}

static void on_change(struct pgmon *m, const struct pg_status *st, enum pg_run_state old, void *ctx)
{
    (void)m;
    (void)ctx;
    json_t *o = json_object();
    json_object_set_new(o, "t_ms", json_integer((json_int_t)(uv_now(loop) - t0)));
    json_object_set_new(o, "old", json_string(pg_run_state_name(old)));
    json_object_set_new(o, "state", json_string(pg_run_state_name(st->state)));
    json_object_set_new(o, "error", json_string(st->error));
    char *s = json_dumps(o, JSON_COMPACT);
    printf("%s\n", s);
    fflush(stdout);
    free(s);
    json_decref(o);
}

static void on_monitor_end(uv_timer_t *t)
{
    uv_close((uv_handle_t *)t, NULL);
    json_object_set_new(result, "final", status_json(pgmon_status(mon)));
    done_common(0, "");
}

static void on_guard(uv_timer_t *t)
{
    (void)t;
    fprintf(stderr, "pgtool: overall deadline passed\n");
    fflush(stderr);
    exit(3);
}

static int usage(void)
{
    fprintf(stderr, "usage: pgtool OPERATION CONFIG [ARGS] (see the comment in pgtool.c)\n");
    return 2;
}

static char **split_csv(const char *s)
{
    size_t n = 1;
    for (const char *p = s; *p; p++)
        n += *p == ',';
    char **out = calloc(n + 1, sizeof *out);
    char *copy = strdup(s);
    size_t k = 0;
    for (char *tok = strtok(copy, ","); tok; tok = strtok(NULL, ","))
        out[k++] = strdup(tok);
    free(copy);
    return out;
}

static void free_list(char **l)
{
    for (size_t i = 0; l && l[i]; i++)
        free(l[i]);
    free(l);
}

static int port_arg(const char *s, uint16_t *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s || *end || v <= 0 || v > 65535)
        return -1;
    *out = (uint16_t)v;
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 3)
        return usage();
    signal(SIGPIPE, SIG_IGN);
    const char *op = argv[1];
    struct cfg_error cerr;
    if (cfg_load(argv[2], &cfg, &cerr, NULL) != 0) {
        printf("{\"ok\": false, \"status\": \"invalid input\", \"error\": ");
        json_t *e = json_string(cerr.msg);
        char *s = json_dumps(e, JSON_ENCODE_ANY);
        printf("%s}\n", s);
        free(s);
        json_decref(e);
        return 1;
    }
    loop = uv_default_loop();
    t0 = uv_now(loop);
    result = json_object();
    json_object_set_new(result, "op", json_string(op));
    uv_timer_init(loop, &guard);
    uv_timer_start(&guard, on_guard, 15 * 60 * 1000, 0);
    const struct cfg_dcs *dcs = &cfg.bootstrap.dcs;
    char eb[2048] = "";
    int rc = 0;
    char **list1 = NULL, **list2 = NULL;
    uint16_t port = 0;

    if (strcmp(op, "monitor") == 0 || strcmp(op, "status") == 0) {
        struct pgconn_params p;
        if (pgconf_conn_params(&cfg, PGCONF_SUPERUSER, NULL, 0, "postgres", false, &p) != 0)
            return 1;
        struct pgmon_opts mo = {.data_dir = cfg.postgresql.data_dir, .conn = &p,
                                .interval_ms = 500, .probe_timeout_ms = 2000,
                                .query_timeout_ms = 2000};
        if (strcmp(op, "monitor") == 0) {
            if (argc < 4)
                return usage();
            long secs = strtol(argv[3], NULL, 10);
            if (argc > 4)
                mo.interval_ms = (uint32_t)strtoul(argv[4], NULL, 10);
            if (argc > 5)
                mo.probe_timeout_ms = (uint32_t)strtoul(argv[5], NULL, 10);
            mo.on_change = on_change;
            uv_timer_init(loop, &stop_timer);
            uv_timer_start(&stop_timer, on_monitor_end, (uint64_t)secs * 1000, 0);
        }
        rc = pgmon_new(loop, &mo, &mon);
        pgconn_params_free(&p);
        if (rc == 0)
            rc = pgmon_start(mon);
        if (rc == 0 && strcmp(op, "status") == 0)
            rc = pgmon_refresh(mon, on_refresh, NULL);
        if (rc)
            snprintf(eb, sizeof eb, "monitor: %s", pgw_strerror(rc));
    } else {
        rc = pgnode_new(loop, &cfg, dcs, &node, eb, sizeof eb);
        if (rc == 0) {
            if (strcmp(op, "bootstrap") == 0) {
                rc = pgnode_bootstrap(node, on_done, NULL);
            } else if (strcmp(op, "adopt") == 0) {
                rc = pgnode_adopt(node, on_adopt, NULL);
            } else if (strcmp(op, "start") == 0) {
                rc = pgnode_start(node, on_done, NULL);
            } else if (strcmp(op, "roles") == 0) {
                rc = pgnode_create_roles(node, on_done, NULL);
            } else if (strcmp(op, "stop") == 0) {
                enum pgctl_stop_mode m = PGCTL_STOP_FAST;
                if (argc > 3 && pgctl_stop_mode_parse(argv[3], &m) != 0)
                    return usage();
                rc = pgnode_stop(node, m, on_done, NULL);
            } else if (strcmp(op, "reload") == 0) {
                struct pgconf_write_result res = {0};
                struct pgconf_role role = {0};
                char sig[4200];
                snprintf(sig, sizeof sig, "%s/standby.signal", cfg.postgresql.data_dir);
                rc = 0;
                if (access(sig, F_OK) != 0) /* keep a standby a standby */
                    rc = pgnode_configure(node, &role, &res);
                if (rc == 0) {
                    json_object_set_new(result, "restart_hint", json_boolean(res.restart_hint));
                    rc = pgctl_reload(pgnode_ctl(node), on_ctl_done, NULL);
                }
            } else if (strcmp(op, "promote") == 0) {
                rc = pgnode_promote(node, on_done, NULL);
            } else if (strcmp(op, "controldata") == 0) {
                rc = pgctl_controldata(pgnode_ctl(node), on_controldata, NULL);
            } else if (strcmp(op, "clone") == 0 || strcmp(op, "follow") == 0 ||
                       strcmp(op, "rewind-check") == 0 || strcmp(op, "rejoin") == 0) {
                if (argc < 5 || port_arg(argv[4], &port) != 0)
                    return usage();
                if (strcmp(op, "clone") == 0)
                    rc = pgnode_clone(node, argv[3], port, on_done, NULL);
                else if (strcmp(op, "follow") == 0)
                    rc = pgnode_follow(node, argv[3], port, on_done, NULL);
                else if (strcmp(op, "rewind-check") == 0)
                    rc = pgnode_rewind_check(node, argv[3], port, on_rewind_check, NULL);
                else
                    rc = pgnode_rejoin(node, argv[3], port, on_rejoin, NULL);
            } else if (strcmp(op, "demote") == 0) {
                enum pgctl_stop_mode m;
                if (argc < 6 || pgctl_stop_mode_parse(argv[3], &m) != 0 || port_arg(argv[5], &port))
                    return usage();
                rc = pgnode_demote(node, m, argv[4], port, on_done, NULL);
            } else if (strcmp(op, "slots") == 0) {
                if (argc < 4)
                    return usage();
                list1 = split_csv(argv[3]);
                list2 = argc > 4 ? split_csv(argv[4]) : NULL;
                rc = pgnode_sync_slots(node, (const char *const *)list1, (const char *const *)list2,
                                       on_done, NULL);
            } else if (strcmp(op, "move-aside") == 0) {
                char np[1024] = "";
                rc = pgnode_move_aside(cfg.postgresql.data_dir, np, sizeof np, eb, sizeof eb);
                json_object_set_new(result, "moved_to", json_string(np));
                if (rc == 0)
                    done_common(0, "");
            } else {
                return usage();
            }
            if (rc && !eb[0])
                snprintf(eb, sizeof eb, "%s", pgnode_error(node));
        }
    }
    if (rc)
        done_common(rc, eb);
    uv_run(loop, UV_RUN_DEFAULT);
    char *s = json_dumps(result, JSON_COMPACT);
    printf("%s\n", s);
    free(s);
    json_decref(result);
    free_list(list1);
    free_list(list2);
    int lc = uv_loop_close(loop);
    if (lc != 0)
        fprintf(stderr, "pgtool: loop not closed cleanly (%s)\n", uv_strerror(lc));
    cfg_free(&cfg);
    return exit_code;
}
