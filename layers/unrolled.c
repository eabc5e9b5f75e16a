/* The unrolled recurrent layer: any cell's step, recorded op by op, one time
 * step after another. Backward is the tape's own walk over those ops. */
#include "internal.h"

loom_status loom_layer_unrolled(loom_tape *t, loom_cell *c, loom_tensor *x, int T, int B, const unsigned char *keep,
                                loom_tensor *const *init, loom_tensor **y, loom_tensor **last)
{
    loom_arena *ar = loom_tape_arena(t);
    int S = c->n_state;
    loom_tensor **hs = loom_arena_alloc(ar, (size_t)T * sizeof *hs);
    loom_tensor **st = loom_arena_alloc(ar, (size_t)S * sizeof *st), **next = loom_arena_alloc(ar, (size_t)S * sizeof *next);
    if (!hs || !st || !next) return loom_tape_fail(t, LOOM_ENOMEM, "%s layer: out of memory", c->name), LOOM_ENOMEM;
    for (int k = 0; k < S; k++) st[k] = init[k];
    for (int s = 0; s < T; s++) {
        loom_tensor *xt = loom_tape_view_rows(t, x, s * B, B);
        if (!xt) return loom_tape_status(t);
        for (int k = 0; k < S; k++) next[k] = NULL;
        loom_status r = c->step(c, t, xt, st, next);
        if (r == LOOM_OK) r = loom_tape_status(t);
        for (int k = 0; k < S && r == LOOM_OK; k++)
            if (!next[k] || next[k]->rows != B || next[k]->cols != c->hidden_size)
                r = loom_error_set(LOOM_ESHAPE, "cell '%s'%s step %d: state %d is %s, expected [%dx%d]", c->name,
                                   c->reverse ? " (reverse direction)" : "", s, k, next[k] ? "the wrong shape" : "missing",
                                   B, c->hidden_size);
        if (r != LOOM_OK) return loom_tape_status(t) != LOOM_OK ? loom_tape_status(t) : r;
        const unsigned char *ks = keep + (size_t)s * B;
        int all = 1;
        for (int b = 0; b < B; b++) all &= ks[b] != 0;
        for (int k = 0; k < S; k++) st[k] = all ? next[k] : loom_op_select_rows(t, ks, next[k], st[k]);
        hs[s] = st[0];
    }
    *y = loom_op_vstack(t, hs, T);
    for (int k = 0; k < S; k++) last[k] = st[k];
    return loom_tape_status(t);
}
