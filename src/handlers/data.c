/*
 * QueryData: one DataResponse per refId, always; a failing query never
 * fails the call. The backend fan-out plugs in here; until then every query
 * reports why it cannot run (no URL, or no backend client in this version).
 */
#include <stdio.h>
#include <stdlib.h>

#include "../log/hclog.h"
#include "handlers.h"
#include "pluginv2.pb-c.h"
#include "settings.h"

void hnd_query_data(call_t *call, void *arg) {
    (void)arg;
    Pluginv2__QueryDataRequest *req =
        (Pluginv2__QueryDataRequest *)hnd_unpack(call, &pluginv2__query_data_request__descriptor);
    if (!req) return;
    const char *url = settings_url(req->plugincontext);
    char msg[512];
    int status = 400;
    if (settings_check_url(url, msg, sizeof msg) == 0) {
        status = 501;
        snprintf(msg, sizeof msg, "querying the backend is not available in this plugin version");
    }
    size_t n = req->n_queries;
    Pluginv2__DataResponse *responses = calloc(n ? n : 1, sizeof *responses);
    Pluginv2__QueryDataResponse__ResponsesEntry *entries = calloc(n ? n : 1, sizeof *entries);
    Pluginv2__QueryDataResponse__ResponsesEntry **entry_ptrs = calloc(n ? n : 1, sizeof *entry_ptrs);
    if (!responses || !entries || !entry_ptrs) {
        free(responses); free(entries); free(entry_ptrs);
        protobuf_c_message_free_unpacked(&req->base, NULL);
        call_finish(call, GRPC_RESOURCE_EXHAUSTED, "out of memory building the response");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        Pluginv2__DataResponse *r = &responses[i];
        pluginv2__data_response__init(r);
        r->status = status;
        r->error = msg;
        r->errorsource = "plugin";
        pluginv2__query_data_response__responses_entry__init(&entries[i]);
        entries[i].key = req->queries[i]->refid;
        entries[i].value = r;
        entry_ptrs[i] = &entries[i];
    }
    Pluginv2__QueryDataResponse resp = PLUGINV2__QUERY_DATA_RESPONSE__INIT;
    resp.n_responses = n;
    resp.responses = entry_ptrs;
    LOG_DEBUG("query data", HKV_I("queries", (int64_t)n), HKV_I("status", status));
    call_reply(call, &resp.base);
    free(responses);
    free(entries);
    free(entry_ptrs);
    protobuf_c_message_free_unpacked(&req->base, NULL);
}
