#include "router.h"

#include <stdio.h>
#include <string.h>

router_method *router_find(const router_t *r, const char *path) {
    for (size_t i = 0; i < r->count; i++)
        if (strcmp(r->methods[i].path, path) == 0) return &r->methods[i];
    return NULL;
}

int router_split_path(const char *path, const char **svc, size_t *svc_len, const char **method) {
    if (path[0] != '/') return -1;
    const char *slash = strchr(path + 1, '/');
    if (!slash || slash == path + 1 || slash[1] == '\0' || strchr(slash + 1, '/')) return -1;
    *svc = path + 1;
    *svc_len = (size_t)(slash - path - 1);
    *method = slash + 1;
    return 0;
}

void router_unknown_message(const router_t *r, const char *path, char *out, size_t cap) {
    const char *svc, *method;
    size_t svc_len;
    if (router_split_path(path, &svc, &svc_len, &method) != 0) {
        snprintf(out, cap, "malformed method name: %.200s", path);
        return;
    }
    for (size_t i = 0; i < r->count; i++) {
        const char *p = r->methods[i].path;
        if (strncmp(p + 1, svc, svc_len) == 0 && p[1 + svc_len] == '/') {
            snprintf(out, cap, "unknown method %.200s for service %.*s", method, (int)svc_len, svc);
            return;
        }
    }
    snprintf(out, cap, "unknown service %.*s", (int)svc_len, svc);
}
