/* Fence keeper (see keeper.h).
 *
 * Happy path: fork -> child: own session, memory locked, loops: read the
 * deadline; nothing to do while it is 0 or in the future; exit when told to,
 * when another pgwarden owns the page, or when pgwarden is gone and nothing
 * is left to guard.
 * Failure modes: the page cannot be created (pgwarden refuses to start: a
 * primary without its safety net is not allowed), mlockall refused (logged;
 * the keeper runs unlocked), the keeper dies (the in-process fencing still
 * works; keeper_alive() lets the daemon say so), a process of the instance
 * that does not die at once (uninterruptible sleep: the deadline stays and
 * the next tick kills again). */
#include "ha/keeper.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <stdbool.h>
#include <time.h>
#include <unistd.h>

#include "pg/instance.h"

#define KEEPER_MAGIC 0x7067774b50455231ull /* "pgwKPER1" */

struct keeper_page {
    uint64_t magic;
    uint64_t deadline_ms;
    int32_t owner_pid;
    int32_t exit_requested;
    uint64_t fences;
    int32_t mem_locked;
};

struct keeper {
    struct keeper_page *page;
    pid_t pid;
    int fd;
    struct pginst inst;
};

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void say(const char *level, const char *msg, long a)
{
    /* The child writes plain lines to stderr (the daemon's log stream). */
    char line[512];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof line,
                     "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %-7s [keeper] %s %ld\n",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                     tm.tm_sec, ts.tv_nsec / 1000000L, level, msg, a);
    if (n > 0)
        (void)!write(STDERR_FILENO, line, (size_t)n);
}

static void fence(struct keeper_page *pg, const struct pginst *inst)
{
    struct pginst_kill_result r;
    pginst_kill(inst, 500, &r);
    if (r.found > 0) {
        say("ERROR", "primary lease expired and pgwarden did not fence: killed every process of "
            "PostgreSQL, count", (long)r.found);
        __atomic_add_fetch(&pg->fences, 1, __ATOMIC_SEQ_CST);
    }
    if (r.left > 0) {
        /* stuck in uninterruptible sleep: SIGKILL is pending, try again next tick */
        say("ERROR", "processes of PostgreSQL not gone yet after SIGKILL, count", (long)r.left);
        return;
    }
    __atomic_store_n(&pg->deadline_ms, 0, __ATOMIC_SEQ_CST);
}

/* Lock what the keeper maps, so that a node short of memory does not page it
 * out just before it must act. MCL_ONFAULT: pages are locked as they are
 * touched, not all read in now. */
static void lock_memory(struct keeper_page *pg)
{
    if (mlockall(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT) == 0) {
        __atomic_store_n(&pg->mem_locked, 1, __ATOMIC_SEQ_CST);
        return;
    }
    struct rlimit rl;
    long kb = getrlimit(RLIMIT_MEMLOCK, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY
                  ? (long)(rl.rlim_cur / 1024) : -1;
    say("WARNING", "cannot lock the keeper's memory (raise LimitMEMLOCK, the unit's default is infinity); "
        "RLIMIT_MEMLOCK kB", kb);
    __atomic_store_n(&pg->mem_locked, 0, __ATOMIC_SEQ_CST);
}

static void child_loop(struct keeper_page *pg, const struct pginst *inst, pid_t parent)
{
    prctl(PR_SET_NAME, "pgwarden-keeper", 0, 0, 0);
    /* A session and process group of its own: a SIGSTOP, SIGTERM or SIGKILL
     * sent to pgwarden's group must not reach the keeper. */
    (void)setsid();
    signal(SIGTERM, SIG_IGN);
    signal(SIGINT, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    signal(SIGPIPE, SIG_IGN);
    lock_memory(pg);
    for (;;) {
        struct timespec ts = {0, KEEPER_TICK_MS * 1000000L};
        nanosleep(&ts, NULL);
        if (__atomic_load_n(&pg->exit_requested, __ATOMIC_SEQ_CST))
            _exit(0);
        pid_t owner = __atomic_load_n(&pg->owner_pid, __ATOMIC_SEQ_CST);
        bool parent_gone = getppid() != parent;
        if (parent_gone && owner != parent)
            _exit(0); /* a new pgwarden took over the page and has its own keeper */
        uint64_t d = __atomic_load_n(&pg->deadline_ms, __ATOMIC_SEQ_CST);
        if (d != 0 && mono_ms() >= d)
            fence(pg, inst);
        if (parent_gone && __atomic_load_n(&pg->deadline_ms, __ATOMIC_SEQ_CST) == 0)
            _exit(0); /* no lease left to guard */
    }
}

int keeper_start(const char *state_dir, const char *pg_data_dir, struct keeper **out, char *err,
                 size_t errlen)
{
    struct keeper *k = calloc(1, sizeof *k);
    if (k == NULL)
        return PGW_ENOMEM;
    char ierr[256];
    if (pginst_init(&k->inst, pg_data_dir, ierr, sizeof ierr) != 0) {
        snprintf(err, errlen, "fence keeper: postgresql.data_dir: %s", ierr);
        free(k);
        return PGW_EINVAL;
    }
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", state_dir, KEEPER_FILE);
    k->fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (k->fd < 0 || ftruncate(k->fd, 4096) != 0) {
        snprintf(err, errlen, "cannot create the fence keeper page %s: %s", path, strerror(errno));
        if (k->fd >= 0)
            close(k->fd);
        free(k);
        return PGW_EIO;
    }
    k->page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, k->fd, 0);
    if (k->page == MAP_FAILED) {
        snprintf(err, errlen, "cannot map %s: %s", path, strerror(errno));
        close(k->fd);
        free(k);
        return PGW_EIO;
    }
    if (k->page->magic != KEEPER_MAGIC) {
        memset(k->page, 0, sizeof *k->page);
        k->page->magic = KEEPER_MAGIC;
    }
    /* Taking the page over: a keeper left by a previous pgwarden now exits
     * without acting; its deadline stays until our lease restore decides. */
    pid_t self = getpid();
    __atomic_store_n(&k->page->exit_requested, 0, __ATOMIC_SEQ_CST);
    __atomic_store_n(&k->page->owner_pid, self, __ATOMIC_SEQ_CST);
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(err, errlen, "cannot fork the fence keeper: %s", strerror(errno));
        munmap(k->page, 4096);
        close(k->fd);
        free(k);
        return PGW_EIO;
    }
    if (pid == 0) {
        /* Only stderr and the mapping are needed. */
        long maxfd = sysconf(_SC_OPEN_MAX);
        for (long fd = 3; fd < (maxfd > 0 && maxfd < 65536 ? maxfd : 1024); fd++)
            close((int)fd);
        child_loop(k->page, &k->inst, self);
        _exit(0);
    }
    k->pid = pid;
    *out = k;
    return PGW_OK;
}

void keeper_set_deadline(struct keeper *k, uint64_t deadline_ms)
{
    if (k != NULL)
        __atomic_store_n(&k->page->deadline_ms, deadline_ms, __ATOMIC_SEQ_CST);
}

uint64_t keeper_deadline(const struct keeper *k)
{
    return k != NULL ? __atomic_load_n(&k->page->deadline_ms, __ATOMIC_SEQ_CST) : 0;
}

uint64_t keeper_fences(const struct keeper *k)
{
    return k != NULL ? __atomic_load_n(&k->page->fences, __ATOMIC_SEQ_CST) : 0;
}

bool keeper_alive(const struct keeper *k)
{
    if (k == NULL)
        return false;
    /* a dead child stays a zombie until reaped, which kill() still finds:
     * look at its state instead */
    char path[64], buf[256];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)k->pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return false;
    buf[n] = '\0';
    const char *p = strrchr(buf, ')');
    return p != NULL && p[1] == ' ' && p[2] != 'Z' && p[2] != 'X';
}

pid_t keeper_pid(const struct keeper *k)
{
    return k != NULL ? k->pid : 0;
}

bool keeper_memory_locked(const struct keeper *k)
{
    return k != NULL && __atomic_load_n(&k->page->mem_locked, __ATOMIC_SEQ_CST) != 0;
}

static void release(struct keeper *k)
{
    munmap(k->page, 4096);
    close(k->fd);
    free(k);
}

void keeper_stop(struct keeper *k)
{
    if (k == NULL)
        return;
    __atomic_store_n(&k->page->deadline_ms, 0, __ATOMIC_SEQ_CST);
    __atomic_store_n(&k->page->exit_requested, 1, __ATOMIC_SEQ_CST);
    /* The keeper exits within one tick; reap it (bounded). */
    for (int i = 0; i < 100; i++) {
        siginfo_t info;
        memset(&info, 0, sizeof info);
        /* non-blocking reap; this runs after the event loop has ended */
        int r = waitid(P_PID, (id_t)k->pid, &info, WEXITED | WNOHANG);
        if ((r == 0 && info.si_pid == k->pid) || (r < 0 && errno == ECHILD))
            break;
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
    }
    release(k);
}

void keeper_detach(struct keeper *k)
{
    if (k == NULL)
        return;
    release(k);
}
