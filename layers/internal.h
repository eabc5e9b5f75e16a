/* Private parts of the layers module: the two ways the sequence layer runs a cell. */
#ifndef LOOM_LAYERS_INTERNAL_H
#define LOOM_LAYERS_INTERNAL_H

#include "loom_layers.h"

/* The error of a public call given NULL for a required pointer: "fn: what is NULL". */
#define LOOM_NULL_ARG(fn, what) loom_error_set(LOOM_EARG, fn ": " what " is NULL")

/* Runs a fused cell over a window, recorded as one tape node: x [T*B x I],
 * keep [T*B] (0 where a sequence has ended), init[n_state] [B x H]. Gives the
 * output y [T*B x H] and the final states last[n_state] [B x H]. K > 0 (and < T):
 * keep the inner activations of one segment of K steps only, recompute in backward.
 * row_teams: see loom_seq_set_row_teams. */
loom_status loom_layer_fused(loom_tape *t, loom_cell *c, loom_tensor *x, int T, int B, const unsigned char *keep,
                             loom_tensor *const *init, int K, int row_teams, loom_tensor **y, loom_tensor **last);

/* The same for any cell, from its step: unrolled on the tape one step at a time. */
loom_status loom_layer_unrolled(loom_tape *t, loom_cell *c, loom_tensor *x, int T, int B, const unsigned char *keep,
                                loom_tensor *const *init, loom_tensor **y, loom_tensor **last);

/* The unrolled layer in segments of K steps (layers/recompute.c): each segment runs on the
 * scratch tape, without recording in forward and again with it in backward; the tape t
 * gets one node for the window. Same results, bit for bit, as loom_layer_unrolled. */
loom_status loom_layer_recompute(loom_tape *t, loom_tape *scratch, loom_cell *c, loom_tensor *x, int T, int B,
                                 const unsigned char *keep, loom_tensor *const *init, int K, loom_tensor **y,
                                 loom_tensor **last);

/* Row teams (layers/team.c): rows[0..team] bounds the batch rows of each of team slots,
 * evenly or, with adapt, in proportion to the speeds the calling thread's teams have shown;
 * loom_team_learn takes each slot's busy seconds for the rows it had. At most LOOM_TEAM_MAX
 * slots. loom_team_set_times sets the relative times per row (NULL: unmeasured) and
 * loom_team_get_times reads them, for tests. */
#define LOOM_TEAM_MAX 256
void loom_team_rows(int team, int B, int adapt, int *rows);
void loom_team_learn(int team, const int *rows, const double *busy);
void loom_team_set_times(const float *times, int n);
void loom_team_get_times(float *times, int n);

/* Checks a declared cell's parameters against what its fused form needs. */
loom_status loom_cell_check_fused(const loom_cell *c, int layer);

/* Directions of a stack: 2 when bidirectional (loom_seq_set_bidirectional), else 1. */
static inline int loom_seq_dirs(const loom_seq *s) { return s->bidirectional && s->rcells ? 2 : 1; }

/* 1 if a state's layout is the one stack s needs. */
int loom_state_fits(const loom_state *st, const loom_seq *s);

/* Fills the fields every built-in cell sets. */
void loom_cell_base(loom_cell *c, const char *name, int input, int hidden, int n_state, loom_cell_declare_fn declare,
                    loom_cell_step_fn step);

#endif
