/* pgwarden convert-patroni: write a pgwarden configuration from a Patroni
 * one (docs/runbooks.md, "Migrate from Patroni + etcd", step 1).
 *
 * The Patroni file is read with the configuration module's own YAML tree
 * (positions for the messages, PyYAML's scalar resolution for the values),
 * rewritten as JSON, written back as YAML and checked with cfg_load_buffer,
 * exactly as `pgwarden validate` would check it: what cannot be made valid is
 * reported, never written.
 *
 * Every key changed, removed or added is named on stderr, one line each, with
 * the reason: the lines are the operator's review list. What pgwarden would
 * only warn about (a key it does not know) is left in and its warning
 * repeated, so nothing disappears silently.
 *
 * Happy path: read -> parse -> [GET URL/cluster and URL/config] -> rewrite
 * -> check -> write (stdout, or OUT through a temp file and rename, mode 0600:
 * the file holds passwords).
 * Failure modes (exit 1, one message naming what was wrong): file missing or
 * unreadable, not YAML, not a mapping, no `name`/`scope` or one pgwarden
 * cannot take, the members URL unreachable or answering something other than
 * Patroni's /cluster, this node not among the members, a member whose host is
 * not an IPv4 address, a result that still fails the configuration check.
 * Usage errors exit 2. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <uv.h>

#include "cmd/cmd.h"
#include "common/cfg.h"
#include "common/cidr.h"
#include "common/httpc.h"
#include "common/jsonyaml.h"
#include "common/yaml_tree.h"

#define PROG "pgwarden convert-patroni"
#define FETCH_TIMEOUT_MS 5000u

struct conv {
    const char *file;  /* the Patroni file, for messages */
    struct ytree tree; /* where each key was, for messages */
    json_t *doc;       /* the document being rewritten */
    unsigned changes;
};

struct opts {
    const char *file, *members_from, *out, *raft_data_dir, *partners, *self_addr;
    unsigned raft_port;
};

/* --- messages ------------------------------------------------------------------ */

/* Line of `path` (dotted) in the Patroni file, 0 when it was not there. */
static int line_of(const struct conv *c, const char *path)
{
    const struct ynode *n = c->tree.root;
    int line = 0;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", path);
    char *save = NULL;
    for (char *part = strtok_r(buf, ".", &save); part != NULL; part = strtok_r(NULL, ".", &save)) {
        if (n == NULL || n->kind != YN_MAP)
            return 0;
        const struct ynode *next = NULL;
        for (size_t i = 0; i + 1 < n->n; i += 2) {
            if (n->items[i]->kind == YN_SCALAR && strcmp(n->items[i]->text, part) == 0) {
                line = n->items[i]->line;
                next = n->items[i + 1];
                break;
            }
        }
        if (next == NULL)
            return 0;
        n = next;
    }
    return line;
}

/* One line on stderr for one changed key: "<prog>: <file>:<line>: <key>: <what>". */
__attribute__((format(printf, 3, 4))) static void note(struct conv *c, const char *path,
                                                        const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    int line = line_of(c, path);
    if (line > 0)
        fprintf(stderr, "%s: %s:%d: %s: %s\n", PROG, c->file, line, path, msg);
    else
        fprintf(stderr, "%s: %s: %s: %s\n", PROG, c->file, path, msg);
    c->changes++;
}

/* --- JSON by dotted path ------------------------------------------------------- */

static json_t *jget(json_t *root, const char *path)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s", path);
    json_t *v = root;
    char *save = NULL;
    for (char *part = strtok_r(buf, ".", &save); part != NULL; part = strtok_r(NULL, ".", &save)) {
        if (!json_is_object(v))
            return NULL;
        v = json_object_get(v, part);
    }
    return v;
}

/* The parent object of path and the last key; NULL if the parent is missing. */
static json_t *jparent(json_t *root, const char *path, const char **last)
{
    const char *dot = strrchr(path, '.');
    *last = dot != NULL ? dot + 1 : path;
    if (dot == NULL)
        return root;
    char buf[256];
    snprintf(buf, sizeof buf, "%.*s", (int)(dot - path), path);
    json_t *p = jget(root, buf);
    return json_is_object(p) ? p : NULL;
}

static bool jdel(json_t *root, const char *path)
{
    const char *last;
    json_t *p = jparent(root, path, &last);
    return p != NULL && json_object_del(p, last) == 0;
}

static const char *jstr(json_t *root, const char *path)
{
    return json_string_value(jget(root, path));
}

/* A number of seconds as Patroni takes it (a number or a numeric string). */
static bool jseconds(json_t *v, double *out)
{
    if (json_is_number(v)) {
        *out = json_number_value(v);
        return true;
    }
    const char *s = json_string_value(v);
    if (s == NULL || *s == '\0')
        return false;
    char *end;
    errno = 0;
    double d = strtod(s, &end);
    if (errno != 0 || *end != '\0')
        return false;
    *out = d;
    return true;
}

/* --- the members of the running Patroni cluster ---------------------------------- */

struct fetch {
    bool done;
    int status, http_status;
    char *body;
    char error[384];
};

static void on_fetched(const struct httpc_response *resp, void *ctx)
{
    struct fetch *f = ctx;
    f->done = true;
    f->status = resp->status;
    f->http_status = resp->http_status;
    if (resp->status != 0) {
        snprintf(f->error, sizeof f->error, "%s", resp->error);
        return;
    }
    f->body = strndup(resp->body, resp->body_len);
    if (f->body == NULL) {
        f->status = PGW_ENOMEM;
        snprintf(f->error, sizeof f->error, "out of memory");
    }
}

/* GET url as a JSON object; NULL with the reason in why. */
static json_t *get_json(const char *url, char *why, size_t whylen)
{
    uv_loop_t loop;
    if (uv_loop_init(&loop) != 0) {
        snprintf(why, whylen, "cannot start an event loop");
        return NULL;
    }
    struct fetch f = {0};
    struct httpc_opts o = {.method = "GET", .url = url, .timeout_ms = FETCH_TIMEOUT_MS};
    char err[384] = "";
    json_t *j = NULL;
    if (httpc_request_start(&loop, &o, on_fetched, &f, NULL, err, sizeof err) != 0) {
        snprintf(why, whylen, "%s", err[0] ? err : "cannot start the request");
    } else {
        /* bounded: httpc calls back at the latest when its deadline passes */
        uv_run(&loop, UV_RUN_DEFAULT);
        if (!f.done)
            snprintf(why, whylen, "internal error: the request did not complete");
        else if (f.status != 0)
            snprintf(why, whylen, "%s", f.error);
        else if (f.http_status != 200)
            snprintf(why, whylen, "answered HTTP %d, expected 200", f.http_status);
        else {
            json_error_t je;
            j = json_loads(f.body, 0, &je);
            if (!json_is_object(j)) {
                snprintf(why, whylen, "the answer is not a JSON object%s%s",
                         j == NULL ? ": " : "", j == NULL ? je.text : "");
                json_decref(j);
                j = NULL;
            }
        }
    }
    free(f.body);
    uv_run(&loop, UV_RUN_DEFAULT); /* lets the request's closes finish */
    if (uv_loop_close(&loop) != 0 && j != NULL) {
        snprintf(why, whylen, "internal error: handles left open on the loop");
        json_decref(j);
        j = NULL;
    }
    return j;
}

static bool ipv4_host(const char *host)
{
    char h[64];
    uint16_t port;
    char probe[80];
    snprintf(probe, sizeof probe, "%s:1", host);
    return strlen(host) < 48 && cfg_parse_ipv4_addr(probe, h, sizeof h, &port) == 0;
}

/* raft.self_addr and raft.partner_addrs from GET <url>/cluster. */
static int raft_from_members(struct conv *c, const struct opts *o, const char *name, json_t *raft)
{
    char url[1024], why[512];
    size_t ul = strlen(o->members_from);
    while (ul > 0 && o->members_from[ul - 1] == '/')
        ul--;
    snprintf(url, sizeof url, "%.*s/cluster", (int)ul, o->members_from);
    json_t *cluster = get_json(url, why, sizeof why);
    if (cluster == NULL) {
        fprintf(stderr, "%s: --members-from: GET %s: %s\n", PROG, url, why);
        return -1;
    }
    json_t *members = json_object_get(cluster, "members");
    int rc = -1;
    json_t *partners = json_array();
    char self[64] = "";
    if (!json_is_array(members) || json_array_size(members) == 0) {
        fprintf(stderr, "%s: --members-from: GET %s: no \"members\" list in the answer "
                "(is this a Patroni REST API?)\n", PROG, url);
        goto done;
    }
    size_t i;
    json_t *m;
    json_array_foreach(members, i, m) {
        const char *mname = json_string_value(json_object_get(m, "name"));
        const char *host = json_string_value(json_object_get(m, "host"));
        if (mname == NULL || host == NULL) {
            fprintf(stderr, "%s: --members-from: GET %s: member %zu has no name or no host\n",
                    PROG, url, i + 1);
            goto done;
        }
        if (!ipv4_host(host)) {
            fprintf(stderr, "%s: --members-from: member %s has host \"%s\", not an IPv4 address: "
                    "pgwarden's Raft (libraft) takes a.b.c.d:port only; give --self-addr and "
                    "--partners instead\n", PROG, mname, host);
            goto done;
        }
        char addr[64];
        snprintf(addr, sizeof addr, "%s:%u", host, o->raft_port);
        if (strcmp(mname, name) == 0)
            snprintf(self, sizeof self, "%s", addr);
        else if (json_array_append_new(partners, json_string(addr)) != 0)
            goto done;
    }
    if (self[0] == '\0') {
        fprintf(stderr, "%s: --members-from: GET %s: no member is named \"%s\" (this file's name)\n",
                PROG, url, name);
        goto done;
    }
    if (o->self_addr != NULL)
        snprintf(self, sizeof self, "%s", o->self_addr);
    json_object_set_new(raft, "self_addr", json_string(self));
    json_object_set(raft, "partner_addrs", partners);
    note(c, "raft.partner_addrs", "added: the other members of %s (their host, Raft port %u)",
         url, o->raft_port);
    rc = 0;
done:
    json_decref(partners);
    json_decref(cluster);
    return rc;
}

/* bootstrap.dcs from GET <url>/config: the dynamic configuration Patroni
 * kept in the DCS, which is what the running cluster uses (the file's
 * bootstrap.dcs was read once, when Patroni founded the cluster). */
static int dcs_from_patroni(struct conv *c, const struct opts *o)
{
    char url[1024], why[512];
    size_t ul = strlen(o->members_from);
    while (ul > 0 && o->members_from[ul - 1] == '/')
        ul--;
    snprintf(url, sizeof url, "%.*s/config", (int)ul, o->members_from);
    json_t *dyn = get_json(url, why, sizeof why);
    if (dyn == NULL) {
        fprintf(stderr, "%s: --members-from: GET %s: %s\n", PROG, url, why);
        return -1;
    }
    json_t *boot = json_object_get(c->doc, "bootstrap");
    if (!json_is_object(boot)) {
        boot = json_object();
        json_object_set_new(c->doc, "bootstrap", boot);
    }
    json_object_set_new(boot, "dcs", dyn);
    note(c, "bootstrap.dcs", "replaced by the running cluster's dynamic configuration from %s "
         "(what Patroni kept in the DCS; pgwarden seeds its own from it)", url);
    return 0;
}

/* --- the rewrites -------------------------------------------------------------- */

static const char *const dcs_sections[] = {"etcd", "etcd3", "consul", "zookeeper", "exhibitor",
                                           "kubernetes", "raft"};

static bool ident_ok(const char *s)
{
    size_t n = strlen(s);
    if (n < 1 || n > 63)
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '_' || ch == '.' || ch == '-'))
            return false;
    }
    return true;
}

/* Options pgwarden passes itself (initdb, pg_basebackup): Patroni logs an
 * error and drops them, pgwarden refuses the file. */
static void drop_options(struct conv *c, const char *path, const char *const *refused, size_t nref,
                         const char *tool)
{
    json_t *v = jget(c->doc, path);
    if (json_is_array(v)) {
        for (size_t i = json_array_size(v); i-- > 0;) {
            json_t *item = json_array_get(v, i);
            const char *opt = json_string_value(item);
            if (json_is_object(item) && json_object_size(item) == 1)
                opt = json_object_iter_key(json_object_iter(item));
            for (size_t k = 0; opt != NULL && k < nref; k++) {
                if (strcmp(opt, refused[k]) == 0) {
                    note(c, path, "option %s removed: pgwarden sets it itself when it runs %s "
                         "(Patroni dropped it too)", opt, tool);
                    json_array_remove(v, i);
                    break;
                }
            }
        }
    } else if (json_is_object(v)) {
        for (size_t k = 0; k < nref; k++) {
            if (json_object_get(v, refused[k]) != NULL) {
                note(c, path, "option %s removed: pgwarden sets it itself when it runs %s "
                     "(Patroni dropped it too)", refused[k], tool);
                json_object_del(v, refused[k]);
            }
        }
    }
}

/* The parameters pgwarden derives from postgresql.listen. */
static void drop_listen_params(struct conv *c, const char *params_path)
{
    static const char *const own[] = {"port", "listen_addresses"};
    json_t *p = jget(c->doc, params_path);
    for (size_t i = 0; json_is_object(p) && i < 2; i++) {
        if (json_object_get(p, own[i]) != NULL) {
            char path[200];
            snprintf(path, sizeof path, "%s.%s", params_path, own[i]);
            note(c, path, "removed: pgwarden sets %s from postgresql.listen (Patroni overrode it "
                 "the same way)", own[i]);
            json_object_del(p, own[i]);
        }
    }
}

static void fix_dcs(struct conv *c)
{
    json_t *dcs = jget(c->doc, "bootstrap.dcs");
    if (!json_is_object(dcs))
        return;
    if (json_object_get(dcs, "pause") != NULL) {
        note(c, "bootstrap.dcs.pause", "removed: pgwarden cannot found a cluster paused; "
             "pause it with `pgwarden ctl pause` once it runs");
        json_object_del(dcs, "pause");
    }
    static const char *const legacy[][2] = {{"master_start_timeout", "primary_start_timeout"},
                                            {"master_stop_timeout", "primary_stop_timeout"}};
    for (size_t i = 0; i < 2; i++) {
        if (json_object_get(dcs, legacy[i][0]) && json_object_get(dcs, legacy[i][1])) {
            char path[96];
            snprintf(path, sizeof path, "bootstrap.dcs.%s", legacy[i][0]);
            note(c, path, "removed: %s is also set, and pgwarden takes one name only",
                 legacy[i][1]);
            json_object_del(dcs, legacy[i][0]);
        }
    }
    json_t *lag = json_object_get(dcs, "maximum_lag_on_syncnode");
    if (json_is_integer(lag) && json_integer_value(lag) < -1) {
        note(c, "bootstrap.dcs.maximum_lag_on_syncnode", "%lld became -1: Patroni reads any "
             "negative value as off, pgwarden only -1", (long long)json_integer_value(lag));
        json_object_set_new(dcs, "maximum_lag_on_syncnode", json_integer(-1));
    }
    drop_listen_params(c, "bootstrap.dcs.postgresql.parameters");

    /* Patroni's defaults where the keys are absent: ttl 30, loop_wait 10,
     * retry_timeout 10; pgwarden's are 2, 0.5, 0.75. */
    static const char *const timing[] = {"ttl", "loop_wait", "retry_timeout"};
    static const double patroni_def[] = {30, 10, 10}, pgw_def[] = {2, 0.5, 0.75};
    double v[3];
    bool all = true;
    for (size_t i = 0; i < 3; i++) {
        json_t *x = json_object_get(dcs, timing[i]);
        if (x == NULL) {
            char path[64];
            snprintf(path, sizeof path, "bootstrap.dcs.%s", timing[i]);
            note(c, path, "not set: pgwarden's default is %g s where Patroni's was %g s",
                 pgw_def[i], patroni_def[i]);
            v[i] = pgw_def[i];
        } else if (!jseconds(x, &v[i])) {
            all = false;
        }
    }
    if (all && v[1] + 2 * v[2] > v[0]) {
        double rt = (v[0] - v[1]) / 2;
        note(c, "bootstrap.dcs.retry_timeout", "%g became %g: pgwarden enforces loop_wait + "
             "2*retry_timeout <= ttl (%g + 2*%g > %g), where Patroni lowered the values silently",
             v[2], rt, v[1], v[2], v[0]);
        json_object_set_new(dcs, "retry_timeout", json_real(rt));
    }
}

static void fix_log(struct conv *c)
{
    const char *fmt = jstr(c->doc, "log.format");
    if (jget(c->doc, "log.format") != NULL && (fmt == NULL || (strcmp(fmt, "plain") != 0 &&
                                                             strcmp(fmt, "json") != 0))) {
        note(c, "log.format", "removed: a Patroni line format; pgwarden's lines have a fixed "
             "format (log.type: plain or json chooses it)");
        jdel(c->doc, "log.format");
    }
    const char *level = jstr(c->doc, "log.level");
    if (level != NULL && strcasecmp(level, "FATAL") == 0) {
        note(c, "log.level", "FATAL became CRITICAL (Python's other name for it)");
        json_object_set_new(jget(c->doc, "log"), "level", json_string("CRITICAL"));
    }
}

static void fix_restapi(struct conv *c)
{
    json_t *r = jget(c->doc, "restapi");
    if (!json_is_object(r))
        return;
    const char *listen = jstr(c->doc, "restapi.listen");
    if (listen != NULL && listen[0] == ':') {
        char v[80];
        snprintf(v, sizeof v, "0.0.0.0%s", listen);
        note(c, "restapi.listen", "\"%s\" became \"%s\": pgwarden wants the host written", listen, v);
        json_object_set_new(r, "listen", json_string(v));
    }
    const char *cert = jstr(c->doc, "restapi.certfile");
    if (cert != NULL && json_object_get(r, "keyfile") == NULL) {
        note(c, "restapi.keyfile", "added, the same file as restapi.certfile: pgwarden needs both "
             "named (Patroni read the key from the certificate file)");
        json_object_set_new(r, "keyfile", json_string(cert));
    }
    json_t *allow = json_object_get(r, "allowlist");
    for (size_t i = json_is_array(allow) ? json_array_size(allow) : 0; i-- > 0;) {
        const char *e = json_string_value(json_array_get(allow, i));
        if (e != NULL && !cidr_valid(e)) {
            note(c, "restapi.allowlist", "\"%s\" removed: pgwarden does not resolve host names "
                 "here (Patroni resolved it once, at start); write its address", e);
            json_array_remove(allow, i);
        }
    }
}

static void fix_tags(struct conv *c)
{
    json_t *tags = jget(c->doc, "tags");
    if (!json_is_object(tags))
        return;
    const char *key;
    json_t *v, *tmp;
    json_object_foreach_safe(tags, tmp, key, v) {
        char path[160];
        snprintf(path, sizeof path, "tags.%s", key);
        if (strcmp(key, "nostream") == 0 && json_is_true(v)) {
            note(c, path, "removed: pgwarden streams every replica (Patroni's would only restore "
                 "from the WAL archive); this node will stream from the primary");
            json_object_del(tags, key);
        } else if (json_is_array(v) || json_is_object(v)) {
            note(c, path, "removed: a tag value must be a string, number or boolean in pgwarden");
            json_object_del(tags, key);
        }
    }
}

static void fix_watchdog(struct conv *c)
{
    json_t *wd = jget(c->doc, "watchdog");
    if (wd == NULL) {
        note(c, "watchdog", "not set: Patroni used /dev/watchdog when it existed (mode automatic); "
             "pgwarden's default is off");
        return;
    }
    if (!json_is_object(wd))
        return;
    json_t *m = json_object_get(wd, "mode");
    const char *mode = json_string_value(m);
    const char *to = NULL;
    if (json_is_false(m))
        to = "off";
    else if (mode != NULL && (strcasecmp(mode, "auto") == 0 || strcasecmp(mode, "Automatic") == 0))
        to = strcmp(mode, "automatic") == 0 ? NULL : "automatic";
    else if (mode != NULL && (strcasecmp(mode, "require") == 0 || strcasecmp(mode, "required") == 0))
        to = strcmp(mode, "required") == 0 ? NULL : "required";
    else if (mode != NULL && strcmp(mode, "off") != 0)
        to = "off"; /* Patroni disables the watchdog for anything it does not know */
    else if (m != NULL && mode == NULL && !json_is_false(m))
        to = "off";
    if (to != NULL) {
        note(c, "watchdog.mode", "became %s, the mode Patroni read it as", to);
        json_object_set_new(wd, "mode", json_string(to));
        mode = to;
    }
    if (mode == NULL || strcmp(mode, "off") == 0)
        return;
    double ttl = 2, margin = 5;
    (void)jseconds(jget(c->doc, "bootstrap.dcs.ttl"), &ttl);
    json_t *sm = json_object_get(wd, "safety_margin");
    if (sm != NULL && !jseconds(sm, &margin))
        return;
    if (margin != -1 && ttl - margin <= 0) {
        note(c, "watchdog.safety_margin", "became -1 (ttl/2): ttl %g - safety_margin %g leaves "
             "the watchdog no time", ttl, margin);
        json_object_set_new(wd, "safety_margin", json_integer(-1));
    }
}

/* bootstrap.<method> and postgresql.<method>: the parameters pgwarden passes
 * itself are dropped unless no_params, as Patroni drops them. */
static void fix_method(struct conv *c, const char *section, const char *name,
                       const char *const *own, size_t nown)
{
    char path[200];
    snprintf(path, sizeof path, "%s.%s", section, name);
    json_t *m = jget(c->doc, path);
    if (!json_is_object(m) || json_is_true(json_object_get(m, "no_params")))
        return;
    for (size_t i = 0; i < nown; i++) {
        if (json_object_get(m, own[i]) != NULL) {
            char kp[240];
            snprintf(kp, sizeof kp, "%s.%s", path, own[i]);
            note(c, kp, "removed: pgwarden passes --%s itself (Patroni dropped it silently)", own[i]);
            json_object_del(m, own[i]);
        }
    }
}

static void fix_postgresql(struct conv *c)
{
    json_t *pg = jget(c->doc, "postgresql");
    if (!json_is_object(pg))
        return;
    drop_listen_params(c, "postgresql.parameters");
    static const char *const bb_own[] = {"pgdata", "format", "wal-method", "xlog-method", "gzip",
                                         "version", "dbname", "host", "port", "username",
                                         "password", "compress"};
    drop_options(c, "postgresql.basebackup", bb_own, sizeof bb_own / sizeof bb_own[0],
                 "pg_basebackup");
    json_t *rewind = jget(c->doc, "postgresql.authentication.rewind");
    if (json_is_object(rewind) && json_object_get(rewind, "username") == NULL) {
        note(c, "postgresql.authentication.rewind", "removed: it names no username; without the "
             "section pg_rewind connects as the superuser, as Patroni did");
        jdel(c->doc, "postgresql.authentication.rewind");
    }
    if (json_object_get(pg, "create_replica_method") != NULL &&
        json_object_get(pg, "create_replica_methods") == NULL) {
        note(c, "postgresql.create_replica_method", "renamed create_replica_methods (pgwarden "
             "reads the plural only)");
        json_object_set(pg, "create_replica_methods", json_object_get(pg, "create_replica_method"));
        json_object_del(pg, "create_replica_method");
    }
    static const char *const rep_own[] = {"scope", "datadir", "role", "connstring"};
    json_t *methods = json_object_get(pg, "create_replica_methods");
    size_t i;
    json_t *mv;
    json_array_foreach(methods, i, mv) {
        const char *m = json_string_value(mv);
        if (m != NULL && strcmp(m, "basebackup") != 0)
            fix_method(c, "postgresql", m, rep_own, 4);
    }
    if (json_is_true(json_object_get(pg, "use_unix_socket_repl")))
        note(c, "postgresql.use_unix_socket_repl", "removed: pgwarden refuses true (it makes no "
             "replication connection to its local PostgreSQL, Patroni's only use of it)");
    if (json_object_get(pg, "use_unix_socket_repl") != NULL)
        json_object_del(pg, "use_unix_socket_repl");
    const char *bin = json_string_value(json_object_get(pg, "bin_dir"));
    const char *data = json_string_value(json_object_get(pg, "data_dir"));
    if ((bin == NULL || *bin == '\0') && data != NULL) {
        char p[4096], ver[16] = "";
        snprintf(p, sizeof p, "%s/PG_VERSION", data);
        FILE *f = fopen(p, "r");
        if (f != NULL) {
            if (fgets(ver, sizeof ver, f) == NULL)
                ver[0] = '\0';
            fclose(f);
        }
        ver[strcspn(ver, "\n")] = '\0';
        struct stat st;
        snprintf(p, sizeof p, "/usr/lib/postgresql/%s/bin", ver);
        if (ver[0] != '\0' && strchr(ver, '/') == NULL && stat(p, &st) == 0 && S_ISDIR(st.st_mode)) {
            note(c, "postgresql.bin_dir", "set to %s (the data directory is PostgreSQL %s's): "
                 "Patroni searched PATH, pgwarden would take PostgreSQL 15's", p, ver);
            json_object_set_new(pg, "bin_dir", json_string(p));
        } else {
            note(c, "postgresql.bin_dir", "not set: Patroni searched PATH, pgwarden takes "
                 "/usr/lib/postgresql/15/bin; set it if the data directory is another version's");
        }
    }
}

static void fix_bootstrap(struct conv *c)
{
    if (jget(c->doc, "bootstrap.users") != NULL) {
        note(c, "bootstrap.users", "removed: used only when a new cluster is bootstrapped, "
             "irrelevant for a cluster that already runs (and its passwords stay out of the "
             "file)");
        jdel(c->doc, "bootstrap.users");
    }
    static const char *const initdb_own[] = {"pgdata", "nosync", "pwfile", "sync-only", "version",
                                             "username"};
    drop_options(c, "bootstrap.initdb", initdb_own, sizeof initdb_own / sizeof initdb_own[0],
                 "initdb");
    const char *method = jstr(c->doc, "bootstrap.method");
    static const char *const boot_own[] = {"scope", "datadir"};
    if (method != NULL && strcmp(method, "initdb") != 0)
        fix_method(c, "bootstrap", method, boot_own, 2);
}

/* --- raft ----------------------------------------------------------------------- */

static int add_raft(struct conv *c, const struct opts *o, const char *name)
{
    json_t *raft = json_object();
    if (o->members_from != NULL) {
        if (raft_from_members(c, o, name, raft) != 0) {
            json_decref(raft);
            return -1;
        }
    } else {
        const char *self = o->self_addr;
        char buf[64];
        if (self == NULL) {
            /* the host this node is reached at, from its own connect addresses */
            const char *ca = jstr(c->doc, "postgresql.connect_address");
            if (ca == NULL)
                ca = jstr(c->doc, "restapi.connect_address");
            const char *colon = ca != NULL ? strrchr(ca, ':') : NULL;
            char host[64];
            if (colon != NULL && (size_t)(colon - ca) < sizeof host) {
                snprintf(host, sizeof host, "%.*s", (int)(colon - ca), ca);
                if (ipv4_host(host)) {
                    snprintf(buf, sizeof buf, "%s:%u", host, o->raft_port);
                    self = buf;
                }
            }
        }
        if (self == NULL) {
            fprintf(stderr, "%s: %s: no IPv4 address for raft.self_addr in "
                    "postgresql.connect_address or restapi.connect_address: give --self-addr "
                    "a.b.c.d:port or --members-from URL\n", PROG, c->file);
            json_decref(raft);
            return -1;
        }
        if (o->partners == NULL) {
            fprintf(stderr, "%s: which are the other nodes? give --members-from URL (a Patroni "
                    "node's REST API) or --partners a.b.c.d:port,...\n", PROG);
            json_decref(raft);
            return -1;
        }
        json_t *list = json_array();
        char tmp[1024];
        snprintf(tmp, sizeof tmp, "%s", o->partners);
        char *save = NULL;
        for (char *p = strtok_r(tmp, ",", &save); p != NULL; p = strtok_r(NULL, ",", &save))
            json_array_append_new(list, json_string(p));
        json_object_set_new(raft, "self_addr", json_string(self));
        json_object_set_new(raft, "partner_addrs", list);
    }
    char dir[4096];
    if (o->raft_data_dir != NULL) {
        snprintf(dir, sizeof dir, "%s", o->raft_data_dir);
    } else {
        const char *data = jstr(c->doc, "postgresql.data_dir");
        const char *slash = data != NULL ? strrchr(data, '/') : NULL;
        if (slash != NULL && slash != data)
            snprintf(dir, sizeof dir, "%.*s/pgwarden-raft", (int)(slash - data), data);
        else
            snprintf(dir, sizeof dir, "/var/lib/pgwarden/raft");
    }
    json_object_set_new(raft, "data_dir", json_string(dir));
    json_object_set_new(c->doc, "raft", raft);
    note(c, "raft", "added: self_addr %s, data_dir %s (a new, empty directory the postgres user "
         "can create)", json_string_value(json_object_get(raft, "self_addr")), dir);
    return 0;
}

/* --- output --------------------------------------------------------------------- */

static int write_out(const char *path, const char *text)
{
    if (path == NULL) {
        fputs(text, stdout);
        return fflush(stdout) == 0 ? 0 : -1;
    }
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        fprintf(stderr, "%s: -o %s: cannot create %s: %s\n", PROG, path, tmp, strerror(errno));
        return -1;
    }
    size_t len = strlen(text), off = 0;
    while (off < len) {
        ssize_t w = write(fd, text + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            fprintf(stderr, "%s: -o %s: cannot write: %s\n", PROG, path, strerror(errno));
            close(fd);
            unlink(tmp);
            return -1;
        }
        off += (size_t)w;
    }
    if (fsync(fd) != 0 || close(fd) != 0 || rename(tmp, path) != 0) {
        fprintf(stderr, "%s: -o %s: cannot write: %s\n", PROG, path, strerror(errno));
        unlink(tmp);
        return -1;
    }
    return 0;
}

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: pgwarden convert-patroni PATRONI_YML [--members-from URL] [-o OUT]\n"
            "\n"
            "Write a pgwarden configuration from a Patroni one: the DCS section (etcd,\n"
            "etcd3, consul, ...) becomes raft: {self_addr, partner_addrs, data_dir}, and\n"
            "whatever pgwarden would refuse is converted. Every key changed, removed or\n"
            "added is named on stderr with the reason. The result passes `pgwarden\n"
            "validate` or nothing is written (exit 1).\n"
            "\n"
            "Options:\n"
            "      --members-from URL  a Patroni node's REST API (http://10.0.0.11:8008):\n"
            "                          the Raft addresses are the members' hosts from\n"
            "                          GET URL/cluster, this node the member named as\n"
            "                          the file's name; bootstrap.dcs becomes the running\n"
            "                          dynamic configuration from GET URL/config\n"
            "      --raft-port N       the Raft port of every node (default 5010)\n"
            "      --partners LIST     without --members-from: the other nodes,\n"
            "                          a.b.c.d:port,a.b.c.d:port\n"
            "      --self-addr ADDR    this node's a.b.c.d:port (default: the host of\n"
            "                          postgresql.connect_address, the Raft port)\n"
            "      --raft-data-dir DIR (default: pgwarden-raft next to postgresql.data_dir)\n"
            "  -o, --output OUT        write OUT (mode 0600) instead of standard output\n"
            "  -h, --help              show this help\n");
}

static int parse_args(int argc, char **argv, struct opts *o)
{
    *o = (struct opts){.raft_port = 5010};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char **dst = NULL;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        }
        if (strcmp(a, "--members-from") == 0)
            dst = &o->members_from;
        else if (strcmp(a, "-o") == 0 || strcmp(a, "--output") == 0)
            dst = &o->out;
        else if (strcmp(a, "--raft-data-dir") == 0)
            dst = &o->raft_data_dir;
        else if (strcmp(a, "--partners") == 0)
            dst = &o->partners;
        else if (strcmp(a, "--self-addr") == 0)
            dst = &o->self_addr;
        if (dst != NULL || strcmp(a, "--raft-port") == 0) {
            if (i + 1 >= argc || argv[i + 1][0] == '\0') {
                fprintf(stderr, "%s: %s needs a value\n", PROG, a);
                return 2;
            }
            const char *v = argv[++i];
            if (dst != NULL) {
                *dst = v;
                continue;
            }
            char *end;
            errno = 0;
            unsigned long port = strtoul(v, &end, 10);
            if (errno != 0 || *end != '\0' || port < 1 || port > 65535 || v[0] == '-') {
                fprintf(stderr, "%s: --raft-port: expected a port 1..65535, got \"%s\"\n", PROG, v);
                return 2;
            }
            o->raft_port = (unsigned)port;
        } else if (a[0] == '-' && a[1] != '\0') {
            fprintf(stderr, "%s: unknown option \"%s\"\n\n", PROG, a);
            usage(stderr);
            return 2;
        } else if (o->file != NULL) {
            fprintf(stderr, "%s: one Patroni file, please (got \"%s\" and \"%s\")\n", PROG, o->file, a);
            return 2;
        } else {
            o->file = a;
        }
    }
    if (o->file == NULL) {
        fprintf(stderr, "%s: which Patroni file?\n\n", PROG);
        usage(stderr);
        return 2;
    }
    char h[64];
    uint16_t port;
    if (o->self_addr != NULL && cfg_parse_ipv4_addr(o->self_addr, h, sizeof h, &port) != 0) {
        fprintf(stderr, "%s: --self-addr: expected a.b.c.d:port, got \"%s\"\n", PROG, o->self_addr);
        return 2;
    }
    return -1;
}

static int convert(struct conv *c, const struct opts *o)
{
    if (c->tree.root == NULL || ynode_is_null(c->tree.root)) {
        fprintf(stderr, "%s: %s: the file is empty: expected Patroni's settings (scope, name, "
                "postgresql, ...)\n", PROG, c->file);
        return 1;
    }
    if (c->tree.root->kind != YN_MAP) {
        fprintf(stderr, "%s: %s:%d:%d: expected a mapping of Patroni settings (scope, name, ...) at "
                "the top, got %s: is this a Patroni configuration?\n", PROG, c->file,
                c->tree.root->line, c->tree.root->col, ynode_kind_name(c->tree.root));
        return 1;
    }
    c->doc = ytree_to_json(c->tree.root);
    if (c->doc == NULL) {
        fprintf(stderr, "%s: %s: a mapping key that is not text (or out of memory)\n", PROG, c->file);
        return 1;
    }
    static const char *const ids[] = {"scope", "name"};
    for (size_t i = 0; i < 2; i++) {
        json_t *v = json_object_get(c->doc, ids[i]);
        if (json_is_integer(v)) { /* name: 1 is the string "1" to Patroni */
            char n[32];
            snprintf(n, sizeof n, "%lld", (long long)json_integer_value(v));
            json_object_set_new(c->doc, ids[i], json_string(n));
            v = json_object_get(c->doc, ids[i]);
        }
        const char *s = json_string_value(v);
        if (s == NULL || *s == '\0') {
            fprintf(stderr, "%s: %s: no %s (Patroni may have taken it from PATRONI_%s in its "
                    "environment: write it in the file)\n", PROG, c->file, ids[i],
                    i == 0 ? "SCOPE" : "NAME");
            return 1;
        }
        if (!ident_ok(s)) {
            fprintf(stderr, "%s: %s:%d: %s: \"%s\" cannot be converted: pgwarden takes 1 to 63 "
                    "characters from A-Z, a-z, 0-9, '_', '.' and '-', and renaming the %s would "
                    "change %s\n", PROG, c->file, line_of(c, ids[i]), ids[i], s,
                    i == 0 ? "cluster" : "member",
                    i == 0 ? "cluster_name (a PostgreSQL restart)" : "its replication slot's name");
            return 1;
        }
    }
    for (size_t i = 0; i < sizeof dcs_sections / sizeof dcs_sections[0]; i++) {
        if (json_object_get(c->doc, dcs_sections[i]) != NULL) {
            note(c, dcs_sections[i], "removed: pgwarden's nodes keep the cluster state in their "
                 "own Raft group (raft:)%s", strcmp(dcs_sections[i], "raft") == 0 ?
                 "; Patroni's pysyncobj journal is not reused" : "");
            json_object_del(c->doc, dcs_sections[i]);
        }
    }
    if (json_object_get(c->doc, "namespace") != NULL) {
        note(c, "namespace", "removed: each pgwarden cluster is its own Raft group, with no key "
             "prefix");
        json_object_del(c->doc, "namespace");
    }
    const char *name = jstr(c->doc, "name");
    if (add_raft(c, o, name) != 0)
        return 1;
    if (o->members_from != NULL && dcs_from_patroni(c, o) != 0)
        return 1;
    fix_dcs(c);
    fix_log(c);
    fix_restapi(c);
    fix_tags(c);
    fix_watchdog(c);
    fix_postgresql(c);
    fix_bootstrap(c);
    return 0;
}

int cmd_convert_patroni(int argc, char **argv)
{
    struct opts o;
    int rc = parse_args(argc, argv, &o);
    if (rc >= 0)
        return rc;
    struct conv c = {.file = o.file};
    struct cfg_error err;
    char *buf = NULL;
    size_t len = 0;
    if (cfg_read_file(o.file, &buf, &len, NULL, &err) != 0) {
        fprintf(stderr, "%s: %s\n", PROG, err.msg);
        return 1;
    }
    rc = ytree_parse(o.file, buf, len, &c.tree, &err);
    memset(buf, 0, len); /* the text may hold passwords */
    free(buf);
    if (rc != 0) {
        fprintf(stderr, "%s: %s (not a YAML file Patroni could have read)\n", PROG, err.msg);
        return 1;
    }
    char *yaml = NULL, *text = NULL;
    rc = convert(&c, &o);
    if (rc != 0)
        goto done;
    rc = 1;
    yaml = jy_to_yaml(c.doc);
    const char *hdr = "# Written by `pgwarden convert-patroni` from ";
    size_t tl = yaml != NULL ? strlen(hdr) + strlen(o.file) + strlen(yaml) + 64 : 0;
    text = tl > 0 ? malloc(tl) : NULL;
    if (text == NULL) {
        fprintf(stderr, "%s: out of memory\n", PROG);
        goto done;
    }
    snprintf(text, tl, "%s%s.\n# Check it: pgwarden validate -c FILE\n%s", hdr, o.file, yaml);
    /* The same check as `pgwarden validate`, on what would be written. */
    struct cfg cfg;
    struct cfg_warnings warn = {0};
    const char *name = o.out != NULL ? o.out : "(output)";
    int lrc = cfg_load_buffer(name, text, strlen(text), &cfg, &err, &warn);
    for (size_t i = 0; i < warn.n; i++)
        fprintf(stderr, "%s: kept, but pgwarden will warn: %s\n", PROG, warn.items[i]);
    cfg_warnings_free(&warn);
    if (lrc != 0) {
        fprintf(stderr, "%s: the converted configuration still fails pgwarden's check, so nothing "
                "was written: %s\n", PROG, err.msg);
        goto done;
    }
    cfg_free(&cfg);
    if (write_out(o.out, text) != 0)
        goto done;
    fprintf(stderr, "%s: %u change%s; the result passes pgwarden's configuration check\n", PROG,
            c.changes, c.changes == 1 ? "" : "s");
    rc = 0;
done:
    if (yaml != NULL) {
        memset(yaml, 0, strlen(yaml));
        free(yaml);
    }
    if (text != NULL) {
        memset(text, 0, strlen(text));
        free(text);
    }
    json_decref(c.doc);
    ytree_free(&c.tree);
    return rc;
}
