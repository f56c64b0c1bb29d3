/*
 * frame: Grafana's data frame model, column-major and ready for Arrow.
 *
 * A frame owns its fields; a field owns three column buffers laid out
 * exactly as Arrow wants them (values, offsets for variable-width types,
 * validity bitmap), so the Arrow writer copies each column once, straight
 * into the output. Builders append one value at a time (streaming parsers
 * call them as tokens arrive) with amortised doubling.
 *
 * Validity is lazy: a field gets a bitmap only when its first null arrives
 * (earlier rows are back-filled as valid), matching the SDK's output where
 * nullable columns without nulls carry no bitmap.
 *
 * Ownership: frame_free releases everything. Not thread-safe; one owner.
 */
#ifndef FRAME_H
#define FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    FT_INT8,
    FT_INT16,
    FT_INT32,
    FT_INT64,
    FT_UINT8,
    FT_UINT16,
    FT_UINT32,
    FT_UINT64,
    FT_FLOAT32,
    FT_FLOAT64,
    FT_BOOL,
    FT_STRING,
    FT_TIME,   /* int64 nanoseconds since the Unix epoch */
    FT_JSON,   /* raw JSON bytes per row */
    FT_ENUM,   /* uint16 index into config.type.enum.text */
    FT_COUNT
} field_type;

typedef struct {
    uint8_t *data;
    size_t len;
    size_t cap;
} col_buf;

typedef struct {
    char *name;
    field_type type;
    bool nullable;
    char *labels_json;  /* canonical JSON object (sorted keys) or NULL */
    char *config_json;  /* JSON object or NULL */
    size_t rows;
    size_t null_count;
    col_buf values;     /* fixed-width values; bool: bit-packed; string/json: bytes */
    col_buf offsets;    /* string/json: int32 offsets, rows + 1 entries */
    col_buf validity;   /* bit set = valid; empty until the first null */
    bool failed;        /* an append ran out of memory */
} frame_field;

typedef struct {
    char *name;
    char *ref_id;
    char *meta_json;    /* FrameMeta JSON or NULL */
    frame_field **fields;
    size_t nfields;
    size_t cap;
} frame_t;

frame_t *frame_new(const char *name, const char *ref_id);
void frame_free(frame_t *f);
int frame_set_meta(frame_t *f, const char *meta_json);
int frame_set_ref_id(frame_t *f, const char *ref_id);
/* Adds a field (owned by the frame); NULL when out of memory. */
frame_field *frame_add_field(frame_t *f, const char *name, field_type type, bool nullable);
/* Rows of the frame (all fields must agree); -1 when they do not. */
long long frame_rows(const frame_t *f);

int field_set_labels(frame_field *fld, const char *labels_json);
int field_set_config(frame_field *fld, const char *config_json);

/* Appends; the value must match the field's type family. Return 0 or -1. */
int field_append_int(frame_field *fld, int64_t v);     /* int8..int64, time */
int field_append_uint(frame_field *fld, uint64_t v);   /* uint8..uint64, enum */
int field_append_float(frame_field *fld, double v);    /* float32/float64 */
int field_append_bool(frame_field *fld, bool v);
int field_append_bytes(frame_field *fld, const char *s, size_t len); /* string, json */
int field_append_null(frame_field *fld);               /* nullable fields only */

bool field_is_null(const frame_field *fld, size_t row);
int64_t field_get_int(const frame_field *fld, size_t row);
uint64_t field_get_uint(const frame_field *fld, size_t row);
double field_get_float(const frame_field *fld, size_t row);
bool field_get_bool(const frame_field *fld, size_t row);
const char *field_get_bytes(const frame_field *fld, size_t row, size_t *len);

/* Fixed width in bytes of one value (0 for bool/string/json). */
size_t field_type_width(field_type t);
/* Grafana's names: "int8".."uint64", "float32", "float64", "bool", "string",
 * "time.Time", "json.RawMessage", "enum"; and the JS type hint (tstype). */
const char *field_type_go_name(field_type t);
const char *field_type_ts_name(field_type t);
int field_type_from_go_name(const char *name, field_type *out);

/* The order frame_sort_by uses: <0, 0 or >0 as row a of k sorts before, with
 * or after row b (floats, unsigned and signed integers, times compared as
 * numbers). */
int field_compare_rows(const frame_field *k, size_t a, size_t b);

/* Reorders every field's rows by ascending values of field `key` (a time or
 * numeric field without nulls); stable. Returns 0 or -1 (out of memory). */
int frame_sort_by(frame_t *f, size_t key);

#endif
