/* RNG: reproducible, serializable, thread-count independent, sane moments. */
#include <omp.h>
#include <string.h>

#include "helpers.h"

Test(rng, same_seed_same_stream_and_state_resumes)
{
    loom_rng a = loom_rng_init(123), b = loom_rng_init(123), c = loom_rng_init(124);
    int differ = 0;
    for (int i = 0; i < 100; i++) {
        uint64_t x = loom_rng_next(&a);
        cr_expect_eq(x, loom_rng_next(&b));
        differ += x != loom_rng_next(&c);
    }
    cr_expect_gt(differ, 95);
    loom_rng saved = a; /* the whole state is two integers */
    uint64_t next = loom_rng_next(&a);
    cr_expect_eq(loom_rng_next(&saved), next);
}

Test(rng, fills_do_not_depend_on_thread_count)
{
    size_t n = 100000;
    float *x1 = malloc(n * sizeof(float)), *x2 = malloc(n * sizeof(float));
    loom_rng r1 = loom_rng_init(7), r2 = loom_rng_init(7);
    omp_set_num_threads(1);
    loom_rng_fill_normal(&r1, x1, n, 0, 1);
    omp_set_num_threads(2);
    loom_rng_fill_normal(&r2, x2, n, 0, 1);
    cr_expect_eq(memcmp(x1, x2, n * sizeof(float)), 0);
    cr_expect_eq(r1.counter, n);
    double m = 0, v = 0;
    for (size_t i = 0; i < n; i++) m += x1[i];
    m /= n;
    for (size_t i = 0; i < n; i++) v += (x1[i] - m) * (x1[i] - m);
    v /= n;
    cr_expect(fabs(m) < 0.02 && fabs(v - 1) < 0.02, "normal mean %g var %g", m, v);
    loom_rng_fill_uniform(&r1, x1, n, 2, 4);
    m = 0;
    for (size_t i = 0; i < n; i++) {
        cr_assert(x1[i] >= 2 && x1[i] < 4);
        m += x1[i];
    }
    cr_expect(fabs(m / n - 3) < 0.01, "uniform mean %g", m / n);
    free(x1);
    free(x2);
}

Test(rng, below_stays_in_range)
{
    loom_rng r = loom_rng_init(3);
    int hist[5] = {0};
    for (int i = 0; i < 50000; i++) {
        uint32_t k = loom_rng_below(&r, 5);
        cr_assert_lt(k, 5u);
        hist[k]++;
    }
    for (int k = 0; k < 5; k++) cr_expect(hist[k] > 9500 && hist[k] < 10500, "bucket %d: %d", k, hist[k]);
}

Test(determinism, reductions_same_bits_on_one_and_two_threads)
{
    loom_tensor *a = rand_tensor(300, 301, 1, 11, -1, 1);
    float r[2], g[2];
    for (int th = 1; th <= 2; th++) {
        omp_set_num_threads(th);
        loom_tape *t = loom_tape_new(0);
        loom_tensor *b = loom_op_tanh(t, a);
        loom_tensor *y = loom_op_mean(t, loom_op_mul(t, b, b));
        loom_tensor_zero_grad(a);
        cr_assert_eq(loom_tape_backward(t, y), LOOM_OK);
        r[th - 1] = y->data[0];
        g[th - 1] = a->grad[12345];
        loom_tape_free(t);
    }
    cr_expect_eq(memcmp(r, r + 1, sizeof(float)), 0, "%.9g vs %.9g", r[0], r[1]);
    cr_expect_eq(memcmp(g, g + 1, sizeof(float)), 0);
    loom_tensor_free(a);
}
