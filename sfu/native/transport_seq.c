/* Transport-wide sequence numbers (draft-holmer-rmcat-transport-wide-cc-extensions-01) stamped into
 * an RTP packet: the twin of sfu/transport_seq.py `stamp`, which the unit tests and the fuzz harness
 * compare byte for byte. The Egress (forward.c) calls bs_tcc_stamp on every packet it queues for an
 * SSRC whose m-line negotiated the extension.
 *
 * An element with the id already there is overwritten (one of another length is blanked to padding);
 * otherwise one goes where the extension block
 * has padding to spare, or the block grows by a word, or a block is added (8 bytes). The payload and
 * any RTP padding move along. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <string.h>

#include "forward.h"

size_t bs_tcc_stamp(uint8_t *buf, size_t len, size_t cap, int xid, uint16_t seq) {
    if (len < 12 || xid < 1 || xid > 14)
        return 0;
    size_t hdr = 12 + 4 * (size_t)(buf[0] & 0x0F);
    if (len < hdr)
        return 0;
    uint8_t hi = (uint8_t)(seq >> 8), lo = (uint8_t)seq;
    if (!(buf[0] & 0x10)) {
        if (len + 8 > cap)
            return 0;
        memmove(buf + hdr + 8, buf + hdr, len - hdr);
        uint8_t block[8] = {0xBE, 0xDE, 0x00, 0x01, (uint8_t)(xid << 4 | 1), hi, lo, 0};
        memcpy(buf + hdr, block, 8);
        buf[0] |= 0x10;
        return len + 8;
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
        size_t size, header;
        int mine;
        if (two_byte) {
            if (i + 2 > end || i + 2 + buf[i + 1] > end)
                return 0;
            size = buf[i + 1];
            header = 2;
            mine = b == xid && size == 2;
        } else {
            if (b >> 4 == 15)
                return 0;
            size = (size_t)(b & 0x0F) + 1;
            header = 1;
            if (i + 1 + size > end)
                return 0;
            mine = (b >> 4) == xid && size == 2;
        }
        if (mine) {
            buf[i + header] = hi;
            buf[i + header + 1] = lo;
            return len;
        }
        if ((two_byte ? b : b >> 4) == xid)
            memset(buf + i, 0, header + size); /* our id with another length: a receiver would read it */
        else
            last = i + header + size;
        i += header + size;
    }
    uint8_t element[4];
    size_t elen;
    if (two_byte) {
        element[0] = (uint8_t)xid, element[1] = 2, element[2] = hi, element[3] = lo;
        elen = 4;
    } else {
        element[0] = (uint8_t)(xid << 4 | 1), element[1] = hi, element[2] = lo;
        elen = 3;
    }
    if (end - last >= elen) { /* the block's padding (all zero after the last element) has room */
        memcpy(buf + last, element, elen);
        return len;
    }
    if (len + 4 > cap)
        return 0;
    memmove(buf + end + 4, buf + end, len - end);
    memset(buf + end, 0, 4);
    size_t words = (end + 4 - start) / 4;
    if (words > 0xFFFF)
        return 0; /* (cannot happen below 256 KiB packets; the block's length field is 16 bits) */
    buf[hdr + 2] = (uint8_t)(words >> 8);
    buf[hdr + 3] = (uint8_t)words;
    memcpy(buf + last, element, elen);
    return len + 4;
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

static PyMethodDef methods[] = {
    {"transport_seq_stamp", py_stamp, METH_VARARGS,
     "transport_seq_stamp(data, xid, seq): the packet carrying transport sequence number seq, or None"},
    {NULL},
};

int bs_register_transport_seq(PyObject *m) { return PyModule_AddFunctions(m, methods); }
