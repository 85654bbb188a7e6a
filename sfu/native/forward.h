/* The native forwarder: Egress (one transport's socket and outbound SRTP) and the per-packet state
 * of a DownTrack. See forward.c. */
#ifndef BS_FORWARD_H
#define BS_FORWARD_H

#include <stdint.h>
#include <stddef.h>

/* An RTP packet's layout, as sfu/rtp.py `parse` finds it (offsets into the packet). */
typedef struct bs_rtp_view {
    uint8_t marker;
    uint8_t pt;
    uint16_t seq;
    uint32_t ts;
    uint32_t ssrc;
    size_t ext_start; /* first byte of the extension elements, 0 when there are none */
    size_t ext_end;
    uint8_t one_byte;
    size_t payload_start;
    size_t payload_end; /* without RTP padding */
} bs_rtp_view;

/* VP8 payload descriptor (RFC 7741), as sfu/rtp.py `vp8_descriptor` reads it. */
typedef struct bs_vp8 {
    uint8_t start;
    uint8_t keyframe;
    int picture_id; /* -1 when absent */
    size_t picture_id_pos;
    int picture_id_bits;
    int tl0picidx; /* -1 when absent */
    size_t tl0picidx_pos;
    int tid;
    uint8_t layer_sync;
    size_t size;
} bs_vp8;

/* What is wrong with a packet (sfu.rtp.RtpError's reasons, parse.c `reason`). */
enum {
    BS_TRUNCATED_HEADER = -1,
    BS_BAD_VERSION = -2,
    BS_TRUNCATED_EXTENSION = -3,
    BS_BAD_EXTENSION_LENGTH = -4,
    BS_BAD_PADDING = -5,
    BS_VP8_EMPTY = -6,
    BS_VP8_TRUNCATED = -7,
};

/* 0, or one of the negative codes above when the bytes are not a valid RTP packet / VP8
 * descriptor (parse.c). */
int bs_rtp_parse(const uint8_t *data, size_t n, bs_rtp_view *v);
int bs_vp8_parse(const uint8_t *payload, size_t n, bs_vp8 *d);

/* forward.c: while held, fan-outs and sends queue their datagrams instead of flushing them; the
 * last release flushes every queue (one sendmmsg per socket). MediaSocket holds the sends while it
 * delivers one received batch. Calls nest. */
void bs_send_hold(void);
void bs_send_release(void);

#endif
