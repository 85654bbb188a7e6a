/* sfu._native: the native data path (see docs/architecture.md, "Data paths").
 *
 * srtp.c           SRTP/SRTCP protect and unprotect on libcrypto (bs_srtp_*)
 * aes_gcm.c        AES-GCM and AES-CTR on AES-NI / PCLMULQDQ, which srtp.c prefers to EVP
 * srtp_session.c   SrtpSession: the same, as a Python object with pylibsrtp.Session's methods
 * forward.c        Egress (one transport's socket and keys) and DownTrack's per-packet rewrite
 * parse.c          RTP header, VP8 descriptor and header-extension parsers (twins of sfu/rtp.py)
 * reception.c      ReceptionCore: Reception's per-packet update (sequence, NACK window, jitter)
 * remb.c           RembEstimator: aiortc's receive-side bandwidth estimator, the same in C
 * media_socket.c   MediaSocket: a UDP socket read with recvmmsg, SRTP/SRTCP unprotected on arrival
 * ingress.c        IngressCore: the common case of Ingress.on_rtp (known media SSRC, next packet)
 * layer.c          LayerCore: Layer's rate accounting
 * packet_ring.c    PacketRing: a Layer's last packets as received, for every subscriber's NACKs
 * traffic.c        Traffic: the packet and byte counters
 * gso.c            UDP_SEGMENT for Egress flushes: which queued datagrams leave as one send
 * transport_seq.c  transport-wide sequence numbers stamped into what an Egress sends
 * transport_arrivals.c  TransportArrivals: when each transport-wide number from a publisher arrived
 * pacer.c          the token bucket an Egress paces a subscriber's video with (Pacer: the same, for tests)
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

int bs_register_srtp_session(PyObject *m);
int bs_register_forward(PyObject *m);
int bs_register_remb(PyObject *m);
int bs_register_parse(PyObject *m);
int bs_register_reception(PyObject *m);
int bs_register_media_socket(PyObject *m);
int bs_register_ingress(PyObject *m);
int bs_register_layer(PyObject *m);
int bs_register_traffic(PyObject *m);
int bs_register_packet_ring(PyObject *m);
int bs_register_gso(PyObject *m);
int bs_register_transport_seq(PyObject *m);
int bs_register_transport_arrivals(PyObject *m);
int bs_register_pacer(PyObject *m);

static struct PyModuleDef native_module = {
    PyModuleDef_HEAD_INIT, "sfu._native", "Basement's native data path: SRTP, rewrite and batched send.", -1, NULL,
};

PyMODINIT_FUNC PyInit__native(void) {
    PyObject *m = PyModule_Create(&native_module);
    if (m == NULL)
        return NULL;
    if (bs_register_srtp_session(m) < 0 || bs_register_forward(m) < 0 || bs_register_remb(m) < 0 ||
        bs_register_parse(m) < 0 || bs_register_reception(m) < 0 || bs_register_media_socket(m) < 0 ||
        bs_register_ingress(m) < 0 || bs_register_layer(m) < 0 || bs_register_traffic(m) < 0 ||
        bs_register_packet_ring(m) < 0 || bs_register_gso(m) < 0 ||
        bs_register_transport_seq(m) < 0 || bs_register_transport_arrivals(m) < 0 || bs_register_pacer(m) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
