/* The training loop: one step in ten visible phases, across one or many ranks. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <libgen.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/statvfs.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

static const char *const PHASE_NAMES[LOOM_PHASES] = {"forward", "backward", "wait", "allreduce", "update"};

const char *loom_phase_name(loom_phase p) { return (unsigned)p < LOOM_PHASES ? PHASE_NAMES[p] : "unknown"; }

double loom_dist_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

loom_train_config loom_train_defaults(const char *prog)
{
    loom_train_config c = {0};
    c.prog = prog ? prog : "loom";
    c.steps = 1;
    c.max_loss_ratio = 1e4;
    c.log_every = 10;
    c.keep = 1;
    c.progress = 1;
    c.handle_signals = 1;
    c.overlap = 1;
    return c;
}

void loom_trainer_note(const loom_trainer *tr, const char *fmt, ...)
{
    if (tr->dist->rank != 0) return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (tr->cfg.note) tr->cfg.note(tr->cfg.note_ctx, msg);
    else fprintf(stderr, "%s: note: %s\n", tr->cfg.prog, msg);
}

/* Rank 0's start-up checks of what it alone will write: the log opens, and the
 * checkpoint's directory is writable with room for one checkpoint. */
static loom_status root_files(loom_trainer *tr, const loom_train_config *cfg)
{
    if (cfg->log_path) {
        if (!(tr->log = fopen(cfg->log_path, "w")))
            return loom_error_set(LOOM_EIO, "log %s: cannot open for writing: %s", cfg->log_path, strerror(errno));
        fprintf(tr->log, "step,loss,lr,tokens_per_sec\n");
    }
    if (!cfg->checkpoint) return LOOM_OK;
    char buf[4096], *dir;
    snprintf(buf, sizeof buf, "%s", cfg->checkpoint);
    dir = dirname(buf);
    struct statvfs fs;
    if (access(dir, W_OK) != 0 || statvfs(dir, &fs) != 0)
        return loom_error_set(LOOM_EIO, "checkpoint %s: directory %s is not writable: %s", cfg->checkpoint, dir,
                              strerror(errno));
    /* parameters and two optimizer moments in float32, plus room for HDF5's metadata */
    double need = 3.0 * 4.0 * (double)loom_params_size(tr->ps) + 65536.0;
    double avail = (double)fs.f_bavail * (double)fs.f_frsize;
    if (avail < need)
        return loom_error_set(LOOM_EIO, "checkpoint %s: directory %s has %.0f bytes free, but a checkpoint needs about %.0f",
                              cfg->checkpoint, dir, avail, need);
    return LOOM_OK;
}

/* Test-only faults, LOOM_FAULT=KIND:RANK:STEP with KIND nan | error | stall | kill | slow |
 * save, so the tests can show that a fault on one rank ends the whole job with a message
 * (and that slow rank-0 work, `slow`, does not). */

static void fault_parse(loom_trainer *tr)
{
    const char *s = getenv("LOOM_FAULT");
    char kind[16];
    int rank;
    long step;
    tr->fault_kind = FAULT_NONE;
    if (!s || sscanf(s, "%15[a-z]:%d:%ld", kind, &rank, &step) != 3) return;
    static const char *const kinds[FAULT_KINDS] = {"", "nan", "error", "stall", "kill", "slow", "save"};
    for (int k = 1; k < FAULT_KINDS; k++)
        if (strcmp(kind, kinds[k]) == 0) tr->fault_kind = k;
    tr->fault_rank = rank, tr->fault_step = step;
}

int loom_trainer_fault(const loom_trainer *tr, int kind)
{
    return tr->fault_kind == kind && tr->fault_rank == tr->dist->rank && tr->fault_step == tr->step;
}

loom_status loom_trainer_usable(const loom_trainer *tr, const char *fn)
{
    if (!tr) return loom_error_set(LOOM_EARG, "%s: trainer is NULL", fn);
    if (!tr->tape) /* init leaves it NULL on failure, free sets it back */
        return loom_error_set(LOOM_ESTATE, "%s: the trainer is not initialised (loom_trainer_init), or was freed", fn);
    return LOOM_OK;
}

/* Everything after a successful check of the arguments; init frees what it made on failure. */
static loom_status trainer_init(loom_trainer *tr, const loom_train_config *cfg, loom_dist *d, loom_params *ps,
                                loom_optim_config optim, loom_sched sched, int global_batch)
{
    if (cfg->steps < 0 || cfg->log_every < 0 || cfg->eval_every < 0 || cfg->checkpoint_every < 0 || cfg->stop_at < 0 ||
        !(cfg->clip >= 0) || !(cfg->max_loss_ratio >= 0))
        return loom_error_set(LOOM_EARG, "trainer: steps, log_every, eval_every, checkpoint_every, stop_at, clip and "
                                         "max_loss_ratio must be >= 0");
    if (cfg->checkpoint_every > 0 && !cfg->checkpoint)
        return loom_error_set(LOOM_EARG, "trainer: checkpoint_every needs a checkpoint path");
    tr->cfg = *cfg;
    tr->dist = d;
    tr->ps = ps;
    tr->sched = sched;
    tr->batch = global_batch;
    fault_parse(tr);
    loom_status st = loom_dist_shard(d, global_batch, &tr->row0, &tr->rows);
    if (st != LOOM_OK) return st;
    if (!loom_params_data(ps)) return loom_error_set(LOOM_ESTATE, "trainer: the parameters are not allocated");
    if (!(tr->tape = loom_tape_new(0))) return LOOM_ENOMEM;
    uint64_t mem = loom_memory_bytes(), need = 16u * (uint64_t)loom_params_size(ps); /* params, grads, 2 moments */
    if (mem && need > mem)
        return loom_error_set(LOOM_ENOMEM, "trainer: cannot allocate the optimizer's state: parameters, gradients and two "
                                           "moments need %llu bytes, and this machine has %llu",
                              (unsigned long long)need, (unsigned long long)mem);
    if ((st = loom_optim_init(&tr->optim, optim, loom_params_size(ps))) != LOOM_OK) return st;
    if ((st = loom_sched_check(&sched)) != LOOM_OK) return st;
    if (cfg->overlap && d->size > 1 && !(tr->buckets = loom_buckets_new(tr))) return LOOM_ENOMEM;
    /* rank 0's verdict on its files is every rank's, so a bad path ends the job cleanly */
    double ok = d->rank == 0 ? (double)root_files(tr, cfg) : 0.0;
    if ((st = loom_dist_broadcast_f64(d, &ok, 1)) != LOOM_OK) return st;
    d->agreed = ok != 0.0;
    if (ok != 0.0 && d->rank != 0) loom_error_set((loom_status)ok, "rank 0 could not open its output files");
    return (loom_status)ok;
}

loom_status loom_trainer_init(loom_trainer *tr, const loom_train_config *cfg, loom_dist *d, loom_params *ps,
                              loom_optim_config optim, loom_sched sched, int global_batch)
{
    if (!tr) return LOOM_NULL_ARG("trainer_init", "trainer");
    memset(tr, 0, sizeof *tr); /* reads as not initialised until init succeeds */
    if (!cfg) return LOOM_NULL_ARG("trainer_init", "config");
    if (!ps) return LOOM_NULL_ARG("trainer_init", "params");
    loom_status st = loom_dist_usable(d, "trainer_init");
    if (st == LOOM_OK) st = trainer_init(tr, cfg, d, ps, optim, sched, global_batch);
    if (st != LOOM_OK) loom_trainer_free(tr);
    return st;
}

loom_status loom_trainer_track_rows(loom_trainer *tr, const char *name, float *local, size_t blocks, size_t row_floats)
{
    loom_status st = loom_trainer_usable(tr, "trainer_track_rows");
    if (st != LOOM_OK) return st;
    if (!name) return LOOM_NULL_ARG("trainer_track_rows", "name");
    if (!local) return LOOM_NULL_ARG("trainer_track_rows", "local");
    if (tr->n_row_states == LOOM_TRAINER_MAX_ROW_STATES)
        return loom_error_set(LOOM_EARG, "trainer: more than %d row states", LOOM_TRAINER_MAX_ROW_STATES);
    tr->row_states[tr->n_row_states++] = (loom_row_state){name, local, blocks, row_floats};
    return LOOM_OK;
}

void loom_trainer_free(loom_trainer *tr)
{
    if (!tr) return;
    if (tr->log) fclose(tr->log);
    loom_optim_free(&tr->optim);
    loom_tape_free(tr->tape);
    loom_buckets_free(tr->buckets);
    tr->buckets = NULL;
    tr->log = NULL;
    tr->tape = NULL;
}

loom_status loom_trainer_sync(loom_trainer *tr)
{
    loom_status st = loom_trainer_usable(tr, "trainer_sync");
    if (st != LOOM_OK) return st;
    size_t n = loom_params_size(tr->ps);
    double counters[3] = {(double)tr->step, (double)tr->epoch, (double)tr->optim.step};
    st = loom_dist_broadcast(tr->dist, loom_params_data(tr->ps), n);
    if (st == LOOM_OK) st = loom_dist_broadcast(tr->dist, tr->optim.m, n);
    if (st == LOOM_OK) st = loom_dist_broadcast(tr->dist, tr->optim.v, n);
    if (st == LOOM_OK) st = loom_dist_broadcast_f64(tr->dist, counters, 3);
    tr->step = (long)counters[0], tr->epoch = (long)counters[1], tr->optim.step = (long)counters[2];
    return st == LOOM_OK ? st : loom_error_set(st, "start: %s", loom_error_message());
}

/* An error with the step in front; `agreed` when every rank reached it alike. */
static loom_status step_fail(loom_trainer *tr, int agreed, loom_status st)
{
    tr->dist->agreed = agreed;
    if (tr->cfg.progress && tr->dist->rank == 0 && isatty(2)) fputc('\n', stderr);
    return loom_error_set(st ? st : LOOM_ESTATE, "step %ld: %s", tr->step, loom_error_message());
}

static void progress_line(loom_trainer *tr, long done, double loss, double tps)
{
    int tty = isatty(2);
    double elapsed = loom_dist_now() - tr->t_start;
    double eta = elapsed / (double)(done - tr->first_step) * (double)(tr->cfg.steps - done);
    char e[32];
    long t = (long)(eta + 0.5);
    if (t >= 3600) snprintf(e, sizeof e, "%ldh%02ldm", t / 3600, (t / 60) % 60);
    else if (t >= 60) snprintf(e, sizeof e, "%ldm%02lds", t / 60, t % 60);
    else snprintf(e, sizeof e, "%lds", t);
    fprintf(stderr, "%sstep %ld/%ld | loss %.4f | %.0f tok/s | ETA %s%s", tty ? "\r\033[K" : "", done, tr->cfg.steps,
            loss, tps, e, tty ? "" : "\n");
    fflush(stderr);
}

static long run_end(const loom_trainer *tr)
{
    return tr->cfg.stop_at > 0 && tr->cfg.stop_at < tr->cfg.steps ? tr->cfg.stop_at : tr->cfg.steps;
}

static double stop_wanted(loom_trainer *tr);

/* LOOM_OK if fn can train tr on task: both usable, and the task has its forward pass. */
static loom_status task_args(const loom_trainer *tr, const loom_task *task, const char *fn)
{
    loom_status st = loom_trainer_usable(tr, fn);
    if (st != LOOM_OK) return st;
    if (!task || !task->forward) return loom_error_set(LOOM_EARG, "%s: task%s is NULL", fn, task ? "->forward" : "");
    return LOOM_OK;
}

loom_status loom_trainer_step(loom_trainer *tr, const loom_task *task)
{
    loom_status st = task_args(tr, task, "trainer_step");
    if (st != LOOM_OK) return st;
    loom_dist *d = tr->dist;
    float *grads = loom_params_grad(tr->ps);
    size_t n = loom_params_size(tr->ps);
    long step = tr->step;
    loom_batch b = {step, tr->row0, tr->rows, tr->batch, 0.0, 0};
    double t0 = loom_dist_now();

    /* 1. reset: forget the last step's values; the arena keeps its memory */
    loom_tape_reset(tr->tape);
    loom_params_zero_grad(tr->ps);
    /* 2. forward over time, recording ops, down to the mean loss over this rank's rows */
    loom_tensor *loss = task->forward(task->ctx, tr->tape, &b);
    if (loom_trainer_fault(tr, FAULT_ERROR)) loss = loom_tape_fail(tr->tape, LOOM_EIO, "injected fault (LOOM_FAULT)");
    if (!loss) return step_fail(tr, 0, loom_tape_status(tr->tape));
    if (!(b.count >= 0)) return step_fail(tr, 0, loom_error_set(LOOM_EARG, "the task's loss count %g is negative", b.count));
    double t1 = loom_dist_now();
    /* 3. loss of the global batch: one small all-reduce of loss, count, tokens; a stop request
     * rides along (sums[3]), so every rank learns of it at this same step */
    double sums[4] = {b.count > 0 ? loss->data[0] * b.count : 0.0, b.count, (double)b.tokens, stop_wanted(tr)};
    if ((st = loom_dist_allreduce_sum_f64(d, sums, 4)) != LOOM_OK) return step_fail(tr, 0, st);
    if (!(sums[1] > 0))
        return step_fail(tr, 1, loom_error_set(LOOM_EARG, "the global batch holds no loss terms (every rank's count is 0)"));
    double gloss = sums[0] / sums[1];
    /* the gradient of the global mean loss is sum_r w_r g_r, this rank's weight w_r = count_r / sum_r count_r */
    float w = (float)(b.count / sums[1]);
    double t2 = loom_dist_now();
    /* 4. backward in reverse into the flat gradient buffer; with overlap, each bucket's
     * all-reduce starts as soon as backward has walked every node reading it */
    if (loom_trainer_fault(tr, FAULT_NAN)) grads[0] = NAN; /* before backward: it reaches the sum either way */
    while (loom_trainer_fault(tr, FAULT_STALL)) sleep(1);
    if (tr->buckets && (st = loom_buckets_begin(tr->buckets, w)) != LOOM_OK) return step_fail(tr, 0, st);
    st = loom_tape_backward(tr->tape, loss);
    loom_tape_set_hook(tr->tape, NULL, NULL);
    if (st != LOOM_OK) return step_fail(tr, 0, st);
    if (loom_trainer_fault(tr, FAULT_KILL)) raise(SIGKILL);
    double t3 = loom_dist_now();
    /* 5. all-reduce: with overlap it started inside backward (4), and completes here */
    tr->overlapped = 0;
    if (tr->buckets) st = loom_buckets_finish(tr->buckets, &tr->overlapped);
    else if (d->size > 1) {
        LOOM_PFOR(i, n, grads[i] *= w;);
        st = loom_dist_allreduce_sum(d, grads, n);
    }
    if (st != LOOM_OK) return step_fail(tr, 0, st);
    double t4 = loom_dist_now();
    /* 6. finite check, before anything is updated: the last checkpoint stays the last good one */
    float norm = loom_grad_norm(grads, n);
    if (!isfinite(gloss) || !isfinite(norm))
        return step_fail(tr, 1, loom_error_set(LOOM_ESTATE, "the loss is %g and the gradient norm %g: stopped before "
                                                            "the update (try a lower learning rate or clipping)",
                                               gloss, norm));
    if (tr->first_step == tr->step && tr->first_loss == 0) tr->first_loss = gloss;
    double limit = tr->cfg.max_loss_ratio * fmax(tr->first_loss, 1.0);
    if (tr->cfg.max_loss_ratio > 0 && gloss > limit)
        return step_fail(tr, 1, loom_error_set(LOOM_ESTATE, "the loss %g is over %g times the first step's (%g): "
                                                            "training diverged; stopped before the update (try a lower "
                                                            "learning rate or clipping)",
                                               gloss, tr->cfg.max_loss_ratio, tr->first_loss));
    /* 7. clip by global norm */
    if (tr->cfg.clip > 0) loom_clip_grad_scale(grads, n, norm, tr->cfg.clip);
    /* 8. update the flat parameter buffer */
    float lr = loom_sched_lr(&tr->sched, step);
    if ((st = loom_optim_step_params(&tr->optim, tr->ps, lr)) != LOOM_OK) return step_fail(tr, 0, st);
    /* the step has succeeded: now the task may keep what it carries (the recurrent state) */
    if (task->commit && (st = task->commit(task->ctx)) != LOOM_OK) return step_fail(tr, 0, st);
    double t5 = loom_dist_now();
    tr->phase[LOOM_PHASE_FORWARD] = t1 - t0, tr->phase[LOOM_PHASE_WAIT] = t2 - t1;
    tr->phase[LOOM_PHASE_BACKWARD] = t3 - t2, tr->phase[LOOM_PHASE_ALLREDUCE] = t4 - t3;
    tr->phase[LOOM_PHASE_UPDATE] = t5 - t4;
    tr->last_loss = gloss;
    tr->step = step + 1;
    tr->stopping = sums[3] > 0;
    /* 9. log (rank 0), every log_every steps and at the end; evaluation every eval_every */
    tr->loss_window += gloss, tr->steps_window++;
    tr->tokens_window += (long)sums[2], tr->tokens_total += (long)sums[2];
    if (d->rank == 0 && tr->cfg.log_every > 0 && (tr->step % tr->cfg.log_every == 0 || tr->step == tr->cfg.steps)) {
        double now = loom_dist_now(), tps = (double)tr->tokens_window / fmax(now - tr->t_window, 1e-9);
        double mean = tr->loss_window / (double)tr->steps_window;
        if (tr->cfg.progress) progress_line(tr, tr->step, mean, tps);
        if (tr->log) fprintf(tr->log, "%ld,%.6f,%.6g,%.1f\n", tr->step, mean, lr, tps), fflush(tr->log);
        tr->t_window = now, tr->tokens_window = 0, tr->loss_window = 0, tr->steps_window = 0;
    }
    int eval = task->evaluate && tr->cfg.eval_every > 0 && tr->step % tr->cfg.eval_every == 0 && tr->step < tr->cfg.steps &&
               !tr->stopping; /* a stop has a grace period to keep: no evaluation */
    if (eval && loom_trainer_fault(tr, FAULT_SLOW)) sleep(3);
    if (eval && d->rank == 0) {
        if (tr->cfg.progress && isatty(2)) fputc('\n', stderr);
        task->evaluate(task->ctx, tr->tape, tr->step);
    }
    /* 10. checkpoint every checkpoint_every steps: every rank, at the same step (the save gathers) */
    int save = tr->cfg.checkpoint && tr->step < run_end(tr) &&
               (tr->stopping || (tr->cfg.checkpoint_every > 0 && tr->step % tr->cfg.checkpoint_every == 0));
    if (save && (st = loom_trainer_save(tr, task, tr->cfg.checkpoint)) != LOOM_OK) return step_fail(tr, 0, st);
    /* rank 0's evaluation and write are its own work, not a stall: the others wait them out */
    if ((eval || save) && (st = loom_dist_wait_root(d)) != LOOM_OK) return step_fail(tr, 0, st);
    if (eval || save) tr->t_window = loom_dist_now(); /* throughput counts training time only */
    return LOOM_OK;
}

/* The signal that asked for a stop (0: none); a second one ends the process at once. */
static volatile sig_atomic_t stop_signal;

static void on_stop_signal(int sig)
{
    if (stop_signal) {
        signal(sig, SIG_DFL);
        raise(sig);
        return;
    }
    stop_signal = sig;
}

static double stop_wanted(loom_trainer *tr)
{
    if (stop_signal && !tr->stop_signal && tr->cfg.handle_signals) tr->stop_signal = stop_signal;
    return tr->stop_signal || tr->stop_request ? 1.0 : 0.0;
}

void loom_trainer_request_stop(loom_trainer *tr)
{
    if (tr) tr->stop_request = 1;
}

/* Runs the steps, with SIGTERM and SIGINT asking for a stop while it does. */
static loom_status run_steps(loom_trainer *tr, const loom_task *task, long end)
{
    /* SIGUSR1 too: mpirun forwards it to the ranks, where it kills them on SIGTERM */
    static const int sigs[3] = {SIGTERM, SIGINT, SIGUSR1};
    struct sigaction act, old[3];
    if (tr->cfg.handle_signals) {
        memset(&act, 0, sizeof act);
        act.sa_handler = on_stop_signal;
        sigemptyset(&act.sa_mask);
        act.sa_flags = SA_RESTART;
        stop_signal = 0;
        for (int k = 0; k < 3; k++) sigaction(sigs[k], &act, &old[k]);
    }
    loom_status st = LOOM_OK;
    while (st == LOOM_OK && tr->step < end && !tr->stopping) st = loom_trainer_step(tr, task);
    if (tr->cfg.handle_signals)
        for (int k = 0; k < 3; k++) sigaction(sigs[k], &old[k], NULL);
    return st;
}

loom_status loom_trainer_run(loom_trainer *tr, const loom_task *task)
{
    loom_status st = task_args(tr, task, "trainer_run");
    if (st != LOOM_OK) return st;
    st = loom_trainer_sync(tr);
    if (st != LOOM_OK) return st;
    tr->first_step = tr->step;
    tr->first_loss = 0;
    tr->t_start = tr->t_window = loom_dist_now();
    tr->tokens_total = tr->tokens_window = tr->steps_window = 0;
    tr->loss_window = 0;
    tr->stopping = tr->stop_signal = 0;
    long end = run_end(tr), first = tr->step;
    if ((st = run_steps(tr, task, end)) != LOOM_OK) return st;
    if (tr->cfg.progress && tr->dist->rank == 0 && isatty(2) && end > first) fputc('\n', stderr);
    tr->tokens_per_sec = (double)tr->tokens_total / fmax(loom_dist_now() - tr->t_start, 1e-9);
    if (tr->stopping && tr->step < end) {
        /* the step's phase 10 wrote the checkpoint, unless the step was the run's last */
        if (tr->cfg.checkpoint && tr->saved_step != tr->step && (st = loom_trainer_save(tr, task, tr->cfg.checkpoint)) != LOOM_OK)
            return step_fail(tr, 0, st);
        tr->dist->agreed = 1;
        char why[64];
        if (tr->stop_signal) snprintf(why, sizeof why, "signal %d (%s)", tr->stop_signal, strsignal(tr->stop_signal));
        else if (tr->stop_request) snprintf(why, sizeof why, "a stop request");
        else snprintf(why, sizeof why, "a signal to another rank");
        if (tr->cfg.checkpoint)
            return loom_error_set(LOOM_ESTOPPED, "stopped by %s after step %ld; checkpoint %s is written: resume from it",
                                  why, tr->step, tr->cfg.checkpoint);
        return loom_error_set(LOOM_ESTOPPED, "stopped by %s after step %ld; no checkpoint path was set, so the work is lost",
                              why, tr->step);
    }
    if (tr->cfg.checkpoint && (st = loom_trainer_save(tr, task, tr->cfg.checkpoint)) != LOOM_OK)
        return step_fail(tr, 0, st);
    if (tr->dist->rank == 0 && task->evaluate) task->evaluate(task->ctx, tr->tape, tr->step);
    return LOOM_OK;
}
