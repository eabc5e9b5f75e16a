/* Runs under mpirun: the gradient all-reduce overlapped with backward (buckets started from
 * the tape's hook) trains the same model as the all-reduce after backward. On 2 ranks the
 * bits are the same, since a sum of two floats does not depend on how MPI groups it; on 3
 * the per-bucket all-reduces may group a sum differently from the whole buffer's (Open MPI
 * picks its algorithm by message size), so there they agree to rounding. Overlap on gives
 * the same bits run after run and on every rank, and really starts buckets during backward.
 * Prints "N passed, M failed". */
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loom_dist.h"
#include "overlap_model.h"

static int passed, failed, rank;
#define CHECK(cond, ...)                                           \
    do {                                                           \
        if (cond) passed++;                                        \
        else {                                                     \
            failed++;                                              \
            fprintf(stderr, "rank %d: ", rank);                    \
            fprintf(stderr, __VA_ARGS__);                          \
            fputc('\n', stderr);                                   \
        }                                                          \
    } while (0)

enum { T = 7, BATCH = 6, STEPS = 4 };

static loom_tensor *forward(void *ctx, loom_tape *t, loom_batch *b)
{
    om_model *m = ctx;
    b->count = (double)m->T * m->B, b->tokens = (long)m->T * m->B;
    return om_forward(m, t);
}

/* Trains STEPS steps and returns the final parameters (malloc'd; *n floats); *early gets the
 * last step's buckets started during backward, *buckets_max the most any step started. */
static float *train(loom_dist *d, int fused, int overlap, size_t bucket_bytes, size_t *n, int *early)
{
    om_model m;
    int rows = BATCH / d->size;
    if (om_init(&m, fused, T, rows, d->rank * rows) != LOOM_OK) return NULL;
    loom_train_config c = loom_train_defaults("test_overlap_dist");
    c.steps = STEPS, c.log_every = 0, c.progress = 0, c.handle_signals = 0, c.max_loss_ratio = 0;
    c.overlap = overlap, c.bucket_bytes = bucket_bytes;
    loom_trainer tr;
    loom_task task = {&m, forward, NULL, NULL, NULL, NULL};
    float *out = NULL;
    if (loom_trainer_init(&tr, &c, d, m.ps, loom_optim_defaults(LOOM_ADAM),
                          (loom_sched){LOOM_SCHED_CONSTANT, 1e-2f, 0, 1, 1, 1, 0}, BATCH) == LOOM_OK &&
        loom_trainer_sync(&tr) == LOOM_OK) {
        loom_status st = LOOM_OK;
        for (int s = 0; s < STEPS && st == LOOM_OK; s++) st = loom_trainer_step(&tr, &task);
        *early = tr.overlapped;
        *n = loom_params_size(m.ps);
        if (st == LOOM_OK && (out = malloc(*n * sizeof(float)))) memcpy(out, loom_params_data(m.ps), *n * sizeof(float));
    }
    if (!out) fprintf(stderr, "rank %d: %s\n", d->rank, loom_error_message());
    loom_trainer_free(&tr);
    om_free(&m);
    return out;
}

/* The largest difference relative to the largest value. */
static double rel_diff(const float *a, const float *b, size_t n)
{
    double worst = 0, big = 0;
    for (size_t i = 0; i < n; i++) worst = fmax(worst, fabs((double)a[i] - b[i])), big = fmax(big, fabs((double)a[i]));
    return worst / fmax(big, 1e-30);
}

static unsigned long long hash(const float *x, size_t n)
{
    unsigned long long h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        unsigned int b;
        memcpy(&b, &x[i], 4);
        h = (h ^ b) * 1099511628211ull;
    }
    return h;
}

int main(int argc, char **argv)
{
    loom_dist d;
    if (loom_dist_init(&d, &argc, &argv) != LOOM_OK) {
        fprintf(stderr, "%s\n", loom_error_message());
        return 1;
    }
    rank = d.rank;
    loom_threads_set(1);
    for (int fused = 1; fused >= 0; fused--) {
        const char *kind = fused ? "fused" : "unrolled";
        size_t n = 0;
        int e_on = 0, e_again = 0, e_off = 0, e_big = 0;
        /* 1 KiB buckets: several per layer (whole parameters each), started one by one */
        float *on = train(&d, fused, 1, 1024, &n, &e_on), *again = train(&d, fused, 1, 1024, &n, &e_again);
        float *off = train(&d, fused, 0, 0, &n, &e_off), *big = train(&d, fused, 1, 0, &n, &e_big);
        CHECK(on && again && off && big, "%s: a run failed", kind);
        if (!(on && again && off && big)) break;
        CHECK(e_on > 0, "%s: no bucket started during backward (the head's should)", kind);
        CHECK(e_big > 0, "%s: default buckets: none started during backward", kind);
        CHECK(e_off == 0, "%s: overlap off started %d buckets during backward", kind, e_off);
        CHECK(memcmp(on, again, n * sizeof(float)) == 0, "%s: two overlapped runs differ", kind);
        double dv = rel_diff(off, on, n), db = rel_diff(off, big, n);
        if (d.size == 2) {
            CHECK(dv == 0, "%s: overlap on and off differ on 2 ranks by %g", kind, dv);
            CHECK(db == 0, "%s: default buckets and overlap off differ on 2 ranks by %g", kind, db);
        } else {
            CHECK(dv < 1e-5, "%s: overlap on and off differ by %g", kind, dv);
            CHECK(db < 1e-5, "%s: default buckets and overlap off differ by %g", kind, db);
        }
        unsigned long long h = hash(on, n), h0 = h;
        MPI_Bcast(&h0, 1, MPI_UNSIGNED_LONG_LONG, 0, MPI_COMM_WORLD);
        CHECK(h == h0, "%s: ranks hold different parameters", kind);
        if (d.rank == 0)
            printf("%s: %d buckets of 1 KiB and %d default ones started during backward; on vs off %g, default vs off %g\n",
                   kind, e_on, e_big, dv, db);
        free(on), free(again), free(off), free(big);
    }
    int tot[2] = {passed, failed}, sum[2];
    MPI_Reduce(tot, sum, 2, MPI_INT, MPI_SUM, 0, MPI_COMM_WORLD);
    if (d.rank == 0) printf("overlap on %d ranks: %d passed, %d failed\n", d.size, sum[0], sum[1]);
    loom_dist_finalize(&d);
    return failed ? 1 : 0;
}
