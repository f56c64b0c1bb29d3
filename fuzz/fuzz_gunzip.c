/*
 * fuzz_gunzip: streaming gzip/deflate decompression (src/fetch/gunzip.c).
 *
 * Input layout: byte 0 is a flags byte, the rest is the body.
 *   bit 0      encoding: 0 gzip, 1 deflate
 *   bits 1..3  decompressed-size limit: none, 1, 2, 100, 1000, 16384, 16385, 65536
 *   bit 4      0: the body is a compressed stream as a backend would send it
 *              1: the body is plain text, compressed here with zlib first
 *   bits 5..6  (plain text only) the wrapper: gzip, zlib, raw deflate, two
 *              gzip members (bit 0 is ignored: the wrapper picks the encoding)
 * The split plan comes from a PRNG seeded with a hash of the input: chunks of
 * 0 (an empty feed), 1, 2..64 or up to 4096 bytes.
 *
 * Checked, on every input:
 *   - output handed to the callback never passes the limit, comes in pieces
 *     of 1..GUNZIP_WINDOW bytes and adds up to gunzip_total_out;
 *   - a failure has a message, the same status stays on later feed/finish;
 *     success has no message and consumed every byte;
 *   - compressed bodies: fed whole and fed in chunks give the same status;
 *     on success the same output, on failure one output is a prefix of the
 *     other (the limit cuts at piece boundaries);
 *   - plain text (the round trip): decompression gives the text back exactly
 *     when it fits the limit, else fails with GUNZIP_E_LIMIT after a prefix
 *     of the text; the compressed stream cut short fails at finish
 *     (GUNZIP_E_DATA, or the limit first) unless cut at nothing or at the
 *     end of the first of two members; a byte after its end fails.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "fetch/gunzip.h"

#include "fuzz_check.h"

static const size_t limits[8] = {0, 1, 2, 100, 1000, 16384, 16385, 65536};

/* What a decode handed out: its length, a CRC-32 of all of it (zlib's, so
 * not instrumented and the same whatever the pieces) and its first
 * SINK_KEEP bytes. A bomb inflates to megabytes: copying all of it into a
 * growing buffer had cost more than the inflating. */
#define SINK_KEEP (64 * 1024)
typedef struct {
    uint8_t data[SINK_KEEP];
    size_t len;
    size_t limit;
    uLong crc;
} sink_t;

static sink_t sinks[2]; /* static: 64 KiB each, reused by every input */

static int sink_out(void *arg, const uint8_t *p, size_t n) {
    sink_t *s = arg;
    CHECK(n > 0 && n <= GUNZIP_WINDOW, "output piece of %zu bytes", n);
    CHECK(!s->limit || s->len + n <= s->limit, "output %zu + %zu passes the limit %zu", s->len, n, s->limit);
    if (s->len < SINK_KEEP) memcpy(s->data + s->len, p, n < SINK_KEEP - s->len ? n : SINK_KEEP - s->len);
    s->crc = crc32(s->crc, p, (uInt)n);
    s->len += n;
    return 0;
}

static size_t kept(const sink_t *s) { return s->len < SINK_KEEP ? s->len : SINK_KEEP; }

/* Decodes in chunks from the plan (whole when seed == 0); sink gets the output. */
static gunzip_status decode(gunzip_encoding enc, size_t limit, const uint8_t *in, size_t n, uint64_t seed,
                            sink_t *s) {
    s->len = 0;
    s->crc = crc32(0, Z_NULL, 0);
    s->limit = limit;
    gunzip *z = gunzip_new(enc, limit, sink_out, s);
    CHECK(z != NULL, "oom");
    gunzip_status st = GUNZIP_OK;
    size_t off = 0;
    if (seed == 0) {
        st = gunzip_feed(z, in, n);
        off = n;
    }
    while (off < n && st == GUNZIP_OK) {
        uint64_t r = fuzz_next(&seed);
        size_t c = (r & 7) == 0 ? 0 : (r & 7) < 3 ? 1 : (r & 7) < 6 ? 2 + (size_t)((r >> 3) % 63) : (size_t)((r >> 3) % 4097);
        if (c > n - off) c = n - off;
        st = gunzip_feed(z, in + off, c);
        off += c;
    }
    if (st == GUNZIP_OK) st = gunzip_finish(z);
    CHECK(gunzip_total_out(z) == s->len, "total_out %llu, handed out %zu", (unsigned long long)gunzip_total_out(z),
          s->len);
    CHECK(!limit || s->len <= limit, "output %zu passes the limit %zu", s->len, limit);
    if (st == GUNZIP_OK) {
        CHECK(gunzip_error(z) == NULL, "success with a message: %s", gunzip_error(z));
        CHECK(gunzip_total_in(z) == n, "success after consuming %llu of %zu bytes",
              (unsigned long long)gunzip_total_in(z), n);
    } else {
        const char *e = gunzip_error(z);
        CHECK(e != NULL && e[0] != '\0', "failure %d without a message", (int)st);
        CHECK(st != GUNZIP_E_ABORTED && st != GUNZIP_E_NOMEM, "unexpected status %d: %s", (int)st, e);
        CHECK(st != GUNZIP_E_LIMIT || limit != 0, "limit failure without a limit: %s", e);
        CHECK(gunzip_feed(z, (const uint8_t *)"\x1f", 1) == st, "feed after a failure changed the status");
        CHECK(gunzip_finish(z) == st, "finish after a failure changed the status");
    }
    gunzip_free(z);
    return st;
}

/* windowBits 31 gzip, 15 zlib, -15 raw. One compressor per wrapper lives for
 * the whole run (reset per input): deflateInit2 allocates ~270 KiB, which
 * under ASan had cost more than everything else an input does. */
static uint8_t *compress_with(const uint8_t *in, size_t n, int bits, int level, size_t *out_len) {
    static z_stream streams[3];
    static bool ready[3];
    int k = bits == 31 ? 0 : bits == 15 ? 1 : 2;
    z_stream *zs = &streams[k];
    if (!ready[k]) {
        CHECK(deflateInit2(zs, 6, Z_DEFLATED, bits, 8, Z_DEFAULT_STRATEGY) == Z_OK, "deflateInit2");
        ready[k] = true;
    }
    CHECK(deflateReset(zs) == Z_OK && deflateParams(zs, level, Z_DEFAULT_STRATEGY) == Z_OK, "deflateParams");
    size_t cap = deflateBound(zs, (uLong)n) + 32;
    uint8_t *out = malloc(cap);
    CHECK(out != NULL, "oom");
    zs->next_in = (Bytef *)in;
    zs->avail_in = (uInt)n;
    zs->next_out = out;
    zs->avail_out = (uInt)cap;
    CHECK(deflate(zs, Z_FINISH) == Z_STREAM_END, "deflate did not finish");
    *out_len = cap - zs->avail_out;
    return out;
}

/* As far as both kept bytes: is the shorter output a prefix of the other? */
static bool prefix_of(const sink_t *a, const sink_t *b) {
    size_t n = kept(a) < kept(b) ? kept(a) : kept(b);
    return n == 0 || memcmp(a->data, b->data, n) == 0;
}

static void compressed_body(gunzip_encoding enc, size_t limit, const uint8_t *in, size_t n, uint64_t seed) {
    sink_t *whole = &sinks[0], *split = &sinks[1];
    gunzip_status a = decode(enc, limit, in, n, 0, whole);
    gunzip_status b = decode(enc, limit, in, n, seed, split);
    CHECK(a == b, "whole gives %d, split gives %d", (int)a, (int)b);
    if (a == GUNZIP_OK)
        CHECK(whole->len == split->len && whole->crc == split->crc && prefix_of(whole, split),
              "outputs differ (%zu vs %zu bytes)", whole->len, split->len);
    else
        CHECK(prefix_of(whole, split), "outputs before the failure disagree");
}

static void round_trip(unsigned wrapper, size_t limit, const uint8_t *plain, size_t n, uint64_t seed) {
    static const int bits[4] = {31, 15, -15, 31};
    gunzip_encoding enc = wrapper == 0 || wrapper == 3 ? GUNZIP_GZIP : GUNZIP_DEFLATE;
    int level = (int)(seed % 10);
    size_t clen, boundary = 0, plain_cut = 0; /* the end of the first member, when two */
    uint8_t *comp;
    if (wrapper == 3) { /* two members, cut where the plan says */
        size_t l1, l2;
        plain_cut = n ? (size_t)(seed >> 8) % (n + 1) : 0;
        size_t cut = plain_cut;
        uint8_t *m1 = compress_with(plain, cut, 31, level, &l1);
        uint8_t *m2 = compress_with(plain + cut, n - cut, 31, 9 - level, &l2);
        comp = malloc(l1 + l2 + 1);
        CHECK(comp != NULL, "oom");
        memcpy(comp, m1, l1);
        memcpy(comp + l1, m2, l2);
        clen = l1 + l2;
        boundary = l1;
        free(m1);
        free(m2);
    } else {
        comp = compress_with(plain, n, bits[wrapper], level, &clen);
        uint8_t *grown = realloc(comp, clen + 1);
        CHECK(grown != NULL, "oom");
        comp = grown;
    }
    bool fits = !limit || n <= limit;

    sink_t *s = &sinks[0];
    gunzip_status st = decode(enc, limit, comp, clen, seed, s);
    if (fits) {
        CHECK(st == GUNZIP_OK, "round trip of %zu bytes (wrapper %u, level %d) failed with %d", n, wrapper, level,
              (int)st);
        CHECK(s->len == n && s->crc == crc32(crc32(0, Z_NULL, 0), plain, (uInt)n) &&
                  (n == 0 || memcmp(s->data, plain, kept(s)) == 0),
              "round trip gives other bytes");
    } else {
        CHECK(st == GUNZIP_E_LIMIT, "%zu bytes over the limit %zu gave %d", n, limit, (int)st);
    }
    CHECK(s->len <= n && (s->len == 0 || memcmp(s->data, plain, kept(s)) == 0), "output is not a prefix of the text");

    /* cut short (nothing at all is an empty body, which is fine) */
    size_t cut = (size_t)(fuzz_next(&seed) % clen);
    st = decode(enc, limit, comp, cut, seed, s);
    if (cut == 0)
        CHECK(st == GUNZIP_OK && s->len == 0, "empty body gave %d", (int)st);
    else if (cut == boundary) /* the first of two members alone is a whole body */
        CHECK((st == GUNZIP_OK && s->len == plain_cut) || (limit && plain_cut > limit && st == GUNZIP_E_LIMIT),
              "first member alone gave %d", (int)st);
    else
        CHECK(st == GUNZIP_E_DATA || (!fits && st == GUNZIP_E_LIMIT), "stream cut at %zu of %zu gave %d", cut, clen,
              (int)st);

    /* one byte after the end */
    comp[clen] = '\n';
    st = decode(enc, limit, comp, clen + 1, seed, s);
    CHECK(st == GUNZIP_E_DATA || (!fits && st == GUNZIP_E_LIMIT), "trailing byte gave %d", (int)st);
    free(comp);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    uint8_t flags = data[0];
    const uint8_t *body = data + 1;
    size_t n = size - 1;
    uint64_t seed = fuzz_hash(data, size);
    size_t limit = limits[(flags >> 1) & 7];
    if (flags & 0x10)
        round_trip((flags >> 5) & 3, limit, body, n, seed);
    else
        compressed_body((flags & 1) ? GUNZIP_DEFLATE : GUNZIP_GZIP, limit, body, n, seed);
    return 0;
}
