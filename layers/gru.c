/* GRU (PyTorch gate order r, z, n; n = tanh(xn + r * (W_hn h + b_hn))): the step
 * from loom ops, and the fused kernel pair. The reset gate multiplies the
 * recurrent part, so the kernel takes it apart (split_rec). */
#include "internal.h"

static loom_status gru_declare(loom_cell *c, loom_params *ps, const char *prefix, int layer)
{
    return loom_cell_declare_gates(c, ps, prefix, layer, 3);
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

/* Leaves r, z, n in pre. */
static void gru_forward(const loom_cell *cell, const loom_cell_tile *s, int r0, int r1)
{
    int H = s->H;
    (void)cell;
    for (int r = r0; r < r1; r++) {
        float *x = s->pre + (size_t)r * 3 * H, *h = s->next[0] + (size_t)r * H;
        const float *q = s->rec + (size_t)r * 3 * H, *hp = s->prev[0] + (size_t)r * H;
        for (int j = 0; j < 2 * H; j++) x[j] += q[j];
        loom_sigmoidv(x, x, 2 * H); /* r, z */
        for (int j = 0; j < H; j++) x[2 * H + j] += x[j] * q[2 * H + j];
        loom_tanhv(x + 2 * H, x + 2 * H, H); /* n */
        for (int j = 0; j < H; j++) h[j] = (1.0f - x[H + j]) * x[2 * H + j] + x[H + j] * hp[j];
    }
}

static void gru_backward(const loom_cell *cell, const loom_cell_tile *s, int r0, int r1)
{
    int H = s->H;
    (void)cell;
    for (int r = r0; r < r1; r++) {
        const float *a = s->pre + (size_t)r * 3 * H, *q = s->rec + (size_t)r * 3 * H, *hp = s->prev[0] + (size_t)r * H;
        const float *dh = s->dnext[0] + (size_t)r * H;
        float *dx = s->dpre + (size_t)r * 3 * H, *dq = s->drec + (size_t)r * 3 * H, *dhp = s->dprev[0] + (size_t)r * H;
        for (int j = 0; j < H; j++) {
            float rg = a[j], zg = a[H + j], ng = a[2 * H + j];
            float dnp = dh[j] * (1.0f - zg) * (1.0f - ng * ng);
            float drp = dnp * q[2 * H + j] * rg * (1.0f - rg), dzp = dh[j] * (hp[j] - ng) * zg * (1.0f - zg);
            dx[j] = dq[j] = drp;
            dx[H + j] = dq[H + j] = dzp;
            dx[2 * H + j] = dnp;
            dq[2 * H + j] = dnp * rg;
            dhp[j] += dh[j] * zg;
        }
    }
}

void loom_gru_init(loom_cell *c, int input, int hidden)
{
    if (!c) {
        LOOM_NULL_ARG("gru_init", "cell");
        return;
    }
    loom_cell_base(c, "gru", input, hidden, 1, gru_declare, gru_step);
    c->gates = 3;
    c->split_rec = 1;
    c->forward = gru_forward;
    c->backward = gru_backward;
}
