/* sfu._native.SrtpSession: bs_srtp as a Python object with pylibsrtp.Session's methods.
 *
 *   SrtpSession(profile, key, inbound)   profile as libsrtp numbers it (1, 2, 7, 8); key = master key
 *                                        || master salt, as aiortc gives pylibsrtp.Policy(key=...)
 *   .protect / .unprotect / .protect_rtcp / .unprotect_rtcp (bytes-like) -> bytes
 *   SrtpSession.from_session_keys(profile, rtp_keys, rtcp_keys, inbound=False): no key derivation
 *                                        (test vectors that give session keys)
 *   sfu._native.SrtpError(ValueError)    every refused packet; sfu._native._srtp_kdf: RFC 3711 4.3;
 *   sfu._native.set_aes / aes            which AES the sessions made from now on use
 *
 * Like a libsrtp session made from an SSRC_ANY_* template, it keeps one bs_srtp_stream per SSRC
 * (RTP and RTCP of an SSRC share it), created by the first packet of that SSRC that goes through:
 * a received packet that fails authentication leaves no stream behind. At most MAX_SSRCS streams.
 * `inbound` is recorded (the attribute); as in libsrtp, both directions work on either kind.
 * Errors never change a stream's state. The GIL is held throughout (a packet is about a microsecond).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include "srtp.h"

#define MAX_SSRCS 256
#define SLOTS 512 /* open-addressing table over the entries, load <= 1/2 */

typedef struct {
    uint32_t ssrc;
    bs_srtp_stream st;
} ssrc_entry;

typedef struct {
    PyObject_HEAD
    bs_srtp *srtp;
    int inbound;
    int rtp_over, rtcp_over;
    uint32_t n, cap;      /* entries used / allocated */
    ssrc_entry *entries;  /* grows to MAX_SSRCS */
    uint16_t slots[SLOTS]; /* 0 empty, else entry index + 1 */
} SrtpSessionObject;

static PyTypeObject SrtpSessionType;
static PyObject *SrtpError;

static inline unsigned slot_of(uint32_t ssrc) { return (ssrc * 2654435761u) >> (32 - 9); }

static ssrc_entry *find_entry(SrtpSessionObject *self, uint32_t ssrc) {
    for (unsigned i = slot_of(ssrc);; i = (i + 1) & (SLOTS - 1)) {
        uint16_t e = self->slots[i];
        if (e == 0)
            return NULL;
        if (self->entries[e - 1].ssrc == ssrc)
            return &self->entries[e - 1];
    }
}

/* Room for one more entry (called before a packet of a new SSRC is processed, so that adding its
 * stream afterwards cannot fail). */
static int reserve_entry(SrtpSessionObject *self) {
    if (self->n >= MAX_SSRCS) {
        PyErr_Format(SrtpError, "too many SSRCs (at most %d per session)", MAX_SSRCS);
        return -1;
    }
    if (self->n < self->cap)
        return 0;
    uint32_t cap = self->cap ? self->cap * 2 : 4;
    if (cap > MAX_SSRCS)
        cap = MAX_SSRCS;
    ssrc_entry *e = PyMem_Realloc(self->entries, cap * sizeof(ssrc_entry));
    if (e == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    self->entries = e;
    self->cap = cap;
    return 0;
}

static void add_entry(SrtpSessionObject *self, uint32_t ssrc, const bs_srtp_stream *st) {
    uint32_t idx = self->n++;
    self->entries[idx].ssrc = ssrc;
    self->entries[idx].st = *st;
    unsigned i = slot_of(ssrc);
    while (self->slots[i] != 0)
        i = (i + 1) & (SLOTS - 1);
    self->slots[i] = (uint16_t)(idx + 1);
}

/* ---- construction ------------------------------------------------------------------------------ */

static PyObject *session_wrap(PyTypeObject *type, bs_srtp *srtp, int inbound) {
    SrtpSessionObject *self = (SrtpSessionObject *)type->tp_alloc(type, 0);
    if (self == NULL) {
        bs_srtp_free(srtp);
        return NULL;
    }
    self->srtp = srtp;
    self->inbound = inbound;
    self->rtp_over = bs_srtp_rtp_overhead(srtp);
    self->rtcp_over = bs_srtp_rtcp_overhead(srtp);
    return (PyObject *)self;
}

static PyObject *SrtpSession_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"profile", "key", "inbound", NULL};
    int profile, inbound;
    Py_buffer key;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "iy*p:SrtpSession", kwlist, &profile, &key, &inbound))
        return NULL;
    char err[256];
    bs_srtp *srtp = bs_srtp_new(profile, key.buf, (size_t)key.len, err, sizeof(err));
    PyBuffer_Release(&key);
    if (srtp == NULL) {
        PyErr_SetString(PyExc_ValueError, err);
        return NULL;
    }
    return session_wrap(type, srtp, inbound);
}

static PyObject *SrtpSession_from_session_keys(PyObject *cls, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"profile", "rtp_keys", "rtcp_keys", "inbound", NULL};
    int profile, inbound = 0;
    Py_buffer rtp, rtcp;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "iy*y*|p:from_session_keys", kwlist, &profile, &rtp, &rtcp,
                                     &inbound))
        return NULL;
    char err[256];
    bs_srtp *srtp = NULL;
    if (rtp.len != rtcp.len)
        snprintf(err, sizeof(err), "rtp_keys and rtcp_keys differ in length (%zd, %zd)", rtp.len, rtcp.len);
    else
        srtp = bs_srtp_new_session_keys(profile, rtp.buf, rtcp.buf, (size_t)rtp.len, err, sizeof(err));
    PyBuffer_Release(&rtp);
    PyBuffer_Release(&rtcp);
    if (srtp == NULL) {
        PyErr_SetString(PyExc_ValueError, err);
        return NULL;
    }
    return session_wrap((PyTypeObject *)cls, srtp, inbound);
}

static void SrtpSession_dealloc(SrtpSessionObject *self) {
    bs_srtp_free(self->srtp);
    PyMem_Free(self->entries);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

bs_srtp *bs_srtp_session_srtp(PyObject *o) {
    if (!PyObject_TypeCheck(o, &SrtpSessionType)) {
        PyErr_Format(PyExc_TypeError, "expected an SrtpSession, got %.100s", Py_TYPE(o)->tp_name);
        return NULL;
    }
    return ((SrtpSessionObject *)o)->srtp;
}

/* ---- packets ----------------------------------------------------------------------------------- */

typedef enum { RTP_PROTECT, RTP_UNPROTECT, RTCP_PROTECT, RTCP_UNPROTECT } op_kind;

static const char *const OP_NAMES[] = {"RTP", "SRTP", "RTCP", "SRTCP"};

/* The length checks every operation makes first: 0, or -1 with SrtpError set. */
static int check_length(SrtpSessionObject *self, Py_ssize_t len, op_kind op) {
    int rtcp = op == RTCP_PROTECT || op == RTCP_UNPROTECT;
    int protect = op == RTP_PROTECT || op == RTCP_PROTECT;
    int over = rtcp ? self->rtcp_over : self->rtp_over;
    /* shortest packet the operation takes: RTP header 12, RTCP header 8, plus the trailer to remove */
    Py_ssize_t min = (rtcp ? 8 : 12) + (protect ? 0 : over);
    if (len < min) {
        PyErr_Format(SrtpError, "packet too short: %zd bytes, an %s packet has at least %zd", len, OP_NAMES[op], min);
        return -1;
    }
    if (len > BS_SRTP_MAX_PACKET - (protect ? over : 0)) {
        PyErr_Format(SrtpError, "packet too long: %zd bytes (at most %zd)", len,
                     (Py_ssize_t)BS_SRTP_MAX_PACKET - (protect ? over : 0));
        return -1;
    }
    return 0;
}

/* The operation in place on buf (len bytes of packet, capacity cap, both already checked): the new
 * length, or -1 with SrtpError set. The stream of a new SSRC is kept only if the operation succeeded. */
static Py_ssize_t stream_op(SrtpSessionObject *self, uint8_t *buf, Py_ssize_t len, Py_ssize_t cap, op_kind op) {
    int rtcp = op == RTCP_PROTECT || op == RTCP_UNPROTECT;
    uint32_t ssrc = ((uint32_t)buf[rtcp ? 4 : 8] << 24) | ((uint32_t)buf[rtcp ? 5 : 9] << 16) |
                    ((uint32_t)buf[rtcp ? 6 : 10] << 8) | (uint32_t)buf[rtcp ? 7 : 11];
    ssrc_entry *entry = find_entry(self, ssrc);
    bs_srtp_stream fresh, *st;
    if (entry != NULL) {
        st = &entry->st;
    } else {
        if (reserve_entry(self) < 0)
            return -1;
        bs_srtp_stream_init(&fresh);
        st = &fresh;
    }
    int rc;
    switch (op) {
    case RTP_PROTECT:
        rc = bs_srtp_protect_rtp(self->srtp, st, buf, (size_t)len, (size_t)cap);
        break;
    case RTP_UNPROTECT:
        rc = bs_srtp_unprotect_rtp(self->srtp, st, buf, (size_t)len);
        break;
    case RTCP_PROTECT:
        rc = bs_srtp_protect_rtcp(self->srtp, st, buf, (size_t)len, (size_t)cap);
        break;
    default:
        rc = bs_srtp_unprotect_rtcp(self->srtp, st, buf, (size_t)len);
        break;
    }
    if (rc < 0) {
        PyErr_SetString(SrtpError, bs_srtp_strerror(rc));
        return -1;
    }
    if (entry == NULL)
        add_entry(self, ssrc, &fresh);
    return rc;
}

static PyObject *process(SrtpSessionObject *self, PyObject *arg, op_kind op) {
    Py_buffer view;
    const uint8_t *in;
    Py_ssize_t len;
    int have_view = 0;
    if (PyBytes_CheckExact(arg)) {
        in = (const uint8_t *)PyBytes_AS_STRING(arg);
        len = PyBytes_GET_SIZE(arg);
    } else {
        if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
            return NULL;
        have_view = 1;
        in = view.buf;
        len = view.len;
    }
    PyObject *out = NULL;
    int rtcp = op == RTCP_PROTECT || op == RTCP_UNPROTECT;
    int protect = op == RTP_PROTECT || op == RTCP_PROTECT;
    if (check_length(self, len, op) < 0)
        goto done;
    Py_ssize_t cap = protect ? len + (rtcp ? self->rtcp_over : self->rtp_over) : len;
    out = PyBytes_FromStringAndSize(NULL, cap);
    if (out == NULL)
        goto done;
    memcpy(PyBytes_AS_STRING(out), in, (size_t)len);
    Py_ssize_t rc = stream_op(self, (uint8_t *)PyBytes_AS_STRING(out), len, cap, op);
    if (rc < 0)
        Py_CLEAR(out);
    else if (rc != cap && _PyBytes_Resize(&out, rc) < 0)
        out = NULL;
done:
    if (have_view)
        PyBuffer_Release(&view);
    return out;
}

Py_ssize_t bs_srtp_session_unprotect_in_place(PyObject *o, uint8_t *buf, Py_ssize_t len, int rtcp) {
    SrtpSessionObject *self = (SrtpSessionObject *)o;
    op_kind op = rtcp ? RTCP_UNPROTECT : RTP_UNPROTECT;
    if (check_length(self, len, op) < 0)
        return -1;
    return stream_op(self, buf, len, len, op);
}

int bs_is_srtp_session(PyObject *o) { return PyObject_TypeCheck(o, &SrtpSessionType); }

static PyObject *SrtpSession_protect(SrtpSessionObject *self, PyObject *arg) { return process(self, arg, RTP_PROTECT); }
static PyObject *SrtpSession_unprotect(SrtpSessionObject *self, PyObject *arg) {
    return process(self, arg, RTP_UNPROTECT);
}
static PyObject *SrtpSession_protect_rtcp(SrtpSessionObject *self, PyObject *arg) {
    return process(self, arg, RTCP_PROTECT);
}
static PyObject *SrtpSession_unprotect_rtcp(SrtpSessionObject *self, PyObject *arg) {
    return process(self, arg, RTCP_UNPROTECT);
}

static PyObject *SrtpSession_get_profile(SrtpSessionObject *self, void *closure) {
    return PyLong_FromLong(bs_srtp_profile(self->srtp));
}
static PyObject *SrtpSession_get_inbound(SrtpSessionObject *self, void *closure) {
    return PyBool_FromLong(self->inbound);
}
static PyObject *SrtpSession_get_ssrc_count(SrtpSessionObject *self, void *closure) {
    return PyLong_FromUnsignedLong(self->n);
}

static PyMethodDef SrtpSession_methods[] = {
    {"protect", (PyCFunction)SrtpSession_protect, METH_O, "protect(packet: bytes) -> bytes: RTP to SRTP."},
    {"unprotect", (PyCFunction)SrtpSession_unprotect, METH_O,
     "unprotect(packet: bytes) -> bytes: SRTP to RTP; SrtpError if it fails authentication or is replayed."},
    {"protect_rtcp", (PyCFunction)SrtpSession_protect_rtcp, METH_O,
     "protect_rtcp(packet: bytes) -> bytes: (compound) RTCP to SRTCP."},
    {"unprotect_rtcp", (PyCFunction)SrtpSession_unprotect_rtcp, METH_O,
     "unprotect_rtcp(packet: bytes) -> bytes: SRTCP to RTCP; SrtpError if it fails authentication or is replayed."},
    {"from_session_keys", (PyCFunction)(void (*)(void))SrtpSession_from_session_keys,
     METH_VARARGS | METH_KEYWORDS | METH_CLASS,
     "from_session_keys(profile, rtp_keys, rtcp_keys, inbound=False): a session keyed with session keys\n"
     "(encryption key || salt || auth key) directly, without key derivation: for test vectors."},
    {NULL},
};

static PyGetSetDef SrtpSession_getset[] = {
    {"profile", (getter)SrtpSession_get_profile, NULL, "SRTP profile (libsrtp number)", NULL},
    {"inbound", (getter)SrtpSession_get_inbound, NULL, "whether this is the receive-side session", NULL},
    {"ssrc_count", (getter)SrtpSession_get_ssrc_count, NULL, "SSRCs with stream state", NULL},
    {NULL},
};

static PyTypeObject SrtpSessionType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "sfu._native.SrtpSession",
    .tp_basicsize = sizeof(SrtpSessionObject),
    .tp_dealloc = (destructor)SrtpSession_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "SrtpSession(profile: int, key: bytes, inbound: bool)\n\n"
              "SRTP/SRTCP protect and unprotect (RFC 3711, RFC 7714) for one direction of a DTLS-SRTP\n"
              "transport, with pylibsrtp.Session's methods. profile: 1 AES128_CM_SHA1_80, 2 AES128_CM_SHA1_32,\n"
              "7 AEAD_AES_128_GCM, 8 AEAD_AES_256_GCM; key: master key || master salt.",
    .tp_methods = SrtpSession_methods,
    .tp_getset = SrtpSession_getset,
    .tp_new = SrtpSession_new,
};

/* ---- module functions -------------------------------------------------------------------------- */

static PyObject *srtp_kdf(PyObject *module, PyObject *args) {
    Py_buffer key, salt;
    int label;
    Py_ssize_t length;
    if (!PyArg_ParseTuple(args, "y*y*in:_srtp_kdf", &key, &salt, &label, &length))
        return NULL;
    PyObject *out = NULL;
    if (label < 0 || label > 255 || length < 0 || length > (1 << 24)) {
        PyErr_SetString(PyExc_ValueError, "label must be 0..255 and length 0..2^24");
    } else if ((key.len != 16 && key.len != 32) || salt.len > 14) {
        PyErr_SetString(PyExc_ValueError, "master key must be 16 or 32 bytes, master salt at most 14");
    } else if ((out = PyBytes_FromStringAndSize(NULL, length)) != NULL) {
        int rc = bs_srtp_kdf(key.buf, (size_t)key.len, salt.buf, (size_t)salt.len, (uint8_t)label,
                             (uint8_t *)PyBytes_AS_STRING(out), (size_t)length);
        if (rc < 0) {
            Py_CLEAR(out);
            PyErr_SetString(SrtpError, bs_srtp_strerror(rc));
        }
    }
    PyBuffer_Release(&key);
    PyBuffer_Release(&salt);
    return out;
}

static const char *const AES_NAMES[] = {"openssl", "aes-ni", "aes-ni-256"}; /* by BS_SRTP_AES_* */

static PyObject *srtp_set_aes(PyObject *self, PyObject *arg) {
    const char *name = PyUnicode_Check(arg) ? PyUnicode_AsUTF8(arg) : NULL;
    if (name == NULL) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "set_aes: a name ('auto', 'openssl', 'aes-ni', 'aes-ni-256')");
        return NULL;
    }
    int mode = -2;
    if (strcmp(name, "auto") == 0)
        mode = -1;
    for (int i = 0; i < 3; i++)
        if (strcmp(name, AES_NAMES[i]) == 0)
            mode = i;
    if (mode == -2)
        return PyErr_Format(PyExc_ValueError, "set_aes: unknown %R (auto, openssl, aes-ni, aes-ni-256)", arg);
    return PyUnicode_FromString(AES_NAMES[bs_srtp_set_aes(mode)]);
}

static PyObject *srtp_aes(PyObject *self, PyObject *unused) { return PyUnicode_FromString(AES_NAMES[bs_srtp_aes()]); }

static PyMethodDef module_functions[] = {
    {"set_aes", srtp_set_aes, METH_O,
     "set_aes(name) -> name in force: the AES of SRTP sessions made from now on (SrtpSession, Egress,\n"
     "MediaSocket): 'openssl' (EVP), 'aes-ni' (AES-NI / PCLMULQDQ), 'aes-ni-256' (and VAES / VPCLMULQDQ), or\n"
     "'auto', the best the CPU has (the default). A mode the CPU lacks gives the best below it."},
    {"aes", srtp_aes, METH_NOARGS, "aes() -> the AES new SRTP sessions use (see set_aes)."},
    {"_srtp_kdf", srtp_kdf, METH_VARARGS,
     "_srtp_kdf(master_key, master_salt, label, length) -> bytes: RFC 3711 4.3 key derivation (tests)."},
    {NULL},
};

int bs_register_srtp_session(PyObject *m) {
    if (PyType_Ready(&SrtpSessionType) < 0)
        return -1;
    if (SrtpError == NULL) {
        SrtpError = PyErr_NewExceptionWithDoc("sfu._native.SrtpError",
                                              "An SRTP/SRTCP packet was refused (malformed, failed authentication, "
                                              "replayed) or a session limit was reached.",
                                              PyExc_ValueError, NULL);
        if (SrtpError == NULL)
            return -1;
    }
    Py_INCREF(&SrtpSessionType);
    if (PyModule_AddObject(m, "SrtpSession", (PyObject *)&SrtpSessionType) < 0) {
        Py_DECREF(&SrtpSessionType);
        return -1;
    }
    Py_INCREF(SrtpError);
    if (PyModule_AddObject(m, "SrtpError", SrtpError) < 0) {
        Py_DECREF(SrtpError);
        return -1;
    }
    return PyModule_AddFunctions(m, module_functions);
}
