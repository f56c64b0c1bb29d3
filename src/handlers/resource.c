/*
 * CallResource: the query editor's endpoints of the JSON-datasource
 * convention, proxied to the backend as POST <url>/<path>. Paths and
 * methods are checked here; unknown ones get 404/405 with a JSON body.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "../fetch/fetch.h"
#include "../log/hclog.h"
#include "../util/buf.h"
#include "instance.h"
#include "handlers.h"
#include "pluginv2.pb-c.h"

static const char *const known_paths[] = {"metrics", "metric-payload-options", "variable",
                                          "tag-keys", "tag-values", "search"};

/* One response message: status, Content-Type (+ Allow), body. */
static void reply(call_t *call, int code, const char *content_type, const uint8_t *body, size_t body_len,
                  const char *allow) {
    Pluginv2__StringList ct_list = PLUGINV2__STRING_LIST__INIT, allow_list = PLUGINV2__STRING_LIST__INIT;
    char *ct_values[] = {(char *)content_type};
    char *allow_values[] = {(char *)allow};
    ct_list.n_values = 1;
    ct_list.values = ct_values;
    allow_list.n_values = 1;
    allow_list.values = allow_values;
    Pluginv2__CallResourceResponse__HeadersEntry ct = PLUGINV2__CALL_RESOURCE_RESPONSE__HEADERS_ENTRY__INIT,
                                                 al = PLUGINV2__CALL_RESOURCE_RESPONSE__HEADERS_ENTRY__INIT;
    ct.key = "Content-Type";
    ct.value = &ct_list;
    al.key = "Allow";
    al.value = &allow_list;
    Pluginv2__CallResourceResponse__HeadersEntry *headers[] = {&ct, &al};

    Pluginv2__CallResourceResponse resp = PLUGINV2__CALL_RESOURCE_RESPONSE__INIT;
    resp.code = code;
    resp.n_headers = allow ? 2 : 1;
    resp.headers = headers;
    resp.body.data = (uint8_t *)body;
    resp.body.len = body_len;
    call_reply(call, &resp.base);
}

static void reply_json(call_t *call, int code, const char *error, const char *allow) {
    json_t *body = json_object();
    json_object_set_new(body, "error", json_string(error));
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    reply(call, code, "application/json", (const uint8_t *)text, text ? strlen(text) : 0, allow);
    free(text);
}

typedef struct {
    call_t *call;
    hnd_env *env;
    inst_t *inst;
    Pluginv2__CallResourceRequest *req; /* path and body are sent from here */
    fetch_header *headers;
    fetch_req *fetch;
    uint64_t started_ms;
    int status;
    char content_type[128];
    buf_t body;
    bool cancelled;
} proxy_job;

static int on_response(void *arg, int status, const char *ct) {
    proxy_job *j = arg;
    j->status = status;
    snprintf(j->content_type, sizeof j->content_type, "%s", ct && *ct ? ct : "application/json");
    return 0;
}

static int on_body(void *arg, const uint8_t *d, size_t n) {
    proxy_job *j = arg;
    buf_append(&j->body, d, n);
    return buf_ok(&j->body) ? 0 : -1;
}

static void on_done(void *arg, fetch_error err, const char *msg) {
    proxy_job *j = arg;
    if (j->env->backend && err != FETCH_E_ABORTED)
        bstats_record(j->env->backend, EP_RESOURCE, err, j->status, uv_now(call_loop(j->call)) - j->started_ms);
    if (j->cancelled) call_finish(j->call, GRPC_CANCELLED, NULL);
    else if (err == FETCH_OK) reply(j->call, j->status, j->content_type, (const uint8_t *)j->body.data, j->body.len, NULL);
    else reply_json(j->call, err == FETCH_E_TIMEOUT ? 504 : 502, msg, NULL);
    buf_free(&j->body);
    inst_release(j->inst);
    free(j->headers);
    protobuf_c_message_free_unpacked(&j->req->base, NULL);
    free(j);
}

static const fetch_handler proxy_handler = {on_response, on_body, on_done};

static void on_cancel(call_t *call, void *arg) {
    (void)call;
    proxy_job *j = arg;
    j->cancelled = true;
    if (j->fetch) fetch_abort(j->fetch);
}

static const char *request_content_type(const Pluginv2__CallResourceRequest *req) {
    for (size_t i = 0; i < req->n_headers; i++)
        if (!strcasecmp(req->headers[i]->key, "Content-Type") && req->headers[i]->value &&
            req->headers[i]->value->n_values)
            return req->headers[i]->value->values[0];
    return NULL;
}

/* Takes ownership of req (freed when the proxied request ends). */
static void proxy(call_t *call, hnd_env *env, Pluginv2__CallResourceRequest *req, const char *path) {
    inst_t *in = inst_get(env->instances, req->plugincontext);
    if (inst_problem(in)) {
        reply_json(call, 400, inst_problem(in), NULL);
        if (in) inst_release(in);
        protobuf_c_message_free_unpacked(&req->base, NULL);
        return;
    }
    proxy_job *j = calloc(1, sizeof *j);
    fetch_header *h = calloc(in->nheaders + 1, sizeof *h);
    if (!j || !h) {
        free(j);
        free(h);
        inst_release(in);
        protobuf_c_message_free_unpacked(&req->base, NULL);
        reply_json(call, 500, "out of memory", NULL);
        return;
    }
    size_t nh = 0;
    for (size_t i = 0; i < in->nheaders; i++) h[nh++] = in->headers[i];
    const char *ct = request_content_type(req);
    if (ct && fetch_header_ok("Content-Type", ct)) h[nh++] = (fetch_header){"Content-Type", ct};
    j->call = call;
    j->env = env;
    j->inst = in;
    j->req = req;
    j->headers = h;
    j->started_ms = uv_now(call_loop(call));
    buf_init(&j->body);
    uint64_t timeout = in->timeout_ms;
    int64_t left = call_remaining_ms(call);
    if (left >= 0 && (uint64_t)left < timeout) timeout = left > 0 ? (uint64_t)left : 1;
    fetch_request rq = {.method = "POST", .path = path, .headers = h, .nheaders = nh,
                        .body = req->body.data, .body_len = req->body.len, .timeout_ms = timeout};
    call_on_cancel(call, on_cancel, j);
    j->fetch = fetch_start(in->pool, &rq, &proxy_handler, j);
    if (!j->fetch) {
        inst_release(in);
        free(h);
        protobuf_c_message_free_unpacked(&req->base, NULL);
        free(j);
        reply_json(call, 500, "out of memory", NULL);
    }
}

void hnd_call_resource(call_t *call, void *arg) {
    hnd_env *env = arg;
    Pluginv2__CallResourceRequest *req =
        (Pluginv2__CallResourceRequest *)hnd_unpack(call, &pluginv2__call_resource_request__descriptor);
    if (!req) return;
    char msg[512];
    const char *path = req->path;
    while (*path == '/') path++;
    bool known = false;
    for (size_t i = 0; i < sizeof known_paths / sizeof known_paths[0]; i++)
        if (strcmp(path, known_paths[i]) == 0) known = true;
    LOG_DEBUG("resource call", HKV_S("path", path), HKV_S("method", req->method));
    if (known && strcmp(req->method, "POST") == 0) {
        proxy(call, env, req, path); /* owns req from here */
        return;
    }
    if (!known) {
        snprintf(msg, sizeof msg, "unknown resource path \"%.200s\"; available: metrics, metric-payload-options, "
                                  "variable, tag-keys, tag-values, search", path);
        reply_json(call, 404, msg, NULL);
    } else {
        snprintf(msg, sizeof msg, "method %.20s is not allowed on \"%s\"; use POST", req->method, path);
        reply_json(call, 405, msg, "POST");
    }
    protobuf_c_message_free_unpacked(&req->base, NULL);
}
