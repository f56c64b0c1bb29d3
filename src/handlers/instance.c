#include "instance.h"

#include <ctype.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../fetch/proxy.h"
#include "../fetch/tls.h"
#include "../log/hclog.h"
#include "../util/buf.h"

void inst_cache_init(inst_cache *c, uv_loop_t *loop, const char *user_agent) {
    memset(c, 0, sizeof *c);
    c->loop = loop;
    c->user_agent = user_agent;
}

static void inst_free(inst_t *in) {
    for (size_t i = 0; i < in->nheaders; i++) {
        free((char *)in->headers[i].name);
        /* Secrets: wipe before freeing. */
        size_t n = strlen(in->headers[i].value);
        memset((char *)in->headers[i].value, 0, n);
        free((char *)in->headers[i].value);
    }
    free(in->headers);
    tls_ctx_free(in->tls);
    if (in->pool) fetch_pool_release(in->pool);
    free(in->key);
    free(in->config_fingerprint);
    free(in->url);
    free(in->problem);
    free(in);
}

const char *inst_problem(const inst_t *in) {
    return in ? in->problem : FETCH_URL_MISSING;
}

const char *inst_tls_hint(fetch_error err) {
    switch (err) {
    case FETCH_E_TLS_UNKNOWN_CA:
        return "set the CA certificate or enable skip-verify (tlsAuthWithCACert with tlsCACert: the PEM of the CA "
               "that signed the backend's certificate; or tlsSkipVerify)";
    case FETCH_E_TLS_NAME:
        return "set serverName to a name the certificate is issued for, or use that name in the URL";
    case FETCH_E_TLS_EXPIRED:
        return "renew the backend's certificate (or check the clocks of both machines)";
    case FETCH_E_TLS_CLIENT_CERT:
        return "the backend wants a client certificate signed by a CA it trusts: enable tlsAuth and set tlsClientCert "
               "and tlsClientKey";
    default: return NULL;
    }
}

void inst_release(inst_t *in) {
    if (in && --in->refs == 0) inst_free(in);
}

void inst_cache_clear(inst_cache *c) {
    while (c->head) {
        inst_t *in = c->head;
        c->head = in->next;
        inst_release(in);
    }
}

static char *fingerprint(const Pluginv2__PluginContext *ctx) {
    /* Grafana sends the map in no particular order: sort the keys. */
    size_t n = ctx->n_grafanaconfig;
    const Pluginv2__PluginContext__GrafanaConfigEntry **e = malloc((n ? n : 1) * sizeof *e);
    if (!e) return NULL;
    for (size_t i = 0; i < n; i++) e[i] = ctx->grafanaconfig[i];
    for (size_t i = 1; i < n; i++)
        for (size_t j = i; j > 0 && strcmp(e[j - 1]->key, e[j]->key) > 0; j--) {
            const Pluginv2__PluginContext__GrafanaConfigEntry *t = e[j];
            e[j] = e[j - 1];
            e[j - 1] = t;
        }
    buf_t b;
    buf_init(&b);
    for (size_t i = 0; i < n; i++) buf_printf(&b, "%s=%s\n", e[i]->key, e[i]->value ? e[i]->value : "");
    buf_append(&b, "", 0);
    free(e);
    if (!buf_ok(&b)) { buf_free(&b); return NULL; }
    return b.data;
}

static const char *secure_value(const Pluginv2__DataSourceInstanceSettings *ds, const char *key) {
    for (size_t i = 0; i < ds->n_decryptedsecurejsondata; i++)
        if (!strcmp(ds->decryptedsecurejsondata[i]->key, key)) return ds->decryptedsecurejsondata[i]->value;
    return NULL;
}

static const char *config_value(const Pluginv2__PluginContext *ctx, const char *key) {
    for (size_t i = 0; i < ctx->n_grafanaconfig; i++)
        if (!strcmp(ctx->grafanaconfig[i]->key, key)) return ctx->grafanaconfig[i]->value;
    return NULL;
}

/* A positive integer setting given as a JSON number or numeric string. */
static int json_uint(json_t *obj, const char *key, uint64_t *out, char *problem, size_t cap) {
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) return 0;
    double d = -1;
    if (json_is_integer(v)) d = (double)json_integer_value(v);
    else if (json_is_real(v)) d = json_real_value(v);
    else if (json_is_string(v) && *json_string_value(v)) {
        char *end;
        d = strtod(json_string_value(v), &end);
        if (*end) d = -1;
    }
    if (d < 0 || d > 1e15) {
        snprintf(problem, cap, "setting %s must be a positive number", key);
        return -1;
    }
    *out = (uint64_t)d;
    return 0;
}

static int add_header(inst_t *in, const char *name, const char *value) {
    fetch_header *nh = realloc(in->headers, (in->nheaders + 1) * sizeof *nh);
    if (!nh) return -1;
    in->headers = nh;
    char *n = strdup(name), *v = strdup(value);
    if (!n || !v) { free(n); free(v); return -1; }
    in->headers[in->nheaders++] = (fetch_header){n, v};
    return 0;
}

static void base64(const char *in, size_t n, buf_t *out) {
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)(unsigned char)in[i] << 16;
        if (i + 1 < n) v |= (uint32_t)(unsigned char)in[i + 1] << 8;
        if (i + 2 < n) v |= (unsigned char)in[i + 2];
        char q[4] = {tbl[(v >> 18) & 63], tbl[(v >> 12) & 63], i + 1 < n ? tbl[(v >> 6) & 63] : '=',
                     i + 2 < n ? tbl[v & 63] : '='};
        buf_append(out, q, 4);
    }
}

/* The URL with any user:password written into it replaced by "xxxxx" (as
 * Go's url.Redacted does for the password). A URL with credentials is refused
 * anyway, so only messages and health details ever see this copy: the
 * refusal quotes some URLs, and CheckHealth details echo it. */
static char *url_redacted(const char *url) {
    const char *sep = strstr(url, "://");
    const char *auth = sep ? sep + 3 : url;
    size_t alen = strcspn(auth, "/?#");
    const char *at = NULL;
    for (size_t i = alen; i > 0; i--)
        if (auth[i - 1] == '@') { at = auth + i - 1; break; }
    if (!at) return strdup(url);
    size_t head = (size_t)(auth - url), tail = strlen(at);
    char *out = malloc(head + 5 + tail + 1);
    if (!out) return NULL;
    memcpy(out, url, head);
    memcpy(out + head, "xxxxx", 5);
    memcpy(out + head + 5, at, tail + 1);
    return out;
}

/* Grafana's TLS settings, for https:// URLs only. Builds the context unless
 * build is false (no network: only the settings are checked). Messages name
 * the setting, never its content. */
static int parse_tls(inst_t *in, const Pluginv2__DataSourceInstanceSettings *ds, json_t *jd, bool build,
                     char *problem, size_t cap) {
    bool skip = json_is_true(json_object_get(jd, "tlsSkipVerify"));
    bool with_ca = json_is_true(json_object_get(jd, "tlsAuthWithCACert"));
    bool client_auth = json_is_true(json_object_get(jd, "tlsAuth"));
    json_t *sn = json_object_get(jd, "serverName");
    const char *server_name = json_is_string(sn) ? json_string_value(sn) : "";
    if (sn && !json_is_null(sn) && !json_is_string(sn)) {
        snprintf(problem, cap, "setting serverName must be a host name (a string)");
        return -1;
    }
    for (const unsigned char *p = (const unsigned char *)server_name; *p; p++)
        if (*p <= 0x20 || *p >= 0x7F || *p == '/' || *p == '@') {
            snprintf(problem, cap, "setting serverName must be a plain host name (no spaces, slashes or ports)");
            return -1;
        }
    if (strlen(server_name) > 253) {
        snprintf(problem, cap, "setting serverName is longer than a host name can be (253 characters)");
        return -1;
    }
    const char *ca = with_ca && !skip ? secure_value(ds, "tlsCACert") : NULL;
    const char *cert = client_auth ? secure_value(ds, "tlsClientCert") : NULL;
    const char *key = client_auth ? secure_value(ds, "tlsClientKey") : NULL;
    if (with_ca && !skip && (!ca || !*ca)) {
        snprintf(problem, cap,
                 "tlsAuthWithCACert is enabled but tlsCACert is empty: paste the PEM of the CA that signed the "
                 "backend's certificate, or turn tlsAuthWithCACert off");
        return -1;
    }
    if (client_auth && (!cert || !*cert || !key || !*key)) {
        snprintf(problem, cap, "tlsAuth is enabled but %s empty: set both the client certificate and its key (PEM)",
                 (!cert || !*cert) && (!key || !*key) ? "tlsClientCert and tlsClientKey are"
                 : (!cert || !*cert)                  ? "tlsClientCert is"
                                                      : "tlsClientKey is");
        return -1;
    }
    if (!build) return 0;
    tls_client_config cfg = {.skip_verify = skip, .ca_pem = ca, .cert_pem = cert, .key_pem = key,
                             .server_name = server_name};
    tls_input bad;
    char err[256];
    in->tls = tls_ctx_client(&cfg, &bad, err, sizeof err);
    if (in->tls) return 0;
    snprintf(problem, cap, "%s %s: %s",
             bad == TLS_IN_CA     ? "tlsCACert (the CA certificate)"
             : bad == TLS_IN_CERT ? "tlsClientCert (the client certificate)"
             : bad == TLS_IN_KEY  ? "tlsClientKey (the client key)"
                                  : "the TLS settings",
             bad == TLS_IN_OTHER ? "cannot be used" : "is unusable", err);
    return -1;
}

/* Parses settings; on a problem, records it (the instance still exists so
 * every query and the health check can say what is wrong). */
static void parse_settings(inst_t *in, const Pluginv2__PluginContext *ctx, bool build_tls) {
    const Pluginv2__DataSourceInstanceSettings *ds = ctx->datasourceinstancesettings;
    char problem[512] = "";
    in->timeout_ms = INST_DEFAULT_TIMEOUT_MS;
    in->max_concurrent = INST_DEFAULT_MAX_CONCURRENT;
    in->max_connections = INST_DEFAULT_MAX_CONNECTIONS;
    in->max_response_bytes = INST_DEFAULT_MAX_RESPONSE_BYTES;
    in->url = url_redacted(ds->url ? ds->url : "");
    if (fetch_url_parse(in->url ? in->url : "", &in->parsed_url, problem, sizeof problem) != 0) goto done;

    json_t *jd = NULL;
    if (ds->jsondata.len) {
        json_error_t jerr;
        jd = json_loadb((const char *)ds->jsondata.data, ds->jsondata.len, 0, &jerr);
        if (!jd || !json_is_object(jd)) {
            snprintf(problem, sizeof problem, "the data source's JSON settings are not a JSON object: %s",
                     jd ? "wrong type" : jerr.text);
            json_decref(jd);
            goto done;
        }
    }
    uint64_t v;
    v = in->timeout_ms / 1000;
    if (json_uint(jd, "timeout", &v, problem, sizeof problem) != 0) goto json_done;
    if (v) in->timeout_ms = v * 1000;
    v = in->max_concurrent;
    if (json_uint(jd, "maxConcurrentQueries", &v, problem, sizeof problem) != 0) goto json_done;
    if (v) in->max_concurrent = (size_t)v;
    v = in->max_connections;
    if (json_uint(jd, "maxConnections", &v, problem, sizeof problem) != 0) goto json_done;
    if (v) in->max_connections = (size_t)v;
    v = in->max_response_bytes;
    if (json_uint(jd, "maxResponseBytes", &v, problem, sizeof problem) != 0) goto json_done;
    if (v) in->max_response_bytes = (size_t)v;
    const char *limit = config_value(ctx, "GF_RESPONSE_LIMIT");
    if (limit && *limit) {
        char *end;
        unsigned long long l = strtoull(limit, &end, 10);
        if (!*end && l > 0 && l < in->max_response_bytes) {
            in->max_response_bytes = (size_t)l;
            in->response_limit_from_grafana = true;
        }
    }
    in->oauth_pass_thru = json_is_true(json_object_get(jd, "oauthPassThru"));
    if (ds->basicauthenabled) {
        const char *pw = secure_value(ds, "basicAuthPassword");
        buf_t cred, hdr;
        buf_init(&cred);
        buf_init(&hdr);
        buf_printf(&cred, "%s:%s", ds->basicauthuser ? ds->basicauthuser : "", pw ? pw : "");
        buf_puts(&hdr, "Basic ");
        base64(cred.data ? cred.data : "", cred.len, &hdr);
        if (cred.data) memset(cred.data, 0, cred.len);
        buf_free(&cred);
        int r = buf_ok(&hdr) ? add_header(in, "Authorization", hdr.data) : -1;
        if (hdr.data) memset(hdr.data, 0, hdr.len);
        buf_free(&hdr);
        if (r != 0) { snprintf(problem, sizeof problem, "out of memory"); goto json_done; }
    }
    for (int i = 1; i < 1000; i++) {
        char key[40];
        snprintf(key, sizeof key, "httpHeaderName%d", i);
        json_t *name = json_object_get(jd, key);
        if (!name) break;
        const char *n = json_string_value(name);
        snprintf(key, sizeof key, "httpHeaderValue%d", i);
        const char *val = secure_value(ds, key);
        if (!n || !*n) continue;
        if (!fetch_header_ok(n, val ? val : "")) {
            /* Never echo the value: it is a secret. */
            snprintf(problem, sizeof problem,
                     "custom header %d (%.60s) has an invalid name or a value with line breaks or control characters",
                     i, fetch_header_ok(n, "") ? n : "invalid name");
            goto json_done;
        }
        if (add_header(in, n, val ? val : "") != 0) { snprintf(problem, sizeof problem, "out of memory"); goto json_done; }
    }
    if (in->parsed_url.tls && parse_tls(in, ds, jd, build_tls, problem, sizeof problem) != 0) goto json_done;
json_done:
    json_decref(jd);
done:
    if (problem[0]) in->problem = strdup(problem);
}

static bool instance_current(const inst_t *in, const Pluginv2__PluginContext *ctx, const char *fp) {
    return in->last_updated_ms == ctx->datasourceinstancesettings->lastupdatedms &&
           strcmp(in->config_fingerprint, fp) == 0;
}

inst_t *inst_get(inst_cache *c, const Pluginv2__PluginContext *ctx) {
    if (!ctx || !ctx->datasourceinstancesettings) return NULL;
    const Pluginv2__DataSourceInstanceSettings *ds = ctx->datasourceinstancesettings;
    char key[96];
    if (ds->uid && *ds->uid) snprintf(key, sizeof key, "uid:%.80s", ds->uid);
    else snprintf(key, sizeof key, "id:%lld", (long long)ds->id);
    char *fp = fingerprint(ctx);
    if (!fp) return NULL;
    inst_t **pp = &c->head;
    for (; *pp; pp = &(*pp)->next) {
        if (strcmp((*pp)->key, key) != 0) continue;
        if (instance_current(*pp, ctx, fp)) {
            free(fp);
            (*pp)->refs++;
            return *pp;
        }
        /* Settings changed: unlink; in-flight calls keep the old one alive. */
        inst_t *old = *pp;
        *pp = old->next;
        c->rebuilt++;
        LOG_INFO("data source settings changed; rebuilding its instance", HKV_S("dataSource", key));
        inst_release(old);
        break;
    }
    inst_t *in = calloc(1, sizeof *in);
    if (!in) { free(fp); return NULL; }
    in->key = strdup(key);
    in->config_fingerprint = fp;
    in->last_updated_ms = ds->lastupdatedms;
    parse_settings(in, ctx, !c->offline);
    if (!in->key) { inst_free(in); return NULL; }
    if (c->offline && !in->problem) in->problem = strdup("network access is disabled in this process");
    /* HTTP_PROXY / HTTPS_PROXY / NO_PROXY, decided once per instance as Go's
     * net/http does (proxy.h); an unusable value is the instance's problem
     * (the message names the variable, never its credentials). */
    proxy_server px;
    proxy_route route = PROXY_DIRECT;
    if (!in->problem) {
        char perr[512];
        route = proxy_for(proxy_real_getenv, NULL, in->parsed_url.tls, in->parsed_url.host, in->parsed_url.port, &px,
                          perr, sizeof perr);
        if (route == PROXY_ERROR) {
            in->problem = strdup(perr);
            if (!in->problem) { inst_free(in); return NULL; }
        } else if (route == PROXY_VIA) {
            char d[340];
            proxy_describe(&px, d, sizeof d); /* never the authorization */
            LOG_DEBUG("data source requests go through a proxy", HKV_S("dataSource", key), HKV_S("proxy", d),
                      HKV_S("from", px.var));
        }
    }
    if (!in->problem) {
        fetch_limits lim = {.connect_timeout_ms = in->timeout_ms < 10000 ? in->timeout_ms : 10000,
                            .idle_timeout_ms = 60000,
                            .max_connections = in->max_connections,
                            .max_response_bytes = in->max_response_bytes,
                            .user_agent = c->user_agent,
                            .tls = in->tls,
                            .proxy = route == PROXY_VIA ? &px : NULL};
        in->tls = NULL; /* the pool owns it now, even if it fails */
        in->pool = fetch_pool_new(c->loop, &in->parsed_url, &lim);
        explicit_bzero(&px, sizeof px); /* the pool has its own copy */
        if (!in->pool) { inst_free(in); return NULL; }
    }
    in->refs = 2; /* the cache's and the caller's */
    in->next = c->head;
    c->head = in;
    c->created++;
    LOG_DEBUG("data source instance created", HKV_S("dataSource", key),
              HKV_S("problem", in->problem ? in->problem : ""));
    return in;
}
