#include "jsonw.h"

#include <stdint.h>
#include <string.h>

/* Length of the valid UTF-8 sequence at s (1..4), or 0 when invalid. */
static size_t utf8_seq_len(const unsigned char *s, size_t n) {
    unsigned char c = s[0];
    size_t len;
    uint32_t cp;
    if (c < 0x80) return 1;
    if ((c & 0xE0) == 0xC0) { len = 2; cp = c & 0x1F; }
    else if ((c & 0xF0) == 0xE0) { len = 3; cp = c & 0x0F; }
    else if ((c & 0xF8) == 0xF0) { len = 4; cp = c & 0x07; }
    else return 0;
    if (n < len) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    /* Reject overlong forms, surrogates and values past U+10FFFF. */
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF)
        return 0;
    return len;
}

int jsonw_escape(char *buf, size_t cap, size_t *len, const char *s, size_t n) {
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s;
    size_t o = *len;
    for (size_t i = 0; i < n;) {
        char esc[8];
        size_t elen = 0, consumed = 1;
        unsigned char c = p[i];
        if (c == '"' || c == '\\') { esc[0] = '\\'; esc[1] = (char)c; elen = 2; }
        else if (c == '\n') { memcpy(esc, "\\n", 2); elen = 2; }
        else if (c == '\r') { memcpy(esc, "\\r", 2); elen = 2; }
        else if (c == '\t') { memcpy(esc, "\\t", 2); elen = 2; }
        else if (c < 0x20 || c == 0x7F) {
            memcpy(esc, "\\u00", 4);
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            elen = 6;
        } else if (c < 0x80) { esc[0] = (char)c; elen = 1; }
        else {
            size_t sl = utf8_seq_len(p + i, n - i);
            if (sl == 0) { memcpy(esc, "\\ufffd", 6); elen = 6; }
            else { memcpy(esc, p + i, sl); elen = sl; consumed = sl; }
        }
        if (o + elen > cap) { *len = o; return -1; }
        memcpy(buf + o, esc, elen);
        o += elen;
        i += consumed;
    }
    *len = o;
    return 0;
}


void jsonw_string(buf_t *b, const char *s, size_t n) {
    /* Worst case 6 output bytes per input byte, plus the quotes. */
    if (!buf_reserve(b, n * 6 + 2)) return;
    b->data[b->len++] = '"';
    size_t len = b->len;
    jsonw_escape(b->data, b->cap, &len, s, n);
    b->len = len;
    b->data[b->len++] = '"';
    b->data[b->len] = '\0';
}

bool jsonw_utf8_valid(const char *s, size_t n) {
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        size_t l = utf8_seq_len(p + i, n - i);
        if (l == 0) return false;
        i += l;
    }
    return true;
}

void jsonw_utf8_sanitize(buf_t *b, const char *s, size_t n) {
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        size_t l = utf8_seq_len(p + i, n - i);
        if (l == 0) { buf_append(b, "\xef\xbf\xbd", 3); i++; }
        else { buf_append(b, p + i, l); i += l; }
    }
}
