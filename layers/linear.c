/* Affine op (x W^T + b, one GEMM each way) and the Linear / Embedding layers. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

static void linear_backward(loom_node *nd)
{
    loom_tensor *x = nd->in[0], *W = nd->in[1], *b = nd->n_in > 2 ? nd->in[2] : NULL, *y = nd->out;
    int N = x->rows, Ni = x->cols, No = W->rows;
    if (x->requires_grad) { /* dX[N,Ni] += dY[N,No] W[No,Ni] */
        float *gx = loom_tape_grad(nd->tape, x);
        if (!gx) return;
        loom_kernel_gemm(0, 0, N, Ni, No, 1.0f, y->grad, No, W->data, Ni, 1.0f, gx, Ni);
    }
    if (W->requires_grad) { /* dW[No,Ni] += dY^T X */
        float *gw = loom_tape_grad(nd->tape, W);
        if (!gw) return;
        loom_kernel_gemm(1, 0, No, Ni, N, 1.0f, y->grad, No, x->data, Ni, 1.0f, gw, Ni);
    }
    if (b && b->requires_grad) {
        float *gb = loom_tape_grad(nd->tape, b);
        if (!gb) return;
        loom_kernel_add_colsum(gb, y->grad, N, No);
    }
}

loom_tensor *loom_linear_apply(loom_tape *t, loom_tensor *x, loom_tensor *W, loom_tensor *b)
{
    if (!t) return LOOM_NULL_ARG("linear_apply", "tape"), NULL;
    if (!x || !W) return loom_tape_fail(t, LOOM_EARG, "linear: %s is NULL", x ? "weight" : "input");
    if (x->cols != W->cols)
        return loom_tape_fail(t, LOOM_ESHAPE, "linear: input [%dx%d] @ weight^T [%dx%d]^T: inner sizes differ (%d vs %d)",
                              x->rows, x->cols, W->rows, W->cols, x->cols, W->cols);
    if (b && (b->rows != 1 || b->cols != W->rows))
        return loom_tape_fail(t, LOOM_ESHAPE, "linear: bias is [%dx%d], expected [1x%d]", b->rows, b->cols, W->rows);
    int N = x->rows, Ni = x->cols, No = W->rows;
    loom_tensor *y = loom_tape_tensor(t, N, No);
    if (!y) return NULL;
    if (b)
        for (int r = 0; r < N; r++) memcpy(y->data + (size_t)r * No, b->data, (size_t)No * sizeof(float));
    loom_kernel_gemm(0, 1, N, No, Ni, 1.0f, x->data, Ni, W->data, Ni, b ? 1.0f : 0.0f, y->data, No);
    loom_tensor *in[3] = {x, W, b};
    loom_node *nd = loom_tape_record(t, "linear", linear_backward, y, in, b ? 3 : 2);
    (void)nd;
    return y;
}

/* The name "<prefix>.<what>" into name[n]; an error naming fn when it does not fit. */
static loom_status param_name(char *name, size_t n, const char *fn, const char *prefix, const char *what)
{
    if (snprintf(name, n, "%s.%s", prefix, what) >= (int)n)
        return loom_error_set(LOOM_EARG, "%s: prefix '%s' is too long", fn, prefix);
    return LOOM_OK;
}

loom_status loom_linear_declare(loom_linear *l, loom_params *ps, const char *prefix, int in, int out)
{
    if (!l) return LOOM_NULL_ARG("linear_declare", "layer");
    if (!ps) return LOOM_NULL_ARG("linear_declare", "params");
    if (!prefix) return LOOM_NULL_ARG("linear_declare", "prefix");
    if (in <= 0 || out <= 0)
        return loom_error_set(LOOM_EARG, "linear_declare: sizes in %d and out %d must be positive", in, out);
    char name[96];
    float k = 1.0f / sqrtf((float)in);
    if (param_name(name, sizeof name, "linear_declare", prefix, "weight") != LOOM_OK) return LOOM_EARG;
    l->weight = loom_params_add(ps, name, out, in, (loom_init){LOOM_INIT_UNIFORM, -k, k});
    param_name(name, sizeof name, "linear_declare", prefix, "bias"); /* shorter than "weight": fits */
    l->bias = loom_params_add(ps, name, 1, out, (loom_init){LOOM_INIT_UNIFORM, -k, k});
    return l->weight && l->bias ? LOOM_OK : LOOM_EARG;
}

loom_status loom_embedding_declare(loom_embedding *e, loom_params *ps, const char *prefix, int vocab, int dim)
{
    if (!e) return LOOM_NULL_ARG("embedding_declare", "layer");
    if (!ps) return LOOM_NULL_ARG("embedding_declare", "params");
    if (!prefix) return LOOM_NULL_ARG("embedding_declare", "prefix");
    if (vocab <= 0 || dim <= 0)
        return loom_error_set(LOOM_EARG, "embedding_declare: sizes vocab %d and dim %d must be positive", vocab, dim);
    char name[96];
    if (param_name(name, sizeof name, "embedding_declare", prefix, "weight") != LOOM_OK) return LOOM_EARG;
    e->weight = loom_params_add(ps, name, vocab, dim, (loom_init){LOOM_INIT_NORMAL, 0.0f, 1.0f});
    return e->weight ? LOOM_OK : LOOM_EARG;
}
