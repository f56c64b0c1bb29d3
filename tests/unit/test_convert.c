/* Backend answers → frames: each shape, each conversion rule, each error,
 * and the chunking property (any split gives byte-identical frames). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "frames/arrow.h"
#include "frames/convert.h"
#include "frames/frame_json.h"
#include "util/buf.h"

typedef struct {
    frame_t **frames;
    size_t n;
    char error[512];
} result_t;

/* Feeds body in pieces of `step` bytes (0 = whole). */
static int convert(const char *body, size_t step, result_t *out) {
    memset(out, 0, sizeof *out);
    conv_t *c = conv_new("A", "sine:3");
    assert_non_null(c);
    size_t len = strlen(body);
    int rc = 0;
    for (size_t off = 0; off < len && rc == 0; off += step ? step : len) {
        size_t n = step && len - off > step ? step : len - off;
        rc = conv_feed(c, (const uint8_t *)body + off, n);
    }
    if (rc == 0) rc = conv_finish(c);
    if (rc != 0) snprintf(out->error, sizeof out->error, "%s", conv_error(c));
    else out->frames = conv_take_frames(c, &out->n);
    conv_free(c);
    return rc;
}

static void result_free(result_t *r) {
    for (size_t i = 0; i < r->n; i++) frame_free(r->frames[i]);
    free(r->frames);
}

static void expect_error(const char *body, const char *words) {
    result_t r;
    assert_int_equal(convert(body, 0, &r), -1);
    if (!strstr(r.error, words)) fail_msg("error \"%s\" lacks \"%s\" (body %s)", r.error, words, body);
    assert_null(r.frames);
    /* The same error whatever the chunking. */
    result_t r1;
    assert_int_equal(convert(body, 1, &r1), -1);
    if (!strstr(r1.error, words)) fail_msg("byte-by-byte: error \"%s\" lacks \"%s\"", r1.error, words);
}

static void series_basic(void **state) {
    (void)state;
    result_t r;
    const char *body = "[{\"target\":\"cpu\",\"datapoints\":[[1.5,1000],[null,2000],[\"NaN\",3000],[\"+Inf\",4000],"
                       "[\"-Inf\",5000],[7,6000.5]],\"tags\":{\"host\":\"a\",\"dc\":\"x\",\"n\":3,\"b\":true},"
                       "\"unit\":\"ms\",\"title\":\"CPU\"}]";
    assert_int_equal(convert(body, 0, &r), 0);
    assert_int_equal(r.n, 1);
    frame_t *f = r.frames[0];
    assert_string_equal(f->name, "cpu");
    assert_string_equal(f->ref_id, "A");
    assert_string_equal(f->meta_json,
                        "{\"type\":\"timeseries-multi\",\"typeVersion\":[0,1],\"executedQueryString\":\"sine:3\"}");
    assert_int_equal(f->nfields, 2);
    frame_field *t = f->fields[0], *v = f->fields[1];
    assert_string_equal(t->name, "Time");
    assert_int_equal(t->type, FT_TIME);
    assert_false(t->nullable);
    assert_string_equal(v->name, "Value");
    assert_int_equal(v->type, FT_FLOAT64);
    assert_true(v->nullable);
    assert_int_equal(t->rows, 6);
    assert_true(field_get_int(t, 0) == 1000000000LL);
    assert_true(field_get_int(t, 5) == 6000500000LL);
    assert_true(field_get_float(v, 0) == 1.5);
    assert_true(field_is_null(v, 1));
    assert_true(isnan(field_get_float(v, 2)));
    assert_true(isinf(field_get_float(v, 3)) && field_get_float(v, 3) > 0);
    assert_true(isinf(field_get_float(v, 4)) && field_get_float(v, 4) < 0);
    assert_string_equal(v->labels_json, "{\"b\":\"true\",\"dc\":\"x\",\"host\":\"a\",\"n\":\"3\"}");
    assert_string_equal(v->config_json, "{\"unit\":\"ms\",\"displayNameFromDS\":\"CPU\"}");
    result_free(&r);
}

static void series_sorted_and_points_alias(void **state) {
    (void)state;
    result_t r;
    assert_int_equal(convert("[{\"target\":\"s\",\"points\":[[3,3000],[1,1000],[2,2000]]}]", 0, &r), 0);
    frame_field *t = r.frames[0]->fields[0], *v = r.frames[0]->fields[1];
    for (size_t i = 0; i < 3; i++) {
        assert_true(field_get_int(t, i) == (int64_t)(i + 1) * 1000000000LL);
        assert_true(field_get_float(v, i) == (double)(i + 1));
    }
    assert_null(v->labels_json);
    result_free(&r);
}

static void empty_array_is_no_data(void **state) {
    (void)state;
    result_t r;
    assert_int_equal(convert(" [ ] ", 0, &r), 0);
    assert_int_equal(r.n, 0);
    result_free(&r);
}

static void table_declared_and_inferred(void **state) {
    (void)state;
    result_t r;
    const char *body = "[{\"type\":\"table\",\"columns\":[{\"text\":\"Time\",\"type\":\"time\"},{\"text\":\"host\"},"
                       "{\"text\":\"value\",\"type\":\"number\"},{\"text\":\"up\"},{\"text\":\"when\"},{\"text\":\"empty\"}],"
                       "\"rows\":[[1700000000000,\"a\",1,true,\"2026-11-25T10:00:00.5Z\",null],"
                       "[\"2026-11-25T10:00:01+01:00\",null,null,false,null,null],"
                       "[1700000002000,\"c\",\"NaN\",null,\"2026-11-25\"]]}]";
    assert_int_equal(convert(body, 0, &r), 0);
    assert_int_equal(r.n, 1);
    frame_t *f = r.frames[0];
    assert_int_equal(f->nfields, 6);
    assert_int_equal(frame_rows(f), 3);
    assert_int_equal(f->fields[0]->type, FT_TIME);
    assert_true(field_get_int(f->fields[0], 0) == 1700000000000000000LL);
    assert_true(field_get_int(f->fields[0], 1) == (1795600801LL - 3600) * 1000000000LL);
    assert_int_equal(f->fields[1]->type, FT_STRING);
    assert_true(field_is_null(f->fields[1], 1));
    assert_int_equal(f->fields[2]->type, FT_FLOAT64);
    assert_true(isnan(field_get_float(f->fields[2], 2)));
    assert_int_equal(f->fields[3]->type, FT_BOOL);
    assert_int_equal(f->fields[4]->type, FT_TIME); /* ISO strings → time */
    assert_true(field_get_int(f->fields[4], 0) == 1795600800500000000LL);
    assert_true(field_get_int(f->fields[4], 2) == 1795564800000000000LL);
    assert_int_equal(f->fields[5]->type, FT_FLOAT64); /* all null */
    assert_int_equal(f->fields[5]->null_count, 3);    /* the short row got a null */
    assert_string_equal(f->meta_json, "{\"executedQueryString\":\"sine:3\"}");
    result_free(&r);
}

static void table_time_named_column_from_numbers(void **state) {
    (void)state;
    result_t r;
    assert_int_equal(convert("[{\"columns\":[{\"text\":\"time\"},{\"text\":\"v\"}],\"rows\":[[1000,1],[2000,2]]}]", 0, &r), 0);
    assert_int_equal(r.frames[0]->fields[0]->type, FT_TIME);
    assert_true(field_get_int(r.frames[0]->fields[0], 1) == 2000000000LL);
    assert_int_equal(r.frames[0]->fields[1]->type, FT_FLOAT64);
    result_free(&r);
}

static void data_frame_element(void **state) {
    (void)state;
    result_t r;
    const char *body = "[{\"name\":\"df\",\"meta\":{\"type\":\"timeseries-wide\",\"typeVersion\":[0,1],\"custom\":{\"k\":[1,2.50,\"x\"]}},"
                       "\"fields\":[{\"name\":\"time\",\"type\":\"time\",\"values\":[1000,2000]},"
                       "{\"name\":\"v\",\"values\":[1,null],\"labels\":{\"z\":\"1\",\"a\":\"2\"},\"config\":{\"unit\":\"bytes\",\"min\":0}},"
                       "{\"name\":\"s\",\"type\":\"string\",\"values\":[\"x\",\"y\"]}]}]";
    assert_int_equal(convert(body, 0, &r), 0);
    frame_t *f = r.frames[0];
    assert_string_equal(f->name, "df");
    assert_string_equal(f->meta_json, "{\"type\":\"timeseries-wide\",\"typeVersion\":[0,1],\"custom\":{\"k\":[1,2.50,\"x\"]}}");
    assert_int_equal(f->nfields, 3);
    assert_int_equal(f->fields[0]->type, FT_TIME);
    assert_int_equal(f->fields[1]->type, FT_FLOAT64);
    assert_string_equal(f->fields[1]->labels_json, "{\"a\":\"2\",\"z\":\"1\"}");
    assert_string_equal(f->fields[1]->config_json, "{\"unit\":\"bytes\",\"min\":0}");
    assert_true(field_is_null(f->fields[1], 1));
    assert_int_equal(f->fields[2]->type, FT_STRING);
    result_free(&r);
}

static void mixed_elements(void **state) {
    (void)state;
    result_t r;
    const char *body = "[{\"target\":\"a\",\"datapoints\":[]},{\"columns\":[{\"text\":\"x\"}],\"rows\":[]},"
                       "{\"fields\":[]},{\"target\":\"b\",\"datapoints\":[[1,1]],\"extra\":{\"deep\":[[{}]]}}]";
    assert_int_equal(convert(body, 0, &r), 0);
    assert_int_equal(r.n, 4);
    assert_int_equal(frame_rows(r.frames[0]), 0);
    assert_int_equal(r.frames[1]->nfields, 1);
    assert_int_equal(r.frames[2]->nfields, 0);
    assert_string_equal(r.frames[3]->name, "b");
    result_free(&r);
}

static void errors_name_the_place(void **state) {
    (void)state;
    expect_error("", "empty response body");
    expect_error("{\"a\":1}", "must be a JSON array");
    expect_error("[1]", "element 0: expected an object");
    expect_error("[{\"target\":\"x\"}]", "element 0: unknown shape");
    expect_error("not json", "not valid JSON at byte");
    expect_error("[{\"target\":\"x\",\"datapoints\":[[1,2],[3]]}]", "element 0, datapoint 1: expected [value, timestamp]");
    expect_error("[{\"target\":\"x\",\"datapoints\":[[\"high\",2]]}]", "element 0, datapoint 0: value must be a number");
    expect_error("[{\"target\":\"x\",\"datapoints\":[[1,\"noon\"]]}]", "timestamp must be epoch milliseconds");
    expect_error("[{\"target\":\"x\",\"datapoints\":{}}]", "datapoints must be an array");
    expect_error("[{\"target\":5,\"datapoints\":[]}]", "target must be a string");
    expect_error("[{\"datapoints\":[],\"rows\":[]}]", "mixes shapes");
    expect_error("[{\"columns\":[{\"text\":\"v\"}],\"rows\":[[1],[\"two\"]]}]",
                 "element 0, column 0 (v), row 1: expected a number, found a string");
    expect_error("[{\"columns\":[{\"text\":\"s\",\"type\":\"string\"}],\"rows\":[[3]]}]",
                 "column 0 (s), row 0: expected a string, found a number");
    expect_error("[{\"columns\":[{\"text\":\"v\",\"type\":\"color\"}],\"rows\":[]}]", "unknown type \"color\"");
    expect_error("[{\"columns\":[{\"text\":\"v\"}],\"rows\":[[[1]]]}]", "nested JSON");
    expect_error("[{\"fields\":[{\"name\":\"a\",\"values\":[1,2]},{\"name\":\"b\",\"values\":[1]}]}]",
                 "field 1 (b) has 1 values, other fields have 2");
    expect_error("[{\"fields\":[{\"name\":\"a\",\"values\":[1]}],\"meta\":[1]}]", "meta must be an object");
    expect_error("[{\"target\":\"x\",\"datapoints\":[[1,2]]}", "truncated");
    expect_error("[{\"target\":\"x\",\"datapoints\":[[1,2]]}] [", "not valid JSON");
    expect_error("[{\"target\":\"x\",\"tags\":{\"k\":[1]},\"datapoints\":[]}]", "label \"k\" must be a string");
}

static void error_carries_byte_offset(void **state) {
    (void)state;
    result_t r;
    const char *body = "[{\"target\":\"x\",\"datapoints\":[[1,1000],[\"bad\",2000]]}]";
    assert_int_equal(convert(body, 0, &r), -1);
    assert_non_null(strstr(r.error, "(at byte "));
}

static const char *const chunk_bodies[] = {
    "[{\"target\":\"cpu \\\"q\\\" \\u00e9\",\"datapoints\":[[1.5,3000],[null,1000],[\"NaN\",2000]],\"tags\":{\"h\":\"a\"}},"
    "{\"type\":\"table\",\"columns\":[{\"text\":\"time\"},{\"text\":\"s\"}],\"rows\":[[1,\"x\"],[2,null]]},"
    "{\"name\":\"f\",\"meta\":{\"a\":[1,{\"b\":null}]},\"fields\":[{\"name\":\"v\",\"values\":[true,false]}]}]",
    "  [ { \"points\" : [ [ 1e3 , 1.7e12 ] , [ -0.0 , 1700000000001 ] ] , \"target\" : \"late target\" } ]  ",
};

static size_t encode_all(result_t *r, buf_t *out) {
    for (size_t i = 0; i < r->n; i++) assert_int_equal(arrow_write_frame(r->frames[i], out), 0);
    return out->len;
}

static void chunking_gives_identical_frames(void **state) {
    (void)state;
    for (size_t b = 0; b < sizeof chunk_bodies / sizeof chunk_bodies[0]; b++) {
        result_t whole;
        assert_int_equal(convert(chunk_bodies[b], 0, &whole), 0);
        buf_t ref;
        buf_init(&ref);
        encode_all(&whole, &ref);
        size_t steps[] = {1, 2, 3, 7, 64};
        for (size_t s = 0; s < sizeof steps / sizeof steps[0]; s++) {
            result_t part;
            assert_int_equal(convert(chunk_bodies[b], steps[s], &part), 0);
            buf_t got;
            buf_init(&got);
            encode_all(&part, &got);
            assert_int_equal(got.len, ref.len);
            assert_memory_equal(got.data, ref.data, ref.len);
            buf_free(&got);
            result_free(&part);
        }
        /* Random splits. */
        srand(42 + (unsigned)b);
        for (int round = 0; round < 50; round++) {
            conv_t *c = conv_new("A", "sine:3");
            const char *body = chunk_bodies[b];
            size_t len = strlen(body), off = 0;
            while (off < len) {
                size_t n = 1 + (size_t)rand() % 17;
                if (n > len - off) n = len - off;
                assert_int_equal(conv_feed(c, (const uint8_t *)body + off, n), 0);
                off += n;
            }
            assert_int_equal(conv_finish(c), 0);
            result_t part;
            part.frames = conv_take_frames(c, &part.n);
            conv_free(c);
            buf_t got;
            buf_init(&got);
            encode_all(&part, &got);
            assert_int_equal(got.len, ref.len);
            assert_memory_equal(got.data, ref.data, ref.len);
            buf_free(&got);
            result_free(&part);
        }
        buf_free(&ref);
        result_free(&whole);
    }
}

/* The fast decimal path must agree with strtod bit for bit. */
static void numbers_match_strtod(void **state) {
    (void)state;
    srand(7);
    buf_t body;
    buf_init(&body);
    char nums[2000][40];
    buf_puts(&body, "[{\"target\":\"n\",\"datapoints\":[");
    for (int i = 0; i < 2000; i++) {
        int intd = rand() % 9, fracd = rand() % 16;
        char *p = nums[i];
        if (rand() % 3 == 0) *p++ = '-';
        *p++ = (char)('1' + rand() % 9);
        for (int k = 0; k < intd; k++) *p++ = (char)('0' + rand() % 10);
        if (fracd) {
            *p++ = '.';
            for (int k = 0; k < fracd; k++) *p++ = (char)('0' + rand() % 10);
        }
        if (i % 97 == 0) p += sprintf(p, "e%d", rand() % 40 - 20);
        *p = '\0';
        if (i == 1) strcpy(nums[i], "0.1");
        if (i == 2) strcpy(nums[i], "-0.0");
        if (i == 3) strcpy(nums[i], "123456789012345.6");
        buf_printf(&body, "%s[%s,%d]", i ? "," : "", nums[i], i);
    }
    buf_puts(&body, "]}]");
    result_t r;
    assert_int_equal(convert(body.data, 0, &r), 0);
    frame_field *v = r.frames[0]->fields[1];
    for (int i = 0; i < 2000; i++) {
        double want = strtod(nums[i], NULL), got = field_get_float(v, (size_t)i);
        if (memcmp(&want, &got, sizeof want) != 0) fail_msg("%s: strtod %.17g, converter %.17g", nums[i], want, got);
    }
    result_free(&r);
    buf_free(&body);
}

static void iso8601(void **state) {
    (void)state;
    int64_t ns;
    assert_int_equal(conv_parse_iso8601("1970-01-01T00:00:00Z", 20, &ns), 0);
    assert_true(ns == 0);
    assert_int_equal(conv_parse_iso8601("2026-11-25T10:00:00.000Z", 24, &ns), 0);
    assert_true(ns == 1795600800000000000LL);
    assert_int_equal(conv_parse_iso8601("2026-11-25T11:00:00.123456789+01:00", 35, &ns), 0);
    assert_true(ns == 1795600800123456789LL);
    assert_int_equal(conv_parse_iso8601("1969-12-31T23:59:59Z", 20, &ns), 0);
    assert_true(ns == -1000000000LL);
    assert_int_equal(conv_parse_iso8601("2026-11-25", 10, &ns), 0);
    const char *bad[] = {"2026-13-01", "2026-11-25T25:00:00Z", "2026-11-25T10:00:00Q", "20261125", "2026-11-25T10"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(conv_parse_iso8601(bad[i], strlen(bad[i]), &ns), -1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(series_basic),
        cmocka_unit_test(series_sorted_and_points_alias),
        cmocka_unit_test(empty_array_is_no_data),
        cmocka_unit_test(table_declared_and_inferred),
        cmocka_unit_test(table_time_named_column_from_numbers),
        cmocka_unit_test(data_frame_element),
        cmocka_unit_test(mixed_elements),
        cmocka_unit_test(errors_name_the_place),
        cmocka_unit_test(error_carries_byte_offset),
        cmocka_unit_test(chunking_gives_identical_frames),
        cmocka_unit_test(numbers_match_strtod),
        cmocka_unit_test(iso8601),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
