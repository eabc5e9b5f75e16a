/* Every loom GEMM goes through here, so one rule picks its threads. */
#include <cblas.h>
#include <omp.h>

#include "internal.h"

void loom_kernel_gemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda, const float *B, int ldb,
                      float beta, float *C, int ldc)
{
    CBLAS_TRANSPOSE opa = ta ? CblasTrans : CblasNoTrans, opb = tb ? CblasTrans : CblasNoTrans;
    int team = omp_get_max_threads();
    if (team > 1 && ((double)M * N * K < LOOM_GEMM_PAR_MIN || K < LOOM_GEMM_PAR_MIN_K) && !omp_in_parallel()) {
        /* OpenBLAS would split this one over the team and lose more to the fork and the thin
         * slices than it gains; the choice depends on the shape alone, so the bits do too. */
        omp_set_num_threads(1);
        cblas_sgemm(CblasRowMajor, opa, opb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        omp_set_num_threads(team);
        return;
    }
    cblas_sgemm(CblasRowMajor, opa, opb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

int loom_kernel_gemm_in_teams(void)
{
    return openblas_get_parallel() == 2; /* 2: the OpenMP build, single-threaded inside a team */
}
