/* AES-GCM and AES-CTR on the x86-64 AES-NI and PCLMULQDQ instructions, for the SRTP of the data
 * path (srtp.c). Why not OpenSSL's EVP, which uses the same instructions: in OpenSSL 3.0 every
 * per-packet call that sets an IV or reads a tag goes through the provider's parameter lookups, and
 * those cost more than the cipher (a 1,000-byte AES-128-GCM seal through EVP ≈ 1.06 µs here, the
 * encryption in it ≈ 0.2 µs). This code does only the arithmetic, on round keys and powers of H
 * computed once per key. srtp.c uses it when the CPU has the instructions (bs_aes_available) and
 * keeps EVP otherwise; the tests run both and compare them with each other, with pylibsrtp and
 * with the RFC 7714 vectors. Where the CPU also has VAES and VPCLMULQDQ on 256-bit registers, runs of
 * eight blocks and more go through those, two blocks per instruction.
 */
#ifndef BS_AES_GCM_H
#define BS_AES_GCM_H

#include <stddef.h>
#include <stdint.h>

typedef struct bs_aes {
    uint8_t rk[15][16];               /* encryption round keys (rounds + 1 used) */
    uint8_t h[8][16];                 /* GCM: H, H^2, ..., H^8, byte-reflected as the multiply wants */
    uint8_t hf[8][16];                /* each H^i with its halves XORed (Karatsuba's middle factor) */
    int rounds;                       /* 10 (AES-128) or 14 (AES-256) */
    int wide;                         /* use the 256-bit VAES / VPCLMULQDQ path for long enough runs */
} bs_aes;

/* 1 if this CPU can run the code below (AES-NI, PCLMULQDQ, SSSE3), else 0. */
int bs_aes_available(void);

/* 1 if it can also run the 256-bit path (AVX2, VAES, VPCLMULQDQ, and an OS that saves YMM state). */
int bs_aes_wide_available(void);

/* key_len 16 or 32; wide: use the 256-bit path where available (two blocks per instruction, for
 * runs of 128 bytes and more; the same bytes). Returns 0 on a bad length or a CPU without the
 * instructions, else 1. */
int bs_aes_init(bs_aes *k, const uint8_t *key, size_t key_len, int wide);

/* GCM with a 96-bit IV and a 128-bit tag (SP 800-38D). The additional data is aad1 || aad2;
 * p[0..n) is encrypted / decrypted in place. */
void bs_gcm_seal(const bs_aes *k, const uint8_t iv[12], const uint8_t *aad1, size_t aad1_len,
                 const uint8_t *aad2, size_t aad2_len, uint8_t *p, size_t n, uint8_t tag[16]);
/* Returns 1 and decrypts if the tag verifies (compared in constant time); 0 and leaves p as it was
 * otherwise. */
int bs_gcm_open(const bs_aes *k, const uint8_t iv[12], const uint8_t *aad1, size_t aad1_len,
                const uint8_t *aad2, size_t aad2_len, uint8_t *p, size_t n, const uint8_t tag[16]);

/* AES-CTR keystream XOR from the 128-bit counter block iv, whose low 32 bits count blocks (SRTP's
 * AES-CM IV has 16 zero bits there, and a packet is far below 2^16 blocks, so this is OpenSSL's
 * 128-bit counter for every input srtp.c gives it). */
void bs_ctr_xor(const bs_aes *k, const uint8_t iv[16], uint8_t *p, size_t n);

#endif
