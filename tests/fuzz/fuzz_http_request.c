/* Fuzz the HTTP request path (issue 6) end to end: the input is what a
 * client sends on one connection to a real api/http_server.
 *
 * Input format: byte 0 chooses when the client shuts its side down (bit 0
 * set: right after writing, so the server sees the end of input while
 * requests are still out with their handlers and takes the abort path;
 * clear: once the server has gone quiet, so deferred replies reach a live
 * connection and pipelined requests behind them are served). The rest is
 * the byte stream, written in one piece.
 *
 * Happy path, per input: a libuv TCP client connects to the server (started
 * once, on 127.0.0.1, port 0, in this process's loop), writes, shuts down
 * its side and reads until the server closes. The server parses with
 * llhttp, dispatches to the routes below (exact, prefix, a reply deferred
 * to a later loop iteration, one never answered while the client is there)
 * and closes at the client's end of input. The run ends when the client is
 * closed, the server has no connection left and every deferred exchange was
 * answered and freed: nothing carries over to the next input.
 *
 * What fails the run (abort, so libFuzzer keeps the input):
 * - a crash, leak or undefined behaviour anywhere on the path (sanitizers);
 * - the reply stream is not valid HTTP/1.1 (a second llhttp parser, in
 *   response mode, reads everything the server sent);
 * - with the late shutdown, a request handed to a handler that answers
 *   (every route but /never) got no reply;
 * - the input is not finished within INPUT_DEADLINE_MS (a connection the
 *   server does not close after the client's end of input).
 *
 * A real socket rather than a hook inside api/http_conn.c: no production
 * change, and the accept, read, write, shutdown and linger code runs as in
 * the daemon. The client's source address (127.0.0.2-254, chosen by a hash
 * of the input) spreads its TIME_WAIT sockets so that hundreds of thousands
 * of connections do not exhaust the ephemeral ports (Linux also reuses them
 * on loopback: net.ipv4.tcp_tw_reuse = 2, the default).
 *
 * PGW_FUZZ_VERBOSE=1 prints one line per input; PGW_FUZZ_LOG=debug the
 * server's log. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <llhttp.h>
#include <uv.h>

#include "api/http_server.h"
#include "fuzz_util.h"

/* Far above anything a healthy input needs (a few ms): the server closes at
 * the client's end of input, and its own timers are longer than this
 * takes. */
#define INPUT_DEADLINE_MS 10000
#define SERVER_TIMEOUT_MS 3000
/* Loop iterations without progress before the late shutdown. One is enough
 * on loopback (written bytes are readable at once); two for margin. */
#define QUIET_ITERATIONS 2

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uv_loop_t g_loop;
static struct http_server *g_srv;
static struct sockaddr_in g_addr;
static uv_timer_t g_deadline;
static uv_idle_t g_idle;   /* keeps the loop from blocking while settling */
static uv_check_t g_check; /* decides the late shutdown */
static bool g_timed_out;
static bool g_verbose;

/* Per input (zero again when an input ends). */
static unsigned g_deferred;      /* deferred exchanges not yet answered and freed */
static unsigned g_later_pending; /* /later replies not yet sent */
static unsigned g_never;         /* /never exchanges this input */

/* --- routes ----------------------------------------------------------- */

static void h_health(struct http_exchange *x, const struct http_request *req, void *ctx)
{
    (void)ctx;
    char q[64], body[256];
    const char *hv = http_request_header(req, "x-fuzz");
    const char *qv = http_query_param(req, "q", q, sizeof q);
    snprintf(body, sizeof body, "%s|%s|%s|%zu", req->method_name, hv != NULL ? hv : "-",
             qv != NULL ? qv : "-", req->n_headers);
    http_reply(x, 200, "text/plain", body, strlen(body));
}

/* Echo the body with the request's Content-Type and a response header named
 * by the query (?h=name&v=value): the header and content type checks of
 * http_reply get client-chosen text. */
static void h_echo(struct http_exchange *x, const struct http_request *req, void *ctx)
{
    (void)ctx;
    char name[64], value[128];
    const char *hn = http_query_param(req, "h", name, sizeof name);
    const char *hv = http_query_param(req, "v", value, sizeof value);
    if (hn != NULL && hv != NULL)
        http_reply_header(x, hn, hv);
    http_reply(x, 200, http_request_header(req, "content-type"), req->body, req->body_len);
}

/* /s/<status>: any number the client writes, valid or not. */
static void h_status(struct http_exchange *x, const struct http_request *req, void *ctx)
{
    (void)ctx;
    long st = strtol(req->path + 3, NULL, 10);
    if (st < -100000 || st > 100000)
        st = 0;
    http_reply_text(x, (int)st, req->path);
}

struct later {
    uv_timer_t t;
    struct http_exchange *x;
    bool aborted;
    bool armed;
};

static void later_closed(uv_handle_t *h)
{
    free(h->data);
    g_deferred--;
}

static void later_fire(uv_timer_t *t)
{
    struct later *l = t->data;
    if (!l->aborted)
        g_later_pending--;
    /* After an abort this is the required no-op reply that frees x. */
    http_reply(l->x, l->aborted ? 500 : 202, "text/plain", "later", 5);
    l->x = NULL;
    uv_close((uv_handle_t *)&l->t, later_closed);
}

/* Runs from the connection's close callback: answer on a later iteration,
 * as a real action would when its Raft commit arrives. */
static void later_abort(void *ctx)
{
    struct later *l = ctx;
    if (l->armed && !l->aborted)
        g_later_pending--;
    l->aborted = true;
    if (!l->armed) {
        l->armed = true;
        uv_timer_start(&l->t, later_fire, 0, 0);
    }
}

static struct later *later_new(struct http_exchange *x)
{
    struct later *l = calloc(1, sizeof *l);
    FUZZ_CHECK(l != NULL, "out of memory");
    FUZZ_CHECK(uv_timer_init(&g_loop, &l->t) == 0, "uv_timer_init");
    l->t.data = l;
    l->x = x;
    g_deferred++;
    http_exchange_on_abort(x, later_abort, l);
    return l;
}

/* Answered on a later loop iteration, like an action waiting for Raft. */
static void h_later(struct http_exchange *x, const struct http_request *req, void *ctx)
{
    (void)req;
    (void)ctx;
    struct later *l = later_new(x);
    l->armed = true;
    g_later_pending++;
    uv_timer_start(&l->t, later_fire, 0, 0);
}

/* Never answered while the client is there: only the abort path ends it. */
static void h_never(struct http_exchange *x, const struct http_request *req, void *ctx)
{
    (void)req;
    (void)ctx;
    g_never++;
    (void)later_new(x);
}

static const struct http_route routes[] = {
    {"/health", HTTP_M_PROBE, false, h_health},
    {"/echo", HTTP_M_POST | HTTP_M_PUT | HTTP_M_PATCH, false, h_echo},
    {"/s/", HTTP_M_GET | HTTP_M_HEAD | HTTP_M_OPTIONS | HTTP_M_POST | HTTP_M_PUT | HTTP_M_PATCH |
                HTTP_M_DELETE,
     true, h_status},
    {"/later", HTTP_M_GET | HTTP_M_POST | HTTP_M_DELETE, false, h_later},
    {"/never", HTTP_M_GET, true, h_never},
};

/* --- the client ------------------------------------------------------- */

struct client {
    uv_tcp_t tcp;
    uv_connect_t creq;
    uv_write_t wreq;
    uv_shutdown_t sreq;
    const char *out;
    size_t out_len;
    bool late_shutdown;
    bool written, shut, closed;
    int error; /* connect, write or read failure (libuv code) */
    llhttp_t rp; /* the replies, parsed as a client would */
    llhttp_settings_t rps;
    llhttp_errno_t rp_err;
    char rp_reason[128];
    size_t replies; /* final (non-1xx) replies */
    size_t received;
    char head[96]; /* first bytes received, for messages */
    uint64_t sig;  /* progress signature at the last check */
    unsigned quiet;
};

static char g_rbuf[65536];
static struct client *g_client; /* the one being run, for the check handle */

static void client_closed(uv_handle_t *h)
{
    ((struct client *)h->data)->closed = true;
}

static void client_close(struct client *c)
{
    if (!uv_is_closing((uv_handle_t *)&c->tcp))
        uv_close((uv_handle_t *)&c->tcp, client_closed);
}

static void client_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    (void)suggested;
    buf->base = g_rbuf;
    buf->len = sizeof g_rbuf;
}

static void client_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    struct client *c = st->data;
    if (n == 0)
        return;
    if (n < 0) {
        if (n != UV_EOF)
            c->error = (int)n;
        else if (c->rp_err == HPE_OK)
            c->rp_err = llhttp_finish(&c->rp);
        client_close(c);
        return;
    }
    if (c->received < sizeof c->head - 1) {
        size_t k = sizeof c->head - 1 - c->received;
        if (k > (size_t)n)
            k = (size_t)n;
        memcpy(c->head + c->received, buf->base, k);
        c->head[c->received + k] = '\0';
    }
    c->received += (size_t)n;
    if (c->rp_err == HPE_OK) {
        c->rp_err = llhttp_execute(&c->rp, buf->base, (size_t)n);
        if (c->rp_err != HPE_OK) {
            const char *r = llhttp_get_error_reason(&c->rp);
            snprintf(c->rp_reason, sizeof c->rp_reason, "%s", r != NULL ? r : "?");
        }
    }
}

static void client_shut(uv_shutdown_t *req, int status)
{
    struct client *c = req->data;
    if (status < 0 && status != UV_ECANCELED && c->error == 0)
        c->error = status;
}

static void client_shutdown(struct client *c)
{
    if (c->shut || c->closed || uv_is_closing((uv_handle_t *)&c->tcp))
        return;
    c->shut = true;
    if (uv_shutdown(&c->sreq, (uv_stream_t *)&c->tcp, client_shut) != 0)
        client_close(c);
}

static void client_written(uv_write_t *req, int status)
{
    struct client *c = req->data;
    c->written = true;
    if (status < 0) {
        /* The server may refuse early and close (e.g. 431). */
        if (status != UV_ECANCELED && c->error == 0)
            c->error = status;
        client_close(c);
        return;
    }
    if (!c->late_shutdown)
        client_shutdown(c);
}

static void client_connected(uv_connect_t *req, int status)
{
    struct client *c = req->data;
    if (status < 0) {
        c->error = status;
        client_close(c);
        return;
    }
    if (uv_read_start((uv_stream_t *)&c->tcp, client_alloc, client_read) != 0) {
        c->error = UV_EIO;
        client_close(c);
        return;
    }
    if (c->out_len == 0) {
        c->written = true;
        if (!c->late_shutdown)
            client_shutdown(c);
        return;
    }
    uv_buf_t b = uv_buf_init((char *)c->out, (unsigned)c->out_len);
    if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, client_written) != 0)
        client_close(c);
}

static int on_reply_complete(llhttp_t *p)
{
    struct client *c = p->data;
    if (p->status_code >= 200)
        c->replies++;
    return 0;
}

/* Late shutdown: once everything is written and neither side has moved for
 * QUIET_ITERATIONS loop iterations (no bytes received, no request
 * dispatched or refused, no connection change) and no /later reply is
 * due, the server is waiting for input that will not come. */
static void on_check(uv_check_t *h)
{
    (void)h;
    struct client *c = g_client;
    if (c == NULL || !c->late_shutdown || !c->written || c->shut || c->closed)
        return;
    struct http_server_stats st;
    http_server_get_stats(g_srv, &st);
    uint64_t sig = c->received;
    sig = sig * 31 + st.requests;
    sig = sig * 31 + st.bad_requests;
    sig = sig * 31 + st.connections_accepted;
    sig = sig * 31 + st.connections_open;
    sig = sig * 31 + g_deferred;
    if (sig != c->sig || g_later_pending > 0) {
        c->sig = sig;
        c->quiet = 0;
        return;
    }
    if (++c->quiet >= QUIET_ITERATIONS)
        client_shutdown(c);
}

static void noop_idle(uv_idle_t *h)
{
    (void)h;
}

/* --- driver ----------------------------------------------------------- */

static void on_deadline(uv_timer_t *t)
{
    (void)t;
    g_timed_out = true;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_quiet_logs();
    g_verbose = getenv("PGW_FUZZ_VERBOSE") != NULL;
    FUZZ_CHECK(uv_loop_init(&g_loop) == 0, "uv_loop_init");
    FUZZ_CHECK(uv_timer_init(&g_loop, &g_deadline) == 0, "uv_timer_init");
    FUZZ_CHECK(uv_idle_init(&g_loop, &g_idle) == 0, "uv_idle_init");
    FUZZ_CHECK(uv_check_init(&g_loop, &g_check) == 0, "uv_check_init");
    /* A small body limit, so that short inputs reach 413. The header limit
     * stays just above HTTP_MAX_URL (8 KiB) so that both 414 and 431 (by
     * size; by count takes 65 short headers) can be reached; the corpus has
     * an input for each. */
    struct http_server_opts o = {
        .host = "127.0.0.1",
        .port = 0,
        .request_timeout_ms = SERVER_TIMEOUT_MS,
        .idle_timeout_ms = SERVER_TIMEOUT_MS,
        .max_header_bytes = 8400,
        .max_body_bytes = 256,
        .max_connections = 4,
        .server_name = "fuzz",
    };
    char err[256] = "";
    FUZZ_CHECK(http_server_start(&g_loop, &o, &g_srv, err, sizeof err) == 0, "server: %s", err);
    FUZZ_CHECK(http_server_add_routes(g_srv, routes, sizeof routes / sizeof routes[0], NULL) == 0,
               "routes");
    FUZZ_CHECK(uv_ip4_addr("127.0.0.1", http_server_port(g_srv), &g_addr) == 0, "address");
    return 0;
}

static bool input_done(const struct client *c)
{
    struct http_server_stats st;
    http_server_get_stats(g_srv, &st);
    return c->closed && st.connections_open == 0 && g_deferred == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct client *c = calloc(1, sizeof *c);
    FUZZ_CHECK(c != NULL, "out of memory");
    c->late_shutdown = size > 0 && (data[0] & 1) == 0;
    c->out = size > 0 ? (const char *)data + 1 : "";
    c->out_len = size > 0 ? size - 1 : 0;
    llhttp_settings_init(&c->rps);
    c->rps.on_message_complete = on_reply_complete;
    llhttp_init(&c->rp, HTTP_RESPONSE, &c->rps);
    c->rp.data = c;
    c->tcp.data = c;
    c->creq.data = c;
    c->wreq.data = c;
    c->sreq.data = c;
    g_never = 0;
    struct http_server_stats before;
    http_server_get_stats(g_srv, &before);

    FUZZ_CHECK(uv_tcp_init(&g_loop, &c->tcp) == 0, "uv_tcp_init");
    uint32_t h = 2166136261u; /* FNV-1a of the input: the same input, the same address */
    for (size_t i = 0; i < size; i++)
        h = (h ^ data[i]) * 16777619u;
    char src_ip[32];
    struct sockaddr_in sa;
    snprintf(src_ip, sizeof src_ip, "127.0.0.%u", 2 + h % 253);
    FUZZ_CHECK(uv_ip4_addr(src_ip, 0, &sa) == 0, "address %s", src_ip);
    FUZZ_CHECK(uv_tcp_bind(&c->tcp, (const struct sockaddr *)&sa, 0) == 0, "bind %s", src_ip);
    if (uv_tcp_connect(&c->creq, &c->tcp, (const struct sockaddr *)&g_addr, client_connected) !=
        0)
        client_close(c);

    g_client = c;
    g_timed_out = false;
    uv_timer_start(&g_deadline, on_deadline, INPUT_DEADLINE_MS, 0);
    if (c->late_shutdown) {
        uv_idle_start(&g_idle, noop_idle);
        uv_check_start(&g_check, on_check);
    }
    while (!input_done(c) && !g_timed_out) {
        uv_run(&g_loop, UV_RUN_ONCE);
        if (c->shut || c->closed)
            uv_idle_stop(&g_idle); /* from here on the loop may block */
    }
    uv_idle_stop(&g_idle);
    uv_check_stop(&g_check);
    uv_timer_stop(&g_deadline);
    g_client = NULL;

    struct http_server_stats st;
    http_server_get_stats(g_srv, &st);
    FUZZ_CHECK(!g_timed_out,
               "input not finished after %d ms: client %s, %u server connection(s) open, "
               "%u deferred exchange(s) pending",
               INPUT_DEADLINE_MS, c->closed ? "closed" : "open", st.connections_open,
               g_deferred);
    FUZZ_CHECK(g_later_pending == 0, "%u /later replies still counted as due", g_later_pending);
    /* Failing to connect means the machine ran out of ports or descriptors:
     * not a finding, but the run proves nothing either. */
    FUZZ_CHECK(c->error != UV_ECONNREFUSED && c->error != UV_EADDRNOTAVAIL &&
                   c->error != UV_EMFILE && c->error != UV_EADDRINUSE,
               "client cannot connect: %s", uv_strerror(c->error));
    uint64_t dispatched = st.requests - before.requests;
    if (c->error == 0) {
        FUZZ_CHECK(c->rp_err == HPE_OK,
                   "reply stream is not valid HTTP after %zu replies (%zu bytes): %s (%s); "
                   "it starts with: %s",
                   c->replies, c->received, llhttp_errno_name(c->rp_err), c->rp_reason, c->head);
        if (c->late_shutdown)
            FUZZ_CHECK(c->replies + g_never >= dispatched,
                       "%llu requests dispatched (%u to /never) but %zu replies received",
                       (unsigned long long)dispatched, g_never, c->replies);
    }
    if (g_verbose)
        fprintf(stderr,
                "fuzz_http_request: %zu bytes, %s shutdown, %llu dispatched, %zu replies in "
                "%zu bytes, client error %s; reply starts: %s\n",
                c->out_len, c->late_shutdown ? "late" : "early", (unsigned long long)dispatched,
                c->replies, c->received, c->error != 0 ? uv_err_name(c->error) : "none",
                c->head);
    free(c);
    return 0;
}
