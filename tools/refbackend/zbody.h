/*
 * zbody: compressed response bodies for the `encoding=` behaviour (zlib).
 *
 * Whole bodies are compressed in one call with a reused deflate state per
 * encoding (no allocation once warm); streamed bodies (mode=huge) get a
 * state of their own and are compressed piece by piece as they are
 * produced. corrupt=1 makes the first deflate byte (right after the gzip or
 * zlib header) announce the reserved block type 3, so any inflater fails at
 * once ("invalid block type") before it yields a single byte.
 */
#ifndef RB_ZBODY_H
#define RB_ZBODY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <zlib.h>

#include "gen.h"
#include "util/buf.h"

/* The Content-Encoding header line ("Content-Encoding: gzip\r\n"), NULL for none. */
const char *rb_encoding_header(rb_encoding e);

/* Replaces the body in b by its compressed form (br: by bytes that are no
 * brotli stream). False when out of memory. */
bool rb_compress_body(rb_encoding e, bool corrupt, buf_t *b);

/* A streaming compressor (gzip, deflate and deflate-raw only). */
typedef struct {
    z_stream zs;
    bool ready, corrupt;
    uint64_t produced;  /* compressed bytes appended so far */
    uint64_t corrupt_at; /* offset of the first deflate byte */
} rb_zstream;

bool rb_zstream_init(rb_zstream *z, rb_encoding e, bool corrupt);
/* Compresses n bytes (finish: and ends the stream), appending the output to
 * out. False when out of memory or on a zlib error. */
bool rb_zstream_write(rb_zstream *z, const void *in, size_t n, bool finish, buf_t *out);
void rb_zstream_end(rb_zstream *z);

/* Frees the reused whole-body states (at exit, for leak checkers). */
void rb_zbody_cleanup(void);

#endif
