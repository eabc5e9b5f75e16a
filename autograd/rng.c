/* Counter-based RNG: a splitmix64-style mix of (seed, counter). */
#include <math.h>

#include "internal.h"

static inline uint64_t mix64(uint64_t seed, uint64_t ctr)
{
    uint64_t z = seed * 0xD1B54A32D192ED03ull + ctr * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static inline float to_unit(uint64_t z) { return (float)(z >> 40) * (1.0f / 16777216.0f); }

/* Box-Muller from two independent counter values, so element i needs no neighbour. */
static inline float normal_at(uint64_t seed, uint64_t ctr)
{
    uint64_t z = mix64(seed, ctr);
    double u1 = ((double)(z >> 11) + 1.0) * (1.0 / 9007199254740993.0); /* (0,1] */
    double u2 = (double)(mix64(seed ^ 0xA5A5A5A5A5A5A5A5ull, ctr) >> 11) * (1.0 / 9007199254740992.0);
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

loom_rng loom_rng_init(uint64_t seed)
{
    loom_rng r = {seed, 0};
    return r;
}

uint64_t loom_rng_next(loom_rng *r)
{
    if (!r) return LOOM_NULL_ARG("rng_next", "rng"), 0;
    return mix64(r->seed, r->counter++);
}

float loom_rng_uniform(loom_rng *r)
{
    if (!r) return LOOM_NULL_ARG("rng_uniform", "rng"), 0.0f;
    return to_unit(loom_rng_next(r));
}

float loom_rng_normal(loom_rng *r)
{
    if (!r) return LOOM_NULL_ARG("rng_normal", "rng"), 0.0f;
    return normal_at(r->seed, r->counter++);
}

uint32_t loom_rng_below(loom_rng *r, uint32_t n)
{
    if (!r) return LOOM_NULL_ARG("rng_below", "rng"), 0;
    /* Multiply-shift: tiny bias for n far below 2^32, never out of range. */
    return (uint32_t)(((loom_rng_next(r) >> 32) * (uint64_t)n) >> 32);
}

void loom_rng_fill_uniform(loom_rng *r, float *out, size_t n, float lo, float hi)
{
    if (!r || (!out && n)) {
        if (!r) LOOM_NULL_ARG("rng_fill_uniform", "rng");
        else LOOM_NULL_ARG("rng_fill_uniform", "out");
        return;
    }
    uint64_t s = r->seed, c0 = r->counter;
    float w = hi - lo;
    LOOM_PFOR(i, n, out[i] = lo + w * to_unit(mix64(s, c0 + (uint64_t)i)););
    r->counter += n;
}

void loom_rng_fill_normal(loom_rng *r, float *out, size_t n, float mean, float std)
{
    if (!r || (!out && n)) {
        if (!r) LOOM_NULL_ARG("rng_fill_normal", "rng");
        else LOOM_NULL_ARG("rng_fill_normal", "out");
        return;
    }
    uint64_t s = r->seed, c0 = r->counter;
    LOOM_PFOR(i, n, out[i] = mean + std * normal_at(s, c0 + (uint64_t)i););
    r->counter += n;
}
