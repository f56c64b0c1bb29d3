/*
 * instance: one data source's parsed settings and its backend connection
 * pool, cached per data source (uid, else id) and rebuilt when Grafana says
 * the settings changed (lastUpdatedMS or grafanaConfig). Reference-counted:
 * the cache holds one reference, every call using it another, so a rebuilt
 * instance is freed only after its last in-flight call ends.
 *
 * Secrets (basic auth password, secure header values) are kept only in the
 * ready-to-send header values; nothing here logs them. TLS material
 * (tlsCACert, tlsClientCert, tlsClientKey) goes straight into the pool's TLS
 * context and is never copied or quoted.
 */
#ifndef INSTANCE_H
#define INSTANCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "../fetch/fetch.h"
#include "pluginv2.pb-c.h"

#define INST_DEFAULT_TIMEOUT_MS 30000
#define INST_DEFAULT_MAX_CONCURRENT 16
#define INST_DEFAULT_MAX_CONNECTIONS 64
#define INST_DEFAULT_MAX_RESPONSE_BYTES (64u << 20)

typedef struct inst {
    char *key;
    int64_t last_updated_ms;
    char *config_fingerprint;  /* grafanaConfig, canonical */
    int refs;
    struct inst *next;         /* cache list */
    /* settings */
    char *url;
    fetch_url parsed_url;
    char *problem;             /* non-NULL: the settings are unusable, and why */
    uint64_t timeout_ms;
    size_t max_concurrent;
    size_t max_connections;
    size_t max_response_bytes;
    bool response_limit_from_grafana; /* GF_RESPONSE_LIMIT set the limit */
    bool oauth_pass_thru;
    fetch_header *headers;     /* Authorization (basic) + custom headers */
    size_t nheaders;
    struct tls_ctx *tls;       /* https: built from the TLS settings until the pool takes it */
    fetch_pool *pool;
} inst_t;

typedef struct {
    uv_loop_t *loop;
    inst_t *head;
    const char *user_agent;
    uint64_t created, rebuilt;
    bool offline;  /* fuzzing: never open a connection; instances report why */
} inst_cache;

void inst_cache_init(inst_cache *c, uv_loop_t *loop, const char *user_agent);
/* Drops every cached instance (in-flight calls keep theirs alive). */
void inst_cache_clear(inst_cache *c);

/* The instance for this context, created or rebuilt as needed; NULL only
 * when out of memory or there are no data source settings. Release with
 * inst_release. A usable-but-misconfigured instance has `problem` set. */
inst_t *inst_get(inst_cache *c, const Pluginv2__PluginContext *ctx);
void inst_release(inst_t *in);

/* Why queries cannot run on this instance (NULL when they can); a missing
 * instance means Grafana sent no data source settings at all. */
const char *inst_problem(const inst_t *in);

/* Which settings fix a TLS failure (NULL for other errors), to follow the
 * fetch message: "set the CA certificate or enable skip-verify", ... */
const char *inst_tls_hint(fetch_error err);

#endif
