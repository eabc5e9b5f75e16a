/* GRU (PyTorch gate order r, z, n; n = tanh(xn + r * (W_hn h + b_hn))): the
 * step from primitive ops, and the fused path. */
#include <string.h>

#include "internal.h"

static loom_status gru_declare(loom_cell *c, loom_params *ps, const char *prefix, int layer)
{
    return loom_cell_declare_gated(c, ps, prefix, layer, 3);
}

static loom_status gru_step(loom_cell *c, loom_tape *t, loom_tensor *x, loom_tensor *const *st, loom_tensor **next)
{
    int H = c->hidden_size;
    loom_tensor *xp = loom_linear_apply(t, x, c->w[0], c->w[2]), *hp = loom_linear_apply(t, st[0], c->w[1], c->w[3]);
    loom_tensor *r = loom_op_sigmoid(t, loom_op_add(t, loom_op_slice(t, xp, 0, H), loom_op_slice(t, hp, 0, H)));
    loom_tensor *z = loom_op_sigmoid(t, loom_op_add(t, loom_op_slice(t, xp, H, H), loom_op_slice(t, hp, H, H)));
    loom_tensor *n = loom_op_tanh(t, loom_op_add(t, loom_op_slice(t, xp, 2 * H, H), loom_op_mul(t, r, loom_op_slice(t, hp, 2 * H, H))));
    next[0] = loom_op_add(t, n, loom_op_mul(t, z, loom_op_sub(t, st[0], n))); /* (1-z) n + z h */
    return loom_tape_status(t);
}

typedef struct gru_ctx {
    const unsigned char *keep;
    const loom_tensor *W;
    float *hpre, *dhpre; /* this step's rows of W_hh h + b_hh and of their gradient */
} gru_ctx;

/* in: xp view [B x 3H] (r, z, n activations in place), h_prev; out: h (a view of hext). */
static void gru_fused_backward(loom_node *nd)
{
    loom_tensor *xv = nd->in[0], *hp = nd->in[1], *h = nd->out;
    gru_ctx *cx = nd->ctx;
    int B = h->rows, H = h->cols;
    float *dx = loom_tape_grad(nd->tape, xv);
    float *dhp = hp->requires_grad ? loom_tape_grad(nd->tape, hp) : NULL;
    if (!dx) return;
    const float *dh = h->grad;
    LOOM_PFOR_IF((long)B * H >= LOOM_PAR_MIN, r, B, {
        const float *a = xv->data + (size_t)r * 3 * H, *hpre = cx->hpre + (size_t)r * 3 * H;
        float *d = dx + (size_t)r * 3 * H, *dq = cx->dhpre + (size_t)r * 3 * H;
        for (int j = 0; j < H; j++) {
            size_t k = (size_t)r * H + j;
            float dhk = dh[k];
            if (!cx->keep[r]) {
                if (dhp) dhp[k] += dhk;
                continue;
            }
            float rg = a[j], zg = a[H + j], ng = a[2 * H + j];
            float dn = dhk * (1.0f - zg), dz = dhk * (hp->data[k] - ng);
            float dnp = dn * (1.0f - ng * ng);
            float dr = dnp * hpre[2 * H + j];
            float drp = dr * rg * (1.0f - rg), dzp = dz * zg * (1.0f - zg);
            d[j] += drp, d[H + j] += dzp, d[2 * H + j] += dnp;
            dq[j] += drp, dq[H + j] += dzp, dq[2 * H + j] += dnp * rg;
            if (dhp) dhp[k] += dhk * zg;
        }
    });
    if (dhp) loom_rec_backward(dhp, cx->dhpre, cx->W, B);
}

static loom_status gru_seq(loom_cell *c, loom_tape *t, loom_cell_seq_args *a)
{
    int B = a->B, T = a->T, H = c->hidden_size;
    float *gxp;
    loom_tensor *xp = loom_cell_project(c, t, a, &gxp);
    /* W_hh h + b_hh for every step, kept apart from xp because r gates only its n part. */
    loom_tensor *hpre = loom_tape_zeros(t, T * B, 3 * H);
    float *ghp = NULL;
    if (!xp || !hpre) return loom_tape_status(t);
    if (gxp) {
        hpre->requires_grad = 1;
        ghp = loom_tape_grad(t, hpre);
        if (!ghp || loom_rec_weight_begin(t, c->w[1], c->w[3], ghp, a->hext, T, B) != LOOM_OK) return loom_tape_status(t);
    }
    for (int s = 0; s < T; s++) {
        loom_tensor *xv = loom_tape_view_rows(t, xp, s * B, B);
        loom_tensor *hp = loom_tape_view_rows(t, a->hext, s * B, B);
        loom_tensor *h = loom_tape_view_rows(t, a->hext, (s + 1) * B, B);
        if (!xv || !hp || !h) return loom_tape_status(t);
        const unsigned char *keep = a->keep + (size_t)s * B;
        float *q = hpre->data + (size_t)s * B * 3 * H;
        loom_rec_forward(q, hp->data, c->w[1], c->w[3], B);
        LOOM_PFOR_IF((long)B * H >= LOOM_PAR_MIN, r, B, {
            float *x = xv->data + (size_t)r * 3 * H, *qr = q + (size_t)r * 3 * H;
            for (int j = 0; j < H; j++) {
                size_t k = (size_t)r * H + j;
                if (!keep[r]) {
                    h->data[k] = hp->data[k];
                    continue;
                }
                float rg = loom_sigmoidf(x[j] + qr[j]), zg = loom_sigmoidf(x[H + j] + qr[H + j]);
                float ng = loom_tanhf(x[2 * H + j] + rg * qr[2 * H + j]);
                x[j] = rg, x[H + j] = zg, x[2 * H + j] = ng;
                h->data[k] = (1.0f - zg) * ng + zg * hp->data[k];
            }
        });
        loom_tensor *in[2] = {xv, hp};
        loom_node *nd = loom_tape_record(t, "gru_step", gru_fused_backward, h, in, 2);
        if (nd) {
            gru_ctx *cx = loom_arena_alloc(loom_tape_arena(t), sizeof *cx);
            if (!cx) return loom_tape_fail(t, LOOM_ENOMEM, "gru_step: out of memory"), LOOM_ENOMEM;
            *cx = (gru_ctx){keep, c->w[1], q, ghp + (size_t)s * B * 3 * H};
            nd->ctx = cx;
        }
    }
    a->state_last[0] = loom_tape_view_rows(t, a->hext, T * B, B);
    return loom_tape_status(t);
}

void loom_gru_init(loom_cell *c, int input, int hidden)
{
    loom_cell_base(c, "gru", input, hidden, 1, gru_declare, gru_step, gru_seq);
}
