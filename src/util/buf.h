/*
 * buf: a growable byte buffer with printf-style appends. Out-of-memory is
 * sticky: after a failed append every later append is a no-op and buf_ok()
 * says false, so callers check once at the end.
 */
#ifndef BUF_H
#define BUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    char *data;
    size_t len;
    size_t cap;
    bool failed;
} buf_t;

void buf_init(buf_t *b);
void buf_free(buf_t *b);
bool buf_reserve(buf_t *b, size_t extra);
void buf_append(buf_t *b, const void *data, size_t len);
void buf_puts(buf_t *b, const char *s);
void buf_printf(buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static inline bool buf_ok(const buf_t *b) { return !b->failed; }

#endif
