/*
 * frame_json: Grafana's JSON frame format (data.FrameToJSON): the writer
 * serves DataResponse callers that ask for JSON frames; the reader loads
 * frames written in that format (test fixtures such as the SDK's golden
 * frame, and data-frame answers that carry the same shape).
 *
 * Numbers are handled from their source text, so int64/uint64 extremes and
 * float bit patterns survive a round trip exactly.
 */
#ifndef FRAME_JSON_H
#define FRAME_JSON_H

#include <stddef.h>

#include "../util/buf.h"
#include "frame.h"

/* Appends {"schema":…,"data":…} for f. Returns 0 or -1 (out of memory). */
int frame_to_json(const frame_t *f, buf_t *out);

/* Parses one JSON frame (NUL-terminated text). On failure returns -1 with a
 * message naming the place (field index, row) in err. */
int frame_from_json(const char *text, frame_t **out, char *err, size_t errcap);

#endif
