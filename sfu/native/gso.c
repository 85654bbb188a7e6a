/* UDP generic segmentation offload (GSO, Linux UDP_SEGMENT) for Egress: which queued datagrams can
 * leave as one send.
 *
 * A flush sends what one received batch queued for one subscriber: often several packets of one
 * video frame, all to the same address and, but for the last, of the same length (a packetizer
 * splits a frame evenly). With UDP_SEGMENT the kernel takes such a run as one buffer and cuts it
 * into datagrams of `gso_size` bytes (the last may be shorter), so the IP path and the device are
 * walked once per run rather than once per datagram: on loopback here 2-3x less CPU per datagram
 * for runs of 4-6. The receiver sees ordinary datagrams.
 *
 * The rule is `bs_gso_runs`; its pure-Python twin is `sfu/gso.py` (`runs`), and the same unit tests
 * and the fuzz harness run both. The switch is process-wide (setting `udp_gso`); an Egress whose
 * kernel or device refuses a segmented send (EIO, EINVAL, ENOPROTOOPT, EOPNOTSUPP) stops asking and
 * sends what is left one datagram per entry, so a refusal loses nothing.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "forward.h"

static int gso_enabled = 1;
static unsigned long long gso_refusals, gso_sends, gso_datagrams;

int bs_gso_enabled(void) { return gso_enabled; }

void bs_gso_refused(void) { gso_refusals++; }

void bs_gso_sent(int datagrams) {
    gso_sends++;
    gso_datagrams += (unsigned long long)datagrams;
}

int bs_gso_runs(const size_t *lens, int n, int *runs) {
    int k = 0, i = 0;
    while (i < n) {
        size_t size = lens[i], total = lens[i];
        int j = i + 1;
        while (j < n && j - i < BS_GSO_MAX_SEGMENTS && lens[j] == size && total + lens[j] <= BS_GSO_MAX_BYTES)
            total += lens[j++];
        /* a shorter datagram may end the run (the kernel's last segment) */
        if (j < n && j - i < BS_GSO_MAX_SEGMENTS && lens[j] < size && total + lens[j] <= BS_GSO_MAX_BYTES)
            j++;
        runs[k++] = j - i;
        i = j;
    }
    return k;
}

static PyObject *gso_runs(PyObject *self, PyObject *arg) {
    PyObject *seq = PySequence_Fast(arg, "gso_runs: a sequence of datagram lengths");
    if (!seq)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    size_t *lens = PyMem_Malloc(sizeof(size_t) * (size_t)(n ? n : 1));
    int *runs = PyMem_Malloc(sizeof(int) * (size_t)(n ? n : 1));
    PyObject *out = NULL;
    if (!lens || !runs) {
        PyErr_NoMemory();
        goto done;
    }
    if (n > INT_MAX) {
        PyErr_SetString(PyExc_ValueError, "gso_runs: too many lengths");
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_ssize_t v = PyNumber_AsSsize_t(PySequence_Fast_GET_ITEM(seq, i), PyExc_OverflowError);
        if (v == -1 && PyErr_Occurred())
            goto done;
        if (v < 0) {
            PyErr_SetString(PyExc_ValueError, "gso_runs: a length is negative");
            goto done;
        }
        lens[i] = (size_t)v;
    }
    int k = bs_gso_runs(lens, (int)n, runs);
    out = PyList_New(k);
    for (int i = 0; out && i < k; i++) {
        PyObject *v = PyLong_FromLong(runs[i]);
        if (!v) {
            Py_CLEAR(out);
            break;
        }
        PyList_SET_ITEM(out, i, v);
    }
done:
    PyMem_Free(lens);
    PyMem_Free(runs);
    Py_DECREF(seq);
    return out;
}

static PyObject *set_gso(PyObject *self, PyObject *arg) {
    int on = PyObject_IsTrue(arg);
    if (on < 0)
        return NULL;
    gso_enabled = on;
    Py_RETURN_NONE;
}

static PyObject *gso_state(PyObject *self, PyObject *unused) {
    return Py_BuildValue("(OKKK)", gso_enabled ? Py_True : Py_False, gso_refusals, gso_sends, gso_datagrams);
}

static PyMethodDef gso_functions[] = {
    {"gso_runs", (PyCFunction)gso_runs, METH_O,
     "gso_runs(lengths) -> run lengths: how a flush groups queued datagrams into UDP_SEGMENT sends"},
    {"set_gso", (PyCFunction)set_gso, METH_O, "set_gso(on): Egresses made from now on segment runs (UDP_SEGMENT)"},
    {"gso_state", (PyCFunction)gso_state, METH_NOARGS,
     "gso_state() -> (enabled, refusals, sends, datagrams): the switch, how many Egresses the kernel refused "
     "GSO, and the segmented sends of two or more datagrams made (process-wide totals)"},
    {NULL},
};

int bs_register_gso(PyObject *m) { return PyModule_AddFunctions(m, gso_functions); }
