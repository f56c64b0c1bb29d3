/*
 * timeexpr: the time and duration notations of the command line.
 *
 *   times:     now, now-1h, now-30m+5s (units ms s m h d w M y; M = 30d,
 *              y = 365d), epoch milliseconds (digits), ISO-8601
 *              (2026-11-25, 2026-11-25T10:00, 2026-11-25T10:00:00.123Z,
 *              2026-11-25 10:00:00+02:00; no zone = UTC)
 *   durations: 30s, 500ms, 1m, 1h30m, 2d; a plain number means seconds
 */
#ifndef GPXHOST_TIMEEXPR_H
#define GPXHOST_TIMEEXPR_H

#include <stddef.h>
#include <stdint.h>

int te_parse_time(const char *s, int64_t now_ms, int64_t *out_ms);
int te_parse_duration(const char *s, int64_t *out_ms);
/* YYYY-MM-DDTHH:MM:SS.mmmZ for nanoseconds since the epoch (UTC, floor to ms). */
void te_format_ns(int64_t ns, char *out, size_t cap);
/* Milliseconds formatted as a Grafana interval ("30s", "1m", "250ms"). */
void te_format_interval(int64_t ms, char *out, size_t cap);

#endif
