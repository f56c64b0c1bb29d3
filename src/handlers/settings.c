#include "settings.h"

#include "../fetch/url.h"

#include <stdio.h>
#include <string.h>

const char *settings_url(const Pluginv2__PluginContext *ctx) {
    if (!ctx || !ctx->datasourceinstancesettings || !ctx->datasourceinstancesettings->url) return "";
    return ctx->datasourceinstancesettings->url;
}

int settings_check_url(const char *url, char *msg, size_t cap) {
    fetch_url parsed;
    return fetch_url_parse(url, &parsed, msg, cap);
}
