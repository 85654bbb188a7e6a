/* The native forwarder: one call per received packet rewrites, protects and sends it for every
 * DownTrack of its Track, and keeps it for NACKs: once, in its layer's PacketRing (packet_ring.c), and
 * per DownTrack where it is there and the offsets applied (`sent_entry`), from which a NACK rebuilds
 * the packet sent.
 *
 * It is the C twin of `DownTrack.forward` (sfu/downtrack.py) and must behave identically: the unit
 * tests of tests/unit/sfu run against both (datapath = native | python). Python keeps the policy:
 * which layer each DownTrack targets, pauses, thinning (max_tid), NACK budgets, RTCP. The decisions
 * are plain attributes of the DownTrack, which this type stores in C so both sides read the same
 * fields without copies.
 *
 * Egress: the send side of one subscriber transport. It owns a dup() of the transport's UDP socket
 * (so a socket aioice closes can never be confused with a recycled descriptor), the outbound SRTP
 * session and its per-SSRC streams, and a queue flushed with sendmmsg once per received packet,
 * or once per received batch: while a MediaSocket delivers one recvmmsg batch it holds the sends
 * (bs_send_hold / bs_send_release), so the datagrams every packet of the batch produced for one
 * subscriber leave in one sendmmsg. A flush per batch, not on a timer: what a batch queued is sent
 * before the event loop waits again. The one exception is pacing (pacer.c, sfu/pacing.py): a video
 * packet above the subscriber's pacing rate waits, out of the queue, until `pace()` lets it go.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <string.h>
#include <time.h>
#include <netinet/udp.h>
#include <sys/socket.h>
#include <unistd.h>

#include "forward.h"
#include "srtp.h"

#define CACHE_SIZE 1024 /* as sfu/downtrack.py CACHE_SIZE */
#define CACHE_MASK (CACHE_SIZE - 1)
#define QUEUE_LEN 32           /* datagrams an Egress holds before it must flush */
#define QUEUE_BUF 1600         /* bytes per queued datagram (a larger packet is sent at once) */
#define MAX_STREAMS 4096       /* SSRCs one Egress protects for (two per m-line) */
#define MAX_PENDING_EGRESS 4096
#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103 /* linux/udp.h, Linux >= 4.18 */
#endif
#ifndef SOL_UDP
#define SOL_UDP 17
#endif

static inline int newer16(uint16_t a, uint16_t b) { return a != b && (uint16_t)(a - b) < 0x8000; }

/* ------------------------------------------------------------------------------------------------
 * Egress
 * ---------------------------------------------------------------------------------------------- */

#define TCC_HISTORY 4096 /* as sfu/transport_seq.py HISTORY */
/* room egress_extend may need: a new extension block with the playout delay (8 bytes), then the
 * transport-wide number (4 more) */
#define EXTEND_ROOM 16

typedef struct {
    double at;    /* time.monotonic() when queued */
    uint32_t size;
    int32_t seq;  /* the number this entry is for; -1: empty */
} tcc_entry;

/* An SSRC's SRTP state, whether its m-line negotiated transport-wide sequence numbers and the
 * playout delay, and whether its packets are paced (a video m-line's media SSRC). The SRTP stream
 * comes first: DownTracks keep `bs_srtp_stream *`, and the egress casts back. */
typedef struct {
    bs_srtp_stream srtp;
    uint8_t tcc;
    uint8_t delay;
    uint8_t paced;
} egress_stream_t;

typedef struct {
    bs_pacer pacer;
    uint8_t *pkt[BS_PACER_MAX_HELD];
    bs_srtp_stream *st[BS_PACER_MAX_HELD];
} egress_pacing;

typedef struct {
    PyObject_HEAD
    int fd; /* our dup() of the transport's socket; -1 once closed */
    struct sockaddr_storage addr;
    socklen_t addrlen;
    bs_srtp *srtp;
    /* per-SSRC SRTP streams: open addressing on the SSRC; streams are separately allocated so the
     * pointers DownTracks keep stay valid when the table grows */
    uint32_t *keys;
    bs_srtp_stream **streams;
    size_t cap, count;
    /* queued protected datagrams, flushed with one sendmmsg */
    int nq;
    int pending; /* on the module's list of egresses to flush */
    struct mmsghdr msgs[QUEUE_LEN];
    struct iovec iov[QUEUE_LEN];
    uint8_t bufs[QUEUE_LEN][QUEUE_BUF];
    /* UDP_SEGMENT (gso.c): one entry per run of the queue, its iovecs those of the run's datagrams */
    int gso; /* segment runs; cleared for good when the kernel refuses a segmented send */
    struct mmsghdr gmsgs[QUEUE_LEN];
    union {
        char buf[CMSG_SPACE(sizeof(uint16_t))];
        struct cmsghdr align;
    } gctl[QUEUE_LEN];
    unsigned long long sent, failures, errors_srtp, flushes, gso_sends;
    int last_errno;
    /* transport-wide congestion control (transport_seq.c): the negotiated extension id (0: off), the
     * next number, and per number when the packet was queued and its size, for the feedback */
    int tcc_id;
    uint16_t tcc_next;
    tcc_entry *tcc_hist;
    unsigned long long tcc_unstamped;
    /* the playout delay (sfu/playout_delay.py) stamped on the media of SSRCs that negotiated it: its
     * extension id (0: none is stamped) and the element's 3 bytes */
    int delay_id;
    uint8_t delay[3];
    /* pacing (pacer.c, sfu/pacing.py): the packets of paced SSRCs wait here, unprotected and
     * unnumbered (they are numbered when they leave, so the numbers follow the order on the wire),
     * in the pacer's slots, while its bucket says so; the module's clock (`pace`) lets them go */
    egress_pacing *pacing; /* allocated by the first set_pacing with a rate: NULL, nothing is paced */
    int pace_listed;       /* on the module's list of egresses with packets waiting */
} EgressObject;

static PyTypeObject EgressType;
static EgressObject *pending_egress[MAX_PENDING_EGRESS];
static size_t n_pending_egress;
static int send_hold; /* > 0 while a received batch is being delivered: flush when it is released */
/* the pacing clock: egresses with packets waiting (a reference each), what is called when one joins
 * (sfu.pacing arms a timer that calls `pace`), and the counts for the metrics */
static EgressObject *paced_egress[MAX_PENDING_EGRESS];
static size_t n_paced_egress;
static PyObject *pace_waker;
static unsigned long long paced_total, paced_forced;

/* time.monotonic() */
static inline double mono_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static bs_srtp_stream *egress_stream(EgressObject *e, uint32_t ssrc) {
    if (e->cap == 0 || (e->count + 1) * 2 > e->cap) {
        if (e->count >= MAX_STREAMS)
            goto lookup_only;
        size_t ncap = e->cap ? e->cap * 2 : 16;
        uint32_t *nk = calloc(ncap, sizeof(uint32_t));
        bs_srtp_stream **ns = calloc(ncap, sizeof(bs_srtp_stream *));
        if (!nk || !ns) {
            free(nk);
            free(ns);
            return NULL;
        }
        for (size_t i = 0; i < e->cap; i++) {
            if (!e->streams[i])
                continue;
            size_t j = (e->keys[i] * 2654435761u) & (ncap - 1);
            while (ns[j])
                j = (j + 1) & (ncap - 1);
            nk[j] = e->keys[i];
            ns[j] = e->streams[i];
        }
        free(e->keys);
        free(e->streams);
        e->keys = nk;
        e->streams = ns;
        e->cap = ncap;
    }
lookup_only:;
    size_t j = (ssrc * 2654435761u) & (e->cap - 1);
    while (e->streams[j]) {
        if (e->keys[j] == ssrc)
            return e->streams[j];
        j = (j + 1) & (e->cap - 1);
    }
    if (e->count >= MAX_STREAMS || (e->count + 1) * 2 > e->cap)
        return NULL;
    egress_stream_t *es = malloc(sizeof(*es));
    if (!es)
        return NULL;
    bs_srtp_stream_init(&es->srtp);
    es->tcc = 0;
    es->delay = 0;
    es->paced = 0;
    e->keys[j] = ssrc;
    e->streams[j] = &es->srtp;
    e->count++;
    return &es->srtp;
}

static inline int gso_refusal(int err) {
    return err == EIO || err == EINVAL || err == ENOPROTOOPT || err == EOPNOTSUPP;
}

/* Send the queue's runs (bs_gso_runs) with UDP_SEGMENT, one mmsghdr each. Returns the datagrams
 * sent; *stop is set when a send failed for another reason than a refusal of GSO (nothing more can
 * go now). After a refusal, or when nothing coalesces, the caller sends the rest one by one. */
static int egress_flush_gso(EgressObject *e, int *stop) {
    int n = e->nq, runs[QUEUE_LEN], done = 0;
    size_t lens[QUEUE_LEN];
    for (int i = 0; i < n; i++)
        lens[i] = e->iov[i].iov_len;
    int nr = bs_gso_runs(lens, n, runs);
    if (nr == n)
        return 0; /* no run longer than one datagram: the plain entries are the same sends */
    for (int r = 0, at = 0; r < nr; at += runs[r++]) {
        struct msghdr *h = &e->gmsgs[r].msg_hdr;
        h->msg_name = &e->addr;
        h->msg_namelen = e->addrlen;
        h->msg_iov = &e->iov[at];
        h->msg_iovlen = (size_t)runs[r];
        if (runs[r] > 1) {
            h->msg_control = e->gctl[r].buf;
            h->msg_controllen = sizeof(e->gctl[r].buf);
            struct cmsghdr *c = CMSG_FIRSTHDR(h);
            c->cmsg_level = SOL_UDP;
            c->cmsg_type = UDP_SEGMENT;
            c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
            uint16_t size = (uint16_t)lens[at];
            memcpy(CMSG_DATA(c), &size, sizeof(size));
        } else {
            h->msg_control = NULL;
            h->msg_controllen = 0;
        }
    }
    int sent_runs = 0;
    while (sent_runs < nr) {
        int r = sendmmsg(e->fd, e->gmsgs + sent_runs, (unsigned)(nr - sent_runs), 0);
        if (r <= 0) {
            if (r < 0 && errno == EINTR)
                continue;
            e->last_errno = r < 0 ? errno : 0;
            if (r < 0 && runs[sent_runs] > 1 && gso_refusal(errno)) {
                e->gso = 0; /* this kernel, device or route cannot: plain sends from now on */
                bs_gso_refused();
            } else {
                *stop = 1;
            }
            break;
        }
        e->flushes++;
        for (int k = sent_runs; k < sent_runs + r; k++) {
            done += runs[k];
            if (runs[k] > 1) {
                e->gso_sends++;
                bs_gso_sent(runs[k]);
            }
        }
        sent_runs += r;
    }
    return done;
}

static int egress_flush(EgressObject *e) {
    int n = e->nq, done = 0, stop = 0;
    if (e->gso && n > 1 && e->fd >= 0)
        done = egress_flush_gso(e, &stop);
    while (!stop && done < n && e->fd >= 0) {
        int r = sendmmsg(e->fd, e->msgs + done, (unsigned)(n - done), 0);
        if (r <= 0) {
            if (r < 0 && errno == EINTR)
                continue;
            e->last_errno = r < 0 ? errno : 0;
            break;
        }
        e->flushes++;
        done += r;
    }
    e->sent += (unsigned long long)done;
    e->failures += (unsigned long long)(n - done);
    e->nq = 0;
    return done;
}

static void flush_pending(void) {
    for (size_t i = 0; i < n_pending_egress; i++) {
        EgressObject *e = pending_egress[i];
        egress_flush(e);
        e->pending = 0;
        Py_DECREF(e);
    }
    n_pending_egress = 0;
}

/* Flush what is queued unless a received batch holds the sends. */
static inline void flush_unless_held(void) {
    if (!send_hold)
        flush_pending();
}

void bs_send_hold(void) { send_hold++; }

void bs_send_release(void) {
    if (send_hold > 0 && --send_hold == 0)
        flush_pending();
}

/* The next free queue buffer (QUEUE_BUF bytes): the caller writes a packet there, then commits it. */
static uint8_t *egress_slot(EgressObject *e) {
    if (e->nq == QUEUE_LEN)
        egress_flush(e);
    return e->bufs[e->nq];
}

/* Number the packet in buf (len bytes, cap of room) with the next transport-wide sequence number
 * and remember it; its new length (unchanged, and counted, when it cannot carry the number). */
static size_t egress_stamp(EgressObject *e, uint8_t *buf, size_t len, size_t cap) {
    size_t n = bs_tcc_stamp(buf, len, cap, e->tcc_id, e->tcc_next);
    if (!n) {
        e->tcc_unstamped++;
        return len;
    }
    if (e->tcc_hist) {
        tcc_entry *h = &e->tcc_hist[e->tcc_next % TCC_HISTORY];
        h->at = mono_now();
        h->size = (uint32_t)n;
        h->seq = e->tcc_next;
    }
    e->tcc_next++;
    return n;
}

/* The header extension elements this transport adds to an RTP packet of `st` (in buf: len bytes,
 * cap of room): the playout delay, then the transport-wide number (as sfu/transport.py's send does
 * on the Python path). Its new length. */
static inline size_t egress_extend(EgressObject *e, bs_srtp_stream *st, uint8_t *buf, size_t len, size_t cap) {
    egress_stream_t *es = (egress_stream_t *)st;
    if (e->delay_id && es->delay) {
        size_t n = bs_ext_stamp(buf, len, cap, e->delay_id, e->delay, 3);
        if (n)
            len = n;
    }
    if (e->tcc_id && es->tcc)
        len = egress_stamp(e, buf, len, cap);
    return len;
}

/* Protect the `len` bytes written into egress_slot() and queue them now. 1 queued, 0 dropped. */
static int egress_queue(EgressObject *e, bs_srtp_stream *st, size_t len, int rtcp) {
    uint8_t *buf = e->bufs[e->nq];
    if (!rtcp)
        len = egress_extend(e, st, buf, len, QUEUE_BUF - BS_SRTP_MAX_RTCP_TRAILER);
    int m = rtcp ? bs_srtp_protect_rtcp(e->srtp, st, buf, len, QUEUE_BUF)
                 : bs_srtp_protect_rtp(e->srtp, st, buf, len, QUEUE_BUF);
    if (m < 0) {
        e->errors_srtp++;
        e->failures++;
        return 0;
    }
    e->iov[e->nq].iov_len = (size_t)m;
    e->nq++;
    if (!e->pending) {
        if (n_pending_egress == MAX_PENDING_EGRESS) {
            egress_flush(e);
            return 1;
        }
        e->pending = 1;
        Py_INCREF(e);
        pending_egress[n_pending_egress++] = e;
    }
    return 1;
}

/* Let go the waiting packets the pacer allows at `now`: numbered, protected and queued. */
static void egress_release(EgressObject *e, double now) {
    egress_pacing *pc = e->pacing;
    if (!pc)
        return;
    unsigned long long held = pc->pacer.held, forced = pc->pacer.forced;
    for (;;) {
        unsigned slot = pc->pacer.head;
        uint32_t n = bs_pacer_pop(&pc->pacer, now);
        if (!n)
            break;
        uint8_t *pkt = pc->pkt[slot];
        pc->pkt[slot] = NULL;
        if (e->fd >= 0) {
            memcpy(egress_slot(e), pkt, n);
            egress_queue(e, pc->st[slot], n, 0);
        } else {
            e->failures++;
        }
        free(pkt);
    }
    paced_total += pc->pacer.held - held;
    paced_forced += pc->pacer.forced - forced;
}

/* Drop what waits (the transport closed): counted as failures. */
static void egress_drop_held(EgressObject *e) {
    egress_pacing *pc = e->pacing;
    if (!pc)
        return;
    while (pc->pacer.count) {
        free(pc->pkt[pc->pacer.head]);
        pc->pkt[pc->pacer.head] = NULL;
        pc->pacer.head = (pc->pacer.head + 1) % BS_PACER_MAX_HELD;
        pc->pacer.count--;
        e->failures++;
    }
}

static inline unsigned egress_waiting(EgressObject *e) { return e->pacing ? e->pacing->pacer.count : 0; }

/* Let go everything that waits, now, in order: before a packet of a paced SSRC that cannot wait
 * (no memory for it, a jumbo datagram), so the SSRC stays in order on the wire. */
static void egress_release_all(EgressObject *e) {
    egress_pacing *pc = e->pacing;
    if (!pc || !pc->pacer.count)
        return;
    double rate = pc->pacer.rate;
    pc->pacer.rate = 0; /* (at rate 0 bs_pacer_pop lets every packet go, taking no tokens) */
    egress_release(e, mono_now());
    pc->pacer.rate = rate;
}

/* The packet in the current slot (len bytes, of paced `st`) waits: copied out, behind the others. */
static int egress_hold(EgressObject *e, bs_srtp_stream *st, size_t len, double now) {
    egress_pacing *pc = e->pacing;
    uint8_t *copy = NULL;
    if (e->pace_listed || n_paced_egress < MAX_PENDING_EGRESS)
        copy = malloc(len);
    if (!copy) { /* no memory, or no room on the clock's list: it goes now, after what waits */
        if (pc->pacer.count) {
            uint8_t tmp[QUEUE_BUF]; /* (releasing reuses the slot it is in) */
            memcpy(tmp, e->bufs[e->nq], len);
            egress_release_all(e);
            memcpy(egress_slot(e), tmp, len);
        }
        return egress_queue(e, st, len, 0);
    }
    memcpy(copy, e->bufs[e->nq], len);
    egress_release(e, now); /* (when the most wait already, the oldest goes) */
    int slot = bs_pacer_push(&pc->pacer, now, (uint32_t)len);
    if (slot < 0) { /* cannot happen after a release; if it did, the packet goes now */
        memcpy(egress_slot(e), copy, len);
        free(copy);
        return egress_queue(e, st, len, 0);
    }
    pc->pkt[slot] = copy;
    pc->st[slot] = st;
    egress_release(e, now);
    if (pc->pacer.count && !e->pace_listed) {
        e->pace_listed = 1;
        Py_INCREF(e);
        paced_egress[n_paced_egress++] = e;
        if (pace_waker) {
            PyObject *waker = Py_NewRef(pace_waker); /* (it may replace itself) */
            PyObject *type, *value, *tb;
            PyErr_Fetch(&type, &value, &tb);
            PyObject *r = PyObject_CallNoArgs(waker);
            if (r)
                Py_DECREF(r);
            else
                PyErr_WriteUnraisable(waker);
            PyErr_Restore(type, value, tb);
            Py_DECREF(waker);
        }
    }
    return 1;
}

/* Queue the `len` bytes written into egress_slot(), or, for a paced SSRC's media while the pacer
 * says so, keep them waiting. 1 queued or waiting, 0 dropped. */
static int egress_commit(EgressObject *e, bs_srtp_stream *st, size_t len, int rtcp) {
    egress_pacing *pc = e->pacing;
    if (pc && !rtcp && pc->pacer.rate > 0 && ((egress_stream_t *)st)->paced) {
        double now = mono_now();
        if (pc->pacer.count || !bs_pacer_pass(&pc->pacer, now, (uint32_t)len))
            return egress_hold(e, st, len, now);
    }
    return egress_queue(e, st, len, rtcp);
}

/* Protect `len` bytes of RTP for `st` and queue (or send) them. 1 queued/sent, 0 dropped. */
static int egress_put(EgressObject *e, bs_srtp_stream *st, const uint8_t *pkt, size_t len, int rtcp) {
    if (e->fd < 0 || st == NULL) {
        e->failures++;
        return 0;
    }
    size_t cap = len + BS_SRTP_MAX_RTCP_TRAILER;
    if (cap + EXTEND_ROOM > QUEUE_BUF) {
        /* rare (jumbo loopback datagram): protect in a heap buffer and send at once, after what is
         * queued and what waits (a datagram this size cannot wait: the queue's slots are smaller) */
        if (!rtcp && ((egress_stream_t *)st)->paced)
            egress_release_all(e);
        if (e->nq)
            egress_flush(e);
        cap += EXTEND_ROOM;
        uint8_t *tmp = malloc(cap);
        if (!tmp) {
            e->failures++;
            return 0;
        }
        memcpy(tmp, pkt, len);
        if (!rtcp)
            len = egress_extend(e, st, tmp, len, cap - BS_SRTP_MAX_RTCP_TRAILER);
        int m = rtcp ? bs_srtp_protect_rtcp(e->srtp, st, tmp, len, cap) : bs_srtp_protect_rtp(e->srtp, st, tmp, len, cap);
        int ok = 0;
        if (m < 0)
            e->errors_srtp++;
        else if (sendto(e->fd, tmp, (size_t)m, 0, (struct sockaddr *)&e->addr, e->addrlen) == m)
            ok = 1;
        else
            e->last_errno = errno;
        free(tmp);
        if (ok)
            e->sent++;
        else
            e->failures++;
        return ok;
    }
    uint8_t *buf = egress_slot(e);
    memcpy(buf, pkt, len);
    return egress_commit(e, st, len, rtcp);
}

static int parse_addr(PyObject *addr, struct sockaddr_storage *ss, socklen_t *len) {
    if (!PyTuple_Check(addr) || PyTuple_GET_SIZE(addr) < 2) {
        PyErr_SetString(PyExc_ValueError, "address must be a (host, port) tuple");
        return -1;
    }
    const char *host = PyUnicode_AsUTF8(PyTuple_GET_ITEM(addr, 0));
    if (!host)
        return -1;
    long port = PyLong_AsLong(PyTuple_GET_ITEM(addr, 1));
    if (port == -1 && PyErr_Occurred())
        return -1;
    if (port <= 0 || port > 65535) {
        PyErr_Format(PyExc_ValueError, "port %ld out of range", port);
        return -1;
    }
    memset(ss, 0, sizeof(*ss));
    struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)port);
        *len = sizeof(*a4);
    } else if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        if (PyTuple_GET_SIZE(addr) >= 4) {
            long scope = PyLong_AsLong(PyTuple_GET_ITEM(addr, 3));
            if (scope == -1 && PyErr_Occurred())
                return -1;
            a6->sin6_scope_id = (uint32_t)scope;
        }
        *len = sizeof(*a6);
    } else {
        PyErr_Format(PyExc_ValueError, "not an IP address: %s", host);
        return -1;
    }
    return 0;
}

static int Egress_init(EgressObject *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"fd", "address", "profile", "key", NULL};
    int fd, profile;
    PyObject *addr;
    Py_buffer key;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "iOiy*", kwlist, &fd, &addr, &profile, &key))
        return -1;
    struct sockaddr_storage ss;
    socklen_t sslen;
    if (parse_addr(addr, &ss, &sslen) < 0) {
        PyBuffer_Release(&key);
        return -1;
    }
    char err[160] = "";
    bs_srtp *s = bs_srtp_new(profile, key.buf, (size_t)key.len, err, sizeof(err));
    PyBuffer_Release(&key);
    if (!s) {
        PyErr_Format(PyExc_ValueError, "SRTP: %s", err);
        return -1;
    }
    int dfd = dup(fd);
    if (dfd < 0) {
        bs_srtp_free(s);
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    if (self->srtp)
        bs_srtp_free(self->srtp);
    if (self->fd >= 0)
        close(self->fd);
    self->srtp = s;
    self->fd = dfd;
    self->addr = ss;
    self->addrlen = sslen;
    self->gso = bs_gso_enabled();
    for (int i = 0; i < QUEUE_LEN; i++) {
        self->iov[i].iov_base = self->bufs[i];
        self->iov[i].iov_len = 0;
        memset(&self->msgs[i], 0, sizeof(self->msgs[i]));
        self->msgs[i].msg_hdr.msg_name = &self->addr;
        self->msgs[i].msg_hdr.msg_namelen = sslen;
        self->msgs[i].msg_hdr.msg_iov = &self->iov[i];
        self->msgs[i].msg_hdr.msg_iovlen = 1;
    }
    return 0;
}

static PyObject *Egress_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    EgressObject *self = (EgressObject *)type->tp_alloc(type, 0);
    if (self)
        self->fd = -1;
    return (PyObject *)self;
}

static void egress_clear_streams(EgressObject *e) {
    for (size_t i = 0; i < e->cap; i++)
        free(e->streams[i]);
    free(e->streams);
    free(e->keys);
    e->streams = NULL;
    e->keys = NULL;
    e->cap = e->count = 0;
}

static void Egress_dealloc(EgressObject *self) {
    egress_drop_held(self);
    free(self->pacing);
    free(self->tcc_hist);
    if (self->fd >= 0)
        close(self->fd);
    if (self->srtp)
        bs_srtp_free(self->srtp);
    egress_clear_streams(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *egress_send(EgressObject *self, PyObject *arg, int rtcp) {
    Py_buffer b;
    if (PyObject_GetBuffer(arg, &b, PyBUF_SIMPLE) < 0)
        return NULL;
    const uint8_t *p = b.buf;
    uint32_t ssrc = 0;
    int ok = 0;
    if (b.len >= 12) {
        ssrc = rtcp ? ((uint32_t)p[4] << 24 | (uint32_t)p[5] << 16 | (uint32_t)p[6] << 8 | p[7])
                    : ((uint32_t)p[8] << 24 | (uint32_t)p[9] << 16 | (uint32_t)p[10] << 8 | p[11]);
        ok = egress_put(self, egress_stream(self, ssrc), p, (size_t)b.len, rtcp);
    } else {
        self->failures++;
    }
    PyBuffer_Release(&b);
    if (self->pending) {
        /* sent on its own (NACK answers, RTCP): flush now rather than wait for a fan-out, unless
         * a received batch holds the sends (then it leaves with the batch's) */
        flush_unless_held();
    }
    if (!ok)
        Py_RETURN_FALSE;
    Py_RETURN_TRUE;
}

static PyObject *Egress_send_rtp(EgressObject *self, PyObject *arg) { return egress_send(self, arg, 0); }
static PyObject *Egress_send_rtcp(EgressObject *self, PyObject *arg) { return egress_send(self, arg, 1); }

static PyObject *Egress_close(EgressObject *self, PyObject *unused) {
    if (self->pending)
        flush_pending();
    egress_drop_held(self); /* (the clock's list lets it go at its next tick) */
    if (self->fd >= 0) {
        close(self->fd);
        self->fd = -1;
    }
    Py_RETURN_NONE;
}

/* After an ICE restart the nominated pair may be another socket and address; the SRTP state (each
 * SSRC's rollover counter and SRTCP index) must carry on, so the Egress moves rather than a new one
 * starting from zero (the receiver would take a restarted SRTCP index for replays). */
static PyObject *Egress_retarget(EgressObject *self, PyObject *args) {
    int fd;
    PyObject *addr;
    if (!PyArg_ParseTuple(args, "iO", &fd, &addr))
        return NULL;
    struct sockaddr_storage ss;
    socklen_t sslen;
    if (parse_addr(addr, &ss, &sslen) < 0)
        return NULL;
    if (self->pending)
        flush_pending(); /* what is queued goes where it was meant to */
    int dfd = dup(fd);
    if (dfd < 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    if (self->fd >= 0)
        close(self->fd);
    self->fd = dfd;
    self->addr = ss;
    self->addrlen = sslen;
    for (int i = 0; i < QUEUE_LEN; i++)
        self->msgs[i].msg_hdr.msg_namelen = sslen;
    Py_RETURN_NONE;
}

static PyObject *Egress_set_transport_seq(EgressObject *self, PyObject *args) {
    int xid, next;
    if (!PyArg_ParseTuple(args, "ii", &xid, &next))
        return NULL;
    if (xid < 0 || xid > 14 || next < 0 || next > 0xFFFF) {
        PyErr_Format(PyExc_ValueError, "set_transport_seq: id %d (0-14), next %d (0-65535)", xid, next);
        return NULL;
    }
    if (xid && !self->tcc_hist) {
        self->tcc_hist = malloc(TCC_HISTORY * sizeof(tcc_entry));
        if (!self->tcc_hist)
            return PyErr_NoMemory();
        for (int i = 0; i < TCC_HISTORY; i++)
            self->tcc_hist[i].seq = -1;
    }
    self->tcc_id = xid;
    self->tcc_next = (uint16_t)next;
    Py_RETURN_NONE;
}

/* Mark an SSRC's stream (created if new): the byte at `flag` in its egress_stream_t is set. */
static PyObject *egress_flag_ssrc(EgressObject *self, PyObject *arg, size_t flag) {
    unsigned long ssrc = PyLong_AsUnsignedLong(arg);
    if (ssrc == (unsigned long)-1 && PyErr_Occurred())
        return NULL;
    if (ssrc > 0xFFFFFFFFul) {
        PyErr_SetString(PyExc_ValueError, "an SSRC is 32 bits");
        return NULL;
    }
    bs_srtp_stream *st = egress_stream(self, (uint32_t)ssrc);
    if (!st) {
        PyErr_SetString(PyExc_RuntimeError, "no room for another SSRC");
        return NULL;
    }
    ((uint8_t *)st)[flag] = 1;
    Py_RETURN_NONE;
}

static PyObject *Egress_stamp_ssrc(EgressObject *self, PyObject *arg) {
    return egress_flag_ssrc(self, arg, offsetof(egress_stream_t, tcc));
}

static PyObject *Egress_delay_ssrc(EgressObject *self, PyObject *arg) {
    return egress_flag_ssrc(self, arg, offsetof(egress_stream_t, delay));
}

static PyObject *Egress_pace_ssrc(EgressObject *self, PyObject *arg) {
    return egress_flag_ssrc(self, arg, offsetof(egress_stream_t, paced));
}

static PyObject *Egress_set_pacing(EgressObject *self, PyObject *arg) {
    double bps = PyFloat_AsDouble(arg);
    if (bps == -1.0 && PyErr_Occurred())
        return NULL;
    if (!(bps >= 0 && bps <= 1e12)) {
        PyErr_SetString(PyExc_ValueError, "set_pacing: a rate of 0 to 1e12 bits per second");
        return NULL;
    }
    if (!self->pacing) {
        if (bps == 0)
            Py_RETURN_NONE;
        /* (per transport that is paced at all: 14 KB, which most subscribers on fast links never
         * need, so not part of every Egress) */
        self->pacing = calloc(1, sizeof(egress_pacing));
        if (!self->pacing)
            return PyErr_NoMemory();
    }
    double now = mono_now();
    bs_pacer_set_rate(&self->pacing->pacer, bps, now);
    if (self->pacing->pacer.count && bps == 0) {
        egress_release(self, now); /* off: what waits goes now */
        flush_unless_held();
    }
    Py_RETURN_NONE;
}

static PyObject *Egress_set_playout_delay(EgressObject *self, PyObject *args) {
    int xid, min_ms, max_ms;
    if (!PyArg_ParseTuple(args, "iii", &xid, &min_ms, &max_ms))
        return NULL;
    if (xid < 0 || xid > 14 || min_ms < 0 || max_ms < min_ms || max_ms > 40950) {
        PyErr_Format(PyExc_ValueError, "set_playout_delay: id %d (0-14), min %d and max %d ms (0 <= min <= max <= 40950)",
                     xid, min_ms, max_ms);
        return NULL;
    }
    /* draft playout-delay: 12 bits of minimum, 12 of maximum, in 10 ms units */
    unsigned lo = (unsigned)min_ms / 10, hi = (unsigned)max_ms / 10;
    self->delay[0] = (uint8_t)(lo >> 4);
    self->delay[1] = (uint8_t)((lo & 0x0F) << 4 | hi >> 8);
    self->delay[2] = (uint8_t)hi;
    self->delay_id = xid;
    Py_RETURN_NONE;
}

static PyObject *Egress_sent_packet(EgressObject *self, PyObject *arg) {
    long seq = PyLong_AsLong(arg);
    if (seq == -1 && PyErr_Occurred())
        return NULL;
    if (seq < 0 || seq > 0xFFFF || !self->tcc_hist)
        Py_RETURN_NONE;
    tcc_entry *h = &self->tcc_hist[seq % TCC_HISTORY];
    if (h->seq != seq)
        Py_RETURN_NONE;
    return Py_BuildValue("(dI)", h->at, (unsigned)h->size);
}

static PyObject *Egress_get_closed(EgressObject *self, void *c) { return PyBool_FromLong(self->fd < 0); }
static PyObject *Egress_get_waiting(EgressObject *self, void *c) { return PyLong_FromUnsignedLong(egress_waiting(self)); }
static PyObject *Egress_get_pacing_bps(EgressObject *self, void *c) {
    return PyFloat_FromDouble(self->pacing ? self->pacing->pacer.rate * 8 : 0.0);
}
static PyObject *Egress_get_paced(EgressObject *self, void *c) {
    return PyLong_FromUnsignedLongLong(self->pacing ? self->pacing->pacer.held : 0);
}
static PyObject *Egress_get_pace_forced(EgressObject *self, void *c) {
    return PyLong_FromUnsignedLongLong(self->pacing ? self->pacing->pacer.forced : 0);
}
static PyObject *Egress_get_streams(EgressObject *self, void *c) { return PyLong_FromSize_t(self->count); }

static PyMethodDef Egress_methods[] = {
    {"send_rtp", (PyCFunction)Egress_send_rtp, METH_O, "Protect and send one RTP packet now; False when dropped."},
    {"send_rtcp", (PyCFunction)Egress_send_rtcp, METH_O, "Protect and send one (compound) RTCP packet now."},
    {"close", (PyCFunction)Egress_close, METH_NOARGS, "Close our descriptor; later sends are counted failures."},
    {"retarget", (PyCFunction)Egress_retarget, METH_VARARGS,
     "retarget(fd, address): send from a dup() of fd to address from now on, keeping the SRTP state."},
    {"set_transport_seq", (PyCFunction)Egress_set_transport_seq, METH_VARARGS,
     "set_transport_seq(xid, next): stamp transport-wide sequence numbers under id xid (0: off), from next."},
    {"stamp_ssrc", (PyCFunction)Egress_stamp_ssrc, METH_O,
     "stamp_ssrc(ssrc): this SSRC's m-line negotiated transport-wide numbers: stamp its packets."},
    {"set_playout_delay", (PyCFunction)Egress_set_playout_delay, METH_VARARGS,
     "set_playout_delay(xid, min_ms, max_ms): stamp this playout delay (10 ms steps) under id xid on the "
     "packets of SSRCs given to delay_ssrc; xid 0 stamps none."},
    {"delay_ssrc", (PyCFunction)Egress_delay_ssrc, METH_O,
     "delay_ssrc(ssrc): this SSRC's m-line negotiated the playout delay: stamp it on its packets."},
    {"pace_ssrc", (PyCFunction)Egress_pace_ssrc, METH_O,
     "pace_ssrc(ssrc): this SSRC's packets are paced (a video m-line's media)."},
    {"set_pacing", (PyCFunction)Egress_set_pacing, METH_O,
     "set_pacing(bps): pace the paced SSRCs at bps bits per second (0: off; what waits goes now)."},
    {"sent_packet", (PyCFunction)Egress_sent_packet, METH_O,
     "sent_packet(seq): (time.monotonic() when queued, bytes) of the packet numbered seq, or None."},
    {NULL},
};

static PyMemberDef Egress_members[] = {
    {"sent", T_ULONGLONG, offsetof(EgressObject, sent), READONLY, "datagrams the kernel took"},
    {"failures", T_ULONGLONG, offsetof(EgressObject, failures), READONLY, "datagrams dropped (socket full, closed)"},
    {"srtp_errors", T_ULONGLONG, offsetof(EgressObject, errors_srtp), READONLY, "packets SRTP refused to protect"},
    {"last_errno", T_INT, offsetof(EgressObject, last_errno), READONLY, "errno of the last failed send"},
    {"flushes", T_ULONGLONG, offsetof(EgressObject, flushes), READONLY, "sendmmsg calls that sent something"},
    {"gso_sends", T_ULONGLONG, offsetof(EgressObject, gso_sends), READONLY,
     "segmented (UDP_SEGMENT) sends of two or more datagrams the kernel took"},
    {"transport_seq_next", T_USHORT, offsetof(EgressObject, tcc_next), READONLY, "the next transport-wide number"},
    {"transport_seq_unstamped", T_ULONGLONG, offsetof(EgressObject, tcc_unstamped), READONLY,
     "packets of stamped SSRCs that could not carry a number (no room, foreign extension profile)"},
    {"gso", T_INT, offsetof(EgressObject, gso), READONLY,
     "1 while runs of equal-length datagrams leave as one segmented send; 0 when off or refused"},
    {NULL},
};

static PyGetSetDef Egress_getset[] = {
    {"closed", (getter)Egress_get_closed, NULL, "closed (no descriptor)", NULL},
    {"streams", (getter)Egress_get_streams, NULL, "SSRCs with SRTP state", NULL},
    {"waiting", (getter)Egress_get_waiting, NULL, "packets the pacer holds", NULL},
    {"pacing_bps", (getter)Egress_get_pacing_bps, NULL, "the pacing rate (0: off)", NULL},
    {"paced", (getter)Egress_get_paced, NULL, "packets that waited for the pacer", NULL},
    {"pace_forced", (getter)Egress_get_pace_forced, NULL,
     "of those, the ones that went because one had waited the longest a packet may, or the most waited", NULL},
    {NULL},
};

static PyTypeObject EgressType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "sfu._native.Egress",
    .tp_basicsize = sizeof(EgressObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Egress(fd, address, profile, key): the SRTP send side of one transport, on a dup of its socket.",
    .tp_new = Egress_new,
    .tp_init = (initproc)Egress_init,
    .tp_dealloc = (destructor)Egress_dealloc,
    .tp_methods = Egress_methods,
    .tp_members = Egress_members,
    .tp_getset = Egress_getset,
};

/* ------------------------------------------------------------------------------------------------
 * DownTrackCore: the per-packet state of a DownTrack (base class of sfu.datapath.NativeDownTrack)
 * ---------------------------------------------------------------------------------------------- */

/* One packet sent, as a NACK needs it (sfu/downtrack.py `Sent`): where its source packet is (its
 * layer's PacketRing, the serial there) and the offsets the rewrite applied. The packet itself is made
 * again from the source when a NACK asks for it: 48 bytes here instead of a copy of it. */
typedef struct {
    PyObject *ring;            /* a strong reference, as the Python twin's tuple holds one */
    unsigned long long serial; /* of the source packet in `ring`; 0 = nothing sent in this slot */
    double sent_at;            /* when it was forwarded: NACKs for older packets are not answered */
    double resent_at;          /* the last NACK answer from this slot, keyed by seq (resent_seq) */
    uint32_t ts_off;
    uint16_t seq; /* ours */
    uint16_t in_seq;
    uint16_t pid_off;
    uint16_t resent_seq;
    uint8_t tl0_off;
    uint8_t end; /* we set its marker: the subscriber's picture ended there */
    uint8_t resent_valid;
} sent_entry;

typedef struct {
    PyObject_HEAD
    PyObject *dict; /* the Python subclass's other attributes */
    PyObject *weakrefs;
    /* Python-owned references the hot path reads */
    PyObject *transport;
    PyObject *slot;
    PyObject *current;
    PyObject *target;
    /* configuration (set by _configure_native from the slot and the extension maps) */
    char is_video; /* T_BOOL is a char */
    int picture_codec; /* BS_PICTURE_*: which payload descriptor numbers the pictures */
    int clock_rate;
    int out_pt;
    uint32_t out_ssrc;
    uint8_t ext_map[16]; /* publisher's one-byte id -> ours, 0 = not forwarded */
    int mid_in, ast_in;
    uint8_t mid_out[16];
    int mid_out_len;
    int max_tid; /* -1 = None */
    int max_sid, target_sid; /* VP9 SVC: DownTrack.max_sid / target_sid (BS_SID_ALL: every layer) */
    /* rewrite state */
    unsigned int seq_off, ts_off, pid_off, tl0_off;
    int switch_seq;
    long long epoch;
    char started;
    unsigned int last_seq, last_ts, last_pid, last_tl0, rtx_seq;
    double last_sent_at;
    double rtx_window_at; /* NaN = None */
    unsigned long long packets, octets, bytes_sent, temporal_drops, spatial_drops;
    /* SRTP stream of our SSRC on the egress it was looked up on */
    PyObject *stream_egress;
    bs_srtp_stream *stream;
    sent_entry *cache; /* CACHE_SIZE entries, by our seq, allocated on the first packet */
} DownTrackCore;

static PyTypeObject DownTrackCoreType;

/* downtrack.SWITCH_TRAIL_MOVE / SWITCH_TRAIL: how far a run's start may trail the newest packet */
#define SWITCH_TRAIL_MOVE 0x4000
#define SWITCH_TRAIL 0x2000

static PyObject *str_active, *str_egress, *str_epoch, *str_send_rtp, *str_begin_run, *str_ring;

static int DTC_traverse(DownTrackCore *self, visitproc visit, void *arg) {
    Py_VISIT(self->dict);
    Py_VISIT(self->transport);
    Py_VISIT(self->slot);
    Py_VISIT(self->current);
    Py_VISIT(self->target);
    Py_VISIT(self->stream_egress);
    return 0;
}

static int DTC_clear(DownTrackCore *self) {
    Py_CLEAR(self->dict);
    Py_CLEAR(self->transport);
    Py_CLEAR(self->slot);
    Py_CLEAR(self->current);
    Py_CLEAR(self->target);
    Py_CLEAR(self->stream_egress);
    self->stream = NULL;
    return 0;
}

static void cache_free(DownTrackCore *self) {
    sent_entry *cache = self->cache;
    if (!cache)
        return;
    self->cache = NULL; /* (before the references go: a ring's deallocation runs no Python code, but still) */
    for (int i = 0; i < CACHE_SIZE; i++)
        Py_XDECREF(cache[i].ring);
    free(cache);
}

static void DTC_dealloc(DownTrackCore *self) {
    PyObject_GC_UnTrack(self);
    if (self->weakrefs)
        PyObject_ClearWeakRefs((PyObject *)self);
    DTC_clear(self);
    cache_free(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *DTC_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    DownTrackCore *self = (DownTrackCore *)type->tp_alloc(type, 0);
    if (!self)
        return NULL;
    self->max_tid = -1;
    self->mid_in = self->ast_in = -1;
    self->rtx_window_at = Py_NAN;
    self->clock_rate = 90000;
    return (PyObject *)self;
}

/* sfu/downtrack.py DownTrack._configure_native: what the hot path needs from the slot and the maps */
static PyObject *DTC_configure(DownTrackCore *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"pt", "ssrc", "ext_map", "mid_in", "ast_in", "mid_out", NULL};
    int pt, mid_in, ast_in;
    unsigned long ssrc;
    PyObject *ext_map;
    Py_buffer mid_out;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "ikO!iiy*", kwlist, &pt, &ssrc, &PyDict_Type, &ext_map, &mid_in,
                                     &ast_in, &mid_out))
        return NULL;
    if (mid_out.len > 16) {
        PyBuffer_Release(&mid_out);
        PyErr_SetString(PyExc_ValueError, "mid longer than 16 bytes");
        return NULL;
    }
    uint8_t map[16] = {0};
    PyObject *k, *v;
    Py_ssize_t pos = 0;
    while (PyDict_Next(ext_map, &pos, &k, &v)) {
        long a = PyLong_AsLong(k), b = PyLong_AsLong(v);
        if ((a == -1 || b == -1) && PyErr_Occurred()) {
            PyBuffer_Release(&mid_out);
            return NULL;
        }
        /* one-byte form: ids 1..14 both ways (an id above 14 cannot be written in this form) */
        if (a >= 1 && a <= 14 && b >= 1 && b <= 14)
            map[a] = (uint8_t)b;
    }
    memcpy(self->ext_map, map, sizeof(map));
    self->out_pt = pt & 0x7F;
    self->out_ssrc = (uint32_t)ssrc;
    self->mid_in = mid_in;
    self->ast_in = ast_in;
    memcpy(self->mid_out, mid_out.buf, (size_t)mid_out.len);
    self->mid_out_len = (int)mid_out.len;
    PyBuffer_Release(&mid_out);
    /* the SSRC may have changed: look the SRTP stream up again */
    Py_CLEAR(self->stream_egress);
    self->stream = NULL;
    Py_RETURN_NONE;
}

static const uint8_t *sent_source(const sent_entry *e, size_t *len);
static size_t dtc_rebuild(DownTrackCore *s, const sent_entry *e, const uint8_t *src, size_t n, uint8_t *out);

/* the sent entry for our seq, with its source packet (*src, *n) still in its ring, or NULL */
static sent_entry *sent_lookup(DownTrackCore *s, uint16_t seq, const uint8_t **src, size_t *n) {
    if (!s->cache)
        return NULL;
    sent_entry *e = &s->cache[seq & CACHE_MASK];
    if (!e->serial || e->seq != seq)
        return NULL;
    *src = sent_source(e, n);
    return *src ? e : NULL;
}

static PyObject *DTC_cached(DownTrackCore *self, PyObject *arg) {
    long seq = PyLong_AsLong(arg);
    if (seq == -1 && PyErr_Occurred())
        return NULL;
    const uint8_t *src;
    size_t n;
    sent_entry *e = sent_lookup(self, (uint16_t)(seq & 0xFFFF), &src, &n);
    if (!e)
        Py_RETURN_NONE;
    PyObject *out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)n);
    if (!out)
        return NULL;
    size_t len = dtc_rebuild(self, e, src, n, (uint8_t *)PyBytes_AS_STRING(out));
    if (!len) { /* (its source parsed when it was forwarded) */
        Py_DECREF(out);
        Py_RETURN_NONE;
    }
    if (len < n && _PyBytes_Resize(&out, (Py_ssize_t)len) < 0)
        return NULL;
    return out;
}

static PyObject *DTC_clear_cache(DownTrackCore *self, PyObject *unused) {
    cache_free(self);
    Py_RETURN_NONE;
}

static PyObject *DTC_get_max_tid(DownTrackCore *self, void *c) {
    if (self->max_tid < 0)
        Py_RETURN_NONE;
    return PyLong_FromLong(self->max_tid);
}

static int DTC_set_max_tid(DownTrackCore *self, PyObject *v, void *c) {
    if (v == NULL || v == Py_None) {
        self->max_tid = -1;
        return 0;
    }
    long t = PyLong_AsLong(v);
    if (t == -1 && PyErr_Occurred())
        return -1;
    self->max_tid = t < 0 ? 0 : (t > 255 ? 255 : (int)t);
    return 0;
}

static PyObject *DTC_get_rtx_window_at(DownTrackCore *self, void *c) {
    if (isnan(self->rtx_window_at))
        Py_RETURN_NONE;
    return PyFloat_FromDouble(self->rtx_window_at);
}

static int DTC_set_rtx_window_at(DownTrackCore *self, PyObject *v, void *c) {
    if (v == NULL || v == Py_None) {
        self->rtx_window_at = Py_NAN;
        return 0;
    }
    double d = PyFloat_AsDouble(v);
    if (d == -1.0 && PyErr_Occurred())
        return -1;
    self->rtx_window_at = d;
    return 0;
}

/* DownTrack._anchor: offsets that make this packet follow the last one sent */
static void dtc_anchor(DownTrackCore *s, const bs_rtp_view *v, const bs_picture *pic, double now, long long epoch) {
    s->epoch = epoch;
    s->seq_off = (s->last_seq + 1u - v->seq) & 0xFFFF;
    if (s->started) {
        long long gap = (long long)((now - s->last_sent_at) * s->clock_rate);
        if (gap < 1)
            gap = 1;
        s->ts_off = (unsigned int)(((long long)s->last_ts + gap - (long long)v->ts) & 0xFFFFFFFFLL);
    } else {
        s->ts_off = (s->last_ts - v->ts) & 0xFFFFFFFFu;
    }
    if (pic && pic->picture_id >= 0 && s->started) {
        unsigned mod = pic->picture_id_bits == 15 ? 0x7FFF : 0x7F;
        s->pid_off = (s->last_pid + 1u - (unsigned)pic->picture_id) & mod;
        s->tl0_off = pic->tl0picidx >= 0 ? ((s->last_tl0 + 1u - (unsigned)pic->tl0picidx) & 0xFF) : 0;
    } else {
        s->pid_off = s->tl0_off = 0;
    }
    s->switch_seq = v->seq;
    if (isnan(s->rtx_window_at))
        s->rtx_window_at = now;
}

static inline void dtc_renumber_away(DownTrackCore *s, uint16_t seq) {
    if (seq == ((s->last_seq - s->seq_off + 1u) & 0xFFFF))
        s->seq_off = (s->seq_off - 1u) & 0xFFFF;
}

static inline void put_abs_send_time(uint8_t *p, double now) {
    unsigned long long t = (unsigned long long)(long long)(now * 262144.0) & 0xFFFFFF;
    p[0] = (uint8_t)(t >> 16);
    p[1] = (uint8_t)(t >> 8);
    p[2] = (uint8_t)t;
}

/* DownTrack._rewrite_extensions (one-byte form, in place) */
static void dtc_rewrite_extensions(DownTrackCore *s, uint8_t *buf, size_t i, size_t end, double now) {
    while (i < end) {
        uint8_t b = buf[i];
        if (b == 0) {
            i++;
            continue;
        }
        int xid = b >> 4, xlen = (b & 0x0F) + 1;
        if (xid == 15)
            break;
        size_t stop = i + 1 + (size_t)xlen;
        if (stop > end) {
            /* an element running past the block: not an element; blank the rest of the block */
            memset(buf + i, 0, end - i);
            break;
        }
        int nid = s->ext_map[xid];
        if (nid == 0 || (xid == s->mid_in && xlen != s->mid_out_len)) {
            memset(buf + i, 0, stop - i);
        } else {
            buf[i] = (uint8_t)((nid << 4) | (b & 0x0F));
            if (xid == s->mid_in)
                memcpy(buf + i + 1, s->mid_out, stop - i - 1);
            else if (xid == s->ast_in && xlen == 3)
                put_abs_send_time(buf + i + 1, now);
        }
        i += 1 + (size_t)xlen;
    }
}

/* DownTrack._rewrite_two_byte: the same in the two-byte form (RFC 8285 §4.3: an id byte, a length
 * byte, the value; zero bytes pad). A key frame's AV1 dependency descriptor, with its structure, is
 * longer than the one-byte form's 16 bytes: Chromium sends that packet in this form. */
static void dtc_rewrite_two_byte(DownTrackCore *s, uint8_t *buf, size_t i, size_t end, double now) {
    while (i < end) {
        uint8_t xid = buf[i];
        if (xid == 0) {
            i++;
            continue;
        }
        if (i + 2 > end || i + 2 + (size_t)buf[i + 1] > end) {
            memset(buf + i, 0, end - i);
            break;
        }
        size_t xlen = buf[i + 1], stop = i + 2 + xlen;
        int nid = xid < 16 ? s->ext_map[xid] : 0;
        if (nid == 0 || (xid == s->mid_in && xlen != (size_t)s->mid_out_len)) {
            memset(buf + i, 0, stop - i);
        } else {
            buf[i] = (uint8_t)nid;
            if (xid == s->mid_in)
                memcpy(buf + i + 2, s->mid_out, xlen);
            else if (xid == s->ast_in && xlen == 3)
                put_abs_send_time(buf + i + 2, now);
        }
        i = stop;
    }
}

/* remember the packet sent as our `seq`: its source (`serial` in `ring`, with its seq `in_seq`) and
 * the offsets the rewrite applied */
static void sent_store(DownTrackCore *s, uint16_t seq, PyObject *ring, unsigned long long serial, uint16_t in_seq,
                       double now, int end) {
    if (!s->cache && !(s->cache = calloc(CACHE_SIZE, sizeof(sent_entry))))
        return; /* (then NACKs find nothing) */
    sent_entry *e = &s->cache[seq & CACHE_MASK];
    e->serial = serial;
    e->sent_at = now;
    e->ts_off = s->ts_off;
    e->seq = seq;
    e->in_seq = in_seq;
    e->pid_off = (uint16_t)s->pid_off;
    e->tl0_off = (uint8_t)s->tl0_off;
    e->end = (uint8_t)(end != 0);
    if (e->ring != ring) {
        Py_INCREF(ring);
        Py_XSETREF(e->ring, ring);
    }
}

static const uint8_t *sent_source(const sent_entry *e, size_t *len) {
    return e->ring ? bs_ring_get(e->ring, e->in_seq, e->serial, len) : NULL;
}

/* the egress of the DownTrack's transport, or NULL (borrowed; the transport holds it) */
static EgressObject *dtc_egress(DownTrackCore *s) {
    /* the egress this DownTrack last sent through, while it is open: PeerTransport closes an egress
     * before it makes another, so an open one is still the transport's (no attribute read per packet) */
    if (s->stream_egress && ((EgressObject *)s->stream_egress)->fd >= 0)
        return (EgressObject *)s->stream_egress;
    PyObject *eg = PyObject_GetAttr(s->transport, str_egress);
    if (!eg) {
        PyErr_Clear();
        return NULL;
    }
    Py_DECREF(eg); /* the transport keeps its egress alive for the duration of this call */
    if (Py_TYPE(eg) != &EgressType || ((EgressObject *)eg)->fd < 0)
        return NULL;
    EgressObject *e = (EgressObject *)eg;
    if (s->stream_egress != eg) {
        Py_INCREF(eg);
        Py_XSETREF(s->stream_egress, eg);
        s->stream = egress_stream(e, s->out_ssrc);
    }
    return e;
}

static int dtc_send_one(DownTrackCore *s, const uint8_t *pkt, size_t len);

typedef struct {
    unsigned long long packets, bytes;
} fan_totals;

/* DownTrack._rewrite: `data` (n bytes, parsed as v, pic) as this subscriber gets it, written to `out`
 * (n bytes at least): our PT, SSRC and numbering, our extension ids (abs-send-time = now), VP8/VP9
 * PictureID/TL0PICIDX moved by the offsets, the marker set when `end`. Returns its length. */
static size_t dtc_rewrite(DownTrackCore *s, const uint8_t *data, size_t n, const bs_rtp_view *v, const bs_picture *pic,
                          uint16_t out_seq, uint32_t out_ts, unsigned pid_off, unsigned tl0_off, double now,
                          int end, uint8_t *out) {
    memcpy(out, data, n);
    size_t len = n;
    out[1] = (uint8_t)((end ? 0x80 : (out[1] & 0x80)) | s->out_pt);
    out[2] = (uint8_t)(out_seq >> 8);
    out[3] = (uint8_t)out_seq;
    out[4] = (uint8_t)(out_ts >> 24);
    out[5] = (uint8_t)(out_ts >> 16);
    out[6] = (uint8_t)(out_ts >> 8);
    out[7] = (uint8_t)out_ts;
    out[8] = (uint8_t)(s->out_ssrc >> 24);
    out[9] = (uint8_t)(s->out_ssrc >> 16);
    out[10] = (uint8_t)(s->out_ssrc >> 8);
    out[11] = (uint8_t)s->out_ssrc;
    if (v->ext_start) {
        if (v->one_byte)
            dtc_rewrite_extensions(s, out, v->ext_start, v->ext_end, now);
        else if (((out[v->ext_start - 4] << 8 | out[v->ext_start - 3]) & 0xFFF0) == 0x1000)
            dtc_rewrite_two_byte(s, out, v->ext_start, v->ext_end, now);
        else
            memset(out + v->ext_start, 0, v->ext_end - v->ext_start); /* a profile of no RFC: emptied */
    }
    if (pic && (pid_off || tl0_off)) {
        size_t p = v->payload_start;
        if (pic->picture_id >= 0) {
            if (pic->picture_id_bits == 15) {
                unsigned pid = ((unsigned)pic->picture_id + pid_off) & 0x7FFF;
                out[p + pic->picture_id_pos] = (uint8_t)(0x80 | (pid >> 8));
                out[p + pic->picture_id_pos + 1] = (uint8_t)pid;
            } else {
                out[p + pic->picture_id_pos] = (uint8_t)(((unsigned)pic->picture_id + pid_off) & 0x7F);
            }
        }
        if (pic->tl0picidx >= 0)
            out[p + pic->tl0picidx_pos] = (uint8_t)(((unsigned)pic->tl0picidx + tl0_off) & 0xFF);
    }
    return len;
}

/* DownTrack._rebuild: the packet `e` describes, byte for byte as it was sent, from its source `src`
 * (n bytes) into `out` (n bytes at least); its length, or 0 when the source does not parse */
static size_t dtc_rebuild(DownTrackCore *s, const sent_entry *e, const uint8_t *src, size_t n, uint8_t *out) {
    bs_rtp_view v;
    bs_picture pic;
    if (bs_rtp_parse(src, n, &v) < 0)
        return 0;
    int have_pic = s->picture_codec &&
                   bs_picture_parse(s->picture_codec, src + v.payload_start, v.payload_end - v.payload_start, &pic) == 0;
    /* (the marker as it was sent, as in DownTrack._rebuild) */
    return dtc_rewrite(s, src, n, &v, have_pic ? &pic : NULL, e->seq, (v.ts + e->ts_off) & 0xFFFFFFFFu, e->pid_off,
                       e->tl0_off, e->sent_at, e->end, out);
}

/* One DownTrack's share of a packet: DownTrack.forward. 0 on success (sent or skipped), -1 on a
 * Python error (from the layer-change callback or the fallback send). The packet is stored in `ring`
 * (the layer's PacketRing, or NULL) by the first DownTrack that sends it: *serial is 0 until then. */
static int dtc_forward(DownTrackCore *s, const uint8_t *data, size_t n, const bs_rtp_view *v, const bs_picture *pic,
                       PyObject *layer, PyObject *ring, unsigned long long *serial, long long epoch, int keyframe,
                       double now, uint8_t *scratch, fan_totals *tot) {
    if (!s->slot || !s->transport)
        return 0;
    PyObject *active = PyObject_GetAttr(s->slot, str_active);
    if (!active)
        return -1;
    int is_active = PyObject_IsTrue(active);
    Py_DECREF(active);
    if (is_active <= 0)
        return is_active;
    if (layer != s->current) {
        if (layer != s->target || (s->is_video && !keyframe))
            return 0;
        dtc_anchor(s, v, pic, now, epoch);
        PyObject *r = PyObject_CallMethodOneArg((PyObject *)s, str_begin_run, layer);
        if (!r)
            return -1;
        Py_DECREF(r);
    } else if (epoch != s->epoch) {
        dtc_anchor(s, v, pic, now, epoch);
    } else if (!newer16(v->seq, (uint16_t)s->switch_seq) && v->seq != (uint16_t)s->switch_seq) {
        return 0;
    } else if (((v->seq - (unsigned)s->switch_seq) & 0xFFFF) >= SWITCH_TRAIL_MOVE) {
        /* DownTrack.forward: the run's start trails the stream, within half the 16-bit space */
        s->switch_seq = (v->seq - SWITCH_TRAIL) & 0xFFFF;
    }
    if (pic && s->max_tid >= 0 && pic->tid > s->max_tid && !keyframe) {
        dtc_renumber_away(s, v->seq);
        s->temporal_drops++;
        return 0;
    }
    int end = 0;
    if (pic && (s->max_sid < BS_SID_ALL || s->target_sid < BS_SID_ALL)) {
        /* DownTrack.forward: down at any picture, up at a key picture */
        if (pic->start && s->target_sid != s->max_sid && (keyframe || s->target_sid < s->max_sid))
            s->max_sid = s->target_sid;
        if (pic->sid > s->max_sid) {
            dtc_renumber_away(s, v->seq);
            s->spatial_drops++;
            return 0;
        }
        end = pic->end && pic->sid == s->max_sid;
    }
    uint16_t out_seq = (uint16_t)((v->seq + s->seq_off) & 0xFFFF);
    uint32_t out_ts = (uint32_t)((v->ts + s->ts_off) & 0xFFFFFFFFu);
    /* rewrite straight into the egress queue when there is one (one copy of the packet, not two) */
    EgressObject *e = dtc_egress(s);
    int in_queue = e != NULL && s->stream != NULL && n + BS_SRTP_MAX_RTCP_TRAILER <= QUEUE_BUF;
    if (in_queue)
        scratch = egress_slot(e);
    size_t len = dtc_rewrite(s, data, n, v, pic, out_seq, out_ts, s->pid_off, s->tl0_off, now, end, scratch);
    if (ring) {
        if (!*serial)
            *serial = bs_ring_store(ring, v->seq, data, n);
        if (*serial)
            sent_store(s, out_seq, ring, *serial, v->seq, now, end);
    }
    if (newer16(out_seq, (uint16_t)s->last_seq) || !s->started) {
        s->last_seq = out_seq;
        s->last_ts = out_ts;
        s->last_sent_at = now;
        if (pic && pic->picture_id >= 0) {
            s->last_pid = ((unsigned)pic->picture_id + s->pid_off) & 0x7FFF;
            if (pic->tl0picidx >= 0)
                s->last_tl0 = ((unsigned)pic->tl0picidx + s->tl0_off) & 0xFF;
        }
    }
    s->started = 1;
    int sent;
    if (in_queue) {
        sent = egress_commit(e, s->stream, len, 0);
    } else {
        /* a jumbo packet, or no native egress yet (path not up, a test's wire): the one send helper */
        sent = dtc_send_one(s, scratch, len);
        if (sent < 0)
            return -1;
    }
    if (sent) {
        s->packets++;
        s->octets += v->payload_end - v->payload_start;
        s->bytes_sent += len;
        tot->packets++;
        tot->bytes += len;
    }
    return 0;
}

/* Send one finished (unprotected) RTP packet of this DownTrack outside a fan-out: through the
 * egress (its SSRC's SRTP stream) or the transport's own send_rtp. 1 sent, 0 dropped, -1 error. */
static int dtc_send_one(DownTrackCore *s, const uint8_t *pkt, size_t len) {
    EgressObject *e = dtc_egress(s);
    if (e) {
        uint32_t ssrc = ((uint32_t)pkt[8] << 24) | ((uint32_t)pkt[9] << 16) | ((uint32_t)pkt[10] << 8) | pkt[11];
        return egress_put(e, egress_stream(e, ssrc), pkt, len, 0);
    }
    PyObject *out = PyBytes_FromStringAndSize((const char *)pkt, (Py_ssize_t)len);
    if (!out)
        return -1;
    PyObject *r = PyObject_CallMethodOneArg(s->transport, str_send_rtp, out);
    Py_DECREF(out);
    if (!r)
        return -1;
    int ok = PyObject_IsTrue(r);
    Py_DECREF(r);
    return ok;
}

/* RFC 4588: the cached packet as an RTX packet (own seq, the original seq before the payload, no
 * padding): DownTrack._rtx. Returns the length written to `out` (capacity len + 2), or 0. */
static size_t dtc_rtx(DownTrackCore *s, const uint8_t *pkt, size_t len, int rtx_pt, uint32_t rtx_ssrc,
                      uint8_t *out) {
    bs_rtp_view v;
    if (bs_rtp_parse(pkt, len, &v) < 0)
        return 0;
    s->rtx_seq = (s->rtx_seq + 1u) & 0xFFFF;
    memcpy(out, pkt, v.payload_start);
    out[0] &= 0xDF;
    out[1] = (uint8_t)((pkt[1] & 0x80) | (rtx_pt & 0x7F));
    out[2] = (uint8_t)(s->rtx_seq >> 8);
    out[3] = (uint8_t)s->rtx_seq;
    out[8] = (uint8_t)(rtx_ssrc >> 24);
    out[9] = (uint8_t)(rtx_ssrc >> 16);
    out[10] = (uint8_t)(rtx_ssrc >> 8);
    out[11] = (uint8_t)rtx_ssrc;
    out[v.payload_start] = (uint8_t)(v.seq >> 8);
    out[v.payload_start + 1] = (uint8_t)v.seq;
    size_t n = v.payload_end - v.payload_start;
    memcpy(out + v.payload_start + 2, pkt + v.payload_start, n);
    return v.payload_start + 2 + n;
}

/* What resending the run of consecutive losses that starts at lost[start] would take: each packet
 * still cached, sent at or after `oldest` and not resent within `interval`, at its source's size + 2
 * (the twin of DownTrack._run_cost). -1 with an exception set if `lost` holds a non-integer. */
static double dtc_run_cost(DownTrackCore *s, PyObject *lost, Py_ssize_t start, double now, double interval,
                           double oldest) {
    Py_ssize_t n = PyList_GET_SIZE(lost);
    long first = PyLong_AsLong(PyList_GET_ITEM(lost, start));
    if (first == -1 && PyErr_Occurred())
        return -1;
    double cost = 0;
    for (Py_ssize_t k = start; k < n; k++) {
        long seq = PyLong_AsLong(PyList_GET_ITEM(lost, k));
        if (seq == -1 && PyErr_Occurred())
            return -1;
        seq &= 0xFFFF;
        if (seq != ((first + (k - start)) & 0xFFFF))
            break;
        const uint8_t *src = NULL;
        size_t src_len = 0;
        sent_entry *c = sent_lookup(s, (uint16_t)seq, &src, &src_len);
        if (!c || c->sent_at < oldest || (c->resent_valid && c->resent_seq == seq && now - c->resent_at < interval))
            continue;
        cost += (double)src_len + 2;
    }
    return cost;
}

/* _resend(lost, now, interval, left, rtx_pt, rtx_ssrc, oldest)
 *   -> (resent, misses, by_interval, by_budget, by_stale, bytes):
 * the per-packet part of DownTrack.on_nack (Python computes the interval, the budget and `oldest`,
 * the time before which a forwarded packet is too old to resend). A run of consecutive losses is
 * resent whole or not at all: not if its first packet is that old or no longer cached
 * (downtrack.RTX_MAX_AGE_S), nor if all of it does not fit in what is `left` of the budget (half a
 * run repaired leaves a receiver that assembles frames in order waiting for the rest) */
static PyObject *DTC_resend(DownTrackCore *s, PyObject *args) {
    PyObject *lost;
    double now, interval, left, oldest;
    int rtx_pt;
    unsigned long rtx_ssrc;
    if (!PyArg_ParseTuple(args, "O!dddikd", &PyList_Type, &lost, &now, &interval, &left, &rtx_pt, &rtx_ssrc,
                          &oldest))
        return NULL;
    long long sent = 0, misses = 0, by_interval = 0, by_budget = 0, by_stale = 0, spent = 0;
    PyObject *result = NULL;
    uint8_t *buf = NULL, *rtx_buf = NULL;
    size_t buf_cap = 0;
    Py_ssize_t n = PyList_GET_SIZE(lost);
    long previous = -1;
    int repairable = 1, affordable = 1;
    for (Py_ssize_t i = 0; i < n; i++) {
        long seq = PyLong_AsLong(PyList_GET_ITEM(lost, i));
        if (seq == -1 && PyErr_Occurred())
            goto done;
        seq &= 0xFFFF;
        const uint8_t *src = NULL;
        size_t src_len = 0;
        sent_entry *c = sent_lookup(s, (uint16_t)seq, &src, &src_len);
        if (previous < 0 || seq != ((previous + 1) & 0xFFFF)) { /* the first of a run of losses */
            repairable = c && c->sent_at >= oldest;
            affordable = 1;
            if (repairable) {
                double cost = dtc_run_cost(s, lost, i, now, interval, oldest);
                if (cost < 0)
                    goto done;
                affordable = cost <= left;
                /* (the lookahead ran no Python code: c, src and src_len are still good) */
            }
        }
        previous = seq;
        if (!c) {
            misses++;
            continue;
        }
        if (!repairable || c->sent_at < oldest) {
            by_stale++;
            continue;
        }
        if (c->resent_valid && c->resent_seq == seq && now - c->resent_at < interval) {
            by_interval++;
            continue;
        }
        if (!affordable) {
            by_budget++;
            continue;
        }
        if (buf_cap < src_len + 2) {
            /* room for the packet and, in rtx_buf, its RTX form (two bytes more) */
            uint8_t *nb = realloc(buf, src_len + 2), *nr = nb ? realloc(rtx_buf, src_len + 2) : NULL;
            if (nb)
                buf = nb;
            if (nr)
                rtx_buf = nr;
            if (!nb || !nr) {
                PyErr_NoMemory();
                goto done;
            }
            buf_cap = src_len + 2;
        }
        size_t len = dtc_rebuild(s, c, src, src_len, buf);
        if (!len) {
            misses++;
            continue;
        }
        const uint8_t *pkt = buf;
        if (rtx_pt) {
            len = dtc_rtx(s, buf, len, rtx_pt, (uint32_t)rtx_ssrc, rtx_buf);
            if (!len) {
                misses++;
                continue;
            }
            pkt = rtx_buf;
        }
        int ok = dtc_send_one(s, pkt, len);
        if (ok < 0)
            goto done;
        if (ok) {
            /* (looked up again: the send may have run Python code, which may have cleared the cache) */
            if (s->cache) {
                c = &s->cache[seq & CACHE_MASK];
                c->resent_valid = 1;
                c->resent_seq = (uint16_t)seq;
                c->resent_at = now;
            }
            left -= (double)len;
            spent += (long long)len;
            sent++;
        }
    }
    result = Py_BuildValue("(LLLLLL)", sent, misses, by_interval, by_budget, by_stale, spent);
done:
    flush_unless_held();
    free(buf);
    free(rtx_buf);
    return result;
}

/* DownTrack.forward of one parsed packet for every DownTrack of the list `dts`, then a flush (unless
 * a received batch holds the sends). `pic`: the packet's parsed VP8/VP9 descriptor, or NULL to
 * parse it on the first DownTrack that numbers pictures. 0, or -1 with an exception set. */
int bs_fanout(PyObject *dts, const uint8_t *data, size_t n, const bs_rtp_view *v, const bs_picture *pic, PyObject *layer,
              int keyframe, double now, unsigned long long *packets, unsigned long long *bytes) {
    fan_totals tot = {0, 0};
    int result = -1;
    PyObject *ring = NULL;
    unsigned long long serial = 0;
    bs_picture picd;
    int have_pic = pic != NULL ? 1 : -1; /* else parsed on the first DownTrack that needs it */
    uint8_t stack_scratch[2048];
    uint8_t *scratch = stack_scratch;
    if (!PyList_Check(dts)) {
        PyErr_SetString(PyExc_TypeError, "downtracks must be a list");
        goto done;
    }
    /* the layer's PacketRing: the packet is kept there once, for every DownTrack's NACKs */
    if (bs_is_layer(layer)) {
        ring = bs_layer_ring(layer);
        Py_XINCREF(ring);
    } else if (!(ring = PyObject_GetAttr(layer, str_ring))) {
        PyErr_Clear();
    }
    if (ring && !bs_is_ring(ring))
        Py_CLEAR(ring); /* (a Python PacketRing: a Layer made for the other data path) */
    PyObject *ep = PyObject_GetAttr(layer, str_epoch);
    if (!ep)
        goto done;
    long long epoch = PyLong_AsLongLong(ep);
    Py_DECREF(ep);
    if (epoch == -1 && PyErr_Occurred())
        goto done;
    if (n > sizeof(stack_scratch)) {
        scratch = malloc(n);
        if (!scratch) {
            PyErr_NoMemory();
            goto done;
        }
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(dts); i++) {
        PyObject *o = PyList_GET_ITEM(dts, i);
        if (!PyObject_TypeCheck(o, &DownTrackCoreType)) {
            PyErr_SetString(PyExc_TypeError, "fanout: not a native DownTrack");
            goto done;
        }
        DownTrackCore *s = (DownTrackCore *)o;
        const bs_picture *vp = NULL;
        if (s->picture_codec) { /* (a track's DownTracks share its codec: parsed once) */
            if (have_pic < 0) {
                have_pic = bs_picture_parse(s->picture_codec, data + v->payload_start,
                                            v->payload_end - v->payload_start, &picd) == 0;
                pic = &picd;
            }
            if (have_pic)
                vp = pic;
        }
        Py_INCREF(o); /* the layer-change callback may change the list */
        int r = dtc_forward(s, data, n, v, vp, layer, ring, &serial, epoch, keyframe, now, scratch, &tot);
        Py_DECREF(o);
        if (r < 0)
            goto done;
    }
    result = 0;
done:
    flush_unless_held();
    Py_XDECREF(ring);
    if (scratch != stack_scratch)
        free(scratch);
    *packets = tot.packets;
    *bytes = tot.bytes;
    return result;
}

/* fanout(downtracks, data, layer, keyframe, now[, picture]) -> (packets, bytes). `picture`: None, or
 * (start, keyframe, tid, sid, end) of a packet whose layers the payload does not say (AV1: the
 * ingress read them from the dependency descriptor, sfu.rtp.Av1Picture); it then numbers nothing. */
static PyObject *native_fanout(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 5 && nargs != 6) {
        PyErr_SetString(PyExc_TypeError, "fanout(downtracks, data, layer, keyframe, now[, picture])");
        return NULL;
    }
    int keyframe = PyObject_IsTrue(args[3]);
    double now = PyFloat_AsDouble(args[4]);
    if (keyframe < 0 || (now == -1.0 && PyErr_Occurred()))
        return NULL;
    bs_picture given, *pic = NULL;
    if (nargs == 6 && args[5] != Py_None) {
        int start, key, tid, sid, end;
        if (!PyArg_ParseTuple(args[5], "ppiip;picture: (start, keyframe, tid, sid, end)", &start, &key, &tid, &sid,
                              &end))
            return NULL;
        if (tid < 0 || tid > 7 || sid < 0 || sid > 7) {
            PyErr_SetString(PyExc_ValueError, "picture: tid and sid are 0..7");
            return NULL;
        }
        memset(&given, 0, sizeof(given));
        given.start = (uint8_t)start;
        given.keyframe = (uint8_t)key;
        given.tid = tid;
        given.sid = sid;
        given.end = (uint8_t)end;
        given.picture_id = given.tl0picidx = -1;
        pic = &given;
    }
    Py_buffer b;
    if (PyObject_GetBuffer(args[1], &b, PyBUF_SIMPLE) < 0)
        return NULL;
    PyObject *result = NULL;
    bs_rtp_view v;
    unsigned long long packets = 0, bytes = 0;
    if (bs_rtp_parse(b.buf, (size_t)b.len, &v) < 0) {
        PyErr_SetString(PyExc_ValueError, "not a valid RTP packet");
        flush_unless_held();
    } else if (bs_fanout(args[0], b.buf, (size_t)b.len, &v, pic, args[2], keyframe, now, &packets, &bytes) == 0) {
        result = Py_BuildValue("(KK)", packets, bytes);
    }
    PyBuffer_Release(&b);
    return result;
}

#define DTC_MEMBER(name, type) {#name, type, offsetof(DownTrackCore, name), 0, NULL}

static PyMemberDef DTC_members[] = {
    {"transport", T_OBJECT, offsetof(DownTrackCore, transport), 0, NULL},
    {"slot", T_OBJECT, offsetof(DownTrackCore, slot), 0, NULL},
    {"current", T_OBJECT, offsetof(DownTrackCore, current), 0, NULL},
    {"target", T_OBJECT, offsetof(DownTrackCore, target), 0, NULL},
    DTC_MEMBER(is_video, T_BOOL),
    DTC_MEMBER(picture_codec, T_INT),
    DTC_MEMBER(clock_rate, T_INT),
    DTC_MEMBER(seq_off, T_UINT),
    DTC_MEMBER(ts_off, T_UINT),
    DTC_MEMBER(pid_off, T_UINT),
    DTC_MEMBER(tl0_off, T_UINT),
    DTC_MEMBER(switch_seq, T_INT),
    DTC_MEMBER(epoch, T_LONGLONG),
    DTC_MEMBER(started, T_BOOL),
    DTC_MEMBER(last_seq, T_UINT),
    DTC_MEMBER(last_ts, T_UINT),
    DTC_MEMBER(last_pid, T_UINT),
    DTC_MEMBER(last_tl0, T_UINT),
    DTC_MEMBER(rtx_seq, T_UINT),
    DTC_MEMBER(last_sent_at, T_DOUBLE),
    DTC_MEMBER(packets, T_ULONGLONG),
    DTC_MEMBER(octets, T_ULONGLONG),
    DTC_MEMBER(bytes_sent, T_ULONGLONG),
    DTC_MEMBER(temporal_drops, T_ULONGLONG),
    DTC_MEMBER(max_sid, T_INT),
    DTC_MEMBER(target_sid, T_INT),
    DTC_MEMBER(spatial_drops, T_ULONGLONG),
    {NULL},
};

static PyGetSetDef DTC_getset[] = {
    {"max_tid", (getter)DTC_get_max_tid, (setter)DTC_set_max_tid, "VP8/VP9 temporal layers above this are not forwarded",
     NULL},
    {"_rtx_window_at", (getter)DTC_get_rtx_window_at, (setter)DTC_set_rtx_window_at, NULL, NULL},
    {NULL},
};

static PyMethodDef DTC_methods[] = {
    {"_configure_native", (PyCFunction)(void (*)(void))DTC_configure, METH_VARARGS | METH_KEYWORDS,
     "pt, ssrc, ext_map, mid_in, ast_in, mid_out: what the hot path reads from the slot"},
    {"_cached", (PyCFunction)DTC_cached, METH_O, "the cached (rewritten, unprotected) packet with this seq, or None"},
    {"_resend", (PyCFunction)DTC_resend, METH_VARARGS,
     "lost, now, interval, left, rtx_pt, rtx_ssrc, oldest: the per-packet part of a NACK answer"},
    {"_clear_cache", (PyCFunction)DTC_clear_cache, METH_NOARGS, "free the packet cache"},
    {NULL},
};

static PyTypeObject DownTrackCoreType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "sfu._native.DownTrackCore",
    .tp_basicsize = sizeof(DownTrackCore),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "The per-packet state of a DownTrack, in C (base of sfu.datapath.NativeDownTrack).",
    .tp_new = DTC_new,
    .tp_dealloc = (destructor)DTC_dealloc,
    .tp_traverse = (traverseproc)DTC_traverse,
    .tp_clear = (inquiry)DTC_clear,
    .tp_members = DTC_members,
    .tp_getset = DTC_getset,
    .tp_methods = DTC_methods,
    .tp_dictoffset = offsetof(DownTrackCore, dict),
    .tp_weaklistoffset = offsetof(DownTrackCore, weakrefs),
};

/* pace(): let go what the pacers allow now, send it; the number of egresses still holding packets */
static PyObject *py_pace(PyObject *self, PyObject *unused) {
    double now = mono_now();
    size_t keep = 0;
    for (size_t i = 0; i < n_paced_egress; i++) {
        EgressObject *e = paced_egress[i];
        if (e->fd < 0)
            egress_drop_held(e);
        else
            egress_release(e, now);
        if (egress_waiting(e)) {
            paced_egress[keep++] = e;
        } else {
            e->pace_listed = 0;
            Py_DECREF(e); /* (one queued for sending is on the pending list, with its own reference) */
        }
    }
    n_paced_egress = keep;
    flush_unless_held();
    return PyLong_FromSize_t(keep);
}

static PyObject *py_set_pace_waker(PyObject *self, PyObject *arg) {
    if (arg != Py_None && !PyCallable_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "set_pace_waker: a callable or None");
        return NULL;
    }
    Py_XSETREF(pace_waker, arg == Py_None ? NULL : Py_NewRef(arg));
    Py_RETURN_NONE;
}

static PyObject *py_pace_state(PyObject *self, PyObject *unused) {
    return Py_BuildValue("(KKn)", paced_total, paced_forced, (Py_ssize_t)n_paced_egress);
}

static PyMethodDef forward_functions[] = {
    {"pace", py_pace, METH_NOARGS,
     "pace(): send what every Egress's pacer lets go now; how many Egresses still hold packets"},
    {"set_pace_waker", py_set_pace_waker, METH_O,
     "set_pace_waker(f): f() is called when an Egress starts holding packets (arm a timer for pace()); None: none"},
    {"pace_state", py_pace_state, METH_NOARGS,
     "pace_state() -> (packets that waited, of them the ones a bound let go, Egresses holding packets now)"},
    {"fanout", (PyCFunction)(void (*)(void))native_fanout, METH_FASTCALL,
     "fanout(downtracks, data, layer, keyframe, now) -> (packets, bytes): DownTrack.forward for each, then flush"},
    {NULL},
};

int bs_register_forward(PyObject *m) {
    if (!(str_active = PyUnicode_InternFromString("active")) || !(str_egress = PyUnicode_InternFromString("egress")) ||
        !(str_epoch = PyUnicode_InternFromString("epoch")) ||
        !(str_send_rtp = PyUnicode_InternFromString("send_rtp")) ||
        !(str_begin_run = PyUnicode_InternFromString("_begin_run")) ||
        !(str_ring = PyUnicode_InternFromString("ring")))
        return -1;
    if (PyType_Ready(&EgressType) < 0 || PyType_Ready(&DownTrackCoreType) < 0)
        return -1;
    Py_INCREF(&EgressType);
    if (PyModule_AddObject(m, "Egress", (PyObject *)&EgressType) < 0)
        return -1;
    Py_INCREF(&DownTrackCoreType);
    if (PyModule_AddObject(m, "DownTrackCore", (PyObject *)&DownTrackCoreType) < 0)
        return -1;
    if (PyModule_AddFunctions(m, forward_functions) < 0)
        return -1;
    return 0;
}
