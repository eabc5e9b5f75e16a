/* Recomputation (loom_seq_set_recompute, issue 12 part 2): outputs, final states and
 * every gradient (parameters, input, initial state) equal the plain path's bit for bit
 * (memcmp) for every built-in cell and three user cells, fused and unrolled, one and two
 * directions, two layers with dropout, variable lengths, loom_seq_forward and
 * loom_seq_forward_from, many K, blocks split by segments and threaded kernels; a few
 * training steps stay equal; gradcheck with variable lengths; the tape's arena holds
 * far less; misuse is refused. */
#include <string.h>

#include "helpers.h"
#include "loom_layers.h"
#include "ind_cell.h"
#include "peephole.h"

/* ---------------------------------------------------------------- user cells with no fused form
 * ind_cell.h's IndRNN, and one that passes a state part through. */

/* Two parts, the second passed through unchanged (the same tensor): h = tanh(x W^T + b + u * h_prev + m). */
static loom_status keep_step(loom_cell *c, loom_tape *t, loom_tensor *x, loom_tensor *const *st, loom_tensor **next)
{
    loom_tensor *a = loom_op_add(t, loom_linear_apply(t, x, c->w[0], c->w[2]), loom_op_mul(t, st[0], c->w[1]));
    next[0] = loom_op_tanh(t, loom_op_add(t, a, st[1]));
    next[1] = st[1];
    return loom_tape_status(t);
}

static void user_init(loom_cell *c, const char *name, int input, int hidden)
{
    memset(c, 0, sizeof *c);
    snprintf(c->name, sizeof c->name, "%s", name);
    c->input_size = input, c->hidden_size = hidden;
    c->declare = ind_declare;
    c->n_state = strcmp(name, "keep") == 0 ? 2 : 1;
    c->step = c->n_state == 2 ? keep_step : ind_step;
}

static void cell_init(loom_cell *c, const char *kind, int input, int hidden)
{
    if (strcmp(kind, "peephole") == 0) peephole_lstm_init(c, input, hidden);
    else if (strcmp(kind, "ind") == 0 || strcmp(kind, "keep") == 0) user_init(c, kind, input, hidden);
    else cr_assert_eq(loom_cell_init_kind(c, kind, input, hidden), LOOM_OK, "%s", loom_error_message());
}

/* ---------------------------------------------------------------- one forward and backward */

enum { MAXP = 16, MAXB = 1024 };

typedef struct setup {
    const char *kind;
    int fused, bidir, layers, T, B, I, H;
    float dropout;
    int from;       /* 1: loom_seq_forward_from with initial states that need a gradient; 0: loom_seq_forward */
    int ragged;     /* variable lengths */
    const char *frozen; /* a parameter to freeze, or NULL */
    int steps_split;    /* 1: loom_seq_set_row_teams(0), each step split over the threads */
} setup;

typedef struct model {
    setup u;
    loom_seq seq;
    loom_params *ps;
    loom_tensor *x, *init[MAXP];
    loom_state *state;
    int n_init, lengths[MAXB];
} model;

static void model_new(model *m, setup u)
{
    memset(m, 0, sizeof *m);
    m->u = u;
    loom_cell cells[2];
    for (int l = 0; l < u.layers; l++) cell_init(&cells[l], u.kind, l ? u.H : u.I, u.H);
    cr_assert_eq(loom_seq_init(&m->seq, cells, u.layers, u.dropout), LOOM_OK, "%s", loom_error_message());
    m->seq.fused = u.fused;
    if (u.steps_split) cr_assert_eq(loom_seq_set_row_teams(&m->seq, 0), LOOM_OK);
    if (u.bidir) cr_assert_eq(loom_seq_set_bidirectional(&m->seq, 1), LOOM_OK, "%s", loom_error_message());
    cr_assert_not_null(m->ps = loom_params_new());
    cr_assert_eq(loom_seq_declare(&m->seq, m->ps, u.kind), LOOM_OK, "%s", loom_error_message());
    loom_rng r = loom_rng_init(11);
    cr_assert_eq(loom_params_alloc(m->ps, &r), LOOM_OK, "%s", loom_error_message());
    if (u.frozen) cr_assert_eq(loom_params_freeze(m->ps, u.frozen, 1), LOOM_OK, "%s", loom_error_message());
    m->x = rand_tensor(u.T * u.B, u.I, 1, 5, -1.0f, 1.0f);
    m->n_init = loom_seq_state_count(&m->seq);
    cr_assert_leq(m->n_init, MAXP);
    for (int i = 0; i < m->n_init; i++)
        m->init[i] = rand_tensor(u.B, m->seq.cells[0].hidden_size, 1, 100 + (uint64_t)i, -0.5f, 0.5f);
    cr_assert_not_null(m->state = loom_state_new(&m->seq, u.B));
    size_t n;
    float *sd = loom_state_data(m->state, &n);
    loom_rng rs = loom_rng_init(77);
    loom_rng_fill_uniform(&rs, sd, n, -0.5f, 0.5f);
    cr_assert_leq(u.B, MAXB);
    for (int b = 0; b < u.B; b++) m->lengths[b] = u.ragged ? (b % 3 == 1 ? 1 + (b * 7) % u.T : b % 3 == 2 ? u.T / 2 : u.T) : u.T;
}

static void model_free(model *m)
{
    loom_tensor_free(m->x);
    for (int i = 0; i < m->n_init; i++) loom_tensor_free(m->init[i]);
    loom_state_free(m->state);
    loom_seq_free(&m->seq);
    loom_params_free(m->ps);
}

/* Everything a run gives, copied out. */
typedef struct result {
    float *y, *hl, *last, *pg, *xg, *ig;
    size_t ny, nhl, nlast, npg, nxg, nig;
} result;

static float *grab(const float *src, size_t n)
{
    float *d = malloc((n ? n : 1) * sizeof *d);
    cr_assert_not_null(d);
    if (n) memcpy(d, src, n * sizeof *d);
    return d;
}

static int final_c_only; /* 1: the loss reads the top layer's final c alone */

/* A loss that reads y twice, h_last and every final state part, so gradients meet at every end. */
static loom_tensor *loss_of(loom_tape *t, const loom_seq_out *o)
{
    if (final_c_only) return project(t, o->last[o->n_last - 1]);
    loom_tensor *l = loom_op_add(t, project(t, o->y), loom_op_mean(t, loom_op_mul(t, o->y, o->y)));
    l = loom_op_add(t, l, project(t, o->h_last));
    for (int i = 0; i < o->n_last; i++) l = loom_op_add(t, l, loom_op_scale(t, project(t, o->last[i]), 0.5f));
    return l;
}

static result run(model *m, int K, int threads)
{
    int old = loom_threads_get();
    loom_threads_set(threads);
    cr_assert_eq(loom_seq_set_recompute(&m->seq, K), LOOM_OK, "%s", loom_error_message());
    loom_params_zero_grad(m->ps);
    loom_tensor_zero_grad(m->x);
    for (int i = 0; i < m->n_init; i++) loom_tensor_zero_grad(m->init[i]);
    loom_tape *t = loom_tape_new(0);
    loom_rng rng = loom_rng_init(9);
    loom_seq_out o;
    const setup *u = &m->u;
    loom_status st = u->from ? loom_seq_forward_from(&m->seq, t, m->x, u->T, u->B, u->ragged ? m->lengths : NULL, 1, m->init,
                                                     &rng, &o)
                             : loom_seq_forward(&m->seq, t, m->x, u->T, u->B, u->ragged ? m->lengths : NULL, 1, m->state,
                                                &rng, &o);
    cr_assert_eq(st, LOOM_OK, "%s K=%d: %s", u->kind, K, loom_error_message());
    loom_tensor *loss = loss_of(t, &o);
    cr_assert_not_null(loss, "%s", loom_error_message());
    cr_assert_eq(loom_tape_backward(t, loss), LOOM_OK, "%s K=%d: %s", u->kind, K, loom_error_message());
    result r = {0};
    r.ny = loom_tensor_size(o.y), r.y = grab(o.y->data, r.ny);
    r.nhl = loom_tensor_size(o.h_last), r.hl = grab(o.h_last->data, r.nhl);
    r.nlast = (size_t)o.n_last * u->B * u->H, r.last = malloc(r.nlast * sizeof(float));
    size_t BH = (size_t)u->B * u->H;
    for (int i = 0; i < o.n_last; i++) memcpy(r.last + i * BH, o.last[i]->data, BH * sizeof(float));
    r.npg = loom_params_size(m->ps), r.pg = grab(loom_params_grad(m->ps), r.npg);
    r.nxg = loom_tensor_size(m->x), r.xg = grab(m->x->grad, r.nxg);
    r.nig = u->from ? (size_t)m->n_init * u->B * u->H : 0, r.ig = malloc((r.nig ? r.nig : 1) * sizeof(float));
    for (int i = 0; u->from && i < m->n_init; i++) memcpy(r.ig + i * BH, m->init[i]->grad, BH * sizeof(float));
    loom_tape_free(t);
    loom_threads_set(old);
    return r;
}

static void result_free(result *r)
{
    free(r->y), free(r->hl), free(r->last), free(r->pg), free(r->xg), free(r->ig);
}

static void expect_same(const char *what, const float *a, const float *b, size_t n, const char *cfg, int K)
{
    if (memcmp(a, b, n * sizeof(float)) == 0) return;
    size_t first = 0;
    double worst = 0;
    for (size_t i = n; i-- > 0;)
        if (memcmp(&a[i], &b[i], sizeof(float)) != 0) first = i, worst = fmax(worst, fabs((double)a[i] - b[i]));
    cr_expect_fail("%s K=%d: %s differs from the plain path's (first at %zu: %.9g vs %.9g; largest difference %g)", cfg, K,
                   what, first, a[first], b[first], worst);
}

/* The plain run against recompute at each K. */
static void compare(setup u, const int *Ks, int nK, int threads)
{
    model m;
    model_new(&m, u);
    char cfg[160];
    snprintf(cfg, sizeof cfg, "%s %s%s, %d layers, T=%d B=%d H=%d, %s%s%s", u.kind, u.fused ? "fused" : "unrolled",
             u.bidir ? " bidirectional" : "", u.layers, u.T, u.B, u.H, u.from ? "forward_from" : "forward",
             u.ragged ? ", variable lengths" : "", u.frozen ? ", one frozen" : "");
    result p = run(&m, 0, threads);
    double gsum = 0;
    for (size_t i = 0; i < p.npg; i++) gsum += fabs(p.pg[i]);
    cr_assert_gt(gsum, 0.0, "%s: the plain path gave no gradient at all", cfg);
    for (int i = 0; i < nK; i++) {
        result r = run(&m, Ks[i], threads);
        expect_same("y", p.y, r.y, p.ny, cfg, Ks[i]);
        expect_same("h_last", p.hl, r.hl, p.nhl, cfg, Ks[i]);
        expect_same("the final states", p.last, r.last, p.nlast, cfg, Ks[i]);
        expect_same("the parameters' gradient", p.pg, r.pg, p.npg, cfg, Ks[i]);
        expect_same("the input's gradient", p.xg, r.xg, p.nxg, cfg, Ks[i]);
        expect_same("the initial state's gradient", p.ig, r.ig, p.nig, cfg, Ks[i]);
        result_free(&r);
    }
    result_free(&p);
    model_free(&m);
}

static const int KS[] = {1, 2, 3, 5, 12, 13, 40};

static void every_way(const char *kind, int fused)
{
    for (int bidir = 0; bidir < 2; bidir++)
        for (int from = 0; from < 2; from++)
            compare((setup){kind, fused, bidir, 2, 13, 3, 4, 5, 0.3f, from, 1, NULL, 0}, KS, 7, 1);
    compare((setup){kind, fused, 0, 1, 13, 3, 4, 5, 0.0f, 0, 0, NULL, 0}, KS, 7, 1);
}

Test(recompute, lstm_bit_identical) { every_way("lstm", 1), every_way("lstm", 0); }
Test(recompute, gru_bit_identical) { every_way("gru", 1), every_way("gru", 0); }
Test(recompute, rnn_bit_identical) { every_way("rnn", 1), every_way("rnn_relu", 0); }
Test(recompute, peephole_user_cell_bit_identical) { every_way("peephole", 1), every_way("peephole", 0); }
Test(recompute, step_only_user_cells_bit_identical) { every_way("ind", 1), every_way("keep", 1); }

/* A gradient that enters through the final c alone (the fused layer keeps c apart from
 * the tape's h) still walks the whole window back: fused, plain and recomputed, against
 * the unrolled layer. */
Test(recompute, gradient_from_the_final_cell_state_alone)
{
    final_c_only = 1;
    result r[3];
    for (int v = 0; v < 3; v++) {
        model m;
        model_new(&m, (setup){"lstm", v < 2, 0, 2, 9, 4, 3, 5, 0.0f, 1, 0, NULL, 0});
        r[v] = run(&m, v == 1 ? 4 : 0, 1);
        model_free(&m);
    }
    final_c_only = 0;
    expect_same("the parameters' gradient", r[1].pg, r[0].pg, r[0].npg, "lstm, final c only", 4);
    expect_same("the initial states' gradient", r[1].ig, r[0].ig, r[0].nig, "lstm, final c only", 4);
    double worst = 0, norm = 0, inorm = 0;
    for (size_t i = 0; i < r[0].npg; i++) worst = fmax(worst, fabs((double)r[0].pg[i] - r[2].pg[i])), norm += fabs(r[2].pg[i]);
    for (size_t i = 0; i < r[0].nig; i++) worst = fmax(worst, fabs((double)r[0].ig[i] - r[2].ig[i])), inorm += fabs(r[2].ig[i]);
    cr_expect_gt(norm, 0.0, "no gradient reached the parameters");
    cr_expect_gt(inorm, 0.0, "no gradient reached the initial states");
    cr_expect_leq(worst, 1e-5, "fused and unrolled gradients differ by %g", worst);
    for (int v = 0; v < 3; v++) result_free(&r[v]);
}

Test(recompute, frozen_parameters_bit_identical)
{
    compare((setup){"lstm", 1, 1, 2, 13, 3, 4, 5, 0.3f, 1, 1, "lstm.weight_hh_l0", 0}, KS, 7, 1);
    compare((setup){"peephole", 1, 0, 2, 13, 3, 4, 5, 0.3f, 1, 1, "peephole.peep_f_l1", 0}, KS, 7, 1);
    compare((setup){"ind", 0, 0, 2, 13, 3, 4, 5, 0.3f, 1, 1, "ind.u_l0", 0}, KS, 7, 1);
}

/* B = 130 makes the fused layer's GEMM blocks 4 steps, so segments start and end inside
 * blocks. On two threads each thread owns rows for whole blocks (row teams, the default);
 * with them off, B = 1024 with H = 64 (B*H = LOOM_PAR_MIN) splits each kernel call over
 * the two threads. */
Test(recompute, segments_across_blocks_and_threads)
{
    static const int ks[] = {1, 3, 5, 6, 7};
    compare((setup){"lstm", 1, 0, 2, 19, 130, 3, 6, 0.3f, 1, 1, NULL, 0}, ks, 5, 2);
    compare((setup){"gru", 1, 1, 1, 19, 130, 3, 6, 0.0f, 0, 1, NULL, 0}, ks, 5, 2);
    compare((setup){"peephole", 1, 0, 1, 9, 520, 3, 32, 0.0f, 1, 1, NULL, 0}, ks, 3, 2);
    compare((setup){"lstm", 1, 0, 2, 19, 130, 3, 6, 0.3f, 1, 1, NULL, 1}, ks, 5, 2);
    compare((setup){"gru", 1, 1, 1, 19, 130, 3, 6, 0.0f, 0, 1, NULL, 1}, ks, 5, 2);
    compare((setup){"peephole", 1, 0, 1, 9, 1024, 3, 64, 0.0f, 1, 1, NULL, 1}, ks, 3, 2);
}

/* Evaluation (recording off, no dropout): the same outputs, and nothing recorded. */
Test(recompute, inference_without_recording)
{
    static const char *const kinds[] = {"lstm", "ind"};
    for (int i = 0; i < 2; i++) {
        model m;
        model_new(&m, (setup){kinds[i], 1, 1, 2, 13, 3, 4, 5, 0.3f, 0, 1, NULL, 0});
        float *y[2];
        size_t n = 0;
        for (int r = 0; r < 2; r++) {
            cr_assert_eq(loom_seq_set_recompute(&m.seq, r ? 4 : 0), LOOM_OK);
            loom_tape *t = loom_tape_new(0);
            loom_tape_set_nograd(t, 1);
            loom_seq_out o;
            cr_assert_eq(loom_seq_forward(&m.seq, t, m.x, 13, 3, m.lengths, 0, m.state, NULL, &o), LOOM_OK, "%s",
                         loom_error_message());
            cr_expect_eq(loom_tape_length(t), 0, "%s: %d nodes recorded with recording off", kinds[i], loom_tape_length(t));
            n = loom_tensor_size(o.y);
            y[r] = grab(o.y->data, n);
            loom_tape_free(t);
        }
        cr_expect(memcmp(y[0], y[1], n * sizeof(float)) == 0, "%s: outputs differ with K=4 and recording off", kinds[i]);
        free(y[0]), free(y[1]);
        model_free(&m);
    }
}

/* ---------------------------------------------------------------- training steps */

/* Adam steps with a carried state and dropout: the parameters stay equal bit for bit. */
static void train(const char *kind, int fused, int K, float *out, size_t n)
{
    model m;
    model_new(&m, (setup){kind, fused, 0, 2, 12, 4, 3, 6, 0.3f, 0, 1, NULL, 0});
    cr_assert_eq(loom_params_size(m.ps), n);
    cr_assert_eq(loom_seq_set_recompute(&m.seq, K), LOOM_OK);
    loom_optim o;
    cr_assert_eq(loom_optim_init(&o, loom_optim_defaults(LOOM_ADAM), n), LOOM_OK);
    loom_tape *t = loom_tape_new(0);
    loom_rng rng = loom_rng_init(5);
    for (int s = 0; s < 4; s++) {
        loom_tape_reset(t);
        loom_params_zero_grad(m.ps);
        loom_seq_out so;
        cr_assert_eq(loom_seq_forward(&m.seq, t, m.x, 12, 4, m.lengths, 1, m.state, &rng, &so), LOOM_OK, "%s",
                     loom_error_message());
        cr_assert_eq(loom_tape_backward(t, loss_of(t, &so)), LOOM_OK, "%s", loom_error_message());
        loom_optim_step(&o, loom_params_data(m.ps), loom_params_grad(m.ps), 1e-2f);
        cr_assert_eq(loom_state_store(m.state, &so), LOOM_OK);
    }
    memcpy(out, loom_params_data(m.ps), n * sizeof(float));
    loom_tape_free(t);
    loom_optim_free(&o);
    model_free(&m);
}

Test(recompute, training_steps_bit_identical)
{
    static const char *const kinds[] = {"lstm", "peephole", "ind"};
    for (int i = 0; i < 3; i++) {
        model m;
        model_new(&m, (setup){kinds[i], 1, 0, 2, 12, 4, 3, 6, 0.3f, 0, 1, NULL, 0});
        size_t n = loom_params_size(m.ps);
        model_free(&m);
        float *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b);
        train(kinds[i], 1, 0, a, n);
        train(kinds[i], 1, 5, b, n);
        cr_expect(memcmp(a, b, n * sizeof *a) == 0, "%s: the parameters after 4 Adam steps differ with K=5", kinds[i]);
        free(a), free(b);
    }
}

/* ---------------------------------------------------------------- gradcheck */

typedef struct gc {
    model m;
} gc;

static loom_tensor *gc_loss(loom_tape *t, void *ctx)
{
    model *m = &((gc *)ctx)->m;
    loom_seq_out o;
    loom_rng rng = loom_rng_init(3);
    if (loom_seq_forward_from(&m->seq, t, m->x, m->u.T, m->u.B, m->lengths, 1, m->init, &rng, &o) != LOOM_OK) return NULL;
    return loss_of(t, &o);
}

static void gradcheck(setup u, int K)
{
    static gc g;
    model_new(&g.m, u);
    cr_assert_eq(loom_seq_set_recompute(&g.m.seq, K), LOOM_OK);
    loom_gradcheck_result res;
    cr_assert_eq(loom_gradcheck_params(gc_loss, &g, g.m.ps, 0.0f, 1e-2, &res), LOOM_OK, "%s", loom_error_message());
    char line[256];
    loom_gradcheck_format(&res, line, sizeof line);
    cr_expect_lt(res.worst_rel_err, 1e-2, "%s K=%d: %s", u.kind, K, line);
    loom_tensor *wrt[MAXP + 1] = {g.m.x};
    for (int i = 0; i < g.m.n_init; i++) wrt[1 + i] = g.m.init[i];
    expect_gradcheck(gc_loss, &g, wrt, 1 + g.m.n_init, 1e-2, u.kind);
    model_free(&g.m);
}

Test(recompute, gradcheck_variable_lengths, .timeout = 120)
{
    gradcheck((setup){"lstm", 1, 0, 2, 7, 3, 2, 3, 0.3f, 1, 1, NULL, 0}, 3);
    gradcheck((setup){"gru", 1, 1, 1, 7, 3, 2, 3, 0.0f, 1, 1, NULL, 0}, 2);
    gradcheck((setup){"ind", 0, 1, 2, 7, 3, 2, 3, 0.3f, 1, 1, NULL, 0}, 3);
}

/* ---------------------------------------------------------------- memory */

/* Arena bytes of one forward and backward (the main tape's, plus the scratch tape's reserve). */
static size_t arena_bytes(const char *kind, int fused, int T, int B, int K)
{
    model m;
    model_new(&m, (setup){kind, fused, 0, 1, T, B, 8, 32, 0.0f, 0, 0, NULL, 0});
    cr_assert_eq(loom_seq_set_recompute(&m.seq, K), LOOM_OK);
    loom_tape *t = loom_tape_new(0);
    loom_seq_out o;
    cr_assert_eq(loom_seq_forward(&m.seq, t, m.x, T, B, NULL, 1, NULL, NULL, &o), LOOM_OK, "%s", loom_error_message());
    cr_assert_eq(loom_tape_backward(t, loom_op_mean(t, o.y)), LOOM_OK, "%s", loom_error_message());
    size_t used = loom_arena_used(loom_tape_arena(t));
    if (m.seq.scratch) used += loom_arena_capacity(loom_tape_arena(m.seq.scratch));
    cr_expect_eq(!!m.seq.scratch, K > 0 && !fused, "the scratch tape is made only for unfused layers that recompute");
    loom_tape_free(t);
    model_free(&m);
    return used;
}

Test(recompute, arena_usage_falls)
{
    /* T = 400, B = 64 (8-step blocks), K = 20: the fused layer keeps h at every step (y, and its
     * gradient) and little else, where the plain path keeps gates, c, tanh(c) and their gradients. */
    size_t plain = arena_bytes("lstm", 1, 400, 64, 0), rc = arena_bytes("lstm", 1, 400, 64, 20);
    cr_expect_lt(rc * 5, plain * 2, "fused LSTM: %zu bytes with K=20 against %zu plain: under 40%% expected", rc, plain);
    size_t uplain = arena_bytes("lstm", 0, 200, 4, 0), urc = arena_bytes("lstm", 0, 200, 4, 14);
    cr_expect_lt(urc * 3, uplain, "unrolled LSTM: %zu bytes with K=14 (scratch included) against %zu plain: a third expected", urc,
                 uplain);
}

/* ---------------------------------------------------------------- misuse */

Test(recompute, bad_K_and_stack_refused)
{
    loom_seq s = {0};
    cr_expect_eq(loom_seq_set_recompute(&s, 4), LOOM_ESTATE);
    cr_expect(strstr(loom_error_message(), "not initialised"), "%s", loom_error_message());
    loom_cell c;
    loom_lstm_init(&c, 2, 3, 0.0f);
    cr_assert_eq(loom_seq_init(&s, &c, 1, 0.0f), LOOM_OK);
    cr_expect_eq(loom_seq_set_recompute(&s, -3), LOOM_EARG);
    cr_expect(strstr(loom_error_message(), "K = -3"), "%s", loom_error_message());
    cr_expect_eq(s.recompute, 0, "a refused K is not kept");
    cr_expect_eq(loom_seq_set_recompute(&s, 7), LOOM_OK);
    cr_expect_eq(s.recompute, 7);
    cr_expect_eq(loom_seq_set_recompute(&s, 0), LOOM_OK);
    cr_expect_eq(s.recompute, 0);
    loom_seq_free(&s);
}

/* ---------------------------------------------------------------- row teams' uneven splits */

/* layers/team.c, internal: the relative time per row of each team slot, which sets the split. */
void loom_team_set_times(const float *times, int n);
void loom_team_get_times(float *times, int n);
void loom_team_rows(int team, int B, int adapt, int *rows);
void loom_team_learn(int team, const int *rows, const double *busy);

/* A slot that took longer per row gets fewer rows next time; without adapt, or unmeasured,
 * the split is even. */
Test(row_teams, split_follows_the_measured_speed)
{
    int rows[4];
    loom_team_set_times(NULL, 0);
    loom_team_rows(2, 50, 1, rows);
    cr_expect(rows[0] == 0 && rows[1] == 25 && rows[2] == 50, "unmeasured: %d %d %d", rows[0], rows[1], rows[2]);
    loom_team_learn(2, rows, (double[]){1.0, 1.2});
    loom_team_rows(2, 50, 1, rows);
    cr_expect_eq(rows[1], 26, "slot 1 took 20%% longer: slot 0 should get 26 rows, got %d", rows[1]);
    loom_team_rows(2, 50, 0, rows);
    cr_expect_eq(rows[1], 25, "without adapt the split is even, got %d", rows[1]);
    for (int i = 0; i < 40; i++) { /* a lasting difference: the split settles in proportion, within the clamp */
        loom_team_rows(2, 60, 1, rows);
        loom_team_learn(2, rows, (double[]){1.0 * (rows[1] - rows[0]), 2.0 * (rows[2] - rows[1])});
    }
    loom_team_rows(2, 60, 1, rows);
    cr_expect(rows[1] >= 39 && rows[1] <= 41, "slot 1 twice as slow: slot 0 should settle near 40 of 60, got %d", rows[1]);
    loom_team_set_times((const float[]){1.0f, 1.0f}, 2); /* one region's outlier moves a slot's time 6% at most */
    loom_team_learn(2, (const int[]){0, 30, 60}, (const double[]){1.0, 10.0});
    float t[2];
    loom_team_get_times(t, 2);
    cr_expect(t[1] / t[0] < 1.14f, "one slow region moved the times to %g and %g", t[0], t[1]);
    loom_team_set_times((const float[]){1.0f, 1.0f, 1.0f}, 3); /* no time from a slot without rows: nothing learned */
    loom_team_learn(3, (const int[]){0, 4, 4, 9}, (const double[]){1.0, 0.0, 2.0});
    loom_team_rows(3, 9, 1, rows);
    cr_expect(rows[1] == 3 && rows[2] == 6, "a slot without rows changed the split: %d %d", rows[1], rows[2]);
}

/* A cell's forward kernel, counting the widest row range the layer gave it. */
static loom_cell_kernel_fn own_kernel;
static int widest;
static void counting_kernel(const loom_cell *c, const loom_cell_tile *tl, int r0, int r1)
{
    if (r1 - r0 > widest) widest = r1 - r0;
    own_kernel(c, tl, r0, r1);
}

/* The fused layer's row teams split by measured speed (above); a row's results never depend
 * on which thread ran it, so a skewed split gives the even split's bits, plain and
 * recomputed, and the layer reports its threads' times. */
Test(row_teams, uneven_split_moves_no_bit)
{
    static const char *const kinds[] = {"lstm", "gru", "peephole"};
    for (int i = 0; i < 3; i++)
        for (int K = 0; K <= 4; K += 4) {
            model m;
            model_new(&m, (setup){kinds[i], 1, 0, 2, 9, 64, 3, 16, 0.0f, 1, 1, NULL, 0});
            own_kernel = m.seq.cells[0].forward, m.seq.cells[0].forward = counting_kernel;
            loom_team_set_times(NULL, 0);
            result even = run(&m, K, 2);
            loom_team_set_times((const float[]){0.5f, 2.0f}, 2); /* slot 0 gets 51 of 64 rows at first */
            widest = 0;
            result skew = run(&m, K, 2);
            /* Row teams on the packed kernel (the only path that adapts) on two threads: 32 rows each if even. */
            if (loom_kernel_packed_fast() && loom_kernel_gemm_in_teams())
                cr_expect_eq(widest, 51, "%s: the layer ran at most %d rows on a thread, not the 51 the times give", kinds[i],
                             widest);
            char cfg[64];
            snprintf(cfg, sizeof cfg, "%s, row team split 51/13 at first", kinds[i]);
            expect_same("y", even.y, skew.y, even.ny, cfg, K);
            expect_same("the final states", even.last, skew.last, even.nlast, cfg, K);
            expect_same("the parameters' gradient", even.pg, skew.pg, even.npg, cfg, K);
            expect_same("the input's gradient", even.xg, skew.xg, even.nxg, cfg, K);
            expect_same("the initial state's gradient", even.ig, skew.ig, even.nig, cfg, K);
            result_free(&even), result_free(&skew);
            model_free(&m);
        }
}
