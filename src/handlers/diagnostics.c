/*
 * CheckHealth: tells the Grafana user what is misconfigured. Until the
 * backend client exists this checks the settings it can check offline and
 * says plainly that connectivity was not tested.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../log/hclog.h"
#include "handlers.h"
#include "pluginv2.pb-c.h"
#include "settings.h"

#include <jansson.h>

void hnd_check_health(call_t *call, void *arg) {
    (void)arg;
    Pluginv2__CheckHealthRequest *req =
        (Pluginv2__CheckHealthRequest *)hnd_unpack(call, &pluginv2__check_health_request__descriptor);
    if (!req) return;
    const char *url = settings_url(req->plugincontext);
    char msg[512];
    Pluginv2__CheckHealthResponse resp = PLUGINV2__CHECK_HEALTH_RESPONSE__INIT;
    json_t *details = json_object();
    json_object_set_new(details, "url", json_string(url));
    if (settings_check_url(url, msg, sizeof msg) != 0) {
        resp.status = PLUGINV2__CHECK_HEALTH_RESPONSE__HEALTH_STATUS__ERROR;
        json_object_set_new(details, "setting", json_string("url"));
    } else {
        resp.status = PLUGINV2__CHECK_HEALTH_RESPONSE__HEALTH_STATUS__UNKNOWN;
        snprintf(msg, sizeof msg,
                 "the URL is well-formed, but this plugin version cannot contact backends yet, so "
                 "connectivity was not tested");
    }
    resp.message = msg;
    char *details_json = json_dumps(details, JSON_COMPACT);
    json_decref(details);
    if (details_json) {
        resp.jsondetails.data = (uint8_t *)details_json;
        resp.jsondetails.len = strlen(details_json);
    }
    LOG_DEBUG("health checked", HKV_I("status", resp.status));
    call_reply(call, &resp.base);
    free(details_json);
    protobuf_c_message_free_unpacked(&req->base, NULL);
}
