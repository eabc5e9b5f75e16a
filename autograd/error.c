/* Error messages, counted allocation, the thread-count knob, and the reduction and fill
 * kernels that every module uses. */
#include <omp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <stdlib.h>

#include "internal.h"

static _Thread_local char err_msg[512];
static _Thread_local uint64_t err_count; /* failures recorded on this thread, ever */
static _Thread_local loom_status err_status;
static atomic_uint_fast64_t alloc_calls;

const char *loom_error_message(void) { return err_msg; }

void loom_error_clear(void) { err_msg[0] = '\0'; }

loom_status loom_error_set(loom_status status, const char *fmt, ...)
{
    /* Formatted apart first: a message may quote the previous one (loom_error_message()). */
    char msg[sizeof err_msg] = "(no message)";
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
    }
    memcpy(err_msg, msg, sizeof msg);
    err_count++;
    err_status = status;
    return status;
}

uint64_t loom_error_count(void) { return err_count; }
loom_status loom_error_last(void) { return err_status; }

void *loom_malloc(size_t bytes)
{
    atomic_fetch_add(&alloc_calls, 1);
    void *p = malloc(bytes ? bytes : 1);
    if (!p) loom_error_set(LOOM_ENOMEM, "cannot allocate %zu bytes: out of memory", bytes);
    return p;
}

void *loom_calloc(size_t n, size_t size)
{
    atomic_fetch_add(&alloc_calls, 1);
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) loom_error_set(LOOM_ENOMEM, "cannot allocate %zu x %zu bytes: out of memory", n, size);
    return p;
}

void loom_free(void *p) { free(p); }

uint64_t loom_alloc_count(void) { return atomic_load(&alloc_calls); }

uint64_t loom_memory_bytes(void)
{
    long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGESIZE);
    return pages > 0 && size > 0 ? (uint64_t)pages * (uint64_t)size : 0;
}

void loom_threads_set(int n)
{
    if (n > 0) omp_set_num_threads(n);
}

int loom_threads_get(void) { return omp_get_max_threads(); }

/* Blocked sum of x[i] (or x[i]^2) in double; block boundaries depend on n only. Inside a
 * block, LANES interleaved chains summed in a fixed order: one chain would wait on the
 * add's latency at every element. */
#define LANES 8
static double sum_blocked(const float *x, size_t n, int squares)
{
    size_t bs = (n + 63) / 64;
    if (bs < LOOM_RED_BLOCK) bs = LOOM_RED_BLOCK;
    long nb = (long)((n + bs - 1) / bs);
    double part[64];
    LOOM_PFOR_IF(n >= LOOM_PAR_MIN, b, nb, {
        size_t lo = (size_t)b * bs, hi = lo + bs < n ? lo + bs : n, i = lo;
        double acc[LANES] = {0};
        if (squares)
            for (; i + LANES <= hi; i += LANES)
                for (int l = 0; l < LANES; l++) acc[l] += (double)x[i + l] * x[i + l];
        else
            for (; i + LANES <= hi; i += LANES)
                for (int l = 0; l < LANES; l++) acc[l] += x[i + l];
        for (int l = 0; i < hi; i++, l++) acc[l] += squares ? (double)x[i] * x[i] : x[i];
        part[b] = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    });
    double s = 0;
    for (long b = 0; b < nb; b++) s += part[b];
    return s;
}

/* Memory set to zero, split over the team from ZERO_PAR_MIN floats: one thread alone
 * cannot fill the memory bus. */
#define ZERO_PAR_MIN (1L << 18)
void loom_kernel_zero(float *x, size_t n)
{
    if (!n) return; /* nothing to clear; memset must not see a null pointer */
    if (!x) {
        LOOM_NULL_ARG("kernel_zero", "x");
        return;
    }
    long nt = (long)n >= ZERO_PAR_MIN ? omp_get_max_threads() : 1;
    LOOM_PFOR_IF(nt > 1, q, nt, {
        size_t lo = n * (size_t)q / (size_t)nt, hi = n * (size_t)(q + 1) / (size_t)nt;
        memset(x + lo, 0, (hi - lo) * sizeof(float));
    });
}

double loom_kernel_sum(const float *x, size_t n)
{
    if (!x && n) return LOOM_NULL_ARG("kernel_sum", "x"), 0.0;
    return sum_blocked(x, n, 0);
}

double loom_kernel_sumsq(const float *x, size_t n)
{
    if (!x && n) return LOOM_NULL_ARG("kernel_sumsq", "x"), 0.0;
    return sum_blocked(x, n, 1);
}

void loom_kernel_add_colsum_range(float *g, const float *x, int rows, int ld, int c0, int c1)
{
    if ((!g || !x) && rows > 0 && c1 > c0) {
        if (!g) LOOM_NULL_ARG("kernel_add_colsum_range", "g");
        else LOOM_NULL_ARG("kernel_add_colsum_range", "x");
        return;
    }
    for (int r = 0; r < rows; r++) {
        const float *row = x + (size_t)r * ld;
        for (int c = c0; c < c1; c++) g[c] += row[c];
    }
}

void loom_kernel_add_colsum(float *g, const float *dout, int rows, int cols)
{
    if ((!g || !dout) && rows > 0 && cols > 0) {
        if (!g) LOOM_NULL_ARG("kernel_add_colsum", "g");
        else LOOM_NULL_ARG("kernel_add_colsum", "x");
        return;
    }
    /* Each thread owns a range of columns and walks rows in order: same bits on any thread count. */
    LOOM_PARALLEL_IF((long)rows * cols >= LOOM_PAR_MIN, {
        int nt = omp_get_num_threads(), id = omp_get_thread_num();
        int c0 = (int)((long)cols * id / nt), c1 = (int)((long)cols * (id + 1) / nt);
        loom_kernel_add_colsum_range(g, dout, rows, cols, c0, c1);
    });
}
