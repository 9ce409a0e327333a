/* One daemon per state directory (see dirlock.h). */
#include "common/dirlock.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

static void busy_message(const char *path, const char *pid, char *err, size_t errlen)
{
    snprintf(err, errlen, "another pgwarden (pid %s) is already running with this state "
             "directory (%s is locked)", pid[0] ? pid : "unknown", path);
}

/* The pid the holder wrote, first line only. */
static void read_pid(int fd, char *buf, size_t len)
{
    ssize_t n = pread(fd, buf, len - 1, 0);
    buf[n > 0 ? n : 0] = '\0';
    buf[strcspn(buf, "\n")] = '\0';
}

int dirlock_take(const char *dir, const char *name, int *fd_out, char *err, size_t errlen)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        snprintf(err, errlen, "cannot open the lock file %s: %s", path, strerror(errno));
        return PGW_EIO;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        char buf[32] = "";
        read_pid(fd, buf, sizeof buf);
        close(fd);
        if (e == EWOULDBLOCK) {
            busy_message(path, buf, err, errlen);
            return PGW_EBUSY;
        }
        snprintf(err, errlen, "cannot lock %s: %s", path, strerror(e));
        return PGW_EIO;
    }
    char line[32];
    int n = snprintf(line, sizeof line, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, line, (size_t)n, 0) != n) {
        snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
        close(fd);
        return PGW_EIO;
    }
    *fd_out = fd;
    return PGW_OK;
}

int dirlock_probe(const char *dir, const char *name, char *err, size_t errlen)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return PGW_OK; /* no lock file (yet): nobody holds it */
    int rc = PGW_OK;
    if (flock(fd, LOCK_SH | LOCK_NB) != 0) {
        if (errno == EWOULDBLOCK) {
            char buf[32] = "";
            read_pid(fd, buf, sizeof buf);
            busy_message(path, buf, err, errlen);
            rc = PGW_EBUSY;
        }
    }
    close(fd); /* releases the shared lock, if it was taken */
    return rc;
}
