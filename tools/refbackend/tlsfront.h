/*
 * tlsfront: the reference backend's TLS mode. A TLS listener on the same
 * loop terminates each connection (src/fetch/tls.c, memory BIOs) and relays
 * its plaintext to the plain HTTP listener of this same process over
 * loopback, so every behaviour (latency, truncation, resets, hangs) reaches
 * TLS clients unchanged and the HTTP code needs no TLS branch.
 */
#ifndef REFBACKEND_TLSFRONT_H
#define REFBACKEND_TLSFRONT_H

#include <uv.h>

#include "fetch/tls.h"

/* Listens on addr; connections are relayed to inner. 0 or a libuv error.
 * ctx stays the caller's and must outlive the loop. */
int tlsfront_start(uv_loop_t *loop, const struct sockaddr *addr, const struct sockaddr *inner, tls_ctx *ctx);
/* The listening socket (for its address). */
uv_tcp_t *tlsfront_listener(void);
/* Closes the listener and every relayed connection. */
void tlsfront_stop(void);

#endif
