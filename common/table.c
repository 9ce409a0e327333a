/* Text tables in patronictl's layout; see table.h. */
#include "common/table.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

struct table {
    size_t ncols;
    char **names;
    enum table_align *align;
    char **cells; /* nrows * ncols, row-major */
    size_t nrows, cap;
};

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

static void repeat(struct out *o, char c, size_t n)
{
    char buf[64];
    memset(buf, c, sizeof buf);
    while (n > 0) {
        size_t k = n < sizeof buf ? n : sizeof buf;
        put(o, buf, k);
        n -= k;
    }
}

static char *finish(struct out *o)
{
    if (o->failed || o->s == NULL) {
        if (!o->failed)
            return strdup("");
        free(o->s);
        return NULL;
    }
    return o->s;
}

/* --- construction ----------------------------------------------------------- */

struct table *table_new(size_t ncols, const char *const *names)
{
    if (ncols == 0)
        return NULL;
    struct table *t = calloc(1, sizeof *t);
    if (t == NULL)
        return NULL;
    t->ncols = ncols;
    t->names = calloc(ncols, sizeof *t->names);
    t->align = calloc(ncols, sizeof *t->align);
    if (t->names == NULL || t->align == NULL)
        goto fail;
    for (size_t i = 0; i < ncols; i++) {
        t->names[i] = strdup(names[i] != NULL ? names[i] : "");
        if (t->names[i] == NULL)
            goto fail;
    }
    return t;
fail:
    table_free(t);
    return NULL;
}

void table_free(struct table *t)
{
    if (t == NULL)
        return;
    if (t->names != NULL)
        for (size_t i = 0; i < t->ncols; i++)
            free(t->names[i]);
    for (size_t i = 0; i < t->nrows * t->ncols; i++)
        free(t->cells[i]);
    free(t->cells);
    free(t->names);
    free(t->align);
    free(t);
}

void table_set_align(struct table *t, size_t col, enum table_align a)
{
    if (col < t->ncols)
        t->align[col] = a;
}

int table_add_row(struct table *t, const char *const *cells)
{
    if (t->nrows == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 8;
        char **p = realloc(t->cells, cap * t->ncols * sizeof *p);
        if (p == NULL)
            return PGW_ENOMEM;
        t->cells = p;
        t->cap = cap;
    }
    char **row = t->cells + t->nrows * t->ncols;
    for (size_t i = 0; i < t->ncols; i++) {
        row[i] = strdup(cells[i] != NULL ? cells[i] : "");
        if (row[i] == NULL) {
            while (i-- > 0)
                free(row[i]);
            return PGW_ENOMEM;
        }
    }
    t->nrows++;
    return PGW_OK;
}

size_t table_rows(const struct table *t)
{
    return t->nrows;
}

size_t table_text_width(const char *s, size_t len)
{
    size_t w = 0;
    for (size_t i = 0; i < len; i++)
        if (((unsigned char)s[i] & 0xC0) != 0x80)
            w++;
    return w;
}

/* --- layout ----------------------------------------------------------------- */

static size_t line_count(const char *s)
{
    size_t n = 1;
    for (; *s; s++)
        if (*s == '\n')
            n++;
    return n;
}

/* The k-th line of s: start and length. */
static const char *nth_line(const char *s, size_t k, size_t *len)
{
    for (; k > 0; k--) {
        const char *nl = strchr(s, '\n');
        if (nl == NULL) {
            *len = 0;
            return "";
        }
        s = nl + 1;
    }
    const char *nl = strchr(s, '\n');
    *len = nl != NULL ? (size_t)(nl - s) : strlen(s);
    return s;
}

static size_t widest_line(const char *s)
{
    size_t best = 0;
    size_t n = line_count(s);
    for (size_t k = 0; k < n; k++) {
        size_t len;
        const char *l = nth_line(s, k, &len);
        size_t w = table_text_width(l, len);
        if (w > best)
            best = w;
    }
    return best;
}

static void rule(struct out *o, const size_t *w, size_t ncols)
{
    puts_(o, "+");
    for (size_t c = 0; c < ncols; c++) {
        repeat(o, '-', w[c] + 2);
        puts_(o, "+");
    }
}

static void cell(struct out *o, const char *text, size_t len, size_t width, enum table_align a)
{
    size_t tw = table_text_width(text, len);
    size_t pad = width > tw ? width - tw : 0;
    puts_(o, " ");
    if (a == TABLE_RIGHT)
        repeat(o, ' ', pad);
    put(o, text, len);
    if (a == TABLE_LEFT)
        repeat(o, ' ', pad);
    puts_(o, " |");
}

char *table_render_pretty(const struct table *t, const char *title)
{
    size_t *w = calloc(t->ncols, sizeof *w);
    if (w == NULL)
        return NULL;
    bool multiline = false;
    for (size_t c = 0; c < t->ncols; c++)
        w[c] = widest_line(t->names[c]);
    for (size_t r = 0; r < t->nrows; r++) {
        for (size_t c = 0; c < t->ncols; c++) {
            const char *s = t->cells[r * t->ncols + c];
            size_t cw = widest_line(s);
            if (cw > w[c])
                w[c] = cw;
            if (strchr(s, '\n') != NULL)
                multiline = true;
        }
    }
    size_t total = 1;
    for (size_t c = 0; c < t->ncols; c++)
        total += w[c] + 3;
    size_t tlen = title != NULL ? strlen(title) : 0;
    size_t twidth = title != NULL ? table_text_width(title, tlen) : 0;
    /* the title goes between "+ " and at least " -+" */
    if (title != NULL && twidth + 5 > total) {
        w[t->ncols - 1] += twidth + 5 - total;
        total = twidth + 5;
    }

    struct out o = {0};
    if (title != NULL) {
        /* "+ <title> " then the rest of the top rule from the same column */
        struct out top = {0};
        rule(&top, w, t->ncols);
        char *line = finish(&top);
        if (line == NULL) {
            free(w);
            return NULL;
        }
        puts_(&o, "+ ");
        put(&o, title, tlen);
        puts_(&o, " ");
        puts_(&o, line + twidth + 3); /* the rule is ASCII: columns are bytes */
        free(line);
    } else {
        rule(&o, w, t->ncols);
    }
    puts_(&o, "\n");
    size_t hl = 1;
    for (size_t c = 0; c < t->ncols; c++) {
        size_t n = line_count(t->names[c]);
        if (n > hl)
            hl = n;
    }
    for (size_t k = 0; k < hl; k++) {
        puts_(&o, "|");
        for (size_t c = 0; c < t->ncols; c++) {
            size_t len;
            const char *l = nth_line(t->names[c], k, &len);
            cell(&o, l, len, w[c], t->align[c]);
        }
        puts_(&o, "\n");
    }
    rule(&o, w, t->ncols);
    puts_(&o, "\n");
    for (size_t r = 0; r < t->nrows; r++) {
        char **row = t->cells + r * t->ncols;
        size_t lines = 1;
        for (size_t c = 0; c < t->ncols; c++) {
            size_t n = line_count(row[c]);
            if (n > lines)
                lines = n;
        }
        for (size_t k = 0; k < lines; k++) {
            puts_(&o, "|");
            for (size_t c = 0; c < t->ncols; c++) {
                size_t len;
                const char *l = nth_line(row[c], k, &len);
                cell(&o, l, len, w[c], t->align[c]);
            }
            puts_(&o, "\n");
        }
        if (multiline || r + 1 == t->nrows) {
            rule(&o, w, t->ncols);
            puts_(&o, "\n");
        }
    }
    free(w);
    return finish(&o);
}

static void tsv_cell(struct out *o, const char *s)
{
    for (; *s; s++) {
        char ch = *s == '\t' || *s == '\n' || *s == '\r' ? ' ' : *s;
        put(o, &ch, 1);
    }
}

char *table_render_tsv(const struct table *t)
{
    struct out o = {0};
    for (size_t c = 0; c < t->ncols; c++) {
        if (c > 0)
            puts_(&o, "\t");
        tsv_cell(&o, t->names[c]);
    }
    puts_(&o, "\n");
    for (size_t r = 0; r < t->nrows; r++) {
        for (size_t c = 0; c < t->ncols; c++) {
            if (c > 0)
                puts_(&o, "\t");
            tsv_cell(&o, t->cells[r * t->ncols + c]);
        }
        puts_(&o, "\n");
    }
    return finish(&o);
}
