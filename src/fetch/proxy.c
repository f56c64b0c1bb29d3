#include "proxy.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

const char *proxy_real_getenv(void *arg, const char *name) {
    (void)arg;
    return getenv(name);
}

/* ---- small helpers ------------------------------------------------------ */

static bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

static char lower(char c) { return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c; }

/* Go's getEnvAny: the first name with a non-empty value. */
static const char *env_any(proxy_getenv_fn env, void *arg, const char *upper, const char *lower_name,
                           const char **which) {
    const char *v = env(arg, upper);
    if (v && *v) {
        *which = upper;
        return v;
    }
    v = env(arg, lower_name);
    if (v && *v) {
        *which = lower_name;
        return v;
    }
    return NULL;
}

/* An IP literal (no brackets, no zone) as 16 bytes; IPv4 and IPv4-mapped
 * IPv6 are the same address (Go's net.IP.Equal/To4). *v4_form says whether
 * it was written as dotted IPv4 (what makes a CIDR an IPv4 one in Go). */
static bool parse_ip(const char *s, size_t n, uint8_t out[16], bool *is4, bool *v4_form) {
    char tmp[64];
    if (n == 0 || n >= sizeof tmp) return false;
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    uint8_t a4[4];
    if (inet_pton(AF_INET, tmp, a4) == 1) {
        memset(out, 0, 10);
        out[10] = out[11] = 0xFF;
        memcpy(out + 12, a4, 4);
        *is4 = true;
        if (v4_form) *v4_form = true;
        return true;
    }
    if (inet_pton(AF_INET6, tmp, out) != 1) return false;
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF};
    *is4 = memcmp(out, mapped, 12) == 0;
    if (v4_form) *v4_form = false;
    return true;
}

static bool is_loopback(const uint8_t ip[16], bool is4) {
    static const uint8_t one[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    return is4 ? ip[12] == 127 : memcmp(ip, one, 16) == 0;
}

/* Go's net.SplitHostPort: "host:port" or "[host]:port"; the port may be empty. */
static bool split_host_port(const char *s, size_t n, const char **host, size_t *hlen, const char **port,
                            size_t *plen) {
    const char *colon = NULL;
    for (size_t i = n; i > 0; i--)
        if (s[i - 1] == ':') {
            colon = s + i - 1;
            break;
        }
    if (!colon) return false; /* missing port */
    size_t j = 0, k = 0;
    if (s[0] == '[') {
        const char *end = memchr(s, ']', n);
        if (!end) return false;
        if (end + 1 != colon) return false; /* "[h]" or "[h]x:p" */
        *host = s + 1;
        *hlen = (size_t)(end - s - 1);
        j = 1;
        k = (size_t)(end - s) + 1;
    } else {
        *host = s;
        *hlen = (size_t)(colon - s);
        if (memchr(s, ':', *hlen)) return false; /* too many colons */
    }
    if (memchr(s + j, '[', n - j)) return false;
    if (memchr(s + k, ']', n - k)) return false;
    *port = colon + 1;
    *plen = n - (size_t)(colon + 1 - s);
    return true;
}

/* ---- NO_PROXY ----------------------------------------------------------- */

typedef struct {
    char name[256];    /* lowercased, trimmed */
    size_t len;
    bool has_ip, ip4;
    uint8_t ip[16];
    char port[8];
    size_t port_len;
} target_t;

/* Go's net.ParseCIDR: "ip/bits", bits as decimal digits; a dotted IPv4 address
 * makes an IPv4 range (32 bits), anything else an IPv6 one (128 bits). */
static bool parse_cidr(const char *p, size_t n, uint8_t net[16], bool *v4_form, unsigned *bits) {
    const char *slash = memchr(p, '/', n);
    bool is4;
    if (!slash || !parse_ip(p, (size_t)(slash - p), net, &is4, v4_form)) return false;
    const char *d = slash + 1;
    size_t dn = n - (size_t)(d - p);
    if (dn == 0 || dn > 3) return false;
    unsigned v = 0;
    for (size_t i = 0; i < dn; i++) {
        if (d[i] < '0' || d[i] > '9') return false;
        v = v * 10 + (unsigned)(d[i] - '0');
    }
    if (v > (*v4_form ? 32u : 128u)) return false;
    *bits = v;
    return true;
}

/* Go's IPNet.Contains: a host with a 4-byte form (IPv4, IPv4-mapped) only
 * ever falls in an IPv4 range, any other host only in an IPv6 one. */
static bool cidr_contains(const uint8_t net[16], bool v4_form, unsigned bits, const target_t *t) {
    if (!t->has_ip || v4_form != t->ip4) return false;
    const uint8_t *a = v4_form ? net + 12 : net, *b = v4_form ? t->ip + 12 : t->ip;
    for (unsigned i = 0; i < bits; i++) {
        unsigned byte = i / 8, mask = 0x80u >> (i % 8);
        if ((a[byte] & mask) != (b[byte] & mask)) return false;
    }
    return true;
}

static bool port_ok(const char *pport, size_t plen, const target_t *t) {
    return plen == 0 || (plen == t->port_len && memcmp(pport, t->port, plen) == 0);
}

/* One NO_PROXY entry, already trimmed and lowercased (Go's config.init + match). */
static bool entry_match(const char *p, size_t n, const target_t *t) {
    if (n == 1 && p[0] == '*') return true;
    uint8_t net[16];
    bool v4_form;
    unsigned bits;
    if (parse_cidr(p, n, net, &v4_form, &bits)) /* a valid range is only ever a range */
        return cidr_contains(net, v4_form, bits, t);
    const char *h, *pp;
    size_t hl, pl;
    if (split_host_port(p, n, &h, &hl, &pp, &pl)) {
        if (hl == 0) return false; /* ":80": malformed, ignored */
    } else {
        h = p;
        hl = n;
        pp = "";
        pl = 0;
    }
    uint8_t ip[16];
    bool is4;
    if (parse_ip(h, hl, ip, &is4, NULL)) /* an IP entry matches IP hosts only */
        return t->has_ip && memcmp(ip, t->ip, 16) == 0 && port_ok(pp, pl, t);
    /* Domains: "corp.com" = corp.com and below; ".corp.com" / "*.corp.com" = below only. */
    if (hl >= 2 && h[0] == '*' && h[1] == '.') {
        h++;
        hl--;
    }
    bool match_host = h[0] != '.';
    const char *bare = match_host ? h : h + 1; /* without the dot */
    size_t bl = match_host ? hl : hl - 1;
    bool hit = false;
    /* suffix ".bare" */
    if (t->len >= bl + 1 && t->name[t->len - bl - 1] == '.' && memcmp(t->name + t->len - bl, bare, bl) == 0)
        hit = true;
    if (match_host && t->len == bl && memcmp(t->name, bare, bl) == 0) hit = true;
    return hit && port_ok(pp, pl, t);
}

static bool target_init(target_t *t, const char *host, uint16_t port) {
    memset(t, 0, sizeof *t);
    while (*host && is_space(*host)) host++;
    size_t n = strlen(host);
    while (n > 0 && is_space(host[n - 1])) n--;
    if (n >= sizeof t->name) return false;
    for (size_t i = 0; i < n; i++) t->name[i] = lower(host[i]);
    t->len = n;
    t->has_ip = parse_ip(t->name, n, t->ip, &t->ip4, NULL);
    t->port_len = (size_t)snprintf(t->port, sizeof t->port, "%u", (unsigned)port);
    return true;
}

static bool list_match(const char *list, const target_t *t) {
    char e[512];
    const char *p = list;
    while (p && *p) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        const char *s = p;
        p = comma ? comma + 1 : NULL;
        while (n > 0 && is_space(*s)) { s++; n--; }
        while (n > 0 && is_space(s[n - 1])) n--;
        /* An entry this long cannot match a host name of at most 255 bytes. */
        if (n == 0 || n >= sizeof e) continue;
        for (size_t i = 0; i < n; i++) e[i] = lower(s[i]);
        if (entry_match(e, n, t)) return true;
    }
    return false;
}

bool proxy_no_proxy_match(const char *no_proxy, const char *host, uint16_t port) {
    target_t t;
    if (!no_proxy || !host || !target_init(&t, host, port)) return false;
    return list_match(no_proxy, &t);
}

/* ---- proxy URLs --------------------------------------------------------- */

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    c = lower(c);
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

/* Percent-decodes s[0..n) into out; -1 on a bad escape or overflow. */
static long pct_decode(const char *s, size_t n, char *out, size_t cap) {
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '%') {
            if (i + 2 >= n) return -1; /* needs two hex digits */
            int hi = hexval(s[i + 1]), lo = hexval(s[i + 2]);
            if (hi < 0 || lo < 0) return -1;
            c = (char)(hi * 16 + lo);
            i += 2;
        }
        if (o >= cap) return -1;
        out[o++] = c;
    }
    return (long)o;
}

static size_t base64(const uint8_t *in, size_t n, char *out, size_t cap) {
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t need = (n + 2) / 3 * 4;
    if (need + 1 > cap) return 0;
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < n) v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < n) v |= in[i + 2];
        out[o++] = tbl[(v >> 18) & 63];
        out[o++] = tbl[(v >> 12) & 63];
        out[o++] = i + 1 < n ? tbl[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < n ? tbl[v & 63] : '=';
    }
    out[o] = '\0';
    return o;
}

static bool host_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '-' ||
           c == '_';
}

#define FAIL(...)                                    \
    do {                                             \
        snprintf(err, errcap, __VA_ARGS__);          \
        explicit_bzero(out, sizeof *out);            \
        return -1;                                   \
    } while (0)

int proxy_url_parse(const char *value, const char *var, proxy_server *out, char *err, size_t errcap) {
    memset(out, 0, sizeof *out);
    if (!var || !*var) var = "the proxy URL";
    size_t vl = strnlen(var, sizeof out->var - 1);
    memcpy(out->var, var, vl);
    out->var[vl] = '\0';
    if (!value || !*value) FAIL("%s is empty: set it to http://host:port", var);
    for (const unsigned char *c = (const unsigned char *)value; *c; c++)
        if (*c <= 0x20 || *c == 0x7F)
            FAIL("%s contains a space or control character at byte %zu: set it to http://host:port", var,
                 (size_t)((const char *)c - value));
    const char *rest = value;
    const char *sep = strstr(value, "://");
    if (sep) {
        size_t sl = (size_t)(sep - value);
        if (sl == 4 && strncasecmp(value, "http", 4) == 0) {
            rest = sep + 3;
        } else {
            bool printable = sl > 0 && sl <= 16;
            for (size_t i = 0; printable && i < sl; i++) printable = host_char(value[i]) || value[i] == '+';
            if (sl == 5 && strncasecmp(value, "https", 5) == 0)
                FAIL("%s is an https:// proxy, which this plugin does not support: use the proxy's http:// address "
                     "(https:// backends are still tunnelled with CONNECT)",
                     var);
            FAIL("%s has the scheme \"%.*s\": only http:// proxies are supported (http://host:port)", var,
                 printable ? (int)sl : 1, printable ? value : "?");
        }
    }
    size_t alen = strcspn(rest, "/?#");
    const char *at = NULL;
    for (size_t i = alen; i > 0; i--)
        if (rest[i - 1] == '@') {
            at = rest + i - 1;
            break;
        }
    const char *hp = rest;
    if (at) {
        /* user[:password], %-escaped; turned into Proxy-Authorization: Basic. */
        size_t ulen = (size_t)(at - rest);
        if (ulen > 600) FAIL("%s has credentials longer than 600 bytes", var);
        const char *colon = memchr(rest, ':', ulen);
        char creds[1210];
        long u = pct_decode(rest, colon ? (size_t)(colon - rest) : ulen, creds, 600);
        long pw = 0;
        if (u >= 0 && colon) {
            creds[u] = ':';
            pw = pct_decode(colon + 1, ulen - (size_t)(colon + 1 - rest), creds + u + 1, 600);
        } else if (u >= 0) {
            creds[u] = ':'; /* Go sends "user:" when there is no password */
        }
        if (u < 0 || pw < 0) {
            explicit_bzero(creds, sizeof creds);
            FAIL("%s has a user name or password with an invalid %%-escape (the value is not shown: it holds a "
                 "password); escape special characters as %%XX",
                 var);
        }
        size_t clen = (size_t)u + 1 + (size_t)pw;
        memcpy(out->authorization, "Basic ", 6);
        size_t b = base64((const uint8_t *)creds, clen, out->authorization + 6, sizeof out->authorization - 6);
        explicit_bzero(creds, sizeof creds);
        if (b == 0) FAIL("%s has credentials that are too long", var);
        out->has_auth = true;
        hp = at + 1;
    }
    size_t hplen = alen - (size_t)(hp - rest);
    if (hplen == 0 || hp[0] == ':') FAIL("%s has no proxy host name: set it to http://host:port", var);
    const char *host = hp, *port = NULL;
    size_t hl;
    if (hp[0] == '[') {
        const char *close = memchr(hp, ']', hplen);
        if (!close) FAIL("%s has an unterminated IPv6 address (missing ']')", var);
        host = hp + 1;
        hl = (size_t)(close - host);
        size_t after = hplen - (size_t)(close + 1 - hp);
        if (after > 0) {
            if (close[1] != ':') FAIL("%s has unexpected characters after the IPv6 address", var);
            port = close + 2;
        }
        char tmp[64];
        if (hl == 0 || hl >= sizeof tmp) FAIL("%s has an invalid IPv6 address in brackets", var);
        memcpy(tmp, host, hl);
        tmp[hl] = '\0';
        uint8_t a6[16];
        if (inet_pton(AF_INET6, tmp, a6) != 1) FAIL("%s has an invalid IPv6 address in brackets", var);
    } else {
        const char *colon = memchr(hp, ':', hplen);
        hl = colon ? (size_t)(colon - hp) : hplen;
        if (colon) port = colon + 1;
        for (size_t i = 0; i < hl; i++)
            if (!host_char(host[i]))
                FAIL("%s has an invalid character in the proxy host name at byte %zu (a-z, 0-9, '.', '-')", var,
                     (size_t)(host + i - value));
    }
    if (hl >= sizeof out->host) FAIL("%s has a proxy host name longer than %zu bytes", var, sizeof out->host - 1);
    memcpy(out->host, host, hl);
    out->host[hl] = '\0';
    out->port = 80;
    if (port) {
        size_t pl = hplen - (size_t)(port - hp);
        if (pl > 0) { /* "host:" means the default port, as in Go */
            unsigned v = 0;
            bool ok = pl <= 5;
            for (size_t i = 0; ok && i < pl; i++) {
                ok = port[i] >= '0' && port[i] <= '9';
                v = v * 10 + (unsigned)(port[i] - '0');
            }
            if (!ok || v == 0 || v > 65535)
                FAIL("%s has an invalid proxy port: it must be a number from 1 to 65535", var);
            out->port = (uint16_t)v;
        }
    }
    return 0;
}

#undef FAIL

void proxy_describe(const proxy_server *p, char *out, size_t cap) {
    bool v6 = strchr(p->host, ':') != NULL;
    snprintf(out, cap, "http://%s%s%s:%u%s", v6 ? "[" : "", p->host, v6 ? "]" : "", (unsigned)p->port,
             p->has_auth ? " (with credentials)" : "");
}

/* ---- the decision ------------------------------------------------------- */

proxy_route proxy_for(proxy_getenv_fn env, void *env_arg, bool https, const char *host, uint16_t port,
                      proxy_server *out, char *err, size_t errcap) {
    memset(out, 0, sizeof *out);
    if (errcap) err[0] = '\0';
    const char *var = NULL;
    const char *value = https ? env_any(env, env_arg, "HTTPS_PROXY", "https_proxy", &var)
                              : env_any(env, env_arg, "HTTP_PROXY", "http_proxy", &var);
    if (!value) return PROXY_DIRECT;
    if (!https) {
        const char *rm = env(env_arg, "REQUEST_METHOD");
        if (rm && *rm) {
            snprintf(err, errcap,
                     "refusing to use %s: REQUEST_METHOD is set, so this looks like a CGI environment where a "
                     "client can set it (httpoxy; Go refuses too): unset REQUEST_METHOD or %s",
                     var, var);
            return PROXY_ERROR;
        }
    }
    target_t t;
    if (!host || !target_init(&t, host, port)) return PROXY_DIRECT; /* fetch_url never gives this */
    /* Never proxied (Go's rule): localhost and loopback addresses. */
    if (strcmp(t.name, "localhost") == 0) return PROXY_DIRECT;
    if (t.has_ip && is_loopback(t.ip, t.ip4)) return PROXY_DIRECT;
    const char *np_var = NULL;
    const char *np = env_any(env, env_arg, "NO_PROXY", "no_proxy", &np_var);
    if (np && list_match(np, &t)) return PROXY_DIRECT;
    if (proxy_url_parse(value, var, out, err, errcap) != 0) return PROXY_ERROR;
    return PROXY_VIA;
}

size_t proxy_connect_request(const proxy_server *p, const char *host, uint16_t port, char *out, size_t cap) {
    for (const char *c = host; *c; c++)
        if ((unsigned char)*c <= 0x20 || *c == 0x7F) return 0;
    if (!*host) return 0;
    bool v6 = strchr(host, ':') != NULL;
    char target[300];
    int tn = snprintf(target, sizeof target, "%s%s%s:%u", v6 ? "[" : "", host, v6 ? "]" : "", (unsigned)port);
    if (tn < 0 || (size_t)tn >= sizeof target) return 0;
    int n;
    if (p && p->has_auth)
        n = snprintf(out, cap, "CONNECT %s HTTP/1.1\r\nHost: %s\r\nProxy-Authorization: %s\r\n\r\n", target, target,
                     p->authorization);
    else
        n = snprintf(out, cap, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target);
    if (n < 0 || (size_t)n >= cap) {
        if (cap) explicit_bzero(out, cap);
        return 0;
    }
    return (size_t)n;
}

/* ---- the reply to CONNECT ----------------------------------------------- */

void proxy_reply_init(proxy_reply *r) {
    memset(r, 0, sizeof *r);
    r->in_status_line = true;
}

static proxy_reply_result malformed(proxy_reply *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static proxy_reply_result malformed(proxy_reply *r, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->error, sizeof r->error, fmt, ap);
    va_end(ap);
    r->result = PROXY_REPLY_MALFORMED;
    return r->result;
}

/* "HTTP/1.x SSS[ reason]" */
static bool parse_status_line(proxy_reply *r) {
    const char *s = r->status_line;
    size_t n = r->line_len;
    if (n < 12 || memcmp(s, "HTTP/1.", 7) != 0 || s[7] < '0' || s[7] > '9' || s[8] != ' ') return false;
    if (s[9] < '1' || s[9] > '5' || s[10] < '0' || s[10] > '9' || s[11] < '0' || s[11] > '9') return false;
    if (n > 12 && s[12] != ' ') return false;
    r->status = (s[9] - '0') * 100 + (s[10] - '0') * 10 + (s[11] - '0');
    size_t o = 0;
    for (size_t i = 13; i < n && o + 1 < sizeof r->reason; i++) {
        unsigned char c = (unsigned char)s[i];
        r->reason[o++] = c >= 0x20 && c < 0x7F ? (char)c : '?';
    }
    r->reason[o] = '\0';
    return true;
}

static proxy_reply_result end_of_line(proxy_reply *r) {
    if (r->in_status_line) {
        if (!parse_status_line(r)) {
            if (r->line_len == 0) return malformed(r, "the reply starts with an empty line instead of a status line");
            return malformed(r, "the reply does not start with an HTTP/1.x status line");
        }
        r->in_status_line = false;
    } else if (r->line_len == 0) {
        r->result = r->status >= 200 && r->status <= 299 ? PROXY_REPLY_ESTABLISHED : PROXY_REPLY_REFUSED;
        return r->result;
    } else if (!r->line_has_colon) {
        return malformed(r, "a header line of the reply has no ':'");
    }
    r->line_len = 0;
    r->line_has_colon = false;
    return PROXY_REPLY_MORE;
}

proxy_reply_result proxy_reply_feed(proxy_reply *r, const uint8_t *data, size_t len, size_t *consumed) {
    size_t i = 0;
    if (r->result != PROXY_REPLY_MORE) goto out;
    for (; i < len; i++) {
        unsigned char c = data[i];
        if (++r->total > PROXY_REPLY_MAX) {
            malformed(r, "the reply's status line and headers are longer than %d bytes", PROXY_REPLY_MAX);
            i++;
            goto out;
        }
        if (r->pending_cr) {
            r->pending_cr = false;
            if (c != '\n') {
                malformed(r, "the reply has a CR not followed by LF");
                i++;
                goto out;
            }
        }
        if (c == '\r') {
            r->pending_cr = true;
            continue;
        }
        if (c == '\n') {
            if (end_of_line(r) != PROXY_REPLY_MORE) {
                i++;
                goto out;
            }
            continue;
        }
        if ((c < 0x20 && c != '\t') || c == 0x7F) {
            if (r->total == 1 && c == 0x16)
                malformed(r, "the proxy answered with TLS (is it an https:// proxy? only http:// proxies are spoken)");
            else
                malformed(r, "the reply has a control character (0x%02X) at byte %zu", c, r->total - 1);
            i++;
            goto out;
        }
        if (r->in_status_line) {
            if (r->line_len + 1 >= sizeof r->status_line) {
                malformed(r, "the reply's status line is longer than %zu bytes", sizeof r->status_line - 1);
                i++;
                goto out;
            }
            r->status_line[r->line_len] = (char)c;
            r->status_line[r->line_len + 1] = '\0';
        } else {
            if (c == ':') r->line_has_colon = true;
            if (r->line_len == 0 && (c == ' ' || c == '\t')) r->line_has_colon = true; /* folded continuation */
        }
        r->line_len++;
    }
out:
    if (consumed) *consumed = i;
    return r->result;
}

void proxy_reply_message(const proxy_reply *r, const proxy_server *p, const char *host, uint16_t port, bool eof,
                         char *out, size_t cap) {
    char px[320];
    proxy_describe(p, px, sizeof px);
    bool v6 = strchr(host, ':') != NULL;
    char target[300];
    snprintf(target, sizeof target, "%s%s%s:%u", v6 ? "[" : "", host, v6 ? "]" : "", (unsigned)port);
    const char *var = p->var[0] ? p->var : "the proxy variable";
    switch (r->result) {
    case PROXY_REPLY_ESTABLISHED:
        snprintf(out, cap, "the proxy %s opened a tunnel to %s", px, target);
        return;
    case PROXY_REPLY_MALFORMED:
        snprintf(out, cap, "the proxy %s (%s) gave no valid answer to CONNECT %s: %s; check that %s is the address of "
                 "an HTTP proxy", px, var, target, r->error, var);
        return;
    case PROXY_REPLY_MORE:
        snprintf(out, cap, "the proxy %s (%s) closed the connection %s CONNECT %s", px, var,
                 eof ? "before it answered" : "while answering", target);
        return;
    case PROXY_REPLY_REFUSED:
        break;
    }
    int st = r->status;
    const char *why = r->reason[0] ? r->reason : "";
    if (st == 407 && p->has_auth)
        snprintf(out, cap, "the proxy %s refused the credentials in %s (407 %s): check the user name and password",
                 px, var, why);
    else if (st == 407)
        snprintf(out, cap, "the proxy %s requires authentication (407 %s): put user:password@ before the host in %s",
                 px, why, var);
    else if (st == 403 || st == 405)
        snprintf(out, cap, "the proxy %s does not allow a tunnel to %s (%d %s): ask its administrator, or add the "
                 "backend's host to NO_PROXY if it can be reached directly", px, target, st, why);
    else if (st == 502 || st == 503 || st == 504)
        snprintf(out, cap, "the proxy %s could not reach %s (%d %s): check the backend URL and that the backend is "
                 "reachable from the proxy", px, target, st, why);
    else
        snprintf(out, cap, "the proxy %s refused CONNECT %s with %d %s", px, target, st, why);
}
