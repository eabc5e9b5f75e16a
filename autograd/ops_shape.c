/* Shape ops: concat/slice along features, row ranges, reductions, embedding. */
#include <string.h>

#include "internal.h"

static void concat_backward(loom_node *nd)
{
    loom_tensor *c = nd->out;
    for (int k = 0, off = 0; k < nd->n_in; off += nd->in[k]->cols, k++) {
        loom_tensor *p = nd->in[k];
        if (!p->requires_grad) continue;
        float *g = loom_tape_grad(nd->tape, p);
        if (!g) return;
        for (int r = 0; r < c->rows; r++) {
            const float *src = c->grad + (size_t)r * c->cols + off;
            float *dst = g + (size_t)r * p->cols;
            for (int j = 0; j < p->cols; j++) dst[j] += src[j];
        }
    }
}

loom_tensor *loom_op_concat(loom_tape *t, loom_tensor *const *parts, int n)
{
    if (!t) return LOOM_NULL_ARG("concat", "tape"), NULL;
    if (n <= 0) return loom_tape_fail(t, LOOM_EARG, "concat: n is %d; needs at least one part", n);
    if (!parts) return loom_tape_fail(t, LOOM_EARG, "concat: parts is NULL");
    if (loom_tape_null_inputs(t, "concat", parts, n)) return NULL;
    int cols = 0;
    for (int k = 0; k < n; k++) {
        if (parts[k]->rows != parts[0]->rows)
            return loom_tape_fail(t, LOOM_ESHAPE, "concat: part 0 is [%dx%d] but part %d is [%dx%d]: row counts differ",
                                  parts[0]->rows, parts[0]->cols, k, parts[k]->rows, parts[k]->cols);
        cols += parts[k]->cols;
    }
    loom_tensor *c = loom_tape_tensor(t, parts[0]->rows, cols);
    if (!c) return NULL;
    for (int r = 0; r < c->rows; r++)
        for (int k = 0, off = 0; k < n; off += parts[k]->cols, k++)
            memcpy(c->data + (size_t)r * cols + off, parts[k]->data + (size_t)r * parts[k]->cols,
                   (size_t)parts[k]->cols * sizeof(float));
    loom_tape_record(t, "concat", concat_backward, c, parts, n);
    return c;
}

static void vstack_backward(loom_node *nd)
{
    size_t off = 0;
    for (int k = 0; k < nd->n_in; k++) {
        loom_tensor *p = nd->in[k];
        size_t n = loom_tensor_size(p);
        if (p->requires_grad) {
            float *g = loom_tape_grad(nd->tape, p);
            if (!g) return;
            const float *src = nd->out->grad + off;
            for (size_t i = 0; i < n; i++) g[i] += src[i];
        }
        off += n;
    }
}

loom_tensor *loom_op_vstack(loom_tape *t, loom_tensor *const *parts, int n)
{
    if (!t) return LOOM_NULL_ARG("vstack", "tape"), NULL;
    if (n <= 0) return loom_tape_fail(t, LOOM_EARG, "vstack: n is %d; needs at least one part", n);
    if (!parts) return loom_tape_fail(t, LOOM_EARG, "vstack: parts is NULL");
    if (loom_tape_null_inputs(t, "vstack", parts, n)) return NULL;
    int rows = 0;
    for (int k = 0; k < n; k++) {
        if (parts[k]->cols != parts[0]->cols)
            return loom_tape_fail(t, LOOM_ESHAPE, "vstack: part 0 is [%dx%d] but part %d is [%dx%d]: column counts differ",
                                  parts[0]->rows, parts[0]->cols, k, parts[k]->rows, parts[k]->cols);
        rows += parts[k]->rows;
    }
    loom_tensor *c = loom_tape_tensor(t, rows, parts[0]->cols);
    if (!c) return NULL;
    size_t off = 0;
    for (int k = 0; k < n; k++) {
        memcpy(c->data + off, parts[k]->data, loom_tensor_size(parts[k]) * sizeof(float));
        off += loom_tensor_size(parts[k]);
    }
    loom_tape_record(t, "vstack", vstack_backward, c, parts, n);
    return c;
}

/* Adds a dense [rows x cols] block (stride lds) into dst (stride ldd). */
static void block_add(float *dst, int ldd, const float *src, int lds, int rows, int cols)
{
    for (int r = 0; r < rows; r++)
        for (int j = 0; j < cols; j++) dst[(size_t)r * ldd + j] += src[(size_t)r * lds + j];
}

static void slice_backward(loom_node *nd)
{
    loom_tensor *a = nd->in[0], *c = nd->out;
    float *g = loom_tape_grad(nd->tape, a);
    if (!g) return;
    /* i[0] = first column, i[1] = first row */
    block_add(g + (size_t)nd->i[1] * a->cols + nd->i[0], a->cols, c->grad, c->cols, c->rows, c->cols);
}

static loom_tensor *block(loom_tape *t, const char *op, loom_tensor *a, int r0, int nr, int c0, int nc)
{
    if (loom_tape_null_inputs(t, op, &a, 1)) return NULL;
    if (r0 < 0 || nr <= 0 || r0 + nr > a->rows || c0 < 0 || nc <= 0 || c0 + nc > a->cols)
        return loom_tape_fail(t, LOOM_ESHAPE, "%s: rows [%d,%d) cols [%d,%d) do not fit inside [%dx%d]", op, r0,
                              r0 + nr, c0, c0 + nc, a->rows, a->cols);
    loom_tensor *c = loom_tape_tensor(t, nr, nc);
    if (!c) return NULL;
    for (int r = 0; r < nr; r++)
        memcpy(c->data + (size_t)r * nc, a->data + (size_t)(r0 + r) * a->cols + c0, (size_t)nc * sizeof(float));
    loom_node *nd = loom_tape_record(t, op, slice_backward, c, &a, 1);
    if (nd) {
        nd->i[0] = c0;
        nd->i[1] = r0;
    }
    return c;
}

loom_tensor *loom_op_slice(loom_tape *t, loom_tensor *a, int col, int ncols)
{
    return block(t, "slice", a, 0, a ? a->rows : 0, col, ncols);
}

loom_tensor *loom_op_rows(loom_tape *t, loom_tensor *a, int row, int nrows)
{
    return block(t, "rows", a, row, nrows, 0, a ? a->cols : 0);
}

static void sum_backward(loom_node *nd)
{
    loom_tensor *a = nd->in[0];
    float *g = loom_tape_grad(nd->tape, a);
    if (!g) return;
    float d = nd->out->grad[0] * nd->f[0];
    size_t n = loom_tensor_size(a);
    LOOM_PFOR(i, n, g[i] += d;);
}

static loom_tensor *reduce(loom_tape *t, const char *op, loom_tensor *a, int mean)
{
    if (loom_tape_null_inputs(t, op, &a, 1)) return NULL;
    loom_tensor *c = loom_tape_tensor(t, 1, 1);
    if (!c) return NULL;
    size_t n = loom_tensor_size(a);
    double s = loom_kernel_sum(a->data, n);
    float scale = mean ? 1.0f / (float)n : 1.0f;
    c->data[0] = (float)(mean ? s / (double)n : s);
    loom_node *nd = loom_tape_record(t, op, sum_backward, c, &a, 1);
    if (nd) nd->f[0] = scale;
    return c;
}

loom_tensor *loom_op_sum(loom_tape *t, loom_tensor *a) { return reduce(t, "sum", a, 0); }
loom_tensor *loom_op_mean(loom_tape *t, loom_tensor *a) { return reduce(t, "mean", a, 1); }

static void embedding_backward(loom_node *nd)
{
    loom_tensor *tab = nd->in[0], *c = nd->out;
    const int *idx = nd->ctx;
    float *g = loom_tape_grad(nd->tape, tab);
    if (!g) return;
    /* Serial scatter-add in row order: repeated indices sum in a fixed order. */
    size_t d = (size_t)tab->cols;
    for (int r = 0; r < c->rows; r++) {
        float *dst = g + (size_t)idx[r] * d;
        const float *src = c->grad + (size_t)r * d;
        for (size_t j = 0; j < d; j++) dst[j] += src[j];
    }
}

loom_tensor *loom_op_embedding(loom_tape *t, loom_tensor *table, const int *idx, int n)
{
    if (loom_tape_null_inputs(t, "embedding", &table, 1)) return NULL;
    if (n <= 0) return loom_tape_fail(t, LOOM_EARG, "embedding: needs n > 0 indices (got %d)", n);
    if (!idx) return loom_tape_fail(t, LOOM_EARG, "embedding: idx is NULL");
    for (int r = 0; r < n; r++)
        if (idx[r] < 0 || idx[r] >= table->rows)
            return loom_tape_fail(t, LOOM_EARG, "embedding: index %d at position %d is outside table [%dx%d]", idx[r],
                                  r, table->rows, table->cols);
    loom_tensor *c = loom_tape_tensor(t, n, table->cols);
    if (!c) return NULL;
    size_t rb = (size_t)table->cols * sizeof(float);
    for (int r = 0; r < n; r++) memcpy(c->data + (size_t)r * table->cols, table->data + (size_t)idx[r] * table->cols, rb);
    loom_node *nd = loom_tape_record(t, "embedding", embedding_backward, c, &table, 1);
    if (nd) {
        int *saved = loom_arena_alloc(loom_tape_arena(t), (size_t)n * sizeof(int));
        if (!saved) return loom_tape_fail(t, LOOM_ENOMEM, "embedding: out of memory");
        memcpy(saved, idx, (size_t)n * sizeof(int));
        nd->ctx = saved;
    }
    return c;
}

const int *loom_op_embedding_source(const loom_tape *t, const loom_tensor *x, loom_tensor **table)
{
    if (!t || !x || !x->requires_grad) return NULL; /* a recorded op's output needs a gradient: else no node made x */
    for (int k = loom_tape_length(t) - 1; k >= 0; k--) { /* from the last: a consumer usually follows at once */
        const loom_node *nd = loom_tape_node(t, k);
        if (nd->out != x) continue;
        if (nd->backward != embedding_backward) return NULL;
        if (table) *table = nd->in[0];
        return nd->ctx;
    }
    return NULL;
}
