/* A user cell with no fused form, for the layer tests: h = tanh(x W^T + b + u * h_prev),
 * IndRNN with tanh (smooth, so gradcheck has no kinks). Parameters weight_ih, u, bias. */
#ifndef LOOM_TEST_IND_CELL_H
#define LOOM_TEST_IND_CELL_H

#include "loom_layers.h"

static loom_status ind_declare(loom_cell *c, loom_params *ps, const char *prefix, int layer)
{
    int H = c->hidden_size;
    if (!loom_cell_param(c, ps, prefix, "weight_ih", layer, H, c->input_size, loom_cell_default_init(H)) ||
        !loom_cell_param(c, ps, prefix, "u", layer, 1, H, (loom_init){LOOM_INIT_UNIFORM, -0.9f, 0.9f}) ||
        !loom_cell_param(c, ps, prefix, "bias", layer, 1, H, loom_cell_default_init(H)))
        return LOOM_EARG;
    return LOOM_OK;
}

static loom_status ind_step(loom_cell *c, loom_tape *t, loom_tensor *x, loom_tensor *const *st, loom_tensor **next)
{
    next[0] = loom_op_tanh(t, loom_op_add(t, loom_linear_apply(t, x, c->w[0], c->w[2]), loom_op_mul(t, st[0], c->w[1])));
    return loom_tape_status(t);
}

#endif
