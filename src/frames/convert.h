/*
 * convert: an in-house backend's /query answer → Grafana frames, converted
 * while the body streams in (yajl's event parser; values go straight into
 * field builders, no document tree).
 *
 * Accepted shapes (contract §4), one frame per array element:
 *  - time series {"target","datapoints"|"points":[[value,ms],...],"tags","unit","title"}
 *    → data-plane timeseries-multi: Time (ns, ascending, non-null) + Value
 *      (nullable float64, labels from tags);
 *  - table {"type":"table","columns":[{"text","type"}],"rows":[[...]]}
 *    → one nullable field per column, types declared or inferred;
 *  - data frame {"name","meta","fields":[{"name","type","values","labels","config"}]}.
 *
 * Feed any split of the body (down to single bytes): the frames are the
 * same. Any failure is one message naming the element, field/column, row
 * and byte offset (for a JSON syntax error inside a token that straddles
 * two reads, the offset is where that read began); after a failure no
 * frame is handed out. Strings that are not valid UTF-8 (lone surrogate
 * escapes) carry U+FFFD in their place.
 */
#ifndef CONVERT_H
#define CONVERT_H

#include <stddef.h>
#include <stdint.h>

#include "frame.h"

typedef struct conv conv_t;

/* ref_id goes on every frame; query is the executed query string for the
 * series frames' meta (may be NULL: the element's target is used). */
conv_t *conv_new(const char *ref_id, const char *query);
void conv_free(conv_t *c);

/* Returns 0, or -1 once the body is known to be bad (see conv_error). */
int conv_feed(conv_t *c, const uint8_t *data, size_t len);
/* The body ended: returns 0 when it was complete and valid. */
int conv_finish(conv_t *c);
const char *conv_error(const conv_t *c);

/* After a successful conv_finish: hands the frames over (the caller frees
 * each with frame_free and the array with free). */
frame_t **conv_take_frames(conv_t *c, size_t *n);

/* Parses ISO-8601 date-times (2026-11-25T10:00:00.123Z, ±hh:mm offsets,
 * date only) into Unix nanoseconds. Exposed for tests. */
int conv_parse_iso8601(const char *s, size_t len, int64_t *ns);

#endif
