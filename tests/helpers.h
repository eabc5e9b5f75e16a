/* Shared test helpers: random heap tensors and a gradcheck harness. */
#ifndef LOOM_TEST_HELPERS_H
#define LOOM_TEST_HELPERS_H

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loom_autograd.h"

/* A heap tensor with values uniform in [lo, hi). */
static inline loom_tensor *rand_tensor(int rows, int cols, int grad, uint64_t seed, float lo, float hi)
{
    loom_tensor *x = loom_tensor_new(rows, cols, grad);
    cr_assert_not_null(x, "tensor_new: %s", loom_error_message());
    loom_rng r = loom_rng_init(seed);
    loom_rng_fill_uniform(&r, x->data, loom_tensor_size(x), lo, hi);
    return x;
}

/* Turns any output into a scalar by a fixed random projection, so every element matters. */
static inline loom_tensor *project(loom_tape *t, loom_tensor *y)
{
    if (!y) return NULL;
    if (y->rows == 1 && y->cols == 1) return y;
    loom_tensor *p = loom_tape_tensor(t, y->rows, y->cols);
    if (!p) return NULL;
    loom_rng r = loom_rng_init(4242);
    loom_rng_fill_uniform(&r, p->data, loom_tensor_size(p), -1.0f, 1.0f);
    return loom_op_sum(t, loom_op_mul(t, y, p));
}

/* Asserts that gradcheck over wrt passes with relative error below tol. */
static inline void expect_gradcheck(loom_scalar_fn fn, void *ctx, loom_tensor *const *wrt, int n, double tol,
                                    const char *what)
{
    loom_gradcheck_result res;
    loom_status st = loom_gradcheck(fn, ctx, wrt, n, 0.0f, 1e-2, &res);
    cr_assert_eq(st, LOOM_OK, "%s: gradcheck failed to run: %s", what, loom_error_message());
    cr_assert_gt(res.checked, 0);
    cr_expect_lt(res.worst_rel_err, tol, "%s: worst rel err %g at %s[%zu] (analytic %g numeric %g; %zu kinks skipped)", what,
                 res.worst_rel_err, res.worst_name, res.worst_index, res.analytic, res.numeric, res.kinks);
}

#endif
