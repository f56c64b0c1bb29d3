/*
 * fuzz_grpc_meta: the small text codecs on the gRPC metadata path.
 *
 * The first byte picks what the rest of the input is:
 *   0: a grpc-timeout value          -> grpc_timeout_parse, against a model
 *   1: [cap] + a grpc-message text   -> grpc_percent_encode
 *   2: [cap_hi cap_lo] + a log text  -> hclog_format: always one valid JSON line
 *      (the text comes from the peer in practice: paths, header values)
 *   3: 4 bytes                       -> grpc_status_name never returns NULL
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "h2/grpc_wire.h"
#include "log/hclog.h"

#include "fuzz_check.h"

/* ---- grpc-timeout --------------------------------------------------------- */

static void check_timeout(const uint8_t *p, size_t len) {
    int64_t got = -12345;
    int r = grpc_timeout_parse((const char *)p, len, &got);
    /* Model: 1-8 ASCII digits then one unit letter. */
    bool valid = len >= 2 && len <= 9;
    for (size_t i = 0; valid && i + 1 < len; i++) valid = p[i] >= '0' && p[i] <= '9';
    int64_t mult = 0;
    if (valid) {
        switch (p[len - 1]) {
        case 'H': mult = 3600LL * 1000000000LL; break;
        case 'M': mult = 60LL * 1000000000LL; break;
        case 'S': mult = 1000000000LL; break;
        case 'm': mult = 1000000LL; break;
        case 'u': mult = 1000LL; break;
        case 'n': mult = 1; break;
        default: valid = false;
        }
    }
    CHECK((r == 0) == valid, "parse of %zu bytes returned %d", len, r);
    if (!valid) {
        CHECK(got == -12345, "a failed parse wrote its output");
        return;
    }
    int64_t n = 0;
    for (size_t i = 0; i + 1 < len; i++) n = n * 10 + (p[i] - '0');
    /* n < 10^8, so n*mult fits in 128 bits; saturate like the contract says. */
    __int128 want = (__int128)n * mult;
    if (want > INT64_MAX) want = INT64_MAX;
    CHECK(got == (int64_t)want, "%.*s -> %lld, want %lld", (int)len, (const char *)p, (long long)got,
          (long long)want);
    CHECK(got >= 0, "negative timeout");
}

/* ---- grpc-message percent-encoding -------------------------------------- */

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1; /* the encoder promises uppercase */
}

static void check_percent(const uint8_t *p, size_t len) {
    if (len < 1) return;
    size_t cap = p[0];
    char *msg = malloc(len); /* the text, NUL-terminated (stops at an embedded NUL) */
    CHECK(msg != NULL, "oom");
    memcpy(msg, p + 1, len - 1);
    msg[len - 1] = '\0';
    size_t mlen = strlen(msg);

    char *out = malloc(cap ? cap : 1); /* exactly cap bytes: ASan sees any overrun */
    CHECK(out != NULL, "oom");
    size_t n = grpc_percent_encode(out, cap, msg);
    if (cap == 0) {
        CHECK(n == 0, "cap 0 returned %zu", n);
        free(out);
        free(msg);
        return;
    }
    CHECK(n < cap, "encoded length %zu with cap %zu", n, cap);
    CHECK(out[n] == '\0', "no terminating NUL");
    CHECK(strlen(out) == n, "strlen %zu != %zu", strlen(out), n);
    /* Decode it back: it must give a prefix of the input, cut only on whole escapes. */
    size_t d = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)out[i];
        CHECK(c >= 0x20 && c <= 0x7E, "byte 0x%02x at %zu in the output", c, i);
        unsigned char dec;
        if (c == '%') {
            CHECK(i + 2 < n, "escape cut at %zu of %zu", i, n);
            int hi = hexval(out[i + 1]), lo = hexval(out[i + 2]);
            CHECK(hi >= 0 && lo >= 0, "bad escape %.3s", out + i);
            dec = (unsigned char)(hi * 16 + lo);
            i += 2;
            /* Escaped only when it had to be. */
            CHECK(dec < 0x20 || dec > 0x7E || dec == '%', "needless escape of 0x%02x", dec);
        } else {
            dec = c;
        }
        CHECK(d < mlen && (unsigned char)msg[d] == dec, "decoded byte %zu differs", d);
        d++;
    }
    if (d < mlen) {
        /* Truncated: the next escape or character must not have fitted. */
        unsigned char next = (unsigned char)msg[d];
        size_t need = (next >= 0x20 && next <= 0x7E && next != '%') ? 1 : 3;
        CHECK(n + need >= cap, "stopped at input byte %zu with room left (%zu + %zu < %zu)", d, n, need, cap);
    }
    free(out);
    free(msg);
}

/* ---- hclog lines ---------------------------------------------------------- */

static bool valid_utf8(const unsigned char *s, size_t n) {
    /* Independent of hclog's own checker: decode and compare ranges. */
    for (size_t i = 0; i < n;) {
        unsigned char c = s[i];
        size_t len;
        uint32_t cp;
        if (c < 0x80) { i++; continue; }
        if (c >= 0xC2 && c <= 0xDF) { len = 2; cp = c & 0x1F; }
        else if (c >= 0xE0 && c <= 0xEF) { len = 3; cp = c & 0x0F; }
        else if (c >= 0xF0 && c <= 0xF4) { len = 4; cp = c & 0x07; }
        else return false;
        if (n - i < len) return false;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return false;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || (cp >= 0xD800 && cp <= 0xDFFF) ||
            cp > 0x10FFFF)
            return false;
        i += len;
    }
    return true;
}

static void check_same_or_cut(const char *got, const char *want, const char *what) {
    if (strcmp(got, want) == 0) return;
    size_t gl = strlen(got);
    CHECK(gl >= 3 && memcmp(got + gl - 3, "...", 3) == 0, "%s changed and is not marked as cut", what);
    CHECK(strncmp(got, want, gl - 3) == 0, "%s cut is not a prefix of the text", what);
}

static void check_hclog(const uint8_t *p, size_t len) {
    if (len < 2) return;
    size_t cap = 256 + ((((size_t)p[0] << 8) | p[1]) % 8192); /* the contract: cap >= 256 */
    size_t tlen = len - 2;
    char *text = malloc(tlen + 1);
    CHECK(text != NULL, "oom");
    memcpy(text, p + 2, tlen);
    text[tlen] = '\0';
    size_t slen = strlen(text);

    /* A whole record with the text as message and as a value. */
    char *line = malloc(cap);
    CHECK(line != NULL, "oom");
    const hclog_kv kvs[] = {{0}, HKV_S("path", text), HKV_I("stream", (int64_t)tlen), HKV_D("ratio", 0.5)};
    int64_t unix_us = 1700000000000000LL + (int64_t)tlen * 1000003LL; /* realistic clock values */
    size_t n = hclog_format(line, cap, HCLOG_INFO, text, kvs, sizeof kvs / sizeof kvs[0], unix_us);
    CHECK(n <= cap, "line of %zu bytes with cap %zu", n, cap);
    CHECK(n >= 2 && line[n - 1] == '\n' && line[n - 2] == '}', "line does not end with }\\n");
    CHECK(memchr(line, '\n', n - 1) == NULL, "newline inside the line");
    json_error_t jerr;
    json_t *obj = json_loadb(line, n, 0, &jerr);
    CHECK(obj != NULL, "not JSON (%s at %d): %.*s", jerr.text, jerr.position, (int)n, line);
    CHECK(json_is_object(obj), "not an object");
    CHECK(json_is_string(json_object_get(obj, "@level")), "no @level");
    CHECK(json_is_string(json_object_get(obj, "@timestamp")), "no @timestamp");
    CHECK(json_is_string(json_object_get(obj, "@module")), "no @module");
    json_t *jm = json_object_get(obj, "@message");
    CHECK(json_is_string(jm), "no @message");
    /* Valid UTF-8 comes back byte for byte, or as a prefix marked "...". */
    if (valid_utf8((const unsigned char *)text, slen)) {
        check_same_or_cut(json_string_value(jm), text, "@message");
        json_t *jp = json_object_get(obj, "path");
        if (jp) check_same_or_cut(json_string_value(jp), text, "path");
    }
    json_decref(obj);
    free(line);
    free(text);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc; (void)argv;
    hclog_init("plugin.seed-inhouse-datasource", HCLOG_OFF);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    const uint8_t *p = data + 1;
    size_t len = size - 1;
    switch (data[0] % 4) {
    case 0: check_timeout(p, len); break;
    case 1: check_percent(p, len); break;
    case 2: check_hclog(p, len); break;
    default: {
        int code = 0;
        if (len >= 4) memcpy(&code, p, 4);
        CHECK(grpc_status_name(code) != NULL, "NULL name for %d", code);
        CHECK(code < 0 || code >= GRPC_STATUS_COUNT || strcmp(grpc_status_name(code), "Unknown") != 0 ||
                  code == GRPC_UNKNOWN,
              "code %d has no name", code);
        break;
    }
    }
    return 0;
}
