/*
 * The method table. Paths are the wire contract (see proto/); kinds decide
 * when the handler starts (unary/server-streaming: once the request message
 * is complete; bidi: at once). Long-lived streams are cancelled first on
 * shutdown instead of being waited for.
 */
#include "handlers.h"

#include <stdio.h>

#include "../log/hclog.h"

ProtobufCMessage *hnd_unpack(call_t *call, const ProtobufCMessageDescriptor *desc) {
    size_t len;
    const uint8_t *req = call_request(call, &len);
    ProtobufCMessage *m = protobuf_c_message_unpack(desc, NULL, len, req);
    if (!m) {
        char msg[160];
        snprintf(msg, sizeof msg, "cannot decode the request: %zu bytes are not a valid %s message", len,
                 desc->name);
        LOG_WARN("undecodable request", HKV_S("path", call_path(call)), HKV_I("bytes", (int64_t)len));
        call_finish(call, GRPC_INTERNAL, msg);
    }
    return m;
}

void hnd_build_router(hnd_env *env) {
    static router_method methods[] = {
        {.path = "/pluginv2.Data/QueryData", .kind = CALL_UNARY, .fn = hnd_query_data},
        {.path = "/pluginv2.Diagnostics/CheckHealth", .kind = CALL_UNARY, .fn = hnd_check_health},
        {.path = "/pluginv2.Diagnostics/CollectMetrics", .kind = CALL_UNARY, .fn = hnd_collect_metrics},
        {.path = "/pluginv2.Resource/CallResource", .kind = CALL_SERVER_STREAM, .fn = hnd_call_resource},
        {.path = "/plugin.GRPCController/Shutdown", .kind = CALL_UNARY, .fn = hnd_shutdown},
        {.path = "/plugin.GRPCStdio/StreamStdio", .kind = CALL_SERVER_STREAM, .fn = hnd_stdio, .long_lived = true},
        {.path = "/plugin.GRPCBroker/StartStream", .kind = CALL_BIDI, .fn = hnd_broker, .long_lived = true},
        {.path = "/grpc.health.v1.Health/Check", .kind = CALL_UNARY, .fn = hnd_health_check},
    };
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++) methods[i].ctx = env;
    env->router.methods = methods;
    env->router.count = sizeof methods / sizeof methods[0];
}
