#include "query.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <yajl/yajl_parse.h>

#include "../util/buf.h"
#include "../util/jsonw.h"

/* Deeper models are refused; the streaming rewrite keeps one bit per level. */
#define QM_MAX_DEPTH 256

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

/* The macro values of one time range, formatted once per query on first use. */
typedef struct {
    int64_t from, to, interval;
    bool ready;
    char interval_s[32], range[32], from_s[24], to_s[24], interval_ms[24], range_s[24], range_ms[24];
} qm_macros;

static void macros_prepare(qm_macros *m) {
    if (m->ready) return;
    qm_format_duration(m->interval, m->interval_s, sizeof m->interval_s);
    qm_format_duration(m->to - m->from, m->range, sizeof m->range);
    snprintf(m->from_s, sizeof m->from_s, "%lld", (long long)m->from);
    snprintf(m->to_s, sizeof m->to_s, "%lld", (long long)m->to);
    snprintf(m->interval_ms, sizeof m->interval_ms, "%lld", (long long)m->interval);
    snprintf(m->range_s, sizeof m->range_s, "%lld", (long long)((m->to - m->from) / 1000));
    snprintf(m->range_ms, sizeof m->range_ms, "%lld", (long long)(m->to - m->from));
    m->ready = true;
}

/* Appends s[0..n) to b with every macro replaced. */
static void expand_append(buf_t *b, const char *s, size_t n, qm_macros *m) {
    macros_prepare(m);
    /* Longest names first, so $__interval_ms is not read as $__interval. */
    const struct { const char *name; size_t len; const char *value; } macros[] = {
        {"$__interval_ms", 14, m->interval_ms}, {"$__interval", 11, m->interval_s}, {"$__range_ms", 11, m->range_ms},
        {"$__range_s", 10, m->range_s},         {"$__range", 8, m->range},          {"$__from", 7, m->from_s},
        {"$__to", 5, m->to_s},
    };
    const char *end = s + n;
    while (s < end) {
        const char *hit = memmem(s, (size_t)(end - s), "$__", 3);
        if (!hit) break;
        buf_append(b, s, (size_t)(hit - s));
        size_t i = 0;
        for (; i < sizeof macros / sizeof macros[0]; i++)
            if ((size_t)(end - hit) >= macros[i].len && memcmp(hit, macros[i].name, macros[i].len) == 0) break;
        if (i < sizeof macros / sizeof macros[0]) {
            buf_puts(b, macros[i].value);
            s = hit + macros[i].len;
        } else {
            buf_append(b, hit, 3);
            s = hit + 3;
        }
    }
    buf_append(b, s, (size_t)(end - s));
}

char *qm_expand(const char *s, int64_t from_ms, int64_t to_ms, int64_t interval_ms) {
    qm_macros m = {.from = from_ms, .to = to_ms, .interval = interval_ms};
    buf_t b;
    buf_init(&b);
    expand_append(&b, s, strlen(s), &m);
    buf_append(&b, "", 0);
    if (!buf_ok(&b)) { buf_free(&b); return NULL; }
    return b.data;
}

/*
 * The model is rewritten while yajl streams through it, straight into the
 * request body, without a document tree: members are copied as written
 * (numbers keep their text), strings under "target" and "payload" get their
 * macros expanded, a payload given as a JSON string is parsed and inlined,
 * "datasource" and "refId" are dropped and our own refId is added last.
 */
typedef enum { M_COPY, M_TARGET, M_PAYLOAD, M_HIDE, M_SKIP } qm_member;

typedef struct {
    buf_t *out;
    qm_macros *macros;
    buf_t *scratch;           /* expansion space for one string */
    int depth;                /* open containers; 1 = inside the model object */
    uint8_t is_array[QM_MAX_DEPTH / 8 + 1], nonempty[QM_MAX_DEPTH / 8 + 1];
    bool model;               /* the model itself, not a payload held in a string */
    qm_member member;         /* model only: the top-level member being read */
    bool hide, has_payload, target_ok;
    const char *refid;
    buf_t *target;            /* model only: the expanded target */
    char error[200];          /* set when a callback stops the parse */
} qm_rw;

static bool bit_get(const uint8_t *bits, int i) { return bits[i / 8] & (1u << (i % 8)); }
static void bit_put(uint8_t *bits, int i, bool v) {
    if (v) bits[i / 8] |= (uint8_t)(1u << (i % 8));
    else bits[i / 8] &= (uint8_t) ~(1u << (i % 8));
}

static bool skipping(const qm_rw *w) { return w->model && w->member == M_SKIP && w->depth >= 1; }
static bool expanding(const qm_rw *w) { return !w->model || w->member == M_TARGET || w->member == M_PAYLOAD; }
static bool at_member(const qm_rw *w) { return w->model && w->depth == 1; }

/* Called before every value: false when the value is not written. */
static bool value_start(qm_rw *w, bool is_map) {
    if (skipping(w)) return false;
    if (w->depth == 0 && w->model && !is_map) {
        snprintf(w->error, sizeof w->error, "the query model must be a JSON object");
        return false;
    }
    if (w->depth > 0 && bit_get(w->is_array, w->depth)) {
        if (bit_get(w->nonempty, w->depth)) buf_append(w->out, ",", 1);
        bit_put(w->nonempty, w->depth, true);
    }
    return true;
}

/* A top-level member's value is complete: back to plain copying. */
static void value_end(qm_rw *w) {
    if (at_member(w)) w->member = M_COPY;
}

static int stop(const qm_rw *w) { return w->error[0] ? 0 : 1; }

static int cb_null(void *ctx) {
    qm_rw *w = ctx;
    if (value_start(w, false)) {
        /* A null payload means none: the backend gets an empty object. */
        buf_puts(w->out, at_member(w) && w->member == M_PAYLOAD ? "{}" : "null");
    }
    value_end(w);
    return stop(w);
}

static int cb_boolean(void *ctx, int v) {
    qm_rw *w = ctx;
    if (value_start(w, false)) buf_puts(w->out, v ? "true" : "false");
    if (at_member(w) && w->member == M_HIDE) w->hide = v;
    value_end(w);
    return stop(w);
}

static int cb_number(void *ctx, const char *s, size_t n) {
    qm_rw *w = ctx;
    if (value_start(w, false)) buf_append(w->out, s, n);
    value_end(w);
    return stop(w);
}

static int rewrite(qm_rw *w, const char *text, size_t len);

/* A payload typed as text holds JSON: it is inlined, every string expanded. */
static int inline_payload(qm_rw *w, const unsigned char *s, size_t n) {
    if (n == 0) { buf_puts(w->out, "{}"); return 0; }
    qm_rw p;
    memset(&p, 0, sizeof p);
    p.out = w->out;
    p.macros = w->macros;
    p.scratch = w->scratch;
    if (rewrite(&p, (const char *)s, n) == 0) return 0;
    memcpy(w->error, p.error, sizeof w->error);
    return -1;
}


/* The target as the body carries it (yajl lets some invalid UTF-8 through;
 * jsonw writes it as U+FFFD). */
static void keep_target(qm_rw *w, const char *s, size_t n) {
    w->target->len = 0;
    jsonw_utf8_sanitize(w->target, s, n);
}

static int cb_string(void *ctx, const unsigned char *s, size_t n) {
    qm_rw *w = ctx;
    if (value_start(w, false)) {
        if (at_member(w) && w->member == M_PAYLOAD) {
            if (inline_payload(w, s, n) != 0) return 0;
        } else if (expanding(w) && memmem(s, n, "$__", 3)) {
            w->scratch->len = 0;
            expand_append(w->scratch, (const char *)s, n, w->macros);
            jsonw_string(w->out, w->scratch->data ? w->scratch->data : "", w->scratch->len);
            if (at_member(w) && w->member == M_TARGET) keep_target(w, w->scratch->data, w->scratch->len);
        } else {
            jsonw_string(w->out, (const char *)s, n);
            if (at_member(w) && w->member == M_TARGET) keep_target(w, (const char *)s, n);
        }
        if (at_member(w) && w->member == M_TARGET) w->target_ok = n > 0;
    }
    value_end(w);
    return stop(w);
}

static int open_container(qm_rw *w, bool array) {
    bool written = value_start(w, !array);
    if (w->error[0]) return 0;
    if (w->depth + 1 >= QM_MAX_DEPTH) {
        snprintf(w->error, sizeof w->error, "the query %s nests deeper than %d levels", w->model ? "model" : "payload",
                 QM_MAX_DEPTH - 1);
        return 0;
    }
    w->depth++;
    bit_put(w->is_array, w->depth, array);
    bit_put(w->nonempty, w->depth, false);
    if (written) buf_append(w->out, array ? "[" : "{", 1);
    return 1;
}

static int close_container(qm_rw *w, bool array) {
    bool written = !skipping(w);
    if (written && w->model && w->depth == 1) {
        /* The end of the model: add what the backend always gets. */
        bool comma = bit_get(w->nonempty, 1);
        if (!w->has_payload) {
            buf_puts(w->out, comma ? ",\"payload\":{}" : "\"payload\":{}");
            comma = true;
        }
        buf_puts(w->out, comma ? ",\"refId\":" : "\"refId\":");
        jsonw_string(w->out, w->refid, strlen(w->refid));
    }
    if (written) buf_append(w->out, array ? "]" : "}", 1);
    w->depth--;
    value_end(w);
    return 1;
}

static int cb_start_map(void *ctx) { return open_container(ctx, false); }
static int cb_end_map(void *ctx) { return close_container(ctx, false); }
static int cb_start_array(void *ctx) { return open_container(ctx, true); }
static int cb_end_array(void *ctx) { return close_container(ctx, true); }

static qm_member member_of(const unsigned char *k, size_t n) {
#define KEY_IS(s) (n == sizeof s - 1 && memcmp(k, s, n) == 0)
    if (KEY_IS("target")) return M_TARGET;
    if (KEY_IS("payload")) return M_PAYLOAD;
    if (KEY_IS("hide")) return M_HIDE;
    if (KEY_IS("datasource") || KEY_IS("refId")) return M_SKIP; /* ours replace them */
#undef KEY_IS
    return M_COPY;
}

static int cb_map_key(void *ctx, const unsigned char *k, size_t n) {
    qm_rw *w = ctx;
    if (at_member(w)) {
        w->member = member_of(k, n);
        if (w->member == M_PAYLOAD) w->has_payload = true;
        if (w->member == M_TARGET) w->target_ok = false;
        if (w->member == M_HIDE) w->hide = false;
    }
    if (skipping(w)) return 1;
    if (bit_get(w->nonempty, w->depth)) buf_append(w->out, ",", 1);
    bit_put(w->nonempty, w->depth, true);
    jsonw_string(w->out, (const char *)k, n);
    buf_append(w->out, ":", 1);
    return 1;
}

static const yajl_callbacks rewrite_callbacks = {
    .yajl_null = cb_null,
    .yajl_boolean = cb_boolean,
    .yajl_number = cb_number,
    .yajl_string = cb_string,
    .yajl_start_map = cb_start_map,
    .yajl_map_key = cb_map_key,
    .yajl_end_map = cb_end_map,
    .yajl_start_array = cb_start_array,
    .yajl_end_array = cb_end_array,
};

/* Streams text through the callbacks; -1 with w->error set on failure. */
static int rewrite(qm_rw *w, const char *text, size_t len) {
    yajl_handle h = yajl_alloc(&rewrite_callbacks, NULL, w);
    if (!h) {
        snprintf(w->error, sizeof w->error, "out of memory reading the query");
        return -1;
    }
    yajl_status st = yajl_parse(h, (const unsigned char *)text, len);
    if (st == yajl_status_ok) st = yajl_complete_parse(h);
    if (st != yajl_status_ok && !w->error[0]) {
        unsigned char *m = yajl_get_error(h, 0, NULL, 0);
        const char *reason = m ? (const char *)m : "parse error";
        snprintf(w->error, sizeof w->error, "%s: %.*s (at byte %zu)",
                 w->model ? "the query model is not JSON" : "the query payload is a string but not JSON",
                 (int)strcspn(reason, "\n"), reason, yajl_get_bytes_consumed(h));
        if (m) yajl_free_error(h, m);
    }
    yajl_free(h);
    return st == yajl_status_ok ? 0 : -1;
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
    int64_t from = q->timerange ? q->timerange->fromepochms : 0;
    int64_t to = q->timerange ? q->timerange->toepochms : 0;
    int64_t interval = q->intervalms > 0 ? q->intervalms : 1000;
    qm_macros macros = {.from = from, .to = to, .interval = interval};
    char f[40], t[40], iv[32];
    iso_ms(from, f, sizeof f);
    iso_ms(to, t, sizeof t);
    qm_format_duration(interval, iv, sizeof iv);
    long long mdp = q->maxdatapoints > 0 ? (long long)q->maxdatapoints : 1000;

    buf_t body, scratch, target;
    buf_init(&body);
    buf_init(&scratch);
    buf_init(&target);
    buf_reserve(&body, 512 + q->json.len);
    buf_printf(&body,
               "{\"range\":{\"from\":\"%s\",\"to\":\"%s\",\"raw\":{\"from\":\"%s\",\"to\":\"%s\"}},"
               "\"rangeRaw\":{\"from\":\"%s\",\"to\":\"%s\"},\"interval\":\"%s\",\"intervalMs\":%lld,"
               "\"maxDataPoints\":%lld,\"targets\":[",
               f, t, f, t, f, t, iv, (long long)interval, mdp);
    qm_rw w;
    memset(&w, 0, sizeof w);
    w.out = &body;
    w.macros = &macros;
    w.scratch = &scratch;
    w.target = &target;
    w.model = true;
    w.refid = q->refid ? q->refid : "";
    int rc = rewrite(&w, q->json.len ? (const char *)q->json.data : "{}", q->json.len ? q->json.len : 2);
    buf_free(&scratch);
    if (rc != 0) {
        snprintf(err, cap, "%s", w.error);
        goto fail;
    }
    out->hide = w.hide;
    if (out->hide) {
        buf_free(&body);
        buf_free(&target);
        return 0;
    }
    if (!w.target_ok) {
        snprintf(err, cap, "the query has no target: set \"target\" (the metric to query) in the query editor");
        goto fail;
    }
    buf_printf(&body,
               "],\"scopedVars\":{\"__interval\":{\"text\":\"%s\",\"value\":\"%s\"},"
               "\"__interval_ms\":{\"text\":\"%lld\",\"value\":\"%lld\"}},\"filters\":[]}",
               iv, iv, (long long)interval, (long long)interval);
    if (!buf_ok(&body) || !buf_ok(&target)) {
        snprintf(err, cap, "out of memory building the request");
        goto fail;
    }
    /* Queued queries keep their body until a connection frees up (an alert
     * storm holds thousands): give back the growth slack. */
    char *fit = realloc(body.data, body.len + 1);
    out->body = fit ? fit : body.data;
    out->target = strndup(target.data, target.len);
    buf_free(&target);
    if (!out->target) {
        free(out->body);
        out->body = NULL;
        snprintf(err, cap, "out of memory building the request");
        return -1;
    }
    return 0;
fail:
    buf_free(&body);
    buf_free(&target);
    return -1;
}

void qm_free(qm_query *q) {
    free(q->target);
    free(q->body);
    q->target = q->body = NULL;
}
