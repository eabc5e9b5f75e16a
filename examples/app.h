/* Shared code of the example programs: flags, progress, CSV log, the
 * training-step loop, and data helpers. */
#ifndef LOOM_APP_H
#define LOOM_APP_H

#include <stdint.h>
#include <stdio.h>

#include "loom_dist.h"

/* ---------------------------------------------------------------- flags */

typedef struct loom_app_flags {
    const char *data;
    long steps;
    int batch, seq, hidden, layers, embed;
    const char *cell, *optim, *sched, *log;
    float lr, clip, dropout, forget_bias;
    float momentum, weight_decay, beta1, beta2, eps; /* NAN: the optimizer's default */
    float gamma, min_lr;                              /* step schedule factor, cosine floor */
    long warmup, step_size, log_every, eval_every;    /* step_size 0: steps / 3 */
    uint64_t seed;
    int threads;
    int recompute; /* steps per recompute segment (0: off; loom_seq_set_recompute) */
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
    /* data parallelism */
    float comm_timeout, max_loss_ratio;
    int overlap; /* 1: the gradient all-reduce overlapped with backward (the default) */
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
/* Rewrites a bare boolean flag (--name followed by nothing or by another flag) as --name=1,
 * before loom_app_parse. */
void loom_app_bare_flag(int argc, char **argv, const char *name);
/* 1 if the flag (name without --) was given on the command line. */
int loom_app_given(const loom_app_flags *f, const char *name);
/* Checks the common flags' ranges; prints the problem and returns 2, or 0. */
int loom_app_check(const loom_app_flags *f, const char *prog);

/* ---------------------------------------------------------------- training */

/* Joins the job (one process, or every rank under mpirun/srun). Ranks other than 0
 * send their stdout to /dev/null, so a program prints once whatever the world size.
 * Returns 0, or 1 after a message. */
int loom_app_start(loom_dist *d, int *argc, char ***argv, const char *prog);
/* An example's whole main: joins the job, runs body, and leaves the job with its exit code. */
int loom_app_main(int argc, char **argv, const char *prog, int (*body)(loom_dist *d, int argc, char **argv));
/* An error that every rank meets alike (a bad flag, a conflicting checkpoint):
 * printed by rank 0 only; marks the world's error as agreed so it exits cleanly. */
void loom_app_fail_all(const char *prog, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* A note about the run ("prog: note: ..." on stderr), printed by rank 0 only. */
void loom_app_note(const char *prog, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* An error of this rank's own (a file it could not read): printed by this rank, named
 * by it in a world of several; the job then ends on every rank (loom_dist_finish). */
void loom_app_fail_rank(const char *prog, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* The optimizer settings the flags give: the kind's defaults, each overridden by a flag
 * that has a value (given, or adopted from a resumed checkpoint). */
loom_status loom_app_optim_config(const loom_app_flags *f, loom_optim_config *oc);
/* The schedule the flags give (--sched, --lr, --warmup, --step-size, --gamma, --min-lr, --steps). */
loom_sched loom_app_sched(const loom_app_flags *f);
/* The trainer from the flags: optimizer, schedule, log, checkpoints, comm timeout,
 * the shard of the global --batch. Returns 0, or 1/2 after a message. */
int loom_app_trainer_init(loom_trainer *tr, const loom_app_flags *f, loom_dist *d, loom_params *ps, const char *prog);
/* Restores tr from ck (if any) and closes it; returns 0 or 1 after a message. */
int loom_app_resume_finish(loom_trainer *tr, const loom_task *task, loom_ckpt *ck);
/* The exit code of a run stopped by SIGTERM or SIGINT after its checkpoint: sysexits'
 * EX_TEMPFAIL, "try again later", which is what resuming is. */
#define LOOM_APP_EXIT_STOPPED 75
/* Runs the training; returns 0, LOOM_APP_EXIT_STOPPED after a stop on a signal, or 1
 * after the message (naming the rank and step). */
int loom_app_train(loom_trainer *tr, const loom_task *task);
/* Writes the common configuration (cell, hidden, layers, batch, seq, dropout) under /config. */
loom_status loom_app_config_write(loom_ckpt *c, const loom_app_flags *f);
/* The state most tasks save: /config, and the data and dropout generators
 * (/rng/data, /rng/dropout; a file without the latter leaves it as it is). */
loom_status loom_app_state_write(loom_ckpt *c, const loom_app_flags *f, const loom_rng *data, const loom_rng *dropout);
loom_status loom_app_state_read(loom_ckpt *c, loom_rng *data, loom_rng *dropout);
/* The state of a language model over parallel text streams (char_lm, word_lm): the dropout and
 * sampling generators and the streams' position (/rng/dropout, /rng/sample, /data/cursor);
 * reading refuses a cursor outside [0, stream_len]. */
loom_status loom_app_stream_state_write(loom_ckpt *c, const loom_rng *dropout, const loom_rng *sample, long cursor);
loom_status loom_app_stream_state_read(loom_ckpt *c, loom_rng *dropout, loom_rng *sample, long stream_len, long *cursor);
/* Reads /config and the training settings into f (see loom_app_settings_read). A given
 * architecture flag that disagrees is an error naming both; returns 0, or 2 after a message. */
int loom_app_config_read(loom_ckpt *c, loom_app_flags *f, const char *prog);
/* The same for everything but the cell (for programs with cells of their own). */
int loom_app_config_common(loom_ckpt *c, loom_app_flags *f, const char *prog);
/* Reads the training settings of a full-run checkpoint into the flags not given on the
 * command line (optimizer hyper-parameters, schedule), so a resumed run continues
 * exactly; a given flag applies, and the trainer notes where it differs. --optim may
 * not differ. Returns 0, or 2 after a message. */
int loom_app_settings_read(loom_ckpt *c, loom_app_flags *f, const char *prog);
/* Reads an integer /config entry into *v, refusing a conflicting command-line flag (flag NULL:
 * none) and a value outside [lo, hi]. Returns 0, or 2 after a message. */
int loom_app_config_long(loom_ckpt *c, loom_app_flags *f, const char *key, const char *flag, long *v, long lo, long hi,
                         const char *prog);
/* The same for a size (1 to 2^24) into an int. */
int loom_app_config_int(loom_ckpt *c, loom_app_flags *f, const char *key, const char *flag, int *v, const char *prog);
/* Optional /config/KEY, a rate in [0, 1) that may change on resume: the checkpoint's value
 * unless --FLAG was given, and then a note says which applies. Returns 0, or 2 after a message. */
int loom_app_config_float(loom_ckpt *c, loom_app_flags *f, const char *key, const char *flag, float *v, const char *prog);
/* With --resume: opens the checkpoint and reads its configuration into f
 * (see config_read). Returns 0 with *out NULL without --resume, 0 with the open
 * checkpoint, or 1/2 after a message. */
int loom_app_resume_open(loom_app_flags *f, const char *prog, loom_ckpt **out);

/* ---------------------------------------------------------------- model */

/* Declares the recurrent stack the flags describe (--layers of `cell` with --hidden
 * units, --dropout between them, --forget-bias) on `input` features, under the
 * PyTorch prefix of the cell ("lstm", "gru", "rnn"). */
loom_status loom_app_seq_declare(const loom_app_flags *f, const char *cell, int input, loom_seq *seq, loom_params *ps);
/* The same with a prefix before the cell's name ("gen_" gives "gen_lstm.weight_ih_l0"; NULL: none),
 * bidirectional when asked. */
loom_status loom_app_seq_declare_as(const loom_app_flags *f, const char *cell, int input, const char *prefix,
                                    int bidirectional, loom_seq *seq, loom_params *ps);

/* ---------------------------------------------------------------- data */

/* Reads a file, or every extension-less file of a directory in name order, into
 * memory. Returns NULL after printing a message naming the path and the problem. */
unsigned char *loom_app_read_text(const char *path, size_t *len, const char *prog);
/* Rows [row0, row0 + rows) of a global batch of B adding-problem sequences: x [T*rows x 2]
 * time-major (value, marker), y [rows x 1]. Sequence b draws from counters of its own, so
 * a rank's rows are the ones one process would make; rng advances past all B. */
void loom_app_adding_batch(loom_rng *rng, int T, int B, int row0, int rows, float *x, float *y);

/* Held-out scoring of a language model: the pairs (ids[p], ids[p+1]) for p < B * len, read as
 * B = min(batch, pairs / T) parallel streams of len = pairs / B ids, in windows of T with the
 * state carried (no-grad, a state of its own). logits gives [T*B x V] for the window idx,
 * carrying st. Returns the mean -ln p per token, NAN on an error (message set). */
/* The next window of truncated BPTT over parallel streams of a token array: stream g
 * (rows row0.. of this rank) reads ids from g * stream_len + *cursor, T steps, into idx and
 * the next tokens into tgt ([T*B], time-major); *cursor advances by T. When a window would
 * run past a stream's end the streams start afresh from 0 and it returns 1 (the caller
 * zeroes its carried state and counts an epoch); else 0. */
int loom_app_stream_window(const int *ids, long stream_len, long *cursor, int T, int B, int row0, int *idx, int *tgt);
typedef loom_tensor *(*loom_app_logits_fn)(void *ctx, loom_tape *t, const int *idx, int T, int B, loom_state *st);
void loom_app_heldout_layout(long pairs, int T, int batch, int *B, long *len);
double loom_app_heldout_nll(loom_tape *t, const loom_seq *seq, const int *ids, long pairs, int T, int batch,
                            loom_app_logits_fn logits, void *ctx);

#endif
