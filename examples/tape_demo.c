/* tape_demo: the autodiff engine alone. A tiny Elman recurrence learns to
 * predict the next value of a sine wave; BPTT is just the ops recorded in
 * the time loop, walked backwards. Usage: tape_demo [--steps N] [--seed S] */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loom_autograd.h"

enum { B = 8, T = 20, H = 16 };

int main(int argc, char **argv)
{
    int steps = 300;
    unsigned long long seed = 1;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--steps") == 0 && i + 1 < argc) steps = atoi(argv[++i]);
        else if (strcmp(argv[i], "--seed") == 0 && i + 1 < argc) seed = strtoull(argv[++i], NULL, 10);
        else {
            fprintf(stderr, "usage: %s [--steps N] [--seed S]\nunknown or incomplete flag: %s\n", argv[0], argv[i]);
            return 2;
        }
    }
    if (steps <= 0) {
        fprintf(stderr, "tape_demo: --steps must be positive\n");
        return 2;
    }
    /* Parameters: one flat buffer, named views. */
    loom_params *ps = loom_params_new();
    loom_init u = {LOOM_INIT_UNIFORM, -0.25f, 0.25f};
    loom_tensor *Wx = loom_params_add(ps, "Wx", 1, H, u), *Wh = loom_params_add(ps, "Wh", H, H, u);
    loom_tensor *b = loom_params_add(ps, "b", 1, H, (loom_init){LOOM_INIT_ZERO, 0, 0});
    loom_tensor *Wo = loom_params_add(ps, "Wo", H, 1, u);
    loom_rng rng = loom_rng_init(seed);
    loom_tape *tape = loom_tape_new(0);
    if (!Wx || !Wh || !b || !Wo || loom_params_alloc(ps, &rng) != LOOM_OK || !tape) {
        fprintf(stderr, "tape_demo: %s\n", loom_error_message());
        return 1;
    }
    float *p = loom_params_data(ps), *g = loom_params_grad(ps);
    for (int step = 1; step <= steps; step++) {
        loom_tape_reset(tape);
        loom_params_zero_grad(ps);
        /* Forward: B sine waves with random phases, unrolled over T steps. */
        float phase[B];
        for (int k = 0; k < B; k++) phase[k] = 6.2831853f * loom_rng_uniform(&rng);
        loom_tensor *h = loom_tape_zeros(tape, B, H), *loss = NULL;
        for (int s = 0; s < T; s++) {
            loom_tensor *x = loom_tape_tensor(tape, B, 1), *y = loom_tape_tensor(tape, B, 1);
            for (int k = 0; k < B; k++) {
                x->data[k] = sinf(phase[k] + 0.3f * s);
                y->data[k] = sinf(phase[k] + 0.3f * (s + 1));
            }
            h = loom_op_tanh(tape, loom_op_add(tape, loom_op_add(tape, loom_op_matmul(tape, x, Wx, 0, 0),
                                                                 loom_op_matmul(tape, h, Wh, 0, 0)), b));
            loom_tensor *l = loom_op_mse(tape, loom_op_matmul(tape, h, Wo, 0, 0), y, NULL);
            loss = loss ? loom_op_add(tape, loss, l) : l;
        }
        loss = loom_op_scale(tape, loss, 1.0f / T);
        /* Backward through time, then plain SGD on the flat buffer. */
        if (!loss || loom_tape_backward(tape, loss) != LOOM_OK) {
            fprintf(stderr, "tape_demo: %s\n", loom_error_message());
            return 1;
        }
        for (size_t i = 0; i < loom_params_size(ps); i++) p[i] -= 0.1f * g[i];
        if (step == 1 || step % 25 == 0 || step == steps) printf("step %4d  loss %.5f\n", step, loss->data[0]);
    }
    loom_tape_free(tape);
    loom_params_free(ps);
    return 0;
}
