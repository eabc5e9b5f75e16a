/* The recurrent projection shared by the fused cells, with its weight
 * gradient deferred to one GEMM over the whole window. */
#include <cblas.h>
#include <math.h>
#include <string.h>

#include "internal.h"

typedef struct rec_ctx {
    loom_tensor *W, *b, *hext;
    float *G;
    int T, B;
} rec_ctx;

static void rec_weight_backward(loom_node *nd)
{
    rec_ctx *cx = nd->ctx;
    int GH = cx->W->rows, H = cx->W->cols, N = cx->T * cx->B;
    if (cx->W->requires_grad) {
        float *gw = loom_tape_grad(nd->tape, cx->W);
        if (!gw) return;
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, GH, H, N, 1.0f, cx->G, GH, cx->hext->data, H, 1.0f, gw, H);
    }
    if (cx->b && cx->b->requires_grad) {
        float *gb = loom_tape_grad(nd->tape, cx->b);
        if (!gb) return;
        loom_kernel_add_colsum(gb, cx->G, N, GH);
    }
}

loom_status loom_rec_weight_begin(loom_tape *t, loom_tensor *W, loom_tensor *b, float *G, loom_tensor *hext, int T, int B)
{
    if (loom_tape_nograd(t) || !G) return LOOM_OK;
    loom_arena *ar = loom_tape_arena(t);
    rec_ctx *cx = loom_arena_alloc(ar, sizeof *cx);
    loom_tensor *alias = loom_arena_alloc(ar, sizeof *alias);
    if (!cx || !alias) {
        loom_tape_fail(t, LOOM_ENOMEM, "recurrent weight: out of memory");
        return LOOM_ENOMEM;
    }
    *cx = (rec_ctx){W, b, hext, G, T, B};
    /* The node's output is a stand-in whose gradient is G itself, so backward never skips it. */
    *alias = *W;
    alias->owns = 0;
    loom_tensor *in[2] = {W, b};
    loom_node *nd = loom_tape_record(t, "rec_weight", rec_weight_backward, alias, in, b ? 2 : 1);
    if (nd) {
        alias->grad = G;
        nd->ctx = cx;
    }
    return loom_tape_status(t);
}

void loom_rec_forward(float *pre, const float *h, const loom_tensor *W, const loom_tensor *b, int B)
{
    int GH = W->rows, H = W->cols;
    if (b)
        for (int r = 0; r < B; r++) {
            float *p = pre + (size_t)r * GH;
            for (int j = 0; j < GH; j++) p[j] += b->data[j];
        }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, GH, H, 1.0f, h, H, W->data, H, 1.0f, pre, GH);
}

void loom_rec_backward(float *dh, const float *dpre, const loom_tensor *W, int B)
{
    int GH = W->rows, H = W->cols;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, H, GH, 1.0f, dpre, GH, W->data, H, 1.0f, dh, H);
}
