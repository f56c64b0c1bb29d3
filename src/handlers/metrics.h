/*
 * metrics: the Prometheus text exposition CollectMetrics returns: process
 * figures (sampled off the loop, in libuv's threadpool, since they come
 * from /proc files) and the transport's own counters (read on the loop).
 */
#ifndef METRICS_H
#define METRICS_H

#include <stdint.h>

#include "../util/buf.h"
#include "handlers.h"

typedef struct {
    double cpu_seconds;
    uint64_t rss_bytes;
    uint64_t vsize_bytes;
    uint64_t open_fds;
    uint64_t max_fds;
    int complete;  /* 1 when every /proc read succeeded */
} metrics_proc_sample;

/* Blocking: reads /proc/self. Call from a worker thread only. */
void metrics_sample_proc(metrics_proc_sample *out);
/* Appends the whole exposition text. Pure apart from reading env's counters. */
void metrics_format(buf_t *out, const metrics_proc_sample *proc, const hnd_env *env);

#endif
