/*
 * grpc_wire: the byte-level pieces of gRPC over HTTP/2 that need no session:
 * the length-prefixed message deframer, grpc-timeout parsing, grpc-message
 * percent-encoding and status code names. Pure functions, no I/O, no loop:
 * fuzzed and unit-tested on their own.
 */
#ifndef GRPC_WIRE_H
#define GRPC_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum grpc_status {
    GRPC_OK = 0,
    GRPC_CANCELLED = 1,
    GRPC_UNKNOWN = 2,
    GRPC_INVALID_ARGUMENT = 3,
    GRPC_DEADLINE_EXCEEDED = 4,
    GRPC_NOT_FOUND = 5,
    GRPC_ALREADY_EXISTS = 6,
    GRPC_PERMISSION_DENIED = 7,
    GRPC_RESOURCE_EXHAUSTED = 8,
    GRPC_FAILED_PRECONDITION = 9,
    GRPC_ABORTED = 10,
    GRPC_OUT_OF_RANGE = 11,
    GRPC_UNIMPLEMENTED = 12,
    GRPC_INTERNAL = 13,
    GRPC_UNAVAILABLE = 14,
    GRPC_DATA_LOSS = 15,
    GRPC_UNAUTHENTICATED = 16,
    GRPC_STATUS_COUNT = 17
};

#define GRPC_PREFIX_LEN 5

/* CamelCase name as Go's codes.Code.String() prints it ("DeadlineExceeded"). */
const char *grpc_status_name(int code);

/* Writes the 5-byte prefix (flag 0, big-endian length) for a message. */
void grpc_write_prefix(uint8_t out[GRPC_PREFIX_LEN], uint32_t msg_len);

/* Parses a grpc-timeout value (1-8 digits + H/M/S/m/u/n) into nanoseconds.
 * Returns 0 on success, -1 when malformed. Huge values saturate at INT64_MAX. */
int grpc_timeout_parse(const char *value, size_t len, int64_t *out_ns);

/* Percent-encodes a grpc-message value: bytes 0x20-0x7E except '%' pass,
 * everything else becomes %XX (uppercase). Returns the encoded length
 * (excluding NUL); writes at most cap bytes including the NUL, truncating
 * only on whole escapes. */
size_t grpc_percent_encode(char *out, size_t cap, const char *msg);

/* ---- deframer: DATA payload bytes in, whole messages out --------------- */

typedef enum {
    GRPC_DEFRAME_OK = 0,
    GRPC_DEFRAME_TOO_LARGE,  /* declared length above the cap */
    GRPC_DEFRAME_COMPRESSED, /* flag byte 1: we negotiate no compression */
    GRPC_DEFRAME_BAD_FLAG,   /* flag byte other than 0/1 */
    GRPC_DEFRAME_NO_MEMORY
} grpc_deframe_result;

/* Called once per complete message. The bytes stay owned by the deframer
 * and are valid until the next grpc_deframer_* call. Return non-zero to stop. */
typedef int (*grpc_message_cb)(void *arg, const uint8_t *msg, size_t len);

typedef struct {
    uint8_t prefix[GRPC_PREFIX_LEN];
    size_t prefix_have;
    uint8_t *buf;     /* message body being assembled */
    size_t buf_cap;
    size_t msg_len;   /* declared length of the current message */
    size_t msg_have;
    size_t max_msg;   /* cap on a declared length */
    size_t messages;  /* complete messages delivered so far */
    uint32_t declared;/* last declared length (for error messages) */
} grpc_deframer;

void grpc_deframer_init(grpc_deframer *d, size_t max_msg);
void grpc_deframer_free(grpc_deframer *d);
/* Feeds bytes; calls cb for each complete message. Stops at the first error. */
grpc_deframe_result grpc_deframer_feed(grpc_deframer *d, const uint8_t *data, size_t len,
                                       grpc_message_cb cb, void *arg);
/* True when no partial message is pending (the stream may end here). */
bool grpc_deframer_at_boundary(const grpc_deframer *d);

#endif
