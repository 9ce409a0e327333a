/* Managed configuration files: postgresql.conf, standby.signal, pg_hba.conf,
 * pgpass. Synchronous (a few small local files); every write is durable
 * (temp file, fsync, rename, fsync of the directory) so that a crash leaves
 * either the old or the new file, never half of one. */
#include "pg/pgconf_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "pg/pgbackrest.h"

/* PostgreSQL refuses a hot standby whose shared-memory settings are below
 * the primary's (recorded in pg_control), and any node may become primary:
 * these must be equal cluster-wide (patroni-behaviour.md §3.9). */
const char *const pgconf_cluster_only_params[] = {
    "max_connections",      "max_locks_per_transaction", "max_worker_processes",
    "max_prepared_transactions", "max_wal_senders",      "max_replication_slots",
    "wal_level",            "track_commit_timestamp",    "wal_log_hints",
    NULL,
};

static const char *const cluster_defaults[][2] = {
    {"max_connections", "100"},
    {"max_locks_per_transaction", "64"},
    {"max_worker_processes", "8"},
    {"max_prepared_transactions", "0"},
    {"max_wal_senders", "10"},
    {"max_replication_slots", "10"},
    {"wal_level", "replica"},
    {"track_commit_timestamp", "off"},
    {"wal_log_hints", "on"},
};

/* Derived from the local configuration; a user value is ignored. */
static const char *const forced_params[] = {"listen_addresses", "port", "cluster_name",
                                            "hot_standby", NULL};
/* Written by pgwarden for a standby only; user values are ignored. */
static const char *const recovery_managed[] = {"primary_conninfo", "primary_slot_name",
                                               "recovery_target_timeline", NULL};

/* postmaster-context parameters commonly set (a hint only; the server's
 * pending_restart after a reload is authoritative). */
static const char *const postmaster_params[] = {
    "max_connections", "max_locks_per_transaction", "max_worker_processes",
    "max_prepared_transactions", "max_wal_senders", "max_replication_slots", "wal_level",
    "track_commit_timestamp", "wal_log_hints", "shared_buffers", "listen_addresses", "port",
    "shared_preload_libraries", "huge_pages", "max_files_per_process", "archive_mode",
    "wal_buffers", "hot_standby", "cluster_name", "unix_socket_directories",
    "max_pred_locks_per_transaction", "superuser_reserved_connections", "ssl_passphrase_command_supports_reload",
    "wal_decode_buffer_size", "autovacuum_max_workers", "max_logical_replication_workers",
    "logging_collector", "event_source", "data_directory", "hba_file", "ident_file",
    "external_pid_file", "bonjour", "bonjour_name", "dynamic_shared_memory_type",
    "shared_memory_type", "track_activity_query_size", "recovery_target_timeline", NULL,
};

static bool in_list(const char *const *list, const char *name)
{
    for (size_t i = 0; list[i]; i++)
        if (strcmp(list[i], name) == 0)
            return true;
    return false;
}

/* ---- parameter sets --------------------------------------------------- */

void pgconf_params_free(struct pgconf_params *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->n; i++) {
        free(p->items[i].name);
        free(p->items[i].value);
    }
    free(p->items);
    p->items = NULL;
    p->n = 0;
}

static struct pgconf_param *find_param(const struct pgconf_params *p, const char *name)
{
    for (size_t i = 0; i < p->n; i++)
        if (strcmp(p->items[i].name, name) == 0)
            return &p->items[i];
    return NULL;
}

const char *pgconf_params_get(const struct pgconf_params *p, const char *name)
{
    struct pgconf_param *x = find_param(p, name);
    return x ? x->value : NULL;
}

static int param_set(struct pgconf_params *p, const char *name, const char *value)
{
    struct pgconf_param *x = find_param(p, name);
    char *v = strdup(value ? value : "");
    if (!v)
        return PGW_ENOMEM;
    if (x) {
        free(x->value);
        x->value = v;
        return PGW_OK;
    }
    char *nm = strdup(name);
    struct pgconf_param *items = realloc(p->items, (p->n + 1) * sizeof *items);
    if (!nm || !items) {
        free(nm);
        free(v);
        if (items)
            p->items = items;
        return PGW_ENOMEM;
    }
    p->items = items;
    size_t pos = 0;
    while (pos < p->n && strcmp(p->items[pos].name, name) < 0)
        pos++;
    memmove(&p->items[pos + 1], &p->items[pos], (p->n - pos) * sizeof *items);
    p->items[pos].name = nm;
    p->items[pos].value = v;
    p->n++;
    return PGW_OK;
}

static void param_del(struct pgconf_params *p, const char *name)
{
    for (size_t i = 0; i < p->n; i++) {
        if (strcmp(p->items[i].name, name) == 0) {
            free(p->items[i].name);
            free(p->items[i].value);
            memmove(&p->items[i], &p->items[i + 1], (p->n - i - 1) * sizeof p->items[0]);
            p->n--;
            return;
        }
    }
}

/* A GUC name: letters, digits, '_' and '.' (custom "ext.name"). */
static bool valid_guc_name(const char *s)
{
    if (!s || !*s || strlen(s) > 63)
        return false;
    for (const char *c = s; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
              *c == '_' || *c == '.'))
            return false;
    return true;
}

static void lower_copy(const char *in, char *out, size_t len)
{
    size_t i = 0;
    for (; in[i] && i + 1 < len; i++)
        out[i] = (in[i] >= 'A' && in[i] <= 'Z') ? (char)(in[i] - 'A' + 'a') : in[i];
    out[i] = '\0';
}

static const char *local_host(const struct cfg *cfg, char *buf, size_t len)
{
    const char *h = cfg->postgresql.listen.host;
    if (!h || !*h)
        return "127.0.0.1";
    /* "a,b" lists: the first address */
    size_t n = strcspn(h, ", ");
    if (n >= len)
        n = len - 1;
    memcpy(buf, h, n);
    buf[n] = '\0';
    if (strcmp(buf, "0.0.0.0") == 0 || strcmp(buf, "*") == 0 || strcmp(buf, "") == 0)
        return "127.0.0.1";
    if (strcmp(buf, "::") == 0)
        return "::1";
    return buf;
}

static const struct cfg_pgauth *auth_of(const struct cfg *cfg, enum pgconf_user user)
{
    switch (user) {
    case PGCONF_REPLICATION: return &cfg->postgresql.replication;
    case PGCONF_REWIND:
        /* no rewind section: pg_rewind connects as the superuser, with its
         * password and ssl settings (Patroni's rewind_credentials) */
        if (cfg->postgresql.rewind.username && *cfg->postgresql.rewind.username)
            return &cfg->postgresql.rewind;
        return &cfg->postgresql.superuser;
    case PGCONF_SUPERUSER:
    default: return &cfg->postgresql.superuser;
    }
}

int pgconf_conn_params(const struct cfg *cfg, enum pgconf_user user, const char *host,
                       uint16_t port, const char *dbname, bool replication,
                       struct pgconn_params *out)
{
    memset(out, 0, sizeof *out);
    char hbuf[256];
    const struct cfg_pgauth *a = auth_of(cfg, user);
    if (!host) {
        host = local_host(cfg, hbuf, sizeof hbuf);
        port = cfg->postgresql.listen.port;
    }
    char pbuf[16];
    snprintf(pbuf, sizeof pbuf, "%u", (unsigned)port);
    int rc = PGW_OK;
    const char *kv[][2] = {
        {"host", host},
        {"port", pbuf},
        {"user", a->username},
        {"password", a->password},
        {"dbname", replication ? NULL : (dbname ? dbname : "postgres")},
        {"replication", replication ? "1" : NULL},
        {"sslmode", a->sslmode ? a->sslmode : "prefer"},
        {"sslcert", a->sslcert},
        {"sslkey", a->sslkey},
        {"sslrootcert", a->sslrootcert},
        {"sslcrl", a->sslcrl},
        {"sslpassword", a->sslpassword},
        {"channel_binding", a->channel_binding},
        {"gssencmode", a->gssencmode ? a->gssencmode : "prefer"},
        {"application_name", "pgwarden"},
    };
    for (size_t i = 0; i < sizeof kv / sizeof kv[0] && rc == PGW_OK; i++)
        if (kv[i][1] && *kv[i][1])
            rc = pgconn_params_set(out, kv[i][0], kv[i][1]);
    if (rc != PGW_OK)
        pgconn_params_free(out);
    return rc;
}

static const char *kv_get(const struct cfg_kvlist *l, const char *name)
{
    const char *v = NULL;
    for (size_t i = 0; l && i < l->n; i++)
        if (l->items[i].key && strcasecmp(l->items[i].key, name) == 0)
            v = l->items[i].value ? l->items[i].value : "";
    return v;
}

int pgconf_local_socket_dir(const struct cfg *cfg, const struct cfg_dcs *dcs, char *buf, size_t len)
{
    buf[0] = '\0';
    const char *v = kv_get(&cfg->postgresql.parameters, "unix_socket_directories");
    if (v == NULL && dcs != NULL)
        v = kv_get(&dcs->pg_parameters, "unix_socket_directories");
    if (v == NULL)
        return 0;
    /* only an absolute path reaches a socket; "@abstract" and relative ones
     * do not (Patroni's _get_unix_local_address) */
    while (*v) {
        v += strspn(v, " \t");
        size_t n = strcspn(v, ",");
        size_t t = n;
        while (t > 0 && (v[t - 1] == ' ' || v[t - 1] == '\t'))
            t--;
        if (t > 0 && v[0] == '/' && t < len) {
            memcpy(buf, v, t);
            buf[t] = '\0';
            return 1;
        }
        v += n;
        if (*v == ',')
            v++;
    }
    return -1;
}

int pgconf_local_conn_params(const struct cfg *cfg, const struct cfg_dcs *dcs, const char *dbname,
                             struct pgconn_params *out)
{
    int rc = pgconf_conn_params(cfg, PGCONF_SUPERUSER, NULL, 0, dbname, false, out);
    if (rc != PGW_OK || !cfg->postgresql.use_unix_socket)
        return rc;
    char dir[1024];
    int found = pgconf_local_socket_dir(cfg, dcs, dir, sizeof dir);
    if (found > 0)
        rc = pgconn_params_set(out, "host", dir);
    else if (found == 0)
        rc = pgconn_params_set(out, "host", NULL); /* libpq's default directory */
    if (rc != PGW_OK)
        pgconn_params_free(out);
    return rc;
}

static int primary_conninfo(const struct pgconf_input *in, char *buf, size_t len)
{
    const struct cfg *cfg = in->cfg;
    struct pgconn_params p;
    int rc = pgconf_conn_params(cfg, PGCONF_REPLICATION, in->role.primary_host,
                                in->role.primary_port, NULL, false, &p);
    if (rc != PGW_OK)
        return rc;
    /* dbname/replication are set by the walreceiver itself; the password
     * comes from the passfile, never inline. */
    rc = pgconn_params_set(&p, "dbname", NULL);
    if (rc == PGW_OK)
        rc = pgconn_params_set(&p, "application_name", cfg->name);
    if (rc == PGW_OK && cfg->postgresql.pgpass)
        rc = pgconn_params_set(&p, "passfile", cfg->postgresql.pgpass);
    if (rc == PGW_OK)
        rc = pgconn_params_set(&p, "target_session_attrs", NULL);
    if (rc == PGW_OK)
        rc = pgconn_params_to_conninfo(&p, false, buf, len);
    pgconn_params_free(&p);
    return rc;
}

/* backup.method pgbackrest: every node archives while it is primary
 * (archive_mode on, not always: pgBackRest refuses to back up a cluster
 * archiving from its standbys), so the setting needs no restart when a
 * replica is promoted. */
static int backup_params(const struct cfg *cfg, struct pgconf_params *out, size_t *warns,
                         char *errbuf, size_t errlen)
{
    char cmd[8192];
    if (pgbackrest_archive_command(cfg, cmd, sizeof cmd) != 0) {
        snprintf(errbuf, errlen, "backup: archive_command too long");
        return PGW_EINVAL;
    }
    static const char *const owned[] = {"archive_mode", "archive_command", "archive_library"};
    for (size_t i = 0; i < sizeof owned / sizeof owned[0]; i++)
        if (pgconf_params_get(out, owned[i]) != NULL) {
            log_warn("pg", "cluster-wide parameter %s ignored: backup.method pgbackrest sets it",
                     owned[i]);
            (*warns)++;
            param_del(out, owned[i]);
        }
    int rc = param_set(out, "archive_mode", "on");
    if (!rc)
        rc = param_set(out, "archive_command", cmd);
    return rc;
}

int pgconf_build(const struct pgconf_input *in, struct pgconf_params *out, size_t *nwarn,
                 char *errbuf, size_t errlen)
{
    memset(out, 0, sizeof *out);
    size_t warns = 0;
    const struct cfg *cfg = in->cfg;
    int major = in->pg_major ? in->pg_major : 15;
    int rc = PGW_OK;
    if (!cfg || !cfg->postgresql.present) {
        snprintf(errbuf, errlen, "postgresql section missing");
        return PGW_EINVAL;
    }
    if (major < 13 || major > 17) {
        snprintf(errbuf, errlen, "PostgreSQL %d is not supported (13 to 17 are)", major);
        return PGW_EINVAL;
    }
    if (in->role.standby && in->role.primary_host && *in->role.primary_host &&
        in->role.primary_port == 0) {
        snprintf(errbuf, errlen, "standby configuration needs the primary's port");
        return PGW_EINVAL;
    }

    for (size_t i = 0; i < sizeof cluster_defaults / sizeof cluster_defaults[0] && !rc; i++)
        rc = param_set(out, cluster_defaults[i][0], cluster_defaults[i][1]);
    if (!rc)
        rc = param_set(out, "wal_keep_size", "128MB");
    /* A walreceiver that failed (primary gone, slot not created yet) retries
     * after this long; PostgreSQL's 5 s would dominate a failover. */
    if (!rc)
        rc = param_set(out, "wal_retrieve_retry_interval", "1s");

    /* cluster-wide parameters, then the node's own over them: Patroni's
     * order ("the local configuration overrides the dynamic one"), except
     * for the parameters that must be equal on all nodes */
    if (in->dcs) {
        const struct cfg_kvlist *cl = &in->dcs->pg_parameters;
        for (size_t i = 0; i < cl->n && !rc; i++) {
            const char *k = cl->items[i].key;
            char name[64];
            if (!valid_guc_name(k)) {
                snprintf(errbuf, errlen, "dcs postgresql.parameters: \"%s\" is not a parameter name",
                         k ? k : "");
                rc = PGW_EINVAL;
                break;
            }
            lower_copy(k, name, sizeof name);
            if (in_list(forced_params, name) || in_list(recovery_managed, name)) {
                log_warn("pg", "cluster-wide parameter %s ignored: pgwarden manages it", name);
                warns++;
                continue;
            }
            rc = param_set(out, name, cl->items[i].value);
        }
    }
    /* the node's own parameters */
    const struct cfg_kvlist *loc = &cfg->postgresql.parameters;
    for (size_t i = 0; i < loc->n && !rc; i++) {
        const char *k = loc->items[i].key;
        char name[64];
        if (!valid_guc_name(k)) {
            snprintf(errbuf, errlen, "postgresql.parameters: \"%s\" is not a parameter name", k ? k : "");
            rc = PGW_EINVAL;
            break;
        }
        lower_copy(k, name, sizeof name);
        if (in_list(pgconf_cluster_only_params, name)) {
            log_warn("pg", "postgresql.parameters.%s ignored: it must be equal on all nodes, set it "
                     "in the cluster-wide configuration (bootstrap.dcs.postgresql.parameters)", name);
            warns++;
            continue;
        }
        if (in_list(forced_params, name) || in_list(recovery_managed, name)) {
            log_warn("pg", "postgresql.parameters.%s ignored: pgwarden manages it", name);
            warns++;
            continue;
        }
        rc = param_set(out, name, loc->items[i].value);
    }
    if (rc)
        goto fail;

    /* wal_keep_segments was replaced by wal_keep_size in PG13. */
    const char *segs = pgconf_params_get(out, "wal_keep_segments");
    if (segs) {
        char *end;
        errno = 0;
        unsigned long long n = strtoull(segs, &end, 10);
        if (errno == 0 && end != segs && *end == '\0') {
            char v[32];
            snprintf(v, sizeof v, "%lluMB", n * 16ull);
            rc = param_set(out, "wal_keep_size", v);
        }
        param_del(out, "wal_keep_segments");
        if (rc)
            goto fail;
    }

    /* forced */
    char port[16];
    snprintf(port, sizeof port, "%u", (unsigned)cfg->postgresql.listen.port);
    rc = param_set(out, "listen_addresses",
                   cfg->postgresql.listen.host ? cfg->postgresql.listen.host : "127.0.0.1");
    if (!rc)
        rc = param_set(out, "port", port);
    if (!rc)
        rc = param_set(out, "cluster_name", cfg->scope ? cfg->scope : "");
    if (!rc)
        rc = param_set(out, "hot_standby", "on");
    if (!rc && in->sync_standby_names != NULL)
        rc = param_set(out, "synchronous_standby_names",
                       in->role.standby ? "" : in->sync_standby_names);
    /* config_dir apart from data_dir: PostgreSQL runs with --config-file
     * there (pgctl) and must read pg_hba.conf and pg_ident.conf from there
     * too, unless the parameters name other files (Patroni's config.py) */
    static const char *const cdfiles[][2] = {{"hba_file", "pg_hba.conf"},
                                             {"ident_file", "pg_ident.conf"}};
    for (size_t i = 0; i < 2 && !rc && pgconf__separate_config_dir(cfg); i++) {
        char path[4200];
        snprintf(path, sizeof path, "%s/%s", pgconf_config_dir(cfg), cdfiles[i][1]);
        if (pgconf_params_get(out, cdfiles[i][0]) == NULL)
            rc = param_set(out, cdfiles[i][0], path);
    }
    if (!rc && cfg_backup_enabled(&cfg->backup))
        rc = backup_params(cfg, out, &warns, errbuf, errlen);
    if (rc)
        goto fail;

    /* recovery */
    if (in->role.standby) {
        /* No upstream known yet (no primary in the cluster): a standby that
         * replays what it has and waits, with no primary_conninfo. */
        if (in->role.primary_host && *in->role.primary_host) {
            char ci[2048];
            rc = primary_conninfo(in, ci, sizeof ci);
            if (rc) {
                snprintf(errbuf, errlen, "primary_conninfo too long or out of memory");
                goto fail;
            }
            rc = param_set(out, "primary_conninfo", ci);
        }
        const char *slot = in->role.primary_slot_name;
        const struct cfg_standby *sb = in->role.standby_leader && in->dcs ? &in->dcs->standby : NULL;
        if (sb != NULL)
            slot = sb->primary_slot_name; /* the remote's slot, or none */
        if (!rc && in->role.primary_host && *in->role.primary_host && slot && *slot)
            rc = param_set(out, "primary_slot_name", slot);
        if (!rc)
            rc = param_set(out, "recovery_target_timeline", "latest");
        const struct cfg_kvlist *rcv = &cfg->postgresql.recovery_conf;
        for (size_t i = 0; i < rcv->n && !rc; i++) {
            char name[64];
            if (!valid_guc_name(rcv->items[i].key)) {
                snprintf(errbuf, errlen, "postgresql.recovery_conf: \"%s\" is not a parameter name",
                         rcv->items[i].key ? rcv->items[i].key : "");
                rc = PGW_EINVAL;
                break;
            }
            lower_copy(rcv->items[i].key, name, sizeof name);
            if (in_list(recovery_managed, name))
                continue;
            rc = param_set(out, name, rcv->items[i].value);
        }
        char rcmd[8192];
        if (!rc && cfg_backup_enabled(&cfg->backup)) {
            rc = pgbackrest_restore_command(cfg, rcmd, sizeof rcmd);
            if (!rc)
                rc = param_set(out, "restore_command", rcmd);
            else
                snprintf(errbuf, errlen, "backup: restore_command too long");
        }
        /* the standby cluster's settings win over the local ones */
        const char *sbp[][2] = {
            {"restore_command", sb ? sb->restore_command : NULL},
            {"archive_cleanup_command", sb ? sb->archive_cleanup_command : NULL},
            {"recovery_min_apply_delay", sb ? sb->recovery_min_apply_delay : NULL},
        };
        for (size_t i = 0; i < sizeof sbp / sizeof sbp[0] && !rc; i++)
            if (sbp[i][1] != NULL && *sbp[i][1])
                rc = param_set(out, sbp[i][0], sbp[i][1]);
        if (rc)
            goto fail;
    } else {
        /* a delay only means something on a standby */
        param_del(out, "recovery_min_apply_delay");
    }
    if (nwarn)
        *nwarn = warns;
    return PGW_OK;
fail:
    if (rc == PGW_ENOMEM)
        snprintf(errbuf, errlen, "out of memory");
    pgconf_params_free(out);
    return rc;
}

/* ---- rendering -------------------------------------------------------- */

struct sbuf {
    char *s;
    size_t len, cap;
    bool oom;
};

static void sb_add(struct sbuf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 1024;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *ns = realloc(b->s, cap);
        if (!ns) {
            b->oom = true;
            return;
        }
        b->s = ns;
        b->cap = cap;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
}

static void sb_str(struct sbuf *b, const char *s)
{
    sb_add(b, s, strlen(s));
}

/* A postgresql.conf string literal: '' for ', \\ for \. */
static void sb_quoted(struct sbuf *b, const char *v)
{
    sb_add(b, "'", 1);
    for (const char *c = v; *c; c++) {
        if (*c == '\'')
            sb_add(b, "''", 2);
        else if (*c == '\\')
            sb_add(b, "\\\\", 2);
        else if (*c == '\n' || *c == '\r')
            sb_add(b, " ", 1);
        else
            sb_add(b, c, 1);
    }
    sb_add(b, "'", 1);
}

char *pgconf_render(const struct pgconf_params *p, const char *include_file)
{
    struct sbuf b = {0};
    sb_str(&b, MANAGED_MARK "\n");
    sb_str(&b, "# Parameters come from pgwarden's configuration (local postgresql.parameters\n"
               "# merged with the cluster-wide ones). Put your own settings in the\n"
               "# configuration, not here: this file is rewritten.\n");
    if (include_file) {
        sb_str(&b, "include ");
        sb_quoted(&b, include_file);
        sb_str(&b, "\n");
    }
    sb_str(&b, "\n");
    for (size_t i = 0; i < p->n; i++) {
        sb_str(&b, p->items[i].name);
        sb_str(&b, " = ");
        sb_quoted(&b, p->items[i].value);
        sb_str(&b, "\n");
    }
    if (b.oom) {
        free(b.s);
        return NULL;
    }
    return b.s;
}

/* ---- files -------------------------------------------------------------- */

static int fsync_dir_of(const char *path, char *errbuf, size_t errlen)
{
    char *copy = strdup(path);
    if (!copy) {
        snprintf(errbuf, errlen, "out of memory");
        return PGW_ENOMEM;
    }
    const char *dir = dirname(copy);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(errbuf, errlen, "cannot open directory %s: %s", dir, strerror(errno));
        free(copy);
        return PGW_EIO;
    }
    int rc = fsync(fd);
    int e = errno;
    close(fd);
    if (rc != 0) {
        snprintf(errbuf, errlen, "cannot fsync directory %s: %s", dir, strerror(e));
        free(copy);
        return PGW_EIO;
    }
    free(copy);
    return PGW_OK;
}

int pgconf_write_file(const char *path, const char *data, size_t len, unsigned mode, char *errbuf,
                      size_t errlen)
{
    char tmp[4096];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid()) >= sizeof tmp) {
        snprintf(errbuf, errlen, "path too long: %s", path);
        return PGW_EINVAL;
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, (mode_t)mode);
    if (fd < 0) {
        snprintf(errbuf, errlen, "cannot create %s: %s", tmp, strerror(errno));
        return PGW_EIO;
    }
    /* the umask may have narrowed it; secrets must not be wider */
    if (fchmod(fd, (mode_t)mode) != 0) {
        snprintf(errbuf, errlen, "cannot chmod %s: %s", tmp, strerror(errno));
        goto fail;
    }
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(fd, data + off, len - off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            snprintf(errbuf, errlen, "cannot write %s: %s", tmp, strerror(errno));
            goto fail;
        }
        off += (size_t)w;
    }
    if (fsync(fd) != 0) {
        snprintf(errbuf, errlen, "cannot fsync %s: %s", tmp, strerror(errno));
        goto fail;
    }
    if (close(fd) != 0) {
        fd = -1;
        snprintf(errbuf, errlen, "cannot close %s: %s", tmp, strerror(errno));
        goto fail;
    }
    fd = -1;
    if (rename(tmp, path) != 0) {
        snprintf(errbuf, errlen, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
        goto fail;
    }
    return fsync_dir_of(path, errbuf, errlen);
fail:
    if (fd >= 0)
        close(fd);
    unlink(tmp);
    return PGW_EIO;
}

char *pgconf__read_small(const char *path, bool *missing, char *errbuf, size_t errlen)
{
    *missing = false;
    FILE *f = fopen(path, "re");
    if (!f) {
        if (errno == ENOENT)
            *missing = true;
        else
            snprintf(errbuf, errlen, "cannot read %s: %s", path, strerror(errno));
        return NULL;
    }
    struct sbuf b = {0};
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0 && b.len < (8u << 20))
        sb_add(&b, chunk, n);
    fclose(f);
    if (b.oom) {
        free(b.s);
        snprintf(errbuf, errlen, "out of memory reading %s", path);
        return NULL;
    }
    if (!b.s)
        return strdup("");
    return b.s;
}

/* Parse our own rendering back: "name = 'value'" lines. */
static void parse_managed(const char *text, struct pgconf_params *out)
{
    const char *line = text;
    while (line && *line) {
        const char *nl = strchr(line, '\n');
        size_t len = nl ? (size_t)(nl - line) : strlen(line);
        const char *eq = memchr(line, '=', len);
        if (line[0] != '#' && eq && strncmp(line, "include", 7) != 0) {
            char name[64];
            size_t nlen = (size_t)(eq - line);
            while (nlen > 0 && line[nlen - 1] == ' ')
                nlen--;
            if (nlen > 0 && nlen < sizeof name) {
                memcpy(name, line, nlen);
                name[nlen] = '\0';
                const char *v = eq + 1;
                while (*v == ' ')
                    v++;
                size_t vlen = len - (size_t)(v - line);
                /* keep the quoted form: comparison only */
                char *val = strndup(v, vlen);
                if (val) {
                    if (param_set(out, name, val) != PGW_OK) {
                        free(val);
                        return;
                    }
                    free(val);
                }
            }
        }
        line = nl ? nl + 1 : NULL;
    }
}

static void note_change(struct pgconf_write_result *res, const char *name)
{
    size_t cur = strlen(res->changed_names);
    snprintf(res->changed_names + cur, sizeof res->changed_names - cur, "%s%s", cur ? "," : "",
             name);
    if (in_list(postmaster_params, name))
        res->restart_hint = true;
}

static void diff_params(const char *old_text, const char *new_text, struct pgconf_write_result *res)
{
    struct pgconf_params a = {0}, b = {0};
    parse_managed(old_text, &a);
    parse_managed(new_text, &b);
    for (size_t i = 0; i < b.n; i++) {
        const char *ov = pgconf_params_get(&a, b.items[i].name);
        if (!ov || strcmp(ov, b.items[i].value) != 0)
            note_change(res, b.items[i].name);
    }
    for (size_t i = 0; i < a.n; i++)
        if (!pgconf_params_get(&b, a.items[i].name))
            note_change(res, a.items[i].name);
    pgconf_params_free(&a);
    pgconf_params_free(&b);
}

int pgconf_write(const struct pgconf_input *in, struct pgconf_write_result *res, char *errbuf,
                 size_t errlen)
{
    struct pgconf_write_result dummy;
    if (!res)
        res = &dummy;
    memset(res, 0, sizeof *res);
    const struct cfg *cfg = in->cfg;
    if (!cfg || !cfg->postgresql.data_dir) {
        snprintf(errbuf, errlen, "postgresql.data_dir is not set");
        return PGW_EINVAL;
    }
    struct pgconf_params params;
    int rc = pgconf_build(in, &params, NULL, errbuf, errlen);
    if (rc == PGW_OK && (rc = pgconf__seed_config_dir(cfg, &params, errbuf, errlen)) != PGW_OK)
        pgconf_params_free(&params);
    if (rc)
        return rc;
    char conf[4096], base[4096], sig[4096];
    const char *cdir = pgconf_config_dir(cfg);
    snprintf(conf, sizeof conf, "%s/postgresql.conf", cdir);
    snprintf(base, sizeof base, "%s/" BASE_CONF, cdir);
    snprintf(sig, sizeof sig, "%s/standby.signal", cfg->postgresql.data_dir);

    bool missing = false;
    char *old = pgconf__read_small(conf, &missing, errbuf, errlen);
    if (!old && !missing) {
        pgconf_params_free(&params);
        return PGW_EIO;
    }
    struct stat st;
    bool base_exists = stat(base, &st) == 0;
    bool managed = old && strncmp(old, MANAGED_MARK, strlen(MANAGED_MARK)) == 0;
    if (old && !managed) {
        if (!base_exists) {
            /* first takeover: keep the operator's file, included from ours */
            if (rename(conf, base) != 0) {
                snprintf(errbuf, errlen, "cannot rename %s to %s: %s", conf, base, strerror(errno));
                free(old);
                pgconf_params_free(&params);
                return PGW_EIO;
            }
            res->base_renamed = true;
            base_exists = true;
            log_info("pg", "took over %s: the original is kept as %s and included", conf, base);
        } else {
            log_warn("pg", "%s was not written by pgwarden and %s already exists: overwriting it",
                     conf, base);
        }
        free(old);
        old = NULL;
    }
    if (!base_exists) {
        static const char empty[] = "# operator settings (included from postgresql.conf)\n";
        rc = pgconf_write_file(base, empty, sizeof empty - 1, 0600, errbuf, errlen);
        if (rc) {
            free(old);
            pgconf_params_free(&params);
            return rc;
        }
    }
    char *text = pgconf_render(&params, BASE_CONF);
    pgconf_params_free(&params);
    if (!text) {
        free(old);
        snprintf(errbuf, errlen, "out of memory");
        return PGW_ENOMEM;
    }
    if (!old || strcmp(old, text) != 0) {
        diff_params(old ? old : "", text, res);
        res->changed = true;
        rc = pgconf_write_file(conf, text, strlen(text), 0600, errbuf, errlen);
        if (rc == PGW_OK)
            log_info("pg", "wrote %s (changed: %s)", conf,
                     res->changed_names[0] ? res->changed_names : "comments");
    }
    free(old);
    free(text);
    if (rc)
        return rc;

    if (in->role.standby) {
        if (stat(sig, &st) != 0) {
            rc = pgconf_write_file(sig, "", 0, 0600, errbuf, errlen);
            if (rc)
                return rc;
            res->changed = true;
            log_info("pg", "created %s", sig);
        }
    } else {
        if (unlink(sig) == 0) {
            res->changed = true;
            log_info("pg", "removed %s", sig);
            rc = fsync_dir_of(sig, errbuf, errlen);
        } else if (errno != ENOENT) {
            snprintf(errbuf, errlen, "cannot remove %s: %s", sig, strerror(errno));
            return PGW_EIO;
        }
    }
    return rc;
}

/* ---- pg_hba.conf ----------------------------------------------------- */

static bool hba_line_ok(const char *line, char *errbuf, size_t errlen, const char *what, size_t idx)
{
    const char *p = line;
    while (*p == ' ' || *p == '\t')
        p++;
    if (*p == '\0' || *p == '#')
        return true;
    if (strchr(line, '\n')) {
        snprintf(errbuf, errlen, "%s[%zu]: a pg_hba line must not contain a newline", what, idx);
        return false;
    }
    size_t n = strcspn(p, " \t");
    static const char *const types[] = {"local", "host", "hostssl", "hostnossl", "hostgssenc",
                                        "hostnogssenc", "include", "include_if_exists",
                                        "include_dir", NULL};
    for (size_t i = 0; types[i]; i++)
        if (strlen(types[i]) == n && strncmp(p, types[i], n) == 0)
            return true;
    snprintf(errbuf, errlen, "%s[%zu]: \"%s\": a pg_hba line starts with local, host, hostssl, "
             "hostnossl, hostgssenc or hostnogssenc", what, idx, line);
    return false;
}

static const char hba_header[] = MANAGED_MARK " (postgresql.pg_hba in the configuration)\n";

/* The file exists and does not carry pgwarden's mark (an unreadable one
 * counts as the operator's: never overwritten on a guess). */
static bool hba_is_operators(const char *path)
{
    bool missing;
    char eb[256];
    char *text = pgconf__read_small(path, &missing, eb, sizeof eb);
    if (text == NULL)
        return !missing;
    bool ours = strncmp(text, MANAGED_MARK, strlen(MANAGED_MARK)) == 0;
    free(text);
    return !ours;
}

int pgconf_write_hba(const struct cfg *cfg, const struct cfg_dcs *dcs, bool include_bootstrap,
                     char *errbuf, size_t errlen)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/pg_hba.conf", pgconf_config_dir(cfg));
    bool configured = cfg->postgresql.pg_hba.n || (dcs && dcs->pg_hba.n);
    if (!configured && !include_bootstrap && hba_is_operators(path))
        return PGW_OK;
    struct sbuf b = {0};
    sb_str(&b, hba_header);
    const struct cfg_strlist *lists[2] = {NULL, NULL};
    const char *names[2] = {NULL, NULL};
    if (include_bootstrap) {
        lists[0] = &cfg->bootstrap.pg_hba;
        names[0] = "bootstrap.pg_hba";
    }
    if (cfg->postgresql.pg_hba.n) {
        lists[1] = &cfg->postgresql.pg_hba;
        names[1] = "postgresql.pg_hba";
    } else if (dcs && dcs->pg_hba.n) {
        lists[1] = &dcs->pg_hba;
        names[1] = "dcs postgresql.pg_hba";
    }
    bool any = false;
    for (int l = 0; l < 2; l++) {
        if (!lists[l])
            continue;
        for (size_t i = 0; i < lists[l]->n; i++) {
            const char *line = lists[l]->items[i] ? lists[l]->items[i] : "";
            if (!hba_line_ok(line, errbuf, errlen, names[l], i)) {
                free(b.s);
                return PGW_EINVAL;
            }
            sb_str(&b, line);
            sb_str(&b, "\n");
            any = true;
        }
    }
    if (!lists[1]) {
        const char *repl = cfg->postgresql.replication.username;
        sb_str(&b, "local all all peer\n"
                   "host all all 127.0.0.1/32 scram-sha-256\n"
                   "host all all ::1/128 scram-sha-256\n");
        if (repl && *repl) {
            char line[512];
            snprintf(line, sizeof line, "host replication %s 0.0.0.0/0 scram-sha-256\n", repl);
            sb_str(&b, line);
        }
        sb_str(&b, "host all all 0.0.0.0/0 scram-sha-256\n");
        any = true;
    }
    (void)any;
    if (b.oom) {
        free(b.s);
        snprintf(errbuf, errlen, "out of memory");
        return PGW_ENOMEM;
    }
    int rc = pgconf_write_file(path, b.s, b.len, 0600, errbuf, errlen);
    free(b.s);
    return rc;
}

/* ---- pgpass -------------------------------------------------------------- */

int pgconf_pgpass_escape(const char *in, char *out, size_t outlen)
{
    size_t o = 0;
    for (const char *c = in ? in : ""; *c; c++) {
        if (*c == ':' || *c == '\\') {
            if (o + 1 >= outlen)
                return PGW_EINVAL;
            out[o++] = '\\';
        }
        if (*c == '\n' || *c == '\r')
            return PGW_EINVAL;
        if (o + 1 >= outlen)
            return PGW_EINVAL;
        out[o++] = *c;
    }
    if (o >= outlen)
        return PGW_EINVAL;
    out[o] = '\0';
    return PGW_OK;
}

int pgconf_write_pgpass(const struct cfg *cfg, char *errbuf, size_t errlen)
{
    const char *path = cfg->postgresql.pgpass;
    if (!path || !*path) {
        snprintf(errbuf, errlen, "postgresql.pgpass is not set");
        return PGW_EINVAL;
    }
    struct sbuf b = {0};
    const struct cfg_pgauth *users[3] = {&cfg->postgresql.replication, &cfg->postgresql.rewind,
                                         &cfg->postgresql.superuser};
    static const char *const what[3] = {"replication", "rewind", "superuser"};
    for (int i = 0; i < 3; i++) {
        const struct cfg_pgauth *a = users[i];
        if (!a->username || !*a->username || !a->password)
            continue;
        char u[512], pw[1024];
        if (pgconf_pgpass_escape(a->username, u, sizeof u) != PGW_OK ||
            pgconf_pgpass_escape(a->password, pw, sizeof pw) != PGW_OK) {
            free(b.s);
            snprintf(errbuf, errlen, "postgresql.authentication.%s: user name or password too long "
                     "or contains a newline", what[i]);
            return PGW_EINVAL;
        }
        sb_str(&b, "*:*:*:");
        sb_str(&b, u);
        sb_str(&b, ":");
        sb_str(&b, pw);
        sb_str(&b, "\n");
    }
    if (b.oom) {
        free(b.s);
        snprintf(errbuf, errlen, "out of memory");
        return PGW_ENOMEM;
    }
    int rc = pgconf_write_file(path, b.s ? b.s : "", b.len, 0600, errbuf, errlen);
    if (b.s) {
        /* wipe the secrets from the heap copy */
        memset(b.s, 0, b.len);
        free(b.s);
    }
    return rc;
}

/* ---- slot names ---------------------------------------------------------- */

/* Decode one UTF-8 sequence; invalid bytes count as themselves. */
static uint32_t utf8_next(const unsigned char **p)
{
    const unsigned char *s = *p;
    uint32_t c = s[0];
    int extra = 0;
    if (c >= 0xf0 && c < 0xf8) {
        c &= 0x07;
        extra = 3;
    } else if (c >= 0xe0) {
        c &= 0x0f;
        extra = 2;
    } else if (c >= 0xc0) {
        c &= 0x1f;
        extra = 1;
    }
    if (c >= 0x80 && extra == 0) {
        *p = s + 1;
        return s[0];
    }
    for (int i = 1; i <= extra; i++) {
        if ((s[i] & 0xc0) != 0x80) {
            *p = s + 1;
            return s[0];
        }
        c = (c << 6) | (s[i] & 0x3f);
    }
    *p = s + 1 + extra;
    return c;
}

void pgconf_slot_name(const char *member, char *out, size_t outlen)
{
    if (outlen == 0)
        return;
    size_t limit = outlen - 1 < PGCONF_SLOT_MAX - 1 ? outlen - 1 : PGCONF_SLOT_MAX - 1;
    size_t o = 0;
    const unsigned char *p = (const unsigned char *)(member ? member : "");
    while (*p && o < limit) {
        uint32_t c = utf8_next(&p);
        if (c >= 'A' && c <= 'Z')
            c = c - 'A' + 'a';
        char piece[16];
        if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_') {
            piece[0] = (char)c;
            piece[1] = '\0';
        } else if (c == '-' || c == '.') {
            piece[0] = '_';
            piece[1] = '\0';
        } else {
            /* Patroni: "u{:04d}".format(ord(c)), the code point in decimal */
            snprintf(piece, sizeof piece, "u%04u", (unsigned)c);
        }
        for (size_t i = 0; piece[i] && o < limit; i++)
            out[o++] = piece[i];
    }
    out[o] = '\0';
}
