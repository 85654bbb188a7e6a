/* SRTP (RFC 3711) and AES-GCM SRTP (RFC 7714) on OpenSSL libcrypto: the native data path's crypto.
 *
 * One bs_srtp holds the session keys of one direction of one DTLS-SRTP transport (derived once
 * from the master key and salt the DTLS exporter gives). Per-SSRC state (rollover counter, highest
 * sequence number, replay window, SRTCP index) lives in a bs_srtp_stream the caller owns: a
 * DownTrack keeps the streams of its SSRCs in its own struct, so the per-packet path does no
 * lookup. Everything works in place on the caller's buffer.
 */
#ifndef BS_SRTP_H
#define BS_SRTP_H

#include <stddef.h>
#include <stdint.h>

/* profile numbers as libsrtp / pylibsrtp (Policy.SRTP_PROFILE_*) number them */
#define BS_SRTP_AES128_CM_SHA1_80 1
#define BS_SRTP_AES128_CM_SHA1_32 2
#define BS_SRTP_AEAD_AES_128_GCM 7
#define BS_SRTP_AEAD_AES_256_GCM 8

#define BS_SRTP_MAX_RTP_TRAILER 16  /* bytes protect_rtp may append (auth tag) */
#define BS_SRTP_MAX_RTCP_TRAILER 20 /* bytes protect_rtcp may append (E+index, tag) */
#define BS_SRTP_REPLAY_WINDOW 1024  /* packets (as aiortc configures libsrtp) */

/* errors (negative returns) */
#define BS_SRTP_ERR_MALFORMED (-1) /* not a packet of the right shape (too short, bad header) */
#define BS_SRTP_ERR_AUTH (-2)      /* authentication failed */
#define BS_SRTP_ERR_REPLAY (-3)    /* replayed or too old (receive side) */
#define BS_SRTP_ERR_SPACE (-4)     /* the buffer's capacity cannot hold the trailer */
#define BS_SRTP_ERR_CRYPTO (-5)    /* OpenSSL refused (should never happen) */
#define BS_SRTP_ERR_EXPIRED (-6)   /* the SRTCP index space (2^31) is used up: rekey */

#define BS_SRTP_MAX_PACKET 65536 /* longest packet (bytes, trailer included) any call accepts */

typedef struct bs_srtp bs_srtp;

typedef struct bs_srtp_stream {
    /* RTP: rollover counter and highest sequence number seen (sent or received) */
    uint32_t roc;
    uint16_t s_l;
    uint8_t started;
    /* receive side: replay window over packet indexes, bit i = index (highest - i) seen */
    uint64_t highest;                                 /* highest 48-bit index accepted */
    uint64_t window[BS_SRTP_REPLAY_WINDOW / 64];
    /* RTCP: next SRTCP index to send / replay state of received ones */
    uint32_t rtcp_index;
    uint8_t rtcp_started;
    uint32_t rtcp_highest;
    uint64_t rtcp_window[BS_SRTP_REPLAY_WINDOW / 64];
} bs_srtp_stream;

/* key: master key followed by master salt (key_len + salt_len bytes: 16+14 for CM, 16+12 / 32+12 for
 * GCM). Returns NULL and writes a message to err on failure. */
bs_srtp *bs_srtp_new(int profile, const uint8_t *key, size_t len, char *err, size_t errlen);
void bs_srtp_free(bs_srtp *s);
int bs_srtp_profile(const bs_srtp *s);
void bs_srtp_stream_init(bs_srtp_stream *st);

/* In place. `len` bytes of packet in `buf`, whose capacity is `cap`. Return the new length, or a
 * negative BS_SRTP_ERR_*. protect_* never fails for want of space if cap >= len + MAX_*_TRAILER.
 * The receive side (unprotect) checks authentication before it updates the replay state. */
int bs_srtp_protect_rtp(bs_srtp *s, bs_srtp_stream *st, uint8_t *buf, size_t len, size_t cap);
int bs_srtp_unprotect_rtp(bs_srtp *s, bs_srtp_stream *st, uint8_t *buf, size_t len);
int bs_srtp_protect_rtcp(bs_srtp *s, bs_srtp_stream *st, uint8_t *buf, size_t len, size_t cap);
int bs_srtp_unprotect_rtcp(bs_srtp *s, bs_srtp_stream *st, uint8_t *buf, size_t len);

const char *bs_srtp_strerror(int err);

/* Which AES the sessions made from now on use: OpenSSL's EVP, or aes_gcm.c on AES-NI / PCLMULQDQ,
 * with or without its 256-bit (VAES / VPCLMULQDQ) path. The default is the best the CPU has; set
 * (a mode, or -1 for the best) returns the mode in force, which is never one the CPU lacks. The
 * output is the same in every mode. */
#define BS_SRTP_AES_EVP 0
#define BS_SRTP_AES_NI 1
#define BS_SRTP_AES_NI_WIDE 2
int bs_srtp_set_aes(int mode);
int bs_srtp_aes(void);

/* Bytes protect_rtp / protect_rtcp append for this profile (the auth tag; E+index and tag). */
int bs_srtp_rtp_overhead(const bs_srtp *s);
int bs_srtp_rtcp_overhead(const bs_srtp *s);

/* For test vectors (RFC 3711 B.2, RFC 7714 16-17, which give session keys): a bs_srtp keyed with
 * session keys directly, no key derivation. rtp_keys and rtcp_keys are each `len` bytes:
 * encryption key || salt || auth key (16+14+20 for CM, 16+12 / 32+12 for GCM). */
bs_srtp *bs_srtp_new_session_keys(int profile, const uint8_t *rtp_keys, const uint8_t *rtcp_keys, size_t len,
                                  char *err, size_t errlen);

/* The RFC 3711 4.3 key derivation (AES-CM PRF, key_derivation_rate 0): out_len bytes of the
 * keystream of AES-CM keyed with master_key (16 or 32 bytes) at IV ((label<<48) XOR master_salt)<<16,
 * the salt (at most 14 bytes) taken as padded on the right with zeros. Returns 0, or a BS_SRTP_ERR_*. */
int bs_srtp_kdf(const uint8_t *master_key, size_t key_len, const uint8_t *master_salt, size_t salt_len,
                uint8_t label, uint8_t *out, size_t out_len);

#ifdef Py_PYTHON_H
/* srtp_session.c: the bs_srtp inside a sfu._native.SrtpSession (borrowed: valid while `o` lives),
 * or NULL with TypeError set if `o` is not one. */
bs_srtp *bs_srtp_session_srtp(PyObject *o);
/* Whether `o` is a sfu._native.SrtpSession. */
int bs_is_srtp_session(PyObject *o);
/* SRTP (rtcp = 0) or SRTCP unprotected in place with the session `o` (checked with bs_is_srtp_session):
 * the plaintext's length, or -1 with SrtpError set (malformed, failed authentication, replayed,
 * too many SSRCs). The session's state changes only when it succeeds, as with .unprotect(). */
Py_ssize_t bs_srtp_session_unprotect_in_place(PyObject *o, uint8_t *buf, Py_ssize_t len, int rtcp);
#endif

#endif
