/*
 * arrow: writes a frame as one Arrow IPC *file* (what Grafana's decoder
 * accepts): magic, Schema message, one RecordBatch (none for zero rows),
 * end-of-stream marker, Footer carrying the same Schema, footer length,
 * magic. Custom metadata: schema-level name/refId/meta, field-level
 * tstype/labels/config, as the Go SDK writes them.
 *
 * Column buffers are copied once, straight from the field builders into
 * the output; everything else is a few hundred bytes of flatbuffers.
 */
#ifndef ARROW_H
#define ARROW_H

#include <stddef.h>
#include <stdint.h>

#include "../util/buf.h"
#include "frame.h"

/* Appends the Arrow file for `f` to out. Returns 0, or -1 when the fields
 * disagree on the row count, a builder failed, or memory ran out. */
int arrow_write_frame(const frame_t *f, buf_t *out);

#endif
