/* TransportArrivals: the arrival time of each transport-wide sequence number a publisher sends, the
 * twin of sfu/transport_arrivals.py (same ring, same rules, same results: the unit tests and the fuzz
 * harness compare them). IngressCore's fast path calls bs_arrivals_add on every packet it takes;
 * Python reads what to report with `take` every feedback interval and builds the feedback there.
 *
 * Bounded by construction: RING slots; a jump of more than MAX_GAP is a restart; a number below the
 * first unreported one is counted as late and dropped. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <math.h>
#include <stdint.h>

#include "forward.h"

#define RING 8192 /* as sfu/transport_arrivals.py */
#define MAX_GAP 1000
#define MAX_PER_FEEDBACK 400

typedef struct {
    PyObject_HEAD
    long long base, high, late;
    long long seqs[RING];
    long long times[RING];
} ArrivalsObject;

static PyTypeObject ArrivalsType;

static void arrivals_reset(ArrivalsObject *a) {
    a->base = a->high = -1;
    a->late = 0;
    for (int i = 0; i < RING; i++) {
        a->seqs[i] = -1;
        a->times[i] = 0;
    }
}

static void arrivals_add(ArrivalsObject *a, uint16_t seq, double arrival) {
    long long unwrapped;
    if (a->high < 0) {
        unwrapped = a->base = seq;
    } else {
        unwrapped = a->high + (long long)(((long long)seq - a->high + 0x8000) & 0xFFFF) - 0x8000;
        if (unwrapped - a->high > MAX_GAP)
            a->base = unwrapped;
    }
    if (unwrapped < a->base) {
        a->late++;
        return;
    }
    if (unwrapped > a->high) {
        a->high = unwrapped;
        if (unwrapped - a->base >= RING)
            a->base = unwrapped - RING + 1;
    }
    int slot = (int)(unwrapped & (RING - 1));
    a->seqs[slot] = unwrapped;
    a->times[slot] = (long long)floor(arrival * 1e6 + 0.5); /* the nearest µs, as the twin */
}

int bs_is_arrivals(PyObject *o) { return PyObject_TypeCheck(o, &ArrivalsType); }

int bs_arrivals_add(PyObject *o, uint16_t seq, double arrival) {
    if (!PyObject_TypeCheck(o, &ArrivalsType) || !(arrival > -1e9 && arrival < 1e9))
        return -1;
    arrivals_add((ArrivalsObject *)o, seq, arrival);
    return 0;
}

static PyObject *Arrivals_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    ArrivalsObject *a = (ArrivalsObject *)type->tp_alloc(type, 0);
    if (a != NULL)
        arrivals_reset(a);
    return (PyObject *)a;
}

static PyObject *Arrivals_add(ArrivalsObject *a, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "add(seq, arrival)");
        return NULL;
    }
    long seq = PyLong_AsLong(args[0]);
    if (seq == -1 && PyErr_Occurred())
        return NULL;
    double arrival = PyFloat_AsDouble(args[1]);
    if (arrival == -1.0 && PyErr_Occurred())
        return NULL;
    if (seq < 0 || seq > 0xFFFF || !(arrival > -1e9 && arrival < 1e9)) {
        PyErr_SetString(PyExc_ValueError, "add(seq, arrival): seq is 16 bits, arrival within +-1e9 s");
        return NULL;
    }
    arrivals_add(a, (uint16_t)seq, arrival);
    Py_RETURN_NONE;
}

static PyObject *Arrivals_take(ArrivalsObject *a, PyObject *const *args, Py_ssize_t nargs) {
    long limit = MAX_PER_FEEDBACK;
    if (nargs > 1) {
        PyErr_SetString(PyExc_TypeError, "take(limit=400)");
        return NULL;
    }
    if (nargs == 1) {
        limit = PyLong_AsLong(args[0]);
        if (limit == -1 && PyErr_Occurred())
            return NULL;
    }
    if (a->base < 0 || a->high < a->base || limit < 1)
        Py_RETURN_NONE;
    long long end = a->high + 1;
    if (a->base + limit < end)
        end = a->base + limit;
    PyObject *out = PyList_New((Py_ssize_t)(end - a->base));
    if (out == NULL)
        return NULL;
    for (long long n = a->base; n < end; n++) {
        int slot = (int)(n & (RING - 1));
        PyObject *v = a->seqs[slot] == n ? PyLong_FromLongLong(a->times[slot]) : Py_NewRef(Py_None);
        if (v == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        PyList_SET_ITEM(out, (Py_ssize_t)(n - a->base), v);
    }
    long long first = a->base;
    a->base = end;
    return Py_BuildValue("(LN)", first, out);
}

static PyMethodDef Arrivals_methods[] = {
    {"add", (PyCFunction)(void (*)(void))Arrivals_add, METH_FASTCALL, "add(seq, arrival): number seq arrived then"},
    {"take", (PyCFunction)(void (*)(void))Arrivals_take, METH_FASTCALL,
     "take(limit=400) -> (first, [arrival us or None]) or None: the next numbers not reported yet"},
    {NULL},
};

static PyMemberDef Arrivals_members[] = {
    {"base", T_LONGLONG, offsetof(ArrivalsObject, base), READONLY, "the first number not reported yet"},
    {"high", T_LONGLONG, offsetof(ArrivalsObject, high), READONLY, "the highest number arrived"},
    {"late", T_LONGLONG, offsetof(ArrivalsObject, late), READONLY, "arrivals below base, not reported"},
    {NULL},
};

static PyTypeObject ArrivalsType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "sfu._native.TransportArrivals",
    .tp_basicsize = sizeof(ArrivalsObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "the arrival of each transport-wide sequence number (twin of sfu.transport_arrivals)",
    .tp_new = Arrivals_new,
    .tp_methods = Arrivals_methods,
    .tp_members = Arrivals_members,
};

int bs_register_transport_arrivals(PyObject *m) {
    if (PyType_Ready(&ArrivalsType) < 0)
        return -1;
    Py_INCREF(&ArrivalsType);
    if (PyModule_AddObject(m, "TransportArrivals", (PyObject *)&ArrivalsType) < 0) {
        Py_DECREF(&ArrivalsType);
        return -1;
    }
    return 0;
}
