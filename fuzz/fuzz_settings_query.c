/*
 * fuzz_settings_query: the two JSON documents Grafana hands us per request
 * that come from users: a data source's jsonData (+ secure values) and a
 * query model. Byte 0 picks which one the rest of the input is.
 *
 *   - jsonData: inst_get (offline cache, so no connection is ever opened)
 *     must give an instance; a problem, if any, is a sentence without the
 *     secret header value; the instance is released cleanly.
 *   - query model: qm_build either fails with a message or yields a target
 *     and a request body that is itself valid JSON; macro expansion of the
 *     raw bytes as a string never crashes.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <uv.h>

#include "fuzz_check.h"
#include "handlers/instance.h"
#include "handlers/query.h"
#include "pluginv2.pb-c.h"

#define SECRET "fuzz-secret-value-31337"

static void fuzz_settings(const uint8_t *data, size_t size) {
    static uv_loop_t loop;
    static bool inited;
    if (!inited) {
        uv_loop_init(&loop);
        inited = true;
    }
    inst_cache cache;
    inst_cache_init(&cache, &loop, "fuzz");
    cache.offline = true;
    Pluginv2__DataSourceInstanceSettings ds = PLUGINV2__DATA_SOURCE_INSTANCE_SETTINGS__INIT;
    ds.uid = "fuzz";
    ds.url = "http://127.0.0.1:9";
    ds.jsondata.data = (uint8_t *)data;
    ds.jsondata.len = size;
    ds.basicauthenabled = size & 1;
    ds.basicauthuser = "u";
    Pluginv2__DataSourceInstanceSettings__DecryptedSecureJsonDataEntry e1 =
        PLUGINV2__DATA_SOURCE_INSTANCE_SETTINGS__DECRYPTED_SECURE_JSON_DATA_ENTRY__INIT;
    e1.key = "httpHeaderValue1";
    e1.value = SECRET "\r\n";
    Pluginv2__DataSourceInstanceSettings__DecryptedSecureJsonDataEntry e2 =
        PLUGINV2__DATA_SOURCE_INSTANCE_SETTINGS__DECRYPTED_SECURE_JSON_DATA_ENTRY__INIT;
    e2.key = "basicAuthPassword";
    e2.value = SECRET;
    Pluginv2__DataSourceInstanceSettings__DecryptedSecureJsonDataEntry *entries[] = {&e1, &e2};
    ds.n_decryptedsecurejsondata = 2;
    ds.decryptedsecurejsondata = entries;
    Pluginv2__PluginContext ctx = PLUGINV2__PLUGIN_CONTEXT__INIT;
    ctx.datasourceinstancesettings = &ds;
    inst_t *in = inst_get(&cache, &ctx);
    CHECK(in != NULL, "no instance for valid settings");
    const char *problem = inst_problem(in);
    CHECK(problem != NULL, "the offline cache must always report a problem");
    /* The secure values must never show; the same text typed into a
     * non-secret setting (a header name, say) may. */
    bool typed_in_json = memmem(data, size, SECRET, sizeof SECRET - 1) != NULL;
    CHECK(typed_in_json || strstr(problem, SECRET) == NULL, "a secret leaked into the problem text: %s", problem);
    inst_release(in);
    inst_cache_clear(&cache);
}

static void fuzz_query(const uint8_t *data, size_t size) {
    Pluginv2__TimeRange tr = PLUGINV2__TIME_RANGE__INIT;
    tr.fromepochms = 1700000000000;
    tr.toepochms = 1700003600000;
    Pluginv2__DataQuery q = PLUGINV2__DATA_QUERY__INIT;
    q.refid = "A";
    q.json.data = (uint8_t *)data;
    q.json.len = size;
    q.timerange = &tr;
    q.intervalms = (int64_t)(size % 100000);
    qm_query m;
    char err[512];
    if (qm_build(&q, &m, err, sizeof err) != 0) {
        CHECK(err[0] != '\0', "a refused model must say why");
        return;
    }
    if (!m.hide) {
        CHECK(m.target && *m.target, "a built query has a target");
        json_error_t jerr;
        json_t *body = json_loads(m.body, JSON_ALLOW_NUL, &jerr); /* yajl takes \u0000 */
        CHECK(body != NULL, "request body is not JSON: %s", jerr.text);
        json_t *targets = json_object_get(body, "targets");
        CHECK(json_is_array(targets) && json_array_size(targets) == 1, "request body needs one target: %s", m.body);
        json_t *model = json_array_get(targets, 0);
        const char *t = json_string_value(json_object_get(model, "target"));
        CHECK(t && strcmp(t, m.target) == 0, "the body's target differs from the built one: %s", m.body);
        const char *ref = json_string_value(json_object_get(model, "refId"));
        CHECK(ref && strcmp(ref, "A") == 0, "the body's refId is not ours: %s", m.body);
        CHECK(json_object_get(model, "datasource") == NULL, "the model's datasource reached the backend: %s", m.body);
        CHECK(json_object_get(model, "payload") != NULL, "the body has no payload: %s", m.body);
        json_decref(body);
    }
    qm_free(&m);
    char *raw = malloc(size + 1);
    CHECK(raw != NULL, "oom");
    memcpy(raw, data, size);
    raw[size] = '\0';
    char *expanded = qm_expand(raw, 0, 3600000, 30000);
    CHECK(expanded != NULL, "qm_expand failed");
    free(expanded);
    free(raw);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    if (data[0] & 1) fuzz_settings(data + 1, size - 1);
    else fuzz_query(data + 1, size - 1);
    return 0;
}
