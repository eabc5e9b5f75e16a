/* custom_cell: recurrent cells loom does not ship, written with the public API only.
 *
 * - peephole (default): the peephole LSTM of examples/peephole.c, on the fused
 *   cell API: four gates of pre-activations from the layer's GEMMs, three extra
 *   rows of per-unit weights, a pointwise forward/backward kernel pair.
 * - indrnn: IndRNN (Li et al. 2018), h = relu(W x + u * h_prev + b) with u and b
 *   rows [1 x H], written below from ordinary ops alone: no kernels at all.
 *
 * Both get the rest from the sequence layer (stacking, lengths, state, dropout),
 * the trainer (optimizers, checkpoints, MPI) and gradcheck. At start the program
 * gradchecks both cells, then trains the chosen one on the adding task, and at
 * the end times the fused peephole cell beside loom's built-in LSTM. */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "app.h"
#include "peephole.h"

static const char PROG[] = "custom_cell";

/* ---- IndRNN: a cell from primitive ops ---- */

static loom_status indrnn_declare(loom_cell *c, loom_params *ps, const char *prefix, int layer)
{
    int H = c->hidden_size;
    c->nw = 0;
    /* u in [0, 1): each unit's own recurrence starts stable (|u| < 1 keeps relu from growing without bound) */
    if (!loom_cell_param(c, ps, prefix, "weight_ih", layer, H, c->input_size, loom_cell_default_init(H)) ||
        !loom_cell_param(c, ps, prefix, "u", layer, 1, H, (loom_init){LOOM_INIT_UNIFORM, 0.0f, 1.0f}) ||
        !loom_cell_param(c, ps, prefix, "bias", layer, 1, H, (loom_init){LOOM_INIT_ZERO, 0.0f, 0.0f}))
        return LOOM_EARG; /* loom_cell_param has set the message */
    return LOOM_OK;
}

static loom_status indrnn_step(loom_cell *c, loom_tape *t, loom_tensor *x, loom_tensor *const *st, loom_tensor **next)
{
    /* loom_op_mul broadcasts the row u over the batch: an elementwise, not a matrix, recurrence */
    next[0] = loom_op_relu(t, loom_op_add(t, loom_linear_apply(t, x, c->w[0], c->w[2]), loom_op_mul(t, st[0], c->w[1])));
    return loom_tape_status(t);
}

static void indrnn_init(loom_cell *c, int input, int hidden)
{
    memset(c, 0, sizeof *c);
    strcpy(c->name, "indrnn");
    c->input_size = input;
    c->hidden_size = hidden;
    c->n_state = 1;
    c->declare = indrnn_declare;
    c->step = indrnn_step; /* no forward/backward: the layer unrolls the step on the tape */
}

/* The cells of this example by name; 0 for an unknown one. */
static int cell_init(loom_cell *c, const char *kind, int input, int hidden)
{
    if (strcmp(kind, "peephole") == 0) peephole_lstm_init(c, input, hidden);
    else if (strcmp(kind, "indrnn") == 0) indrnn_init(c, input, hidden);
    else return 0;
    return 1;
}

/* A stack of `layers` cells of one kind (built-in "lstm" too) declared under
 * the kind's name; fused selects the cells' fused forms. */
static loom_status stack_declare(loom_seq *s, loom_params *ps, const char *kind, int layers, int input, int hidden,
                                 float dropout, int fused)
{
    loom_cell *cells = calloc((size_t)layers, sizeof *cells);
    if (!cells) return loom_error_set(LOOM_ENOMEM, "out of memory for %d layers", layers);
    for (int l = 0; l < layers; l++) {
        int in = l ? hidden : input;
        if (strcmp(kind, "lstm") == 0) loom_lstm_init(&cells[l], in, hidden, 0.0f);
        else cell_init(&cells[l], kind, in, hidden);
    }
    loom_status st = loom_seq_init(s, cells, layers, dropout);
    free(cells);
    if (st != LOOM_OK) return st;
    s->fused = fused;
    return loom_seq_declare(s, ps, kind);
}

/* stack_declare, then the parameters' values from seed. */
static loom_status stack_new(loom_seq *s, loom_params *ps, const char *kind, int layers, int input, int hidden, int fused,
                             uint64_t seed)
{
    loom_rng r = loom_rng_init(seed);
    loom_status st = stack_declare(s, ps, kind, layers, input, hidden, 0.0f, fused);
    return st == LOOM_OK ? loom_params_alloc(ps, &r) : st;
}

/* ---- gradcheck at start ---- */

enum { GC_T = 4, GC_B = 3, GC_I = 3, GC_H = 5 };

typedef struct check {
    loom_seq seq;
    loom_state *init; /* a nonzero initial state, so its path is checked too */
    loom_tensor *x;
    int lengths[GC_B];
} check;

static loom_tensor *check_loss(loom_tape *t, void *ctx)
{
    check *k = ctx;
    loom_seq_out o;
    if (loom_seq_forward(&k->seq, t, k->x, GC_T, GC_B, k->lengths, 1, k->init, NULL, &o) != LOOM_OK) return NULL;
    loom_tensor *w = loom_tape_tensor(t, o.y->rows, o.y->cols);
    if (!w) return NULL;
    for (size_t i = 0; i < loom_tensor_size(w); i++) w->data[i] = (float)((int)(i % 5) - 2) * 0.3f;
    return loom_op_add(t, loom_op_sum(t, loom_op_mul(t, o.y, w)), loom_op_sum(t, loom_op_tanh(t, o.h_last)));
}

/* Gradchecks a 2-layer stack of the cell against finite differences over every
 * parameter and prints one line naming the worst one. Returns 0 if it passed. */
static int gradcheck_cell(const char *kind, int fused)
{
    check k = {.lengths = {GC_T, 2, 3}};
    loom_params *ps = loom_params_new();
    loom_status st = ps ? stack_new(&k.seq, ps, kind, 2, GC_I, GC_H, fused, 3) : LOOM_ENOMEM;
    if (st == LOOM_OK && (!(k.init = loom_state_new(&k.seq, GC_B)) || !(k.x = loom_tensor_new(GC_T * GC_B, GC_I, 0))))
        st = LOOM_ENOMEM;
    loom_gradcheck_result res = {0};
    if (st == LOOM_OK) {
        size_t n;
        float *s0 = loom_state_data(k.init, &n);
        for (size_t i = 0; i < n; i++) s0[i] = 0.25f * (float)((int)(i % 7) - 3) / 3.0f;
        loom_rng r = loom_rng_init(4);
        loom_rng_fill_uniform(&r, k.x->data, loom_tensor_size(k.x), -1, 1);
        /* eps 0: automatic steps, and relu's kinks (IndRNN) are counted, not compared */
        st = loom_gradcheck_params(check_loss, &k, ps, 0.0f, 1e-2, &res);
    }
    int ok = st == LOOM_OK && res.checked > 0 && res.worst_rel_err < 1e-2; /* float32 losses: the library tests' bound */
    char line[256];
    loom_gradcheck_format(&res, line, sizeof line);
    if (st != LOOM_OK) loom_app_fail_rank(PROG, "gradcheck of %s: %s", kind, loom_error_message());
    else
        printf("gradcheck of the %s cell (%s; 2 layers, %d steps, lengths %d/%d/%d, nonzero initial state): %s: %s\n", kind,
               fused && k.seq.cells[0].forward ? "fused" : "primitive ops", GC_T, k.lengths[0], k.lengths[1], k.lengths[2],
               line, ok ? "ok" : "FAILED");
    loom_state_free(k.init);
    loom_seq_free(&k.seq);
    loom_params_free(ps);
    loom_tensor_free(k.x);
    return ok ? 0 : 1;
}

/* ---- training on the adding task ---- */

typedef struct model {
    loom_app_flags *f;
    loom_seq seq;
    loom_linear head;
    loom_rng data, dropout;
    float *x, *y;
} model;

/* Rows [row0, row0+B) of a global batch; evaluation passes the whole batch. */
static loom_tensor *batch_loss(model *m, loom_tape *t, int row0, int B, int train)
{
    int T = m->f->seq;
    loom_seq_out o;
    loom_app_adding_batch(&m->data, T, m->f->batch, row0, B, m->x, m->y);
    loom_tensor *x = loom_tape_from(t, T * B, 2, m->x);
    if (!x || loom_seq_forward(&m->seq, t, x, T, B, NULL, train, NULL, &m->dropout, &o) != LOOM_OK) return NULL;
    loom_tensor *pred = loom_linear_apply(t, o.h_last, m->head.weight, m->head.bias);
    return loom_op_mse(t, pred, loom_tape_from(t, B, 1, m->y), NULL);
}

static loom_tensor *forward(void *ctx, loom_tape *t, loom_batch *bt)
{
    bt->count = bt->rows;
    bt->tokens = (long)((model *)ctx)->f->seq * bt->rows;
    return batch_loss(ctx, t, bt->row0, bt->rows, 1);
}

static loom_status save_state(void *ctx, loom_ckpt *c)
{
    model *m = ctx;
    return loom_app_state_write(c, m->f, &m->data, &m->dropout);
}

static loom_status load_state(void *ctx, loom_ckpt *c)
{
    model *m = ctx;
    return loom_app_state_read(c, &m->data, &m->dropout);
}

static void evaluate(void *ctx, loom_tape *t, long step)
{
    model *m = ctx;
    loom_rng keep = m->data, r = loom_rng_init(m->f->seed + 1000);
    double total = 0;
    int was = loom_tape_set_nograd(t, 1);
    m->data = r;
    for (int k = 0; k < 8; k++) {
        loom_tape_reset(t);
        loom_tensor *l = batch_loss(m, t, 0, m->f->batch, 0);
        total += l ? l->data[0] : NAN;
    }
    m->data = keep;
    loom_tape_set_nograd(t, was);
    printf("step %ld: test MSE %.4f (constant-prediction baseline 0.167)\n", step, total / 8);
    fflush(stdout);
}

/* ---- the fused peephole cell's speed beside the built-in LSTM ---- */

typedef struct timed {
    loom_seq seq;
    loom_params *ps;
    loom_tape *tape;
    loom_tensor *x, *w; /* input [T*B x I], loss weights [T*B x H] */
} timed;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* One forward + backward over a window, its seconds in *secs. */
static loom_status timed_step(timed *m, int T, int B, double *secs)
{
    double t0 = now();
    loom_tape_reset(m->tape);
    loom_params_zero_grad(m->ps);
    loom_seq_out o;
    loom_status st = loom_seq_forward(&m->seq, m->tape, m->x, T, B, NULL, 1, NULL, NULL, &o);
    loom_tensor *loss = st == LOOM_OK ? loom_op_sum(m->tape, loom_op_mul(m->tape, o.y, m->w)) : NULL;
    if (st == LOOM_OK) st = loss ? loom_tape_backward(m->tape, loss) : loom_tape_status(m->tape);
    *secs = now() - t0;
    return st;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Times forward + backward of the fused peephole stack and of the built-in LSTM
 * of the same sizes, alternating so both see the same machine; prints both. */
static int compare_speed(const loom_app_flags *f, int steps)
{
    static const char *const kinds[2] = {"peephole", "lstm"};
    int T = f->seq, B = f->batch, H = f->hidden, I = 2;
    timed m[2] = {{.ps = NULL}};
    double *times = malloc(sizeof(double) * 2 * (size_t)steps), med[2];
    loom_status st = times ? LOOM_OK : LOOM_ENOMEM;
    for (int k = 0; k < 2 && st == LOOM_OK; k++) {
        if (!(m[k].ps = loom_params_new()) || !(m[k].tape = loom_tape_new(0))) st = LOOM_ENOMEM;
        if (st == LOOM_OK) st = stack_new(&m[k].seq, m[k].ps, kinds[k], f->layers, I, H, 1, 5);
        if (st == LOOM_OK && (!(m[k].x = loom_tensor_new(T * B, I, 0)) || !(m[k].w = loom_tensor_new(T * B, H, 0))))
            st = LOOM_ENOMEM;
        if (st != LOOM_OK) break;
        loom_rng r = loom_rng_init(6);
        loom_rng_fill_uniform(&r, m[k].x->data, loom_tensor_size(m[k].x), -1, 1);
        loom_rng_fill_uniform(&r, m[k].w->data, loom_tensor_size(m[k].w), -1, 1);
        st = timed_step(&m[k], T, B, &times[k * steps]); /* warm-up: the arena grows once */
    }
    for (int s = 0; s < steps && st == LOOM_OK; s++)
        for (int k = 0; k < 2 && st == LOOM_OK; k++) st = timed_step(&m[k], T, B, &times[k * steps + s]);
    if (st == LOOM_OK) {
        for (int k = 0; k < 2; k++) {
            qsort(times + k * steps, (size_t)steps, sizeof *times, cmp_double);
            med[k] = times[k * steps + steps / 2] / ((double)T * B);
        }
        printf("speed, forward + backward (median of %d; T %d, B %d, %d layer%s of H %d, %d thread%s): fused peephole %.3f "
               "us/token, built-in lstm %.3f us/token, ratio %.2f\n",
               steps, T, B, f->layers, f->layers > 1 ? "s" : "", H, loom_threads_get(), loom_threads_get() > 1 ? "s" : "",
               med[0] * 1e6, med[1] * 1e6, med[0] / med[1]);
    } else
        loom_app_fail_rank(PROG, "timing: %s", st == LOOM_ENOMEM ? "out of memory" : loom_error_message());
    for (int k = 0; k < 2; k++) {
        loom_tape_free(m[k].tape);
        loom_seq_free(&m[k].seq);
        loom_params_free(m[k].ps);
        loom_tensor_free(m[k].x);
        loom_tensor_free(m[k].w);
    }
    free(times);
    return st == LOOM_OK ? 0 : 1;
}

/* ---- the program ---- */

/* --resume: the common checkpoint reader knows only built-in cells, so this
 * example reads its own configuration. Returns 0, or 1/2 after a message. */
static int read_config(loom_app_flags *f)
{
    static char kind[32];
    loom_ckpt *c = loom_ckpt_open(f->resume);
    if (!c) {
        loom_app_fail_rank(PROG, "--resume: %s", loom_error_message());
        return 1;
    }
    loom_cell probe;
    int rc = 0;
    if (loom_ckpt_read_str(c, "/config/cell", kind, sizeof kind) != LOOM_OK) {
        loom_app_fail_rank(PROG, "--resume: %s", loom_error_message());
        rc = 1;
    } else if (!cell_init(&probe, kind, 1, 1)) {
        loom_app_fail_rank(PROG, "--resume: checkpoint %s has cell '%s', not one of this example's (peephole, indrnn)",
                           loom_ckpt_path(c), kind);
        rc = 2;
    } else if (loom_app_given(f, "cell") && strcmp(f->cell, kind) != 0) {
        loom_app_fail_rank(PROG, "--cell %s conflicts with checkpoint %s, which has cell %s", f->cell, loom_ckpt_path(c), kind);
        rc = 2;
    }
    if (!rc) {
        f->cell = kind;
        rc = loom_app_config_common(c, f, PROG);
    }
    loom_ckpt_close(c);
    return rc;
}

static int run(loom_dist *d, int argc, char **argv)
{
    loom_app_flags f = {.data = "(generated)", .steps = 600, .batch = 64, .seq = 50, .hidden = 64, .layers = 1,
                        .cell = "peephole", .optim = "adam", .sched = "constant", .lr = 5e-3f, .clip = 1.0f, .seed = 1,
                        .log_every = 50, .eval_every = 200, .keep = 1};
    int rc = loom_app_parse(&f, argc, argv,
                            "User-defined recurrent cells built from loom's public API: --cell peephole (default; the\n"
                            "peephole LSTM of examples/peephole.c, fused) or --cell indrnn (IndRNN from ordinary ops).\n"
                            "Both are gradchecked at start; the chosen one is trained on the adding task of length\n"
                            "--seq; at the end the fused peephole cell is timed beside loom's built-in LSTM.",
                            NULL);
    if (rc) return rc == 1 ? 0 : rc;
    if (f.resume && (rc = read_config(&f))) return rc;
    const char *cell = f.cell;
    f.cell = "rnn"; /* the common check knows only built-in kinds; this program checks its own below */
    if (loom_app_check(&f, PROG)) return 2;
    f.cell = cell;
    loom_cell probe;
    if (!cell_init(&probe, cell, 1, 1)) {
        loom_app_fail_all(PROG, "--cell %s: this example trains its own cells: peephole or indrnn", cell);
        return 2;
    }
    if (f.threads > 0) loom_threads_set(f.threads);
    if (gradcheck_cell("peephole", 1) | gradcheck_cell("indrnn", 1)) return 1;

    model m = {.f = &f, .data = loom_rng_init(f.seed + 1), .dropout = loom_rng_init(f.seed + 2)};
    loom_params *ps = loom_params_new();
    m.x = malloc(sizeof(float) * (size_t)f.seq * f.batch * 2);
    m.y = malloc(sizeof(float) * (size_t)f.batch);
    loom_status st = ps && m.x && m.y ? stack_declare(&m.seq, ps, cell, f.layers, 2, f.hidden, f.dropout, 1) : LOOM_ENOMEM;
    loom_rng init = loom_rng_init(f.seed);
    if (st == LOOM_OK) st = loom_linear_declare(&m.head, ps, "head", f.hidden, 1);
    if (st == LOOM_OK) st = loom_params_alloc(ps, &init);
    if (st != LOOM_OK) {
        loom_app_fail_rank(PROG, "%s", st == LOOM_ENOMEM && !loom_error_message()[0] ? "out of memory" : loom_error_message());
        return 1;
    }
    printf("training %s x%d, hidden %d, on the adding task of length %d; parameters:", cell, f.layers, f.hidden, f.seq);
    for (int i = 0; i < loom_params_count(ps); i++) printf(" %s", loom_params_name(ps, i));
    printf("\n");
    loom_trainer tr;
    loom_task task = {&m, forward, evaluate, save_state, load_state, NULL};
    loom_ckpt *ck = NULL;
    if (f.resume && !(ck = loom_ckpt_open(f.resume))) return loom_app_fail_rank(PROG, "--resume: %s", loom_error_message()), 1;
    if ((rc = loom_app_trainer_init(&tr, &f, d, ps, PROG))) return rc;
    loom_seq_set_shard(&m.seq, tr.row0, f.batch);
    if (loom_app_resume_finish(&tr, &task, ck)) return 1;
    rc = loom_app_train(&tr, &task);
    loom_trainer_free(&tr);
    loom_seq_free(&m.seq);
    loom_params_free(ps);
    free(m.x);
    free(m.y);
    return rc ? rc : compare_speed(&f, 5);
}

int main(int argc, char **argv) { return loom_app_main(argc, argv, PROG, run); }
