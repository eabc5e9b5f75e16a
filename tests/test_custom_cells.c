/* A user cell on the public fused-cell API: the peephole LSTM of
 * examples/peephole.c. Its fused kernels equal its primitive-op step, both
 * pass gradcheck, rows split over threads give the same gradients, and
 * freezing a peephole row leaves every other gradient as it was. */
#include <string.h>

#include "helpers.h"
#include "loom_layers.h"
#include "peephole.h"

typedef struct model {
    loom_params *ps;
    loom_seq seq;
    loom_state *st; /* a nonzero initial state */
    loom_tensor *x;
    int T, B, layers;
    int *lengths;
    int tape_nodes; /* of the last run_once */
} model;

static void model_init(model *m, int layers, int I, int H, int T, int B, int fused)
{
    memset(m, 0, sizeof *m);
    loom_cell cells[4];
    cr_assert_leq(layers, 4);
    for (int l = 0; l < layers; l++) peephole_lstm_init(&cells[l], l ? H : I, H);
    cr_assert_eq(loom_seq_init(&m->seq, cells, layers, 0.0f), LOOM_OK, "%s", loom_error_message());
    m->seq.fused = fused;
    m->ps = loom_params_new();
    cr_assert_eq(loom_seq_declare(&m->seq, m->ps, "peephole"), LOOM_OK, "%s", loom_error_message());
    loom_rng r = loom_rng_init(17);
    cr_assert_eq(loom_params_alloc(m->ps, &r), LOOM_OK);
    cr_assert_not_null(m->st = loom_state_new(&m->seq, B), "%s", loom_error_message());
    size_t n;
    float *s0 = loom_state_data(m->st, &n);
    for (size_t i = 0; i < n; i++) s0[i] = 0.4f * (float)((int)(i % 9) - 4) / 4.0f;
    m->x = rand_tensor(T * B, I, 1, 18, -1, 1);
    m->T = T, m->B = B, m->layers = layers;
    cr_assert_not_null(m->lengths = malloc(sizeof(int) * (size_t)B));
    for (int b = 0; b < B; b++) m->lengths[b] = b % 4 == 0 ? T : b % 4 == 1 ? 2 : b % 4 == 2 ? T - 1 : 1; /* variable */
}

static void model_free(model *m)
{
    loom_state_free(m->st);
    loom_seq_free(&m->seq);
    loom_params_free(m->ps);
    loom_tensor_free(m->x);
    free(m->lengths);
}

/* Every step's output (padding weighted 0), the last h and the top layer's last c,
 * so the gradient reaches both state parts from outside the layer. */
static loom_tensor *seq_loss(loom_tape *t, void *ctx)
{
    model *m = ctx;
    loom_seq_out o;
    if (loom_seq_forward(&m->seq, t, m->x, m->T, m->B, m->lengths, 1, m->st, NULL, &o) != LOOM_OK) return NULL;
    float *w = loom_arena_alloc(loom_tape_arena(t), sizeof(float) * m->T * m->B);
    loom_tensor *wt = loom_tape_tensor(t, m->T * m->B, o.y->cols);
    if (!w || !wt) return NULL;
    loom_seq_length_weights(m->lengths, m->T, m->B, w);
    for (int r = 0; r < m->T * m->B; r++)
        for (int j = 0; j < o.y->cols; j++) wt->data[r * o.y->cols + j] = w[r] * (float)((r * 7 + j * 3) % 5 - 2) * 0.5f;
    loom_tensor *c_last = o.last[loom_seq_state_index(&m->seq, m->layers - 1, 1)];
    return loom_op_add(t, loom_op_add(t, loom_op_sum(t, loom_op_mul(t, o.y, wt)), project(t, o.h_last)),
                       loom_op_sum(t, loom_op_tanh(t, c_last)));
}

/* Runs seq_loss forward and backward once; gradients land in ps and x. */
static float run_once(model *m)
{
    loom_tape *t = loom_tape_new(0);
    loom_params_zero_grad(m->ps);
    loom_tensor_zero_grad(m->x);
    loom_tensor *l = seq_loss(t, m);
    cr_assert_not_null(l, "%s", loom_error_message());
    cr_assert_eq(loom_tape_backward(t, l), LOOM_OK, "%s", loom_error_message());
    m->tape_nodes = loom_tape_length(t);
    float v = l->data[0];
    loom_tape_free(t);
    return v;
}

/* Tensor k of a model: its parameters in order, then the input. */
static int n_tensors(const model *m) { return loom_params_count(m->ps) + 1; }
static loom_tensor *tensor_at(model *m, int k) { return k < loom_params_count(m->ps) ? loom_params_view(m->ps, k) : m->x; }
static const char *name_at(model *m, int k) { return k < loom_params_count(m->ps) ? loom_params_name(m->ps, k) : "x"; }

/* The largest difference between a's and b's gradients over all tensors (skipping
 * tensor `skip`), relative to the largest value of b's buffer; names the worst. */
static double worst_grad_diff(model *a, model *b, int skip, const char **worst_name)
{
    double worst = 0;
    *worst_name = "none";
    for (int k = 0; k < n_tensors(a); k++) {
        if (k == skip) continue;
        loom_tensor *ta = tensor_at(a, k), *tb = tensor_at(b, k);
        double scale = 0;
        for (size_t i = 0; i < loom_tensor_size(tb); i++) scale = fmax(scale, fabs(tb->grad[i]));
        for (size_t i = 0; i < loom_tensor_size(ta); i++) {
            double d = fabs(ta->grad[i] - tb->grad[i]) / fmax(scale, 1e-12);
            if (d > worst) worst = d, *worst_name = name_at(a, k);
        }
    }
    return worst;
}

static double max_abs_grad(const loom_tensor *t)
{
    double mx = 0;
    for (size_t i = 0; i < loom_tensor_size(t); i++) mx = fmax(mx, fabs(t->grad[i]));
    return mx;
}

/* Fused and primitive runs of the same 2-layer stack from the same parameters. */
static void fused_matches_primitive(int I, int H, int T, int B, int row_teams)
{
    model a, b;
    model_init(&a, 2, I, H, T, B, 1);
    model_init(&b, 2, I, H, T, B, 0);
    cr_assert_eq(loom_seq_set_row_teams(&a.seq, row_teams), LOOM_OK);
    float la = run_once(&a), lb = run_once(&b);
    /* The fused path is one tape node per layer, not T steps of ops: else this compares the step with itself. */
    cr_expect_lt(a.tape_nodes, b.tape_nodes / 4, "fused run recorded %d nodes, primitive %d", a.tape_nodes, b.tape_nodes);
    cr_expect_lt(fabs(la - lb) / fmax(fabs(lb), 1e-12), 1e-5, "loss %.9g (fused) vs %.9g (primitive)", la, lb);
    const char *where;
    double worst = worst_grad_diff(&a, &b, -1, &where);
    cr_expect_lt(worst, 1e-5, "I %d H %d T %d B %d: worst gradient difference %g of its buffer's largest, in %s", I, H, T, B,
                 worst, where);
    /* The peephole rows do get a gradient (a kernel that never wrote dw would match a zero one). */
    for (int k = 0; k < loom_params_count(a.ps); k++)
        if (strstr(loom_params_name(a.ps, k), "peep_"))
            cr_expect_gt(max_abs_grad(loom_params_view(a.ps, k)), 1e-4, "%s has no gradient", loom_params_name(a.ps, k));
    model_free(&a);
    model_free(&b);
}

Test(peephole, fused_equals_primitive_ops)
{
    fused_matches_primitive(13, 24, 9, 4, 1);
}

/* Two threads, each adding its rows' peephole gradients into rows of its own: as a row
 * team over whole blocks (the default), and with teams off, B*H above LOOM_PAR_MIN, each
 * step's kernel split over the threads. H 300 is one column block of the backward kernel
 * (256) and a partial one. */
Test(peephole, fused_equals_primitive_ops_rows_on_two_threads)
{
    int was = loom_threads_get();
    loom_threads_set(2);
    fused_matches_primitive(8, 300, 4, 256, 1);
    fused_matches_primitive(8, 300, 4, 256, 0);
    loom_threads_set(was);
}

static void gradcheck_peephole(int fused)
{
    model m;
    model_init(&m, 2, 3, 4, 5, 4, fused);
    loom_tensor *wrt[32];
    const char *names[32];
    int n = 0;
    size_t total = 0;
    for (int k = 0; k < n_tensors(&m) && n < 32; k++) wrt[n] = tensor_at(&m, k), names[n++] = name_at(&m, k);
    for (int k = 0; k < n; k++) total += loom_tensor_size(wrt[k]);
    cr_assert_eq(n, n_tensors(&m));
    loom_gradcheck_result res;
    loom_status st = loom_gradcheck_named(seq_loss, &m, wrt, names, n, 0.0f, 1e-2, &res);
    cr_assert_eq(st, LOOM_OK, "gradcheck failed to run: %s", loom_error_message());
    char line[256];
    loom_gradcheck_format(&res, line, sizeof line);
    /* Every element compared: a smooth cell has no kinks to skip. */
    cr_expect_eq(res.checked, total, "%zu of %zu elements compared: %s", res.checked, total, line);
    cr_expect_lt(res.worst_rel_err, 2e-3, "peephole x2 %s: %s", fused ? "fused" : "primitive", line);
    model_free(&m);
}

Test(peephole, gradcheck_fused) { gradcheck_peephole(1); }
Test(peephole, gradcheck_primitive) { gradcheck_peephole(0); }

/* Each peephole row frozen in turn (requires_grad = 0 on its view): it gets no
 * gradient, and every other tensor's gradient is the unfrozen run's. */
static void freezing_each_peephole_row(int fused)
{
    model ref, m;
    model_init(&ref, 2, 5, 16, 7, 6, fused);
    run_once(&ref);
    int frozen = 0;
    for (int k = 0; k < loom_params_count(ref.ps); k++) {
        if (!strstr(loom_params_name(ref.ps, k), "peep_")) continue;
        model_init(&m, 2, 5, 16, 7, 6, fused);
        loom_params_view(m.ps, k)->requires_grad = 0;
        run_once(&m);
        const char *where;
        double worst = worst_grad_diff(&m, &ref, k, &where);
        cr_expect_lt(worst, 1e-6, "%s, %s frozen: %s's gradient moved by %g of its largest", fused ? "fused" : "primitive",
                     loom_params_name(m.ps, k), where, worst);
        cr_expect_eq(max_abs_grad(loom_params_view(m.ps, k)), 0.0, "frozen %s has a gradient", loom_params_name(m.ps, k));
        cr_expect_gt(max_abs_grad(loom_params_view(ref.ps, k)), 0.0, "unfrozen %s has none", loom_params_name(ref.ps, k));
        frozen++;
        model_free(&m);
    }
    cr_expect_eq(frozen, 6, "expected peep_i, peep_f, peep_o on each of 2 layers, found %d", frozen);
    model_free(&ref);
}

Test(peephole, frozen_peephole_rows_fused) { freezing_each_peephole_row(1); }
Test(peephole, frozen_peephole_rows_primitive) { freezing_each_peephole_row(0); }

Test(peephole, parameters_and_state)
{
    model m;
    model_init(&m, 2, 5, 6, 2, 1, 1);
    cr_expect_eq(loom_params_count(m.ps), 14);
    cr_expect_eq(m.seq.cells[0].n_state, 2);
    loom_tensor *w = loom_params_find(m.ps, "peephole.weight_ih_l0");
    cr_expect(w && w->rows == 24 && w->cols == 5);
    w = loom_params_find(m.ps, "peephole.peep_o_l1");
    cr_expect(w && w->rows == 1 && w->cols == 6);
    cr_expect_eq(loom_cell_find(&m.seq.cells[1], m.ps, "peep_f"), loom_params_find(m.ps, "peephole.peep_f_l1"));
    model_free(&m);
}
