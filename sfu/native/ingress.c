/* IngressCore: the common case of `Ingress.on_rtp` in C (base class of sfu.ingress.NativeIngress).
 *
 * Most of what a publisher sends is the next packet of a media SSRC the Ingress already knows, with
 * a payload, not a key frame. For such a packet `on_rtp` here does what the Python method does, in
 * the same order and with the same effects: the traffic counters (traffic.c), the reception update,
 * the layer's rate (`Layer.account`; layer.c), the abs-send-time sample for the uplink estimate, the
 * audio level, the mute check, the fan-out to every DownTrack (forward.c) and the latency sample.
 * Python is called only for the audio level and the one latency sample in `latency_every`.
 *
 * Everything else goes to the Python method, `_slow_on_rtp` (the twin): unknown SSRCs and learning,
 * RTX, padding, gaps and NACK timing, late packets, jumps and restarts, key frames and H.264, and
 * anything malformed (the drop is counted there). The test for the fast path is made before any state
 * changes, so the Python method always sees the packet as if it came first: the two paths cannot
 * disagree on what a packet does, only on how fast it is done.
 *
 * The SSRC table is the Python Ingress's by_ssrc, media roles only: `_route` / `_unroute` are called
 * by NativeIngress._bind whenever it changes, so it holds at most one entry per layer.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <stdint.h>
#include <stdlib.h>

#include "forward.h"

enum { CODEC_OTHER = 0, CODEC_VP8 = 1, CODEC_H264 = 2, CODEC_VP9 = 3, CODEC_AV1 = 4 };

typedef struct {
    uint32_t ssrc;
    uint8_t video, codec;
    long ast_id, level_id; /* header extension ids; 0: not negotiated */
    PyObject *rec, *layer, *rx;
} route;

typedef struct {
    PyObject_HEAD
    PyObject *remb;     /* Ingress.remb: the uplink estimator */
    long long remb_bps; /* Ingress.remb_bps */
    PyObject *stats;    /* sfu.metrics.STATS */
    PyObject *traffic;  /* STATS.traffic: a Traffic */
    PyObject *arrivals; /* Ingress.arrivals: a TransportArrivals, or NULL (transport-wide CC not negotiated) */
    long tcc_id;        /* Ingress.tcc_id: the transport-wide-cc extension's id; 0: not negotiated */
    route *routes;
    Py_ssize_t n_routes, cap_routes;
    unsigned long long fast, slow;
} IngressCore;

static PyObject *str_slow, *str_muted, *str_downtracks, *str_on_audio_level, *str_participant_id,
    *str_observe_latency_now;

static route *find(IngressCore *self, uint32_t ssrc) {
    for (Py_ssize_t i = 0; i < self->n_routes; i++)
        if (self->routes[i].ssrc == ssrc)
            return &self->routes[i];
    return NULL;
}

static void route_clear(route *r) {
    Py_CLEAR(r->rec);
    Py_CLEAR(r->layer);
    Py_CLEAR(r->rx);
}

static void unroute(IngressCore *self, uint32_t ssrc) {
    route *r = find(self, ssrc);
    if (r == NULL)
        return;
    route gone = *r;
    *r = self->routes[--self->n_routes]; /* order does not matter */
    route_clear(&gone);
}

static PyObject *slow(IngressCore *self, PyObject *const *args) {
    self->slow++;
    PyObject *call[3] = {(PyObject *)self, args[0], args[1]};
    return PyObject_VectorcallMethod(str_slow, call, 3, NULL);
}

/* on_rtp(data, arrival): one decrypted RTP packet from the publisher (Ingress.on_rtp). */
static PyObject *IC_on_rtp(IngressCore *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "on_rtp(data, arrival)");
        return NULL;
    }
    PyObject *data = args[0];
    if (!PyBytes_CheckExact(data) || !PyFloat_CheckExact(args[1]) || self->stats == NULL || self->traffic == NULL)
        return slow(self, args); /* _traffic is a Traffic when set (its setter checks) */
    bs_traffic *traffic = (bs_traffic *)self->traffic;
    const uint8_t *d = (const uint8_t *)PyBytes_AS_STRING(data);
    size_t n = (size_t)PyBytes_GET_SIZE(data);
    double arrival = PyFloat_AS_DOUBLE(args[1]);
    bs_rtp_view v;
    route *r;
    /* The fast path's conditions, all read before anything changes. The ranges are those of
     * ReceptionCore.update and RembEstimator.add, which raise outside them. */
    if (bs_rtp_parse(d, n, &v) < 0 || (r = find(self, v.ssrc)) == NULL || !(arrival > -1e9 && arrival < 1e9) ||
        n > 0xFFFF || !bs_reception_next(r->rx, v.seq) || v.payload_start >= v.payload_end)
        return slow(self, args);
    int have_ast = 0, level = -1;
    uint32_t ast = 0;
    size_t at = 0, len = 0;
    bs_picture pic, *parsed = NULL; /* handed to the fan-out, which would parse it again */
    int have_tcc = 0;
    uint16_t tcc = 0;
    if (self->arrivals != NULL && self->tcc_id > 0 && v.ext_start) {
        int e = bs_rtp_extension(d, &v, self->tcc_id, &at, &len);
        if (e < 0)
            return slow(self, args);
        if (e > 0 && len == 2) {
            have_tcc = 1;
            tcc = (uint16_t)(d[at] << 8 | d[at + 1]);
        }
    }
    if (r->video) {
        /* H.264 (key frames are found by scanning NAL units) and AV1 (layers are in the dependency
         * descriptor, read with the stream's structure) take Ingress.on_rtp */
        if (r->codec == CODEC_H264 || r->codec == CODEC_AV1)
            return slow(self, args);
        if (r->codec == CODEC_VP8 || r->codec == CODEC_VP9) {
            /* key frames (their size, the counts) and bad descriptors take Ingress.on_rtp */
            int codec = r->codec == CODEC_VP8 ? BS_PICTURE_VP8 : BS_PICTURE_VP9;
            if (bs_picture_parse(codec, d + v.payload_start, v.payload_end - v.payload_start, &pic) < 0 ||
                pic.keyframe)
                return slow(self, args);
            parsed = &pic;
        }
        if (r->ast_id && v.ext_start && !have_tcc) { /* (numbered: the publisher estimates) */
            int e = bs_rtp_extension(d, &v, r->ast_id, &at, &len);
            if (e < 0)
                return slow(self, args);
            if (e > 0 && len == 3) {
                have_ast = 1;
                ast = (uint32_t)d[at] << 16 | (uint32_t)d[at + 1] << 8 | d[at + 2];
            }
        }
    }
    PyObject *on_level = NULL; /* a new reference from here on */
    if (!r->video && v.ext_start) {
        on_level = PyObject_GetAttr((PyObject *)self, str_on_audio_level);
        if (on_level == NULL)
            return NULL;
        if (on_level != Py_None && r->level_id) {
            int e = bs_rtp_extension(d, &v, r->level_id, &at, &len);
            if (e < 0) {
                Py_DECREF(on_level);
                return slow(self, args);
            }
            if (e > 0 && len > 0)
                level = d[at] & 0x7F; /* RFC 6464: the level in -dBov, without the voice flag */
        }
    }

    /* The common case: Ingress.on_rtp's steps, in its order. */
    PyObject *rec = r->rec, *layer = r->layer, *result = NULL, *dts = NULL;
    Py_INCREF(rec); /* a callback below may unroute it */
    Py_INCREF(layer);
    self->fast++;
    traffic->packets_in += 1;
    traffic->bytes_in += n;
    if (have_tcc)
        bs_arrivals_add(self->arrivals, tcc, arrival); /* its type: checked when set; arrival: above */
    bs_reception_update(r->rx, v.seq, v.ts, arrival); /* IN_ORDER: checked above */
    /* a NativeLayer: _route checked; a VP9 packet counts for its spatial layer too */
    bs_layer_account(layer, (long long)v.payload_end, arrival, parsed ? parsed->sid : 0);
    if (have_ast) {
        long long target;
        int u = bs_remb_add(self->remb, (long long)(arrival * 1000.0), ast, (long long)n, v.ssrc, &target);
        if (u < 0) {
            PyErr_SetString(PyExc_TypeError, "IngressCore: remb is not a RembEstimator");
            goto done;
        }
        if (u > 0)
            self->remb_bps = target;
    }
    if (level >= 0) {
        PyObject *pid = PyObject_GetAttr((PyObject *)self, str_participant_id);
        PyObject *lv = PyLong_FromLong(level);
        PyObject *called = pid && lv ? PyObject_CallFunctionObjArgs(on_level, pid, lv, args[1], NULL) : NULL;
        Py_XDECREF(pid);
        Py_XDECREF(lv);
        if (called == NULL)
            goto done;
        Py_DECREF(called);
    }
    PyObject *muted = PyObject_GetAttr(rec, str_muted);
    int is_muted = muted ? PyObject_IsTrue(muted) : -1;
    Py_XDECREF(muted);
    if (is_muted < 0)
        goto done;
    if (is_muted) {
        result = Py_NewRef(Py_None);
        goto done;
    }
    dts = PyObject_GetAttr(rec, str_downtracks);
    if (dts == NULL)
        goto done;
    if (!PyList_Check(dts)) {
        PyErr_SetString(PyExc_TypeError, "a track's downtracks must be a list");
        goto done;
    }
    if (PyList_GET_SIZE(dts) > 0) {
        unsigned long long packets = 0, bytes = 0;
        int failed = bs_fanout(dts, d, n, &v, parsed, layer, 0, arrival, &packets, &bytes) < 0;
        traffic->packets_out += packets; /* what left before a failure did leave */
        traffic->bytes_out += bytes;
        if (failed)
            goto done;
    }
    /* STATS.observe_latency: one packet in latency_every is timed */
    if (++traffic->latency_sample >= traffic->latency_every) {
        traffic->latency_sample = 0;
        result = PyObject_CallMethodObjArgs(self->stats, str_observe_latency_now, args[1], NULL);
    } else {
        result = Py_NewRef(Py_None);
    }
done:
    Py_XDECREF(on_level);
    Py_XDECREF(dts);
    Py_DECREF(rec);
    Py_DECREF(layer);
    return result;
}

/* _route(ssrc, rec, layer, video, codec, ast_id, level_id): `ssrc` is the media SSRC of `layer`. */
static PyObject *IC_route(IngressCore *self, PyObject *args) {
    unsigned int ssrc;
    PyObject *rec, *layer;
    int video, codec;
    long ast_id, level_id;
    if (!PyArg_ParseTuple(args, "IOOpill", &ssrc, &rec, &layer, &video, &codec, &ast_id, &level_id))
        return NULL;
    unroute(self, ssrc);
    PyObject *rx = PyObject_GetAttrString(layer, "rx");
    if (rx == NULL)
        return NULL;
    if (!bs_is_reception(rx) || !bs_is_layer(layer) || codec < CODEC_OTHER || codec > CODEC_AV1) {
        Py_DECREF(rx); /* not a native Reception and Layer: the Python method handles this SSRC */
        Py_RETURN_FALSE;
    }
    if (self->n_routes == self->cap_routes) {
        Py_ssize_t cap = self->cap_routes ? self->cap_routes * 2 : 8;
        route *grown = PyMem_Realloc(self->routes, (size_t)cap * sizeof(route));
        if (grown == NULL) {
            Py_DECREF(rx);
            return PyErr_NoMemory();
        }
        self->routes = grown;
        self->cap_routes = cap;
    }
    route *r = &self->routes[self->n_routes++];
    r->ssrc = ssrc;
    r->video = (uint8_t)video;
    r->codec = (uint8_t)codec;
    r->ast_id = ast_id;
    r->level_id = level_id;
    r->rec = Py_NewRef(rec);
    r->layer = Py_NewRef(layer);
    r->rx = rx;
    Py_RETURN_TRUE;
}

static PyObject *IC_unroute(IngressCore *self, PyObject *arg) {
    unsigned long ssrc = PyLong_AsUnsignedLongMask(arg);
    if (ssrc == (unsigned long)-1 && PyErr_Occurred())
        return NULL;
    unroute(self, (uint32_t)ssrc);
    Py_RETURN_NONE;
}

static PyObject *IC_get_routes(IngressCore *self, void *closure) { return PyLong_FromSsize_t(self->n_routes); }

static int IC_traverse(IngressCore *self, visitproc visit, void *arg) {
    Py_VISIT(self->remb);
    Py_VISIT(self->arrivals);
    Py_VISIT(self->stats);
    Py_VISIT(self->traffic);
    for (Py_ssize_t i = 0; i < self->n_routes; i++) {
        Py_VISIT(self->routes[i].rec);
        Py_VISIT(self->routes[i].layer);
        Py_VISIT(self->routes[i].rx);
    }
    return 0;
}

static int IC_clear(IngressCore *self) {
    Py_CLEAR(self->remb);
    Py_CLEAR(self->arrivals);
    Py_CLEAR(self->stats);
    Py_CLEAR(self->traffic);
    while (self->n_routes > 0)
        route_clear(&self->routes[--self->n_routes]);
    return 0;
}

static void IC_dealloc(IngressCore *self) {
    PyObject_GC_UnTrack(self);
    IC_clear(self);
    PyMem_Free(self->routes);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *IC_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    return type->tp_alloc(type, 0); /* zeroed; the Python subclass's __init__ takes the arguments */
}

static PyMethodDef IC_methods[] = {
    {"on_rtp", (PyCFunction)(void (*)(void))IC_on_rtp, METH_FASTCALL,
     "on_rtp(data, arrival): Ingress.on_rtp, the common case in C, the rest by _slow_on_rtp"},
    {"_route", (PyCFunction)IC_route, METH_VARARGS,
     "_route(ssrc, rec, layer, video, codec, ast_id, level_id) -> bool: ssrc is layer's media SSRC "
     "(False: its Reception is not native, so the Python method keeps it)"},
    {"_unroute", (PyCFunction)IC_unroute, METH_O, "_unroute(ssrc): forget it"},
    {NULL},
};

static PyMemberDef IC_members[] = {
    {"remb", T_OBJECT, offsetof(IngressCore, remb), 0, "the uplink bandwidth estimator"},
    {"remb_bps", T_LONGLONG, offsetof(IngressCore, remb_bps), 0, "its latest estimate"},
    {"_stats", T_OBJECT, offsetof(IngressCore, stats), 0, "sfu.metrics.STATS"},
    {"tcc_id", T_LONG, offsetof(IngressCore, tcc_id), 0, "the transport-wide-cc extension's id; 0: none"},
    {"fast_packets", T_ULONGLONG, offsetof(IngressCore, fast), READONLY, "packets the C path took"},
    {"slow_packets", T_ULONGLONG, offsetof(IngressCore, slow), READONLY, "packets handed to _slow_on_rtp"},
    {NULL},
};

static PyObject *IC_get_traffic(IngressCore *self, void *closure) {
    return Py_NewRef(self->traffic ? self->traffic : Py_None);
}

static int IC_set_traffic(IngressCore *self, PyObject *value, void *closure) {
    if (value != NULL && value != Py_None && !bs_is_traffic(value)) {
        PyErr_SetString(PyExc_TypeError, "_traffic must be a Traffic");
        return -1;
    }
    Py_XSETREF(self->traffic, value == NULL || value == Py_None ? NULL : Py_NewRef(value));
    return 0;
}

static PyObject *IC_get_arrivals(IngressCore *self, void *closure) {
    return Py_NewRef(self->arrivals ? self->arrivals : Py_None);
}

static int IC_set_arrivals(IngressCore *self, PyObject *value, void *closure) {
    if (value != NULL && value != Py_None && !bs_is_arrivals(value)) {
        PyErr_SetString(PyExc_TypeError, "arrivals must be a _native.TransportArrivals");
        return -1;
    }
    Py_XSETREF(self->arrivals, value == NULL || value == Py_None ? NULL : Py_NewRef(value));
    return 0;
}

static PyGetSetDef IC_getset[] = {
    {"arrivals", (getter)IC_get_arrivals, (setter)IC_set_arrivals,
     "transport-wide sequence numbers' arrivals (a TransportArrivals, checked when set), or None", NULL},
    {"routes", (getter)IC_get_routes, NULL, "media SSRCs the C path knows", NULL},
    {"_traffic", (getter)IC_get_traffic, (setter)IC_set_traffic, "STATS.traffic (a Traffic, checked when set)", NULL},
    {NULL},
};

static PyTypeObject IngressCoreType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "sfu._native.IngressCore",
    .tp_basicsize = sizeof(IngressCore),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "The common case of Ingress.on_rtp in C",
    .tp_new = IC_new,
    .tp_dealloc = (destructor)IC_dealloc,
    .tp_traverse = (traverseproc)IC_traverse,
    .tp_clear = (inquiry)IC_clear,
    .tp_methods = IC_methods,
    .tp_members = IC_members,
    .tp_getset = IC_getset,
};

int bs_register_ingress(PyObject *m) {
    struct {
        PyObject **slot;
        const char *name;
    } names[] = {{&str_slow, "_slow_on_rtp"},       {&str_muted, "muted"},
                 {&str_downtracks, "downtracks"},
                 {&str_on_audio_level, "on_audio_level"}, {&str_participant_id, "participant_id"},
                 {&str_observe_latency_now, "observe_latency_now"}};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if ((*names[i].slot = PyUnicode_InternFromString(names[i].name)) == NULL)
            return -1;
    if (PyType_Ready(&IngressCoreType) < 0)
        return -1;
    Py_INCREF(&IngressCoreType);
    if (PyModule_AddObject(m, "IngressCore", (PyObject *)&IngressCoreType) < 0) {
        Py_DECREF(&IngressCoreType);
        return -1;
    }
    if (PyModule_AddIntConstant(m, "CODEC_OTHER", CODEC_OTHER) < 0 || PyModule_AddIntConstant(m, "CODEC_VP8", CODEC_VP8) < 0 ||
        PyModule_AddIntConstant(m, "CODEC_H264", CODEC_H264) < 0 ||
        PyModule_AddIntConstant(m, "CODEC_VP9", CODEC_VP9) < 0 || PyModule_AddIntConstant(m, "CODEC_AV1", CODEC_AV1) < 0)
        return -1;
    return 0;
}
