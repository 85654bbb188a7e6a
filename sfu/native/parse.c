/* Parsing: the C twins of sfu/rtp.py `parse`, `vp8_descriptor`, `vp9_descriptor` and `extension`.
 *
 * bs_rtp_parse / bs_vp8_parse / bs_vp9_parse serve the forwarder (forward.c). As Python objects,
 * `parse` returns an RtpView and `vp8_descriptor` / `vp9_descriptor` a Vp8Descriptor /
 * Vp9Descriptor with the attributes of sfu.rtp's dataclasses, and
 * both raise sfu.rtp.RtpError with the same reason; `extension` returns one header extension's
 * value. The native data path's Ingress uses these instead of sfu.rtp's (a Python parse, a VP8
 * descriptor and an extension map cost ~3.5 us a packet; these ~0.3 us); the unit tests of
 * tests/unit/sfu run the Ingress on both, and tests/unit/sfu/native/test_parse_parity.py and
 * tests/fuzz/fuzz_native.py hold them to sfu.rtp byte for byte.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <stdint.h>
#include <string.h>

#include "forward.h"


int bs_rtp_parse(const uint8_t *d, size_t n, bs_rtp_view *v) {
    if (n < 12)
        return BS_TRUNCATED_HEADER;
    if ((d[0] >> 6) != 2)
        return BS_BAD_VERSION;
    v->marker = d[1] >> 7;
    v->pt = d[1] & 0x7F;
    v->seq = (uint16_t)((d[2] << 8) | d[3]);
    v->ts = ((uint32_t)d[4] << 24) | ((uint32_t)d[5] << 16) | ((uint32_t)d[6] << 8) | d[7];
    v->ssrc = ((uint32_t)d[8] << 24) | ((uint32_t)d[9] << 16) | ((uint32_t)d[10] << 8) | d[11];
    size_t pos = 12 + 4 * (size_t)(d[0] & 0x0F);
    v->ext_start = v->ext_end = 0;
    v->one_byte = 0;
    if (d[0] & 0x10) {
        if (pos + 4 > n)
            return BS_TRUNCATED_EXTENSION;
        unsigned profile = (d[pos] << 8) | d[pos + 1];
        size_t words = (d[pos + 2] << 8) | d[pos + 3];
        v->ext_start = pos + 4;
        v->ext_end = v->ext_start + 4 * words;
        if (v->ext_end > n)
            return BS_BAD_EXTENSION_LENGTH;
        v->one_byte = profile == 0xBEDE;
        pos = v->ext_end;
    }
    if (pos > n)
        return BS_TRUNCATED_HEADER;
    size_t end = n;
    if (d[0] & 0x20) {
        uint8_t pad = d[n - 1];
        if (pad == 0 || pad > end || end - pad < pos)
            return BS_BAD_PADDING;
        end -= pad;
    }
    v->payload_start = pos;
    v->payload_end = end;
    return 0;
}

/* The 7- or 15-bit picture id at *pos (M bit first), as VP8 and VP9 descriptors carry it (rtp.py
 * `_picture_id`): into d, *pos past it; -1 when the payload ends first. */
static int picture_id(const uint8_t *p, size_t n, size_t *pos, bs_picture *d) {
    size_t at = *pos;
    if (at >= n)
        return -1;
    d->picture_id_pos = at;
    if (p[at] & 0x80) {
        if (at + 1 >= n)
            return -1;
        d->picture_id = ((p[at] & 0x7F) << 8) | p[at + 1];
        d->picture_id_bits = 15;
        *pos = at + 2;
    } else {
        d->picture_id = p[at] & 0x7F;
        d->picture_id_bits = 7;
        *pos = at + 1;
    }
    return 0;
}

int bs_vp8_parse(const uint8_t *p, size_t n, bs_picture *d) {
    memset(d, 0, sizeof(*d));
    d->picture_id = -1;
    d->tl0picidx = -1;
    if (n < 1)
        return BS_VP8_EMPTY;
    uint8_t b0 = p[0];
    size_t pos = 1;
    if (b0 & 0x80) {
        if (n < 2)
            return BS_VP8_TRUNCATED;
        uint8_t x = p[1];
        pos = 2;
        if ((x & 0x80) && picture_id(p, n, &pos, d) < 0)
            return BS_VP8_TRUNCATED;
        if (x & 0x40) {
            if (pos >= n)
                return BS_VP8_TRUNCATED;
            d->tl0picidx_pos = pos;
            d->tl0picidx = p[pos];
            pos += 1;
        }
        if (x & 0x30) {
            if (pos >= n)
                return BS_VP8_TRUNCATED;
            if (x & 0x20) {
                d->tid = p[pos] >> 6;
                d->layer_sync = (p[pos] & 0x20) != 0;
            }
            pos += 1;
        }
    }
    d->start = (b0 & 0x10) && (b0 & 0x07) == 0;
    d->keyframe = d->start && pos < n && (p[pos] & 0x01) == 0;
    d->size = pos;
    return 0;
}

#define VP9_MAX_REFERENCES 3 /* P_DIFF fields a flexible-mode layer frame may carry (RFC 9628 4.2) */

int bs_vp9_parse(const uint8_t *p, size_t n, bs_picture *d) {
    memset(d, 0, sizeof(*d));
    d->picture_id = -1;
    d->tl0picidx = -1;
    if (n < 1)
        return BS_VP9_EMPTY;
    uint8_t b0 = p[0];
    size_t pos = 1;
    d->flexible = (b0 & 0x10) != 0;
    if ((b0 & 0x80) && picture_id(p, n, &pos, d) < 0) /* I: PICTURE ID */
        return BS_VP9_TRUNCATED;
    if (b0 & 0x20) { /* L: layer indices, and TL0PICIDX in non-flexible mode */
        if (pos >= n)
            return BS_VP9_TRUNCATED;
        uint8_t x = p[pos++];
        d->tid = x >> 5;
        d->layer_sync = (x & 0x10) != 0;
        d->sid = (x >> 1) & 0x07;
        d->inter_layer = x & 0x01;
        if (!d->flexible) {
            if (pos >= n)
                return BS_VP9_TRUNCATED;
            d->tl0picidx_pos = pos;
            d->tl0picidx = p[pos++];
        }
    }
    if (d->flexible && (b0 & 0x40)) { /* F and P: reference indices, each with N = another follows */
        for (int count = 0;; count++) {
            if (count == VP9_MAX_REFERENCES)
                return BS_VP9_REFERENCES;
            if (pos >= n)
                return BS_VP9_TRUNCATED;
            if (!(p[pos++] & 0x01))
                break;
        }
    }
    if (b0 & 0x02) { /* V: scalability structure */
        if (pos >= n)
            return BS_VP9_TRUNCATED;
        d->ss_pos = pos;
        uint8_t ss = p[pos++];
        size_t layers = (size_t)(ss >> 5) + 1;
        if (ss & 0x10) { /* Y: a size per spatial layer */
            if (pos + 4 * layers > n)
                return BS_VP9_TRUNCATED;
            size_t last = pos + 4 * (layers - 1);
            d->width = (p[last] << 8) | p[last + 1];
            d->height = (p[last + 2] << 8) | p[last + 3];
            pos += 4 * layers;
        }
        if (ss & 0x08) { /* G: the picture group's description */
            if (pos >= n)
                return BS_VP9_TRUNCATED;
            unsigned pictures = p[pos++];
            for (unsigned i = 0; i < pictures; i++) {
                if (pos >= n)
                    return BS_VP9_TRUNCATED;
                pos += 1 + ((p[pos] >> 2) & 0x03); /* TID|U|R, then R P_DIFFs */
                if (pos > n)
                    return BS_VP9_TRUNCATED;
            }
        }
    }
    d->start = (b0 & 0x08) && d->sid == 0;
    d->keyframe = d->start && !(b0 & 0x40);
    d->end = (b0 & 0x04) != 0;
    d->size = pos;
    return 0;
}

int bs_picture_parse(int codec, const uint8_t *p, size_t n, bs_picture *d) {
    if (codec == BS_PICTURE_VP9)
        return bs_vp9_parse(p, n, d);
    if (codec == BS_PICTURE_VP8)
        return bs_vp8_parse(p, n, d);
    memset(d, 0, sizeof(*d));
    return BS_VP8_EMPTY; /* (no descriptor to read: callers forward the packet without one) */
}


/* ------------------------------------------------------------------------------------------------
 * Python objects
 * ---------------------------------------------------------------------------------------------- */

static const char *reason(int code) {
    switch (code) {
    case BS_TRUNCATED_HEADER: return "truncated_header";
    case BS_BAD_VERSION: return "bad_version";
    case BS_TRUNCATED_EXTENSION: return "truncated_extension";
    case BS_BAD_EXTENSION_LENGTH: return "bad_extension_length";
    case BS_BAD_PADDING: return "bad_padding";
    case BS_VP8_EMPTY: return "vp8_empty_payload";
    case BS_VP9_EMPTY: return "vp9_empty_payload";
    case BS_VP9_TRUNCATED: return "vp9_truncated_descriptor";
    case BS_VP9_REFERENCES: return "vp9_too_many_references";
    default: return "vp8_truncated_descriptor";
    }
}

static PyObject *rtp_error; /* sfu.rtp.RtpError, looked up on first use */

static void raise_rtp_error(int code) {
    if (rtp_error == NULL) {
        PyObject *mod = PyImport_ImportModule("sfu.rtp");
        if (mod == NULL)
            return;
        rtp_error = PyObject_GetAttrString(mod, "RtpError");
        Py_DECREF(mod);
        if (rtp_error == NULL)
            return;
    }
    PyObject *exc = PyObject_CallFunction(rtp_error, "s", reason(code));
    if (exc != NULL) {
        PyErr_SetObject(rtp_error, exc);
        Py_DECREF(exc);
    }
}

typedef struct {
    PyObject_HEAD
    char marker, one_byte;
    int pt, seq;
    unsigned int ts, ssrc;
    Py_ssize_t ext_start, ext_end, payload_start, payload_end;
} ViewObject;

static PyMemberDef View_members[] = {
    {"marker", T_BOOL, offsetof(ViewObject, marker), READONLY, NULL},
    {"pt", T_INT, offsetof(ViewObject, pt), READONLY, NULL},
    {"seq", T_INT, offsetof(ViewObject, seq), READONLY, NULL},
    {"ts", T_UINT, offsetof(ViewObject, ts), READONLY, NULL},
    {"ssrc", T_UINT, offsetof(ViewObject, ssrc), READONLY, NULL},
    {"ext_start", T_PYSSIZET, offsetof(ViewObject, ext_start), READONLY, NULL},
    {"ext_end", T_PYSSIZET, offsetof(ViewObject, ext_end), READONLY, NULL},
    {"one_byte", T_BOOL, offsetof(ViewObject, one_byte), READONLY, NULL},
    {"payload_start", T_PYSSIZET, offsetof(ViewObject, payload_start), READONLY, NULL},
    {"payload_end", T_PYSSIZET, offsetof(ViewObject, payload_end), READONLY, NULL},
    {NULL},
};

static PyTypeObject ViewType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "sfu._native.RtpView",
    .tp_basicsize = sizeof(ViewObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Where things are in one RTP packet (sfu.rtp.RtpView's attributes, read-only)",
    .tp_members = View_members,
};

typedef struct {
    PyObject_HEAD
    char start, keyframe, layer_sync;
    int picture_id, picture_id_bits, tl0picidx, tid;
    Py_ssize_t picture_id_pos, tl0picidx_pos, size;
    /* VP9's (Vp9Descriptor exposes them) */
    char end, flexible, inter_layer;
    int sid, width, height;
    Py_ssize_t ss_pos;
} Vp8Object;

/* what both descriptors have (sfu.rtp.Vp8Descriptor's fields) */
#define PICTURE_MEMBERS                                                                                \
    {"start", T_BOOL, offsetof(Vp8Object, start), READONLY, NULL},                                     \
    {"keyframe", T_BOOL, offsetof(Vp8Object, keyframe), READONLY, NULL},                               \
    {"picture_id", T_INT, offsetof(Vp8Object, picture_id), READONLY, NULL},                            \
    {"picture_id_pos", T_PYSSIZET, offsetof(Vp8Object, picture_id_pos), READONLY, NULL},               \
    {"picture_id_bits", T_INT, offsetof(Vp8Object, picture_id_bits), READONLY, NULL},                  \
    {"tl0picidx", T_INT, offsetof(Vp8Object, tl0picidx), READONLY, NULL},                              \
    {"tl0picidx_pos", T_PYSSIZET, offsetof(Vp8Object, tl0picidx_pos), READONLY, NULL},                 \
    {"tid", T_INT, offsetof(Vp8Object, tid), READONLY, NULL},                                          \
    {"layer_sync", T_BOOL, offsetof(Vp8Object, layer_sync), READONLY, NULL},                           \
    {"size", T_PYSSIZET, offsetof(Vp8Object, size), READONLY, NULL}

static PyMemberDef Vp8_members[] = {
    PICTURE_MEMBERS,
    {NULL},
};

static PyMemberDef Vp9_members[] = {
    PICTURE_MEMBERS,
    {"sid", T_INT, offsetof(Vp8Object, sid), READONLY, NULL},
    {"end", T_BOOL, offsetof(Vp8Object, end), READONLY, NULL},
    {"flexible", T_BOOL, offsetof(Vp8Object, flexible), READONLY, NULL},
    {"inter_layer", T_BOOL, offsetof(Vp8Object, inter_layer), READONLY, NULL},
    {"width", T_INT, offsetof(Vp8Object, width), READONLY, NULL},
    {"height", T_INT, offsetof(Vp8Object, height), READONLY, NULL},
    {"ss_pos", T_PYSSIZET, offsetof(Vp8Object, ss_pos), READONLY, NULL},
    {NULL},
};

static PyTypeObject Vp9Type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "sfu._native.Vp9Descriptor",
    .tp_basicsize = sizeof(Vp8Object),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A VP9 payload descriptor (sfu.rtp.Vp9Descriptor's attributes, read-only)",
    .tp_members = Vp9_members,
};

static PyTypeObject Vp8Type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "sfu._native.Vp8Descriptor",
    .tp_basicsize = sizeof(Vp8Object),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A VP8 payload descriptor (sfu.rtp.Vp8Descriptor's attributes, read-only)",
    .tp_members = Vp8_members,
};

static PyObject *native_parse(PyObject *module, PyObject *arg) {
    Py_buffer b;
    if (PyObject_GetBuffer(arg, &b, PyBUF_SIMPLE) < 0)
        return NULL;
    bs_rtp_view v;
    int r = bs_rtp_parse(b.buf, (size_t)b.len, &v);
    PyBuffer_Release(&b);
    if (r < 0) {
        raise_rtp_error(r);
        return NULL;
    }
    ViewObject *o = PyObject_New(ViewObject, &ViewType);
    if (o == NULL)
        return NULL;
    o->marker = (char)v.marker;
    o->one_byte = (char)v.one_byte;
    o->pt = v.pt;
    o->seq = v.seq;
    o->ts = v.ts;
    o->ssrc = v.ssrc;
    o->ext_start = (Py_ssize_t)v.ext_start;
    o->ext_end = (Py_ssize_t)v.ext_end;
    o->payload_start = (Py_ssize_t)v.payload_start;
    o->payload_end = (Py_ssize_t)v.payload_end;
    return (PyObject *)o;
}

/* vp8_descriptor / vp9_descriptor: the descriptor of `arg` (a payload) as a Python object of `type` */
static PyObject *picture_object(PyObject *arg, int codec, PyTypeObject *type) {
    Py_buffer b;
    if (PyObject_GetBuffer(arg, &b, PyBUF_SIMPLE) < 0)
        return NULL;
    bs_picture d;
    int r = bs_picture_parse(codec, b.buf, (size_t)b.len, &d);
    PyBuffer_Release(&b);
    if (r < 0) {
        raise_rtp_error(r);
        return NULL;
    }
    Vp8Object *o = PyObject_New(Vp8Object, type);
    if (o == NULL)
        return NULL;
    o->start = (char)d.start;
    o->keyframe = (char)d.keyframe;
    o->layer_sync = (char)d.layer_sync;
    o->picture_id = d.picture_id;
    o->picture_id_bits = d.picture_id_bits;
    o->tl0picidx = d.tl0picidx;
    o->tid = d.tid;
    o->picture_id_pos = (Py_ssize_t)d.picture_id_pos;
    o->tl0picidx_pos = (Py_ssize_t)d.tl0picidx_pos;
    o->size = (Py_ssize_t)d.size;
    o->end = (char)d.end;
    o->flexible = (char)d.flexible;
    o->inter_layer = (char)d.inter_layer;
    o->sid = d.sid;
    o->width = d.width;
    o->height = d.height;
    o->ss_pos = (Py_ssize_t)d.ss_pos;
    return (PyObject *)o;
}

static PyObject *native_vp8_descriptor(PyObject *module, PyObject *arg) {
    return picture_object(arg, BS_PICTURE_VP8, &Vp8Type);
}

static PyObject *native_vp9_descriptor(PyObject *module, PyObject *arg) {
    return picture_object(arg, BS_PICTURE_VP9, &Vp9Type);
}

/* extension(data, view, id) -> bytes | None: as sfu.rtp.extension */
/* The first element `xid` of the packet's header extension block (RFC 8285 one- and two-byte forms):
 * 1 with its value at d[*start .. *start + *len), 0 when absent, BS_BAD_EXTENSION_LENGTH when an
 * element overruns the block before `xid` is found (as sfu/rtp.py `extension`). */
int bs_rtp_extension(const uint8_t *d, const bs_rtp_view *v, long xid, size_t *start, size_t *len) {
    size_t i = v->ext_start, end = v->ext_end;
    if (!i)
        return 0;
    if (v->one_byte) {
        while (i < end) {
            uint8_t c = d[i];
            if (c == 0) {
                i += 1;
                continue;
            }
            long eid = c >> 4;
            size_t elen = (size_t)(c & 0x0F) + 1;
            if (eid == 15)
                return 0;
            if (i + 1 + elen > end)
                return BS_BAD_EXTENSION_LENGTH;
            if (eid == xid) {
                *start = i + 1;
                *len = elen;
                return 1;
            }
            i += 1 + elen;
        }
    } else {
        while (i + 1 < end) {
            long eid = d[i];
            if (eid == 0) {
                i += 1;
                continue;
            }
            size_t elen = d[i + 1];
            if (i + 2 + elen > end)
                return BS_BAD_EXTENSION_LENGTH;
            if (eid == xid) {
                *start = i + 2;
                *len = elen;
                return 1;
            }
            i += 2 + elen;
        }
    }
    return 0;
}

static PyObject *native_extension(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3 || !PyObject_TypeCheck(args[1], &ViewType)) {
        PyErr_SetString(PyExc_TypeError, "extension(data, view: RtpView from parse, id)");
        return NULL;
    }
    const ViewObject *v = (const ViewObject *)args[1];
    long xid = PyLong_AsLong(args[2]);
    if (xid == -1 && PyErr_Occurred())
        return NULL;
    if (!v->ext_start)
        Py_RETURN_NONE;
    Py_buffer b;
    if (PyObject_GetBuffer(args[0], &b, PyBUF_SIMPLE) < 0)
        return NULL;
    if ((Py_ssize_t)v->ext_end > b.len) { /* not this packet's view */
        PyBuffer_Release(&b);
        PyErr_SetString(PyExc_ValueError, "the view does not fit the data");
        return NULL;
    }
    bs_rtp_view view = {.ext_start = (size_t)v->ext_start, .ext_end = (size_t)v->ext_end, .one_byte = (uint8_t)v->one_byte};
    size_t at = 0, len = 0;
    int r = bs_rtp_extension(b.buf, &view, xid, &at, &len);
    PyObject *out = r > 0 ? PyBytes_FromStringAndSize((const char *)b.buf + at, (Py_ssize_t)len) : NULL;
    PyBuffer_Release(&b);
    if (r < 0) {
        raise_rtp_error(r);
        return NULL;
    }
    if (r == 0)
        Py_RETURN_NONE;
    return out;
}

static PyMethodDef parse_functions[] = {
    {"parse", (PyCFunction)native_parse, METH_O, "parse(data) -> RtpView, as sfu.rtp.parse (raises RtpError)"},
    {"vp8_descriptor", (PyCFunction)native_vp8_descriptor, METH_O,
     "vp8_descriptor(payload) -> Vp8Descriptor, as sfu.rtp.vp8_descriptor (raises RtpError)"},
    {"vp9_descriptor", (PyCFunction)native_vp9_descriptor, METH_O,
     "vp9_descriptor(payload) -> Vp9Descriptor, as sfu.rtp.vp9_descriptor (raises RtpError)"},
    {"extension", (PyCFunction)(void (*)(void))native_extension, METH_FASTCALL,
     "extension(data, view, id) -> bytes | None, as sfu.rtp.extension"},
    {NULL},
};

int bs_register_parse(PyObject *m) {
    if (PyType_Ready(&ViewType) < 0 || PyType_Ready(&Vp8Type) < 0 || PyType_Ready(&Vp9Type) < 0)
        return -1;
    Py_INCREF(&ViewType);
    if (PyModule_AddObject(m, "RtpView", (PyObject *)&ViewType) < 0)
        return -1;
    Py_INCREF(&Vp8Type);
    if (PyModule_AddObject(m, "Vp8Descriptor", (PyObject *)&Vp8Type) < 0)
        return -1;
    Py_INCREF(&Vp9Type);
    if (PyModule_AddObject(m, "Vp9Descriptor", (PyObject *)&Vp9Type) < 0)
        return -1;
    return PyModule_AddFunctions(m, parse_functions);
}
