/* Private helpers shared by the autograd sources. */
#ifndef LOOM_AUTOGRAD_INTERNAL_H
#define LOOM_AUTOGRAD_INTERNAL_H

#include "loom_autograd.h"

/* The error of a public call given NULL for a required pointer: "fn: what is NULL"
 * (the same macro as the layers' internal.h). */
#define LOOM_NULL_ARG(fn, what) loom_error_set(LOOM_EARG, fn ": " what " is NULL")

/* Fixed-size blocks make reductions give the same bits on any thread count. */
#define LOOM_RED_BLOCK 4096

/* Failures recorded on this thread so far, and the status of the last one: a NULL
 * input after a failure since the tape's reset is that failure's consequence. */
uint64_t loom_error_count(void);
loom_status loom_error_last(void);

/* NULL inputs: keeps the first error and returns NULL (1), or 0 when all are set. */
int loom_tape_null_inputs(loom_tape *t, const char *op, loom_tensor *const *in, int n);

#endif
