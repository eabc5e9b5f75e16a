/* Recurrent cells and the sequence layer: gradcheck through time with
 * variable lengths, fused == primitive, truncated BPTT carry and detach. */
#include <string.h>

#include "helpers.h"
#include "loom_layers.h"

typedef struct model {
    loom_params *ps;
    loom_seq seq;
    loom_state *st; /* the initial state */
    loom_tensor *x;
    int T, B, layers;
    int lengths[4];
    int use_lengths;
} model;

static void model_init(model *m, const char *kind, int layers, int I, int H, int T, int B, int fused)
{
    memset(m, 0, sizeof *m);
    loom_cell cells[16];
    cr_assert_leq(layers, 16);
    for (int l = 0; l < layers; l++) cr_assert_eq(loom_cell_init_kind(&cells[l], kind, l ? H : I, H), LOOM_OK);
    cr_assert_eq(loom_seq_init(&m->seq, cells, layers, 0.0f), LOOM_OK, "%s", loom_error_message());
    m->seq.fused = fused;
    m->ps = loom_params_new();
    cr_assert_eq(loom_seq_declare(&m->seq, m->ps, kind), LOOM_OK, "%s", loom_error_message());
    loom_rng r = loom_rng_init(17);
    cr_assert_eq(loom_params_alloc(m->ps, &r), LOOM_OK);
    cr_assert_not_null(m->st = loom_state_new(&m->seq, B), "%s", loom_error_message());
    m->x = rand_tensor(T * B, I, 1, 18, -1, 1);
    m->T = T, m->B = B, m->layers = layers;
    int lens[4] = {T, 2, T - 1, 1};
    memcpy(m->lengths, lens, sizeof lens);
}

static void model_free(model *m)
{
    loom_state_free(m->st);
    loom_seq_free(&m->seq);
    loom_params_free(m->ps);
    loom_tensor_free(m->x);
}

/* Many-to-many and many-to-one losses together, with padded steps weighted 0. */
static loom_tensor *seq_loss(loom_tape *t, void *ctx)
{
    model *m = ctx;
    loom_seq_out o;
    const int *lens = m->use_lengths ? m->lengths : NULL;
    if (loom_seq_forward(&m->seq, t, m->x, m->T, m->B, lens, 1, m->st, NULL, &o) != LOOM_OK) return NULL;
    float *w = loom_arena_alloc(loom_tape_arena(t), sizeof(float) * m->T * m->B);
    loom_seq_length_weights(lens, m->T, m->B, w);
    loom_tensor *wt = loom_tape_tensor(t, m->T * m->B, o.y->cols);
    for (int r = 0; r < m->T * m->B; r++)
        for (int j = 0; j < o.y->cols; j++) wt->data[r * o.y->cols + j] = w[r] * (float)((r * 7 + j * 3) % 5 - 2) * 0.5f;
    loom_tensor *a = loom_op_sum(t, loom_op_mul(t, o.y, wt));
    return loom_op_add(t, a, project(t, o.h_last));
}

static void gradcheck_cell(const char *kind, int layers, int fused)
{
    model m;
    model_init(&m, kind, layers, 3, 4, 5, 4, fused);
    m.use_lengths = 1;
    /* A nonzero carried state exercises the initial-state path too. */
    size_t ns;
    float *s0 = loom_state_data(m.st, &ns);
    for (size_t i = 0; i < ns; i++) s0[i] = 0.3f * (float)((int)(i % 7) - 3) / 3.0f;
    loom_tensor *wrt[64];
    cr_assert_lt(loom_params_count(m.ps), 64);
    int n = 0;
    for (int i = 0; i < loom_params_count(m.ps); i++) wrt[n++] = loom_params_view(m.ps, i);
    wrt[n++] = m.x;
    char what[64];
    snprintf(what, sizeof what, "%s x%d %s", kind, layers, fused ? "fused" : "primitive");
    expect_gradcheck(seq_loss, &m, wrt, n, 1e-2, what);
    model_free(&m);
}

/* Two layers, five steps, lengths 5/2/4/1, a nonzero initial state; fused and unrolled. */
Test(cells, gradcheck_lstm) { gradcheck_cell("lstm", 2, 1), gradcheck_cell("lstm", 2, 0); }
Test(cells, gradcheck_gru) { gradcheck_cell("gru", 2, 1), gradcheck_cell("gru", 2, 0); }
Test(cells, gradcheck_rnn) { gradcheck_cell("rnn", 2, 1), gradcheck_cell("rnn", 2, 0); }
/* gradcheck skips the elements whose step crosses relu's kink (and counts them). */
Test(cells, gradcheck_rnn_relu) { gradcheck_cell("rnn_relu", 2, 1), gradcheck_cell("rnn_relu", 2, 0); }

static double rel(double a, double b) { return fabs(a - b) / fmax(1e-12, fmax(fabs(a), fabs(b))); }

/* Runs seq_loss once and returns the loss; gradients land in ps and x. */
static float run_once(model *m)
{
    loom_tape *t = loom_tape_new(0);
    loom_params_zero_grad(m->ps);
    loom_tensor_zero_grad(m->x);
    loom_tensor *l = seq_loss(t, m);
    cr_assert_not_null(l, "%s", loom_error_message());
    cr_assert_eq(loom_tape_backward(t, l), LOOM_OK, "%s", loom_error_message());
    float v = l->data[0];
    loom_tape_free(t);
    return v;
}

/* Clears requires_grad on the parameters whose names contain one of the parts ("" matches
 * none), and on the input x when frozen_x, in both models. */
static void freeze(model *a, model *b, const char *const *parts, int n, int frozen_x)
{
    for (int k = 0; k < loom_params_count(a->ps); k++)
        for (int i = 0; i < n; i++)
            if (parts[i][0] && strstr(loom_params_name(a->ps, k), parts[i])) {
                cr_assert_eq(loom_params_freeze(a->ps, loom_params_name(a->ps, k), 1), LOOM_OK);
                cr_assert_eq(loom_params_freeze(b->ps, loom_params_name(b->ps, k), 1), LOOM_OK);
            }
    if (frozen_x) a->x->requires_grad = b->x->requires_grad = 0;
}

static void fused_matches_primitive_frozen(const char *kind, const char *const *parts, int n, int frozen_x)
{
    model a, b;
    model_init(&a, kind, 2, 13, 24, 9, 4, 1);
    model_init(&b, kind, 2, 13, 24, 9, 4, 0);
    a.use_lengths = b.use_lengths = 1;
    freeze(&a, &b, parts, n, frozen_x);
    float la = run_once(&a), lb = run_once(&b);
    cr_expect_lt(rel(la, lb), 1e-5, "%s loss %.9g vs %.9g", kind, la, lb);
    /* Relative to each buffer's largest gradient: the two paths sum in different orders. */
    double worst = 0;
    for (int k = 0; k <= loom_params_count(a.ps); k++) {
        loom_tensor *ta = k < loom_params_count(a.ps) ? loom_params_view(a.ps, k) : a.x;
        loom_tensor *tb = k < loom_params_count(b.ps) ? loom_params_view(b.ps, k) : b.x;
        double scale = 0;
        for (size_t i = 0; i < loom_tensor_size(tb); i++) scale = fmax(scale, fabs(tb->grad[i]));
        for (size_t i = 0; i < loom_tensor_size(ta); i++)
            worst = fmax(worst, fabs(ta->grad[i] - tb->grad[i]) / fmax(scale, 1e-12));
    }
    cr_expect_lt(worst, 1e-5, "%s (frozen: %s%s): worst gradient difference %g of the largest gradient", kind,
                 n ? parts[0] : "none", n > 1 ? " and more" : "", worst);
    /* A frozen parameter gets no gradient on either path, and the others get the
     * gradients of the run with nothing frozen. */
    model u;
    model_init(&u, kind, 2, 13, 24, 9, 4, 1);
    u.use_lengths = 1;
    run_once(&u);
    for (int k = 0; k < loom_params_count(a.ps); k++) {
        loom_tensor *ta = loom_params_view(a.ps, k), *tu = loom_params_view(u.ps, k);
        double mx = 0, diff = 0;
        for (size_t i = 0; i < loom_tensor_size(ta); i++)
            mx = fmax(mx, fabs(tu->grad[i])), diff = fmax(diff, fabs(ta->grad[i] - tu->grad[i]));
        if (!ta->requires_grad) {
            double g = 0;
            for (size_t i = 0; i < loom_tensor_size(ta); i++) g = fmax(g, fabs(ta->grad[i]));
            cr_expect_eq(g, 0.0, "%s: frozen %s has a gradient", kind, loom_params_name(a.ps, k));
        } else {
            cr_expect_leq(diff, 1e-6 * fmax(mx, 1e-12), "%s: %s differs from the unfrozen run's by %g", kind,
                          loom_params_name(a.ps, k), diff);
        }
    }
    model_free(&u);
    model_free(&a);
    model_free(&b);
}

static void fused_matches_primitive(const char *kind) { fused_matches_primitive_frozen(kind, NULL, 0, 0); }

/* Each parameter frozen in turn, and the whole input projection frozen, with an input
 * that needs no gradient: the recurrent weights' gradients must not vanish. */
static void fused_matches_primitive_freezing(const char *kind)
{
    static const char *const each[] = {"weight_ih", "weight_hh", "bias_ih", "bias_hh"};
    for (int i = 0; i < 4; i++) fused_matches_primitive_frozen(kind, &each[i], 1, 1);
    static const char *const input_side[] = {"weight_ih", "bias_ih"};
    fused_matches_primitive_frozen(kind, input_side, 2, 1);
}

Test(cells, fused_equals_primitive_with_frozen_parameters)
{
    fused_matches_primitive_freezing("lstm");
    fused_matches_primitive_freezing("gru");
    fused_matches_primitive_freezing("rnn");
    fused_matches_primitive_freezing("rnn_relu");
}

Test(cells, fused_lstm_equals_primitive_ops) { fused_matches_primitive("lstm"); }
Test(cells, fused_gru_equals_primitive_ops) { fused_matches_primitive("gru"); }
Test(cells, fused_rnn_equals_primitive_ops) { fused_matches_primitive("rnn"), fused_matches_primitive("rnn_relu"); }

Test(cells, pytorch_parameter_names_and_shapes)
{
    model m;
    model_init(&m, "lstm", 2, 5, 6, 2, 1, 1);
    cr_assert_eq(loom_params_count(m.ps), 8);
    loom_tensor *w = loom_params_find(m.ps, "lstm.weight_ih_l0");
    cr_assert_not_null(w);
    cr_expect(w->rows == 24 && w->cols == 5);
    w = loom_params_find(m.ps, "lstm.weight_hh_l1");
    cr_assert_not_null(w);
    cr_expect(w->rows == 24 && w->cols == 6);
    w = loom_params_find(m.ps, "lstm.bias_hh_l1");
    cr_expect(w && w->rows == 1 && w->cols == 24);
    model_free(&m);
    model_init(&m, "gru", 1, 5, 6, 2, 1, 1);
    w = loom_params_find(m.ps, "gru.weight_ih_l0");
    cr_expect(w && w->rows == 18 && w->cols == 5);
    model_free(&m);
}

Test(cells, finished_sequences_keep_their_state)
{
    model m;
    model_init(&m, "gru", 1, 3, 4, 5, 4, 1);
    loom_tape *t = loom_tape_new(0);
    loom_seq_out o;
    cr_assert_eq(loom_seq_forward(&m.seq, t, m.x, 5, 4, m.lengths, 0, NULL, NULL, &o), LOOM_OK);
    /* Sequence 1 has length 2: its rows at steps 2..4 equal step 1, and h_last too. */
    for (int s = 2; s < 5; s++)
        for (int j = 0; j < 4; j++) cr_expect_eq(o.y->data[(s * 4 + 1) * 4 + j], o.y->data[(1 * 4 + 1) * 4 + j]);
    for (int j = 0; j < 4; j++) cr_expect_eq(o.h_last->data[1 * 4 + j], o.y->data[(1 * 4 + 1) * 4 + j]);
    loom_tape_free(t);
    model_free(&m);
}

Test(tbptt, carried_state_equals_one_long_pass_and_memory_stays_flat)
{
    /* Two windows of 6 with the state carried give the same outputs as one pass of 12. */
    model m;
    model_init(&m, "lstm", 2, 3, 5, 12, 2, 1);
    loom_tape *t = loom_tape_new(0);
    loom_seq_out full;
    cr_assert_eq(loom_seq_forward(&m.seq, t, m.x, 12, 2, NULL, 1, NULL, NULL, &full), LOOM_OK);
    float *ref = malloc(sizeof(float) * 12 * 2 * 5);
    memcpy(ref, full.y->data, sizeof(float) * 12 * 2 * 5);
    size_t used[6];
    for (int w = 0; w < 6; w++) {
        loom_tape_reset(t);
        loom_params_zero_grad(m.ps);
        int win = w % 2; /* windows 0,1 then again 0,1 after a state reset at w == 2, 4 */
        if (win == 0) loom_state_zero(m.st);
        loom_tensor *xw = loom_tape_from(t, 12, 3, m.x->data + win * 12 * 3);
        loom_seq_out o;
        cr_assert_eq(loom_seq_forward(&m.seq, t, xw, 6, 2, NULL, 1, m.st, NULL, &o), LOOM_OK, "%s", loom_error_message());
        for (int i = 0; i < 6 * 2 * 5; i++)
            cr_expect_float_eq(o.y->data[i], ref[win * 60 + i], 1e-6, "window %d element %d", win, i);
        loom_tensor *loss = loom_op_sum(t, o.y);
        cr_assert_eq(loom_tape_backward(t, loss), LOOM_OK);
        /* Detached: the carried state is a constant, so this window's graph starts fresh. */
        cr_expect_eq(loom_tape_backward(t, loss), LOOM_ESTATE);
        cr_assert_eq(loom_state_store(m.st, &o), LOOM_OK); /* commit the carried state */
        used[w] = loom_arena_used(loom_tape_arena(t));
    }
    for (int w = 1; w < 6; w++) cr_expect_eq(used[w], used[0], "window %d used %zu bytes, window 0 %zu", w, used[w], used[0]);
    free(ref);
    loom_tape_free(t);
    model_free(&m);
}

Test(seq, bad_shapes_and_lengths_are_errors)
{
    model m;
    model_init(&m, "rnn", 1, 3, 4, 5, 4, 1);
    loom_tape *t = loom_tape_new(0);
    loom_seq_out o;
    cr_expect_eq(loom_seq_forward(&m.seq, t, m.x, 4, 4, NULL, 0, NULL, NULL, &o), LOOM_ESHAPE);
    cr_expect(strstr(loom_error_message(), "T=4 x B=4") != NULL, "%s", loom_error_message());
    int bad[4] = {5, 6, 1, 1};
    loom_tape_reset(t);
    cr_expect_eq(loom_seq_forward(&m.seq, t, m.x, 5, 4, bad, 0, NULL, NULL, &o), LOOM_EARG);
    cr_expect(strstr(loom_error_message(), "length 6 of sequence 1") != NULL, "%s", loom_error_message());
    loom_cell c[2];
    loom_rnn_init(&c[0], 3, 4, 0);
    loom_rnn_init(&c[1], 5, 4, 0);
    loom_seq s2;
    cr_expect_eq(loom_seq_init(&s2, c, 2, 0.0f), LOOM_ESHAPE);
    cr_expect_eq(loom_cell_init_kind(&c[0], "lstmm", 3, 4), LOOM_EARG);
    cr_expect(strstr(loom_error_message(), "unknown cell 'lstmm'") != NULL);
    loom_tape_free(t);
    model_free(&m);
}

Test(seq, lstm_forget_bias_init)
{
    loom_cell c;
    loom_lstm_init(&c, 3, 4, 1.0f);
    loom_seq s;
    cr_assert_eq(loom_seq_init(&s, &c, 1, 0.0f), LOOM_OK);
    loom_params *ps = loom_params_new();
    loom_seq_declare(&s, ps, "lstm");
    loom_rng r = loom_rng_init(1);
    loom_params_alloc(ps, &r);
    loom_seq_apply_init(&s);
    loom_tensor *bi = loom_params_find(ps, "lstm.bias_ih_l0"), *bh = loom_params_find(ps, "lstm.bias_hh_l0");
    for (int j = 4; j < 8; j++) cr_expect_float_eq(bi->data[j] + bh->data[j], 1.0f, 1e-7);
    cr_expect_neq(bi->data[0], 1.0f);
    loom_params_free(ps);
}

/* The array activations: within a few ulp of a double reference over the gates' range,
 * saturated at the ends, NaN kept, and each value independent of its place in the array. */
Test(cells, array_activations_are_accurate_and_placeless)
{
    enum { N = 4001 };
    static float x[N], s[N], t[N];
    for (int i = 0; i < N; i++) x[i] = -100.0f + 0.05f * (float)i; /* -100 .. 100 */
    loom_sigmoidv(s, x, N);
    loom_tanhv(t, x, N);
    for (int i = 0; i < N; i++) {
        double sr = 1.0 / (1.0 + exp(-(double)x[i])), tr = tanh((double)x[i]);
        cr_assert(fabs(s[i] - sr) <= 3e-7 * sr + 1e-37, "sigmoid(%g) = %.9g, not %.9g", x[i], s[i], sr);
        cr_assert(fabs(t[i] - tr) <= 3e-7 * fabs(tr) + 2e-7, /* near 0, (1 - e) / (1 + e) cancels: ~1e-7 absolute */ "tanh(%g) = %.9g, not %.9g", x[i], t[i], tr);
    }
    for (int n = 1; n <= 9; n++) { /* every tail length: the same bits as in the long call */
        float a[9], b[9];
        loom_sigmoidv(a, x + 37, n);
        loom_tanhv(b, x + 1999, n);
        cr_assert(memcmp(a, s + 37, (size_t)n * sizeof(float)) == 0 && memcmp(b, t + 1999, (size_t)n * sizeof(float)) == 0,
                  "a call of %d elements changed their bits", n);
    }
    float odd[4] = {NAN, INFINITY, -INFINITY, 0.0f}, os[4], ot[4];
    loom_sigmoidv(os, odd, 4);
    loom_tanhv(ot, odd, 4);
    cr_assert(isnan(os[0]) && isnan(ot[0]), "NaN must stay NaN");
    cr_assert(os[1] == 1.0f && os[2] < 1e-30f && os[3] == 0.5f, "sigmoid(inf, -inf, 0) = %g %g %g", os[1], os[2], os[3]);
    cr_assert(ot[1] == 1.0f && ot[2] == -1.0f && ot[3] == 0.0f, "tanh(inf, -inf, 0) = %g %g %g", ot[1], ot[2], ot[3]);
}
