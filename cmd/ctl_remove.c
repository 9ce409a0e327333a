/* ctl remove: patronictl remove deletes a cluster's keys from the DCS after
 * three confirmations. pgwarden's DCS is the Raft log and snapshots every
 * node keeps in its raft.data_dir: there is no shared store to delete from,
 * and wiping a running member's copy would only make it rejoin (or, worse,
 * found a second cluster). So remove works on this node's copy, and only
 * while the cluster is stopped:
 *
 *   happy path: -c names the node's file; CLUSTER is its scope; this node's
 *     pgwarden does not run (the raft.data_dir lock is free); no REST API
 *     it knows answers (connect_address, --endpoint) and no
 *     raft.partner_addrs accepts a connection; the operator types the
 *     cluster name and "Yes I am aware"; raft.data_dir is renamed to
 *     <raft.data_dir>.removed-<UTC time> (kept: nothing is deleted).
 *   failure modes: each check above refuses with what it found (exit 1);
 *     a rename that fails (a mount point, another file system) says so and
 *     changes nothing. PostgreSQL's data directory is never touched.
 *
 * Blocking calls (connect with a deadline, rename) are fine: ctl is a
 * process of its own. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "cmd/ctl_internal.h"
#include "common/cfg.h"
#include "common/dirlock.h"

#define PROBE_TIMEOUT_MS 1000

/* true when something accepts a TCP connection at "a.b.c.d:port" within
 * PROBE_TIMEOUT_MS (Raft addresses are IPv4 literals: libraft). */
static bool tcp_answers(const char *hostport)
{
    char host[64];
    const char *colon = strrchr(hostport, ':');
    if (colon == NULL || (size_t)(colon - hostport) >= sizeof host)
        return false;
    memcpy(host, hostport, (size_t)(colon - hostport));
    host[colon - hostport] = '\0';
    char *end;
    unsigned long port = strtoul(colon + 1, &end, 10);
    if (*end != '\0' || port == 0 || port > 65535)
        return false;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1)
        return false;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return false;
    bool up = false;
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0) {
        up = true;
    } else if (errno == EINPROGRESS) {
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        int err = 0;
        socklen_t len = sizeof err;
        up = poll(&p, 1, PROBE_TIMEOUT_MS) == 1 &&
             getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0;
    }
    close(fd);
    return up;
}

/* Refuse while any part of the cluster runs: the local lock, the REST APIs
 * ctl knows, the Raft partners. CTL_OK when nothing answered. */
static int cluster_stopped(struct ctl *c, const struct cfg *conf)
{
    char why[256];
    int fd = -1;
    int rc = dirlock_take(conf->raft.data_dir, "pgwarden.lock", &fd, why, sizeof why);
    if (rc == PGW_EBUSY) {
        ctl_err(c, "pgwarden runs on this node (%s): stop it on every node first", why);
        return CTL_FAILED;
    }
    if (fd >= 0)
        close(fd); /* taken and released: nobody held it */
    for (size_t i = 0; i < c->n_endpoints; i++) {
        char url[600];
        snprintf(url, sizeof url, "%s/patroni", c->endpoints[i]);
        struct ctl_resp r;
        int st = ctl_request(c, "GET", url, NULL, CTL_GET_TIMEOUT_MS, &r);
        ctl_resp_free(&r);
        if (st == 0) {
            ctl_err(c, "the cluster is running: %s answered; stop pgwarden on every node first "
                       "(a running member would keep the state, or found the cluster again)",
                    c->endpoints[i]);
            return CTL_FAILED;
        }
    }
    for (size_t i = 0; i < conf->raft.partner_addrs.n; i++) {
        if (tcp_answers(conf->raft.partner_addrs.items[i])) {
            ctl_err(c, "the cluster is running: raft partner %s accepts connections; stop "
                       "pgwarden on every node first", conf->raft.partner_addrs.items[i]);
            return CTL_FAILED;
        }
    }
    return CTL_OK;
}

/* patronictl's two questions (its third, the leader's name, is for a
 * healthy cluster: one that runs, which pgwarden refuses above). */
static int confirmed(const struct ctl *c, const char *scope)
{
    char *a = ctl_prompt("Please confirm the cluster name to remove", NULL);
    bool same = a != NULL && strcmp(a, scope) == 0;
    free(a);
    if (!same) {
        ctl_err(c, "cluster names specified do not match");
        return CTL_FAILED;
    }
    static const char message[] = "Yes I am aware";
    char q[256];
    snprintf(q, sizeof q, "You are about to remove all information in DCS for %s, please type: \"%s\"",
             scope, message);
    a = ctl_prompt(q, NULL);
    same = a != NULL && strcmp(a, message) == 0;
    free(a);
    if (!same) {
        ctl_err(c, "you did not exactly type \"%s\"", message);
        return CTL_FAILED;
    }
    return CTL_OK;
}

static int move_aside(const struct ctl *c, const char *dir)
{
    char stamp[32], to[4096];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", &tm);
    int n = snprintf(to, sizeof to, "%s.removed-%s", dir, stamp);
    if (n < 0 || (size_t)n >= sizeof to) {
        ctl_err(c, "raft.data_dir %s: path too long", dir);
        return CTL_FAILED;
    }
    if (rename(dir, to) != 0) {
        ctl_err(c, "cannot rename raft.data_dir %s to %s: %s (nothing was changed; a mount "
                   "point cannot be renamed: stop and empty it by hand)", dir, to, strerror(errno));
        return CTL_FAILED;
    }
    printf("Removed this node's state of the cluster: %s moved to %s\n", dir, to);
    return CTL_OK;
}

int ctl_cmd_remove(struct ctl *c, struct ctl_iter *it)
{
    const char *val, *cluster_word = NULL;
    int id;
    while ((id = ctl_next_arg(c, it, NULL, &val)) != CTL_ARG_END) {
        if (id == CTL_ARG_HELP) {
            ctl_sub_help(stdout, c->sub);
            return CTL_OK;
        }
        if (id != CTL_ARG_POSITIONAL || cluster_word != NULL) {
            if (id == CTL_ARG_POSITIONAL)
                ctl_err(c, "unexpected argument \"%s\" (one CLUSTER)", val);
            return CTL_USAGE;
        }
        cluster_word = val;
    }
    if (cluster_word == NULL || c->config_path == NULL) {
        ctl_err(c, "usage: pgwarden ctl -c NODE.yml remove CLUSTER (the node's configuration "
                   "names its Raft data directory)");
        return CTL_USAGE;
    }
    struct cfg conf;
    struct cfg_error err;
    if (cfg_load(c->config_path, &conf, &err, NULL) != 0) {
        ctl_err(c, "%s", err.msg);
        return CTL_FAILED;
    }
    int rc = CTL_FAILED;
    if (strcmp(cluster_word, conf.scope) != 0)
        ctl_err(c, "%s is the configuration of cluster \"%s\", not \"%s\"", c->config_path,
                conf.scope, cluster_word);
    else if (access(conf.raft.data_dir, F_OK) != 0)
        ctl_err(c, "raft.data_dir %s: %s: nothing to remove", conf.raft.data_dir, strerror(errno));
    else if ((rc = ctl_ready(c)) == CTL_OK && (rc = cluster_stopped(c, &conf)) == CTL_OK &&
             (rc = confirmed(c, conf.scope)) == CTL_OK)
        rc = move_aside(c, conf.raft.data_dir);
    cfg_free(&conf);
    return rc;
}
