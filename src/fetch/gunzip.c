#include "gunzip.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>

typedef enum {
    ST_DETECT,   /* deflate only: waiting for two bytes to tell zlib from raw */
    ST_MEMBER,   /* inside a stream (gzip member, zlib or raw deflate) */
    ST_END,      /* a stream ended; gzip may start another member */
    ST_FAILED
} state_t;

struct gunzip {
    z_stream zs;
    bool zs_ready;          /* inflateInit2 succeeded: inflateEnd is owed */
    gunzip_encoding enc;
    state_t st;
    gunzip_status status;
    size_t max_out;         /* 0 = no limit */
    gunzip_out_fn out;
    void *arg;
    uint64_t total_in, total_out;
    uint64_t member_in;     /* bytes of the current gzip member seen so far */
    unsigned members;       /* gzip members started */
    uint8_t hdr[2];         /* deflate detection */
    size_t hdr_len;
    char error[256];
    uint8_t win[GUNZIP_WINDOW];
};

gunzip_encoding gunzip_encoding_parse(const char *ce) {
    if (!ce) return GUNZIP_IDENTITY;
    while (*ce == ' ' || *ce == '\t') ce++;
    size_t n = strlen(ce);
    while (n > 0 && (ce[n - 1] == ' ' || ce[n - 1] == '\t')) n--;
    if (n == 0 || (n == 8 && strncasecmp(ce, "identity", 8) == 0)) return GUNZIP_IDENTITY;
    if ((n == 4 && strncasecmp(ce, "gzip", 4) == 0) || (n == 6 && strncasecmp(ce, "x-gzip", 6) == 0))
        return GUNZIP_GZIP;
    if (n == 7 && strncasecmp(ce, "deflate", 7) == 0) return GUNZIP_DEFLATE;
    return GUNZIP_UNSUPPORTED;
}

static const char *enc_name(const gunzip *z) { return z->enc == GUNZIP_GZIP ? "gzip" : "deflate"; }

static gunzip_status fail(gunzip *z, gunzip_status s, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static gunzip_status fail(gunzip *z, gunzip_status s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(z->error, sizeof z->error, fmt, ap);
    va_end(ap);
    z->st = ST_FAILED;
    z->status = s;
    return s;
}

gunzip *gunzip_new(gunzip_encoding enc, size_t max_out, gunzip_out_fn out, void *arg) {
    if (enc != GUNZIP_GZIP && enc != GUNZIP_DEFLATE) return NULL;
    gunzip *z = calloc(1, sizeof *z);
    if (!z) return NULL;
    z->enc = enc;
    z->max_out = max_out;
    z->out = out;
    z->arg = arg;
    if (enc == GUNZIP_GZIP) {
        /* 16 + 15: gzip wrapper only (no zlib auto-detection: the header said gzip). */
        if (inflateInit2(&z->zs, 16 + MAX_WBITS) != Z_OK) {
            free(z);
            return NULL;
        }
        z->zs_ready = true;
        z->st = ST_MEMBER;
        z->members = 1;
    } else {
        z->st = ST_DETECT;
    }
    return z;
}

void gunzip_free(gunzip *z) {
    if (!z) return;
    if (z->zs_ready) inflateEnd(&z->zs);
    free(z);
}

const char *gunzip_error(const gunzip *z) { return z->status == GUNZIP_OK ? NULL : z->error; }
uint64_t gunzip_total_in(const gunzip *z) { return z->total_in; }
uint64_t gunzip_total_out(const gunzip *z) { return z->total_out; }

/* RFC 1950: CM = 8 (deflate), CINFO <= 7, and the 16-bit header is a multiple
 * of 31. A raw deflate stream rarely passes this (the same guess curl and
 * browsers make). */
static bool looks_zlib(uint8_t b0, uint8_t b1) {
    return (b0 & 0x0F) == 8 && (b0 >> 4) <= 7 && (((unsigned)b0 << 8) | b1) % 31 == 0;
}

static gunzip_status data_error(gunzip *z, const char *what) {
    return fail(z, GUNZIP_E_DATA,
                "the %s-compressed response body is corrupt (%s at compressed byte %llu): check the backend or the "
                "proxy that compresses its answers",
                enc_name(z), what, (unsigned long long)z->total_in);
}

/* Runs inflate over data until it is all consumed, handing output on. */
static gunzip_status run(gunzip *z, const uint8_t *data, size_t len) {
    static const uint8_t magic[2] = {0x1F, 0x8B};
    z_stream *s = &z->zs;
    s->next_in = (Bytef *)data; /* zlib does not write through next_in */
    while (len > 0 || s->avail_in > 0 || z->st == ST_MEMBER) {
        /* avail_in is 32-bit: hand over at most 1 GiB at a time. */
        if (s->avail_in == 0 && len > 0) {
            size_t n = len > (1u << 30) ? (1u << 30) : len;
            s->avail_in = (uInt)n;
            len -= n;
        }
        if (z->st == ST_END) {
            if (s->avail_in == 0) break;
            if (z->enc != GUNZIP_GZIP)
                return fail(z, GUNZIP_E_DATA,
                            "the deflate-compressed response body has extra bytes after the end of the compressed "
                            "data (at compressed byte %llu): check the backend",
                            (unsigned long long)z->total_in);
            /* Another gzip member follows (concatenated gzip, RFC 1952 2.2). */
            if (inflateReset(s) != Z_OK) return data_error(z, "inflateReset failed");
            z->st = ST_MEMBER;
            z->member_in = 0;
            z->members++;
        }
        /* Check the gzip magic ourselves so the message says what the bytes are. */
        if (z->enc == GUNZIP_GZIP && z->member_in < 2) {
            for (uInt i = 0; i < s->avail_in && z->member_in + i < 2; i++) {
                if (s->next_in[i] == magic[z->member_in + i]) continue;
                if (z->members == 1)
                    return fail(z, GUNZIP_E_DATA,
                                "the response says Content-Encoding: gzip but its body is not gzip data (byte %llu "
                                "is 0x%02X, not 0x%02X): check the backend or the proxy in front of it",
                                (unsigned long long)(z->total_in + i), s->next_in[i], magic[z->member_in + i]);
                return fail(z, GUNZIP_E_DATA,
                            "the gzip-compressed response body has extra bytes after the end of gzip member %u (at "
                            "compressed byte %llu): check the backend",
                            z->members - 1, (unsigned long long)(z->total_in - z->member_in));
            }
        }
        /* Never let zlib produce more than one byte past the limit. */
        size_t cap = sizeof z->win;
        if (z->max_out) {
            uint64_t left = z->max_out - z->total_out; /* total_out <= max_out always */
            if (left < cap) cap = (size_t)left + 1;
        }
        s->next_out = z->win;
        s->avail_out = (uInt)cap;
        uInt in_before = s->avail_in;
        int rc = inflate(s, Z_NO_FLUSH);
        uInt used = in_before - s->avail_in;
        z->total_in += used;
        z->member_in += used;
        size_t produced = cap - s->avail_out;
        /* The limit first: zlib can go on past a full output window into a
         * corrupt block header, and whichever way the body was split the
         * bytes that passed the limit came first in the stream. */
        if (z->max_out && produced > z->max_out - z->total_out)
            return fail(z, GUNZIP_E_LIMIT,
                        "the decompressed response body is larger than the limit of %zu bytes (%llu compressed "
                        "bytes expanded past it)",
                        z->max_out, (unsigned long long)z->total_in);
        switch (rc) {
        case Z_OK:
        case Z_STREAM_END:
        case Z_BUF_ERROR: /* no progress possible: needs more input */
            break;
        case Z_MEM_ERROR:
            return fail(z, GUNZIP_E_NOMEM, "out of memory while decompressing the response body");
        case Z_NEED_DICT:
            return data_error(z, "it needs a preset dictionary");
        default:
            return data_error(z, s->msg ? s->msg : "invalid data");
        }
        if (produced > 0) {
            z->total_out += produced;
            if (z->out && z->out(z->arg, z->win, produced) != 0)
                return fail(z, GUNZIP_E_ABORTED, "decompressed response body refused by the caller");
        }
        if (rc == Z_STREAM_END) {
            z->st = ST_END;
            continue;
        }
        /* Done with this input when zlib took it all and had room left over
         * (a full window may mean more output is pending). */
        if (rc == Z_BUF_ERROR || (s->avail_in == 0 && s->avail_out != 0)) {
            if (len == 0) break;
        }
    }
    return GUNZIP_OK;
}

gunzip_status gunzip_feed(gunzip *z, const uint8_t *data, size_t len) {
    if (z->st == ST_FAILED) return z->status;
    if (len == 0) return GUNZIP_OK;
    if (z->st == ST_DETECT) {
        while (z->hdr_len < 2 && len > 0) {
            z->hdr[z->hdr_len++] = *data++;
            len--;
        }
        if (z->hdr_len < 2) return GUNZIP_OK;
        bool zlib = looks_zlib(z->hdr[0], z->hdr[1]);
        if (inflateInit2(&z->zs, zlib ? MAX_WBITS : -MAX_WBITS) != Z_OK)
            return fail(z, GUNZIP_E_NOMEM, "out of memory while decompressing the response body");
        z->zs_ready = true;
        z->st = ST_MEMBER;
        gunzip_status st = run(z, z->hdr, 2);
        if (st != GUNZIP_OK) return st;
        if (len == 0) return GUNZIP_OK;
    }
    return run(z, data, len);
}

gunzip_status gunzip_finish(gunzip *z) {
    if (z->st == ST_FAILED) return z->status;
    if (z->st == ST_END) return GUNZIP_OK;
    if (z->st == ST_DETECT && z->hdr_len == 0) return GUNZIP_OK; /* empty body */
    if (z->enc == GUNZIP_GZIP && z->members == 1 && z->total_in == 0) return GUNZIP_OK;
    return fail(z, GUNZIP_E_DATA,
                "the %s-compressed response body was cut short (it ended after %llu compressed bytes, inside the "
                "compressed data): the backend or a proxy closed the response early",
                enc_name(z), (unsigned long long)(z->total_in + (z->st == ST_DETECT ? z->hdr_len : 0)));
}
