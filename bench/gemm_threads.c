/* Where a GEMM starts to gain from the OpenMP team: OpenBLAS sgemm at the shapes loom's
 * layers make (per-step recurrent products, input projections, heads), timed on one
 * thread and on the team, beside the choice loom_kernel_gemm makes for that shape. The
 * thresholds in loom_autograd.h (LOOM_GEMM_PAR_MIN, LOOM_GEMM_PAR_MIN_K) come from it.
 * Usage: bench_gemm_threads [--threads N] (default: OpenMP's). */
#include <cblas.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "loom_autograd.h"

static double seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The best time of 5 rounds of repeated calls, on n threads; tb: B transposed (N x K), as
 * the layers' forward projections are (x W^T). */
static double best_time(int n, int tb, int M, int N, int K, const float *A, const float *B, float *C)
{
    omp_set_num_threads(n);
    int reps = (int)(2e8 / (2.0 * M * N * K)) + 3;
    if (reps > 2000) reps = 2000;
    double best = 1e30;
    for (int r = 0; r < 5; r++) {
        double t0 = seconds();
        for (int i = 0; i < reps; i++)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K, 1.0f, A, K, B, tb ? K : N,
                        1.0f, C, N);
        double t = (seconds() - t0) / reps;
        if (t < best) best = t;
    }
    return best;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--threads") == 0) loom_threads_set(atoi(argv[2]));
    else if (argc != 1) return fprintf(stderr, "usage: bench_gemm_threads [--threads N]\n"), 2;
    int team = loom_threads_get();
    /* M x N x K: B x 4H x H steps (adding, S, M, C, L), thin input projections, a head */
    static const int shapes[][3] = {{64, 256, 64},   {64, 256, 128},  {32, 1024, 64},   {64, 1024, 64},
                                    {64, 512, 128},  {64, 1280, 320}, {32, 1280, 320},  {64, 2048, 512},
                                    {50, 2048, 512}, {64, 4096, 1024}, {6400, 256, 2},  {6400, 256, 16},
                                    {6400, 1024, 8}, {3200, 256, 64}, {2500, 65, 512},  {6400, 1280, 123}};
    size_t cap = 6400u * 4096u;
    float *A = malloc(sizeof(float) * cap), *B = malloc(sizeof(float) * cap), *C = malloc(sizeof(float) * cap);
    if (!A || !B || !C) return fprintf(stderr, "bench_gemm_threads: out of memory\n"), 1;
    for (size_t i = 0; i < cap; i++) A[i] = B[i] = C[i] = (float)(i % 7) * 0.1f;
    printf("OpenBLAS sgemm, 1 thread against %d, best of 5 rounds; NN: A B, NT: A B^T\n%6s %6s %6s %12s %10s %10s %8s "
           "%10s %10s %8s %s\n", team, "M", "N", "K", "M*N*K", "NN 1t us", "team us", "gain", "NT 1t us", "team us", "gain",
           "loom_kernel_gemm");
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
        double one = best_time(1, 0, M, N, K, A, B, C), all = best_time(team, 0, M, N, K, A, B, C);
        double one_t = best_time(1, 1, M, N, K, A, B, C), all_t = best_time(team, 1, M, N, K, A, B, C);
        int par = (double)M * N * K >= LOOM_GEMM_PAR_MIN && K >= LOOM_GEMM_PAR_MIN_K;
        printf("%6d %6d %6d %12.0f %10.1f %10.1f %7.2fx %10.1f %10.1f %7.2fx %s\n", M, N, K, (double)M * N * K, one * 1e6,
               all * 1e6, one / all, one_t * 1e6, all_t * 1e6, one_t / all_t, team > 1 && par ? "team" : "1 thread");
    }
    omp_set_num_threads(team);
    free(A), free(B), free(C);
    return 0;
}
