/* Fuzz the Raft transport's handshake parser (issue 10): every byte string
 * is parsed without a crash; a parsed hello re-encodes to exactly the bytes
 * it was parsed from; and no shorter prefix of an accepted hello is taken
 * as complete (the transport reads the hello in pieces and must wait for
 * all of it, never act on part). */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "raft/transport.h"
#include "fuzz_util.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_quiet_logs();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct transport_hello h;
    char err[256] = "";
    memset(&h, 0, sizeof h);
    int n = transport_hello_parse(data, size, &h, err, sizeof err);
    if (n < 0) {
        FUZZ_CHECK(err[0] != '\0', "refused hello without a reason (%d)", n);
        return 0;
    }
    if (n == 0) {
        FUZZ_CHECK(size < TRANSPORT_HELLO_MAX,
                   "%zu bytes (more than any hello) still 'incomplete'", size);
        return 0;
    }
    FUZZ_CHECK((size_t)n <= size, "hello length %d over the %zu bytes given", n, size);
    FUZZ_CHECK((size_t)n >= TRANSPORT_HELLO_FIXED, "hello length %d below the fixed part", n);
    FUZZ_CHECK(h.kind == TRANSPORT_KIND_RAFT || h.kind == TRANSPORT_KIND_PROBE, "kind %u",
               h.kind);

    uint8_t again[TRANSPORT_HELLO_MAX];
    int m = transport_hello_encode(h.kind, h.scope, h.id, h.addr, again, sizeof again);
    if (m > 0 && h.version == TRANSPORT_VERSION_AUTH) {
        /* version 2: the same hello, its version byte and the client nonce */
        again[4] = TRANSPORT_VERSION_AUTH;
        memcpy(again + m, h.nonce, sizeof h.nonce);
        m += (int)sizeof h.nonce;
    }
    FUZZ_CHECK(m == n, "re-encoded length %d, parsed length %d", m, n);
    FUZZ_CHECK(memcmp(again, data, (size_t)n) == 0, "re-encoding differs from the input");

    /* The fixed part of this input is valid, so every proper prefix must
     * read as "need more bytes": neither accepted nor refused. */
    for (size_t k = 0; k < (size_t)n; k++) {
        struct transport_hello p;
        char perr[256] = "";
        int r = transport_hello_parse(data, k, &p, perr, sizeof perr);
        FUZZ_CHECK(r == 0, "prefix of %zu bytes of a %d-byte hello gave %d (%s)", k, n, r, perr);
    }
    return 0;
}
