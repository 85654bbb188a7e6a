/* LayerCore: a Layer's rate accounting in C (base class of sfu.datapath.NativeLayer).
 *
 * `Layer.account` (sfu/track.py) runs for every media packet a publisher sends: packets and bytes,
 * the last arrival, and a bitrate over a sliding second, smoothed. Here the same fields are C members
 * with the Python names, and `account` does the same arithmetic in the same order (every double as
 * Python computes it: the build has -ffp-contract=off), so the LayerSelector, the metrics and the
 * tests read one set of attributes on either data path. IngressCore calls `bs_layer_account`
 * directly. tests/unit/sfu/native/test_layer_parity.py runs both in lockstep.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include "forward.h"

typedef struct {
    PyObject_HEAD
    long long packets, bytes, window_bytes;
    double last_packet_at, window_start, bitrate;
    PyObject *ring; /* Layer.ring: its PacketRing (read by the fan-out without an attribute lookup) */
} LayerCore;

static PyTypeObject LayerCoreType;

int bs_is_layer(PyObject *o) { return PyObject_TypeCheck(o, &LayerCoreType); }

PyObject *bs_layer_ring(PyObject *o) { return ((LayerCore *)o)->ring; }

void bs_layer_account(PyObject *o, long long nbytes, double now) {
    LayerCore *s = (LayerCore *)o;
    s->packets += 1;
    s->bytes += nbytes;
    s->last_packet_at = now;
    s->window_bytes += nbytes;
    if (now - s->window_start >= 1.0) {
        if (s->window_start != 0.0) { /* Python: `if self._window_start:` (NaN is true there too) */
            double sample = (double)(s->window_bytes * 8) / (now - s->window_start);
            /* smoothed: a keyframe doubles a one-second window, which must not read as the rate */
            s->bitrate = s->bitrate == 0.0 ? sample : 0.6 * s->bitrate + 0.4 * sample;
        }
        s->window_start = now;
        s->window_bytes = 0;
    }
}

static PyObject *LC_account(LayerCore *s, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "account(nbytes, now)");
        return NULL;
    }
    long long nbytes = PyLong_AsLongLong(args[0]);
    if (nbytes == -1 && PyErr_Occurred())
        return NULL;
    double now = PyFloat_AsDouble(args[1]);
    if (now == -1.0 && PyErr_Occurred())
        return NULL;
    /* a packet's bytes; far below where the sums could overflow in any layer's lifetime */
    if (nbytes < 0 || nbytes > 0xFFFF) {
        PyErr_SetString(PyExc_ValueError, "nbytes is a packet's size, 0..65535");
        return NULL;
    }
    bs_layer_account((PyObject *)s, nbytes, now);
    Py_RETURN_NONE;
}

static PyObject *LC_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    return type->tp_alloc(type, 0); /* zeroed; the Python subclass's __init__ takes the arguments */
}

/* (a PacketRing refers to nothing, so `ring` cannot be part of a cycle: no traverse needed) */
static void LC_dealloc(LayerCore *s) {
    Py_CLEAR(s->ring);
    Py_TYPE(s)->tp_free((PyObject *)s);
}

#define MEMBER(name, type, field) {name, type, offsetof(LayerCore, field), 0, NULL}
static PyMemberDef LC_members[] = {
    MEMBER("packets", T_LONGLONG, packets),
    MEMBER("bytes", T_LONGLONG, bytes),
    MEMBER("_window_bytes", T_LONGLONG, window_bytes),
    MEMBER("last_packet_at", T_DOUBLE, last_packet_at),
    MEMBER("_window_start", T_DOUBLE, window_start),
    MEMBER("bitrate", T_DOUBLE, bitrate),
    MEMBER("ring", T_OBJECT, ring),
    {NULL},
};

static PyMethodDef LC_methods[] = {
    {"account", (PyCFunction)(void (*)(void))LC_account, METH_FASTCALL,
     "account(nbytes, now): one media packet of nbytes at now, as Layer.account"},
    {NULL},
};

static PyTypeObject LayerCoreType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "sfu._native.LayerCore",
    .tp_basicsize = sizeof(LayerCore),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "Layer's rate accounting in C",
    .tp_new = LC_new,
    .tp_dealloc = (destructor)LC_dealloc,
    .tp_members = LC_members,
    .tp_methods = LC_methods,
};

int bs_register_layer(PyObject *m) {
    if (PyType_Ready(&LayerCoreType) < 0)
        return -1;
    Py_INCREF(&LayerCoreType);
    if (PyModule_AddObject(m, "LayerCore", (PyObject *)&LayerCoreType) < 0) {
        Py_DECREF(&LayerCoreType);
        return -1;
    }
    return 0;
}
