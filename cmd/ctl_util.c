/* ctl's HTTP calls, prompts and small output helpers.
 *
 * Happy path of a request: httpc_request_start on ctl's own loop, uv_run
 * until the callback has run and every handle is closed, copy the response.
 * Failure modes: the URL is unusable (returned at once), connect refused,
 * deadline passed, malformed response (all through the callback, each with
 * httpc's message). The request deadline bounds uv_run: httpc always calls
 * back by then. */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "cmd/ctl_internal.h"
#include "common/httpc.h"
#include "common/jsonyaml.h"

void ctl_err(const struct ctl *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (c->sub != NULL)
        fprintf(stderr, "ctl %s: ", c->sub);
    else
        fputs("ctl: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* --- HTTP ------------------------------------------------------------------------ */

void ctl_resp_free(struct ctl_resp *r)
{
    free(r->body);
    r->body = NULL;
    r->body_len = 0;
}

json_t *ctl_resp_json(const struct ctl_resp *r)
{
    if (r->body == NULL || r->body_len == 0)
        return NULL;
    return json_loadb(r->body, r->body_len, JSON_DECODE_ANY, NULL);
}

const char *ctl_resp_reason(const struct ctl_resp *r, char *buf, size_t len)
{
    if (r->status != 0) {
        snprintf(buf, len, "%s", r->error);
        return buf;
    }
    json_t *j = ctl_resp_json(r);
    const char *s = NULL;
    if (json_is_object(j)) {
        s = json_string_value(json_object_get(j, "error"));
        if (s == NULL)
            s = json_string_value(json_object_get(j, "message"));
    }
    if (s != NULL)
        snprintf(buf, len, "%s", s);
    else if (r->body != NULL && r->body_len > 0)
        snprintf(buf, len, "%.*s", (int)(r->body_len > 400 ? 400 : r->body_len), r->body);
    else
        snprintf(buf, len, "(no details)");
    json_decref(j);
    /* one line: a text body may end with a newline */
    size_t n = strlen(buf);
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        buf[--n] = '\0';
    return buf;
}

struct call {
    struct ctl_resp *r;
    bool done;
};

static void on_response(const struct httpc_response *resp, void *ctx)
{
    struct call *call = ctx;
    struct ctl_resp *r = call->r;
    call->done = true;
    r->status = resp->status;
    r->http_status = resp->http_status;
    if (resp->status != 0) {
        snprintf(r->error, sizeof r->error, "%s", resp->error);
        /* httpc says "connect to ..." or "cannot resolve ..." when nothing was sent */
        r->sent = strncmp(resp->error, "connect to ", 11) != 0 &&
                  strncmp(resp->error, "cannot resolve ", 15) != 0;
        return;
    }
    r->sent = true;
    r->body = malloc(resp->body_len + 1);
    if (r->body == NULL) {
        r->status = PGW_ENOMEM;
        snprintf(r->error, sizeof r->error, "out of memory");
        return;
    }
    memcpy(r->body, resp->body, resp->body_len);
    r->body[resp->body_len] = '\0';
    r->body_len = resp->body_len;
}

int ctl_request(struct ctl *c, const char *method, const char *url, const json_t *body,
                uint32_t timeout_ms, struct ctl_resp *r)
{
    memset(r, 0, sizeof *r);
    snprintf(r->url, sizeof r->url, "%s", url);
    char *text = NULL;
    if (body != NULL) {
        text = json_dumps(body, JSON_COMPACT);
        if (text == NULL) {
            r->status = PGW_ENOMEM;
            snprintf(r->error, sizeof r->error, "out of memory");
            return r->status;
        }
    }
    struct httpc_opts o = {
        .method = method,
        .url = url,
        .body = text,
        .body_len = text != NULL ? strlen(text) : 0,
        .auth_user = c->user,
        .auth_password = c->password,
        .timeout_ms = timeout_ms,
        .tls = {.cafile = c->cacert, .certfile = c->certfile, .keyfile = c->keyfile,
                .insecure = c->insecure},
    };
    struct call call = {.r = r};
    char err[384] = "";
    int rc = httpc_request_start(&c->loop, &o, on_response, &call, NULL, err, sizeof err);
    free(text);
    if (rc != 0) {
        r->status = rc;
        snprintf(r->error, sizeof r->error, "%s", err[0] ? err : pgw_strerror(rc));
        return rc;
    }
    /* bounded: httpc calls back at the latest when its deadline passes */
    uv_run(&c->loop, UV_RUN_DEFAULT);
    if (!call.done) {
        r->status = PGW_EPROTO;
        snprintf(r->error, sizeof r->error, "internal error: the request to %s did not complete", url);
    }
    return r->status;
}

int ctl_request_any(struct ctl *c, const char *method, const char *path, const json_t *body,
                    uint32_t timeout_ms, struct ctl_resp *r)
{
    char all[1024] = "";
    size_t used = 0;
    bool idempotent = strcmp(method, "GET") == 0;
    for (size_t k = 0; k < c->n_endpoints; k++) {
        size_t idx = (c->preferred + k) % c->n_endpoints;
        char url[1024];
        snprintf(url, sizeof url, "%s%s", c->endpoints[idx], path);
        if (k > 0)
            ctl_resp_free(r);
        int rc = ctl_request(c, method, url, body, timeout_ms, r);
        if (rc == 0) {
            c->preferred = idx;
            return 0;
        }
        int n = snprintf(all + used, sizeof all - used, "%s%s", used ? "; " : "", r->error);
        if (n > 0 && (size_t)n < sizeof all - used)
            used += (size_t)n;
        if (rc == PGW_EINVAL || (r->sent && !idempotent))
            return rc; /* the next endpoint would not do better, or it may have happened */
    }
    if (c->n_endpoints > 1)
        snprintf(r->error, sizeof r->error, "no endpoint answered: %s", all);
    return r->status;
}

json_t *ctl_get_json(struct ctl *c, const char *path)
{
    struct ctl_resp r;
    char why[512];
    if (ctl_request_any(c, "GET", path, NULL, CTL_GET_TIMEOUT_MS, &r) != 0) {
        ctl_err(c, "GET %s: %s", path, r.error);
        ctl_resp_free(&r);
        return NULL;
    }
    json_t *j = ctl_resp_json(&r);
    if (r.http_status != 200 || j == NULL) {
        ctl_err(c, "GET %s answered %d: %s", r.url, r.http_status, ctl_resp_reason(&r, why, sizeof why));
        json_decref(j);
        j = NULL;
    }
    ctl_resp_free(&r);
    return j;
}

void ctl_member_url(const char *api_url, const char *path, char *buf, size_t len)
{
    size_t n = strlen(api_url);
    while (n > 0 && api_url[n - 1] == '/')
        n--;
    /* Patroni publishes http://host:port/patroni */
    if (n >= 8 && strncmp(api_url + n - 8, "/patroni", 8) == 0)
        n -= 8;
    snprintf(buf, len, "%.*s%s", (int)n, api_url, path);
}

static void on_sleep_closed(uv_handle_t *h)
{
    (void)h;
}

static void on_sleep_done(uv_timer_t *t)
{
    uv_close((uv_handle_t *)t, on_sleep_closed);
}

void ctl_sleep_ms(struct ctl *c, uint64_t ms)
{
    uv_timer_t t;
    if (ms > 60000)
        ms = 60000;
    if (uv_timer_init(&c->loop, &t) != 0)
        return;
    uv_timer_start(&t, on_sleep_done, ms, 0);
    uv_run(&c->loop, UV_RUN_DEFAULT); /* returns once the timer has fired and closed */
}

static const char *phrase(int code)
{
    switch (code) {
    case 400: return " Bad Request";
    case 401: return " Unauthorized";
    case 403: return " Forbidden";
    case 404: return " Not Found";
    case 405: return " Method Not Allowed";
    case 409: return " Conflict";
    case 412: return " Precondition Failed";
    case 422: return " Unprocessable Entity";
    case 500: return " Internal Server Error";
    case 501: return " Not Implemented";
    case 502: return " Bad Gateway";
    case 503: return " Service Unavailable";
    default: return "";
    }
}

int ctl_refused(const struct ctl *c, const char *what, const struct ctl_resp *r)
{
    char why[1024];
    ctl_resp_reason(r, why, sizeof why);
    if (r->status != 0)
        ctl_err(c, "%s: %s", what, why);
    else
        ctl_err(c, "%s refused by %s (%d%s): %s", what, r->url, r->http_status, phrase(r->http_status), why);
    return CTL_FAILED;
}

/* --- prompts -------------------------------------------------------------------- */

bool ctl_interactive(void)
{
    return isatty(STDIN_FILENO) == 1;
}

int ctl_need_confirmation_ok(const struct ctl *c, const char *action)
{
    if (c->force || ctl_interactive())
        return CTL_OK;
    ctl_err(c, "standard input is not a terminal, so I cannot ask before %s: add --force", action);
    return CTL_USAGE;
}

char *ctl_prompt(const char *question, const char *dflt)
{
    if (dflt != NULL)
        printf("%s [%s]: ", question, dflt);
    else
        printf("%s: ", question);
    fflush(stdout);
    char *line = NULL;
    size_t cap = 0;
    ssize_t n = getline(&line, &cap, stdin);
    if (n < 0) {
        free(line);
        return NULL;
    }
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r' || line[n - 1] == ' '))
        line[--n] = '\0';
    char *s = line;
    while (*s == ' ')
        s++;
    if (*s == '\0' && dflt != NULL) {
        free(line);
        return strdup(dflt);
    }
    memmove(line, s, strlen(s) + 1);
    return line;
}

bool ctl_confirm(const struct ctl *c, const char *fmt, ...)
{
    if (c->force)
        return true;
    char q[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(q, sizeof q, fmt, ap);
    va_end(ap);
    for (int tries = 0; tries < 5; tries++) {
        char *a = ctl_prompt(q, "y/N");
        if (a == NULL)
            return false;
        bool yes = strcasecmp(a, "y") == 0 || strcasecmp(a, "yes") == 0;
        bool no = strcasecmp(a, "n") == 0 || strcasecmp(a, "no") == 0 || strcmp(a, "y/N") == 0;
        free(a);
        if (yes || no)
            return yes;
        printf("Please answer y or n.\n");
    }
    return false;
}

/* --- output ----------------------------------------------------------------------- */

int ctl_print_doc(const struct ctl *c, const json_t *j)
{
    char *s;
    if (c->format == CTL_FMT_JSON)
        s = json_dumps(j, JSON_INDENT(2) | JSON_ENCODE_ANY);
    else
        s = jy_to_yaml(j);
    if (s == NULL) {
        ctl_err(c, "out of memory");
        return CTL_FAILED;
    }
    fputs(s, stdout);
    if (c->format == CTL_FMT_JSON)
        fputc('\n', stdout);
    free(s);
    return CTL_OK;
}

void ctl_now(char *buf, size_t len)
{
    time_t t = time(NULL);
    struct tm tm;
    localtime_r(&t, &tm);
    strftime(buf, len, "%Y-%m-%d %H:%M:%S", &tm);
}

static bool two_digits(const char *p, int *v)
{
    if (!isdigit((unsigned char)p[0]) || !isdigit((unsigned char)p[1]))
        return false;
    *v = (p[0] - '0') * 10 + (p[1] - '0');
    return true;
}

bool ctl_parse_time(const char *s, char *out, size_t len)
{
    int Y, M, D, h, m, sec = 0, n = 0;
    if (sscanf(s, "%4d-%2d-%2d%n", &Y, &M, &D, &n) != 3 || n != 10)
        return false;
    const char *p = s + n;
    if (*p != 'T' && *p != 't' && *p != ' ')
        return false;
    p++;
    if (!two_digits(p, &h) || p[2] != ':' || !two_digits(p + 3, &m))
        return false;
    p += 5;
    char frac[8] = "";
    if (*p == ':') {
        if (!two_digits(p + 1, &sec))
            return false;
        p += 3;
        if (*p == '.') {
            size_t k = 0;
            p++;
            while (isdigit((unsigned char)*p)) {
                if (k < 3)
                    frac[k++] = *p;
                p++;
            }
            frac[k] = '\0';
            if (k == 0)
                return false;
        }
    }
    if (M < 1 || M > 12 || D < 1 || D > 31 || h > 23 || m > 59 || sec > 59)
        return false;
    char tz[8];
    if (*p == 'Z' || *p == 'z') {
        snprintf(tz, sizeof tz, "+00:00");
        p++;
    } else if (*p == '+' || *p == '-') {
        int oh, om;
        char sign = *p;
        if (two_digits(p + 1, &oh) && p[3] == ':' && two_digits(p + 4, &om))
            p += 6;
        else if (two_digits(p + 1, &oh) && two_digits(p + 3, &om))
            p += 5;
        else if (two_digits(p + 1, &oh) && (p[3] == '\0')) {
            om = 0;
            p += 3;
        } else
            return false;
        if (oh > 23 || om > 59)
            return false;
        snprintf(tz, sizeof tz, "%c%02d:%02d", sign, oh, om);
    } else if (*p == '\0') {
        /* no zone: the local one at that moment, as patronictl assumes */
        struct tm tm = {.tm_year = Y - 1900, .tm_mon = M - 1, .tm_mday = D, .tm_hour = h,
                        .tm_min = m, .tm_sec = sec, .tm_isdst = -1};
        if (mktime(&tm) == (time_t)-1)
            return false;
        long off = tm.tm_gmtoff;
        char sign = off < 0 ? '-' : '+';
        if (off < 0)
            off = -off;
        snprintf(tz, sizeof tz, "%c%02ld:%02ld", sign, off / 3600, (off % 3600) / 60);
    } else {
        return false;
    }
    if (*p != '\0')
        return false;
    snprintf(out, len, "%04d-%02d-%02dT%02d:%02d:%02d%s%s%s", Y, M, D, h, m, sec, frac[0] ? "." : "",
             frac, tz);
    return true;
}

/* --- the cluster view ---------------------------------------------------------------- */

const json_t *ctl_member(const json_t *cluster, const char *name)
{
    size_t i;
    json_t *m;
    json_array_foreach(json_object_get(cluster, "members"), i, m) {
        const char *n = json_string_value(json_object_get(m, "name"));
        if (n != NULL && strcmp(n, name) == 0)
            return m;
    }
    return NULL;
}

const char *ctl_leader(const json_t *cluster)
{
    size_t i;
    json_t *m;
    json_array_foreach(json_object_get(cluster, "members"), i, m) {
        const char *role = json_string_value(json_object_get(m, "role"));
        if (role != NULL && strcmp(role, "leader") == 0)
            return json_string_value(json_object_get(m, "name"));
    }
    return NULL;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

void ctl_member_names(const json_t *cluster, char *buf, size_t len)
{
    const char *names[256];
    size_t n = 0, used = 0, i;
    json_t *m;
    json_array_foreach(json_object_get(cluster, "members"), i, m) {
        const char *name = json_string_value(json_object_get(m, "name"));
        if (name != NULL && n < sizeof names / sizeof names[0])
            names[n++] = name;
    }
    qsort(names, n, sizeof names[0], cmp_str);
    buf[0] = '\0';
    for (size_t k = 0; k < n; k++) {
        int w = snprintf(buf + used, len - used, "%s%s", used ? ", " : "", names[k]);
        if (w < 0 || (size_t)w >= len - used)
            break;
        used += (size_t)w;
    }
    if (used == 0)
        snprintf(buf, len, "none");
}

int ctl_check_cluster_arg(const struct ctl *c, const json_t *cluster, const char *word)
{
    const char *scope = json_string_value(json_object_get(cluster, "scope"));
    if (word == NULL || (scope != NULL && strcmp(word, scope) == 0))
        return CTL_OK;
    ctl_err(c, "this endpoint serves cluster \"%s\", not \"%s\"", scope ? scope : "?", word);
    return CTL_FAILED;
}

bool ctl_parse_seconds(const struct ctl *c, const char *opt, const char *val, double min,
                       bool min_inclusive, double max, double *out)
{
    char *end;
    double v = strtod(val, &end);
    if (*val == '\0' || *end != '\0' || !(min_inclusive ? v >= min : v > min) || !(v <= max)) {
        ctl_err(c, "%s expects seconds (%g %s s <= %g), got \"%s\"", opt, min,
                min_inclusive ? "<=" : "<", max, val);
        return false;
    }
    *out = v;
    return true;
}

/* --- roles (patronictl's -r) ---------------------------------------------------- */

bool ctl_role_matches(const json_t *m, enum ctl_role f)
{
    const char *role = json_string_value(json_object_get(m, "role"));
    bool primary = role != NULL && strcmp(role, "leader") == 0;
    bool standby_leader = role != NULL && strcmp(role, "standby_leader") == 0;
    switch (f) {
    case CTL_ROLE_ANY: return true;
    case CTL_ROLE_LEADER: return primary || standby_leader;
    case CTL_ROLE_PRIMARY: return primary;
    case CTL_ROLE_STANDBY_LEADER: return standby_leader;
    case CTL_ROLE_REPLICA: return !primary && !standby_leader;
    }
    return false;
}

int ctl_parse_role(const struct ctl *c, const char *v, enum ctl_role *f)
{
    if (strcmp(v, "any") == 0)
        *f = CTL_ROLE_ANY;
    else if (strcmp(v, "leader") == 0)
        *f = CTL_ROLE_LEADER;
    else if (strcmp(v, "primary") == 0 || strcmp(v, "master") == 0)
        *f = CTL_ROLE_PRIMARY;
    else if (strcmp(v, "standby-leader") == 0 || strcmp(v, "standby_leader") == 0)
        *f = CTL_ROLE_STANDBY_LEADER;
    else if (strcmp(v, "replica") == 0 || strcmp(v, "standby") == 0)
        *f = CTL_ROLE_REPLICA;
    else {
        ctl_err(c, "--role must be leader, primary, standby-leader, replica, standby or any, "
                   "not \"%s\"", v);
        return CTL_USAGE;
    }
    return CTL_OK;
}
