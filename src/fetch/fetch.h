/*
 * fetch: an asynchronous HTTP/1.1 client on the libuv loop, with llhttp
 * parsing the responses. One pool per data-source instance: keep-alive
 * connections to one backend, at most max_connections at once; requests
 * beyond that wait in a FIFO queue (fair: first come, first served).
 *
 * Every request ends with exactly one on_done. Body bytes are handed to
 * on_body as they arrive (the frames converter parses them in place). A
 * request can be aborted at any moment with fetch_abort: its connection is
 * closed (never reused half-read) and its pool slot goes to the next waiter.
 *
 * Timeouts: DNS + connect (connect_timeout_ms), the whole request
 * (timeout_ms, per request), idle keep-alive connections (idle_timeout_ms).
 * All callbacks run on the loop thread.
 *
 * https://: TLS through src/fetch/tls.h on the same loop (memory BIOs, no
 * blocking handshake). The handshake counts as part of connecting; the
 * pool's TLS context (verification settings, client certificate) is shared
 * by its connections, which resume the last session the server gave.
 *
 * Through a proxy (fetch_limits.proxy): connections go to the proxy's
 * host:port; http:// requests use the absolute form ("GET http://host/path"),
 * https:// connections first send CONNECT host:port and start TLS with the
 * backend once the proxy says 2xx. The connect timeout covers the CONNECT
 * exchange. Failures of the proxy itself (cannot connect, CONNECT refused, a
 * 407 to an http:// request) are FETCH_E_PROXY with a message naming it;
 * timeouts stay FETCH_E_TIMEOUT, their message naming the proxy too.
 */
#ifndef FETCH_H
#define FETCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "proxy.h"
#include "url.h"

typedef enum {
    FETCH_OK = 0,
    FETCH_E_DNS,          /* host name did not resolve */
    FETCH_E_CONNECT,      /* refused, unreachable */
    FETCH_E_TIMEOUT,      /* connect or whole-request timeout */
    FETCH_E_IO,           /* reset / closed before the response ended */
    FETCH_E_PROTOCOL,     /* not a valid HTTP/1.1 response */
    FETCH_E_TOO_LARGE,    /* body over max_response_bytes */
    FETCH_E_ABORTED,      /* fetch_abort, or the consumer refused the body */
    FETCH_E_INVALID,      /* bad request (header injection) */
    FETCH_E_TLS_UNKNOWN_CA,   /* the server's certificate chain leads to no trusted CA */
    FETCH_E_TLS_NAME,         /* the certificate is not for the host (or serverName) */
    FETCH_E_TLS_EXPIRED,      /* a certificate expired or is not valid yet */
    FETCH_E_TLS_CLIENT_CERT,  /* the server requires or rejected our client certificate */
    FETCH_E_TLS,              /* any other TLS failure (not TLS at all, no common cipher, ...) */
    FETCH_E_PROXY,            /* the proxy cannot be reached, refused CONNECT (407, 403, ...) or gave no valid answer */
    FETCH_E_NOMEM
} fetch_error;

typedef struct {
    uint64_t connect_timeout_ms;
    uint64_t idle_timeout_ms;
    size_t max_connections;
    size_t max_response_bytes;
    const char *user_agent;
    /* https only: the TLS context (tls.h). fetch_pool_new takes it over, also
     * when it fails; NULL = verify against the system store, no client cert. */
    struct tls_ctx *tls;
    /* NULL: connect to the backend. Else through this HTTP proxy (proxy.h):
     * http:// requests in absolute form, https:// in a CONNECT tunnel. The
     * pool keeps a copy (it holds the Proxy-Authorization secret, wiped when
     * the pool is freed); the caller may wipe its own at once. */
    const proxy_server *proxy;
} fetch_limits;

typedef struct {
    const char *name;
    const char *value;
} fetch_header;

typedef struct {
    const char *method;      /* "GET", "POST" */
    const char *path;        /* appended to the base path: "query", "" */
    const fetch_header *headers;
    size_t nheaders;
    const uint8_t *body;
    size_t body_len;
    uint64_t timeout_ms;     /* whole request, from fetch_start; 0 = none */
} fetch_request;

typedef struct fetch_req fetch_req;

typedef struct {
    /* Status line and headers are in; return 0 to read the body, -1 to abort. */
    int (*on_response)(void *arg, int status, const char *content_type);
    /* A piece of the body; return 0 to go on, -1 to abort. */
    int (*on_body)(void *arg, const uint8_t *data, size_t len);
    /* Exactly once. message says what happened in words for the user. */
    void (*on_done)(void *arg, fetch_error err, const char *message);
} fetch_handler;

typedef struct fetch_pool fetch_pool;

typedef struct {
    uint64_t requests;
    uint64_t errors;
    uint64_t connections_opened;
    uint64_t reused;
    size_t open;       /* connections now */
    size_t active;     /* requests using a connection now */
    size_t queued;     /* requests waiting for one */
    uint64_t tls_full;     /* TLS handshakes that were full */
    uint64_t tls_resumed;  /* ... that resumed the pool's last session */
} fetch_stats;

fetch_pool *fetch_pool_new(uv_loop_t *loop, const fetch_url *url, const fetch_limits *limits);
/* The owner lets go: idle connections close; in-flight requests finish
 * normally; the pool is freed after the last one. */
void fetch_pool_release(fetch_pool *p);
void fetch_pool_stats(const fetch_pool *p, fetch_stats *out);

/* Starts a request. Returns NULL only when out of memory (nothing called);
 * every other failure arrives through on_done, never before this returns.
 * The request's strings, header array and body are the caller's and must
 * stay valid until on_done: the bytes are serialised only when a connection
 * is ready, so a queued request costs no copy. */
fetch_req *fetch_start(fetch_pool *p, const fetch_request *rq, const fetch_handler *h, void *arg);
/* Aborts: on_done(FETCH_E_ABORTED) runs before this returns, unless the
 * request already ended. The handle is invalid afterwards. */
void fetch_abort(fetch_req *r);

/* True when a header name/value is safe to send (no CR, LF or NUL; names are tokens). */
bool fetch_header_ok(const char *name, const char *value);

const char *fetch_error_name(fetch_error e);

#endif
