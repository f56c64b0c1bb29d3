/*
 * fuzz_http_response: the HTTP/1.1 client (src/fetch) reading whatever a
 * backend sends: status line, headers, content-length or chunked bodies,
 * Content-Encoding (gzip/deflate through src/fetch/gunzip.c), early closes.
 *
 * A scripted server on the same loop answers the client's GET with the
 * input's bytes, cut into pieces chosen from the input; between pieces the
 * loop runs, so the client really reads them separately (deterministic
 * splits). Then the server closes.
 *
 * Input: byte 0 picks the response size limit, the rest is the response.
 * Checks: exactly one on_done; an OK ending had a status line and delivered
 * at most the limit of (decompressed) body bytes; a failure says why; and
 * afterwards the same pool still serves a well-formed answer.
 */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <uv.h>

#include "fetch/fetch.h"
#include "fetch/url.h"
#include "fuzz_check.h"

static uv_loop_t loop;
static uv_tcp_t listener;
static int port;

typedef struct {
    uv_tcp_t tcp;
    char head[4096];
    size_t head_len;
    bool got_request;
    bool closed;
} sconn;

static sconn *current; /* the connection the next answer goes to */

static void s_alloc(uv_handle_t *h, size_t n, uv_buf_t *b) {
    (void)n;
    sconn *s = h->data;
    b->base = s->head + s->head_len;
    b->len = sizeof s->head - 1 - s->head_len;
    if (b->len == 0) { /* a request head this long is not ours */
        static char sink[256];
        b->base = sink;
        b->len = sizeof sink;
    }
}

static void s_closed(uv_handle_t *h) { free(h->data); }

static void s_close(sconn *s) {
    if (s->closed) return;
    s->closed = true;
    if (current == s) current = NULL;
    uv_close((uv_handle_t *)&s->tcp, s_closed);
}

static void s_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b) {
    sconn *s = st->data;
    if (n < 0) { s_close(s); return; }
    if (b->base != s->head + s->head_len) return;
    s->head_len += (size_t)n;
    s->head[s->head_len] = '\0';
    if (!s->got_request && strstr(s->head, "\r\n\r\n")) {
        s->got_request = true;
        current = s;
    }
}

static void on_accept(uv_stream_t *l, int status) {
    if (status != 0) return;
    sconn *s = calloc(1, sizeof *s);
    CHECK(s != NULL, "oom");
    uv_tcp_init(&loop, &s->tcp);
    s->tcp.data = s;
    if (uv_accept(l, (uv_stream_t *)&s->tcp) != 0) { s_close(s); return; }
    uv_read_start((uv_stream_t *)&s->tcp, s_alloc, s_read);
}

static void setup_once(void) {
    static bool done;
    if (done) return;
    done = true;
    uv_loop_init(&loop);
    uv_tcp_init(&loop, &listener);
    struct sockaddr_in a;
    uv_ip4_addr("127.0.0.1", 0, &a);
    CHECK(uv_tcp_bind(&listener, (const struct sockaddr *)&a, 0) == 0, "bind");
    CHECK(uv_listen((uv_stream_t *)&listener, 128, on_accept) == 0, "listen");
    struct sockaddr_in got;
    int len = sizeof got;
    uv_tcp_getsockname(&listener, (struct sockaddr *)&got, &len);
    port = ntohs(got.sin_port);
    uv_unref((uv_handle_t *)&listener); /* uv_run(DEFAULT) returns once the client is done */
}

/* ---- the client side ---- */

typedef struct {
    int status;
    size_t body;
    int done;
    fetch_error err;
    char msg[1024];
    char body_text[8];
} outcome;

static int on_response(void *arg, int status, const char *ct) {
    (void)ct;
    ((outcome *)arg)->status = status;
    return 0;
}

static int on_body(void *arg, const uint8_t *d, size_t n) {
    outcome *o = arg;
    for (size_t i = 0; i < n && o->body + i < sizeof o->body_text - 1; i++) o->body_text[o->body + i] = (char)d[i];
    o->body += n;
    return 0;
}

static void on_done(void *arg, fetch_error err, const char *msg) {
    outcome *o = arg;
    o->done++;
    o->err = err;
    snprintf(o->msg, sizeof o->msg, "%s", msg ? msg : "");
}

static const fetch_handler handler = {on_response, on_body, on_done};

/* Runs the loop until the server holds a request (or the client gave up). */
static void wait_for_request(const outcome *o) {
    for (int i = 0; i < 2000 && !current && !o->done; i++) uv_run(&loop, UV_RUN_ONCE);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    setup_once();
    static const size_t limits[] = {0, 16, 100, 1000, 65536};
    size_t limit = limits[data[0] % 5];
    const uint8_t *resp = data + 1;
    size_t resp_len = size - 1;

    char url_text[64];
    snprintf(url_text, sizeof url_text, "http://127.0.0.1:%d/", port);
    fetch_url url;
    char err[256];
    CHECK(fetch_url_parse(url_text, &url, err, sizeof err) == 0, "url: %s", err);
    fetch_limits lim = {.connect_timeout_ms = 2000, .idle_timeout_ms = 5000, .max_connections = 1,
                        .max_response_bytes = limit, .user_agent = "fuzz"};
    fetch_pool *pool = fetch_pool_new(&loop, &url, &lim);
    CHECK(pool != NULL, "oom");

    /* 1. the fuzzed answer, in pieces */
    outcome a = {0};
    fetch_request rq = {.method = "GET", .path = "query", .timeout_ms = 2000};
    CHECK(fetch_start(pool, &rq, &handler, &a) != NULL, "oom");
    wait_for_request(&a);
    uint64_t seed = fuzz_hash(resp, resp_len < 64 ? resp_len : 64);
    size_t off = 0;
    while (current && off < resp_len) {
        size_t piece = 1 + (size_t)(fuzz_next(&seed) % 64);
        if (fuzz_next(&seed) % 4 == 0) piece = resp_len - off; /* sometimes the rest at once */
        if (piece > resp_len - off) piece = resp_len - off;
        uv_buf_t b = uv_buf_init((char *)resp + off, (unsigned)piece);
        int w = uv_try_write((uv_stream_t *)&current->tcp, &b, 1);
        if (w <= 0) break; /* the client stopped reading: it has decided */
        off += (size_t)w;
        uv_run(&loop, UV_RUN_NOWAIT);
        uv_run(&loop, UV_RUN_NOWAIT);
    }
    if (current) s_close(current);
    for (int i = 0; i < 5000 && !a.done; i++) uv_run(&loop, UV_RUN_ONCE);
    CHECK(a.done == 1, "on_done ran %d times", a.done);
    if (a.err == FETCH_OK) {
        CHECK(a.status >= 100 && a.status <= 999, "an OK answer without a status (%d)", a.status);
        CHECK(limit == 0 || a.body <= limit, "%zu body bytes passed the limit of %zu", a.body, limit);
    } else {
        CHECK(a.msg[0] != '\0', "failure %s without a message", fetch_error_name(a.err));
    }

    /* 2. the pool still works: a well-formed answer on the next request */
    outcome b = {0};
    CHECK(fetch_start(pool, &rq, &handler, &b) != NULL, "oom");
    wait_for_request(&b);
    if (current) {
        static const char ok[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n[]";
        uv_buf_t ob = uv_buf_init((char *)ok, sizeof ok - 1);
        CHECK(uv_try_write((uv_stream_t *)&current->tcp, &ob, 1) == (int)(sizeof ok - 1), "short write");
    }
    for (int i = 0; i < 5000 && !b.done; i++) uv_run(&loop, UV_RUN_ONCE);
    CHECK(b.done == 1 && b.err == FETCH_OK && b.status == 200 && b.body == 2 && !memcmp(b.body_text, "[]", 2),
          "the pool is broken after the fuzzed answer: %s %d %s", fetch_error_name(b.err), b.status, b.msg);
    if (current) s_close(current);

    fetch_pool_release(pool);
    uv_run(&loop, UV_RUN_DEFAULT); /* every handle of this run closed (the listener is unref'd) */
    return 0;
}
