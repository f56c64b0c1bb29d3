/*
 * hclog: structured log lines in HashiCorp hclog's JSON format on stderr.
 *
 * Grafana (through go-plugin) parses every stderr line of a plugin as an
 * hclog JSON record: "@level", "@message" and "@timestamp" must be JSON
 * strings, other keys become key/value pairs on Grafana's own log line.
 * This module is a leaf: every layer may log, it depends on nothing.
 *
 * Lines are written whole with one write(2) each so they never interleave.
 * Never pass secrets as values: there is no redaction here by design, the
 * caller decides what is loggable.
 */
#ifndef HCLOG_H
#define HCLOG_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    HCLOG_TRACE = 0,
    HCLOG_DEBUG,
    HCLOG_INFO,
    HCLOG_WARN,
    HCLOG_ERROR,
    HCLOG_OFF
} hclog_level;

typedef enum { HCLOG_KV_NONE = 0, HCLOG_KV_STR, HCLOG_KV_INT, HCLOG_KV_DBL } hclog_kv_type;

typedef struct {
    const char *key;
    hclog_kv_type type;
    const char *s;
    int64_t i;
    double d;
} hclog_kv;

#define HKV_S(k, v) ((hclog_kv){.key = (k), .type = HCLOG_KV_STR, .s = (v)})
#define HKV_I(k, v) ((hclog_kv){.key = (k), .type = HCLOG_KV_INT, .i = (int64_t)(v)})
#define HKV_D(k, v) ((hclog_kv){.key = (k), .type = HCLOG_KV_DBL, .d = (double)(v)})

/* Module name written as "@module"; the level threshold. */
void hclog_init(const char *module, hclog_level min_level);
/* "trace".."error"/"off", case-insensitive; returns -1 when unknown. */
int hclog_level_parse(const char *name);
const char *hclog_level_name(hclog_level level);
int hclog_enabled(hclog_level level);

/* Writes one line; kvs[0] is skipped (the macro's placeholder). */
void hclog_emit(hclog_level level, const char *msg, const hclog_kv *kvs, size_t nkv);

/* Formats one record into buf (without writing it); returns its length
 * including the trailing newline, truncating long values so the line always
 * stays valid JSON and fits in cap bytes (cap >= 256). Exposed for tests. */
size_t hclog_format(char *buf, size_t cap, hclog_level level, const char *msg,
                    const hclog_kv *kvs, size_t nkv, int64_t unix_us);

#define HCLOG_AT(lvl, msg, ...)                                                  \
    do {                                                                         \
        if (hclog_enabled(lvl)) {                                                \
            const hclog_kv hclog_kvs_[] = {{0}, __VA_ARGS__};                    \
            hclog_emit((lvl), (msg), hclog_kvs_,                                 \
                       sizeof hclog_kvs_ / sizeof hclog_kvs_[0]);                \
        }                                                                        \
    } while (0)

#define LOG_TRACE(msg, ...) HCLOG_AT(HCLOG_TRACE, msg, __VA_ARGS__)
#define LOG_DEBUG(msg, ...) HCLOG_AT(HCLOG_DEBUG, msg, __VA_ARGS__)
#define LOG_INFO(msg, ...) HCLOG_AT(HCLOG_INFO, msg, __VA_ARGS__)
#define LOG_WARN(msg, ...) HCLOG_AT(HCLOG_WARN, msg, __VA_ARGS__)
#define LOG_ERROR(msg, ...) HCLOG_AT(HCLOG_ERROR, msg, __VA_ARGS__)

#endif
