/* The attention ops (autograd/ops_attention.c): values against plain loops, gradchecks,
 * masks, and a whole attention step (scores, masked softmax, context, stacked over time). */
#include "helpers.h"

typedef struct acase {
    loom_tensor *a, *b;
    int n, ta, tb;
    const unsigned char *mask;
    int T, B; /* attention chain: keys [T*B x D] time-major, queries [B x D] per step */
    loom_tensor *q[3];
} acase;

static loom_tensor *fn_bmm(loom_tape *t, void *ctx)
{
    acase *k = ctx;
    return project(t, loom_op_bmm(t, k->a, k->b, k->n, k->ta, k->tb));
}

Test(attention_ops, bmm_values_and_gradients_every_transpose)
{
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            /* 3 blocks of op(a_i) [2 x 4] @ op(b_i) [4 x 5]. */
            acase k = {.n = 3, .ta = ta, .tb = tb};
            k.a = ta ? rand_tensor(12, 2, 1, 1, -1, 1) : rand_tensor(6, 4, 1, 1, -1, 1);
            k.b = tb ? rand_tensor(15, 4, 1, 2, -1, 1) : rand_tensor(12, 5, 1, 2, -1, 1);
            loom_tape *t = loom_tape_new(0);
            loom_tensor *c = loom_op_bmm(t, k.a, k.b, 3, ta, tb);
            cr_assert_not_null(c, "%s", loom_error_message());
            cr_assert(c->rows == 6 && c->cols == 5);
            int ar = k.a->rows / 3, br = k.b->rows / 3;
            for (int i = 0; i < 3; i++)
                for (int r = 0; r < 2; r++)
                    for (int col = 0; col < 5; col++) {
                        double s = 0;
                        for (int j = 0; j < 4; j++) {
                            float av = ta ? k.a->data[(i * ar + j) * 2 + r] : k.a->data[(i * ar + r) * 4 + j];
                            float bv = tb ? k.b->data[(i * br + col) * 4 + j] : k.b->data[(i * br + j) * 5 + col];
                            s += (double)av * bv;
                        }
                        cr_expect_float_eq(c->data[(i * 2 + r) * 5 + col], (float)s, 1e-5, "ta %d tb %d", ta, tb);
                    }
            loom_tape_free(t);
            loom_tensor *wrt[2] = {k.a, k.b};
            expect_gradcheck(fn_bmm, &k, wrt, 2, 2e-3, ta ? (tb ? "bmm a^T b^T" : "bmm a^T b") : (tb ? "bmm a b^T" : "bmm a b"));
            loom_tensor_free(k.a);
            loom_tensor_free(k.b);
        }
}

Test(attention_ops, bmm_refuses_blocks_that_do_not_fit)
{
    loom_tape *t = loom_tape_new(0);
    loom_tensor *a = rand_tensor(6, 4, 0, 1, -1, 1), *b = rand_tensor(9, 4, 0, 2, -1, 1);
    cr_expect_null(loom_op_bmm(t, a, b, 2, 0, 1));
    cr_expect(strstr(loom_error_message(), "do not split into 2 blocks"), "%s", loom_error_message());
    loom_tape_reset(t);
    cr_expect_null(loom_op_bmm(t, a, b, 3, 0, 0)); /* [2x4] @ [3x4]: inner 4 vs 3 */
    cr_expect(strstr(loom_error_message(), "inner sizes differ (4 vs 3)"), "%s", loom_error_message());
    loom_tape_reset(t);
    cr_expect_null(loom_op_bmm(t, a, b, 0, 0, 1));
    loom_tape_free(t);
    loom_tensor_free(a);
    loom_tensor_free(b);
}

static loom_tensor *fn_softmax(loom_tape *t, void *ctx)
{
    acase *k = ctx;
    return project(t, loom_op_masked_softmax(t, k->a, k->mask));
}

Test(attention_ops, masked_softmax_values_and_gradients)
{
    static const unsigned char mask[3 * 4] = {1, 1, 1, 1, 1, 1, 0, 0, 0, 1, 0, 1};
    acase k = {.a = rand_tensor(3, 4, 1, 5, -2, 2), .mask = mask};
    k.a->data[7] = 1e30f; /* a huge masked score must not leak into its row */
    loom_tape *t = loom_tape_new(0);
    loom_tensor *y = loom_op_masked_softmax(t, k.a, mask);
    cr_assert_not_null(y, "%s", loom_error_message());
    for (int r = 0; r < 3; r++) {
        double z = 0, s = 0;
        for (int c = 0; c < 4; c++) z += mask[r * 4 + c] ? exp(k.a->data[r * 4 + c]) : 0;
        for (int c = 0; c < 4; c++) {
            double want = mask[r * 4 + c] ? exp(k.a->data[r * 4 + c]) / z : 0;
            cr_expect_float_eq(y->data[r * 4 + c], (float)want, 1e-6, "row %d col %d", r, c);
            s += y->data[r * 4 + c];
        }
        cr_expect_float_eq(s, 1.0, 1e-6);
    }
    /* NULL mask: a plain softmax; a row with nothing kept: all zero. */
    static const unsigned char none[4] = {0, 0, 0, 0};
    loom_tensor *row = loom_op_rows(t, k.a, 0, 1);
    loom_tensor *p = loom_op_masked_softmax(t, row, NULL), *zero = loom_op_masked_softmax(t, row, none);
    cr_assert(p && zero);
    cr_expect_float_eq(p->data[0], y->data[0], 1e-7);
    for (int c = 0; c < 4; c++) cr_expect_eq(zero->data[c], 0.0f);
    loom_tape_free(t);
    k.a->data[7] = 0.3f;
    loom_tensor *wrt[1] = {k.a};
    expect_gradcheck(fn_softmax, &k, wrt, 1, 2e-3, "masked_softmax");
    /* Masked entries get no gradient. */
    loom_tensor_zero_grad(k.a);
    t = loom_tape_new(0);
    cr_assert_eq(loom_tape_backward(t, fn_softmax(t, &k)), LOOM_OK, "%s", loom_error_message());
    for (int i = 0; i < 12; i++)
        if (!mask[i]) cr_expect_eq(k.a->grad[i], 0.0f, "masked entry %d got a gradient", i);
    loom_tape_free(t);
    loom_tensor_free(k.a);
}

static loom_tensor *fn_transpose(loom_tape *t, void *ctx)
{
    acase *k = ctx;
    return project(t, loom_op_transpose_blocks(t, k->a, k->n));
}

Test(attention_ops, transpose_blocks_permutes_rows_and_back)
{
    acase k = {.a = rand_tensor(6, 2, 1, 7, -1, 1), .n = 3}; /* T=3 blocks of B=2 rows */
    loom_tape *t = loom_tape_new(0);
    loom_tensor *y = loom_op_transpose_blocks(t, k.a, 3), *back = loom_op_transpose_blocks(t, y, 2);
    cr_assert(y && back, "%s", loom_error_message());
    for (int tt = 0; tt < 3; tt++)
        for (int b = 0; b < 2; b++)
            for (int c = 0; c < 2; c++) cr_expect_eq(y->data[(b * 3 + tt) * 2 + c], k.a->data[(tt * 2 + b) * 2 + c]);
    cr_expect_arr_eq(back->data, k.a->data, sizeof(float) * 12);
    cr_expect_null(loom_op_transpose_blocks(t, k.a, 4));
    cr_expect(strstr(loom_error_message(), "does not split into 4 blocks"), "%s", loom_error_message());
    loom_tape_free(t);
    loom_tensor *wrt[1] = {k.a};
    expect_gradcheck(fn_transpose, &k, wrt, 1, 1e-3, "transpose_blocks");
    loom_tensor_free(k.a);
}

/* Three decoder steps of dot-product attention over keys of variable length, each step's
 * context beside its query, stacked across time: the path seq2seq's decoder takes. */
static const unsigned char len_mask[2 * 4] = {1, 1, 1, 1, 1, 1, 0, 0}; /* lengths 4 and 2 */

static loom_tensor *fn_attend(loom_tape *t, void *ctx)
{
    acase *k = ctx;
    loom_tensor *keys = loom_op_transpose_blocks(t, loom_op_tanh(t, k->a), k->T); /* [B*T x D] */
    loom_tensor *steps[3];
    for (int s = 0; s < 3; s++) {
        loom_tensor *sc = loom_op_bmm(t, k->q[s], keys, k->B, 0, 1);               /* [B x T] */
        loom_tensor *al = loom_op_masked_softmax(t, sc, k->mask);
        loom_tensor *cx = loom_op_bmm(t, al, keys, k->B, 0, 0);                    /* [B x D] */
        loom_tensor *parts[2] = {cx, k->q[s]};
        steps[s] = loom_op_concat(t, parts, 2);
    }
    return project(t, loom_op_vstack(t, steps, 3));
}

Test(attention_ops, attention_steps_gradcheck_with_lengths)
{
    acase k = {.a = rand_tensor(8, 3, 1, 9, -1, 1), .T = 4, .B = 2, .mask = len_mask};
    for (int s = 0; s < 3; s++) k.q[s] = rand_tensor(2, 3, 1, 20 + s, -1, 1);
    loom_tensor *wrt[4] = {k.a, k.q[0], k.q[1], k.q[2]};
    expect_gradcheck(fn_attend, &k, wrt, 4, 2e-3, "attention");
    /* Keys past a sequence's length (rows t*B+1 for t >= 2) get no gradient. */
    loom_tensor_zero_grad(k.a);
    loom_tape *t = loom_tape_new(0);
    cr_assert_eq(loom_tape_backward(t, fn_attend(t, &k)), LOOM_OK, "%s", loom_error_message());
    for (int tt = 2; tt < 4; tt++)
        for (int c = 0; c < 3; c++) cr_expect_eq(k.a->grad[(tt * 2 + 1) * 3 + c], 0.0f, "padding key t=%d", tt);
    loom_tape_free(t);
    loom_tensor_free(k.a);
    for (int s = 0; s < 3; s++) loom_tensor_free(k.q[s]);
}
