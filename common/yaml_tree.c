/* YAML -> struct ynode tree, from libyaml events, with the limits that keep a
 * hostile or broken file from costing more than a clear error message.
 *
 * Aliases are not deep-copied: an alias becomes a "borrowed" node that shares
 * its anchor's text and items but carries its own position. Its expanded size
 * still counts against YTREE_MAX_NODES, which is what stops "billion laughs"
 * (9 aliases of 9 aliases of ...) after a few thousand events instead of
 * after gigabytes. An anchor is registered only once its node is complete, so
 * an alias can never point into its own ancestor (no cycles). */
#include "common/yaml_tree.h"

#include "common/jsonyaml.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <yaml.h>

#define STR_TAG "tag:yaml.org,2002:str"

struct frame {
    struct ynode *node;
    struct ynode *key; /* MAP: key read, value pending */
    char *anchor;      /* anchor of this collection, registered at its end */
};

struct anchor {
    char *name;
    struct ynode *node;
};

struct builder {
    const char *name;
    const char *buf;
    size_t len;
    struct ytree *t;
    struct cfg_error *err;
    struct frame stack[YTREE_MAX_DEPTH];
    int depth;
    struct anchor *anchors;
    size_t nanchors;
    size_t total; /* nodes so far, aliases expanded */
    bool doc_seen;
};

bool ynode_is_null(const struct ynode *n)
{
    if (n == NULL)
        return true;
    if (n->kind != YN_SCALAR || !n->plain)
        return false;
    return n->len == 0 || strcmp(n->text, "~") == 0 || strcasecmp(n->text, "null") == 0;
}

const char *ynode_kind_name(const struct ynode *n)
{
    if (n == NULL)
        return "nothing";
    switch (n->kind) {
    case YN_SEQ: return "a list";
    case YN_MAP: return "a mapping";
    default: return "a scalar";
    }
}

/* The key path to where the builder is: map keys joined with '.', list
 * positions as [i]. `extra` is appended (a key not yet pushed). */
static void builder_path(const struct builder *b, const char *extra, char *out, size_t outlen)
{
    size_t used = 0;
    out[0] = '\0';
    for (int i = 0; i < b->depth; i++) {
        const struct frame *f = &b->stack[i];
        int n = 0;
        if (f->node->kind == YN_MAP && f->key != NULL)
            n = snprintf(out + used, outlen - used, "%s%s", used ? "." : "", f->key->text);
        else if (f->node->kind == YN_SEQ)
            n = snprintf(out + used, outlen - used, "[%zu]", f->node->n);
        if (n < 0 || (size_t)n >= outlen - used)
            return;
        used += (size_t)n;
    }
    if (extra != NULL)
        snprintf(out + used, outlen - used, "%s%s", used ? "." : "", extra);
}

__attribute__((format(printf, 5, 6)))
static int fail(struct builder *b, int line, int col, bool with_path, const char *fmt, ...)
{
    char what[512], path[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    path[0] = '\0';
    if (with_path)
        builder_path(b, NULL, path, sizeof path);
    b->err->line = line;
    b->err->column = col;
    if (path[0] != '\0')
        snprintf(b->err->msg, sizeof b->err->msg, "%s:%d:%d: %s: %s", b->name, line, col, path, what);
    else
        snprintf(b->err->msg, sizeof b->err->msg, "%s:%d:%d: %s", b->name, line, col, what);
    return PGW_EINVAL;
}

static int fail_nomem(struct builder *b)
{
    b->err->line = b->err->column = 0;
    snprintf(b->err->msg, sizeof b->err->msg, "%s: out of memory while reading the file", b->name);
    return PGW_ENOMEM;
}

static struct ynode *node_new(struct ytree *t, enum ynode_kind kind, int line, int col)
{
    struct ynode *n = calloc(1, sizeof *n);
    if (n == NULL)
        return NULL;
    n->kind = kind;
    n->line = line;
    n->col = col;
    n->weight = 1;
    n->next_alloc = t->all;
    t->all = n;
    return n;
}

static int node_push(struct ynode *parent, struct ynode *child)
{
    if (parent->n == parent->cap) {
        size_t cap = parent->cap ? parent->cap * 2 : 8;
        struct ynode **items = realloc(parent->items, cap * sizeof *items);
        if (items == NULL)
            return PGW_ENOMEM;
        parent->items = items;
        parent->cap = cap;
    }
    parent->items[parent->n++] = child;
    return PGW_OK;
}

static int count_nodes(struct builder *b, size_t add, const yaml_mark_t *m, const char *alias)
{
    b->total += add;
    if (b->total <= YTREE_MAX_NODES)
        return PGW_OK;
    if (alias != NULL)
        return fail(b, (int)m->line + 1, (int)m->column + 1, true,
                    "alias *%s expands the document past %u nodes (nested aliases: refused "
                    "as a \"billion laughs\" attack)", alias, YTREE_MAX_NODES);
    return fail(b, (int)m->line + 1, (int)m->column + 1, true,
                "the document has more than %u nodes", YTREE_MAX_NODES);
}

/* Hang a finished node on the open collection (or make it the root). */
static int attach(struct builder *b, struct ynode *n)
{
    if (b->depth == 0) {
        b->t->root = n;
        return PGW_OK;
    }
    struct frame *f = &b->stack[b->depth - 1];
    if (f->node->kind == YN_SEQ)
        return node_push(f->node, n) == 0 ? PGW_OK : fail_nomem(b);
    if (f->key == NULL) {
        if (n->kind != YN_SCALAR)
            return fail(b, n->line, n->col, true, "mapping keys must be plain strings, got %s",
                        ynode_kind_name(n));
        if (n->plain && strcmp(n->text, "<<") == 0)
            return fail(b, n->line, n->col, true,
                        "merge keys (<<) are not supported; write the keys out");
        f->key = n;
        return PGW_OK;
    }
    if (node_push(f->node, f->key) != 0 || node_push(f->node, n) != 0)
        return fail_nomem(b);
    f->key = NULL;
    return PGW_OK;
}

static int add_anchor(struct builder *b, const char *name, struct ynode *n, const yaml_mark_t *m)
{
    if (name == NULL)
        return PGW_OK;
    if (b->nanchors >= YTREE_MAX_ANCHORS)
        return fail(b, (int)m->line + 1, (int)m->column + 1, true,
                    "more than %u anchors (&name) in one file", YTREE_MAX_ANCHORS);
    struct anchor *a = realloc(b->anchors, (b->nanchors + 1) * sizeof *a);
    if (a == NULL)
        return fail_nomem(b);
    b->anchors = a;
    a[b->nanchors].name = strdup(name);
    if (a[b->nanchors].name == NULL)
        return fail_nomem(b);
    a[b->nanchors].node = n;
    b->nanchors++;
    return PGW_OK;
}

/* The collection key context check shared by sequence and mapping starts. */
static int open_collection(struct builder *b, enum ynode_kind kind, const yaml_event_t *ev,
                           const char *anchor)
{
    int line = (int)ev->start_mark.line + 1, col = (int)ev->start_mark.column + 1;
    if (b->depth > 0) {
        struct frame *top = &b->stack[b->depth - 1];
        if (top->node->kind == YN_MAP && top->key == NULL)
            return fail(b, line, col, true, "mapping keys must be plain strings, got %s",
                        kind == YN_MAP ? "a mapping" : "a list");
    }
    if (b->depth >= YTREE_MAX_DEPTH)
        return fail(b, line, col, true, "nesting is deeper than %d levels", YTREE_MAX_DEPTH);
    int rc = count_nodes(b, 1, &ev->start_mark, NULL);
    if (rc != 0)
        return rc;
    struct ynode *n = node_new(b->t, kind, line, col);
    if (n == NULL)
        return fail_nomem(b);
    struct frame *f = &b->stack[b->depth];
    f->node = n;
    f->key = NULL;
    f->anchor = NULL;
    if (anchor != NULL && (f->anchor = strdup(anchor)) == NULL)
        return fail_nomem(b);
    b->depth++;
    return PGW_OK;
}

static int key_cmp(const void *pa, const void *pb)
{
    const struct ynode *a = *(struct ynode *const *)pa, *b = *(struct ynode *const *)pb;
    int c = strcmp(a->text, b->text);
    if (c != 0)
        return c;
    /* Same text: keep file order so the earliest occurrence comes first. */
    return (a->line > b->line || (a->line == b->line && a->col > b->col)) -
           (a->line < b->line || (a->line == b->line && a->col < b->col));
}

/* Sorting finds duplicates in O(n log n) even in a 50000-key mapping; of all
 * duplicated keys we report the one whose second occurrence comes first. */
static int check_duplicates(struct builder *b, const struct ynode *map)
{
    size_t pairs = map->n / 2;
    if (pairs < 2)
        return PGW_OK;
    struct ynode **keys = malloc(pairs * sizeof *keys);
    if (keys == NULL)
        return fail_nomem(b);
    for (size_t i = 0; i < pairs; i++)
        keys[i] = map->items[2 * i];
    qsort(keys, pairs, sizeof *keys, key_cmp);
    const struct ynode *first = NULL, *second = NULL;
    for (size_t i = 1; i < pairs; i++) {
        if (strcmp(keys[i - 1]->text, keys[i]->text) != 0)
            continue;
        if (i >= 2 && strcmp(keys[i - 2]->text, keys[i]->text) == 0)
            continue; /* third or later occurrence of the same key */
        if (second == NULL || keys[i]->line < second->line ||
            (keys[i]->line == second->line && keys[i]->col < second->col)) {
            first = keys[i - 1];
            second = keys[i];
        }
    }
    int rc = PGW_OK;
    if (second != NULL) {
        char path[256];
        builder_path(b, second->text, path, sizeof path);
        char what[400];
        snprintf(what, sizeof what, "duplicate key; it is already set at line %d, column %d",
                 first->line, first->col);
        b->err->line = second->line;
        b->err->column = second->col;
        snprintf(b->err->msg, sizeof b->err->msg, "%s:%d:%d: %s: %s", b->name, second->line,
                 second->col, path, what);
        rc = PGW_EINVAL;
    }
    free(keys);
    return rc;
}

static int close_collection(struct builder *b, const yaml_event_t *ev)
{
    struct frame *f = &b->stack[b->depth - 1];
    struct ynode *n = f->node;
    for (size_t i = 0; i < n->n; i++)
        n->weight += n->items[i]->weight;
    if (n->kind == YN_MAP) {
        int rc = check_duplicates(b, n);
        if (rc != 0)
            return rc;
    }
    char *anchor = f->anchor;
    f->anchor = NULL;
    b->depth--;
    int rc = add_anchor(b, anchor, n, &ev->start_mark);
    free(anchor);
    if (rc != 0)
        return rc;
    return attach(b, n);
}

static int on_scalar(struct builder *b, const yaml_event_t *ev)
{
    int line = (int)ev->start_mark.line + 1, col = (int)ev->start_mark.column + 1;
    const char *tag = (const char *)ev->data.scalar.tag;
    size_t len = ev->data.scalar.length;
    const char *val = (const char *)ev->data.scalar.value;
    int rc = count_nodes(b, 1, &ev->start_mark, NULL);
    if (rc != 0)
        return rc;
    if (memchr(val, '\0', len) != NULL)
        return fail(b, line, col, true, "NUL characters are not allowed in values");
    bool plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
    if (tag != NULL) {
        if (strcmp(tag, STR_TAG) == 0)
            plain = false;
        else if (strncmp(tag, "tag:yaml.org,2002:", 18) == 0)
            plain = true;
        else
            return fail(b, line, col, true, "YAML tag %s is not supported", tag);
    }
    struct ynode *n = node_new(b->t, YN_SCALAR, line, col);
    if (n == NULL || (n->text = malloc(len + 1)) == NULL)
        return fail_nomem(b);
    memcpy(n->text, val, len);
    n->text[len] = '\0';
    n->len = len;
    n->plain = plain;
    rc = add_anchor(b, (const char *)ev->data.scalar.anchor, n, &ev->start_mark);
    if (rc != 0)
        return rc;
    return attach(b, n);
}

static int on_alias(struct builder *b, const yaml_event_t *ev)
{
    int line = (int)ev->start_mark.line + 1, col = (int)ev->start_mark.column + 1;
    const char *name = (const char *)ev->data.alias.anchor;
    const struct ynode *target = NULL;
    for (size_t i = b->nanchors; i > 0; i--) {
        if (strcmp(b->anchors[i - 1].name, name) == 0) {
            target = b->anchors[i - 1].node;
            break;
        }
    }
    if (target == NULL)
        return fail(b, line, col, true,
                    "alias *%s names no anchor defined before it (an alias cannot point "
                    "into the node that contains it)", name);
    int rc = count_nodes(b, target->weight, &ev->start_mark, name);
    if (rc != 0)
        return rc;
    struct ynode *n = node_new(b->t, target->kind, line, col);
    if (n == NULL)
        return fail_nomem(b);
    n->plain = target->plain;
    n->borrowed = true;
    n->text = target->text;
    n->len = target->len;
    n->items = target->items;
    n->n = target->n;
    n->cap = target->cap;
    n->weight = target->weight;
    return attach(b, n);
}

static int on_event(struct builder *b, const yaml_event_t *ev)
{
    switch (ev->type) {
    case YAML_DOCUMENT_START_EVENT:
        if (b->doc_seen)
            return fail(b, (int)ev->start_mark.line + 1, (int)ev->start_mark.column + 1, false,
                        "more than one YAML document in the file; pgwarden reads exactly one");
        b->doc_seen = true;
        return PGW_OK;
    case YAML_SCALAR_EVENT:
        return on_scalar(b, ev);
    case YAML_ALIAS_EVENT:
        return on_alias(b, ev);
    case YAML_SEQUENCE_START_EVENT:
        return open_collection(b, YN_SEQ, ev, (const char *)ev->data.sequence_start.anchor);
    case YAML_MAPPING_START_EVENT:
        return open_collection(b, YN_MAP, ev, (const char *)ev->data.mapping_start.anchor);
    case YAML_SEQUENCE_END_EVENT:
    case YAML_MAPPING_END_EVENT:
        return close_collection(b, ev);
    default:
        return PGW_OK;
    }
}

/* libyaml's reader reports a byte offset, not a mark: count lines and
 * characters (UTF-8 lead bytes) up to it, as libyaml's marks do. */
static void offset_to_pos(const char *buf, size_t len, size_t off, int *line, int *col)
{
    int l = 1, c = 1;
    if (off > len)
        off = len;
    for (size_t i = 0; i < off; i++) {
        unsigned char ch = (unsigned char)buf[i];
        if (ch == '\n') {
            l++;
            c = 1;
        } else if ((ch & 0xC0) != 0x80) {
            c++;
        }
    }
    *line = l;
    *col = c;
}

/* Offset of the first byte that does not start a valid UTF-8 character
 * (overlongs, surrogates and code points past U+10FFFF included), or len. */
static size_t first_bad_utf8(const unsigned char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        unsigned char c = s[i];
        size_t n;
        uint32_t cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            n = 1;
            cp = c & 0x1F;
        } else if ((c & 0xF0) == 0xE0) {
            n = 2;
            cp = c & 0x0F;
        } else if ((c & 0xF8) == 0xF0) {
            n = 3;
            cp = c & 0x07;
        } else {
            return i;
        }
        for (size_t k = 1; k <= n; k++) {
            if (i + k >= len || (s[i + k] & 0xC0) != 0x80)
                return i;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
            cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return i;
        i += n + 1;
    }
    return len;
}

static int parser_error(struct builder *b, const yaml_parser_t *p)
{
    switch (p->error) {
    case YAML_MEMORY_ERROR:
        return fail_nomem(b);
    case YAML_READER_ERROR: {
        int line, col;
        size_t bad = first_bad_utf8((const unsigned char *)b->buf, b->len);
        if (bad < b->len) {
            offset_to_pos(b->buf, b->len, bad, &line, &col);
            return fail(b, line, col, false,
                        "not valid UTF-8: byte 0x%02X starts no valid UTF-8 character (is the "
                        "file in another encoding? pgwarden reads UTF-8 only)",
                        (unsigned char)b->buf[bad]);
        }
        offset_to_pos(b->buf, b->len, p->problem_offset, &line, &col);
        if (p->problem_value != -1)
            return fail(b, line, col, false, "%s (character 0x%02X)", p->problem,
                        (unsigned)p->problem_value);
        return fail(b, line, col, false, "%s", p->problem);
    }
    default: {
        int line = (int)p->problem_mark.line + 1, col = (int)p->problem_mark.column + 1;
        const char *problem = p->problem ? p->problem : "unknown problem";
        size_t off = p->problem_mark.index;
        const char *hint = off < b->len && b->buf[off] == '\t'
                               ? "; YAML cannot be indented with tabs, use spaces" : "";
        if (p->context != NULL && strstr(problem, "end of stream") != NULL)
            /* An unterminated quote or bracket: where it starts is what helps. */
            return fail(b, (int)p->context_mark.line + 1, (int)p->context_mark.column + 1, true,
                        "YAML syntax error: %s %s that starts here (%s at line %d)", problem,
                        p->context, "the file ends", line);
        if (p->context != NULL && (p->context_mark.line != p->problem_mark.line ||
                                   p->context_mark.column != p->problem_mark.column))
            return fail(b, line, col, true, "YAML syntax error: %s (%s at line %d, column %d)%s",
                        problem, p->context, (int)p->context_mark.line + 1,
                        (int)p->context_mark.column + 1, hint);
        if (p->context != NULL)
            return fail(b, line, col, true, "YAML syntax error: %s (%s)%s", problem, p->context,
                        hint);
        return fail(b, line, col, true, "YAML syntax error: %s%s", problem, hint);
    }
    }
}

void ytree_free(struct ytree *t)
{
    struct ynode *n = t->all;
    while (n != NULL) {
        struct ynode *next = n->next_alloc;
        if (!n->borrowed) {
            free(n->text);
            free(n->items);
        }
        free(n);
        n = next;
    }
    t->all = NULL;
    t->root = NULL;
}

int ytree_parse(const char *name, const char *buf, size_t len, struct ytree *out,
                struct cfg_error *err)
{
    struct builder b = {.name = name, .buf = buf, .len = len, .t = out, .err = err};
    out->root = NULL;
    out->all = NULL;
    err->msg[0] = '\0';
    err->line = err->column = 0;
    if (len > YTREE_MAX_BYTES) {
        snprintf(err->msg, sizeof err->msg, "%s: file is larger than 1 MiB (%zu bytes)", name, len);
        return PGW_EINVAL;
    }
    yaml_parser_t p;
    if (!yaml_parser_initialize(&p))
        return fail_nomem(&b);
    yaml_parser_set_encoding(&p, YAML_UTF8_ENCODING);
    yaml_parser_set_input_string(&p, (const unsigned char *)buf, len);
    int rc = PGW_OK;
    for (;;) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&p, &ev)) {
            rc = parser_error(&b, &p);
            break;
        }
        rc = on_event(&b, &ev);
        yaml_event_type_t type = ev.type;
        yaml_event_delete(&ev);
        if (rc != 0 || type == YAML_STREAM_END_EVENT)
            break;
    }
    yaml_parser_delete(&p);
    for (int i = 0; i < b.depth; i++)
        free(b.stack[i].anchor);
    for (size_t i = 0; i < b.nanchors; i++)
        free(b.anchors[i].name);
    free(b.anchors);
    if (rc != 0)
        ytree_free(out);
    return rc;
}

static struct ynode *json_node(struct ytree *t, const json_t *j, int *rc)
{
    char num[64];
    const char *text = NULL;
    bool plain = true;
    struct ynode *n;
    switch (json_typeof(j)) {
    case JSON_OBJECT: {
        n = node_new(t, YN_MAP, 0, 0);
        if (n == NULL)
            goto nomem;
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)j, k, v) {
            struct ynode *kn = node_new(t, YN_SCALAR, 0, 0), *vn;
            if (kn == NULL || (kn->text = strdup(k)) == NULL)
                goto nomem;
            kn->len = strlen(k);
            if ((vn = json_node(t, v, rc)) == NULL || node_push(n, kn) != 0 || node_push(n, vn) != 0)
                goto nomem;
        }
        return n;
    }
    case JSON_ARRAY: {
        n = node_new(t, YN_SEQ, 0, 0);
        if (n == NULL)
            goto nomem;
        size_t i;
        json_t *v;
        json_array_foreach(j, i, v) {
            struct ynode *vn = json_node(t, v, rc);
            if (vn == NULL || node_push(n, vn) != 0)
                goto nomem;
        }
        return n;
    }
    case JSON_STRING:
        text = json_string_value(j);
        plain = false;
        if (strlen(text) != json_string_length(j))
            text = NULL; /* embedded NUL: refused below like in YAML */
        break;
    case JSON_INTEGER:
        snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT, json_integer_value(j));
        text = num;
        break;
    case JSON_REAL:
        /* Shortest form that reads back the same: 0.1, not 0.10000000000000001. */
        snprintf(num, sizeof num, "%.15g", json_real_value(j));
        if (strtod(num, NULL) != json_real_value(j))
            snprintf(num, sizeof num, "%.17g", json_real_value(j));
        text = num;
        break;
    case JSON_TRUE: text = "true"; break;
    case JSON_FALSE: text = "false"; break;
    default: text = "null"; break;
    }
    if (text == NULL)
        text = "\\0"; /* shown as is; never a valid value for a config key */
    n = node_new(t, YN_SCALAR, 0, 0);
    if (n == NULL || (n->text = strdup(text)) == NULL)
        goto nomem;
    n->len = strlen(text);
    n->plain = plain;
    return n;
nomem:
    *rc = PGW_ENOMEM;
    return NULL;
}

int ytree_from_json(const json_t *j, struct ytree *out)
{
    int rc = PGW_OK;
    out->root = NULL;
    out->all = NULL;
    out->root = json_node(out, j, &rc);
    if (out->root == NULL) {
        ytree_free(out);
        return PGW_ENOMEM;
    }
    return PGW_OK;
}

/* Plain scalars are resolved as PyYAML resolves them (jy_scalar), which is
 * how Patroni read the same file; quoted ones stay strings. Depth is bounded
 * by YTREE_MAX_DEPTH, enforced when the tree was built. */
json_t *ytree_to_json(const struct ynode *n)
{
    if (n == NULL)
        return json_null();
    switch (n->kind) {
    case YN_SCALAR:
        return n->plain ? jy_scalar(n->text) : json_stringn(n->text, n->len);
    case YN_SEQ: {
        json_t *a = json_array();
        for (size_t i = 0; a != NULL && i < n->n; i++) {
            json_t *v = ytree_to_json(n->items[i]);
            if (v == NULL || json_array_append_new(a, v) != 0) {
                json_decref(a);
                a = NULL;
            }
        }
        return a;
    }
    case YN_MAP: {
        json_t *o = json_object();
        for (size_t i = 0; o != NULL && i + 1 < n->n; i += 2) {
            const struct ynode *k = n->items[i];
            json_t *v = k->kind == YN_SCALAR ? ytree_to_json(n->items[i + 1]) : NULL;
            if (v == NULL || json_object_set_new(o, k->text, v) != 0) {
                json_decref(o);
                o = NULL;
            }
        }
        return o;
    }
    }
    return NULL;
}
