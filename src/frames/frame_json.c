#include "frame_json.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_tree.h>

#include "../util/jsonw.h"
#include "../util/jtree.h"

/* ---- writing ---------------------------------------------------------- */

/* Shortest decimal that reads back as the same value, like Go's 'g' -1. */
static void put_float(buf_t *b, double v, bool single) {
    char tmp[40];
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*g", prec, v);
        double back = strtod(tmp, NULL);
        if (single ? (float)back == (float)v : back == v) break;
    }
    buf_puts(b, tmp);
}

static void put_value(buf_t *b, const frame_field *fld, size_t row) {
    size_t len;
    const char *s;
    switch (fld->type) {
    case FT_BOOL: buf_puts(b, field_get_bool(fld, row) ? "true" : "false"); break;
    case FT_STRING:
        s = field_get_bytes(fld, row, &len);
        jsonw_string(b, s, len);
        break;
    case FT_JSON:
        s = field_get_bytes(fld, row, &len);
        buf_append(b, s, len);
        break;
    case FT_FLOAT32: case FT_FLOAT64: {
        double v = field_get_float(fld, row);
        if (!isfinite(v)) buf_puts(b, "null");
        else put_float(b, v, fld->type == FT_FLOAT32);
        break;
    }
    case FT_TIME: {
        int64_t ns = field_get_int(fld, row);
        int64_t ms = ns / 1000000;
        if (ns % 1000000 < 0) ms--; /* floor, so the nanos remainder is >= 0 */
        buf_printf(b, "%lld", (long long)ms);
        break;
    }
    case FT_UINT8: case FT_UINT16: case FT_UINT32: case FT_UINT64: case FT_ENUM:
        buf_printf(b, "%llu", (unsigned long long)field_get_uint(fld, row));
        break;
    default: buf_printf(b, "%lld", (long long)field_get_int(fld, row)); break;
    }
}

static void put_entities(buf_t *b, const frame_field *fld) {
    static const char *const names[3] = {"NaN", "Inf", "NegInf"};
    bool any = false;
    for (int kind = 0; kind < 3; kind++) {
        bool first = true;
        for (size_t r = 0; r < fld->rows; r++) {
            if (field_is_null(fld, r)) continue;
            double v = field_get_float(fld, r);
            int k = isnan(v) ? 0 : (isinf(v) && v > 0) ? 1 : isinf(v) ? 2 : -1;
            if (k != kind) continue;
            if (first) {
                buf_printf(b, "%s\"%s\":[", any ? "," : "{", names[kind]);
                first = false;
                any = true;
            } else {
                buf_puts(b, ",");
            }
            buf_printf(b, "%zu", r);
        }
        if (!first) buf_puts(b, "]");
    }
    buf_puts(b, any ? "}" : "null");
}

static bool has_entities(const frame_field *fld) {
    if (fld->type != FT_FLOAT32 && fld->type != FT_FLOAT64) return false;
    for (size_t r = 0; r < fld->rows; r++)
        if (!field_is_null(fld, r) && !isfinite(field_get_float(fld, r))) return true;
    return false;
}

static bool has_nanos(const frame_field *fld) {
    if (fld->type != FT_TIME) return false;
    for (size_t r = 0; r < fld->rows; r++)
        if (!field_is_null(fld, r) && field_get_int(fld, r) % 1000000 != 0) return true;
    return false;
}

int frame_to_json(const frame_t *f, buf_t *b) {
    if (frame_rows(f) < 0) return -1;
    buf_puts(b, "{\"schema\":{");
    bool comma = false;
    if (f->name[0]) { buf_puts(b, "\"name\":"); jsonw_string(b, f->name, strlen(f->name)); comma = true; }
    if (f->ref_id[0]) {
        buf_puts(b, comma ? ",\"refId\":" : "\"refId\":");
        jsonw_string(b, f->ref_id, strlen(f->ref_id));
        comma = true;
    }
    if (f->meta_json) { buf_puts(b, comma ? ",\"meta\":" : "\"meta\":"); buf_puts(b, f->meta_json); comma = true; }
    buf_puts(b, comma ? ",\"fields\":[" : "\"fields\":[");
    for (size_t i = 0; i < f->nfields; i++) {
        const frame_field *fld = f->fields[i];
        if (i) buf_puts(b, ",");
        buf_puts(b, "{");
        if (fld->name[0]) { buf_puts(b, "\"name\":"); jsonw_string(b, fld->name, strlen(fld->name)); buf_puts(b, ","); }
        buf_printf(b, "\"type\":\"%s\",\"typeInfo\":{\"frame\":\"%s\"%s}", field_type_ts_name(fld->type),
                   field_type_go_name(fld->type), fld->nullable ? ",\"nullable\":true" : "");
        if (fld->labels_json) { buf_puts(b, ",\"labels\":"); buf_puts(b, fld->labels_json); }
        if (fld->config_json) { buf_puts(b, ",\"config\":"); buf_puts(b, fld->config_json); }
        buf_puts(b, "}");
    }
    buf_puts(b, "]},\"data\":{\"values\":[");
    bool any_entities = false, any_nanos = false;
    for (size_t i = 0; i < f->nfields; i++) {
        const frame_field *fld = f->fields[i];
        if (i) buf_puts(b, ",");
        buf_puts(b, "[");
        for (size_t r = 0; r < fld->rows; r++) {
            if (r) buf_puts(b, ",");
            if (field_is_null(fld, r)) buf_puts(b, "null");
            else put_value(b, fld, r);
        }
        buf_puts(b, "]");
        any_entities |= has_entities(fld);
        any_nanos |= has_nanos(fld);
    }
    buf_puts(b, "]");
    if (any_entities) {
        buf_puts(b, ",\"entities\":[");
        for (size_t i = 0; i < f->nfields; i++) {
            if (i) buf_puts(b, ",");
            if (has_entities(f->fields[i])) put_entities(b, f->fields[i]);
            else buf_puts(b, "null");
        }
        buf_puts(b, "]");
    }
    if (any_nanos) {
        buf_puts(b, ",\"nanos\":[");
        for (size_t i = 0; i < f->nfields; i++) {
            const frame_field *fld = f->fields[i];
            if (i) buf_puts(b, ",");
            if (!has_nanos(fld)) { buf_puts(b, "null"); continue; }
            buf_puts(b, "[");
            for (size_t r = 0; r < fld->rows; r++) {
                int64_t rem = field_is_null(fld, r) ? 0 : field_get_int(fld, r) % 1000000;
                if (rem < 0) rem += 1000000;
                buf_printf(b, "%s%lld", r ? "," : "", (long long)rem);
            }
            buf_puts(b, "]");
        }
        buf_puts(b, "]");
    }
    buf_puts(b, "}}");
    return buf_ok(b) ? 0 : -1;
}

/* ---- reading ---------------------------------------------------------- */

/* Appends the compact JSON text of any value of a jtree_parse tree (numbers
 * verbatim, strings with their length: NULs kept). */
static void json_value(const struct yajl_val_s *v, buf_t *b) {
    if (!v || YAJL_IS_NULL(v)) { buf_puts(b, "null"); return; }
    if (YAJL_IS_TRUE(v)) { buf_puts(b, "true"); return; }
    if (YAJL_IS_FALSE(v)) { buf_puts(b, "false"); return; }
    if (YAJL_IS_STRING(v)) { jsonw_string(b, v->u.string, jtree_string_len(v)); return; }
    if (YAJL_IS_NUMBER(v)) { buf_puts(b, v->u.number.r); return; }
    if (YAJL_IS_ARRAY(v)) {
        buf_puts(b, "[");
        for (size_t i = 0; i < v->u.array.len; i++) {
            if (i) buf_puts(b, ",");
            json_value(v->u.array.values[i], b);
        }
        buf_puts(b, "]");
        return;
    }
    buf_puts(b, "{");
    for (size_t i = 0; i < v->u.object.len; i++) {
        if (i) buf_puts(b, ",");
        jsonw_string(b, v->u.object.keys[i], strlen(v->u.object.keys[i]));
        buf_puts(b, ":");
        json_value(v->u.object.values[i], b);
    }
    buf_puts(b, "}");
}

/* Sorting (key, value) pairs of an object by key. */
typedef struct {
    const char *key;
    const char *value;
    size_t value_len;
} kv_pair;

static int cmp_pairs(const void *a, const void *b) {
    return strcmp(((const kv_pair *)a)->key, ((const kv_pair *)b)->key);
}

/* Appends the compact JSON of an object's string values with keys sorted,
 * the form Grafana uses for labels. */
static int json_labels(const struct yajl_val_s *obj, buf_t *b) {
    if (!YAJL_IS_OBJECT(obj)) return -1;
    size_t n = obj->u.object.len;
    kv_pair *pairs = malloc((n ? n : 1) * sizeof *pairs);
    if (!pairs) return -1;
    for (size_t i = 0; i < n; i++) {
        const struct yajl_val_s *v = obj->u.object.values[i];
        if (!YAJL_IS_STRING(v)) { free(pairs); return -1; }
        pairs[i] = (kv_pair){obj->u.object.keys[i], v->u.string, jtree_string_len(v)};
    }
    qsort(pairs, n, sizeof *pairs, cmp_pairs);
    buf_puts(b, "{");
    for (size_t i = 0; i < n; i++) {
        if (i) buf_puts(b, ",");
        jsonw_string(b, pairs[i].key, strlen(pairs[i].key));
        buf_puts(b, ":");
        jsonw_string(b, pairs[i].value, pairs[i].value_len);
    }
    buf_puts(b, "}");
    free(pairs);
    return buf_ok(b) ? 0 : -1;
}

static yajl_val get(yajl_val v, const char *key) {
    const char *path[] = {key, NULL};
    return v ? yajl_tree_get(v, path, yajl_t_any) : NULL;
}

/* Per row of field i: 1 NaN, 2 +Inf, 3 -Inf, 0 none, from data.entities.
 * NULL when the field has none; an index table keeps reading linear. */
static uint8_t *entity_rows(yajl_val entities, size_t field, size_t rows) {
    if (!YAJL_IS_ARRAY(entities) || field >= entities->u.array.len) return NULL;
    yajl_val e = entities->u.array.values[field];
    if (!YAJL_IS_OBJECT(e) || rows == 0) return NULL;
    uint8_t *kinds = calloc(rows, 1);
    if (!kinds) return NULL;
    static const char *const names[3] = {"NaN", "Inf", "NegInf"};
    for (int k = 0; k < 3; k++) {
        yajl_val list = get(e, names[k]);
        if (!YAJL_IS_ARRAY(list)) continue;
        for (size_t i = 0; i < list->u.array.len; i++) {
            yajl_val r = list->u.array.values[i];
            if (YAJL_IS_INTEGER(r) && YAJL_GET_INTEGER(r) >= 0 && (size_t)YAJL_GET_INTEGER(r) < rows)
                kinds[YAJL_GET_INTEGER(r)] = (uint8_t)(k + 1);
        }
    }
    return kinds;
}

static int append_json_value(frame_field *fld, yajl_val v, int entity, int64_t nanos, buf_t *tmp) {
    if (entity) return field_append_float(fld, entity == 1 ? NAN : entity == 2 ? INFINITY : -INFINITY);
    /* A raw JSON field holds the JSON value null as text when it cannot be null. */
    if (v && YAJL_IS_NULL(v) && fld->type == FT_JSON && !fld->nullable) return field_append_bytes(fld, "null", 4);
    if (!v || YAJL_IS_NULL(v)) return field_append_null(fld);
    errno = 0;
    char *end;
    switch (fld->type) {
    case FT_BOOL:
        if (!YAJL_IS_TRUE(v) && !YAJL_IS_FALSE(v)) return -1;
        return field_append_bool(fld, YAJL_IS_TRUE(v));
    case FT_STRING:
        if (!YAJL_IS_STRING(v)) return -1;
        return field_append_bytes(fld, v->u.string, jtree_string_len(v));
    case FT_JSON:
        tmp->len = 0;
        json_value(v, tmp);
        return buf_ok(tmp) ? field_append_bytes(fld, tmp->data, tmp->len) : -1;
    case FT_FLOAT32: case FT_FLOAT64: {
        if (!YAJL_IS_NUMBER(v)) return -1;
        double d = strtod(v->u.number.r, &end);
        return *end ? -1 : field_append_float(fld, d);
    }
    case FT_TIME: {
        if (!YAJL_IS_NUMBER(v)) return -1;
        long long ms = strtoll(v->u.number.r, &end, 10);
        if (*end || errno) return -1;
        /* ms * 10^6 + nanos may leave int64 halfway (INT64_MIN is written
         * as a floored ms plus a positive remainder): add in 128 bits. */
        __int128 t = (__int128)ms * 1000000 + nanos;
        if (t > INT64_MAX || t < INT64_MIN) return -1;
        return field_append_int(fld, (int64_t)t);
    }
    case FT_UINT8: case FT_UINT16: case FT_UINT32: case FT_UINT64: case FT_ENUM: {
        if (!YAJL_IS_NUMBER(v) || v->u.number.r[0] == '-') return -1;
        unsigned long long u = strtoull(v->u.number.r, &end, 10);
        if (*end || errno) return -1;
        return field_append_uint(fld, u);
    }
    default: {
        if (!YAJL_IS_NUMBER(v)) return -1;
        long long i = strtoll(v->u.number.r, &end, 10);
        if (*end || errno) return -1;
        return field_append_int(fld, i);
    }
    }
}

int frame_from_json(const char *text, frame_t **out, char *err, size_t errcap) {
    char perr[256];
    *out = NULL;
    yajl_val root = jtree_parse(text, strlen(text), perr, sizeof perr);
    if (!root) {
        snprintf(err, errcap, "not JSON: %s", perr);
        return -1;
    }
    int rc = -1;
    buf_t tmp;
    buf_init(&tmp);
    yajl_val schema = get(root, "schema"), data = get(root, "data");
    yajl_val fields = get(schema, "fields");
    yajl_val values = get(data, "values"), entities = get(data, "entities"), nanos = get(data, "nanos");
    if (!YAJL_IS_OBJECT(root) || !YAJL_IS_OBJECT(schema) || !YAJL_IS_ARRAY(fields)) {
        snprintf(err, errcap, "a JSON frame needs an object with schema.fields");
        goto done;
    }
    yajl_val name = get(schema, "name"), ref = get(schema, "refId"), meta = get(schema, "meta");
    frame_t *f = frame_new(YAJL_IS_STRING(name) ? name->u.string : "", YAJL_IS_STRING(ref) ? ref->u.string : "");
    if (!f) { snprintf(err, errcap, "out of memory"); goto done; }
    *out = f;
    if (meta && !YAJL_IS_NULL(meta)) {
        tmp.len = 0;
        json_value(meta, &tmp);
        if (!buf_ok(&tmp) || frame_set_meta(f, tmp.data) != 0) { snprintf(err, errcap, "out of memory"); goto done; }
    }
    for (size_t i = 0; i < fields->u.array.len; i++) {
        yajl_val fv = fields->u.array.values[i];
        yajl_val ti = get(fv, "typeInfo"), fname = get(fv, "name");
        yajl_val go = get(ti, "frame"), nullable = get(ti, "nullable");
        field_type t;
        if (!YAJL_IS_STRING(go) || field_type_from_go_name(go->u.string, &t) != 0) {
            snprintf(err, errcap, "field %zu: unknown typeInfo.frame", i);
            goto done;
        }
        frame_field *fld = frame_add_field(f, YAJL_IS_STRING(fname) ? fname->u.string : "", t, YAJL_IS_TRUE(nullable));
        if (!fld) { snprintf(err, errcap, "out of memory"); goto done; }
        yajl_val labels = get(fv, "labels"), config = get(fv, "config");
        if (labels && !YAJL_IS_NULL(labels)) {
            tmp.len = 0;
            if (json_labels(labels, &tmp) != 0 || field_set_labels(fld, tmp.data) != 0) {
                snprintf(err, errcap, "field %zu: labels must be an object of strings", i);
                goto done;
            }
        }
        if (config && !YAJL_IS_NULL(config)) {
            tmp.len = 0;
            json_value(config, &tmp);
            if (!buf_ok(&tmp) || field_set_config(fld, tmp.data) != 0) { snprintf(err, errcap, "out of memory"); goto done; }
        }
        yajl_val col = YAJL_IS_ARRAY(values) && i < values->u.array.len ? values->u.array.values[i] : NULL;
        if (!col) continue;
        if (!YAJL_IS_ARRAY(col)) { snprintf(err, errcap, "data.values[%zu] is not an array", i); goto done; }
        yajl_val ncol = YAJL_IS_ARRAY(nanos) && i < nanos->u.array.len ? nanos->u.array.values[i] : NULL;
        size_t rows = col->u.array.len;
        uint8_t *kinds = (t == FT_FLOAT32 || t == FT_FLOAT64) ? entity_rows(entities, i, rows) : NULL;
        for (size_t r = 0; r < rows; r++) {
            int64_t ns = 0;
            if (YAJL_IS_ARRAY(ncol) && r < ncol->u.array.len && YAJL_IS_INTEGER(ncol->u.array.values[r]))
                ns = YAJL_GET_INTEGER(ncol->u.array.values[r]);
            if (append_json_value(fld, col->u.array.values[r], kinds ? kinds[r] : 0, ns, &tmp) != 0) {
                snprintf(err, errcap, "field %zu (%s), row %zu: value does not fit type %s", i, fld->name, r,
                         field_type_go_name(t));
                free(kinds);
                goto done;
            }
        }
        free(kinds);
    }
    if (frame_rows(f) < 0) {
        snprintf(err, errcap, "fields have different numbers of values");
        goto done;
    }
    rc = 0;
done:
    if (rc != 0) { frame_free(*out); *out = NULL; }
    buf_free(&tmp);
    jtree_free(root);
    return rc;
}
