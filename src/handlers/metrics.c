#include "metrics.h"

#include <dirent.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "../log/hclog.h"
#include "pluginv2.pb-c.h"

void metrics_sample_proc(metrics_proc_sample *out) {
    memset(out, 0, sizeof *out);
    int ok = 1;
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) == 0)
        out->cpu_seconds = (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
                           (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
    else ok = 0;
    long page = sysconf(_SC_PAGESIZE);
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long long size = 0, resident = 0;
    if (f && fscanf(f, "%llu %llu", &size, &resident) == 2) {
        out->vsize_bytes = size * (uint64_t)page;
        out->rss_bytes = resident * (uint64_t)page;
    } else ok = 0;
    if (f) fclose(f);
    DIR *d = opendir("/proc/self/fd");
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL)
            if (e->d_name[0] != '.') out->open_fds++;
        closedir(d);
        out->open_fds--; /* the directory stream's own descriptor */
    } else ok = 0;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) out->max_fds = (uint64_t)rl.rlim_cur;
    out->complete = ok;
}

static void family(buf_t *b, const char *name, const char *type, const char *help) {
    buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static const char *kind_name(call_kind k) {
    return k == CALL_UNARY ? "unary" : k == CALL_SERVER_STREAM ? "server_stream" : "bidi_stream";
}

void metrics_format(buf_t *b, const metrics_proc_sample *p, const hnd_env *env) {
    family(b, "process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.");
    buf_printf(b, "process_cpu_seconds_total %.6f\n", p->cpu_seconds);
    family(b, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
    buf_printf(b, "process_resident_memory_bytes %llu\n", (unsigned long long)p->rss_bytes);
    family(b, "process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.");
    buf_printf(b, "process_virtual_memory_bytes %llu\n", (unsigned long long)p->vsize_bytes);
    family(b, "process_open_fds", "gauge", "Number of open file descriptors.");
    buf_printf(b, "process_open_fds %llu\n", (unsigned long long)p->open_fds);
    family(b, "process_max_fds", "gauge", "Maximum number of open file descriptors.");
    buf_printf(b, "process_max_fds %llu\n", (unsigned long long)p->max_fds);
    family(b, "process_start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds.");
    buf_printf(b, "process_start_time_seconds %.3f\n", env->start_time_unix);

    /* Two families over the same methods: text per family, so two passes. */
    const router_t *r = &env->router;
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 0) family(b, "grpc_server_started_total", "counter", "Total number of RPCs started on the server.");
        else
            family(b, "grpc_server_handled_total", "counter",
                   "Total number of RPCs completed on the server, regardless of success or failure.");
        for (size_t i = 0; i < r->count; i++) {
            const router_method *m = &r->methods[i];
            const char *svc, *meth;
            size_t svc_len;
            if (router_split_path(m->path, &svc, &svc_len, &meth) != 0) continue;
            if (pass == 0) {
                buf_printf(b, "grpc_server_started_total{grpc_service=\"%.*s\",grpc_method=\"%s\",grpc_type=\"%s\"} %llu\n",
                           (int)svc_len, svc, meth, kind_name(m->kind), (unsigned long long)m->started);
                continue;
            }
            for (int code = 0; code < GRPC_STATUS_COUNT; code++) {
                if (m->handled[code] == 0 && code != GRPC_OK) continue;
                buf_printf(b,
                           "grpc_server_handled_total{grpc_service=\"%.*s\",grpc_method=\"%s\",grpc_type=\"%s\","
                           "grpc_code=\"%s\"} %llu\n",
                           (int)svc_len, svc, meth, kind_name(m->kind), grpc_status_name(code),
                           (unsigned long long)m->handled[code]);
            }
        }
    }
    const h2_server *h2 = env->h2;
    family(b, "plugin_h2_connections_active", "gauge", "HTTP/2 connections currently open.");
    buf_printf(b, "plugin_h2_connections_active %zu\n", h2->sessions_active);
    family(b, "plugin_h2_connections_total", "counter", "HTTP/2 connections accepted.");
    buf_printf(b, "plugin_h2_connections_total %llu\n", (unsigned long long)h2->sessions_total);
    family(b, "plugin_h2_protocol_errors_total", "counter", "Connections closed because of an HTTP/2 protocol error.");
    buf_printf(b, "plugin_h2_protocol_errors_total %llu\n", (unsigned long long)h2->protocol_errors);
    family(b, "plugin_connections_timed_out_total", "counter",
           "Connections closed for sending no preface in time or not reading their responses.");
    buf_printf(b, "plugin_connections_timed_out_total %llu\n", (unsigned long long)env->srv->timeouts_total);
    family(b, "plugin_grpc_calls_in_flight", "gauge", "gRPC calls whose handler has not finished.");
    buf_printf(b, "plugin_grpc_calls_in_flight %zu\n", h2->calls_in_flight);
    family(b, "plugin_request_bytes_buffered", "gauge", "Request bytes held while messages are assembled.");
    buf_printf(b, "plugin_request_bytes_buffered %zu\n", h2->buffered_bytes);
    /* Heap in use vs held free: tells a leak (in use grows) from memory the
     * allocator keeps after a burst (free grows, trimmed every few seconds). */
    struct mallinfo2 mi = mallinfo2();
    family(b, "plugin_heap_in_use_bytes", "gauge", "Bytes of heap in use by the plugin (malloc arenas and mmapped blocks).");
    buf_printf(b, "plugin_heap_in_use_bytes %zu\n", mi.uordblks + mi.hblkhd);
    family(b, "plugin_heap_free_bytes", "gauge", "Bytes of heap the allocator holds free.");
    buf_printf(b, "plugin_heap_free_bytes %zu\n", mi.fordblks);
    if (env->backend) bstats_format(env->backend, b);
}

/* ---- the handler ------------------------------------------------------ */

typedef struct {
    uv_work_t work;
    call_t *call;
    hnd_env *env;
    metrics_proc_sample sample;
} collect_job;

static void sample_in_worker(uv_work_t *w) {
    collect_job *job = w->data;
    metrics_sample_proc(&job->sample);
}

static void after_sample(uv_work_t *w, int status) {
    collect_job *job = w->data;
    call_t *call = job->call;
    if (status == UV_ECANCELED || call_is_cancelled(call)) {
        call_finish(call, GRPC_CANCELLED, NULL);
        free(job);
        return;
    }
    if (!job->sample.complete) LOG_DEBUG("some process metrics could not be read");
    buf_t text;
    buf_init(&text);
    metrics_format(&text, &job->sample, job->env);
    if (!buf_ok(&text)) {
        call_finish(call, GRPC_RESOURCE_EXHAUSTED, "out of memory formatting metrics");
    } else {
        Pluginv2__CollectMetricsResponse__Payload payload = PLUGINV2__COLLECT_METRICS_RESPONSE__PAYLOAD__INIT;
        payload.prometheus.data = (uint8_t *)text.data;
        payload.prometheus.len = text.len;
        Pluginv2__CollectMetricsResponse resp = PLUGINV2__COLLECT_METRICS_RESPONSE__INIT;
        resp.metrics = &payload;
        call_reply(call, &resp.base);
    }
    buf_free(&text);
    free(job);
}

static void on_collect_cancel(call_t *call, void *arg) {
    (void)call;
    collect_job *job = arg;
    uv_cancel((uv_req_t *)&job->work); /* after_sample finishes the call either way */
}

void hnd_collect_metrics(call_t *call, void *arg) {
    hnd_env *env = arg;
    /* The request only carries a plugin context; decode it to reject garbage. */
    ProtobufCMessage *req = hnd_unpack(call, &pluginv2__collect_metrics_request__descriptor);
    if (!req) return;
    protobuf_c_message_free_unpacked(req, NULL);
    collect_job *job = calloc(1, sizeof *job);
    if (!job) {
        call_finish(call, GRPC_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    job->call = call;
    job->env = env;
    job->work.data = job;
    call_on_cancel(call, on_collect_cancel, job);
    if (uv_queue_work(call_loop(call), &job->work, sample_in_worker, after_sample) != 0) {
        free(job);
        call_finish(call, GRPC_INTERNAL, "cannot schedule the metrics sample");
    }
}
