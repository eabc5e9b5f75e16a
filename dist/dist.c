/* MPI all-reduce and broadcast of flat float buffers, in chunks MPI's int counts can hold. */
#include <limits.h>
#include <mpi.h>

#include "loom_dist.h"

#define CHUNK ((size_t)1 << 28) /* floats per MPI call, well under INT_MAX */

static loom_status mpi_fail(const char *what, int rc)
{
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    return loom_error_set(LOOM_EIO, "dist: %s failed: %s", what, msg);
}

loom_status loom_dist_init(loom_dist *d, int *argc, char ***argv)
{
    int inited = 0;
    d->started_mpi = 0;
    MPI_Initialized(&inited);
    if (!inited) {
        int rc = MPI_Init(argc, argv);
        if (rc != MPI_SUCCESS) return mpi_fail("MPI_Init", rc);
        d->started_mpi = 1;
    }
    /* Errors come back as codes, so they can be reported instead of aborting the job. */
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &d->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &d->size);
    return LOOM_OK;
}

loom_status loom_dist_allreduce_mean(loom_dist *d, float *buf, size_t n)
{
    for (size_t off = 0; off < n; off += CHUNK) {
        int cnt = (int)(n - off < CHUNK ? n - off : CHUNK);
        int rc = MPI_Allreduce(MPI_IN_PLACE, buf + off, cnt, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
        if (rc != MPI_SUCCESS) return mpi_fail("MPI_Allreduce", rc);
    }
    if (d->size > 1) {
        float s = 1.0f / (float)d->size;
        LOOM_PFOR(i, n, buf[i] *= s;);
    }
    return LOOM_OK;
}

loom_status loom_dist_broadcast(loom_dist *d, float *buf, size_t n)
{
    (void)d;
    for (size_t off = 0; off < n; off += CHUNK) {
        int cnt = (int)(n - off < CHUNK ? n - off : CHUNK);
        int rc = MPI_Bcast(buf + off, cnt, MPI_FLOAT, 0, MPI_COMM_WORLD);
        if (rc != MPI_SUCCESS) return mpi_fail("MPI_Bcast", rc);
    }
    return LOOM_OK;
}

void loom_dist_finalize(loom_dist *d)
{
    if (d->started_mpi) MPI_Finalize();
    d->started_mpi = 0;
}
