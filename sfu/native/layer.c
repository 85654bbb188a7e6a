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

#include <string.h>

#include "forward.h"

#define SPATIAL 8 /* VP9 spatial ids are 3 bits */

typedef struct {
    PyObject_HEAD
    long long packets, bytes, window_bytes;
    double last_packet_at, window_start, bitrate;
    long long window_spatial[SPATIAL]; /* this window's bytes by VP9 spatial id (all in 0 otherwise) */
    double spatial_bitrate[SPATIAL];
    PyObject *ring; /* Layer.ring: its PacketRing (read by the fan-out without an attribute lookup) */
} LayerCore;

static PyTypeObject LayerCoreType;

int bs_is_layer(PyObject *o) { return PyObject_TypeCheck(o, &LayerCoreType); }

PyObject *bs_layer_ring(PyObject *o) { return ((LayerCore *)o)->ring; }

static double smoothed(double rate, long long window_bytes, double span) {
    double sample = (double)(window_bytes * 8) / span;
    /* a keyframe doubles a one-second window, which must not read as the rate */
    return rate == 0.0 ? sample : 0.6 * rate + 0.4 * sample;
}

void bs_layer_account(PyObject *o, long long nbytes, double now, int sid) {
    LayerCore *s = (LayerCore *)o;
    s->packets += 1;
    s->bytes += nbytes;
    s->last_packet_at = now;
    s->window_bytes += nbytes;
    s->window_spatial[sid & (SPATIAL - 1)] += nbytes;
    if (now - s->window_start >= 1.0) {
        if (s->window_start != 0.0) { /* Python: `if self._window_start:` (NaN is true there too) */
            double span = now - s->window_start;
            s->bitrate = smoothed(s->bitrate, s->window_bytes, span);
            for (int i = 0; i < SPATIAL; i++)
                if (s->window_spatial[i] || s->spatial_bitrate[i] != 0.0)
                    s->spatial_bitrate[i] = smoothed(s->spatial_bitrate[i], s->window_spatial[i], span);
        }
        s->window_start = now;
        s->window_bytes = 0;
        memset(s->window_spatial, 0, sizeof(s->window_spatial));
    }
}

static PyObject *LC_account(LayerCore *s, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2 && nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "account(nbytes, now, sid=0)");
        return NULL;
    }
    long sid = 0;
    if (nargs == 3) {
        sid = PyLong_AsLong(args[2]);
        if (sid == -1 && PyErr_Occurred())
            return NULL;
        if (sid < 0 || sid >= SPATIAL) {
            PyErr_SetString(PyExc_ValueError, "sid is a VP9 spatial id, 0..7");
            return NULL;
        }
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
    bs_layer_account((PyObject *)s, nbytes, now, (int)sid);
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

static PyObject *LC_spatial_bitrates(LayerCore *s, void *closure) {
    PyObject *t = PyTuple_New(SPATIAL);
    if (t == NULL)
        return NULL;
    for (int i = 0; i < SPATIAL; i++) {
        PyObject *f = PyFloat_FromDouble(s->spatial_bitrate[i]);
        if (f == NULL) {
            Py_DECREF(t);
            return NULL;
        }
        PyTuple_SET_ITEM(t, i, f);
    }
    return t;
}

static PyGetSetDef LC_getset[] = {
    {"spatial_bitrates", (getter)LC_spatial_bitrates, NULL, "bits/s by VP9 spatial id, as Layer.spatial_bitrates",
     NULL},
    {NULL},
};

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
     "account(nbytes, now, sid=0): one media packet of nbytes at now (of VP9 spatial layer sid), as Layer.account"},
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
    .tp_getset = LC_getset,
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
