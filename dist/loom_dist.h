/* loom dist: training across one or many processes.
 *
 * A single process is world size 1; under mpirun or srun every rank runs the
 * same program, takes its own contiguous share of the global batch, and one
 * all-reduce per step turns the ranks' gradients into the gradient of the
 * global batch. Rank 0 alone prints, logs, evaluates and writes checkpoints.
 *
 * The trainer (loom_trainer) owns a run: the tape, optimizer, schedule, step
 * count, progress line, CSV log and full-run checkpoints. A program supplies
 * a loom_task (forward pass and its own checkpoint state) and calls
 * loom_trainer_run. Every collective is polled against a deadline, so a peer
 * that stalls ends the job with a message instead of hanging it. */
#ifndef LOOM_DIST_H
#define LOOM_DIST_H

#include <signal.h>
#include <stddef.h>
#include <stdio.h>

#include "loom_io.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Arguments. A pointer argument may not be NULL unless it is marked optional; a
 * data buffer may also be NULL when its count is 0. A NULL where one is required
 * gives LOOM_EARG with a message naming the call and the argument
 * ("trainer_step: task is NULL"). loom_trainer_free, loom_dist_finish and
 * loom_dist_finalize take NULL, as free() does. A loom_dist not joined by
 * loom_dist_init (zeroed), or a trainer before a successful loom_trainer_init
 * (zeroed; a failed init leaves it so) or after loom_trainer_free, gives
 * LOOM_ESTATE. */

/* ---------------------------------------------------------------- the world */

/* Default seconds a collective waits for the slowest rank before ending the job. */
#define LOOM_DIST_TIMEOUT 120.0

typedef struct loom_dist {
    int rank, size;
    int started_mpi; /* 1 if loom_dist_init called MPI_Init, so finish ends it */
    double timeout;  /* seconds a collective may wait (LOOM_DIST_TIMEOUT by default) */
    int agreed;      /* 1 when the last error is the same on every rank (only rank 0 reports it) */
} loom_dist;

/* Joins the job (argc and argv optional, as MPI_Init takes them): initialises MPI
 * when the process was started by a launcher (mpirun, srun) and loom was built
 * with MPI; otherwise world size 1. A launch of several tasks that each see a
 * world of one (srun without its MPI plugin, or a build without MPI) is refused. */
loom_status loom_dist_init(loom_dist *d, int *argc, char ***argv);
/* 1 if loom was built with MPI. */
int loom_dist_has_mpi(void);
/* This rank's contiguous share [*row0, *row0 + *rows) of a global batch; an error
 * (the same on every rank) when the batch does not divide by the world size. */
loom_status loom_dist_shard(loom_dist *d, int global_batch, int *row0, int *rows);
/* Replaces buf on every rank with the sum over ranks. */
loom_status loom_dist_allreduce_sum(loom_dist *d, float *buf, size_t n);
/* The same for doubles (small vectors: losses, counts). */
loom_status loom_dist_allreduce_sum_f64(loom_dist *d, double *buf, int n);
/* Replaces buf on every rank with the mean over ranks (sum, then / size). */
loom_status loom_dist_allreduce_mean(loom_dist *d, float *buf, size_t n);
/* Copies rank 0's buf to every rank. */
loom_status loom_dist_broadcast(loom_dist *d, float *buf, size_t n);
/* The same for doubles (small vectors: counters). */
loom_status loom_dist_broadcast_f64(loom_dist *d, double *buf, int n);
/* Waits, with no deadline, until rank 0 has finished work of its own (an
 * evaluation, a checkpoint write): that takes what it takes, and is not a stall. */
loom_status loom_dist_wait_root(loom_dist *d);
/* Gathers row blocks to rank 0. local is [blocks][rows][row_floats] on every rank (rows
 * equal on every rank); on rank 0, global gets [blocks][rows*size][row_floats] with
 * rank r's rows at r*rows. global may be NULL on other ranks. */
loom_status loom_dist_gather_rows(loom_dist *d, const float *local, float *global, size_t blocks, size_t rows,
                                  size_t row_floats);
/* Prints loom_error_message() as "prog: rank R: message" (no rank in a world of
 * one); an agreed error is printed by rank 0 only. d optional (NULL: a world of one),
 * prog optional (NULL: "loom"). */
void loom_dist_perror(const loom_dist *d, const char *prog);
/* Leaves the job with exit code rc: a success or an agreed error finalizes MPI
 * and returns rc; any other error on a world of more than one ends every rank
 * at once (MPI_Abort with rc), since the others would wait for this one. */
int loom_dist_finish(loom_dist *d, int rc);
/* Ends MPI if loom_dist_init started it (the success path of finish). */
void loom_dist_finalize(loom_dist *d);

/* ---------------------------------------------------------------- the trainer */

/* What the trainer tells a task's forward pass, and what it reports back. */
typedef struct loom_batch {
    long step;        /* the step being run (0-based, global) */
    int row0, rows;   /* this rank's rows [row0, row0 + rows) of the global batch */
    int batch;        /* the global batch */
    double count;     /* out: the number of terms the returned loss is the mean of (real
                       * tokens, samples); the gradient is weighted by it across ranks */
    long tokens;      /* out: tokens processed, for throughput */
} loom_batch;

/* A model and its data as the trainer sees them. */
typedef struct loom_task {
    void *ctx;
    /* Records one step's forward pass on the tape for this rank's rows and returns
     * the mean loss over them ([1 x 1]), or NULL with the tape's error. */
    loom_tensor *(*forward)(void *ctx, loom_tape *t, loom_batch *b);
    /* Optional, rank 0 only: evaluation at eval_every steps and at the end. */
    void (*evaluate)(void *ctx, loom_tape *t, long step);
    /* Optional, rank 0 only: writes the task's own state (configuration, RNGs,
     * data position) into a checkpoint being saved. */
    loom_status (*save)(void *ctx, loom_ckpt *c);
    /* Optional, every rank: reads it back when resuming. */
    loom_status (*load)(void *ctx, loom_ckpt *c);
    /* Optional, every rank: called once a step has succeeded (after the update), to
     * commit what carries over to the next step, such as the recurrent state. A step
     * that fails never reaches it, so nothing it changed is kept. */
    loom_status (*commit)(void *ctx);
} loom_task;

/* Settings of a run. */
typedef struct loom_train_config {
    const char *prog;        /* program name, for messages */
    long steps;              /* total steps: a resumed run stops where a straight one would */
    long stop_at;            /* stop at this step after a checkpoint, as a killed job would (0: off) */
    float clip;              /* clip the gradient's global L2 norm to this (0: off) */
    double max_loss_ratio;   /* stop when the loss exceeds this times max(first loss, 1) (0: off) */
    long log_every;          /* steps between progress lines and log rows (0: none) */
    long eval_every;         /* steps between evaluations (0: only at the end) */
    const char *log_path;    /* CSV log step,loss,lr,tokens_per_sec (NULL: none) */
    const char *checkpoint;  /* checkpoint path (NULL: none) */
    long checkpoint_every;   /* steps between checkpoints (0: only at the end) */
    int keep;                /* K > 1: also keep the last K checkpoints as PATH.step<N> */
    int progress;            /* 1: a progress line on stderr (rank 0) */
    int handle_signals;      /* 1: during loom_trainer_run, SIGTERM, SIGINT and SIGUSR1 stop the run
                              * after the current step and its checkpoint (see loom_trainer_run) */
    /* Notes the trainer makes about a run (rank 0): a setting that differs from the
     * checkpoint's, a checkpoint from another thread or rank count. NULL: printed on
     * stderr as "prog: note: ...". */
    void (*note)(void *ctx, const char *msg);
    void *note_ctx;
    /* Under MPI (world size > 1): 1 all-reduces the gradient in buckets during backward,
     * each as soon as backward has walked every node that reads its parameters (the head's
     * first); 0 all-reduces it whole after backward. The same bits either way on 2 ranks;
     * on more, the sums may group differently (within rounding). With overlap, a parameter's
     * gradient must come from the backward of nodes that take it (or a view of it) as an
     * input, as every loom op and layer does. */
    int overlap;
    size_t bucket_bytes;     /* bucket size for overlap, whole parameters (0: LOOM_BUCKET_BYTES) */
} loom_train_config;

/* Default most bytes of gradient per all-reduce bucket. Buckets are also cut where the
 * first node reading the parameters changes (a layer's end), so a larger cap delays nothing;
 * each bucket costs one all-reduce's latency (25 MiB, as PyTorch DDP). */
#define LOOM_BUCKET_BYTES ((size_t)25 << 20)

/* The defaults: 1 step, clip off, loss ratio 1e4, log every 10, progress on, signals
 * handled, all-reduce overlapped with backward (prog optional, NULL: "loom"). */
loom_train_config loom_train_defaults(const char *prog);

/* Time spent in each phase of a step, seconds; the trainer fills the last step's.
 * WAIT is the small all-reduce of loss and counts after forward: it lasts until
 * the slowest rank arrives, so it measures imbalance; ALLREDUCE is the gradient's
 * all-reduce after backward, the communication itself (with overlap, only the part
 * backward did not hide). */
typedef enum {
    LOOM_PHASE_FORWARD,
    LOOM_PHASE_BACKWARD,
    LOOM_PHASE_WAIT,
    LOOM_PHASE_ALLREDUCE,
    LOOM_PHASE_UPDATE,
    LOOM_PHASES
} loom_phase;
/* "forward", "backward", "wait", "allreduce", "update". */
const char *loom_phase_name(loom_phase p);

/* A state kept per row of the batch (the hidden state carried between TBPTT
 * windows): gathered to rank 0 when saving, each rank's rows read back on resume. */
typedef struct loom_row_state {
    const char *name;   /* dataset, e.g. "/state/carry" */
    float *local;       /* [blocks][rows][row_floats] on this rank */
    size_t blocks, row_floats;
} loom_row_state;

#define LOOM_TRAINER_MAX_ROW_STATES 8

typedef struct loom_trainer {
    loom_train_config cfg;
    loom_dist *dist;
    loom_params *ps;
    loom_tape *tape;
    loom_optim optim;
    loom_sched sched;
    long step;                 /* the next step to run */
    long epoch;                /* passes over the data, kept by the task */
    int batch, row0, rows;     /* global batch and this rank's share */
    double last_loss;          /* global loss of the last step */
    double first_loss;         /* global loss of this process's first step (divergence guard) */
    double tokens_per_sec;     /* over the whole run, every rank's tokens */
    double phase[LOOM_PHASES]; /* the last step's time per phase */
    int overlapped;            /* buckets of the last step whose all-reduce started while backward had nodes left */
    long saved_step;           /* the step of the last checkpoint this run wrote, or (ranks > 0) took part in (0: none) */
    int stopping;              /* a stop was requested on some rank: set on every rank at the same step */
    int stop_signal;           /* the signal that asked this process to stop (0: none, or another rank's) */
    volatile sig_atomic_t stop_request; /* set by loom_trainer_request_stop */
    loom_row_state row_states[LOOM_TRAINER_MAX_ROW_STATES];
    int n_row_states;
    /* private */
    FILE *log;
    double t_start, t_window, loss_window;
    long tokens_total, tokens_window, steps_window, first_step;
    int fault_kind, fault_rank;
    long fault_step;
    struct loom_buckets *buckets; /* the overlapped all-reduce (NULL: off, or a world of one) */
} loom_trainer;

/* Sets up a run over the allocated parameters: tape, optimizer, schedule, the
 * shard of a global batch, the CSV log (rank 0; opened now, so a bad path fails
 * before training). An indivisible batch is an agreed error. */
loom_status loom_trainer_init(loom_trainer *tr, const loom_train_config *cfg, loom_dist *d, loom_params *ps,
                              loom_optim_config optim, loom_sched sched, int global_batch);
/* Registers a per-row state (see loom_row_state) to save and restore with the run. */
loom_status loom_trainer_track_rows(loom_trainer *tr, const char *name, float *local, size_t blocks,
                                    size_t row_floats);
/* Restores a run from a checkpoint open on this rank: parameters always;
 * optimizer state, step, epoch, this rank's rows of every row state and the task's
 * state when the file has them (a weights-only file starts at step 0). Settings
 * (optimizer hyper-parameters, schedule) stay the ones init was given, and each that
 * differs from the checkpoint's is noted (cfg.note); an optimizer of another kind is
 * refused. To continue a run exactly, start from loom_trainer_read_settings. */
loom_status loom_trainer_restore(loom_trainer *tr, const loom_task *task, loom_ckpt *c);
/* The optimizer settings and schedule a full-run checkpoint was trained with (a file
 * without them, weights only, gives LOOM_EFORMAT naming what is missing). */
loom_status loom_trainer_read_settings(loom_ckpt *c, loom_optim_config *optim, loom_sched *sched);
/* Gives every rank rank 0's parameters, optimizer state, step and epoch (call
 * before training; the task's own state, such as RNGs and data position, must be
 * restored on every rank). */
loom_status loom_trainer_sync(loom_trainer *tr);
/* One training step: reset, forward, loss, backward, all-reduce, finite check,
 * clip, update, log (and evaluation), checkpoint. A stop request on any rank rides
 * along in the all-reduce, so every rank ends the same step with tr->stopping set
 * (and the checkpoint written, when cfg.checkpoint is set). */
loom_status loom_trainer_step(loom_trainer *tr, const loom_task *task);
/* Syncs, runs steps until cfg.steps (or cfg.stop_at), writes the final
 * checkpoint and evaluates (rank 0). With cfg.handle_signals, SIGTERM, SIGINT or
 * SIGUSR1 (what Slurm, a terminal, and mpirun forwarding a signal send) requests a
 * stop: the current step finishes on every rank, the checkpoint is written, and run
 * returns LOOM_ESTOPPED; a second signal ends the process at once. The previous
 * handlers are restored on return. */
loom_status loom_trainer_run(loom_trainer *tr, const loom_task *task);
/* Asks a run to stop after the current step, as a signal does; async-signal-safe,
 * for programs that handle signals themselves (cfg.handle_signals 0). */
void loom_trainer_request_stop(loom_trainer *tr);
/* Writes a full checkpoint of the run to path (every rank calls it: the row
 * states are gathered; rank 0 writes). */
loom_status loom_trainer_save(loom_trainer *tr, const loom_task *task, const char *path);
/* Frees what init made (NULL is fine; so is a second call). */
void loom_trainer_free(loom_trainer *tr);

#ifdef __cplusplus
}
#endif
#endif
