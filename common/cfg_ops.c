/* Free, copy, compare and print the typed values of the key table (used by
 * cfg_free, cfg_dcs_copy, cfg_diff). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cfg_internal.h"

/* ---------- free / copy / compare / format ---------- */

void cfg__free_value(const struct cfg_key *k, void *dst)
{
    switch (k->type) {
    case KT_STR:
    case KT_IDENT:
    case KT_CHOICE:
    case KT_IPV4:
        free(*(char **)dst);
        *(char **)dst = NULL;
        break;
    case KT_HOSTPORT:
    case KT_PGLISTEN:
        free(((struct cfg_hostport *)dst)->host);
        ((struct cfg_hostport *)dst)->host = NULL;
        ((struct cfg_hostport *)dst)->port = 0;
        break;
    case KT_IPV4LIST:
    case KT_STRLIST:
    case KT_OPTIONS:
        cfg__strlist_free(dst);
        break;
    case KT_PARAMS:
        cfg__kvlist_free(dst);
        break;
    case KT_SLOTS:
    case KT_SLOTMATCH:
        cfg__slots_free_value(k, dst);
        break;
    case KT_USERS:
        cfg__users_free_value(dst);
        break;
    default:
        break;
    }
}

static size_t scalar_size(enum cfg_ktype t)
{
    switch (t) {
    case KT_BOOL: return sizeof(bool);
    case KT_DURATION:
    case KT_UINT: return sizeof(uint32_t);
    case KT_INT: return sizeof(int);
    case KT_SIZE: return sizeof(uint64_t);
    case KT_LAG: return sizeof(int64_t);
    case KT_SYNCMODE: return sizeof(enum cfg_sync_mode);
    case KT_WDMODE: return sizeof(enum cfg_watchdog_mode);
    case KT_LOGLEVEL: return sizeof(enum log_level);
    case KT_LOGFORMAT: return sizeof(enum log_format);
    default: return 0;
    }
}

int cfg__copy_value(const struct cfg_key *k, void *dst, const void *src)
{
    switch (k->type) {
    case KT_STR:
    case KT_IDENT:
    case KT_CHOICE:
    case KT_IPV4: {
        const char *s = *(char *const *)src;
        char *copy = s ? strdup(s) : NULL;
        if (s != NULL && copy == NULL)
            return PGW_ENOMEM;
        free(*(char **)dst);
        *(char **)dst = copy;
        return PGW_OK;
    }
    case KT_HOSTPORT:
    case KT_PGLISTEN: {
        const struct cfg_hostport *s = src;
        struct cfg_hostport *d = dst;
        char *copy = s->host ? strdup(s->host) : NULL;
        if (s->host != NULL && copy == NULL)
            return PGW_ENOMEM;
        free(d->host);
        d->host = copy;
        d->port = s->port;
        return PGW_OK;
    }
    case KT_IPV4LIST:
    case KT_STRLIST:
    case KT_OPTIONS: {
        const struct cfg_strlist *s = src;
        struct cfg_strlist l = {0};
        for (size_t i = 0; i < s->n; i++) {
            if (cfg__strlist_push(&l, s->items[i]) != 0) {
                cfg__strlist_free(&l);
                return PGW_ENOMEM;
            }
        }
        cfg__strlist_free(dst);
        *(struct cfg_strlist *)dst = l;
        return PGW_OK;
    }
    case KT_PARAMS: {
        const struct cfg_kvlist *s = src;
        struct cfg_kvlist l = {0};
        for (size_t i = 0; i < s->n; i++) {
            if (cfg__kvlist_push(&l, s->items[i].key, s->items[i].value) != 0) {
                cfg__kvlist_free(&l);
                return PGW_ENOMEM;
            }
        }
        cfg__kvlist_free(dst);
        *(struct cfg_kvlist *)dst = l;
        return PGW_OK;
    }
    case KT_SLOTS:
    case KT_SLOTMATCH:
        return cfg__slots_copy_value(k, dst, src);
    case KT_USERS:
        return cfg__users_copy_value(dst, src);
    case KT_SECTION:
        return PGW_OK;
    default:
        memcpy(dst, src, scalar_size(k->type));
        return PGW_OK;
    }
}

bool cfg__value_equal(const struct cfg_key *k, const void *a, const void *b)
{
    switch (k->type) {
    case KT_STR:
    case KT_IDENT:
    case KT_CHOICE:
    case KT_IPV4:
        return cfg__str_eq(*(char *const *)a, *(char *const *)b);
    case KT_HOSTPORT:
    case KT_PGLISTEN: {
        const struct cfg_hostport *x = a, *y = b;
        return cfg__str_eq(x->host, y->host) && x->port == y->port;
    }
    case KT_IPV4LIST:
    case KT_STRLIST:
    case KT_OPTIONS:
        return cfg__strlist_equal(a, b);
    case KT_PARAMS: {
        const struct cfg_kvlist *x = a, *y = b;
        if (x->n != y->n)
            return false;
        for (size_t i = 0; i < x->n; i++) {
            const char *yv = cfg__kvlist_get(y, x->items[i].key);
            if (yv == NULL || strcmp(yv, x->items[i].value) != 0)
                return false;
        }
        return true;
    }
    case KT_SLOTS:
    case KT_SLOTMATCH:
        return cfg__slots_value_equal(k, a, b);
    case KT_USERS:
        return cfg__users_value_equal(a, b);
    case KT_SECTION:
        return true;
    default:
        return memcmp(a, b, scalar_size(k->type)) == 0;
    }
}

static void fmt_list(const struct cfg_strlist *l, char *buf, size_t len)
{
    size_t o = 0;
    int w = snprintf(buf, len, "[");
    o = w > 0 ? (size_t)w : 0;
    for (size_t i = 0; i < l->n && o < len; i++) {
        w = snprintf(buf + o, len - o, "%s%s", i ? ", " : "", l->items[i]);
        if (w < 0)
            return;
        o += (size_t)w;
    }
    if (o < len)
        snprintf(buf + o, len - o, "]");
}

void cfg__format_value(const struct cfg_key *k, const void *v, char *buf, size_t len)
{
    static const char *const sync[] = {"off", "on", "quorum"};
    static const char *const wd[] = {"off", "automatic", "required"};
    static const char *const lvl[] = {"debug", "info", "warning", "error"};
    switch (k->type) {
    case KT_STR:
    case KT_IDENT:
    case KT_CHOICE:
    case KT_IPV4: {
        const char *s = *(char *const *)v;
        snprintf(buf, len, "%s", s ? s : "(unset)");
        break;
    }
    case KT_HOSTPORT:
    case KT_PGLISTEN: {
        const struct cfg_hostport *hp = v;
        if (hp->host == NULL)
            snprintf(buf, len, "(unset)");
        else if (strchr(hp->host, ':') != NULL && strchr(hp->host, ',') == NULL)
            snprintf(buf, len, "[%s]:%u", hp->host, (unsigned)hp->port);
        else
            snprintf(buf, len, "%s:%u", hp->host, (unsigned)hp->port);
        break;
    }
    case KT_BOOL: snprintf(buf, len, "%s", *(const bool *)v ? "true" : "false"); break;
    case KT_DURATION: cfg__fmt_seconds(*(const uint32_t *)v, buf, len); break;
    case KT_UINT: snprintf(buf, len, "%" PRIu32, *(const uint32_t *)v); break;
    case KT_INT: snprintf(buf, len, "%d", *(const int *)v); break;
    case KT_SIZE: snprintf(buf, len, "%" PRIu64, *(const uint64_t *)v); break;
    case KT_LAG: snprintf(buf, len, "%" PRId64, *(const int64_t *)v); break;
    case KT_IPV4LIST:
    case KT_STRLIST:
    case KT_OPTIONS: fmt_list(v, buf, len); break;
    case KT_PARAMS: {
        const struct cfg_kvlist *l = v;
        size_t o = 0;
        int w = snprintf(buf, len, "{");
        o = w > 0 ? (size_t)w : 0;
        for (size_t i = 0; i < l->n && o < len; i++) {
            w = snprintf(buf + o, len - o, "%s%s: %s", i ? ", " : "", l->items[i].key,
                         l->items[i].value);
            if (w < 0)
                break;
            o += (size_t)w;
        }
        if (o < len)
            snprintf(buf + o, len - o, "}");
        break;
    }
    case KT_SYNCMODE: {
        unsigned m = (unsigned)*(const enum cfg_sync_mode *)v;
        snprintf(buf, len, "%s", m < 3 ? sync[m] : "?");
        break;
    }
    case KT_WDMODE: {
        unsigned m = (unsigned)*(const enum cfg_watchdog_mode *)v;
        snprintf(buf, len, "%s", m < 3 ? wd[m] : "?");
        break;
    }
    case KT_LOGLEVEL: {
        unsigned m = (unsigned)*(const enum log_level *)v;
        snprintf(buf, len, "%s", m < 4 ? lvl[m] : "?");
        break;
    }
    case KT_LOGFORMAT:
        snprintf(buf, len, "%s", *(const enum log_format *)v == LOGF_JSON ? "json" : "plain");
        break;
    case KT_SLOTS:
    case KT_SLOTMATCH:
        cfg__slots_format_value(k, v, buf, len);
        break;
    case KT_USERS:
        cfg__users_format_value(v, buf, len);
        break;
    case KT_SECTION:
        snprintf(buf, len, "(section)");
        break;
    }
}
