/* Learning-rate schedules: constant, step decay, cosine, each with optional linear warmup. */
#include <math.h>
#include <string.h>

#include "internal.h"

float loom_sched_lr(const loom_sched *s, long step)
{
    if (!s) return LOOM_NULL_ARG("sched_lr", "schedule"), NAN;
    if (step < 0) return loom_error_set(LOOM_EARG, "sched_lr: step %ld is negative", step), NAN;
    if (s->warmup > 0 && step < s->warmup) return s->base_lr * (float)(step + 1) / (float)s->warmup;
    long k = step - (s->warmup > 0 ? s->warmup : 0);
    switch (s->kind) {
    case LOOM_SCHED_STEP:
        return s->step_size > 0 ? s->base_lr * powf(s->gamma, (float)(k / s->step_size)) : s->base_lr;
    case LOOM_SCHED_COSINE: {
        long span = s->total - (s->warmup > 0 ? s->warmup : 0);
        if (span <= 0) return s->base_lr;
        double f = k >= span ? 1.0 : (double)k / (double)span;
        return (float)(s->min_lr + (s->base_lr - s->min_lr) * 0.5 * (1.0 + cos(3.14159265358979323846 * f)));
    }
    case LOOM_SCHED_CONSTANT:
    default: return s->base_lr;
    }
}

loom_status loom_sched_check(const loom_sched *s)
{
    if (!s) return LOOM_NULL_ARG("sched_check", "schedule");
    if ((unsigned)s->kind > LOOM_SCHED_COSINE) return loom_error_set(LOOM_EARG, "schedule: unknown kind %d", (int)s->kind);
    if (!isfinite(s->base_lr) || !isfinite(s->gamma) || !isfinite(s->min_lr))
        return loom_error_set(LOOM_EARG, "schedule: lr %g, gamma %g and min lr %g must be finite", s->base_lr, s->gamma,
                              s->min_lr);
    if (s->base_lr < 0 || s->min_lr < 0 || s->warmup < 0)
        return loom_error_set(LOOM_EARG, "schedule: lr %g, min lr %g and warmup %ld must be >= 0", s->base_lr, s->min_lr,
                              s->warmup);
    if (s->kind == LOOM_SCHED_STEP && (s->step_size <= 0 || !(s->gamma > 0)))
        return loom_error_set(LOOM_EARG, "schedule: step needs a step size > 0 (has %ld) and gamma > 0 (has %g)",
                              s->step_size, s->gamma);
    return LOOM_OK;
}

static const char *const SCHED_NAMES[] = {"constant", "step", "cosine"};

loom_status loom_sched_parse(const char *name, loom_sched_kind *kind)
{
    if (!name) return LOOM_NULL_ARG("sched_parse", "name");
    if (!kind) return LOOM_NULL_ARG("sched_parse", "kind");
    for (int k = 0; k < 3; k++)
        if (strcmp(name, SCHED_NAMES[k]) == 0) {
            *kind = (loom_sched_kind)k;
            return LOOM_OK;
        }
    return loom_error_set(LOOM_EARG, "unknown schedule '%s' (expected constant, step or cosine)", name);
}

const char *loom_sched_name(loom_sched_kind kind) { return (unsigned)kind < 3 ? SCHED_NAMES[kind] : "unknown"; }
