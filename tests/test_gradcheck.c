/* The gradient checker itself: names, parameter stores, automatic steps, kinks, format. */
#include <string.h>

#include "helpers.h"

typedef struct gcase {
    loom_tensor *a, *b, *c;
    loom_params *ps;
    float factor; /* wrong_mul's gradient factor for its second input (1 = correct) */
} gcase;

/* a * b elementwise, with b's gradient multiplied by node->f[0]: a deliberately wrong op. */
static void wrong_mul_backward(loom_node *nd)
{
    loom_tensor *a = nd->in[0], *b = nd->in[1], *c = nd->out;
    size_t n = loom_tensor_size(c);
    if (a->requires_grad) {
        float *g = loom_tape_grad(nd->tape, a);
        if (!g) return;
        for (size_t i = 0; i < n; i++) g[i] += c->grad[i] * b->data[i];
    }
    if (b->requires_grad) {
        float *g = loom_tape_grad(nd->tape, b);
        if (!g) return;
        for (size_t i = 0; i < n; i++) g[i] += nd->f[0] * c->grad[i] * a->data[i];
    }
}

static loom_tensor *wrong_mul(loom_tape *t, loom_tensor *a, loom_tensor *b, float factor)
{
    if (!a || !b) return NULL;
    loom_tensor *c = loom_tape_tensor(t, a->rows, a->cols);
    if (!c) return NULL;
    for (size_t i = 0; i < loom_tensor_size(c); i++) c->data[i] = a->data[i] * b->data[i];
    loom_tensor *in[2] = {a, b};
    loom_node *nd = loom_tape_record(t, "wrong_mul", wrong_mul_backward, c, in, 2);
    if (nd) nd->f[0] = factor;
    return c;
}

/* tanh(a @ b) (.) c with c's gradient scaled by factor. */
static loom_tensor *fn_wrong(loom_tape *t, void *ctx)
{
    gcase *k = ctx;
    return project(t, wrong_mul(t, loom_op_tanh(t, loom_op_matmul(t, k->a, k->b, 0, 0)), k->c, k->factor));
}

Test(gradcheck, named_tensors_name_the_worst)
{
    gcase k = {.a = rand_tensor(3, 4, 1, 1, -1, 1), .b = rand_tensor(4, 5, 1, 2, -1, 1),
               .c = rand_tensor(3, 5, 1, 3, -1, 1), .factor = 1.1f};
    loom_tensor *wrt[3] = {k.a, k.b, k.c};
    const char *names[3] = {"enc.weight", NULL, "gate.scale"};
    loom_gradcheck_result res;
    cr_assert_eq(loom_gradcheck_named(fn_wrong, &k, wrt, names, 3, 0, 1e-2, &res), LOOM_OK, "%s", loom_error_message());
    cr_expect_gt(res.worst_rel_err, 0.05, "a 10%% wrong gradient gives a ~9%% error");
    cr_expect_str_eq(res.worst_name, "gate.scale");
    cr_expect_eq(res.worst_tensor, 2);
    /* Without names the tensor's position stands in. */
    cr_assert_eq(loom_gradcheck(fn_wrong, &k, wrt, 3, 0, 1e-2, &res), LOOM_OK);
    cr_expect_str_eq(res.worst_name, "tensor 2");
    k.factor = 1.0f;
    cr_assert_eq(loom_gradcheck_named(fn_wrong, &k, wrt, names, 3, 0, 1e-2, &res), LOOM_OK);
    cr_expect_lt(res.worst_rel_err, 1e-3, "correct gradient: %g at %s", res.worst_rel_err, res.worst_name);
    cr_expect_eq(res.checked, 12u + 20u + 15u);
    loom_tensor_free(k.a);
    loom_tensor_free(k.b);
    loom_tensor_free(k.c);
}

/* The same loss over three parameters of a store, and a fixed input x. */
static loom_tensor *fn_params(loom_tape *t, void *ctx)
{
    gcase *k = ctx;
    loom_tensor *w = loom_params_find(k->ps, "enc.weight"), *bias = loom_params_find(k->ps, "enc.bias");
    loom_tensor *gate = loom_params_find(k->ps, "dec.gate");
    loom_tensor *h = loom_op_tanh(t, loom_op_add(t, loom_op_matmul(t, k->a, w, 0, 0), bias));
    return project(t, wrong_mul(t, h, gate, k->factor));
}

static void params_case(gcase *k, float factor)
{
    memset(k, 0, sizeof *k);
    k->ps = loom_params_new();
    cr_assert_not_null(loom_params_add(k->ps, "enc.weight", 4, 5, (loom_init){LOOM_INIT_UNIFORM, -1, 1}));
    cr_assert_not_null(loom_params_add(k->ps, "enc.bias", 1, 5, (loom_init){LOOM_INIT_UNIFORM, -0.5f, 0.5f}));
    cr_assert_not_null(loom_params_add(k->ps, "dec.gate", 3, 5, (loom_init){LOOM_INIT_UNIFORM, -1, 1}));
    loom_rng r = loom_rng_init(7);
    cr_assert_eq(loom_params_alloc(k->ps, &r), LOOM_OK);
    k->a = rand_tensor(3, 4, 0, 8, -1, 1);
    k->factor = factor;
}

Test(gradcheck, params_names_the_wrong_parameter)
{
    gcase k;
    params_case(&k, 1.1f);
    loom_gradcheck_result res;
    cr_assert_eq(loom_gradcheck_params(fn_params, &k, k.ps, 0, 1e-2, &res), LOOM_OK, "%s", loom_error_message());
    cr_expect_str_eq(res.worst_name, "dec.gate");
    cr_expect_gt(res.worst_rel_err, 0.05);
    cr_expect_eq(res.checked, 20u + 5u + 15u);
    k.factor = 1.0f;
    cr_assert_eq(loom_gradcheck_params(fn_params, &k, k.ps, 0, 1e-2, &res), LOOM_OK);
    cr_expect_lt(res.worst_rel_err, 1e-3, "correct gradients: %g at %s", res.worst_rel_err, res.worst_name);
    loom_params_free(k.ps);
    loom_tensor_free(k.a);
}

Test(gradcheck, params_skips_frozen)
{
    gcase k;
    params_case(&k, 1.1f);
    /* Frozen, the wrong gradient is never computed nor compared; the others still are. */
    loom_params_find(k.ps, "dec.gate")->requires_grad = 0;
    float before = loom_params_find(k.ps, "dec.gate")->data[0];
    loom_gradcheck_result res;
    cr_assert_eq(loom_gradcheck_params(fn_params, &k, k.ps, 0, 1e-2, &res), LOOM_OK, "%s", loom_error_message());
    cr_expect_eq(res.checked, 20u + 5u, "only enc.weight and enc.bias");
    cr_expect_lt(res.worst_rel_err, 1e-3, "%g at %s", res.worst_rel_err, res.worst_name);
    cr_expect(strcmp(res.worst_name, "dec.gate") != 0);
    cr_expect_eq(loom_params_find(k.ps, "dec.gate")->data[0], before);
    /* With everything frozen there is nothing to check: an error, not a silent pass. */
    cr_assert_eq(loom_params_freeze(k.ps, "enc.weight", 1), LOOM_OK);
    cr_assert_eq(loom_params_freeze(k.ps, "enc.bias", 1), LOOM_OK);
    cr_expect_eq(loom_gradcheck_params(fn_params, &k, k.ps, 0, 1e-2, &res), LOOM_EARG);
    loom_params_free(k.ps);
    loom_tensor_free(k.a);
}

/* Smooth losses: sigmoid(tanh(a @ b) @ c), tanh(a (.) b), sigmoid(a (.) b), a @ b. */
static loom_tensor *fn_chain(loom_tape *t, void *ctx)
{
    gcase *k = ctx;
    return project(t, loom_op_sigmoid(t, loom_op_matmul(t, loom_op_tanh(t, loom_op_matmul(t, k->a, k->b, 0, 0)), k->c, 0, 0)));
}
static loom_tensor *fn_tanh(loom_tape *t, void *ctx)
{
    gcase *k = ctx;
    return project(t, loom_op_tanh(t, loom_op_mul(t, k->a, k->b)));
}
static loom_tensor *fn_sigmoid(loom_tape *t, void *ctx)
{
    gcase *k = ctx;
    return project(t, loom_op_sigmoid(t, loom_op_mul(t, k->a, k->b)));
}
static loom_tensor *fn_tanh_sq(loom_tape *t, void *ctx)
{
    gcase *k = ctx;
    loom_tensor *y = loom_op_tanh(t, loom_op_mul(t, k->a, k->b));
    return project(t, loom_op_mul(t, y, y));
}
static loom_tensor *fn_matmul(loom_tape *t, void *ctx)
{
    gcase *k = ctx;
    return project(t, loom_op_matmul(t, k->a, k->b, 0, 0));
}

/* The worst relative error of one check; with no_kinks, it must find no kink. */
static double worst(loom_scalar_fn fn, gcase *k, float eps, int no_kinks, const char *what)
{
    loom_tensor *wrt[3] = {k->a, k->b, k->c};
    int n = k->c ? 3 : 2;
    loom_gradcheck_result res;
    cr_assert_eq(loom_gradcheck(fn, k, wrt, n, eps, 1e-2, &res), LOOM_OK, "%s: %s", what, loom_error_message());
    if (no_kinks)
        cr_expect_eq(res.kinks, 0u, "%s eps %g: a smooth loss has no kinks (first %s[%zu])", what, eps, res.kink_name,
                 res.kink_index);
    return res.worst_rel_err;
}

Test(gradcheck, auto_steps_are_accurate_where_a_fixed_step_is_not)
{
    /* Values of order 1, and of order 10 against order 0.1, so pre-activations stay O(1)
     * and the loss curves on a scale of 0.1 in the small values. */
    for (int big = 0; big < 2; big++) {
        float s = big ? 10.0f : 1.0f;
        gcase k = {.a = rand_tensor(4, 5, 1, 11, -s, s), .b = rand_tensor(5, 6, 1, 12, -1 / s, 1 / s),
                   .c = rand_tensor(6, 3, 1, 13, -1, 1)};
        gcase e = {.a = rand_tensor(7, 9, 1, 14, -s, s), .b = rand_tensor(7, 9, 1, 15, -1 / s, 1 / s)};
        struct {
            const char *what;
            loom_scalar_fn fn;
            gcase *k;
            int fixed_is_worse; /* where eps = 3e-2 is measured to be markedly worse */
        } cases[] = {{"chain", fn_chain, &k, 1}, {"tanh", fn_tanh, &e, big}, {"sigmoid", fn_sigmoid, &e, big},
                     {"matmul", fn_matmul, &k, 0}};
        for (int i = 0; i < 4; i++) {
            double a = worst(cases[i].fn, cases[i].k, 0, 1, cases[i].what);
            double f = worst(cases[i].fn, cases[i].k, 3e-2f, 0, cases[i].what);
            cr_expect_lt(a, 1e-3, "%s x%g: auto %g (eps 3e-2: %g)", cases[i].what, s, a, f);
            if (cases[i].fixed_is_worse) cr_expect_gt(f, 5 * a, "%s x%g: eps 3e-2 %g, auto %g", cases[i].what, s, f, a);
        }
        loom_tensor_free(k.a);
        loom_tensor_free(k.b);
        loom_tensor_free(k.c);
        loom_tensor_free(e.a);
        loom_tensor_free(e.b);
    }
}

Test(gradcheck, strong_curvature_is_not_a_kink)
{
    /* tanh(a b) and sigmoid(a b) with |a| up to 20 and b near 0: in b the loss bends on a
     * scale of 1/|a| = 0.05, half auto's first step, as rough there as a kink would be. */
    gcase e = {.a = rand_tensor(7, 9, 1, 21, -20, 20), .b = rand_tensor(7, 9, 1, 22, -0.05f, 0.05f)};
    cr_expect_lt(worst(fn_tanh, &e, 0, 1, "tanh steep"), 1e-3);
    cr_expect_lt(worst(fn_sigmoid, &e, 0, 1, "sigmoid steep"), 1e-3);
    /* tanh(a b)^2 with |a| up to 40 is flat at b = 0 and bends on a scale of 0.025: small
     * slopes, so still 2% rough at auto's last step, but shrinking 4x a step, not a kink
     * (measured 6e-4: near auto's finest step, so a looser bound). */
    for (size_t i = 0; i < loom_tensor_size(e.a); i++) e.a->data[i] *= 2;
    cr_expect_lt(worst(fn_tanh_sq, &e, 0, 1, "tanh^2 steep"), 3e-3);
    for (size_t i = 0; i < loom_tensor_size(e.a); i++) e.a->data[i] /= 2;
    /* A given eps of 3e-2 against |a| up to 10 is inaccurate there, but not a kink either:
     * its roughness at eps is above the kink threshold, and shrinks ~4x per halving. */
    for (size_t i = 0; i < loom_tensor_size(e.a); i++) e.a->data[i] /= 2;
    worst(fn_tanh, &e, 3e-2f, 1, "tanh steep, eps 3e-2");
    worst(fn_sigmoid, &e, 3e-2f, 1, "sigmoid steep, eps 3e-2");
    loom_tensor_free(e.a);
    loom_tensor_free(e.b);
}

static loom_tensor *fn_relu(loom_tape *t, void *ctx)
{
    gcase *k = ctx;
    return loom_op_add(t, project(t, loom_op_relu(t, k->a)), loom_op_sum(t, loom_op_tanh(t, k->b)));
}

Test(gradcheck, relu_kinks_are_counted_not_errors)
{
    /* Rows 0-1 sit within 3e-3 of relu's kink, inside every step tried (auto's last pair
     * is 6.25e-3 and 3.1e-3); rows 2-6 at least 0.2 away, outside every step. */
    gcase k = {.a = rand_tensor(7, 11, 1, 31, 0.2f, 1.0f), .b = rand_tensor(3, 3, 0, 32, -1, 1)};
    loom_rng r = loom_rng_init(33);
    for (size_t i = 0; i < loom_tensor_size(k.a); i++) {
        if (i < 22) k.a->data[i] = 3e-3f * loom_rng_uniform(&r);
        if (loom_rng_uniform(&r) < 0.5f) k.a->data[i] = -k.a->data[i];
    }
    k.a->data[3] = 0; /* exactly at the kink too */
    float eps[2] = {0, 3e-2f};
    for (int m = 0; m < 2; m++) {
        loom_gradcheck_result res;
        const char *name = "pre";
        cr_assert_eq(loom_gradcheck_named(fn_relu, &k, &k.a, &name, 1, eps[m], 1e-2, &res), LOOM_OK, "%s", loom_error_message());
        cr_expect_eq(res.kinks, 22u, "eps %g: %zu kinks", eps[m], res.kinks);
        cr_expect_eq(res.checked, 77u - 22u);
        cr_expect_lt(res.worst_rel_err, 1e-3, "eps %g: %g at %s[%zu]", eps[m], res.worst_rel_err, res.worst_name, res.worst_index);
        cr_expect_str_eq(res.kink_name, "pre");
        cr_expect_eq(res.kink_index, 0u);
    }
    /* Away from the kink nothing is skipped. */
    for (size_t i = 0; i < 22; i++) k.a->data[i] = k.a->data[i] < 0 ? -0.5f : 0.5f;
    for (int m = 0; m < 2; m++) {
        loom_gradcheck_result res;
        cr_assert_eq(loom_gradcheck(fn_relu, &k, &k.a, 1, eps[m], 1e-2, &res), LOOM_OK);
        cr_expect_eq(res.kinks, 0u, "eps %g", eps[m]);
        cr_expect_eq(res.checked, 77u);
        cr_expect_lt(res.worst_rel_err, 1e-3);
    }
    loom_tensor_free(k.a);
    loom_tensor_free(k.b);
}

Test(gradcheck, format_names_the_worst_and_the_first_kink)
{
    loom_gradcheck_result res;
    memset(&res, 0, sizeof res);
    res.worst_rel_err = 3.1e-4;
    res.analytic = 0.0123;
    res.numeric = 0.0124;
    res.worst_index = 17;
    res.checked = 1198;
    strcpy(res.worst_name, "lstm.weight_hh_l0");
    res.kinks = 2;
    res.kink_index = 3;
    strcpy(res.kink_name, "rnn.bias_l0");
    char buf[256];
    const char *want = "worst relative error 3.1e-04 at lstm.weight_hh_l0[17] (analytic 0.0123, numeric 0.0124); "
                       "1200 elements; 2 skipped at kinks (first: rnn.bias_l0[3])";
    cr_expect_eq(loom_gradcheck_format(&res, buf, sizeof buf), (int)strlen(want));
    cr_expect_str_eq(buf, want);
    /* A short buffer keeps snprintf's contract: cut, terminated, the full length returned. */
    char small[16];
    cr_expect_eq(loom_gradcheck_format(&res, small, sizeof small), (int)strlen(want));
    cr_expect_str_eq(small, "worst relative ");
    cr_expect_eq(loom_gradcheck_format(&res, NULL, 0), (int)strlen(want));
    res.kinks = 0;
    loom_gradcheck_format(&res, buf, sizeof buf);
    cr_expect_str_eq(buf, "worst relative error 3.1e-04 at lstm.weight_hh_l0[17] (analytic 0.0123, numeric 0.0124); 1198 elements");
    /* And from a real run, the parameter's name. */
    gcase k;
    params_case(&k, 1.1f);
    cr_assert_eq(loom_gradcheck_params(fn_params, &k, k.ps, 0, 1e-2, &res), LOOM_OK);
    loom_gradcheck_format(&res, buf, sizeof buf);
    cr_expect(strstr(buf, "at dec.gate[") != NULL, "%s", buf);
    loom_params_free(k.ps);
    loom_tensor_free(k.a);
}

/* sum(x - 100) / 2: exact in float32 near x = 100, so only the step can be wrong. */
static loom_tensor *fn_offset(loom_tape *t, void *ctx)
{
    gcase *k = ctx;
    return loom_op_scale(t, loom_op_sum(t, loom_op_sub(t, k->a, k->b)), 0.5f);
}

Test(gradcheck, differences_divide_by_the_steps_float32_takes)
{
    /* Near 100 float32 values are 7.6e-6 apart, so x + 1e-3 is off by up to 0.4% of the step. */
    gcase k = {.a = rand_tensor(1, 8, 1, 51, 100.1f, 100.9f), .b = loom_tensor_new(1, 8, 0)};
    for (int i = 0; i < 8; i++) k.b->data[i] = 100.0f;
    loom_gradcheck_result res;
    cr_assert_eq(loom_gradcheck(fn_offset, &k, &k.a, 1, 1e-3f, 1e-2, &res), LOOM_OK);
    cr_expect_lt(res.worst_rel_err, 1e-6, "%g (numeric %.9g)", res.worst_rel_err, res.numeric);
    loom_tensor_free(k.a);
    loom_tensor_free(k.b);
}

static loom_tensor *fn_not_scalar(loom_tape *t, void *ctx)
{
    gcase *k = ctx;
    return loom_op_tanh(t, k->a);
}

Test(gradcheck, bad_arguments_are_errors)
{
    gcase k = {.a = rand_tensor(2, 3, 1, 41, -1, 1), .b = rand_tensor(3, 3, 0, 42, -1, 1)};
    loom_gradcheck_result res;
    cr_expect_eq(loom_gradcheck(fn_relu, &k, &k.a, 1, NAN, 1e-2, &res), LOOM_EARG);
    cr_expect_eq(loom_gradcheck(fn_not_scalar, &k, &k.a, 1, 0, 1e-2, &res), LOOM_ESHAPE);
    /* A step float32 cannot take at this value is refused, naming the element. */
    k.a->data[4] = 1000.0f;
    const char *name = "big";
    cr_expect_eq(loom_gradcheck_named(fn_relu, &k, &k.a, &name, 1, 1e-6f, 1e-2, &res), LOOM_EARG);
    cr_expect(strstr(loom_error_message(), "big[4]") != NULL, "%s", loom_error_message());
    cr_expect_eq(k.a->data[4], 1000.0f, "the value is restored");
    cr_expect_eq(loom_gradcheck(fn_relu, &k, &k.a, 1, 0, 1e-2, &res), LOOM_OK, "auto scales the step with |x|");
    loom_tensor_free(k.a);
    loom_tensor_free(k.b);
}
