#include "api/api_internal.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include "common/cidr.h"

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int b64val(char c)
{
    const char *p = strchr(b64, c);
    return (c != '\0' && p != NULL) ? (int)(p - b64) : -1;
}

/* Decode base64 into out (NUL-terminated); false on malformed input. */
static bool b64_decode(const char *in, char *out, size_t cap)
{
    size_t o = 0;
    uint32_t buf = 0;
    int bits = 0;
    for (const char *p = in; *p && *p != '='; p++) {
        int v = b64val(*p);
        if (v < 0)
            return false;
        /* at most 13 significant bits are ever pending: keep only those */
        buf = ((buf << 6) | (uint32_t)v) & 0x3fffu;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o + 1 >= cap)
                return false;
            out[o++] = (char)((buf >> bits) & 0xffu);
        }
    }
    out[o] = '\0';
    return true;
}

/* Constant-time comparison: the time taken does not depend on where the
 * strings differ (only on the length of the expected one). */
static bool secret_equal(const char *given, const char *expected)
{
    size_t gl = strlen(given), el = strlen(expected);
    unsigned char diff = (unsigned char)(gl != el);
    for (size_t i = 0; i < el; i++)
        diff |= (unsigned char)(expected[i] ^ (i < gl ? given[i] : 0));
    return diff == 0;
}

/* Members talk to each other's write endpoints (forwarded commands, joins):
 * their addresses are always allowed. */
static bool is_member_host(const struct api_ctx *ctx, const char *ip)
{
    const struct fsm_state *st = &ctx->fsm->st;
    for (unsigned i = 0; i < st->n_members; i++) {
        const struct fsm_member *m = &st->members[i];
        size_t n = strlen(ip);
        if (strncmp(m->raft_addr, ip, n) == 0 && m->raft_addr[n] == ':')
            return true;
        const char *h = strstr(m->api_url, "://");
        if (h != NULL && strncmp(h + 3, ip, n) == 0 && (h[3 + n] == ':' || h[3 + n] == '/' || h[3 + n] == '\0'))
            return true;
    }
    return false;
}

static bool allowed(const struct api_ctx *ctx, const struct http_request *req)
{
    const struct cfg_strlist *al = &ctx->cfg->restapi.allowlist;
    if (al->n == 0)
        return true;
    const char *ip = req->client_ip;
    if (strncmp(ip, "::ffff:", 7) == 0)
        ip += 7;
    for (size_t i = 0; i < al->n; i++)
        if (cidr_match(al->items[i], ip))
            return true;
    return is_member_host(ctx, ip);
}

bool api_member_without_secret(const struct api_ctx *ctx, const struct http_request *req)
{
    if (ctx->cfg->raft.password != NULL && ctx->cfg->raft.password[0] != '\0')
        return false;
    const char *ip = req->client_ip;
    if (strncmp(ip, "::ffff:", 7) == 0)
        ip += 7;
    return allowed(ctx, req) && is_member_host(ctx, ip);
}

bool api_check_auth(struct http_exchange *x, const struct http_request *req,
                    const struct api_ctx *ctx)
{
    if (!allowed(ctx, req)) {
        api_reply_error(x, 403, "%s is not in restapi.allowlist", req->client_ip);
        return false;
    }
    /* restapi.verify_client: optional asks for a client certificate in the
     * handshake and requires it here, for write methods only (required is
     * enforced by the handshake itself). */
    if (http_request_needs_client_cert(req, ctx->cfg->restapi.verify_client)) {
        api_reply_error(x, 403, "client certificate required for %s %s "
                        "(restapi.verify_client: optional)", req->method_name, req->path);
        return false;
    }
    const char *user = ctx->cfg->restapi.auth_username, *pass = ctx->cfg->restapi.auth_password;
    if (user == NULL || pass == NULL)
        return true;
    const char *h = http_request_header(req, "authorization");
    char decoded[512];
    bool ok = false;
    if (h != NULL && strncasecmp(h, "Basic ", 6) == 0 && b64_decode(h + 6, decoded, sizeof decoded)) {
        char *colon = strchr(decoded, ':');
        if (colon != NULL) {
            *colon = '\0';
            bool u = secret_equal(decoded, user);
            bool p = secret_equal(colon + 1, pass);
            ok = u && p;
        }
    }
    if (!ok) {
        http_reply_header(x, "WWW-Authenticate", "Basic realm=\"pgwarden\"");
        api_reply_error(x, 401, "authentication required for %s %s", req->method_name, req->path);
    }
    return ok;
}

void api_reply_json(struct http_exchange *x, int status, json_t *body)
{
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    if (text == NULL) {
        http_reply_text(x, 500, "out of memory");
        return;
    }
    http_reply(x, status, "application/json", text, strlen(text));
    free(text);
}

void api_reply_error(struct http_exchange *x, int status, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    api_reply_json(x, status, json_pack("{s:s}", "error", msg));
}

json_t *api_body_object(struct http_exchange *x, const struct http_request *req)
{
    if (req->body_len == 0) {
        api_reply_error(x, 400, "a JSON object body is required");
        return NULL;
    }
    json_error_t err;
    json_t *j = json_loadb(req->body, req->body_len, JSON_REJECT_DUPLICATES, &err);
    if (j == NULL) {
        api_reply_error(x, 400, "malformed JSON body at line %d column %d: %s", err.line, err.column,
                        err.text);
        return NULL;
    }
    if (!json_is_object(j)) {
        json_decref(j);
        api_reply_error(x, 400, "the body must be a JSON object");
        return NULL;
    }
    return j;
}

int api_register(struct http_server *s, struct api_ctx *ctx)
{
    int rc = api_register_health(s, ctx);
    if (rc == 0)
        rc = api_register_status(s, ctx);
    if (rc == 0)
        rc = api_register_raft(s, ctx);
    if (rc == 0)
        rc = api_register_actions(s, ctx);
    if (rc == 0)
        rc = api_register_ops(s, ctx);
    if (rc == 0)
        rc = api_register_metrics(s, ctx);
    return rc;
}

int api_register_probes(struct http_server *s, struct api_ctx *ctx)
{
    return api_register_health(s, ctx);
}
