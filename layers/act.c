/* Sigmoid and tanh over arrays, for the cells' pointwise kernels: eight lanes at a time
 * with AVX2 where the CPU has it (and LOOM_GEMM_ISA=c does not turn it off), else
 * loom_sigmoidf / loom_tanhf one by one.
 *
 * The vector exp: e^x = 2^n e^r with n = round(x / ln 2) and |r| <= ln(2)/2, e^r by its
 * degree-7 Taylor polynomial (truncation under 1e-8, relative), 2^n put in the exponent
 * bits. Within 2 ulp of glibc's expf over the clamped range; a NaN stays a NaN. A value
 * depends on its input alone, never on its place in the array: the tail goes through
 * the same lanes, so a kernel that recomputes tanh(c) gets forward's bits. */
#include <string.h>

#include "internal.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define AVX2 __attribute__((target("avx2,fma")))

static inline __attribute__((always_inline)) AVX2 __m256 exp8(__m256 x)
{
    /* min/max return their second operand when either is NaN: x, so a NaN passes. */
    x = _mm256_max_ps(_mm256_set1_ps(-87.33654f), _mm256_min_ps(_mm256_set1_ps(88.37626f), x));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693145752f), x); /* ln 2 in two parts: r exact to float */
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(1.42860677e-6f), r);
    __m256 p = _mm256_set1_ps(1.0f / 5040.0f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

static inline __attribute__((always_inline)) AVX2 __m256 sigmoid8(__m256 x)
{
    __m256 one = _mm256_set1_ps(1.0f);
    return _mm256_div_ps(one, _mm256_add_ps(one, exp8(_mm256_sub_ps(_mm256_setzero_ps(), x))));
}

static inline __attribute__((always_inline)) AVX2 __m256 tanh8(__m256 x)
{
    __m256 one = _mm256_set1_ps(1.0f), sign = _mm256_set1_ps(-0.0f);
    __m256 e = exp8(_mm256_mul_ps(_mm256_set1_ps(-2.0f), _mm256_andnot_ps(sign, x)));
    __m256 t = _mm256_div_ps(_mm256_sub_ps(one, e), _mm256_add_ps(one, e));
    return _mm256_or_ps(t, _mm256_and_ps(sign, x)); /* copysign: t >= 0 */
}

/* y[0..n) = f(x[0..n)); the tail through a padded block, so every element takes the lanes. */
#define ACT_LOOP(f)                                                                                                    \
    int i = 0;                                                                                                         \
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, f(_mm256_loadu_ps(x + i)));                                  \
    if (i < n) {                                                                                                       \
        float t[8] = {0};                                                                                              \
        memcpy(t, x + i, (size_t)(n - i) * sizeof(float));                                                            \
        _mm256_storeu_ps(t, f(_mm256_loadu_ps(t)));                                                                   \
        memcpy(y + i, t, (size_t)(n - i) * sizeof(float));                                                            \
    }

static AVX2 void sigmoid_avx2(float *y, const float *x, int n) { ACT_LOOP(sigmoid8) }
static AVX2 void tanh_avx2(float *y, const float *x, int n) { ACT_LOOP(tanh8) }

#else
static void sigmoid_avx2(float *y, const float *x, int n) { (void)y, (void)x, (void)n; }
static void tanh_avx2(float *y, const float *x, int n) { (void)y, (void)x, (void)n; }
#endif

/* AVX2 where loom's kernels run it (loom_kernel_simd_width, one check for both). */
static int vector_ok(void) { return loom_kernel_simd_width() >= 8; }

void loom_sigmoidv(float *y, const float *x, int n)
{
    if (vector_ok()) sigmoid_avx2(y, x, n);
    else
        for (int i = 0; i < n; i++) y[i] = loom_sigmoidf(x[i]);
}

void loom_tanhv(float *y, const float *x, int n)
{
    if (vector_ok()) tanh_avx2(y, x, n);
    else
        for (int i = 0; i < n; i++) y[i] = loom_tanhf(x[i]);
}
