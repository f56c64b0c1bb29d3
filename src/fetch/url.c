#include "url.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

int fetch_url_parse(const char *url, fetch_url *out, char *err, size_t cap) {
    memset(out, 0, sizeof *out);
    if (!url || !*url) {
        snprintf(err, cap, "%s", FETCH_URL_MISSING);
        return -1;
    }
    const char *rest;
    if (strncasecmp(url, "http://", 7) == 0) { rest = url + 7; out->port = 80; }
    else if (strncasecmp(url, "https://", 8) == 0) { rest = url + 8; out->port = 443; out->tls = true; }
    else {
        snprintf(err, cap, "invalid URL \"%.200s\": it must start with http:// or https://", url);
        return -1;
    }
    for (const unsigned char *p = (const unsigned char *)url; *p; p++) {
        if (*p <= 0x20 || *p == 0x7F) {
            snprintf(err, cap, "invalid URL: it contains a space or control character at byte %zu",
                     (size_t)((const char *)p - url));
            return -1;
        }
    }
    size_t authority = strcspn(rest, "/?#");
    if (memchr(rest, '@', authority)) {
        snprintf(err, cap, "invalid URL: put credentials in the basic auth settings, not in the URL");
        return -1;
    }
    if (authority == 0 || rest[0] == ':') {
        snprintf(err, cap, "invalid URL \"%.200s\": it has no host name", url);
        return -1;
    }
    const char *host = rest, *colon = NULL;
    size_t host_len;
    if (rest[0] == '[') {
        const char *close = memchr(rest, ']', authority);
        if (!close) {
            snprintf(err, cap, "invalid URL \"%.200s\": unterminated IPv6 address", url);
            return -1;
        }
        host = rest + 1;
        host_len = (size_t)(close - host);
        if ((size_t)(close + 1 - rest) < authority) {
            colon = close + 1;
            if (*colon != ':') {
                snprintf(err, cap, "invalid URL \"%.200s\": unexpected characters after the host", url);
                return -1;
            }
        }
    } else {
        colon = memchr(rest, ':', authority);
        host_len = colon ? (size_t)(colon - rest) : authority;
    }
    if (host_len == 0 || host_len >= sizeof out->host) {
        snprintf(err, cap, "invalid URL \"%.200s\": the host name is empty or too long", url);
        return -1;
    }
    memcpy(out->host, host, host_len);
    if (colon) {
        size_t plen = authority - (size_t)(colon + 1 - rest);
        unsigned port = 0;
        bool ok = plen > 0 && plen <= 5;
        for (size_t i = 0; ok && i < plen; i++) {
            char ch = colon[1 + i];
            ok = ch >= '0' && ch <= '9';
            port = port * 10 + (unsigned)(ch - '0');
        }
        if (!ok || port == 0 || port > 65535) {
            snprintf(err, cap, "invalid URL \"%.200s\": the port must be a number from 1 to 65535", url);
            return -1;
        }
        out->port = (uint16_t)port;
    }
    const char *path = rest + authority;
    size_t path_len = strcspn(path, "?#");
    while (path_len > 0 && path[path_len - 1] == '/') path_len--;
    if (path[strcspn(path, "?#")] != '\0') {
        snprintf(err, cap, "invalid URL \"%.200s\": remove the query string or fragment; endpoints are appended to the path", url);
        return -1;
    }
    if (path_len >= sizeof out->base_path) {
        snprintf(err, cap, "invalid URL: the path is longer than %zu bytes", sizeof out->base_path - 1);
        return -1;
    }
    memcpy(out->base_path, path, path_len);
    return 0;
}

void fetch_url_hostport(const fetch_url *u, char *out, size_t cap) {
    if (strchr(u->host, ':')) snprintf(out, cap, "[%s]:%u", u->host, u->port);
    else snprintf(out, cap, "%s:%u", u->host, u->port);
}
