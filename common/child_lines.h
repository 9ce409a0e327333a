/* A child process's output (stdout or stderr, read through a libuv pipe) cut
 * into lines for the log. Shared by pg/proc.c (initdb, pg_basebackup,
 * pg_rewind, ...) and ha/hooks.c (callbacks, pre_promote).
 *
 * '\n' and '\r' both end a line, so pg_basebackup's '\r' progress reports
 * are lines of their own. Trailing blanks are trimmed and empty lines
 * skipped. A line longer than CHILD_LINE_MAX - 1 bytes is given in pieces
 * rather than cut, so nothing the child printed is lost. */
#ifndef PGW_COMMON_CHILD_LINES_H
#define PGW_COMMON_CHILD_LINES_H

#include <stddef.h>

#include <uv.h>

#define CHILD_LINE_MAX 2048

/* line: NUL-terminated, non-empty, no trailing blanks; valid during the call. */
typedef void (*child_line_fn)(void *ctx, const char *line, size_t len);

struct child_lines {
    char line[CHILD_LINE_MAX];
    size_t len;
};

/* Every line that data completes goes to fn; an unfinished line is kept. */
void child_lines_feed(struct child_lines *cl, const char *data, size_t n, child_line_fn fn,
                      void *ctx);
/* At EOF: the unfinished line, if any, goes to fn. */
void child_lines_flush(struct child_lines *cl, child_line_fn fn, void *ctx);

/* A uv_alloc_cb for such pipes: malloc'd buffers (the read callback frees
 * buf->base when buf->len > 0); on allocation failure a zero-length buffer,
 * which libuv reports to the read callback as UV_ENOBUFS. */
void child_lines_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);

#endif
