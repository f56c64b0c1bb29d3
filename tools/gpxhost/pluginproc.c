#include "pluginproc.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern char **environ;

#define DRAIN_AFTER_EXIT_MS 500 /* a grandchild may hold our pipes: stop waiting for EOF then */
#define CORE_PROTOCOL_VERSION "1"
#define APP_PROTOCOL_VERSION "2"

static const char *const handshake_env_names[] = {
    "grafana_plugin_type", "PLUGIN_PROTOCOL_VERSIONS", "PLUGIN_MIN_PORT",
    "PLUGIN_MAX_PORT",     "PLUGIN_UNIX_SOCKET_DIR",
};

/* ---- small helpers ------------------------------------------------------ */

static void close_handle(uv_handle_t *h) {
    if (h->loop && !uv_is_closing(h)) uv_close(h, NULL);
}

static bool is_handshake_var(const char *entry) {
    const char *eq = strchr(entry, '=');
    size_t n = eq ? (size_t)(eq - entry) : strlen(entry);
    for (size_t i = 0; i < sizeof handshake_env_names / sizeof handshake_env_names[0]; i++)
        if (strlen(handshake_env_names[i]) == n && memcmp(handshake_env_names[i], entry, n) == 0) return true;
    return false;
}

/* The environment as go-plugin builds it: ours, then the handshake variables
 * (later ones win there; here duplicates are simply left out). */
static char **build_env(const char *socket_dir) {
    size_t n = 0;
    for (char **e = environ; e && *e; e++) n++;
    char **env = calloc(n + 6, sizeof *env);
    if (!env) return NULL;
    size_t k = 0;
    for (char **e = environ; e && *e; e++)
        if (!is_handshake_var(*e)) env[k++] = strdup(*e);
    env[k++] = strdup("grafana_plugin_type=datasource");
    env[k++] = strdup("PLUGIN_PROTOCOL_VERSIONS=" APP_PROTOCOL_VERSION);
    env[k++] = strdup("PLUGIN_MIN_PORT=10000");
    env[k++] = strdup("PLUGIN_MAX_PORT=25000");
    size_t dl = strlen(socket_dir) + sizeof "PLUGIN_UNIX_SOCKET_DIR=";
    char *d = malloc(dl);
    if (d) snprintf(d, dl, "PLUGIN_UNIX_SOCKET_DIR=%s", socket_dir);
    env[k++] = d;
    env[k] = NULL;
    for (size_t i = 0; i < k; i++)
        if (!env[i]) {
            for (size_t j = 0; j < k; j++) free(env[j]);
            free(env);
            return NULL;
        }
    return env;
}

static void free_env(char **env) {
    if (!env) return;
    for (char **e = env; *e; e++) free(*e);
    free(env);
}

/* ---- stderr: hclog lines ---------------------------------------------- */

static bool needs_quotes(const char *s) {
    if (!*s) return true;
    for (; *s; s++)
        if (*s == ' ' || *s == '"' || *s == '=' || (unsigned char)*s < 0x20) return true;
    return false;
}

void pp_show_stderr_line(const char *line, size_t len, bool verbose) {
    while (len && (line[len - 1] == '\n' || line[len - 1] == '\r')) len--;
    if (!len) return;
    json_t *j = (line[0] == '{') ? json_loadb(line, len, 0, NULL) : NULL;
    json_t *lvl = json_object_get(j, "@level"), *msg = json_object_get(j, "@message");
    if (!json_is_string(lvl) || !json_is_string(msg)) {
        /* Not hclog: crash reports, sanitizer output, notes. Always shown. */
        fprintf(stderr, "plugin: %.*s\n", (int)len, line);
        json_decref(j);
        return;
    }
    const char *level = json_string_value(lvl);
    bool quiet = !strcmp(level, "trace") || !strcmp(level, "debug") || !strcmp(level, "info") ||
                 !strcmp(level, "warn") || !strcmp(level, "warning");
    if (quiet && !verbose) {
        json_decref(j);
        return;
    }
    buf_t b;
    buf_init(&b);
    buf_printf(&b, "plugin [%s] %s", level, json_string_value(msg));
    const char *key;
    json_t *v;
    json_object_foreach(j, key, v) {
        if (key[0] == '@') continue;
        if (json_is_string(v) && !needs_quotes(json_string_value(v))) {
            buf_printf(&b, " %s=%s", key, json_string_value(v));
        } else {
            char *t = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
            buf_printf(&b, " %s=%s", key, t ? t : "?");
            free(t);
        }
    }
    if (buf_ok(&b)) fprintf(stderr, "%.*s\n", (int)b.len, b.data);
    buf_free(&b);
    json_decref(j);
}

/* ---- handshake ---------------------------------------------------------- */

static bool all_digits(const char *s) {
    if (!*s) return false;
    for (; *s; s++)
        if (*s < '0' || *s > '9') return false;
    return true;
}

static int check_tcp_address(const char *a, char *err, size_t errcap) {
    const char *colon = strrchr(a, ':');
    if (!colon) {
        snprintf(err, errcap, "invalid tcp address %s in the handshake: missing port", a);
        return -1;
    }
    size_t hl = (size_t)(colon - a);
    if (hl && a[0] == '[' && a[hl - 1] != ']') {
        snprintf(err, errcap, "invalid tcp address %s in the handshake: unbalanced brackets", a);
        return -1;
    }
    const char *port = colon + 1;
    long v = all_digits(port) && strlen(port) <= 5 ? strtol(port, NULL, 10) : -1;
    if (v < 1 || v > 65535) {
        snprintf(err, errcap, "invalid tcp address %s in the handshake: bad port", a);
        return -1;
    }
    return 0;
}

int pp_parse_handshake(const char *line, pp_endpoint *ep, char *err, size_t errcap) {
    /* Trim like strings.TrimSpace. */
    size_t len = strlen(line);
    while (len && (line[len - 1] == ' ' || line[len - 1] == '\t' || line[len - 1] == '\r' || line[len - 1] == '\n'))
        len--;
    while (len && (*line == ' ' || *line == '\t')) line++, len--;

    char copy[PP_LINE_MAX];
    if (len >= sizeof copy) len = sizeof copy - 1;
    memcpy(copy, line, len);
    copy[len] = '\0';

    char *parts[8] = {0};
    size_t n = 0;
    char *s = copy;
    for (;;) {
        char *bar = strchr(s, '|');
        if (n < 8) parts[n] = s;
        n++;
        if (!bar) break;
        *bar = '\0';
        s = bar + 1;
    }
    if (n < 4) {
        snprintf(err, errcap,
                 "unrecognized handshake line from the plugin: \"%.200s\"\n"
                 "  (expected CORE|APP|NETWORK|ADDRESS|PROTOCOL; the binary printed something else first,\n"
                 "  is not a plugin, or was built for another architecture)",
                 line);
        return -1;
    }
    if (strcmp(parts[0], CORE_PROTOCOL_VERSION) != 0) {
        snprintf(err, errcap, "incompatible core API version with the plugin: plugin %.40s, host " CORE_PROTOCOL_VERSION,
                 parts[0]);
        return -1;
    }
    if (strcmp(parts[1], APP_PROTOCOL_VERSION) != 0) {
        snprintf(err, errcap,
                 "incompatible API version with the plugin: plugin version %.40s, host versions [" APP_PROTOCOL_VERSION "]",
                 parts[1]);
        return -1;
    }
    const char *network = parts[2], *address = parts[3];
    if (strcmp(network, "unix") && strcmp(network, "tcp")) {
        snprintf(err, errcap, "unknown address type \"%.40s\" in the handshake (want unix or tcp)", network);
        return -1;
    }
    if (!*address) {
        snprintf(err, errcap, "empty address in the handshake line");
        return -1;
    }
    if (strlen(address) >= sizeof ep->address) {
        snprintf(err, errcap, "address in the handshake line is too long (%zu bytes)", strlen(address));
        return -1;
    }
    if (!strcmp(network, "unix") && strlen(address) >= 108) {
        snprintf(err, errcap, "unix socket path in the handshake is longer than 107 bytes: %.200s", address);
        return -1;
    }
    if (!strcmp(network, "tcp") && check_tcp_address(address, err, errcap) != 0) return -1;
    const char *protocol = n >= 5 ? parts[4] : "netrpc";
    if (strcmp(protocol, "grpc") != 0) {
        snprintf(err, errcap, "unsupported plugin protocol \"%.40s\" (only grpc is supported)", protocol);
        return -1;
    }
    if (n >= 6 && strlen(parts[5]) > 50) {
        snprintf(err, errcap, "the plugin announced a TLS server certificate (AutoMTLS), but no client certificate "
                              "was offered; gpxhost speaks plaintext only");
        return -1;
    }
    ep->net = strcmp(network, "unix") ? PP_NET_TCP : PP_NET_UNIX;
    snprintf(ep->address, sizeof ep->address, "%s", address);
    return 0;
}

static void replay_early(pp_t *p) {
    const char *s = p->early.data, *end = s + p->early.len;
    while (s < end) {
        const char *nl = memchr(s, '\n', (size_t)(end - s));
        size_t n = nl ? (size_t)(nl - s) : (size_t)(end - s);
        pp_show_stderr_line(s, n, false);
        s += n + (nl ? 1 : 0);
    }
}

static void settle(pp_t *p, bool ok, const pp_endpoint *ep, const char *err) {
    if (p->hs_settled) return;
    p->hs_settled = true;
    uv_timer_stop(&p->hs_timer);
    if (ok) {
        if (!p->verbose) replay_early(p);
        p->early.len = 0;
    } else {
        snprintf(p->hs_err, sizeof p->hs_err, "%s", err);
    }
    if (p->on_handshake) p->on_handshake(p, ok, ep, err);
}

static bool holding_stderr(const pp_t *p) { return !p->hs_settled || p->hs_err[0]; }

static void on_hs_timeout(uv_timer_t *t) {
    pp_t *p = t->data;
    char msg[160];
    snprintf(msg, sizeof msg, "timeout while waiting for the plugin to start (no handshake line within %.1f s)",
             (double)p->hs_timeout_ms / 1000.0);
    settle(p, false, NULL, msg);
}

/* ---- exit ----------------------------------------------------------------- */

static void notify_gone(pp_t *p) {
    if (!p->on_gone) return;
    pp_gone_cb cb = p->on_gone;
    p->on_gone = NULL;
    cb(p);
}

static void check_gone(pp_t *p) {
    if (p->gone || !p->exited || !p->out_eof || !p->err_eof) return;
    p->gone = true;
    uv_timer_stop(&p->drain_timer);
    bool notify = p->on_gone != NULL; /* one set during settle below fires from its timer */
    if (notify) uv_timer_stop(&p->kill_timer);
    if (!p->hs_settled) settle(p, false, NULL, "plugin exited before handshake");
    if (notify) notify_gone(p);
}

static void flush_partial_lines(pp_t *p);

static void on_drain_timer(uv_timer_t *t) {
    pp_t *p = t->data;
    /* A grandchild still holds a pipe: stop reading it, the plugin is gone. */
    flush_partial_lines(p);
    if (!p->out_eof) uv_read_stop((uv_stream_t *)&p->out);
    if (!p->err_eof) uv_read_stop((uv_stream_t *)&p->err);
    p->out_eof = p->err_eof = true;
    check_gone(p);
}

static void on_exit_cb(uv_process_t *proc, int64_t exit_status, int term_signal) {
    pp_t *p = proc->data;
    p->exited = true;
    p->exit_status = exit_status;
    p->term_signal = term_signal;
    if (!p->out_eof || !p->err_eof) uv_timer_start(&p->drain_timer, on_drain_timer, DRAIN_AFTER_EXIT_MS, 0);
    check_gone(p);
}

static void on_kill_timer(uv_timer_t *t) {
    pp_t *p = t->data;
    if (p->gone) {
        notify_gone(p);
        return;
    }
    if (!p->exited) {
        p->killed = true;
        uv_process_kill(&p->proc, SIGKILL);
    }
}

void pp_wait_gone(pp_t *p, uint64_t timeout_ms, pp_gone_cb on_gone) {
    p->on_gone = on_gone;
    /* Always asynchronous, so the caller's state is settled when it fires. */
    uv_timer_start(&p->kill_timer, on_kill_timer, p->gone ? 0 : timeout_ms, 0);
}

int pp_signal(pp_t *p, int signum) {
    if (!p->spawned || p->exited) return 0;
    return uv_process_kill(&p->proc, signum);
}

void pp_describe_exit(const pp_t *p, char *out, size_t cap) {
    if (!p->exited) snprintf(out, cap, "still running");
    else if (p->term_signal)
        snprintf(out, cap, "killed by signal %d (%s)", p->term_signal, strsignal(p->term_signal));
    else snprintf(out, cap, "exit status %lld", (long long)p->exit_status);
}

/* ---- pipes ---------------------------------------------------------------- */

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *b) {
    (void)h;
    static char chunk[65536]; /* one loop thread; consumed before the next read */
    (void)suggested;
    *b = uv_buf_init(chunk, sizeof chunk);
}

static void on_stdout_line(pp_t *p, const char *line, size_t len) {
    if (!p->hs_settled) {
        char tmp[PP_LINE_MAX + 1];
        memcpy(tmp, line, len);
        tmp[len] = '\0';
        pp_endpoint ep;
        char err[1024];
        if (pp_parse_handshake(tmp, &ep, err, sizeof err) == 0) settle(p, true, &ep, NULL);
        else settle(p, false, NULL, err);
        return;
    }
    if (p->verbose) fprintf(stderr, "plugin stdout: %.*s\n", (int)len, line);
}

static void on_stderr_line(pp_t *p, const char *line, size_t len) {
    if (holding_stderr(p) && p->early.len + len + 1 <= PP_EARLY_STDERR) {
        buf_append(&p->early, line, len);
        buf_puts(&p->early, "\n");
        if (p->verbose) pp_show_stderr_line(line, len, true);
        return;
    }
    if (holding_stderr(p)) p->early_truncated = true;
    pp_show_stderr_line(line, len, p->verbose);
}

/* Splits bytes into lines; a line longer than PP_LINE_MAX is cut (stdout
 * before the handshake: that is a failed handshake). */
static void feed_lines(pp_t *p, bool is_err, const char *data, size_t n) {
    char *line = is_err ? p->eline : p->line;
    size_t *have = is_err ? &p->eline_len : &p->line_len;
    size_t i = 0;
    while (i < n) {
        const char *nl = memchr(data + i, '\n', n - i);
        size_t seg = nl ? (size_t)(nl - (data + i)) : n - i;
        size_t room = PP_LINE_MAX - *have;
        size_t take = seg < room ? seg : room;
        memcpy(line + *have, data + i, take);
        *have += take;
        if (take < seg) { /* overflow */
            if (!is_err && !p->hs_settled) {
                settle(p, false, NULL, "the plugin's first stdout line is longer than 64 KiB (not a handshake line)");
            } else if (is_err) {
                on_stderr_line(p, line, *have);
            }
            *have = 0;
            /* The rest of the too-long line is consumed as further segments. */
            i += take;
            continue;
        }
        i += seg;
        if (nl) {
            i++;
            if (is_err) on_stderr_line(p, line, *have);
            else on_stdout_line(p, line, *have);
            *have = 0;
        }
    }
}

static void flush_partial_lines(pp_t *p) {
    /* bufio.Scanner hands out a last line without newline too. */
    if (p->line_len) {
        size_t n = p->line_len;
        p->line_len = 0;
        on_stdout_line(p, p->line, n);
    }
    if (p->eline_len) {
        size_t n = p->eline_len;
        p->eline_len = 0;
        on_stderr_line(p, p->eline, n);
    }
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b) {
    pp_t *p = s->data;
    bool is_err = s == (uv_stream_t *)&p->err;
    if (nread > 0) {
        feed_lines(p, is_err, b->base, (size_t)nread);
        return;
    }
    if (nread == 0) return;
    /* EOF or error: the pipe is done either way. */
    uv_read_stop(s);
    if (is_err) {
        if (p->eline_len) {
            size_t n = p->eline_len;
            p->eline_len = 0;
            on_stderr_line(p, p->eline, n);
        }
        p->err_eof = true;
    } else {
        if (p->line_len) {
            size_t n = p->line_len;
            p->line_len = 0;
            on_stdout_line(p, p->line, n);
        }
        p->out_eof = true;
    }
    check_gone(p);
}

/* ---- spawn ------------------------------------------------------------------ */

int pp_spawn(pp_t *p, uv_loop_t *loop, const char *path, const char *socket_dir,
             uint64_t start_timeout_ms, bool verbose, pp_handshake_cb on_handshake) {
    memset(p, 0, sizeof *p);
    p->loop = loop;
    p->verbose = verbose;
    p->on_handshake = on_handshake;
    buf_init(&p->early);
    p->line = malloc(PP_LINE_MAX);
    p->eline = malloc(PP_LINE_MAX);
    if (!p->line || !p->eline) return UV_ENOMEM;

    uv_pipe_init(loop, &p->out, 0);
    uv_pipe_init(loop, &p->err, 0);
    uv_timer_init(loop, &p->hs_timer);
    uv_timer_init(loop, &p->kill_timer);
    uv_timer_init(loop, &p->drain_timer);
    p->out.data = p->err.data = p->hs_timer.data = p->kill_timer.data = p->drain_timer.data = p;

    char **env = build_env(socket_dir);
    if (!env) return UV_ENOMEM;
    char *args[2] = {(char *)path, NULL};
    uv_stdio_container_t stdio[3];
    stdio[0].flags = UV_IGNORE;
    stdio[1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
    stdio[1].data.stream = (uv_stream_t *)&p->out;
    stdio[2].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
    stdio[2].data.stream = (uv_stream_t *)&p->err;
    uv_process_options_t o;
    memset(&o, 0, sizeof o);
    o.file = path;
    o.args = args;
    o.env = env;
    o.exit_cb = on_exit_cb;
    o.stdio = stdio;
    o.stdio_count = 3;
    p->proc.data = p;
    int r = uv_spawn(loop, &p->proc, &o);
    free_env(env);
    p->proc.data = p; /* the handle is initialised even when spawning failed: pp_close closes it */
    if (r != 0) return r;
    p->spawned = true;
    uv_read_start((uv_stream_t *)&p->out, alloc_cb, on_read);
    uv_read_start((uv_stream_t *)&p->err, alloc_cb, on_read);
    p->hs_timeout_ms = start_timeout_ms;
    if (start_timeout_ms) uv_timer_start(&p->hs_timer, on_hs_timeout, start_timeout_ms, 0);
    return 0;
}

const char *pp_early_stderr(pp_t *p, size_t *len) {
    *len = p->early.len;
    return p->early.data ? p->early.data : "";
}

void pp_close(pp_t *p) {
    close_handle((uv_handle_t *)&p->proc);
    close_handle((uv_handle_t *)&p->out);
    close_handle((uv_handle_t *)&p->err);
    close_handle((uv_handle_t *)&p->hs_timer);
    close_handle((uv_handle_t *)&p->kill_timer);
    close_handle((uv_handle_t *)&p->drain_timer);
}

void pp_dispose(pp_t *p) {
    free(p->line);
    free(p->eline);
    p->line = p->eline = NULL;
    buf_free(&p->early);
}
