/*
 * bench_frames: the frames module (src/frames) against its own goals, every
 * number measured in this run on this machine. Prints one table.
 *
 *   bench_frames                 the whole table (~7 s)
 *   bench_frames --quick         fewer repetitions (a smoke test, ~2 s)
 *   bench_frames --loop ours|jansson|pipeline|build REPS [warm]   a loop to profile
 *                                (perf record / valgrind --tool=callgrind)
 *
 * What is measured (timings with CLOCK_MONOTONIC around each repetition;
 * competing variants are interleaved rep by rep so drifts of a shared
 * machine hit both alike; cells show "median (best)" unless stated):
 *
 *  1. arrow_write_frame of a 10^6-row frame (Time: FT_TIME non-null ns
 *     ascending; Value: nullable FT_FLOAT64; labels; timeseries-multi meta)
 *     into a pre-reserved, pre-faulted buf_t (len reset each rep), against a
 *     memcpy of the same column bytes into a pre-faulted destination. Once
 *     without nulls, once with every 10th Value null (validity bitmap).
 *  2. µs per 10k-row Time+Value series encode (prebuilt frame, reused output
 *     buffer), median of many reps; and build-from-arrays + encode into a
 *     fresh buffer + free, the whole life of one series, in this process and
 *     in a fresh one (glibc's default malloc thresholds: see "Heap state").
 *  3. a 10^5-point series body ([{"target","datapoints":[[v,ms],...],"tags"}])
 *     to a frame: ours (conv_* fed in 64 KiB chunks, each copied into a
 *     64 KiB read buffer first, as socket reads would arrive) against a
 *     baseline that parses the whole body with jansson (json_loadb) and
 *     walks the tree into the same frame model with the same builders and
 *     sort check. Both frames must encode to byte-identical Arrow files.
 *     Peak extra memory: each variant in a fresh process (fork + exec of
 *     this binary), body generated first, then the peak RSS is reset
 *     (/proc/self/clear_refs "5") and VmHWM after the conversion minus VmRSS
 *     before it is reported; the body itself is excluded from both. The
 *     same children time their one conversion (the "fresh process" row).
 *  4. a 10k-point body -> frame -> Arrow file, whole pipeline in µs (ours,
 *     and the jansson route for comparison).
 *
 * Exit status: 0 when every measurement was taken (goals met or not), 1 when
 * one could not be taken (a conversion failed, the two routes disagree, a
 * child process failed).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "frames/arrow.h"
#include "frames/convert.h"
#include "frames/frame.h"
#include "util/buf.h"

#define CHUNK (64 * 1024)
#define REF_ID "A"
#define TARGET "s"
#define LABELS_JSON "{\"dc\":\"eu-west-1\",\"host\":\"web-01\",\"job\":\"node\"}"
#define META_JSON "{\"type\":\"timeseries-multi\",\"typeVersion\":[0,1],\"executedQueryString\":\"" TARGET "\"}"
#define T0_MS INT64_C(1700000000000)

static int g_failed;

static void cant(const char *fmt, const char *detail) {
    fprintf(stderr, "bench_frames: could not measure: ");
    fprintf(stderr, fmt, detail ? detail : "");
    fputc('\n', stderr);
    g_failed = 1;
}

static double now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef struct {
    double median, best;
    size_t n;
} stat_t;

static stat_t summarize(double *v, size_t n) {
    stat_t s = {NAN, NAN, n};
    if (n == 0) return s;
    qsort(v, n, sizeof *v, cmp_double);
    s.best = v[0];
    s.median = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
    return s;
}

/* Runs each of the nfn functions reps times, interleaved, after warm
 * unmeasured rounds; stats in µs per call. Returns -1 when a call failed. */
typedef int (*bench_fn)(void *ctx);

static int measure(bench_fn *fn, void **ctx, size_t nfn, size_t warm, size_t reps, stat_t *out) {
    double *t = malloc(nfn * reps * sizeof *t);
    if (!t) return -1;
    for (size_t r = 0; r < warm; r++)
        for (size_t i = 0; i < nfn; i++)
            if (fn[i](ctx[i]) != 0) { free(t); return -1; }
    for (size_t r = 0; r < reps; r++)
        for (size_t i = 0; i < nfn; i++) {
            double a = now_us();
            int rc = fn[i](ctx[i]);
            double b = now_us();
            if (rc != 0) { free(t); return -1; }
            t[i * reps + r] = b - a;
        }
    for (size_t i = 0; i < nfn; i++) out[i] = summarize(t + i * reps, reps);
    free(t);
    return 0;
}

/* ---- deterministic data --------------------------------------------------- */

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint64_t rng(void) {
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return rng_state = x;
}

/* A gauge-like random walk with 6 decimals: 12.345678, 103.5, ... */
static double next_value(double prev) {
    double step = ((double)(rng() % 2000001) - 1000000.0) / 1e6; /* [-1, 1] */
    double v = prev + step;
    if (v < 0) v = -v;
    return round(v * 1e6) / 1e6;
}

/* The backend's body for one series of `points` points, 1 s apart. The
 * buffer is malloc'd once at its final capacity (no realloc garbage left in
 * the heap, so a memory child's reset sees only the body). */
static char *make_body(size_t points, size_t *len_out) {
    size_t cap = 256 + points * 48;
    char *b = malloc(cap);
    if (!b) return NULL;
    size_t n = (size_t)snprintf(b, cap, "[{\"target\":\"" TARGET "\",\"datapoints\":[");
    double v = 12.345678;
    rng_state = 0x9E3779B97F4A7C15ull;
    for (size_t i = 0; i < points; i++) {
        v = next_value(v);
        n += (size_t)snprintf(b + n, cap - n, "%s[%.6f,%" PRId64 "]", i ? "," : "", v, T0_MS + (int64_t)i * 1000);
    }
    n += (size_t)snprintf(b + n, cap - n,
                          "],\"tags\":{\"host\":\"web-01\",\"dc\":\"eu-west-1\",\"job\":\"node\"}}]");
    *len_out = n;
    return b;
}

/* A Time+Value series frame built with the builders; null_every > 0 makes
 * every null_every-th Value null. */
static frame_t *make_frame(size_t rows, size_t null_every) {
    frame_t *f = frame_new(TARGET, REF_ID);
    if (!f) return NULL;
    frame_field *t = frame_add_field(f, "Time", FT_TIME, false);
    frame_field *v = frame_add_field(f, "Value", FT_FLOAT64, true);
    if (!t || !v || field_set_labels(v, LABELS_JSON) != 0 || frame_set_meta(f, META_JSON) != 0) {
        frame_free(f);
        return NULL;
    }
    double x = 12.345678;
    rng_state = 0x243F6A8885A308D3ull;
    for (size_t i = 0; i < rows; i++) {
        x = next_value(x);
        int r = field_append_int(t, (T0_MS + (int64_t)i * 1000) * 1000000);
        r |= null_every && i % null_every == null_every - 1 ? field_append_null(v) : field_append_float(v, x);
        if (r) { frame_free(f); return NULL; }
    }
    return f;
}

/* Bytes of every column buffer the Arrow body carries. */
static size_t column_bytes(const frame_t *f) {
    size_t n = 0;
    for (size_t i = 0; i < f->nfields; i++) {
        const frame_field *fld = f->fields[i];
        n += fld->values.len + (fld->null_count ? (fld->rows + 7) / 8 : 0);
    }
    return n;
}

static bool arrow_file_ok(const buf_t *b) {
    return b->len > 20 && memcmp(b->data, "ARROW1", 6) == 0 && memcmp(b->data + b->len - 6, "ARROW1", 6) == 0;
}

/* ---- 1 + 2: encoding ------------------------------------------------------ */

typedef struct {
    const frame_t *f;
    buf_t out;
} enc_ctx;

static int run_encode(void *p) {
    enc_ctx *e = p;
    e->out.len = 0;
    return arrow_write_frame(e->f, &e->out);
}

typedef struct {
    const frame_t *f;
    uint8_t *dst;
} copy_ctx;

static int run_memcpy(void *p) {
    copy_ctx *c = p;
    uint8_t *d = c->dst;
    for (size_t i = 0; i < c->f->nfields; i++) {
        const frame_field *fld = c->f->fields[i];
        if (fld->null_count) {
            memcpy(d, fld->validity.data, (fld->rows + 7) / 8);
            d += (fld->rows + 7) / 8;
        }
        memcpy(d, fld->values.data, fld->values.len);
        d += fld->values.len;
    }
    __asm__ volatile("" : : "r"(c->dst) : "memory");
    return 0;
}

/* Pre-reserves and pre-faults an output buffer big enough for f's file. */
static int enc_ctx_init(enc_ctx *e, const frame_t *f) {
    e->f = f;
    buf_init(&e->out);
    if (arrow_write_frame(f, &e->out) != 0 || !arrow_file_ok(&e->out)) return -1;
    size_t need = e->out.len;
    e->out.len = 0;
    if (!buf_reserve(&e->out, need + 4096)) return -1;
    memset(e->out.data, 0, e->out.cap);
    return 0;
}

typedef struct {
    const int64_t *time_ns;
    const double *values;
    size_t rows;
} build_ctx;

/* One series' whole life: frame from arrays, encode into a fresh buffer, free. */
static int run_build_encode(void *p) {
    build_ctx *b = p;
    frame_t *f = frame_new(TARGET, REF_ID);
    if (!f) return -1;
    frame_field *t = frame_add_field(f, "Time", FT_TIME, false);
    frame_field *v = frame_add_field(f, "Value", FT_FLOAT64, true);
    int r = (!t || !v || field_set_labels(v, LABELS_JSON) != 0 || frame_set_meta(f, META_JSON) != 0) ? -1 : 0;
    for (size_t i = 0; i < b->rows && r == 0; i++)
        r = field_append_int(t, b->time_ns[i]) | field_append_float(v, b->values[i]);
    buf_t out;
    buf_init(&out);
    if (r == 0) r = arrow_write_frame(f, &out);
    if (r == 0 && !arrow_file_ok(&out)) r = -1;
    buf_free(&out);
    frame_free(f);
    return r;
}

/* ---- 3 + 4: body -> frame ------------------------------------------------ */

/* Ours: 64 KiB reads into a read buffer, each fed to the streaming converter. */
static frame_t *convert_ours(const char *body, size_t len, char *err, size_t errlen) {
    static uint8_t readbuf[CHUNK];
    conv_t *c = conv_new(REF_ID, NULL);
    if (!c) { snprintf(err, errlen, "conv_new: out of memory"); return NULL; }
    for (size_t off = 0; off < len; off += CHUNK) {
        size_t n = len - off < CHUNK ? len - off : CHUNK;
        memcpy(readbuf, body + off, n);
        if (conv_feed(c, readbuf, n) != 0) {
            snprintf(err, errlen, "conv_feed: %s", conv_error(c));
            conv_free(c);
            return NULL;
        }
    }
    if (conv_finish(c) != 0) {
        snprintf(err, errlen, "conv_finish: %s", conv_error(c));
        conv_free(c);
        return NULL;
    }
    size_t n = 0;
    frame_t **frames = conv_take_frames(c, &n);
    conv_free(c);
    frame_t *f = n == 1 ? frames[0] : NULL;
    if (!f) {
        snprintf(err, errlen, "expected 1 frame, got %zu", n);
        for (size_t i = 0; i < n; i++) frame_free(frames[i]);
    }
    free(frames);
    return f;
}

static int special_float(const char *s, double *out) {
    if (!strcmp(s, "NaN")) { *out = NAN; return 0; }
    if (!strcmp(s, "+Inf") || !strcmp(s, "Inf")) { *out = INFINITY; return 0; }
    if (!strcmp(s, "-Inf")) { *out = -INFINITY; return 0; }
    return -1;
}

/* The baseline: the whole body as a jansson tree, then the tree into the
 * same frame (same fields, labels, meta, sort check) with the same builders
 * and the same per-value checks. */
static frame_t *convert_jansson(const char *body, size_t len, char *err, size_t errlen) {
    json_error_t jerr;
    json_t *root = json_loadb(body, len, 0, &jerr);
    if (!root) { snprintf(err, errlen, "json_loadb: %s at %d", jerr.text, jerr.position); return NULL; }
    frame_t *f = NULL;
    json_t *el = json_array_get(root, 0);
    json_t *dps = json_object_get(el, "datapoints");
    if (!dps) dps = json_object_get(el, "points");
    if (!json_is_array(root) || json_array_size(root) != 1 || !json_is_object(el) || !json_is_array(dps)) {
        snprintf(err, errlen, "not a one-series body");
        goto done;
    }
    const char *target = json_string_value(json_object_get(el, "target"));
    f = frame_new(target ? target : "", REF_ID);
    frame_field *t = f ? frame_add_field(f, "Time", FT_TIME, false) : NULL;
    frame_field *v = f ? frame_add_field(f, "Value", FT_FLOAT64, true) : NULL;
    if (!t || !v) goto oom;
    size_t n = json_array_size(dps);
    for (size_t i = 0; i < n; i++) {
        json_t *p = json_array_get(dps, i);
        json_t *jv = json_array_get(p, 0), *jt = json_array_get(p, 1);
        if (!json_is_array(p) || json_array_size(p) < 2) {
            snprintf(err, errlen, "datapoint %zu: expected [value, timestamp]", i);
            goto bad;
        }
        int64_t ns;
        if (json_is_integer(jt)) {
            json_int_t ms = json_integer_value(jt);
            if (ms > INT64_MAX / 1000000 || ms < INT64_MIN / 1000000) goto bad_ts;
            ns = (int64_t)ms * 1000000;
        } else if (json_is_real(jt) && isfinite(json_real_value(jt)) && fabs(json_real_value(jt)) <= 9.2e12) {
            ns = (int64_t)llround(json_real_value(jt) * 1e6);
        } else {
            goto bad_ts;
        }
        int r = field_append_int(t, ns);
        double d;
        if (json_is_null(jv)) r |= field_append_null(v);
        else if (json_is_number(jv)) r |= field_append_float(v, json_number_value(jv));
        else if (json_is_string(jv) && special_float(json_string_value(jv), &d) == 0) r |= field_append_float(v, d);
        else {
            snprintf(err, errlen, "datapoint %zu: value must be a number", i);
            goto bad;
        }
        if (r) goto oom;
        continue;
    bad_ts:
        snprintf(err, errlen, "datapoint %zu: timestamp must be epoch milliseconds", i);
        goto bad;
    }
    /* Labels: string values, canonical (sorted keys, compact). */
    json_t *tags = json_object_get(el, "tags");
    if (json_is_object(tags) && json_object_size(tags)) {
        json_t *lab = json_object();
        const char *k;
        json_t *tv;
        json_object_foreach(tags, k, tv) {
            if (json_is_string(tv)) json_object_set(lab, k, tv);
            else if (json_is_boolean(tv)) json_object_set_new(lab, k, json_string(json_is_true(tv) ? "true" : "false"));
            else if (json_is_number(tv)) {
                char *s = json_dumps(tv, JSON_ENCODE_ANY);
                json_object_set_new(lab, k, json_string(s ? s : ""));
                free(s);
            }
        }
        char *s = json_dumps(lab, JSON_COMPACT | JSON_SORT_KEYS);
        json_decref(lab);
        int r = s ? field_set_labels(v, s) : -1;
        free(s);
        if (r) goto oom;
    }
    json_t *meta = json_pack("{s:s,s:[i,i],s:s}", "type", "timeseries-multi", "typeVersion", 0, 1,
                             "executedQueryString", target ? target : "");
    char *ms = meta ? json_dumps(meta, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(meta);
    int r = ms ? frame_set_meta(f, ms) : -1;
    free(ms);
    if (r || frame_sort_by(f, 0) != 0) goto oom;
    goto done;
oom:
    snprintf(err, errlen, "out of memory");
bad:
    frame_free(f);
    f = NULL;
done:
    json_decref(root);
    return f;
}

typedef frame_t *(*convert_fn)(const char *, size_t, char *, size_t);

typedef struct {
    convert_fn convert;
    const char *body;
    size_t len;
    bool encode; /* the pipeline: also write the Arrow file into a fresh buffer */
} conv_ctx;

static int run_convert(void *p) {
    conv_ctx *c = p;
    char err[256];
    frame_t *f = c->convert(c->body, c->len, err, sizeof err);
    if (!f) return -1;
    int r = 0;
    if (c->encode) {
        buf_t out;
        buf_init(&out);
        r = arrow_write_frame(f, &out);
        if (r == 0 && !arrow_file_ok(&out)) r = -1;
        buf_free(&out);
    }
    frame_free(f);
    return r;
}

/* Both routes must produce the same Arrow file, byte for byte. */
static int check_same(const char *body, size_t len, size_t points) {
    char err[256];
    frame_t *a = convert_ours(body, len, err, sizeof err);
    if (!a) { cant("ours: %s", err); return -1; }
    frame_t *b = convert_jansson(body, len, err, sizeof err);
    if (!b) { frame_free(a); cant("jansson baseline: %s", err); return -1; }
    buf_t x, y;
    buf_init(&x);
    buf_init(&y);
    int r = 0;
    if (frame_rows(a) != (long long)points) { cant("ours: %s", "wrong row count"); r = -1; }
    else if (arrow_write_frame(a, &x) != 0 || arrow_write_frame(b, &y) != 0) { cant("%s", "arrow_write_frame failed"); r = -1; }
    else if (x.len != y.len || memcmp(x.data, y.data, x.len) != 0) {
        cant("%s", "ours and the jansson baseline produce different Arrow files");
        r = -1;
    }
    buf_free(&x);
    buf_free(&y);
    frame_free(a);
    frame_free(b);
    return r;
}

/* ---- peak memory in a fresh process ----------------------------------------- */

static long status_kib(const char *key) {
    FILE *fp = fopen("/proc/self/status", "r");
    if (!fp) return -1;
    char line[256];
    long v = -1;
    size_t kl = strlen(key);
    while (fgets(line, sizeof line, fp))
        if (strncmp(line, key, kl) == 0) { v = strtol(line + kl, NULL, 10); break; }
    fclose(fp);
    return v;
}

/* Child: bench_frames --mem-child ours|jansson POINTS. Prints
 * "rss_before_kib=… hwm_after_kib=… reset=1|0 rows=… us=…" (us: the same
 * conversion's time, in a process whose malloc heap is fresh). */
static int mem_child(const char *which, size_t points) {
    size_t len;
    char *body = make_body(points, &len);
    if (!body) return 1;
    convert_fn fn = strcmp(which, "ours") == 0 ? convert_ours : convert_jansson;
    /* Reset the peak to the current RSS (Linux >= 4.0); without it the
     * peak so far (body generation) is the floor. */
    int reset = 0;
    int fd = open("/proc/self/clear_refs", O_WRONLY);
    if (fd >= 0) { reset = write(fd, "5", 1) == 1; close(fd); }
    long before = reset ? status_kib("VmRSS:") : status_kib("VmHWM:");
    char err[256];
    double t0 = now_us();
    frame_t *f = fn(body, len, err, sizeof err);
    double t1 = now_us();
    long after = status_kib("VmHWM:");
    if (!f) { fprintf(stderr, "bench_frames: %s: %s\n", which, err); return 1; }
    printf("rss_before_kib=%ld hwm_after_kib=%ld reset=%d rows=%lld us=%.0f\n", before, after, reset, frame_rows(f),
           t1 - t0);
    frame_free(f);
    free(body);
    return 0;
}

/* Runs this binary with args in a fresh process; its stdout into out. */
static int run_child(const char *a1, const char *a2, const char *a3, char *out, size_t outlen) {
    int pfd[2];
    if (pipe(pfd) != 0) return -1;
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) { close(pfd[0]); close(pfd[1]); return -1; }
    if (pid == 0) {
        dup2(pfd[1], 1);
        close(pfd[0]);
        close(pfd[1]);
        execl("/proc/self/exe", "bench_frames", a1, a2, a3, (char *)NULL);
        _exit(127);
    }
    close(pfd[1]);
    size_t n = 0;
    ssize_t k;
    while (n < outlen - 1 && ((k = read(pfd[0], out + n, outlen - 1 - n)) > 0 || (k < 0 && errno == EINTR)))
        if (k > 0) n += (size_t)k;
    out[n] = '\0';
    close(pfd[0]);
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

/* Runs a memory child: the peak extra KiB (or -1) and the cold time in µs. */
static long mem_run(const char *which, size_t points, int *reset_out, double *us_out) {
    char pts[32], out[512];
    snprintf(pts, sizeof pts, "%zu", points);
    long before, after;
    int reset;
    long long rows;
    double us;
    if (run_child("--mem-child", which, pts, out, sizeof out) != 0 ||
        sscanf(out, "rss_before_kib=%ld hwm_after_kib=%ld reset=%d rows=%lld us=%lf", &before, &after, &reset, &rows,
               &us) != 5 ||
        rows != (long long)points || before <= 0 || after < before)
        return -1;
    *reset_out = reset;
    *us_out = us;
    return after - before;
}

static int cmp_long(const void *a, const void *b) {
    long x = *(const long *)a, y = *(const long *)b;
    return (x > y) - (x < y);
}

/* For profilers: bench_frames --loop ours|jansson|pipeline|build REPS [warm]
 * converts the 1e5-point body (pipeline: the 10k-point body to Arrow; build:
 * a 10k-row series built from arrays and encoded) REPS times; "warm" first
 * puts malloc in the state the table's in-process rows see. */

/* Child: bench_frames --cold-build REPS: median µs of build + encode + free
 * of a 10k-row series in this fresh process (glibc's default thresholds). */
static int cold_build_child(size_t reps) {
    frame_t *f = make_frame(10000, 0);
    double *t = malloc(reps * sizeof *t);
    if (!f || !t || reps == 0) return 1;
    build_ctx bc = {(const int64_t *)f->fields[0]->values.data, (const double *)f->fields[1]->values.data, 10000};
    for (size_t i = 0; i < reps; i++) {
        double a = now_us();
        if (run_build_encode(&bc) != 0) return 1;
        t[i] = now_us() - a;
    }
    stat_t st = summarize(t, reps);
    printf("median_us=%.1f best_us=%.1f\n", st.median, st.best);
    free(t);
    frame_free(f);
    return 0;
}
static int loop_child(const char *which, size_t reps, bool warm) {
    if (warm) {
        /* What the table run does first: 1e6-row frames built, encoded and
         * freed. Freeing their 16 MB buffers raises glibc's dynamic mmap and
         * trim thresholds, so later columns grow in the heap, untrimmed. */
        frame_t *f = make_frame(1000000, 0);
        buf_t out;
        buf_init(&out);
        if (!f || arrow_write_frame(f, &out) != 0) return 1;
        buf_free(&out);
        frame_free(f);
    }
    if (strcmp(which, "build") == 0) {
        frame_t *f = make_frame(10000, 0);
        if (!f) return 1;
        build_ctx bc = {(const int64_t *)f->fields[0]->values.data, (const double *)f->fields[1]->values.data, 10000};
        for (size_t i = 0; i < reps; i++)
            if (run_build_encode(&bc) != 0) return 1;
        frame_free(f);
        return 0;
    }
    bool pipe_mode = strcmp(which, "pipeline") == 0;
    size_t len;
    char *body = make_body(pipe_mode ? 10000 : 100000, &len);
    if (!body) return 1;
    conv_ctx cc = {strcmp(which, "jansson") == 0 ? convert_jansson : convert_ours, body, len, pipe_mode};
    for (size_t i = 0; i < reps; i++)
        if (run_convert(&cc) != 0) { fprintf(stderr, "bench_frames: %s failed\n", which); return 1; }
    free(body);
    return 0;
}

/* ---- the table ------------------------------------------------------------ */

static void row(const char *metric, const char *ours, const char *base, const char *ratio, const char *result) {
    printf("%-44s | %17s | %17s | %-24s | %s\n", metric, ours, base, ratio, result);
}

static const char *fmt2(char *b, size_t n, const char *f, double x, double y) {
    if (isnan(x)) snprintf(b, n, "n/a");
    else snprintf(b, n, f, x, y);
    return b;
}

static const char *verdict(double v, bool le, double lim) {
    if (isnan(v)) return "n/a";
    return (le ? v <= lim : v >= lim) ? "PASS" : "FAIL";
}

int main(int argc, char **argv) {
    if (argc == 4 && strcmp(argv[1], "--mem-child") == 0) return mem_child(argv[2], (size_t)strtoull(argv[3], NULL, 10));
    if ((argc == 4 || argc == 5) && strcmp(argv[1], "--loop") == 0)
        return loop_child(argv[2], (size_t)strtoull(argv[3], NULL, 10), argc == 5 && strcmp(argv[4], "warm") == 0);
    if (argc == 3 && strcmp(argv[1], "--cold-build") == 0) return cold_build_child((size_t)strtoull(argv[2], NULL, 10));
    bool quick = argc > 1 && strcmp(argv[1], "--quick") == 0;
    if (argc > 1 && !quick) {
        fprintf(stderr, "usage: bench_frames [--quick]\n"
                        "       bench_frames --loop ours|jansson|pipeline|build REPS [warm]\n");
        return 2;
    }
    const size_t big_rows = 1000000, series_rows = 10000, body_points = 100000, pipe_points = 10000;
    const size_t enc_reps = quick ? 5 : 31, small_reps = quick ? 301 : 4001, build_reps = quick ? 101 : 1001;
    const size_t conv_reps = quick ? 3 : 15, mem_runs = quick ? 1 : 5, pipe_reps = quick ? 51 : 401;
    const stat_t none = {NAN, NAN, 0};
    char a[64], b[64], c[64];

    /* 1. Arrow encode of 10^6 rows vs memcpy of the column bytes. */
    fprintf(stderr, "bench_frames: Arrow encode of 10^6 rows vs memcpy, %zu interleaved reps\n", enc_reps);
    stat_t enc[4] = {none, none, none, none};
    size_t bytes_plain = 0, bytes_nulls = 0;
    frame_t *big = make_frame(big_rows, 0), *bign = make_frame(big_rows, 10);
    enc_ctx e_plain, e_nulls;
    copy_ctx c_plain, c_nulls;
    if (!big || !bign || enc_ctx_init(&e_plain, big) != 0 || enc_ctx_init(&e_nulls, bign) != 0) {
        cant("%s", "1e6-row frames or their Arrow files");
    } else {
        bytes_plain = column_bytes(big);
        bytes_nulls = column_bytes(bign);
        c_plain = (copy_ctx){big, malloc(bytes_plain)};
        c_nulls = (copy_ctx){bign, malloc(bytes_nulls)};
        if (!c_plain.dst || !c_nulls.dst) cant("%s", "out of memory");
        else {
            memset(c_plain.dst, 0, bytes_plain);
            memset(c_nulls.dst, 0, bytes_nulls);
            bench_fn fn[4] = {run_encode, run_memcpy, run_encode, run_memcpy};
            void *ctx[4] = {&e_plain, &c_plain, &e_nulls, &c_nulls};
            if (measure(fn, ctx, 4, 3, enc_reps, enc) != 0) cant("%s", "arrow_write_frame failed");
            else if (bign->fields[1]->null_count != big_rows / 10) cant("%s", "null count of the nulls variant");
        }
        free(c_plain.dst);
        free(c_nulls.dst);
        buf_free(&e_plain.out);
        buf_free(&e_nulls.out);
    }
    frame_free(big);
    frame_free(bign);

    /* 2. One 10k-row series. */
    fprintf(stderr, "bench_frames: 10k-row series encode, %zu reps; build+encode, %zu reps\n", small_reps, build_reps);
    stat_t s_enc = none, s_build = none, s_cold = none;
    frame_t *small = make_frame(series_rows, 0);
    enc_ctx e_small;
    if (!small || enc_ctx_init(&e_small, small) != 0) {
        cant("%s", "10k-row frame");
    } else {
        bench_fn fn[1] = {run_encode};
        void *ctx[1] = {&e_small};
        if (measure(fn, ctx, 1, 50, small_reps, &s_enc) != 0) cant("%s", "10k-row encode");
        build_ctx bc = {(const int64_t *)small->fields[0]->values.data, (const double *)small->fields[1]->values.data,
                        series_rows};
        bench_fn fb[1] = {run_build_encode};
        void *cb[1] = {&bc};
        if (measure(fb, cb, 1, 20, build_reps, &s_build) != 0) cant("%s", "10k-row build+encode");
        char reps[32], out[256];
        snprintf(reps, sizeof reps, "%zu", build_reps / 4 + 1);
        if (run_child("--cold-build", reps, NULL, out, sizeof out) != 0 ||
            sscanf(out, "median_us=%lf best_us=%lf", &s_cold.median, &s_cold.best) != 2)
            cant("%s", "10k-row build+encode in a fresh process");
        buf_free(&e_small.out);
    }
    frame_free(small);

    /* 3. Body -> frame: ours vs jansson, throughput and peak memory. */
    size_t body_len = 0, pipe_len = 0;
    char *body = make_body(body_points, &body_len);
    char *pbody = make_body(pipe_points, &pipe_len);
    stat_t conv[2] = {none, none}, pipe_t[2] = {none, none};
    long mem[2] = {-1, -1}, mem_runs_kib[2][8];
    double cold_us[2][8];
    size_t mem_ok[2] = {0, 0};
    stat_t cold[2] = {none, none};
    int mem_reset = 1;
    if (!body || !pbody) {
        cant("%s", "out of memory");
    } else {
        fprintf(stderr, "bench_frames: %zu-point body (%.2f MB) -> frame, ours vs jansson, %zu interleaved reps\n",
                body_points, body_len / 1e6, conv_reps);
        if (check_same(body, body_len, body_points) == 0 && check_same(pbody, pipe_len, pipe_points) == 0) {
            conv_ctx ours = {convert_ours, body, body_len, false}, jan = {convert_jansson, body, body_len, false};
            bench_fn fn[2] = {run_convert, run_convert};
            void *ctx[2] = {&ours, &jan};
            if (measure(fn, ctx, 2, 1, conv_reps, conv) != 0) cant("%s", "conversion failed");

            fprintf(stderr, "bench_frames: peak memory, %zu fresh process(es) per variant\n", mem_runs);
            const char *which[2] = {"ours", "jansson"};
            for (size_t r = 0; r < mem_runs; r++)
                for (int v = 0; v < 2; v++) {
                    int reset = 0;
                    double us = NAN;
                    long k = mem_run(which[v], body_points, &reset, &us);
                    if (k < 0) { cant("peak memory of %s (child failed)", which[v]); continue; }
                    mem_runs_kib[v][mem_ok[v]] = k;
                    cold_us[v][mem_ok[v]++] = us;
                    mem_reset &= reset;
                }
            for (int v = 0; v < 2; v++)
                if (mem_ok[v] == mem_runs) {
                    qsort(mem_runs_kib[v], mem_ok[v], sizeof(long), cmp_long);
                    mem[v] = mem_runs_kib[v][mem_ok[v] / 2];
                    cold[v] = summarize(cold_us[v], mem_ok[v]);
                }

            fprintf(stderr, "bench_frames: %zu-point body -> frame -> Arrow, %zu interleaved reps\n", pipe_points,
                    pipe_reps);
            conv_ctx po = {convert_ours, pbody, pipe_len, true}, pj = {convert_jansson, pbody, pipe_len, true};
            void *pctx[2] = {&po, &pj};
            if (measure(fn, pctx, 2, 10, pipe_reps, pipe_t) != 0) cant("%s", "pipeline failed");
        }
    }
    free(body);
    free(pbody);

    /* ---- print ---- */
    double r_plain = enc[0].median / enc[1].median, r_nulls = enc[2].median / enc[3].median;
    double mbs_ours = body_len / conv[0].median, mbs_jan = body_len / conv[1].median; /* bytes/µs = MB/s */
    double mbs_ours_best = body_len / conv[0].best, mbs_jan_best = body_len / conv[1].best;
    double tput = mbs_ours / mbs_jan;
    double memr = mem[0] >= 0 && mem[1] > 0 ? (double)mem[0] / (double)mem[1] : NAN;

    printf("\nframes benchmark (bench_frames, Release, same run)  %ld CPUs online\n", sysconf(_SC_NPROCESSORS_ONLN));
    printf("cells: median (best) of N reps, competing variants interleaved rep by rep; N = %zu (1e6-row encode),\n"
           "       %zu (10k encode), %zu (10k build+encode; %zu in the fresh process), %zu (1e5-point body), %zu (10k\n"
           "       pipeline); fresh-process body rows and memory: median of %zu processes per variant, one conversion each\n\n",
           enc_reps, small_reps, build_reps, build_reps / 4 + 1, conv_reps, pipe_reps, mem_runs);
    row("metric", "ours", "baseline", "ratio / goal", "result");
    row("--------------------------------------------", "-----------------", "-----------------",
        "------------------------", "------");
    snprintf(c, sizeof c, "%.2fx / <= 2x memcpy", r_plain);
    row("Arrow encode 1e6 rows, no nulls (ms)", fmt2(a, sizeof a, "%.2f (%.2f)", enc[0].median / 1e3, enc[0].best / 1e3),
        fmt2(b, sizeof b, "%.2f (%.2f)", enc[1].median / 1e3, enc[1].best / 1e3), c, verdict(r_plain, true, 2));
    snprintf(c, sizeof c, "%.1f MB column bytes", bytes_plain / 1e6);
    snprintf(a, sizeof a, "%.2f", bytes_plain / enc[0].median / 1e3);
    snprintf(b, sizeof b, "%.2f", bytes_plain / enc[1].median / 1e3);
    row("  rate (GB/s of column bytes, median)", isnan(r_plain) ? "n/a" : a, isnan(r_plain) ? "n/a" : b, c, "info");
    snprintf(c, sizeof c, "%.2fx / <= 2x memcpy", r_nulls);
    row("Arrow encode 1e6 rows, 10% nulls (ms)", fmt2(a, sizeof a, "%.2f (%.2f)", enc[2].median / 1e3, enc[2].best / 1e3),
        fmt2(b, sizeof b, "%.2f (%.2f)", enc[3].median / 1e3, enc[3].best / 1e3), c, verdict(r_nulls, true, 2));
    row("10k-row series encode (us)", fmt2(a, sizeof a, "%.1f (%.1f)", s_enc.median, s_enc.best), "-",
        "Go SDK ref, see below", "info");
    row("  build from arrays + encode + free (us)", fmt2(a, sizeof a, "%.1f (%.1f)", s_build.median, s_build.best), "-",
        "-", "info");
    row("  same, fresh process (cold malloc heap)", fmt2(a, sizeof a, "%.1f (%.1f)", s_cold.median, s_cold.best),
        "-", "-", "info");
    printf("  reference: Go SDK: ~88–146 µs per 10k-row series on a fast laptop (SDK PR #1412)\n");
    snprintf(c, sizeof c, "%.2fx / >= 3x", tput);
    snprintf(a, sizeof a, "%.0f (%.0f)", mbs_ours, mbs_ours_best);
    snprintf(b, sizeof b, "%.0f (%.0f)", mbs_jan, mbs_jan_best);
    row("body -> frame, 1e5 points (MB/s)", isnan(tput) ? "n/a" : a, isnan(tput) ? "n/a" : b, c, verdict(tput, false, 3));
    snprintf(c, sizeof c, "body %.2f MB", body_len / 1e6);
    row("  time per body (ms)", fmt2(a, sizeof a, "%.2f (%.2f)", conv[0].median / 1e3, conv[0].best / 1e3),
        fmt2(b, sizeof b, "%.2f (%.2f)", conv[1].median / 1e3, conv[1].best / 1e3), c, "info");
    snprintf(c, sizeof c, "%.2fx", cold[1].median / cold[0].median);
    row("  time per body, fresh process (ms)", fmt2(a, sizeof a, "%.2f (%.2f)", cold[0].median / 1e3, cold[0].best / 1e3),
        fmt2(b, sizeof b, "%.2f (%.2f)", cold[1].median / 1e3, cold[1].best / 1e3), c, "info");
    snprintf(a, sizeof a, "%ld KiB", mem[0]);
    snprintf(b, sizeof b, "%ld KiB", mem[1]);
    snprintf(c, sizeof c, "%.3f / <= 0.25", memr);
    row("peak extra memory, 1e5-point body", mem[0] >= 0 ? a : "n/a", mem[1] >= 0 ? b : "n/a", c,
        verdict(memr, true, 0.25));
    snprintf(c, sizeof c, "%.2fx; body %.0f KB", pipe_t[1].median / pipe_t[0].median, pipe_len / 1e3);
    row("10k-point body -> frame -> Arrow (us)", fmt2(a, sizeof a, "%.0f (%.0f)", pipe_t[0].median, pipe_t[0].best),
        fmt2(b, sizeof b, "%.0f (%.0f)", pipe_t[1].median, pipe_t[1].best), c, "info");
    printf("\nBaselines: Arrow rows - memcpy of the same column bytes (values + validity) into a pre-faulted buffer;\n"
           "  ours writes into a pre-reserved, pre-faulted buf_t (len reset each rep). Body rows - jansson json_loadb of\n"
           "  the whole body, then the tree walked into the same Time/Value frame with the same builders, labels, meta\n"
           "  and sort check (both routes' Arrow files checked byte-identical). Ours: conv_feed in 64 KiB reads copied\n"
           "  through a 64 KiB read buffer. Timings include freeing the frame (and the tree for jansson).\n"
           "Heap state: in-process rows run after the 1e6-row section, whose freed 16 MB buffers raised glibc's dynamic\n"
           "  mmap/trim thresholds (the state of a plugin that has served one large frame); \"fresh process\" rows run\n"
           "  with glibc's defaults, where column growth and frees cost page faults, brk and trims.\n");
    printf("Memory: each variant in a fresh process (fork + exec of bench_frames): body generated first, peak RSS\n"
           "  %s, then VmHWM after the conversion minus VmRSS before it. The body is\n"
           "  EXCLUDED from both (the baseline must hold it all, ours needs only the 64 KiB read buffer, which is\n"
           "  counted); the result frame is counted in both.\n"
           "Bodies: one series, values like 12.345678 (random walk), epoch-ms timestamps 1 s apart, 3 tags.\n",
           mem_reset ? "reset via /proc/self/clear_refs" : "NOT resettable here (the peak so far is the floor)");
    return g_failed ? 1 : 0;
}
