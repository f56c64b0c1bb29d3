/*
 * gRPC wire helpers. The deframer never trusts a declared length: it checks
 * the cap before allocating and grows its buffer only as bytes arrive, so a
 * 5-byte prefix claiming 2 GiB costs nothing until the bytes really come.
 */
#include "grpc_wire.h"

#include <stdlib.h>
#include <string.h>

static const char *const status_names[GRPC_STATUS_COUNT] = {
    "OK", "Canceled", "Unknown", "InvalidArgument", "DeadlineExceeded", "NotFound",
    "AlreadyExists", "PermissionDenied", "ResourceExhausted", "FailedPrecondition",
    "Aborted", "OutOfRange", "Unimplemented", "Internal", "Unavailable", "DataLoss",
    "Unauthenticated"};

const char *grpc_status_name(int code) {
    return (code >= 0 && code < GRPC_STATUS_COUNT) ? status_names[code] : "Unknown";
}

void grpc_write_prefix(uint8_t out[GRPC_PREFIX_LEN], uint32_t msg_len) {
    out[0] = 0;
    out[1] = (uint8_t)(msg_len >> 24);
    out[2] = (uint8_t)(msg_len >> 16);
    out[3] = (uint8_t)(msg_len >> 8);
    out[4] = (uint8_t)msg_len;
}

int grpc_timeout_parse(const char *v, size_t len, int64_t *out_ns) {
    if (len < 2 || len > 9) return -1;
    int64_t n = 0;
    for (size_t i = 0; i + 1 < len; i++) {
        if (v[i] < '0' || v[i] > '9') return -1;
        n = n * 10 + (v[i] - '0');
    }
    int64_t mult;
    switch (v[len - 1]) {
    case 'H': mult = 3600LL * 1000000000LL; break;
    case 'M': mult = 60LL * 1000000000LL; break;
    case 'S': mult = 1000000000LL; break;
    case 'm': mult = 1000000LL; break;
    case 'u': mult = 1000LL; break;
    case 'n': mult = 1LL; break;
    default: return -1;
    }
    /* 8 digits of hours overflow int64 nanoseconds: saturate. */
    *out_ns = (n > INT64_MAX / mult) ? INT64_MAX : n * mult;
    return 0;
}

size_t grpc_percent_encode(char *out, size_t cap, const char *msg) {
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    if (cap == 0) return 0;
    for (const unsigned char *p = (const unsigned char *)msg; *p; p++) {
        if (*p >= 0x20 && *p <= 0x7E && *p != '%') {
            if (o + 1 >= cap) break;
            out[o++] = (char)*p;
        } else {
            if (o + 3 >= cap) break;
            out[o++] = '%';
            out[o++] = hex[*p >> 4];
            out[o++] = hex[*p & 15];
        }
    }
    out[o] = '\0';
    return o;
}

void grpc_deframer_init(grpc_deframer *d, size_t max_msg) {
    memset(d, 0, sizeof *d);
    d->max_msg = max_msg;
}

void grpc_deframer_free(grpc_deframer *d) {
    free(d->buf);
    d->buf = NULL;
    d->buf_cap = 0;
}

bool grpc_deframer_at_boundary(const grpc_deframer *d) { return d->prefix_have == 0; }

static int ensure_cap(grpc_deframer *d, size_t need) {
    if (need <= d->buf_cap) return 0;
    size_t cap = d->buf_cap ? d->buf_cap : 256;
    while (cap < need) cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    if (cap > d->msg_len && d->msg_len >= need) cap = d->msg_len; /* never past the message */
    uint8_t *nb = realloc(d->buf, cap);
    if (!nb) return -1;
    d->buf = nb;
    d->buf_cap = cap;
    return 0;
}

grpc_deframe_result grpc_deframer_feed(grpc_deframer *d, const uint8_t *data, size_t len,
                                       grpc_message_cb cb, void *arg) {
    size_t i = 0;
    while (i < len) {
        if (d->prefix_have < GRPC_PREFIX_LEN) {
            size_t take = GRPC_PREFIX_LEN - d->prefix_have;
            if (take > len - i) take = len - i;
            memcpy(d->prefix + d->prefix_have, data + i, take);
            d->prefix_have += take;
            i += take;
            if (d->prefix_have < GRPC_PREFIX_LEN) break;
            uint32_t n = ((uint32_t)d->prefix[1] << 24) | ((uint32_t)d->prefix[2] << 16) |
                         ((uint32_t)d->prefix[3] << 8) | d->prefix[4];
            d->declared = n;
            if (d->prefix[0] == 1) return GRPC_DEFRAME_COMPRESSED;
            if (d->prefix[0] != 0) return GRPC_DEFRAME_BAD_FLAG;
            if (n > d->max_msg) return GRPC_DEFRAME_TOO_LARGE;
            d->msg_len = n;
            d->msg_have = 0;
        }
        size_t take = d->msg_len - d->msg_have;
        if (take > len - i) take = len - i;
        if (take) {
            if (ensure_cap(d, d->msg_have + take) != 0) return GRPC_DEFRAME_NO_MEMORY;
            memcpy(d->buf + d->msg_have, data + i, take);
            d->msg_have += take;
            i += take;
        }
        if (d->msg_have == d->msg_len) {
            d->prefix_have = 0;
            d->messages++;
            static const uint8_t empty[1];
            if (cb && cb(arg, d->buf ? d->buf : empty, d->msg_len) != 0) return GRPC_DEFRAME_OK;
        }
    }
    return GRPC_DEFRAME_OK;
}
