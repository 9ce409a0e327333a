/* ctl query and ctl dsn: patronictl's commands that reach a member's
 * PostgreSQL itself. The member's address comes from GET /cluster (its host
 * and port, the conn_url Patroni publishes); the SQL goes over libpq
 * straight to PostgreSQL, never through the REST API, with pg/pgconn (the
 * daemon's asynchronous libpq connection) on ctl's own loop: one libpq
 * mechanism in the code base. Connecting is bounded by 5 s (patronictl's
 * connect_timeout), the SQL by QUERY_TIMEOUT_MS.
 *
 * Where pgwarden differs from patronictl: a failed connection or statement
 * exits 1 with the member and PostgreSQL's message on stderr (patronictl
 * prints the error as a table row and exits 0); NULL prints as an empty
 * cell (patronictl: None); -W/-w (repeat) are not implemented. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include <uv.h>

#include <libpq-fe.h>

#include "cmd/ctl_internal.h"
#include "common/table.h"
#include "pg/pgconn.h"

#define QUERY_TIMEOUT_MS (3600u * 1000u) /* a long report may run; a hung one must not wait forever */

enum { Q_ROLE = 1, Q_MEMBER, Q_COMMAND, Q_FILE, Q_USER, Q_PASSWORD, Q_DBNAME, Q_FORMAT, Q_DELIM };

static const struct ctl_opt query_opts[] = {
    {"role", 'r', true, Q_ROLE},
    {"member", 'm', true, Q_MEMBER},
    {"command", 'c', true, Q_COMMAND},
    {"file", 'f', true, Q_FILE},
    {"username", 'U', true, Q_USER},
    {"password", 0, false, Q_PASSWORD},
    {"dbname", 'd', true, Q_DBNAME},
    {"format", 0, true, Q_FORMAT},
    {"delimiter", 0, true, Q_DELIM},
    {NULL, 0, false, 0},
};

static const struct ctl_opt dsn_opts[] = {
    {"role", 'r', true, Q_ROLE},
    {"member", 'm', true, Q_MEMBER},
    {NULL, 0, false, 0},
};

struct query_args {
    const char *cluster_word; /* patronictl's optional CLUSTER */
    const char *member;
    bool role_given;
    enum ctl_role role;
    const char *command, *file, *user, *dbname, *delimiter;
    bool ask_password;
    enum ctl_format format;
};

static int parse_format(const struct ctl *c, const char *v, enum ctl_format *f)
{
    if (strcmp(v, "tsv") == 0)
        *f = CTL_FMT_TSV;
    else if (strcmp(v, "pretty") == 0)
        *f = CTL_FMT_PRETTY;
    else if (strcmp(v, "json") == 0)
        *f = CTL_FMT_JSON;
    else if (strcmp(v, "yaml") == 0 || strcmp(v, "yml") == 0)
        *f = CTL_FMT_YAML;
    else {
        ctl_err(c, "--format must be tsv, pretty, json or yaml, not \"%s\"", v);
        return CTL_USAGE;
    }
    return CTL_OK;
}

/* Options of query and dsn (dsn passes its own, shorter table). Returns
 * CTL_OK, CTL_USAGE, or -1 after printing the help. */
static int parse_args(struct ctl *c, struct ctl_iter *it, const struct ctl_opt *opts,
                      struct query_args *a)
{
    const char *val;
    int id;
    /* patronictl query's default is tsv; a -f/--format before the command wins */
    a->format = c->format_given ? c->format : CTL_FMT_TSV;
    a->delimiter = "\t";
    while ((id = ctl_next_arg(c, it, opts, &val)) != CTL_ARG_END) {
        switch (id) {
        case CTL_ARG_ERROR: return CTL_USAGE;
        case CTL_ARG_HELP: ctl_sub_help(stdout, c->sub); return -1;
        case Q_ROLE:
            if (ctl_parse_role(c, val, &a->role) != CTL_OK)
                return CTL_USAGE;
            a->role_given = true;
            break;
        case Q_MEMBER: a->member = val; break;
        case Q_COMMAND: a->command = val; break;
        case Q_FILE: a->file = val; break;
        case Q_USER: a->user = val; break;
        case Q_PASSWORD: a->ask_password = true; break;
        case Q_DBNAME: a->dbname = val; break;
        case Q_DELIM: a->delimiter = val; break;
        case Q_FORMAT:
            if (parse_format(c, val, &a->format) != CTL_OK)
                return CTL_USAGE;
            break;
        case CTL_ARG_POSITIONAL:
            if (a->cluster_word != NULL) {
                ctl_err(c, "unexpected argument \"%s\" (one CLUSTER at most)", val);
                return CTL_USAGE;
            }
            a->cluster_word = val;
            break;
        default: return CTL_USAGE;
        }
    }
    if (a->member != NULL && a->role_given) {
        ctl_err(c, "--role and --member are mutually exclusive options");
        return CTL_USAGE;
    }
    return CTL_OK;
}

/* patronictl's get_any_member: the named member, else the first with the
 * role (default: the leader). NULL after printing why. */
static const json_t *pick_member(const struct ctl *c, const json_t *cl, const struct query_args *a)
{
    char all[1024];
    ctl_member_names(cl, all, sizeof all);
    if (a->member != NULL) {
        const json_t *m = ctl_member(cl, a->member);
        if (m == NULL)
            ctl_err(c, "%s is not a member (members: %s)", a->member, all);
        else if (json_object_get(m, "host") == NULL)
            ctl_err(c, "%s is a witness: it runs no PostgreSQL", a->member);
        else
            return m;
        return NULL;
    }
    enum ctl_role role = a->role_given ? a->role : CTL_ROLE_LEADER;
    size_t i;
    json_t *m;
    json_array_foreach(json_object_get(cl, "members"), i, m) {
        if (json_object_get(m, "host") != NULL && ctl_role_matches(m, role))
            return m;
    }
    ctl_err(c, "no member has the role asked for (members: %s)", all);
    return NULL;
}

/* The SQL text, from -c or -f (- is standard input); malloc'd, or NULL
 * after printing why. */
static char *read_sql(const struct ctl *c, const struct query_args *a)
{
    if (a->command != NULL)
        return strdup(a->command);
    FILE *f = strcmp(a->file, "-") == 0 ? stdin : fopen(a->file, "r");
    if (f == NULL) {
        ctl_err(c, "cannot read %s: %m", a->file);
        return NULL;
    }
    size_t len = 0, cap = 4096;
    char *buf = malloc(cap);
    while (buf != NULL) {
        size_t n = fread(buf + len, 1, cap - len - 1, f);
        len += n;
        if (n == 0)
            break;
        if (cap - len - 1 == 0) {
            char *nb = realloc(buf, cap * 2);
            if (nb == NULL) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
    }
    bool failed = ferror(f) != 0;
    if (f != stdin)
        fclose(f);
    if (buf == NULL || failed) {
        ctl_err(c, "cannot read %s", a->file);
        free(buf);
        return NULL;
    }
    buf[len] = '\0';
    return buf;
}

/* Read a password from the terminal without echo (patronictl's --password). */
static char *ask_password(void)
{
    struct termios old, quiet;
    bool tty = tcgetattr(STDIN_FILENO, &old) == 0;
    if (tty) {
        quiet = old;
        quiet.c_lflag &= ~(tcflag_t)ECHO;
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
    }
    fprintf(stderr, "Password: ");
    fflush(stderr);
    char *line = NULL;
    size_t cap = 0;
    ssize_t n = getline(&line, &cap, stdin);
    if (tty) {
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
        fputc('\n', stderr);
    }
    if (n < 0) {
        free(line);
        return NULL;
    }
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        line[--n] = '\0';
    return line;
}

/* One statement's outcome, copied out of pgconn's callback. */
struct sql_out {
    bool done;
    int status;         /* PGW_OK or PGW_E* */
    char error[1024];   /* pgconn's message (libpq's or the server's) */
    char sqlstate[8];
    PGresult *last;     /* a copy of the last result, or NULL */
};

static void on_result(struct pgconn *pc, const struct pgconn_result *r, void *ctx)
{
    (void)pc;
    struct sql_out *o = ctx;
    o->done = true;
    o->status = r->status;
    snprintf(o->error, sizeof o->error, "%s", r->error != NULL ? r->error : "");
    for (size_t i = 0; i < r->nresults; i++) {
        const char *st = PQresultErrorField(r->results[i], PG_DIAG_SQLSTATE);
        if (st != NULL && o->sqlstate[0] == '\0')
            snprintf(o->sqlstate, sizeof o->sqlstate, "%s", st);
    }
    if (r->status == PGW_OK && r->nresults > 0)
        o->last = PQcopyResult(r->results[r->nresults - 1],
                               PG_COPYRES_ATTRS | PG_COPYRES_TUPLES | PG_COPYRES_NOTICEHOOKS);
}

/* Run sql on ctl's loop until its callback came (pgconn bounds the wait). */
static void sql_run(struct ctl *c, struct pgconn *pc, const char *sql, struct sql_out *o)
{
    memset(o, 0, sizeof *o);
    int rc = pgconn_query(pc, sql, QUERY_TIMEOUT_MS, on_result, o);
    if (rc != PGW_OK) {
        o->status = rc;
        snprintf(o->error, sizeof o->error, "cannot send the query");
        return;
    }
    while (!o->done)
        uv_run(&c->loop, UV_RUN_ONCE);
}

/* The connection to the member: host and port from GET /cluster, libpq's
 * defaults for what -U and -d leave out (as patronictl). */
static struct pgconn *member_conn(struct ctl *c, const json_t *m, const struct query_args *a,
                                  const char *password)
{
    char port[16];
    snprintf(port, sizeof port, "%lld", (long long)json_integer_value(json_object_get(m, "port")));
    struct pgconn_params p = {0};
    struct pgconn *pc = NULL;
    bool ok = pgconn_params_set(&p, "host", json_string_value(json_object_get(m, "host"))) == 0 &&
              pgconn_params_set(&p, "port", port) == 0 &&
              pgconn_params_set(&p, "fallback_application_name", "pgwarden ctl") == 0 &&
              pgconn_params_set(&p, "user", a->user) == 0 &&
              pgconn_params_set(&p, "dbname", a->dbname) == 0 &&
              pgconn_params_set(&p, "password", password) == 0;
    struct pgconn_opts opts = {.name = "ctl query", .connect_timeout_ms = 5000,
                               .query_timeout_ms = QUERY_TIMEOUT_MS};
    if (!ok || pgconn_new(&c->loop, &p, &opts, &pc) != 0) {
        ctl_err(c, "out of memory");
        pc = NULL;
    }
    pgconn_params_free(&p);
    return pc;
}

static const char *member_name(const json_t *m)
{
    return json_string_value(json_object_get(m, "name"));
}

/* Say which member failed and what PostgreSQL (or libpq) said. */
static void report_failure(const struct ctl *c, const json_t *m, const struct sql_out *o, bool connected)
{
    if (!connected)
        ctl_err(c, "cannot connect to member %s (%s:%lld): %s", member_name(m),
                json_string_value(json_object_get(m, "host")),
                (long long)json_integer_value(json_object_get(m, "port")), o->error);
    else
        ctl_err(c, "member %s: %s%s%s%s", member_name(m), o->error, o->sqlstate[0] ? " (SQLSTATE " : "",
                o->sqlstate, o->sqlstate[0] ? ")" : "");
}

/* patronictl checks the role of a member picked by role (not by name, not
 * leader or any) with pg_is_in_recovery(), as the replicated view may be
 * a moment old. Also the connection attempt: false after printing why. */
static bool connect_and_check(struct ctl *c, struct pgconn *pc, const json_t *m, const struct query_args *a)
{
    struct sql_out o;
    sql_run(c, pc, "SELECT pg_catalog.pg_is_in_recovery()", &o);
    if (o.status != PGW_OK) {
        report_failure(c, m, &o, pgconn_is_connected(pc));
        PQclear(o.last);
        return false;
    }
    bool in_recovery = o.last == NULL || PQntuples(o.last) != 1 || strcmp(PQgetvalue(o.last, 0, 0), "t") == 0;
    PQclear(o.last);
    if (a->member != NULL || !a->role_given || a->role == CTL_ROLE_ANY || a->role == CTL_ROLE_LEADER)
        return true;
    if (a->role == CTL_ROLE_PRIMARY ? !in_recovery : in_recovery)
        return true;
    ctl_err(c, "member %s is %s: not the role asked for (it changed since GET /cluster?)",
            member_name(m), in_recovery ? "in recovery" : "not in recovery");
    return false;
}

/* A cell as JSON: numbers and booleans typed by their PostgreSQL type. */
static json_t *cell_json(const PGresult *r, int row, int col)
{
    if (PQgetisnull(r, row, col))
        return json_null();
    const char *v = PQgetvalue(r, row, col);
    switch (PQftype(r, col)) {
    case 20: case 21: case 23: /* int8, int2, int4 */
        return json_integer(strtoll(v, NULL, 10));
    case 700: case 701: /* float4, float8 */
        return json_real(strtod(v, NULL));
    case 16: /* bool */
        return json_boolean(v[0] == 't');
    default:
        return json_string(v);
    }
}

static int print_json_rows(const struct ctl *c, const PGresult *r, enum ctl_format fmt)
{
    json_t *rows = json_array();
    for (int i = 0; i < PQntuples(r); i++) {
        json_t *o = json_object();
        for (int k = 0; k < PQnfields(r); k++)
            json_object_set_new(o, PQfname(r, k), cell_json(r, i, k));
        json_array_append_new(rows, o);
    }
    struct ctl tmp = *c;
    tmp.format = fmt;
    int rc = ctl_print_doc(&tmp, rows);
    json_decref(rows);
    return rc;
}

static int print_tsv_rows(const PGresult *r, const char *delim)
{
    for (int i = -1; i < PQntuples(r); i++) { /* -1: the header */
        for (int k = 0; k < PQnfields(r); k++) {
            const char *v = i < 0 ? PQfname(r, k) : PQgetisnull(r, i, k) ? "" : PQgetvalue(r, i, k);
            printf("%s%s", k ? delim : "", v);
        }
        putchar('\n');
    }
    return CTL_OK;
}

static int print_pretty_rows(const struct ctl *c, const PGresult *r)
{
    int nf = PQnfields(r);
    const char **names = calloc((size_t)nf + 1, sizeof *names);
    const char **cells = calloc((size_t)nf + 1, sizeof *cells);
    struct table *t = NULL;
    int rc = CTL_FAILED;
    if (names == NULL || cells == NULL)
        goto out;
    for (int k = 0; k < nf; k++)
        names[k] = PQfname(r, k);
    if ((t = table_new((size_t)nf, names)) == NULL)
        goto out;
    for (int i = 0; i < PQntuples(r); i++) {
        for (int k = 0; k < nf; k++)
            cells[k] = PQgetisnull(r, i, k) ? "" : PQgetvalue(r, i, k);
        if (table_add_row(t, cells) != 0)
            goto out;
    }
    char *text = table_render_pretty(t, NULL);
    if (text != NULL) {
        fputs(text, stdout);
        free(text);
        rc = CTL_OK;
    }
out:
    if (rc != CTL_OK)
        ctl_err(c, "out of memory");
    table_free(t);
    free(names);
    free(cells);
    return rc;
}

static int print_result(const struct ctl *c, const PGresult *r, const struct query_args *a)
{
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQnfields(r) == 0)
        return CTL_OK; /* a command without rows prints nothing, as patronictl */
    switch (a->format) {
    case CTL_FMT_TSV: return print_tsv_rows(r, a->delimiter);
    case CTL_FMT_PRETTY: return print_pretty_rows(c, r);
    default: return print_json_rows(c, r, a->format);
    }
}

/* Run the SQL; on failure say which member and what PostgreSQL said. */
static int run_sql(struct ctl *c, struct pgconn *pc, const json_t *m, const char *sql,
                   const struct query_args *a)
{
    struct sql_out o;
    sql_run(c, pc, sql, &o);
    int rc = CTL_FAILED;
    if (o.status == PGW_OK)
        rc = o.last != NULL ? print_result(c, o.last, a) : CTL_OK;
    else
        report_failure(c, m, &o, true);
    PQclear(o.last);
    return rc;
}

int ctl_cmd_query(struct ctl *c, struct ctl_iter *it)
{
    struct query_args a = {0};
    int rc = parse_args(c, it, query_opts, &a);
    if (rc != CTL_OK)
        return rc < 0 ? CTL_OK : rc;
    if (a.command != NULL && a.file != NULL) {
        ctl_err(c, "--file and --command are mutually exclusive options");
        return CTL_USAGE;
    }
    if (a.command == NULL && a.file == NULL) {
        ctl_err(c, "you need to specify either --command or --file");
        return CTL_USAGE;
    }
    char *sql = read_sql(c, &a);
    if (sql == NULL)
        return CTL_FAILED;
    char *password = NULL;
    json_t *cl = NULL;
    struct pgconn *pc = NULL;
    rc = CTL_FAILED;
    if (a.ask_password && (password = ask_password()) == NULL) {
        ctl_err(c, "no password given");
        goto out;
    }
    if ((rc = ctl_ready_cluster(c, &cl)) != CTL_OK)
        goto out;
    if ((rc = ctl_check_cluster_arg(c, cl, a.cluster_word)) != CTL_OK)
        goto out;
    rc = CTL_FAILED;
    const json_t *m = pick_member(c, cl, &a);
    if (m == NULL || (pc = member_conn(c, m, &a, password)) == NULL || !connect_and_check(c, pc, m, &a))
        goto out;
    rc = run_sql(c, pc, m, sql, &a);
out:
    if (pc != NULL)
        pgconn_destroy(pc);
    json_decref(cl);
    if (password != NULL)
        explicit_bzero(password, strlen(password));
    free(password);
    free(sql);
    return rc;
}

int ctl_cmd_dsn(struct ctl *c, struct ctl_iter *it)
{
    struct query_args a = {0};
    int rc = parse_args(c, it, dsn_opts, &a);
    if (rc != CTL_OK)
        return rc < 0 ? CTL_OK : rc;
    json_t *cl;
    if ((rc = ctl_ready_cluster(c, &cl)) != CTL_OK)
        return rc;
    rc = ctl_check_cluster_arg(c, cl, a.cluster_word);
    const json_t *m = rc == CTL_OK ? pick_member(c, cl, &a) : NULL;
    if (m != NULL)
        printf("host=%s port=%lld\n", json_string_value(json_object_get(m, "host")),
               (long long)json_integer_value(json_object_get(m, "port")));
    else
        rc = CTL_FAILED;
    json_decref(cl);
    return rc;
}
