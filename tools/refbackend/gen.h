/*
 * gen: the reference backend's answers, independent of the network.
 *
 * Parses request bodies (a streaming yajl parse for /query, no document
 * tree) and writes deterministic JSON answers into a buf_t. The server
 * (refbackend.c) decides how the bytes travel: delays, status codes,
 * truncation, resets and streaming are its business; this module only
 * describes them in an rb_behaviour.
 */
#ifndef RB_GEN_H
#define RB_GEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

typedef enum {
    RB_MODE_NONE = 0,
    RB_MODE_MALFORMED,
    RB_MODE_TRUNCATE,
    RB_MODE_HUGE,
    RB_MODE_RESET,
    RB_MODE_HANG,
    RB_MODE_DRIP,
    RB_MODE_CHUNKED,
} rb_mode;

/* encoding=<name>: how the body is compressed (Content-Encoding). */
typedef enum {
    RB_ENC_NONE = 0,
    RB_ENC_GZIP,        /* gzip */
    RB_ENC_DEFLATE,     /* deflate: the zlib format (RFC 1950), as HTTP defines it */
    RB_ENC_DEFLATE_RAW, /* deflate-raw: says deflate, sends raw deflate (RFC 1951) as some servers do */
    RB_ENC_BR,          /* br: says br, sends bytes that are no brotli stream */
} rb_encoding;

/* What the `?...` suffix of a target asked for. */
typedef struct {
    bool present;         /* the target carried a query string */
    uint64_t latency_ms;  /* latency=<dur> */
    int status;           /* status=<code>, 0 when absent */
    rb_mode mode;         /* mode=<name> */
    bool chunked;         /* mode=chunked or chunked=1 */
    uint64_t huge_bytes;  /* bytes=<n> for mode=huge */
    uint32_t drip_bytes;  /* drip_bytes=<n>, bytes per tick of mode=drip */
    uint32_t drip_ms;     /* drip_ms=<n>, the tick of mode=drip */
    rb_encoding encoding; /* encoding=<name> */
    bool corrupt;         /* corrupt=1: the compressed stream gets a bad byte */
} rb_behaviour;

/* The time frame of a /query after defaults and clamping. */
typedef struct {
    int64_t from_ms, to_ms;
    int64_t interval_ms; /* >= 1 */
    int64_t max_points;  /* >= 1 */
} rb_range;

/*
 * Answers a /query body. Returns the HTTP status: 200 with the answer in out
 * and the deciding behaviour in beh (beh->present false when none), or 400
 * with a JSON error in out. When beh->status is set out holds the injected
 * error body; with mode=huge out is empty (the server streams rb_huge);
 * with mode=malformed out holds invalid JSON.
 */
int rb_query(const char *body, size_t len, buf_t *out, rb_behaviour *beh, rb_range *range);

/* The editor endpoints; each returns the HTTP status with the body in out. */
int rb_metrics(const char *body, size_t len, buf_t *out);
int rb_metric_payload_options(const char *body, size_t len, buf_t *out);
int rb_variable(const char *body, size_t len, buf_t *out);
int rb_tag_keys(const char *body, size_t len, buf_t *out);
int rb_tag_values(const char *body, size_t len, buf_t *out);
int rb_search(const char *body, size_t len, buf_t *out);

/* {"error":"<msg>"} */
void rb_error_json(buf_t *out, const char *msg);

/*
 * mode=huge: one valid time series of about `bytes` bytes whose exact length
 * is known up front (fixed-width points), produced piece by piece so that it
 * is never held whole in memory.
 */
typedef struct {
    uint64_t npoints, next;
    int64_t base, step;
    int phase; /* 0 prefix, 1 points, 2 suffix, 3 done */
    size_t off;
} rb_huge;

void rb_huge_init(rb_huge *h, uint64_t bytes, const rb_range *r);
uint64_t rb_huge_length(const rb_huge *h);
/* Writes the next bytes into dst (cap >= 64); returns how many, 0 when done. */
size_t rb_huge_produce(rb_huge *h, char *dst, size_t cap);

/* Frees the parser's reusable scratch (at exit, for leak checkers). */
void rb_gen_cleanup(void);

/* The value of series i at ts: sin(2*pi*(ts mod 3600000)/3600000 + i*pi/8). */
double rb_sine(int64_t ts_ms, uint64_t i);

#endif
