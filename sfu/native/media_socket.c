/* sfu._native.MediaSocket: the receive side of one UDP socket on the native data path.
 *
 *   MediaSocket(fd, on_other)        fd: a non-blocking UDP socket the caller owns (and closes)
 *   .drain() -> int                  read what is queued: recvmmsg, BATCH datagrams a call, at most
 *                                    ROUNDS calls (a busy socket cannot starve the event loop)
 *   .attach(session, on_rtp, on_rtcp, on_drop) / .detach()
 *   .close()                         forget the fd (drain reads nothing from then on)
 *   .follow(ssrc, max_ext, tag_len) / .followed(ssrc) / .take_missing(ssrc)
 *                                    count an incoming RTP stream here instead of delivering it
 *                                    (the load generator's light subscribers, bench/loadgen/peers.py)
 *
 * Every datagram is classified by its first byte (RFC 7983). Once a transport's DTLS-SRTP keys are
 * known, `attach` gives the receive SrtpSession: SRTP/SRTCP (128-191) is then unprotected in place
 * and the plaintext handed to on_rtp / on_rtcp (RFC 5761: RTCP packet types 192-208 in the second
 * byte, as aiortc decides). A packet the session refuses is a counted drop: on_drop("srtp_refused").
 * Everything else (STUN, DTLS, and media before attach) goes to on_other(data, (host, port)), which
 * is aioice's StunProtocol.datagram_received, as the event loop would have called it.
 *
 * While it delivers one recvmmsg batch, the native sends are held (forward.c bs_send_hold): what
 * the batch's packets queue for each subscriber leaves in one sendmmsg when the batch is delivered.
 *
 * The Python twin is sfu.media_socket.PyMediaSocket; the same tests run against both.
 *
 * Followed streams: an RTP packet (SRTP keeps its header in the clear) of an SSRC given to `follow`
 * is counted from its header without being unprotected: packets, bytes (without the SRTP tag),
 * highest extended sequence number, forward gaps, late or repeated packets, and the numbers
 * skipped by a gap of less than 64 (until `take_missing`, for NACKs). Only such a packet with the
 * P bit set (the bench's probes) is then delivered as well. This is what lets one core receive
 * what an SFU forwards at full speed; the counting is the Python twin's `_count`, the same as
 * bench/loadgen/peers.py LightSubscriber._track.
 *
 * The buffers are static: drain runs with the GIL held and is not re-entrant (a callback that
 * drains again gets 0; the event loop calls again while the socket is readable). A callback may
 * close or detach this object, or raise: the remaining datagrams of the batch are still delivered
 * (or, once closed, dropped and counted) and the first exception is raised when drain returns.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

#include "forward.h"
#include "srtp.h"

#define BATCH 32
#define ROUNDS 4
#define SLOT 65536 /* a whole UDP datagram always fits: MSG_TRUNC cannot happen on UDP */
#define MAX_FOLLOWED 16 /* streams one socket counts (a light subscriber has a few) */
#define MAX_MISSING 128 /* skipped numbers kept per stream between two take_missing */

static uint8_t g_buf[BATCH][SLOT];
static struct mmsghdr g_msgs[BATCH];
static struct iovec g_iov[BATCH];
static struct sockaddr_storage g_addr[BATCH];
static int g_busy;

typedef struct {
    uint32_t ssrc;
    int tag_len;
    long long max_ext;
    unsigned long long received, bytes, gaps, late;
    int nmissing;
    uint16_t missing[MAX_MISSING];
} followed_stream;

typedef struct {
    PyObject_HEAD
    int fd;
    int nfollowed;
    followed_stream *followed; /* MAX_FOLLOWED, allocated by the first follow */
    unsigned long long counted;
    PyObject *on_other;
    PyObject *session; /* NULL until attach */
    PyObject *on_rtp, *on_rtcp, *on_drop;
    unsigned long long received, unprotected, refused, other, dropped, errors, calls;
} MediaSocketObject;

static PyTypeObject MediaSocketType;

static int MediaSocket_init(MediaSocketObject *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"fd", "on_other", NULL};
    int fd;
    PyObject *on_other;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "iO:MediaSocket", kwlist, &fd, &on_other))
        return -1;
    if (fd < 0) {
        PyErr_SetString(PyExc_ValueError, "fd must be an open socket's descriptor");
        return -1;
    }
    if (!PyCallable_Check(on_other)) {
        PyErr_SetString(PyExc_TypeError, "on_other must be callable");
        return -1;
    }
    self->fd = fd;
    Py_INCREF(on_other);
    Py_XSETREF(self->on_other, on_other);
    return 0;
}

static void clear_attached(MediaSocketObject *self) {
    Py_CLEAR(self->session);
    Py_CLEAR(self->on_rtp);
    Py_CLEAR(self->on_rtcp);
    Py_CLEAR(self->on_drop);
}

static int MediaSocket_traverse(MediaSocketObject *self, visitproc visit, void *arg) {
    Py_VISIT(self->on_other);
    Py_VISIT(self->session);
    Py_VISIT(self->on_rtp);
    Py_VISIT(self->on_rtcp);
    Py_VISIT(self->on_drop);
    return 0;
}

static int MediaSocket_clear(MediaSocketObject *self) {
    Py_CLEAR(self->on_other);
    clear_attached(self);
    return 0;
}

static void MediaSocket_dealloc(MediaSocketObject *self) {
    PyObject_GC_UnTrack(self);
    MediaSocket_clear(self);
    free(self->followed);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *MediaSocket_attach(MediaSocketObject *self, PyObject *args) {
    PyObject *session, *on_rtp, *on_rtcp, *on_drop;
    if (!PyArg_ParseTuple(args, "OOOO:attach", &session, &on_rtp, &on_rtcp, &on_drop))
        return NULL;
    if (!bs_is_srtp_session(session)) {
        PyErr_Format(PyExc_TypeError, "session must be an SrtpSession, not %.100s", Py_TYPE(session)->tp_name);
        return NULL;
    }
    if (!PyCallable_Check(on_rtp) || !PyCallable_Check(on_rtcp) || !PyCallable_Check(on_drop)) {
        PyErr_SetString(PyExc_TypeError, "on_rtp, on_rtcp and on_drop must be callable");
        return NULL;
    }
    clear_attached(self);
    Py_INCREF(session);
    Py_INCREF(on_rtp);
    Py_INCREF(on_rtcp);
    Py_INCREF(on_drop);
    self->session = session;
    self->on_rtp = on_rtp;
    self->on_rtcp = on_rtcp;
    self->on_drop = on_drop;
    Py_RETURN_NONE;
}

static PyObject *MediaSocket_detach(MediaSocketObject *self, PyObject *unused) {
    clear_attached(self);
    Py_RETURN_NONE;
}

static PyObject *MediaSocket_close(MediaSocketObject *self, PyObject *unused) {
    self->fd = -1;
    clear_attached(self);
    Py_RETURN_NONE;
}

/* (host, port) as aioice takes it from the event loop; ("", 0) for a family without one. */
static PyObject *address(const struct sockaddr_storage *ss, socklen_t len) {
    char host[INET6_ADDRSTRLEN];
    if (ss->ss_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        if (inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host)) != NULL)
            return Py_BuildValue("(si)", host, (int)ntohs(a->sin_port));
    } else if (ss->ss_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
        if (inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host)) != NULL)
            return Py_BuildValue("(si)", host, (int)ntohs(a->sin6_port));
    }
    return Py_BuildValue("(si)", "", 0);
}

/* The first exception a callback raised during one drain; later ones are dropped. */
typedef struct {
    PyObject *type, *value, *tb;
} saved_error;

static void keep_error(saved_error *saved) {
    if (!PyErr_Occurred())
        return;
    if (saved->type == NULL)
        PyErr_Fetch(&saved->type, &saved->value, &saved->tb);
    else
        PyErr_Clear();
}

/* f(arg) or, with arg2, f(arg, arg2); steals arg and arg2. A NULL argument (it could not be built)
 * has its error kept instead of a call. */
static void call(PyObject *f, PyObject *arg, PyObject *arg2, int two, saved_error *saved) {
    if (arg != NULL && (!two || arg2 != NULL)) {
        Py_INCREF(f); /* a callback may detach or close, dropping the object's reference */
        PyObject *r = two ? PyObject_CallFunctionObjArgs(f, arg, arg2, NULL) : PyObject_CallOneArg(f, arg);
        Py_DECREF(f);
        Py_XDECREF(r);
    }
    Py_XDECREF(arg);
    Py_XDECREF(arg2);
    keep_error(saved);
}

static followed_stream *find_followed(MediaSocketObject *self, uint32_t ssrc) {
    for (int i = 0; i < self->nfollowed; i++)
        if (self->followed[i].ssrc == ssrc)
            return &self->followed[i];
    return NULL;
}

static void note_missing(followed_stream *f, uint16_t seq, int add) {
    for (int i = 0; i < f->nmissing; i++) {
        if (f->missing[i] == seq) {
            if (!add)
                f->missing[i] = f->missing[--f->nmissing];
            return;
        }
    }
    if (add && f->nmissing < MAX_MISSING)
        f->missing[f->nmissing++] = seq;
}

/* one packet of a followed stream, from its clear header (sfu/media_socket.py `_count`) */
static void count_followed(followed_stream *f, const uint8_t *buf, Py_ssize_t len) {
    uint16_t seq = (uint16_t)((buf[2] << 8) | buf[3]);
    f->received++;
    f->bytes += (unsigned long long)(len > f->tag_len ? len - f->tag_len : 0);
    uint16_t last = (uint16_t)(f->max_ext & 0xFFFF);
    uint16_t delta = (uint16_t)(seq - last);
    if (delta > 0 && delta < 0x8000) {
        if (delta > 1) {
            f->gaps++;
            if (delta < 64)
                for (uint16_t k = 1; k < delta; k++)
                    note_missing(f, (uint16_t)(last + k), 1);
        }
        f->max_ext += delta;
    } else {
        f->late++;
        note_missing(f, seq, 0);
    }
}

static void deliver(MediaSocketObject *self, uint8_t *buf, Py_ssize_t len, const struct sockaddr_storage *from,
                    socklen_t fromlen, saved_error *saved) {
    self->received++;
    if (self->nfollowed && len >= 12 && buf[0] > 127 && buf[0] < 192 && !(buf[1] > 191 && buf[1] < 209)) {
        uint32_t ssrc = ((uint32_t)buf[8] << 24) | ((uint32_t)buf[9] << 16) | ((uint32_t)buf[10] << 8) | buf[11];
        followed_stream *f = find_followed(self, ssrc);
        if (f) {
            count_followed(f, buf, len);
            self->counted++;
            if (!(buf[0] & 0x20))
                return;
        }
    }
    if (self->session != NULL && len > 0 && buf[0] > 127 && buf[0] < 192) {
        int rtcp = len >= 2 && buf[1] > 191 && buf[1] < 209;
        PyObject *session = self->session;
        Py_INCREF(session);
        Py_ssize_t n = bs_srtp_session_unprotect_in_place(session, buf, len, rtcp);
        Py_DECREF(session);
        if (n < 0) {
            PyErr_Clear();
            self->refused++;
            if (self->on_drop != NULL)
                call(self->on_drop, PyUnicode_FromString("srtp_refused"), NULL, 0, saved);
            return;
        }
        self->unprotected++;
        call(rtcp ? self->on_rtcp : self->on_rtp, PyBytes_FromStringAndSize((const char *)buf, n), NULL, 0, saved);
        return;
    }
    self->other++;
    if (self->on_other != NULL)
        call(self->on_other, PyBytes_FromStringAndSize((const char *)buf, len), address(from, fromlen), 1, saved);
}

static PyObject *MediaSocket_drain(MediaSocketObject *self, PyObject *unused) {
    if (g_busy || self->fd < 0)
        return PyLong_FromLong(0);
    g_busy = 1;
    Py_INCREF(self); /* a callback may drop the last other reference (the event loop's reader) */
    self->calls++;
    saved_error saved = {NULL, NULL, NULL};
    long total = 0;
    for (int round = 0; round < ROUNDS && self->fd >= 0; round++) {
        for (int i = 0; i < BATCH; i++) {
            g_iov[i].iov_base = g_buf[i];
            g_iov[i].iov_len = SLOT;
            memset(&g_msgs[i].msg_hdr, 0, sizeof(g_msgs[i].msg_hdr));
            g_msgs[i].msg_hdr.msg_iov = &g_iov[i];
            g_msgs[i].msg_hdr.msg_iovlen = 1;
            g_msgs[i].msg_hdr.msg_name = &g_addr[i];
            g_msgs[i].msg_hdr.msg_namelen = sizeof(g_addr[i]);
        }
        int n = recvmmsg(self->fd, g_msgs, BATCH, MSG_DONTWAIT, NULL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                self->errors++; /* e.g. a queued ICMP error: reported once by the kernel, nothing to read */
            break;
        }
        total += n;
        bs_send_hold();
        for (int i = 0; i < n; i++) {
            if (self->fd < 0) {
                self->received++; /* closed by a callback: what was read is dropped, and counted */
                self->dropped++;
                continue;
            }
            if (g_msgs[i].msg_hdr.msg_flags & MSG_TRUNC) {
                self->received++;
                self->dropped++;
                continue;
            }
            deliver(self, g_buf[i], (Py_ssize_t)g_msgs[i].msg_len, &g_addr[i], g_msgs[i].msg_hdr.msg_namelen, &saved);
        }
        bs_send_release();
        if (n < BATCH)
            break;
    }
    g_busy = 0;
    Py_DECREF(self);
    if (saved.type != NULL) {
        PyErr_Restore(saved.type, saved.value, saved.tb);
        return NULL;
    }
    return PyLong_FromLong(total);
}

/* follow(ssrc, max_ext, tag_len) -> bool: count this stream here from now on, continuing from the
 * highest extended sequence number seen so far; False when MAX_FOLLOWED streams are followed */
static PyObject *MediaSocket_follow(MediaSocketObject *self, PyObject *args) {
    unsigned int ssrc;
    long long max_ext;
    int tag_len;
    if (!PyArg_ParseTuple(args, "ILi:follow", &ssrc, &max_ext, &tag_len))
        return NULL;
    if (max_ext < 0 || tag_len < 0 || tag_len > 16) {
        PyErr_SetString(PyExc_ValueError, "max_ext must be >= 0 and tag_len 0..16");
        return NULL;
    }
    followed_stream *f = find_followed(self, ssrc);
    if (!f) {
        if (!self->followed && !(self->followed = calloc(MAX_FOLLOWED, sizeof(followed_stream))))
            return PyErr_NoMemory();
        if (self->nfollowed >= MAX_FOLLOWED)
            Py_RETURN_FALSE;
        f = &self->followed[self->nfollowed++];
    }
    memset(f, 0, sizeof(*f));
    f->ssrc = ssrc;
    f->max_ext = max_ext;
    f->tag_len = tag_len;
    Py_RETURN_TRUE;
}

static followed_stream *followed_arg(MediaSocketObject *self, PyObject *arg) {
    unsigned long ssrc = PyLong_AsUnsignedLong(arg);
    if (ssrc == (unsigned long)-1 && PyErr_Occurred())
        return NULL;
    return find_followed(self, (uint32_t)ssrc);
}

static PyObject *MediaSocket_followed(MediaSocketObject *self, PyObject *arg) {
    followed_stream *f = followed_arg(self, arg);
    if (!f) {
        if (PyErr_Occurred())
            return NULL;
        Py_RETURN_NONE;
    }
    return Py_BuildValue("(LKKKK)", f->max_ext, f->received, f->bytes, f->gaps, f->late);
}

static int cmp_u16(const void *a, const void *b) { return (int)*(const uint16_t *)a - (int)*(const uint16_t *)b; }

static PyObject *MediaSocket_take_missing(MediaSocketObject *self, PyObject *arg) {
    followed_stream *f = followed_arg(self, arg);
    if (!f) {
        if (PyErr_Occurred())
            return NULL;
        return PyList_New(0);
    }
    qsort(f->missing, (size_t)f->nmissing, sizeof(uint16_t), cmp_u16);
    PyObject *out = PyList_New(f->nmissing);
    if (!out)
        return NULL;
    for (int i = 0; i < f->nmissing; i++) {
        PyObject *v = PyLong_FromLong(f->missing[i]);
        if (!v) {
            Py_DECREF(out);
            return NULL;
        }
        PyList_SET_ITEM(out, i, v);
    }
    f->nmissing = 0;
    return out;
}

static PyObject *MediaSocket_get_attached(MediaSocketObject *self, void *closure) {
    return PyBool_FromLong(self->session != NULL);
}

static PyMethodDef MediaSocket_methods[] = {
    {"drain", (PyCFunction)MediaSocket_drain, METH_NOARGS,
     "drain() -> int: read the queued datagrams (at most BATCH * ROUNDS) and deliver each; the number read."},
    {"attach", (PyCFunction)MediaSocket_attach, METH_VARARGS,
     "attach(session, on_rtp, on_rtcp, on_drop): unprotect SRTP/SRTCP with `session` from now on."},
    {"detach", (PyCFunction)MediaSocket_detach, METH_NOARGS, "detach(): media goes to on_other again."},
    {"close", (PyCFunction)MediaSocket_close, METH_NOARGS, "close(): read nothing more (the fd is the caller's)."},
    {"follow", (PyCFunction)MediaSocket_follow, METH_VARARGS,
     "follow(ssrc, max_ext, tag_len) -> bool: count this RTP stream here (deliver only its P-bit packets)."},
    {"followed", (PyCFunction)MediaSocket_followed, METH_O,
     "followed(ssrc) -> (max_ext, received, bytes, gaps, late) | None"},
    {"take_missing", (PyCFunction)MediaSocket_take_missing, METH_O,
     "take_missing(ssrc) -> [seq, ...]: the numbers skipped by small gaps and not arrived since, sorted; forgets them"},
    {NULL},
};

static PyMemberDef MediaSocket_members[] = {
    {"fd", T_INT, offsetof(MediaSocketObject, fd), READONLY, "the socket's descriptor, -1 once closed"},
    {"received", T_ULONGLONG, offsetof(MediaSocketObject, received), READONLY, "datagrams read"},
    {"unprotected", T_ULONGLONG, offsetof(MediaSocketObject, unprotected), READONLY,
     "SRTP/SRTCP packets unprotected and delivered"},
    {"refused", T_ULONGLONG, offsetof(MediaSocketObject, refused), READONLY,
     "SRTP/SRTCP packets the session refused (forged, replayed, malformed)"},
    {"other", T_ULONGLONG, offsetof(MediaSocketObject, other), READONLY, "datagrams handed to on_other"},
    {"dropped", T_ULONGLONG, offsetof(MediaSocketObject, dropped), READONLY,
     "datagrams not delivered: truncated, or read after a callback closed this object"},
    {"errors", T_ULONGLONG, offsetof(MediaSocketObject, errors), READONLY, "receive errors (queued ICMP errors)"},
    {"calls", T_ULONGLONG, offsetof(MediaSocketObject, calls), READONLY, "drain calls (each one wake-up of the event loop for this socket)"},
    {"counted", T_ULONGLONG, offsetof(MediaSocketObject, counted), READONLY, "packets of followed streams counted"},
    {NULL},
};

static PyGetSetDef MediaSocket_getset[] = {
    {"attached", (getter)MediaSocket_get_attached, NULL, "whether media is unprotected here", NULL},
    {NULL},
};

static PyTypeObject MediaSocketType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "sfu._native.MediaSocket",
    .tp_basicsize = sizeof(MediaSocketObject),
    .tp_dealloc = (destructor)MediaSocket_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "MediaSocket(fd: int, on_other)\n\n"
              "The receive side of one UDP socket: recvmmsg, SRTP/SRTCP unprotected natively once attached,\n"
              "everything else to on_other(data, (host, port)).",
    .tp_traverse = (traverseproc)MediaSocket_traverse,
    .tp_clear = (inquiry)MediaSocket_clear,
    .tp_methods = MediaSocket_methods,
    .tp_members = MediaSocket_members,
    .tp_getset = MediaSocket_getset,
    .tp_init = (initproc)MediaSocket_init,
    .tp_new = PyType_GenericNew,
};

int bs_register_media_socket(PyObject *m) {
    if (PyType_Ready(&MediaSocketType) < 0)
        return -1;
    Py_INCREF(&MediaSocketType);
    if (PyModule_AddObject(m, "MediaSocket", (PyObject *)&MediaSocketType) < 0) {
        Py_DECREF(&MediaSocketType);
        return -1;
    }
    return 0;
}
