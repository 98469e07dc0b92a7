/*
 * Unit tests for common/frame: reassembly at every split point, limits,
 * garbage, and direct payload reads.
 */
#include "frame.h"

#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct got {
    int frames;
    uint64_t call_id;
    char path[64];
    uint8_t payload[8192];
    uint32_t plen;
    bool external;
    uint8_t ext[8192];
    bool use_ext;
};

static void *hook_buf(void *ctx, const Keel__Envelope *env, uint32_t plen)
{
    struct got *g = ctx;
    return g->use_ext && plen <= sizeof(g->ext) ? g->ext : NULL;
}

static int hook_frame(void *ctx, Keel__Envelope *env, uint8_t *payload, uint32_t plen,
                      bool external)
{
    struct got *g = ctx;

    g->frames++;
    g->call_id = env->call_id;
    if (env->body_case == KEEL__ENVELOPE__BODY_STAT_REQ)
        snprintf(g->path, sizeof(g->path), "%s", env->stat_req->path);
    g->plen = plen;
    g->external = external;
    if (payload && plen <= sizeof(g->payload))
        memcpy(g->payload, payload, plen);
    keel__envelope__free_unpacked(env, NULL);
    if (!external)
        free(payload);
    return 0;
}

/* A frame with a StatReq header and plen payload bytes (i & 0xff). */
static uint8_t *make_frame(uint64_t id, const char *path, uint32_t plen, size_t *len)
{
    Keel__Envelope env = KEEL__ENVELOPE__INIT;
    Keel__StatReq req = KEEL__STAT_REQ__INIT;
    uint8_t *hdr, *out;
    size_t hlen;

    req.path = (char *)path;
    env.call_id = id;
    env.body_case = KEEL__ENVELOPE__BODY_STAT_REQ;
    env.stat_req = &req;
    ck_assert_int_eq(frame_encode(&env, plen, &hdr, &hlen), 0);
    out = malloc(hlen + plen);
    memcpy(out, hdr, hlen);
    for (uint32_t i = 0; i < plen; i++)
        out[hlen + i] = (uint8_t)i;
    free(hdr);
    *len = hlen + plen;
    return out;
}

static void reader_for(struct frame_reader *r, struct got *g)
{
    struct frame_hooks h = {hook_buf, hook_frame, g};
    frame_reader_init(r, &h, 0, 0);
}

START_TEST(split_at_every_byte)
{
    size_t len;
    uint8_t *f = make_frame(42, "/vm/disk.img", 3000, &len);

    for (size_t cut = 0; cut <= len; cut++) {
        struct frame_reader r;
        struct got g = {0};

        reader_for(&r, &g);
        ck_assert_int_eq(frame_reader_feed(&r, f, cut), 0);
        ck_assert_int_eq(g.frames, cut == len ? 1 : 0);
        ck_assert_int_eq(frame_reader_feed(&r, f + cut, len - cut), 0);
        ck_assert_int_eq(g.frames, 1);
        ck_assert_uint_eq(g.call_id, 42);
        ck_assert_str_eq(g.path, "/vm/disk.img");
        ck_assert_uint_eq(g.plen, 3000);
        ck_assert_mem_eq(g.payload, f + len - 3000, 3000);
        ck_assert(frame_reader_idle(&r));
        frame_reader_free(&r);
    }
    free(f);
}
END_TEST

START_TEST(byte_by_byte_many_frames)
{
    size_t l1, l2;
    uint8_t *f1 = make_frame(1, "/a", 0, &l1), *f2 = make_frame(2, "/b", 17, &l2);
    uint8_t *both = malloc(l1 + l2);
    struct frame_reader r;
    struct got g = {0};

    memcpy(both, f1, l1);
    memcpy(both + l1, f2, l2);
    reader_for(&r, &g);
    for (size_t i = 0; i < l1 + l2; i++)
        ck_assert_int_eq(frame_reader_feed(&r, both + i, 1), 0);
    ck_assert_int_eq(g.frames, 2);
    ck_assert_uint_eq(g.call_id, 2);
    ck_assert_str_eq(g.path, "/b");
    /* Both at once. */
    g.frames = 0;
    ck_assert_int_eq(frame_reader_feed(&r, both, l1 + l2), 0);
    ck_assert_int_eq(g.frames, 2);
    frame_reader_free(&r);
    free(both);
    free(f1);
    free(f2);
}
END_TEST

static int feed_prefix(uint32_t magic, uint32_t hlen, uint32_t plen, uint32_t reserved)
{
    uint8_t p[16];
    struct frame_reader r;
    struct got g = {0};
    int rc;

    memcpy(p, &magic, 4);
    memcpy(p + 4, &hlen, 4);
    memcpy(p + 8, &plen, 4);
    memcpy(p + 12, &reserved, 4);
    reader_for(&r, &g);
    rc = frame_reader_feed(&r, p, sizeof(p));
    /* A failed reader accepts nothing more. */
    if (rc < 0)
        ck_assert_int_lt(frame_reader_feed(&r, p, 1), 0);
    frame_reader_free(&r);
    ck_assert_int_eq(g.frames, 0);
    return rc;
}

START_TEST(bad_prefixes)
{
    ck_assert_int_eq(feed_prefix(0xdeadbeef, 10, 0, 0), -EPROTO);
    ck_assert_int_eq(feed_prefix(FRAME_MAGIC, 10, 0, 1), -EPROTO);
    ck_assert_int_eq(feed_prefix(FRAME_MAGIC, 0, 0, 0), -EPROTO);
    ck_assert_int_eq(feed_prefix(FRAME_MAGIC, FRAME_MAX_HEADER + 1, 0, 0), -EMSGSIZE);
    ck_assert_int_eq(feed_prefix(FRAME_MAGIC, 10, FRAME_MAX_PAYLOAD + 1, 0), -EMSGSIZE);
    ck_assert_int_eq(feed_prefix(FRAME_MAGIC, 0xffffffffu, 0xffffffffu, 0), -EMSGSIZE);
    ck_assert_int_eq(feed_prefix(FRAME_MAGIC, 10, 100, 0), 0);
}
END_TEST

START_TEST(garbage_header)
{
    uint8_t buf[16 + 32];
    uint32_t magic = FRAME_MAGIC, hlen = 32, plen = 0, res = 0;
    struct frame_reader r;
    struct got g = {0};

    memcpy(buf, &magic, 4);
    memcpy(buf + 4, &hlen, 4);
    memcpy(buf + 8, &plen, 4);
    memcpy(buf + 12, &res, 4);
    /* Field 1 (call_id) with wire type 7 does not exist in protobuf. */
    memset(buf + 16, 0x0f, 32);
    reader_for(&r, &g);
    ck_assert_int_eq(frame_reader_feed(&r, buf, sizeof(buf)), -EPROTO);
    ck_assert_int_eq(g.frames, 0);
    frame_reader_free(&r);
}
END_TEST

START_TEST(random_garbage_never_crashes)
{
    srand(7);
    for (int round = 0; round < 2000; round++) {
        uint8_t buf[256];
        struct frame_reader r;
        struct got g = {0};
        size_t n = (size_t)(rand() % (int)sizeof(buf));

        for (size_t i = 0; i < n; i++)
            buf[i] = (uint8_t)rand();
        if (round & 1) { /* a valid magic, random rest */
            uint32_t m = FRAME_MAGIC;
            memcpy(buf, &m, 4);
        }
        reader_for(&r, &g);
        int rc = frame_reader_feed(&r, buf, n);
        ck_assert(rc <= 0);
        frame_reader_free(&r);
    }
}
END_TEST

START_TEST(truncated_frame_waits)
{
    size_t len;
    uint8_t *f = make_frame(9, "/x", 100, &len);
    struct frame_reader r;
    struct got g = {0};

    reader_for(&r, &g);
    ck_assert_int_eq(frame_reader_feed(&r, f, len - 1), 0);
    ck_assert_int_eq(g.frames, 0);
    ck_assert(!frame_reader_idle(&r));
    frame_reader_free(&r); /* frees the partial frame */
    free(f);
}
END_TEST

START_TEST(direct_payload_into_external_buffer)
{
    size_t len, hlen;
    uint8_t *f = make_frame(5, "/d", 5000, &len);
    struct frame_reader r;
    struct got g = {0};
    uint8_t *dst;
    size_t room;

    g.use_ext = true;
    hlen = len - 5000;
    reader_for(&r, &g);
    ck_assert_int_eq(frame_reader_feed(&r, f, hlen + 10), 0);
    ck_assert(frame_reader_direct(&r, &dst, &room));
    ck_assert_ptr_eq(dst, g.ext + 10);
    ck_assert_uint_eq(room, 4990);
    memcpy(dst, f + hlen + 10, 4990);
    ck_assert_int_eq(frame_reader_direct_done(&r, 4990), 0);
    ck_assert_int_eq(g.frames, 1);
    ck_assert(g.external);
    for (uint32_t i = 0; i < 5000; i++)
        ck_assert_uint_eq(g.ext[i], (uint8_t)i);
    /* Discard mid-payload: delivered with no payload, buffer untouched after. */
    memset(g.ext, 0xEE, sizeof(g.ext));
    ck_assert_int_eq(frame_reader_feed(&r, f, hlen + 10), 0);
    frame_reader_discard(&r);
    ck_assert_int_eq(frame_reader_feed(&r, f + hlen + 10, 4990), 0);
    ck_assert_int_eq(g.frames, 2);
    ck_assert_uint_eq(g.ext[100], 0xEE);
    frame_reader_free(&r);
    free(f);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("frame");
    TCase *tc = tcase_create("core");
    SRunner *sr;
    int failed;

    tcase_add_test(tc, split_at_every_byte);
    tcase_add_test(tc, byte_by_byte_many_frames);
    tcase_add_test(tc, bad_prefixes);
    tcase_add_test(tc, garbage_header);
    tcase_add_test(tc, random_garbage_never_crashes);
    tcase_add_test(tc, truncated_frame_waits);
    tcase_add_test(tc, direct_payload_into_external_buffer);
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
