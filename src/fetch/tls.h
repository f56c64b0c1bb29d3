/*
 * tls: OpenSSL sessions driven through memory BIOs. The owner moves bytes:
 * ciphertext read from its libuv socket goes in with tls_feed, plaintext
 * comes out of tls_read; plaintext to send goes in with tls_write and the
 * ciphertext to put on the socket comes out of tls_out_take. OpenSSL never
 * sees a file descriptor, so a handshake never blocks the loop and every
 * timeout stays the owner's (libuv timers).
 *
 * A tls_ctx is built once per data source (its SSL_CTX: trust store, client
 * certificate, verification mode) and keeps the last TLS session the server
 * gave us, so the pool's next connection resumes it (a shorter handshake).
 * The server side exists for the reference backend and the tests.
 *
 * Failures are classified (unknown CA, name mismatch, expiry, client
 * certificate) with a sentence naming the cause; no message ever contains
 * key or certificate material.
 */
#ifndef FETCH_TLS_H
#define FETCH_TLS_H

#include <stdbool.h>
#include <stddef.h>

#include "../util/buf.h"

typedef struct tls_ctx tls_ctx;
typedef struct tls_conn tls_conn;

typedef struct {
    bool skip_verify;          /* no chain, name or date check (tlsSkipVerify) */
    const char *ca_pem;        /* trusted CAs (PEM, one or more); NULL/"" = the system store */
    const char *cert_pem;      /* client certificate for mTLS, then its chain (PEM) */
    const char *key_pem;       /* its private key (PEM, unencrypted) */
    const char *server_name;   /* name checked and sent as SNI instead of the URL's host; NULL/"" = host */
} tls_client_config;

/* Which input of tls_ctx_client was unusable. */
typedef enum { TLS_IN_NONE = 0, TLS_IN_CA, TLS_IN_CERT, TLS_IN_KEY, TLS_IN_OTHER } tls_input;

typedef enum {
    TLS_E_NONE = 0,
    TLS_E_UNKNOWN_CA,   /* the server's chain does not lead to a trusted CA */
    TLS_E_NAME,         /* the certificate is not for the name we asked for */
    TLS_E_EXPIRED,      /* a certificate is expired or not yet valid */
    TLS_E_CLIENT_CERT,  /* the server wanted, or refused, our client certificate */
    TLS_E_NOT_TLS,      /* the peer does not speak TLS */
    TLS_E_OTHER,
} tls_error;

typedef enum { TLS_DONE = 0, TLS_AGAIN = 1, TLS_CLOSED = 2, TLS_FAILED = -1 } tls_status;

/* NULL on failure: *bad says which input and err why (never its content). */
tls_ctx *tls_ctx_client(const tls_client_config *cfg, tls_input *bad, char *err, size_t cap);
/* Server: certificate chain and key (PEM); client_ca_pem non-empty requires
 * client certificates signed by it. */
tls_ctx *tls_ctx_server(const char *cert_pem, const char *key_pem, const char *client_ca_pem, char *err,
                        size_t cap);
void tls_ctx_free(tls_ctx *t);
/* Handshakes that resumed a stored session / that were full, on this context. */
void tls_ctx_counts(const tls_ctx *t, unsigned long long *resumed, unsigned long long *full);

/* A session on ctx (which must outlive it). Client: host is the URL's host,
 * checked against the certificate and sent as SNI (the context's
 * server_name wins). Server: host is NULL. NULL when out of memory. */
tls_conn *tls_conn_new(tls_ctx *ctx, const char *host);
void tls_conn_free(tls_conn *c);

/* Ciphertext from the socket. 0, or -1 when out of memory. */
int tls_feed(tls_conn *c, const void *data, size_t len);
/* Advances the handshake: TLS_DONE once complete, TLS_AGAIN for more input. */
tls_status tls_handshake(tls_conn *c);
/* Plaintext: TLS_DONE with *n > 0, TLS_AGAIN (needs input), TLS_CLOSED
 * (close_notify), TLS_FAILED. Also drives an unfinished handshake. */
tls_status tls_read(tls_conn *c, void *out, size_t cap, size_t *n);
/* Encrypts all of data (after the handshake). TLS_DONE or TLS_FAILED. */
tls_status tls_write(tls_conn *c, const void *data, size_t len);
/* Queues a close_notify alert (best effort). */
void tls_close_notify(tls_conn *c);
/* Moves the ciphertext waiting to be sent into dst. -1 when out of memory. */
int tls_out_take(tls_conn *c, buf_t *dst);
size_t tls_out_pending(const tls_conn *c);

bool tls_handshake_done(const tls_conn *c);
bool tls_resumed(const tls_conn *c);
/* After TLS_FAILED: the class of failure and a sentence for the user. */
tls_error tls_failure(const tls_conn *c, char *msg, size_t cap);

#endif
