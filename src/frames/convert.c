/*
 * Streaming converter. yajl calls back per token; a small explicit state
 * machine knows where in the document it is (element, datapoint, column,
 * row, field, value). Values of unknown type are held back only as a count
 * of leading nulls until the first real value decides the column's type.
 * Sub-documents we keep verbatim (meta, config) are re-serialised from the
 * events; keys we do not know are skipped with a depth counter.
 */
#include "convert.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yajl/yajl_parse.h>

#include "../util/buf.h"
#include "../util/jsonw.h"

typedef enum { EV_NULL, EV_BOOL, EV_NUMBER, EV_STRING, EV_MAP_START, EV_KEY, EV_MAP_END, EV_ARR_START, EV_ARR_END } ev_type;

typedef struct {
    ev_type type;
    const char *s; /* number text, string, key */
    size_t len;
    int b;
} ev_t;

typedef enum {
    S_TOP, S_ELEMS, S_ELEM, S_POINTS, S_POINT, S_TAGS, S_COLUMNS, S_COLUMN,
    S_ROWS, S_ROW, S_FIELDS, S_FIELD, S_VALUES, S_DONE
} state_t;

typedef enum { K_NONE, K_SERIES, K_TABLE, K_FRAME } elem_kind;

/* A column of a table or a field of a data frame while values arrive. */
typedef struct {
    char *name;
    int declared;        /* field_type, or -1 when it must be inferred */
    frame_field *fld;    /* NULL until the type is known */
    size_t pending_nulls;/* nulls seen before the type was known */
    size_t count;        /* values appended (including nulls) */
    char *labels;
    char *config;
} column_t;

typedef struct {
    char *key;
    char *value;
} tag_t;

struct conv {
    yajl_handle h;
    char *ref_id;
    char *query;
    state_t state;
    int capture_depth;   /* >0: re-serialising a sub-document into `capture` */
    int skip_depth;      /* >0: skipping a value we do not use */
    buf_t capture;
    buf_t utf8;          /* scratch: a string made valid UTF-8 */
    int capture_for;     /* which slot receives the captured JSON */
    char key[32];        /* current key in an object we understand */
    bool key_pending;
    /* current element */
    size_t elem_index;
    elem_kind kind;
    char *target, *title, *unit, *frame_name, *meta;
    tag_t *tags;
    size_t ntags, tags_cap;
    char *tag_key;       /* key of the tag/label value that comes next */
    bool tags_for_field; /* S_TAGS is collecting a data-frame field's labels */
    frame_t *series;     /* K_SERIES: Time + Value being filled */
    size_t point_index, point_pos;
    double point_value;
    bool point_value_null, point_has_time;
    int64_t point_time;
    column_t *cols;
    size_t ncols, cols_cap;
    size_t row_index, cell_index, field_index;
    /* results */
    frame_t **frames;
    size_t nframes, frames_cap;
    uint64_t base_offset;
    bool failed;
    bool finished;
    char error[512];
};

enum { CAP_META = 1, CAP_CONFIG = 2, CAP_LABELS = 3 };

/* ---- errors ------------------------------------------------------------ */

__attribute__((format(printf, 2, 3))) static int fail(conv_t *c, const char *fmt, ...) {
    if (c->failed) return 0;
    c->failed = true;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->error, sizeof c->error, fmt, ap);
    va_end(ap);
    return 0; /* stops yajl */
}

static const char *ev_name(ev_type t) {
    switch (t) {
    case EV_NULL: return "null";
    case EV_BOOL: return "a boolean";
    case EV_NUMBER: return "a number";
    case EV_STRING: return "a string";
    case EV_MAP_START: return "an object";
    case EV_ARR_START: return "an array";
    default: return "end of container";
    }
}

/* ---- small helpers ------------------------------------------------------ */

static char *dupn(const char *s, size_t n) {
    char *d = malloc(n + 1);
    if (d) { memcpy(d, s, n); d[n] = '\0'; }
    return d;
}

static void set_str(char **slot, const char *s, size_t n) {
    free(*slot);
    *slot = dupn(s, n);
}

static bool key_is(const conv_t *c, const char *k) { return strcmp(c->key, k) == 0; }

static bool is_special_float(const char *s, size_t n, double *out) {
    char tmp[16];
    if (n == 0 || n >= sizeof tmp) return false;
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    if (!strcasecmp(tmp, "NaN")) { *out = NAN; return true; }
    if (!strcasecmp(tmp, "+Inf") || !strcasecmp(tmp, "Inf") || !strcasecmp(tmp, "Infinity") ||
        !strcasecmp(tmp, "+Infinity")) { *out = INFINITY; return true; }
    if (!strcasecmp(tmp, "-Inf") || !strcasecmp(tmp, "-Infinity")) { *out = -INFINITY; return true; }
    return false;
}

/* Plain decimals (at most 15 significant digits, no exponent) are the
 * common case: integer / 10^k is then exact in both operands, so one
 * correctly rounded division gives strtod's answer at a fraction of its cost. */
static bool fast_decimal(const char *s, size_t n, double *out) {
    static const double pow10[] = {1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10,
                                   1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
    size_t i = 0;
    bool neg = false;
    if (i < n && s[i] == '-') { neg = true; i++; }
    uint64_t m = 0;
    int digits = 0, frac = 0;
    bool dot = false;
    if (i == n) return false;
    for (; i < n; i++) {
        char c = s[i];
        if (c >= '0' && c <= '9') {
            if (digits || c != '0') digits++;
            if (digits > 15) return false;
            m = m * 10 + (uint64_t)(c - '0');
            if (dot) frac++;
        } else if (c == '.' && !dot) {
            dot = true;
        } else {
            return false; /* exponent or anything unusual: strtod */
        }
    }
    if (frac > 22) return false;
    double v = (double)m / pow10[frac];
    *out = neg ? -v : v;
    return true;
}

static int parse_double(const char *s, size_t n, double *out) {
    if (fast_decimal(s, n, out)) return 0;
    char tmp[64];
    if (n >= sizeof tmp) return -1;
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    char *end;
    *out = strtod(tmp, &end);
    return *end ? -1 : 0;
}

/* Epoch milliseconds (as JSON number text) to nanoseconds, exactly when integral. */
static int ms_text_to_ns(const char *s, size_t n, int64_t *ns) {
    /* Fast path: a plain integer of epoch milliseconds (today's have 13
     * digits); the range check keeps ms * 10^6 inside int64. */
    if (n > 0 && n <= 13 + (size_t)(s[0] == '-')) {
        size_t i = s[0] == '-';
        int64_t ms = 0;
        for (; i < n && s[i] >= '0' && s[i] <= '9'; i++) ms = ms * 10 + (s[i] - '0');
        if (i == n && n > (size_t)(s[0] == '-')) {
            if (ms > INT64_MAX / 1000000) return -1;
            *ns = (s[0] == '-' ? -ms : ms) * 1000000;
            return 0;
        }
    }
    char tmp[64];
    if (n >= sizeof tmp) return -1;
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    if (!strpbrk(tmp, ".eE")) {
        errno = 0;
        char *end;
        long long ms = strtoll(tmp, &end, 10);
        if (*end || errno || ms > INT64_MAX / 1000000 || ms < INT64_MIN / 1000000) return -1;
        *ns = (int64_t)ms * 1000000;
        return 0;
    }
    double ms;
    if (parse_double(s, n, &ms) != 0 || !isfinite(ms) || fabs(ms) > 9.2e12) return -1;
    *ns = (int64_t)llround(ms * 1e6);
    return 0;
}

static int days_from_civil(int y, unsigned m, unsigned d, int64_t *days) {
    y -= m <= 2;
    const int era = (y >= 0 ? y : y - 399) / 400;
    const unsigned yoe = (unsigned)(y - era * 400);
    const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    *days = (int64_t)era * 146097 + (int64_t)doe - 719468;
    return 0;
}

static int digits(const char *s, size_t n, size_t at, size_t count, int *out) {
    if (at + count > n) return -1;
    int v = 0;
    for (size_t i = 0; i < count; i++) {
        if (!isdigit((unsigned char)s[at + i])) return -1;
        v = v * 10 + (s[at + i] - '0');
    }
    *out = v;
    return 0;
}

int conv_parse_iso8601(const char *s, size_t n, int64_t *ns) {
    int y, mo, d, h = 0, mi = 0, sec = 0;
    if (digits(s, n, 0, 4, &y) || n < 10 || s[4] != '-' || digits(s, n, 5, 2, &mo) || s[7] != '-' ||
        digits(s, n, 8, 2, &d))
        return -1;
    if (mo < 1 || mo > 12 || d < 1 || d > 31) return -1;
    size_t i = 10;
    int64_t frac_ns = 0, offset_s = 0;
    if (i < n) {
        if (s[i] != 'T' && s[i] != 't' && s[i] != ' ') return -1;
        i++;
        if (digits(s, n, i, 2, &h) || i + 5 > n || s[i + 2] != ':' || digits(s, n, i + 3, 2, &mi)) return -1;
        i += 5;
        if (i < n && s[i] == ':') {
            if (digits(s, n, i + 1, 2, &sec)) return -1;
            i += 3;
        }
        if (h > 23 || mi > 59 || sec > 60) return -1;
        if (i < n && (s[i] == '.' || s[i] == ',')) {
            i++;
            int64_t scale = 100000000;
            size_t start = i;
            while (i < n && isdigit((unsigned char)s[i])) {
                frac_ns += (s[i] - '0') * scale;
                scale /= 10;
                i++;
            }
            if (i == start) return -1;
        }
        if (i < n && (s[i] == 'Z' || s[i] == 'z')) {
            i++;
        } else if (i < n && (s[i] == '+' || s[i] == '-')) {
            int oh, om = 0, sign = s[i] == '-' ? -1 : 1;
            if (digits(s, n, i + 1, 2, &oh)) return -1;
            i += 3;
            if (i < n && s[i] == ':') i++;
            if (i < n) {
                if (digits(s, n, i, 2, &om)) return -1;
                i += 2;
            }
            offset_s = sign * (oh * 3600 + om * 60);
        }
        if (i != n) return -1;
    }
    int64_t days;
    days_from_civil(y, (unsigned)mo, (unsigned)d, &days);
    int64_t secs = days * 86400 + h * 3600 + mi * 60 + sec - offset_s;
    /* Nanoseconds in int64 cover 1677-09-21 .. 2262-04-11. */
    if (secs > INT64_MAX / 1000000000 - 1 || secs < INT64_MIN / 1000000000 + 1) return -1;
    *ns = secs * 1000000000 + frac_ns;
    return 0;
}

static void reset_element(conv_t *c) {
    free(c->target); free(c->title); free(c->unit); free(c->frame_name); free(c->meta);
    c->target = c->title = c->unit = c->frame_name = c->meta = NULL;
    for (size_t i = 0; i < c->ntags; i++) { free(c->tags[i].key); free(c->tags[i].value); }
    c->ntags = 0;
    c->tags_for_field = false;
    for (size_t i = 0; i < c->ncols; i++) {
        /* fields not moved into a frame belong to c->series, freed below */
        free(c->cols[i].name); free(c->cols[i].labels); free(c->cols[i].config);
    }
    c->ncols = 0;
    frame_free(c->series);
    c->series = NULL;
    c->kind = K_NONE;
    c->point_index = c->row_index = c->field_index = 0;
}

/* ---- columns (table cells and frame values share this) --------------- */

static column_t *column_at(conv_t *c, size_t i) {
    while (c->ncols <= i) {
        if (c->ncols == c->cols_cap) {
            size_t cap = c->cols_cap ? c->cols_cap * 2 : 8;
            column_t *nc = realloc(c->cols, cap * sizeof *nc);
            if (!nc) return NULL;
            c->cols = nc;
            c->cols_cap = cap;
        }
        column_t *col = &c->cols[c->ncols++];
        memset(col, 0, sizeof *col);
        col->declared = -1;
    }
    return &c->cols[i];
}

static int declared_type(const char *s, size_t n) {
    struct { const char *name; field_type t; } names[] = {
        {"time", FT_TIME}, {"number", FT_FLOAT64}, {"string", FT_STRING}, {"boolean", FT_BOOL},
        {"bool", FT_BOOL}, {"float64", FT_FLOAT64}, {"int64", FT_FLOAT64}, {"time.Time", FT_TIME},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strlen(names[i].name) == n && strncasecmp(names[i].name, s, n) == 0) return names[i].t;
    return -1;
}

static bool time_like_name(const char *name) {
    return name && (!strcasecmp(name, "time") || !strcasecmp(name, "date") || !strcasecmp(name, "timestamp") ||
                    !strcasecmp(name, "datetime"));
}

/* Columns' fields live in a scratch frame while the element is open and
 * move into the element's frame when it ends. */
static frame_t *column_home(conv_t *c) {
    if (!c->series) c->series = frame_new("", c->ref_id);
    return c->series;
}

static int column_create(conv_t *c, column_t *col, field_type t) {
    frame_t *home = column_home(c);
    if (!home) return fail(c, "out of memory");
    col->fld = frame_add_field(home, col->name ? col->name : "", t, true);
    if (!col->fld) return fail(c, "out of memory");
    for (size_t i = 0; i < col->pending_nulls; i++)
        if (field_append_null(col->fld) != 0) return fail(c, "out of memory");
    return 1;
}

static const char *where_kind(const conv_t *c) { return c->kind == K_TABLE ? "column" : "field"; }

/* Appends one JSON scalar to a column, deciding its type on first sight. */
static int column_value(conv_t *c, size_t idx, const ev_t *e) {
    column_t *col = column_at(c, idx);
    if (!col) return fail(c, "out of memory");
    size_t row = col->count;
    col->count++;
    if (e->type == EV_MAP_START || e->type == EV_ARR_START)
        return fail(c, "element %zu, %s %zu (%s), row %zu: nested JSON is not supported here", c->elem_index,
                    where_kind(c), idx, col->name ? col->name : "", row);
    if (e->type == EV_NULL) {
        if (!col->fld) { col->pending_nulls++; return 1; }
        return field_append_null(col->fld) == 0 ? 1 : fail(c, "out of memory");
    }
    if (!col->fld) {
        int t = col->declared;
        if (t < 0) {
            int64_t ns;
            if (e->type == EV_NUMBER) t = time_like_name(col->name) ? FT_TIME : FT_FLOAT64;
            else if (e->type == EV_BOOL) t = FT_BOOL;
            else if (conv_parse_iso8601(e->s, e->len, &ns) == 0) t = FT_TIME;
            else {
                double d;
                t = is_special_float(e->s, e->len, &d) ? FT_FLOAT64 : FT_STRING;
            }
        }
        if (!column_create(c, col, (field_type)t)) return 0;
    }
    frame_field *f = col->fld;
    int r = -1;
    const char *want = "";
    switch (f->type) {
    case FT_TIME: {
        int64_t ns;
        want = "a time (epoch milliseconds or ISO-8601)";
        if (e->type == EV_NUMBER && ms_text_to_ns(e->s, e->len, &ns) == 0) r = field_append_int(f, ns);
        else if (e->type == EV_STRING && conv_parse_iso8601(e->s, e->len, &ns) == 0) r = field_append_int(f, ns);
        else goto mismatch;
        break;
    }
    case FT_FLOAT64: {
        double d;
        want = "a number";
        if (e->type == EV_NUMBER && parse_double(e->s, e->len, &d) == 0) r = field_append_float(f, d);
        else if (e->type == EV_STRING && is_special_float(e->s, e->len, &d)) r = field_append_float(f, d);
        else goto mismatch;
        break;
    }
    case FT_BOOL:
        want = "a boolean";
        if (e->type != EV_BOOL) goto mismatch;
        r = field_append_bool(f, e->b);
        break;
    default:
        want = "a string";
        if (e->type != EV_STRING) goto mismatch;
        r = field_append_bytes(f, e->s, e->len);
        break;
    }
    return r == 0 ? 1 : fail(c, "out of memory");
mismatch:
    return fail(c, "element %zu, %s %zu (%s), row %zu: expected %s, found %s", c->elem_index, where_kind(c), idx,
                col->name ? col->name : "", row, want, ev_name(e->type));
}

/* ---- element completion ------------------------------------------------- */

static int push_frame(conv_t *c, frame_t *f) {
    if (c->nframes == c->frames_cap) {
        size_t cap = c->frames_cap ? c->frames_cap * 2 : 4;
        frame_t **nf = realloc(c->frames, cap * sizeof *nf);
        if (!nf) { frame_free(f); return fail(c, "out of memory"); }
        c->frames = nf;
        c->frames_cap = cap;
    }
    c->frames[c->nframes++] = f;
    return 1;
}

static int cmp_tags(const void *a, const void *b) { return strcmp(((const tag_t *)a)->key, ((const tag_t *)b)->key); }

static char *labels_json(tag_t *tags, size_t n) {
    if (n > 1) qsort(tags, n, sizeof *tags, cmp_tags); /* qsort(NULL, 0) is UB */
    buf_t b;
    buf_init(&b);
    buf_puts(&b, "{");
    for (size_t i = 0; i < n; i++) {
        if (i) buf_puts(&b, ",");
        jsonw_string(&b, tags[i].key, strlen(tags[i].key));
        buf_puts(&b, ":");
        jsonw_string(&b, tags[i].value, strlen(tags[i].value));
    }
    buf_puts(&b, "}");
    if (!buf_ok(&b)) { buf_free(&b); return NULL; }
    return b.data;
}

static int finish_series(conv_t *c) {
    frame_t *f = c->series;
    c->series = NULL;
    const char *name = c->target ? c->target : "";
    free(f->name);
    f->name = strdup(name);
    frame_field *value = f->fields[1];
    if (c->ntags) {
        char *l = labels_json(c->tags, c->ntags);
        if (!l || field_set_labels(value, l) != 0) { free(l); frame_free(f); return fail(c, "out of memory"); }
        free(l);
    }
    if (c->unit || c->title) {
        buf_t b;
        buf_init(&b);
        buf_puts(&b, "{");
        if (c->unit) { buf_puts(&b, "\"unit\":"); jsonw_string(&b, c->unit, strlen(c->unit)); }
        if (c->title) {
            buf_puts(&b, c->unit ? ",\"displayNameFromDS\":" : "\"displayNameFromDS\":");
            jsonw_string(&b, c->title, strlen(c->title));
        }
        buf_puts(&b, "}");
        int r = buf_ok(&b) ? field_set_config(value, b.data) : -1;
        buf_free(&b);
        if (r != 0) { frame_free(f); return fail(c, "out of memory"); }
    }
    buf_t m;
    buf_init(&m);
    const char *q = c->query ? c->query : name;
    buf_puts(&m, "{\"type\":\"timeseries-multi\",\"typeVersion\":[0,1],\"executedQueryString\":");
    jsonw_string(&m, q, strlen(q));
    buf_puts(&m, "}");
    int r = (buf_ok(&m) && f->name) ? frame_set_meta(f, m.data) : -1;
    buf_free(&m);
    /* Data plane: ascending time. Backends do send points out of order. */
    if (r == 0) r = frame_sort_by(f, 0);
    if (r != 0) { frame_free(f); return fail(c, "out of memory"); }
    return push_frame(c, f);
}

/* Table or data frame: every column/field must have the same length. */
static int finish_columns(conv_t *c) {
    frame_t *home = column_home(c);
    if (!home) return fail(c, "out of memory");
    size_t rows = c->kind == K_TABLE ? c->row_index : 0;
    if (c->kind == K_FRAME)
        for (size_t i = 0; i < c->ncols; i++) if (c->cols[i].count > rows) rows = c->cols[i].count;
    frame_t *f = frame_new(c->kind == K_FRAME && c->frame_name ? c->frame_name : "", c->ref_id);
    if (!f) return fail(c, "out of memory");
    for (size_t i = 0; i < c->ncols; i++) {
        column_t *col = &c->cols[i];
        if (c->kind == K_FRAME && col->count != rows) {
            frame_free(f);
            return fail(c, "element %zu: field %zu (%s) has %zu values, other fields have %zu", c->elem_index, i,
                        col->name ? col->name : "", col->count, rows);
        }
        if (!col->fld) {
            /* All null (or no values): the declared type, else a nullable number. */
            if (!column_create(c, col, col->declared >= 0 ? (field_type)col->declared : FT_FLOAT64)) {
                frame_free(f);
                return 0;
            }
        }
        while (col->fld->rows < rows)
            if (field_append_null(col->fld) != 0) { frame_free(f); return fail(c, "out of memory"); }
        /* Move the field from the column home into the element's frame. */
        frame_field *moved = frame_add_field(f, "", FT_INT8, false);
        if (!moved) { frame_free(f); return fail(c, "out of memory"); }
        free(moved->name);
        *moved = *col->fld;
        memset(col->fld, 0, sizeof *col->fld);
        col->fld->name = NULL;
        col->fld = NULL;
        free(moved->name);
        moved->name = strdup(col->name ? col->name : "");
        if (col->labels) { moved->labels_json = col->labels; col->labels = NULL; }
        if (col->config) { moved->config_json = col->config; col->config = NULL; }
        if (!moved->name) { frame_free(f); return fail(c, "out of memory"); }
    }
    const char *meta = c->kind == K_FRAME ? c->meta : NULL;
    buf_t m;
    buf_init(&m);
    if (!meta && c->query) {
        buf_puts(&m, "{\"executedQueryString\":");
        jsonw_string(&m, c->query, strlen(c->query));
        buf_puts(&m, "}");
        meta = buf_ok(&m) ? m.data : NULL;
    }
    int r = meta ? frame_set_meta(f, meta) : 0;
    buf_free(&m);
    if (r != 0) { frame_free(f); return fail(c, "out of memory"); }
    return push_frame(c, f);
}

static int finish_element(conv_t *c) {
    int r;
    switch (c->kind) {
    case K_SERIES: r = finish_series(c); break;
    case K_TABLE: case K_FRAME: r = finish_columns(c); break;
    default:
        r = fail(c, "element %zu: unknown shape: expected \"datapoints\" (time series), \"columns\"/\"rows\" "
                    "(table) or \"fields\" (data frame)", c->elem_index);
    }
    reset_element(c);
    c->elem_index++;
    return r;
}

static int set_kind(conv_t *c, elem_kind k) {
    if (c->kind == K_NONE) {
        c->kind = k;
        if (k == K_SERIES) {
            c->series = frame_new("", c->ref_id);
            if (!c->series || !frame_add_field(c->series, "Time", FT_TIME, false) ||
                !frame_add_field(c->series, "Value", FT_FLOAT64, true))
                return fail(c, "out of memory");
        }
        return 1;
    }
    if (c->kind != k)
        return fail(c, "element %zu mixes shapes: only one of \"datapoints\", \"columns\"/\"rows\" and \"fields\" may appear",
                    c->elem_index);
    return 1;
}

/* ---- captured sub-documents ----------------------------------------------- */

static int deliver_capture(conv_t *c) {
    char *json = c->capture.data ? strdup(c->capture.data) : NULL;
    if (!buf_ok(&c->capture) || !json) { free(json); return fail(c, "out of memory"); }
    if (c->capture_for == CAP_META) {
        if (json[0] != '{') { free(json); return fail(c, "element %zu: meta must be an object", c->elem_index); }
        free(c->meta);
        c->meta = json;
    } else if (c->capture_for == CAP_CONFIG) {
        column_t *col = column_at(c, c->field_index);
        if (!col) { free(json); return fail(c, "out of memory"); }
        if (json[0] != '{') { free(json); return fail(c, "element %zu, field %zu: config must be an object", c->elem_index, c->field_index); }
        free(col->config);
        col->config = json;
    } else {
        free(json);
    }
    return 1;
}

static void capture_event(conv_t *c, const ev_t *e) {
    buf_t *b = &c->capture;
    bool after_value = b->len > 0 && b->data[b->len - 1] != '[' && b->data[b->len - 1] != '{' &&
                       b->data[b->len - 1] != ':';
    if (e->type != EV_MAP_END && e->type != EV_ARR_END && after_value) buf_puts(b, ",");
    switch (e->type) {
    case EV_NULL: buf_puts(b, "null"); break;
    case EV_BOOL: buf_puts(b, e->b ? "true" : "false"); break;
    case EV_NUMBER: buf_append(b, e->s, e->len); break;
    case EV_STRING: jsonw_string(b, e->s, e->len); break;
    case EV_KEY: jsonw_string(b, e->s, e->len); buf_puts(b, ":"); break;
    case EV_MAP_START: buf_puts(b, "{"); break;
    case EV_ARR_START: buf_puts(b, "["); break;
    case EV_MAP_END: buf_puts(b, "}"); break;
    case EV_ARR_END: buf_puts(b, "]"); break;
    }
}

static void start_capture(conv_t *c, int slot) {
    c->capture.len = 0;
    c->capture_for = slot;
    c->capture_depth = 0;
}

/* Returns true when the event was consumed by a skip or capture in progress. */
static bool route_nested(conv_t *c, const ev_t *e, int *rc) {
    *rc = 1;
    if (c->skip_depth > 0) {
        if (e->type == EV_MAP_START || e->type == EV_ARR_START) c->skip_depth++;
        else if (e->type == EV_MAP_END || e->type == EV_ARR_END) c->skip_depth--;
        return true;
    }
    if (c->capture_for) {
        capture_event(c, e);
        if (e->type == EV_MAP_START || e->type == EV_ARR_START) c->capture_depth++;
        else if (e->type == EV_MAP_END || e->type == EV_ARR_END) c->capture_depth--;
        if (c->capture_depth == 0 && e->type != EV_KEY) {
            *rc = deliver_capture(c);
            c->capture_for = 0;
        }
        return true;
    }
    return false;
}

/* A value we do not need: skip it whole. */
static int skip_value(conv_t *c, const ev_t *e) {
    if (e->type == EV_MAP_START || e->type == EV_ARR_START) c->skip_depth = 1;
    return 1;
}

/* ---- the state machine ---------------------------------------------------- */

static int str_value(conv_t *c, const ev_t *e, char **slot, const char *what) {
    if (e->type == EV_NULL) return 1;
    if (e->type != EV_STRING)
        return fail(c, "element %zu: %s must be a string, found %s", c->elem_index, what, ev_name(e->type));
    set_str(slot, e->s, e->len);
    return *slot ? 1 : fail(c, "out of memory");
}

static int on_elem_value(conv_t *c, const ev_t *e) {
    c->key_pending = false;
    if (key_is(c, "datapoints") || key_is(c, "points")) {
        if (!set_kind(c, K_SERIES)) return 0;
        if (e->type != EV_ARR_START)
            return fail(c, "element %zu: %s must be an array, found %s", c->elem_index, c->key, ev_name(e->type));
        c->state = S_POINTS;
        return 1;
    }
    if (key_is(c, "columns") || key_is(c, "rows")) {
        if (!set_kind(c, K_TABLE)) return 0;
        if (e->type != EV_ARR_START)
            return fail(c, "element %zu: %s must be an array, found %s", c->elem_index, c->key, ev_name(e->type));
        c->state = key_is(c, "columns") ? S_COLUMNS : S_ROWS;
        c->field_index = 0;
        return 1;
    }
    if (key_is(c, "fields")) {
        if (!set_kind(c, K_FRAME)) return 0;
        if (e->type != EV_ARR_START)
            return fail(c, "element %zu: fields must be an array, found %s", c->elem_index, ev_name(e->type));
        c->state = S_FIELDS;
        c->field_index = 0;
        return 1;
    }
    if (key_is(c, "tags")) {
        if (e->type == EV_NULL) return 1;
        if (e->type != EV_MAP_START)
            return fail(c, "element %zu: tags must be an object, found %s", c->elem_index, ev_name(e->type));
        c->state = S_TAGS;
        return 1;
    }
    if (key_is(c, "meta")) {
        if (e->type == EV_NULL) return 1;
        start_capture(c, CAP_META);
        int rc;
        route_nested(c, e, &rc);
        return rc;
    }
    if (key_is(c, "target")) return str_value(c, e, &c->target, "target");
    if (key_is(c, "title")) return str_value(c, e, &c->title, "title");
    if (key_is(c, "unit")) return str_value(c, e, &c->unit, "unit");
    if (key_is(c, "name")) return str_value(c, e, &c->frame_name, "name");
    if (key_is(c, "type")) {
        if (e->type == EV_STRING && e->len == 5 && memcmp(e->s, "table", 5) == 0) return set_kind(c, K_TABLE);
        return skip_value(c, e);
    }
    return skip_value(c, e);
}

static int add_tag(conv_t *c, const ev_t *e) {
    const char *key = c->tag_key ? c->tag_key : "";
    const char *v = e->s;
    size_t vl = e->len;
    if (e->type == EV_NULL) return 1;
    if (e->type == EV_BOOL) { v = e->b ? "true" : "false"; vl = strlen(v); }
    else if (e->type != EV_STRING && e->type != EV_NUMBER)
        return fail(c, "element %zu: label \"%.100s\" must be a string, number or boolean, found %s", c->elem_index,
                    key, ev_name(e->type));
    /* A repeated key: the last value wins, like a JSON object decoder. */
    for (size_t i = 0; i < c->ntags; i++)
        if (strcmp(c->tags[i].key, key) == 0) {
            set_str(&c->tags[i].value, v, vl);
            return c->tags[i].value ? 1 : fail(c, "out of memory");
        }
    if (c->ntags == c->tags_cap) {
        size_t cap = c->tags_cap ? c->tags_cap * 2 : 8;
        tag_t *nt = realloc(c->tags, cap * sizeof *nt);
        if (!nt) return fail(c, "out of memory");
        c->tags = nt;
        c->tags_cap = cap;
    }
    tag_t *t = &c->tags[c->ntags];
    t->key = strdup(key);
    t->value = dupn(v, vl);
    if (!t->key || !t->value) { free(t->key); free(t->value); return fail(c, "out of memory"); }
    c->ntags++;
    return 1;
}

static void clear_tags(conv_t *c) {
    for (size_t i = 0; i < c->ntags; i++) { free(c->tags[i].key); free(c->tags[i].value); }
    c->ntags = 0;
}

static int handle(conv_t *c, const ev_t *e) {
    int rc;
    if (route_nested(c, e, &rc)) return rc;
    switch (c->state) {
    case S_TOP:
        if (e->type != EV_ARR_START)
            return fail(c, "the response must be a JSON array of series, tables or frames; found %s", ev_name(e->type));
        c->state = S_ELEMS;
        return 1;
    case S_ELEMS:
        if (e->type == EV_ARR_END) { c->state = S_DONE; return 1; }
        if (e->type != EV_MAP_START)
            return fail(c, "element %zu: expected an object, found %s", c->elem_index, ev_name(e->type));
        c->state = S_ELEM;
        return 1;
    case S_ELEM:
        if (e->type == EV_KEY && !c->key_pending) {
            snprintf(c->key, sizeof c->key, "%.*s", (int)(e->len < sizeof c->key ? e->len : 0), e->s);
            c->key_pending = true;
            return 1;
        }
        if (e->type == EV_MAP_END) { c->state = S_ELEMS; return finish_element(c); }
        return on_elem_value(c, e);
    case S_POINTS:
        if (e->type == EV_ARR_END) { c->state = S_ELEM; return 1; }
        if (e->type != EV_ARR_START)
            return fail(c, "element %zu, datapoint %zu: expected [value, timestamp], found %s", c->elem_index,
                        c->point_index, ev_name(e->type));
        c->state = S_POINT;
        c->point_pos = 0;
        c->point_has_time = false;
        return 1;
    case S_POINT:
        if (e->type == EV_ARR_END) {
            if (!c->point_has_time)
                return fail(c, "element %zu, datapoint %zu: expected [value, timestamp], found %zu item(s)",
                            c->elem_index, c->point_index, c->point_pos);
            frame_field *t = c->series->fields[0], *v = c->series->fields[1];
            if (field_append_int(t, c->point_time) != 0 ||
                (c->point_value_null ? field_append_null(v) : field_append_float(v, c->point_value)) != 0)
                return fail(c, "out of memory");
            c->point_index++;
            c->state = S_POINTS;
            return 1;
        }
        if (e->type == EV_MAP_START || e->type == EV_ARR_START)
            return fail(c, "element %zu, datapoint %zu: item %zu must be a number, found %s", c->elem_index,
                        c->point_index, c->point_pos, ev_name(e->type));
        if (c->point_pos == 0) {
            double d = 0;
            c->point_value_null = e->type == EV_NULL;
            if (e->type == EV_NUMBER && parse_double(e->s, e->len, &d) == 0) c->point_value = d;
            else if (e->type == EV_STRING && is_special_float(e->s, e->len, &d)) c->point_value = d;
            else if (e->type != EV_NULL)
                return fail(c, "element %zu, datapoint %zu: value must be a number, null, \"NaN\", \"+Inf\" or "
                               "\"-Inf\", found %s", c->elem_index, c->point_index, ev_name(e->type));
        } else if (c->point_pos == 1) {
            int64_t ns;
            if (e->type == EV_NUMBER && ms_text_to_ns(e->s, e->len, &ns) == 0) c->point_time = ns;
            else if (e->type == EV_STRING && conv_parse_iso8601(e->s, e->len, &ns) == 0) c->point_time = ns;
            else
                return fail(c, "element %zu, datapoint %zu: timestamp must be epoch milliseconds, found %s",
                            c->elem_index, c->point_index, ev_name(e->type));
            c->point_has_time = true;
        }
        c->point_pos++;
        return 1;
    case S_TAGS:
        if (e->type == EV_KEY) {
            set_str(&c->tag_key, e->s, e->len);
            return c->tag_key ? 1 : fail(c, "out of memory");
        }
        if (e->type == EV_MAP_END) {
            if (!c->tags_for_field) { c->state = S_ELEM; return 1; }
            column_t *col = column_at(c, c->field_index);
            char *l = col ? labels_json(c->tags, c->ntags) : NULL;
            if (!l) return fail(c, "out of memory");
            free(col->labels);
            col->labels = l;
            clear_tags(c);
            c->tags_for_field = false;
            c->state = S_FIELD;
            return 1;
        }
        if (e->type == EV_MAP_START || e->type == EV_ARR_START)
            return fail(c, "element %zu: label \"%.100s\" must be a string, number or boolean, found %s",
                        c->elem_index, c->tag_key ? c->tag_key : "", ev_name(e->type));
        return add_tag(c, e);
    case S_COLUMNS:
        if (e->type == EV_ARR_END) { c->state = S_ELEM; return 1; }
        if (e->type == EV_STRING) {
            column_t *col = column_at(c, c->field_index++);
            if (!col) return fail(c, "out of memory");
            set_str(&col->name, e->s, e->len);
            return 1;
        }
        if (e->type != EV_MAP_START)
            return fail(c, "element %zu, column %zu: expected {\"text\", \"type\"}, found %s", c->elem_index,
                        c->field_index, ev_name(e->type));
        c->state = S_COLUMN;
        c->key_pending = false;
        return column_at(c, c->field_index) ? 1 : fail(c, "out of memory");
    case S_COLUMN:
    case S_FIELD: {
        column_t *col = column_at(c, c->field_index);
        if (!col) return fail(c, "out of memory");
        if (e->type == EV_KEY && !c->key_pending) {
            snprintf(c->key, sizeof c->key, "%.*s", (int)(e->len < sizeof c->key ? e->len : 0), e->s);
            c->key_pending = true;
            return 1;
        }
        if (e->type == EV_MAP_END) {
            c->field_index++;
            c->state = c->state == S_COLUMN ? S_COLUMNS : S_FIELDS;
            return 1;
        }
        c->key_pending = false;
        if (key_is(c, "text") || key_is(c, "name")) {
            if (e->type != EV_STRING && e->type != EV_NULL)
                return fail(c, "element %zu, %s %zu: %s must be a string", c->elem_index, where_kind(c),
                            c->field_index, c->key);
            if (e->type == EV_STRING) set_str(&col->name, e->s, e->len);
            return 1;
        }
        if (key_is(c, "type")) {
            if (e->type == EV_NULL) return 1;
            if (e->type != EV_STRING) return skip_value(c, e);
            int t = declared_type(e->s, e->len);
            if (t < 0)
                return fail(c, "element %zu, %s %zu (%s): unknown type \"%.*s\" (use time, number, string or boolean)",
                            c->elem_index, where_kind(c), c->field_index, col->name ? col->name : "",
                            (int)(e->len > 40 ? 40 : e->len), e->s);
            if (col->fld && col->fld->type != (field_type)t)
                return fail(c, "element %zu, %s %zu (%s): declared type %.*s after values of another type",
                            c->elem_index, where_kind(c), c->field_index, col->name ? col->name : "",
                            (int)e->len, e->s);
            col->declared = t;
            return 1;
        }
        if (c->state == S_FIELD && key_is(c, "values")) {
            if (e->type != EV_ARR_START)
                return fail(c, "element %zu, field %zu: values must be an array, found %s", c->elem_index,
                            c->field_index, ev_name(e->type));
            c->state = S_VALUES;
            return 1;
        }
        if (c->state == S_FIELD && key_is(c, "config")) {
            if (e->type == EV_NULL) return 1;
            start_capture(c, CAP_CONFIG);
            route_nested(c, e, &rc);
            return rc;
        }
        if (c->state == S_FIELD && key_is(c, "labels")) {
            if (e->type == EV_NULL) return 1;
            if (e->type != EV_MAP_START)
                return fail(c, "element %zu, field %zu: labels must be an object", c->elem_index, c->field_index);
            /* Labels reuse the tag collector, then land on the field. */
            clear_tags(c);
            c->tags_for_field = true;
            c->state = S_TAGS;
            return 1;
        }
        return skip_value(c, e);
    }
    case S_ROWS:
        if (e->type == EV_ARR_END) { c->state = S_ELEM; return 1; }
        if (e->type != EV_ARR_START)
            return fail(c, "element %zu, row %zu: expected an array of cells, found %s", c->elem_index, c->row_index,
                        ev_name(e->type));
        c->state = S_ROW;
        c->cell_index = 0;
        return 1;
    case S_ROW:
        if (e->type == EV_ARR_END) {
            c->row_index++;
            for (size_t i = 0; i < c->ncols; i++) /* short rows: missing cells are null */
                while (c->cols[i].count < c->row_index) {
                    ev_t null = {.type = EV_NULL};
                    if (!column_value(c, i, &null)) return 0;
                }
            c->state = S_ROWS;
            return 1;
        }
        {
            column_t *col = column_at(c, c->cell_index);
            if (!col) return fail(c, "out of memory");
            /* A long row: earlier rows of a new column were null. */
            while (col->count < c->row_index) {
                ev_t null = {.type = EV_NULL};
                if (!column_value(c, c->cell_index, &null)) return 0;
            }
        }
        if (!column_value(c, c->cell_index++, e)) return 0;
        return 1;
    case S_VALUES:
        if (e->type == EV_ARR_END) { c->state = S_FIELD; return 1; }
        return column_value(c, c->field_index, e);
    case S_FIELDS:
        if (e->type == EV_ARR_END) { c->state = S_ELEM; return 1; }
        if (e->type != EV_MAP_START)
            return fail(c, "element %zu, field %zu: expected an object, found %s", c->elem_index, c->field_index,
                        ev_name(e->type));
        c->state = S_FIELD;
        c->key_pending = false;
        return column_at(c, c->field_index) ? 1 : fail(c, "out of memory");
    case S_DONE:
        return fail(c, "unexpected data after the top-level array");
    }
    return fail(c, "internal error: bad state");
}

/* ---- yajl glue ------------------------------------------------------------ */

static int y_null(void *ctx) { return handle(ctx, &(ev_t){.type = EV_NULL}); }
static int y_bool(void *ctx, int b) { return handle(ctx, &(ev_t){.type = EV_BOOL, .b = b}); }
static int y_number(void *ctx, const char *s, size_t len) {
    return handle(ctx, &(ev_t){.type = EV_NUMBER, .s = s, .len = len});
}
/* yajl lets a lone surrogate escape (\udXXX) through as bytes that are not
 * UTF-8; Arrow Utf8 must be UTF-8, so such strings get U+FFFD instead. */
static const char *valid_utf8(conv_t *c, const unsigned char *s, size_t *len) {
    if (jsonw_utf8_valid((const char *)s, *len)) return (const char *)s;
    c->utf8.len = 0;
    jsonw_utf8_sanitize(&c->utf8, (const char *)s, *len);
    *len = c->utf8.len;
    return c->utf8.data ? c->utf8.data : "";
}

static int y_string(void *ctx, const unsigned char *s, size_t len) {
    const char *v = valid_utf8(ctx, s, &len);
    return handle(ctx, &(ev_t){.type = EV_STRING, .s = v, .len = len});
}
static int y_map_start(void *ctx) { return handle(ctx, &(ev_t){.type = EV_MAP_START}); }
static int y_key(void *ctx, const unsigned char *s, size_t len) {
    const char *k = valid_utf8(ctx, s, &len);
    return handle(ctx, &(ev_t){.type = EV_KEY, .s = k, .len = len});
}
static int y_map_end(void *ctx) { return handle(ctx, &(ev_t){.type = EV_MAP_END}); }
static int y_arr_start(void *ctx) { return handle(ctx, &(ev_t){.type = EV_ARR_START}); }
static int y_arr_end(void *ctx) { return handle(ctx, &(ev_t){.type = EV_ARR_END}); }

static const yajl_callbacks conv_callbacks = {
    y_null, y_bool, NULL, NULL, y_number, y_string, y_map_start, y_key, y_map_end, y_arr_start, y_arr_end,
};

conv_t *conv_new(const char *ref_id, const char *query) {
    conv_t *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->ref_id = strdup(ref_id ? ref_id : "");
    c->query = query ? strdup(query) : NULL;
    c->h = yajl_alloc(&conv_callbacks, NULL, c);
    if (!c->ref_id || (query && !c->query) || !c->h) { conv_free(c); return NULL; }
    buf_init(&c->capture);
    buf_init(&c->utf8);
    return c;
}

void conv_free(conv_t *c) {
    if (!c) return;
    reset_element(c);
    free(c->tags);
    free(c->tag_key);
    free(c->cols);
    for (size_t i = 0; i < c->nframes; i++) frame_free(c->frames[i]);
    free(c->frames);
    buf_free(&c->capture);
    buf_free(&c->utf8);
    if (c->h) yajl_free(c->h);
    free(c->ref_id);
    free(c->query);
    free(c);
}

const char *conv_error(const conv_t *c) { return c->failed ? c->error : NULL; }

/* Appends where parsing stopped to the error message. */
static void note_offset(conv_t *c, const uint8_t *data, size_t len, bool syntax) {
    size_t consumed = yajl_get_bytes_consumed(c->h);
    uint64_t at = c->base_offset + consumed;
    if (syntax) {
        unsigned char *msg = yajl_get_error(c->h, 0, data, len);
        char detail[160];
        snprintf(detail, sizeof detail, "%s", msg ? (const char *)msg : "syntax error");
        if (msg) yajl_free_error(c->h, msg);
        for (char *p = detail; *p; p++) if (*p == '\n') *p = ' ';
        c->failed = true;
        snprintf(c->error, sizeof c->error, "response is not valid JSON at byte %llu: %s", (unsigned long long)at,
                 detail);
        return;
    }
    size_t l = strlen(c->error);
    snprintf(c->error + l, sizeof c->error - l, " (at byte %llu)", (unsigned long long)at);
}

int conv_feed(conv_t *c, const uint8_t *data, size_t len) {
    if (c->failed) return -1;
    if (c->finished) return -1;
    yajl_status st = yajl_parse(c->h, data, len);
    if (st == yajl_status_client_canceled || (c->failed && st != yajl_status_ok)) {
        note_offset(c, data, len, false);
        return -1;
    }
    if (st == yajl_status_error) {
        note_offset(c, data, len, true);
        return -1;
    }
    c->base_offset += len;
    return 0;
}

int conv_finish(conv_t *c) {
    if (c->failed) return -1;
    c->finished = true;
    yajl_status st = yajl_complete_parse(c->h);
    if (c->failed) return -1;
    if (st != yajl_status_ok || c->state != S_DONE) {
        c->failed = true;
        if (c->state == S_TOP)
            snprintf(c->error, sizeof c->error, "empty response body: expected a JSON array");
        else
            snprintf(c->error, sizeof c->error,
                     "response ended early after %llu bytes (inside element %zu): truncated body?",
                     (unsigned long long)c->base_offset, c->elem_index);
        return -1;
    }
    return 0;
}

frame_t **conv_take_frames(conv_t *c, size_t *n) {
    if (c->failed || !c->finished) { *n = 0; return NULL; }
    frame_t **f = c->frames;
    *n = c->nframes;
    c->frames = NULL;
    c->nframes = c->frames_cap = 0;
    return f;
}
