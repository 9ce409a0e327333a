/* JSON <-> YAML, merge patches, `-s key.path=value` and a unified diff for
 * `pgwarden ctl`; see jsonyaml.h. */
#include "common/jsonyaml.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

/* --- a growing output buffer ------------------------------------------------ */

struct out {
    char *s;
    size_t len, cap;
    bool failed;
};

static void put(struct out *o, const char *s, size_t n)
{
    if (o->failed)
        return;
    if (o->len + n + 1 > o->cap) {
        size_t cap = o->cap ? o->cap : 256;
        while (cap < o->len + n + 1)
            cap *= 2;
        char *p = realloc(o->s, cap);
        if (p == NULL) {
            o->failed = true;
            return;
        }
        o->s = p;
        o->cap = cap;
    }
    memcpy(o->s + o->len, s, n);
    o->len += n;
    o->s[o->len] = '\0';
}

static void puts_(struct out *o, const char *s)
{
    put(o, s, strlen(s));
}

static char *finish(struct out *o)
{
    if (o->failed) {
        free(o->s);
        return NULL;
    }
    return o->s != NULL ? o->s : strdup("");
}

static void seterr(char *errbuf, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void seterr(char *errbuf, size_t errlen, const char *fmt, ...)
{
    if (errbuf == NULL || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errbuf, errlen, fmt, ap);
    va_end(ap);
}

/* --- scalar resolution (PyYAML's YAML 1.1 rules, simplified) ---------------- */

static bool word_in(const char *s, const char *const *words)
{
    for (; *words != NULL; words++)
        if (strcmp(s, *words) == 0)
            return true;
    return false;
}

static const char *const null_words[] = {"", "~", "null", "Null", "NULL", NULL};
static const char *const true_words[] = {"true", "True", "TRUE", "yes", "Yes", "YES",
                                         "on", "On", "ON", NULL};
static const char *const false_words[] = {"false", "False", "FALSE", "no", "No", "NO",
                                          "off", "Off", "OFF", NULL};

/* Digits with optional '_' separators (not leading); at least one digit. */
static const char *digits(const char *p, bool *any)
{
    *any = false;
    while ((*p >= '0' && *p <= '9') || (*p == '_' && *any)) {
        if (*p != '_')
            *any = true;
        p++;
    }
    return p;
}

/* Copy s without '_' into buf; false if it does not fit. */
static bool strip_underscores(const char *s, char *buf, size_t len)
{
    size_t n = 0;
    for (; *s; s++) {
        if (*s == '_')
            continue;
        if (n + 1 >= len)
            return false;
        buf[n++] = *s;
    }
    buf[n] = '\0';
    return true;
}

static json_t *as_integer(const char *s)
{
    const char *p = s;
    if (*p == '+' || *p == '-')
        p++;
    char buf[64];
    if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) {
        const char *q = p + 2;
        if (*q == '\0' || strspn(q, "0123456789abcdefABCDEF_") != strlen(q) || *q == '_')
            return NULL;
    } else {
        bool any;
        const char *q = digits(p, &any);
        if (!any || *q != '\0')
            return NULL;
        /* "007": PyYAML reads octal; a config value written so is surely a
         * string (a file mode is quoted in practice), so keep it text. */
        if (p[0] == '0' && p[1] != '\0')
            return NULL;
    }
    if (!strip_underscores(s, buf, sizeof buf))
        return NULL;
    errno = 0;
    char *end;
    long long v = strtoll(buf, &end, 0);
    if (errno != 0 || *end != '\0')
        return NULL; /* out of range: stays a string */
    return json_integer((json_int_t)v);
}

static json_t *as_real(const char *s)
{
    const char *p = s;
    if (*p == '+' || *p == '-')
        p++;
    bool int_part, frac_part = false, dot = false, exp = false;
    p = digits(p, &int_part);
    if (*p == '.') {
        dot = true;
        p = digits(p + 1, &frac_part);
    }
    if (!int_part && !frac_part)
        return NULL;
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '+' || *p == '-')
            p++;
        bool any;
        p = digits(p, &any);
        if (!any)
            return NULL;
        exp = true;
    }
    if (*p != '\0' || (!dot && !exp))
        return NULL;
    char buf[128];
    if (!strip_underscores(s, buf, sizeof buf))
        return NULL;
    errno = 0;
    char *end;
    double d = strtod(buf, &end);
    if (errno != 0 || *end != '\0')
        return NULL;
    return json_real(d);
}

json_t *jy_scalar(const char *text)
{
    if (word_in(text, null_words))
        return json_null();
    if (word_in(text, true_words))
        return json_true();
    if (word_in(text, false_words))
        return json_false();
    json_t *n = as_integer(text);
    if (n == NULL)
        n = as_real(text);
    return n != NULL ? n : json_string(text);
}

/* Would this text read back as something other than this string? */
static bool needs_quotes(const char *s)
{
    json_t *j = jy_scalar(s);
    bool q = j == NULL || !json_is_string(j);
    json_decref(j);
    return q;
}

/* --- JSON -> YAML ----------------------------------------------------------- */

static int write_handler(void *data, unsigned char *buffer, size_t size)
{
    struct out *o = data;
    put(o, (const char *)buffer, size);
    return o->failed ? 0 : 1;
}

static void fmt_real(double d, char *buf, size_t len)
{
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, len, "%.*g", prec, d);
        if (strtod(buf, NULL) == d)
            break;
    }
    /* %g takes the exponent form for 10 at precision 1 ("1e+01"); a
     * configuration value (seconds, bytes) reads better, and parses with
     * pgwarden's own duration and size parsers, as a plain decimal. */
    double mag = d < 0 ? -d : d;
    if (strpbrk(buf, "eE") != NULL && mag >= 1e-4 && mag < 1e15) {
        for (int decimals = 0; decimals <= 17; decimals++) {
            snprintf(buf, len, "%.*f", decimals, d);
            if (strtod(buf, NULL) == d)
                break;
        }
    }
    /* keep it a float for YAML 1.1 readers: they need a '.' */
    if (strchr(buf, '.') == NULL && strchr(buf, 'n') == NULL) {
        char *e = strpbrk(buf, "eE");
        char tail[64];
        snprintf(tail, sizeof tail, "%s", e != NULL ? e : "");
        if (e != NULL)
            *e = '\0';
        size_t n = strlen(buf);
        snprintf(buf + n, len - n, ".0%s", tail);
    }
}

static int emit_scalar(yaml_emitter_t *e, const char *text, size_t len, bool is_string)
{
    yaml_event_t ev;
    yaml_scalar_style_t style = YAML_PLAIN_SCALAR_STYLE;
    if (is_string)
        style = needs_quotes(text) ? YAML_SINGLE_QUOTED_SCALAR_STYLE : YAML_ANY_SCALAR_STYLE;
    if (!yaml_scalar_event_initialize(&ev, NULL, NULL, (yaml_char_t *)text, (int)len, 1, 1, style))
        return -1;
    return yaml_emitter_emit(e, &ev) ? 0 : -1;
}

static int emit_node(yaml_emitter_t *e, const json_t *j, int depth)
{
    yaml_event_t ev;
    char buf[64];
    if (depth > 1000)
        return -1;
    switch (json_typeof(j)) {
    case JSON_OBJECT: {
        if (!yaml_mapping_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_MAPPING_STYLE) ||
            !yaml_emitter_emit(e, &ev))
            return -1;
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)j, k, v) {
            if (emit_scalar(e, k, strlen(k), true) != 0 || emit_node(e, v, depth + 1) != 0)
                return -1;
        }
        if (!yaml_mapping_end_event_initialize(&ev) || !yaml_emitter_emit(e, &ev))
            return -1;
        return 0;
    }
    case JSON_ARRAY: {
        if (!yaml_sequence_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_SEQUENCE_STYLE) ||
            !yaml_emitter_emit(e, &ev))
            return -1;
        size_t i;
        json_t *v;
        json_array_foreach(j, i, v) {
            if (emit_node(e, v, depth + 1) != 0)
                return -1;
        }
        if (!yaml_sequence_end_event_initialize(&ev) || !yaml_emitter_emit(e, &ev))
            return -1;
        return 0;
    }
    case JSON_STRING:
        return emit_scalar(e, json_string_value(j), json_string_length(j), true);
    case JSON_INTEGER:
        snprintf(buf, sizeof buf, "%" JSON_INTEGER_FORMAT, json_integer_value(j));
        return emit_scalar(e, buf, strlen(buf), false);
    case JSON_REAL:
        fmt_real(json_real_value(j), buf, sizeof buf);
        return emit_scalar(e, buf, strlen(buf), false);
    case JSON_TRUE:
        return emit_scalar(e, "true", 4, false);
    case JSON_FALSE:
        return emit_scalar(e, "false", 5, false);
    case JSON_NULL:
    default:
        return emit_scalar(e, "null", 4, false);
    }
}

char *jy_to_yaml(const json_t *j)
{
    yaml_emitter_t e;
    yaml_event_t ev;
    struct out o = {0};
    if (!yaml_emitter_initialize(&e))
        return NULL;
    yaml_emitter_set_output(&e, write_handler, &o);
    yaml_emitter_set_unicode(&e, 1);
    yaml_emitter_set_width(&e, -1);
    yaml_emitter_set_indent(&e, 2);
    int rc = -1;
    if (!yaml_stream_start_event_initialize(&ev, YAML_UTF8_ENCODING) || !yaml_emitter_emit(&e, &ev))
        goto done;
    if (!yaml_document_start_event_initialize(&ev, NULL, NULL, NULL, 1) || !yaml_emitter_emit(&e, &ev))
        goto done;
    if (emit_node(&e, j, 0) != 0)
        goto done;
    if (!yaml_document_end_event_initialize(&ev, 1) || !yaml_emitter_emit(&e, &ev))
        goto done;
    if (!yaml_stream_end_event_initialize(&ev) || !yaml_emitter_emit(&e, &ev))
        goto done;
    rc = yaml_emitter_flush(&e) ? 0 : -1;
done:
    yaml_emitter_delete(&e);
    if (rc != 0) {
        free(o.s);
        return NULL;
    }
    return finish(&o);
}

/* --- YAML -> JSON ----------------------------------------------------------- */

struct frame {
    json_t *node; /* object or array (borrowed: owned by its parent or root) */
    char *key;    /* object: the key waiting for its value */
};

struct reader {
    struct frame stack[JY_MAX_DEPTH + 1];
    int depth;
    json_t *root;
    char *errbuf;
    size_t errlen;
};

static int place(struct reader *r, json_t *v, const yaml_mark_t *m)
{
    if (v == NULL) {
        seterr(r->errbuf, r->errlen, "out of memory");
        return -1;
    }
    if (r->depth == 0) {
        if (r->root != NULL) {
            json_decref(v);
            seterr(r->errbuf, r->errlen, "line %zu, column %zu: more than one value at the top",
                   m->line + 1, m->column + 1);
            return -1;
        }
        r->root = v;
        return 0;
    }
    struct frame *f = &r->stack[r->depth - 1];
    int rc;
    if (json_is_array(f->node)) {
        rc = json_array_append_new(f->node, v);
    } else {
        rc = json_object_set_new(f->node, f->key, v);
        free(f->key);
        f->key = NULL;
    }
    if (rc != 0)
        seterr(r->errbuf, r->errlen, "line %zu, column %zu: cannot store this value", m->line + 1,
               m->column + 1);
    return rc == 0 ? 0 : -1;
}

static bool awaiting_key(const struct reader *r)
{
    if (r->depth == 0)
        return false;
    const struct frame *f = &r->stack[r->depth - 1];
    return json_is_object(f->node) && f->key == NULL;
}

static int on_scalar(struct reader *r, const yaml_event_t *ev)
{
    const char *text = (const char *)ev->data.scalar.value;
    size_t len = ev->data.scalar.length;
    const yaml_mark_t *m = &ev->start_mark;
    if (awaiting_key(r)) {
        struct frame *f = &r->stack[r->depth - 1];
        if (strlen(text) != len) {
            seterr(r->errbuf, r->errlen, "line %zu, column %zu: NUL byte in a key", m->line + 1,
                   m->column + 1);
            return -1;
        }
        if (json_object_get(f->node, text) != NULL) {
            seterr(r->errbuf, r->errlen, "line %zu, column %zu: duplicate key \"%s\"", m->line + 1,
                   m->column + 1, text);
            return -1;
        }
        f->key = strdup(text);
        if (f->key == NULL) {
            seterr(r->errbuf, r->errlen, "out of memory");
            return -1;
        }
        return 0;
    }
    const char *tag = (const char *)ev->data.scalar.tag;
    json_t *v;
    if ((tag != NULL && strcmp(tag, YAML_STR_TAG) == 0) || ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        v = json_stringn(text, len);
    else
        v = jy_scalar(text);
    return place(r, v, m);
}

static int on_start(struct reader *r, const yaml_event_t *ev, bool mapping)
{
    const yaml_mark_t *m = &ev->start_mark;
    if (awaiting_key(r)) {
        seterr(r->errbuf, r->errlen, "line %zu, column %zu: a mapping key must be a scalar",
               m->line + 1, m->column + 1);
        return -1;
    }
    if (r->depth >= JY_MAX_DEPTH) {
        seterr(r->errbuf, r->errlen, "line %zu, column %zu: nested deeper than %d levels",
               m->line + 1, m->column + 1, JY_MAX_DEPTH);
        return -1;
    }
    json_t *c = mapping ? json_object() : json_array();
    if (c == NULL || place(r, c, m) != 0)
        return -1;
    r->stack[r->depth].node = c;
    r->stack[r->depth].key = NULL;
    r->depth++;
    return 0;
}

json_t *jy_from_yaml(const char *text, size_t len, char *errbuf, size_t errlen)
{
    if (len > JY_MAX_BYTES) {
        seterr(errbuf, errlen, "the document is larger than %u bytes", JY_MAX_BYTES);
        return NULL;
    }
    yaml_parser_t p;
    if (!yaml_parser_initialize(&p)) {
        seterr(errbuf, errlen, "out of memory");
        return NULL;
    }
    yaml_parser_set_input_string(&p, (const unsigned char *)text, len);
    struct reader r = {.errbuf = errbuf, .errlen = errlen};
    int docs = 0;
    bool done = false, failed = false;
    while (!done && !failed) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&p, &ev)) {
            if (p.context != NULL)
                seterr(errbuf, errlen, "line %zu, column %zu: %s %s", p.problem_mark.line + 1,
                       p.problem_mark.column + 1, p.problem ? p.problem : "syntax error", p.context);
            else
                seterr(errbuf, errlen, "line %zu, column %zu: %s", p.problem_mark.line + 1,
                       p.problem_mark.column + 1, p.problem ? p.problem : "syntax error");
            failed = true;
            break;
        }
        switch (ev.type) {
        case YAML_DOCUMENT_START_EVENT:
            if (++docs > 1) {
                seterr(errbuf, errlen, "line %zu, column %zu: only one YAML document is expected",
                       ev.start_mark.line + 1, ev.start_mark.column + 1);
                failed = true;
            }
            break;
        case YAML_ALIAS_EVENT:
            seterr(errbuf, errlen, "line %zu, column %zu: aliases (*%s) are not supported here",
                   ev.start_mark.line + 1, ev.start_mark.column + 1,
                   (const char *)ev.data.alias.anchor);
            failed = true;
            break;
        case YAML_SCALAR_EVENT:
            failed = on_scalar(&r, &ev) != 0;
            break;
        case YAML_SEQUENCE_START_EVENT:
        case YAML_MAPPING_START_EVENT:
            failed = on_start(&r, &ev, ev.type == YAML_MAPPING_START_EVENT) != 0;
            break;
        case YAML_SEQUENCE_END_EVENT:
        case YAML_MAPPING_END_EVENT:
            if (r.depth > 0) {
                r.depth--;
                free(r.stack[r.depth].key);
                r.stack[r.depth].key = NULL;
            }
            break;
        case YAML_STREAM_END_EVENT:
            done = true;
            break;
        default:
            break;
        }
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&p);
    for (int i = 0; i < r.depth; i++)
        free(r.stack[i].key);
    if (failed) {
        json_decref(r.root);
        return NULL;
    }
    return r.root != NULL ? r.root : json_null();
}

/* --- merge patches ---------------------------------------------------------- */

int jy_merge_patch_apply(json_t *target, const json_t *patch)
{
    if (!json_is_object(target) || !json_is_object(patch))
        return PGW_EINVAL;
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)patch, k, v) {
        if (json_is_null(v)) {
            json_object_del(target, k);
        } else if (json_is_object(v)) {
            json_t *t = json_object_get(target, k);
            if (!json_is_object(t)) {
                t = json_object();
                if (t == NULL || json_object_set_new(target, k, t) != 0)
                    return PGW_ENOMEM;
            }
            int rc = jy_merge_patch_apply(t, v);
            if (rc != 0)
                return rc;
        } else {
            json_t *c = json_deep_copy(v);
            if (c == NULL || json_object_set_new(target, k, c) != 0)
                return PGW_ENOMEM;
        }
    }
    return PGW_OK;
}

json_t *jy_merge_patch_diff(const json_t *from, const json_t *to)
{
    if (!json_is_object(from) || !json_is_object(to))
        return NULL;
    json_t *patch = json_object();
    if (patch == NULL)
        return NULL;
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)from, k, v) {
        if (json_object_get(to, k) == NULL && json_object_set_new(patch, k, json_null()) != 0)
            goto fail;
    }
    json_object_foreach((json_t *)to, k, v) {
        json_t *old = json_object_get(from, k);
        json_t *d = NULL;
        if (json_is_object(old) && json_is_object(v)) {
            d = jy_merge_patch_diff(old, v);
            if (d == NULL)
                goto fail;
            if (json_object_size(d) == 0) {
                json_decref(d);
                continue;
            }
        } else if (old == NULL || !json_equal(old, v)) {
            d = json_deep_copy(v);
            if (d == NULL)
                goto fail;
        } else {
            continue;
        }
        if (json_object_set_new(patch, k, d) != 0)
            goto fail;
    }
    return patch;
fail:
    json_decref(patch);
    return NULL;
}

/* --- key.path=value ------------------------------------------------------- */

#define JY_PATH_MAX 32

/* Set or delete path[0..n-1] under obj; removes objects a deletion empties. */
static int set_in(json_t *obj, char **path, size_t n, json_t *value)
{
    if (n == 1) {
        if (json_is_null(value)) {
            json_object_del(obj, path[0]);
            return 0;
        }
        return json_object_set(obj, path[0], value) == 0 ? 0 : PGW_ENOMEM;
    }
    json_t *child = json_object_get(obj, path[0]);
    if (!json_is_object(child)) {
        if (json_is_null(value))
            return 0; /* deleting below something that is not there */
        child = json_object();
        if (child == NULL || json_object_set_new(obj, path[0], child) != 0)
            return PGW_ENOMEM;
    }
    int rc = set_in(child, path + 1, n - 1, value);
    if (rc == 0 && json_object_size(child) == 0)
        json_object_del(obj, path[0]);
    return rc;
}

int jy_set_path(json_t *root, const char *assignment, char *errbuf, size_t errlen)
{
    const char *eq = strchr(assignment, '=');
    if (!json_is_object(root)) {
        seterr(errbuf, errlen, "the configuration is not a mapping");
        return PGW_EINVAL;
    }
    if (eq == NULL || eq == assignment) {
        seterr(errbuf, errlen, "expected key.path=value, got \"%s\"", assignment);
        return PGW_EINVAL;
    }
    size_t klen = (size_t)(eq - assignment);
    char *key = strndup(assignment, klen);
    if (key == NULL) {
        seterr(errbuf, errlen, "out of memory");
        return PGW_ENOMEM;
    }
    /* trim spaces around the key, as patronictl does */
    char *k = key;
    while (*k == ' ')
        k++;
    size_t kl = strlen(k);
    while (kl > 0 && k[kl - 1] == ' ')
        k[--kl] = '\0';
    char *path[JY_PATH_MAX];
    size_t n = 0;
    int rc = PGW_EINVAL;
    char *save = NULL;
    bool empty_part = kl == 0 || k[0] == '.' || k[kl - 1] == '.' || strstr(k, "..") != NULL;
    if (empty_part) {
        seterr(errbuf, errlen, "\"%.*s\": empty part in the key path", (int)klen, assignment);
        goto out;
    }
    for (char *part = strtok_r(k, ".", &save); part != NULL; part = strtok_r(NULL, ".", &save)) {
        if (n == JY_PATH_MAX) {
            seterr(errbuf, errlen, "\"%.*s\": more than %d parts in the key path", (int)klen,
                   assignment, JY_PATH_MAX);
            goto out;
        }
        path[n++] = part;
        /* a GUC name may contain dots: everything after postgresql.parameters is one key */
        if (n == 2 && strcmp(path[0], "postgresql") == 0 && strcmp(path[1], "parameters") == 0 &&
            save != NULL && *save != '\0') {
            path[n++] = save;
            break;
        }
    }
    char verr[256];
    json_t *value = jy_from_yaml(eq + 1, strlen(eq + 1), verr, sizeof verr);
    if (value == NULL) {
        seterr(errbuf, errlen, "\"%s\": the value is not valid YAML: %s", assignment, verr);
        goto out;
    }
    rc = set_in(root, path, n, value);
    json_decref(value);
    if (rc != 0)
        seterr(errbuf, errlen, "out of memory");
out:
    free(key);
    return rc;
}

/* --- unified diff ------------------------------------------------------------ */

struct lines {
    const char **l;
    size_t *len;
    size_t n;
};

static int split_lines(const char *s, struct lines *out)
{
    size_t n = 0;
    for (const char *p = s; *p; p++)
        if (*p == '\n')
            n++;
    if (*s != '\0' && s[strlen(s) - 1] != '\n')
        n++;
    out->n = 0;
    out->l = calloc(n + 1, sizeof *out->l);
    out->len = calloc(n + 1, sizeof *out->len);
    if (out->l == NULL || out->len == NULL)
        return PGW_ENOMEM;
    const char *p = s;
    while (*p != '\0') {
        const char *nl = strchr(p, '\n');
        size_t len = nl != NULL ? (size_t)(nl - p) : strlen(p);
        out->l[out->n] = p;
        out->len[out->n] = len;
        out->n++;
        p += len + (nl != NULL ? 1 : 0);
    }
    return PGW_OK;
}

static bool same_line(const struct lines *a, size_t i, const struct lines *b, size_t j)
{
    return a->len[i] == b->len[j] && memcmp(a->l[i], b->l[j], a->len[i]) == 0;
}

enum { OP_EQ, OP_DEL, OP_INS };

struct op {
    int kind;
    size_t ai, bi; /* positions in a and b when this op applies */
};

static void hunk_range(struct out *o, size_t start, size_t count)
{
    char buf[48];
    if (count == 1)
        snprintf(buf, sizeof buf, "%zu", start + 1);
    else
        snprintf(buf, sizeof buf, "%zu,%zu", count == 0 ? start : start + 1, count);
    puts_(o, buf);
}

char *jy_text_diff(const char *a, const char *b, const char *label_a, const char *label_b)
{
    struct lines la = {0}, lb = {0};
    struct op *ops = NULL;
    uint32_t *L = NULL;
    char *result = NULL;
    if (split_lines(a, &la) != 0 || split_lines(b, &lb) != 0)
        goto out;
    size_t n = la.n, m = lb.n;
    ops = calloc(n + m + 1, sizeof *ops);
    if (ops == NULL)
        goto out;
    size_t nops = 0;
    bool small = (n + 1) * (m + 1) <= 4u * 1024u * 1024u;
    if (small) {
        /* L[i][j]: length of the longest common subsequence of a[i..] and b[j..] */
        L = calloc((n + 1) * (m + 1), sizeof *L);
        if (L == NULL)
            goto out;
        for (size_t i = n; i-- > 0;)
            for (size_t j = m; j-- > 0;)
                L[i * (m + 1) + j] = same_line(&la, i, &lb, j)
                                         ? L[(i + 1) * (m + 1) + j + 1] + 1
                                         : (L[(i + 1) * (m + 1) + j] >= L[i * (m + 1) + j + 1]
                                                ? L[(i + 1) * (m + 1) + j]
                                                : L[i * (m + 1) + j + 1]);
        size_t i = 0, j = 0;
        while (i < n || j < m) {
            if (i < n && j < m && same_line(&la, i, &lb, j)) {
                ops[nops++] = (struct op){OP_EQ, i++, j++};
            } else if (j >= m || (i < n && L[(i + 1) * (m + 1) + j] >= L[i * (m + 1) + j + 1])) {
                ops[nops++] = (struct op){OP_DEL, i++, j};
            } else {
                ops[nops++] = (struct op){OP_INS, i, j++};
            }
        }
    } else {
        for (size_t i = 0; i < n; i++)
            ops[nops++] = (struct op){OP_DEL, i, 0};
        for (size_t j = 0; j < m; j++)
            ops[nops++] = (struct op){OP_INS, n, j};
    }

    struct out o = {0};
    const size_t ctx = 3;
    bool header = false;
    size_t k = 0;
    while (k < nops) {
        while (k < nops && ops[k].kind == OP_EQ)
            k++;
        if (k == nops)
            break;
        /* a hunk: from ctx lines before this change to ctx lines after the
         * last change that is at most 2*ctx equal lines from the previous one */
        size_t start = k > ctx ? k - ctx : 0;
        size_t last = k;
        size_t p = k;
        while (p < nops) {
            if (ops[p].kind != OP_EQ) {
                last = p;
                p++;
                continue;
            }
            size_t q = p;
            while (q < nops && ops[q].kind == OP_EQ)
                q++;
            if (q == nops || q - p > 2 * ctx)
                break;
            p = q;
        }
        size_t end = last + 1 + ctx < nops ? last + 1 + ctx : nops;
        size_t acount = 0, bcount = 0;
        for (size_t x = start; x < end; x++) {
            if (ops[x].kind != OP_INS)
                acount++;
            if (ops[x].kind != OP_DEL)
                bcount++;
        }
        if (!header) {
            puts_(&o, "--- ");
            puts_(&o, label_a);
            puts_(&o, "\n+++ ");
            puts_(&o, label_b);
            puts_(&o, "\n");
            header = true;
        }
        puts_(&o, "@@ -");
        hunk_range(&o, ops[start].ai, acount);
        puts_(&o, " +");
        hunk_range(&o, ops[start].bi, bcount);
        puts_(&o, " @@\n");
        for (size_t x = start; x < end; x++) {
            if (ops[x].kind == OP_EQ) {
                puts_(&o, " ");
                put(&o, la.l[ops[x].ai], la.len[ops[x].ai]);
            } else if (ops[x].kind == OP_DEL) {
                puts_(&o, "-");
                put(&o, la.l[ops[x].ai], la.len[ops[x].ai]);
            } else {
                puts_(&o, "+");
                put(&o, lb.l[ops[x].bi], lb.len[ops[x].bi]);
            }
            puts_(&o, "\n");
        }
        k = end;
    }
    result = finish(&o);
out:
    free(L);
    free(ops);
    free(la.l);
    free(la.len);
    free(lb.l);
    free(lb.len);
    return result;
}
