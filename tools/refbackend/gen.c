/*
 * The reference backend's answers: /query parsed with yajl's event API (no
 * tree, no per-value allocation) and answered by writing JSON text straight
 * into a buffer; the editor endpoints, small and rare, use yajl's tree.
 */
#include "gen.h"

#include "util/jsonw.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yajl/yajl_parse.h>
#include <yajl/yajl_tree.h>

#define DEFAULT_TO_MS 1767225600000LL /* 2026-01-01T00:00:00Z */
#define HOUR_MS 3600000LL
#define MAX_TARGETS 1000
#define MAX_SERIES 10000            /* sine:N */
#define MAX_POINTS 2000000ULL       /* points in one ordinary answer */
#define MAX_INTERVAL_MS 1000000000000LL
#define MAX_ABS_TIME_MS 1000000000000000LL
#define MAX_HUGE_BYTES (1ULL << 40)

/* ---- number formatting, the hot path --------------------------------- */

static const char DIGITS2[201] =
    "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
    "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
    "8081828384858687888990919293949596979899";

static inline char *put_u64(char *p, uint64_t v) {
    char t[20];
    int n = 20;
    while (v >= 100) {
        unsigned r = (unsigned)(v % 100);
        v /= 100;
        t[--n] = DIGITS2[2 * r + 1];
        t[--n] = DIGITS2[2 * r];
    }
    if (v >= 10) {
        t[--n] = DIGITS2[2 * v + 1];
        t[--n] = DIGITS2[2 * v];
    } else {
        t[--n] = (char)('0' + v);
    }
    memcpy(p, t + n, (size_t)(20 - n));
    return p + (20 - n);
}

static inline char *put_i64(char *p, int64_t v) {
    if (v < 0) {
        *p++ = '-';
        return put_u64(p, (uint64_t)0 - (uint64_t)v);
    }
    return put_u64(p, (uint64_t)v);
}

/* v with exactly six decimals; |v| must stay below 9e12. */
static inline char *put_fix6(char *p, double v) {
    if (!isfinite(v)) v = 0;
    double x = v * 1e6;
    long long m = (long long)(x < 0 ? x - 0.5 : x + 0.5); /* llround, inlined */
    if (m < 0) {
        *p++ = '-';
        m = -m;
    }
    p = put_u64(p, (uint64_t)m / 1000000u);
    *p++ = '.';
    unsigned f = (unsigned)((uint64_t)m % 1000000u);
    for (int k = 4; k >= 0; k -= 2) {
        unsigned r = f % 100;
        f /= 100;
        p[k] = DIGITS2[2 * r];
        p[k + 1] = DIGITS2[2 * r + 1];
    }
    return p + 6;
}

static inline void lit(buf_t *o, const char *s) { buf_append(o, s, strlen(s)); }

/* Copies a string literal to p and advances p past it. */
#define PUT(p, s) (memcpy((p), (s), sizeof(s) - 1), (p) += sizeof(s) - 1)

static inline int64_t hour_phase(int64_t ts_ms) {
    int64_t m = ts_ms % HOUR_MS;
    return m < 0 ? m + HOUR_MS : m;
}

static inline double sine_at(int64_t m, uint64_t i) {
    return sin(2.0 * M_PI * (double)m / (double)HOUR_MS + (double)(i % 16) * (M_PI / 8.0));
}

double rb_sine(int64_t ts_ms, uint64_t i) { return sine_at(hour_phase(ts_ms), i); }

/* ts mod one hour, advanced by a fixed step without dividing per point. */
typedef struct {
    int64_t m, dm;
} phase_t;

static inline phase_t phase_start(int64_t ts0, int64_t step) { return (phase_t){hour_phase(ts0), hour_phase(step)}; }

static inline void phase_next(phase_t *ph) {
    ph->m += ph->dm;
    if (ph->m >= HOUR_MS) ph->m -= HOUR_MS;
}

void rb_error_json(buf_t *out, const char *msg) {
    lit(out, "{\"error\":");
    jsonw_string(out, msg, strlen(msg));
    lit(out, "}");
}

static int fail400(buf_t *out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail400(buf_t *out, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    out->len = 0;
    rb_error_json(out, msg);
    return 400;
}

/* ---- time ------------------------------------------------------------- */

static int64_t days_from_civil(int64_t y, int m, int d) {
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static bool digits(const char *s, size_t n, size_t at, size_t cnt, int *v) {
    if (at + cnt > n) return false;
    int r = 0;
    for (size_t i = at; i < at + cnt; i++) {
        if (!isdigit((unsigned char)s[i])) return false;
        r = r * 10 + (s[i] - '0');
    }
    *v = r;
    return true;
}

/* ISO-8601 (YYYY-MM-DD[THH:MM[:SS[.fff]]][Z|+HH:MM]) or epoch ms digits. */
static bool parse_time(const char *s, size_t n, int64_t *ms) {
    size_t i = 0;
    if (n == 0 || n > 64) return false;
    bool all_digits = n > (size_t)(s[0] == '-');
    for (size_t k = (s[0] == '-'); k < n; k++)
        if (!isdigit((unsigned char)s[k])) all_digits = false;
    if (all_digits && n != 10) { /* ten digits look like epoch seconds: refuse, do not guess */
        char tmp[72];
        memcpy(tmp, s, n);
        tmp[n] = 0;
        errno = 0;
        long long v = strtoll(tmp, NULL, 10);
        if (errno || v > MAX_ABS_TIME_MS || v < -MAX_ABS_TIME_MS) return false;
        *ms = v;
        return true;
    }
    int y, mo, d, h = 0, mi = 0, se = 0, frac = 0;
    if (!digits(s, n, 0, 4, &y) || n < 10 || s[4] != '-' || !digits(s, n, 5, 2, &mo) || s[7] != '-' ||
        !digits(s, n, 8, 2, &d))
        return false;
    i = 10;
    if (i < n && (s[i] == 'T' || s[i] == 't' || s[i] == ' ')) {
        if (!digits(s, n, i + 1, 2, &h) || i + 3 >= n || s[i + 3] != ':' || !digits(s, n, i + 4, 2, &mi))
            return false;
        i += 6;
        if (i < n && s[i] == ':') {
            if (!digits(s, n, i + 1, 2, &se)) return false;
            i += 3;
            if (i < n && (s[i] == '.' || s[i] == ',')) {
                i++;
                int nd = 0;
                while (i < n && isdigit((unsigned char)s[i])) {
                    if (nd < 3) frac = frac * 10 + (s[i] - '0');
                    nd++;
                    i++;
                }
                if (nd == 0) return false;
                for (; nd < 3; nd++) frac *= 10;
            }
        }
    }
    int64_t off_min = 0;
    if (i < n) {
        if ((s[i] == 'Z' || s[i] == 'z') && i + 1 == n) {
            i++;
        } else if (s[i] == '+' || s[i] == '-') {
            int oh, om = 0;
            int sign = s[i] == '-' ? -1 : 1;
            if (!digits(s, n, i + 1, 2, &oh)) return false;
            size_t j = i + 3;
            if (j < n && s[j] == ':') j++;
            if (j < n) {
                if (!digits(s, n, j, 2, &om)) return false;
                j += 2;
            }
            if (j != n || oh > 23 || om > 59) return false;
            off_min = sign * (oh * 60 + om);
            i = n;
        } else {
            return false;
        }
    }
    if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 24 || mi > 59 || se > 60) return false;
    int64_t days = days_from_civil(y, mo, d);
    *ms = ((days * 24 + h) * 60 + mi) * 60000LL + se * 1000LL + frac - off_min * 60000LL;
    return true;
}

/* ---- the /query body, parsed as a stream of events -------------------- */

enum { K_NONE = 0, K_RANGE, K_FROM, K_TO, K_INTERVALMS, K_MAXDP, K_TARGETS, K_TARGET, K_HIDE, K_REFID };
enum { V_NULL, V_BOOL, V_NUM, V_STR, V_MAP, V_ARRAY };
enum { KIND_SINE, KIND_TABLE, KIND_FRAME, KIND_EMPTY, KIND_POINTS };

typedef struct {
    size_t target_off, target_len, refid_off, refid_len;
    bool has_target, bad_target, hide;
    int kind;
    uint64_t n;
    rb_behaviour beh;
} tgt_t;

#define QDEPTH 4
typedef struct {
    int depth;
    char type[QDEPTH + 1];
    unsigned char key[QDEPTH + 1];
    bool have_from, have_to, have_interval, have_maxdp;
    int64_t from, to;
    double interval, maxdp;
    size_t nt;
    char err[256];
} qctx;

/* Reused from request to request: the parse allocates nothing once warm. */
static tgt_t *g_tg;
static size_t g_tg_cap;
static buf_t g_arena;

static int qfail(qctx *q, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int qfail(qctx *q, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(q->err, sizeof q->err, fmt, ap);
    va_end(ap);
    return 0; /* cancels the parse */
}

static int key_id(const unsigned char *k, size_t l) {
#define KEY(s, id) \
    if (l == sizeof(s) - 1 && memcmp(k, s, l) == 0) return id
    KEY("range", K_RANGE);
    KEY("from", K_FROM);
    KEY("to", K_TO);
    KEY("intervalMs", K_INTERVALMS);
    KEY("maxDataPoints", K_MAXDP);
    KEY("targets", K_TARGETS);
    KEY("target", K_TARGET);
    KEY("hide", K_HIDE);
    KEY("refId", K_REFID);
#undef KEY
    return K_NONE;
}

static bool num_of(const char *s, size_t l, double *v) {
    char tmp[64];
    if (l == 0 || l >= sizeof tmp) return false;
    memcpy(tmp, s, l);
    tmp[l] = 0;
    char *end;
    *v = strtod(tmp, &end);
    return *end == 0;
}

static int on_value(qctx *q, int vt, const char *s, size_t l, int b) {
    int d = q->depth;
    if (d == 0) return vt == V_MAP ? 1 : qfail(q, "the body must be a JSON object");
    if (d > 3) return 1;
    if (d == 1) {
        switch (q->key[1]) {
        case K_RANGE:
            if (vt != V_MAP && vt != V_NULL) return qfail(q, "range must be an object");
            break;
        case K_INTERVALMS:
        case K_MAXDP: {
            const char *name = q->key[1] == K_MAXDP ? "maxDataPoints" : "intervalMs";
            if (vt == V_NULL) break;
            double v;
            if (vt != V_NUM || !num_of(s, l, &v)) return qfail(q, "%s must be a number", name);
            if (q->key[1] == K_MAXDP) { q->maxdp = v; q->have_maxdp = true; }
            else { q->interval = v; q->have_interval = true; }
            break;
        }
        case K_TARGETS:
            if (vt != V_ARRAY && vt != V_NULL) return qfail(q, "targets must be an array");
            break;
        default:
            break;
        }
        return 1;
    }
    if (d == 2) {
        if (q->key[1] == K_RANGE && q->type[2] == 'm' && (q->key[2] == K_FROM || q->key[2] == K_TO)) {
            const char *name = q->key[2] == K_FROM ? "range.from" : "range.to";
            int64_t ms;
            double v;
            if (vt == V_STR) {
                if (!parse_time(s, l, &ms))
                    return qfail(q, "%s: invalid time '%.*s' (want ISO-8601 UTC like 2026-11-25T10:00:00.000Z)",
                                 name, (int)(l > 64 ? 64 : l), s);
            } else if (vt == V_NUM && num_of(s, l, &v) && fabs(v) < (double)MAX_ABS_TIME_MS) {
                ms = (int64_t)v;
            } else {
                return qfail(q, "%s must be an ISO-8601 string or epoch milliseconds", name);
            }
            if (q->key[2] == K_FROM) { q->from = ms; q->have_from = true; }
            else { q->to = ms; q->have_to = true; }
        } else if (q->key[1] == K_TARGETS && q->type[2] == 'a') {
            if (vt != V_MAP) return qfail(q, "targets[%zu] must be an object", q->nt);
            if (q->nt >= MAX_TARGETS) return qfail(q, "more than %d targets", MAX_TARGETS);
            if (q->nt == g_tg_cap) {
                size_t nc = g_tg_cap ? g_tg_cap * 2 : 16;
                tgt_t *nt = realloc(g_tg, nc * sizeof *nt);
                if (!nt) return qfail(q, "out of memory");
                g_tg = nt;
                g_tg_cap = nc;
            }
            memset(&g_tg[q->nt], 0, sizeof g_tg[0]);
            q->nt++;
        }
        return 1;
    }
    /* d == 3: a key of targets[i] */
    if (q->key[1] == K_TARGETS && q->type[2] == 'a' && q->type[3] == 'm') {
        tgt_t *t = &g_tg[q->nt - 1];
        switch (q->key[3]) {
        case K_TARGET:
            if (vt == V_STR) {
                t->has_target = true;
                t->bad_target = false;
                t->target_off = g_arena.len;
                t->target_len = l;
                buf_append(&g_arena, s, l);
            } else if (vt != V_NULL) {
                t->bad_target = true;
            }
            break;
        case K_REFID:
            if (vt == V_STR) {
                t->refid_off = g_arena.len;
                t->refid_len = l;
                buf_append(&g_arena, s, l);
            }
            break;
        case K_HIDE:
            if (vt == V_BOOL) t->hide = b != 0;
            break;
        default:
            break;
        }
    }
    return 1;
}

static int cb_null(void *ctx) { return on_value(ctx, V_NULL, NULL, 0, 0); }
static int cb_bool(void *ctx, int b) { return on_value(ctx, V_BOOL, NULL, 0, b); }
static int cb_number(void *ctx, const char *s, size_t l) { return on_value(ctx, V_NUM, s, l, 0); }
static int cb_string(void *ctx, const unsigned char *s, size_t l) {
    return on_value(ctx, V_STR, (const char *)s, l, 0);
}
static int push(qctx *q, int vt) {
    if (!on_value(q, vt, NULL, 0, 0)) return 0;
    q->depth++;
    if (q->depth <= QDEPTH) {
        q->type[q->depth] = vt == V_MAP ? 'm' : 'a';
        q->key[q->depth] = K_NONE;
    }
    return 1;
}
static int cb_start_map(void *ctx) { return push(ctx, V_MAP); }
static int cb_start_array(void *ctx) { return push(ctx, V_ARRAY); }
static int cb_end(void *ctx) {
    ((qctx *)ctx)->depth--;
    return 1;
}
static int cb_map_key(void *ctx, const unsigned char *k, size_t l) {
    qctx *q = ctx;
    if (q->depth <= QDEPTH) q->key[q->depth] = (unsigned char)key_id(k, l);
    return 1;
}

static const yajl_callbacks q_callbacks = {
    .yajl_null = cb_null,
    .yajl_boolean = cb_bool,
    .yajl_number = cb_number,
    .yajl_string = cb_string,
    .yajl_start_map = cb_start_map,
    .yajl_map_key = cb_map_key,
    .yajl_end_map = cb_end,
    .yajl_start_array = cb_start_array,
    .yajl_end_array = cb_end,
};

/* Runs yajl over the whole body; 0 when it is valid, else fills err. */
static int yajl_run(yajl_handle h, const char *body, size_t len, char *err, size_t errcap) {
    yajl_status st = yajl_parse(h, (const unsigned char *)body, len);
    if (st == yajl_status_ok) st = yajl_complete_parse(h);
    if (st == yajl_status_ok) return 0;
    if (st == yajl_status_client_canceled) return -1; /* err already set */
    unsigned char *m = yajl_get_error(h, 0, (const unsigned char *)body, len);
    snprintf(err, errcap, "invalid JSON: %s", m ? (const char *)m : "parse error");
    if (m) {
        /* yajl's message ends with a newline */
        size_t n = strlen(err);
        while (n && (err[n - 1] == '\n' || err[n - 1] == ' ')) err[--n] = 0;
        yajl_free_error(h, m);
    }
    return -1;
}

/* ---- target syntax: kind[:N][?k=v&k=v] ---------------------------------- */

static bool parse_u64(const char *s, size_t n, uint64_t *v) {
    if (n == 0 || n > 19) return false;
    uint64_t r = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i])) return false;
        r = r * 10 + (uint64_t)(s[i] - '0');
    }
    *v = r;
    return true;
}

/* "250ms", "2s", "1.5s", "1m", "500us", bare number = ms. */
static bool parse_duration_ms(const char *s, size_t n, uint64_t *ms) {
    char tmp[32];
    if (n == 0 || n >= sizeof tmp) return false;
    memcpy(tmp, s, n);
    tmp[n] = 0;
    char *end;
    errno = 0;
    double v = strtod(tmp, &end);
    if (end == tmp || errno || !(v >= 0)) return false;
    double mul;
    if (*end == 0 || strcmp(end, "ms") == 0) mul = 1;
    else if (strcmp(end, "s") == 0) mul = 1000;
    else if (strcmp(end, "m") == 0) mul = 60000;
    else if (strcmp(end, "h") == 0) mul = 3600000;
    else if (strcmp(end, "us") == 0) mul = 0.001;
    else return false;
    v *= mul;
    if (v > 86400000.0) return false;
    *ms = (uint64_t)ceil(v);
    return true;
}

/* "1000", "64k", "10m", "1g" (binary multiples). */
static bool parse_size(const char *s, size_t n, uint64_t *bytes) {
    if (n == 0) return false;
    uint64_t mul = 1;
    char last = (char)tolower((unsigned char)s[n - 1]);
    if (last == 'k' || last == 'm' || last == 'g') {
        mul = last == 'k' ? 1024ULL : last == 'm' ? 1024ULL * 1024 : 1024ULL * 1024 * 1024;
        n--;
    }
    uint64_t v;
    if (!parse_u64(s, n, &v) || v > MAX_HUGE_BYTES / mul) return false;
    *bytes = v * mul;
    return true;
}

static bool eq(const char *s, size_t n, const char *lit_) {
    return strlen(lit_) == n && strncasecmp(s, lit_, n) == 0;
}

static bool parse_params(const char *s, size_t n, rb_behaviour *b, char *err, size_t errcap) {
    size_t i = 0;
    while (i < n) {
        size_t j = i;
        while (j < n && s[j] != '&') j++;
        if (j > i) {
            const char *k = s + i;
            const char *eqp = memchr(k, '=', j - i);
            size_t kl = eqp ? (size_t)(eqp - k) : j - i;
            const char *v = eqp ? eqp + 1 : s + j;
            size_t vl = eqp ? (size_t)(s + j - v) : 0;
            uint64_t u;
            if (eq(k, kl, "latency")) {
                if (!parse_duration_ms(v, vl, &b->latency_ms)) {
                    snprintf(err, errcap, "latency=%.*s: want a duration like 50ms, 2s, 1m", (int)vl, v);
                    return false;
                }
            } else if (eq(k, kl, "status")) {
                if (!parse_u64(v, vl, &u) || u < 200 || u > 599 || u == 204 || u == 205 || u == 304) {
                    snprintf(err, errcap, "status=%.*s: want a code in 200..599 that has a body", (int)vl, v);
                    return false;
                }
                b->status = (int)u;
            } else if (eq(k, kl, "mode")) {
                static const struct { const char *name; rb_mode m; } modes[] = {
                    {"malformed", RB_MODE_MALFORMED}, {"truncate", RB_MODE_TRUNCATE}, {"huge", RB_MODE_HUGE},
                    {"reset", RB_MODE_RESET},         {"hang", RB_MODE_HANG},         {"drip", RB_MODE_DRIP},
                    {"chunked", RB_MODE_CHUNKED},
                };
                b->mode = RB_MODE_NONE;
                for (size_t m = 0; m < sizeof modes / sizeof modes[0]; m++)
                    if (eq(v, vl, modes[m].name)) b->mode = modes[m].m;
                if (b->mode == RB_MODE_NONE) {
                    snprintf(err, errcap,
                             "mode=%.*s: want malformed, truncate, huge, reset, hang, drip or chunked", (int)vl, v);
                    return false;
                }
                if (b->mode == RB_MODE_CHUNKED) b->chunked = true;
            } else if (eq(k, kl, "bytes")) {
                if (!parse_size(v, vl, &b->huge_bytes)) {
                    snprintf(err, errcap, "bytes=%.*s: want a size like 1000, 64k, 10m, 1g", (int)vl, v);
                    return false;
                }
            } else if (eq(k, kl, "chunked")) {
                b->chunked = !(eq(v, vl, "0") || eq(v, vl, "false"));
            } else if (eq(k, kl, "drip_bytes")) {
                if (!parse_u64(v, vl, &u) || u < 1 || u > 1048576) {
                    snprintf(err, errcap, "drip_bytes=%.*s: want 1..1048576", (int)vl, v);
                    return false;
                }
                b->drip_bytes = (uint32_t)u;
            } else if (eq(k, kl, "drip_ms")) {
                if (!parse_u64(v, vl, &u) || u < 1 || u > 60000) {
                    snprintf(err, errcap, "drip_ms=%.*s: want 1..60000", (int)vl, v);
                    return false;
                }
                b->drip_ms = (uint32_t)u;
            } else if (eq(k, kl, "encoding")) {
                static const struct { const char *name; rb_encoding e; } encs[] = {
                    {"gzip", RB_ENC_GZIP}, {"deflate", RB_ENC_DEFLATE}, {"deflate-raw", RB_ENC_DEFLATE_RAW},
                    {"br", RB_ENC_BR},     {"identity", RB_ENC_NONE},
                };
                size_t m = 0;
                while (m < sizeof encs / sizeof encs[0] && !eq(v, vl, encs[m].name)) m++;
                if (m == sizeof encs / sizeof encs[0]) {
                    snprintf(err, errcap, "encoding=%.*s: want gzip, deflate, deflate-raw, br or identity",
                             (int)(vl > 40 ? 40 : vl), v);
                    return false;
                }
                b->encoding = encs[m].e;
            } else if (eq(k, kl, "corrupt")) {
                b->corrupt = !(eq(v, vl, "0") || eq(v, vl, "false"));
            } else {
                snprintf(err, errcap,
                         "unknown parameter '%.*s' (known: latency, status, mode, bytes, chunked, drip_bytes, "
                         "drip_ms, encoding, corrupt)",
                         (int)(kl > 40 ? 40 : kl), k);
                return false;
            }
            b->present = true;
        }
        i = j + 1;
    }
    if (b->corrupt && (b->encoding == RB_ENC_NONE || b->encoding == RB_ENC_BR)) {
        snprintf(err, errcap, "corrupt=1 needs encoding=gzip, deflate or deflate-raw");
        return false;
    }
    return true;
}

static bool parse_target(const char *s, size_t n, tgt_t *t, char *err, size_t errcap) {
    while (n && isspace((unsigned char)*s)) { s++; n--; }
    while (n && isspace((unsigned char)s[n - 1])) n--;
    const char *q = memchr(s, '?', n);
    size_t head = q ? (size_t)(q - s) : n;
    const char *colon = memchr(s, ':', head);
    size_t kl = colon ? (size_t)(colon - s) : head;
    static const struct { const char *name; int kind; } kinds[] = {
        {"sine", KIND_SINE}, {"table", KIND_TABLE}, {"frame", KIND_FRAME}, {"empty", KIND_EMPTY},
        {"points", KIND_POINTS},
    };
    t->kind = -1;
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++)
        if (eq(s, kl, kinds[k].name)) t->kind = kinds[k].kind;
    if (t->kind < 0) {
        snprintf(err, errcap, "unknown target '%.*s': want sine:N, table:N, frame:N, points:N or empty",
                 (int)(n > 80 ? 80 : n), s);
        return false;
    }
    t->n = 1;
    if (colon) {
        if (t->kind == KIND_EMPTY || !parse_u64(colon + 1, head - kl - 1, &t->n)) {
            snprintf(err, errcap, "target '%.*s': want a count after ':'", (int)(head > 80 ? 80 : head), s);
            return false;
        }
    }
    uint64_t cap = t->kind == KIND_SINE ? MAX_SERIES : MAX_POINTS;
    if (t->n > cap) {
        snprintf(err, errcap, "target '%.*s': at most %llu", (int)(head > 80 ? 80 : head), s,
                 (unsigned long long)cap);
        return false;
    }
    memset(&t->beh, 0, sizeof t->beh);
    t->beh.drip_bytes = 16;
    t->beh.drip_ms = 100;
    t->beh.huge_bytes = 1024 * 1024;
    if (q && !parse_params(q + 1, n - head - 1, &t->beh, err, errcap)) return false;
    return true;
}

/* ---- answers ------------------------------------------------------------ */

static void gen_sine(buf_t *o, uint64_t nseries, const rb_range *r, int64_t step, uint64_t npts, bool *first) {
    for (uint64_t i = 0; i < nseries; i++) {
        if (!*first) lit(o, ",");
        *first = false;
        if (!buf_reserve(o, 128)) return;
        char *p = o->data + o->len;
        PUT(p, "{\"target\":\"sine-");
        p = put_u64(p, i);
        PUT(p, "\",\"datapoints\":[");
        o->len = (size_t)(p - o->data);
        phase_t ph = phase_start(r->from_ms, step);
        for (uint64_t k = 0; k < npts;) {
            uint64_t blk = npts - k < 1024 ? npts - k : 1024;
            if (!buf_reserve(o, blk * 48)) return;
            p = o->data + o->len;
            for (uint64_t e = k + blk; k < e; k++, phase_next(&ph)) {
                int64_t ts = r->from_ms + (int64_t)k * step;
                *p++ = '[';
                p = put_fix6(p, sine_at(ph.m, i));
                *p++ = ',';
                p = put_i64(p, ts);
                *p++ = ']';
                *p++ = ',';
            }
            o->len = (size_t)(p - o->data);
        }
        if (npts) o->len--; /* the last comma */
        if (!buf_reserve(o, 64)) return;
        p = o->data + o->len;
        PUT(p, "],\"tags\":{\"series\":\"");
        p = put_u64(p, i);
        PUT(p, "\",\"shape\":\"sine\"}}");
        o->len = (size_t)(p - o->data);
        o->data[o->len] = 0;
    }
}

/* One series of exactly n points from range.from every intervalMs. */
static void gen_points(buf_t *o, const rb_range *r, uint64_t n, bool *first) {
    if (!*first) lit(o, ",");
    *first = false;
    lit(o, "{\"target\":\"points\",\"datapoints\":[");
    phase_t ph = phase_start(r->from_ms, r->interval_ms);
    for (uint64_t k = 0; k < n;) {
        uint64_t blk = n - k < 1024 ? n - k : 1024;
        if (!buf_reserve(o, blk * 48)) return;
        char *p = o->data + o->len;
        for (uint64_t e = k + blk; k < e; k++, phase_next(&ph)) {
            int64_t ts = r->from_ms + (int64_t)k * r->interval_ms;
            *p++ = '[';
            p = put_fix6(p, sine_at(ph.m, 0));
            *p++ = ',';
            p = put_i64(p, ts);
            *p++ = ']';
            *p++ = ',';
        }
        o->len = (size_t)(p - o->data);
    }
    if (n) o->len--;
    lit(o, "],\"tags\":{\"shape\":\"points\"}}");
}

static void gen_table(buf_t *o, const rb_range *r, uint64_t rows, bool *first) {
    if (!*first) lit(o, ",");
    *first = false;
    lit(o, "{\"type\":\"table\",\"columns\":[{\"text\":\"time\",\"type\":\"time\"},"
           "{\"text\":\"host\",\"type\":\"string\"},{\"text\":\"value\",\"type\":\"number\"},"
           "{\"text\":\"up\",\"type\":\"boolean\"}],\"rows\":[");
    for (uint64_t k = 0; k < rows;) {
        uint64_t blk = rows - k < 1024 ? rows - k : 1024;
        if (!buf_reserve(o, blk * 96)) return;
        char *p = o->data + o->len;
        for (uint64_t e = k + blk; k < e; k++) {
            int64_t ts = r->from_ms + (int64_t)k * r->interval_ms;
            *p++ = '[';
            p = put_i64(p, ts);
            PUT(p, ",\"host-");
            p = put_u64(p, k);
            *p++ = '"';
            *p++ = ',';
            p = put_fix6(p, 100.0 * rb_sine(ts, k));
            if (k % 3 == 2) PUT(p, ",false],");
            else PUT(p, ",true],");
        }
        o->len = (size_t)(p - o->data);
    }
    if (rows) o->len--;
    lit(o, "]}");
}

static void gen_frame(buf_t *o, const rb_range *r, uint64_t rows, const char *target, size_t tlen,
                      const char *refid, size_t rlen, bool *first) {
    if (!*first) lit(o, ",");
    *first = false;
    lit(o, "{\"name\":\"frame\",\"refId\":");
    jsonw_string(o, refid, rlen);
    lit(o, ",\"meta\":{\"executedQueryString\":");
    jsonw_string(o, target, tlen);
    lit(o, ",\"custom\":{\"generator\":\"refbackend\"}},\"fields\":[{\"name\":\"time\",\"type\":\"time\",\"values\":[");
    for (int pass = 0; pass < 2; pass++) {
        for (uint64_t k = 0; k < rows;) {
            uint64_t blk = rows - k < 1024 ? rows - k : 1024;
            if (!buf_reserve(o, blk * 32)) return;
            char *p = o->data + o->len;
            for (uint64_t e = k + blk; k < e; k++) {
                int64_t ts = r->from_ms + (int64_t)k * r->interval_ms;
                p = pass == 0 ? put_i64(p, ts) : put_fix6(p, rb_sine(ts, 0));
                *p++ = ',';
            }
            o->len = (size_t)(p - o->data);
        }
        if (rows) o->len--;
        if (pass == 0)
            lit(o, "]},{\"name\":\"value\",\"type\":\"number\",\"labels\":{\"series\":\"0\",\"shape\":\"frame\"},"
                   "\"config\":{\"unit\":\"percent\",\"displayNameFromDS\":\"frame value\"},\"values\":[");
    }
    lit(o, "]}]}");
}

static void range_defaults(const qctx *q, rb_range *r) {
    int64_t from, to;
    if (q->have_from && q->have_to) { from = q->from; to = q->to; }
    else if (q->have_from) { from = q->from; to = from + HOUR_MS; }
    else if (q->have_to) { to = q->to; from = to - HOUR_MS; }
    else { to = DEFAULT_TO_MS; from = to - HOUR_MS; }
    double iv = q->have_interval ? q->interval : 1000;
    if (!(iv >= 1)) iv = 1000;
    if (iv > (double)MAX_INTERVAL_MS) iv = (double)MAX_INTERVAL_MS;
    double mdp = q->have_maxdp ? q->maxdp : 1000;
    if (!(mdp >= 1)) mdp = 1000;
    if (mdp > (double)MAX_POINTS) mdp = (double)MAX_POINTS;
    r->from_ms = from;
    r->to_ms = to;
    r->interval_ms = (int64_t)llround(iv);
    r->max_points = (int64_t)mdp;
}

/* Points of a sine series: from..to every intervalMs, the step widened to a
 * multiple of intervalMs when that would exceed maxDataPoints. */
static uint64_t sine_points(const rb_range *r, int64_t *step) {
    int64_t span = r->to_ms - r->from_ms;
    *step = r->interval_ms;
    if (span <= 0) return 1;
    uint64_t n = (uint64_t)(span / r->interval_ms) + 1;
    if (n > (uint64_t)r->max_points) {
        uint64_t k = (n + (uint64_t)r->max_points - 1) / (uint64_t)r->max_points;
        *step = r->interval_ms * (int64_t)k;
        n = (uint64_t)(span / *step) + 1;
    }
    return n;
}

int rb_query(const char *body, size_t len, buf_t *out, rb_behaviour *beh, rb_range *range) {
    qctx q;
    memset(&q, 0, sizeof q);
    memset(beh, 0, sizeof *beh);
    g_arena.len = 0;
    out->len = 0;
    if (len == 0) return fail400(out, "empty body: POST /query wants a JSON object with targets");
    yajl_handle h = yajl_alloc(&q_callbacks, NULL, &q);
    if (!h) return fail400(out, "out of memory");
    char err[400];
    int rc = yajl_run(h, body, len, err, sizeof err);
    yajl_free(h);
    if (rc != 0) return fail400(out, "%s", q.err[0] ? q.err : err);
    if (!buf_ok(&g_arena)) return fail400(out, "out of memory");
    range_defaults(&q, range);

    const char *arena = g_arena.data ? g_arena.data : "";
    int64_t step;
    uint64_t spts = sine_points(range, &step);
    uint64_t total = 0;
    bool decided = false;
    for (size_t i = 0; i < q.nt; i++) {
        tgt_t *t = &g_tg[i];
        if (t->hide) continue;
        if (!t->has_target)
            return fail400(out, "targets[%zu]%s%.*s: %s", i, t->refid_len ? " refId " : "", (int)t->refid_len,
                           arena + t->refid_off, t->bad_target ? "target must be a string" : "target is missing");
        if (!parse_target(arena + t->target_off, t->target_len, t, err, sizeof err))
            return fail400(out, "targets[%zu]%s%.*s: %s", i, t->refid_len ? " refId " : "", (int)t->refid_len,
                           arena + t->refid_off, err);
        total += t->kind == KIND_SINE ? t->n * spts : t->kind == KIND_EMPTY ? 0 : t->n;
        if (t->beh.present && !decided) {
            *beh = t->beh;
            decided = true;
        }
    }
    if (total > MAX_POINTS)
        return fail400(out, "the answer would hold %llu points (at most %llu): narrow the range, raise intervalMs, "
                            "or use mode=huge",
                       (unsigned long long)total, (unsigned long long)MAX_POINTS);
    if (beh->mode == RB_MODE_HUGE) return 200;
    if (beh->status) {
        char msg[32];
        snprintf(msg, sizeof msg, "injected %d", beh->status);
        rb_error_json(out, msg);
    } else {
        bool first = true;
        lit(out, "[");
        for (size_t i = 0; i < q.nt; i++) {
            tgt_t *t = &g_tg[i];
            if (t->hide) continue;
            switch (t->kind) {
            case KIND_SINE: gen_sine(out, t->n, range, step, spts, &first); break;
            case KIND_POINTS: gen_points(out, range, t->n, &first); break;
            case KIND_TABLE: gen_table(out, range, t->n, &first); break;
            case KIND_FRAME:
                gen_frame(out, range, t->n, arena + t->target_off, t->target_len, arena + t->refid_off,
                          t->refid_len, &first);
                break;
            default: break;
            }
        }
        lit(out, "]");
    }
    if (beh->mode == RB_MODE_MALFORMED && out->len) {
        /* Valid up to the end, then an element that can never parse. */
        out->len--;
        lit(out, out->len > 1 ? ",{\"target\":\"malformed\",\"datapoints\":[[1.0,}" : "{\"target\":]");
    }
    if (!buf_ok(out)) {
        out->failed = false;
        return fail400(out, "out of memory");
    }
    return 200;
}

/* ---- mode=huge ---------------------------------------------------------- */

static const char HUGE_PREFIX[] = "[{\"target\":\"huge\",\"datapoints\":[";
static const char HUGE_SUFFIX[] = "],\"tags\":{\"shape\":\"huge\"}}]";
#define HUGE_POINT 25 /* [dd.dddddd,ddddddddddddd] */
#define TS_LO 1000000000000LL
#define TS_HI 9999999999999LL

void rb_huge_init(rb_huge *h, uint64_t bytes, const rb_range *r) {
    memset(h, 0, sizeof *h);
    uint64_t fixed = sizeof HUGE_PREFIX - 1 + sizeof HUGE_SUFFIX - 1;
    h->npoints = bytes > fixed + HUGE_POINT ? (bytes - fixed + 1) / (HUGE_POINT + 1) : 1;
    int64_t base = r->from_ms;
    if (base < TS_LO) base = TS_LO;
    if (base > TS_HI - 1000000000000LL) base = TS_HI - 1000000000000LL;
    int64_t step = r->interval_ms < 1 ? 1 : r->interval_ms;
    if (h->npoints > 1 && (uint64_t)step > (uint64_t)(TS_HI - base) / (h->npoints - 1)) {
        step = (int64_t)((uint64_t)(TS_HI - base) / (h->npoints - 1));
        if (step < 1) step = 1;
    }
    h->base = base;
    h->step = step;
}

uint64_t rb_huge_length(const rb_huge *h) {
    return sizeof HUGE_PREFIX - 1 + sizeof HUGE_SUFFIX - 1 + h->npoints * (HUGE_POINT + 1) - 1;
}

size_t rb_huge_produce(rb_huge *h, char *dst, size_t cap) {
    size_t o = 0;
    while (o < cap && h->phase != 3) {
        if (h->phase == 0 || h->phase == 2) {
            const char *s = h->phase == 0 ? HUGE_PREFIX : HUGE_SUFFIX;
            size_t sl = h->phase == 0 ? sizeof HUGE_PREFIX - 1 : sizeof HUGE_SUFFIX - 1;
            size_t n = sl - h->off < cap - o ? sl - h->off : cap - o;
            memcpy(dst + o, s + h->off, n);
            o += n;
            h->off += n;
            if (h->off == sl) {
                h->phase++;
                h->off = 0;
            }
            continue;
        }
        if (h->next == h->npoints) {
            h->phase = 2;
            continue;
        }
        if (cap - o < HUGE_POINT + 1) break;
        char *p = dst + o;
        if (h->next) *p++ = ',';
        int64_t ts = h->base + (int64_t)h->next * h->step;
        *p++ = '[';
        p = put_fix6(p, 50.0 + 40.0 * rb_sine(ts, 0));
        *p++ = ',';
        p = put_i64(p, ts);
        *p++ = ']';
        o = (size_t)(p - dst);
        h->next++;
    }
    return o;
}

/* ---- the editor's endpoints ------------------------------------------- */

/* Parses an optional JSON object body; 0 on success (root may be NULL). */
static int parse_object(const char *body, size_t len, yajl_val *root, buf_t *out) {
    *root = NULL;
    size_t i = 0;
    while (i < len && isspace((unsigned char)body[i])) i++;
    if (i == len) return 0;
    if (memchr(body, 0, len)) return fail400(out, "invalid JSON: NUL byte in body");
    char err[200];
    err[0] = 0;
    *root = yajl_tree_parse(body, err, sizeof err);
    if (!*root) {
        size_t n = strlen(err);
        while (n && (err[n - 1] == '\n' || err[n - 1] == ' ')) err[--n] = 0;
        return fail400(out, "invalid JSON: %s", err[0] ? err : "parse error");
    }
    if (!YAJL_IS_OBJECT(*root)) {
        yajl_tree_free(*root);
        *root = NULL;
        return fail400(out, "the body must be a JSON object");
    }
    return 0;
}

static const char *str_at(yajl_val root, const char *k1, const char *k2) {
    const char *path[] = {k1, k2, NULL};
    yajl_val v = root ? yajl_tree_get(root, path, yajl_t_string) : NULL;
    return v ? YAJL_GET_STRING(v) : NULL;
}

static void opt(buf_t *o, const char *label, size_t ll, const char *value, size_t vl, bool *first) {
    if (!*first) lit(o, ",");
    *first = false;
    lit(o, "{\"label\":");
    jsonw_string(o, label, ll);
    lit(o, ",\"value\":");
    jsonw_string(o, value, vl);
    lit(o, "}");
}

int rb_metrics(const char *body, size_t len, buf_t *out) {
    yajl_val root;
    out->len = 0;
    if (parse_object(body, len, &root, out)) return 400;
    yajl_tree_free(root);
    lit(out,
        "[{\"label\":\"Sine waves\",\"value\":\"sine\",\"payloads\":["
        "{\"label\":\"Series\",\"name\":\"series\",\"type\":\"select\",\"placeholder\":\"How many series\","
        "\"reloadMetric\":false,\"width\":10,\"options\":[{\"label\":\"1\",\"value\":\"1\"},"
        "{\"label\":\"3\",\"value\":\"3\"},{\"label\":\"10\",\"value\":\"10\"}]},"
        "{\"label\":\"Hosts\",\"name\":\"host\",\"type\":\"multi-select\",\"placeholder\":\"Pick hosts\"}]},"
        "{\"label\":\"Table\",\"value\":\"table\",\"payloads\":[{\"label\":\"Rows\",\"name\":\"rows\","
        "\"type\":\"input\",\"placeholder\":\"number of rows\"}]},"
        "{\"label\":\"Data frame\",\"value\":\"frame\",\"payloads\":[{\"label\":\"Rows\",\"name\":\"rows\","
        "\"type\":\"input\"},{\"label\":\"Shape\",\"name\":\"shape\",\"type\":\"select\",\"reloadMetric\":true}]},"
        "{\"label\":\"Points\",\"value\":\"points\",\"payloads\":[{\"label\":\"Count\",\"name\":\"count\","
        "\"type\":\"input\",\"placeholder\":\"number of points\"}]},"
        "{\"value\":\"empty\",\"payloads\":[]}]");
    return 200;
}

int rb_metric_payload_options(const char *body, size_t len, buf_t *out) {
    yajl_val root;
    out->len = 0;
    if (parse_object(body, len, &root, out)) return 400;
    const char *name = str_at(root, "name", NULL);
    if (!name) {
        yajl_tree_free(root);
        return fail400(out, "name (the payload whose options are wanted) is missing or not a string");
    }
    bool first = true;
    lit(out, "[");
    if (strcmp(name, "series") == 0) {
        static const char *const v[] = {"1", "2", "3", "5", "10"};
        for (size_t i = 0; i < 5; i++) opt(out, v[i], strlen(v[i]), v[i], strlen(v[i]), &first);
    } else if (strcmp(name, "shape") == 0) {
        static const char *const v[] = {"sine", "table", "frame", "points", "empty"};
        for (size_t i = 0; i < 5; i++) opt(out, v[i], strlen(v[i]), v[i], strlen(v[i]), &first);
    } else {
        /* host -> host-0..host-2; anything else the same way */
        for (int i = 0; i < 3; i++) {
            char v[160];
            int n = snprintf(v, sizeof v, "%.140s-%d", name, i);
            opt(out, v, (size_t)n, v, (size_t)n, &first);
        }
    }
    lit(out, "]");
    yajl_tree_free(root);
    return 200;
}

int rb_variable(const char *body, size_t len, buf_t *out) {
    yajl_val root;
    out->len = 0;
    if (parse_object(body, len, &root, out)) return 400;
    const char *target = str_at(root, "payload", "target");
    if (!target) target = str_at(root, "target", NULL);
    if (!target || !*target) target = "host";
    /* "name:N" -> N values name-0..name-(N-1), else 3 */
    char name[128];
    size_t tl = strlen(target);
    const char *colon = strrchr(target, ':');
    uint64_t n = 3;
    size_t nl = tl;
    if (colon && parse_u64(colon + 1, tl - (size_t)(colon - target) - 1, &n)) nl = (size_t)(colon - target);
    if (n > 1000) n = 1000;
    if (nl > 100) nl = 100;
    memcpy(name, target, nl);
    name[nl] = 0;
    lit(out, "[");
    for (uint64_t i = 0; i < n; i++) {
        char v[160];
        int vl = snprintf(v, sizeof v, "%s-%llu", name, (unsigned long long)i);
        if (i) lit(out, ",");
        lit(out, "{\"__text\":");
        jsonw_string(out, v, (size_t)vl);
        lit(out, ",\"__value\":");
        jsonw_string(out, v, (size_t)vl);
        lit(out, ",\"text\":");
        jsonw_string(out, v, (size_t)vl);
        lit(out, ",\"value\":");
        jsonw_string(out, v, (size_t)vl);
        lit(out, "}");
    }
    lit(out, "]");
    yajl_tree_free(root);
    return 200;
}

int rb_tag_keys(const char *body, size_t len, buf_t *out) {
    yajl_val root;
    out->len = 0;
    if (parse_object(body, len, &root, out)) return 400;
    yajl_tree_free(root);
    lit(out, "[{\"type\":\"string\",\"text\":\"host\"},{\"type\":\"string\",\"text\":\"series\"},"
             "{\"type\":\"string\",\"text\":\"shape\"}]");
    return 200;
}

int rb_tag_values(const char *body, size_t len, buf_t *out) {
    yajl_val root;
    out->len = 0;
    if (parse_object(body, len, &root, out)) return 400;
    const char *key = str_at(root, "key", NULL);
    if (!key) {
        yajl_tree_free(root);
        return fail400(out, "key is missing or not a string");
    }
    if (strcmp(key, "host") == 0)
        lit(out, "[{\"text\":\"host-0\"},{\"text\":\"host-1\"},{\"text\":\"host-2\"}]");
    else if (strcmp(key, "series") == 0)
        lit(out, "[{\"text\":\"0\"},{\"text\":\"1\"},{\"text\":\"2\"},{\"text\":\"3\"},{\"text\":\"4\"}]");
    else if (strcmp(key, "shape") == 0)
        lit(out, "[{\"text\":\"sine\"},{\"text\":\"table\"},{\"text\":\"frame\"},{\"text\":\"points\"}]");
    else
        lit(out, "[]");
    yajl_tree_free(root);
    return 200;
}

int rb_search(const char *body, size_t len, buf_t *out) {
    static const char *const all[] = {"sine:1", "sine:3", "sine:10", "table:5", "frame:10", "points:100", "empty"};
    yajl_val root;
    out->len = 0;
    if (parse_object(body, len, &root, out)) return 400;
    const char *target = str_at(root, "target", NULL);
    lit(out, "[");
    bool first = true;
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        if (target && *target && !strstr(all[i], target)) continue;
        if (!first) lit(out, ",");
        first = false;
        jsonw_string(out, all[i], strlen(all[i]));
    }
    lit(out, "]");
    yajl_tree_free(root);
    return 200;
}

void rb_gen_cleanup(void) {
    free(g_tg);
    g_tg = NULL;
    g_tg_cap = 0;
    buf_free(&g_arena);
}
