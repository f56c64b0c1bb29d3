/*
 * bench_pace: open-loop latency at a steady concurrency. Calls start on a
 * Poisson schedule (fixed seed) at RATE per second, each at its own moment
 * rather than in lockstep, so RATE x latency calls are in flight on average
 * (Little's law) the way independent dashboards and alert rules arrive. The
 * same schedule drives both sides of a comparison:
 *
 *   bench_pace grpc HOST:PORT /pkg.Service/Method BODY RATE N
 *       gRPC over one h2c connection (BODY: a request with the 5-byte gRPC
 *       prefix, as h2load takes it); a call is good when grpc-status is 0.
 *   bench_pace http HOST:PORT /path BODY RATE N CONNS
 *       HTTP/1.1 POSTs of BODY (application/json) over up to CONNS
 *       keep-alive connections; a request is good on a 2xx status.
 *
 * Prints one line: "n=.. ok=.. p10_us=.. p50_us=.. p99_us=.. inflight_avg=..
 * inflight_max=.. late_p99_us=.." (late: how far behind its scheduled time
 * a call was sent: the client's own lag, which should stay near zero).
 * Timing uses a timerfd (microsecond resolution) polled by the libuv loop.
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/timerfd.h>
#include <unistd.h>
#include <uv.h>

#include "fetch/fetch.h"
#include "fetch/url.h"
#include "grpcclient.h"

typedef struct {
    uint64_t sched_ns, sent_ns, done_ns;
    bool ok;
} pace_call;

typedef struct {
    uv_loop_t *loop;
    uv_poll_t poll;
    int tfd;
    bool grpc;
    const char *path;
    uint8_t *body;
    size_t body_len;
    size_t n, next, done, ok, inflight, inflight_max;
    pace_call *calls;
    uint64_t t0;
    gc_conn *gc;
    fetch_pool *pool;
    fetch_request rq;
    fetch_header hdr;
    double rate;
} pace;

static pace *g_pace; /* the one run of this process (callbacks carry the call) */

static void finish_one(pace *p, pace_call *c, bool ok) {
    c->done_ns = uv_hrtime();
    c->ok = ok;
    p->done++;
    p->inflight--;
    if (ok) p->ok++;
    if (p->done == p->n) {
        uv_poll_stop(&p->poll);
        if (p->gc) gc_close(p->gc, NULL, NULL);
        if (p->pool) fetch_pool_release(p->pool);
    }
}

/* ---- gRPC side ---- */
static int grpc_on_message(gc_call *call, void *arg, const uint8_t *msg, size_t len) {
    (void)call, (void)arg, (void)msg, (void)len;
    return 0;
}

static void grpc_on_done(gc_call *call, void *arg, int code, const char *message) {
    (void)call, (void)message;
    pace_call *c = arg;
    finish_one(g_pace, c, code == 0);
}

/* ---- HTTP side ---- */
typedef struct {
    pace_call *c;
    int status;
} http_ctx;

static int http_on_response(void *arg, int status, const char *ct) {
    (void)ct;
    ((http_ctx *)arg)->status = status;
    return 0;
}
static int http_on_body(void *arg, const uint8_t *d, size_t n) {
    (void)arg, (void)d, (void)n;
    return 0;
}
static void http_on_done(void *arg, fetch_error err, const char *msg) {
    (void)msg;
    http_ctx *h = arg;
    finish_one(g_pace, h->c, err == FETCH_OK && h->status / 100 == 2);
    free(h);
}
static const fetch_handler http_handler = {http_on_response, http_on_body, http_on_done};

static void start_call(pace *p, pace_call *c) {
    c->sent_ns = uv_hrtime();
    p->inflight++;
    if (p->inflight > p->inflight_max) p->inflight_max = p->inflight;
    if (p->grpc) {
        /* the body file carries the 5-byte prefix; gc_call_start adds its own */
        if (!gc_call_start(p->gc, p->path, p->body + 5, p->body_len - 5, 0, grpc_on_message, grpc_on_done, c))
            finish_one(p, c, false);
    } else {
        http_ctx *h = calloc(1, sizeof *h);
        h->c = c;
        if (!h || !fetch_start(p->pool, &p->rq, &http_handler, h)) {
            free(h);
            finish_one(p, c, false);
        }
    }
}

static void arm(pace *p) {
    if (p->next >= p->n) return;
    uint64_t at = p->calls[p->next].sched_ns;
    struct itimerspec its = {0};
    its.it_value.tv_sec = (time_t)(at / 1000000000u);
    its.it_value.tv_nsec = (long)(at % 1000000000u);
    timerfd_settime(p->tfd, TFD_TIMER_ABSTIME, &its, NULL);
}

static void on_tick(uv_poll_t *h, int status, int events) {
    (void)status, (void)events;
    pace *p = h->data;
    uint64_t expirations;
    if (read(p->tfd, &expirations, sizeof expirations) < 0 && errno != EAGAIN) return;
    uint64_t now = uv_hrtime();
    while (p->next < p->n && p->calls[p->next].sched_ns <= now) start_call(p, &p->calls[p->next++]);
    arm(p);
}

static void begin(pace *p) {
    /* Poisson arrivals from a fixed seed: the same schedule every run. */
    double rate = p->rate;
    uint64_t seed = 0x9E3779B97F4A7C15u;
    double t = 0;
    p->t0 = uv_hrtime() + 20000000u; /* 20 ms to settle */
    for (size_t i = 0; i < p->n; i++) {
        seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
        double u = ((double)(seed >> 11) + 0.5) / 9007199254740992.0;
        t += -log(u) / rate;
        p->calls[i].sched_ns = p->t0 + (uint64_t)(t * 1e9);
    }
    uv_poll_start(&p->poll, UV_READABLE, on_tick);
    arm(p);
}

static void on_grpc_connected(gc_conn *c, void *arg, int status, const char *err) {
    (void)c;
    pace *p = arg;
    if (status != 0) {
        fprintf(stderr, "bench_pace: connect: %s\n", err ? err : "failed");
        exit(1);
    }
    begin(p);
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static uint64_t pct(const uint64_t *v, size_t n, double q) {
    if (!n) return 0;
    size_t i = (size_t)(q * (double)n + 0.5);
    if (i < 1) i = 1;
    if (i > n) i = n;
    return v[i - 1];
}

static uint8_t *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    uint8_t *d = NULL;
    size_t cap = 0, n = 0;
    for (;;) {
        if (n == cap) {
            cap = cap ? cap * 2 : 4096;
            uint8_t *nd = realloc(d, cap);
            if (!nd) { free(d); fclose(f); return NULL; }
            d = nd;
        }
        size_t r = fread(d + n, 1, cap - n, f);
        if (r == 0) break;
        n += r;
    }
    fclose(f);
    *len = n;
    return d;
}

static int usage(void) {
    fprintf(stderr, "usage: bench_pace grpc HOST:PORT PATH BODY RATE N\n"
                    "       bench_pace http HOST:PORT PATH BODY RATE N CONNS\n");
    return 2;
}

int main(int argc, char **argv) {
    if (argc < 7) return usage();
    pace p = {0};
    g_pace = &p;
    p.grpc = strcmp(argv[1], "grpc") == 0;
    if (!p.grpc && (strcmp(argv[1], "http") != 0 || argc < 8)) return usage();
    p.path = argv[3];
    p.body = read_file(argv[4], &p.body_len);
    double rate = atof(argv[5]);
    p.n = (size_t)atol(argv[6]);
    if (!p.body || (p.grpc && p.body_len < 5) || rate <= 0 || p.n == 0) return usage();
    p.calls = calloc(p.n, sizeof *p.calls);
    if (!p.calls) return 1;
    p.rate = rate;
    p.loop = uv_default_loop();
    p.tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (p.tfd < 0 || uv_poll_init(p.loop, &p.poll, p.tfd) != 0) return 1;
    p.poll.data = &p;
    /* uv_hrtime is CLOCK_MONOTONIC in ns, the timerfd's clock */
    if (p.grpc) {
        pp_endpoint ep = {.net = PP_NET_TCP};
        snprintf(ep.address, sizeof ep.address, "%s", argv[2]);
        p.gc = gc_connect(p.loop, &ep, on_grpc_connected, &p);
        if (!p.gc) return 1;
    } else {
        char url_text[300];
        snprintf(url_text, sizeof url_text, "http://%s%s", argv[2], p.path);
        fetch_url url;
        char err[256];
        if (fetch_url_parse(url_text, &url, err, sizeof err) != 0) {
            fprintf(stderr, "bench_pace: %s\n", err);
            return 2;
        }
        fetch_limits lim = {.connect_timeout_ms = 5000, .idle_timeout_ms = 60000,
                            .max_connections = (size_t)atol(argv[7]), .max_response_bytes = 64u << 20,
                            .user_agent = "bench_pace"};
        p.pool = fetch_pool_new(p.loop, &url, &lim);
        if (!p.pool) return 1;
        p.hdr = (fetch_header){"Content-Type", "application/json"};
        p.rq = (fetch_request){.method = "POST", .path = "", .headers = &p.hdr, .nheaders = 1,
                               .body = p.body, .body_len = p.body_len};
        begin(&p);
    }
    uv_run(p.loop, UV_RUN_DEFAULT);

    uint64_t *lat = malloc(p.n * sizeof *lat), *late = malloc(p.n * sizeof *late);
    size_t k = 0;
    double busy_ns = 0;
    uint64_t first = UINT64_MAX, last = 0;
    for (size_t i = 0; i < p.n; i++) {
        pace_call *c = &p.calls[i];
        busy_ns += (double)(c->done_ns - c->sent_ns);
        late[i] = c->sent_ns - c->sched_ns;
        if (c->sent_ns < first) first = c->sent_ns;
        if (c->done_ns > last) last = c->done_ns;
        if (c->ok) lat[k++] = c->done_ns - c->sent_ns;
    }
    qsort(lat, k, sizeof *lat, cmp_u64);
    qsort(late, p.n, sizeof *late, cmp_u64);
    printf("n=%zu ok=%zu p10_us=%.0f p50_us=%.0f p99_us=%.0f inflight_avg=%.1f inflight_max=%zu late_p99_us=%.0f\n",
           p.n, p.ok, pct(lat, k, 0.10) / 1e3, pct(lat, k, 0.50) / 1e3, pct(lat, k, 0.99) / 1e3,
           busy_ns / (double)(last - first), p.inflight_max, pct(late, p.n, 0.99) / 1e3);
    free(lat);
    free(late);
    free(p.calls);
    free(p.body);
    close(p.tfd);
    return p.ok == p.n ? 0 : 1;
}
