/* Exchanges (one request and its reply), response serialization and the
 * request helpers handlers use. No I/O happens here: a finished reply is
 * handed to the connection (http_conn_send), or dropped when the connection
 * is already gone. */
#include "api/http_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/log.h"

/* --- buffers --------------------------------------------------------- */

static int buf_reserve(struct http_buf *b, size_t extra)
{
    if (extra > SIZE_MAX - b->len - 1)
        return -1;
    size_t need = b->len + extra + 1;
    if (need <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    char *p = realloc(b->p, cap);
    if (p == NULL)
        return -1;
    b->p = p;
    b->cap = cap;
    return 0;
}

int http_buf_append(struct http_buf *b, const void *data, size_t n)
{
    if (buf_reserve(b, n) != 0)
        return -1;
    if (n > 0)
        memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

int http_buf_nul(struct http_buf *b)
{
    return buf_reserve(b, 0) == 0 ? (b->p[b->len] = '\0', 0) : -1;
}

void http_buf_free(struct http_buf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

/* --- exchanges ------------------------------------------------------- */

struct http_exchange *http_exchange_new(struct http_conn *c)
{
    struct http_exchange *x = calloc(1, sizeof *x);
    if (x != NULL)
        x->conn = c;
    return x;
}

void http_exchange_free(struct http_exchange *x)
{
    if (x == NULL)
        return;
    http_buf_free(&x->url);
    http_buf_free(&x->hdrs);
    http_buf_free(&x->body);
    http_buf_free(&x->extra);
    free(x->path);
    free(x);
}

static unsigned method_bit(uint8_t m)
{
    switch (m) {
    case HTTP_GET: return HTTP_M_GET;
    case HTTP_HEAD: return HTTP_M_HEAD;
    case HTTP_OPTIONS: return HTTP_M_OPTIONS;
    case HTTP_POST: return HTTP_M_POST;
    case HTTP_PUT: return HTTP_M_PUT;
    case HTTP_PATCH: return HTTP_M_PATCH;
    case HTTP_DELETE: return HTTP_M_DELETE;
    default: return 0;
    }
}

/* Turn the accumulated url/header/body bytes into the struct http_request a
 * handler sees. Returns -1 only on allocation failure; an invalid path sets
 * bad_path (answered with 400 by the dispatcher). */
int http_exchange_finish(struct http_exchange *x, const char *client_ip)
{
    struct http_conn *c = x->conn;
    struct http_request *r = &x->req;
    uint8_t m = llhttp_get_method(&c->parser);

    r->method = method_bit(m);
    r->method_name = llhttp_method_name((llhttp_method_t)m);
    x->no_body = (m == HTTP_HEAD || m == HTTP_OPTIONS);
    if (http_buf_nul(&x->url) != 0 || http_buf_nul(&x->body) != 0 || http_buf_nul(&x->hdrs) != 0)
        return -1;

    /* Headers: offsets become pointers now that the arena stops growing. */
    for (size_t i = 0; i < x->n_headers; i++) {
        x->hv[i].name = x->hdrs.p + x->hoff[i][0];
        x->hv[i].value = x->hdrs.p + x->hoff[i][1];
    }
    r->headers = x->hv;
    r->n_headers = x->n_headers;
    r->body = x->body.p != NULL ? x->body.p : "";
    r->body_len = x->body.len;
    snprintf(r->client_ip, sizeof r->client_ip, "%s", client_ip);

    /* Request target: origin-form "/p?q", absolute-form "http://h/p?q"
     * (RFC 9112 3.2.2), or "*" for OPTIONS. The fragment is never sent by
     * a conforming client; drop it if one is. */
    char *u = x->url.p != NULL ? x->url.p : "";
    char *hash = strchr(u, '#');
    if (hash != NULL)
        *hash = '\0';
    if (strncasecmp(u, "http://", 7) == 0 || strncasecmp(u, "https://", 8) == 0) {
        char *slash = strchr(strstr(u, "//") + 2, '/');
        char *qm = strchr(strstr(u, "//") + 2, '?');
        if (slash == NULL || (qm != NULL && qm < slash)) {
            /* "http://host" or "http://host?q": the path is "/". */
            u = qm != NULL ? qm : u + strlen(u);
        } else {
            u = slash;
        }
    }
    char *q = strchr(u, '?');
    r->query = "";
    if (q != NULL) {
        *q = '\0';
        r->query = q + 1;
    }
    size_t plen = strlen(u);
    x->path = malloc(plen + 2);
    if (x->path == NULL)
        return -1;
    size_t dlen = 0;
    if (plen == 0) {
        memcpy(x->path, "/", 2);
    } else if (http_pct_decode(u, plen, x->path, plen + 1, false, &dlen) != 0 ||
               (x->path[0] != '/' && strcmp(x->path, "*") != 0)) {
        x->bad_path = true;
        snprintf(x->path, plen + 2, "%s", u);
    }
    r->path = x->path;
    return 0;
}

/* --- percent-decoding and JSON --------------------------------------- */

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

int http_pct_decode(const char *s, size_t n, char *out, size_t cap, bool plus_space,
                    size_t *out_len)
{
    size_t o = 0;
    if (cap == 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (ch == '%') {
            if (n - i < 3)
                return -1;
            int hi = hexval(s[i + 1]), lo = hexval(s[i + 2]);
            if (hi < 0 || lo < 0)
                return -1;
            ch = (char)(hi * 16 + lo);
            if (ch == '\0')
                return -1;
            i += 2;
        } else if (ch == '+' && plus_space) {
            ch = ' ';
        } else if (ch == '\0') {
            return -1;
        }
        if (o + 1 >= cap)
            return -1;
        out[o++] = ch;
    }
    out[o] = '\0';
    if (out_len != NULL)
        *out_len = o;
    return 0;
}

/* Length of a well-formed UTF-8 sequence at s (at most n bytes), 0 if not. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    size_t len;
    unsigned min;
    unsigned cp;
    if (s[0] < 0x80)
        return 1;
    if ((s[0] & 0xE0) == 0xC0) {
        len = 2, min = 0x80, cp = s[0] & 0x1F;
    } else if ((s[0] & 0xF0) == 0xE0) {
        len = 3, min = 0x800, cp = s[0] & 0x0F;
    } else if ((s[0] & 0xF8) == 0xF0) {
        len = 4, min = 0x10000, cp = s[0] & 0x07;
    } else {
        return 0;
    }
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return len;
}

static int json_escape(struct http_buf *b, const char *s)
{
    size_t n = strlen(s);
    for (size_t i = 0; i < n;) {
        unsigned char ch = (unsigned char)s[i];
        char esc[8];
        int rc;
        if (ch == '"' || ch == '\\') {
            esc[0] = '\\';
            esc[1] = (char)ch;
            rc = http_buf_append(b, esc, 2);
            i++;
        } else if (ch < 0x20 || ch == 0x7F) {
            snprintf(esc, sizeof esc, "\\u%04x", ch);
            rc = http_buf_append(b, esc, 6);
            i++;
        } else {
            size_t l = utf8_seq((const unsigned char *)s + i, n - i);
            if (l == 0) /* not UTF-8: keep the JSON valid */
                rc = http_buf_append(b, "\\ufffd", 6), l = 1;
            else
                rc = http_buf_append(b, s + i, l);
            i += l;
        }
        if (rc != 0)
            return -1;
    }
    return 0;
}

char *http_json_error(const char *prefix, const char *msg, size_t *out_len)
{
    struct http_buf b = {0};
    if (http_buf_append(&b, "{\"error\":\"", 10) != 0 || json_escape(&b, prefix) != 0 ||
        json_escape(&b, msg) != 0 || http_buf_append(&b, "\"}", 2) != 0) {
        http_buf_free(&b);
        return NULL;
    }
    *out_len = b.len;
    return b.p;
}

const char *http_status_reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 412: return "Precondition Failed";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 422: return "Unprocessable Content";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return status < 300 ? "OK" : status < 400 ? "Redirect" : status < 500 ? "Client Error"
                                                                                   : "Server Error";
    }
}

/* --- serialization --------------------------------------------------- */

char *http_response_build(const struct http_server *s, int status, const char *content_type,
                          const char *body, size_t len, const char *extra, size_t extra_len,
                          bool keep_alive, bool no_body, size_t *out_len)
{
    /* 204 and 304 never carry a body nor, for 204, a length (RFC 9110 8.6). */
    bool bodyless_status = (status == 204 || status == 304);
    if (bodyless_status || body == NULL)
        len = 0;
    if (content_type == NULL && len > 0)
        content_type = "application/json";
    char clen[48] = "";
    if (!bodyless_status)
        snprintf(clen, sizeof clen, "Content-Length: %zu\r\n", no_body ? 0 : len);
#define HEAD_FMT "HTTP/1.1 %d %s\r\nServer: %s\r\n%s%s%s%sConnection: %s\r\n"
#define HEAD_ARGS status, http_status_reason(status), s->server_name, \
                  content_type != NULL ? "Content-Type: " : "", \
                  content_type != NULL ? content_type : "", content_type != NULL ? "\r\n" : "", \
                  clen, keep_alive ? "keep-alive" : "close"
    int n = snprintf(NULL, 0, HEAD_FMT, HEAD_ARGS);
    size_t blen = no_body ? 0 : len;
    if (n < 0 || blen > SIZE_MAX / 2 || extra_len > SIZE_MAX / 4)
        return NULL;
    size_t hl = (size_t)n;
    size_t total = hl + extra_len + 2 + blen;
    char *out = malloc(total + 1); /* +1: snprintf's NUL, overwritten below */
    if (out == NULL)
        return NULL;
    snprintf(out, hl + 1, HEAD_FMT, HEAD_ARGS);
#undef HEAD_FMT
#undef HEAD_ARGS
    if (extra_len > 0)
        memcpy(out + hl, extra, extra_len);
    memcpy(out + hl + extra_len, "\r\n", 2);
    if (blen > 0)
        memcpy(out + hl + extra_len + 2, body, blen);
    *out_len = total;
    return out;
}

/* --- public: answering ----------------------------------------------- */

void http_reply(struct http_exchange *x, int status, const char *content_type, const char *body,
                size_t len)
{
    if (x == NULL)
        return;
    struct http_conn *c = x->conn;
    if (c == NULL || c->state != CONN_HANDLING || c->x != x) {
        /* The client went away or the server closed: nobody to answer. */
        if (c != NULL && c->x == x)
            c->x = NULL;
        http_exchange_free(x);
        return;
    }
    c->x = NULL;
    if (status < 200 || status > 599) {
        log_error("http", "handler for %s %s replied with invalid status %d; sending 500",
                  x->req.method_name, x->req.path, status);
        status = 500;
        content_type = NULL;
        body = "{\"error\":\"internal error: invalid status\"}";
        len = strlen(body);
    }
    if (content_type != NULL && (strchr(content_type, '\r') || strchr(content_type, '\n')))
        content_type = NULL;
    bool keep = x->keep_alive && !c->srv->closing;
    size_t out_len = 0;
    char *out = http_response_build(c->srv, status, content_type, body, len, x->extra.p,
                                    x->extra.len, keep, x->no_body, &out_len);
    http_exchange_free(x);
    if (out == NULL) {
        http_conn_close(c, "out of memory building a reply");
        return;
    }
    http_conn_send(c, out, out_len, !keep);
}

static bool is_token(const char *s)
{
    if (*s == '\0')
        return false;
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch <= 0x20 || ch >= 0x7F || strchr("\"(),/:;<=>?@[\\]{}", ch) != NULL)
            return false;
    }
    return true;
}

void http_reply_header(struct http_exchange *x, const char *name, const char *value)
{
    if (x == NULL || x->conn == NULL || name == NULL || value == NULL)
        return;
    if (!is_token(name) || strpbrk(value, "\r\n") != NULL) {
        log_error("http", "handler for %s %s tried to add an invalid header '%s'",
                  x->req.method_name, x->req.path, name);
        return;
    }
    if (http_buf_append(&x->extra, name, strlen(name)) != 0 ||
        http_buf_append(&x->extra, ": ", 2) != 0 ||
        http_buf_append(&x->extra, value, strlen(value)) != 0 ||
        http_buf_append(&x->extra, "\r\n", 2) != 0)
        log_error("http", "out of memory adding header %s", name);
}

void http_reply_text(struct http_exchange *x, int status, const char *text)
{
    if (status >= 400) {
        size_t n = 0;
        char *body = http_json_error("", text != NULL ? text : "", &n);
        if (body != NULL) {
            http_reply(x, status, "application/json", body, n);
            free(body);
            return;
        }
        http_reply(x, 500, NULL, NULL, 0);
        return;
    }
    http_reply(x, status, "text/plain; charset=utf-8", text, text != NULL ? strlen(text) : 0);
}

void http_exchange_on_abort(struct http_exchange *x, void (*fn)(void *ctx), void *ctx)
{
    if (x == NULL)
        return;
    x->abort_fn = fn;
    x->abort_ctx = ctx;
}

/* --- public: request helpers ----------------------------------------- */

const char *http_request_header(const struct http_request *req, const char *name)
{
    for (size_t i = 0; i < req->n_headers; i++) {
        if (strcasecmp(req->headers[i].name, name) == 0)
            return req->headers[i].value;
    }
    return NULL;
}

const char *http_query_param(const struct http_request *req, const char *name, char *buf,
                             size_t len)
{
    const char *q = req->query != NULL ? req->query : "";
    while (*q != '\0') {
        const char *end = strchr(q, '&');
        size_t n = end != NULL ? (size_t)(end - q) : strlen(q);
        const char *eq = memchr(q, '=', n);
        size_t klen = eq != NULL ? (size_t)(eq - q) : n;
        char key[256];
        if (http_pct_decode(q, klen, key, sizeof key, true, NULL) == 0 &&
            strcmp(key, name) == 0) {
            const char *v = eq != NULL ? eq + 1 : q + n;
            size_t vlen = (size_t)(q + n - v);
            if (http_pct_decode(v, vlen, buf, len, true, NULL) != 0)
                return NULL;
            return buf;
        }
        if (end == NULL)
            break;
        q = end + 1;
    }
    return NULL;
}
