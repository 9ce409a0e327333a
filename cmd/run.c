/* pgwarden run: the daemon. One libuv loop for everything: Raft, the REST
 * API, PostgreSQL monitoring and control, timers.
 *
 * Start: refuse root -> read the config -> the start-up checks validate
 * shares (ha/preflight.h) -> logging -> lock -> fence keeper -> REST server -> Raft
 * (cluster_start) -> HA. Signals: SIGTERM/SIGINT stop gracefully (a primary
 * hands its role over first), SIGHUP re-reads the configuration and reports
 * what changed. Exit 0 after a clean stop (uv_loop_close() == 0), 1 on a
 * start failure or a fatal runtime error. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <uv.h>

#include "api/api.h"
#include "api/http_server.h"
#include "build_info.h"
#include "cmd/cmd.h"
#include "common/cfg.h"
#include "common/dirlock.h"
#include "common/httpc.h"
#include "common/log.h"
#include "common/loopstat.h"
#include "common/sdnotify.h"
#include "ha/ha.h"
#include "ha/keeper.h"
#include "ha/preflight.h"
#include "raft/cluster.h"
#include "raft/fsm.h"
#include "raft/submit.h"
#include "raft/tls_link.h" /* raft TLS */

struct daemon {
    uv_loop_t loop;
    struct cfg cfgs[2]; /* current and previous: handlers borrow the current one */
    int cur;
    struct fsm fsm;
    struct submitter *sub;
    struct http_server *http;
    struct http_server *health_http; /* tls: restapi.health_listen (plain HTTP probes) */
    struct httpc_tls_opts tls;       /* tls: for calls to other members' APIs */
    struct cluster *cluster;
    struct cluster *closed_cluster;
    struct tls_link_ctx *raft_tls; /* raft TLS: NULL = plain TCP on the Raft port */
    struct ha *ha;
    struct keeper *keeper;
    int lock_fd;   /* raft.data_dir/pgwarden.lock, held until exit */
    bool started;  /* start_everything succeeded */
    struct api_ctx api;
    uv_signal_t sigterm, sigint, sighup;
    uv_timer_t watch; /* fatal-error watch */
    uv_timer_t sd_watchdog; /* sdnotify: WATCHDOG=1 keep-alives */
    struct loopstat loopstat; /* event-loop busy time, for /metrics */
    int exit_code;
    bool stopping;
    int stage;
};

static struct cfg *cur_cfg(struct daemon *d)
{
    return &d->cfgs[d->cur];
}

static void usage(FILE *out)
{
    fprintf(out, "Usage: pgwarden run -c FILE\n\n"
                 "Run the pgwarden supervisor for this node in the foreground.\n\n"
                 "Options:\n"
                 "  -c, --config FILE   configuration file (YAML, Patroni-compatible keys)\n"
                 "  -h, --help          show this help\n\n"
                 "Signals: SIGTERM/SIGINT stop gracefully (a primary hands over first),\n"
                 "SIGHUP re-reads the configuration. Refuses to run as root.\n");
}

/* --- shutdown sequence --------------------------------------------------------- */

static void next_stage(struct daemon *d);

static void stage_done(void *ctx)
{
    next_stage(ctx);
}

static void handle_closed(uv_handle_t *h)
{
    (void)h;
}

/* Each stage waits for the previous one: graceful HA stop -> HA close ->
 * submitter -> Raft -> REST server -> handles. The REST server goes last so
 * forwarded commands still get their answers while Raft closes. */
static void next_stage(struct daemon *d)
{
    switch (d->stage++) {
    case 0:
        if (d->ha != NULL) {
            ha_shutdown(d->ha, stage_done, d);
            return;
        }
        /* fallthrough */
    case 1:
        d->stage = 2;
        /* The handlers read the HA state, the submitter and Raft, which
         * close from here on; the servers stay up until Raft is closed
         * (see above) but answer 503 from now on. */
        http_server_drain(d->http, "pgwarden is shutting down");
        http_server_drain(d->health_http, "pgwarden is shutting down");
        if (d->ha != NULL) {
            ha_close(d->ha, stage_done, d);
            return;
        }
        /* fallthrough */
    case 2:
        d->stage = 3;
        if (d->sub != NULL) {
            submitter_close(d->sub, stage_done, d);
            return;
        }
        /* fallthrough */
    case 3:
        d->stage = 4;
        if (d->cluster != NULL) {
            cluster_close(d->cluster, stage_done, d);
            return;
        }
        /* fallthrough */
    case 4:
        d->stage = 5;
        d->closed_cluster = d->cluster; /* freed once the loop has stopped */
        d->cluster = NULL;
        if (d->health_http != NULL) { /* tls: closes with the loop's other handles */
            http_server_close(d->health_http, NULL, NULL);
            d->health_http = NULL;
        }
        if (d->http != NULL) {
            http_server_close(d->http, stage_done, d);
            return;
        }
        /* fallthrough */
    case 5:
        d->stage = 6;
        d->http = NULL;
        d->sub = NULL;
        uv_close((uv_handle_t *)&d->sigterm, handle_closed);
        uv_close((uv_handle_t *)&d->sigint, handle_closed);
        uv_close((uv_handle_t *)&d->sighup, handle_closed);
        uv_close((uv_handle_t *)&d->watch, handle_closed);
        uv_close((uv_handle_t *)&d->sd_watchdog, handle_closed); /* sdnotify */
        loopstat_close(&d->loopstat);
        log_info("main", "stopped");
        return;
    default:
        return;
    }
}

/* sdnotify: the longest a graceful stop can take with the timings in force,
 * sent as EXTEND_TIMEOUT_USEC so that systemd does not kill pgwarden in the
 * middle of a handover (the unit's TimeoutStopSec= is only a floor). The
 * steps, each bounded: the primary's handover (ha_shutdown allows
 * 4 x ttl + 10 s, ttl from the cluster's dynamic configuration), the
 * before_stop callback and pg_ctl stop (postgresql.pg_ctl_timeout each, pg_ctl
 * 5 s more), then closing Raft and the REST server (the margin). */
#define STOP_HANDOVER_EXTRA_MS 10000u
#define STOP_PGCTL_EXTRA_MS 5000u
#define STOP_MARGIN_MS 15000u

static uint64_t stop_budget_usec(struct daemon *d)
{
    const struct cfg *c = cur_cfg(d);
    uint64_t ttl = d->ha != NULL ? ha_dcs(d->ha)->ttl_ms : c->bootstrap.dcs.ttl_ms;
    uint64_t pgctl = c->postgresql.pg_ctl_timeout_ms != 0 ? c->postgresql.pg_ctl_timeout_ms : 60000;
    uint64_t ms = 4 * ttl + STOP_HANDOVER_EXTRA_MS + pgctl + STOP_PGCTL_EXTRA_MS + STOP_MARGIN_MS;
    if (c->postgresql.before_stop != NULL)
        ms += pgctl;
    return ms * 1000;
}

static void begin_stop(struct daemon *d, int exit_code, const char *why)
{
    if (exit_code > d->exit_code)
        d->exit_code = exit_code;
    if (d->stopping)
        return;
    d->stopping = true;
    log_info("main", "stopping: %s", why);
    sdnotify_stopping(); /* sdnotify */
    sdnotify_extend_timeout(stop_budget_usec(d)); /* sdnotify */
    next_stage(d);
}

static void on_term(uv_signal_t *s, int signum)
{
    struct daemon *d = s->data;
    begin_stop(d, 0, signum == SIGINT ? "SIGINT" : "SIGTERM");
}

/* --- SIGHUP ---------------------------------------------------------------------- */

static void diff_line(const char *line, void *ctx)
{
    (void)ctx;
    log_info("main", "config changed: %s", line);
}

/* tls: re-read restapi.certfile/keyfile/cafile for new connections (also
 * when the configuration is unchanged: a certificate renewed in place). A
 * failure keeps the running certificate and refuses the whole reload. */
static int reload_tls(struct daemon *d, const struct cfg *next, char *errbuf, size_t errlen)
{
    const struct cfg_restapi *ra = &next->restapi;
    if (d->http == NULL)
        return PGW_OK;
    if (http_server_is_tls(d->http) != (ra->certfile != NULL)) {
        log_warn("main", "reload: restapi.certfile: turning HTTPS %s takes effect only after a "
                 "restart", ra->certfile != NULL ? "on" : "off");
        return PGW_OK;
    }
    if (ra->certfile == NULL)
        return PGW_OK;
    char err[768];
    if (http_server_reload_tls(d->http, ra->certfile, ra->keyfile, ra->cafile, ra->verify_client,
                               err, sizeof err) != 0) {
        log_error("main", "reload: keeping the running configuration and certificate: "
                  "restapi TLS: %s", err);
        snprintf(errbuf, errlen, "restapi TLS: %s", err);
        return PGW_EINVAL;
    }
    return PGW_OK;
}

static bool same_path(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/* raft TLS: re-read the running raft.certfile/keyfile/cafile (certificates
 * renewed in place) for new Raft connections; other paths, or turning TLS
 * on or off, need a restart. A failure keeps the running certificate and
 * refuses the whole reload, as for restapi TLS. */
static int reload_raft_tls(struct daemon *d, const struct cfg *next, char *errbuf, size_t errlen)
{
    const struct cfg_raft *a = &cur_cfg(d)->raft, *b = &next->raft;
    if (!same_path(a->certfile, b->certfile) || !same_path(a->keyfile, b->keyfile) ||
        !same_path(a->cafile, b->cafile))
        log_warn("main", "reload: raft.certfile/keyfile/cafile changes take effect only after a "
                 "restart");
    if (d->raft_tls == NULL)
        return PGW_OK;
    char err[768];
    if (tls_link_ctx_reload(d->raft_tls, err, sizeof err) != 0) {
        log_error("main", "reload: keeping the running configuration and certificate: raft TLS: "
                  "%s", err);
        snprintf(errbuf, errlen, "raft TLS: %s", err);
        return PGW_EINVAL;
    }
    log_info("main", "reload: raft TLS files re-read for new connections");
    return PGW_OK;
}

/* Re-read the configuration file (SIGHUP, POST /reload). A bad file keeps
 * the running configuration. */
static int do_reload(void *vd, char *errbuf, size_t errlen)
{
    struct daemon *d = vd;
    int next = 1 - d->cur;
    struct cfg_error err;
    struct cfg_warnings warn = {0};
    cfg_free(&d->cfgs[next]);
    if (cfg_load(cur_cfg(d)->path, &d->cfgs[next], &err, &warn) != 0) {
        log_error("main", "reload: keeping the running configuration: %s", err.msg);
        snprintf(errbuf, errlen, "%s", err.msg);
        cfg_warnings_free(&warn);
        return PGW_EINVAL;
    }
    for (size_t i = 0; i < warn.n; i++)
        log_warn("cfg", "%s", warn.items[i]);
    cfg_warnings_free(&warn);
    if (reload_tls(d, &d->cfgs[next], errbuf, errlen) != 0) /* tls */
        return PGW_EINVAL;
    if (reload_raft_tls(d, &d->cfgs[next], errbuf, errlen) != 0) /* raft TLS */
        return PGW_EINVAL;
    size_t n = cfg_diff(cur_cfg(d), &d->cfgs[next], diff_line, NULL);
    if (n == 0) {
        log_info("main", "reload: configuration unchanged");
        return PGW_OK;
    }
    const struct cfg *a = cur_cfg(d), *b = &d->cfgs[next];
    if (strcmp(a->raft.self_addr, b->raft.self_addr) != 0 || strcmp(a->raft.data_dir, b->raft.data_dir) != 0 ||
        strcmp(a->name, b->name) != 0 || strcmp(a->scope, b->scope) != 0)
        log_warn("main", "reload: name, scope and raft.* changes take effect only after a restart");
    d->cur = next;
    (void)log_configure(&cur_cfg(d)->log);
    d->api.cfg = cur_cfg(d);
    httpc_tls_from_cfg(cur_cfg(d), &d->tls); /* tls: strings of the current cfg */
    if (d->ha != NULL)
        ha_set_config(d->ha, cur_cfg(d));
    log_info("main", "reload: %zu setting(s) changed and applied", n);
    return PGW_OK;
}

static void on_hup(uv_signal_t *s, int signum)
{
    (void)signum;
    char err[CFG_ERR_MAX];
    sdnotify_reloading(); /* sdnotify: around the reload */
    (void)do_reload(s->data, err, sizeof err);
    sdnotify_ready(NULL);
}

/* --- wiring -------------------------------------------------------------------- */

static void on_fsm_change(struct fsm *f, const struct fsm_cmd *cmd, const struct fsm_result *res,
                          void *ctx)
{
    struct daemon *d = ctx;
    (void)f;
    (void)res;
    /* Reports arrive every tick from every member: no need to re-run the
     * whole HA step for them. */
    if (d->ha != NULL && (cmd == NULL || cmd->op != FSM_OP_MEMBER_REPORT))
        ha_kick(d->ha);
}

static void on_cluster_event(struct cluster *c, enum cluster_role role, void *ctx)
{
    struct daemon *d = ctx;
    (void)c;
    (void)role;
    if (d->ha != NULL)
        ha_kick(d->ha);
}

/* sdnotify: the loop turns, tell systemd (WatchdogSec=) */
static void sd_watchdog_cb(uv_timer_t *t)
{
    (void)t;
    sdnotify_watchdog();
}

static void watch_cb(uv_timer_t *t)
{
    struct daemon *d = t->data;
    const char *fatal = d->cluster != NULL ? cluster_fatal_error(d->cluster) : NULL;
    if (fatal != NULL)
        begin_stop(d, 1, fatal);
}

/* Join hook: ask the leader (found by probing partners) to add this node. */
struct join_req {
    struct cluster *c;
    cluster_join_done_fn done;
};

static void join_http_done(const struct httpc_response *resp, void *ctx)
{
    struct join_req *j = ctx;
    char msg[256];
    if (resp->status != 0) {
        j->done(j->c, resp->status, 0, resp->error);
    } else {
        json_t *b = json_loadb(resp->body, resp->body_len, 0, NULL);
        const json_t *id = json_object_get(b, "id");
        if (resp->http_status == 200 && json_is_integer(id)) {
            j->done(j->c, 0, (uint64_t)json_integer_value(id), "");
        } else {
            const char *e = json_string_value(json_object_get(b, "error"));
            snprintf(msg, sizeof msg, "HTTP %d: %s", resp->http_status, e != NULL ? e : "no reason");
            j->done(j->c, PGW_EREFUSED, 0, msg);
        }
        json_decref(b);
    }
    free(j);
}

static int join_cluster(struct cluster *c, const char *leader_api, const char *name,
                        const char *raft_addr, cluster_join_done_fn done, void *ctx)
{
    struct daemon *d = ctx;
    struct join_req *j = malloc(sizeof *j);
    if (j == NULL)
        return PGW_ENOMEM;
    j->c = c;
    j->done = done;
    char url[512];
    snprintf(url, sizeof url, "%s/raft/members", leader_api);
    json_t *body = json_pack("{s:s, s:s}", "name", name, "raft_addr", raft_addr);
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    struct httpc_opts o = {
        .method = "POST", .url = url, .body = text, .body_len = text ? strlen(text) : 0,
        .auth_user = cur_cfg(d)->restapi.auth_username,
        .auth_password = cur_cfg(d)->restapi.auth_password, .timeout_ms = 5000,
        .tls = d->tls, /* tls */
    };
    char err[256];
    int rc = httpc_request_start(&d->loop, &o, join_http_done, j, NULL, err, sizeof err);
    free(text);
    if (rc != 0)
        free(j);
    return rc;
}

/* tls: restapi.health_listen, plain HTTP with the health routes only. */
static int start_health_listener(struct daemon *d)
{
    const struct cfg *cfg = cur_cfg(d);
    if (cfg->restapi.health_listen.host == NULL)
        return 0;
    struct http_server_opts ho = {
        .host = cfg->restapi.health_listen.host,
        .port = cfg->restapi.health_listen.port,
        .request_timeout_ms = cfg->restapi.request_timeout_ms,
        .max_connections = cfg->restapi.max_connections,
        .server_name = "pgwarden/" PGW_VERSION,
    };
    char err[1024];
    if (http_server_start(&d->loop, &ho, &d->health_http, err, sizeof err) != 0) {
        log_error("main", "restapi.health_listen: %s", err);
        return 1;
    }
    if (api_register_probes(d->health_http, &d->api) != 0) {
        log_error("main", "cannot register the health-check routes");
        return 1;
    }
    log_info("main", "health checks (plain HTTP) on %s:%u", ho.host,
             http_server_port(d->health_http));
    return 0;
}

static int start_everything(struct daemon *d)
{
    const struct cfg *cfg = cur_cfg(d);
    char err[1024];
    fsm_init(&d->fsm, &clock_monotonic);
    d->fsm.on_change = on_fsm_change;
    d->fsm.on_change_ctx = d;

    struct submitter_opts so = {
        .loop = &d->loop, .member = cfg->name, .auth_user = cfg->restapi.auth_username,
        .auth_password = cfg->restapi.auth_password, .tls = &d->tls, /* tls */
    };
    httpc_tls_from_cfg(cfg, &d->tls); /* tls */
    if (submitter_create(&so, &d->sub) != 0) {
        log_error("main", "out of memory");
        return 1;
    }

    struct http_server_opts ho = {
        .host = cfg->restapi.listen.host,
        .port = cfg->restapi.listen.port,
        .request_timeout_ms = cfg->restapi.request_timeout_ms,
        .max_connections = cfg->restapi.max_connections,
        .server_name = "pgwarden/" PGW_VERSION,
        /* tls: HTTPS when restapi.certfile/keyfile are set */
        .tls_certfile = cfg->restapi.certfile, .tls_keyfile = cfg->restapi.keyfile,
        .tls_cafile = cfg->restapi.cafile, .tls_verify_client = cfg->restapi.verify_client,
    };
    if (http_server_start(&d->loop, &ho, &d->http, err, sizeof err) != 0) {
        log_error("main", "restapi.listen: %s", err);
        return 1;
    }
    log_info("main", "REST API listening on %s:%u", cfg->restapi.listen.host, http_server_port(d->http));

    unsigned et, hb;
    cluster_timing_from_ttl(cfg->bootstrap.dcs.ttl_ms, &et, &hb);
    const char *partners[64];
    size_t np = cfg->raft.partner_addrs.n < 64 ? cfg->raft.partner_addrs.n : 64;
    for (size_t i = 0; i < np; i++)
        partners[i] = cfg->raft.partner_addrs.items[i];
    char api_url[300];
    const struct cfg_hostport *ca = &cfg->restapi.connect_address;
    snprintf(api_url, sizeof api_url, "%s://%s:%u", cfg->restapi.certfile != NULL ? "https" : "http",
             ca->host, ca->port); /* tls: as ha/ha.c registers it */
    struct cluster_opts co = {
        .loop = &d->loop,
        .scope = cfg->scope,
        .name = cfg->name,
        .data_dir = cfg->raft.data_dir,
        .self_addr = cfg->raft.self_addr,
        .partners = partners,
        .n_partners = np,
        .api_url = api_url,
        .sec = {.secret = (const uint8_t *)cfg->raft.password,
                .secret_len = cfg->raft.password != NULL ? strlen(cfg->raft.password) : 0},
        .election_timeout_ms = et,
        .heartbeat_ms = hb,
        .fsm = &d->fsm,
        .clock = &clock_monotonic,
        .on_event = on_cluster_event,
        .join = join_cluster,
        .ctx = d,
    };
    if (cfg->raft.certfile != NULL) { /* raft TLS */
        char terr[768];
        if (tls_link_ctx_new(cfg->raft.certfile, cfg->raft.keyfile, cfg->raft.cafile,
                             &d->raft_tls, terr, sizeof terr) != 0) {
            log_error("main", "raft TLS (raft.certfile/keyfile/cafile): %s", terr);
            return 1;
        }
        co.sec.tls = d->raft_tls;
        log_info("main", "raft TLS on: certificate %s, CA %s", cfg->raft.certfile,
                 cfg->raft.cafile);
    }
    if (cluster_start(&co, &d->cluster, err, sizeof err) != 0) {
        log_error("main", "%s", err);
        return 1;
    }
    submitter_set_cluster(d->sub, d->cluster);

    struct ha_opts hao = {
        .loop = &d->loop, .cfg = cfg, .cluster = d->cluster, .fsm = &d->fsm, .sub = d->sub,
        .clock = &clock_monotonic, .keeper = d->keeper,
    };
    if (ha_start(&hao, &d->ha, err, sizeof err) != 0) {
        log_error("main", "%s", err);
        return 1;
    }
    d->api = (struct api_ctx){
        .loop = &d->loop, .cfg = cfg, .cluster = d->cluster, .fsm = &d->fsm, .ha = d->ha,
        .sub = d->sub, .server = d->http, .reload = do_reload, .reload_ctx = d,
        .loopstat = &d->loopstat,
    };
    if (api_register(d->http, &d->api) != 0) {
        log_error("main", "cannot register the REST routes");
        return 1;
    }
    if (start_health_listener(d) != 0) /* tls */
        return 1;
    return 0;
}

int cmd_run(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *path = NULL;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c': path = optarg; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "pgwarden run: unexpected argument \"%s\"\n", argv[optind]);
        return 2;
    }
    if (path == NULL) {
        fprintf(stderr, "pgwarden run: -c FILE is required\n");
        usage(stderr);
        return 2;
    }
    if (geteuid() == 0) {
        fprintf(stderr, "pgwarden run: refusing to run as root: PostgreSQL refuses root, and the "
                        "supervisor runs as the user that owns the data directory "
                        "(e.g. runuser -u postgres -- pgwarden run -c %s)\n", path);
        return 1;
    }
    struct daemon *d = calloc(1, sizeof *d);
    if (d == NULL)
        return 1;
    d->lock_fd = -1;
    struct cfg_error err;
    struct cfg_warnings warn = {0};
    if (cfg_load(path, &d->cfgs[0], &err, &warn) != 0) {
        fprintf(stderr, "pgwarden: %s\n", err.msg);
        cfg_warnings_free(&warn);
        free(d);
        return 1;
    }
    /* What run needs of this machine, checked as `pgwarden validate` checks
     * it (same function, same messages) before anything is created. */
    char perr[2048];
    if (preflight_check(&d->cfgs[0], 0, &warn, perr, sizeof perr) != 0) {
        fprintf(stderr, "pgwarden: %s\n", perr);
        cfg_free(&d->cfgs[0]);
        cfg_warnings_free(&warn);
        free(d);
        return 1;
    }
    if (log_configure(&d->cfgs[0].log) != 0) {
        cfg_free(&d->cfgs[0]);
        cfg_warnings_free(&warn);
        free(d);
        return 1;
    }
    for (size_t i = 0; i < warn.n; i++)
        log_warn("cfg", "%s", warn.items[i]);
    cfg_warnings_free(&warn);
    log_info("main", "pgwarden %s starting: member %s of cluster %s%s", PGW_VERSION, d->cfgs[0].name,
             d->cfgs[0].scope, d->cfgs[0].witness || !d->cfgs[0].postgresql.present ? " (witness)" : "");

    /* One pgwarden per raft.data_dir, checked before anything touches the
     * fence: a second instance started by mistake must not take the fence
     * keeper's page over, or disarm it when it then fails to start. */
    const struct cfg *c0 = &d->cfgs[0];
    char lerr[4400];
    if (cluster_prepare_data_dir(c0->raft.data_dir, lerr, sizeof lerr) != 0) {
        log_error("main", "%s", lerr);
        goto fail_early;
    }
    if (dirlock_take(c0->raft.data_dir, "pgwarden.lock", &d->lock_fd, lerr, sizeof lerr) != 0) {
        log_error("main", "%s", lerr);
        goto fail_early;
    }
    if (!c0->witness && c0->postgresql.present &&
        preflight_make_data_dir_parents(c0, lerr, sizeof lerr) != 0) {
        log_error("main", "%s", lerr);
        goto fail_early;
    }
    /* The fence keeper is forked now, before the event loop starts any
     * thread: it outlives a stopped or killed pgwarden (ha/keeper.h). */
    if (!c0->witness && c0->postgresql.present) {
        char kerr[512];
        if (keeper_start(c0->raft.data_dir, c0->postgresql.data_dir, &d->keeper, kerr,
                         sizeof kerr) != 0) {
            log_error("main", "%s", kerr);
            goto fail_early;
        }
        log_info("main", "fence keeper running as pid %d", (int)keeper_pid(d->keeper));
    }

    /* A peer closing a socket must not kill us (libraft notes, pitfall 1). */
    signal(SIGPIPE, SIG_IGN);
    uv_loop_init(&d->loop);
    loopstat_start(&d->loop, &d->loopstat);
    uv_signal_init(&d->loop, &d->sigterm);
    uv_signal_init(&d->loop, &d->sigint);
    uv_signal_init(&d->loop, &d->sighup);
    d->sigterm.data = d->sigint.data = d->sighup.data = d;
    uv_signal_start(&d->sigterm, on_term, SIGTERM);
    uv_signal_start(&d->sigint, on_term, SIGINT);
    uv_signal_start(&d->sighup, on_hup, SIGHUP);
    uv_timer_init(&d->loop, &d->watch);
    d->watch.data = d;
    uv_timer_start(&d->watch, watch_cb, 200, 200);
    uv_timer_init(&d->loop, &d->sd_watchdog); /* sdnotify */

    if (start_everything(d) != 0) {
        if (d->keeper != NULL)
            log_warn("main", "start-up failed: the fence keeper goes on guarding the deadline it "
                     "found (%s)", keeper_deadline(d->keeper) ? "armed" : "none: it exits");
        d->exit_code = 1;
        d->stopping = true;
        d->stage = 1; /* nothing to hand over: close what was started */
        next_stage(d);
    } else {
        d->started = true;
        /* sdnotify: REST API listening, Raft started */
        char status[256];
        snprintf(status, sizeof status, "member %s of cluster %s", d->cfgs[0].name, d->cfgs[0].scope);
        sdnotify_ready(status);
        uint64_t wd_ms = sdnotify_watchdog_interval_ms();
        if (wd_ms > 0)
            uv_timer_start(&d->sd_watchdog, sd_watchdog_cb, 0, wd_ms);
    }
    uv_run(&d->loop, UV_RUN_DEFAULT);
    api_status_cache_free(&d->api); /* the REST servers are closed */
    cluster_free(d->closed_cluster);
    tls_link_ctx_free(d->raft_tls); /* raft TLS: after the cluster (and its links) closed */
    /* The keeper is disarmed only when pgwarden can vouch for PostgreSQL; a
     * failed start never touches what it guards. */
    if (d->started && d->ha != NULL && ha_fence_may_disarm(d->ha))
        keeper_stop(d->keeper);
    else
        keeper_detach(d->keeper);
    if (d->ha != NULL)
        ha_free(d->ha);
    fsm_close(&d->fsm);
    int rc = uv_loop_close(&d->loop);
    if (rc != 0) {
        log_error("main", "event loop did not close cleanly: %s", uv_strerror(rc));
        if (d->exit_code == 0)
            d->exit_code = 1;
    }
    int code = d->exit_code;
    cfg_free(&d->cfgs[0]);
    cfg_free(&d->cfgs[1]);
    log_shutdown();
    close(d->lock_fd);
    free(d);
    return code;

fail_early:
    if (d->lock_fd >= 0)
        close(d->lock_fd);
    cfg_free(&d->cfgs[0]);
    log_shutdown();
    free(d);
    return 1;
}
