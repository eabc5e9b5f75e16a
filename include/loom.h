/* loom: training recurrent neural networks in C. This one header gives the
 * whole public API, module by module (each also usable alone):
 *
 *   loom_autograd.h  tensors, arena, flat parameters, the tape, ops, RNG, gradcheck
 *   loom_layers.h    cells (LSTM, GRU, RNN, your own), the sequence layer, state,
 *                    linear/embedding, optimizers, clipping, schedules
 *   loom_io.h        HDF5 checkpoints
 *   loom_dist.h      training across one or many processes: the world, the trainer
 *
 * Errors. Every call that can fail returns a loom_status (LOOM_OK is 0) or NULL,
 * and leaves a message naming the thing and the problem in loom_error_message(),
 * per thread; the library never prints and never exits. Ops record their first
 * failure on the tape and return NULL, so a chain of ops can be checked once at
 * its end with loom_tape_status(). Only programs print and exit. */
#ifndef LOOM_H
#define LOOM_H

#include "loom_autograd.h"
#include "loom_layers.h"
#include "loom_io.h"
#include "loom_dist.h"


#endif
