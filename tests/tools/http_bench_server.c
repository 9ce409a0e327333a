/* A tiny server for bench/http_probe: http_server on 127.0.0.1 (port from
 * argv[1], default 0 = any free port) answering GET/HEAD/OPTIONS /liveness
 * with 200 and a small JSON body, like the daemon's probe endpoints; with
 * --tls CERT KEY it speaks HTTPS (api/http_tls.c). Prints the bound port on
 * stdout, then serves until SIGTERM or SIGINT, when it closes the server and
 * exits 0 with a one-line summary on stderr. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "api/http_server.h"
#include "common/log.h"

struct app {
    uv_loop_t *loop;
    struct http_server *srv;
    uv_signal_t sigterm, sigint;
};

static void h_liveness(struct http_exchange *x, const struct http_request *req, void *ctx)
{
    static const char body[] = "{\"status\":\"ok\"}";
    http_reply(x, 200, "application/json", body, sizeof body - 1);
}

static const struct http_route routes[] = {
    {"/liveness", HTTP_M_PROBE, false, h_liveness},
};

static void on_signal(uv_signal_t *sig, int signum)
{
    struct app *a = sig->data;
    if (a->srv != NULL) {
        struct http_server_stats st;
        http_server_get_stats(a->srv, &st);
        fprintf(stderr,
                "http_bench_server: signal %d: %llu requests, %llu connections accepted, "
                "%llu rejected, %llu timeouts, %llu bad requests, %llu TLS handshake failures\n",
                signum, (unsigned long long)st.requests,
                (unsigned long long)st.connections_accepted,
                (unsigned long long)st.connections_rejected, (unsigned long long)st.timeouts,
                (unsigned long long)st.bad_requests,
                (unsigned long long)st.tls_handshake_failures);
        http_server_close(a->srv, NULL, NULL);
        a->srv = NULL;
    }
    uv_close((uv_handle_t *)&a->sigterm, NULL);
    uv_close((uv_handle_t *)&a->sigint, NULL);
}

int main(int argc, char **argv)
{
    struct app a = {.loop = uv_default_loop()};
    struct http_server_opts o = {.host = "127.0.0.1"};
    char err[256];

    signal(SIGPIPE, SIG_IGN);
    if (argc >= 4 && strcmp(argv[argc - 3], "--tls") == 0) {
        o.tls_certfile = argv[argc - 2];
        o.tls_keyfile = argv[argc - 1];
        argc -= 3;
    }
    if (argc > 2) {
        fprintf(stderr, "usage: %s [port] [--tls CERT KEY]\n", argv[0]);
        return 2;
    }
    if (argc == 2) {
        char *end = NULL;
        long p = strtol(argv[1], &end, 10);
        if (end == argv[1] || *end != '\0' || p < 0 || p > 65535) {
            fprintf(stderr, "http_bench_server: invalid port '%s'\n", argv[1]);
            return 2;
        }
        o.port = (uint16_t)p;
    }
    struct log_settings ls = {.level = LOGL_WARN};
    if (log_configure(&ls) != 0)
        return 1;
    if (http_server_start(a.loop, &o, &a.srv, err, sizeof err) != 0) {
        fprintf(stderr, "http_bench_server: %s\n", err);
        return 1;
    }
    if (http_server_add_routes(a.srv, routes, 1, NULL) != 0) {
        fprintf(stderr, "http_bench_server: cannot add routes\n");
        return 1;
    }
    uv_signal_init(a.loop, &a.sigterm);
    uv_signal_init(a.loop, &a.sigint);
    a.sigterm.data = a.sigint.data = &a;
    uv_signal_start(&a.sigterm, on_signal, SIGTERM);
    uv_signal_start(&a.sigint, on_signal, SIGINT);
    printf("%u\n", http_server_port(a.srv));
    fflush(stdout);
    uv_run(a.loop, UV_RUN_DEFAULT);
    int rc = uv_loop_close(a.loop);
    log_shutdown();
    return rc == 0 ? 0 : 1;
}
