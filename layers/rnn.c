/* Vanilla (Elman) RNN, tanh or relu: the step from primitive ops, and the fused path. */
#include <string.h>

#include "internal.h"

static loom_status rnn_declare(loom_cell *c, loom_params *ps, const char *prefix, int layer)
{
    return loom_cell_declare_gated(c, ps, prefix, layer, 1);
}

static loom_status rnn_step(loom_cell *c, loom_tape *t, loom_tensor *x, loom_tensor *const *st, loom_tensor **next)
{
    loom_tensor *pre = loom_op_add(t, loom_linear_apply(t, x, c->w[0], c->w[2]), loom_linear_apply(t, st[0], c->w[1], c->w[3]));
    next[0] = c->relu ? loom_op_relu(t, pre) : loom_op_tanh(t, pre);
    return loom_tape_status(t);
}

typedef struct rnn_ctx {
    const unsigned char *keep;
    const loom_tensor *W;
    int relu;
} rnn_ctx;

/* in: pre-activation view [B x H], h_prev; out: h (a view of hext). */
static void rnn_fused_backward(loom_node *nd)
{
    loom_tensor *pv = nd->in[0], *hp = nd->in[1], *h = nd->out;
    rnn_ctx *cx = nd->ctx;
    int B = h->rows, H = h->cols;
    float *dp = loom_tape_grad(nd->tape, pv);
    float *dhp = hp->requires_grad ? loom_tape_grad(nd->tape, hp) : NULL;
    if (!dp) return;
    const float *dh = h->grad;
    size_t n = (size_t)B * H;
    LOOM_PFOR(k, n, {
        size_t r = (size_t)k / (size_t)H;
        if (!cx->keep[r]) {
            if (dhp) dhp[k] += dh[k];
        } else {
            float y = h->data[k];
            dp[k] += cx->relu ? (y > 0.0f ? dh[k] : 0.0f) : dh[k] * (1.0f - y * y);
        }
    });
    if (dhp) loom_rec_backward(dhp, dp, cx->W, B);
}

static loom_status rnn_seq(loom_cell *c, loom_tape *t, loom_cell_seq_args *a)
{
    int B = a->B, T = a->T, H = c->hidden_size;
    float *gxp;
    loom_tensor *xp = loom_cell_project(c, t, a, &gxp);
    if (!xp || loom_rec_weight_begin(t, c->w[1], c->w[3], gxp, a->hext, T, B) != LOOM_OK) return loom_tape_status(t);
    for (int s = 0; s < T; s++) {
        loom_tensor *pv = loom_tape_view_rows(t, xp, s * B, B);
        loom_tensor *hp = loom_tape_view_rows(t, a->hext, s * B, B);
        loom_tensor *h = loom_tape_view_rows(t, a->hext, (s + 1) * B, B);
        if (!pv || !hp || !h) return loom_tape_status(t);
        const unsigned char *keep = a->keep + (size_t)s * B;
        loom_rec_forward(pv->data, hp->data, c->w[1], c->w[3], B);
        int relu = c->relu;
        size_t n = (size_t)B * H;
        LOOM_PFOR(k, n, {
            size_t r = (size_t)k / (size_t)H;
            float p = pv->data[k];
            h->data[k] = !keep[r] ? hp->data[k] : relu ? (p > 0.0f ? p : 0.0f) : loom_tanhf(p);
        });
        loom_tensor *in[2] = {pv, hp};
        loom_node *nd = loom_tape_record(t, "rnn_step", rnn_fused_backward, h, in, 2);
        if (nd) {
            rnn_ctx *cx = loom_arena_alloc(loom_tape_arena(t), sizeof *cx);
            if (!cx) return loom_tape_fail(t, LOOM_ENOMEM, "rnn_step: out of memory"), LOOM_ENOMEM;
            *cx = (rnn_ctx){keep, c->w[1], relu};
            nd->ctx = cx;
        }
    }
    a->state_last[0] = loom_tape_view_rows(t, a->hext, T * B, B);
    (void)H;
    return loom_tape_status(t);
}

void loom_rnn_init(loom_cell *c, int input, int hidden, int relu)
{
    loom_cell_base(c, relu ? "rnn_relu" : "rnn", input, hidden, 1, rnn_declare, rnn_step, rnn_seq);
    c->relu = relu;
}
