/*
 * conn: one accepted stream socket (unix or TCP) on the libuv loop.
 *
 * A connection knows nothing about HTTP/2: it feeds received bytes to a
 * protocol object through conn_proto and collects the bytes the protocol
 * appends with conn_append. Writes are batched: every conn_append between
 * two loop iterations goes out in one uv_write.
 *
 * Backpressure: conn_append refuses bytes (returns CONN_WOULDBLOCK) once the
 * unwritten output passes CONN_OUT_HIGH, and reading stops until the peer
 * has drained below CONN_OUT_LOW. A peer that never reads therefore costs a
 * bounded buffer and never stalls other connections.
 *
 * Timeouts (enforced by the server's sweep): a connection that has not sent
 * a valid preface within SRV_HANDSHAKE_TIMEOUT_MS, or whose peer has not read
 * any of our pending output for SRV_WRITE_STALL_TIMEOUT_MS, is closed. An
 * established, idle connection is kept: Grafana holds one for its lifetime.
 *
 * Lifetime: the owning server creates it on accept; conn_close() is
 * asynchronous (uv_close); the protocol's on_close runs first and exactly
 * once, after which the protocol object must not touch the conn again.
 */
#ifndef CONN_H
#define CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define CONN_OUT_HIGH (256 * 1024)
#define CONN_OUT_LOW (64 * 1024)
/* Output buffers a burst grew past this are freed once drained (sweep). */
#define CONN_BUF_KEEP (64 * 1024)
#define CONN_WOULDBLOCK (-2)

typedef struct conn conn_t;
struct srv;

typedef struct {
    /* Bytes arrived. Return 0 to go on, -1 to close (after a flush). */
    int (*on_recv)(void *proto, const uint8_t *data, size_t len);
    /* Room to write: append output with conn_append. Return -1 to close. */
    int (*on_flush)(void *proto);
    /* False once the protocol has nothing left to read or write. */
    bool (*is_alive)(void *proto);
    /* The connection is going away; release protocol state. */
    void (*on_close)(void *proto);
} conn_proto;

struct conn {
    union {
        uv_handle_t handle;
        uv_stream_t stream;
        uv_tcp_t tcp;
        uv_pipe_t pipe;
    } h;
    struct srv *srv;
    const conn_proto *proto_vt;
    void *proto;
    uint8_t *out;        /* bytes appended since the last write started */
    size_t out_len, out_cap;
    uint8_t *wbuf;       /* bytes of the write in flight */
    size_t wbuf_len, wbuf_cap;
    uv_write_t wreq;
    uint64_t id;
    uint64_t accepted_ms;     /* loop time of accept */
    uint64_t stalled_since_ms;/* loop time output stopped draining; 0 when flowing */
    bool established;         /* the protocol saw a valid preface */
    bool writing;
    bool reading;
    bool closing;
    bool flush_queued;
    bool close_when_flushed;
    bool held_back;           /* conn_reserve refused bytes since the last flush round */
    conn_t *next_flush;  /* server's flush queue */
    conn_t *prev, *next; /* server's connection list */
};

/* Appends protocol output. Returns 0, or CONN_WOULDBLOCK when over the
 * high-water mark (retry after conn_request_flush brings on_flush back),
 * or -1 when out of memory. */
int conn_append(conn_t *c, const uint8_t *data, size_t len);
/* Like conn_append, but hands out len bytes to fill in place. */
int conn_reserve(conn_t *c, size_t len, uint8_t **where);
/* Asks for on_flush before the loop next blocks. Cheap and idempotent. */
void conn_request_flush(conn_t *c);
/* Writes what is pending, then closes. */
void conn_close_when_flushed(conn_t *c);
/* Closes now; pending output is dropped. */
void conn_close(conn_t *c);
/* Unwritten bytes (queued + in flight). */
size_t conn_pending_bytes(const conn_t *c);
/* Frees output buffers a burst grew past CONN_BUF_KEEP once they are
 * empty, so one storm does not keep its high-water mark for the life of the
 * connection (called by the server's sweep). */
void conn_trim_buffers(conn_t *c);

/* The protocol has seen a valid preface: the handshake timeout no longer applies. */
void conn_mark_established(conn_t *c);

/* Used by the server: begin reading, run one flush. */
int conn_start(conn_t *c);
void conn_flush_now(conn_t *c);

#endif
