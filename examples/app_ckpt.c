/* Checkpoints of a training run: what is saved, how it is restored, and how
 * a resumed run's configuration is checked against the command line. */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <errno.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "app.h"

static const char *SCHED_NAMES[] = {"constant", "step", "cosine"};

loom_status loom_app_config_write(loom_ckpt *c, const loom_app_flags *f)
{
    int64_t v[4] = {f->hidden, f->layers, f->batch, f->seq};
    loom_status st = loom_ckpt_write_str(c, "/config/cell", f->cell);
    if (st == LOOM_OK) st = loom_ckpt_write_i64(c, "/config/hidden", &v[0], 0);
    if (st == LOOM_OK) st = loom_ckpt_write_i64(c, "/config/layers", &v[1], 0);
    if (st == LOOM_OK) st = loom_ckpt_write_i64(c, "/config/batch", &v[2], 0);
    if (st == LOOM_OK) st = loom_ckpt_write_i64(c, "/config/seq", &v[3], 0);
    if (st == LOOM_OK) st = loom_ckpt_write_floats(c, "/config/dropout", &f->dropout, 0, 1);
    return st;
}

int loom_app_config_int(loom_ckpt *c, loom_app_flags *f, const char *key, const char *flag, int *v, const char *prog)
{
    char name[128];
    int64_t x;
    snprintf(name, sizeof name, "/config/%s", key);
    if (loom_ckpt_read_i64(c, name, &x, 0) != LOOM_OK) {
        fprintf(stderr, "%s: %s\n", prog, loom_error_message());
        return 2;
    }
    if (x <= 0 || x > 1 << 24) {
        fprintf(stderr, "%s: checkpoint %s: %s is %lld, which is not a valid size\n", prog, loom_ckpt_path(c), name, (long long)x);
        return 2;
    }
    if (flag && loom_app_given(f, flag) && *v != (int)x) {
        fprintf(stderr, "%s: --%s %d conflicts with checkpoint %s, which has %s %lld\n", prog, flag, *v, loom_ckpt_path(c),
                key, (long long)x);
        return 2;
    }
    *v = (int)x;
    return 0;
}

int loom_app_config_read(loom_ckpt *c, loom_app_flags *f, const char *prog)
{
    static char cell[32];
    if (loom_ckpt_read_str(c, "/config/cell", cell, sizeof cell) != LOOM_OK) {
        fprintf(stderr, "%s: %s\n", prog, loom_error_message());
        return 2;
    }
    loom_cell probe;
    if (loom_cell_init_kind(&probe, cell, 1, 1) != LOOM_OK) {
        fprintf(stderr, "%s: checkpoint %s: /config/cell: %s\n", prog, loom_ckpt_path(c), loom_error_message());
        return 2;
    }
    if (loom_app_given(f, "cell") && strcmp(f->cell, cell) != 0) {
        fprintf(stderr, "%s: --cell %s conflicts with checkpoint %s, which has cell %s\n", prog, f->cell, loom_ckpt_path(c), cell);
        return 2;
    }
    f->cell = cell;
    if (loom_app_config_int(c, f, "hidden", "hidden", &f->hidden, prog) ||
        loom_app_config_int(c, f, "layers", "layers", &f->layers, prog))
        return 2;
    if (f->layers > LOOM_MAX_LAYERS) {
        fprintf(stderr, "%s: checkpoint %s: %d layers, at most %d are supported\n", prog, loom_ckpt_path(c), f->layers, LOOM_MAX_LAYERS);
        return 2;
    }
    /* batch, seq and dropout shape the training run; weights-only files may lack them. */
    if (loom_ckpt_has(c, "/config/batch") && loom_app_config_int(c, f, "batch", "batch", &f->batch, prog)) return 2;
    if (loom_ckpt_has(c, "/config/seq") && loom_app_config_int(c, f, "seq", "seq", &f->seq, prog)) return 2;
    if (loom_ckpt_has(c, "/config/dropout") && loom_ckpt_read_floats(c, "/config/dropout", &f->dropout, 0, 1) != LOOM_OK) {
        fprintf(stderr, "%s: %s\n", prog, loom_error_message());
        return 2;
    }
    return 0;
}

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

int loom_app_save(loom_app_run *r, const loom_app_task *task, const char *path)
{
    loom_ckpt *c = loom_ckpt_create(path);
    if (!c) {
        fprintf(stderr, "%s: %s\n", r->prog, loom_error_message());
        return 1;
    }
    int64_t step = r->step, epoch = r->epoch;
    float sched[6] = {r->sched.base_lr, (float)r->sched.warmup, (float)r->sched.step_size, r->sched.gamma,
                      (float)r->sched.total, r->sched.min_lr};
    loom_status st = loom_app_config_write(c, r->flags);
    if (st == LOOM_OK) st = loom_ckpt_write_params(c, "/model", r->ps);
    if (st == LOOM_OK) st = loom_ckpt_write_optim(c, "/optimizer", &r->optim);
    if (st == LOOM_OK) st = loom_ckpt_write_i64(c, "/train/step", &step, 0);
    if (st == LOOM_OK) st = loom_ckpt_write_i64(c, "/train/epoch", &epoch, 0);
    if (st == LOOM_OK) st = loom_ckpt_write_str(c, "/train/schedule", SCHED_NAMES[r->sched.kind]);
    /* base_lr warmup step_size gamma total min_lr */
    if (st == LOOM_OK) st = loom_ckpt_write_floats(c, "/train/schedule_params", sched, 0, 6);
    if (st == LOOM_OK && task->save) st = task->save(task->ctx, c);
    if (st != LOOM_OK) {
        fprintf(stderr, "%s: %s\n", r->prog, loom_error_message());
        loom_ckpt_abort(c);
        return 1;
    }
    if (loom_ckpt_commit(c) != LOOM_OK) {
        fprintf(stderr, "%s: %s\n", r->prog, loom_error_message());
        return 1;
    }
    int keep = r->flags->keep;
    if (keep > 1) { /* the newest stays at path; the last `keep` are also linked by step */
        char named[4200];
        snprintf(named, sizeof named, "%s.step%ld", path, r->step);
        unlink(named);
        if (link(path, named) != 0) fprintf(stderr, "%s: keeping %s: %s\n", r->prog, named, strerror(errno));
        prune(path, keep);
    }
    return 0;
}

int loom_app_restore(loom_app_run *r, const loom_app_task *task, loom_ckpt *c)
{
    int world = 1, threads = 0;
    loom_ckpt_info(c, NULL, &world, &threads);
    if (threads > 0 && threads != loom_threads_get())
        fprintf(stderr, "%s: note: %s was written by a run with %d threads, this one has %d: the resumed run is correct "
                        "but not bit-identical to an uninterrupted one\n", r->prog, loom_ckpt_path(c), threads, loom_threads_get());
    loom_status st = loom_ckpt_read_params(c, "/model", r->ps);
    if (st == LOOM_OK && loom_ckpt_has(c, "/train")) {
        int64_t step, epoch;
        float sp[6];
        char kind[32];
        loom_sched_kind sk;
        st = loom_ckpt_read_optim(c, "/optimizer", &r->optim);
        if (st == LOOM_OK) st = loom_ckpt_read_i64(c, "/train/step", &step, 0);
        if (st == LOOM_OK) st = loom_ckpt_read_i64(c, "/train/epoch", &epoch, 0);
        if (st == LOOM_OK) st = loom_ckpt_read_str(c, "/train/schedule", kind, sizeof kind);
        if (st == LOOM_OK && loom_sched_parse(kind, &sk) != LOOM_OK)
            st = loom_error_set(LOOM_EFORMAT, "checkpoint %s: /train/schedule: %s", loom_ckpt_path(c), loom_error_message());
        if (st == LOOM_OK) st = loom_ckpt_read_floats(c, "/train/schedule_params", sp, 0, 6);
        if (st == LOOM_OK && (step < 0 || epoch < 0))
            st = loom_error_set(LOOM_EFORMAT, "checkpoint %s: /train/step %lld or epoch %lld is negative", loom_ckpt_path(c),
                                (long long)step, (long long)epoch);
        if (st == LOOM_OK && task->load) st = task->load(task->ctx, c);
        if (st == LOOM_OK) {
            r->step = (long)step;
            r->epoch = (long)epoch;
            /* The schedule itself comes from this run's flags (--steps may have grown);
             * its position is the step. Its saved form documents the run that wrote it. */
            if (sk != r->sched.kind)
                fprintf(stderr, "%s: note: the checkpoint was trained with the %s schedule, this run uses %s\n", r->prog,
                        kind, SCHED_NAMES[r->sched.kind]);
        }
    }
    if (st != LOOM_OK) {
        fprintf(stderr, "%s: %s\n", r->prog, loom_error_message());
        return 1;
    }
    return 0;
}

int loom_app_resume_open(loom_app_flags *f, const char *prog, loom_ckpt **out)
{
    *out = NULL;
    if (!f->resume) return 0;
    loom_ckpt *c = loom_ckpt_open(f->resume);
    if (!c) {
        fprintf(stderr, "%s: --resume: %s\n", prog, loom_error_message());
        return 1;
    }
    int rc = loom_app_config_read(c, f, prog);
    if (rc) {
        loom_ckpt_close(c);
        return rc;
    }
    *out = c;
    return 0;
}

int loom_app_resume_finish(loom_app_run *r, const loom_app_task *task, loom_ckpt *ck)
{
    if (!ck) return 0;
    int rc = loom_app_restore(r, task, ck);
    loom_ckpt_close(ck);
    if (rc == 0 && r->step) printf("resuming at step %ld of %ld\n", r->step, r->steps);
    return rc;
}
