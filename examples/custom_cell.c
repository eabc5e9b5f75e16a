/* custom_cell: a recurrent cell loom does not ship, written here with the
 * public API only: the minimal gated unit (MGU, Zhou et al. 2016)
 *     f  = sigmoid(W_f x + U_f h + b_f)
 *     h~ = tanh(W_h x + U_h (f * h) + b_h)
 *     h' = (1 - f) * h + f * h~
 * It declares its parameters, writes its step with ordinary ops, and gets the
 * rest from the sequence layer: stacking, lengths, gradcheck, optimizers,
 * checkpoint names. It is gradchecked at start, then trained on the adding task. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "app.h"

/* ---- the cell: about forty lines ---- */

static loom_status mgu_declare(loom_cell *c, loom_params *ps, const char *prefix, int layer)
{
    int H = c->hidden_size;
    loom_init u = loom_cell_default_init(H);
    c->nw = 0;
    if (!loom_cell_param(c, ps, prefix, "weight_ih", layer, 2 * H, c->input_size, u) || /* [W_f; W_h] */
        !loom_cell_param(c, ps, prefix, "weight_hf", layer, H, H, u) ||                 /* U_f */
        !loom_cell_param(c, ps, prefix, "weight_hh", layer, H, H, u) ||                 /* U_h */
        !loom_cell_param(c, ps, prefix, "bias", layer, 1, 2 * H, u))
        return loom_error_message()[0] ? LOOM_EARG : LOOM_ENOMEM;
    return LOOM_OK;
}

static loom_status mgu_step(loom_cell *c, loom_tape *t, loom_tensor *x, loom_tensor *const *state, loom_tensor **next)
{
    int H = c->hidden_size;
    loom_tensor *h = state[0];
    loom_tensor *xp = loom_linear_apply(t, x, c->w[0], c->w[3]); /* both input projections in one GEMM */
    loom_tensor *f = loom_op_sigmoid(t, loom_op_add(t, loom_op_slice(t, xp, 0, H), loom_linear_apply(t, h, c->w[1], NULL)));
    loom_tensor *cand = loom_op_tanh(
        t, loom_op_add(t, loom_op_slice(t, xp, H, H), loom_linear_apply(t, loom_op_mul(t, f, h), c->w[2], NULL)));
    next[0] = loom_op_add(t, h, loom_op_mul(t, f, loom_op_sub(t, cand, h))); /* h + f (h~ - h) */
    return loom_tape_status(t);
}

static void mgu_init(loom_cell *c, int input, int hidden)
{
    memset(c, 0, sizeof *c);
    strcpy(c->name, "mgu");
    c->input_size = input;
    c->hidden_size = hidden;
    c->n_state = 1;
    c->declare = mgu_declare;
    c->step = mgu_step;
}

/* ---- gradcheck at start ---- */

typedef struct check {
    loom_seq seq;
    loom_tensor *x;
    int lengths[3];
} check;

static loom_tensor *check_loss(loom_tape *t, void *ctx)
{
    check *k = ctx;
    loom_seq_out o;
    if (loom_seq_forward(&k->seq, t, k->x, 4, 3, k->lengths, 1, NULL, NULL, &o) != LOOM_OK) return NULL;
    loom_tensor *w = loom_tape_tensor(t, o.y->rows, o.y->cols);
    for (size_t i = 0; i < loom_tensor_size(w); i++) w->data[i] = (float)((int)(i % 5) - 2) * 0.3f;
    return loom_op_add(t, loom_op_sum(t, loom_op_mul(t, o.y, w)), loom_op_sum(t, loom_op_tanh(t, o.h_last)));
}

static int gradcheck_cell(void)
{
    check k = {.lengths = {4, 2, 3}};
    loom_cell cells[2];
    mgu_init(&cells[0], 3, 5);
    mgu_init(&cells[1], 5, 5);
    loom_params *ps = loom_params_new();
    loom_rng r = loom_rng_init(3);
    k.x = loom_tensor_new(12, 3, 1);
    if (!k.x || loom_seq_init(&k.seq, cells, 2, 0.0f) != LOOM_OK || loom_seq_declare(&k.seq, ps, "mgu") != LOOM_OK ||
        loom_params_alloc(ps, &r) != LOOM_OK) {
        fprintf(stderr, "custom_cell: %s\n", loom_error_message());
        return 1;
    }
    loom_rng_fill_uniform(&r, k.x->data, 36, -1, 1);
    loom_tensor *wrt[9];
    int n = 0;
    for (int i = 0; i < loom_params_count(ps); i++) wrt[n++] = loom_params_view(ps, i);
    wrt[n++] = k.x;
    loom_gradcheck_result res;
    loom_status st = loom_gradcheck(check_loss, &k, wrt, n, 3e-2f, 1e-2, &res);
    int ok = st == LOOM_OK && res.worst_rel_err < 1e-2;
    printf("gradcheck of the MGU cell (2 layers, 4 steps, lengths 4/2/3): %zu gradients, worst relative error %.2e: %s\n",
           res.checked, res.worst_rel_err, ok ? "ok" : "FAILED");
    if (st != LOOM_OK) fprintf(stderr, "custom_cell: gradcheck: %s\n", loom_error_message());
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
    if (!x || loom_seq_forward(&m->seq, t, x, T, B, NULL, train, NULL, &m->dropout, &o) != LOOM_OK)
        return NULL;
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

static int run(loom_dist *d, int argc, char **argv)
{
    loom_app_flags f = {.data = "(generated)", .steps = 600, .batch = 64, .seq = 50, .hidden = 64, .layers = 1,
                        .cell = "mgu", .optim = "adam", .sched = "constant", .lr = 5e-3f, .clip = 1.0f, .seed = 1,
                        .log_every = 50, .eval_every = 200, .keep = 1};
    int rc = loom_app_parse(&f, argc, argv,
                            "A user-defined recurrent cell (the minimal gated unit) built from loom's public API:\n"
                            "gradchecked at start, then trained on the adding task of length --seq.",
                            NULL);
    if (rc) return rc == 1 ? 0 : rc;
    if (f.resume) { /* the common checkpoint config knows only built-in cells: read this one's by hand */
        loom_ckpt *probe = loom_ckpt_open(f.resume);
        char kind[32] = "";
        if (!probe || loom_ckpt_read_str(probe, "/config/cell", kind, sizeof kind) != LOOM_OK || strcmp(kind, "mgu") != 0) {
            fprintf(stderr, "custom_cell: --resume: %s\n", probe && !kind[0] ? loom_error_message() : probe ? "not an mgu checkpoint" : loom_error_message());
            loom_ckpt_close(probe);
            return 1;
        }
        int rc2 = loom_app_config_int(probe, &f, "hidden", "hidden", &f.hidden, "custom_cell") ||
                  loom_app_config_int(probe, &f, "layers", "layers", &f.layers, "custom_cell") ||
                  loom_app_config_int(probe, &f, "batch", "batch", &f.batch, "custom_cell") ||
                  loom_app_config_int(probe, &f, "seq", "seq", &f.seq, "custom_cell");
        loom_ckpt_close(probe);
        if (rc2) return 2;
    }
    const char *cell = f.cell;
    f.cell = "rnn"; /* the common check knows only built-in kinds; this program has one cell */
    if (loom_app_check(&f, "custom_cell")) return 2;
    f.cell = cell;
    if (strcmp(cell, "mgu") != 0) {
        fprintf(stderr, "custom_cell: --cell %s: this example trains only its own cell, mgu\n", cell);
        return 2;
    }
    if (f.threads > 0) loom_threads_set(f.threads);
    if (gradcheck_cell()) return 1;

    model m = {.f = &f};
    loom_cell cells[64];
    for (int l = 0; l < f.layers; l++) mgu_init(&cells[l], l ? f.hidden : 2, f.hidden);
    loom_params *ps = loom_params_new();
    loom_rng init = loom_rng_init(f.seed);
    m.data = loom_rng_init(f.seed + 1);
    m.dropout = loom_rng_init(f.seed + 2);
    m.x = malloc(sizeof(float) * f.seq * f.batch * 2);
    m.y = malloc(sizeof(float) * f.batch);
    if (loom_seq_init(&m.seq, cells, f.layers, f.dropout) != LOOM_OK || loom_seq_declare(&m.seq, ps, "mgu") != LOOM_OK ||
        loom_linear_declare(&m.head, ps, "head", f.hidden, 1) != LOOM_OK || loom_params_alloc(ps, &init) != LOOM_OK) {
        fprintf(stderr, "custom_cell: %s\n", loom_error_message());
        return 1;
    }
    printf("training mgu x%d, hidden %d, on the adding task of length %d; parameters:", f.layers, f.hidden, f.seq);
    for (int i = 0; i < loom_params_count(ps); i++) printf(" %s", loom_params_name(ps, i));
    printf("\n");
    loom_trainer run;
    loom_task task = {&m, forward, evaluate, save_state, load_state, NULL};
    loom_ckpt *ck = f.resume ? loom_ckpt_open(f.resume) : NULL;
    if (f.resume && !ck) return fprintf(stderr, "custom_cell: --resume: %s\n", loom_error_message()), 1;
    if ((rc = loom_app_trainer_init(&run, &f, d, ps, "custom_cell"))) return rc;
    loom_seq_set_shard(&m.seq, run.row0, f.batch);
    if (loom_app_resume_finish(&run, &task, ck)) return 1;
    rc = loom_app_train(&run, &task);
    loom_trainer_free(&run);
    loom_seq_free(&m.seq);
    loom_params_free(ps);
    free(m.x);
    free(m.y);
    return rc;
}

int main(int argc, char **argv) { return loom_app_main(argc, argv, "custom_cell", run); }
