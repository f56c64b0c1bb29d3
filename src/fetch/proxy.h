/*
 * proxy: whether a backend request goes through an HTTP proxy, decided from
 * the environment the way Go's net/http does it (golang.org/x/net/http/
 * httpproxy, what Grafana itself and Go data sources use), so the plugin
 * behaves like every other data source on the same Grafana server; and a
 * parser for the proxy's reply to CONNECT.
 *
 * Why pure functions with an env-lookup callback: the decision is made once
 * per data-source instance from whatever getenv says, and the tests drive it
 * with tables instead of the real environment. Nothing here does I/O; the
 * reply parser is fed bytes as the socket delivers them.
 *
 * Rules (Go's, in order):
 *   - the proxy for https:// URLs is HTTPS_PROXY (else https_proxy), for
 *     http:// URLs HTTP_PROXY (else http_proxy); an empty value counts as
 *     unset and falls through to the lowercase name; no proxy → direct;
 *   - under CGI (REQUEST_METHOD set) HTTP_PROXY is refused (httpoxy);
 *   - "localhost" and loopback IPs (127.0.0.0/8, ::1, ::ffff:127.x) are
 *     never proxied;
 *   - NO_PROXY (else no_proxy) is a comma list, entries trimmed and
 *     lowercased, empty ones skipped:
 *       "*"                 nothing is proxied
 *       "10.0.0.0/8", "fd00::/8"     CIDR ranges (IP hosts only)
 *       "10.1.2.3", "::1", "[::1]:80", "10.1.2.3:8080"   IP, optional port
 *       "corp.com"          corp.com and every name under it
 *       ".corp.com", "*.corp.com"   names under corp.com only
 *       "corp.com:8080"     the same, on that port only (ports compare as text)
 *     IPv4 hosts and IPv4-mapped IPv6 hosts are the same address; an IPv6
 *     CIDR never matches an IPv4 host (as in Go).
 * Where we differ from Go, on purpose:
 *   - a proxy value that cannot be used is an error naming the variable
 *     (Go silently goes direct); https:// and socks5:// proxies are refused
 *     as unsupported (only http:// proxies are spoken);
 *   - "localhost" is recognised in any letter case;
 *   - non-ASCII host names are compared as bytes (no IDNA/punycode).
 *
 * The proxy's credentials (user:password in the URL) become a
 * Proxy-Authorization: Basic value; no message or description produced here
 * ever contains them. A proxy_server holds that value: its owner wipes it
 * (explicit_bzero) when done, as proxy_url_parse does on every failure.
 */
#ifndef FETCH_PROXY_H
#define FETCH_PROXY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Returns the value of an environment variable or NULL. */
typedef const char *(*proxy_getenv_fn)(void *arg, const char *name);

/* A proxy_getenv_fn over the real environment (getenv). */
const char *proxy_real_getenv(void *arg, const char *name);

typedef struct {
    char var[16];           /* the variable it came from: "HTTPS_PROXY", "http_proxy", ... */
    char host[256];         /* without brackets for IPv6 literals */
    uint16_t port;          /* 80 when the URL has none (Go's default for http://) */
    bool has_auth;          /* the URL carried user[:password] */
    char authorization[1024]; /* "Basic <base64>" for Proxy-Authorization, "" without; SECRET */
} proxy_server;

typedef enum {
    PROXY_DIRECT = 0,       /* connect to the backend itself */
    PROXY_VIA,              /* through *out: absolute-form for http://, CONNECT for https:// */
    PROXY_ERROR             /* the environment names a proxy that cannot be used: err says why */
} proxy_route;

/* The decision for one backend (scheme, host as in the URL without brackets,
 * port). err gets an actionable message on PROXY_ERROR, never a credential. */
proxy_route proxy_for(proxy_getenv_fn env, void *env_arg, bool https, const char *host, uint16_t port,
                      proxy_server *out, char *err, size_t errcap);

/* Parses one proxy URL ("http://[user[:password]@]host[:port][/]", or
 * "host[:port]" meaning http://). var names the variable for messages.
 * Returns 0, or -1 with a message in err (the value is never echoed whole:
 * it may hold a password). */
int proxy_url_parse(const char *value, const char *var, proxy_server *out, char *err, size_t errcap);

/* True when NO_PROXY-style list no_proxy exempts host:port from proxying
 * (the localhost/loopback rule is not part of this: see proxy_for). */
bool proxy_no_proxy_match(const char *no_proxy, const char *host, uint16_t port);

/* "http://host:port" (IPv6 in brackets) plus " (with credentials)" when it
 * has some: safe for logs and messages. */
void proxy_describe(const proxy_server *p, char *out, size_t cap);

/* The CONNECT request for host:port: request line, Host, Proxy-Authorization
 * when the proxy has credentials, blank line. Returns its length, or 0 when
 * it does not fit in cap or host has CR/LF/NUL/space. */
size_t proxy_connect_request(const proxy_server *p, const char *host, uint16_t port, char *out, size_t cap);

/* ---- the proxy's reply to CONNECT ----------------------------------------
 * Status line and headers up to the blank line, fed in any pieces. Bytes
 * after the blank line belong to the tunnel: the feed stops there and says
 * how many bytes of the piece it took. Lines may end in CRLF or LF. */

#define PROXY_REPLY_MAX 8192 /* status line + headers; more is malformed */

typedef enum {
    PROXY_REPLY_MORE = 0,     /* all bytes taken; the head is not complete yet */
    PROXY_REPLY_ESTABLISHED,  /* 2xx: the tunnel is open; the rest of the piece is tunnel data */
    PROXY_REPLY_REFUSED,      /* another status: status and reason say which */
    PROXY_REPLY_MALFORMED     /* not an HTTP/1.x reply, or too long: error says why */
} proxy_reply_result;

typedef struct {
    proxy_reply_result result;
    int status;               /* once known */
    char reason[128];         /* reason phrase, unprintable bytes as '?' */
    char error[160];
    /* parser state */
    size_t total;             /* head bytes seen */
    size_t line_len;          /* bytes in the current line (CR excluded) */
    bool in_status_line;
    bool pending_cr;
    bool line_has_colon;
    char status_line[256];
} proxy_reply;

void proxy_reply_init(proxy_reply *r);

/* Feeds len bytes; *consumed (may be NULL) gets how many were part of the
 * head. Once the result is not MORE, later feeds take nothing and return it. */
proxy_reply_result proxy_reply_feed(proxy_reply *r, const uint8_t *data, size_t len, size_t *consumed);

/* An actionable sentence for a refused or malformed reply (or a tunnel cut
 * before the reply ended: pass eof = true with a MORE state), naming the
 * proxy and the target. */
void proxy_reply_message(const proxy_reply *r, const proxy_server *p, const char *host, uint16_t port, bool eof,
                         char *out, size_t cap);

#endif
