/*
 * sockwrite: put bytes on a libuv stream directly when the socket takes
 * them, queueing only the rest. A queued uv_write costs an epoll re-arm
 * (one more syscall) when it completes; uv_try_write does not, and on a
 * socket with room it sends everything at once.
 */
#ifndef SOCKWRITE_H
#define SOCKWRITE_H

#include <stddef.h>
#include <uv.h>

/* Writes data[0..len) to s. Returns 0 with *queued = 0 when all of it went
 * out now (cb will not run), 0 with *queued = the bytes left when the rest
 * was handed to uv_write with req and cb (data must stay valid until cb),
 * or a negative libuv error. */
int sockwrite(uv_write_t *req, uv_stream_t *s, const char *data, size_t len, uv_write_cb cb, size_t *queued);

#endif
