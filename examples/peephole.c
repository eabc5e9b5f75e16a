/* The peephole LSTM on loom's public cell API, in both forms: the fused one
 * (four gates of pre-activations from the layer's GEMMs, three extra rows of
 * per-unit weights, and a pointwise kernel pair) and the primitive-op step the
 * sequence layer unrolls when fusion is off. Both compute the same function. */
#include <string.h>

#include "peephole.h"

/* Positions of the extra parameters in cell->w, after the four of the gates. */
enum { PEEP_I = 4, PEEP_F = 5, PEEP_O = 6 };

static loom_status peephole_declare(loom_cell *c, loom_params *ps, const char *prefix, int layer)
{
    static const char *const extras[3] = {"peep_i", "peep_f", "peep_o"};
    loom_status st = loom_cell_declare_gates(c, ps, prefix, layer, 4); /* w[0..3], like loom's LSTM */
    for (int k = 0; k < 3 && st == LOOM_OK; k++)
        if (!loom_cell_param(c, ps, prefix, extras[k], layer, 1, c->hidden_size, loom_cell_default_init(c->hidden_size)))
            st = LOOM_EARG; /* loom_cell_param has set the message */
    return st;
}

/* The same cell from loom ops: what the layer unrolls when s->fused is 0, and
 * the reference the fused kernels are tested against. */
static loom_status peephole_step(loom_cell *c, loom_tape *t, loom_tensor *x, loom_tensor *const *st, loom_tensor **next)
{
    int H = c->hidden_size;
    loom_tensor *p = loom_op_add(t, loom_linear_apply(t, x, c->w[0], c->w[2]), loom_linear_apply(t, st[0], c->w[1], c->w[3]));
    /* loom_op_mul broadcasts a [1 x H] row over the batch: the per-unit peephole weights */
    loom_tensor *i = loom_op_sigmoid(t, loom_op_add(t, loom_op_slice(t, p, 0, H), loom_op_mul(t, st[1], c->w[PEEP_I])));
    loom_tensor *f = loom_op_sigmoid(t, loom_op_add(t, loom_op_slice(t, p, H, H), loom_op_mul(t, st[1], c->w[PEEP_F])));
    loom_tensor *g = loom_op_tanh(t, loom_op_slice(t, p, 2 * H, H));
    next[1] = loom_op_add(t, loom_op_mul(t, f, st[1]), loom_op_mul(t, i, g));
    loom_tensor *o = loom_op_sigmoid(t, loom_op_add(t, loom_op_slice(t, p, 3 * H, H), loom_op_mul(t, next[1], c->w[PEEP_O])));
    next[0] = loom_op_mul(t, o, loom_op_tanh(t, next[1]));
    return loom_tape_status(t);
}

/* Leaves the gates' activations i, f, g, o in pre and tanh(c) in ws; with c
 * (next[1]) and c_prev (prev[1]) that is all backward needs. The activations run
 * over whole gate blocks with loom_sigmoidv / loom_tanhv (vector lanes), the
 * peepholes and the cell update in plain loops between them. */
static void peephole_forward(const loom_cell *cell, const loom_cell_tile *s, int r0, int r1)
{
    int H = s->H;
    const float *pi = s->w[PEEP_I]->data, *pf = s->w[PEEP_F]->data, *po = s->w[PEEP_O]->data;
    (void)cell;
    for (int r = r0; r < r1; r++) {
        float *a = s->pre + (size_t)r * 4 * H, *tc = s->ws + (size_t)r * H;
        const float *cp = s->prev[1] + (size_t)r * H;
        float *h = s->next[0] + (size_t)r * H, *c = s->next[1] + (size_t)r * H;
        for (int j = 0; j < H; j++) a[j] += pi[j] * cp[j], a[H + j] += pf[j] * cp[j]; /* the peepholes on c_prev */
        loom_sigmoidv(a, a, 2 * H);                                                   /* i, f: eight lanes at a time */
        loom_tanhv(a + 2 * H, a + 2 * H, H);                                          /* g */
        for (int j = 0; j < H; j++) c[j] = a[H + j] * cp[j] + a[j] * a[2 * H + j];
        for (int j = 0; j < H; j++) a[3 * H + j] += po[j] * c[j]; /* o sees the new cell state through its peephole */
        loom_sigmoidv(a + 3 * H, a + 3 * H, H);
        loom_tanhv(tc, c, H);
        for (int j = 0; j < H; j++) h[j] = a[3 * H + j] * tc[j];
    }
}

/* Backward over columns [0, n) of one row. Every buffer is distinct, and restrict
 * says so: the compiler then vectorises the loop (it calls no expf). */
static void peephole_backward_cols(int n, int H, const float *restrict a, const float *restrict tc, const float *restrict cp,
                                   const float *restrict c, const float *restrict dh, const float *restrict dc,
                                   const float *restrict pi, const float *restrict pf, const float *restrict po,
                                   float *restrict d, float *restrict dcp, float *restrict dwi, float *restrict dwf,
                                   float *restrict dwo)
{
    for (int j = 0; j < n; j++) {
        float ig = a[j], fg = a[H + j], gg = a[2 * H + j], og = a[3 * H + j];
        float dop = dh[j] * tc[j] * og * (1.0f - og);                          /* d P_o */
        float dct = dc[j] + dh[j] * og * (1.0f - tc[j] * tc[j]) + dop * po[j]; /* d c, o's peephole included */
        float dip = dct * gg * ig * (1.0f - ig), dfp = dct * cp[j] * fg * (1.0f - fg);
        d[j] = dip, d[H + j] = dfp, d[2 * H + j] = dct * ig * (1.0f - gg * gg), d[3 * H + j] = dop;
        dcp[j] += dct * fg + dip * pi[j] + dfp * pf[j];
        dwi[j] += dip * cp[j], dwf[j] += dfp * cp[j], dwo[j] += dop * c[j];
    }
}

/* Columns per call: a frozen peephole row has no dw buffer (NULL), so its part
 * goes to a zeroed scratch block on the stack that nothing reads. */
enum { PEEP_BLOCK = 256 };

static void peephole_backward(const loom_cell *cell, const loom_cell_tile *s, int r0, int r1)
{
    int H = s->H;
    const float *pi = s->w[PEEP_I]->data, *pf = s->w[PEEP_F]->data, *po = s->w[PEEP_O]->data;
    float scratch[3][PEEP_BLOCK] = {{0}};
    (void)cell;
    for (int r = r0; r < r1; r++)
        for (int j0 = 0; j0 < H; j0 += PEEP_BLOCK) {
            size_t o = (size_t)r * H + j0;
            float *dw[3];
            for (int k = 0; k < 3; k++) dw[k] = s->dw[PEEP_I + k] ? s->dw[PEEP_I + k] + o : scratch[k];
            peephole_backward_cols(H - j0 < PEEP_BLOCK ? H - j0 : PEEP_BLOCK, H, s->pre + (size_t)r * 4 * H + j0, s->ws + o,
                                   s->prev[1] + o, s->next[1] + o, s->dnext[0] + o, s->dnext[1] + o, pi + j0, pf + j0, po + j0,
                                   s->dpre + (size_t)r * 4 * H + j0, s->dprev[1] + o, dw[0], dw[1], dw[2]);
        }
}

void peephole_lstm_init(loom_cell *c, int input, int hidden)
{
    memset(c, 0, sizeof *c);
    strcpy(c->name, "peephole");
    c->input_size = input;
    c->hidden_size = hidden;
    c->n_state = 2; /* h, c */
    c->declare = peephole_declare;
    c->step = peephole_step;
    c->gates = 4;
    c->ws_cols = hidden; /* tanh(c) */
    c->forward = peephole_forward;
    c->backward = peephole_backward;
}
