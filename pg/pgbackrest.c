#include "pg/pgbackrest.h"

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include "pg/pgconf.h"
#include "pg/pgrewind.h"

void pgbackrest_conf_path(const struct cfg *c, char *buf, size_t len)
{
    snprintf(buf, len, "%s/pgbackrest.conf", c->raft.data_dir);
}

struct text {
    char *s;
    size_t len, cap;
    bool oom;
};

__attribute__((format(printf, 2, 3))) static void add(struct text *t, const char *fmt, ...)
{
    if (t->oom)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(t->s ? t->s + t->len : NULL, t->s ? t->cap - t->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            t->oom = true;
            return;
        }
        if (t->s != NULL && t->len + (size_t)n < t->cap) {
            t->len += (size_t)n;
            return;
        }
        size_t cap = t->cap ? t->cap : 512;
        while (cap <= t->len + (size_t)n)
            cap *= 2;
        char *ns = realloc(t->s, cap);
        if (ns == NULL) {
            t->oom = true;
            return;
        }
        t->s = ns;
        t->cap = cap;
    }
}

/* The first directory of unix_socket_directories, where pgBackRest finds
 * the server ("" when not set here: pgBackRest's default then). */
static void socket_dir(const struct cfg *c, char *buf, size_t len)
{
    buf[0] = '\0';
    const struct cfg_kvlist *p = &c->postgresql.parameters;
    for (size_t i = 0; i < p->n; i++)
        if (strcmp(p->items[i].key, "unix_socket_directories") == 0 && p->items[i].value) {
            const char *v = p->items[i].value;
            v += strspn(v, " ");
            size_t n = strcspn(v, ",");
            while (n > 0 && v[n - 1] == ' ')
                n--;
            snprintf(buf, len, "%.*s", (int)n, v);
        }
}

char *pgbackrest_conf_text(const struct cfg *c)
{
    struct text t = {0};
    char sock[1024];
    socket_dir(c, sock, sizeof sock);
    add(&t, "# written by pgwarden from backup.options at start, do not edit\n[global]\n");
    for (size_t i = 0; i < c->backup.options.n; i++)
        add(&t, "%s\n", c->backup.options.items[i]);
    add(&t, "\n[%s]\npg1-path=%s\npg1-port=%u\n", c->backup.stanza, c->postgresql.data_dir,
        (unsigned)c->postgresql.listen.port);
    if (sock[0])
        add(&t, "pg1-socket-path=%s\n", sock);
    if (c->postgresql.superuser.username)
        add(&t, "pg1-user=%s\n", c->postgresql.superuser.username);
    if (t.oom) {
        free(t.s);
        return NULL;
    }
    return t.s;
}

int pgbackrest_conf_write(const struct cfg *c, char *err, size_t errlen)
{
    char path[4200];
    pgbackrest_conf_path(c, path, sizeof path);
    char *text = pgbackrest_conf_text(c);
    if (text == NULL) {
        snprintf(err, errlen, "out of memory");
        return PGW_ENOMEM;
    }
    int rc = pgconf_write_file(path, text, strlen(text), 0600, err, errlen);
    free(text);
    return rc;
}

/* One word for /bin/sh: '...' with ' written as '\'' */
static void quote(struct text *t, const char *w)
{
    add(t, "'");
    for (const char *p = w; *p; p++) {
        if (*p == '\'')
            add(t, "'\\''");
        else
            add(t, "%c", *p);
    }
    add(t, "'");
}

static int shell_command(const struct cfg *c, const char *tail, char *buf, size_t len)
{
    struct text t = {0};
    char conf[4200], arg[4300];
    pgbackrest_conf_path(c, conf, sizeof conf);
    quote(&t, c->backup.command);
    snprintf(arg, sizeof arg, "--config=%s", conf);
    add(&t, " ");
    quote(&t, arg);
    snprintf(arg, sizeof arg, "--stanza=%s", c->backup.stanza);
    add(&t, " ");
    quote(&t, arg);
    add(&t, " %s", tail);
    int rc = PGW_OK;
    if (t.oom)
        rc = PGW_ENOMEM;
    else if (t.len >= len)
        rc = PGW_EINVAL;
    else
        memcpy(buf, t.s, t.len + 1);
    free(t.s);
    return rc;
}

int pgbackrest_archive_command(const struct cfg *c, char *buf, size_t len)
{
    return shell_command(c, "archive-push %p", buf, len);
}

int pgbackrest_restore_command(const struct cfg *c, char *buf, size_t len)
{
    return shell_command(c, "archive-get %f \"%p\"", buf, len);
}

char **pgbackrest_argv(const struct cfg *c, const char *command, const char *const *extra,
                       const char *arg)
{
    size_t n_extra = 0;
    while (extra != NULL && extra[n_extra] != NULL)
        n_extra++;
    char **v = calloc(n_extra + 6, sizeof *v);
    if (v == NULL)
        return NULL;
    char conf[4200], word[4300];
    pgbackrest_conf_path(c, conf, sizeof conf);
    size_t i = 0;
    v[i++] = strdup(c->backup.command);
    snprintf(word, sizeof word, "--config=%s", conf);
    v[i++] = strdup(word);
    snprintf(word, sizeof word, "--stanza=%s", c->backup.stanza);
    v[i++] = strdup(word);
    for (size_t k = 0; k < n_extra; k++)
        v[i++] = strdup(extra[k]);
    v[i++] = strdup(command);
    if (arg != NULL)
        v[i++] = strdup(arg);
    for (size_t k = 0; k < i; k++)
        if (v[k] == NULL) {
            for (size_t j = 0; j < i; j++)
                free(v[j]);
            free(v);
            return NULL;
        }
    return v;
}

void pgbackrest_argv_free(char **argv)
{
    if (argv == NULL)
        return;
    for (size_t i = 0; argv[i] != NULL; i++)
        free(argv[i]);
    free(argv);
}

static uint64_t get_u64(const json_t *o, const char *a, const char *b)
{
    const json_t *x = json_object_get(o, a);
    if (b != NULL)
        x = json_object_get(x, b);
    return json_is_integer(x) && json_integer_value(x) > 0 ? (uint64_t)json_integer_value(x) : 0;
}

int pgbackrest_info_parse(const char *json, size_t len, const char *stanza,
                          struct pgbackrest_info *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    json_error_t je;
    json_t *root = json_loadb(json, len, 0, &je);
    if (root == NULL || !json_is_array(root)) {
        snprintf(err, errlen, "pgbackrest info: not a JSON array (%s)", root ? "" : je.text);
        json_decref(root);
        return PGW_EINVAL;
    }
    size_t i;
    json_t *st;
    json_array_foreach(root, i, st) {
        const json_t *name = json_object_get(st, "name");
        if (!json_is_string(name) || strcmp(json_string_value(name), stanza) != 0)
            continue;
        out->stanza_found = true;
        const json_t *status = json_object_get(st, "status");
        const json_t *code = json_object_get(status, "code");
        const json_t *msg = json_object_get(status, "message");
        out->status_code = json_is_integer(code) ? (int)json_integer_value(code) : -1;
        snprintf(out->status_msg, sizeof out->status_msg, "%s",
                 json_is_string(msg) ? json_string_value(msg) : "");
        const json_t *backups = json_object_get(st, "backup");
        size_t k;
        json_t *b;
        json_array_foreach(backups, k, b) {
            const json_t *label = json_object_get(b, "label");
            const json_t *type = json_object_get(b, "type");
            const json_t *error = json_object_get(b, "error");
            if (!json_is_string(label) || !json_is_string(type) || json_is_true(error))
                continue;
            uint64_t stop = get_u64(b, "timestamp", "stop");
            out->n_backups++;
            if (out->n_list == PGBR_LIST_MAX) {
                memmove(&out->list[0], &out->list[1], sizeof out->list[0] * (PGBR_LIST_MAX - 1));
                out->n_list--;
            }
            struct pgbackrest_backup *e = &out->list[out->n_list++];
            memset(e, 0, sizeof *e);
            snprintf(e->label, sizeof e->label, "%s", json_string_value(label));
            snprintf(e->type, sizeof e->type, "%s", json_string_value(type));
            e->start_s = get_u64(b, "timestamp", "start");
            e->stop_s = stop;
            const json_t *arch = json_object_get(b, "archive");
            const json_t *ws = json_object_get(arch, "start");
            const json_t *we = json_object_get(arch, "stop");
            snprintf(e->wal_start, sizeof e->wal_start, "%s", json_is_string(ws) ? json_string_value(ws) : "");
            snprintf(e->wal_stop, sizeof e->wal_stop, "%s", json_is_string(we) ? json_string_value(we) : "");
            e->size = get_u64(b, "info", "size");
            const json_t *repo = json_object_get(json_object_get(b, "info"), "repository");
            e->repo_size = get_u64(repo, "size", NULL);
            if (stop >= out->last_stop_s) {
                out->last_stop_s = stop;
                snprintf(out->last_label, sizeof out->last_label, "%s", json_string_value(label));
                snprintf(out->last_type, sizeof out->last_type, "%s", json_string_value(type));
            }
            if (strcmp(json_string_value(type), "full") == 0 && stop > out->last_full_stop_s)
                out->last_full_stop_s = stop;
        }
        const json_t *archives = json_object_get(st, "archive");
        json_t *a;
        json_array_foreach(archives, k, a) {
            const json_t *mn = json_object_get(a, "min");
            const json_t *mx = json_object_get(a, "max");
            if (json_is_string(mn) && out->archive_min[0] == '\0')
                snprintf(out->archive_min, sizeof out->archive_min, "%s", json_string_value(mn));
            if (json_is_string(mx))
                snprintf(out->archive_max, sizeof out->archive_max, "%s", json_string_value(mx));
        }
        break;
    }
    json_decref(root);
    return PGW_OK;
}

static bool wal_name(const char *s)
{
    return strlen(s) == 24 && strspn(s, "0123456789ABCDEF") == 24;
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp(a, b);
}

int pgbackrest_fill_plan(const char *data_dir, uint32_t timeline, struct pgbackrest_fill *out,
                         char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (timeline < 2)
        return PGW_ENOTFOUND;
    struct pg_tli_history h;
    int rc = pg_tli_history_read(data_dir, timeline, &h, err, errlen);
    if (rc != PGW_OK)
        return rc;
    if (h.n == 0)
        return PGW_ENOTFOUND;
    out->parent_tli = h.items[h.n - 1].parent_tli;
    out->switch_lsn = h.items[h.n - 1].switchpoint;
    char prefix[9];
    snprintf(prefix, sizeof prefix, "%08X", (unsigned)out->parent_tli);
    char path[4200];
    snprintf(path, sizeof path, "%s/pg_wal", data_dir);
    DIR *d = opendir(path);
    if (d == NULL) {
        snprintf(err, errlen, "cannot list %s: %s", path, strerror(errno));
        return PGW_EIO;
    }
    size_t cap = 0;
    uint64_t segsize = 0;
    struct dirent *e;
    rc = PGW_OK;
    while ((e = readdir(d)) != NULL && rc == PGW_OK) {
        if (!wal_name(e->d_name) || strncmp(e->d_name, prefix, 8) != 0)
            continue;
        char f[4300];
        struct stat sb;
        snprintf(f, sizeof f, "%s/%s", path, e->d_name);
        if (stat(f, &sb) != 0 || !S_ISREG(sb.st_mode))
            continue;
        /* the segment size is every complete segment's size (1 MB to 1 GB, a power of 2) */
        uint64_t sz = (uint64_t)sb.st_size;
        if (sz < (1u << 20) || sz > (1u << 30) || (sz & (sz - 1)) != 0)
            continue;
        if (segsize == 0)
            segsize = sz;
        else if (sz != segsize)
            continue;
        if (out->n == cap) {
            size_t nc = cap ? cap * 2 : 64;
            if (nc > 65536) {
                break;
            }
            void *nn = realloc(out->names, nc * sizeof *out->names);
            if (nn == NULL) {
                rc = PGW_ENOMEM;
                break;
            }
            out->names = nn;
            cap = nc;
        }
        memcpy(out->names[out->n++], e->d_name, 25);
    }
    closedir(d);
    if (rc != PGW_OK) {
        snprintf(err, errlen, "out of memory");
        pgbackrest_fill_free(out);
        return rc;
    }
    if (segsize == 0) {
        out->n = 0;
        return PGW_OK;
    }
    uint64_t segno = out->switch_lsn / segsize, per_id = 0x100000000ull / segsize;
    snprintf(out->switch_segment, sizeof out->switch_segment, "%08X%08X%08X",
             (unsigned)out->parent_tli, (unsigned)(segno / per_id), (unsigned)(segno % per_id));
    size_t k = 0;
    for (size_t i = 0; i < out->n; i++)
        if (strcmp(out->names[i], out->switch_segment) < 0)
            memcpy(out->names[k++], out->names[i], 25);
    out->n = k;
    qsort(out->names, out->n, sizeof *out->names, cmp_name);
    return PGW_OK;
}

void pgbackrest_fill_free(struct pgbackrest_fill *f)
{
    free(f->names);
    memset(f, 0, sizeof *f);
}
