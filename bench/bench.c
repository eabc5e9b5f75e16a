/* bench: training-step throughput (forward + backward + Adam update) in
 * tokens/s and GFLOP/s for the configurations of the README's table.
 * Usage: bench [--config S|M|L|C|P|all] [--steps N] [--threads N] [--peak N] [--overlap 0|1]
 * --peak N first measures the machine's sgemm limit (N x N x N, 0: skip; default 4096
 * on one rank, skipped under mpirun) and gives each row's GFLOP/s as a share of it.
 * P is M with the peephole LSTM of examples/peephole.c, a user cell on the
 * fused API, for comparing it with the built-in LSTM (not part of all).
 * Runs the library trainer, so under mpirun it measures data-parallel steps
 * (B is the global batch) and prints the time of each phase of a step. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "loom_dist.h"
#include "peak.h"
#include "peephole.h"

typedef struct config {
    const char *name;
    int input, hidden, batch, steps_t, layers, vocab, embed;
    const char *cell; /* "lstm", or "peephole" (examples/peephole.c) */
    int in_all;       /* run by --config all (the README's table and torch_ref.py) */
} config;

/* S, M, L: one LSTM layer on random inputs, MSE on its outputs. C: a 2-layer
 * char model, embedding 64 -> LSTM 512 x2 -> head over 65 symbols, softmax CE.
 * P: M with the peephole cell in place of the LSTM. */
static const config CONFIGS[] = {
    {"S", 123, 320, 64, 100, 1, 0, 0, "lstm", 1},
    {"M", 512, 512, 64, 100, 1, 0, 0, "lstm", 1},
    {"L", 1024, 1024, 64, 25, 1, 0, 0, "lstm", 1},
    {"C", 64, 512, 50, 50, 2, 65, 64, "lstm", 1},
    {"P", 512, 512, 64, 100, 1, 0, 0, "peephole", 0},
};

static double peak_gflops; /* the in-run sgemm limit, 0 when not measured */
static double fma_gflops;  /* the in-run FMA ceiling, 0 when not measured */
static const char *fma_isa = "-";
static int overlap = 1;    /* --overlap: the gradient all-reduce overlapped with backward (under mpirun) */
static int row_teams = 1;  /* --row-teams: loom_seq_set_row_teams, to compare the two thread layouts */

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

/* The step's FLOPs (2 per multiply-add): the products the model needs, as loom runs them.
 * Per layer: forward's input and recurrent projections; backward's two weight gradients,
 * the state's gradient through W_hh at every step but the first (the initial state here
 * is a constant) and the input's gradient where the input takes one (an embedding's or a
 * layer's, not S, M and L's constant inputs). Where the first layer folds the embedding
 * (loom_seq_embedding_folds over a rank's rows), its three input products are over the
 * table's rows, on each rank. The head: three. torch_ref.py counts the same products
 * but the fold's. The peephole cell has the LSTM's four gates, so the same GEMMs. */
static double step_flops(const config *c, int ranks, int rows)
{
    double G = 2.0 * 4 * c->hidden, tok = (double)c->batch * c->steps_t, f = 0;
    for (int l = 0; l < c->layers; l++) {
        int in = l ? c->hidden : c->input, dx = l > 0 || c->vocab;
        f += G * c->hidden * (3 * tok - c->batch);
        if (l == 0 && c->vocab && loom_seq_embedding_folds(c->vocab, c->steps_t * rows)) f += 3 * G * in * c->vocab * ranks;
        else f += G * in * (2 + dx) * tok;
    }
    if (c->vocab) f += 3 * 2.0 * c->hidden * c->vocab * tok;
    return f;
}

/* One configuration's model and synthetic data, as a trainer task over this rank's rows. */
typedef struct bench_task {
    const config *c;
    loom_seq seq;
    loom_embedding emb;
    loom_linear head;
    loom_rng rng;
    int *idx, *tgt;
    loom_tensor *x, *zero; /* the inputs (S, M, L) and MSE's target, read in place like torch's */
    loom_state *carry; /* TBPTT: the state carried between windows */
    loom_seq_out out;
} bench_task;

static loom_tensor *bench_forward(void *ctx, loom_tape *t, loom_batch *b)
{
    bench_task *k = ctx;
    const config *c = k->c;
    int T = c->steps_t, B = b->rows;
    loom_tensor *in = c->vocab ? loom_op_embedding(t, k->emb.weight, k->idx, T * B) : k->x;
    loom_seq_out *o = &k->out;
    b->count = (double)T * B;
    b->tokens = (long)T * B;
    if (loom_seq_forward(&k->seq, t, in, T, B, NULL, 1, k->carry, &k->rng, o) != LOOM_OK) return NULL;
    return c->vocab ? loom_op_softmax_ce(t, loom_linear_apply(t, o->y, k->head.weight, k->head.bias), k->tgt, NULL)
                    : loom_op_mse(t, o->y, k->zero, NULL);
}

static loom_status bench_commit(void *ctx)
{
    bench_task *k = ctx;
    return loom_state_store(k->carry, &k->out);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* The process's peak resident set so far (Linux: VmHWM, KiB): one config per run to read it alone. */
static double peak_rss_mib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    double kib = 0.0;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmHWM: %lf", &kib) == 1) break;
    if (f) fclose(f);
    struct rusage u;
    return kib > 0.0 ? kib / 1024.0 : getrusage(RUSAGE_SELF, &u) == 0 ? u.ru_maxrss / 1024.0 : 0.0;
}

/* Starts the peak over at the current resident set (Linux's clear_refs 5), so the sgemm peak's
 * 200 MB of matrices, freed before the models run, do not count as theirs. */
static void reset_peak_rss(void)
{
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (!f) return;
    fputs("5", f);
    if (fclose(f) != 0) fprintf(stderr, "bench: could not reset the peak RSS; the RSS column includes the sgemm peak's\n");
}

/* Times `steps` trainer steps (after one warm-up) and prints medians, per phase too. */
static int run(loom_dist *d, const config *c, int steps)
{
    int T = c->steps_t, B = c->batch, H = c->hidden;
    bench_task k = {.c = c, .rng = loom_rng_init(1)};
    loom_params *ps = loom_params_new();
    loom_cell cells[2];
    for (int l = 0; l < c->layers; l++)
        if (strcmp(c->cell, "peephole") == 0) peephole_lstm_init(&cells[l], l ? H : c->input, H);
        else loom_lstm_init(&cells[l], l ? H : c->input, H, 0.0f);
    loom_train_config tc = loom_train_defaults("bench");
    tc.steps = steps + 1, tc.log_every = 0, tc.progress = 0, tc.max_loss_ratio = 0, tc.overlap = overlap;
    loom_trainer tr;
    if (loom_seq_init(&k.seq, cells, c->layers, 0.0f) != LOOM_OK || loom_seq_set_row_teams(&k.seq, row_teams) != LOOM_OK ||
        loom_seq_declare(&k.seq, ps, c->cell) != LOOM_OK ||
        (c->vocab && (loom_embedding_declare(&k.emb, ps, "embedding", c->vocab, c->embed) != LOOM_OK ||
                      loom_linear_declare(&k.head, ps, "head", H, c->vocab) != LOOM_OK)) ||
        loom_params_alloc(ps, &k.rng) != LOOM_OK ||
        loom_trainer_init(&tr, &tc, d, ps, loom_optim_defaults(LOOM_ADAM), (loom_sched){LOOM_SCHED_CONSTANT, 1e-3f, 0, 1, 1, 1, 0},
                          B) != LOOM_OK ||
        !(k.carry = loom_state_new(&k.seq, tr.rows)) || loom_trainer_sync(&tr) != LOOM_OK) {
        loom_dist_perror(d, "bench");
        return 1;
    }
    int R = tr.rows;
    k.x = loom_tensor_new(T * R, c->input, 0);
    k.idx = malloc(sizeof(int) * T * R), k.tgt = malloc(sizeof(int) * T * R);
    k.zero = loom_tensor_new(T * R, H, 0);
    double *times = malloc(sizeof(double) * (size_t)steps * (LOOM_PHASES + 1));
    if (!k.x || !k.idx || !k.tgt || !k.zero || !times) {
        fprintf(stderr, "bench: out of memory for config %s's data\n", c->name);
        return 1;
    }
    loom_rng_fill_uniform(&k.rng, k.x->data, (size_t)T * R * c->input, -1, 1);
    for (int i = 0; i < T * R; i++) k.idx[i] = (int)loom_rng_below(&k.rng, 65), k.tgt[i] = (int)loom_rng_below(&k.rng, 65);
    loom_task task = {&k, bench_forward, NULL, NULL, NULL, bench_commit};
    for (int s = 0; s <= steps; s++) { /* step 0 warms up (arena growth, BLAS buffers) */
        double t0 = now();
        if (loom_trainer_step(&tr, &task) != LOOM_OK) {
            loom_dist_perror(d, "bench");
            return 1;
        }
        if (s == 0) continue;
        times[s - 1] = now() - t0;
        for (int p = 0; p < LOOM_PHASES; p++) times[(size_t)(p + 1) * steps + s - 1] = tr.phase[p];
    }
    double med = median(times, steps), ph[LOOM_PHASES];
    for (int p = 0; p < LOOM_PHASES; p++) ph[p] = median(times + (size_t)(p + 1) * steps, steps);
    if (d->rank == 0) {
        double gf = step_flops(c, d->size, R) / med * 1e-9;
        char pct[16] = "-", fpct[16] = "-"; /* no peak measured (under mpirun, or --peak 0) */
        if (peak_gflops > 0) snprintf(pct, sizeof pct, "%.0f%%", 100 * gf / peak_gflops);
        if (fma_gflops > 0) snprintf(fpct, sizeof fpct, "%.0f%%", 100 * gf / fma_gflops);
        printf("%-6s %6d %6d %4d %4d %5dx%-2d %8.1f %10.0f %8.1f %6s %6s %8.1f %8.1f %8.2f %8.2f %8.1f %6.2f%% %10.1f %8.0f\n",
               c->name, c->input, H, B, T, d->size, loom_threads_get(), med * 1e3, T * B / med, gf,
               pct, fpct, ph[0] * 1e3, ph[1] * 1e3, ph[2] * 1e3, ph[3] * 1e3, ph[4] * 1e3, 100 * ph[3] / med,
               loom_arena_high_water(loom_tape_arena(tr.tape)) / 1048576.0, peak_rss_mib());
        if (d->size > 1 && overlap) printf("       (%d all-reduce buckets started while backward had nodes left)\n", tr.overlapped);
        fflush(stdout);
    }
    free(times), free(k.idx), free(k.tgt);
    loom_tensor_free(k.x);
    loom_tensor_free(k.zero);
    loom_trainer_free(&tr);
    loom_state_free(k.carry);
    loom_seq_free(&k.seq);
    loom_params_free(ps);
    return 0;
}

static int bench_main(loom_dist *d, int argc, char **argv)
{
    const char *which = "all";
    int steps = 5, peak = -1;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) which = argv[++i];
        else if (strcmp(argv[i], "--steps") == 0 && i + 1 < argc) steps = atoi(argv[++i]);
        else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) loom_threads_set(atoi(argv[++i]));
        else if (strcmp(argv[i], "--peak") == 0 && i + 1 < argc) peak = atoi(argv[++i]);
        else if (strcmp(argv[i], "--overlap") == 0 && i + 1 < argc) overlap = atoi(argv[++i]);
        else if (strcmp(argv[i], "--row-teams") == 0 && i + 1 < argc) row_teams = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: bench [--config S|M|L|C|P|all] [--steps N] [--threads N] [--peak N] [--overlap 0|1] [--row-teams 0|1]\n%s: unknown or incomplete flag\n",
                    argv[i]);
            return d->agreed = 1, 2;
        }
    }
    if (steps < 1) {
        fprintf(stderr, "bench: --steps must be positive\n");
        return d->agreed = 1, 2;
    }
    if (peak < 0) peak = d->size > 1 ? 0 : 4096;
    if (peak > 0) {
        peak_gflops = bench_sgemm_peak(peak, 3);
        fma_gflops = bench_fma_ceiling(&fma_isa);
        reset_peak_rss();
        if (d->rank == 0)
            printf("sgemm peak: %.1f GFLOP/s (OpenBLAS %s kernels, %d^3, %d threads, best of 3); %s FMA ceiling "
                   "%.1f GFLOP/s (the fma column)\n", peak_gflops, bench_blas_core(), peak, loom_threads_get(), fma_isa,
                   fma_gflops);
    }
    if (d->rank == 0) {
        printf("loom, %d rank%s x %d OpenMP threads, median of %d steps (after 1 warm-up); B is the global batch%s\n",
               d->size, d->size > 1 ? "s" : "", loom_threads_get(), steps,
               d->size > 1 ? overlap ? "; all-reduce overlapped with backward" : "; all-reduce after backward" : "");
        printf("%-6s %6s %6s %4s %4s %8s %8s %10s %8s %6s %6s %8s %8s %8s %8s %8s %7s %10s %8s\n", "config", "I", "H", "B", "T", "ranks",
               "ms/step", "tokens/s", "GFLOP/s", "peak", "fma", "fwd ms", "bwd ms", "wait ms", "allred", "optim", "allred", "arena MiB", "RSS MiB");
    }
    int found = 0;
    for (size_t k = 0; k < sizeof CONFIGS / sizeof *CONFIGS; k++)
        if ((strcmp(which, "all") == 0 && CONFIGS[k].in_all) || strcmp(which, CONFIGS[k].name) == 0) {
            found = 1;
            if (run(d, &CONFIGS[k], steps)) return 1;
        }
    if (!found) {
        fprintf(stderr, "bench: unknown --config %s (expected S, M, L, C, P or all)\n", which);
        return d->agreed = 1, 2;
    }
    return 0;
}

int main(int argc, char **argv)
{
    loom_dist d;
    if (loom_dist_init(&d, &argc, &argv) != LOOM_OK) {
        fprintf(stderr, "bench: %s\n", loom_error_message());
        return 1;
    }
    return loom_dist_finish(&d, bench_main(&d, argc, argv));
}
