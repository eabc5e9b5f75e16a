/* The model configuration in a checkpoint (/config), and how a resumed run's
 * command line is checked against it. Every rank reads the file itself, and
 * may fail alone (a node that does not see it), so errors are each rank's own. */
#include <string.h>

#include "app.h"

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

loom_status loom_app_state_write(loom_ckpt *c, const loom_app_flags *f, const loom_rng *data, const loom_rng *dropout)
{
    loom_status st = loom_app_config_write(c, f);
    if (st == LOOM_OK) st = loom_ckpt_write_rng(c, "/rng/data", data);
    return st == LOOM_OK ? loom_ckpt_write_rng(c, "/rng/dropout", dropout) : st;
}

loom_status loom_app_state_read(loom_ckpt *c, loom_rng *data, loom_rng *dropout)
{
    loom_status st = loom_ckpt_read_rng(c, "/rng/data", data);
    /* files from before dropout had its own stream leave it where it starts */
    return st == LOOM_OK && loom_ckpt_has(c, "/rng/dropout") ? loom_ckpt_read_rng(c, "/rng/dropout", dropout) : st;
}

int loom_app_config_long(loom_ckpt *c, loom_app_flags *f, const char *key, const char *flag, long *v, long lo, long hi,
                         const char *prog)
{
    char name[128];
    int64_t x;
    snprintf(name, sizeof name, "/config/%s", key);
    if (loom_ckpt_read_i64(c, name, &x, 0) != LOOM_OK) {
        loom_app_fail_rank(prog, "%s", loom_error_message());
        return 2;
    }
    if (x < lo || x > hi) {
        loom_app_fail_rank(prog, "checkpoint %s: %s is %lld, expected %ld to %ld", loom_ckpt_path(c), name, (long long)x,
                           lo, hi);
        return 2;
    }
    if (flag && loom_app_given(f, flag) && *v != (long)x) {
        loom_app_fail_rank(prog, "--%s %ld conflicts with checkpoint %s, which has %s %lld", flag, *v, loom_ckpt_path(c),
                           key, (long long)x);
        return 2;
    }
    *v = (long)x;
    return 0;
}

int loom_app_config_int(loom_ckpt *c, loom_app_flags *f, const char *key, const char *flag, int *v, const char *prog)
{
    long x = *v;
    int rc = loom_app_config_long(c, f, key, flag, &x, 1, 1 << 24, prog);
    if (!rc) *v = (int)x;
    return rc;
}

int loom_app_config_read(loom_ckpt *c, loom_app_flags *f, const char *prog)
{
    static char cell[32];
    if (loom_ckpt_read_str(c, "/config/cell", cell, sizeof cell) != LOOM_OK) {
        loom_app_fail_rank(prog, "%s", loom_error_message());
        return 2;
    }
    loom_cell probe;
    if (loom_cell_init_kind(&probe, cell, 1, 1) != LOOM_OK) {
        loom_app_fail_rank(prog, "checkpoint %s: /config/cell: %s", loom_ckpt_path(c), loom_error_message());
        return 2;
    }
    if (loom_app_given(f, "cell") && strcmp(f->cell, cell) != 0) {
        loom_app_fail_rank(prog, "--cell %s conflicts with checkpoint %s, which has cell %s", f->cell, loom_ckpt_path(c), cell);
        return 2;
    }
    f->cell = cell;
    return loom_app_config_common(c, f, prog);
}

int loom_app_config_common(loom_ckpt *c, loom_app_flags *f, const char *prog)
{
    if (loom_app_config_int(c, f, "hidden", "hidden", &f->hidden, prog) ||
        loom_app_config_int(c, f, "layers", "layers", &f->layers, prog))
        return 2;
    if (f->layers < 1 || f->layers > LOOM_SEQ_MAX_LAYERS) {
        loom_app_fail_rank(prog, "checkpoint %s: /config/layers is %d, expected 1 to %d", loom_ckpt_path(c), f->layers,
                           LOOM_SEQ_MAX_LAYERS);
        return 2;
    }
    /* batch, seq and dropout shape the training run; weights-only files may lack them. */
    if (loom_ckpt_has(c, "/config/batch") && loom_app_config_int(c, f, "batch", "batch", &f->batch, prog)) return 2;
    if (loom_ckpt_has(c, "/config/seq") && loom_app_config_int(c, f, "seq", "seq", &f->seq, prog)) return 2;
    if (loom_app_config_float(c, f, "dropout", "dropout", &f->dropout, prog)) return 2;
    return loom_app_settings_read(c, f, prog);
}

int loom_app_config_float(loom_ckpt *c, loom_app_flags *f, const char *key, const char *flag, float *v, const char *prog)
{
    char name[128];
    float x;
    snprintf(name, sizeof name, "/config/%s", key);
    if (!loom_ckpt_has(c, name)) return 0; /* older and weights-only files: the flag decides */
    if (loom_ckpt_read_floats(c, name, &x, 0, 1) != LOOM_OK) {
        loom_app_fail_rank(prog, "%s", loom_error_message());
        return 2;
    }
    if (!(x >= 0 && x < 1)) {
        loom_app_fail_rank(prog, "checkpoint %s: %s is %g, expected 0 <= %s < 1", loom_ckpt_path(c), name, x, key);
        return 2;
    }
    if (!loom_app_given(f, flag)) *v = x;
    else if (*v != x) loom_app_note(prog, "--%s %g applies; %s was trained with %g", flag, *v, loom_ckpt_path(c), x);
    return 0;
}

int loom_app_settings_read(loom_ckpt *c, loom_app_flags *f, const char *prog)
{
    if (!loom_ckpt_has(c, "/train")) return 0; /* weights only: the flags decide */
    loom_optim_config oc;
    loom_sched s;
    if (loom_trainer_read_settings(c, &oc, &s) != LOOM_OK) {
        loom_app_fail_rank(prog, "%s", loom_error_message());
        return 2;
    }
    /* the optimizer's kind is part of its state: another one cannot continue it */
    if (loom_app_given(f, "optim") && strcmp(f->optim, loom_optim_name(oc.kind)) != 0) {
        loom_app_fail_rank(prog, "--optim %s conflicts with checkpoint %s, which has optim %s (its state does not carry "
                                 "over to another optimizer)", f->optim, loom_ckpt_path(c), loom_optim_name(oc.kind));
        return 2;
    }
    f->optim = loom_optim_name(oc.kind);
    /* every other setting may change: the checkpoint's unless given; the trainer notes a change */
    if (!loom_app_given(f, "lr")) f->lr = s.base_lr;
    if (!loom_app_given(f, "momentum")) f->momentum = oc.momentum;
    if (!loom_app_given(f, "weight-decay")) f->weight_decay = oc.weight_decay;
    if (!loom_app_given(f, "beta1")) f->beta1 = oc.beta1;
    if (!loom_app_given(f, "beta2")) f->beta2 = oc.beta2;
    if (!loom_app_given(f, "eps")) f->eps = oc.eps;
    if (!loom_app_given(f, "sched")) f->sched = loom_sched_name(s.kind);
    if (!loom_app_given(f, "warmup")) f->warmup = s.warmup;
    /* a step schedule's are checked > 0 (loom_sched_check); the other kinds do not use them,
     * and their flags' defaults stay rather than a value the flag check would blame on --gamma */
    if (!loom_app_given(f, "step-size") && s.step_size >= 0) f->step_size = s.step_size;
    if (!loom_app_given(f, "gamma") && s.gamma > 0) f->gamma = s.gamma;
    if (!loom_app_given(f, "min-lr")) f->min_lr = s.min_lr;
    return 0;
}

int loom_app_resume_open(loom_app_flags *f, const char *prog, loom_ckpt **out)
{
    *out = NULL;
    if (!f->resume) return 0;
    loom_ckpt *c = loom_ckpt_open(f->resume);
    if (!c) {
        loom_app_fail_rank(prog, "--resume: %s", loom_error_message());
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

loom_status loom_app_stream_state_write(loom_ckpt *c, const loom_rng *dropout, const loom_rng *sample, long cursor)
{
    int64_t cur = cursor;
    loom_status st = loom_ckpt_write_rng(c, "/rng/dropout", dropout);
    if (st == LOOM_OK) st = loom_ckpt_write_rng(c, "/rng/sample", sample);
    return st == LOOM_OK ? loom_ckpt_write_i64(c, "/data/cursor", &cur, 0) : st;
}

loom_status loom_app_stream_state_read(loom_ckpt *c, loom_rng *dropout, loom_rng *sample, long stream_len, long *cursor)
{
    int64_t cur;
    loom_status st = loom_ckpt_read_rng(c, "/rng/dropout", dropout);
    if (st == LOOM_OK) st = loom_ckpt_read_rng(c, "/rng/sample", sample);
    if (st == LOOM_OK) st = loom_ckpt_read_i64(c, "/data/cursor", &cur, 0);
    if (st == LOOM_OK && (cur < 0 || cur > stream_len))
        st = loom_error_set(LOOM_EFORMAT, "checkpoint %s: /data/cursor %lld is outside this text's streams (0..%ld)",
                            loom_ckpt_path(c), (long long)cur, stream_len);
    if (st == LOOM_OK) *cursor = (long)cur;
    return st;
}
