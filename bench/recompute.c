/* recompute: peak memory and step time of one LSTM layer trained on long sequences,
 * the plain path against recomputation (loom_seq_set_recompute). One configuration per
 * process, so peaks do not mix: the README's table runs it once per line.
 * Usage: bench_recompute [--T 1000] [--K k] [--steps 3] [--hidden 512] [--input 512]
 *                        [--batch 32] [--threads n]
 * K: steps per segment; -1 (the default) is sqrt(T) rounded, 0 the plain path.
 * A step is forward, backward (loss: the mean of y) and an Adam update, on random
 * inputs; one warm-up step first (the arena grows to its size then). Peak RSS is
 * the process's VmHWM, read at the end. */
#include <math.h>
#include <stdio.h>
#include <sys/resource.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "loom_layers.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* CPU seconds of the process so far (every thread, user and system). */
static double cpu(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec + 1e-6 * (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* A field of /proc/self/status in kB (-1 if absent). */
static long status_kb(const char *field)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    size_t n = strlen(field);
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, field, n) == 0 && line[n] == ':') kb = atol(line + n + 1);
    if (f) fclose(f);
    return kb;
}

static int flag_int(int argc, char **argv, int *i, const char *name, int *v)
{
    if (strcmp(argv[*i], name) != 0) return 0;
    if (*i + 1 >= argc) {
        fprintf(stderr, "bench_recompute: %s needs a value\n", name);
        exit(2);
    }
    *v = atoi(argv[++*i]);
    return 1;
}

int main(int argc, char **argv)
{
    int T = 1000, K = -1, steps = 3, H = 512, I = 512, B = 32, threads = 0;
    for (int i = 1; i < argc; i++)
        if (!flag_int(argc, argv, &i, "--T", &T) && !flag_int(argc, argv, &i, "--K", &K) &&
            !flag_int(argc, argv, &i, "--steps", &steps) && !flag_int(argc, argv, &i, "--hidden", &H) &&
            !flag_int(argc, argv, &i, "--input", &I) && !flag_int(argc, argv, &i, "--batch", &B) &&
            !flag_int(argc, argv, &i, "--threads", &threads)) {
            fprintf(stderr, "usage: bench_recompute [--T n] [--K k] [--steps n] [--hidden n] [--input n] [--batch n] "
                            "[--threads n]\n%s: unknown flag\n", argv[i]);
            return 2;
        }
    if (T < 1 || steps < 1 || H < 1 || I < 1 || B < 1 || K < -1) {
        fprintf(stderr, "bench_recompute: --T, --steps, --hidden, --input, --batch must be positive, --K >= -1\n");
        return 2;
    }
    if (threads > 0) loom_threads_set(threads);
    if (K < 0) K = (int)lround(sqrt((double)T));
    loom_cell cell;
    loom_lstm_init(&cell, I, H, 0.0f);
    loom_seq seq;
    loom_params *ps = loom_params_new();
    loom_rng rng = loom_rng_init(1);
    loom_optim opt;
    loom_tensor *x = loom_tensor_new(T * B, I, 0);
    loom_tape *t = loom_tape_new(0);
    if (!ps || !x || !t || loom_seq_init(&seq, &cell, 1, 0.0f) != LOOM_OK || loom_seq_set_recompute(&seq, K) != LOOM_OK ||
        loom_seq_declare(&seq, ps, "lstm") != LOOM_OK || loom_params_alloc(ps, &rng) != LOOM_OK ||
        loom_optim_init(&opt, loom_optim_defaults(LOOM_ADAM), loom_params_size(ps)) != LOOM_OK) {
        fprintf(stderr, "bench_recompute: %s\n", loom_error_message());
        return 1;
    }
    loom_rng_fill_uniform(&rng, x->data, loom_tensor_size(x), -1.0f, 1.0f);
    double *times = malloc(sizeof *times * (size_t)steps), loss = 0, cpu0 = 0;
    size_t used = 0;
    for (int s = 0; s <= steps; s++) {
        double t0 = now();
        if (s == 1) cpu0 = cpu();
        loom_tape_reset(t);
        loom_params_zero_grad(ps);
        loom_seq_out o;
        loom_tensor *l = NULL;
        if (loom_seq_forward(&seq, t, x, T, B, NULL, 1, NULL, NULL, &o) != LOOM_OK || !(l = loom_op_mean(t, o.y)) ||
            loom_tape_backward(t, l) != LOOM_OK) {
            fprintf(stderr, "bench_recompute: T=%d K=%d: %s\n", T, K, loom_error_message());
            return 1;
        }
        loom_optim_step(&opt, loom_params_data(ps), loom_params_grad(ps), 1e-3f);
        used = loom_arena_used(loom_tape_arena(t));
        loss = l->data[0];
        if (s > 0) times[s - 1] = now() - t0;
    }
    qsort(times, (size_t)steps, sizeof *times, cmp_double);
    double med = steps % 2 ? times[steps / 2] : 0.5 * (times[steps / 2 - 1] + times[steps / 2]);
    double cpu_step = (cpu() - cpu0) / steps;
    char mode[32] = "plain";
    if (K > 0 && K < T) snprintf(mode, sizeof mode, "recompute K=%d", K);
    printf("lstm I=%d H=%d B=%d T=%d, %s, %d threads: median %.3f s/step of %d (min %.3f, max %.3f; CPU %.3f s/step); "
           "peak RSS %.0f MiB; tape arena %.0f MiB used, %.0f MiB reserved; loss %.6f\n",
           I, H, B, T, mode, loom_threads_get(), med, steps, times[0], times[steps - 1], cpu_step, status_kb("VmHWM") / 1024.0,
           used / 1048576.0, loom_arena_capacity(loom_tape_arena(t)) / 1048576.0, loss);
    free(times);
    loom_optim_free(&opt);
    loom_tape_free(t);
    loom_tensor_free(x);
    loom_seq_free(&seq);
    loom_params_free(ps);
    return 0;
}
