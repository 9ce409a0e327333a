/* The two value types of the dynamic configuration that describe
 * replication slots (Patroni's keys):
 *   slots:        {name: {type: physical}, name2: {type: logical, database: db, plugin: pgoutput}}
 *   ignore_slots: [{name: x}, {type: logical, plugin: wal2json}, ...]
 * Parsed from YAML (bootstrap.dcs) and JSON (PATCH /config) through the
 * same tree, freed, copied, compared, printed and turned back into JSON
 * here, so the key table can treat them like any other type. */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cfg_internal.h"

static const char *what(const struct ynode *v, char *buf, size_t len)
{
    if (ynode_is_null(v))
        return "nothing";
    if (v->kind != YN_SCALAR)
        return ynode_kind_name(v);
    cfg__quote(v->text, buf, len);
    return buf;
}

/* PostgreSQL's rule for slot names (ReplicationSlotValidateName). */
static bool valid_slot_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 63)
        return false;
    for (; *s; s++) {
        if (!(islower((unsigned char)*s) || isdigit((unsigned char)*s) || *s == '_'))
            return false;
    }
    return true;
}

static void slot_free(struct cfg_slot *s)
{
    free(s->name);
    free(s->type);
    free(s->database);
    free(s->plugin);
    free(s->cluster_type);
    memset(s, 0, sizeof *s);
}

static void slots_free(struct cfg_slots *l)
{
    for (size_t i = 0; i < l->n; i++)
        slot_free(&l->items[i]);
    free(l->items);
    l->items = NULL;
    l->n = 0;
}

static void matcher_free(struct cfg_slot_matcher *m)
{
    free(m->name);
    free(m->type);
    free(m->database);
    free(m->plugin);
    memset(m, 0, sizeof *m);
}

static void matchers_free(struct cfg_slot_matchers *l)
{
    for (size_t i = 0; i < l->n; i++)
        matcher_free(&l->items[i]);
    free(l->items);
    l->items = NULL;
    l->n = 0;
}

/* A string field of a slot entry: a non-empty scalar. */
static int str_field(const struct ynode *vn, char **dst, struct cfg__perr *pe)
{
    char g[96];
    if (vn->kind != YN_SCALAR || ynode_is_null(vn) || vn->text[0] == '\0')
        return cfg__perr(pe, vn, "expected a string, got %s", what(vn, g, sizeof g));
    free(*dst);
    *dst = strdup(vn->text);
    if (*dst == NULL)
        return cfg__perr(pe, vn, "out of memory");
    return PGW_OK;
}

/* One `name: {type, database, plugin, cluster_type}`; pe->sub names the
 * slot (and the field) on failure. */
static int parse_slot(const struct ynode *kn, const struct ynode *v, struct cfg_slot *s,
                      struct cfg__perr *pe)
{
    char g[96];
    snprintf(pe->sub, sizeof pe->sub, ".%.80s", kn->text);
    if (!valid_slot_name(kn->text))
        return cfg__perr(pe, kn, "not a valid slot name (1 to 63 characters from a-z, 0-9 and _)");
    if (cfg__strdup_or_null(&s->name, kn->text) != 0)
        return cfg__perr(pe, kn, "out of memory");
    if (!ynode_is_null(v) && v->kind != YN_MAP)
        return cfg__perr(pe, v, "expected a mapping {type, database, plugin}, got %s",
                         what(v, g, sizeof g));
    for (size_t i = 0; !ynode_is_null(v) && i + 1 < v->n; i += 2) {
        const struct ynode *fk = v->items[i], *fv = v->items[i + 1];
        char **field = strcmp(fk->text, "type") == 0           ? &s->type
                       : strcmp(fk->text, "database") == 0     ? &s->database
                       : strcmp(fk->text, "plugin") == 0       ? &s->plugin
                       : strcmp(fk->text, "cluster_type") == 0 ? &s->cluster_type
                                                               : NULL;
        snprintf(pe->sub, sizeof pe->sub, ".%.60s.%.30s", kn->text, fk->text);
        if (field == NULL)
            return cfg__perr(pe, fk, "unknown key (a slot has type, database, plugin and cluster_type)");
        if (str_field(fv, field, pe) != 0)
            return PGW_EINVAL;
        if (field == &s->type && strcmp(s->type, "physical") != 0 &&
            strcmp(s->type, "logical") != 0)
            return cfg__perr(pe, fv, "expected physical or logical, got %s", what(fv, g, sizeof g));
        if (field == &s->cluster_type && !cfg__in_choices("any|primary|standby", s->cluster_type))
            return cfg__perr(pe, fv, "expected any, primary or standby, got %s", what(fv, g, sizeof g));
    }
    snprintf(pe->sub, sizeof pe->sub, ".%.80s", kn->text);
    const char *type = s->type ? s->type : (s->database || s->plugin) ? "logical" : "physical";
    if (s->type == NULL && cfg__strdup_or_null(&s->type, type) != 0)
        return cfg__perr(pe, v, "out of memory");
    if (strcmp(s->type, "logical") == 0 && (s->database == NULL || s->plugin == NULL))
        return cfg__perr(pe, v, "a logical slot needs both database and plugin");
    if (strcmp(s->type, "physical") == 0 && (s->database != NULL || s->plugin != NULL))
        return cfg__perr(pe, v, "database and plugin are only for logical slots");
    pe->sub[0] = '\0';
    return PGW_OK;
}

static int parse_slots(const struct ynode *v, struct cfg_slots *dst, struct cfg__perr *pe)
{
    char g[96];
    if (v->kind != YN_MAP)
        return cfg__perr(pe, v, "expected a mapping of slot name: {type, database, plugin}, got %s",
                         what(v, g, sizeof g));
    struct cfg_slots l = {0};
    if (v->n / 2 > 0) {
        l.items = calloc(v->n / 2, sizeof *l.items);
        if (l.items == NULL)
            return cfg__perr(pe, v, "out of memory");
    }
    for (size_t i = 0; i + 1 < v->n; i += 2) {
        struct cfg_slot *s = &l.items[l.n++];
        if (parse_slot(v->items[i], v->items[i + 1], s, pe) != 0) {
            slots_free(&l);
            return PGW_EINVAL;
        }
    }
    slots_free(dst);
    *dst = l;
    return PGW_OK;
}

static int parse_matchers(const struct ynode *v, struct cfg_slot_matchers *dst,
                          struct cfg__perr *pe)
{
    char g[96];
    if (v->kind != YN_SEQ)
        return cfg__perr(pe, v, "expected a list of {name, type, database, plugin}, got %s",
                         what(v, g, sizeof g));
    struct cfg_slot_matchers l = {0};
    if (v->n > 0) {
        l.items = calloc(v->n, sizeof *l.items);
        if (l.items == NULL)
            return cfg__perr(pe, v, "out of memory");
    }
    for (size_t i = 0; i < v->n; i++) {
        const struct ynode *it = v->items[i];
        struct cfg_slot_matcher *m = &l.items[l.n++];
        snprintf(pe->sub, sizeof pe->sub, "[%zu]", i);
        if (it->kind != YN_MAP || it->n == 0) {
            cfg__perr(pe, it, "expected a mapping with at least one of name, type, database, plugin, "
                      "got %s", it->kind == YN_MAP ? "an empty mapping" : what(it, g, sizeof g));
            goto fail;
        }
        for (size_t j = 0; j + 1 < it->n; j += 2) {
            const struct ynode *fk = it->items[j], *fv = it->items[j + 1];
            char **field = strcmp(fk->text, "name") == 0       ? &m->name
                           : strcmp(fk->text, "type") == 0     ? &m->type
                           : strcmp(fk->text, "database") == 0 ? &m->database
                           : strcmp(fk->text, "plugin") == 0   ? &m->plugin
                                                               : NULL;
            snprintf(pe->sub, sizeof pe->sub, "[%zu].%.40s", i, fk->text);
            if (field == NULL) {
                cfg__perr(pe, fk, "unknown key (a matcher has name, type, database and plugin)");
                goto fail;
            }
            if (fv->kind != YN_SCALAR || ynode_is_null(fv) || fv->text[0] == '\0') {
                cfg__perr(pe, fv, "expected a string, got %s", what(fv, g, sizeof g));
                goto fail;
            }
            if (field == &m->type && strcmp(fv->text, "physical") != 0 &&
                strcmp(fv->text, "logical") != 0) {
                cfg__perr(pe, fv, "expected physical or logical, got %s", what(fv, g, sizeof g));
                goto fail;
            }
            free(*field);
            if ((*field = strdup(fv->text)) == NULL) {
                cfg__perr(pe, fv, "out of memory");
                goto fail;
            }
        }
    }
    pe->sub[0] = '\0';
    matchers_free(dst);
    *dst = l;
    return PGW_OK;
fail:
    matchers_free(&l);
    return PGW_EINVAL;
}

int cfg__slots_parse_value(const struct cfg_key *k, const struct ynode *v, void *dst,
                           struct cfg__perr *pe)
{
    if (k->type == KT_SLOTS)
        return parse_slots(v, dst, pe);
    return parse_matchers(v, dst, pe);
}

void cfg__slots_free_value(const struct cfg_key *k, void *dst)
{
    if (k->type == KT_SLOTS)
        slots_free(dst);
    else
        matchers_free(dst);
}

int cfg__slots_copy_value(const struct cfg_key *k, void *dst, const void *src)
{
    if (k->type == KT_SLOTS) {
        const struct cfg_slots *s = src;
        struct cfg_slots l = {0};
        if (s->n > 0 && (l.items = calloc(s->n, sizeof *l.items)) == NULL)
            return PGW_ENOMEM;
        for (size_t i = 0; i < s->n; i++, l.n++) {
            const struct cfg_slot *a = &s->items[i];
            struct cfg_slot *b = &l.items[i];
            if (cfg__strdup_or_null(&b->name, a->name) ||
                cfg__strdup_or_null(&b->type, a->type) ||
                cfg__strdup_or_null(&b->database, a->database) ||
                cfg__strdup_or_null(&b->plugin, a->plugin) ||
                cfg__strdup_or_null(&b->cluster_type, a->cluster_type)) {
                l.n++;
                slots_free(&l);
                return PGW_ENOMEM;
            }
        }
        slots_free(dst);
        *(struct cfg_slots *)dst = l;
        return PGW_OK;
    }
    const struct cfg_slot_matchers *s = src;
    struct cfg_slot_matchers l = {0};
    if (s->n > 0 && (l.items = calloc(s->n, sizeof *l.items)) == NULL)
        return PGW_ENOMEM;
    for (size_t i = 0; i < s->n; i++, l.n++) {
        const struct cfg_slot_matcher *a = &s->items[i];
        struct cfg_slot_matcher *b = &l.items[i];
        if (cfg__strdup_or_null(&b->name, a->name) || cfg__strdup_or_null(&b->type, a->type) ||
            cfg__strdup_or_null(&b->database, a->database) ||
            cfg__strdup_or_null(&b->plugin, a->plugin)) {
            l.n++;
            matchers_free(&l);
            return PGW_ENOMEM;
        }
    }
    matchers_free(dst);
    *(struct cfg_slot_matchers *)dst = l;
    return PGW_OK;
}

bool cfg__slots_value_equal(const struct cfg_key *k, const void *a, const void *b)
{
    if (k->type == KT_SLOTS) {
        const struct cfg_slots *x = a, *y = b;
        if (x->n != y->n)
            return false;
        for (size_t i = 0; i < x->n; i++) {
            const struct cfg_slot *p = &x->items[i], *q = &y->items[i];
            if (!cfg__str_eq(p->name, q->name) || !cfg__str_eq(p->type, q->type) ||
                !cfg__str_eq(p->database, q->database) || !cfg__str_eq(p->plugin, q->plugin) ||
                !cfg__str_eq(p->cluster_type, q->cluster_type))
                return false;
        }
        return true;
    }
    const struct cfg_slot_matchers *x = a, *y = b;
    if (x->n != y->n)
        return false;
    for (size_t i = 0; i < x->n; i++) {
        const struct cfg_slot_matcher *p = &x->items[i], *q = &y->items[i];
        if (!cfg__str_eq(p->name, q->name) || !cfg__str_eq(p->type, q->type) ||
            !cfg__str_eq(p->database, q->database) || !cfg__str_eq(p->plugin, q->plugin))
            return false;
    }
    return true;
}

/* Append the pieces (NULL-terminated) to buf at *o, truncating. */
static void add(char *buf, size_t len, size_t *o, ...)
{
    va_list ap;
    va_start(ap, o);
    for (const char *p = va_arg(ap, const char *); p != NULL; p = va_arg(ap, const char *)) {
        size_t n = strlen(p);
        if (*o + 1 >= len)
            break;
        if (n > len - *o - 1)
            n = len - *o - 1;
        memcpy(buf + *o, p, n);
        *o += n;
        buf[*o] = '\0';
    }
    va_end(ap);
}

void cfg__slots_format_value(const struct cfg_key *k, const void *v, char *buf, size_t len)
{
    size_t o = 0;
    buf[0] = '\0';
    if (k->type == KT_SLOTS) {
        const struct cfg_slots *l = v;
        add(buf, len, &o, "{", NULL);
        for (size_t i = 0; i < l->n; i++) {
            const struct cfg_slot *s = &l->items[i];
            add(buf, len, &o, i ? ", " : "", s->name, ": {type: ", s->type, NULL);
            if (s->database)
                add(buf, len, &o, ", database: ", s->database, NULL);
            if (s->plugin)
                add(buf, len, &o, ", plugin: ", s->plugin, NULL);
            add(buf, len, &o, "}", NULL);
        }
        add(buf, len, &o, "}", NULL);
        return;
    }
    const struct cfg_slot_matchers *l = v;
    add(buf, len, &o, "[", NULL);
    for (size_t i = 0; i < l->n; i++) {
        const struct cfg_slot_matcher *m = &l->items[i];
        const char *sep = "";
        add(buf, len, &o, i ? ", {" : "{", NULL);
        if (m->name) {
            add(buf, len, &o, sep, "name: ", m->name, NULL);
            sep = ", ";
        }
        if (m->type) {
            add(buf, len, &o, sep, "type: ", m->type, NULL);
            sep = ", ";
        }
        if (m->database) {
            add(buf, len, &o, sep, "database: ", m->database, NULL);
            sep = ", ";
        }
        if (m->plugin)
            add(buf, len, &o, sep, "plugin: ", m->plugin, NULL);
        add(buf, len, &o, "}", NULL);
    }
    add(buf, len, &o, "]", NULL);
}

static int set_str(json_t *o, const char *key, const char *val)
{
    if (val == NULL)
        return 0;
    return json_object_set_new(o, key, json_string(val));
}

json_t *cfg__slots_value_json(const struct cfg_key *k, const void *v)
{
    if (k->type == KT_SLOTS) {
        const struct cfg_slots *l = v;
        if (l->n == 0)
            return NULL;
        json_t *o = json_object();
        for (size_t i = 0; o != NULL && i < l->n; i++) {
            const struct cfg_slot *s = &l->items[i];
            json_t *e = json_object();
            if (e == NULL || set_str(e, "type", s->type) || set_str(e, "database", s->database) ||
                set_str(e, "plugin", s->plugin) || set_str(e, "cluster_type", s->cluster_type)) {
                json_decref(e);
                json_decref(o);
                return NULL;
            }
            if (json_object_set_new(o, s->name, e) != 0) {
                json_decref(o);
                return NULL;
            }
        }
        return o;
    }
    const struct cfg_slot_matchers *l = v;
    if (l->n == 0)
        return NULL;
    json_t *a = json_array();
    for (size_t i = 0; a != NULL && i < l->n; i++) {
        const struct cfg_slot_matcher *m = &l->items[i];
        json_t *e = json_object();
        if (e == NULL || set_str(e, "name", m->name) || set_str(e, "type", m->type) ||
            set_str(e, "database", m->database) || set_str(e, "plugin", m->plugin)) {
            json_decref(e);
            json_decref(a);
            return NULL;
        }
        if (json_array_append_new(a, e) != 0) {
            json_decref(a);
            return NULL;
        }
    }
    return a;
}
