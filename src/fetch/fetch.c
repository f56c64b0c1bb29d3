/*
 * HTTP/1.1 client. Lifetimes: the pool is reference-counted by its owner,
 * each connection and each request; connections and requests own libuv
 * handles whose close is asynchronous, so each keeps a count of handles
 * still closing and is freed by the last close callback.
 *
 * Failures found inside llhttp callbacks are recorded and acted on after
 * llhttp_execute returns, so the parser is never torn down mid-call.
 *
 * https: on_read hands ciphertext to the connection's TLS session and the
 * plaintext it yields to the same llhttp path as http; requests are
 * encrypted into the connection's ciphertext buffer, which is written with
 * uv_try_write and, for what the socket does not take, one uv_write at a
 * time (handshake messages and requests share that queue). http:// never
 * touches any of it.
 *
 * Through a proxy: the pool's copy of the proxy_server says where to
 * connect. For https the CONNECT request goes out right after the TCP
 * connect and on_read feeds the proxy's reply to proxy_reply_feed (the
 * connection is "tunneling") until it is complete; a 2xx starts TLS as a
 * direct connection would, the rest of that read being the first TLS bytes.
 * For http only the request line (absolute form) and Proxy-Authorization
 * differ. Bytes holding the Proxy-Authorization value are wiped after use.
 */
#include "fetch.h"

#include <ctype.h>
#include <llhttp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../log/hclog.h"
#include "../loop/sockwrite.h"
#include "../util/buf.h"
#include "gunzip.h"
#include "proxy.h"
#include "tls.h"

/* Room for a message naming host:port (up to 300 bytes) and a cause. */
#define FETCH_MSG_MAX 768

typedef enum { C_RESOLVING, C_CONNECTING, C_ACTIVE, C_IDLE, C_CLOSING } conn_state;

typedef struct fetch_conn fetch_conn;

struct fetch_pool {
    uv_loop_t *loop;
    fetch_url url;
    fetch_limits lim;
    char hostport[300];
    char *user_agent;
    int refs;
    bool released;
    fetch_conn *idle;           /* most recently used first */
    size_t nconns;              /* connections holding a slot */
    fetch_req *queue_head, *queue_tail;
    fetch_stats stats;
    tls_ctx *tls;               /* https only; owned */
    char authority[300];        /* the Host header: host, or host:port when not the scheme's default */
    bool via_proxy;             /* connect to proxy.host:proxy.port, not to the backend */
    proxy_server proxy;         /* the pool's copy; its authorization is a SECRET, wiped on free */
    char proxy_desc[400];       /* "the proxy http://host:port (from HTTPS_PROXY)", for messages */
};

struct fetch_conn {
    uv_tcp_t tcp;
    uv_getaddrinfo_t gai;
    uv_connect_t creq;
    uv_write_t wreq;
    uv_timer_t timer;           /* connect timeout, then idle timeout */
    fetch_pool *pool;
    fetch_req *req;
    llhttp_t parser;
    conn_state state;
    struct addrinfo *addrs, *next_addr;
    int closing_handles;        /* handles whose close callback is pending */
    bool gai_pending;
    bool tcp_open;
    bool message_done;
    bool keep_alive;
    bool reused;                /* served a request before the current one */
    bool got_bytes;             /* the current response has begun */
    fetch_error fail_err;       /* set inside llhttp callbacks */
    char fail_msg[FETCH_MSG_MAX];
    fetch_conn *next_idle;
    /* https only */
    tls_conn *tls;
    buf_t tx, txw;              /* ciphertext to send / being sent by uv_write */
    bool tx_writing;
    bool tcp_connected;         /* a timeout now means the TLS handshake */
    /* https through a proxy */
    bool tunneling;             /* CONNECT sent; the proxy's reply is not complete yet */
    char *connect_msg;          /* the CONNECT request while uv_write sends it (holds the secret) */
    size_t connect_len;
    proxy_reply reply;
};

struct fetch_req {
    fetch_pool *pool;
    fetch_conn *conn;
    const fetch_handler *h;
    void *arg;
    fetch_request rq;           /* the caller's; its memory stays valid until on_done */
    buf_t wire;                 /* serialised only once a connection is ready */
    uv_timer_t timer;
    uint64_t timeout_ms;
    bool done;
    bool queued;
    fetch_req *next;
    size_t body_bytes;
    char hname[24];             /* header name being read (Content-Type and -Encoding matter) */
    size_t hname_len;
    bool hname_long;
    char *in_value;             /* where the current header's value goes: ctype, cenc or NULL */
    size_t in_cap, *in_len;
    char ctype[128];
    size_t ctype_len;
    char cenc[32];              /* Content-Encoding */
    size_t cenc_len;
    gunzip *gz;                 /* decoder of a gzip/deflate body, NULL for identity */
    bool retried;               /* already re-sent once after a stale keep-alive connection */
    fetch_error pending_err;    /* failure found before fetch_start returned */
    char pending_msg[FETCH_MSG_MAX];
};

static const llhttp_settings_t *parser_settings(void);
static void dispatch(fetch_pool *p);
static void conn_close(fetch_conn *c);
static void conn_send(fetch_conn *c);

const char *fetch_error_name(fetch_error e) {
    static const char *const names[] = {"ok", "dns", "connect", "timeout", "io", "protocol",
                                        "too_large", "aborted", "invalid", "tls_unknown_ca", "tls_name",
                                        "tls_expired", "tls_client_cert", "tls", "proxy", "nomem"};
    return (unsigned)e < sizeof names / sizeof names[0] ? names[e] : "unknown";
}

bool fetch_header_ok(const char *name, const char *value) {
    if (!name || !*name || !value) return false;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        if (*p <= 0x20 || *p >= 0x7F || strchr("()<>@,;:\\\"/[]?={}", *p)) return false;
    for (const unsigned char *p = (const unsigned char *)value; *p; p++)
        if (*p == '\r' || *p == '\n' || (*p < 0x20 && *p != '\t') || *p == 0x7F) return false;
    return true;
}

/* ---- pool ------------------------------------------------------------- */

static void pool_unref(fetch_pool *p) {
    if (--p->refs > 0) return;
    explicit_bzero(&p->proxy, sizeof p->proxy);
    tls_ctx_free(p->tls);
    free(p->user_agent);
    free(p);
}

fetch_pool *fetch_pool_new(uv_loop_t *loop, const fetch_url *url, const fetch_limits *limits) {
    fetch_pool *p = calloc(1, sizeof *p);
    if (!p) { tls_ctx_free(limits->tls); return NULL; }
    p->loop = loop;
    p->url = *url;
    p->lim = *limits;
    p->lim.tls = NULL;
    p->lim.proxy = NULL;
    p->tls = limits->tls;
    if (limits->proxy) {
        p->via_proxy = true;
        p->proxy = *limits->proxy;
        char d[340];
        proxy_describe(&p->proxy, d, sizeof d);
        snprintf(p->proxy_desc, sizeof p->proxy_desc, "the proxy %s (from %s)", d,
                 p->proxy.var[0] ? p->proxy.var : "the environment");
    }
    if (p->lim.max_connections == 0) p->lim.max_connections = 1;
    p->user_agent = strdup(limits->user_agent ? limits->user_agent : "gpx-inhouse");
    if (!p->user_agent) { explicit_bzero(&p->proxy, sizeof p->proxy); tls_ctx_free(p->tls); free(p); return NULL; }
    p->lim.user_agent = p->user_agent;
    if (url->tls && !p->tls) {
        tls_input bad;
        char err[256];
        p->tls = tls_ctx_client(&(tls_client_config){0}, &bad, err, sizeof err);
        if (!p->tls) {
            LOG_ERROR("cannot create a TLS context", HKV_S("error", err));
            explicit_bzero(&p->proxy, sizeof p->proxy);
            free(p->user_agent);
            free(p);
            return NULL;
        }
    }
    fetch_url_hostport(url, p->hostport, sizeof p->hostport);
    bool default_port = url->port == (url->tls ? 443 : 80);
    snprintf(p->authority, sizeof p->authority, "%s",
             default_port && !strchr(url->host, ':') ? url->host : p->hostport);
    p->refs = 1;
    return p;
}

void fetch_pool_release(fetch_pool *p) {
    if (!p || p->released) return;
    p->released = true;
    while (p->idle) {
        fetch_conn *c = p->idle;
        p->idle = c->next_idle;
        c->next_idle = NULL;
        conn_close(c);
    }
    pool_unref(p);
}

void fetch_pool_stats(const fetch_pool *p, fetch_stats *out) {
    *out = p->stats;
    out->open = p->nconns;
    unsigned long long resumed, full;
    tls_ctx_counts(p->tls, &resumed, &full);
    out->tls_resumed = resumed;
    out->tls_full = full;
}

/* ---- requests ---------------------------------------------------------- */

static void on_req_timer_closed(uv_handle_t *h) {
    fetch_req *r = h->data;
    fetch_pool *p = r->pool;
    if (p->proxy.has_auth && r->wire.data) explicit_bzero(r->wire.data, r->wire.cap); /* Proxy-Authorization */
    buf_free(&r->wire);
    gunzip_free(r->gz);
    free(r);
    pool_unref(p);
}

static void queue_remove(fetch_pool *p, fetch_req *r) {
    fetch_req **pp = &p->queue_head, *prev = NULL;
    while (*pp && *pp != r) { prev = *pp; pp = &(*pp)->next; }
    if (!*pp) return;
    *pp = r->next;
    if (p->queue_tail == r) p->queue_tail = prev;
    r->next = NULL;
    r->queued = false;
    p->stats.queued--;
}

/* Ends a request: exactly one on_done, then the request is freed. */
static void finish(fetch_req *r, fetch_error err, const char *msg) {
    if (r->done) return;
    r->done = true;
    fetch_pool *p = r->pool;
    if (r->queued) queue_remove(p, r);
    if (r->conn) {
        r->conn->req = NULL;
        r->conn = NULL;
        p->stats.active--;
    }
    if (err != FETCH_OK) p->stats.errors++;
    uv_timer_stop(&r->timer);
    r->h->on_done(r->arg, err, msg ? msg : "");
    uv_close((uv_handle_t *)&r->timer, on_req_timer_closed);
}

static void on_req_timeout(uv_timer_t *t) {
    fetch_req *r = t->data;
    if (r->pending_err != FETCH_OK) { /* a deferred failure from fetch_start */
        finish(r, r->pending_err, r->pending_msg);
        return;
    }
    char msg[FETCH_MSG_MAX];
    snprintf(msg, sizeof msg, "no complete answer from %s within %llu ms", r->pool->hostport,
             (unsigned long long)r->timeout_ms);
    fetch_conn *c = r->conn;
    finish(r, FETCH_E_TIMEOUT, msg);
    if (c) conn_close(c); /* never reuse a half-read connection */
    dispatch(r->pool);
}

static int build_wire(fetch_req *r, const fetch_pool *p, const fetch_request *rq) {
    buf_t *b = &r->wire;
    const char *sep = (rq->path && *rq->path && rq->path[0] != '/') ? "/" : "";
    const char *path = rq->path ? rq->path : "";
    /* Through a proxy, http:// requests name the whole URL (absolute form);
     * https:// ones travel inside the tunnel, as to the backend itself. */
    bool absolute = p->via_proxy && !p->url.tls;
    if (absolute && p->proxy.has_auth) { /* room for all of it: no realloc leaves a copy of the secret behind */
        size_t need = 512 + strlen(rq->method) + 2 * sizeof p->authority + sizeof p->url.base_path + strlen(path) +
                      strlen(p->proxy.authorization) + strlen(p->user_agent) + rq->body_len;
        for (size_t i = 0; i < rq->nheaders; i++) need += strlen(rq->headers[i].name) + strlen(rq->headers[i].value) + 4;
        if (!buf_reserve(b, need)) return -1;
    }
    buf_printf(b, "%s %s%s%s%s%s HTTP/1.1\r\n", rq->method, absolute ? "http://" : "", absolute ? p->authority : "",
               p->url.base_path, sep, path);
    if (!p->url.base_path[0] && !*path) { b->len -= 11; buf_puts(b, "/ HTTP/1.1\r\n"); }
    buf_printf(b, "Host: %s\r\n", p->authority);
    if (absolute && p->proxy.has_auth) buf_printf(b, "Proxy-Authorization: %s\r\n", p->proxy.authorization);
    buf_printf(b, "User-Agent: %s\r\n", p->user_agent);
    bool has_accept = false, has_ctype = false, has_encoding = false;
    for (size_t i = 0; i < rq->nheaders; i++) {
        if (!strcasecmp(rq->headers[i].name, "Accept")) has_accept = true;
        if (!strcasecmp(rq->headers[i].name, "Accept-Encoding")) has_encoding = true;
        if (!strcasecmp(rq->headers[i].name, "Content-Type")) has_ctype = true;
        buf_printf(b, "%s: %s\r\n", rq->headers[i].name, rq->headers[i].value);
    }
    if (!has_accept) buf_puts(b, "Accept: application/json\r\n");
    /* Large JSON answers shrink 5-10x; bodies are inflated as they stream. */
    if (!has_encoding) buf_puts(b, "Accept-Encoding: gzip, deflate\r\n");
    if (rq->body_len || !strcmp(rq->method, "POST") || !strcmp(rq->method, "PUT")) {
        if (!has_ctype) buf_puts(b, "Content-Type: application/json\r\n");
        buf_printf(b, "Content-Length: %zu\r\n", rq->body_len);
    }
    buf_puts(b, "Connection: keep-alive\r\n\r\n");
    buf_append(b, rq->body, rq->body_len);
    return buf_ok(b) ? 0 : -1;
}

static bool path_ok(const char *s) {
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++)
        if (*p <= 0x20 || *p == 0x7F) return false;
    return true;
}

fetch_req *fetch_start(fetch_pool *p, const fetch_request *rq, const fetch_handler *h, void *arg) {
    fetch_req *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->pool = p;
    r->h = h;
    r->arg = arg;
    r->timeout_ms = rq->timeout_ms;
    buf_init(&r->wire);
    p->refs++;
    p->stats.requests++;
    uv_timer_init(p->loop, &r->timer);
    r->timer.data = r;
    for (size_t i = 0; i < rq->nheaders && r->pending_err == FETCH_OK; i++)
        if (!fetch_header_ok(rq->headers[i].name, rq->headers[i].value)) {
            r->pending_err = FETCH_E_INVALID;
            snprintf(r->pending_msg, sizeof r->pending_msg,
                     "header %.60s has a name or value that cannot be sent (control characters or line breaks)",
                     fetch_header_ok(rq->headers[i].name, "") ? rq->headers[i].name : "(invalid name)");
        }
    if (r->pending_err == FETCH_OK && (!path_ok(rq->path) || !rq->method || !*rq->method)) {
        r->pending_err = FETCH_E_INVALID;
        snprintf(r->pending_msg, sizeof r->pending_msg, "request path or method contains forbidden characters");
    }
    r->rq = *rq;
    if (r->pending_err != FETCH_OK) {
        uv_timer_start(&r->timer, on_req_timeout, 0, 0); /* on_done after we return */
        return r;
    }
    if (r->timeout_ms) uv_timer_start(&r->timer, on_req_timeout, r->timeout_ms, 0);
    r->queued = true;
    if (p->queue_tail) p->queue_tail->next = r;
    else p->queue_head = r;
    p->queue_tail = r;
    p->stats.queued++;
    dispatch(p);
    return r;
}

void fetch_abort(fetch_req *r) {
    if (!r || r->done) return;
    fetch_conn *c = r->conn;
    fetch_pool *p = r->pool;
    p->refs++; /* finish may free the request; keep the pool for dispatch */
    finish(r, FETCH_E_ABORTED, "aborted");
    if (c) conn_close(c);
    dispatch(p);
    pool_unref(p);
}

/* ---- connections -------------------------------------------------------- */

/* A connection is freed once no handle close and no DNS lookup is pending. */
static void conn_maybe_free(fetch_conn *c) {
    if (c->closing_handles > 0 || c->gai_pending) return;
    fetch_pool *p = c->pool;
    if (c->addrs) uv_freeaddrinfo(c->addrs);
    if (c->connect_msg) { explicit_bzero(c->connect_msg, c->connect_len); free(c->connect_msg); }
    tls_conn_free(c->tls);
    buf_free(&c->tx);
    buf_free(&c->txw);
    free(c);
    pool_unref(p);
}

static void conn_handle_closed(uv_handle_t *h) {
    fetch_conn *c = h->data;
    c->closing_handles--;
    conn_maybe_free(c);
}

static void conn_close(fetch_conn *c) {
    if (c->state == C_CLOSING) return;
    fetch_pool *p = c->pool;
    if (c->state == C_IDLE) {
        for (fetch_conn **pp = &p->idle; *pp; pp = &(*pp)->next_idle)
            if (*pp == c) { *pp = c->next_idle; break; }
    }
    c->state = C_CLOSING;
    p->nconns--;
    if (c->tls && c->tcp_open && !c->tx_writing && tls_handshake_done(c->tls)) {
        /* Say goodbye properly when it costs nothing: one direct write. */
        tls_close_notify(c->tls);
        c->tx.len = 0;
        if (tls_out_take(c->tls, &c->tx) == 0 && c->tx.len) {
            uv_buf_t b = uv_buf_init(c->tx.data, (unsigned)c->tx.len);
            (void)uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
        }
    }
    if (c->gai_pending) uv_cancel((uv_req_t *)&c->gai);
    c->closing_handles += 1 + (c->tcp_open ? 1 : 0);
    if (c->tcp_open) uv_close((uv_handle_t *)&c->tcp, conn_handle_closed);
    c->tcp_open = false;
    uv_close((uv_handle_t *)&c->timer, conn_handle_closed);
}

/* The connection failed before or while serving its request. */
static void conn_fail(fetch_conn *c, fetch_error err, const char *msg) {
    fetch_req *r = c->req;
    fetch_pool *p = c->pool;
    p->refs++;
    conn_close(c);
    if (r) finish(r, err, msg);
    dispatch(p);
    pool_unref(p);
}

static void on_idle_timeout(uv_timer_t *t) {
    fetch_conn *c = t->data;
    conn_close(c);
}

static void conn_to_idle(fetch_conn *c) {
    fetch_pool *p = c->pool;
    if (p->released || !c->keep_alive) { conn_close(c); return; }
    /* Keep reading: a backend that closes an idle connection is noticed at
     * once (on_read closes it) instead of failing the next request. */
    c->state = C_IDLE;
    c->next_idle = p->idle;
    p->idle = c;
    if (p->lim.idle_timeout_ms) uv_timer_start(&c->timer, on_idle_timeout, p->lim.idle_timeout_ms, 0);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b) {
    (void)h;
    static char buf[65536]; /* consumed synchronously by on_read */
    (void)suggested;
    b->base = buf;
    b->len = sizeof buf;
}

/* The proxy refused CONNECT, answered something else than HTTP, or hung up
 * (eof) before its reply ended. */
static void conn_proxy_fail(fetch_conn *c, bool eof) {
    fetch_pool *p = c->pool;
    char msg[FETCH_MSG_MAX];
    proxy_reply_message(&c->reply, &p->proxy, p->url.host, p->url.port, eof, msg, sizeof msg);
    conn_fail(c, FETCH_E_PROXY, msg);
}

/* The socket ended (n < 0: UV_EOF or an error), or TLS said close_notify. */
static void conn_eof(fetch_conn *c, ssize_t n) {
    fetch_req *r = c->req;
    char msg[FETCH_MSG_MAX];
    if (!r) { conn_close(c); return; } /* idle connection closed by the backend */
    if (c->tunneling) { conn_proxy_fail(c, true); return; }
    if (c->tls && !tls_handshake_done(c->tls)) {
        snprintf(msg, sizeof msg,
                 "%s closed the connection during the TLS handshake (%s): is it a TLS server, and does it want a "
                 "client certificate?",
                 c->pool->hostport, n == UV_EOF ? "end of stream" : uv_strerror((int)n));
        conn_fail(c, FETCH_E_TLS, msg);
        return;
    }
    if (c->reused && !c->got_bytes && !r->retried) {
        /* The backend dropped a kept-alive connection just as we reused
         * it: nothing was answered, so send the request again once. */
        fetch_pool *p = c->pool;
        r->retried = true;
        c->req = NULL;
        r->conn = NULL;
        p->stats.active--;
        r->queued = true;
        r->next = p->queue_head;
        p->queue_head = r;
        if (!p->queue_tail) p->queue_tail = r;
        p->stats.queued++;
        p->refs++;
        conn_close(c);
        dispatch(p);
        pool_unref(p);
        return;
    }
    llhttp_errno_t e = n == UV_EOF ? llhttp_finish(&c->parser) : HPE_OK;
    if (n == UV_EOF && e == HPE_OK && c->message_done) return;
    if (r->body_bytes || llhttp_get_status_code(&c->parser))
        snprintf(msg, sizeof msg, "%s closed the connection in the middle of the response (%s after %zu body bytes)",
                 c->pool->hostport, n == UV_EOF ? "end of stream" : uv_strerror((int)n), r->body_bytes);
    else
        snprintf(msg, sizeof msg, "%s closed the connection without answering (%s)", c->pool->hostport,
                 n == UV_EOF ? "end of stream" : uv_strerror((int)n));
    conn_fail(c, FETCH_E_IO, msg);
}

/* Response bytes (plaintext) for the current request. */
static void conn_input(fetch_conn *c, const char *data, size_t n) {
    fetch_req *r = c->req;
    char msg[FETCH_MSG_MAX];
    if (!r) { conn_close(c); return; } /* bytes nobody asked for */
    c->got_bytes = true;
    llhttp_errno_t e = llhttp_execute(&c->parser, data, n);
    if (c->fail_err != FETCH_OK) {
        conn_fail(c, c->fail_err, c->fail_msg);
        return;
    }
    if (e == HPE_PAUSED && c->message_done) {
        const char *stop = llhttp_get_error_pos(&c->parser);
        bool extra = stop && stop < data + n;
        fetch_pool *p = c->pool;
        p->refs++;
        if (extra) c->keep_alive = false; /* unsolicited bytes: do not trust this connection */
        c->reused = true;
        c->req = NULL;
        r->conn = NULL;
        p->stats.active--;
        conn_to_idle(c);
        finish(r, FETCH_OK, NULL);
        dispatch(p);
        pool_unref(p);
        return;
    }
    if (e != HPE_OK) {
        snprintf(msg, sizeof msg, "%s sent an invalid HTTP response: %s", c->pool->hostport,
                 llhttp_get_error_reason(&c->parser) ? llhttp_get_error_reason(&c->parser) : llhttp_errno_name(e));
        conn_fail(c, FETCH_E_PROTOCOL, msg);
    }
}

/* ---- TLS ------------------------------------------------------------------ */

static void on_tls_written(uv_write_t *w, int status);

/* Puts the ciphertext the session produced on the socket: directly when it
 * takes it, else one uv_write at a time (the next batch waits in tx). */
static void conn_tls_flush(fetch_conn *c) {
    if (c->state == C_CLOSING || c->tx_writing) return;
    if (tls_out_take(c->tls, &c->tx) != 0) {
        conn_fail(c, FETCH_E_NOMEM, "out of memory encrypting the request");
        return;
    }
    if (c->tx.len == 0) return;
    size_t queued;
    int rc = sockwrite(&c->wreq, (uv_stream_t *)&c->tcp, c->tx.data, c->tx.len, on_tls_written, &queued);
    if (rc == 0) {
        if (queued) { /* the unsent rest goes out from txw while tx refills */
            buf_t t = c->txw;
            c->txw = c->tx;
            c->tx = t;
            c->tx_writing = true;
        }
        c->tx.len = 0;
        return;
    }
    char msg[FETCH_MSG_MAX];
    snprintf(msg, sizeof msg, "sending to %s failed: %s", c->pool->hostport, uv_strerror(rc));
    conn_fail(c, FETCH_E_IO, msg);
}

static void on_tls_written(uv_write_t *w, int status) {
    fetch_conn *c = w->data;
    c->tx_writing = false;
    c->txw.len = 0;
    if (c->state == C_CLOSING) return;
    if (status != 0) {
        char msg[FETCH_MSG_MAX];
        snprintf(msg, sizeof msg, "sending to %s failed: %s", c->pool->hostport, uv_strerror(status));
        conn_fail(c, FETCH_E_IO, msg);
        return;
    }
    conn_tls_flush(c);
}

/* The session failed: the user learns which check failed, on which server. */
static void conn_tls_fail(fetch_conn *c) {
    char why[512], msg[FETCH_MSG_MAX];
    tls_error te = tls_failure(c->tls, why, sizeof why);
    fetch_error err = te == TLS_E_UNKNOWN_CA    ? FETCH_E_TLS_UNKNOWN_CA
                      : te == TLS_E_NAME        ? FETCH_E_TLS_NAME
                      : te == TLS_E_EXPIRED     ? FETCH_E_TLS_EXPIRED
                      : te == TLS_E_CLIENT_CERT ? FETCH_E_TLS_CLIENT_CERT
                                                : FETCH_E_TLS;
    snprintf(msg, sizeof msg, "TLS with %s failed: %.440s", c->pool->hostport, why);
    conn_tls_flush(c); /* the alert that tells the server why */
    conn_fail(c, err, msg);
}

/* Ciphertext from the socket: advance the handshake, then hand the
 * plaintext to llhttp exactly as an http connection would. */
static void conn_tls_input(fetch_conn *c, const char *data, size_t n) {
    static char plain[65536]; /* consumed synchronously by conn_input */
    if (tls_feed(c->tls, data, n) != 0) {
        conn_fail(c, FETCH_E_NOMEM, "out of memory reading the response");
        return;
    }
    if (!tls_handshake_done(c->tls)) {
        tls_status st = tls_handshake(c->tls);
        if (st == TLS_FAILED) { conn_tls_fail(c); return; }
        conn_tls_flush(c);
        if (st == TLS_AGAIN || c->state == C_CLOSING) return;
        if (c->req) conn_send(c);
        else conn_to_idle(c); /* its request was aborted meanwhile */
    }
    while (c->state != C_CLOSING) {
        size_t got = 0;
        tls_status st = tls_read(c->tls, plain, sizeof plain, &got);
        if (st == TLS_DONE) { conn_input(c, plain, got); continue; }
        if (st == TLS_AGAIN) { conn_tls_flush(c); return; }
        if (st == TLS_CLOSED) { conn_eof(c, UV_EOF); return; }
        conn_tls_fail(c);
        return;
    }
}

static void conn_tls_start(fetch_conn *c);

/* The proxy's reply to CONNECT, in as many reads as it takes. On 2xx, TLS
 * with the backend starts and gets what followed the reply's head. */
static void conn_tunnel_input(fetch_conn *c, const char *data, size_t n) {
    size_t used = 0;
    proxy_reply_result res = proxy_reply_feed(&c->reply, (const uint8_t *)data, n, &used);
    if (res == PROXY_REPLY_MORE) return;
    if (res != PROXY_REPLY_ESTABLISHED) { conn_proxy_fail(c, false); return; }
    c->tunneling = false;
    conn_tls_start(c);
    if (c->state != C_CLOSING && used < n) conn_tls_input(c, data + used, n - used);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
    fetch_conn *c = s->data;
    if (n == 0 || c->state == C_CLOSING) return;
    if (n < 0) conn_eof(c, n);
    else if (c->tunneling) conn_tunnel_input(c, b->base, (size_t)n);
    else if (c->tls) conn_tls_input(c, b->base, (size_t)n);
    else conn_input(c, b->base, (size_t)n);
}

static void on_written(uv_write_t *w, int status) {
    fetch_conn *c = w->data;
    if (status == 0 || c->state == C_CLOSING) return;
    char msg[FETCH_MSG_MAX];
    snprintf(msg, sizeof msg, "sending the request to %s failed: %s", c->pool->hostport, uv_strerror(status));
    conn_fail(c, FETCH_E_IO, msg);
}

static void conn_send(fetch_conn *c) {
    fetch_req *r = c->req;
    c->state = C_ACTIVE;
    c->got_bytes = false;
    c->message_done = false;
    c->keep_alive = false;
    c->fail_err = FETCH_OK;
    llhttp_init(&c->parser, HTTP_RESPONSE, parser_settings());
    c->parser.data = c;
    uv_timer_stop(&c->timer);
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    /* Serialised now, not at fetch_start: queued requests cost no copy. */
    r->wire.len = 0;
    if (build_wire(r, c->pool, &r->rq) != 0) {
        conn_fail(c, FETCH_E_NOMEM, "out of memory building the request");
        return;
    }
    if (c->tls) {
        if (tls_write(c->tls, r->wire.data, r->wire.len) != TLS_DONE) conn_tls_fail(c);
        else conn_tls_flush(c);
        return;
    }
    size_t queued;
    int rc = sockwrite(&c->wreq, (uv_stream_t *)&c->tcp, r->wire.data, r->wire.len, on_written, &queued);
    if (rc != 0) {
        char msg[FETCH_MSG_MAX];
        snprintf(msg, sizeof msg, "sending the request to %s failed: %s", c->pool->hostport, uv_strerror(rc));
        conn_fail(c, FETCH_E_IO, msg);
    }
}

static void try_connect(fetch_conn *c);

/* Connected: the TLS handshake begins with our ClientHello. */
static void conn_tls_start(fetch_conn *c) {
    c->tcp_connected = true;
    c->tls = tls_conn_new(c->pool->tls, c->pool->url.host);
    if (!c->tls) {
        conn_fail(c, FETCH_E_NOMEM, "out of memory starting TLS");
        return;
    }
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    if (tls_handshake(c->tls) == TLS_FAILED) conn_tls_fail(c);
    else conn_tls_flush(c);
}

static void on_connect_written(uv_write_t *w, int status) {
    fetch_conn *c = w->data;
    c->tx_writing = false;
    explicit_bzero(c->connect_msg, c->connect_len);
    free(c->connect_msg);
    c->connect_msg = NULL;
    if (c->state == C_CLOSING) return;
    if (status == 0) {
        if (c->tls) conn_tls_flush(c); /* the reply came first: the ClientHello waited for this write */
        return;
    }
    char msg[FETCH_MSG_MAX];
    snprintf(msg, sizeof msg, "sending CONNECT %s to %s failed: %s", c->pool->hostport, c->pool->proxy_desc,
             uv_strerror(status));
    conn_fail(c, FETCH_E_PROXY, msg);
}

/* Connected to the proxy: ask it for a tunnel to the backend. Its reply is
 * read by conn_tunnel_input; the connect timeout keeps running. */
static void conn_proxy_connect(fetch_conn *c) {
    fetch_pool *p = c->pool;
    char req[2048];
    size_t n = proxy_connect_request(&p->proxy, p->url.host, p->url.port, req, sizeof req);
    if (n == 0) {
        conn_fail(c, FETCH_E_INVALID, "cannot build the CONNECT request for the proxy (host name or credentials too long)");
        return;
    }
    c->tunneling = true;
    proxy_reply_init(&c->reply);
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    uv_buf_t b = uv_buf_init(req, (unsigned)n);
    int rc = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    if (rc >= 0 || rc == UV_EAGAIN) {
        size_t done = rc > 0 ? (size_t)rc : 0;
        rc = 0;
        if (done < n) { /* the rest from a heap copy that lives until the write ends */
            c->connect_msg = malloc(n - done);
            if (!c->connect_msg) {
                explicit_bzero(req, sizeof req);
                conn_fail(c, FETCH_E_NOMEM, "out of memory sending CONNECT to the proxy");
                return;
            }
            c->connect_len = n - done;
            memcpy(c->connect_msg, req + done, n - done);
            b = uv_buf_init(c->connect_msg, (unsigned)c->connect_len);
            rc = uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, on_connect_written);
            if (rc == 0) c->tx_writing = true;
        }
    }
    explicit_bzero(req, sizeof req);
    if (rc != 0) {
        char msg[FETCH_MSG_MAX];
        snprintf(msg, sizeof msg, "sending CONNECT %s to %s failed: %s", p->hostport, p->proxy_desc, uv_strerror(rc));
        conn_fail(c, FETCH_E_PROXY, msg);
    }
}

/* Why connecting failed, naming the proxy when it was the proxy we tried. */
static fetch_error connect_error(const fetch_pool *p, int rc, char *msg, size_t cap) {
    if (p->via_proxy) {
        snprintf(msg, cap, "cannot connect to %s: %s; check %s and that the proxy is running", p->proxy_desc,
                 uv_strerror(rc), p->proxy.var);
        return FETCH_E_PROXY;
    }
    if (rc == UV_ECONNREFUSED)
        snprintf(msg, cap, "connection to %s refused: is the backend running?", p->hostport);
    else
        snprintf(msg, cap, "cannot connect to %s: %s", p->hostport, uv_strerror(rc));
    return FETCH_E_CONNECT;
}

static fetch_error resolve_error(const fetch_pool *p, int rc, char *msg, size_t cap) {
    if (p->via_proxy) {
        snprintf(msg, cap, "cannot resolve the host of %s: %s; check %s", p->proxy_desc, uv_strerror(rc),
                 p->proxy.var);
        return FETCH_E_PROXY;
    }
    snprintf(msg, cap, "cannot resolve host %s: %s", p->url.host, uv_strerror(rc));
    return FETCH_E_DNS;
}

/* The socket of a failed attempt is closed: try the host's next address. */
static void on_retry_closed(uv_handle_t *h) {
    fetch_conn *c = h->data;
    c->closing_handles--;
    if (c->state != C_CLOSING) try_connect(c);
    else conn_maybe_free(c);
}

static void on_connected(uv_connect_t *cr, int status) {
    fetch_conn *c = cr->data;
    if (c->state == C_CLOSING) return;
    if (status == 0) {
        uv_tcp_nodelay(&c->tcp, 1);
        if (c->pool->via_proxy && c->pool->url.tls) conn_proxy_connect(c);
        else if (c->pool->tls) conn_tls_start(c);
        else if (c->req) conn_send(c);
        else conn_to_idle(c); /* its request was aborted meanwhile */
        return;
    }
    if (c->next_addr && (status == UV_ECONNREFUSED || status == UV_ENETUNREACH || status == UV_EHOSTUNREACH ||
                         status == UV_EADDRNOTAVAIL || status == UV_EAFNOSUPPORT)) {
        /* Another address of the same host (e.g. 127.0.0.1 after ::1). */
        c->tcp_open = false;
        c->closing_handles++;
        uv_close((uv_handle_t *)&c->tcp, on_retry_closed);
        return;
    }
    char msg[FETCH_MSG_MAX];
    fetch_error err = connect_error(c->pool, status, msg, sizeof msg);
    conn_fail(c, err, msg);
}

/* Starts connecting to the next address; 0 or a libuv error. */
static int connect_next(fetch_conn *c) {
    struct addrinfo *ai = c->next_addr;
    c->next_addr = ai->ai_next;
    uv_tcp_init(c->pool->loop, &c->tcp);
    c->tcp.data = c;
    c->tcp_open = true;
    c->state = C_CONNECTING;
    c->creq.data = c;
    return uv_tcp_connect(&c->creq, &c->tcp, ai->ai_addr, on_connected);
}

static void try_connect(fetch_conn *c) {
    int rc = connect_next(c);
    if (rc != 0) {
        char msg[FETCH_MSG_MAX];
        fetch_error err = connect_error(c->pool, rc, msg, sizeof msg);
        conn_fail(c, err, msg);
    }
}

static void on_resolved(uv_getaddrinfo_t *g, int status, struct addrinfo *res) {
    fetch_conn *c = g->data;
    c->gai_pending = false;
    if (c->state == C_CLOSING) {
        if (res) uv_freeaddrinfo(res);
        conn_maybe_free(c);
        return;
    }
    if (status != 0 || !res) {
        char msg[FETCH_MSG_MAX];
        fetch_error err = resolve_error(c->pool, status, msg, sizeof msg);
        conn_fail(c, err, msg);
        return;
    }
    c->addrs = c->next_addr = res;
    try_connect(c);
}

static void on_connect_timeout(uv_timer_t *t) {
    fetch_conn *c = t->data;
    fetch_pool *p = c->pool;
    char msg[FETCH_MSG_MAX];
    unsigned long long ms = (unsigned long long)p->lim.connect_timeout_ms;
    if (c->tunneling)
        snprintf(msg, sizeof msg, "%s gave no answer to CONNECT %s: timed out after %llu ms", p->proxy_desc,
                 p->hostport, ms);
    else if (p->via_proxy && !c->tcp_connected)
        snprintf(msg, sizeof msg, "connecting to %s timed out after %llu ms", p->proxy_desc, ms);
    else
        snprintf(msg, sizeof msg, "%s %s timed out after %llu ms", c->tcp_connected ? "the TLS handshake with" : "connecting to",
                 p->hostport, ms);
    conn_fail(c, FETCH_E_TIMEOUT, msg);
}

static fetch_conn *conn_open(fetch_pool *p) {
    fetch_conn *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->pool = p;
    c->state = C_RESOLVING;
    uv_timer_init(p->loop, &c->timer);
    c->timer.data = c;
    c->gai.data = c;
    c->wreq.data = c;
    p->refs++;
    p->nconns++;
    p->stats.connections_opened++;
    /* The loop's clock is from the start of this iteration; building the
     * instance may have taken a while (loading OpenSSL, say), so refresh it
     * or the connect timeout fires early. */
    uv_update_time(p->loop);
    if (p->lim.connect_timeout_ms) uv_timer_start(&c->timer, on_connect_timeout, p->lim.connect_timeout_ms, 0);
    /* Through a proxy, every connection goes to the proxy. */
    const char *host = p->via_proxy ? p->proxy.host : p->url.host;
    char port[8];
    snprintf(port, sizeof port, "%u", p->via_proxy ? p->proxy.port : p->url.port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_ADDRCONFIG};
    /* An IP literal needs no resolver: no thread-pool round trip (and no
     * pool thread waking up with a malloc arena of its own). Parsing it with
     * AI_NUMERICHOST never touches the network or a file. */
    struct addrinfo numeric = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                               .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    if (getaddrinfo(host, port, &numeric, &res) == 0 && res) {
        c->addrs = c->next_addr = res;
        int rc = connect_next(c);
        if (rc != 0) /* as below: the caller attaches its request, then we fail */
            c->fail_err = connect_error(p, rc, c->fail_msg, sizeof c->fail_msg);
        return c;
    }
    c->gai_pending = true;
    int rc = uv_getaddrinfo(p->loop, &c->gai, on_resolved, host, port, &hints);
    if (rc != 0) {
        c->gai_pending = false;
        /* No request is attached yet: the caller attaches, then we fail. */
        c->fail_err = resolve_error(p, rc, c->fail_msg, sizeof c->fail_msg);
    }
    return c;
}

/* Hands queued requests to idle connections, or opens new ones. */
static void dispatch(fetch_pool *p) {
    while (p->queue_head) {
        fetch_conn *c = p->idle;
        if (c) {
            p->idle = c->next_idle;
            c->next_idle = NULL;
            p->stats.reused++;
        } else if (p->nconns < p->lim.max_connections && !p->released) {
            c = conn_open(p);
            if (!c) return;
        } else {
            return;
        }
        fetch_req *r = p->queue_head;
        p->queue_head = r->next;
        if (!p->queue_head) p->queue_tail = NULL;
        r->next = NULL;
        r->queued = false;
        p->stats.queued--;
        p->stats.active++;
        r->conn = c;
        c->req = r;
        if (c->fail_err != FETCH_OK) { conn_fail(c, c->fail_err, c->fail_msg); continue; }
        if (c->state == C_IDLE) conn_send(c);
    }
}

/* ---- llhttp callbacks --------------------------------------------------- */

static int hp_header_field(llhttp_t *hp, const char *at, size_t len) {
    fetch_req *r = ((fetch_conn *)hp->data)->req;
    if (r->hname_len + len < sizeof r->hname) memcpy(r->hname + r->hname_len, at, len);
    else r->hname_long = true;
    r->hname_len += len;
    return 0;
}

static int hp_header_field_complete(llhttp_t *hp) {
    fetch_req *r = ((fetch_conn *)hp->data)->req;
    r->in_value = NULL;
    if (!r->hname_long && r->hname_len == 12 && strncasecmp(r->hname, "content-type", 12) == 0) {
        r->in_value = r->ctype, r->in_cap = sizeof r->ctype, r->in_len = &r->ctype_len;
    } else if (!r->hname_long && r->hname_len == 16 && strncasecmp(r->hname, "content-encoding", 16) == 0) {
        r->in_value = r->cenc, r->in_cap = sizeof r->cenc, r->in_len = &r->cenc_len;
    }
    if (r->in_value) *r->in_len = 0, r->in_value[0] = '\0';
    r->hname_len = 0;
    r->hname_long = false;
    return 0;
}

static int hp_header_value(llhttp_t *hp, const char *at, size_t len) {
    fetch_req *r = ((fetch_conn *)hp->data)->req;
    if (!r->in_value) return 0;
    size_t room = r->in_cap - 1 - *r->in_len;
    if (len > room) len = room;
    memcpy(r->in_value + *r->in_len, at, len);
    *r->in_len += len;
    r->in_value[*r->in_len] = '\0';
    return 0;
}

static int hp_header_value_complete(llhttp_t *hp) {
    ((fetch_conn *)hp->data)->req->in_value = NULL;
    return 0;
}

/* Decompressed body bytes go to the caller. */
static int gz_out(void *arg, const uint8_t *data, size_t len) {
    fetch_req *r = arg;
    return r->h->on_body ? r->h->on_body(r->arg, data, len) : 0;
}

/* Turns a decoder failure into the request's failure; -1 for llhttp. */
static int gz_fail(fetch_conn *c, gunzip_status st) {
    fetch_req *r = c->req;
    size_t max = c->pool->lim.max_response_bytes;
    if (st == GUNZIP_E_LIMIT) {
        c->fail_err = FETCH_E_TOO_LARGE;
        snprintf(c->fail_msg, sizeof c->fail_msg,
                 "the response from %s is larger than the limit of %zu bytes once decompressed (%s)",
                 c->pool->hostport, max, r->cenc);
    } else if (st == GUNZIP_E_ABORTED) {
        c->fail_err = FETCH_E_ABORTED;
        snprintf(c->fail_msg, sizeof c->fail_msg, "response body refused by the caller");
    } else if (st == GUNZIP_E_NOMEM) {
        c->fail_err = FETCH_E_NOMEM;
        snprintf(c->fail_msg, sizeof c->fail_msg, "out of memory decompressing the response");
    } else {
        c->fail_err = FETCH_E_PROTOCOL;
        snprintf(c->fail_msg, sizeof c->fail_msg, "the %s response body from %s could not be decompressed: %s",
                 r->cenc, c->pool->hostport, gunzip_error(r->gz) ? gunzip_error(r->gz) : "corrupt data");
    }
    return -1;
}

static int hp_headers_complete(llhttp_t *hp) {
    fetch_conn *c = hp->data;
    fetch_req *r = c->req;
    fetch_pool *p = c->pool;
    if (p->via_proxy && !p->url.tls && llhttp_get_status_code(hp) == 407) {
        /* The proxy, not the backend, wants (other) credentials. */
        proxy_reply pr;
        proxy_reply_init(&pr);
        pr.result = PROXY_REPLY_REFUSED;
        pr.status = 407;
        snprintf(pr.reason, sizeof pr.reason, "Proxy Authentication Required");
        c->fail_err = FETCH_E_PROXY;
        proxy_reply_message(&pr, &p->proxy, p->url.host, p->url.port, false, c->fail_msg, sizeof c->fail_msg);
        return -1;
    }
    int status = llhttp_get_status_code(hp);
    if (status < 100 || status > 999) { /* llhttp takes "HTTP/1.1 2 OK" */
        c->fail_err = FETCH_E_PROTOCOL;
        snprintf(c->fail_msg, sizeof c->fail_msg, "%s sent an invalid HTTP response: status code %d is not three digits",
                 c->pool->hostport, status);
        return -1;
    }
    gunzip_free(r->gz); /* a response before this one (a retried request) */
    r->gz = NULL;
    gunzip_encoding enc = gunzip_encoding_parse(r->cenc_len ? r->cenc : NULL);
    if (enc == GUNZIP_UNSUPPORTED) {
        c->fail_err = FETCH_E_PROTOCOL;
        snprintf(c->fail_msg, sizeof c->fail_msg,
                 "%s answered with Content-Encoding \"%s\", which the plugin cannot decode (gzip and deflate are)",
                 c->pool->hostport, r->cenc);
        return -1;
    }
    if (enc != GUNZIP_IDENTITY) {
        r->gz = gunzip_new(enc, c->pool->lim.max_response_bytes, gz_out, r);
        if (!r->gz) return gz_fail(c, GUNZIP_E_NOMEM);
    }
    if (r->h->on_response && r->h->on_response(r->arg, llhttp_get_status_code(hp), r->ctype) != 0) {
        c->fail_err = FETCH_E_ABORTED;
        snprintf(c->fail_msg, sizeof c->fail_msg, "response refused by the caller");
        return -1;
    }
    return 0;
}

static int hp_body(llhttp_t *hp, const char *at, size_t len) {
    fetch_conn *c = hp->data;
    fetch_req *r = c->req;
    r->body_bytes += len;
    size_t max = c->pool->lim.max_response_bytes;
    if (max && r->body_bytes > max) {
        c->fail_err = FETCH_E_TOO_LARGE;
        snprintf(c->fail_msg, sizeof c->fail_msg, "the response from %s is larger than the limit of %zu bytes",
                 c->pool->hostport, max);
        return -1;
    }
    if (r->gz) {
        gunzip_status st = gunzip_feed(r->gz, (const uint8_t *)at, len);
        return st == GUNZIP_OK ? 0 : gz_fail(c, st);
    }
    if (r->h->on_body && r->h->on_body(r->arg, (const uint8_t *)at, len) != 0) {
        c->fail_err = FETCH_E_ABORTED;
        snprintf(c->fail_msg, sizeof c->fail_msg, "response body refused by the caller");
        return -1;
    }
    return 0;
}

static int hp_message_complete(llhttp_t *hp) {
    fetch_conn *c = hp->data;
    if (c->req && c->req->gz) {
        gunzip_status st = gunzip_finish(c->req->gz);
        if (st != GUNZIP_OK) return gz_fail(c, st);
    }
    c->message_done = true;
    c->keep_alive = llhttp_should_keep_alive(hp);
    return HPE_PAUSED; /* one response per request: stop here */
}

static const llhttp_settings_t *parser_settings(void) {
    static llhttp_settings_t s;
    static bool inited;
    if (!inited) {
        llhttp_settings_init(&s);
        s.on_header_field = hp_header_field;
        s.on_header_field_complete = hp_header_field_complete;
        s.on_header_value = hp_header_value;
        s.on_header_value_complete = hp_header_value_complete;
        s.on_headers_complete = hp_headers_complete;
        s.on_body = hp_body;
        s.on_message_complete = hp_message_complete;
        inited = true;
    }
    return &s;
}
