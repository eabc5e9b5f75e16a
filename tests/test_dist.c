/* Runs under mpirun: the all-reduce gives every rank the mean, the broadcast
 * rank 0's values, identically on every rank. Prints "N passed, M failed". */
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loom_dist.h"

static int passed, failed;
#define CHECK(cond, ...)                                           \
    do {                                                           \
        if (cond) passed++;                                        \
        else {                                                     \
            failed++;                                              \
            fprintf(stderr, "rank %d: ", d.rank);                  \
            fprintf(stderr, __VA_ARGS__);                          \
            fputc('\n', stderr);                                   \
        }                                                          \
    } while (0)

int main(int argc, char **argv)
{
    loom_dist d;
    if (loom_dist_init(&d, &argc, &argv) != LOOM_OK) {
        fprintf(stderr, "%s\n", loom_error_message());
        return 1;
    }
    size_t n = 100003; /* above the parallel threshold, odd */
    float *g = malloc(n * sizeof(float)), *p = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) g[i] = (float)(d.rank + 1) * (float)(i % 17), p[i] = (float)d.rank + 0.5f * (float)i;
    CHECK(loom_dist_allreduce_mean(&d, g, n) == LOOM_OK, "allreduce: %s", loom_error_message());
    double mean_factor = (d.size + 1) / 2.0; /* mean of 1..size */
    int bad = 0;
    for (size_t i = 0; i < n; i++) bad += fabs(g[i] - mean_factor * (double)(i % 17)) > 1e-4 * (1 + i % 17);
    CHECK(bad == 0, "allreduce: %d wrong values", bad);
    CHECK(loom_dist_broadcast(&d, p, n) == LOOM_OK, "broadcast: %s", loom_error_message());
    bad = 0;
    for (size_t i = 0; i < n; i++) bad += p[i] != 0.5f * (float)i;
    CHECK(bad == 0, "broadcast: %d values differ from rank 0's", bad);
    /* Every rank holds the same bits after the reduction. */
    unsigned long long h = 1469598103934665603ull, h0;
    for (size_t i = 0; i < n; i++) {
        unsigned int b;
        memcpy(&b, &g[i], 4);
        h = (h ^ b) * 1099511628211ull;
    }
    h0 = h;
    MPI_Bcast(&h0, 1, MPI_UNSIGNED_LONG_LONG, 0, MPI_COMM_WORLD);
    CHECK(h == h0, "allreduce result differs from rank 0's bits");
    int tot[2] = {passed, failed}, sum[2];
    MPI_Reduce(tot, sum, 2, MPI_INT, MPI_SUM, 0, MPI_COMM_WORLD);
    if (d.rank == 0) printf("dist on %d ranks: %d passed, %d failed\n", d.size, sum[0], sum[1]);
    loom_dist_finalize(&d);
    free(g);
    free(p);
    return failed ? 1 : 0;
}
