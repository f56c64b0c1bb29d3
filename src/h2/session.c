/*
 * nghttp2 glue. Output goes through nghttp2_session_send: frame headers and
 * control frames via send_cb, DATA payloads via send_data_cb straight from
 * the call's message chunks (NGHTTP2_DATA_FLAG_NO_COPY), so a response is
 * copied once, into the connection's write buffer. Both callbacks return
 * NGHTTP2_ERR_WOULDBLOCK when the connection is over its high-water mark;
 * nghttp2 keeps the frame and we retry when the socket drains.
 */
#include "session.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../log/hclog.h"

#define MAX_PATH_LEN 512
/* The header list a client may send (RFC 9113 §6.5.2 size: name + value + 32
 * per field), advertised as SETTINGS_MAX_HEADER_LIST_SIZE. nghttp2 only
 * advertises it; the limit is enforced in on_header_cb, because HPACK lets a
 * 16 KiB frame expand to megabytes of fields (one dynamic-table entry
 * referenced thousands of times). The wire size of a header block is bounded
 * by nghttp2 itself: at most 8 CONTINUATION frames (its default) after the
 * HEADERS frame, more is a connection error. */
#define MAX_HEADER_LIST_SIZE (64 * 1024)
#define DEADLINE_SLACK_NS (20 * 1000000LL)

static const conn_proto h2_conn_proto;

/* ---- server ---------------------------------------------------------- */

void h2_server_init(h2_server *srv, uv_loop_t *loop, router_t *router, const h2_config *cfg) {
    memset(srv, 0, sizeof *srv);
    srv->loop = loop;
    srv->router = router;
    srv->cfg = *cfg;
}

static void check_drained(h2_server *srv) {
    if (srv->draining && srv->calls_in_flight == 0 && srv->on_drained) {
        void (*cb)(h2_server *, void *) = srv->on_drained;
        srv->on_drained = NULL;
        cb(srv, srv->drained_arg);
    }
}

void h2_server_handler_done(h2_server *srv) {
    srv->calls_in_flight--;
    check_drained(srv);
}

static void cancel_session_calls(h2_session *s, bool only_long_lived, int status, const char *reason) {
    /* Streams close only inside nghttp2_session_send/mem_recv, never during
     * a cancel, so the list is stable while we walk it. */
    for (call_t *c = s->calls; c; c = c->next)
        if (c->handler_owned && (!only_long_lived || (c->method && c->method->long_lived)))
            call_cancel(c, status, reason);
    conn_request_flush(s->conn);
}

void h2_server_drain(h2_server *srv, void (*on_drained)(h2_server *, void *), void *arg) {
    srv->draining = true;
    srv->on_drained = on_drained;
    srv->drained_arg = arg;
    for (h2_session *s = srv->sessions; s; s = s->next) {
        nghttp2_submit_goaway(s->ng, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(s->ng),
                              NGHTTP2_NO_ERROR, NULL, 0);
        cancel_session_calls(s, true, GRPC_UNAVAILABLE, "plugin is shutting down");
    }
    check_drained(srv);
}

void h2_server_cancel_all(h2_server *srv, int status, const char *reason) {
    for (h2_session *s = srv->sessions; s; s = s->next) cancel_session_calls(s, false, status, reason);
}

/* ---- responding ------------------------------------------------------- */

#define NV(n, v, vlen)                                                                      \
    {(uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, (vlen), NGHTTP2_NV_FLAG_NO_COPY_NAME}

static ssize_t data_read_cb(nghttp2_session *ng, int32_t stream_id, uint8_t *buf, size_t length,
                            uint32_t *flags, nghttp2_data_source *src, void *user);

/* Status trailers (or the status part of a trailers-only response). */
static size_t status_nv(call_t *c, nghttp2_nv *nv, char *code, char *msg, size_t msgcap) {
    size_t n = 0;
    int len = snprintf(code, 8, "%d", c->status);
    nv[n++] = (nghttp2_nv)NV("grpc-status", code, (size_t)len);
    if (c->message) {
        size_t ml = grpc_percent_encode(msg, msgcap, c->message);
        nv[n++] = (nghttp2_nv)NV("grpc-message", msg, ml);
    }
    return n;
}

static void submit_trailers(h2_session *s, call_t *c) {
    nghttp2_nv nv[2];
    char code[8], msg[3 * 1024 + 1];
    size_t n = status_nv(c, nv, code, msg, sizeof msg);
    c->trailers_sent = true;
    nghttp2_submit_trailer(s->ng, c->stream_id, nv, n);
}

void h2s_push(h2_session *s, call_t *c) {
    if (c->trailers_sent) return;
    if (!c->headers_sent) {
        nghttp2_nv nv[5];
        char code[8], msg[3 * 1024 + 1];
        size_t n = 0;
        const char *http_status = "200";
        if (c->bad_content_type) http_status = "415";
        if (c->bad_method) http_status = "405";
        nv[n++] = (nghttp2_nv)NV(":status", http_status, 3);
        nv[n++] = (nghttp2_nv)NV("content-type", "application/grpc", 16);
        c->headers_sent = true;
        if (c->responded && c->out_bytes == 0) {
            /* Trailers-Only: one HEADERS frame with END_STREAM. */
            n += status_nv(c, nv + n, code, msg, sizeof msg);
            c->trailers_sent = true;
            nghttp2_submit_response(s->ng, c->stream_id, nv, n, NULL);
        } else {
            nghttp2_data_provider dp = {.source.ptr = c, .read_callback = data_read_cb};
            nghttp2_submit_response(s->ng, c->stream_id, nv, n, &dp);
        }
    } else if (c->data_deferred) {
        c->data_deferred = false;
        nghttp2_session_resume_data(s->ng, c->stream_id);
    }
    conn_request_flush(s->conn);
}

static ssize_t data_read_cb(nghttp2_session *ng, int32_t stream_id, uint8_t *buf, size_t length,
                            uint32_t *flags, nghttp2_data_source *src, void *user) {
    (void)ng; (void)stream_id; (void)buf;
    call_t *c = src->ptr;
    h2_session *s = user;
    size_t n = c->out_bytes < length ? c->out_bytes : length;
    if (n == c->out_bytes && c->responded) {
        *flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
        submit_trailers(s, c);
    } else if (n == 0) {
        c->data_deferred = true;
        return NGHTTP2_ERR_DEFERRED;
    }
    if (n) *flags |= NGHTTP2_DATA_FLAG_NO_COPY;
    return (ssize_t)n;
}

static int send_data_cb(nghttp2_session *ng, nghttp2_frame *frame, const uint8_t *framehd,
                        size_t length, nghttp2_data_source *src, void *user) {
    (void)ng; (void)frame;
    h2_session *s = user;
    call_t *c = src->ptr;
    uint8_t *dst;
    int r = conn_reserve(s->conn, 9 + length, &dst);
    if (r == CONN_WOULDBLOCK) return NGHTTP2_ERR_WOULDBLOCK;
    if (r != 0) return NGHTTP2_ERR_CALLBACK_FAILURE;
    memcpy(dst, framehd, 9);
    dst += 9;
    size_t left = length;
    while (left) {
        call_out_chunk *ch = c->out_head;
        size_t take = ch->len - ch->off;
        if (take > left) take = left;
        memcpy(dst, ch->data + ch->off, take);
        dst += take;
        ch->off += take;
        left -= take;
        if (ch->off == ch->len) {
            c->out_head = ch->next;
            if (!c->out_head) c->out_tail = NULL;
            free(ch);
        }
    }
    c->out_bytes -= length;
    return 0;
}

static ssize_t send_cb(nghttp2_session *ng, const uint8_t *data, size_t len, int flags, void *user) {
    (void)ng; (void)flags;
    h2_session *s = user;
    int r = conn_append(s->conn, data, len);
    if (r == CONN_WOULDBLOCK) return NGHTTP2_ERR_WOULDBLOCK;
    if (r != 0) return NGHTTP2_ERR_CALLBACK_FAILURE;
    return (ssize_t)len;
}

/* ---- requests --------------------------------------------------------- */

static void release_budget(h2_session *s, call_t *c) {
    s->server->buffered_bytes -= c->buffered;
    c->buffered = 0;
}

static void start_handler(h2_session *s, call_t *c) {
    h2_server *srv = s->server;
    c->handler_owned = true;
    call_ref(c); /* the handler's */
    srv->calls_in_flight++;
    c->method->started++;
    LOG_TRACE("call started", HKV_S("path", c->path), HKV_I("stream", c->stream_id));
    c->method->fn(c, c->method->ctx);
}

static void on_request_headers(h2_session *s, call_t *c) {
    router_t *r = s->server->router;
    if (!c->path) {
        call_respond(c, GRPC_INTERNAL, "request has no :path");
        return;
    }
    if (c->bad_method) {
        call_respond(c, GRPC_INTERNAL, "gRPC requires the POST method");
        return;
    }
    if (c->bad_content_type) {
        call_respond(c, GRPC_INVALID_ARGUMENT, "content-type must be application/grpc");
        return;
    }
    c->method = router_find(r, c->path);
    if (!c->method) {
        char msg[512];
        router_unknown_message(r, c->path, msg, sizeof msg);
        LOG_DEBUG("unknown gRPC method", HKV_S("path", c->path));
        call_respond(c, GRPC_UNIMPLEMENTED, msg);
        return;
    }
    if (c->timeout_ns >= 0) call_start_deadline(c);
    if (s->server->draining) {
        call_respond(c, GRPC_UNAVAILABLE, "plugin is shutting down");
        return;
    }
    if (c->method->kind == CALL_BIDI) start_handler(s, c);
}

static void on_request_end(h2_session *s, call_t *c) {
    c->request_done = true;
    if (c->responded && !c->handler_owned) return;
    if (!grpc_deframer_at_boundary(&c->deframer)) {
        char msg[160];
        snprintf(msg, sizeof msg, "request ended inside a message (%zu of %u bytes received)",
                 c->deframer.prefix_have < GRPC_PREFIX_LEN ? (size_t)0 : c->deframer.msg_have,
                 c->deframer.prefix_have < GRPC_PREFIX_LEN ? 0u : c->deframer.declared);
        if (c->handler_owned) call_cancel(c, GRPC_INTERNAL, msg);
        else call_respond(c, GRPC_INTERNAL, msg);
        return;
    }
    if (c->method->kind == CALL_BIDI) {
        if (c->handler_owned && c->half_close_fn) c->half_close_fn(c, c->stream_arg);
        return;
    }
    if (c->deframer.messages != 1) {
        char msg[96];
        snprintf(msg, sizeof msg, "expected exactly one request message, got %zu", c->deframer.messages);
        call_respond(c, GRPC_INTERNAL, msg);
        return;
    }
    start_handler(s, c);
}

static int on_message(void *arg, const uint8_t *msg, size_t len) {
    call_t *c = arg;
    if (c->method && c->method->kind == CALL_BIDI) {
        if (c->handler_owned && c->message_fn) c->message_fn(c, c->stream_arg, msg, len);
        return 0;
    }
    return c->deframer.messages > 1; /* a second unary message: stop, fail at END_STREAM */
}

static int on_data_chunk_cb(nghttp2_session *ng, uint8_t flags, int32_t stream_id, const uint8_t *data,
                            size_t len, void *user) {
    (void)flags;
    h2_session *s = user;
    call_t *c = nghttp2_session_get_stream_user_data(ng, stream_id);
    if (!c || c->responded || c->cancelled) return 0;
    h2_server *srv = s->server;
    /* Deframe first: a message over its own cap is reported as such, not
     * as a full budget. */
    grpc_deframe_result r = grpc_deframer_feed(&c->deframer, data, len, on_message, c);
    /* Bytes of unary requests are held until the handler has run. */
    if (r == GRPC_DEFRAME_OK && c->method && c->method->kind != CALL_BIDI) {
        if (srv->buffered_bytes + len > srv->cfg.max_buffered_bytes) {
            char msg[192];
            snprintf(msg, sizeof msg,
                     "plugin is holding %zu bytes of requests (limit %zu, GF_PLUGIN_MAX_BUFFERED_BYTES); retry later",
                     srv->buffered_bytes, srv->cfg.max_buffered_bytes);
            release_budget(s, c);
            grpc_deframer_free(&c->deframer);
            call_respond(c, GRPC_RESOURCE_EXHAUSTED, msg);
            return 0;
        }
        srv->buffered_bytes += len;
        c->buffered += len;
    }
    if (r == GRPC_DEFRAME_OK) return 0;
    char msg[256];
    int status = GRPC_INTERNAL;
    switch (r) {
    case GRPC_DEFRAME_TOO_LARGE:
        status = GRPC_RESOURCE_EXHAUSTED;
        snprintf(msg, sizeof msg,
                 "request message of %u bytes is larger than the limit of %zu bytes (GF_PLUGIN_MAX_REQUEST_BYTES)",
                 c->deframer.declared, srv->cfg.max_request_bytes);
        break;
    case GRPC_DEFRAME_COMPRESSED:
        status = GRPC_UNIMPLEMENTED;
        snprintf(msg, sizeof msg, "compressed messages are not supported (send with grpc-encoding identity)");
        break;
    case GRPC_DEFRAME_BAD_FLAG:
        snprintf(msg, sizeof msg, "invalid message flag byte 0x%02x", c->deframer.prefix[0]);
        break;
    default:
        status = GRPC_RESOURCE_EXHAUSTED;
        snprintf(msg, sizeof msg, "out of memory receiving a %u-byte request", c->deframer.declared);
        break;
    }
    LOG_DEBUG("request rejected", HKV_S("path", c->path), HKV_S("reason", msg));
    release_budget(s, c);
    grpc_deframer_free(&c->deframer);
    if (c->handler_owned) call_cancel(c, status, msg);
    else call_respond(c, status, msg);
    return 0;
}

static int on_begin_headers_cb(nghttp2_session *ng, const nghttp2_frame *frame, void *user) {
    h2_session *s = user;
    /* Header blocks never interleave (CONTINUATION follows at once), so one
     * counter per session measures the block being received. */
    s->header_list_size = 0;
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
    call_t *c = call_new(s, frame->hd.stream_id, s->server->cfg.max_request_bytes);
    if (!c) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* resets this stream only */
    nghttp2_session_set_stream_user_data(ng, frame->hd.stream_id, c);
    c->next = s->calls;
    if (s->calls) s->calls->prev = c;
    s->calls = c;
    return 0;
}

static int on_header_cb(nghttp2_session *ng, const nghttp2_frame *frame, const uint8_t *name, size_t namelen,
                        const uint8_t *value, size_t valuelen, uint8_t flags, void *user) {
    (void)flags;
    h2_session *s = user;
    if (frame->hd.type != NGHTTP2_HEADERS) return 0;
    s->header_list_size += namelen + valuelen + 32;
    if (s->header_list_size > MAX_HEADER_LIST_SIZE) {
        /* Resets this stream (nghttp2 decodes the rest of the block without
         * calling us); the connection goes on. */
        LOG_DEBUG("request headers over the limit", HKV_I("conn", s->conn->id),
                  HKV_I("stream", frame->hd.stream_id), HKV_I("limit", MAX_HEADER_LIST_SIZE));
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    if (frame->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
    call_t *c = nghttp2_session_get_stream_user_data(ng, frame->hd.stream_id);
    if (!c) return 0;
    if (namelen == 5 && memcmp(name, ":path", 5) == 0) {
        if (valuelen > MAX_PATH_LEN || c->path) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        c->path = strndup((const char *)value, valuelen);
        if (!c->path) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    } else if (namelen == 7 && memcmp(name, ":method", 7) == 0) {
        c->bad_method = !(valuelen == 4 && memcmp(value, "POST", 4) == 0);
    } else if (namelen == 12 && memcmp(name, "content-type", 12) == 0) {
        c->bad_content_type = !(valuelen >= 16 && memcmp(value, "application/grpc", 16) == 0 &&
                                (valuelen == 16 || value[16] == '+' || value[16] == ';'));
    } else if (namelen == 12 && memcmp(name, "grpc-timeout", 12) == 0) {
        int64_t ns;
        if (grpc_timeout_parse((const char *)value, valuelen, &ns) == 0) c->timeout_ns = ns;
    }
    return 0;
}

static int on_frame_recv_cb(nghttp2_session *ng, const nghttp2_frame *frame, void *user) {
    h2_session *s = user;
    /* The first frame after the magic is the client's SETTINGS. */
    if (!s->conn->established) conn_mark_established(s->conn);
    if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA) return 0;
    call_t *c = nghttp2_session_get_stream_user_data(ng, frame->hd.stream_id);
    if (!c) return 0;
    call_ref(c);
    if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST)
        on_request_headers(s, c);
    if ((frame->hd.flags & NGHTTP2_FLAG_END_STREAM) && c->sess && !c->request_done) {
        if (c->method) on_request_end(s, c);
        else c->request_done = true;
    }
    call_unref(c);
    return 0;
}

static int on_frame_send_cb(nghttp2_session *ng, const nghttp2_frame *frame, void *user) {
    h2_session *s = user;
    /* nghttp2 ends a connection on its own (floods, too many resets): say so,
     * since every call still on it fails with it. */
    if (frame->hd.type == NGHTTP2_GOAWAY && frame->goaway.error_code != NGHTTP2_NO_ERROR)
        LOG_INFO("closing connection: GOAWAY sent", HKV_I("conn", s->conn->id),
                 HKV_S("error", nghttp2_http2_strerror(frame->goaway.error_code)),
                 HKV_I("lastStreamId", frame->goaway.last_stream_id));
    /* Our side ended while the client was still sending: tell it to stop
     * (RFC 9113 §8.1), the way gRPC servers do. */
    if ((frame->hd.flags & NGHTTP2_FLAG_END_STREAM) &&
        (frame->hd.type == NGHTTP2_HEADERS || frame->hd.type == NGHTTP2_DATA)) {
        call_t *c = nghttp2_session_get_stream_user_data(ng, frame->hd.stream_id);
        if (c && !c->request_done)
            nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, frame->hd.stream_id, NGHTTP2_NO_ERROR);
    }
    return 0;
}

static int on_stream_close_cb(nghttp2_session *ng, int32_t stream_id, uint32_t error_code, void *user) {
    h2_session *s = user;
    call_t *c = nghttp2_session_get_stream_user_data(ng, stream_id);
    if (!c) return 0;
    nghttp2_session_set_stream_user_data(ng, stream_id, NULL);
    call_ref(c);
    if (c->prev) c->prev->next = c->next;
    else s->calls = c->next;
    if (c->next) c->next->prev = c->prev;
    c->prev = c->next = NULL;
    release_budget(s, c);
    if (!c->trailers_sent) {
        /* Closed before we answered: the client cancelled (or reset). */
        c->sess = NULL;
        /* A client enforces the same deadline and usually resets the
         * stream a hair before our timer fires: that is still a deadline. */
        bool expired = c->timeout_ns >= 0 &&
                       (int64_t)(uv_hrtime() - c->started_ns) >= c->timeout_ns - DEADLINE_SLACK_NS;
        if (c->handler_owned)
            LOG_DEBUG(expired ? "call deadline exceeded (client reset)" : "call cancelled by the client",
                      HKV_S("path", call_path(c)), HKV_I("h2Error", error_code));
        if (expired) call_cancel(c, GRPC_DEADLINE_EXCEEDED, "deadline exceeded");
        else call_cancel(c, GRPC_CANCELLED, "cancelled by the client");
    }
    call_detach(c);
    call_unref(c);
    return 0;
}

static int on_error_cb(nghttp2_session *ng, int code, const char *msg, size_t len, void *user) {
    (void)ng; (void)code;
    h2_session *s = user;
    LOG_DEBUG("http2 protocol error", HKV_I("conn", s->conn->id), HKV_S("detail", msg),
              HKV_I("detailLen", (int64_t)len));
    return 0;
}

/* ---- the conn_proto side ---------------------------------------------- */

static int h2_on_recv(void *p, const uint8_t *data, size_t len) {
    h2_session *s = p;
    if (s->dead) return -1;
    ssize_t r = nghttp2_session_mem_recv(s->ng, data, len);
    if (r < 0) {
        s->server->protocol_errors++;
        LOG_INFO("closing connection after a protocol error", HKV_I("conn", s->conn->id),
                 HKV_S("error", nghttp2_strerror((int)r)));
        /* Tell the peer why where the protocol allows it; then close. */
        if (r != NGHTTP2_ERR_BAD_CLIENT_MAGIC)
            nghttp2_session_terminate_session(s->ng, NGHTTP2_PROTOCOL_ERROR);
        else
            nghttp2_submit_goaway(s->ng, NGHTTP2_FLAG_NONE, 0, NGHTTP2_PROTOCOL_ERROR,
                                  (const uint8_t *)"bad client preface", 18);
        s->dead = true;
        return -1;
    }
    return 0;
}

static int h2_on_flush(void *p) {
    h2_session *s = p;
    int r = nghttp2_session_send(s->ng);
    if (r != 0) {
        LOG_DEBUG("http2 send failed", HKV_I("conn", s->conn->id), HKV_S("error", nghttp2_strerror(r)));
        return -1;
    }
    return s->dead ? -1 : 0;
}

static bool h2_is_alive(void *p) {
    h2_session *s = p;
    return nghttp2_session_want_read(s->ng) || nghttp2_session_want_write(s->ng);
}

static void h2_on_close(void *p) {
    h2_session *s = p;
    h2_server *srv = s->server;
    /* Streams still open lose their client: cancel their handlers. */
    while (s->calls) {
        call_t *c = s->calls;
        s->calls = c->next;
        if (s->calls) s->calls->prev = NULL;
        c->prev = c->next = NULL;
        call_ref(c);
        release_budget(s, c);
        c->sess = NULL;
        call_cancel(c, GRPC_CANCELLED, "connection closed");
        call_detach(c);
        call_unref(c);
    }
    nghttp2_session_del(s->ng);
    if (s->prev) s->prev->next = s->next;
    else srv->sessions = s->next;
    if (s->next) s->next->prev = s->prev;
    srv->sessions_active--;
    free(s);
}

static const conn_proto h2_conn_proto = {
    .on_recv = h2_on_recv,
    .on_flush = h2_on_flush,
    .is_alive = h2_is_alive,
    .on_close = h2_on_close,
};

void *h2_server_make_session(void *arg, conn_t *conn, const conn_proto **vt) {
    h2_server *srv = arg;
    h2_session *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->server = srv;
    s->conn = conn;
    nghttp2_session_callbacks *cbs;
    if (nghttp2_session_callbacks_new(&cbs) != 0) {
        free(s);
        return NULL;
    }
    nghttp2_session_callbacks_set_send_callback(cbs, send_cb);
    nghttp2_session_callbacks_set_send_data_callback(cbs, send_data_cb);
    nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, on_begin_headers_cb);
    nghttp2_session_callbacks_set_on_header_callback(cbs, on_header_cb);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv_cb);
    nghttp2_session_callbacks_set_on_frame_send_callback(cbs, on_frame_send_cb);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk_cb);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close_cb);
    nghttp2_session_callbacks_set_error_callback2(cbs, on_error_cb);
    nghttp2_option *opt;
    nghttp2_option_new(&opt);
    /* Peers may open up to the advertised limit; refuse beyond it without
     * remembering closed streams for priority. */
    nghttp2_option_set_no_closed_streams(opt, 1);
    nghttp2_option_set_max_send_header_block_length(opt, 64 * 1024);
    int r = nghttp2_session_server_new2(&s->ng, cbs, s, opt);
    nghttp2_option_del(opt);
    nghttp2_session_callbacks_del(cbs);
    if (r != 0) {
        free(s);
        return NULL;
    }
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, srv->cfg.max_concurrent_streams},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 1 << 20},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, MAX_HEADER_LIST_SIZE},
    };
    nghttp2_submit_settings(s->ng, NGHTTP2_FLAG_NONE, iv, sizeof iv / sizeof iv[0]);
    /* A generous connection window so large requests are not throttled. */
    nghttp2_session_set_local_window_size(s->ng, NGHTTP2_FLAG_NONE, 0, 16 << 20);
    s->next = srv->sessions;
    if (srv->sessions) srv->sessions->prev = s;
    srv->sessions = s;
    srv->sessions_active++;
    srv->sessions_total++;
    if (srv->draining)
        nghttp2_submit_goaway(s->ng, NGHTTP2_FLAG_NONE, 0, NGHTTP2_NO_ERROR, NULL, 0);
    *vt = &h2_conn_proto;
    return s;
}
