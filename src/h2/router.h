/*
 * router: the table from "/package.Service/Method" to handlers, with the
 * per-method counters CollectMetrics reports. The table is built once at
 * start-up by main and is read-only afterwards except for the counters.
 */
#ifndef ROUTER_H
#define ROUTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "grpc_wire.h"

struct call;

typedef enum { CALL_UNARY, CALL_SERVER_STREAM, CALL_BIDI } call_kind;

/* Starts the work of one call. Must not block; answers later (or now)
 * through the call object. */
typedef void (*router_handler_fn)(struct call *call, void *ctx);

typedef struct {
    const char *path;      /* "/pluginv2.Data/QueryData" */
    call_kind kind;
    router_handler_fn fn;
    void *ctx;
    bool long_lived;       /* held-open streams: cancelled at once on shutdown */
    uint64_t started;
    uint64_t handled[GRPC_STATUS_COUNT];
} router_method;

typedef struct {
    router_method *methods;
    size_t count;
} router_t;

router_method *router_find(const router_t *r, const char *path);

/* grpc-go's words for an unknown path: "unknown service X" when no method
 * of that service is registered, else "unknown method M for service X".
 * A path that is not "/service/method" gets "malformed method name". */
void router_unknown_message(const router_t *r, const char *path, char *out, size_t cap);

/* "/pluginv2.Data/QueryData" -> service "pluginv2.Data", method "QueryData".
 * Returns -1 when the path has another shape. */
int router_split_path(const char *path, const char **svc, size_t *svc_len, const char **method);

#endif
