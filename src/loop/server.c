/*
 * Listener and connection registry. Start-up work (bind, chmod, chgrp,
 * group lookup) happens once before the loop serves anyone, so it may use
 * plain system calls; after that everything is callback-driven.
 */
#include "server.h"

#include <errno.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../log/hclog.h"

#define SRV_READ_BUF 65536
#define SRV_BACKLOG 511

static void on_prepare(uv_prepare_t *p) {
    srv_t *s = p->data;
    /* Flushing may queue other connections (a handler finishing on one
     * connection never touches another), so just drain until empty. */
    while (s->flush_head) {
        conn_t *c = s->flush_head;
        s->flush_head = c->next_flush;
        c->next_flush = NULL;
        conn_flush_now(c);
    }
}

/* One timer for all connections: a 1 s sweep is precise enough for
 * timeouts measured in seconds, and costs nothing per connection. */
static void on_sweep(uv_timer_t *t) {
    srv_t *s = t->data;
    uint64_t now = uv_now(s->loop);
    for (conn_t *c = s->conns, *next; c; c = next) {
        next = c->next;
        if (c->closing) continue;
        const char *why = NULL;
        if (!c->established && now - c->accepted_ms >= SRV_HANDSHAKE_TIMEOUT_MS)
            why = "no valid HTTP/2 preface in time";
        else if (c->stalled_since_ms && now - c->stalled_since_ms >= SRV_WRITE_STALL_TIMEOUT_MS)
            why = "peer stopped reading";
        if (why) {
            s->timeouts_total++;
            LOG_INFO("closing connection", HKV_I("conn", c->id), HKV_S("reason", why));
            conn_close(c);
        } else {
            conn_trim_buffers(c);
        }
    }
}

int srv_init(srv_t *s, uv_loop_t *loop, srv_proto_factory factory, void *arg) {
    memset(s, 0, sizeof *s);
    s->loop = loop;
    s->factory = factory;
    s->factory_arg = arg;
    s->read_buf = malloc(SRV_READ_BUF);
    if (!s->read_buf) return UV_ENOMEM;
    uv_prepare_init(loop, &s->flusher);
    s->flusher.data = s;
    uv_prepare_start(&s->flusher, on_prepare);
    uv_unref((uv_handle_t *)&s->flusher);
    uv_timer_init(loop, &s->sweeper);
    s->sweeper.data = s;
    uv_timer_start(&s->sweeper, on_sweep, SRV_SWEEP_INTERVAL_MS, SRV_SWEEP_INTERVAL_MS);
    uv_unref((uv_handle_t *)&s->sweeper);
    return 0;
}

void srv_alloc_read_buf(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    (void)suggested;
    conn_t *c = h->data;
    buf->base = c->srv->read_buf;
    buf->len = SRV_READ_BUF;
}

void srv_queue_flush(srv_t *s, conn_t *c) {
    c->next_flush = s->flush_head;
    s->flush_head = c;
}

void srv_forget_conn(srv_t *s, conn_t *c) {
    /* A closed conn may still sit in the flush queue. */
    for (conn_t **pp = &s->flush_head; *pp; pp = &(*pp)->next_flush)
        if (*pp == c) { *pp = c->next_flush; break; }
    if (c->prev) c->prev->next = c->next;
    else s->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    s->nconns--;
    if (s->nconns == 0 && s->on_all_closed) s->on_all_closed(s);
}

static void on_connection(uv_stream_t *server, int status) {
    srv_t *s = server->data;
    if (status < 0) {
        LOG_WARN("accept failed", HKV_S("error", uv_strerror(status)));
        return;
    }
    conn_t *c = calloc(1, sizeof *c);
    if (!c) {
        LOG_ERROR("out of memory accepting a connection");
        return;
    }
    c->srv = s;
    c->id = ++s->next_conn_id;
    int r = s->is_unix ? uv_pipe_init(s->loop, &c->h.pipe, 0) : uv_tcp_init(s->loop, &c->h.tcp);
    if (r == 0) r = uv_accept(server, &c->h.stream);
    c->h.handle.data = c;
    /* Link before anything can close it: on_closed unlinks. */
    c->next = s->conns;
    if (s->conns) s->conns->prev = c;
    s->conns = c;
    s->nconns++;
    s->accepted_total++;
    if (r != 0) {
        LOG_WARN("accept failed", HKV_S("error", uv_strerror(r)));
        conn_close(c);
        return;
    }
    if (!s->is_unix) uv_tcp_nodelay(&c->h.tcp, 1);
    c->proto = s->factory(s->factory_arg, c, &c->proto_vt);
    if (!c->proto) {
        LOG_ERROR("cannot set up a session for a new connection");
        conn_close(c);
        return;
    }
    LOG_DEBUG("connection accepted", HKV_I("conn", c->id));
    if ((r = conn_start(c)) != 0) {
        LOG_WARN("cannot read from a new connection", HKV_S("error", uv_strerror(r)));
        conn_close(c);
    }
}

int srv_unix_socket_path(char *out, size_t outlen, const char *dir, unsigned long long nonce) {
    size_t dl = strlen(dir);
    while (dl > 1 && dir[dl - 1] == '/') dl--;
    int n = snprintf(out, outlen, "%.*s/plugin%llu", (int)dl, dir, nonce % 10000000000ULL);
    if (n < 0 || (size_t)n >= outlen || (size_t)n >= sizeof(((struct srv *)0)->unix_path)) return -1;
    return 0;
}

static int lookup_group(const char *group, gid_t *gid) {
    char *end;
    errno = 0;
    unsigned long v = strtoul(group, &end, 10);
    if (*group && *end == '\0' && errno == 0) {
        *gid = (gid_t)v;
        return 0;
    }
    struct group *g = getgrnam(group);
    if (!g) return -1;
    *gid = g->gr_gid;
    return 0;
}

int srv_listen_unix(srv_t *s, const char *dir, const char *group, char *err, size_t errlen) {
    gid_t gid = 0;
    if (group && lookup_group(group, &gid) != 0) {
        snprintf(err, errlen, "PLUGIN_UNIX_SOCKET_GROUP=%s: no such group", group);
        return -1;
    }
    int r = 0;
    for (int attempt = 0; attempt < 16; attempt++) {
        unsigned long long nonce;
        if (getrandom(&nonce, sizeof nonce, 0) != (ssize_t)sizeof nonce)
            nonce = (unsigned long long)getpid() * 2654435761ULL + (unsigned long long)attempt;
        if (srv_unix_socket_path(s->unix_path, sizeof s->unix_path, dir, nonce) != 0) {
            snprintf(err, errlen, "socket directory %s is too long for a unix socket path", dir);
            return -1;
        }
        uv_pipe_init(s->loop, &s->listener.pipe, 0);
        /* Owner-only from the moment the file exists. */
        mode_t old = umask(0177);
        r = uv_pipe_bind(&s->listener.pipe, s->unix_path);
        umask(old);
        if (r == 0) break;
        uv_close(&s->listener.handle, NULL);
        uv_run(s->loop, UV_RUN_NOWAIT);
        if (r != UV_EADDRINUSE) break;
    }
    if (r != 0) {
        snprintf(err, errlen, "cannot create unix socket %s: %s", s->unix_path, uv_strerror(r));
        return -1;
    }
    s->is_unix = true;
    if (group) {
        if (chown(s->unix_path, (uid_t)-1, gid) != 0 || chmod(s->unix_path, 0660) != 0) {
            snprintf(err, errlen, "cannot give socket %s to group %s: %s", s->unix_path, group, strerror(errno));
            unlink(s->unix_path);
            return -1;
        }
    }
    s->listener.handle.data = s;
    if ((r = uv_listen(&s->listener.stream, SRV_BACKLOG, on_connection)) != 0) {
        snprintf(err, errlen, "cannot listen on %s: %s", s->unix_path, uv_strerror(r));
        unlink(s->unix_path);
        return -1;
    }
    s->listening = true;
    snprintf(s->address, sizeof s->address, "%s", s->unix_path);
    return 0;
}

int srv_split_hostport(const char *hp, char *host, size_t hostlen, int *port) {
    const char *colon = strrchr(hp, ':');
    if (!colon) return -1;
    size_t hl = (size_t)(colon - hp);
    if (hl >= 2 && hp[0] == '[' && hp[hl - 1] == ']') { hp++; hl -= 2; }
    if (hl >= hostlen) return -1;
    char *end;
    errno = 0;
    long p = strtol(colon + 1, &end, 10);
    if (colon[1] == '\0' || *end != '\0' || errno || p < 0 || p > 65535) return -1;
    memcpy(host, hp, hl);
    host[hl] = '\0';
    if (hl == 0) snprintf(host, hostlen, "127.0.0.1");
    *port = (int)p;
    return 0;
}

int srv_listen_tcp(srv_t *s, const char *hostport, char *err, size_t errlen) {
    char host[64];
    int port;
    if (srv_split_hostport(hostport, host, sizeof host, &port) != 0) {
        snprintf(err, errlen, "address %s is not HOST:PORT", hostport);
        return -1;
    }
    struct sockaddr_storage ss;
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)&ss) != 0 &&
        uv_ip6_addr(host, port, (struct sockaddr_in6 *)&ss) != 0) {
        snprintf(err, errlen, "address %s: host must be a literal IP address", hostport);
        return -1;
    }
    uv_tcp_init(s->loop, &s->listener.tcp);
    s->listener.handle.data = s;
    int r = uv_tcp_bind(&s->listener.tcp, (struct sockaddr *)&ss, 0);
    if (r == 0) r = uv_listen(&s->listener.stream, SRV_BACKLOG, on_connection);
    if (r != 0) {
        snprintf(err, errlen, "cannot listen on %s: %s", hostport, uv_strerror(r));
        uv_close(&s->listener.handle, NULL);
        return -1;
    }
    struct sockaddr_storage bound;
    int blen = sizeof bound;
    uv_tcp_getsockname(&s->listener.tcp, (struct sockaddr *)&bound, &blen);
    char ip[64] = "";
    if (bound.ss_family == AF_INET6) {
        uv_ip6_name((struct sockaddr_in6 *)&bound, ip, sizeof ip);
        snprintf(s->address, sizeof s->address, "[%s]:%d", ip, ntohs(((struct sockaddr_in6 *)&bound)->sin6_port));
    } else {
        uv_ip4_name((struct sockaddr_in *)&bound, ip, sizeof ip);
        snprintf(s->address, sizeof s->address, "%s:%d", ip, ntohs(((struct sockaddr_in *)&bound)->sin_port));
    }
    s->listening = true;
    return 0;
}

void srv_stop_listening(srv_t *s) {
    if (!s->listening) return;
    s->listening = false;
    uv_close(&s->listener.handle, NULL);
    if (s->is_unix) unlink(s->unix_path);
}

void srv_close_all(srv_t *s, bool flush_first) {
    for (conn_t *c = s->conns, *next; c; c = next) {
        next = c->next;
        if (flush_first) conn_close_when_flushed(c);
        else conn_close(c);
    }
}

void srv_dispose(srv_t *s) {
    if (!uv_is_closing((uv_handle_t *)&s->flusher)) uv_close((uv_handle_t *)&s->flusher, NULL);
    if (!uv_is_closing((uv_handle_t *)&s->sweeper)) uv_close((uv_handle_t *)&s->sweeper, NULL);
    free(s->read_buf);
    s->read_buf = NULL;
}
