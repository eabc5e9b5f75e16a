/* Vanilla (Elman) RNN, tanh or relu: the step from loom ops, and the fused
 * kernel pair (backward needs only the output it made). */
#include "internal.h"

static loom_status rnn_declare(loom_cell *c, loom_params *ps, const char *prefix, int layer)
{
    return loom_cell_declare_gates(c, ps, prefix, layer, 1);
}

static loom_status rnn_step(loom_cell *c, loom_tape *t, loom_tensor *x, loom_tensor *const *st, loom_tensor **next)
{
    loom_tensor *pre = loom_op_add(t, loom_linear_apply(t, x, c->w[0], c->w[2]), loom_linear_apply(t, st[0], c->w[1], c->w[3]));
    next[0] = c->relu ? loom_op_relu(t, pre) : loom_op_tanh(t, pre);
    return loom_tape_status(t);
}

static void rnn_forward(const loom_cell *c, const loom_cell_tile *s, int r0, int r1)
{
    size_t a = (size_t)r0 * s->H, b = (size_t)r1 * s->H;
    const float *p = s->pre;
    float *h = s->next[0];
    if (c->relu)
        for (size_t k = a; k < b; k++) h[k] = p[k] > 0.0f ? p[k] : 0.0f;
    else
        loom_tanhv(h + a, p + a, (int)(b - a));
}

static void rnn_backward(const loom_cell *c, const loom_cell_tile *s, int r0, int r1)
{
    size_t a = (size_t)r0 * s->H, b = (size_t)r1 * s->H;
    const float *h = s->next[0], *dh = s->dnext[0];
    float *dp = s->dpre;
    if (c->relu)
        for (size_t k = a; k < b; k++) dp[k] = h[k] > 0.0f ? dh[k] : 0.0f;
    else
        for (size_t k = a; k < b; k++) dp[k] = dh[k] * (1.0f - h[k] * h[k]);
}

void loom_rnn_init(loom_cell *c, int input, int hidden, int relu)
{
    if (!c) {
        LOOM_NULL_ARG("rnn_init", "cell");
        return;
    }
    loom_cell_base(c, relu ? "rnn_relu" : "rnn", input, hidden, 1, rnn_declare, rnn_step);
    c->gates = 1;
    c->forward = rnn_forward;
    c->backward = rnn_backward;
    c->relu = relu;
}
