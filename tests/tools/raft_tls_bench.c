/* raft_tls_bench: Raft commit latency of one round, plain TCP vs TLS, over
 * pgwarden's own transport (raft/transport.c, raft/tls_link.c) on
 * 127.0.0.1. Run by bench/raft_tls, which prints the figures.
 *
 * Three libraft nodes in three processes (this one is node 1, the leader;
 * nodes 2 and 3 are this binary again, started with uv_spawn as
 * "--follower"). Node 1 has a short election timeout and the followers a
 * long one, so node 1 leads. One round = raft_apply of a 64-byte entry ->
 * its apply callback (the entry is committed: written to a majority's disk
 * and applied); the next round starts from that callback. After a warm-up,
 * `rounds` rounds per mode; prints min/p50/p90/p99/max. Data dirs and
 * certificates go to a fresh directory under /tmp, removed at the end.
 *
 * Usage: raft_tls_bench [--rounds N] [--mode plain|tls|both]
 * Exit 0 when every mode completed, 1 otherwise, 2 on usage errors. */
#include <errno.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <raft.h>
#include <raft/uv.h>
#include <uv.h>

#include "common/log.h"
#include "raft/tls_link.h"
#include "raft/transport.h"
#include "tests/unit/api/tls_certs.h"

#define ENTRY_BYTES 64
#define WARMUP 100
#define MODE_DEADLINE_MS 120000
#define LEADER_ET_MS 150
#define FOLLOWER_ET_MS 3000

struct node {
    struct raft raft;
    struct raft_io io;
    struct raft_fsm fsm;
    struct raft_uv_transport transport;
    struct tls_link_ctx *tls;
    uint64_t applied;
    bool io_ready, raft_ready, transport_ready;
};

static uv_loop_t loop;

/* --- a counting FSM ---------------------------------------------------------- */

static int fsm_apply(struct raft_fsm *f, const struct raft_buffer *buf, void **result)
{
    struct node *n = f->data;
    (void)buf;
    n->applied++;
    *result = NULL;
    return 0;
}

static int fsm_snapshot(struct raft_fsm *f, struct raft_buffer *bufs[], unsigned *n_bufs)
{
    struct node *n = f->data;
    *bufs = raft_malloc(sizeof **bufs);
    if (*bufs == NULL)
        return RAFT_NOMEM;
    (*bufs)[0].base = raft_malloc(8);
    if ((*bufs)[0].base == NULL) {
        raft_free(*bufs);
        return RAFT_NOMEM;
    }
    memcpy((*bufs)[0].base, &n->applied, 8);
    (*bufs)[0].len = 8;
    *n_bufs = 1;
    return 0;
}

static int fsm_restore(struct raft_fsm *f, struct raft_buffer *buf)
{
    struct node *n = f->data;
    if (buf->len == 8)
        memcpy(&n->applied, buf->base, 8);
    raft_free(buf->base);
    return 0;
}

/* --- node setup -------------------------------------------------------------- */

static void addr_of(char *out, size_t len, int port)
{
    snprintf(out, len, "127.0.0.1:%d", port);
}

static int node_start(struct node *n, int id, const char *base, const int ports[3], bool tls,
                      unsigned et_ms)
{
    memset(n, 0, sizeof *n);
    char dir[512], err[768];
    snprintf(dir, sizeof dir, "%s/d%d", base, id);
    if (tls) {
        char c[512], k[512], a[512], name[16];
        snprintf(name, sizeof name, "node%d", id);
        tls_path(c, sizeof c, base, name, "crt");
        tls_path(k, sizeof k, base, name, "key");
        tls_path(a, sizeof a, base, "ca", "crt");
        if (tls_link_ctx_new(c, k, a, &n->tls, err, sizeof err) != 0) {
            fprintf(stderr, "node %d: %s\n", id, err);
            return -1;
        }
    }
    struct transport_opts to = {
        .loop = &loop, .scope = "bench", .connect_timeout_ms = 1000,
        .handshake_timeout_ms = 2000, .sec = {.tls = n->tls},
    };
    if (transport_setup(&n->transport, &to) != 0)
        return -1;
    n->transport_ready = true;
    n->fsm = (struct raft_fsm){.version = 1, .data = n, .apply = fsm_apply,
                               .snapshot = fsm_snapshot, .restore = fsm_restore};
    char self[32];
    addr_of(self, sizeof self, ports[id - 1]);
    if (raft_uv_init(&n->io, &loop, dir, &n->transport) != 0) {
        fprintf(stderr, "node %d: raft_uv_init: %s\n", id, n->io.errmsg);
        return -1;
    }
    n->io_ready = true;
    raft_uv_set_connect_retry_delay(&n->io, 100);
    if (raft_init(&n->raft, &n->io, &n->fsm, (raft_id)id, self) != 0) {
        fprintf(stderr, "node %d: raft_init: %s\n", id, raft_errmsg(&n->raft));
        return -1;
    }
    n->raft_ready = true;
    raft_set_election_timeout(&n->raft, et_ms);
    raft_set_heartbeat_timeout(&n->raft, LEADER_ET_MS / 10);
    raft_set_pre_vote(&n->raft, true);
    raft_set_snapshot_threshold(&n->raft, 1024);
    raft_set_snapshot_trailing(&n->raft, 128);
    struct raft_configuration conf;
    raft_configuration_init(&conf);
    for (int i = 0; i < 3; i++) {
        char a[32];
        addr_of(a, sizeof a, ports[i]);
        if (raft_configuration_add(&conf, (raft_id)(i + 1), a, RAFT_VOTER) != 0) {
            raft_configuration_close(&conf);
            return -1;
        }
    }
    int rv = raft_bootstrap(&n->raft, &conf);
    raft_configuration_close(&conf);
    if (rv != 0 && rv != RAFT_CANTBOOTSTRAP) {
        fprintf(stderr, "node %d: bootstrap: %s\n", id, raft_strerror(rv));
        return -1;
    }
    if (raft_start(&n->raft) != 0) {
        fprintf(stderr, "node %d: raft_start: %s\n", id, raft_errmsg(&n->raft));
        return -1;
    }
    return 0;
}

static void node_release(struct node *n)
{
    if (n->io_ready)
        raft_uv_close(&n->io);
    if (n->transport_ready)
        transport_free(&n->transport);
    tls_link_ctx_free(n->tls);
    n->io_ready = n->transport_ready = false;
    n->tls = NULL;
}

/* --- follower process -------------------------------------------------------- */

static struct node follower;
static uv_signal_t term_sig;
static uv_timer_t follower_guard;

static void follower_closed(struct raft *r)
{
    (void)r;
    follower.raft_ready = false;
}

static void follower_stop(void)
{
    uv_close((uv_handle_t *)&term_sig, NULL);
    uv_close((uv_handle_t *)&follower_guard, NULL);
    if (follower.raft_ready)
        raft_close(&follower.raft, follower_closed);
}

static void on_term(uv_signal_t *s, int signum)
{
    (void)s;
    (void)signum;
    follower_stop();
}

static void on_follower_guard(uv_timer_t *t)
{
    (void)t;
    fprintf(stderr, "follower: no SIGTERM within %d ms, stopping\n", MODE_DEADLINE_MS + 10000);
    follower_stop();
}

static int run_follower(int id, const char *base, const int ports[3], bool tls)
{
    (void)prctl(PR_SET_PDEATHSIG, SIGTERM); /* the leader process died: stop too */
    uv_loop_init(&loop);
    uv_signal_init(&loop, &term_sig);
    uv_signal_start(&term_sig, on_term, SIGTERM);
    uv_timer_init(&loop, &follower_guard);
    uv_timer_start(&follower_guard, on_follower_guard, MODE_DEADLINE_MS + 10000, 0);
    int rc = node_start(&follower, id, base, ports, tls, FOLLOWER_ET_MS);
    if (rc != 0)
        follower_stop();
    uv_run(&loop, UV_RUN_DEFAULT);
    node_release(&follower);
    return uv_loop_close(&loop) == 0 && rc == 0 ? 0 : 1;
}

/* --- leader and measurement ------------------------------------------------------ */

struct bench {
    struct node leader;
    uv_process_t procs[2];
    int procs_alive;
    uv_timer_t poll, guard;
    unsigned rounds, done;
    double *lat_us;
    uint64_t t_apply;
    struct raft_apply req;
    bool measuring, failed, finished;
    const char *mode;
};

static struct bench B;

static void bench_stop(bool failed);

static void proc_closed(uv_handle_t *h)
{
    (void)h;
}

static void proc_exited(uv_process_t *p, int64_t status, int sig)
{
    if (status != 0 || (sig != 0 && sig != SIGTERM)) {
        fprintf(stderr, "%s: follower exited with status %lld signal %d\n", B.mode,
                (long long)status, sig);
        if (!B.finished)
            B.failed = true;
    }
    B.procs_alive--;
    uv_close((uv_handle_t *)p, proc_closed);
    if (!B.finished)
        bench_stop(true);
}

static void apply_one(void);

static void applied(struct raft_apply *req, int status, void *result)
{
    (void)req;
    (void)result;
    if (B.finished)
        return;
    if (status != 0) {
        fprintf(stderr, "%s: apply failed: %s\n", B.mode, raft_strerror(status));
        bench_stop(true);
        return;
    }
    uint64_t took = uv_hrtime() - B.t_apply;
    if (B.measuring)
        B.lat_us[B.done] = (double)took / 1000.0;
    B.done++;
    if (!B.measuring && B.done == WARMUP) {
        B.measuring = true;
        B.done = 0;
    }
    if (B.measuring && B.done == B.rounds) {
        bench_stop(false);
        return;
    }
    apply_one();
}

static void apply_one(void)
{
    struct raft_buffer buf = {.base = raft_malloc(ENTRY_BYTES), .len = ENTRY_BYTES};
    if (buf.base == NULL) {
        bench_stop(true);
        return;
    }
    memset(buf.base, 0x5a, ENTRY_BYTES);
    B.t_apply = uv_hrtime();
    int rv = raft_apply(&B.leader.raft, &B.req, &buf, 1, applied);
    if (rv != 0) {
        raft_free(buf.base);
        fprintf(stderr, "%s: raft_apply: %s\n", B.mode, raft_strerror(rv));
        bench_stop(true);
    }
}

static void poll_leader(uv_timer_t *t)
{
    if (raft_state(&B.leader.raft) != RAFT_LEADER)
        return;
    uv_timer_stop(t);
    apply_one();
}

static void on_guard(uv_timer_t *t)
{
    (void)t;
    fprintf(stderr, "%s: not done within %d ms (%u rounds measured)\n", B.mode,
            MODE_DEADLINE_MS, B.measuring ? B.done : 0);
    bench_stop(true);
}

static void leader_closed(struct raft *r)
{
    (void)r;
    B.leader.raft_ready = false;
    for (int i = 0; i < 2; i++)
        if (uv_is_active((uv_handle_t *)&B.procs[i]))
            uv_process_kill(&B.procs[i], SIGTERM);
}

static void close_leader(uv_timer_t *t)
{
    (void)t;
    uv_close((uv_handle_t *)&B.guard, NULL);
    if (B.leader.raft_ready)
        raft_close(&B.leader.raft, leader_closed);
    else
        leader_closed(NULL);
}

static void bench_stop(bool failed)
{
    if (B.finished)
        return;
    B.finished = true;
    B.failed = B.failed || failed;
    uv_close((uv_handle_t *)&B.poll, NULL);
    /* Not from inside raft's apply callback: libraft 0.15 closed from
     * there aborted (uv_poll_stop assertion on its closing KAIO poller) in
     * 2 of 2 TLS runs; one loop iteration later it closes cleanly. */
    uv_timer_stop(&B.guard);
    uv_timer_start(&B.guard, close_leader, 0, 0);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int spawn_follower(uv_process_t *p, const char *self, int id, const char *base,
                          const int ports[3], bool tls)
{
    char ids[8], ps[64];
    snprintf(ids, sizeof ids, "%d", id);
    snprintf(ps, sizeof ps, "%d,%d,%d", ports[0], ports[1], ports[2]);
    char *args[] = {(char *)self, "--follower", ids, (char *)base, ps, tls ? "tls" : "plain",
                    NULL};
    uv_stdio_container_t io[3] = {{.flags = UV_IGNORE}, {.flags = UV_INHERIT_FD, .data.fd = 1},
                                  {.flags = UV_INHERIT_FD, .data.fd = 2}};
    uv_process_options_t o = {.file = self, .args = args, .exit_cb = proc_exited,
                              .stdio_count = 3, .stdio = io};
    int rv = uv_spawn(&loop, p, &o);
    if (rv != 0)
        fprintf(stderr, "cannot start a follower: %s\n", uv_strerror(rv));
    return rv;
}

static bool free_ports(int ports[3])
{
    uv_loop_t l;
    uv_loop_init(&l);
    uv_tcp_t s[3];
    bool ok = true;
    for (int i = 0; i < 3; i++) {
        uv_tcp_init(&l, &s[i]);
        struct sockaddr_in sa;
        uv_ip4_addr("127.0.0.1", 0, &sa);
        struct sockaddr_in got;
        int len = sizeof got;
        ok = ok && uv_tcp_bind(&s[i], (const struct sockaddr *)&sa, 0) == 0 &&
             uv_tcp_getsockname(&s[i], (struct sockaddr *)&got, &len) == 0;
        ports[i] = ok ? ntohs(got.sin_port) : 0;
    }
    for (int i = 0; i < 3; i++)
        uv_close((uv_handle_t *)&s[i], NULL);
    uv_run(&l, UV_RUN_DEFAULT);
    (void)uv_loop_close(&l);
    return ok;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int run_mode(const char *self, const char *pki, bool tls, unsigned rounds)
{
    char base[] = "/tmp/pgw-raftbench-XXXXXX";
    if (mkdtemp(base) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    int ports[3];
    char d[600];
    for (int i = 1; i <= 3; i++) {
        snprintf(d, sizeof d, "%s/d%d", base, i);
        if (mkdir(d, 0700) != 0) {
            perror("mkdir");
            return 1;
        }
    }
    /* the certificates are shared by both modes: link them in */
    if (tls) {
        const char *names[] = {"ca.crt", "node1.crt", "node1.key", "node2.crt", "node2.key",
                               "node3.crt", "node3.key"};
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
            char from[600], to[600];
            snprintf(from, sizeof from, "%s/%s", pki, names[i]);
            snprintf(to, sizeof to, "%s/%s", base, names[i]);
            if (symlink(from, to) != 0) {
                perror("symlink");
                return 1;
            }
        }
    }
    if (!free_ports(ports)) {
        fprintf(stderr, "no free ports\n");
        return 1;
    }
    memset(&B, 0, sizeof B);
    B.mode = tls ? "tls" : "plain";
    B.rounds = rounds;
    B.lat_us = calloc(rounds, sizeof *B.lat_us);
    uv_loop_init(&loop);
    uv_timer_init(&loop, &B.poll);
    uv_timer_init(&loop, &B.guard);
    uv_timer_start(&B.guard, on_guard, MODE_DEADLINE_MS, 0);
    int started = 0;
    for (int i = 0; i < 2; i++)
        if (spawn_follower(&B.procs[i], self, i + 2, base, ports, tls) == 0)
            started++;
    B.procs_alive = started;
    if (B.lat_us == NULL || started != 2 ||
        node_start(&B.leader, 1, base, ports, tls, LEADER_ET_MS) != 0)
        bench_stop(true);
    else
        uv_timer_start(&B.poll, poll_leader, 5, 5);
    uv_run(&loop, UV_RUN_DEFAULT);
    node_release(&B.leader);
    int lc = uv_loop_close(&loop);
    int rc = B.failed || lc != 0 ? 1 : 0;
    if (rc == 0) {
        qsort(B.lat_us, rounds, sizeof *B.lat_us, cmp_double);
        double sum = 0;
        for (unsigned i = 0; i < rounds; i++)
            sum += B.lat_us[i];
        printf("%-5s rounds %u  min %7.0f us  p50 %7.0f us  p90 %7.0f us  p99 %7.0f us  "
               "max %7.0f us  mean %7.0f us\n",
               B.mode, rounds, B.lat_us[0], B.lat_us[rounds / 2], B.lat_us[(rounds * 90) / 100],
               B.lat_us[(rounds * 99) / 100], B.lat_us[rounds - 1], sum / rounds);
        fflush(stdout);
    } else if (lc != 0) {
        fprintf(stderr, "%s: the loop did not close cleanly\n", B.mode);
    }
    free(B.lat_us);
    nftw(base, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return rc;
}

static bool make_pki(const char *dir)
{
    struct tls_id ca, n[3];
    bool ok = tls_id_make(&ca, "pgw-bench-ca", NULL, NULL, NULL, 2, 1) &&
              tls_id_write(&ca, dir, "ca");
    for (int i = 0; i < 3; i++) {
        char name[16];
        snprintf(name, sizeof name, "node%d", i + 1);
        ok = ok && tls_id_make(&n[i], name, &ca, NULL, NULL, 2, 2 + i) &&
             tls_id_write(&n[i], dir, name);
        tls_id_free(&n[i]);
    }
    tls_id_free(&ca);
    return ok;
}

static int parse_ports(const char *s, int ports[3])
{
    char *end;
    for (int i = 0; i < 3; i++) {
        long v = strtol(s, &end, 10);
        if (end == s || v < 1 || v > 65535 || (i < 2 && *end != ',') || (i == 2 && *end != '\0'))
            return -1;
        ports[i] = (int)v;
        s = end + 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    struct log_settings ls = {.level = LOGL_WARN};
    (void)log_configure(&ls);
    if (argc == 6 && strcmp(argv[1], "--follower") == 0) {
        int ports[3];
        char *end;
        long id = strtol(argv[2], &end, 10);
        if (*end != '\0' || id < 2 || id > 3 || parse_ports(argv[4], ports) != 0)
            return 2;
        return run_follower((int)id, argv[3], ports, strcmp(argv[5], "tls") == 0);
    }
    unsigned rounds = 2000;
    const char *mode = "both";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--rounds") == 0 && i + 1 < argc) {
            char *end;
            long v = strtol(argv[++i], &end, 10);
            if (*end != '\0' || v < 10 || v > 1000000) {
                fprintf(stderr, "--rounds: 10..1000000\n");
                return 2;
            }
            rounds = (unsigned)v;
        } else if (strcmp(argv[i], "--mode") == 0 && i + 1 < argc) {
            mode = argv[++i];
            if (strcmp(mode, "plain") != 0 && strcmp(mode, "tls") != 0 &&
                strcmp(mode, "both") != 0) {
                fprintf(stderr, "--mode: plain, tls or both\n");
                return 2;
            }
        } else {
            fprintf(stderr, "usage: raft_tls_bench [--rounds N] [--mode plain|tls|both]\n");
            return 2;
        }
    }
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) {
        perror("readlink /proc/self/exe");
        return 1;
    }
    self[n] = '\0';
    char pki[] = "/tmp/pgw-raftbench-pki-XXXXXX";
    if (mkdtemp(pki) == NULL || !make_pki(pki)) {
        fprintf(stderr, "cannot create the test certificates\n");
        return 1;
    }
    printf("Raft commit latency of one round (raft_apply of a %d-byte entry -> applied on the "
           "leader, majority on disk), 3 processes on 127.0.0.1, %d warm-up rounds\n",
           ENTRY_BYTES, WARMUP);
    fflush(stdout);
    int rc = 0;
    if (strcmp(mode, "tls") != 0)
        rc |= run_mode(self, pki, false, rounds);
    if (strcmp(mode, "plain") != 0)
        rc |= run_mode(self, pki, true, rounds);
    const char *names[] = {"ca", "node1", "node2", "node3"};
    tls_dir_remove(pki, names, 4);
    return rc;
}
