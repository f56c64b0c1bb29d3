/*
 * jtree: parses a JSON document into yajl's tree type (yajl_val) with the
 * streaming parser. yajl's own yajl_tree_parse grows arrays one element at
 * a time (quadratic on large arrays); this one doubles. Numbers keep their
 * source text (u.number.r), so 64-bit extremes survive. Free the result
 * with yajl_tree_free.
 */
#ifndef JTREE_H
#define JTREE_H

#include <stddef.h>
#include <yajl/yajl_tree.h>

yajl_val jtree_parse(const char *text, size_t len, char *err, size_t errcap);

#endif
