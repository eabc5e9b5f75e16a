/* loom layers: recurrent cells (built-in and user-defined), the sequence layer
 * that unrolls and stacks them, linear and embedding layers, optimizers,
 * gradient clipping and learning-rate schedules. */
#ifndef LOOM_LAYERS_H
#define LOOM_LAYERS_H

#include "loom_autograd.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- cells */

#define LOOM_CELL_MAX_PARAMS 8
#define LOOM_CELL_MAX_STATE 4
#define LOOM_MAX_LAYERS 8

typedef struct loom_cell loom_cell;

/* Declares the cell's parameters for layer `layer` (use loom_cell_param). */
typedef loom_status (*loom_cell_declare_fn)(loom_cell *cell, loom_params *ps, const char *prefix, int layer);
/* One step with ordinary loom ops: x [B x input], state[k] [B x hidden] -> next[k].
 * next[0] is the cell's output h. Return NULL tensors / an error status on failure. */
typedef loom_status (*loom_cell_step_fn)(loom_cell *cell, loom_tape *t, loom_tensor *x, loom_tensor *const *state,
                                         loom_tensor **next);

/* Arguments of a whole-sequence fast path (built-in cells provide one). */
typedef struct loom_cell_seq_args {
    loom_tensor *x;               /* [T*B x input], time-major */
    int T, B;
    const unsigned char *keep;    /* [T*B]: 0 where a sequence has ended (state carried) */
    loom_tensor *const *state0;   /* initial states, [B x hidden] each */
    loom_tensor *hext;            /* [(T+1)*B x hidden]: slot 0 holds h0; write h_t to slot t+1 */
    loom_tensor **state_last;     /* out: final states; state_last[0] may view hext's slot T */
} loom_cell_seq_args;
typedef loom_status (*loom_cell_seq_fn)(loom_cell *cell, loom_tape *t, loom_cell_seq_args *a);

/* A recurrent cell. Built-in constructors fill it; a user cell fills name,
 * sizes, n_state, declare and step (and may leave seq NULL). */
struct loom_cell {
    char name[32];            /* "lstm", "gru", "rnn", or the user's own */
    int input_size, hidden_size;
    int n_state;              /* state tensors, each [B x hidden]; state 0 is h */
    loom_cell_declare_fn declare;
    loom_cell_step_fn step;
    loom_cell_seq_fn seq;     /* optional fused whole-sequence path */
    loom_tensor *w[LOOM_CELL_MAX_PARAMS]; /* parameter views, set by declare */
    int nw;
    float forget_bias;        /* LSTM: initial value of the forget-gate biases */
    int relu;                 /* RNN: relu instead of tanh */
    void *user;               /* the user's own data */
};

/* A parameter named "<prefix>.<name>_l<layer>" (PyTorch's scheme), kept in cell->w. */
loom_tensor *loom_cell_param(loom_cell *cell, loom_params *ps, const char *prefix, const char *name, int layer,
                             int rows, int cols, loom_init init);
/* PyTorch's default init for recurrent weights: uniform(-1/sqrt(H), 1/sqrt(H)). */
loom_init loom_cell_default_init(int hidden);

/* Built-in cells, parameters and gate order as PyTorch's (LSTM i,f,g,o; GRU r,z,n):
 * weight_ih [G*H x I], weight_hh [G*H x H], bias_ih [1 x G*H], bias_hh [1 x G*H]. */
void loom_lstm_init(loom_cell *c, int input, int hidden, float forget_bias);
void loom_gru_init(loom_cell *c, int input, int hidden);
void loom_rnn_init(loom_cell *c, int input, int hidden, int relu);
/* Initialises a built-in cell by kind name ("lstm", "gru", "rnn", "rnn_relu"). */
loom_status loom_cell_init_kind(loom_cell *c, const char *kind, int input, int hidden);

/* ---------------------------------------------------------------- sequence layer */

/* A stack of recurrent layers with dropout between them, unrolled over time,
 * plus the state carried between windows (truncated BPTT). */
typedef struct loom_seq {
    loom_cell cells[LOOM_MAX_LAYERS];
    int layers;
    float dropout;       /* between layers, training only */
    int fused;           /* 1: use cells' fast paths where they exist (default) */
    int batch;           /* rows of the carried state */
    float *carry;        /* [layers][n_state][batch*hidden] carried state */
    size_t carry_size;
    int shard_row0, shard_batch; /* data parallelism: these rows are [row0, row0+batch) of shard_batch
                                  * (0: not sharded), so dropout masks follow the global row */
} loom_seq;

typedef struct loom_seq_out {
    loom_tensor *y;      /* [T*B x H] top layer's output at every step, time-major */
    loom_tensor *h_last; /* [B x H] top layer's output at each sequence's last step */
} loom_seq_out;

/* Copies the cells in (cells[l] takes layer l's input size) and sets dropout. */
loom_status loom_seq_init(loom_seq *s, const loom_cell *cells, int layers, float dropout);
/* Declares every layer's parameters under prefix (e.g. "lstm.weight_ih_l0"). */
loom_status loom_seq_declare(loom_seq *s, loom_params *ps, const char *prefix);
/* Applies initial values that depend on a parameter's layout (the LSTM
 * forget-gate bias, when a cell's forget_bias is nonzero); call after loom_params_alloc. */
void loom_seq_apply_init(loom_seq *s);
/* The carried state of layer `layer`, part k ([batch x hidden], 0 = h, 1 = c for LSTM). */
float *loom_seq_state(loom_seq *s, int layer, int k);
/* Sets the batch size of the carried state (allocates it) and zeroes it. */
loom_status loom_seq_reset_state(loom_seq *s, int batch);
/* Frees the carried state. */
void loom_seq_free(loom_seq *s);
/* Marks the batch as rows [row0, row0 + rows) of a global batch split over processes:
 * dropout masks are then drawn per global row, the same for any split. */
void loom_seq_set_shard(loom_seq *s, int row0, int global_batch);
/* Runs the stack over x [T*B x input] (time-major: row t*B+b). lengths[b] (NULL
 * for all T) ends sequence b early: its state is carried unchanged after that.
 * The initial state is the carried one, detached; with `carry` the final state
 * is stored back for the next window. rng draws dropout masks when train. */
loom_status loom_seq_forward(loom_seq *s, loom_tape *t, loom_tensor *x, int T, int B, const int *lengths, int train,
                             int carry, loom_rng *rng, loom_seq_out *out);
/* Per-row weights [T*B] for losses: 1 while t < lengths[b], else 0. */
void loom_seq_length_weights(const int *lengths, int T, int B, float *w);

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
} loom_optim;

/* PyTorch's defaults for a kind (lr included). */
loom_optim_config loom_optim_defaults(loom_optim_kind kind);
/* Parses "sgd", "adam", "adamw", "rmsprop", "adagrad". */
loom_status loom_optim_parse(const char *name, loom_optim_kind *kind);
/* Allocates zeroed state for n parameters. */
loom_status loom_optim_init(loom_optim *o, loom_optim_config cfg, size_t n);
/* Frees the state. */
void loom_optim_free(loom_optim *o);
/* One update of params from grads at learning rate lr (overrides cfg.lr). */
void loom_optim_step(loom_optim *o, float *params, const float *grads, float lr);
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
/* Learning rate at step (0-based). */
float loom_sched_lr(const loom_sched *s, long step);
/* Parses "constant", "step", "cosine". */
loom_status loom_sched_parse(const char *name, loom_sched_kind *kind);
/* The name of a kind, as parse() takes it. */
const char *loom_sched_name(loom_sched_kind kind);

#ifdef __cplusplus
}
#endif
#endif
