#include "zbody.h"

#include <string.h>

/* Level 1: the backend must stay fast, and the sine digits compress well
 * enough (about 3x) for a bomb of valid JSON. */
#define ZLEVEL Z_BEST_SPEED
#define ZOUT_STEP 16384

const char *rb_encoding_header(rb_encoding e) {
    switch (e) {
    case RB_ENC_GZIP: return "Content-Encoding: gzip\r\n";
    case RB_ENC_DEFLATE:
    case RB_ENC_DEFLATE_RAW: return "Content-Encoding: deflate\r\n";
    case RB_ENC_BR: return "Content-Encoding: br\r\n";
    default: return NULL;
    }
}

static int window_bits(rb_encoding e) {
    switch (e) {
    case RB_ENC_GZIP: return 16 + MAX_WBITS;
    case RB_ENC_DEFLATE_RAW: return -MAX_WBITS;
    default: return MAX_WBITS;
    }
}

/* Where the deflate data starts: after the 10-byte gzip header (zlib
 * writes no name, comment or extra field) or the 2-byte zlib header. */
static uint64_t header_len(rb_encoding e) {
    return e == RB_ENC_GZIP ? 10 : e == RB_ENC_DEFLATE ? 2 : 0;
}

static bool zs_init(z_stream *zs, rb_encoding e) {
    memset(zs, 0, sizeof *zs);
    return deflateInit2(zs, ZLEVEL, Z_DEFLATED, window_bits(e), 8, Z_DEFAULT_STRATEGY) == Z_OK;
}

bool rb_zstream_init(rb_zstream *z, rb_encoding e, bool corrupt) {
    memset(z, 0, sizeof *z);
    if (e != RB_ENC_GZIP && e != RB_ENC_DEFLATE && e != RB_ENC_DEFLATE_RAW) return false;
    if (!zs_init(&z->zs, e)) return false;
    z->ready = true;
    z->corrupt = corrupt;
    z->corrupt_at = header_len(e);
    return true;
}

bool rb_zstream_write(rb_zstream *z, const void *in, size_t n, bool finish, buf_t *out) {
    if (!z->ready) return false;
    z->zs.next_in = (Bytef *)(uintptr_t)in;
    z->zs.avail_in = (uInt)n;
    int flush = finish ? Z_FINISH : Z_NO_FLUSH;
    for (;;) {
        if (!buf_reserve(out, ZOUT_STEP)) return false;
        size_t before = out->len;
        z->zs.next_out = (Bytef *)out->data + out->len;
        z->zs.avail_out = ZOUT_STEP;
        int rc = deflate(&z->zs, flush);
        if (rc == Z_STREAM_ERROR) return false;
        size_t got = ZOUT_STEP - z->zs.avail_out;
        out->len += got;
        if (z->corrupt && z->corrupt_at >= z->produced && z->corrupt_at < z->produced + got)
            out->data[before + (z->corrupt_at - z->produced)] |= 0x06; /* BTYPE = 3, reserved */
        z->produced += got;
        if (finish ? rc == Z_STREAM_END : (z->zs.avail_in == 0 && z->zs.avail_out != 0)) break;
        if (rc == Z_BUF_ERROR && z->zs.avail_out != 0) return false; /* no progress possible */
    }
    if (out->data) out->data[out->len] = 0;
    return true;
}

void rb_zstream_end(rb_zstream *z) {
    if (z->ready) deflateEnd(&z->zs);
    z->ready = false;
}

/* One reused state per encoding for whole bodies. */
static rb_zstream g_whole[RB_ENC_BR];
static buf_t g_out;

bool rb_compress_body(rb_encoding e, bool corrupt, buf_t *b) {
    if (e == RB_ENC_NONE) return true;
    if (e == RB_ENC_BR) {
        /* Brotli's first byte encodes the window size; these bytes are just
         * something no decoder should be given. */
        static const char junk[] = "\x1b\xff\xfe not a brotli stream: refbackend encoding=br \x00\x01\x02";
        b->len = 0;
        buf_append(b, junk, sizeof junk - 1);
        return buf_ok(b);
    }
    rb_zstream *z = &g_whole[e - 1];
    if (!z->ready) {
        if (!rb_zstream_init(z, e, false)) return false;
    } else if (deflateReset(&z->zs) != Z_OK) {
        return false;
    }
    z->produced = 0;
    z->corrupt = corrupt;
    g_out.len = 0;
    if (!rb_zstream_write(z, b->data ? b->data : "", b->len, true, &g_out) || !buf_ok(&g_out)) {
        buf_free(&g_out);
        return false;
    }
    b->len = 0;
    buf_append(b, g_out.data, g_out.len);
    if (g_out.cap > 1024 * 1024) buf_free(&g_out);
    return buf_ok(b);
}

void rb_zbody_cleanup(void) {
    for (size_t i = 0; i < sizeof g_whole / sizeof g_whole[0]; i++) rb_zstream_end(&g_whole[i]);
    buf_free(&g_out);
}
