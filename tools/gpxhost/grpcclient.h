/*
 * grpcclient: a gRPC client over one h2c (prior knowledge) connection, on
 * libuv + an nghttp2 client session, the way grpc-go talks to a plugin.
 *
 * A call sends HEADERS (POST, :path, content-type application/grpc, te
 * trailers, grpc-timeout) and one DATA frame with the length-prefixed
 * request, then reassembles response messages across DATA frames and ends
 * with the trailers' grpc-status / grpc-message (percent-decoded). Unary
 * and server-streaming calls are the same thing here: on_message runs once
 * per response message.
 *
 * Callbacks: on_message runs inside nghttp2's receive path and must only
 * consume the bytes (no closing, no new calls); on_done runs outside it and
 * may do anything, including starting calls or closing the connection.
 */
#ifndef GPXHOST_GRPCCLIENT_H
#define GPXHOST_GRPCCLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "pluginproc.h"

#define GC_MAX_MESSAGE (256u << 20) /* largest response message accepted */

typedef struct gc_conn gc_conn;
typedef struct gc_call gc_call;

/* status 0 = connected; otherwise err says why (the connection is unusable
 * but must still be closed with gc_close). */
typedef void (*gc_connect_cb)(gc_conn *c, void *arg, int status, const char *err);
/* Return non-zero to fail the call (message undecodable): the stream is
 * cancelled and the call ends with INTERNAL and the text set by gc_call_fail. */
typedef int (*gc_message_cb)(gc_call *call, void *arg, const uint8_t *msg, size_t len);
/* code: gRPC status (0 = OK); message: grpc-message or our own explanation. */
typedef void (*gc_done_cb)(gc_call *call, void *arg, int code, const char *message);
typedef void (*gc_closed_cb)(void *arg);

/* Connects to the plugin's endpoint; cb runs once. NULL when out of memory. */
gc_conn *gc_connect(uv_loop_t *loop, const pp_endpoint *ep, gc_connect_cb cb, void *arg);

/* Starts a call; timeout_ms 0 = no deadline. The call object lives until
 * on_done returned. NULL when the connection cannot carry a call (then
 * nothing is called back). */
gc_call *gc_call_start(gc_conn *c, const char *path, const uint8_t *req, size_t req_len,
                       uint64_t timeout_ms, gc_message_cb on_message, gc_done_cb on_done, void *arg);
/* Cancels (RST_STREAM CANCEL); on_done follows with CANCELLED. */
void gc_call_cancel(gc_call *call, const char *why);
/* From on_message: the reason the call fails. */
void gc_call_fail(gc_call *call, int code, const char *msg);

/* Whether the connection still works (connected, not closed by the peer). */
bool gc_usable(const gc_conn *c);

/* GOAWAY, then closes; calls still running end with CANCELLED. closed_cb
 * runs once every handle is closed; the connection is freed after it. */
void gc_close(gc_conn *c, gc_closed_cb closed_cb, void *arg);

/* grpc-message percent-decoding (invalid escapes pass through as is). */
size_t gc_percent_decode(char *out, size_t cap, const char *in, size_t len);
/* grpc-timeout header value for a timeout in ms (at most 8 digits). */
void gc_format_timeout(char *out, size_t cap, uint64_t timeout_ms);

#endif
