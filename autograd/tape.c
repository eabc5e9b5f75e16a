/* The tape: nodes recorded in order, walked in reverse by backward. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

struct loom_tape {
    loom_node *nodes;
    int n, cap;
    loom_arena *arena;
    int nograd;
    int consumed;      /* backward already ran over these nodes */
    uint32_t gen;      /* bumped by each reset: tensors of an earlier step are stale */
    uint64_t errors0;  /* the thread's failure count at the last reset */
    loom_status status; /* first op error since reset */
    loom_tape_hook hook; /* called during backward (loom_tape_set_hook); NULL: none */
    void *hook_ctx;
    int walking;       /* the node backward is in, or -1 outside a walk: what loom_tape_poll reports */
};

loom_tape *loom_tape_new(size_t arena_bytes)
{
    loom_tape *t = loom_calloc(1, sizeof *t);
    if (!t) return NULL;
    t->arena = loom_arena_new(arena_bytes);
    t->cap = 1024;
    t->gen = 1; /* 0 marks tensors that are not the tape's */
    t->walking = -1;
    t->nodes = loom_malloc((size_t)t->cap * sizeof *t->nodes);
    if (!t->arena || !t->nodes) {
        loom_tape_free(t);
        return NULL;
    }
    return t;
}

void loom_tape_free(loom_tape *t)
{
    if (!t) return;
    loom_arena_free(t->arena);
    loom_free(t->nodes);
    loom_free(t);
}

void loom_tape_reset(loom_tape *t)
{
    if (!t) {
        LOOM_NULL_ARG("tape_reset", "tape");
        return;
    }
    t->gen++;
    t->errors0 = loom_error_count();
    t->n = 0;
    t->consumed = 0;
    t->status = LOOM_OK;
    loom_arena_reset(t->arena);
}

int loom_tape_set_nograd(loom_tape *t, int nograd)
{
    if (!t) return LOOM_NULL_ARG("tape_set_nograd", "tape"), 0;
    int old = t->nograd;
    t->nograd = nograd;
    return old;
}

int loom_tape_nograd(const loom_tape *t)
{
    if (!t) return LOOM_NULL_ARG("tape_nograd", "tape"), 0;
    return t->nograd;
}

loom_arena *loom_tape_arena(loom_tape *t)
{
    if (!t) return LOOM_NULL_ARG("tape_arena", "tape"), NULL;
    return t->arena;
}

loom_status loom_tape_status(const loom_tape *t)
{
    if (!t) return LOOM_NULL_ARG("tape_status", "tape");
    return t->status;
}

int loom_tape_length(const loom_tape *t)
{
    if (!t) return LOOM_NULL_ARG("tape_length", "tape"), 0;
    return t->n;
}

loom_tensor *loom_tape_fail(loom_tape *t, loom_status status, const char *fmt, ...)
{
    if (!t || t->status == LOOM_OK) {
        char msg[480] = "(no message)";
        if (fmt) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(msg, sizeof msg, fmt, ap);
            va_end(ap);
        }
        if (!t) { /* no tape to mark: the message says so, and what the failure was */
            loom_error_set(LOOM_EARG, "tape_fail: tape is NULL (failing with: %s)", msg);
            return NULL;
        }
        loom_error_set(status, "%s", msg);
        t->status = status;
    }
    return NULL;
}

int loom_tape_null_inputs(loom_tape *t, const char *op, loom_tensor *const *in, int n)
{
    if (!t) {
        loom_error_set(LOOM_EARG, "%s: tape is NULL", op);
        return 1;
    }
    if (!in && n > 0) {
        loom_tape_fail(t, LOOM_EARG, "%s: in is NULL (n = %d)", op, n);
        return 1;
    }
    for (int k = 0; k < n; k++) {
        if (!in[k]) {
            if (t->status != LOOM_OK) return 1;
            /* A call that failed since the reset (a layer, an allocation) made this NULL:
             * keep its message, the first one, and mark the tape with its status. */
            if (loom_error_count() != t->errors0 && loom_error_last() != LOOM_OK) t->status = loom_error_last();
            else loom_tape_fail(t, LOOM_EARG, "%s: input %d is NULL", op, k);
            return 1;
        }
        if (in[k]->gen && in[k]->gen != t->gen) {
            loom_tape_fail(t, LOOM_ESTATE, "%s: input %d is a tensor of an earlier step (made before the tape's last reset)",
                           op, k);
            return 1;
        }
    }
    return 0;
}

loom_status loom_tape_check(loom_tape *t, const char *op, loom_tensor *const *in, int n)
{
    if (!t) return loom_error_set(LOOM_EARG, "%s: tape is NULL", op ? op : "tape_check");
    return loom_tape_null_inputs(t, op ? op : "tape_check", in, n) ? (t->status ? t->status : LOOM_EARG) : LOOM_OK;
}

loom_tensor *loom_tape_tensor(loom_tape *t, int rows, int cols)
{
    if (!t) return LOOM_NULL_ARG("tape_tensor", "tape"), NULL;
    if (rows <= 0 || cols <= 0) return loom_tape_fail(t, LOOM_ESHAPE, "tensor: [%dx%d]: sizes must be positive", rows, cols);
    loom_tensor *x = loom_arena_alloc(t->arena, sizeof *x + (size_t)rows * cols * sizeof(float));
    if (!x) return loom_tape_fail(t, LOOM_ENOMEM, "tensor: out of memory for [%dx%d]", rows, cols);
    /* The data follows the struct; the arena's 64-byte rounding keeps it 4-byte aligned. */
    x->data = (float *)(x + 1);
    x->grad = NULL;
    x->rows = rows;
    x->cols = cols;
    x->requires_grad = 0;
    x->owns = 0;
    x->gen = t->gen;
    return x;
}

loom_tensor *loom_tape_zeros(loom_tape *t, int rows, int cols)
{
    if (!t) return LOOM_NULL_ARG("tape_zeros", "tape"), NULL;
    loom_tensor *x = loom_tape_tensor(t, rows, cols);
    if (x) loom_kernel_zero(x->data, loom_tensor_size(x));
    return x;
}

loom_tensor *loom_tape_from(loom_tape *t, int rows, int cols, const float *src)
{
    if (!t) return LOOM_NULL_ARG("tape_from", "tape"), NULL;
    if (!src) return loom_tape_fail(t, LOOM_EARG, "tape_from: src is NULL");
    loom_tensor *x = loom_tape_tensor(t, rows, cols);
    if (x) memcpy(x->data, src, loom_tensor_size(x) * sizeof(float));
    return x;
}

loom_tensor *loom_tape_view_rows(loom_tape *t, loom_tensor *x, int row, int nrows)
{
    if (!t) return LOOM_NULL_ARG("tape_view_rows", "tape"), NULL;
    if (loom_tape_null_inputs(t, "view_rows", &x, 1)) return NULL;
    if (row < 0 || nrows <= 0 || row + nrows > x->rows)
        return loom_tape_fail(t, LOOM_ESHAPE, "view_rows: rows [%d,%d) do not fit inside [%dx%d]", row, row + nrows, x->rows,
                              x->cols);
    loom_tensor *v = loom_arena_alloc(t->arena, sizeof *v);
    if (!v) return loom_tape_fail(t, LOOM_ENOMEM, "view_rows: out of memory");
    size_t off = (size_t)row * x->cols;
    v->data = x->data + off;
    v->grad = NULL;
    v->requires_grad = x->requires_grad && !t->nograd;
    if (v->requires_grad) {
        float *g = loom_tape_grad(t, x);
        if (!g) return NULL;
        v->grad = g + off;
    }
    v->rows = nrows;
    v->cols = x->cols;
    v->owns = 0;
    v->gen = t->gen;
    return v;
}

float *loom_tape_grad(loom_tape *t, loom_tensor *x)
{
    if (!t) return LOOM_NULL_ARG("tape_grad", "tape"), NULL;
    if (!x) return loom_tape_fail(t, LOOM_EARG, "tape_grad: x is NULL"), NULL;
    if (!x->grad && x->owns) { /* a heap tensor that asked for a gradient after creation: it owns this one */
        if (!(x->grad = loom_calloc(loom_tensor_size(x), sizeof(float))))
            loom_tape_fail(t, LOOM_ENOMEM, "backward: out of memory for a [%dx%d] gradient", x->rows, x->cols);
        return x->grad;
    }
    if (!x->grad) {
        size_t bytes = loom_tensor_size(x) * sizeof(float);
        x->grad = loom_arena_alloc(t->arena, bytes);
        if (!x->grad) {
            loom_tape_fail(t, LOOM_ENOMEM, "backward: out of memory for a [%dx%d] gradient", x->rows, x->cols);
            return NULL;
        }
        loom_kernel_zero(x->grad, loom_tensor_size(x));
    }
    return x->grad;
}

loom_node *loom_tape_record(loom_tape *t, const char *op, loom_backward_fn backward, loom_tensor *out,
                            loom_tensor *const *in, int n_in)
{
    if (!t) return LOOM_NULL_ARG("tape_record", "tape"), NULL;
    if (!op) op = "tape_record";
    const char *null_arg = !out ? "out" : !backward ? "backward" : !in && n_in > 0 ? "in" : NULL;
    if (null_arg) return loom_tape_fail(t, LOOM_EARG, "tape_record: %s is NULL (op %s)", null_arg, op), NULL;
    if (n_in < 0) return loom_tape_fail(t, LOOM_EARG, "tape_record: n_in is %d (op %s)", n_in, op), NULL;
    int req = 0;
    for (int k = 0; k < n_in; k++) {
        if (!in[k]) return loom_tape_fail(t, LOOM_EARG, "tape_record: in[%d] is NULL (op %s)", k, op), NULL;
        req |= in[k]->requires_grad;
    }
    out->requires_grad = req && !t->nograd;
    if (!out->requires_grad) return NULL;
    loom_tensor **ins = loom_arena_alloc(t->arena, (size_t)n_in * sizeof *ins);
    if (!ins) {
        loom_tape_fail(t, LOOM_ENOMEM, "%s: out of memory recording %d inputs", op, n_in);
        return NULL;
    }
    if (t->n == t->cap) {
        /* Grows only while warming up: the capacity is kept across resets. */
        loom_node *nodes = loom_malloc((size_t)t->cap * 2 * sizeof *nodes);
        if (!nodes) {
            loom_tape_fail(t, LOOM_ENOMEM, "%s: out of memory growing the tape", op);
            return NULL;
        }
        memcpy(nodes, t->nodes, (size_t)t->n * sizeof *nodes);
        loom_free(t->nodes);
        t->nodes = nodes;
        t->cap *= 2;
    }
    loom_node *nd = &t->nodes[t->n++];
    memset(nd, 0, sizeof *nd);
    nd->op = op;
    nd->backward = backward;
    nd->out = out;
    for (int k = 0; k < n_in; k++) ins[k] = in[k];
    nd->in = ins;
    nd->n_in = n_in;
    nd->tape = t;
    return nd;
}

void loom_tape_set_hook(loom_tape *t, loom_tape_hook fn, void *ctx)
{
    if (!t) {
        LOOM_NULL_ARG("tape_set_hook", "tape");
        return;
    }
    t->hook = fn;
    t->hook_ctx = ctx;
}

/* Calls the hook with the lowest node index walked so far; its failure fails the tape. */
static void call_hook(loom_tape *t, int done)
{
    loom_status st = t->hook(t->hook_ctx, done);
    if (st != LOOM_OK && t->status == LOOM_OK) t->status = st;
}

void loom_tape_poll(loom_tape *t)
{
    if (!t) {
        LOOM_NULL_ARG("tape_poll", "tape");
        return;
    }
    if (t->hook && t->walking >= 0) call_hook(t, t->walking + 1); /* the node in progress is not done */
}

const loom_node *loom_tape_node(const loom_tape *t, int k)
{
    if (!t) return LOOM_NULL_ARG("tape_node", "tape"), NULL;
    if (k < 0 || k >= t->n) return loom_error_set(LOOM_EARG, "tape_node: node %d of %d", k, t->n), NULL;
    return &t->nodes[k];
}

/* Walks the nodes in reverse once the seeds are in place. */
static loom_status walk(loom_tape *t)
{
    for (int k = t->n - 1; k >= 0; k--) {
        loom_node *nd = &t->nodes[k];
        t->walking = k;
        if (nd->out->grad || (nd->out2 && nd->out2->grad)) nd->backward(nd); /* else no gradient reached it */
        if (t->hook && t->status == LOOM_OK) call_hook(t, k);
        if (t->status != LOOM_OK) return t->walking = -1, t->status;
    }
    t->walking = -1;
    t->consumed = 1;
    return LOOM_OK;
}

loom_status loom_tape_backward(loom_tape *t, loom_tensor *loss)
{
    if (!t) return LOOM_NULL_ARG("tape_backward", "tape");
    if (t->status != LOOM_OK) return t->status;
    if (!loss) return LOOM_NULL_ARG("tape_backward", "loss");
    if (loss->rows != 1 || loss->cols != 1)
        return loom_error_set(LOOM_ESHAPE, "backward: loss is [%dx%d], expected a [1x1] scalar", loss->rows, loss->cols);
    if (t->consumed)
        return loom_error_set(LOOM_ESTATE, "backward: this graph was already walked; reset the tape before the next step");
    if (!loss->requires_grad)
        return loom_error_set(LOOM_ESTATE, "backward: the loss depends on no tensor that requires a gradient");
    float *g = loom_tape_grad(t, loss);
    if (!g) return t->status;
    g[0] = 1.0f;
    return walk(t);
}

loom_status loom_tape_backward_seeded(loom_tape *t, loom_tensor *const *outs, const float *const *grads, int n)
{
    if (!t) return LOOM_NULL_ARG("tape_backward_seeded", "tape");
    if (t->status != LOOM_OK) return t->status;
    if (n < 0) return loom_error_set(LOOM_EARG, "tape_backward_seeded: n is %d (expected >= 0)", n);
    if (n > 0 && !outs) return LOOM_NULL_ARG("tape_backward_seeded", "outs");
    if (n > 0 && !grads) return LOOM_NULL_ARG("tape_backward_seeded", "grads");
    if (t->consumed)
        return loom_error_set(LOOM_ESTATE, "backward: this graph was already walked; reset the tape before the next step");
    for (int k = 0; k < n; k++)
        if (!outs[k] || !grads[k])
            return loom_error_set(LOOM_EARG, "tape_backward_seeded: %s[%d] is NULL", outs[k] ? "grads" : "outs", k);
    for (int k = 0; k < n; k++) {
        if (!outs[k]->requires_grad) continue; /* a constant: nothing to walk back to */
        float *g = loom_tape_grad(t, outs[k]);
        if (!g) return t->status;
        size_t m = loom_tensor_size(outs[k]);
        for (size_t i = 0; i < m; i++) g[i] += grads[k][i];
    }
    return walk(t);
}
