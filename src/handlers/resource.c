/*
 * CallResource: the query editor's endpoints of the JSON-datasource
 * convention, proxied to the backend as POST <url>/<path>. Paths and
 * methods are checked here; unknown ones get 404/405 with a JSON body.
 */
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "../log/hclog.h"
#include "handlers.h"
#include "pluginv2.pb-c.h"
#include "settings.h"

static const char *const known_paths[] = {"metrics", "metric-payload-options", "variable",
                                          "tag-keys", "tag-values", "search"};

static void reply_json(call_t *call, int code, const char *error, const char *allow) {
    json_t *body = json_object();
    json_object_set_new(body, "error", json_string(error));
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);

    Pluginv2__StringList ct_list = PLUGINV2__STRING_LIST__INIT, allow_list = PLUGINV2__STRING_LIST__INIT;
    char *ct_values[] = {"application/json"};
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
    if (text) {
        resp.body.data = (uint8_t *)text;
        resp.body.len = strlen(text);
    }
    call_reply(call, &resp.base);
    free(text);
}

void hnd_call_resource(call_t *call, void *arg) {
    (void)arg;
    Pluginv2__CallResourceRequest *req =
        (Pluginv2__CallResourceRequest *)hnd_unpack(call, &pluginv2__call_resource_request__descriptor);
    if (!req) return;
    char msg[512];
    const char *path = req->path;
    while (*path == '/') path++;
    bool known = false;
    for (size_t i = 0; i < sizeof known_paths / sizeof known_paths[0]; i++)
        if (strcmp(path, known_paths[i]) == 0) known = true;
    if (!known) {
        snprintf(msg, sizeof msg, "unknown resource path \"%.200s\"; available: metrics, metric-payload-options, "
                                  "variable, tag-keys, tag-values, search", path);
        reply_json(call, 404, msg, NULL);
    } else if (strcmp(req->method, "POST") != 0) {
        snprintf(msg, sizeof msg, "method %.20s is not allowed on \"%s\"; use POST", req->method, path);
        reply_json(call, 405, msg, "POST");
    } else if (settings_check_url(settings_url(req->plugincontext), msg, sizeof msg) != 0) {
        reply_json(call, 400, msg, NULL);
    } else {
        reply_json(call, 501, "forwarding resource calls to the backend is not available in this plugin version",
                   NULL);
    }
    LOG_DEBUG("resource call", HKV_S("path", path), HKV_S("method", req->method));
    protobuf_c_message_free_unpacked(&req->base, NULL);
}
