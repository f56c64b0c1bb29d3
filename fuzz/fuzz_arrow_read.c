/*
 * fuzz_arrow_read: the test Arrow IPC file reader (tests/support/arrow_read.c)
 * on arbitrary bytes. It is itself a test tool, so it must never crash, read
 * outside its input or leak, whatever the bytes.
 *
 * Input layout: the whole input is the would-be Arrow file (seeds are small
 * files written by our writer, the SDK's golden file and damaged copies).
 *
 * Checked beyond the sanitizers:
 *   - a failure comes with a non-empty message and no frame;
 *   - a frame that comes out has fields that agree on rows, as many rows as
 *     the batches' lengths add up to, and the schema's names/types/nullability;
 *   - frame_to_json succeeds on it;
 *   - arrow_write_frame writes it, that file follows our layout rules
 *     (ar_check_layout) and reads back equal (ar_frame_diff); writing the
 *     read-back frame again gives byte-identical output.
 *
 * (It screened KNOWN BUG 5 of fuzz/crashes/README.md until src/frames was fixed.)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arrow_read.h"
#include "frames/arrow.h"
#include "frames/frame_json.h"

#include "fuzz_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    ar_file af;
    const char *err = ar_parse(data, size, &af);
    frame_t *f = NULL;
    if (!err) {
        CHECK(af.ok, "parse succeeded without ok");
        err = ar_to_frame(&af, data, size, &f);
    } else {
        CHECK(!af.ok, "parse failed with ok set");
        /* building a frame from a failed parse is refused, not attempted */
        frame_t *g = (frame_t *)1;
        CHECK(ar_to_frame(&af, data, size, &g) != NULL && g == NULL, "ar_to_frame after a failed parse");
    }
    if (err) {
        CHECK(err[0] != '\0', "empty error message");
        CHECK(f == NULL, "a frame and an error");
        ar_file_free(&af);
        return 0;
    }
    CHECK(f != NULL, "no frame and no error");
    int64_t rows = 0;
    for (size_t i = 0; i < af.nbatches; i++) rows += af.batches[i].length;
    CHECK(f->nfields == af.schema.nfields, "%zu fields for %zu in the schema", f->nfields, af.schema.nfields);
    CHECK(f->nfields == 0 || frame_rows(f) == rows, "frame rows %lld, batches %lld", frame_rows(f), (long long)rows);
    for (size_t i = 0; i < f->nfields; i++) {
        const frame_field *x = f->fields[i];
        const ar_field *s = &af.schema.fields[i];
        CHECK(strcmp(x->name, s->name) == 0 && x->type == s->ft && x->nullable == s->nullable,
              "field %zu differs from the schema", i);
        CHECK(!x->failed, "field %zu: a builder failed", i);
    }
    ar_file_free(&af);

    buf_t json;
    buf_init(&json);
    CHECK(frame_to_json(f, &json) == 0, "frame_to_json failed");
    buf_free(&json);

    buf_t out, again;
    buf_init(&out);
    buf_init(&again);
    CHECK(arrow_write_frame(f, &out) == 0, "arrow_write_frame failed on a frame the reader built");
    const char *e = ar_parse((const uint8_t *)out.data, out.len, &af);
    CHECK(e == NULL, "our writer's file does not parse: %s", e);
    char msg[512];
    CHECK(ar_check_layout(&af, (const uint8_t *)out.data, out.len, msg, sizeof msg) == 0, "layout: %s", msg);
    frame_t *back = NULL;
    e = ar_to_frame(&af, (const uint8_t *)out.data, out.len, &back);
    CHECK(e == NULL, "our writer's file does not read: %s", e);
    ar_file_free(&af);
    CHECK(ar_frame_diff(f, back, msg, sizeof msg) == 0, "write/read changed the frame: %s", msg);
    CHECK(arrow_write_frame(back, &again) == 0, "second write failed");
    CHECK(again.len == out.len && memcmp(again.data, out.data, out.len) == 0, "re-written file differs");
    buf_free(&out);
    buf_free(&again);
    frame_free(back);
    frame_free(f);
    return 0;
}
