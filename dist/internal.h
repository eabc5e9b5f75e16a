/* Private helpers of the dist module. */
#ifndef LOOM_DIST_INTERNAL_H
#define LOOM_DIST_INTERNAL_H

#include "loom_dist.h"

/* Monotonic wall-clock seconds. */
double loom_dist_now(void);

#endif
