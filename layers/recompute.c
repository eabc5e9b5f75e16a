/* Recomputation for cells without a fused form: the unrolled layer run in
 * segments of K steps on the stack's scratch tape. Forward runs each segment
 * there without recording and keeps only its outputs on the tape: y at every step
 * and every state part at each segment's end. The tape gets one node for the
 * window; its backward re-runs the segments from the last, recording on the
 * scratch tape, seeds their outputs with the gradients that reached them and
 * walks them back. The scratch tape sees the layer's input, states and parameters
 * through tensors that share their values and gradients, so every gradient is
 * added where, and in the order, the plain unrolled layer adds it: the same bits. */
#include <string.h>

#include "internal.h"

typedef struct rc_layer {
    loom_cell *c;
    loom_tape *sc;             /* the scratch tape */
    int T, B, K, nseg;
    loom_tensor *x, *y;        /* the layer's input and output, on the tape */
    loom_tensor *ends;         /* every state part at segment j's end: rows (j*S + k)*B .. +B */
    const unsigned char *keep;
    loom_tensor *const *init;
    loom_tensor *xa, *sa;      /* on the scratch tape: the segment's input rows, its initial state [S] */
    loom_tensor **sp;          /* [S] pointers to sa */
    loom_tensor **outs, **lasts; /* [1 + S] seeded outputs, [S] a segment's final state */
    const float **seeds;       /* [1 + S] */
} rc_layer;

/* A tensor of no tape's (gen 0) sharing data and, when it needs one, a gradient buffer. */
static void share(loom_tensor *a, float *data, float *grad, int rows, int cols)
{
    *a = (loom_tensor){.data = data, .grad = grad, .rows = rows, .cols = cols, .requires_grad = grad != NULL};
}

static int seg_start(const rc_layer *r, int j) { return j * r->K; }
static int seg_len(const rc_layer *r, int j) { return (j + 1) * r->K < r->T ? r->K : r->T - j * r->K; }

/* Where segment j > 0 starts from (values, or with grad buffers their gradients): the
 * previous segment's end, whose h is y's row. */
static float *start_part(const rc_layer *r, float *y, float *ends, int j, int k)
{
    size_t BH = (size_t)r->B * r->c->hidden_size;
    if (k == 0) return y + (size_t)(seg_start(r, j) - 1) * BH;
    return ends + ((size_t)(j - 1) * r->c->n_state + k) * BH;
}

/* Runs segment j on the scratch tape; grad: recording, with gradients shared (ginit[k]: init[k]'s or NULL). */
static loom_status run_segment(rc_layer *r, int j, int grad, float *gx, float *gy, float *gends, float *const *ginit,
                               loom_tensor **ys)
{
    loom_cell *c = r->c;
    int B = r->B, H = c->hidden_size, In = c->input_size, s0 = seg_start(r, j), n = seg_len(r, j);
    loom_tape_reset(r->sc);
    loom_tape_set_nograd(r->sc, !grad);
    share(r->xa, r->x->data + (size_t)s0 * B * In, gx ? gx + (size_t)s0 * B * In : NULL, n * B, In);
    for (int k = 0; k < c->n_state; k++) {
        float *v = j == 0 ? r->init[k]->data : start_part(r, r->y->data, r->ends->data, j, k);
        float *g = !grad ? NULL : j == 0 ? ginit[k] : start_part(r, gy, gends, j, k);
        share(&r->sa[k], v, g, B, H);
    }
    return loom_layer_unrolled(r->sc, c, r->xa, n, B, r->keep + (size_t)s0 * B, r->sp, ys, r->lasts);
}

/* The scratch tape's failure, onto the tape (a chain of ops after the layer is checked once). */
static loom_status fail(loom_tape *t, loom_status st)
{
    if (st == LOOM_OK) st = LOOM_ESTATE;
    loom_tape_fail(t, st, "%s", loom_error_message());
    return st;
}

static void rc_backward(loom_node *nd);

loom_status loom_layer_recompute(loom_tape *t, loom_tape *sc, loom_cell *c, loom_tensor *x, int T, int B,
                                 const unsigned char *keep, loom_tensor *const *init, int K, loom_tensor **y,
                                 loom_tensor **last)
{
    if (K <= 0 || K >= T) return loom_layer_unrolled(t, c, x, T, B, keep, init, y, last);
    int S = c->n_state, H = c->hidden_size, nseg = (T + K - 1) / K;
    loom_arena *ar = loom_tape_arena(t);
    rc_layer *r = loom_arena_alloc(ar, sizeof *r);
    if (!r) return loom_tape_fail(t, LOOM_ENOMEM, "%s layer: out of memory", c->name), LOOM_ENOMEM;
    *r = (rc_layer){.c = c, .sc = sc, .T = T, .B = B, .K = K, .nseg = nseg, .x = x, .keep = keep, .init = init};
    r->y = loom_tape_tensor(t, T * B, H);
    r->ends = loom_tape_tensor(t, nseg * S * B, H);
    r->xa = loom_arena_alloc(ar, sizeof *r->xa);
    r->sa = loom_arena_alloc(ar, (size_t)S * sizeof *r->sa);
    r->sp = loom_arena_alloc(ar, (size_t)S * sizeof *r->sp);
    r->outs = loom_arena_alloc(ar, (size_t)(S + 1) * sizeof *r->outs);
    r->lasts = loom_arena_alloc(ar, (size_t)S * sizeof *r->lasts);
    r->seeds = loom_arena_alloc(ar, (size_t)(S + 1) * sizeof *r->seeds);
    if (!r->y || !r->ends || !r->xa || !r->sa || !r->sp || !r->outs || !r->lasts || !r->seeds)
        return loom_tape_fail(t, LOOM_ENOMEM, "%s layer: out of memory for a window of %dx%d", c->name, T, B), LOOM_ENOMEM;
    for (int k = 0; k < S; k++) r->sp[k] = &r->sa[k];
    size_t BH = (size_t)B * H;
    for (int j = 0; j < nseg; j++) {
        loom_tensor *ys = NULL;
        loom_status st = run_segment(r, j, 0, NULL, NULL, NULL, NULL, &ys);
        if (st != LOOM_OK) return fail(t, st);
        memcpy(r->y->data + (size_t)seg_start(r, j) * BH, ys->data, loom_tensor_size(ys) * sizeof(float));
        for (int k = 0; k < S; k++)
            memcpy(r->ends->data + ((size_t)j * S + k) * BH, r->lasts[k]->data, BH * sizeof(float));
    }
    loom_tape_reset(sc);

    int n_in = 1 + c->nw + S;
    loom_tensor **in = loom_arena_alloc(ar, (size_t)n_in * sizeof *in);
    if (!in) return loom_tape_fail(t, LOOM_ENOMEM, "%s layer: out of memory", c->name), LOOM_ENOMEM;
    in[0] = x;
    if (c->nw) memcpy(in + 1, c->w, (size_t)c->nw * sizeof *in);
    memcpy(in + 1 + c->nw, init, (size_t)S * sizeof *in);
    loom_node *nd = loom_tape_record(t, c->name, rc_backward, r->y, in, n_in);
    if (nd) {
        nd->ctx = r;
        nd->out2 = r->ends; /* a gradient reaching only the final state still walks back */
        r->ends->requires_grad = 1;
    }
    /* The final state apart from y's last row, as the unrolled layer's is: gradients add in its order. */
    for (int k = 0; k < S; k++)
        if (!(last[k] = loom_tape_view_rows(t, r->ends, ((nseg - 1) * S + k) * B, B))) return loom_tape_status(t);
    *y = r->y;
    return loom_tape_status(t);
}

static void rc_backward(loom_node *nd)
{
    rc_layer *r = nd->ctx;
    loom_tape *t = nd->tape;
    loom_cell *c = r->c;
    int S = c->n_state, B = r->B;
    size_t BH = (size_t)B * c->hidden_size;
    float *gy = loom_tape_grad(t, r->y), *gends = loom_tape_grad(t, r->ends);
    float *gx = r->x->requires_grad ? loom_tape_grad(t, r->x) : NULL;
    float **ginit = loom_arena_alloc(loom_tape_arena(t), (size_t)S * sizeof *ginit);
    if (!gy || !gends || (r->x->requires_grad && !gx) || !ginit) {
        loom_tape_fail(t, LOOM_ENOMEM, "%s layer backward: out of memory", c->name);
        return;
    }
    for (int k = 0; k < S; k++)
        if ((ginit[k] = NULL, r->init[k]->requires_grad) && !(ginit[k] = loom_tape_grad(t, r->init[k]))) return;
    for (int j = r->nseg - 1; j >= 0; j--) {
        loom_tensor *ys = NULL;
        loom_status st = run_segment(r, j, 1, gx, gy, gends, ginit, &ys);
        if (st != LOOM_OK) {
            fail(t, st);
            return;
        }
        /* y's rows carry h's gradient at every position (a segment's end too); the final
         * segment's state parts and the other parts at every end come from ends. */
        int n = 0;
        r->outs[n] = ys, r->seeds[n++] = gy + (size_t)seg_start(r, j) * BH;
        for (int k = 0; k < S; k++)
            if (k > 0 || j == r->nseg - 1) r->outs[n] = r->lasts[k], r->seeds[n++] = gends + ((size_t)j * S + k) * BH;
        if ((st = loom_tape_backward_seeded(r->sc, r->outs, r->seeds, n)) != LOOM_OK) {
            fail(t, st);
            return;
        }
    }
    loom_tape_reset(r->sc);
}
