/* A GEMM for a right operand used many times: a recurrent layer multiplies by the same
 * W_hh at every step, and OpenBLAS packs it again at every call (0.3.21 has no way to
 * keep a packed operand). Here B is packed once, into panels of NR columns, and each
 * call streams the panels past a register tile of rows of A: AVX2 or AVX-512, the width
 * OpenBLAS runs, else plain C.
 *
 * Every C element is one chain of fused multiply-adds in k order, started from C's
 * value (or the bias): the bits depend on neither the row count, nor the tile shape,
 * nor which thread runs which rows or columns, nor the instruction set. */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define NR 16  /* columns per panel: two 8-float AVX registers */
#define MR 6   /* rows per register tile: 12 accumulators + 2 of B + 1 of A in 16 registers */
#define MR_WIDE 4 /* rows per wide AVX2 tile: 4 x 24 columns, 12 accumulators + 3 of B + 1 of A */
#define MR512 12 /* AVX-512: 12 rows of two panels, 24 accumulators of 32 registers */
#define KC 512 /* inner steps per pass: a panel's 32 KiB slice stays in L1 across the rows (AVX2's
                 * wide groups cycle three: 96 KiB, from L2) */

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
    __m256 acc[MR512][2]; /* MR used; up to MR512 for AVX-512's odd last panel */
    __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    __m256i m0 = _mm256_cmpgt_epi32(_mm256_set1_epi32(nc), lane);
    __m256i m1 = _mm256_cmpgt_epi32(_mm256_set1_epi32(nc - 8), lane);
#pragma GCC unroll 12 /* at any -O: the accumulators must live in registers */
    for (int r = 0; r < mr; r++) {
        if (nc == NR) {
            acc[r][0] = _mm256_loadu_ps(c0 + (size_t)r * ld0);
            acc[r][1] = _mm256_loadu_ps(c0 + (size_t)r * ld0 + 8);
        } else {
            acc[r][0] = _mm256_maskload_ps(c0 + (size_t)r * ld0, m0);
            acc[r][1] = _mm256_maskload_ps(c0 + (size_t)r * ld0 + 8, m1);
        }
    }
#pragma GCC unroll 4 /* loop overhead would cost 5% of a thin tile's rate */
    for (int k = 0; k < kc; k++) {
        __m256 b0 = _mm256_loadu_ps(p + (size_t)k * NR), b1 = _mm256_loadu_ps(p + (size_t)k * NR + 8);
#pragma GCC unroll 12
        for (int r = 0; r < mr; r++) {
            __m256 av = _mm256_broadcast_ss(a + (size_t)r * lda + k);
            acc[r][0] = _mm256_fmadd_ps(av, b0, acc[r][0]);
            acc[r][1] = _mm256_fmadd_ps(av, b1, acc[r][1]);
        }
    }
    /* Masked only where a panel is short: on this AMD core a masked store to a line not yet
     * in cache (each step's fresh rows) ran 25-row products at 98 GFLOP/s, plain ones 104. */
#pragma GCC unroll 12
    for (int r = 0; r < mr; r++) {
        if (nc == NR) {
            _mm256_storeu_ps(c + (size_t)r * ldc, acc[r][0]);
            _mm256_storeu_ps(c + (size_t)r * ldc + 8, acc[r][1]);
        } else {
            _mm256_maskstore_ps(c + (size_t)r * ldc, m0, acc[r][0]);
            _mm256_maskstore_ps(c + (size_t)r * ldc + 8, m1, acc[r][1]);
        }
    }
}

/* Calls f with the row count (1 to 12) as a constant: inlined, each tile keeps its
 * accumulators in registers. */
#define WITH_CONST_ROWS(f, mr, ...)                                                                                    \
    switch (mr) {                                                                                                      \
    case 12: f(12, __VA_ARGS__); break;                                                                                \
    case 11: f(11, __VA_ARGS__); break;                                                                                \
    case 10: f(10, __VA_ARGS__); break;                                                                                \
    case 9: f(9, __VA_ARGS__); break;                                                                                  \
    case 8: f(8, __VA_ARGS__); break;                                                                                  \
    case 7: f(7, __VA_ARGS__); break;                                                                                  \
    case 6: f(6, __VA_ARGS__); break;                                                                                  \
    case 5: f(5, __VA_ARGS__); break;                                                                                  \
    case 4: f(4, __VA_ARGS__); break;                                                                                  \
    case 3: f(3, __VA_ARGS__); break;                                                                                  \
    case 2: f(2, __VA_ARGS__); break;                                                                                  \
    default: f(1, __VA_ARGS__); break;                                                                                 \
    }

/* Up to MR rows in AVX2 (more only for AVX-512's odd last panel, where they spill). */
static AVX2 void tile_fast(int mr, int nc, int kc, const float *a, int lda, const float *p, const float *c0, int ld0,
                           float *c, int ldc)
{
    WITH_CONST_ROWS(tile_avx2, mr, nc, kc, a, lda, p, c0, ld0, c, ldc)
}

/* C[MR_WIDE x 24] = C0 + A[MR_WIDE x kc] times three 8-column slices of panels, at v0,
 * v1, v2 (each NR floats a step): a row count that six-row tiles leave gets 12
 * accumulators this way too. */
static AVX2 void tile_wide(int kc, const float *a, int lda, const float *v0, const float *v1, const float *v2,
                           const float *c0, int ld0, float *c, int ldc)
{
    __m256 acc[MR_WIDE][3];
#pragma GCC unroll 4
    for (int r = 0; r < MR_WIDE; r++)
#pragma GCC unroll 3
        for (int v = 0; v < 3; v++) acc[r][v] = _mm256_loadu_ps(c0 + (size_t)r * ld0 + 8 * v);
#pragma GCC unroll 4
    for (int k = 0; k < kc; k++) {
        __m256 b0 = _mm256_loadu_ps(v0 + (size_t)k * NR), b1 = _mm256_loadu_ps(v1 + (size_t)k * NR);
        __m256 b2 = _mm256_loadu_ps(v2 + (size_t)k * NR);
#pragma GCC unroll 4
        for (int r = 0; r < MR_WIDE; r++) {
            __m256 av = _mm256_broadcast_ss(a + (size_t)r * lda + k);
            acc[r][0] = _mm256_fmadd_ps(av, b0, acc[r][0]);
            acc[r][1] = _mm256_fmadd_ps(av, b1, acc[r][1]);
            acc[r][2] = _mm256_fmadd_ps(av, b2, acc[r][2]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < MR_WIDE; r++)
#pragma GCC unroll 3
        for (int v = 0; v < 3; v++) _mm256_storeu_ps(c + (size_t)r * ldc + 8 * v, acc[r][v]);
}

#define AVX512 __attribute__((target("avx512f")))

/* Two neighbouring panels at once (the first full, nc columns of the second): 24 accumulators
 * share each broadcast of A, so the loads stay under the FMAs. */
static inline __attribute__((always_inline)) AVX512 void tile2_avx512(const int mr, int nc, int kc, const float *a, int lda,
                                                                      const float *p, const float *q, const float *c0,
                                                                      int ld0, float *c, int ldc)
{
    __m512 acc[MR512][2];
    __mmask16 m = (__mmask16)(nc >= NR ? 0xffff : (1u << nc) - 1);
#pragma GCC unroll 12
    for (int r = 0; r < mr; r++) {
        acc[r][0] = _mm512_loadu_ps(c0 + (size_t)r * ld0);
        acc[r][1] = _mm512_maskz_loadu_ps(m, c0 + (size_t)r * ld0 + NR);
    }
#pragma GCC unroll 4
    for (int k = 0; k < kc; k++) {
        __m512 b0 = _mm512_loadu_ps(p + (size_t)k * NR), b1 = _mm512_loadu_ps(q + (size_t)k * NR);
#pragma GCC unroll 12
        for (int r = 0; r < mr; r++) {
            __m512 av = _mm512_set1_ps(a[(size_t)r * lda + k]);
            acc[r][0] = _mm512_fmadd_ps(av, b0, acc[r][0]);
            acc[r][1] = _mm512_fmadd_ps(av, b1, acc[r][1]);
        }
    }
#pragma GCC unroll 12
    for (int r = 0; r < mr; r++) {
        _mm512_storeu_ps(c + (size_t)r * ldc, acc[r][0]);
        _mm512_mask_storeu_ps(c + (size_t)r * ldc + NR, m, acc[r][1]);
    }
}

static AVX512 void tile2_512(int mr, int nc, int kc, const float *a, int lda, const float *p, const float *q,
                             const float *c0, int ld0, float *c, int ldc)
{
    WITH_CONST_ROWS(tile2_avx512, mr, nc, kc, a, lda, p, q, c0, ld0, c, ldc)
}

/* The instruction set to run: 2 AVX-512, 1 AVX2 with FMA, 0 neither. AVX-512 only where
 * OpenBLAS runs its AVX-512 kernels too: OPENBLAS_CORETYPE=Haswell keeps loom at AVX2. */
static int cpu_isa(void)
{
    __builtin_cpu_init();
    const char *core = openblas_get_corename();
    int blas512 = core && (strcmp(core, "SkylakeX") == 0 || strcmp(core, "Cooperlake") == 0 ||
                           strcmp(core, "SapphireRapids") == 0);
    if (blas512 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return 2; /* AVX2 too: an odd last panel runs the AVX2 tile */
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

/* LOOM_GEMM_ISA=c|avx2|avx512 lowers the set, never raises it past the CPU's: for tests. */
static int env_isa(int v)
{
    const char *e = getenv("LOOM_GEMM_ISA");
    int want = !e ? v : strcmp(e, "c") == 0 ? 0 : strcmp(e, "avx2") == 0 ? 1 : v;
    if (want == 1 && v == 0) return 0;
    if (want == 1 && v == 2) return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    return want < v ? want : v;
}
#else
static void tile_fast(int mr, int nc, int kc, const float *a, int lda, const float *p, const float *c0, int ld0, float *c,
                      int ldc)
{
    tile_c(mr, nc, kc, a, lda, p, c0, ld0, c, ldc);
}
static void tile2_512(int mr, int nc, int kc, const float *a, int lda, const float *p, const float *q, const float *c0,
                      int ld0, float *c, int ldc)
{
    (void)mr, (void)nc, (void)kc, (void)a, (void)lda, (void)p, (void)q, (void)c0, (void)ld0, (void)c, (void)ldc;
}
static void tile_wide(int kc, const float *a, int lda, const float *v0, const float *v1, const float *v2, const float *c0,
                      int ld0, float *c, int ldc)
{
    (void)kc, (void)a, (void)lda, (void)v0, (void)v1, (void)v2, (void)c0, (void)ld0, (void)c, (void)ldc;
}
static int cpu_isa(void) { return 0; }
static int env_isa(int v) { return v; }
#endif

static int isa(void)
{
    static _Atomic int v = -1; /* threads may race here: each stores the same value */
    int got = atomic_load_explicit(&v, memory_order_relaxed);
    if (got < 0) atomic_store_explicit(&v, got = env_isa(cpu_isa()), memory_order_relaxed);
    return got;
}

/* Where C's tile at panel j starts: the bias on the first pass (one row: ld0 0), else C. */
static const float *tile_start(const float *bias, int k0, int j, const float *c, int ldc, int *ld0)
{
    *ld0 = bias && k0 == 0 ? 0 : ldc;
    return bias && k0 == 0 ? bias + (size_t)j * NR : c;
}

/* AVX2's next tile when R rows are left: six rows of a panel, or (*wide) four rows of 24
 * columns where sixes would leave 4 or 2; an odd count first takes five. Tiles with
 * fewer than 12 accumulators wait on FMA latency on this core (10: 104 GFLOP/s a thread,
 * 12: 111): an odd count's five rows, counts under four (7 runs 5 + 2), and a wide
 * tile's four rows at panels outside a group of three (4 x 16, 8). */
static int avx2_rows(int R, int *wide)
{
    *wide = 0;
    if (R % 2) return R >= 5 ? 5 : R;
    if (R == 4 || R == 8) return *wide = 1, MR_WIDE;
    return R < MR ? R : MR;
}

static int any_wide(int M)
{
    for (int i = 0, mr, w; i < M; i += mr)
        if ((mr = avx2_rows(M - i, &w)), w) return 1;
    return 0;
}

/* Panels [j0, j1) on AVX2: every pass over k, every row tile, the panels in threes where
 * wide tiles run (each covers a panel and a half), else one by one. */
static void panels_avx2(int j0, int j1, int M, int N, int K, const float *A, int lda, const float *P, const float *bias,
                        float *C, int ldc)
{
    int three = any_wide(M), ld0;
    for (int k0 = 0; k0 < K; k0 += KC) {
        int kc = K - k0 < KC ? K - k0 : KC;
        for (int j = j0, w; j < j1; j += w) {
            w = three && j + 3 <= j1 && N >= (j + 3) * NR ? 3 : 1; /* three full panels */
            const float *p = P + ((size_t)j * K + k0) * NR;
            for (int i = 0, mr, wide; i < M; i += mr) {
                mr = avx2_rows(M - i, &wide);
                const float *a = A + (size_t)i * lda + k0;
                float *c = C + (size_t)i * ldc + (size_t)j * NR;
                const float *c0 = tile_start(bias, k0, j, c, ldc, &ld0);
                if (wide && w == 3) { /* panel j and half of j + 1, then the other half and j + 2 */
                    const float *q = p + (size_t)K * NR, *s = q + (size_t)K * NR;
                    tile_wide(kc, a, lda, p, p + 8, q, c0, ld0, c, ldc);
                    tile_wide(kc, a, lda, q + 8, s, s + 8, c0 + 24, ld0, c + 24, ldc);
                    continue;
                }
                for (int u = 0; u < w; u++) {
                    int nc = N - (j + u) * NR < NR ? N - (j + u) * NR : NR;
                    tile_fast(mr, nc, kc, a, lda, p + (size_t)u * K * NR, c0 + (size_t)u * NR, ld0, c + (size_t)u * NR, ldc);
                }
            }
        }
    }
}

/* Panels [j0, j1) of the product: every pass over k, every row tile. */
static void panels(int j0, int j1, int M, int N, int K, const float *A, int lda, const float *P, const float *bias,
                   float *C, int ldc)
{
    int set = isa();
    if (set == 1) {
        panels_avx2(j0, j1, M, N, K, A, lda, P, bias, C, ldc);
        return;
    }
    int rows = set == 2 ? MR512 : MR, tiles = (M + rows - 1) / rows, mr, ld0;
    for (int k0 = 0; k0 < K; k0 += KC) {
        int kc = K - k0 < KC ? K - k0 : KC;
        for (int j = j0, w; j < j1; j += w) {
            w = set == 2 && j + 1 < j1 ? 2 : 1; /* AVX-512 takes panels in pairs */
            const float *p = P + ((size_t)j * K + k0) * NR, *q = w == 2 ? p + (size_t)K * NR : NULL;
            int nc = N - (j + w - 1) * NR < NR ? N - (j + w - 1) * NR : NR; /* columns of the last panel */
            for (int t = 0, i = 0; t < tiles; t++, i += mr) {
                mr = M / tiles + (t < M % tiles); /* even tiles: a thin one waits on FMA latency */
                const float *a = A + (size_t)i * lda + k0;
                float *c = C + (size_t)i * ldc + (size_t)j * NR;
                const float *c0 = tile_start(bias, k0, j, c, ldc, &ld0); /* the first pass starts from the bias */
                if (w == 2) tile2_512(mr, nc, kc, a, lda, p, q, c0, ld0, c, ldc);
                else if (set == 2) tile_fast(mr, nc, kc, a, lda, p, c0, ld0, c, ldc); /* AVX-512's odd last panel */
                else tile_c(mr, nc, kc, a, lda, p, c0, ld0, c, ldc);
            }
        }
    }
}

void loom_kernel_gemm_packed(int M, int N, int K, const float *A, int lda, const float *P, const float *bias, float *C,
                             int ldc)
{
    int np = (N + NR - 1) / NR;
    if (K <= 0) { /* no products: C = bias, or C as it is */
        for (int i = 0; bias && i < M; i++) memcpy(C + (size_t)i * ldc, bias, (size_t)(N > 0 ? N : 0) * sizeof(float));
        return;
    }
    /* Large and called outside a team: the panels split over threads. Each element is still
     * its own chain, so the split changes no bit. */
    if ((double)M * N * K >= LOOM_GEMM_PAR_MIN && np > 1 && omp_get_max_threads() > 1 && !omp_in_parallel()) {
#pragma omp parallel
        {
            int nt = omp_get_num_threads(), id = omp_get_thread_num();
            panels(np * id / nt, np * (id + 1) / nt, M, N, K, A, lda, P, bias, C, ldc);
        }
        return;
    }
    panels(0, np, M, N, K, A, lda, P, bias, C, ldc);
}

int loom_kernel_simd_width(void)
{
    int set = isa();
    return set == 2 ? 16 : set == 1 ? 8 : 1;
}

int loom_kernel_packed_fast(void)
{
    /* As fast as OpenBLAS's own kernels where those use the same instructions. */
    const char *core = openblas_get_corename();
    return isa() == 2 || (isa() == 1 && core && (strcmp(core, "Haswell") == 0 || strcmp(core, "Zen") == 0));
}
