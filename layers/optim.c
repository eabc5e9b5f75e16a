/* Optimizers over the flat parameter buffer, with PyTorch's update rules. */
#include <math.h>
#include <string.h>

#include "internal.h"

loom_optim_config loom_optim_defaults(loom_optim_kind kind)
{
    loom_optim_config c = {kind, 0.1f, 0.0f, 0, 0.9f, 0.999f, 1e-8f, 0.99f, 0.0f};
    switch (kind) {
    case LOOM_SGD: c.lr = 0.1f; break;
    case LOOM_ADAM: c.lr = 1e-3f; break;
    case LOOM_ADAMW: c.lr = 1e-3f, c.weight_decay = 0.01f; break;
    case LOOM_RMSPROP: c.lr = 1e-2f; break;
    case LOOM_ADAGRAD: c.lr = 1e-2f, c.eps = 1e-10f; break;
    }
    return c;
}

static const char *const OPTIM_NAMES[] = {"sgd", "adam", "adamw", "rmsprop", "adagrad"};

const char *loom_optim_name(loom_optim_kind kind) { return (unsigned)kind <= LOOM_ADAGRAD ? OPTIM_NAMES[kind] : "unknown"; }

loom_status loom_optim_parse(const char *name, loom_optim_kind *kind)
{
    if (!name) return LOOM_NULL_ARG("optim_parse", "name");
    if (!kind) return LOOM_NULL_ARG("optim_parse", "kind");
    for (int k = 0; k <= LOOM_ADAGRAD; k++)
        if (strcmp(name, OPTIM_NAMES[k]) == 0) {
            *kind = (loom_optim_kind)k;
            return LOOM_OK;
        }
    return loom_error_set(LOOM_EARG, "unknown optimizer '%s' (expected sgd, adam, adamw, rmsprop or adagrad)", name);
}

/* The first setting out of range, by name; NaN fails every comparison, so each test is written to pass on good values. */
loom_status loom_optim_check(loom_optim_config cfg)
{
    if ((unsigned)cfg.kind > LOOM_ADAGRAD)
        return loom_error_set(LOOM_EARG, "optim: unknown optimizer kind %d", (int)cfg.kind);
    const struct {
        const char *name;
        float v, hi; /* valid: 0 <= v < hi (hi INFINITY: finite) */
    } rng[] = {{"lr", cfg.lr, INFINITY},       {"momentum", cfg.momentum, INFINITY}, {"eps", cfg.eps, INFINITY},
               {"beta1", cfg.beta1, 1.0f},     {"beta2", cfg.beta2, 1.0f},           {"alpha", cfg.alpha, 1.0f},
               {"weight decay", cfg.weight_decay, INFINITY}};
    for (size_t k = 0; k < sizeof rng / sizeof rng[0]; k++) {
        if (!isfinite(rng[k].v)) return loom_error_set(LOOM_EARG, "optim: %s %g is not finite", rng[k].name, rng[k].v);
        if (!(rng[k].v >= 0 && rng[k].v < rng[k].hi))
            return loom_error_set(LOOM_EARG, "optim: %s %g is out of range (%s)", rng[k].name, rng[k].v,
                                  rng[k].hi == 1.0f ? "expected 0 <= value < 1" : "expected >= 0");
    }
    if (cfg.nesterov && cfg.momentum <= 0) return loom_error_set(LOOM_EARG, "optim: nesterov needs momentum > 0");
    return LOOM_OK;
}

loom_status loom_optim_init(loom_optim *o, loom_optim_config cfg, size_t n)
{
    if (!o) return LOOM_NULL_ARG("optim_init", "optimizer");
    if (o->self == o) loom_optim_free(o); /* a second init: stack garbage never holds its own address */
    memset(o, 0, sizeof *o);
    loom_status st = loom_optim_check(cfg);
    if (st != LOOM_OK) return st;
    o->cfg = cfg;
    o->n = n;
    o->self = o;
    o->m = loom_calloc(n, sizeof(float));
    o->v = loom_calloc(n, sizeof(float));
    if (!o->m || !o->v) {
        loom_optim_free(o);
        return LOOM_ENOMEM;
    }
    return LOOM_OK;
}

void loom_optim_free(loom_optim *o)
{
    if (!o) return;
    loom_free(o->m);
    loom_free(o->v);
    o->m = o->v = NULL;
    o->self = NULL;
}

/* One update of n values from offset: p, g, m and v all point at the same element. */
static void update(const loom_optim *o, float *p, const float *g, float *m, float *v, size_t n, float lr)
{
    const loom_optim_config c = o->cfg;
    float wd = c.weight_decay, mu = c.momentum, eps = c.eps;
    switch (c.kind) {
    case LOOM_SGD:
        LOOM_PFOR(i, n, {
            float d = g[i] + wd * p[i];
            if (mu > 0) {
                m[i] = o->step == 1 ? d : mu * m[i] + d;
                d = c.nesterov ? d + mu * m[i] : m[i];
            }
            p[i] -= lr * d;
        });
        break;
    case LOOM_ADAM:
    case LOOM_ADAMW: {
        float b1 = c.beta1, b2 = c.beta2;
        float bc1 = 1.0f - powf(b1, (float)o->step), bc2 = 1.0f - powf(b2, (float)o->step);
        float step_size = lr / bc1, sq2 = sqrtf(bc2);
        int decoupled = c.kind == LOOM_ADAMW;
        LOOM_PFOR(i, n, {
            float d = g[i];
            if (decoupled) p[i] *= 1.0f - lr * wd;
            else d += wd * p[i];
            m[i] = b1 * m[i] + (1.0f - b1) * d;
            v[i] = b2 * v[i] + (1.0f - b2) * d * d;
            p[i] -= step_size * m[i] / (sqrtf(v[i]) / sq2 + eps);
        });
        break;
    }
    case LOOM_RMSPROP: {
        float a = c.alpha;
        LOOM_PFOR(i, n, {
            float d = g[i] + wd * p[i];
            v[i] = a * v[i] + (1.0f - a) * d * d;
            float q = d / (sqrtf(v[i]) + eps);
            if (mu > 0) {
                m[i] = mu * m[i] + q;
                q = m[i];
            }
            p[i] -= lr * q;
        });
        break;
    }
    case LOOM_ADAGRAD:
        LOOM_PFOR(i, n, {
            float d = g[i] + wd * p[i];
            v[i] += d * d;
            p[i] -= lr * d / (sqrtf(v[i]) + eps);
        });
        break;
    }
}

void loom_optim_step(loom_optim *o, float *p, const float *g, float lr)
{
    if (!o || (o->n && (!p || !g))) { /* void: the message is all it can leave */
        if (!o) LOOM_NULL_ARG("optim_step", "optimizer");
        else if (!p) LOOM_NULL_ARG("optim_step", "params");
        else LOOM_NULL_ARG("optim_step", "grads");
        return;
    }
    o->step++;
    update(o, p, g, o->m, o->v, o->n, lr);
}

loom_status loom_optim_step_params(loom_optim *o, loom_params *ps, float lr)
{
    if (!o) return LOOM_NULL_ARG("optim_step_params", "optimizer");
    if (!ps) return LOOM_NULL_ARG("optim_step_params", "params");
    if (loom_params_size(ps) != o->n)
        return loom_error_set(LOOM_ESTATE, "optimizer: state for %zu values, but the store holds %zu", o->n,
                              loom_params_size(ps));
    float *p = loom_params_data(ps);
    const float *g = loom_params_grad(ps);
    o->step++;
    /* Runs of trainable views in the flat layout, each updated in one pass; frozen ones are skipped. */
    size_t a = 0, b = 0;
    for (int i = 0; i < loom_params_count(ps); i++) {
        loom_tensor *w = loom_params_view(ps, i);
        size_t off = (size_t)(w->data - p), n = loom_tensor_size(w);
        if (!w->requires_grad) continue;
        if (off != b) {
            if (b > a) update(o, p + a, g + a, o->m + a, o->v + a, b - a, lr);
            a = off;
        }
        b = off + n;
    }
    if (b > a) update(o, p + a, g + a, o->m + a, o->v + a, b - a, lr);
    return LOOM_OK;
}

float loom_grad_norm(const float *g, size_t n)
{
    if (!g && n) return LOOM_NULL_ARG("grad_norm", "grads"), NAN;
    return (float)sqrt(loom_kernel_sumsq(g, n));
}

void loom_clip_grad_scale(float *g, size_t n, float norm, float max_norm)
{
    if (!g && n) {
        LOOM_NULL_ARG("clip_grad_scale", "grads");
        return;
    }
    if (max_norm > 0 && norm > max_norm) {
        float s = max_norm / (norm + 1e-6f);
        LOOM_PFOR(i, n, g[i] *= s;);
    }
}

float loom_clip_grad_norm(float *g, size_t n, float max_norm)
{
    if (!g && n) return LOOM_NULL_ARG("clip_grad_norm", "grads"), NAN;
    float norm = loom_grad_norm(g, n);
    loom_clip_grad_scale(g, n, norm, max_norm);
    return norm;
}
