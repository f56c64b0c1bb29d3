/*
 * QueryData: one POST <url>/query per query, all in flight at once up to
 * maxConcurrentQueries, each answer converted to frames while it streams
 * in. The response goes out when the last query ends. A failing query
 * only fails its own refId (status/error/errorSource per the contract); a
 * cancel or deadline aborts every fetch of the call at once.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "../fetch/fetch.h"
#include "../frames/arrow.h"
#include "../frames/convert.h"
#include "../frames/frame_json.h"
#include "../log/hclog.h"
#include "../util/buf.h"
#include "handlers.h"
#include "instance.h"
#include "pluginv2.pb-c.h"
#include "query.h"

#define ERR_BODY_KEEP 512

typedef struct qd_call qd_call;

typedef struct {
    qd_call *qc;
    const char *ref_id;
    qm_query model;
    fetch_req *fetch;
    conv_t *conv;
    int http_status;
    buf_t err_body;
    bool started, done;
    int status;
    char *error;
    const char *source;
    ProtobufCBinaryData *frames;
    size_t nframes;
    uint64_t started_ms;
    uint64_t timeout_ms;
    bool deadline_limited;
} qd_slot;

struct qd_call {
    call_t *call;
    hnd_env *env;
    inst_t *inst;
    Pluginv2__QueryDataRequest *req;
    qd_slot *slots;
    size_t n, next, running, pending;
    bool json_format;
    bool cancelled;
    bool answered;
    fetch_header *headers; /* instance headers + forwarded OAuth headers */
    size_t nheaders;
};

static void start_more(qd_call *qc);
static void maybe_answer(qd_call *qc);

static void slot_fail(qd_slot *s, int status, const char *source, const char *msg) {
    s->status = status;
    s->source = source;
    free(s->error);
    s->error = strdup(msg);
}

static void slot_done(qd_slot *s) {
    qd_call *qc = s->qc;
    if (s->done) return;
    s->done = true;
    if (s->started) qc->running--;
    qc->pending--;
    conv_free(s->conv);
    s->conv = NULL;
    LOG_DEBUG("query finished", HKV_S("refId", s->ref_id), HKV_I("status", s->status),
              HKV_I("durationMs", s->started ? (int64_t)(uv_now(call_loop(qc->call)) - s->started_ms) : 0));
    if (!qc->cancelled) start_more(qc);
    maybe_answer(qc);
}

/* The body of a non-2xx answer, in a sentence: its "error"/"message" field
 * when it is JSON, else its first bytes. */
static void describe_http_error(qd_slot *s, char *out, size_t cap) {
    const char *detail = NULL;
    json_t *j = s->err_body.len ? json_loadb(s->err_body.data, s->err_body.len, 0, NULL) : NULL;
    if (json_is_object(j)) {
        json_t *e = json_object_get(j, "error");
        if (!json_is_string(e)) e = json_object_get(j, "message");
        if (json_is_string(e)) detail = json_string_value(e);
    }
    char snippet[ERR_BODY_KEEP + 1];
    if (!detail && s->err_body.len) {
        size_t n = s->err_body.len < ERR_BODY_KEEP ? s->err_body.len : ERR_BODY_KEEP;
        for (size_t i = 0; i < n; i++) {
            unsigned char c = (unsigned char)s->err_body.data[i];
            snippet[i] = (c < 0x20 || c == 0x7F) ? ' ' : (char)c;
        }
        snippet[n] = '\0';
        detail = snippet;
    }
    snprintf(out, cap, "the backend answered HTTP %d%s%.400s", s->http_status, detail ? ": " : "",
             detail ? detail : "");
    json_decref(j);
}

static void collect_frames(qd_slot *s) {
    size_t n;
    frame_t **frames = conv_take_frames(s->conv, &n);
    s->frames = calloc(n ? n : 1, sizeof *s->frames);
    if (!s->frames) {
        slot_fail(s, 500, "plugin", "out of memory encoding frames");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        buf_t b;
        buf_init(&b);
        int r = s->qc->json_format ? frame_to_json(frames[i], &b) : arrow_write_frame(frames[i], &b);
        if (r != 0 || !buf_ok(&b)) {
            buf_free(&b);
            slot_fail(s, 500, "plugin", "out of memory encoding frames");
            goto out;
        }
        s->frames[s->nframes].data = (uint8_t *)b.data;
        s->frames[s->nframes].len = b.len;
        s->nframes++;
    }
    s->status = 200;
out:
    for (size_t i = 0; i < n; i++) frame_free(frames[i]);
    free(frames);
}

static int on_response(void *arg, int status, const char *content_type) {
    (void)content_type;
    qd_slot *s = arg;
    s->http_status = status;
    if (status >= 200 && status < 300) {
        s->conv = conv_new(s->ref_id, s->model.target);
        if (!s->conv) return -1;
    }
    return 0;
}

static int on_body(void *arg, const uint8_t *data, size_t len) {
    qd_slot *s = arg;
    if (s->conv) return conv_feed(s->conv, data, len) == 0 ? 0 : -1;
    size_t room = s->err_body.len < ERR_BODY_KEEP ? ERR_BODY_KEEP - s->err_body.len : 0;
    buf_append(&s->err_body, data, len < room ? len : room);
    return 0;
}

static void on_done(void *arg, fetch_error err, const char *msg) {
    qd_slot *s = arg;
    qd_call *qc = s->qc;
    s->fetch = NULL;
    char text[1024];
    if (qc->env->backend && err != FETCH_E_ABORTED)
        bstats_record(qc->env->backend, EP_QUERY, err, s->http_status, uv_now(call_loop(qc->call)) - s->started_ms);
    if (qc->cancelled) {
        slot_fail(s, 499, "downstream", "the query was cancelled");
    } else if (s->conv && conv_error(s->conv)) {
        snprintf(text, sizeof text, "the backend's answer could not be read: %s", conv_error(s->conv));
        slot_fail(s, 502, "downstream", text);
    } else if (err == FETCH_OK) {
        if (s->http_status >= 200 && s->http_status < 300) {
            if (conv_finish(s->conv) == 0) collect_frames(s);
            else {
                snprintf(text, sizeof text, "the backend's answer could not be read: %s", conv_error(s->conv));
                slot_fail(s, 502, "downstream", text);
            }
        } else {
            describe_http_error(s, text, sizeof text);
            slot_fail(s, s->http_status >= 500 ? 502 : (s->http_status >= 400 ? s->http_status : 502), "downstream", text);
        }
    } else if (err == FETCH_E_TIMEOUT) {
        if (s->deadline_limited && strstr(msg, "within"))
            snprintf(text, sizeof text, "the query's deadline expired after %llu ms (%s)",
                     (unsigned long long)s->timeout_ms, msg);
        else if (strstr(msg, "within"))
            snprintf(text, sizeof text, "%s: the data source timeout is %llu s (raise \"timeout\" in the data source settings)",
                     msg, (unsigned long long)(qc->inst->timeout_ms / 1000));
        else
            snprintf(text, sizeof text, "%s", msg);
        slot_fail(s, 504, "downstream", text);
    } else if (err == FETCH_E_TOO_LARGE) {
        snprintf(text, sizeof text, "%s; raise %s", msg,
                 qc->inst->response_limit_from_grafana ? "GF_RESPONSE_LIMIT ([dataproxy] response_limit in grafana.ini)"
                                                       : "maxResponseBytes in the data source settings");
        slot_fail(s, 502, "downstream", text);
    } else if (err == FETCH_E_NOMEM) {
        slot_fail(s, 500, "plugin", msg);
    } else if (inst_tls_hint(err)) {
        snprintf(text, sizeof text, "%s: %s", msg, inst_tls_hint(err));
        slot_fail(s, 502, "downstream", text);
    } else {
        slot_fail(s, 502, "downstream", msg);
    }
    slot_done(s);
}

static const fetch_handler query_handler = {on_response, on_body, on_done};

static void start_slot(qd_call *qc, qd_slot *s) {
    s->started = true;
    qc->running++;
    s->started_ms = uv_now(call_loop(qc->call));
    s->timeout_ms = qc->inst->timeout_ms;
    int64_t left = call_remaining_ms(qc->call);
    if (left >= 0) {
        /* End a little before the gRPC deadline so each refId can still be
         * told why (504) instead of the whole call failing: a tenth of what
         * is left, at most 250 ms (50 ms was too little on a loaded host). */
        int64_t margin = left / 10 < 250 ? left / 10 : 250;
        left -= margin;
    }
    if (left >= 0 && (uint64_t)left < s->timeout_ms) {
        s->timeout_ms = left > 0 ? (uint64_t)left : 1;
        s->deadline_limited = true;
    }
    fetch_request rq = {.method = "POST", .path = "query", .headers = qc->headers, .nheaders = qc->nheaders,
                        .body = (const uint8_t *)s->model.body, .body_len = strlen(s->model.body),
                        .timeout_ms = s->timeout_ms};
    s->fetch = fetch_start(qc->inst->pool, &rq, &query_handler, s);
    if (!s->fetch) {
        slot_fail(s, 500, "plugin", "out of memory starting the request");
        slot_done(s);
    }
}

static void start_more(qd_call *qc) {
    if (!qc->inst || qc->inst->problem) return; /* every query already failed */
    while (!qc->cancelled && qc->next < qc->n && qc->running < qc->inst->max_concurrent) {
        qd_slot *s = &qc->slots[qc->next++];
        if (!s->done) start_slot(qc, s);
    }
}

static void qd_free(qd_call *qc) {
    for (size_t i = 0; i < qc->n; i++) {
        qd_slot *s = &qc->slots[i];
        qm_free(&s->model);
        conv_free(s->conv);
        buf_free(&s->err_body);
        free(s->error);
        for (size_t k = 0; k < s->nframes; k++) free(s->frames[k].data);
        free(s->frames);
    }
    free(qc->slots);
    free(qc->headers);
    if (qc->inst) inst_release(qc->inst);
    if (qc->req) protobuf_c_message_free_unpacked(&qc->req->base, NULL);
    free(qc);
}

static void answer(qd_call *qc) {
    size_t n = qc->n;
    Pluginv2__DataResponse *resp = calloc(n ? n : 1, sizeof *resp);
    Pluginv2__QueryDataResponse__ResponsesEntry *entries = calloc(n ? n : 1, sizeof *entries);
    Pluginv2__QueryDataResponse__ResponsesEntry **ptrs = calloc(n ? n : 1, sizeof *ptrs);
    if (!resp || !entries || !ptrs) {
        call_finish(qc->call, GRPC_RESOURCE_EXHAUSTED, "out of memory building the response");
    } else {
        for (size_t i = 0; i < n; i++) {
            qd_slot *s = &qc->slots[i];
            pluginv2__data_response__init(&resp[i]);
            resp[i].status = s->status;
            resp[i].n_frames = s->nframes;
            resp[i].frames = s->frames;
            if (s->error) {
                resp[i].error = s->error;
                resp[i].errorsource = (char *)s->source;
            }
            if (qc->json_format) resp[i].format = PLUGINV2__DATA_FRAME_FORMAT__JSON;
            pluginv2__query_data_response__responses_entry__init(&entries[i]);
            entries[i].key = (char *)s->ref_id;
            entries[i].value = &resp[i];
            ptrs[i] = &entries[i];
        }
        Pluginv2__QueryDataResponse out = PLUGINV2__QUERY_DATA_RESPONSE__INIT;
        out.n_responses = n;
        out.responses = ptrs;
        call_reply(qc->call, &out.base);
    }
    free(resp);
    free(entries);
    free(ptrs);
}

static void maybe_answer(qd_call *qc) {
    if (qc->pending > 0 || qc->answered) return;
    qc->answered = true;
    if (qc->cancelled) call_finish(qc->call, GRPC_CANCELLED, NULL);
    else answer(qc);
    qd_free(qc);
}

static void on_cancel(call_t *call, void *arg) {
    (void)call;
    qd_call *qc = arg;
    qc->cancelled = true;
    qc->pending++; /* hold the answer until every abort has run */
    for (size_t i = 0; i < qc->n; i++) {
        qd_slot *s = &qc->slots[i];
        if (s->done) continue;
        if (s->fetch) fetch_abort(s->fetch); /* runs on_done → slot_done */
        else { slot_fail(s, 499, "downstream", "the query was cancelled"); slot_done(s); }
    }
    qc->pending--;
    maybe_answer(qc);
}

static const char *header_value(const Pluginv2__QueryDataRequest *req, const char *name) {
    char prefixed[64];
    snprintf(prefixed, sizeof prefixed, "http_%s", name);
    for (size_t i = 0; i < req->n_headers; i++)
        if (!strcasecmp(req->headers[i]->key, name) || !strcasecmp(req->headers[i]->key, prefixed))
            return req->headers[i]->value;
    return NULL;
}

static int build_headers(qd_call *qc) {
    inst_t *in = qc->inst;
    qc->headers = calloc(in->nheaders + 2, sizeof *qc->headers);
    if (!qc->headers) return -1;
    for (size_t i = 0; i < in->nheaders; i++) qc->headers[qc->nheaders++] = in->headers[i];
    if (in->oauth_pass_thru) {
        static const char *const fwd[] = {"Authorization", "X-Id-Token"};
        for (size_t i = 0; i < 2; i++) {
            const char *v = header_value(qc->req, fwd[i]);
            if (v && *v) qc->headers[qc->nheaders++] = (fetch_header){fwd[i], v};
        }
    }
    return 0;
}

void hnd_query_data(call_t *call, void *arg) {
    hnd_env *env = arg;
    Pluginv2__QueryDataRequest *req =
        (Pluginv2__QueryDataRequest *)hnd_unpack(call, &pluginv2__query_data_request__descriptor);
    if (!req) return;
    qd_call *qc = calloc(1, sizeof *qc);
    if (qc) qc->slots = calloc(req->n_queries ? req->n_queries : 1, sizeof *qc->slots);
    if (!qc || !qc->slots) {
        free(qc);
        protobuf_c_message_free_unpacked(&req->base, NULL);
        call_finish(call, GRPC_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    qc->call = call;
    qc->env = env;
    qc->req = req;
    qc->n = qc->pending = req->n_queries;
    qc->json_format = req->format == PLUGINV2__DATA_FRAME_FORMAT__JSON;
    qc->inst = inst_get(env->instances, req->plugincontext);
    char msg[512];
    const char *problem = inst_problem(qc->inst);
    if (!problem && build_headers(qc) != 0) problem = "out of memory";
    for (size_t i = 0; i < qc->n; i++) {
        qd_slot *s = &qc->slots[i];
        s->qc = qc;
        s->ref_id = req->queries[i]->refid ? req->queries[i]->refid : "";
        buf_init(&s->err_body);
        s->status = 200;
        if (problem) { slot_fail(s, 400, "plugin", problem); s->done = true; qc->pending--; continue; }
        if (qm_build(req->queries[i], &s->model, msg, sizeof msg) != 0) {
            slot_fail(s, 400, "downstream", msg);
            s->done = true;
            qc->pending--;
        } else if (s->model.hide) {
            s->done = true;
            qc->pending--;
        }
    }
    LOG_DEBUG("query data", HKV_I("queries", (int64_t)qc->n), HKV_I("fetches", (int64_t)qc->pending),
              HKV_S("fromAlert", header_value(req, "FromAlert") ? "true" : "false"));
    call_on_cancel(call, on_cancel, qc);
    qc->pending++; /* the answer waits until every query has been started */
    start_more(qc);
    qc->pending--;
    maybe_answer(qc);
}
