/*
 * fuzz_h2_session: a whole server-side HTTP/2 + gRPC session, in memory.
 *
 * The real pieces: the h2 session (src/h2/session.c) behind its conn_proto,
 * the real router and handlers (hnd_build_router), call lifetimes, deadline
 * timers and threadpool work on a real uv loop. The fake piece: the conn_t
 * has no socket. The harness plays the connection's part (src/loop/conn.c):
 * it hands input bytes to on_recv, calls on_flush and throws the output away,
 * closes when the protocol asks to, and runs the loop in between so timers,
 * threadpool work and handle closes complete. The server's prepare-handle
 * flusher is stopped: it would write to the (absent) socket.
 *
 * Input layout:
 *   [0]   flags
 *         bit0: do NOT send the client preface + empty SETTINGS first
 *               (the input must bring its own; exercises the bad-preface path)
 *         bit1: drain the server (GOAWAY + cancel held-open streams, like a
 *               SIGTERM) after the last chunk
 *         bit2: tight limits (1 KiB per request, 2 KiB buffered, 4 streams)
 *         bit3: cancel every running call (the grace timer) before closing
 *         bit4: slow peer: a write of almost CONN_OUT_HIGH bytes stays in
 *               flight, and only 1 KiB of new output is "written" per flush
 *               round (4 rounds per flush), so output backs up past the
 *               high-water mark and nghttp2 sees WOULDBLOCK after ~1 KiB
 *         bit5: two connections; read k goes to connection k % 2 (shared
 *               request budget, drain and cancel-all across sessions)
 *   rest  HTTP/2 client bytes, cut into separate reads at the 4-byte
 *         delimiter FE ED FA CE; between reads the harness flushes and runs
 *         the loop, so e.g. an RST_STREAM can arrive while a handler's
 *         threadpool work is running.
 *
 * Checked on every input (besides ASan/UBSan/LSan): the request-byte budget
 * never exceeds its cap; after the connections are closed and the loop has
 * settled, no handler is still counted in flight, the budget is back to
 * zero, no session is registered, and a requested drain has completed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include "h2/session.h"
#include "handlers/handlers.h"
#include "log/hclog.h"
#include "loop/conn.h"
#include "loop/server.h"

#include "fuzz_check.h"

#define MAX_CHUNKS 64
#define MAX_FLUSH_ROUNDS 64

static const uint8_t delim[4] = {0xFE, 0xED, 0xFA, 0xCE};

/* "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + an empty SETTINGS frame. */
static const uint8_t preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
                                 "\x00\x00\x00\x04\x00\x00\x00\x00\x00";
#define PREFACE_LEN (sizeof preface - 1)

static uv_loop_t g_loop;
static srv_t g_srv;
static h2_server g_h2;
static hnd_env g_env;
static inst_cache g_instances; /* offline: fuzz inputs never reach the network */
static bool g_stop_requested;
static bool g_drained;
static uint64_t g_conn_ids;
static FILE *g_dump; /* FUZZ_H2_DUMP=file: keep the server's output (seed triage) */

static void fake_request_stop(const char *reason) {
    (void)reason;
    g_stop_requested = true; /* the Shutdown RPC: main would drain */
}

static void on_drained(h2_server *h2, void *arg) {
    (void)h2; (void)arg;
    g_drained = true;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc; (void)argv;
    /* FUZZ_LOG_LEVEL=debug shows what the plugin does with one input. */
    int lvl = hclog_level_parse(getenv("FUZZ_LOG_LEVEL"));
    hclog_init("plugin.seed-inhouse-datasource", lvl < 0 ? HCLOG_OFF : (hclog_level)lvl);
    const char *dump = getenv("FUZZ_H2_DUMP");
    if (dump && *dump) g_dump = fopen(dump, "wb");
    CHECK(uv_loop_init(&g_loop) == 0, "uv_loop_init");
    g_env.plugin_id = "seed-inhouse-datasource";
    g_env.version = "0.0.0-fuzz";
    g_env.h2 = &g_h2;
    g_env.srv = &g_srv;
    g_env.request_stop = fake_request_stop;
    g_env.start_time_unix = (double)time(NULL);
    inst_cache_init(&g_instances, &g_loop, "fuzz");
    g_instances.offline = true;
    g_env.instances = &g_instances;
    hnd_build_router(&g_env);
    CHECK(srv_init(&g_srv, &g_loop, h2_server_make_session, &g_h2) == 0, "srv_init");
    /* No sockets: flushes are driven by hand (see pump). */
    uv_prepare_stop(&g_srv.flusher);
    return 0;
}

#define SLOW_DRAIN_BYTES 1024
#define SLOW_ROUNDS 4

typedef struct {
    conn_t *c;
    bool closed;
    bool close_when_flushed;
    bool slow;
    bool stop_reading; /* on_recv asked to close: no more input for it */
    size_t out_total;
} fake_conn;

static void fake_close(fake_conn *f) {
    if (f->closed) return;
    f->closed = true;
    f->c->closing = true;
    f->c->proto_vt->on_close(f->c->proto); /* exactly once, like conn_close */
    f->c->proto = NULL;
}

/* The peer reads what we wrote: all of it, or a little in slow mode. */
static void drain_output(fake_conn *f) {
    conn_t *c = f->c;
    size_t n = c->out_len;
    if (f->slow && n > SLOW_DRAIN_BYTES) n = SLOW_DRAIN_BYTES;
    if (g_dump && n) fwrite(c->out, 1, n, g_dump);
    memmove(c->out, c->out + n, c->out_len - n);
    c->out_len -= n;
}

/* conn_flush_now without the socket: run on_flush until it has nothing more
 * to say, throwing the output away as if written, then close when asked to
 * or when the protocol is done and nothing is left to write. */
static void pump(fake_conn *f) {
    if (f->closed) return;
    conn_t *c = f->c;
    int rounds = f->slow ? SLOW_ROUNDS : MAX_FLUSH_ROUNDS;
    for (int round = 0; round < rounds; round++) {
        c->flush_queued = false;
        g_srv.flush_head = NULL;
        size_t before = c->out_len;
        int r = c->proto_vt->on_flush(c->proto);
        size_t produced = c->out_len - before;
        f->out_total += produced;
        drain_output(f);
        if (r != 0) {
            f->close_when_flushed = true;
            break;
        }
        if (produced == 0 && c->out_len == 0) break;
    }
    c->flush_queued = false;
    g_srv.flush_head = NULL;
    if (c->out_len == 0 && (f->close_when_flushed || !c->proto_vt->is_alive(c->proto))) fake_close(f);
}

#define MAX_CONNS 2

static fake_conn g_conns[MAX_CONNS];
static int g_nconns;

static void pump_all(void) {
    for (int i = 0; i < g_nconns; i++) pump(&g_conns[i]);
}

/* Lets due timers fire and threadpool work finish (bounded). */
static void settle(void) {
    for (int i = 0; i < 3; i++) {
        uv_run(&g_loop, UV_RUN_NOWAIT);
        pump_all();
    }
    for (int i = 0; i < 100 && g_loop.active_reqs.count > 0; i++) {
        uv_run(&g_loop, UV_RUN_ONCE); /* wakes when the work is done */
        pump_all();
    }
}

static void start_drain(void) {
    if (g_h2.draining) return;
    h2_server_drain(&g_h2, on_drained, NULL);
    pump_all();
}

static const uint8_t *find_delim(const uint8_t *p, size_t len) {
    return len >= sizeof delim ? memmem(p, len, delim, sizeof delim) : NULL;
}

static void open_conn(fake_conn *f, bool slow, bool send_preface) {
    memset(f, 0, sizeof *f);
    f->slow = slow;
    f->c = calloc(1, sizeof *f->c);
    CHECK(f->c != NULL, "oom");
    f->c->srv = &g_srv;
    f->c->id = ++g_conn_ids;
    if (slow) {
        /* A stalled write in flight: conn_pending_bytes() counts it. */
        f->c->writing = true;
        f->c->wbuf_len = CONN_OUT_HIGH - 1024;
    }
    f->c->proto = h2_server_make_session(&g_h2, f->c, &f->c->proto_vt);
    CHECK(f->c->proto != NULL, "h2_server_make_session failed");
    pump(f); /* our SETTINGS */
    if (send_preface && !f->closed) {
        if (f->c->proto_vt->on_recv(f->c->proto, preface, PREFACE_LEN) != 0) {
            f->close_when_flushed = true;
            f->stop_reading = true;
        }
        pump(f);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    uint8_t flags = data[0];
    data++;
    size--;

    h2_config cfg = {
        .max_request_bytes = 64u << 20,
        .max_buffered_bytes = 256u << 20,
        .max_concurrent_streams = 1000,
    };
    if (flags & 4) {
        cfg.max_request_bytes = 1024;
        cfg.max_buffered_bytes = 2048;
        cfg.max_concurrent_streams = 4;
    }
    h2_server_init(&g_h2, &g_loop, &g_env.router, &cfg);
    g_stop_requested = false;
    g_drained = false;

    g_nconns = (flags & 32) ? 2 : 1;
    for (int i = 0; i < g_nconns; i++) open_conn(&g_conns[i], (flags & 16) != 0, !(flags & 1));

    /* Read k goes to connection k % g_nconns. */
    const uint8_t *p = data;
    size_t left = size;
    for (int k = 0; k < MAX_CHUNKS; k++) {
        const uint8_t *d = find_delim(p, left);
        size_t n = d ? (size_t)(d - p) : left;
        fake_conn *f = &g_conns[k % g_nconns];
        if (!f->closed && !f->stop_reading && n > 0 && f->c->proto_vt->on_recv(f->c->proto, p, n) != 0) {
            f->close_when_flushed = true;
            f->stop_reading = true; /* conn.c stops reading here */
        }
        pump_all();
        settle();
        if (g_stop_requested) start_drain();
        if (g_drained) /* main closes every connection then */
            for (int i = 0; i < g_nconns; i++) g_conns[i].close_when_flushed = true;
        pump_all();
        CHECK(g_h2.buffered_bytes <= g_h2.cfg.max_buffered_bytes, "request budget overrun: %zu > %zu",
              g_h2.buffered_bytes, g_h2.cfg.max_buffered_bytes);
        if (!d) break;
        p = d + sizeof delim;
        left -= n + sizeof delim;
    }

    if (flags & 2) start_drain();
    settle();
    if (flags & 8) {
        h2_server_cancel_all(&g_h2, GRPC_UNAVAILABLE, "plugin is shutting down");
        pump_all();
        settle();
    }

    /* The peers go away: connections close, handlers are cancelled. */
    for (int i = 0; i < g_nconns; i++) fake_close(&g_conns[i]);
    uv_run(&g_loop, UV_RUN_DEFAULT); /* returns once timers are closed and work is done */

    CHECK(g_h2.calls_in_flight == 0, "%zu handlers still running after close", g_h2.calls_in_flight);
    CHECK(g_h2.buffered_bytes == 0, "%zu request bytes still charged to the budget", g_h2.buffered_bytes);
    CHECK(g_h2.sessions == NULL && g_h2.sessions_active == 0, "session still registered");
    if (g_h2.draining) CHECK(g_drained, "drain never completed");

    if (g_dump) fflush(g_dump);
    inst_cache_clear(&g_instances); /* per-input state, or LeakSanitizer would see it */
    for (int i = 0; i < g_nconns; i++) {
        free(g_conns[i].c->out);
        free(g_conns[i].c->wbuf);
        free(g_conns[i].c);
        g_conns[i].c = NULL;
    }
    return 0;
}
