/* YAML node -> typed struct field, one parser per type of the key table.
 * YAML files, environment variables, JSON (PATCH /config) and the table's
 * documented defaults all come through cfg__parse_value, so they accept
 * exactly the same values and fail with the same messages. */
#include <ctype.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/cfg_internal.h"

static int nomem(struct cfg__perr *pe)
{
    snprintf(pe->why, sizeof pe->why, "out of memory");
    return PGW_ENOMEM;
}

/* "got \"text\"" or "got a list" for messages; secrets are never echoed. */
static const char *got(const struct cfg_key *k, const struct ynode *v, char *buf, size_t len)
{
    if (v->kind != YN_SCALAR) {
        snprintf(buf, len, "%s", ynode_kind_name(v));
        return buf;
    }
    if (k != NULL && (k->flags & KF_SECRET)) {
        snprintf(buf, len, "a value (not shown: secret)");
        return buf;
    }
    cfg__quote(v->text, buf, len);
    return buf;
}

static int scalar(const struct cfg_key *k, const struct ynode *v, const char *expected,
                  struct cfg__perr *pe, const char **out)
{
    char g[96];
    if (v->kind != YN_SCALAR || ynode_is_null(v))
        return cfg__perr(pe, v, "expected %s, got %s", expected,
                         ynode_is_null(v) ? "nothing" : got(k, v, g, sizeof g));
    *out = v->text;
    return PGW_OK;
}

static int set_str(char **dst, const char *s, struct cfg__perr *pe)
{
    char *copy = strdup(s);
    if (copy == NULL)
        return nomem(pe);
    free(*dst);
    *dst = copy;
    return PGW_OK;
}

/* ---------- per-type parsers ---------- */

static int parse_bool(const struct cfg_key *k, const struct ynode *v, bool *dst,
                      struct cfg__perr *pe)
{
    const char *s = NULL;
    char g[96];
    bool b;
    if (scalar(k, v, "true or false", pe, &s) != 0)
        return PGW_EINVAL;
    if (!cfg__bool_word(s, &b))
        return cfg__perr(pe, v, "expected true or false, got %s", got(k, v, g, sizeof g));
    *dst = b;
    return PGW_OK;
}

static int check_bounds(const struct cfg_key *k, const struct ynode *v, long long val,
                        bool seconds, struct cfg__perr *pe)
{
    char lo[32], hi[32];
    if (seconds) {
        cfg__fmt_seconds((uint64_t)(k->min > 0 ? k->min : 0), lo, sizeof lo);
        cfg__fmt_seconds((uint64_t)(k->max > 0 ? k->max : 0), hi, sizeof hi);
    } else {
        snprintf(lo, sizeof lo, "%lld", k->min);
        snprintf(hi, sizeof hi, "%lld", k->max);
    }
    const char *unit = seconds ? " s" : "";
    char g[96];
    if ((k->flags & KF_MIN) && val < k->min)
        return cfg__perr(pe, v, "must be at least %s%s, got %s", lo, unit, got(k, v, g, sizeof g));
    if ((k->flags & KF_MAX) && val > k->max)
        return cfg__perr(pe, v, "must be at most %s%s, got %s", hi, unit, got(k, v, g, sizeof g));
    return PGW_OK;
}

static int parse_duration(const struct cfg_key *k, const struct ynode *v, uint32_t *dst,
                          struct cfg__perr *pe)
{
    const char *s = NULL;
    char g[96];
    uint64_t ms;
    bool neg;
    if (scalar(k, v, "a number of seconds", pe, &s) != 0)
        return PGW_EINVAL;
    int rc = cfg__parse_duration_ms(s, &ms, &neg);
    if (rc == CFG__DUR_TOO_LARGE)
        return cfg__perr(pe, v, "expected a number of seconds below 4294967, got %s",
                         got(k, v, g, sizeof g));
    if (rc != 0)
        return cfg__perr(pe, v, "expected a number of seconds, got %s", got(k, v, g, sizeof g));
    if (neg && ms != 0)
        return cfg__perr(pe, v, "expected a number of seconds >= 0, got %s", got(k, v, g, sizeof g));
    if (check_bounds(k, v, (long long)ms, true, pe) != 0)
        return PGW_EINVAL;
    *dst = (uint32_t)ms;
    return PGW_OK;
}

static int parse_integer(const struct cfg_key *k, const struct ynode *v, long long lo,
                         long long hi, long long *out, struct cfg__perr *pe)
{
    const char *s = NULL;
    char g[96];
    long long val;
    if (scalar(k, v, "a whole number", pe, &s) != 0)
        return PGW_EINVAL;
    if (!cfg__parse_ll(s, &val))
        return cfg__perr(pe, v, "expected a whole number, got %s", got(k, v, g, sizeof g));
    if (val < lo || val > hi)
        return cfg__perr(pe, v, "expected a whole number from %lld to %lld, got %s", lo, hi,
                         got(k, v, g, sizeof g));
    if (check_bounds(k, v, val, false, pe) != 0)
        return PGW_EINVAL;
    *out = val;
    return PGW_OK;
}

static int parse_size_node(const struct cfg_key *k, const struct ynode *v, bool allow_off,
                           void *dst, struct cfg__perr *pe)
{
    const char *s = NULL;
    char g[96];
    uint64_t n;
    const char *exp = allow_off ? "a size in bytes (or with kB, MB, GB, TB) or -1"
                                : "a size in bytes (or with kB, MB, GB, TB)";
    if (scalar(k, v, exp, pe, &s) != 0)
        return PGW_EINVAL;
    if (allow_off && strcmp(s, "-1") == 0) {
        *(int64_t *)dst = -1;
        return PGW_OK;
    }
    if (cfg_parse_size(s, &n) != 0 || (allow_off && n > INT64_MAX))
        return cfg__perr(pe, v, "expected %s, got %s", exp, got(k, v, g, sizeof g));
    if (allow_off)
        *(int64_t *)dst = (int64_t)n;
    else
        *(uint64_t *)dst = n;
    return PGW_OK;
}

static int parse_ident(const struct cfg_key *k, const struct ynode *v, char **dst,
                       struct cfg__perr *pe)
{
    const char *s = NULL;
    char g[96];
    if (scalar(k, v, "a name", pe, &s) != 0)
        return PGW_EINVAL;
    size_t n = strlen(s);
    bool ok = n > 0 && n <= 63;
    for (size_t i = 0; ok && i < n; i++)
        ok = isalnum((unsigned char)s[i]) || s[i] == '_' || s[i] == '.' || s[i] == '-';
    if (!ok)
        return cfg__perr(pe, v,
                         "expected 1 to 63 characters from A-Z, a-z, 0-9, '_', '.' and '-', got %s",
                         got(k, v, g, sizeof g));
    return set_str(dst, s, pe);
}

static int parse_choice(const struct cfg_key *k, const struct ynode *v, char **dst,
                        struct cfg__perr *pe)
{
    const char *s = NULL;
    char g[96], ch[256];
    cfg__choices_text(k->choices, ch, sizeof ch);
    if (scalar(k, v, ch, pe, &s) != 0)
        return PGW_EINVAL;
    if (!cfg__in_choices(k->choices, s))
        return cfg__perr(pe, v, "expected %s, got %s", ch, got(k, v, g, sizeof g));
    return set_str(dst, s, pe);
}

static int parse_hostport_node(const struct cfg_key *k, const struct ynode *v, bool list,
                               struct cfg_hostport *dst, struct cfg__perr *pe)
{
    const char *s = NULL;
    char g[96], why[200];
    if (scalar(k, v, "host:port", pe, &s) != 0)
        return PGW_EINVAL;
    int rc = cfg__parse_hostport(s, list, dst, why, sizeof why);
    if (rc == PGW_ENOMEM)
        return nomem(pe);
    if (rc != 0)
        return cfg__perr(pe, v, "expected host:port, got %s%s%s%s", got(k, v, g, sizeof g),
                         why[0] ? " (" : "", why, why[0] ? ")" : "");
    return PGW_OK;
}

static int ipv4_item(const struct cfg_key *k, const struct ynode *v, char **dst,
                     struct cfg__perr *pe)
{
    const char *s = NULL;
    char g[96], why[200];
    if (scalar(k, v, "a.b.c.d:port", pe, &s) != 0)
        return PGW_EINVAL;
    char host[16], norm[32];
    uint16_t port;
    if (cfg__parse_ipv4(s, host, sizeof host, &port, why, sizeof why) != 0)
        return cfg__perr(pe, v, "expected a.b.c.d:port, got %s (%s)", got(k, v, g, sizeof g), why);
    /* Normalised ("10.0.0.1:05010" -> "10.0.0.1:5010") so equal addresses compare equal. */
    snprintf(norm, sizeof norm, "%s:%u", host, (unsigned)port);
    return set_str(dst, norm, pe);
}

static int need_seq(const struct cfg_key *k, const struct ynode *v, const char *what,
                    struct cfg__perr *pe)
{
    char g[96];
    if (v->kind != YN_SEQ)
        return cfg__perr(pe, v, "expected a list of %s, got %s", what, got(k, v, g, sizeof g));
    return PGW_OK;
}

static int parse_ipv4list(const struct cfg_key *k, const struct ynode *v,
                          struct cfg_strlist *dst, struct cfg__perr *pe)
{
    if (need_seq(k, v, "a.b.c.d:port addresses", pe) != 0)
        return PGW_EINVAL;
    struct cfg_strlist l = {0};
    for (size_t i = 0; i < v->n; i++) {
        char *one = NULL;
        snprintf(pe->sub, sizeof pe->sub, "[%zu]", i);
        if (ipv4_item(k, v->items[i], &one, pe) != 0)
            goto fail;
        for (size_t j = 0; j < l.n; j++) {
            if (strcmp(l.items[j], one) == 0) {
                cfg__perr(pe, v->items[i], "%s is listed twice (also at [%zu])", one, j);
                free(one);
                goto fail;
            }
        }
        int rc = cfg__strlist_push(&l, one);
        free(one);
        if (rc != 0) {
            nomem(pe);
            goto fail;
        }
    }
    pe->sub[0] = '\0';
    cfg__strlist_free(dst);
    *dst = l;
    return PGW_OK;
fail:
    cfg__strlist_free(&l);
    return PGW_EINVAL;
}

static int parse_strlist(const struct cfg_key *k, const struct ynode *v, struct cfg_strlist *dst,
                         struct cfg__perr *pe)
{
    char g[96], ch[256];
    if (need_seq(k, v, "strings", pe) != 0)
        return PGW_EINVAL;
    struct cfg_strlist l = {0};
    for (size_t i = 0; i < v->n; i++) {
        const struct ynode *it = v->items[i];
        snprintf(pe->sub, sizeof pe->sub, "[%zu]", i);
        if (it->kind != YN_SCALAR || ynode_is_null(it)) {
            cfg__perr(pe, it, "expected a string, got %s",
                      ynode_is_null(it) ? "nothing" : got(k, it, g, sizeof g));
            goto fail;
        }
        if (k->choices != NULL && !cfg__in_choices(k->choices, it->text)) {
            cfg__choices_text(k->choices, ch, sizeof ch);
            cfg__perr(pe, it, "expected %s (the only method%s pgwarden implements), got %s", ch,
                      strchr(k->choices, '|') ? "s" : "", got(k, it, g, sizeof g));
            goto fail;
        }
        if (cfg__strlist_push(&l, it->text) != 0) {
            nomem(pe);
            goto fail;
        }
    }
    pe->sub[0] = '\0';
    cfg__strlist_free(dst);
    *dst = l;
    return PGW_OK;
fail:
    cfg__strlist_free(&l);
    return PGW_EINVAL;
}

/* A PostgreSQL setting as text: YAML booleans become on/off, the rest as written. */
static const char *pg_text(const struct ynode *v)
{
    bool b;
    if (v->plain && cfg__bool_word(v->text, &b))
        return b ? "on" : "off";
    return v->text;
}

static bool valid_guc_name(const char *s)
{
    if (!(isalpha((unsigned char)*s) || *s == '_'))
        return false;
    for (; *s; s++) {
        if (!(isalnum((unsigned char)*s) || *s == '_' || *s == '.'))
            return false;
    }
    return true;
}

static int parse_params(const struct cfg_key *k, const struct ynode *v, struct cfg_kvlist *dst,
                        struct cfg__perr *pe)
{
    char g[96];
    bool settings = strstr(k->path, "parameters") != NULL;
    if (v->kind != YN_MAP)
        return cfg__perr(pe, v, "expected a mapping of name: value, got %s", got(k, v, g, sizeof g));
    struct cfg_kvlist l = {0};
    for (size_t i = 0; i + 1 < v->n; i += 2) {
        const struct ynode *kn = v->items[i], *vn = v->items[i + 1];
        snprintf(pe->sub, sizeof pe->sub, ".%.90s", kn->text);
        if (!valid_guc_name(kn->text)) {
            cfg__perr(pe, kn, "not a valid PostgreSQL parameter name");
            goto fail;
        }
        if (settings && (strcasecmp(kn->text, "port") == 0 ||
                         strcasecmp(kn->text, "listen_addresses") == 0)) {
            cfg__perr(pe, kn, "pgwarden sets %s from postgresql.listen; remove it here", kn->text);
            goto fail;
        }
        if (vn->kind != YN_SCALAR || ynode_is_null(vn)) {
            cfg__perr(pe, vn, "expected a string, number or boolean, got %s",
                      ynode_is_null(vn) ? "nothing" : got(k, vn, g, sizeof g));
            goto fail;
        }
        if (cfg__kvlist_push(&l, kn->text, pg_text(vn)) != 0) {
            nomem(pe);
            goto fail;
        }
    }
    pe->sub[0] = '\0';
    cfg__kvlist_free(dst);
    *dst = l;
    return PGW_OK;
fail:
    cfg__kvlist_free(&l);
    return PGW_EINVAL;
}

/* One option of initdb/pg_basebackup: "name" or "name=value". */
static int add_option(const struct cfg_key *k, const struct ynode *name_node,
                      const struct ynode *val, struct cfg_strlist *l, struct cfg__perr *pe)
{
    char g[96];
    const char *name = name_node->text;
    const char *prog = strncmp(k->path, "bootstrap", 9) == 0 ? "initdb" : "pg_basebackup";
    if (name[0] == '-')
        return cfg__perr(pe, name_node, "write the option without leading dashes, got %s",
                         got(k, name_node, g, sizeof g));
    bool ok = name[0] != '\0';
    for (const char *p = name; ok && *p; p++)
        ok = islower((unsigned char)*p) || isdigit((unsigned char)*p) || *p == '-';
    if (!ok)
        return cfg__perr(pe, name_node, "expected a %s long option name like %s, got %s", prog,
                         *prog == 'i' ? "data-checksums" : "checkpoint", got(k, name_node, g, sizeof g));
    if (cfg__in_choices(k->choices, name))
        return cfg__perr(pe, name_node,
                         "option %s is not allowed: pgwarden sets it itself when it runs %s", name,
                         prog);
    char opt[1024];
    if (val == NULL) {
        snprintf(opt, sizeof opt, "%s", name);
    } else {
        if (val->kind != YN_SCALAR || ynode_is_null(val))
            return cfg__perr(pe, val, "expected a value for option %s, got %s", name,
                             ynode_is_null(val) ? "nothing" : got(k, val, g, sizeof g));
        snprintf(opt, sizeof opt, "%s=%s", name, val->text);
    }
    return cfg__strlist_push(l, opt) == 0 ? PGW_OK : nomem(pe);
}

static int parse_options(const struct cfg_key *k, const struct ynode *v, struct cfg_strlist *dst,
                         struct cfg__perr *pe)
{
    char g[96];
    struct cfg_strlist l = {0};
    if (v->kind == YN_MAP) {
        for (size_t i = 0; i + 1 < v->n; i += 2) {
            snprintf(pe->sub, sizeof pe->sub, ".%.90s", v->items[i]->text);
            if (add_option(k, v->items[i], v->items[i + 1], &l, pe) != 0)
                goto fail;
        }
    } else if (v->kind == YN_SEQ) {
        for (size_t i = 0; i < v->n; i++) {
            const struct ynode *it = v->items[i];
            snprintf(pe->sub, sizeof pe->sub, "[%zu]", i);
            int rc;
            if (it->kind == YN_SCALAR && !ynode_is_null(it))
                rc = add_option(k, it, NULL, &l, pe);
            else if (it->kind == YN_MAP && it->n == 2)
                rc = add_option(k, it->items[0], it->items[1], &l, pe);
            else
                rc = cfg__perr(pe, it, "expected an option name or a single-key mapping like "
                               "`name: value`, got %s", got(k, it, g, sizeof g));
            if (rc != 0)
                goto fail;
        }
    } else {
        cfg__perr(pe, v, "expected a list of options, got %s", got(k, v, g, sizeof g));
        goto fail;
    }
    pe->sub[0] = '\0';
    cfg__strlist_free(dst);
    *dst = l;
    return PGW_OK;
fail:
    cfg__strlist_free(&l);
    return PGW_EINVAL;
}

static int parse_syncmode(const struct cfg_key *k, const struct ynode *v,
                          enum cfg_sync_mode *dst, struct cfg__perr *pe)
{
    const char *s = NULL;
    char g[96];
    bool b;
    if (scalar(k, v, "off, on or quorum", pe, &s) != 0)
        return PGW_EINVAL;
    if (strcasecmp(s, "quorum") == 0)
        *dst = CFG_SYNC_QUORUM;
    else if (cfg__bool_word(s, &b))
        *dst = b ? CFG_SYNC_ON : CFG_SYNC_OFF;
    else
        return cfg__perr(pe, v, "expected off, on or quorum, got %s", got(k, v, g, sizeof g));
    return PGW_OK;
}

static int parse_wdmode(const struct cfg_key *k, const struct ynode *v,
                        enum cfg_watchdog_mode *dst, struct cfg__perr *pe)
{
    const char *s = NULL;
    char g[96];
    bool b;
    if (scalar(k, v, "off, automatic or required", pe, &s) != 0)
        return PGW_EINVAL;
    if (strcasecmp(s, "automatic") == 0)
        *dst = CFG_WD_AUTOMATIC;
    else if (strcasecmp(s, "required") == 0)
        *dst = CFG_WD_REQUIRED;
    else if (cfg__bool_word(s, &b) && !b)
        *dst = CFG_WD_OFF;
    else
        return cfg__perr(pe, v, "expected off, automatic or required, got %s", got(k, v, g, sizeof g));
    return PGW_OK;
}

int cfg__parse_value(const struct cfg_key *k, const struct ynode *v, void *dst,
                     struct cfg__perr *pe)
{
    const char *s = NULL;
    char g[96];
    long long n;
    pe->at = v;
    pe->sub[0] = '\0';
    pe->why[0] = '\0';
    switch (k->type) {
    case KT_STR:
        if (scalar(k, v, "a string", pe, &s) != 0)
            return PGW_EINVAL;
        return set_str(dst, s, pe);
    case KT_IDENT:
        return parse_ident(k, v, dst, pe);
    case KT_CHOICE:
        return parse_choice(k, v, dst, pe);
    case KT_BOOL:
        return parse_bool(k, v, dst, pe);
    case KT_DURATION:
        return parse_duration(k, v, dst, pe);
    case KT_UINT:
        if (parse_integer(k, v, 0, UINT32_MAX, &n, pe) != 0)
            return PGW_EINVAL;
        *(uint32_t *)dst = (uint32_t)n;
        return PGW_OK;
    case KT_INT:
        if (parse_integer(k, v, INT_MIN, INT_MAX, &n, pe) != 0)
            return PGW_EINVAL;
        *(int *)dst = (int)n;
        return PGW_OK;
    case KT_SIZE:
        return parse_size_node(k, v, false, dst, pe);
    case KT_LAG:
        return parse_size_node(k, v, true, dst, pe);
    case KT_HOSTPORT:
        return parse_hostport_node(k, v, false, dst, pe);
    case KT_PGLISTEN:
        return parse_hostport_node(k, v, true, dst, pe);
    case KT_IPV4:
        return ipv4_item(k, v, dst, pe);
    case KT_IPV4LIST:
        return parse_ipv4list(k, v, dst, pe);
    case KT_STRLIST:
        return parse_strlist(k, v, dst, pe);
    case KT_PARAMS:
        return parse_params(k, v, dst, pe);
    case KT_OPTIONS:
        return parse_options(k, v, dst, pe);
    case KT_SYNCMODE:
        return parse_syncmode(k, v, dst, pe);
    case KT_WDMODE:
        return parse_wdmode(k, v, dst, pe);
    case KT_LOGLEVEL:
        if (scalar(k, v, "debug, info, warning, error or critical", pe, &s) != 0)
            return PGW_EINVAL;
        if (log_level_parse(s, dst) != 0)
            return cfg__perr(pe, v, "expected debug, info, warning, error or critical, got %s",
                             got(k, v, g, sizeof g));
        return PGW_OK;
    case KT_LOGFORMAT:
        if (scalar(k, v, "plain or json", pe, &s) != 0)
            return PGW_EINVAL;
        if (strcasecmp(s, "plain") == 0)
            *(enum log_format *)dst = LOGF_PLAIN;
        else if (strcasecmp(s, "json") == 0)
            *(enum log_format *)dst = LOGF_JSON;
        else
            return cfg__perr(pe, v, "expected plain or json, got %s", got(k, v, g, sizeof g));
        return PGW_OK;
    case KT_SLOTS:
    case KT_SLOTMATCH:
        return cfg__slots_parse_value(k, v, dst, pe);
    case KT_USERS:
        return cfg__users_parse_value(v, dst, pe);
    case KT_SECTION:
        break;
    }
    return cfg__perr(pe, v, "internal error: key has no value type");
}

int cfg__apply_default(const struct cfg_key *k, void *dst)
{
    if (k->def == NULL)
        return PGW_OK;
    struct ytree t;
    struct cfg_error err;
    struct cfg__perr pe;
    int rc = ytree_parse("default", k->def, strlen(k->def), &t, &err);
    if (rc != 0)
        return rc;
    rc = t.root != NULL ? cfg__parse_value(k, t.root, dst, &pe) : PGW_EINVAL;
    ytree_free(&t);
    return rc;
}
