/* The HTTP/1.1 client against a scripted server on the same loop: keep-alive
 * reuse, chunked bodies, every failure kind, timeouts, abort, the
 * connection cap with its FIFO queue, and header injection refusal. The same
 * server plays an HTTP proxy: absolute-form requests and CONNECT. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <uv.h>
#include <zlib.h>

#include "fetch/fetch.h"

/* ---- scripted server --------------------------------------------------- */

static char last_request[2048]; /* head of the last request the server read */
#define GZ_TEXT "[{\"target\":\"cpu\",\"datapoints\":[[1.5,1700000000000]]}]"

/* windowBits 31: gzip, 15: zlib ("deflate"). */
static size_t compress_with(const char *in, size_t n, unsigned char *out, size_t cap, int window_bits) {
    z_stream z;
    memset(&z, 0, sizeof z);
    assert_int_equal(deflateInit2(&z, 9, Z_DEFLATED, window_bits, 8, Z_DEFAULT_STRATEGY), Z_OK);
    z.next_in = (Bytef *)in;
    z.avail_in = (uInt)n;
    z.next_out = out;
    z.avail_out = (uInt)cap;
    assert_int_equal(deflate(&z, Z_FINISH), Z_STREAM_END);
    size_t len = z.total_out;
    deflateEnd(&z);
    return len;
}

typedef struct {
    uv_tcp_t tcp;
    char in[8192];
    size_t in_len;
    uv_timer_t delay;
    bool closed;
} sconn;

static uv_loop_t loop;
static uv_tcp_t listener;
static int port;
static int accepted, server_closed;
static sconn *sconns[64]; /* freed at teardown, once the loop has closed them */

static void on_sconn_closed(uv_handle_t *h) {
    sconn *s = h->data;
    if (h == (uv_handle_t *)&s->tcp) {
        server_closed++;
        uv_close((uv_handle_t *)&s->delay, NULL);
        s->delay.data = NULL;
    }
}

static void free_sconn_later(uv_handle_t *h) { (void)h; }

static void s_close(sconn *s) {
    if (s->closed) return;
    s->closed = true;
    uv_close((uv_handle_t *)&s->tcp, on_sconn_closed);
}

static void on_s_written(uv_write_t *w, int status) {
    (void)status;
    free(w->data);
    free(w);
}

static void s_send(sconn *s, const char *data, size_t len) {
    uv_write_t *w = malloc(sizeof *w);
    char *copy = malloc(len);
    memcpy(copy, data, len);
    w->data = copy;
    uv_buf_t b = uv_buf_init(copy, (unsigned)len);
    uv_write(w, (uv_stream_t *)&s->tcp, &b, 1, on_s_written);
}

static void s_sends(sconn *s, const char *text) { s_send(s, text, strlen(text)); }

static void on_delay(uv_timer_t *t) {
    sconn *s = t->data;
    if (!s->closed) s_sends(s, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nslow");
}

static void s_send_encoded(sconn *s, const char *encoding, const unsigned char *body, size_t len) {
    char head[256];
    snprintf(head, sizeof head, "HTTP/1.1 200 OK\r\nContent-Encoding: %s\r\nContent-Length: %zu\r\n\r\n", encoding, len);
    s_sends(s, head);
    s_send(s, (const char *)body, len);
}

static void respond_compressed(sconn *s, const char *path) {
    static unsigned char out[65536];
    if (!strcmp(path, "/gzip") || !strcmp(path, "/gzip-corrupt")) {
        size_t n = compress_with(GZ_TEXT, strlen(GZ_TEXT), out, sizeof out, 31);
        if (!strcmp(path, "/gzip-corrupt")) out[n / 2] ^= 0x55;
        s_send_encoded(s, "gzip", out, n);
    } else if (!strcmp(path, "/deflate")) {
        s_send_encoded(s, "deflate", out, compress_with(GZ_TEXT, strlen(GZ_TEXT), out, sizeof out, 15));
    } else if (!strcmp(path, "/gzip-bomb")) {
        static char zeros[4 << 20]; /* 4 MiB of zeros: a few KiB on the wire */
        s_send_encoded(s, "gzip", out, compress_with(zeros, sizeof zeros, out, sizeof out, 31));
    } else if (!strcmp(path, "/br")) {
        s_send_encoded(s, "br", (const unsigned char *)"xx", 2);
    }
}

/* CONNECT host:port: what the proxy says depends on the host. */
static void respond_connect(sconn *s, const char *target) {
    if (!strncmp(target, "auth.test:", 10))
        s_sends(s, "HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"p\"\r\n"
                   "Content-Length: 0\r\n\r\n");
    else if (!strncmp(target, "forbid.test:", 12))
        s_sends(s, "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n");
    else if (!strncmp(target, "close.test:", 11)) s_close(s);
    else if (!strncmp(target, "garbage.test:", 13)) s_sends(s, "SSH-2.0-OpenSSH_9.6\r\n\r\n");
    else if (!strncmp(target, "notls.test:", 11)) /* tunnel open, and the "backend" is no TLS server */
        s_sends(s, "HTTP/1.1 200 Connection established\r\n\r\nHTTP/1.1 400 Bad Request\r\n\r\n");
    /* "hang.test": no answer */
}

static void respond(sconn *s, const char *path) {
    if (!strncmp(path, "http://", 7)) { /* absolute form: we are the proxy */
        const char *slash = strchr(path + 7, '/');
        path = slash ? slash : "/";
        if (strstr(path, "/need-proxy-auth")) {
            s_sends(s, "HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n");
            return;
        }
    }
    if (!strncmp(path, "/gzip", 5) || !strcmp(path, "/deflate") || !strcmp(path, "/br")) {
        respond_compressed(s, path);
        return;
    }
    if (!strcmp(path, "/ok")) s_sends(s, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n[]");
    else if (!strcmp(path, "/chunked"))
        s_sends(s, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n[1,\r\n2\r\n2]\r\n0\r\n\r\n");
    else if (!strcmp(path, "/status500"))
        s_sends(s, "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 16\r\n\r\n{\"error\":\"boom\"}");
    else if (!strcmp(path, "/truncate")) { s_sends(s, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789"); s_close(s); }
    else if (!strcmp(path, "/close")) s_close(s);
    else if (!strcmp(path, "/garbage")) s_sends(s, "NOT HTTP AT ALL\r\n\r\n");
    else if (!strcmp(path, "/big")) {
        static char big[200000];
        memset(big, 'x', sizeof big);
        s_sends(s, "HTTP/1.1 200 OK\r\nContent-Length: 200000\r\n\r\n");
        s_send(s, big, sizeof big);
    } else if (!strcmp(path, "/slow")) uv_timer_start(&s->delay, on_delay, 100, 0);
    else if (!strcmp(path, "/ok-close")) {
        /* Keep-alive by the headers, but the server hangs up right away. */
        s_sends(s, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n[]");
        s_close(s);
    } else if (!strcmp(path, "/base/query")) s_sends(s, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nbase");
    /* "/hang": say nothing */
}

static void s_alloc(uv_handle_t *h, size_t n, uv_buf_t *b) {
    (void)n;
    sconn *s = h->data;
    b->base = s->in + s->in_len;
    b->len = sizeof s->in - s->in_len - 1;
}

static void s_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b) {
    (void)b;
    sconn *s = st->data;
    if (n < 0) { s_close(s); return; }
    s->in_len += (size_t)n;
    s->in[s->in_len] = '\0';
    for (;;) {
        char *end = strstr(s->in, "\r\n\r\n");
        if (!end) return;
        size_t head = (size_t)(end + 4 - s->in);
        size_t body = 0;
        char *cl = strcasestr(s->in, "Content-Length:");
        if (cl && cl < end) body = (size_t)atoi(cl + 15);
        if (s->in_len < head + body) return;
        char method[16] = "", path[256] = "";
        sscanf(s->in, "%15s %255s", method, path);
        snprintf(last_request, sizeof last_request, "%.*s", (int)head, s->in);
        memmove(s->in, s->in + head + body, s->in_len - head - body);
        s->in_len -= head + body;
        s->in[s->in_len] = '\0';
        if (!strcmp(method, "CONNECT")) respond_connect(s, path);
        else respond(s, path);
        if (s->closed) return;
    }
}

static void on_accept(uv_stream_t *l, int status) {
    assert_int_equal(status, 0);
    sconn *s = calloc(1, sizeof *s);
    assert_true(accepted < 64);
    sconns[accepted] = s;
    uv_tcp_init(&loop, &s->tcp);
    uv_timer_init(&loop, &s->delay);
    s->tcp.data = s->delay.data = s;
    assert_int_equal(uv_accept(l, (uv_stream_t *)&s->tcp), 0);
    accepted++;
    uv_read_start((uv_stream_t *)&s->tcp, s_alloc, s_read);
}

/* ---- client side ----------------------------------------------------------- */

typedef struct {
    int status;
    char ctype[64];
    char body[256];
    size_t body_len;
    bool done;
    fetch_error err;
    char msg[512];
    int order;
} result;

static int done_count;

static int on_response(void *arg, int status, const char *ct) {
    result *r = arg;
    r->status = status;
    snprintf(r->ctype, sizeof r->ctype, "%s", ct);
    return 0;
}

static int on_body(void *arg, const uint8_t *d, size_t n) {
    result *r = arg;
    size_t room = sizeof r->body - 1 - r->body_len;
    memcpy(r->body + r->body_len, d, n < room ? n : room);
    r->body_len += n < room ? n : room;
    return 0;
}

static void on_done(void *arg, fetch_error err, const char *msg) {
    result *r = arg;
    assert_false(r->done);
    r->done = true;
    r->err = err;
    r->order = ++done_count;
    snprintf(r->msg, sizeof r->msg, "%s", msg);
}

static const fetch_handler handler = {on_response, on_body, on_done};

static fetch_pool *pool_for(int p, const char *base, size_t max_conns, size_t max_bytes) {
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", p, base);
    fetch_url u;
    char err[256];
    assert_int_equal(fetch_url_parse(url, &u, err, sizeof err), 0);
    fetch_limits lim = {.connect_timeout_ms = 2000, .idle_timeout_ms = 5000, .max_connections = max_conns,
                        .max_response_bytes = max_bytes, .user_agent = "test/1"};
    return fetch_pool_new(&loop, &u, &lim);
}

/* A pool for url whose connections go through the proxy proxy_url. */
static fetch_pool *pool_via(const char *proxy_url, const char *url, uint64_t connect_timeout_ms) {
    proxy_server px;
    char err[256];
    assert_int_equal(proxy_url_parse(proxy_url, "HTTPS_PROXY", &px, err, sizeof err), 0);
    fetch_url u;
    assert_int_equal(fetch_url_parse(url, &u, err, sizeof err), 0);
    fetch_limits lim = {.connect_timeout_ms = connect_timeout_ms, .idle_timeout_ms = 5000, .max_connections = 2,
                        .user_agent = "test/1", .proxy = &px};
    fetch_pool *p = fetch_pool_new(&loop, &u, &lim);
    explicit_bzero(&px, sizeof px);
    assert_non_null(p);
    return p;
}

static void run_until(result *r, size_t n) {
    for (int i = 0; i < 5000; i++) {
        bool all = true;
        for (size_t k = 0; k < n; k++) all &= r[k].done;
        if (all) return;
        uv_run(&loop, UV_RUN_ONCE);
    }
    fail_msg("requests did not finish");
}

/* Runs the loop until *flag >= want or ms pass (a timer bounds the wait). */
static void on_guard(uv_timer_t *t) { (void)t; }
static void spin_until(int *flag, int want, uint64_t ms) {
    uv_timer_t guard;
    uv_timer_init(&loop, &guard);
    uv_timer_start(&guard, on_guard, 10, 10);
    uint64_t end = uv_now(&loop) + ms;
    while (*flag < want && uv_now(&loop) < end) uv_run(&loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&guard, NULL);
    uv_run(&loop, UV_RUN_NOWAIT);
}

static fetch_req *get(fetch_pool *p, const char *path, result *r, uint64_t timeout_ms) {
    memset(r, 0, sizeof *r);
    fetch_request rq = {.method = "GET", .path = path, .timeout_ms = timeout_ms};
    return fetch_start(p, &rq, &handler, r);
}

/* GET path and expect it to fail with err and a message containing text. */
static void expect_failure(fetch_pool *p, const char *path, fetch_error err, const char *text) {
    result r;
    get(p, path, &r, 2000);
    run_until(&r, 1);
    assert_int_equal(r.err, err);
    if (!strstr(r.msg, text)) fail_msg("%s: message \"%s\" lacks \"%s\"", path, r.msg, text);
}

static int setup(void **state) {
    (void)state;
    uv_loop_init(&loop);
    uv_tcp_init(&loop, &listener);
    struct sockaddr_in a;
    uv_ip4_addr("127.0.0.1", 0, &a);
    uv_tcp_bind(&listener, (struct sockaddr *)&a, 0);
    uv_listen((uv_stream_t *)&listener, 64, on_accept);
    struct sockaddr_in got;
    int len = sizeof got;
    uv_tcp_getsockname(&listener, (struct sockaddr *)&got, &len);
    port = ntohs(got.sin_port);
    accepted = server_closed = done_count = 0;
    return 0;
}

static void close_all(uv_handle_t *h, void *arg) {
    (void)arg;
    if (!uv_is_closing(h)) uv_close(h, free_sconn_later);
}

static int teardown(void **state) {
    (void)state;
    uv_walk(&loop, close_all, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    int r = uv_loop_close(&loop);
    (void)r;
    for (int i = 0; i < accepted; i++) free(sconns[i]);
    return 0;
}

static void ok_and_keepalive(void **state) {
    (void)state;
    fetch_pool *p = pool_for(port, "", 4, 0);
    result r;
    for (int i = 0; i < 5; i++) {
        get(p, "ok", &r, 2000);
        run_until(&r, 1);
        assert_int_equal(r.err, FETCH_OK);
        assert_int_equal(r.status, 200);
        assert_string_equal(r.ctype, "application/json");
        assert_int_equal(r.body_len, 2);
        assert_memory_equal(r.body, "[]", 2);
    }
    assert_int_equal(accepted, 1); /* one connection, reused */
    fetch_stats st;
    fetch_pool_stats(p, &st);
    assert_int_equal(st.reused, 4);
    fetch_pool_release(p);
}

static void base_path_and_chunked(void **state) {
    (void)state;
    fetch_pool *p = pool_for(port, "/base/", 1, 0);
    result r;
    get(p, "query", &r, 2000);
    run_until(&r, 1);
    assert_int_equal(r.err, FETCH_OK);
    assert_memory_equal(r.body, "base", 4);
    fetch_pool_release(p);
    p = pool_for(port, "", 1, 0);
    get(p, "/chunked", &r, 2000);
    run_until(&r, 1);
    assert_int_equal(r.err, FETCH_OK);
    assert_int_equal(r.body_len, 5);
    assert_memory_equal(r.body, "[1,2]", 5);
    fetch_pool_release(p);
}

static void http_error_status_is_not_a_fetch_error(void **state) {
    (void)state;
    fetch_pool *p = pool_for(port, "", 1, 0);
    result r;
    get(p, "status500", &r, 2000);
    run_until(&r, 1);
    assert_int_equal(r.err, FETCH_OK);
    assert_int_equal(r.status, 500);
    assert_non_null(strstr(r.body, "boom"));
    fetch_pool_release(p);
}

/* Bodies are asked for compressed and inflated while they stream; the size
 * limit counts decompressed bytes. */
static void compressed_bodies(void **state) {
    (void)state;
    fetch_pool *p = pool_for(port, "", 1, 100000);
    result r;
    const char *paths[] = {"gzip", "deflate"};
    for (int i = 0; i < 2; i++) {
        get(p, paths[i], &r, 2000);
        run_until(&r, 1);
        assert_int_equal(r.err, FETCH_OK);
        assert_int_equal(r.body_len, strlen(GZ_TEXT));
        assert_memory_equal(r.body, GZ_TEXT, strlen(GZ_TEXT));
        assert_non_null(strcasestr(last_request, "\r\nAccept-Encoding: gzip, deflate\r\n"));
    }
    expect_failure(p, "gzip-bomb", FETCH_E_TOO_LARGE, "larger than the limit of 100000 bytes once decompressed (gzip)");
    get(p, "gzip-corrupt", &r, 2000);
    run_until(&r, 1);
    assert_int_equal(r.err, FETCH_E_PROTOCOL);
    assert_non_null(strstr(r.msg, "the gzip response body from 127.0.0.1:"));
    assert_non_null(strstr(r.msg, "could not be decompressed"));
    expect_failure(p, "br", FETCH_E_PROTOCOL, "Content-Encoding \"br\", which the plugin cannot decode");
    /* after all that, the pool still works (failed connections were closed) */
    get(p, "gzip", &r, 2000);
    run_until(&r, 1);
    assert_int_equal(r.err, FETCH_OK);
    fetch_pool_release(p);
}

static void failures(void **state) {
    (void)state;
    fetch_pool *p = pool_for(port, "", 4, 1000);
    expect_failure(p, "truncate", FETCH_E_IO, "in the middle of the response");
    expect_failure(p, "close", FETCH_E_IO, "without answering");
    expect_failure(p, "garbage", FETCH_E_PROTOCOL, "invalid HTTP response");
    expect_failure(p, "big", FETCH_E_TOO_LARGE, "larger than the limit of 1000 bytes");
    fetch_pool_release(p);
}

static void timeout_closes_the_connection(void **state) {
    (void)state;
    fetch_pool *p = pool_for(port, "", 1, 0);
    result r;
    uint64_t t0 = uv_now(&loop);
    get(p, "hang", &r, 150);
    run_until(&r, 1);
    assert_int_equal(r.err, FETCH_E_TIMEOUT);
    assert_true(uv_now(&loop) - t0 >= 150);
    assert_non_null(strstr(r.msg, "within 150 ms"));
    spin_until(&server_closed, 1, 2000);
    assert_int_equal(server_closed, 1); /* the backend saw the connection go */
    /* The slot is free again: the next request works on a new connection. */
    get(p, "ok", &r, 2000);
    run_until(&r, 1);
    assert_int_equal(r.err, FETCH_OK);
    assert_int_equal(accepted, 2);
    fetch_pool_release(p);
}

static void abort_is_immediate(void **state) {
    (void)state;
    fetch_pool *p = pool_for(port, "", 1, 0);
    result r;
    fetch_req *rq = get(p, "hang", &r, 0);
    spin_until(&accepted, 1, 2000);
    assert_int_equal(accepted, 1);
    spin_until(&accepted, 2, 50); /* let the request reach the server */
    fetch_abort(rq);
    assert_true(r.done);
    assert_int_equal(r.err, FETCH_E_ABORTED);
    spin_until(&server_closed, 1, 2000);
    assert_int_equal(server_closed, 1);
    fetch_pool_release(p);
}

static void connection_cap_queues_in_order(void **state) {
    (void)state;
    fetch_pool *p = pool_for(port, "", 2, 0);
    result r[6];
    for (int i = 0; i < 6; i++) get(p, "slow", &r[i], 5000);
    fetch_stats st;
    fetch_pool_stats(p, &st);
    assert_int_equal(st.queued, 4);
    run_until(r, 6);
    for (int i = 0; i < 6; i++) {
        assert_int_equal(r[i].err, FETCH_OK);
        assert_memory_equal(r[i].body, "slow", 4);
    }
    assert_int_equal(accepted, 2);
    /* FIFO: the first two finish before the last two. */
    assert_true(r[0].order <= 2 && r[1].order <= 2);
    assert_true(r[4].order >= 5 && r[5].order >= 5);
    fetch_pool_release(p);
}

static void refused(void **state) {
    (void)state;
    /* A port nobody listens on: bind, learn it, close. */
    uv_tcp_t t;
    uv_tcp_init(&loop, &t);
    struct sockaddr_in a;
    uv_ip4_addr("127.0.0.1", 0, &a);
    uv_tcp_bind(&t, (struct sockaddr *)&a, 0);
    struct sockaddr_in got;
    int len = sizeof got;
    uv_tcp_getsockname(&t, (struct sockaddr *)&got, &len);
    int dead = ntohs(got.sin_port);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(&loop, UV_RUN_NOWAIT);
    fetch_pool *p = pool_for(dead, "", 1, 0);
    expect_failure(p, "ok", FETCH_E_CONNECT, "refused: is the backend running?");
    fetch_pool_release(p);
}

static void header_injection_refused_after_return(void **state) {
    (void)state;
    fetch_pool *p = pool_for(port, "", 1, 0);
    result r;
    memset(&r, 0, sizeof r);
    fetch_header h[] = {{"X-Custom", "ok\r\nInjected: yes"}};
    fetch_request rq = {.method = "GET", .path = "ok", .headers = h, .nheaders = 1, .timeout_ms = 1000};
    fetch_start(p, &rq, &handler, &r);
    assert_false(r.done); /* never called back before fetch_start returns */
    run_until(&r, 1);
    assert_int_equal(r.err, FETCH_E_INVALID);
    assert_int_equal(accepted, 0);
    assert_false(fetch_header_ok("Bad Name", "v"));
    assert_false(fetch_header_ok("X", "a\nb"));
    assert_false(fetch_header_ok("X", "a\0b") && 0);
    assert_true(fetch_header_ok("X-Ok", "value with\ttab"));
    fetch_pool_release(p);
}

/* The next request goes out from inside on_done, on the connection the
 * server is closing: it must be re-sent on a fresh connection, once. */
static fetch_pool *chain_pool;
static result chain_second;
static void chain_done(void *arg, fetch_error err, const char *msg) {
    on_done(arg, err, msg);
    fetch_request rq = {.method = "GET", .path = "ok", .timeout_ms = 2000};
    memset(&chain_second, 0, sizeof chain_second);
    fetch_start(chain_pool, &rq, &handler, &chain_second);
}
static const fetch_handler chain_handler = {on_response, on_body, chain_done};

static void stale_keepalive_is_retried_once(void **state) {
    (void)state;
    chain_pool = pool_for(port, "", 1, 0);
    result first;
    memset(&first, 0, sizeof first);
    fetch_request rq = {.method = "GET", .path = "ok-close", .timeout_ms = 2000};
    fetch_start(chain_pool, &rq, &chain_handler, &first);
    run_until(&first, 1);
    run_until(&chain_second, 1);
    assert_int_equal(first.err, FETCH_OK);
    assert_int_equal(chain_second.err, FETCH_OK);
    assert_memory_equal(chain_second.body, "[]", 2);
    assert_int_equal(accepted, 2);
    /* An idle connection the server closes is dropped, not reused. */
    result r;
    get(chain_pool, "ok-close", &r, 2000);
    run_until(&r, 1);
    spin_until(&server_closed, 3, 1000);
    fetch_stats st;
    fetch_pool_stats(chain_pool, &st);
    assert_int_equal(st.open, 0);
    assert_true(st.reused >= 1); /* the retry path really ran */
    fetch_pool_release(chain_pool);
}

/* http:// through a proxy: absolute form, the Host header as without one,
 * Proxy-Authorization when the proxy URL has credentials, keep-alive. */
static void http_through_proxy(void **state) {
    (void)state;
    char px[128];
    snprintf(px, sizeof px, "http://alice:s3cret@127.0.0.1:%d", port);
    /* The backend address is never dialled: only the proxy is. */
    fetch_pool *p = pool_via(px, "http://10.255.255.1:8080/base", 2000);
    result r;
    for (int i = 0; i < 2; i++) {
        get(p, "query", &r, 2000);
        run_until(&r, 1);
        assert_int_equal(r.err, FETCH_OK);
        assert_memory_equal(r.body, "base", 4);
        assert_non_null(strstr(last_request, "GET http://10.255.255.1:8080/base/query HTTP/1.1\r\n"));
        assert_non_null(strstr(last_request, "\r\nHost: 10.255.255.1:8080\r\n"));
        /* base64("alice:s3cret") */
        assert_non_null(strstr(last_request, "\r\nProxy-Authorization: Basic YWxpY2U6czNjcmV0\r\n"));
    }
    assert_int_equal(accepted, 1); /* kept alive to the proxy */
    /* A 407 to an absolute-form request is the proxy's, not the backend's. */
    get(p, "need-proxy-auth", &r, 2000);
    run_until(&r, 1);
    assert_int_equal(r.err, FETCH_E_PROXY);
    assert_non_null(strstr(r.msg, "refused the credentials in HTTPS_PROXY (407"));
    assert_null(strstr(r.msg, "s3cret"));
    assert_null(strstr(r.msg, "YWxpY2U6czNjcmV0"));
    fetch_pool_release(p);
    /* Without credentials: no Proxy-Authorization; the default port is not in Host or the URL. */
    snprintf(px, sizeof px, "127.0.0.1:%d", port);
    p = pool_via(px, "http://metrics.internal", 2000);
    get(p, "ok", &r, 2000);
    run_until(&r, 1);
    assert_int_equal(r.err, FETCH_OK);
    assert_non_null(strstr(last_request, "GET http://metrics.internal/ok HTTP/1.1\r\nHost: metrics.internal\r\n"));
    assert_null(strcasestr(last_request, "Proxy-Authorization"));
    get(p, "", &r, 2000);
    run_until(&r, 1);
    assert_non_null(strstr(last_request, "GET http://metrics.internal/ HTTP/1.1\r\n"));
    fetch_pool_release(p);
}

static void https_proxy_expect(const char *backend, bool auth, fetch_error want, const char *text) {
    char px[128], url[128];
    snprintf(px, sizeof px, "http://%s127.0.0.1:%d", auth ? "bob:pw@" : "", port);
    snprintf(url, sizeof url, "https://%s", backend);
    fetch_pool *p = pool_via(px, url, strstr(backend, "hang") ? 300 : 3000);
    result r;
    get(p, "ok", &r, 5000);
    run_until(&r, 1);
    if (r.err != want || !strstr(r.msg, text)) fail_msg("%s: got %s: %s", backend, fetch_error_name(r.err), r.msg);
    assert_null(strstr(r.msg, "bob:pw"));
    fetch_pool_release(p);
}

/* https:// through a proxy: CONNECT, and every way the proxy can say no. */
static void https_connect_refusals(void **state) {
    (void)state;
    https_proxy_expect("auth.test", false, FETCH_E_PROXY,
                       "requires authentication (407 Proxy Authentication Required): put user:password@ before the "
                       "host in HTTPS_PROXY");
    assert_non_null(strstr(last_request, "CONNECT auth.test:443 HTTP/1.1\r\nHost: auth.test:443\r\n"));
    assert_null(strcasestr(last_request, "Proxy-Authorization"));
    https_proxy_expect("auth.test:8443", true, FETCH_E_PROXY, "refused the credentials in HTTPS_PROXY (407");
    assert_non_null(strstr(last_request, "CONNECT auth.test:8443 HTTP/1.1\r\n"));
    assert_non_null(strstr(last_request, "\r\nProxy-Authorization: Basic Ym9iOnB3\r\n"));
    https_proxy_expect("forbid.test", false, FETCH_E_PROXY, "does not allow a tunnel to forbid.test:443 (403 Forbidden)");
    https_proxy_expect("close.test", false, FETCH_E_PROXY, "closed the connection before it answered CONNECT close.test:443");
    https_proxy_expect("garbage.test", false, FETCH_E_PROXY, "gave no valid answer to CONNECT garbage.test:443");
    /* The connect timeout covers the CONNECT exchange. */
    https_proxy_expect("hang.test", false, FETCH_E_TIMEOUT, "gave no answer to CONNECT hang.test:443: timed out after 300 ms");
    /* 2xx: TLS starts in the tunnel, with the bytes that came with the reply. */
    https_proxy_expect("notls.test", false, FETCH_E_TLS, "TLS with notls.test:443 failed");
}

/* A proxy nobody listens on: the message names the proxy and the variable. */
static void proxy_down(void **state) {
    (void)state;
    uv_tcp_t t;
    uv_tcp_init(&loop, &t);
    struct sockaddr_in a;
    uv_ip4_addr("127.0.0.1", 0, &a);
    uv_tcp_bind(&t, (struct sockaddr *)&a, 0);
    struct sockaddr_in got;
    int len = sizeof got;
    uv_tcp_getsockname(&t, (struct sockaddr *)&got, &len);
    int dead = ntohs(got.sin_port);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(&loop, UV_RUN_NOWAIT);
    char px[128], want[200];
    snprintf(px, sizeof px, "http://u:p@127.0.0.1:%d", dead);
    snprintf(want, sizeof want,
             "cannot connect to the proxy http://127.0.0.1:%d (with credentials) (from HTTPS_PROXY): connection refused",
             dead);
    const char *urls[] = {"https://backend.test", "http://backend.test"};
    for (int i = 0; i < 2; i++) {
        fetch_pool *p = pool_via(px, urls[i], 2000);
        result r;
        get(p, "ok", &r, 2000);
        run_until(&r, 1);
        assert_int_equal(r.err, FETCH_E_PROXY);
        if (!strstr(r.msg, want)) fail_msg("got: %s", r.msg);
        assert_null(strstr(r.msg, "u:p"));
        fetch_pool_release(p);
    }
    assert_string_equal(fetch_error_name(FETCH_E_PROXY), "proxy");
    assert_string_equal(fetch_error_name(FETCH_E_NOMEM), "nomem");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(ok_and_keepalive, setup, teardown),
        cmocka_unit_test_setup_teardown(base_path_and_chunked, setup, teardown),
        cmocka_unit_test_setup_teardown(http_error_status_is_not_a_fetch_error, setup, teardown),
        cmocka_unit_test_setup_teardown(failures, setup, teardown),
        cmocka_unit_test_setup_teardown(compressed_bodies, setup, teardown),
        cmocka_unit_test_setup_teardown(timeout_closes_the_connection, setup, teardown),
        cmocka_unit_test_setup_teardown(abort_is_immediate, setup, teardown),
        cmocka_unit_test_setup_teardown(connection_cap_queues_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(refused, setup, teardown),
        cmocka_unit_test_setup_teardown(header_injection_refused_after_return, setup, teardown),
        cmocka_unit_test_setup_teardown(stale_keepalive_is_retried_once, setup, teardown),
        cmocka_unit_test_setup_teardown(http_through_proxy, setup, teardown),
        cmocka_unit_test_setup_teardown(https_connect_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(proxy_down, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
