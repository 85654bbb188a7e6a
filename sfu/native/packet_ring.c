/* PacketRing: the last BS_RING_SIZE packets of one Layer as they arrived, kept once for every
 * subscriber's NACKs. The C twin of sfu/packet_ring.py (why it exists is said there); the same methods,
 * and the C calls forward.c makes (forward.h).
 *
 * A slot's buffer grows to the largest packet it has held, in 128-byte steps, so an audio layer's ring
 * is ~1024 x 128 bytes. Serials come from one counter for the whole process: a DownTrack remembers a
 * packet as (which of its rings, serial), and a serial can never name a packet of another ring.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <string.h>

#include "forward.h"

#define RING_MASK (BS_RING_SIZE - 1)

typedef struct {
    unsigned long long serial; /* 0: empty */
    uint32_t len, cap;
    uint16_t seq;
    uint8_t *buf;
} ring_slot;

typedef struct {
    PyObject_HEAD
    ring_slot *slots; /* BS_RING_SIZE, allocated on the first store */
    unsigned long long stores;
} PacketRing;

static PyTypeObject PacketRingType;
static unsigned long long last_serial; /* under the GIL */

int bs_is_ring(PyObject *o) { return Py_TYPE(o) == &PacketRingType; }

unsigned long long bs_ring_store(PyObject *o, uint16_t seq, const uint8_t *data, size_t n) {
    PacketRing *r = (PacketRing *)o;
    if (n > 0xFFFF) /* not a datagram */
        return 0;
    if (!r->slots && !(r->slots = calloc(BS_RING_SIZE, sizeof(ring_slot))))
        return 0;
    ring_slot *s = &r->slots[seq & RING_MASK];
    /* the same packet again (a fan-out called once per DownTrack): it keeps its serial */
    if (s->serial && s->seq == seq && s->len == n && memcmp(s->buf, data, n) == 0)
        return s->serial;
    if (s->cap < n || !s->buf) {
        size_t ncap = n ? (n + 127) & ~(size_t)127 : 128; /* (never NULL: get returns NULL for "not held") */
        uint8_t *nb = realloc(s->buf, ncap);
        if (!nb) {
            s->serial = 0;
            return 0;
        }
        s->buf = nb;
        s->cap = (uint32_t)ncap;
    }
    memcpy(s->buf, data, n);
    s->len = (uint32_t)n;
    s->seq = seq;
    s->serial = ++last_serial;
    r->stores++;
    return s->serial;
}

const uint8_t *bs_ring_get(PyObject *o, uint16_t seq, unsigned long long serial, size_t *len) {
    PacketRing *r = (PacketRing *)o;
    if (!r->slots || !serial)
        return NULL;
    ring_slot *s = &r->slots[seq & RING_MASK];
    if (s->serial != serial || s->seq != seq)
        return NULL;
    *len = s->len;
    return s->buf;
}

static PyObject *PR_store(PacketRing *r, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "store(seq, data)");
        return NULL;
    }
    long seq = PyLong_AsLong(args[0]);
    if (seq == -1 && PyErr_Occurred())
        return NULL;
    Py_buffer b;
    if (PyObject_GetBuffer(args[1], &b, PyBUF_SIMPLE) < 0)
        return NULL;
    if (b.len > 0xFFFF) {
        PyBuffer_Release(&b);
        PyErr_SetString(PyExc_ValueError, "a packet is at most 65535 bytes");
        return NULL;
    }
    unsigned long long serial = bs_ring_store((PyObject *)r, (uint16_t)(seq & 0xFFFF), b.buf, (size_t)b.len);
    PyBuffer_Release(&b);
    if (!serial)
        return PyErr_NoMemory();
    return PyLong_FromUnsignedLongLong(serial);
}

static PyObject *PR_get(PacketRing *r, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "get(seq, serial)");
        return NULL;
    }
    long seq = PyLong_AsLong(args[0]);
    if (seq == -1 && PyErr_Occurred())
        return NULL;
    unsigned long long serial = PyLong_AsUnsignedLongLong(args[1]);
    if (serial == (unsigned long long)-1 && PyErr_Occurred())
        return NULL;
    size_t len;
    const uint8_t *p = bs_ring_get((PyObject *)r, (uint16_t)(seq & 0xFFFF), serial, &len);
    if (!p)
        Py_RETURN_NONE;
    return PyBytes_FromStringAndSize((const char *)p, (Py_ssize_t)len);
}

static void PR_dealloc(PacketRing *r) {
    if (r->slots) {
        for (int i = 0; i < BS_RING_SIZE; i++)
            free(r->slots[i].buf);
        free(r->slots);
    }
    Py_TYPE(r)->tp_free((PyObject *)r);
}

static PyMethodDef PR_methods[] = {
    {"store", (PyCFunction)(void (*)(void))PR_store, METH_FASTCALL,
     "store(seq, data) -> serial: keep the packet; the same packet already held keeps its serial"},
    {"get", (PyCFunction)(void (*)(void))PR_get, METH_FASTCALL,
     "get(seq, serial) -> bytes | None: the packet store gave this serial, while the ring holds it"},
    {NULL},
};

static PyMemberDef PR_members[] = {
    {"stores", T_ULONGLONG, offsetof(PacketRing, stores), READONLY, "packets stored"},
    {NULL},
};

static PyTypeObject PacketRingType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "sfu._native.PacketRing",
    .tp_basicsize = sizeof(PacketRing),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "PacketRing(): the last 1024 packets of one Layer as received (sfu/packet_ring.py's twin)",
    .tp_new = PyType_GenericNew,
    .tp_dealloc = (destructor)PR_dealloc,
    .tp_methods = PR_methods,
    .tp_members = PR_members,
};

int bs_register_packet_ring(PyObject *m) {
    if (PyType_Ready(&PacketRingType) < 0)
        return -1;
    Py_INCREF(&PacketRingType);
    if (PyModule_AddObject(m, "PacketRing", (PyObject *)&PacketRingType) < 0) {
        Py_DECREF(&PacketRingType);
        return -1;
    }
    return 0;
}
