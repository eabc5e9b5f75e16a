/* Full-run checkpoints: what a run saves (model, optimizer, position, the
 * task's state, every row's carried state gathered from all ranks), how it
 * is restored on any number of ranks, and the last K kept by step. */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <errno.h>
#include <libgen.h>
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
        free(rows);
        return st;
    }
    loom_ckpt *c = loom_ckpt_create(path);
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
        st = loom_ckpt_write_floats(c, r->name, at, 0, (int)n);
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
        if (link(path, named) != 0) fprintf(stderr, "%s: note: keeping %s: %s\n", tr->cfg.prog, named, strerror(errno));
        prune(path, tr->cfg.keep);
    }
    return LOOM_OK;
}

/* This rank's rows of a row state saved by a run of any world size. */
static loom_status read_rows(loom_trainer *tr, loom_ckpt *c, const loom_row_state *r)
{
    size_t part = (size_t)tr->rows * r->row_floats, whole = (size_t)tr->batch * r->row_floats, n = r->blocks * whole;
    float *all = malloc((n ? n : 1) * sizeof(float));
    if (!all) return loom_error_set(LOOM_ENOMEM, "checkpoint: cannot allocate %zu bytes for %s", n * sizeof(float), r->name);
    loom_status st = loom_ckpt_read_floats(c, r->name, all, 0, (int)n);
    for (size_t b = 0; b < r->blocks && st == LOOM_OK; b++)
        memcpy(r->local + b * part, all + b * whole + (size_t)tr->row0 * r->row_floats, part * sizeof(float));
    free(all);
    return st;
}

loom_status loom_trainer_restore(loom_trainer *tr, const loom_task *task, loom_ckpt *c)
{
    loom_status st = loom_trainer_usable(tr, "trainer_restore");
    if (st != LOOM_OK) return st;
    if (!task) return LOOM_NULL_ARG("trainer_restore", "task");
    if (!c) return LOOM_NULL_ARG("trainer_restore", "checkpoint");
    int world = 1, threads = 0, quiet = tr->dist->rank != 0;
    loom_ckpt_info(c, NULL, &world, &threads);
    if (!quiet && (threads > 0 && threads != loom_threads_get()))
        fprintf(stderr, "%s: note: %s was written by a run with %d threads, this one has %d: the resumed run is correct "
                        "but not bit-identical to an uninterrupted one\n",
                tr->cfg.prog, loom_ckpt_path(c), threads, loom_threads_get());
    if (!quiet && world != tr->dist->size)
        fprintf(stderr, "%s: note: %s was written by a run on %d rank%s, this one has %d: the global batch is the same, "
                        "the sums differ only in order\n",
                tr->cfg.prog, loom_ckpt_path(c), world, world == 1 ? "" : "s", tr->dist->size);
    st = loom_ckpt_read_params(c, "/model", tr->ps);
    if (st != LOOM_OK || !loom_ckpt_has(c, "/train")) return st;
    int64_t step, epoch;
    char kind[32];
    loom_sched_kind sk;
    st = loom_ckpt_read_optim(c, "/optimizer", &tr->optim);
    if (st == LOOM_OK) st = loom_ckpt_read_i64(c, "/train/step", &step, 0);
    if (st == LOOM_OK) st = loom_ckpt_read_i64(c, "/train/epoch", &epoch, 0);
    if (st == LOOM_OK) st = loom_ckpt_read_str(c, "/train/schedule", kind, sizeof kind);
    if (st == LOOM_OK && loom_sched_parse(kind, &sk) != LOOM_OK)
        st = loom_error_set(LOOM_EFORMAT, "checkpoint %s: /train/schedule: %s", loom_ckpt_path(c), loom_error_message());
    if (st == LOOM_OK && (step < 0 || epoch < 0))
        st = loom_error_set(LOOM_EFORMAT, "checkpoint %s: /train/step %lld or epoch %lld is negative", loom_ckpt_path(c),
                            (long long)step, (long long)epoch);
    for (int i = 0; i < tr->n_row_states && st == LOOM_OK; i++) st = read_rows(tr, c, &tr->row_states[i]);
    if (st == LOOM_OK && task->load) st = task->load(task->ctx, c);
    if (st != LOOM_OK) return st;
    tr->step = (long)step;
    tr->epoch = (long)epoch;
    /* The schedule comes from this run's settings (steps may have grown); its position is the step. */
    if (!quiet && sk != tr->sched.kind)
        fprintf(stderr, "%s: note: the checkpoint was trained with the %s schedule, this run uses %s\n", tr->cfg.prog,
                kind, loom_sched_name(tr->sched.kind));
    return LOOM_OK;
}
