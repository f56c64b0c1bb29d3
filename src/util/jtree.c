#include "jtree.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_parse.h>

#define JTREE_MAX_DEPTH 512

typedef struct {
    yajl_val stack[JTREE_MAX_DEPTH];
    size_t caps[JTREE_MAX_DEPTH]; /* capacity of the container's arrays */
    int depth;
    char *pending_key;            /* object key waiting for its value */
    yajl_val root;
    int oom;
} jtree_ctx;

static yajl_val new_val(yajl_type t) {
    yajl_val v = calloc(1, sizeof *v);
    if (v) v->type = t;
    return v;
}

/* Attaches v to the open container (or makes it the root). */
static int attach(jtree_ctx *c, yajl_val v) {
    if (!v) { c->oom = 1; return 0; }
    if (c->depth == 0) {
        c->root = v;
        return 1;
    }
    yajl_val parent = c->stack[c->depth - 1];
    size_t *cap = &c->caps[c->depth - 1];
    if (parent->type == yajl_t_array) {
        if (parent->u.array.len == *cap) {
            size_t ncap = *cap ? *cap * 2 : 8;
            yajl_val *nv = realloc(parent->u.array.values, ncap * sizeof *nv);
            if (!nv) { jtree_free(v); c->oom = 1; return 0; }
            parent->u.array.values = nv;
            *cap = ncap;
        }
        parent->u.array.values[parent->u.array.len++] = v;
        return 1;
    }
    if (parent->u.object.len == *cap) {
        size_t ncap = *cap ? *cap * 2 : 8;
        const char **nk = realloc((void *)parent->u.object.keys, ncap * sizeof *nk);
        if (nk) parent->u.object.keys = nk;
        yajl_val *nv = nk ? realloc(parent->u.object.values, ncap * sizeof *nv) : NULL;
        if (!nv) { jtree_free(v); c->oom = 1; return 0; }
        parent->u.object.values = nv;
        *cap = ncap;
    }
    parent->u.object.keys[parent->u.object.len] = c->pending_key;
    parent->u.object.values[parent->u.object.len++] = v;
    c->pending_key = NULL;
    return 1;
}

static int open_container(jtree_ctx *c, yajl_type t) {
    if (c->depth >= JTREE_MAX_DEPTH) return 0;
    yajl_val v = new_val(t);
    if (!attach(c, v)) return 0;
    c->stack[c->depth] = v;
    c->caps[c->depth] = 0;
    c->depth++;
    return 1;
}

static int on_null(void *ctx) { return attach(ctx, new_val(yajl_t_null)); }
static int on_bool(void *ctx, int b) { return attach(ctx, new_val(b ? yajl_t_true : yajl_t_false)); }

static int on_number(void *ctx, const char *s, size_t len) {
    yajl_val v = new_val(yajl_t_number);
    if (!v) return attach(ctx, NULL);
    v->u.number.r = strndup(s, len);
    if (!v->u.number.r) { free(v); return attach(ctx, NULL); }
    char *end;
    errno = 0;
    v->u.number.i = strtoll(v->u.number.r, &end, 10);
    if (*end == '\0' && errno == 0) v->u.number.flags |= YAJL_NUMBER_INT_VALID;
    errno = 0;
    v->u.number.d = strtod(v->u.number.r, &end);
    if (*end == '\0' && errno == 0) v->u.number.flags |= YAJL_NUMBER_DOUBLE_VALID;
    return attach(ctx, v);
}

/* A string value is one block: its length, then the bytes and a NUL;
 * u.string points at the bytes. */
static int on_string(void *ctx, const unsigned char *s, size_t len) {
    yajl_val v = new_val(yajl_t_string);
    if (!v) return attach(ctx, NULL);
    char *block = len < SIZE_MAX - sizeof len - 1 ? malloc(sizeof len + len + 1) : NULL;
    if (!block) { free(v); return attach(ctx, NULL); }
    memcpy(block, &len, sizeof len);
    memcpy(block + sizeof len, s, len);
    block[sizeof len + len] = '\0';
    v->u.string = block + sizeof len;
    return attach(ctx, v);
}

size_t jtree_string_len(const struct yajl_val_s *v) {
    size_t len;
    memcpy(&len, v->u.string - sizeof len, sizeof len);
    return len;
}

void jtree_free(yajl_val v) {
    if (!v) return;
    switch (v->type) {
    case yajl_t_string: free(v->u.string - sizeof(size_t)); break;
    case yajl_t_number: free(v->u.number.r); break;
    case yajl_t_object:
        for (size_t i = 0; i < v->u.object.len; i++) {
            free((char *)v->u.object.keys[i]);
            jtree_free(v->u.object.values[i]);
        }
        free((void *)v->u.object.keys);
        free(v->u.object.values);
        break;
    case yajl_t_array:
        for (size_t i = 0; i < v->u.array.len; i++) jtree_free(v->u.array.values[i]);
        free(v->u.array.values);
        break;
    default: break;
    }
    free(v);
}

static int on_map_key(void *ctx, const unsigned char *s, size_t len) {
    jtree_ctx *c = ctx;
    free(c->pending_key);
    c->pending_key = strndup((const char *)s, len);
    if (!c->pending_key) c->oom = 1;
    return c->pending_key != NULL;
}

static int on_start_map(void *ctx) { return open_container(ctx, yajl_t_object); }
static int on_start_array(void *ctx) { return open_container(ctx, yajl_t_array); }

static int on_end(void *ctx) {
    jtree_ctx *c = ctx;
    c->depth--;
    return 1;
}

static const yajl_callbacks callbacks = {
    on_null, on_bool, NULL, NULL, on_number, on_string, on_start_map, on_map_key, on_end, on_start_array, on_end,
};

yajl_val jtree_parse(const char *text, size_t len, char *err, size_t errcap) {
    jtree_ctx *c = calloc(1, sizeof *c);
    if (!c) { snprintf(err, errcap, "out of memory"); return NULL; }
    yajl_handle h = yajl_alloc(&callbacks, NULL, c);
    if (!h) { free(c); snprintf(err, errcap, "out of memory"); return NULL; }
    yajl_status st = yajl_parse(h, (const unsigned char *)text, len);
    if (st == yajl_status_ok) st = yajl_complete_parse(h);
    yajl_val root = NULL;
    if (st == yajl_status_ok && !c->oom && c->root) {
        root = c->root;
    } else {
        if (c->oom) snprintf(err, errcap, "out of memory");
        else if (c->depth >= JTREE_MAX_DEPTH) snprintf(err, errcap, "nested deeper than %d levels", JTREE_MAX_DEPTH);
        else {
            unsigned char *msg = yajl_get_error(h, 0, (const unsigned char *)text, len);
            snprintf(err, errcap, "%s at byte %zu", msg ? (char *)msg : "parse error", yajl_get_bytes_consumed(h));
            if (msg) yajl_free_error(h, msg);
        }
        jtree_free(c->root);
    }
    free(c->pending_key);
    yajl_free(h);
    free(c);
    return root;
}
