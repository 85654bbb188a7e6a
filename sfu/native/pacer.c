/* The pacer's rule in C (twin of sfu/pacer.py; the rule and why are in its docstring): the Egress
 * (forward.c) keeps one bs_pacer and, in the same slots, the packets waiting. `Pacer` exposes one to
 * Python for the parity tests and the fuzz harness only.
 *
 * Every double is computed as the Python twin computes it, in the same order (setup.py builds with
 * -ffp-contract=off), so both take the same decisions at the same times.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include "forward.h"

#define BURST_S 0.02   /* as sfu/pacer.py */
#define MAX_HOLD_S 0.5 /* as sfu/pacer.py */

static void pacer_fill(bs_pacer *p, double now) {
    if (now > p->last) {
        double t = p->tokens + (now - p->last) * p->rate, cap = p->rate * BURST_S;
        p->tokens = t < cap ? t : cap;
        p->last = now;
    }
}

void bs_pacer_set_rate(bs_pacer *p, double bps, double now) {
    pacer_fill(p, now);
    int off = p->rate <= 0;
    p->rate = bps > 0 ? bps / 8 : 0.0;
    if (off) {
        p->tokens = p->rate * BURST_S;
        p->last = now;
    } else if (p->tokens > p->rate * BURST_S) {
        p->tokens = p->rate * BURST_S;
    }
}

int bs_pacer_push(bs_pacer *p, double now, uint32_t size) {
    if (p->count >= BS_PACER_MAX_HELD)
        return -1;
    unsigned slot = (p->head + p->count) % BS_PACER_MAX_HELD;
    p->at[slot] = now;
    p->size[slot] = size;
    p->count++;
    return (int)slot;
}

uint32_t bs_pacer_pop(bs_pacer *p, double now) {
    if (!p->count)
        return 0;
    double at = p->at[p->head];
    uint32_t size = p->size[p->head];
    if (p->rate > 0) {
        pacer_fill(p, now);
        if (p->tokens > 0)
            p->tokens -= size;
        else if (now - at >= MAX_HOLD_S || p->count >= BS_PACER_MAX_HELD)
            p->forced++;
        else
            return 0;
    }
    p->head = (p->head + 1) % BS_PACER_MAX_HELD;
    p->count--;
    if (now > at)
        p->held++;
    return size;
}

int bs_pacer_pass(bs_pacer *p, double now, uint32_t size) {
    if (p->rate <= 0)
        return 1;
    pacer_fill(p, now);
    if (p->tokens > 0) {
        p->tokens -= size;
        return 1;
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------------
 * Pacer: one bs_pacer as a Python object (tests and fuzzing; the Egress embeds its own)
 * ---------------------------------------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    bs_pacer p;
} PacerObject;

static PyObject *Pacer_set_rate(PacerObject *self, PyObject *args) {
    double bps, now;
    if (!PyArg_ParseTuple(args, "dd", &bps, &now))
        return NULL;
    bs_pacer_set_rate(&self->p, bps, now);
    Py_RETURN_NONE;
}

static PyObject *Pacer_push(PacerObject *self, PyObject *args) {
    double now;
    unsigned long size;
    if (!PyArg_ParseTuple(args, "dk", &now, &size))
        return NULL;
    if (size == 0 || size > 0xFFFFFFFFul) {
        PyErr_SetString(PyExc_ValueError, "a packet's size is 1 to 2**32 - 1 bytes");
        return NULL;
    }
    return PyBool_FromLong(bs_pacer_push(&self->p, now, (uint32_t)size) >= 0);
}

static PyObject *Pacer_pop(PacerObject *self, PyObject *arg) {
    double now = PyFloat_AsDouble(arg);
    if (now == -1.0 && PyErr_Occurred())
        return NULL;
    return PyLong_FromUnsignedLong(bs_pacer_pop(&self->p, now));
}

static PyObject *Pacer_get_waiting(PacerObject *self, void *c) { return PyLong_FromUnsignedLong(self->p.count); }

static PyMethodDef Pacer_methods[] = {
    {"set_rate", (PyCFunction)Pacer_set_rate, METH_VARARGS, "set_rate(bps, now): pace at bps from now (0: off)."},
    {"push", (PyCFunction)Pacer_push, METH_VARARGS, "push(now, size): a packet waits; False when the most wait."},
    {"pop", (PyCFunction)Pacer_pop, METH_O, "pop(now): the size of the oldest waiting packet if it may go, else 0."},
    {NULL},
};

static PyMemberDef Pacer_members[] = {
    {"rate", T_DOUBLE, offsetof(PacerObject, p.rate), READONLY, "bytes per second (0: off)"},
    {"tokens", T_DOUBLE, offsetof(PacerObject, p.tokens), READONLY, "bytes that may go now"},
    {"last", T_DOUBLE, offsetof(PacerObject, p.last), READONLY, "when the bucket was last filled"},
    {"held", T_ULONGLONG, offsetof(PacerObject, p.held), READONLY, "packets that waited before they went"},
    {"forced", T_ULONGLONG, offsetof(PacerObject, p.forced), READONLY, "of those, the ones a bound let go"},
    {NULL},
};

static PyGetSetDef Pacer_getset[] = {
    {"waiting", (getter)Pacer_get_waiting, NULL, "packets waiting", NULL},
    {NULL},
};

static PyTypeObject PacerType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "sfu._native.Pacer",
    .tp_basicsize = sizeof(PacerObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Pacer(): the pacer's rule (sfu/pacer.py's twin), for tests",
    .tp_new = PyType_GenericNew,
    .tp_methods = Pacer_methods,
    .tp_members = Pacer_members,
    .tp_getset = Pacer_getset,
};

int bs_register_pacer(PyObject *m) {
    if (PyType_Ready(&PacerType) < 0)
        return -1;
    Py_INCREF(&PacerType);
    if (PyModule_AddObject(m, "Pacer", (PyObject *)&PacerType) < 0) {
        Py_DECREF(&PacerType);
        return -1;
    }
    return 0;
}
