#include "timeexpr.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define MS_MAX_REASONABLE (253402300799999LL) /* 9999-12-31T23:59:59.999Z */

static int unit_ms(const char **p, int64_t *mul) {
    const char *s = *p;
    if (s[0] == 'm' && s[1] == 's') { *mul = 1; *p = s + 2; return 0; }
    switch (s[0]) {
    case 's': *mul = 1000; break;
    case 'm': *mul = 60000; break;
    case 'h': *mul = 3600000; break;
    case 'd': *mul = 86400000; break;
    case 'w': *mul = 7LL * 86400000; break;
    case 'M': *mul = 30LL * 86400000; break;
    case 'y': *mul = 365LL * 86400000; break;
    default: return -1;
    }
    *p = s + 1;
    return 0;
}

/* digits followed by a unit; advances *p. */
static int amount(const char **p, int64_t *out) {
    const char *s = *p;
    int64_t v = 0;
    int digits = 0;
    while (*s >= '0' && *s <= '9') {
        if (++digits > 12) return -1;
        v = v * 10 + (*s++ - '0');
    }
    if (!digits) return -1;
    int64_t mul;
    if (unit_ms(&s, &mul) != 0) return -1;
    if (v > MS_MAX_REASONABLE / mul) return -1;
    *out = v * mul;
    *p = s;
    return 0;
}

int te_parse_duration(const char *s, int64_t *out_ms) {
    if (!s || !*s) return -1;
    bool plain = true;
    for (const char *q = s; *q; q++)
        if (*q < '0' || *q > '9') plain = false;
    if (plain) {
        if (strlen(s) > 9) return -1;
        long long v = 0;
        sscanf(s, "%lld", &v);
        *out_ms = (int64_t)v * 1000;
        return 0;
    }
    int64_t total = 0;
    const char *p = s;
    while (*p) {
        int64_t v;
        if (amount(&p, &v) != 0) return -1;
        total += v;
        if (total > MS_MAX_REASONABLE) return -1;
    }
    *out_ms = total;
    return 0;
}

static int fixed_digits(const char **p, int n, int *out) {
    int v = 0;
    for (int i = 0; i < n; i++) {
        char c = (*p)[i];
        if (c < '0' || c > '9') return -1;
        v = v * 10 + (c - '0');
    }
    *p += n;
    *out = v;
    return 0;
}

static int parse_iso(const char *s, int64_t *out_ms) {
    int Y, Mo, D, h = 0, mi = 0, sec = 0, ms = 0;
    const char *p = s;
    if (fixed_digits(&p, 4, &Y) || *p++ != '-' || fixed_digits(&p, 2, &Mo) || *p++ != '-' ||
        fixed_digits(&p, 2, &D))
        return -1;
    if (*p == 'T' || *p == 't' || *p == ' ') {
        p++;
        if (fixed_digits(&p, 2, &h) || *p++ != ':' || fixed_digits(&p, 2, &mi)) return -1;
        if (*p == ':') {
            p++;
            if (fixed_digits(&p, 2, &sec)) return -1;
            if (*p == '.' || *p == ',') {
                p++;
                int nd = 0, frac = 0;
                while (*p >= '0' && *p <= '9') {
                    if (nd < 3) frac = frac * 10 + (*p - '0');
                    nd++;
                    p++;
                }
                if (!nd) return -1;
                for (int i = nd; i < 3; i++) frac *= 10;
                ms = frac;
            }
        }
    }
    int64_t offset_min = 0;
    if (*p == 'Z' || *p == 'z') p++;
    else if (*p == '+' || *p == '-') {
        int sign = *p++ == '-' ? -1 : 1, oh, om = 0;
        if (fixed_digits(&p, 2, &oh)) return -1;
        if (*p == ':') p++;
        if (*p && fixed_digits(&p, 2, &om)) return -1;
        if (oh > 23 || om > 59) return -1;
        offset_min = sign * (oh * 60 + om);
    }
    if (*p) return -1;
    if (Mo < 1 || Mo > 12 || D < 1 || D > 31 || h > 23 || mi > 59 || sec > 60) return -1;
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    tm.tm_year = Y - 1900;
    tm.tm_mon = Mo - 1;
    tm.tm_mday = D;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = sec;
    time_t t = timegm(&tm);
    if (tm.tm_mday != D) return -1; /* e.g. February 30th normalised away */
    *out_ms = (int64_t)t * 1000 + ms - offset_min * 60000;
    return 0;
}

int te_parse_time(const char *s, int64_t now_ms, int64_t *out_ms) {
    if (!s || !*s) return -1;
    if (strncmp(s, "now", 3) == 0) {
        int64_t t = now_ms;
        const char *p = s + 3;
        while (*p) {
            int sign = *p == '-' ? -1 : (*p == '+' ? 1 : 0);
            if (!sign) return -1;
            p++;
            int64_t v;
            if (amount(&p, &v) != 0) return -1;
            t += sign * v;
        }
        *out_ms = t;
        return 0;
    }
    bool digits = true;
    for (const char *q = s; *q; q++)
        if (*q < '0' || *q > '9') digits = false;
    if (digits) {
        if (strlen(s) > 15) return -1;
        long long v = 0;
        sscanf(s, "%lld", &v);
        *out_ms = (int64_t)v;
        return 0;
    }
    return parse_iso(s, out_ms);
}

void te_format_ns(int64_t ns, char *out, size_t cap) {
    int64_t ms = ns / 1000000;
    if (ns % 1000000 < 0) ms--;
    int64_t secs = ms / 1000;
    int64_t rem = ms % 1000;
    if (rem < 0) {
        rem += 1000;
        secs--;
    }
    time_t t = (time_t)secs;
    struct tm tm;
    if (!gmtime_r(&t, &tm) || tm.tm_year + 1900 < 0 || tm.tm_year + 1900 > 9999) {
        snprintf(out, cap, "%lldns", (long long)ns);
        return;
    }
    snprintf(out, cap, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
             tm.tm_hour, tm.tm_min, tm.tm_sec, (int)rem);
}

void te_format_interval(int64_t ms, char *out, size_t cap) {
    if (ms <= 0) snprintf(out, cap, "0ms");
    else if (ms % 86400000 == 0) snprintf(out, cap, "%lldd", (long long)(ms / 86400000));
    else if (ms % 3600000 == 0) snprintf(out, cap, "%lldh", (long long)(ms / 3600000));
    else if (ms % 60000 == 0) snprintf(out, cap, "%lldm", (long long)(ms / 60000));
    else if (ms % 1000 == 0) snprintf(out, cap, "%llds", (long long)(ms / 1000));
    else snprintf(out, cap, "%lldms", (long long)ms);
}
