/*
 * fuzz_convert: the streaming converter (src/frames/convert.c), backend
 * /query body → frames.
 *
 * Input layout: the whole input is the HTTP body. The split plan comes from
 * a PRNG seeded with a hash of the input, so seeds stay plain JSON files:
 * chunks of 0 (an empty feed), 1, or 2..64 bytes. The hash also picks the
 * query string (NULL or "q:1") passed to conv_new.
 *
 * The body goes to two converters: one gets it whole, one in the chunks.
 * Checked:
 *   - both succeed or both fail; on failure both have the same error
 *     message (non-empty; JSON syntax errors compared without their byte
 *     offset, KNOWN BUG 4), conv_take_frames gives nothing, and a later
 *     conv_feed/conv_finish keeps failing with the same message;
 *   - on success both give the same number of frames, and each pair has
 *     byte-identical Arrow files (arrow_write_frame);
 *   - each Arrow file follows our layout rules and reads back with our
 *     reader (tests/support) to an equal frame: rows, fields, types,
 *     nullability, names, labels, config, meta, every value and null;
 *   - every frame name, field name and string value is valid UTF-8
 *     (Arrow Utf8 requires it; bug 7 was a lone surrogate escape);
 *   - frame_to_json succeeds and frame_from_json reads its output back to
 *     an equal frame (converter strings and sub-documents come from yajl,
 *     so nothing should be lost in JSON; bug 10 was an embedded NUL).
 *
 * Bugs 1, 2, 5, 6, 7, 9 and 10 are fixed. Bug 4 (syntax error offsets) is
 * still screened; FUZZ_KNOWN_BUGS=1 in the environment turns the screen off
 * to reproduce it.
 */
#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arrow_read.h"
#include "frames/arrow.h"
#include "frames/convert.h"
#include "frames/frame_json.h"

#include "fuzz_check.h"

static bool screens = true;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    const char *k = getenv("FUZZ_KNOWN_BUGS");
    screens = !(k && *k == '1');
    return 0;
}

/* KNOWN BUG 4: a JSON syntax error's "at byte N" depends on the split when
 * the offending token straddles two chunks (yajl buffers the partial token
 * and yajl_get_bytes_consumed counts in the current chunk only). Screen:
 * syntax errors compare without the byte offset. */
static const char *without_offset(const char *msg) {
    static const char prefix[] = "response is not valid JSON at byte ";
    if (!screens || strncmp(msg, prefix, sizeof prefix - 1) != 0) return msg;
    msg += sizeof prefix - 1;
    while (isdigit((unsigned char)*msg)) msg++;
    return msg;
}

/* Strict UTF-8: no overlong forms, surrogates or code points past
 * U+10FFFF. Written here rather than calling jsonw_utf8_valid: the converter
 * decides what to sanitize with that function, so it cannot be the oracle. */
static bool utf8_ok(const uint8_t *p, size_t n) {
    for (size_t i = 0; i < n;) {
        uint8_t c = p[i];
        size_t len;
        uint32_t cp;
        if (c < 0x80) { i++; continue; }
        if ((c & 0xE0) == 0xC0) { len = 2; cp = c & 0x1F; }
        else if ((c & 0xF0) == 0xE0) { len = 3; cp = c & 0x0F; }
        else if ((c & 0xF8) == 0xF0) { len = 4; cp = c & 0x07; }
        else return false;
        if (n - i < len) return false;
        for (size_t k = 1; k < len; k++) {
            if ((p[i + k] & 0xC0) != 0x80) return false;
            cp = (cp << 6) | (p[i + k] & 0x3F);
        }
        if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
            (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF)
            return false;
        i += len;
    }
    return true;
}

static bool frame_utf8_ok(const frame_t *f) {
    if (!utf8_ok((const uint8_t *)f->name, strlen(f->name))) return false;
    for (size_t i = 0; i < f->nfields; i++) {
        const frame_field *x = f->fields[i];
        if (!utf8_ok((const uint8_t *)x->name, strlen(x->name))) return false;
        if (x->type != FT_STRING) continue;
        for (size_t r = 0; r < x->rows; r++) {
            int32_t a, b;
            memcpy(&a, x->offsets.data + 4 * r, 4);
            memcpy(&b, x->offsets.data + 4 * (r + 1), 4);
            if (b > a && !utf8_ok(x->values.data + a, (size_t)(b - a))) return false;
        }
    }
    return true;
}

typedef struct {
    int rc;
    char error[600];
    frame_t **frames;
    size_t n;
} result_t;

static void finish(conv_t *c, int rc, result_t *r) {
    if (rc == 0) rc = conv_finish(c);
    r->rc = rc;
    if (rc != 0) {
        const char *e = conv_error(c);
        CHECK(e != NULL, "failure without a message");
        snprintf(r->error, sizeof r->error, "%s", e);
        size_t n = 99;
        CHECK(conv_take_frames(c, &n) == NULL && n == 0, "frames handed out after a failure");
        uint8_t x = '[';
        CHECK(conv_feed(c, &x, 1) == -1, "feed after a failure succeeded");
        CHECK(conv_finish(c) == -1, "finish after a failure succeeded");
        CHECK(strcmp(conv_error(c), r->error) == 0, "the error changed after a failure");
    } else {
        CHECK(conv_error(c) == NULL, "success with an error message");
        r->frames = conv_take_frames(c, &r->n);
        CHECK(r->n == 0 || r->frames != NULL, "frames missing");
        size_t n2 = 99;
        frame_t **again = conv_take_frames(c, &n2);
        CHECK(n2 == 0, "frames handed out twice");
        free(again);
    }
    conv_free(c);
}

static void result_free(result_t *r) {
    for (size_t i = 0; i < r->n; i++) frame_free(r->frames[i]);
    free(r->frames);
}

static void check_frame(frame_t *f, const buf_t *arrow, size_t idx) {
    char msg[600];
    CHECK(frame_rows(f) >= 0, "frame %zu: fields disagree on rows", idx);
    ar_file af;
    const char *e = ar_parse((const uint8_t *)arrow->data, arrow->len, &af);
    CHECK(e == NULL, "frame %zu: our reader refuses the file: %s", idx, e);
    CHECK(ar_check_layout(&af, (const uint8_t *)arrow->data, arrow->len, msg, sizeof msg) == 0, "frame %zu: layout: %s",
          idx, msg);
    frame_t *back = NULL;
    e = ar_to_frame(&af, (const uint8_t *)arrow->data, arrow->len, &back);
    CHECK(e == NULL, "frame %zu: our reader cannot build the frame: %s", idx, e);
    CHECK(frame_rows(back) == frame_rows(f) && back->nfields == f->nfields, "frame %zu: shape differs", idx);
    for (size_t i = 0; i < f->nfields; i++)
        CHECK(back->fields[i]->type == f->fields[i]->type, "frame %zu, field %zu: type %s read back as %s", idx, i,
              field_type_go_name(f->fields[i]->type), field_type_go_name(back->fields[i]->type));
    CHECK(ar_frame_diff(f, back, msg, sizeof msg) == 0, "frame %zu: Arrow round trip: %s", idx, msg);
    frame_free(back);
    ar_file_free(&af);
    CHECK(frame_utf8_ok(f), "frame %zu: a name or string value is not UTF-8", idx);

    buf_t json;
    buf_init(&json);
    CHECK(frame_to_json(f, &json) == 0, "frame %zu: frame_to_json failed", idx);
    buf_append(&json, "", 1);
    CHECK(buf_ok(&json), "oom");
    { /* bug 2 fixed: every time reads back */
        frame_t *fj = NULL;
        char err[256];
        CHECK(frame_from_json(json.data, &fj, err, sizeof err) == 0, "frame %zu: our JSON does not read back: %s: %.300s",
              idx, err, json.data);
        CHECK(ar_frame_diff(f, fj, msg, sizeof msg) == 0, "frame %zu: JSON round trip: %s", idx, msg);
        frame_free(fj);
    }
    buf_free(&json);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* bugs 1 and 6 are fixed: no input is screened for them any more */
    uint64_t seed = fuzz_hash(data, size);
    const char *query = (seed & 1) ? "q:1" : NULL;

    result_t whole = {0}, split = {0};
    conv_t *c = conv_new("A", query);
    CHECK(c != NULL, "oom");
    finish(c, conv_feed(c, data, size), &whole);

    c = conv_new("A", query);
    CHECK(c != NULL, "oom");
    uint64_t s = seed;
    int rc = 0;
    size_t off = 0;
    while (off < size && rc == 0) {
        uint64_t r = fuzz_next(&s);
        size_t n = (r & 7) == 0 ? 0 : (r & 7) < 3 ? 1 : 2 + (size_t)((r >> 3) % 63);
        if (n > size - off) n = size - off;
        rc = conv_feed(c, data + off, n);
        off += n;
    }
    finish(c, rc, &split);

    CHECK(whole.rc == split.rc, "whole %s, split %s (%s%s)", whole.rc ? "failed" : "succeeded",
          split.rc ? "failed" : "succeeded", whole.rc ? whole.error : "", split.rc ? split.error : "");
    if (whole.rc != 0) {
        CHECK(whole.error[0] != '\0', "empty error");
        CHECK(strcmp(without_offset(whole.error), without_offset(split.error)) == 0,
              "errors differ:\n  whole: %s\n  split: %s", whole.error, split.error);
        return 0;
    }
    CHECK(whole.n == split.n, "%zu frames whole, %zu split", whole.n, split.n);
    for (size_t i = 0; i < whole.n; i++) {
        buf_t a, b;
        buf_init(&a);
        buf_init(&b);
        CHECK(arrow_write_frame(whole.frames[i], &a) == 0, "frame %zu: arrow_write_frame failed (whole)", i);
        CHECK(arrow_write_frame(split.frames[i], &b) == 0, "frame %zu: arrow_write_frame failed (split)", i);
        CHECK(a.len == b.len && memcmp(a.data, b.data, a.len) == 0, "frame %zu: Arrow bytes differ whole vs split", i);
        check_frame(whole.frames[i], &a, i);
        buf_free(&a);
        buf_free(&b);
    }
    result_free(&whole);
    result_free(&split);
    return 0;
}
