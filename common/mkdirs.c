#include "common/mkdirs.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "common/log.h"

int mkdirs(const char *path, mode_t mode, const char *what, char *err, size_t errlen)
{
    if (path == NULL || path[0] != '/')
        return PGW_OK;
    char p[4096];
    snprintf(p, sizeof p, "%s", path);
    struct stat st;
    if (stat(p, &st) == 0)
        return PGW_OK;
    size_t n = strlen(p);
    for (size_t i = 1; i <= n; i++) {
        if (p[i] != '/' && p[i] != '\0')
            continue;
        char save = p[i];
        p[i] = '\0';
        if (mkdir(p, mode) == 0) {
            log_info("pg", "created %s (%s)", p, what);
        } else if (errno != EEXIST) {
            snprintf(err, errlen, "%s %s: cannot create %s: %s", what, path, p, strerror(errno));
            return PGW_EIO;
        }
        p[i] = save;
    }
    return PGW_OK;
}
