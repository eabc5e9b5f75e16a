/* The fused recurrent layer: a cell's pointwise kernel run over a window of T
 * steps, with the GEMMs around it, recorded as one tape node. Its forward and
 * backward sit side by side below.
 *
 * Blocks: the weight gradients, and without packed weights (below) the input
 * projection and the input's gradient, are GEMMs over blocks of C steps (about
 * BLOCK_ROWS rows), at multiples of C from the window's start. OpenBLAS's bits
 * depend on a call's row count, so fixed blocks are what lets recomputation
 * (below) make the very calls the plain path makes, and sum the weight gradients
 * in the same order: the same bits.
 *
 * Packed weights (where loom_kernel_packed_fast): W_hh is packed once per window and
 * every step projects its rows' state on loom_kernel_gemm_packed, whose bits depend
 * on no grouping of rows; backward's dh_prev likewise. With a row team, W_ih too:
 * each step also projects its rows' input, and backward computes their dx, per step.
 *
 * Folded embedding (loom_seq_embedding_folds): when x is gathered from a table of fewer
 * rows, the table is projected once per window and each step copies its rows' projection;
 * backward adds each row's gate gradient into its token's and takes W_ih's and the table's
 * gradients from those sums once (C: 4% of the FLOPs, the input's K = 64 projection).
 *
 * Recompute (K > 0, K < T): the window runs in segments of K steps. Forward keeps
 * the output h at every step (it is y) and the other state parts only at segment
 * boundaries; the gates, workspace and inner states live in one segment's scratch.
 *
 * Only h is the tape's tensor (hist): the other parts (an LSTM's c) are the layer's
 * own, and so is their gradient, which backward needs one step at a time: a ring of
 * two positions in a plain window. Their final values are copied out (ends).
 * Backward walks the segments from the last, recomputing each one's forward from
 * its boundary state before walking its steps back. */
#include <omp.h>
#include <string.h>

#include "internal.h"

/* Rows per block: large enough that blocked GEMMs run at the whole window's speed. */
#define BLOCK_ROWS 512

/* What forward keeps for backward. */
typedef struct fused_acts {
    loom_cell *c;
    int T, B, K, C;            /* K: steps per segment (T when plain); C: steps per block */
    int nseg, plain;           /* plain: one segment, every activation kept */
    int nb;                    /* positions kept of state parts 1..: T+1 (plain) or nseg+1 boundaries */
    loom_tensor *x;            /* the layer's input [T*B x I] */
    loom_tensor *hist;         /* part 0 (h) at positions 0..T: y is a view of it */
    float *parts;              /* parts 1.. at nb positions each */
    loom_tensor *ends;         /* parts 1.. at T, copied: the final state's other parts [(S-1)*B x H] */
    float *pre, *rec, *ws;     /* plain: every step's; recompute: one segment's (pre without packed weights:
                                * the blocks it touches) */
    float *st;                 /* recompute: parts 1.. inside a segment, [S-1][K+1][B x H] */
    int pre0, ws0;             /* the first step pre and ws/rec hold */
    int seg;                   /* the segment whose activations pre/ws/st hold (-1: none) */
    int head_ok, tail_ok;      /* pre's first block before, and last block after, that segment: as projected */
    const unsigned char *keep; /* [T*B] */
    loom_tensor *const *init;  /* [n_state] initial states */
    const float **prev;        /* [team][n_state] each thread's tile state pointers */
    float **next;
    int team;                  /* threads that each own a range of batch rows over the whole window (1: none) */
    float *pk, *pki;           /* W_hh^T, W_ih^T packed once for the window (NULL: OpenBLAS's GEMMs); with pki
                                * each thread projects its own rows' input at every step, no block GEMMs */
    float *bsum;               /* with them: b_ih + b_hh, where one GEMM's start is both biases */
    const int *tok;            /* folded embedding (loom_seq_embedding_folds): x's rows are rows tok[] */
    loom_tensor *tab;          /* of tab, and ptab [V x GH] is tab's input projection with the bias pre */
    float *ptab;               /* starts from: each step copies its rows' from it (NULL: not folded) */
} fused_acts;

/* Threads that each own batch rows for the whole window: all of them when the recurrent
 * weights are small enough that every thread reading them all each step stays in cache
 * (ROW_TEAM_MAX_W bytes) and each gets ROW_TEAM_MIN_ROWS rows; else 1, and each step's
 * GEMM and kernel split over the team instead. A function of the shapes and the thread
 * count only, so the same bits for the same thread count. On the packed kernel the rows
 * go to the threads by their measured speed (layers/team.c): no row's bits depend on it. */
#ifndef ROW_TEAM_MAX_W /* -DROW_TEAM_MAX_W=0 turns row teams off, to compare */
#define ROW_TEAM_MAX_W (6u << 20)
#endif
#define ROW_TEAM_MIN_ROWS 8
static int row_team(const loom_cell *c, int B)
{
    int n = omp_get_max_threads();
    size_t w = (size_t)c->gates * c->hidden_size * c->hidden_size * sizeof(float);
    if (n > B / ROW_TEAM_MIN_ROWS) n = B / ROW_TEAM_MIN_ROWS;
    if (n > LOOM_TEAM_MAX) n = LOOM_TEAM_MAX;
    return n > 1 && w <= ROW_TEAM_MAX_W && !omp_in_parallel() && loom_kernel_gemm_in_teams() ? n : 1;
}

/* The projections on loom's packed kernel (W_hh and W_ih packed once per window, not once
 * per call as OpenBLAS does) where it matches OpenBLAS's rate, for weights up to
 * PACKED_MAX_W bytes: the packs cost the arena up to twice the weights (backward's reuse
 * forward's in a plain window). */
#define PACKED_MAX_W (64u << 20)
static int packed_rec(const loom_cell *c)
{
    size_t w = (size_t)c->gates * c->hidden_size * (c->hidden_size + c->input_size) * sizeof(float);
    return w <= PACKED_MAX_W && loom_kernel_packed_fast();
}

static int block_steps(int B) { return B >= BLOCK_ROWS ? 1 : (BLOCK_ROWS + B - 1) / B; }

/* Where the state's values, or their gradients, live: part 0 at every position in h;
 * parts 1.. at kept positions in parts (ring: only positions p and p + 1, in slot p % 2)
 * and inside a segment in the scratch scr. */
typedef struct state_store {
    float *h, *parts, *scr;
    int ring;
} state_store;

static int kept(const fused_acts *a, int k, int p) { return k == 0 || a->plain || p % a->K == 0 || p == a->T; }

/* Part k of the state at position p in store st. */
static float *state_at(const fused_acts *a, const state_store *st, int k, int p)
{
    size_t BH = (size_t)a->B * a->c->hidden_size;
    if (k == 0) return st->h + (size_t)p * BH;
    if (kept(a, k, p)) {
        int slot = st->ring ? p % 2 : a->plain ? p : p == a->T ? a->nseg : p / a->K;
        return st->parts + ((size_t)(k - 1) * (st->ring ? 2 : a->nb) + (size_t)slot) * BH;
    }
    return st->scr + ((size_t)(k - 1) * (a->K + 1) + (size_t)(p - p / a->K * a->K)) * BH;
}

static state_store values(const fused_acts *a) { return (state_store){a->hist->data, a->parts, a->st, 0}; }

/* Points a tile at step s: pre/rec/ws rows and the state before and after it. */
static void tile_at(const fused_acts *a, int s, loom_cell_tile *tl, const float **prev, float **next)
{
    size_t GH = (size_t)a->c->gates * a->c->hidden_size, B = (size_t)a->B;
    tl->pre = a->pre + (size_t)(s - a->pre0) * B * GH;
    tl->rec = a->rec ? a->rec + (size_t)(s - a->ws0) * B * GH : NULL;
    tl->ws = a->ws ? a->ws + (size_t)(s - a->ws0) * B * a->c->ws_cols : NULL;
    state_store v = values(a);
    for (int k = 0; k < a->c->n_state; k++) {
        prev[k] = state_at(a, &v, k, s);
        next[k] = state_at(a, &v, k, s + 1);
    }
}

/* Runs a kernel over the tile's rows, split over threads when the tile is big enough. */
static void run_kernel(loom_cell_kernel_fn kernel, const loom_cell *c, const loom_cell_tile *tl)
{
    int B = tl->B, n = (long)B * tl->H >= LOOM_PAR_MIN ? loom_threads_get() : 1;
    if (n > B) n = B;
    LOOM_PFOR_IF(n > 1, q, n, { kernel(c, tl, (int)(q * B / n), (int)((q + 1) * B / n)); });
}

/* dst[r] = bias for each of n rows of width w. */
static void fill_rows(float *dst, const float *bias, size_t n, int w)
{
    for (size_t r = 0; r < n; r++) memcpy(dst + r * w, bias, (size_t)w * sizeof(float));
}

/* The bias the input's projection starts from: b_ih, and b_hh too where the packed
 * recurrent GEMM adds onto pre with no bias of its own (an unsplit cell). */
static const float *input_bias(const fused_acts *a)
{
    return a->pk && !a->c->split_rec ? a->bsum : a->c->w[2]->data;
}

/* n rows of input projected on OpenBLAS: dst = input_bias + src W_ih^T. */
static void project_rows(const fused_acts *a, int n, const float *src, float *dst)
{
    const loom_cell *c = a->c;
    int In = c->input_size, GH = c->gates * c->hidden_size;
    fill_rows(dst, input_bias(a), (size_t)n, GH);
    loom_kernel_gemm(0, 1, n, GH, In, 1.0f, src, In, c->w[0]->data, In, 1.0f, dst, GH);
}

static int step_all_kept(const unsigned char *keep, int B)
{
    for (int b = 0; b < B; b++)
        if (!keep[b]) return 0;
    return 1;
}

static int seg_end(const fused_acts *a, int j) { return (j + 1) * a->K < a->T ? (j + 1) * a->K : a->T; }

/* Forward steps [sa, sb) over batch rows [r0, r1): per step the recurrent GEMM and the
 * kernel. Rows never meet in a layer's forward, so a thread can own a range for the
 * whole window (team > 1) instead of splitting every step's small GEMM and kernel. */
static void forward_rows(fused_acts *a, int sa, int sb, int r0, int r1, const float **prev, float **next)
{
    loom_cell *c = a->c;
    int B = a->B, H = c->hidden_size, GH = c->gates * H, S = c->n_state, n = r1 - r0;
    loom_cell_tile tl = {.B = B, .H = H, .prev = prev, .next = next, .w = c->w};
    for (int s = sa; s < sb; s++) {
        tile_at(a, s, &tl, prev, next);
        /* The recurrent projection: one GEMM per step, into pre or, split, into rec (packed:
         * the input's projection too, one more GEMM). */
        float *rp = (c->split_rec ? tl.rec : tl.pre) + (size_t)r0 * GH;
        const float *hp = prev[0] + (size_t)r0 * H;
        if (a->ptab) /* folded: the rows' input projection, copied from their tokens' */
            for (int r = r0; r < r1; r++)
                memcpy(tl.pre + (size_t)r * GH, a->ptab + (size_t)a->tok[(size_t)s * B + r] * GH, (size_t)GH * sizeof(float));
        if (a->pk) { /* this step's rows projected (with pki, from both inputs), each GEMM started from its bias */
            int In = c->input_size;
            if (a->pki)
                loom_kernel_gemm_packed(n, GH, In, a->x->data + ((size_t)s * B + r0) * In, In, a->pki,
                                        input_bias(a), tl.pre + (size_t)r0 * GH, GH);
            loom_kernel_gemm_packed(n, GH, H, hp, H, a->pk, c->split_rec ? c->w[3]->data : NULL, rp, GH);
        } else {
            if (c->split_rec) fill_rows(rp, c->w[3]->data, (size_t)n, GH);
            else
                for (int r = 0; r < n; r++)
                    for (int i = 0; i < GH; i++) rp[(size_t)r * GH + i] += c->w[3]->data[i];
            loom_kernel_gemm(0, 1, n, GH, H, 1.0f, hp, H, c->w[1]->data, H, 1.0f, rp, GH);
        }
        if (a->team > 1) c->forward(c, &tl, r0, r1);
        else run_kernel(c->forward, c, &tl);
        const unsigned char *ks = a->keep + (size_t)s * B;
        if (!step_all_kept(ks + r0, n)) /* ended sequences carry their state unchanged */
            for (int k = 0; k < S; k++)
                for (int r = r0; r < r1; r++)
                    if (!ks[r]) memcpy(next[k] + (size_t)r * H, prev[k] + (size_t)r * H, (size_t)H * sizeof(float));
    }
}

/* Runs f over each slot of the row team: by the team's slots, not the threads started (the
 * same calls, so the same bits), the rows by measured speed where the packed kernel makes
 * that free of bit changes, and each slot's busy time taught back (layers/team.c). */
typedef void (*slot_fn)(void *ctx, int r0, int r1, int q);
static void run_team(const fused_acts *a, slot_fn f, void *ctx)
{
    int rows[LOOM_TEAM_MAX + 1], adapt = a->pk != NULL;
    double busy[LOOM_TEAM_MAX];
    loom_team_rows(a->team, a->B, adapt, rows);
#pragma omp parallel num_threads(a->team)
    for (int q = omp_get_thread_num(); q < a->team; q += omp_get_num_threads()) {
        double t0 = omp_get_wtime();
        f(ctx, rows[q], rows[q + 1], q);
        busy[q] = omp_get_wtime() - t0;
    }
    if (adapt) loom_team_learn(a->team, rows, busy);
}

/* Forward steps [sa, sb) as a team slot's work. */
typedef struct fwd_span {
    fused_acts *a;
    int sa, sb;
} fwd_span;
static void forward_slot(void *ctx, int r0, int r1, int q)
{
    fwd_span *sp = ctx;
    size_t o = (size_t)q * sp->a->c->n_state;
    forward_rows(sp->a, sp->sa, sp->sb, r0, r1, sp->a->prev + o, sp->a->next + o);
}

/* Forward over segment j: without packed weights, the input projection of each block it touches (one GEMM
 * each), then per step the recurrent GEMM and the kernel. */
static void run_segment(fused_acts *a, int j)
{
    loom_cell *c = a->c;
    int B = a->B, H = c->hidden_size, GH = c->gates * H, In = c->input_size, C = a->C;
    int sa = j * a->K, sb = seg_end(a, j), q0 = sa / C, q1 = (sb - 1) / C, moved = -1, per_step = a->pki || a->ptab;
    if (!a->plain && !per_step) {
        /* A block shared with the neighbour just run (forward: the one before; backward: the
         * one after) keeps this segment's rows as projected: moved, not projected again. */
        int fwd = a->seg == j - 1 && j > 0 && a->tail_ok && q0 == (sa - 1) / C;
        int bwd = a->seg == j + 1 && a->head_ok && q1 == sb / C;
        moved = fwd ? q0 : bwd ? q1 : -1;
        a->head_ok = !fwd, a->tail_ok = !bwd; /* the rows a neighbour ran are spent */
        if (moved >= 0) {
            int n = (moved * C + C < a->T ? C : a->T - moved * C) * B;
            memmove(a->pre + (size_t)(moved - q0) * C * B * GH, a->pre + (size_t)(moved * C - a->pre0) * B * GH,
                    (size_t)n * GH * sizeof(float));
        }
    }
    if (!a->plain) a->pre0 = per_step ? sa : q0 * C, a->ws0 = sa; /* per step: no blocks, the segment's steps */
    for (int q = q0; q <= q1 && !per_step; q++) {
        if (q == moved) continue;
        int r0 = q * C, n = (r0 + C < a->T ? C : a->T - r0) * B;
        float *p = a->pre + (size_t)(r0 - a->pre0) * B * GH;
        project_rows(a, n, a->x->data + (size_t)r0 * B * In, p);
    }
    if (a->team > 1) {
        fwd_span sp = {a, sa, sb};
        run_team(a, forward_slot, &sp);
    } else
        forward_rows(a, sa, sb, 0, B, a->prev, a->next);
    a->seg = j;
}

static void fused_backward(loom_node *nd);

/* Folded embedding: ptab = tab W_ih^T + the bias pre starts from, on the kernel x's rows
 * would have run (the packed one: each row's bits as x's row's would have been). */
static int project_table(loom_tape *t, fused_acts *a, loom_tensor *tab, const int *tok)
{
    loom_cell *c = a->c;
    int V = tab->rows, In = c->input_size, GH = c->gates * c->hidden_size;
    loom_arena *ar = loom_tape_arena(t);
    float *pw = a->pk ? loom_arena_alloc(ar, loom_kernel_pack_size(In, GH) * sizeof(float)) : NULL;
    if (!(a->ptab = loom_arena_alloc(ar, (size_t)V * GH * sizeof(float))) || (a->pk && !pw)) return 0;
    a->tok = tok, a->tab = tab;
    if (pw) {
        loom_kernel_pack_b(1, In, GH, c->w[0]->data, In, pw);
        loom_kernel_gemm_packed(V, GH, In, tab->data, In, pw, input_bias(a), a->ptab, GH);
    } else
        project_rows(a, V, tab->data, a->ptab);
    return 1;
}

loom_status loom_layer_fused(loom_tape *t, loom_cell *c, loom_tensor *x, int T, int B, const unsigned char *keep,
                             loom_tensor *const *init, int K, int row_teams, loom_tensor **y, loom_tensor **last)
{
    int H = c->hidden_size, GH = c->gates * H, S = c->n_state, N = T * B;
    loom_arena *ar = loom_tape_arena(t);
    fused_acts *a = loom_arena_alloc(ar, sizeof *a);
    if (!a) return loom_tape_fail(t, LOOM_ENOMEM, "%s layer: out of memory", c->name), LOOM_ENOMEM;
    int plain = K <= 0 || K >= T;
    *a = (fused_acts){.c = c, .T = T, .B = B, .K = plain ? T : K, .C = block_steps(B), .plain = plain, .x = x,
                      .keep = keep, .init = init, .seg = -1};
    a->nseg = (T + a->K - 1) / a->K;
    a->nb = plain ? T + 1 : a->nseg + 1;
    /* Steps the scratch holds: pre also the blocks a segment's ends fall in, unless packed. */
    a->team = row_teams ? row_team(c, B) : 1;
    /* The input's projection per step where the team keeps W_ih in cache; else per block, on
     * OpenBLAS: at every step it would stream W_ih from memory (L's 16 MiB). */
    loom_tensor *tab = NULL;
    const int *tok = loom_op_embedding_source(t, x, &tab);
    int fold = tok && tab->cols == c->input_size && loom_seq_embedding_folds(tab->rows, N);
    int packed = packed_rec(c), packed_in = packed && a->team > 1 && !fold;
    size_t steps = plain ? (size_t)T : (size_t)a->K, psteps = plain || packed_in || fold ? steps : steps + 2 * (size_t)a->C;
    if (psteps > (size_t)T) psteps = (size_t)T;
    a->prev = loom_arena_alloc(ar, (size_t)a->team * S * sizeof *a->prev);
    a->next = loom_arena_alloc(ar, (size_t)a->team * S * sizeof *a->next);
    a->hist = loom_tape_tensor(t, (T + 1) * B, H);
    a->parts = S > 1 ? loom_arena_alloc(ar, (size_t)(S - 1) * a->nb * B * H * sizeof(float)) : NULL;
    a->ends = S > 1 ? loom_tape_tensor(t, (S - 1) * B, H) : NULL;
    a->pre = loom_arena_alloc(ar, psteps * B * GH * sizeof(float));
    a->rec = c->split_rec ? loom_arena_alloc(ar, steps * B * GH * sizeof(float)) : NULL;
    a->ws = c->ws_cols ? loom_arena_alloc(ar, steps * B * c->ws_cols * sizeof(float)) : NULL;
    a->st = !plain && S > 1 ? loom_arena_alloc(ar, (size_t)(S - 1) * (a->K + 1) * B * H * sizeof(float)) : NULL;
    a->pk = packed ? loom_arena_alloc(ar, loom_kernel_pack_size(H, GH) * sizeof(float)) : NULL;
    a->pki = packed_in ? loom_arena_alloc(ar, loom_kernel_pack_size(c->input_size, GH) * sizeof(float)) : NULL;
    a->bsum = packed ? loom_arena_alloc(ar, (size_t)GH * sizeof(float)) : NULL;
    if (!a->prev || !a->next || !a->hist || (S > 1 && (!a->parts || !a->ends)) || !a->pre ||
        (c->split_rec && !a->rec) || (c->ws_cols && !a->ws) || (!plain && S > 1 && !a->st) || (packed && (!a->pk || !a->bsum)) ||
        (packed_in && !a->pki))
        return loom_tape_fail(t, LOOM_ENOMEM, "%s layer: out of memory for a window of %dx%d", c->name, T, B), LOOM_ENOMEM;
    state_store v = values(a);
    for (int k = 0; k < S; k++) memcpy(state_at(a, &v, k, 0), init[k]->data, (size_t)B * H * sizeof(float));
    if (packed) {
        loom_kernel_pack_b(1, H, GH, c->w[1]->data, H, a->pk);
        if (packed_in) loom_kernel_pack_b(1, c->input_size, GH, c->w[0]->data, c->input_size, a->pki);
        for (int i = 0; i < GH; i++) a->bsum[i] = c->w[2]->data[i] + c->w[3]->data[i];
    }
    if (fold && !project_table(t, a, tab, tok))
        return loom_tape_fail(t, LOOM_ENOMEM, "%s layer: out of memory for a table of %d rows", c->name, tab->rows), LOOM_ENOMEM;
    for (int j = 0; j < a->nseg; j++) run_segment(a, j);

    int n_in = 1 + c->nw + S;
    loom_tensor **in = loom_arena_alloc(ar, (size_t)n_in * sizeof *in);
    if (!in) return loom_tape_fail(t, LOOM_ENOMEM, "%s layer: out of memory", c->name), LOOM_ENOMEM;
    in[0] = x;
    memcpy(in + 1, c->w, (size_t)c->nw * sizeof *in);
    memcpy(in + 1 + c->nw, init, (size_t)S * sizeof *in);
    for (int k = 1; k < S; k++)
        memcpy(a->ends->data + (size_t)(k - 1) * B * H, state_at(a, &v, k, T), (size_t)B * H * sizeof(float));
    loom_node *nd = loom_tape_record(t, c->name, fused_backward, a->hist, in, n_in);
    if (nd) {
        nd->ctx = a;
        nd->out2 = a->ends; /* walked for the final c's gradient too, whatever reaches h */
        if (a->ends) a->ends->requires_grad = 1;
    }
    *y = loom_tape_view_rows(t, a->hist, B, N);
    if (*y) last[0] = loom_tape_view_rows(t, a->hist, T * B, B);
    for (int k = 1; k < S && *y && last[0]; k++)
        if (!(last[k] = loom_tape_view_rows(t, a->ends, (k - 1) * B, B))) break;
    return loom_tape_status(t);
}

/* Where backward's block GEMMs add the weight and bias gradients: g_ih_t, when set, holds
 * dW_ih transposed (a thin input makes OpenBLAS's GH x In product run at 60% of its
 * In x GH rate); g_b, when set, the one bias gradient both biases take (dR is dP). */
typedef struct bwd_sums {
    float *g_ih_t, *g_b;
    float *g_tab; /* folded: ptab's gradient [V x GH], each row's dP added into its token's */
} bwd_sums;

/* Allocates and clears the sums a layer's gradients call for; 0 when out of memory. */
static int sums_init(loom_tape *t, const fused_acts *a, int dr_is_dp, bwd_sums *s)
{
    const loom_cell *c = a->c;
    int In = c->input_size, GH = c->gates * c->hidden_size, V = a->ptab ? a->tab->rows : 0;
    int thin = !a->ptab && c->w[0]->requires_grad && 4 * In < GH;
    int one_bias = dr_is_dp && c->w[2]->requires_grad && c->w[3]->requires_grad;
    int tab = a->ptab && (c->w[0]->requires_grad || a->tab->requires_grad);
    loom_arena *ar = loom_tape_arena(t);
    s->g_ih_t = thin ? loom_arena_alloc(ar, (size_t)In * GH * sizeof(float)) : NULL;
    s->g_b = one_bias ? loom_arena_alloc(ar, (size_t)GH * sizeof(float)) : NULL;
    s->g_tab = tab ? loom_arena_alloc(ar, (size_t)V * GH * sizeof(float)) : NULL;
    if ((thin && !s->g_ih_t) || (one_bias && !s->g_b) || (tab && !s->g_tab)) return 0;
    if (s->g_ih_t) memset(s->g_ih_t, 0, (size_t)In * GH * sizeof(float));
    if (s->g_b) memset(s->g_b, 0, (size_t)GH * sizeof(float));
    if (s->g_tab) memset(s->g_tab, 0, (size_t)V * GH * sizeof(float));
    return 1;
}

/* Adds the window's sums to the weights' and biases' gradients. */
static void sums_add(loom_tape *t, const fused_acts *a, const bwd_sums *s)
{
    const loom_cell *c = a->c;
    int In = c->input_size, GH = c->gates * c->hidden_size;
    float *g;
    if (s->g_tab) { /* folded: back through ptab = tab W_ih^T + bias (the biases took dP's sums already) */
        int V = a->tab->rows;
        if (c->w[0]->requires_grad && (g = loom_tape_grad(t, c->w[0])))
            loom_kernel_gemm(1, 0, GH, In, V, 1.0f, s->g_tab, GH, a->tab->data, In, 1.0f, g, In);
        if (a->tab->requires_grad && (g = loom_tape_grad(t, a->tab)))
            loom_kernel_gemm(0, 0, V, In, GH, 1.0f, s->g_tab, GH, c->w[0]->data, In, 1.0f, g, In);
    }
    if (s->g_ih_t && (g = loom_tape_grad(t, c->w[0]))) /* dW_ih from its transpose */
        LOOM_PFOR(r, GH, {
            for (int i = 0; i < In; i++) g[(size_t)r * In + i] += s->g_ih_t[(size_t)i * GH + r];
        });
    for (int k = 2; s->g_b && k < 4; k++)
        if ((g = loom_tape_grad(t, c->w[k])))
            for (int i = 0; i < GH; i++) g[i] += s->g_b[i];
}

/* A block's outputs, for flush_block's slices. */
typedef struct flush_out {
    float *gx, *gwi, *gwh, *gbi, *gbh, *gwi_t, *gtab;
} flush_out;

/* Slice id of m of every output of block q (rows r0.. of the window, n of them). */
static void flush_slice(const fused_acts *a, int r0, int n, const float *dP, const float *dR, const flush_out *o, int id,
                        int m)
{
    loom_cell *c = a->c;
    int B = a->B, H = c->hidden_size, GH = c->gates * H, In = c->input_size;
    const float *xb = a->x->data + (size_t)r0 * B * In, *hb = a->hist->data + (size_t)r0 * B * H; /* h_r0 .. */
    int lo = (int)((long)n * id / m), hi = (int)((long)n * (id + 1) / m); /* the input's gradient: rows */
    if (o->gx && hi > lo)
        loom_kernel_gemm(0, 0, hi - lo, In, GH, 1.0f, dP + (size_t)lo * GH, GH, c->w[0]->data, In, 1.0f,
                         o->gx + ((size_t)r0 * B + lo) * In, In);
    lo = (int)((long)In * id / m), hi = (int)((long)In * (id + 1) / m); /* dW_ih transposed: its In rows */
    if (o->gwi_t && hi > lo)
        loom_kernel_gemm(1, 0, hi - lo, GH, n, 1.0f, xb + lo, In, dP, GH, 1.0f, o->gwi_t + (size_t)lo * GH, GH);
    lo = (int)((long)GH * id / m), hi = (int)((long)GH * (id + 1) / m); /* the weights' gate rows, the biases */
    if (hi <= lo) return;
    if (o->gwi) loom_kernel_gemm(1, 0, hi - lo, In, n, 1.0f, dP + lo, GH, xb, In, 1.0f, o->gwi + (size_t)lo * In, In);
    if (o->gwh) loom_kernel_gemm(1, 0, hi - lo, H, n, 1.0f, dR + lo, GH, hb, H, 1.0f, o->gwh + (size_t)lo * H, H);
    if (o->gbi) loom_kernel_add_colsum_range(o->gbi, dP, n, GH, lo, hi);
    if (o->gbh) loom_kernel_add_colsum_range(o->gbh, dR, n, GH, lo, hi);
    for (int r = 0; o->gtab && r < n; r++) { /* folded: in row order, so no split changes a bit */
        float *d = o->gtab + (size_t)a->tok[(size_t)r0 * B + r] * GH;
        const float *p = dP + (size_t)r * GH;
        for (int i = lo; i < hi; i++) d[i] += p[i];
    }
}

/* The GEMMs of block q once its pre-activation gradients are in dP (and dR):
 * the input's gradient (unless dx_done: per step already) and the weight
 * gradients, added in the block order. Each thread of the team takes a slice of
 * every output with single-threaded OpenBLAS calls: one fork for the block and
 * none inside OpenBLAS, which also allocates per threaded call (S: 115 to 110
 * ms a step). With another BLAS, or a small block, each GEMM decides alone. */
static void flush_block(loom_tape *t, const fused_acts *a, int q, const float *dP, const float *dR, int dx_done,
                        const bwd_sums *sums)
{
    loom_cell *c = a->c;
    loom_tensor *x = a->x, *Wi = c->w[0], *Wh = c->w[1], *bi = c->w[2], *bh = c->w[3];
    int r0 = q * a->C, n = (r0 + a->C < a->T ? a->C : a->T - r0) * a->B;
    /* Every output's pointer first: loom_tape_grad may allocate, which a team must not do. */
    flush_out o = {!dx_done && !a->ptab && x->requires_grad ? loom_tape_grad(t, x) : NULL,
                   !sums->g_ih_t && !a->ptab && Wi->requires_grad ? loom_tape_grad(t, Wi) : NULL,
                   Wh->requires_grad ? loom_tape_grad(t, Wh) : NULL,
                   sums->g_b ? sums->g_b : bi->requires_grad ? loom_tape_grad(t, bi) : NULL,
                   !sums->g_b && bh->requires_grad ? loom_tape_grad(t, bh) : NULL,
                   sums->g_ih_t,
                   sums->g_tab};
    /* Outside a row team too, from the size at which a GEMM would split over the team anyway (L: 1.6%). */
    double work = (double)n * c->gates * c->hidden_size * (c->input_size + c->hidden_size);
    int nt = a->team > 1                                                ? a->team
             : loom_kernel_gemm_in_teams() && work >= LOOM_GEMM_PAR_MIN ? loom_threads_get()
                                                                        : 1;
    if (nt > 1) {
#pragma omp parallel num_threads(nt)
        flush_slice(a, r0, n, dP, dR, &o, omp_get_thread_num(), omp_get_num_threads());
    } else
        flush_slice(a, r0, n, dP, dR, &o, 0, 1);
}

/* What backward's steps share, and each thread's pointer arrays (at an offset). */
typedef struct bwd_ctx {
    fused_acts *a;
    state_store g; /* the states' gradients */
    float *dP, *dR;
    float *pk;      /* W_hh packed for dh_prev += dR W_hh (NULL: OpenBLAS's per call) */
    float *pkx, *gx; /* W_ih packed for the input's gradient at each step (NULL: per block), and that gradient */
    float **dw;
    const float **dnext;
    float **dprev;
} bwd_ctx;

/* Backward steps hi down to lo over batch rows [r0, r1): the kernel gives each step's
 * pre-activation gradient and the recurrent GEMM carries the state's gradient one step
 * back; rows stay apart here too. Pointer arrays at offset o of the shared ones. */
static void backward_rows(const bwd_ctx *k, int hi, int lo, int r0, int r1, size_t o)
{
    fused_acts *a = k->a;
    loom_cell *c = a->c;
    int B = a->B, H = c->hidden_size, GH = c->gates * H, S = c->n_state, C = a->C;
    const float **prev = a->prev + o, **dnext = k->dnext + o;
    float **next = a->next + o, **dprev = k->dprev + o;
    loom_cell_tile tl = {.B = B, .H = H, .prev = prev, .next = next, .w = c->w, .dnext = dnext, .dprev = dprev, .dw = k->dw};
    for (int s = hi; s >= lo; s--) {
        tile_at(a, s, &tl, prev, next);
        for (int q = 0; q < S; q++) {
            dnext[q] = state_at(a, &k->g, q, s + 1);
            dprev[q] = state_at(a, &k->g, q, s);
            if (q > 0 && k->g.ring) /* the slot held position s + 2's, spent */
                memset(dprev[q] + (size_t)r0 * H, 0, (size_t)(r1 - r0) * H * sizeof(float));
        }
        tl.dpre = k->dP + (size_t)(s % C) * B * GH;
        tl.drec = c->split_rec ? k->dR + (size_t)(s % C) * B * GH : NULL;
        const unsigned char *ks = a->keep + (size_t)s * B;
        int all = step_all_kept(ks + r0, r1 - r0);
        if (!all) /* an ended sequence's state gradient passes straight back; the kernel sees none */
            for (int q = 0; q < S; q++)
                for (int r = r0; r < r1; r++)
                    if (!ks[r]) {
                        float *dn = (float *)dnext[q] + (size_t)r * H, *dp = dprev[q] + (size_t)r * H;
                        for (int i = 0; i < H; i++) dp[i] += dn[i], dn[i] = 0.0f;
                    }
        if (a->team > 1) c->backward(c, &tl, r0, r1);
        else run_kernel(c->backward, c, &tl);
        if (!all)
            for (int r = r0; r < r1; r++)
                if (!ks[r]) {
                    memset(tl.dpre + (size_t)r * GH, 0, (size_t)GH * sizeof(float));
                    if (tl.drec) memset(tl.drec + (size_t)r * GH, 0, (size_t)GH * sizeof(float));
                }
        /* dh_prev += dR_s W_hh: the state's gradient through the recurrent projection; at
         * step 0 only when the initial state takes a gradient (C: 0.4% of the FLOPs). */
        const float *dr = (c->split_rec ? tl.drec : tl.dpre) + (size_t)r0 * GH;
        int carry = s > 0 || a->init[0]->requires_grad;
        if (carry && k->pk) loom_kernel_gemm_packed(r1 - r0, H, GH, dr, GH, k->pk, NULL, dprev[0] + (size_t)r0 * H, H);
        else if (carry) loom_kernel_gemm(0, 0, r1 - r0, H, GH, 1.0f, dr, GH, c->w[1]->data, H, 1.0f, dprev[0] + (size_t)r0 * H, H);
        if (k->pkx) /* dx_s += dP_s W_ih, this step's rows */
            loom_kernel_gemm_packed(r1 - r0, c->input_size, GH, tl.dpre + (size_t)r0 * GH, GH, k->pkx, NULL,
                                    k->gx + ((size_t)s * B + r0) * c->input_size, c->input_size);
    }
}

/* Backward steps hi down to lo as a team slot's work. */
typedef struct bwd_span {
    const bwd_ctx *k;
    int hi, lo;
} bwd_span;
static void backward_slot(void *ctx, int r0, int r1, int q)
{
    bwd_span *sp = ctx;
    backward_rows(sp->k, sp->hi, sp->lo, r0, r1, (size_t)q * sp->k->a->c->n_state);
}

/* Walks the window backwards, segment by segment (recomputing each but the one
 * forward left in the scratch): the kernel gives each step's pre-activation
 * gradient, the recurrent GEMM carries the state's gradient one step back, and
 * each block's GEMMs run once its first step is reached. */
static void fused_backward(loom_node *nd)
{
    fused_acts *a = nd->ctx;
    loom_cell *c = a->c;
    loom_tape *t = nd->tape;
    loom_arena *ar = loom_tape_arena(t);
    int B = a->B, H = c->hidden_size, GH = c->gates * H, S = c->n_state, C = a->C;
    size_t blk = (size_t)C * B * GH, inner = (size_t)(S - 1) * (a->K + 1) * B * H;
    float *dP = loom_arena_alloc(ar, blk * sizeof(float));
    float *dR = c->split_rec ? loom_arena_alloc(ar, blk * sizeof(float)) : dP;
    float *gst = !a->plain && S > 1 ? loom_arena_alloc(ar, inner * sizeof(float)) : NULL;
    float **dw = loom_arena_alloc(ar, (size_t)c->nw * sizeof *dw);
    const float **dnext = loom_arena_alloc(ar, (size_t)a->team * S * sizeof *dnext);
    float **dprev = loom_arena_alloc(ar, (size_t)a->team * S * sizeof *dprev);
    float *G = loom_tape_grad(t, a->hist); /* h's gradient at every position */
    /* The other parts' gradients: a plain window needs two positions at a time, a recomputed
     * one every kept position (segments pass them on). */
    size_t BH = (size_t)B * H, npart = (size_t)(S - 1) * (a->plain ? 2 : a->nb) * BH;
    float *gparts = S > 1 ? loom_arena_alloc(ar, npart * sizeof(float)) : NULL;
    /* A plain window never runs forward again: forward's packs are free to hold backward's. */
    size_t npk = loom_kernel_pack_size(GH, H), npx = loom_kernel_pack_size(GH, c->input_size);
    float *pk = !a->pk ? NULL
                : a->plain && npk <= loom_kernel_pack_size(H, GH) ? a->pk
                                                                  : loom_arena_alloc(ar, npk * sizeof(float));
    float *gx = a->pki && a->x->requires_grad ? loom_tape_grad(t, a->x) : NULL;
    float *pkx = !gx ? NULL
                 : a->plain && npx <= loom_kernel_pack_size(c->input_size, GH) ? a->pki
                                                                               : loom_arena_alloc(ar, npx * sizeof(float));
    if (!dP || !dR || (!a->plain && S > 1 && !gst) || !dw || !dnext || !dprev || !G || (S > 1 && !gparts) ||
        (a->pk && !pk) || (gx && !pkx)) {
        loom_tape_fail(t, LOOM_ENOMEM, "%s layer backward: out of memory", c->name);
        return;
    }
    for (int i = 0; i < c->nw; i++) {
        dw[i] = NULL;
        if (i < 4 || !c->w[i]->requires_grad) continue;
        size_t n = (size_t)B * c->w[i]->cols * sizeof(float);
        if (!(dw[i] = loom_arena_alloc(ar, n))) {
            loom_tape_fail(t, LOOM_ENOMEM, "%s layer backward: out of memory", c->name);
            return;
        }
        memset(dw[i], 0, n);
    }
    if (pk) loom_kernel_pack_b(0, GH, H, c->w[1]->data, H, pk);
    if (pkx) loom_kernel_pack_b(0, GH, c->input_size, c->w[0]->data, c->input_size, pkx);
    bwd_sums sums; /* added to the flat gradients once the window is done */
    if (!sums_init(t, a, dR == dP, &sums)) {
        loom_tape_fail(t, LOOM_ENOMEM, "%s layer backward: out of memory", c->name);
        return;
    }
    bwd_ctx k = {a, {G, gparts, gst, a->plain}, dP, dR, pk, pkx, gx, dw, dnext, dprev};
    if (gparts) { /* the final parts' gradient (a consumer of ends) starts the walk, else zero */
        if (!a->plain) loom_kernel_zero(gparts, npart);
        for (int q = 1; q < S; q++) {
            float *d = state_at(a, &k.g, q, a->T);
            if (a->ends->grad) memcpy(d, a->ends->grad + (size_t)(q - 1) * BH, BH * sizeof(float));
            else memset(d, 0, BH * sizeof(float));
        }
    }
    for (int j = a->nseg - 1; j >= 0; j--) {
        if (a->seg != j) run_segment(a, j);
        if (gst) memset(gst, 0, inner * sizeof(float)); /* inner states' gradients start at zero, as kept ones do */
        /* Runs of steps that end at a block's first step (or the segment's), walked back. */
        for (int hi = seg_end(a, j) - 1, lo; hi >= j * a->K; hi = lo - 1) {
            lo = hi / C * C > j * a->K ? hi / C * C : j * a->K;
            if (a->team > 1) {
                bwd_span sp = {&k, hi, lo};
                run_team(a, backward_slot, &sp);
            } else
                backward_rows(&k, hi, lo, 0, B, 0);
            if (lo % C == 0) flush_block(t, a, lo / C, dP, dR, pkx != NULL, &sums);
            loom_tape_poll(t); /* lets work overlapped with backward (an all-reduce) progress */
        }
    }
    sums_add(t, a, &sums);
    float *g;
    for (int i = 4; i < c->nw; i++)
        if (dw[i] && (g = loom_tape_grad(t, c->w[i]))) loom_kernel_add_colsum(g, dw[i], B, c->w[i]->cols);
    for (int q = 0; q < S; q++)
        if (a->init[q]->requires_grad && (g = loom_tape_grad(t, a->init[q]))) {
            const float *g0 = state_at(a, &k.g, q, 0);
            for (size_t i = 0; i < BH; i++) g[i] += g0[i];
        }
}
