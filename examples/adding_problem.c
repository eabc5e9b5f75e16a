/* adding_problem: Hochreiter & Schmidhuber's adding task, many-to-one
 * regression. Each input step is (value, marker); the target is the sum of the
 * two marked values. Always predicting the mean (1.0) scores MSE 1/6 = 0.167;
 * a vanilla RNN's vanishing gradients keep it near that at T = 100, an LSTM
 * learns the task. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "app.h"

typedef struct adding {
    loom_app_flags *f;
    loom_params *ps;
    loom_seq seq;
    loom_linear head;
    loom_rng data_rng, dropout_rng;
    float *x, *y;
} adding;

static const char ABOUT[] =
    "The adding problem (many-to-one regression) at sequence length --seq. Without --cell it trains\n"
    "an LSTM and a vanilla RNN with the same settings and prints the comparison with the\n"
    "constant-prediction baseline (MSE 0.167).";

/* Every sequence starts from a zero state. */
static loom_tensor *predict(adding *m, loom_tape *t, const float *x, int T, int B, int train)
{
    loom_seq_out o;
    loom_tensor *xt = loom_tape_from(t, T * B, 2, x);
    if (!xt || loom_seq_forward(&m->seq, t, xt, T, B, NULL, train, NULL, &m->dropout_rng, &o) != LOOM_OK)
        return NULL;
    return loom_linear_apply(t, o.h_last, m->head.weight, m->head.bias);
}

static loom_tensor *forward(void *ctx, loom_tape *t, loom_batch *bt)
{
    adding *m = ctx;
    int T = m->f->seq, B = bt->rows;
    loom_app_adding_batch(&m->data_rng, T, bt->batch, bt->row0, B, m->x, m->y);
    bt->count = B;
    bt->tokens = (long)T * B;
    loom_tensor *y = loom_tape_from(t, B, 1, m->y);
    return loom_op_mse(t, predict(m, t, m->x, T, B, 1), y, NULL);
}

/* Test MSE on fresh sequences from a separate stream (no-grad). */
static double test_mse(adding *m, loom_tape *t, uint64_t seed, int batches)
{
    int T = m->f->seq, B = m->f->batch;
    loom_rng r = loom_rng_init(seed);
    double total = 0;
    int was = loom_tape_set_nograd(t, 1);
    for (int k = 0; k < batches; k++) {
        loom_app_adding_batch(&r, T, B, 0, B, m->x, m->y);
        loom_tape_reset(t);
        loom_tensor *y = loom_tape_from(t, B, 1, m->y);
        loom_tensor *l = loom_op_mse(t, predict(m, t, m->x, T, B, 0), y, NULL);
        total += l ? l->data[0] : NAN;
    }
    loom_tape_set_nograd(t, was);
    return total / batches;
}

static loom_status save_state(void *ctx, loom_ckpt *c)
{
    adding *m = ctx;
    return loom_app_state_write(c, m->f, &m->data_rng, &m->dropout_rng);
}

static loom_status load_state(void *ctx, loom_ckpt *c)
{
    adding *m = ctx;
    return loom_app_state_read(c, &m->data_rng, &m->dropout_rng);
}

static void evaluate(void *ctx, loom_tape *t, long step)
{
    adding *m = ctx;
    printf("  step %ld: test MSE %.4f\n", step, test_mse(m, t, m->f->seed + 1000, 8));
    fflush(stdout);
}

/* Trains one cell kind from scratch and returns its test MSE (NAN on error). */
static double train_one(loom_dist *d, loom_app_flags *f, const char *cell, loom_ckpt *ck, int *status)
{
    adding m = {.f = f};
    loom_rng init = loom_rng_init(f->seed);
    m.data_rng = loom_rng_init(f->seed + 1);
    m.dropout_rng = loom_rng_init(f->seed + 2);
    m.ps = loom_params_new();
    m.x = malloc(sizeof(float) * f->seq * f->batch * 2);
    m.y = malloc(sizeof(float) * f->batch);
    if (loom_app_seq_declare(f, cell, 2, &m.seq, m.ps) != LOOM_OK ||
        loom_linear_declare(&m.head, m.ps, "head", f->hidden, 1) != LOOM_OK || loom_params_alloc(m.ps, &init) != LOOM_OK) {
        fprintf(stderr, "adding_problem: %s\n", loom_error_message());
        return NAN;
    }
    loom_seq_apply_init(&m.seq);
    printf("%s: T=%d, hidden %d, %zu parameters\n", cell, f->seq, f->hidden, loom_params_size(m.ps));
    fflush(stdout);
    loom_trainer run;
    double mse = NAN;
    loom_task task = {&m, forward, evaluate, save_state, load_state, NULL};
    int rc = loom_app_trainer_init(&run, f, d, m.ps, "adding_problem");
    if (rc == 0) loom_seq_set_shard(&m.seq, run.row0, f->batch);
    if (rc == 0 && (rc = loom_app_resume_finish(&run, &task, ck)) == 0 && (rc = loom_app_train(&run, &task)) == 0)
        mse = d->rank == 0 ? test_mse(&m, run.tape, f->seed + 2000, 16) : 0.0;
    *status = rc;
    loom_trainer_free(&run);
    loom_seq_free(&m.seq);
    loom_params_free(m.ps);
    free(m.x);
    free(m.y);
    return mse;
}

static int run(loom_dist *d, int argc, char **argv)
{
    loom_app_flags f = {.data = "(generated)", .steps = 2000, .batch = 64, .seq = 100, .hidden = 64, .layers = 1,
                        .cell = "both", .optim = "adam", .sched = "constant", .lr = 5e-3f, .clip = 1.0f, .seed = 1,
                        .log_every = 50, .eval_every = 500, .forget_bias = 1.0f, .keep = 1};
    int rc = loom_app_parse(&f, argc, argv, ABOUT, NULL);
    if (rc) return rc == 1 ? 0 : rc;
    loom_ckpt *ck = NULL;
    if ((rc = loom_app_resume_open(&f, "adding_problem", &ck))) return rc;
    int both = strcmp(f.cell, "both") == 0;
    if (both && f.checkpoint) {
        loom_app_fail_all("adding_problem", "--checkpoint needs one --cell (lstm, gru, rnn or rnn_relu)");
        return loom_ckpt_close(ck), 2;
    }
    if (both) f.cell = "lstm";
    if (loom_app_check(&f, "adding_problem")) return loom_ckpt_close(ck), 2;
    if (f.seq < 2) { /* the two marked positions must differ */
        loom_app_fail_all("adding_problem", "--seq %d is too short: the problem marks two different time steps, so it needs 2 or more", f.seq);
        return loom_ckpt_close(ck), 2;
    }
    if (f.threads > 0) loom_threads_set(f.threads);
    const char *kinds[2] = {f.cell, "rnn"};
    double mse[2] = {NAN, NAN};
    for (int k = 0; k < (both ? 2 : 1); k++) {
        int status = 1;
        mse[k] = train_one(d, &f, kinds[k], ck, &status);
        if (status) return status;
        if (isnan(mse[k])) return 1;
    }
    printf("\nadding problem, T=%d: test MSE (constant-prediction baseline 0.167)\n", f.seq);
    for (int k = 0; k < (both ? 2 : 1); k++)
        printf("  %-8s %.4f  %s\n", kinds[k], mse[k],
               mse[k] < 0.01 ? "solved (below 0.01)" : mse[k] > 0.1 ? "near the baseline: not learned" : "partly learned");
    return 0;
}

int main(int argc, char **argv) { return loom_app_main(argc, argv, "adding_problem", run); }
