#ifndef LOOM_BENCH_PEAK_H
#define LOOM_BENCH_PEAK_H
/* GFLOP/s of the best of reps n x n x n sgemm calls (after one warm-up); 0 when out of memory. */
double bench_sgemm_peak(int n, int reps);
/* The kernel set OpenBLAS runs ("Haswell", "Cooperlake", ...): OPENBLAS_CORETYPE pins it. */
const char *bench_blas_core(void);
#endif
