/* Private helpers shared by the autograd sources. */
#ifndef LOOM_AUTOGRAD_INTERNAL_H
#define LOOM_AUTOGRAD_INTERNAL_H

#include "loom_autograd.h"

/* Parallel-for over [0, n) with a static schedule when cond holds, else a plain loop.
 * A branch, not an if() clause: libgomp allocates a team even for a serialized region. */
#define LOOM_PFOR_IF(cond, i, n, ...)                                                \
    do {                                                                             \
        long loom_n_ = (long)(n);                                                    \
        if (cond) {                                                                  \
            _Pragma("omp parallel for schedule(static)") for (long i = 0; i < loom_n_; i++) { __VA_ARGS__ } \
        } else {                                                                     \
            for (long i = 0; i < loom_n_; i++) { __VA_ARGS__ }                       \
        }                                                                            \
    } while (0)
/* Elementwise loop over n elements, parallel from LOOM_PAR_MIN up. */
#define LOOM_PFOR(i, n, ...) LOOM_PFOR_IF((long)(n) >= LOOM_PAR_MIN, i, n, __VA_ARGS__)
/* Runs the block in an OpenMP team when cond holds, else once on this thread
 * (where omp_get_thread_num() is 0 and omp_get_num_threads() is 1). */
#define LOOM_PARALLEL_IF(cond, ...)                          \
    do {                                                     \
        if (cond) {                                          \
            _Pragma("omp parallel") { __VA_ARGS__ }          \
        } else {                                             \
            __VA_ARGS__                                      \
        }                                                    \
    } while (0)

/* Fixed-size blocks make reductions give the same bits on any thread count. */
#define LOOM_RED_BLOCK 4096

/* Sum of x[0..n) in double, block by block in a fixed order. */
double loom_sum_blocked(const float *x, size_t n);

/* Adds dout's column sums into g[cols] (the backward of a row broadcast). */
void loom_add_colsum(float *g, const float *dout, int rows, int cols);


/* NULL inputs: keeps the first error and returns NULL (1), or 0 when all are set. */
int loom_tape_null_inputs(loom_tape *t, const char *op, loom_tensor *const *in, int n);

#endif
