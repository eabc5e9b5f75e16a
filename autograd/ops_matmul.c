/* Matrix product through CBLAS sgemm, with optional transposes. */

#include "internal.h"

static void matmul_backward(loom_node *nd)
{
    loom_tensor *a = nd->in[0], *b = nd->in[1], *c = nd->out;
    int ta = nd->i[0], tb = nd->i[1];
    int M = c->rows, N = c->cols, K = ta ? a->rows : a->cols;
    if (a->requires_grad) {
        float *ga = loom_tape_grad(nd->tape, a);
        if (!ga) return;
        if (!ta) /* dA[M,K] += dC[M,N] op(B)^T */
            loom_kernel_gemm(0, !tb, M, K, N, 1.0f, c->grad, N, b->data, b->cols, 1.0f, ga, a->cols);
        else /* dA[K,M] += op(B) dC^T */
            loom_kernel_gemm(tb, 1, K, M, N, 1.0f, b->data, b->cols, c->grad, N, 1.0f, ga, a->cols);
    }
    if (b->requires_grad) {
        float *gb = loom_tape_grad(nd->tape, b);
        if (!gb) return;
        if (!tb) /* dB[K,N] += op(A)^T dC */
            loom_kernel_gemm(!ta, 0, K, N, M, 1.0f, a->data, a->cols, c->grad, N, 1.0f, gb, b->cols);
        else /* dB[N,K] += dC^T op(A) */
            loom_kernel_gemm(1, ta, N, K, M, 1.0f, c->grad, N, a->data, a->cols, 1.0f, gb, b->cols);
    }
}

loom_tensor *loom_op_matmul(loom_tape *t, loom_tensor *a, loom_tensor *b, int ta, int tb)
{
    loom_tensor *in[2] = {a, b};
    if (loom_tape_null_inputs(t, "matmul", in, 2)) return NULL;
    int M = ta ? a->cols : a->rows, K = ta ? a->rows : a->cols;
    int Kb = tb ? b->cols : b->rows, N = tb ? b->rows : b->cols;
    if (K != Kb)
        return loom_tape_fail(t, LOOM_ESHAPE, "matmul: [%dx%d]%s @ [%dx%d]%s: inner sizes differ (%d vs %d)", a->rows,
                              a->cols, ta ? "^T" : "", b->rows, b->cols, tb ? "^T" : "", K, Kb);
    loom_tensor *c = loom_tape_tensor(t, M, N);
    if (!c) return NULL;
    loom_kernel_gemm(ta, tb, M, N, K, 1.0f, a->data, a->cols, b->data, b->cols, 0.0f, c->data, N);
    loom_node *nd = loom_tape_record(t, "matmul", matmul_backward, c, in, 2);
    if (nd) {
        nd->i[0] = ta;
        nd->i[1] = tb;
    }
    return c;
}
