/*
 * flatbuf: a minimal FlatBuffers builder, just enough to write Arrow IPC
 * metadata (Message, Schema, RecordBatch, Footer).
 *
 * Built back to front like the reference builders: children first, then the
 * tables that point at them, so every offset points forward. A "ref" is a
 * distance from the end of the buffer, stable while the buffer grows at the
 * front. Alignment is tracked so the finished buffer can be placed at any
 * 8-byte-aligned position.
 *
 * Errors (out of memory) are sticky: check fb_ok() once after fb_finish.
 */
#ifndef FLATBUF_H
#define FLATBUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FB_MAX_SLOTS 16

typedef uint32_t fb_ref;

typedef struct {
    uint8_t *buf;        /* data lives in buf[head .. cap) */
    size_t cap;
    size_t head;
    size_t minalign;
    bool failed;
    /* the table being built */
    bool in_table;
    size_t table_start;  /* size() when the table started */
    fb_ref slots[FB_MAX_SLOTS];
    int nslots;
} fb_builder;

void fb_init(fb_builder *b);
void fb_free(fb_builder *b);
void fb_reset(fb_builder *b);
static inline bool fb_ok(const fb_builder *b) { return !b->failed; }
static inline size_t fb_size(const fb_builder *b) { return b->cap - b->head; }

fb_ref fb_string(fb_builder *b, const char *s, size_t len);
fb_ref fb_vec_refs(fb_builder *b, const fb_ref *refs, size_t n);
/* Vector of fixed-size structs already laid out little-endian in `data`. */
fb_ref fb_vec_structs(fb_builder *b, const void *data, size_t elem_size, size_t n, size_t align);

void fb_table_start(fb_builder *b);
void fb_add_u8(fb_builder *b, int slot, uint8_t v);
void fb_add_i16(fb_builder *b, int slot, int16_t v);
void fb_add_i32(fb_builder *b, int slot, int32_t v);
void fb_add_i64(fb_builder *b, int slot, int64_t v);
void fb_add_ref(fb_builder *b, int slot, fb_ref ref);
fb_ref fb_table_end(fb_builder *b);

/* Writes the root offset; pads the total size to a multiple of `align`.
 * Returns a pointer to the finished bytes (fb_size(b) long). */
const uint8_t *fb_finish(fb_builder *b, fb_ref root, size_t align);

#endif
