/* Traffic: the media plane's packet and byte counters (sfu.metrics.STATS.traffic).
 *
 * C members, so the native path (IngressCore, fanout) counts without a Python call; the Python code
 * reads and adds to the same fields, and MediaStats exposes them under their old names. The latency
 * sampling counter lives here too, so both paths sample one packet in `latency_every`.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include "forward.h"

static PyTypeObject TrafficType;

int bs_is_traffic(PyObject *o) { return PyObject_TypeCheck(o, &TrafficType); }

static PyObject *TR_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    if (PyTuple_GET_SIZE(args) || (kwds && PyDict_GET_SIZE(kwds))) {
        PyErr_SetString(PyExc_TypeError, "Traffic() takes no arguments");
        return NULL;
    }
    bs_traffic *t = (bs_traffic *)type->tp_alloc(type, 0);
    if (t != NULL)
        t->latency_every = 1;
    return (PyObject *)t;
}

#define TMEMBER(name, type, field, doc) {name, type, offsetof(bs_traffic, field), 0, doc}
static PyMemberDef TR_members[] = {
    TMEMBER("packets_in", T_ULONGLONG, packets_in, "RTP packets received from publishers"),
    TMEMBER("bytes_in", T_ULONGLONG, bytes_in, "their bytes"),
    TMEMBER("packets_out", T_ULONGLONG, packets_out, "RTP packets forwarded to subscribers"),
    TMEMBER("bytes_out", T_ULONGLONG, bytes_out, "their bytes"),
    TMEMBER("latency_sample", T_LONGLONG, latency_sample, "forwarded packets since the last latency sample"),
    TMEMBER("latency_every", T_LONGLONG, latency_every, "one latency sample per this many forwarded packets"),
    {NULL},
};

static PyTypeObject TrafficType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "sfu._native.Traffic",
    .tp_basicsize = sizeof(bs_traffic),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Traffic(): the media plane's packet and byte counters",
    .tp_new = TR_new,
    .tp_members = TR_members,
};

int bs_register_traffic(PyObject *m) {
    if (PyType_Ready(&TrafficType) < 0)
        return -1;
    Py_INCREF(&TrafficType);
    if (PyModule_AddObject(m, "Traffic", (PyObject *)&TrafficType) < 0) {
        Py_DECREF(&TrafficType);
        return -1;
    }
    return 0;
}
