/*
 * fuzz_grpc_deframer: the gRPC length-prefixed message deframer.
 *
 * Input layout:
 *   [0..1]  max_msg (big-endian, taken modulo 2049: small caps on purpose)
 *   [2]     number of split points k (modulo 16)
 *   [3..3+k) chunk lengths (0..255; 0 feeds an empty chunk)
 *   rest    the DATA payload bytes
 *
 * The payload is parsed by a tiny reference model written here, then fed to
 * the deframer three ways: whole, split by the plan, and whole with a
 * callback that stops after the first message. Checked:
 *   - every delivered message has length <= max_msg and equals the model's;
 *   - the same messages (count, order, bytes) and the same final result
 *     whichever way the bytes were split;
 *   - after each chunk, grpc_deframer_at_boundary() is true exactly when the
 *     bytes fed so far end on a message boundary, and `messages` counts the
 *     complete messages so far;
 *   - a callback returning non-zero stops the feed with GRPC_DEFRAME_OK.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "h2/grpc_wire.h"

#include "fuzz_check.h"

typedef struct {
    size_t off, len; /* message body inside the payload */
    size_t end;      /* payload offset just after the message */
} ref_msg;

typedef struct {
    ref_msg *msgs;
    size_t n;
    grpc_deframe_result result; /* what the whole stream ends with */
    size_t error_at;            /* payload offset where the error is detected */
    bool boundary;              /* stream ends on a message boundary (no error) */
} ref_model;

static void ref_parse(ref_model *m, const uint8_t *p, size_t len, size_t max_msg) {
    memset(m, 0, sizeof *m);
    m->msgs = calloc(len / GRPC_PREFIX_LEN + 1, sizeof *m->msgs);
    CHECK(m->msgs != NULL, "out of memory");
    m->result = GRPC_DEFRAME_OK;
    size_t pos = 0;
    while (pos < len) {
        if (len - pos < GRPC_PREFIX_LEN) break;
        uint32_t n = ((uint32_t)p[pos + 1] << 24) | ((uint32_t)p[pos + 2] << 16) |
                     ((uint32_t)p[pos + 3] << 8) | p[pos + 4];
        grpc_deframe_result err = GRPC_DEFRAME_OK;
        if (p[pos] == 1) err = GRPC_DEFRAME_COMPRESSED;
        else if (p[pos] != 0) err = GRPC_DEFRAME_BAD_FLAG;
        else if (n > max_msg) err = GRPC_DEFRAME_TOO_LARGE;
        if (err != GRPC_DEFRAME_OK) {
            m->result = err;
            m->error_at = pos + GRPC_PREFIX_LEN;
            return;
        }
        if (len - pos - GRPC_PREFIX_LEN < n) break;
        m->msgs[m->n].off = pos + GRPC_PREFIX_LEN;
        m->msgs[m->n].len = n;
        m->msgs[m->n].end = pos + GRPC_PREFIX_LEN + n;
        m->n++;
        pos += GRPC_PREFIX_LEN + n;
    }
    m->boundary = pos == len;
}

typedef struct {
    const ref_model *ref;
    const uint8_t *payload;
    size_t max_msg;
    size_t seen;      /* messages delivered so far */
    size_t stop_after; /* 0: never stop */
} feed_ctx;

static int on_msg(void *arg, const uint8_t *msg, size_t len) {
    feed_ctx *f = arg;
    CHECK(len <= f->max_msg, "message of %zu bytes delivered with max_msg %zu", len, f->max_msg);
    CHECK(f->seen < f->ref->n, "more messages (%zu) than the model has (%zu)", f->seen + 1, f->ref->n);
    const ref_msg *r = &f->ref->msgs[f->seen];
    CHECK(len == r->len, "message %zu: length %zu, model %zu", f->seen, len, r->len);
    CHECK(len == 0 || memcmp(msg, f->payload + r->off, len) == 0, "message %zu: bytes differ", f->seen);
    f->seen++;
    return f->stop_after && f->seen >= f->stop_after;
}

/* Number of model messages complete within the first `off` payload bytes. */
static size_t msgs_before(const ref_model *m, size_t off) {
    size_t k = 0;
    while (k < m->n && m->msgs[k].end <= off) k++;
    return k;
}

static bool is_boundary(const ref_model *m, size_t off) {
    if (off == 0) return true;
    for (size_t k = 0; k < m->n; k++)
        if (m->msgs[k].end == off) return true;
    return false;
}

/* Feeds payload in the given chunks; returns the first non-OK result. */
static grpc_deframe_result feed_plan(const ref_model *ref, const uint8_t *payload, size_t len, size_t max_msg,
                                     const uint8_t *plan, size_t nplan, size_t *seen) {
    grpc_deframer d;
    grpc_deframer_init(&d, max_msg);
    feed_ctx f = {.ref = ref, .payload = payload, .max_msg = max_msg};
    size_t off = 0;
    grpc_deframe_result r = GRPC_DEFRAME_OK;
    for (size_t i = 0; i <= nplan && r == GRPC_DEFRAME_OK; i++) {
        size_t chunk = i < nplan ? plan[i] : len - off; /* the tail goes last */
        if (chunk > len - off) chunk = len - off;
        r = grpc_deframer_feed(&d, payload + off, chunk, on_msg, &f);
        if (r != GRPC_DEFRAME_OK) {
            /* The error is detected when the offending prefix completes. */
            CHECK(ref->result == r, "result %d, model %d", (int)r, (int)ref->result);
            CHECK(ref->error_at > off && ref->error_at <= off + chunk,
                  "error %d in chunk [%zu,%zu), model detects it at %zu", (int)r, off, off + chunk, ref->error_at);
            CHECK(f.seen == msgs_before(ref, ref->error_at), "messages before the error: %zu vs %zu", f.seen,
                  msgs_before(ref, ref->error_at));
            break;
        }
        off += chunk;
        CHECK(ref->result == GRPC_DEFRAME_OK || off < ref->error_at, "missed error %d at %zu (fed %zu)",
              (int)ref->result, ref->error_at, off);
        CHECK(d.messages == f.seen, "messages counter %zu, callbacks %zu", d.messages, f.seen);
        CHECK(f.seen == msgs_before(ref, off), "after %zu bytes: %zu messages, model %zu", off, f.seen,
              msgs_before(ref, off));
        CHECK(grpc_deframer_at_boundary(&d) == is_boundary(ref, off), "at_boundary %d after %zu bytes",
              (int)grpc_deframer_at_boundary(&d), off);
    }
    if (r == GRPC_DEFRAME_OK) {
        CHECK(off == len, "fed %zu of %zu bytes", off, len);
        CHECK(grpc_deframer_at_boundary(&d) == ref->boundary, "final at_boundary %d, model %d",
              (int)grpc_deframer_at_boundary(&d), (int)ref->boundary);
    }
    *seen = f.seen;
    grpc_deframer_free(&d);
    return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 3) return 0;
    size_t max_msg = (((size_t)data[0] << 8) | data[1]) % 2049;
    size_t nplan = data[2] % 16;
    if (size < 3 + nplan) return 0;
    const uint8_t *plan = data + 3;
    const uint8_t *payload = data + 3 + nplan;
    size_t len = size - 3 - nplan;

    ref_model ref;
    ref_parse(&ref, payload, len, max_msg);

    size_t seen_whole, seen_split;
    grpc_deframe_result whole = feed_plan(&ref, payload, len, max_msg, NULL, 0, &seen_whole);
    grpc_deframe_result split = feed_plan(&ref, payload, len, max_msg, plan, nplan, &seen_split);
    CHECK(whole == split, "whole feed %d, split feed %d", (int)whole, (int)split);
    CHECK(seen_whole == seen_split, "whole feed %zu messages, split feed %zu", seen_whole, seen_split);
    CHECK(whole == ref.result, "result %d, model %d", (int)whole, (int)ref.result);

    /* A callback asking to stop ends the feed at once, successfully. */
    grpc_deframer d;
    grpc_deframer_init(&d, max_msg);
    feed_ctx f = {.ref = &ref, .payload = payload, .max_msg = max_msg, .stop_after = 1};
    grpc_deframe_result r = grpc_deframer_feed(&d, payload, len, on_msg, &f);
    if (ref.n >= 1) {
        CHECK(r == GRPC_DEFRAME_OK && f.seen == 1 && d.messages == 1, "stop: result %d after %zu messages",
              (int)r, f.seen);
    } else {
        CHECK(r == ref.result && f.seen == 0, "stop: result %d, model %d", (int)r, (int)ref.result);
    }
    grpc_deframer_free(&d);

    free(ref.msgs);
    return 0;
}
