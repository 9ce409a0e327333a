/* pgwarden ctl: the operator CLI. It talks to any node's REST API (the
 * Patroni-compatible one) over HTTP with common/httpc on a libuv loop of its
 * own; every request has a deadline. This file holds the entry point, the
 * global options, option parsing, the help texts and the endpoint set-up.
 * Exit statuses: 0 success, 1 refused or failed (with the reason), 2 usage. */
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/cmd.h"
#include "cmd/ctl_internal.h"
#include "common/cfg.h"

struct ctl_sub {
    const char *name;
    int (*fn)(struct ctl *c, struct ctl_iter *it);
    const char *summary;
    const char *help; /* usage and options */
};

static const struct ctl_sub subs[] = {
    {"list", ctl_cmd_list, "show the members, their roles, states and lag",
     "Usage: pgwarden ctl list [CLUSTER] [-e] [-t] [-W | -w SECS]\n\n"
     "  -e, --extended     add the Pending restart, Scheduled restart, Tags and\n"
     "                     \"Not a candidate\" columns (shown anyway when a member has a value)\n"
     "  -t, --timestamp    print the time before the table\n"
     "  -W                 refresh every 2 seconds (until interrupted)\n"
     "  -w, --watch SECS   refresh every SECS seconds\n"},
    {"topology", ctl_cmd_topology, "the member list as a tree (replicas under their upstream)",
     "Usage: pgwarden ctl topology [CLUSTER] [-e] [-t] [-W | -w SECS]\n\n"
     "Like list, with each replica indented under the member it replicates from\n"
     "(its replicatefrom tag, else the leader).\n"},
    {"switchover", ctl_cmd_switchover, "hand the primary role over to a replica (planned)",
     "Usage: pgwarden ctl switchover [CLUSTER] [--leader NAME] [--candidate NAME]\n"
     "                               [--scheduled TIME|now] [--force]\n\n"
     "      --leader NAME     the current leader (checked; --primary is the same)\n"
     "      --candidate NAME  the member to promote (default: the best replica)\n"
     "      --scheduled TIME  ISO 8601 time, e.g. 2026-11-26T10:00+00:00 (the local time\n"
     "                        zone when none is given), or now\n"
     "      --force           no questions\n"},
    {"failover", ctl_cmd_failover, "promote a given member now (unplanned, e.g. no healthy leader)",
     "Usage: pgwarden ctl failover [CLUSTER] --candidate NAME [--allow-data-loss] [--force]\n\n"
     "      --candidate NAME   the member to promote\n"
     "      --allow-data-loss  promote it even if it may lack acknowledged commits\n"
     "      --force            no questions\n"},
    {"restart", ctl_cmd_restart, "restart PostgreSQL on members",
     "Usage: pgwarden ctl restart [MEMBER...] [-r ROLE] [--any] [--pending]\n"
     "                            [--scheduled TIME] [--timeout SECS] [--force]\n\n"
     "Sends POST /restart to each member's REST API (all members when none is named).\n"
     "  -r, --role ROLE     only members with this role: leader (the primary or the\n"
     "                      standby leader), primary, standby-leader, replica (or\n"
     "                      standby: any other member), any (the default)\n"
     "      --any           only one of those members, picked at random\n"
     "      --pending       only if a restart is pending (a parameter needs it)\n"
     "      --scheduled TIME  restart at this ISO 8601 time instead of now\n"
     "      --timeout SECS  how long the restart may take before it is reported failed\n"
     "      --force         no questions (and replace an already scheduled restart)\n"},
    {"reload", ctl_cmd_reload, "make members re-read their configuration",
     "Usage: pgwarden ctl reload [MEMBER...] [-r primary|replica|any]\n\n"
     "Sends POST /reload to each member's REST API (all members when none is named).\n"},
    {"reinit", ctl_cmd_reinit, "wipe a replica and clone it again",
     "Usage: pgwarden ctl reinit MEMBER... [--from-leader] [--wait] [--force]\n\n"
     "      --from-leader  clone from the leader (not from another replica)\n"
     "      --wait         wait until the member runs again\n"
     "      --force        no questions; also cancels a task the member is running\n"},
    {"flush", ctl_cmd_flush, "discard a scheduled switchover or scheduled restarts",
     "Usage: pgwarden ctl flush [CLUSTER] switchover\n"
     "       pgwarden ctl flush [MEMBER...] restart [-r primary|replica|any]\n\n"
     "switchover: DELETE /switchover (the scheduled one); restart: DELETE /restart on each\n"
     "member that has a scheduled restart.\n"},
    {"pause", ctl_cmd_pause, "maintenance mode: no automatic failover",
     "Usage: pgwarden ctl pause [CLUSTER] [--wait]\n\n"
     "      --wait   wait until every member's GET /config shows pause: true\n"},
    {"resume", ctl_cmd_resume, "leave maintenance mode",
     "Usage: pgwarden ctl resume [CLUSTER] [--wait]\n\n"
     "      --wait   wait until no member's GET /config shows pause any more\n"},
    {"demote-cluster", ctl_cmd_demote_cluster, "make this a standby cluster of a remote primary",
     "Usage: pgwarden ctl demote-cluster [CLUSTER] --host HOST [--port PORT]\n"
     "                                   [--restore-command CMD] [--primary-slot-name SLOT] [--force]\n\n"
     "Sets standby_cluster in the dynamic configuration: the primary stops and runs again as\n"
     "the standby leader, replicating from HOST:PORT (create SLOT there first) and/or\n"
     "restore_command; the other members cascade from it. Waits until it runs.\n"},
    {"promote-cluster", ctl_cmd_promote_cluster, "make a standby cluster a normal one",
     "Usage: pgwarden ctl promote-cluster [CLUSTER] [--force]\n\n"
     "Removes standby_cluster from the dynamic configuration: the standby leader is promoted\n"
     "and becomes the primary. Waits until it runs as primary.\n"},
    {"show-config", ctl_cmd_show_config, "print the dynamic (cluster-wide) configuration",
     "Usage: pgwarden ctl show-config [CLUSTER]\n\n"
     "Prints GET /config as YAML (-f json for JSON).\n"},
    {"edit-config", ctl_cmd_edit_config, "change the dynamic configuration",
     "Usage: pgwarden ctl edit-config [CLUSTER] [-s KEY.PATH=VALUE]... [-p PARAM=VALUE]...\n"
     "                                [--apply FILE|-] [--replace FILE|-] [-q] [--force]\n\n"
     "Without -s, -p, --apply or --replace, opens $EDITOR on the configuration (YAML).\n"
     "Shows the change as a diff, asks to confirm, then sends it as a JSON merge patch\n"
     "(PATCH /config; --replace sends PUT /config). Values are read as YAML: numbers\n"
     "stay numbers, an empty value or null deletes the key.\n"
     "  -s, --set KEY.PATH=VALUE  e.g. -s loop_wait=0.5 -s postgresql.use_slots=false\n"
     "  -p, --pg PARAM=VALUE      shorthand for -s postgresql.parameters.PARAM=VALUE\n"
     "      --apply FILE|-        merge this YAML document into the configuration\n"
     "      --replace FILE|-      replace the whole configuration with this YAML document\n"
     "  -q, --quiet               do not show the diff\n"
     "      --force               no questions\n"},
    {"history", ctl_cmd_history, "the failover and switchover history",
     "Usage: pgwarden ctl history [CLUSTER]\n\n"
     "Columns: TL, LSN, Reason, Timestamp, New Leader.\n"},
    {"members", ctl_cmd_members, "the Raft configuration; add or remove a node",
     "Usage: pgwarden ctl members\n"
     "       pgwarden ctl members add RAFT_ADDR NAME\n"
     "       pgwarden ctl members remove NAME [--force]\n\n"
     "members shows the Raft voters (id, name, Raft address, role). add makes room for a\n"
     "new node (then start pgwarden on it with raft.self_addr: RAFT_ADDR); remove takes a\n"
     "node out of the Raft group and the member list (switch over first if it is the leader).\n"},
    {"backup", ctl_cmd_backup, "take a backup on the primary, or list the repository's",
     "Usage: pgwarden ctl backup [now] [-t full|diff|incr] [--wait] [--timeout SECS]\n"
     "       pgwarden ctl backup list\n\n"
     "Needs backup.method pgbackrest in the nodes' configuration (docs/backups.md).\n"
     "now (the default) asks the primary to take a backup at once (POST /backup);\n"
     "list prints the backups in the repository (GET /backup).\n"
     "  -t, --type TYPE   full (default), diff or incr\n"
     "      --wait        wait until it is done; exit 1 if it failed\n"
     "      --timeout SECS  how long --wait waits (default 24 h)\n"},
    {"restore", ctl_cmd_restore, "write the configuration of a new cluster restored to a point in time",
     "Usage: pgwarden ctl -c NODE.yml restore --target-time TIME [--from-stanza STANZA] [-o OUT]\n"
     "       pgwarden ctl -c NODE.yml restore --latest [--from-stanza STANZA] [-o OUT]\n\n"
     "Reads the configuration of the node that will found the new cluster (it needs\n"
     "backup.method pgbackrest, naming the repository) and writes it again (to OUT, mode\n"
     "0600, or to standard output) with a bootstrap method that restores the repository's\n"
     "backup of STANZA (default: its backup.stanza) and replays the WAL archive to TIME\n"
     "(\"2026-12-07 10:00:00+00\"; PostgreSQL's timestamp syntax) or to its end. Start\n"
     "pgwarden with it on empty data and Raft directories (docs/backups.md).\n"
     "      --target-time TIME    recover to this time (inclusive of commits before it)\n"
     "      --latest              recover to the end of the archive\n"
     "      --from-stanza STANZA  the stanza to restore from\n"
     "  -o, --output OUT          write OUT instead of standard output\n"},
    {"query", ctl_cmd_query, "run SQL on a member's PostgreSQL (libpq, not the REST API)",
     "Usage: pgwarden ctl query [CLUSTER] [-m MEMBER | -r ROLE] (-c SQL | -f FILE)\n"
     "                          [-U USER] [--password] [-d DBNAME] [--format FMT]\n"
     "                          [--delimiter D]\n\n"
     "Connects with libpq to the member's PostgreSQL address (host and port from\n"
     "GET /cluster) and prints what the SQL returns (the last statement's rows).\n"
     "Without -U and -d, libpq's defaults apply (PGUSER, PGDATABASE, the login name);\n"
     "the password comes from --password (asked for), PGPASSWORD or ~/.pgpass.\n"
     "  -m, --member NAME    the member to run it on\n"
     "  -r, --role ROLE      leader (default), primary, standby-leader, replica,\n"
     "                       standby or any: the first member with this role (checked\n"
     "                       with pg_is_in_recovery() for primary, replica, standby-leader)\n"
     "  -c, --command SQL    the SQL to run\n"
     "  -f, --file FILE      read the SQL from FILE (- for standard input)\n"
     "  -U, --username USER  connect as USER\n"
     "      --password       ask for the password\n"
     "  -d, --dbname DBNAME  the database\n"
     "      --format FMT     tsv (default), pretty, json or yaml\n"
     "      --delimiter D    tsv's column delimiter (default a tab)\n"
     "Exit status 1 names the member and the error when it cannot connect or the SQL\n"
     "fails.\n"},
    {"dsn", ctl_cmd_dsn, "print a member's libpq connection string",
     "Usage: pgwarden ctl dsn [CLUSTER] [-m MEMBER | -r ROLE]\n\n"
     "Prints \"host=H port=P\" for the member (default: the leader), as patronictl.\n"
     "  -m, --member NAME  that member\n"
     "  -r, --role ROLE    leader (default), primary, standby-leader, replica, standby, any\n"},
    {"remove", ctl_cmd_remove, "wipe this node's copy of a stopped cluster's state (Raft data)",
     "Usage: pgwarden ctl -c NODE.yml remove CLUSTER\n\n"
     "patronictl remove deletes the cluster's keys from the DCS. pgwarden's DCS is the\n"
     "Raft log each node keeps in raft.data_dir, so remove works on one node at a time,\n"
     "with pgwarden stopped on every node: it refuses while this node's pgwarden runs\n"
     "(raft.data_dir is locked), while any REST API it knows answers (connect_address,\n"
     "--endpoint) or any raft.partner_addrs accepts a connection. After the confirmations\n"
     "(type the cluster name, then \"Yes I am aware\") raft.data_dir is renamed to\n"
     "raft.data_dir.removed-TIME (kept, not deleted). PostgreSQL's data is not touched:\n"
     "started again, the node founds a new cluster on it (or joins one). Run it on every\n"
     "node.\n"},
    {"version", ctl_cmd_version, "ctl's version and each member's",
     "Usage: pgwarden ctl version [MEMBER...]\n"},
};

#define N_SUBS (sizeof subs / sizeof subs[0])

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: pgwarden ctl [GLOBAL OPTIONS] COMMAND [OPTIONS]\n\n"
            "Operator CLI: talks to any node's REST API.\n\n"
            "Commands:\n");
    for (size_t i = 0; i < N_SUBS; i++)
        fprintf(out, "  %-12s %s\n", subs[i].name, subs[i].summary);
    fprintf(out,
            "\nGlobal options (anywhere on the line):\n"
            "  -c, --config FILE     read restapi.connect_address and the credentials\n"
            "                        (ctl.authentication, else restapi.authentication) from a\n"
            "                        node's configuration file\n"
            "      --endpoint URL    a node's REST API, e.g. http://10.0.0.1:8008 or\n"
            "                        https://10.0.0.1:8008 (repeatable: tried in order);\n"
            "                        default $PGWARDEN_CTL_ENDPOINT (comma-separated), else\n"
            "                        the -c file's connect_address (https when it sets\n"
            "                        restapi.certfile)\n"
            "  -f, --format FMT      pretty (default), json, yaml or tsv\n"
            "      --cacert FILE     CA certificates that verify the API's certificate\n"
            "                        (default: ctl.cacert, else restapi.cafile of -c, else\n"
            "                        the system's)\n"
            "      --certfile FILE   client certificate to present (default ctl.certfile)\n"
            "      --keyfile FILE    its private key (default ctl.keyfile)\n"
            "  -k, --insecure        do not verify the API's certificate (tests only)\n"
            "  -h, --help            this help; 'pgwarden ctl COMMAND --help' for a command\n"
            "\nCredentials for --endpoint without -c: $PGWARDEN_CTL_USERNAME and\n"
            "$PGWARDEN_CTL_PASSWORD.\n"
            "Exit status: 0 success, 1 refused or failed (the reason is printed), 2 usage.\n");
}

void ctl_sub_help(FILE *out, const char *sub)
{
    for (size_t i = 0; i < N_SUBS; i++) {
        if (strcmp(subs[i].name, sub) == 0) {
            fputs(subs[i].help, out);
            fprintf(out, "\nGlobal options: -c FILE, --endpoint URL, -f pretty|json|yaml|tsv, "
                         "--cacert FILE, --certfile FILE, --keyfile FILE, -k/--insecure "
                         "(see 'pgwarden ctl --help').\n");
            return;
        }
    }
}

/* --- options ------------------------------------------------------------------- */

enum { G_CONFIG = 900, G_ENDPOINT, G_FORMAT, G_CACERT, G_CERTFILE, G_KEYFILE, G_INSECURE };

static const struct ctl_opt global_opts[] = {
    {"config", 'c', true, G_CONFIG},
    {"endpoint", 0, true, G_ENDPOINT},
    {"format", 'f', true, G_FORMAT},
    {"cacert", 0, true, G_CACERT},
    {"certfile", 0, true, G_CERTFILE},
    {"keyfile", 0, true, G_KEYFILE},
    {"insecure", 'k', false, G_INSECURE},
    {NULL, 0, false, 0},
};

static const struct ctl_opt *find_opt(const struct ctl_opt *opts, const char *arg, size_t n, char shrt)
{
    for (; opts != NULL && opts->id != 0; opts++) { /* lng may be NULL: short only */
        if (shrt != 0 ? opts->shrt == shrt
                      : opts->lng != NULL && strlen(opts->lng) == n && strncmp(opts->lng, arg, n) == 0)
            return opts;
    }
    return NULL;
}

static const char *prefix_sub(const struct ctl *c)
{
    return c->sub != NULL ? c->sub : "";
}

static int global_opt(struct ctl *c, int id, const char *val)
{
    switch (id) {
    case G_CONFIG:
        if (c->config_path != NULL) {
            ctl_err(c, "only one -c/--config file, please");
            return CTL_ARG_ERROR;
        }
        c->config_path = val;
        return 0;
    case G_ENDPOINT: {
        char **p = realloc(c->cli_endpoints, (c->n_cli_endpoints + 1) * sizeof *p);
        if (p == NULL)
            return CTL_ARG_ERROR;
        c->cli_endpoints = p;
        p[c->n_cli_endpoints] = strdup(val);
        if (p[c->n_cli_endpoints] == NULL)
            return CTL_ARG_ERROR;
        c->n_cli_endpoints++;
        return 0;
    }
    case G_FORMAT:
        c->format_given = true;
        if (strcmp(val, "pretty") == 0)
            c->format = CTL_FMT_PRETTY;
        else if (strcmp(val, "json") == 0)
            c->format = CTL_FMT_JSON;
        else if (strcmp(val, "yaml") == 0 || strcmp(val, "yml") == 0)
            c->format = CTL_FMT_YAML;
        else if (strcmp(val, "tsv") == 0)
            c->format = CTL_FMT_TSV;
        else {
            ctl_err(c, "--format must be pretty, json, yaml or tsv, not \"%s\"", val);
            return CTL_ARG_ERROR;
        }
        return 0;
    case G_CACERT:
    case G_CERTFILE:
    case G_KEYFILE: {
        char **dst = id == G_CACERT ? &c->cli_cacert : id == G_CERTFILE ? &c->cli_certfile
                                                                        : &c->cli_keyfile;
        free(*dst);
        *dst = strdup(val);
        return *dst != NULL ? 0 : CTL_ARG_ERROR;
    }
    case G_INSECURE:
        c->insecure = true;
        return 0;
    default:
        return 0;
    }
}

int ctl_next_arg(struct ctl *c, struct ctl_iter *it, const struct ctl_opt *opts, const char **val)
{
    for (;;) {
        if (it->i >= it->argc)
            return CTL_ARG_END;
        const char *a = it->argv[it->i++];
        *val = NULL;
        if (it->only_positionals || a[0] != '-' || a[1] == '\0') {
            *val = a;
            return CTL_ARG_POSITIONAL;
        }
        if (strcmp(a, "--") == 0) {
            it->only_positionals = true;
            continue;
        }
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0)
            return CTL_ARG_HELP;
        const struct ctl_opt *o;
        const char *inline_val = NULL;
        if (a[1] == '-') {
            const char *name = a + 2;
            const char *eq = strchr(name, '=');
            size_t n = eq != NULL ? (size_t)(eq - name) : strlen(name);
            if (eq != NULL)
                inline_val = eq + 1;
            o = find_opt(opts, name, n, 0);
            if (o == NULL)
                o = find_opt(global_opts, name, n, 0);
        } else {
            if (a[2] != '\0')
                inline_val = a + 2; /* -s key=value written as -skey=value */
            o = find_opt(opts, NULL, 0, a[1]);
            if (o == NULL)
                o = find_opt(global_opts, NULL, 0, a[1]);
        }
        if (o == NULL) {
            ctl_err(c, "unknown option %s (see 'pgwarden ctl%s%s --help')", a, c->sub ? " " : "",
                    prefix_sub(c));
            return CTL_ARG_ERROR;
        }
        if (o->has_arg) {
            if (inline_val == NULL) {
                if (it->i >= it->argc) {
                    ctl_err(c, "%s needs a value", a);
                    return CTL_ARG_ERROR;
                }
                inline_val = it->argv[it->i++];
            }
        } else if (inline_val != NULL) {
            ctl_err(c, "%s takes no value", a);
            return CTL_ARG_ERROR;
        }
        *val = inline_val;
        if (o->id >= G_CONFIG && o->id <= G_INSECURE) {
            if (global_opt(c, o->id, inline_val) != 0)
                return CTL_ARG_ERROR;
            continue;
        }
        return o->id;
    }
}

/* --- endpoints ------------------------------------------------------------------- */

/* scheme: used when raw has none ("http" or "https"). */
static int add_endpoint(struct ctl *c, const char *raw, size_t len, const char *scheme_dflt)
{
    while (len > 0 && (*raw == ' ' || *raw == '\t')) {
        raw++;
        len--;
    }
    while (len > 0 && (raw[len - 1] == ' ' || raw[len - 1] == '/' || raw[len - 1] == '\t'))
        len--;
    if (len == 0)
        return CTL_OK;
    char url[512];
    if (len >= sizeof url - 8) {
        ctl_err(c, "endpoint \"%.*s...\" is too long", 40, raw);
        return CTL_USAGE;
    }
    const char *scheme = strstr(raw, "://");
    if (scheme != NULL && (size_t)(scheme - raw) < len) {
        if (strncmp(raw, "http://", 7) != 0 && strncmp(raw, "https://", 8) != 0) {
            ctl_err(c, "endpoint %.*s: expected http://HOST:PORT or https://HOST:PORT", (int)len,
                    raw);
            return CTL_USAGE;
        }
        snprintf(url, sizeof url, "%.*s", (int)len, raw);
    } else {
        snprintf(url, sizeof url, "%s://%.*s", scheme_dflt, (int)len, raw);
    }
    char **p = realloc(c->endpoints, (c->n_endpoints + 1) * sizeof *p);
    if (p == NULL)
        return CTL_FAILED;
    c->endpoints = p;
    p[c->n_endpoints] = strdup(url);
    if (p[c->n_endpoints] == NULL)
        return CTL_FAILED;
    c->n_endpoints++;
    return CTL_OK;
}

static char *dup_or_null(const char *s)
{
    return s != NULL ? strdup(s) : NULL;
}

int ctl_ready(struct ctl *c)
{
    struct cfg conf;
    bool have_conf = false;
    if (c->config_path != NULL) {
        struct cfg_error err;
        if (cfg_load(c->config_path, &conf, &err, NULL) != 0) {
            ctl_err(c, "%s", err.msg);
            return CTL_FAILED;
        }
        have_conf = true;
        const char *u = conf.ctl.auth_username ? conf.ctl.auth_username : conf.restapi.auth_username;
        const char *pw = conf.ctl.auth_username ? conf.ctl.auth_password : conf.restapi.auth_password;
        c->user = dup_or_null(u);
        c->password = dup_or_null(pw);
        /* ctl.cacert defaults to restapi.cafile (cfg computes it) */
        c->cacert = dup_or_null(conf.ctl.cacert);
        c->certfile = dup_or_null(conf.ctl.certfile);
        c->keyfile = dup_or_null(conf.ctl.keyfile);
        c->insecure = c->insecure || conf.ctl.insecure;
    }
    struct { char **dst, *src; } over[] = {
        {&c->cacert, c->cli_cacert}, {&c->certfile, c->cli_certfile}, {&c->keyfile, c->cli_keyfile},
    };
    for (size_t i = 0; i < sizeof over / sizeof over[0]; i++) {
        if (over[i].src == NULL)
            continue;
        free(*over[i].dst);
        *over[i].dst = strdup(over[i].src);
    }
    const char *scheme = have_conf && conf.restapi.certfile != NULL ? "https" : "http";
    if (c->user == NULL && getenv("PGWARDEN_CTL_USERNAME") != NULL) {
        c->user = dup_or_null(getenv("PGWARDEN_CTL_USERNAME"));
        c->password = dup_or_null(getenv("PGWARDEN_CTL_PASSWORD") ? getenv("PGWARDEN_CTL_PASSWORD") : "");
    }
    int rc = CTL_OK;
    const char *env = getenv("PGWARDEN_CTL_ENDPOINT");
    if (c->n_cli_endpoints > 0) {
        for (size_t i = 0; i < c->n_cli_endpoints && rc == CTL_OK; i++)
            rc = add_endpoint(c, c->cli_endpoints[i], strlen(c->cli_endpoints[i]), scheme);
    } else if (env != NULL && env[0] != '\0') {
        const char *p = env;
        while (rc == CTL_OK && *p != '\0') {
            const char *comma = strchr(p, ',');
            size_t n = comma != NULL ? (size_t)(comma - p) : strlen(p);
            rc = add_endpoint(c, p, n, scheme);
            p += n + (comma != NULL ? 1 : 0);
        }
    } else if (have_conf) {
        char url[300];
        const struct cfg_hostport *ca = &conf.restapi.connect_address;
        const char *host = ca->host;
        if (host == NULL || strcmp(host, "0.0.0.0") == 0 || strcmp(host, "*") == 0 || host[0] == '\0')
            host = "127.0.0.1";
        else if (strcmp(host, "::") == 0)
            host = "::1";
        if (strchr(host, ':') != NULL)
            snprintf(url, sizeof url, "[%s]:%u", host, ca->port);
        else
            snprintf(url, sizeof url, "%s:%u", host, ca->port);
        rc = add_endpoint(c, url, strlen(url), scheme);
    }
    if (have_conf)
        cfg_free(&conf);
    if (rc != CTL_OK)
        return rc;
    if (c->n_endpoints == 0) {
        ctl_err(c, "which cluster? give --endpoint URL, set PGWARDEN_CTL_ENDPOINT, or -c FILE "
                   "(a node's configuration)");
        return CTL_USAGE;
    }
    if (uv_loop_init(&c->loop) != 0) {
        ctl_err(c, "cannot start an event loop");
        return CTL_FAILED;
    }
    c->loop_ready = true;
    return CTL_OK;
}

int ctl_ready_cluster(struct ctl *c, json_t **cluster)
{
    *cluster = NULL;
    int rc = ctl_ready(c);
    if (rc != CTL_OK)
        return rc;
    *cluster = ctl_get_json(c, "/cluster");
    return *cluster != NULL ? CTL_OK : CTL_FAILED;
}

static void ctl_cleanup(struct ctl *c)
{
    if (c->loop_ready) {
        uv_run(&c->loop, UV_RUN_DEFAULT); /* nothing is pending; lets closes finish */
        if (uv_loop_close(&c->loop) != 0)
            fprintf(stderr, "pgwarden ctl: internal error: handles left open on the loop\n");
    }
    for (size_t i = 0; i < c->n_endpoints; i++)
        free(c->endpoints[i]);
    free(c->endpoints);
    for (size_t i = 0; i < c->n_cli_endpoints; i++)
        free(c->cli_endpoints[i]);
    free(c->cli_endpoints);
    free(c->user);
    free(c->password);
    free(c->cacert);
    free(c->certfile);
    free(c->keyfile);
    free(c->cli_cacert);
    free(c->cli_certfile);
    free(c->cli_keyfile);
}

int cmd_ctl(int argc, char **argv)
{
    struct ctl c = {0};
    struct ctl_iter it = {.argc = argc, .argv = argv, .i = 1};
    const struct ctl_sub *sub = NULL;
    int rc = CTL_USAGE;
    /* a client: a closed connection must be an error, not a signal */
    signal(SIGPIPE, SIG_IGN);
    for (;;) {
        const char *val;
        int id = ctl_next_arg(&c, &it, NULL, &val);
        if (id == CTL_ARG_END) {
            usage(stderr);
            goto out;
        }
        if (id == CTL_ARG_ERROR)
            goto out;
        if (id == CTL_ARG_HELP) {
            usage(stdout);
            rc = CTL_OK;
            goto out;
        }
        if (id == CTL_ARG_POSITIONAL) {
            if (strcmp(val, "help") == 0) {
                usage(stdout);
                rc = CTL_OK;
                goto out;
            }
            for (size_t i = 0; i < N_SUBS; i++)
                if (strcmp(subs[i].name, val) == 0)
                    sub = &subs[i];
            if (sub == NULL) {
                fprintf(stderr, "pgwarden ctl: unknown command \"%s\"\n\n", val);
                usage(stderr);
                goto out;
            }
            break;
        }
    }
    c.sub = sub->name;
    rc = sub->fn(&c, &it);
out:
    ctl_cleanup(&c);
    fflush(stdout);
    return rc;
}
