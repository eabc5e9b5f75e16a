/* The sequence layer: runs each layer's cell over time (fused or unrolled),
 * stacks layers with dropout between them and handles per-sequence lengths.
 * A bidirectional layer runs a second cell over each sequence reversed within
 * its length (a row gather) and puts both outputs side by side. */
#include <limits.h>
#include <string.h>

#include "internal.h"

loom_status loom_seq_init(loom_seq *s, const loom_cell *cells, int layers, float dropout)
{
    if (!s) return LOOM_NULL_ARG("seq_init", "stack");
    memset(s, 0, sizeof *s);
    if (!cells) return LOOM_NULL_ARG("seq_init", "cells");
    if (layers < 1 || layers > LOOM_SEQ_MAX_LAYERS)
        return loom_error_set(LOOM_EARG, "seq: %d layers (expected 1 to %d)", layers, LOOM_SEQ_MAX_LAYERS);
    if (!(dropout >= 0.0f && dropout < 1.0f)) return loom_error_set(LOOM_EARG, "seq: dropout %g is outside [0,1)", dropout);
    for (int l = 0; l < layers; l++) {
        const loom_cell *c = &cells[l];
        if (!c->step || !c->declare || c->n_state < 1 || c->hidden_size <= 0 || c->input_size <= 0)
            return loom_error_set(LOOM_EARG, "seq: layer %d cell '%s' is incomplete (needs declare, step, sizes and a state)",
                                  l, c->name);
        if (l > 0 && c->input_size != cells[l - 1].hidden_size)
            return loom_error_set(LOOM_ESHAPE, "seq: layer %d takes input %d but layer %d gives %d", l, c->input_size, l - 1,
                                  cells[l - 1].hidden_size);
        if (c->forward && (!c->backward || c->gates < 1 || c->ws_cols < 0))
            return loom_error_set(LOOM_EARG, "seq: layer %d cell '%s' has a fused forward but %s", l, c->name,
                                  !c->backward ? "no backward" : c->gates < 1 ? "no gates" : "a negative ws_cols");
    }
    if (!(s->cells = loom_calloc((size_t)layers, sizeof *s->cells))) return loom_error_set(LOOM_ENOMEM, "seq: out of memory");
    for (int l = 0; l < layers; l++) {
        s->cells[l] = cells[l];
        s->cells[l].w = NULL; /* each copy declares its own parameters */
        s->cells[l].nw = s->cells[l].w_cap = 0;
        s->cells[l].reverse = 0; /* set by loom_seq_set_bidirectional on the reverse copies */
    }
    s->layers = layers;
    s->dropout = dropout;
    s->fused = 1;
    s->row_teams = 1;
    return LOOM_OK;
}

loom_status loom_seq_declare(loom_seq *s, loom_params *ps, const char *prefix)
{
    if (!s) return LOOM_NULL_ARG("seq_declare", "stack");
    if (!ps) return LOOM_NULL_ARG("seq_declare", "params");
    if (!prefix) return LOOM_NULL_ARG("seq_declare", "prefix");
    if (!s->cells) return loom_error_set(LOOM_ESTATE, "seq_declare: the stack is not initialised (loom_seq_init)");
    if (s->bidirectional != (s->rcells != NULL))
        return loom_error_set(LOOM_ESTATE, "seq_declare: bidirectional is set by loom_seq_set_bidirectional, not by hand");
    for (int l = 0; l < s->layers; l++)
        for (int d = 0; d < loom_seq_dirs(s); d++) { /* PyTorch's order: _l0, _l0_reverse, _l1, ... */
            loom_cell *c = d ? &s->rcells[l] : &s->cells[l];
            c->nw = 0;
            loom_status st = c->declare(c, ps, prefix, l);
            if (st == LOOM_OK && c->forward) st = loom_cell_check_fused(c, l);
            if (st != LOOM_OK) return st;
        }
    return LOOM_OK;
}

static void free_cells(loom_cell *cells, int layers)
{
    for (int l = 0; cells && l < layers; l++) loom_free(cells[l].w);
    loom_free(cells);
}

loom_status loom_seq_set_bidirectional(loom_seq *s, int on)
{
    if (!s) return LOOM_NULL_ARG("seq_set_bidirectional", "stack");
    if (!s->cells) return loom_error_set(LOOM_ESTATE, "seq_set_bidirectional: the stack is not initialised (loom_seq_init)");
    for (int l = 0; l < s->layers; l++)
        if (s->cells[l].nw || (s->rcells && s->rcells[l].nw))
            return loom_error_set(LOOM_ESTATE, "seq_set_bidirectional: the stack's parameters are declared already: "
                                               "call it before loom_seq_declare");
    on = on != 0;
    if (on == s->bidirectional) return LOOM_OK;
    if (on) {
        loom_cell *r = loom_calloc((size_t)s->layers, sizeof *r);
        if (!r) return loom_error_set(LOOM_ENOMEM, "seq_set_bidirectional: out of memory for %d cells", s->layers);
        for (int l = 1; l < s->layers; l++) { /* both directions' outputs feed the next layer */
            int H = s->cells[l - 1].hidden_size;
            if (H > INT_MAX / 2) {
                loom_free(r);
                return loom_error_set(LOOM_ESHAPE, "seq_set_bidirectional: layer %d's input 2 x %d is too large", l, H);
            }
        }
        for (int l = 1; l < s->layers; l++) s->cells[l].input_size = 2 * s->cells[l - 1].hidden_size;
        for (int l = 0; l < s->layers; l++) {
            r[l] = s->cells[l];
            r[l].w = NULL, r[l].nw = r[l].w_cap = 0;
            r[l].reverse = 1;
        }
        s->rcells = r;
    } else {
        free_cells(s->rcells, s->layers);
        s->rcells = NULL;
        for (int l = 1; l < s->layers; l++) s->cells[l].input_size = s->cells[l - 1].hidden_size;
    }
    s->bidirectional = on;
    return LOOM_OK;
}

void loom_seq_apply_init(loom_seq *s)
{
    if (!s) {
        LOOM_NULL_ARG("seq_apply_init", "stack");
        return;
    }
    for (int i = 0; s->cells && i < loom_seq_dirs(s) * s->layers; i++) {
        int l = i % s->layers;
        loom_cell *c = i < s->layers ? &s->cells[l] : &s->rcells[l];
        if (strcmp(c->name, "lstm") != 0 || c->forget_bias == 0.0f || c->nw < 4) continue;
        if (!c->w[2]->data) { /* before loom_params_alloc there is nothing to write to */
            loom_error_set(LOOM_ESTATE, "seq_apply_init: layer %d: the parameters are not allocated", l);
            return;
        }
        int H = c->hidden_size;
        for (int j = 0; j < H; j++) {
            c->w[2]->data[H + j] = c->forget_bias; /* bias_ih, forget slice */
            c->w[3]->data[H + j] = 0.0f;           /* bias_hh, forget slice */
        }
    }
}

void loom_seq_free(loom_seq *s)
{
    if (!s) return;
    loom_tape_free(s->scratch);
    s->scratch = NULL;
    free_cells(s->cells, s->layers);
    free_cells(s->rcells, s->layers);
    s->cells = s->rcells = NULL;
    s->layers = 0;
    s->bidirectional = 0;
}

loom_status loom_seq_set_recompute(loom_seq *s, int K)
{
    if (!s) return LOOM_NULL_ARG("seq_set_recompute", "stack");
    if (!s->cells) return loom_error_set(LOOM_ESTATE, "seq_set_recompute: the stack is not initialised (loom_seq_init)");
    if (K < 0)
        return loom_error_set(LOOM_EARG, "seq_set_recompute: K = %d steps per segment is negative (0 turns recomputation off)", K);
    s->recompute = K;
    return LOOM_OK;
}

loom_status loom_seq_set_row_teams(loom_seq *s, int on)
{
    if (!s) return LOOM_NULL_ARG("seq_set_row_teams", "stack");
    if (on != 0 && on != 1) return loom_error_set(LOOM_EARG, "seq_set_row_teams: on is %d; 1 or 0", on);
    s->row_teams = on;
    return LOOM_OK;
}

void loom_seq_set_shard(loom_seq *s, int row0, int global_batch)
{
    if (!s || row0 < 0 || global_batch < 0) { /* void: the message is all it can leave */
        if (!s) LOOM_NULL_ARG("seq_set_shard", "stack");
        else loom_error_set(LOOM_EARG, "seq_set_shard: row %d and global batch %d must not be negative", row0,
                            global_batch);
        return;
    }
    s->shard_row0 = row0;
    s->shard_batch = global_batch;
}

int loom_seq_embedding_folds(int vocab, int rows) { return vocab > 0 && (long long)vocab * 2 <= rows; }

void loom_seq_length_weights(const int *lengths, int T, int B, float *w)
{
    if (!w && T > 0 && B > 0) {
        LOOM_NULL_ARG("seq_length_weights", "weights");
        return;
    }
    for (int t = 0; t < T; t++)
        for (int b = 0; b < B; b++) w[(size_t)t * B + b] = (!lengths || t < lengths[b]) ? 1.0f : 0.0f;
}

/* One direction of one layer over the window, fused where the cell has the form. */
static loom_status run_layer(loom_seq *s, loom_cell *c, loom_tape *t, loom_tensor *in, int T, int B,
                             const unsigned char *keep, loom_tensor *const *init, loom_tensor **y, loom_tensor **last)
{
    int K = s->recompute;
    if (s->fused && c->forward) return loom_layer_fused(t, c, in, T, B, keep, init, K, s->row_teams, y, last);
    if (K <= 0 || K >= T) return loom_layer_unrolled(t, c, in, T, B, keep, init, y, last);
    if (!s->scratch && !(s->scratch = loom_tape_new(1u << 20))) /* once: it keeps its memory between steps */
        return loom_tape_fail(t, LOOM_ENOMEM, "seq: out of memory for the recompute tape"), LOOM_ENOMEM;
    return loom_layer_recompute(t, s->scratch, c, in, T, B, keep, init, K, y, last);
}

static loom_status forward_from(loom_seq *s, loom_tape *t, loom_tensor *x, int T, int B, const int *lengths, int train,
                                loom_tensor *const *init, loom_rng *rng, loom_seq_out *out)
{
    if (!s->cells) return loom_error_set(LOOM_ESTATE, "seq: the stack is not initialised");
    if (s->bidirectional != (s->rcells != NULL))
        return loom_error_set(LOOM_ESTATE, "seq: bidirectional is set by loom_seq_set_bidirectional, not by hand");
    if (loom_tape_check(t, "seq", &x, 1) != LOOM_OK) return loom_tape_status(t);
    /* A fused layer's output history is one tensor of (T+1) x B rows. */
    if (T > 0 && B > 0 && (long long)(T + 1) * B > INT_MAX)
        return loom_error_set(LOOM_ESHAPE, "seq: T=%d x B=%d is too many rows: the state history needs %lld, at most %d",
                              T, B, (long long)(T + 1) * B, INT_MAX);
    if (T <= 0 || B <= 0 || (long long)x->rows != (long long)T * B || x->cols != s->cells[0].input_size)
        return loom_error_set(LOOM_ESHAPE, "seq: input [%dx%d] does not fit T=%d x B=%d rows of %d features", x->rows,
                              x->cols, T, B, s->cells[0].input_size);
    if (train && s->dropout > 0.0f && s->layers > 1 && !rng)
        return loom_error_set(LOOM_EARG, "seq: training with dropout needs an rng");
    loom_arena *ar = loom_tape_arena(t);
    int P = loom_seq_state_count(s);
    unsigned char *keep = loom_arena_alloc(ar, (size_t)T * B);
    loom_tensor **last = loom_arena_alloc(ar, (size_t)P * sizeof *last), **st0 = loom_arena_alloc(ar, (size_t)P * sizeof *st0);
    if (!keep || !last || !st0)
        return loom_tape_fail(t, LOOM_ENOMEM, "seq: cannot allocate %zu bytes for the masks of T=%d x B=%d", (size_t)T * B, T, B),
               LOOM_ENOMEM;
    for (int b = 0; b < B; b++) {
        if (lengths && (lengths[b] < 0 || lengths[b] > T))
            return loom_error_set(LOOM_EARG, "seq: length %d of sequence %d is outside [0,%d]", lengths[b], b, T);
        for (int k = 0; k < T; k++) keep[(size_t)k * B + b] = !lengths || k < lengths[b];
    }
    int D = loom_seq_dirs(s);
    for (int l = 0, i = 0; l < s->layers; l++)
        for (int k = 0; k < D * s->cells[l].n_state; k++, i++) {
            int H = s->cells[l].hidden_size;
            st0[i] = init ? init[i] : loom_tape_zeros(t, B, H);
            if (!st0[i]) return init ? loom_error_set(LOOM_EARG, "seq: initial state %d (layer %d part %d) is NULL", i, l, k)
                                     : loom_tape_status(t);
            if (loom_tape_check(t, "seq: initial state", &st0[i], 1) != LOOM_OK) return loom_tape_status(t);
            if (st0[i]->rows != B || st0[i]->cols != H)
                return loom_error_set(LOOM_ESHAPE, "seq: initial state of layer %d part %d is [%dx%d], expected [%dx%d]", l, k,
                                      st0[i]->rows, st0[i]->cols, B, H);
        }
    int *rev = NULL; /* bidirectional: row t*B+b of a sequence reversed within its length is row rev[t*B+b] */
    if (D == 2) {
        if (!(rev = loom_arena_alloc(ar, (size_t)T * B * sizeof *rev)))
            return loom_tape_fail(t, LOOM_ENOMEM, "seq: out of memory"), LOOM_ENOMEM;
        for (int b = 0; b < B; b++) {
            int n = lengths ? lengths[b] : T;
            for (int k = 0; k < T; k++) rev[(size_t)k * B + b] = (k < n ? n - 1 - k : k) * B + b; /* padding stays */
        }
    }
    loom_tensor *in = x, *y = NULL;
    for (int l = 0, i = 0; l < s->layers; i += D * s->cells[l].n_state, l++) {
        loom_status r = run_layer(s, &s->cells[l], t, in, T, B, keep, st0 + i, &y, last + i);
        if (r != LOOM_OK) return r;
        if (D == 2) { /* the reverse direction: reverse, run, un-reverse (the gather is its own inverse) */
            loom_tensor *yr = NULL, *xr = loom_op_embedding(t, in, rev, T * B);
            if (!xr) return loom_tape_status(t);
            int ns = s->cells[l].n_state; /* the reverse direction's parts follow the forward one's */
            if ((r = run_layer(s, &s->rcells[l], t, xr, T, B, keep, st0 + i + ns, &yr, last + i + ns)) != LOOM_OK) return r;
            loom_tensor *both[2] = {y, loom_op_embedding(t, yr, rev, T * B)};
            if (!(y = loom_op_concat(t, both, 2))) return loom_tape_status(t);
        }
        if (l + 1 < s->layers && train && s->dropout > 0.0f)
            in = loom_op_dropout_shard(t, y, s->dropout, rng, B, s->shard_batch ? s->shard_batch : B,
                                       s->shard_batch ? s->shard_row0 : 0);
        else in = y;
        if (!in) return loom_tape_status(t);
    }
    out->y = y;
    out->h_last = last[loom_seq_state_index(s, s->layers - 1, 0)];
    if (D == 2) { /* the forward direction's last real step beside the reverse direction's first */
        loom_tensor *both[2] = {out->h_last, last[loom_seq_state_index(s, s->layers - 1, s->cells[s->layers - 1].n_state)]};
        if (!(out->h_last = loom_op_concat(t, both, 2))) return loom_tape_status(t);
    }
    out->last = last;
    out->n_last = P;
    return loom_tape_status(t);
}

/* A failed forward also marks the tape, so a chain of ops after it can be checked once at its end. */
static loom_status mark(loom_tape *t, loom_status st)
{
    if (st != LOOM_OK && t && loom_tape_status(t) == LOOM_OK) loom_tape_fail(t, st, "%s", loom_error_message());
    return st;
}

/* What both forward calls check first: their pointers, and a tape that has not failed. */
static loom_status begin(loom_seq *s, loom_tape *t, loom_seq_out *out)
{
    if (!out) return mark(t, loom_error_set(LOOM_EARG, "seq: out is NULL"));
    memset(out, 0, sizeof *out);
    if (!s || !t) return loom_error_set(LOOM_EARG, "seq: %s is NULL", s ? "tape" : "stack");
    return loom_tape_status(t);
}

loom_status loom_seq_forward_from(loom_seq *s, loom_tape *t, loom_tensor *x, int T, int B, const int *lengths,
                                  int train, loom_tensor *const *init, loom_rng *rng, loom_seq_out *out)
{
    loom_status st = begin(s, t, out);
    return st != LOOM_OK ? st : mark(t, forward_from(s, t, x, T, B, lengths, train, init, rng, out));
}

loom_status loom_seq_forward(loom_seq *s, loom_tape *t, loom_tensor *x, int T, int B, const int *lengths, int train,
                             const loom_state *init, loom_rng *rng, loom_seq_out *out)
{
    loom_status st = begin(s, t, out);
    if (st != LOOM_OK) return st;
    if (!init || !s->cells) return loom_seq_forward_from(s, t, x, T, B, lengths, train, NULL, rng, out);
    if (loom_state_batch(init) != B)
        return mark(t, loom_error_set(LOOM_ESTATE, "seq: batch %d differs from the state's batch %d", B,
                                      loom_state_batch(init)));
    if (!loom_state_fits(init, s)) return mark(t, loom_error_set(LOOM_ESTATE, "seq: the state was made for another stack"));
    int P = loom_seq_state_count(s);
    loom_tensor **st0 = loom_arena_alloc(loom_tape_arena(t), (size_t)P * sizeof *st0);
    if (!st0) return loom_tape_fail(t, LOOM_ENOMEM, "seq: out of memory"), LOOM_ENOMEM;
    /* The carried state enters as a constant: this is the detach at a window boundary. */
    for (int l = 0, i = 0; l < s->layers; l++)
        for (int k = 0; k < loom_seq_dirs(s) * s->cells[l].n_state; k++, i++)
            if (!(st0[i] = loom_tape_from(t, B, s->cells[l].hidden_size, loom_state_part((loom_state *)init, l, k))))
                return loom_tape_status(t);
    return loom_seq_forward_from(s, t, x, T, B, lengths, train, st0, rng, out);
}
