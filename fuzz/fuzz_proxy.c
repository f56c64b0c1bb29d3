/*
 * fuzz_proxy: the proxy module (src/fetch/proxy.c): the parser of a proxy's
 * reply to CONNECT, NO_PROXY matching and the proxy decision, proxy URL
 * parsing.
 *
 * Input layout: byte 0 picks the mode (its low 2 bits), the rest is:
 *   0, 3  reply: the proxy's reply bytes, fed whole and in chunks from a PRNG
 *         seeded with a hash of the input (0, 1, 2..64 bytes)
 *   1     NO_PROXY: two bytes of port (big endian), then the NO_PROXY list,
 *         a '\n', the host
 *   2     URL: a proxy URL (up to the first NUL)
 *
 * Checked:
 *   reply: same result, status, reason, error and head length whole vs
 *     split; never more than PROXY_REPLY_MAX head bytes taken; the head of
 *     an answered reply ends with a blank line and is the shortest such
 *     prefix; 2xx ⇔ established; reason printable; malformed ⇒ message;
 *     finished parsers take nothing more; the message for any state is a
 *     terminated string that does not depend on the proxy's password;
 *   NO_PROXY: the answer does not depend on the order of the entries; a list
 *     with "*" added exempts everything; a plain host name added as an entry
 *     exempts that host; proxy_for agrees with the list and the loopback rule;
 *   URL: a success has a host and a port >= 1; Proxy-Authorization decodes
 *     (base64) to exactly the %-decoded "user:password" of the URL; no
 *     message or description echoes the input (checked with '~', a byte no
 *     message may contain); the CONNECT request built from it is one
 *     well-formed head (no injected line).
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fetch/proxy.h"

#include "fuzz_check.h"

static bool terminated(const char *s, size_t cap) { return memchr(s, '\0', cap) != NULL; }

/* ---- reply ---------------------------------------------------------------- */

/* The message never depends on the proxy's password (so never shows it). */
static void check_message(const proxy_reply *r, bool eof) {
    proxy_server pa, pb;
    CHECK(proxy_url_parse("http://me:pw1@proxy.corp:3128", "HTTPS_PROXY", &pa, NULL, 0) == 0, "seed proxy");
    CHECK(proxy_url_parse("http://me:other@proxy.corp:3128", "HTTPS_PROXY", &pb, NULL, 0) == 0, "seed proxy");
    char ma[700], mb[700];
    memset(ma, 'x', sizeof ma);
    proxy_reply_message(r, &pa, "metrics.corp", 443, eof, ma, sizeof ma);
    CHECK(terminated(ma, sizeof ma), "message not terminated");
    proxy_reply_message(r, &pb, "metrics.corp", 443, eof, mb, sizeof mb);
    CHECK(strcmp(ma, mb) == 0, "the message depends on the password:\n  %s\n  %s", ma, mb);
}

static void fuzz_reply(const uint8_t *d, size_t n, uint64_t seed) {
    proxy_reply whole, split;
    size_t used_whole;
    proxy_reply_init(&whole);
    proxy_reply_result a = proxy_reply_feed(&whole, d, n, &used_whole);
    CHECK(used_whole <= n, "took %zu of %zu", used_whole, n);
    CHECK(a == PROXY_REPLY_MORE ? used_whole == n : true, "MORE but left bytes");

    proxy_reply_init(&split);
    size_t off = 0, used_split = 0;
    proxy_reply_result b = PROXY_REPLY_MORE;
    while (off < n && b == PROXY_REPLY_MORE) {
        uint64_t r = fuzz_next(&seed);
        size_t c = (r & 7) == 0 ? 0 : (r & 7) < 3 ? 1 : 2 + (size_t)((r >> 3) % 63);
        if (c > n - off) c = n - off;
        size_t used;
        b = proxy_reply_feed(&split, d + off, c, &used);
        CHECK(used <= c, "took %zu of a %zu-byte piece", used, c);
        CHECK(b != PROXY_REPLY_MORE || used == c, "MORE but left bytes of a piece");
        used_split += used;
        off += c;
    }
    CHECK(a == b, "whole %d, split %d", (int)a, (int)b);
    CHECK(used_whole == used_split, "head %zu bytes whole, %zu split", used_whole, used_split);
    CHECK(used_whole <= PROXY_REPLY_MAX + 1, "head of %zu bytes", used_whole);
    if (a != PROXY_REPLY_MORE) {
        size_t u = 9;
        CHECK(proxy_reply_feed(&whole, (const uint8_t *)"\r\n", 2, &u) == a && u == 0, "a finished parser took more");
    }
    if (a == PROXY_REPLY_ESTABLISHED || a == PROXY_REPLY_REFUSED) {
        CHECK(whole.status == split.status && strcmp(whole.reason, split.reason) == 0, "status/reason differ");
        CHECK(whole.status >= 100 && whole.status <= 599, "status %d", whole.status);
        CHECK((a == PROXY_REPLY_ESTABLISHED) == (whole.status / 100 == 2), "status %d gave %d", whole.status, (int)a);
        CHECK(used_whole >= 2 && d[used_whole - 1] == '\n', "head does not end with LF");
        /* ends with a blank line (LF LF or LF CR LF), and no earlier one */
        bool blank_end = d[used_whole - 2] == '\n' || (used_whole >= 3 && d[used_whole - 2] == '\r' &&
                                                         d[used_whole - 3] == '\n');
        CHECK(blank_end, "head does not end with a blank line");
        for (size_t i = 1; i + 1 < used_whole; i++)
            CHECK(!(d[i] == '\n' && (d[i - 1] == '\n' || (i >= 2 && d[i - 1] == '\r' && d[i - 2] == '\n'))),
                  "an earlier blank line at %zu", i);
        for (const char *p = whole.reason; *p; p++)
            CHECK(*p >= 0x20 && *p < 0x7F, "unprintable reason byte 0x%02X", (unsigned char)*p);
        CHECK(terminated(whole.reason, sizeof whole.reason), "reason not terminated");
    }
    if (a == PROXY_REPLY_MALFORMED) {
        CHECK(whole.error[0] != '\0' && terminated(whole.error, sizeof whole.error), "malformed without a message");
        CHECK(strcmp(whole.error, split.error) == 0, "errors differ:\n  %s\n  %s", whole.error, split.error);
    }
    check_message(&whole, true);
    check_message(&whole, false);
}

/* ---- NO_PROXY ------------------------------------------------------------- */

typedef struct {
    const char *pairs[8];
} fake_env;

static const char *fake_getenv(void *arg, const char *name) {
    fake_env *e = arg;
    for (size_t i = 0; e->pairs[i]; i += 2)
        if (strcmp(e->pairs[i], name) == 0) return e->pairs[i + 1];
    return NULL;
}

/* The same entries, last first. */
static char *reversed_list(const char *list) {
    size_t n = strlen(list);
    char *out = malloc(n + 1);
    CHECK(out != NULL, "oom");
    size_t o = 0, end = n;
    for (size_t i = n; ; i--) {
        if (i == 0 || list[i - 1] == ',') { /* an entry is list[i, end) */
            memcpy(out + o, list + i, end - i);
            o += end - i;
            if (i == 0) break;
            out[o++] = ',';
            end = i - 1;
        }
    }
    out[o] = '\0';
    CHECK(o == n, "reversal lost bytes");
    return out;
}

static bool plain_name(const char *h) {
    if (!*h) return false;
    for (const char *p = h; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' || *p == '.')) return false;
    return h[0] != '.' && h[0] != '*';
}

static void fuzz_no_proxy(const uint8_t *d, size_t n) {
    if (n < 2) return;
    uint16_t port = (uint16_t)(d[0] << 8 | d[1]);
    d += 2;
    n -= 2;
    char *buf = malloc(n + 1);
    CHECK(buf != NULL, "oom");
    memcpy(buf, d, n);
    buf[n] = '\0';
    char *nl = strchr(buf, '\n');
    const char *list = buf, *host = "metrics.corp";
    if (nl) {
        *nl = '\0';
        host = nl + 1;
    }
    bool m = proxy_no_proxy_match(list, host, port);
    char *rev = reversed_list(list);
    CHECK(proxy_no_proxy_match(rev, host, port) == m, "order matters: \"%s\" vs \"%s\"", list, rev);
    free(rev);

    size_t ll = strlen(list), hl = strlen(host);
    char *more = malloc(ll + hl + 4);
    CHECK(more != NULL, "oom");
    memcpy(more, list, ll);
    memcpy(more + ll, ",*", 3);
    if (strlen(host) < 256) CHECK(proxy_no_proxy_match(more, host, port), "\"*\" did not exempt %s", host);
    if (plain_name(host) && hl < 256) {
        memcpy(more + ll + 1, host, hl + 1);
        CHECK(proxy_no_proxy_match(more, host, port), "the host itself in the list did not exempt it");
    }
    free(more);

    proxy_server px;
    char err[300];
    fake_env e = {{"HTTPS_PROXY", "http://proxy:3128", "NO_PROXY", list, NULL}};
    proxy_route r = proxy_for(fake_getenv, &e, true, host, port, &px, err, sizeof err);
    CHECK(r != PROXY_ERROR, "valid proxy gave an error: %s", err);
    if (m) CHECK(r == PROXY_DIRECT, "NO_PROXY match but proxied");
    free(buf);
}

/* ---- URLs ----------------------------------------------------------------- */

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static size_t pct(const char *s, size_t n, uint8_t *out) {
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%' && i + 2 < n && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0) {
            out[o++] = (uint8_t)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
            i += 2;
        } else {
            out[o++] = (uint8_t)s[i];
        }
    }
    return o;
}

static size_t unbase64(const char *s, uint8_t *out) {
    size_t o = 0, bits = 0;
    uint32_t acc = 0;
    for (; *s && *s != '='; s++) {
        const char *tbl = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        const char *p = strchr(tbl, *s);
        CHECK(p != NULL, "not base64: %c", *s);
        acc = acc << 6 | (uint32_t)(p - tbl);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (uint8_t)(acc >> bits);
        }
    }
    return o;
}

static void fuzz_url(const uint8_t *d, size_t n) {
    char *value = malloc(n + 1);
    CHECK(value != NULL, "oom");
    memcpy(value, d, n);
    value[n] = '\0';
    proxy_server px;
    char err[300];
    memset(err, 'x', sizeof err);
    int rc = proxy_url_parse(value, "HTTPS_PROXY", &px, err, sizeof err);
    if (rc != 0) {
        CHECK(terminated(err, sizeof err) && err[0], "failure without a message");
        CHECK(strchr(err, '~') == NULL, "the message echoes the input: %s", err);
        CHECK(!px.has_auth && px.authorization[0] == '\0', "credentials left behind after a failure");
        free(value);
        return;
    }
    CHECK(px.host[0] != '\0' && px.port >= 1, "success without host/port");
    char desc[400];
    proxy_describe(&px, desc, sizeof desc);
    CHECK(strchr(desc, '~') == NULL, "the description echoes credentials: %s", desc);

    /* reference: the userinfo of the URL, %-decoded */
    const char *rest = strstr(value, "://");
    rest = rest ? rest + 3 : value;
    size_t alen = strcspn(rest, "/?#");
    const char *at = NULL;
    for (size_t i = alen; i > 0; i--)
        if (rest[i - 1] == '@') {
            at = rest + i - 1;
            break;
        }
    CHECK((at != NULL) == px.has_auth, "credentials %s", px.has_auth ? "invented" : "lost");
    if (at) {
        CHECK(strncmp(px.authorization, "Basic ", 6) == 0, "authorization is not Basic");
        uint8_t want[1300], got[1300];
        size_t ul = (size_t)(at - rest);
        const char *colon = memchr(rest, ':', ul);
        size_t wl = pct(rest, colon ? (size_t)(colon - rest) : ul, want);
        want[wl++] = ':';
        if (colon) wl += pct(colon + 1, ul - (size_t)(colon + 1 - rest), want + wl);
        size_t gl = unbase64(px.authorization + 6, got);
        CHECK(gl == wl && memcmp(got, want, wl) == 0, "Proxy-Authorization does not decode to the userinfo");
    }
    char req[2048];
    size_t rl = proxy_connect_request(&px, px.host, 443, req, sizeof req);
    CHECK(rl > 0, "no CONNECT request for a parsed host");
    CHECK(strncmp(req, "CONNECT ", 8) == 0 && rl >= 4 && memcmp(req + rl - 4, "\r\n\r\n", 4) == 0, "bad head");
    const char *first_blank = strstr(req, "\r\n\r\n");
    CHECK(first_blank == req + rl - 4, "an injected blank line");
    for (size_t i = 0; i < rl; i++)
        CHECK(req[i] != '\n' || (i > 0 && req[i - 1] == '\r'), "a bare LF in the request");
    free(value);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    uint64_t seed = fuzz_hash(data, size);
    switch (data[0] & 3) {
    case 1:
        fuzz_no_proxy(data + 1, size - 1);
        break;
    case 2:
        fuzz_url(data + 1, size - 1);
        break;
    default:
        fuzz_reply(data + 1, size - 1, seed);
        break;
    }
    return 0;
}
