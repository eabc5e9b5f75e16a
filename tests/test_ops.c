/* Every op: forward values where easy to state, and gradcheck on awkward shapes. */
#include <string.h>

#include "helpers.h"

static const int SIZES[] = {1, 7, 33};

typedef struct opcase {
    loom_tensor *a, *b, *c;
    int ta, tb, i0, i1;
    float f0;
    int *idx;
    float *w;
    loom_tensor *target;
    loom_rng rng;
} opcase;

#define GC_FN(name, expr)                                  \
    static loom_tensor *name(loom_tape *t, void *ctx)      \
    {                                                      \
        opcase *k = ctx;                                   \
        (void)k;                                           \
        return project(t, (expr));                         \
    }

GC_FN(fn_matmul, loom_op_matmul(t, k->a, k->b, k->ta, k->tb))
GC_FN(fn_add, loom_op_add(t, k->a, k->b))
GC_FN(fn_sub, loom_op_sub(t, k->a, k->b))
GC_FN(fn_mul, loom_op_mul(t, k->a, k->b))
GC_FN(fn_scale, loom_op_scale(t, k->a, k->f0))
GC_FN(fn_sigmoid, loom_op_sigmoid(t, k->a))
GC_FN(fn_tanh, loom_op_tanh(t, k->a))
GC_FN(fn_relu, loom_op_relu(t, k->a))
GC_FN(fn_slice, loom_op_slice(t, k->a, k->i0, k->i1))
GC_FN(fn_rows, loom_op_rows(t, k->a, k->i0, k->i1))
GC_FN(fn_sum, loom_op_sum(t, loom_op_mul(t, loom_op_tanh(t, k->a), k->b)))
GC_FN(fn_mean, loom_op_scale(t, loom_op_mean(t, loom_op_mul(t, loom_op_tanh(t, k->a), k->b)), (float)loom_tensor_size(k->a)))
GC_FN(fn_embedding, loom_op_embedding(t, k->a, k->idx, k->i0))
GC_FN(fn_ce, loom_op_softmax_ce(t, k->a, k->idx, k->w))
GC_FN(fn_ce_smooth, loom_op_softmax_ce_smooth(t, k->a, k->idx, k->w, k->f0))
GC_FN(fn_mse, loom_op_mse(t, k->a, k->target, k->w))
GC_FN(fn_select, loom_op_select_rows(t, (const unsigned char *)k->idx, k->a, k->b))

static loom_tensor *fn_concat(loom_tape *t, void *ctx)
{
    opcase *k = ctx;
    loom_tensor *parts[3] = {k->a, k->b, k->c};
    return project(t, loom_op_concat(t, parts, 3));
}

static loom_tensor *fn_dropout(loom_tape *t, void *ctx)
{
    opcase *k = ctx;
    loom_rng r = k->rng; /* the same mask on every evaluation */
    return project(t, loom_op_dropout(t, k->a, k->f0, &r));
}

static void free_case(opcase *k)
{
    loom_tensor_free(k->a);
    loom_tensor_free(k->b);
    loom_tensor_free(k->c);
    loom_tensor_free(k->target);
    free(k->idx);
    free(k->w);
}

Test(gradcheck, matmul_all_transposes_and_odd_sizes)
{
    uint64_t seed = 1;
    for (int mi = 0; mi < 3; mi++)
        for (int ki = 0; ki < 3; ki++)
            for (int ni = 0; ni < 3; ni++)
                for (int tr = 0; tr < 4; tr++) {
                    int M = SIZES[mi], K = SIZES[ki], N = SIZES[ni], ta = tr & 1, tb = tr >> 1;
                    if (M * K * N > 7 * 7 * 33) continue; /* keep the biggest cubes out: cost only */
                    opcase k = {0};
                    k.a = ta ? rand_tensor(K, M, 1, seed++, -1, 1) : rand_tensor(M, K, 1, seed++, -1, 1);
                    k.b = tb ? rand_tensor(N, K, 1, seed++, -1, 1) : rand_tensor(K, N, 1, seed++, -1, 1);
                    k.ta = ta;
                    k.tb = tb;
                    loom_tensor *wrt[2] = {k.a, k.b};
                    char what[64];
                    snprintf(what, sizeof what, "matmul M%d K%d N%d ta%d tb%d", M, K, N, ta, tb);
                    expect_gradcheck(fn_matmul, &k, wrt, 2, 1e-2, what);
                    free_case(&k);
                }
}

Test(gradcheck, matmul_large_inner)
{
    opcase k = {0};
    k.a = rand_tensor(7, 33, 1, 11, -1, 1);
    k.b = rand_tensor(5, 33, 1, 12, -1, 1);
    k.tb = 1;
    loom_tensor *wrt[2] = {k.a, k.b};
    expect_gradcheck(fn_matmul, &k, wrt, 2, 1e-2, "matmul 7x33 @ (5x33)^T");
    free_case(&k);
}

Test(ops, matmul_values_match_naive)
{
    loom_tape *t = loom_tape_new(0);
    for (int tr = 0; tr < 4; tr++) {
        int ta = tr & 1, tb = tr >> 1, M = 7, K = 33, N = 5;
        loom_tensor *a = ta ? rand_tensor(K, M, 0, 3, -1, 1) : rand_tensor(M, K, 0, 3, -1, 1);
        loom_tensor *b = tb ? rand_tensor(N, K, 0, 4, -1, 1) : rand_tensor(K, N, 0, 4, -1, 1);
        loom_tensor *c = loom_op_matmul(t, a, b, ta, tb);
        cr_assert_not_null(c, "%s", loom_error_message());
        cr_assert(c->rows == M && c->cols == N);
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++) {
                double s = 0;
                for (int q = 0; q < K; q++)
                    s += (double)(ta ? a->data[q * M + i] : a->data[i * K + q]) *
                         (tb ? b->data[j * K + q] : b->data[q * N + j]);
                cr_expect_float_eq(c->data[i * N + j], (float)s, 1e-4, "ta%d tb%d (%d,%d)", ta, tb, i, j);
            }
        loom_tensor_free(a);
        loom_tensor_free(b);
    }
    loom_tape_free(t);
}

static void binary_cases(loom_scalar_fn fn, const char *name)
{
    uint64_t seed = 100;
    for (int ri = 0; ri < 3; ri++)
        for (int ci = 0; ci < 3; ci++)
            for (int bc = 0; bc < 2; bc++) {
                int R = SIZES[ri], C = SIZES[ci];
                opcase k = {0};
                k.a = rand_tensor(R, C, 1, seed++, -1, 1);
                k.b = rand_tensor(bc ? 1 : R, C, 1, seed++, -1, 1);
                loom_tensor *wrt[2] = {k.a, k.b};
                char what[64];
                snprintf(what, sizeof what, "%s [%dx%d] with [%dx%d]", name, R, C, k.b->rows, C);
                expect_gradcheck(fn, &k, wrt, 2, 1e-2, what);
                free_case(&k);
            }
}

Test(gradcheck, add_with_row_broadcast) { binary_cases(fn_add, "add"); }
Test(gradcheck, sub_with_row_broadcast) { binary_cases(fn_sub, "sub"); }
Test(gradcheck, mul_with_row_broadcast) { binary_cases(fn_mul, "mul"); }

static void unary_cases(loom_scalar_fn fn, const char *name, float lo, float hi, float f0)
{
    uint64_t seed = 200;
    for (int ri = 0; ri < 3; ri++)
        for (int ci = 0; ci < 3; ci++) {
            opcase k = {0};
            k.a = rand_tensor(SIZES[ri], SIZES[ci], 1, seed++, lo, hi);
            k.b = rand_tensor(SIZES[ri], SIZES[ci], 0, seed++, -1, 1); /* fixed weights for sum/mean */
            k.f0 = f0;
            char what[64];
            snprintf(what, sizeof what, "%s [%dx%d]", name, SIZES[ri], SIZES[ci]);
            expect_gradcheck(fn, &k, &k.a, 1, 1e-2, what);
            free_case(&k);
        }
}

Test(gradcheck, scale) { unary_cases(fn_scale, "scale", -2, 2, -1.7f); }
Test(gradcheck, sigmoid) { unary_cases(fn_sigmoid, "sigmoid", -3, 3, 0); }
Test(gradcheck, tanh) { unary_cases(fn_tanh, "tanh", -2, 2, 0); }
Test(gradcheck, sum) { unary_cases(fn_sum, "sum", -2, 2, 0); }
Test(gradcheck, mean) { unary_cases(fn_mean, "mean", -2, 2, 0); }

Test(gradcheck, relu_away_from_kink)
{
    /* Values at least 0.1 from zero, so +-eps never crosses the kink. */
    opcase k = {0};
    k.a = rand_tensor(7, 33, 1, 300, 0.1f, 1.0f);
    loom_rng r = loom_rng_init(301);
    for (size_t i = 0; i < loom_tensor_size(k.a); i++)
        if (loom_rng_uniform(&r) < 0.5f) k.a->data[i] = -k.a->data[i];
    expect_gradcheck(fn_relu, &k, &k.a, 1, 1e-2, "relu [7x33]");
    free_case(&k);
}

Test(gradcheck, concat_three_parts_odd_widths)
{
    for (int ri = 0; ri < 3; ri++) {
        opcase k = {0};
        k.a = rand_tensor(SIZES[ri], 1, 1, 400 + ri, -1, 1);
        k.b = rand_tensor(SIZES[ri], 7, 0, 410 + ri, -1, 1); /* a part with no gradient */
        k.c = rand_tensor(SIZES[ri], 33, 1, 420 + ri, -1, 1);
        loom_tensor *wrt[2] = {k.a, k.c};
        expect_gradcheck(fn_concat, &k, wrt, 2, 1e-2, "concat");
        free_case(&k);
    }
}

Test(gradcheck, slice_and_rows)
{
    opcase k = {0};
    k.a = rand_tensor(33, 7, 1, 500, -1, 1);
    for (int c0 = 0; c0 < 7; c0 += 3) {
        k.i0 = c0;
        k.i1 = 7 - c0 > 3 ? 3 : 7 - c0;
        expect_gradcheck(fn_slice, &k, &k.a, 1, 1e-2, "slice");
    }
    k.i0 = 5;
    k.i1 = 28;
    expect_gradcheck(fn_rows, &k, &k.a, 1, 1e-2, "rows");
    k.i0 = 32;
    k.i1 = 1;
    expect_gradcheck(fn_rows, &k, &k.a, 1, 1e-2, "rows last");
    free_case(&k);
}

Test(gradcheck, embedding_with_repeated_indices)
{
    opcase k = {0};
    k.a = rand_tensor(7, 33, 1, 600, -1, 1);
    int idx[] = {3, 0, 3, 6, 6, 6, 1, 3, 2};
    k.idx = malloc(sizeof idx);
    memcpy(k.idx, idx, sizeof idx);
    k.i0 = 9;
    expect_gradcheck(fn_embedding, &k, &k.a, 1, 1e-2, "embedding");
    free_case(&k);
}

Test(gradcheck, softmax_ce_with_padding_weights)
{
    for (int ri = 0; ri < 3; ri++)
        for (int ci = 1; ci < 3; ci++) {
            int N = SIZES[ri], C = SIZES[ci];
            opcase k = {0};
            k.a = rand_tensor(N, C, 1, 700 + ri * 3 + ci, -3, 3);
            k.idx = malloc(sizeof(int) * N);
            k.w = malloc(sizeof(float) * N);
            loom_rng r = loom_rng_init(710 + ri);
            for (int i = 0; i < N; i++) {
                k.idx[i] = (int)loom_rng_below(&r, (uint32_t)C);
                k.w[i] = (i % 3 == 2) ? 0.0f : 0.5f + loom_rng_uniform(&r);
                if (k.w[i] == 0.0f) k.idx[i] = -1; /* padding: its target is never read */
            }
            if (N == 1) k.w[0] = 1.0f, k.idx[0] = 0;
            /* The loss is O(1) while each logit's gradient is O(1/N): float32 rounding of the
             * loss limits the numeric side here, so the bound is looser (exact check below). */
            expect_gradcheck(fn_ce, &k, &k.a, 1, 3e-2, "softmax_ce");
            k.f0 = 0.1f;
            expect_gradcheck(fn_ce_smooth, &k, &k.a, 1, 3e-2, "softmax_ce_smooth");
            free_case(&k);
        }
}

Test(ops, softmax_ce_value_and_padding_rows_add_nothing)
{
    loom_tape *t = loom_tape_new(0);
    loom_tensor *x = loom_tensor_new(2, 3, 1);
    float v[] = {1, 2, 3, 50, -50, 7};
    memcpy(x->data, v, sizeof v);
    int tg[] = {2, -1};
    float w[] = {1, 0};
    loom_tensor *l = loom_op_softmax_ce(t, x, tg, w);
    cr_assert_not_null(l, "%s", loom_error_message());
    double ref = log(exp(1) + exp(2) + exp(3)) - 3;
    cr_expect_float_eq(l->data[0], (float)ref, 1e-6);
    cr_assert_eq(loom_tape_backward(t, l), LOOM_OK);
    for (int c = 0; c < 3; c++) cr_expect_eq(x->grad[3 + c], 0.0f, "padding row got gradient");
    double z = exp(1) + exp(2) + exp(3);
    cr_expect_float_eq(x->grad[0], (float)(exp(1) / z), 1e-6);
    cr_expect_float_eq(x->grad[1], (float)(exp(2) / z), 1e-6);
    cr_expect_float_eq(x->grad[2], (float)(exp(3) / z - 1), 1e-6);
    loom_tensor_free(x);
    loom_tape_free(t);
}

/* Smoothing eps is (1-eps) of the loss at the target plus eps of the mean loss over every
 * class as target: checked against the unsmoothed op, values and gradients, padding included. */
Test(ops, softmax_ce_smooth_is_a_mix_of_plain_losses)
{
    enum { N = 4, C = 5 };
    const float eps = 0.2f;
    loom_tensor *x = rand_tensor(N, C, 1, 720, -3, 3);
    int tg[N] = {1, 4, -1, 0}, each[N];
    float w[N] = {1, 0.5f, 0, 2}, want_grad[N * C] = {0};
    loom_tape *t = loom_tape_new(0);
    double want = 0;
    for (int c = -1; c < C; c++) { /* c = -1: the targets; then every class in turn */
        for (int r = 0; r < N; r++) each[r] = c < 0 || w[r] == 0 ? tg[r] : c;
        loom_tape_reset(t);
        memset(x->grad, 0, sizeof(float) * N * C);
        loom_tensor *l = loom_op_softmax_ce(t, x, each, w);
        cr_assert_not_null(l, "%s", loom_error_message());
        cr_assert_eq(loom_tape_backward(t, l), LOOM_OK);
        double share = c < 0 ? 1.0 - eps : eps / C;
        want += share * l->data[0];
        for (int i = 0; i < N * C; i++) want_grad[i] += (float)(share * x->grad[i]);
    }
    loom_tape_reset(t);
    memset(x->grad, 0, sizeof(float) * N * C);
    loom_tensor *l = loom_op_softmax_ce_smooth(t, x, tg, w, eps);
    cr_assert_not_null(l, "%s", loom_error_message());
    cr_expect_float_eq(l->data[0], (float)want, 1e-5, "smoothed loss %g, mix of plain losses %g", l->data[0], want);
    cr_assert_eq(loom_tape_backward(t, l), LOOM_OK);
    for (int i = 0; i < N * C; i++) cr_expect_float_eq(x->grad[i], want_grad[i], 1e-6, "gradient %d: %g vs %g", i, x->grad[i], want_grad[i]);
    for (int c = 0; c < C; c++) cr_expect_eq(x->grad[2 * C + c], 0.0f, "padding row got gradient");
    loom_tape_reset(t);
    cr_expect_null(loom_op_softmax_ce_smooth(t, x, tg, w, 1.0f), "smoothing 1 accepted");
    cr_expect(strstr(loom_error_message(), "label smoothing 1") != NULL, "message: %s", loom_error_message());
    loom_tensor_free(x);
    loom_tape_free(t);
}

Test(gradcheck, mse_weighted)
{
    opcase k = {0};
    k.a = rand_tensor(7, 33, 1, 800, -1, 1);
    k.target = rand_tensor(7, 33, 0, 801, -1, 1);
    k.w = malloc(sizeof(float) * 7);
    for (int i = 0; i < 7; i++) k.w[i] = (float)(i % 3);
    expect_gradcheck(fn_mse, &k, &k.a, 1, 1e-2, "mse");
    free(k.w);
    k.w = NULL;
    expect_gradcheck(fn_mse, &k, &k.a, 1, 1e-2, "mse unweighted");
    free_case(&k);
}

Test(ops, mse_value)
{
    loom_tape *t = loom_tape_new(0);
    loom_tensor *p = loom_tensor_new(1, 2, 1), *y = loom_tensor_new(1, 2, 0);
    p->data[0] = 1, p->data[1] = 3, y->data[0] = 0, y->data[1] = 1;
    loom_tensor *l = loom_op_mse(t, p, y, NULL);
    cr_expect_float_eq(l->data[0], 2.5f, 1e-6);
    loom_tensor_free(p);
    loom_tensor_free(y);
    loom_tape_free(t);
}

Test(gradcheck, dropout_fixed_mask)
{
    opcase k = {0};
    k.a = rand_tensor(33, 7, 1, 900, -1, 1);
    k.f0 = 0.3f;
    k.rng = loom_rng_init(901);
    expect_gradcheck(fn_dropout, &k, &k.a, 1, 1e-2, "dropout");
    free_case(&k);
}

Test(ops, dropout_rate_and_scale)
{
    loom_tape *t = loom_tape_new(0);
    loom_tensor *a = loom_tensor_new(100, 100, 0);
    for (int i = 0; i < 10000; i++) a->data[i] = 1.0f;
    loom_rng r = loom_rng_init(5);
    loom_tensor *y = loom_op_dropout(t, a, 0.25f, &r);
    int zeros = 0;
    for (int i = 0; i < 10000; i++) {
        if (y->data[i] == 0.0f) zeros++;
        else cr_expect_float_eq(y->data[i], 1.0f / 0.75f, 1e-6);
    }
    cr_expect(zeros > 2300 && zeros < 2700, "dropped %d of 10000 at p=0.25", zeros);
    cr_expect_eq(r.counter, 10000u, "rng advanced by one draw per element");
    loom_tensor_free(a);
    loom_tape_free(t);
}

Test(gradcheck, select_rows_mask)
{
    opcase k = {0};
    k.a = rand_tensor(7, 33, 1, 1000, -1, 1);
    k.b = rand_tensor(7, 33, 1, 1001, -1, 1);
    unsigned char keep[7] = {1, 0, 0, 1, 1, 0, 1};
    k.idx = malloc(sizeof keep);
    memcpy(k.idx, keep, sizeof keep);
    loom_tensor *wrt[2] = {k.a, k.b};
    expect_gradcheck(fn_select, &k, wrt, 2, 1e-2, "select_rows");
    free_case(&k);
}

/* h_t = tanh(x_t W + h_{t-1} U + b) for 5 steps: BPTT is just the recorded ops. */
static loom_tensor *rnn5(loom_tape *t, void *ctx)
{
    opcase *k = ctx;
    loom_tensor *h = loom_tape_zeros(t, 3, 7);
    for (int s = 0; s < 5; s++) {
        loom_tensor *x = loom_tape_tensor(t, 3, 7);
        loom_rng r = loom_rng_init(77 + s);
        loom_rng_fill_uniform(&r, x->data, 21, -1, 1);
        h = loom_op_tanh(t, loom_op_add(t, loom_op_add(t, loom_op_matmul(t, x, k->a, 0, 0),
                                                        loom_op_matmul(t, h, k->b, 0, 0)), k->c));
    }
    return project(t, h);
}

Test(gradcheck, composite_recurrence_through_time)
{
    opcase k = {0};
    k.a = rand_tensor(7, 7, 1, 1100, -0.5f, 0.5f); /* W */
    k.b = rand_tensor(7, 7, 1, 1101, -0.5f, 0.5f); /* U */
    k.c = rand_tensor(1, 7, 1, 1102, -0.5f, 0.5f); /* b */
    loom_tensor *wrt[3] = {k.a, k.b, k.c};
    expect_gradcheck(rnn5, &k, wrt, 3, 1e-2, "5-step recurrence");
    free_case(&k);
}


static loom_tensor *fn_vstack(loom_tape *t, void *ctx)
{
    opcase *k = ctx;
    loom_tensor *parts[3] = {k->a, k->b, k->c};
    return project(t, loom_op_vstack(t, parts, 3));
}

Test(gradcheck, vstack_odd_heights)
{
    opcase k = {0};
    k.a = rand_tensor(1, 7, 1, 1200, -1, 1);
    k.b = rand_tensor(7, 7, 0, 1201, -1, 1); /* no gradient wanted */
    k.c = rand_tensor(33, 7, 1, 1202, -1, 1);
    loom_tensor *wrt[2] = {k.a, k.c};
    expect_gradcheck(fn_vstack, &k, wrt, 2, 1e-2, "vstack");
    free_case(&k);
}

/* Two overlapping uses of views of one tensor: their gradients meet in its buffer. */
static loom_tensor *fn_views(loom_tape *t, void *ctx)
{
    opcase *k = ctx;
    loom_tensor *top = loom_tape_view_rows(t, k->a, 0, 5), *bottom = loom_tape_view_rows(t, k->a, 2, 5);
    return project(t, loom_op_mul(t, loom_op_tanh(t, top), bottom));
}

Test(gradcheck, view_rows_share_the_gradient)
{
    opcase k = {0};
    k.a = rand_tensor(7, 33, 1, 1300, -1, 1);
    expect_gradcheck(fn_views, &k, &k.a, 1, 1e-2, "view_rows");
    loom_tape *t = loom_tape_new(0);
    loom_tensor *v = loom_tape_view_rows(t, k.a, 3, 2);
    cr_expect_eq(v->data, k.a->data + 3 * 33, "a view copies nothing");
    cr_expect_eq(loom_tape_length(t), 0, "a view records nothing");
    cr_expect_null(loom_tape_view_rows(t, k.a, 6, 2));
    loom_tape_free(t);
    free_case(&k);
}

/* The packed GEMM against a double-precision sum, over shapes with every row and
 * column tail and inner sizes across its 512-step passes, B plain and transposed,
 * onto C or from a bias row. */
Test(kernels, gemm_packed_matches_a_reference)
{
    static const int shapes[][3] = {{1, 1, 1}, {5, 17, 3}, {6, 16, 256}, {7, 33, 257}, {13, 40, 1100}, {25, 50, 600}, {32, 1280, 20}};
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
        for (int tb = 0; tb < 2; tb++) {
            int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
            float *A = malloc(sizeof(float) * M * K), *B = malloc(sizeof(float) * K * N), *C = malloc(sizeof(float) * M * N);
            float *P = malloc(sizeof(float) * loom_kernel_pack_size(K, N)), *C0 = malloc(sizeof(float) * M * N);
            cr_assert(A && B && C && P && C0);
            for (int i = 0; i < M * K; i++) A[i] = (float)((i * 37) % 101) / 50.0f - 1.0f;
            for (int i = 0; i < K * N; i++) B[i] = (float)((i * 53) % 97) / 48.0f - 1.0f;
            for (int i = 0; i < M * N; i++) C[i] = C0[i] = (float)(i % 7) - 3.0f;
            loom_kernel_pack_b(tb, K, N, B, tb ? K : N, P); /* B read as [K x N], or as [N x K] transposed */
            int bias = (int)(s + tb) % 2; /* half the cases start from a bias row, not from C */
            if (bias)
                for (int i = 0; i < M * N; i++) C[i] = NAN; /* unread */
            loom_kernel_gemm_packed(M, N, K, A, K, P, bias ? C0 : NULL, C, N);
            for (int i = 0; i < M; i++)
                for (int j = 0; j < N; j++) {
                    double ref = C0[bias ? j : i * N + j];
                    for (int k = 0; k < K; k++) ref += (double)A[i * K + k] * (tb ? B[j * K + k] : B[k * N + j]);
                    cr_assert(fabs(C[i * N + j] - ref) <= 1e-5 * K + 1e-5, "%dx%dx%d tb %d: C[%d][%d] = %g, not %g", M, N,
                              K, tb, i, j, C[i * N + j], ref);
                }
            free(A), free(B), free(C), free(P), free(C0);
        }
}

/* Each C element is one chain in k order: rows run alone give the bits they get together.
 * 25 rows take every AVX2 tile shape: five, six, and four of 24 columns over panels in
 * threes (50 columns: three full panels and a short one); alone, each row a thin one. */
Test(kernels, gemm_packed_rows_alone_give_the_same_bits)
{
    enum { M = 25, N = 50, K = 600 }; /* two passes over k */
    static float A[M * K], B[N * K], C[M * N], D[M * N], P[((N + 15) / 16) * 16 * K], bias[N];
    for (int i = 0; i < M * K; i++) A[i] = sinf((float)i);
    for (int i = 0; i < N * K; i++) B[i] = cosf((float)i * 0.7f);
    for (int i = 0; i < N; i++) bias[i] = 0.01f * (float)i - 0.2f;
    loom_kernel_pack_b(1, K, N, B, K, P);
    for (int b = 0; b < 2; b++) { /* onto C, then from the bias */
        for (int i = 0; i < M * N; i++) C[i] = D[i] = (float)(i % 9) * 0.25f;
        loom_kernel_gemm_packed(M, N, K, A, K, P, b ? bias : NULL, C, N);
        for (int i = 0; i < M; i++) loom_kernel_gemm_packed(1, N, K, A + i * K, K, P, b ? bias : NULL, D + i * N, N);
        cr_assert(memcmp(C, D, sizeof C) == 0, "a row's bits depend on the rows beside it (%s)", b ? "bias" : "onto C");
    }
}

/* The blocked sums against a sequential long-double sum, at sizes around the lane count,
 * the block size and the parallel threshold; and the same bits on one thread as on two. */
Test(kernels, sums_match_a_reference_on_any_thread_count)
{
    static const size_t ns[] = {1, 7, 8, 9, 4095, 4097, 65536 + 13, 300001};
    float *x = malloc(sizeof(float) * 300001);
    cr_assert(x);
    for (size_t i = 0; i < 300001; i++) x[i] = sinf((float)i * 0.37f) * (float)(1 + i % 13);
    int threads = loom_threads_get();
    for (size_t k = 0; k < sizeof ns / sizeof *ns; k++) {
        long double s = 0, q = 0;
        for (size_t i = 0; i < ns[k]; i++) s += x[i], q += (long double)x[i] * x[i];
        double s2 = loom_kernel_sum(x, ns[k]), q2 = loom_kernel_sumsq(x, ns[k]);
        cr_assert(fabsl(s2 - s) <= 1e-12L * (fabsl(q) + 1), "n %zu: sum %.17g, not %.17Lg", ns[k], s2, s);
        cr_assert(fabsl(q2 - q) <= 1e-12L * q, "n %zu: sum of squares %.17g, not %.17Lg", ns[k], q2, q);
        loom_threads_set(1);
        double s1 = loom_kernel_sum(x, ns[k]), q1 = loom_kernel_sumsq(x, ns[k]);
        loom_threads_set(threads);
        cr_assert(memcmp(&s1, &s2, sizeof s1) == 0 && memcmp(&q1, &q2, sizeof q1) == 0,
                  "n %zu: the sums' bits depend on the thread count", ns[k]);
    }
    free(x);
}

/* Zeroing a large range (split over the team) clears it all and nothing beside it. */
Test(kernels, zero_clears_exactly_its_range)
{
    enum { N = (1 << 19) + 5 };
    float *x = malloc(sizeof(float) * (N + 2));
    cr_assert(x);
    for (size_t n = 3; n <= N; n = n < N / 64 ? n * 64 + 1 : n == N ? N + 1 : N) { /* 3, 193, 12353, N */
        for (size_t i = 0; i < N + 2; i++) x[i] = 1.5f;
        loom_kernel_zero(x + 1, n);
        cr_assert(x[0] == 1.5f && x[n + 1] == 1.5f, "n %zu: a neighbour was written", n);
        for (size_t i = 1; i <= n; i++) cr_assert(x[i] == 0.0f, "n %zu: x[%zu] = %g, not 0", n, i - 1, x[i]);
    }
    free(x);
}

/* No inner dimension: C is the bias (or left alone), and nothing is read from A or P. */
Test(kernels, gemm_packed_with_k_zero_is_the_bias)
{
    float bias[5] = {1, 2, 3, 4, 5}, C[2 * 5], D[2 * 5];
    for (int i = 0; i < 10; i++) C[i] = D[i] = -1.0f;
    loom_kernel_gemm_packed(2, 5, 0, NULL, 0, NULL, bias, C, 5);
    loom_kernel_gemm_packed(2, 5, 0, NULL, 0, NULL, NULL, D, 5);
    for (int i = 0; i < 10; i++) {
        cr_assert(C[i] == bias[i % 5], "C[%d] = %g, not the bias %g", i, C[i], bias[i % 5]);
        cr_assert(D[i] == -1.0f, "without a bias, C must be left as it was");
    }
}
