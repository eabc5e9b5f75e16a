/* LSTM (PyTorch gate order i, f, g, o): the step from loom ops, and the fused
 * kernel pair. The forward kernel leaves the gates' activations in pre; backward
 * recomputes tanh(c) from the kept state, the same bits as forward's, rather than
 * keep a [T*B x H] workspace for it (M: 12.5 MiB of 130, for 2% of a step). */
#include "internal.h"

static loom_status lstm_declare(loom_cell *c, loom_params *ps, const char *prefix, int layer)
{
    return loom_cell_declare_gates(c, ps, prefix, layer, 4);
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

/* The activations over whole gate blocks (loom_sigmoidv, loom_tanhv: eight lanes at a time),
 * the cell update between them. */
static void lstm_forward(const loom_cell *cell, const loom_cell_tile *s, int r0, int r1)
{
    int H = s->H;
    (void)cell;
    for (int r = r0; r < r1; r++) {
        float *a = s->pre + (size_t)r * 4 * H;
        const float *cp = s->prev[1] + (size_t)r * H;
        float *h = s->next[0] + (size_t)r * H, *c = s->next[1] + (size_t)r * H;
        loom_sigmoidv(a, a, 2 * H); /* i, f */
        loom_tanhv(a + 2 * H, a + 2 * H, H);
        loom_sigmoidv(a + 3 * H, a + 3 * H, H);
        for (int j = 0; j < H; j++) c[j] = a[H + j] * cp[j] + a[j] * a[2 * H + j];
        loom_tanhv(h, c, H);
        for (int j = 0; j < H; j++) h[j] *= a[3 * H + j];
    }
}
/* Cloned for AVX2 with FMA, picked at load by the CPU: the one loop here that the
 * portable build leaves at SSE width. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define LOOM_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define LOOM_CLONES
#endif
LOOM_CLONES static void lstm_backward_row(int H, int n, const float *restrict a, const float *restrict tc, const float *restrict cp,
                              const float *restrict dh, const float *restrict dc, float *restrict d, float *restrict dcp)
{
    for (int j = 0; j < n; j++) {
        float ig = a[j], fg = a[H + j], gg = a[2 * H + j], og = a[3 * H + j];
        float dct = dc[j] + dh[j] * og * (1.0f - tc[j] * tc[j]);
        d[j] = dct * gg * ig * (1.0f - ig);
        d[H + j] = dct * cp[j] * fg * (1.0f - fg);
        d[2 * H + j] = dct * ig * (1.0f - gg * gg);
        d[3 * H + j] = dh[j] * tc[j] * og * (1.0f - og);
        dcp[j] += dct * fg;
    }
}

/* tanh(c) goes into a small buffer a chunk at a time, so the loop above stays free of expf. */
#define LSTM_CHUNK 256
static void lstm_backward(const loom_cell *cell, const loom_cell_tile *s, int r0, int r1)
{
    int H = s->H;
    float tc[LSTM_CHUNK];
    (void)cell;
    for (int r = r0; r < r1; r++)
        for (int j0 = 0; j0 < H; j0 += LSTM_CHUNK) {
            size_t k = (size_t)r * H + (size_t)j0;
            int n = H - j0 < LSTM_CHUNK ? H - j0 : LSTM_CHUNK;
            const float *c = s->next[1] + k;
            loom_tanhv(tc, c, n); /* forward's bits: the same function of the same c */
            lstm_backward_row(H, n, s->pre + (size_t)r * 4 * H + j0, tc, s->prev[1] + k, s->dnext[0] + k, s->dnext[1] + k,
                              s->dpre + (size_t)r * 4 * H + j0, s->dprev[1] + k);
        }
}

void loom_lstm_init(loom_cell *c, int input, int hidden, float forget_bias)
{
    if (!c) {
        LOOM_NULL_ARG("lstm_init", "cell");
        return;
    }
    loom_cell_base(c, "lstm", input, hidden, 2, lstm_declare, lstm_step);
    c->gates = 4;
    c->forward = lstm_forward;
    c->backward = lstm_backward;
    c->forget_bias = forget_bias;
}
