#include "render.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "frames/frame_json.h"
#include "timeexpr.h"
#include "util/buf.h"
#include "util/jsonw.h"

/* ---- cells ------------------------------------------------------------------ */

/* Code points in a UTF-8 string (continuation bytes do not count). */
static size_t display_width(const char *s, size_t n) {
    size_t w = 0;
    for (size_t i = 0; i < n; i++)
        if (((unsigned char)s[i] & 0xC0) != 0x80) w++;
    return w;
}

/* Appends text with control bytes made visible, cut at RENDER_MAX_CELL
 * characters (with an ellipsis). */
static void put_text(buf_t *b, const char *s, size_t n) {
    size_t chars = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        bool starts_char = (c & 0xC0) != 0x80;
        if (starts_char) {
            if (chars == RENDER_MAX_CELL - 1 && display_width(s + i, n - i) > 1) {
                buf_puts(b, "\xE2\x80\xA6"); /* … */
                return;
            }
            chars++;
        }
        if (c == '\n') buf_puts(b, "\\n");
        else if (c == '\t') buf_puts(b, "\\t");
        else if (c == '\r') buf_puts(b, "\\r");
        else if (c < 0x20 || c == 0x7F) buf_printf(b, "\\x%02x", c);
        else buf_append(b, &s[i], 1);
    }
}

static void put_float(buf_t *b, double v) {
    if (isnan(v)) buf_puts(b, "NaN");
    else if (isinf(v)) buf_puts(b, v > 0 ? "+Inf" : "-Inf");
    else buf_printf(b, "%g", v);
}

static void format_cell(const frame_field *fld, size_t row, buf_t *b) {
    if (row >= fld->rows) return; /* a short column in a malformed frame: blank */
    if (field_is_null(fld, row)) {
        buf_puts(b, "null");
        return;
    }
    size_t len;
    const char *s;
    char tmp[64];
    switch (fld->type) {
    case FT_TIME:
        te_format_ns(field_get_int(fld, row), tmp, sizeof tmp);
        buf_puts(b, tmp);
        break;
    case FT_FLOAT32:
    case FT_FLOAT64: put_float(b, field_get_float(fld, row)); break;
    case FT_BOOL: buf_puts(b, field_get_bool(fld, row) ? "true" : "false"); break;
    case FT_STRING:
    case FT_JSON:
        s = field_get_bytes(fld, row, &len);
        put_text(b, s ? s : "", s ? len : 0);
        break;
    case FT_UINT8: case FT_UINT16: case FT_UINT32: case FT_UINT64: case FT_ENUM:
        buf_printf(b, "%llu", (unsigned long long)field_get_uint(fld, row));
        break;
    default: buf_printf(b, "%lld", (long long)field_get_int(fld, row)); break;
    }
}

static void format_header(const frame_field *fld, size_t idx, buf_t *b) {
    if (fld->name && *fld->name) put_text(b, fld->name, strlen(fld->name));
    else buf_printf(b, "(field %zu)", idx + 1);
    if (!fld->labels_json) return;
    json_t *j = json_loads(fld->labels_json, 0, NULL);
    if (json_is_object(j) && json_object_size(j)) {
        buf_puts(b, " {");
        const char *k;
        json_t *v;
        bool first = true;
        json_object_foreach(j, k, v) {
            if (!first) buf_puts(b, ", ");
            first = false;
            buf_printf(b, "%s=", k);
            if (json_is_string(v)) put_text(b, json_string_value(v), json_string_length(v));
            else {
                char *t = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
                if (t) buf_puts(b, t);
                free(t);
            }
        }
        buf_puts(b, "}");
    }
    json_decref(j);
}

/* ---- tables --------------------------------------------------------------------- */

static void pad(FILE *out, size_t n) {
    for (size_t i = 0; i < n; i++) fputc(' ', out);
}

void render_frame(FILE *out, const frame_t *f, size_t index, size_t count) {
    long long fr = frame_rows(f);
    size_t rows = 0;
    for (size_t i = 0; i < f->nfields; i++)
        if (f->fields[i]->rows > rows) rows = f->fields[i]->rows;

    char *type = NULL;
    if (f->meta_json) {
        json_t *m = json_loads(f->meta_json, 0, NULL);
        json_t *t = json_object_get(m, "type");
        if (json_is_string(t)) type = strdup(json_string_value(t));
        json_decref(m);
    }
    buf_t title;
    buf_init(&title);
    buf_printf(&title, "frame %zu/%zu", index + 1, count);
    if (f->name && *f->name) {
        buf_puts(&title, " \"");
        put_text(&title, f->name, strlen(f->name));
        buf_puts(&title, "\"");
    }
    if (type) buf_printf(&title, " [%s]", type);
    buf_printf(&title, ": %zu row%s, %zu field%s", rows, rows == 1 ? "" : "s", f->nfields,
               f->nfields == 1 ? "" : "s");
    if (fr < 0) buf_puts(&title, " (columns of different lengths)");
    fprintf(out, "%.*s\n", (int)title.len, title.data ? title.data : "");
    buf_free(&title);
    free(type);
    if (!f->nfields) return;

    /* Rows shown: all, or the head and the tail around an ellipsis line. */
    bool cut = rows > RENDER_HEAD_ROWS + RENDER_TAIL_ROWS;
    size_t nshow = cut ? RENDER_HEAD_ROWS + RENDER_TAIL_ROWS : rows;
    size_t *shown = calloc(nshow ? nshow : 1, sizeof *shown);
    size_t ncells = (nshow + 1) * f->nfields;
    buf_t *cells = calloc(ncells, sizeof *cells);
    size_t *width = calloc(f->nfields, sizeof *width);
    if (!shown || !cells || !width) {
        fprintf(out, "(out of memory rendering the frame)\n");
        free(shown);
        free(cells);
        free(width);
        return;
    }
    for (size_t i = 0; i < nshow; i++) shown[i] = (cut && i >= RENDER_HEAD_ROWS) ? rows - (nshow - i) : i;
    for (size_t c = 0; c < f->nfields; c++) {
        buf_t *h = &cells[c];
        buf_init(h);
        format_header(f->fields[c], c, h);
        width[c] = display_width(h->data ? h->data : "", h->len);
        for (size_t r = 0; r < nshow; r++) {
            buf_t *b = &cells[(r + 1) * f->nfields + c];
            buf_init(b);
            format_cell(f->fields[c], shown[r], b);
            size_t w = display_width(b->data ? b->data : "", b->len);
            if (w > width[c]) width[c] = w;
        }
    }
    for (size_t r = 0; r <= nshow; r++) {
        if (r == 1) { /* the rule under the header */
            for (size_t c = 0; c < f->nfields; c++) {
                for (size_t i = 0; i < width[c]; i++) fputc('-', out);
                if (c + 1 < f->nfields) fputs("  ", out);
            }
            fputc('\n', out);
        }
        if (cut && r == RENDER_HEAD_ROWS + 1)
            fprintf(out, "... %zu more rows ...\n", rows - nshow);
        for (size_t c = 0; c < f->nfields; c++) {
            buf_t *b = &cells[r * f->nfields + c];
            const char *s = b->data ? b->data : "";
            fwrite(s, 1, b->len, out);
            if (c + 1 < f->nfields) {
                pad(out, width[c] - display_width(s, b->len));
                fputs("  ", out);
            }
        }
        fputc('\n', out);
    }
    for (size_t i = 0; i < ncells; i++) buf_free(&cells[i]);
    free(cells);
    free(width);
    free(shown);
}

/* ---- responses ---------------------------------------------------------------- */

bool render_response_ok(const Pluginv2__DataResponse *r) {
    return r->status >= 200 && r->status < 300 && !(r->error && *r->error);
}

bool render_data_response(FILE *out, const char *ref_id, const Pluginv2__DataResponse *r) {
    bool ok = render_response_ok(r);
    fprintf(out, "%s: status %d", ref_id, r->status);
    if (r->status < 100 || r->status > 599) fprintf(out, " (not an HTTP status; Grafana reports 500)");
    if (r->n_frames) fprintf(out, ", %zu frame%s\n", r->n_frames, r->n_frames == 1 ? "" : "s");
    else fprintf(out, ", no frames%s\n", ok ? " (no data)" : "");
    if (r->error && *r->error) {
        fprintf(out, "  error: %s\n", r->error);
        fprintf(out, "  errorSource: %s\n", r->errorsource && *r->errorsource ? r->errorsource : "(unset: counts as plugin)");
    }
    for (size_t i = 0; i < r->n_frames; i++) {
        fputc('\n', out);
        if (r->format != PLUGINV2__DATA_FRAME_FORMAT__JSON) {
            fprintf(out, "frame %zu/%zu: Arrow-encoded (%zu bytes); gpxhost asked for JSON frames and reads only those\n",
                    i + 1, r->n_frames, r->frames[i].len);
            ok = false;
            continue;
        }
        char *text = malloc(r->frames[i].len + 1);
        if (!text) {
            fprintf(out, "frame %zu/%zu: out of memory\n", i + 1, r->n_frames);
            ok = false;
            continue;
        }
        if (r->frames[i].len) memcpy(text, r->frames[i].data, r->frames[i].len);
        text[r->frames[i].len] = '\0';
        frame_t *f = NULL;
        char err[256] = "";
        if (strlen(text) != r->frames[i].len || frame_from_json(text, &f, err, sizeof err) != 0) {
            fprintf(out, "frame %zu/%zu: not a readable JSON frame: %s\n", i + 1, r->n_frames,
                    err[0] ? err : "embedded NUL byte");
            ok = false;
        } else {
            render_frame(out, f, i, r->n_frames);
        }
        frame_free(f);
        free(text);
    }
    return ok;
}

static void json_response(buf_t *b, const char *ref_id, const Pluginv2__DataResponse *r) {
    jsonw_string(b, ref_id, strlen(ref_id));
    buf_printf(b, ":{\"status\":%d", r->status);
    if (r->error && *r->error) {
        buf_puts(b, ",\"error\":");
        jsonw_string(b, r->error, strlen(r->error));
        if (r->errorsource && *r->errorsource) {
            buf_puts(b, ",\"errorSource\":");
            jsonw_string(b, r->errorsource, strlen(r->errorsource));
        }
    }
    buf_puts(b, ",\"frames\":[");
    for (size_t i = 0; i < r->n_frames; i++) {
        if (i) buf_puts(b, ",");
        /* JSON frames go in verbatim, after a check that they are JSON. */
        json_t *j = r->format == PLUGINV2__DATA_FRAME_FORMAT__JSON
                        ? json_loadb((const char *)r->frames[i].data, r->frames[i].len, JSON_DECODE_ANY, NULL)
                        : NULL;
        if (j) buf_append(b, r->frames[i].data, r->frames[i].len);
        else buf_puts(b, "null");
        json_decref(j);
    }
    buf_puts(b, "]}");
}

bool render_query_json(FILE *out, const Pluginv2__QueryDataResponse *resp, const char *const *order, size_t norder) {
    bool ok = true;
    buf_t b;
    buf_init(&b);
    buf_puts(&b, "{\"results\":{");
    bool first = true;
    bool *used = calloc(resp->n_responses ? resp->n_responses : 1, sizeof *used);
    for (size_t o = 0; o <= norder; o++) {
        for (size_t i = 0; i < resp->n_responses; i++) {
            const Pluginv2__QueryDataResponse__ResponsesEntry *e = resp->responses[i];
            if (!e->key || !e->value || (used && used[i])) continue;
            if (o < norder && strcmp(e->key, order[o]) != 0) continue;
            if (used) used[i] = true;
            if (!first) buf_puts(&b, ",");
            first = false;
            json_response(&b, e->key, e->value);
            if (!render_response_ok(e->value)) ok = false;
        }
    }
    free(used);
    buf_puts(&b, "}}\n");
    if (buf_ok(&b)) fwrite(b.data, 1, b.len, out);
    else {
        fprintf(stderr, "gpxhost: out of memory writing the JSON response\n");
        ok = false;
    }
    buf_free(&b);
    return ok;
}
