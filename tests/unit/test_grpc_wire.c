/* gRPC wire pieces: deframing across arbitrary splits, grpc-timeout units,
 * grpc-message percent-encoding, status names. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "h2/grpc_wire.h"

typedef struct {
    size_t count;
    size_t lens[16];
    uint8_t bytes[4096];
    size_t total;
} collected;

static int collect(void *arg, const uint8_t *msg, size_t len) {
    collected *c = arg;
    c->lens[c->count++] = len;
    memcpy(c->bytes + c->total, msg, len);
    c->total += len;
    return 0;
}

/* Three messages (0, 3 and 300 bytes) back to back. */
static size_t make_stream(uint8_t *out) {
    size_t o = 0;
    const size_t lens[] = {0, 3, 300};
    for (int m = 0; m < 3; m++) {
        grpc_write_prefix(out + o, (uint32_t)lens[m]);
        o += GRPC_PREFIX_LEN;
        for (size_t i = 0; i < lens[m]; i++) out[o++] = (uint8_t)(m * 31 + i);
    }
    return o;
}

static void check_three(const collected *c) {
    assert_int_equal(c->count, 3);
    assert_int_equal(c->lens[0], 0);
    assert_int_equal(c->lens[1], 3);
    assert_int_equal(c->lens[2], 300);
    assert_int_equal(c->bytes[0], 31);
    assert_int_equal(c->bytes[3 + 299], (uint8_t)(62 + 299));
}

static void deframe_whole(void **state) {
    (void)state;
    uint8_t wire[512];
    size_t n = make_stream(wire);
    grpc_deframer d;
    grpc_deframer_init(&d, 1024);
    collected c = {0};
    assert_int_equal(grpc_deframer_feed(&d, wire, n, collect, &c), GRPC_DEFRAME_OK);
    assert_true(grpc_deframer_at_boundary(&d));
    check_three(&c);
    grpc_deframer_free(&d);
}

static void deframe_byte_by_byte(void **state) {
    (void)state;
    uint8_t wire[512];
    size_t n = make_stream(wire);
    grpc_deframer d;
    grpc_deframer_init(&d, 1024);
    collected c = {0};
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(grpc_deframer_feed(&d, wire + i, 1, collect, &c), GRPC_DEFRAME_OK);
        if (i == 2) assert_false(grpc_deframer_at_boundary(&d)); /* inside the first prefix */
    }
    assert_true(grpc_deframer_at_boundary(&d));
    check_three(&c);
    grpc_deframer_free(&d);
}

static void deframe_every_split_point(void **state) {
    (void)state;
    uint8_t wire[512];
    size_t n = make_stream(wire);
    for (size_t a = 0; a <= n; a += 7) {
        for (size_t b = a; b <= n; b += 13) {
            grpc_deframer d;
            grpc_deframer_init(&d, 1024);
            collected c = {0};
            grpc_deframer_feed(&d, wire, a, collect, &c);
            grpc_deframer_feed(&d, wire + a, b - a, collect, &c);
            grpc_deframer_feed(&d, wire + b, n - b, collect, &c);
            check_three(&c);
            grpc_deframer_free(&d);
        }
    }
}

static void deframe_truncated_is_not_at_boundary(void **state) {
    (void)state;
    uint8_t wire[512];
    size_t n = make_stream(wire);
    grpc_deframer d;
    grpc_deframer_init(&d, 1024);
    collected c = {0};
    assert_int_equal(grpc_deframer_feed(&d, wire, n - 10, collect, &c), GRPC_DEFRAME_OK);
    assert_false(grpc_deframer_at_boundary(&d));
    assert_int_equal(c.count, 2);
    assert_int_equal(d.declared, 300);
    assert_int_equal(d.msg_have, 290);
    grpc_deframer_free(&d);
}

static void deframe_rejects_oversize_before_allocating(void **state) {
    (void)state;
    uint8_t wire[5];
    grpc_write_prefix(wire, 0x7fffffffu);
    grpc_deframer d;
    grpc_deframer_init(&d, 1 << 20);
    assert_int_equal(grpc_deframer_feed(&d, wire, 5, collect, NULL), GRPC_DEFRAME_TOO_LARGE);
    assert_null(d.buf);
    assert_int_equal(d.declared, 0x7fffffffu);
    grpc_deframer_free(&d);
}

static void deframe_rejects_flags(void **state) {
    (void)state;
    uint8_t compressed[6] = {1, 0, 0, 0, 1, 'x'};
    uint8_t bad[6] = {7, 0, 0, 0, 1, 'x'};
    grpc_deframer d;
    grpc_deframer_init(&d, 1024);
    assert_int_equal(grpc_deframer_feed(&d, compressed, 6, collect, NULL), GRPC_DEFRAME_COMPRESSED);
    grpc_deframer_free(&d);
    grpc_deframer_init(&d, 1024);
    assert_int_equal(grpc_deframer_feed(&d, bad, 6, collect, NULL), GRPC_DEFRAME_BAD_FLAG);
    grpc_deframer_free(&d);
}

static void timeout_units(void **state) {
    (void)state;
    int64_t ns;
    assert_int_equal(grpc_timeout_parse("1H", 2, &ns), 0);
    assert_true(ns == 3600LL * 1000000000LL);
    assert_int_equal(grpc_timeout_parse("2M", 2, &ns), 0);
    assert_true(ns == 120LL * 1000000000LL);
    assert_int_equal(grpc_timeout_parse("30S", 3, &ns), 0);
    assert_true(ns == 30LL * 1000000000LL);
    assert_int_equal(grpc_timeout_parse("250m", 4, &ns), 0);
    assert_true(ns == 250LL * 1000000LL);
    assert_int_equal(grpc_timeout_parse("29999901u", 9, &ns), 0);
    assert_true(ns == 29999901LL * 1000LL);
    assert_int_equal(grpc_timeout_parse("7n", 2, &ns), 0);
    assert_true(ns == 7);
    assert_int_equal(grpc_timeout_parse("99999999H", 9, &ns), 0);
    assert_true(ns == INT64_MAX); /* saturates instead of overflowing */
}

static void timeout_rejects_malformed(void **state) {
    (void)state;
    int64_t ns;
    const char *bad[] = {"", "S", "10", "10s", "1x", "-1S", "123456789S", "1 S", "S1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(grpc_timeout_parse(bad[i], strlen(bad[i]), &ns), -1);
}

static void percent_encoding(void **state) {
    (void)state;
    char out[128];
    assert_int_equal(grpc_percent_encode(out, sizeof out, "plain text ok"), 13);
    assert_string_equal(out, "plain text ok");
    grpc_percent_encode(out, sizeof out, "100% sure\n");
    assert_string_equal(out, "100%25 sure%0A");
    grpc_percent_encode(out, sizeof out, "caf\xc3\xa9 \x7f");
    assert_string_equal(out, "caf%C3%A9 %7F");
}

static void percent_encoding_truncates_on_whole_escapes(void **state) {
    (void)state;
    char out[6];
    size_t n = grpc_percent_encode(out, sizeof out, "ab\xff\xff");
    /* "ab%FF" needs 5 chars + NUL = 6: fits; the second escape does not. */
    assert_int_equal(n, 5);
    assert_string_equal(out, "ab%FF");
    char tiny[4];
    n = grpc_percent_encode(tiny, sizeof tiny, "a\xff");
    assert_string_equal(tiny, "a");
    assert_int_equal(n, 1);
}

static void status_names(void **state) {
    (void)state;
    assert_string_equal(grpc_status_name(0), "OK");
    assert_string_equal(grpc_status_name(1), "Canceled");
    assert_string_equal(grpc_status_name(4), "DeadlineExceeded");
    assert_string_equal(grpc_status_name(12), "Unimplemented");
    assert_string_equal(grpc_status_name(99), "Unknown");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(deframe_whole),
        cmocka_unit_test(deframe_byte_by_byte),
        cmocka_unit_test(deframe_every_split_point),
        cmocka_unit_test(deframe_truncated_is_not_at_boundary),
        cmocka_unit_test(deframe_rejects_oversize_before_allocating),
        cmocka_unit_test(deframe_rejects_flags),
        cmocka_unit_test(timeout_units),
        cmocka_unit_test(timeout_rejects_malformed),
        cmocka_unit_test(percent_encoding),
        cmocka_unit_test(percent_encoding_truncates_on_whole_escapes),
        cmocka_unit_test(status_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
