/* The machine's limit for bench's GFLOP/s: OpenBLAS sgemm on a large square
 * product at the same thread count, measured in the same run. */
#include <cblas.h>
#include <stdlib.h>
#include <time.h>

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
