/*
 * OpenSSL behind memory BIOs (see tls.h). Each SSL reads from one memory BIO
 * (what tls_feed put there) and writes to another (what tls_out_take hands
 * out); an empty read BIO means "want read", never end of file, so every
 * call returns at once and the caller waits on the loop for more bytes.
 *
 * Why a failure happened is recorded while it happens: the verify callback
 * keeps the first certificate error with the names or dates that explain it,
 * the certificate callback notes that the server asked for a client
 * certificate. OpenSSL's error queue is per thread and shared by every
 * session, so it is cleared before each call and after each failure.
 */
#include "tls.h"

#include <arpa/inet.h>
#include <dlfcn.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

/* ---- OpenSSL, loaded on first use ---------------------------------------
 * libssl and libcrypto cost 1.7 MiB of resident memory just by being mapped
 * and relocated; most data sources speak plain http. So the plugin does not
 * link them: the first TLS context dlopens libssl (which brings libcrypto)
 * and resolves the functions below; every use in this file goes through
 * those pointers (the #defines), including the ones OpenSSL's own macros
 * expand to. The list is what this file calls (nm -u of its object). */
#if OPENSSL_VERSION_MAJOR != 3
#error "the OpenSSL loader names libssl.so.3: update TLS_LIBSSL for this OpenSSL"
#endif
#define TLS_LIBSSL "libssl.so.3"

#define TLS_OPENSSL_FUNCTIONS(X) \
    X(ASN1_STRING_get0_data) X(ASN1_STRING_length) X(ASN1_TIME_to_tm) X(BIO_ctrl) X(BIO_ctrl_pending) \
    X(BIO_free) X(BIO_new) X(BIO_new_mem_buf) X(BIO_read) X(BIO_s_mem) X(BIO_write) X(ERR_clear_error) \
    X(ERR_peek_error) X(ERR_peek_last_error) X(ERR_reason_error_string) X(EVP_PKEY_free) X(GENERAL_NAMES_free) \
    X(OPENSSL_sk_num) X(OPENSSL_sk_value) X(PEM_read_bio_PrivateKey) X(PEM_read_bio_X509) \
    X(SSL_CTX_check_private_key) X(SSL_CTX_ctrl) X(SSL_CTX_free) X(SSL_CTX_get_cert_store) \
    X(SSL_CTX_get_ex_data) X(SSL_CTX_new) X(SSL_CTX_sess_set_new_cb) X(SSL_CTX_set_cert_cb) \
    X(SSL_CTX_set_default_verify_paths) X(SSL_CTX_set_ex_data) X(SSL_CTX_set_options) \
    X(SSL_CTX_set_session_id_context) X(SSL_CTX_set_verify) X(SSL_CTX_use_PrivateKey) X(SSL_CTX_use_certificate) \
    X(SSL_SESSION_free) X(SSL_SESSION_is_resumable) X(SSL_ctrl) X(SSL_do_handshake) X(SSL_free) \
    X(SSL_get0_param) X(SSL_get_SSL_CTX) X(SSL_get_error) X(SSL_get_ex_data) \
    X(SSL_get_ex_data_X509_STORE_CTX_idx) X(SSL_get_verify_result) X(SSL_is_init_finished) X(SSL_new) \
    X(SSL_read) X(SSL_session_reused) X(SSL_set1_host) X(SSL_set_accept_state) X(SSL_set_bio) \
    X(SSL_set_connect_state) X(SSL_set_ex_data) X(SSL_set_hostflags) X(SSL_set_session) X(SSL_shutdown) \
    X(SSL_write) X(TLS_client_method) X(TLS_server_method) X(X509_NAME_get_text_by_NID) \
    X(X509_STORE_CTX_get_current_cert) X(X509_STORE_CTX_get_error) X(X509_STORE_CTX_get_error_depth) \
    X(X509_STORE_CTX_get_ex_data) X(X509_STORE_add_cert) X(X509_VERIFY_PARAM_set1_ip_asc) X(X509_free) \
    X(X509_get0_notAfter) X(X509_get0_notBefore) X(X509_get_ext_d2i) X(X509_get_subject_name) \
    X(X509_verify_cert_error_string)

#define X(name) static __typeof__(&name) p_##name;
TLS_OPENSSL_FUNCTIONS(X)
#undef X

/* 0 = not tried, 1 = loaded, -1 = failed (why says so; not retried). */
static int openssl_state;
static char openssl_why[300];

static bool openssl_load(char *err, size_t cap) {
    if (openssl_state == 0) {
        void *h = dlopen(TLS_LIBSSL, RTLD_NOW | RTLD_LOCAL);
        if (!h) {
            const char *e = dlerror();
            snprintf(openssl_why, sizeof openssl_why, "OpenSSL could not be loaded (%s): %s", TLS_LIBSSL,
                     e ? e : "unknown error");
            openssl_state = -1;
        } else {
            openssl_state = 1;
            /* dlsym on libssl's handle also searches libcrypto, its dependency. */
#define X(name)                                                                                              \
    if (openssl_state == 1 && !(p_##name = (__typeof__(p_##name))dlsym(h, #name))) {                        \
        snprintf(openssl_why, sizeof openssl_why, "OpenSSL (%s) lacks the function %s", TLS_LIBSSL, #name); \
        openssl_state = -1;                                                                                 \
    }
            TLS_OPENSSL_FUNCTIONS(X)
#undef X
        }
    }
    if (openssl_state < 0) snprintf(err, cap, "%s", openssl_why);
    return openssl_state > 0;
}

#define ASN1_STRING_get0_data (*p_ASN1_STRING_get0_data)
#define ASN1_STRING_length (*p_ASN1_STRING_length)
#define ASN1_TIME_to_tm (*p_ASN1_TIME_to_tm)
#define BIO_ctrl (*p_BIO_ctrl)
#define BIO_ctrl_pending (*p_BIO_ctrl_pending)
#define BIO_free (*p_BIO_free)
#define BIO_new (*p_BIO_new)
#define BIO_new_mem_buf (*p_BIO_new_mem_buf)
#define BIO_read (*p_BIO_read)
#define BIO_s_mem (*p_BIO_s_mem)
#define BIO_write (*p_BIO_write)
#define ERR_clear_error (*p_ERR_clear_error)
#define ERR_peek_error (*p_ERR_peek_error)
#define ERR_peek_last_error (*p_ERR_peek_last_error)
#define ERR_reason_error_string (*p_ERR_reason_error_string)
#define EVP_PKEY_free (*p_EVP_PKEY_free)
#define GENERAL_NAMES_free (*p_GENERAL_NAMES_free)
#define OPENSSL_sk_num (*p_OPENSSL_sk_num)
#define OPENSSL_sk_value (*p_OPENSSL_sk_value)
#define PEM_read_bio_PrivateKey (*p_PEM_read_bio_PrivateKey)
#define PEM_read_bio_X509 (*p_PEM_read_bio_X509)
#define SSL_CTX_check_private_key (*p_SSL_CTX_check_private_key)
#define SSL_CTX_ctrl (*p_SSL_CTX_ctrl)
#define SSL_CTX_free (*p_SSL_CTX_free)
#define SSL_CTX_get_cert_store (*p_SSL_CTX_get_cert_store)
#define SSL_CTX_get_ex_data (*p_SSL_CTX_get_ex_data)
#define SSL_CTX_new (*p_SSL_CTX_new)
#define SSL_CTX_sess_set_new_cb (*p_SSL_CTX_sess_set_new_cb)
#define SSL_CTX_set_cert_cb (*p_SSL_CTX_set_cert_cb)
#define SSL_CTX_set_default_verify_paths (*p_SSL_CTX_set_default_verify_paths)
#define SSL_CTX_set_ex_data (*p_SSL_CTX_set_ex_data)
#define SSL_CTX_set_options (*p_SSL_CTX_set_options)
#define SSL_CTX_set_session_id_context (*p_SSL_CTX_set_session_id_context)
#define SSL_CTX_set_verify (*p_SSL_CTX_set_verify)
#define SSL_CTX_use_PrivateKey (*p_SSL_CTX_use_PrivateKey)
#define SSL_CTX_use_certificate (*p_SSL_CTX_use_certificate)
#define SSL_SESSION_free (*p_SSL_SESSION_free)
#define SSL_SESSION_is_resumable (*p_SSL_SESSION_is_resumable)
#define SSL_ctrl (*p_SSL_ctrl)
#define SSL_do_handshake (*p_SSL_do_handshake)
#define SSL_free (*p_SSL_free)
#define SSL_get0_param (*p_SSL_get0_param)
#define SSL_get_SSL_CTX (*p_SSL_get_SSL_CTX)
#define SSL_get_error (*p_SSL_get_error)
#define SSL_get_ex_data (*p_SSL_get_ex_data)
#define SSL_get_ex_data_X509_STORE_CTX_idx (*p_SSL_get_ex_data_X509_STORE_CTX_idx)
#define SSL_get_verify_result (*p_SSL_get_verify_result)
#define SSL_is_init_finished (*p_SSL_is_init_finished)
#define SSL_new (*p_SSL_new)
#define SSL_read (*p_SSL_read)
#define SSL_session_reused (*p_SSL_session_reused)
#define SSL_set1_host (*p_SSL_set1_host)
#define SSL_set_accept_state (*p_SSL_set_accept_state)
#define SSL_set_bio (*p_SSL_set_bio)
#define SSL_set_connect_state (*p_SSL_set_connect_state)
#define SSL_set_ex_data (*p_SSL_set_ex_data)
#define SSL_set_hostflags (*p_SSL_set_hostflags)
#define SSL_set_session (*p_SSL_set_session)
#define SSL_shutdown (*p_SSL_shutdown)
#define SSL_write (*p_SSL_write)
#define TLS_client_method (*p_TLS_client_method)
#define TLS_server_method (*p_TLS_server_method)
#define X509_NAME_get_text_by_NID (*p_X509_NAME_get_text_by_NID)
#define X509_STORE_CTX_get_current_cert (*p_X509_STORE_CTX_get_current_cert)
#define X509_STORE_CTX_get_error (*p_X509_STORE_CTX_get_error)
#define X509_STORE_CTX_get_error_depth (*p_X509_STORE_CTX_get_error_depth)
#define X509_STORE_CTX_get_ex_data (*p_X509_STORE_CTX_get_ex_data)
#define X509_STORE_add_cert (*p_X509_STORE_add_cert)
#define X509_VERIFY_PARAM_set1_ip_asc (*p_X509_VERIFY_PARAM_set1_ip_asc)
#define X509_free (*p_X509_free)
#define X509_get0_notAfter (*p_X509_get0_notAfter)
#define X509_get0_notBefore (*p_X509_get0_notBefore)
#define X509_get_ext_d2i (*p_X509_get_ext_d2i)
#define X509_get_subject_name (*p_X509_get_subject_name)
#define X509_verify_cert_error_string (*p_X509_verify_cert_error_string)

struct tls_ctx {
    SSL_CTX *ssl;
    bool server;
    bool skip_verify;
    bool has_cert;               /* a client certificate is configured */
    char server_name[256];
    SSL_SESSION *session;        /* the last one the server gave us, for the next connection */
    unsigned long long resumed, full;
};

struct tls_conn {
    tls_ctx *ctx;
    SSL *ssl;
    BIO *rbio, *wbio;            /* owned by ssl */
    char name[256];              /* the name verified and sent as SNI */
    bool counted;                /* the finished handshake was counted */
    bool failed;
    bool cert_requested;         /* the server sent a CertificateRequest */
    int verify_err;              /* first X509_V_ERR_* seen, 0 = none */
    int verify_depth;
    char verify_info[256];       /* certificate names or the date that explains verify_err */
    tls_error err;
    char msg[512];
};

/* ---- helpers ------------------------------------------------------------ */

/* Encrypted keys would make OpenSSL prompt on the terminal: refuse instead. */
static int no_passphrase(char *buf, int size, int rwflag, void *u) {
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return -1;
}

static const char *openssl_reason(void) {
    unsigned long e = ERR_peek_last_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    return r ? r : "unknown reason";
}

static bool is_ip(const char *s) {
    unsigned char a[16];
    return inet_pton(AF_INET, s, a) == 1 || inet_pton(AF_INET6, s, a) == 1;
}

/* Printable ASCII of an untrusted string, appended to out (NUL-terminated). */
static void append_clean(char *out, size_t cap, const char *s, size_t n) {
    size_t o = strlen(out);
    for (size_t i = 0; i < n && o + 1 < cap; i++)
        out[o++] = (s[i] >= 0x20 && s[i] < 0x7F) ? s[i] : '?';
    out[o] = '\0';
}

/* The names a certificate is valid for: its DNS and IP subject alternative
 * names, else its common name. */
static void cert_names(X509 *x, char *out, size_t cap) {
    out[0] = '\0';
    GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    int n = gens ? sk_GENERAL_NAME_num(gens) : 0;
    for (int i = 0; i < n; i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
        char ip[INET6_ADDRSTRLEN] = "";
        const char *s = NULL;
        size_t len = 0;
        if (g->type == GEN_DNS) {
            s = (const char *)ASN1_STRING_get0_data(g->d.dNSName);
            len = (size_t)ASN1_STRING_length(g->d.dNSName);
        } else if (g->type == GEN_IPADD) {
            int l = ASN1_STRING_length(g->d.iPAddress);
            const unsigned char *d = ASN1_STRING_get0_data(g->d.iPAddress);
            if ((l == 4 && inet_ntop(AF_INET, d, ip, sizeof ip)) || (l == 16 && inet_ntop(AF_INET6, d, ip, sizeof ip))) {
                s = ip;
                len = strlen(ip);
            }
        }
        if (!s) continue;
        if (out[0]) append_clean(out, cap, ", ", 2);
        append_clean(out, cap, s, len);
    }
    GENERAL_NAMES_free(gens);
    if (!out[0]) {
        char cn[256];
        int l = X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn, sizeof cn);
        if (l > 0) append_clean(out, cap, cn, (size_t)l);
    }
    if (!out[0]) snprintf(out, cap, "no name at all");
}

static void cert_time(const ASN1_TIME *t, char *out, size_t cap) {
    struct tm tm;
    if (t && ASN1_TIME_to_tm(t, &tm) == 1 && strftime(out, cap, "%Y-%m-%d %H:%M:%S UTC", &tm) > 0) return;
    snprintf(out, cap, "an unreadable date");
}

/* ---- callbacks ------------------------------------------------------------ */

static int on_verify(int ok, X509_STORE_CTX *st) {
    SSL *ssl = X509_STORE_CTX_get_ex_data(st, SSL_get_ex_data_X509_STORE_CTX_idx());
    tls_conn *c = ssl ? SSL_get_app_data(ssl) : NULL;
    if (ok || !c || c->verify_err) return ok;
    X509 *x = X509_STORE_CTX_get_current_cert(st);
    c->verify_err = X509_STORE_CTX_get_error(st);
    c->verify_depth = X509_STORE_CTX_get_error_depth(st);
    if (!x) return ok;
    switch (c->verify_err) {
    case X509_V_ERR_HOSTNAME_MISMATCH:
    case X509_V_ERR_IP_ADDRESS_MISMATCH:
        cert_names(x, c->verify_info, sizeof c->verify_info);
        break;
    case X509_V_ERR_CERT_HAS_EXPIRED: cert_time(X509_get0_notAfter(x), c->verify_info, sizeof c->verify_info); break;
    case X509_V_ERR_CERT_NOT_YET_VALID:
        cert_time(X509_get0_notBefore(x), c->verify_info, sizeof c->verify_info);
        break;
    default: break;
    }
    return ok;
}

/* Called on a client when the server asks for a certificate. */
static int on_cert_request(SSL *ssl, void *arg) {
    (void)arg;
    tls_conn *c = SSL_get_app_data(ssl);
    if (c) c->cert_requested = true;
    return 1;
}

/* Keeps the newest session (TLS 1.3 sends tickets after the handshake). */
static int on_new_session(SSL *ssl, SSL_SESSION *sess) {
    tls_ctx *t = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
    if (!t) return 0;
    if (t->session) SSL_SESSION_free(t->session);
    t->session = sess;
    return 1; /* the reference is ours now */
}

/* ---- contexts ------------------------------------------------------------ */

/* Loads OpenSSL if needed; NULL with err set on failure. */
static tls_ctx *ctx_new(bool server, char *err, size_t cap) {
    if (!openssl_load(err, cap)) return NULL;
    ERR_clear_error();
    tls_ctx *t = calloc(1, sizeof *t);
    if (t) t->ssl = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
    if (!t || !t->ssl) {
        free(t);
        snprintf(err, cap, "out of memory creating the TLS context");
        return NULL;
    }
    t->server = server;
    SSL_CTX_set_app_data(t->ssl, t);
    SSL_CTX_set_min_proto_version(t->ssl, TLS1_2_VERSION);
    /* Idle pooled connections give their 2 x 17 KiB record buffers back. */
    SSL_CTX_set_mode(t->ssl, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_options(t->ssl, SSL_OP_NO_RENEGOTIATION);
    return t;
}

/* Adds every certificate of a PEM text to st; the count, or -1. */
static int add_pem_certs(X509_STORE *st, const char *pem, char *err, size_t cap) {
    BIO *b = BIO_new_mem_buf(pem, -1);
    if (!b) {
        snprintf(err, cap, "out of memory");
        return -1;
    }
    int n = 0;
    X509 *x;
    while ((x = PEM_read_bio_X509(b, NULL, no_passphrase, NULL)) != NULL) {
        int ok = X509_STORE_add_cert(st, x);
        X509_free(x);
        if (!ok) {
            snprintf(err, cap, "certificate %d cannot be used (%s)", n + 1, openssl_reason());
            BIO_free(b);
            return -1;
        }
        n++;
    }
    unsigned long e = ERR_peek_last_error();
    bool clean_end = ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE;
    if (n == 0) snprintf(err, cap, "no PEM certificate found (expected a block that begins with BEGIN CERTIFICATE)");
    else if (!clean_end) snprintf(err, cap, "certificate %d is not valid PEM (%s)", n + 1, openssl_reason());
    BIO_free(b);
    return n > 0 && clean_end ? n : -1;
}

/* The leaf certificate, then any chain certificates, then the key. */
static int use_cert_and_key(SSL_CTX *ctx, const char *cert_pem, const char *key_pem, tls_input *bad, char *err,
                            size_t cap) {
    BIO *b = BIO_new_mem_buf(cert_pem, -1);
    X509 *x = b ? PEM_read_bio_X509(b, NULL, no_passphrase, NULL) : NULL;
    *bad = TLS_IN_CERT;
    if (!x) {
        snprintf(err, cap, "no PEM certificate found (expected a block that begins with BEGIN CERTIFICATE)");
        BIO_free(b);
        return -1;
    }
    int ok = SSL_CTX_use_certificate(ctx, x);
    X509_free(x);
    if (!ok) {
        snprintf(err, cap, "the certificate cannot be used (%s)", openssl_reason());
        BIO_free(b);
        return -1;
    }
    while (ok && (x = PEM_read_bio_X509(b, NULL, no_passphrase, NULL)) != NULL) {
        ok = SSL_CTX_add0_chain_cert(ctx, x) == 1;
        if (!ok) X509_free(x);
    }
    BIO_free(b);
    ERR_clear_error();
    if (!ok) {
        snprintf(err, cap, "a chain certificate after the first one cannot be used");
        return -1;
    }
    *bad = TLS_IN_KEY;
    b = BIO_new_mem_buf(key_pem, -1);
    EVP_PKEY *k = b ? PEM_read_bio_PrivateKey(b, NULL, no_passphrase, NULL) : NULL;
    BIO_free(b);
    if (!k) {
        if (strstr(key_pem, "ENCRYPTED"))
            snprintf(err, cap, "the private key is protected by a passphrase; provide it unencrypted (PEM)");
        else
            snprintf(err, cap, "no PEM private key found (expected a block that begins with BEGIN PRIVATE KEY or similar)");
        return -1;
    }
    ok = SSL_CTX_use_PrivateKey(ctx, k);
    EVP_PKEY_free(k);
    if (!ok || !SSL_CTX_check_private_key(ctx)) {
        snprintf(err, cap, "the private key does not belong to the certificate");
        return -1;
    }
    *bad = TLS_IN_NONE;
    return 0;
}

tls_ctx *tls_ctx_client(const tls_client_config *cfg, tls_input *bad, char *err, size_t cap) {
    *bad = TLS_IN_OTHER;
    tls_ctx *t = ctx_new(false, err, cap);
    if (!t) return NULL;
    t->skip_verify = cfg->skip_verify;
    if (cfg->server_name) snprintf(t->server_name, sizeof t->server_name, "%s", cfg->server_name);
    if (!cfg->skip_verify) {
        SSL_CTX_set_verify(t->ssl, SSL_VERIFY_PEER, on_verify);
        if (cfg->ca_pem && *cfg->ca_pem) {
            /* Like Grafana: a configured CA replaces the system store. */
            *bad = TLS_IN_CA;
            if (add_pem_certs(SSL_CTX_get_cert_store(t->ssl), cfg->ca_pem, err, cap) < 0) goto fail;
        } else if (SSL_CTX_set_default_verify_paths(t->ssl) != 1) {
            snprintf(err, cap, "the system certificate store cannot be loaded (%s)", openssl_reason());
            goto fail;
        }
    }
    if (cfg->cert_pem && *cfg->cert_pem) {
        if (use_cert_and_key(t->ssl, cfg->cert_pem, cfg->key_pem ? cfg->key_pem : "", bad, err, cap) != 0) goto fail;
        t->has_cert = true;
    }
    SSL_CTX_set_cert_cb(t->ssl, on_cert_request, NULL);
    /* Sessions are kept by us (one per context), not in OpenSSL's cache. */
    SSL_CTX_set_session_cache_mode(t->ssl, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(t->ssl, on_new_session);
    *bad = TLS_IN_NONE;
    ERR_clear_error();
    return t;
fail:
    ERR_clear_error();
    tls_ctx_free(t);
    return NULL;
}

tls_ctx *tls_ctx_server(const char *cert_pem, const char *key_pem, const char *client_ca_pem, char *err,
                        size_t cap) {
    tls_ctx *t = ctx_new(true, err, cap);
    if (!t) return NULL;
    tls_input bad;
    if (use_cert_and_key(t->ssl, cert_pem, key_pem, &bad, err, cap) != 0) goto fail;
    static const unsigned char sid_ctx[] = "gpx";
    SSL_CTX_set_session_id_context(t->ssl, sid_ctx, sizeof sid_ctx - 1);
    if (client_ca_pem && *client_ca_pem) {
        if (add_pem_certs(SSL_CTX_get_cert_store(t->ssl), client_ca_pem, err, cap) < 0) goto fail;
        SSL_CTX_set_verify(t->ssl, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, on_verify);
    }
    ERR_clear_error();
    return t;
fail:
    ERR_clear_error();
    tls_ctx_free(t);
    return NULL;
}

void tls_ctx_free(tls_ctx *t) {
    if (!t) return;
    if (t->session) SSL_SESSION_free(t->session);
    SSL_CTX_free(t->ssl);
    free(t);
}

void tls_ctx_counts(const tls_ctx *t, unsigned long long *resumed, unsigned long long *full) {
    *resumed = t ? t->resumed : 0;
    *full = t ? t->full : 0;
}

/* ---- sessions ------------------------------------------------------------ */

tls_conn *tls_conn_new(tls_ctx *t, const char *host) {
    ERR_clear_error();
    tls_conn *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->ctx = t;
    c->ssl = SSL_new(t->ssl);
    c->rbio = BIO_new(BIO_s_mem());
    c->wbio = BIO_new(BIO_s_mem());
    if (!c->ssl || !c->rbio || !c->wbio) goto fail;
    BIO_set_mem_eof_return(c->rbio, -1); /* empty = "want read", not EOF */
    SSL_set_bio(c->ssl, c->rbio, c->wbio);
    SSL_set_app_data(c->ssl, c);
    if (t->server) {
        SSL_set_accept_state(c->ssl);
        return c;
    }
    snprintf(c->name, sizeof c->name, "%s", t->server_name[0] ? t->server_name : (host ? host : ""));
    bool ip = is_ip(c->name);
    if (!t->skip_verify) {
        int ok = ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), c->name) : SSL_set1_host(c->ssl, c->name);
        if (!ok) goto fail;
        SSL_set_hostflags(c->ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    }
    if (!ip && c->name[0] && !SSL_set_tlsext_host_name(c->ssl, c->name)) goto fail;
    if (t->session && SSL_SESSION_is_resumable(t->session)) SSL_set_session(c->ssl, t->session);
    SSL_set_connect_state(c->ssl);
    return c;
fail:
    if (c->ssl) SSL_free(c->ssl); /* frees the BIOs once set */
    else {
        BIO_free(c->rbio);
        BIO_free(c->wbio);
    }
    ERR_clear_error();
    free(c);
    return NULL;
}

void tls_conn_free(tls_conn *c) {
    if (!c) return;
    SSL_free(c->ssl);
    free(c);
}

static void count_handshake(tls_conn *c) {
    if (c->counted || !SSL_is_init_finished(c->ssl)) return;
    c->counted = true;
    if (SSL_session_reused(c->ssl)) c->ctx->resumed++;
    else c->ctx->full++;
}

/* Records why the session failed, in words, then clears OpenSSL's queue. */
static void record_failure(tls_conn *c, int sslerr) {
    unsigned long e = ERR_peek_error();
    int reason = ERR_GET_LIB(e) == ERR_LIB_SSL ? ERR_GET_REASON(e) : 0;
    const char *rs = e ? ERR_reason_error_string(e) : NULL;
    c->failed = true;
    c->err = TLS_E_OTHER;
    const char *whose = c->ctx->server ? "the client's" : "the server's";
    if (c->verify_err || reason == SSL_R_CERTIFICATE_VERIFY_FAILED) {
        int v = c->verify_err ? c->verify_err : (int)SSL_get_verify_result(c->ssl);
        const char *vs = X509_verify_cert_error_string(v);
        switch (v) {
        case X509_V_ERR_HOSTNAME_MISMATCH:
        case X509_V_ERR_IP_ADDRESS_MISMATCH:
            c->err = TLS_E_NAME;
            snprintf(c->msg, sizeof c->msg, "%s certificate is issued for %.250s and not for %.200s", whose,
                     c->verify_info[0] ? c->verify_info : "other names", c->name);
            break;
        case X509_V_ERR_CERT_HAS_EXPIRED:
        case X509_V_ERR_CERT_NOT_YET_VALID: {
            c->err = TLS_E_EXPIRED;
            bool expired = v == X509_V_ERR_CERT_HAS_EXPIRED;
            char which[80];
            if (c->verify_depth == 0) snprintf(which, sizeof which, "%s certificate", whose);
            else snprintf(which, sizeof which, "a CA certificate in %s chain (depth %d)", whose, c->verify_depth);
            snprintf(c->msg, sizeof c->msg, "%s %s %s", which, expired ? "expired on" : "is not valid before",
                     c->verify_info[0] ? c->verify_info : "its validity dates");
            break;
        }
        case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
        case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
        case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
        case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
        case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
        case X509_V_ERR_CERT_UNTRUSTED:
            c->err = TLS_E_UNKNOWN_CA;
            snprintf(c->msg, sizeof c->msg, "%s certificate is not signed by a trusted certificate authority (%s)",
                     whose, vs);
            break;
        default: snprintf(c->msg, sizeof c->msg, "%s certificate was refused: %s", whose, vs); break;
        }
    } else if (!c->ctx->server && reason == SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED) {
        c->err = TLS_E_CLIENT_CERT;
        snprintf(c->msg, sizeof c->msg, "the server requires a client certificate and none was sent");
    } else if (!c->ctx->server &&
               (reason == SSL_R_SSLV3_ALERT_BAD_CERTIFICATE || reason == SSL_R_TLSV1_ALERT_UNKNOWN_CA ||
                reason == SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED || reason == SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN ||
                reason == SSL_R_SSLV3_ALERT_UNSUPPORTED_CERTIFICATE ||
                reason == SSL_R_SSLV3_ALERT_CERTIFICATE_REVOKED || reason == SSL_R_TLSV1_ALERT_ACCESS_DENIED ||
                (reason == SSL_R_SSLV3_ALERT_HANDSHAKE_FAILURE && c->cert_requested))) {
        c->err = TLS_E_CLIENT_CERT;
        if (c->ctx->has_cert)
            snprintf(c->msg, sizeof c->msg, "the server rejected the client certificate (%s)", rs ? rs : "alert");
        else
            snprintf(c->msg, sizeof c->msg, "the server requires a client certificate and none was sent (%s)",
                     rs ? rs : "alert");
    } else if (reason == SSL_R_WRONG_VERSION_NUMBER || reason == SSL_R_PACKET_LENGTH_TOO_LONG ||
               reason == SSL_R_RECORD_LENGTH_MISMATCH || reason == SSL_R_UNKNOWN_PROTOCOL ||
               reason == SSL_R_HTTP_REQUEST || reason == SSL_R_HTTPS_PROXY_REQUEST) {
        c->err = TLS_E_NOT_TLS;
        snprintf(c->msg, sizeof c->msg, "the %s does not speak TLS (%s)%s", c->ctx->server ? "client" : "server",
                 rs ? rs : "not a TLS record", c->ctx->server ? "" : ": if it serves plain HTTP, use an http:// URL");
    } else if (rs) {
        snprintf(c->msg, sizeof c->msg, "%s", rs);
    } else {
        snprintf(c->msg, sizeof c->msg, "the TLS session failed (%s)",
                 sslerr == SSL_ERROR_SYSCALL ? "unexpected end of stream" : "no detail from OpenSSL");
    }
    ERR_clear_error();
}

int tls_feed(tls_conn *c, const void *data, size_t len) {
    if (len == 0) return 0;
    if (len > INT_MAX) return -1;
    return BIO_write(c->rbio, data, (int)len) == (int)len ? 0 : -1;
}

tls_status tls_handshake(tls_conn *c) {
    if (c->failed) return TLS_FAILED;
    ERR_clear_error();
    int r = SSL_do_handshake(c->ssl);
    if (r == 1) {
        count_handshake(c);
        return TLS_DONE;
    }
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return TLS_AGAIN;
    record_failure(c, e);
    return TLS_FAILED;
}

tls_status tls_read(tls_conn *c, void *out, size_t cap, size_t *n) {
    *n = 0;
    if (c->failed) return TLS_FAILED;
    ERR_clear_error();
    int r = SSL_read(c->ssl, out, cap > INT_MAX ? INT_MAX : (int)cap);
    count_handshake(c);
    if (r > 0) {
        *n = (size_t)r;
        return TLS_DONE;
    }
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return TLS_AGAIN;
    if (e == SSL_ERROR_ZERO_RETURN) return TLS_CLOSED;
    record_failure(c, e);
    return TLS_FAILED;
}

tls_status tls_write(tls_conn *c, const void *data, size_t len) {
    if (c->failed) return TLS_FAILED;
    const char *p = data;
    while (len > 0) {
        ERR_clear_error();
        int chunk = len > (size_t)INT_MAX ? INT_MAX : (int)len;
        int r = SSL_write(c->ssl, p, chunk);
        if (r <= 0) { /* a memory BIO never blocks: anything else is fatal */
            record_failure(c, SSL_get_error(c->ssl, r));
            return TLS_FAILED;
        }
        p += r;
        len -= (size_t)r;
    }
    return TLS_DONE;
}

void tls_close_notify(tls_conn *c) {
    if (c->failed || !SSL_is_init_finished(c->ssl)) return;
    ERR_clear_error();
    (void)SSL_shutdown(c->ssl);
    ERR_clear_error();
}

size_t tls_out_pending(const tls_conn *c) { return BIO_ctrl_pending(c->wbio); }

int tls_out_take(tls_conn *c, buf_t *dst) {
    size_t n = BIO_ctrl_pending(c->wbio);
    if (n == 0) return 0;
    if (n > INT_MAX || !buf_reserve(dst, n)) return -1;
    int r = BIO_read(c->wbio, dst->data + dst->len, (int)n);
    if (r != (int)n) return -1;
    dst->len += n;
    dst->data[dst->len] = '\0';
    return 0;
}

bool tls_handshake_done(const tls_conn *c) { return SSL_is_init_finished(c->ssl); }

bool tls_resumed(const tls_conn *c) { return SSL_session_reused(c->ssl) == 1; }

tls_error tls_failure(const tls_conn *c, char *msg, size_t cap) {
    if (msg && cap) snprintf(msg, cap, "%s", c->failed ? c->msg : "no TLS failure");
    return c->failed ? c->err : TLS_E_NONE;
}
