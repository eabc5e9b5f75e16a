/* LSTM (PyTorch gate order i, f, g, o): the step from primitive ops, and the
 * fused path: one GEMM for the input projection, one op per step with a
 * hand-written backward, one GEMM for the recurrent weight gradient. */
#include <string.h>

#include "internal.h"

static loom_status lstm_declare(loom_cell *c, loom_params *ps, const char *prefix, int layer)
{
    return loom_cell_declare_gated(c, ps, prefix, layer, 4);
}

static loom_status lstm_step(loom_cell *c, loom_tape *t, loom_tensor *x, loom_tensor *const *st, loom_tensor **next)
{
    int H = c->hidden_size;
    loom_tensor *g = loom_op_add(t, loom_linear_apply(t, x, c->w[0], c->w[2]), loom_linear_apply(t, st[0], c->w[1], c->w[3]));
    loom_tensor *i = loom_op_sigmoid(t, loom_op_slice(t, g, 0, H));
    loom_tensor *f = loom_op_sigmoid(t, loom_op_slice(t, g, H, H));
    loom_tensor *gg = loom_op_tanh(t, loom_op_slice(t, g, 2 * H, H));
    loom_tensor *o = loom_op_sigmoid(t, loom_op_slice(t, g, 3 * H, H));
    next[1] = loom_op_add(t, loom_op_mul(t, f, st[1]), loom_op_mul(t, i, gg));
    next[0] = loom_op_mul(t, o, loom_op_tanh(t, next[1]));
    return loom_tape_status(t);
}

typedef struct lstm_ctx {
    const unsigned char *keep;
    const loom_tensor *W;
    const float *tc; /* tanh(c), kept from the forward pass */
} lstm_ctx;

/* in: gates view [B x 4H] (activations in place after forward), h_prev, c_prev; out: c; out2: h. */
static void lstm_fused_backward(loom_node *nd)
{
    loom_tensor *gv = nd->in[0], *hp = nd->in[1], *cp = nd->in[2], *c = nd->out, *h = nd->out2;
    lstm_ctx *cx = nd->ctx;
    int B = c->rows, H = c->cols;
    float *dcp = cp->requires_grad ? loom_tape_grad(nd->tape, cp) : NULL;
    const float *dh = h->grad, *dc = c->grad;
    float *dg = loom_tape_grad(nd->tape, gv);
    if (!dg) return;
    LOOM_PFOR_IF((long)B * H >= LOOM_PAR_MIN, r, B, {
        const float *a = gv->data + (size_t)r * 4 * H;
        float *d = dg + (size_t)r * 4 * H;
        for (int j = 0; j < H; j++) {
            size_t k = (size_t)r * H + j;
            float dhk = dh ? dh[k] : 0.0f, dck = dc ? dc[k] : 0.0f;
            if (!cx->keep[r]) {
                if (dcp) dcp[k] += dck;
                continue;
            }
            float ig = a[j], fg = a[H + j], gg = a[2 * H + j], og = a[3 * H + j];
            float tc = cx->tc[k];
            float dct = dck + dhk * og * (1.0f - tc * tc);
            d[j] += dct * gg * ig * (1.0f - ig);
            d[H + j] += dct * cp->data[k] * fg * (1.0f - fg);
            d[2 * H + j] += dct * ig * (1.0f - gg * gg);
            d[3 * H + j] += dhk * tc * og * (1.0f - og);
            if (dcp) dcp[k] += dct * fg;
        }
    });
    if (hp->requires_grad) {
        float *dhp = loom_tape_grad(nd->tape, hp);
        if (!dhp) return;
        for (int r = 0; r < B; r++)
            if (!cx->keep[r] && dh)
                for (int j = 0; j < H; j++) dhp[(size_t)r * H + j] += dh[(size_t)r * H + j];
        loom_rec_backward(dhp, dg, cx->W, B);
    }
}

static loom_tensor *lstm_fused_step(loom_tape *t, loom_cell *c, loom_tensor *gv, loom_tensor *hp, loom_tensor *cp,
                                    loom_tensor *h, const unsigned char *keep)
{
    int B = hp->rows, H = hp->cols;
    loom_tensor *cn = loom_tape_tensor(t, B, H);
    float *tcs = loom_tape_nograd(t) ? NULL : loom_arena_alloc(loom_tape_arena(t), (size_t)B * H * sizeof(float));
    if (!cn || (!loom_tape_nograd(t) && !tcs)) return loom_tape_fail(t, LOOM_ENOMEM, "lstm_step: out of memory");
    loom_rec_forward(gv->data, hp->data, c->w[1], c->w[3], B);
    LOOM_PFOR_IF((long)B * H >= LOOM_PAR_MIN, r, B, {
        float *a = gv->data + (size_t)r * 4 * H;
        for (int j = 0; j < H; j++) {
            size_t k = (size_t)r * H + j;
            if (!keep[r]) {
                cn->data[k] = cp->data[k];
                h->data[k] = hp->data[k];
                continue;
            }
            float ig = loom_sigmoidf(a[j]), fg = loom_sigmoidf(a[H + j]), gg = loom_tanhf(a[2 * H + j]),
                  og = loom_sigmoidf(a[3 * H + j]);
            a[j] = ig, a[H + j] = fg, a[2 * H + j] = gg, a[3 * H + j] = og;
            float cv = fg * cp->data[k] + ig * gg, tc = loom_tanhf(cv);
            cn->data[k] = cv;
            if (tcs) tcs[k] = tc;
            h->data[k] = og * tc;
        }
    });
    loom_tensor *in[3] = {gv, hp, cp};
    loom_node *nd = loom_tape_record(t, "lstm_step", lstm_fused_backward, cn, in, 3);
    if (nd) {
        lstm_ctx *cx = loom_arena_alloc(loom_tape_arena(t), sizeof *cx);
        if (!cx) return loom_tape_fail(t, LOOM_ENOMEM, "lstm_step: out of memory");
        cx->keep = keep;
        cx->W = c->w[1];
        cx->tc = tcs;
        nd->ctx = cx;
        nd->out2 = h;
        h->requires_grad = 1;
    }
    return cn;
}

static loom_status lstm_seq(loom_cell *c, loom_tape *t, loom_cell_seq_args *a)
{
    float *gxp;
    loom_tensor *xp = loom_cell_project(c, t, a, &gxp);
    if (!xp || loom_rec_weight_begin(t, c->w[1], c->w[3], gxp, a->hext, a->T, a->B) != LOOM_OK) return loom_tape_status(t);
    int B = a->B;
    loom_tensor *cp = a->state0[1];
    for (int s = 0; s < a->T && cp; s++) {
        loom_tensor *gv = loom_tape_view_rows(t, xp, s * B, B);
        loom_tensor *hp = loom_tape_view_rows(t, a->hext, s * B, B);
        loom_tensor *h = loom_tape_view_rows(t, a->hext, (s + 1) * B, B);
        if (!gv || !hp || !h) return loom_tape_status(t);
        cp = lstm_fused_step(t, c, gv, hp, cp, h, a->keep + (size_t)s * B);
    }
    a->state_last[0] = loom_tape_view_rows(t, a->hext, a->T * B, B);
    a->state_last[1] = cp;
    return loom_tape_status(t);
}

void loom_lstm_init(loom_cell *c, int input, int hidden, float forget_bias)
{
    loom_cell_base(c, "lstm", input, hidden, 2, lstm_declare, lstm_step, lstm_seq);
    c->forget_bias = forget_bias;
}
