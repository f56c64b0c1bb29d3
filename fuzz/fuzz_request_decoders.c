/*
 * fuzz_request_decoders: the protobuf-c decoders of every request type the
 * handlers unpack, plus the settings checks run on the decoded URL.
 *
 * The first byte picks the type; the rest is the serialized message (what
 * hnd_unpack gets from the deframer). When it decodes:
 *   - pack it again (into an exact-size buffer), unpack that, and pack again:
 *     both decodes succeed, both packed sizes agree with what pack wrote, and
 *     the two encodings are byte-identical (re-encoding is stable);
 *   - for the pluginv2 requests, run fetch_url_parse() (the settings URL check) on
 *     the plugin context like the handlers do, and check the verdict against
 *     the URL's shape.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "goplugin.pb-c.h"
#include "fetch/url.h"
#include "health.pb-c.h"
#include "pluginv2.pb-c.h"

#include "fuzz_check.h"

static const ProtobufCMessageDescriptor *const types[] = {
    &pluginv2__query_data_request__descriptor,
    &pluginv2__check_health_request__descriptor,
    &pluginv2__collect_metrics_request__descriptor,
    &pluginv2__call_resource_request__descriptor,
    &grpc__health__v1__health_check_request__descriptor,
    &plugin__conn_info__descriptor,
};
#define NTYPES (sizeof types / sizeof types[0])

static uint8_t *pack_exact(const ProtobufCMessage *m, size_t *len) {
    size_t n = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(n ? n : 1);
    CHECK(buf != NULL, "oom");
    size_t w = protobuf_c_message_pack(m, buf);
    CHECK(w == n, "%s: get_packed_size %zu, pack wrote %zu", m->descriptor->name, n, w);
    *len = n;
    return buf;
}

static void check_settings(const Pluginv2__PluginContext *ctx) {
    const Pluginv2__DataSourceInstanceSettings *ds = ctx ? ctx->datasourceinstancesettings : NULL;
    const char *url = ds && ds->url ? ds->url : "";
    if (!ctx || !ctx->datasourceinstancesettings) CHECK(*url == '\0', "URL without data source settings");
    /* A small message buffer: the check must truncate, never overflow. */
    char small[16], msg[512];
    memset(small, 'x', sizeof small);
    fetch_url parsed;
    int r1 = fetch_url_parse(url, &parsed, small, sizeof small);
    if (r1 != 0) CHECK(memchr(small, '\0', sizeof small) != NULL, "message not terminated");
    int r = fetch_url_parse(url, &parsed, msg, sizeof msg);
    CHECK(r == r1, "verdict depends on the message buffer");
    CHECK(r == 0 || r == -1, "verdict %d", r);
    if (r == 0) {
        /* Accepted: http(s)://host..., no spaces/controls, no credentials. */
        const char *rest = NULL;
        if (strncasecmp(url, "http://", 7) == 0) rest = url + 7;
        else if (strncasecmp(url, "https://", 8) == 0) rest = url + 8;
        CHECK(rest != NULL, "accepted a URL without http(s)://");
        size_t host_len = strcspn(rest, "/?#");
        CHECK(host_len > 0 && *rest != ':', "accepted a URL without a host");
        for (const unsigned char *p = (const unsigned char *)url; *p; p++)
            CHECK(*p > 0x20 && *p != 0x7F, "accepted a URL with byte 0x%02x", *p);
        CHECK(memchr(rest, '@', host_len) == NULL, "accepted credentials in the URL");
    } else {
        CHECK(strlen(msg) > 0, "rejected without a message");
    }
}

/* protobuf-c 1.4 keeps a field numbered 0 (only reachable with an overlong
 * tag varint such as 80 00) as an unknown field, then re-emits it as tag 00,
 * which its own decoder refuses. A library quirk, harmless to the plugin
 * (requests are never re-encoded); such inputs skip the round-trip check. */
static bool has_field0_unknown(const ProtobufCMessage *m) {
    for (unsigned i = 0; i < m->n_unknown_fields; i++)
        if (m->unknown_fields[i].tag == 0) return true;
    const ProtobufCMessageDescriptor *d = m->descriptor;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (f->type != PROTOBUF_C_TYPE_MESSAGE) continue;
        const char *base = (const char *)m;
        if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
            if (*(const uint32_t *)(base + f->quantifier_offset) != f->id) continue;
        }
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n = *(const size_t *)(base + f->quantifier_offset);
            ProtobufCMessage *const *arr = *(ProtobufCMessage *const *const *)(base + f->offset);
            for (size_t k = 0; k < n; k++)
                if (arr[k] && has_field0_unknown(arr[k])) return true;
        } else {
            const ProtobufCMessage *sub = *(const ProtobufCMessage *const *)(base + f->offset);
            if (sub && has_field0_unknown(sub)) return true;
        }
    }
    return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    const ProtobufCMessageDescriptor *desc = types[data[0] % NTYPES];
    ProtobufCMessage *m = protobuf_c_message_unpack(desc, NULL, size - 1, data + 1);
    if (!m) return 0;
    CHECK(m->descriptor == desc, "unpacked a different type");

    size_t len1, len2;
    uint8_t *enc1 = pack_exact(m, &len1);
    ProtobufCMessage *m2 = protobuf_c_message_unpack(desc, NULL, len1, enc1);
    if (!m2 && has_field0_unknown(m)) {
        free(enc1);
        protobuf_c_message_free_unpacked(m, NULL);
        return 0;
    }
    CHECK(m2 != NULL, "%s: re-encoded message (%zu bytes) does not decode", desc->name, len1);
    CHECK(protobuf_c_message_check(m2), "%s: decoded message fails protobuf_c_message_check", desc->name);
    uint8_t *enc2 = pack_exact(m2, &len2);
    CHECK(len1 == len2, "%s: packed size %zu, then %zu", desc->name, len1, len2);
    CHECK(memcmp(enc1, enc2, len1) == 0, "%s: re-encoding is not stable", desc->name);

    if (desc == &pluginv2__query_data_request__descriptor) {
        Pluginv2__QueryDataRequest *q = (Pluginv2__QueryDataRequest *)m;
        check_settings(q->plugincontext);
        for (size_t i = 0; i < q->n_queries; i++) CHECK(q->queries[i]->refid != NULL, "query without refId");
    } else if (desc == &pluginv2__check_health_request__descriptor) {
        check_settings(((Pluginv2__CheckHealthRequest *)m)->plugincontext);
    } else if (desc == &pluginv2__collect_metrics_request__descriptor) {
        check_settings(((Pluginv2__CollectMetricsRequest *)m)->plugincontext);
    } else if (desc == &pluginv2__call_resource_request__descriptor) {
        Pluginv2__CallResourceRequest *c = (Pluginv2__CallResourceRequest *)m;
        CHECK(c->path != NULL && c->method != NULL, "string fields must be non-NULL");
        check_settings(c->plugincontext);
    } else if (desc == &grpc__health__v1__health_check_request__descriptor) {
        CHECK(((Grpc__Health__V1__HealthCheckRequest *)m)->service != NULL, "service must be non-NULL");
    }

    free(enc1);
    free(enc2);
    protobuf_c_message_free_unpacked(m2, NULL);
    protobuf_c_message_free_unpacked(m, NULL);
    return 0;
}
