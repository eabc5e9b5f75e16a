/* Private helpers shared by the autograd sources. */
#ifndef LOOM_AUTOGRAD_INTERNAL_H
#define LOOM_AUTOGRAD_INTERNAL_H

#include "loom_autograd.h"

/* Fixed-size blocks make reductions give the same bits on any thread count. */
#define LOOM_RED_BLOCK 4096

/* NULL inputs: keeps the first error and returns NULL (1), or 0 when all are set. */
int loom_tape_null_inputs(loom_tape *t, const char *op, loom_tensor *const *in, int n);

#endif
