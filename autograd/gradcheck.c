/* Gradient check: backward's gradients against finite differences, with automatic
 * steps, Richardson extrapolation and kink detection (see loom_autograd.h). */
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

/* Auto's first step, h = AUTO_STEP * max(1, |x|): large, as float32 noise / h dominated the
 * errors of smaller ones on tanh/sigmoid/matmul chains; refinement handles curvature. */
#define AUTO_STEP 0.1
/* Auto accepts a step pair whose roughness (below) is at most this. */
#define ACC_TOL 5e-3
/* Auto halves the step at most this often while the pair is rougher than ACC_TOL. */
#define MAX_REFINE 4
_Static_assert(MAX_REFINE >= 2, "the kink test looks at the last three step pairs");
/* A pair rougher than this at the last step tried is a kink, unless it shrank like a smooth loss's. */
#define KINK_TOL 0.02
/* With a given eps, one-sided slopes closer than this need no look at eps/2. */
#define AGREE_TOL 1e-2
/* Rounding error of one float32 loss evaluation assumed, in units of its last place. */
#define NOISE_ULPS 4.0

typedef struct gc {
    loom_scalar_fn fn;
    void *ctx;
    loom_tape *t;
    double f0; /* the unperturbed loss, evaluated once */
    double fl; /* floor * max|analytic|: the smallest slope scale that matters */
} gc;

/* f(x0 + hp) and f(x0 - hm), hp and hm being the steps float32 could actually take. */
typedef struct probe {
    double hp, hm, fp, fm;
} probe;

static loom_status eval(const gc *g, double *out)
{
    loom_tape_reset(g->t);
    loom_tensor *y = g->fn(g->t, g->ctx);
    if (!y) return loom_tape_status(g->t) ? loom_tape_status(g->t) : loom_error_set(LOOM_EARG, "gradcheck: fn returned NULL");
    if (y->rows != 1 || y->cols != 1)
        return loom_error_set(LOOM_ESHAPE, "gradcheck: fn returned [%dx%d], expected [1x1]", y->rows, y->cols);
    *out = y->data[0];
    return LOOM_OK;
}

static loom_status probe_at(const gc *g, float *x, double h, const char *name, size_t i, probe *p)
{
    float x0 = *x, up = (float)(x0 + h), dn = (float)(x0 - h);
    /* Differences use the representable perturbed values, not the nominal step. */
    p->hp = (double)up - x0;
    p->hm = x0 - (double)dn;
    if (!(p->hp > 0 && p->hm > 0 && isfinite(up) && isfinite(dn)))
        return loom_error_set(LOOM_EARG, "gradcheck: step %g is lost in float32 at %s[%zu] = %g (use eps <= 0 for automatic steps)",
                              h, name, i, (double)x0);
    *x = up;
    loom_status st = eval(g, &p->fp);
    *x = dn;
    if (st == LOOM_OK) st = eval(g, &p->fm);
    *x = x0;
    return st;
}

static double central(const probe *p) { return (p->fp - p->fm) / (p->hp + p->hm); }
static double right_slope(const gc *g, const probe *p) { return (p->fp - g->f0) / p->hp; }
static double left_slope(const gc *g, const probe *p) { return (g->f0 - p->fm) / p->hm; }
/* Rounding noise of a slope over this pair's step: an error of the loss divided by the step. */
static double noise(const gc *g, const probe *p)
{
    double f = fmax(fabs(g->f0), fmax(fabs(p->fp), fabs(p->fm)));
    return NOISE_ULPS * f * FLT_EPSILON / fmin(p->hp, p->hm);
}

/* Richardson: D(h) = f' + c h^2 + O(h^4), so two steps cancel c (exact steps, not exactly h/2). */
static double richardson(const probe *a, const probe *b)
{
    double ha = (a->hp + a->hm) / 2, hb = (b->hp + b->hm) / 2;
    return (central(b) * ha * ha - central(a) * hb * hb) / (ha * ha - hb * hb);
}

/* How far the one-sided slopes at steps a (h) and b (h/2) are from a smooth function's:
 * with slope(s) = f' + f''s/2 + f'''s^2/6 + ..., E below is O(h^3) and Q O(h^2), while a
 * kink within the step leaves one of them the size of the jump in slope. Returns
 * max(|E|, |Q|), residuals within float32 noise counting as 0; *rel is it over the
 * slopes' scale. */
static double roughness(const gc *g, const probe *a, const probe *b, double *rel)
{
    double r1 = right_slope(g, a), l1 = left_slope(g, a), r2 = right_slope(g, b), l2 = left_slope(g, b);
    double e = fabs((r1 - l1) - 2 * (r2 - l2)), q = fabs((r1 - r2) - (l2 - l1));
    double scale = fmax(fmax(fmax(fabs(r1), fabs(l1)), fmax(fabs(r2), fabs(l2))), g->fl);
    /* nz is one slope's noise at step h/2; E sums 10 of them at most, Q 3 (doubled for margin). */
    double nz = noise(g, b);
    /* A NaN or an overflow at this step counts as infinitely rough. */
    double r = isfinite(e) && isfinite(q) ? fmax(e > 10 * nz ? e : 0, q > 6 * nz ? q : 0) : INFINITY;
    *rel = r > 0 ? r / scale : 0;
    return r;
}

/* Whether roughness went from r0 to r1 to r2 as a smooth loss's does, shrinking 4-8x per
 * halving (2-16x allowed); a kink's stays while within the step, then drops to nothing. */
static int smooth_trend(double r0, double r1, double r2)
{
    return r1 >= r0 / 16 && r1 <= r0 / 2 && r2 >= r1 / 16 && r2 <= r1 / 2;
}

/* The numeric derivative at *x, or *kink = 1 when the loss is not smooth within the step. */
static loom_status numeric_at(const gc *g, float *x, float eps, const char *name, size_t i, double *num, int *kink)
{
    int automatic = !(eps > 0);
    double h = automatic ? AUTO_STEP * fmax(1.0, fabs(*x)) : eps, raw[MAX_REFINE + 1], rel = 0;
    probe p[MAX_REFINE + 2];
    loom_status st = probe_at(g, x, h, name, i, &p[0]);
    if (st != LOOM_OK) return st;
    *kink = 0;
    *num = central(&p[0]);
    if (!automatic) {
        double r = right_slope(g, &p[0]), l = left_slope(g, &p[0]);
        double scale = fmax(fmax(fabs(r), fabs(l)), g->fl);
        if (fabs(r - l) <= fmax(AGREE_TOL * scale, 4 * noise(g, &p[0]))) return LOOM_OK;
    }
    for (int lv = 0;; lv++) {
        h /= 2;
        if ((st = probe_at(g, x, h, name, i, &p[lv + 1])) != LOOM_OK) return st;
        raw[lv] = roughness(g, &p[lv], &p[lv + 1], &rel);
        if (automatic && (rel <= ACC_TOL || lv == MAX_REFINE)) {
            *num = richardson(&p[lv], &p[lv + 1]);
            *kink = rel > KINK_TOL && !(lv >= 2 && smooth_trend(raw[lv - 2], raw[lv - 1], raw[lv]));
            return LOOM_OK;
        }
        /* A given eps is the user's step; smaller ones only tell a kink from strong curvature. */
        if (!automatic && (lv == 0 ? rel <= KINK_TOL : lv == 2)) {
            *kink = lv == 2 && !smooth_trend(raw[0], raw[1], raw[2]);
            return LOOM_OK;
        }
    }
}

static void reset(loom_gradcheck_result *res)
{
    memset(res, 0, sizeof *res);
    res->worst_tensor = res->kink_tensor = -1;
}

static void set_name(char dst[64], const char *const *names, int k)
{
    if (names && names[k]) snprintf(dst, 64, "%s", names[k]);
    else snprintf(dst, 64, "tensor %d", k);
}

/* loom_gradcheck_named, with `who` the public call that names its NULL arguments. */
static loom_status gradcheck_run(const char *who, loom_scalar_fn fn, void *ctx, loom_tensor *const *wrt,
                                 const char *const *names, int n, float eps, double floor, loom_gradcheck_result *res)
{
    if (!res) return loom_error_set(LOOM_EARG, "%s: out is NULL", who);
    reset(res);
    if (!fn) return loom_error_set(LOOM_EARG, "%s: fn is NULL", who);
    if (!wrt) return loom_error_set(LOOM_EARG, "%s: wrt is NULL", who);
    if (n <= 0 || isnan(eps) || isinf(eps) || !(floor >= 0))
        return loom_error_set(LOOM_EARG, "%s: needs n > 0 tensors (got %d), a finite eps (<= 0: automatic) and "
                              "floor >= 0", who, n);
    size_t total = 0;
    for (int k = 0; k < n; k++) {
        if (!wrt[k]) return loom_error_set(LOOM_EARG, "%s: wrt[%d] is NULL", who, k);
        if (!wrt[k]->grad || !wrt[k]->requires_grad)
            return loom_error_set(LOOM_EARG, "%s: tensor %d has no gradient buffer (use a parameter or a tensor made "
                                  "with requires_grad)", who, k);
        total += loom_tensor_size(wrt[k]);
    }
    gc g = {.fn = fn, .ctx = ctx, .t = loom_tape_new(0)};
    float *analytic = loom_malloc(total * sizeof(float));
    if (!g.t || !analytic) {
        loom_tape_free(g.t);
        loom_free(analytic);
        return LOOM_ENOMEM;
    }
    for (int k = 0; k < n; k++) loom_tensor_zero_grad(wrt[k]);
    loom_tensor *y = fn(g.t, ctx);
    loom_status st = y ? loom_tape_backward(g.t, y)
                       : (loom_tape_status(g.t) ? loom_tape_status(g.t) : loom_error_set(LOOM_EARG, "gradcheck: fn returned NULL"));
    double gmax = 0;
    for (size_t o = 0, k = 0; st == LOOM_OK && k < (size_t)n; o += loom_tensor_size(wrt[k]), k++)
        memcpy(analytic + o, wrt[k]->grad, loom_tensor_size(wrt[k]) * sizeof(float));
    for (size_t q = 0; st == LOOM_OK && q < total; q++) gmax = fmax(gmax, fabs(analytic[q]));
    g.fl = floor * (gmax > 0 ? gmax : 1.0);
    int was = loom_tape_set_nograd(g.t, 1);
    /* f0 from the same no-grad path as the perturbed evaluations, so slopes share its rounding. */
    if (st == LOOM_OK) st = eval(&g, &g.f0);
    if (st == LOOM_OK && !isfinite(g.f0)) st = loom_error_set(LOOM_EARG, "gradcheck: fn's value is %g before any perturbation", g.f0);
    size_t o = 0;
    for (int k = 0; k < n && st == LOOM_OK; k++) {
        char name[64];
        set_name(name, names, k);
        for (size_t i = 0; i < loom_tensor_size(wrt[k]) && st == LOOM_OK; i++, o++) {
            double num = 0, an = analytic[o];
            int kink = 0;
            st = numeric_at(&g, &wrt[k]->data[i], eps, name, i, &num, &kink);
            if (st != LOOM_OK) break;
            if (kink) {
                if (res->kinks++ == 0) {
                    res->kink_tensor = k;
                    res->kink_index = i;
                    memcpy(res->kink_name, name, sizeof name);
                }
                continue;
            }
            double err = fabs(an - num) / fmax(fmax(fabs(an), fabs(num)), g.fl);
            if (!(err <= INFINITY)) err = INFINITY; /* a NaN gradient is the worst error, not a skipped one */
            if (err > res->worst_rel_err || res->checked == 0) {
                res->worst_rel_err = err;
                res->worst_tensor = k;
                res->worst_index = i;
                res->analytic = an;
                res->numeric = num;
                memcpy(res->worst_name, name, sizeof name);
            }
            res->checked++;
        }
    }
    loom_tape_set_nograd(g.t, was);
    loom_tape_free(g.t);
    loom_free(analytic);
    return st;
}

loom_status loom_gradcheck_named(loom_scalar_fn fn, void *ctx, loom_tensor *const *wrt, const char *const *names, int n,
                                 float eps, double floor, loom_gradcheck_result *res)
{
    return gradcheck_run("gradcheck_named", fn, ctx, wrt, names, n, eps, floor, res);
}

loom_status loom_gradcheck(loom_scalar_fn fn, void *ctx, loom_tensor *const *wrt, int n, float eps, double floor,
                           loom_gradcheck_result *res)
{
    return gradcheck_run("gradcheck", fn, ctx, wrt, NULL, n, eps, floor, res);
}

loom_status loom_gradcheck_params(loom_scalar_fn fn, void *ctx, loom_params *ps, float eps, double floor,
                                  loom_gradcheck_result *res)
{
    if (!res) return LOOM_NULL_ARG("gradcheck_params", "out");
    reset(res);
    if (!fn) return LOOM_NULL_ARG("gradcheck_params", "fn");
    if (!ps) return LOOM_NULL_ARG("gradcheck_params", "ps");
    int total = loom_params_count(ps), n = 0;
    loom_tensor **wrt = loom_malloc((size_t)(total ? total : 1) * sizeof *wrt);
    const char **names = loom_malloc((size_t)(total ? total : 1) * sizeof *names);
    loom_status st = LOOM_OK;
    if (!wrt || !names) st = LOOM_ENOMEM;
    for (int i = 0; i < total && st == LOOM_OK; i++) {
        loom_tensor *v = loom_params_view(ps, i);
        if (!v->requires_grad) continue; /* frozen: the optimizer never sees its gradient either */
        if (!v->grad)
            st = loom_error_set(LOOM_ESTATE, "gradcheck_params: '%s' has no gradient (call loom_params_alloc first)",
                                loom_params_name(ps, i));
        wrt[n] = v;
        names[n++] = loom_params_name(ps, i);
    }
    if (st == LOOM_OK && n == 0) st = loom_error_set(LOOM_EARG, "gradcheck_params: no parameter requires a gradient");
    if (st == LOOM_OK) st = gradcheck_run("gradcheck_params", fn, ctx, wrt, names, n, eps, floor, res);
    loom_free(wrt);
    loom_free(names);
    return st;
}

/* snprintf after the *len characters so far, keeping snprintf's contract for the whole line. */
static void append(char *buf, size_t n, int *len, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;

static void append(char *buf, size_t n, int *len, const char *fmt, ...)
{
    if (*len < 0) return;
    size_t used = (size_t)*len < n ? (size_t)*len : (n ? n - 1 : 0);
    va_list ap;
    va_start(ap, fmt);
    int w = vsnprintf(n ? buf + used : NULL, n ? n - used : 0, fmt, ap);
    va_end(ap);
    *len = w < 0 ? w : *len + w;
}

int loom_gradcheck_format(const loom_gradcheck_result *res, char *buf, size_t n)
{
    if (!res) return LOOM_NULL_ARG("gradcheck_format", "res"), -1;
    if (!buf && n) return LOOM_NULL_ARG("gradcheck_format", "buf"), -1;
    int len = 0;
    if (res->checked)
        append(buf, n, &len, "worst relative error %.1e at %s[%zu] (analytic %.3g, numeric %.3g)", res->worst_rel_err,
               res->worst_name, res->worst_index, res->analytic, res->numeric);
    else
        append(buf, n, &len, "no element compared");
    append(buf, n, &len, "; %zu elements", res->checked + res->kinks);
    if (res->kinks) append(buf, n, &len, "; %zu skipped at kinks (first: %s[%zu])", res->kinks, res->kink_name, res->kink_index);
    return len;
}
