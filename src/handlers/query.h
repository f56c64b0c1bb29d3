/*
 * query: a panel's or alert rule's query model (the JSON-datasource shape:
 * target, payload, hide, other keys kept) → the POST /query body the
 * backend expects, with Grafana's time macros expanded in the target and in
 * every string of the payload.
 */
#ifndef QUERY_H
#define QUERY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pluginv2.pb-c.h"

typedef struct {
    bool hide;
    char *target;   /* expanded */
    char *body;     /* the request body (NULL when hidden) */
} qm_query;

/* Returns 0, or -1 with a message saying what is wrong with the model. */
int qm_build(const Pluginv2__DataQuery *q, qm_query *out, char *err, size_t errcap);
void qm_free(qm_query *q);

/* Expands $__from, $__to, $__interval, $__interval_ms, $__range,
 * $__range_s, $__range_ms in s. Returns a new string (NULL: out of memory). */
char *qm_expand(const char *s, int64_t from_ms, int64_t to_ms, int64_t interval_ms);
/* 30000 → "30s", 60000 → "1m", 90000 → "90s", 250 → "250ms". */
void qm_format_duration(int64_t ms, char *out, size_t cap);

#endif
