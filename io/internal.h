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
};

/* Turns off HDF5's own printing of error stacks (loom reports errors itself). */
void loom_io_quiet(void);

#endif
