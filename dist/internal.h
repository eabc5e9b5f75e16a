/* Private helpers of the dist module. */
#ifndef LOOM_DIST_INTERNAL_H
#define LOOM_DIST_INTERNAL_H

#include "loom_dist.h"

/* The error of a public call given NULL for a required pointer: "fn: what is NULL". */
#define LOOM_NULL_ARG(fn, what) loom_error_set(LOOM_EARG, fn ": " what " is NULL")

/* LOOM_OK if d is a joined world fn can use (not NULL, loom_dist_init'ed). */
loom_status loom_dist_usable(const loom_dist *d, const char *fn);
/* LOOM_OK if tr is a trainer fn can use (not NULL, initialised and not freed). */
loom_status loom_trainer_usable(const loom_trainer *tr, const char *fn);

/* A note about the run (rank 0): cfg.note, or "prog: note: ..." on stderr. */
void loom_trainer_note(const loom_trainer *tr, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Test-only faults (LOOM_FAULT=KIND:RANK:STEP): 1 if one of this kind is due now on this rank. */
enum { FAULT_NONE, FAULT_NAN, FAULT_ERROR, FAULT_STALL, FAULT_KILL, FAULT_SLOW, FAULT_SAVE, FAULT_KINDS };
int loom_trainer_fault(const loom_trainer *tr, int kind);

/* Monotonic wall-clock seconds. */
double loom_dist_now(void);

/* Gradient buckets (buckets.c): the all-reduce overlapped with backward. */
typedef struct loom_buckets loom_buckets;
/* Room for the buckets of tr's parameters (cut at the first step, see buckets.c); NULL on failure. */
loom_buckets *loom_buckets_new(loom_trainer *tr);
void loom_buckets_free(loom_buckets *b);
/* Before backward: finds the node each bucket waits for and hooks the tape, so each
 * bucket's all-reduce starts (scaled by this rank's weight) as soon as it is final. */
loom_status loom_buckets_begin(loom_buckets *b, float weight);
/* After backward: unhooks the tape, starts the buckets left and waits for all of them
 * against the comm timeout; *early gets how many started while backward had nodes left. */
loom_status loom_buckets_finish(loom_buckets *b, int *early);

#ifdef LOOM_HAVE_MPI
#include <mpi.h>
/* The error of a failed MPI call: "what failed: MPI's message". */
loom_status loom_dist_mpi_fail(const char *what, int rc);
/* Waits for n requests, polling against d->timeout: the stall detection of every collective. */
loom_status loom_dist_wait(loom_dist *d, int n, MPI_Request *req, const char *what);
#endif

#endif
