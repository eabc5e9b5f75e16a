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

#endif
