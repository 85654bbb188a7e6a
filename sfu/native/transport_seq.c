/* Header extension elements the SFU adds to what it sends: transport-wide sequence numbers
 * (draft-holmer-rmcat-transport-wide-cc-extensions-01) and the playout delay. The twin of
 * sfu/transport_seq.py `stamp_element`, which the unit tests and the fuzz harness compare byte for
 * byte. The Egress (forward.c) calls bs_tcc_stamp on every packet it queues for an SSRC whose m-line
 * negotiated transport-wide CC, and bs_ext_stamp with the playout delay on those of SSRCs whose
 * m-line negotiated that, while it is set.
 *
 * An element with the id already there is overwritten (one of another length is blanked to padding);
 * otherwise one goes where the extension block has padding to spare, or the block grows by as few
 * words as it needs, or a block is added. The payload and any RTP padding move along. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <string.h>

#include "forward.h"

size_t bs_ext_stamp(uint8_t *buf, size_t len, size_t cap, int xid, const uint8_t *value, size_t size) {
    if (len < 12 || xid < 1 || xid > 14 || size < 1 || size > 16)
        return 0;
    size_t hdr = 12 + 4 * (size_t)(buf[0] & 0x0F);
    if (len < hdr)
        return 0;
    if (!(buf[0] & 0x10)) { /* no extension block yet: add one holding our element, padded to words */
        size_t words = (1 + size + 3) / 4, add = 4 + 4 * words;
        if (len + add > cap)
            return 0;
        memmove(buf + hdr + add, buf + hdr, len - hdr);
        uint8_t *b = buf + hdr;
        memset(b, 0, add);
        b[0] = 0xBE, b[1] = 0xDE, b[2] = 0, b[3] = (uint8_t)words;
        b[4] = (uint8_t)(xid << 4 | (size - 1));
        memcpy(b + 5, value, size);
        buf[0] |= 0x10;
        return len + add;
    }
    if (len < hdr + 4)
        return 0;
    unsigned profile = (unsigned)buf[hdr] << 8 | buf[hdr + 1];
    size_t start = hdr + 4, end = start + 4 * ((size_t)buf[hdr + 2] << 8 | buf[hdr + 3]);
    if (end > len)
        return 0;
    int two_byte = (profile & 0xFFF0) == 0x1000;
    if (profile != 0xBEDE && !two_byte)
        return 0;
    size_t i = start, last = start;
    while (i < end) {
        uint8_t b = buf[i];
        if (b == 0) {
            i++;
            continue;
        }
        size_t esize, header;
        int mine;
        if (two_byte) {
            if (i + 2 > end || i + 2 + buf[i + 1] > end)
                return 0;
            esize = buf[i + 1];
            header = 2;
            mine = b == xid && esize == size;
        } else {
            if (b >> 4 == 15)
                return 0;
            esize = (size_t)(b & 0x0F) + 1;
            header = 1;
            if (i + 1 + esize > end)
                return 0;
            mine = (b >> 4) == xid && esize == size;
        }
        if (mine) {
            memcpy(buf + i + header, value, size);
            return len;
        }
        if ((two_byte ? b : b >> 4) == xid)
            memset(buf + i, 0, header + esize); /* our id with another length: a receiver would read it */
        else
            last = i + header + esize;
        i += header + esize;
    }
    uint8_t element[18];
    size_t elen;
    if (two_byte) {
        element[0] = (uint8_t)xid, element[1] = (uint8_t)size;
        memcpy(element + 2, value, size);
        elen = 2 + size;
    } else {
        element[0] = (uint8_t)(xid << 4 | (size - 1));
        memcpy(element + 1, value, size);
        elen = 1 + size;
    }
    if (end - last >= elen) { /* the block's padding (all zero after the last element) has room */
        memcpy(buf + last, element, elen);
        return len;
    }
    size_t grow = (elen - (end - last) + 3) / 4 * 4;
    if (len + grow > cap)
        return 0;
    memmove(buf + end + grow, buf + end, len - end);
    memset(buf + end, 0, grow);
    size_t words = (end + grow - start) / 4;
    if (words > 0xFFFF)
        return 0; /* (cannot happen below 256 KiB packets; the block's length field is 16 bits) */
    buf[hdr + 2] = (uint8_t)(words >> 8);
    buf[hdr + 3] = (uint8_t)words;
    memcpy(buf + last, element, elen);
    return len + grow;
}

size_t bs_tcc_stamp(uint8_t *buf, size_t len, size_t cap, int xid, uint16_t seq) {
    uint8_t value[2] = {(uint8_t)(seq >> 8), (uint8_t)seq};
    return bs_ext_stamp(buf, len, cap, xid, value, 2);
}

/* transport_seq_stamp(data, xid, seq) -> bytes | None, for the parity tests and the fuzz harness */
static PyObject *py_stamp(PyObject *self, PyObject *args) {
    Py_buffer b;
    int xid, seq;
    if (!PyArg_ParseTuple(args, "y*ii", &b, &xid, &seq))
        return NULL;
    size_t cap = (size_t)b.len + 8;
    uint8_t *tmp = PyMem_Malloc(cap);
    if (!tmp) {
        PyBuffer_Release(&b);
        return PyErr_NoMemory();
    }
    memcpy(tmp, b.buf, (size_t)b.len);
    size_t n = bs_tcc_stamp(tmp, (size_t)b.len, cap, xid, (uint16_t)seq);
    PyBuffer_Release(&b);
    PyObject *r = n ? PyBytes_FromStringAndSize((const char *)tmp, (Py_ssize_t)n) : Py_NewRef(Py_None);
    PyMem_Free(tmp);
    return r;
}

/* ext_stamp(data, xid, value) -> bytes | None, for the parity tests and the fuzz harness */
static PyObject *py_ext_stamp(PyObject *self, PyObject *args) {
    Py_buffer b, v;
    int xid;
    if (!PyArg_ParseTuple(args, "y*iy*", &b, &xid, &v))
        return NULL;
    PyObject *r = NULL;
    size_t cap = (size_t)b.len + 24;
    uint8_t *tmp = PyMem_Malloc(cap);
    if (!tmp) {
        r = PyErr_NoMemory();
    } else {
        memcpy(tmp, b.buf, (size_t)b.len);
        size_t n = bs_ext_stamp(tmp, (size_t)b.len, cap, xid, v.buf, (size_t)v.len);
        r = n ? PyBytes_FromStringAndSize((const char *)tmp, (Py_ssize_t)n) : Py_NewRef(Py_None);
        PyMem_Free(tmp);
    }
    PyBuffer_Release(&b);
    PyBuffer_Release(&v);
    return r;
}

static PyMethodDef methods[] = {
    {"transport_seq_stamp", py_stamp, METH_VARARGS,
     "transport_seq_stamp(data, xid, seq): the packet carrying transport sequence number seq, or None"},
    {"ext_stamp", py_ext_stamp, METH_VARARGS,
     "ext_stamp(data, xid, value): the packet carrying element value (1-16 bytes) under id xid, or None"},
    {NULL},
};

int bs_register_transport_seq(PyObject *m) { return PyModule_AddFunctions(m, methods); }
