/* Tape behaviour: errors, skipping, detach, no-grad, reuse. */
#include <string.h>

#include "helpers.h"

Test(tape, matmul_shape_error_names_op_and_both_shapes)
{
    loom_tape *t = loom_tape_new(0);
    loom_tensor *a = loom_tensor_new(32, 64, 0), *b = loom_tensor_new(65, 128, 0);
    loom_tensor *c = loom_op_matmul(t, a, b, 0, 0);
    cr_assert_null(c);
    cr_expect_eq(loom_tape_status(t), LOOM_ESHAPE);
    cr_expect(strstr(loom_error_message(), "matmul: [32x64] @ [65x128]: inner sizes differ") != NULL, "got '%s'",
              loom_error_message());
    loom_tensor_free(a);
    loom_tensor_free(b);
    loom_tape_free(t);
}

Test(tape, first_error_is_kept_through_a_chain)
{
    loom_tape *t = loom_tape_new(0);
    loom_tensor *a = loom_tensor_new(2, 3, 1), *b = loom_tensor_new(2, 4, 0);
    loom_tensor *y = loom_op_sum(t, loom_op_tanh(t, loom_op_add(t, a, b)));
    cr_assert_null(y);
    cr_expect(strstr(loom_error_message(), "add: [2x3] + [2x4]") != NULL, "got '%s'", loom_error_message());
    cr_expect_eq(loom_tape_backward(t, y), LOOM_ESHAPE);
    loom_tape_reset(t);
    cr_expect_eq(loom_tape_status(t), LOOM_OK, "reset clears the error");
    loom_tensor_free(a);
    loom_tensor_free(b);
    loom_tape_free(t);
}

Test(tape, bad_arguments_are_errors_not_crashes)
{
    loom_tape *t = loom_tape_new(0);
    loom_tensor *a = loom_tensor_new(2, 3, 1);
    int bad[] = {0, 5};
    cr_expect_null(loom_op_embedding(t, a, bad, 2));
    cr_expect(strstr(loom_error_message(), "index 5") != NULL, "%s", loom_error_message());
    loom_tape_reset(t);
    int tg[] = {0, 3};
    cr_expect_null(loom_op_softmax_ce(t, a, tg, NULL));
    cr_expect(strstr(loom_error_message(), "target 3") != NULL, "%s", loom_error_message());
    loom_tape_reset(t);
    cr_expect_null(loom_op_slice(t, a, 2, 2));
    loom_tape_reset(t);
    loom_rng r = loom_rng_init(1);
    cr_expect_null(loom_op_dropout(t, a, 1.0f, &r));
    loom_tape_reset(t);
    cr_expect_null(loom_op_tanh(t, NULL));
    cr_expect(strstr(loom_error_message(), "tanh: input 0 is NULL") != NULL, "%s", loom_error_message());
    cr_expect_null(loom_tensor_new(0, 3, 0));
    loom_tensor_free(a);
    loom_tape_free(t);
}

Test(tape, backward_twice_is_refused)
{
    loom_tape *t = loom_tape_new(0);
    loom_tensor *a = rand_tensor(2, 3, 1, 1, -1, 1);
    loom_tensor *y = loom_op_sum(t, loom_op_tanh(t, a));
    cr_assert_eq(loom_tape_backward(t, y), LOOM_OK);
    float g0 = a->grad[0];
    cr_expect_eq(loom_tape_backward(t, y), LOOM_ESTATE);
    cr_expect_eq(a->grad[0], g0, "a refused backward must not add again");
    loom_tensor_free(a);
    loom_tape_free(t);
}

Test(tape, nodes_without_grad_inputs_are_not_recorded)
{
    loom_tape *t = loom_tape_new(0);
    loom_tensor *p = rand_tensor(3, 3, 1, 2, -1, 1), *x = rand_tensor(3, 3, 0, 3, -1, 1);
    loom_tensor *u = loom_op_tanh(t, loom_op_matmul(t, x, x, 0, 0)); /* constant branch */
    cr_expect_eq(loom_tape_length(t), 0);
    cr_expect_eq(u->requires_grad, 0);
    loom_tensor *y = loom_op_sum(t, loom_op_mul(t, p, u));
    cr_expect_eq(loom_tape_length(t), 2);
    cr_assert_eq(loom_tape_backward(t, y), LOOM_OK);
    cr_expect_null(u->grad, "no gradient buffer was made for the constant branch");
    for (int i = 0; i < 9; i++) cr_expect_float_eq(p->grad[i], u->data[i], 1e-7);
    loom_tensor_free(p);
    loom_tensor_free(x);
    loom_tape_free(t);
}

Test(tape, detach_stops_gradient)
{
    loom_tape *t = loom_tape_new(0);
    loom_tensor *a = rand_tensor(2, 2, 1, 4, -1, 1);
    loom_tensor *h = loom_op_tanh(t, a);
    loom_tensor *d = loom_op_detach(t, h);
    cr_expect_eq(d->data, h->data, "detach shares the values");
    loom_tensor *y = loom_op_sum(t, loom_op_add(t, loom_op_mul(t, d, d), a));
    cr_assert_eq(loom_tape_backward(t, y), LOOM_OK);
    for (int i = 0; i < 4; i++) cr_expect_float_eq(a->grad[i], 1.0f, 1e-7, "only the direct path reaches a");
    loom_tensor_free(a);
    loom_tape_free(t);
}

Test(tape, nograd_records_nothing_and_backward_refuses)
{
    loom_tape *t = loom_tape_new(0);
    loom_tensor *a = rand_tensor(4, 4, 1, 5, -1, 1);
    cr_expect_eq(loom_tape_set_nograd(t, 1), 0);
    loom_tensor *y = loom_op_sum(t, loom_op_sigmoid(t, loom_op_matmul(t, a, a, 0, 1)));
    cr_assert_not_null(y);
    cr_expect_eq(loom_tape_length(t), 0);
    cr_expect_eq(loom_tape_backward(t, y), LOOM_ESTATE);
    loom_tape_set_nograd(t, 0);
    loom_tensor_free(a);
    loom_tape_free(t);
}

Test(tape, gradients_accumulate_into_shared_inputs)
{
    /* y = sum(a*a + a): dy/da = 2a + 1, a used three times. */
    loom_tape *t = loom_tape_new(0);
    loom_tensor *a = rand_tensor(3, 5, 1, 6, -1, 1);
    loom_tensor *y = loom_op_sum(t, loom_op_add(t, loom_op_mul(t, a, a), a));
    cr_assert_eq(loom_tape_backward(t, y), LOOM_OK);
    for (int i = 0; i < 15; i++) cr_expect_float_eq(a->grad[i], 2 * a->data[i] + 1, 1e-6);
    loom_tensor_free(a);
    loom_tape_free(t);
}

Test(tape, params_views_share_flat_buffers)
{
    loom_params *ps = loom_params_new();
    loom_tensor *w = loom_params_add(ps, "w", 3, 4, (loom_init){LOOM_INIT_UNIFORM, -1, 1});
    loom_tensor *b = loom_params_add(ps, "b", 1, 4, (loom_init){LOOM_INIT_CONST, 0.5f, 0});
    cr_expect_null(loom_params_add(ps, "w", 1, 1, (loom_init){0}), "duplicate names are refused");
    loom_rng r = loom_rng_init(9);
    cr_assert_eq(loom_params_alloc(ps, &r), LOOM_OK);
    cr_expect_eq(loom_params_size(ps), 16u);
    cr_expect_eq(w->data, loom_params_data(ps));
    cr_expect_eq(b->data, loom_params_data(ps) + 12);
    cr_expect_eq(b->grad, loom_params_grad(ps) + 12);
    cr_expect_eq(b->data[3], 0.5f);
    cr_expect_eq(loom_params_find(ps, "b"), b);
    cr_expect_str_eq(loom_params_name(ps, 1), "b");
    cr_expect_null(loom_params_add(ps, "late", 1, 1, (loom_init){0}), "no adds after alloc");
    loom_tape *t = loom_tape_new(0);
    loom_tensor *y = loom_op_sum(t, loom_op_add(t, w, b));
    cr_assert_eq(loom_tape_backward(t, y), LOOM_OK);
    cr_expect_float_eq(loom_params_grad(ps)[12], 3.0f, 1e-7, "bias grad is the column sum");
    loom_params_zero_grad(ps);
    cr_expect_eq(loom_params_grad(ps)[12], 0.0f);
    loom_tape_free(t);
    loom_params_free(ps);
}

Test(arena, grows_then_coalesces_on_reset)
{
    loom_arena *a = loom_arena_new(1024);
    for (int i = 0; i < 10; i++) cr_assert_not_null(loom_arena_alloc(a, 1000));
    size_t cap = loom_arena_capacity(a);
    cr_expect_geq(cap, 10000u);
    cr_expect_eq(loom_arena_high_water(a), 10u * 1024u, "ten 1000-byte pieces in 64-byte units");
    loom_arena_reset(a);
    cr_expect_eq(loom_arena_used(a), 0u);
    cr_expect_eq(loom_arena_high_water(a), 10u * 1024u, "the high water outlives the reset");
    /* merged to the step's need (plus 1/16), not to the doubling chunks' sum (15 KiB here) */
    cr_expect(loom_arena_capacity(a) >= 10240u && loom_arena_capacity(a) <= 10880u, "capacity %zu after the merge",
              loom_arena_capacity(a));
    uint64_t before = loom_alloc_count();
    for (int i = 0; i < 10; i++) {
        void *p = loom_arena_alloc(a, 1000);
        cr_assert_not_null(p);
        cr_expect_eq((uintptr_t)p % 64, 0u, "64-byte aligned");
    }
    cr_expect_eq(loom_alloc_count(), before, "second pass fits in the merged chunk");
    loom_arena_free(a);
}

/* ---- one error channel ---- */

Test(errors, a_null_after_a_failed_allocation_keeps_the_allocation_message)
{
    loom_tape *t = loom_tape_new(0);
    loom_tensor *bad = loom_tape_tensor(t, -1, 3); /* fails: marks the tape */
    cr_expect_null(loom_op_tanh(t, bad));
    cr_expect(strstr(loom_error_message(), "sizes must be positive"), "%s", loom_error_message());
    loom_tape_reset(t);
    /* A failure outside the tape (a heap tensor) followed by ops on its NULL. */
    cr_expect_null(loom_tensor_new(0, 3, 0));
    cr_expect_null(loom_op_sigmoid(t, NULL));
    cr_expect_eq(loom_tape_status(t), LOOM_ESHAPE);
    cr_expect(strstr(loom_error_message(), "tensor_new: [0x3]"), "%s", loom_error_message());
    loom_tape_reset(t);
    cr_expect_null(loom_op_sigmoid(t, NULL)); /* a NULL with no failure before it is the caller's */
    cr_expect(strstr(loom_error_message(), "sigmoid: input 0 is NULL"), "%s", loom_error_message());
    loom_tape_free(t);
}

Test(errors, a_tensor_of_an_earlier_step_is_refused)
{
    /* The check reads the stale header, so it sees it while the arena has not reused
     * that memory: here the new step allocates less than the old one did. */
    loom_tape *t = loom_tape_new(0);
    cr_assert_not_null(loom_tape_zeros(t, 2, 2));
    loom_tensor *old = loom_tape_zeros(t, 2, 2);
    loom_tape_reset(t);
    loom_tensor *now = loom_tape_zeros(t, 2, 2);
    cr_expect_null(loom_op_add(t, now, old));
    cr_expect_eq(loom_tape_status(t), LOOM_ESTATE);
    cr_expect(strstr(loom_error_message(), "add: input 1 is a tensor of an earlier step"), "%s", loom_error_message());
    loom_tape_free(t);
}

Test(errors, requires_grad_set_on_a_heap_tensor_after_creation)
{
    /* The gradient it then gets is its own heap memory, freed with it (ASan checks the free). */
    loom_tensor *w = loom_tensor_new(2, 3, 0);
    for (int i = 0; i < 6; i++) w->data[i] = 0.1f * (float)i;
    w->requires_grad = 1;
    loom_tape *t = loom_tape_new(0);
    for (int step = 0; step < 2; step++) {
        loom_tape_reset(t);
        loom_tensor *l = loom_op_sum(t, loom_op_mul(t, w, w));
        cr_assert_eq(loom_tape_backward(t, l), LOOM_OK, "%s", loom_error_message());
    }
    cr_expect_float_eq(w->grad[5], 2 * 2 * 0.5f, 1e-6, "two steps accumulate 2w each");
    loom_tape_free(t);
    loom_tensor_free(w);
}
