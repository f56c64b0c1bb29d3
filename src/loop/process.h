/*
 * proc: process-level concerns of a go-plugin plugin: the magic cookie, the
 * handshake line on stdout, signals, parent death, and one "please stop"
 * entry point that every stop reason (Shutdown RPC, SIGTERM, SIGINT, parent
 * gone) funnels into.
 */
#ifndef PROC_H
#define PROC_H

#include <stddef.h>
#include <uv.h>

#define PROC_COOKIE_KEY "grafana_plugin_type"
#define PROC_COOKIE_VALUE "datasource"

/* 0 when the environment carries go-plugin's magic cookie. */
int proc_check_cookie(void);
/* The note go-plugin prints when a plugin binary is run by hand. */
const char *proc_cookie_note(void);

/* "1|2|<network>|<address>|grpc|\n"; returns the length or -1 if it does not fit. */
int proc_format_handshake(char *out, size_t cap, const char *network, const char *address);
/* Writes the line to stdout with write(2) (no stdio buffering). */
int proc_write_handshake(const char *line, size_t len);

typedef void (*proc_stop_fn)(void *arg, const char *reason);

/* Installs SIGTERM/SIGINT handlers on the loop, ignores SIGPIPE, and arms
 * parent-death notification; every stop request calls on_stop once. */
int proc_init(uv_loop_t *loop, proc_stop_fn on_stop, void *arg);
/* Asks for a stop (idempotent). */
void proc_request_stop(const char *reason);
/* Closes the signal handles. */
void proc_dispose(void);

#endif
