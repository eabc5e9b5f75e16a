/* Ops for attention: a matrix product over blocks of rows, a softmax along rows with a
 * mask, and a transpose of a tensor's row blocks (time-major <-> batch-major). */
#include <math.h>
#include <string.h>

#include "internal.h"

/* Block i of a tensor of n blocks: its first value, given the block's rows. */
static const float *blk(const loom_tensor *x, int i, int n) { return x->data + (size_t)i * (x->rows / n) * x->cols; }

static void bmm_backward(loom_node *nd)
{
    loom_tensor *a = nd->in[0], *b = nd->in[1], *c = nd->out;
    int n = nd->i[0], ta = nd->i[1], tb = nd->i[2];
    int ar = a->rows / n, br = b->rows / n, M = c->rows / n, N = c->cols, K = ta ? ar : a->cols;
    float *ga = a->requires_grad ? loom_tape_grad(nd->tape, a) : NULL;
    float *gb = b->requires_grad ? loom_tape_grad(nd->tape, b) : NULL;
    if ((a->requires_grad && !ga) || (b->requires_grad && !gb)) return;
    for (int i = 0; i < n; i++) {
        const float *A = blk(a, i, n), *B = blk(b, i, n), *dC = c->grad + (size_t)i * M * N;
        if (ga) {
            float *dA = ga + (size_t)i * ar * a->cols;
            if (!ta) /* dA[M,K] += dC op(B)^T */
                loom_kernel_gemm(0, !tb, M, K, N, 1.0f, dC, N, B, b->cols, 1.0f, dA, a->cols);
            else /* dA[K,M] += op(B) dC^T */
                loom_kernel_gemm(tb, 1, K, M, N, 1.0f, B, b->cols, dC, N, 1.0f, dA, a->cols);
        }
        if (gb) {
            float *dB = gb + (size_t)i * br * b->cols;
            if (!tb) /* dB[K,N] += op(A)^T dC */
                loom_kernel_gemm(!ta, 0, K, N, M, 1.0f, A, a->cols, dC, N, 1.0f, dB, b->cols);
            else /* dB[N,K] += dC^T op(A) */
                loom_kernel_gemm(1, ta, N, K, M, 1.0f, dC, N, A, a->cols, 1.0f, dB, b->cols);
        }
    }
}

loom_tensor *loom_op_bmm(loom_tape *t, loom_tensor *a, loom_tensor *b, int n, int ta, int tb)
{
    loom_tensor *in[2] = {a, b};
    if (loom_tape_null_inputs(t, "bmm", in, 2)) return NULL;
    if (n <= 0 || a->rows % n || b->rows % n)
        return loom_tape_fail(t, LOOM_ESHAPE, "bmm: [%dx%d] and [%dx%d] do not split into %d blocks of rows", a->rows,
                              a->cols, b->rows, b->cols, n);
    int ar = a->rows / n, br = b->rows / n;
    int M = ta ? a->cols : ar, K = ta ? ar : a->cols, Kb = tb ? b->cols : br, N = tb ? br : b->cols;
    if (K != Kb)
        return loom_tape_fail(t, LOOM_ESHAPE, "bmm: %d blocks of [%dx%d]%s @ [%dx%d]%s: inner sizes differ (%d vs %d)", n,
                              ar, a->cols, ta ? "^T" : "", br, b->cols, tb ? "^T" : "", K, Kb);
    loom_tensor *c = loom_tape_tensor(t, n * M, N);
    if (!c) return NULL;
    for (int i = 0; i < n; i++)
        loom_kernel_gemm(ta, tb, M, N, K, 1.0f, blk(a, i, n), a->cols, blk(b, i, n), b->cols, 0.0f,
                         c->data + (size_t)i * M * N, N);
    loom_node *nd = loom_tape_record(t, "bmm", bmm_backward, c, in, 2);
    if (nd) {
        nd->i[0] = n;
        nd->i[1] = ta;
        nd->i[2] = tb;
    }
    return c;
}

static void masked_softmax_backward(loom_node *nd)
{
    loom_tensor *a = nd->in[0], *y = nd->out;
    float *g = loom_tape_grad(nd->tape, a);
    if (!g) return;
    int C = y->cols;
    /* dx = y (dy - sum(y dy)); masked entries have y = 0, so they get nothing. */
    for (int r = 0; r < y->rows; r++) {
        const float *p = y->data + (size_t)r * C, *dy = y->grad + (size_t)r * C;
        double s = 0;
        for (int c = 0; c < C; c++) s += (double)p[c] * dy[c];
        float *gr = g + (size_t)r * C;
        for (int c = 0; c < C; c++) gr[c] += p[c] * (dy[c] - (float)s);
    }
}

loom_tensor *loom_op_masked_softmax(loom_tape *t, loom_tensor *a, const unsigned char *mask)
{
    if (loom_tape_null_inputs(t, "masked_softmax", &a, 1)) return NULL;
    loom_tensor *y = loom_tape_tensor(t, a->rows, a->cols);
    if (!y) return NULL;
    int C = a->cols;
    for (int r = 0; r < a->rows; r++) {
        const float *x = a->data + (size_t)r * C;
        const unsigned char *keep = mask ? mask + (size_t)r * C : NULL;
        float *p = y->data + (size_t)r * C, m = -INFINITY;
        for (int c = 0; c < C; c++)
            if ((!keep || keep[c]) && x[c] > m) m = x[c];
        double z = 0;
        for (int c = 0; c < C; c++) z += (p[c] = (!keep || keep[c]) ? expf(x[c] - m) : 0.0f);
        /* A row with nothing kept (or all -inf) stays all zero rather than 0/0. */
        float inv = z > 0 ? (float)(1.0 / z) : 0.0f;
        for (int c = 0; c < C; c++) p[c] *= inv;
    }
    loom_tape_record(t, "masked_softmax", masked_softmax_backward, y, &a, 1);
    return y;
}

/* Row i*m + j of x goes to row j*n + i of y (x: n blocks of m rows); rows of cols floats. */
static void permute_rows(float *y, const float *x, int n, int m, int cols, int add)
{
    size_t rb = (size_t)cols;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < m; j++) {
            const float *src = x + ((size_t)i * m + j) * rb;
            float *dst = y + ((size_t)j * n + i) * rb;
            if (add)
                for (size_t k = 0; k < rb; k++) dst[k] += src[k];
            else
                memcpy(dst, src, rb * sizeof(float));
        }
}

static void transpose_blocks_backward(loom_node *nd)
{
    loom_tensor *a = nd->in[0], *y = nd->out;
    float *g = loom_tape_grad(nd->tape, a);
    if (!g) return;
    int n = nd->i[0], m = a->rows / n;
    permute_rows(g, y->grad, m, n, a->cols, 1); /* the inverse permutation: y is m blocks of n rows */
}

loom_tensor *loom_op_transpose_blocks(loom_tape *t, loom_tensor *a, int n)
{
    if (loom_tape_null_inputs(t, "transpose_blocks", &a, 1)) return NULL;
    if (n <= 0 || a->rows % n)
        return loom_tape_fail(t, LOOM_ESHAPE, "transpose_blocks: [%dx%d] does not split into %d blocks of rows", a->rows,
                              a->cols, n);
    loom_tensor *y = loom_tape_tensor(t, a->rows, a->cols);
    if (!y) return NULL;
    permute_rows(y->data, a->data, n, a->rows / n, a->cols, 0);
    loom_node *nd = loom_tape_record(t, "transpose_blocks", transpose_blocks_backward, y, &a, 1);
    if (nd) nd->i[0] = n;
    return y;
}
