/* Routing words for unknown paths, and data source URL checks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "h2/router.h"
#include "fetch/url.h"

static void noop(struct call *c, void *ctx) { (void)c; (void)ctx; }

static router_method methods[] = {
    {.path = "/pluginv2.Data/QueryData", .kind = CALL_UNARY, .fn = noop},
    {.path = "/plugin.GRPCStdio/StreamStdio", .kind = CALL_SERVER_STREAM, .fn = noop},
};
static router_t table = {methods, 2};

static void find(void **state) {
    (void)state;
    assert_ptr_equal(router_find(&table, "/pluginv2.Data/QueryData"), &methods[0]);
    assert_null(router_find(&table, "/pluginv2.Data/querydata")); /* case-sensitive */
    assert_null(router_find(&table, "/pluginv2.Data/QueryData/"));
}

static void unknown_messages(void **state) {
    (void)state;
    char msg[256];
    router_unknown_message(&table, "/pluginv2.Data/Nope", msg, sizeof msg);
    assert_string_equal(msg, "unknown method Nope for service pluginv2.Data");
    router_unknown_message(&table, "/pluginv2.Stream/RunStream", msg, sizeof msg);
    assert_string_equal(msg, "unknown service pluginv2.Stream");
    router_unknown_message(&table, "/pluginv2.Dat/QueryData", msg, sizeof msg);
    assert_string_equal(msg, "unknown service pluginv2.Dat");
    router_unknown_message(&table, "nonsense", msg, sizeof msg);
    assert_string_equal(msg, "malformed method name: nonsense");
    router_unknown_message(&table, "/a/b/c", msg, sizeof msg);
    assert_string_equal(msg, "malformed method name: /a/b/c");
}

static void split(void **state) {
    (void)state;
    const char *svc, *m;
    size_t len;
    assert_int_equal(router_split_path("/pluginv2.Data/QueryData", &svc, &len, &m), 0);
    assert_int_equal(len, strlen("pluginv2.Data"));
    assert_string_equal(m, "QueryData");
    assert_int_equal(router_split_path("//x", &svc, &len, &m), -1);
    assert_int_equal(router_split_path("/x/", &svc, &len, &m), -1);
}

static void url_checks(void **state) {
    (void)state;
    char msg[512];
    fetch_url u;
    const char *good[] = {"http://metrics:8080", "https://m.internal/api/v1", "http://[::1]:9000/x",
                          "HTTP://upper.case", "http://h/"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        if (fetch_url_parse(good[i], &u, msg, sizeof msg) != 0) fail_msg("%s rejected: %s", good[i], msg);
    struct { const char *url, *words; } bad[] = {
        {"", "no backend configured"},
        {"metrics:8080", "http:// or https://"},
        {"ftp://x", "http:// or https://"},
        {"http://", "no host"},
        {"http://:80", "no host"},
        {"http://h:0", "port"},
        {"http://h:99999", "port"},
        {"http://h:8o", "port"},
        {"http://user:secret@h", "basic auth"},
        {"http://h/a b", "space or control"},
        {"http://[::1", "IPv6"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(fetch_url_parse(bad[i].url, &u, msg, sizeof msg), -1);
        if (!strstr(msg, bad[i].words)) fail_msg("%s: message \"%s\" lacks \"%s\"", bad[i].url, msg, bad[i].words);
    }
    /* Secrets in a URL are never echoed back. */
    fetch_url_parse("http://user:secret@h", &u, msg, sizeof msg);
    assert_null(strstr(msg, "secret"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(find),
        cmocka_unit_test(unknown_messages),
        cmocka_unit_test(split),
        cmocka_unit_test(url_checks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
