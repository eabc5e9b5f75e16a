/* loom io: crash-safe HDF5 checkpoints.
 *
 * A checkpoint is one HDF5 file. Writes go to a temporary file in the same
 * directory, which commit() flushes, closes, fsyncs, renames over the target
 * and follows with an fsync of the directory, so a crash at any moment leaves
 * the previous checkpoint intact. Reads check that every dataset exists with
 * the expected type and shape, and fail with a message naming the file, the
 * dataset and the problem. Datasets are addressed by paths such as
 * "/model/lstm.weight_ih_l0"; missing groups are created on write. */
#ifndef LOOM_IO_H
#define LOOM_IO_H

#include <stddef.h>
#include <stdint.h>

#include "loom_layers.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Arguments. A pointer argument may not be NULL unless it is marked optional; a
 * data buffer may also be NULL when its count is 0. A NULL where one is required
 * gives LOOM_EARG with a message naming the call and the argument
 * ("ckpt_write_floats: checkpoint is NULL"); calls that return a pointer or a flag
 * give NULL or 0 with that message, and loom_ckpt_set_world does nothing. So a
 * failed create or open (NULL) passed on is an error, not a crash. commit, abort and
 * close take NULL, as free() does; each frees the checkpoint, which must not be
 * used after it. Writing to a checkpoint opened for reading gives LOOM_ESTATE. */

/* The layout version this loom writes and the newest it reads. */
#define LOOM_CKPT_FORMAT 1

typedef struct loom_ckpt loom_ckpt;

/* ---------------------------------------------------------------- writing */

/* Starts writing a checkpoint that commit() will put at path. NULL on failure
 * (unwritable directory, ...), with loom_error_message() saying why. */
loom_ckpt *loom_ckpt_create(const char *path);
/* Finishes: flush, close, fsync, rename over path, fsync the directory. Frees c, on
 * failure too; one opened for reading is refused (LOOM_ESTATE) and left open. */
loom_status loom_ckpt_commit(loom_ckpt *c);
/* Gives up: removes the temporary file and frees c. */
void loom_ckpt_abort(loom_ckpt *c);

/* A float32 dataset: [rows x cols], or 1-D [cols] when rows is 0. */
loom_status loom_ckpt_write_floats(loom_ckpt *c, const char *name, const float *x, int rows, int cols);
/* An int64 dataset of n values (a scalar when n is 0, reading x[0]). */
loom_status loom_ckpt_write_i64(loom_ckpt *c, const char *name, const int64_t *x, size_t n);
/* A uint8 dataset of n bytes. */
loom_status loom_ckpt_write_bytes(loom_ckpt *c, const char *name, const unsigned char *x, size_t n);
/* A fixed-length string dataset. */
loom_status loom_ckpt_write_str(loom_ckpt *c, const char *name, const char *s);
/* Every parameter under group, by its name; [1 x n] parameters are stored 1-D
 * [n], like PyTorch's biases. */
loom_status loom_ckpt_write_params(loom_ckpt *c, const char *group, loom_params *ps);
/* Optimizer kind, hyper-parameters, step and flat moment buffers under group. */
loom_status loom_ckpt_write_optim(loom_ckpt *c, const char *group, const loom_optim *o);
/* An RNG state as uint64 [seed, counter]. */
loom_status loom_ckpt_write_rng(loom_ckpt *c, const char *name, const loom_rng *r);

/* ---------------------------------------------------------------- reading */

/* Opens a checkpoint for reading; checks it is HDF5 with a format this loom reads. */
loom_ckpt *loom_ckpt_open(const char *path);
/* Closes a checkpoint opened for reading (one being written is given up, as by abort). */
void loom_ckpt_close(loom_ckpt *c);
/* 1 if the dataset or group exists; 0 if not, or for a NULL argument. */
int loom_ckpt_has(loom_ckpt *c, const char *name);
/* Reads float32 data of exactly this shape (rows 0: 1-D [cols]; [1 x n] also accepts 1-D). */
loom_status loom_ckpt_read_floats(loom_ckpt *c, const char *name, float *x, int rows, int cols);
/* Reads exactly n int64 values (n 0: a scalar into x[0]). */
loom_status loom_ckpt_read_i64(loom_ckpt *c, const char *name, int64_t *x, size_t n);
/* Reads a uint8 dataset of at most cap bytes; *n gets the count (n is required). */
loom_status loom_ckpt_read_bytes(loom_ckpt *c, const char *name, unsigned char *x, size_t cap, size_t *n);
/* Reads a string dataset (fixed or variable length) into buf. */
loom_status loom_ckpt_read_str(loom_ckpt *c, const char *name, char *buf, size_t cap);
/* Reads every parameter of ps from group; each must exist with its shape. */
loom_status loom_ckpt_read_params(loom_ckpt *c, const char *group, loom_params *ps);
/* Reads the optimizer settings saved in group (kind, lr, momentum, betas, eps, alpha,
 * weight decay), refusing values loom_optim_check refuses. */
loom_status loom_ckpt_read_optim_config(loom_ckpt *c, const char *group, loom_optim_config *cfg);
/* Reads optimizer state (moments, update count) into o, already initialised for the same
 * size and kind. o's settings stay as the run set them: a resumed run chooses its own
 * hyper-parameters (loom_ckpt_read_optim_config gives the file's). */
loom_status loom_ckpt_read_optim(loom_ckpt *c, const char *group, loom_optim *o);
/* Reads an RNG state. */
loom_status loom_ckpt_read_rng(loom_ckpt *c, const char *name, loom_rng *r);
/* The root attributes: format version, world size and thread count at write time
 * (each output optional). */
loom_status loom_ckpt_info(loom_ckpt *c, int *format, int *world_size, int *threads);
/* The file's path. */
const char *loom_ckpt_path(const loom_ckpt *c);

/* Sets the root attributes world_size and threads that create() records (default 1 and
 * the OpenMP thread count). */
void loom_ckpt_set_world(loom_ckpt *c, int world_size, int threads);

#ifdef __cplusplus
}
#endif
#endif
