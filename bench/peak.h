#ifndef LOOM_BENCH_PEAK_H
#define LOOM_BENCH_PEAK_H
/* GFLOP/s of the best of reps n x n x n sgemm calls (after one warm-up); 0 when out of memory. */
double bench_sgemm_peak(int n, int reps);
/* The kernel set OpenBLAS runs ("Haswell", "Cooperlake", ...): OPENBLAS_CORETYPE pins it. */
const char *bench_blas_core(void);
/* GFLOP/s of FMAs from registers on every thread, in the widest vectors OpenBLAS's kernel set
 * uses (*isa: "AVX2" or "AVX-512"): the ceiling no sgemm of that width passes (0: neither). */
double bench_fma_ceiling(const char **isa);
#endif
