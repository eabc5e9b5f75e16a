/* bench: training-step throughput (forward + backward + Adam update) in
 * tokens/s and GFLOP/s for the configurations of the README's table.
 * Usage: bench [--config S|M|L|C|all] [--steps N] [--threads N] */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "loom_layers.h"

typedef struct config {
    const char *name;
    int input, hidden, batch, steps_t, layers, vocab, embed;
} config;

/* S, M, L: one LSTM layer on random inputs, MSE on its outputs. C: a 2-layer
 * char model, embedding 64 -> LSTM 512 x2 -> head over 65 symbols, softmax CE. */
static const config CONFIGS[] = {
    {"S", 123, 320, 64, 100, 1, 0, 0},
    {"M", 512, 512, 64, 100, 1, 0, 0},
    {"L", 1024, 1024, 64, 25, 1, 0, 0},
    {"C", 64, 512, 50, 50, 2, 65, 64},
};

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Matmul FLOPs of one training step: forward GEMMs x3 (backward is two more of each). */
static double step_flops(const config *c)
{
    double per_token = 0;
    for (int l = 0; l < c->layers; l++) {
        int in = l ? c->hidden : c->input;
        per_token += 2.0 * 4 * c->hidden * (in + c->hidden);
    }
    if (c->vocab) per_token += 2.0 * c->hidden * c->vocab;
    return 3.0 * per_token * c->batch * c->steps_t;
}

static int run(const config *c, int steps)
{
    int T = c->steps_t, B = c->batch, H = c->hidden;
    loom_params *ps = loom_params_new();
    loom_cell cells[2];
    for (int l = 0; l < c->layers; l++) loom_lstm_init(&cells[l], l ? H : c->input, H, 0.0f);
    loom_seq seq;
    loom_embedding emb;
    loom_linear head;
    loom_rng rng = loom_rng_init(1);
    loom_optim opt;
    if (loom_seq_init(&seq, cells, c->layers, 0.0f) != LOOM_OK || loom_seq_declare(&seq, ps, "lstm") != LOOM_OK ||
        (c->vocab && (loom_embedding_declare(&emb, ps, "embedding", c->vocab, c->embed) != LOOM_OK ||
                      loom_linear_declare(&head, ps, "head", H, c->vocab) != LOOM_OK)) ||
        loom_params_alloc(ps, &rng) != LOOM_OK || loom_seq_reset_state(&seq, B) != LOOM_OK ||
        loom_optim_init(&opt, loom_optim_defaults(LOOM_ADAM), loom_params_size(ps)) != LOOM_OK) {
        fprintf(stderr, "bench: %s\n", loom_error_message());
        return 1;
    }
    loom_tape *tape = loom_tape_new(0);
    float *x = malloc(sizeof(float) * T * B * c->input);
    int *idx = malloc(sizeof(int) * T * B), *tgt = malloc(sizeof(int) * T * B);
    loom_rng_fill_uniform(&rng, x, (size_t)T * B * c->input, -1, 1);
    for (int i = 0; i < T * B; i++) idx[i] = (int)loom_rng_below(&rng, 65), tgt[i] = (int)loom_rng_below(&rng, 65);
    loom_tensor *zero = loom_tensor_new(T * B, H, 0);
    double *times = malloc(sizeof(double) * (steps + 1));
    for (int s = 0; s <= steps; s++) { /* step 0 warms up (arena growth, BLAS buffers) */
        double t0 = now();
        loom_tape_reset(tape);
        loom_params_zero_grad(ps);
        loom_tensor *in = c->vocab ? loom_op_embedding(tape, emb.weight, idx, T * B) : loom_tape_from(tape, T * B, c->input, x);
        loom_seq_out o;
        loom_tensor *loss = NULL;
        if (loom_seq_forward(&seq, tape, in, T, B, NULL, 1, 1, &rng, &o) == LOOM_OK)
            loss = c->vocab ? loom_op_softmax_ce(tape, loom_linear_apply(tape, o.y, head.weight, head.bias), tgt, NULL)
                            : loom_op_mse(tape, o.y, zero, NULL);
        if (!loss || loom_tape_backward(tape, loss) != LOOM_OK) {
            fprintf(stderr, "bench: %s\n", loom_error_message());
            return 1;
        }
        loom_optim_step(&opt, loom_params_data(ps), loom_params_grad(ps), 1e-3f);
        times[s] = now() - t0;
    }
    qsort(times + 1, (size_t)steps, sizeof(double), cmp_double);
    double med = steps % 2 ? times[1 + steps / 2] : 0.5 * (times[steps / 2] + times[1 + steps / 2]);
    printf("%-6s %6d %6d %4d %4d %8.1f %10.0f %8.1f %10.1f\n", c->name, c->input, H, B, T, med * 1e3, T * B / med,
           step_flops(c) / med * 1e-9, loom_arena_capacity(loom_tape_arena(tape)) / 1048576.0);
    fflush(stdout);
    free(times), free(x), free(idx), free(tgt);
    loom_tensor_free(zero);
    loom_tape_free(tape);
    loom_optim_free(&opt);
    loom_seq_free(&seq);
    loom_params_free(ps);
    return 0;
}

int main(int argc, char **argv)
{
    const char *which = "all";
    int steps = 5;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) which = argv[++i];
        else if (strcmp(argv[i], "--steps") == 0 && i + 1 < argc) steps = atoi(argv[++i]);
        else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) loom_threads_set(atoi(argv[++i]));
        else {
            fprintf(stderr, "usage: bench [--config S|M|L|C|all] [--steps N] [--threads N]\n%s: unknown or incomplete flag\n",
                    argv[i]);
            return 2;
        }
    }
    if (steps < 1) {
        fprintf(stderr, "bench: --steps must be positive\n");
        return 2;
    }
    printf("loom, %d OpenMP threads, median of %d steps (after 1 warm-up)\n", loom_threads_get(), steps);
    printf("%-6s %6s %6s %4s %4s %8s %10s %8s %10s\n", "config", "I", "H", "B", "T", "ms/step", "tokens/s", "GFLOP/s",
           "arena MiB");
    int found = 0;
    for (size_t k = 0; k < sizeof CONFIGS / sizeof *CONFIGS; k++)
        if (strcmp(which, "all") == 0 || strcmp(which, CONFIGS[k].name) == 0) {
            found = 1;
            if (run(&CONFIGS[k], steps)) return 1;
        }
    if (!found) {
        fprintf(stderr, "bench: unknown --config %s (expected S, M, L, C or all)\n", which);
        return 2;
    }
    return 0;
}
