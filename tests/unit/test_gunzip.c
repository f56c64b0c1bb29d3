/* Streaming gzip/deflate decompression: round trips through zlib's own
 * compressor under random chunk splits, concatenated members, the
 * decompressed-size limit (a decompression bomb), truncation, corruption,
 * trailing bytes, empty bodies and a consumer that stops. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <zlib.h>

#include "fetch/gunzip.h"

/* ---- helpers ------------------------------------------------------------ */

typedef struct {
    uint8_t *data;
    size_t len, cap;
    size_t calls, max_call;
    size_t stop_after; /* refuse output once this many bytes arrived (0 = never) */
} sink_t;

static int sink_out(void *arg, const uint8_t *p, size_t n) {
    sink_t *s = arg;
    assert_true(n > 0 && n <= GUNZIP_WINDOW);
    if (s->len + n > s->cap) {
        s->cap = (s->len + n) * 2;
        s->data = realloc(s->data, s->cap);
        assert_non_null(s->data);
    }
    memcpy(s->data + s->len, p, n);
    s->len += n;
    s->calls++;
    if (n > s->max_call) s->max_call = n;
    return s->stop_after && s->len >= s->stop_after ? -1 : 0;
}

static void sink_free(sink_t *s) { free(s->data); memset(s, 0, sizeof *s); }

/* windowBits: 31 gzip, 15 zlib, -15 raw deflate. */
static uint8_t *compress_with(const uint8_t *in, size_t n, int window_bits, int level, size_t *out_len) {
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    assert_int_equal(deflateInit2(&zs, level, Z_DEFLATED, window_bits, 9, Z_DEFAULT_STRATEGY), Z_OK);
    size_t cap = deflateBound(&zs, (uLong)n) + 64;
    uint8_t *out = malloc(cap);
    assert_non_null(out);
    zs.next_in = (Bytef *)in;
    zs.avail_in = (uInt)n;
    zs.next_out = out;
    zs.avail_out = (uInt)cap;
    assert_int_equal(deflate(&zs, Z_FINISH), Z_STREAM_END);
    *out_len = cap - zs.avail_out;
    deflateEnd(&zs);
    return out;
}

static uint64_t rng = 88172645463325252ull;
static uint64_t next_rand(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* Compressible but not trivial: words from a small vocabulary, some random bytes. */
static uint8_t *payload(size_t n) {
    static const char *words[] = {"{\"target\":", "\"cpu\"", ",", "[1700000000000,", "42.5]", " ", "\n", "null"};
    uint8_t *p = malloc(n ? n : 1);
    assert_non_null(p);
    size_t i = 0;
    while (i < n) {
        uint64_t r = next_rand();
        if ((r & 15) == 0) { p[i++] = (uint8_t)(r >> 8); continue; }
        const char *w = words[(r >> 4) % 8];
        for (size_t k = 0; w[k] && i < n; k++) p[i++] = (uint8_t)w[k];
    }
    return p;
}

/* Feeds in random chunks (0..max_chunk bytes, 0 = empty feeds too) then finishes. */
static gunzip_status feed_split(gunzip *z, const uint8_t *in, size_t n, size_t max_chunk) {
    size_t off = 0;
    while (off < n) {
        size_t c = (size_t)(next_rand() % (max_chunk + 1));
        if (c > n - off) c = n - off;
        gunzip_status st = gunzip_feed(z, in + off, c);
        if (st != GUNZIP_OK) return st;
        off += c;
    }
    return gunzip_finish(z);
}

static gunzip_status decode(gunzip_encoding enc, size_t limit, const uint8_t *in, size_t n, size_t max_chunk,
                            sink_t *s, char *err, size_t errcap) {
    gunzip *z = gunzip_new(enc, limit, sink_out, s);
    assert_non_null(z);
    gunzip_status st = feed_split(z, in, n, max_chunk);
    if (err) snprintf(err, errcap, "%s", gunzip_error(z) ? gunzip_error(z) : "");
    if (st == GUNZIP_OK) {
        assert_null(gunzip_error(z));
        assert_int_equal(gunzip_total_out(z), s->len);
        assert_int_equal(gunzip_total_in(z), n);
    } else {
        assert_non_null(gunzip_error(z));
        /* sticky */
        assert_int_equal(gunzip_feed(z, (const uint8_t *)"x", 1), st);
        assert_int_equal(gunzip_finish(z), st);
    }
    gunzip_free(z);
    return st;
}

/* ---- tests -------------------------------------------------------------- */

static void encoding_names(void **state) {
    (void)state;
    assert_int_equal(gunzip_encoding_parse(NULL), GUNZIP_IDENTITY);
    assert_int_equal(gunzip_encoding_parse(""), GUNZIP_IDENTITY);
    assert_int_equal(gunzip_encoding_parse(" identity "), GUNZIP_IDENTITY);
    assert_int_equal(gunzip_encoding_parse("gzip"), GUNZIP_GZIP);
    assert_int_equal(gunzip_encoding_parse("GZIP"), GUNZIP_GZIP);
    assert_int_equal(gunzip_encoding_parse(" x-gzip\t"), GUNZIP_GZIP);
    assert_int_equal(gunzip_encoding_parse("Deflate"), GUNZIP_DEFLATE);
    assert_int_equal(gunzip_encoding_parse("br"), GUNZIP_UNSUPPORTED);
    assert_int_equal(gunzip_encoding_parse("gzip, br"), GUNZIP_UNSUPPORTED);
    assert_int_equal(gunzip_encoding_parse("gzipx"), GUNZIP_UNSUPPORTED);
    assert_null(gunzip_new(GUNZIP_IDENTITY, 0, sink_out, NULL));
    assert_null(gunzip_new(GUNZIP_UNSUPPORTED, 0, sink_out, NULL));
}

static void round_trips(void **state) {
    (void)state;
    static const size_t sizes[] = {1, 2, 17, 1000, GUNZIP_WINDOW - 1, GUNZIP_WINDOW, GUNZIP_WINDOW + 1, 300000};
    static const struct { int bits; gunzip_encoding enc; } kinds[] = {
        {31, GUNZIP_GZIP}, {15, GUNZIP_DEFLATE}, {-15, GUNZIP_DEFLATE}};
    static const size_t chunks[] = {1, 3, 64, 5000, 1 << 20};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        uint8_t *plain = payload(sizes[i]);
        for (size_t k = 0; k < 3; k++) {
            for (int level = 0; level <= 9; level += 9) {
                size_t clen;
                uint8_t *comp = compress_with(plain, sizes[i], kinds[k].bits, level, &clen);
                for (size_t c = 0; c < sizeof chunks / sizeof chunks[0]; c++) {
                    if (chunks[c] < 64 && sizes[i] > 20000) continue; /* slow and says nothing new */
                    sink_t s = {0};
                    char err[300];
                    gunzip_status st = decode(kinds[k].enc, 0, comp, clen, chunks[c], &s, err, sizeof err);
                    if (st != GUNZIP_OK) fail_msg("size %zu bits %d chunk %zu: %s", sizes[i], kinds[k].bits, chunks[c], err);
                    assert_int_equal(s.len, sizes[i]);
                    assert_memory_equal(s.data, plain, sizes[i]);
                    assert_true(s.max_call <= GUNZIP_WINDOW);
                    sink_free(&s);
                }
                free(comp);
            }
        }
        free(plain);
    }
}

static void concatenated_members(void **state) {
    (void)state;
    uint8_t *a = payload(5000), *b = payload(70000);
    size_t la, lb, le;
    uint8_t *ca = compress_with(a, 5000, 31, 6, &la);
    uint8_t *cb = compress_with(b, 70000, 31, 1, &lb);
    uint8_t *ce = compress_with((const uint8_t *)"", 0, 31, 6, &le); /* an empty member */
    size_t n = la + le + lb;
    uint8_t *all = malloc(n);
    memcpy(all, ca, la);
    memcpy(all + la, ce, le);
    memcpy(all + la + le, cb, lb);
    for (size_t chunk = 1; chunk <= 4096; chunk *= 8) {
        sink_t s = {0};
        assert_int_equal(decode(GUNZIP_GZIP, 0, all, n, chunk, &s, NULL, 0), GUNZIP_OK);
        assert_int_equal(s.len, 75000);
        assert_memory_equal(s.data, a, 5000);
        assert_memory_equal(s.data + 5000, b, 70000);
        sink_free(&s);
    }
    /* zlib-wrapped deflate has no members: a second stream is trailing data */
    size_t z1;
    uint8_t *zz = compress_with(a, 5000, 15, 6, &z1);
    uint8_t *two = malloc(2 * z1);
    memcpy(two, zz, z1);
    memcpy(two + z1, zz, z1);
    sink_t s = {0};
    char err[300];
    assert_int_equal(decode(GUNZIP_DEFLATE, 0, two, 2 * z1, 100, &s, err, sizeof err), GUNZIP_E_DATA);
    assert_non_null(strstr(err, "extra bytes after the end"));
    sink_free(&s);
    free(two);
    free(zz);
    free(all);
    free(ca);
    free(cb);
    free(ce);
    free(a);
    free(b);
}

static void bomb_stops_at_the_limit(void **state) {
    (void)state;
    size_t n = 10 * 1000 * 1000;
    uint8_t *zeros = calloc(1, n);
    size_t clen;
    uint8_t *bomb = compress_with(zeros, n, 31, 9, &clen);
    assert_true(clen < 20000); /* ~10 KB */
    size_t limit = 1024 * 1024;
    sink_t s = {0};
    char err[300];
    gunzip *z = gunzip_new(GUNZIP_GZIP, limit, sink_out, &s);
    /* fed in one piece: the limit must stop inflate mid-chunk */
    assert_int_equal(gunzip_feed(z, bomb, clen), GUNZIP_E_LIMIT);
    snprintf(err, sizeof err, "%s", gunzip_error(z));
    assert_true(s.len <= limit);
    assert_true(gunzip_total_out(z) <= limit);
    assert_true(gunzip_total_in(z) < clen); /* stopped early */
    assert_non_null(strstr(err, "larger than the limit of 1048576 bytes"));
    assert_int_equal(gunzip_finish(z), GUNZIP_E_LIMIT);
    gunzip_free(z);
    sink_free(&s);

    /* split feeds, deflate: same verdict */
    uint8_t *dbomb = compress_with(zeros, n, 15, 9, &clen);
    assert_int_equal(decode(GUNZIP_DEFLATE, limit, dbomb, clen, 512, &s, err, sizeof err), GUNZIP_E_LIMIT);
    assert_true(s.len <= limit);
    sink_free(&s);
    free(dbomb);

    /* exactly the limit passes; one byte more fails */
    uint8_t *exact = compress_with(zeros, limit, 31, 6, &clen);
    assert_int_equal(decode(GUNZIP_GZIP, limit, exact, clen, 777, &s, NULL, 0), GUNZIP_OK);
    assert_int_equal(s.len, limit);
    sink_free(&s);
    assert_int_equal(decode(GUNZIP_GZIP, limit - 1, exact, clen, 777, &s, err, sizeof err), GUNZIP_E_LIMIT);
    assert_true(s.len <= limit - 1);
    sink_free(&s);
    free(exact);
    free(bomb);
    free(zeros);
}

static void truncation_reported_at_finish(void **state) {
    (void)state;
    uint8_t *plain = payload(20000);
    static const int bits[] = {31, 15, -15};
    static const gunzip_encoding encs[] = {GUNZIP_GZIP, GUNZIP_DEFLATE, GUNZIP_DEFLATE};
    for (size_t k = 0; k < 3; k++) {
        size_t clen;
        uint8_t *comp = compress_with(plain, 20000, bits[k], 6, &clen);
        /* every cut from 1 byte to one byte short (the gzip trailer included) */
        for (size_t cut = 1; cut < clen; cut += (cut < 40 || clen - cut < 40) ? 1 : 97) {
            sink_t s = {0};
            char err[300];
            gunzip_status st = decode(encs[k], 0, comp, cut, 33, &s, err, sizeof err);
            if (st != GUNZIP_E_DATA) fail_msg("bits %d cut %zu/%zu: status %d", bits[k], cut, clen, st);
            assert_non_null(strstr(err, "cut short"));
            assert_true(s.len <= 20000);
            assert_memory_equal(s.data, plain, s.len); /* what came out was right */
            sink_free(&s);
        }
        free(comp);
    }
    free(plain);
}

static void corruption_and_wrong_format(void **state) {
    (void)state;
    uint8_t *plain = payload(50000);
    size_t clen;
    uint8_t *comp = compress_with(plain, 50000, 31, 6, &clen);
    sink_t s = {0};
    char err[300];

    /* CRC-32 of the trailer */
    comp[clen - 6] ^= 0x55;
    assert_int_equal(decode(GUNZIP_GZIP, 0, comp, clen, 1000, &s, err, sizeof err), GUNZIP_E_DATA);
    assert_non_null(strstr(err, "corrupt"));
    assert_non_null(strstr(err, "incorrect data check"));
    comp[clen - 6] ^= 0x55;
    sink_free(&s);

    /* ISIZE of the trailer */
    comp[clen - 2] ^= 0x01;
    assert_int_equal(decode(GUNZIP_GZIP, 0, comp, clen, 1000, &s, err, sizeof err), GUNZIP_E_DATA);
    assert_non_null(strstr(err, "incorrect length check"));
    comp[clen - 2] ^= 0x01;
    sink_free(&s);

    /* flipped bits in the compressed data: an error, never a crash or a wrong success */
    int failures = 0;
    for (size_t i = 10; i < clen - 8; i += 53) {
        comp[i] ^= 0xA5;
        gunzip_status st = decode(GUNZIP_GZIP, 0, comp, clen, 500, &s, err, sizeof err);
        if (st == GUNZIP_E_DATA) {
            failures++;
            assert_non_null(strstr(err, "gzip"));
        } else {
            assert_int_equal(st, GUNZIP_OK);
            assert_true(s.len == 50000 && memcmp(s.data, plain, 50000) == 0);
        }
        comp[i] ^= 0xA5;
        sink_free(&s);
    }
    assert_true(failures > 0);

    /* announced gzip, sent JSON */
    const char *json = "[{\"target\":\"cpu\"}]";
    assert_int_equal(decode(GUNZIP_GZIP, 0, (const uint8_t *)json, strlen(json), 4, &s, err, sizeof err),
                     GUNZIP_E_DATA);
    assert_non_null(strstr(err, "not gzip data"));
    assert_non_null(strstr(err, "0x5B"));
    sink_free(&s);
    /* second magic byte wrong */
    assert_int_equal(decode(GUNZIP_GZIP, 0, (const uint8_t *)"\x1f\x00zzz", 5, 1, &s, err, sizeof err), GUNZIP_E_DATA);
    assert_non_null(strstr(err, "byte 1 is 0x00"));
    sink_free(&s);

    /* announced deflate, sent JSON (read as raw deflate: invalid block type) */
    assert_int_equal(decode(GUNZIP_DEFLATE, 0, (const uint8_t *)json, strlen(json), 4, &s, err, sizeof err),
                     GUNZIP_E_DATA);
    assert_non_null(strstr(err, "deflate-compressed response body is corrupt"));
    sink_free(&s);

    free(comp);
    free(plain);
}

static void trailing_garbage(void **state) {
    (void)state;
    uint8_t *plain = payload(3000);
    static const int bits[] = {31, 15, -15};
    static const gunzip_encoding encs[] = {GUNZIP_GZIP, GUNZIP_DEFLATE, GUNZIP_DEFLATE};
    for (size_t k = 0; k < 3; k++) {
        size_t clen;
        uint8_t *comp = compress_with(plain, 3000, bits[k], 6, &clen);
        uint8_t *more = malloc(clen + 4);
        memcpy(more, comp, clen);
        memcpy(more + clen, "\n\0\0x", 4);
        for (size_t chunk = 1; chunk <= 4096; chunk *= 16) {
            sink_t s = {0};
            char err[300];
            assert_int_equal(decode(encs[k], 0, more, clen + 4, chunk, &s, err, sizeof err), GUNZIP_E_DATA);
            assert_non_null(strstr(err, "extra bytes after the end"));
            char at[64];
            snprintf(at, sizeof at, "compressed byte %zu", clen);
            assert_non_null(strstr(err, at));
            sink_free(&s);
        }
        free(more);
        free(comp);
    }
    free(plain);
}

static void empty_bodies(void **state) {
    (void)state;
    sink_t s = {0};
    char err[300];
    assert_int_equal(decode(GUNZIP_GZIP, 10, NULL, 0, 1, &s, NULL, 0), GUNZIP_OK);
    assert_int_equal(decode(GUNZIP_DEFLATE, 10, NULL, 0, 1, &s, NULL, 0), GUNZIP_OK);
    assert_int_equal(s.len, 0);
    /* a compressed empty payload, limit 0 bytes of... no limit */
    size_t clen;
    uint8_t *comp = compress_with((const uint8_t *)"", 0, 31, 6, &clen);
    assert_int_equal(decode(GUNZIP_GZIP, 1, comp, clen, 2, &s, NULL, 0), GUNZIP_OK);
    assert_int_equal(s.len, 0);
    free(comp);
    /* one byte of deflate: cut short, and the byte counts */
    assert_int_equal(decode(GUNZIP_DEFLATE, 0, (const uint8_t *)"\x78", 1, 1, &s, err, sizeof err), GUNZIP_E_DATA);
    assert_non_null(strstr(err, "cut short (it ended after 1 compressed bytes"));
    sink_free(&s);
}

static void consumer_stops(void **state) {
    (void)state;
    uint8_t *plain = payload(200000);
    size_t clen;
    uint8_t *comp = compress_with(plain, 200000, 31, 6, &clen);
    sink_t s = {.stop_after = 1};
    char err[300];
    assert_int_equal(decode(GUNZIP_GZIP, 0, comp, clen, 100000, &s, err, sizeof err), GUNZIP_E_ABORTED);
    assert_int_equal(s.calls, 1);
    assert_non_null(strstr(err, "refused by the caller"));
    sink_free(&s);
    free(comp);
    free(plain);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(encoding_names),
        cmocka_unit_test(round_trips),
        cmocka_unit_test(concatenated_members),
        cmocka_unit_test(bomb_stops_at_the_limit),
        cmocka_unit_test(truncation_reported_at_finish),
        cmocka_unit_test(corruption_and_wrong_format),
        cmocka_unit_test(trailing_garbage),
        cmocka_unit_test(empty_bodies),
        cmocka_unit_test(consumer_stops),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
