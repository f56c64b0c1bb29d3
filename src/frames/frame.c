#include "frame.h"

#include <stdlib.h>
#include <string.h>

static const struct {
    const char *go;
    const char *ts;
    size_t width;
} type_info[FT_COUNT] = {
    [FT_INT8] = {"int8", "number", 1},       [FT_INT16] = {"int16", "number", 2},
    [FT_INT32] = {"int32", "number", 4},     [FT_INT64] = {"int64", "number", 8},
    [FT_UINT8] = {"uint8", "number", 1},     [FT_UINT16] = {"uint16", "number", 2},
    [FT_UINT32] = {"uint32", "number", 4},   [FT_UINT64] = {"uint64", "number", 8},
    [FT_FLOAT32] = {"float32", "number", 4}, [FT_FLOAT64] = {"float64", "number", 8},
    [FT_BOOL] = {"bool", "boolean", 0},      [FT_STRING] = {"string", "string", 0},
    [FT_TIME] = {"time.Time", "time", 8},    [FT_JSON] = {"json.RawMessage", "other", 0},
    [FT_ENUM] = {"enum", "enum", 2},
};

size_t field_type_width(field_type t) { return t < FT_COUNT ? type_info[t].width : 0; }
const char *field_type_go_name(field_type t) { return t < FT_COUNT ? type_info[t].go : "?"; }
const char *field_type_ts_name(field_type t) { return t < FT_COUNT ? type_info[t].ts : "other"; }

int field_type_from_go_name(const char *name, field_type *out) {
    for (int t = 0; t < FT_COUNT; t++)
        if (strcmp(type_info[t].go, name) == 0) { *out = (field_type)t; return 0; }
    return -1;
}

static char *dup_or_null(const char *s) { return s ? strdup(s) : NULL; }

static int replace_str(char **slot, const char *v) {
    char *n = NULL;
    if (v && !(n = strdup(v))) return -1;
    free(*slot);
    *slot = n;
    return 0;
}

frame_t *frame_new(const char *name, const char *ref_id) {
    frame_t *f = calloc(1, sizeof *f);
    if (!f) return NULL;
    f->name = strdup(name ? name : "");
    f->ref_id = strdup(ref_id ? ref_id : "");
    if (!f->name || !f->ref_id) { frame_free(f); return NULL; }
    return f;
}

static void field_free(frame_field *fld) {
    free(fld->name);
    free(fld->labels_json);
    free(fld->config_json);
    free(fld->values.data);
    free(fld->offsets.data);
    free(fld->validity.data);
    free(fld);
}

void frame_free(frame_t *f) {
    if (!f) return;
    for (size_t i = 0; i < f->nfields; i++) field_free(f->fields[i]);
    free(f->fields);
    free(f->name);
    free(f->ref_id);
    free(f->meta_json);
    free(f);
}

int frame_set_meta(frame_t *f, const char *meta_json) { return replace_str(&f->meta_json, meta_json); }
int frame_set_ref_id(frame_t *f, const char *ref_id) { return replace_str(&f->ref_id, ref_id ? ref_id : ""); }
int field_set_labels(frame_field *fld, const char *j) { return replace_str(&fld->labels_json, j); }
int field_set_config(frame_field *fld, const char *j) { return replace_str(&fld->config_json, j); }

static int col_reserve(col_buf *b, size_t extra) {
    if (b->len + extra <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->len + extra) {
        if (cap > SIZE_MAX / 2) return -1;
        cap *= 2;
    }
    uint8_t *nd = realloc(b->data, cap);
    if (!nd) return -1;
    b->data = nd;
    b->cap = cap;
    return 0;
}

frame_field *frame_add_field(frame_t *f, const char *name, field_type type, bool nullable) {
    if (type >= FT_COUNT) return NULL;
    if (f->nfields == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 4;
        frame_field **nf = realloc(f->fields, cap * sizeof *nf);
        if (!nf) return NULL;
        f->fields = nf;
        f->cap = cap;
    }
    frame_field *fld = calloc(1, sizeof *fld);
    if (!fld) return NULL;
    fld->name = dup_or_null(name ? name : "");
    fld->type = type;
    fld->nullable = nullable;
    if (!fld->name) { free(fld); return NULL; }
    if (type == FT_STRING || type == FT_JSON) {
        int32_t zero = 0;
        if (col_reserve(&fld->offsets, 4) != 0) { field_free(fld); return NULL; }
        memcpy(fld->offsets.data, &zero, 4);
        fld->offsets.len = 4;
    }
    f->fields[f->nfields++] = fld;
    return fld;
}

long long frame_rows(const frame_t *f) {
    if (f->nfields == 0) return 0;
    size_t rows = f->fields[0]->rows;
    for (size_t i = 1; i < f->nfields; i++)
        if (f->fields[i]->rows != rows) return -1;
    return (long long)rows;
}

static inline void bit_set(uint8_t *bits, size_t i, bool v) {
    if (v) bits[i >> 3] |= (uint8_t)(1u << (i & 7));
    else bits[i >> 3] &= (uint8_t)~(1u << (i & 7));
}

static inline bool bit_get(const uint8_t *bits, size_t i) { return (bits[i >> 3] >> (i & 7)) & 1; }

/* Records the validity of the row being appended (index fld->rows). */
static int mark_valid(frame_field *fld, bool valid) {
    if (fld->validity.data == NULL && valid) return 0; /* all valid so far: no bitmap */
    size_t need = fld->rows / 8 + 1;
    if (fld->validity.data == NULL) {
        if (col_reserve(&fld->validity, need) != 0) return -1;
        memset(fld->validity.data, 0xFF, need);
        fld->validity.len = need;
    } else if (need > fld->validity.len) {
        if (col_reserve(&fld->validity, 1) != 0) return -1;
        fld->validity.data[fld->validity.len++] = 0;
    }
    bit_set(fld->validity.data, fld->rows, valid);
    return 0;
}

static inline int append_fixed(frame_field *fld, const void *v, size_t width) {
    /* Hot path (one call per value): room is usually there and no bitmap exists. */
    if ((fld->values.len + width > fld->values.cap && col_reserve(&fld->values, width) != 0) ||
        (fld->validity.data && mark_valid(fld, true) != 0)) {
        fld->failed = true;
        return -1;
    }
    uint8_t *dst = fld->values.data + fld->values.len;
    switch (width) {
    case 8: memcpy(dst, v, 8); break;
    case 4: memcpy(dst, v, 4); break;
    case 2: memcpy(dst, v, 2); break;
    default: memcpy(dst, v, 1); break;
    }
    fld->values.len += width;
    fld->rows++;
    return 0;
}

int field_append_int(frame_field *fld, int64_t v) {
    switch (fld->type) {
    case FT_INT8: { int8_t x = (int8_t)v; if (x != v) return -1; return append_fixed(fld, &x, 1); }
    case FT_INT16: { int16_t x = (int16_t)v; if (x != v) return -1; return append_fixed(fld, &x, 2); }
    case FT_INT32: { int32_t x = (int32_t)v; if (x != v) return -1; return append_fixed(fld, &x, 4); }
    case FT_INT64:
    case FT_TIME: return append_fixed(fld, &v, 8);
    default: return v < 0 ? -1 : field_append_uint(fld, (uint64_t)v);
    }
}

int field_append_uint(frame_field *fld, uint64_t v) {
    switch (fld->type) {
    case FT_UINT8: { uint8_t x = (uint8_t)v; if (x != v) return -1; return append_fixed(fld, &x, 1); }
    case FT_UINT16:
    case FT_ENUM: { uint16_t x = (uint16_t)v; if (x != v) return -1; return append_fixed(fld, &x, 2); }
    case FT_UINT32: { uint32_t x = (uint32_t)v; if (x != v) return -1; return append_fixed(fld, &x, 4); }
    case FT_UINT64: return append_fixed(fld, &v, 8);
    case FT_INT8: case FT_INT16: case FT_INT32: case FT_INT64: case FT_TIME:
        return v > (uint64_t)INT64_MAX ? -1 : field_append_int(fld, (int64_t)v);
    default: return -1;
    }
}

int field_append_float(frame_field *fld, double v) {
    if (fld->type == FT_FLOAT64) return append_fixed(fld, &v, 8);
    if (fld->type == FT_FLOAT32) { float x = (float)v; return append_fixed(fld, &x, 4); }
    return -1;
}

int field_append_bool(frame_field *fld, bool v) {
    if (fld->type != FT_BOOL) return -1;
    if (fld->rows % 8 == 0) {
        if (col_reserve(&fld->values, 1) != 0) { fld->failed = true; return -1; }
        fld->values.data[fld->values.len++] = 0;
    }
    if (mark_valid(fld, true) != 0) { fld->failed = true; return -1; }
    bit_set(fld->values.data, fld->rows, v);
    fld->rows++;
    return 0;
}

int field_append_bytes(frame_field *fld, const char *s, size_t len) {
    if (fld->type != FT_STRING && fld->type != FT_JSON) return -1;
    if (fld->values.len + len > INT32_MAX) return -1; /* Arrow Utf8 offsets are int32 */
    if (col_reserve(&fld->values, len) != 0 || col_reserve(&fld->offsets, 4) != 0 || mark_valid(fld, true) != 0) {
        fld->failed = true;
        return -1;
    }
    if (len) memcpy(fld->values.data + fld->values.len, s, len);
    fld->values.len += len;
    int32_t end = (int32_t)fld->values.len;
    memcpy(fld->offsets.data + fld->offsets.len, &end, 4);
    fld->offsets.len += 4;
    fld->rows++;
    return 0;
}

int field_append_null(frame_field *fld) {
    if (!fld->nullable) return -1;
    /* Null slots still take room in the value/offset buffers. */
    int r;
    switch (fld->type) {
    case FT_BOOL: r = field_append_bool(fld, false); break;
    case FT_STRING: case FT_JSON: r = field_append_bytes(fld, "", 0); break;
    default: {
        uint64_t zero = 0;
        r = append_fixed(fld, &zero, field_type_width(fld->type));
    }
    }
    if (r != 0) return r;
    fld->rows--;
    if (mark_valid(fld, false) != 0) { fld->failed = true; fld->rows++; return -1; }
    fld->rows++;
    fld->null_count++;
    return 0;
}

bool field_is_null(const frame_field *fld, size_t row) {
    return fld->validity.data && !bit_get(fld->validity.data, row);
}

int64_t field_get_int(const frame_field *fld, size_t row) {
    const uint8_t *p = fld->values.data + row * field_type_width(fld->type);
    switch (fld->type) {
    case FT_INT8: return *(const int8_t *)p;
    case FT_INT16: { int16_t v; memcpy(&v, p, 2); return v; }
    case FT_INT32: { int32_t v; memcpy(&v, p, 4); return v; }
    case FT_INT64: case FT_TIME: { int64_t v; memcpy(&v, p, 8); return v; }
    default: return (int64_t)field_get_uint(fld, row);
    }
}

uint64_t field_get_uint(const frame_field *fld, size_t row) {
    const uint8_t *p = fld->values.data + row * field_type_width(fld->type);
    switch (fld->type) {
    case FT_UINT8: return *p;
    case FT_UINT16: case FT_ENUM: { uint16_t v; memcpy(&v, p, 2); return v; }
    case FT_UINT32: { uint32_t v; memcpy(&v, p, 4); return v; }
    case FT_UINT64: { uint64_t v; memcpy(&v, p, 8); return v; }
    default: return (uint64_t)field_get_int(fld, row);
    }
}

double field_get_float(const frame_field *fld, size_t row) {
    if (fld->type == FT_FLOAT32) { float v; memcpy(&v, fld->values.data + row * 4, 4); return v; }
    double v;
    memcpy(&v, fld->values.data + row * 8, 8);
    return v;
}

bool field_get_bool(const frame_field *fld, size_t row) { return bit_get(fld->values.data, row); }

const char *field_get_bytes(const frame_field *fld, size_t row, size_t *len) {
    int32_t a, b;
    memcpy(&a, fld->offsets.data + row * 4, 4);
    memcpy(&b, fld->offsets.data + (row + 1) * 4, 4);
    *len = (size_t)(b - a);
    /* A column of empty strings never allocated its data buffer. */
    return fld->values.data ? (const char *)fld->values.data + a : "";
}

/* ---- sorting ---------------------------------------------------------- */

int field_compare_rows(const frame_field *k, size_t a, size_t b) {
    switch (k->type) {
    case FT_FLOAT32: case FT_FLOAT64: {
        double x = field_get_float(k, a), y = field_get_float(k, b);
        return x < y ? -1 : x > y ? 1 : 0;
    }
    case FT_UINT8: case FT_UINT16: case FT_UINT32: case FT_UINT64: case FT_ENUM: {
        uint64_t x = field_get_uint(k, a), y = field_get_uint(k, b);
        return x < y ? -1 : x > y ? 1 : 0;
    }
    default: {
        int64_t x = field_get_int(k, a), y = field_get_int(k, b);
        return x < y ? -1 : x > y ? 1 : 0;
    }
    }
}

/* Bottom-up merge sort of a permutation: stable, O(n log n), no recursion. */
static int sorted_permutation(const frame_field *k, size_t n, size_t **out) {
    size_t *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b);
    if (!a || !b) { free(a); free(b); return -1; }
    for (size_t i = 0; i < n; i++) a[i] = i;
    for (size_t w = 1; w < n; w *= 2) {
        for (size_t lo = 0; lo < n; lo += 2 * w) {
            size_t mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n;
            size_t i = lo, j = mid, o = lo;
            while (i < mid && j < hi) b[o++] = field_compare_rows(k, a[j], a[i]) < 0 ? a[j++] : a[i++];
            while (i < mid) b[o++] = a[i++];
            while (j < hi) b[o++] = a[j++];
        }
        size_t *t = a; a = b; b = t;
    }
    free(b);
    *out = a;
    return 0;
}

static int permute_field(frame_field *fld, const size_t *perm) {
    size_t n = fld->rows;
    frame_field tmp = *fld;
    memset(&tmp.values, 0, sizeof tmp.values);
    memset(&tmp.offsets, 0, sizeof tmp.offsets);
    memset(&tmp.validity, 0, sizeof tmp.validity);
    tmp.rows = 0;
    tmp.null_count = 0;
    tmp.name = tmp.labels_json = tmp.config_json = NULL;
    if (fld->type == FT_STRING || fld->type == FT_JSON) {
        int32_t zero = 0;
        if (col_reserve(&tmp.offsets, 4) != 0) return -1;
        memcpy(tmp.offsets.data, &zero, 4);
        tmp.offsets.len = 4;
    }
    int r = 0;
    for (size_t i = 0; i < n && r == 0; i++) {
        size_t row = perm[i], len;
        if (field_is_null(fld, row)) { r = field_append_null(&tmp); continue; }
        switch (fld->type) {
        case FT_BOOL: r = field_append_bool(&tmp, field_get_bool(fld, row)); break;
        case FT_STRING: case FT_JSON: {
            const char *s = field_get_bytes(fld, row, &len);
            r = field_append_bytes(&tmp, s, len);
            break;
        }
        default: {
            size_t w = field_type_width(fld->type);
            r = append_fixed(&tmp, fld->values.data + row * w, w);
        }
        }
    }
    if (r != 0) {
        free(tmp.values.data); free(tmp.offsets.data); free(tmp.validity.data);
        return -1;
    }
    free(fld->values.data); free(fld->offsets.data); free(fld->validity.data);
    fld->values = tmp.values;
    fld->offsets = tmp.offsets;
    fld->validity = tmp.validity;
    return 0;
}

int frame_sort_by(frame_t *f, size_t key) {
    if (key >= f->nfields) return -1;
    const frame_field *k = f->fields[key];
    size_t n = k->rows;
    bool sorted = true;
    for (size_t i = 1; i < n && sorted; i++) sorted = field_compare_rows(k, i - 1, i) <= 0;
    if (sorted) return 0;
    size_t *perm;
    if (sorted_permutation(k, n, &perm) != 0) return -1;
    int r = 0;
    for (size_t i = 0; i < f->nfields && r == 0; i++) r = permute_field(f->fields[i], perm);
    free(perm);
    return r;
}
