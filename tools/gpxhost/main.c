/*
 * gpxhost: a command-line host for the plugin. It spawns the binary exactly
 * as Grafana does (go-plugin's environment and handshake), connects over the
 * announced socket with h2c, makes one gRPC call (health, query, resource or
 * metrics) with our own protobuf-c code, prints the answer, and always ends
 * with /plugin.GRPCController/Shutdown, waiting up to 2 s for the process to
 * exit before SIGKILL, like go-plugin's Kill().
 *
 * Exit status: 0 everything succeeded, 1 a call/health/query failed (or the
 * plugin did not stop cleanly), 2 usage error, 3 the plugin could not be
 * spawned, handshaked or connected to.
 */
#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "grpcclient.h"
#include "h2/grpc_wire.h"
#include "pluginproc.h"
#include "pluginv2.pb-c.h"
#include "render.h"
#include "timeexpr.h"
#include "util/buf.h"

#ifndef PLUGIN_VERSION
#define PLUGIN_VERSION "0.0.0"
#endif
#define PLUGIN_ID "seed-inhouse-datasource"
#define EXECUTABLE "gpx_inhouse"
#define SHUTDOWN_WAIT_MS 2000
#define SHUTDOWN_CALL_TIMEOUT_MS 2000

enum { EXIT_OK = 0, EXIT_FAILED = 1, EXIT_USAGE = 2, EXIT_PLUGIN = 3, EXIT_INTERRUPTED = 130 };

typedef enum { CMD_NONE = 0, CMD_HEALTH = 1, CMD_QUERY = 2, CMD_RESOURCE = 4, CMD_METRICS = 8 } command;
#define CMD_ALL (CMD_HEALTH | CMD_QUERY | CMD_RESOURCE | CMD_METRICS)
#define CMD_DS (CMD_HEALTH | CMD_QUERY | CMD_RESOURCE)

typedef struct {
    char *key;
    const char *value;
} kv;

typedef struct {
    command cmd;
    const char *plugin;
    int64_t timeout_ms, start_timeout_ms;
    bool verbose, json;
    const char *url, *json_data, *basic_auth;
    kv *secure;
    size_t nsecure;
    const char **targets;
    size_t ntargets;
    const char *from, *to, *interval, *payload;
    int64_t max_data_points;
    const char *path, *body, *method;
} opts_t;

/* ---- usage ------------------------------------------------------------------ */

static void usage(FILE *f) {
    fprintf(f,
            "usage: gpxhost <command> [flags]\n"
            "\n"
            "Spawns the plugin as Grafana does, calls it over gRPC, prints the answer, shuts it down.\n"
            "\n"
            "commands:\n"
            "  health    --url URL [data source flags]                 CheckHealth\n"
            "  query     --url URL --target T [--target T2 ...] [query flags]   QueryData\n"
            "  resource  --url URL --path P [--body JSON] [--method M]  CallResource\n"
            "  metrics                                                 CollectMetrics\n"
            "\n"
            "common flags:\n"
            "  --plugin PATH          plugin binary (default dist/" EXECUTABLE "_linux_<arch>)\n"
            "  --timeout DUR          gRPC deadline of the call (default 30s; 0 = none)\n"
            "  --start-timeout DUR    wait this long for the handshake line (default 60s)\n"
            "  -v, --verbose          show every plugin log line, not only errors\n"
            "  -h, --help             this text\n"
            "data source flags (health, query, resource):\n"
            "  --url URL              the backend's base URL (required)\n"
            "  --json-data JSON       the data source's jsonData object, e.g. '{\"timeout\":10}'\n"
            "  --secure KEY=VALUE     one decryptedSecureJsonData entry (repeatable)\n"
            "  --basic-auth USER:PASS basic authentication\n"
            "query flags:\n"
            "  --target T             one query (refIds A, B, C ... in order; repeatable)\n"
            "  --from TIME, --to TIME now, now-1h, epoch ms or ISO-8601 (default now-1h .. now)\n"
            "  --interval DUR         intervalMs of every query (default: range / max data points, rounded)\n"
            "  --max-data-points N    default 1000\n"
            "  --payload JSON         the payload of every query\n"
            "  --json                 print the response as JSON instead of tables\n"
            "resource flags:\n"
            "  --path P               resource path, e.g. metrics (required)\n"
            "  --body JSON            request body\n"
            "  --method M             HTTP method (default POST)\n"
            "\n"
            "durations: 500ms, 30s, 5m, 1h, 1d (a plain number is seconds)\n"
            "exit status: 0 success, 1 a call or query failed, 2 usage error, 3 plugin could not be started\n");
}

static int usage_error(const char *fmt, const char *arg) {
    fprintf(stderr, "gpxhost: ");
    fprintf(stderr, fmt, arg ? arg : "");
    fprintf(stderr, "\n(see gpxhost --help)\n");
    return EXIT_USAGE;
}

/* ---- argument parsing ----------------------------------------------------------- */

enum {
    OPT_PLUGIN, OPT_TIMEOUT, OPT_START_TIMEOUT, OPT_VERBOSE, OPT_HELP, OPT_URL, OPT_JSON_DATA, OPT_SECURE, OPT_BASIC_AUTH,
    OPT_TARGET, OPT_FROM, OPT_TO, OPT_INTERVAL, OPT_MAX_DP, OPT_PAYLOAD, OPT_JSON, OPT_PATH, OPT_BODY, OPT_METHOD
};

static const struct {
    const char *name;
    int id;
    bool arg;
    unsigned cmds;
} optdefs[] = {
    {"--plugin", OPT_PLUGIN, true, CMD_ALL},           {"--timeout", OPT_TIMEOUT, true, CMD_ALL},
    {"--start-timeout", OPT_START_TIMEOUT, true, CMD_ALL}, {"--verbose", OPT_VERBOSE, false, CMD_ALL},
    {"-v", OPT_VERBOSE, false, CMD_ALL},               {"--help", OPT_HELP, false, CMD_ALL},
    {"-h", OPT_HELP, false, CMD_ALL},                  {"--url", OPT_URL, true, CMD_DS},
    {"--json-data", OPT_JSON_DATA, true, CMD_DS},      {"--secure", OPT_SECURE, true, CMD_DS},
    {"--basic-auth", OPT_BASIC_AUTH, true, CMD_DS},    {"--target", OPT_TARGET, true, CMD_QUERY},
    {"--from", OPT_FROM, true, CMD_QUERY},             {"--to", OPT_TO, true, CMD_QUERY},
    {"--interval", OPT_INTERVAL, true, CMD_QUERY},     {"--max-data-points", OPT_MAX_DP, true, CMD_QUERY},
    {"--payload", OPT_PAYLOAD, true, CMD_QUERY},       {"--json", OPT_JSON, false, CMD_QUERY},
    {"--path", OPT_PATH, true, CMD_RESOURCE},          {"--body", OPT_BODY, true, CMD_RESOURCE},
    {"--method", OPT_METHOD, true, CMD_RESOURCE},
};

static command parse_command(const char *s) {
    if (!strcmp(s, "health")) return CMD_HEALTH;
    if (!strcmp(s, "query")) return CMD_QUERY;
    if (!strcmp(s, "resource")) return CMD_RESOURCE;
    if (!strcmp(s, "metrics")) return CMD_METRICS;
    return CMD_NONE;
}

static const char *command_name(command c) {
    switch (c) {
    case CMD_HEALTH: return "health";
    case CMD_QUERY: return "query";
    case CMD_RESOURCE: return "resource";
    case CMD_METRICS: return "metrics";
    default: return "?";
    }
}

static void free_opts(opts_t *o) {
    for (size_t i = 0; i < o->nsecure; i++) free(o->secure[i].key);
    free(o->secure);
    free(o->targets);
}

static int check_json(const char *what, const char *text, bool object_only) {
    json_error_t e;
    json_t *j = json_loads(text, JSON_DECODE_ANY, &e);
    if (!j) {
        fprintf(stderr, "gpxhost: %s is not valid JSON: %s (at character %d)\n(see gpxhost --help)\n", what, e.text,
                e.position);
        return -1;
    }
    bool bad = object_only && !json_is_object(j);
    json_decref(j);
    if (bad) {
        fprintf(stderr, "gpxhost: %s must be a JSON object\n(see gpxhost --help)\n", what);
        return -1;
    }
    return 0;
}

/* Returns -1 to go on, else the exit status (usage error, or 0 for --help). */
static int parse_args(int argc, char **argv, opts_t *o) {
    memset(o, 0, sizeof *o);
    o->timeout_ms = 30000;
    o->start_timeout_ms = 60000;
    o->max_data_points = 1000;
    o->from = "now-1h";
    o->to = "now";
    o->method = "POST";
    const char *timeout = NULL, *start_timeout = NULL, *max_dp = NULL;
    struct { int id; const char *name; } seen[64];
    size_t nseen = 0;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (a[0] != '-' || !a[1]) {
            if (o->cmd != CMD_NONE) return usage_error("unexpected argument: %s", a);
            o->cmd = parse_command(a);
            if (o->cmd == CMD_NONE) return usage_error("unknown command: %s (health, query, resource, metrics)", a);
            continue;
        }
        const char *eq = strchr(a, '=');
        size_t nlen = eq && a[1] == '-' ? (size_t)(eq - a) : strlen(a);
        int d = -1;
        for (size_t k = 0; k < sizeof optdefs / sizeof optdefs[0]; k++)
            if (strlen(optdefs[k].name) == nlen && !strncmp(optdefs[k].name, a, nlen)) d = (int)k;
        if (d < 0) return usage_error("unknown flag: %s", a);
        const char *val = NULL;
        if (optdefs[d].arg) {
            if (eq && a[1] == '-') val = eq + 1;
            else if (i + 1 < argc) val = argv[++i];
            else return usage_error("%s needs a value", optdefs[d].name);
        } else if (eq && a[1] == '-') {
            return usage_error("%s takes no value", optdefs[d].name);
        }
        if (nseen < sizeof seen / sizeof seen[0]) {
            seen[nseen].id = optdefs[d].id;
            seen[nseen].name = optdefs[d].name;
            nseen++;
        }
        switch (optdefs[d].id) {
        case OPT_PLUGIN: o->plugin = val; break;
        case OPT_TIMEOUT: timeout = val; break;
        case OPT_START_TIMEOUT: start_timeout = val; break;
        case OPT_VERBOSE: o->verbose = true; break;
        case OPT_HELP: usage(stdout); return EXIT_OK;
        case OPT_URL: o->url = val; break;
        case OPT_JSON_DATA: o->json_data = val; break;
        case OPT_BASIC_AUTH: o->basic_auth = val; break;
        case OPT_SECURE: {
            const char *e2 = strchr(val, '=');
            if (!e2 || e2 == val) return usage_error("--secure wants KEY=VALUE (no '=' found)%s", NULL);
            kv *n = realloc(o->secure, (o->nsecure + 1) * sizeof *n);
            if (!n) return usage_error("out of memory%s", NULL);
            o->secure = n;
            n[o->nsecure].key = strndup(val, (size_t)(e2 - val));
            n[o->nsecure].value = e2 + 1;
            if (!n[o->nsecure].key) return usage_error("out of memory%s", NULL);
            o->nsecure++;
            break;
        }
        case OPT_TARGET: {
            const char **n = realloc(o->targets, (o->ntargets + 1) * sizeof *n);
            if (!n) return usage_error("out of memory%s", NULL);
            o->targets = n;
            n[o->ntargets++] = val;
            break;
        }
        case OPT_FROM: o->from = val; break;
        case OPT_TO: o->to = val; break;
        case OPT_INTERVAL: o->interval = val; break;
        case OPT_MAX_DP: max_dp = val; break;
        case OPT_PAYLOAD: o->payload = val; break;
        case OPT_JSON: o->json = true; break;
        case OPT_PATH: o->path = val; break;
        case OPT_BODY: o->body = val; break;
        case OPT_METHOD: o->method = val; break;
        }
    }
    if (o->cmd == CMD_NONE) {
        usage(stderr);
        return EXIT_USAGE;
    }
    for (size_t k = 0; k < nseen; k++) {
        for (size_t d = 0; d < sizeof optdefs / sizeof optdefs[0]; d++) {
            if (optdefs[d].id != seen[k].id || strcmp(optdefs[d].name, seen[k].name)) continue;
            if (!(optdefs[d].cmds & o->cmd)) {
                fprintf(stderr, "gpxhost: %s does not apply to the %s command\n(see gpxhost --help)\n",
                        seen[k].name, command_name(o->cmd));
                return EXIT_USAGE;
            }
        }
    }
    if (timeout && te_parse_duration(timeout, &o->timeout_ms) != 0)
        return usage_error("--timeout: not a duration: %s (e.g. 30s, 500ms, 2m)", timeout);
    if (start_timeout && (te_parse_duration(start_timeout, &o->start_timeout_ms) != 0 || o->start_timeout_ms <= 0))
        return usage_error("--start-timeout: not a positive duration: %s", start_timeout);
    if ((o->cmd & CMD_DS) && !o->url) return usage_error("the %s command needs --url URL", command_name(o->cmd));
    if (o->json_data && check_json("--json-data", o->json_data, true) != 0) return EXIT_USAGE;
    if (o->basic_auth && !strchr(o->basic_auth, ':'))
        return usage_error("--basic-auth wants USER:PASSWORD (no ':' found)%s", NULL);
    if (o->cmd == CMD_QUERY) {
        if (!o->ntargets) return usage_error("the query command needs at least one --target%s", NULL);
        if (max_dp) {
            char *end;
            errno = 0;
            long long v = strtoll(max_dp, &end, 10);
            if (errno || *end || v <= 0) return usage_error("--max-data-points: not a positive integer: %s", max_dp);
            o->max_data_points = v;
        }
        if (o->payload && check_json("--payload", o->payload, false) != 0) return EXIT_USAGE;
    }
    if (o->cmd == CMD_RESOURCE) {
        if (!o->path || !*o->path) return usage_error("the resource command needs --path PATH (e.g. metrics)%s", NULL);
        for (const char *m = o->method; *m; m++)
            if (*m < 'A' || *m > 'Z') return usage_error("--method: not an HTTP method: %s", o->method);
        if (!*o->method) return usage_error("--method: empty%s", NULL);
    }
    return -1;
}

/* ---- requests ------------------------------------------------------------------------- */

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

typedef struct {
    Pluginv2__PluginContext ctx;
    Pluginv2__DataSourceInstanceSettings ds;
    Pluginv2__DataSourceInstanceSettings__DecryptedSecureJsonDataEntry *entries;
    Pluginv2__DataSourceInstanceSettings__DecryptedSecureJsonDataEntry **ptrs;
    char *user;
} ctx_holder;

static int build_context(const opts_t *o, ctx_holder *h) {
    memset(h, 0, sizeof *h);
    Pluginv2__PluginContext c = PLUGINV2__PLUGIN_CONTEXT__INIT;
    h->ctx = c;
    h->ctx.orgid = 1;
    h->ctx.pluginid = (char *)PLUGIN_ID;
    h->ctx.pluginversion = (char *)PLUGIN_VERSION;
    h->ctx.useragent = (char *)"gpxhost/" PLUGIN_VERSION;
    if (!(o->cmd & CMD_DS)) return 0;
    Pluginv2__DataSourceInstanceSettings d = PLUGINV2__DATA_SOURCE_INSTANCE_SETTINGS__INIT;
    h->ds = d;
    h->ds.id = 1;
    h->ds.name = (char *)"gpxhost";
    h->ds.uid = (char *)"cli";
    h->ds.url = (char *)o->url;
    const char *jd = o->json_data ? o->json_data : "{}";
    h->ds.jsondata.data = (uint8_t *)jd;
    h->ds.jsondata.len = strlen(jd);
    h->ds.lastupdatedms = now_ms();
    size_t n = o->nsecure + (o->basic_auth ? 1 : 0);
    h->entries = calloc(n ? n : 1, sizeof *h->entries);
    h->ptrs = calloc(n ? n : 1, sizeof *h->ptrs);
    if (!h->entries || !h->ptrs) return -1;
    size_t k = 0;
    const char *pass = NULL;
    if (o->basic_auth) {
        const char *colon = strchr(o->basic_auth, ':');
        h->user = strndup(o->basic_auth, (size_t)(colon - o->basic_auth));
        if (!h->user) return -1;
        pass = colon + 1;
        h->ds.basicauthenabled = 1;
        h->ds.basicauthuser = h->user;
    }
    for (size_t i = 0; i < o->nsecure + (pass ? 1 : 0); i++) {
        const char *key = i < o->nsecure ? o->secure[i].key : "basicAuthPassword";
        const char *val = i < o->nsecure ? o->secure[i].value : pass;
        size_t j;
        for (j = 0; j < k; j++)
            if (!strcmp(h->entries[j].key, key)) break; /* a later value for the same key wins */
        if (j == k) {
            Pluginv2__DataSourceInstanceSettings__DecryptedSecureJsonDataEntry e =
                PLUGINV2__DATA_SOURCE_INSTANCE_SETTINGS__DECRYPTED_SECURE_JSON_DATA_ENTRY__INIT;
            h->entries[k] = e;
            h->ptrs[k] = &h->entries[k];
            k++;
        }
        h->entries[j].key = (char *)key;
        h->entries[j].value = (char *)val;
    }
    h->ds.n_decryptedsecurejsondata = k;
    h->ds.decryptedsecurejsondata = h->ptrs;
    h->ctx.datasourceinstancesettings = &h->ds;
    return 0;
}

static void free_context(ctx_holder *h) {
    free(h->entries);
    free(h->ptrs);
    free(h->user);
}

static uint8_t *pack(const ProtobufCMessage *m, size_t *len) {
    *len = protobuf_c_message_get_packed_size(m);
    uint8_t *out = malloc(*len ? *len : 1);
    if (out) protobuf_c_message_pack(m, out);
    return out;
}

/* refIds A..Z, AA, AB, ... like Grafana's query editor. */
static void ref_id(size_t i, char *out, size_t cap) {
    char tmp[16];
    size_t n = 0;
    i++;
    while (i && n < sizeof tmp) {
        i--;
        tmp[n++] = (char)('A' + i % 26);
        i /= 26;
    }
    size_t k = 0;
    while (n && k + 1 < cap) out[k++] = tmp[--n];
    out[k] = '\0';
}

/* The smallest "nice" interval at least as long as ms (Grafana rounds too). */
static int64_t nice_interval(int64_t ms) {
    static const int64_t steps[] = {1, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 15000, 20000, 30000,
                                    60000, 120000, 300000, 600000, 900000, 1800000, 3600000, 7200000, 10800000,
                                    21600000, 43200000, 86400000, 604800000};
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++)
        if (ms <= steps[i]) return steps[i];
    return ms;
}

static int build_query(const opts_t *o, const ctx_holder *h, uint8_t **out, size_t *len, char (**refs)[8]) {
    int64_t now = now_ms(), from, to, interval;
    if (te_parse_time(o->from, now, &from) != 0)
        return usage_error("--from: not a time: %s (now-1h, epoch ms, or ISO-8601 such as 2026-01-02T03:04:05Z)", o->from);
    if (te_parse_time(o->to, now, &to) != 0)
        return usage_error("--to: not a time: %s (now, epoch ms, or ISO-8601)", o->to);
    if (from >= to) return usage_error("the time range is empty: --from must be before --to%s", NULL);
    if (o->interval) {
        if (te_parse_duration(o->interval, &interval) != 0 || interval <= 0)
            return usage_error("--interval: not a positive duration: %s", o->interval);
    } else {
        interval = nice_interval((to - from) / o->max_data_points);
    }
    size_t n = o->ntargets;
    Pluginv2__DataQuery *qs = calloc(n, sizeof *qs);
    Pluginv2__DataQuery **qp = calloc(n, sizeof *qp);
    Pluginv2__TimeRange tr = PLUGINV2__TIME_RANGE__INIT;
    char **models = calloc(n, sizeof *models);
    *refs = calloc(n, sizeof **refs);
    int rc = -1;
    if (!qs || !qp || !models || !*refs) goto out;
    tr.fromepochms = from;
    tr.toepochms = to;
    json_t *payload = o->payload ? json_loads(o->payload, JSON_DECODE_ANY, NULL) : json_object();
    if (!payload) goto out;
    for (size_t i = 0; i < n; i++) {
        ref_id(i, (*refs)[i], sizeof (*refs)[i]);
        json_t *m = json_object();
        json_object_set_new(m, "refId", json_string((*refs)[i]));
        json_object_set_new(m, "target", json_string(o->targets[i]));
        json_object_set(m, "payload", payload);
        models[i] = json_dumps(m, JSON_COMPACT);
        json_decref(m);
        if (!models[i]) {
            json_decref(payload);
            goto out;
        }
        Pluginv2__DataQuery q = PLUGINV2__DATA_QUERY__INIT;
        qs[i] = q;
        qs[i].refid = (*refs)[i];
        qs[i].maxdatapoints = o->max_data_points;
        qs[i].intervalms = interval;
        qs[i].timerange = &tr;
        qs[i].json.data = (uint8_t *)models[i];
        qs[i].json.len = strlen(models[i]);
        qp[i] = &qs[i];
    }
    json_decref(payload);
    Pluginv2__QueryDataRequest req = PLUGINV2__QUERY_DATA_REQUEST__INIT;
    req.plugincontext = (Pluginv2__PluginContext *)&h->ctx;
    req.n_queries = n;
    req.queries = qp;
    req.format = PLUGINV2__DATA_FRAME_FORMAT__JSON;
    *out = pack(&req.base, len);
    rc = *out ? 0 : -1;
    if (o->verbose) {
        char a[40], b[40], iv[32];
        te_format_ns(from * 1000000, a, sizeof a);
        te_format_ns(to * 1000000, b, sizeof b);
        te_format_interval(interval, iv, sizeof iv);
        fprintf(stderr, "gpxhost: %zu quer%s, %s .. %s, interval %s, max data points %lld\n", n,
                n == 1 ? "y" : "ies", a, b, iv, (long long)o->max_data_points);
    }
out:
    if (models)
        for (size_t i = 0; i < n; i++) free(models[i]);
    free(models);
    free(qs);
    free(qp);
    if (rc != 0) {
        fprintf(stderr, "gpxhost: out of memory building the request\n");
        return EXIT_FAILED;
    }
    return -1;
}

/* ---- the run ------------------------------------------------------------------------------ */

typedef struct {
    uv_loop_t loop;
    opts_t *o;
    char sockdir[256];
    pp_t proc;
    bool proc_started;
    gc_conn *conn;
    gc_call *main_call;
    const char *method_path;
    uint8_t *req;
    size_t req_len;
    char (*refs)[8];
    int result;
    bool connected, main_done, shutting_down, conn_closed, proc_gone, finished;
    char hs_err[1024];
    bool hs_failed, sent_sigterm;
    uv_signal_t sigint;
    int interrupts;
    /* answers */
    buf_t msg;          /* unary: the one response message */
    size_t nmsgs;
    int res_code;       /* resource: status of the first message */
    char *res_ctype;
    buf_t res_body;
} app_t;

static void raise_result(app_t *a, int code) {
    /* 3 (plugin) and 130 (interrupt) outrank 1; 0 never lowers anything. */
    if (code > a->result) a->result = code;
}

static void maybe_finish(app_t *a) {
    if (a->finished || !a->proc_gone || (a->conn && !a->conn_closed)) return;
    a->finished = true;
    pp_close(&a->proc);
    if (!uv_is_closing((uv_handle_t *)&a->sigint)) uv_close((uv_handle_t *)&a->sigint, NULL);
}

static void on_conn_closed(void *arg) {
    app_t *a = arg;
    a->conn = NULL;
    a->conn_closed = true;
    maybe_finish(a);
}

static void print_stderr_block(app_t *a) {
    size_t n;
    const char *s = pp_early_stderr(&a->proc, &n);
    if (!n) return;
    fprintf(stderr, "plugin stderr:\n");
    const char *end = s + n;
    while (s < end) {
        const char *nl = memchr(s, '\n', (size_t)(end - s));
        size_t len = nl ? (size_t)(nl - s) : (size_t)(end - s);
        fprintf(stderr, "  %.*s\n", (int)len, s);
        s += len + (nl ? 1 : 0);
    }
    if (a->proc.early_truncated) fprintf(stderr, "  (more stderr not shown)\n");
}

static void on_plugin_gone(pp_t *p) {
    app_t *a = p->data;
    char desc[128];
    pp_describe_exit(p, desc, sizeof desc);
    if (a->hs_failed) {
        fprintf(stderr, "gpxhost: %s\n", a->hs_err);
        fprintf(stderr, "gpxhost: plugin process ended: %s\n", desc);
        print_stderr_block(a);
    } else if (p->killed) {
        fprintf(stderr, "gpxhost: the plugin did not exit within %d s after Shutdown; killed it (SIGKILL)\n",
                SHUTDOWN_WAIT_MS / 1000);
        raise_result(a, EXIT_FAILED);
    } else if (a->sent_sigterm && p->term_signal == SIGTERM) {
        fprintf(stderr, "gpxhost: plugin stopped: %s\n", desc);
    } else if (p->term_signal || p->exit_status != 0) {
        fprintf(stderr, "gpxhost: the plugin exited abnormally: %s\n", desc);
        raise_result(a, EXIT_FAILED);
    } else {
        fprintf(stderr, "gpxhost: plugin exited: %s\n", desc);
    }
    a->proc_gone = true;
    maybe_finish(a);
}

/* Stops the plugin: go-plugin's Kill() after the Shutdown call. */
static void stop_plugin(app_t *a) {
    if (a->conn) gc_close(a->conn, on_conn_closed, a);
    pp_wait_gone(&a->proc, SHUTDOWN_WAIT_MS, on_plugin_gone);
}

static void on_shutdown_done(gc_call *call, void *arg, int code, const char *message) {
    (void)call;
    app_t *a = arg;
    if (code != GRPC_OK)
        fprintf(stderr, "gpxhost: the Shutdown call failed: %s (%d): %s\n", grpc_status_name(code), code, message);
    else if (a->o->verbose) fprintf(stderr, "gpxhost: Shutdown answered\n");
    stop_plugin(a);
}

static void start_shutdown(app_t *a) {
    if (a->shutting_down) return;
    a->shutting_down = true;
    if (gc_usable(a->conn) && gc_call_start(a->conn, "/plugin.GRPCController/Shutdown", NULL, 0,
                                            SHUTDOWN_CALL_TIMEOUT_MS, NULL, on_shutdown_done, a))
        return;
    if (!a->connected) { /* no gRPC connection: the plugin's other stop path */
        a->sent_sigterm = true;
        pp_signal(&a->proc, SIGTERM);
    }
    else fprintf(stderr, "gpxhost: cannot send Shutdown: the connection to the plugin is gone\n");
    stop_plugin(a);
}

/* ---- answers ---------------------------------------------------------------------- */

static int on_unary_message(gc_call *call, void *arg, const uint8_t *m, size_t len) {
    app_t *a = arg;
    if (++a->nmsgs > 1) {
        gc_call_fail(call, GRPC_INTERNAL, "more than one response message for a unary call");
        return 1;
    }
    buf_append(&a->msg, m, len);
    return buf_ok(&a->msg) ? 0 : 1;
}

static int on_resource_message(gc_call *call, void *arg, const uint8_t *m, size_t len) {
    app_t *a = arg;
    Pluginv2__CallResourceResponse *r = pluginv2__call_resource_response__unpack(NULL, len, m);
    if (!r) {
        gc_call_fail(call, GRPC_INTERNAL, "undecodable CallResourceResponse message");
        return 1;
    }
    if (a->nmsgs++ == 0) { /* code and headers: from the first message only */
        a->res_code = r->code;
        for (size_t i = 0; i < r->n_headers; i++) {
            const Pluginv2__CallResourceResponse__HeadersEntry *e = r->headers[i];
            if (e->key && !strcasecmp(e->key, "Content-Type") && e->value && e->value->n_values && !a->res_ctype)
                a->res_ctype = strdup(e->value->values[0]);
        }
    }
    buf_append(&a->res_body, r->body.data, r->body.len);
    pluginv2__call_resource_response__free_unpacked(r, NULL);
    return buf_ok(&a->res_body) ? 0 : 1;
}

static void print_health(app_t *a) {
    Pluginv2__CheckHealthResponse *r =
        pluginv2__check_health_response__unpack(NULL, a->msg.len, (const uint8_t *)(a->msg.data ? a->msg.data : ""));
    if (!r) {
        fprintf(stderr, "gpxhost: CheckHealth: undecodable response (%zu bytes)\n", a->msg.len);
        raise_result(a, EXIT_FAILED);
        return;
    }
    const char *st = r->status == PLUGINV2__CHECK_HEALTH_RESPONSE__HEALTH_STATUS__OK      ? "OK"
                   : r->status == PLUGINV2__CHECK_HEALTH_RESPONSE__HEALTH_STATUS__ERROR ? "ERROR"
                                                                                         : "UNKNOWN";
    printf("health: %s\n", st);
    printf("message: %s\n", r->message ? r->message : "");
    if (r->jsondetails.len) printf("details: %.*s\n", (int)r->jsondetails.len, (const char *)r->jsondetails.data);
    if (r->status != PLUGINV2__CHECK_HEALTH_RESPONSE__HEALTH_STATUS__OK) {
        fprintf(stderr, "gpxhost: health check failed: %s\n", r->message && *r->message ? r->message : st);
        raise_result(a, EXIT_FAILED);
    }
    pluginv2__check_health_response__free_unpacked(r, NULL);
}

static void print_query(app_t *a) {
    Pluginv2__QueryDataResponse *r =
        pluginv2__query_data_response__unpack(NULL, a->msg.len, (const uint8_t *)(a->msg.data ? a->msg.data : ""));
    if (!r) {
        fprintf(stderr, "gpxhost: QueryData: undecodable response (%zu bytes)\n", a->msg.len);
        raise_result(a, EXIT_FAILED);
        return;
    }
    size_t n = a->o->ntargets;
    bool ok = true;
    const char **order = calloc(n, sizeof *order);
    for (size_t i = 0; order && i < n; i++) order[i] = a->refs[i];
    if (a->o->json && order) {
        ok = render_query_json(stdout, r, order, n);
    } else {
        bool first = true;
        bool *used = calloc(r->n_responses ? r->n_responses : 1, sizeof *used);
        for (size_t q = 0; q <= n && used; q++) {
            for (size_t i = 0; i < r->n_responses; i++) {
                const Pluginv2__QueryDataResponse__ResponsesEntry *e = r->responses[i];
                if (used[i] || !e->key || !e->value) continue;
                if (q < n && strcmp(e->key, a->refs[q]) != 0) continue;
                used[i] = true;
                if (!first) printf("\n");
                first = false;
                if (!render_data_response(stdout, e->key, e->value)) ok = false;
            }
        }
        free(used);
    }
    /* Every refId we asked for must be answered. */
    for (size_t q = 0; q < n; q++) {
        bool found = false;
        for (size_t i = 0; i < r->n_responses; i++)
            if (r->responses[i]->key && !strcmp(r->responses[i]->key, a->refs[q])) found = true;
        if (!found) {
            fprintf(stderr, "gpxhost: no response for refId %s (target %s)\n", a->refs[q], a->o->targets[q]);
            ok = false;
        }
    }
    if (!ok) {
        size_t failed = 0;
        for (size_t i = 0; i < r->n_responses; i++)
            if (r->responses[i]->value && !render_response_ok(r->responses[i]->value)) failed++;
        fprintf(stderr, "gpxhost: %zu of %zu queries failed\n", failed + (n > r->n_responses ? n - r->n_responses : 0),
                n > r->n_responses ? n : r->n_responses);
        raise_result(a, EXIT_FAILED);
    }
    free(order);
    pluginv2__query_data_response__free_unpacked(r, NULL);
}

static void print_resource(app_t *a) {
    if (!a->nmsgs) {
        fprintf(stderr, "gpxhost: CallResource ended without a response message\n");
        raise_result(a, EXIT_FAILED);
        return;
    }
    fprintf(stderr, "HTTP %d%s%s\n", a->res_code, a->res_ctype ? " " : "", a->res_ctype ? a->res_ctype : "");
    if (a->res_body.len) {
        fwrite(a->res_body.data, 1, a->res_body.len, stdout);
        if (a->res_body.data[a->res_body.len - 1] != '\n') fputc('\n', stdout);
    }
    if (a->res_code < 200 || a->res_code > 299) {
        fprintf(stderr, "gpxhost: resource %s answered HTTP %d\n", a->o->path, a->res_code);
        raise_result(a, EXIT_FAILED);
    }
}

static void print_metrics(app_t *a) {
    Pluginv2__CollectMetricsResponse *r = pluginv2__collect_metrics_response__unpack(
        NULL, a->msg.len, (const uint8_t *)(a->msg.data ? a->msg.data : ""));
    if (!r) {
        fprintf(stderr, "gpxhost: CollectMetrics: undecodable response (%zu bytes)\n", a->msg.len);
        raise_result(a, EXIT_FAILED);
        return;
    }
    if (r->metrics && r->metrics->prometheus.len) {
        fwrite(r->metrics->prometheus.data, 1, r->metrics->prometheus.len, stdout);
        if (r->metrics->prometheus.data[r->metrics->prometheus.len - 1] != '\n') fputc('\n', stdout);
    } else {
        fprintf(stderr, "gpxhost: CollectMetrics answered no metrics\n");
    }
    pluginv2__collect_metrics_response__free_unpacked(r, NULL);
}

static void on_main_done(gc_call *call, void *arg, int code, const char *message) {
    (void)call;
    app_t *a = arg;
    a->main_call = NULL;
    a->main_done = true;
    if (code == GRPC_OK && a->nmsgs == 0 && a->o->cmd != CMD_RESOURCE) {
        code = GRPC_INTERNAL; /* grpc-go: a unary call needs exactly one message */
        message = "the plugin answered OK without a response message";
    }
    if (code != GRPC_OK) {
        fprintf(stderr, "gpxhost: %s failed: gRPC status %s (%d)%s%s\n", a->method_path, grpc_status_name(code), code,
                *message ? ": " : "", message);
        raise_result(a, EXIT_FAILED);
    } else {
        switch (a->o->cmd) {
        case CMD_HEALTH: print_health(a); break;
        case CMD_QUERY: print_query(a); break;
        case CMD_RESOURCE: print_resource(a); break;
        case CMD_METRICS: print_metrics(a); break;
        default: break;
        }
    }
    fflush(stdout);
    start_shutdown(a);
}

static void on_connected(gc_conn *c, void *arg, int status, const char *err) {
    (void)c;
    app_t *a = arg;
    if (status != 0) {
        fprintf(stderr, "gpxhost: %s\n", err);
        raise_result(a, EXIT_PLUGIN);
        start_shutdown(a);
        return;
    }
    a->connected = true;
    if (a->interrupts) {
        start_shutdown(a);
        return;
    }
    if (a->o->verbose) fprintf(stderr, "gpxhost: connected; calling %s\n", a->method_path);
    a->main_call = gc_call_start(a->conn, a->method_path, a->req, a->req_len, (uint64_t)a->o->timeout_ms,
                                 a->o->cmd == CMD_RESOURCE ? on_resource_message : on_unary_message, on_main_done, a);
    if (!a->main_call) {
        fprintf(stderr, "gpxhost: cannot start the %s call\n", a->method_path);
        raise_result(a, EXIT_FAILED);
        start_shutdown(a);
    }
}

static void on_handshake(pp_t *p, bool ok, const pp_endpoint *ep, const char *err) {
    app_t *a = p->data;
    if (!ok) {
        a->hs_failed = true;
        snprintf(a->hs_err, sizeof a->hs_err, "%s", err);
        raise_result(a, EXIT_PLUGIN);
        a->shutting_down = true;
        pp_signal(p, SIGKILL); /* what go-plugin does with a plugin it cannot use */
        pp_wait_gone(p, SHUTDOWN_WAIT_MS, on_plugin_gone);
        return;
    }
    if (a->o->verbose)
        fprintf(stderr, "gpxhost: handshake ok: %s %s\n", ep->net == PP_NET_UNIX ? "unix" : "tcp", ep->address);
    if (a->interrupts) {
        start_shutdown(a);
        return;
    }
    a->conn = gc_connect(&a->loop, ep, on_connected, a);
    if (!a->conn) {
        fprintf(stderr, "gpxhost: out of memory\n");
        raise_result(a, EXIT_PLUGIN);
        start_shutdown(a);
    }
}

static void on_sigint(uv_signal_t *s, int signum) {
    (void)signum;
    app_t *a = s->data;
    a->interrupts++;
    raise_result(a, EXIT_INTERRUPTED);
    if (a->interrupts > 1) {
        fprintf(stderr, "gpxhost: interrupted again; killing the plugin\n");
        pp_signal(&a->proc, SIGKILL);
        return;
    }
    fprintf(stderr, "gpxhost: interrupted; stopping the plugin\n");
    if (a->main_call) gc_call_cancel(a->main_call, "interrupted");
    else if (!a->connected && !a->shutting_down && a->proc.hs_settled) start_shutdown(a);
    else if (!a->proc.hs_settled) {
        a->shutting_down = true;
        a->sent_sigterm = true;
        pp_signal(&a->proc, SIGTERM);
        pp_wait_gone(&a->proc, SHUTDOWN_WAIT_MS, on_plugin_gone);
    }
}

/* ---- set-up ------------------------------------------------------------------------------- */

static const char *default_plugin_path(char *out, size_t cap) {
    struct utsname u;
    const char *arch = "amd64";
    if (uname(&u) == 0) {
        if (!strcmp(u.machine, "x86_64")) arch = "amd64";
        else if (!strcmp(u.machine, "aarch64") || !strcmp(u.machine, "arm64")) arch = "arm64";
        else if (!strncmp(u.machine, "arm", 3)) arch = "arm";
        else if (!strcmp(u.machine, "i686") || !strcmp(u.machine, "i386")) arch = "386";
        else arch = u.machine;
    }
    snprintf(out, cap, "dist/" EXECUTABLE "_linux_%s", arch);
    return out;
}

static int make_socket_dir(char *out, size_t cap) {
    const char *tmp = getenv("TMPDIR");
    /* The socket path must stay under 108 bytes: fall back to /tmp for long TMPDIRs. */
    if (!tmp || !*tmp || strlen(tmp) > 70) tmp = "/tmp";
    snprintf(out, cap, "%s/gpxhost-XXXXXX", tmp);
    return mkdtemp(out) ? 0 : -1;
}

static void remove_socket_dir(const char *dir) {
    /* The plugin unlinks its socket when it stops; a killed one leaves it. */
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            char p[512];
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            unlink(p);
        }
        closedir(d);
    }
    rmdir(dir);
}

int main(int argc, char **argv) {
    opts_t o;
    int rc = parse_args(argc, argv, &o);
    if (rc >= 0) {
        free_opts(&o);
        return rc;
    }
    signal(SIGPIPE, SIG_IGN);

    app_t *a = calloc(1, sizeof *a);
    if (!a) {
        free_opts(&o);
        return EXIT_FAILED;
    }
    a->o = &o;
    buf_init(&a->msg);
    buf_init(&a->res_body);

    /* The request is built before anything is spawned, so bad input is a usage error. */
    ctx_holder h;
    if (build_context(&o, &h) != 0) {
        fprintf(stderr, "gpxhost: out of memory\n");
        rc = EXIT_FAILED;
        goto early_out;
    }
    switch (o.cmd) {
    case CMD_HEALTH: {
        a->method_path = "/pluginv2.Diagnostics/CheckHealth";
        Pluginv2__CheckHealthRequest r = PLUGINV2__CHECK_HEALTH_REQUEST__INIT;
        r.plugincontext = &h.ctx;
        a->req = pack(&r.base, &a->req_len);
        break;
    }
    case CMD_QUERY:
        a->method_path = "/pluginv2.Data/QueryData";
        rc = build_query(&o, &h, &a->req, &a->req_len, &a->refs);
        if (rc >= 0) goto early_out;
        break;
    case CMD_RESOURCE: {
        a->method_path = "/pluginv2.Resource/CallResource";
        const char *path = o.path;
        while (*path == '/') path++;
        Pluginv2__CallResourceRequest r = PLUGINV2__CALL_RESOURCE_REQUEST__INIT;
        Pluginv2__StringList ct = PLUGINV2__STRING_LIST__INIT, acc = PLUGINV2__STRING_LIST__INIT;
        char *ctv[] = {(char *)"application/json"}, *accv[] = {(char *)"application/json"};
        ct.n_values = 1;
        ct.values = ctv;
        acc.n_values = 1;
        acc.values = accv;
        Pluginv2__CallResourceRequest__HeadersEntry he[2] = {PLUGINV2__CALL_RESOURCE_REQUEST__HEADERS_ENTRY__INIT,
                                                             PLUGINV2__CALL_RESOURCE_REQUEST__HEADERS_ENTRY__INIT};
        he[0].key = (char *)"Accept";
        he[0].value = &acc;
        he[1].key = (char *)"Content-Type";
        he[1].value = &ct;
        Pluginv2__CallResourceRequest__HeadersEntry *hp[2] = {&he[0], &he[1]};
        r.plugincontext = &h.ctx;
        r.path = (char *)path;
        r.url = (char *)path;
        r.method = (char *)o.method;
        r.n_headers = o.body ? 2 : 1;
        r.headers = hp;
        if (o.body) {
            r.body.data = (uint8_t *)o.body;
            r.body.len = strlen(o.body);
        }
        a->req = pack(&r.base, &a->req_len);
        break;
    }
    case CMD_METRICS: {
        a->method_path = "/pluginv2.Diagnostics/CollectMetrics";
        Pluginv2__CollectMetricsRequest r = PLUGINV2__COLLECT_METRICS_REQUEST__INIT;
        r.plugincontext = &h.ctx;
        a->req = pack(&r.base, &a->req_len);
        break;
    }
    default: break;
    }
    if (!a->req) {
        fprintf(stderr, "gpxhost: out of memory building the request\n");
        rc = EXIT_FAILED;
        goto early_out;
    }

    char defpath[128], relpath[4096];
    const char *plugin = o.plugin ? o.plugin : default_plugin_path(defpath, sizeof defpath);
    if (!strchr(plugin, '/')) { /* a bare name means ./name, not a $PATH search (exec without a shell) */
        snprintf(relpath, sizeof relpath, "./%s", plugin);
        plugin = relpath;
    }
    if (make_socket_dir(a->sockdir, sizeof a->sockdir) != 0) {
        fprintf(stderr, "gpxhost: cannot create a private directory for the plugin's socket: %s\n", strerror(errno));
        rc = EXIT_PLUGIN;
        goto early_out;
    }

    uv_loop_init(&a->loop);
    uv_signal_init(&a->loop, &a->sigint);
    a->sigint.data = a;
    uv_signal_start(&a->sigint, on_sigint, SIGINT);
    uv_unref((uv_handle_t *)&a->sigint);

    a->proc.data = a;
    int r = pp_spawn(&a->proc, &a->loop, plugin, a->sockdir, (uint64_t)o.start_timeout_ms, o.verbose, on_handshake);
    a->proc.data = a; /* pp_spawn resets the struct */
    if (r != 0) {
        fprintf(stderr, "gpxhost: cannot start the plugin %s: %s\n", plugin, uv_strerror(r));
        if (r == UV_ENOENT && !o.plugin)
            fprintf(stderr, "gpxhost: build it with `make dist`, or pass --plugin PATH\n");
        a->result = EXIT_PLUGIN;
        pp_close(&a->proc);
        uv_close((uv_handle_t *)&a->sigint, NULL);
    } else if (o.verbose) {
        fprintf(stderr, "gpxhost: spawned %s (pid %d), socket directory %s\n", plugin, a->proc.proc.pid, a->sockdir);
    }
    uv_run(&a->loop, UV_RUN_DEFAULT);
    if (!a->finished && r == 0) {
        /* Cannot happen with a correct state machine: say so rather than hang. */
        fprintf(stderr, "gpxhost: internal error: the loop ended before the plugin was stopped\n");
        pp_signal(&a->proc, SIGKILL);
        raise_result(a, EXIT_FAILED);
        pp_close(&a->proc);
        if (!uv_is_closing((uv_handle_t *)&a->sigint)) uv_close((uv_handle_t *)&a->sigint, NULL);
        uv_run(&a->loop, UV_RUN_DEFAULT);
    }
    if (uv_loop_close(&a->loop) != 0) fprintf(stderr, "gpxhost: warning: handles left open at exit\n");
    pp_dispose(&a->proc);
    remove_socket_dir(a->sockdir);
    rc = a->result;

early_out:
    fflush(stdout);
    free_context(&h);
    free(a->req);
    free(a->refs);
    free(a->res_ctype);
    buf_free(&a->msg);
    buf_free(&a->res_body);
    free(a);
    free_opts(&o);
    return rc;
}
