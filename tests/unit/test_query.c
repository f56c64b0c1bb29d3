/* Query models → /query bodies: the streaming rewrite, macros, and the
 * message for every refused model. Bodies are checked as exact text, since
 * members are copied as written. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "handlers/query.h"

#define FROM_MS 1700000000000LL /* 2023-11-14T22:13:20Z */
#define TO_MS (FROM_MS + 3600000)

static int build(const char *model, qm_query *out, char *err, size_t cap) {
    Pluginv2__TimeRange tr = PLUGINV2__TIME_RANGE__INIT;
    tr.fromepochms = FROM_MS;
    tr.toepochms = TO_MS;
    Pluginv2__DataQuery q = PLUGINV2__DATA_QUERY__INIT;
    q.refid = "A\"1";
    q.json.data = (uint8_t *)model;
    q.json.len = strlen(model);
    q.timerange = &tr;
    q.intervalms = 30000;
    q.maxdatapoints = 500;
    err[0] = '\0';
    return qm_build(&q, out, err, cap);
}

/* The model's part of the body: what sits inside "targets":[...]. */
static char *model_of(const char *body) {
    const char *a = strstr(body, "\"targets\":[");
    const char *b = strstr(body, "],\"scopedVars\"");
    assert_non_null(a);
    assert_non_null(b);
    a += strlen("\"targets\":[");
    return strndup(a, (size_t)(b - a));
}

static void expect_model(const char *model, const char *want_target, const char *want_model) {
    qm_query q;
    char err[256];
    assert_int_equal(build(model, &q, err, sizeof err), 0);
    assert_false(q.hide);
    assert_string_equal(q.target, want_target);
    char *m = model_of(q.body);
    assert_string_equal(m, want_model);
    free(m);
    qm_free(&q);
}

static void expect_refused(const char *model, const char *want_err_prefix) {
    qm_query q;
    char err[256];
    assert_int_equal(build(model, &q, err, sizeof err), -1);
    if (strncmp(err, want_err_prefix, strlen(want_err_prefix)) != 0) fail_msg("error was: %s", err);
    assert_null(q.body);
    assert_null(q.target);
}

static void whole_body(void **state) {
    (void)state;
    qm_query q;
    char err[256];
    assert_int_equal(build("{\"target\":\"cpu\"}", &q, err, sizeof err), 0);
    assert_string_equal(q.body,
                        "{\"range\":{\"from\":\"2023-11-14T22:13:20.000Z\",\"to\":\"2023-11-14T23:13:20.000Z\","
                        "\"raw\":{\"from\":\"2023-11-14T22:13:20.000Z\",\"to\":\"2023-11-14T23:13:20.000Z\"}},"
                        "\"rangeRaw\":{\"from\":\"2023-11-14T22:13:20.000Z\",\"to\":\"2023-11-14T23:13:20.000Z\"},"
                        "\"interval\":\"30s\",\"intervalMs\":30000,\"maxDataPoints\":500,"
                        "\"targets\":[{\"target\":\"cpu\",\"payload\":{},\"refId\":\"A\\\"1\"}],"
                        "\"scopedVars\":{\"__interval\":{\"text\":\"30s\",\"value\":\"30s\"},"
                        "\"__interval_ms\":{\"text\":\"30000\",\"value\":\"30000\"}},\"filters\":[]}");
    qm_free(&q);
}

static void members_copied_as_written(void **state) {
    (void)state;
    /* numbers keep their text, nesting and unknown members survive */
    expect_model("{\"target\":\"m\",\"n\":1.50e3,\"big\":18446744073709551615,\"x\":[1,{\"y\":[]},null,true],"
                 "\"payload\":{\"a\":[\"b\",{}]}}",
                 "m",
                 "{\"target\":\"m\",\"n\":1.50e3,\"big\":18446744073709551615,\"x\":[1,{\"y\":[]},null,true],"
                 "\"payload\":{\"a\":[\"b\",{}]},\"refId\":\"A\\\"1\"}");
    /* whitespace goes, escapes are re-made */
    expect_model(" { \"target\" : \"a\\u00e9\\n\" , \"k\\\"\" : [ ] } ", "a\xc3\xa9\n",
                 "{\"target\":\"a\xc3\xa9\\n\",\"k\\\"\":[],\"payload\":{},\"refId\":\"A\\\"1\"}");
}

static void ours_replace_theirs(void **state) {
    (void)state;
    /* datasource and refId are dropped wherever they are, nested values too */
    expect_model("{\"refId\":\"Z\",\"datasource\":{\"uid\":\"x\",\"t\":[1,{\"a\":2}]},\"target\":\"t\",\"datasource\":null}",
                 "t", "{\"target\":\"t\",\"payload\":{},\"refId\":\"A\\\"1\"}");
    /* only at the top level: nested ones are the user's payload */
    expect_model("{\"target\":\"t\",\"payload\":{\"refId\":\"p\",\"datasource\":1}}", "t",
                 "{\"target\":\"t\",\"payload\":{\"refId\":\"p\",\"datasource\":1},\"refId\":\"A\\\"1\"}");
}

static void macros(void **state) {
    (void)state;
    expect_model("{\"target\":\"q:$__interval/$__interval_ms/$__from/$__to/$__range/$__range_s/$__range_ms/$__nope\","
                 "\"payload\":{\"k\":[\"$__from\"],\"$__to\":\"$__interval\"},\"other\":\"$__from\"}",
                 "q:30s/30000/1700000000000/1700003600000/1h/3600/3600000/$__nope",
                 "{\"target\":\"q:30s/30000/1700000000000/1700003600000/1h/3600/3600000/$__nope\","
                 "\"payload\":{\"k\":[\"1700000000000\"],\"$__to\":\"30s\"},\"other\":\"$__from\",\"refId\":\"A\\\"1\"}");
    char *e = qm_expand("$__$__from$__range_ms$", 1000, 91000, 250);
    assert_string_equal(e, "$__100090000$");
    free(e);
    e = qm_expand("$__interval", 0, 0, 90000);
    assert_string_equal(e, "90s");
    free(e);
}

static void payload_as_text(void **state) {
    (void)state;
    expect_model("{\"target\":\"t\",\"payload\":\"{\\\"a\\\": [1, \\\"$__interval\\\"]}\"}", "t",
                 "{\"target\":\"t\",\"payload\":{\"a\":[1,\"30s\"]},\"refId\":\"A\\\"1\"}");
    expect_model("{\"target\":\"t\",\"payload\":\"\"}", "t", "{\"target\":\"t\",\"payload\":{},\"refId\":\"A\\\"1\"}");
    expect_model("{\"payload\":null,\"target\":\"t\"}", "t", "{\"payload\":{},\"target\":\"t\",\"refId\":\"A\\\"1\"}");
    expect_refused("{\"target\":\"t\",\"payload\":\"{nope\"}", "the query payload is a string but not JSON: ");
}

static void last_target_and_hide_win(void **state) {
    (void)state;
    qm_query q;
    char err[256];
    assert_int_equal(build("{\"target\":\"\",\"hide\":true}", &q, err, sizeof err), 0);
    assert_true(q.hide);
    assert_null(q.body);
    assert_int_equal(build("{\"hide\":true,\"hide\":false,\"target\":\"x\",\"target\":\"y\"}", &q, err, sizeof err), 0);
    assert_false(q.hide);
    assert_string_equal(q.target, "y");
    qm_free(&q);
    assert_int_equal(build("{\"hide\":\"yes\",\"target\":\"x\"}", &q, err, sizeof err), 0);
    assert_false(q.hide); /* only a JSON true hides */
    qm_free(&q);
}

static void refused(void **state) {
    (void)state;
    const char *no_target = "the query has no target: set \"target\"";
    expect_refused("", no_target);
    expect_refused("{}", no_target);
    expect_refused("{\"target\":\"\"}", no_target);
    expect_refused("{\"target\":7}", no_target);
    expect_refused("{\"target\":{\"a\":\"b\"}}", no_target);
    expect_refused("{\"target\":\"x\",\"target\":null}", no_target);
    expect_refused("[1]", "the query model must be a JSON object");
    expect_refused("\"cpu\"", "the query model must be a JSON object");
    expect_refused("{\"target\":\"x\"", "the query model is not JSON: ");
    expect_refused("{\"target\":\"x\"} {}", "the query model is not JSON: ");
    expect_refused("{\"target\":\"\xff\"}", "the query model is not JSON: ");
    /* the byte offset is named */
    qm_query q;
    char err[256];
    assert_int_equal(build("{\"target\":\"x\",,}", &q, err, sizeof err), -1);
    assert_non_null(strstr(err, "(at byte "));
}

static void depth_is_bounded(void **state) {
    (void)state;
    size_t n = 100000;
    char *deep = malloc(2 * n + 32);
    strcpy(deep, "{\"target\":\"t\",\"x\":");
    size_t len = strlen(deep);
    memset(deep + len, '[', n);
    memset(deep + len + n, ']', n);
    strcpy(deep + len + 2 * n, "}");
    expect_refused(deep, "the query model nests deeper than 255 levels");
    /* the same in a payload given as text */
    expect_refused("{\"target\":\"t\",\"payload\":\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["
                   "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["
                   "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["
                   "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\"}",
                   "the query payload nests deeper than 255 levels");
    free(deep);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(whole_body),        cmocka_unit_test(members_copied_as_written),
        cmocka_unit_test(ours_replace_theirs), cmocka_unit_test(macros),
        cmocka_unit_test(payload_as_text),   cmocka_unit_test(last_target_and_hide_win),
        cmocka_unit_test(refused),           cmocka_unit_test(depth_is_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
