/*
 * call: one gRPC call as a handler sees it.
 *
 * Contract for handlers (all on the loop thread):
 *  - The handler is invoked once with the call; it may answer before it
 *    returns or from any later loop callback.
 *  - It owns the call until it calls call_finish() exactly once; after that
 *    it must not touch the call. The request bytes stay valid until then.
 *  - When the call is cancelled (client RST_STREAM, grpc-timeout deadline,
 *    connection loss, shutdown) the cancel callback registered with
 *    call_on_cancel() runs once; the handler must stop its work (abort its
 *    fetches) and still call call_finish() — from inside the callback or
 *    later. Output after a cancel is dropped.
 *  - Streaming handlers send messages with call_send() before finishing.
 */
#ifndef CALL_H
#define CALL_H

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "grpc_wire.h"
#include "router.h"

typedef struct call call_t;
typedef void (*call_cancel_fn)(call_t *call, void *arg);
typedef void (*call_message_fn)(call_t *call, void *arg, const uint8_t *msg, size_t len);
typedef void (*call_half_close_fn)(call_t *call, void *arg);

struct h2_session;
struct h2_server;

typedef struct call_out_chunk {
    struct call_out_chunk *next;
    size_t len;
    size_t off;
    uint8_t data[];
} call_out_chunk;

/* Fields are private to src/h2; handlers use the functions below. */
struct call {
    struct h2_session *sess;   /* NULL once the stream is gone */
    struct h2_server *server;
    uv_loop_t *loop;
    int32_t stream_id;
    int refs;
    router_method *method;     /* NULL for unknown paths */
    char *path;
    uint64_t started_ns;
    int64_t timeout_ns;        /* -1: no deadline */
    uv_timer_t timer;
    bool timer_inited;
    grpc_deframer deframer;
    size_t buffered;           /* request bytes charged to the server budget */
    bool bad_content_type;
    bool bad_method;
    bool request_done;         /* END_STREAM seen */
    bool handler_owned;        /* handler has not called call_finish yet */
    bool cancelled;
    bool responded;            /* final status decided (trailers queued or sent) */
    bool headers_sent;
    bool data_deferred;
    bool trailers_sent;
    int status;
    char *message;
    call_out_chunk *out_head, *out_tail;
    size_t out_bytes;          /* unsent response bytes */
    call_cancel_fn cancel_fn;
    void *cancel_arg;
    call_message_fn message_fn;
    call_half_close_fn half_close_fn;
    void *stream_arg;
    struct call *prev, *next;  /* session's call list */
};

/* ---- for handlers ---- */
const uint8_t *call_request(const call_t *c, size_t *len);
const char *call_path(const call_t *c);
uv_loop_t *call_loop(const call_t *c);
/* Remaining time before the gRPC deadline in ms, or -1 without one. */
int64_t call_remaining_ms(const call_t *c);
bool call_is_cancelled(const call_t *c);
void call_on_cancel(call_t *c, call_cancel_fn fn, void *arg);
/* Bidi calls: incoming messages and the client's half-close. */
void call_on_stream(call_t *c, call_message_fn on_msg, call_half_close_fn on_half_close, void *arg);
/* Sends response headers now (streams that stay open before any message). */
void call_send_headers(call_t *c);
/* Queues one response message. Returns 0, or -1 (out of memory / gone). */
int call_send(call_t *c, const ProtobufCMessage *msg);
/* Ends the call with a status; message may be NULL. Releases the call. */
void call_finish(call_t *c, int status, const char *message);
/* call_send + call_finish(OK); on a send failure finishes with INTERNAL. */
void call_reply(call_t *c, const ProtobufCMessage *msg);

/* ---- for the session ---- */
call_t *call_new(struct h2_session *s, int32_t stream_id, size_t max_request);
void call_ref(call_t *c);
void call_unref(call_t *c);
/* Decides the final status (and submits trailers) without a handler. */
void call_respond(call_t *c, int status, const char *message);
/* Cancels the handler (if running); `status` is what the client is told
 * when the stream is still there. */
void call_cancel(call_t *c, int status, const char *reason);
/* The stream is closed: drop the session's reference. */
void call_detach(call_t *c);
void call_start_deadline(call_t *c);

#endif
