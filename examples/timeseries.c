/* timeseries: forecasts the next value of a numeric series (a CSV column, or a
 * generated noisy multi-frequency signal) and compares RMSE with the naive
 * last-value forecast. Many-to-many: a prediction at every step. */
#define _POSIX_C_SOURCE 200809L /* getline */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "app.h"

#define TWO_PI 6.283185307179586

typedef struct tseries {
    loom_app_flags *f;
    float *v;      /* normalised series */
    long n, ntrain;
    double mean, std;
    loom_params *ps;
    loom_seq seq;
    loom_linear head;
    loom_rng data_rng, dropout_rng;
    float *x, *y;
} tseries;

static const char ABOUT[] =
    "One-step-ahead forecasting of a numeric series read from a CSV column (--data FILE --column\n"
    "NAME|INDEX), by default a generated noisy multi-frequency signal. The last 20% is the test\n"
    "part; RMSE is reported against the naive last-value forecast.";

/* A field quoted in a message: at most 40 characters of it. */
static const char *shown(const char *s, char *buf, size_t cap)
{
    if (strlen(s) <= 40) return s;
    snprintf(buf, cap, "%.40s... (%zu characters)", s, strlen(s));
    return buf;
}

/* Splits the next field off a CSV line at *pos, in place: a quoted field ("1,5", with ""
 * for a quote) loses its quotes. *pos becomes the next field, or NULL after the last.
 * Returns NULL for a quote that is never closed. */
static char *next_field(char **pos)
{
    char *p = *pos, *field = p, *w = p;
    if (*p == '"') {
        for (p++;; p++) {
            if (!*p) return NULL;
            if (*p == '"' && p[1] != '"') break;
            *w++ = *p;
            if (*p == '"') p++; /* "" is one quote */
        }
        p++;
    }
    while (*p && *p != ',') *w++ = *p++; /* the rest of an unquoted field (w == p) */
    *pos = *p ? p + 1 : NULL;
    *w = '\0';
    return field;
}

/* Reads one column of a CSV file (header optional). Returns the count, or -1 after a message. */
static long read_csv_column(const char *path, const char *column, float **out)
{
    FILE *fp = fopen(path, "r");
    if (!fp) {
        fprintf(stderr, "timeseries: --data %s: cannot open: %s\n", path, strerror(errno));
        return -1;
    }
    char *line = NULL, *endp, show[96];
    size_t linecap = 0;
    long n = 0, cap = 1024, lineno = 0;
    int col = -1, first = 1;
    errno = 0;
    long ci = strtol(column, &endp, 10);
    int by_index = *column && !*endp;
    if (by_index && (errno || ci < 0 || ci > INT_MAX)) {
        fprintf(stderr, "timeseries: --data %s: --column %s is not a valid column index (0 or more)\n", path, column);
        fclose(fp);
        return -1;
    }
    if (by_index) col = (int)ci;
    float *v = malloc(sizeof(float) * cap);
    if (!v) {
        fprintf(stderr, "timeseries: --data %s: out of memory\n", path);
        goto fail;
    }
    for (ssize_t len; (len = getline(&line, &linecap, fp)) >= 0;) { /* lines of any length */
        lineno++;
        if (strlen(line) != (size_t)len) {
            fprintf(stderr, "timeseries: --data %s line %ld: a NUL byte: not a text CSV file\n", path, lineno);
            goto fail;
        }
        char *p = line;
        if (lineno == 1 && strncmp(p, "\xEF\xBB\xBF", 3) == 0) p += 3; /* a UTF-8 byte order mark */
        p[strcspn(p, "\r\n")] = '\0';
        if (!*p) continue;
        int head = first; /* the first line with anything on it: a header, or the first value */
        first = 0;
        int nf = 0;
        char *field = NULL;
        for (char *pos = p; pos; nf++) {
            char *q = next_field(&pos);
            if (!q) {
                fprintf(stderr, "timeseries: --data %s line %ld: a quoted field is never closed\n", path, lineno);
                goto fail;
            }
            if (head && !by_index && strcmp(q, column) == 0) col = nf; /* find the column by name */
            if (nf == col) field = q;
        }
        if (head && !by_index) {
            if (col >= 0) continue;
            fprintf(stderr, "timeseries: --data %s: no column named '%s' in the header (line %ld)\n", path,
                    shown(column, show, sizeof show), lineno);
            goto fail;
        }
        if (!field) {
            fprintf(stderr, "timeseries: --data %s line %ld: has %d columns, --column %s asks for column %d\n", path,
                    lineno, nf, column, col);
            goto fail;
        }
        float x = strtof(field, &endp);
        if (endp == field || *endp || !isfinite(x)) {
            if (head && endp == field) continue; /* a header row with a numeric column index */
            fprintf(stderr, "timeseries: --data %s line %ld: '%s' is not a %s\n", path, lineno,
                    shown(field, show, sizeof show), endp == field || *endp ? "number" : "finite float32 number");
            goto fail;
        }
        if (n == cap) {
            float *nv = realloc(v, sizeof(float) * (cap *= 2));
            if (!nv) {
                fprintf(stderr, "timeseries: --data %s: out of memory at line %ld\n", path, lineno);
                goto fail;
            }
            v = nv;
        }
        v[n++] = x;
    }
    if (ferror(fp)) {
        fprintf(stderr, "timeseries: --data %s: read error after line %ld\n", path, lineno);
        goto fail;
    }
    free(line);
    fclose(fp);
    *out = v;
    return n;
fail:
    free(line);
    fclose(fp);
    free(v);
    return -1;
}

static void generate(float *v, long n, loom_rng *r)
{
    for (long t = 0; t < n; t++)
        v[t] = (float)(sin(TWO_PI * t / 50.0) + 0.5 * sin(TWO_PI * t / 17.0 + 1.0) + 0.3 * sin(TWO_PI * t / 7.3)) +
               0.1f * loom_rng_normal(r);
}

/* Training windows start from zeros (st NULL); forecasting carries st along the series. */
static loom_tensor *predict(tseries *m, loom_tape *t, const float *x, int T, int B, loom_state *st)
{
    loom_seq_out o;
    loom_tensor *xt = loom_tape_from(t, T * B, 1, x);
    if (!xt || loom_seq_forward(&m->seq, t, xt, T, B, NULL, !loom_tape_nograd(t), st, &m->dropout_rng, &o) != LOOM_OK ||
        (st && loom_state_store(st, &o) != LOOM_OK))
        return NULL;
    return loom_linear_apply(t, o.y, m->head.weight, m->head.bias);
}

/* Window b of the global batch starts where counter b of this step's draw says. */
static loom_tensor *forward(void *ctx, loom_tape *t, loom_batch *bt)
{
    tseries *m = ctx;
    int T = m->f->seq, B = bt->rows;
    for (int b = 0; b < B; b++) {
        loom_rng r = {m->data_rng.seed, m->data_rng.counter + (uint64_t)(bt->row0 + b)};
        long s = (long)loom_rng_below(&r, (uint32_t)(m->ntrain - T - 1));
        for (int k = 0; k < T; k++) {
            m->x[k * B + b] = m->v[s + k];
            m->y[k * B + b] = m->v[s + k + 1];
        }
    }
    m->data_rng.counter += (uint64_t)bt->batch;
    bt->count = (double)T * B;
    bt->tokens = (long)T * B;
    loom_tensor *y = loom_tape_from(t, T * B, 1, m->y);
    return loom_op_mse(t, predict(m, t, m->x, T, B, NULL), y, NULL);
}

/* RMSE (original units) of one-step forecasts over the test part, model and naive. */
static void test_rmse(tseries *m, loom_tape *t, double *model, double *naive)
{
    int T = m->f->seq;
    loom_state *s = loom_state_new(&m->seq, 1);
    double se = 0, sn = 0;
    long cnt = 0;
    int was = loom_tape_set_nograd(t, 1);
    for (long c = 0; s && c + 1 < m->n; c += T) { /* the whole series, so the test part has context */
        int w = (int)(m->n - 1 - c < T ? m->n - 1 - c : T);
        loom_tape_reset(t);
        loom_tensor *p = predict(m, t, m->v + c, w, 1, s);
        if (!p) break;
        for (int k = 0; k < w; k++) {
            long i = c + k + 1; /* the value being forecast */
            if (i < m->ntrain) continue;
            double e = (p->data[k] - m->v[i]) * m->std, en = (m->v[i - 1] - m->v[i]) * m->std;
            se += e * e, sn += en * en, cnt++;
        }
    }
    loom_tape_set_nograd(t, was);
    loom_state_free(s);
    *model = sqrt(se / (cnt ? cnt : 1));
    *naive = sqrt(sn / (cnt ? cnt : 1));
}

static loom_status save_state(void *ctx, loom_ckpt *c)
{
    tseries *m = ctx;
    return loom_app_state_write(c, m->f, &m->data_rng, &m->dropout_rng);
}

static loom_status load_state(void *ctx, loom_ckpt *c)
{
    tseries *m = ctx;
    return loom_app_state_read(c, &m->data_rng, &m->dropout_rng);
}

static void evaluate(void *ctx, loom_tape *t, long step)
{
    double a, b;
    test_rmse(ctx, t, &a, &b);
    printf("step %ld: test RMSE %.4f (naive last-value %.4f)\n", step, a, b);
    fflush(stdout);
}

/* Frees what run() has made so far (any part may be missing) and returns rc. */
static int finish(tseries *m, loom_trainer *run, loom_ckpt *ck, int rc)
{
    if (run) loom_trainer_free(run);
    loom_ckpt_close(ck);
    loom_seq_free(&m->seq);
    loom_params_free(m->ps);
    free(m->v);
    free(m->x);
    free(m->y);
    return rc;
}

static int run(loom_dist *d, int argc, char **argv)
{
    loom_app_flags f = {.data = NULL, .steps = 600, .batch = 32, .seq = 50, .hidden = 32, .layers = 1, .cell = "lstm",
                        .optim = "adam", .sched = "constant", .lr = 5e-3f, .clip = 1.0f, .seed = 1, .log_every = 50,
                        .eval_every = 200, .column = "0", .keep = 1};
    loom_flag extra[] = {{"column", LOOM_FLAG_STR, &f.column, "CSV column: header name or 0-based index"},
                         {NULL, 0, NULL, NULL}};
    int rc = loom_app_parse(&f, argc, argv, ABOUT, extra);
    if (rc) return rc == 1 ? 0 : rc;
    loom_ckpt *ck = NULL;
    if ((rc = loom_app_resume_open(&f, "timeseries", &ck))) return rc;
    tseries m = {.f = &f};
    if (loom_app_check(&f, "timeseries")) return finish(&m, NULL, ck, 2);
    if (f.threads > 0) loom_threads_set(f.threads);
    loom_rng gen = loom_rng_init(f.seed + 7);
    if (f.data) {
        m.n = read_csv_column(f.data, f.column, &m.v);
        if (m.n < 0) return finish(&m, NULL, ck, 1);
    } else {
        m.n = 4000;
        m.v = malloc(sizeof(float) * m.n);
        generate(m.v, m.n, &gen);
    }
    m.ntrain = m.n * 4 / 5;
    if (m.ntrain < f.seq + 2 || m.n - m.ntrain < 2) {
        fprintf(stderr, "timeseries: --data %s: %ld values is too short for --seq %d (need at least %d)\n",
                f.data ? f.data : "(generated)", m.n, f.seq, (f.seq + 2) * 5 / 4 + 2);
        return finish(&m, NULL, ck, 2);
    }
    double s = 0, ss = 0;
    for (long i = 0; i < m.ntrain; i++) s += m.v[i], ss += (double)m.v[i] * m.v[i];
    m.mean = s / m.ntrain;
    m.std = sqrt(fmax(ss / m.ntrain - m.mean * m.mean, 1e-12));
    for (long i = 0; i < m.n; i++) m.v[i] = (float)((m.v[i] - m.mean) / m.std);

    loom_rng init = loom_rng_init(f.seed);
    m.data_rng = loom_rng_init(f.seed + 1);
    m.dropout_rng = loom_rng_init(f.seed + 2);
    m.ps = loom_params_new();
    m.x = malloc(sizeof(float) * f.seq * f.batch);
    m.y = malloc(sizeof(float) * f.seq * f.batch);
    if (loom_app_seq_declare(&f, f.cell, 1, &m.seq, m.ps) != LOOM_OK ||
        loom_linear_declare(&m.head, m.ps, "head", f.hidden, 1) != LOOM_OK || loom_params_alloc(m.ps, &init) != LOOM_OK) {
        fprintf(stderr, "timeseries: %s\n", loom_error_message());
        return finish(&m, NULL, ck, 1);
    }
    loom_seq_apply_init(&m.seq);
    printf("timeseries: %ld values (%s), %ld for training, %s hidden %d\n", m.n, f.data ? f.data : "generated", m.ntrain,
           f.cell, f.hidden);
    loom_trainer run;
    loom_task task = {&m, forward, evaluate, save_state, load_state, NULL};
    if ((rc = loom_app_trainer_init(&run, &f, d, m.ps, "timeseries"))) return finish(&m, NULL, ck, rc);
    loom_seq_set_shard(&m.seq, run.row0, f.batch);
    if (loom_app_resume_finish(&run, &task, ck)) return finish(&m, &run, NULL, 1); /* it closes ck */
    return finish(&m, &run, NULL, loom_app_train(&run, &task));
}

int main(int argc, char **argv) { return loom_app_main(argc, argv, "timeseries", run); }
