/* pg_controldata output parsing and postmaster.pid reading (pure /
 * synchronous helpers behind pgctl.h). */
#include <ctype.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/shm.h>
#include <unistd.h>

#include "common/log.h"
#include "pg/pgctl.h"

static const struct {
    enum pg_cluster_state st;
    const char *text;
} cluster_states[] = {
    {PG_CLUSTER_STARTING_UP, "starting up"},
    {PG_CLUSTER_SHUT_DOWN, "shut down"},
    {PG_CLUSTER_SHUT_DOWN_RECOVERY, "shut down in recovery"},
    {PG_CLUSTER_SHUTTING_DOWN, "shutting down"},
    {PG_CLUSTER_CRASH_RECOVERY, "in crash recovery"},
    {PG_CLUSTER_ARCHIVE_RECOVERY, "in archive recovery"},
    {PG_CLUSTER_IN_PRODUCTION, "in production"},
};

const char *pg_cluster_state_name(enum pg_cluster_state s)
{
    for (size_t i = 0; i < sizeof cluster_states / sizeof cluster_states[0]; i++)
        if (cluster_states[i].st == s)
            return cluster_states[i].text;
    return "unknown";
}

static bool parse_u64(const char *s, uint64_t *out)
{
    if (!s || !isdigit((unsigned char)*s))
        return false;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end != '\0')
        return false;
    *out = v;
    return true;
}

static bool parse_int_field(const char *s, int *out)
{
    uint64_t v;
    if (!parse_u64(s, &v) || v > 0x7fffffff)
        return false;
    *out = (int)v;
    return true;
}

int pg_controldata_parse(const char *text, size_t len, struct pg_controldata *out, char *errbuf,
                         size_t errlen)
{
    memset(out, 0, sizeof *out);
    bool have_sysid = false, have_state = false, have_ckpt = false;
    const char *p = text, *end = text + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t ll = nl ? (size_t)(nl - p) : (size_t)(end - p);
        char line[512];
        if (ll >= sizeof line)
            ll = sizeof line - 1;
        memcpy(line, p, ll);
        line[ll] = '\0';
        p = nl ? nl + 1 : end;
        char *colon = strchr(line, ':');
        /* "Latest checkpoint's oldestCommitTsXid:0" has no space; keys have no ':' */
        if (!colon)
            continue;
        *colon = '\0';
        char *key = line;
        char *val = colon + 1;
        while (*val == ' ' || *val == '\t')
            val++;
        size_t vl = strlen(val);
        while (vl > 0 && (val[vl - 1] == ' ' || val[vl - 1] == '\r'))
            val[--vl] = '\0';
        uint64_t u;
        if (strcmp(key, "pg_control version number") == 0) {
            if (parse_u64(val, &u))
                out->pg_control_version = (uint32_t)u;
        } else if (strcmp(key, "Database system identifier") == 0) {
            if (!parse_u64(val, &out->system_identifier)) {
                snprintf(errbuf, errlen, "pg_controldata: bad system identifier \"%s\"", val);
                return PGW_EPROTO;
            }
            have_sysid = true;
        } else if (strcmp(key, "Database cluster state") == 0) {
            snprintf(out->state_text, sizeof out->state_text, "%s", val);
            out->state = PG_CLUSTER_UNKNOWN;
            for (size_t i = 0; i < sizeof cluster_states / sizeof cluster_states[0]; i++)
                if (strcmp(cluster_states[i].text, val) == 0)
                    out->state = cluster_states[i].st;
            have_state = true;
        } else if (strcmp(key, "Latest checkpoint location") == 0) {
            if (!pg_lsn_parse(val, &out->checkpoint_lsn)) {
                snprintf(errbuf, errlen, "pg_controldata: bad checkpoint location \"%s\"", val);
                return PGW_EPROTO;
            }
            have_ckpt = true;
        } else if (strcmp(key, "Latest checkpoint's REDO location") == 0) {
            (void)pg_lsn_parse(val, &out->redo_lsn);
        } else if (strcmp(key, "Latest checkpoint's TimeLineID") == 0) {
            if (parse_u64(val, &u))
                out->checkpoint_tli = (uint32_t)u;
        } else if (strcmp(key, "Latest checkpoint's PrevTimeLineID") == 0) {
            if (parse_u64(val, &u))
                out->prev_tli = (uint32_t)u;
        } else if (strcmp(key, "Minimum recovery ending location") == 0) {
            (void)pg_lsn_parse(val, &out->min_recovery_lsn);
        } else if (strcmp(key, "Min recovery ending loc's timeline") == 0) {
            if (parse_u64(val, &u))
                out->min_recovery_tli = (uint32_t)u;
        } else if (strcmp(key, "wal_log_hints setting") == 0) {
            out->wal_log_hints = strcmp(val, "on") == 0;
        } else if (strcmp(key, "Data page checksum version") == 0) {
            if (parse_u64(val, &u))
                out->data_checksum_version = (uint32_t)u;
        } else if (strcmp(key, "wal_level setting") == 0) {
            snprintf(out->wal_level, sizeof out->wal_level, "%s", val);
        } else if (strcmp(key, "max_connections setting") == 0) {
            (void)parse_int_field(val, &out->max_connections);
        } else if (strcmp(key, "max_worker_processes setting") == 0) {
            (void)parse_int_field(val, &out->max_worker_processes);
        } else if (strcmp(key, "max_wal_senders setting") == 0) {
            (void)parse_int_field(val, &out->max_wal_senders);
        } else if (strcmp(key, "max_prepared_xacts setting") == 0) {
            (void)parse_int_field(val, &out->max_prepared_xacts);
        } else if (strcmp(key, "max_locks_per_xact setting") == 0) {
            (void)parse_int_field(val, &out->max_locks_per_xact);
        } else if (strcmp(key, "track_commit_timestamp setting") == 0) {
            out->track_commit_timestamp = strcmp(val, "on") == 0;
        }
    }
    const char *missing = !have_sysid ? "Database system identifier"
                          : !have_state ? "Database cluster state"
                          : !have_ckpt  ? "Latest checkpoint location"
                                        : NULL;
    if (missing) {
        snprintf(errbuf, errlen, "pg_controldata: no \"%s\" in its output", missing);
        return PGW_EPROTO;
    }
    return PGW_OK;
}

static void copy_str(char *dst, size_t len, const char *src)
{
    size_t n = strlen(src);
    if (n >= len)
        n = len - 1;
    memcpy(dst, src, n);
    dst[n] = '\0';
}

/* ---- postmaster.pid --------------------------------------------------- */

int pg_pidfile_read(const char *data_dir, struct pg_pidfile *out, char *errbuf, size_t errlen)
{
    memset(out, 0, sizeof *out);
    char path[4096];
    snprintf(path, sizeof path, "%s/postmaster.pid", data_dir);
    FILE *f = fopen(path, "re");
    if (!f) {
        int e = errno;
        snprintf(errbuf, errlen, "cannot open %s: %s", path, strerror(e));
        return e == ENOENT ? PGW_ENOTFOUND : PGW_EIO;
    }
    char buf[4096];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *save = NULL;
    int lineno = 0;
    /* strtok_r would merge empty lines (an empty listen address); split by hand */
    char *line = buf;
    (void)save;
    while (line && *line) {
        char *nl = strchr(line, '\n');
        if (nl)
            *nl = '\0';
        lineno++;
        char *v = line;
        switch (lineno) {
        case 1: {
            char *end;
            errno = 0;
            long pid = strtol(v, &end, 10);
            if (errno || end == v || *end != '\0' || pid == 0) {
                snprintf(errbuf, errlen, "%s: bad pid \"%s\"", path, v);
                return PGW_EPROTO;
            }
            if (pid < 0) {
                out->single_user = true;
                pid = -pid;
            }
            out->pid = (pid_t)pid;
            break;
        }
        case 2: copy_str(out->data_dir, sizeof out->data_dir, v); break;
        case 3: {
            char *end;
            long long t = strtoll(v, &end, 10);
            if (end != v)
                out->start_time = t;
            break;
        }
        case 4: {
            char *end;
            long port = strtol(v, &end, 10);
            if (end != v && port > 0 && port < 65536)
                out->port = (int)port;
            break;
        }
        case 5: copy_str(out->socket_dir, sizeof out->socket_dir, v); break;
        case 6: copy_str(out->listen_addr, sizeof out->listen_addr, v); break;
        case 7: {
            unsigned long k = 0, id = 0;
            if (sscanf(v, "%lu %lu", &k, &id) == 2) {
                out->shm_key = k;
                out->shm_id = id;
            }
            break;
        }
        case 8:
            if (strncmp(v, "starting", 8) == 0)
                out->status = PG_PIDFILE_STARTING;
            else if (strncmp(v, "stopping", 8) == 0)
                out->status = PG_PIDFILE_STOPPING;
            else if (strncmp(v, "ready", 5) == 0)
                out->status = PG_PIDFILE_READY;
            else if (strncmp(v, "standby", 7) == 0)
                out->status = PG_PIDFILE_STANDBY;
            break;
        default: break;
        }
        line = nl ? nl + 1 : NULL;
    }
    if (lineno < 1 || out->pid == 0) {
        snprintf(errbuf, errlen, "%s is empty (being written?)", path);
        return PGW_EPROTO;
    }
    return PGW_OK;
}

bool pg_pid_alive(pid_t pid)
{
    if (pid <= 0)
        return false;
    if (kill(pid, 0) != 0 && errno == ESRCH)
        return false;
    /* A postmaster started through pg_ctl is re-parented; if nobody reaps
     * it, a dead one stays a zombie that kill(pid, 0) still finds. */
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return errno != ENOENT;
    char buf[512];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *rp = strrchr(buf, ')');
    if (rp && rp[1] == ' ' && (rp[2] == 'Z' || rp[2] == 'X'))
        return false;
    /* a stale pid file whose pid now belongs to another program */
    const char *lp = strchr(buf, '(');
    if (lp && rp && rp > lp) {
        size_t cl = (size_t)(rp - lp - 1);
        if (!memmem(lp + 1, cl, "postgres", 8) && !memmem(lp + 1, cl, "postmaster", 10))
            return false;
    }
    return true;
}

bool pg_postmaster_running(const char *data_dir, pid_t *pid_out)
{
    struct pg_pidfile pf;
    char err[256];
    if (pid_out)
        *pid_out = 0;
    if (pg_pidfile_read(data_dir, &pf, err, sizeof err) != PGW_OK)
        return false;
    if (pid_out)
        *pid_out = pf.pid;
    return pg_pid_alive(pf.pid);
}

int pg_pidfile_clear_stale(const char *data_dir, char *errbuf, size_t errlen)
{
    struct pg_pidfile pf;
    char eb[256];
    int rc = pg_pidfile_read(data_dir, &pf, eb, sizeof eb);
    if (rc == PGW_ENOTFOUND)
        return PGW_OK;
    if (rc != PGW_OK)
        return PGW_OK; /* let PostgreSQL judge a malformed file */
    if (pg_pid_alive(pf.pid))
        return PGW_OK; /* a live postmaster: not stale */
    if (kill(pf.pid, 0) != 0 && errno == ESRCH)
        return PGW_OK; /* truly gone: PostgreSQL handles that itself */
    if (pf.shm_id != 0) {
        struct shmid_ds ds;
        if (shmctl((int)pf.shm_id, IPC_STAT, &ds) == 0 && ds.shm_nattch > 0) {
            snprintf(errbuf, errlen, "postmaster %d of %s is dead but %lu process(es) are still "
                     "attached to its shared memory (orphaned backends); retry once they exit",
                     (int)pf.pid, data_dir, (unsigned long)ds.shm_nattch);
            return PGW_ECONFLICT;
        }
    }
    char path[4200];
    snprintf(path, sizeof path, "%s/postmaster.pid", data_dir);
    if (unlink(path) != 0 && errno != ENOENT) {
        snprintf(errbuf, errlen, "cannot remove the stale %s: %s", path, strerror(errno));
        return PGW_ECONFLICT;
    }
    log_warn("pg", "removed stale %s: postmaster %d is dead (a zombie or a reused pid) and "
             "nothing is attached to its shared memory", path, (int)pf.pid);
    /* The Unix socket's lock file names the same dead pid, and PostgreSQL
     * refuses it for the same reason ("lock file ... already exists"). */
    if (pf.socket_dir[0] != '\0' && pf.port > 0) {
        char sock[4200];
        snprintf(sock, sizeof sock, "%s/.s.PGSQL.%d.lock", pf.socket_dir, pf.port);
        FILE *f = fopen(sock, "r");
        long lockpid = 0;
        if (f != NULL) {
            char line[64];
            if (fgets(line, sizeof line, f) != NULL)
                lockpid = strtol(line, NULL, 10);
            fclose(f);
        }
        if (lockpid == (long)pf.pid || lockpid == -(long)pf.pid) {
            if (unlink(sock) == 0)
                log_warn("pg", "removed stale %s of the same dead postmaster", sock);
        }
    }
    return PGW_OK;
}

bool pg_socklock_clear_stale(const char *text)
{
    static const char pre[] = "lock file \"", post[] = "\" already exists";
    const char *a = strstr(text, pre);
    if (a == NULL)
        return false;
    a += sizeof pre - 1;
    const char *b = strstr(a, post);
    if (b == NULL || (size_t)(b - a) >= 4096)
        return false;
    char path[4096];
    memcpy(path, a, (size_t)(b - a));
    path[b - a] = '\0';
    const char *base = strrchr(path, '/');
    base = base != NULL ? base + 1 : path;
    size_t bl = strlen(base);
    /* only a socket lock: postmaster.pid is pg_pidfile_clear_stale()'s
     * business, with its shared-memory check */
    if (strncmp(base, ".s.PGSQL.", 9) != 0 || bl < 14 || strcmp(base + bl - 5, ".lock") != 0)
        return false;
    FILE *f = fopen(path, "re");
    if (f == NULL)
        return errno == ENOENT; /* gone meanwhile: try again */
    char line[64] = "";
    bool got = fgets(line, sizeof line, f) != NULL;
    fclose(f);
    char *end;
    errno = 0;
    long pid = got ? strtol(line, &end, 10) : 0;
    if (!got || errno != 0 || end == line || pid == 0)
        return false;
    if (pid < 0)
        pid = -pid;
    if (pg_pid_alive((pid_t)pid))
        return false; /* a live postmaster owns it: PostgreSQL is right */
    if (unlink(path) != 0)
        return errno == ENOENT;
    log_warn("pg", "removed stale %s: its postmaster %ld is dead (a zombie nobody reaped yet, or "
             "a reused pid)", path, pid);
    return true;
}
