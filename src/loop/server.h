/*
 * srv: the listening socket and the set of live connections.
 *
 * Owns: the listener handle, every conn_t, one shared read buffer (reads
 * are consumed synchronously in the read callback, so one buffer serves all
 * connections), and a prepare handle that runs queued flushes right before
 * the loop blocks, so everything produced in one iteration leaves in one
 * write per connection.
 *
 * The protocol is plugged in by a factory: srv calls make_proto for each
 * accepted connection; the returned object receives the conn_proto calls.
 */
#ifndef SRV_H
#define SRV_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "conn.h"

#define SRV_HANDSHAKE_TIMEOUT_MS 10000
#define SRV_WRITE_STALL_TIMEOUT_MS 60000
#define SRV_SWEEP_INTERVAL_MS 1000

typedef void *(*srv_proto_factory)(void *arg, conn_t *c, const conn_proto **vt);

typedef struct srv {
    uv_loop_t *loop;
    union {
        uv_handle_t handle;
        uv_stream_t stream;
        uv_tcp_t tcp;
        uv_pipe_t pipe;
    } listener;
    bool listening;
    bool is_unix;
    char unix_path[108];
    char address[128];       /* what the handshake announces */
    uv_prepare_t flusher;
    uv_timer_t sweeper;       /* enforces the per-connection timeouts */
    uint64_t timeouts_total;
    conn_t *flush_head;
    conn_t *conns;
    size_t nconns;
    uint64_t next_conn_id;
    uint64_t accepted_total;
    srv_proto_factory factory;
    void *factory_arg;
    char *read_buf;
    void (*on_all_closed)(struct srv *s); /* optional: after srv_close_all */
} srv_t;

int srv_init(srv_t *s, uv_loop_t *loop, srv_proto_factory factory, void *arg);

/* Listen on a fresh unix socket "plugin<digits>" in dir (0600, or 0660 and
 * chgrp when group is non-NULL). On failure writes a reason into err. */
int srv_listen_unix(srv_t *s, const char *dir, const char *group, char *err, size_t errlen);
/* Listen on TCP "host:port" (port 0 = any free one). */
int srv_listen_tcp(srv_t *s, const char *hostport, char *err, size_t errlen);

/* Stop accepting; closes the listener and unlinks the unix path. */
void srv_stop_listening(srv_t *s);
/* Closes every connection after flushing what is pending. */
void srv_close_all(srv_t *s, bool flush_first);
/* Closes the flusher handle (call last, before the final uv_run). */
void srv_dispose(srv_t *s);

/* For conn.c */
void srv_queue_flush(srv_t *s, conn_t *c);
void srv_forget_conn(srv_t *s, conn_t *c);
void srv_alloc_read_buf(uv_handle_t *h, size_t suggested, uv_buf_t *buf);

/* Splits "host:port"; returns -1 when malformed. Exposed for tests. */
int srv_split_hostport(const char *hostport, char *host, size_t hostlen, int *port);
/* A random "plugin<digits>" path inside dir; -1 when it cannot fit sun_path. */
int srv_unix_socket_path(char *out, size_t outlen, const char *dir, unsigned long long nonce);

#endif
