/*
 * frame: see frame.h for the format and the reader's states.
 */
#include "frame.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

enum { ST_PREFIX = 0, ST_HEADER = 1, ST_PAYLOAD = 2, ST_FAILED = -1 };

static uint32_t get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put_le32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

void frame_reader_init(struct frame_reader *r, const struct frame_hooks *hooks,
                       uint32_t max_header, uint32_t max_payload)
{
    memset(r, 0, sizeof(*r));
    r->hooks = *hooks;
    r->max_header = max_header ? max_header : FRAME_MAX_HEADER;
    r->max_payload = max_payload ? max_payload : FRAME_MAX_PAYLOAD;
}

static void reset_frame(struct frame_reader *r)
{
    free(r->hbuf);
    r->hbuf = NULL;
    if (r->env)
        keel__envelope__free_unpacked(r->env, NULL);
    r->env = NULL;
    if (!r->external)
        free(r->payload);
    r->payload = NULL;
    r->external = false;
    r->discard = false;
    r->have = 0;
}

void frame_reader_free(struct frame_reader *r)
{
    reset_frame(r);
    r->state = ST_FAILED;
}

static int fail(struct frame_reader *r, int err)
{
    reset_frame(r);
    r->state = ST_FAILED;
    return err;
}

/* Hands the finished frame to the hook and returns to the PREFIX state. */
static int deliver(struct frame_reader *r)
{
    Keel__Envelope *env = r->env;
    uint8_t *payload = r->discard ? NULL : r->payload;
    bool external = r->external;
    uint32_t plen = r->plen;

    if (r->discard && !r->external)
        free(r->payload);
    r->env = NULL;
    r->payload = NULL;
    r->external = false;
    r->discard = false;
    r->have = 0;
    r->state = ST_PREFIX;
    return r->hooks.frame(r->hooks.ctx, env, payload, plen, external);
}

static int header_done(struct frame_reader *r)
{
    r->env = keel__envelope__unpack(NULL, r->hlen, r->hbuf);
    free(r->hbuf);
    r->hbuf = NULL;
    if (!r->env)
        return fail(r, -EPROTO);
    r->have = 0;
    if (r->plen == 0)
        return deliver(r);
    r->payload = r->hooks.payload_buf ? r->hooks.payload_buf(r->hooks.ctx, r->env, r->plen) : NULL;
    r->external = r->payload != NULL;
    if (!r->payload) {
        r->payload = malloc(r->plen);
        if (!r->payload)
            return fail(r, -ENOMEM);
    }
    r->state = ST_PAYLOAD;
    return 0;
}

static int prefix_done(struct frame_reader *r)
{
    if (get_le32(r->prefix) != FRAME_MAGIC || get_le32(r->prefix + 12) != 0)
        return fail(r, -EPROTO);
    r->hlen = get_le32(r->prefix + 4);
    r->plen = get_le32(r->prefix + 8);
    if (r->hlen == 0)
        return fail(r, -EPROTO);
    if (r->hlen > r->max_header || r->plen > r->max_payload)
        return fail(r, -EMSGSIZE);
    r->hbuf = malloc(r->hlen);
    if (!r->hbuf)
        return fail(r, -ENOMEM);
    r->have = 0;
    r->state = ST_HEADER;
    return 0;
}

int frame_reader_feed(struct frame_reader *r, const uint8_t *data, size_t len)
{
    while (len > 0) {
        uint32_t want, n;
        int rc;

        switch (r->state) {
        case ST_PREFIX:
            want = FRAME_PREFIX_SIZE - r->have;
            n = len < want ? (uint32_t)len : want;
            memcpy(r->prefix + r->have, data, n);
            r->have += n;
            rc = r->have == FRAME_PREFIX_SIZE ? prefix_done(r) : 0;
            break;
        case ST_HEADER:
            want = r->hlen - r->have;
            n = len < want ? (uint32_t)len : want;
            memcpy(r->hbuf + r->have, data, n);
            r->have += n;
            rc = r->have == r->hlen ? header_done(r) : 0;
            break;
        case ST_PAYLOAD:
            want = r->plen - r->have;
            n = len < want ? (uint32_t)len : want;
            if (!r->discard)
                memcpy(r->payload + r->have, data, n);
            r->have += n;
            rc = r->have == r->plen ? deliver(r) : 0;
            break;
        default:
            return -EPROTO;
        }
        if (rc)
            return rc;
        data += n;
        len -= n;
    }
    return 0;
}

bool frame_reader_direct(struct frame_reader *r, uint8_t **dst, size_t *len)
{
    if (r->state != ST_PAYLOAD || r->discard)
        return false;
    *dst = r->payload + r->have;
    *len = r->plen - r->have;
    return true;
}

int frame_reader_direct_done(struct frame_reader *r, size_t n)
{
    if (r->state != ST_PAYLOAD || n > r->plen - r->have)
        return fail(r, -EPROTO);
    r->have += (uint32_t)n;
    return r->have == r->plen ? deliver(r) : 0;
}

bool frame_reader_idle(const struct frame_reader *r)
{
    return r->state == ST_PREFIX && r->have == 0;
}

void frame_reader_discard(struct frame_reader *r)
{
    if (r->state == ST_PAYLOAD && r->external) {
        r->discard = true;
        r->payload = NULL;
        r->external = false;
    }
}

const Keel__Envelope *frame_reader_current(const struct frame_reader *r)
{
    return r->state == ST_PAYLOAD ? r->env : NULL;
}

int frame_encode(const Keel__Envelope *env, uint32_t plen, uint8_t **out, size_t *outlen)
{
    size_t hlen = keel__envelope__get_packed_size(env);
    uint8_t *buf;

    if (hlen == 0 || hlen > FRAME_MAX_HEADER || plen > FRAME_MAX_PAYLOAD)
        return -EMSGSIZE;
    buf = malloc(FRAME_PREFIX_SIZE + hlen);
    if (!buf)
        return -ENOMEM;
    put_le32(buf, FRAME_MAGIC);
    put_le32(buf + 4, (uint32_t)hlen);
    put_le32(buf + 8, plen);
    put_le32(buf + 12, 0);
    keel__envelope__pack(env, buf + FRAME_PREFIX_SIZE);
    *out = buf;
    *outlen = FRAME_PREFIX_SIZE + hlen;
    return 0;
}
