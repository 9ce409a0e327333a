/* Text tables for `pgwarden ctl`: patronictl's "pretty" layout (PrettyTable
 * borders, the title written into the top border, right-aligned numeric
 * columns, a rule between every row when a cell spans several lines) and a
 * tab-separated layout for scripts.
 *
 * Pure formatting: no I/O, every render returns a malloc'd string the caller
 * frees. Widths count UTF-8 code points, so member names in any script line
 * up as long as they are not double-width characters. */
#ifndef PGW_COMMON_TABLE_H
#define PGW_COMMON_TABLE_H

#include <stddef.h>

#include "common/status.h"

struct table; /* opaque */

enum table_align { TABLE_LEFT = 0, TABLE_RIGHT };

/* A table with `ncols` columns named names[0..ncols-1] (copied). NULL when
 * out of memory or ncols is 0. */
struct table *table_new(size_t ncols, const char *const *names);
void table_free(struct table *t);

void table_set_align(struct table *t, size_t col, enum table_align a);

/* Append a row of ncols cells (copied; NULL means empty). A cell may hold
 * several lines separated by '\n'. Returns 0 or PGW_ENOMEM. */
int table_add_row(struct table *t, const char *const *cells) PGW_MUST_CHECK;

size_t table_rows(const struct table *t);

/* The pretty layout, ending with a newline:
 *   + Cluster: demo (7712289201553529298) ------+----+
 *   | Member | Host            | Role    | ... | TL |
 *   +--------+-----------------+---------+-----+----+
 *   | n1     | 127.0.0.1:5432  | Leader  | ... |  1 |
 *   +--------+-----------------+---------+-----+----+
 * `title` (may be NULL) is written into the top border after "+ "; when it
 * does not fit, the last column is widened so that it does (patronictl cuts
 * it instead, losing the system identifier). NULL when out of memory. */
char *table_render_pretty(const struct table *t, const char *title);

/* Header line then one line per row, cells separated by a tab; tabs and
 * newlines inside cells become spaces so every row stays one line. */
char *table_render_tsv(const struct table *t);

/* Display width of a UTF-8 string (code points; continuation bytes do not count). */
size_t table_text_width(const char *s, size_t len);

#endif
