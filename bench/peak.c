/* The machine's limit for bench's GFLOP/s: OpenBLAS sgemm on a large square
 * product at the same thread count, measured in the same run. */
#include <cblas.h>
#include <omp.h>
#include <stdlib.h>
#include <time.h>

#include "loom_autograd.h"
#include "peak.h"

static double seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double bench_sgemm_peak(int n, int reps)
{
    size_t nn = (size_t)n * (size_t)n;
    float *a = malloc(sizeof(float) * nn), *b = malloc(sizeof(float) * nn), *c = malloc(sizeof(float) * nn);
    double best = 0;
    if (a && b && c) {
        for (size_t i = 0; i < nn; i++) a[i] = (float)(i % 7) * 0.25f - 0.75f, b[i] = (float)(i % 5) * 0.5f - 1.0f;
        for (int r = 0; r <= reps; r++) { /* the first call warms up (buffers, thread start) */
            double t0 = seconds();
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
            double g = 2.0 * n * (double)nn / (seconds() - t0) * 1e-9;
            if (r > 0 && g > best) best = g; /* the best of reps: the limit, not the typical */
        }
    }
    free(a), free(b), free(c);
    return best;
}

const char *bench_blas_core(void) { return openblas_get_corename(); }

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
/* One thread's GFLOP/s on 12 independent chains of FMAs, all in registers, in vectors of
 * LANES floats; the sink keeps the loop from being dropped. */
#define FMA_RATE(name, isa, vec, lanes, set1, fmadd, add, storeu)                                                  \
    __attribute__((target(isa))) static double name(long iters)                                                      \
    {                                                                                                                  \
        vec a[12], m = set1(0.999999f), c = set1(1e-7f);                                                              \
        for (int i = 0; i < 12; i++) a[i] = set1((float)i);                                                            \
        double t0 = seconds();                                                                                         \
        for (long n = 0; n < iters; n++)                                                                               \
            for (int i = 0; i < 12; i++) a[i] = fmadd(a[i], m, c);                                                     \
        double t = seconds() - t0;                                                                                     \
        float sink[lanes];                                                                                             \
        for (int i = 1; i < 12; i++) a[0] = add(a[0], a[i]);                                                           \
        storeu(sink, a[0]);                                                                                            \
        return sink[0] == 12345.0f ? 0 : iters * 12.0 * 2 * lanes / t * 1e-9;                                          \
    }
FMA_RATE(fma_rate8, "avx2,fma", __m256, 8, _mm256_set1_ps, _mm256_fmadd_ps, _mm256_add_ps, _mm256_storeu_ps)
FMA_RATE(fma_rate16, "avx512f", __m512, 16, _mm512_set1_ps, _mm512_fmadd_ps, _mm512_add_ps, _mm512_storeu_ps)

double bench_fma_ceiling(const char **isa)
{
    int width = loom_kernel_simd_width(); /* the width OpenBLAS's kernel set runs, as loom reads it */
    *isa = width == 16 ? "AVX-512" : width == 8 ? "AVX2" : "no vector";
    if (width < 8) return 0;
    double best = 0;
    for (int r = 0; r < 3; r++) {
        double sum = 0;
#pragma omp parallel reduction(+ : sum)
        sum += width == 16 ? fma_rate16(100000000L / 4) : fma_rate8(100000000L / 4);
        if (sum > best) best = sum;
    }
    return best;
}
#else
double bench_fma_ceiling(const char **isa)
{
    *isa = "none";
    return 0;
}
#endif
