/* Private helpers shared by the built-in cells' fused sequence paths. */
#ifndef LOOM_LAYERS_INTERNAL_H
#define LOOM_LAYERS_INTERNAL_H

#include <math.h>

#include "loom_layers.h"

/* Records, before the time loop, the node that adds the recurrent weight's
 * gradient for the whole window in one GEMM: dW += G^T hext[0:T*B], db += colsum(G),
 * where G [T*B x GH] collects the per-step pre-activation gradients. Being
 * recorded first, it runs after every step's backward. */
loom_status loom_rec_weight_begin(loom_tape *t, loom_tensor *W, loom_tensor *b, float *G, loom_tensor *hext, int T, int B);

/* pre[B x GH] += h[B x H] W^T + b: the recurrent half of a step's pre-activations. */
void loom_rec_forward(float *pre, const float *h, const loom_tensor *W, const loom_tensor *b, int B);

/* dh[B x H] += dpre[B x GH] W: the gradient a step sends to the previous state. */
void loom_rec_backward(float *dh, const float *dpre, const loom_tensor *W, int B);

/* Declares weight_ih, weight_hh, bias_ih, bias_hh for G gates, in PyTorch's order (w[0..3]). */
loom_status loom_cell_declare_gated(loom_cell *c, loom_params *ps, const char *prefix, int layer, int G);

/* Everything a fused sequence path starts with: XP = x W_ih^T + b_ih for all
 * steps in one GEMM, with its gradient buffer allocated when training. */
loom_tensor *loom_cell_project(loom_cell *c, loom_tape *t, loom_cell_seq_args *a, float **gxp);

/* Fills the fields every built-in cell sets. */
void loom_cell_base(loom_cell *c, const char *name, int input, int hidden, int n_state, loom_cell_declare_fn declare,
                    loom_cell_step_fn step, loom_cell_seq_fn seq);

static inline float loom_sigmoidf(float x) { return 1.0f / (1.0f + expf(-x)); }
/* tanh through one expf: glibc's tanhf goes through the slower expm1f, and the
 * fused cells spend a fifth of their time there. Absolute error ~1e-7. */
static inline float loom_tanhf(float x)
{
    float e = expf(-2.0f * fabsf(x));
    return copysignf((1.0f - e) / (1.0f + e), x);
}

#endif
