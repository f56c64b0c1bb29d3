/*
 * Connection I/O. Two byte buffers take turns: the protocol appends to `out`
 * while `wbuf` is being written; when the write completes they swap. One
 * write in flight at a time keeps ordering trivial.
 */
#include "conn.h"

#include <stdlib.h>
#include <string.h>

#include "../log/hclog.h"
#include "server.h"
#include "sockwrite.h"

static void on_write_done(uv_write_t *req, int status);
static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

size_t conn_pending_bytes(const conn_t *c) { return c->out_len + (c->writing ? c->wbuf_len : 0); }

void conn_trim_buffers(conn_t *c) {
    if (!c->writing && c->wbuf_cap > CONN_BUF_KEEP) {
        free(c->wbuf);
        c->wbuf = NULL;
        c->wbuf_cap = 0;
    }
    if (c->out_len == 0 && c->out_cap > CONN_BUF_KEEP) {
        free(c->out);
        c->out = NULL;
        c->out_cap = 0;
    }
}

int conn_reserve(conn_t *c, size_t len, uint8_t **where) {
    if (c->closing) return -1;
    /* Always take at least one frame so a slow peer still makes progress. */
    if (c->out_len > 0 && conn_pending_bytes(c) + len > CONN_OUT_HIGH) {
        c->held_back = true;
        return CONN_WOULDBLOCK;
    }
    if (c->out_len + len > c->out_cap) {
        size_t cap = c->out_cap ? c->out_cap : 16384;
        while (cap < c->out_len + len) cap *= 2;
        uint8_t *nb = realloc(c->out, cap);
        if (!nb) return -1;
        c->out = nb;
        c->out_cap = cap;
    }
    *where = c->out + c->out_len;
    c->out_len += len;
    return 0;
}

int conn_append(conn_t *c, const uint8_t *data, size_t len) {
    uint8_t *dst;
    int r = conn_reserve(c, len, &dst);
    if (r == 0 && len) memcpy(dst, data, len);
    return r;
}

static void update_reading(conn_t *c) {
    if (c->closing) return;
    size_t pending = conn_pending_bytes(c);
    if (c->reading && pending >= CONN_OUT_HIGH) {
        uv_read_stop(&c->h.stream);
        c->reading = false;
    } else if (!c->reading && pending <= CONN_OUT_LOW && !c->close_when_flushed) {
        if (uv_read_start(&c->h.stream, srv_alloc_read_buf, on_read) == 0) c->reading = true;
    }
}

/* Returns true when everything pending went out at once. */
static bool start_write(conn_t *c) {
    if (c->writing || c->out_len == 0 || c->closing) return c->out_len == 0;
    size_t queued;
    int r = sockwrite(&c->wreq, &c->h.stream, (const char *)c->out, c->out_len, on_write_done, &queued);
    if (r != 0) {
        LOG_DEBUG("connection write failed", HKV_I("conn", c->id), HKV_S("error", uv_strerror(r)));
        conn_close(c);
        return false;
    }
    if (queued == 0) {
        c->out_len = 0;
        return true;
    }
    /* The queued rest lives in the old out buffer, now wbuf; out refills. */
    uint8_t *tb = c->wbuf;
    size_t tcap = c->wbuf_cap;
    c->wbuf = c->out;
    c->wbuf_cap = c->out_cap;
    c->wbuf_len = queued;
    c->out = tb;
    c->out_cap = tcap;
    c->out_len = 0;
    /* Bytes left in the kernel-full socket: the stall clock starts. */
    if (c->h.stream.write_queue_size > 0 && c->stalled_since_ms == 0) c->stalled_since_ms = uv_now(c->srv->loop);
    c->writing = true;
    return false;
}

void conn_flush_now(conn_t *c) {
    c->flush_queued = false;
    if (c->closing) return;
    /* While the socket takes everything at once, let the protocol refill
     * what the high-water mark held back (bounded: the loop stays fair). */
    for (int round = 0; round < 8; round++) {
        c->held_back = false;
        if (c->proto_vt->on_flush(c->proto) != 0) c->close_when_flushed = true;
        if (!start_write(c) || !c->held_back || c->closing) break;
    }
    update_reading(c);
    if (c->closing) return;
    bool idle = !c->writing && c->out_len == 0;
    if (idle && (c->close_when_flushed || !c->proto_vt->is_alive(c->proto))) conn_close(c);
}

void conn_request_flush(conn_t *c) {
    if (c->closing || c->flush_queued) return;
    c->flush_queued = true;
    srv_queue_flush(c->srv, c);
}

void conn_close_when_flushed(conn_t *c) {
    c->close_when_flushed = true;
    conn_request_flush(c);
}

void conn_mark_established(conn_t *c) { c->established = true; }

static void on_write_done(uv_write_t *req, int status) {
    conn_t *c = req->data;
    c->writing = false;
    c->wbuf_len = 0;
    c->stalled_since_ms = 0;
    if (c->closing) return;
    if (status != 0) {
        LOG_DEBUG("connection write failed", HKV_I("conn", c->id), HKV_S("error", uv_strerror(status)));
        conn_close(c);
        return;
    }
    conn_flush_now(c); /* the protocol may have been held back by the high-water mark */
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
    conn_t *c = s->data;
    (void)buf;
    if (nread == 0 || c->closing) return;
    if (nread < 0) {
        if (nread != UV_EOF)
            LOG_DEBUG("connection read failed", HKV_I("conn", c->id), HKV_S("error", uv_strerror((int)nread)));
        conn_close(c);
        return;
    }
    if (c->proto_vt->on_recv(c->proto, (const uint8_t *)buf->base, (size_t)nread) != 0) {
        c->close_when_flushed = true;
        uv_read_stop(&c->h.stream);
        c->reading = false;
    }
    conn_request_flush(c);
}

int conn_start(conn_t *c) {
    c->h.handle.data = c;
    c->accepted_ms = uv_now(c->srv->loop);
    c->wreq.data = c;
    int r = uv_read_start(&c->h.stream, srv_alloc_read_buf, on_read);
    if (r == 0) c->reading = true;
    conn_request_flush(c); /* the protocol's preface (e.g. SETTINGS) goes out at once */
    return r;
}

static void on_closed(uv_handle_t *h) {
    conn_t *c = h->data;
    srv_forget_conn(c->srv, c);
    free(c->out);
    free(c->wbuf);
    free(c);
}

void conn_close(conn_t *c) {
    if (c->closing) return;
    c->closing = true;
    if (c->reading) uv_read_stop(&c->h.stream);
    c->reading = false;
    if (c->proto) c->proto_vt->on_close(c->proto);
    c->proto = NULL;
    uv_close(&c->h.handle, on_closed);
}
