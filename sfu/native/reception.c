/* ReceptionCore: the per-packet part of sfu/reception.py `Reception` in C (native data path).
 *
 * Every received media packet updates its layer's Reception: RFC 3550 A.1 sequence validation,
 * the NACK window (a 256-number bitmap behind the newest), and A.8 jitter. The Python class does it
 * with a 257-bit Python integer; here the window is five 64-bit words and every field a C integer.
 * The attributes keep the Python names, so the report code (`ReceptionReports` in reception.py,
 * shared by both classes) reads the same fields; `missing_bits` converts to and from a Python int.
 * tests/unit/sfu/native/test_reception_parity.py runs both in lockstep over seeded sequences with
 * loss, reordering, duplicates, RTX repairs, wraps, jumps and restarts, comparing after every packet.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "forward.h"

/* as sfu/reception.py */
#define MAX_DROPOUT 3000
#define MAX_MISORDER 1500
#define NACK_WINDOW 256
#define WORDS 5 /* bits 0..319; the window is bits 1..NACK_WINDOW */

enum { IN_ORDER = 0, GAP = 1, LATE = 2, JUMP = 3, RESTART = 4 };

typedef struct {
    PyObject_HEAD
    long long clock_rate, base_seq, max_seq, cycles, received, restarts;
    long long bad_seq, expected_prior, received_prior, jitter_q4, transit, last_ts;
    uint64_t bits[WORDS];
} ReceptionCore;

static void window_mask(uint64_t *w) {
    w[0] &= ~(uint64_t)1; /* bit 0 is the newest itself */
    w[4] &= 1;            /* bit 256 is the last one kept */
}

static void window_shift(uint64_t *w, unsigned k) { /* w <<= k, 0 < k <= NACK_WINDOW */
    unsigned words = k / 64, r = k % 64;
    for (int i = WORDS - 1; i >= 0; i--) {
        uint64_t v = 0;
        int src = i - (int)words;
        if (src >= 0) {
            v = w[src] << r;
            if (r && src > 0)
                v |= w[src - 1] >> (64 - r);
        }
        w[i] = v;
    }
}

static void window_set_range(uint64_t *w, unsigned lo, unsigned hi) { /* bits lo..hi-1 */
    for (unsigned b = lo; b < hi; b++)
        w[b / 64] |= (uint64_t)1 << (b % 64);
}

static void rx_start(ReceptionCore *s, long long seq) {
    s->base_seq = s->max_seq = seq;
    s->cycles = 0;
    s->received = 1;
    memset(s->bits, 0, sizeof s->bits);
    s->bad_seq = -1;
    s->expected_prior = s->received_prior = 0;
    s->transit = -1;
}

static void rx_jitter(ReceptionCore *s, long long ts, double arrival) {
    uint32_t transit = (uint32_t)((long long)(arrival * (double)s->clock_rate) - ts);
    if (s->transit >= 0) {
        uint32_t d = transit - (uint32_t)s->transit;
        long long dd = d & 0x80000000u ? 0x100000000LL - d : d;
        s->jitter_q4 += dd - ((s->jitter_q4 + 8) >> 4);
    }
    s->transit = transit;
    s->last_ts = ts;
}

static int rx_update(ReceptionCore *s, long long seq, long long ts, double arrival) {
    long long delta = (seq - s->max_seq) & 0xFFFF;
    if (0 < delta && delta < MAX_DROPOUT && s->max_seq >= 0) {
        if (seq < s->max_seq)
            s->cycles += 0x10000;
        s->max_seq = seq;
        s->received += 1;
        int result;
        if (delta == 1) {
            window_shift(s->bits, 1);
            result = IN_ORDER;
        } else {
            if (delta <= NACK_WINDOW) {
                window_shift(s->bits, (unsigned)delta);
                window_set_range(s->bits, 1, (unsigned)delta);
            } else {
                memset(s->bits, 0, sizeof s->bits);
                window_set_range(s->bits, 1, NACK_WINDOW + 1);
            }
            result = GAP;
        }
        window_mask(s->bits);
        if (ts != s->last_ts)
            rx_jitter(s, ts, arrival);
        return result;
    }
    if (s->max_seq < 0) {
        rx_start(s, seq);
        rx_jitter(s, ts, arrival);
        return IN_ORDER;
    }
    if (delta == 0 || delta > 0x10000 - MAX_MISORDER) {
        long long behind = delta ? 0x10000 - delta : 0;
        if (0 < behind && behind <= NACK_WINDOW)
            s->bits[behind / 64] &= ~((uint64_t)1 << (behind % 64));
        s->received += 1;
        return LATE;
    }
    if (seq != s->bad_seq) {
        s->bad_seq = (seq + 1) & 0xFFFF;
        return JUMP;
    }
    rx_start(s, seq);
    s->restarts += 1;
    rx_jitter(s, ts, arrival);
    return RESTART;
}

static PyTypeObject ReceptionCoreType;

/* For ingress.c: whether `o` is a ReceptionCore; whether `seq` is the next number of its started
 * stream (update would say IN_ORDER; the common case); and update itself, for arguments in update's
 * ranges (seq 16 bits, ts 32 bits, arrival within +-1e9 s). */
int bs_is_reception(PyObject *o) { return PyObject_TypeCheck(o, &ReceptionCoreType); }

int bs_reception_next(PyObject *o, uint16_t seq) {
    const ReceptionCore *s = (const ReceptionCore *)o;
    return s->max_seq >= 0 && ((seq - s->max_seq) & 0xFFFF) == 1;
}

int bs_reception_update(PyObject *o, uint16_t seq, uint32_t ts, double arrival) {
    return rx_update((ReceptionCore *)o, seq, ts, arrival);
}

static PyObject *RC_update(ReceptionCore *s, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "update(seq, ts, arrival)");
        return NULL;
    }
    long long seq = PyLong_AsLongLong(args[0]);
    long long ts = PyLong_AsLongLong(args[1]);
    double arrival = PyFloat_AsDouble(args[2]);
    if (PyErr_Occurred())
        return NULL;
    /* arrival is loop time; within +-1e9 s (31 years) arrival * clock_rate (<= 1e7) stays well inside
     * int64, as the jitter computation needs */
    if (seq < 0 || seq > 0xFFFF || ts < 0 || ts > 0xFFFFFFFFLL || !(arrival > -1e9 && arrival < 1e9)) {
        PyErr_SetString(PyExc_ValueError, "seq is 16 bits, ts 32 bits, arrival within +-1e9 s");
        return NULL;
    }
    return PyLong_FromLong(rx_update(s, seq, ts, arrival));
}

static PyObject *RC_repair(ReceptionCore *s, PyObject *arg) {
    /* any int, as in Python: only its low 16 bits matter to (max_seq - seq) & 0xFFFF */
    unsigned long long wide = PyLong_AsUnsignedLongLongMask(arg);
    if (wide == (unsigned long long)-1 && PyErr_Occurred())
        return NULL;
    long long seq = (long long)(wide & 0xFFFF);
    long long behind = (s->max_seq - seq) & 0xFFFF;
    if (0 < behind && behind <= NACK_WINDOW && s->max_seq >= 0 && (s->bits[behind / 64] >> (behind % 64)) & 1) {
        s->bits[behind / 64] ^= (uint64_t)1 << (behind % 64);
        s->received += 1;
        Py_RETURN_TRUE;
    }
    Py_RETURN_FALSE;
}

static int cmp_long(const void *a, const void *b) {
    long x = *(const long *)a, y = *(const long *)b;
    return (x > y) - (x < y);
}

static PyObject *RC_missing(ReceptionCore *s, PyObject *unused) {
    long out[NACK_WINDOW];
    int n = 0;
    for (unsigned b = 1; b <= NACK_WINDOW; b++)
        if ((s->bits[b / 64] >> (b % 64)) & 1)
            out[n++] = (long)((s->max_seq - b) & 0xFFFF);
    qsort(out, (size_t)n, sizeof out[0], cmp_long);
    PyObject *list = PyList_New(n);
    if (list == NULL)
        return NULL;
    for (int i = 0; i < n; i++) {
        PyObject *v = PyLong_FromLong(out[i]);
        if (v == NULL) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, i, v);
    }
    return list;
}

static PyObject *RC_get_missing_bits(ReceptionCore *s, void *closure) {
    PyObject *out = PyLong_FromUnsignedLongLong(s->bits[WORDS - 1]);
    for (int i = WORDS - 2; i >= 0 && out != NULL; i--) {
        PyObject *shift = PyLong_FromLong(64), *word = PyLong_FromUnsignedLongLong(s->bits[i]), *moved = NULL;
        if (shift != NULL && word != NULL)
            moved = PyNumber_Lshift(out, shift);
        Py_DECREF(out);
        out = moved != NULL ? PyNumber_Or(moved, word) : NULL;
        Py_XDECREF(moved);
        Py_XDECREF(shift);
        Py_XDECREF(word);
    }
    return out;
}

static int RC_set_missing_bits(ReceptionCore *s, PyObject *v, void *closure) {
    if (v == NULL || !PyLong_Check(v)) {
        PyErr_SetString(PyExc_TypeError, "missing_bits is a non-negative int");
        return -1;
    }
    PyObject *zero = PyLong_FromLong(0);
    int negative = zero != NULL ? PyObject_RichCompareBool(v, zero, Py_LT) : -1;
    Py_XDECREF(zero);
    if (negative != 0) {
        if (negative > 0)
            PyErr_SetString(PyExc_ValueError, "missing_bits is a non-negative int");
        return -1;
    }
    uint64_t words[WORDS];
    PyObject *rest = Py_NewRef(v);
    for (int i = 0; i < WORDS; i++) {
        words[i] = PyLong_AsUnsignedLongLongMask(rest); /* the low 64 bits */
        PyObject *shift = PyLong_FromLong(64);
        PyObject *next = shift != NULL ? PyNumber_Rshift(rest, shift) : NULL;
        Py_XDECREF(shift);
        Py_DECREF(rest);
        if (next == NULL)
            return -1;
        rest = next;
    }
    Py_DECREF(rest);
    if (PyErr_Occurred())
        return -1;
    memcpy(s->bits, words, sizeof words);
    window_mask(s->bits); /* only bits 1..NACK_WINDOW exist */
    return 0;
}

static void rc_defaults(ReceptionCore *s) {
    memset((char *)s + sizeof(PyObject), 0, sizeof(ReceptionCore) - sizeof(PyObject));
    s->clock_rate = 90000;
    s->max_seq = -1;
    s->bad_seq = -1;
    s->transit = -1;
    s->last_ts = -1;
}

static PyObject *RC_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    ReceptionCore *s = (ReceptionCore *)type->tp_alloc(type, 0);
    if (s != NULL)
        rc_defaults(s); /* not started, even if __init__ never runs */
    return (PyObject *)s;
}

static int RC_init(ReceptionCore *s, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"clock_rate", NULL};
    long long clock_rate;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "L", kwlist, &clock_rate))
        return -1;
    if (clock_rate <= 0 || clock_rate > 10000000) {
        PyErr_SetString(PyExc_ValueError, "clock_rate out of range");
        return -1;
    }
    rc_defaults(s);
    s->clock_rate = clock_rate;
    return 0;
}

/* Read-only but for the two the report code (ReceptionReports.interval_loss) writes */
#define FIELD(name, member) {name, T_LONGLONG, offsetof(ReceptionCore, member), READONLY, NULL}
#define WRITABLE(name, member) {name, T_LONGLONG, offsetof(ReceptionCore, member), 0, NULL}
static PyMemberDef RC_members[] = {
    FIELD("clock_rate", clock_rate),
    FIELD("base_seq", base_seq),
    FIELD("max_seq", max_seq),
    FIELD("cycles", cycles),
    FIELD("received", received),
    FIELD("restarts", restarts),
    FIELD("_bad_seq", bad_seq),
    WRITABLE("_expected_prior", expected_prior),
    WRITABLE("_received_prior", received_prior),
    FIELD("_jitter_q4", jitter_q4),
    FIELD("_transit", transit),
    FIELD("_last_ts", last_ts),
    {NULL},
};

static PyGetSetDef RC_getset[] = {
    {"missing_bits", (getter)RC_get_missing_bits, (setter)RC_set_missing_bits,
     "bit i set: newest - i is missing (i in 1..256)", NULL},
    {NULL},
};

static PyMethodDef RC_methods[] = {
    {"update", (PyCFunction)(void (*)(void))RC_update, METH_FASTCALL,
     "update(seq, ts, arrival) -> IN_ORDER | GAP | LATE | JUMP | RESTART, as Reception.update"},
    {"repair", (PyCFunction)RC_repair, METH_O, "repair(seq) -> bool, as Reception.repair"},
    {"missing", (PyCFunction)RC_missing, METH_NOARGS, "missing sequence numbers, ascending"},
    {NULL},
};

static PyTypeObject ReceptionCoreType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "sfu._native.ReceptionCore",
    .tp_basicsize = sizeof(ReceptionCore),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "Reception's per-packet state and update in C",
    .tp_new = RC_new,
    .tp_init = (initproc)RC_init,
    .tp_members = RC_members,
    .tp_getset = RC_getset,
    .tp_methods = RC_methods,
};

int bs_register_reception(PyObject *m) {
    if (PyType_Ready(&ReceptionCoreType) < 0)
        return -1;
    Py_INCREF(&ReceptionCoreType);
    if (PyModule_AddObject(m, "ReceptionCore", (PyObject *)&ReceptionCoreType) < 0) {
        Py_DECREF(&ReceptionCoreType);
        return -1;
    }
    return 0;
}
