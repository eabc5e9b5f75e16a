/* Private state shared by the checkpoint writer and reader. */
#ifndef LOOM_IO_INTERNAL_H
#define LOOM_IO_INTERNAL_H

#include <hdf5.h>

#include "loom_io.h"

struct loom_ckpt {
    hid_t file;
    int writing;
    int world_size, threads;
    char path[4096];
    char tmp[4096]; /* writing: the temporary file renamed over path by commit */
    struct image_cap *image; /* writing: the in-memory file commit writes out (ckpt_write.c) */
};

/* The error of a public call given NULL for a required pointer: "fn: what is NULL". */
#define LOOM_NULL_ARG(fn, what) loom_error_set(LOOM_EARG, fn ": " what " is NULL")

/* LOOM_OK if c can take a write by fn: not NULL, open for writing, name (called label) set. */
loom_status loom_ckpt_writable(loom_ckpt *c, const char *fn, const char *name, const char *label);
/* LOOM_OK if c can take a read by fn: not NULL, name (called label) set. */
loom_status loom_ckpt_readable(loom_ckpt *c, const char *fn, const char *name, const char *label);

/* Turns off HDF5's own printing of error stacks (loom reports errors itself). */
void loom_io_quiet(void);

#endif
