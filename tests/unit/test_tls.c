/* The TLS module: a client session against an in-memory server session, the
 * ciphertext moved by hand between their memory BIOs (whole, or one byte at
 * a time). Certificates (CAs, server, client, expired, wrong-CA) are made
 * with the openssl CLI in a temporary directory when the tests start; no key
 * is ever committed. Checks verification on by default, each classified
 * failure and its sentence, skip-verify, serverName, mTLS, session
 * resumption and bad PEM settings (whose messages never quote the input). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "fetch/tls.h"

static char dir[] = "/tmp/gpx-tls-XXXXXX";

typedef struct {
    char *ca, *ca_key, *other_ca;
    char *srv, *srv_key;           /* DNS:localhost, IP:127.0.0.1, signed by ca */
    char *expired, *expired_key;   /* same names, notAfter in the past */
    char *client, *client_key;     /* signed by ca */
    char *stranger, *stranger_key; /* client certificate signed by other_ca */
} pems;
static pems P;

static char *slurp(const char *name) {
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    if (s && fread(s, 1, (size_t)n, f) != (size_t)n) { free(s); s = NULL; }
    if (s) s[n] = '\0';
    fclose(f);
    return s;
}

static int sh(const char *fmt, ...) {
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    char full[2300];
    snprintf(full, sizeof full, "cd %s && (%s) >/dev/null 2>&1", dir, cmd);
    return system(full);
}

#define KEYGEN "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes"

/* A leaf: name.key / name.pem signed by ca (days may be -1: already expired). */
static int leaf(const char *name, const char *ca, const char *san, int days) {
    return sh("openssl req " KEYGEN " -keyout %s.key -out %s.csr -subj /CN=%s && "
              "printf 'subjectAltName=%s\\n' > %s.ext && "
              "openssl x509 -req -in %s.csr -CA %s.pem -CAkey %s.key -CAcreateserial -days %d -extfile %s.ext -out %s.pem",
              name, name, name, san, name, name, ca, ca, days, name, name);
}

static int make_certs(void **state) {
    (void)state;
    if (!mkdtemp(dir)) return -1;
    if (sh("openssl req -x509 " KEYGEN " -keyout ca.key -out ca.pem -subj '/CN=gpx test CA' -days 2") ||
        sh("openssl req -x509 " KEYGEN " -keyout other.key -out other.pem -subj '/CN=gpx other CA' -days 2") ||
        leaf("srv", "ca", "DNS:localhost,IP:127.0.0.1", 2) || leaf("old", "ca", "DNS:localhost,IP:127.0.0.1", -1) ||
        leaf("client", "ca", "DNS:client", 2) || leaf("stranger", "other", "DNS:stranger", 2)) {
        fprintf(stderr, "openssl CLI failed making test certificates in %s\n", dir);
        return -1;
    }
    P.ca = slurp("ca.pem");
    P.ca_key = slurp("ca.key");
    P.other_ca = slurp("other.pem");
    P.srv = slurp("srv.pem");
    P.srv_key = slurp("srv.key");
    P.expired = slurp("old.pem");
    P.expired_key = slurp("old.key");
    P.client = slurp("client.pem");
    P.client_key = slurp("client.key");
    P.stranger = slurp("stranger.pem");
    P.stranger_key = slurp("stranger.key");
    return P.ca && P.srv && P.srv_key && P.expired && P.client && P.client_key && P.stranger && P.stranger_key ? 0 : -1;
}

static int drop_certs(void **state) {
    (void)state;
    char **all = (char **)&P;
    for (size_t i = 0; i < sizeof P / sizeof(char *); i++) free(all[i]);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* ---- moving bytes between the two sessions --------------------------------- */

static bool bytewise; /* feed one byte at a time */

/* Moves all pending ciphertext from a to b; true when something moved. */
static bool move(tls_conn *a, tls_conn *b) {
    buf_t t;
    buf_init(&t);
    assert_int_equal(tls_out_take(a, &t), 0);
    bool moved = t.len > 0;
    if (bytewise)
        for (size_t i = 0; i < t.len; i++) assert_int_equal(tls_feed(b, t.data + i, 1), 0);
    else
        assert_int_equal(tls_feed(b, t.data, t.len), 0);
    buf_free(&t);
    return moved;
}

typedef struct {
    tls_status cli, srv;
} hs_result;

static hs_result handshake(tls_conn *cli, tls_conn *srv) {
    hs_result r = {TLS_AGAIN, TLS_AGAIN};
    for (int round = 0; round < 50; round++) {
        if (r.cli == TLS_AGAIN) r.cli = tls_handshake(cli);
        bool m1 = move(cli, srv);
        if (r.srv == TLS_AGAIN) r.srv = tls_handshake(srv);
        bool m2 = move(srv, cli);
        if (r.cli == TLS_FAILED || r.srv == TLS_FAILED) {
            /* Let the other side read the alert. */
            if (r.cli == TLS_AGAIN) r.cli = tls_handshake(cli);
            if (r.srv == TLS_AGAIN) r.srv = tls_handshake(srv);
            break;
        }
        if (r.cli == TLS_DONE && r.srv == TLS_DONE && !m1 && !m2) break;
    }
    return r;
}

/* Reads what is there into out; the last status. */
static tls_status drain(tls_conn *c, char *out, size_t cap, size_t *got) {
    *got = 0;
    for (;;) {
        size_t n;
        tls_status st = tls_read(c, out + *got, cap - *got - 1, &n);
        *got += n;
        out[*got] = '\0';
        if (st != TLS_DONE || *got + 1 >= cap) return st;
    }
}

/* Client says ping, server answers pong: both directions through TLS. */
static tls_status exchange(tls_conn *cli, tls_conn *srv) {
    char in[256];
    size_t got;
    assert_int_equal(tls_write(cli, "ping", 4), TLS_DONE);
    move(cli, srv);
    tls_status st = drain(srv, in, sizeof in, &got);
    move(srv, cli); /* an alert, if the server refused */
    if (st == TLS_FAILED) {
        drain(cli, in, sizeof in, &got);
        return TLS_FAILED;
    }
    assert_string_equal(in, "ping");
    assert_int_equal(tls_write(srv, "pong", 4), TLS_DONE);
    move(srv, cli);
    st = drain(cli, in, sizeof in, &got);
    if (st == TLS_FAILED) return st;
    assert_string_equal(in, "pong");
    return TLS_DONE;
}

static tls_ctx *client_ctx(const tls_client_config *cfg) {
    tls_input bad;
    char err[256];
    tls_ctx *t = tls_ctx_client(cfg, &bad, err, sizeof err);
    if (!t) fail_msg("client context: %s", err);
    assert_int_equal(bad, TLS_IN_NONE);
    return t;
}

static tls_ctx *server_ctx(const char *cert, const char *key, const char *client_ca) {
    char err[256];
    tls_ctx *t = tls_ctx_server(cert, key, client_ca, err, sizeof err);
    if (!t) fail_msg("server context: %s", err);
    return t;
}

/* One connection: handshake, then ping/pong; returns the client's failure
 * class (TLS_E_NONE when everything worked) and its message in msg. */
static tls_error connect_once(tls_ctx *cc, tls_ctx *sc, const char *host, char *msg, size_t cap, bool *resumed) {
    tls_conn *cli = tls_conn_new(cc, host), *srv = tls_conn_new(sc, NULL);
    assert_non_null(cli);
    assert_non_null(srv);
    hs_result r = handshake(cli, srv);
    tls_error e = TLS_E_NONE;
    msg[0] = '\0';
    if (r.cli == TLS_DONE) {
        assert_true(tls_handshake_done(cli));
        if (exchange(cli, srv) != TLS_DONE) e = tls_failure(cli, msg, cap);
        if (resumed) *resumed = tls_resumed(cli);
    } else {
        assert_int_equal(r.cli, TLS_FAILED);
        e = tls_failure(cli, msg, cap);
        assert_int_not_equal(e, TLS_E_NONE);
    }
    if (msg[0] && getenv("TLS_TEST_VERBOSE")) print_message("client failure %d: %s\n", (int)e, msg);
    if (e == TLS_E_NONE) {
        tls_close_notify(cli);
        move(cli, srv);
        char in[64];
        size_t got;
        assert_int_equal(drain(srv, in, sizeof in, &got), TLS_CLOSED);
    }
    tls_conn_free(cli);
    tls_conn_free(srv);
    return e;
}

/* ---- tests ------------------------------------------------------------------- */

static void verified_with_ca_and_resumed(void **state) {
    (void)state;
    tls_ctx *sc = server_ctx(P.srv, P.srv_key, NULL);
    tls_ctx *cc = client_ctx(&(tls_client_config){.ca_pem = P.ca});
    char msg[512];
    bool resumed = true;
    for (int pass = 0; pass < 2; pass++) {
        bytewise = pass == 1;
        assert_int_equal(connect_once(cc, sc, "127.0.0.1", msg, sizeof msg, &resumed), TLS_E_NONE);
        assert_int_equal(connect_once(cc, sc, "localhost", msg, sizeof msg, &resumed), TLS_E_NONE);
        assert_true(resumed); /* the ticket of the first connection was kept by the context */
    }
    bytewise = false;
    unsigned long long res, full;
    tls_ctx_counts(cc, &res, &full);
    assert_int_equal(full, 1);
    assert_int_equal(res, 3);
    tls_ctx_free(cc);
    tls_ctx_free(sc);
}

static void unknown_ca_then_skip_verify(void **state) {
    (void)state;
    tls_ctx *sc = server_ctx(P.srv, P.srv_key, NULL);
    char msg[512];
    /* Default: the system store, which does not know our test CA. */
    tls_ctx *cc = client_ctx(&(tls_client_config){0});
    assert_int_equal(connect_once(cc, sc, "localhost", msg, sizeof msg, NULL), TLS_E_UNKNOWN_CA);
    assert_non_null(strstr(msg, "not signed by a trusted certificate authority"));
    tls_ctx_free(cc);
    /* Another CA configured: still unknown. */
    cc = client_ctx(&(tls_client_config){.ca_pem = P.other_ca});
    assert_int_equal(connect_once(cc, sc, "localhost", msg, sizeof msg, NULL), TLS_E_UNKNOWN_CA);
    tls_ctx_free(cc);
    /* Skip-verify: accepted whatever the CA and the name. */
    cc = client_ctx(&(tls_client_config){.skip_verify = true});
    assert_int_equal(connect_once(cc, sc, "not-the-name.example", msg, sizeof msg, NULL), TLS_E_NONE);
    tls_ctx_free(cc);
    tls_ctx_free(sc);
}

static void name_mismatch_and_server_name(void **state) {
    (void)state;
    tls_ctx *sc = server_ctx(P.srv, P.srv_key, NULL);
    char msg[512];
    tls_ctx *cc = client_ctx(&(tls_client_config){.ca_pem = P.ca});
    assert_int_equal(connect_once(cc, sc, "metrics.internal", msg, sizeof msg, NULL), TLS_E_NAME);
    /* The sentence names what the certificate is for and what we asked. */
    assert_non_null(strstr(msg, "localhost"));
    assert_non_null(strstr(msg, "127.0.0.1"));
    assert_non_null(strstr(msg, "metrics.internal"));
    assert_int_equal(connect_once(cc, sc, "10.1.2.3", msg, sizeof msg, NULL), TLS_E_NAME);
    assert_non_null(strstr(msg, "10.1.2.3"));
    tls_ctx_free(cc);
    /* serverName overrides the URL's host for the check (and SNI). */
    cc = client_ctx(&(tls_client_config){.ca_pem = P.ca, .server_name = "localhost"});
    assert_int_equal(connect_once(cc, sc, "metrics.internal", msg, sizeof msg, NULL), TLS_E_NONE);
    tls_ctx_free(cc);
    tls_ctx_free(sc);
}

static void expired_certificate(void **state) {
    (void)state;
    tls_ctx *sc = server_ctx(P.expired, P.expired_key, NULL);
    tls_ctx *cc = client_ctx(&(tls_client_config){.ca_pem = P.ca});
    char msg[512];
    assert_int_equal(connect_once(cc, sc, "localhost", msg, sizeof msg, NULL), TLS_E_EXPIRED);
    assert_non_null(strstr(msg, "the server's certificate expired on 2"));
    assert_non_null(strstr(msg, "UTC"));
    tls_ctx_free(cc);
    tls_ctx_free(sc);
}

static void mutual_tls(void **state) {
    (void)state;
    tls_ctx *sc = server_ctx(P.srv, P.srv_key, P.ca);
    char msg[512];
    for (int pass = 0; pass < 2; pass++) {
        bytewise = pass == 1;
        /* No client certificate: the server insists. */
        tls_ctx *cc = client_ctx(&(tls_client_config){.ca_pem = P.ca});
        assert_int_equal(connect_once(cc, sc, "localhost", msg, sizeof msg, NULL), TLS_E_CLIENT_CERT);
        assert_non_null(strstr(msg, "requires a client certificate"));
        tls_ctx_free(cc);
        /* One from a CA the server does not trust: rejected. */
        cc = client_ctx(&(tls_client_config){.ca_pem = P.ca, .cert_pem = P.stranger, .key_pem = P.stranger_key});
        assert_int_equal(connect_once(cc, sc, "localhost", msg, sizeof msg, NULL), TLS_E_CLIENT_CERT);
        assert_non_null(strstr(msg, "rejected the client certificate"));
        tls_ctx_free(cc);
        /* The right one. */
        cc = client_ctx(&(tls_client_config){.ca_pem = P.ca, .cert_pem = P.client, .key_pem = P.client_key});
        assert_int_equal(connect_once(cc, sc, "localhost", msg, sizeof msg, NULL), TLS_E_NONE);
        tls_ctx_free(cc);
    }
    bytewise = false;
    tls_ctx_free(sc);
}

static void peer_not_speaking_tls(void **state) {
    (void)state;
    tls_ctx *cc = client_ctx(&(tls_client_config){.skip_verify = true});
    tls_conn *c = tls_conn_new(cc, "localhost");
    assert_int_equal(tls_handshake(c), TLS_AGAIN);
    buf_t hello;
    buf_init(&hello);
    assert_int_equal(tls_out_take(c, &hello), 0);
    assert_true(hello.len > 0); /* the ClientHello */
    assert_int_equal(tls_out_pending(c), 0);
    buf_free(&hello);
    const char *plain = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n";
    assert_int_equal(tls_feed(c, plain, strlen(plain)), 0);
    assert_int_equal(tls_handshake(c), TLS_FAILED);
    char msg[512];
    assert_int_equal(tls_failure(c, msg, sizeof msg), TLS_E_NOT_TLS);
    assert_non_null(strstr(msg, "does not speak TLS"));
    assert_non_null(strstr(msg, "http://"));
    tls_conn_free(c);
    tls_ctx_free(cc);
}

static void expect_bad(const tls_client_config *cfg, tls_input which, const char *words, const char *secret) {
    tls_input bad = TLS_IN_NONE;
    char err[256] = "";
    tls_ctx *t = tls_ctx_client(cfg, &bad, err, sizeof err);
    assert_null(t);
    assert_int_equal(bad, which);
    if (getenv("TLS_TEST_VERBOSE")) print_message("setting %d refused: %s\n", (int)which, err);
    if (!strstr(err, words)) fail_msg("message \"%s\" lacks \"%s\"", err, words);
    if (secret) assert_null(strstr(err, secret));
}

static void bad_pem_settings(void **state) {
    (void)state;
    expect_bad(&(tls_client_config){.ca_pem = "not a certificate S3CRET-CA-TEXT"}, TLS_IN_CA, "no PEM certificate",
               "S3CRET");
    expect_bad(&(tls_client_config){.ca_pem = P.srv_key}, TLS_IN_CA, "no PEM certificate", "PRIVATE");
    expect_bad(&(tls_client_config){.ca_pem = P.ca, .cert_pem = "S3CRET-CERT", .key_pem = P.client_key}, TLS_IN_CERT,
               "no PEM certificate", "S3CRET");
    expect_bad(&(tls_client_config){.ca_pem = P.ca, .cert_pem = P.client, .key_pem = "S3CRET-KEY-TEXT"}, TLS_IN_KEY,
               "no PEM private key", "S3CRET");
    expect_bad(&(tls_client_config){.ca_pem = P.ca, .cert_pem = P.client, .key_pem = P.srv_key}, TLS_IN_KEY,
               "does not belong to the certificate", "PRIVATE");
    /* A truncated CA bundle: the second certificate is cut. */
    size_t n = strlen(P.ca);
    char *two = malloc(2 * n + 1);
    memcpy(two, P.ca, n);
    memcpy(two + n, P.other_ca, n / 2);
    two[n + n / 2] = '\0';
    expect_bad(&(tls_client_config){.ca_pem = two}, TLS_IN_CA, "certificate 2 is not valid PEM", NULL);
    free(two);
    /* Two CAs in one setting are both trusted. */
    char *both = malloc(strlen(P.ca) + strlen(P.other_ca) + 1);
    strcpy(both, P.other_ca);
    strcat(both, P.ca);
    tls_ctx *cc = client_ctx(&(tls_client_config){.ca_pem = both});
    tls_ctx *sc = server_ctx(P.srv, P.srv_key, NULL);
    char msg[512];
    assert_int_equal(connect_once(cc, sc, "localhost", msg, sizeof msg, NULL), TLS_E_NONE);
    tls_ctx_free(cc);
    tls_ctx_free(sc);
    free(both);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(verified_with_ca_and_resumed),
        cmocka_unit_test(unknown_ca_then_skip_verify),
        cmocka_unit_test(name_mismatch_and_server_name),
        cmocka_unit_test(expired_certificate),
        cmocka_unit_test(mutual_tls),
        cmocka_unit_test(peer_not_speaking_tls),
        cmocka_unit_test(bad_pem_settings),
    };
    return cmocka_run_group_tests(tests, make_certs, drop_certs);
}
