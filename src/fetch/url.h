/*
 * url: the backend base URL of a data source, parsed once per instance.
 * Only what an HTTP/1.1 client needs: scheme, host, port, base path.
 */
#ifndef FETCH_URL_H
#define FETCH_URL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* What the Grafana user is told when a data source has no URL at all. */
#define FETCH_URL_MISSING                                                                                   \
    "no backend configured: set the URL of your in-house metrics backend in the data source settings (for " \
    "example http://metrics.internal:8080)"

typedef struct {
    bool tls;
    char host[256];      /* without brackets for IPv6 literals */
    uint16_t port;
    char base_path[1024];/* "" or "/prefix" (no trailing slash) */
} fetch_url;

/* Returns 0, or -1 with a message for the Grafana user (what is wrong and
 * how to fix it) in err. Credentials in the URL are refused without echo. */
int fetch_url_parse(const char *url, fetch_url *out, char *err, size_t errcap);

/* "host:port" for messages (IPv6 in brackets). */
void fetch_url_hostport(const fetch_url *u, char *out, size_t cap);

#endif
