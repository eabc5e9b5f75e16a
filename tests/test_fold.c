/* The folded embedding (loom_seq_embedding_folds): a fused layer whose input is gathered
 * from a small table projects the table once. Its loss and every gradient (the table, the
 * weights, the biases) match the same model with the fold broken (a scale by 1 between
 * the gather and the layer) for each fused cell, with row teams and without, ragged
 * lengths, two directions and frozen weights; the fold is seen to be taken (the
 * gathered rows never get a gradient) and not taken past the rule; recompute keeps
 * its bits; gradcheck passes through it. */
#include <omp.h>
#include <string.h>

#include "helpers.h"
#include "loom_layers.h"
#include "peephole.h"

typedef struct setup {
    const char *kind;
    int V, T, B;
    int ragged, bidir, row_teams_off, recompute;
    const char *frozen; /* a parameter to freeze, or NULL */
} setup;

enum { I = 6, H = 8, MAXB = 64 };

typedef struct model {
    setup u;
    loom_seq seq;
    loom_params *ps;
    loom_tensor *emb;
    int *idx, lengths[MAXB];
    loom_tape *t;
} model;

static void model_new(model *m, setup u)
{
    memset(m, 0, sizeof *m);
    m->u = u;
    loom_cell cells[2];
    for (int l = 0; l < 2; l++)
        if (strcmp(u.kind, "peephole") == 0) peephole_lstm_init(&cells[l], l ? H : I, H);
        else cr_assert_eq(loom_cell_init_kind(&cells[l], u.kind, l ? H : I, H), LOOM_OK, "%s", loom_error_message());
    cr_assert_eq(loom_seq_init(&m->seq, cells, 2, 0.0f), LOOM_OK, "%s", loom_error_message());
    if (u.row_teams_off) cr_assert_eq(loom_seq_set_row_teams(&m->seq, 0), LOOM_OK);
    if (u.bidir) cr_assert_eq(loom_seq_set_bidirectional(&m->seq, 1), LOOM_OK, "%s", loom_error_message());
    if (u.recompute) cr_assert_eq(loom_seq_set_recompute(&m->seq, u.recompute), LOOM_OK);
    cr_assert_not_null(m->ps = loom_params_new());
    cr_assert_not_null(m->emb = loom_params_add(m->ps, "emb", u.V, I, (loom_init){LOOM_INIT_NORMAL, 0.0f, 1.0f}));
    cr_assert_eq(loom_seq_declare(&m->seq, m->ps, "rnn"), LOOM_OK, "%s", loom_error_message());
    loom_rng r = loom_rng_init(3);
    cr_assert_eq(loom_params_alloc(m->ps, &r), LOOM_OK, "%s", loom_error_message());
    /* Biases away from zero, so their gradients and the table's bias are tested too. */
    for (int i = 0; i < loom_params_count(m->ps); i++) {
        loom_tensor *p = loom_params_view(m->ps, i);
        if (strstr(loom_params_name(m->ps, i), "bias")) loom_rng_fill_uniform(&r, p->data, loom_tensor_size(p), -0.5f, 0.5f);
    }
    if (u.frozen) cr_assert_eq(loom_params_freeze(m->ps, u.frozen, 1), LOOM_OK, "%s", loom_error_message());
    cr_assert_leq(u.B, MAXB);
    cr_assert_not_null(m->idx = malloc(sizeof(int) * (size_t)u.T * u.B));
    for (int i = 0; i < u.T * u.B; i++) m->idx[i] = (int)((i * 7 + i / 5) % u.V); /* every token, some repeated often */
    for (int b = 0; b < u.B; b++) m->lengths[b] = u.ragged && b % 3 ? 1 + (b * 5) % u.T : u.T;
    cr_assert_not_null(m->t = loom_tape_new(0));
}

static void model_free(model *m)
{
    loom_tape_free(m->t);
    free(m->idx);
    loom_seq_free(&m->seq);
    loom_params_free(m->ps);
}

static int broken; /* 1: a scale by 1 between the gather and the stack, so the layer cannot fold */
static loom_tensor *gathered; /* the last graph's gathered rows */

static loom_tensor *loss_fn(loom_tape *t, void *ctx)
{
    model *m = ctx;
    int T = m->u.T, B = m->u.B;
    loom_tensor *x = gathered = loom_op_embedding(t, m->emb, m->idx, T * B);
    if (broken) x = loom_op_scale(t, x, 1.0f);
    loom_seq_out o;
    if (loom_seq_forward(&m->seq, t, x, T, B, m->u.ragged ? m->lengths : NULL, 1, NULL, NULL, &o) != LOOM_OK) return NULL;
    loom_tensor *l = loom_op_add(t, project(t, o.y), project(t, o.h_last));
    return loom_op_add(t, l, project(t, o.last[o.n_last - 1])); /* the top layer's last part: an LSTM's c */
}

typedef struct result {
    float loss, *grad;
    size_t n;
    int folded; /* the gathered rows got no gradient: the layer took it past them */
} result;

static result run(model *m, int broken_fold)
{
    broken = broken_fold;
    loom_tape_reset(m->t);
    loom_params_zero_grad(m->ps);
    loom_tensor *l = loss_fn(m->t, m);
    cr_assert_not_null(l, "%s", loom_error_message());
    cr_assert_eq(loom_tape_backward(m->t, l), LOOM_OK, "%s", loom_error_message());
    result r = {.loss = l->data[0], .n = loom_params_size(m->ps), .folded = gathered->grad == NULL};
    cr_assert_not_null(r.grad = malloc(r.n * sizeof(float)));
    memcpy(r.grad, loom_params_grad(m->ps), r.n * sizeof(float));
    return r;
}

/* Folded against broken: the same loss and gradients within rounding, and the fold taken. */
static void matches(setup u)
{
    model m;
    model_new(&m, u);
    result f = run(&m, 0), b = run(&m, 1);
    if (m.emb->requires_grad) { /* a frozen table records no gather: nothing to fold */
        cr_assert(!b.folded, "%s: the broken graph's gathered rows got no gradient", u.kind);
        cr_assert(f.folded || u.bidir, "%s: V=%d, T*B=%d: the layer did not fold", u.kind, u.V, u.T * u.B);
    }
    cr_expect_float_eq(f.loss, b.loss, 1e-5f * (1.0f + fabsf(b.loss)), "%s: loss %g folded, %g not", u.kind, f.loss, b.loss);
    /* Row teams on the packed kernel project each row on it either way: the same chains, the same bits. */
    if (!u.row_teams_off && u.B >= 16 && omp_get_max_threads() >= 2 && loom_kernel_packed_fast() && loom_kernel_gemm_in_teams())
        cr_expect_eq(memcmp(&f.loss, &b.loss, sizeof f.loss), 0, "%s: loss %.9g folded, %.9g not: other bits", u.kind,
                     f.loss, b.loss);
    double worst = 0, norm = 0;
    size_t at = 0;
    for (size_t i = 0; i < f.n; i++) {
        double d = fabs((double)f.grad[i] - b.grad[i]) / (1e-3 + fabs(b.grad[i]));
        if (d > worst) worst = d, at = i;
        norm += fabs(b.grad[i]);
    }
    cr_assert_gt(norm, 0.0);
    /* the offset's parameter, for the message */
    const char *name = "?";
    for (int i = 0, off = 0; i < loom_params_count(m.ps); off += (int)loom_tensor_size(loom_params_view(m.ps, i)), i++)
        if (at >= (size_t)off) name = loom_params_name(m.ps, i);
    cr_expect_lt(worst, 1e-3, "%s: gradient at %zu (%s): %g folded, %g not (rel %g)", u.kind, at, name, f.grad[at],
                 b.grad[at], worst);
    if (u.frozen) { /* the frozen parameter took nothing */
        loom_tensor *p = loom_params_find(m.ps, u.frozen);
        float *g = loom_params_grad(m.ps) + (p->data - loom_params_data(m.ps));
        for (size_t i = 0; i < loom_tensor_size(p); i++) cr_assert_eq(g[i], 0.0f, "%s: frozen %s took a gradient", u.kind, u.frozen);
    }
    free(f.grad), free(b.grad);
    model_free(&m);
}

static const char *const KINDS[] = {"lstm", "gru", "rnn", "peephole"};

Test(fold, every_fused_cell_matches_the_unfolded_layer)
{
    for (int k = 0; k < 4; k++) {
        matches((setup){.kind = KINDS[k], .V = 11, .T = 7, .B = 16});                       /* row teams */
        matches((setup){.kind = KINDS[k], .V = 11, .T = 7, .B = 16, .row_teams_off = 1});   /* steps split */
        matches((setup){.kind = KINDS[k], .V = 5, .T = 9, .B = 3});                         /* one thread's rows */
        matches((setup){.kind = KINDS[k], .V = 11, .T = 20, .B = 64});                      /* blocks of 8 steps */
        matches((setup){.kind = KINDS[k], .V = 11, .T = 20, .B = 64, .row_teams_off = 1});
    }
}

Test(fold, ragged_two_directions_and_frozen_weights)
{
    matches((setup){.kind = "lstm", .V = 11, .T = 7, .B = 16, .ragged = 1});
    matches((setup){.kind = "gru", .V = 11, .T = 7, .B = 16, .ragged = 1, .row_teams_off = 1});
    matches((setup){.kind = "lstm", .V = 11, .T = 20, .B = 64, .ragged = 1});
    matches((setup){.kind = "lstm", .V = 11, .T = 7, .B = 16, .bidir = 1});
    matches((setup){.kind = "lstm", .V = 11, .T = 7, .B = 16, .frozen = "rnn.weight_ih_l0"});
    matches((setup){.kind = "gru", .V = 11, .T = 7, .B = 16, .frozen = "rnn.bias_ih_l0"});
    matches((setup){.kind = "lstm", .V = 11, .T = 7, .B = 16, .frozen = "emb"}); /* nothing to fold into: plain path */
}

Test(fold, the_rule_and_its_edge)
{
    cr_assert(loom_seq_embedding_folds(56, 112));
    cr_assert(!loom_seq_embedding_folds(57, 112));
    cr_assert(!loom_seq_embedding_folds(0, 112));
    model m;
    model_new(&m, (setup){.kind = "lstm", .V = 57, .T = 7, .B = 16});
    result r = run(&m, 0);
    cr_assert(!r.folded, "V=57 over 112 rows: folded, against the rule");
    free(r.grad);
    model_free(&m);
    model_new(&m, (setup){.kind = "lstm", .V = 56, .T = 7, .B = 16});
    r = run(&m, 0);
    cr_assert(r.folded, "V=56 over 112 rows: not folded, against the rule");
    free(r.grad);
    model_free(&m);
}

/* Recomputation makes the plain path's calls: with the fold too, the same bits. */
Test(fold, recompute_keeps_the_bits)
{
    for (int k = 0; k < 2; k++) {
        model a, b;
        model_new(&a, (setup){.kind = KINDS[k], .V = 11, .T = 20, .B = 64, .ragged = 1});
        model_new(&b, (setup){.kind = KINDS[k], .V = 11, .T = 20, .B = 64, .ragged = 1, .recompute = 3});
        result ra = run(&a, 0), rb = run(&b, 0);
        cr_assert(ra.folded && rb.folded);
        cr_assert_eq(memcmp(&ra.loss, &rb.loss, sizeof ra.loss), 0, "%s: loss %g plain, %g recomputed", KINDS[k], ra.loss,
                     rb.loss);
        cr_assert_eq(memcmp(ra.grad, rb.grad, ra.n * sizeof(float)), 0, "%s: recompute changed a gradient's bits", KINDS[k]);
        free(ra.grad), free(rb.grad);
        model_free(&a), model_free(&b);
    }
}

/* The same run twice: the same bits (the scatter in row order, whatever the split). */
Test(fold, deterministic)
{
    model m;
    model_new(&m, (setup){.kind = "lstm", .V = 11, .T = 7, .B = 16});
    result a = run(&m, 0), b = run(&m, 0);
    cr_assert_eq(memcmp(a.grad, b.grad, a.n * sizeof(float)), 0);
    free(a.grad), free(b.grad);
    model_free(&m);
}

static loom_tensor *folded_loss(loom_tape *t, void *ctx)
{
    broken = 0;
    return loss_fn(t, ctx);
}

Test(fold, gradcheck_through_the_table, .timeout = 120)
{
    model m;
    model_new(&m, (setup){.kind = "lstm", .V = 5, .T = 5, .B = 16, .ragged = 1});
    loom_tensor *wrt[3] = {m.emb, loom_params_find(m.ps, "rnn.weight_ih_l0"), loom_params_find(m.ps, "rnn.bias_ih_l0")};
    cr_assert(wrt[1] && wrt[2]);
    result r = run(&m, 0);
    cr_assert(r.folded);
    free(r.grad);
    expect_gradcheck(folded_loss, &m, wrt, 3, 2e-2, "folded lstm");
    model_free(&m);
}
