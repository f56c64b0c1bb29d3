/*
 * arrow_read: a small Arrow IPC *file* reader for tests and fuzzers only.
 *
 * It reads what src/frames/arrow.c writes (and the SDK's golden file): the
 * magic at both ends, the footer length, the Footer flatbuffer with its
 * Schema and record batch Blocks, the leading Schema message, and every
 * RecordBatch message with its FieldNodes and Buffers. ar_to_frame then
 * rebuilds a frame_t through the field builders, mapping Arrow types back to
 * field_type (Int 16 unsigned + tstype "enum" → FT_ENUM, Binary → FT_JSON,
 * Timestamp → FT_TIME).
 *
 * Every offset and length is checked against the input before it is used
 * (flatbuffer root/table/vtable/field/vector/string offsets, message and
 * body extents, buffer extents, Utf8 offsets), so any malformed input ends
 * in an error string, never in a read outside the input. The reader does not
 * *require* 8-byte alignment of blocks and buffers (it copies unaligned);
 * it records what it found so tests can assert the layout.
 */
#ifndef ARROW_READ_H
#define ARROW_READ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "frames/frame.h"

/* Arrow Type union ids (Schema.fbs). */
enum {
    AR_T_NONE = 0, AR_T_INT = 2, AR_T_FLOAT = 3, AR_T_BINARY = 4, AR_T_UTF8 = 5, AR_T_BOOL = 6,
    AR_T_TIMESTAMP = 10
};

typedef struct {
    char *key;
    char *value;
} ar_kv;

typedef struct {
    char *name;
    bool nullable;
    uint8_t type_id;       /* AR_T_* */
    bool has_type_table;
    int32_t bit_width;     /* Int */
    bool is_signed;        /* Int */
    int16_t precision;     /* FloatingPoint: 0 half, 1 single, 2 double */
    int16_t unit;          /* Timestamp: 0 s .. 3 ns */
    char *timezone;        /* Timestamp; NULL when absent */
    size_t nchildren;
    bool has_dictionary;
    ar_kv *md;
    size_t nmd;
    field_type ft;         /* the frame type it maps to */
    size_t nbuffers;       /* Arrow buffers per batch for this field */
} ar_field;

typedef struct {
    int16_t endianness;
    ar_field *fields;
    size_t nfields;
    ar_kv *md;
    size_t nmd;
} ar_schema;

typedef struct {
    int64_t length;
    int64_t null_count;
} ar_node;

typedef struct {
    int64_t offset; /* relative to the body start */
    int64_t length;
} ar_buffer;

typedef struct {
    /* from the footer Block */
    int64_t offset;
    int32_t meta_len;      /* includes the 8-byte prefix */
    int64_t body_len;
    /* from the message */
    int32_t prefix_len;    /* the int32 after the continuation marker */
    int16_t version;
    int64_t msg_body_len;  /* Message.bodyLength */
    int64_t length;        /* RecordBatch.length (rows) */
    ar_node *nodes;
    size_t nnodes;
    ar_buffer *buffers;
    size_t nbuffers;
} ar_batch;

typedef struct {
    size_t file_len;
    /* leading Schema message at offset 8 */
    int32_t schema_prefix_len;
    int16_t schema_version;
    int64_t schema_body_len;
    ar_schema lead;
    /* footer */
    uint64_t footer_offset;
    int32_t footer_len;
    int16_t footer_version;
    ar_schema schema;      /* the footer's Schema: the one readers use */
    size_t ndictionaries;
    ar_batch *batches;
    size_t nbatches;
    bool ok;               /* ar_parse succeeded */
    char error[256];
} ar_file;

/* Parses the file structure. Returns NULL on success, or an error message
 * (stored in out->error). Call ar_file_free in both cases. */
const char *ar_parse(const uint8_t *data, size_t len, ar_file *out);
void ar_file_free(ar_file *af);

/* Builds a frame from a parsed file, concatenating all record batches.
 * Returns NULL with *out set, or an error message (in af->error). */
const char *ar_to_frame(ar_file *af, const uint8_t *data, size_t len, frame_t **out);

/* ar_parse + ar_to_frame. Returns 0 or -1 with a message in err. */
int ar_read_frame(const uint8_t *data, size_t len, frame_t **out, char *err, size_t errcap);

/* The value of the first key equal to `key`, or NULL. */
const char *ar_kv_get(const ar_kv *kv, size_t n, const char *key);

/* Compares two frames value by value (names, refId, meta, field names,
 * types, nullability, labels, config, rows, nulls, every value; floats
 * compare bit for bit except that any NaN equals any NaN). Returns 0 when
 * equal, else -1 with the first difference described in msg. */
int ar_frame_diff(const frame_t *a, const frame_t *b, char *msg, size_t cap);

/* Compares two schemas (fields, types, metadata). 0 or -1 with msg. */
int ar_schema_diff(const ar_schema *a, const ar_schema *b, char *msg, size_t cap);

/* The layout our writer promises (src/frames/arrow.c, protocol notes §5.1),
 * on a parsed file: "ARROW1\0\0" first; version V5 everywhere; the Schema
 * message at 8 with an 8-multiple length and no body, identical to the
 * footer's Schema; batches back to back after it, each with 8-aligned
 * offset, metaDataLength (= 8 + prefix length) and bodyLength; buffers
 * consecutive from 0 at 8-aligned offsets with zero padding, bodyLength =
 * the padded end; validity buffers empty when null_count is 0; then the
 * end-of-stream marker and the 8-aligned footer. 0, or -1 with msg. */
int ar_check_layout(const ar_file *af, const uint8_t *data, size_t len, char *msg, size_t cap);

#endif
