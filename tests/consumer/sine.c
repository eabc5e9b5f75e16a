/* sine: a GRU learns to continue a sine wave with loom's trainer. It saves a
 * checkpoint at the end, resumes from one with --resume, and runs the same
 * under mpirun (each rank takes its share of the batch).
 * Usage: sine STEPS CHECKPOINT [--resume] */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <loom.h>

enum { T = 16, BATCH = 8, H = 16 };

typedef struct model {
    loom_seq seq;
    loom_linear head;
    float x[T * BATCH], y[T * BATCH];
} model;

/* This rank's rows of the global batch; the data depend only on the step and row. */
static loom_tensor *forward(void *ctx, loom_tape *t, loom_batch *b)
{
    model *m = ctx;
    for (int s = 0; s < T; s++)
        for (int r = 0; r < b->rows; r++) {
            double phase = 0.37 * (double)(b->step * b->batch + b->row0 + r) + 0.3 * s;
            m->x[s * b->rows + r] = (float)sin(phase);
            m->y[s * b->rows + r] = (float)sin(phase + 0.3);
        }
    b->count = (double)T * b->rows; /* the loss is a mean over this many terms */
    b->tokens = (long)T * b->rows;
    loom_seq_out o;
    loom_tensor *x = loom_tape_from(t, T * b->rows, 1, m->x);
    if (!x || loom_seq_forward(&m->seq, t, x, T, b->rows, NULL, 1, NULL, NULL, &o) != LOOM_OK) return NULL;
    loom_tensor *pred = loom_linear_apply(t, o.y, m->head.weight, m->head.bias);
    return loom_op_mse(t, pred, loom_tape_from(t, T * b->rows, 1, m->y), NULL);
}

int main(int argc, char **argv)
{
    loom_dist d;
    if (loom_dist_init(&d, &argc, &argv) != LOOM_OK) {
        loom_dist_perror(&d, "sine");
        return loom_dist_finish(&d, 1);
    }
    if (argc < 3) {
        if (d.rank == 0) fprintf(stderr, "usage: sine STEPS CHECKPOINT [--resume]\n");
        return loom_dist_finish(&d, 2);
    }
    static model m;
    loom_cell cell;
    loom_gru_init(&cell, 1, H);
    loom_params *ps = loom_params_new();
    loom_rng init = loom_rng_init(1);
    loom_train_config cfg = loom_train_defaults("sine");
    cfg.steps = atol(argv[1]);
    cfg.checkpoint = argv[2];
    cfg.log_every = 50;
    loom_optim_config adam = loom_optim_defaults(LOOM_ADAM);
    loom_sched lr = {LOOM_SCHED_CONSTANT, 1e-2f, 0, 1, 1, cfg.steps, 0};
    loom_task task = {&m, forward, NULL, NULL, NULL, NULL};
    loom_trainer tr;
    int have_tr = 0;

    loom_status st = loom_seq_init(&m.seq, &cell, 1, 0.0f);
    if (st == LOOM_OK) st = loom_seq_declare(&m.seq, ps, "gru");
    if (st == LOOM_OK) st = loom_linear_declare(&m.head, ps, "head", H, 1);
    if (st == LOOM_OK) st = loom_params_alloc(ps, &init);
    if (st == LOOM_OK) st = loom_trainer_init(&tr, &cfg, &d, ps, adam, lr, BATCH);
    have_tr = st == LOOM_OK;
    if (st == LOOM_OK && argc > 3 && strcmp(argv[3], "--resume") == 0) {
        loom_ckpt *c = loom_ckpt_open(argv[2]);
        st = c ? loom_trainer_restore(&tr, &task, c) : LOOM_EIO;
        loom_ckpt_close(c);
    }
    if (st == LOOM_OK) st = loom_trainer_run(&tr, &task);
    if (st == LOOM_OK && d.rank == 0) printf("step %ld: loss %.6f\n", tr.step, tr.last_loss);
    if (st != LOOM_OK) loom_dist_perror(&d, "sine");
    if (have_tr) loom_trainer_free(&tr);
    loom_seq_free(&m.seq);
    loom_params_free(ps);
    return loom_dist_finish(&d, st == LOOM_OK ? 0 : 1);
}
