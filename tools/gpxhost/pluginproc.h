/*
 * pluginproc: the plugin process as go-plugin's client sees it.
 *
 * Spawns the binary with the handshake environment, reads the handshake
 * line from its stdout pipe and validates it field by field, keeps draining
 * stdout (discarded, shown with verbose) and stderr (hclog JSON lines,
 * re-printed on our stderr by level), and tracks the exit: the process
 * counts as gone when wait() returned and both pipes reached EOF (or a
 * short while after wait() when a grandchild still holds a pipe).
 *
 * Everything runs on the caller's loop; no call blocks.
 */
#ifndef GPXHOST_PLUGINPROC_H
#define GPXHOST_PLUGINPROC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "util/buf.h"

#define PP_LINE_MAX 65536       /* go-plugin reads stdout with a 64 KiB scanner */
#define PP_EARLY_STDERR 65536   /* stderr kept until the handshake is settled */

typedef enum { PP_NET_UNIX = 0, PP_NET_TCP } pp_net;

typedef struct {
    pp_net net;
    char address[256]; /* socket path, or host:port */
} pp_endpoint;

typedef struct pp_s pp_t;

/* ok: ep is valid. Otherwise err explains (one or more lines, no trailing
 * newline) and the caller decides what to do with the process. */
typedef void (*pp_handshake_cb)(pp_t *p, bool ok, const pp_endpoint *ep, const char *err);
/* The process is gone (wait() returned, pipes drained or given up on). */
typedef void (*pp_gone_cb)(pp_t *p);

struct pp_s {
    uv_loop_t *loop;
    uv_process_t proc;
    uv_pipe_t out, err;
    uv_timer_t hs_timer;    /* handshake timeout */
    uv_timer_t kill_timer;  /* wait-then-SIGKILL */
    uv_timer_t drain_timer; /* pipes still open after wait() */
    bool verbose;
    void *data;

    /* stdout */
    char *line;             /* PP_LINE_MAX bytes */
    size_t line_len;
    bool line_overflow;
    bool out_eof;

    /* stderr */
    char *eline;            /* PP_LINE_MAX bytes */
    size_t eline_len;
    bool err_eof;
    buf_t early;            /* raw stderr lines held until the handshake settles */
    bool early_truncated;

    /* handshake */
    pp_handshake_cb on_handshake;
    bool hs_settled;        /* success or failure reported */
    bool hs_waiting_exit;   /* stdout ended first: report once the process is gone */
    char hs_err[1024];

    /* exit */
    bool spawned, exited, gone, killed;
    int64_t exit_status;
    int term_signal;
    pp_gone_cb on_gone;
    uint64_t hs_timeout_ms;
};

/* Spawns `path` with the current environment plus the go-plugin handshake
 * variables (socket_dir becomes PLUGIN_UNIX_SOCKET_DIR). Returns 0, or a
 * libuv error code (nothing to clean up then beyond pp_dispose). */
int pp_spawn(pp_t *p, uv_loop_t *loop, const char *path, const char *socket_dir,
             uint64_t start_timeout_ms, bool verbose, pp_handshake_cb on_handshake);

/* Sends a signal (0 when the process has already exited). */
int pp_signal(pp_t *p, int signum);

/* Calls on_gone once the process is gone; if it has not exited within
 * timeout_ms, SIGKILLs it (p->killed says so) and keeps waiting. */
void pp_wait_gone(pp_t *p, uint64_t timeout_ms, pp_gone_cb on_gone);

/* The stderr seen before the handshake settled (for failure messages). */
const char *pp_early_stderr(pp_t *p, size_t *len);

/* "exit status 0" / "killed by signal 9 (Killed)". */
void pp_describe_exit(const pp_t *p, char *out, size_t cap);

/* Closes every handle (the loop must run afterwards for the close callbacks)
 * and frees buffers once they are closed. */
void pp_close(pp_t *p);
/* Frees what pp_close left (call after the loop ran). */
void pp_dispose(pp_t *p);

/* Validates one handshake line (without the newline) like go-plugin's
 * client does; fills ep or writes the reason to err. Exposed for clarity. */
int pp_parse_handshake(const char *line, pp_endpoint *ep, char *err, size_t errcap);

/* Prints one stderr line of the plugin on our stderr if it should be shown:
 * hclog JSON lines by level (all with verbose, else error only), other
 * lines always. */
void pp_show_stderr_line(const char *line, size_t len, bool verbose);

#endif
