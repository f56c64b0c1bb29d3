#include "settings.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

const char *settings_url(const Pluginv2__PluginContext *ctx) {
    if (!ctx || !ctx->datasourceinstancesettings || !ctx->datasourceinstancesettings->url) return "";
    return ctx->datasourceinstancesettings->url;
}

int settings_check_url(const char *url, char *msg, size_t cap) {
    if (!url || !*url) {
        snprintf(msg, cap,
                 "no backend configured: set the URL of your in-house metrics backend in the data source "
                 "settings (for example http://metrics.internal:8080)");
        return -1;
    }
    const char *rest;
    if (strncasecmp(url, "http://", 7) == 0) rest = url + 7;
    else if (strncasecmp(url, "https://", 8) == 0) rest = url + 8;
    else {
        snprintf(msg, cap, "invalid URL \"%.200s\": it must start with http:// or https://", url);
        return -1;
    }
    for (const unsigned char *p = (const unsigned char *)url; *p; p++) {
        if (*p <= 0x20 || *p == 0x7F) {
            snprintf(msg, cap, "invalid URL: it contains a space or control character at byte %zu",
                     (size_t)((const char *)p - url));
            return -1;
        }
    }
    size_t host_len = strcspn(rest, "/?#");
    const char *at = memchr(rest, '@', host_len);
    if (at) {
        snprintf(msg, cap, "invalid URL: put credentials in the basic auth settings, not in the URL");
        return -1;
    }
    if (host_len == 0 || rest[0] == ':') {
        snprintf(msg, cap, "invalid URL \"%.200s\": it has no host name", url);
        return -1;
    }
    const char *colon = NULL;
    if (rest[0] == '[') {
        const char *close = memchr(rest, ']', host_len);
        if (!close) {
            snprintf(msg, cap, "invalid URL \"%.200s\": unterminated IPv6 address", url);
            return -1;
        }
        if ((size_t)(close + 1 - rest) < host_len) colon = close + 1;
    } else {
        colon = memchr(rest, ':', host_len);
    }
    if (colon) {
        if (*colon != ':') {
            snprintf(msg, cap, "invalid URL \"%.200s\": unexpected characters after the host", url);
            return -1;
        }
        size_t plen = host_len - (size_t)(colon + 1 - rest);
        unsigned port = 0;
        if (plen == 0 || plen > 5) port = 0;
        else
            for (size_t i = 0; i < plen; i++) {
                char ch = colon[1 + i];
                if (ch < '0' || ch > '9') { port = 0; break; }
                port = port * 10 + (unsigned)(ch - '0');
            }
        if (port == 0 || port > 65535) {
            snprintf(msg, cap, "invalid URL \"%.200s\": the port must be a number from 1 to 65535", url);
            return -1;
        }
    }
    return 0;
}
