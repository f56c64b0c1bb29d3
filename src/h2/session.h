/*
 * h2 session: one nghttp2 server session per connection, speaking gRPC.
 *
 * The session never touches a socket: the connection (src/loop/conn) feeds
 * it bytes and gives it room to write (nghttp2_session_send with callbacks
 * that append to the connection's buffer). Requests are routed through the
 * router when their headers arrive; unary and server-streaming handlers are
 * started when the request message is complete, bidi handlers at once.
 *
 * h2_server holds what all sessions share: configuration, the request-byte
 * budget, the in-flight call count and the list of sessions (for GOAWAY and
 * cancel-all on shutdown).
 */
#ifndef H2_SESSION_H
#define H2_SESSION_H

#include <nghttp2/nghttp2.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "../loop/conn.h"
#include "call.h"
#include "router.h"

typedef struct {
    size_t max_request_bytes;   /* one request message */
    size_t max_buffered_bytes;  /* all request bytes held at once, process-wide */
    uint32_t max_concurrent_streams;
} h2_config;

typedef struct h2_session h2_session;

typedef struct h2_server {
    uv_loop_t *loop;
    router_t *router;
    h2_config cfg;
    size_t buffered_bytes;
    size_t calls_in_flight;     /* handlers that have not finished */
    size_t sessions_active;
    uint64_t sessions_total;
    uint64_t protocol_errors;
    h2_session *sessions;
    bool draining;
    void (*on_drained)(struct h2_server *srv, void *arg);
    void *drained_arg;
} h2_server;

struct h2_session {
    h2_server *server;
    conn_t *conn;
    nghttp2_session *ng;
    call_t *calls;              /* calls whose stream is open */
    size_t header_list_size;    /* of the header block being received */
    bool dead;                  /* fatal protocol error: close after flush */
    h2_session *prev, *next;
};

void h2_server_init(h2_server *srv, uv_loop_t *loop, router_t *router, const h2_config *cfg);
/* srv_proto_factory for the loop's server. */
void *h2_server_make_session(void *arg, conn_t *c, const conn_proto **vt);
/* Graceful stop: GOAWAY on every session, cancel long-lived streams, and call
 * on_drained once no handler is running (possibly right away). */
void h2_server_drain(h2_server *srv, void (*on_drained)(h2_server *, void *), void *arg);
/* Cancels every running handler (the client sees `status`). */
void h2_server_cancel_all(h2_server *srv, int status, const char *reason);
/* Called by call.c when a handler finishes. */
void h2_server_handler_done(h2_server *srv);

/* ---- for call.c ---- */
/* Submits the response for c in its current state (trailers-only, headers +
 * data, or resumes deferred data), then asks the connection to flush. */
void h2s_push(h2_session *s, call_t *c);

#endif
