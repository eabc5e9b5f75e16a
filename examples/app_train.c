/* The examples' side of training: joining the job, and the trainer set up from the flags. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app.h"

static loom_dist *app_dist; /* the world loom_app_start joined */

int loom_app_start(loom_dist *d, int *argc, char ***argv, const char *prog)
{
    if (loom_dist_init(d, argc, argv) != LOOM_OK) {
        fprintf(stderr, "%s: %s\n", prog, loom_error_message());
        return 1;
    }
    app_dist = d;
    if (d->rank != 0 && !freopen("/dev/null", "w", stdout)) {
        fprintf(stderr, "%s: rank %d: cannot silence stdout\n", prog, d->rank);
        return 1;
    }
    return 0;
}

int loom_app_main(int argc, char **argv, const char *prog, int (*body)(loom_dist *d, int argc, char **argv))
{
    loom_dist d;
    if (loom_app_start(&d, &argc, &argv, prog)) return 1;
    return loom_dist_finish(&d, body(&d, argc, argv));
}

/* "prog: <kind>message" on stderr. */
static void say(const char *prog, const char *kind, const char *fmt, va_list ap)
{
    fprintf(stderr, "%s: %s", prog, kind);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

void loom_app_fail_all(const char *prog, const char *fmt, ...)
{
    if (app_dist) app_dist->agreed = 1;
    if (app_dist && app_dist->rank != 0) return;
    va_list ap;
    va_start(ap, fmt);
    say(prog, "", fmt, ap);
    va_end(ap);
}

void loom_app_note(const char *prog, const char *fmt, ...)
{
    if (app_dist && app_dist->rank != 0) return;
    va_list ap;
    va_start(ap, fmt);
    say(prog, "note: ", fmt, ap);
    va_end(ap);
}

void loom_app_fail_rank(const char *prog, const char *fmt, ...)
{
    char rank[32] = "";
    if (app_dist && app_dist->size > 1) snprintf(rank, sizeof rank, "rank %d: ", app_dist->rank);
    va_list ap;
    va_start(ap, fmt);
    say(prog, rank, fmt, ap);
    va_end(ap);
}

loom_status loom_app_optim_config(const loom_app_flags *f, loom_optim_config *oc)
{
    loom_optim_kind kind;
    loom_status st = loom_optim_parse(f->optim, &kind);
    if (st != LOOM_OK) return st;
    *oc = loom_optim_defaults(kind); /* then every flag that has a value overrides its default */
    oc->lr = f->lr;
    if (!isnan(f->momentum)) oc->momentum = f->momentum;
    if (!isnan(f->weight_decay)) oc->weight_decay = f->weight_decay;
    if (!isnan(f->beta1)) oc->beta1 = f->beta1;
    if (!isnan(f->beta2)) oc->beta2 = f->beta2;
    if (!isnan(f->eps)) oc->eps = f->eps;
    return loom_optim_check(*oc);
}

loom_sched loom_app_sched(const loom_app_flags *f)
{
    loom_sched s = {LOOM_SCHED_CONSTANT, f->lr, f->warmup, f->step_size, f->gamma, f->steps, f->min_lr};
    loom_sched_parse(f->sched, &s.kind);
    if (s.step_size == 0) s.step_size = f->steps / 3 > 0 ? f->steps / 3 : 1;
    return s;
}

int loom_app_trainer_init(loom_trainer *tr, const loom_app_flags *f, loom_dist *d, loom_params *ps, const char *prog)
{
    loom_optim_config oc;
    if (loom_app_optim_config(f, &oc) != LOOM_OK) {
        loom_app_fail_all(prog, "%s", loom_error_message());
        return 2;
    }
    loom_sched sched = loom_app_sched(f);
    loom_train_config c = loom_train_defaults(prog);
    c.steps = f->steps;
    c.stop_at = f->stop_at;
    c.clip = f->clip;
    c.max_loss_ratio = f->max_loss_ratio;
    c.log_every = f->log_every;
    c.eval_every = f->eval_every;
    c.log_path = f->log;
    c.checkpoint = f->checkpoint;
    c.checkpoint_every = f->checkpoint_every;
    c.keep = f->keep;
    c.overlap = f->overlap;
    d->timeout = f->comm_timeout;
    loom_status st = loom_trainer_init(tr, &c, d, ps, oc, sched, f->batch);
    if (st != LOOM_OK) {
        loom_dist_perror(d, prog);
        return st == LOOM_EARG || st == LOOM_ESHAPE ? 2 : 1; /* a usage error, or the files and the machine */
    }
    return 0;
}

int loom_app_resume_finish(loom_trainer *tr, const loom_task *task, loom_ckpt *ck)
{
    if (!ck) return 0;
    loom_status st = loom_trainer_restore(tr, task, ck);
    loom_ckpt_close(ck);
    if (st != LOOM_OK) {
        loom_dist_perror(tr->dist, tr->cfg.prog);
        return 1;
    }
    if (tr->step) printf("resuming at step %ld of %ld\n", tr->step, tr->cfg.steps);
    return 0;
}

int loom_app_train(loom_trainer *tr, const loom_task *task)
{
    fflush(stdout);
    loom_status st = loom_trainer_run(tr, task);
    if (st == LOOM_OK) return 0;
    loom_dist_perror(tr->dist, tr->cfg.prog);
    if (st == LOOM_ESTOPPED) return LOOM_APP_EXIT_STOPPED;
    if (tr->saved_step > 0 && tr->dist->rank == 0)
        fprintf(stderr, "%s: the last checkpoint, %s (step %ld), is intact\n", tr->cfg.prog, tr->cfg.checkpoint,
                tr->saved_step);
    return 1;
}

loom_status loom_app_seq_declare(const loom_app_flags *f, const char *cell, int input, loom_seq *seq, loom_params *ps)
{
    return loom_app_seq_declare_as(f, cell, input, NULL, 0, seq, ps);
}

loom_status loom_app_seq_declare_as(const loom_app_flags *f, const char *cell, int input, const char *prefix,
                                    int bidirectional, loom_seq *seq, loom_params *ps)
{
    loom_cell *cells = calloc((size_t)f->layers, sizeof *cells);
    if (!cells) return loom_error_set(LOOM_ENOMEM, "out of memory for %d layers", f->layers);
    loom_status st = LOOM_OK;
    for (int l = 0; l < f->layers && st == LOOM_OK; l++) {
        st = loom_cell_init_kind(&cells[l], cell, l ? f->hidden : input, f->hidden);
        cells[l].forget_bias = f->forget_bias;
    }
    if (st == LOOM_OK) st = loom_seq_init(seq, cells, f->layers, f->dropout);
    free(cells);
    if (st == LOOM_OK && bidirectional) st = loom_seq_set_bidirectional(seq, 1);
    if (st == LOOM_OK) st = loom_seq_set_recompute(seq, f->recompute);
    char name[64];
    snprintf(name, sizeof name, "%s%s", prefix ? prefix : "", strncmp(cell, "rnn", 3) == 0 ? "rnn" : cell);
    return st != LOOM_OK ? st : loom_seq_declare(seq, ps, name);
}
