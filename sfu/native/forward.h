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

/* A VP8 (RFC 7741) or VP9 (RFC 9628) payload descriptor, as sfu/rtp.py `vp8_descriptor` and
 * `vp9_descriptor` read them: where the picture numbering sits, for a DownTrack to rewrite it. The
 * fields after `size` are VP9's (0 for VP8). */
typedef struct bs_picture {
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
    int sid;
    uint8_t end, flexible, inter_layer;
    int width, height;
    size_t ss_pos; /* the scalability structure's offset, 0 when absent */
} bs_picture;

/* DownTrack.picture_codec: which descriptor numbers a track's pictures (sfu.rtp PICTURE_*). */
enum { BS_PICTURE_NONE = 0, BS_PICTURE_VP8 = 1, BS_PICTURE_VP9 = 2, BS_PICTURE_AV1 = 3 /* none in the payload */ };
#define BS_SID_ALL 7 /* a cap on VP9 spatial ids (3 bits) that forwards every layer (downtrack.SID_ALL) */

/* What is wrong with a packet (sfu.rtp.RtpError's reasons, parse.c `reason`). */
enum {
    BS_TRUNCATED_HEADER = -1,
    BS_BAD_VERSION = -2,
    BS_TRUNCATED_EXTENSION = -3,
    BS_BAD_EXTENSION_LENGTH = -4,
    BS_BAD_PADDING = -5,
    BS_VP8_EMPTY = -6,
    BS_VP8_TRUNCATED = -7,
    BS_VP9_EMPTY = -8,
    BS_VP9_TRUNCATED = -9,
    BS_VP9_REFERENCES = -10,
};

/* 0, or one of the negative codes above when the bytes are not a valid RTP packet / VP8 or VP9
 * descriptor (parse.c). `bs_picture_parse` parses BS_PICTURE_VP8 or BS_PICTURE_VP9. */
int bs_rtp_parse(const uint8_t *data, size_t n, bs_rtp_view *v);
int bs_vp8_parse(const uint8_t *payload, size_t n, bs_picture *d);
int bs_vp9_parse(const uint8_t *payload, size_t n, bs_picture *d);
int bs_picture_parse(int codec, const uint8_t *payload, size_t n, bs_picture *d);
/* Header extension `xid` (its first element): 1 with its value at data[*start, *start + *len), 0 when
 * absent, BS_BAD_EXTENSION_LENGTH when an element before it overruns the block (parse.c). */
int bs_rtp_extension(const uint8_t *data, const bs_rtp_view *v, long xid, size_t *start, size_t *len);

/* forward.c: while held, fan-outs and sends queue their datagrams instead of flushing them; the
 * last release flushes every queue (one sendmmsg per socket). MediaSocket holds the sends while it
 * delivers one received batch. Calls nest. */
void bs_send_hold(void);
void bs_send_release(void);

/* gso.c: UDP_SEGMENT for Egress flushes. `bs_gso_runs` splits n queued datagram lengths into runs one
 * segmented send can carry (equal lengths, the last may be shorter; at most BS_GSO_MAX_SEGMENTS and
 * BS_GSO_MAX_BYTES) and writes each run's count to runs[]; it returns how many runs. */
#define BS_GSO_MAX_SEGMENTS 64 /* UDP_MAX_SEGMENTS of the oldest kernels with UDP_SEGMENT (4.18) */
#define BS_GSO_MAX_BYTES 60000 /* under the 64 KiB an IP packet (the unsegmented run) can hold */
int bs_gso_runs(const size_t *lens, int n, int *runs);
int bs_gso_enabled(void);  /* the process-wide switch (setting udp_gso), read when an Egress is made */
void bs_gso_refused(void); /* counts an Egress the kernel refused a segmented send */
void bs_gso_sent(int datagrams); /* counts a segmented send of `datagrams` (>= 2) the kernel took */

#ifdef Py_PYTHON_H
/* What ingress.c (IngressCore) calls in the other files. */
/* forward.c: DownTrack.forward of a parsed packet for each DownTrack of the list; 0, or -1 with an
 * exception set. `pic`: the parsed VP8/VP9 descriptor if the caller has it, else NULL. The counts of
 * what left are added up in *packets / *bytes. */
int bs_fanout(PyObject *downtracks, const uint8_t *data, size_t n, const bs_rtp_view *v, const bs_picture *pic,
              PyObject *layer, int keyframe, double now, unsigned long long *packets, unsigned long long *bytes);
/* reception.c: ReceptionCore; `next`: whether seq is the next number of its started stream (what
 * update calls IN_ORDER); update for seq/ts/arrival in update's ranges. */
int bs_is_reception(PyObject *o);
int bs_reception_next(PyObject *o, uint16_t seq);
int bs_reception_update(PyObject *o, uint16_t seq, uint32_t ts, double arrival);
/* remb.c: RembEstimator.add; -1 when `o` is not one or an argument is out of add's ranges, else 1
 * with *target set when the estimate was updated, 0 when not. */
int bs_remb_add(PyObject *o, long long arrival_ms, uint32_t ast, long long size, uint32_t ssrc, long long *target);
/* layer.c: LayerCore; Layer.account of one packet (nbytes 0..65535); its PacketRing (borrowed, or NULL). */
int bs_is_layer(PyObject *o);
void bs_layer_account(PyObject *o, long long nbytes, double now, int sid);
PyObject *bs_layer_ring(PyObject *o);
/* packet_ring.c: PacketRing. store: the packet's serial (the one it already has when the slot holds
 * the same packet), 0 when it cannot be stored (no memory, over 65535 bytes). get: the packet with
 * this seq and serial while the ring holds it, else NULL. */
#define BS_RING_SIZE 1024 /* as sfu/packet_ring.py RING_SIZE */
int bs_is_ring(PyObject *o);
unsigned long long bs_ring_store(PyObject *ring, uint16_t seq, const uint8_t *data, size_t n);
const uint8_t *bs_ring_get(PyObject *ring, uint16_t seq, unsigned long long serial, size_t *len);
/* traffic.c: sfu._native.Traffic, the packet and byte counters */
typedef struct {
    PyObject_HEAD
    unsigned long long packets_in, bytes_in, packets_out, bytes_out;
    long long latency_sample, latency_every;
} bs_traffic;
int bs_is_traffic(PyObject *o);
/* transport_arrivals.c: TransportArrivals.add; -1 when `o` is not one or arrival is out of range. */
int bs_is_arrivals(PyObject *o);
int bs_arrivals_add(PyObject *o, uint16_t seq, double arrival);

#endif /* Py_PYTHON_H */

/* transport_seq.c: stamp transport-wide sequence number `seq` under one-byte id `xid` into the
 * packet (len bytes, cap bytes of room). Returns the new length, 0 when it cannot carry one. */
size_t bs_tcc_stamp(uint8_t *buf, size_t len, size_t cap, int xid, uint16_t seq);
/* The same for any element: `size` (1-16) bytes of `value` under one-byte id `xid`. */
size_t bs_ext_stamp(uint8_t *buf, size_t len, size_t cap, int xid, const uint8_t *value, size_t size);

/* pacer.c: a token bucket and the sizes of the packets waiting for it (twin of sfu/pacer.py, whose
 * docstring gives the rule). The caller keeps the packets, in the same ring order: push returns the
 * slot a packet waits in (-1 when BS_PACER_MAX_HELD wait: pop first), pop the size of the oldest,
 * which leaves slot `head`, if it may go now (else 0). */
#define BS_PACER_MAX_HELD 512 /* as sfu/pacer.py MAX_HELD */
typedef struct {
    double rate;   /* bytes per second; 0: nothing waits */
    double tokens; /* bytes that may go now (below 0: owed) */
    double last;
    double at[BS_PACER_MAX_HELD];
    uint32_t size[BS_PACER_MAX_HELD];
    unsigned head, count;
    unsigned long long held, forced;
} bs_pacer;
void bs_pacer_set_rate(bs_pacer *p, double bps, double now);
int bs_pacer_push(bs_pacer *p, double now, uint32_t size);
uint32_t bs_pacer_pop(bs_pacer *p, double now);
/* What push then pop would say for a packet when none waits: 1 it goes now (tokens taken), 0 it
 * must wait. */
int bs_pacer_pass(bs_pacer *p, double now, uint32_t size);

#endif
