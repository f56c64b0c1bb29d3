/*
 * frame_convert: test helper. Reads a Grafana JSON frame and writes it with
 * our encoders, so decoders we did not write can judge the bytes:
 *   frame_convert arrow IN.json OUT.arrow
 *   frame_convert json  IN.json OUT.json
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frames/arrow.h"
#include "frames/frame_json.h"

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    buf_t b;
    buf_init(&b);
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) buf_append(&b, chunk, n);
    fclose(f);
    buf_append(&b, "", 0);
    return b.data;
}

int main(int argc, char **argv) {
    if (argc != 4 || (strcmp(argv[1], "arrow") && strcmp(argv[1], "json"))) {
        fprintf(stderr, "usage: frame_convert arrow|json IN.json OUT\n");
        return 2;
    }
    char *text = slurp(argv[2]);
    if (!text) { perror(argv[2]); return 1; }
    frame_t *frame;
    char err[256];
    if (frame_from_json(text, &frame, err, sizeof err) != 0) {
        fprintf(stderr, "%s: %s\n", argv[2], err);
        free(text);
        return 1;
    }
    buf_t out;
    buf_init(&out);
    int r = strcmp(argv[1], "arrow") == 0 ? arrow_write_frame(frame, &out) : frame_to_json(frame, &out);
    FILE *f = r == 0 ? fopen(argv[3], "wb") : NULL;
    if (!f || fwrite(out.data, 1, out.len, f) != out.len) r = -1;
    if (f && fclose(f) != 0) r = -1;
    if (r != 0) fprintf(stderr, "cannot encode or write %s\n", argv[3]);
    buf_free(&out);
    frame_free(frame);
    free(text);
    return r == 0 ? 0 : 1;
}
