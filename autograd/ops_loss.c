/* Losses (fused softmax cross-entropy, MSE) and dropout. */
#include <math.h>
#include <string.h>

#include "internal.h"

typedef struct ce_ctx {
    float *prob;        /* softmax of each row */
    const int *target;  /* copied targets */
    float *w;           /* per-row weight / total weight */
    float eps;          /* label smoothing: the target is (1-eps) one-hot + eps/C everywhere */
} ce_ctx;

static void softmax_ce_backward(loom_node *nd)
{
    loom_tensor *x = nd->in[0];
    ce_ctx *cx = nd->ctx;
    float *g = loom_tape_grad(nd->tape, x);
    if (!g) return;
    float d = nd->out->grad[0];
    int C = x->cols;
    LOOM_PFOR_IF((long)x->rows * C >= LOOM_PAR_MIN, r, x->rows, {
        float wr = cx->w[r] * d;
        if (wr != 0.0f) {
            const float *p = cx->prob + (size_t)r * C;
            float *gr = g + (size_t)r * C;
            if (cx->eps == 0.0f) {
                for (int c = 0; c < C; c++) gr[c] += wr * p[c];
                gr[cx->target[r]] -= wr;
            } else { /* d/dx of -sum q log softmax(x) is p - q */
                float u = cx->eps / (float)C;
                for (int c = 0; c < C; c++) gr[c] += wr * (p[c] - u);
                gr[cx->target[r]] -= wr * (1.0f - cx->eps);
            }
        }
    });
}

loom_tensor *loom_op_softmax_ce(loom_tape *t, loom_tensor *logits, const int *target, const float *weight)
{
    return loom_op_softmax_ce_smooth(t, logits, target, weight, 0.0f);
}

loom_tensor *loom_op_softmax_ce_smooth(loom_tape *t, loom_tensor *logits, const int *target, const float *weight, float eps)
{
    if (loom_tape_null_inputs(t, "softmax_ce", &logits, 1)) return NULL;
    if (!target) return loom_tape_fail(t, LOOM_EARG, "softmax_ce: target is NULL");
    if (!(eps >= 0.0f && eps < 1.0f)) return loom_tape_fail(t, LOOM_EARG, "softmax_ce: label smoothing %g must be in [0, 1)", eps);
    int N = logits->rows, C = logits->cols;
    double wsum = 0;
    for (int r = 0; r < N; r++) {
        float w = weight ? weight[r] : 1.0f;
        if (w < 0 || !isfinite(w)) return loom_tape_fail(t, LOOM_EARG, "softmax_ce: weight %g at row %d must be finite and >= 0", w, r);
        if (w != 0 && (target[r] < 0 || target[r] >= C))
            return loom_tape_fail(t, LOOM_EARG, "softmax_ce: target %d at row %d is outside [0,%d) of logits [%dx%d]",
                                  target[r], r, C, N, C);
        wsum += w;
    }
    loom_arena *ar = loom_tape_arena(t);
    loom_tensor *out = loom_tape_tensor(t, 1, 1);
    ce_ctx *cx = loom_arena_alloc(ar, sizeof *cx);
    float *prob = loom_arena_alloc(ar, (size_t)N * C * sizeof(float));
    float *w = loom_arena_alloc(ar, (size_t)N * sizeof(float));
    float *ce = loom_arena_alloc(ar, (size_t)N * sizeof(float));
    int *tg = loom_arena_alloc(ar, (size_t)N * sizeof(int));
    if (!out || !cx || !prob || !w || !ce || !tg) return loom_tape_fail(t, LOOM_ENOMEM, "softmax_ce: out of memory");
    float inv = wsum > 0 ? (float)(1.0 / wsum) : 0.0f;
    LOOM_PFOR_IF((long)N * C >= LOOM_PAR_MIN, r, N, {
        const float *x = logits->data + (size_t)r * C;
        float *p = prob + (size_t)r * C;
        float m = x[0];
        for (int c = 1; c < C; c++) m = x[c] > m ? x[c] : m;
        float s = 0;
        for (int c = 0; c < C; c++) s += (p[c] = expf(x[c] - m));
        float is = 1.0f / s;
        for (int c = 0; c < C; c++) p[c] *= is;
        w[r] = (weight ? weight[r] : 1.0f) * inv;
        tg[r] = w[r] != 0.0f ? target[r] : 0;
        float lse = logf(s) + m, nll = lse - x[tg[r]];
        if (eps != 0.0f && w[r] != 0.0f) { /* the uniform part: mean over classes of -log p */
            double sx = 0;
            for (int c = 0; c < C; c++) sx += x[c];
            nll = (1.0f - eps) * nll + eps * (lse - (float)(sx / C));
        }
        ce[r] = w[r] != 0.0f ? w[r] * nll : 0.0f;
    });
    out->data[0] = (float)loom_kernel_sum(ce, (size_t)N);
    cx->prob = prob;
    cx->target = tg;
    cx->w = w;
    cx->eps = eps;
    loom_node *nd = loom_tape_record(t, "softmax_ce", softmax_ce_backward, out, &logits, 1);
    if (nd) nd->ctx = cx;
    return out;
}

typedef struct mse_ctx {
    const float *y; /* the target, read again by backward */
    float *w;       /* per row: w_r / (cols * W) */
} mse_ctx;

/* Gradient 2 w_r (p - y) / (cols * W), computed here rather than kept from forward: a
 * sequence loss's N x D is a layer's whole output, too much to hold twice. */
static void mse_backward(loom_node *nd)
{
    loom_tensor *p = nd->in[0];
    mse_ctx *cx = nd->ctx;
    float *g = loom_tape_grad(nd->tape, p);
    if (!g) return;
    float d = nd->out->grad[0];
    size_t D = (size_t)p->cols;
    LOOM_PFOR_IF((long)loom_tensor_size(p) >= LOOM_PAR_MIN, r, p->rows, { /* by rows: no division per element */
        float wr = cx->w[r], *gr = g + (size_t)r * D;
        const float *pr = p->data + (size_t)r * D, *yr = cx->y + (size_t)r * D;
        for (size_t c = 0; c < D; c++) gr[c] += d * (2.0f * wr * (pr[c] - yr[c]));
    });
}

loom_tensor *loom_op_mse(loom_tape *t, loom_tensor *pred, const loom_tensor *target, const float *weight)
{
    if (loom_tape_null_inputs(t, "mse", &pred, 1)) return NULL;
    if (!target) return loom_tape_fail(t, LOOM_EARG, "mse: target is NULL");
    if (target->rows != pred->rows || target->cols != pred->cols)
        return loom_tape_fail(t, LOOM_ESHAPE, "mse: prediction [%dx%d] vs target [%dx%d]: shapes differ", pred->rows,
                              pred->cols, target->rows, target->cols);
    int N = pred->rows, D = pred->cols;
    double wsum = 0;
    for (int r = 0; r < N; r++) {
        float w = weight ? weight[r] : 1.0f;
        if (w < 0 || !isfinite(w)) return loom_tape_fail(t, LOOM_EARG, "mse: weight %g at row %d must be finite and >= 0", w, r);
        wsum += w;
    }
    loom_arena *ar = loom_tape_arena(t);
    loom_tensor *out = loom_tape_tensor(t, 1, 1);
    mse_ctx *cx = loom_arena_alloc(ar, sizeof *cx);
    float *w = loom_arena_alloc(ar, (size_t)N * sizeof(float)), *sq = loom_arena_alloc(ar, (size_t)N * sizeof(float));
    if (!out || !cx || !w || !sq) return loom_tape_fail(t, LOOM_ENOMEM, "mse: out of memory");
    float inv = wsum > 0 ? (float)(1.0 / (wsum * D)) : 0.0f;
    /* Each row's weighted squares summed in double, then the rows: the same bits on any thread count. */
    LOOM_PFOR_IF((long)N * D >= LOOM_PAR_MIN, r, N, {
        const float *p = pred->data + (size_t)r * D, *y = target->data + (size_t)r * D;
        w[r] = (weight ? weight[r] : 1.0f) * inv;
        double acc = 0;
        for (int c = 0; c < D; c++) acc += (double)(p[c] - y[c]) * (p[c] - y[c]);
        sq[r] = (float)(w[r] * acc);
    });
    out->data[0] = (float)loom_kernel_sum(sq, (size_t)N);
    cx->y = target->data;
    cx->w = w;
    loom_node *nd = loom_tape_record(t, "mse", mse_backward, out, &pred, 1);
    if (nd) nd->ctx = cx;
    return out;
}

static void dropout_backward(loom_node *nd)
{
    loom_tensor *a = nd->in[0];
    const float *mask = nd->ctx;
    float *g = loom_tape_grad(nd->tape, a);
    if (!g) return;
    size_t n = loom_tensor_size(a);
    LOOM_PFOR(i, n, g[i] += nd->out->grad[i] * mask[i];);
}

loom_tensor *loom_op_dropout_shard(loom_tape *t, loom_tensor *a, float p, loom_rng *rng, int rows, int total_rows,
                                   int row0)
{
    if (loom_tape_null_inputs(t, "dropout", &a, 1)) return NULL;
    if (!(p >= 0.0f && p < 1.0f)) return loom_tape_fail(t, LOOM_EARG, "dropout: probability %g is outside [0,1)", p);
    if (p == 0.0f) return a;
    if (!rng) return loom_tape_fail(t, LOOM_EARG, "dropout: rng is NULL");
    if (rows <= 0 || a->rows % rows != 0 || row0 < 0 || row0 + rows > total_rows)
        return loom_tape_fail(t, LOOM_EARG, "dropout: rows %d at %d of %d do not tile a [%dx%d] input", rows, row0,
                              total_rows, a->rows, a->cols);
    size_t n = loom_tensor_size(a), cols = (size_t)a->cols, blocks = (size_t)(a->rows / rows);
    loom_tensor *c = loom_tape_tensor(t, a->rows, a->cols);
    float *mask = loom_arena_alloc(loom_tape_arena(t), n * sizeof(float));
    if (!c || !mask) return loom_tape_fail(t, LOOM_ENOMEM, "dropout: out of memory");
    /* Block k's rows are rows row0.. of block k of the whole tensor, so each element draws
     * the counter it would draw there, whoever holds the other rows. */
    for (size_t k = 0; k < blocks; k++) {
        loom_rng at = {rng->seed, rng->counter + (k * (size_t)total_rows + (size_t)row0) * cols};
        loom_rng_fill_uniform(&at, mask + k * (size_t)rows * cols, (size_t)rows * cols, 0.0f, 1.0f);
    }
    rng->counter += blocks * (size_t)total_rows * cols;
    float keep = 1.0f / (1.0f - p);
    LOOM_PFOR(i, n, {
        mask[i] = mask[i] >= p ? keep : 0.0f;
        c->data[i] = a->data[i] * mask[i];
    });
    loom_node *nd = loom_tape_record(t, "dropout", dropout_backward, c, &a, 1);
    if (nd) nd->ctx = mask;
    return c;
}

loom_tensor *loom_op_dropout(loom_tape *t, loom_tensor *a, float p, loom_rng *rng)
{
    int rows = a && a->rows > 0 ? a->rows : 1;
    return loom_op_dropout_shard(t, a, p, rng, rows, rows, 0);
}
