#include "query.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../util/buf.h"

void qm_format_duration(int64_t ms, char *out, size_t cap) {
    static const struct { int64_t ms; const char *unit; } units[] = {
        {86400000, "d"}, {3600000, "h"}, {60000, "m"}, {1000, "s"}};
    if (ms <= 0) { snprintf(out, cap, "0s"); return; }
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
        if (ms % units[i].ms == 0) {
            snprintf(out, cap, "%lld%s", (long long)(ms / units[i].ms), units[i].unit);
            return;
        }
    snprintf(out, cap, "%lldms", (long long)ms);
}

char *qm_expand(const char *s, int64_t from_ms, int64_t to_ms, int64_t interval_ms) {
    char interval[32], range[32];
    qm_format_duration(interval_ms, interval, sizeof interval);
    qm_format_duration(to_ms - from_ms, range, sizeof range);
    char v_from[24], v_to[24], v_ims[24], v_rs[24], v_rms[24];
    snprintf(v_from, sizeof v_from, "%lld", (long long)from_ms);
    snprintf(v_to, sizeof v_to, "%lld", (long long)to_ms);
    snprintf(v_ims, sizeof v_ims, "%lld", (long long)interval_ms);
    snprintf(v_rs, sizeof v_rs, "%lld", (long long)((to_ms - from_ms) / 1000));
    snprintf(v_rms, sizeof v_rms, "%lld", (long long)(to_ms - from_ms));
    /* Longest names first, so $__interval_ms is not read as $__interval. */
    const struct { const char *name; const char *value; } macros[] = {
        {"$__interval_ms", v_ims}, {"$__interval", interval}, {"$__range_ms", v_rms}, {"$__range_s", v_rs},
        {"$__range", range},       {"$__from", v_from},       {"$__to", v_to},
    };
    buf_t b;
    buf_init(&b);
    for (const char *p = s; *p;) {
        size_t i = 0;
        if (p[0] == '$' && p[1] == '_' && p[2] == '_') {
            for (; i < sizeof macros / sizeof macros[0]; i++) {
                size_t n = strlen(macros[i].name);
                if (strncmp(p, macros[i].name, n) == 0) {
                    buf_puts(&b, macros[i].value);
                    p += n;
                    break;
                }
            }
            if (i < sizeof macros / sizeof macros[0]) continue;
        }
        buf_append(&b, p, 1);
        p++;
    }
    buf_append(&b, "", 0);
    if (!buf_ok(&b)) { buf_free(&b); return NULL; }
    return b.data;
}

/* Expands macros in every string inside v (recursively, in place). */
static int expand_json(json_t *v, int64_t from, int64_t to, int64_t interval) {
    if (json_is_string(v)) {
        char *e = qm_expand(json_string_value(v), from, to, interval);
        if (!e) return -1;
        int r = json_string_set(v, e);
        free(e);
        return r;
    }
    if (json_is_array(v)) {
        for (size_t i = 0; i < json_array_size(v); i++)
            if (expand_json(json_array_get(v, i), from, to, interval) != 0) return -1;
    } else if (json_is_object(v)) {
        const char *k;
        json_t *x;
        json_object_foreach(v, k, x) if (expand_json(x, from, to, interval) != 0) return -1;
    }
    return 0;
}

static void iso_ms(int64_t ms, char *out, size_t cap) {
    time_t secs = (time_t)(ms / 1000);
    int64_t rem = ms % 1000;
    if (rem < 0) { rem += 1000; secs--; }
    struct tm tm;
    gmtime_r(&secs, &tm);
    size_t n = strftime(out, cap, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, cap - n, ".%03lldZ", (long long)rem);
}

int qm_build(const Pluginv2__DataQuery *q, qm_query *out, char *err, size_t cap) {
    memset(out, 0, sizeof *out);
    json_error_t jerr;
    json_t *model = q->json.len ? json_loadb((const char *)q->json.data, q->json.len, 0, &jerr) : json_object();
    if (!model) {
        snprintf(err, cap, "the query model is not JSON: %s (line %d, column %d)", jerr.text, jerr.line, jerr.column);
        return -1;
    }
    if (!json_is_object(model)) {
        snprintf(err, cap, "the query model must be a JSON object");
        json_decref(model);
        return -1;
    }
    out->hide = json_is_true(json_object_get(model, "hide"));
    if (out->hide) { json_decref(model); return 0; }
    json_t *target = json_object_get(model, "target");
    if (!json_is_string(target) || !*json_string_value(target)) {
        snprintf(err, cap, "the query has no target: set \"target\" (the metric to query) in the query editor");
        json_decref(model);
        return -1;
    }
    int64_t from = q->timerange ? q->timerange->fromepochms : 0;
    int64_t to = q->timerange ? q->timerange->toepochms : 0;
    int64_t interval = q->intervalms > 0 ? q->intervalms : 1000;
    /* payload: an object, a string holding JSON, or absent. */
    json_t *payload = json_object_get(model, "payload");
    if (json_is_string(payload)) {
        const char *ps = json_string_value(payload);
        json_t *parsed = *ps ? json_loads(ps, 0, &jerr) : json_object();
        if (!parsed) {
            snprintf(err, cap, "the query payload is a string but not JSON: %s (column %d)", jerr.text, jerr.column);
            json_decref(model);
            return -1;
        }
        json_object_set_new(model, "payload", parsed);
    } else if (!payload || json_is_null(payload)) {
        json_object_set_new(model, "payload", json_object());
    }
    json_object_set_new(model, "refId", json_string(q->refid ? q->refid : ""));
    json_object_del(model, "datasource");
    if (expand_json(json_object_get(model, "target"), from, to, interval) != 0 ||
        expand_json(json_object_get(model, "payload"), from, to, interval) != 0) {
        snprintf(err, cap, "out of memory expanding macros");
        json_decref(model);
        return -1;
    }
    out->target = strdup(json_string_value(json_object_get(model, "target")));

    char f[40], t[40], iv[32];
    iso_ms(from, f, sizeof f);
    iso_ms(to, t, sizeof t);
    qm_format_duration(interval, iv, sizeof iv);
    char ivms[24];
    snprintf(ivms, sizeof ivms, "%lld", (long long)interval);
    json_t *body = json_pack("{s:{s:s,s:s,s:{s:s,s:s}},s:{s:s,s:s},s:s,s:I,s:I,s:[O],s:{s:{s:s,s:s},s:{s:s,s:s}},s:[]}",
                             "range", "from", f, "to", t, "raw", "from", f, "to", t,
                             "rangeRaw", "from", f, "to", t,
                             "interval", iv, "intervalMs", (json_int_t)interval,
                             "maxDataPoints", (json_int_t)(q->maxdatapoints > 0 ? q->maxdatapoints : 1000),
                             "targets", model,
                             "scopedVars", "__interval", "text", iv, "value", iv, "__interval_ms", "text", ivms,
                             "value", ivms, "filters");
    json_decref(model);
    out->body = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (!out->body || !out->target) {
        qm_free(out);
        snprintf(err, cap, "out of memory building the request");
        return -1;
    }
    return 0;
}

void qm_free(qm_query *q) {
    free(q->target);
    free(q->body);
    q->target = q->body = NULL;
}
