#include "raft/node_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "raft/fsm_cmd.h"

int durable_write(const char *dir, const char *name, const char *data, size_t len, char *err,
                  size_t errlen)
{
    char tmp[4096], path[4096];
    if (snprintf(tmp, sizeof tmp, "%s/.%s.tmp", dir, name) >= (int)sizeof tmp ||
        snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path) {
        snprintf(err, errlen, "path too long: %s/%s", dir, name);
        return PGW_EINVAL;
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        snprintf(err, errlen, "cannot create %s: %s", tmp, strerror(errno));
        return PGW_EIO;
    }
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(fd, data + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            snprintf(err, errlen, "cannot write %s: %s", tmp, strerror(errno));
            close(fd);
            unlink(tmp);
            return PGW_EIO;
        }
        off += (size_t)w;
    }
    if (fsync(fd) != 0) {
        snprintf(err, errlen, "cannot fsync %s: %s", tmp, strerror(errno));
        close(fd);
        unlink(tmp);
        return PGW_EIO;
    }
    close(fd);
    if (rename(tmp, path) != 0) {
        snprintf(err, errlen, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
        unlink(tmp);
        return PGW_EIO;
    }
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        (void)fsync(dfd);
        close(dfd);
    }
    return PGW_OK;
}

int node_file_read(const char *dir, struct node_file *out, bool *found, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    *found = false;
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, NODE_FILE_NAME);
    struct stat stbuf;
    if (stat(path, &stbuf) != 0) {
        if (errno == ENOENT)
            return PGW_OK;
        snprintf(err, errlen, "cannot stat %s: %s", path, strerror(errno));
        return PGW_EIO;
    }
    json_error_t jerr;
    json_t *j = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (j == NULL) {
        snprintf(err, errlen, "%s is corrupted (line %d: %s); restore it or, to rejoin as a new "
                 "node, empty the directory", path, jerr.line, jerr.text);
        return PGW_EINVAL;
    }
    const json_t *id = json_object_get(j, "id"), *name = json_object_get(j, "name"),
                 *scope = json_object_get(j, "scope"), *mode = json_object_get(j, "mode");
    int rc = PGW_OK;
    if (!json_is_integer(id) || json_integer_value(id) <= 0 || !json_is_string(name) ||
        json_string_length(name) >= sizeof out->name || !json_is_string(scope) ||
        json_string_length(scope) >= sizeof out->scope || !json_is_string(mode)) {
        snprintf(err, errlen, "%s is corrupted (missing or bad id/name/scope/mode)", path);
        rc = PGW_EINVAL;
    } else {
        out->id = (uint64_t)json_integer_value(id);
        snprintf(out->name, sizeof out->name, "%s", json_string_value(name));
        snprintf(out->scope, sizeof out->scope, "%s", json_string_value(scope));
        if (strcmp(json_string_value(mode), "bootstrap") == 0)
            out->mode = NODE_MODE_BOOTSTRAP;
        else if (strcmp(json_string_value(mode), "join") == 0)
            out->mode = NODE_MODE_JOIN;
        else {
            snprintf(err, errlen, "%s: unknown mode \"%s\"", path, json_string_value(mode));
            rc = PGW_EINVAL;
        }
        if (rc == 0)
            *found = true;
    }
    json_decref(j);
    return rc;
}

int node_file_write(const char *dir, const struct node_file *nf, char *err, size_t errlen)
{
    json_t *j = json_pack("{s:I, s:s, s:s, s:s}", "id", (json_int_t)nf->id, "name", nf->name,
                          "scope", nf->scope, "mode",
                          nf->mode == NODE_MODE_BOOTSTRAP ? "bootstrap" : "join");
    if (j == NULL)
        return PGW_ENOMEM;
    char *text = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS);
    json_decref(j);
    if (text == NULL)
        return PGW_ENOMEM;
    size_t n = strlen(text);
    char *withnl = malloc(n + 2);
    if (withnl == NULL) {
        free(text);
        return PGW_ENOMEM;
    }
    memcpy(withnl, text, n);
    withnl[n] = '\n';
    withnl[n + 1] = '\0';
    free(text);
    int rc = durable_write(dir, NODE_FILE_NAME, withnl, n + 1, err, errlen);
    free(withnl);
    return rc;
}
