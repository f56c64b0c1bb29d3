/*
 * Parent death: PR_SET_PDEATHSIG delivers SIGTERM when the parent exits, so
 * it arrives through the same uv_signal path as an ordinary SIGTERM. The
 * parent may already be gone before prctl runs, hence the getppid check.
 */
#include "process.h"

#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "../log/hclog.h"

static uv_signal_t g_sigterm, g_sigint;
static proc_stop_fn g_on_stop;
static void *g_stop_arg;
static bool g_stopping, g_inited;

int proc_check_cookie(void) {
    const char *v = getenv(PROC_COOKIE_KEY);
    return (v && strcmp(v, PROC_COOKIE_VALUE) == 0) ? 0 : -1;
}

const char *proc_cookie_note(void) {
    return "This binary is a plugin. These are not meant to be executed directly.\n"
           "Please execute the program that consumes these plugins, which will\n"
           "load any plugins automatically.\n"
           "(To run it by hand for debugging or load tests, use --standalone.)\n";
}

int proc_format_handshake(char *out, size_t cap, const char *network, const char *address) {
    int n = snprintf(out, cap, "1|2|%s|%s|grpc|\n", network, address);
    return (n < 0 || (size_t)n >= cap) ? -1 : n;
}

int proc_write_handshake(const char *line, size_t len) {
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(STDOUT_FILENO, line + off, len - off);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        off += (size_t)w;
    }
    return 0;
}

void proc_request_stop(const char *reason) {
    if (g_stopping || !g_on_stop) return;
    g_stopping = true;
    g_on_stop(g_stop_arg, reason);
}

static void on_signal(uv_signal_t *h, int signum) {
    (void)h;
    proc_request_stop(signum == SIGINT ? "SIGINT" : "SIGTERM");
}

int proc_init(uv_loop_t *loop, proc_stop_fn on_stop, void *arg) {
    g_on_stop = on_stop;
    g_stop_arg = arg;
    signal(SIGPIPE, SIG_IGN);
    pid_t parent = getppid();
    uv_signal_init(loop, &g_sigterm);
    uv_signal_init(loop, &g_sigint);
    uv_signal_start(&g_sigterm, on_signal, SIGTERM);
    uv_signal_start(&g_sigint, on_signal, SIGINT);
    /* Signal watchers must not keep the loop alive by themselves. */
    uv_unref((uv_handle_t *)&g_sigterm);
    uv_unref((uv_handle_t *)&g_sigint);
    g_inited = true;
    if (prctl(PR_SET_PDEATHSIG, SIGTERM) != 0)
        LOG_WARN("cannot watch the parent process", HKV_S("error", strerror(errno)));
    if (getppid() != parent) proc_request_stop("parent process exited");
    return 0;
}

void proc_dispose(void) {
    if (!g_inited) return;
    g_inited = false;
    uv_close((uv_handle_t *)&g_sigterm, NULL);
    uv_close((uv_handle_t *)&g_sigint, NULL);
}
