/* Joining and leaving the job, the batch shard, and collectives polled
 * against a deadline so that a stalled peer ends the job instead of hanging it. */
#define _POSIX_C_SOURCE 200809L
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"

#ifdef LOOM_HAVE_MPI
#include <mpi.h>
#endif

int loom_dist_has_mpi(void)
{
#ifdef LOOM_HAVE_MPI
    return 1;
#else
    return 0;
#endif
}

#ifdef LOOM_HAVE_MPI
/* 1 if a launcher started this process as part of a job (mpirun, srun, hydra);
 * LOOM_DIST=mpi|single overrides. A plain start is world size 1 without MPI_Init. */
static int launched(void)
{
    const char *force = getenv("LOOM_DIST");
    if (force && strcmp(force, "mpi") == 0) return 1;
    if (force && strcmp(force, "single") == 0) return 0;
    static const char *vars[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE", "MPI_LOCALNRANKS",
                                 "SLURM_STEP_NUM_TASKS"};
    for (size_t i = 0; i < sizeof vars / sizeof *vars; i++)
        if (getenv(vars[i])) return 1;
    return 0;
}
#endif

/* How many tasks the launcher says the job has (1 when it says nothing). */
static long launcher_tasks(void)
{
    static const char *vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_STEP_NUM_TASKS"};
    long n = 1;
    for (size_t i = 0; i < sizeof vars / sizeof *vars; i++) {
        const char *v = getenv(vars[i]);
        if (v && atol(v) > n) n = atol(v);
    }
    return n;
}

/* A launcher that started several tasks which each see a world of one would run
 * N independent trainings writing the same files: refuse that. */
static loom_status check_world(const loom_dist *d)
{
    long tasks = launcher_tasks();
    const char *force = getenv("LOOM_DIST");
    if (d->size == 1 && tasks > 1 && !(force && strcmp(force, "single") == 0))
        return loom_error_set(LOOM_ESTATE,
                              "dist: the launcher started %ld tasks, but this one sees a world of 1 (%s): each would "
                              "train alone; with srun, add --mpi=pmix",
                              tasks, loom_dist_has_mpi() ? "MPI did not connect them" : "loom was built without MPI, -DLOOM_MPI=OFF");
    return LOOM_OK;
}

loom_status loom_dist_usable(const loom_dist *d, const char *fn)
{
    if (!d) return loom_error_set(LOOM_EARG, "%s: dist is NULL", fn);
    if (d->size < 1 || d->rank < 0 || d->rank >= d->size)
        return loom_error_set(LOOM_ESTATE, "%s: the dist is not initialised (loom_dist_init)", fn);
    return LOOM_OK;
}

loom_status loom_dist_init(loom_dist *d, int *argc, char ***argv)
{
    if (!d) return LOOM_NULL_ARG("dist_init", "dist");
    memset(d, 0, sizeof *d);
    d->size = 1;
    d->timeout = LOOM_DIST_TIMEOUT;
#ifdef LOOM_HAVE_MPI
    int inited = 0;
    MPI_Initialized(&inited);
    if (!inited && !launched()) return check_world(d);
    if (!inited) {
        int rc = MPI_Init(argc, argv);
        if (rc != MPI_SUCCESS) return loom_error_set(LOOM_EIO, "dist: MPI_Init failed (code %d)", rc);
        d->started_mpi = 1;
    }
    /* Errors come back as codes, so they can be reported instead of killing the job mute. */
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &d->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &d->size);
#else
    (void)argc, (void)argv;
#endif
    return check_world(d);
}

loom_status loom_dist_shard(loom_dist *d, int global_batch, int *row0, int *rows)
{
    loom_status st = loom_dist_usable(d, "dist_shard");
    if (st != LOOM_OK) return st;
    if (!row0) return LOOM_NULL_ARG("dist_shard", "row0");
    if (!rows) return LOOM_NULL_ARG("dist_shard", "rows");
    if (global_batch <= 0 || global_batch % d->size != 0) {
        d->agreed = 1;
        return loom_error_set(LOOM_EARG,
                              "the global batch of %d does not divide evenly among %d ranks: use a multiple of %d",
                              global_batch, d->size, d->size);
    }
    *rows = global_batch / d->size;
    *row0 = d->rank * *rows;
    return LOOM_OK;
}

void loom_dist_perror(const loom_dist *d, const char *prog)
{
    const char *msg = loom_error_message();
    if (!msg[0]) msg = "unknown error";
    if (!prog) prog = "loom";
    if (d && d->size > 1 && !d->agreed) fprintf(stderr, "%s: rank %d: %s\n", prog, d->rank, msg);
    else if (!d || d->rank == 0) fprintf(stderr, "%s: %s\n", prog, msg);
    fflush(stderr);
}

void loom_dist_finalize(loom_dist *d)
{
#ifdef LOOM_HAVE_MPI
    if (d && d->started_mpi) MPI_Finalize();
#endif
    if (d) d->started_mpi = 0;
}

int loom_dist_finish(loom_dist *d, int rc)
{
    fflush(stdout);
    fflush(stderr);
#ifdef LOOM_HAVE_MPI
    if (rc != 0 && d && d->size > 1 && !d->agreed) MPI_Abort(MPI_COMM_WORLD, rc);
#endif
    loom_dist_finalize(d);
    return rc;
}

/* LOOM_OK if a collective fn can run on buf of n values (NULL is fine for none; a
 * size_t count past LLONG_MAX arrives negative, and is refused like one). */
static loom_status buf_args(const loom_dist *d, const char *fn, const void *buf, long long n)
{
    loom_status st = loom_dist_usable(d, fn);
    if (st != LOOM_OK) return st;
    if (n < 0) return loom_error_set(LOOM_EARG, "%s: count %lld is negative", fn, n);
    if (!buf && n) return loom_error_set(LOOM_EARG, "%s: buffer is NULL", fn);
    return LOOM_OK;
}

/* LOOM_OK if gather_rows can run: global may be NULL only off rank 0. */
static loom_status gather_args(const loom_dist *d, const float *local, const float *global)
{
    loom_status st = loom_dist_usable(d, "dist_gather_rows");
    if (st != LOOM_OK) return st;
    if (!local) return LOOM_NULL_ARG("dist_gather_rows", "local");
    if (!global && d->rank == 0) return LOOM_NULL_ARG("dist_gather_rows", "global");
    return LOOM_OK;
}

#ifdef LOOM_HAVE_MPI

#define CHUNK ((size_t)1 << 28) /* elements per MPI call, well under INT_MAX */
#define MAX_REQ 16

loom_status loom_dist_mpi_fail(const char *what, int rc)
{
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    return loom_error_set(LOOM_EIO, "%s failed: %s", what, msg);
}

/* Waits for the requests, polling against the deadline: busy at first (a
 * collective progresses inside MPI_Test), yielding the core after a while, and
 * sleeping once the wait is long (rank 0 evaluating, or a stalled peer). */
loom_status loom_dist_wait(loom_dist *d, int n, MPI_Request *req, const char *what)
{
    double t0 = MPI_Wtime();
    for (long polls = 0;; polls++) {
        int done = 0, rc = MPI_Testall(n, req, &done, MPI_STATUSES_IGNORE);
        if (rc != MPI_SUCCESS) return loom_dist_mpi_fail(what, rc);
        if (done) return LOOM_OK;
        double waited = MPI_Wtime() - t0;
        if (d->timeout > 0 && waited > d->timeout)
            return loom_error_set(LOOM_EIO,
                                  "%s: waited %.0f s (the comm timeout) for the other ranks: one of them has stalled "
                                  "or died",
                                  what, waited);
        if (waited > 1.0) nanosleep(&(struct timespec){0, 200000}, NULL);
        else if (polls > 100) sched_yield();
    }
}

static loom_status allreduce(loom_dist *d, void *buf, size_t n, MPI_Datatype type, size_t elem)
{
    MPI_Request req[MAX_REQ];
    int k = 0;
    if (n > CHUNK * MAX_REQ) return loom_error_set(LOOM_EARG, "dist: all-reduce of %zu values is too large", n);
    for (size_t off = 0; off < n; off += CHUNK, k++) {
        int cnt = (int)(n - off < CHUNK ? n - off : CHUNK);
        int rc = MPI_Iallreduce(MPI_IN_PLACE, (char *)buf + off * elem, cnt, type, MPI_SUM, MPI_COMM_WORLD, &req[k]);
        if (rc != MPI_SUCCESS) return loom_dist_mpi_fail("all-reduce", rc);
    }
    return loom_dist_wait(d, k, req, "all-reduce");
}

loom_status loom_dist_allreduce_sum(loom_dist *d, float *buf, size_t n)
{
    loom_status st = buf_args(d, "dist_allreduce_sum", buf, (long long)n);
    if (st != LOOM_OK) return st;
    return d->size > 1 ? allreduce(d, buf, n, MPI_FLOAT, sizeof(float)) : LOOM_OK;
}

loom_status loom_dist_allreduce_sum_f64(loom_dist *d, double *buf, int n)
{
    loom_status st = buf_args(d, "dist_allreduce_sum_f64", buf, n);
    if (st != LOOM_OK) return st;
    return d->size > 1 ? allreduce(d, buf, (size_t)n, MPI_DOUBLE, sizeof(double)) : LOOM_OK;
}

loom_status loom_dist_broadcast(loom_dist *d, float *buf, size_t n)
{
    loom_status st = buf_args(d, "dist_broadcast", buf, (long long)n);
    if (st != LOOM_OK) return st;
    if (d->size == 1) return LOOM_OK;
    MPI_Request req[MAX_REQ];
    int k = 0;
    if (n > CHUNK * MAX_REQ) return loom_error_set(LOOM_EARG, "dist: broadcast of %zu values is too large", n);
    for (size_t off = 0; off < n; off += CHUNK, k++) {
        int cnt = (int)(n - off < CHUNK ? n - off : CHUNK);
        int rc = MPI_Ibcast(buf + off, cnt, MPI_FLOAT, 0, MPI_COMM_WORLD, &req[k]);
        if (rc != MPI_SUCCESS) return loom_dist_mpi_fail("broadcast", rc);
    }
    return loom_dist_wait(d, k, req, "broadcast");
}

loom_status loom_dist_broadcast_f64(loom_dist *d, double *buf, int n)
{
    loom_status st = buf_args(d, "dist_broadcast_f64", buf, n);
    if (st != LOOM_OK) return st;
    if (d->size == 1) return LOOM_OK;
    MPI_Request req;
    int rc = MPI_Ibcast(buf, n, MPI_DOUBLE, 0, MPI_COMM_WORLD, &req);
    return rc == MPI_SUCCESS ? loom_dist_wait(d, 1, &req, "broadcast") : loom_dist_mpi_fail("broadcast", rc);
}

loom_status loom_dist_wait_root(loom_dist *d)
{
    loom_status st = loom_dist_usable(d, "dist_wait_root");
    if (st != LOOM_OK) return st;
    if (d->size == 1) return LOOM_OK;
    double timeout = d->timeout;
    MPI_Request req;
    int rc = MPI_Ibarrier(MPI_COMM_WORLD, &req);
    d->timeout = 0; /* rank 0's own work takes what it takes */
    st = rc == MPI_SUCCESS ? loom_dist_wait(d, 1, &req, "wait for rank 0") : loom_dist_mpi_fail("wait for rank 0", rc);
    d->timeout = timeout;
    return st;
}

loom_status loom_dist_gather_rows(loom_dist *d, const float *local, float *global, size_t blocks, size_t rows,
                                  size_t row_floats)
{
    loom_status st = gather_args(d, local, global);
    if (st != LOOM_OK) return st;
    size_t n = blocks * rows * row_floats;
    if (d->size == 1) {
        memcpy(global, local, n * sizeof(float));
        return LOOM_OK;
    }
    if (n > (size_t)1 << 30) return loom_error_set(LOOM_EARG, "dist: gather of %zu values per rank is too large", n);
    /* Rank-major on arrival; rank 0 then interleaves each block's rows by rank. */
    float *tmp = NULL;
    if (d->rank == 0 && !(tmp = malloc(n * (size_t)d->size * sizeof(float))))
        return loom_error_set(LOOM_ENOMEM, "dist: gather: cannot allocate %zu bytes", n * (size_t)d->size * sizeof(float));
    MPI_Request req;
    int rc = MPI_Igather(local, (int)n, MPI_FLOAT, tmp, (int)n, MPI_FLOAT, 0, MPI_COMM_WORLD, &req);
    st = rc == MPI_SUCCESS ? loom_dist_wait(d, 1, &req, "gather") : loom_dist_mpi_fail("gather", rc);
    if (st == LOOM_OK && d->rank == 0) {
        size_t part = rows * row_floats;
        for (int r = 0; r < d->size; r++)
            for (size_t b = 0; b < blocks; b++)
                memcpy(global + (b * (size_t)d->size + (size_t)r) * part, tmp + ((size_t)r * blocks + b) * part,
                       part * sizeof(float));
    }
    free(tmp);
    return st;
}

#else /* a world of one */

loom_status loom_dist_allreduce_sum(loom_dist *d, float *buf, size_t n)
{
    return buf_args(d, "dist_allreduce_sum", buf, (long long)n);
}

loom_status loom_dist_allreduce_sum_f64(loom_dist *d, double *buf, int n)
{
    return buf_args(d, "dist_allreduce_sum_f64", buf, n);
}

loom_status loom_dist_broadcast(loom_dist *d, float *buf, size_t n)
{
    return buf_args(d, "dist_broadcast", buf, (long long)n);
}

loom_status loom_dist_broadcast_f64(loom_dist *d, double *buf, int n)
{
    return buf_args(d, "dist_broadcast_f64", buf, n);
}

loom_status loom_dist_wait_root(loom_dist *d) { return loom_dist_usable(d, "dist_wait_root"); }

loom_status loom_dist_gather_rows(loom_dist *d, const float *local, float *global, size_t blocks, size_t rows,
                                  size_t row_floats)
{
    loom_status st = gather_args(d, local, global);
    if (st != LOOM_OK) return st;
    memcpy(global, local, blocks * rows * row_floats * sizeof(float));
    return LOOM_OK;
}

#endif

loom_status loom_dist_allreduce_mean(loom_dist *d, float *buf, size_t n)
{
    loom_status st = buf_args(d, "dist_allreduce_mean", buf, (long long)n);
    if (st != LOOM_OK) return st;
    st = loom_dist_allreduce_sum(d, buf, n);
    if (st == LOOM_OK && d->size > 1) {
        float s = 1.0f / (float)d->size;
        LOOM_PFOR(i, n, buf[i] *= s;);
    }
    return st;
}
