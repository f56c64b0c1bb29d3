/*
 * Call lifetime by reference count: the open stream holds one reference, a
 * running handler one, an initialised deadline timer one (dropped in its
 * close callback, since uv_close is asynchronous). Whoever drops the last
 * frees the call, so no path has to know which of the three ends last.
 */
#include "call.h"

#include <stdlib.h>
#include <string.h>

#include "../log/hclog.h"
#include "session.h"

call_t *call_new(h2_session *s, int32_t stream_id, size_t max_request) {
    call_t *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->sess = s;
    c->server = s->server;
    c->loop = s->server->loop;
    c->stream_id = stream_id;
    c->refs = 1; /* the stream's */
    c->timeout_ns = -1;
    c->started_ns = uv_hrtime();
    grpc_deframer_init(&c->deframer, max_request);
    return c;
}

void call_ref(call_t *c) { c->refs++; }

static void call_free(call_t *c) {
    call_out_chunk *ch = c->out_head;
    while (ch) {
        call_out_chunk *n = ch->next;
        free(ch);
        ch = n;
    }
    grpc_deframer_free(&c->deframer);
    free(c->path);
    free(c->message);
    free(c);
}

void call_unref(call_t *c) {
    if (--c->refs == 0) call_free(c);
}

const uint8_t *call_request(const call_t *c, size_t *len) {
    static const uint8_t empty[1];
    *len = c->deframer.msg_len;
    return c->deframer.buf ? c->deframer.buf : empty;
}

const char *call_path(const call_t *c) { return c->path ? c->path : ""; }

uv_loop_t *call_loop(const call_t *c) { return c->loop; }

int64_t call_remaining_ms(const call_t *c) {
    if (c->timeout_ns < 0) return -1;
    int64_t left = c->timeout_ns - (int64_t)(uv_hrtime() - c->started_ns);
    return left > 0 ? left / 1000000 : 0;
}

bool call_is_cancelled(const call_t *c) { return c->cancelled; }

void call_on_cancel(call_t *c, call_cancel_fn fn, void *arg) {
    c->cancel_fn = fn;
    c->cancel_arg = arg;
}

void call_on_stream(call_t *c, call_message_fn on_msg, call_half_close_fn on_half_close, void *arg) {
    c->message_fn = on_msg;
    c->half_close_fn = on_half_close;
    c->stream_arg = arg;
}

static bool can_output(const call_t *c) { return c->sess && !c->responded && !c->cancelled; }

void call_send_headers(call_t *c) {
    if (!can_output(c) || c->headers_sent) return;
    h2s_push(c->sess, c);
}

/* Appends a chunk with room for one framed message of `len` bytes and
 * returns a pointer where the message body goes (NULL when it cannot). */
static uint8_t *queue_message(call_t *c, size_t len) {
    if (!can_output(c) || len > UINT32_MAX) return NULL;
    call_out_chunk *ch = malloc(sizeof *ch + GRPC_PREFIX_LEN + len);
    if (!ch) return NULL;
    ch->next = NULL;
    ch->off = 0;
    ch->len = GRPC_PREFIX_LEN + len;
    grpc_write_prefix(ch->data, (uint32_t)len);
    if (c->out_tail) c->out_tail->next = ch;
    else c->out_head = ch;
    c->out_tail = ch;
    c->out_bytes += ch->len;
    return ch->data + GRPC_PREFIX_LEN;
}

int call_send(call_t *c, const ProtobufCMessage *msg) {
    uint8_t *body = queue_message(c, protobuf_c_message_get_packed_size(msg));
    if (!body) return -1;
    protobuf_c_message_pack(msg, body);
    if (c->headers_sent) h2s_push(c->sess, c); /* the stream is open: send it now */
    return 0;
}

static void count_handled(call_t *c, int status) {
    if (c->method) c->method->handled[(status >= 0 && status < GRPC_STATUS_COUNT) ? status : GRPC_UNKNOWN]++;
}

void call_respond(call_t *c, int status, const char *message) {
    if (c->responded) return;
    c->responded = true;
    c->status = status;
    free(c->message);
    c->message = (message && *message) ? strdup(message) : NULL;
    count_handled(c, status);
    if (c->sess) h2s_push(c->sess, c);
}

void call_finish(call_t *c, int status, const char *message) {
    if (!c->handler_owned) {
        LOG_ERROR("call finished twice (handler bug)", HKV_S("path", call_path(c)));
        return;
    }
    if (!c->cancelled) call_respond(c, status, message);
    c->handler_owned = false;
    h2_server_handler_done(c->server);
    call_unref(c);
}

void call_reply(call_t *c, const ProtobufCMessage *msg) {
    if (call_send(c, msg) == 0) call_finish(c, GRPC_OK, NULL);
    else call_finish(c, GRPC_INTERNAL, "cannot encode the response");
}

void call_cancel(call_t *c, int status, const char *reason) {
    call_ref(c);
    if (!c->responded && c->sess) call_respond(c, status, reason);
    else if (!c->responded) { c->responded = true; count_handled(c, status); }
    if (c->handler_owned && !c->cancelled) {
        c->cancelled = true;
        LOG_DEBUG("call cancelled", HKV_S("path", call_path(c)), HKV_S("reason", reason));
        if (c->cancel_fn) c->cancel_fn(c, c->cancel_arg);
    }
    c->cancelled = true;
    call_unref(c);
}

static void on_timer_closed(uv_handle_t *h) { call_unref(h->data); }

static void stop_deadline(call_t *c) {
    if (c->timer_inited && !uv_is_closing((uv_handle_t *)&c->timer)) {
        uv_timer_stop(&c->timer);
        uv_close((uv_handle_t *)&c->timer, on_timer_closed);
    }
}

void call_detach(call_t *c) {
    c->sess = NULL;
    stop_deadline(c);
    call_unref(c);
}

static void on_deadline(uv_timer_t *t) {
    call_t *c = t->data;
    char reason[96];
    snprintf(reason, sizeof reason, "deadline exceeded after %lld ms",
             (long long)(c->timeout_ns / 1000000));
    if (!c->responded || c->handler_owned)
        LOG_INFO("call deadline exceeded", HKV_S("path", call_path(c)),
                 HKV_I("timeoutMs", c->timeout_ns / 1000000));
    /* The client is told at once; the handler is cancelled. */
    call_ref(c);
    call_cancel(c, GRPC_DEADLINE_EXCEEDED, reason);
    uv_close((uv_handle_t *)t, on_timer_closed);
    call_unref(c);
}

void call_start_deadline(call_t *c) {
    uv_timer_init(c->loop, &c->timer);
    c->timer.data = c;
    c->timer_inited = true;
    call_ref(c);
    uint64_t ms = (uint64_t)(c->timeout_ns / 1000000);
    if (ms == 0 && c->timeout_ns > 0) ms = 1;
    uv_timer_start(&c->timer, on_deadline, ms, 0);
}

