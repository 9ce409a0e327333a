/* TLS for the HTTP client (https:// URLs): OpenSSL over memory BIOs, driven
 * by common/httpc.c on the caller's loop.
 *
 * Happy path: httpc_tls_new (context from the cache, SSL with the expected
 * host name or IP address) -> begin: ClientHello -> feed server bytes until
 * the handshake completes (the server's certificate is verified against the
 * CA file and the host) -> the request is encrypted and queued -> response
 * bytes decrypted by httpc_tls_read -> close_notify or TCP end.
 * Failure modes, each with a message naming the cause: a CA, certificate or
 * key file missing or unreadable or not PEM (at start, synchronously); the
 * server's certificate not trusted, expired or for another name; the server
 * requires a client certificate we do not have or does not trust ours (an
 * alert, reported by httpc_tls_feed or httpc_tls_read); not TLS at all.
 *
 * Contexts are cached (a handful of distinct settings per process: the
 * daemon's own, ctl's), keyed by the options and the files' modification
 * times and sizes, so a renewed certificate is picked up by the next request.
 * The process is single-threaded (one libuv loop), and so is the cache. */
#include "common/httpc_tls.h"
#include "common/tls_errors.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "common/cfg.h"

#define CACHE_SLOTS 4

struct httpc_tls {
    SSL *ssl;
    BIO *rbio, *wbio; /* owned by ssl */
    const char *req;  /* the request, sent once the handshake is done */
    size_t req_len;
    bool done, sent;
    char host[256];
    char err[384];
};

struct cache_slot {
    char *key;
    SSL_CTX *ctx;
    uint64_t used;
};

static struct cache_slot cache[CACHE_SLOTS];
static uint64_t cache_clock;

void httpc_tls_from_cfg(const struct cfg *cfg, struct httpc_tls_opts *out)
{
    memset(out, 0, sizeof *out);
    out->cafile = cfg->restapi.cafile;
    const char *vc = cfg->restapi.verify_client;
    if (vc != NULL && strcmp(vc, "none") != 0) {
        out->certfile = cfg->restapi.certfile;
        out->keyfile = cfg->restapi.keyfile;
    }
}

/* The reason for a failed handshake or read, with the certificate check's
 * verdict when that is what failed. */
static void set_failure(struct httpc_tls *t)
{
    char reasons[256];
    unsigned long first = ERR_peek_error();
    bool not_tls = ERR_GET_LIB(first) == ERR_LIB_SSL &&
                   ERR_GET_REASON(first) == SSL_R_WRONG_VERSION_NUMBER;
    tls_error_reasons(reasons, sizeof reasons);
    long vr = SSL_get_verify_result(t->ssl);
    if (not_tls)
        snprintf(t->err, sizeof t->err, "%s (the server does not speak TLS there: http:// ?)",
                 reasons);
    else if (vr != X509_V_OK)
        snprintf(t->err, sizeof t->err, "%s (server certificate: %s)", reasons,
                 X509_verify_cert_error_string(vr));
    else
        snprintf(t->err, sizeof t->err, "%s", reasons);
}

/* --- contexts ---------------------------------------------------------------- */

/* Append "path@mtime:size|" for the cache key; false when unreadable. */
static bool key_part(char *key, size_t len, const char *what, const char *path, char *errbuf,
                     size_t errlen)
{
    size_t o = strlen(key);
    if (path == NULL) {
        snprintf(key + o, len - o, "-|");
        return true;
    }
    struct stat st;
    FILE *f = fopen(path, "r");
    if (f == NULL || fstat(fileno(f), &st) != 0) {
        snprintf(errbuf, errlen, "TLS %s %s: %s", what, path, strerror(errno));
        if (f != NULL)
            fclose(f);
        return false;
    }
    fclose(f);
    snprintf(key + o, len - o, "%s@%lld.%09ld:%lld|", path, (long long)st.st_mtim.tv_sec,
             st.st_mtim.tv_nsec, (long long)st.st_size);
    return true;
}

static SSL_CTX *ctx_build(const struct httpc_tls_opts *o, char *errbuf, size_t errlen)
{
    char why[256];
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL) {
        tls_error_reasons(why, sizeof why);
        snprintf(errbuf, errlen, "TLS: cannot create a context: %s", why);
        return NULL;
    }
    (void)SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
    SSL_CTX_set_default_passwd_cb(ctx, tls_no_passphrase);
    if (o->insecure) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    } else {
        int ok = o->cafile != NULL ? SSL_CTX_load_verify_locations(ctx, o->cafile, NULL)
                                   : SSL_CTX_set_default_verify_paths(ctx);
        if (ok != 1) {
            tls_error_reasons(why, sizeof why);
            snprintf(errbuf, errlen, "TLS CA file %s: cannot load PEM certificates: %s",
                     o->cafile != NULL ? o->cafile : "(system default)", why);
            goto fail;
        }
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    }
    if (o->certfile != NULL) {
        if (SSL_CTX_use_certificate_chain_file(ctx, o->certfile) != 1) {
            tls_error_reasons(why, sizeof why);
            snprintf(errbuf, errlen, "TLS client certificate %s: cannot load a PEM "
                     "certificate: %s", o->certfile, why);
            goto fail;
        }
        if (SSL_CTX_use_PrivateKey_file(ctx, o->keyfile, SSL_FILETYPE_PEM) != 1) {
            if (tls_error_key_mismatch()) {
                snprintf(errbuf, errlen, "TLS client key %s does not match the certificate in "
                         "%s", o->keyfile, o->certfile);
                goto fail;
            }
            tls_error_reasons(why, sizeof why);
            snprintf(errbuf, errlen, "TLS client key %s: cannot load a PEM private key (not "
                     "PEM, or protected by a passphrase, which is not supported): %s", o->keyfile, why);
            goto fail;
        }
        if (SSL_CTX_check_private_key(ctx) != 1) {
            ERR_clear_error();
            snprintf(errbuf, errlen, "TLS client key %s does not match the certificate in %s",
                     o->keyfile, o->certfile);
            goto fail;
        }
    }
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

/* A context for these options, from the cache or freshly built (and then
 * cached). The cache keeps its own reference. */
static SSL_CTX *ctx_get(const struct httpc_tls_opts *o, char *errbuf, size_t errlen)
{
    if ((o->certfile == NULL) != (o->keyfile == NULL)) {
        snprintf(errbuf, errlen, "TLS: a client certificate needs both a certificate file and "
                 "a key file (%s missing)", o->certfile == NULL ? "certificate" : "key");
        return NULL;
    }
    char key[3 * (PATH_MAX + 48) + 8];
    snprintf(key, sizeof key, "%c|", o->insecure ? 'i' : 'v');
    if (!key_part(key, sizeof key, "CA file", o->insecure ? NULL : o->cafile, errbuf, errlen) ||
        !key_part(key, sizeof key, "client certificate", o->certfile, errbuf, errlen) ||
        !key_part(key, sizeof key, "client key", o->keyfile, errbuf, errlen))
        return NULL;
    cache_clock++;
    size_t victim = 0;
    for (size_t i = 0; i < CACHE_SLOTS; i++) {
        if (cache[i].key != NULL && strcmp(cache[i].key, key) == 0) {
            cache[i].used = cache_clock;
            return cache[i].ctx;
        }
        if (cache[i].used < cache[victim].used)
            victim = i;
    }
    SSL_CTX *ctx = ctx_build(o, errbuf, errlen);
    if (ctx == NULL)
        return NULL;
    char *k = strdup(key);
    if (k == NULL) {
        SSL_CTX_free(ctx);
        snprintf(errbuf, errlen, "TLS: out of memory");
        return NULL;
    }
    /* Requests still using the evicted context hold their own reference. */
    SSL_CTX_free(cache[victim].ctx);
    free(cache[victim].key);
    cache[victim] = (struct cache_slot){.key = k, .ctx = ctx, .used = cache_clock};
    return ctx;
}

/* --- one session ------------------------------------------------------------- */

static bool inet_pton_any(const char *host, unsigned char *out)
{
    return inet_pton(AF_INET, host, out) == 1 || inet_pton(AF_INET6, host, out) == 1;
}

int httpc_tls_new(const struct httpc_tls_opts *o, const char *host, struct httpc_tls **out,
                  char *errbuf, size_t errlen)
{
    *out = NULL;
    SSL_CTX *ctx = ctx_get(o, errbuf, errlen);
    if (ctx == NULL)
        return PGW_EINVAL;
    struct httpc_tls *t = calloc(1, sizeof *t);
    if (t == NULL) {
        snprintf(errbuf, errlen, "TLS: out of memory");
        return PGW_ENOMEM;
    }
    snprintf(t->host, sizeof t->host, "%s", host);
    ERR_clear_error();
    t->ssl = SSL_new(ctx);
    t->rbio = BIO_new(BIO_s_mem());
    t->wbio = BIO_new(BIO_s_mem());
    if (t->ssl == NULL || t->rbio == NULL || t->wbio == NULL) {
        BIO_free(t->rbio);
        BIO_free(t->wbio);
        SSL_free(t->ssl);
        free(t);
        ERR_clear_error();
        snprintf(errbuf, errlen, "TLS: out of memory");
        return PGW_ENOMEM;
    }
    BIO_set_mem_eof_return(t->rbio, -1);
    SSL_set_bio(t->ssl, t->rbio, t->wbio);
    SSL_set_connect_state(t->ssl);
    unsigned char ip[16];
    bool is_ip = inet_pton_any(host, ip);
    int ok = 1;
    if (!o->insecure) {
        /* RFC 6125: a literal address is matched against the certificate's
         * IP SANs, a name against its DNS names. */
        if (is_ip)
            ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(t->ssl), host);
        else
            ok = SSL_set1_host(t->ssl, host);
    }
    if (ok == 1 && !is_ip)
        ok = SSL_set_tlsext_host_name(t->ssl, host); /* SNI: names only */
    if (ok != 1) {
        char why[256];
        tls_error_reasons(why, sizeof why);
        snprintf(errbuf, errlen, "TLS: cannot check the server's name against \"%s\": %s", host,
                 why);
        httpc_tls_free(t);
        return PGW_EINVAL;
    }
    *out = t;
    return PGW_OK;
}

void httpc_tls_free(struct httpc_tls *t)
{
    if (t == NULL)
        return;
    SSL_free(t->ssl);
    free(t);
}

const char *httpc_tls_error(const struct httpc_tls *t)
{
    return t->err[0] != '\0' ? t->err : "unknown TLS error";
}

bool httpc_tls_handshake_done(const struct httpc_tls *t)
{
    return t->done;
}

/* Handshake, then the request once. */
static int advance(struct httpc_tls *t)
{
    if (!t->done) {
        ERR_clear_error();
        int r = SSL_do_handshake(t->ssl);
        if (r != 1) {
            if (SSL_get_error(t->ssl, r) == SSL_ERROR_WANT_READ)
                return 0;
            set_failure(t);
            return PGW_EPROTO;
        }
        t->done = true;
    }
    if (!t->sent && t->req != NULL) {
        ERR_clear_error();
        if (t->req_len > INT_MAX || SSL_write(t->ssl, t->req, (int)t->req_len) != (int)t->req_len) {
            set_failure(t);
            return PGW_EPROTO;
        }
        t->sent = true;
    }
    return 0;
}

int httpc_tls_begin(struct httpc_tls *t, const char *req, size_t len)
{
    t->req = req;
    t->req_len = len;
    return advance(t);
}

int httpc_tls_feed(struct httpc_tls *t, const char *data, size_t n)
{
    if (n > INT_MAX || BIO_write(t->rbio, data, (int)n) != (int)n) {
        snprintf(t->err, sizeof t->err, "out of memory");
        return PGW_ENOMEM;
    }
    return advance(t);
}

int httpc_tls_read(struct httpc_tls *t, char *buf, size_t cap)
{
    if (!t->done)
        return 0;
    ERR_clear_error();
    int r = SSL_read(t->ssl, buf, cap > INT_MAX ? INT_MAX : (int)cap);
    if (r > 0)
        return r;
    int e = SSL_get_error(t->ssl, r);
    if (e == SSL_ERROR_WANT_READ)
        return 0;
    if (e == SSL_ERROR_ZERO_RETURN)
        return HTTPC_TLS_EOF;
    set_failure(t);
    return PGW_EPROTO;
}

size_t httpc_tls_out_pending(const struct httpc_tls *t)
{
    return BIO_ctrl_pending(t->wbio);
}

size_t httpc_tls_take_out(struct httpc_tls *t, char *buf, size_t cap)
{
    int n = BIO_read(t->wbio, buf, cap > INT_MAX ? INT_MAX : (int)cap);
    return n > 0 ? (size_t)n : 0;
}
