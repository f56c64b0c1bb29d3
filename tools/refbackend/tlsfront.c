/*
 * TLS mode of the reference backend (tlsfront.h). Each accepted connection
 * is a pair: `out`, the TLS client, and `in`, a loopback connection to our
 * own plain listener. Ciphertext from out goes through the session and the
 * plaintext is queued to in; what in answers is encrypted and queued to out.
 * Each side writes with uv_try_write and then one uv_write at a time.
 *
 * Ends are passed on: the client's end (EOF or close_notify) half-closes in,
 * the backend's end (EOF) becomes close_notify + FIN, a reset from the
 * backend (its `reset` behaviour) resets the client. After a failed
 * handshake the alert is sent, our side is shut down and what the client
 * still sends is read and dropped for a moment, so it gets the alert rather
 * than a reset.
 */
#include "tlsfront.h"

#include <stdlib.h>
#include <string.h>

#include "log/hclog.h"
#include "loop/sockwrite.h"
#include "util/buf.h"

#define OUT_HIGH (1024 * 1024) /* backend reads pause above this much unsent ciphertext */
#define LINGER_MS 1000

typedef struct front front;

typedef struct {
    uv_tcp_t tcp;
    uv_write_t wreq;
    uv_shutdown_t sreq;
    buf_t q, w;  /* queued / being written by uv_write */
    bool writing, reading, shut;
    front *f;
} side;

struct front {
    side out, in;
    uv_connect_t creq;
    uv_timer_t linger;
    tls_conn *tls;
    int handles;
    bool closing, in_connected, in_ended, out_ended, failed;
    front *prev, *next;
};

static uv_loop_t *g_loop;
static uv_tcp_t g_listener;
static bool g_listening;
static tls_ctx *g_ctx;
static struct sockaddr_storage g_inner;
static front *g_fronts;
static char g_readbuf[65536];
static char g_plain[65536];

static void side_flush(side *s);

static void on_closed(uv_handle_t *h) {
    front *f = h->data;
    if (--f->handles > 0) return;
    tls_conn_free(f->tls);
    buf_free(&f->out.q);
    buf_free(&f->out.w);
    buf_free(&f->in.q);
    buf_free(&f->in.w);
    free(f);
}

static void front_close(front *f, bool reset) {
    if (f->closing) return;
    f->closing = true;
    if (f->prev) f->prev->next = f->next;
    else g_fronts = f->next;
    if (f->next) f->next->prev = f->prev;
    uv_close((uv_handle_t *)&f->linger, on_closed);
    if (!reset || uv_tcp_close_reset(&f->out.tcp, on_closed) != 0) uv_close((uv_handle_t *)&f->out.tcp, on_closed);
    uv_close((uv_handle_t *)&f->in.tcp, on_closed);
}

static void on_alloc(uv_handle_t *h, size_t sz, uv_buf_t *b) {
    (void)h;
    (void)sz;
    b->base = g_readbuf;
    b->len = sizeof g_readbuf;
}

static void on_linger(uv_timer_t *t) { front_close(t->data, false); }

static void on_shutdown(uv_shutdown_t *req, int status) {
    side *s = req->data;
    front *f = s->f;
    if (f->closing || s != &f->out) return;
    /* Our FIN is out: wait for the client's (or give up after a moment). */
    if (status < 0 || f->out_ended) front_close(f, false);
    else uv_timer_start(&f->linger, on_linger, LINGER_MS, 0);
}

static void on_in_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b);

/* Everything queued on s has been written. */
static void side_drained(side *s) {
    front *f = s->f;
    if (s == &f->out) {
        if (f->in_connected && !f->in.reading && !f->in_ended && !f->failed &&
            uv_read_start((uv_stream_t *)&f->in.tcp, on_alloc, on_in_read) == 0)
            f->in.reading = true;
        if ((f->in_ended || f->failed) && !s->shut) {
            s->shut = true;
            if (uv_shutdown(&s->sreq, (uv_stream_t *)&s->tcp, on_shutdown) != 0) front_close(f, false);
        }
    } else if (f->out_ended && !s->shut && f->in_connected) {
        s->shut = true; /* the client is done sending: so are we, towards the backend */
        if (uv_shutdown(&s->sreq, (uv_stream_t *)&s->tcp, on_shutdown) != 0) front_close(f, false);
    }
}

static void on_written(uv_write_t *req, int status) {
    side *s = req->data;
    s->writing = false;
    s->w.len = 0;
    if (s->f->closing) return;
    if (status < 0) {
        front_close(s->f, false);
        return;
    }
    side_flush(s);
}

static void side_flush(side *s) {
    front *f = s->f;
    if (f->closing || s->writing || s->shut || (s == &f->in && !f->in_connected)) return;
    if (s->q.len) {
        size_t queued;
        if (sockwrite(&s->wreq, (uv_stream_t *)&s->tcp, s->q.data, s->q.len, on_written, &queued) != 0) {
            front_close(f, false);
            return;
        }
        if (queued) { /* the rest goes out from w while q refills */
            buf_t t = s->w;
            s->w = s->q;
            s->q = t;
            s->q.len = 0;
            s->writing = true;
            return;
        }
        s->q.len = 0;
    }
    side_drained(s);
}

/* Ciphertext the session produced goes to the client. */
static void send_out(front *f) {
    if (tls_out_take(f->tls, &f->out.q) != 0) {
        front_close(f, false);
        return;
    }
    side_flush(&f->out);
}

static void on_out_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b) {
    front *f = st->data;
    if (f->closing || n == 0) return;
    if (f->out.shut || f->failed || f->out_ended) { /* lingering: drop what still comes */
        if (n < 0) front_close(f, false);
        return;
    }
    if (n < 0) {
        if (n != UV_EOF) {
            front_close(f, false);
            return;
        }
        f->out_ended = true;
        side_flush(&f->in);
        return;
    }
    if (tls_feed(f->tls, b->base, (size_t)n) != 0) {
        front_close(f, false);
        return;
    }
    for (;;) {
        size_t got = 0;
        tls_status ts = tls_read(f->tls, g_plain, sizeof g_plain, &got);
        if (ts == TLS_DONE) {
            buf_append(&f->in.q, g_plain, got);
            continue;
        }
        if (ts == TLS_CLOSED) f->out_ended = true;
        if (ts == TLS_FAILED) {
            char why[512];
            tls_failure(f->tls, why, sizeof why);
            LOG_INFO("TLS handshake with a client failed", HKV_S("cause", why));
            f->failed = true;
        }
        break;
    }
    if (!buf_ok(&f->in.q)) {
        front_close(f, false);
        return;
    }
    send_out(f);
    if (!f->closing && !f->failed) side_flush(&f->in);
}

static void on_in_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b) {
    front *f = st->data;
    if (f->closing || n == 0) return;
    if (n < 0) {
        if (n != UV_EOF) { /* the backend reset the connection on purpose: so do we */
            front_close(f, true);
            return;
        }
        f->in_ended = true;
        uv_read_stop(st);
        f->in.reading = false;
        tls_close_notify(f->tls);
        send_out(f);
        return;
    }
    if (tls_write(f->tls, b->base, (size_t)n) != TLS_DONE) {
        front_close(f, true);
        return;
    }
    send_out(f);
    if (!f->closing && f->in.reading && f->out.q.len + f->out.w.len > OUT_HIGH) {
        uv_read_stop(st); /* side_drained resumes */
        f->in.reading = false;
    }
}

static void on_in_connected(uv_connect_t *req, int status) {
    front *f = req->data;
    if (f->closing) return;
    if (status < 0) {
        LOG_WARN("TLS front cannot reach the plain listener", HKV_S("cause", uv_err_name(status)));
        front_close(f, true);
        return;
    }
    f->in_connected = true;
    uv_tcp_nodelay(&f->in.tcp, 1);
    if (uv_read_start((uv_stream_t *)&f->in.tcp, on_alloc, on_in_read) == 0) f->in.reading = true;
    side_flush(&f->in);
}

static void on_connection(uv_stream_t *srv, int status) {
    if (status < 0) return;
    front *f = calloc(1, sizeof *f);
    if (!f) return;
    f->out.f = f->in.f = f;
    f->out.wreq.data = f->out.sreq.data = &f->out;
    f->in.wreq.data = f->in.sreq.data = &f->in;
    f->creq.data = f;
    uv_tcp_init(g_loop, &f->out.tcp);
    uv_tcp_init(g_loop, &f->in.tcp);
    uv_timer_init(g_loop, &f->linger);
    f->out.tcp.data = f->in.tcp.data = f->linger.data = f;
    f->handles = 3;
    f->next = g_fronts;
    if (g_fronts) g_fronts->prev = f;
    g_fronts = f;
    if (uv_accept(srv, (uv_stream_t *)&f->out.tcp) != 0 || !(f->tls = tls_conn_new(g_ctx, NULL)) ||
        uv_tcp_connect(&f->creq, &f->in.tcp, (const struct sockaddr *)&g_inner, on_in_connected) != 0) {
        front_close(f, false);
        return;
    }
    uv_tcp_nodelay(&f->out.tcp, 1);
    if (uv_read_start((uv_stream_t *)&f->out.tcp, on_alloc, on_out_read) != 0) front_close(f, false);
}

int tlsfront_start(uv_loop_t *loop, const struct sockaddr *addr, const struct sockaddr *inner, tls_ctx *ctx) {
    g_loop = loop;
    g_ctx = ctx;
    memcpy(&g_inner, inner, inner->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in));
    uv_tcp_init(loop, &g_listener);
    g_listening = true;
    int rc = uv_tcp_bind(&g_listener, addr, 0);
    if (rc == 0) rc = uv_listen((uv_stream_t *)&g_listener, 1024, on_connection);
    return rc;
}

uv_tcp_t *tlsfront_listener(void) { return &g_listener; }

void tlsfront_stop(void) {
    if (g_listening) uv_close((uv_handle_t *)&g_listener, NULL);
    g_listening = false;
    while (g_fronts) front_close(g_fronts, false);
}
