/* NULL and misuse at the public API of autograd (loom_autograd.h): an error, never a crash.
 * This file and tests/test_null.c (layers, io, dist) together call every public function
 * that takes a pointer with each required pointer NULL in turn. One test per row, so
 * Criterion names the row whose call crashed (each runs alone, in its own process). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "loom_autograd.h"

/* Valid objects for every argument but the one a row makes NULL. */
typedef struct fixture {
    loom_tape *t;            /* a fresh tape, reset after the rest was made */
    loom_tensor *a, *b, *c;  /* heap [2x3]: a and b require a gradient, c does not */
    loom_tensor *tab;        /* heap [4x3] embedding table */
    loom_tensor *parts[2];   /* {a, b} */
    loom_tensor *holes[2];   /* {a, NULL} */
    loom_tensor *wrt[1];     /* {a} */
    loom_tensor *no_wrt[1];  /* {NULL} */
    const char *names[1];
    loom_params *ps, *fresh; /* ps: allocated; fresh: one uniform-init parameter "w", not allocated */
    loom_arena *arena;
    loom_rng rng, unused; /* unused: counter 0 */
    loom_gradcheck_result res;
    float buf[16];
    int idx[2], target[2];
    unsigned char keep[2];
    char str[160];
} fixture;

static fixture F;

static loom_tensor *scalar(loom_tape *t, void *ctx)
{
    (void)ctx;
    return loom_op_sum(t, loom_op_tanh(t, F.a));
}

static void noop_backward(loom_node *nd) { (void)nd; }

static void setup(void)
{
    memset(&F, 0, sizeof F);
    cr_assert_not_null(F.a = loom_tensor_new(2, 3, 1));
    cr_assert_not_null(F.b = loom_tensor_new(2, 3, 1));
    cr_assert_not_null(F.c = loom_tensor_new(2, 3, 0));
    cr_assert_not_null(F.tab = loom_tensor_new(4, 3, 1));
    for (int i = 0; i < 6; i++) F.a->data[i] = 0.1f * (float)i - 0.2f, F.b->data[i] = 0.3f - 0.05f * (float)i;
    F.parts[0] = F.a, F.parts[1] = F.b;
    F.holes[0] = F.a;
    F.wrt[0] = F.a;
    F.names[0] = "a";
    F.idx[0] = 0, F.idx[1] = 3;
    F.target[0] = 0, F.target[1] = 2;
    F.keep[0] = 1;
    F.rng = loom_rng_init(11);
    F.unused = loom_rng_init(12);
    cr_assert_not_null(F.ps = loom_params_new());
    cr_assert_not_null(F.fresh = loom_params_new());
    cr_assert_not_null(loom_params_add(F.ps, "v", 2, 2, (loom_init){LOOM_INIT_UNIFORM, -1.0f, 1.0f}));
    cr_assert_eq(loom_params_alloc(F.ps, &F.rng), LOOM_OK, "%s", loom_error_message());
    cr_assert_not_null(loom_params_add(F.fresh, "w", 2, 2, (loom_init){LOOM_INIT_UNIFORM, -1.0f, 1.0f}));
    cr_assert_not_null(F.arena = loom_arena_new(0));
    /* Last: a failure since the tape's reset would be taken for the cause of a NULL input. */
    cr_assert_not_null(F.t = loom_tape_new(0));
    loom_tape_reset(F.t);
    loom_error_clear();
}

static void teardown(void)
{
    loom_tape_free(F.t);
    loom_arena_free(F.arena);
    loom_params_free(F.ps);
    loom_params_free(F.fresh);
    loom_tensor_free(F.a);
    loom_tensor_free(F.b);
    loom_tensor_free(F.c);
    loom_tensor_free(F.tab);
}

TestSuite(errors, .init = setup, .fini = teardown);
TestSuite(tensor, .init = setup, .fini = teardown);
TestSuite(arena, .init = setup, .fini = teardown);
TestSuite(rng, .init = setup, .fini = teardown);
TestSuite(params, .init = setup, .fini = teardown);
TestSuite(tape, .init = setup, .fini = teardown);
TestSuite(ops_no_tape, .init = setup, .fini = teardown);
TestSuite(ops, .init = setup, .fini = teardown);
TestSuite(gradcheck, .init = setup, .fini = teardown);
TestSuite(kernels, .init = setup, .fini = teardown);

/* The message names the call (or the op) and says "<what> is NULL". */
static void expect_names(const char *name, const char *what)
{
    const char *msg = loom_error_message();
    char want[64];
    snprintf(want, sizeof want, "%s is NULL", what);
    cr_expect(strstr(msg, name) && strstr(msg, want), "the message '%s' should name '%s' and say '%s'", msg, name,
              want);
}

static void expect_tape_failed(void)
{
    cr_expect_neq(loom_tape_status(F.t), LOOM_OK, "the tape should be marked failed");
}

#include "null_rows.h"

/* An op given a NULL tape: NULL, and the message names the op (`name`) and the tape. */
#define OT(fn, name, ...)                                                                                         \
    Test(ops_no_tape, fn)                                                                                         \
    {                                                                                                             \
        cr_expect_null((__VA_ARGS__), #fn " with a NULL tape gave a pointer");                                    \
        expect_names(name, "tape");                                                                               \
    }
/* A call on a valid tape given NULL for `arg`: NULL, the message names `name` and `what`,
 * and the tape is marked failed. */
#define TF(suite, fn, arg, name, what, ...)                                                                       \
    Test(suite, fn##__##arg)                                                                                      \
    {                                                                                                             \
        cr_expect_null((__VA_ARGS__), #fn " with " #arg " NULL gave a pointer");                                 \
        expect_names(name, what);                                                                                 \
        expect_tape_failed();                                                                                     \
    }
/* ---------------------------------------------------------------- errors, tensors, arena */

static const char *volatile no_fmt = NULL; /* volatile: the compiler cannot see it is NULL */

IS(errors, error_set_without_fmt, "",
   loom_error_set(LOOM_EIO, no_fmt) == LOOM_EIO && strcmp(loom_error_message(), "(no message)") == 0)
FR(errors, free,                          loom_free(NULL))

IN(tensor, tensor_size,         tensor, (size_t)0, loom_tensor_size(NULL))
FR(tensor, tensor_free,                   loom_tensor_free(NULL))
FR(tensor, tensor_zero_grad,              loom_tensor_zero_grad(NULL))

PT(arena, arena_alloc,          arena,    loom_arena_alloc(NULL, 64))
VD(arena, arena_reset,          arena,    loom_arena_reset(NULL))
IN(arena, arena_used,           arena, (size_t)0, loom_arena_used(NULL))
IN(arena, arena_capacity,       arena, (size_t)0, loom_arena_capacity(NULL))
IN(arena, arena_high_water,     arena, (size_t)0, loom_arena_high_water(NULL))
FR(arena, arena_free,                     loom_arena_free(NULL))

/* ---------------------------------------------------------------- RNG */

IN(rng, rng_next,               rng, (uint64_t)0, loom_rng_next(NULL))
IN(rng, rng_uniform,            rng, 0.0f, loom_rng_uniform(NULL))
IN(rng, rng_normal,             rng, 0.0f, loom_rng_normal(NULL))
IN(rng, rng_below,              rng, (uint32_t)0, loom_rng_below(NULL, 10))
VD(rng, rng_fill_uniform,       rng,      loom_rng_fill_uniform(NULL, F.buf, 4, 0.0f, 1.0f))
VD(rng, rng_fill_uniform,       out,      loom_rng_fill_uniform(&F.rng, NULL, 4, 0.0f, 1.0f))
VD(rng, rng_fill_normal,        rng,      loom_rng_fill_normal(NULL, F.buf, 4, 0.0f, 1.0f))
VD(rng, rng_fill_normal,        out,      loom_rng_fill_normal(&F.rng, NULL, 4, 0.0f, 1.0f))

IS(rng, fill_nothing_into_null, "",
   (loom_rng_fill_uniform(&F.unused, NULL, 0, 0.0f, 1.0f), loom_rng_fill_normal(&F.unused, NULL, 0, 0.0f, 1.0f),
    F.unused.counter == 0 && !loom_error_message()[0]))
IS(rng, fill_null_out_leaves_counter, "out is NULL",
   (loom_rng_fill_uniform(&F.unused, NULL, 4, 0.0f, 1.0f), F.unused.counter == 0))

/* ---------------------------------------------------------------- params */

PT(params, params_add,          params,   loom_params_add(NULL, "x", 2, 2, (loom_init){LOOM_INIT_ZERO, 0, 0}))
PT(params, params_add,          name,     loom_params_add(F.fresh, NULL, 2, 2, (loom_init){LOOM_INIT_ZERO, 0, 0}))
ST(params, params_alloc,        params,   loom_params_alloc(NULL, &F.rng))
VD(params, params_zero_grad,    params,   loom_params_zero_grad(NULL))
IN(params, params_size,         params, (size_t)0, loom_params_size(NULL))
PT(params, params_data,         params,   loom_params_data(NULL))
PT(params, params_grad,         params,   loom_params_grad(NULL))
IN(params, params_count,        params, 0, loom_params_count(NULL))
PT(params, params_name,         params,   loom_params_name(NULL, 0))
PT(params, params_view,         params,   loom_params_view(NULL, 0))
PT(params, params_find,         params,   loom_params_find(NULL, "v"))
PT(params, params_find,         name,     loom_params_find(F.ps, NULL))
ST(params, params_freeze,       params,   loom_params_freeze(NULL, "v", 1))
ST(params, params_freeze,       name,     loom_params_freeze(F.ps, NULL, 1))
FR(params, params_free,                   loom_params_free(NULL))

/* A random init needs a generator: refused with nothing allocated, then allocated with one. */
Test(params, alloc_without_rng_refused_then_works)
{
    uint64_t before = loom_alloc_count();
    cr_expect_eq(loom_params_alloc(F.fresh, NULL), LOOM_EARG);
    cr_expect(strstr(loom_error_message(), "params_alloc: rng is NULL but parameter 'w' has a random init"), "%s",
              loom_error_message());
    cr_expect_eq(loom_alloc_count(), before, "the refused alloc allocated");
    cr_expect_null(loom_params_data(F.fresh));
    cr_expect_eq(loom_params_alloc(F.fresh, &F.rng), LOOM_OK, "%s", loom_error_message());
    cr_assert_not_null(loom_params_data(F.fresh));
    float s = 0;
    for (int i = 0; i < 4; i++) s += loom_params_data(F.fresh)[i] * loom_params_data(F.fresh)[i];
    cr_expect_gt(s, 0.0f, "the uniform init drew nothing");
}

/* Without a random init no generator is needed. */
Test(params, alloc_without_rng_no_random_init)
{
    loom_params *p = loom_params_new();
    cr_assert_not_null(p);
    cr_assert_not_null(loom_params_add(p, "k", 1, 2, (loom_init){LOOM_INIT_CONST, 2.5f, 0}));
    cr_assert_not_null(loom_params_add(p, "z", 1, 2, (loom_init){LOOM_INIT_ZERO, 0, 0}));
    cr_expect_eq(loom_params_alloc(p, NULL), LOOM_OK, "%s", loom_error_message());
    cr_expect(loom_params_data(p)[1] == 2.5f && loom_params_data(p)[2] == 0.0f);
    loom_params_free(p);
}
IS(params, name_index_past_end,       "index 1", loom_params_name(F.ps, 1) == NULL)
IS(params, name_index_negative,       "index -1", loom_params_name(F.ps, -1) == NULL)
IS(params, view_index_past_end,       "index 1", loom_params_view(F.ps, 1) == NULL)
IS(params, view_index_negative,       "index -1", loom_params_view(F.ps, -1) == NULL)
IS(params, zero_grad_before_alloc,    "", (loom_params_zero_grad(F.fresh), !loom_error_message()[0]))
IS(params, buffers_before_alloc_null, "",
   loom_params_data(F.fresh) == NULL && loom_params_grad(F.fresh) == NULL && !loom_error_message()[0])
IS(params, find_missing_is_no_error,  "", loom_params_find(F.ps, "nope") == NULL && !loom_error_message()[0])

/* ---------------------------------------------------------------- tape */

VD(tape, tape_reset,            tape,     loom_tape_reset(NULL))
IN(tape, tape_set_nograd,       tape, 0,  loom_tape_set_nograd(NULL, 1))
IN(tape, tape_nograd,           tape, 0,  loom_tape_nograd(NULL))
ST(tape, tape_backward,         tape,     loom_tape_backward(NULL, F.a))
ST(tape, tape_backward,         loss,     loom_tape_backward(F.t, NULL))
ST(tape, tape_backward_seeded,  tape,     loom_tape_backward_seeded(NULL, &F.a, (const float *const[]){F.a->data}, 1))
ST(tape, tape_backward_seeded,  outs,     loom_tape_backward_seeded(F.t, NULL, (const float *const[]){F.a->data}, 1))
ST(tape, tape_backward_seeded,  grads,    loom_tape_backward_seeded(F.t, &F.a, NULL, 1))
VD(tape, tape_set_hook,         tape,     loom_tape_set_hook(NULL, NULL, NULL))
VD(tape, tape_poll,             tape,     loom_tape_poll(NULL))
PT(tape, tape_node,             tape,     loom_tape_node(NULL, 0))
PT(tape, tape_arena,            tape,     loom_tape_arena(NULL))
PT(tape, tape_tensor,           tape,     loom_tape_tensor(NULL, 2, 2))
PT(tape, tape_zeros,            tape,     loom_tape_zeros(NULL, 2, 2))
PT(tape, tape_from,             tape,     loom_tape_from(NULL, 2, 2, F.buf))
TF(tape, tape_from,             src,      "tape_from", "src", loom_tape_from(F.t, 2, 2, NULL))
PT(tape, tape_view_rows,        tape,     loom_tape_view_rows(NULL, F.a, 0, 1))
TF(tape, tape_view_rows,        x,        "view_rows", "input 0", loom_tape_view_rows(F.t, NULL, 0, 1))
ST(tape, tape_check,            tape,     loom_tape_check(NULL, NULL, F.parts, 2))
ST(tape, tape_check,            in,       loom_tape_check(F.t, NULL, NULL, 1))
ST(tape, tape_status,           tape,     loom_tape_status(NULL))
IN(tape, tape_length,           tape, 0,  loom_tape_length(NULL))
PT(tape, tape_record,           tape,     loom_tape_record(NULL, "x", noop_backward, F.c, F.parts, 2))
TF(tape, tape_record,           out,      "tape_record", "out",
   loom_tape_record(F.t, "x", noop_backward, NULL, F.parts, 2))
TF(tape, tape_record,           backward, "tape_record", "backward", loom_tape_record(F.t, "x", NULL, F.c, F.parts, 2))
TF(tape, tape_record,           in,       "tape_record", "in", loom_tape_record(F.t, "x", noop_backward, F.c, NULL, 2))
TF(tape, tape_record,           in_entry, "tape_record", "in[1]",
   loom_tape_record(F.t, "x", noop_backward, F.c, F.holes, 2))
PT(tape, tape_grad,             tape,     loom_tape_grad(NULL, F.a))
TF(tape, tape_grad,             x,        "tape_grad", "x", loom_tape_grad(F.t, NULL))
PT(tape, tape_fail,             tape,     loom_tape_fail(NULL, LOOM_ESHAPE, "op: it broke"))
FR(tape, tape_free,                       loom_tape_free(NULL))

IS(tape, check_marks_tape,          "in is NULL",
   loom_tape_check(F.t, NULL, NULL, 1) == LOOM_EARG && loom_tape_status(F.t) == LOOM_EARG)
IS(tape, check_nothing_in_null,     "", loom_tape_check(F.t, "mine", NULL, 0) == LOOM_OK && !loom_error_message()[0])
IS(tape, fail_without_tape_quotes,  "op: it broke", loom_tape_fail(NULL, LOOM_ESHAPE, "op: it broke") == NULL)
IS(tape, fail_without_fmt,          "",
   loom_tape_fail(F.t, LOOM_EIO, no_fmt) == NULL && loom_tape_status(F.t) == LOOM_EIO &&
       strcmp(loom_error_message(), "(no message)") == 0)
IS(tape, record_op_name_optional,   "",
   loom_tape_record(F.t, NULL, noop_backward, F.c, F.parts, 2) != NULL && loom_tape_status(F.t) == LOOM_OK)
IS(tape, record_no_inputs_null_in,  "",
   loom_tape_record(F.t, "x", noop_backward, F.c, NULL, 0) == NULL && loom_tape_status(F.t) == LOOM_OK)
IS(tape, record_negative_n_in,      "n_in is -1",
   loom_tape_record(F.t, "x", noop_backward, F.c, F.parts, -1) == NULL && loom_tape_status(F.t) == LOOM_EARG)

/* ---------------------------------------------------------------- ops given a NULL tape */

/* function                     op name      call */
OT(op_matmul,                   "matmul",    loom_op_matmul(NULL, F.a, F.b, 0, 1))
OT(op_add,                      "add",       loom_op_add(NULL, F.a, F.b))
OT(op_sub,                      "sub",       loom_op_sub(NULL, F.a, F.b))
OT(op_mul,                      "mul",       loom_op_mul(NULL, F.a, F.b))
OT(op_scale,                    "scale",     loom_op_scale(NULL, F.a, 2.0f))
OT(op_sigmoid,                  "sigmoid",   loom_op_sigmoid(NULL, F.a))
OT(op_tanh,                     "tanh",      loom_op_tanh(NULL, F.a))
OT(op_relu,                     "relu",      loom_op_relu(NULL, F.a))
OT(op_concat,                   "concat",    loom_op_concat(NULL, F.parts, 2))
OT(op_slice,                    "slice",     loom_op_slice(NULL, F.a, 0, 2))
OT(op_rows,                     "rows",      loom_op_rows(NULL, F.a, 0, 1))
OT(op_vstack,                   "vstack",    loom_op_vstack(NULL, F.parts, 2))
OT(op_sum,                      "sum",       loom_op_sum(NULL, F.a))
OT(op_mean,                     "mean",      loom_op_mean(NULL, F.a))
OT(op_embedding,                "embedding", loom_op_embedding(NULL, F.tab, F.idx, 2))
OT(op_softmax_ce,               "softmax_ce", loom_op_softmax_ce(NULL, F.a, F.target, NULL))
OT(op_mse,                      "mse",       loom_op_mse(NULL, F.a, F.b, NULL))
OT(op_dropout,                  "dropout",   loom_op_dropout(NULL, F.a, 0.5f, &F.rng))
OT(op_dropout_shard,            "dropout",   loom_op_dropout_shard(NULL, F.a, 0.5f, &F.rng, 2, 4, 0))
OT(op_detach,                   "detach",    loom_op_detach(NULL, F.a))
OT(op_select_rows,              "select_rows", loom_op_select_rows(NULL, F.keep, F.a, F.b))
OT(op_bmm,                      "bmm",       loom_op_bmm(NULL, F.a, F.b, 2, 0, 1))
OT(op_masked_softmax,           "masked_softmax", loom_op_masked_softmax(NULL, F.a, NULL))
OT(op_transpose_blocks,         "transpose_blocks", loom_op_transpose_blocks(NULL, F.a, 2))

/* ---------------------------------------------------------------- ops given a NULL argument */

/*  suite function          NULL arg  op name      what        call */
TF(ops, op_matmul,          a,        "matmul",    "input 0",  loom_op_matmul(F.t, NULL, F.b, 0, 1))
TF(ops, op_matmul,          b,        "matmul",    "input 1",  loom_op_matmul(F.t, F.a, NULL, 0, 1))
TF(ops, op_add,             a,        "add",       "input 0",  loom_op_add(F.t, NULL, F.b))
TF(ops, op_add,             b,        "add",       "input 1",  loom_op_add(F.t, F.a, NULL))
TF(ops, op_sub,             a,        "sub",       "input 0",  loom_op_sub(F.t, NULL, F.b))
TF(ops, op_sub,             b,        "sub",       "input 1",  loom_op_sub(F.t, F.a, NULL))
TF(ops, op_mul,             a,        "mul",       "input 0",  loom_op_mul(F.t, NULL, F.b))
TF(ops, op_mul,             b,        "mul",       "input 1",  loom_op_mul(F.t, F.a, NULL))
TF(ops, op_scale,           a,        "scale",     "input 0",  loom_op_scale(F.t, NULL, 2.0f))
TF(ops, op_sigmoid,         a,        "sigmoid",   "input 0",  loom_op_sigmoid(F.t, NULL))
TF(ops, op_tanh,            a,        "tanh",      "input 0",  loom_op_tanh(F.t, NULL))
TF(ops, op_relu,            a,        "relu",      "input 0",  loom_op_relu(F.t, NULL))
TF(ops, op_concat,          parts,    "concat",    "parts",    loom_op_concat(F.t, NULL, 2))
TF(ops, op_concat,          part,     "concat",    "input 1",  loom_op_concat(F.t, F.holes, 2))
TF(ops, op_slice,           a,        "slice",     "input 0",  loom_op_slice(F.t, NULL, 0, 2))
TF(ops, op_rows,            a,        "rows",      "input 0",  loom_op_rows(F.t, NULL, 0, 1))
TF(ops, op_vstack,          parts,    "vstack",    "parts",    loom_op_vstack(F.t, NULL, 2))
TF(ops, op_vstack,          part,     "vstack",    "input 1",  loom_op_vstack(F.t, F.holes, 2))
TF(ops, op_sum,             a,        "sum",       "input 0",  loom_op_sum(F.t, NULL))
TF(ops, op_mean,            a,        "mean",      "input 0",  loom_op_mean(F.t, NULL))
TF(ops, op_embedding,       table,    "embedding", "input 0",  loom_op_embedding(F.t, NULL, F.idx, 2))
TF(ops, op_embedding,       idx,      "embedding", "idx",      loom_op_embedding(F.t, F.tab, NULL, 2))
TF(ops, op_softmax_ce,      logits,   "softmax_ce", "input 0", loom_op_softmax_ce(F.t, NULL, F.target, NULL))
TF(ops, op_softmax_ce,      target,   "softmax_ce", "target",  loom_op_softmax_ce(F.t, F.a, NULL, NULL))
TF(ops, op_mse,             pred,     "mse",       "input 0",  loom_op_mse(F.t, NULL, F.b, NULL))
TF(ops, op_mse,             target,   "mse",       "target",   loom_op_mse(F.t, F.a, NULL, NULL))
TF(ops, op_dropout,         a,        "dropout",   "input 0",  loom_op_dropout(F.t, NULL, 0.5f, &F.rng))
TF(ops, op_dropout,         rng,      "dropout",   "rng",      loom_op_dropout(F.t, F.a, 0.5f, NULL))
TF(ops, op_dropout_shard,   a,        "dropout",   "input 0",  loom_op_dropout_shard(F.t, NULL, 0.5f, &F.rng, 2, 4, 0))
TF(ops, op_dropout_shard,   rng,      "dropout",   "rng",      loom_op_dropout_shard(F.t, F.a, 0.5f, NULL, 2, 4, 0))
TF(ops, op_detach,          a,        "detach",    "input 0",  loom_op_detach(F.t, NULL))
TF(ops, op_select_rows,     keep,     "select_rows", "keep",   loom_op_select_rows(F.t, NULL, F.a, F.b))
TF(ops, op_select_rows,     a,        "select_rows", "input 0", loom_op_select_rows(F.t, F.keep, NULL, F.b))
TF(ops, op_select_rows,     b,        "select_rows", "input 1", loom_op_select_rows(F.t, F.keep, F.a, NULL))
TF(ops, op_bmm,             a,        "bmm",       "input 0",  loom_op_bmm(F.t, NULL, F.b, 2, 0, 1))
TF(ops, op_bmm,             b,        "bmm",       "input 1",  loom_op_bmm(F.t, F.a, NULL, 2, 0, 1))
TF(ops, op_masked_softmax,  a,        "masked_softmax", "input 0", loom_op_masked_softmax(F.t, NULL, NULL))
TF(ops, op_transpose_blocks, a,       "transpose_blocks", "input 0", loom_op_transpose_blocks(F.t, NULL, 2))

/* Misuse, and optional pointers staying optional. */
IS(ops, concat_no_parts,            "concat: n is 0",
   loom_op_concat(F.t, F.parts, 0) == NULL && loom_tape_status(F.t) == LOOM_EARG)
IS(ops, vstack_negative_parts,      "vstack: n is -1",
   loom_op_vstack(F.t, F.parts, -1) == NULL && loom_tape_status(F.t) == LOOM_EARG)
IS(ops, embedding_no_indices,       "got 0",
   loom_op_embedding(F.t, F.tab, NULL, 0) == NULL && loom_tape_status(F.t) == LOOM_EARG)
IS(ops, dropout_zero_needs_no_rng,  "",
   loom_op_dropout(F.t, F.a, 0.0f, NULL) == F.a && loom_tape_status(F.t) == LOOM_OK)
IS(ops, softmax_ce_weight_optional, "", loom_op_softmax_ce(F.t, F.a, F.target, NULL) != NULL)
IS(ops, mse_weight_optional,        "", loom_op_mse(F.t, F.a, F.b, NULL) != NULL)
IS(ops, masked_softmax_mask_optional, "", loom_op_masked_softmax(F.t, F.a, NULL) != NULL)

/* ---------------------------------------------------------------- gradcheck */

ST(gradcheck, gradcheck,            fn,     loom_gradcheck(NULL, NULL, F.wrt, 1, 0.0f, 1e-2, &F.res))
ST(gradcheck, gradcheck,            wrt,    loom_gradcheck(scalar, NULL, NULL, 1, 0.0f, 1e-2, &F.res))
ST(gradcheck, gradcheck,            out,    loom_gradcheck(scalar, NULL, F.wrt, 1, 0.0f, 1e-2, NULL))
ST(gradcheck, gradcheck_named,      fn,     loom_gradcheck_named(NULL, NULL, F.wrt, F.names, 1, 0.0f, 1e-2, &F.res))
ST(gradcheck, gradcheck_named,      wrt,    loom_gradcheck_named(scalar, NULL, NULL, F.names, 1, 0.0f, 1e-2, &F.res))
ST(gradcheck, gradcheck_named,      out,    loom_gradcheck_named(scalar, NULL, F.wrt, F.names, 1, 0.0f, 1e-2, NULL))
ST(gradcheck, gradcheck_params,     fn,     loom_gradcheck_params(NULL, NULL, F.ps, 0.0f, 1e-2, &F.res))
ST(gradcheck, gradcheck_params,     ps,     loom_gradcheck_params(scalar, NULL, NULL, 0.0f, 1e-2, &F.res))
ST(gradcheck, gradcheck_params,     out,    loom_gradcheck_params(scalar, NULL, F.ps, 0.0f, 1e-2, NULL))
IN(gradcheck, gradcheck_format,     res, -1, loom_gradcheck_format(NULL, F.str, sizeof F.str))
IN(gradcheck, gradcheck_format,     buf, -1, loom_gradcheck_format(&F.res, NULL, sizeof F.str))

Test(gradcheck, gradcheck__wrt_entry)
{
    cr_expect_eq(loom_gradcheck(scalar, NULL, F.no_wrt, 1, 0.0f, 1e-2, &F.res), LOOM_EARG);
    expect_names("gradcheck", "wrt[0]");
}

Test(gradcheck, gradcheck_named__wrt_entry)
{
    cr_expect_eq(loom_gradcheck_named(scalar, NULL, F.no_wrt, F.names, 1, 0.0f, 1e-2, &F.res), LOOM_EARG);
    expect_names("gradcheck_named", "wrt[0]");
}

IS(gradcheck, params_unallocated,   "call loom_params_alloc first",
   loom_gradcheck_params(scalar, NULL, F.fresh, 0.0f, 1e-2, &F.res) == LOOM_ESTATE && F.res.worst_tensor == -1)
IS(gradcheck, names_optional,       "",
   loom_gradcheck_named(scalar, NULL, F.wrt, NULL, 1, 0.0f, 1e-2, &F.res) == LOOM_OK && F.res.checked == 6)
IS(gradcheck, format_measures,      "", loom_gradcheck_format(&F.res, NULL, 0) > 0 && !loom_error_message()[0])

/* ---------------------------------------------------------------- kernels */

VD(kernels, kernel_add_colsum,      g,      loom_kernel_add_colsum(NULL, F.buf, 2, 3))
VD(kernels, kernel_add_colsum,      x,      loom_kernel_add_colsum(F.buf, NULL, 2, 3))
IN(kernels, kernel_sum,             x, 0.0, loom_kernel_sum(NULL, 4))
IN(kernels, kernel_sumsq,           x, 0.0, loom_kernel_sumsq(NULL, 4))
VD(kernels, kernel_zero,            x,      loom_kernel_zero(NULL, 4))
VD(kernels, kernel_add_colsum_range, g,     loom_kernel_add_colsum_range(NULL, F.buf, 2, 3, 0, 3))
VD(kernels, kernel_add_colsum_range, x,     loom_kernel_add_colsum_range(F.buf, NULL, 2, 3, 0, 3))

IS(kernels, empty_needs_no_pointers, "",
   (loom_kernel_add_colsum(NULL, NULL, 0, 3), loom_kernel_zero(NULL, 0), loom_kernel_sum(NULL, 0) == 0.0 && loom_kernel_sumsq(NULL, 0) == 0.0 &&
                                                  !loom_error_message()[0]))
