/*
 * hclog JSON writer. Formatting is pure (hclog_format) so tests can check
 * escaping byte for byte; emitting is one write(2) of one whole line.
 */
#include "hclog.h"

#include "../util/jsonw.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define HCLOG_LINE_MAX 8192

static const char *g_module = "plugin";
static hclog_level g_min_level = HCLOG_INFO;

static const char *const level_names[] = {"trace", "debug", "info", "warn", "error", "off"};

void hclog_init(const char *module, hclog_level min_level) {
    if (module) g_module = module;
    g_min_level = min_level;
}

int hclog_level_parse(const char *name) {
    if (!name) return -1;
    for (int i = 0; i <= HCLOG_OFF; i++)
        if (strcasecmp(name, level_names[i]) == 0) return i;
    if (strcasecmp(name, "warning") == 0) return HCLOG_WARN;
    return -1;
}

const char *hclog_level_name(hclog_level level) {
    return (level >= HCLOG_TRACE && level <= HCLOG_OFF) ? level_names[level] : "info";
}

int hclog_enabled(hclog_level level) { return level >= g_min_level && level < HCLOG_OFF; }

typedef struct {
    char *buf;
    size_t cap; /* bytes usable for content, tail reserved by the caller */
    size_t len;
    int cut;
} line_t;

static void put_raw(line_t *l, const char *s, size_t n) {
    if (l->cut) return;
    if (l->len + n > l->cap) { l->cut = 1; return; }
    memcpy(l->buf + l->len, s, n);
    l->len += n;
}

/* A JSON string; when it does not fit, a truncated but valid string. */
static void put_str(line_t *l, const char *s) {
    if (l->cut) return;
    size_t n = strlen(s);
    put_raw(l, "\"", 1);
    if (l->cut) return;
    /* Leave room for the closing quote and the "..." marker. */
    size_t room = l->cap - l->len;
    if (room < 5) { l->cut = 1; return; }
    if (jsonw_escape(l->buf, l->len + room - 4, &l->len, s, n) != 0)
        put_raw(l, "...", 3);
    put_raw(l, "\"", 1);
}

static void put_key(line_t *l, const char *key) {
    put_raw(l, ",", 1);
    put_str(l, key);
    put_raw(l, ":", 1);
}

size_t hclog_format(char *buf, size_t cap, hclog_level level, const char *msg,
                    const hclog_kv *kvs, size_t nkv, int64_t unix_us) {
    /* Reserve room for the closing "}\n" so the line is always complete. */
    line_t l = {.buf = buf, .cap = cap - 2, .len = 0, .cut = 0};
    char ts[40];
    time_t secs = (time_t)(unix_us / 1000000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    size_t tl = strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts + tl, sizeof ts - tl, ".%06ldZ", (long)(unix_us % 1000000));

    put_raw(&l, "{\"@level\":\"", 11);
    put_raw(&l, hclog_level_name(level), strlen(hclog_level_name(level)));
    put_raw(&l, "\",\"@timestamp\":\"", 16);
    put_raw(&l, ts, strlen(ts));
    put_raw(&l, "\",\"@module\":", 12);
    put_str(&l, g_module);
    put_raw(&l, ",\"@message\":", 12);
    put_str(&l, msg ? msg : "");
    for (size_t i = 1; i < nkv && !l.cut; i++) {
        const hclog_kv *kv = &kvs[i];
        if (!kv->key || kv->type == HCLOG_KV_NONE) continue;
        size_t mark = l.len;
        char num[40];
        put_key(&l, kv->key);
        switch (kv->type) {
        case HCLOG_KV_STR:
            put_str(&l, kv->s ? kv->s : "");
            break;
        case HCLOG_KV_INT:
            snprintf(num, sizeof num, "%lld", (long long)kv->i);
            put_raw(&l, num, strlen(num));
            break;
        case HCLOG_KV_DBL:
            if (isfinite(kv->d)) snprintf(num, sizeof num, "%.6g", kv->d);
            else snprintf(num, sizeof num, "null");
            put_raw(&l, num, strlen(num));
            break;
        default:
            break;
        }
        if (l.cut) { l.len = mark; break; } /* drop the half-written pair */
    }
    memcpy(buf + l.len, "}\n", 2);
    return l.len + 2;
}

void hclog_emit(hclog_level level, const char *msg, const hclog_kv *kvs, size_t nkv) {
    if (!hclog_enabled(level)) return;
    char line[HCLOG_LINE_MAX];
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    int64_t us = (int64_t)now.tv_sec * 1000000 + now.tv_nsec / 1000;
    size_t n = hclog_format(line, sizeof line, level, msg, kvs, nkv, us);
    /* One write per line; retry only on EINTR. A full pipe blocks here:
     * Grafana drains stderr continuously, and losing error lines silently
     * would be worse. */
    size_t off = 0;
    while (off < n) {
        ssize_t w = write(STDERR_FILENO, line + off, n - off);
        if (w < 0) {
            if (errno == EINTR) continue;
            return;
        }
        off += (size_t)w;
    }
}
