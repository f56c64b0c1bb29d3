/* The frame model: builders for every type, lazy validity, range checks,
 * sorting, row agreement and the type name tables. */
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

static bool bit(const col_buf *b, size_t i) { return (b->data[i >> 3] >> (i & 7)) & 1; }

static int32_t offset_at(const frame_field *f, size_t i) {
    int32_t v;
    memcpy(&v, f->offsets.data + 4 * i, 4);
    return v;
}

static void builders_every_type(void **state) {
    (void)state;
    frame_t *f = frame_new("f", "A");
    assert_non_null(f);
    frame_field *i8 = frame_add_field(f, "i8", FT_INT8, false);
    frame_field *i16 = frame_add_field(f, "i16", FT_INT16, false);
    frame_field *i32 = frame_add_field(f, "i32", FT_INT32, false);
    frame_field *i64 = frame_add_field(f, "i64", FT_INT64, false);
    frame_field *u8 = frame_add_field(f, "u8", FT_UINT8, false);
    frame_field *u16 = frame_add_field(f, "u16", FT_UINT16, false);
    frame_field *u32 = frame_add_field(f, "u32", FT_UINT32, false);
    frame_field *u64 = frame_add_field(f, "u64", FT_UINT64, false);
    frame_field *f32 = frame_add_field(f, "f32", FT_FLOAT32, false);
    frame_field *f64 = frame_add_field(f, "f64", FT_FLOAT64, false);
    frame_field *bo = frame_add_field(f, "b", FT_BOOL, false);
    frame_field *st = frame_add_field(f, "s", FT_STRING, false);
    frame_field *tm = frame_add_field(f, "t", FT_TIME, false);
    frame_field *js = frame_add_field(f, "j", FT_JSON, false);
    frame_field *en = frame_add_field(f, "e", FT_ENUM, false);
    assert_int_equal(f->nfields, 15);
    for (size_t i = 0; i < f->nfields; i++) assert_non_null(f->fields[i]);
    /* A fresh string/json field holds the first offset (0) already. */
    assert_int_equal(st->offsets.len, 4);
    assert_int_equal(offset_at(st, 0), 0);
    assert_int_equal(js->offsets.len, 4);
    assert_int_equal(i8->offsets.len, 0);

    assert_int_equal(field_append_int(i8, -128), 0);
    assert_int_equal(field_append_int(i8, 127), 0);
    assert_int_equal(field_append_int(i16, INT16_MIN), 0);
    assert_int_equal(field_append_int(i16, INT16_MAX), 0);
    assert_int_equal(field_append_int(i32, INT32_MIN), 0);
    assert_int_equal(field_append_uint(i32, INT32_MAX), 0); /* uint into a signed field, in range */
    assert_int_equal(field_append_int(i64, INT64_MIN), 0);
    assert_int_equal(field_append_uint(i64, (uint64_t)INT64_MAX), 0);
    assert_int_equal(field_append_uint(u8, 0), 0);
    assert_int_equal(field_append_int(u8, 255), 0); /* non-negative int into unsigned */
    assert_int_equal(field_append_uint(u16, 0), 0);
    assert_int_equal(field_append_uint(u16, UINT16_MAX), 0);
    assert_int_equal(field_append_uint(u32, 7), 0);
    assert_int_equal(field_append_uint(u32, UINT32_MAX), 0);
    assert_int_equal(field_append_uint(u64, 1), 0);
    assert_int_equal(field_append_uint(u64, UINT64_MAX), 0);
    assert_int_equal(field_append_float(f32, 0.1), 0);
    assert_int_equal(field_append_float(f32, -INFINITY), 0);
    assert_int_equal(field_append_float(f64, 0.1), 0);
    assert_int_equal(field_append_float(f64, NAN), 0);
    assert_int_equal(field_append_bool(bo, true), 0);
    assert_int_equal(field_append_bool(bo, false), 0);
    assert_int_equal(field_append_bytes(st, "héllo", strlen("héllo")), 0);
    assert_int_equal(field_append_bytes(st, "", 0), 0);
    assert_int_equal(field_append_int(tm, 1700000000123456789LL), 0);
    assert_int_equal(field_append_int(tm, -1), 0);
    assert_int_equal(field_append_bytes(js, "{\"a\":1}", 7), 0);
    assert_int_equal(field_append_bytes(js, "[1,2]", 5), 0);
    assert_int_equal(field_append_uint(en, 3), 0);
    assert_int_equal(field_append_int(en, 65535), 0);

    assert_int_equal(frame_rows(f), 2);
    for (size_t i = 0; i < f->nfields; i++) {
        const frame_field *x = f->fields[i];
        assert_int_equal(x->rows, 2);
        assert_int_equal(x->null_count, 0);
        assert_null(x->validity.data);
        assert_false(x->failed);
        assert_false(field_is_null(x, 0));
        size_t w = field_type_width(x->type);
        if (w) assert_int_equal(x->values.len, 2 * w);
    }
    assert_int_equal(field_get_int(i8, 0), -128);
    assert_int_equal(field_get_int(i8, 1), 127);
    assert_int_equal(field_get_int(i16, 0), INT16_MIN);
    assert_int_equal(field_get_int(i32, 0), INT32_MIN);
    assert_int_equal(field_get_int(i32, 1), INT32_MAX);
    assert_true(field_get_int(i64, 0) == INT64_MIN);
    assert_true(field_get_int(i64, 1) == INT64_MAX);
    assert_int_equal(field_get_uint(u8, 1), 255);
    assert_int_equal(field_get_uint(u16, 1), UINT16_MAX);
    assert_int_equal(field_get_uint(u32, 1), UINT32_MAX);
    assert_true(field_get_uint(u64, 1) == UINT64_MAX);
    assert_true(field_get_float(f32, 0) == (double)0.1f);
    assert_true(isinf(field_get_float(f32, 1)) && field_get_float(f32, 1) < 0);
    assert_true(field_get_float(f64, 0) == 0.1);
    assert_true(isnan(field_get_float(f64, 1)));
    assert_true(field_get_bool(bo, 0));
    assert_false(field_get_bool(bo, 1));
    assert_int_equal(bo->values.len, 1);
    assert_int_equal(bo->values.data[0], 0x01); /* bit-packed, LSB first */
    size_t len;
    const char *s = field_get_bytes(st, 0, &len);
    assert_int_equal(len, strlen("héllo"));
    assert_memory_equal(s, "héllo", len);
    field_get_bytes(st, 1, &len);
    assert_int_equal(len, 0);
    assert_int_equal(st->offsets.len, 12);
    assert_int_equal(offset_at(st, 1), (int32_t)strlen("héllo"));
    assert_int_equal(offset_at(st, 2), (int32_t)strlen("héllo"));
    assert_true(field_get_int(tm, 0) == 1700000000123456789LL);
    assert_true(field_get_int(tm, 1) == -1);
    s = field_get_bytes(js, 1, &len);
    assert_int_equal(len, 5);
    assert_memory_equal(s, "[1,2]", 5);
    assert_int_equal(field_get_uint(en, 0), 3);
    assert_int_equal(field_get_uint(en, 1), 65535);
    frame_free(f);
}

static void bool_packing_many_rows(void **state) {
    (void)state;
    frame_t *f = frame_new(NULL, NULL);
    assert_string_equal(f->name, "");
    assert_string_equal(f->ref_id, "");
    frame_field *b = frame_add_field(f, NULL, FT_BOOL, true);
    assert_string_equal(b->name, "");
    for (size_t i = 0; i < 100; i++) {
        if (i % 7 == 3) assert_int_equal(field_append_null(b), 0);
        else assert_int_equal(field_append_bool(b, i % 3 == 0), 0);
    }
    assert_int_equal(b->rows, 100);
    assert_int_equal(b->values.len, 13);
    assert_int_equal(b->validity.len, 13);
    for (size_t i = 0; i < 100; i++) {
        assert_int_equal(field_is_null(b, i), i % 7 == 3);
        /* null slots hold false */
        assert_int_equal(field_get_bool(b, i), i % 7 != 3 && i % 3 == 0);
    }
    frame_free(f);
}

/* The bitmap appears with the first null and back-fills earlier rows. */
static void lazy_validity(void **state) {
    (void)state;
    static const field_type types[] = {FT_INT8, FT_INT64, FT_UINT16, FT_FLOAT32, FT_FLOAT64, FT_BOOL,
                                       FT_STRING, FT_TIME, FT_JSON, FT_ENUM};
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
        frame_t *f = frame_new("", "");
        frame_field *fld = frame_add_field(f, "x", types[k], true);
        assert_non_null(fld);
        for (size_t i = 0; i < 11; i++) {
            int r;
            switch (types[k]) {
            case FT_FLOAT32: case FT_FLOAT64: r = field_append_float(fld, (double)i); break;
            case FT_BOOL: r = field_append_bool(fld, true); break;
            case FT_STRING: case FT_JSON: r = field_append_bytes(fld, "1", 1); break;
            default: r = field_append_uint(fld, i); break;
            }
            assert_int_equal(r, 0);
        }
        assert_null(fld->validity.data);
        assert_int_equal(fld->validity.len, 0);
        assert_int_equal(fld->null_count, 0);
        size_t values_before = fld->values.len;

        assert_int_equal(field_append_null(fld), 0); /* row 11 */
        assert_non_null(fld->validity.data);
        assert_int_equal(fld->validity.len, 2);
        for (size_t i = 0; i < 11; i++) assert_true(bit(&fld->validity, i));
        assert_false(bit(&fld->validity, 11));
        assert_int_equal(fld->null_count, 1);
        assert_int_equal(fld->rows, 12);
        /* the null slot takes room too: a zero value, or a repeated offset */
        size_t w = field_type_width(types[k]);
        if (w) {
            assert_int_equal(fld->values.len, values_before + w);
            for (size_t j = 0; j < w; j++) assert_int_equal(fld->values.data[11 * w + j], 0);
        }
        if (types[k] == FT_STRING || types[k] == FT_JSON) {
            assert_int_equal(fld->values.len, values_before);
            assert_int_equal(offset_at(fld, 12), offset_at(fld, 11));
        }
        for (size_t i = 12; i < 40; i++) {
            int r = i % 5 == 0 ? field_append_null(fld)
                    : types[k] == FT_BOOL ? field_append_bool(fld, false)
                    : (types[k] == FT_STRING || types[k] == FT_JSON) ? field_append_bytes(fld, "ab", 2)
                    : (types[k] == FT_FLOAT32 || types[k] == FT_FLOAT64) ? field_append_float(fld, 1.5)
                    : field_append_uint(fld, 9);
            assert_int_equal(r, 0);
        }
        assert_int_equal(fld->rows, 40);
        assert_int_equal(fld->validity.len, 5);
        assert_int_equal(fld->null_count, 6); /* 11, 15, 20, 25, 30, 35 */
        for (size_t i = 0; i < 40; i++) {
            bool null = i == 11 || (i >= 12 && i % 5 == 0);
            assert_int_equal(field_is_null(fld, i), null);
            assert_int_equal(bit(&fld->validity, i), !null);
        }
        frame_free(f);
    }
}

static void first_row_null_and_not_nullable(void **state) {
    (void)state;
    frame_t *f = frame_new("", "");
    frame_field *a = frame_add_field(f, "a", FT_INT32, true);
    assert_int_equal(field_append_null(a), 0);
    assert_int_equal(a->validity.len, 1);
    assert_false(bit(&a->validity, 0));
    assert_int_equal(field_append_int(a, 5), 0);
    assert_true(bit(&a->validity, 1));
    assert_true(field_is_null(a, 0));
    assert_false(field_is_null(a, 1));
    assert_int_equal(field_get_int(a, 1), 5);

    frame_field *b = frame_add_field(f, "b", FT_INT32, false);
    assert_int_equal(field_append_int(b, 1), 0);
    assert_int_equal(field_append_null(b), -1);
    assert_int_equal(b->rows, 1);
    assert_int_equal(b->null_count, 0);
    assert_null(b->validity.data);
    assert_false(b->failed);
    frame_free(f);
}

static void range_checks(void **state) {
    (void)state;
    frame_t *f = frame_new("", "");
    frame_field *i8 = frame_add_field(f, "", FT_INT8, true);
    frame_field *i16 = frame_add_field(f, "", FT_INT16, true);
    frame_field *i32 = frame_add_field(f, "", FT_INT32, true);
    frame_field *i64 = frame_add_field(f, "", FT_INT64, true);
    frame_field *u8 = frame_add_field(f, "", FT_UINT8, true);
    frame_field *u16 = frame_add_field(f, "", FT_UINT16, true);
    frame_field *u32 = frame_add_field(f, "", FT_UINT32, true);
    frame_field *u64 = frame_add_field(f, "", FT_UINT64, true);
    frame_field *en = frame_add_field(f, "", FT_ENUM, true);
    frame_field *tm = frame_add_field(f, "", FT_TIME, true);
    frame_field *fl = frame_add_field(f, "", FT_FLOAT64, true);
    frame_field *bo = frame_add_field(f, "", FT_BOOL, true);
    frame_field *st = frame_add_field(f, "", FT_STRING, true);
    frame_field *js = frame_add_field(f, "", FT_JSON, true);

    assert_int_equal(field_append_int(i8, 300), -1);
    assert_int_equal(field_append_int(i8, 128), -1);
    assert_int_equal(field_append_int(i8, -129), -1);
    assert_int_equal(field_append_uint(i8, 200), -1);
    assert_int_equal(field_append_int(i16, 32768), -1);
    assert_int_equal(field_append_int(i16, -32769), -1);
    assert_int_equal(field_append_int(i32, 2147483648LL), -1);
    assert_int_equal(field_append_int(i32, -2147483649LL), -1);
    assert_int_equal(field_append_uint(i64, (uint64_t)INT64_MAX + 1), -1);
    assert_int_equal(field_append_uint(tm, UINT64_MAX), -1);
    assert_int_equal(field_append_int(u8, 256), -1);
    assert_int_equal(field_append_int(u8, -1), -1);
    assert_int_equal(field_append_uint(u16, 65536), -1);
    assert_int_equal(field_append_uint(en, 65536), -1);
    assert_int_equal(field_append_int(en, -1), -1);
    assert_int_equal(field_append_uint(u32, 4294967296ULL), -1);
    assert_int_equal(field_append_int(u64, -1), -1);
    assert_int_equal(field_append_int(u64, INT64_MIN), -1);
    /* the wrong family */
    assert_int_equal(field_append_int(fl, 1), -1);
    assert_int_equal(field_append_uint(fl, 1), -1);
    assert_int_equal(field_append_float(i32, 1.0), -1);
    assert_int_equal(field_append_float(tm, 1.0), -1);
    assert_int_equal(field_append_bool(i8, true), -1);
    assert_int_equal(field_append_bytes(i8, "1", 1), -1);
    assert_int_equal(field_append_int(bo, 1), -1);
    assert_int_equal(field_append_int(st, 1), -1);
    assert_int_equal(field_append_float(js, 1), -1);
    assert_int_equal(field_append_bool(st, true), -1);
    assert_int_equal(field_append_bytes(bo, "x", 1), -1);
    /* refusals leave no trace */
    for (size_t i = 0; i < f->nfields; i++) {
        assert_int_equal(f->fields[i]->rows, 0);
        assert_int_equal(f->fields[i]->values.len, 0);
        assert_null(f->fields[i]->validity.data);
        assert_false(f->fields[i]->failed);
    }
    assert_int_equal(frame_rows(f), 0);
    /* the edges themselves fit */
    assert_int_equal(field_append_int(i8, -128), 0);
    assert_int_equal(field_append_uint(i8, 127), 0);
    assert_int_equal(field_append_uint(u32, UINT32_MAX), 0);
    assert_int_equal(field_append_uint(en, 65535), 0);
    assert_null(frame_add_field(f, "bad", FT_COUNT, false));
    assert_null(frame_add_field(f, "bad", (field_type)99, false));
    assert_int_equal(f->nfields, 14);
    frame_free(f);
}

static void metadata_setters(void **state) {
    (void)state;
    frame_t *f = frame_new("n", "A");
    frame_field *x = frame_add_field(f, "x", FT_INT64, false);
    assert_null(f->meta_json);
    assert_null(x->labels_json);
    assert_null(x->config_json);
    assert_int_equal(frame_set_meta(f, "{\"a\":1}"), 0);
    assert_int_equal(frame_set_meta(f, "{\"b\":2}"), 0);
    assert_string_equal(f->meta_json, "{\"b\":2}");
    assert_int_equal(frame_set_meta(f, NULL), 0);
    assert_null(f->meta_json);
    assert_int_equal(frame_set_ref_id(f, "B"), 0);
    assert_string_equal(f->ref_id, "B");
    assert_int_equal(frame_set_ref_id(f, NULL), 0);
    assert_string_equal(f->ref_id, "");
    assert_int_equal(field_set_labels(x, "{\"h\":\"a\"}"), 0);
    assert_int_equal(field_set_config(x, "{}"), 0);
    assert_string_equal(x->labels_json, "{\"h\":\"a\"}");
    assert_string_equal(x->config_json, "{}");
    assert_int_equal(field_set_labels(x, NULL), 0);
    assert_null(x->labels_json);
    frame_free(f);
    frame_free(NULL);
}

static void rows_agreement(void **state) {
    (void)state;
    frame_t *f = frame_new("", "");
    assert_int_equal(frame_rows(f), 0);
    frame_field *a = frame_add_field(f, "a", FT_INT64, false);
    frame_field *b = frame_add_field(f, "b", FT_STRING, true);
    assert_int_equal(frame_rows(f), 0);
    field_append_int(a, 1);
    assert_int_equal(frame_rows(f), -1);
    field_append_null(b);
    assert_int_equal(frame_rows(f), 1);
    field_append_int(a, 2);
    field_append_int(a, 3);
    field_append_bytes(b, "x", 1);
    assert_int_equal(frame_rows(f), -1);
    /* Encoders refuse a frame whose fields disagree and leave out untouched. */
    buf_t out;
    buf_init(&out);
    buf_append(&out, "keep", 4);
    assert_int_equal(arrow_write_frame(f, &out), -1);
    assert_int_equal(out.len, 4);
    assert_int_equal(frame_to_json(f, &out), -1);
    buf_free(&out);
    field_append_null(b);
    assert_int_equal(frame_rows(f), 3);
    frame_free(f);
}

static void type_name_tables(void **state) {
    (void)state;
    static const struct {
        field_type t;
        const char *go, *ts;
        size_t width;
    } want[] = {
        {FT_INT8, "int8", "number", 1},       {FT_INT16, "int16", "number", 2},
        {FT_INT32, "int32", "number", 4},     {FT_INT64, "int64", "number", 8},
        {FT_UINT8, "uint8", "number", 1},     {FT_UINT16, "uint16", "number", 2},
        {FT_UINT32, "uint32", "number", 4},   {FT_UINT64, "uint64", "number", 8},
        {FT_FLOAT32, "float32", "number", 4}, {FT_FLOAT64, "float64", "number", 8},
        {FT_BOOL, "bool", "boolean", 0},      {FT_STRING, "string", "string", 0},
        {FT_TIME, "time.Time", "time", 8},    {FT_JSON, "json.RawMessage", "other", 0},
        {FT_ENUM, "enum", "enum", 2},
    };
    assert_int_equal(sizeof want / sizeof want[0], FT_COUNT);
    for (size_t i = 0; i < FT_COUNT; i++) {
        assert_int_equal(want[i].t, (field_type)i);
        assert_string_equal(field_type_go_name(want[i].t), want[i].go);
        assert_string_equal(field_type_ts_name(want[i].t), want[i].ts);
        assert_int_equal(field_type_width(want[i].t), want[i].width);
        field_type back = FT_COUNT;
        assert_int_equal(field_type_from_go_name(want[i].go, &back), 0);
        assert_int_equal(back, want[i].t);
    }
    field_type t;
    assert_int_equal(field_type_from_go_name("*int8", &t), -1);
    assert_int_equal(field_type_from_go_name("number", &t), -1);
    assert_int_equal(field_type_from_go_name("", &t), -1);
    assert_int_equal(field_type_from_go_name("Int8", &t), -1);
    assert_string_equal(field_type_go_name(FT_COUNT), "?");
    assert_string_equal(field_type_ts_name(FT_COUNT), "other");
    assert_int_equal(field_type_width(FT_COUNT), 0);
}

/* ---- sorting ------------------------------------------------------------ */

typedef struct {
    double key;
    int seq;
} sort_row;

static void sort_stable_and_permutes_all(void **state) {
    (void)state;
    static const double keys[] = {5, 3, 5, -1, 3, 0, 9, 3, -1, 5, 2.5, 0};
    enum { N = sizeof keys / sizeof keys[0] };
    frame_t *f = frame_new("s", "A");
    frame_field *seq = frame_add_field(f, "seq", FT_INT32, false);
    frame_field *s = frame_add_field(f, "str", FT_STRING, true);
    frame_field *key = frame_add_field(f, "key", FT_FLOAT64, false);
    frame_field *b = frame_add_field(f, "b", FT_BOOL, true);
    frame_field *j = frame_add_field(f, "j", FT_JSON, false);
    frame_field *u = frame_add_field(f, "u", FT_UINT64, true);
    frame_field *f32 = frame_add_field(f, "f32", FT_FLOAT32, false);
    assert_int_equal(field_set_labels(s, "{\"k\":\"v\"}"), 0);
    assert_int_equal(field_set_config(u, "{\"unit\":\"ms\"}"), 0);
    char tmp[32];
    for (int i = 0; i < N; i++) {
        assert_int_equal(field_append_int(seq, i), 0);
        snprintf(tmp, sizeof tmp, "row%d", i);
        assert_int_equal(i % 4 == 1 ? field_append_null(s) : field_append_bytes(s, tmp, strlen(tmp)), 0);
        assert_int_equal(field_append_float(key, keys[i]), 0);
        assert_int_equal(i % 3 == 2 ? field_append_null(b) : field_append_bool(b, i % 2), 0);
        snprintf(tmp, sizeof tmp, "[%d]", i);
        assert_int_equal(field_append_bytes(j, tmp, strlen(tmp)), 0);
        assert_int_equal(i == 4 ? field_append_null(u) : field_append_uint(u, UINT64_MAX - (uint64_t)i), 0);
        assert_int_equal(field_append_float(f32, i * 0.5), 0);
    }
    size_t nulls_s = s->null_count, nulls_b = b->null_count, nulls_u = u->null_count;
    assert_int_equal(frame_sort_by(f, 2), 0);
    assert_int_equal(frame_rows(f), N);
    /* reference: stable insertion sort of (key, original index) */
    sort_row rows[N];
    for (int i = 0; i < N; i++) rows[i] = (sort_row){keys[i], i};
    for (int i = 1; i < N; i++)
        for (int k = i; k > 0 && rows[k].key < rows[k - 1].key; k--) {
            sort_row t = rows[k]; rows[k] = rows[k - 1]; rows[k - 1] = t;
        }
    for (int r = 0; r < N; r++) {
        int i = rows[r].seq;
        assert_int_equal(field_get_int(seq, r), i); /* stable: equal keys keep their order */
        assert_true(field_get_float(key, r) == keys[i]);
        assert_int_equal(field_is_null(s, r), i % 4 == 1);
        if (i % 4 != 1) {
            size_t len;
            const char *p = field_get_bytes(s, r, &len);
            snprintf(tmp, sizeof tmp, "row%d", i);
            assert_int_equal(len, strlen(tmp));
            assert_memory_equal(p, tmp, len);
        }
        assert_int_equal(field_is_null(b, r), i % 3 == 2);
        if (i % 3 != 2) assert_int_equal(field_get_bool(b, r), i % 2);
        size_t len;
        const char *p = field_get_bytes(j, r, &len);
        snprintf(tmp, sizeof tmp, "[%d]", i);
        assert_int_equal(len, strlen(tmp));
        assert_memory_equal(p, tmp, len);
        assert_int_equal(field_is_null(u, r), i == 4);
        if (i != 4) assert_true(field_get_uint(u, r) == UINT64_MAX - (uint64_t)i);
        assert_true(field_get_float(f32, r) == i * 0.5);
    }
    assert_int_equal(s->null_count, nulls_s);
    assert_int_equal(b->null_count, nulls_b);
    assert_int_equal(u->null_count, nulls_u);
    assert_string_equal(s->name, "str");
    assert_string_equal(s->labels_json, "{\"k\":\"v\"}");
    assert_string_equal(u->config_json, "{\"unit\":\"ms\"}");
    assert_true(s->nullable);
    assert_false(j->nullable);

    /* The sorted frame survives the Arrow round trip. */
    buf_t out;
    buf_init(&out);
    assert_int_equal(arrow_write_frame(f, &out), 0);
    frame_t *back;
    char err[256], diff[256];
    if (ar_read_frame((const uint8_t *)out.data, out.len, &back, err, sizeof err) != 0) fail_msg("%s", err);
    if (ar_frame_diff(f, back, diff, sizeof diff) != 0) fail_msg("%s", diff);
    frame_free(back);
    buf_free(&out);

    /* Sorting again is a no-op; a bad key index is refused. */
    assert_int_equal(frame_sort_by(f, 2), 0);
    assert_int_equal(field_get_int(seq, 0), rows[0].seq);
    assert_int_equal(frame_sort_by(f, 7), -1);
    frame_free(f);
}

static void sort_keys_of_each_family(void **state) {
    (void)state;
    /* time (int64 ns, negatives), uint64 beyond INT64_MAX, int8, enum */
    {
        frame_t *f = frame_new("", "");
        frame_field *t = frame_add_field(f, "t", FT_TIME, false);
        frame_field *v = frame_add_field(f, "v", FT_FLOAT64, true);
        static const int64_t ts[] = {3000, -5, INT64_MAX, INT64_MIN, 0, 3000};
        for (int i = 0; i < 6; i++) {
            field_append_int(t, ts[i]);
            if (i == 2) field_append_null(v);
            else field_append_float(v, i);
        }
        assert_int_equal(frame_sort_by(f, 0), 0);
        static const int64_t want[] = {INT64_MIN, -5, 0, 3000, 3000, INT64_MAX};
        static const int order[] = {3, 1, 4, 0, 5, 2};
        for (int r = 0; r < 6; r++) {
            assert_true(field_get_int(t, r) == want[r]);
            assert_int_equal(field_is_null(v, r), order[r] == 2);
            if (order[r] != 2) assert_true(field_get_float(v, r) == order[r]);
        }
        frame_free(f);
    }
    {
        frame_t *f = frame_new("", "");
        frame_field *u = frame_add_field(f, "u", FT_UINT64, false);
        frame_field *s = frame_add_field(f, "s", FT_STRING, false);
        static const uint64_t us[] = {UINT64_MAX, 1, (uint64_t)INT64_MAX + 1, 0};
        for (int i = 0; i < 4; i++) {
            field_append_uint(u, us[i]);
            char c = (char)('a' + i);
            field_append_bytes(s, &c, 1);
        }
        assert_int_equal(frame_sort_by(f, 0), 0);
        static const char want[] = "dbca";
        for (int r = 0; r < 4; r++) {
            size_t len;
            assert_int_equal(*field_get_bytes(s, r, &len), want[r]);
        }
        assert_true(field_get_uint(u, 3) == UINT64_MAX);
        frame_free(f);
    }
    {
        frame_t *f = frame_new("", "");
        frame_field *k = frame_add_field(f, "k", FT_INT8, false);
        frame_field *e = frame_add_field(f, "e", FT_ENUM, false);
        for (int i = 0; i < 300; i++) {
            field_append_int(k, (i * 37) % 256 - 128);
            field_append_uint(e, (uint64_t)i);
        }
        assert_int_equal(frame_sort_by(f, 0), 0);
        for (int r = 1; r < 300; r++) {
            assert_true(field_get_int(k, r - 1) <= field_get_int(k, r));
            if (field_get_int(k, r - 1) == field_get_int(k, r))
                assert_true(field_get_uint(e, r - 1) < field_get_uint(e, r));
        }
        assert_int_equal(frame_sort_by(f, 1), 0); /* back to the original order */
        for (int r = 0; r < 300; r++) assert_int_equal(field_get_int(k, r), (r * 37) % 256 - 128);
        frame_free(f);
    }
    {
        /* empty and single-row frames */
        frame_t *f = frame_new("", "");
        frame_field *t = frame_add_field(f, "t", FT_TIME, false);
        assert_int_equal(frame_sort_by(f, 0), 0);
        field_append_int(t, 1);
        assert_int_equal(frame_sort_by(f, 0), 0);
        assert_int_equal(frame_sort_by(f, 1), -1);
        frame_free(f);
    }
}

/* A NUL inside a string value, a JSON value and a label survives the JSON
 * frame format both ways (it was cut at the NUL when read back). */
static void json_keeps_nul_in_strings(void **state) {
    (void)state;
    frame_t *f = frame_new("n", "A");
    frame_field *s = frame_add_field(f, "s", FT_STRING, false);
    frame_field *j = frame_add_field(f, "j", FT_JSON, false);
    assert_int_equal(field_set_labels(s, "{\"k\":\"a\\u0000b\"}"), 0);
    assert_int_equal(field_append_bytes(s, "caf\0e", 5), 0);
    assert_int_equal(field_append_bytes(j, "{\"x\":\"1\\u00002\"}", 16), 0);
    buf_t out;
    buf_init(&out);
    assert_int_equal(frame_to_json(f, &out), 0);
    buf_append(&out, "", 1);
    assert_true(buf_ok(&out));
    frame_t *back = NULL;
    char err[256], msg[512];
    if (frame_from_json(out.data, &back, err, sizeof err) != 0) fail_msg("%s: %s", err, out.data);
    if (ar_frame_diff(f, back, msg, sizeof msg) != 0) fail_msg("%s", msg);
    size_t len;
    const char *v = field_get_bytes(back->fields[0], 0, &len);
    assert_int_equal(len, 5);
    assert_memory_equal(v, "caf\0e", 5);
    frame_free(back);
    buf_free(&out);
    frame_free(f);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(builders_every_type),
        cmocka_unit_test(bool_packing_many_rows),
        cmocka_unit_test(lazy_validity),
        cmocka_unit_test(first_row_null_and_not_nullable),
        cmocka_unit_test(range_checks),
        cmocka_unit_test(metadata_setters),
        cmocka_unit_test(rows_agreement),
        cmocka_unit_test(type_name_tables),
        cmocka_unit_test(sort_stable_and_permutes_all),
        cmocka_unit_test(sort_keys_of_each_family),
        cmocka_unit_test(json_keeps_nul_in_strings),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
