/* The gradient all-reduce overlapped with backward.
 *
 * The flat gradient buffer is cut into buckets, contiguous ranges of whole parameters (so
 * nothing is packed or copied), and each bucket's MPI_Iallreduce starts from the tape's
 * hook as soon as backward has walked every node that reads one of its parameters: the
 * head's first, then the top layer's, while the layers below are still walked back.
 *
 * Determinism and MPI's rules: collectives must start in the same order on every rank,
 * and a bucket's sum must not depend on timing. So the cut and the order are fixed once,
 * at the run's first step, from rank 0's graph, and broadcast: walking the parameters
 * from the last declared, a bucket closes once it holds bucket_bytes, or when the next
 * parameter is first read by another node (an embedding declared between the layers and
 * the head is read last, and must not hold back the top layer); buckets start in the
 * order backward finishes them. Every step, each rank starts bucket order[j] once it is
 * final on that rank and order[j-1] has started. The same boundaries give the same bits
 * run after run; the grouping of a sum over 3 or more ranks can differ from one
 * all-reduce of the whole buffer (MPI picks its algorithm by size), within rounding.
 *
 * Progress: Open MPI moves a non-blocking collective forward only inside MPI calls, so
 * the hook (after every node, and from long ops through loom_tape_poll) calls
 * MPI_Testall, at most every POLL_EVERY seconds. */
#include <stdint.h>
#include <string.h>

#include "internal.h"

#define MAX_COUNT ((size_t)1 << 28) /* floats per bucket at most: an MPI count is an int */
#define POLL_EVERY 1e-4             /* seconds between the hook's progress calls */

struct loom_buckets {
    loom_trainer *tr;
    int np;       /* parameter views */
    int room;     /* buckets the arrays hold */
    int n;        /* buckets (valid once planned) */
    int planned;  /* the cut and the order are fixed (at the first step) */
    size_t *lo;   /* bucket b is floats [lo[b], lo[b+1]) of the flat buffer, ascending; lo[n] is the total */
    int *order;   /* order[j]: the j-th bucket to start, the same on every rank */
    int *ready;   /* this step: bucket b is final once backward has walked down to node ready[b] */
    int *first;   /* per parameter: the first node that reads it (the tape's length: none) */
    size_t *poff; /* per parameter: its offset; poff[np] is the total */
    double *msg;  /* the plan as rank 0 broadcasts it */
    int next;     /* buckets started this step */
    int early;    /* of them, started while backward had nodes left */
    float weight; /* this rank's share of the global mean */
    double polled; /* when the hook last let MPI progress */
#ifdef LOOM_HAVE_MPI
    MPI_Request *req; /* req[j]: the all-reduce of bucket order[j] */
#endif
};

loom_buckets *loom_buckets_new(loom_trainer *tr)
{
    loom_buckets *b = loom_calloc(1, sizeof *b);
    if (!b) return (loom_error_set(LOOM_ENOMEM, "trainer: out of memory for the all-reduce buckets"), NULL);
    size_t total = loom_params_size(tr->ps);
    b->tr = tr;
    b->np = loom_params_count(tr->ps);
    b->room = b->np + (int)(total / MAX_COUNT) + 1;
    size_t r = (size_t)b->room;
    b->lo = loom_calloc(r + 1, sizeof *b->lo);
    b->order = loom_calloc(r, sizeof *b->order);
    b->ready = loom_calloc(r, sizeof *b->ready);
    b->first = loom_calloc((size_t)b->np + 1, sizeof *b->first);
    b->poff = loom_calloc((size_t)b->np + 1, sizeof *b->poff);
    b->msg = loom_calloc(2 * r + 1, sizeof *b->msg);
#ifdef LOOM_HAVE_MPI
    b->req = loom_calloc(r, sizeof *b->req);
    int no_req = !b->req;
#else
    int no_req = 0;
#endif
    if (!b->lo || !b->order || !b->ready || !b->first || !b->poff || !b->msg || no_req) {
        loom_buckets_free(b);
        return (loom_error_set(LOOM_ENOMEM, "trainer: out of memory for the all-reduce buckets"), NULL);
    }
    const float *base = loom_params_data(tr->ps);
    for (int i = 0; i < b->np; i++) b->poff[i] = (size_t)(loom_params_view(tr->ps, i)->data - base);
    b->poff[b->np] = total;
    return b;
}

void loom_buckets_free(loom_buckets *b)
{
    if (!b) return;
    loom_free(b->lo), loom_free(b->order), loom_free(b->ready), loom_free(b->first), loom_free(b->poff);
    loom_free(b->msg);
#ifdef LOOM_HAVE_MPI
    loom_free(b->req);
#endif
    loom_free(b);
}

/* 1 and *off if p points into the total floats from base. */
static int offset_in(const float *base, size_t total, const float *p, size_t *off)
{
    uintptr_t a = (uintptr_t)base, q = (uintptr_t)p;
    if (!p || q < a || q >= a + total * sizeof(float)) return 0;
    *off = (size_t)(q - a) / sizeof(float);
    return 1;
}

/* Ranges start[0..count) tile the buffer (start[count] is its end): every range that
 * floats [a, a + len) overlap is read by node k, and first keeps the lowest node. */
static void mark(int *first, const size_t *start, int count, size_t a, size_t len, int k)
{
    int l = 0, h = count - 1;
    while (l < h) { /* the last range starting at or before a */
        int m = (l + h + 1) / 2;
        if (start[m] <= a) l = m;
        else h = m - 1;
    }
    for (int i = l; i < count && start[i] < a + len; i++)
        if (first[i] > k) first[i] = k;
}

/* first[i]: the first node of this step's tape reading range i (the tape's length: none),
 * through a parameter's values or its gradient (views of rows included). */
static void scan(loom_buckets *b, int *first, const size_t *start, int count)
{
    loom_tape *t = b->tr->tape;
    const float *data = loom_params_data(b->tr->ps), *grad = loom_params_grad(b->tr->ps);
    size_t total = loom_params_size(b->tr->ps), off;
    int len = loom_tape_length(t);
    for (int i = 0; i < count; i++) first[i] = len;
    for (int k = 0; k < len; k++) {
        const loom_node *nd = loom_tape_node(t, k);
        for (int j = 0; j < nd->n_in; j++) {
            const loom_tensor *x = nd->in[j];
            size_t size = (size_t)x->rows * (size_t)x->cols;
            if (offset_in(data, total, x->data, &off)) mark(first, start, count, off, size, k);
            if (offset_in(grad, total, x->grad, &off)) mark(first, start, count, off, size, k);
        }
    }
}

/* Rank 0's first step fixes the cut and the order for the run (see the top of the file). */
static loom_status plan(loom_buckets *b)
{
    size_t total = loom_params_size(b->tr->ps), cap = b->tr->cfg.bucket_bytes / sizeof(float);
    if (b->tr->cfg.bucket_bytes == 0) cap = LOOM_BUCKET_BYTES / sizeof(float);
    if (cap < 1) cap = 1;
    if (cap > MAX_COUNT) cap = MAX_COUNT;
    int n = 0;
    if (b->tr->dist->rank == 0 && total > 0) {
        scan(b, b->first, b->poff, b->np);
        /* The cuts, from the end of the buffer down, land in lo[] backwards. */
        size_t *cut = b->lo, last = total;
        int open = 0, fb = 0;
        for (int i = b->np - 1; i >= 0; i--) {
            if (open && (last - b->poff[i + 1] >= cap || b->first[i] != fb)) cut[n++] = last = b->poff[i + 1], open = 0;
            if (!open) open = 1, fb = b->first[i];
            while (last - b->poff[i] > MAX_COUNT) cut[n++] = last = last - MAX_COUNT; /* a huge parameter, in pieces */
        }
        cut[n++] = 0;
        for (int i = 0; i < n / 2; i++) { /* ascending */
            size_t x = cut[i];
            cut[i] = cut[n - 1 - i], cut[n - 1 - i] = x;
        }
        b->lo[n] = total;
        scan(b, b->ready, b->lo, n);
        /* Backward finishes the bucket read first by the latest node first; ties: the later in the buffer. */
        for (int j = 0; j < n; j++) {
            int i = n - 1 - j, p = j;
            while (p > 0 && b->ready[b->order[p - 1]] < b->ready[i]) b->order[p] = b->order[p - 1], p--;
            b->order[p] = i;
        }
        b->msg[0] = n;
        for (int i = 0; i < n; i++) b->msg[1 + i] = (double)b->lo[i], b->msg[1 + n + i] = b->order[i];
    }
    loom_status st = loom_dist_broadcast_f64(b->tr->dist, b->msg, 2 * b->room + 1);
    if (st != LOOM_OK) return st;
    n = (int)b->msg[0];
    for (int i = 0; i < n; i++) b->lo[i] = (size_t)b->msg[1 + i], b->order[i] = (int)b->msg[1 + n + i];
    b->lo[n] = total;
    b->n = n;
    b->planned = 1;
    return LOOM_OK;
}

/* Scales the next bucket in the order by this rank's weight and starts its all-reduce. */
static loom_status start(loom_buckets *b)
{
    int i = b->order[b->next];
    float *g = loom_params_grad(b->tr->ps) + b->lo[i], w = b->weight;
    size_t m = b->lo[i + 1] - b->lo[i];
    LOOM_PFOR(k, m, g[k] *= w;);
#ifdef LOOM_HAVE_MPI
    int rc = MPI_Iallreduce(MPI_IN_PLACE, g, (int)m, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, &b->req[b->next]);
    if (rc != MPI_SUCCESS) return loom_dist_mpi_fail("all-reduce", rc);
#endif
    b->next++;
    return LOOM_OK;
}

/* The tape's hook: starts the buckets now final, in the order, and lets MPI progress. */
static loom_status on_node(void *ctx, int done)
{
    loom_buckets *b = ctx;
    loom_status st = LOOM_OK;
    while (st == LOOM_OK && b->next < b->n && b->ready[b->order[b->next]] >= done) {
        b->early += done > 0;
        st = start(b);
    }
    double now = loom_dist_now();
    if (st != LOOM_OK || b->next == 0 || now - b->polled < POLL_EVERY) return st;
    b->polled = now;
#ifdef LOOM_HAVE_MPI
    int flag = 0, rc = MPI_Testall(b->next, b->req, &flag, MPI_STATUSES_IGNORE);
    if (rc != MPI_SUCCESS) return loom_dist_mpi_fail("all-reduce", rc);
#endif
    return LOOM_OK;
}

loom_status loom_buckets_begin(loom_buckets *b, float weight)
{
    loom_status st = b->planned ? LOOM_OK : plan(b);
    if (st != LOOM_OK) return st;
    scan(b, b->ready, b->lo, b->n);
    b->next = b->early = 0;
    b->weight = weight;
    b->polled = 0;
    loom_tape_set_hook(b->tr->tape, on_node, b);
    return LOOM_OK;
}

loom_status loom_buckets_finish(loom_buckets *b, int *early)
{
    loom_tape_set_hook(b->tr->tape, NULL, NULL);
    loom_status st = LOOM_OK;
    while (st == LOOM_OK && b->next < b->n) st = start(b);
    *early = b->early;
#ifdef LOOM_HAVE_MPI
    if (st == LOOM_OK) st = loom_dist_wait(b->tr->dist, b->next, b->req, "all-reduce");
#endif
    return st;
}
