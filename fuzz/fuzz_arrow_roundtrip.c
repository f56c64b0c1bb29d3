/*
 * fuzz_arrow_roundtrip: frames built from the input → arrow_write_frame →
 * our reader (tests/support) → the same frame; plus the JSON writer and
 * frame_sort_by on the same frames.
 *
 * Input layout (bytes past the end read as a PRNG stream seeded with a hash
 * of the input, so short inputs still make full frames):
 *   [0]   flags: bit0 raw mode (names and string values are arbitrary bytes
 *         instead of UTF-8 drawn from an alphabet), bit1 frame meta,
 *         bit2 sort by a field afterwards, bit3 long strings, bits4-6
 *         all set: a big frame, bit7 the JSON round trip too
 *   [1]   number of fields (mod 17)
 *   [2]   rows (with [3]: 16-bit LE, mod 257, so 0..256, for a big frame,
 *         else mod 17; mod 33 when more than 8 fields)
 *   then  frame name, refId, meta text: each a length byte + bytes
 *   per field: type (mod FT_COUNT), flags (bit0 nullable, bit1 labels,
 *         bit2 config, bits3-5 null rate k/8, bit6 nulls only at the end),
 *         name, up to 3 label pairs, a config unit string
 *   then  values, row-major: per row and field a null draw then the value
 *         (ints/uint/time: 8 bytes truncated to the type; floats: raw bit
 *         patterns, so NaN payloads, -0 and denormals; JSON: a small
 *         template chosen by a byte, filled with a number or a string)
 * meta, labels and config are always valid JSON (built with jsonw_string),
 * JSON values never the literal `null` (see KNOWN BUG 3).
 *
 * Checked:
 *   - arrow_write_frame succeeds; the file follows our layout rules
 *     (ar_check_layout); every field carries tstype = its ts name; zero rows
 *     → zero record batches; node null counts equal the fields';
 *   - the reader rebuilds an equal frame: every value (floats bit for bit,
 *     NaN = NaN), every null, names, types, nullability, name/refId/meta,
 *     labels and config strings;
 *   - writing the read-back frame gives byte-identical output;
 *   - flag bit7: frame_to_json succeeds and frame_from_json reads it; in
 *     UTF-8 mode the frame read back equals the original (half the inputs:
 *     the JSON pair took 40 % of the time under ASan, and fuzz_convert
 *     checks it on every frame it builds);
 *   - flag bit2: frame_sort_by on a time/numeric field without nulls (and
 *     without NaN) gives the order of a reference stable sort, with every
 *     other field's rows (values and nulls) moved along.
 *
 * Generated JSON values are never the literal `null`: in a nullable raw-JSON
 * field Grafana's JSON frame format cannot tell it from a missing value
 * (KNOWN BUG 3 of fuzz/crashes/README.md; bugs 2 and 5 are fixed).
 */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arrow_read.h"
#include "frames/arrow.h"
#include "frames/frame_json.h"
#include "util/jsonw.h"

#include "fuzz_check.h"

/* ---- input stream ---------------------------------------------------------- */

typedef struct {
    const uint8_t *p;
    size_t n, i;
    uint64_t prng;
    size_t pieces_left; /* string pieces this input may still generate */
} src_t;

/* Throughput: libFuzzer keeps the inputs that reach new counter buckets, and
 * bigger frames with longer strings always do, so without a cap the corpus
 * drifts to ~1 MB frames and a few hundred inputs a second. Past this many
 * string pieces (~64 KiB) an input's strings stay short (0-2 pieces). */
#define PIECES_PER_INPUT 16384

static uint8_t u8(src_t *s) {
    if (s->i < s->n) return s->p[s->i++];
    s->prng ^= s->prng << 13;
    s->prng ^= s->prng >> 7;
    s->prng ^= s->prng << 17;
    return (uint8_t)(s->prng >> 24);
}

static uint64_t u64(src_t *s) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v |= (uint64_t)u8(s) << (8 * i);
    return v;
}

/* UTF-8 pieces a string is made of in UTF-8 mode (no NUL). */
static const char *const alphabet[] = {
    "a", "b", "z", "A", "0", "9", " ", "_", "-", ".", ":", "{", "}", "[", "]", ",", "\"", "\\", "/", "\n", "\t",
    "\r", "\x01", "\x1f", "\x7f", "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\xa6\xa5", "\xe2\x80\xa8", "\xef\xbf\xbd",
    "\xc2\x80", "\xf4\x8f\xbf\xbf",
};
#define NALPHA (sizeof alphabet / sizeof alphabet[0])

/* A string of up to `max` pieces; raw mode: bytes, NUL allowed only when
 * `allow_nul` (names are C strings). Returns a malloc'd buffer and length. */
static char *gen_string(src_t *s, bool raw, bool allow_nul, size_t max, size_t *len) {
    size_t pieces = u8(s) % (max + 1);
    if (pieces > s->pieces_left) pieces = pieces % 3;
    s->pieces_left -= pieces < s->pieces_left ? pieces : s->pieces_left;
    char *out = malloc(pieces * 4 + 1);
    CHECK(out != NULL, "oom");
    size_t o = 0;
    for (size_t i = 0; i < pieces; i++) {
        uint8_t b = u8(s);
        if (raw) {
            if (b == 0 && !allow_nul) b = 0xFF;
            out[o++] = (char)b;
        } else {
            const char *a = alphabet[b % NALPHA];
            size_t l = strlen(a);
            memcpy(out + o, a, l);
            o += l;
        }
    }
    out[o] = '\0';
    *len = o;
    return out;
}

static void put_json_string(buf_t *b, src_t *s, bool raw, size_t max) {
    size_t len;
    char *str = gen_string(s, raw, raw, max, &len);
    jsonw_string(b, str, len);
    free(str);
}

/* ---- frame generation --------------------------------------------------------- */

static int append_value(frame_field *x, src_t *s, bool raw, bool long_strings, buf_t *tmp) {
    switch (x->type) {
    case FT_INT8: case FT_INT16: case FT_INT32: case FT_INT64: case FT_TIME: {
        uint64_t v = u64(s);
        int64_t iv = x->type == FT_INT8 ? (int8_t)v : x->type == FT_INT16 ? (int16_t)v
                     : x->type == FT_INT32 ? (int32_t)v : (int64_t)v;
        return field_append_int(x, iv);
    }
    case FT_UINT8: case FT_UINT16: case FT_UINT32: case FT_UINT64: case FT_ENUM: {
        uint64_t v = u64(s);
        v = x->type == FT_UINT8 ? (uint8_t)v : (x->type == FT_UINT16 || x->type == FT_ENUM) ? (uint16_t)v
            : x->type == FT_UINT32 ? (uint32_t)v : v;
        return field_append_uint(x, v);
    }
    case FT_FLOAT32: {
        uint32_t bits = (uint32_t)u64(s);
        float f;
        memcpy(&f, &bits, 4);
        return field_append_float(x, f);
    }
    case FT_FLOAT64: {
        uint64_t bits = u64(s);
        double d;
        memcpy(&d, &bits, 8);
        return field_append_float(x, d);
    }
    case FT_BOOL: return field_append_bool(x, u8(s) & 1);
    case FT_STRING: {
        size_t len;
        char *str = gen_string(s, raw, true, long_strings ? 200 : 12, &len);
        int r = field_append_bytes(x, str, len);
        free(str);
        return r;
    }
    default: { /* FT_JSON: compact, never the literal null */
        tmp->len = 0;
        uint8_t k = u8(s) % 6;
        switch (k) {
        case 0: buf_printf(tmp, "%lld", (long long)(int64_t)u64(s)); break;
        case 1: put_json_string(tmp, s, raw, 10); break;
        case 2: buf_printf(tmp, "[%u,%u]", u8(s), u8(s)); break;
        case 3:
            buf_puts(tmp, "{\"a\":");
            put_json_string(tmp, s, raw, 6);
            buf_puts(tmp, "}");
            break;
        case 4: buf_puts(tmp, (u8(s) & 1) ? "true" : "false"); break;
        default: buf_puts(tmp, "{}"); break;
        }
        CHECK(buf_ok(tmp), "oom");
        return field_append_bytes(x, tmp->data, tmp->len);
    }
    }
}

typedef struct {
    char *key;
    char *value;
} pair_t;

static int cmp_pairs(const void *a, const void *b) { return strcmp(((const pair_t *)a)->key, ((const pair_t *)b)->key); }

/* Canonical labels: unique keys sorted with strcmp (what frame_json_labels writes). */
static char *gen_labels(src_t *s, bool raw) {
    pair_t pairs[3];
    size_t n = 0, want = 1 + u8(s) % 3;
    for (size_t i = 0; i < want; i++) {
        size_t kl, vl;
        char *k = gen_string(s, raw, false, 6, &kl), *v = gen_string(s, raw, false, 8, &vl);
        bool dup = false;
        for (size_t j = 0; j < n; j++) dup |= strcmp(pairs[j].key, k) == 0;
        if (dup) { free(k); free(v); continue; }
        pairs[n++] = (pair_t){k, v};
    }
    qsort(pairs, n, sizeof *pairs, cmp_pairs);
    buf_t b;
    buf_init(&b);
    buf_puts(&b, "{");
    for (size_t i = 0; i < n; i++) {
        if (i) buf_puts(&b, ",");
        jsonw_string(&b, pairs[i].key, strlen(pairs[i].key));
        buf_puts(&b, ":");
        jsonw_string(&b, pairs[i].value, strlen(pairs[i].value));
        free(pairs[i].key);
        free(pairs[i].value);
    }
    buf_puts(&b, "}");
    CHECK(buf_ok(&b), "oom");
    return b.data;
}

static frame_t *gen_frame(src_t *s, uint8_t flags) {
    bool raw = flags & 1, long_strings = flags & 8;
    size_t nfields = u8(s) % 17;
    size_t rows = ((size_t)u8(s) | ((size_t)u8(s) << 8)) % 257;
    /* Throughput: one input in eight (flag bits 4-6 all set) is a big frame;
     * the rest keep to 0..16 rows, which still crosses every validity-bitmap
     * byte edge. Wide frames stay short either way. */
    if ((flags & 0x70) != 0x70) rows %= 17;
    if (nfields > 8) rows %= 33;
    size_t len;
    char *name = gen_string(s, raw, false, 10, &len), *ref = gen_string(s, raw, false, 4, &len);
    frame_t *f = frame_new(name, ref);
    CHECK(f != NULL, "oom");
    free(name);
    free(ref);
    buf_t b;
    buf_init(&b);
    if (flags & 2) {
        buf_puts(&b, "{\"typeVersion\":[0,0],\"executedQueryString\":");
        put_json_string(&b, s, raw, 16);
        buf_printf(&b, ",\"custom\":{\"n\":%d}}", (int)(int8_t)u8(s));
        CHECK(buf_ok(&b) && frame_set_meta(f, b.data) == 0, "oom");
    }
    uint8_t null_rate[16], null_tail[16];
    for (size_t i = 0; i < nfields; i++) {
        field_type t = (field_type)(u8(s) % FT_COUNT);
        uint8_t ff = u8(s);
        char *fname = gen_string(s, raw, false, 8, &len);
        frame_field *x = frame_add_field(f, fname, t, ff & 1);
        free(fname);
        CHECK(x != NULL, "oom");
        null_rate[i] = (ff >> 3) & 7;
        null_tail[i] = ff & 64;
        if (ff & 2) {
            char *l = gen_labels(s, raw);
            CHECK(field_set_labels(x, l) == 0, "oom");
            free(l);
        }
        if (ff & 4) {
            b.len = 0;
            if (t == FT_ENUM) {
                buf_puts(&b, "{\"type\":{\"enum\":{\"text\":[");
                put_json_string(&b, s, raw, 4);
                buf_puts(&b, ",\"B\"]}}}");
            } else {
                buf_puts(&b, "{\"unit\":");
                put_json_string(&b, s, raw, 6);
                buf_printf(&b, ",\"decimals\":%u}", u8(s) % 10);
            }
            CHECK(buf_ok(&b) && field_set_config(x, b.data) == 0, "oom");
        }
    }
    for (size_t r = 0; r < rows; r++)
        for (size_t i = 0; i < nfields; i++) {
            frame_field *x = f->fields[i];
            bool null = x->nullable && null_rate[i] &&
                        (null_tail[i] ? r >= rows - rows * null_rate[i] / 8 : (u8(s) & 7) < null_rate[i]);
            int rc = null ? field_append_null(x) : append_value(x, s, raw, long_strings, &b);
            CHECK(rc == 0, "field %zu (%s), row %zu: append refused", i, field_type_go_name(x->type), r);
        }
    buf_free(&b);
    CHECK(frame_rows(f) == (long long)(nfields ? rows : 0), "rows %lld, want %zu", frame_rows(f), rows);
    return f;
}

/* ---- checks -------------------------------------------------------------------- */

static const char *cell_bytes(const frame_field *f, size_t row, size_t *len) {
    int32_t a, b;
    memcpy(&a, f->offsets.data + 4 * row, 4);
    memcpy(&b, f->offsets.data + 4 * (row + 1), 4);
    *len = (size_t)(b - a);
    return *len ? (const char *)f->values.data + a : "";
}

static bool same_cell(const frame_field *x, size_t rx, const frame_field *y, size_t ry) {
    bool nx = field_is_null(x, rx), ny = field_is_null(y, ry);
    if (nx || ny) return nx == ny;
    switch (x->type) {
    case FT_FLOAT32: case FT_FLOAT64: {
        double a = field_get_float(x, rx), b = field_get_float(y, ry);
        return (isnan(a) && isnan(b)) || memcmp(&a, &b, sizeof a) == 0;
    }
    case FT_BOOL: return field_get_bool(x, rx) == field_get_bool(y, ry);
    case FT_STRING: case FT_JSON: {
        size_t la, lb;
        const char *a = cell_bytes(x, rx, &la), *b = cell_bytes(y, ry, &lb);
        return la == lb && (la == 0 || memcmp(a, b, la) == 0);
    }
    default: return field_get_uint(x, rx) == field_get_uint(y, ry);
    }
}

static void check_sort(frame_t *orig, frame_t *sorted, uint8_t pick) {
    /* a key: time or numeric, no nulls, no NaN */
    size_t key = SIZE_MAX;
    for (size_t j = 0; j < orig->nfields && key == SIZE_MAX; j++) {
        size_t i = (j + pick) % orig->nfields;
        const frame_field *k = orig->fields[i];
        if (k->type == FT_BOOL || k->type == FT_STRING || k->type == FT_JSON || k->null_count) continue;
        bool nan = false;
        if (k->type == FT_FLOAT32 || k->type == FT_FLOAT64)
            for (size_t r = 0; r < k->rows; r++) nan |= isnan(field_get_float(k, r));
        if (!nan) key = i;
    }
    if (key == SIZE_MAX) return;
    const frame_field *k = orig->fields[key];
    size_t n = k->rows;
    size_t *perm = malloc((n ? n : 1) * sizeof *perm);
    CHECK(perm != NULL, "oom");
    size_t *tmp = malloc((n ? n : 1) * sizeof *tmp);
    CHECK(tmp != NULL, "oom");
    for (size_t i = 0; i < n; i++) perm[i] = i;
    /* reference: top-down stable merge sort (takes the left run on ties) */
    for (size_t w = 1; w < n; w *= 2)
        for (size_t lo = 0; lo + w < n; lo += 2 * w) {
            size_t mid = lo + w, hi = lo + 2 * w < n ? lo + 2 * w : n, i = lo, j = mid, o = 0;
            while (i < mid || j < hi)
                tmp[o++] = (j >= hi || (i < mid && field_compare_rows(k, perm[j], perm[i]) >= 0)) ? perm[i++] : perm[j++];
            memcpy(perm + lo, tmp, o * sizeof *tmp);
        }
    free(tmp);
    CHECK(frame_sort_by(sorted, key) == 0, "frame_sort_by failed");
    CHECK(frame_rows(sorted) == (long long)n, "rows changed by sorting");
    for (size_t i = 0; i < orig->nfields; i++) {
        const frame_field *x = orig->fields[i], *y = sorted->fields[i];
        CHECK(x->null_count == y->null_count, "field %zu: null count %zu after sorting, was %zu", i, y->null_count,
              x->null_count);
        for (size_t r = 0; r < n; r++)
            CHECK(same_cell(x, perm[r], y, r), "sort by field %zu (%s): field %zu (%s) row %zu should be row %zu", key,
                  field_type_go_name(k->type), i, field_type_go_name(x->type), r, perm[r]);
    }
    free(perm);
    /* the sorted frame still encodes and reads back */
    buf_t out;
    buf_init(&out);
    CHECK(arrow_write_frame(sorted, &out) == 0, "sorted frame does not encode");
    frame_t *back;
    char err[256], msg[512];
    CHECK(ar_read_frame((const uint8_t *)out.data, out.len, &back, err, sizeof err) == 0, "sorted: %s", err);
    CHECK(ar_frame_diff(sorted, back, msg, sizeof msg) == 0, "sorted frame round trip: %s", msg);
    frame_free(back);
    buf_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < size; i++) h = (h ^ data[i]) * 1099511628211ull;
    src_t s = {data, size, 0, h ? h : 1, PIECES_PER_INPUT};
    uint8_t flags = u8(&s);
    bool raw = flags & 1;
    frame_t *f = gen_frame(&s, flags);

    buf_t out;
    buf_init(&out);
    CHECK(arrow_write_frame(f, &out) == 0, "arrow_write_frame failed");
    ar_file af;
    const char *e = ar_parse((const uint8_t *)out.data, out.len, &af);
    CHECK(e == NULL, "our reader refuses the file: %s", e);
    char msg[600];
    CHECK(ar_check_layout(&af, (const uint8_t *)out.data, out.len, msg, sizeof msg) == 0, "layout: %s", msg);
    CHECK(af.nbatches == (frame_rows(f) > 0 ? 1u : 0u), "%zu record batches for %lld rows", af.nbatches, frame_rows(f));
    CHECK(af.schema.nfields == f->nfields, "schema fields");
    for (size_t i = 0; i < f->nfields; i++) {
        const ar_field *x = &af.schema.fields[i];
        const char *ts = ar_kv_get(x->md, x->nmd, "tstype");
        CHECK(ts && strcmp(ts, field_type_ts_name(f->fields[i]->type)) == 0, "field %zu: tstype %s", i, ts ? ts : "-");
        if (af.nbatches)
            CHECK(af.batches[0].nodes[i].null_count == (int64_t)f->fields[i]->null_count, "field %zu: node null count", i);
    }
    frame_t *back = NULL;
    e = ar_to_frame(&af, (const uint8_t *)out.data, out.len, &back);
    CHECK(e == NULL, "our reader cannot build the frame: %s", e);
    ar_file_free(&af);
    CHECK(ar_frame_diff(f, back, msg, sizeof msg) == 0, "Arrow round trip: %s", msg);
    buf_t again;
    buf_init(&again);
    CHECK(arrow_write_frame(back, &again) == 0, "second write failed");
    CHECK(again.len == out.len && memcmp(again.data, out.data, out.len) == 0, "re-written file differs");
    buf_free(&again);
    buf_free(&out);

    if (flags & 0x80) {
        buf_t json;
        buf_init(&json);
        CHECK(frame_to_json(f, &json) == 0, "frame_to_json failed");
        buf_append(&json, "", 1);
        CHECK(buf_ok(&json), "oom");
        frame_t *fj = NULL; /* bug 2 fixed: every time reads back */
        char err[256];
        CHECK(frame_from_json(json.data, &fj, err, sizeof err) == 0, "our JSON does not read back: %s", err);
        if (!raw) CHECK(ar_frame_diff(f, fj, msg, sizeof msg) == 0, "JSON round trip: %s", msg);
        frame_free(fj);
        buf_free(&json);
    }

    if (flags & 4) check_sort(f, back, u8(&s));
    frame_free(back);
    frame_free(f);
    return 0;
}
