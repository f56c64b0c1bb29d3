/*
 * jtree: parses a JSON document into yajl's tree type (yajl_val) with the
 * streaming parser. yajl's own yajl_tree_parse grows arrays one element at
 * a time (quadratic on large arrays); this one doubles. Numbers keep their
 * source text (u.number.r), so 64-bit extremes survive. String values keep
 * their length too (jtree_string_len), so an escaped NUL (\u0000) does not
 * cut them; object keys are plain C strings. Free the result with
 * jtree_free, never yajl_tree_free (string values are not plain mallocs).
 */
#ifndef JTREE_H
#define JTREE_H

#include <stddef.h>
#include <yajl/yajl_tree.h>

yajl_val jtree_parse(const char *text, size_t len, char *err, size_t errcap);

/* The byte length of a string value of a jtree_parse tree. */
size_t jtree_string_len(const struct yajl_val_s *v);

void jtree_free(yajl_val v);

#endif
