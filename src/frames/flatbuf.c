/*
 * Little-endian hosts only (x86-64, arm64): scalars are copied as they are
 * in memory, which is the FlatBuffers wire order there.
 */
#include "flatbuf.h"

#include <stdlib.h>
#include <string.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "flatbuf.c assumes a little-endian host"
#endif

void fb_init(fb_builder *b) {
    memset(b, 0, sizeof *b);
    b->minalign = 1;
}

void fb_free(fb_builder *b) {
    free(b->buf);
    fb_init(b);
}

void fb_reset(fb_builder *b) {
    b->head = b->cap;
    b->minalign = 1;
    b->failed = false;
    b->in_table = false;
}

/* Makes room for `need` more bytes at the front, moving the data to the end. */
static bool grow(fb_builder *b, size_t need) {
    if (b->failed) return false;
    if (b->head >= need) return true;
    size_t used = fb_size(b);
    size_t cap = b->cap ? b->cap : 1024;
    while (cap - used < need) {
        if (cap > SIZE_MAX / 2) { b->failed = true; return false; }
        cap *= 2;
    }
    uint8_t *nb = malloc(cap);
    if (!nb) { b->failed = true; return false; }
    if (used) memcpy(nb + cap - used, b->buf + b->head, used);
    free(b->buf);
    b->buf = nb;
    b->cap = cap;
    b->head = cap - used;
    return true;
}

static void pad(fb_builder *b, size_t n) {
    if (n == 0 || !grow(b, n)) return;
    b->head -= n;
    memset(b->buf + b->head, 0, n);
}

/* Pads so that after writing `len` more bytes the size is a multiple of align. */
static void prealign(fb_builder *b, size_t len, size_t align) {
    if (align > b->minalign) b->minalign = align;
    size_t p = (~(fb_size(b) + len) + 1) & (align - 1);
    pad(b, p);
}

static void push(fb_builder *b, const void *data, size_t len) {
    if (len == 0 || !grow(b, len)) return;
    b->head -= len;
    memcpy(b->buf + b->head, data, len);
}

static fb_ref push_scalar(fb_builder *b, const void *v, size_t size) {
    prealign(b, size, size);
    push(b, v, size);
    return (fb_ref)fb_size(b);
}

/* An offset field refers forward: value = its own ref - target ref. */
static fb_ref push_uoffset(fb_builder *b, fb_ref target) {
    prealign(b, 4, 4);
    uint32_t v = (uint32_t)(fb_size(b) + 4 - target);
    push(b, &v, 4);
    return (fb_ref)fb_size(b);
}

fb_ref fb_string(fb_builder *b, const char *s, size_t len) {
    prealign(b, len + 1, 4);
    pad(b, 1);
    push(b, s, len);
    uint32_t l = (uint32_t)len;
    push(b, &l, 4);
    return (fb_ref)fb_size(b);
}

fb_ref fb_vec_refs(fb_builder *b, const fb_ref *refs, size_t n) {
    prealign(b, n * 4, 4);
    for (size_t i = n; i-- > 0;) push_uoffset(b, refs[i]);
    uint32_t l = (uint32_t)n;
    push(b, &l, 4);
    return (fb_ref)fb_size(b);
}

fb_ref fb_vec_structs(fb_builder *b, const void *data, size_t elem_size, size_t n, size_t align) {
    prealign(b, n * elem_size, 4);
    prealign(b, n * elem_size, align);
    push(b, data, n * elem_size);
    uint32_t l = (uint32_t)n;
    push(b, &l, 4);
    return (fb_ref)fb_size(b);
}

void fb_table_start(fb_builder *b) {
    b->in_table = true;
    b->table_start = fb_size(b);
    b->nslots = 0;
    memset(b->slots, 0, sizeof b->slots);
}

static void note_slot(fb_builder *b, int slot, fb_ref where) {
    if (slot < 0 || slot >= FB_MAX_SLOTS) { b->failed = true; return; }
    b->slots[slot] = where;
    if (slot + 1 > b->nslots) b->nslots = slot + 1;
}

void fb_add_u8(fb_builder *b, int slot, uint8_t v) { note_slot(b, slot, push_scalar(b, &v, 1)); }
void fb_add_i16(fb_builder *b, int slot, int16_t v) { note_slot(b, slot, push_scalar(b, &v, 2)); }
void fb_add_i32(fb_builder *b, int slot, int32_t v) { note_slot(b, slot, push_scalar(b, &v, 4)); }
void fb_add_i64(fb_builder *b, int slot, int64_t v) { note_slot(b, slot, push_scalar(b, &v, 8)); }
void fb_add_ref(fb_builder *b, int slot, fb_ref ref) { note_slot(b, slot, push_uoffset(b, ref)); }

fb_ref fb_table_end(fb_builder *b) {
    /* The table starts with a soffset to its vtable. */
    int32_t placeholder = 0;
    fb_ref table = push_scalar(b, &placeholder, 4);
    uint16_t vt[2 + FB_MAX_SLOTS];
    int n = b->nslots;
    vt[0] = (uint16_t)((2 + n) * 2);
    vt[1] = (uint16_t)(table - b->table_start);
    for (int i = 0; i < n; i++) vt[2 + i] = b->slots[i] ? (uint16_t)(table - b->slots[i]) : 0;
    push(b, vt, (size_t)(2 + n) * 2);
    fb_ref vtable = (fb_ref)fb_size(b);
    if (!b->failed) {
        int32_t soff = (int32_t)(vtable - table);
        memcpy(b->buf + b->cap - table, &soff, 4);
    }
    b->in_table = false;
    return table;
}

const uint8_t *fb_finish(fb_builder *b, fb_ref root, size_t align) {
    if (align < b->minalign) align = b->minalign;
    prealign(b, 4, align);
    push_uoffset(b, root);
    return b->failed ? NULL : b->buf + b->head;
}
