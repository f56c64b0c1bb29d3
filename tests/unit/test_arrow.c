/* The Arrow IPC file writer, judged by our own reader (tests/support):
 * file structure and alignment, the §5.6 minimal time series layout byte
 * for byte, zero rows / zero fields, validity buffers, schema and field
 * metadata, round trips of every type, and the SDK's golden file. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "arrow_read.h"
#include "frames/arrow.h"
#include "frames/frame.h"
#include "frames/frame_json.h"

static const uint8_t *bytes(const buf_t *b) { return (const uint8_t *)b->data; }

static int32_t ld32(const uint8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

static void write_ok(const frame_t *f, buf_t *out) {
    buf_init(out);
    assert_int_equal(arrow_write_frame(f, out), 0);
}

static void parse_ok(const uint8_t *p, size_t len, ar_file *af) {
    const char *e = ar_parse(p, len, af);
    if (e) fail_msg("ar_parse: %s", e);
}

/* Layout rules every file we write must follow. */
static void check_structure(const uint8_t *p, size_t len, const ar_file *af) {
    assert_memory_equal(p, "ARROW1\0\0", 8);
    assert_memory_equal(p + len - 6, "ARROW1", 6);
    assert_int_equal(ld32(p + len - 10), af->footer_len);
    assert_int_equal(af->footer_offset + (size_t)af->footer_len + 10, len);
    assert_int_equal(af->footer_offset % 8, 0);
    /* The end-of-stream marker sits right before the footer. */
    assert_memory_equal(p + af->footer_offset - 8, "\xFF\xFF\xFF\xFF\0\0\0\0", 8);
    /* Schema message at 8, its metadata length a multiple of 8, no body. */
    assert_memory_equal(p + 8, "\xFF\xFF\xFF\xFF", 4);
    assert_int_equal(af->schema_prefix_len % 8, 0);
    assert_int_equal(af->schema_body_len, 0);
    assert_int_equal(af->schema_version, 4);
    assert_int_equal(af->footer_version, 4);
    char msg[256];
    if (ar_schema_diff(&af->lead, &af->schema, msg, sizeof msg) != 0) fail_msg("leading vs footer schema: %s", msg);
    /* Batches follow each other from the end of the schema message. */
    uint64_t at = 16 + (uint64_t)af->schema_prefix_len;
    for (size_t i = 0; i < af->nbatches; i++) {
        const ar_batch *b = &af->batches[i];
        assert_int_equal(b->offset, at);
        assert_int_equal(b->offset % 8, 0);
        assert_int_equal(b->meta_len % 8, 0);
        assert_int_equal(b->body_len % 8, 0);
        assert_int_equal(b->meta_len, b->prefix_len + 8); /* metaDataLength includes the prefix */
        assert_int_equal(b->msg_body_len, b->body_len);
        assert_int_equal(b->version, 4);
        /* Buffers: consecutive, 8-aligned offsets, zero padding between. */
        int64_t next = 0;
        const uint8_t *body = p + b->offset + b->meta_len;
        for (size_t k = 0; k < b->nbuffers; k++) {
            const ar_buffer *x = &b->buffers[k];
            assert_int_equal(x->offset % 8, 0);
            assert_int_equal(x->offset, next);
            int64_t end = x->offset + x->length, padded = (end + 7) & ~(int64_t)7;
            for (int64_t z = end; z < padded; z++) assert_int_equal(body[z], 0);
            next = padded;
        }
        assert_int_equal(b->body_len, next);
        at = (uint64_t)(b->offset + b->meta_len + b->body_len);
    }
    assert_int_equal(at + 8, af->footer_offset);
    /* the fuzzers' version of the same rules agrees */
    if (ar_check_layout(af, p, len, msg, sizeof msg) != 0) fail_msg("ar_check_layout: %s", msg);
}

static frame_t *read_back(const buf_t *out) {
    frame_t *f;
    char err[256];
    if (ar_read_frame(bytes(out), out->len, &f, err, sizeof err) != 0) fail_msg("ar_read_frame: %s", err);
    return f;
}

static void assert_same_frame(const frame_t *a, const frame_t *b) {
    char msg[512];
    if (ar_frame_diff(a, b, msg, sizeof msg) != 0) fail_msg("frames differ: %s", msg);
}

/* §5.6: the minimal time series frame, buffer by buffer. */
static void minimal_time_series_layout(void **state) {
    (void)state;
    frame_t *f = frame_new("", "A");
    assert_int_equal(frame_set_meta(f, "{\"type\":\"timeseries-multi\",\"typeVersion\":[0,1]}"), 0);
    frame_field *t = frame_add_field(f, "Time", FT_TIME, false);
    frame_field *v = frame_add_field(f, "Value", FT_FLOAT64, true);
    assert_int_equal(field_set_labels(v, "{\"host\":\"a\"}"), 0);
    enum { N = 5 };
    for (int i = 0; i < N; i++) {
        assert_int_equal(field_append_int(t, 1700000000000000000LL + i * 1000000000LL), 0);
        assert_int_equal(i == 2 ? field_append_null(v) : field_append_float(v, i * 1.5), 0);
    }
    buf_t out;
    write_ok(f, &out);
    ar_file af;
    parse_ok(bytes(&out), out.len, &af);
    check_structure(bytes(&out), out.len, &af);

    const ar_schema *s = &af.schema;
    assert_int_equal(s->nmd, 3);
    assert_string_equal(s->md[0].key, "name");
    assert_string_equal(s->md[0].value, "");
    assert_string_equal(s->md[1].key, "refId");
    assert_string_equal(s->md[1].value, "A");
    assert_string_equal(s->md[2].key, "meta");
    assert_string_equal(s->md[2].value, "{\"type\":\"timeseries-multi\",\"typeVersion\":[0,1]}");
    assert_int_equal(s->nfields, 2);
    const ar_field *ft = &s->fields[0], *fv = &s->fields[1];
    assert_string_equal(ft->name, "Time");
    assert_false(ft->nullable);
    assert_int_equal(ft->type_id, AR_T_TIMESTAMP);
    assert_int_equal(ft->unit, 3);
    assert_null(ft->timezone);
    assert_int_equal(ft->nmd, 1);
    assert_string_equal(ar_kv_get(ft->md, ft->nmd, "tstype"), "time");
    assert_string_equal(fv->name, "Value");
    assert_true(fv->nullable);
    assert_int_equal(fv->type_id, AR_T_FLOAT);
    assert_int_equal(fv->precision, 2);
    assert_int_equal(fv->nmd, 2);
    assert_string_equal(fv->md[0].key, "tstype");
    assert_string_equal(fv->md[0].value, "number");
    assert_string_equal(fv->md[1].key, "labels");
    assert_string_equal(fv->md[1].value, "{\"host\":\"a\"}");
    assert_int_equal(fv->nchildren, 0);

    assert_int_equal(af.nbatches, 1);
    const ar_batch *b = &af.batches[0];
    assert_int_equal(b->length, N);
    assert_int_equal(b->nnodes, 2);
    assert_int_equal(b->nodes[0].length, N);
    assert_int_equal(b->nodes[0].null_count, 0);
    assert_int_equal(b->nodes[1].length, N);
    assert_int_equal(b->nodes[1].null_count, 1);
    assert_int_equal(b->nbuffers, 4);
    static const int64_t want[4][2] = {{0, 0}, {0, 8 * N}, {40, 1}, {48, 8 * N}};
    for (int k = 0; k < 4; k++) {
        assert_int_equal(b->buffers[k].offset, want[k][0]);
        assert_int_equal(b->buffers[k].length, want[k][1]);
    }
    assert_int_equal(b->body_len, 88);
    const uint8_t *body = bytes(&out) + b->offset + b->meta_len;
    /* rows 0,1,3,4 valid; bits past the last row are unspecified in Arrow
     * (the writer leaves the back-filled 1s there) */
    assert_int_equal(body[40] & 0x1F, 0x1B);
    int64_t ns;
    memcpy(&ns, body + 8, 8);
    assert_true(ns == 1700000000000000000LL + 1000000000LL);
    double d;
    memcpy(&d, body + 48 + 8 * 4, 8);
    assert_true(d == 6.0);
    memcpy(&d, body + 48 + 8 * 2, 8);
    assert_true(d == 0.0); /* null slot */

    frame_t *back = read_back(&out);
    assert_same_frame(f, back);
    frame_free(back);
    ar_file_free(&af);
    buf_free(&out);
    frame_free(f);
}

static void zero_rows_zero_batches(void **state) {
    (void)state;
    frame_t *f = frame_new("empty", "B");
    frame_add_field(f, "t", FT_TIME, false);
    frame_add_field(f, "s", FT_STRING, true);
    frame_add_field(f, "b", FT_BOOL, false);
    buf_t out;
    write_ok(f, &out);
    ar_file af;
    parse_ok(bytes(&out), out.len, &af);
    check_structure(bytes(&out), out.len, &af);
    assert_int_equal(af.nbatches, 0);
    assert_int_equal(af.schema.nfields, 3);
    /* schema message, then straight to the end-of-stream marker */
    assert_int_equal(16 + af.schema_prefix_len + 8, af.footer_offset);
    frame_t *back = read_back(&out);
    assert_int_equal(frame_rows(back), 0);
    assert_same_frame(f, back);
    frame_free(back);
    ar_file_free(&af);
    buf_free(&out);
    frame_free(f);
}

static void zero_fields(void **state) {
    (void)state;
    frame_t *f = frame_new("nothing", "");
    buf_t out;
    write_ok(f, &out);
    ar_file af;
    parse_ok(bytes(&out), out.len, &af);
    check_structure(bytes(&out), out.len, &af);
    assert_int_equal(af.schema.nfields, 0);
    assert_int_equal(af.nbatches, 0);
    assert_string_equal(ar_kv_get(af.schema.md, af.schema.nmd, "name"), "nothing");
    assert_string_equal(ar_kv_get(af.schema.md, af.schema.nmd, "refId"), "");
    assert_null(ar_kv_get(af.schema.md, af.schema.nmd, "meta"));
    frame_t *back = read_back(&out);
    assert_same_frame(f, back);
    frame_free(back);
    ar_file_free(&af);
    buf_free(&out);
    frame_free(f);
}

/* Nullable without nulls: a zero-length validity buffer and null_count 0;
 * with a null: a bitmap of ceil(rows/8) bytes. */
static void validity_buffers(void **state) {
    (void)state;
    frame_t *f = frame_new("", "");
    frame_field *a = frame_add_field(f, "nullable_no_nulls", FT_INT32, true);
    frame_field *b = frame_add_field(f, "nullable_nulls", FT_STRING, true);
    frame_field *c = frame_add_field(f, "plain", FT_BOOL, false);
    frame_field *d = frame_add_field(f, "nullable_bool", FT_BOOL, true);
    for (int i = 0; i < 19; i++) {
        field_append_int(a, i);
        if (i % 6 == 0) field_append_null(b);
        else field_append_bytes(b, "xy", 2);
        field_append_bool(c, i & 1);
        if (i == 18) field_append_null(d);
        else field_append_bool(d, true);
    }
    buf_t out;
    write_ok(f, &out);
    ar_file af;
    parse_ok(bytes(&out), out.len, &af);
    check_structure(bytes(&out), out.len, &af);
    const ar_batch *bt = &af.batches[0];
    assert_int_equal(bt->nbuffers, 2 + 3 + 2 + 2);
    assert_int_equal(bt->nodes[0].null_count, 0);
    assert_int_equal(bt->buffers[0].length, 0);
    assert_int_equal(bt->buffers[1].length, 19 * 4);
    assert_int_equal(bt->nodes[1].null_count, 4);
    assert_int_equal(bt->buffers[2].length, 3);
    assert_int_equal(bt->buffers[3].length, 20 * 4);
    assert_int_equal(bt->buffers[4].length, 15 * 2);
    assert_int_equal(bt->nodes[2].null_count, 0);
    assert_int_equal(bt->buffers[5].length, 0);
    assert_int_equal(bt->buffers[6].length, 3);
    assert_int_equal(bt->nodes[3].null_count, 1);
    assert_int_equal(bt->buffers[7].length, 3);
    assert_int_equal(bt->buffers[8].length, 3);
    const uint8_t *body = bytes(&out) + bt->offset + bt->meta_len;
    /* the bitmap: nulls at 0, 6, 12, 18 */
    const uint8_t *bits = body + bt->buffers[2].offset;
    for (int i = 0; i < 19; i++) assert_int_equal((bits[i >> 3] >> (i & 7)) & 1, i % 6 != 0);
    /* null string slots repeat the previous offset */
    const uint8_t *offs = body + bt->buffers[3].offset;
    assert_int_equal(ld32(offs), 0);
    assert_int_equal(ld32(offs + 4), 0);
    assert_int_equal(ld32(offs + 8), 2);
    assert_int_equal(ld32(offs + 4 * 19), 30);
    frame_t *back = read_back(&out);
    assert_same_frame(f, back);
    assert_null(back->fields[0]->validity.data);
    frame_free(back);
    ar_file_free(&af);
    buf_free(&out);
    frame_free(f);
}

static void schema_and_field_metadata(void **state) {
    (void)state;
    frame_t *f = frame_new("cpu \"load\"", "Q1");
    frame_set_meta(f, "{\"executedQueryString\":\"sine:3\",\"typeVersion\":[0,0]}");
    static const field_type types[] = {FT_INT8, FT_INT16, FT_INT32, FT_INT64, FT_UINT8, FT_UINT16, FT_UINT32,
                                       FT_UINT64, FT_FLOAT32, FT_FLOAT64, FT_BOOL, FT_STRING, FT_TIME, FT_JSON,
                                       FT_ENUM};
    static const struct { uint8_t id; int bits; bool sg; int prec; } arrow[] = {
        {AR_T_INT, 8, true, 0},   {AR_T_INT, 16, true, 0},  {AR_T_INT, 32, true, 0},   {AR_T_INT, 64, true, 0},
        {AR_T_INT, 8, false, 0},  {AR_T_INT, 16, false, 0}, {AR_T_INT, 32, false, 0},  {AR_T_INT, 64, false, 0},
        {AR_T_FLOAT, 0, false, 1}, {AR_T_FLOAT, 0, false, 2}, {AR_T_BOOL, 0, false, 0}, {AR_T_UTF8, 0, false, 0},
        {AR_T_TIMESTAMP, 0, false, 0}, {AR_T_BINARY, 0, false, 0}, {AR_T_INT, 16, false, 0},
    };
    for (size_t i = 0; i < FT_COUNT; i++) {
        char name[32];
        snprintf(name, sizeof name, "f%zu_%s", i, field_type_go_name(types[i]));
        frame_field *x = frame_add_field(f, name, types[i], i % 2 == 0);
        if (i % 3 == 0) field_set_labels(x, "{\"a\":\"1\",\"b\":\"\\u00e9\"}");
        if (i % 4 == 1) field_set_config(x, "{\"unit\":\"ms\",\"interval\":1000}");
        if (types[i] == FT_ENUM) field_set_config(x, "{\"type\":{\"enum\":{\"text\":[\"A\",\"B\"]}}}");
    }
    buf_t out;
    write_ok(f, &out);
    ar_file af;
    parse_ok(bytes(&out), out.len, &af);
    check_structure(bytes(&out), out.len, &af);
    const ar_schema *s = &af.schema;
    assert_string_equal(ar_kv_get(s->md, s->nmd, "name"), "cpu \"load\"");
    assert_string_equal(ar_kv_get(s->md, s->nmd, "refId"), "Q1");
    assert_string_equal(ar_kv_get(s->md, s->nmd, "meta"), "{\"executedQueryString\":\"sine:3\",\"typeVersion\":[0,0]}");
    assert_int_equal(s->nfields, FT_COUNT);
    for (size_t i = 0; i < FT_COUNT; i++) {
        const ar_field *x = &s->fields[i];
        assert_int_equal(x->nullable, i % 2 == 0);
        assert_int_equal(x->type_id, arrow[i].id);
        assert_true(x->has_type_table);
        if (arrow[i].id == AR_T_INT) {
            assert_int_equal(x->bit_width, arrow[i].bits);
            assert_int_equal(x->is_signed, arrow[i].sg);
        }
        if (arrow[i].id == AR_T_FLOAT) assert_int_equal(x->precision, arrow[i].prec);
        if (arrow[i].id == AR_T_TIMESTAMP) {
            assert_int_equal(x->unit, 3);
            assert_null(x->timezone);
        }
        assert_int_equal(x->ft, types[i]);
        assert_int_equal(x->nchildren, 0);
        assert_false(x->has_dictionary);
        assert_string_equal(ar_kv_get(x->md, x->nmd, "tstype"), field_type_ts_name(types[i]));
        const char *labels = ar_kv_get(x->md, x->nmd, "labels"), *config = ar_kv_get(x->md, x->nmd, "config");
        if (i % 3 == 0) assert_string_equal(labels, "{\"a\":\"1\",\"b\":\"\\u00e9\"}");
        else assert_null(labels);
        if (types[i] == FT_ENUM) assert_string_equal(config, "{\"type\":{\"enum\":{\"text\":[\"A\",\"B\"]}}}");
        else if (i % 4 == 1) assert_string_equal(config, "{\"unit\":\"ms\",\"interval\":1000}");
        else assert_null(config);
        assert_int_equal(x->nmd, 1 + (labels != NULL) + (config != NULL));
    }
    assert_string_equal(ar_kv_get(s->fields[5].md, s->fields[5].nmd, "tstype"), "number"); /* plain uint16 */
    frame_t *back = read_back(&out);
    assert_same_frame(f, back);
    frame_free(back);
    ar_file_free(&af);
    buf_free(&out);
    frame_free(f);
}

/* Every type x nullable x several row counts: write, read, compare; and the
 * re-written file is byte-identical. */
static void append_value(frame_field *x, size_t r) {
    uint64_t k = r * 2654435761u + 17;
    int rc;
    switch (x->type) {
    case FT_INT8: rc = field_append_int(x, (int8_t)k); break;
    case FT_INT16: rc = field_append_int(x, (int16_t)k); break;
    case FT_INT32: rc = field_append_int(x, (int32_t)k); break;
    case FT_INT64: case FT_TIME: rc = field_append_int(x, r == 1 ? INT64_MIN : (int64_t)(k * 0x9E3779B97F4A7C15ull)); break;
    case FT_UINT8: rc = field_append_uint(x, (uint8_t)k); break;
    case FT_UINT16: case FT_ENUM: rc = field_append_uint(x, (uint16_t)k); break;
    case FT_UINT32: rc = field_append_uint(x, (uint32_t)k); break;
    case FT_UINT64: rc = field_append_uint(x, r == 1 ? UINT64_MAX : k * 0x9E3779B97F4A7C15ull); break;
    case FT_FLOAT32: case FT_FLOAT64: {
        static const double specials[] = {0.0, -0.0, NAN, INFINITY, -INFINITY, 1e-310, 3.4028235e38};
        rc = field_append_float(x, r < 7 ? specials[r] : (double)k / 7.0);
        break;
    }
    case FT_BOOL: rc = field_append_bool(x, k & 4); break;
    case FT_STRING: {
        char s[32];
        int n = snprintf(s, sizeof s, "s%zu\xc3\xa9", r);
        rc = field_append_bytes(x, s, r % 5 == 0 ? 0 : (size_t)n);
        break;
    }
    default: {
        char s[32];
        int n = snprintf(s, sizeof s, "{\"r\":%zu}", r);
        rc = field_append_bytes(x, s, (size_t)n);
    }
    }
    assert_int_equal(rc, 0);
}

static void round_trip_every_type(void **state) {
    (void)state;
    static const size_t row_counts[] = {0, 1, 7, 8, 9, 64, 70};
    for (size_t rc = 0; rc < sizeof row_counts / sizeof row_counts[0]; rc++) {
        size_t rows = row_counts[rc];
        for (int nulls = 0; nulls < 3; nulls++) { /* 0: not nullable, 1: nullable no nulls, 2: with nulls */
            frame_t *f = frame_new("rt", "A");
            for (int t = 0; t < FT_COUNT; t++) {
                frame_field *x = frame_add_field(f, field_type_go_name((field_type)t), (field_type)t, nulls > 0);
                for (size_t r = 0; r < rows; r++) {
                    if (nulls == 2 && (r + (size_t)t) % 3 == 0) assert_int_equal(field_append_null(x), 0);
                    else append_value(x, r);
                }
            }
            buf_t out;
            write_ok(f, &out);
            ar_file af;
            parse_ok(bytes(&out), out.len, &af);
            check_structure(bytes(&out), out.len, &af);
            assert_int_equal(af.nbatches, rows ? 1 : 0);
            for (size_t i = 0; rows && i < af.batches[0].nnodes; i++) {
                assert_int_equal(af.batches[0].nodes[i].null_count, f->fields[i]->null_count);
                if (f->fields[i]->null_count == 0) {
                    /* the field's first buffer is its validity */
                    size_t k = 0;
                    for (size_t j = 0; j < i; j++) k += af.schema.fields[j].nbuffers;
                    assert_int_equal(af.batches[0].buffers[k].length, 0);
                }
            }
            frame_t *back = read_back(&out);
            assert_same_frame(f, back);
            buf_t again;
            write_ok(back, &again);
            assert_int_equal(again.len, out.len);
            assert_memory_equal(again.data, out.data, out.len);
            buf_free(&again);
            frame_free(back);
            ar_file_free(&af);
            buf_free(&out);
            frame_free(f);
        }
    }
}

/* Offsets in the footer are relative to the file, even when the output
 * buffer already held something. */
static void appends_to_a_non_empty_buffer(void **state) {
    (void)state;
    frame_t *f = frame_new("x", "A");
    frame_field *t = frame_add_field(f, "t", FT_TIME, false);
    field_append_int(t, 5);
    buf_t solo, out;
    write_ok(f, &solo);
    buf_init(&out);
    buf_append(&out, "12345", 5);
    assert_int_equal(arrow_write_frame(f, &out), 0);
    assert_int_equal(out.len, 5 + solo.len);
    assert_memory_equal(out.data + 5, solo.data, solo.len);
    buf_free(&solo);
    buf_free(&out);
    frame_free(f);
}

static void failed_builder_refused(void **state) {
    (void)state;
    frame_t *f = frame_new("x", "A");
    frame_field *t = frame_add_field(f, "t", FT_TIME, false);
    field_append_int(t, 5);
    t->failed = true; /* what an out-of-memory append leaves behind */
    buf_t out;
    buf_init(&out);
    assert_int_equal(arrow_write_frame(f, &out), -1);
    assert_int_equal(out.len, 0);
    buf_free(&out);
    frame_free(f);
}

/* The reader refuses damaged files with a message and never reads outside. */
static void reader_rejects_damage(void **state) {
    (void)state;
    frame_t *f = frame_new("dmg", "A");
    frame_field *t = frame_add_field(f, "t", FT_TIME, false);
    frame_field *s = frame_add_field(f, "s", FT_STRING, true);
    for (int i = 0; i < 10; i++) {
        field_append_int(t, i);
        if (i == 3) field_append_null(s);
        else field_append_bytes(s, "abc", 3);
    }
    buf_t out;
    write_ok(f, &out);
    char err[256];
    frame_t *g;
    /* every truncation: exact-size copies so ASan sees any overread */
    for (size_t n = 0; n < out.len; n++) {
        uint8_t *cut = malloc(n ? n : 1);
        memcpy(cut, out.data, n);
        assert_int_equal(ar_read_frame(cut, n, &g, err, sizeof err), -1);
        assert_null(g);
        assert_true(err[0] != '\0');
        free(cut);
    }
    /* every single-byte corruption: either an error or a frame, never a crash */
    uint8_t *copy = malloc(out.len);
    size_t rejected = 0;
    for (size_t i = 0; i < out.len; i++) {
        memcpy(copy, out.data, out.len);
        copy[i] ^= 0xA5;
        if (ar_read_frame(copy, out.len, &g, err, sizeof err) != 0) rejected++;
        else frame_free(g);
    }
    assert_true(rejected > 0);
    memcpy(copy, out.data, out.len);
    copy[1] = 'X';
    assert_int_equal(ar_read_frame(copy, out.len, &g, err, sizeof err), -1);
    assert_non_null(strstr(err, "magic"));
    free(copy);
    buf_free(&out);
    frame_free(f);
}

/* ---- the SDK's golden file --------------------------------------------- */

static uint8_t *slurp(const char *path, size_t *len) {
    FILE *fp = fopen(path, "rb");
    if (!fp) fail_msg("cannot open %s", path);
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    uint8_t *p = malloc((size_t)n + 1);
    assert_int_equal(fread(p, 1, (size_t)n, fp), (size_t)n);
    fclose(fp);
    p[n] = 0;
    *len = (size_t)n;
    return p;
}

static const frame_field *by_name(const frame_t *f, const char *name, int nth) {
    for (size_t i = 0; i < f->nfields; i++)
        if (strcmp(f->fields[i]->name, name) == 0 && nth-- == 0) return f->fields[i];
    fail_msg("no field %s", name);
    return NULL;
}

static void golden_file(void **state) {
    (void)state;
    size_t len;
    uint8_t *p = slurp(TESTDATA_DIR "/all_types.golden.arrow", &len);
    assert_int_equal(len, 12954);
    ar_file af;
    parse_ok(p, len, &af);
    /* the numbers from the protocol notes §5.1 */
    assert_int_equal(af.schema_prefix_len, 4896);
    assert_int_equal(af.nbatches, 1);
    assert_int_equal(af.batches[0].offset, 4912);
    assert_int_equal(af.batches[0].meta_len, 1840);
    assert_int_equal(af.batches[0].body_len, 1240);
    assert_int_equal(af.footer_offset, 8000);
    assert_int_equal(af.footer_len, 4944);
    char msg[256];
    if (ar_schema_diff(&af.lead, &af.schema, msg, sizeof msg) != 0) fail_msg("%s", msg);
    frame_t *f;
    const char *e = ar_to_frame(&af, p, len, &f);
    if (e) fail_msg("%s", e);
    assert_int_equal(f->nfields, 35);
    assert_int_equal(frame_rows(f), 5);
    assert_string_equal(f->name, "many_types");
    assert_string_equal(f->ref_id, "A");
    assert_non_null(strstr(f->meta_json, "\"executedQueryString\":\"SELECT * FROM table\""));

    const frame_field *x = by_name(f, "string_values", 0);
    assert_int_equal(x->type, FT_STRING);
    assert_false(x->nullable);
    assert_string_equal(x->labels_json, "{\"aLabelKey\":\"aLabelValue\"}");
    assert_string_equal(x->config_json, "{}");
    size_t n;
    const char *s = field_get_bytes(x, 4, &n);
    assert_int_equal(n, 6);
    assert_memory_equal(s, "Go Max", 6);
    x = by_name(f, "nullable_string_values", 0);
    assert_true(x->nullable);
    assert_true(field_is_null(x, 2));
    assert_int_equal(x->null_count, 1);
    s = field_get_bytes(x, 3, &n);
    assert_int_equal(n, 4);
    assert_memory_equal(s, "\xf0\x9f\xa6\xa5", 4); /* sloth */

    x = by_name(f, "int8_values", 0);
    assert_int_equal(x->type, FT_INT8);
    assert_int_equal(field_get_int(x, 0), -128);
    assert_int_equal(field_get_int(x, 4), 127);
    x = by_name(f, "int64_values", 0);
    assert_true(field_get_int(x, 0) == INT64_MIN);
    assert_true(field_get_int(x, 1) == -9007199254740991LL);
    assert_true(field_get_int(x, 4) == INT64_MAX);
    x = by_name(f, "nullable_int64_values", 0);
    assert_true(field_is_null(x, 2));
    assert_false(field_is_null(x, 3));
    assert_true(field_get_int(x, 3) == 9007199254740991LL);
    x = by_name(f, "uint64_values", 0);
    assert_int_equal(x->type, FT_UINT64);
    assert_true(field_get_uint(x, 4) == UINT64_MAX);
    x = by_name(f, "uint32_values", 0);
    assert_true(field_get_uint(x, 4) == UINT32_MAX);

    x = by_name(f, "float32_values", 0);
    assert_int_equal(x->type, FT_FLOAT32);
    assert_true((float)field_get_float(x, 0) == 1e-45f);
    assert_true((float)field_get_float(x, 4) == 3.4028235e38f);
    x = by_name(f, "float32_values_nans", 0); /* NaN, +Inf, 1, -Inf, 0 */
    assert_true(isnan(field_get_float(x, 0)));
    assert_true(isinf(field_get_float(x, 1)) && field_get_float(x, 1) > 0);
    assert_true(field_get_float(x, 2) == 1.0);
    assert_true(isinf(field_get_float(x, 3)) && field_get_float(x, 3) < 0);
    x = by_name(f, "float64_values", 0);
    assert_true(field_get_float(x, 0) == 5e-324);
    assert_true(field_get_float(x, 4) == 1.7976931348623157e308);
    x = by_name(f, "nullable_float64_values_nans", 0); /* -Inf, 0, null, NaN, +Inf */
    assert_true(isinf(field_get_float(x, 0)) && field_get_float(x, 0) < 0);
    assert_true(field_is_null(x, 2));
    assert_true(isnan(field_get_float(x, 3)));
    assert_true(isinf(field_get_float(x, 4)) && field_get_float(x, 4) > 0);

    x = by_name(f, "nullable_bool_values", 0);
    assert_int_equal(x->type, FT_BOOL);
    assert_true(field_get_bool(x, 0));
    assert_false(field_get_bool(x, 1));
    assert_true(field_is_null(x, 2));

    x = by_name(f, "timestamps", 0);
    assert_int_equal(x->type, FT_TIME);
    assert_string_equal(x->config_json, "{\"interval\":1000}");
    assert_true(field_get_int(x, 0) == 0);
    assert_true(field_get_int(x, 1) == 1568039445000LL * 1000000);
    assert_true(field_get_int(x, 3) == 9007199254740991LL);
    assert_true(field_get_int(x, 4) == INT64_MAX);
    x = by_name(f, "timestamps", 1);
    assert_null(x->config_json);
    assert_true(field_get_int(x, 2) == 1568039450000LL * 1000000);
    x = by_name(f, "nullable_timestamps", 0);
    assert_true(field_is_null(x, 2));

    x = by_name(f, "json", 0);
    assert_int_equal(x->type, FT_JSON);
    s = field_get_bytes(x, 1, &n);
    assert_int_equal(n, 7);
    assert_memory_equal(s, "[1,2,3]", 7);
    x = by_name(f, "nullable_json", 0);
    assert_true(field_is_null(x, 2));

    x = by_name(f, "enum", 0);
    assert_int_equal(x->type, FT_ENUM);
    assert_string_equal(x->config_json, "{\"type\":{\"enum\":{\"text\":[\"\",\"ONE\",\"TWO\",\"THREE\"]}}}");
    assert_int_equal(field_get_uint(x, 0), 1);
    assert_int_equal(field_get_uint(x, 1), 2);
    x = by_name(f, "nullable_enum", 0);
    assert_int_equal(x->type, FT_ENUM);
    assert_true(field_is_null(x, 2));
    assert_int_equal(field_get_uint(x, 3), 3);
    assert_int_equal(field_get_uint(x, 4), 0);
    x = by_name(f, "uint16_values", 0);
    assert_int_equal(x->type, FT_UINT16); /* uint16 without tstype enum stays uint16 */

    /* The whole frame equals the golden JSON read by our JSON reader ... */
    size_t jlen;
    char *json = (char *)slurp(TESTDATA_DIR "/all_types.golden.json", &jlen);
    frame_t *fj;
    char err[256];
    if (frame_from_json(json, &fj, err, sizeof err) != 0) fail_msg("golden JSON: %s", err);
    assert_same_frame(fj, f);
    /* ... and our writer's file for it reads back the same. */
    buf_t out;
    write_ok(fj, &out);
    ar_file ours;
    parse_ok(bytes(&out), out.len, &ours);
    check_structure(bytes(&out), out.len, &ours);
    frame_t *back = read_back(&out);
    assert_same_frame(f, back);
    frame_free(back);
    ar_file_free(&ours);
    buf_free(&out);
    frame_free(fj);
    free(json);
    frame_free(f);
    ar_file_free(&af);
    free(p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(minimal_time_series_layout),
        cmocka_unit_test(zero_rows_zero_batches),
        cmocka_unit_test(zero_fields),
        cmocka_unit_test(validity_buffers),
        cmocka_unit_test(schema_and_field_metadata),
        cmocka_unit_test(round_trip_every_type),
        cmocka_unit_test(appends_to_a_non_empty_buffer),
        cmocka_unit_test(failed_builder_refused),
        cmocka_unit_test(reader_rejects_damage),
        cmocka_unit_test(golden_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
