/*
 * backend_stats: what CollectMetrics reports about calls to the in-house
 * backend, per endpoint: requests, errors by kind, latency histogram.
 * Owned by the process's handler environment; updated on the loop thread.
 */
#ifndef BACKEND_STATS_H
#define BACKEND_STATS_H

#include <stdint.h>

#include "../fetch/fetch.h"
#include "../util/buf.h"

typedef enum { EP_QUERY, EP_HEALTH, EP_RESOURCE, EP_COUNT } bstats_endpoint;

#define BSTATS_BUCKETS 12

typedef struct {
    uint64_t requests[EP_COUNT];
    uint64_t errors[EP_COUNT][FETCH_E_NOMEM + 1];
    uint64_t http_errors[EP_COUNT];        /* answered, but not 2xx */
    uint64_t buckets[EP_COUNT][BSTATS_BUCKETS];
    double seconds_sum[EP_COUNT];
} bstats;

/* One finished backend request. */
void bstats_record(bstats *s, bstats_endpoint ep, fetch_error err, int http_status, uint64_t duration_ms);
/* Appends the Prometheus text of all families. */
void bstats_format(const bstats *s, buf_t *out);

#endif
