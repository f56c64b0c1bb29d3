#include "sockwrite.h"

int sockwrite(uv_write_t *req, uv_stream_t *s, const char *data, size_t len, uv_write_cb cb, size_t *queued) {
    *queued = 0;
    uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
    int n = uv_try_write(s, &b, 1);
    if (n == (int)len) return 0;
    if (n < 0 && n != UV_EAGAIN) return n;
    size_t done = n > 0 ? (size_t)n : 0;
    b = uv_buf_init((char *)data + done, (unsigned)(len - done));
    int r = uv_write(req, s, &b, 1, cb);
    if (r == 0) *queued = len - done;
    return r;
}
