/* loom layers: recurrent cells (built-in and user-defined), the sequence layer
 * that unrolls and stacks them, linear and embedding layers, optimizers,
 * gradient clipping and learning-rate schedules. */
#ifndef LOOM_LAYERS_H
#define LOOM_LAYERS_H

#include <math.h>

#include "loom_autograd.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Arguments. A pointer argument may not be NULL unless it is marked optional (its
 * comment says what NULL means); a data buffer may also be NULL when its count is 0.
 * A NULL where one is required gives LOOM_EARG with a message naming the call and
 * the argument ("seq_declare: params is NULL"); a call that returns a pointer, a
 * count or a float gives NULL, 0 (-1 for an index) or NAN with that message, and a
 * void call does nothing but leave the message. The free functions take NULL, as
 * free() does. A stack used before loom_seq_init (zeroed) or after loom_seq_free
 * gives LOOM_ESTATE. */

/* ---------------------------------------------------------------- cells
 *
 * A recurrent cell maps an input x [B x I] and its state (n_state tensors of
 * [B x H]; state 0 is the output h) to the next state. A cell has two forms:
 *
 * - step: the cell written with loom ops, any structure at all. The sequence
 *   layer unrolls it on the tape, one step at a time. Every cell has it.
 * - fused (optional): the cell's pre-activations are P = x W_ih^T + b_ih +
 *   h W_hh^T + b_hh, G gates of H units wide ([B x G*H]), and a pointwise
 *   kernel turns P and the previous state into the next state. The layer then
 *   does the rest: the input projection as one GEMM per block of steps, one
 *   recurrent GEMM per step, the weight gradients as one GEMM each per block,
 *   and the step loop, recorded as one tape node per layer. */

typedef struct loom_cell loom_cell;

/* Declares the cell's parameters for layer `layer` (use loom_cell_param, or
 * loom_cell_declare_gates first for a fused cell). */
typedef loom_status (*loom_cell_declare_fn)(loom_cell *cell, loom_params *ps, const char *prefix, int layer);
/* One step with loom ops: x [B x input], state[k] [B x hidden] -> next[k].
 * next[0] is the cell's output h. Returns an error status on failure. */
typedef loom_status (*loom_cell_step_fn)(loom_cell *cell, loom_tape *t, loom_tensor *x, loom_tensor *const *state,
                                         loom_tensor **next);

/* One time step of a fused cell as its kernel sees it. Every buffer holds B
 * rows, row r at r * (its width); a kernel call handles rows [r0, r1) only. */
typedef struct loom_cell_tile {
    int B, H;
    /* Forward and backward: */
    float *pre;               /* [B x G*H] pre-activations; with split_rec only x W_ih^T + b_ih. The
                               * forward kernel may overwrite it (with activations): backward gets it back */
    float *rec;               /* split_rec: [B x G*H] h W_hh^T + b_hh, apart; else NULL */
    const float *const *prev; /* [n_state] the previous state, [B x H] each */
    float *const *next;       /* [n_state] the next state: forward writes it, backward reads it */
    float *ws;                /* [B x ws_cols] what forward saves for backward */
    loom_tensor *const *w;    /* the cell's parameters (cell->w), for its extras */
    /* Backward only: */
    const float *const *dnext; /* [n_state] the gradient reaching the next state */
    float *dpre;               /* write: the gradient of pre */
    float *drec;               /* split_rec: write: the gradient of rec */
    float *const *dprev;       /* add: the gradient of prev through the kernel (the layer adds W_hh's part) */
    float *const *dw;          /* add, per row: [B x cols] for each extra parameter w[i], i >= 4, that
                                * needs a gradient (else NULL); the layer sums the rows */
} loom_cell_tile;
/* A fused cell's pointwise kernel over rows [r0, r1) of a tile. Rows are
 * independent, so the layer may run row ranges on several threads at once, of
 * sizes that follow the threads' measured speed: a row's results must not
 * depend on r0 and r1 (loop over rows one at a time, as the built-in cells do). */
typedef void (*loom_cell_kernel_fn)(const loom_cell *cell, const loom_cell_tile *tile, int r0, int r1);

/* A recurrent cell. Built-in constructors fill it; a user cell fills name,
 * sizes, n_state, declare and step, and for the fused form gates, ws_cols,
 * forward and backward (split_rec if it must see h W_hh^T apart). */
struct loom_cell {
    char name[32];               /* "lstm", "gru", "rnn", or the user's own */
    int input_size, hidden_size;
    int n_state;                 /* state tensors, each [B x hidden]; state 0 is h */
    loom_cell_declare_fn declare;
    loom_cell_step_fn step;
    /* The fused form (optional). Its parameters start with weight_ih [G*H x I],
     * weight_hh [G*H x H], bias_ih [1 x G*H], bias_hh [1 x G*H] (loom_cell_declare_gates);
     * any more (peepholes, per-unit scales) must be rows [1 x n]. */
    int gates;                   /* G */
    int split_rec;               /* 1: the kernel gets h W_hh^T + b_hh apart, in tile->rec */
    int ws_cols;                 /* floats per row saved for backward (0: none) */
    loom_cell_kernel_fn forward, backward;
    /* Set by declare: */
    loom_tensor **w;             /* parameter views, in declaration order */
    int nw, w_cap;
    /* Set by the sequence layer: 1 in a bidirectional layer's reverse direction, whose
     * parameter names loom_cell_param ends in "_reverse" ("lstm.weight_ih_l0_reverse"). */
    int reverse;
    /* Settings of the built-in cells, and the user's own data: */
    float forget_bias;           /* LSTM: initial value of the forget-gate biases */
    int relu;                    /* RNN: relu instead of tanh */
    void *user;
};

/* A parameter named "<prefix>.<name>_l<layer>" (PyTorch's scheme; "..._l<layer>_reverse"
 * when cell->reverse is set), appended to cell->w. */
loom_tensor *loom_cell_param(loom_cell *cell, loom_params *ps, const char *prefix, const char *name, int layer,
                             int rows, int cols, loom_init init);
/* Declares w[0..3] = weight_ih, weight_hh, bias_ih, bias_hh for G gates, with
 * PyTorch's init, and sets cell->gates: the start of every fused cell. */
loom_status loom_cell_declare_gates(loom_cell *cell, loom_params *ps, const char *prefix, int layer, int gates);
/* PyTorch's default init for recurrent weights: uniform(-1/sqrt(H), 1/sqrt(H)). */
loom_init loom_cell_default_init(int hidden);
/* The parameter of a declared cell by its short name ("weight_hh", "peep_i"), or NULL
 * (with no message when the cell simply has no such parameter). */
loom_tensor *loom_cell_find(const loom_cell *cell, const loom_params *ps, const char *name);

/* Pointwise helpers for kernels. loom_tanhf goes through one expf: glibc's
 * tanhf takes the slower expm1f path (absolute error ~1e-7). */
static inline float loom_sigmoidf(float x) { return 1.0f / (1.0f + expf(-x)); }
static inline float loom_tanhf(float x)
{
    float e = expf(-2.0f * fabsf(x));
    return copysignf((1.0f - e) / (1.0f + e), x);
}
/* y[i] = sigmoid(x[i]) and tanh(x[i]) for i < n (y may be x): AVX2 lanes where the CPU
 * has them (a vector exp within 2 ulp of expf), else the two above. An element's value
 * depends on its input alone, not on n or its place. */
void loom_sigmoidv(float *y, const float *x, int n);
void loom_tanhv(float *y, const float *x, int n);

/* Built-in cells, parameters and gate order as PyTorch's (LSTM i,f,g,o; GRU r,z,n):
 * weight_ih [G*H x I], weight_hh [G*H x H], bias_ih [1 x G*H], bias_hh [1 x G*H]. */
void loom_lstm_init(loom_cell *c, int input, int hidden, float forget_bias);
void loom_gru_init(loom_cell *c, int input, int hidden);
void loom_rnn_init(loom_cell *c, int input, int hidden, int relu);
/* Initialises a built-in cell by kind name ("lstm", "gru", "rnn", "rnn_relu"). */
loom_status loom_cell_init_kind(loom_cell *c, const char *kind, int input, int hidden);

/* ---------------------------------------------------------------- sequence layer */

typedef struct loom_state loom_state; /* a stack's recurrent state: see below */

/* Layers a stack may have: a bound for corrupt inputs, not a design limit. */
#define LOOM_SEQ_MAX_LAYERS 4096

/* A stack of recurrent layers with dropout between them, unrolled over time.
 *
 * Bidirectional stacks (loom_seq_set_bidirectional): each layer runs a forward
 * and a reverse direction, each a cell of its own with its own parameters (the
 * reverse one's names end in "_reverse", as PyTorch's). The reverse direction
 * reads each sequence backwards within its own length: sequence b starts at
 * t = lengths[b]-1, not at the padding. A layer's output at each step is both
 * directions' outputs side by side, [forward H | reverse H] (PyTorch's layout),
 * and layers 1.. take that 2H-wide input: loom_seq_set_bidirectional sets their
 * cells' input_size to 2 H_(l-1), so the cells are given to loom_seq_init as
 * for a unidirectional stack. */
typedef struct loom_seq {
    loom_cell *cells;    /* [layers], owned: the (forward) cells */
    int layers;
    float dropout;       /* between layers, training only */
    int fused;           /* 1: use the cells' fused forms where they exist (default) */
    int shard_row0, shard_batch; /* data parallelism: these rows are [row0, row0+batch) of shard_batch
                                  * (0: not sharded), so dropout masks follow the global row */
    int bidirectional;   /* read-only: 1 after loom_seq_set_bidirectional(s, 1) */
    loom_cell *rcells;   /* bidirectional: [layers] the reverse direction's cells, owned; else NULL */
    int recompute;       /* read-only: K of loom_seq_set_recompute (0: off) */
    int row_teams;       /* read-only: 1 (default) after loom_seq_init, see loom_seq_set_row_teams */
    loom_tape *scratch;  /* read-only, owned: where unfused layers recompute (NULL until one does) */
} loom_seq;

/* What a forward pass gives back. Tensors live on the tape until its reset. D is 2
 * for a bidirectional stack, else 1. */
typedef struct loom_seq_out {
    loom_tensor *y;      /* [T*B x D*H] top layer's output at every step, time-major; bidirectional:
                          * columns [0,H) the forward direction's, [H,2H) the reverse one's. Padding
                          * rows (t >= lengths[b]) hold each direction's final state (= h_last's row) */
    loom_tensor *h_last; /* [B x D*H] top layer's output at each sequence's last step; bidirectional:
                          * the forward direction's state at t = lengths[b]-1 beside the reverse
                          * direction's final state (its output at t = 0), PyTorch's
                          * cat(h_n[-2], h_n[-1]): what a classifier reads */
    loom_tensor **last;  /* every layer's final state: last[loom_seq_state_index(s, l, k)], [B x H_l] */
    int n_last;
} loom_seq_out;

/* Copies the cells in (cells[l] takes layer l's input size) and sets dropout. */
loom_status loom_seq_init(loom_seq *s, const loom_cell *cells, int layers, float dropout);
/* Declares every layer's parameters under prefix (e.g. "lstm.weight_ih_l0"). */
loom_status loom_seq_declare(loom_seq *s, loom_params *ps, const char *prefix);
/* Applies initial values that depend on a parameter's layout (the LSTM
 * forget-gate bias, when a cell's forget_bias is nonzero); call after loom_params_alloc. */
void loom_seq_apply_init(loom_seq *s);
/* Frees the cells (NULL is fine). */
void loom_seq_free(loom_seq *s);
/* Makes every layer bidirectional (on = 1) or unidirectional again (on = 0); call it after
 * loom_seq_init and before loom_seq_declare (afterwards it is refused, LOOM_ESTATE). Each
 * layer's reverse direction is a copy of its cell (cell->reverse set), and the cells of
 * layers 1.. get input_size 2 H_(l-1), which their declare must read. Parameters are
 * declared per layer in PyTorch's order: "<prefix>.weight_ih_l0", ..., then
 * "<prefix>.weight_ih_l0_reverse", ... (a user cell's own names also get "_reverse"). */
loom_status loom_seq_set_bidirectional(loom_seq *s, int on);
/* Gradient checkpointing for long sequences: with K > 0 each layer (and direction) keeps
 * its output h at every step and its whole state only every K steps; the gates, cell states
 * and workspace of the steps between are recomputed in backward, one segment of K steps at
 * a time. A layer's memory for them falls from O(T) to O(T/K + K): K = sqrt(T) is the usual
 * choice, at the cost of about one more forward pass. Outputs and gradients are the same,
 * bit for bit, as without (dropout masks are drawn once, between layers). Works for every
 * cell, fused or not (unfused ones recompute on the stack's scratch tape, so one forward and
 * backward at a time per stack); a cell's step must not draw random numbers. K = 0 turns it
 * off; K >= T is the plain path. May be called at any time; applies from the next forward. */
loom_status loom_seq_set_recompute(loom_seq *s, int K);
/* Threads in a fused layer (on = 1, the default): when the recurrent weights are small (6 MiB
 * or less) each thread takes a range of the batch's rows for a whole block of steps, so a step
 * costs no fork or join; on = 0 splits every step's GEMM and kernel over the threads instead.
 * Either way the bits depend only on the shapes and the thread count (the rows a thread
 * takes follow its measured speed, but no row's result depends on its thread). */
loom_status loom_seq_set_row_teams(loom_seq *s, int on);
/* Marks the batch as rows [row0, row0 + rows) of a global batch split over processes:
 * dropout masks are then drawn per global row, the same for any split. */
void loom_seq_set_shard(loom_seq *s, int row0, int global_batch);
/* Where layer l's state part k sits among all layers' parts (layer-major); -1 when there is no such part.
 * A bidirectional layer has 2 n_state parts: the forward direction's, then the reverse one's, so
 * part j of direction d (0 forward, 1 reverse) is k = d * n_state + j. For an LSTM that is h, c,
 * h_reverse, c_reverse per layer; PyTorch's h_n[2l + d] is last[loom_seq_state_index(s, l, 2d)]. */
int loom_seq_state_index(const loom_seq *s, int layer, int k);
/* The number of state parts over all layers (and directions). */
int loom_seq_state_count(const loom_seq *s);
/* Runs the stack over x [T*B x input] (time-major: row t*B+b). lengths[b] (NULL
 * for all T) ends sequence b early: its state is carried unchanged after that.
 * init holds the initial state, entering as a constant (NULL: zeros); it is
 * only read: store out->last into a state once the step has succeeded.
 * rng draws dropout masks when train (NULL when no mask is drawn). */
loom_status loom_seq_forward(loom_seq *s, loom_tape *t, loom_tensor *x, int T, int B, const int *lengths, int train,
                             const loom_state *init, loom_rng *rng, loom_seq_out *out);
/* The same from an initial state on the tape (init[loom_seq_state_index(s, l, k)],
 * [B x H_l] each; NULL for zeros), whose gradient flows back into it: an
 * encoder's final state starting a decoder. */
loom_status loom_seq_forward_from(loom_seq *s, loom_tape *t, loom_tensor *x, int T, int B, const int *lengths,
                                  int train, loom_tensor *const *init, loom_rng *rng, loom_seq_out *out);
/* A fused layer whose input x is loom_op_embedding's output (a character model's first
 * layer) projects the table's rows once per window, and takes the gradient through them,
 * in place of the T*B rows gathered from it, when this says that is less work: vocab at
 * most half the rows. The same function; backward sums in another order, so other bits. */
int loom_seq_embedding_folds(int vocab, int rows);
/* Per-row weights [T*B] for losses: 1 while t < lengths[b], else 0 (lengths NULL: all 1). */
void loom_seq_length_weights(const int *lengths, int T, int B, float *w);

/* ---------------------------------------------------------------- recurrent state */

/* The recurrent state of a stack for B rows: every layer's parts, in one flat
 * buffer [layer][part][B x H_l] (a bidirectional layer's parts: the forward
 * direction's, then the reverse one's, as loom_seq_state_index numbers them).
 * Training carries one between windows; evaluation and sampling keep their own. */

/* A zeroed state for batch rows of the stack s; NULL on failure (message set). */
loom_state *loom_state_new(const loom_seq *s, int batch);
/* Frees it (NULL is fine). */
void loom_state_free(loom_state *st);
/* Sets every value to zero. */
void loom_state_zero(loom_state *st);
/* Its batch, and its part k of layer l ([batch x H_l]; NULL when there is no such part). */
int loom_state_batch(const loom_state *st);
float *loom_state_part(loom_state *st, int layer, int k);
/* The whole flat buffer and, into n (optional), its size in floats (for checkpoints). */
float *loom_state_data(loom_state *st, size_t *n);
/* Copies src into dst (same stack and batch). */
loom_status loom_state_copy(loom_state *dst, const loom_state *src);
/* Stores a forward pass's final states (out->last) into st: commit it once
 * the step that produced it has succeeded. */
loom_status loom_state_store(loom_state *st, const loom_seq_out *out);

/* ---------------------------------------------------------------- linear, embedding */

/* y = x W^T + b with W [out x in] and b [1 x out] (b may be NULL): one GEMM. */
loom_tensor *loom_linear_apply(loom_tape *t, loom_tensor *x, loom_tensor *W, loom_tensor *b);

typedef struct loom_linear {
    loom_tensor *weight, *bias;
} loom_linear;
/* Declares "<prefix>.weight" [out x in] and "<prefix>.bias" [1 x out] with PyTorch's default init. */
loom_status loom_linear_declare(loom_linear *l, loom_params *ps, const char *prefix, int in, int out);

typedef struct loom_embedding {
    loom_tensor *weight;
} loom_embedding;
/* Declares "<prefix>.weight" [vocab x dim], N(0,1) like PyTorch. */
loom_status loom_embedding_declare(loom_embedding *e, loom_params *ps, const char *prefix, int vocab, int dim);

/* ---------------------------------------------------------------- optimizers */

typedef enum { LOOM_SGD, LOOM_ADAM, LOOM_ADAMW, LOOM_RMSPROP, LOOM_ADAGRAD } loom_optim_kind;

typedef struct loom_optim_config {
    loom_optim_kind kind;
    float lr;
    float momentum;     /* SGD, RMSprop */
    int nesterov;       /* SGD */
    float beta1, beta2; /* Adam(W) */
    float eps;          /* Adam(W), RMSprop, Adagrad */
    float alpha;        /* RMSprop smoothing */
    float weight_decay; /* L2 for SGD/Adam/RMSprop/Adagrad, decoupled for AdamW */
} loom_optim_config;

/* Optimizer state: flat buffers with the parameter buffer's layout. */
typedef struct loom_optim {
    loom_optim_config cfg;
    size_t n;
    float *m, *v;  /* first and second moments (or momentum / square averages / sums) */
    long step;     /* updates made so far */
    const void *self; /* read-only: the struct's own address while initialised, so a second init frees the first */
} loom_optim;

/* PyTorch's defaults for a kind (lr included). */
loom_optim_config loom_optim_defaults(loom_optim_kind kind);
/* Parses "sgd", "adam", "adamw", "rmsprop", "adagrad". */
loom_status loom_optim_parse(const char *name, loom_optim_kind *kind);
/* The name of a kind ("unknown" for a value out of range). */
const char *loom_optim_name(loom_optim_kind kind);
/* LOOM_OK if every setting is finite and in range, else LOOM_EARG naming the first that is not. */
loom_status loom_optim_check(loom_optim_config cfg);
/* Allocates zeroed state for n parameters. Called again on an initialised optimizer it
 * frees the old state first. Hyper-parameters must be finite and in range. */
loom_status loom_optim_init(loom_optim *o, loom_optim_config cfg, size_t n);
/* Frees the state (NULL is fine). */
void loom_optim_free(loom_optim *o);
/* One update of params from grads at learning rate lr (overrides cfg.lr): every value. */
void loom_optim_step(loom_optim *o, float *params, const float *grads, float lr);
/* One update of a store's parameters that leaves frozen ones (loom_params_freeze) untouched:
 * no step, no weight decay, no change to their optimizer state. */
loom_status loom_optim_step_params(loom_optim *o, loom_params *ps, float lr);
/* Scales grads so their global L2 norm is at most max_norm; returns the norm before. */
float loom_clip_grad_norm(float *grads, size_t n, float max_norm);
/* The global L2 norm of grads (same bits on any thread count). */
float loom_grad_norm(const float *grads, size_t n);
/* The scaling step of clipping, given the norm already computed. */
void loom_clip_grad_scale(float *grads, size_t n, float norm, float max_norm);

/* ---------------------------------------------------------------- schedules */

typedef enum { LOOM_SCHED_CONSTANT, LOOM_SCHED_STEP, LOOM_SCHED_COSINE } loom_sched_kind;
typedef struct loom_sched {
    loom_sched_kind kind;
    float base_lr;
    long warmup;     /* linear warmup steps (0: none) */
    long step_size;  /* STEP: decay every step_size steps */
    float gamma;     /* STEP: factor */
    long total;      /* COSINE: steps to reach min_lr */
    float min_lr;
} loom_sched;
/* LOOM_OK if the schedule's settings are finite and in range (a step schedule needs
 * step_size > 0 and gamma > 0), else LOOM_EARG naming them. */
loom_status loom_sched_check(const loom_sched *s);
/* Learning rate at step (0-based; NAN for a negative step). */
float loom_sched_lr(const loom_sched *s, long step);
/* Parses "constant", "step", "cosine". */
loom_status loom_sched_parse(const char *name, loom_sched_kind *kind);
/* The name of a kind, as parse() takes it. */
const char *loom_sched_name(loom_sched_kind kind);

#ifdef __cplusplus
}
#endif
#endif
