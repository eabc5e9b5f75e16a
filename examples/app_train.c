/* The training-step loop shared by the examples, with progress and CSV log. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <errno.h>
#include <time.h>
#include <unistd.h>

#include "app.h"

double loom_app_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void loom_app_fmt_duration(double s, char *buf, size_t n)
{
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(buf, n, "%ldh%02ldm", t / 3600, (t / 60) % 60);
    else if (t >= 60) snprintf(buf, n, "%ldm%02lds", t / 60, t % 60);
    else snprintf(buf, n, "%lds", t);
}

int loom_app_run_init(loom_app_run *r, const loom_app_flags *f, loom_params *ps, const char *prog)
{
    memset(r, 0, sizeof *r);
    r->ps = ps;
    r->prog = prog;
    r->flags = f;
    r->steps = f->steps;
    r->clip = f->clip;
    r->log_every = f->log_every;
    r->eval_every = f->eval_every;
    loom_optim_kind kind;
    loom_sched_kind sk;
    loom_optim_parse(f->optim, &kind);
    loom_sched_parse(f->sched, &sk);
    loom_optim_config oc = loom_optim_defaults(kind);
    oc.lr = f->lr;
    oc.momentum = f->momentum;
    if (f->weight_decay > 0 || kind != LOOM_ADAMW) oc.weight_decay = f->weight_decay;
    r->sched = (loom_sched){sk, f->lr, f->warmup, f->steps / 3 > 0 ? f->steps / 3 : 1, 0.1f, f->steps, 0.0f};
    r->tape = loom_tape_new(0);
    if (!r->tape || loom_optim_init(&r->optim, oc, loom_params_size(ps)) != LOOM_OK) {
        fprintf(stderr, "%s: %s\n", prog, loom_error_message());
        return 1;
    }
    if (f->log) {
        r->log = fopen(f->log, "w");
        if (!r->log) {
            fprintf(stderr, "%s: --log %s: cannot open for writing: %s\n", prog, f->log, strerror(errno));
            return 1;
        }
        fprintf(r->log, "step,loss,lr,tokens_per_sec\n");
    }
    return 0;
}

void loom_app_run_free(loom_app_run *r)
{
    if (r->log) fclose(r->log);
    loom_optim_free(&r->optim);
    loom_tape_free(r->tape);
    r->log = NULL;
    r->tape = NULL;
}

static void progress(loom_app_run *r, long step, double loss, double tps, double eta, int tty)
{
    char e[32];
    loom_app_fmt_duration(eta, e, sizeof e);
    fprintf(stderr, "%sstep %ld/%ld | loss %.4f | %.0f tok/s | ETA %s%s", tty ? "\r\033[K" : "", step, r->steps, loss, tps,
            e, tty ? "" : "\n");
    fflush(stderr);
}

int loom_app_train(loom_app_run *r, const loom_app_task *task)
{
    float *params = loom_params_data(r->ps), *grads = loom_params_grad(r->ps);
    size_t n = loom_params_size(r->ps);
    int tty = isatty(2);
    long first = r->step, tokens_total = 0;
    double t0 = loom_app_now(), tw = t0, loss_acc = 0;
    long tok_window = 0, steps_window = 0;
    long end = r->flags->stop_at > 0 && r->flags->stop_at < r->steps ? r->flags->stop_at : r->steps;
    for (; r->step < end; r->step++) {
        long step = r->step, tokens = 0;
        /* 1. forget the last step's values; the arena keeps its memory */
        loom_tape_reset(r->tape);
        loom_params_zero_grad(r->ps);
        /* 2-3. forward over time, recording ops, down to the loss */
        loom_tensor *loss = task->forward(task->ctx, r->tape, step, &tokens);
        /* 4. backward in reverse into the flat gradient buffer */
        if (!loss || loom_tape_backward(r->tape, loss) != LOOM_OK) {
            if (tty) fputc('\n', stderr);
            fprintf(stderr, "%s: step %ld: %s\n", r->prog, step, loom_error_message());
            return 1;
        }
        /* 5. (MPI) all-reduce of the gradient buffer goes here in distributed runs */
        /* 6. clip by global norm */
        if (r->clip > 0) loom_clip_grad_norm(grads, n, r->clip);
        /* 7. update the flat parameter buffer */
        float lr = loom_sched_lr(&r->sched, step);
        loom_optim_step(&r->optim, params, grads, lr);
        r->last_loss = loss->data[0];
        if (!isfinite(r->last_loss)) {
            if (tty) fputc('\n', stderr);
            fprintf(stderr, "%s: step %ld: the loss is %g; try a lower --lr or --clip\n", r->prog, step, r->last_loss);
            return 1;
        }
        loss_acc += r->last_loss;
        tok_window += tokens;
        tokens_total += tokens;
        steps_window++;
        /* progress and log, every log_every steps and at the end */
        if ((step + 1) % r->log_every == 0 || step + 1 == r->steps) {
            double now = loom_app_now();
            double tps = tok_window / fmax(now - tw, 1e-9);
            double eta = (now - t0) / (double)(step + 1 - first) * (double)(r->steps - step - 1);
            progress(r, step + 1, loss_acc / steps_window, tps, eta, tty);
            if (r->log) fprintf(r->log, "%ld,%.6f,%.6g,%.1f\n", step + 1, loss_acc / steps_window, lr, tps), fflush(r->log);
            tw = now, tok_window = 0, loss_acc = 0, steps_window = 0;
        }
        /* 8. evaluation and a checkpoint every N steps */
        if (task->evaluate && r->eval_every > 0 && (step + 1) % r->eval_every == 0 && step + 1 < r->steps) {
            if (tty) fputc('\n', stderr);
            task->evaluate(task->ctx, r->tape, step + 1);
        }
        const loom_app_flags *f = r->flags;
        if (f->checkpoint && f->checkpoint_every > 0 && (step + 1) % f->checkpoint_every == 0 && step + 1 < end) {
            r->step = step + 1; /* the checkpoint resumes at the next step */
            if (loom_app_save(r, task, f->checkpoint)) return 1;
            r->step = step;
        }
    }
    if (r->flags->checkpoint && loom_app_save(r, task, r->flags->checkpoint)) return 1;
    if (tty && r->steps > first) fputc('\n', stderr);
    r->tokens_per_sec = tokens_total / fmax(loom_app_now() - t0, 1e-9);
    if (task->evaluate) task->evaluate(task->ctx, r->tape, r->step);
    return 0;
}

loom_status loom_app_seq_declare(const loom_app_flags *f, const char *cell, int input, loom_seq *seq, loom_params *ps)
{
    loom_cell cells[LOOM_MAX_LAYERS];
    for (int l = 0; l < f->layers; l++) {
        loom_status st = loom_cell_init_kind(&cells[l], cell, l ? f->hidden : input, f->hidden);
        if (st != LOOM_OK) return st;
        cells[l].forget_bias = f->forget_bias;
    }
    loom_status st = loom_seq_init(seq, cells, f->layers, f->dropout);
    return st != LOOM_OK ? st : loom_seq_declare(seq, ps, strncmp(cell, "rnn", 3) == 0 ? "rnn" : cell);
}
