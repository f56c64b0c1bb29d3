/*
 * refbackend: the reference in-house backend (docs: README.md beside this file).
 *
 * One thread, one libuv loop. Each connection parses requests with llhttp
 * and answers them strictly in order through a FIFO of pending responses;
 * an answer that is ready while nothing is pending before it goes straight
 * into the connection's output buffer, so the common path allocates nothing
 * once warm. Writes are batched per loop iteration: callbacks only append
 * to a connection's output and mark it dirty; a uv_check handle (after poll:
 * everything the reads produced) and a uv_prepare handle (before poll:
 * timers, write completions) flush each dirty connection with one
 * uv_try_write, falling back to uv_write for the rest (one write in flight,
 * the next batch filling behind it). The last /query answer is kept with its
 * request body as key, since answers are a pure function of the body.
 *
 * Behaviours chosen by the request (latency, injected status, malformed,
 * truncated, huge, reset, hang, drip, chunked) are properties of a queued
 * response: timers delay or pace it, a streamed body is produced only while
 * the output stays under a high-water mark, and the connection ends the way
 * the behaviour asks (graceful close, abortive reset, or never).
 */
#include <errno.h>
#include <getopt.h>
#include <llhttp.h>
#include <netdb.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <uv.h>

#include "gen.h"
#include "log/hclog.h"
#include "loop/sockwrite.h"
#include "tlsfront.h"
#include "util/buf.h"
#include "zbody.h"

#define READ_BUF_SIZE 65536
#define STREAM_PIECE 65536         /* bytes of a streamed body produced at once */
#define OUT_HIGH (256 * 1024)      /* streamed bodies pause above this */
#define PIPE_HIGH (4 * 1024 * 1024) /* parsing pauses above this much unsent output */
#define QUEUE_HIGH 128             /* ... or this many pending responses */
#define MAX_HEAD 65536             /* request line + headers */
#define LINGER_MS 2000             /* drain time after our FIN */
#define RESET_DELAY_MS 20          /* lets the partial body leave before the RST */
#define WBUF_KEEP (1024 * 1024)    /* larger output buffers are released when idle */

typedef struct conn conn_t;
typedef struct resp resp_t;

enum deliv { DL_NORMAL, DL_TRUNCATE, DL_RESET, DL_HANG, DL_DRIP };
enum connhdr { CH_NONE, CH_CLOSE, CH_KEEPALIVE };

/* A response that cannot be written at once: queued, delayed or streamed. */
struct resp {
    resp_t *next;
    conn_t *c;
    uv_timer_t timer; /* latency, then drip ticks */
    int status;
    enum deliv deliv;
    enum connhdr connhdr;
    bool chunked, close_after, waiting, head_sent, huge;
    buf_t body;
    size_t off;
    rb_huge h;
    rb_zstream *zs;     /* mode=huge with encoding=gzip|deflate: compressed as it streams */
    const char *extra;  /* more head lines (Content-Encoding) */
    uint32_t drip_bytes, drip_ms;
};

struct conn {
    uv_tcp_t tcp;
    uv_timer_t timer; /* linger after shutdown, delay before reset */
    uv_write_t wreq;
    uv_shutdown_t sreq;
    llhttp_t parser;
    conn_t *prev, *next;  /* every open connection */
    conn_t *dirty_next;   /* connections to flush this iteration */
    buf_t out, wbuf;      /* filling / being written */
    buf_t url, body, inbuf;
    resp_t *q_head, *q_tail;
    unsigned qlen;
    int handles_open;
    bool dirty, closing, writing, reading, paused, no_more, peer_eof;
    bool close_when_idle, reset_when_idle, shutting, draining;
    int err_status;
    /* the request being parsed */
    size_t head_bytes;
    char hf[16];
    size_t hf_len, hv_len;
    char hv[64];
    bool hf_expect, hf_ae, expect_continue, ae_gzip;
    char ae[64]; /* Accept-Encoding, made JSON-safe, for /_stats */
};

static uv_loop_t *g_loop;
static uv_tcp_t g_server;
static uv_check_t g_check;     /* flushes what poll-phase callbacks produced */
static uv_prepare_t g_prepare; /* ... and what timers and deferred write callbacks did */
static uv_idle_t g_idle;       /* active while connections wait for the next flush */
static uv_signal_t g_sigterm, g_sigint;
static llhttp_settings_t g_settings;
static conn_t *g_conns;
static conn_t *g_dirty;
static char g_readbuf[READ_BUF_SIZE];
static char g_piece[STREAM_PIECE];
static buf_t g_scratch;
static size_t g_max_body = 1024 * 1024;
/* The last plain /query answer, keyed by the exact request body: answers are
 * a pure function of the body, and benchmarks repeat one query. */
#define CACHE_MAX_ANSWER (4 * 1024 * 1024)
static bool g_cache_on = true;
static buf_t g_cache_key, g_cache_val;
static bool g_stopping;
static tls_ctx *g_tls; /* TLS mode (tlsfront.c): --tls-cert and --tls-key */
static struct {
    uint64_t requests, open, total, closed_early;
    uint64_t accept_gzip; /* requests whose Accept-Encoding names gzip */
} g_stats;
static char g_last_ae[64]; /* Accept-Encoding of the last request but /_stats */
static buf_t g_zout;       /* compressed pieces of a streamed body */

static void flush(conn_t *c);
static void pump(conn_t *c);
static void conn_close(conn_t *c, bool reset);

/* ---- small writers ------------------------------------------------------- */

/* Copies a string literal to p and advances p past it. */
#define PUT(p, s) (memcpy((p), (s), sizeof(s) - 1), (p) += sizeof(s) - 1)

static char *put_u64(char *p, uint64_t v) {
    char t[20];
    int n = 0;
    do {
        t[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n) *p++ = t[--n];
    return p;
}

static const char *reason(int status) {
    switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 413: return "Content Too Large";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Status";
    }
}

static void put_head(buf_t *o, int status, bool chunked, uint64_t clen, enum connhdr ch, const char *extra) {
    const char *rs = reason(status);
    size_t rl = strlen(rs), el = extra ? strlen(extra) : 0;
    if (!buf_reserve(o, 200 + rl + el)) return;
    char *p = o->data + o->len;
    PUT(p, "HTTP/1.1 ");
    p[0] = (char)('0' + status / 100 % 10);
    p[1] = (char)('0' + status / 10 % 10);
    p[2] = (char)('0' + status % 10);
    p[3] = ' ';
    p += 4;
    memcpy(p, rs, rl);
    p += rl;
    PUT(p, "\r\nServer: refbackend\r\nContent-Type: application/json\r\n");
    if (chunked) {
        PUT(p, "Transfer-Encoding: chunked\r\n");
    } else if (clen == UINT64_MAX) {
        /* the body ends when the connection does (HTTP/1.0, length unknown) */
    } else {
        PUT(p, "Content-Length: ");
        p = put_u64(p, clen);
        PUT(p, "\r\n");
    }
    if (ch == CH_CLOSE) PUT(p, "Connection: close\r\n");
    else if (ch == CH_KEEPALIVE) PUT(p, "Connection: keep-alive\r\n");
    if (el) {
        memcpy(p, extra, el);
        p += el;
    }
    *p++ = '\r';
    *p++ = '\n';
    o->len = (size_t)(p - o->data);
    o->data[o->len] = 0;
}

static void put_chunk(buf_t *o, const char *data, size_t n) {
    if (n == 0) return;
    buf_printf(o, "%zx\r\n", n);
    buf_append(o, data, n);
    buf_append(o, "\r\n", 2);
}

static void lit(buf_t *o, const char *s) { buf_append(o, s, strlen(s)); }

/* ---- the flush list -------------------------------------------------------- */

static void on_idle(uv_idle_t *h) { (void)h; }

static void mark_dirty(conn_t *c) {
    if (c->dirty || c->closing) return;
    c->dirty = true;
    c->dirty_next = g_dirty;
    g_dirty = c;
}

/* Something to write, or an ending to carry out once the output is out. */
static void want_flush(conn_t *c) {
    if (c->out.len || (!c->q_head && (c->close_when_idle || c->reset_when_idle))) mark_dirty(c);
}

/* Flushes the connections marked so far, each once; those marked meanwhile
 * (a write that completed at once and let a stream produce more) wait for
 * the next flush point, and the idle handle keeps poll from blocking. */
static void flush_dirty(void) {
    conn_t *list = g_dirty;
    g_dirty = NULL;
    while (list) {
        conn_t *c = list;
        list = c->dirty_next;
        c->dirty_next = NULL;
        c->dirty = false;
        flush(c);
    }
    if (g_dirty) uv_idle_start(&g_idle, on_idle);
    else uv_idle_stop(&g_idle);
}

static void on_check(uv_check_t *h) {
    (void)h;
    flush_dirty();
}

static void on_prepare(uv_prepare_t *h) {
    (void)h;
    flush_dirty();
}

/* ---- responses ------------------------------------------------------------- */

static void on_resp_closed(uv_handle_t *h) {
    resp_t *r = h->data;
    buf_free(&r->body);
    free(r);
}

static void resp_free(resp_t *r) {
    if (r->zs) {
        rb_zstream_end(r->zs);
        free(r->zs);
        r->zs = NULL;
    }
    uv_timer_stop(&r->timer);
    uv_close((uv_handle_t *)&r->timer, on_resp_closed);
}

static void on_resp_timer(uv_timer_t *t) {
    resp_t *r = t->data;
    r->waiting = false;
    if (r->c && !r->c->closing) pump(r->c);
}

static resp_t *resp_new(conn_t *c) {
    resp_t *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    uv_timer_init(g_loop, &r->timer);
    r->timer.data = r;
    r->c = c;
    return r;
}

static void enqueue(conn_t *c, resp_t *r) {
    if (c->q_tail) c->q_tail->next = r;
    else c->q_head = r;
    c->q_tail = r;
    c->qlen++;
}

static void pop(conn_t *c) {
    resp_t *r = c->q_head;
    c->q_head = r->next;
    if (!c->q_head) c->q_tail = NULL;
    c->qlen--;
    if (r->close_after) {
        c->close_when_idle = true;
        c->no_more = true;
    }
    r->c = NULL;
    resp_free(r);
}

static void drop_queue(conn_t *c) {
    while (c->q_head) {
        resp_t *r = c->q_head;
        r->close_after = false;
        pop(c);
    }
}

static bool over_high(const conn_t *c) {
    return c->out.len + c->wbuf.len > PIPE_HIGH || c->qlen > QUEUE_HIGH;
}

/* Writes a ready response, now if nothing is pending before it. */
static void send_simple(conn_t *c, int status, const char *body, size_t len, enum connhdr ch,
                        const char *extra) {
    if (!c->q_head) {
        put_head(&c->out, status, false, len, ch, extra);
        buf_append(&c->out, body, len);
        if (ch == CH_CLOSE) {
            c->close_when_idle = true;
            c->no_more = true;
        }
        mark_dirty(c);
        return;
    }
    resp_t *r = resp_new(c);
    if (!r) {
        conn_close(c, false);
        return;
    }
    r->status = status;
    r->connhdr = ch;
    r->close_after = ch == CH_CLOSE;
    buf_append(&r->body, body, len);
    enqueue(c, r);
}

/* The body of a normal-delivery response; false while it waits for room. */
static bool stream_body(conn_t *c, resp_t *r) {
    if (!r->huge) {
        if (!r->chunked) {
            buf_append(&c->out, r->body.data + r->off, r->body.len - r->off);
            r->off = r->body.len;
        } else {
            size_t csz = r->body.len / 4;
            if (csz < 1) csz = 1;
            if (csz > 16384) csz = 16384;
            while (r->off < r->body.len) {
                size_t n = r->body.len - r->off < csz ? r->body.len - r->off : csz;
                put_chunk(&c->out, r->body.data + r->off, n);
                r->off += n;
            }
            lit(&c->out, "0\r\n\r\n");
        }
        return true;
    }
    while (c->out.len < OUT_HIGH) {
        if (r->zs) {
            /* Compressed as produced; what deflate gives back goes out as
             * one chunk (or as is, when the close ends the body). */
            size_t n = rb_huge_produce(&r->h, g_piece, sizeof g_piece);
            g_zout.len = 0;
            if (!rb_zstream_write(r->zs, g_piece, n, n == 0, &g_zout)) {
                LOG_WARN("compression failed", HKV_S("cause", "out of memory or zlib error"));
                conn_close(c, false);
                return false;
            }
            if (r->chunked) put_chunk(&c->out, g_zout.data, g_zout.len);
            else buf_append(&c->out, g_zout.data, g_zout.len);
            if (n == 0) {
                if (r->chunked) lit(&c->out, "0\r\n\r\n");
                return true;
            }
        } else if (r->chunked) {
            size_t n = rb_huge_produce(&r->h, g_piece, sizeof g_piece);
            if (n == 0) {
                lit(&c->out, "0\r\n\r\n");
                return true;
            }
            put_chunk(&c->out, g_piece, n);
        } else {
            if (!buf_reserve(&c->out, STREAM_PIECE)) {
                conn_close(c, false);
                return false;
            }
            size_t n = rb_huge_produce(&r->h, c->out.data + c->out.len, STREAM_PIECE);
            if (n == 0) return true;
            c->out.len += n;
        }
    }
    return false;
}

/* Moves the head of the queue along as far as it can go now. */
static void pump(conn_t *c) {
    while (c->q_head && !c->closing) {
        resp_t *r = c->q_head;
        if (r->waiting || r->deliv == DL_HANG) break;
        if (!r->head_sent) {
            uint64_t blen = r->zs ? UINT64_MAX : r->huge ? rb_huge_length(&r->h) : r->body.len;
            put_head(&c->out, r->status, r->chunked, blen, r->connhdr, r->extra);
            r->head_sent = true;
        }
        if (r->deliv == DL_NORMAL) {
            if (!stream_body(c, r)) break;
        } else if (r->deliv == DL_TRUNCATE || r->deliv == DL_RESET) {
            /* The head promised the whole body; half of it goes out. */
            size_t half = r->body.len / 2;
            if (half == 0 && r->body.len) half = 1;
            if (r->chunked) buf_printf(&c->out, "%zx\r\n", r->body.len);
            buf_append(&c->out, r->body.data, half);
            c->no_more = true;
            if (r->deliv == DL_TRUNCATE) c->close_when_idle = true;
            else c->reset_when_idle = true;
            drop_queue(c);
            break;
        } else if (r->deliv == DL_DRIP) {
            if (r->off < r->body.len) {
                size_t n = r->body.len - r->off < r->drip_bytes ? r->body.len - r->off : r->drip_bytes;
                if (r->chunked) put_chunk(&c->out, r->body.data + r->off, n);
                else buf_append(&c->out, r->body.data + r->off, n);
                r->off += n;
                if (r->off < r->body.len) {
                    r->waiting = true;
                    uv_timer_start(&r->timer, on_resp_timer, r->drip_ms, 0);
                    break;
                }
            }
            if (r->chunked) lit(&c->out, "0\r\n\r\n");
        }
        pop(c);
    }
    want_flush(c);
}

/* ---- connection lifetime ------------------------------------------------------ */

static void on_conn_handle_closed(uv_handle_t *h) {
    conn_t *c = h->data;
    if (--c->handles_open > 0) return;
    if (c->dirty) {
        for (conn_t **pp = &g_dirty; *pp; pp = &(*pp)->dirty_next)
            if (*pp == c) {
                *pp = c->dirty_next;
                break;
            }
    }
    buf_free(&c->out);
    buf_free(&c->wbuf);
    buf_free(&c->url);
    buf_free(&c->body);
    buf_free(&c->inbuf);
    free(c);
}

static void conn_close(conn_t *c, bool reset) {
    if (c->closing) return;
    c->closing = true;
    g_stats.open--;
    if (c->prev) c->prev->next = c->next;
    else g_conns = c->next;
    if (c->next) c->next->prev = c->prev;
    c->prev = c->next = NULL;
    drop_queue(c);
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, on_conn_handle_closed);
    if (!reset || uv_tcp_close_reset(&c->tcp, on_conn_handle_closed) != 0)
        uv_close((uv_handle_t *)&c->tcp, on_conn_handle_closed);
}

/* The peer went away (EOF, reset, write failure). */
static void peer_gone(conn_t *c, ssize_t err) {
    if (c->draining) {
        conn_close(c, false);
        return;
    }
    if (err == UV_EOF && !c->q_head && (c->out.len || c->writing)) {
        /* A half-close after the last request: finish what is ready. */
        c->peer_eof = true;
        c->no_more = true;
        c->close_when_idle = true;
        c->reading = false;
        mark_dirty(c);
        return;
    }
    if (c->q_head || c->out.len || c->writing) {
        g_stats.closed_early++;
        LOG_DEBUG("client closed before its response", HKV_S("cause", uv_err_name((int)err)));
    }
    conn_close(c, false);
}

static void on_linger(uv_timer_t *t) { conn_close(t->data, false); }
static void on_reset_timer(uv_timer_t *t) { conn_close(t->data, true); }

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void on_alloc(uv_handle_t *h, size_t sz, uv_buf_t *b) {
    (void)h;
    (void)sz;
    b->base = g_readbuf;
    b->len = sizeof g_readbuf;
}

static void start_reading(conn_t *c) {
    if (c->reading || c->closing || c->peer_eof) return;
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0) c->reading = true;
}

static void stop_reading(conn_t *c) {
    if (!c->reading) return;
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->reading = false;
}

static void on_shutdown(uv_shutdown_t *req, int status) {
    conn_t *c = req->data;
    if (c->closing) return;
    if (status < 0) {
        conn_close(c, false);
        return;
    }
    /* Read (and drop) what the peer still sends so our close is not a reset. */
    c->draining = true;
    start_reading(c);
    uv_timer_start(&c->timer, on_linger, LINGER_MS, 0);
}

static void on_write(uv_write_t *req, int status);

static void after_write(conn_t *c);

static void flush(conn_t *c) {
    if (c->closing || c->writing) return;
    if (c->out.len) {
        /* Straight to the socket when it takes everything (no write request,
         * no deferred callback); what it does not take goes out with
         * uv_write from the other buffer while this one fills again. */
        size_t queued;
        int rc = sockwrite(&c->wreq, (uv_stream_t *)&c->tcp, c->out.data, c->out.len, on_write, &queued);
        if (rc < 0) {
            g_stats.closed_early++;
            LOG_DEBUG("write failed", HKV_S("cause", uv_err_name(rc)));
            conn_close(c, false);
            return;
        }
        if (queued == 0) {
            c->out.len = 0;
            if (c->out.cap > WBUF_KEEP) buf_free(&c->out);
            after_write(c);
            return;
        }
        buf_t t = c->out;
        c->out = c->wbuf;
        c->wbuf = t;
        c->writing = true;
        return;
    }
    if (c->q_head) return;
    if (c->reset_when_idle) {
        c->reset_when_idle = false;
        stop_reading(c);
        uv_timer_start(&c->timer, on_reset_timer, RESET_DELAY_MS, 0);
    } else if (c->close_when_idle && !c->shutting) {
        c->shutting = true;
        if (c->peer_eof || uv_shutdown(&c->sreq, (uv_stream_t *)&c->tcp, on_shutdown) != 0) conn_close(c, false);
    }
}

static void maybe_resume(conn_t *c);

static void on_write(uv_write_t *req, int status) {
    conn_t *c = req->data;
    c->writing = false;
    c->wbuf.len = 0;
    if (c->wbuf.cap > WBUF_KEEP) buf_free(&c->wbuf);
    if (c->closing) return;
    if (status < 0) {
        g_stats.closed_early++;
        LOG_DEBUG("write failed", HKV_S("cause", uv_err_name(status)));
        conn_close(c, false);
        return;
    }
    after_write(c);
}

/* Room again: streamed bodies continue, paused input resumes. */
static void after_write(conn_t *c) {
    pump(c);
    maybe_resume(c);
    want_flush(c);
}

/* ---- requests ---------------------------------------------------------------- */

static void reply_error(conn_t *c, int status, const char *msg, enum connhdr ch, const char *extra) {
    buf_t *o = &g_scratch;
    o->len = 0;
    rb_error_json(o, msg);
    send_simple(c, status, o->data, o->len, ch, extra);
}

static void send_behaviour(conn_t *c, const rb_behaviour *beh, const rb_range *range, const buf_t *body,
                           enum connhdr ch, bool http10) {
    resp_t *r = resp_new(c);
    if (!r) {
        conn_close(c, false);
        return;
    }
    r->status = beh->status ? beh->status : 200;
    r->connhdr = ch;
    r->close_after = ch == CH_CLOSE;
    r->chunked = beh->chunked && !http10;
    r->drip_bytes = beh->drip_bytes ? beh->drip_bytes : 16;
    r->drip_ms = beh->drip_ms ? beh->drip_ms : 100;
    switch (beh->mode) {
    case RB_MODE_TRUNCATE: r->deliv = DL_TRUNCATE; break;
    case RB_MODE_RESET: r->deliv = DL_RESET; break;
    case RB_MODE_HANG: r->deliv = DL_HANG; break;
    case RB_MODE_DRIP: r->deliv = DL_DRIP; break;
    default: r->deliv = DL_NORMAL; break;
    }
    r->extra = rb_encoding_header(beh->encoding);
    bool ok = true;
    if (beh->mode == RB_MODE_HUGE && beh->encoding != RB_ENC_BR) {
        r->huge = true;
        rb_huge_init(&r->h, beh->huge_bytes, range);
        if (beh->encoding != RB_ENC_NONE) {
            /* The compressed length is not known up front: chunked, or for
             * HTTP/1.0 a body that the close ends. */
            r->zs = malloc(sizeof *r->zs);
            ok = r->zs && rb_zstream_init(r->zs, beh->encoding, beh->corrupt);
            if (http10) {
                r->connhdr = CH_CLOSE;
                r->close_after = true;
            } else {
                r->chunked = true;
            }
        }
    } else {
        buf_append(&r->body, body->data, body->len);
        ok = buf_ok(&r->body) && rb_compress_body(beh->encoding, beh->corrupt, &r->body);
    }
    if (!ok) {
        LOG_WARN("cannot prepare the response", HKV_S("cause", "out of memory or zlib error"));
        r->c = NULL;
        resp_free(r);
        conn_close(c, false);
        return;
    }
    if (beh->latency_ms) {
        r->waiting = true;
        /* The loop's clock is cached at the top of the iteration: refresh it
         * so the answer never comes earlier than the requested latency. */
        uv_update_time(r->timer.loop);
        uv_timer_start(&r->timer, on_resp_timer, beh->latency_ms, 0);
    }
    LOG_DEBUG("behaviour", HKV_I("latency_ms", beh->latency_ms), HKV_I("status", r->status),
              HKV_I("mode", beh->mode), HKV_I("chunked", r->chunked), HKV_I("encoding", beh->encoding),
              HKV_I("corrupt", beh->corrupt));
    enqueue(c, r);
    pump(c);
}

typedef int (*endpoint_fn)(const char *, size_t, buf_t *);
static const struct {
    const char *path;
    endpoint_fn fn;
} g_posts[] = {
    {"/metrics", rb_metrics},         {"/metric-payload-options", rb_metric_payload_options},
    {"/variable", rb_variable},       {"/tag-keys", rb_tag_keys},
    {"/tag-values", rb_tag_values},   {"/search", rb_search},
};

static bool path_is(const char *p, size_t n, const char *want) { return strlen(want) == n && memcmp(p, want, n) == 0; }

static void handle_request(conn_t *c, bool keep) {
    g_stats.requests++;
    int method = llhttp_get_method(&c->parser);
    bool http10 = c->parser.http_major == 1 && c->parser.http_minor == 0;
    enum connhdr ch = !keep ? CH_CLOSE : http10 ? CH_KEEPALIVE : CH_NONE;
    const char *url = c->url.data ? c->url.data : "";
    size_t ul = c->url.len;
    const char *qm = memchr(url, '?', ul);
    size_t pl = qm ? (size_t)(qm - url) : ul;
    const char *body = c->body.data ? c->body.data : "";
    size_t blen = c->body.len;
    buf_t *o = &g_scratch;
    o->len = 0;
    if (!path_is(url, pl, "/_stats")) { /* so that reading them changes nothing */
        if (c->ae_gzip) g_stats.accept_gzip++;
        memcpy(g_last_ae, c->ae, sizeof g_last_ae);
    }
    if (hclog_enabled(HCLOG_DEBUG)) {
        char path[128];
        snprintf(path, sizeof path, "%.*s", (int)(pl > 120 ? 120 : pl), url);
        LOG_DEBUG("request", HKV_S("method", llhttp_method_name((llhttp_method_t)method)), HKV_S("path", path),
                  HKV_I("body_bytes", blen));
    }

    if (path_is(url, pl, "/query")) {
        if (method != HTTP_POST) {
            reply_error(c, 405, "use POST /query", ch, "Allow: POST\r\n");
            return;
        }
        if (g_cache_val.len && blen == g_cache_key.len && memcmp(body, g_cache_key.data, blen) == 0) {
            send_simple(c, 200, g_cache_val.data, g_cache_val.len, ch, NULL);
            return;
        }
        rb_behaviour beh;
        rb_range range;
        int st = rb_query(body, blen, o, &beh, &range);
        if (st != 200 || !beh.present) send_simple(c, st, o->data, o->len, ch, NULL);
        else send_behaviour(c, &beh, &range, o, ch, http10);
        if (g_cache_on && st == 200 && !beh.present && o->len <= CACHE_MAX_ANSWER) {
            g_cache_key.len = g_cache_val.len = 0;
            buf_append(&g_cache_key, body, blen);
            buf_append(&g_cache_val, o->data, o->len);
            if (!buf_ok(&g_cache_key) || !buf_ok(&g_cache_val)) {
                buf_free(&g_cache_key);
                buf_free(&g_cache_val);
            }
        }
        return;
    }
    if (path_is(url, pl, "/")) {
        if (method != HTTP_GET && method != HTTP_HEAD) {
            reply_error(c, 405, "use GET /", ch, "Allow: GET\r\n");
            return;
        }
        static const char ok[] = "{\"status\":\"ok\"}";
        if (method == HTTP_HEAD) {
            if (!c->q_head) { /* a HEAD answer carries no body */
                put_head(&c->out, 200, false, sizeof ok - 1, ch, NULL);
                if (ch == CH_CLOSE) c->close_when_idle = c->no_more = true;
                mark_dirty(c);
            } else {
                send_simple(c, 200, "", 0, ch, NULL);
            }
            return;
        }
        send_simple(c, 200, ok, sizeof ok - 1, ch, NULL);
        return;
    }
    if (path_is(url, pl, "/_stats")) {
        if (method != HTTP_GET) {
            reply_error(c, 405, "use GET /_stats", ch, "Allow: GET\r\n");
            return;
        }
        buf_printf(o,
                   "{\"requests\":%llu,\"open_connections\":%llu,\"connections_total\":%llu,"
                   "\"closed_by_client_before_response\":%llu,\"accept_encoding_gzip\":%llu,"
                   "\"last_accept_encoding\":\"%s\"}",
                   (unsigned long long)g_stats.requests, (unsigned long long)g_stats.open,
                   (unsigned long long)g_stats.total, (unsigned long long)g_stats.closed_early,
                   (unsigned long long)g_stats.accept_gzip, g_last_ae);
        send_simple(c, 200, o->data, o->len, ch, NULL);
        return;
    }
    for (size_t i = 0; i < sizeof g_posts / sizeof g_posts[0]; i++) {
        if (!path_is(url, pl, g_posts[i].path)) continue;
        if (method != HTTP_POST) {
            char msg[96];
            snprintf(msg, sizeof msg, "use POST %s", g_posts[i].path);
            reply_error(c, 405, msg, ch, "Allow: POST\r\n");
            return;
        }
        int st = g_posts[i].fn(body, blen, o);
        send_simple(c, st, o->data, o->len, ch, NULL);
        return;
    }
    char msg[200];
    snprintf(msg, sizeof msg, "not found: %.*s", (int)(pl > 120 ? 120 : pl), url);
    reply_error(c, 404, msg, ch, NULL);
}

/* llhttp callbacks: one request at a time per connection. */

static int on_message_begin(llhttp_t *p) {
    conn_t *c = p->data;
    c->url.len = 0;
    c->body.len = 0;
    c->head_bytes = 0;
    c->hf_len = c->hv_len = 0;
    c->hf_expect = c->hf_ae = c->expect_continue = c->ae_gzip = false;
    c->ae[0] = 0;
    c->err_status = 0;
    return 0;
}

static int head_bytes(conn_t *c, size_t n) {
    c->head_bytes += n;
    if (c->head_bytes > MAX_HEAD) {
        c->err_status = 431;
        return -1;
    }
    return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t n) {
    conn_t *c = p->data;
    if (head_bytes(c, n)) return -1;
    buf_append(&c->url, at, n);
    return 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t n) {
    conn_t *c = p->data;
    if (head_bytes(c, n)) return -1;
    if (c->hf_len + n <= sizeof c->hf) memcpy(c->hf + c->hf_len, at, n);
    c->hf_len += n;
    return 0;
}

static int on_header_field_complete(llhttp_t *p) {
    conn_t *c = p->data;
    c->hf_expect = c->hf_len == 6 && strncasecmp(c->hf, "expect", 6) == 0;
    c->hf_ae = c->hf_len == 15 && strncasecmp(c->hf, "accept-encoding", 15) == 0;
    return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t n) {
    conn_t *c = p->data;
    if (head_bytes(c, n)) return -1;
    if ((c->hf_expect || c->hf_ae) && c->hv_len < sizeof c->hv) {
        size_t k = n < sizeof c->hv - c->hv_len ? n : sizeof c->hv - c->hv_len;
        memcpy(c->hv + c->hv_len, at, k);
    }
    c->hv_len += n;
    return 0;
}

static int on_header_value_complete(llhttp_t *p) {
    conn_t *c = p->data;
    if (c->hf_expect && c->hv_len == 12 && strncasecmp(c->hv, "100-continue", 12) == 0) c->expect_continue = true;
    if (c->hf_ae) {
        /* Noted for /_stats only: answers are compressed when encoding= asks. */
        size_t k = c->hv_len < sizeof c->hv ? c->hv_len : sizeof c->hv, o = 0;
        for (size_t i = 0; i < k && o + 1 < sizeof c->ae; i++) {
            char ch = c->hv[i];
            c->ae[o++] = ch >= 0x20 && ch < 0x7f && ch != '"' && ch != '\\' ? ch : '?';
        }
        c->ae[o] = 0;
        for (size_t i = 0; i + 4 <= k; i++)
            if (strncasecmp(c->hv + i, "gzip", 4) == 0) c->ae_gzip = true;
    }
    c->hf_len = c->hv_len = 0;
    c->hf_expect = c->hf_ae = false;
    return 0;
}

static int on_headers_complete(llhttp_t *p) {
    conn_t *c = p->data;
    if ((p->flags & F_CONTENT_LENGTH) && p->content_length > g_max_body) {
        c->err_status = 413;
        return -1;
    }
    if (c->expect_continue && !c->q_head) {
        lit(&c->out, "HTTP/1.1 100 Continue\r\n\r\n");
        mark_dirty(c);
    }
    return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t n) {
    conn_t *c = p->data;
    if (c->body.len + n > g_max_body) {
        c->err_status = 413;
        return -1;
    }
    buf_append(&c->body, at, n);
    return 0;
}

static int on_message_complete(llhttp_t *p) {
    conn_t *c = p->data;
    bool keep = llhttp_should_keep_alive(p);
    handle_request(c, keep);
    if (c->closing || c->no_more) return HPE_PAUSED;
    if (!keep) {
        c->no_more = true;
        return HPE_PAUSED;
    }
    if (over_high(c)) return HPE_PAUSED;
    return 0;
}

static void feed(conn_t *c, const char *data, size_t len) {
    llhttp_errno_t e = llhttp_execute(&c->parser, data, len);
    if (c->closing || e == HPE_OK) return;
    if (e == HPE_PAUSED) {
        if (c->no_more) return;
        /* Backpressure: keep the unparsed rest until the output drains. */
        const char *pos = llhttp_get_error_pos(&c->parser);
        size_t used = pos && pos >= data && pos <= data + len ? (size_t)(pos - data) : len;
        if (used < len) buf_append(&c->inbuf, data + used, len - used);
        c->paused = true;
        stop_reading(c);
        LOG_DEBUG("input paused", HKV_I("kept_bytes", len - used), HKV_I("unsent_bytes", c->out.len + c->wbuf.len),
                  HKV_I("pending_responses", c->qlen));
        return;
    }
    if (e == HPE_PAUSED_UPGRADE) {
        c->no_more = true;
        c->close_when_idle = true;
        mark_dirty(c);
        return;
    }
    int status = c->err_status ? c->err_status : 400;
    char msg[256];
    if (status == 413)
        snprintf(msg, sizeof msg, "request body larger than %zu bytes", g_max_body);
    else if (status == 431)
        snprintf(msg, sizeof msg, "request line and headers larger than %d bytes", MAX_HEAD);
    else
        snprintf(msg, sizeof msg, "bad request: %s: %s", llhttp_errno_name(e),
                 llhttp_get_error_reason(&c->parser) ? llhttp_get_error_reason(&c->parser) : "?");
    LOG_DEBUG("rejected request", HKV_I("status", status), HKV_S("error", msg));
    c->no_more = true;
    reply_error(c, status, msg, CH_CLOSE, NULL);
}

static void maybe_resume(conn_t *c) {
    if (!c->paused || c->closing || c->no_more || over_high(c)) return;
    c->paused = false;
    LOG_DEBUG("input resumed", HKV_I("kept_bytes", c->inbuf.len));
    llhttp_resume(&c->parser);
    if (c->inbuf.len) {
        buf_t in = c->inbuf;
        buf_init(&c->inbuf);
        feed(c, in.data, in.len);
        buf_free(&in);
        if (c->paused || c->closing) return;
    }
    start_reading(c);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
    conn_t *c = s->data;
    if (c->closing) return;
    if (nread < 0) {
        peer_gone(c, nread);
        return;
    }
    if (nread == 0 || c->draining || c->no_more) return;
    feed(c, buf->base, (size_t)nread);
}

static void on_connection(uv_stream_t *srv, int status) {
    if (status < 0) {
        LOG_WARN("accept failed", HKV_S("cause", uv_err_name(status)));
        return;
    }
    conn_t *c = calloc(1, sizeof *c);
    if (!c) return;
    uv_tcp_init(g_loop, &c->tcp);
    c->tcp.data = c;
    c->handles_open = 1;
    if (uv_accept(srv, (uv_stream_t *)&c->tcp) != 0) {
        c->closing = true;
        uv_close((uv_handle_t *)&c->tcp, on_conn_handle_closed);
        return;
    }
    uv_timer_init(g_loop, &c->timer);
    c->timer.data = c;
    c->handles_open = 2;
    c->wreq.data = c;
    c->sreq.data = c;
    uv_tcp_nodelay(&c->tcp, 1);
    llhttp_init(&c->parser, HTTP_REQUEST, &g_settings);
    c->parser.data = c;
    c->next = g_conns;
    if (g_conns) g_conns->prev = c;
    g_conns = c;
    g_stats.open++;
    g_stats.total++;
    start_reading(c);
}

/* ---- process ---------------------------------------------------------------- */

static void on_plain_closed(uv_handle_t *h) { (void)h; }

static void on_signal(uv_signal_t *s, int signum) {
    (void)s;
    if (g_stopping) return;
    g_stopping = true;
    LOG_INFO("shutting down", HKV_I("signal", signum), HKV_I("open_connections", g_stats.open));
    while (g_conns) conn_close(g_conns, false);
    if (g_tls) tlsfront_stop();
    uv_close((uv_handle_t *)&g_server, on_plain_closed);
    uv_close((uv_handle_t *)&g_check, on_plain_closed);
    uv_close((uv_handle_t *)&g_prepare, on_plain_closed);
    uv_close((uv_handle_t *)&g_idle, on_plain_closed);
    uv_close((uv_handle_t *)&g_sigterm, on_plain_closed);
    uv_close((uv_handle_t *)&g_sigint, on_plain_closed);
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: refbackend [--listen HOST:PORT] [--max-body BYTES] [--log-level LEVEL]\n"
            "  --listen HOST:PORT   address to listen on (default 127.0.0.1:0, a free port)\n"
            "  --max-body BYTES     largest request body accepted, else 413 (default 1048576)\n"
            "  --log-level LEVEL    trace|debug|info|warn|error|off on stderr (default info)\n"
            "  --no-cache           always generate /query answers (no reuse of the last one)\n"
            "  --tls-cert FILE      serve HTTPS with this certificate (PEM, then its chain); needs --tls-key\n"
            "  --tls-key FILE       the certificate's private key (PEM)\n"
            "  --tls-client-ca FILE require client certificates signed by this CA (PEM)\n"
            "Prints 'listening HOST:PORT' on stdout once ready; SIGTERM/SIGINT end it with status 0.\n"
            "Endpoints and the target syntax: tools/refbackend/README.md\n");
}

static int split_hostport(const char *s, char *host, size_t hcap, char *port, size_t pcap) {
    const char *colon;
    const char *h = s;
    size_t hl;
    if (s[0] == '[') {
        const char *rb = strchr(s, ']');
        if (!rb || rb[1] != ':') return -1;
        h = s + 1;
        hl = (size_t)(rb - h);
        colon = rb + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon) return -1;
        hl = (size_t)(colon - s);
    }
    if (hl == 0 || hl >= hcap || strlen(colon + 1) == 0 || strlen(colon + 1) >= pcap) return -1;
    memcpy(host, h, hl);
    host[hl] = 0;
    strcpy(port, colon + 1);
    return 0;
}

/* A whole PEM file as a string (NULL with a message on stderr). */
static char *read_pem(const char *opt, const char *path) {
    FILE *f = fopen(path, "rb");
    buf_t b;
    buf_init(&b);
    char chunk[4096];
    size_t n;
    if (!f) {
        fprintf(stderr, "refbackend: %s %s: cannot open: %s\n", opt, path, strerror(errno));
        return NULL;
    }
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) buf_append(&b, chunk, n);
    fclose(f);
    buf_append(&b, "", 0);
    if (!buf_ok(&b)) {
        buf_free(&b);
        return NULL;
    }
    return b.data;
}

/* The TLS context from the --tls-* files; NULL with a message on stderr. */
static tls_ctx *load_tls(const char *cert, const char *key, const char *client_ca) {
    char *c = read_pem("--tls-cert", cert), *k = c ? read_pem("--tls-key", key) : NULL;
    char *ca = k && client_ca ? read_pem("--tls-client-ca", client_ca) : NULL;
    tls_ctx *t = NULL;
    if (c && k && (!client_ca || ca)) {
        char err[256];
        t = tls_ctx_server(c, k, ca, err, sizeof err);
        if (!t) fprintf(stderr, "refbackend: TLS files unusable: %s\n", err);
    }
    if (k) memset(k, 0, strlen(k));
    free(c);
    free(k);
    free(ca);
    return t;
}

int main(int argc, char **argv) {
    const char *listen_at = "127.0.0.1:0";
    const char *tls_cert = NULL, *tls_key = NULL, *tls_client_ca = NULL;
    int level = HCLOG_INFO;
    static const struct option opts[] = {
        {"listen", required_argument, NULL, 'l'},
        {"max-body", required_argument, NULL, 'b'},
        {"log-level", required_argument, NULL, 'v'},
        {"no-cache", no_argument, NULL, 'n'},
        {"tls-cert", required_argument, NULL, 'C'},
        {"tls-key", required_argument, NULL, 'K'},
        {"tls-client-ca", required_argument, NULL, 'A'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int ch;
    while ((ch = getopt_long(argc, argv, "l:b:v:nh", opts, NULL)) != -1) {
        switch (ch) {
        case 'l': listen_at = optarg; break;
        case 'b': {
            char *end;
            errno = 0;
            unsigned long long v = strtoull(optarg, &end, 10);
            if (errno || *end || v == 0) {
                fprintf(stderr, "refbackend: --max-body wants a positive number of bytes\n");
                return 2;
            }
            g_max_body = (size_t)v;
            break;
        }
        case 'v':
            level = hclog_level_parse(optarg);
            if (level < 0) {
                fprintf(stderr, "refbackend: unknown log level '%s'\n", optarg);
                return 2;
            }
            break;
        case 'n': g_cache_on = false; break;
        case 'C': tls_cert = optarg; break;
        case 'K': tls_key = optarg; break;
        case 'A': tls_client_ca = optarg; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return 2;
    }
    if (!tls_cert != !tls_key || (tls_client_ca && !tls_cert)) {
        fprintf(stderr, "refbackend: TLS needs both --tls-cert and --tls-key\n");
        return 2;
    }
    hclog_init("refbackend", (hclog_level)level);
    signal(SIGPIPE, SIG_IGN);

    char host[256], port[16];
    if (split_hostport(listen_at, host, sizeof host, port, sizeof port) != 0) {
        fprintf(stderr, "refbackend: --listen wants HOST:PORT (or [IPv6]:PORT), got '%s'\n", listen_at);
        return 2;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    struct addrinfo *ai = NULL;
    int gai = getaddrinfo(host, port, &hints, &ai);
    if (gai != 0 || !ai) {
        fprintf(stderr, "refbackend: cannot resolve %s: %s\n", listen_at, gai_strerror(gai));
        return 2;
    }

    g_loop = uv_default_loop();
    llhttp_settings_init(&g_settings);
    g_settings.on_message_begin = on_message_begin;
    g_settings.on_url = on_url;
    g_settings.on_header_field = on_header_field;
    g_settings.on_header_field_complete = on_header_field_complete;
    g_settings.on_header_value = on_header_value;
    g_settings.on_header_value_complete = on_header_value_complete;
    g_settings.on_headers_complete = on_headers_complete;
    g_settings.on_body = on_body;
    g_settings.on_message_complete = on_message_complete;

    if (tls_cert && !(g_tls = load_tls(tls_cert, tls_key, tls_client_ca))) {
        freeaddrinfo(ai);
        return 2;
    }
    uv_tcp_init(g_loop, &g_server);
    /* TLS mode: the HTTP listener moves to a loopback port of its own and
     * the TLS front takes the address asked for. */
    struct sockaddr_in loopback;
    uv_ip4_addr("127.0.0.1", 0, &loopback);
    int rc = uv_tcp_bind(&g_server, g_tls ? (const struct sockaddr *)&loopback : ai->ai_addr, 0);
    if (rc == 0) rc = uv_listen((uv_stream_t *)&g_server, 1024, on_connection);
    struct sockaddr_storage ss;
    int sl = sizeof ss;
    if (rc == 0 && g_tls) {
        uv_tcp_getsockname(&g_server, (struct sockaddr *)&ss, &sl);
        rc = tlsfront_start(g_loop, ai->ai_addr, (const struct sockaddr *)&ss, g_tls);
        sl = sizeof ss;
    }
    freeaddrinfo(ai);
    if (rc != 0) {
        fprintf(stderr, "refbackend: cannot listen on %s: %s\n", listen_at, uv_strerror(rc));
        return 1;
    }
    char addr[INET6_ADDRSTRLEN] = "?";
    int bound_port = 0;
    uv_tcp_getsockname(g_tls ? tlsfront_listener() : &g_server, (struct sockaddr *)&ss, &sl);
    if (ss.ss_family == AF_INET6) {
        uv_ip6_name((struct sockaddr_in6 *)&ss, addr, sizeof addr);
        bound_port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    } else {
        uv_ip4_name((struct sockaddr_in *)&ss, addr, sizeof addr);
        bound_port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    }

    uv_check_init(g_loop, &g_check);
    uv_check_start(&g_check, on_check);
    uv_prepare_init(g_loop, &g_prepare);
    uv_prepare_start(&g_prepare, on_prepare);
    uv_idle_init(g_loop, &g_idle);
    uv_signal_init(g_loop, &g_sigterm);
    uv_signal_start(&g_sigterm, on_signal, SIGTERM);
    uv_signal_init(g_loop, &g_sigint);
    uv_signal_start(&g_sigint, on_signal, SIGINT);

    char where[300];
    if (ss.ss_family == AF_INET6) snprintf(where, sizeof where, "[%s]:%d", addr, bound_port);
    else snprintf(where, sizeof where, "%s:%d", addr, bound_port);
    printf("listening %s\n", where);
    fflush(stdout);
    LOG_INFO("listening", HKV_S("addr", where), HKV_I("max_body", g_max_body), HKV_S("tls", g_tls ? "on" : "off"));

    uv_run(g_loop, UV_RUN_DEFAULT);
    uv_loop_close(g_loop);
    tls_ctx_free(g_tls);
    buf_free(&g_scratch);
    buf_free(&g_cache_key);
    buf_free(&g_cache_val);
    buf_free(&g_zout);
    rb_zbody_cleanup();
    rb_gen_cleanup();
    LOG_INFO("stopped", HKV_I("requests", g_stats.requests));
    return 0;
}
