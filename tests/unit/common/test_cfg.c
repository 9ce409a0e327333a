/* Configuration loading: every key, every default, every class of bad input
 * (with the exact line, column and key path of the message), warnings,
 * environment overrides, cfg_diff, and docs/configuration.md vs the table. */
#include <dirent.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/cfg.h"
#include "common/cfg_internal.h"

extern char **environ;

/* ---------- helpers ---------- */

static void clear_env(void)
{
    for (int guard = 0; guard < 1000; guard++) {
        char name[256] = "";
        for (char **e = environ; e != NULL && *e != NULL; e++) {
            if (strncmp(*e, "PGWARDEN_", 9) == 0 || strncmp(*e, "PATRONI_", 8) == 0) {
                const char *eq = strchr(*e, '=');
                snprintf(name, sizeof name, "%.*s", (int)(eq ? eq - *e : (long)strlen(*e)), *e);
                break;
            }
        }
        if (name[0] == '\0')
            return;
        unsetenv(name);
    }
    fail_msg("could not clear PGWARDEN_* and PATRONI_* variables");
}

static int setup(void **state)
{
    (void)state;
    clear_env();
    return 0;
}

static char *data_path(const char *rel)
{
    const char *base = getenv("PGW_TEST_DATA");
    assert_non_null(base);
    char *p = malloc(4096);
    assert_non_null(p);
    snprintf(p, 4096, "%s/%s", base, rel);
    return p;
}

/* Fixture files come out of git world-readable; some hold passwords, which
 * cfg_load refuses in a file every user can read (issue 10). */
static int load_private(const char *path, struct cfg *c, struct cfg_error *e,
                        struct cfg_warnings *w)
{
    if (chmod(path, 0600) != 0)
        fail_msg("chmod %s: %s", path, strerror(errno));
    return cfg_load(path, c, e, w);
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        fail_msg("cannot open %s: %s", path, strerror(errno));
    char *buf = NULL;
    size_t cap = 0, n = 0;
    for (int guard = 0; guard < 100000; guard++) {
        if (n + 4096 + 1 > cap) {
            cap = cap ? cap * 2 : 8192;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
        size_t r = fread(buf + n, 1, 4096, f);
        n += r;
        if (r == 0)
            break;
    }
    fclose(f);
    buf[n] = '\0';
    if (len)
        *len = n;
    return buf;
}

static int load(const char *yaml, struct cfg *c, struct cfg_error *e, struct cfg_warnings *w)
{
    return cfg_load_buffer("t.yml", yaml, strlen(yaml), c, e, w);
}

/* The load must fail with "t.yml:<line>:<col>: <path>: ..." containing `what`. */
static void expect_err_at(const char *yaml, int line, int col, const char *path, const char *what)
{
    struct cfg c;
    struct cfg_error e;
    struct cfg_warnings w = {0};
    int rc = load(yaml, &c, &e, &w);
    if (rc == 0) {
        cfg_free(&c);
        fail_msg("accepted, expected an error at %d:%d %s: %s\n---\n%s", line, col, path, what,
                 yaml);
    }
    assert_int_equal(rc, PGW_EINVAL);
    char prefix[512];
    if (path != NULL && *path)
        snprintf(prefix, sizeof prefix, "t.yml:%d:%d: %s: ", line, col, path);
    else
        snprintf(prefix, sizeof prefix, "t.yml:%d:%d: ", line, col);
    if (strncmp(e.msg, prefix, strlen(prefix)) != 0 || strstr(e.msg, what) == NULL)
        fail_msg("got:      %s\nexpected: %s...%s", e.msg, prefix, what);
    assert_int_equal(e.line, line);
    assert_int_equal(e.column, col);
    /* *out is left zeroed on failure */
    assert_null(c.scope);
    assert_null(c.raft.self_addr);
    assert_null(c.path);
    cfg_warnings_free(&w);
}

static bool list_is(const struct cfg_strlist *l, size_t n, ...)
{
    if (l->n != n)
        return false;
    va_list ap;
    va_start(ap, n);
    bool ok = true;
    for (size_t i = 0; i < n; i++)
        ok = ok && strcmp(l->items[i], va_arg(ap, const char *)) == 0;
    va_end(ap);
    return ok;
}

static const char *kv(const struct cfg_kvlist *l, const char *k)
{
    return cfg__kvlist_get(l, k);
}

/* A valid PostgreSQL node; tests append or change one section. */
#define BASE "scope: demo\nname: node1\nraft:\n  self_addr: 10.0.0.1:5010\n  data_dir: /r\n"
#define PG "postgresql:\n  listen: 10.0.0.1:5432\n  data_dir: /d\n"

/* ---------- good files ---------- */

static void test_full_config(void **state)
{
    (void)state;
    char *path = data_path("cfg/good/full.yml");
    struct cfg c;
    struct cfg_error e;
    struct cfg_warnings w = {0};
    int rc = load_private(path, &c, &e, &w);
    if (rc != 0)
        fail_msg("%s", e.msg);
    assert_string_equal(c.path, path);
    assert_string_equal(c.scope, "prod-cluster");
    assert_string_equal(c.name, "node_1.a");
    assert_false(c.witness);
    /* restapi */
    assert_string_equal(c.restapi.listen.host, "::");
    assert_int_equal(c.restapi.listen.port, 8009);
    assert_string_equal(c.restapi.connect_address.host, "node1.example.com");
    assert_int_equal(c.restapi.connect_address.port, 8009);
    assert_string_equal(c.restapi.auth_username, "admin");
    assert_string_equal(c.restapi.auth_password, "s3cret");
    assert_string_equal(c.restapi.certfile, "/etc/pgw/cert.pem");
    assert_string_equal(c.restapi.keyfile, "/etc/pgw/key.pem");
    assert_string_equal(c.restapi.cafile, "/etc/pgw/ca.pem");
    assert_string_equal(c.restapi.verify_client, "optional");
    assert_true(list_is(&c.restapi.allowlist, 2, "10.0.0.0/8", "127.0.0.1"));
    assert_int_equal(c.restapi.request_timeout_ms, 2500);
    assert_int_equal(c.restapi.max_connections, 64);
    /* ctl */
    assert_string_equal(c.ctl.auth_username, "ctluser");
    assert_string_equal(c.ctl.auth_password, "ctlpass");
    assert_string_equal(c.ctl.cacert, "/etc/pgw/ctlca.pem");
    assert_string_equal(c.ctl.certfile, "/etc/pgw/ctlcert.pem");
    assert_string_equal(c.ctl.keyfile, "/etc/pgw/ctlkey.pem");
    assert_true(c.ctl.insecure);
    /* raft */
    assert_string_equal(c.raft.self_addr, "10.0.0.1:5010");
    assert_true(list_is(&c.raft.partner_addrs, 2, "10.0.0.2:5010", "10.0.0.3:5010"));
    assert_string_equal(c.raft.data_dir, "/var/lib/pgwarden/raft");
    assert_string_equal(c.raft.password, "raftpw");
    /* bootstrap.dcs */
    const struct cfg_dcs *d = &c.bootstrap.dcs;
    assert_int_equal(d->ttl_ms, 10000);
    assert_int_equal(d->loop_wait_ms, 1500);
    assert_int_equal(d->retry_timeout_ms, 2000);
    assert_int_equal(d->maximum_lag_on_failover, 2 * 1024 * 1024);
    assert_int_equal(d->maximum_lag_on_syncnode, 4096);
    assert_int_equal(d->primary_start_timeout_ms, 60000);
    assert_int_equal(d->primary_stop_timeout_ms, 30000);
    assert_int_equal(d->synchronous_mode, CFG_SYNC_QUORUM);
    assert_true(d->synchronous_mode_strict);
    assert_int_equal(d->synchronous_node_count, 2);
    assert_int_equal(d->member_slots_ttl_ms, 30 * 60 * 1000);
    assert_true(d->check_timeline);
    assert_false(d->use_pg_rewind);
    assert_false(d->use_slots);
    assert_int_equal(d->pg_parameters.n, 4);
    assert_string_equal(kv(&d->pg_parameters, "max_connections"), "200");
    assert_string_equal(kv(&d->pg_parameters, "wal_log_hints"), "on");
    assert_string_equal(kv(&d->pg_parameters, "hot_standby_feedback"), "off");
    assert_string_equal(kv(&d->pg_parameters, "work_mem"), "4MB");
    assert_true(list_is(&d->pg_hba, 1, "host all all 0.0.0.0/0 md5"));
    /* bootstrap */
    assert_true(list_is(&c.bootstrap.initdb, 3, "data-checksums", "encoding=UTF8",
                        "locale=C.UTF-8"));
    assert_true(list_is(&c.bootstrap.pg_hba, 1, "host replication replicator 10.0.0.0/8 md5"));
    assert_string_equal(c.bootstrap.method, "initdb");
    assert_string_equal(c.bootstrap.post_bootstrap, "/usr/local/bin/post.sh");
    /* postgresql */
    const struct cfg_postgresql *p = &c.postgresql;
    assert_true(p->present);
    assert_string_equal(p->listen.host, "127.0.0.1,10.0.0.1");
    assert_int_equal(p->listen.port, 5432);
    assert_string_equal(p->connect_address.host, "10.0.0.1"); /* the raft host is in the list */
    assert_int_equal(p->connect_address.port, 5432);
    assert_string_equal(p->data_dir, "/var/lib/postgresql/15/main");
    assert_string_equal(p->bin_dir, "/usr/lib/postgresql/16/bin");
    assert_string_equal(p->config_dir, "/etc/postgresql/main");
    assert_string_equal(p->pgpass, "/var/lib/pgwarden/pgpass");
    assert_string_equal(p->superuser.username, "su");
    assert_string_equal(p->superuser.password, "supw");
    assert_string_equal(p->superuser.sslmode, "require");
    assert_string_equal(p->superuser.sslcert, "/c");
    assert_string_equal(p->superuser.sslkey, "/k");
    assert_string_equal(p->superuser.sslrootcert, "/r");
    assert_string_equal(p->superuser.sslcrl, "/crl");
    assert_string_equal(p->superuser.sslpassword, "sslpw");
    assert_string_equal(p->superuser.channel_binding, "require");
    assert_string_equal(p->superuser.gssencmode, "disable");
    assert_string_equal(p->replication.username, "rep");
    assert_string_equal(p->replication.password, "reppw");
    assert_null(p->replication.sslmode);
    assert_string_equal(p->rewind.username, "rew");
    assert_string_equal(p->rewind.password, "rewpw");
    assert_int_equal(p->parameters.n, 3);
    assert_string_equal(kv(&p->parameters, "shared_buffers"), "256MB");
    assert_string_equal(kv(&p->parameters, "log_checkpoints"), "on");
    assert_string_equal(kv(&p->parameters, "random_page_cost"), "1.1");
    assert_true(list_is(&p->pg_hba, 1, "local all all peer"));
    assert_int_equal(p->recovery_conf.n, 1);
    assert_string_equal(kv(&p->recovery_conf, "restore_command"), "cp /arch/%f %p");
    assert_true(list_is(&p->create_replica_methods, 1, "basebackup"));
    assert_true(list_is(&p->basebackup, 2, "max-rate=100M", "checkpoint=fast"));
    assert_true(p->use_pg_rewind);
    assert_true(p->use_pg_rewind_set);
    assert_true(p->remove_data_directory_on_rewind_failure);
    assert_true(p->remove_data_directory_on_diverged_timelines);
    assert_int_equal(p->pg_ctl_timeout_ms, 120000);
    assert_string_equal(p->callbacks.on_start, "/cb start");
    assert_string_equal(p->callbacks.on_stop, "/cb stop");
    assert_string_equal(p->callbacks.on_restart, "/cb restart");
    assert_string_equal(p->callbacks.on_reload, "/cb reload");
    assert_string_equal(p->callbacks.on_role_change, "/cb role");
    assert_string_equal(p->pre_promote, "/fence");
    assert_string_equal(p->before_stop, "/before");
    /* tags */
    assert_false(c.tags.nofailover);
    assert_int_equal(c.tags.failover_priority, 3);
    assert_true(c.tags.noloadbalance);
    assert_true(c.tags.clonefrom);
    assert_true(c.tags.nosync);
    assert_int_equal(c.tags.sync_priority, 0);
    assert_string_equal(c.tags.replicatefrom, "node2");
    assert_int_equal(c.tags.custom.n, 3);
    assert_string_equal(kv(&c.tags.custom, "zone"), "europe-west1-b");
    assert_string_equal(kv(&c.tags.custom, "rack"), "7");
    assert_string_equal(kv(&c.tags.custom, "ssd"), "true");
    /* watchdog, log */
    assert_int_equal(c.watchdog.mode, CFG_WD_AUTOMATIC);
    assert_string_equal(c.watchdog.device, "/dev/watchdog1");
    assert_int_equal(c.watchdog.safety_margin_s, -1);
    assert_int_equal(c.log.level, LOGL_DEBUG);
    assert_int_equal(c.log.format, LOGF_JSON);
    assert_string_equal(c.log.dir, "/var/log/pgwarden");
    assert_ptr_equal(c.log.dir, c.log_dir_storage);
    /* the legacy name is the only warning */
    assert_int_equal(w.n, 1);
    char expect[600];
    snprintf(expect, sizeof expect,
             "%s:37:5: bootstrap.dcs.master_start_timeout is a deprecated name; use "
             "primary_start_timeout", path);
    assert_string_equal(w.items[0], expect);
    cfg_warnings_free(&w);
    cfg_free(&c);
    assert_null(c.scope);
    free(path);
}

static void test_minimal_defaults(void **state)
{
    (void)state;
    char *path = data_path("cfg/good/minimal.yml");
    struct cfg c;
    struct cfg_error e;
    struct cfg_warnings w = {0};
    if (load_private(path, &c, &e, &w) != 0)
        fail_msg("%s", e.msg);
    assert_int_equal(w.n, 0);
    assert_false(c.witness);
    assert_string_equal(c.restapi.listen.host, "0.0.0.0");
    assert_int_equal(c.restapi.listen.port, 8008);
    /* wildcard listen: the host of raft.self_addr, the listen port */
    assert_string_equal(c.restapi.connect_address.host, "127.0.0.1");
    assert_int_equal(c.restapi.connect_address.port, 8008);
    assert_null(c.restapi.auth_username);
    assert_null(c.restapi.auth_password);
    assert_null(c.restapi.certfile);
    assert_null(c.restapi.keyfile);
    assert_null(c.restapi.cafile);
    assert_string_equal(c.restapi.verify_client, "none");
    assert_int_equal(c.restapi.allowlist.n, 0);
    assert_int_equal(c.restapi.request_timeout_ms, 5000);
    assert_int_equal(c.restapi.max_connections, 1024);
    assert_null(c.ctl.auth_username);
    assert_null(c.ctl.auth_password);
    assert_null(c.ctl.cacert);
    assert_null(c.ctl.certfile);
    assert_null(c.ctl.keyfile);
    assert_false(c.ctl.insecure);
    assert_null(c.raft.password);
    const struct cfg_dcs *d = &c.bootstrap.dcs;
    assert_int_equal(d->ttl_ms, 2000);
    assert_int_equal(d->loop_wait_ms, 500);
    assert_int_equal(d->retry_timeout_ms, 750);
    assert_int_equal(d->maximum_lag_on_failover, 1048576);
    assert_int_equal(d->maximum_lag_on_syncnode, -1);
    assert_int_equal(d->primary_start_timeout_ms, 300000);
    assert_int_equal(d->primary_stop_timeout_ms, 0);
    assert_int_equal(d->synchronous_mode, CFG_SYNC_OFF);
    assert_false(d->synchronous_mode_strict);
    assert_int_equal(d->synchronous_node_count, 1);
    assert_int_equal(d->member_slots_ttl_ms, 1800000);
    assert_false(d->check_timeline);
    assert_true(d->use_pg_rewind);
    assert_true(d->use_slots);
    assert_int_equal(d->pg_parameters.n, 0);
    assert_int_equal(d->pg_hba.n, 0);
    assert_int_equal(c.bootstrap.initdb.n, 0);
    assert_int_equal(c.bootstrap.pg_hba.n, 0);
    assert_string_equal(c.bootstrap.method, "initdb");
    assert_null(c.bootstrap.post_bootstrap);
    const struct cfg_postgresql *p = &c.postgresql;
    assert_true(p->present);
    assert_string_equal(p->listen.host, "127.0.0.1");
    assert_int_equal(p->listen.port, 5433);
    assert_string_equal(p->connect_address.host, "127.0.0.1");
    assert_int_equal(p->connect_address.port, 5433);
    assert_string_equal(p->bin_dir, "/usr/lib/postgresql/15/bin");
    assert_string_equal(p->config_dir, "/tmp/pg1");
    assert_string_equal(p->pgpass, "/tmp/raft1/pgpass");
    assert_string_equal(p->superuser.username, "postgres");
    assert_string_equal(p->replication.username, "replicator");
    assert_null(p->rewind.username); /* pg_rewind connects as the superuser */
    assert_null(p->superuser.password);
    assert_null(p->replication.password);
    assert_null(p->rewind.password);
    assert_null(p->superuser.sslmode);
    assert_null(p->superuser.sslpassword);
    assert_int_equal(p->parameters.n, 0);
    assert_int_equal(p->pg_hba.n, 0);
    assert_int_equal(p->recovery_conf.n, 0);
    assert_true(list_is(&p->create_replica_methods, 1, "basebackup"));
    assert_int_equal(p->basebackup.n, 0);
    assert_true(p->use_pg_rewind);
    assert_false(p->use_pg_rewind_set);
    assert_false(p->remove_data_directory_on_rewind_failure);
    assert_false(p->remove_data_directory_on_diverged_timelines);
    assert_int_equal(p->pg_ctl_timeout_ms, 60000);
    assert_null(p->callbacks.on_start);
    assert_null(p->callbacks.on_role_change);
    assert_null(p->pre_promote);
    assert_null(p->before_stop);
    assert_false(c.tags.nofailover);
    assert_int_equal(c.tags.failover_priority, 1);
    assert_false(c.tags.noloadbalance);
    assert_false(c.tags.clonefrom);
    assert_false(c.tags.nosync);
    assert_int_equal(c.tags.sync_priority, 1);
    assert_null(c.tags.replicatefrom);
    assert_int_equal(c.tags.custom.n, 0);
    assert_int_equal(c.watchdog.mode, CFG_WD_OFF);
    assert_string_equal(c.watchdog.device, "/dev/watchdog");
    assert_int_equal(c.watchdog.safety_margin_s, 5);
    assert_int_equal(c.log.level, LOGL_INFO);
    assert_int_equal(c.log.format, LOGF_PLAIN);
    assert_null(c.log.dir);
    cfg_free(&c);
    free(path);
}

static void test_witness(void **state)
{
    (void)state;
    struct cfg c;
    struct cfg_error e;
    struct cfg_warnings w = {0};
    char *path = data_path("cfg/good/witness.yml");
    if (load_private(path, &c, &e, &w) != 0)
        fail_msg("%s", e.msg);
    assert_true(c.witness);
    assert_false(c.postgresql.present);
    assert_null(c.postgresql.connect_address.host);
    assert_string_equal(c.restapi.connect_address.host, "10.0.0.9");
    cfg_free(&c);
    free(path);

    /* witness: true with a postgresql section: the section is ignored, with a warning */
    const char *y = BASE "witness: true\n" PG;
    if (load(y, &c, &e, &w) != 0)
        fail_msg("%s", e.msg);
    assert_true(c.witness);
    assert_int_equal(w.n, 1);
    assert_string_equal(w.items[0],
                        "t.yml:7:1: postgresql: ignored, this node is a witness (witness: true)");
    cfg_warnings_free(&w);
    cfg_free(&c);
}

/* Every file in good/ loads; every file in bad/ fails where its first line says. */
static void test_fixture_dirs(void **state)
{
    (void)state;
    const char *kinds[] = {"good", "bad"};
    int seen[2] = {0, 0};
    for (int k = 0; k < 2; k++) {
        char rel[64];
        snprintf(rel, sizeof rel, "cfg/%s", kinds[k]);
        char *dir = data_path(rel);
        DIR *dh = opendir(dir);
        assert_non_null(dh);
        for (struct dirent *de = readdir(dh); de != NULL; de = readdir(dh)) {
            size_t nl = strlen(de->d_name);
            if (nl < 5 || strcmp(de->d_name + nl - 4, ".yml") != 0)
                continue;
            char file[4096];
            snprintf(file, sizeof file, "%s/%s", dir, de->d_name);
            struct cfg c;
            struct cfg_error e;
            struct timespec t0, t1;
            clock_gettime(CLOCK_MONOTONIC, &t0);
            int rc = load_private(file, &c, &e, NULL);
            clock_gettime(CLOCK_MONOTONIC, &t1);
            double secs = (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
            if (secs > 1.0)
                fail_msg("%s took %.2f s", file, secs);
            seen[k]++;
            if (k == 0) {
                if (rc != 0)
                    fail_msg("%s", e.msg);
                cfg_free(&c);
                continue;
            }
            if (rc == 0)
                fail_msg("%s was accepted", file);
            size_t len;
            char *text = slurp(file, &len);
            int line = 0, col = 0, used = 0;
            if (sscanf(text, "# expect: %d:%d %n", &line, &col, &used) != 2 || used == 0)
                fail_msg("%s: first line must be '# expect: L:C text'", file);
            char *nl2 = strchr(text + used, '\n');
            if (nl2)
                *nl2 = '\0';
            char prefix[4200];
            snprintf(prefix, sizeof prefix, "%s:%d:%d: %s", file, line, col, text + used);
            if (strncmp(e.msg, prefix, strlen(prefix)) != 0)
                fail_msg("got:      %s\nexpected: %s", e.msg, prefix);
            assert_int_equal(e.line, line);
            assert_int_equal(e.column, col);
            free(text);
        }
        closedir(dh);
        free(dir);
    }
    assert_true(seen[0] >= 4);
    assert_true(seen[1] >= 6);
}

/* ---------- bad input ---------- */

static void test_bad_types(void **state)
{
    (void)state;
    expect_err_at(BASE PG "bootstrap:\n  dcs:\n    ttl: abc\n", 11, 10, "bootstrap.dcs.ttl",
                  "expected a number of seconds, got \"abc\"");
    expect_err_at(BASE PG "bootstrap:\n  dcs:\n    ttl: -1\n", 11, 10, "bootstrap.dcs.ttl",
                  "expected a number of seconds >= 0, got \"-1\"");
    expect_err_at(BASE PG "bootstrap:\n  dcs:\n    loop_wait: .nan\n", 11, 16,
                  "bootstrap.dcs.loop_wait", "expected a number of seconds, got \".nan\"");
    expect_err_at(BASE PG "bootstrap:\n  dcs:\n    loop_wait: nan\n", 11, 16,
                  "bootstrap.dcs.loop_wait", "expected a number of seconds, got \"nan\"");
    expect_err_at(BASE PG "bootstrap:\n  dcs:\n    ttl: 1e3\n", 11, 10, "bootstrap.dcs.ttl",
                  "expected a number of seconds, got \"1e3\"");
    expect_err_at(BASE PG "bootstrap:\n  dcs:\n    ttl: 0.5\n", 11, 10, "bootstrap.dcs.ttl",
                  "must be at least 1 s, got \"0.5\"");
    expect_err_at(BASE PG "bootstrap:\n  dcs:\n    ttl: 2h\n", 11, 10, "bootstrap.dcs.ttl",
                  "must be at most 3600 s, got \"2h\"");
    expect_err_at(BASE PG "bootstrap:\n  dcs:\n    retry_timeout: [1]\n", 11, 20,
                  "bootstrap.dcs.retry_timeout", "expected a number of seconds, got a list");
    expect_err_at(BASE PG "bootstrap:\n  dcs:\n    maximum_lag_on_failover: 1.5MB\n", 11, 30,
                  "bootstrap.dcs.maximum_lag_on_failover",
                  "expected a size in bytes (or with kB, MB, GB, TB), got \"1.5MB\"");
    expect_err_at(BASE PG "bootstrap:\n  dcs:\n    synchronous_mode: always\n", 11, 23,
                  "bootstrap.dcs.synchronous_mode", "expected off, on or quorum, got \"always\"");
    expect_err_at(BASE PG "bootstrap:\n  dcs:\n    synchronous_node_count: 0\n", 11, 29,
                  "bootstrap.dcs.synchronous_node_count", "must be at least 1, got \"0\"");
    expect_err_at(BASE PG "bootstrap:\n  dcs:\n    postgresql:\n      use_slots: maybe\n", 12,
                  18, "bootstrap.dcs.postgresql.use_slots", "expected true or false, got \"maybe\"");
    expect_err_at(BASE PG "restapi:\n  max_connections: 1.5\n", 10, 20, "restapi.max_connections",
                  "expected a whole number, got \"1.5\"");
    expect_err_at(BASE PG "restapi:\n  verify_client: sometimes\n", 10, 18, "restapi.verify_client",
                  "expected none, optional or required, got \"sometimes\"");
    expect_err_at(BASE PG "restapi: 8008\n", 9, 10, "restapi", "expected a mapping, got a scalar");
    expect_err_at(BASE PG "tags:\n  failover_priority: high\n", 10, 22, "tags.failover_priority",
                  "expected a whole number, got \"high\"");
    expect_err_at(BASE PG "tags:\n  zone: [a, b]\n", 10, 9, "tags.zone",
                  "expected a tag value (string, number or boolean), got a list");
    expect_err_at(BASE PG "restapi:\n  allowlist: [10.0.0.0/8, db1.example.com]\n", 10, 27,
                  "restapi.allowlist[1]", "\"db1.example.com\" is not an IP address or a CIDR range; "
                  "pgwarden does not resolve host names here (Patroni resolves them once at start): "
                  "write the address");
    expect_err_at(BASE PG "restapi:\n  allowlist: [10.0.0.0/33]\n", 10, 15, "restapi.allowlist[0]",
                  "\"10.0.0.0/33\" is not an IP address or a CIDR range; pgwarden does not resolve "
                  "host names here (Patroni resolves them once at start): write the address");
    expect_err_at(BASE PG "tags:\n  nostream: true\n", 10, 13, "tags.nostream",
                  "not supported: pgwarden streams every replica from its upstream, where "
                  "Patroni's nostream replica only restores from the WAL archive "
                  "(restore_command); remove the tag, or set it to false");
    expect_err_at(BASE PG "watchdog:\n  mode: true\n", 10, 9, "watchdog.mode",
                  "expected off, automatic or required, got \"true\"");
    expect_err_at(BASE PG "log:\n  level: verbose\n", 10, 10, "log.level",
                  "expected debug, info, warning, error or critical, got \"verbose\"");
    expect_err_at(BASE PG "log:\n  type: xml\n", 10, 9, "log.type",
                  "expected plain or json, got \"xml\"");
    expect_err_at(BASE "postgresql:\n  listen: 10.0.0.1:5432\n  data_dir: /d\n  parameters:\n"
                  "    work_mem: {a: 1}\n", 10, 15, "postgresql.parameters.work_mem",
                  "expected a string, number or boolean, got a mapping");
    expect_err_at(BASE "postgresql:\n  listen: 10.0.0.1:5432\n  data_dir: /d\n  parameters:\n"
                  "    port: 5433\n", 10, 5, "postgresql.parameters.port",
                  "pgwarden sets port from postgresql.listen");
    expect_err_at(BASE "postgresql:\n  listen: 10.0.0.1:5432\n  data_dir: /d\n"
                  "  authentication:\n    superuser:\n      sslmode: always\n", 11, 16,
                  "postgresql.authentication.superuser.sslmode",
                  "expected disable, allow, prefer, require, verify-ca or verify-full");
    expect_err_at(BASE "postgresql:\n  listen: 10.0.0.1:5432\n  data_dir: /d\n"
                  "  create_replica_methods: [pgbackrest, basebackup]\n", 9, 28,
                  "postgresql.create_replica_methods[0]",
                  "method \"pgbackrest\" needs a section postgresql.pgbackrest with its command");
    expect_err_at(BASE PG "bootstrap:\n  method: wal_e\n", 10, 11, "bootstrap.method",
                  "method \"wal_e\" needs a section bootstrap.wal_e with its command");
    expect_err_at(BASE PG "bootstrap:\n  pg_hba: host all all md5\n", 10, 11, "bootstrap.pg_hba",
                  "expected a list of strings, got \"host all all md5\"");
}

static void test_bad_addresses(void **state)
{
    (void)state;
    const char *head = "scope: demo\nname: node1\nraft:\n  data_dir: /r\n";
    char y[1024];
    snprintf(y, sizeof y, "%s  self_addr: node1.example.com:5010\n", head);
    expect_err_at(y, 5, 14, "raft.self_addr",
                  "expected a.b.c.d:port, got \"node1.example.com:5010\" (a host name is not "
                  "accepted: libraft accepts only IPv4 addresses)");
    snprintf(y, sizeof y, "%s  self_addr: 10.0.0.1\n", head);
    expect_err_at(y, 5, 14, "raft.self_addr",
                  "expected a.b.c.d:port, got \"10.0.0.1\" (the port is missing)");
    snprintf(y, sizeof y, "%s  self_addr: 10.0.0.1:0\n", head);
    expect_err_at(y, 5, 14, "raft.self_addr", "(the port must be a number from 1 to 65535)");
    snprintf(y, sizeof y, "%s  self_addr: 10.0.0.1:70000\n", head);
    expect_err_at(y, 5, 14, "raft.self_addr", "(the port must be a number from 1 to 65535)");
    snprintf(y, sizeof y, "%s  self_addr: 10.0.0.256:5010\n", head);
    expect_err_at(y, 5, 14, "raft.self_addr", "(not a valid IPv4 address)");
    snprintf(y, sizeof y, "%s  self_addr: \"[::1]:5010\"\n", head);
    expect_err_at(y, 5, 14, "raft.self_addr", "(IPv6 is not supported");
    snprintf(y, sizeof y, "%s  self_addr: 0.0.0.0:5010\n", head);
    expect_err_at(y, 5, 14, "raft.self_addr", "(0.0.0.0 is not an address other nodes can reach)");
    snprintf(y, sizeof y, "%s  self_addr: 10.0.0.1:5010\n  partner_addrs:\n    - 10.0.0.2:5010\n"
             "    - db2:5010\n", head);
    expect_err_at(y, 8, 7, "raft.partner_addrs[1]", "expected a.b.c.d:port, got \"db2:5010\"");
    snprintf(y, sizeof y, "%s  self_addr: 10.0.0.1:5010\n  partner_addrs: [10.0.0.2:5010, "
             "10.0.0.3:5010, 10.0.0.2:5010]\n", head);
    expect_err_at(y, 6, 49, "raft.partner_addrs[2]", "10.0.0.2:5010 is listed twice (also at [0])");
    snprintf(y, sizeof y, "%s  self_addr: 10.0.0.1:5010\n  partner_addrs: 10.0.0.2:5010\n", head);
    expect_err_at(y, 6, 18, "raft.partner_addrs",
                  "expected a list of a.b.c.d:port addresses, got \"10.0.0.2:5010\"");
    /* self_addr among the partners, even written differently */
    snprintf(y, sizeof y, "%s  self_addr: 127.0.0.1:5010\n  partner_addrs:\n    - 127.0.0.1:5011\n"
             "    - 127.0.0.1:05010\n", head);
    expect_err_at(y, 8, 7, "raft.partner_addrs[1]",
                  "lists this node's own raft.self_addr 127.0.0.1:5010; partner_addrs must name "
                  "only the other nodes");
    /* the brief's example */
    expect_err_at(BASE "postgresql:\n  listen: 5432\n  data_dir: /d\n", 7, 11, "postgresql.listen",
                  "expected host:port, got \"5432\"");
    expect_err_at(BASE "postgresql:\n  listen: 10.0.0.1:65536\n  data_dir: /d\n", 7, 11,
                  "postgresql.listen", "(the port must be a number from 1 to 65535)");
    expect_err_at(BASE "postgresql:\n  listen: ::1:5432\n  data_dir: /d\n", 7, 11,
                  "postgresql.listen", "(an IPv6 address needs brackets, as in [::1]:5432)");
    expect_err_at(BASE "postgresql:\n  listen: 10.0.0.1,,10.0.0.2:5432\n  data_dir: /d\n", 7, 11,
                  "postgresql.listen", "(the host is missing)");
    expect_err_at(BASE PG "restapi:\n  listen: bad_host!:8008\n", 10, 11, "restapi.listen",
                  "(not a valid host name)");
    expect_err_at(BASE PG "restapi:\n  listen: \"*:8008\"\n", 10, 11, "restapi.listen",
                  "(not a valid host name)");
    expect_err_at(BASE PG "restapi:\n  connect_address: \"[::1\"\n", 10, 20,
                  "restapi.connect_address", "expected host:port, got \"[::1\"");
    /* two listeners on one port */
    expect_err_at(BASE PG "restapi:\n  listen: 0.0.0.0:5432\n", 7, 11, "postgresql.listen",
                  "port 5432 is also used by restapi.listen");
    expect_err_at(BASE PG "restapi:\n  listen: 10.0.0.1:5010\n", 10, 11, "restapi.listen",
                  "port 5010 is also used by raft.self_addr");
}

static void test_good_addresses(void **state)
{
    (void)state;
    struct cfg c;
    struct cfg_error e;
    const char *y = BASE "postgresql:\n  listen: \"*:5432\"\n  data_dir: /d\n"
                         "restapi:\n  listen: \"[::1]:8009\"\n";
    if (load(y, &c, &e, NULL) != 0)
        fail_msg("%s", e.msg);
    assert_string_equal(c.postgresql.listen.host, "*");
    assert_string_equal(c.postgresql.connect_address.host, "10.0.0.1");
    assert_string_equal(c.restapi.listen.host, "::1");
    assert_string_equal(c.restapi.connect_address.host, "::1");
    assert_int_equal(c.restapi.connect_address.port, 8009);
    cfg_free(&c);
    y = BASE "postgresql:\n  listen: localhost, db1.example.com:5432\n  data_dir: /d\n";
    if (load(y, &c, &e, NULL) != 0)
        fail_msg("%s", e.msg);
    assert_string_equal(c.postgresql.listen.host, "localhost,db1.example.com");
    assert_string_equal(c.postgresql.connect_address.host, "localhost");
    cfg_free(&c);
}

static void test_timing_rule(void **state)
{
    (void)state;
    expect_err_at(BASE PG "bootstrap:\n  dcs:\n    retry_timeout: 2\n", 10, 3, "bootstrap.dcs",
                  "timing rule loop_wait + 2*retry_timeout <= ttl is broken: 0.5 + 2*2 = 4.5 > 2");
    expect_err_at(BASE PG "bootstrap:\n  dcs:\n    ttl: 10\n    loop_wait: 5\n"
                  "    retry_timeout: 2.75\n", 10, 3, "bootstrap.dcs",
                  "timing rule loop_wait + 2*retry_timeout <= ttl is broken: 5 + 2*2.75 = 10.5 > 10");
    /* exactly on the limit is fine */
    struct cfg c;
    struct cfg_error e;
    if (load(BASE PG "bootstrap:\n  dcs:\n    ttl: 2.5\n    loop_wait: 0.5\n"
             "    retry_timeout: 1\n", &c, &e, NULL) != 0)
        fail_msg("%s", e.msg);
    assert_int_equal(c.bootstrap.dcs.ttl_ms, 2500);
    cfg_free(&c);
    /* the watchdog needs ttl - safety_margin > 0 */
    expect_err_at(BASE PG "watchdog:\n  mode: required\n  safety_margin: 3\n", 11, 18,
                  "watchdog.safety_margin",
                  "the watchdog timeout ttl - safety_margin = 2 - 3 is not positive");
}

static void test_structure_errors(void **state)
{
    (void)state;
    expect_err_at("scope: demo\nname: n1\nscope: other\n", 3, 1, "scope",
                  "duplicate key; it is already set at line 1, column 1");
    expect_err_at(BASE "postgresql:\n  listen: 10.0.0.1:5432\n  data_dir: /d\n"
                  "  authentication:\n    superuser:\n      username: a\n      username: b\n",
                  12, 7, "postgresql.authentication.superuser.username",
                  "duplicate key; it is already set at line 11, column 7");
    expect_err_at(BASE PG "bootstrap:\n  post_init: /a\n  post_bootstrap: /b\n", 11, 3,
                  "bootstrap.post_bootstrap", "set twice: also as post_init at line 10, column 3");
    expect_err_at(BASE PG "defaults: &d {ttl: 3}\nbootstrap:\n  dcs:\n    <<: *d\n", 12, 5,
                  "bootstrap.dcs", "merge keys (<<) are not supported");
    expect_err_at(BASE PG "tags:\n  zone: *nowhere\n", 10, 9, "tags.zone",
                  "alias *nowhere names no anchor defined before it");
    expect_err_at(BASE PG "? [a, b]\n: c\n", 9, 3, "", "mapping keys must be plain strings");
    expect_err_at("scope: a\n---\nscope: b\n", 2, 1, "", "more than one YAML document");
    expect_err_at(BASE PG "tags:\n  t: !custom x\n", 10, 6, "tags.t", "YAML tag !custom is not supported");
    expect_err_at(BASE PG "tags:\n  t: \"a\\0b\"\n", 10, 6, "tags.t", "NUL characters are not allowed");
    /* nesting deeper than 32 levels */
    char deep[512] = "a: ";
    for (int i = 0; i < 40; i++)
        strncat(deep, "[", sizeof deep - strlen(deep) - 1);
    expect_err_at(deep, 1, 35, "a[0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0]",
                  "nesting is deeper than 32 levels");
    /* Patroni's DCS sections */
    expect_err_at("scope: demo\nname: n1\nconsul:\n  host: x\n", 3, 1, "consul",
                  "pgwarden has its own consensus among the pgwarden nodes (Raft) and needs no "
                  "consul; replace this section with raft: {self_addr, partner_addrs, data_dir}");
    expect_err_at("scope: demo\nname: n1\nkubernetes: {}\n", 3, 1, "kubernetes",
                  "replace this section with raft:");
}

static void test_empty_and_not_mapping(void **state)
{
    (void)state;
    expect_err_at("", 1, 1, "", "the file holds no configuration (it is empty or only comments)");
    expect_err_at("# only a comment\n\n", 1, 1, "", "the file holds no configuration");
    expect_err_at("---\n", 1, 1, "", "the file holds no configuration");
    expect_err_at("\n\n- scope\n- name\n", 3, 1, "",
                  "the top level must be a mapping of keys (scope, name, raft, ...), got a list");
    expect_err_at("just a string\n", 1, 1, "", "the top level must be a mapping");
}

static void test_syntax_errors(void **state)
{
    (void)state;
    expect_err_at("scope: demo\nname: 'node1\nraft: {}\n", 2, 7, "name",
                  "YAML syntax error: found unexpected end of stream while scanning a quoted "
                  "scalar that starts here (the file ends at line 4)");
    expect_err_at("scope: demo\npostgresql:\n\tlisten: x\n", 3, 1, "postgresql",
                  "YAML syntax error: found character that cannot start any token (while "
                  "scanning for the next token); YAML cannot be indented with tabs, use spaces");
    expect_err_at("scope: demo\nraft: [a, b\n", 3, 1, "raft[2]", "YAML syntax error:");
    expect_err_at("scope: demo\n  name: x\n", 2, 7, "", "YAML syntax error: mapping values are "
                  "not allowed in this context");
}

static void test_non_utf8(void **state)
{
    (void)state;
    expect_err_at("scope: demo\nname: caf\xe9\n", 2, 10, "",
                  "not valid UTF-8: byte 0xE9 starts no valid UTF-8 character");
    expect_err_at("scope: d\xc3\xa9mo\nname: \xc0\xaf\n", 2, 7, "",
                  "not valid UTF-8: byte 0xC0"); /* overlong encoding of '/' */
    expect_err_at("scope: demo\nname: a\x01\n", 2, 8, "",
                  "control characters are not allowed (character 0x01)");
    /* valid UTF-8 is fine in values */
    struct cfg c;
    struct cfg_error e;
    if (load(BASE PG "tags:\n  city: Zürich\n", &c, &e, NULL) != 0)
        fail_msg("%s", e.msg);
    assert_string_equal(kv(&c.tags.custom, "city"), "Zürich");
    cfg_free(&c);
}

static void test_size_limits(void **state)
{
    (void)state;
    size_t big = 1024 * 1024 + 1;
    char *buf = malloc(big + 1);
    assert_non_null(buf);
    memset(buf, '#', big);
    buf[big] = '\0';
    struct cfg c;
    struct cfg_error e;
    assert_int_equal(cfg_load_buffer("big.yml", buf, big, &c, &e, NULL), PGW_EINVAL);
    assert_string_equal(e.msg, "big.yml: file is larger than 1 MiB (1048577 bytes)");

    char tmpl[] = "/tmp/pgw-test-cfg-XXXXXX";
    int fd = mkstemp(tmpl);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, buf, big), (ssize_t)big);
    close(fd);
    assert_int_equal(cfg_load(tmpl, &c, &e, NULL), PGW_EINVAL);
    char expect[256];
    snprintf(expect, sizeof expect, "%s: file is larger than 1 MiB (1048577 bytes)", tmpl);
    assert_string_equal(e.msg, expect);
    unlink(tmpl);
    free(buf);

    /* exactly 1 MiB of comments after a valid config is still read */
    size_t n = 1024 * 1024;
    buf = malloc(n + 1);
    assert_non_null(buf);
    const char *cfgtext = BASE PG;
    size_t cl = strlen(cfgtext);
    memcpy(buf, cfgtext, cl);
    memset(buf + cl, '#', n - cl - 1);
    buf[n - 1] = '\n';
    buf[n] = '\0';
    if (cfg_load_buffer("edge.yml", buf, n, &c, &e, NULL) != 0)
        fail_msg("%s", e.msg);
    cfg_free(&c);
    free(buf);

    assert_int_equal(cfg_load("/nonexistent/pgwarden.yml", &c, &e, NULL), PGW_ENOTFOUND);
    assert_string_equal(e.msg, "/nonexistent/pgwarden.yml: cannot open: No such file or directory");
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec / 1e9;
}

static void test_node_limits(void **state)
{
    (void)state;
    /* billion laughs: refused after a few hundred events */
    const char *bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
                       "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                       "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
                       "d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
                       "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\n"
                       "f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n"
                       "g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]\n"
                       "h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g, *g]\n"
                       "i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h, *h]\n";
    double t0 = now_s();
    expect_err_at(bomb, 5, 36, "e[7]",
                  "alias *d expands the document past 100000 nodes (nested aliases: refused as "
                  "a \"billion laughs\" attack)");
    assert_true(now_s() - t0 < 0.5);

    /* a plain list of 100001 items */
    size_t n = 100001;
    char *buf = malloc(n * 3 + 16);
    assert_non_null(buf);
    size_t o = (size_t)snprintf(buf, 16, "a: [");
    for (size_t i = 0; i < n; i++) {
        memcpy(buf + o, "1,", 2);
        o += 2;
    }
    buf[o - 1] = ']';
    buf[o] = '\0';
    expect_err_at(buf, 1, 2 * 99997 + 5, "a[99997]", "the document has more than 100000 nodes");
    free(buf);

    /* a big mapping with one duplicate: found quickly (sorted, not quadratic) */
    size_t keys = 30000;
    buf = malloc(keys * 16 + 64);
    assert_non_null(buf);
    o = 0;
    for (size_t i = 0; i < keys; i++)
        o += (size_t)snprintf(buf + o, 16, "k%zu: 1\n", i);
    o += (size_t)snprintf(buf + o, 32, "k17: 2\n");
    t0 = now_s();
    expect_err_at(buf, (int)keys + 1, 1, "k17", "duplicate key; it is already set at line 18, column 1");
    assert_true(now_s() - t0 < 2.0);
    free(buf);
}

static void test_required(void **state)
{
    (void)state;
    expect_err_at("name: n1\nraft:\n  self_addr: 10.0.0.1:5010\n  data_dir: /r\n", 1, 1, "scope",
                  "required key is missing (or set PGWARDEN_SCOPE)");
    expect_err_at("\n# comment\nscope: demo\nraft:\n  self_addr: 10.0.0.1:5010\n  data_dir: /r\n",
                  3, 1, "name", "required key is missing (or set PGWARDEN_NAME)");
    expect_err_at("scope: demo\nname: n1\nraft:\n  data_dir: /r\n", 3, 1, "raft.self_addr",
                  "required key is missing (or set PGWARDEN_RAFT_SELF_ADDR)");
    expect_err_at("scope: demo\nname: n1\n", 1, 1, "raft.self_addr", "required key is missing");
    expect_err_at("scope: demo\nname: n1\nraft:\n  self_addr: 10.0.0.1:5010\n", 3, 1,
                  "raft.data_dir", "required key is missing (or set PGWARDEN_RAFT_DATA_DIR)");
    expect_err_at(BASE "postgresql:\n  data_dir: /d\n", 6, 1, "postgresql.listen",
                  "required key is missing on a node with a postgresql section (or set "
                  "PGWARDEN_POSTGRESQL_LISTEN)");
    expect_err_at(BASE "postgresql:\n", 6, 1, "postgresql.listen", "required key is missing");
    expect_err_at(BASE "postgresql:\n  listen: 0.0.0.0:5432\n", 6, 1, "postgresql.data_dir",
                  "required key is missing on a node with a postgresql section");
    expect_err_at(BASE PG "restapi:\n  authentication:\n    username: admin\n", 11, 15,
                  "restapi.authentication.username",
                  "restapi.authentication needs both username and password");
}

static void test_names(void **state)
{
    (void)state;
    const char *tail = "raft:\n  self_addr: 10.0.0.1:5010\n  data_dir: /r\n";
    char y[512];
    snprintf(y, sizeof y, "scope: demo\nname: node 1\n%s", tail);
    expect_err_at(y, 2, 7, "name",
                  "expected 1 to 63 characters from A-Z, a-z, 0-9, '_', '.' and '-', got \"node 1\"");
    snprintf(y, sizeof y, "scope: demo/prod\nname: n1\n%s", tail);
    expect_err_at(y, 1, 8, "scope", "got \"demo/prod\"");
    snprintf(y, sizeof y, "scope: \"\"\nname: n1\n%s", tail);
    expect_err_at(y, 1, 8, "scope", "got \"\"");
    snprintf(y, sizeof y, "scope: demo\nname: %s\n%s",
             "n234567890123456789012345678901234567890123456789012345678901234", tail);
    expect_err_at(y, 2, 7, "name", "expected 1 to 63 characters");
    snprintf(y, sizeof y, "scope: demo\nname: \"n\\u00e9\"\n%s", tail);
    expect_err_at(y, 2, 7, "name", "expected 1 to 63 characters");
    /* 63 bytes is the limit */
    struct cfg c;
    struct cfg_error e;
    snprintf(y, sizeof y, "scope: a.b-c_D\nname: %s\n%s",
             "n23456789012345678901234567890123456789012345678901234567890123", tail);
    if (load(y, &c, &e, NULL) != 0)
        fail_msg("%s", e.msg);
    assert_int_equal(strlen(c.name), 63);
    cfg_free(&c);
}

static void test_forbidden_options(void **state)
{
    (void)state;
    expect_err_at(BASE PG "bootstrap:\n  initdb:\n    - data-checksums\n    - pgdata: /x\n", 12,
                  7, "bootstrap.initdb[1]",
                  "option pgdata is not allowed: pgwarden sets it itself when it runs initdb");
    expect_err_at(BASE PG "bootstrap:\n  initdb:\n    - nosync\n", 11, 7, "bootstrap.initdb[0]",
                  "option nosync is not allowed");
    expect_err_at(BASE PG "bootstrap:\n  initdb:\n    - username: admin\n", 11, 7,
                  "bootstrap.initdb[0]", "option username is not allowed");
    expect_err_at(BASE PG "bootstrap:\n  initdb: [pwfile, sync-only]\n", 10, 12,
                  "bootstrap.initdb[0]", "option pwfile is not allowed");
    expect_err_at(BASE PG "bootstrap:\n  initdb:\n    - --data-checksums\n", 11, 7,
                  "bootstrap.initdb[0]", "write the option without leading dashes");
    expect_err_at(BASE PG "bootstrap:\n  initdb:\n    - {encoding: UTF8, locale: C}\n", 11, 7,
                  "bootstrap.initdb[0]",
                  "expected an option name or a single-key mapping like `name: value`, got a mapping");
    expect_err_at(BASE PG "bootstrap:\n  initdb:\n    - encoding:\n", 11, 16,
                  "bootstrap.initdb[0]", "expected a value for option encoding, got nothing");
    expect_err_at(BASE "postgresql:\n  listen: 10.0.0.1:5432\n  data_dir: /d\n  basebackup:\n"
                  "    max-rate: 100M\n    wal-method: fetch\n", 11, 5,
                  "postgresql.basebackup.wal-method",
                  "option wal-method is not allowed: pgwarden sets it itself when it runs "
                  "pg_basebackup");
    expect_err_at(BASE "postgresql:\n  listen: 10.0.0.1:5432\n  data_dir: /d\n  basebackup:\n"
                  "    - checkpoint: fast\n    - format: tar\n", 11, 7, "postgresql.basebackup[1]",
                  "option format is not allowed");
    const char *forbidden[] = {"pgdata", "xlog-method", "gzip", "version", "dbname", "host",
                               "port", "username", "password", "compress"};
    for (size_t i = 0; i < sizeof forbidden / sizeof forbidden[0]; i++) {
        char y[512], what[128];
        snprintf(y, sizeof y, BASE "postgresql:\n  listen: 10.0.0.1:5432\n  data_dir: /d\n"
                 "  basebackup:\n    - %s\n", forbidden[i]);
        snprintf(what, sizeof what, "option %s is not allowed", forbidden[i]);
        expect_err_at(y, 10, 7, "postgresql.basebackup[0]", what);
    }
}

static void test_unknown_key_warnings(void **state)
{
    (void)state;
    const char *y = BASE PG "namespace: /service/\nrestapi:\n  listen: 0.0.0.0:8008\n"
                    "  keyfile_password: x\nbootstrap:\n  dcs:\n    pause: true\n"
                    "    slots: {s1: {type: physical}}\n  restore: {}\nraft.self_addr: 1.2.3.4:1\n";
    struct cfg c;
    struct cfg_error e;
    struct cfg_warnings w = {0};
    if (load(y, &c, &e, &w) != 0)
        fail_msg("%s", e.msg);
    assert_int_equal(w.n, 5);
    assert_string_equal(w.items[0], "t.yml:9:1: unknown key namespace (ignored)");
    assert_string_equal(w.items[1], "t.yml:12:3: unknown key restapi.keyfile_password (ignored)");
    assert_string_equal(w.items[2],
                        "t.yml:15:5: bootstrap.dcs.pause is not supported by pgwarden yet (ignored)");
    /* slots are parsed; a mapping under bootstrap that no bootstrap.method
     * names stays an unknown key, in the file's order */
    assert_int_equal(c.bootstrap.dcs.slots.n, 1);
    assert_string_equal(w.items[3], "t.yml:17:3: unknown key bootstrap.restore (ignored)");
    /* a dotted key is not its nested form */
    assert_string_equal(w.items[4], "t.yml:18:1: unknown key raft.self_addr (ignored)");
    assert_string_equal(c.raft.self_addr, "10.0.0.1:5010");
    cfg_warnings_free(&w);
    cfg_free(&c);
    /* NULL warnings are allowed */
    if (load(y, &c, &e, NULL) != 0)
        fail_msg("%s", e.msg);
    cfg_free(&c);
}

static void test_null_values_keep_defaults(void **state)
{
    (void)state;
    struct cfg c;
    struct cfg_error e;
    if (load(BASE PG "bootstrap:\n  dcs:\n    ttl:\n    loop_wait: ~\ntags:\nlog:\n  level: null\n",
             &c, &e, NULL) != 0)
        fail_msg("%s", e.msg);
    assert_int_equal(c.bootstrap.dcs.ttl_ms, 2000);
    assert_int_equal(c.bootstrap.dcs.loop_wait_ms, 500);
    assert_int_equal(c.log.level, LOGL_INFO);
    cfg_free(&c);
    /* units and booleans in every YAML 1.1 spelling */
    if (load(BASE PG "bootstrap:\n  dcs:\n    ttl: 1500ms\n    loop_wait: 100 ms\n"
             "    retry_timeout: 0.2\n    member_slots_ttl: 1d\n    synchronous_mode: TRUE\n"
             "    check_timeline: Yes\n    synchronous_mode_strict: ON\n"
             "    maximum_lag_on_failover: 16 kB\ntags:\n  nosync: \"off\"\n", &c, &e, NULL) != 0)
        fail_msg("%s", e.msg);
    assert_int_equal(c.bootstrap.dcs.ttl_ms, 1500);
    assert_int_equal(c.bootstrap.dcs.loop_wait_ms, 100);
    assert_int_equal(c.bootstrap.dcs.retry_timeout_ms, 200);
    assert_int_equal(c.bootstrap.dcs.member_slots_ttl_ms, 86400000);
    assert_int_equal(c.bootstrap.dcs.synchronous_mode, CFG_SYNC_ON);
    assert_true(c.bootstrap.dcs.check_timeline);
    assert_true(c.bootstrap.dcs.synchronous_mode_strict);
    assert_int_equal(c.bootstrap.dcs.maximum_lag_on_failover, 16384);
    assert_false(c.tags.nosync);
    cfg_free(&c);
}

/* ---------- environment ---------- */

static void test_env_overrides(void **state)
{
    (void)state;
    struct cfg c;
    struct cfg_error e;
    /* the environment supplies the required keys, and overrides the file */
    setenv("PGWARDEN_RAFT_SELF_ADDR", "10.1.0.1:6000", 1);
    setenv("PGWARDEN_RAFT_DATA_DIR", "/env/raft", 1);
    setenv("PGWARDEN_RAFT_PARTNER_ADDRS", "10.1.0.2:6000, 10.1.0.3:6000", 1);
    setenv("PGWARDEN_NAME", "envnode", 1);
    setenv("PGWARDEN_RESTAPI_LISTEN", "127.0.0.1:9000", 1);
    setenv("PGWARDEN_RESTAPI_USERNAME", "u", 1);
    setenv("PGWARDEN_RESTAPI_PASSWORD", "p", 1);
    setenv("PGWARDEN_POSTGRESQL_LISTEN", "127.0.0.1:6432", 1);
    setenv("PGWARDEN_POSTGRESQL_DATA_DIR", "/env/pg", 1);
    setenv("PGWARDEN_SUPERUSER_PASSWORD", "supw", 1);
    setenv("PGWARDEN_REPLICATION_USERNAME", "repl", 1);
    setenv("PGWARDEN_LOG_LEVEL", "warning", 1);
    setenv("PGWARDEN_LOG_FORMAT", "json", 1);
    setenv("PGWARDEN_LOG_DIR", "/env/log", 1);
    setenv("PGWARDEN_CTL_USERNAME", "ctl", 1);
    setenv("PGWARDEN_SCOPE", "", 1); /* empty = not set: the file's value stays */
    if (load("scope: demo\nname: filenode\nlog:\n  level: debug\n", &c, &e, NULL) != 0)
        fail_msg("%s", e.msg);
    assert_string_equal(c.scope, "demo");
    assert_string_equal(c.name, "envnode");
    assert_string_equal(c.raft.self_addr, "10.1.0.1:6000");
    assert_string_equal(c.raft.data_dir, "/env/raft");
    assert_true(list_is(&c.raft.partner_addrs, 2, "10.1.0.2:6000", "10.1.0.3:6000"));
    assert_string_equal(c.restapi.listen.host, "127.0.0.1");
    assert_int_equal(c.restapi.listen.port, 9000);
    assert_string_equal(c.restapi.connect_address.host, "127.0.0.1");
    assert_string_equal(c.restapi.auth_username, "u");
    assert_string_equal(c.restapi.auth_password, "p");
    assert_string_equal(c.ctl.auth_username, "ctl");
    assert_string_equal(c.ctl.auth_password, "p"); /* falls back to restapi's */
    assert_true(c.postgresql.present);              /* made a PostgreSQL node by the env */
    assert_false(c.witness);
    assert_int_equal(c.postgresql.listen.port, 6432);
    assert_string_equal(c.postgresql.data_dir, "/env/pg");
    assert_string_equal(c.postgresql.superuser.password, "supw");
    assert_string_equal(c.postgresql.replication.username, "repl");
    assert_int_equal(c.log.level, LOGL_WARN);
    assert_int_equal(c.log.format, LOGF_JSON);
    assert_string_equal(c.log.dir, "/env/log");
    cfg_free(&c);
    clear_env();

    /* every documented variable reaches its key */
    const struct {
        const char *var, *val;
    } all[] = {
        {"PGWARDEN_SCOPE", "s2"}, {"PGWARDEN_NAME", "n2"},
        {"PGWARDEN_RESTAPI_LISTEN", "0.0.0.0:8100"},
        {"PGWARDEN_RESTAPI_CONNECT_ADDRESS", "api.example.com:8100"},
        {"PGWARDEN_RESTAPI_USERNAME", "ru"}, {"PGWARDEN_RESTAPI_PASSWORD", "rp"},
        {"PGWARDEN_RAFT_SELF_ADDR", "10.0.0.5:5010"},
        {"PGWARDEN_RAFT_PARTNER_ADDRS", "10.0.0.6:5010"}, {"PGWARDEN_RAFT_DATA_DIR", "/rd"},
        {"PGWARDEN_RAFT_PASSWORD", "rpw"}, {"PGWARDEN_POSTGRESQL_LISTEN", "10.0.0.5:5433"},
        {"PGWARDEN_POSTGRESQL_CONNECT_ADDRESS", "db.example.com:5433"},
        {"PGWARDEN_POSTGRESQL_DATA_DIR", "/pd"}, {"PGWARDEN_POSTGRESQL_BIN_DIR", "/bin16"},
        {"PGWARDEN_POSTGRESQL_PGPASS", "/pgpass"}, {"PGWARDEN_SUPERUSER_USERNAME", "su"},
        {"PGWARDEN_SUPERUSER_PASSWORD", "sp"}, {"PGWARDEN_REPLICATION_USERNAME", "ru2"},
        {"PGWARDEN_REPLICATION_PASSWORD", "rp2"}, {"PGWARDEN_REWIND_USERNAME", "wu"},
        {"PGWARDEN_REWIND_PASSWORD", "wp"}, {"PGWARDEN_CTL_USERNAME", "cu"},
        {"PGWARDEN_CTL_PASSWORD", "cp"}, {"PGWARDEN_LOG_LEVEL", "error"},
        {"PGWARDEN_LOG_FORMAT", "json"}, {"PGWARDEN_LOG_DIR", "/ld"},
    };
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        setenv(all[i].var, all[i].val, 1);
    if (load(BASE PG, &c, &e, NULL) != 0)
        fail_msg("%s", e.msg);
    assert_string_equal(c.scope, "s2");
    assert_string_equal(c.name, "n2");
    assert_int_equal(c.restapi.listen.port, 8100);
    assert_string_equal(c.restapi.connect_address.host, "api.example.com");
    assert_string_equal(c.restapi.auth_username, "ru");
    assert_string_equal(c.restapi.auth_password, "rp");
    assert_string_equal(c.raft.self_addr, "10.0.0.5:5010");
    assert_true(list_is(&c.raft.partner_addrs, 1, "10.0.0.6:5010"));
    assert_string_equal(c.raft.data_dir, "/rd");
    assert_string_equal(c.raft.password, "rpw");
    assert_string_equal(c.postgresql.listen.host, "10.0.0.5");
    assert_int_equal(c.postgresql.listen.port, 5433);
    assert_string_equal(c.postgresql.connect_address.host, "db.example.com");
    assert_string_equal(c.postgresql.data_dir, "/pd");
    assert_string_equal(c.postgresql.bin_dir, "/bin16");
    assert_string_equal(c.postgresql.pgpass, "/pgpass");
    assert_string_equal(c.postgresql.superuser.username, "su");
    assert_string_equal(c.postgresql.superuser.password, "sp");
    assert_string_equal(c.postgresql.replication.username, "ru2");
    assert_string_equal(c.postgresql.replication.password, "rp2");
    assert_string_equal(c.postgresql.rewind.username, "wu");
    assert_string_equal(c.postgresql.rewind.password, "wp");
    assert_string_equal(c.ctl.auth_username, "cu");
    assert_string_equal(c.ctl.auth_password, "cp");
    assert_int_equal(c.log.level, LOGL_ERROR);
    assert_int_equal(c.log.format, LOGF_JSON);
    assert_string_equal(c.log.dir, "/ld");
    cfg_free(&c);
    clear_env();
}

/* A Patroni unit's environment means the same to pgwarden: PATRONI_<name>
 * for each PGWARDEN_<name>; both set must agree; any other PATRONI_*
 * variable is named in a warning. */
static void test_env_patroni_names(void **state)
{
    (void)state;
    struct cfg c;
    struct cfg_error e;
    struct cfg_warnings w = {0};
    clear_env();
    setenv("PATRONI_NAME", "pnode", 1);
    setenv("PATRONI_SUPERUSER_PASSWORD", "from-patroni-env", 1);
    setenv("PATRONI_RESTAPI_LISTEN", "127.0.0.1:8123", 1);
    setenv("PATRONI_SCOPE", "same", 1);
    setenv("PGWARDEN_SCOPE", "same", 1);
    setenv("PATRONI_ETCD3_HOSTS", "10.0.0.1:2379", 1);
    setenv("PATRONI_RAFT_PARTNER_ADDRS", "'10.0.0.7:5010','10.0.0.8:5010'", 1);
    setenv("PATRONI_LOG_TYPE", "json", 1);
    setenv("PATRONI_LOG_FORMAT", "%(asctime)s %(message)s", 1);
    if (load(BASE PG, &c, &e, &w) != 0)
        fail_msg("%s", e.msg);
    assert_true(list_is(&c.raft.partner_addrs, 2, "10.0.0.7:5010", "10.0.0.8:5010"));
    assert_int_equal(c.log.format, LOGF_JSON);
    assert_string_equal(c.name, "pnode");
    assert_string_equal(c.scope, "same");
    assert_string_equal(c.postgresql.superuser.password, "from-patroni-env");
    assert_int_equal(c.restapi.listen.port, 8123);
    bool warned = false, fmt_warned = false;
    for (size_t i = 0; i < w.n; i++) {
        assert_null(strstr(w.items[i], "PATRONI_NAME"));
        warned = warned || strstr(w.items[i], "PATRONI_ETCD3_HOSTS: not read by pgwarden") != NULL;
        fmt_warned = fmt_warned || strstr(w.items[i], "PATRONI_LOG_FORMAT: not read") != NULL;
    }
    assert_true(warned);
    assert_true(fmt_warned);
    cfg_free(&c);
    cfg_warnings_free(&w);
    clear_env();

    setenv("PATRONI_NAME", "a", 1);
    setenv("PGWARDEN_NAME", "b", 1);
    assert_int_equal(load(BASE PG, &c, &e, NULL), PGW_EINVAL);
    assert_string_equal(e.msg, "PGWARDEN_NAME: disagrees with PATRONI_NAME, which sets name too: "
                               "unset one of them");
    clear_env();

    setenv("PATRONI_RAFT_SELF_ADDR", "x", 1);
    assert_int_equal(load(BASE PG, &c, &e, NULL), PGW_EINVAL);
    assert_non_null(strstr(e.msg, "PATRONI_RAFT_SELF_ADDR: expected a.b.c.d:port"));
    clear_env();
}

static void expect_env_err(const char *var, const char *val, const char *msg)
{
    struct cfg c;
    struct cfg_error e;
    clear_env();
    setenv(var, val, 1);
    assert_int_equal(load(BASE PG, &c, &e, NULL), PGW_EINVAL);
    assert_string_equal(e.msg, msg);
    assert_int_equal(e.line, 0);
    assert_null(c.scope);
    clear_env();
}

static void test_env_errors(void **state)
{
    (void)state;
    expect_env_err("PGWARDEN_RAFT_SELF_ADDR", "x",
                   "PGWARDEN_RAFT_SELF_ADDR: expected a.b.c.d:port, got \"x\" (a host name is not "
                   "accepted: libraft accepts only IPv4 addresses)");
    expect_env_err("PGWARDEN_RAFT_PARTNER_ADDRS", "10.0.0.2:5010,,10.0.0.3:5010",
                   "PGWARDEN_RAFT_PARTNER_ADDRS[1]: expected a.b.c.d:port, got nothing");
    expect_env_err("PGWARDEN_RAFT_PARTNER_ADDRS", "10.0.0.2:5010,10.0.0.1:5010",
                   "PGWARDEN_RAFT_PARTNER_ADDRS[1]: lists this node's own raft.self_addr "
                   "10.0.0.1:5010; partner_addrs must name only the other nodes");
    expect_env_err("PGWARDEN_NAME", "bad name", "PGWARDEN_NAME: expected 1 to 63 characters from "
                   "A-Z, a-z, 0-9, '_', '.' and '-', got \"bad name\"");
    expect_env_err("PGWARDEN_POSTGRESQL_LISTEN", "6432",
                   "PGWARDEN_POSTGRESQL_LISTEN: expected host:port, got \"6432\"");
    expect_env_err("PGWARDEN_LOG_LEVEL", "loud", "PGWARDEN_LOG_LEVEL: expected debug, info, "
                   "warning, error or critical, got \"loud\"");
}

/* ---------- diff ---------- */

struct lines {
    char items[32][512];
    size_t n;
};

static void collect(const char *line, void *ctx)
{
    struct lines *l = ctx;
    assert_true(l->n < 32);
    snprintf(l->items[l->n++], sizeof l->items[0], "%s", line);
}

static void test_diff(void **state)
{
    (void)state;
    struct cfg a, b;
    struct cfg_error e;
    const char *ya = BASE PG "restapi:\n  authentication: {username: admin, password: s3cret}\n"
                     "  allowlist: [10.0.0.0/8]\n"
                     "bootstrap:\n  dcs:\n    loop_wait: 0.5\n"
                     "    postgresql:\n      parameters: {work_mem: 4MB, old: 1}\n"
                     "tags:\n  zone: a\n";
    const char *yb = BASE PG "restapi:\n  authentication: {username: admin, password: n3w}\n"
                     "  allowlist: [10.0.0.0/8, 192.168.0.0/16]\n"
                     "bootstrap:\n  dcs:\n    loop_wait: 0.25\n"
                     "    postgresql:\n      parameters: {work_mem: 8MB, new: on}\n"
                     "tags:\n  zone: b\n  rack: 1\nlog:\n  level: debug\n";
    if (load(ya, &a, &e, NULL) != 0 || load(yb, &b, &e, NULL) != 0)
        fail_msg("%s", e.msg);
    struct lines l = {.n = 0};
    size_t n = cfg_diff(&a, &b, collect, &l);
    const char *expect[] = {
        "restapi.authentication.password: (changed)",
        "restapi.allowlist: [10.0.0.0/8] -> [10.0.0.0/8, 192.168.0.0/16]",
        "ctl.authentication.password: (changed)",
        "bootstrap.dcs.loop_wait: 0.5 -> 0.25",
        "bootstrap.dcs.postgresql.parameters.work_mem: 4MB -> 8MB",
        "bootstrap.dcs.postgresql.parameters.old: 1 -> (unset)",
        "bootstrap.dcs.postgresql.parameters.new: (unset) -> on",
        "log.level: info -> debug",
        "tags.zone: a -> b",
        "tags.rack: (unset) -> 1",
    };
    assert_int_equal(n, sizeof expect / sizeof expect[0]);
    assert_int_equal(l.n, n);
    for (size_t i = 0; i < n; i++) {
        assert_string_equal(l.items[i], expect[i]);
        assert_null(strstr(l.items[i], "s3cret"));
        assert_null(strstr(l.items[i], "n3w"));
    }
    assert_int_equal(cfg_diff(&a, &a, collect, &l), 0);
    assert_int_equal(cfg_diff(&b, &a, NULL, NULL), n);
    cfg_free(&a);
    cfg_free(&b);
}

/* Secrets never appear in messages, even when the value is the problem. */
static void test_secrets_not_printed(void **state)
{
    (void)state;
    expect_err_at("scope: demo\nname: n1\nraft:\n  self_addr: 10.0.0.1:5010\n  data_dir: /r\n"
                  "  password: [hunter2]\n", 6, 13, "raft.password",
                  "expected a string, got a list");
    struct cfg c;
    struct cfg_error e;
    const char *y = BASE PG "restapi:\n  authentication:\n    username: u\n    password: [hunter2]\n";
    assert_int_equal(load(y, &c, &e, NULL), PGW_EINVAL);
    assert_string_equal(e.msg, "t.yml:12:15: restapi.authentication.password: expected a string, "
                               "got a list");
    y = BASE "postgresql:\n  listen: 10.0.0.1:5432\n  data_dir: /d\n  authentication:\n"
        "    superuser:\n      sslpassword: {x: hunter2}\n";
    assert_int_equal(load(y, &c, &e, NULL), PGW_EINVAL);
    assert_null(strstr(e.msg, "hunter2"));
    assert_non_null(strstr(e.msg, "got a mapping"));
}

/* ---------- the key table and the reference ---------- */

static void test_table(void **state)
{
    (void)state;
    struct cfg c;
    memset(&c, 0, sizeof c);
    for (size_t i = 0; i < cfg__nkeys; i++) {
        const struct cfg_key *k = &cfg__keys[i];
        assert_non_null(k->path);
        if (k->type == KT_SECTION)
            continue;
        if (k->doc == NULL || k->doc[0] == '\0')
            fail_msg("%s has no documentation", k->path);
        if (k->def != NULL &&
            cfg__apply_default(k, cfg__field(k, &c, &c.bootstrap.dcs)) != 0)
            fail_msg("default of %s (%s) does not parse", k->path, k->def);
        /* every key sits in a section that the table knows */
        const char *dot = strrchr(k->path, '.');
        if (dot != NULL) {
            char parent[256];
            snprintf(parent, sizeof parent, "%.*s", (int)(dot - k->path), k->path);
            const struct cfg_key *p = cfg__key_find(parent);
            if (p == NULL || p->type != KT_SECTION)
                fail_msg("%s: parent %s is not a section", k->path, parent);
        }
        for (size_t j = 0; j < i; j++)
            if (strcmp(cfg__keys[j].path, k->path) == 0)
                fail_msg("%s is in the table twice", k->path);
    }
    cfg_free(&c);
}

static void test_reference_matches_docs(void **state)
{
    (void)state;
    char *gen = NULL;
    size_t genlen = 0;
    FILE *f = open_memstream(&gen, &genlen);
    assert_non_null(f);
    cfg_print_reference(f);
    fclose(f);
    /* every key and every variable is documented */
    for (size_t i = 0; i < cfg__nkeys; i++) {
        char needle[300];
        if (cfg__keys[i].type == KT_SECTION)
            continue;
        snprintf(needle, sizeof needle, "| `%s`", cfg__keys[i].path);
        if (strstr(gen, needle) == NULL)
            fail_msg("%s missing from the reference", cfg__keys[i].path);
    }
    char *path = data_path("../../../docs/configuration.md");
    size_t doclen = 0;
    FILE *df = fopen(path, "rb");
    char *doc = df ? (fclose(df), slurp(path, &doclen)) : NULL;
    bool same = doc != NULL && doclen == genlen && memcmp(doc, gen, genlen) == 0;
    free(doc);
    free(path);
    free(gen);
    if (!same)
        fail_msg("docs/configuration.md differs from cfg_print_reference's output (the key table "
                 "in common/cfg_schema.c). Regenerate it with:\n"
                 "    pgwarden validate --print-reference > docs/configuration.md");
}

/* Patroni's rewind_credentials: without postgresql.authentication.rewind,
 * pg_rewind connects as the superuser; a rewind section needs a username. */
static void test_rewind_section(void **state)
{
    (void)state;
    struct cfg c;
    struct cfg_error e;
    /* absent, or written without a value: no rewind user */
    const char *absent[] = {
        BASE PG,
        BASE PG "  authentication:\n    superuser: {username: admin, password: s}\n",
        BASE PG "  authentication:\n    rewind:\n",
    };
    for (size_t i = 0; i < sizeof absent / sizeof absent[0]; i++) {
        if (load(absent[i], &c, &e, NULL) != 0)
            fail_msg("%s", e.msg);
        assert_null(c.postgresql.rewind.username);
        assert_null(c.postgresql.rewind.password);
        cfg_free(&c);
    }
    /* given: kept as written, even when it names the superuser */
    if (load(BASE PG "  authentication:\n    rewind: {username: postgres}\n", &c, &e, NULL) != 0)
        fail_msg("%s", e.msg);
    assert_string_equal(c.postgresql.rewind.username, "postgres");
    assert_null(c.postgresql.rewind.password);
    cfg_free(&c);
    /* given without a username: refused where it was written */
    const char *why = "a rewind section needs postgresql.authentication.rewind.username";
    expect_err_at(BASE PG "  authentication:\n    rewind:\n      password: x\n", 11, 17,
                  "postgresql.authentication.rewind.password", why);
    expect_err_at(BASE PG "  authentication:\n    rewind: {sslmode: require}\n", 10, 23,
                  "postgresql.authentication.rewind.sslmode", why);
    expect_err_at(BASE PG "  authentication:\n    rewind: {}\n", 10, 13,
                  "postgresql.authentication.rewind", why);
    expect_err_at(BASE PG "  authentication:\n    rewind: {username: ''}\n", 10, 24,
                  "postgresql.authentication.rewind.username", why);
    /* the password alone from the environment: the variable is named */
    setenv("PGWARDEN_REWIND_PASSWORD", "from-env", 1);
    assert_int_equal(load(BASE PG, &c, &e, NULL), PGW_EINVAL);
    if (strncmp(e.msg, "PGWARDEN_REWIND_PASSWORD: ", 26) != 0 || strstr(e.msg, why) == NULL)
        fail_msg("got: %s", e.msg);
    assert_null(strstr(e.msg, "from-env"));
    /* with the user name from the environment too, it is a rewind section */
    setenv("PGWARDEN_REWIND_USERNAME", "rw", 1);
    if (load(BASE PG, &c, &e, NULL) != 0)
        fail_msg("%s", e.msg);
    assert_string_equal(c.postgresql.rewind.username, "rw");
    cfg_free(&c);
    clear_env();
    /* a witness ignores its postgresql section, rewind included */
    if (load(BASE "witness: true\n" PG "  authentication:\n    rewind: {password: x}\n", &c, &e,
             NULL) != 0)
        fail_msg("%s", e.msg);
    assert_true(c.witness);
    cfg_free(&c);
}

/* Relative paths are resolved against the working directory when the file
 * is read (Patroni's example postgres0.yml has data_dir: data/postgresql0),
 * so validate and run agree; absolute ones only lose trailing slashes. */
static void test_relative_paths(void **state)
{
    (void)state;
    char saved[4096], dir[] = "/tmp/pgw-test-cfg-cwd-XXXXXX", cwd[4096], want[4200];
    assert_non_null(getcwd(saved, sizeof saved));
    assert_non_null(mkdtemp(dir));
    assert_int_equal(chdir(dir), 0);
    assert_non_null(getcwd(cwd, sizeof cwd)); /* /tmp may be a symbolic link */
    struct cfg c;
    struct cfg_error e;
    const char *y = "scope: demo\nname: node1\n"
                    "raft:\n  self_addr: 10.0.0.1:5010\n  data_dir: raft\n"
                    "  certfile: tls/raft.pem\n  keyfile: tls/raft.key\n  cafile: ./tls/ca.pem\n"
                    "restapi:\n  certfile: tls/api.pem\n  keyfile: tls/api.key\n"
                    "ctl:\n  cacert: ca.pem\n"
                    "postgresql:\n  listen: 10.0.0.1:5432\n  data_dir: data/postgresql0/\n"
                    "  bin_dir: /usr/lib/postgresql/16/bin/\n  config_dir: ./etc//\n"
                    "  authentication:\n    replication: {username: r, sslrootcert: ../ca.pem}\n"
                    "  callbacks: {on_start: bin/hook.sh}\n"
                    "watchdog: {device: dev/wd}\n"
                    "log: {dir: .}\n";
    if (load(y, &c, &e, NULL) != 0)
        fail_msg("%s", e.msg);
    const struct {
        const char *got, *rel;
    } paths[] = {
        {c.raft.data_dir, "raft"},
        {c.raft.certfile, "tls/raft.pem"},
        {c.raft.keyfile, "tls/raft.key"},
        {c.raft.cafile, "tls/ca.pem"},
        {c.restapi.certfile, "tls/api.pem"},
        {c.restapi.keyfile, "tls/api.key"},
        {c.ctl.cacert, "ca.pem"},
        {c.postgresql.data_dir, "data/postgresql0"},
        {c.postgresql.config_dir, "etc"},
        {c.postgresql.pgpass, "raft/pgpass"}, /* the default, from the resolved raft.data_dir */
        {c.postgresql.replication.sslrootcert, "../ca.pem"},
        {c.watchdog.device, "dev/wd"},
        {c.log.dir, ""},
    };
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        snprintf(want, sizeof want, "%s%s%s", cwd, paths[i].rel[0] ? "/" : "", paths[i].rel);
        assert_non_null(paths[i].got);
        if (strcmp(paths[i].got, want) != 0)
            fail_msg("%s: got %s, want %s", paths[i].rel, paths[i].got, want);
    }
    assert_string_equal(c.postgresql.bin_dir, "/usr/lib/postgresql/16/bin");
    assert_string_equal(c.postgresql.callbacks.on_start, "bin/hook.sh"); /* a command */
    cfg_free(&c);

    /* config_dir defaults to the resolved data_dir; the environment's values too */
    setenv("PGWARDEN_POSTGRESQL_PGPASS", "secrets/pgpass", 1);
    setenv("PGWARDEN_RAFT_DATA_DIR", "./r2", 1);
    if (load(BASE "postgresql:\n  listen: 10.0.0.1:5432\n  data_dir: pg\n", &c, &e, NULL) != 0)
        fail_msg("%s", e.msg);
    snprintf(want, sizeof want, "%s/pg", cwd);
    assert_string_equal(c.postgresql.data_dir, want);
    assert_string_equal(c.postgresql.config_dir, want);
    snprintf(want, sizeof want, "%s/secrets/pgpass", cwd);
    assert_string_equal(c.postgresql.pgpass, want);
    snprintf(want, sizeof want, "%s/r2", cwd);
    assert_string_equal(c.raft.data_dir, want);
    cfg_free(&c);
    clear_env();

    /* absolute: as written, less trailing slashes; the root stays "/" */
    if (load("scope: demo\nname: n1\nraft:\n  self_addr: 10.0.0.1:5010\n  data_dir: /r//\n"
             "log: {dir: /}\n", &c, &e, NULL) != 0)
        fail_msg("%s", e.msg);
    assert_string_equal(c.raft.data_dir, "/r");
    assert_string_equal(c.log.dir, "/");
    cfg_free(&c);

    /* the same file read from another directory names other paths */
    assert_int_equal(chdir("/"), 0);
    if (load(BASE PG "  config_dir: etc\n", &c, &e, NULL) != 0)
        fail_msg("%s", e.msg);
    assert_string_equal(c.postgresql.config_dir, "/etc");
    cfg_free(&c);

    assert_int_equal(chdir(saved), 0);
    assert_int_equal(rmdir(dir), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_full_config, setup),
        cmocka_unit_test_setup(test_minimal_defaults, setup),
        cmocka_unit_test_setup(test_witness, setup),
        cmocka_unit_test_setup(test_fixture_dirs, setup),
        cmocka_unit_test_setup(test_bad_types, setup),
        cmocka_unit_test_setup(test_bad_addresses, setup),
        cmocka_unit_test_setup(test_good_addresses, setup),
        cmocka_unit_test_setup(test_timing_rule, setup),
        cmocka_unit_test_setup(test_structure_errors, setup),
        cmocka_unit_test_setup(test_empty_and_not_mapping, setup),
        cmocka_unit_test_setup(test_syntax_errors, setup),
        cmocka_unit_test_setup(test_non_utf8, setup),
        cmocka_unit_test_setup(test_size_limits, setup),
        cmocka_unit_test_setup(test_node_limits, setup),
        cmocka_unit_test_setup(test_required, setup),
        cmocka_unit_test_setup(test_names, setup),
        cmocka_unit_test_setup(test_forbidden_options, setup),
        cmocka_unit_test_setup(test_unknown_key_warnings, setup),
        cmocka_unit_test_setup(test_null_values_keep_defaults, setup),
        cmocka_unit_test_setup(test_env_overrides, setup),
        cmocka_unit_test_setup(test_env_errors, setup),
        cmocka_unit_test_setup(test_env_patroni_names, setup),
        cmocka_unit_test_setup(test_rewind_section, setup),
        cmocka_unit_test_setup(test_relative_paths, setup),
        cmocka_unit_test_setup(test_diff, setup),
        cmocka_unit_test_setup(test_secrets_not_printed, setup),
        cmocka_unit_test_setup(test_table, setup),
        cmocka_unit_test_setup(test_reference_matches_docs, setup),
    };
    return cmocka_run_group_tests_name("cfg", tests, NULL, NULL);
}
