/* Start-up checks shared by validate and run (see preflight.h). Order as
 * run starts: logging, raft.data_dir and the state files in it, the REST
 * listeners and their TLS files, Raft TLS, PostgreSQL's directories and
 * programs, the watchdog, the backup program; then, with PREFLIGHT_NOW, the
 * lock and the ports. Nothing is created, nothing is left open. */
#include "ha/preflight.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/http_server.h"
#include "common/dirlock.h"
#include "common/log.h"
#include "common/mkdirs.h"
#include "ha/keeper.h"
#include "ha/watchdog.h"
#include "pg/pgctl.h"
#include "raft/cluster.h"
#include "raft/tls_link.h"

#define WHY_MAX 900

struct pf {
    const struct cfg *c;
    struct cfg_warnings *warn;
    char *err;
    size_t errlen;
};

__attribute__((format(printf, 2, 3)))
static int fail(struct pf *p, const char *fmt, ...)
{
    char why[WHY_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    snprintf(p->err, p->errlen, "%s: %s", p->c->path != NULL ? p->c->path : "config", why);
    return PGW_EINVAL;
}

__attribute__((format(printf, 2, 3)))
static int warn(struct pf *p, const char *fmt, ...)
{
    char why[WHY_MAX], line[WHY_MAX + 300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    snprintf(line, sizeof line, "%s: %s", p->c->path != NULL ? p->c->path : "config", why);
    if (p->warn != NULL && cfg_warnings_add(p->warn, line) != 0)
        return fail(p, "out of memory");
    return PGW_OK;
}

/* The parent directory of an absolute path ("/" for "/x"). */
static void parent_of(const char *path, char *out, size_t len)
{
    snprintf(out, len, "%s", path);
    char *slash = strrchr(out, '/');
    if (slash == NULL)
        snprintf(out, len, ".");
    else if (slash == out)
        out[1] = '\0';
    else
        *slash = '\0';
}

/* 0 when dir is a directory this user may list and write in, else errno
 * (ENOTDIR when it is something else). */
static int dir_writable(const char *dir)
{
    struct stat st;
    if (stat(dir, &st) != 0)
        return errno;
    if (!S_ISDIR(st.st_mode))
        return ENOTDIR;
    return access(dir, R_OK | W_OK | X_OK) != 0 ? errno : 0;
}

/* log.dir: log_configure appends to <dir>/pgwarden.log. */
static int check_log(struct pf *p)
{
    const char *dir = p->c->log.dir;
    if (dir == NULL || dir[0] == '\0')
        return PGW_OK;
    int e = dir_writable(dir);
    if (e != 0)
        return fail(p, "log.dir %s: %s (pgwarden appends to pgwarden.log there)", dir,
                    strerror(e));
    char f[4200];
    snprintf(f, sizeof f, "%s/pgwarden.log", dir);
    struct stat st;
    if (stat(f, &st) == 0 && (!S_ISREG(st.st_mode) || access(f, W_OK) != 0))
        return fail(p, "log.dir %s: %s is %s", dir, f,
                    S_ISREG(st.st_mode) ? "not writable by this user" : "not a regular file");
    return PGW_OK;
}

/* A file pgwarden opens for writing in raft.data_dir: a regular file this
 * user may write, or absent. */
static int check_state_file(struct pf *p, const char *name, const char *what)
{
    char f[4200];
    snprintf(f, sizeof f, "%s/%s", p->c->raft.data_dir, name);
    struct stat st;
    if (lstat(f, &st) != 0)
        return errno == ENOENT ? PGW_OK
                               : fail(p, "raft.data_dir: cannot use %s (%s): %s", f, what,
                                      strerror(errno));
    if (S_ISDIR(st.st_mode))
        return fail(p, "raft.data_dir: cannot use %s (%s): %s", f, what, strerror(EISDIR));
    if (!S_ISREG(st.st_mode))
        return fail(p, "raft.data_dir: cannot use %s (%s): not a regular file", f, what);
    if (access(f, R_OK | W_OK) != 0)
        return fail(p, "raft.data_dir: cannot use %s (%s): %s", f, what, strerror(errno));
    return PGW_OK;
}

static int check_raft_dir(struct pf *p, bool pg)
{
    const struct cfg *c = p->c;
    char e[WHY_MAX];
    if (cluster_check_data_dir(c->raft.data_dir, c->scope, c->name, e, sizeof e) != 0)
        return fail(p, "%s", e);
    int rc = check_state_file(p, "pgwarden.lock", "the lock of one pgwarden per directory");
    if (rc == 0 && pg)
        rc = check_state_file(p, KEEPER_FILE, "the fence keeper's page");
    if (rc == 0 && pg)
        rc = check_state_file(p, "lease.state", "the primary lease");
    if (rc == 0 && pg && cfg_backup_enabled(&c->backup))
        rc = check_state_file(p, "pgbackrest.conf", "pgBackRest's configuration");
    return rc;
}

/* Name the key whose file a TLS message is about: the message names the
 * culprit's path first (OpenSSL wrappers in api/http_tls.c and
 * raft/tls_link.c), so the earliest (then longest) path found wins. */
static const char *culprit(const char *msg, const char *const keys[3], const char *const paths[3])
{
    const char *best = NULL, *at = NULL;
    size_t best_len = 0;
    for (int i = 0; i < 3; i++) {
        if (paths[i] == NULL)
            continue;
        const char *f = strstr(msg, paths[i]);
        size_t len = strlen(paths[i]);
        if (f != NULL && (at == NULL || f < at || (f == at && len > best_len))) {
            at = f;
            best = keys[i];
            best_len = len;
        }
    }
    return best != NULL ? best : keys[0];
}

static int check_restapi(struct pf *p)
{
    const struct cfg_restapi *r = &p->c->restapi;
    char e[WHY_MAX];
    if (http_server_check_addr(r->listen.host, r->listen.port, e, sizeof e) != 0)
        return fail(p, "restapi.listen: %s", e);
    if (r->health_listen.host != NULL &&
        http_server_check_addr(r->health_listen.host, r->health_listen.port, e, sizeof e) != 0)
        return fail(p, "restapi.health_listen: %s", e);
    if (r->certfile == NULL && r->keyfile == NULL)
        return PGW_OK;
    if (http_server_check_tls(r->certfile, r->keyfile, r->cafile, r->verify_client, e,
                              sizeof e) != 0) {
        static const char *const keys[3] = {"restapi.certfile", "restapi.keyfile",
                                            "restapi.cafile"};
        const char *const paths[3] = {r->certfile, r->keyfile, r->cafile};
        return fail(p, "%s: %s", culprit(e, keys, paths), e);
    }
    return PGW_OK;
}

static int check_raft_tls(struct pf *p)
{
    const struct cfg_raft *r = &p->c->raft;
    if (r->certfile == NULL)
        return PGW_OK;
    char e[WHY_MAX];
    struct tls_link_ctx *ctx = NULL;
    if (tls_link_ctx_new(r->certfile, r->keyfile, r->cafile, &ctx, e, sizeof e) != 0) {
        static const char *const keys[3] = {"raft.certfile", "raft.keyfile", "raft.cafile"};
        const char *const paths[3] = {r->certfile, r->keyfile, r->cafile};
        return fail(p, "%s: %s", culprit(e, keys, paths), e);
    }
    tls_link_ctx_free(ctx);
    return PGW_OK;
}

/* postgresql.data_dir: initdb or a clone creates it when missing, and
 * pg_ctl writes <data_dir>.startup.log beside it: its parent must be a
 * writable directory either way. */
static int check_data_dir(struct pf *p)
{
    const char *dir = p->c->postgresql.data_dir;
    char parent[4096];
    parent_of(dir, parent, sizeof parent);
    struct stat st;
    if (stat(dir, &st) == 0) {
        if (!S_ISDIR(st.st_mode))
            return fail(p, "postgresql.data_dir %s is not a directory", dir);
        if (access(dir, R_OK | W_OK | X_OK) != 0)
            return fail(p, "postgresql.data_dir %s is not usable by this user: %s", dir,
                        strerror(errno));
        int e = dir_writable(parent);
        if (e != 0)
            return fail(p, "postgresql.data_dir %s: its parent directory %s is not writable "
                        "by this user (pg_ctl writes the server's start-up log there): %s",
                        dir, parent, strerror(e));
        return PGW_OK;
    }
    if (errno != ENOENT)
        return fail(p, "postgresql.data_dir %s: %s", dir, strerror(errno));
    /* missing parents are created by run (preflight_make_data_dir_parents),
     * as Patroni's initdb and pg_basebackup create them (Patroni's example
     * has data_dir: data/postgresql0 in a directory without data/): the
     * nearest existing ancestor must be writable */
    char anc[4096];
    snprintf(anc, sizeof anc, "%s", parent);
    int e;
    while ((e = dir_writable(anc)) == ENOENT && strcmp(anc, "/") != 0 && strcmp(anc, ".") != 0) {
        char up[4096];
        parent_of(anc, up, sizeof up);
        snprintf(anc, sizeof anc, "%s", up);
    }
    if (e != 0)
        return fail(p, "postgresql.data_dir %s does not exist and cannot be created: %s: %s",
                    dir, anc, strerror(e));
    return PGW_OK;
}

int preflight_make_data_dir_parents(const struct cfg *c, char *err, size_t errlen)
{
    const char *dir = c->postgresql.data_dir;
    if (dir == NULL || dir[0] != '/')
        return PGW_OK;
    char path[4096];
    parent_of(dir, path, sizeof path);
    return mkdirs(path, 0700, "the parent of postgresql.data_dir", err, errlen);
}

static int check_postgresql(struct pf *p)
{
    const struct cfg *c = p->c;
    int rc = check_data_dir(p);
    if (rc != 0)
        return rc;
    char e[WHY_MAX];
    const char *bin = c->postgresql.bin_dir && *c->postgresql.bin_dir
                          ? c->postgresql.bin_dir
                          : "/usr/lib/postgresql/15/bin"; /* as pgnode_new */
    if (pgctl_check_bin_dir(bin, NULL, e, sizeof e) != 0)
        return fail(p, "%s", e);
    if (c->watchdog.mode != CFG_WD_OFF &&
        watchdog_check_device(c->watchdog.device, e, sizeof e) != 0) {
        if (c->watchdog.mode == CFG_WD_REQUIRED)
            return fail(p, "%s; watchdog.mode is required, so this node would never run "
                        "a primary", e);
        if ((rc = warn(p, "%s: this node will run without a watchdog (watchdog.mode automatic)",
                       e)) != 0)
            return rc;
    }
    if (cfg_backup_enabled(&c->backup)) {
        const char *cmd = c->backup.command;
        struct stat st;
        int err = stat(cmd, &st) != 0 ? errno : !S_ISREG(st.st_mode) ? EISDIR
                                                : access(cmd, X_OK) != 0  ? errno
                                                                          : 0;
        if (err != 0)
            return fail(p, "backup.command %s is not an executable file (%s); install "
                        "pgBackRest or point backup.command at it", cmd,
                        err == EISDIR ? "not a regular file" : strerror(err));
    }
    return PGW_OK;
}

/* --- what holds only now --------------------------------------------------- */

/* Bind host:port as the listener would (SO_REUSEADDR) and let go: 0 or errno. */
static int try_bind(const char *host, uint16_t port)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    socklen_t sl;
    struct sockaddr_in *v4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons(port);
        sl = sizeof *v4;
    } else if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(port);
        sl = sizeof *v6;
    } else {
        return 0; /* refused above as not an address */
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return 0; /* not this check's business */
    int one = 1;
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    int e = bind(fd, (struct sockaddr *)&ss, sl) != 0 ? errno : 0;
    close(fd);
    return e;
}

static int warn_busy(struct pf *p, const char *key, const char *host, uint16_t port)
{
    int e = try_bind(host, port);
    if (e == 0)
        return PGW_OK;
    const char *v6 = strchr(host, ':') != NULL ? "[" : "";
    return warn(p, "%s %s%s%s:%u %s now (%s): `pgwarden run` would fail to start", key, v6,
                host, v6[0] ? "]" : "", (unsigned)port,
                e == EADDRINUSE ? "is in use" : "cannot be bound", strerror(e));
}

static int check_now(struct pf *p)
{
    const struct cfg *c = p->c;
    char e[WHY_MAX];
    if (dirlock_probe(c->raft.data_dir, "pgwarden.lock", e, sizeof e) == PGW_EBUSY) {
        int rc = warn(p, "raft.data_dir: %s: `pgwarden run` would refuse to start now", e);
        if (rc != 0)
            return rc;
    }
    char host[16];
    uint16_t port;
    int rc = warn_busy(p, "restapi.listen", c->restapi.listen.host, c->restapi.listen.port);
    if (rc == 0 && c->restapi.health_listen.host != NULL)
        rc = warn_busy(p, "restapi.health_listen", c->restapi.health_listen.host,
                       c->restapi.health_listen.port);
    if (rc == 0 && cfg_parse_ipv4_addr(c->raft.self_addr, host, sizeof host, &port) == 0)
        rc = warn_busy(p, "raft.self_addr", host, port);
    return rc;
}

int preflight_check(const struct cfg *c, unsigned flags, struct cfg_warnings *warn_out,
                    char *err, size_t errlen)
{
    struct pf p = {.c = c, .warn = warn_out, .err = err, .errlen = errlen};
    bool pg = !c->witness && c->postgresql.present;
    int rc = check_log(&p);
    if (rc == 0)
        rc = check_raft_dir(&p, pg);
    if (rc == 0)
        rc = check_restapi(&p);
    if (rc == 0)
        rc = check_raft_tls(&p);
    if (rc == 0 && pg)
        rc = check_postgresql(&p);
    if (rc == 0 && (flags & PREFLIGHT_NOW))
        rc = check_now(&p);
    return rc;
}
