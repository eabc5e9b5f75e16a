/* Shared cell plumbing: PyTorch-style parameter names, init, kinds by name. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

loom_init loom_cell_default_init(int hidden)
{
    float k = 1.0f / sqrtf((float)hidden);
    return (loom_init){LOOM_INIT_UNIFORM, -k, k};
}

loom_tensor *loom_cell_param(loom_cell *cell, loom_params *ps, const char *prefix, const char *name, int layer,
                             int rows, int cols, loom_init init)
{
    if (cell->nw >= LOOM_CELL_MAX_PARAMS) {
        loom_error_set(LOOM_EARG, "cell '%s': more than %d parameters", cell->name, LOOM_CELL_MAX_PARAMS);
        return NULL;
    }
    char full[96];
    snprintf(full, sizeof full, "%s.%s_l%d", prefix, name, layer);
    loom_tensor *w = loom_params_add(ps, full, rows, cols, init);
    if (w) cell->w[cell->nw++] = w;
    return w;
}

loom_status loom_cell_init_kind(loom_cell *c, const char *kind, int input, int hidden)
{
    if (input <= 0 || hidden <= 0)
        return loom_error_set(LOOM_EARG, "cell '%s': input size %d and hidden size %d must be positive", kind, input, hidden);
    if (strcmp(kind, "lstm") == 0) loom_lstm_init(c, input, hidden, 0.0f);
    else if (strcmp(kind, "gru") == 0) loom_gru_init(c, input, hidden);
    else if (strcmp(kind, "rnn") == 0 || strcmp(kind, "rnn_tanh") == 0) loom_rnn_init(c, input, hidden, 0);
    else if (strcmp(kind, "rnn_relu") == 0) loom_rnn_init(c, input, hidden, 1);
    else return loom_error_set(LOOM_EARG, "unknown cell '%s' (expected lstm, gru, rnn or rnn_relu)", kind);
    return LOOM_OK;
}

loom_status loom_cell_declare_gated(loom_cell *c, loom_params *ps, const char *prefix, int layer, int G)
{
    loom_init u = loom_cell_default_init(c->hidden_size);
    int H = c->hidden_size;
    c->nw = 0;
    if (!loom_cell_param(c, ps, prefix, "weight_ih", layer, G * H, c->input_size, u) ||
        !loom_cell_param(c, ps, prefix, "weight_hh", layer, G * H, H, u) ||
        !loom_cell_param(c, ps, prefix, "bias_ih", layer, 1, G * H, u) ||
        !loom_cell_param(c, ps, prefix, "bias_hh", layer, 1, G * H, u))
        return LOOM_EARG;
    return LOOM_OK;
}

loom_tensor *loom_cell_project(loom_cell *c, loom_tape *t, loom_cell_seq_args *a, float **gxp)
{
    loom_tensor *xp = loom_linear_apply(t, a->x, c->w[0], c->w[2]);
    *gxp = NULL;
    /* The pre-activation gradient G lives in xp's gradient. The recurrent weights need
     * it even when nothing before xp does (frozen input weights, an input without a
     * gradient), so xp gets one whenever the tape records; no node behind it uses it then. */
    if (xp && !loom_tape_nograd(t)) {
        xp->requires_grad = 1;
        *gxp = loom_tape_grad(t, xp);
    }
    return xp;
}

void loom_cell_base(loom_cell *c, const char *name, int input, int hidden, int n_state, loom_cell_declare_fn declare,
                    loom_cell_step_fn step, loom_cell_seq_fn seq)
{
    memset(c, 0, sizeof *c);
    snprintf(c->name, sizeof c->name, "%s", name);
    c->input_size = input;
    c->hidden_size = hidden;
    c->n_state = n_state;
    c->declare = declare;
    c->step = step;
    c->seq = seq;
}
