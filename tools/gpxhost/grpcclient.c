#include "grpcclient.h"

#include <netdb.h>
#include <nghttp2/nghttp2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "h2/grpc_wire.h"
#include "util/buf.h"

#ifndef PLUGIN_VERSION
#define PLUGIN_VERSION "0.0.0"
#endif

#define LOCAL_DEADLINE_SLACK_MS 250 /* let the plugin's own DEADLINE_EXCEEDED arrive first */
#define MAX_HEADER_VALUE 8192       /* longest grpc-message / content-type we keep */
#define CONN_WINDOW (1 << 26)
#define STREAM_WINDOW (1 << 24)

struct gc_call {
    gc_conn *conn;
    gc_call *next;          /* active list, then finished queue */
    int32_t stream_id;
    uint8_t *req;           /* prefix + message */
    size_t req_len, req_off;
    grpc_deframer df;
    uv_timer_t timer;
    uint64_t timeout_ms;
    int http_status;
    char *content_type;
    bool have_grpc_status, grpc_status_bad;
    int grpc_status;
    char *grpc_message;
    int local_code;         /* -1: none; else the outcome we decided */
    char local_msg[512];
    uint32_t rst_code;
    bool closed;            /* stream over (or abandoned) */
    gc_message_cb on_message;
    gc_done_cb on_done;
    void *arg;
};

struct gc_conn {
    uv_loop_t *loop;
    union {
        uv_handle_t h;
        uv_stream_t s;
        uv_pipe_t pipe;
        uv_tcp_t tcp;
    } io;
    bool io_inited;
    uv_connect_t creq;
    uv_getaddrinfo_t gai;
    uv_shutdown_t sreq;
    nghttp2_session *session;
    pp_endpoint ep;
    gc_connect_cb on_connect;
    void *connect_arg;
    bool connected, dead, closing, processing, connect_reported, recv_failed;
    char dead_msg[512];
    char end_reason[400];   /* why nghttp2 ended the session, when it says */
    gc_call *active;
    gc_call *fin_head, *fin_tail;
    size_t writes_pending;
    int refs;               /* io handle, getaddrinfo, call timers still open */
    gc_closed_cb on_closed;
    void *closed_arg;
    uint8_t rbuf[65536];
};

typedef struct {
    uv_write_t req;
    gc_conn *conn;
    char *data;
} write_req;

static void pump(gc_conn *c);
static void conn_dead(gc_conn *c, const char *msg);

/* ---- small pure helpers -------------------------------------------------- */

static int hexval(char ch) {
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

size_t gc_percent_decode(char *out, size_t cap, const char *in, size_t len) {
    size_t o = 0;
    if (!cap) return 0;
    for (size_t i = 0; i < len && o + 1 < cap; i++) {
        if (in[i] == '%' && i + 2 < len && hexval(in[i + 1]) >= 0 && hexval(in[i + 2]) >= 0) {
            out[o++] = (char)(hexval(in[i + 1]) * 16 + hexval(in[i + 2]));
            i += 2;
        } else {
            out[o++] = in[i];
        }
    }
    out[o] = '\0';
    return o;
}

void gc_format_timeout(char *out, size_t cap, uint64_t ms) {
    static const struct { uint64_t div; char unit; } units[] = {
        {1, 'm'}, {1000, 'S'}, {60000, 'M'}, {3600000, 'H'}};
    for (size_t i = 0; i < 4; i++) {
        uint64_t v = (ms + units[i].div - 1) / units[i].div; /* round up: never shorten a deadline */
        if (v <= 99999999u || i == 3) {
            if (v > 99999999u) v = 99999999u;
            snprintf(out, cap, "%llu%c", (unsigned long long)v, units[i].unit);
            return;
        }
    }
}

static char *dup_bounded(const uint8_t *v, size_t n) {
    if (n > MAX_HEADER_VALUE) n = MAX_HEADER_VALUE;
    char *s = malloc(n + 1);
    if (!s) return NULL;
    memcpy(s, v, n);
    s[n] = '\0';
    return s;
}

/* grpc-go's mapping of a non-200 HTTP status to a gRPC code. */
static int http_to_grpc(int status) {
    switch (status) {
    case 400: return GRPC_INTERNAL;
    case 401: return GRPC_UNAUTHENTICATED;
    case 403: return GRPC_PERMISSION_DENIED;
    case 404: return GRPC_UNIMPLEMENTED;
    case 429: case 502: case 503: case 504: return GRPC_UNAVAILABLE;
    default: return GRPC_UNKNOWN;
    }
}

/* ---- call lifecycle ---------------------------------------------------------- */

static void set_local(gc_call *call, int code, const char *msg) {
    if (call->local_code >= 0) return; /* the first reason wins */
    call->local_code = code;
    snprintf(call->local_msg, sizeof call->local_msg, "%s", msg);
}

void gc_call_fail(gc_call *call, int code, const char *msg) { set_local(call, code, msg); }

static void unlink_active(gc_conn *c, gc_call *call) {
    for (gc_call **pp = &c->active; *pp; pp = &(*pp)->next)
        if (*pp == call) {
            *pp = call->next;
            call->next = NULL;
            return;
        }
}

/* The stream is over: queue the call for on_done (delivered by pump). */
static void finish_call(gc_call *call) {
    if (call->closed) return;
    call->closed = true;
    gc_conn *c = call->conn;
    uv_timer_stop(&call->timer);
    if (c->session && call->stream_id > 0) nghttp2_session_set_stream_user_data(c->session, call->stream_id, NULL);
    unlink_active(c, call);
    if (c->fin_tail) c->fin_tail->next = call;
    else c->fin_head = call;
    c->fin_tail = call;
}

static void outcome(gc_call *call, int *code, char *msg, size_t cap) {
    if (call->local_code >= 0) {
        *code = call->local_code;
        snprintf(msg, cap, "%s", call->local_msg);
        return;
    }
    if (call->http_status && call->http_status != 200) {
        *code = http_to_grpc(call->http_status);
        snprintf(msg, cap, "unexpected HTTP status %d from the plugin%s%s", call->http_status,
                 call->grpc_message ? ": " : "", call->grpc_message ? call->grpc_message : "");
        return;
    }
    if (call->have_grpc_status) {
        if (call->grpc_status_bad) {
            *code = GRPC_UNKNOWN;
            snprintf(msg, cap, "malformed grpc-status trailer from the plugin");
            return;
        }
        if (call->content_type && strncmp(call->content_type, "application/grpc", 16) != 0) {
            *code = GRPC_UNKNOWN;
            snprintf(msg, cap, "unexpected content-type \"%.100s\" from the plugin", call->content_type);
            return;
        }
        *code = call->grpc_status;
        if (call->grpc_message) gc_percent_decode(msg, cap, call->grpc_message, strlen(call->grpc_message));
        else msg[0] = '\0';
        if (*code == GRPC_OK && !grpc_deframer_at_boundary(&call->df)) {
            *code = GRPC_INTERNAL;
            snprintf(msg, cap, "the response ended inside a message");
        }
        return;
    }
    if (call->rst_code != NGHTTP2_NO_ERROR) {
        *code = call->rst_code == NGHTTP2_CANCEL ? GRPC_CANCELLED
              : call->rst_code == NGHTTP2_REFUSED_STREAM ? GRPC_UNAVAILABLE : GRPC_INTERNAL;
        snprintf(msg, cap, "stream reset by the plugin (%s)", nghttp2_http2_strerror(call->rst_code));
        return;
    }
    *code = GRPC_INTERNAL;
    snprintf(msg, cap, "the stream ended without a grpc-status trailer");
}

static void on_call_timer_closed(uv_handle_t *h) {
    gc_call *call = h->data;
    gc_conn *c = call->conn;
    grpc_deframer_free(&call->df);
    free(call->req);
    free(call->content_type);
    free(call->grpc_message);
    free(call);
    c->refs--;
    pump(c);
}

static void deliver_finished(gc_conn *c) {
    if (c->processing) return; /* the outer loop picks up what nested calls queue */
    c->processing = true;
    while (c->fin_head) {
        gc_call *call = c->fin_head;
        c->fin_head = call->next;
        if (!c->fin_head) c->fin_tail = NULL;
        call->next = NULL;
        int code;
        char msg[1024];
        outcome(call, &code, msg, sizeof msg);
        if (call->on_done) call->on_done(call, call->arg, code, msg);
        call->timer.data = call;
        uv_close((uv_handle_t *)&call->timer, on_call_timer_closed);
    }
    c->processing = false;
}

/* ---- I/O ---------------------------------------------------------------------- */

static void maybe_finish_close(gc_conn *c);

static void on_io_closed(uv_handle_t *h) {
    gc_conn *c = h->data;
    c->refs--;
    maybe_finish_close(c);
}

static void close_io(gc_conn *c) {
    if (c->io_inited && !uv_is_closing(&c->io.h)) {
        c->io.h.data = c;
        uv_close(&c->io.h, on_io_closed);
    }
}

static void on_shutdown(uv_shutdown_t *req, int status) {
    (void)status;
    gc_conn *c = req->data;
    close_io(c);
}

static void maybe_finish_close(gc_conn *c) {
    if (!c->closing) return;
    if (c->writes_pending == 0 && c->io_inited && !uv_is_closing(&c->io.h)) {
        if (c->connected && !c->dead) {
            c->sreq.data = c;
            if (uv_shutdown(&c->sreq, &c->io.s, on_shutdown) == 0) {
                c->dead = true; /* nothing more goes out */
                return;
            }
        }
        close_io(c);
    }
    if (c->refs > 0 || c->fin_head || c->processing) return;
    gc_closed_cb cb = c->on_closed;
    void *arg = c->closed_arg;
    c->on_closed = NULL;
    if (c->session) nghttp2_session_del(c->session);
    c->session = NULL;
    free(c);
    if (cb) cb(arg);
}

static void on_write(uv_write_t *req, int status) {
    write_req *w = (write_req *)req;
    gc_conn *c = w->conn;
    free(w->data);
    free(w);
    c->writes_pending--;
    if (status < 0 && status != UV_ECANCELED) {
        char msg[200];
        snprintf(msg, sizeof msg, "writing to the plugin failed: %s", uv_strerror(status));
        conn_dead(c, msg);
    }
    pump(c);
}

static void flush(gc_conn *c) {
    if (c->dead || !c->session || !c->connected) return;
    buf_t out;
    buf_init(&out);
    for (;;) {
        const uint8_t *data;
        ssize_t n = nghttp2_session_mem_send(c->session, &data);
        if (n < 0) {
            buf_free(&out);
            char msg[200];
            snprintf(msg, sizeof msg, "HTTP/2 error while sending: %s", nghttp2_strerror((int)n));
            conn_dead(c, msg);
            return;
        }
        if (n == 0) break;
        buf_append(&out, data, (size_t)n);
    }
    if (!buf_ok(&out)) {
        buf_free(&out);
        conn_dead(c, "out of memory");
        return;
    }
    if (out.len) {
        write_req *w = calloc(1, sizeof *w);
        if (!w) {
            buf_free(&out);
            conn_dead(c, "out of memory");
            return;
        }
        w->conn = c;
        w->data = out.data;
        uv_buf_t b = uv_buf_init(out.data, (unsigned)out.len);
        int r = uv_write(&w->req, &c->io.s, &b, 1, on_write);
        if (r < 0) {
            free(w->data);
            free(w);
            char msg[200];
            snprintf(msg, sizeof msg, "writing to the plugin failed: %s", uv_strerror(r));
            conn_dead(c, msg);
            return;
        }
        c->writes_pending++;
    }
    if (!c->recv_failed && !nghttp2_session_want_read(c->session) && !nghttp2_session_want_write(c->session) &&
        c->writes_pending == 0)
        conn_dead(c, c->end_reason[0] ? c->end_reason : "the HTTP/2 session with the plugin ended");
}

/* Sends what nghttp2 has queued, delivers finished calls, continues a close. */
static void pump(gc_conn *c) {
    flush(c);
    deliver_finished(c);
    if (c->closing) maybe_finish_close(c);
}

static void conn_dead(gc_conn *c, const char *msg) {
    if (c->dead) return;
    c->dead = true;
    snprintf(c->dead_msg, sizeof c->dead_msg, "%s", msg);
    if (c->io_inited && c->connected) uv_read_stop(&c->io.s);
    while (c->active) {
        gc_call *call = c->active;
        set_local(call, GRPC_UNAVAILABLE, msg);
        finish_call(call);
    }
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *b) {
    (void)suggested;
    gc_conn *c = h->data;
    *b = uv_buf_init((char *)c->rbuf, sizeof c->rbuf);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b) {
    gc_conn *c = s->data;
    if (nread == 0) return;
    if (nread < 0) {
        char msg[480];
        if (c->end_reason[0]) snprintf(msg, sizeof msg, "%s", c->end_reason);
        else if (nread == UV_EOF) snprintf(msg, sizeof msg, "the plugin closed the connection");
        else snprintf(msg, sizeof msg, "reading from the plugin failed: %s", uv_strerror((int)nread));
        conn_dead(c, msg);
        pump(c);
        return;
    }
    if ((size_t)nread > sizeof c->rbuf) { /* cannot happen: libuv reads at most the buffer */
        conn_dead(c, "read overflow");
        pump(c);
        return;
    }
    ssize_t r = nghttp2_session_mem_recv(c->session, (const uint8_t *)b->base, (size_t)nread);
    if (r < 0 || r != nread) {
        char msg[200];
        snprintf(msg, sizeof msg, "HTTP/2 protocol error from the plugin: %s",
                 r < 0 ? nghttp2_strerror((int)r) : "input not consumed");
        c->recv_failed = true;
        flush(c); /* GOAWAY, if nghttp2 queued one */
        conn_dead(c, msg);
    }
    pump(c);
}

/* ---- nghttp2 callbacks ---------------------------------------------------------- */

static gc_call *call_of(nghttp2_session *s, int32_t stream_id) {
    return stream_id > 0 ? nghttp2_session_get_stream_user_data(s, stream_id) : NULL;
}

static int on_header(nghttp2_session *s, const nghttp2_frame *frame, const uint8_t *name, size_t namelen,
                     const uint8_t *value, size_t valuelen, uint8_t flags, void *ud) {
    (void)flags;
    (void)ud;
    if (frame->hd.type != NGHTTP2_HEADERS) return 0;
    gc_call *call = call_of(s, frame->hd.stream_id);
    if (!call) return 0;
#define IS(lit) (namelen == sizeof(lit) - 1 && memcmp(name, lit, namelen) == 0)
    if (IS(":status")) {
        int v = valuelen == 3 ? 0 : -1;
        for (size_t i = 0; v >= 0 && i < valuelen; i++)
            v = (value[i] >= '0' && value[i] <= '9') ? v * 10 + (value[i] - '0') : -1;
        call->http_status = v >= 100 ? v : 999; /* 999: not a valid status line at all */
    } else if (IS("content-type")) {
        free(call->content_type);
        call->content_type = dup_bounded(value, valuelen);
    } else if (IS("grpc-status")) {
        call->have_grpc_status = true;
        int v = 0;
        bool ok = valuelen > 0 && valuelen <= 3;
        for (size_t i = 0; ok && i < valuelen; i++) {
            if (value[i] < '0' || value[i] > '9') ok = false;
            else v = v * 10 + (value[i] - '0');
        }
        call->grpc_status = v;
        call->grpc_status_bad = !ok;
    } else if (IS("grpc-message")) {
        free(call->grpc_message);
        call->grpc_message = dup_bounded(value, valuelen);
    }
#undef IS
    return 0;
}

typedef struct {
    gc_call *call;
    bool failed;
} deliver_ctx;

static int deliver_message(void *arg, const uint8_t *msg, size_t len) {
    deliver_ctx *d = arg;
    gc_call *call = d->call;
    if (call->on_message && call->on_message(call, call->arg, msg, len) != 0) {
        set_local(call, GRPC_INTERNAL, "the plugin's response message could not be decoded");
        d->failed = true;
        return 1;
    }
    return 0;
}

static int on_data_chunk(nghttp2_session *s, uint8_t flags, int32_t stream_id, const uint8_t *data, size_t len,
                         void *ud) {
    (void)flags;
    (void)ud;
    gc_call *call = call_of(s, stream_id);
    if (!call || call->local_code >= 0) return 0;
    deliver_ctx d = {call, false};
    grpc_deframe_result r = grpc_deframer_feed(&call->df, data, len, deliver_message, &d);
    char msg[200];
    switch (r) {
    case GRPC_DEFRAME_OK: break;
    case GRPC_DEFRAME_TOO_LARGE:
        snprintf(msg, sizeof msg, "response message of %u bytes exceeds gpxhost's limit of %u bytes",
                 call->df.declared, GC_MAX_MESSAGE);
        set_local(call, GRPC_RESOURCE_EXHAUSTED, msg);
        break;
    case GRPC_DEFRAME_COMPRESSED:
        set_local(call, GRPC_INTERNAL, "compressed response message, but no compression was negotiated");
        break;
    case GRPC_DEFRAME_BAD_FLAG:
        set_local(call, GRPC_INTERNAL, "invalid compressed-flag byte in a response message");
        break;
    case GRPC_DEFRAME_NO_MEMORY: set_local(call, GRPC_RESOURCE_EXHAUSTED, "out of memory"); break;
    }
    if (call->local_code >= 0) nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, stream_id, NGHTTP2_CANCEL);
    return 0;
}

static int on_stream_close(nghttp2_session *s, int32_t stream_id, uint32_t error_code, void *ud) {
    (void)ud;
    gc_call *call = call_of(s, stream_id);
    if (!call) return 0;
    call->rst_code = error_code;
    finish_call(call);
    return 0;
}

static int on_error2(nghttp2_session *s, int lib_error_code, const char *msg, size_t len, void *ud) {
    (void)s;
    (void)lib_error_code;
    gc_conn *c = ud;
    if (!c->end_reason[0])
        snprintf(c->end_reason, sizeof c->end_reason, "HTTP/2 protocol error from the plugin: %.*s", (int)len, msg);
    return 0;
}

static int on_frame_recv(nghttp2_session *s, const nghttp2_frame *frame, void *ud) {
    (void)s;
    gc_conn *c = ud;
    if (frame->hd.type == NGHTTP2_GOAWAY && !c->end_reason[0])
        snprintf(c->end_reason, sizeof c->end_reason, "the plugin ended the HTTP/2 session (GOAWAY %s)",
                 nghttp2_http2_strerror(frame->goaway.error_code));
    return 0;
}

static int on_frame_send(nghttp2_session *s, const nghttp2_frame *frame, void *ud) {
    (void)s;
    gc_conn *c = ud;
    if (frame->hd.type == NGHTTP2_GOAWAY && frame->goaway.error_code != NGHTTP2_NO_ERROR && !c->end_reason[0]) {
        size_t n = frame->goaway.opaque_data_len;
        if (n > 200) n = 200;
        snprintf(c->end_reason, sizeof c->end_reason, "HTTP/2 protocol error from the plugin (%s%s%.*s)",
                 nghttp2_http2_strerror(frame->goaway.error_code), n ? ": " : "", (int)n,
                 n ? (const char *)frame->goaway.opaque_data : "");
    }
    return 0;
}

static ssize_t read_request(nghttp2_session *s, int32_t stream_id, uint8_t *buf, size_t length,
                            uint32_t *flags, nghttp2_data_source *src, void *ud) {
    (void)s;
    (void)stream_id;
    (void)ud;
    gc_call *call = src->ptr;
    size_t n = call->req_len - call->req_off;
    if (n > length) n = length;
    memcpy(buf, call->req + call->req_off, n);
    call->req_off += n;
    if (call->req_off == call->req_len) *flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}

/* ---- connecting ---------------------------------------------------------------------- */

static void report_connect(gc_conn *c, int status, const char *err) {
    if (c->connect_reported || c->closing) return;
    c->connect_reported = true;
    if (c->on_connect) c->on_connect(c, c->connect_arg, status, err);
}

static void on_connected(uv_connect_t *req, int status) {
    gc_conn *c = req->data;
    if (status < 0) {
        char msg[400];
        snprintf(msg, sizeof msg, "cannot connect to the plugin at %s:%s: %s",
                 c->ep.net == PP_NET_UNIX ? "unix" : "tcp", c->ep.address, uv_strerror(status));
        c->dead = true;
        snprintf(c->dead_msg, sizeof c->dead_msg, "%s", msg);
        report_connect(c, status, msg);
        if (c->closing) maybe_finish_close(c);
        return;
    }
    /* A call is HEADERS then DATA: with Nagle on, the DATA write would wait
     * for the server's (delayed) ACK of the HEADERS. */
    if (c->ep.net == PP_NET_TCP) uv_tcp_nodelay(&c->io.tcp, 1);
    nghttp2_session_callbacks *cbs;
    if (nghttp2_session_callbacks_new(&cbs) != 0) {
        c->dead = true;
        report_connect(c, UV_ENOMEM, "out of memory");
        return;
    }
    nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
    nghttp2_session_callbacks_set_error_callback2(cbs, on_error2);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
    nghttp2_session_callbacks_set_on_frame_send_callback(cbs, on_frame_send);
    int r = nghttp2_session_client_new(&c->session, cbs, c);
    nghttp2_session_callbacks_del(cbs);
    if (r != 0) {
        c->dead = true;
        report_connect(c, UV_ENOMEM, "cannot create the HTTP/2 session");
        return;
    }
    /* The client magic goes out with the first send; then our SETTINGS. */
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, STREAM_WINDOW},
    };
    nghttp2_submit_settings(c->session, NGHTTP2_FLAG_NONE, iv, sizeof iv / sizeof iv[0]);
    nghttp2_session_set_local_window_size(c->session, NGHTTP2_FLAG_NONE, 0, CONN_WINDOW);
    c->connected = true;
    c->io.h.data = c;
    uv_read_start(&c->io.s, alloc_cb, on_read);
    flush(c);
    report_connect(c, 0, NULL);
    pump(c);
}

static void start_connect(gc_conn *c, const struct sockaddr *addr) {
    if (uv_tcp_init(c->loop, &c->io.tcp) != 0) {
        c->dead = true;
        report_connect(c, UV_ENOMEM, "cannot create a TCP handle");
        return;
    }
    c->io_inited = true;
    c->refs++;
    c->io.h.data = c;
    c->creq.data = c;
    int r = uv_tcp_connect(&c->creq, &c->io.tcp, addr, on_connected);
    if (r < 0) on_connected(&c->creq, r);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
    gc_conn *c = req->data;
    c->refs--;
    if (c->closing) {
        uv_freeaddrinfo(res);
        maybe_finish_close(c);
        return;
    }
    if (status < 0 || !res) {
        char msg[400];
        snprintf(msg, sizeof msg, "cannot resolve the plugin's address %s: %s", c->ep.address,
                 status < 0 ? uv_strerror(status) : "no address");
        c->dead = true;
        report_connect(c, status < 0 ? status : UV_EAI_NONAME, msg);
        uv_freeaddrinfo(res);
        return;
    }
    start_connect(c, res->ai_addr);
    uv_freeaddrinfo(res);
}

gc_conn *gc_connect(uv_loop_t *loop, const pp_endpoint *ep, gc_connect_cb cb, void *arg) {
    gc_conn *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->loop = loop;
    c->ep = *ep;
    c->on_connect = cb;
    c->connect_arg = arg;
    if (ep->net == PP_NET_UNIX) {
        uv_pipe_init(loop, &c->io.pipe, 0);
        c->io_inited = true;
        c->refs++;
        c->io.h.data = c;
        c->creq.data = c;
        uv_pipe_connect(&c->creq, &c->io.pipe, ep->address, on_connected);
        return c;
    }
    /* host:port, [v6]:port or :port (localhost). */
    char host[256], port[16];
    const char *colon = strrchr(ep->address, ':');
    size_t hl = colon ? (size_t)(colon - ep->address) : 0;
    const char *h = ep->address;
    if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
        h++;
        hl -= 2;
    }
    if (hl >= sizeof host) hl = sizeof host - 1;
    memcpy(host, h, hl);
    host[hl] = '\0';
    if (!hl) snprintf(host, sizeof host, "127.0.0.1");
    snprintf(port, sizeof port, "%s", colon ? colon + 1 : "0");
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    c->gai.data = c;
    c->refs++;
    int r = uv_getaddrinfo(loop, &c->gai, on_resolved, host, port, &hints);
    if (r < 0) on_resolved(&c->gai, r, NULL);
    return c;
}

bool gc_usable(const gc_conn *c) { return c && c->connected && !c->dead && !c->closing; }

/* ---- calls ----------------------------------------------------------------------------- */

static void on_call_timer(uv_timer_t *t) {
    gc_call *call = t->data;
    gc_conn *c = call->conn;
    char msg[200];
    snprintf(msg, sizeof msg, "deadline exceeded: no answer from the plugin within %llu ms",
             (unsigned long long)call->timeout_ms);
    set_local(call, GRPC_DEADLINE_EXCEEDED, msg);
    if (c->session && !c->dead && call->stream_id > 0)
        nghttp2_submit_rst_stream(c->session, NGHTTP2_FLAG_NONE, call->stream_id, NGHTTP2_CANCEL);
    else finish_call(call);
    pump(c);
}

gc_call *gc_call_start(gc_conn *c, const char *path, const uint8_t *req, size_t req_len, uint64_t timeout_ms,
                       gc_message_cb on_message, gc_done_cb on_done, void *arg) {
    if (!gc_usable(c) || req_len > UINT32_MAX) return NULL;
    gc_call *call = calloc(1, sizeof *call);
    if (!call) return NULL;
    call->req = malloc(req_len + GRPC_PREFIX_LEN);
    if (!call->req) {
        free(call);
        return NULL;
    }
    grpc_write_prefix(call->req, (uint32_t)req_len);
    if (req_len) memcpy(call->req + GRPC_PREFIX_LEN, req, req_len);
    call->req_len = req_len + GRPC_PREFIX_LEN;
    call->conn = c;
    call->local_code = -1;
    call->timeout_ms = timeout_ms;
    call->on_message = on_message;
    call->on_done = on_done;
    call->arg = arg;
    grpc_deframer_init(&call->df, GC_MAX_MESSAGE);

    char tmo[32] = "";
    if (timeout_ms) gc_format_timeout(tmo, sizeof tmo, timeout_ms);
    const char *ua = "gpxhost/" PLUGIN_VERSION;
#define NV(n, v) {(uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, strlen(v), NGHTTP2_NV_FLAG_NONE}
    nghttp2_nv nva[] = {
        NV(":method", "POST"), NV(":scheme", "http"), NV(":path", path), NV(":authority", "unused"),
        NV("content-type", "application/grpc"), NV("te", "trailers"), NV("user-agent", ua),
        NV("grpc-timeout", tmo),
    };
#undef NV
    size_t nnv = sizeof nva / sizeof nva[0] - (timeout_ms ? 0 : 1);
    nghttp2_data_provider dp;
    dp.source.ptr = call;
    dp.read_callback = read_request;
    int32_t sid = nghttp2_submit_request(c->session, NULL, nva, nnv, &dp, call);
    if (sid < 0) {
        grpc_deframer_free(&call->df);
        free(call->req);
        free(call);
        return NULL;
    }
    call->stream_id = sid;
    uv_timer_init(c->loop, &call->timer);
    call->timer.data = call;
    c->refs++;
    if (timeout_ms) uv_timer_start(&call->timer, on_call_timer, timeout_ms + LOCAL_DEADLINE_SLACK_MS, 0);
    call->next = c->active;
    c->active = call;
    pump(c);
    return call;
}

void gc_call_cancel(gc_call *call, const char *why) {
    gc_conn *c = call->conn;
    if (call->closed) return;
    set_local(call, GRPC_CANCELLED, why ? why : "cancelled");
    if (c->session && !c->dead && call->stream_id > 0)
        nghttp2_submit_rst_stream(c->session, NGHTTP2_FLAG_NONE, call->stream_id, NGHTTP2_CANCEL);
    else finish_call(call);
    pump(c);
}

void gc_close(gc_conn *c, gc_closed_cb closed_cb, void *arg) {
    if (c->closing) return;
    c->closing = true;
    c->on_closed = closed_cb;
    c->closed_arg = arg;
    while (c->active) {
        gc_call *call = c->active;
        set_local(call, GRPC_CANCELLED, "the connection was closed by gpxhost");
        if (c->session && !c->dead && call->stream_id > 0)
            nghttp2_submit_rst_stream(c->session, NGHTTP2_FLAG_NONE, call->stream_id, NGHTTP2_CANCEL);
        finish_call(call);
    }
    if (c->session && !c->dead && c->connected) nghttp2_session_terminate_session(c->session, NGHTTP2_NO_ERROR);
    if (c->refs > 0 && c->io_inited && !c->connected && !c->dead) {
        /* Still connecting: closing the handle cancels the connect request. */
        close_io(c);
    }
    if (!c->io_inited && c->refs > 0) uv_cancel((uv_req_t *)&c->gai);
    pump(c);
}
