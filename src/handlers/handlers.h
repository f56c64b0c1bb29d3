/*
 * handlers: the gRPC methods the plugin serves, and the table that routes
 * to them. Each handler decodes its request with protobuf-c, starts its
 * work without blocking, and answers through the call object (src/h2/call.h).
 *
 * hnd_env carries what handlers need from the process: identity, the
 * transport's counters for metrics, and the stop entry point for Shutdown.
 */
#ifndef HANDLERS_H
#define HANDLERS_H

#include <protobuf-c/protobuf-c.h>
#include <stdint.h>

#include "../h2/call.h"
#include "../h2/router.h"
#include "../h2/session.h"
#include "../loop/server.h"
#include "backend_stats.h"
#include "instance.h"

typedef struct {
    const char *plugin_id;
    const char *version;
    h2_server *h2;
    srv_t *srv;
    router_t router;
    double start_time_unix;   /* seconds, for process_start_time_seconds */
    inst_cache *instances;    /* per data source settings and connection pools */
    bstats *backend;          /* backend request counters for CollectMetrics */
    void (*request_stop)(const char *reason);
} hnd_env;

/* Fills env->router with every method the plugin serves. The table lives
 * in static storage (counters included): call once per process. */
void hnd_build_router(hnd_env *env);

/* Decodes the call's request as `desc`; on failure finishes the call with
 * INTERNAL naming the type and returns NULL. Free with protobuf_c_message_free_unpacked. */
ProtobufCMessage *hnd_unpack(call_t *call, const ProtobufCMessageDescriptor *desc);

/* Individual handlers (one file each). */
void hnd_shutdown(call_t *call, void *env);
void hnd_stdio(call_t *call, void *env);
void hnd_broker(call_t *call, void *env);
void hnd_health_check(call_t *call, void *env);
void hnd_check_health(call_t *call, void *env);
void hnd_collect_metrics(call_t *call, void *env);
void hnd_query_data(call_t *call, void *env);
void hnd_call_resource(call_t *call, void *env);

#endif
