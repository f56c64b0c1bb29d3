/*
 * jsonw: writing JSON text by hand where a document tree would be waste:
 * string escaping that always yields valid JSON (invalid UTF-8 becomes
 * U+FFFD), quoted strings into a buf_t. A leaf like buf.
 */
#ifndef JSONW_H
#define JSONW_H

#include <stdbool.h>
#include <stddef.h>

#include "buf.h"

/* Appends s as the body of a JSON string (no quotes) into buf[*len..cap),
 * escaping quotes, backslashes, control bytes and invalid UTF-8 (as U+FFFD).
 * Stops before overflowing; returns 0 when everything fit, -1 when cut. */
int jsonw_escape(char *buf, size_t cap, size_t *len, const char *s, size_t n);

/* True when s[0..n) is valid UTF-8 (no overlongs, no surrogates). */
bool jsonw_utf8_valid(const char *s, size_t n);
/* Appends s to b with every invalid UTF-8 sequence replaced by U+FFFD. */
void jsonw_utf8_sanitize(buf_t *b, const char *s, size_t n);

/* Appends "s" (quoted, escaped) to b. */
void jsonw_string(buf_t *b, const char *s, size_t n);

#endif
