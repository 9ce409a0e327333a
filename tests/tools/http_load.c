/* http_load: open-loop, fixed-rate HTTP/1.1 load with coordinated-omission
 * correction (what wrk2 -R does; wrk2 is not in Debian), for bench/http_probe.
 *
 *   http_load http://IPv4:PORT/path CONNECTIONS RATE SECONDS
 *
 * Why open loop: wrk is closed loop (each connection sends its next request
 * as soon as the previous answer arrives), so with 64 connections it
 * saturates the server and its p99 measures queueing at saturation. A health
 * probe sends a few requests per second whatever the server does; the
 * latency it sees is the server's latency at that (low) rate. Here request n
 * (0-based, over all connections) is *intended* at start + n/RATE; it goes on
 * connection n % CONNECTIONS, so connection i's k-th request is due at
 * start + (k*CONNECTIONS + i)/RATE. Its latency is "response fully received
 * minus intended time": a request that could not be sent on time because
 * its connection was still waiting for an earlier answer is sent as soon as
 * that answer arrives and still measured from its intended time, so a
 * stalled server shows up as latency instead of as fewer samples.
 *
 * Happy path: connect all CONNECTIONS sockets (non-blocking, TCP_NODELAY,
 * keep-alive; all must connect within 5 s), take the start time, then one
 * epoll loop: a timerfd (absolute CLOCK_MONOTONIC, µs precision) fires at the
 * next intended time; each wakeup hands every due request to its connection,
 * which sends it at once if idle; readable sockets are parsed (status line,
 * headers, Content-Length body) and a complete response records its latency
 * and lets the connection send its next overdue request. One request in
 * flight per connection, no pipelining. Percentiles come from sorting a
 * preallocated array of RATE*SECONDS latencies. Also reported, as a
 * diagnostic: the service time (from the actual send, uncorrected) and the
 * send lag (actual send - intended time): on a VM the timer wake-up alone
 * can take 50-700 µs, and that is the load generator's, not the server's.
 *
 * Failure modes: initial connect failure or timeout -> message, exit 1. A
 * connection reset / read or write error / unexpected EOF with a request in
 * flight -> that request is lost (counted in errors) and the connection
 * reconnects; each connection has MAX_RECONNECTS attempts in all, then it
 * is dead and its remaining requests count as errors. EOF on an idle
 * connection that has had a response since it connected (the server's
 * keep-alive timeout) reconnects without loss or budget; without one (the
 * server closes it at once, e.g. over its connection limit) it is a failure
 * like the others. A response the tool cannot delimit (no Content-Length on
 * a status that has a body, chunked, unparsable, headers over 16 KiB) ->
 * clear message, exit 1: the figures would be meaningless.
 * Everything is bounded: after the last intended time, at most DRAIN_S
 * seconds of drain, then whatever is unfinished counts as errors.
 *
 * Output: one block on stdout (see print_report); exit 0 when every request
 * completed with a 2xx status, 1 otherwise, 2 on bad arguments. */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNS 10000L
#define MAX_RATE 1000000L
#define MAX_SECONDS 3600L
#define MAX_REQUESTS 20000000ULL /* two latency arrays: 160 MB of uint32 */
#define CONNECT_S 5
#define DRAIN_S 5
#define MAX_RECONNECTS 3
#define RBUF_SIZE 16384
#define NS_PER_S 1000000000LL
#define TIMER_TAG UINT64_MAX

enum conn_state { C_CONNECTING, C_IDLE, C_BUSY, C_DEAD };

struct conn {
    int fd;
    enum conn_state state;
    uint32_t idx;       /* i: requests idx, idx+C, idx+2C, ... */
    uint64_t total;     /* how many requests this connection owns */
    uint64_t next_k;    /* next of its requests to send */
    uint64_t due_k;     /* how many of its requests are due by now */
    int64_t intended;   /* intended time (ns) of the request in flight */
    int64_t sent_at;    /* when it was actually sent */
    size_t wpos;        /* bytes of the request already written */
    /* response parsing */
    size_t rlen;
    bool hdr_done;
    uint64_t body_left;
    int status;
    unsigned reconnects;
    uint64_t served;    /* responses since the last (re)connect */
    char rbuf[RBUF_SIZE];
};

struct load {
    /* arguments */
    const char *url;
    struct sockaddr_in addr;
    char req[2048];
    size_t req_len;
    long nconns, rate, seconds;
    /* state */
    int ep, tfd;
    struct conn *conns;
    uint64_t n_total;  /* RATE * SECONDS */
    uint64_t next_n;   /* next global request index to hand out */
    int64_t start;
    uint64_t sent, completed, lost, non2xx, conn_failures, reconnects, idle_reconnects;
    int64_t last_done;
    int64_t lag_sum, lag_max; /* actual send time - intended time, ns */
    uint32_t *lat_us;   /* response done - intended time (the figure) */
    uint32_t *svc_us;   /* response done - actual send time (diagnostic) */
    char first_error[256];
};

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * NS_PER_S + ts.tv_nsec;
}

/* n < 2^32 * ... : n <= 3.6e9 and RATE >= 1, so n * 1e9 < 3.7e18 fits. */
static int64_t intended_ns(const struct load *L, uint64_t n)
{
    return L->start + (int64_t)((n * (uint64_t)NS_PER_S) / (uint64_t)L->rate);
}

static void note_error(struct load *L, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note_error(struct load *L, const char *fmt, ...)
{
    if (L->first_error[0] != '\0')
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(L->first_error, sizeof L->first_error, fmt, ap);
    va_end(ap);
}

/* Message on stderr, then exit: 1 = the run failed, 2 = bad arguments
 * (with the usage line). */
static void vdie(int code, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0), noreturn));
static void vdie(int code, const char *fmt, va_list ap)
{
    fputs("http_load: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    if (code == 2)
        fputs("usage: http_load http://IPv4:PORT/path CONNECTIONS RATE SECONDS\n", stderr);
    exit(code);
}

static void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void fatal(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vdie(1, fmt, ap);
}

static void usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vdie(2, fmt, ap);
}

static long parse_count(const char *what, const char *s, long lo, long hi)
{
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end == s || *end != '\0' || errno != 0 || v < lo || v > hi)
        usage_error("%s must be an integer in %ld..%ld, got '%s'", what, lo, hi, s);
    return v;
}

/* http://A.B.C.D:PORT[/path]: plain HTTP, numeric IPv4, explicit port. */
static void parse_url(struct load *L, const char *url)
{
    static const char pfx[] = "http://";
    if (strncasecmp(url, "https://", 8) == 0)
        usage_error("https is not supported, only plain http:// URLs: '%s'", url);
    if (strncasecmp(url, pfx, sizeof pfx - 1) != 0)
        usage_error("URL must start with http://, got '%s'", url);
    const char *host = url + sizeof pfx - 1;
    const char *colon = strchr(host, ':');
    const char *slash = strchr(host, '/');
    if (colon == NULL || (slash != NULL && slash < colon))
        usage_error("URL has no port (need http://IPv4:PORT/path): '%s'", url);
    char hostbuf[INET_ADDRSTRLEN];
    size_t hlen = (size_t)(colon - host);
    if (hlen == 0 || hlen >= sizeof hostbuf)
        usage_error("URL host must be a numeric IPv4 address: '%s'", url);
    memcpy(hostbuf, host, hlen);
    hostbuf[hlen] = '\0';
    memset(&L->addr, 0, sizeof L->addr);
    L->addr.sin_family = AF_INET;
    if (inet_pton(AF_INET, hostbuf, &L->addr.sin_addr) != 1)
        usage_error("URL host must be a numeric IPv4 address, got '%s'", hostbuf);
    const char *p = colon + 1;
    const char *pend = slash != NULL ? slash : p + strlen(p);
    char portbuf[8];
    size_t plen = (size_t)(pend - p);
    if (plen == 0)
        usage_error("URL has an empty port: '%s'", url);
    if (plen >= sizeof portbuf)
        usage_error("URL port is not a number in 1..65535: '%s'", url);
    memcpy(portbuf, p, plen);
    portbuf[plen] = '\0';
    char *end = NULL;
    errno = 0;
    long port = strtol(portbuf, &end, 10);
    if (end == portbuf || *end != '\0' || errno != 0 || port < 1 || port > 65535 ||
        portbuf[0] == '+' || portbuf[0] == '-')
        usage_error("URL port must be a number in 1..65535, got '%s'", portbuf);
    L->addr.sin_port = htons((uint16_t)port);
    const char *path = slash != NULL ? slash : "/";
    for (const char *c = path; *c != '\0'; c++)
        if ((unsigned char)*c <= 0x20 || (unsigned char)*c >= 0x7f)
            usage_error("URL path has a space or control character: '%s'", url);
    int n = snprintf(L->req, sizeof L->req,
                     "GET %s HTTP/1.1\r\nHost: %s:%ld\r\nUser-Agent: http_load\r\n\r\n", path,
                     hostbuf, port);
    if (n < 0 || (size_t)n >= sizeof L->req)
        usage_error("URL path is too long (%zu bytes)", strlen(path));
    L->req_len = (size_t)n;
}

static void ep_set(struct load *L, struct conn *c, uint32_t events, int op)
{
    struct epoll_event ev = {.events = events, .data.u64 = c->idx};
    if (epoll_ctl(L->ep, op, c->fd, &ev) != 0)
        fatal("epoll_ctl: %s", strerror(errno));
}

/* Start a non-blocking connect. Returns 0, or -1 with errno (no fd left). */
static int conn_open(struct load *L, struct conn *c)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    if (connect(fd, (const struct sockaddr *)&L->addr, sizeof L->addr) != 0 &&
        errno != EINPROGRESS) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    c->fd = fd;
    c->state = C_CONNECTING;
    c->rlen = 0;
    c->hdr_done = false;
    c->wpos = 0;
    c->served = 0;
    ep_set(L, c, EPOLLOUT, EPOLL_CTL_ADD);
    return 0;
}

static void conn_close_fd(struct conn *c)
{
    if (c->fd >= 0) {
        close(c->fd); /* also drops it from the epoll set */
        c->fd = -1;
    }
}

/* The connection is gone for good: its unsent requests are lost. */
static void conn_kill(struct load *L, struct conn *c)
{
    conn_close_fd(c);
    L->lost += c->total - c->next_k;
    c->next_k = c->total;
    c->state = C_DEAD;
}

/* A failure on an established (or reconnecting) connection: lose the request
 * in flight, if any, and reconnect within the budget. */
static void conn_fail(struct load *L, struct conn *c, const char *what, int err)
{
    note_error(L, "connection %u: %s%s%s", c->idx, what, err != 0 ? ": " : "",
               err != 0 ? strerror(err) : "");
    L->conn_failures++;
    if (c->state == C_BUSY)
        L->lost++;
    conn_close_fd(c);
    if (c->reconnects >= MAX_RECONNECTS || c->next_k >= c->total) {
        conn_kill(L, c);
        return;
    }
    c->reconnects++;
    L->reconnects++;
    if (conn_open(L, c) != 0) {
        note_error(L, "connection %u: reconnect: %s", c->idx, strerror(errno));
        conn_kill(L, c);
    }
}

static void conn_write(struct load *L, struct conn *c)
{
    while (c->wpos < L->req_len) {
        ssize_t w = send(c->fd, L->req + c->wpos, L->req_len - c->wpos, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            ep_set(L, c, EPOLLIN | EPOLLOUT, EPOLL_CTL_MOD);
            return;
        }
        if (w <= 0) {
            conn_fail(L, c, "write", w < 0 ? errno : 0);
            return;
        }
        c->wpos += (size_t)w;
    }
}

/* Send this connection's next request if it is idle and one is due. */
static void conn_kick(struct load *L, struct conn *c)
{
    if (c->state != C_IDLE || c->next_k >= c->due_k)
        return;
    uint64_t n = c->next_k * (uint64_t)L->nconns + c->idx;
    c->intended = intended_ns(L, n);
    c->sent_at = now_ns();
    int64_t lag = c->sent_at - c->intended;
    L->lag_sum += lag;
    if (lag > L->lag_max)
        L->lag_max = lag;
    c->next_k++;
    c->state = C_BUSY;
    c->wpos = 0;
    c->rlen = 0;
    c->hdr_done = false;
    L->sent++;
    conn_write(L, c);
}

static void conn_connected(struct load *L, struct conn *c)
{
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
        err = errno;
    if (err != 0) {
        conn_fail(L, c, "connect", err);
        return;
    }
    c->state = C_IDLE;
    ep_set(L, c, EPOLLIN, EPOLL_CTL_MOD);
    conn_kick(L, c);
}

/* Rounded up, so that every recorded latency is at least 1 µs. */
static uint32_t to_us(int64_t ns)
{
    uint64_t us = ns <= 0 ? 1 : ((uint64_t)ns + 999) / 1000;
    return us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
}

static void response_done(struct load *L, struct conn *c)
{
    int64_t t = now_ns();
    if (L->completed < L->n_total) {
        L->lat_us[L->completed] = to_us(t - c->intended);
        L->svc_us[L->completed] = to_us(t - c->sent_at);
    }
    L->completed++;
    L->last_done = t;
    c->served++;
    if (c->status < 200 || c->status > 299)
        L->non2xx++;
    c->state = C_IDLE;
    c->hdr_done = false;
    c->rlen = 0;
    if (c->wpos < L->req_len)
        fatal("%s: the server answered before the whole request was sent", L->url);
    /* Interest is already EPOLLIN only: EPOLLOUT is dropped as soon as a
     * partial write completes (handle_event). */
    conn_kick(L, c);
}

static bool header_is(const char *line, size_t len, const char *name, const char **val,
                      size_t *vlen)
{
    size_t nl = strlen(name);
    if (len <= nl || strncasecmp(line, name, nl) != 0 || line[nl] != ':')
        return false;
    const char *v = line + nl + 1;
    const char *e = line + len;
    while (v < e && (*v == ' ' || *v == '\t'))
        v++;
    while (e > v && (e[-1] == ' ' || e[-1] == '\t'))
        e--;
    *val = v;
    *vlen = (size_t)(e - v);
    return true;
}

/* Parse the head in c->rbuf[0..hlen) (ending in CRLFCRLF): status and body
 * length. Anything this tool cannot delimit is fatal: the figures would be
 * meaningless. */
static void parse_head(struct load *L, struct conn *c, size_t hlen)
{
    const char *p = c->rbuf;
    const char *end = c->rbuf + hlen;
    const char *eol = memchr(p, '\r', (size_t)(end - p));
    if (eol == NULL || eol - p < 12 || strncmp(p, "HTTP/1.", 7) != 0 || p[8] != ' ' ||
        p[9] < '1' || p[9] > '5' || p[10] < '0' || p[10] > '9' || p[11] < '0' || p[11] > '9')
        fatal("%s: malformed status line in response: '%.*s'", L->url,
              (int)(eol != NULL ? eol - p : 40), p);
    c->status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
    bool have_len = false;
    uint64_t clen = 0;
    p = eol + 2;
    while (p < end) {
        eol = memchr(p, '\r', (size_t)(end - p));
        if (eol == NULL || eol == p)
            break;
        const char *v;
        size_t vlen;
        if (header_is(p, (size_t)(eol - p), "Content-Length", &v, &vlen)) {
            char num[24];
            char *nend = NULL;
            if (vlen == 0 || vlen >= sizeof num || v[0] < '0' || v[0] > '9')
                fatal("%s: bad Content-Length '%.*s'", L->url, (int)vlen, v);
            memcpy(num, v, vlen);
            num[vlen] = '\0';
            errno = 0;
            unsigned long long n = strtoull(num, &nend, 10);
            if (*nend != '\0' || errno != 0 || (have_len && n != clen))
                fatal("%s: bad or conflicting Content-Length '%s'", L->url, num);
            clen = n;
            have_len = true;
        } else if (header_is(p, (size_t)(eol - p), "Transfer-Encoding", &v, &vlen)) {
            fatal("%s: response uses Transfer-Encoding '%.*s': chunked bodies are not "
                  "supported (need Content-Length)",
                  L->url, (int)vlen, v);
        }
        p = eol + 2;
    }
    bool no_body = c->status < 200 || c->status == 204 || c->status == 304;
    if (c->status < 200)
        fatal("%s: interim %d responses are not supported", L->url, c->status);
    if (!no_body && !have_len)
        fatal("%s: response %d has no Content-Length; bodies delimited by close or "
              "chunked encoding are not supported",
              L->url, c->status);
    c->body_left = no_body ? 0 : clen;
    c->hdr_done = true;
}

static void conn_read(struct load *L, struct conn *c)
{
    for (int rounds = 0; rounds < 64; rounds++) {
        if (c->rlen == sizeof c->rbuf)
            fatal("%s: response headers larger than %d bytes", L->url, RBUF_SIZE);
        ssize_t r = recv(c->fd, c->rbuf + c->rlen, sizeof c->rbuf - c->rlen, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (r < 0) {
            conn_fail(L, c, "read", errno);
            return;
        }
        if (r == 0) {
            if (c->state == C_IDLE && c->served > 0) {
                /* The server's keep-alive timeout: nothing lost. At most one
                 * such reconnect per response, so this cannot spin. */
                conn_close_fd(c);
                L->idle_reconnects++;
                if (conn_open(L, c) != 0) {
                    note_error(L, "connection %u: reconnect: %s", c->idx, strerror(errno));
                    L->conn_failures++;
                    conn_kill(L, c);
                }
                return;
            }
            conn_fail(L, c,
                      c->state == C_BUSY ? "server closed the connection with a request in flight"
                                         : "server closed the connection before any response",
                      0);
            return;
        }
        if (c->state != C_BUSY)
            fatal("%s: %zd unexpected bytes from the server on an idle connection", L->url, r);
        c->rlen += (size_t)r;
        if (!c->hdr_done) {
            char *hend = memmem(c->rbuf, c->rlen, "\r\n\r\n", 4);
            if (hend == NULL)
                continue;
            size_t hlen = (size_t)(hend - c->rbuf) + 4;
            parse_head(L, c, hlen);
            c->rlen -= hlen; /* what is left is body: count it, drop it */
        }
        if ((uint64_t)c->rlen > c->body_left)
            fatal("%s: %" PRIu64 " bytes after the end of a response (pipelining is not used)",
                  L->url, (uint64_t)c->rlen - c->body_left);
        c->body_left -= c->rlen;
        c->rlen = 0;
        if (c->body_left == 0) {
            response_done(L, c);
            return;
        }
    }
}

static void handle_event(struct load *L, const struct epoll_event *ev)
{
    struct conn *c = &L->conns[ev->data.u64];
    if (c->state == C_DEAD || c->fd < 0)
        return;
    if (c->state == C_CONNECTING) {
        if (ev->events & (EPOLLOUT | EPOLLERR | EPOLLHUP))
            conn_connected(L, c);
        return;
    }
    if (ev->events & EPOLLIN) {
        conn_read(L, c);
        if (c->state == C_DEAD || c->fd < 0 || c->state == C_CONNECTING)
            return;
    } else if (ev->events & (EPOLLERR | EPOLLHUP)) {
        int err = 0;
        socklen_t len = sizeof err;
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
            err = errno;
        conn_fail(L, c, "socket error", err);
        return;
    }
    if ((ev->events & EPOLLOUT) && c->state == C_BUSY && c->wpos < L->req_len) {
        conn_write(L, c);
        if (c->state == C_BUSY && c->fd >= 0 && c->wpos == L->req_len)
            ep_set(L, c, EPOLLIN, EPOLL_CTL_MOD);
    }
}

static void timer_arm(struct load *L, int64_t at)
{
    struct itimerspec its = {0};
    if (at <= 0)
        at = 1;
    its.it_value.tv_sec = at / NS_PER_S;
    its.it_value.tv_nsec = at % NS_PER_S;
    if (timerfd_settime(L->tfd, TFD_TIMER_ABSTIME, &its, NULL) != 0)
        fatal("timerfd_settime: %s", strerror(errno));
}

/* Hand every request whose intended time has passed to its connection. */
static void dispatch_due(struct load *L, int64_t now)
{
    while (L->next_n < L->n_total && intended_ns(L, L->next_n) <= now) {
        struct conn *c = &L->conns[L->next_n % (uint64_t)L->nconns];
        c->due_k++;
        L->next_n++;
        conn_kick(L, c);
    }
}

static void connect_all(struct load *L)
{
    struct rlimit rl;
    rlim_t need = (rlim_t)L->nconns + 32;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < need) {
        if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < need)
            fatal("%ld connections need %llu file descriptors; the hard limit is %llu",
                  L->nconns, (unsigned long long)need, (unsigned long long)rl.rlim_max);
        rl.rlim_cur = need;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            fatal("cannot raise the file descriptor limit to %llu: %s",
                  (unsigned long long)need, strerror(errno));
    }
    for (long i = 0; i < L->nconns; i++) {
        struct conn *c = &L->conns[i];
        c->fd = -1;
        c->idx = (uint32_t)i;
        c->total = (uint64_t)i < L->n_total
                       ? (L->n_total - (uint64_t)i + (uint64_t)L->nconns - 1) / (uint64_t)L->nconns
                       : 0;
        if (conn_open(L, c) != 0)
            fatal("cannot connect to %s: %s", L->url, strerror(errno));
    }
    int64_t deadline = now_ns() + CONNECT_S * NS_PER_S;
    long pending = L->nconns;
    struct epoll_event evs[256];
    while (pending > 0) {
        int64_t left = deadline - now_ns();
        if (left <= 0)
            fatal("%ld of %ld connections to %s not established within %d s", pending,
                  L->nconns, L->url, CONNECT_S);
        int n = epoll_wait(L->ep, evs, 256, (int)(left / 1000000) + 1);
        if (n < 0 && errno != EINTR)
            fatal("epoll_wait: %s", strerror(errno));
        for (int j = 0; j < n; j++) {
            struct conn *c = &L->conns[evs[j].data.u64];
            if (c->state != C_CONNECTING)
                continue;
            int err = 0;
            socklen_t len = sizeof err;
            if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
                err = errno;
            if (err != 0)
                fatal("cannot connect to %s: %s", L->url, strerror(err));
            c->state = C_IDLE;
            ep_set(L, c, EPOLLIN, EPOLL_CTL_MOD);
            pending--;
        }
    }
}

static void run(struct load *L)
{
    struct epoll_event tev = {.events = EPOLLIN, .data.u64 = TIMER_TAG};
    if (epoll_ctl(L->ep, EPOLL_CTL_ADD, L->tfd, &tev) != 0)
        fatal("epoll_ctl: %s", strerror(errno));
    L->start = now_ns();
    int64_t drain_end = intended_ns(L, L->n_total) + DRAIN_S * NS_PER_S;
    struct epoll_event evs[256];
    int64_t armed = -1;
    while (L->completed + L->lost < L->n_total) {
        int64_t now = now_ns();
        if (now >= drain_end)
            break;
        dispatch_due(L, now);
        int64_t wake = L->next_n < L->n_total ? intended_ns(L, L->next_n) : drain_end;
        if (wake != armed) {
            timer_arm(L, wake);
            armed = wake;
        }
        /* The timerfd wakes us; the 1 s timeout is only a safety net. */
        int n = epoll_wait(L->ep, evs, 256, 1000);
        if (n < 0 && errno != EINTR)
            fatal("epoll_wait: %s", strerror(errno));
        for (int j = 0; j < n; j++) {
            if (evs[j].data.u64 == TIMER_TAG) {
                uint64_t ticks;
                if (read(L->tfd, &ticks, sizeof ticks) < 0 && errno != EAGAIN)
                    fatal("timerfd read: %s", strerror(errno));
                armed = -1; /* expired: re-arm even for the same time */
                continue;
            }
            handle_event(L, &evs[j]);
        }
    }
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of a sorted array. */
static uint32_t pct(const uint32_t *v, uint64_t n, double p)
{
    uint64_t rank = (uint64_t)(p / 100.0 * (double)n + 0.999999);
    if (rank < 1)
        rank = 1;
    if (rank > n)
        rank = n;
    return v[rank - 1];
}

static void print_percentiles(const char *label, uint32_t *v, uint64_t n)
{
    if (n == 0) {
        printf("  %s  none (no response completed)\n", label);
        return;
    }
    qsort(v, n, sizeof *v, cmp_u32);
    printf("  %s  min %" PRIu32 "  p50 %" PRIu32 "  p90 %" PRIu32 "  p99 %" PRIu32
           "  p99.9 %" PRIu32 "  max %" PRIu32 "\n",
           label, v[0], pct(v, n, 50), pct(v, n, 90), pct(v, n, 99), pct(v, n, 99.9), v[n - 1]);
}

static void print_report(struct load *L)
{
    uint64_t n = L->completed < L->n_total ? L->completed : L->n_total;
    uint64_t errors = L->n_total - n;
    int64_t span = (L->completed > 0 ? L->last_done : now_ns()) - L->start;
    if (span < L->seconds * NS_PER_S)
        span = L->seconds * NS_PER_S;
    double achieved = (double)n * (double)NS_PER_S / (double)span;
    printf("http_load: %s  connections %ld  target %ld req/s  duration %ld s\n", L->url,
           L->nconns, L->rate, L->seconds);
    printf("  sent %" PRIu64 "  completed %" PRIu64 "  achieved %.0f req/s  non-2xx %" PRIu64
           "  errors %" PRIu64 "\n",
           L->sent, n, achieved, L->non2xx, errors);
    print_percentiles("latency us", L->lat_us, n);
    /* Service time, from the actual send: not corrected for coordinated
     * omission, so it hides stalls; shown to tell the client's own wake-up
     * delay (latency - service) from the server's time. */
    print_percentiles("service us", L->svc_us, n);
    /* How late requests went out: the client's own wake-up delay, or waiting
     * for the previous answer on the connection. Both are in the latency. */
    printf("  send lag us  mean %.0f  max %.0f\n",
           L->sent > 0 ? (double)L->lag_sum / (double)L->sent / 1000.0 : 0.0,
           (double)L->lag_max / 1000.0);
    printf("  connection failures %" PRIu64 "  reconnects %" PRIu64 "  idle reconnects %" PRIu64
           "  unsent %" PRIu64 "\n",
           L->conn_failures, L->reconnects, L->idle_reconnects, L->n_total - L->sent);
    if (L->first_error[0] != '\0')
        printf("  first error: %s\n", L->first_error);
    fflush(stdout);
}

int main(int argc, char **argv)
{
    static struct load L;
    if (argc != 5)
        usage_error("expected 4 arguments, got %d", argc - 1);
    L.url = argv[1];
    parse_url(&L, argv[1]);
    L.nconns = parse_count("connections", argv[2], 1, MAX_CONNS);
    L.rate = parse_count("rate", argv[3], 1, MAX_RATE);
    L.seconds = parse_count("seconds", argv[4], 1, MAX_SECONDS);
    L.n_total = (uint64_t)L.rate * (uint64_t)L.seconds;
    if (L.n_total > MAX_REQUESTS)
        usage_error("rate * seconds = %" PRIu64 " requests; at most %llu are supported",
                    L.n_total, (unsigned long long)MAX_REQUESTS);

    /* Timer slack (50 µs by default) would delay every wake-up, and with it
     * every send, by up to that much: ask for the precise timer. */
    (void)prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
    L.lat_us = calloc(L.n_total, sizeof *L.lat_us);
    L.svc_us = calloc(L.n_total, sizeof *L.svc_us);
    L.conns = calloc((size_t)L.nconns, sizeof *L.conns);
    if (L.lat_us == NULL || L.svc_us == NULL || L.conns == NULL)
        fatal("out of memory for %" PRIu64 " latencies and %ld connections", L.n_total,
              L.nconns);
    L.ep = epoll_create1(EPOLL_CLOEXEC);
    L.tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (L.ep < 0 || L.tfd < 0)
        fatal("epoll/timerfd: %s", strerror(errno));

    connect_all(&L);
    run(&L);
    print_report(&L);

    bool ok = L.completed == L.n_total && L.non2xx == 0;
    for (long i = 0; i < L.nconns; i++)
        conn_close_fd(&L.conns[i]);
    close(L.tfd);
    close(L.ep);
    free(L.conns);
    free(L.lat_us);
    free(L.svc_us);
    return ok ? 0 : 1;
}
