/*
 * render: QueryData answers for people (aligned text tables) and for
 * scripts (Grafana's /api/ds/query-shaped JSON).
 */
#ifndef GPXHOST_RENDER_H
#define GPXHOST_RENDER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "frames/frame.h"
#include "pluginv2.pb-c.h"

#define RENDER_HEAD_ROWS 20 /* long frames: this many first rows ... */
#define RENDER_TAIL_ROWS 5  /* ... an ellipsis line, then this many last rows */
#define RENDER_MAX_CELL 60  /* characters shown of one cell */

/* One frame as a table: a title line, a header (field names with labels in
 * {k=v}), a rule, the rows. */
void render_frame(FILE *out, const frame_t *f, size_t index, size_t count);

/* One refId's DataResponse: status, error (+ errorSource), then its frames
 * (JSON frames parsed with frame_from_json). Returns true when the refId
 * succeeded (2xx, no error, every frame readable). */
bool render_data_response(FILE *out, const char *ref_id, const Pluginv2__DataResponse *r);

/* The whole response as {"results":{refId:{status,error?,errorSource?,frames:[…]}}}
 * with refIds in the given order first, then any others. Frames are copied
 * verbatim (they are JSON already). Returns true when every refId succeeded. */
bool render_query_json(FILE *out, const Pluginv2__QueryDataResponse *resp, const char *const *order, size_t norder);

/* Success as gpxhost counts it for one DataResponse. */
bool render_response_ok(const Pluginv2__DataResponse *r);

#endif
