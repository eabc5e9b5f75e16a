/* Shared code of the example programs: flags, progress, CSV log, the
 * training-step loop, and data helpers. */
#ifndef LOOM_APP_H
#define LOOM_APP_H

#include <stdint.h>
#include <stdio.h>

#include "loom_io.h"
#include "loom_layers.h"

/* ---------------------------------------------------------------- flags */

typedef struct loom_app_flags {
    const char *data;
    long steps;
    int batch, seq, hidden, layers, embed;
    const char *cell, *optim, *sched, *log;
    float lr, clip, dropout, momentum, weight_decay, forget_bias;
    long warmup, log_every, eval_every;
    uint64_t seed;
    int threads;
    /* char_lm */
    long sample;
    const char *prompt, *eval;
    float temperature;
    /* checkpoints */
    const char *checkpoint, *resume;
    long checkpoint_every;
    int keep;
    long stop_at;
    /* timeseries */
    const char *column;
    /* names of the flags given on the command line */
    const char *given[64];
    int ngiven;
} loom_app_flags;

typedef enum { LOOM_FLAG_INT, LOOM_FLAG_LONG, LOOM_FLAG_FLOAT, LOOM_FLAG_U64, LOOM_FLAG_STR } loom_flag_type;
typedef struct loom_flag {
    const char *name; /* without the leading -- */
    loom_flag_type type;
    void *dst;
    const char *help;
} loom_flag;

/* Parses argv with the common flags plus the program's own (extra, NULL-terminated by a
 * zero row). Prints help and returns 1 for --help; prints an error and returns 2 on a
 * bad flag; returns 0 otherwise. `about` is the program's one-paragraph description. */
int loom_app_parse(loom_app_flags *f, int argc, char **argv, const char *about, const loom_flag *extra);
/* 1 if the flag (name without --) was given on the command line. */
int loom_app_given(const loom_app_flags *f, const char *name);
/* Checks the common flags' ranges; prints the problem and returns 2, or 0. */
int loom_app_check(const loom_app_flags *f, const char *prog);

/* ---------------------------------------------------------------- training loop */

/* One example's model and data, as seen by the shared step loop. */
typedef struct loom_app_task {
    void *ctx;
    /* Records one step's forward pass on the tape and returns the scalar loss;
     * *tokens is how many tokens (or samples x steps) the step covered. */
    loom_tensor *(*forward)(void *ctx, loom_tape *t, long step, long *tokens);
    /* Optional: called every eval_every steps and at the end (no-grad evaluation, samples). */
    void (*evaluate)(void *ctx, loom_tape *t, long step);
    /* Optional: write / read the task's own state (RNGs, data position, carried
     * state, configuration extras) into / from a checkpoint. Return a loom_status. */
    loom_status (*save)(void *ctx, loom_ckpt *c);
    loom_status (*load)(void *ctx, loom_ckpt *c);
} loom_app_task;

typedef struct loom_app_run {
    loom_params *ps;
    loom_tape *tape;
    loom_optim optim;
    loom_sched sched;
    float clip;
    long step, steps;      /* next step to run, total */
    long log_every, eval_every;
    FILE *log;
    const char *prog;
    double last_loss;      /* loss of the last step */
    double tokens_per_sec; /* over the whole run */
    const loom_app_flags *flags;
    long epoch;            /* passes over the data, kept by the task */
} loom_app_run;

/* Sets up tape, optimizer, schedule and log from the flags (params must be allocated). */
int loom_app_run_init(loom_app_run *r, const loom_app_flags *f, loom_params *ps, const char *prog);
/* Runs steps r->step .. r->steps-1 in the order: reset, forward, loss, backward,
 * (all-reduce), clip, update, log, (checkpoint). Returns 0, or 1 after printing an error. */
int loom_app_train(loom_app_run *r, const loom_app_task *task);
/* Writes a full checkpoint of the run (model, optimizer, schedule, step, the task's
 * state) to path, keeping older ones as --keep asks. Returns 0, or 1 after a message. */
int loom_app_save(loom_app_run *r, const loom_app_task *task, const char *path);
/* Restores a run from an open checkpoint: parameters always; optimizer, schedule,
 * step and the task's state when the file has them (a weights-only file starts at step 0). */
int loom_app_restore(loom_app_run *r, const loom_app_task *task, loom_ckpt *c);
/* Writes the common configuration (cell, hidden, layers, batch, seq, dropout) under /config. */
loom_status loom_app_config_write(loom_ckpt *c, const loom_app_flags *f);
/* Reads /config into f. A flag given on the command line that disagrees is an error
 * naming both; returns 0, or 2 after a message. */
int loom_app_config_read(loom_ckpt *c, loom_app_flags *f, const char *prog);
/* Reads an integer /config entry into *v, refusing a conflicting command-line flag. */
int loom_app_config_int(loom_ckpt *c, loom_app_flags *f, const char *key, const char *flag, int *v, const char *prog);
/* With --resume: opens the checkpoint and reads its configuration into f
 * (see config_read). Returns 0 with *out NULL without --resume, 0 with the open
 * checkpoint, or 1/2 after a message. */
int loom_app_resume_open(loom_app_flags *f, const char *prog, loom_ckpt **out);
/* Restores r from ck (if any) and closes it; returns 0 or 1 after a message. */
int loom_app_resume_finish(loom_app_run *r, const loom_app_task *task, loom_ckpt *ck);
/* Frees what run_init made. */
void loom_app_run_free(loom_app_run *r);

/* ---------------------------------------------------------------- model */

/* Declares the recurrent stack the flags describe (--layers of `cell` with --hidden
 * units, --dropout between them, --forget-bias) on `input` features, under the
 * PyTorch prefix of the cell ("lstm", "gru", "rnn"). */
loom_status loom_app_seq_declare(const loom_app_flags *f, const char *cell, int input, loom_seq *seq, loom_params *ps);

/* ---------------------------------------------------------------- data */

/* Reads a file, or every extension-less file of a directory in name order, into
 * memory. Returns NULL after printing a message naming the path and the problem. */
unsigned char *loom_app_read_text(const char *path, size_t *len, const char *prog);
/* One batch of the adding problem: x [T*B x 2] time-major (value, marker), y [B x 1]. */
void loom_app_adding_batch(loom_rng *rng, int T, int B, float *x, float *y);
/* Human-readable duration, e.g. "1m23s". */
void loom_app_fmt_duration(double seconds, char *buf, size_t n);
/* Wall-clock seconds (monotonic). */
double loom_app_now(void);

#endif
