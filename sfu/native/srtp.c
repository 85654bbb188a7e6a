/* SRTP (RFC 3711) and AES-GCM SRTP (RFC 7714) on OpenSSL 3 libcrypto. See srtp.h for the API.
 *
 * Behaviour follows libsrtp 2 (what pylibsrtp, hence aiortc, runs), so that the output is bit-exact
 * with it and the two interoperate:
 *  - the first SRTCP index a stream sends is 1; the AES128_CM_SHA1_32 profile tags SRTCP with 80 bits;
 *  - RTP index estimation is libsrtp's (RFC 3711 Appendix A, except that while the highest index is
 *    at most 2^15 the guess is the sequence number itself with ROC 0, so the ROC never goes to -1);
 *  - the sender (allow_repeat_tx, as aiortc sets) may protect a sequence number again, with the index
 *    the estimation gives (a resend from before a wrap uses ROC-1), but refuses an index 1024 or more
 *    behind the highest sent (libsrtp's "index too old").
 * Received SRTCP is replay-checked over a 1024-index window (libsrtp keeps 128) and SRTCP with the
 * E bit clear (authenticated, not encrypted) is accepted, as libsrtp and RFC 7714 9.3 allow.
 *
 * Per packet there is no allocation and no lookup: the cipher contexts are keyed once in bs_srtp_new
 * and only get a new IV per packet. Where the CPU has AES-NI and PCLMULQDQ, AES-GCM and AES-CTR run
 * on aes_gcm.c instead of EVP, whose per-call parameter handling in OpenSSL 3 costs more than the
 * cipher (bs_srtp_set_aes switches it for sessions made afterwards, for tests and A/B runs); HMAC-SHA1 starts from the inner and outer SHA-1 states with the
 * padded key already absorbed (a struct copy). The low-level SHA1_* API is deprecated in OpenSSL 3
 * but is the fastest (about 10% faster than EVP_MD_CTX_copy_ex, which also allocates per call in
 * 3.0) and the only allocation-free choice; when OpenSSL is built without the deprecated API the
 * code falls back to a keyed EVP_MAC re-initialised per packet.
 */
#define OPENSSL_SUPPRESS_DEPRECATED 1
#include "srtp.h"
#include "aes_gcm.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/opensslconf.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(OPENSSL_NO_DEPRECATED_3_0) || defined(BS_SRTP_EVP_HMAC)
#define BS_EVP_HMAC 1
#else
#include <openssl/sha.h>
#endif

#define SEQ_MEDIAN 32768u
#define HMAC_KEY_LEN 20
#define CM_SALT_LEN 14
#define GCM_SALT_LEN 12
#define GCM_TAG_LEN 16
#define RTCP_HEADER 8
#define RTCP_E_BIT 0x80000000u
#define RTCP_MAX_INDEX 0x7fffffffu

/* ---- ciphers, fetched once --------------------------------------------------------------------- */

static EVP_CIPHER *g_ctr128, *g_ctr256, *g_gcm128, *g_gcm256;
#ifdef BS_EVP_HMAC
static EVP_MAC *g_hmac;
#endif
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void fetch_ciphers(void) {
    g_ctr128 = EVP_CIPHER_fetch(NULL, "AES-128-CTR", NULL);
    g_ctr256 = EVP_CIPHER_fetch(NULL, "AES-256-CTR", NULL);
    g_gcm128 = EVP_CIPHER_fetch(NULL, "AES-128-GCM", NULL);
    g_gcm256 = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
#ifdef BS_EVP_HMAC
    g_hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
#endif
}

static int ciphers_ready(void) {
    pthread_once(&g_once, fetch_ciphers);
    return g_ctr128 && g_ctr256 && g_gcm128 && g_gcm256
#ifdef BS_EVP_HMAC
           && g_hmac
#endif
        ;
}

/* ---- session state ----------------------------------------------------------------------------- */

/* Which AES the sessions made from now on use (BS_SRTP_AES_*); -1: not decided yet (the best). */
static int g_aes = -1;

static int aes_best(void) {
    return bs_aes_wide_available() ? BS_SRTP_AES_NI_WIDE : bs_aes_available() ? BS_SRTP_AES_NI : BS_SRTP_AES_EVP;
}

int bs_srtp_set_aes(int mode) {
    int best = aes_best();
    g_aes = mode < 0 || mode > best ? best : mode;
    return g_aes;
}

int bs_srtp_aes(void) {
    if (g_aes < 0)
        g_aes = aes_best();
    return g_aes;
}

typedef struct {
    bs_aes aes;          /* when fast: round keys and powers of H for aes_gcm.c */
    int fast;            /* AES on aes_gcm.c; enc and dec are then NULL */
    EVP_CIPHER_CTX *enc; /* keyed for encryption (CM: also decrypts, CTR is symmetric) */
    EVP_CIPHER_CTX *dec; /* GCM only: keyed for decryption */
    uint8_t salt[16];    /* session salt, CM_SALT_LEN or GCM_SALT_LEN bytes used, rest zero */
#ifdef BS_EVP_HMAC
    EVP_MAC_CTX *mac;
#else
    SHA_CTX hmac_inner; /* SHA-1 state after (key XOR ipad) */
    SHA_CTX hmac_outer; /* SHA-1 state after (key XOR opad) */
#endif
} keys;

struct bs_srtp {
    int profile;
    int gcm;
    unsigned rtp_tag;  /* bytes of RTP auth tag: 10, 4 or 16 */
    unsigned rtcp_tag; /* bytes of RTCP auth tag: 10 or 16 */
    keys rtp, rtcp;
};

typedef struct {
    int profile;
    const char *name;
    size_t key_len;  /* master key = session encryption key */
    size_t salt_len; /* master salt = session salt */
    size_t auth_len; /* session auth key (0: AEAD) */
    unsigned rtp_tag, rtcp_tag;
} profile_info;

static const profile_info PROFILES[] = {
    {BS_SRTP_AES128_CM_SHA1_80, "AES128_CM_SHA1_80", 16, CM_SALT_LEN, HMAC_KEY_LEN, 10, 10},
    {BS_SRTP_AES128_CM_SHA1_32, "AES128_CM_SHA1_32", 16, CM_SALT_LEN, HMAC_KEY_LEN, 4, 10},
    {BS_SRTP_AEAD_AES_128_GCM, "AEAD_AES_128_GCM", 16, GCM_SALT_LEN, 0, GCM_TAG_LEN, GCM_TAG_LEN},
    {BS_SRTP_AEAD_AES_256_GCM, "AEAD_AES_256_GCM", 32, GCM_SALT_LEN, 0, GCM_TAG_LEN, GCM_TAG_LEN},
};

static const profile_info *find_profile(int profile) {
    for (size_t i = 0; i < sizeof(PROFILES) / sizeof(PROFILES[0]); i++)
        if (PROFILES[i].profile == profile)
            return &PROFILES[i];
    return NULL;
}

static void set_err(char *err, size_t errlen, const char *msg) {
    if (err != NULL && errlen > 0) {
        strncpy(err, msg, errlen - 1);
        err[errlen - 1] = '\0';
    }
}

/* ---- byte helpers (no unaligned access, no signed shifts) --------------------------------------- */

static inline uint16_t ld16(const uint8_t *p) { return (uint16_t)(((unsigned)p[0] << 8) | p[1]); }
static inline uint32_t ld32(const uint8_t *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}
static inline void st32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* ---- key derivation ----------------------------------------------------------------------------- */

int bs_srtp_kdf(const uint8_t *master_key, size_t key_len, const uint8_t *master_salt, size_t salt_len,
                uint8_t label, uint8_t *out, size_t out_len) {
    if ((key_len != 16 && key_len != 32) || salt_len > CM_SALT_LEN || (out_len > 0 && out == NULL))
        return BS_SRTP_ERR_MALFORMED;
    if (!ciphers_ready())
        return BS_SRTP_ERR_CRYPTO;
    uint8_t iv[16] = {0};
    if (salt_len > 0)
        memcpy(iv, master_salt, salt_len);
    iv[7] ^= label; /* label << 48 within the 112-bit x; the last two bytes are the * 2^16 */
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int ok = ctx != NULL && EVP_EncryptInit_ex(ctx, key_len == 16 ? g_ctr128 : g_ctr256, NULL, master_key, iv);
    if (out_len > 0)
        memset(out, 0, out_len);
    for (size_t off = 0; ok && off < out_len;) {
        int n = out_len - off > (1u << 20) ? (1 << 20) : (int)(out_len - off), outl = 0;
        ok = EVP_EncryptUpdate(ctx, out + off, &outl, out + off, n) && outl == n;
        off += (size_t)n;
    }
    EVP_CIPHER_CTX_free(ctx);
    if (!ok) {
        ERR_clear_error();
        return BS_SRTP_ERR_CRYPTO;
    }
    return 0;
}

/* ---- construction ------------------------------------------------------------------------------ */

static void keys_free(keys *k) {
    EVP_CIPHER_CTX_free(k->enc);
    EVP_CIPHER_CTX_free(k->dec);
#ifdef BS_EVP_HMAC
    EVP_MAC_CTX_free(k->mac);
#endif
    OPENSSL_cleanse(k, sizeof(*k));
}

/* Key one direction's contexts from its session keys: enc (key_len) || salt (salt_len) || auth. */
static int keys_init(keys *k, const profile_info *pi, const uint8_t *sk) {
    const uint8_t *enc_key = sk, *salt = sk + pi->key_len, *auth = salt + pi->salt_len;
    memcpy(k->salt, salt, pi->salt_len);
    int mode = bs_srtp_aes();
    k->fast = mode != BS_SRTP_AES_EVP && bs_aes_init(&k->aes, enc_key, pi->key_len, mode == BS_SRTP_AES_NI_WIDE);
    if (k->fast && pi->auth_len == 0)
        return 1;
    if (!k->fast && (k->enc = EVP_CIPHER_CTX_new()) == NULL)
        return 0;
    if (pi->auth_len == 0) {
        EVP_CIPHER *c = pi->key_len == 16 ? g_gcm128 : g_gcm256;
        k->dec = EVP_CIPHER_CTX_new();
        return k->dec != NULL && EVP_EncryptInit_ex(k->enc, c, NULL, enc_key, NULL) &&
               EVP_DecryptInit_ex(k->dec, c, NULL, enc_key, NULL) &&
               EVP_CIPHER_CTX_get_iv_length(k->enc) == GCM_SALT_LEN;
    }
    if (!k->fast && !EVP_EncryptInit_ex(k->enc, g_ctr128, NULL, enc_key, NULL))
        return 0;
#ifdef BS_EVP_HMAC
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA1", 0),
                           OSSL_PARAM_construct_end()};
    k->mac = EVP_MAC_CTX_new(g_hmac);
    return k->mac != NULL && EVP_MAC_init(k->mac, auth, pi->auth_len, params);
#else
    uint8_t pad[64];
    memset(pad, 0x36, sizeof(pad));
    for (size_t i = 0; i < pi->auth_len; i++)
        pad[i] ^= auth[i];
    int ok = SHA1_Init(&k->hmac_inner) && SHA1_Update(&k->hmac_inner, pad, sizeof(pad));
    memset(pad, 0x5c, sizeof(pad));
    for (size_t i = 0; i < pi->auth_len; i++)
        pad[i] ^= auth[i];
    ok = ok && SHA1_Init(&k->hmac_outer) && SHA1_Update(&k->hmac_outer, pad, sizeof(pad));
    OPENSSL_cleanse(pad, sizeof(pad));
    return ok;
#endif
}

static bs_srtp *new_from_session_keys(const profile_info *pi, const uint8_t *rtp_keys, const uint8_t *rtcp_keys,
                                      char *err, size_t errlen) {
    if (!ciphers_ready()) {
        set_err(err, errlen, "OpenSSL has no AES-CTR / AES-GCM");
        return NULL;
    }
    bs_srtp *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        set_err(err, errlen, "out of memory");
        return NULL;
    }
    s->profile = pi->profile;
    s->gcm = pi->auth_len == 0;
    s->rtp_tag = pi->rtp_tag;
    s->rtcp_tag = pi->rtcp_tag;
    if (!keys_init(&s->rtp, pi, rtp_keys) || !keys_init(&s->rtcp, pi, rtcp_keys)) {
        ERR_clear_error();
        bs_srtp_free(s);
        set_err(err, errlen, "OpenSSL refused the keys");
        return NULL;
    }
    return s;
}

static const profile_info *check_profile(int profile, char *err, size_t errlen) {
    const profile_info *pi = find_profile(profile);
    if (pi == NULL)
        set_err(err, errlen,
                "unknown SRTP profile (supported: 1 AES128_CM_SHA1_80, 2 AES128_CM_SHA1_32, "
                "7 AEAD_AES_128_GCM, 8 AEAD_AES_256_GCM)");
    return pi;
}

bs_srtp *bs_srtp_new(int profile, const uint8_t *key, size_t len, char *err, size_t errlen) {
    const profile_info *pi = check_profile(profile, err, errlen);
    if (pi == NULL)
        return NULL;
    if (key == NULL || len != pi->key_len + pi->salt_len) {
        char msg[200];
        snprintf(msg, sizeof(msg), "%s needs a %zu-byte key (%zu-byte master key + %zu-byte master salt), got %zu",
                 pi->name, pi->key_len + pi->salt_len, pi->key_len, pi->salt_len, key == NULL ? (size_t)0 : len);
        set_err(err, errlen, msg);
        return NULL;
    }
    /* session keys of each direction: encryption key || salt || auth key, labels 0-2 and 3-5 */
    uint8_t sk[2][32 + CM_SALT_LEN + HMAC_KEY_LEN];
    const uint8_t *mkey = key, *msalt = key + pi->key_len;
    int rc = 0;
    for (int d = 0; d < 2 && rc == 0; d++) {
        uint8_t base = (uint8_t)(3 * d);
        rc = bs_srtp_kdf(mkey, pi->key_len, msalt, pi->salt_len, base, sk[d], pi->key_len);
        if (rc == 0)
            rc = bs_srtp_kdf(mkey, pi->key_len, msalt, pi->salt_len, (uint8_t)(base + 2), sk[d] + pi->key_len,
                             pi->salt_len);
        if (rc == 0 && pi->auth_len)
            rc = bs_srtp_kdf(mkey, pi->key_len, msalt, pi->salt_len, (uint8_t)(base + 1),
                             sk[d] + pi->key_len + pi->salt_len, pi->auth_len);
    }
    bs_srtp *s = NULL;
    if (rc != 0)
        set_err(err, errlen, "key derivation failed (OpenSSL)");
    else
        s = new_from_session_keys(pi, sk[0], sk[1], err, errlen);
    OPENSSL_cleanse(sk, sizeof(sk));
    return s;
}

bs_srtp *bs_srtp_new_session_keys(int profile, const uint8_t *rtp_keys, const uint8_t *rtcp_keys, size_t len,
                                  char *err, size_t errlen) {
    const profile_info *pi = check_profile(profile, err, errlen);
    if (pi == NULL)
        return NULL;
    size_t want = pi->key_len + pi->salt_len + pi->auth_len;
    if (rtp_keys == NULL || rtcp_keys == NULL || len != want) {
        char msg[200];
        snprintf(msg, sizeof(msg), "%s session keys are %zu bytes (%zu key + %zu salt + %zu auth key), got %zu",
                 pi->name, want, pi->key_len, pi->salt_len, pi->auth_len, len);
        set_err(err, errlen, msg);
        return NULL;
    }
    return new_from_session_keys(pi, rtp_keys, rtcp_keys, err, errlen);
}

void bs_srtp_free(bs_srtp *s) {
    if (s == NULL)
        return;
    keys_free(&s->rtp);
    keys_free(&s->rtcp);
    free(s);
}

int bs_srtp_profile(const bs_srtp *s) { return s->profile; }
int bs_srtp_rtp_overhead(const bs_srtp *s) { return (int)s->rtp_tag; }
int bs_srtp_rtcp_overhead(const bs_srtp *s) { return (int)(4 + s->rtcp_tag); }

void bs_srtp_stream_init(bs_srtp_stream *st) {
    memset(st, 0, sizeof(*st));
    st->rtcp_index = 1; /* libsrtp's first SRTCP index */
}

const char *bs_srtp_strerror(int err) {
    switch (err) {
    case 0:
        return "success";
    case BS_SRTP_ERR_MALFORMED:
        return "malformed packet (too short or too long, not version 2, or RTP header longer than the packet)";
    case BS_SRTP_ERR_AUTH:
        return "SRTP authentication failed";
    case BS_SRTP_ERR_REPLAY:
        return "replayed packet (or older than the replay window)";
    case BS_SRTP_ERR_SPACE:
        return "buffer too small for the SRTP trailer";
    case BS_SRTP_ERR_CRYPTO:
        return "OpenSSL cipher failure";
    case BS_SRTP_ERR_EXPIRED:
        return "SRTCP index space exhausted (rekey needed)";
    default:
        return "unknown SRTP error";
    }
}

/* ---- replay windows (bit i = index highest - i seen) ------------------------------------------- */

#define WORDS (BS_SRTP_REPLAY_WINDOW / 64)

static inline int window_get(const uint64_t *w, uint64_t i) { return (int)((w[i >> 6] >> (i & 63)) & 1u); }
static inline void window_set(uint64_t *w, uint64_t i) { w[i >> 6] |= (uint64_t)1 << (i & 63); }

/* The highest index moves up by `by`: every seen bit i moves to i + by. */
static void window_advance(uint64_t *w, uint64_t by) {
    if (by >= BS_SRTP_REPLAY_WINDOW) {
        memset(w, 0, WORDS * sizeof(uint64_t));
        return;
    }
    size_t ws = (size_t)(by >> 6);
    unsigned bs = (unsigned)(by & 63);
    for (size_t k = WORDS; k-- > 0;) {
        uint64_t v = 0;
        if (k >= ws) {
            v = w[k - ws] << bs;
            if (bs != 0 && k > ws)
                v |= w[k - ws - 1] >> (64 - bs);
        }
        w[k] = v;
    }
}

/* ---- RTP index estimation (libsrtp's srtp_rdbx_estimate_index / srtp_index_guess) -------------- */

/* The 48-bit index of `seq` from the stream's highest (roc, s_l); returns index - highest.
 * roc and s_l are what index estimation reads (a caller may set them, e.g. to resume a stream);
 * `highest` mirrors them as one 48-bit number and `started` says a packet went through. */
static inline int64_t estimate_index(const bs_srtp_stream *st, uint16_t seq, uint64_t *index) {
    uint64_t local = ((uint64_t)st->roc << 16) | st->s_l;
    if (local <= SEQ_MEDIAN) {
        *index = seq;
        return (int64_t)seq - (int64_t)local;
    }
    uint32_t roc = st->roc, guess_roc = roc;
    int32_t diff = (int32_t)seq - (int32_t)st->s_l;
    if (st->s_l < SEQ_MEDIAN) {
        if (diff > (int32_t)SEQ_MEDIAN) {
            guess_roc = roc - 1;
            diff -= 65536;
        }
    } else if ((int32_t)st->s_l - (int32_t)SEQ_MEDIAN > (int32_t)seq) {
        guess_roc = roc + 1;
        diff += 65536;
    }
    *index = ((uint64_t)guess_roc << 16) | seq;
    return diff;
}

static inline void rtp_accept(bs_srtp_stream *st, uint64_t index, int64_t delta, int track_window) {
    if (delta > 0) {
        if (track_window) {
            window_advance(st->window, (uint64_t)delta);
            window_set(st->window, 0);
        }
        st->roc = (uint32_t)(index >> 16);
        st->s_l = (uint16_t)index;
        st->highest = index & 0xffffffffffffull;
    } else if (track_window) {
        window_set(st->window, (uint64_t)(-delta));
    }
    st->started = 1;
}

/* ---- RTP header -------------------------------------------------------------------------------- */

/* Length of the RTP header (fixed part, CSRCs, extension) if it fits in len bytes, else -1. */
static inline long rtp_header_len(const uint8_t *p, size_t len) {
    if (len < 12 || (p[0] >> 6) != 2)
        return -1;
    size_t h = 12 + 4 * (size_t)(p[0] & 0x0f);
    if (p[0] & 0x10) {
        if (len < h + 4)
            return -1;
        h += 4 + 4 * (size_t)ld16(p + h + 2);
    }
    return h <= len ? (long)h : -1;
}

/* ---- primitives -------------------------------------------------------------------------------- */

/* AES-CM IV (RFC 3711 4.1.1): (salt * 2^16) XOR (SSRC * 2^64) XOR (index * 2^16). */
static inline void cm_iv(uint8_t iv[16], const keys *k, uint32_t ssrc, uint64_t index) {
    memcpy(iv, k->salt, 16); /* bytes 14, 15 are zero */
    iv[4] ^= (uint8_t)(ssrc >> 24);
    iv[5] ^= (uint8_t)(ssrc >> 16);
    iv[6] ^= (uint8_t)(ssrc >> 8);
    iv[7] ^= (uint8_t)ssrc;
    for (int i = 0; i < 6; i++)
        iv[13 - i] ^= (uint8_t)(index >> (8 * i));
}

/* AES-GCM IV (RFC 7714 8.1, 9.1): salt XOR (00 00 || SSRC || 48-bit value). */
static inline void gcm_iv(uint8_t iv[12], const keys *k, uint32_t ssrc, uint64_t v48) {
    memcpy(iv, k->salt, 12);
    iv[2] ^= (uint8_t)(ssrc >> 24);
    iv[3] ^= (uint8_t)(ssrc >> 16);
    iv[4] ^= (uint8_t)(ssrc >> 8);
    iv[5] ^= (uint8_t)ssrc;
    for (int i = 0; i < 6; i++)
        iv[11 - i] ^= (uint8_t)(v48 >> (8 * i));
}

static inline int ctr_xor(const keys *k, const uint8_t iv[16], uint8_t *p, size_t n) {
    int outl = 0;
    if (k->fast) {
        bs_ctr_xor(&k->aes, iv, p, n);
        return 1;
    }
    if (!EVP_EncryptInit_ex(k->enc, NULL, NULL, NULL, iv))
        return 0;
    return n == 0 || (EVP_EncryptUpdate(k->enc, p, &outl, p, (int)n) && (size_t)outl == n);
}

/* HMAC-SHA1 over a || b (b may be empty) into mac[20]. */
static inline int hmac_sha1(const keys *k, const uint8_t *a, size_t alen, const uint8_t *b, size_t blen,
                            uint8_t mac[20]) {
#ifdef BS_EVP_HMAC
    size_t outl = 0;
    return EVP_MAC_init(k->mac, NULL, 0, NULL) && EVP_MAC_update(k->mac, a, alen) &&
           (blen == 0 || EVP_MAC_update(k->mac, b, blen)) && EVP_MAC_final(k->mac, mac, &outl, 20) && outl == 20;
#else
    SHA_CTX c = k->hmac_inner;
    SHA1_Update(&c, a, alen);
    if (blen)
        SHA1_Update(&c, b, blen);
    SHA1_Final(mac, &c);
    c = k->hmac_outer;
    SHA1_Update(&c, mac, 20);
    SHA1_Final(mac, &c);
    return 1;
#endif
}

/* GCM seal in place: aad1 || aad2 authenticated, p[0..n) encrypted, tag written to tag[16]. */
static inline int gcm_seal(const keys *k, const uint8_t iv[12], const uint8_t *aad1, size_t aad1_len,
                           const uint8_t *aad2, size_t aad2_len, uint8_t *p, size_t n, uint8_t tag[16]) {
    if (k->fast) {
        bs_gcm_seal(&k->aes, iv, aad1, aad1_len, aad2, aad2_len, p, n, tag);
        return 1;
    }
    EVP_CIPHER_CTX *c = k->enc;
    int outl = 0;
    uint8_t fin[16];
    if (!EVP_EncryptInit_ex(c, NULL, NULL, NULL, iv) || !EVP_EncryptUpdate(c, NULL, &outl, aad1, (int)aad1_len) ||
        (aad2_len && !EVP_EncryptUpdate(c, NULL, &outl, aad2, (int)aad2_len)) ||
        (n && (!EVP_EncryptUpdate(c, p, &outl, p, (int)n) || (size_t)outl != n)) ||
        !EVP_EncryptFinal_ex(c, fin, &outl))
        return 0;
    OSSL_PARAM params[2] = {OSSL_PARAM_construct_octet_string(OSSL_CIPHER_PARAM_AEAD_TAG, tag, GCM_TAG_LEN),
                            OSSL_PARAM_construct_end()};
    return EVP_CIPHER_CTX_get_params(c, params);
}

/* GCM open in place: returns 1 if the tag verifies (p then holds the plaintext), 0 if not. */
static inline int gcm_open(const keys *k, const uint8_t iv[12], const uint8_t *aad1, size_t aad1_len,
                           const uint8_t *aad2, size_t aad2_len, uint8_t *p, size_t n, const uint8_t tag[16]) {
    if (k->fast)
        return bs_gcm_open(&k->aes, iv, aad1, aad1_len, aad2, aad2_len, p, n, tag);
    EVP_CIPHER_CTX *c = k->dec;
    int outl = 0;
    uint8_t fin[16], t[16];
    memcpy(t, tag, sizeof(t));
    OSSL_PARAM params[2] = {OSSL_PARAM_construct_octet_string(OSSL_CIPHER_PARAM_AEAD_TAG, t, GCM_TAG_LEN),
                            OSSL_PARAM_construct_end()};
    return EVP_DecryptInit_ex(c, NULL, NULL, NULL, iv) && EVP_DecryptUpdate(c, NULL, &outl, aad1, (int)aad1_len) &&
           (aad2_len == 0 || EVP_DecryptUpdate(c, NULL, &outl, aad2, (int)aad2_len)) &&
           (n == 0 || (EVP_DecryptUpdate(c, p, &outl, p, (int)n) && (size_t)outl == n)) &&
           EVP_CIPHER_CTX_set_params(c, params) && EVP_DecryptFinal_ex(c, fin, &outl) > 0;
}

static inline int crypto_fail(void) {
    ERR_clear_error();
    return BS_SRTP_ERR_CRYPTO;
}

/* ---- SRTP -------------------------------------------------------------------------------------- */

int bs_srtp_protect_rtp(bs_srtp *s, bs_srtp_stream *st, uint8_t *buf, size_t len, size_t cap) {
    if (len + s->rtp_tag > BS_SRTP_MAX_PACKET)
        return BS_SRTP_ERR_MALFORMED;
    long h = rtp_header_len(buf, len);
    if (h < 0)
        return BS_SRTP_ERR_MALFORMED;
    if (cap < len + s->rtp_tag)
        return BS_SRTP_ERR_SPACE;
    uint64_t index;
    int64_t delta = estimate_index(st, ld16(buf + 2), &index);
    if (delta <= -(int64_t)BS_SRTP_REPLAY_WINDOW)
        return BS_SRTP_ERR_REPLAY; /* libsrtp: "index too old", even with allow_repeat_tx */
    uint32_t ssrc = ld32(buf + 8);
    uint8_t *payload = buf + h;
    size_t n = len - (size_t)h;
    if (s->gcm) {
        uint8_t iv[12];
        gcm_iv(iv, &s->rtp, ssrc, index);
        if (!gcm_seal(&s->rtp, iv, buf, (size_t)h, NULL, 0, payload, n, buf + len))
            return crypto_fail();
    } else {
        uint8_t iv[16], roc[4], mac[20];
        cm_iv(iv, &s->rtp, ssrc, index);
        if (!ctr_xor(&s->rtp, iv, payload, n))
            return crypto_fail();
        st32(roc, (uint32_t)(index >> 16));
        if (!hmac_sha1(&s->rtp, buf, len, roc, 4, mac))
            return crypto_fail();
        memcpy(buf + len, mac, s->rtp_tag);
    }
    rtp_accept(st, index, delta, 0);
    return (int)(len + s->rtp_tag);
}

int bs_srtp_unprotect_rtp(bs_srtp *s, bs_srtp_stream *st, uint8_t *buf, size_t len) {
    if (len > BS_SRTP_MAX_PACKET || len < 12 + s->rtp_tag)
        return BS_SRTP_ERR_MALFORMED;
    size_t body = len - s->rtp_tag; /* header + encrypted payload */
    long h = rtp_header_len(buf, body);
    if (h < 0)
        return BS_SRTP_ERR_MALFORMED;
    uint64_t index;
    int64_t delta = estimate_index(st, ld16(buf + 2), &index);
    if (delta <= 0 && (-delta >= BS_SRTP_REPLAY_WINDOW || window_get(st->window, (uint64_t)(-delta))))
        return BS_SRTP_ERR_REPLAY;
    uint32_t ssrc = ld32(buf + 8);
    uint8_t *payload = buf + h;
    size_t n = body - (size_t)h;
    if (s->gcm) {
        uint8_t iv[12];
        gcm_iv(iv, &s->rtp, ssrc, index);
        if (!gcm_open(&s->rtp, iv, buf, (size_t)h, NULL, 0, payload, n, buf + body)) {
            ERR_clear_error();
            return BS_SRTP_ERR_AUTH;
        }
    } else {
        uint8_t iv[16], roc[4], mac[20];
        st32(roc, (uint32_t)(index >> 16));
        if (!hmac_sha1(&s->rtp, buf, body, roc, 4, mac))
            return crypto_fail();
        if (CRYPTO_memcmp(mac, buf + body, s->rtp_tag) != 0)
            return BS_SRTP_ERR_AUTH;
        cm_iv(iv, &s->rtp, ssrc, index);
        if (!ctr_xor(&s->rtp, iv, payload, n))
            return crypto_fail();
    }
    rtp_accept(st, index, delta, 1);
    return (int)body;
}

/* ---- SRTCP ------------------------------------------------------------------------------------- */

int bs_srtp_protect_rtcp(bs_srtp *s, bs_srtp_stream *st, uint8_t *buf, size_t len, size_t cap) {
    size_t over = 4 + s->rtcp_tag;
    if (len + over > BS_SRTP_MAX_PACKET || len < RTCP_HEADER || (buf[0] >> 6) != 2)
        return BS_SRTP_ERR_MALFORMED;
    if (cap < len + over)
        return BS_SRTP_ERR_SPACE;
    uint32_t index = st->rtcp_index;
    if (index > RTCP_MAX_INDEX)
        return BS_SRTP_ERR_EXPIRED;
    uint32_t ssrc = ld32(buf + 4);
    uint8_t *payload = buf + RTCP_HEADER;
    size_t n = len - RTCP_HEADER;
    uint8_t trailer[4];
    st32(trailer, RTCP_E_BIT | index);
    if (s->gcm) {
        /* RFC 7714 9: header || ciphertext || tag || E+index; AAD = header || E+index */
        uint8_t iv[12];
        gcm_iv(iv, &s->rtcp, ssrc, index);
        if (!gcm_seal(&s->rtcp, iv, buf, RTCP_HEADER, trailer, 4, payload, n, buf + len))
            return crypto_fail();
        memcpy(buf + len + GCM_TAG_LEN, trailer, 4);
    } else {
        /* RFC 3711 3.4: header || ciphertext || E+index || tag over all that precedes it */
        uint8_t iv[16], mac[20];
        cm_iv(iv, &s->rtcp, ssrc, index);
        if (!ctr_xor(&s->rtcp, iv, payload, n))
            return crypto_fail();
        memcpy(buf + len, trailer, 4);
        if (!hmac_sha1(&s->rtcp, buf, len + 4, NULL, 0, mac))
            return crypto_fail();
        memcpy(buf + len + 4, mac, s->rtcp_tag);
    }
    st->rtcp_index = index + 1;
    return (int)(len + over);
}

int bs_srtp_unprotect_rtcp(bs_srtp *s, bs_srtp_stream *st, uint8_t *buf, size_t len) {
    size_t over = 4 + s->rtcp_tag;
    if (len > BS_SRTP_MAX_PACKET || len < RTCP_HEADER + over || (buf[0] >> 6) != 2)
        return BS_SRTP_ERR_MALFORMED;
    size_t body = len - over; /* header + (encrypted) payload */
    const uint8_t *trailer = s->gcm ? buf + len - 4 : buf + body;
    uint32_t e_index = ld32(trailer), index = e_index & RTCP_MAX_INDEX;
    int encrypted = (e_index & RTCP_E_BIT) != 0;
    uint32_t d = 0;
    if (st->rtcp_started && index <= st->rtcp_highest) {
        d = st->rtcp_highest - index;
        if (d >= BS_SRTP_REPLAY_WINDOW || window_get(st->rtcp_window, d))
            return BS_SRTP_ERR_REPLAY;
    }
    uint32_t ssrc = ld32(buf + 4);
    if (s->gcm) {
        uint8_t iv[12];
        gcm_iv(iv, &s->rtcp, ssrc, index);
        int ok = encrypted ? gcm_open(&s->rtcp, iv, buf, RTCP_HEADER, trailer, 4, buf + RTCP_HEADER,
                                      body - RTCP_HEADER, buf + body)
                           /* RFC 7714 9.3, E = 0: all of the packet and E+index are AAD */
                           : gcm_open(&s->rtcp, iv, buf, body, trailer, 4, NULL, 0, buf + body);
        if (!ok) {
            ERR_clear_error();
            return BS_SRTP_ERR_AUTH;
        }
    } else {
        uint8_t iv[16], mac[20];
        if (!hmac_sha1(&s->rtcp, buf, body + 4, NULL, 0, mac))
            return crypto_fail();
        if (CRYPTO_memcmp(mac, buf + body + 4, s->rtcp_tag) != 0)
            return BS_SRTP_ERR_AUTH;
        if (encrypted) {
            cm_iv(iv, &s->rtcp, ssrc, index);
            if (!ctr_xor(&s->rtcp, iv, buf + RTCP_HEADER, body - RTCP_HEADER))
                return crypto_fail();
        }
    }
    if (!st->rtcp_started) {
        memset(st->rtcp_window, 0, sizeof(st->rtcp_window));
        st->rtcp_highest = index;
        st->rtcp_started = 1;
        window_set(st->rtcp_window, 0);
    } else if (index > st->rtcp_highest) {
        window_advance(st->rtcp_window, index - st->rtcp_highest);
        window_set(st->rtcp_window, 0);
        st->rtcp_highest = index;
    } else {
        window_set(st->rtcp_window, d);
    }
    return (int)body;
}
