/* Full-run checkpoints: what a run saves (model, optimizer, position, the
 * task's state, every row's carried state gathered from all ranks), how it
 * is restored on any number of ranks, and the last K kept by step. */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

/* Deletes PATH.step<N> files beyond the `keep` newest. */
static void prune(const char *path, int keep)
{
    char dirbuf[4096], basebuf[4096];
    snprintf(dirbuf, sizeof dirbuf, "%s", path);
    snprintf(basebuf, sizeof basebuf, "%s", path);
    const char *dir = dirname(dirbuf), *base = basename(basebuf);
    size_t bl = strlen(base);
    DIR *d = opendir(dir);
    if (!d) return;
    long steps[4096];
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < 4096) {
        char *end;
        if (strncmp(e->d_name, base, bl) != 0 || strncmp(e->d_name + bl, ".step", 5) != 0) continue;
        long s = strtol(e->d_name + bl + 5, &end, 10);
        if (*end == '\0' && end != e->d_name + bl + 5) steps[n++] = s;
    }
    closedir(d);
    for (int i = 0; i < n; i++) { /* remove every step with `keep` or more newer ones */
        int newer = 0;
        for (int j = 0; j < n; j++) newer += steps[j] > steps[i];
        if (newer >= keep) {
            char old[4200];
            snprintf(old, sizeof old, "%s.step%ld", path, steps[i]);
            unlink(old);
        }
    }
}

/* Every row state gathered to rank 0, in one buffer one after another (NULL elsewhere). */
static loom_status gather_rows(loom_trainer *tr, float **out)
{
    size_t total = 0;
    int size = tr->dist->size;
    *out = NULL;
    for (int i = 0; i < tr->n_row_states; i++)
        total += tr->row_states[i].blocks * (size_t)tr->batch * tr->row_states[i].row_floats;
    if (tr->dist->rank == 0 && total && !(*out = malloc(total * sizeof(float))))
        return loom_error_set(LOOM_ENOMEM, "checkpoint: cannot allocate %zu bytes for the carried state",
                              total * sizeof(float));
    float *at = *out;
    for (int i = 0; i < tr->n_row_states; i++) {
        const loom_row_state *r = &tr->row_states[i];
        loom_status st = loom_dist_gather_rows(tr->dist, r->local, at, r->blocks, (size_t)tr->batch / (size_t)size,
                                               r->row_floats);
        if (st != LOOM_OK) return st;
        if (at) at += r->blocks * (size_t)tr->batch * r->row_floats;
    }
    return LOOM_OK;
}

loom_status loom_trainer_save(loom_trainer *tr, const loom_task *task, const char *path)
{
    loom_status st = loom_trainer_usable(tr, "trainer_save");
    if (st != LOOM_OK) return st;
    if (!task) return LOOM_NULL_ARG("trainer_save", "task");
    if (!path) return LOOM_NULL_ARG("trainer_save", "path");
    float *rows = NULL;
    /* The collective part first, on every rank alike, so no rank skips what another enters. */
    st = gather_rows(tr, &rows);
    if (st != LOOM_OK || tr->dist->rank != 0) {
        if (st == LOOM_OK) tr->saved_step = tr->step; /* every rank agrees what was saved when */
        free(rows);
        return st;
    }
    loom_ckpt *c = loom_trainer_fault(tr, FAULT_SAVE)
                       ? (loom_error_set(LOOM_EIO, "checkpoint %s: injected fault (LOOM_FAULT)", path), NULL)
                       : loom_ckpt_create(path);
    if (!c) {
        free(rows);
        return LOOM_EIO;
    }
    loom_ckpt_set_world(c, tr->dist->size, loom_threads_get());
    int64_t step = tr->step, epoch = tr->epoch;
    const loom_sched *s = &tr->sched;
    /* base_lr warmup step_size gamma total min_lr */
    float sched[6] = {s->base_lr, (float)s->warmup, (float)s->step_size, s->gamma, (float)s->total, s->min_lr};
    st = loom_ckpt_write_params(c, "/model", tr->ps);
    if (st == LOOM_OK) st = loom_ckpt_write_optim(c, "/optimizer", &tr->optim);
    if (st == LOOM_OK) st = loom_ckpt_write_i64(c, "/train/step", &step, 0);
    if (st == LOOM_OK) st = loom_ckpt_write_i64(c, "/train/epoch", &epoch, 0);
    if (st == LOOM_OK) st = loom_ckpt_write_str(c, "/train/schedule", loom_sched_name(s->kind));
    if (st == LOOM_OK) st = loom_ckpt_write_floats(c, "/train/schedule_params", sched, 0, 6);
    const float *at = rows;
    for (int i = 0; i < tr->n_row_states && st == LOOM_OK; i++) {
        const loom_row_state *r = &tr->row_states[i];
        size_t n = r->blocks * (size_t)tr->batch * r->row_floats;
        st = n > INT_MAX ? loom_error_set(LOOM_EARG, "checkpoint %s: %s: %zu values do not fit one dataset", path, r->name, n)
                         : loom_ckpt_write_floats(c, r->name, at, 0, (int)n);
        at += n;
    }
    free(rows);
    if (st == LOOM_OK && task->save) st = task->save(task->ctx, c);
    if (st != LOOM_OK) {
        loom_ckpt_abort(c);
        return st;
    }
    if ((st = loom_ckpt_commit(c)) != LOOM_OK) return st;
    tr->saved_step = tr->step;
    if (tr->cfg.keep > 1) { /* the newest stays at path; the last `keep` are also linked by step */
        char named[4200];
        snprintf(named, sizeof named, "%s.step%ld", path, tr->step);
        unlink(named);
        if (link(path, named) != 0) loom_trainer_note(tr, "cannot keep %s: %s", named, strerror(errno));
        prune(path, tr->cfg.keep);
    }
    return LOOM_OK;
}

/* This rank's rows of a row state saved by a run of any world size. */
static loom_status read_rows(loom_trainer *tr, loom_ckpt *c, const loom_row_state *r)
{
    size_t part = (size_t)tr->rows * r->row_floats, whole = (size_t)tr->batch * r->row_floats, n = r->blocks * whole;
    if (n > INT_MAX)
        return loom_error_set(LOOM_EARG, "checkpoint: %s: %zu values do not fit one dataset", r->name, n);
    float *all = malloc((n ? n : 1) * sizeof(float));
    if (!all) return loom_error_set(LOOM_ENOMEM, "checkpoint: cannot allocate %zu bytes for %s", n * sizeof(float), r->name);
    loom_status st = loom_ckpt_read_floats(c, r->name, all, 0, (int)n);
    for (size_t b = 0; b < r->blocks && st == LOOM_OK; b++)
        memcpy(r->local + b * part, all + b * whole + (size_t)tr->row0 * r->row_floats, part * sizeof(float));
    free(all);
    return st;
}

loom_status loom_trainer_read_settings(loom_ckpt *c, loom_optim_config *optim, loom_sched *sched)
{
    if (!c) return LOOM_NULL_ARG("trainer_read_settings", "checkpoint");
    if (!optim) return LOOM_NULL_ARG("trainer_read_settings", "optim");
    if (!sched) return LOOM_NULL_ARG("trainer_read_settings", "sched");
    if (!loom_ckpt_has(c, "/train") || !loom_ckpt_has(c, "/optimizer"))
        return loom_error_set(LOOM_EFORMAT, "checkpoint %s: has no /train or /optimizer: it holds weights only",
                              loom_ckpt_path(c));
    char kind[32];
    float p[6]; /* base_lr warmup step_size gamma total min_lr, as save writes them */
    loom_sched s;
    loom_status st = loom_ckpt_read_optim_config(c, "/optimizer", optim);
    if (st == LOOM_OK) st = loom_ckpt_read_str(c, "/train/schedule", kind, sizeof kind);
    if (st == LOOM_OK && loom_sched_parse(kind, &s.kind) != LOOM_OK)
        return loom_error_set(LOOM_EFORMAT, "checkpoint %s: /train/schedule: %s", loom_ckpt_path(c), loom_error_message());
    if (st == LOOM_OK) st = loom_ckpt_read_floats(c, "/train/schedule_params", p, 0, 6);
    if (st != LOOM_OK) return st;
    s.base_lr = p[0], s.warmup = (long)p[1], s.step_size = (long)p[2], s.gamma = p[3], s.total = (long)p[4], s.min_lr = p[5];
    if (loom_sched_check(&s) != LOOM_OK || !(fabsf(p[1]) < 1e15f && fabsf(p[2]) < 1e15f && fabsf(p[4]) < 1e15f))
        return loom_error_set(LOOM_EFORMAT, "checkpoint %s: /train/schedule_params: %s", loom_ckpt_path(c),
                              loom_error_message());
    *sched = s;
    return LOOM_OK;
}

/* Notes each setting of this run that differs from the checkpoint's (it applies). */
static void note_settings(loom_trainer *tr, loom_ckpt *c)
{
    loom_optim_config fo;
    loom_sched fs;
    if (tr->dist->rank != 0 || loom_trainer_read_settings(c, &fo, &fs) != LOOM_OK) return;
    const loom_optim_config *ro = &tr->optim.cfg;
    const loom_sched *rs = &tr->sched;
    const struct {
        const char *name;
        double run, file;
    } v[] = {{"lr", rs->base_lr, fs.base_lr},      {"momentum", ro->momentum, fo.momentum},
             {"nesterov", ro->nesterov, fo.nesterov}, {"beta1", ro->beta1, fo.beta1},
             {"beta2", ro->beta2, fo.beta2},       {"eps", ro->eps, fo.eps},
             {"alpha", ro->alpha, fo.alpha},       {"weight decay", ro->weight_decay, fo.weight_decay},
             {"warmup", (double)rs->warmup, (double)fs.warmup}, {"step size", (double)rs->step_size, (double)fs.step_size},
             {"gamma", rs->gamma, fs.gamma},       {"min lr", rs->min_lr, fs.min_lr}};
    for (size_t k = 0; k < sizeof v / sizeof v[0]; k++)
        if (v[k].run != v[k].file)
            loom_trainer_note(tr, "%s %g applies; %s was trained with %g", v[k].name, v[k].run, loom_ckpt_path(c),
                              v[k].file);
    if (fs.kind != rs->kind)
        loom_trainer_note(tr, "the %s schedule applies; %s was trained with %s", loom_sched_name(rs->kind),
                          loom_ckpt_path(c), loom_sched_name(fs.kind));
}

loom_status loom_trainer_restore(loom_trainer *tr, const loom_task *task, loom_ckpt *c)
{
    loom_status st = loom_trainer_usable(tr, "trainer_restore");
    if (st != LOOM_OK) return st;
    if (!task) return LOOM_NULL_ARG("trainer_restore", "task");
    if (!c) return LOOM_NULL_ARG("trainer_restore", "checkpoint");
    int world = 1, threads = 0;
    loom_ckpt_info(c, NULL, &world, &threads);
    if (threads > 0 && threads != loom_threads_get())
        loom_trainer_note(tr, "%s was written by a run with %d threads, this one has %d: the resumed run is correct "
                              "but not bit-identical to an uninterrupted one",
                          loom_ckpt_path(c), threads, loom_threads_get());
    if (world != tr->dist->size)
        loom_trainer_note(tr, "%s was written by a run on %d rank%s, this one has %d: the global batch is the same, "
                              "the sums differ only in order",
                          loom_ckpt_path(c), world, world == 1 ? "" : "s", tr->dist->size);
    st = loom_ckpt_read_params(c, "/model", tr->ps);
    if (st != LOOM_OK || !loom_ckpt_has(c, "/train")) return st;
    int64_t step, epoch;
    st = loom_ckpt_read_optim(c, "/optimizer", &tr->optim);
    if (st == LOOM_OK) st = loom_ckpt_read_i64(c, "/train/step", &step, 0);
    if (st == LOOM_OK) st = loom_ckpt_read_i64(c, "/train/epoch", &epoch, 0);
    /* 2^53: counts beyond any run, which would overflow the step arithmetic */
    if (st == LOOM_OK && (step < 0 || epoch < 0 || step > (int64_t)1 << 53 || epoch > (int64_t)1 << 53))
        st = loom_error_set(LOOM_EFORMAT, "checkpoint %s: /train/step %lld or epoch %lld is out of range (0 to 2^53)",
                            loom_ckpt_path(c), (long long)step, (long long)epoch);
    for (int i = 0; i < tr->n_row_states && st == LOOM_OK; i++) st = read_rows(tr, c, &tr->row_states[i]);
    if (st == LOOM_OK && task->load) st = task->load(task->ctx, c);
    if (st != LOOM_OK) return st;
    tr->step = (long)step;
    tr->epoch = (long)epoch;
    note_settings(tr, c);
    return LOOM_OK;
}
