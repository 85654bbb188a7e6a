/* AES-GCM and AES-CTR on AES-NI and PCLMULQDQ. See aes_gcm.h for why and the API.
 *
 * The arithmetic is the textbook one (FIPS 197 key expansion with AESKEYGENASSIST; GHASH as in
 * Gueron and Kounavis, "Intel Carry-Less Multiplication Instruction and its Usage for Computing the
 * GCM Mode": byte-reflected operands, a 256-bit carry-less product, a one-bit left shift and the
 * reduction modulo x^128 + x^7 + x^2 + x + 1). Two things make it fast enough to matter:
 *  - CTR encrypts eight blocks at a time, so the AESENC latency of one block hides behind the
 *    others (one block at a time would cost ≈ 1 µs for 1,000 bytes);
 *  - GHASH multiplies eight blocks by H^8, ..., H (Karatsuba: three multiplies each) and reduces
 *    once: the shift and the reduction are linear, so the sum of the unreduced products reduces to
 *    the sum of the products.
 * The functions carry a target attribute, so the rest of the module builds without -maes and a CPU
 * without the instructions never runs them (bs_aes_available gates every use; bs_aes_init itself
 * has no target attribute, so nothing of it can run before its check). The 256-bit path needs a
 * compiler with the VAES / VPCLMULQDQ intrinsics (GCC 10, clang 10); an older one builds without it.
 * Key material on the stack (the key schedule, a keystream block) is wiped through a compiler
 * barrier, so the wipe cannot be dropped as a dead store.
 */
#include "aes_gcm.h"

#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#include <immintrin.h>

#if (defined(__clang__) && __clang_major__ >= 10) || (!defined(__clang__) && __GNUC__ >= 10)
#define BS_AES_WIDE 1
#endif
#ifndef bit_VAES
#define bit_VAES (1 << 9)
#endif
#ifndef bit_VPCLMULQDQ
#define bit_VPCLMULQDQ (1 << 10)
#endif

/* memset that survives dead-store elimination: the barrier says the memory may be read */
static inline void wipe(void *p, size_t n) {
    memset(p, 0, n);
    __asm__ volatile("" : : "r"(p) : "memory");
}

#define BS_AES_TARGET __attribute__((target("aes,pclmul,ssse3,sse4.1")))
#define BS_WIDE_TARGET __attribute__((target("aes,pclmul,ssse3,sse4.1,avx,avx2,vaes,vpclmulqdq")))

int bs_aes_available(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d))
        return 0;
    return (c & bit_AES) && (c & bit_PCLMUL) && (c & bit_SSSE3) && (c & bit_SSE4_1);
}

int bs_aes_wide_available(void) {
#ifndef BS_AES_WIDE
    return 0;
#endif
    unsigned a, b, c, d, xcr0_lo, xcr0_hi;
    if (!bs_aes_available() || !__get_cpuid(1, &a, &b, &c, &d) || !(c & bit_OSXSAVE) || !(c & bit_AVX))
        return 0;
    __asm__ volatile("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
    if ((xcr0_lo & 6) != 6) /* the OS saves the SSE and AVX register state */
        return 0;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d))
        return 0;
    return (b & bit_AVX2) && (c & bit_VAES) && (c & bit_VPCLMULQDQ);
}

#define LD(p) _mm_loadu_si128((const __m128i *)(const void *)(p))
#define ST(p, v) _mm_storeu_si128((__m128i *)(void *)(p), (v))

BS_AES_TARGET static inline __m128i bswap128(__m128i x) {
    return _mm_shuffle_epi8(x, _mm_set_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
}

/* ---- key expansion ----------------------------------------------------------------------------- */

BS_AES_TARGET static inline __m128i xorshift(__m128i k) {
    k = _mm_xor_si128(k, _mm_slli_si128(k, 4));
    k = _mm_xor_si128(k, _mm_slli_si128(k, 4));
    return _mm_xor_si128(k, _mm_slli_si128(k, 4));
}

/* AESKEYGENASSIST takes its round constant as an immediate, hence macros. */
#define EXP128(i, rcon)                                                                                  \
    rk[i] = _mm_xor_si128(xorshift(rk[(i) - 1]),                                                       \
                          _mm_shuffle_epi32(_mm_aeskeygenassist_si128(rk[(i) - 1], rcon), 0xff))
#define EXP256A(i, rcon)                                                                                 \
    rk[i] = _mm_xor_si128(xorshift(rk[(i) - 2]),                                                       \
                          _mm_shuffle_epi32(_mm_aeskeygenassist_si128(rk[(i) - 1], rcon), 0xff))
#define EXP256B(i)                                                                                       \
    rk[i] = _mm_xor_si128(xorshift(rk[(i) - 2]),                                                       \
                          _mm_shuffle_epi32(_mm_aeskeygenassist_si128(rk[(i) - 1], 0x00), 0xaa))

BS_AES_TARGET static void expand(__m128i rk[15], const uint8_t *key, size_t key_len) {
    rk[0] = LD(key);
    if (key_len == 16) {
        EXP128(1, 0x01); EXP128(2, 0x02); EXP128(3, 0x04); EXP128(4, 0x08); EXP128(5, 0x10);
        EXP128(6, 0x20); EXP128(7, 0x40); EXP128(8, 0x80); EXP128(9, 0x1b); EXP128(10, 0x36);
    } else {
        rk[1] = LD(key + 16);
        EXP256A(2, 0x01); EXP256B(3); EXP256A(4, 0x02); EXP256B(5); EXP256A(6, 0x04); EXP256B(7);
        EXP256A(8, 0x08); EXP256B(9); EXP256A(10, 0x10); EXP256B(11); EXP256A(12, 0x20); EXP256B(13);
        EXP256A(14, 0x40);
    }
}

BS_AES_TARGET static inline __m128i encrypt1(const bs_aes *k, __m128i b) {
    b = _mm_xor_si128(b, LD(k->rk[0]));
    for (int r = 1; r < k->rounds; r++)
        b = _mm_aesenc_si128(b, LD(k->rk[r]));
    return _mm_aesenclast_si128(b, LD(k->rk[k->rounds]));
}

/* ---- GHASH ------------------------------------------------------------------------------------- */

/* Accumulate the unreduced product a·b into lo (bits 0-127), mid (the cross terms) and hi. */
BS_AES_TARGET static inline void clmul_acc(__m128i a, __m128i b, __m128i *lo, __m128i *mid, __m128i *hi) {
    *lo = _mm_xor_si128(*lo, _mm_clmulepi64_si128(a, b, 0x00));
    *hi = _mm_xor_si128(*hi, _mm_clmulepi64_si128(a, b, 0x11));
    *mid = _mm_xor_si128(*mid, _mm_xor_si128(_mm_clmulepi64_si128(a, b, 0x10), _mm_clmulepi64_si128(a, b, 0x01)));
}

/* The 256-bit sum of products, shifted left one bit (the operands are bit-reflected) and reduced. */
BS_AES_TARGET static inline __m128i reduce(__m128i lo, __m128i mid, __m128i hi) {
    __m128i t3 = _mm_xor_si128(lo, _mm_slli_si128(mid, 8));
    __m128i t6 = _mm_xor_si128(hi, _mm_srli_si128(mid, 8));
    __m128i t7 = _mm_srli_epi32(t3, 31), t8 = _mm_srli_epi32(t6, 31), t9;
    t3 = _mm_slli_epi32(t3, 1);
    t6 = _mm_slli_epi32(t6, 1);
    t9 = _mm_srli_si128(t7, 12);
    t8 = _mm_slli_si128(t8, 4);
    t7 = _mm_slli_si128(t7, 4);
    t3 = _mm_or_si128(t3, t7);
    t6 = _mm_or_si128(_mm_or_si128(t6, t8), t9);
    t7 = _mm_xor_si128(_mm_xor_si128(_mm_slli_epi32(t3, 31), _mm_slli_epi32(t3, 30)), _mm_slli_epi32(t3, 25));
    t8 = _mm_srli_si128(t7, 4);
    t7 = _mm_slli_si128(t7, 12);
    t3 = _mm_xor_si128(t3, t7);
    __m128i t2 = _mm_xor_si128(_mm_xor_si128(_mm_srli_epi32(t3, 1), _mm_srli_epi32(t3, 2)), _mm_srli_epi32(t3, 7));
    t2 = _mm_xor_si128(t2, t8);
    t3 = _mm_xor_si128(t3, t2);
    return _mm_xor_si128(t6, t3);
}

BS_AES_TARGET static inline __m128i gfmul(__m128i a, __m128i b) {
    __m128i lo = _mm_setzero_si128(), mid = lo, hi = lo;
    clmul_acc(a, b, &lo, &mid, &hi);
    return reduce(lo, mid, hi);
}

/* Karatsuba: a·h with three multiplies, the middle one of (a.hi ^ a.lo) by (h.hi ^ h.lo); the
 * accumulated mid then still holds lo and hi, which kara_reduce takes out once per group. */
BS_AES_TARGET static inline void kara_acc(__m128i a, const bs_aes *k, int i, __m128i *lo, __m128i *mid, __m128i *hi) {
    const __m128i h = LD(k->h[i]), hf = LD(k->hf[i]);
    __m128i l = _mm_clmulepi64_si128(a, h, 0x00), u = _mm_clmulepi64_si128(a, h, 0x11);
    __m128i af = _mm_xor_si128(a, _mm_shuffle_epi32(a, 0x4e));
    *lo = _mm_xor_si128(*lo, l);
    *hi = _mm_xor_si128(*hi, u);
    *mid = _mm_xor_si128(*mid, _mm_clmulepi64_si128(af, hf, 0x00));
}

BS_AES_TARGET static inline __m128i kara_reduce(__m128i lo, __m128i mid, __m128i hi) {
    return reduce(lo, _mm_xor_si128(mid, _mm_xor_si128(lo, hi)), hi);
}

/* x (reflected) after absorbing nblocks whole blocks of p: eight blocks per reduction while they
 * last ((x ^ b0)·H^8 + b1·H^7 + ... + b7·H), then four, then one at a time. */
static __m128i ghash_wide(const bs_aes *k, __m128i x, const uint8_t *p, size_t nblocks);

BS_AES_TARGET static __m128i ghash_blocks(const bs_aes *k, __m128i x, const uint8_t *p, size_t nblocks) {
    if (k->wide && nblocks >= 8) {
        x = ghash_wide(k, x, p, nblocks);
        p += nblocks / 8 * 128;
        nblocks %= 8;
    }
    for (; nblocks >= 8; nblocks -= 8, p += 128) {
        __m128i lo = _mm_setzero_si128(), mid = lo, hi = lo;
        kara_acc(_mm_xor_si128(x, bswap128(LD(p))), k, 7, &lo, &mid, &hi);
#pragma GCC unroll 7
        for (int i = 1; i < 8; i++)
            kara_acc(bswap128(LD(p + 16 * i)), k, 7 - i, &lo, &mid, &hi);
        x = kara_reduce(lo, mid, hi);
    }
    if (nblocks >= 4) {
        __m128i lo = _mm_setzero_si128(), mid = lo, hi = lo;
        kara_acc(_mm_xor_si128(x, bswap128(LD(p))), k, 3, &lo, &mid, &hi);
        kara_acc(bswap128(LD(p + 16)), k, 2, &lo, &mid, &hi);
        kara_acc(bswap128(LD(p + 32)), k, 1, &lo, &mid, &hi);
        kara_acc(bswap128(LD(p + 48)), k, 0, &lo, &mid, &hi);
        x = kara_reduce(lo, mid, hi);
        nblocks -= 4;
        p += 64;
    }
    for (; nblocks > 0; nblocks--, p += 16)
        x = gfmul(_mm_xor_si128(x, bswap128(LD(p))), LD(k->h[0]));
    return x;
}

/* ---- the 256-bit path (VAES, VPCLMULQDQ): two blocks per instruction --------------------------- */

#ifdef BS_AES_WIDE

#define LD256(p) _mm256_loadu_si256((const __m256i *)(const void *)(p))
#define ST256(p, v) _mm256_storeu_si256((__m256i *)(void *)(p), (v))

BS_WIDE_TARGET static inline __m256i bswap256(__m256i x) {
    const __m128i m = _mm_set_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    return _mm256_shuffle_epi8(x, _mm256_broadcastsi128_si256(m)); /* (each 128-bit lane on its own) */
}

/* x after absorbing the first nblocks / 8 * 8 blocks of p, eight per reduction: the 256-bit
 * register j holds blocks 2j and 2j + 1, multiplied by H^(8-2j) and H^(7-2j). */
BS_WIDE_TARGET static __m128i ghash_wide(const bs_aes *k, __m128i x, const uint8_t *p, size_t nblocks) {
    __m256i h[4], hf[4];
    for (int j = 0; j < 4; j++) {
        h[j] = _mm256_set_m128i(LD(k->h[6 - 2 * j]), LD(k->h[7 - 2 * j]));
        hf[j] = _mm256_set_m128i(LD(k->hf[6 - 2 * j]), LD(k->hf[7 - 2 * j]));
    }
    for (; nblocks >= 8; nblocks -= 8, p += 128) {
        __m256i lo = _mm256_setzero_si256(), mid = lo, hi = lo;
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++) {
            __m256i a = bswap256(LD256(p + 32 * j));
            if (j == 0)
                a = _mm256_xor_si256(a, _mm256_zextsi128_si256(x));
            __m256i af = _mm256_xor_si256(a, _mm256_shuffle_epi32(a, 0x4e));
            lo = _mm256_xor_si256(lo, _mm256_clmulepi64_epi128(a, h[j], 0x00));
            hi = _mm256_xor_si256(hi, _mm256_clmulepi64_epi128(a, h[j], 0x11));
            mid = _mm256_xor_si256(mid, _mm256_clmulepi64_epi128(af, hf[j], 0x00));
        }
        x = kara_reduce(_mm_xor_si128(_mm256_castsi256_si128(lo), _mm256_extracti128_si256(lo, 1)),
                        _mm_xor_si128(_mm256_castsi256_si128(mid), _mm256_extracti128_si256(mid, 1)),
                        _mm_xor_si128(_mm256_castsi256_si128(hi), _mm256_extracti128_si256(hi, 1)));
    }
    return x;
}

/* XOR 32·m bytes of p with the keystream of the m registers' counter pairs from *c on (m ≤ 8, a
 * constant where it is inlined, so the loops unroll and b stays in registers). */
__attribute__((always_inline)) BS_WIDE_TARGET static inline void ctr_wide_step(const bs_aes *k, __m256i *c,
                                                                             uint8_t *p, const int m) {
    const int R = k->rounds;
    __m256i b[8];
    const __m256i k0 = _mm256_broadcastsi128_si256(LD(k->rk[0]));
#pragma GCC unroll 8
    for (int i = 0; i < m; i++)
        b[i] = _mm256_xor_si256(bswap256(_mm256_add_epi32(*c, _mm256_set_epi32(0, 0, 0, 2 * i, 0, 0, 0, 2 * i))), k0);
    *c = _mm256_add_epi32(*c, _mm256_set_epi32(0, 0, 0, 2 * m, 0, 0, 0, 2 * m));
    for (int r = 1; r < R; r++) {
        const __m256i kr = _mm256_broadcastsi128_si256(LD(k->rk[r]));
#pragma GCC unroll 8
        for (int i = 0; i < m; i++)
            b[i] = _mm256_aesenc_epi128(b[i], kr);
    }
    const __m256i kl = _mm256_broadcastsi128_si256(LD(k->rk[R]));
#pragma GCC unroll 8
    for (int i = 0; i < m; i++)
        ST256(p + 32 * i, _mm256_xor_si256(LD256(p + 32 * i), _mm256_aesenclast_epi128(b[i], kl)));
}

/* AES-CTR over the first n / 128 * 128 bytes of p, 16 or 8 blocks at a time; returns the counter
 * (byte-reversed) of the first block not done. */
BS_WIDE_TARGET static __m128i ctr_wide(const bs_aes *k, __m128i rctr, uint8_t *p, size_t n) {
    /* lanes: the counter and the counter + 1 */
    __m256i c = _mm256_add_epi32(_mm256_broadcastsi128_si256(rctr), _mm256_set_epi32(0, 0, 0, 1, 0, 0, 0, 0));
    for (; n >= 256; n -= 256, p += 256)
        ctr_wide_step(k, &c, p, 8);
    if (n >= 128)
        ctr_wide_step(k, &c, p, 4);
    return _mm256_castsi256_si128(c);
}

#else /* a compiler without the intrinsics: bs_aes_wide_available says 0, so these never run */
static __m128i ghash_wide(const bs_aes *k, __m128i x, const uint8_t *p, size_t nblocks) {
    (void)k, (void)p, (void)nblocks;
    return x;
}
static __m128i ctr_wide(const bs_aes *k, __m128i rctr, uint8_t *p, size_t n) {
    (void)k, (void)p, (void)n;
    return rctr;
}
#endif

/* x after absorbing p[0..n) zero-padded to whole blocks. */
BS_AES_TARGET static __m128i ghash_padded(const bs_aes *k, __m128i x, const uint8_t *p, size_t n) {
    x = ghash_blocks(k, x, p, n / 16);
    if (n % 16) {
        uint8_t t[16] = {0};
        memcpy(t, p + n / 16 * 16, n % 16);
        x = ghash_blocks(k, x, t, 1);
    }
    return x;
}

/* x after absorbing a || b zero-padded to whole blocks (the additional data comes in two parts). */
BS_AES_TARGET static __m128i ghash_aad(const bs_aes *k, __m128i x, const uint8_t *a, size_t alen, const uint8_t *b,
                                       size_t blen) {
    if (blen == 0)
        return ghash_padded(k, x, a, alen);
    x = ghash_blocks(k, x, a, alen / 16);
    size_t r = alen % 16;
    if (r) {
        uint8_t t[16] = {0};
        size_t take = blen < 16 - r ? blen : 16 - r;
        memcpy(t, a + alen / 16 * 16, r);
        memcpy(t + r, b, take);
        x = ghash_blocks(k, x, t, 1);
        b += take;
        blen -= take;
    }
    return ghash_padded(k, x, b, blen);
}

BS_AES_TARGET static inline __m128i ghash_lengths(const bs_aes *k, __m128i x, size_t aad_len, size_t n) {
    /* the block len(A) || len(C) in bits, 64-bit big-endian each, reflected */
    __m128i l = _mm_set_epi64x((long long)((uint64_t)aad_len * 8), (long long)((uint64_t)n * 8));
    return gfmul(_mm_xor_si128(x, l), LD(k->h[0]));
}

/* ---- CTR --------------------------------------------------------------------------------------- */

/* XOR p[0..n) with the keystream from the counter block whose byte-reversal is rctr (so its last
 * 32 bits, the block counter, are lane 0 and count with one 32-bit add). */
static __m128i ctr_wide(const bs_aes *k, __m128i rctr, uint8_t *p, size_t n);

/* XOR 16·m bytes of p with the keystream from the counter *rctr on (m ≤ 8, a constant where it is
 * inlined: the blocks' AESENCs interleave, each hiding the others' latency). */
__attribute__((always_inline)) BS_AES_TARGET static inline void ctr_step(const bs_aes *k, __m128i *rctr, uint8_t *p,
                                                                       const int m) {
    const int R = k->rounds;
    __m128i b[8];
    const __m128i k0 = LD(k->rk[0]);
#pragma GCC unroll 8
    for (int i = 0; i < m; i++)
        b[i] = _mm_xor_si128(bswap128(_mm_add_epi32(*rctr, _mm_set_epi32(0, 0, 0, i))), k0);
    *rctr = _mm_add_epi32(*rctr, _mm_set_epi32(0, 0, 0, m));
    for (int r = 1; r < R; r++) {
        const __m128i kr = LD(k->rk[r]);
#pragma GCC unroll 8
        for (int i = 0; i < m; i++)
            b[i] = _mm_aesenc_si128(b[i], kr);
    }
    const __m128i kl = LD(k->rk[R]);
#pragma GCC unroll 8
    for (int i = 0; i < m; i++)
        ST(p + 16 * i, _mm_xor_si128(LD(p + 16 * i), _mm_aesenclast_si128(b[i], kl)));
}

BS_AES_TARGET static void ctr_run(const bs_aes *k, __m128i rctr, uint8_t *p, size_t n) {
    if (k->wide && n >= 128) {
        rctr = ctr_wide(k, rctr, p, n);
        p += n / 128 * 128;
        n %= 128;
    }
    for (; n >= 128; n -= 128, p += 128)
        ctr_step(k, &rctr, p, 8);
    if (n >= 64) {
        ctr_step(k, &rctr, p, 4);
        n -= 64;
        p += 64;
    }
    for (; n >= 16; n -= 16, p += 16) {
        ST(p, _mm_xor_si128(LD(p), encrypt1(k, bswap128(rctr))));
        rctr = _mm_add_epi32(rctr, _mm_set_epi32(0, 0, 0, 1));
    }
    if (n) {
        uint8_t ks[16];
        ST(ks, encrypt1(k, bswap128(rctr)));
        for (size_t i = 0; i < n; i++)
            p[i] ^= ks[i];
        wipe(ks, sizeof(ks));
    }
}

/* ---- API --------------------------------------------------------------------------------------- */

BS_AES_TARGET static void setup(bs_aes *k, const uint8_t *key, size_t key_len) {
    __m128i rk[15];
    expand(rk, key, key_len);
    k->rounds = key_len == 16 ? 10 : 14;
    for (int i = 0; i <= k->rounds; i++)
        ST(k->rk[i], rk[i]);
    __m128i h = bswap128(encrypt1(k, _mm_setzero_si128())), hn = h;
    ST(k->h[0], h);
    for (int i = 1; i < 8; i++) {
        hn = gfmul(hn, h);
        ST(k->h[i], hn);
    }
    for (int i = 0; i < 8; i++) {
        __m128i hi = LD(k->h[i]);
        ST(k->hf[i], _mm_xor_si128(hi, _mm_shuffle_epi32(hi, 0x4e)));
    }
    wipe(rk, sizeof(rk));
}

int bs_aes_init(bs_aes *k, const uint8_t *key, size_t key_len, int wide) {
    memset(k, 0, sizeof(*k));
    if ((key_len != 16 && key_len != 32) || !bs_aes_available())
        return 0;
    setup(k, key, key_len);
    k->wide = wide && bs_aes_wide_available();
    return 1;
}

/* J0 = IV || 0^31 || 1, byte-reversed. */
BS_AES_TARGET static inline __m128i j0_reversed(const uint8_t iv[12]) {
    uint8_t j0[16];
    memcpy(j0, iv, 12);
    j0[12] = 0;
    j0[13] = 0;
    j0[14] = 0;
    j0[15] = 1;
    return bswap128(LD(j0));
}

BS_AES_TARGET static inline __m128i gcm_tag(const bs_aes *k, __m128i rj0, const uint8_t *aad1, size_t aad1_len,
                                            const uint8_t *aad2, size_t aad2_len, const uint8_t *c, size_t n) {
    __m128i x = ghash_aad(k, _mm_setzero_si128(), aad1, aad1_len, aad2, aad2_len);
    x = ghash_padded(k, x, c, n);
    x = ghash_lengths(k, x, aad1_len + aad2_len, n);
    return _mm_xor_si128(bswap128(x), encrypt1(k, bswap128(rj0)));
}

BS_AES_TARGET void bs_gcm_seal(const bs_aes *k, const uint8_t iv[12], const uint8_t *aad1, size_t aad1_len,
                               const uint8_t *aad2, size_t aad2_len, uint8_t *p, size_t n, uint8_t tag[16]) {
    __m128i rj0 = j0_reversed(iv);
    ctr_run(k, _mm_add_epi32(rj0, _mm_set_epi32(0, 0, 0, 1)), p, n);
    ST(tag, gcm_tag(k, rj0, aad1, aad1_len, aad2, aad2_len, p, n));
}

BS_AES_TARGET int bs_gcm_open(const bs_aes *k, const uint8_t iv[12], const uint8_t *aad1, size_t aad1_len,
                              const uint8_t *aad2, size_t aad2_len, uint8_t *p, size_t n, const uint8_t tag[16]) {
    __m128i rj0 = j0_reversed(iv);
    __m128i diff = _mm_xor_si128(gcm_tag(k, rj0, aad1, aad1_len, aad2, aad2_len, p, n), LD(tag));
    if (!_mm_testz_si128(diff, diff)) /* one test of all 128 bits: no early exit on a first byte */
        return 0;
    ctr_run(k, _mm_add_epi32(rj0, _mm_set_epi32(0, 0, 0, 1)), p, n);
    return 1;
}

BS_AES_TARGET void bs_ctr_xor(const bs_aes *k, const uint8_t iv[16], uint8_t *p, size_t n) {
    ctr_run(k, bswap128(LD(iv)), p, n);
}

#else /* not x86-64: srtp.c keeps OpenSSL's EVP */

int bs_aes_available(void) { return 0; }
int bs_aes_wide_available(void) { return 0; }
int bs_aes_init(bs_aes *k, const uint8_t *key, size_t key_len, int wide) {
    (void)key;
    (void)key_len;
    (void)wide;
    memset(k, 0, sizeof(*k));
    return 0;
}
void bs_gcm_seal(const bs_aes *k, const uint8_t iv[12], const uint8_t *aad1, size_t aad1_len, const uint8_t *aad2,
                 size_t aad2_len, uint8_t *p, size_t n, uint8_t tag[16]) {
    (void)k, (void)iv, (void)aad1, (void)aad1_len, (void)aad2, (void)aad2_len, (void)p, (void)n;
    memset(tag, 0, 16);
}
int bs_gcm_open(const bs_aes *k, const uint8_t iv[12], const uint8_t *aad1, size_t aad1_len, const uint8_t *aad2,
                size_t aad2_len, uint8_t *p, size_t n, const uint8_t tag[16]) {
    (void)k, (void)iv, (void)aad1, (void)aad1_len, (void)aad2, (void)aad2_len, (void)p, (void)n, (void)tag;
    return 0;
}
void bs_ctr_xor(const bs_aes *k, const uint8_t iv[16], uint8_t *p, size_t n) {
    (void)k, (void)iv, (void)p, (void)n;
}

#endif
