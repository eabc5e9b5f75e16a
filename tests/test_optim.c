/* Optimizers, clipping and schedules against hand-computed values. */
#include "helpers.h"
#include "loom_layers.h"

static float two_steps(loom_optim_config c, float *first)
{
    loom_optim o;
    cr_assert_eq(loom_optim_init(&o, c, 1), LOOM_OK, "%s", loom_error_message());
    float p = 1.0f, g = 0.5f;
    loom_optim_step(&o, &p, &g, c.lr);
    *first = p;
    loom_optim_step(&o, &p, &g, c.lr);
    cr_expect_eq(o.step, 2);
    loom_optim_free(&o);
    return p;
}

#define EXPECT_TWO(cfg, a, b)                                                       \
    do {                                                                            \
        float f1, f2 = two_steps(cfg, &f1);                                         \
        cr_expect_float_eq(f1, a, 1e-6, "first step %.7f expected %.7f", f1, a);    \
        cr_expect_float_eq(f2, b, 1e-6, "second step %.7f expected %.7f", f2, b);   \
    } while (0)

Test(optim, sgd_plain_momentum_nesterov)
{
    loom_optim_config c = loom_optim_defaults(LOOM_SGD);
    c.lr = 0.1f;
    EXPECT_TWO(c, 0.95f, 0.90f);
    c.momentum = 0.9f;
    EXPECT_TWO(c, 0.95f, 0.855f);
    c.nesterov = 1;
    EXPECT_TWO(c, 0.905f, 0.7695f);
}

Test(optim, adam_and_adamw)
{
    loom_optim_config c = loom_optim_defaults(LOOM_ADAM);
    c.lr = 0.1f;
    EXPECT_TWO(c, 0.9f, 0.8f);
    c = loom_optim_defaults(LOOM_ADAMW);
    c.lr = 0.1f;
    c.weight_decay = 0.1f;
    EXPECT_TWO(c, 0.89f, 0.89f * 0.99f - 0.1f);
}

Test(optim, rmsprop_and_adagrad)
{
    loom_optim_config c = loom_optim_defaults(LOOM_RMSPROP);
    /* step 2: v = 0.99*0.0025 + 0.0025 = 0.004975 */
    EXPECT_TWO(c, 0.9f, 0.9f - 0.01f * 0.5f / sqrtf(0.004975f));
    c = loom_optim_defaults(LOOM_ADAGRAD);
    c.lr = 0.1f;
    EXPECT_TWO(c, 0.9f, 0.9f - 0.1f * 0.5f / sqrtf(0.5f));
}

Test(optim, parse_names_and_bad_config)
{
    loom_optim_kind k;
    cr_expect_eq(loom_optim_parse("adamw", &k), LOOM_OK);
    cr_expect_eq(k, LOOM_ADAMW);
    cr_expect_eq(loom_optim_parse("adamax", &k), LOOM_EARG);
    cr_expect(strstr(loom_error_message(), "adamax") != NULL);
    loom_optim o;
    loom_optim_config c = loom_optim_defaults(LOOM_SGD);
    c.nesterov = 1;
    cr_expect_eq(loom_optim_init(&o, c, 4), LOOM_EARG);
}

Test(optim, clip_by_global_norm)
{
    float g[2] = {3, 4};
    cr_expect_float_eq(loom_clip_grad_norm(g, 2, 1.0f), 5.0f, 1e-6);
    cr_expect_float_eq(g[0], 0.6f, 1e-6);
    cr_expect_float_eq(g[1], 0.8f, 1e-6);
    float h[2] = {0.3f, 0.4f};
    loom_clip_grad_norm(h, 2, 1.0f);
    cr_expect_eq(h[0], 0.3f, "below the limit nothing changes");
}

Test(sched, warmup_step_cosine)
{
    loom_sched s = {LOOM_SCHED_CONSTANT, 1.0f, 10, 0, 0, 0, 0};
    cr_expect_float_eq(loom_sched_lr(&s, 0), 0.1f, 1e-7);
    cr_expect_float_eq(loom_sched_lr(&s, 9), 1.0f, 1e-7);
    cr_expect_float_eq(loom_sched_lr(&s, 500), 1.0f, 1e-7);
    s = (loom_sched){LOOM_SCHED_STEP, 1.0f, 0, 5, 0.5f, 0, 0};
    cr_expect_float_eq(loom_sched_lr(&s, 4), 1.0f, 1e-7);
    cr_expect_float_eq(loom_sched_lr(&s, 12), 0.25f, 1e-7);
    s = (loom_sched){LOOM_SCHED_COSINE, 1.0f, 0, 0, 0, 100, 0.0f};
    cr_expect_float_eq(loom_sched_lr(&s, 50), 0.5f, 1e-6);
    cr_expect_float_eq(loom_sched_lr(&s, 100), 0.0f, 1e-6);
    cr_expect_float_eq(loom_sched_lr(&s, 150), 0.0f, 1e-6);
    loom_sched_kind k;
    cr_expect_eq(loom_sched_parse("cosine", &k), LOOM_OK);
    cr_expect_eq(loom_sched_parse("linear", &k), LOOM_EARG);
}
