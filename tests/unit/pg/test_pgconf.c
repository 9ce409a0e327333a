/* Managed configuration: parameter merge rules, rendering, durable writes,
 * takeover of the original postgresql.conf, standby.signal, pg_hba, pgpass,
 * slot names. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "pg/pgconf.h"
#include "pg/pgconf_internal.h"

struct fixture {
    struct cfg cfg;
    struct cfg_dcs dcs;
    char dir[256];
    char data[300];
    char pgpass[300];
    struct cfg_kv local[8];
    struct cfg_kv cluster[8];
};

static int warn_count;
static void hook(enum log_level l, const char *module, const char *msg, void *ctx)
{
    (void)module;
    (void)msg;
    (void)ctx;
    if (l == LOGL_WARN)
        warn_count++;
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/pgw-test-pgconf-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->data, sizeof f->data, "%s/data", f->dir);
    snprintf(f->pgpass, sizeof f->pgpass, "%s/pgpass", f->dir);
    assert_int_equal(mkdir(f->data, 0700), 0);
    f->cfg.scope = "demo";
    f->cfg.name = "node-1.example";
    f->cfg.postgresql.present = true;
    f->cfg.postgresql.listen.host = "127.0.0.1";
    f->cfg.postgresql.listen.port = 5433;
    f->cfg.postgresql.data_dir = f->data;
    f->cfg.postgresql.pgpass = f->pgpass;
    f->cfg.postgresql.superuser.username = "postgres";
    f->cfg.postgresql.superuser.password = "su:pw\\x";
    f->cfg.postgresql.replication.username = "replicator";
    f->cfg.postgresql.replication.password = "rep-pass";
    f->cfg.postgresql.rewind.username = "rewind_user";
    f->cfg.postgresql.rewind.password = "rw";
    f->cfg.postgresql.parameters.items = f->local;
    f->dcs.pg_parameters.items = f->cluster;
    log_set_hook(hook, NULL);
    warn_count = 0;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    char cmd[400];
    /* test scratch dir only */
    snprintf(cmd, sizeof cmd, "%s/data", f->dir);
    const char *files[] = {"postgresql.conf", "postgresql.base.conf", "standby.signal", "pg_hba.conf"};
    for (size_t i = 0; i < 4; i++) {
        snprintf(cmd, sizeof cmd, "%s/%s", f->data, files[i]);
        unlink(cmd);
    }
    rmdir(f->data);
    unlink(f->pgpass);
    rmdir(f->dir);
    log_set_hook(NULL, NULL);
    free(f);
    return 0;
}

static void add_local(struct fixture *f, char *k, char *v)
{
    f->local[f->cfg.postgresql.parameters.n++] = (struct cfg_kv){k, v};
}
static void add_cluster(struct fixture *f, char *k, char *v)
{
    f->cluster[f->dcs.pg_parameters.n++] = (struct cfg_kv){k, v};
}

static char *slurp(const char *path)
{
    FILE *fp = fopen(path, "r");
    if (!fp)
        return NULL;
    char *buf = calloc(1, 65536);
    size_t n = fread(buf, 1, 65535, fp);
    buf[n] = '\0';
    fclose(fp);
    return buf;
}

static void test_defaults_and_forced(void **state)
{
    struct fixture *f = *state;
    struct pgconf_input in = {.cfg = &f->cfg, .dcs = NULL, .pg_major = 15};
    struct pgconf_params p;
    char eb[256];
    assert_int_equal(pgconf_build(&in, &p, NULL, eb, sizeof eb), 0);
    assert_string_equal(pgconf_params_get(&p, "max_connections"), "100");
    assert_string_equal(pgconf_params_get(&p, "max_wal_senders"), "10");
    assert_string_equal(pgconf_params_get(&p, "max_replication_slots"), "10");
    assert_string_equal(pgconf_params_get(&p, "wal_level"), "replica");
    assert_string_equal(pgconf_params_get(&p, "wal_log_hints"), "on");
    assert_string_equal(pgconf_params_get(&p, "wal_keep_size"), "128MB");
    assert_string_equal(pgconf_params_get(&p, "listen_addresses"), "127.0.0.1");
    assert_string_equal(pgconf_params_get(&p, "port"), "5433");
    assert_string_equal(pgconf_params_get(&p, "cluster_name"), "demo");
    assert_string_equal(pgconf_params_get(&p, "hot_standby"), "on");
    assert_null(pgconf_params_get(&p, "primary_conninfo"));
    /* sorted */
    for (size_t i = 1; i < p.n; i++)
        assert_true(strcmp(p.items[i - 1].name, p.items[i].name) < 0);
    pgconf_params_free(&p);
}

static void test_merge_rules(void **state)
{
    struct fixture *f = *state;
    add_local(f, "max_connections", "500");   /* cluster-only: ignored */
    add_local(f, "port", "9999");             /* forced: ignored */
    add_local(f, "work_mem", "8MB");          /* local only */
    add_local(f, "shared_buffers", "64MB");   /* the node's own wins, as in Patroni */
    add_local(f, "Primary_Conninfo", "host=evil"); /* managed: ignored */
    add_cluster(f, "shared_buffers", "256MB");
    add_cluster(f, "max_wal_senders", "7");
    add_cluster(f, "wal_keep_segments", "4"); /* converted for PG13+ */
    add_cluster(f, "hot_standby", "off");     /* forced wins */
    struct pgconf_input in = {.cfg = &f->cfg, .dcs = &f->dcs, .pg_major = 15};
    struct pgconf_params p;
    char eb[256];
    size_t nwarn = 0;
    assert_int_equal(pgconf_build(&in, &p, &nwarn, eb, sizeof eb), 0);
    assert_int_equal(nwarn, 4);
    assert_int_equal(warn_count, 4);
    assert_string_equal(pgconf_params_get(&p, "max_connections"), "100");
    assert_string_equal(pgconf_params_get(&p, "port"), "5433");
    assert_string_equal(pgconf_params_get(&p, "work_mem"), "8MB");
    assert_string_equal(pgconf_params_get(&p, "shared_buffers"), "64MB");
    assert_string_equal(pgconf_params_get(&p, "max_wal_senders"), "7");
    assert_string_equal(pgconf_params_get(&p, "wal_keep_size"), "64MB");
    assert_null(pgconf_params_get(&p, "wal_keep_segments"));
    assert_string_equal(pgconf_params_get(&p, "hot_standby"), "on");
    assert_null(pgconf_params_get(&p, "primary_conninfo"));
    pgconf_params_free(&p);
}

static void test_bad_inputs(void **state)
{
    struct fixture *f = *state;
    struct pgconf_params p;
    char eb[256];
    struct pgconf_input in = {.cfg = &f->cfg, .pg_major = 11};
    assert_int_equal(pgconf_build(&in, &p, NULL, eb, sizeof eb), PGW_EINVAL);
    assert_non_null(strstr(eb, "11"));
    in.pg_major = 15;
    in.role.standby = true; /* a host without a port */
    in.role.primary_host = "10.0.0.1";
    assert_int_equal(pgconf_build(&in, &p, NULL, eb, sizeof eb), PGW_EINVAL);
    assert_non_null(strstr(eb, "port"));
    /* no upstream at all: a standby that waits, without primary_conninfo */
    in.role.primary_host = NULL;
    assert_int_equal(pgconf_build(&in, &p, NULL, eb, sizeof eb), 0);
    assert_null(pgconf_params_get(&p, "primary_conninfo"));
    assert_null(pgconf_params_get(&p, "primary_slot_name"));
    assert_string_equal(pgconf_params_get(&p, "recovery_target_timeline"), "latest");
    pgconf_params_free(&p);
    in.role.standby = false;
    add_local(f, "bad name", "1");
    assert_int_equal(pgconf_build(&in, &p, NULL, eb, sizeof eb), PGW_EINVAL);
    assert_non_null(strstr(eb, "bad name"));
}

static void test_standby(void **state)
{
    struct fixture *f = *state;
    add_local(f, "recovery_min_apply_delay", "5min");
    struct cfg_kv rc[1] = {{"restore_command", "cp /arch/%f %p"}};
    f->cfg.postgresql.recovery_conf.items = rc;
    f->cfg.postgresql.recovery_conf.n = 1;
    f->cfg.postgresql.replication.sslmode = "require";
    struct pgconf_input in = {.cfg = &f->cfg, .pg_major = 15,
                              .role = {.standby = true, .primary_host = "10.0.0.1",
                                       .primary_port = 5432, .primary_slot_name = "node_1_example"}};
    struct pgconf_params p;
    char eb[256];
    assert_int_equal(pgconf_build(&in, &p, NULL, eb, sizeof eb), 0);
    const char *ci = pgconf_params_get(&p, "primary_conninfo");
    assert_non_null(ci);
    assert_non_null(strstr(ci, "host='10.0.0.1'"));
    assert_non_null(strstr(ci, "port='5432'"));
    assert_non_null(strstr(ci, "user='replicator'"));
    assert_non_null(strstr(ci, "application_name='node-1.example'"));
    assert_non_null(strstr(ci, "sslmode='require'"));
    char want[400];
    snprintf(want, sizeof want, "passfile='%s'", f->pgpass);
    assert_non_null(strstr(ci, want));
    assert_null(strstr(ci, "rep-pass"));  /* never the password */
    assert_null(strstr(ci, "password"));
    assert_string_equal(pgconf_params_get(&p, "primary_slot_name"), "node_1_example");
    assert_string_equal(pgconf_params_get(&p, "recovery_target_timeline"), "latest");
    assert_string_equal(pgconf_params_get(&p, "recovery_min_apply_delay"), "5min");
    assert_string_equal(pgconf_params_get(&p, "restore_command"), "cp /arch/%f %p");
    pgconf_params_free(&p);
    /* the same input as a primary: no recovery settings, no delay */
    in.role = (struct pgconf_role){0};
    assert_int_equal(pgconf_build(&in, &p, NULL, eb, sizeof eb), 0);
    assert_null(pgconf_params_get(&p, "primary_conninfo"));
    assert_null(pgconf_params_get(&p, "primary_slot_name"));
    assert_null(pgconf_params_get(&p, "recovery_min_apply_delay"));
    assert_null(pgconf_params_get(&p, "restore_command"));
    pgconf_params_free(&p);
}

static void test_render_quoting(void **state)
{
    (void)state;
    struct pgconf_param items[2] = {{"a", "it's"}, {"b", "c:\\dir"}};
    struct pgconf_params p = {items, 2};
    char *t = pgconf_render(&p, "postgresql.base.conf");
    assert_non_null(t);
    assert_int_equal(strncmp(t, "# managed by pgwarden, do not edit\n", 35), 0);
    assert_non_null(strstr(t, "include 'postgresql.base.conf'\n"));
    assert_non_null(strstr(t, "a = 'it''s'\n"));
    assert_non_null(strstr(t, "b = 'c:\\\\dir'\n"));
    free(t);
}

static void write_file(const char *path, const char *text)
{
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
}

static void test_write_takeover(void **state)
{
    struct fixture *f = *state;
    char conf[400], base[400], sig[400];
    snprintf(conf, sizeof conf, "%s/postgresql.conf", f->data);
    snprintf(base, sizeof base, "%s/postgresql.base.conf", f->data);
    snprintf(sig, sizeof sig, "%s/standby.signal", f->data);
    write_file(conf, "shared_buffers = 32MB # the operator's\n");
    struct pgconf_input in = {.cfg = &f->cfg, .pg_major = 15};
    struct pgconf_write_result res;
    char eb[256];
    assert_int_equal(pgconf_write(&in, &res, eb, sizeof eb), 0);
    assert_true(res.base_renamed);
    assert_true(res.changed);
    char *b = slurp(base);
    assert_non_null(b);
    assert_string_equal(b, "shared_buffers = 32MB # the operator's\n");
    free(b);
    char *c = slurp(conf);
    assert_non_null(strstr(c, "managed by pgwarden"));
    assert_non_null(strstr(c, "port = '5433'"));
    free(c);
    struct stat st;
    assert_int_equal(stat(conf, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_not_equal(stat(sig, &st), 0);

    /* second write: no rename again, nothing changed */
    assert_int_equal(pgconf_write(&in, &res, eb, sizeof eb), 0);
    assert_false(res.base_renamed);
    assert_false(res.changed);
    b = slurp(base);
    assert_string_equal(b, "shared_buffers = 32MB # the operator's\n");
    free(b);

    /* a restart-needing change is flagged, a reloadable one is not */
    add_local(f, "work_mem", "16MB");
    assert_int_equal(pgconf_write(&in, &res, eb, sizeof eb), 0);
    assert_true(res.changed);
    assert_false(res.restart_hint);
    assert_string_equal(res.changed_names, "work_mem");
    add_cluster(f, "max_connections", "200");
    in.dcs = &f->dcs;
    assert_int_equal(pgconf_write(&in, &res, eb, sizeof eb), 0);
    assert_true(res.restart_hint);
    assert_string_equal(res.changed_names, "max_connections");

    /* standby: signal file created, then removed for a primary */
    in.role = (struct pgconf_role){.standby = true, .primary_host = "h", .primary_port = 1};
    assert_int_equal(pgconf_write(&in, &res, eb, sizeof eb), 0);
    assert_int_equal(stat(sig, &st), 0);
    assert_non_null(strstr(res.changed_names, "primary_conninfo"));
    in.role = (struct pgconf_role){0};
    assert_int_equal(pgconf_write(&in, &res, eb, sizeof eb), 0);
    assert_int_not_equal(stat(sig, &st), 0);
}

static void test_write_fresh_creates_base(void **state)
{
    struct fixture *f = *state;
    char base[400];
    snprintf(base, sizeof base, "%s/postgresql.base.conf", f->data);
    struct pgconf_input in = {.cfg = &f->cfg, .pg_major = 15};
    char eb[256];
    assert_int_equal(pgconf_write(&in, NULL, eb, sizeof eb), 0);
    struct stat st;
    assert_int_equal(stat(base, &st), 0); /* include target exists */
    /* missing data dir: clear error */
    f->cfg.postgresql.data_dir = "/nonexistent/pgw/data";
    assert_int_not_equal(pgconf_write(&in, NULL, eb, sizeof eb), 0);
    assert_non_null(strstr(eb, "/nonexistent/pgw/data"));
    f->cfg.postgresql.data_dir = f->data;
}

/* postgresql.config_dir apart from data_dir (Debian's layout), as Patroni
 * runs it: PostgreSQL gets --config-file=<config_dir>/postgresql.conf, the
 * managed file points hba_file and ident_file into config_dir (unless the
 * parameters name other files), and config_dir gets the files it lacks from
 * the data directory, where PostgreSQL read them until then. */
static void test_config_dir_apart(void **state)
{
    struct fixture *f = *state;
    char etc[400], p[500], eb[256], buf[600];
    struct pgconf_input in = {.cfg = &f->cfg, .pg_major = 15};
    struct pgconf_params ps;

    /* the same directory: nothing of the above */
    f->cfg.postgresql.config_dir = f->data;
    assert_null(pgconf_config_file(&f->cfg, buf, sizeof buf));
    assert_int_equal(pgconf_build(&in, &ps, NULL, eb, sizeof eb), 0);
    assert_null(pgconf_params_get(&ps, "hba_file"));
    assert_null(pgconf_params_get(&ps, "ident_file"));
    pgconf_params_free(&ps);

    snprintf(etc, sizeof etc, "%s/etc", f->dir);
    assert_int_equal(mkdir(etc, 0700), 0);
    f->cfg.postgresql.config_dir = etc;
    snprintf(p, sizeof p, "%s/postgresql.conf", etc);
    assert_string_equal(pgconf_config_file(&f->cfg, buf, sizeof buf), p);
    assert_int_equal(pgconf_build(&in, &ps, NULL, eb, sizeof eb), 0);
    snprintf(p, sizeof p, "%s/pg_hba.conf", etc);
    assert_string_equal(pgconf_params_get(&ps, "hba_file"), p);
    snprintf(p, sizeof p, "%s/pg_ident.conf", etc);
    assert_string_equal(pgconf_params_get(&ps, "ident_file"), p);
    pgconf_params_free(&ps);
    /* an hba_file of the operator's is kept (Patroni's config.py too) */
    add_local(f, "hba_file", "/srv/hba.conf");
    assert_int_equal(pgconf_build(&in, &ps, NULL, eb, sizeof eb), 0);
    assert_string_equal(pgconf_params_get(&ps, "hba_file"), "/srv/hba.conf");
    assert_string_equal(pgconf_params_get(&ps, "ident_file"), p);
    pgconf_params_free(&ps);
    f->cfg.postgresql.parameters.n = 0;

    /* what initdb left in the data directory moves into config_dir */
    static const char *const dfiles[] = {"postgresql.conf", "pg_hba.conf"};
    static const char *const dtext[] = {"timezone = 'UTC' # initdb's\n",
                                        "local all all trust # initdb's\n"};
    for (size_t i = 0; i < 2; i++) {
        snprintf(p, sizeof p, "%s/%s", f->data, dfiles[i]);
        write_file(p, dtext[i]);
    }
    struct pgconf_write_result res;
    assert_int_equal(pgconf_write(&in, &res, eb, sizeof eb), 0);
    assert_true(res.changed);
    assert_false(res.base_renamed);
    snprintf(p, sizeof p, "%s/postgresql.base.conf", etc);
    char *t = slurp(p);
    assert_non_null(t);
    assert_string_equal(t, dtext[0]);
    free(t);
    snprintf(p, sizeof p, "%s/pg_hba.conf", etc);
    t = slurp(p);
    assert_non_null(t);
    assert_string_equal(t, dtext[1]);
    free(t);
    snprintf(p, sizeof p, "%s/pg_ident.conf", etc);
    t = slurp(p);
    assert_non_null(t); /* found nowhere: created, so PostgreSQL finds one */
    assert_non_null(strstr(t, "pg_ident.conf"));
    free(t);
    snprintf(p, sizeof p, "%s/postgresql.conf", etc);
    t = slurp(p);
    assert_non_null(strstr(t, "managed by pgwarden"));
    assert_non_null(strstr(t, "include 'postgresql.base.conf'"));
    snprintf(buf, sizeof buf, "hba_file = '%s/pg_hba.conf'", etc);
    assert_non_null(strstr(t, buf));
    snprintf(buf, sizeof buf, "ident_file = '%s/pg_ident.conf'", etc);
    assert_non_null(strstr(t, buf));
    free(t);
    snprintf(p, sizeof p, "%s/postgresql.conf", f->data);
    t = slurp(p);
    assert_string_equal(t, dtext[0]); /* the data directory's copy is left alone */
    free(t);
    /* standby.signal stays in the data directory */
    in.role = (struct pgconf_role){.standby = true, .primary_host = "h", .primary_port = 1};
    assert_int_equal(pgconf_write(&in, &res, eb, sizeof eb), 0);
    snprintf(p, sizeof p, "%s/standby.signal", f->data);
    struct stat st;
    assert_int_equal(stat(p, &st), 0);
    /* config_dir's own files are never replaced from the data directory */
    snprintf(p, sizeof p, "%s/pg_hba.conf", etc);
    write_file(p, "host all all 10.0.0.0/8 scram-sha-256 # the operator's\n");
    assert_int_equal(pgconf_write(&in, &res, eb, sizeof eb), 0);
    assert_false(res.changed);
    t = slurp(p);
    assert_non_null(strstr(t, "the operator's"));
    free(t);

    static const char *const efiles[] = {"postgresql.conf", "postgresql.base.conf", "pg_hba.conf",
                                         "pg_ident.conf"};
    for (size_t i = 0; i < 4; i++) {
        snprintf(p, sizeof p, "%s/%s", etc, efiles[i]);
        unlink(p);
    }
    /* a data directory pgwarden managed: its base is the operator's file */
    snprintf(p, sizeof p, "%s/postgresql.base.conf", f->data);
    write_file(p, "work_mem = '8MB'\n");
    snprintf(p, sizeof p, "%s/postgresql.conf", f->data);
    write_file(p, "# managed by pgwarden, do not edit\ninclude 'postgresql.base.conf'\n");
    assert_int_equal(pgconf_write(&in, &res, eb, sizeof eb), 0);
    snprintf(p, sizeof p, "%s/postgresql.base.conf", etc);
    t = slurp(p);
    assert_string_equal(t, "work_mem = '8MB'\n");
    free(t);
    for (size_t i = 0; i < 4; i++) {
        snprintf(p, sizeof p, "%s/%s", etc, efiles[i]);
        unlink(p);
    }
    assert_int_equal(rmdir(etc), 0);
    snprintf(p, sizeof p, "%s/pg_hba.conf", f->data);
    unlink(p);
    snprintf(p, sizeof p, "%s/postgresql.base.conf", f->data);
    unlink(p);
}

static void test_hba(void **state)
{
    struct fixture *f = *state;
    char *lines[] = {"host all all 0.0.0.0/0 scram-sha-256", "local all all trust"};
    char *boot[] = {"host replication replicator 127.0.0.1/32 trust"};
    f->cfg.postgresql.pg_hba = (struct cfg_strlist){lines, 2};
    f->cfg.bootstrap.pg_hba = (struct cfg_strlist){boot, 1};
    char eb[256];
    assert_int_equal(pgconf_write_hba(&f->cfg, NULL, true, eb, sizeof eb), 0);
    char path[400];
    snprintf(path, sizeof path, "%s/pg_hba.conf", f->data);
    char *t = slurp(path);
    char *pb = strstr(t, boot[0]), *p0 = strstr(t, lines[0]), *p1 = strstr(t, lines[1]);
    assert_non_null(pb);
    assert_non_null(p0);
    assert_non_null(p1);
    assert_true(pb < p0 && p0 < p1);
    free(t);
    assert_int_equal(pgconf_write_hba(&f->cfg, NULL, false, eb, sizeof eb), 0);
    t = slurp(path);
    assert_null(strstr(t, boot[0]));
    free(t);
    char *bad[] = {"hots all all 0.0.0.0/0 md5"};
    f->cfg.postgresql.pg_hba = (struct cfg_strlist){bad, 1};
    assert_int_equal(pgconf_write_hba(&f->cfg, NULL, false, eb, sizeof eb), PGW_EINVAL);
    assert_non_null(strstr(eb, "postgresql.pg_hba[0]"));
    assert_non_null(strstr(eb, "hots"));
}

/* No pg_hba lines configured: the operator's file stays byte for byte, as
 * in Patroni; pgwarden's own (or none) gets the default; a bootstrap (a
 * data directory pgwarden just created with initdb) gets it too. */
static void test_hba_operators_file_kept(void **state)
{
    struct fixture *f = *state;
    f->cfg.postgresql.pg_hba = (struct cfg_strlist){NULL, 0};
    f->cfg.bootstrap.pg_hba = (struct cfg_strlist){NULL, 0};
    char path[400], eb[256];
    snprintf(path, sizeof path, "%s/pg_hba.conf", f->data);
    const char mine[] = "# the operator's\nhost all app 10.0.0.0/8 md5\n";
    FILE *w = fopen(path, "w");
    assert_non_null(w);
    fputs(mine, w);
    fclose(w);
    assert_int_equal(pgconf_write_hba(&f->cfg, NULL, false, eb, sizeof eb), 0);
    char *t = slurp(path);
    assert_string_equal(t, mine);
    free(t);
    /* given lines, pgwarden writes them over it */
    char *lines[] = {"hostssl all app 192.0.2.0/24 cert"};
    f->cfg.postgresql.pg_hba = (struct cfg_strlist){lines, 1};
    assert_int_equal(pgconf_write_hba(&f->cfg, NULL, false, eb, sizeof eb), 0);
    t = slurp(path);
    assert_non_null(strstr(t, "managed by pgwarden"));
    assert_non_null(strstr(t, lines[0]));
    free(t);
    /* its own file without lines: the default, rewritten */
    f->cfg.postgresql.pg_hba = (struct cfg_strlist){NULL, 0};
    assert_int_equal(pgconf_write_hba(&f->cfg, NULL, false, eb, sizeof eb), 0);
    t = slurp(path);
    assert_non_null(strstr(t, "managed by pgwarden"));
    assert_null(strstr(t, lines[0]));
    assert_non_null(strstr(t, "scram-sha-256"));
    free(t);
    /* no file: the default */
    unlink(path);
    assert_int_equal(pgconf_write_hba(&f->cfg, NULL, false, eb, sizeof eb), 0);
    t = slurp(path);
    assert_non_null(strstr(t, "managed by pgwarden"));
    free(t);
    /* initdb's file at a bootstrap: the default */
    w = fopen(path, "w");
    assert_non_null(w);
    fputs("local all all trust\n", w);
    fclose(w);
    assert_int_equal(pgconf_write_hba(&f->cfg, NULL, true, eb, sizeof eb), 0);
    t = slurp(path);
    assert_non_null(strstr(t, "managed by pgwarden"));
    free(t);
    unlink(path);
}

static void test_pgpass(void **state)
{
    struct fixture *f = *state;
    char out[64];
    assert_int_equal(pgconf_pgpass_escape("a:b\\c", out, sizeof out), 0);
    assert_string_equal(out, "a\\:b\\\\c");
    assert_int_equal(pgconf_pgpass_escape("", out, sizeof out), 0);
    assert_string_equal(out, "");
    assert_int_equal(pgconf_pgpass_escape("abcdef", out, 4), PGW_EINVAL);
    assert_int_equal(pgconf_pgpass_escape("a\nb", out, sizeof out), PGW_EINVAL);
    char eb[256];
    assert_int_equal(pgconf_write_pgpass(&f->cfg, eb, sizeof eb), 0);
    struct stat st;
    assert_int_equal(stat(f->pgpass, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    char *t = slurp(f->pgpass);
    assert_string_equal(t, "*:*:*:replicator:rep-pass\n*:*:*:rewind_user:rw\n"
                           "*:*:*:postgres:su\\:pw\\\\x\n");
    free(t);
}

static void test_slot_names(void **state)
{
    (void)state;
    char out[PGCONF_SLOT_MAX];
    pgconf_slot_name("Node-1.Example", out, sizeof out);
    assert_string_equal(out, "node_1_example");
    pgconf_slot_name("pg_0", out, sizeof out);
    assert_string_equal(out, "pg_0");
    pgconf_slot_name("a b", out, sizeof out);
    assert_string_equal(out, "au0032b"); /* Patroni: decimal code point */
    pgconf_slot_name("x@y", out, sizeof out);
    assert_string_equal(out, "xu0064y");
    pgconf_slot_name("caf\xc3\xa9", out, sizeof out); /* U+00E9 */
    assert_string_equal(out, "cafu0233");
    char longname[200];
    memset(longname, 'a', 150);
    longname[150] = '\0';
    pgconf_slot_name(longname, out, sizeof out);
    assert_int_equal(strlen(out), 63);
    pgconf_slot_name("", out, sizeof out);
    assert_string_equal(out, "");
}

static void test_conn_params(void **state)
{
    struct fixture *f = *state;
    struct pgconn_params p;
    f->cfg.postgresql.listen.host = "0.0.0.0";
    assert_int_equal(pgconf_conn_params(&f->cfg, PGCONF_SUPERUSER, NULL, 0, NULL, false, &p), 0);
    assert_string_equal(pgconn_params_get(&p, "host"), "127.0.0.1");
    assert_string_equal(pgconn_params_get(&p, "port"), "5433");
    assert_string_equal(pgconn_params_get(&p, "dbname"), "postgres");
    assert_string_equal(pgconn_params_get(&p, "password"), "su:pw\\x");
    char ci[512];
    assert_int_equal(pgconn_params_to_conninfo(&p, false, ci, sizeof ci), 0);
    assert_null(strstr(ci, "password"));
    assert_int_equal(pgconn_params_to_conninfo(&p, true, ci, sizeof ci), 0);
    assert_non_null(strstr(ci, "password='su:pw\\\\x'"));
    assert_int_equal(pgconn_params_to_conninfo(&p, false, ci, 10), PGW_EINVAL);
    pgconn_params_free(&p);
    assert_int_equal(pgconf_conn_params(&f->cfg, PGCONF_REPLICATION, "10.1.1.1", 6000, NULL, true, &p), 0);
    assert_string_equal(pgconn_params_get(&p, "replication"), "1");
    assert_null(pgconn_params_get(&p, "dbname"));
    assert_string_equal(pgconn_params_get(&p, "user"), "replicator");
    pgconn_params_free(&p);
}

/* postgresql.use_unix_socket (Patroni's local_connect_kwargs): the local
 * superuser connection goes to the first absolute directory of
 * unix_socket_directories (the node's parameters over the cluster-wide
 * ones), to libpq's default directory when it is not set, and over TCP
 * when it names no absolute directory. use_unix_socket_repl: true is
 * refused with the reason. */
static void test_local_conn_unix_socket(void **state)
{
    struct fixture *f = *state;
    char yaml[1024];
#define HEAD                                                                                  \
    "scope: demo\nname: n1\nraft: {self_addr: 10.0.0.1:5010, data_dir: /r}\n"                   \
    "postgresql:\n  listen: 10.0.0.1:5432\n  data_dir: %s\n  pgpass: %s\n"                      \
    "  authentication:\n    superuser: {username: postgres}\n"                                   \
    "    replication: {username: repl, password: rep-pw}\n%s"
    struct cfg c;
    struct cfg_error e;
    struct pgconn_params p;
    char dir[64];

    snprintf(yaml, sizeof yaml, HEAD, f->data, f->pgpass,
             "  use_unix_socket: true\n"
             "  parameters: {unix_socket_directories: '@abstract, rel/dir , /run/pg x ,/tmp'}\n");
    if (cfg_load_buffer("t.yml", yaml, strlen(yaml), &c, &e, NULL) != 0)
        fail_msg("%s", e.msg);
    assert_true(c.postgresql.use_unix_socket);
    assert_int_equal(pgconf_local_socket_dir(&c, NULL, dir, sizeof dir), 1);
    assert_string_equal(dir, "/run/pg x");
    assert_int_equal(pgconf_local_conn_params(&c, NULL, "postgres", &p), 0);
    assert_string_equal(pgconn_params_get(&p, "host"), "/run/pg x");
    assert_string_equal(pgconn_params_get(&p, "port"), "5432");
    assert_string_equal(pgconn_params_get(&p, "user"), "postgres");
    assert_string_equal(pgconn_params_get(&p, "dbname"), "postgres");
    assert_null(pgconn_params_get(&p, "password"));
    pgconn_params_free(&p);
    /* the node's value wins over the cluster-wide one */
    add_cluster(f, "unix_socket_directories", "/cluster");
    assert_int_equal(pgconf_local_socket_dir(&c, &f->dcs, dir, sizeof dir), 1);
    assert_string_equal(dir, "/run/pg x");
    cfg_free(&c);

    /* only the cluster-wide value */
    snprintf(yaml, sizeof yaml, HEAD, f->data, f->pgpass, "  use_unix_socket: true\n");
    if (cfg_load_buffer("t.yml", yaml, strlen(yaml), &c, &e, NULL) != 0)
        fail_msg("%s", e.msg);
    assert_int_equal(pgconf_local_conn_params(&c, &f->dcs, "postgres", &p), 0);
    assert_string_equal(pgconn_params_get(&p, "host"), "/cluster");
    pgconn_params_free(&p);
    /* not set anywhere: no host, libpq's default socket directory */
    assert_int_equal(pgconf_local_socket_dir(&c, NULL, dir, sizeof dir), 0);
    assert_int_equal(pgconf_local_conn_params(&c, NULL, "postgres", &p), 0);
    assert_null(pgconn_params_get(&p, "host"));
    assert_string_equal(pgconn_params_get(&p, "port"), "5432");
    pgconn_params_free(&p);
    cfg_free(&c);

    /* no absolute directory: TCP to the listen address */
    snprintf(yaml, sizeof yaml, HEAD, f->data, f->pgpass,
             "  use_unix_socket: true\n  parameters: {unix_socket_directories: 'rel, @abs'}\n");
    if (cfg_load_buffer("t.yml", yaml, strlen(yaml), &c, &e, NULL) != 0)
        fail_msg("%s", e.msg);
    assert_int_equal(pgconf_local_socket_dir(&c, NULL, dir, sizeof dir), -1);
    assert_int_equal(pgconf_local_conn_params(&c, NULL, "postgres", &p), 0);
    assert_string_equal(pgconn_params_get(&p, "host"), "10.0.0.1");
    pgconn_params_free(&p);
    cfg_free(&c);

    /* use_unix_socket off (the default): TCP even with a socket directory */
    snprintf(yaml, sizeof yaml, HEAD, f->data, f->pgpass,
             "  parameters: {unix_socket_directories: /run/pg}\n");
    if (cfg_load_buffer("t.yml", yaml, strlen(yaml), &c, &e, NULL) != 0)
        fail_msg("%s", e.msg);
    assert_false(c.postgresql.use_unix_socket);
    assert_int_equal(pgconf_local_conn_params(&c, NULL, "postgres", &p), 0);
    assert_string_equal(pgconn_params_get(&p, "host"), "10.0.0.1");
    pgconn_params_free(&p);
    cfg_free(&c);

    /* use_unix_socket_repl: false is accepted, true refused with the reason */
    snprintf(yaml, sizeof yaml, HEAD, f->data, f->pgpass, "  use_unix_socket_repl: false\n");
    if (cfg_load_buffer("t.yml", yaml, strlen(yaml), &c, &e, NULL) != 0)
        fail_msg("%s", e.msg);
    cfg_free(&c);
    snprintf(yaml, sizeof yaml, HEAD, f->data, f->pgpass, "  use_unix_socket_repl: true\n");
    assert_int_not_equal(cfg_load_buffer("t.yml", yaml, strlen(yaml), &c, &e, NULL), 0);
    assert_non_null(strstr(e.msg, "use_unix_socket_repl"));
    assert_non_null(strstr(e.msg, "no replication connection to its local PostgreSQL"));
#undef HEAD
}

/* A Patroni configuration without postgresql.authentication.rewind, read by
 * the real loader: pg_rewind connects as the superuser (user, password, ssl
 * settings: Patroni's rewind_credentials), and the password file carries no
 * line for a rewind user. With a rewind section, its own credentials. */
static void test_rewind_as_superuser_without_section(void **state)
{
    struct fixture *f = *state;
    char yaml[1024];
    snprintf(yaml, sizeof yaml,
             "scope: demo\nname: n1\nraft: {self_addr: 10.0.0.1:5010, data_dir: /r}\n"
             "postgresql:\n  listen: 10.0.0.1:5432\n  data_dir: %s\n  pgpass: %s\n"
             "  authentication:\n"
             "    superuser: {username: admin, password: su-pw, sslmode: require}\n"
             "    replication: {username: repl, password: rep-pw}\n",
             f->data, f->pgpass);
    struct cfg c;
    struct cfg_error e;
    if (cfg_load_buffer("t.yml", yaml, strlen(yaml), &c, &e, NULL) != 0)
        fail_msg("%s", e.msg);
    struct pgconn_params p;
    assert_int_equal(pgconf_conn_params(&c, PGCONF_REWIND, "10.0.0.2", 5432, "postgres", false,
                                        &p), 0);
    assert_string_equal(pgconn_params_get(&p, "user"), "admin");
    assert_string_equal(pgconn_params_get(&p, "password"), "su-pw");
    assert_string_equal(pgconn_params_get(&p, "sslmode"), "require");
    assert_string_equal(pgconn_params_get(&p, "host"), "10.0.0.2");
    pgconn_params_free(&p);
    char eb[256];
    assert_int_equal(pgconf_write_pgpass(&c, eb, sizeof eb), 0);
    char *t = slurp(f->pgpass);
    assert_string_equal(t, "*:*:*:repl:rep-pw\n*:*:*:admin:su-pw\n");
    free(t);
    cfg_free(&c);

    size_t len = strlen(yaml);
    snprintf(yaml + len, sizeof yaml - len, "    rewind: {username: rw, password: rw-pw}\n");
    if (cfg_load_buffer("t.yml", yaml, strlen(yaml), &c, &e, NULL) != 0)
        fail_msg("%s", e.msg);
    assert_int_equal(pgconf_conn_params(&c, PGCONF_REWIND, "10.0.0.2", 5432, "postgres", false,
                                        &p), 0);
    assert_string_equal(pgconn_params_get(&p, "user"), "rw");
    assert_string_equal(pgconn_params_get(&p, "password"), "rw-pw");
    assert_string_equal(pgconn_params_get(&p, "sslmode"), "prefer"); /* not the superuser's */
    pgconn_params_free(&p);
    assert_int_equal(pgconf_write_pgpass(&c, eb, sizeof eb), 0);
    t = slurp(f->pgpass);
    assert_string_equal(t, "*:*:*:repl:rep-pw\n*:*:*:rw:rw-pw\n*:*:*:admin:su-pw\n");
    free(t);
    cfg_free(&c);
}

/* Recovery settings a restore tool (or ALTER SYSTEM) left in
 * postgresql.auto.conf would override pgwarden's: removed, the rest kept. */
static void test_sanitize_auto_conf(void **state)
{
    struct fixture *f = *state;
    char path[600], removed[256], eb[256];
    snprintf(path, sizeof path, "%s/postgresql.auto.conf", f->data);
    /* no file: nothing to do */
    assert_int_equal(pgconf_sanitize_auto_conf(f->data, true, removed, sizeof removed, eb, sizeof eb), 0);
    assert_string_equal(removed, "");
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs("# Do not edit this file manually!\n"
          "work_mem = '64MB'\n"
          "restore_command = 'pgbackrest --stanza=old archive-get %f \"%p\"'\n"
          "  Recovery_Target_Time='2026-12-07 10:00:00+00'\n"
          "recovery_target_action = 'promote'\n"
          "# restore_command = 'a comment stays'\n"
          "shared_preload_libraries = 'pg_stat_statements'\n",
          fp);
    fclose(fp);
    assert_int_equal(pgconf_sanitize_auto_conf(f->data, true, removed, sizeof removed, eb, sizeof eb), 0);
    assert_string_equal(removed, "restore_command, Recovery_Target_Time, recovery_target_action");
    bool missing = false;
    char *t = pgconf__read_small(path, &missing, eb, sizeof eb);
    assert_non_null(t);
    assert_string_equal(t, "# Do not edit this file manually!\n"
                           "work_mem = '64MB'\n"
                           "# restore_command = 'a comment stays'\n"
                           "shared_preload_libraries = 'pg_stat_statements'\n");
    free(t);
    /* parameters that must be equal on all nodes go whatever `recovery` says
     * (ALTER SYSTEM would win over the cluster-wide value); recovery
     * settings stay when it is false (a bootstrap method's own recovery) */
    fp = fopen(path, "a");
    assert_non_null(fp);
    fputs("max_connections = '50'\nrestore_command = 'x'\n", fp);
    fclose(fp);
    assert_int_equal(pgconf_sanitize_auto_conf(f->data, false, removed, sizeof removed, eb, sizeof eb), 0);
    assert_string_equal(removed, "max_connections");
    assert_int_equal(pgconf_sanitize_auto_conf(f->data, true, removed, sizeof removed, eb, sizeof eb), 0);
    assert_string_equal(removed, "restore_command");
    /* a second pass finds nothing */
    assert_int_equal(pgconf_sanitize_auto_conf(f->data, true, removed, sizeof removed, eb, sizeof eb), 0);
    assert_string_equal(removed, "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_defaults_and_forced, setup, teardown),
        cmocka_unit_test_setup_teardown(test_merge_rules, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_inputs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_standby, setup, teardown),
        cmocka_unit_test_setup_teardown(test_render_quoting, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_takeover, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_fresh_creates_base, setup, teardown),
        cmocka_unit_test_setup_teardown(test_config_dir_apart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hba, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hba_operators_file_kept, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pgpass, setup, teardown),
        cmocka_unit_test_setup_teardown(test_slot_names, setup, teardown),
        cmocka_unit_test_setup_teardown(test_conn_params, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rewind_as_superuser_without_section, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_local_conn_unix_socket, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sanitize_auto_conf, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
