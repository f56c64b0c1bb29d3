/*
 * CheckHealth: GET <url>/ and say in one sentence what is wrong and which
 * setting fixes it; details carry the URL and the measured latency.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "../fetch/fetch.h"
#include "../log/hclog.h"
#include "../util/buf.h"
#include "../util/jsonw.h"
#include "handlers.h"
#include "instance.h"
#include "pluginv2.pb-c.h"

typedef struct {
    call_t *call;
    hnd_env *env;
    inst_t *inst;
    fetch_req *fetch;
    int http_status;
    char body[512];
    size_t body_len;
    uint64_t started_ms;
    bool cancelled;
} health_job;

static void reply(call_t *call, int status, const char *msg, const char *url, int64_t latency_ms, int http_status) {
    Pluginv2__CheckHealthResponse resp = PLUGINV2__CHECK_HEALTH_RESPONSE__INIT;
    resp.status = status;
    resp.message = (char *)msg;
    /* Details are a small flat object: written directly (this runs per call). */
    buf_t d;
    buf_init(&d);
    buf_puts(&d, "{\"url\":");
    jsonw_string(&d, url ? url : "", url ? strlen(url) : 0);
    if (latency_ms >= 0) buf_printf(&d, ",\"latencyMs\":%lld", (long long)latency_ms);
    if (http_status > 0) buf_printf(&d, ",\"httpStatus\":%d", http_status);
    if (status != PLUGINV2__CHECK_HEALTH_RESPONSE__HEALTH_STATUS__OK && (!url || !*url)) buf_puts(&d, ",\"setting\":\"url\"");
    buf_puts(&d, "}");
    if (buf_ok(&d)) {
        resp.jsondetails.data = (uint8_t *)d.data;
        resp.jsondetails.len = d.len;
    }
    LOG_DEBUG("health checked", HKV_I("status", status), HKV_I("latencyMs", latency_ms));
    call_reply(call, &resp.base);
    buf_free(&d);
}

static int on_response(void *arg, int status, const char *ct) {
    (void)ct;
    ((health_job *)arg)->http_status = status;
    return 0;
}

static int on_body(void *arg, const uint8_t *d, size_t n) {
    health_job *j = arg;
    size_t room = sizeof j->body - 1 - j->body_len;
    if (n > room) n = room;
    memcpy(j->body + j->body_len, d, n);
    j->body_len += n;
    j->body[j->body_len] = '\0';
    return 0;
}

/* The "error"/"message" of a JSON body, else its first printable bytes. */
static void body_detail(const health_job *j, char *out, size_t cap) {
    out[0] = '\0';
    json_t *b = json_loadb(j->body, j->body_len, 0, NULL);
    json_t *m = json_is_object(b) ? json_object_get(b, "error") : NULL;
    if (!json_is_string(m) && json_is_object(b)) m = json_object_get(b, "message");
    if (json_is_string(m)) snprintf(out, cap, "%s", json_string_value(m));
    else {
        size_t o = 0;
        for (size_t i = 0; i < j->body_len && o + 1 < cap && i < 200; i++)
            out[o++] = (j->body[i] < 0x20 || j->body[i] == 0x7F) ? ' ' : j->body[i];
        out[o] = '\0';
    }
    json_decref(b);
}

static void on_done(void *arg, fetch_error err, const char *msg) {
    health_job *j = arg;
    const char *url = j->inst->url;
    int64_t latency = (int64_t)(uv_now(call_loop(j->call)) - j->started_ms);
    char text[1024], detail[256];
    int st = PLUGINV2__CHECK_HEALTH_RESPONSE__HEALTH_STATUS__ERROR;
    if (j->env->backend && err != FETCH_E_ABORTED) bstats_record(j->env->backend, EP_HEALTH, err, j->http_status, (uint64_t)latency);
    if (j->cancelled) {
        call_finish(j->call, GRPC_CANCELLED, NULL);
        goto out;
    }
    switch (err) {
    case FETCH_OK:
        body_detail(j, detail, sizeof detail);
        if (j->http_status >= 200 && j->http_status < 300) {
            st = PLUGINV2__CHECK_HEALTH_RESPONSE__HEALTH_STATUS__OK;
            snprintf(text, sizeof text, "Data source is working: %s answered HTTP %d in %lld ms", url, j->http_status,
                     (long long)latency);
        } else if (j->http_status == 401 || j->http_status == 403) {
            snprintf(text, sizeof text,
                     "the backend refused the request with HTTP %d: check credentials (basic auth user and password, "
                     "custom headers, or forward OAuth identity)%s%s",
                     j->http_status, detail[0] ? ": " : "", detail);
        } else {
            snprintf(text, sizeof text, "the backend answered HTTP %d%s%s", j->http_status, detail[0] ? ": " : "",
                     detail);
        }
        break;
    case FETCH_E_DNS:
        snprintf(text, sizeof text, "%s: check the host name in the URL", msg);
        break;
    case FETCH_E_TIMEOUT:
        snprintf(text, sizeof text, "%s: check the URL and any firewall in between, or raise \"timeout\"", msg);
        break;
    case FETCH_E_TLS_UNKNOWN_CA:
    case FETCH_E_TLS_NAME:
    case FETCH_E_TLS_EXPIRED:
    case FETCH_E_TLS_CLIENT_CERT:
        snprintf(text, sizeof text, "%s: %s", msg, inst_tls_hint(err));
        break;
    case FETCH_E_PROXY:
        snprintf(text, sizeof text, "proxy failure, the backend was not reached: %s", msg);
        break;
    default:
        snprintf(text, sizeof text, "%s", msg);
        break;
    }
    reply(j->call, st, text, url, latency, j->http_status);
out:
    inst_release(j->inst);
    free(j);
}

static const fetch_handler health_handler = {on_response, on_body, on_done};

static void on_cancel(call_t *call, void *arg) {
    (void)call;
    health_job *j = arg;
    j->cancelled = true;
    if (j->fetch) fetch_abort(j->fetch); /* on_done finishes the call */
}

void hnd_check_health(call_t *call, void *arg) {
    hnd_env *env = arg;
    Pluginv2__CheckHealthRequest *req =
        (Pluginv2__CheckHealthRequest *)hnd_unpack(call, &pluginv2__check_health_request__descriptor);
    if (!req) return;
    inst_t *in = inst_get(env->instances, req->plugincontext);
    protobuf_c_message_free_unpacked(&req->base, NULL);
    if (inst_problem(in)) {
        reply(call, PLUGINV2__CHECK_HEALTH_RESPONSE__HEALTH_STATUS__ERROR, inst_problem(in), in ? in->url : "", -1, 0);
        if (in) inst_release(in);
        return;
    }
    health_job *j = calloc(1, sizeof *j);
    if (!j) {
        inst_release(in);
        call_finish(call, GRPC_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    j->call = call;
    j->env = env;
    j->inst = in;
    j->started_ms = uv_now(call_loop(call));
    uint64_t timeout = in->timeout_ms;
    int64_t left = call_remaining_ms(call);
    if (left >= 0 && (uint64_t)left < timeout) timeout = left > 0 ? (uint64_t)left : 1;
    fetch_request rq = {.method = "GET", .path = "", .headers = in->headers, .nheaders = in->nheaders,
                        .timeout_ms = timeout};
    call_on_cancel(call, on_cancel, j);
    j->fetch = fetch_start(in->pool, &rq, &health_handler, j);
    if (!j->fetch) {
        inst_release(in);
        free(j);
        call_finish(call, GRPC_RESOURCE_EXHAUSTED, "out of memory");
    }
}
