/*
 * bench_relay: the latency floor of any out-of-process hop on this machine.
 *
 * A byte relay on one libuv loop: every accepted TCP connection gets its own
 * upstream connection to TARGET, and whatever one side sends is written to
 * the other, unparsed. Put between bench_pace and the refbackend it adds
 * exactly what the plugin's place in the path adds (one more process to wake
 * on the way in and on the way out, two more loopback hops) and none of the
 * plugin's work, so "relay minus direct" is the least any plugin could add
 * here. bench/run.sh reports it next to the plugin's added latency.
 *
 * Usage: bench_relay TARGET_HOST:PORT     (listens on 127.0.0.1, any port)
 * Prints "listening 127.0.0.1:PORT" on stdout; exits 0 on SIGTERM/SIGINT.
 * For benchmarks only: no backpressure beyond the kernel's socket buffers.
 */
#include <arpa/inet.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#define RELAY_READ_SIZE 65536

typedef struct relay_pair relay_pair;

typedef struct relay_side {
    uv_tcp_t tcp;
    relay_pair *pair;
    struct relay_side *peer;
} relay_side;

struct relay_pair {
    relay_side down, up; /* down: the client; up: TARGET */
    uv_connect_t connect;
    int open_handles;
    int closing;
};

typedef struct {
    uv_write_t req;
    char *data;
} relay_write;

static struct sockaddr_in g_target;

static void on_handle_closed(uv_handle_t *h) {
    relay_pair *p = ((relay_side *)h->data)->pair;
    if (--p->open_handles == 0) free(p);
}

static void pair_close(relay_pair *p) {
    if (p->closing) return;
    p->closing = 1;
    uv_close((uv_handle_t *)&p->down.tcp, on_handle_closed);
    uv_close((uv_handle_t *)&p->up.tcp, on_handle_closed);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
    (void)h;
    (void)hint;
    buf->base = malloc(RELAY_READ_SIZE);
    buf->len = buf->base ? RELAY_READ_SIZE : 0;
}

static void on_written(uv_write_t *req, int status) {
    relay_write *w = (relay_write *)req;
    relay_side *to = req->handle->data;
    free(w->data);
    free(w);
    if (status < 0) pair_close(to->pair);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
    relay_side *from = s->data;
    if (n <= 0) {
        free(buf->base);
        if (n < 0) pair_close(from->pair);
        return;
    }
    relay_write *w = malloc(sizeof *w);
    if (!w) {
        free(buf->base);
        pair_close(from->pair);
        return;
    }
    w->data = buf->base;
    uv_buf_t out = uv_buf_init(buf->base, (unsigned)n);
    if (uv_write(&w->req, (uv_stream_t *)&from->peer->tcp, &out, 1, on_written) < 0) {
        free(w->data);
        free(w);
        pair_close(from->pair);
    }
}

static void on_upstream(uv_connect_t *req, int status) {
    relay_pair *p = req->data;
    if (status < 0 || p->closing) {
        pair_close(p);
        return;
    }
    uv_tcp_nodelay(&p->up.tcp, 1);
    if (uv_read_start((uv_stream_t *)&p->down.tcp, on_alloc, on_read) < 0 ||
        uv_read_start((uv_stream_t *)&p->up.tcp, on_alloc, on_read) < 0)
        pair_close(p);
}

static void on_accept(uv_stream_t *server, int status) {
    if (status < 0) return;
    relay_pair *p = calloc(1, sizeof *p);
    if (!p) return;
    p->down.pair = p->up.pair = p;
    p->down.peer = &p->up;
    p->up.peer = &p->down;
    uv_tcp_init(server->loop, &p->down.tcp);
    uv_tcp_init(server->loop, &p->up.tcp);
    p->down.tcp.data = &p->down;
    p->up.tcp.data = &p->up;
    p->open_handles = 2;
    p->connect.data = p;
    if (uv_accept(server, (uv_stream_t *)&p->down.tcp) < 0) {
        pair_close(p);
        return;
    }
    uv_tcp_nodelay(&p->down.tcp, 1);
    if (uv_tcp_connect(&p->connect, &p->up.tcp, (const struct sockaddr *)&g_target, on_upstream) < 0) pair_close(p);
}

static void on_signal(uv_signal_t *sig, int signum) {
    (void)signum;
    uv_stop(sig->loop);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: bench_relay TARGET_HOST:PORT\n");
        return 2;
    }
    char host[64];
    const char *colon = strrchr(argv[1], ':');
    if (!colon || (size_t)(colon - argv[1]) >= sizeof host) {
        fprintf(stderr, "bench_relay: TARGET must be HOST:PORT, got %s\n", argv[1]);
        return 2;
    }
    memcpy(host, argv[1], (size_t)(colon - argv[1]));
    host[colon - argv[1]] = '\0';
    if (uv_ip4_addr(host, atoi(colon + 1), &g_target) < 0) {
        fprintf(stderr, "bench_relay: %s is not an IPv4 address and port\n", argv[1]);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    uv_loop_t *loop = uv_default_loop();
    uv_tcp_t server;
    struct sockaddr_in any;
    uv_ip4_addr("127.0.0.1", 0, &any);
    uv_tcp_init(loop, &server);
    int rc = uv_tcp_bind(&server, (const struct sockaddr *)&any, 0);
    if (rc == 0) rc = uv_listen((uv_stream_t *)&server, 1024, on_accept);
    if (rc < 0) {
        fprintf(stderr, "bench_relay: listen: %s\n", uv_strerror(rc));
        return 1;
    }
    struct sockaddr_in bound;
    int len = sizeof bound;
    uv_tcp_getsockname(&server, (struct sockaddr *)&bound, &len);
    printf("listening 127.0.0.1:%d\n", ntohs(bound.sin_port));
    fflush(stdout);
    uv_signal_t sigterm, sigint;
    uv_signal_init(loop, &sigterm);
    uv_signal_init(loop, &sigint);
    uv_signal_start(&sigterm, on_signal, SIGTERM);
    uv_signal_start(&sigint, on_signal, SIGINT);
    uv_run(loop, UV_RUN_DEFAULT);
    return 0;
}
