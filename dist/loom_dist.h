/* loom dist: MPI data parallelism over the flat buffers. Each rank computes
 * gradients on its own data; one all-reduce of the flat gradient buffer makes
 * them the global mean, and a broadcast gives every rank the same parameters. */
#ifndef LOOM_DIST_H
#define LOOM_DIST_H

#include <stddef.h>

#include "loom_autograd.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct loom_dist {
    int rank, size;
    int started_mpi; /* 1 if loom_dist_init called MPI_Init, so finalize ends it */
} loom_dist;

/* Initialises MPI unless the program already did, and fills rank and size. */
loom_status loom_dist_init(loom_dist *d, int *argc, char ***argv);
/* Replaces buf on every rank with the mean over ranks (sum, then / size). */
loom_status loom_dist_allreduce_mean(loom_dist *d, float *buf, size_t n);
/* Copies rank 0's buf to every rank. */
loom_status loom_dist_broadcast(loom_dist *d, float *buf, size_t n);
/* Ends MPI if loom_dist_init started it. */
void loom_dist_finalize(loom_dist *d);

#ifdef __cplusplus
}
#endif
#endif
