/* Prints a hash of the packed GEMM's bits over awkward shapes, for packed_isa.sh to
 * compare across LOOM_GEMM_ISA settings: the same chains must give the same bits. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loom_autograd.h"

int main(void)
{
    static const int shapes[][3] = {{1, 1, 1}, {7, 33, 100}, {13, 100, 513}, {25, 2048, 64}, {32, 320, 1280}};
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
        float *A = malloc(sizeof(float) * M * K), *B = malloc(sizeof(float) * K * N), *C = malloc(sizeof(float) * M * N);
        float *P = malloc(sizeof(float) * loom_kernel_pack_size(K, N)), *bias = malloc(sizeof(float) * N);
        if (!A || !B || !C || !P || !bias) return fprintf(stderr, "packed_isa: out of memory\n"), 1;
        for (int i = 0; i < M * K; i++) A[i] = (float)((i * 37) % 101) / 50.0f - 1.0f;
        for (int i = 0; i < K * N; i++) B[i] = (float)((i * 53) % 97) / 48.0f - 1.0f;
        for (int i = 0; i < N; i++) bias[i] = (float)(i % 5) * 0.1f;
        for (int i = 0; i < M * N; i++) C[i] = (float)(i % 7) * 0.3f;
        loom_kernel_pack_b((int)s % 2, K, N, B, s % 2 ? K : N, P);
        for (int b = 0; b < 2; b++) { /* onto C, then from the bias */
            loom_kernel_gemm_packed(M, N, K, A, K, P, b ? bias : NULL, C, N);
            for (int i = 0; i < M * N; i++) {
                uint32_t u;
                memcpy(&u, C + i, sizeof u);
                h = (h ^ u) * 1099511628211ull;
            }
        }
        free(A), free(B), free(C), free(P), free(bias);
    }
    printf("%016llx\n", (unsigned long long)h);
    return 0;
}
