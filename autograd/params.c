/* Heap tensors and the flat parameter store with named views. */
#include <stdint.h>
#include <string.h>

#include "internal.h"

loom_tensor *loom_tensor_new(int rows, int cols, int requires_grad)
{
    if (rows <= 0 || cols <= 0) {
        loom_error_set(LOOM_ESHAPE, "tensor_new: [%dx%d]: sizes must be positive", rows, cols);
        return NULL;
    }
    loom_tensor *t = loom_calloc(1, sizeof *t);
    if (!t) return NULL;
    size_t n = (size_t)rows * cols;
    t->data = loom_calloc(n, sizeof(float));
    t->grad = requires_grad ? loom_calloc(n, sizeof(float)) : NULL;
    if (!t->data || (requires_grad && !t->grad)) {
        loom_free(t->data);
        loom_free(t->grad);
        loom_free(t);
        return NULL;
    }
    t->rows = rows;
    t->cols = cols;
    t->requires_grad = requires_grad;
    t->owns = 1;
    return t;
}

void loom_tensor_free(loom_tensor *t)
{
    if (!t) return;
    if (t->owns) {
        loom_free(t->data);
        loom_free(t->grad);
    }
    loom_free(t);
}

void loom_tensor_zero_grad(loom_tensor *t)
{
    if (t && t->grad) memset(t->grad, 0, loom_tensor_size(t) * sizeof(float));
}

typedef struct pentry {
    char name[96];
    loom_tensor *view; /* heap struct so the address stays put */
    loom_init init;
    size_t offset;
} pentry;

struct loom_params {
    pentry *e;
    int n, cap;
    size_t size;
    float *data, *grad;
};

loom_params *loom_params_new(void) { return loom_calloc(1, sizeof(loom_params)); }

void loom_params_free(loom_params *p)
{
    if (!p) return;
    for (int i = 0; i < p->n; i++) loom_free(p->e[i].view);
    loom_free(p->e);
    loom_free(p->data);
    loom_free(p->grad);
    loom_free(p);
}

loom_tensor *loom_params_add(loom_params *p, const char *name, int rows, int cols, loom_init init)
{
    if (!p) return LOOM_NULL_ARG("params_add", "params"), NULL;
    if (!name) return LOOM_NULL_ARG("params_add", "name"), NULL;
    if (p->data) {
        loom_error_set(LOOM_ESTATE, "params_add: '%s': the store is already allocated", name);
        return NULL;
    }
    if (rows <= 0 || cols <= 0) {
        loom_error_set(LOOM_ESHAPE, "params_add: '%s' [%dx%d]: sizes must be positive", name, rows, cols);
        return NULL;
    }
    if (strlen(name) >= sizeof p->e[0].name) {
        loom_error_set(LOOM_EARG, "params_add: name '%s' is longer than %zu characters", name,
                       sizeof p->e[0].name - 1);
        return NULL;
    }
    if (loom_params_find(p, name)) {
        loom_error_set(LOOM_EARG, "params_add: a parameter named '%s' already exists", name);
        return NULL;
    }
    if (p->n == p->cap) {
        int cap = p->cap ? p->cap * 2 : 16;
        pentry *e = loom_malloc((size_t)cap * sizeof *e);
        if (!e) return NULL;
        if (p->n) memcpy(e, p->e, (size_t)p->n * sizeof *e);
        loom_free(p->e);
        p->e = e;
        p->cap = cap;
    }
    loom_tensor *v = loom_calloc(1, sizeof *v);
    if (!v) return NULL;
    v->rows = rows;
    v->cols = cols;
    v->requires_grad = 1;
    pentry *e = &p->e[p->n++];
    strcpy(e->name, name);
    e->view = v;
    e->init = init;
    e->offset = p->size;
    p->size += (size_t)rows * cols;
    return v;
}

loom_status loom_params_alloc(loom_params *p, loom_rng *rng)
{
    if (!p) return LOOM_NULL_ARG("params_alloc", "params");
    if (p->data) return loom_error_set(LOOM_ESTATE, "params_alloc: already allocated");
    for (int i = 0; i < p->n && !rng; i++)
        if (p->e[i].init.kind == LOOM_INIT_UNIFORM || p->e[i].init.kind == LOOM_INIT_NORMAL)
            return loom_error_set(LOOM_EARG, "params_alloc: rng is NULL but parameter '%s' has a random init",
                                  p->e[i].name);
    /* calloc of more than the machine has succeeds lazily and the OOM killer ends the
     * process at first touch: refuse it here with a message instead */
    uint64_t mem = loom_memory_bytes(), need = (uint64_t)p->size * 2u * sizeof(float);
    if (p->size > SIZE_MAX / 8 || (mem && need > mem))
        return loom_error_set(LOOM_ENOMEM, "params_alloc: cannot allocate %llu bytes for %zu parameters and their gradients "
                                           "(this machine has %llu bytes of memory)",
                              (unsigned long long)need, p->size, (unsigned long long)mem);
    p->data = loom_calloc(p->size, sizeof(float));
    p->grad = loom_calloc(p->size, sizeof(float));
    if (!p->data || !p->grad) {
        loom_free(p->data), loom_free(p->grad);
        p->data = p->grad = NULL;
        return loom_error_set(LOOM_ENOMEM, "params_alloc: cannot allocate %llu bytes for %zu parameters and their gradients",
                              (unsigned long long)need, p->size);
    }
    for (int i = 0; i < p->n; i++) {
        pentry *e = &p->e[i];
        float *d = p->data + e->offset;
        size_t n = loom_tensor_size(e->view);
        e->view->data = d;
        e->view->grad = p->grad + e->offset;
        switch (e->init.kind) {
        case LOOM_INIT_ZERO: break;
        case LOOM_INIT_CONST:
            for (size_t k = 0; k < n; k++) d[k] = e->init.a;
            break;
        case LOOM_INIT_UNIFORM: loom_rng_fill_uniform(rng, d, n, e->init.a, e->init.b); break;
        case LOOM_INIT_NORMAL: loom_rng_fill_normal(rng, d, n, e->init.a, e->init.b); break;
        }
    }
    return LOOM_OK;
}

void loom_params_zero_grad(loom_params *p)
{
    if (!p) {
        LOOM_NULL_ARG("params_zero_grad", "params");
        return;
    }
    if (p->grad) loom_kernel_zero(p->grad, p->size);
}

size_t loom_params_size(const loom_params *p)
{
    if (!p) return LOOM_NULL_ARG("params_size", "params"), 0;
    return p->size;
}

float *loom_params_data(loom_params *p)
{
    if (!p) return LOOM_NULL_ARG("params_data", "params"), NULL;
    return p->data;
}

float *loom_params_grad(loom_params *p)
{
    if (!p) return LOOM_NULL_ARG("params_grad", "params"), NULL;
    return p->grad;
}

int loom_params_count(const loom_params *p)
{
    if (!p) return LOOM_NULL_ARG("params_count", "params"), 0;
    return p->n;
}

/* Whether view i exists; sets fn's error if not. */
static int params_index_ok(const loom_params *p, int i, const char *fn)
{
    if (!p) return loom_error_set(LOOM_EARG, "%s: params is NULL", fn), 0;
    if (i < 0 || i >= p->n) return loom_error_set(LOOM_EARG, "%s: index %d is outside [0,%d)", fn, i, p->n), 0;
    return 1;
}

const char *loom_params_name(const loom_params *p, int i)
{
    return params_index_ok(p, i, "params_name") ? p->e[i].name : NULL;
}

loom_tensor *loom_params_view(loom_params *p, int i)
{
    return params_index_ok(p, i, "params_view") ? p->e[i].view : NULL;
}

loom_tensor *loom_params_find(loom_params *p, const char *name)
{
    if (!p) return LOOM_NULL_ARG("params_find", "params"), NULL;
    if (!name) return LOOM_NULL_ARG("params_find", "name"), NULL;
    for (int i = 0; i < p->n; i++)
        if (strcmp(p->e[i].name, name) == 0) return p->e[i].view;
    return NULL;
}

loom_status loom_params_freeze(loom_params *p, const char *name, int frozen)
{
    if (!p) return LOOM_NULL_ARG("params_freeze", "params");
    if (!name) return LOOM_NULL_ARG("params_freeze", "name");
    loom_tensor *v = loom_params_find(p, name);
    if (!v) return loom_error_set(LOOM_EARG, "freeze: no parameter is named '%s'", name);
    v->requires_grad = !frozen;
    return LOOM_OK;
}
