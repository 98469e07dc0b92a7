/*
 * frame: Keel's wire frames, bytes <-> decoded messages. No sockets here.
 *
 *   offset 0  u32 magic    "KEL1" (0x314c454b little-endian)
 *          4  u32 hlen     length of the protobuf Envelope that follows
 *          8  u32 plen     length of the raw payload after the header
 *         12  u32 reserved 0
 *         16  Envelope (hlen bytes), then payload (plen bytes)
 *
 * All integers little-endian. A frame whose magic or reserved word is wrong,
 * whose lengths pass the limits, or whose header does not decode is refused
 * and the reader stops for good: the connection must be closed.
 *
 * The reader is a state machine fed with whatever bytes arrived:
 *
 *   PREFIX --16 bytes--> HEADER --hlen bytes, decoded--> PAYLOAD --plen--> PREFIX
 *                                        \-- plen == 0 ------------------/
 *
 * After a header decodes, hooks.payload_buf may name where the payload is to
 * go (a caller's read buffer); large payloads can then be read from the
 * socket straight into place (frame_reader_direct).
 */
#ifndef KEEL_FRAME_H
#define KEEL_FRAME_H

#include "keel.pb-c.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FRAME_MAGIC       0x314c454bu
#define FRAME_PREFIX_SIZE 16u
#define FRAME_MAX_HEADER  (1u << 20)
#define FRAME_MAX_PAYLOAD (16u << 20)

struct frame_hooks {
    /*
     * Optional. A header has been decoded and plen > 0 bytes of payload
     * follow: return a buffer of at least plen bytes that stays valid until
     * frame() runs or frame_reader_discard() is called, or NULL for a
     * malloc'd one.
     */
    void *(*payload_buf)(void *ctx, const Keel__Envelope *env, uint32_t plen);
    /*
     * A whole frame. Takes ownership of env (free with
     * keel__envelope__free_unpacked) and, when !external, of payload (free()).
     * payload is NULL when plen is 0; a discarded payload arrives as NULL
     * with plen set. Return non-zero to stop frame_reader_feed at once (the
     * value is returned from it).
     */
    int (*frame)(void *ctx, Keel__Envelope *env, uint8_t *payload, uint32_t plen, bool external);
    void *ctx;
};

struct frame_reader {
    struct frame_hooks hooks;
    uint32_t max_header, max_payload;
    int state; /* 0 prefix, 1 header, 2 payload, -1 failed */
    uint8_t prefix[FRAME_PREFIX_SIZE];
    uint32_t have;  /* bytes of the current part received */
    uint32_t hlen, plen;
    uint8_t *hbuf;
    Keel__Envelope *env;
    uint8_t *payload;
    bool external;  /* payload is the hooks' buffer */
    bool discard;   /* drop the rest of this payload */
};

/* limits of 0 mean FRAME_MAX_HEADER / FRAME_MAX_PAYLOAD. */
void frame_reader_init(struct frame_reader *r, const struct frame_hooks *hooks,
                       uint32_t max_header, uint32_t max_payload);
void frame_reader_free(struct frame_reader *r);

/*
 * Consumes len bytes. Returns 0 when all were consumed, a hook's non-zero
 * value, or a negative errno when the stream is bad: -EPROTO (magic,
 * reserved word, undecodable header), -EMSGSIZE (a length over its limit),
 * -ENOMEM. After a negative return the reader accepts nothing more.
 */
int frame_reader_feed(struct frame_reader *r, const uint8_t *data, size_t len);

/*
 * In the PAYLOAD state, where the rest of the payload goes: the socket may
 * read up to *len bytes straight into *dst, then call
 * frame_reader_direct_done with the count. False in other states.
 */
bool frame_reader_direct(struct frame_reader *r, uint8_t **dst, size_t *len);
int frame_reader_direct_done(struct frame_reader *r, size_t n);

/* True between frames (no partial frame buffered). */
bool frame_reader_idle(const struct frame_reader *r);

/* The payload being received into an external buffer must not be touched
 * any more: its remaining bytes are dropped, and the frame is delivered with
 * a NULL payload. */
void frame_reader_discard(struct frame_reader *r);

/* The Envelope of the frame being received, or NULL between frames. */
const Keel__Envelope *frame_reader_current(const struct frame_reader *r);

/*
 * Encodes prefix + header for a frame with plen payload bytes into one
 * malloc'd buffer (*out, *outlen). Returns 0, -EMSGSIZE, or -ENOMEM.
 */
int frame_encode(const Keel__Envelope *env, uint32_t plen, uint8_t **out, size_t *outlen);

#endif
