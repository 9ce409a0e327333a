/* Raft-port authentication primitives (see transport_auth.h). Pure
 * functions over OpenSSL; the state machines live in transport.c and
 * transport_probe.c. */
#include "raft/transport_auth.h"

#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

static const char LABEL_SERVER[] = "pgwarden raft server";
static const char LABEL_CLIENT[] = "pgwarden raft client";

int transport_auth_nonce(uint8_t out[TRANSPORT_NONCE_LEN])
{
    return RAND_bytes(out, TRANSPORT_NONCE_LEN) == 1 ? PGW_OK : PGW_EIO;
}

int transport_auth_mac(const uint8_t *secret, size_t secret_len, enum transport_auth_role role,
                       const uint8_t *hello, size_t hello_len,
                       const uint8_t nc[TRANSPORT_NONCE_LEN], const uint8_t ns[TRANSPORT_NONCE_LEN],
                       uint8_t out[TRANSPORT_MAC_LEN])
{
    if (secret == NULL || secret_len == 0 || secret_len > 4096)
        return PGW_EINVAL;
    uint8_t t[SHA256_DIGEST_LENGTH];
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (md == NULL)
        return PGW_ENOMEM;
    unsigned int tlen = 0;
    int ok = EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1 &&
             EVP_DigestUpdate(md, hello, hello_len) == 1 &&
             EVP_DigestUpdate(md, nc, TRANSPORT_NONCE_LEN) == 1 &&
             EVP_DigestUpdate(md, ns, TRANSPORT_NONCE_LEN) == 1 &&
             EVP_DigestFinal_ex(md, t, &tlen) == 1;
    EVP_MD_CTX_free(md);
    if (!ok)
        return PGW_EIO;
    const char *label = role == TRANSPORT_AUTH_SERVER ? LABEL_SERVER : LABEL_CLIENT;
    size_t llen = strlen(label);
    uint8_t msg[sizeof LABEL_SERVER + SHA256_DIGEST_LENGTH];
    memcpy(msg, label, llen);
    memcpy(msg + llen, t, sizeof t);
    unsigned int mlen = 0;
    if (HMAC(EVP_sha256(), secret, (int)secret_len, msg, llen + sizeof t, out, &mlen) == NULL ||
        mlen != TRANSPORT_MAC_LEN)
        return PGW_EIO;
    OPENSSL_cleanse(t, sizeof t);
    return PGW_OK;
}

bool transport_auth_mac_equal(const uint8_t a[TRANSPORT_MAC_LEN], const uint8_t b[TRANSPORT_MAC_LEN])
{
    return CRYPTO_memcmp(a, b, TRANSPORT_MAC_LEN) == 0;
}

void transport_auth_challenge_encode(const uint8_t ns[TRANSPORT_NONCE_LEN],
                                     const uint8_t mac[TRANSPORT_MAC_LEN],
                                     uint8_t out[TRANSPORT_CHALLENGE_LEN])
{
    memcpy(out, TRANSPORT_CHALLENGE_MAGIC, 4);
    memcpy(out + 4, ns, TRANSPORT_NONCE_LEN);
    memcpy(out + 4 + TRANSPORT_NONCE_LEN, mac, TRANSPORT_MAC_LEN);
}

int transport_auth_challenge_parse(const uint8_t in[TRANSPORT_CHALLENGE_LEN],
                                   uint8_t ns[TRANSPORT_NONCE_LEN], uint8_t mac[TRANSPORT_MAC_LEN])
{
    if (memcmp(in, TRANSPORT_CHALLENGE_MAGIC, 4) != 0)
        return PGW_EPROTO;
    memcpy(ns, in + 4, TRANSPORT_NONCE_LEN);
    memcpy(mac, in + 4 + TRANSPORT_NONCE_LEN, TRANSPORT_MAC_LEN);
    return PGW_OK;
}
