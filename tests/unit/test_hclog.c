/* hclog lines: valid JSON whatever the input, the exact keys and timestamp
 * layout go-plugin parses, truncation that keeps the line whole. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>
#include <jansson.h>

#include "log/hclog.h"
#include "util/jsonw.h"

#define T0 1764064530123456LL /* 2025-11-25T09:55:30.123456Z */

static json_t *parse_line(const char *line, size_t n) {
    assert_true(n > 2);
    assert_int_equal(line[n - 1], '\n');
    assert_null(memchr(line, '\n', n - 1)); /* exactly one line */
    json_error_t err;
    json_t *j = json_loadb(line, n - 1, 0, &err);
    if (!j) fail_msg("not JSON: %s (%.*s)", err.text, (int)n, line);
    return j;
}

static void format_has_hclog_keys(void **state) {
    (void)state;
    hclog_init("plugin.test", HCLOG_TRACE);
    char line[1024];
    hclog_kv kvs[] = {{0}, HKV_S("refId", "A"), HKV_I("durationMs", 42), HKV_D("ratio", 0.5)};
    size_t n = hclog_format(line, sizeof line, HCLOG_WARN, "query finished", kvs, 4, T0);
    json_t *j = parse_line(line, n);
    assert_string_equal(json_string_value(json_object_get(j, "@level")), "warn");
    assert_string_equal(json_string_value(json_object_get(j, "@message")), "query finished");
    assert_string_equal(json_string_value(json_object_get(j, "@timestamp")), "2025-11-25T09:55:30.123456Z");
    assert_string_equal(json_string_value(json_object_get(j, "@module")), "plugin.test");
    assert_string_equal(json_string_value(json_object_get(j, "refId")), "A");
    assert_int_equal(json_integer_value(json_object_get(j, "durationMs")), 42);
    assert_true(json_real_value(json_object_get(j, "ratio")) == 0.5);
    json_decref(j);
}

static void escapes_quotes_controls_and_bad_utf8(void **state) {
    (void)state;
    char line[1024];
    const char *nasty = "a\"b\\c\nd\te\x01\x7f caf\xc3\xa9 \xff\xfe \xed\xa0\x80 \xe2\x82";
    hclog_kv kvs[] = {{0}, HKV_S("v", nasty)};
    size_t n = hclog_format(line, sizeof line, HCLOG_ERROR, nasty, kvs, 2, T0);
    json_t *j = parse_line(line, n);
    const char *msg = json_string_value(json_object_get(j, "@message"));
    assert_non_null(msg);
    assert_non_null(strstr(msg, "a\"b\\c\nd\te\x01\x7f caf\xc3\xa9 "));
    assert_non_null(strstr(msg, "\xef\xbf\xbd")); /* U+FFFD for invalid bytes */
    assert_null(strstr(msg, "\xff"));
    json_decref(j);
}

static void nonfinite_double_is_null(void **state) {
    (void)state;
    char line[512];
    hclog_kv kvs[] = {{0}, HKV_D("x", 1.0 / 0.0)};
    size_t n = hclog_format(line, sizeof line, HCLOG_INFO, "m", kvs, 2, T0);
    json_t *j = parse_line(line, n);
    assert_true(json_is_null(json_object_get(j, "x")));
    json_decref(j);
}

static void long_values_truncate_to_valid_json(void **state) {
    (void)state;
    static char big[20000];
    memset(big, 'x', sizeof big - 1);
    big[5000] = '"';
    char line[1024];
    hclog_kv kvs[] = {{0}, HKV_S("k", "short"), HKV_S("huge", big), HKV_S("after", "dropped")};
    for (size_t cap = 256; cap <= sizeof line; cap += 97) {
        size_t n = hclog_format(line, cap, HCLOG_INFO, big, kvs, 4, T0);
        assert_true(n <= cap);
        json_t *j = parse_line(line, n);
        assert_string_equal(json_string_value(json_object_get(j, "@level")), "info");
        json_decref(j);
    }
}

static void json_escape_reports_cut(void **state) {
    (void)state;
    char out[8];
    size_t len = 0;
    assert_int_equal(jsonw_escape(out, sizeof out, &len, "abc", 3), 0);
    assert_int_equal(len, 3);
    len = 0;
    assert_int_equal(jsonw_escape(out, sizeof out, &len, "abc\n\n\n", 6), -1);
    assert_true(len <= sizeof out);
    assert_memory_equal(out, "abc\\n\\n", 7);
}

static void level_parsing(void **state) {
    (void)state;
    assert_int_equal(hclog_level_parse("TRACE"), HCLOG_TRACE);
    assert_int_equal(hclog_level_parse("debug"), HCLOG_DEBUG);
    assert_int_equal(hclog_level_parse("Warn"), HCLOG_WARN);
    assert_int_equal(hclog_level_parse("warning"), HCLOG_WARN);
    assert_int_equal(hclog_level_parse("off"), HCLOG_OFF);
    assert_int_equal(hclog_level_parse("loud"), -1);
    assert_int_equal(hclog_level_parse(NULL), -1);
    hclog_init(NULL, HCLOG_WARN);
    assert_false(hclog_enabled(HCLOG_INFO));
    assert_true(hclog_enabled(HCLOG_ERROR));
    hclog_init(NULL, HCLOG_OFF);
    assert_false(hclog_enabled(HCLOG_ERROR));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(format_has_hclog_keys),
        cmocka_unit_test(escapes_quotes_controls_and_bad_utf8),
        cmocka_unit_test(nonfinite_double_is_null),
        cmocka_unit_test(long_values_truncate_to_valid_json),
        cmocka_unit_test(json_escape_reports_cut),
        cmocka_unit_test(level_parsing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
