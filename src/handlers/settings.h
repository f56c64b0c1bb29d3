/*
 * settings: reading a data source's configuration out of the PluginContext.
 * Grows into the per-data-source instance cache with the backend client.
 */
#ifndef SETTINGS_H
#define SETTINGS_H

#include <stddef.h>

#include "pluginv2.pb-c.h"

/* The configured backend URL ("" when none or no data source settings). */
const char *settings_url(const Pluginv2__PluginContext *ctx);

/* Checks a backend URL; returns 0 when usable, else -1 with a message for
 * the Grafana user in msg (what is wrong and how to fix it). */
int settings_check_url(const char *url, char *msg, size_t cap);

#endif
