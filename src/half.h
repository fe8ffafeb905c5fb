/*
 * fp16 / bf16 <-> fp32 conversions in portable C (host side: the CPU backend, the
 * reference and the tests). Round-to-nearest-even, NaN and infinities preserved,
 * fp16 subnormals handled. Debian's HIP 5.2 has no hip_bf16.h, so we own these.
 */
#ifndef FG_HALF_H
#define FG_HALF_H

#include <stdint.h>
#include <string.h>

static inline float fg_bits_to_float(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static inline uint32_t fg_float_to_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

static inline float fg_half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t man = h & 0x3ffu;
    if (exp == 0x1f) return fg_bits_to_float(sign | 0x7f800000u | (man << 13));
    if (exp == 0) {
        if (man == 0) return fg_bits_to_float(sign);
        /* subnormal: value = man * 2^-24 */
        float v = (float)man * (1.0f / 16777216.0f);
        return sign ? -v : v;
    }
    return fg_bits_to_float(sign | ((exp + 112u) << 23) | (man << 13));
}

static inline uint16_t fg_float_to_half(float f) {
    uint32_t x = fg_float_to_bits(f);
    uint32_t sign = (x >> 16) & 0x8000u;
    uint32_t ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) return (uint16_t)(sign | 0x7c00u | (ax > 0x7f800000u ? 0x200u : 0u));
    if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* rounds to >= 65520: inf */
    if (ax < 0x38800000u) {                                   /* below 2^-14: subnormal or zero */
        float af = fg_bits_to_float(ax) * 16777216.0f;        /* in units of 2^-24, exact */
        uint32_t m = (uint32_t)af;
        float rem = af - (float)m;
        if (rem > 0.5f || (rem == 0.5f && (m & 1u))) m++;
        return (uint16_t)(sign | m);
    }
    uint32_t r = ax + 0xfffu + ((ax >> 13) & 1u); /* round to nearest even at bit 13 */
    return (uint16_t)(sign | (((r >> 13) - (112u << 10)) & 0x7fffu));
}

static inline float fg_bf16_to_float(uint16_t b) { return fg_bits_to_float((uint32_t)b << 16); }

static inline uint16_t fg_float_to_bf16(float f) {
    uint32_t x = fg_float_to_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40u); /* quiet NaN */
    x += 0x7fffu + ((x >> 16) & 1u);
    return (uint16_t)(x >> 16);
}

#endif /* FG_HALF_H */
