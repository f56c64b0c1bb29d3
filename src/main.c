/*
 * gpx_inhouse: the process Grafana spawns.
 *
 * Start-up (synchronous, before anyone is served): read the environment,
 * check go-plugin's cookie, listen, print the handshake line. Then the libuv
 * loop runs everything. Stopping (Shutdown RPC, SIGTERM, SIGINT, parent
 * death) goes: stop accepting and unlink the socket -> GOAWAY everywhere and
 * cancel held-open streams -> wait for running calls (bounded by the grace
 * period, then cancel them) -> flush and close connections -> exit 0.
 */
#include <errno.h>
#include <malloc.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "h2/session.h"
#include "handlers/handlers.h"
#include "log/hclog.h"
#include "loop/process.h"
#include "loop/server.h"

#ifndef PLUGIN_VERSION
#define PLUGIN_VERSION "0.0.0"
#endif
#define PLUGIN_ID "seed-inhouse-datasource"
#define STANDALONE_ENV "GF_PLUGIN_GRPC_ADDRESS_SEED_INHOUSE_DATASOURCE"
#define CLOSE_WAIT_MS 300

typedef struct {
    uv_loop_t loop;
    srv_t srv;
    h2_server h2;
    hnd_env env;
    inst_cache instances;
    bstats backend;
    uv_timer_t grace;
    uv_timer_t final;
    uv_timer_t trim;
    uint64_t grace_ms;
    bool stopping;
    bool finished;
} plugin_t;

static plugin_t g_plugin; /* the process's one plugin; reached from signal paths */

static size_t env_size(const char *name, size_t dflt, size_t min) {
    const char *v = getenv(name);
    if (!v || !*v) return dflt;
    char *end;
    errno = 0;
    unsigned long long n = strtoull(v, &end, 10);
    if (errno || *end || n < min) {
        LOG_WARN("ignoring an invalid setting", HKV_S("variable", name), HKV_S("value", v),
                 HKV_I("default", (int64_t)dflt));
        return dflt;
    }
    return (size_t)n;
}

static void finish_loop(plugin_t *p) {
    if (p->finished) return;
    p->finished = true;
    uv_timer_stop(&p->final);
    uv_stop(&p->loop);
}

static void on_final_timer(uv_timer_t *t) {
    plugin_t *p = t->data;
    if (p->srv.nconns) LOG_DEBUG("closing connections that did not finish writing", HKV_I("connections", (int64_t)p->srv.nconns));
    finish_loop(p);
}

static void on_all_conns_closed(srv_t *s) {
    plugin_t *p = (plugin_t *)((char *)s - offsetof(plugin_t, srv));
    if (p->stopping) finish_loop(p);
}

static void on_drained(h2_server *h2, void *arg) {
    (void)h2;
    plugin_t *p = arg;
    uv_timer_stop(&p->grace);
    /* Last answers (e.g. the Shutdown reply) are written, then we go. */
    srv_close_all(&p->srv, true);
    uv_timer_start(&p->final, on_final_timer, CLOSE_WAIT_MS, 0);
    if (p->srv.nconns == 0) finish_loop(p);
}

static void on_grace_timer(uv_timer_t *t) {
    plugin_t *p = t->data;
    LOG_WARN("calls still running after the grace period; cancelling them",
             HKV_I("calls", (int64_t)p->h2.calls_in_flight), HKV_I("graceMs", (int64_t)p->grace_ms));
    h2_server_cancel_all(&p->h2, GRPC_UNAVAILABLE, "plugin is shutting down");
    /* Handlers finish on cancel, possibly a little later (threadpool work). */
    uv_timer_start(&p->final, on_final_timer, CLOSE_WAIT_MS, 0);
}

static void on_stop(void *arg, const char *reason) {
    plugin_t *p = arg;
    if (p->stopping) return;
    p->stopping = true;
    LOG_INFO("stopping", HKV_S("reason", reason), HKV_I("callsInFlight", (int64_t)p->h2.calls_in_flight));
    srv_stop_listening(&p->srv);
    uv_timer_start(&p->grace, on_grace_timer, p->grace_ms, 0);
    h2_server_drain(&p->h2, on_drained, p);
}

static void request_stop(const char *reason) { proc_request_stop(reason); }

/* Freed heap is kept for reuse (see mallopt below), but not forever: pages a
 * past burst (an alert storm, a huge answer) left free inside the heap go
 * back to the OS within TRIM_INTERVAL_MS, so RSS follows the load. The
 * threshold is a few pages: 256 KiB let idle RSS wander by ~1 % of itself
 * (soak), and a trim every 5 s costs microseconds. */
#define TRIM_INTERVAL_MS 5000
#define TRIM_KEEP_BYTES (32u << 10)
static void on_trim_timer(uv_timer_t *t) {
    (void)t;
    struct mallinfo2 mi = mallinfo2();
    if (mi.fordblks > TRIM_KEEP_BYTES) malloc_trim(0);
}

static void close_any(uv_handle_t *h, void *arg) {
    (void)arg;
    if (!uv_is_closing(h)) uv_close(h, NULL);
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: gpx_inhouse [--standalone [--address HOST:PORT]] [--version]\n"
            "  Started by Grafana with no arguments. --standalone serves the same gRPC\n"
            "  services on TCP (default 127.0.0.1:0, or $" STANDALONE_ENV ")\n"
            "  for debugging and load tests.\n");
}

int main(int argc, char **argv) {
    bool standalone = false;
    const char *address = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--standalone") || !strcmp(argv[i], "-standalone")) standalone = true;
        else if ((!strcmp(argv[i], "--address") || !strcmp(argv[i], "-address")) && i + 1 < argc) address = argv[++i];
        else if (!strcmp(argv[i], "--version") || !strcmp(argv[i], "-version")) {
            printf("%s %s\n", PLUGIN_ID, PLUGIN_VERSION);
            return 0;
        } else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "unknown argument: %s\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }

    const char *lvl = getenv("GF_PLUGIN_LOG_LEVEL");
    int level = hclog_level_parse(lvl);
    hclog_init("plugin." PLUGIN_ID, level < 0 ? HCLOG_INFO : (hclog_level)level);
    if (lvl && *lvl && level < 0) LOG_WARN("unknown GF_PLUGIN_LOG_LEVEL; using info", HKV_S("value", lvl));

    if (!standalone && proc_check_cookie() != 0) {
        fputs(proc_cookie_note(), stderr);
        return 1;
    }

    /* Keep freed heap around between requests instead of trimming it back
     * to the OS and faulting it in again on the next frame (bounded: 8 MiB). */
    mallopt(M_TOP_PAD, 1 << 20);
    mallopt(M_TRIM_THRESHOLD, 8 << 20);
    /* One arena: the only other threads are libuv's resolver pool, and an
     * arena each would add hundreds of KiB of RSS for a few small blocks. */
    mallopt(M_ARENA_MAX, 1);

    plugin_t *p = &g_plugin;
    uv_loop_init(&p->loop);
    p->grace_ms = env_size("GF_PLUGIN_SHUTDOWN_GRACE_MS", 1500, 0);
    h2_config cfg = {
        .max_request_bytes = env_size("GF_PLUGIN_MAX_REQUEST_BYTES", 64u << 20, 1024),
        .max_buffered_bytes = env_size("GF_PLUGIN_MAX_BUFFERED_BYTES", 256u << 20, 1024),
        .max_concurrent_streams = (uint32_t)env_size("GF_PLUGIN_MAX_CONCURRENT_STREAMS", 1000, 1),
    };
    if (cfg.max_buffered_bytes < cfg.max_request_bytes) cfg.max_buffered_bytes = cfg.max_request_bytes;

    p->env.plugin_id = PLUGIN_ID;
    p->env.version = PLUGIN_VERSION;
    p->env.h2 = &p->h2;
    p->env.srv = &p->srv;
    p->env.request_stop = request_stop;
    inst_cache_init(&p->instances, &p->loop, PLUGIN_ID "/" PLUGIN_VERSION);
    p->env.instances = &p->instances;
    p->env.backend = &p->backend;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    p->env.start_time_unix = (double)now.tv_sec + now.tv_nsec / 1e9;
    hnd_build_router(&p->env);
    h2_server_init(&p->h2, &p->loop, &p->env.router, &cfg);
    srv_init(&p->srv, &p->loop, h2_server_make_session, &p->h2);
    p->srv.on_all_closed = on_all_conns_closed;
    uv_timer_init(&p->loop, &p->grace);
    uv_timer_init(&p->loop, &p->final);
    p->grace.data = p->final.data = p;
    uv_timer_init(&p->loop, &p->trim);
    uv_timer_start(&p->trim, on_trim_timer, TRIM_INTERVAL_MS, TRIM_INTERVAL_MS);
    uv_unref((uv_handle_t *)&p->trim);

    char err[256];
    int r;
    if (standalone) {
        if (!address) address = getenv(STANDALONE_ENV);
        if (!address || !*address) address = "127.0.0.1:0";
        r = srv_listen_tcp(&p->srv, address, err, sizeof err);
    } else {
        const char *dir = getenv("PLUGIN_UNIX_SOCKET_DIR");
        if (!dir || !*dir) dir = getenv("TMPDIR");
        if (!dir || !*dir) dir = "/tmp";
        const char *group = getenv("PLUGIN_UNIX_SOCKET_GROUP");
        r = srv_listen_unix(&p->srv, dir, (group && *group) ? group : NULL, err, sizeof err);
    }
    if (r != 0) {
        LOG_ERROR("cannot start serving", HKV_S("error", err));
        return 1;
    }

    proc_init(&p->loop, on_stop, p);
    char line[256];
    int n = proc_format_handshake(line, sizeof line, standalone ? "tcp" : "unix", p->srv.address);
    if (n < 0 || proc_write_handshake(line, (size_t)n) != 0) {
        LOG_ERROR("cannot write the handshake line to stdout");
        srv_stop_listening(&p->srv);
        return 1;
    }
    LOG_INFO("serving", HKV_S("network", standalone ? "tcp" : "unix"), HKV_S("address", p->srv.address),
             HKV_S("version", PLUGIN_VERSION), HKV_I("pid", (int64_t)getpid()));

    uv_run(&p->loop, UV_RUN_DEFAULT);

    /* Closing every handle lets valgrind and LSan see a clean exit. */
    inst_cache_clear(&p->instances);
    srv_stop_listening(&p->srv);
    srv_close_all(&p->srv, false);
    proc_dispose();
    srv_dispose(&p->srv);
    uv_walk(&p->loop, close_any, NULL);
    uv_run(&p->loop, UV_RUN_DEFAULT);
    r = uv_loop_close(&p->loop);
    LOG_INFO("stopped", HKV_S("loop", r == 0 ? "closed" : uv_strerror(r)));
    return 0;
}
