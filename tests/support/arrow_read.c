/*
 * Arrow IPC file reader for tests (see arrow_read.h). Flatbuffers are read
 * by hand: root uoffset → table; the table's soffset → vtable (u16 vtable
 * size, u16 table size, u16 field offsets); uoffset fields are relative to
 * their own position; vectors and strings start with a u32 count. Every
 * position is checked against the region it lives in before it is read.
 */
#include "arrow_read.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define AR_MAX_ROWS ((int64_t)1 << 24) /* summed over batches; keeps fuzzing fast */

/* ---- errors and little-endian loads --------------------------------------- */

__attribute__((format(printf, 2, 3))) static int fail(ar_file *af, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(af->error, sizeof af->error, fmt, ap);
    va_end(ap);
    return -1;
}

static uint16_t ld16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static uint32_t ld32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static uint64_t ld64(const uint8_t *p) { return (uint64_t)ld32(p) | ((uint64_t)ld32(p + 4) << 32); }

/* ---- flatbuffer access ------------------------------------------------------ */

typedef struct {
    const uint8_t *p;
    size_t len;
} region_t;

typedef struct {
    const region_t *r;
    size_t pos;   /* table start (its soffset) */
    size_t vt;    /* vtable start */
    size_t vtlen; /* vtable size in bytes */
    size_t tlen;  /* table size in bytes */
} table_t;

/* `need` bytes at `pos` lie inside the region. */
static bool in_region(const region_t *r, size_t pos, size_t need) { return pos <= r->len && r->len - pos >= need; }

static int table_open(ar_file *af, const region_t *r, size_t pos, table_t *t, const char *what) {
    if (!in_region(r, pos, 4)) return fail(af, "%s: table at %zu is outside the flatbuffer (%zu bytes)", what, pos, r->len);
    int64_t vt = (int64_t)pos - (int64_t)(int32_t)ld32(r->p + pos);
    if (vt < 0 || !in_region(r, (size_t)vt, 4))
        return fail(af, "%s: vtable at %lld is outside the flatbuffer (%zu bytes)", what, (long long)vt, r->len);
    size_t vtlen = ld16(r->p + vt), tlen = ld16(r->p + vt + 2);
    if (vtlen < 4 || (vtlen & 1) || !in_region(r, (size_t)vt, vtlen))
        return fail(af, "%s: bad vtable size %zu at %lld", what, vtlen, (long long)vt);
    if (tlen < 4 || !in_region(r, pos, tlen))
        return fail(af, "%s: table size %zu at %zu runs past the flatbuffer (%zu bytes)", what, tlen, pos, r->len);
    *t = (table_t){r, pos, (size_t)vt, vtlen, tlen};
    return 0;
}

/* Position of field `slot` (size bytes inline): 1 present, 0 absent, -1 bad. */
static int table_field(ar_file *af, const table_t *t, int slot, size_t size, const char *what, size_t *at) {
    size_t e = 4 + 2 * (size_t)slot;
    if (e + 2 > t->vtlen) return 0;
    size_t off = ld16(t->r->p + t->vt + e);
    if (off == 0) return 0;
    if (off < 4 || off > t->tlen || t->tlen - off < size)
        return fail(af, "%s: field %d at table offset %zu (+%zu bytes) is outside its table (%zu bytes)", what, slot,
                    off, size, t->tlen);
    *at = t->pos + off;
    return 1;
}

static int get_u8(ar_file *af, const table_t *t, int slot, uint8_t def, const char *what, uint8_t *out) {
    size_t at;
    int r = table_field(af, t, slot, 1, what, &at);
    *out = r == 1 ? t->r->p[at] : def;
    return r < 0 ? -1 : 0;
}

static int get_i16(ar_file *af, const table_t *t, int slot, int16_t def, const char *what, int16_t *out) {
    size_t at;
    int r = table_field(af, t, slot, 2, what, &at);
    *out = r == 1 ? (int16_t)ld16(t->r->p + at) : def;
    return r < 0 ? -1 : 0;
}

static int get_i32(ar_file *af, const table_t *t, int slot, int32_t def, const char *what, int32_t *out) {
    size_t at;
    int r = table_field(af, t, slot, 4, what, &at);
    *out = r == 1 ? (int32_t)ld32(t->r->p + at) : def;
    return r < 0 ? -1 : 0;
}

static int get_i64(ar_file *af, const table_t *t, int slot, int64_t def, const char *what, int64_t *out) {
    size_t at;
    int r = table_field(af, t, slot, 8, what, &at);
    *out = r == 1 ? (int64_t)ld64(t->r->p + at) : def;
    return r < 0 ? -1 : 0;
}

/* Follows the uoffset stored at `at` (relative to `at` itself). */
static int follow(ar_file *af, const region_t *r, size_t at, const char *what, size_t *target) {
    if (!in_region(r, at, 4)) return fail(af, "%s: offset at %zu is outside the flatbuffer", what, at);
    uint64_t t = (uint64_t)at + ld32(r->p + at);
    if (t >= r->len) return fail(af, "%s: offset points to %llu, past the flatbuffer (%zu bytes)", what,
                                 (unsigned long long)t, r->len);
    *target = (size_t)t;
    return 0;
}

/* Offset field: 1 present (target set), 0 absent, -1 bad. */
static int get_ref(ar_file *af, const table_t *t, int slot, const char *what, size_t *target) {
    size_t at;
    int r = table_field(af, t, slot, 4, what, &at);
    if (r != 1) return r;
    return follow(af, t->r, at, what, target) == 0 ? 1 : -1;
}

static int get_table(ar_file *af, const table_t *t, int slot, const char *what, table_t *out, bool *present) {
    size_t target;
    int r = get_ref(af, t, slot, what, &target);
    *present = r == 1;
    if (r != 1) return r;
    return table_open(af, t->r, target, out, what);
}

/* Vector of `elem` byte elements: start of the first element and count. */
static int vector_at(ar_file *af, const region_t *r, size_t target, size_t elem, const char *what, size_t *start,
                     size_t *n) {
    if (!in_region(r, target, 4)) return fail(af, "%s: vector length at %zu is outside the flatbuffer", what, target);
    uint64_t count = ld32(r->p + target);
    if (count * elem > r->len - target - 4)
        return fail(af, "%s: vector of %llu x %zu bytes at %zu runs past the flatbuffer (%zu bytes)", what,
                    (unsigned long long)count, elem, target, r->len);
    *start = target + 4;
    *n = (size_t)count;
    return 0;
}

static int get_vector(ar_file *af, const table_t *t, int slot, size_t elem, const char *what, size_t *start,
                      size_t *n) {
    size_t target;
    *n = 0;
    *start = 0;
    int r = get_ref(af, t, slot, what, &target);
    if (r != 1) return r;
    return vector_at(af, t->r, target, elem, what, start, n);
}

/* String field: *out is a NUL-terminated copy, or NULL when absent. */
static int get_string(ar_file *af, const table_t *t, int slot, const char *what, char **out) {
    size_t target;
    *out = NULL;
    int r = get_ref(af, t, slot, what, &target);
    if (r != 1) return r;
    const region_t *rg = t->r;
    if (!in_region(rg, target, 4)) return fail(af, "%s: string length at %zu is outside the flatbuffer", what, target);
    uint64_t n = ld32(rg->p + target);
    if (n + 1 > rg->len - target - 4)
        return fail(af, "%s: string of %llu bytes at %zu runs past the flatbuffer (%zu bytes)", what,
                    (unsigned long long)n, target, rg->len);
    const uint8_t *s = rg->p + target + 4;
    if (s[n] != 0) return fail(af, "%s: string at %zu lacks its NUL terminator", what, target);
    if (memchr(s, 0, (size_t)n)) return fail(af, "%s: string at %zu contains a NUL byte", what, target);
    *out = malloc((size_t)n + 1);
    if (!*out) return fail(af, "out of memory");
    memcpy(*out, s, (size_t)n + 1);
    return 0;
}

/* ---- schema ------------------------------------------------------------------- */

static void kvs_free(ar_kv *kv, size_t n) {
    for (size_t i = 0; i < n; i++) { free(kv[i].key); free(kv[i].value); }
    free(kv);
}

static void schema_free(ar_schema *s) {
    for (size_t i = 0; i < s->nfields; i++) {
        ar_field *f = &s->fields[i];
        free(f->name);
        free(f->timezone);
        kvs_free(f->md, f->nmd);
    }
    free(s->fields);
    kvs_free(s->md, s->nmd);
    memset(s, 0, sizeof *s);
}

static int parse_kvs(ar_file *af, const table_t *t, int slot, const char *what, ar_kv **out, size_t *nout) {
    size_t start, n;
    *out = NULL;
    *nout = 0;
    if (get_vector(af, t, slot, 4, what, &start, &n) != 0) return -1;
    if (n == 0) return 0;
    ar_kv *kv = calloc(n, sizeof *kv);
    if (!kv) return fail(af, "out of memory");
    *out = kv;
    for (size_t i = 0; i < n; i++) {
        size_t pos;
        table_t kt;
        if (follow(af, t->r, start + 4 * i, what, &pos) != 0 || table_open(af, t->r, pos, &kt, what) != 0) return -1;
        *nout = i + 1;
        if (get_string(af, &kt, 0, what, &kv[i].key) != 0 || get_string(af, &kt, 1, what, &kv[i].value) != 0)
            return -1;
        if (!kv[i].key && !(kv[i].key = strdup(""))) return fail(af, "out of memory");
        if (!kv[i].value && !(kv[i].value = strdup(""))) return fail(af, "out of memory");
    }
    return 0;
}

const char *ar_kv_get(const ar_kv *kv, size_t n, const char *key) {
    for (size_t i = 0; i < n; i++)
        if (strcmp(kv[i].key, key) == 0) return kv[i].value;
    return NULL;
}

/* Arrow type → field_type, or -1 with a message. */
static int map_type(ar_file *af, size_t idx, ar_field *f) {
    const char *tstype = ar_kv_get(f->md, f->nmd, "tstype");
    if (!f->has_type_table) return fail(af, "field %zu (%s): type id %u without a type table", idx, f->name, f->type_id);
    f->nbuffers = 2;
    switch (f->type_id) {
    case AR_T_INT: {
        static const field_type sg[4] = {FT_INT8, FT_INT16, FT_INT32, FT_INT64};
        static const field_type us[4] = {FT_UINT8, FT_UINT16, FT_UINT32, FT_UINT64};
        int k = f->bit_width == 8 ? 0 : f->bit_width == 16 ? 1 : f->bit_width == 32 ? 2 : f->bit_width == 64 ? 3 : -1;
        if (k < 0) return fail(af, "field %zu (%s): Int bitWidth %d", idx, f->name, (int)f->bit_width);
        f->ft = f->is_signed ? sg[k] : us[k];
        if (f->ft == FT_UINT16 && tstype && strcmp(tstype, "enum") == 0) f->ft = FT_ENUM;
        return 0;
    }
    case AR_T_FLOAT:
        if (f->precision == 1) f->ft = FT_FLOAT32;
        else if (f->precision == 2) f->ft = FT_FLOAT64;
        else return fail(af, "field %zu (%s): FloatingPoint precision %d", idx, f->name, (int)f->precision);
        return 0;
    case AR_T_BOOL: f->ft = FT_BOOL; return 0;
    case AR_T_UTF8: f->ft = FT_STRING; f->nbuffers = 3; return 0;
    case AR_T_BINARY: f->ft = FT_JSON; f->nbuffers = 3; return 0;
    case AR_T_TIMESTAMP:
        if (f->unit < 0 || f->unit > 3) return fail(af, "field %zu (%s): Timestamp unit %d", idx, f->name, (int)f->unit);
        f->ft = FT_TIME;
        return 0;
    default: return fail(af, "field %zu (%s): unsupported Arrow type id %u", idx, f->name, f->type_id);
    }
}

static int parse_field(ar_file *af, const table_t *ft, size_t idx, ar_field *f) {
    char what[48];
    snprintf(what, sizeof what, "schema field %zu", idx);
    uint8_t nullable, type_id;
    if (get_string(af, ft, 0, what, &f->name) != 0) return -1;
    if (!f->name && !(f->name = strdup(""))) return fail(af, "out of memory");
    if (get_u8(af, ft, 1, 0, what, &nullable) != 0 || get_u8(af, ft, 2, 0, what, &type_id) != 0) return -1;
    f->nullable = nullable != 0;
    f->type_id = type_id;
    table_t tt, dict;
    bool present;
    if (get_table(af, ft, 3, what, &tt, &f->has_type_table) < 0) return -1;
    if (get_table(af, ft, 4, what, &dict, &present) < 0) return -1;
    f->has_dictionary = present;
    size_t cstart;
    if (get_vector(af, ft, 5, 4, what, &cstart, &f->nchildren) != 0) return -1;
    if (parse_kvs(af, ft, 6, what, &f->md, &f->nmd) != 0) return -1;
    if (f->has_type_table) {
        switch (type_id) {
        case AR_T_INT: {
            uint8_t sg;
            if (get_i32(af, &tt, 0, 0, what, &f->bit_width) != 0 || get_u8(af, &tt, 1, 0, what, &sg) != 0) return -1;
            f->is_signed = sg != 0;
            break;
        }
        case AR_T_FLOAT:
            if (get_i16(af, &tt, 0, 0, what, &f->precision) != 0) return -1;
            break;
        case AR_T_TIMESTAMP:
            if (get_i16(af, &tt, 0, 0, what, &f->unit) != 0 || get_string(af, &tt, 1, what, &f->timezone) != 0)
                return -1;
            break;
        default: break;
        }
    }
    if (f->has_dictionary) return fail(af, "field %zu (%s): dictionary encoding is not supported", idx, f->name);
    if (f->nchildren) return fail(af, "field %zu (%s): %zu children (nested types are not supported)", idx, f->name,
                                  f->nchildren);
    return map_type(af, idx, f);
}

static int parse_schema(ar_file *af, const table_t *st, ar_schema *s) {
    size_t start, n;
    if (get_i16(af, st, 0, 0, "schema", &s->endianness) != 0) return -1;
    if (s->endianness != 0) return fail(af, "schema: big-endian data is not supported");
    if (get_vector(af, st, 1, 4, "schema fields", &start, &n) != 0) return -1;
    if (n) {
        s->fields = calloc(n, sizeof *s->fields);
        if (!s->fields) return fail(af, "out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        size_t pos;
        table_t ft;
        if (follow(af, st->r, start + 4 * i, "schema fields", &pos) != 0 ||
            table_open(af, st->r, pos, &ft, "schema field") != 0)
            return -1;
        s->nfields = i + 1;
        if (parse_field(af, &ft, i, &s->fields[i]) != 0) return -1;
    }
    return parse_kvs(af, st, 2, "schema metadata", &s->md, &s->nmd);
}

/* ---- messages ------------------------------------------------------------------ */

/* The encapsulated message at `off` (continuation, int32 length, flatbuffer)
 * inside data[0, limit): its Message table and header table. */
static int open_message(ar_file *af, const uint8_t *data, size_t limit, uint64_t off, const char *what, region_t *rg,
                        int32_t *prefix_len, table_t *msg) {
    if (off > limit || limit - off < 8) return fail(af, "%s: message at %llu runs past byte %zu", what,
                                                    (unsigned long long)off, limit);
    if (ld32(data + off) != 0xFFFFFFFFu) return fail(af, "%s: no continuation marker at %llu", what,
                                                     (unsigned long long)off);
    int32_t L = (int32_t)ld32(data + off + 4);
    if (L <= 0 || (uint64_t)L > limit - off - 8)
        return fail(af, "%s: metadata length %d at %llu runs past byte %zu", what, (int)L, (unsigned long long)off, limit);
    *prefix_len = L;
    *rg = (region_t){data + off + 8, (size_t)L};
    if (!in_region(rg, 0, 4)) return fail(af, "%s: flatbuffer too short", what);
    return table_open(af, rg, ld32(rg->p), msg, what);
}

static int parse_lead_schema(ar_file *af, const uint8_t *data) {
    region_t rg;
    table_t msg, st;
    uint8_t htype;
    bool present;
    if (open_message(af, data, af->footer_offset, 8, "schema message", &rg, &af->schema_prefix_len, &msg) != 0) return -1;
    if (get_i16(af, &msg, 0, 0, "schema message", &af->schema_version) != 0 ||
        get_u8(af, &msg, 1, 0, "schema message", &htype) != 0 ||
        get_i64(af, &msg, 3, 0, "schema message", &af->schema_body_len) != 0)
        return -1;
    if (htype != 1) return fail(af, "schema message: header type %u, expected 1 (Schema)", htype);
    if (get_table(af, &msg, 2, "schema message", &st, &present) < 0) return -1;
    if (!present) return fail(af, "schema message: no header");
    return parse_schema(af, &st, &af->lead);
}

static int parse_batch(ar_file *af, const uint8_t *data, size_t idx, ar_batch *b) {
    char what[48];
    snprintf(what, sizeof what, "record batch %zu", idx);
    /* The Block: offset, metadata (with prefix) and body inside [8, footer). */
    uint64_t lim = af->footer_offset;
    if (b->offset < 8 || (uint64_t)b->offset > lim) return fail(af, "%s: block offset %lld", what, (long long)b->offset);
    if (b->meta_len < 8 || (uint64_t)b->meta_len > lim - (uint64_t)b->offset)
        return fail(af, "%s: block metaDataLength %d at %lld", what, (int)b->meta_len, (long long)b->offset);
    if (b->body_len < 0 || (uint64_t)b->body_len > lim - (uint64_t)b->offset - (uint64_t)b->meta_len)
        return fail(af, "%s: block bodyLength %lld runs past the footer", what, (long long)b->body_len);
    region_t rg;
    table_t msg, rb, comp;
    uint8_t htype;
    bool present;
    if (open_message(af, data, lim, (uint64_t)b->offset, what, &rg, &b->prefix_len, &msg) != 0) return -1;
    if ((int64_t)b->prefix_len + 8 != b->meta_len)
        return fail(af, "%s: block metaDataLength %d != 8 + message length %d", what, (int)b->meta_len,
                    (int)b->prefix_len);
    if (get_i16(af, &msg, 0, 0, what, &b->version) != 0 || get_u8(af, &msg, 1, 0, what, &htype) != 0 ||
        get_i64(af, &msg, 3, 0, what, &b->msg_body_len) != 0)
        return -1;
    if (htype != 3) return fail(af, "%s: header type %u, expected 3 (RecordBatch)", what, htype);
    if (b->msg_body_len != b->body_len)
        return fail(af, "%s: message bodyLength %lld != block bodyLength %lld", what, (long long)b->msg_body_len,
                    (long long)b->body_len);
    if (get_table(af, &msg, 2, what, &rb, &present) < 0) return -1;
    if (!present) return fail(af, "%s: no header", what);
    if (get_i64(af, &rb, 0, 0, what, &b->length) != 0) return -1;
    if (b->length < 0) return fail(af, "%s: length %lld", what, (long long)b->length);
    if (get_table(af, &rb, 3, what, &comp, &present) < 0) return -1;
    if (present) return fail(af, "%s: compressed bodies are not supported", what);
    size_t nstart, bstart;
    if (get_vector(af, &rb, 1, 16, what, &nstart, &b->nnodes) != 0 ||
        get_vector(af, &rb, 2, 16, what, &bstart, &b->nbuffers) != 0)
        return -1;
    const ar_schema *s = &af->schema;
    if (b->nnodes != s->nfields)
        return fail(af, "%s: %zu field nodes for %zu fields", what, b->nnodes, s->nfields);
    size_t want = 0;
    for (size_t i = 0; i < s->nfields; i++) want += s->fields[i].nbuffers;
    if (b->nbuffers != want) return fail(af, "%s: %zu buffers, the schema needs %zu", what, b->nbuffers, want);
    b->nodes = calloc(b->nnodes ? b->nnodes : 1, sizeof *b->nodes);
    b->buffers = calloc(b->nbuffers ? b->nbuffers : 1, sizeof *b->buffers);
    if (!b->nodes || !b->buffers) return fail(af, "out of memory");
    for (size_t i = 0; i < b->nnodes; i++) {
        ar_node *n = &b->nodes[i];
        n->length = (int64_t)ld64(rg.p + nstart + 16 * i);
        n->null_count = (int64_t)ld64(rg.p + nstart + 16 * i + 8);
        if (n->length != b->length)
            return fail(af, "%s: field %zu node length %lld != batch length %lld", what, i, (long long)n->length,
                        (long long)b->length);
        if (n->null_count < 0 || n->null_count > n->length)
            return fail(af, "%s: field %zu null count %lld of %lld", what, i, (long long)n->null_count,
                        (long long)n->length);
    }
    for (size_t i = 0; i < b->nbuffers; i++) {
        ar_buffer *x = &b->buffers[i];
        x->offset = (int64_t)ld64(rg.p + bstart + 16 * i);
        x->length = (int64_t)ld64(rg.p + bstart + 16 * i + 8);
        if (x->offset < 0 || x->length < 0 || x->offset > b->body_len || x->length > b->body_len - x->offset)
            return fail(af, "%s: buffer %zu (offset %lld, length %lld) is outside the body (%lld bytes)", what, i,
                        (long long)x->offset, (long long)x->length, (long long)b->body_len);
    }
    return 0;
}

const char *ar_parse(const uint8_t *data, size_t len, ar_file *af) {
    memset(af, 0, sizeof *af);
    af->file_len = len;
    if (len < 8 + 4 + 10) return fail(af, "%zu bytes: too short for an Arrow file", len), af->error;
    if (memcmp(data, "ARROW1", 6) != 0) return fail(af, "no leading ARROW1 magic"), af->error;
    if (memcmp(data + len - 6, "ARROW1", 6) != 0) return fail(af, "no trailing ARROW1 magic"), af->error;
    af->footer_len = (int32_t)ld32(data + len - 10);
    if (af->footer_len < 4 || (size_t)af->footer_len > len - 10 - 8)
        return fail(af, "footer length %d does not fit a %zu-byte file", (int)af->footer_len, len), af->error;
    af->footer_offset = len - 10 - (size_t)af->footer_len;
    region_t fr = {data + af->footer_offset, (size_t)af->footer_len};
    table_t footer, st;
    bool present;
    if (table_open(af, &fr, ld32(fr.p), &footer, "footer") != 0) return af->error;
    if (get_i16(af, &footer, 0, 0, "footer", &af->footer_version) != 0) return af->error;
    if (get_table(af, &footer, 1, "footer schema", &st, &present) < 0) return af->error;
    if (!present) return fail(af, "footer: no schema"), af->error;
    if (parse_schema(af, &st, &af->schema) != 0) return af->error;
    size_t dstart, bstart, nb;
    if (get_vector(af, &footer, 2, 24, "footer dictionaries", &dstart, &af->ndictionaries) != 0) return af->error;
    if (af->ndictionaries) return fail(af, "footer: %zu dictionaries (not supported)", af->ndictionaries), af->error;
    if (get_vector(af, &footer, 3, 24, "footer record batches", &bstart, &nb) != 0) return af->error;
    if (parse_lead_schema(af, data) != 0) return af->error;
    if (nb) {
        af->batches = calloc(nb, sizeof *af->batches);
        if (!af->batches) return fail(af, "out of memory"), af->error;
    }
    for (size_t i = 0; i < nb; i++) {
        ar_batch *b = &af->batches[i];
        const uint8_t *p = fr.p + bstart + 24 * i;
        b->offset = (int64_t)ld64(p);
        b->meta_len = (int32_t)ld32(p + 8);
        b->body_len = (int64_t)ld64(p + 16);
        af->nbatches = i + 1;
        if (parse_batch(af, data, i, b) != 0) return af->error;
    }
    af->ok = true;
    return NULL;
}

void ar_file_free(ar_file *af) {
    schema_free(&af->lead);
    schema_free(&af->schema);
    for (size_t i = 0; i < af->nbatches; i++) {
        free(af->batches[i].nodes);
        free(af->batches[i].buffers);
    }
    free(af->batches);
    af->batches = NULL;
    af->nbatches = 0;
}

/* ---- frame ---------------------------------------------------------------------- */

static bool bit(const uint8_t *bits, int64_t i) { return (bits[i >> 3] >> (i & 7)) & 1; }

/* One column of one batch. `bufs` are the field's buffers, `body` the body. */
static int read_column(ar_file *af, size_t bi, size_t fi, const ar_field *f, frame_field *fld, const ar_node *node,
                       const ar_buffer *bufs, const uint8_t *body) {
    int64_t rows = node->length;
    const uint8_t *valid = NULL;
    if (rows == 0) return 0; /* empty arrays may come with empty buffers */
    if (node->null_count > 0) {
        if (!f->nullable)
            return fail(af, "batch %zu, field %zu (%s): %lld nulls in a non-nullable field", bi, fi, f->name,
                        (long long)node->null_count);
        if (bufs[0].length < (rows + 7) / 8)
            return fail(af, "batch %zu, field %zu (%s): validity buffer of %lld bytes for %lld rows", bi, fi, f->name,
                        (long long)bufs[0].length, (long long)rows);
        valid = body + bufs[0].offset;
        int64_t zeros = 0;
        for (int64_t r = 0; r < rows; r++) zeros += !bit(valid, r);
        if (zeros != node->null_count)
            return fail(af, "batch %zu, field %zu (%s): bitmap has %lld nulls, node says %lld", bi, fi, f->name,
                        (long long)zeros, (long long)node->null_count);
    }
    const uint8_t *vals = body + bufs[1].offset;
    size_t width = field_type_width(f->ft);
    const uint8_t *bytes = NULL;
    if (f->ft == FT_STRING || f->ft == FT_JSON) {
        if (bufs[1].length / 4 < rows + 1)
            return fail(af, "batch %zu, field %zu (%s): offsets buffer of %lld bytes for %lld rows", bi, fi, f->name,
                        (long long)bufs[1].length, (long long)rows);
        bytes = body + bufs[2].offset;
        int32_t prev = (int32_t)ld32(vals);
        if (prev < 0) return fail(af, "batch %zu, field %zu (%s): first offset %d", bi, fi, f->name, (int)prev);
        for (int64_t r = 1; r <= rows; r++) {
            int32_t o = (int32_t)ld32(vals + 4 * r);
            if (o < prev || o > bufs[2].length)
                return fail(af, "batch %zu, field %zu (%s): offset %d at row %lld (previous %d, data %lld bytes)", bi,
                            fi, f->name, (int)o, (long long)r, (int)prev, (long long)bufs[2].length);
            prev = o;
        }
    } else if (f->ft == FT_BOOL) {
        if (bufs[1].length < (rows + 7) / 8)
            return fail(af, "batch %zu, field %zu (%s): bool buffer of %lld bytes for %lld rows", bi, fi, f->name,
                        (long long)bufs[1].length, (long long)rows);
    } else if (bufs[1].length / (int64_t)width < rows) {
        return fail(af, "batch %zu, field %zu (%s): values buffer of %lld bytes for %lld rows of %zu bytes", bi, fi,
                    f->name, (long long)bufs[1].length, (long long)rows, width);
    }
    for (int64_t r = 0; r < rows; r++) {
        int rc;
        if (valid && !bit(valid, r)) {
            rc = field_append_null(fld);
        } else {
            const uint8_t *p = vals + (size_t)r * width;
            switch (f->ft) {
            case FT_INT8: rc = field_append_int(fld, (int8_t)p[0]); break;
            case FT_INT16: rc = field_append_int(fld, (int16_t)ld16(p)); break;
            case FT_INT32: rc = field_append_int(fld, (int32_t)ld32(p)); break;
            case FT_INT64: case FT_TIME: rc = field_append_int(fld, (int64_t)ld64(p)); break;
            case FT_UINT8: rc = field_append_uint(fld, p[0]); break;
            case FT_UINT16: case FT_ENUM: rc = field_append_uint(fld, ld16(p)); break;
            case FT_UINT32: rc = field_append_uint(fld, ld32(p)); break;
            case FT_UINT64: rc = field_append_uint(fld, ld64(p)); break;
            case FT_FLOAT32: {
                uint32_t u = ld32(p);
                float x;
                memcpy(&x, &u, 4);
                rc = field_append_float(fld, x);
                break;
            }
            case FT_FLOAT64: {
                uint64_t u = ld64(p);
                double x;
                memcpy(&x, &u, 8);
                rc = field_append_float(fld, x);
                break;
            }
            case FT_BOOL: rc = field_append_bool(fld, bit(vals, r)); break;
            default: {
                int32_t a = (int32_t)ld32(vals + 4 * r), b = (int32_t)ld32(vals + 4 * (r + 1));
                rc = field_append_bytes(fld, (const char *)bytes + a, (size_t)(b - a));
            }
            }
        }
        if (rc != 0)
            return fail(af, "batch %zu, field %zu (%s), row %lld: the %s builder refused the value", bi, fi, f->name,
                        (long long)r, field_type_go_name(f->ft));
    }
    return 0;
}

const char *ar_to_frame(ar_file *af, const uint8_t *data, size_t len, frame_t **out) {
    *out = NULL;
    if (len != af->file_len) return fail(af, "ar_to_frame: not the parsed input"), af->error;
    const ar_schema *s = &af->schema;
    int64_t total = 0;
    if (!af->ok) return fail(af, "ar_to_frame: the file was not parsed"), af->error;
    for (size_t i = 0; i < af->nbatches; i++) {
        if (af->batches[i].length > AR_MAX_ROWS - total)
            return fail(af, "more than %lld rows", (long long)AR_MAX_ROWS), af->error;
        total += af->batches[i].length;
    }
    const char *name = ar_kv_get(s->md, s->nmd, "name"), *ref = ar_kv_get(s->md, s->nmd, "refId");
    const char *meta = ar_kv_get(s->md, s->nmd, "meta");
    frame_t *f = frame_new(name ? name : "", ref ? ref : "");
    if (!f || (meta && frame_set_meta(f, meta) != 0)) { frame_free(f); return fail(af, "out of memory"), af->error; }
    for (size_t i = 0; i < s->nfields; i++) {
        const ar_field *sf = &s->fields[i];
        frame_field *fld = frame_add_field(f, sf->name, sf->ft, sf->nullable);
        const char *labels = ar_kv_get(sf->md, sf->nmd, "labels"), *config = ar_kv_get(sf->md, sf->nmd, "config");
        if (!fld || (labels && field_set_labels(fld, labels) != 0) || (config && field_set_config(fld, config) != 0)) {
            frame_free(f);
            return fail(af, "out of memory"), af->error;
        }
    }
    for (size_t bi = 0; bi < af->nbatches; bi++) {
        const ar_batch *b = &af->batches[bi];
        const uint8_t *body = data + b->offset + b->meta_len;
        size_t k = 0;
        for (size_t i = 0; i < s->nfields; i++) {
            if (read_column(af, bi, i, &s->fields[i], f->fields[i], &b->nodes[i], &b->buffers[k], body) != 0) {
                frame_free(f);
                return af->error;
            }
            k += s->fields[i].nbuffers;
        }
    }
    *out = f;
    return NULL;
}

int ar_read_frame(const uint8_t *data, size_t len, frame_t **out, char *err, size_t errcap) {
    ar_file af;
    const char *e = ar_parse(data, len, &af);
    if (!e) e = ar_to_frame(&af, data, len, out);
    else *out = NULL;
    if (e && err && errcap) snprintf(err, errcap, "%s", e);
    ar_file_free(&af);
    return e ? -1 : 0;
}

/* ---- comparisons ------------------------------------------------------------------ */

/* Row bytes of a string/json field without field_get_bytes: a field whose
 * values are all empty has no values buffer (data NULL), and NULL + 0 is
 * undefined behaviour in C (see field_get_bytes). */
static const char *cell_bytes(const frame_field *f, size_t row, size_t *len) {
    int32_t a, b;
    memcpy(&a, f->offsets.data + 4 * row, 4);
    memcpy(&b, f->offsets.data + 4 * (row + 1), 4);
    *len = (size_t)(b - a);
    return *len ? (const char *)f->values.data + a : "";
}

static bool str_eq(const char *a, const char *b) { return (!a && !b) || (a && b && strcmp(a, b) == 0); }
static const char *show(const char *s) { return s ? s : "(none)"; }

__attribute__((format(printf, 3, 4))) static int differ(char *msg, size_t cap, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    if (msg && cap) vsnprintf(msg, cap, fmt, ap);
    va_end(ap);
    return -1;
}

static bool float_eq(double x, double y, bool single) {
    if (isnan(x) && isnan(y)) return true;
    if (single) {
        float a = (float)x, b = (float)y;
        return memcmp(&a, &b, 4) == 0;
    }
    return memcmp(&x, &y, 8) == 0;
}

int ar_frame_diff(const frame_t *a, const frame_t *b, char *msg, size_t cap) {
    if (!str_eq(a->name, b->name)) return differ(msg, cap, "frame name \"%s\" vs \"%s\"", show(a->name), show(b->name));
    if (!str_eq(a->ref_id, b->ref_id))
        return differ(msg, cap, "refId \"%s\" vs \"%s\"", show(a->ref_id), show(b->ref_id));
    if (!str_eq(a->meta_json, b->meta_json))
        return differ(msg, cap, "meta %s vs %s", show(a->meta_json), show(b->meta_json));
    if (a->nfields != b->nfields) return differ(msg, cap, "%zu fields vs %zu", a->nfields, b->nfields);
    for (size_t i = 0; i < a->nfields; i++) {
        const frame_field *x = a->fields[i], *y = b->fields[i];
        if (!str_eq(x->name, y->name))
            return differ(msg, cap, "field %zu: name \"%s\" vs \"%s\"", i, show(x->name), show(y->name));
        if (x->type != y->type)
            return differ(msg, cap, "field %zu (%s): type %s vs %s", i, x->name, field_type_go_name(x->type),
                          field_type_go_name(y->type));
        if (x->nullable != y->nullable)
            return differ(msg, cap, "field %zu (%s): nullable %d vs %d", i, x->name, x->nullable, y->nullable);
        if (!str_eq(x->labels_json, y->labels_json))
            return differ(msg, cap, "field %zu (%s): labels %s vs %s", i, x->name, show(x->labels_json),
                          show(y->labels_json));
        if (!str_eq(x->config_json, y->config_json))
            return differ(msg, cap, "field %zu (%s): config %s vs %s", i, x->name, show(x->config_json),
                          show(y->config_json));
        if (x->rows != y->rows) return differ(msg, cap, "field %zu (%s): %zu rows vs %zu", i, x->name, x->rows, y->rows);
        if (x->null_count != y->null_count)
            return differ(msg, cap, "field %zu (%s): %zu nulls vs %zu", i, x->name, x->null_count, y->null_count);
        for (size_t r = 0; r < x->rows; r++) {
            bool nx = field_is_null(x, r), ny = field_is_null(y, r);
            if (nx != ny) return differ(msg, cap, "field %zu (%s), row %zu: null %d vs %d", i, x->name, r, nx, ny);
            if (nx) continue;
            switch (x->type) {
            case FT_FLOAT32: case FT_FLOAT64: {
                double u = field_get_float(x, r), v = field_get_float(y, r);
                if (!float_eq(u, v, x->type == FT_FLOAT32))
                    return differ(msg, cap, "field %zu (%s), row %zu: %.17g vs %.17g", i, x->name, r, u, v);
                break;
            }
            case FT_BOOL:
                if (field_get_bool(x, r) != field_get_bool(y, r))
                    return differ(msg, cap, "field %zu (%s), row %zu: bool differs", i, x->name, r);
                break;
            case FT_STRING: case FT_JSON: {
                size_t lx, ly;
                const char *sx = cell_bytes(x, r, &lx), *sy = cell_bytes(y, r, &ly);
                if (lx != ly || (lx && memcmp(sx, sy, lx) != 0))
                    return differ(msg, cap, "field %zu (%s), row %zu: \"%.*s\" vs \"%.*s\"", i, x->name, r,
                                  (int)(lx > 60 ? 60 : lx), sx, (int)(ly > 60 ? 60 : ly), sy);
                break;
            }
            case FT_UINT8: case FT_UINT16: case FT_UINT32: case FT_UINT64: case FT_ENUM:
                if (field_get_uint(x, r) != field_get_uint(y, r))
                    return differ(msg, cap, "field %zu (%s), row %zu: %llu vs %llu", i, x->name, r,
                                  (unsigned long long)field_get_uint(x, r), (unsigned long long)field_get_uint(y, r));
                break;
            default:
                if (field_get_int(x, r) != field_get_int(y, r))
                    return differ(msg, cap, "field %zu (%s), row %zu: %lld vs %lld", i, x->name, r,
                                  (long long)field_get_int(x, r), (long long)field_get_int(y, r));
            }
        }
    }
    return 0;
}

static int kvs_diff(const ar_kv *a, size_t na, const ar_kv *b, size_t nb, const char *where, char *msg, size_t cap) {
    if (na != nb) return differ(msg, cap, "%s: %zu metadata entries vs %zu", where, na, nb);
    for (size_t i = 0; i < na; i++)
        if (strcmp(a[i].key, b[i].key) != 0 || strcmp(a[i].value, b[i].value) != 0)
            return differ(msg, cap, "%s: metadata %zu: %s=%s vs %s=%s", where, i, a[i].key, a[i].value, b[i].key,
                          b[i].value);
    return 0;
}

int ar_schema_diff(const ar_schema *a, const ar_schema *b, char *msg, size_t cap) {
    if (a->endianness != b->endianness) return differ(msg, cap, "endianness %d vs %d", a->endianness, b->endianness);
    if (a->nfields != b->nfields) return differ(msg, cap, "%zu fields vs %zu", a->nfields, b->nfields);
    for (size_t i = 0; i < a->nfields; i++) {
        const ar_field *x = &a->fields[i], *y = &b->fields[i];
        char where[32];
        snprintf(where, sizeof where, "field %zu", i);
        if (strcmp(x->name, y->name) != 0 || x->nullable != y->nullable || x->type_id != y->type_id ||
            x->bit_width != y->bit_width || x->is_signed != y->is_signed || x->precision != y->precision ||
            x->unit != y->unit || !str_eq(x->timezone, y->timezone) || x->ft != y->ft)
            return differ(msg, cap, "%s: %s/%d/type %u vs %s/%d/type %u", where, x->name, x->nullable, x->type_id,
                          y->name, y->nullable, y->type_id);
        if (kvs_diff(x->md, x->nmd, y->md, y->nmd, where, msg, cap) != 0) return -1;
    }
    return kvs_diff(a->md, a->nmd, b->md, b->nmd, "schema", msg, cap);
}

int ar_check_layout(const ar_file *af, const uint8_t *p, size_t len, char *msg, size_t cap) {
    if (!af->ok || len != af->file_len) return differ(msg, cap, "not a parsed file");
    if (memcmp(p, "ARROW1\0\0", 8) != 0) return differ(msg, cap, "leading magic is not ARROW1 + 2 zero bytes");
    if (af->schema_version != 4 || af->footer_version != 4)
        return differ(msg, cap, "versions: schema message %d, footer %d (want 4 = V5)", af->schema_version,
                      af->footer_version);
    if (af->schema_prefix_len % 8 != 0) return differ(msg, cap, "schema message length %d", (int)af->schema_prefix_len);
    if (af->schema_body_len != 0) return differ(msg, cap, "schema message body %lld", (long long)af->schema_body_len);
    if (ar_schema_diff(&af->lead, &af->schema, msg, cap) != 0) return -1;
    if (af->footer_offset % 8 != 0) return differ(msg, cap, "footer at %llu", (unsigned long long)af->footer_offset);
    uint64_t at = 16 + (uint64_t)af->schema_prefix_len;
    for (size_t i = 0; i < af->nbatches; i++) {
        const ar_batch *b = &af->batches[i];
        if ((uint64_t)b->offset != at) return differ(msg, cap, "batch %zu at %lld, expected %llu", i, (long long)b->offset,
                                                     (unsigned long long)at);
        if (b->offset % 8 || b->meta_len % 8 || b->body_len % 8)
            return differ(msg, cap, "batch %zu: block {%lld, %d, %lld} not 8-aligned", i, (long long)b->offset,
                          (int)b->meta_len, (long long)b->body_len);
        if (b->version != 4) return differ(msg, cap, "batch %zu: version %d", i, b->version);
        if (b->length == 0) return differ(msg, cap, "batch %zu: empty record batch", i);
        const uint8_t *body = p + b->offset + b->meta_len;
        int64_t next = 0;
        for (size_t k = 0; k < b->nbuffers; k++) {
            const ar_buffer *x = &b->buffers[k];
            if (x->offset != next) return differ(msg, cap, "batch %zu, buffer %zu at %lld, expected %lld", i, k,
                                                 (long long)x->offset, (long long)next);
            int64_t end = x->offset + x->length, padded = (end + 7) & ~(int64_t)7;
            for (int64_t z = end; z < padded; z++)
                if (body[z] != 0) return differ(msg, cap, "batch %zu, buffer %zu: padding byte %lld is not 0", i, k, (long long)z);
            next = padded;
        }
        if (b->body_len != next) return differ(msg, cap, "batch %zu: body %lld, buffers end at %lld", i,
                                               (long long)b->body_len, (long long)next);
        size_t k = 0;
        for (size_t f = 0; f < b->nnodes; f++) {
            if (b->nodes[f].null_count == 0 && b->buffers[k].length != 0)
                return differ(msg, cap, "batch %zu, field %zu: no nulls but a %lld-byte validity buffer", i, f,
                              (long long)b->buffers[k].length);
            if (b->nodes[f].null_count > 0 && b->buffers[k].length != (b->length + 7) / 8)
                return differ(msg, cap, "batch %zu, field %zu: validity buffer of %lld bytes for %lld rows", i, f,
                              (long long)b->buffers[k].length, (long long)b->length);
            k += af->schema.fields[f].nbuffers;
        }
        at = (uint64_t)(b->offset + b->meta_len + b->body_len);
    }
    if (at + 8 != af->footer_offset)
        return differ(msg, cap, "end-of-stream marker expected at %llu, footer at %llu", (unsigned long long)at,
                      (unsigned long long)af->footer_offset);
    if (memcmp(p + at, "\xFF\xFF\xFF\xFF\0\0\0\0", 8) != 0) return differ(msg, cap, "no end-of-stream marker at %llu", (unsigned long long)at);
    return 0;
}
