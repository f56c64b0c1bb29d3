/*
 * Arrow IPC file writer. Layout facts (Arrow columnar format, IPC section):
 * every encapsulated message is 0xFFFFFFFF, an int32 metadata length that
 * keeps the body 8-byte aligned, the flatbuffer Message, then the body; the
 * footer's Blocks give each record batch's offset, metadata length
 * (including the 8-byte prefix) and body length.
 */
#include "arrow.h"

#include <stdlib.h>
#include <string.h>

#include "flatbuf.h"

enum { MSG_SCHEMA = 1, MSG_RECORD_BATCH = 3 };
enum { T_INT = 2, T_FLOAT = 3, T_BINARY = 4, T_UTF8 = 5, T_BOOL = 6, T_TIMESTAMP = 10 };
#define METADATA_V5 4
#define CONTINUATION 0xFFFFFFFFu

typedef struct {
    int64_t offset;
    int32_t meta_len;
    int32_t pad;
    int64_t body_len;
} block_t;

static size_t pad8(size_t n) { return (n + 7) & ~(size_t)7; }

static fb_ref key_value(fb_builder *b, const char *k, const char *v) {
    fb_ref kr = fb_string(b, k, strlen(k));
    fb_ref vr = fb_string(b, v, strlen(v));
    fb_table_start(b);
    fb_add_ref(b, 0, kr);
    fb_add_ref(b, 1, vr);
    return fb_table_end(b);
}

static fb_ref type_table(fb_builder *b, field_type t, uint8_t *type_id) {
    fb_table_start(b);
    switch (t) {
    case FT_INT8: case FT_INT16: case FT_INT32: case FT_INT64:
    case FT_UINT8: case FT_UINT16: case FT_UINT32: case FT_UINT64: case FT_ENUM: {
        *type_id = T_INT;
        bool is_signed = t <= FT_INT64;
        fb_add_i32(b, 0, (int32_t)(field_type_width(t) * 8));
        if (is_signed) fb_add_u8(b, 1, 1);
        break;
    }
    case FT_FLOAT32: *type_id = T_FLOAT; fb_add_i16(b, 0, 1); break;
    case FT_FLOAT64: *type_id = T_FLOAT; fb_add_i16(b, 0, 2); break;
    case FT_TIME: *type_id = T_TIMESTAMP; fb_add_i16(b, 0, 3); break; /* NANOSECOND, no timezone */
    case FT_STRING: *type_id = T_UTF8; break;
    case FT_JSON: *type_id = T_BINARY; break;
    case FT_BOOL: *type_id = T_BOOL; break;
    default: *type_id = T_BINARY; break;
    }
    return fb_table_end(b);
}

static fb_ref field_table(fb_builder *b, const frame_field *fld) {
    fb_ref md[3];
    size_t nmd = 0;
    md[nmd++] = key_value(b, "tstype", field_type_ts_name(fld->type));
    if (fld->labels_json) md[nmd++] = key_value(b, "labels", fld->labels_json);
    if (fld->config_json) md[nmd++] = key_value(b, "config", fld->config_json);
    fb_ref md_vec = fb_vec_refs(b, md, nmd);
    fb_ref children = fb_vec_refs(b, NULL, 0);
    uint8_t type_id = 0;
    fb_ref type = type_table(b, fld->type, &type_id);
    fb_ref name = fb_string(b, fld->name, strlen(fld->name));
    fb_table_start(b);
    fb_add_ref(b, 0, name);
    if (fld->nullable) fb_add_u8(b, 1, 1);
    fb_add_u8(b, 2, type_id);
    fb_add_ref(b, 3, type);
    fb_add_ref(b, 5, children);
    fb_add_ref(b, 6, md_vec);
    return fb_table_end(b);
}

static fb_ref schema_table(fb_builder *b, const frame_t *f) {
    fb_ref *fields = malloc((f->nfields ? f->nfields : 1) * sizeof *fields);
    if (!fields) { b->failed = true; return 0; }
    for (size_t i = 0; i < f->nfields; i++) fields[i] = field_table(b, f->fields[i]);
    fb_ref fields_vec = fb_vec_refs(b, fields, f->nfields);
    free(fields);
    fb_ref md[3];
    size_t nmd = 0;
    md[nmd++] = key_value(b, "name", f->name);
    md[nmd++] = key_value(b, "refId", f->ref_id);
    if (f->meta_json) md[nmd++] = key_value(b, "meta", f->meta_json);
    fb_ref md_vec = fb_vec_refs(b, md, nmd);
    fb_table_start(b);
    fb_add_ref(b, 1, fields_vec);
    fb_add_ref(b, 2, md_vec);
    return fb_table_end(b);
}

static fb_ref message_table(fb_builder *b, uint8_t header_type, fb_ref header, int64_t body_len) {
    fb_table_start(b);
    fb_add_i16(b, 0, METADATA_V5);
    fb_add_u8(b, 1, header_type);
    fb_add_ref(b, 2, header);
    if (body_len) fb_add_i64(b, 3, body_len);
    return fb_table_end(b);
}

/* Writes prefix + flatbuffer + padding so the body that follows is 8-aligned.
 * Returns the metadata length counted in a footer Block (prefix included). */
static int32_t put_message(buf_t *out, fb_builder *b) {
    size_t fb_len = fb_size(b);
    size_t padded = pad8(8 + fb_len) - 8;
    uint32_t cont = CONTINUATION;
    int32_t len = (int32_t)padded;
    buf_append(out, &cont, 4);
    buf_append(out, &len, 4);
    buf_append(out, b->buf + b->head, fb_len);
    static const uint8_t zeros[8];
    buf_append(out, zeros, padded - fb_len);
    return (int32_t)(8 + padded);
}

/* Per column: the Arrow buffers in order, as (pointer, length) pairs. */
typedef struct {
    const uint8_t *ptr;
    size_t len;
} span_t;

static size_t column_spans(const frame_field *fld, span_t *s) {
    size_t n = 0;
    size_t rows = fld->rows;
    /* Validity only when a null exists; the reader then sees null_count 0. */
    s[n++] = (span_t){fld->null_count ? fld->validity.data : NULL, fld->null_count ? (rows + 7) / 8 : 0};
    switch (fld->type) {
    case FT_BOOL: s[n++] = (span_t){fld->values.data, (rows + 7) / 8}; break;
    case FT_STRING: case FT_JSON:
        s[n++] = (span_t){fld->offsets.data, (rows + 1) * 4};
        s[n++] = (span_t){fld->values.data, fld->values.len};
        break;
    default: s[n++] = (span_t){fld->values.data, rows * field_type_width(fld->type)}; break;
    }
    return n;
}

static int record_batch(buf_t *out, fb_builder *b, const frame_t *f, size_t rows, block_t *blk) {
    size_t nbuf_max = f->nfields * 3;
    int64_t *nodes = malloc((f->nfields ? f->nfields : 1) * 16);
    int64_t *bufs = malloc((nbuf_max ? nbuf_max : 1) * 16);
    span_t *spans = malloc((nbuf_max ? nbuf_max : 1) * sizeof *spans);
    if (!nodes || !bufs || !spans) { free(nodes); free(bufs); free(spans); return -1; }
    size_t nspans = 0, body = 0;
    for (size_t i = 0; i < f->nfields; i++) {
        const frame_field *fld = f->fields[i];
        nodes[i * 2] = (int64_t)rows;
        nodes[i * 2 + 1] = (int64_t)fld->null_count;
        size_t k = column_spans(fld, spans + nspans);
        for (size_t j = 0; j < k; j++) {
            bufs[(nspans + j) * 2] = (int64_t)body;
            bufs[(nspans + j) * 2 + 1] = (int64_t)spans[nspans + j].len;
            body += pad8(spans[nspans + j].len);
        }
        nspans += k;
    }
    fb_reset(b);
    fb_ref buf_vec = fb_vec_structs(b, bufs, 16, nspans, 8);
    fb_ref node_vec = fb_vec_structs(b, nodes, 16, f->nfields, 8);
    fb_table_start(b);
    fb_add_i64(b, 0, (int64_t)rows);
    fb_add_ref(b, 1, node_vec);
    fb_add_ref(b, 2, buf_vec);
    fb_ref rb = fb_table_end(b);
    fb_finish(b, message_table(b, MSG_RECORD_BATCH, rb, (int64_t)body), 8);
    free(nodes);
    free(bufs);
    if (!fb_ok(b)) { free(spans); return -1; }

    blk->offset = (int64_t)out->len;
    blk->meta_len = put_message(out, b);
    blk->pad = 0;
    blk->body_len = (int64_t)body;
    /* The body: each buffer once, zero-padded to 8. */
    if (!buf_reserve(out, body)) { free(spans); return -1; }
    for (size_t i = 0; i < nspans; i++) {
        size_t len = spans[i].len, padded = pad8(len);
        if (len) memcpy(out->data + out->len, spans[i].ptr, len);
        memset(out->data + out->len + len, 0, padded - len);
        out->len += padded;
    }
    free(spans);
    return 0;
}

int arrow_write_frame(const frame_t *f, buf_t *out) {
    long long rows = frame_rows(f);
    if (rows < 0) return -1;
    for (size_t i = 0; i < f->nfields; i++)
        if (f->fields[i]->failed) return -1;
    size_t start = out->len;
    fb_builder b;
    fb_init(&b);
    int rc = -1;

    buf_append(out, "ARROW1\0\0", 8);
    fb_finish(&b, message_table(&b, MSG_SCHEMA, schema_table(&b, f), 0), 8);
    if (!fb_ok(&b)) goto done;
    put_message(out, &b);

    block_t blk;
    size_t nblocks = 0;
    if (rows > 0) {
        if (record_batch(out, &b, f, (size_t)rows, &blk) != 0) goto done;
        /* Offsets in the footer are relative to the file start. */
        blk.offset -= (int64_t)start;
        nblocks = 1;
    }
    uint32_t eos[2] = {CONTINUATION, 0};
    buf_append(out, eos, 8);

    fb_reset(&b);
    fb_ref batches = fb_vec_structs(&b, &blk, sizeof blk, nblocks, 8);
    fb_ref dicts = fb_vec_structs(&b, NULL, sizeof blk, 0, 8);
    fb_ref schema = schema_table(&b, f);
    fb_table_start(&b);
    fb_add_i16(&b, 0, METADATA_V5);
    fb_add_ref(&b, 1, schema);
    fb_add_ref(&b, 2, dicts);
    fb_add_ref(&b, 3, batches);
    fb_finish(&b, fb_table_end(&b), 8);
    if (!fb_ok(&b)) goto done;
    int32_t footer_len = (int32_t)fb_size(&b);
    buf_append(out, b.buf + b.head, fb_size(&b));
    buf_append(out, &footer_len, 4);
    buf_append(out, "ARROW1", 6);
    rc = buf_ok(out) ? 0 : -1;
done:
    fb_free(&b);
    if (rc != 0) out->len = start;
    return rc;
}
