/* Gradient check: backward's gradients against central differences. */
#include <math.h>
#include <string.h>

#include "internal.h"

static loom_status eval(loom_tape *t, loom_scalar_fn fn, void *ctx, double *out)
{
    loom_tape_reset(t);
    loom_tensor *y = fn(t, ctx);
    if (!y) return loom_tape_status(t) ? loom_tape_status(t) : loom_error_set(LOOM_EARG, "gradcheck: fn returned NULL");
    if (y->rows != 1 || y->cols != 1)
        return loom_error_set(LOOM_ESHAPE, "gradcheck: fn returned [%dx%d], expected [1x1]", y->rows, y->cols);
    *out = y->data[0];
    return LOOM_OK;
}

loom_status loom_gradcheck(loom_scalar_fn fn, void *ctx, loom_tensor *const *wrt, int n, float eps, double floor,
                           loom_gradcheck_result *res)
{
    memset(res, 0, sizeof *res);
    if (!fn || !wrt || n <= 0 || !(eps > 0)) return loom_error_set(LOOM_EARG, "gradcheck: needs fn, n > 0 tensors and eps > 0");
    size_t total = 0;
    for (int k = 0; k < n; k++) {
        if (!wrt[k] || !wrt[k]->grad || !wrt[k]->requires_grad)
            return loom_error_set(LOOM_EARG, "gradcheck: tensor %d has no gradient buffer (use a parameter or a tensor made with requires_grad)", k);
        total += loom_tensor_size(wrt[k]);
    }
    loom_tape *t = loom_tape_new(0);
    float *analytic = loom_malloc(total * sizeof(float));
    if (!t || !analytic) {
        loom_tape_free(t);
        loom_free(analytic);
        return LOOM_ENOMEM;
    }
    loom_status st;
    for (int k = 0; k < n; k++) loom_tensor_zero_grad(wrt[k]);
    loom_tape_reset(t);
    loom_tensor *y = fn(t, ctx);
    st = y ? loom_tape_backward(t, y) : (loom_tape_status(t) ? loom_tape_status(t) : LOOM_EARG);
    if (st == LOOM_OK) {
        size_t o = 0;
        for (int k = 0; k < n; k++) {
            memcpy(analytic + o, wrt[k]->grad, loom_tensor_size(wrt[k]) * sizeof(float));
            o += loom_tensor_size(wrt[k]);
        }
        double gmax = 0;
        for (size_t q = 0; q < total; q++) gmax = fmax(gmax, fabs(analytic[q]));
        double fl = floor * (gmax > 0 ? gmax : 1.0);
        int was = loom_tape_set_nograd(t, 1);
        o = 0;
        res->worst_rel_err = 0;
        for (int k = 0; k < n && st == LOOM_OK; k++) {
            for (size_t i = 0; i < loom_tensor_size(wrt[k]) && st == LOOM_OK; i++, o++) {
                float x0 = wrt[k]->data[i];
                double fp = 0, fm = 0;
                wrt[k]->data[i] = x0 + eps;
                st = eval(t, fn, ctx, &fp);
                wrt[k]->data[i] = x0 - eps;
                if (st == LOOM_OK) st = eval(t, fn, ctx, &fm);
                wrt[k]->data[i] = x0;
                double num = (fp - fm) / (2.0 * eps), an = analytic[o];
                double den = fmax(fmax(fabs(an), fabs(num)), fl);
                double err = fabs(an - num) / den;
                if (err > res->worst_rel_err || res->checked == 0) {
                    res->worst_rel_err = err;
                    res->worst_tensor = k;
                    res->worst_index = i;
                    res->analytic = an;
                    res->numeric = num;
                }
                res->checked++;
            }
        }
        loom_tape_set_nograd(t, was);
    }
    loom_tape_free(t);
    loom_free(analytic);
    return st;
}
