#include "common/child_lines.h"

#include <stdlib.h>

void child_lines_flush(struct child_lines *cl, child_line_fn fn, void *ctx)
{
    size_t len = cl->len;
    cl->len = 0;
    while (len > 0 && (cl->line[len - 1] == ' ' || cl->line[len - 1] == '\t'))
        len--;
    if (len == 0)
        return;
    cl->line[len] = '\0';
    fn(ctx, cl->line, len);
}

void child_lines_feed(struct child_lines *cl, const char *data, size_t n, child_line_fn fn,
                      void *ctx)
{
    for (size_t i = 0; i < n; i++) {
        char c = data[i];
        if (c == '\n' || c == '\r') {
            child_lines_flush(cl, fn, ctx);
        } else {
            if (cl->len == CHILD_LINE_MAX - 1)
                child_lines_flush(cl, fn, ctx);
            cl->line[cl->len++] = c;
        }
    }
}

void child_lines_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    static char none;
    buf->base = malloc(suggested);
    buf->len = buf->base != NULL ? suggested : 0;
    if (buf->base == NULL)
        buf->base = &none;
}
