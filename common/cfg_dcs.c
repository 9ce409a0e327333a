/* The dynamic configuration (bootstrap.dcs / GET and PATCH /config): defaults,
 * JSON form with Patroni's key names and seconds as numbers, and the timing
 * rule. JSON goes through the same key table and value parsers as the YAML
 * file, so both accept exactly the same values. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cfg_internal.h"

#define DCS_PREFIX "bootstrap.dcs."

static bool is_dcs_leaf(const struct cfg_key *k)
{
    return k->base == BASE_DCS && k->type != KT_SECTION;
}

void cfg_dcs_defaults(struct cfg_dcs *d)
{
    memset(d, 0, sizeof *d);
    for (size_t i = 0; i < cfg__nkeys; i++) {
        const struct cfg_key *k = &cfg__keys[i];
        /* The table's defaults are checked by the unit tests; a failure here
         * would leave the zero value. */
        if (is_dcs_leaf(k))
            (void)cfg__apply_default(k, (char *)d + k->off);
    }
}

void cfg_dcs_free(struct cfg_dcs *d)
{
    if (d == NULL)
        return;
    for (size_t i = 0; i < cfg__nkeys; i++) {
        if (is_dcs_leaf(&cfg__keys[i]))
            cfg__free_value(&cfg__keys[i], (char *)d + cfg__keys[i].off);
    }
    memset(d, 0, sizeof *d);
}

int cfg_dcs_copy(struct cfg_dcs *dst, const struct cfg_dcs *src)
{
    struct cfg_dcs tmp;
    memset(&tmp, 0, sizeof tmp);
    for (size_t i = 0; i < cfg__nkeys; i++) {
        const struct cfg_key *k = &cfg__keys[i];
        if (is_dcs_leaf(k) && cfg__copy_value(k, (char *)&tmp + k->off,
                                              (const char *)src + k->off) != 0) {
            cfg_dcs_free(&tmp);
            return PGW_ENOMEM;
        }
    }
    *dst = tmp;
    return PGW_OK;
}

int cfg_dcs_check_timing(const struct cfg_dcs *d, struct cfg_error *err)
{
    char a[32], b[32], c[32], sum[32];
    err->line = err->column = 0;
    err->msg[0] = '\0';
    for (size_t i = 0; i < cfg__nkeys; i++) {
        const struct cfg_key *k = &cfg__keys[i];
        if (!is_dcs_leaf(k) || !(k->flags & (KF_MIN | KF_MAX)))
            continue;
        long long v = k->type == KT_DURATION ? (long long)*(const uint32_t *)((const char *)d + k->off)
                    : k->type == KT_UINT     ? (long long)*(const uint32_t *)((const char *)d + k->off)
                                             : 0;
        bool secs = k->type == KT_DURATION;
        const char *name = k->path + strlen(DCS_PREFIX);
        if ((k->flags & KF_MIN) && v < k->min) {
            if (secs) {
                cfg__fmt_seconds((uint64_t)k->min, a, sizeof a);
                cfg__fmt_seconds((uint64_t)v, b, sizeof b);
            } else {
                snprintf(a, sizeof a, "%lld", k->min);
                snprintf(b, sizeof b, "%lld", v);
            }
            snprintf(err->msg, sizeof err->msg, "%s: must be at least %s%s, got %s", name, a,
                     secs ? " s" : "", b);
            return PGW_EINVAL;
        }
        if ((k->flags & KF_MAX) && v > k->max) {
            if (secs) {
                cfg__fmt_seconds((uint64_t)k->max, a, sizeof a);
                cfg__fmt_seconds((uint64_t)v, b, sizeof b);
            } else {
                snprintf(a, sizeof a, "%lld", k->max);
                snprintf(b, sizeof b, "%lld", v);
            }
            snprintf(err->msg, sizeof err->msg, "%s: must be at most %s%s, got %s", name, a,
                     secs ? " s" : "", b);
            return PGW_EINVAL;
        }
    }
    /* Patroni's rule (config.py): a primary that last renewed at T0 retries at
     * T0 + loop_wait, gives up after retry_timeout and still has another
     * retry_timeout of margin before its lease ends at T0 + ttl. Patroni
     * silently lowers loop_wait/retry_timeout; we refuse instead. */
    uint64_t need = (uint64_t)d->loop_wait_ms + 2 * (uint64_t)d->retry_timeout_ms;
    if (need > d->ttl_ms) {
        cfg__fmt_seconds(d->loop_wait_ms, a, sizeof a);
        cfg__fmt_seconds(d->retry_timeout_ms, b, sizeof b);
        cfg__fmt_seconds(d->ttl_ms, c, sizeof c);
        cfg__fmt_seconds(need, sum, sizeof sum);
        snprintf(err->msg, sizeof err->msg,
                 "timing rule loop_wait + 2*retry_timeout <= ttl is broken: %s + 2*%s = %s > %s",
                 a, b, sum, c);
        return PGW_EINVAL;
    }
    return PGW_OK;
}

int cfg_dcs_from_json(const json_t *j, struct cfg_dcs *out, struct cfg_error *err)
{
    err->line = err->column = 0;
    err->msg[0] = '\0';
    if (j == NULL || !json_is_object(j)) {
        snprintf(err->msg, sizeof err->msg,
                 "expected a JSON object with the dynamic configuration");
        return PGW_EINVAL;
    }
    struct ytree t;
    if (ytree_from_json(j, &t) != 0) {
        snprintf(err->msg, sizeof err->msg, "out of memory");
        return PGW_ENOMEM;
    }
    struct cfg__walk *w = calloc(1, sizeof *w);
    if (w == NULL) {
        ytree_free(&t);
        snprintf(err->msg, sizeof err->msg, "out of memory");
        return PGW_ENOMEM;
    }
    struct cfg_dcs tmp;
    cfg_dcs_defaults(&tmp);
    w->file = NULL;
    w->strip = DCS_PREFIX;
    w->dcs = &tmp;
    w->err = err;
    int rc = cfg__walk_map(w, t.root, "bootstrap.dcs");
    if (rc == 0)
        rc = cfg_dcs_check_timing(&tmp, err);
    free(w);
    ytree_free(&t);
    if (rc != 0) {
        cfg_dcs_free(&tmp);
        return rc;
    }
    *out = tmp;
    return PGW_OK;
}

static json_t *value_json(const struct cfg_key *k, const void *v)
{
    switch (k->type) {
    case KT_DURATION: {
        uint32_t ms = *(const uint32_t *)v;
        return ms % 1000 == 0 ? json_integer(ms / 1000) : json_real(ms / 1000.0);
    }
    case KT_UINT: return json_integer(*(const uint32_t *)v);
    case KT_SIZE: {
        uint64_t n = *(const uint64_t *)v;
        return json_integer(n > (uint64_t)INT64_MAX ? INT64_MAX : (json_int_t)n);
    }
    case KT_LAG: return json_integer(*(const int64_t *)v);
    case KT_STR: {
        const char *str = *(const char *const *)v;
        return str != NULL ? json_string(str) : NULL;
    }
    case KT_BOOL: return json_boolean(*(const bool *)v);
    case KT_SYNCMODE: {
        enum cfg_sync_mode m = *(const enum cfg_sync_mode *)v;
        /* Patroni keeps booleans for off/on; tools reading /config expect them. */
        return m == CFG_SYNC_QUORUM ? json_string("quorum") : json_boolean(m == CFG_SYNC_ON);
    }
    case KT_PARAMS: {
        const struct cfg_kvlist *l = v;
        json_t *o = json_object();
        for (size_t i = 0; o != NULL && i < l->n; i++) {
            if (json_object_set_new(o, l->items[i].key, json_string(l->items[i].value)) != 0) {
                json_decref(o);
                return NULL;
            }
        }
        return o;
    }
    case KT_STRLIST: {
        const struct cfg_strlist *l = v;
        json_t *a = json_array();
        for (size_t i = 0; a != NULL && i < l->n; i++) {
            if (json_array_append_new(a, json_string(l->items[i])) != 0) {
                json_decref(a);
                return NULL;
            }
        }
        return a;
    }
    default:
        return NULL;
    }
}

json_t *cfg_dcs_to_json(const struct cfg_dcs *d)
{
    json_t *root = json_object();
    if (root == NULL)
        return NULL;
    for (size_t i = 0; i < cfg__nkeys; i++) {
        const struct cfg_key *k = &cfg__keys[i];
        if (!is_dcs_leaf(k))
            continue;
        const char *name = k->path + strlen(DCS_PREFIX);
        if (k->type == KT_SLOTS || k->type == KT_SLOTMATCH) {
            /* left out while empty, as Patroni's /config does */
            json_t *sv = cfg__slots_value_json(k, (const char *)d + k->off);
            if (sv != NULL && json_object_set_new(root, name, sv) != 0)
                goto fail;
            continue;
        }
        if (strncmp(name, "standby_cluster.", 16) == 0) {
            /* the section exists in /config only while it is on, and shows
             * only the keys that are set (Patroni's form) */
            if (!cfg_standby_enabled(d))
                continue;
            if (k->type == KT_STR && *(char *const *)((const char *)d + k->off) == NULL)
                continue;
        }
        if (k->type == KT_BOOL && (k->flags & KF_OMIT_FALSE) &&
            !*(const bool *)((const char *)d + k->off))
            continue; /* added later: absent while off, so an older node still reads /config */
        json_t *parent = root;
        const char *dot = strchr(name, '.');
        if (dot != NULL) {
            char sect[64];
            snprintf(sect, sizeof sect, "%.*s", (int)(dot - name), name);
            parent = json_object_get(root, sect);
            if (parent == NULL) {
                parent = json_object();
                if (parent == NULL || json_object_set_new(root, sect, parent) != 0)
                    goto fail;
            }
            name = dot + 1;
        }
        json_t *v = value_json(k, (const char *)d + k->off);
        if (v == NULL || json_object_set_new(parent, name, v) != 0)
            goto fail;
    }
    return root;
fail:
    json_decref(root);
    return NULL;
}
