/* The sequence layer: unrolls any cell over time, stacks layers with dropout
 * between them, handles per-sequence lengths and carries state between windows. */
#include <string.h>

#include "loom_layers.h"

loom_status loom_seq_init(loom_seq *s, const loom_cell *cells, int layers, float dropout)
{
    memset(s, 0, sizeof *s);
    if (layers < 1 || layers > LOOM_MAX_LAYERS)
        return loom_error_set(LOOM_EARG, "seq: %d layers (expected 1 to %d)", layers, LOOM_MAX_LAYERS);
    if (!(dropout >= 0.0f && dropout < 1.0f)) return loom_error_set(LOOM_EARG, "seq: dropout %g is outside [0,1)", dropout);
    for (int l = 0; l < layers; l++) {
        const loom_cell *c = &cells[l];
        if (!c->step || !c->declare || c->n_state < 1 || c->n_state > LOOM_CELL_MAX_STATE || c->hidden_size <= 0 ||
            c->input_size <= 0)
            return loom_error_set(LOOM_EARG, "seq: layer %d cell '%s' is incomplete (needs declare, step, sizes, 1..%d states)",
                                  l, c->name, LOOM_CELL_MAX_STATE);
        if (l > 0 && c->input_size != cells[l - 1].hidden_size)
            return loom_error_set(LOOM_ESHAPE, "seq: layer %d takes input %d but layer %d gives %d", l, c->input_size, l - 1,
                                  cells[l - 1].hidden_size);
        s->cells[l] = *c;
    }
    s->layers = layers;
    s->dropout = dropout;
    s->fused = 1;
    return LOOM_OK;
}

loom_status loom_seq_declare(loom_seq *s, loom_params *ps, const char *prefix)
{
    for (int l = 0; l < s->layers; l++) {
        s->cells[l].nw = 0;
        loom_status st = s->cells[l].declare(&s->cells[l], ps, prefix, l);
        if (st != LOOM_OK) return st;
    }
    return LOOM_OK;
}

void loom_seq_apply_init(loom_seq *s)
{
    for (int l = 0; l < s->layers; l++) {
        loom_cell *c = &s->cells[l];
        if (strcmp(c->name, "lstm") != 0 || c->forget_bias == 0.0f || c->nw < 4) continue;
        int H = c->hidden_size;
        for (int j = 0; j < H; j++) {
            c->w[2]->data[H + j] = c->forget_bias; /* bias_ih, forget slice */
            c->w[3]->data[H + j] = 0.0f;           /* bias_hh, forget slice */
        }
    }
}

static float *carry_at(loom_seq *s, int layer, int k)
{
    size_t off = 0;
    for (int l = 0; l < layer; l++) off += (size_t)s->cells[l].n_state * s->batch * s->cells[l].hidden_size;
    return s->carry + off + (size_t)k * s->batch * s->cells[layer].hidden_size;
}

loom_status loom_seq_reset_state(loom_seq *s, int batch)
{
    if (batch <= 0) return loom_error_set(LOOM_EARG, "seq: batch %d must be positive", batch);
    size_t n = 0;
    for (int l = 0; l < s->layers; l++) n += (size_t)s->cells[l].n_state * batch * s->cells[l].hidden_size;
    if (batch != s->batch || !s->carry) {
        loom_free(s->carry);
        s->carry = loom_calloc(n, sizeof(float));
        if (!s->carry) return LOOM_ENOMEM;
        s->batch = batch;
        s->carry_size = n;
    }
    memset(s->carry, 0, n * sizeof(float));
    return LOOM_OK;
}

void loom_seq_free(loom_seq *s)
{
    loom_free(s->carry);
    s->carry = NULL;
    s->batch = 0;
}

float *loom_seq_state(loom_seq *s, int layer, int k) { return carry_at(s, layer, k); }

void loom_seq_set_shard(loom_seq *s, int row0, int global_batch)
{
    s->shard_row0 = row0;
    s->shard_batch = global_batch;
}

void loom_seq_length_weights(const int *lengths, int T, int B, float *w)
{
    for (int t = 0; t < T; t++)
        for (int b = 0; b < B; b++) w[(size_t)t * B + b] = (!lengths || t < lengths[b]) ? 1.0f : 0.0f;
}

/* The unfused path: any cell's step, one time step at a time. */
static loom_status run_steps(loom_cell *c, loom_tape *t, loom_tensor *x, int T, int B, const unsigned char *keep,
                             loom_tensor *const *state0, loom_tensor **y, loom_tensor **last)
{
    loom_tensor **hs = loom_arena_alloc(loom_tape_arena(t), (size_t)T * sizeof *hs);
    if (!hs) return loom_tape_fail(t, LOOM_ENOMEM, "seq: out of memory"), LOOM_ENOMEM;
    loom_tensor *st[LOOM_CELL_MAX_STATE], *next[LOOM_CELL_MAX_STATE];
    for (int k = 0; k < c->n_state; k++) st[k] = state0[k];
    for (int s = 0; s < T; s++) {
        loom_tensor *xt = loom_tape_view_rows(t, x, s * B, B);
        if (!xt) return loom_tape_status(t);
        for (int k = 0; k < c->n_state; k++) next[k] = NULL;
        loom_status r = c->step(c, t, xt, st, next);
        if (r == LOOM_OK) r = loom_tape_status(t);
        for (int k = 0; k < c->n_state && r == LOOM_OK; k++)
            if (!next[k] || next[k]->rows != B || next[k]->cols != c->hidden_size)
                r = loom_error_set(LOOM_ESHAPE, "seq: cell '%s' step %d: state %d is %s, expected [%dx%d]", c->name, s, k,
                                   next[k] ? "the wrong shape" : "missing", B, c->hidden_size);
        if (r != LOOM_OK) return r;
        const unsigned char *ks = keep + (size_t)s * B;
        int all = 1;
        for (int b = 0; b < B; b++) all &= ks[b] != 0;
        for (int k = 0; k < c->n_state; k++) st[k] = all ? next[k] : loom_op_select_rows(t, ks, next[k], st[k]);
        hs[s] = st[0];
    }
    *y = loom_op_vstack(t, hs, T);
    for (int k = 0; k < c->n_state; k++) last[k] = st[k];
    return loom_tape_status(t);
}

loom_status loom_seq_forward(loom_seq *s, loom_tape *t, loom_tensor *x, int T, int B, const int *lengths, int train,
                             int carry, loom_rng *rng, loom_seq_out *out)
{
    memset(out, 0, sizeof *out);
    if (loom_tape_status(t) != LOOM_OK) return loom_tape_status(t);
    if (!x) return loom_error_set(LOOM_EARG, "seq: input is NULL");
    if (T <= 0 || B <= 0 || x->rows != T * B || x->cols != s->cells[0].input_size)
        return loom_error_set(LOOM_ESHAPE, "seq: input [%dx%d] does not fit T=%d x B=%d rows of %d features", x->rows,
                              x->cols, T, B, s->cells[0].input_size);
    if (B != s->batch)
        return loom_error_set(LOOM_ESTATE, "seq: batch %d differs from the state's batch %d (call loom_seq_reset_state)", B,
                              s->batch);
    unsigned char *keep = loom_arena_alloc(loom_tape_arena(t), (size_t)T * B);
    if (!keep) return loom_error_set(LOOM_ENOMEM, "seq: out of memory");
    for (int b = 0; b < B; b++) {
        if (lengths && (lengths[b] < 0 || lengths[b] > T))
            return loom_error_set(LOOM_EARG, "seq: length %d of sequence %d is outside [0,%d]", lengths[b], b, T);
        for (int k = 0; k < T; k++) keep[(size_t)k * B + b] = !lengths || k < lengths[b];
    }
    loom_tensor *in = x, *y = NULL, *last[LOOM_CELL_MAX_STATE] = {0};
    for (int l = 0; l < s->layers; l++) {
        loom_cell *c = &s->cells[l];
        int H = c->hidden_size;
        loom_tensor *st0[LOOM_CELL_MAX_STATE];
        /* The carried state enters as a constant: this is the detach at a window boundary. */
        for (int k = 0; k < c->n_state; k++) {
            st0[k] = loom_tape_from(t, B, H, carry_at(s, l, k));
            if (!st0[k]) return loom_tape_status(t);
        }
        loom_status r;
        if (s->fused && c->seq) {
            loom_tensor *hext = loom_tape_tensor(t, (T + 1) * B, H);
            if (!hext) return loom_tape_status(t);
            memcpy(hext->data, st0[0]->data, (size_t)B * H * sizeof(float));
            if (!loom_tape_nograd(t)) {
                hext->requires_grad = 1;
                if (!loom_tape_grad(t, hext)) return loom_tape_status(t);
            }
            loom_cell_seq_args a = {in, T, B, keep, st0, hext, last};
            r = c->seq(c, t, &a);
            if (r == LOOM_OK) y = loom_tape_view_rows(t, hext, B, T * B);
        } else {
            r = run_steps(c, t, in, T, B, keep, st0, &y, last);
        }
        if (r == LOOM_OK) r = loom_tape_status(t);
        if (r != LOOM_OK) return r;
        if (carry)
            for (int k = 0; k < c->n_state; k++) memcpy(carry_at(s, l, k), last[k]->data, (size_t)B * H * sizeof(float));
        if (l + 1 < s->layers && train && s->dropout > 0.0f)
            in = loom_op_dropout_shard(t, y, s->dropout, rng, B, s->shard_batch ? s->shard_batch : B,
                                       s->shard_batch ? s->shard_row0 : 0);
        else in = y;
        if (!in) return loom_tape_status(t);
    }
    out->y = y;
    out->h_last = last[0];
    return loom_tape_status(t);
}
