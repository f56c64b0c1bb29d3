/*
 * bench_floor: the cheapest gRPC server the plugin's design allows, as the
 * baseline bench/run.sh compares the plugin to.
 *
 * Same loop design as the plugin: it reuses the plugin's own listener and
 * connection layer (src/loop/server.c, src/loop/conn.c: libuv reads fed to
 * one nghttp2 server session per connection, output batched into one
 * uv_write per loop iteration) and the same HTTP/2 settings. What it leaves
 * out is everything gRPC-specific: no routing, no deframing, no protobuf, no
 * handlers. Every request, whatever its path or body, gets the same answer
 * once its END_STREAM arrives:
 *
 *   HEADERS :status 200, content-type application/grpc
 *   DATA    one fixed length-prefixed message (176 bytes, like the plugin's
 *           CheckHealth answer without a URL)
 *   HEADERS grpc-status 0 (trailers, END_STREAM)
 *
 * Usage: bench_floor [--standalone] [--address HOST:PORT]   (default 127.0.0.1:0)
 * Prints "1|2|tcp|HOST:PORT|grpc|" on stdout like the plugin, and exits 0 on
 * SIGTERM/SIGINT.
 */
#include <nghttp2/nghttp2.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "log/hclog.h"
#include "loop/conn.h"
#include "loop/server.h"

#define BODY_MSG_LEN 171 /* + 5-byte prefix = 176 bytes of DATA */

static uint8_t g_body[5 + BODY_MSG_LEN];

typedef struct {
    conn_t *conn;
    nghttp2_session *ng;
} floor_session;

typedef struct {
    size_t off;
} floor_stream;

static void build_body(void) {
    /* A CheckHealthResponse-shaped message: status=2, message="…". */
    uint8_t *m = g_body + 5;
    size_t text = BODY_MSG_LEN - 4;
    m[0] = 0x08;
    m[1] = 0x02;
    m[2] = 0x12;
    m[3] = (uint8_t)text; /* < 128: one varint byte */
    memset(m + 4, 'x', text);
    g_body[0] = 0;
    g_body[1] = g_body[2] = g_body[3] = 0;
    g_body[4] = BODY_MSG_LEN;
}

static ssize_t send_cb(nghttp2_session *ng, const uint8_t *data, size_t len, int flags, void *user) {
    (void)ng; (void)flags;
    floor_session *s = user;
    int r = conn_append(s->conn, data, len);
    if (r == CONN_WOULDBLOCK) return NGHTTP2_ERR_WOULDBLOCK;
    if (r != 0) return NGHTTP2_ERR_CALLBACK_FAILURE;
    return (ssize_t)len;
}

static ssize_t body_read_cb(nghttp2_session *ng, int32_t stream_id, uint8_t *buf, size_t length,
                            uint32_t *flags, nghttp2_data_source *src, void *user) {
    (void)user;
    floor_stream *st = src->ptr;
    size_t n = sizeof g_body - st->off;
    if (n > length) n = length;
    memcpy(buf, g_body + st->off, n);
    st->off += n;
    if (st->off == sizeof g_body) {
        static const nghttp2_nv trailers[] = {
            {(uint8_t *)"grpc-status", (uint8_t *)"0", 11, 1, NGHTTP2_NV_FLAG_NO_COPY_NAME | NGHTTP2_NV_FLAG_NO_COPY_VALUE},
        };
        *flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
        nghttp2_submit_trailer(ng, stream_id, trailers, 1);
    }
    return (ssize_t)n;
}

static void respond(floor_session *s, int32_t stream_id) {
    if (nghttp2_session_get_stream_user_data(s->ng, stream_id)) return; /* already answered */
    floor_stream *st = calloc(1, sizeof *st);
    if (!st) {
        nghttp2_submit_rst_stream(s->ng, NGHTTP2_FLAG_NONE, stream_id, NGHTTP2_INTERNAL_ERROR);
        return;
    }
    nghttp2_session_set_stream_user_data(s->ng, stream_id, st);
    static const nghttp2_nv headers[] = {
        {(uint8_t *)":status", (uint8_t *)"200", 7, 3, NGHTTP2_NV_FLAG_NO_COPY_NAME | NGHTTP2_NV_FLAG_NO_COPY_VALUE},
        {(uint8_t *)"content-type", (uint8_t *)"application/grpc", 12, 16,
         NGHTTP2_NV_FLAG_NO_COPY_NAME | NGHTTP2_NV_FLAG_NO_COPY_VALUE},
    };
    nghttp2_data_provider dp = {.source.ptr = st, .read_callback = body_read_cb};
    nghttp2_submit_response(s->ng, stream_id, headers, 2, &dp);
}

static int on_frame_recv_cb(nghttp2_session *ng, const nghttp2_frame *frame, void *user) {
    (void)ng;
    floor_session *s = user;
    if ((frame->hd.type == NGHTTP2_HEADERS || frame->hd.type == NGHTTP2_DATA) &&
        (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) && frame->hd.stream_id > 0)
        respond(s, frame->hd.stream_id);
    return 0;
}

static int on_stream_close_cb(nghttp2_session *ng, int32_t stream_id, uint32_t error_code, void *user) {
    (void)error_code; (void)user;
    free(nghttp2_session_get_stream_user_data(ng, stream_id));
    nghttp2_session_set_stream_user_data(ng, stream_id, NULL);
    return 0;
}

/* ---- conn_proto ------------------------------------------------------------ */

static int fl_on_recv(void *p, const uint8_t *data, size_t len) {
    floor_session *s = p;
    ssize_t r = nghttp2_session_mem_recv(s->ng, data, len);
    if (r < 0) {
        nghttp2_session_terminate_session(s->ng, NGHTTP2_PROTOCOL_ERROR);
        return -1;
    }
    /* Past the preface: the server's handshake timeout no longer applies. */
    if (!s->conn->established) conn_mark_established(s->conn);
    return 0;
}

static int fl_on_flush(void *p) {
    floor_session *s = p;
    return nghttp2_session_send(s->ng) == 0 ? 0 : -1;
}

static bool fl_is_alive(void *p) {
    floor_session *s = p;
    return nghttp2_session_want_read(s->ng) || nghttp2_session_want_write(s->ng);
}

static void fl_on_close(void *p) {
    floor_session *s = p;
    nghttp2_session_del(s->ng); /* frees the remaining streams' user data via on_stream_close */
    free(s);
}

static const conn_proto floor_proto = {
    .on_recv = fl_on_recv,
    .on_flush = fl_on_flush,
    .is_alive = fl_is_alive,
    .on_close = fl_on_close,
};

static void *floor_make_session(void *arg, conn_t *c, const conn_proto **vt) {
    (void)arg;
    floor_session *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->conn = c;
    nghttp2_session_callbacks *cbs;
    if (nghttp2_session_callbacks_new(&cbs) != 0) {
        free(s);
        return NULL;
    }
    nghttp2_session_callbacks_set_send_callback(cbs, send_cb);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv_cb);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close_cb);
    nghttp2_option *opt;
    nghttp2_option_new(&opt);
    nghttp2_option_set_no_closed_streams(opt, 1);
    int r = nghttp2_session_server_new2(&s->ng, cbs, s, opt);
    nghttp2_option_del(opt);
    nghttp2_session_callbacks_del(cbs);
    if (r != 0) {
        free(s);
        return NULL;
    }
    /* The plugin's settings, so both sides negotiate the same windows. */
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 1000},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 1 << 20},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, 64 * 1024},
    };
    nghttp2_submit_settings(s->ng, NGHTTP2_FLAG_NONE, iv, sizeof iv / sizeof iv[0]);
    nghttp2_session_set_local_window_size(s->ng, NGHTTP2_FLAG_NONE, 0, 16 << 20);
    *vt = &floor_proto;
    return s;
}

/* ---- process ------------------------------------------------------------------ */

static uv_loop_t g_loop;
static srv_t g_srv;
static uv_signal_t g_sigterm, g_sigint;

static void close_any(uv_handle_t *h, void *arg) {
    (void)arg;
    if (!uv_is_closing(h)) uv_close(h, NULL);
}

static void on_signal(uv_signal_t *h, int signum) {
    (void)h; (void)signum;
    srv_stop_listening(&g_srv);
    srv_close_all(&g_srv, false);
    srv_dispose(&g_srv);
    uv_walk(&g_loop, close_any, NULL);
}

int main(int argc, char **argv) {
    const char *address = "127.0.0.1:0";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--address") && i + 1 < argc) address = argv[++i];
        else if (!strcmp(argv[i], "--standalone")) continue;
        else {
            fprintf(stderr, "usage: %s [--standalone] [--address HOST:PORT]\n", argv[0]);
            return 2;
        }
    }
    hclog_init("bench-floor", HCLOG_WARN);
    signal(SIGPIPE, SIG_IGN);
    build_body();
    uv_loop_init(&g_loop);
    if (srv_init(&g_srv, &g_loop, floor_make_session, NULL) != 0) return 1;
    char err[256];
    if (srv_listen_tcp(&g_srv, address, err, sizeof err) != 0) {
        fprintf(stderr, "bench_floor: %s\n", err);
        return 1;
    }
    uv_signal_init(&g_loop, &g_sigterm);
    uv_signal_init(&g_loop, &g_sigint);
    uv_signal_start(&g_sigterm, on_signal, SIGTERM);
    uv_signal_start(&g_sigint, on_signal, SIGINT);
    char line[200];
    int n = snprintf(line, sizeof line, "1|2|tcp|%s|grpc|\n", g_srv.address);
    if (write(STDOUT_FILENO, line, (size_t)n) != n) return 1;
    uv_run(&g_loop, UV_RUN_DEFAULT);
    uv_loop_close(&g_loop);
    return 0;
}
