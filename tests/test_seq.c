/* The sequence layer's state objects, caps and freezing: independent states on
 * one model, nothing committed by a failed step, a 12-parameter cell and a
 * 12-layer stack, frozen parameters untouched by every optimizer. */
#include <string.h>

#include "helpers.h"
#include "loom_dist.h"

/* A stack of `layers` built-in cells of one kind, parameters drawn from seed 5. */
typedef struct stack {
    loom_seq seq;
    loom_params *ps;
    int T, B; /* ramp_loss's window */
} stack;

static void stack_init(stack *s, const char *kind, int layers, int I, int H)
{
    loom_cell *cells = calloc((size_t)layers, sizeof *cells);
    for (int l = 0; l < layers; l++) cr_assert_eq(loom_cell_init_kind(&cells[l], kind, l ? H : I, H), LOOM_OK);
    cr_assert_eq(loom_seq_init(&s->seq, cells, layers, 0.0f), LOOM_OK, "%s", loom_error_message());
    free(cells);
    s->ps = loom_params_new();
    cr_assert_eq(loom_seq_declare(&s->seq, s->ps, kind), LOOM_OK, "%s", loom_error_message());
    loom_rng r = loom_rng_init(5);
    cr_assert_eq(loom_params_alloc(s->ps, &r), LOOM_OK);
}

static void stack_free(stack *s)
{
    loom_seq_free(&s->seq);
    loom_params_free(s->ps);
}

static void fill(float *v, size_t n, uint64_t seed)
{
    loom_rng r = loom_rng_init(seed);
    loom_rng_fill_uniform(&r, v, n, -1, 1);
}

/* Runs a window of x from st (NULL: zeros), commits into st, and copies y out. */
static void window(stack *s, loom_tape *t, const float *x, int T, int B, int I, loom_state *st, float *y)
{
    loom_tape_reset(t);
    loom_seq_out o;
    loom_tensor *xt = loom_tape_from(t, T * B, I, x);
    cr_assert_eq(loom_seq_forward(&s->seq, t, xt, T, B, NULL, 0, st, NULL, &o), LOOM_OK, "%s", loom_error_message());
    cr_assert_eq(loom_state_store(st, &o), LOOM_OK, "%s", loom_error_message());
    memcpy(y, o.y->data, loom_tensor_size(o.y) * sizeof(float));
}

Test(state, two_states_on_one_model_equal_two_models)
{
    enum { I = 3, H = 5, T = 4, B = 2 };
    stack one, a, b;
    stack_init(&one, "lstm", 2, I, H), stack_init(&a, "lstm", 2, I, H), stack_init(&b, "lstm", 2, I, H);
    loom_state *s1 = loom_state_new(&one.seq, B), *s2 = loom_state_new(&one.seq, B);
    loom_state *sa = loom_state_new(&a.seq, B), *sb = loom_state_new(&b.seq, B);
    cr_assert(s1 && s2 && sa && sb);
    fill(loom_state_data(s1, NULL), 2 * 2 * B * H, 1), fill(loom_state_data(sa, NULL), 2 * 2 * B * H, 1);
    fill(loom_state_data(s2, NULL), 2 * 2 * B * H, 2), fill(loom_state_data(sb, NULL), 2 * 2 * B * H, 2);
    float x1[3][T * B * I], x2[3][T * B * I], y1[T * B * H], y2[T * B * H], ya[T * B * H], yb[T * B * H];
    for (int w = 0; w < 3; w++) fill(x1[w], T * B * I, 10 + w), fill(x2[w], T * B * I, 20 + w);
    loom_tape *t = loom_tape_new(0);
    for (int w = 0; w < 3; w++) { /* interleaved on one model, apart on two */
        window(&one, t, x1[w], T, B, I, s1, y1);
        window(&one, t, x2[w], T, B, I, s2, y2);
        window(&a, t, x1[w], T, B, I, sa, ya);
        window(&b, t, x2[w], T, B, I, sb, yb);
        cr_expect_arr_eq(y1, ya, sizeof y1, "window %d, stream 1", w);
        cr_expect_arr_eq(y2, yb, sizeof y2, "window %d, stream 2", w);
    }
    size_t n;
    float *d1 = loom_state_data(s1, &n), *d2 = loom_state_data(s2, NULL);
    cr_expect_arr_eq(d1, loom_state_data(sa, NULL), n * sizeof(float));
    cr_expect_arr_eq(d2, loom_state_data(sb, NULL), n * sizeof(float));
    cr_expect_neq(memcmp(y1, y2, sizeof y1), 0, "the two streams differ");
    loom_state *other = loom_state_new(&one.seq, B + 1);
    cr_expect_eq(loom_state_copy(other, s1), LOOM_ESTATE);
    loom_state_free(other);
    loom_state_free(s1), loom_state_free(s2), loom_state_free(sa), loom_state_free(sb);
    loom_tape_free(t);
    stack_free(&one), stack_free(&a), stack_free(&b);
}

Test(state, a_state_from_another_stack_is_refused)
{
    stack a, b;
    stack_init(&a, "lstm", 1, 3, 5), stack_init(&b, "gru", 1, 3, 5);
    loom_state *sb = loom_state_new(&b.seq, 2);
    loom_tape *t = loom_tape_new(0);
    loom_tensor *x = loom_tape_zeros(t, 8, 3);
    loom_seq_out o;
    cr_expect_eq(loom_seq_forward(&a.seq, t, x, 4, 2, NULL, 0, sb, NULL, &o), LOOM_ESTATE);
    cr_expect(strstr(loom_error_message(), "another stack"), "%s", loom_error_message());
    cr_expect_eq(loom_tape_status(t), LOOM_ESTATE, "the failed forward marks the tape");
    loom_tape_reset(t);
    x = loom_tape_zeros(t, 8, 3);
    cr_expect_eq(loom_seq_forward(&b.seq, t, x, 2, 4, NULL, 0, sb, NULL, &o), LOOM_ESTATE);
    cr_expect(strstr(loom_error_message(), "batch 4 differs from the state's batch 2"), "%s", loom_error_message());
    loom_state_free(sb);
    loom_tape_free(t);
    stack_free(&a), stack_free(&b);
}

/* ---- nothing is committed by a step that fails ---- */

typedef struct poisoned {
    stack s;
    loom_state *carry;
    loom_seq_out out;
    float x[6 * 2 * 3];
    long poison_at;
} poisoned;

static loom_tensor *poisoned_forward(void *ctx, loom_tape *t, loom_batch *b)
{
    poisoned *p = ctx;
    b->count = 1, b->tokens = 12;
    loom_tensor *x = loom_tape_from(t, 12, 3, p->x);
    if (loom_seq_forward(&p->s.seq, t, x, 6, 2, NULL, 1, p->carry, NULL, &p->out) != LOOM_OK) return NULL;
    loom_tensor *loss = loom_op_mean(t, loom_op_mul(t, p->out.y, p->out.y));
    if (loss && b->step == p->poison_at) loss->data[0] = NAN; /* a step that fails its finite check */
    return loss;
}

static loom_status poisoned_commit(void *ctx)
{
    poisoned *p = ctx;
    return loom_state_store(p->carry, &p->out);
}

Test(state, a_failed_step_commits_nothing)
{
    static poisoned p;
    stack_init(&p.s, "lstm", 2, 3, 4);
    fill(p.x, sizeof p.x / sizeof *p.x, 7);
    p.poison_at = 2;
    cr_assert_not_null(p.carry = loom_state_new(&p.s.seq, 2));
    loom_dist d;
    cr_assert_eq(loom_dist_init(&d, NULL, NULL), LOOM_OK);
    loom_train_config c = loom_train_defaults("test");
    c.steps = 5, c.progress = 0, c.log_every = 0;
    loom_trainer tr;
    cr_assert_eq(loom_trainer_init(&tr, &c, &d, p.s.ps, loom_optim_defaults(LOOM_SGD),
                                   (loom_sched){LOOM_SCHED_CONSTANT, 0.1f, 0, 1, 1, 5, 0}, 2),
                 LOOM_OK);
    loom_task task = {&p, poisoned_forward, NULL, NULL, NULL, poisoned_commit};
    size_t n;
    float before[64];
    cr_assert_eq(loom_trainer_step(&tr, &task), LOOM_OK);
    cr_assert_eq(loom_trainer_step(&tr, &task), LOOM_OK);
    float *carried = loom_state_data(p.carry, &n);
    cr_assert_leq(n, 64);
    memcpy(before, carried, n * sizeof(float));
    double moved = 0;
    for (size_t i = 0; i < n; i++) moved += fabs(before[i]);
    cr_assert_gt(moved, 0, "two good steps carried a nonzero state");
    cr_expect_eq(loom_trainer_step(&tr, &task), LOOM_ESTATE, "the poisoned step fails");
    cr_expect_arr_eq(loom_state_data(p.carry, NULL), before, n * sizeof(float), "the failed step left the state as it was");
    loom_trainer_free(&tr);
    loom_state_free(p.carry);
    stack_free(&p.s);
    loom_dist_finish(&d, 0);
}

/* ---- no caps: a cell with 12 parameters, a stack of 12 layers ---- */

/* An LSTM with a separate weight per gate, input and recurrent, and a separate bias per
 * gate: 12 parameters. With the built-in LSTM's stacked weights copied in, it must agree. */
static const char *const GATE[4] = {"i", "f", "g", "o"};

static loom_status split_declare(loom_cell *c, loom_params *ps, const char *prefix, int layer)
{
    loom_init u = loom_cell_default_init(c->hidden_size);
    char name[32];
    for (int part = 0; part < 3; part++)
        for (int g = 0; g < 4; g++) {
            int rows = part == 2 ? 1 : c->hidden_size, cols = part == 0 ? c->input_size : c->hidden_size;
            snprintf(name, sizeof name, "%s_%s", part == 0 ? "w_x" : part == 1 ? "w_h" : "b", GATE[g]);
            if (!loom_cell_param(c, ps, prefix, name, layer, rows, cols, u)) return LOOM_EARG;
        }
    return LOOM_OK;
}

static loom_status split_step(loom_cell *c, loom_tape *t, loom_tensor *x, loom_tensor *const *st, loom_tensor **next)
{
    loom_tensor *a[4];
    for (int g = 0; g < 4; g++)
        a[g] = loom_op_add(t, loom_linear_apply(t, x, c->w[g], c->w[8 + g]), loom_linear_apply(t, st[0], c->w[4 + g], NULL));
    loom_tensor *i = loom_op_sigmoid(t, a[0]), *f = loom_op_sigmoid(t, a[1]), *gg = loom_op_tanh(t, a[2]),
                *o = loom_op_sigmoid(t, a[3]);
    next[1] = loom_op_add(t, loom_op_mul(t, f, st[1]), loom_op_mul(t, i, gg));
    next[0] = loom_op_mul(t, o, loom_op_tanh(t, next[1]));
    return loom_tape_status(t);
}

Test(caps, a_cell_with_12_parameters_equals_the_lstm_it_spells_out)
{
    enum { I = 3, H = 4, T = 5, B = 2 };
    loom_cell c;
    memset(&c, 0, sizeof c);
    strcpy(c.name, "split_lstm");
    c.input_size = I, c.hidden_size = H, c.n_state = 2, c.declare = split_declare, c.step = split_step;
    loom_seq s;
    cr_assert_eq(loom_seq_init(&s, &c, 1, 0.0f), LOOM_OK, "%s", loom_error_message());
    loom_params *ps = loom_params_new();
    cr_assert_eq(loom_seq_declare(&s, ps, "split"), LOOM_OK, "%s", loom_error_message());
    cr_assert_eq(s.cells[0].nw, 12);
    loom_rng r = loom_rng_init(1);
    cr_assert_eq(loom_params_alloc(ps, &r), LOOM_OK);
    stack ref;
    stack_init(&ref, "lstm", 1, I, H);
    loom_tensor **w = s.cells[0].w, **rw = ref.seq.cells[0].w; /* rw: weight_ih, weight_hh, bias_ih, bias_hh */
    for (int g = 0; g < 4; g++) {
        memcpy(w[g]->data, rw[0]->data + g * H * I, sizeof(float) * H * I);
        memcpy(w[4 + g]->data, rw[1]->data + g * H * H, sizeof(float) * H * H);
        for (int j = 0; j < H; j++) w[8 + g]->data[j] = rw[2]->data[g * H + j] + rw[3]->data[g * H + j];
    }
    float x[T * B * I], ys[T * B * H], yr[T * B * H];
    fill(x, T * B * I, 3);
    loom_tape *t = loom_tape_new(0);
    loom_state *ss = loom_state_new(&s, B), *sr = loom_state_new(&ref.seq, B);
    loom_tape_reset(t);
    loom_seq_out o;
    loom_tensor *xt = loom_tape_from(t, T * B, I, x);
    cr_assert_eq(loom_seq_forward(&s, t, xt, T, B, NULL, 0, ss, NULL, &o), LOOM_OK, "%s", loom_error_message());
    memcpy(ys, o.y->data, sizeof ys);
    window(&ref, t, x, T, B, I, sr, yr);
    for (int i = 0; i < T * B * H; i++) cr_expect_float_eq(ys[i], yr[i], 1e-5, "element %d: %g vs %g", i, ys[i], yr[i]);
    loom_state_free(ss), loom_state_free(sr);
    loom_tape_free(t);
    stack_free(&ref);
    loom_seq_free(&s);
    loom_params_free(ps);
}

/* A fixed ramp of inputs through the stack, projected to a scalar (T, B from the stack). */
static loom_tensor *ramp_loss(loom_tape *t, void *ctx)
{
    stack *s = ctx;
    int n = s->T * s->B, I = s->seq.cells[0].input_size;
    loom_tensor *x = loom_tape_tensor(t, n, I);
    for (int i = 0; i < n * I; i++) x->data[i] = 0.07f * (float)(i % 11) - 0.3f;
    loom_seq_out o;
    if (loom_seq_forward(&s->seq, t, x, s->T, s->B, NULL, 1, NULL, NULL, &o) != LOOM_OK) return NULL;
    return project(t, o.y);
}

Test(caps, a_12_layer_stack_trains_and_gradchecks)
{
    stack s;
    stack_init(&s, "gru", 12, 2, 3);
    s.T = 3, s.B = 2;
    cr_assert_eq(s.seq.layers, 12);
    cr_assert_eq(loom_params_count(s.ps), 48);
    cr_expect_not_null(loom_params_find(s.ps, "gru.weight_hh_l11"));
    /* Only the first and last layers' recurrent weights are checked, to keep the test short. */
    loom_tensor *wrt[2] = {loom_params_find(s.ps, "gru.weight_hh_l0"), loom_params_find(s.ps, "gru.weight_hh_l11")};
    expect_gradcheck(ramp_loss, &s, wrt, 2, 1e-2, "12-layer gru");
    loom_seq bad;
    loom_cell c;
    loom_gru_init(&c, 2, 3);
    cr_expect_eq(loom_seq_init(&bad, &c, LOOM_SEQ_MAX_LAYERS + 1, 0.0f), LOOM_EARG);
    cr_expect(strstr(loom_error_message(), "layers (expected 1 to"), "%s", loom_error_message());
    stack_free(&s);
}

/* ---- freezing: every optimizer leaves a frozen parameter as it is ---- */

Test(freeze, frozen_parameters_are_untouched_by_every_optimizer)
{
    static const char *const kinds[] = {"sgd", "adam", "adamw", "rmsprop", "adagrad"};
    for (int k = 0; k < 5; k++) {
        stack s;
        stack_init(&s, "lstm", 2, 3, 4);
        s.T = 4, s.B = 3;
        cr_assert_eq(loom_params_freeze(s.ps, "lstm.weight_hh_l0", 1), LOOM_OK);
        cr_assert_eq(loom_params_freeze(s.ps, "lstm.bias_ih_l1", 1), LOOM_OK);
        cr_expect_eq(loom_params_freeze(s.ps, "lstm.nope", 1), LOOM_EARG);
        cr_expect(strstr(loom_error_message(), "'lstm.nope'"), "%s", loom_error_message());
        size_t n = loom_params_size(s.ps);
        float *before = malloc(n * sizeof(float));
        memcpy(before, loom_params_data(s.ps), n * sizeof(float));
        loom_optim_kind kind;
        cr_assert_eq(loom_optim_parse(kinds[k], &kind), LOOM_OK);
        loom_optim_config oc = loom_optim_defaults(kind);
        oc.weight_decay = 0.1f, oc.momentum = kind == LOOM_SGD || kind == LOOM_RMSPROP ? 0.9f : 0.0f;
        loom_optim o;
        cr_assert_eq(loom_optim_init(&o, oc, n), LOOM_OK);
        loom_tape *t = loom_tape_new(0);
        for (int step = 0; step < 3; step++) {
            loom_tape_reset(t);
            loom_params_zero_grad(s.ps);
            loom_tensor *l = ramp_loss(t, &s);
            cr_assert_eq(loom_tape_backward(t, l), LOOM_OK, "%s", loom_error_message());
            cr_assert_eq(loom_optim_step_params(&o, s.ps, 0.05f), LOOM_OK);
        }
        for (int i = 0; i < loom_params_count(s.ps); i++) {
            loom_tensor *v = loom_params_view(s.ps, i);
            size_t off = (size_t)(v->data - loom_params_data(s.ps));
            int same = memcmp(v->data, before + off, loom_tensor_size(v) * sizeof(float)) == 0;
            if (!v->requires_grad) {
                cr_expect(same, "%s: frozen %s changed", kinds[k], loom_params_name(s.ps, i));
                for (size_t j = 0; j < loom_tensor_size(v); j++)
                    cr_expect(o.m[off + j] == 0 && o.v[off + j] == 0, "%s: frozen %s has optimizer state", kinds[k],
                              loom_params_name(s.ps, i));
            } else {
                cr_expect(!same, "%s: trainable %s did not change", kinds[k], loom_params_name(s.ps, i));
            }
        }
        loom_tape_free(t);
        loom_optim_free(&o);
        free(before);
        stack_free(&s);
    }
}

/* ---- one error channel ---- */

Test(errors, a_failed_layer_call_keeps_its_message_through_the_chain)
{
    /* A batch that does not fit the state, then ops on the missing output: the first
     * message survives, and the tape holds its status, so one check at the end suffices. */
    loom_cell c;
    loom_lstm_init(&c, 3, 4, 0.0f);
    loom_seq s;
    cr_assert_eq(loom_seq_init(&s, &c, 1, 0.0f), LOOM_OK);
    loom_params *ps = loom_params_new();
    cr_assert_eq(loom_seq_declare(&s, ps, "lstm"), LOOM_OK);
    loom_rng r = loom_rng_init(1);
    cr_assert_eq(loom_params_alloc(ps, &r), LOOM_OK);
    loom_state *st = loom_state_new(&s, 2);
    loom_tape *t = loom_tape_new(0);
    loom_tensor *x = loom_tape_zeros(t, 4 * 3, 3);
    loom_seq_out o;
    cr_expect_eq(loom_seq_forward(&s, t, x, 4, 3, NULL, 1, st, NULL, &o), LOOM_ESTATE);
    int tgt[12] = {0};
    loom_tensor *loss = loom_op_softmax_ce(t, loom_op_tanh(t, o.y), tgt, NULL);
    cr_expect_null(loss);
    cr_expect_eq(loom_tape_status(t), LOOM_ESTATE);
    cr_expect(strstr(loom_error_message(), "batch 3 differs from the state's batch 2"), "%s", loom_error_message());
    loom_state_free(st);
    loom_tape_free(t);
    loom_seq_free(&s);
    loom_params_free(ps);
}

