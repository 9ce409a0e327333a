/* Every process of one PostgreSQL instance (see instance.h).
 *
 * Happy path: scan /proc once (getdents64 into a static buffer), keep the
 * processes whose cwd is the data directory, mark the postgres executables
 * and their descendants, SIGKILL the postmasters, then the rest; scan again
 * until nothing is left.
 * Failure modes: /proc unreadable (nothing found: the caller's count says
 * so, and the postmaster's own pid is still killed by callers that know it),
 * a process that exits between two reads (skipped), more processes than one
 * scan holds (the next pass takes the rest), one stuck in uninterruptible
 * sleep (reported as left when the budget ends). */
#include "pg/instance.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define SCAN_MAX 4096

struct entry {
    pid_t pid, ppid;
    bool postgres; /* the executable is `postgres` */
    bool single;   /* postgres --single: accepts no connection */
    bool member;   /* postgres, or a descendant of one in this scan */
};

static struct entry ents[SCAN_MAX];
static char dents[32768];

int pginst_init(struct pginst *pi, const char *data_dir, char *err, size_t errlen)
{
    memset(pi, 0, sizeof *pi);
    if (data_dir == NULL || data_dir[0] != '/') {
        snprintf(err, errlen, "the data directory \"%s\" is not an absolute path",
                 data_dir != NULL ? data_dir : "");
        return PGW_EINVAL;
    }
    char buf[PATH_MAX];
    const char *dir = data_dir;
    char joined[PATH_MAX + NAME_MAX + 2];
    if (realpath(data_dir, buf) != NULL) {
        dir = buf;
    } else if (errno == ENOENT) {
        /* not created yet (before initdb or a clone): resolve its parent */
        char parent[PATH_MAX];
        snprintf(parent, sizeof parent, "%s", data_dir);
        size_t n = strlen(parent);
        while (n > 1 && parent[n - 1] == '/')
            parent[--n] = '\0';
        char *slash = strrchr(parent, '/');
        if (slash != NULL && slash != parent) {
            *slash = '\0';
            if (realpath(parent, buf) != NULL) {
                snprintf(joined, sizeof joined, "%s/%s", buf, slash + 1);
                dir = joined;
            }
        }
    }
    size_t len = strlen(dir);
    while (len > 1 && dir[len - 1] == '/')
        len--;
    if (len >= sizeof pi->dir) {
        snprintf(err, errlen, "the data directory path is too long (%zu bytes, at most %zu)", len,
                 sizeof pi->dir - 1);
        return PGW_EINVAL;
    }
    memcpy(pi->dir, dir, len);
    pi->dir[len] = '\0';
    const char *broken = getenv("PGW_TEST_FENCE_POSTMASTER_GROUP");
    pi->test_group_only = broken != NULL && strcmp(broken, "1") == 0;
    return PGW_OK;
}

static bool cwd_is(pid_t pid, const char *dir, size_t dirlen)
{
    char path[64], link[PGINST_PATH_MAX];
    snprintf(path, sizeof path, "/proc/%d/cwd", (int)pid);
    ssize_t n = readlink(path, link, sizeof link);
    return n == (ssize_t)dirlen && memcmp(link, dir, dirlen) == 0;
}

static bool exe_is_postgres(pid_t pid)
{
    char path[64], link[PATH_MAX];
    snprintf(path, sizeof path, "/proc/%d/exe", (int)pid);
    ssize_t n = readlink(path, link, sizeof link - 1);
    if (n <= 0)
        return false;
    link[n] = '\0';
    /* a binary replaced by a package upgrade while running */
    static const char deleted[] = " (deleted)";
    size_t dl = sizeof deleted - 1;
    if ((size_t)n > dl && strcmp(link + n - dl, deleted) == 0)
        link[n - dl] = '\0';
    const char *base = strrchr(link, '/');
    return strcmp(base != NULL ? base + 1 : link, "postgres") == 0;
}

/* `postgres --single` (crash recovery before pg_rewind, run by pgwarden
 * itself): it serves no client, so it cannot acknowledge a commit. */
static bool is_single_user(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/cmdline", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    for (ssize_t i = 0; i < n;) {
        const char *arg = buf + i;
        size_t len = strnlen(arg, (size_t)(n - i));
        if (len == 8 && memcmp(arg, "--single", 8) == 0)
            return true;
        i += (ssize_t)len + 1;
    }
    return false;
}

/* ppid from /proc/PID/stat; -1 when gone or a zombie */
static pid_t live_ppid(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return -1;
    buf[n] = '\0';
    const char *p = strrchr(buf, ')'); /* the command name may hold anything */
    if (p == NULL || p[1] != ' ' || p[2] == '\0' || p[2] == 'Z' || p[2] == 'X')
        return -1;
    char *end;
    long ppid = strtol(p + 3, &end, 10);
    return end == p + 3 ? -1 : (pid_t)ppid;
}

static const struct entry *find(const struct entry *e, unsigned n, pid_t pid)
{
    for (unsigned i = 0; i < n; i++)
        if (e[i].pid == pid)
            return &e[i];
    return NULL;
}

/* Fills ents; returns how many were kept. */
static unsigned scan(const struct pginst *pi)
{
    size_t dirlen = strlen(pi->dir);
    int fd = open("/proc", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    pid_t self = getpid();
    unsigned n = 0;
    for (;;) {
        ssize_t got = getdents64(fd, dents, sizeof dents);
        if (got <= 0)
            break;
        for (ssize_t off = 0; off < got;) {
            struct dirent64 *d = (struct dirent64 *)(dents + off);
            off += d->d_reclen;
            if (d->d_name[0] < '1' || d->d_name[0] > '9' || n == SCAN_MAX)
                continue;
            char *end;
            long pid = strtol(d->d_name, &end, 10);
            if (*end != '\0' || pid == self || !cwd_is((pid_t)pid, pi->dir, dirlen))
                continue;
            pid_t ppid = live_ppid((pid_t)pid);
            if (ppid < 0)
                continue;
            bool pg = exe_is_postgres((pid_t)pid);
            ents[n] = (struct entry){.pid = (pid_t)pid, .ppid = ppid, .postgres = pg,
                                     .single = pg && is_single_user((pid_t)pid)};
            n++;
        }
    }
    close(fd);
    for (unsigned i = 0; i < n; i++)
        ents[i].member = ents[i].postgres;
    /* descendants of a postgres process (an archive_command shell and what it
     * runs): a few rounds reach any depth that occurs in practice */
    for (int round = 0; round < 8; round++) {
        bool changed = false;
        for (unsigned i = 0; i < n; i++) {
            const struct entry *p = ents[i].member ? NULL : find(ents, n, ents[i].ppid);
            if (p != NULL && p->member) {
                ents[i].member = true;
                changed = true;
            }
        }
        if (!changed)
            break;
    }
    return n;
}

static unsigned members(unsigned n)
{
    unsigned m = 0;
    for (unsigned i = 0; i < n; i++)
        m += ents[i].member;
    return m;
}

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void kill_one(pid_t pid, struct pginst_kill_result *res)
{
    if (kill(pid, SIGKILL) == 0) {
        res->killed++;
        if (res->first_killed == 0)
            res->first_killed = pid;
    }
}

/* The test-only broken fence, as pgwarden had it before: the pid in
 * postmaster.pid, and SIGKILL to its process group. (It reads the data
 * directory: test-only.) */
static void kill_group_only(const struct pginst *pi, struct pginst_kill_result *res)
{
    res->found = members(scan(pi));
    char path[PGINST_PATH_MAX + 32], buf[32];
    snprintf(path, sizeof path, "%s/postmaster.pid", pi->dir);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    buf[n > 0 ? n : 0] = '\0';
    long pm = strtol(buf, NULL, 10);
    if (pm <= 0 || kill((pid_t)pm, 0) != 0)
        return;
    pid_t grp = getpgid((pid_t)pm);
    if (grp > 1 && grp != getpgid(0))
        kill(-grp, SIGKILL);
    kill_one((pid_t)pm, res);
}

void pginst_kill(const struct pginst *pi, unsigned budget_ms, struct pginst_kill_result *res)
{
    memset(res, 0, sizeof *res);
    if (pi->test_group_only) {
        kill_group_only(pi, res);
        return;
    }
    uint64_t deadline = mono_ms() + budget_ms;
    for (bool first = true;; first = false) {
        unsigned n = scan(pi);
        unsigned m = members(n);
        if (first)
            res->found = m;
        if (m == 0) {
            res->left = 0;
            return;
        }
        if (!first && mono_ms() >= deadline) {
            res->left = m;
            return;
        }
        /* A postmaster first: once it is dead nothing new is forked. A
         * postmaster is a postgres process whose parent is not one. */
        for (unsigned i = 0; i < n; i++) {
            const struct entry *p = find(ents, n, ents[i].ppid);
            if (ents[i].postgres && !(p != NULL && p->postgres))
                kill_one(ents[i].pid, res);
        }
        for (unsigned i = 0; i < n; i++) {
            const struct entry *p = find(ents, n, ents[i].ppid);
            if (ents[i].member && !(ents[i].postgres && !(p != NULL && p->postgres)))
                kill_one(ents[i].pid, res);
        }
        struct timespec ts = {0, 1000000L};
        nanosleep(&ts, NULL);
    }
}

unsigned pginst_count(const struct pginst *pi)
{
    return members(scan(pi));
}

unsigned pginst_count_serving(const struct pginst *pi)
{
    unsigned n = scan(pi), m = 0;
    for (unsigned i = 0; i < n; i++)
        m += ents[i].member && !ents[i].single;
    return m;
}
