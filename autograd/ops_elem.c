/* Elementwise ops: arithmetic with row broadcast, nonlinearities, detach, row select. */
#include <math.h>
#include <string.h>

#include "internal.h"

/* b is either a's shape or one row broadcast over a's rows. */
static int broadcast_ok(loom_tape *t, const char *op, const char *sym, loom_tensor *a, loom_tensor *b)
{
    if (b->cols == a->cols && (b->rows == a->rows || b->rows == 1)) return 1;
    loom_tape_fail(t, LOOM_ESHAPE, "%s: [%dx%d] %s [%dx%d]: shapes differ (the second must be [%dx%d] or [1x%d])", op,
                   a->rows, a->cols, sym, b->rows, b->cols, a->rows, a->cols, a->cols);
    return 0;
}

#define BIDX(b, i, cols) ((b)->rows == 1 ? (size_t)(i) % (size_t)(cols) : (size_t)(i))

enum { OP_ADD, OP_SUB, OP_MUL };

static void binary_backward(loom_node *nd)
{
    loom_tensor *a = nd->in[0], *b = nd->in[1], *c = nd->out;
    const float *gc = c->grad;
    size_t n = loom_tensor_size(c);
    int kind = nd->i[0], cols = c->cols;
    if (a->requires_grad) {
        float *ga = loom_tape_grad(nd->tape, a);
        if (!ga) return;
        if (kind == OP_MUL) {
            LOOM_PFOR(i, n, ga[i] += gc[i] * b->data[BIDX(b, i, cols)];);
        } else {
            LOOM_PFOR(i, n, ga[i] += gc[i];);
        }
    }
    if (b->requires_grad) {
        float *gb = loom_tape_grad(nd->tape, b);
        if (!gb) return;
        const float *src = gc;
        float sign = kind == OP_SUB ? -1.0f : 1.0f;
        if (kind == OP_MUL || sign < 0) {
            float *tmp = loom_arena_alloc(loom_tape_arena(nd->tape), n * sizeof(float));
            if (!tmp) {
                loom_tape_fail(nd->tape, LOOM_ENOMEM, "%s backward: out of memory", nd->op);
                return;
            }
            if (kind == OP_MUL) {
                LOOM_PFOR(i, n, tmp[i] = gc[i] * a->data[i];);
            } else {
                LOOM_PFOR(i, n, tmp[i] = -gc[i];);
            }
            src = tmp;
        }
        if (b->rows == 1 && c->rows > 1) {
            loom_kernel_add_colsum(gb, src, c->rows, cols);
        } else {
            LOOM_PFOR(i, n, gb[i] += src[i];);
        }
    }
}

static loom_tensor *binary(loom_tape *t, const char *op, const char *sym, int kind, loom_tensor *a, loom_tensor *b)
{
    loom_tensor *in[2] = {a, b};
    if (loom_tape_null_inputs(t, op, in, 2) || !broadcast_ok(t, op, sym, a, b)) return NULL;
    loom_tensor *c = loom_tape_tensor(t, a->rows, a->cols);
    if (!c) return NULL;
    size_t n = loom_tensor_size(c);
    int cols = a->cols;
    float *x = a->data, *y = b->data, *z = c->data;
    if (kind == OP_ADD) {
        LOOM_PFOR(i, n, z[i] = x[i] + y[BIDX(b, i, cols)];);
    } else if (kind == OP_SUB) {
        LOOM_PFOR(i, n, z[i] = x[i] - y[BIDX(b, i, cols)];);
    } else {
        LOOM_PFOR(i, n, z[i] = x[i] * y[BIDX(b, i, cols)];);
    }
    loom_node *nd = loom_tape_record(t, op, binary_backward, c, in, 2);
    if (nd) nd->i[0] = kind;
    return c;
}

loom_tensor *loom_op_add(loom_tape *t, loom_tensor *a, loom_tensor *b) { return binary(t, "add", "+", OP_ADD, a, b); }
loom_tensor *loom_op_sub(loom_tape *t, loom_tensor *a, loom_tensor *b) { return binary(t, "sub", "-", OP_SUB, a, b); }
loom_tensor *loom_op_mul(loom_tape *t, loom_tensor *a, loom_tensor *b) { return binary(t, "mul", "*", OP_MUL, a, b); }

enum { UN_SCALE, UN_SIGMOID, UN_TANH, UN_RELU };

static void unary_backward(loom_node *nd)
{
    loom_tensor *a = nd->in[0], *c = nd->out;
    float *ga = loom_tape_grad(nd->tape, a);
    if (!ga) return;
    const float *gc = c->grad, *y = c->data, *x = a->data;
    size_t n = loom_tensor_size(c);
    float s = nd->f[0];
    switch (nd->i[0]) {
    case UN_SCALE: LOOM_PFOR(i, n, ga[i] += s * gc[i];); break;
    case UN_SIGMOID: LOOM_PFOR(i, n, ga[i] += gc[i] * y[i] * (1.0f - y[i]);); break;
    case UN_TANH: LOOM_PFOR(i, n, ga[i] += gc[i] * (1.0f - y[i] * y[i]);); break;
    case UN_RELU: LOOM_PFOR(i, n, ga[i] += x[i] > 0.0f ? gc[i] : 0.0f;); break;
    }
}

static loom_tensor *unary(loom_tape *t, const char *op, int kind, loom_tensor *a, float s)
{
    if (loom_tape_null_inputs(t, op, &a, 1)) return NULL;
    loom_tensor *c = loom_tape_tensor(t, a->rows, a->cols);
    if (!c) return NULL;
    size_t n = loom_tensor_size(c);
    const float *x = a->data;
    float *y = c->data;
    switch (kind) {
    case UN_SCALE: LOOM_PFOR(i, n, y[i] = s * x[i];); break;
    case UN_SIGMOID: LOOM_PFOR(i, n, y[i] = 1.0f / (1.0f + expf(-x[i]));); break;
    case UN_TANH: LOOM_PFOR(i, n, y[i] = tanhf(x[i]);); break;
    case UN_RELU: LOOM_PFOR(i, n, y[i] = x[i] > 0.0f ? x[i] : 0.0f;); break;
    }
    loom_node *nd = loom_tape_record(t, op, unary_backward, c, &a, 1);
    if (nd) {
        nd->i[0] = kind;
        nd->f[0] = s;
    }
    return c;
}

loom_tensor *loom_op_scale(loom_tape *t, loom_tensor *a, float s) { return unary(t, "scale", UN_SCALE, a, s); }
loom_tensor *loom_op_sigmoid(loom_tape *t, loom_tensor *a) { return unary(t, "sigmoid", UN_SIGMOID, a, 0); }
loom_tensor *loom_op_tanh(loom_tape *t, loom_tensor *a) { return unary(t, "tanh", UN_TANH, a, 0); }
loom_tensor *loom_op_relu(loom_tape *t, loom_tensor *a) { return unary(t, "relu", UN_RELU, a, 0); }

loom_tensor *loom_op_detach(loom_tape *t, loom_tensor *a)
{
    if (loom_tape_null_inputs(t, "detach", &a, 1)) return NULL;
    /* A new header over the same values: nothing is recorded, so no gradient flows back. */
    loom_tensor *c = loom_arena_alloc(loom_tape_arena(t), sizeof *c);
    if (!c) return loom_tape_fail(t, LOOM_ENOMEM, "detach: out of memory");
    *c = *a;
    c->grad = NULL;
    c->requires_grad = 0;
    c->owns = 0;
    return c;
}

static void select_backward(loom_node *nd)
{
    const unsigned char *keep = nd->ctx;
    loom_tensor *c = nd->out;
    size_t cols = (size_t)c->cols;
    for (int k = 0; k < 2; k++) {
        loom_tensor *x = nd->in[k];
        if (!x->requires_grad) continue;
        float *g = loom_tape_grad(nd->tape, x);
        if (!g) return;
        for (int r = 0; r < c->rows; r++)
            if ((keep[r] != 0) == (k == 0))
                for (size_t j = 0; j < cols; j++) g[r * cols + j] += c->grad[r * cols + j];
    }
}

loom_tensor *loom_op_select_rows(loom_tape *t, const unsigned char *keep, loom_tensor *a, loom_tensor *b)
{
    loom_tensor *in[2] = {a, b};
    if (loom_tape_null_inputs(t, "select_rows", in, 2)) return NULL;
    if (!keep) return loom_tape_fail(t, LOOM_EARG, "select_rows: keep is NULL");
    if (a->rows != b->rows || a->cols != b->cols)
        return loom_tape_fail(t, LOOM_ESHAPE, "select_rows: [%dx%d] vs [%dx%d]: shapes differ", a->rows, a->cols,
                              b->rows, b->cols);
    loom_tensor *c = loom_tape_tensor(t, a->rows, a->cols);
    if (!c) return NULL;
    size_t rb = (size_t)a->cols * sizeof(float);
    for (int r = 0; r < a->rows; r++)
        memcpy(c->data + (size_t)r * a->cols, (keep[r] ? a : b)->data + (size_t)r * a->cols, rb);
    loom_node *nd = loom_tape_record(t, "select_rows", select_backward, c, in, 2);
    if (nd) {
        unsigned char *m = loom_arena_alloc(loom_tape_arena(t), (size_t)a->rows);
        if (!m) return loom_tape_fail(t, LOOM_ENOMEM, "select_rows: out of memory");
        memcpy(m, keep, (size_t)a->rows);
        nd->ctx = m;
    }
    return c;
}
