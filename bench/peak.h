#ifndef LOOM_BENCH_PEAK_H
#define LOOM_BENCH_PEAK_H
/* GFLOP/s of the best of reps n x n x n sgemm calls (after one warm-up); 0 when out of memory. */
double bench_sgemm_peak(int n, int reps);
/* The kernel set OpenBLAS runs ("Haswell", "Cooperlake", ...): OPENBLAS_CORETYPE pins it. */
const char *bench_blas_core(void);
/* GFLOP/s of 8-lane AVX2 FMAs from registers on every thread: the ceiling no AVX2 sgemm
 * passes (0 without AVX2). */
double bench_fma_ceiling(void);
#endif
