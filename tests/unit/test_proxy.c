/* The proxy decision (Go's httpproxy rules: variables and their precedence,
 * CGI, localhost/loopback, the NO_PROXY matching table), proxy URL parsing
 * with credentials that never show up in messages, the CONNECT request and
 * the incremental parser of the proxy's reply. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "fetch/proxy.h"

/* ---- a fake environment ------------------------------------------------- */

typedef struct {
    const char *pairs[16]; /* name, value, name, value, ..., NULL */
} fake_env;

static const char *fake_getenv(void *arg, const char *name) {
    fake_env *e = arg;
    for (size_t i = 0; e->pairs[i]; i += 2)
        if (strcmp(e->pairs[i], name) == 0) return e->pairs[i + 1];
    return NULL;
}

static proxy_route route(fake_env *e, bool https, const char *host, uint16_t port, proxy_server *px, char *err) {
    return proxy_for(fake_getenv, e, https, host, port, px, err, 300);
}

/* ---- the variables ------------------------------------------------------ */

static void variables_and_precedence(void **state) {
    (void)state;
    proxy_server px;
    char err[300];

    fake_env none = {{NULL}};
    assert_int_equal(route(&none, false, "metrics.corp", 80, &px, err), PROXY_DIRECT);
    assert_int_equal(route(&none, true, "metrics.corp", 443, &px, err), PROXY_DIRECT);

    fake_env both = {{"HTTP_PROXY", "http://hp:1", "HTTPS_PROXY", "http://hsp:2", "http_proxy", "http://lhp:3",
                      "https_proxy", "http://lhsp:4", NULL}};
    assert_int_equal(route(&both, false, "metrics.corp", 80, &px, err), PROXY_VIA);
    assert_string_equal(px.host, "hp");
    assert_int_equal(px.port, 1);
    assert_string_equal(px.var, "HTTP_PROXY");
    assert_int_equal(route(&both, true, "metrics.corp", 443, &px, err), PROXY_VIA);
    assert_string_equal(px.host, "hsp");
    assert_string_equal(px.var, "HTTPS_PROXY");

    /* an empty uppercase value falls through to the lowercase name (Go's getEnvAny) */
    fake_env lower = {{"HTTP_PROXY", "", "http_proxy", "lhp:3128", "HTTPS_PROXY", "", NULL}};
    assert_int_equal(route(&lower, false, "metrics.corp", 80, &px, err), PROXY_VIA);
    assert_string_equal(px.host, "lhp");
    assert_int_equal(px.port, 3128);
    assert_string_equal(px.var, "http_proxy");
    assert_int_equal(route(&lower, true, "metrics.corp", 443, &px, err), PROXY_DIRECT);

    /* HTTPS_PROXY is for https:// backends only, HTTP_PROXY for http:// only */
    fake_env only_https = {{"HTTPS_PROXY", "http://hsp:2", NULL}};
    assert_int_equal(route(&only_https, false, "metrics.corp", 80, &px, err), PROXY_DIRECT);
    assert_int_equal(route(&only_https, true, "metrics.corp", 443, &px, err), PROXY_VIA);

    /* NO_PROXY, then no_proxy when NO_PROXY is empty */
    fake_env np = {{"HTTP_PROXY", "http://hp:1", "NO_PROXY", "", "no_proxy", "corp", NULL}};
    assert_int_equal(route(&np, false, "metrics.corp", 80, &px, err), PROXY_DIRECT);
    assert_int_equal(route(&np, false, "metrics.example", 80, &px, err), PROXY_VIA);
    fake_env np2 = {{"HTTP_PROXY", "http://hp:1", "NO_PROXY", "example", "no_proxy", "corp", NULL}};
    assert_int_equal(route(&np2, false, "metrics.corp", 80, &px, err), PROXY_VIA);
    assert_int_equal(route(&np2, false, "metrics.example", 80, &px, err), PROXY_DIRECT);
}

static void cgi_refuses_http_proxy(void **state) {
    (void)state;
    proxy_server px;
    char err[300];
    fake_env cgi = {{"HTTP_PROXY", "http://evil:1", "HTTPS_PROXY", "http://hsp:2", "REQUEST_METHOD", "GET", NULL}};
    assert_int_equal(route(&cgi, false, "metrics.corp", 80, &px, err), PROXY_ERROR);
    assert_non_null(strstr(err, "refusing to use HTTP_PROXY"));
    assert_non_null(strstr(err, "REQUEST_METHOD"));
    assert_null(strstr(err, "evil"));
    assert_int_equal(route(&cgi, true, "metrics.corp", 443, &px, err), PROXY_VIA);
    fake_env cgi_empty = {{"HTTP_PROXY", "http://hp:1", "REQUEST_METHOD", "", NULL}};
    assert_int_equal(route(&cgi_empty, false, "metrics.corp", 80, &px, err), PROXY_VIA);
}

static void localhost_and_loopback_never_proxied(void **state) {
    (void)state;
    proxy_server px;
    char err[300];
    fake_env e = {{"HTTP_PROXY", "http://hp:1", "HTTPS_PROXY", "http://hp:1", NULL}};
    static const char *direct[] = {"localhost", "LocalHost", "127.0.0.1", "127.1.2.3", "127.255.255.255", "::1",
                                   "0:0:0:0:0:0:0:1", "::ffff:127.0.0.1"};
    for (size_t i = 0; i < sizeof direct / sizeof direct[0]; i++) {
        assert_int_equal(route(&e, false, direct[i], 8080, &px, err), PROXY_DIRECT);
        assert_int_equal(route(&e, true, direct[i], 443, &px, err), PROXY_DIRECT);
    }
    static const char *proxied[] = {"localhost.corp", "mylocalhost", "128.0.0.1", "126.255.255.255", "::2",
                                    "10.0.0.1", "0.0.0.0", "::"};
    for (size_t i = 0; i < sizeof proxied / sizeof proxied[0]; i++) {
        if (route(&e, false, proxied[i], 8080, &px, err) != PROXY_VIA) fail_msg("%s was not proxied", proxied[i]);
    }
    /* loopback wins even over a broken proxy value */
    fake_env bad = {{"HTTP_PROXY", "socks5://x:1", NULL}};
    assert_int_equal(route(&bad, false, "localhost", 80, &px, err), PROXY_DIRECT);
    assert_int_equal(route(&bad, false, "metrics.corp", 80, &px, err), PROXY_ERROR);
}

/* ---- NO_PROXY ------------------------------------------------------------ */

typedef struct {
    const char *no_proxy;
    const char *host;
    uint16_t port;
    bool exempt;
} np_case;

static const np_case np_table[] = {
    /* "*" */
    {"*", "metrics.corp", 80, true},
    {"*", "10.1.2.3", 80, true},
    {"*", "2001:db8::1", 80, true},
    {" * ", "metrics.corp", 80, true},
    {"example.com, *", "metrics.corp", 80, true},
    {"*corp", "metrics.corp", 80, false},
    /* a bare domain: itself and below */
    {"corp.com", "corp.com", 80, true},
    {"corp.com", "a.corp.com", 80, true},
    {"corp.com", "a.b.corp.com", 8080, true},
    {"corp.com", "xcorp.com", 80, false},
    {"corp.com", "corp.com.evil.net", 80, false},
    {"corp.com", "com", 80, false},
    {"corp.com", "CORP.COM", 80, true},
    {"CoRp.CoM", "a.corp.com", 80, true},
    /* leading dot / "*.": below only */
    {".corp.com", "corp.com", 80, false},
    {".corp.com", "a.corp.com", 80, true},
    {"*.corp.com", "corp.com", 80, false},
    {"*.corp.com", "a.corp.com", 80, true},
    {"*.corp.com", "a.xcorp.com", 80, false},
    {".", "corp.com.", 80, true},
    /* domains with a port: the port compares as text */
    {"corp.com:8080", "a.corp.com", 8080, true},
    {"corp.com:8080", "a.corp.com", 80, false},
    {"corp.com:08080", "a.corp.com", 8080, false},
    {".corp.com:443", "a.corp.com", 443, true},
    {"corp.com:", "corp.com", 1234, true},
    /* IP literals */
    {"10.1.2.3", "10.1.2.3", 80, true},
    {"10.1.2.3", "10.1.2.4", 80, false},
    {"10.1.2.3", "::ffff:10.1.2.3", 80, true},
    {"::ffff:10.1.2.3", "10.1.2.3", 80, true},
    {"10.1.2.3:8080", "10.1.2.3", 8080, true},
    {"10.1.2.3:8080", "10.1.2.3", 80, false},
    {"2001:db8::1", "2001:db8::1", 443, true},
    {"2001:db8::1", "2001:DB8:0::1", 443, true},
    {"2001:db8::1", "2001:db8::2", 443, false},
    {"[2001:db8::1]:443", "2001:db8::1", 443, true},
    {"[2001:db8::1]:443", "2001:db8::1", 80, false},
    {"[2001:db8::1]", "2001:db8::1", 80, false}, /* no port: not split, not an IP → a domain, as in Go */
    {"10.1.2.3", "ten.corp", 80, false},
    {"01.2.3.4", "1.2.3.4", 80, false},          /* leading zeros are no IPv4 address (Go, inet_pton) */
    /* CIDR ranges */
    {"10.0.0.0/8", "10.200.3.4", 80, true},
    {"10.0.0.0/8", "11.0.0.1", 80, false},
    {"10.0.0.0/8", "::ffff:10.9.9.9", 80, true},
    {"10.0.0.0/8", "ten.corp", 80, false},
    {"192.168.1.0/24", "192.168.1.255", 80, true},
    {"192.168.1.0/24", "192.168.2.0", 80, false},
    {"192.168.1.77/24", "192.168.1.3", 80, true},  /* host bits in the entry are ignored */
    {"10.1.2.3/32", "10.1.2.3", 80, true},
    {"10.1.2.3/32", "10.1.2.4", 80, false},
    {"0.0.0.0/0", "203.0.113.9", 80, true},
    {"0.0.0.0/0", "2001:db8::1", 80, false},
    {"0.0.0.0/0", "metrics.corp", 80, false},
    {"::/0", "2001:db8::1", 80, true},
    {"::/0", "10.1.2.3", 80, false},
    {"2001:db8::/32", "2001:db8:ffff::5", 80, true},
    {"2001:db8::/32", "2001:db9::5", 80, false},
    {"fd00::/8", "fdff::1", 80, true},
    {"::ffff:10.0.0.0/104", "10.1.2.3", 80, false}, /* an IPv6 range never holds an IPv4 host (Go) */
    {"10.0.0.0/33", "10.0.0.1", 80, false},         /* invalid range: read as a domain, matches nothing */
    {"10.0.0.0/x", "10.0.0.1", 80, false},
    /* Go quirks kept: a non-IP entry is a domain, also for IP hosts */
    {"1.2.3", "4.1.2.3", 80, true},
    {"1.2.3", "1.2.3", 80, true},
    /* lists */
    {"a.com,b.com,c.com", "x.b.com", 80, true},
    {" a.com ,\tb.com\t, c.com ", "c.com", 80, true},
    {"a.com,,b.com,", "b.com", 80, true},
    {"a.com,b.com", "c.com", 80, false},
    {"", "metrics.corp", 80, false},
    {",,,", "metrics.corp", 80, false},
    {":80", "metrics.corp", 80, false},           /* no host: ignored */
    {"corp.com/8", "corp.com", 80, false},
    {"localhost", "localhost", 80, true},
    {"metrics.corp:80:90", "metrics.corp", 80, false},
};

static void no_proxy_table(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof np_table / sizeof np_table[0]; i++) {
        const np_case *c = &np_table[i];
        bool got = proxy_no_proxy_match(c->no_proxy, c->host, c->port);
        if (got != c->exempt)
            fail_msg("NO_PROXY=\"%s\" host %s port %u: expected %s", c->no_proxy, c->host, c->port,
                     c->exempt ? "direct" : "proxied");
    }
    /* the same table through proxy_for */
    for (size_t i = 0; i < sizeof np_table / sizeof np_table[0]; i++) {
        const np_case *c = &np_table[i];
        fake_env e = {{"HTTP_PROXY", "http://hp:3128", "NO_PROXY", c->no_proxy, NULL}};
        proxy_server px;
        char err[300];
        proxy_route r = route(&e, false, c->host, c->port, &px, err);
        bool loop = strcmp(c->host, "localhost") == 0;
        assert_int_equal(r, c->exempt || loop ? PROXY_DIRECT : PROXY_VIA);
    }
    /* an overlong entry is skipped, the next one still counts */
    char big[2000];
    memset(big, 'a', 1500);
    strcpy(big + 1500, ".com,corp.com");
    assert_true(proxy_no_proxy_match(big, "x.corp.com", 80));
    assert_false(proxy_no_proxy_match(big, "x.com", 80));
    assert_false(proxy_no_proxy_match(NULL, "x.com", 80));
}

/* ---- proxy URLs --------------------------------------------------------- */

typedef struct {
    const char *value;
    const char *host;
    uint16_t port;
    const char *authorization; /* NULL: none */
} url_ok_case;

static void proxy_urls(void **state) {
    (void)state;
    static const url_ok_case ok[] = {
        {"http://proxy.corp:3128", "proxy.corp", 3128, NULL},
        {"proxy.corp:3128", "proxy.corp", 3128, NULL},
        {"proxy.corp", "proxy.corp", 80, NULL},
        {"HTTP://Proxy.Corp:3128/", "Proxy.Corp", 3128, NULL},
        {"http://proxy.corp:3128/some/path?x#y", "proxy.corp", 3128, NULL},
        {"http://proxy.corp:", "proxy.corp", 80, NULL},
        {"http://10.0.0.5:8080", "10.0.0.5", 8080, NULL},
        {"http://[fd00::1]:3128", "fd00::1", 3128, NULL},
        {"http://[fd00::1]", "fd00::1", 80, NULL},
        {"http://user:pass@proxy:8080", "proxy", 8080, "Basic dXNlcjpwYXNz"},
        {"http://user:p%40ss@proxy:8080", "proxy", 8080, "Basic dXNlcjpwQHNz"},
        {"http://u:p@ss@proxy", "proxy", 80, "Basic dTpwQHNz"},
        {"http://user@proxy", "proxy", 80, "Basic dXNlcjo="},
        {"http://@proxy", "proxy", 80, "Basic Og=="},
        {"user:pass@proxy:1", "proxy", 1, "Basic dXNlcjpwYXNz"},
        {"http://d%C3%A9j%C3%A0:%3A%2F@proxy", "proxy", 80, "Basic ZMOpasOgOjov"},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        proxy_server px;
        char err[300] = "";
        if (proxy_url_parse(ok[i].value, "HTTP_PROXY", &px, err, sizeof err) != 0)
            fail_msg("%s: %s", ok[i].value, err);
        assert_string_equal(px.host, ok[i].host);
        assert_int_equal(px.port, ok[i].port);
        assert_string_equal(px.var, "HTTP_PROXY");
        assert_int_equal(px.has_auth, ok[i].authorization != NULL);
        assert_string_equal(px.authorization, ok[i].authorization ? ok[i].authorization : "");
        char d[400];
        proxy_describe(&px, d, sizeof d);
        assert_null(strstr(d, "pass"));
        assert_null(strstr(d, "user"));
        assert_true((strstr(d, "(with credentials)") != NULL) == px.has_auth);
    }
    proxy_server px;
    proxy_url_parse("http://[fd00::1]:3128", "HTTP_PROXY", &px, NULL, 0);
    char d[400];
    proxy_describe(&px, d, sizeof d);
    assert_string_equal(d, "http://[fd00::1]:3128");

    static const struct { const char *value, *expect; } bad[] = {
        {"", "is empty"},
        {"https://SeCrEtUser:SeCrEt@proxy:443", "https:// proxy"},
        {"socks5://SeCrEtUser:SeCrEt@proxy:1080", "scheme \"socks5\""},
        {"ftp://proxy:21", "scheme \"ftp\""},
        {"http://proxy:0", "port"},
        {"http://SeCrEtUser:SeCrEt@proxy:99999", "port"},
        {"http://proxy:80a", "port"},
        {"http://", "no proxy host"},
        {"http://:8080", "no proxy host"},
        {"http://SeCrEtUser:SeCrEt@", "no proxy host"},
        {"http://SeCrEtUser:SeCrEt%zz@proxy", "invalid %-escape"},
        {"http://SeCrEtUser:SeCrEt%4@proxy", "invalid %-escape"},
        {"http://pro xy", "space or control"},
        {"http://SeCrEtUser:SeCrEt\r\n@proxy", "space or control"},
        {"http://[fd00::1", "unterminated"},
        {"http://[zz]:80", "invalid IPv6"},
        {"http://[fd00::1]x", "unexpected characters"},
        {"http://prox!y:80", "invalid character"},
        {"http://SeCrEtUser:SeCrEt@pr%78oxy", "invalid character"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char err[300] = "";
        memset(&px, 0x5A, sizeof px);
        if (proxy_url_parse(bad[i].value, "HTTPS_PROXY", &px, err, sizeof err) == 0)
            fail_msg("\"%s\" was accepted", bad[i].value);
        if (!strstr(err, bad[i].expect)) fail_msg("\"%s\": message \"%s\" lacks \"%s\"", bad[i].value, err, bad[i].expect);
        assert_non_null(strstr(err, "HTTPS_PROXY"));
        assert_null(strstr(err, "SeCrEt"));
        assert_false(px.has_auth); /* nothing of the credentials is left behind */
        assert_string_equal(px.authorization, "");
    }
    /* overlong credentials */
    char big[1000];
    strcpy(big, "http://u:");
    memset(big + 9, 'x', 700);
    strcpy(big + 709, "@proxy");
    char err[300];
    assert_int_equal(proxy_url_parse(big, "HTTP_PROXY", &px, err, sizeof err), -1);
    assert_non_null(strstr(err, "longer than"));
    assert_null(strstr(err, "xxxx"));
    /* through proxy_for: the error names the variable, never the password */
    fake_env e = {{"https_proxy", "http://me:SeCrEt@proxy:0", NULL}};
    assert_int_equal(route(&e, true, "metrics.corp", 443, &px, err), PROXY_ERROR);
    assert_non_null(strstr(err, "https_proxy"));
    assert_null(strstr(err, "SeCrEt"));
}

/* ---- CONNECT ------------------------------------------------------------ */

static void connect_request(void **state) {
    (void)state;
    proxy_server px;
    char out[2048];
    assert_int_equal(proxy_url_parse("http://proxy:3128", "HTTPS_PROXY", &px, NULL, 0), 0);
    size_t n = proxy_connect_request(&px, "metrics.corp", 443, out, sizeof out);
    assert_string_equal(out, "CONNECT metrics.corp:443 HTTP/1.1\r\nHost: metrics.corp:443\r\n\r\n");
    assert_int_equal(n, strlen(out));
    n = proxy_connect_request(&px, "2001:db8::1", 8443, out, sizeof out);
    assert_string_equal(out, "CONNECT [2001:db8::1]:8443 HTTP/1.1\r\nHost: [2001:db8::1]:8443\r\n\r\n");
    assert_int_equal(proxy_url_parse("http://user:pass@proxy:3128", "HTTPS_PROXY", &px, NULL, 0), 0);
    n = proxy_connect_request(&px, "metrics.corp", 443, out, sizeof out);
    assert_string_equal(out, "CONNECT metrics.corp:443 HTTP/1.1\r\nHost: metrics.corp:443\r\n"
                             "Proxy-Authorization: Basic dXNlcjpwYXNz\r\n\r\n");
    assert_int_equal(proxy_connect_request(&px, "metrics.corp", 443, out, 20), 0);
    assert_int_equal(proxy_connect_request(&px, "evil\r\nX: y", 443, out, sizeof out), 0);
    assert_int_equal(proxy_connect_request(&px, "a b", 443, out, sizeof out), 0);
    assert_int_equal(proxy_connect_request(&px, "", 443, out, sizeof out), 0);
    assert_int_equal(proxy_connect_request(NULL, "metrics.corp", 443, out, sizeof out), 61);
}

static proxy_reply_result feed_str(proxy_reply *r, const char *s, size_t *consumed) {
    return proxy_reply_feed(r, (const uint8_t *)s, strlen(s), consumed);
}

static void reply_established(void **state) {
    (void)state;
    proxy_reply r;
    size_t used;
    const char *ok = "HTTP/1.1 200 Connection established\r\n\r\n";
    proxy_reply_init(&r);
    assert_int_equal(feed_str(&r, ok, &used), PROXY_REPLY_ESTABLISHED);
    assert_int_equal(used, strlen(ok));
    assert_int_equal(r.status, 200);
    assert_string_equal(r.reason, "Connection established");

    /* leftover tunnel bytes are not taken */
    char buf[200];
    snprintf(buf, sizeof buf, "%s\x16\x03\x03rest", ok);
    proxy_reply_init(&r);
    assert_int_equal(feed_str(&r, buf, &used), PROXY_REPLY_ESTABLISHED);
    assert_int_equal(used, strlen(ok));
    /* and later feeds take nothing */
    assert_int_equal(feed_str(&r, "more", &used), PROXY_REPLY_ESTABLISHED);
    assert_int_equal(used, 0);

    /* one byte at a time, headers, LF-only lines, folded header, no reason */
    static const char *replies[] = {
        "HTTP/1.1 200 Connection established\r\nProxy-Agent: squid/5\r\nVia: 1.1 p\r\n\r\n",
        "HTTP/1.0 200 OK\n\n",
        "HTTP/1.1 200 OK\r\nX-Long: a\r\n  continued\r\n\r\n",
        "HTTP/1.1 200\r\n\r\n",
        "HTTP/1.1 204 \r\n\r\n",
        "HTTP/1.1 200 OK\r\nEmpty:\r\n\r\n",
    };
    for (size_t k = 0; k < sizeof replies / sizeof replies[0]; k++) {
        const char *s = replies[k];
        size_t n = strlen(s);
        proxy_reply_init(&r);
        for (size_t i = 0; i < n; i++) {
            proxy_reply_result res = proxy_reply_feed(&r, (const uint8_t *)s + i, 1, &used);
            assert_int_equal(used, 1);
            if (i + 1 < n && res != PROXY_REPLY_MORE) fail_msg("reply %zu ended early at byte %zu: %s", k, i, r.error);
            if (i + 1 == n && res != PROXY_REPLY_ESTABLISHED) fail_msg("reply %zu: %d %s", k, res, r.error);
        }
        /* and in one piece, with an empty feed first */
        proxy_reply_init(&r);
        assert_int_equal(proxy_reply_feed(&r, (const uint8_t *)"", 0, &used), PROXY_REPLY_MORE);
        assert_int_equal(used, 0);
        assert_int_equal(feed_str(&r, s, NULL), PROXY_REPLY_ESTABLISHED);
    }
}

static void reply_refused(void **state) {
    (void)state;
    proxy_reply r;
    size_t used;
    proxy_server px, pxa;
    char msg[600];
    assert_int_equal(proxy_url_parse("http://proxy.corp:3128", "HTTPS_PROXY", &px, NULL, 0), 0);
    assert_int_equal(proxy_url_parse("http://me:SeCrEt@proxy.corp:3128", "HTTPS_PROXY", &pxa, NULL, 0), 0);

    const char *r407 = "HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"corp\"\r\n"
                       "Content-Length: 12\r\n\r\nbody follows";
    proxy_reply_init(&r);
    assert_int_equal(feed_str(&r, r407, &used), PROXY_REPLY_REFUSED);
    assert_int_equal(used, strlen(r407) - strlen("body follows"));
    assert_int_equal(r.status, 407);
    assert_string_equal(r.reason, "Proxy Authentication Required");
    proxy_reply_message(&r, &px, "metrics.corp", 443, false, msg, sizeof msg);
    assert_non_null(strstr(msg, "requires authentication"));
    assert_non_null(strstr(msg, "HTTPS_PROXY"));
    assert_non_null(strstr(msg, "http://proxy.corp:3128"));
    proxy_reply_message(&r, &pxa, "metrics.corp", 443, false, msg, sizeof msg);
    assert_non_null(strstr(msg, "refused the credentials in HTTPS_PROXY"));
    assert_null(strstr(msg, "SeCrEt"));
    assert_null(strstr(msg, "me:"));

    proxy_reply_init(&r);
    assert_int_equal(feed_str(&r, "HTTP/1.1 403 Forbidden\r\n\r\n", &used), PROXY_REPLY_REFUSED);
    proxy_reply_message(&r, &px, "metrics.corp", 443, false, msg, sizeof msg);
    assert_non_null(strstr(msg, "does not allow a tunnel to metrics.corp:443 (403 Forbidden)"));
    assert_non_null(strstr(msg, "NO_PROXY"));

    proxy_reply_init(&r);
    assert_int_equal(feed_str(&r, "HTTP/1.1 502 Bad Gateway\r\n\r\n", &used), PROXY_REPLY_REFUSED);
    proxy_reply_message(&r, &px, "2001:db8::1", 8443, false, msg, sizeof msg);
    assert_non_null(strstr(msg, "could not reach [2001:db8::1]:8443 (502 Bad Gateway)"));

    proxy_reply_init(&r);
    assert_int_equal(feed_str(&r, "HTTP/1.1 301 Moved\r\nLocation: x\r\n\r\n", &used), PROXY_REPLY_REFUSED);
    proxy_reply_message(&r, &px, "metrics.corp", 443, false, msg, sizeof msg);
    assert_non_null(strstr(msg, "refused CONNECT metrics.corp:443 with 301 Moved"));

    /* unprintable reason bytes are replaced */
    proxy_reply_init(&r);
    assert_int_equal(feed_str(&r, "HTTP/1.1 500 b\xC3\xA4""d\r\n\r\n", &used), PROXY_REPLY_REFUSED);
    assert_string_equal(r.reason, "b??d");

    /* the connection closed before the reply ended */
    proxy_reply_init(&r);
    assert_int_equal(feed_str(&r, "HTTP/1.1 200 OK\r\n", &used), PROXY_REPLY_MORE);
    proxy_reply_message(&r, &px, "metrics.corp", 443, true, msg, sizeof msg);
    assert_non_null(strstr(msg, "closed the connection before it answered CONNECT metrics.corp:443"));
}

static void reply_malformed(void **state) {
    (void)state;
    static const struct { const char *reply; size_t len; const char *expect; } bad[] = {
        {"SSH-2.0-OpenSSH_9.2\r\n\r\n", 0, "HTTP/1.x status line"},
        {"\x16\x03\x01\x02\x00", 5, "answered with TLS"},
        {"HTTP/1.1 2000 OK\r\n\r\n", 0, "status line"},
        {"HTTP/1.1 20 OK\r\n\r\n", 0, "status line"},
        {"HTTP/1.1 600 Nope\r\n\r\n", 0, "status line"},
        {"HTTP/2 200\r\n\r\n", 0, "status line"},
        {"HTTP/1.1  200 OK\r\n\r\n", 0, "status line"},
        {"\r\n", 0, "empty line"},
        {"HTTP/1.1 200 OK\r\nNoColonHere\r\n\r\n", 0, "no ':'"},
        {"HTTP/1.1 200 OK\rX\n\r\n", 0, "CR not followed by LF"},
        {"HTTP/1.1 200 OK\r\nA: b\0c\r\n\r\n", 27, "control character (0x00)"},
        {"HTTP/1.1 200 OK\x01\r\n\r\n", 0, "control character (0x01)"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        proxy_reply r;
        size_t used;
        proxy_reply_init(&r);
        size_t n = bad[i].len ? bad[i].len : strlen(bad[i].reply);
        proxy_reply_result res = proxy_reply_feed(&r, (const uint8_t *)bad[i].reply, n, &used);
        if (res != PROXY_REPLY_MALFORMED) fail_msg("case %zu: result %d", i, res);
        if (!strstr(r.error, bad[i].expect)) fail_msg("case %zu: \"%s\" lacks \"%s\"", i, r.error, bad[i].expect);
        assert_true(used <= n);
        assert_int_equal(proxy_reply_feed(&r, (const uint8_t *)"x", 1, &used), PROXY_REPLY_MALFORMED);
        assert_int_equal(used, 0);
        proxy_server px;
        char msg[600];
        proxy_url_parse("proxy:3128", "HTTPS_PROXY", &px, NULL, 0);
        proxy_reply_message(&r, &px, "metrics.corp", 443, false, msg, sizeof msg);
        assert_non_null(strstr(msg, "gave no valid answer to CONNECT metrics.corp:443"));
        assert_non_null(strstr(msg, r.error));
    }

    /* bounded: headers that never end */
    proxy_reply r;
    size_t used, total = 0;
    proxy_reply_init(&r);
    assert_int_equal(feed_str(&r, "HTTP/1.1 200 OK\r\n", &used), PROXY_REPLY_MORE);
    total += used;
    proxy_reply_result res = PROXY_REPLY_MORE;
    for (int i = 0; i < 10000 && res == PROXY_REPLY_MORE; i++) {
        res = feed_str(&r, "X-Filler: 0123456789\r\n", &used);
        total += used;
    }
    assert_int_equal(res, PROXY_REPLY_MALFORMED);
    assert_non_null(strstr(r.error, "longer than 8192 bytes"));
    assert_int_equal(total, PROXY_REPLY_MAX + 1);

    /* a status line longer than its buffer */
    char longline[400];
    memcpy(longline, "HTTP/1.1 200 ", 13);
    memset(longline + 13, 'x', 300);
    strcpy(longline + 313, "\r\n\r\n");
    proxy_reply_init(&r);
    assert_int_equal(feed_str(&r, longline, &used), PROXY_REPLY_MALFORMED);
    assert_non_null(strstr(r.error, "status line is longer"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(variables_and_precedence),
        cmocka_unit_test(cgi_refuses_http_proxy),
        cmocka_unit_test(localhost_and_loopback_never_proxied),
        cmocka_unit_test(no_proxy_table),
        cmocka_unit_test(proxy_urls),
        cmocka_unit_test(connect_request),
        cmocka_unit_test(reply_established),
        cmocka_unit_test(reply_refused),
        cmocka_unit_test(reply_malformed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
