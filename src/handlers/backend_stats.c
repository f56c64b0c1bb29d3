#include "backend_stats.h"

static const char *const ep_names[EP_COUNT] = {"query", "health", "resource"};
/* Upper bounds in seconds; the last bucket is +Inf. */
static const double bounds[BSTATS_BUCKETS - 1] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};

void bstats_record(bstats *s, bstats_endpoint ep, fetch_error err, int http_status, uint64_t duration_ms) {
    if ((unsigned)ep >= EP_COUNT) return;
    s->requests[ep]++;
    if (err != FETCH_OK && (unsigned)err <= FETCH_E_NOMEM) s->errors[ep][err]++;
    else if (http_status < 200 || http_status >= 300) s->http_errors[ep]++;
    double secs = (double)duration_ms / 1000.0;
    s->seconds_sum[ep] += secs;
    int b = 0;
    while (b < BSTATS_BUCKETS - 1 && secs > bounds[b]) b++;
    s->buckets[ep][b]++;
}

void bstats_format(const bstats *s, buf_t *b) {
    buf_puts(b, "# HELP plugin_backend_requests_total Requests sent to the in-house backend.\n"
                "# TYPE plugin_backend_requests_total counter\n");
    for (int e = 0; e < EP_COUNT; e++)
        buf_printf(b, "plugin_backend_requests_total{endpoint=\"%s\"} %llu\n", ep_names[e],
                   (unsigned long long)s->requests[e]);
    buf_puts(b, "# HELP plugin_backend_request_errors_total Backend requests that failed, by reason.\n"
                "# TYPE plugin_backend_request_errors_total counter\n");
    for (int e = 0; e < EP_COUNT; e++) {
        buf_printf(b, "plugin_backend_request_errors_total{endpoint=\"%s\",reason=\"http_status\"} %llu\n",
                   ep_names[e], (unsigned long long)s->http_errors[e]);
        for (int k = FETCH_E_DNS; k <= FETCH_E_NOMEM; k++)
            if (s->errors[e][k])
                buf_printf(b, "plugin_backend_request_errors_total{endpoint=\"%s\",reason=\"%s\"} %llu\n", ep_names[e],
                           fetch_error_name((fetch_error)k), (unsigned long long)s->errors[e][k]);
    }
    buf_puts(b, "# HELP plugin_backend_request_duration_seconds Time from sending a backend request to its end.\n"
                "# TYPE plugin_backend_request_duration_seconds histogram\n");
    for (int e = 0; e < EP_COUNT; e++) {
        uint64_t cum = 0;
        for (int k = 0; k < BSTATS_BUCKETS; k++) {
            cum += s->buckets[e][k];
            if (k < BSTATS_BUCKETS - 1)
                buf_printf(b, "plugin_backend_request_duration_seconds_bucket{endpoint=\"%s\",le=\"%g\"} %llu\n",
                           ep_names[e], bounds[k], (unsigned long long)cum);
            else
                buf_printf(b, "plugin_backend_request_duration_seconds_bucket{endpoint=\"%s\",le=\"+Inf\"} %llu\n",
                           ep_names[e], (unsigned long long)cum);
        }
        buf_printf(b, "plugin_backend_request_duration_seconds_sum{endpoint=\"%s\"} %.6f\n", ep_names[e],
                   s->seconds_sum[e]);
        buf_printf(b, "plugin_backend_request_duration_seconds_count{endpoint=\"%s\"} %llu\n", ep_names[e],
                   (unsigned long long)cum);
    }
}
