/* Bidirectional layers (issue 11 part 4): gradcheck of 2-layer bidirectional
 * stacks with variable, unsorted lengths for every built-in cell and two user
 * cells (the fused peephole LSTM of examples/peephole.c and an unrolled-only
 * one defined here), fused and unrolled; a bidirectional stack equals
 * unidirectional layers, the reverse ones fed each sequence reversed within its
 * length; PyTorch's parameter names and order; the state layout; misuse. */
#include <string.h>

#include "helpers.h"
#include "loom_layers.h"
#include "ind_cell.h"
#include "peephole.h"

/* ---------------------------------------------------------------- a user cell with no fused form
 * (ind_cell.h's IndRNN) */

static void ind_init(loom_cell *c, int input, int hidden)
{
    memset(c, 0, sizeof *c);
    snprintf(c->name, sizeof c->name, "indtanh");
    c->input_size = input, c->hidden_size = hidden, c->n_state = 1;
    c->declare = ind_declare, c->step = ind_step;
}

static void cell_init(loom_cell *c, const char *kind, int input, int hidden)
{
    if (strcmp(kind, "peephole") == 0) peephole_lstm_init(c, input, hidden);
    else if (strcmp(kind, "indtanh") == 0) ind_init(c, input, hidden);
    else cr_assert_eq(loom_cell_init_kind(c, kind, input, hidden), LOOM_OK, "%s", loom_error_message());
}

/* A stack of `layers` cells of one kind, unidirectional (a cell of layer l > 0 takes `in_l`
 * when given) or bidirectional, declared under the kind's name, values from seed. */
static loom_params *stack_new(loom_seq *s, const char *kind, int layers, int I, int H, int in_l, int bidir, int fused,
                              float dropout, uint64_t seed)
{
    loom_cell cells[4];
    cr_assert_leq(layers, 4);
    for (int l = 0; l < layers; l++) cell_init(&cells[l], kind, l ? (in_l ? in_l : H) : I, H);
    cr_assert_eq(loom_seq_init(s, cells, layers, dropout), LOOM_OK, "%s", loom_error_message());
    s->fused = fused;
    if (bidir) cr_assert_eq(loom_seq_set_bidirectional(s, 1), LOOM_OK, "%s", loom_error_message());
    loom_params *ps = loom_params_new();
    cr_assert_not_null(ps);
    cr_assert_eq(loom_seq_declare(s, ps, kind), LOOM_OK, "%s", loom_error_message());
    loom_rng r = loom_rng_init(seed);
    cr_assert_eq(loom_params_alloc(ps, &r), LOOM_OK, "%s", loom_error_message());
    return ps;
}

/* ---------------------------------------------------------------- gradcheck */

enum { MAXP = 64 };

typedef struct model {
    loom_params *ps;
    loom_seq seq;
    loom_tensor *x;
    loom_tensor *init[MAXP]; /* nonzero initial states on the tape's side: their gradient is checked too */
    int n_init;
    int T, B;
    int lengths[4];
} model;

static void model_init(model *m, const char *kind, int fused, float dropout)
{
    enum { I = 3, H = 4, T = 5, B = 4 };
    memset(m, 0, sizeof *m);
    m->ps = stack_new(&m->seq, kind, 2, I, H, 0, 1, fused, dropout, 17);
    m->x = rand_tensor(T * B, I, 1, 18, -1, 1);
    m->T = T, m->B = B;
    int lens[4] = {2, T, 1, T - 1}; /* variable and unsorted */
    memcpy(m->lengths, lens, sizeof lens);
    m->n_init = loom_seq_state_count(&m->seq);
    cr_assert_eq(m->n_init, 2 * 2 * m->seq.cells[0].n_state, "two layers x two directions x the cell's parts");
    cr_assert_leq(m->n_init, MAXP);
    for (int i = 0; i < m->n_init; i++) m->init[i] = rand_tensor(B, H, 1, 100 + (uint64_t)i, -0.5f, 0.5f);
}

static void model_free(model *m)
{
    for (int i = 0; i < m->n_init; i++) loom_tensor_free(m->init[i]);
    loom_seq_free(&m->seq);
    loom_params_free(m->ps);
    loom_tensor_free(m->x);
}

/* Every real step's output (padding weighted 0), h_last, and every final state of both
 * layers and directions, so the gradient enters through each of them. The dropout mask
 * between the layers is drawn from the same seed at every call. */
static loom_tensor *seq_loss(loom_tape *t, void *ctx)
{
    model *m = ctx;
    loom_seq_out o;
    loom_rng rng = loom_rng_init(99);
    if (loom_seq_forward_from(&m->seq, t, m->x, m->T, m->B, m->lengths, 1, m->init, &rng, &o) != LOOM_OK) return NULL;
    float *w = loom_arena_alloc(loom_tape_arena(t), sizeof(float) * m->T * m->B);
    loom_tensor *wt = loom_tape_tensor(t, m->T * m->B, o.y->cols);
    if (!w || !wt) return NULL;
    loom_seq_length_weights(m->lengths, m->T, m->B, w);
    for (int r = 0; r < m->T * m->B; r++)
        for (int j = 0; j < o.y->cols; j++) wt->data[r * o.y->cols + j] = w[r] * (float)((r * 7 + j * 3) % 5 - 2) * 0.5f;
    loom_tensor *loss = loom_op_add(t, loom_op_sum(t, loom_op_mul(t, o.y, wt)), project(t, o.h_last));
    for (int i = 0; i < o.n_last; i++)
        loss = loom_op_add(t, loss, loom_op_scale(t, loom_op_sum(t, loom_op_tanh(t, o.last[i])), 0.5f / (float)(i + 1)));
    return loss;
}

static void gradcheck_bidir(const char *kind, int fused, float dropout)
{
    model m;
    model_init(&m, kind, fused, dropout);
    char what[96], line[256];
    snprintf(what, sizeof what, "bidirectional %s x2 %s%s", kind, fused ? "fused" : "unrolled",
             dropout > 0 ? ", dropout" : "");
    /* Every parameter of both directions of both layers. */
    loom_gradcheck_result res;
    cr_assert_eq(loom_gradcheck_params(seq_loss, &m, m.ps, 0.0f, 1e-2, &res), LOOM_OK, "%s: %s", what, loom_error_message());
    loom_gradcheck_format(&res, line, sizeof line);
    cr_expect_gt(res.checked, 0);
    cr_expect_lt(res.worst_rel_err, 1e-2, "%s: %s", what, line);
    cr_log_info("%s: %s", what, line);
    /* The input (through the reversing gathers) and every initial state. */
    loom_tensor *wrt[MAXP + 1];
    const char *names[MAXP + 1];
    static const char *const init_names[MAXP] = {"init0", "init1", "init2", "init3", "init4", "init5", "init6", "init7"};
    int n = 0;
    wrt[n] = m.x, names[n++] = "x";
    for (int i = 0; i < m.n_init; i++) wrt[n] = m.init[i], names[n++] = i < 8 ? init_names[i] : "init";
    cr_assert_eq(loom_gradcheck_named(seq_loss, &m, wrt, names, n, 0.0f, 1e-2, &res), LOOM_OK, "%s: %s", what,
                 loom_error_message());
    loom_gradcheck_format(&res, line, sizeof line);
    cr_expect_lt(res.worst_rel_err, 1e-2, "%s (input, initial states): %s", what, line);
    model_free(&m);
}

/* Two layers, five steps, lengths 2/5/1/4, nonzero initial states; fused and unrolled. */
Test(bidir_gradcheck, lstm) { gradcheck_bidir("lstm", 1, 0.0f), gradcheck_bidir("lstm", 0, 0.0f); }
Test(bidir_gradcheck, gru) { gradcheck_bidir("gru", 1, 0.0f), gradcheck_bidir("gru", 0, 0.0f); }
Test(bidir_gradcheck, rnn) { gradcheck_bidir("rnn", 1, 0.0f), gradcheck_bidir("rnn", 0, 0.0f); }
/* The peephole LSTM of examples/peephole.c: a user cell with a fused form, and its step. */
Test(bidir_gradcheck, custom_fused_peephole) { gradcheck_bidir("peephole", 1, 0.0f), gradcheck_bidir("peephole", 0, 0.0f); }
/* A user cell with only a step. */
Test(bidir_gradcheck, custom_unrolled_only) { gradcheck_bidir("indtanh", 1, 0.0f); }
/* Dropout between the layers acts on both directions' outputs. */
Test(bidir_gradcheck, lstm_with_dropout) { gradcheck_bidir("lstm", 1, 0.3f), gradcheck_bidir("gru", 0, 0.3f); }

/* ---------------------------------------------------------------- bidirectional == two unidirectional layers */

enum { EI = 3, EH = 5, ET = 6, EB = 4 };
static const int elens[EB] = {3, ET, 1, 5};

/* rows[t*B+b] of x, reversed within each sequence's length (padding rows stay). */
static void reverse_rows(const float *x, float *out, int cols, const int *lens, int T, int B)
{
    for (int t = 0; t < T; t++)
        for (int b = 0; b < B; b++) {
            int src = t < lens[b] ? lens[b] - 1 - t : t;
            memcpy(out + ((size_t)t * B + b) * cols, x + ((size_t)src * B + b) * cols, (size_t)cols * sizeof(float));
        }
}

static void copy_params(const loom_cell *from, loom_cell *to)
{
    cr_assert_eq(from->nw, to->nw);
    for (int i = 0; i < from->nw; i++) {
        cr_assert_eq(from->w[i]->rows, to->w[i]->rows);
        cr_assert_eq(from->w[i]->cols, to->w[i]->cols);
        memcpy(to->w[i]->data, from->w[i]->data, loom_tensor_size(from->w[i]) * sizeof(float));
    }
}

static double max_diff(const float *a, const float *b, size_t n)
{
    double d = 0;
    for (size_t i = 0; i < n; i++) d = fmax(d, fabs((double)a[i] - b[i]));
    return d;
}

/* One unidirectional layer over x [T*B x cols] from state parts init (the bidirectional
 * state's parts of that direction); y and the final parts are copied out. */
static void run_uni(loom_seq *s, const float *x, int cols, const float *const *init, float *y, float **last)
{
    loom_tape *t = loom_tape_new(0);
    loom_state *st = loom_state_new(s, EB);
    cr_assert_not_null(st, "%s", loom_error_message());
    int S = s->cells[0].n_state;
    for (int k = 0; k < S; k++) memcpy(loom_state_part(st, 0, k), init[k], sizeof(float) * EB * EH);
    loom_seq_out o;
    loom_tensor *xt = loom_tape_from(t, ET * EB, cols, x);
    cr_assert_eq(loom_seq_forward(s, t, xt, ET, EB, elens, 0, st, NULL, &o), LOOM_OK, "%s", loom_error_message());
    cr_assert_eq(o.y->cols, EH);
    memcpy(y, o.y->data, sizeof(float) * ET * EB * EH);
    for (int k = 0; k < S; k++) memcpy(last[k], o.last[k]->data, sizeof(float) * EB * EH);
    loom_state_free(st);
    loom_tape_free(t);
}

static void bidir_equals_unidirectional(const char *kind, int fused)
{
    loom_seq bi, uni[2][2]; /* uni[layer][direction] */
    loom_params *ps = stack_new(&bi, kind, 2, EI, EH, 0, 1, fused, 0.0f, 31), *ups[2][2];
    int S = bi.cells[0].n_state, P = loom_seq_state_count(&bi);
    cr_assert_eq(P, 2 * 2 * S);
    for (int l = 0; l < 2; l++)
        for (int d = 0; d < 2; d++) {
            ups[l][d] = stack_new(&uni[l][d], kind, 1, l ? 2 * EH : EI, EH, 0, 0, fused, 0.0f, 99);
            copy_params(d ? &bi.rcells[l] : &bi.cells[l], &uni[l][d].cells[0]);
        }
    /* A nonzero initial state, the same values for both. */
    loom_state *st = loom_state_new(&bi, EB);
    cr_assert_not_null(st, "%s", loom_error_message());
    size_t ns;
    float *s0 = loom_state_data(st, &ns);
    cr_assert_eq(ns, (size_t)P * EB * EH);
    loom_rng r = loom_rng_init(5);
    loom_rng_fill_uniform(&r, s0, ns, -0.5f, 0.5f);
    float x[ET * EB * EI];
    loom_rng_fill_uniform(&r, x, ET * EB * EI, -1, 1);

    /* The bidirectional stack. */
    loom_tape *t = loom_tape_new(0);
    loom_seq_out o;
    loom_tensor *xt = loom_tape_from(t, ET * EB, EI, x);
    cr_assert_eq(loom_seq_forward(&bi, t, xt, ET, EB, elens, 0, st, NULL, &o), LOOM_OK, "%s", loom_error_message());
    cr_assert_eq(o.y->rows, ET * EB);
    cr_assert_eq(o.y->cols, 2 * EH);
    cr_assert_eq(o.h_last->rows, EB);
    cr_assert_eq(o.h_last->cols, 2 * EH);
    cr_assert_eq(o.n_last, P);

    /* The same from unidirectional layers: layer l's input is [forward | reverse un-reversed]. */
    static float in[ET * EB * 2 * EH], rin[ET * EB * 2 * EH], yd[2][ET * EB * EH], yr[ET * EB * EH], y[ET * EB * 2 * EH];
    static float lastv[2][2][4][EB * EH];
    const float *cur = x;
    int cols = EI;
    for (int l = 0; l < 2; l++) {
        for (int d = 0; d < 2; d++) {
            const float *init[4];
            float *lastp[4];
            for (int k = 0; k < S; k++) {
                init[k] = loom_state_part(st, l, d * S + k);
                lastp[k] = lastv[l][d][k];
            }
            if (d) reverse_rows(cur, rin, cols, elens, ET, EB);
            run_uni(&uni[l][d], d ? rin : cur, cols, init, yd[d], lastp);
        }
        reverse_rows(yd[1], yr, EH, elens, ET, EB); /* un-reverse: the row map is its own inverse */
        for (int row = 0; row < ET * EB; row++) {
            memcpy(y + (size_t)row * 2 * EH, yd[0] + (size_t)row * EH, sizeof(float) * EH);
            memcpy(y + (size_t)row * 2 * EH + EH, yr + (size_t)row * EH, sizeof(float) * EH);
        }
        memcpy(in, y, sizeof y);
        cur = in, cols = 2 * EH;
    }
    double dy = max_diff(o.y->data, y, (size_t)ET * EB * 2 * EH), ds = 0, dh = 0;
    for (int l = 0; l < 2; l++)
        for (int d = 0; d < 2; d++)
            for (int k = 0; k < S; k++)
                ds = fmax(ds, max_diff(o.last[loom_seq_state_index(&bi, l, d * S + k)]->data, lastv[l][d][k], EB * EH));
    for (int b = 0; b < EB; b++) {
        dh = fmax(dh, max_diff(o.h_last->data + b * 2 * EH, lastv[1][0][0] + b * EH, EH));
        dh = fmax(dh, max_diff(o.h_last->data + b * 2 * EH + EH, lastv[1][1][0] + b * EH, EH));
    }
    cr_expect_leq(dy, 1e-6, "%s %s: outputs differ by %g", kind, fused ? "fused" : "unrolled", dy);
    cr_expect_leq(ds, 1e-6, "%s %s: final states differ by %g", kind, fused ? "fused" : "unrolled", ds);
    cr_expect_leq(dh, 1e-6, "%s %s: h_last differs by %g", kind, fused ? "fused" : "unrolled", dh);
    cr_log_info("%s %s: differences y %g, states %g, h_last %g", kind, fused ? "fused" : "unrolled", dy, ds, dh);

    /* The documented layout: h_last is the forward half at each sequence's last real step and
     * the reverse half at t = 0; padding rows hold h_last's row. */
    for (int b = 0; b < EB; b++) {
        const float *h = o.h_last->data + b * 2 * EH;
        cr_expect_eq(memcmp(h, o.y->data + ((size_t)(elens[b] - 1) * EB + b) * 2 * EH, sizeof(float) * EH), 0);
        cr_expect_eq(memcmp(h + EH, o.y->data + (size_t)b * 2 * EH + EH, sizeof(float) * EH), 0);
        for (int tt = elens[b]; tt < ET; tt++)
            cr_expect_eq(memcmp(h, o.y->data + ((size_t)tt * EB + b) * 2 * EH, sizeof(float) * 2 * EH), 0,
                         "padding row t=%d b=%d", tt, b);
    }
    loom_tape_free(t);
    loom_state_free(st);
    for (int l = 0; l < 2; l++)
        for (int d = 0; d < 2; d++) loom_seq_free(&uni[l][d]), loom_params_free(ups[l][d]);
    loom_seq_free(&bi);
    loom_params_free(ps);
}

Test(bidir_equals_two_layers, lstm) { bidir_equals_unidirectional("lstm", 1), bidir_equals_unidirectional("lstm", 0); }
Test(bidir_equals_two_layers, gru) { bidir_equals_unidirectional("gru", 1), bidir_equals_unidirectional("gru", 0); }
Test(bidir_equals_two_layers, rnn) { bidir_equals_unidirectional("rnn", 1), bidir_equals_unidirectional("rnn", 0); }
Test(bidir_equals_two_layers, custom_cells)
{
    bidir_equals_unidirectional("peephole", 1), bidir_equals_unidirectional("peephole", 0);
    bidir_equals_unidirectional("indtanh", 1);
}

/* ---------------------------------------------------------------- names, sizes, states, misuse */

Test(bidir_api, pytorch_names_order_and_shapes)
{
    loom_seq s;
    loom_params *ps = stack_new(&s, "lstm", 2, 3, 5, 0, 1, 1, 0.0f, 1);
    static const char *const names[16] = {
        "lstm.weight_ih_l0", "lstm.weight_hh_l0", "lstm.bias_ih_l0", "lstm.bias_hh_l0",
        "lstm.weight_ih_l0_reverse", "lstm.weight_hh_l0_reverse", "lstm.bias_ih_l0_reverse", "lstm.bias_hh_l0_reverse",
        "lstm.weight_ih_l1", "lstm.weight_hh_l1", "lstm.bias_ih_l1", "lstm.bias_hh_l1",
        "lstm.weight_ih_l1_reverse", "lstm.weight_hh_l1_reverse", "lstm.bias_ih_l1_reverse", "lstm.bias_hh_l1_reverse"};
    cr_assert_eq(loom_params_count(ps), 16);
    for (int i = 0; i < 16; i++) cr_expect_str_eq(loom_params_name(ps, i), names[i]); /* torch's state_dict order */
    /* Layer 1 reads both directions of layer 0: weight_ih_l1 is [4H x 2H], in both directions. */
    cr_expect_eq(s.cells[1].input_size, 10);
    cr_expect_eq(s.rcells[1].input_size, 10);
    cr_expect_eq(loom_params_find(ps, "lstm.weight_ih_l1_reverse")->cols, 10);
    cr_expect_eq(loom_params_find(ps, "lstm.weight_ih_l0_reverse")->cols, 3);
    cr_expect_eq(s.rcells[0].reverse, 1);
    cr_expect_eq(s.cells[0].reverse, 0);
    /* loom_cell_find looks names up in its own direction. */
    cr_expect_eq(loom_cell_find(&s.rcells[1], ps, "weight_hh"), loom_params_find(ps, "lstm.weight_hh_l1_reverse"));
    cr_expect_eq(loom_cell_find(&s.cells[1], ps, "weight_hh"), loom_params_find(ps, "lstm.weight_hh_l1"));
    loom_seq_free(&s);
    loom_params_free(ps);
}

Test(bidir_api, user_cells_get_reverse_names)
{
    loom_seq s;
    loom_params *ps = stack_new(&s, "peephole", 2, 3, 4, 0, 1, 1, 0.0f, 1);
    cr_expect_eq(loom_params_count(ps), 2 * 2 * 7);
    cr_expect_not_null(loom_params_find(ps, "peephole.peep_o_l1_reverse"));
    cr_expect_eq(loom_cell_find(&s.rcells[0], ps, "peep_f"), loom_params_find(ps, "peephole.peep_f_l0_reverse"));
    cr_expect_eq(loom_cell_find(&s.cells[0], ps, "peep_f"), loom_params_find(ps, "peephole.peep_f_l0"));
    loom_seq_free(&s);
    loom_params_free(ps);
    ps = stack_new(&s, "indtanh", 2, 3, 4, 0, 1, 0, 0.0f, 1);
    cr_expect_not_null(loom_params_find(ps, "indtanh.u_l0_reverse"));
    cr_expect_eq(loom_params_find(ps, "indtanh.weight_ih_l1_reverse")->cols, 8);
    loom_seq_free(&s);
    loom_params_free(ps);
}

Test(bidir_api, on_and_off_before_declare)
{
    loom_cell cells[3];
    for (int l = 0; l < 3; l++) loom_gru_init(&cells[l], l ? 6 : 2, 6);
    loom_seq s;
    cr_assert_eq(loom_seq_init(&s, cells, 3, 0.0f), LOOM_OK);
    cr_expect_eq(s.bidirectional, 0);
    cr_expect_null(s.rcells);
    cr_assert_eq(loom_seq_set_bidirectional(&s, 1), LOOM_OK);
    cr_assert_eq(loom_seq_set_bidirectional(&s, 1), LOOM_OK); /* twice is once */
    cr_expect_eq(s.cells[2].input_size, 12);
    cr_expect_eq(loom_seq_state_count(&s), 6);
    cr_assert_eq(loom_seq_set_bidirectional(&s, 0), LOOM_OK);
    cr_expect_eq(s.cells[1].input_size, 6);
    cr_expect_eq(s.cells[2].input_size, 6);
    cr_expect_null(s.rcells);
    cr_expect_eq(loom_seq_state_count(&s), 3);
    loom_params *ps = loom_params_new();
    cr_assert_eq(loom_seq_declare(&s, ps, "gru"), LOOM_OK, "%s", loom_error_message());
    cr_expect_eq(loom_params_count(ps), 12, "off again: a unidirectional stack");
    /* After declare it is refused, and the stack is left as it was. */
    cr_expect_eq(loom_seq_set_bidirectional(&s, 1), LOOM_ESTATE);
    cr_expect(strstr(loom_error_message(), "before loom_seq_declare"), "%s", loom_error_message());
    cr_expect_eq(s.bidirectional, 0);
    cr_expect_eq(loom_seq_state_count(&s), 3);
    loom_seq_free(&s);
    loom_params_free(ps);
    /* NULL and an uninitialised stack. */
    cr_expect_eq(loom_seq_set_bidirectional(NULL, 1), LOOM_EARG);
    cr_expect(strstr(loom_error_message(), "seq_set_bidirectional: stack is NULL"), "%s", loom_error_message());
    loom_seq zeroed;
    memset(&zeroed, 0, sizeof zeroed);
    cr_expect_eq(loom_seq_set_bidirectional(&zeroed, 1), LOOM_ESTATE);
    /* The flag set by hand, without the reverse cells, is refused rather than ignored. */
    cr_assert_eq(loom_seq_init(&s, cells, 1, 0.0f), LOOM_OK);
    s.bidirectional = 1;
    ps = loom_params_new();
    cr_expect_eq(loom_seq_declare(&s, ps, "gru"), LOOM_ESTATE);
    cr_expect(strstr(loom_error_message(), "loom_seq_set_bidirectional"), "%s", loom_error_message());
    loom_seq_free(&s);
    loom_params_free(ps);
}

/* States: indices, a state carried through loom_state equals the same values on the tape,
 * store/copy, a unidirectional stack's state refused, a sequence of length 0. */
Test(bidir_api, states)
{
    enum { I = 2, H = 3, T = 4, B = 3 };
    loom_seq s, u;
    loom_params *ps = stack_new(&s, "lstm", 1, I, H, 0, 1, 1, 0.0f, 3);
    loom_params *ups = stack_new(&u, "lstm", 2, I, H, 0, 0, 1, 0.0f, 3);
    cr_expect_eq(loom_seq_state_count(&s), 4);
    cr_expect_eq(loom_seq_state_index(&s, 0, 3), 3, "h, c, h_reverse, c_reverse");
    cr_expect_eq(loom_seq_state_index(&s, 0, 4), -1);
    loom_state *st = loom_state_new(&s, B), *st2 = loom_state_new(&s, B), *ust = loom_state_new(&u, B);
    cr_assert(st && st2 && ust);
    size_t n;
    float *d = loom_state_data(st, &n);
    cr_expect_eq(n, (size_t)4 * B * H);
    for (size_t i = 0; i < n; i++) d[i] = 0.1f * (float)((int)(i % 11) - 5);
    cr_expect_not_null(loom_state_part(st, 0, 3));
    cr_expect_null(loom_state_part(st, 0, 4));
    int lens[B] = {0, T, 2}; /* a sequence of length 0 keeps its initial state in both directions */
    float x[T * B * I];
    for (int i = 0; i < T * B * I; i++) x[i] = 0.05f * (float)(i % 13) - 0.3f;

    loom_tape *t = loom_tape_new(0);
    loom_seq_out o, o2;
    loom_tensor *xt = loom_tape_from(t, T * B, I, x);
    cr_assert_eq(loom_seq_forward(&s, t, xt, T, B, lens, 0, st, NULL, &o), LOOM_OK, "%s", loom_error_message());
    loom_tensor *init[4];
    for (int k = 0; k < 4; k++) init[k] = loom_tape_from(t, B, H, loom_state_part(st, 0, k));
    cr_assert_eq(loom_seq_forward_from(&s, t, xt, T, B, lens, 0, init, NULL, &o2), LOOM_OK, "%s", loom_error_message());
    cr_expect_eq(memcmp(o.y->data, o2.y->data, sizeof(float) * T * B * 2 * H), 0);
    for (int k = 0; k < 4; k++) {
        cr_expect_eq(memcmp(o.last[k]->data, o2.last[k]->data, sizeof(float) * B * H), 0);
        cr_expect_eq(memcmp(o.last[k]->data, loom_state_part(st, 0, k), sizeof(float) * H), 0,
                     "row 0 has length 0: part %d is its initial state", k);
    }
    cr_expect_eq(memcmp(o.h_last->data, loom_state_part(st, 0, 0), sizeof(float) * H), 0);
    cr_expect_eq(memcmp(o.h_last->data + H, loom_state_part(st, 0, 2), sizeof(float) * H), 0);
    /* store, copy */
    cr_assert_eq(loom_state_store(st2, &o), LOOM_OK, "%s", loom_error_message());
    for (int k = 0; k < 4; k++)
        cr_expect_eq(memcmp(loom_state_part(st2, 0, k), o.last[k]->data, sizeof(float) * B * H), 0);
    cr_assert_eq(loom_state_copy(st, st2), LOOM_OK);
    cr_expect_eq(memcmp(loom_state_data(st, NULL), loom_state_data(st2, NULL), sizeof(float) * n), 0);
    /* A 2-layer unidirectional LSTM's state has as many parts of the same size: still refused. */
    cr_expect_eq(loom_state_copy(st, ust), LOOM_ESTATE);
    cr_expect_eq(loom_state_store(ust, &o), LOOM_OK, "the parts fit one by one");
    loom_tape_reset(t);
    xt = loom_tape_from(t, T * B, I, x);
    cr_expect_eq(loom_seq_forward(&s, t, xt, T, B, lens, 0, ust, NULL, &o), LOOM_ESTATE);
    cr_expect(strstr(loom_error_message(), "another stack"), "%s", loom_error_message());
    loom_tape_free(t);
    loom_state_free(st), loom_state_free(st2), loom_state_free(ust);
    loom_seq_free(&s), loom_seq_free(&u);
    loom_params_free(ps), loom_params_free(ups);
}

/* Without lengths the reverse direction reads t = T-1 .. 0; train mode with dropout needs
 * an rng and draws one mask over both directions' outputs. */
Test(bidir_api, no_lengths_and_dropout)
{
    enum { I = 2, H = 3, T = 3, B = 2 };
    loom_seq s;
    loom_params *ps = stack_new(&s, "gru", 2, I, H, 0, 1, 1, 0.5f, 3);
    float x[T * B * I];
    for (int i = 0; i < T * B * I; i++) x[i] = 0.1f * (float)(i % 7) - 0.2f;
    loom_tape *t = loom_tape_new(0);
    loom_seq_out a, b, c;
    loom_tensor *xt = loom_tape_from(t, T * B, I, x);
    int full[B] = {T, T};
    cr_assert_eq(loom_seq_forward(&s, t, xt, T, B, NULL, 0, NULL, NULL, &a), LOOM_OK, "%s", loom_error_message());
    cr_assert_eq(loom_seq_forward(&s, t, xt, T, B, full, 0, NULL, NULL, &b), LOOM_OK, "%s", loom_error_message());
    cr_expect_eq(memcmp(a.y->data, b.y->data, sizeof(float) * T * B * 2 * H), 0, "NULL lengths are all T");
    cr_expect_eq(loom_seq_forward(&s, t, xt, T, B, NULL, 1, NULL, NULL, &c), LOOM_EARG);
    loom_tape_reset(t);
    xt = loom_tape_from(t, T * B, I, x);
    loom_rng rng = loom_rng_init(1);
    cr_assert_eq(loom_seq_forward(&s, t, xt, T, B, NULL, 1, NULL, &rng, &c), LOOM_OK, "%s", loom_error_message());
    cr_expect_eq(rng.counter, (uint64_t)T * B * 2 * H, "one mask over [T*B x 2H]");
    loom_tape_free(t);
    loom_seq_free(&s);
    loom_params_free(ps);
}

/* A steady-state training step of a bidirectional stack makes no heap allocation of loom's:
 * the gathers, the concatenations and their gradients come from the tape's arena. */
Test(bidir_api, steady_state_step_allocates_nothing)
{
    model m;
    model_init(&m, "lstm", 1, 0.3f);
    loom_tape *t = loom_tape_new(0);
    uint64_t before = 0;
    for (int step = 0; step < 3; step++) {
        if (step == 2) before = loom_alloc_count();
        loom_tape_reset(t);
        loom_params_zero_grad(m.ps);
        loom_tensor *loss = seq_loss(t, &m);
        cr_assert_not_null(loss, "%s", loom_error_message());
        cr_assert_eq(loom_tape_backward(t, loss), LOOM_OK, "%s", loom_error_message());
    }
    cr_expect_eq(loom_alloc_count(), before, "%llu allocations in the third step",
                 (unsigned long long)(loom_alloc_count() - before));
    loom_tape_free(t);
    model_free(&m);
}
