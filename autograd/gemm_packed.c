/* A GEMM for a right operand used many times: a recurrent layer multiplies by the same
 * W_hh at every step, and OpenBLAS packs it again at every call (0.3.21 has no way to
 * keep a packed operand). Here B is packed once, into panels of NR columns, and each
 * call streams the panels past a register tile of MR rows of A.
 *
 * Every C element is one chain of fused multiply-adds in k order, started from C's
 * value: the bits depend on neither the row count nor which thread runs which rows. */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <string.h>

#include "internal.h"

#define NR 16  /* columns per panel: two 8-float AVX registers */
#define MR 6   /* rows per register tile: 12 accumulators + 2 of B + 1 of A in 16 registers */
#define KC 512 /* inner steps per pass: a panel's 32 KiB slice stays in L1 across the rows */

size_t loom_kernel_pack_size(int K, int N) { return (size_t)((N + NR - 1) / NR) * NR * (size_t)(K > 0 ? K : 0); }

void loom_kernel_pack_b(int tb, int K, int N, const float *B, int ldb, float *P)
{
    LOOM_PFOR_IF((long)K * N >= LOOM_PAR_MIN, j, (N + NR - 1) / NR, {
        for (int k = 0; k < K; k++) {
            float *d = P + ((size_t)j * K + k) * NR;
            for (int c = 0; c < NR; c++) {
                size_t n = (size_t)j * NR + c;
                d[c] = (int)n >= N ? 0.0f : tb ? B[n * ldb + k] : B[(size_t)k * ldb + n];
            }
        }
    });
}

/* The portable tile: the same chains as the AVX2 one (fmaf), for CPUs without it. */
static void tile_c(int mr, int nc, int kc, const float *a, int lda, const float *p, const float *c0, int ld0, float *c,
                   int ldc)
{
    for (int r = 0; r < mr; r++)
        for (int n = 0; n < nc; n++) {
            float s = c0[(size_t)r * ld0 + n];
            for (int k = 0; k < kc; k++) s = fmaf(a[(size_t)r * lda + k], p[(size_t)k * NR + n], s);
            c[(size_t)r * ldc + n] = s;
        }
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define AVX2 __attribute__((target("avx2,fma")))

/* C[mr x nc] = C0 + A[mr x kc] P[kc x NR], C0 rows ld0 apart (0: one bias row for all);
 * mr is a constant where this is inlined, so the accumulators stay in registers. Columns
 * past nc are masked off. */
static inline __attribute__((always_inline)) AVX2 void tile_avx2(const int mr, int nc, int kc, const float *a, int lda,
                                                                 const float *p, const float *c0, int ld0, float *c,
                                                                 int ldc)
{
    __m256 acc[MR][2];
    __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    __m256i m0 = _mm256_cmpgt_epi32(_mm256_set1_epi32(nc), lane);
    __m256i m1 = _mm256_cmpgt_epi32(_mm256_set1_epi32(nc - 8), lane);
#pragma GCC unroll 6 /* at any -O: the accumulators must live in registers */
    for (int r = 0; r < mr; r++) {
        acc[r][0] = _mm256_maskload_ps(c0 + (size_t)r * ld0, m0);
        acc[r][1] = _mm256_maskload_ps(c0 + (size_t)r * ld0 + 8, m1);
    }
    for (int k = 0; k < kc; k++) {
        __m256 b0 = _mm256_loadu_ps(p + (size_t)k * NR), b1 = _mm256_loadu_ps(p + (size_t)k * NR + 8);
#pragma GCC unroll 6
        for (int r = 0; r < mr; r++) {
            __m256 av = _mm256_broadcast_ss(a + (size_t)r * lda + k);
            acc[r][0] = _mm256_fmadd_ps(av, b0, acc[r][0]);
            acc[r][1] = _mm256_fmadd_ps(av, b1, acc[r][1]);
        }
    }
#pragma GCC unroll 6
    for (int r = 0; r < mr; r++) {
        _mm256_maskstore_ps(c + (size_t)r * ldc, m0, acc[r][0]);
        _mm256_maskstore_ps(c + (size_t)r * ldc + 8, m1, acc[r][1]);
    }
}

static AVX2 void tile_fast(int mr, int nc, int kc, const float *a, int lda, const float *p, const float *c0, int ld0,
                           float *c, int ldc)
{
    switch (mr) {
    case 6: tile_avx2(6, nc, kc, a, lda, p, c0, ld0, c, ldc); break;
    case 5: tile_avx2(5, nc, kc, a, lda, p, c0, ld0, c, ldc); break;
    case 4: tile_avx2(4, nc, kc, a, lda, p, c0, ld0, c, ldc); break;
    case 3: tile_avx2(3, nc, kc, a, lda, p, c0, ld0, c, ldc); break;
    case 2: tile_avx2(2, nc, kc, a, lda, p, c0, ld0, c, ldc); break;
    default: tile_avx2(1, nc, kc, a, lda, p, c0, ld0, c, ldc); break;
    }
}

static int cpu_fma(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
#else
static void tile_fast(int mr, int nc, int kc, const float *a, int lda, const float *p, const float *c0, int ld0, float *c,
                      int ldc)
{
    tile_c(mr, nc, kc, a, lda, p, c0, ld0, c, ldc);
}
static int cpu_fma(void) { return 0; }
#endif

/* Panels [j0, j1) of the product: every pass over k, every row tile. */
static void panels(int j0, int j1, int M, int N, int K, const float *A, int lda, const float *P, const float *bias,
                   float *C, int ldc, int fma)
{
    int tiles = (M + MR - 1) / MR, mr;
    for (int k0 = 0; k0 < K; k0 += KC) {
        int kc = K - k0 < KC ? K - k0 : KC;
        for (int j = j0; j < j1; j++) {
            const float *p = P + ((size_t)j * K + k0) * NR;
            int nc = N - j * NR < NR ? N - j * NR : NR;
            for (int t = 0, i = 0; t < tiles; t++, i += mr) {
                mr = M / tiles + (t < M % tiles); /* even tiles: a thin one waits on FMA latency */
                const float *a = A + (size_t)i * lda + k0;
                float *c = C + (size_t)i * ldc + (size_t)j * NR;
                const float *c0 = bias && k0 == 0 ? bias + (size_t)j * NR : c; /* the first pass starts from the bias */
                int ld0 = bias && k0 == 0 ? 0 : ldc;
                if (fma) tile_fast(mr, nc, kc, a, lda, p, c0, ld0, c, ldc);
                else tile_c(mr, nc, kc, a, lda, p, c0, ld0, c, ldc);
            }
        }
    }
}

void loom_kernel_gemm_packed(int M, int N, int K, const float *A, int lda, const float *P, const float *bias, float *C,
                             int ldc)
{
    static int fma = -1; /* a race here writes the same value */
    if (fma < 0) fma = cpu_fma();
    int np = (N + NR - 1) / NR;
    /* Large and called outside a team: the panels split over threads. Each element is still
     * its own chain, so the split changes no bit. */
    if ((double)M * N * K >= LOOM_GEMM_PAR_MIN && np > 1 && omp_get_max_threads() > 1 && !omp_in_parallel()) {
#pragma omp parallel
        {
            int nt = omp_get_num_threads(), id = omp_get_thread_num();
            panels(np * id / nt, np * (id + 1) / nt, M, N, K, A, lda, P, bias, C, ldc, fma);
        }
        return;
    }
    panels(0, np, M, N, K, A, lda, P, bias, C, ldc, fma);
}

int loom_kernel_packed_fast(void)
{
    /* As fast as OpenBLAS's own kernels only where those are AVX2 ones too. */
    const char *core = openblas_get_corename();
    return cpu_fma() && core && (strcmp(core, "Haswell") == 0 || strcmp(core, "Zen") == 0);
}
