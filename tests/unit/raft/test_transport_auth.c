/* Raft-port authentication primitives: the MACs bind the secret, the role,
 * the hello and both nonces; the challenge framing is checked; hellos of
 * both versions parse to the right total length. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "raft/transport.h"
#include "raft/transport_auth.h"

static const uint8_t SECRET[] = "correct horse battery staple";

static void mac_of(const uint8_t *secret, size_t len, enum transport_auth_role role,
                   const uint8_t *hello, size_t hlen, const uint8_t *nc, const uint8_t *ns,
                   uint8_t out[TRANSPORT_MAC_LEN])
{
    assert_int_equal(transport_auth_mac(secret, len, role, hello, hlen, nc, ns, out), 0);
}

static void test_mac_binds_every_input(void **state)
{
    (void)state;
    uint8_t hello[64], nc[16], ns[16];
    int n = transport_hello_encode(TRANSPORT_KIND_RAFT, "pg", 7, "127.0.0.1:5000", hello,
                                   sizeof hello);
    assert_true(n > 0);
    assert_int_equal(transport_auth_nonce(nc), 0);
    assert_int_equal(transport_auth_nonce(ns), 0);
    assert_memory_not_equal(nc, ns, 16);

    uint8_t base[32], again[32], other[32];
    mac_of(SECRET, sizeof SECRET - 1, TRANSPORT_AUTH_SERVER, hello, (size_t)n, nc, ns, base);
    mac_of(SECRET, sizeof SECRET - 1, TRANSPORT_AUTH_SERVER, hello, (size_t)n, nc, ns, again);
    assert_true(transport_auth_mac_equal(base, again));

    mac_of(SECRET, sizeof SECRET - 1, TRANSPORT_AUTH_CLIENT, hello, (size_t)n, nc, ns, other);
    assert_false(transport_auth_mac_equal(base, other)); /* no reflection */
    mac_of((const uint8_t *)"correct horse battery stapler", 29, TRANSPORT_AUTH_SERVER, hello,
           (size_t)n, nc, ns, other);
    assert_false(transport_auth_mac_equal(base, other));
    uint8_t ns2[16];
    memcpy(ns2, ns, 16);
    ns2[15] ^= 1;
    mac_of(SECRET, sizeof SECRET - 1, TRANSPORT_AUTH_SERVER, hello, (size_t)n, nc, ns2, other);
    assert_false(transport_auth_mac_equal(base, other)); /* no replay */
    hello[9] ^= 0x10; /* another sender id */
    mac_of(SECRET, sizeof SECRET - 1, TRANSPORT_AUTH_SERVER, hello, (size_t)n, nc, ns, other);
    assert_false(transport_auth_mac_equal(base, other));

    assert_int_equal(transport_auth_mac(SECRET, 0, TRANSPORT_AUTH_SERVER, hello, (size_t)n, nc,
                                        ns, other),
                     PGW_EINVAL);
}

static void test_challenge_framing(void **state)
{
    (void)state;
    uint8_t ns[16], mac[32], buf[TRANSPORT_CHALLENGE_LEN], ns2[16], mac2[32];
    for (int i = 0; i < 16; i++)
        ns[i] = (uint8_t)i;
    for (int i = 0; i < 32; i++)
        mac[i] = (uint8_t)(100 + i);
    transport_auth_challenge_encode(ns, mac, buf);
    assert_memory_equal(buf, "PGWA", 4);
    assert_int_equal(transport_auth_challenge_parse(buf, ns2, mac2), 0);
    assert_memory_equal(ns, ns2, 16);
    assert_memory_equal(mac, mac2, 32);
    buf[0] = 'X';
    assert_int_equal(transport_auth_challenge_parse(buf, ns2, mac2), PGW_EPROTO);
}

static void test_hello_versions(void **state)
{
    (void)state;
    uint8_t buf[TRANSPORT_HELLO_MAX];
    int n = transport_hello_encode(TRANSPORT_KIND_RAFT, "scope", 3, "10.0.0.1:7000", buf,
                                   sizeof buf);
    assert_true(n > 0);
    struct transport_hello h;
    char err[128];
    assert_int_equal(transport_hello_parse(buf, (size_t)n, &h, err, sizeof err), n);
    assert_int_equal(h.version, TRANSPORT_VERSION);

    buf[4] = TRANSPORT_VERSION_AUTH;
    for (int i = 0; i < 16; i++)
        buf[n + i] = (uint8_t)(0xa0 + i);
    assert_int_equal(transport_hello_size(buf), (size_t)n + 16);
    /* without its nonce a version-2 hello is incomplete, not accepted */
    assert_int_equal(transport_hello_parse(buf, (size_t)n, &h, err, sizeof err), 0);
    assert_int_equal(transport_hello_parse(buf, (size_t)n + 16, &h, err, sizeof err), n + 16);
    assert_int_equal(h.version, TRANSPORT_VERSION_AUTH);
    assert_int_equal(h.nonce[0], 0xa0);
    assert_int_equal(h.nonce[15], 0xaf);
    assert_string_equal(h.scope, "scope");
    assert_string_equal(h.addr, "10.0.0.1:7000");

    buf[4] = 3;
    assert_true(transport_hello_parse(buf, (size_t)n + 16, &h, err, sizeof err) < 0);
    assert_non_null(strstr(err, "unsupported handshake version 3"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mac_binds_every_input),
        cmocka_unit_test(test_challenge_framing),
        cmocka_unit_test(test_hello_versions),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
