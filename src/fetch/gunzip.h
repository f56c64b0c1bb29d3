/*
 * gunzip: streaming decompression of a response body (Content-Encoding
 * gzip or deflate) with zlib, fed chunk by chunk as the body arrives.
 *
 * Why a module of its own: the HTTP client hands body pieces to a consumer
 * (the frames converter) as they arrive; gunzip sits between the two with
 * no I/O of its own, so fetch can push each on_body piece through it and
 * the converter keeps parsing in place. Memory is bounded whatever the
 * input: zlib's 32 KiB history window plus a fixed GUNZIP_WINDOW output
 * buffer, never the whole body.
 *
 * The size limit counts DECOMPRESSED bytes: a 10 KB body that inflates to
 * 10 GB (a decompression bomb) stops the moment the output passes the
 * limit, and nothing beyond the limit is ever handed to the consumer.
 *
 * What is accepted, as Go's net/http and browsers do:
 *   gzip     one or more concatenated gzip members (RFC 1952), each
 *            checked against its CRC-32 and length trailer;
 *   deflate  zlib-wrapped (RFC 1950, what the RFC says) or raw deflate
 *            (RFC 1951, what some servers send), told apart by the first
 *            two bytes;
 *   an empty body is an empty answer (a 204 or HEAD carries the header too).
 * Refused with a message: a body that is not of the announced encoding,
 * corrupt data, a stream cut short (reported by gunzip_finish), bytes
 * after the end of the stream.
 */
#ifndef FETCH_GUNZIP_H
#define FETCH_GUNZIP_H

#include <stddef.h>
#include <stdint.h>

/* Output buffer handed to the consumer: at most this many bytes per call. */
#define GUNZIP_WINDOW (16 * 1024)

/* The Accept-Encoding request header value for what this module decodes. */
#define GUNZIP_ACCEPT_ENCODING "gzip, deflate"

typedef enum {
    GUNZIP_IDENTITY = 0,  /* no Content-Encoding, or "identity": no decoder needed */
    GUNZIP_GZIP,          /* "gzip", "x-gzip" */
    GUNZIP_DEFLATE,       /* "deflate" */
    GUNZIP_UNSUPPORTED    /* anything else ("br", "zstd", "gzip, br", ...) */
} gunzip_encoding;

typedef enum {
    GUNZIP_OK = 0,
    GUNZIP_E_DATA,        /* not the announced encoding, corrupt, truncated, trailing bytes */
    GUNZIP_E_LIMIT,       /* the decompressed size passed the limit */
    GUNZIP_E_ABORTED,     /* the output callback returned non-zero */
    GUNZIP_E_NOMEM
} gunzip_status;

/* Receives decompressed bytes (1..GUNZIP_WINDOW per call); return 0 to go
 * on, non-zero to stop (the stream then fails with GUNZIP_E_ABORTED). */
typedef int (*gunzip_out_fn)(void *arg, const uint8_t *data, size_t len);

typedef struct gunzip gunzip;

/* A Content-Encoding header value (NULL = absent); case-insensitive,
 * surrounding blanks ignored. Only a single coding is supported. */
gunzip_encoding gunzip_encoding_parse(const char *content_encoding);

/* enc is GUNZIP_GZIP or GUNZIP_DEFLATE. max_out limits the decompressed
 * bytes (0 = no limit). Returns NULL when out of memory or for another enc. */
gunzip *gunzip_new(gunzip_encoding enc, size_t max_out, gunzip_out_fn out, void *arg);

/* Feeds compressed bytes (len may be 0); output goes to the callback before
 * this returns. After a failure every later call returns the same status. */
gunzip_status gunzip_feed(gunzip *z, const uint8_t *data, size_t len);

/* The body has ended: fails with GUNZIP_E_DATA when the stream is cut
 * short. An empty body is fine. */
gunzip_status gunzip_finish(gunzip *z);

/* What went wrong, in words for the Grafana user; NULL while all is well. */
const char *gunzip_error(const gunzip *z);

uint64_t gunzip_total_in(const gunzip *z);   /* compressed bytes consumed */
uint64_t gunzip_total_out(const gunzip *z);  /* decompressed bytes handed out */

void gunzip_free(gunzip *z);

#endif
