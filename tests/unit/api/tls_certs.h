/* Throwaway certificates for the TLS tests, made with OpenSSL's API into a
 * fresh temporary directory: two CAs, and leaf certificates (EC P-256)
 * signed by one of them. Included by one test file each (static helpers). */
#ifndef PGW_TEST_TLS_CERTS_H
#define PGW_TEST_TLS_CERTS_H

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

struct tls_id {
    EVP_PKEY *key;
    X509 *cert;
};

static void tls_id_free(struct tls_id *id)
{
    EVP_PKEY_free(id->key);
    X509_free(id->cert);
    id->key = NULL;
    id->cert = NULL;
}

static bool add_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (ext == NULL)
        return false;
    bool ok = X509_add_ext(cert, ext, -1) == 1;
    X509_EXTENSION_free(ext);
    return ok;
}

/* A CA (issuer NULL: self-signed) or a leaf signed by issuer. san like
 * "IP:127.0.0.1,DNS:localhost" (NULL for none); eku like "serverAuth". */
static bool tls_id_make(struct tls_id *id, const char *cn, const struct tls_id *issuer,
                        const char *san, const char *eku, long valid_days, long serial)
{
    memset(id, 0, sizeof *id);
    id->key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    id->cert = X509_new();
    if (id->key == NULL || id->cert == NULL)
        return false;
    X509 *x = id->cert;
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), serial);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), valid_days * 86400L);
    X509_set_pubkey(x, id->key);
    X509_NAME *name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509 *iss = issuer != NULL ? issuer->cert : x;
    X509_set_issuer_name(x, X509_get_subject_name(iss));
    bool ok;
    if (issuer == NULL) {
        ok = add_ext(x, x, NID_basic_constraints, "critical,CA:TRUE") &&
             add_ext(x, x, NID_key_usage, "critical,keyCertSign,cRLSign") &&
             add_ext(x, x, NID_subject_key_identifier, "hash");
    } else {
        ok = add_ext(x, iss, NID_basic_constraints, "critical,CA:FALSE") &&
             add_ext(x, iss, NID_key_usage, "critical,digitalSignature") &&
             add_ext(x, iss, NID_authority_key_identifier, "keyid") &&
             (eku == NULL || add_ext(x, iss, NID_ext_key_usage, eku)) &&
             (san == NULL || add_ext(x, iss, NID_subject_alt_name, san));
    }
    EVP_PKEY *signer = issuer != NULL ? issuer->key : id->key;
    return ok && X509_sign(x, signer, EVP_sha256()) > 0;
}

static bool write_cert(const char *path, X509 *cert)
{
    FILE *f = fopen(path, "w");
    if (f == NULL)
        return false;
    bool ok = PEM_write_X509(f, cert) == 1;
    return fclose(f) == 0 && ok;
}

static bool write_key(const char *path, EVP_PKEY *key)
{
    FILE *f = fopen(path, "w");
    if (f == NULL)
        return false;
    chmod(path, 0600);
    bool ok = PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL) == 1;
    return fclose(f) == 0 && ok;
}

/* <dir>/<name>.crt and <name>.key */
static bool tls_id_write(const struct tls_id *id, const char *dir, const char *name)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s.crt", dir, name);
    if (!write_cert(p, id->cert))
        return false;
    snprintf(p, sizeof p, "%s/%s.key", dir, name);
    return write_key(p, id->key);
}

static void tls_path(char *out, size_t len, const char *dir, const char *name, const char *ext)
{
    snprintf(out, len, "%s/%s.%s", dir, name, ext);
}

/* Remove the files this helper wrote, then the directory. */
static void tls_dir_remove(const char *dir, const char *const *names, size_t n)
{
    char p[512];
    for (size_t i = 0; i < n; i++) {
        tls_path(p, sizeof p, dir, names[i], "crt");
        unlink(p);
        tls_path(p, sizeof p, dir, names[i], "key");
        unlink(p);
    }
    rmdir(dir);
}

#endif
