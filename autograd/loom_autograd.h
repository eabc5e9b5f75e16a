/* loom autograd: tensors, arena, flat parameter store, tape, ops, RNG, gradcheck.
 * Everything is float32, row-major, two-dimensional [rows x cols].
 *
 * Arguments. A pointer argument may not be NULL unless its comment says what NULL
 * means; a data buffer may also be NULL when its count is 0. A NULL where one is
 * required gives LOOM_EARG with a message naming the call and the argument
 * ("params_add: name is NULL"); a call that returns a pointer or a number gives
 * NULL or 0 (-1 where stated) with that message, and a void call does nothing but
 * leave the message. The free functions take NULL, as free() does. */
#ifndef LOOM_AUTOGRAD_H
#define LOOM_AUTOGRAD_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- errors */

typedef enum {
    LOOM_OK = 0,
    LOOM_ESHAPE = -1,  /* shapes do not fit the op */
    LOOM_EARG = -2,    /* a bad argument value */
    LOOM_ENOMEM = -3,  /* an allocation failed */
    LOOM_EIO = -4,     /* a file could not be read or written */
    LOOM_EFORMAT = -5, /* a file's contents are not what was expected */
    LOOM_ESTATE = -6,  /* the call does not fit the object's state */
    LOOM_ESTOPPED = -7 /* a run stopped early on request (a signal), after saving what it could */
} loom_status;

/* The message of the last failed call on this thread ("" when none). */
const char *loom_error_message(void);
/* Records a failure with a printf-style message; returns the status for chaining.
 * fmt NULL records the status with the message "(no message)". */
loom_status loom_error_set(loom_status status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* Clears the thread's error message. */
void loom_error_clear(void);

/* malloc/calloc/free used by loom; loom_alloc_count() counts calls for tests. */
void *loom_malloc(size_t bytes);
void *loom_calloc(size_t n, size_t size);
void loom_free(void *p);
/* Number of loom_malloc/loom_calloc calls made so far by this process. */
uint64_t loom_alloc_count(void);
/* This machine's physical memory in bytes (0 if unknown): allocations beyond it are
 * refused up front, since Linux grants them lazily and kills the process at first touch. */
uint64_t loom_memory_bytes(void);

/* ---------------------------------------------------------------- tensor */

/* A tensor. Its values (data[...]) and requires_grad are the user's to set, on
 * heap tensors at any time; the other fields are read-only. */
typedef struct loom_tensor {
    float *data;       /* rows*cols values, row-major */
    float *grad;       /* read-only: same size; NULL until a gradient reaches it */
    int rows, cols;    /* read-only */
    int requires_grad; /* 1 if a gradient should flow into this tensor */
    int owns;          /* read-only: 1 if data/grad are the tensor's own heap memory (loom_tensor_new) */
    uint32_t gen;      /* read-only: the tape step a per-step tensor belongs to (0: not the tape's);
                        * ops refuse a tensor of an earlier step while its memory is not yet reused */
} loom_tensor;

/* A heap tensor (data zeroed); with requires_grad a zeroed grad buffer too. NULL on failure. */
loom_tensor *loom_tensor_new(int rows, int cols, int requires_grad);
/* Frees a tensor made by loom_tensor_new. */
void loom_tensor_free(loom_tensor *t);
/* Number of elements (0 and an error for NULL). */
static inline size_t loom_tensor_size(const loom_tensor *t)
{
    if (!t) return (size_t)(loom_error_set(LOOM_EARG, "tensor_size: tensor is NULL"), 0);
    return (size_t)t->rows * (size_t)t->cols;
}
/* Sets every element of the tensor's gradient to zero (no-op without one, or for NULL). */
void loom_tensor_zero_grad(loom_tensor *t);

/* ---------------------------------------------------------------- arena */

/* Bump allocator for per-step values. Grows while warming up; reset()
 * merges its chunks into one so later steps allocate nothing. */
typedef struct loom_arena loom_arena;

/* A new arena with an initial capacity in bytes (0 picks a default). */
loom_arena *loom_arena_new(size_t bytes);
/* Frees the arena and everything in it. */
void loom_arena_free(loom_arena *a);
/* 64-byte aligned memory valid until the next reset; NULL on failure. */
void *loom_arena_alloc(loom_arena *a, size_t bytes);
/* Forgets everything allocated; keeps (and coalesces) the memory. */
void loom_arena_reset(loom_arena *a);
/* Bytes handed out since the last reset, and bytes reserved in total. */
size_t loom_arena_used(const loom_arena *a);
size_t loom_arena_capacity(const loom_arena *a);
/* The most bytes handed out between two resets: one step's need, once warm. */
size_t loom_arena_high_water(const loom_arena *a);

/* ---------------------------------------------------------------- RNG */

/* Counter-based generator: value i of a stream is a pure function of
 * (seed, counter + i), so the result does not depend on thread count. */
typedef struct loom_rng {
    uint64_t seed;
    uint64_t counter;
} loom_rng;

/* A generator for a seed, at position 0. */
loom_rng loom_rng_init(uint64_t seed);
/* The next 64 random bits. */
uint64_t loom_rng_next(loom_rng *r);
/* A uniform float in [0, 1). */
float loom_rng_uniform(loom_rng *r);
/* A standard normal float. */
float loom_rng_normal(loom_rng *r);
/* Fills n floats uniform in [lo, hi), in parallel, advancing the counter by n. */
void loom_rng_fill_uniform(loom_rng *r, float *out, size_t n, float lo, float hi);
/* Fills n floats from N(mean, std^2), advancing the counter by n. */
void loom_rng_fill_normal(loom_rng *r, float *out, size_t n, float mean, float std);
/* A uniform integer in [0, n). */
uint32_t loom_rng_below(loom_rng *r, uint32_t n);

/* ---------------------------------------------------------------- params */

/* One flat buffer of parameters, one of gradients with the same layout,
 * and named views into both. Declare with add(), then alloc(). */
typedef struct loom_params loom_params;

typedef enum { LOOM_INIT_ZERO, LOOM_INIT_UNIFORM, LOOM_INIT_NORMAL, LOOM_INIT_CONST } loom_init_kind;
typedef struct loom_init {
    loom_init_kind kind;
    float a, b; /* uniform [a,b); normal mean a, std b; const a */
} loom_init;

/* An empty parameter store. */
loom_params *loom_params_new(void);
/* Frees the store, its buffers and its views. */
void loom_params_free(loom_params *p);
/* Declares a named [rows x cols] parameter; the view's data is valid after alloc(). */
loom_tensor *loom_params_add(loom_params *p, const char *name, int rows, int cols, loom_init init);
/* Allocates the flat buffers and draws every initial value from rng, in declaration order.
 * rng may be NULL when no parameter has a random (uniform or normal) init; otherwise
 * NULL is refused with LOOM_EARG and nothing is allocated. */
loom_status loom_params_alloc(loom_params *p, loom_rng *rng);
/* Sets the whole gradient buffer to zero (nothing to do before alloc()). */
void loom_params_zero_grad(loom_params *p);
/* Total number of floats, and the flat buffers (NULL before alloc(), with no error). */
size_t loom_params_size(const loom_params *p);
float *loom_params_data(loom_params *p);
float *loom_params_grad(loom_params *p);
/* Number of views, and view i's name and tensor (NULL and an error when i is out of range). */
int loom_params_count(const loom_params *p);
const char *loom_params_name(const loom_params *p, int i);
loom_tensor *loom_params_view(loom_params *p, int i);
/* The view with this name, or NULL (with no error when there is none). */
loom_tensor *loom_params_find(loom_params *p, const char *name);
/* Freezes (1) or unfreezes (0) a parameter by name: a frozen one gets no gradient (its
 * view's requires_grad is 0), and loom_optim_step_params leaves it as it is. Frozen and
 * trainable parameters are treated alike by every layer, fused or not. */
loom_status loom_params_freeze(loom_params *p, const char *name, int frozen);

/* ---------------------------------------------------------------- tape */

typedef struct loom_tape loom_tape;
typedef struct loom_node loom_node;

/* Backward of one op: adds the gradient of node->out into each input that requires one. */
typedef void (*loom_backward_fn)(loom_node *node);

struct loom_node {
    const char *op;         /* op name, for errors and debugging */
    loom_backward_fn backward;
    loom_tensor *out;
    loom_tensor *out2;      /* optional second output (fused ops); backward runs if either has a gradient */
    loom_tensor **in;       /* n_in inputs, copied into the arena by record */
    int n_in;
    int i[4];               /* small integer arguments */
    float f[2];             /* small float arguments */
    void *ctx;              /* op-specific saved data, from the arena */
    loom_tape *tape;
};

/* A new tape with an arena of the given initial size (0 picks a default). */
loom_tape *loom_tape_new(size_t arena_bytes);
/* Frees the tape and its arena. */
void loom_tape_free(loom_tape *t);
/* Forgets all nodes and per-step tensors; keeps the memory for the next step. */
void loom_tape_reset(loom_tape *t);
/* Turns recording off (1) or on (0); returns the previous setting. Off = inference. */
int loom_tape_set_nograd(loom_tape *t, int nograd);
/* 1 while recording is off. */
int loom_tape_nograd(const loom_tape *t);
/* Walks the nodes in reverse from a [1x1] loss, accumulating gradients with +=. */
loom_status loom_tape_backward(loom_tape *t, loom_tensor *loss);
/* The same from the gradients of n tensors instead of a loss (a vector-Jacobian product):
 * grads[k], loom_tensor_size(outs[k]) floats, is added into outs[k]'s gradient first; outs
 * that need no gradient are skipped. For walking back a recomputed part of a graph. */
loom_status loom_tape_backward_seeded(loom_tape *t, loom_tensor *const *outs, const float *const *grads, int n);
/* A hook for work overlapped with backward (a data-parallel gradient all-reduce): called
 * with `done`, meaning every node with an index >= done has been walked, so a gradient only
 * those nodes add into is final. Backward calls it after each node (done = its index) and
 * long ops may call it mid-node through loom_tape_poll (done = its index + 1). A status
 * other than LOOM_OK (set with loom_error_set) fails the tape, which stops the walk. */
typedef loom_status (*loom_tape_hook)(void *ctx, int done);
/* Sets the tape's hook (fn NULL removes it; ctx is fn's, optional). Kept across resets;
 * costs one branch per node while unset. */
void loom_tape_set_hook(loom_tape *t, loom_tape_hook fn, void *ctx);
/* For a long op's backward, between parts of its work: lets the hook run (no-op without
 * a hook or outside backward). */
void loom_tape_poll(loom_tape *t);
/* Node k (0 <= k < loom_tape_length) of those recorded since the last reset, e.g. to find
 * the first node that reads a tensor; NULL and an error when k is out of range. */
const loom_node *loom_tape_node(const loom_tape *t, int k);
/* The tape's arena, for per-step buffers of the caller's own. */
loom_arena *loom_tape_arena(loom_tape *t);
/* A per-step tensor from the arena (data uninitialised, no grad). NULL on failure. */
loom_tensor *loom_tape_tensor(loom_tape *t, int rows, int cols);
/* The same, zero-filled. */
loom_tensor *loom_tape_zeros(loom_tape *t, int rows, int cols);
/* A per-step tensor copying n = rows*cols values from src. */
loom_tensor *loom_tape_from(loom_tape *t, int rows, int cols, const float *src);
/* Rows [row, row+nrows) of x as a view: shares x's data and, when x needs a
 * gradient, x's gradient buffer (allocated now), so nothing is recorded and no
 * values are copied. Consumers' backward adds straight into x's gradient. */
loom_tensor *loom_tape_view_rows(loom_tape *t, loom_tensor *x, int row, int nrows);
/* Checks a call's tensor inputs as ops do: none NULL, none of an earlier step. On a
 * problem the tape is marked failed (keeping an earlier failure's message, which a
 * NULL input usually follows from) and the status returned. For custom ops and layers. */
loom_status loom_tape_check(loom_tape *t, const char *op, loom_tensor *const *in, int n);
/* The first error an op hit since the last reset (LOOM_OK if none). */
loom_status loom_tape_status(const loom_tape *t);
/* Number of nodes recorded since the last reset. */
int loom_tape_length(const loom_tape *t);

/* Records a custom op. Returns the node (fill i/f/ctx) or NULL in no-grad mode
 * or when no input requires a gradient; out->requires_grad is set to match.
 * op (the name in messages) may be NULL; out, backward or in (or an entry of it)
 * NULL fails the tape and gives NULL. */
loom_node *loom_tape_record(loom_tape *t, const char *op, loom_backward_fn backward, loom_tensor *out,
                            loom_tensor *const *in, int n_in);
/* The gradient buffer of a tensor, zero-filled from the arena on first use.
 * x NULL fails the tape and gives NULL. */
float *loom_tape_grad(loom_tape *t, loom_tensor *x);
/* Fails an op: records the first error on the tape and returns NULL. With t NULL
 * there is no tape to mark: the error (LOOM_EARG) says so and quotes the message. */
loom_tensor *loom_tape_fail(loom_tape *t, loom_status status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* ---------------------------------------------------------------- ops
 * Each op returns a new per-step tensor, or NULL with a message (see
 * loom_error_message) when a shape or argument is wrong or an input is NULL;
 * so a chain of ops can be checked once at its end. A NULL tape gives NULL and
 * the error with nothing marked; any other NULL argument also fails the tape. */

/* op(a) @ op(b), where op transposes when ta / tb is nonzero (CBLAS sgemm). */
loom_tensor *loom_op_matmul(loom_tape *t, loom_tensor *a, loom_tensor *b, int ta, int tb);
/* a + b; b may be [1 x cols] and is then added to every row. */
loom_tensor *loom_op_add(loom_tape *t, loom_tensor *a, loom_tensor *b);
/* a - b, broadcasting b like add. */
loom_tensor *loom_op_sub(loom_tape *t, loom_tensor *a, loom_tensor *b);
/* a * b elementwise, broadcasting b like add. */
loom_tensor *loom_op_mul(loom_tape *t, loom_tensor *a, loom_tensor *b);
/* s * a. */
loom_tensor *loom_op_scale(loom_tape *t, loom_tensor *a, float s);
/* Elementwise nonlinearities. */
loom_tensor *loom_op_sigmoid(loom_tape *t, loom_tensor *a);
loom_tensor *loom_op_tanh(loom_tape *t, loom_tensor *a);
loom_tensor *loom_op_relu(loom_tape *t, loom_tensor *a);
/* Joins n tensors with the same rows along the feature axis. */
loom_tensor *loom_op_concat(loom_tape *t, loom_tensor *const *parts, int n);
/* Columns [col, col+ncols) of a. */
loom_tensor *loom_op_slice(loom_tape *t, loom_tensor *a, int col, int ncols);
/* Rows [row, row+nrows) of a. */
loom_tensor *loom_op_rows(loom_tape *t, loom_tensor *a, int row, int nrows);
/* Stacks n tensors with the same columns along the row axis. */
loom_tensor *loom_op_vstack(loom_tape *t, loom_tensor *const *parts, int n);
/* Sum and mean of all elements, as [1 x 1]. */
loom_tensor *loom_op_sum(loom_tape *t, loom_tensor *a);
loom_tensor *loom_op_mean(loom_tape *t, loom_tensor *a);
/* Rows idx[0..n) of table [V x D] as [n x D]; backward scatter-adds into table. */
loom_tensor *loom_op_embedding(loom_tape *t, loom_tensor *table, const int *idx, int n);
/* When x is the output of loom_op_embedding recorded on t this step: its indices (x->rows
 * of them), and its table in *table. Else NULL. A consumer that multiplies x by a matrix
 * can multiply the table's rows once instead of every gathered row. */
const int *loom_op_embedding_source(const loom_tape *t, const loom_tensor *x, loom_tensor **table);
/* Weighted mean of -log softmax(logits)[target] over rows: sum w_r*ce_r / sum w_r.
 * weight may be NULL (all 1); rows of weight 0 (padding) add nothing. [1 x 1]. */
loom_tensor *loom_op_softmax_ce(loom_tape *t, loom_tensor *logits, const int *target, const float *weight);
/* The same with label smoothing eps in [0, 1): each row's target distribution is (1-eps) on
 * its class plus eps/C on every class, as PyTorch's cross_entropy(label_smoothing=eps). */
loom_tensor *loom_op_softmax_ce_smooth(loom_tape *t, loom_tensor *logits, const int *target, const float *weight, float eps);
/* Weighted mean squared error: sum_r w_r * sum_c (p-y)^2 / (cols * sum w_r). weight may be NULL.
 * Backward reads target again: keep its data unchanged until then (weight is copied). */
loom_tensor *loom_op_mse(loom_tape *t, loom_tensor *pred, const loom_tensor *target, const float *weight);
/* Inverted dropout with drop probability p, mask drawn from rng; p == 0 is the identity. */
loom_tensor *loom_op_dropout(loom_tape *t, loom_tensor *a, float p, loom_rng *rng);
/* Dropout on a shard of a larger tensor, for data parallelism: a's rows come in blocks of
 * `rows`, each holding rows [row0, row0+rows) of a block of total_rows in the whole tensor
 * (time-major [T*B] with B split over processes). The mask is the one the whole tensor
 * would get, so it does not depend on how the rows are split, and rng advances by the
 * whole tensor's size. With rows == total_rows it is loom_op_dropout. */
loom_tensor *loom_op_dropout_shard(loom_tape *t, loom_tensor *a, float p, loom_rng *rng, int rows, int total_rows,
                                   int row0);
/* The same values with no gradient flowing back (stop-gradient). */
loom_tensor *loom_op_detach(loom_tape *t, loom_tensor *a);
/* Row r of the result is a's row r where keep[r] is nonzero, else b's row r. */
loom_tensor *loom_op_select_rows(loom_tape *t, const unsigned char *keep, loom_tensor *a, loom_tensor *b);

/* Attention (ops_attention.c). A matrix product over n blocks of rows: a is n blocks
 * of a->rows/n rows, b likewise, and block i of the result [n*M x N] is op(a_i) @ op(b_i)
 * (op transposes when ta / tb is nonzero), so that with B blocks of [1 x D] queries and
 * [T x D] keys (tb 1) it gives B rows of T scores. */
loom_tensor *loom_op_bmm(loom_tape *t, loom_tensor *a, loom_tensor *b, int n, int ta, int tb);
/* Softmax along each row over the entries whose mask [rows x cols] is nonzero (mask NULL:
 * every entry); masked entries are 0, and a row with none kept is all 0. The mask is only
 * read during the call. */
loom_tensor *loom_op_masked_softmax(loom_tape *t, loom_tensor *a, const unsigned char *mask);
/* a's rows as n blocks of m = rows/n rows, transposed: row i*m + j of a is row j*n + i of
 * the result. Time-major [T*B x D] with n = T becomes batch-major [B*T x D]; n = B
 * turns it back. (Stacking per-step [B x D] outputs across time is loom_op_vstack.) */
loom_tensor *loom_op_transpose_blocks(loom_tape *t, loom_tensor *a, int n);

/* ---------------------------------------------------------------- gradcheck */

/* Builds a scalar [1x1] from loom ops on the tape. */
typedef loom_tensor *(*loom_scalar_fn)(loom_tape *t, void *ctx);

typedef struct loom_gradcheck_result {
    double worst_rel_err;  /* max over compared elements of |a-n| / max(|a|, |n|, floor * max|a|) */
    int worst_tensor;      /* which of the checked tensors (-1 if none compared), and which element */
    size_t worst_index;
    double analytic, numeric; /* the two values at the worst element */
    size_t checked;        /* elements compared (kinks excluded) */
    char worst_name[64];   /* the worst tensor's name, or "tensor K" when no names were given */
    size_t kinks;          /* elements skipped because the loss has a kink within the step */
    int kink_tensor;       /* the first kink (-1 if none): tensor, element and name */
    size_t kink_index;
    char kink_name[64];
} loom_gradcheck_result;

/* Compares backward's gradients of fn with finite differences for every element of
 * the n given tensors (parameter views or heap tensors made with requires_grad).
 * fn must give the same value for the same inputs (fix any RNG inside it).
 * floor, a fraction of the largest gradient, keeps float32 noise on tiny gradients
 * from dominating the relative error (1e-2 is typical).
 *
 * eps <= 0 picks steps automatically (recommended). Per element it starts at
 * h = 0.1 * max(1, |x|) and takes the Richardson extrapolation (4 D(h/2) - D(h)) / 3
 * of two central differences D(s) = (f(x+s) - f(x-s)) / 2s: D's error is c2 s^2 + c4 s^4
 * + ..., so the extrapolation cancels c2 and leaves -c4 h^4 / 4. Why a large step: the
 * loss is float32, and its ~1e-7 relative rounding noise, divided by the step, is what
 * limits the difference (on tanh, sigmoid and matmul chains, h = 1e-2 gave relative errors
 * up to 1e-2 on the small gradients of O(1) losses, 0.1 about 1e-3). Where the
 * slopes are not smooth at that step (roughness, below, above 0.5%: strong curvature
 * or a kink nearby), auto halves h, up to 4 times, and uses the first pair that is
 * smooth. So steps follow each element's curvature with no tuning, for losses of
 * order 1 and curvature scales down to ~0.03 * max(1, |x|). Cost: 4 evaluations per
 * element, up to 12 where it refines. Perturbed values are float32, so differences
 * divide by the steps actually taken, (float)(x+h) - x and x - (float)(x-h).
 *
 * eps > 0 is the plain central difference D(eps) (2 evaluations per element). Where
 * the one-sided slopes at eps differ by more than 1% the kink test below runs at eps,
 * and if the roughness exceeds 2% also at eps/2 and eps/4 (up to 8 evaluations). A
 * loss curving strongly within eps may then be counted as a kink; auto avoids that.
 *
 * Kinks (relu at 0, max, abs): with one-sided slopes r(s) = (f(x+s) - f(x)) / s and
 * l(s) = (f(x) - f(x-s)) / s at s = h and h/2, a smooth loss has
 * E = (r(h) - l(h)) - 2 (r(h/2) - l(h/2)) = O(h^3) (the slopes' disagreement halves
 * with h) and Q = (r(h) - r(h/2)) - (l(h/2) - l(h)) = O(h^2); a kink within the step
 * leaves one of them the size of the jump in slope however small h is (E alone misses
 * a kink at h/3). Roughness is max(|E|, |Q|) over the largest of the four slopes and
 * floor * max|a|, each ignored while within float32 noise. An element is a kink when
 * at the last step tried (auto: after 4 halvings, so within ~0.006 * max(1, |x|) of
 * a kink) the roughness exceeds 2% and did not shrink over the last two halvings as a
 * smooth loss's does (2-16x each time). Kinks are counted and left out of
 * worst_rel_err: no difference quotient means anything there. The test looks at the
 * loss only, never at the analytic gradient, so a wrong backward cannot make an
 * element a kink. */
loom_status loom_gradcheck(loom_scalar_fn fn, void *ctx, loom_tensor *const *wrt, int n, float eps, double floor,
                           loom_gradcheck_result *out);
/* The same, naming tensor k names[k] in the result (names or names[k] may be NULL;
 * ctx may be NULL with any call, it is fn's). */
loom_status loom_gradcheck_named(loom_scalar_fn fn, void *ctx, loom_tensor *const *wrt, const char *const *names, int n,
                                 float eps, double floor, loom_gradcheck_result *out);
/* The same over every parameter of ps whose view has requires_grad set (frozen ones,
 * requires_grad == 0, are skipped), named by loom_params_name. ps must be allocated. */
loom_status loom_gradcheck_params(loom_scalar_fn fn, void *ctx, loom_params *ps, float eps, double floor,
                                  loom_gradcheck_result *out);
/* One line describing res into buf (at most n bytes, terminated when n > 0), e.g.
 * "worst relative error 3.1e-04 at lstm.weight_hh_l0[17] (analytic 0.0123, numeric 0.0124);
 * 1200 elements; 2 skipped at kinks (first: rnn.bias_l0[3])". Returns the line's length
 * as snprintf does (n or more when cut), or -1 when res is NULL or buf is NULL with n > 0
 * (buf may be NULL with n == 0, to measure). */
int loom_gradcheck_format(const loom_gradcheck_result *res, char *buf, size_t n);

/* ---------------------------------------------------------------- kernels
 * Each checks its pointers once on entry: NULL with a nonzero size is an error
 * (nothing done, 0 returned). */

/* g[c] += sum over rows of x[r][c]; same bits on any thread count. */
void loom_kernel_add_colsum(float *g, const float *x, int rows, int cols);
/* The same over columns [c0, c1) of rows ld apart, on this thread: one thread's share. */
void loom_kernel_add_colsum_range(float *g, const float *x, int rows, int ld, int c0, int c1);
/* x[0..n) = 0, split over the team when large. */
void loom_kernel_zero(float *x, size_t n);
/* Sum of x[0..n) accumulated in double, in fixed blocks (same bits on any thread count). */
double loom_kernel_sum(const float *x, size_t n);
/* Sum of squares, the same way. */
double loom_kernel_sumsq(const float *x, size_t n);

/* ---------------------------------------------------------------- threads */

/* GEMMs with fewer multiply-adds than this, or a thinner inner dimension, run on the
 * calling thread alone: on this project's machine OpenBLAS's 2-thread split lost below
 * 2M multiply-adds and at K <= 16 (a stream of C, bound by memory) and won from 4M at
 * K >= 64 (bench/gemm_threads.c measures it). */
#define LOOM_GEMM_PAR_MIN 3e6
#define LOOM_GEMM_PAR_MIN_K 32
/* C = alpha op(A) op(B) + beta C, row-major, op transposing when ta / tb is 1: CBLAS sgemm,
 * on the OpenMP team from the sizes above up, else on this thread. */
void loom_kernel_gemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda, const float *B, int ldb,
                      float beta, float *C, int ldc);
/* 1 when the BLAS may be called from inside an OpenMP team and then runs on the calling
 * thread (OpenBLAS's OpenMP build); a pthread build would start its own threads per call. */
int loom_kernel_gemm_in_teams(void);
/* For a right operand used in many products (a recurrent layer's W_hh at every step):
 * op(B) [K x N] packed once into P, of loom_kernel_pack_size(K, N) floats. */
size_t loom_kernel_pack_size(int K, int N);
void loom_kernel_pack_b(int tb, int K, int N, const float *B, int ldb, float *P);
/* C [M x N] += A [M x K] op(B), with P from loom_kernel_pack_b (column panels split over the
 * team from LOOM_GEMM_PAR_MIN multiply-adds when called outside one, else on the calling thread); with a
 * bias [N], C = bias + A op(B) instead (C's old values unread). Each element is one chain of
 * multiply-adds in k order, so its bits depend on no split of rows. */
void loom_kernel_gemm_packed(int M, int N, int K, const float *A, int lda, const float *P, const float *bias, float *C,
                             int ldc);
/* 1 when loom_kernel_gemm_packed runs the vector width OpenBLAS's own kernels run: AVX2 FMA
 * beside its Haswell or Zen kernels, AVX-512 beside its SkylakeX, Cooperlake or
 * SapphireRapids ones. Then it matches OpenBLAS's rate and saves its packing per call. */
int loom_kernel_packed_fast(void);
/* Floats per vector that loom's own kernels run: 16 (AVX-512, beside OpenBLAS's AVX-512
 * kernels), 8 (AVX2 with FMA) or 1; LOOM_GEMM_ISA=c|avx2 lowers it (for tests). */
int loom_kernel_simd_width(void);

/* Elementwise kernels with fewer elements than this run serially. */
#ifndef LOOM_PAR_MIN
#define LOOM_PAR_MIN 65536
#endif
/* Loop helpers for kernels (loom's and custom ops'). */
/* Parallel-for over [0, n) with a static schedule when cond holds, else a plain loop.
 * A branch, not an if() clause: libgomp allocates a team even for a serialized region. */
#define LOOM_PFOR_IF(cond, i, n, ...)                                                \
    do {                                                                             \
        long loom_n_ = (long)(n);                                                    \
        if (cond) {                                                                  \
            _Pragma("omp parallel for schedule(static)") for (long i = 0; i < loom_n_; i++) { __VA_ARGS__ } \
        } else {                                                                     \
            for (long i = 0; i < loom_n_; i++) { __VA_ARGS__ }                       \
        }                                                                            \
    } while (0)
/* Elementwise loop over n elements, parallel from LOOM_PAR_MIN up. */
#define LOOM_PFOR(i, n, ...) LOOM_PFOR_IF((long)(n) >= LOOM_PAR_MIN, i, n, __VA_ARGS__)
/* Runs the block in an OpenMP team when cond holds, else once on this thread
 * (where omp_get_thread_num() is 0 and omp_get_num_threads() is 1). */
#define LOOM_PARALLEL_IF(cond, ...)                          \
    do {                                                     \
        if (cond) {                                          \
            _Pragma("omp parallel") { __VA_ARGS__ }          \
        } else {                                             \
            __VA_ARGS__                                      \
        }                                                    \
    } while (0)

/* Sets OpenMP's thread count (and so OpenBLAS's, which shares the pool). */
void loom_threads_set(int n);
/* Current OpenMP thread count. */
int loom_threads_get(void);

#ifdef __cplusplus
}
#endif
#endif
