/*
 * go-plugin's infrastructure services and gRPC health, as go-plugin's host
 * expects them from a non-Go plugin:
 *  - Shutdown answers, then asks the process to stop (the answer is flushed
 *    before the connections close);
 *  - StreamStdio and StartStream are held open without messages until the
 *    host cancels them (Grafana discards stdio; it never brokers);
 *  - Health/Check is SERVING for "" and "plugin".
 */
#include <string.h>

#include "../log/hclog.h"
#include "goplugin.pb-c.h"
#include "handlers.h"
#include "health.pb-c.h"

void hnd_shutdown(call_t *call, void *arg) {
    hnd_env *env = arg;
    Plugin__Empty empty = PLUGIN__EMPTY__INIT;
    LOG_INFO("shutdown requested by the host");
    call_reply(call, &empty.base);
    env->request_stop("Shutdown RPC");
}

static void on_held_stream_cancel(call_t *call, void *arg) {
    (void)arg;
    call_finish(call, GRPC_CANCELLED, NULL);
}

void hnd_stdio(call_t *call, void *arg) {
    (void)arg;
    call_on_cancel(call, on_held_stream_cancel, NULL);
    call_send_headers(call);
}

static void on_broker_half_close(call_t *call, void *arg) {
    (void)arg;
    call_finish(call, GRPC_OK, NULL);
}

static void on_broker_message(call_t *call, void *arg, const uint8_t *msg, size_t len) {
    (void)call; (void)arg; (void)msg;
    LOG_DEBUG("ignoring a broker message: this plugin offers no brokered services",
              HKV_I("bytes", (int64_t)len));
}

void hnd_broker(call_t *call, void *arg) {
    (void)arg;
    call_on_cancel(call, on_held_stream_cancel, NULL);
    call_on_stream(call, on_broker_message, on_broker_half_close, NULL);
    call_send_headers(call);
}

void hnd_health_check(call_t *call, void *arg) {
    (void)arg;
    Grpc__Health__V1__HealthCheckRequest *req =
        (Grpc__Health__V1__HealthCheckRequest *)hnd_unpack(call, &grpc__health__v1__health_check_request__descriptor);
    if (!req) return;
    bool known = req->service[0] == '\0' || strcmp(req->service, "plugin") == 0;
    protobuf_c_message_free_unpacked(&req->base, NULL);
    if (!known) {
        call_finish(call, GRPC_NOT_FOUND, "unknown service");
        return;
    }
    Grpc__Health__V1__HealthCheckResponse resp = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
    resp.status = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
    call_reply(call, &resp.base);
}
