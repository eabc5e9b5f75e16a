/* Command-line flags shared by every example. */
#define _GNU_SOURCE /* sched_getaffinity */
#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "app.h"

#define LOOM_STR_(x) #x
#define LOOM_STR(x) LOOM_STR_(x) /* a number as a string literal */

static loom_flag common_flags(loom_app_flags *f, int i)
{
    loom_flag t[] = {
        {"data", LOOM_FLAG_STR, &f->data, "training data (file or directory)"},
        {"steps", LOOM_FLAG_LONG, &f->steps, "total training steps (a resumed run stops at the same step)"},
        {"batch", LOOM_FLAG_INT, &f->batch, "sequences per step"},
        {"seq", LOOM_FLAG_INT, &f->seq, "time steps per window (truncated BPTT length)"},
        {"hidden", LOOM_FLAG_INT, &f->hidden, "hidden size"},
        {"layers", LOOM_FLAG_INT, &f->layers, "stacked recurrent layers"},
        {"cell", LOOM_FLAG_STR, &f->cell, "rnn | rnn_relu | lstm | gru"},
        {"lr", LOOM_FLAG_FLOAT, &f->lr, "learning rate"},
        {"optim", LOOM_FLAG_STR, &f->optim, "sgd | adam | adamw | rmsprop | adagrad"},
        {"clip", LOOM_FLAG_FLOAT, &f->clip, "clip gradients to this global L2 norm (0: off)"},
        {"seed", LOOM_FLAG_U64, &f->seed, "random seed"},
        {"threads", LOOM_FLAG_INT, &f->threads, "OpenMP threads, BLAS included (0: OpenMP's default)"},
        {"log", LOOM_FLAG_STR, &f->log, "CSV log file: step,loss,lr,tokens_per_sec"},
        {"log-every", LOOM_FLAG_LONG, &f->log_every, "steps between progress lines and log rows"},
        {"eval-every", LOOM_FLAG_LONG, &f->eval_every, "steps between evaluations (0: only at the end)"},
        {"dropout", LOOM_FLAG_FLOAT, &f->dropout, "dropout between recurrent layers"},
        {"recompute", LOOM_FLAG_INT, &f->recompute, "keep every K-th step's state, recompute the rest in backward (0: off; sqrt(--seq) saves most)"},
        {"momentum", LOOM_FLAG_FLOAT, &f->momentum, "momentum (sgd, rmsprop)"},
        {"weight-decay", LOOM_FLAG_FLOAT, &f->weight_decay, "weight decay (L2; decoupled for adamw)"},
        {"beta1", LOOM_FLAG_FLOAT, &f->beta1, "first-moment decay (adam, adamw)"},
        {"beta2", LOOM_FLAG_FLOAT, &f->beta2, "second-moment decay (adam, adamw)"},
        {"eps", LOOM_FLAG_FLOAT, &f->eps, "denominator term (adam, adamw, rmsprop, adagrad)"},
        {"sched", LOOM_FLAG_STR, &f->sched, "learning-rate schedule: constant | step | cosine"},
        {"warmup", LOOM_FLAG_LONG, &f->warmup, "linear warmup steps"},
        {"step-size", LOOM_FLAG_LONG, &f->step_size, "step schedule: steps between decays (0: a third of --steps)"},
        {"gamma", LOOM_FLAG_FLOAT, &f->gamma, "step schedule: factor at each decay"},
        {"min-lr", LOOM_FLAG_FLOAT, &f->min_lr, "cosine schedule: the learning rate it ends at"},
        {"forget-bias", LOOM_FLAG_FLOAT, &f->forget_bias, "LSTM forget-gate bias at init (0: PyTorch's init)"},
        {"checkpoint", LOOM_FLAG_STR, &f->checkpoint, "HDF5 checkpoint to write (every --checkpoint-every steps and at the end)"},
        {"checkpoint-every", LOOM_FLAG_LONG, &f->checkpoint_every, "steps between checkpoints (0: only at the end)"},
        {"keep", LOOM_FLAG_INT, &f->keep, "with K > 1, also keep the last K checkpoints as PATH.step<N>"},
        {"stop-at", LOOM_FLAG_LONG, &f->stop_at, "stop at this step as if the job were killed, after a checkpoint (0: off)"},
        {"resume", LOOM_FLAG_STR, &f->resume, "continue from this checkpoint (model, optimizer, RNG, data position)"},
        {"comm-timeout", LOOM_FLAG_FLOAT, &f->comm_timeout, "under MPI: seconds to wait for the other ranks before ending the job"},
        {"max-loss-ratio", LOOM_FLAG_FLOAT, &f->max_loss_ratio, "stop when the loss exceeds this times max(first loss, 1) (0: off)"},
        {"overlap", LOOM_FLAG_INT, &f->overlap, "under MPI: 1 all-reduces gradients during backward, 0 after it"},
        {NULL, 0, NULL, NULL}};
    return t[i];
}

static const loom_flag *find(loom_app_flags *f, const loom_flag *extra, const char *name, loom_flag *tmp)
{
    for (int i = 0;; i++) {
        *tmp = common_flags(f, i);
        if (!tmp->name) break;
        if (strcmp(tmp->name, name) == 0) return tmp;
    }
    for (int i = 0; extra && extra[i].name; i++)
        if (strcmp(extra[i].name, name) == 0) return &extra[i];
    return NULL;
}

static void print_value(const loom_flag *fl)
{
    switch (fl->type) {
    case LOOM_FLAG_INT: printf("%d", *(int *)fl->dst); break;
    case LOOM_FLAG_LONG: printf("%ld", *(long *)fl->dst); break;
    case LOOM_FLAG_FLOAT:
        if (isnan(*(float *)fl->dst)) printf("the optimizer's default");
        else printf("%g", *(float *)fl->dst);
        break;
    case LOOM_FLAG_U64: printf("%llu", (unsigned long long)*(uint64_t *)fl->dst); break;
    case LOOM_FLAG_STR: printf("%s", *(const char **)fl->dst ? *(const char **)fl->dst : "(none)"); break;
    }
}

static void help_line(const loom_flag *fl)
{
    printf("  --%-14s %s [", fl->name, fl->help);
    print_value(fl);
    printf("]\n");
}

static void help(loom_app_flags *f, const char *prog, const char *about, const loom_flag *extra)
{
    printf("usage: %s [--flag value ...]\n\n%s\n\nflags [default]:\n", prog, about);
    loom_flag tmp;
    for (int i = 0; (tmp = common_flags(f, i)).name; i++) help_line(&tmp);
    for (int i = 0; extra && extra[i].name; i++) help_line(&extra[i]);
}

static int set_value(const loom_flag *fl, const char *v, const char *prog)
{
    char *end = NULL;
    errno = 0;
    switch (fl->type) {
    case LOOM_FLAG_INT:
    case LOOM_FLAG_LONG: {
        long x = strtol(v, &end, 10);
        if (errno || end == v || *end || (fl->type == LOOM_FLAG_INT && (x > 2147483647L || x < -2147483647L))) break;
        if (fl->type == LOOM_FLAG_INT) *(int *)fl->dst = (int)x;
        else *(long *)fl->dst = x;
        return 0;
    }
    case LOOM_FLAG_FLOAT: {
        float x = strtof(v, &end);
        if (end != v && !*end && !isfinite(x)) {
            loom_app_fail_all(prog, "--%s: '%s' is not a finite number", fl->name, v);
            return 2;
        }
        if (errno || end == v || *end) break;
        *(float *)fl->dst = x;
        return 0;
    }
    case LOOM_FLAG_U64: {
        unsigned long long x = strtoull(v, &end, 10);
        if (errno || end == v || *end || v[0] == '-') break;
        *(uint64_t *)fl->dst = x;
        return 0;
    }
    case LOOM_FLAG_STR: *(const char **)fl->dst = v; return 0;
    }
    loom_app_fail_all(prog, "--%s: '%s' is not a valid %s", fl->name, v,
            fl->type == LOOM_FLAG_FLOAT ? "number" : "integer");
    return 2;
}

int loom_app_parse(loom_app_flags *f, int argc, char **argv, const char *about, const loom_flag *extra)
{
    const char *prog = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
    if (!(f->comm_timeout > 0)) f->comm_timeout = (float)LOOM_DIST_TIMEOUT;
    if (!(f->max_loss_ratio > 0)) f->max_loss_ratio = 1e4f;
    if (!(f->gamma > 0)) f->gamma = 0.1f;
    f->momentum = f->weight_decay = f->beta1 = f->beta2 = f->eps = NAN;
    f->overlap = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            help(f, prog, about, extra);
            return 1;
        }
        if (strncmp(a, "--", 2) != 0) {
            loom_app_fail_all(prog, "unexpected argument '%s' (flags start with --; see --help)", a);
            return 2;
        }
        char name[64];
        const char *eq = strchr(a, '='), *val;
        size_t len = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
        if (len >= sizeof name) len = sizeof name - 1;
        memcpy(name, a + 2, len);
        name[len] = '\0';
        loom_flag tmp;
        const loom_flag *fl = find(f, extra, name, &tmp);
        if (!fl) {
            loom_app_fail_all(prog, "unknown flag --%s (see --help)", name);
            return 2;
        }
        if (eq) val = eq + 1;
        else if (i + 1 < argc) val = argv[++i];
        else {
            loom_app_fail_all(prog, "--%s needs a value", name);
            return 2;
        }
        if (set_value(fl, val, prog)) return 2;
        if (f->ngiven < (int)(sizeof f->given / sizeof f->given[0])) f->given[f->ngiven++] = fl->name;
    }
    return 0;
}

void loom_app_bare_flag(int argc, char **argv, const char *name)
{
    static char rewritten[8][48]; /* as long-lived as argv; a few boolean flags per program */
    static int used;
    for (int i = 1; i < argc && used < 8 && strlen(name) < 40; i++)
        if (strncmp(argv[i], "--", 2) == 0 && strcmp(argv[i] + 2, name) == 0 &&
            (i + 1 == argc || strncmp(argv[i + 1], "--", 2) == 0)) {
            snprintf(rewritten[used], sizeof rewritten[used], "--%s=1", name);
            argv[i] = rewritten[used++];
        }
}

int loom_app_given(const loom_app_flags *f, const char *name)
{
    for (int i = 0; i < f->ngiven; i++)
        if (strcmp(f->given[i], name) == 0) return 1;
    return 0;
}

int loom_app_check(const loom_app_flags *f, const char *prog)
{
    const char *bad = NULL;
    if (f->steps < 0) bad = "--steps must be >= 0";
    else if (f->batch <= 0) bad = "--batch must be positive";
    else if (f->seq <= 0) bad = "--seq must be positive";
    else if (f->hidden <= 0) bad = "--hidden must be positive";
    else if (f->layers < 1 || f->layers > LOOM_SEQ_MAX_LAYERS) bad = "--layers must be between 1 and " LOOM_STR(LOOM_SEQ_MAX_LAYERS);
    else if ((long long)f->batch * (f->seq + 1) > INT_MAX / 4) bad = "--batch x --seq is too large (rows of one step overflow)";
    else if (f->hidden > (1 << 24) || f->embed > (1 << 24)) bad = "--hidden and --embed must be at most 16777216";
    else if (!(f->lr >= 0)) bad = "--lr must be >= 0";
    else if (!(f->clip >= 0)) bad = "--clip must be >= 0 (0 turns clipping off)";
    else if (!(f->dropout >= 0 && f->dropout < 1)) bad = "--dropout must be in [0, 1)";
    else if (f->threads < 0) bad = "--threads must be >= 0";
    else if (f->recompute < 0) bad = "--recompute must be >= 0 (0 turns it off)";
    else if (f->log_every <= 0) bad = "--log-every must be positive";
    else if (f->eval_every < 0) bad = "--eval-every must be >= 0";
    else if (f->warmup < 0) bad = "--warmup must be >= 0";
    else if (f->step_size < 0) bad = "--step-size must be >= 0 (0: a third of --steps)";
    else if (!(f->gamma > 0)) bad = "--gamma must be > 0";
    else if (!(f->min_lr >= 0)) bad = "--min-lr must be >= 0";
    else if (f->checkpoint_every < 0) bad = "--checkpoint-every must be >= 0";
    else if (f->keep < 0) bad = "--keep must be >= 0";
    else if (f->checkpoint_every > 0 && !f->checkpoint) bad = "--checkpoint-every needs --checkpoint PATH";
    else if (!(f->comm_timeout >= 0)) bad = "--comm-timeout must be >= 0 (0 waits for ever)";
    else if (!(f->max_loss_ratio >= 0)) bad = "--max-loss-ratio must be >= 0 (0 turns the guard off)";
    else if (f->overlap != 0 && f->overlap != 1) bad = "--overlap must be 0 or 1";
    if (bad) {
        loom_app_fail_all(prog, "%s", bad);
        return 2;
    }
    cpu_set_t cpus;
    int cores = sched_getaffinity(0, sizeof cpus, &cpus) == 0 ? CPU_COUNT(&cpus) : (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (cores > 0 && f->threads > cores)
        loom_app_note(prog, "--threads %d is more than the %d core%s this process may run on: the threads will take turns, "
                            "which is slower than %d", f->threads, cores, cores == 1 ? "" : "s", cores);
    loom_optim_kind ok;
    loom_sched_kind sk;
    loom_cell c;
    loom_optim_config oc;
    if (loom_optim_parse(f->optim, &ok) != LOOM_OK || loom_sched_parse(f->sched, &sk) != LOOM_OK ||
        loom_cell_init_kind(&c, f->cell, 1, 1) != LOOM_OK || loom_app_optim_config(f, &oc) != LOOM_OK) {
        loom_app_fail_all(prog, "%s", loom_error_message());
        return 2;
    }
    return 0;
}
