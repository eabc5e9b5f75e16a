/* The fused recurrent layer: a cell's pointwise kernel run over a window of T
 * steps, with the GEMMs around it, recorded as one tape node. Its forward and
 * backward sit side by side below. */
#include <cblas.h>
#include <string.h>

#include "internal.h"

/* What forward keeps for backward. */
typedef struct fused_acts {
    loom_cell *c;
    int T, B;
    loom_tensor *x;            /* the layer's input [T*B x I] */
    loom_tensor *hist;         /* every state: part k at step s (0..T) is rows (k*(T+1) + s)*B .. +B */
    float *pre, *rec, *ws;     /* [T*B x G*H], split_rec only [T*B x G*H], [T*B x ws_cols] */
    const unsigned char *keep; /* [T*B] */
    loom_tensor *const *init;  /* [n_state] initial states */
} fused_acts;

static float *hist_at(const fused_acts *a, int k, int s)
{
    return a->hist->data + ((size_t)k * (a->T + 1) + s) * a->B * a->c->hidden_size;
}

/* Points a tile at step s: pre/rec/ws rows and the state before and after it. */
static void tile_at(const fused_acts *a, int s, loom_cell_tile *tl, const float **prev, float **next)
{
    size_t GH = (size_t)a->c->gates * a->c->hidden_size, row = (size_t)s * a->B;
    tl->pre = a->pre + row * GH;
    tl->rec = a->rec ? a->rec + row * GH : NULL;
    tl->ws = a->ws ? a->ws + row * a->c->ws_cols : NULL;
    for (int k = 0; k < a->c->n_state; k++) {
        prev[k] = hist_at(a, k, s);
        next[k] = hist_at(a, k, s + 1);
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

static int step_all_kept(const unsigned char *keep, int B)
{
    for (int b = 0; b < B; b++)
        if (!keep[b]) return 0;
    return 1;
}

static void fused_backward(loom_node *nd);

loom_status loom_layer_fused(loom_tape *t, loom_cell *c, loom_tensor *x, int T, int B, const unsigned char *keep,
                             loom_tensor *const *init, loom_tensor **y, loom_tensor **last)
{
    int H = c->hidden_size, GH = c->gates * H, In = c->input_size, S = c->n_state, N = T * B;
    loom_arena *ar = loom_tape_arena(t);
    fused_acts *a = loom_arena_alloc(ar, sizeof *a);
    const float **prev = loom_arena_alloc(ar, (size_t)S * sizeof *prev);
    float **next = loom_arena_alloc(ar, (size_t)S * sizeof *next);
    if (!a || !prev || !next) return loom_tape_fail(t, LOOM_ENOMEM, "%s layer: out of memory", c->name), LOOM_ENOMEM;
    *a = (fused_acts){c, T, B, x, loom_tape_tensor(t, S * (T + 1) * B, H), NULL, NULL, NULL, keep, init};
    a->pre = loom_arena_alloc(ar, (size_t)N * GH * sizeof(float));
    a->rec = c->split_rec ? loom_arena_alloc(ar, (size_t)N * GH * sizeof(float)) : NULL;
    a->ws = c->ws_cols ? loom_arena_alloc(ar, (size_t)N * c->ws_cols * sizeof(float)) : NULL;
    if (!a->hist || !a->pre || (c->split_rec && !a->rec) || (c->ws_cols && !a->ws))
        return loom_tape_fail(t, LOOM_ENOMEM, "%s layer: out of memory for a window of %dx%d", c->name, T, B), LOOM_ENOMEM;
    for (int k = 0; k < S; k++) memcpy(hist_at(a, k, 0), init[k]->data, (size_t)B * H * sizeof(float));

    /* The input projection of the whole window: one GEMM. */
    fill_rows(a->pre, c->w[2]->data, (size_t)N, GH);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, GH, In, 1.0f, x->data, In, c->w[0]->data, In, 1.0f, a->pre, GH);
    loom_cell_tile tl = {.B = B, .H = H, .prev = prev, .next = next, .w = c->w};
    for (int s = 0; s < T; s++) {
        tile_at(a, s, &tl, prev, next);
        /* The recurrent projection: one GEMM per step, into pre or, split, into rec. */
        float *rp = c->split_rec ? tl.rec : tl.pre;
        if (c->split_rec) fill_rows(rp, c->w[3]->data, (size_t)B, GH);
        else
            for (int r = 0; r < B; r++)
                for (int j = 0; j < GH; j++) rp[(size_t)r * GH + j] += c->w[3]->data[j];
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, GH, H, 1.0f, prev[0], H, c->w[1]->data, H, 1.0f, rp, GH);
        run_kernel(c->forward, c, &tl);
        const unsigned char *ks = keep + (size_t)s * B;
        if (!step_all_kept(ks, B)) /* ended sequences carry their state unchanged */
            for (int k = 0; k < S; k++)
                for (int r = 0; r < B; r++)
                    if (!ks[r]) memcpy(next[k] + (size_t)r * H, prev[k] + (size_t)r * H, (size_t)H * sizeof(float));
    }

    int n_in = 1 + c->nw + S;
    loom_tensor **in = loom_arena_alloc(ar, (size_t)n_in * sizeof *in);
    if (!in) return loom_tape_fail(t, LOOM_ENOMEM, "%s layer: out of memory", c->name), LOOM_ENOMEM;
    in[0] = x;
    memcpy(in + 1, c->w, (size_t)c->nw * sizeof *in);
    memcpy(in + 1 + c->nw, init, (size_t)S * sizeof *in);
    loom_node *nd = loom_tape_record(t, c->name, fused_backward, a->hist, in, n_in);
    if (nd) nd->ctx = a;
    *y = loom_tape_view_rows(t, a->hist, B, N);
    for (int k = 0; k < S && *y; k++)
        if (!(last[k] = loom_tape_view_rows(t, a->hist, (k * (T + 1) + T) * B, B))) break;
    return loom_tape_status(t);
}

/* Walks the window backwards: the kernel gives each step's pre-activation gradient,
 * the recurrent GEMM carries the state's gradient one step back, and the weight
 * gradients come at the end as one GEMM each over the window. */
static void fused_backward(loom_node *nd)
{
    fused_acts *a = nd->ctx;
    loom_cell *c = a->c;
    loom_tape *t = nd->tape;
    loom_arena *ar = loom_tape_arena(t);
    int T = a->T, B = a->B, H = c->hidden_size, GH = c->gates * H, In = c->input_size, S = c->n_state, N = T * B;
    float *dP = loom_arena_alloc(ar, (size_t)N * GH * sizeof(float));
    float *dR = c->split_rec ? loom_arena_alloc(ar, (size_t)N * GH * sizeof(float)) : dP;
    const float **prev = loom_arena_alloc(ar, (size_t)S * sizeof *prev), **dnext = loom_arena_alloc(ar, (size_t)S * sizeof *dnext);
    float **next = loom_arena_alloc(ar, (size_t)S * sizeof *next), **dprev = loom_arena_alloc(ar, (size_t)S * sizeof *dprev);
    float **dw = loom_arena_alloc(ar, (size_t)c->nw * sizeof *dw);
    if (!dP || !dR || !prev || !dnext || !next || !dprev || !dw) {
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
    float *G = a->hist->grad; /* the gradient of every state, filled in going back */
    size_t part = (size_t)(T + 1) * B * H;
    loom_cell_tile tl = {.B = B, .H = H, .prev = prev, .next = next, .w = c->w, .dnext = dnext, .dprev = dprev, .dw = dw};
    for (int s = T - 1; s >= 0; s--) {
        tile_at(a, s, &tl, prev, next);
        for (int k = 0; k < S; k++) {
            dnext[k] = G + k * part + (size_t)(s + 1) * B * H;
            dprev[k] = G + k * part + (size_t)s * B * H;
        }
        tl.dpre = dP + (size_t)s * B * GH;
        tl.drec = c->split_rec ? dR + (size_t)s * B * GH : NULL;
        const unsigned char *ks = a->keep + (size_t)s * B;
        int all = step_all_kept(ks, B);
        if (!all) /* an ended sequence's state gradient passes straight back; the kernel sees none */
            for (int k = 0; k < S; k++)
                for (int r = 0; r < B; r++)
                    if (!ks[r]) {
                        float *dn = (float *)dnext[k] + (size_t)r * H, *dp = dprev[k] + (size_t)r * H;
                        for (int j = 0; j < H; j++) dp[j] += dn[j], dn[j] = 0.0f;
                    }
        run_kernel(c->backward, c, &tl);
        if (!all)
            for (int r = 0; r < B; r++)
                if (!ks[r]) {
                    memset(tl.dpre + (size_t)r * GH, 0, (size_t)GH * sizeof(float));
                    if (tl.drec) memset(tl.drec + (size_t)r * GH, 0, (size_t)GH * sizeof(float));
                }
        /* dh_prev += dR_s W_hh: the state's gradient through the recurrent projection. */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, H, GH, 1.0f, dR + (size_t)s * B * GH, GH, c->w[1]->data,
                    H, 1.0f, dprev[0], H);
    }
    loom_tensor *x = a->x, *Wi = c->w[0], *Wh = c->w[1], *bi = c->w[2], *bh = c->w[3];
    float *g;
    if (x->requires_grad && (g = loom_tape_grad(t, x)))
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, In, GH, 1.0f, dP, GH, Wi->data, In, 1.0f, g, In);
    if (Wi->requires_grad && (g = loom_tape_grad(t, Wi)))
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, GH, In, N, 1.0f, dP, GH, x->data, In, 1.0f, g, In);
    if (Wh->requires_grad && (g = loom_tape_grad(t, Wh))) /* h_0 .. h_{T-1} are part 0's first T*B rows */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, GH, H, N, 1.0f, dR, GH, a->hist->data, H, 1.0f, g, H);
    if (bi->requires_grad && (g = loom_tape_grad(t, bi))) loom_kernel_add_colsum(g, dP, N, GH);
    if (bh->requires_grad && (g = loom_tape_grad(t, bh))) loom_kernel_add_colsum(g, dR, N, GH);
    for (int i = 4; i < c->nw; i++)
        if (dw[i] && (g = loom_tape_grad(t, c->w[i]))) loom_kernel_add_colsum(g, dw[i], B, c->w[i]->cols);
    for (int k = 0; k < S; k++)
        if (a->init[k]->requires_grad && (g = loom_tape_grad(t, a->init[k])))
            for (size_t i = 0; i < (size_t)B * H; i++) g[i] += G[k * part + i];
}
