/* Reading checkpoints: every dataset is checked for presence, type and shape
 * before it is read, and every failure names the file and the dataset. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "internal.h"

static loom_status err(loom_ckpt *c, loom_status st, const char *name, const char *fmt, const char *detail)
{
    char msg[256];
    snprintf(msg, sizeof msg, fmt, detail);
    return loom_error_set(st, "checkpoint %s: %s%s%s", c->path, name ? "dataset " : "", name ? name : "", msg);
}

static int read_root_attr(hid_t f, const char *name, int *v)
{
    if (H5Aexists(f, name) <= 0) return -1;
    hid_t a = H5Aopen(f, name, H5P_DEFAULT);
    if (a < 0) return -1;
    /* one integer, nothing else: an array would be read past v */
    hid_t sp = H5Aget_space(a), t = H5Aget_type(a);
    int one = sp >= 0 && H5Sget_simple_extent_npoints(sp) == 1 && H5Sget_simple_extent_type(sp) != H5S_NULL;
    int integer = t >= 0 && H5Tget_class(t) == H5T_INTEGER;
    if (sp >= 0) H5Sclose(sp);
    if (t >= 0) H5Tclose(t);
    long long x = 0;
    herr_t st = one && integer ? H5Aread(a, H5T_NATIVE_LLONG, &x) : -1;
    H5Aclose(a);
    if (st < 0 || x < INT_MIN || x > INT_MAX) return -1;
    *v = (int)x;
    return 0;
}

loom_ckpt *loom_ckpt_open(const char *path)
{
    if (!path) return LOOM_NULL_ARG("ckpt_open", "path"), NULL;
    if (strlen(path) >= sizeof ((loom_ckpt *)0)->path)
        return loom_error_set(LOOM_EARG, "ckpt_open: path of %zu characters is too long", strlen(path)), NULL;
    loom_io_quiet();
    struct stat sb;
    if (stat(path, &sb) != 0) {
        loom_error_set(LOOM_EIO, "checkpoint %s: %s", path, strerror(errno));
        return NULL;
    }
    if (!S_ISREG(sb.st_mode)) {
        loom_error_set(LOOM_EIO, "checkpoint %s: not a regular file", path);
        return NULL;
    }
    FILE *probe = fopen(path, "rb");
    if (!probe) {
        loom_error_set(LOOM_EIO, "checkpoint %s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    fclose(probe);
    if (H5Fis_hdf5(path) <= 0) {
        loom_error_set(LOOM_EFORMAT, "checkpoint %s: not an HDF5 file (or its header is damaged)", path);
        return NULL;
    }
    loom_ckpt *c = loom_calloc(1, sizeof *c);
    if (!c) return NULL;
    snprintf(c->path, sizeof c->path, "%s", path);
    c->file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (c->file < 0) {
        loom_error_set(LOOM_EFORMAT, "checkpoint %s: HDF5 cannot open it: truncated or corrupt", path);
        loom_free(c);
        return NULL;
    }
    int format = 0;
    if (read_root_attr(c->file, "format_version", &format) < 0) {
        loom_error_set(LOOM_EFORMAT, "checkpoint %s: no readable format_version attribute (one integer): not a loom checkpoint, "
                       "or corrupt", path);
        loom_ckpt_close(c);
        return NULL;
    }
    if (format > LOOM_CKPT_FORMAT || format < 1) {
        loom_error_set(LOOM_EFORMAT, "checkpoint %s: format version %d; this loom reads versions 1 to %d%s", path, format,
                       LOOM_CKPT_FORMAT, format > LOOM_CKPT_FORMAT ? " (written by a newer loom)" : "");
        loom_ckpt_close(c);
        return NULL;
    }
    /* how the run was launched: only notes depend on these, so a damaged one counts as unknown */
    if (read_root_attr(c->file, "world_size", &c->world_size) < 0 || c->world_size < 1) c->world_size = 1;
    if (read_root_attr(c->file, "threads", &c->threads) < 0 || c->threads < 0) c->threads = 0;
    return c;
}

void loom_ckpt_close(loom_ckpt *c)
{
    if (!c) return;
    if (c->writing) { /* closing one being written gives it up: no half-written file is left */
        loom_ckpt_abort(c);
        return;
    }
    if (c->file >= 0) H5Fclose(c->file);
    loom_free(c);
}

const char *loom_ckpt_path(const loom_ckpt *c) { return c ? c->path : (LOOM_NULL_ARG("ckpt_path", "checkpoint"), NULL); }

loom_status loom_ckpt_readable(loom_ckpt *c, const char *fn, const char *name, const char *label)
{
    if (!c) return loom_error_set(LOOM_EARG, "%s: checkpoint is NULL", fn);
    if (!name) return loom_error_set(LOOM_EARG, "%s: %s is NULL", fn, label);
    return LOOM_OK;
}

loom_status loom_ckpt_info(loom_ckpt *c, int *format, int *world_size, int *threads)
{
    if (!c) return LOOM_NULL_ARG("ckpt_info", "checkpoint");
    if (format) read_root_attr(c->file, "format_version", format);
    if (world_size) *world_size = c->world_size;
    if (threads) *threads = c->threads;
    return LOOM_OK;
}

int loom_ckpt_has(loom_ckpt *c, const char *name)
{
    if (loom_ckpt_readable(c, "ckpt_has", name, "name") != LOOM_OK) return 0;
    /* H5Lexists needs every parent to exist, so walk the path one link at a time. */
    char part[512];
    size_t n = strlen(name);
    if (n >= sizeof part) return 0;
    for (size_t i = 1; i <= n; i++)
        if (name[i] == '/' || name[i] == '\0') {
            memcpy(part, name, i);
            part[i] = '\0';
            if (H5Lexists(c->file, part, H5P_DEFAULT) <= 0) return 0;
        }
    return 1;
}

/* Opens a dataset, checking its type class (and size when size > 0) and element count / shape. */
static hid_t open_ds(loom_ckpt *c, const char *name, H5T_class_t cls, size_t size, int rank, const hsize_t *dims,
                     loom_status *st)
{
    *st = LOOM_OK;
    if (!loom_ckpt_has(c, name)) {
        *st = err(c, LOOM_EFORMAT, name, " is missing%s", "");
        return -1;
    }
    hid_t ds = H5Dopen2(c->file, name, H5P_DEFAULT);
    if (ds < 0) {
        *st = err(c, LOOM_EFORMAT, name, " cannot be opened (%s)", "not a dataset, or corrupt");
        return -1;
    }
    hid_t t = H5Dget_type(ds);
    H5T_class_t got = t < 0 ? H5T_NO_CLASS : H5Tget_class(t);
    size_t gsize = t < 0 ? 0 : H5Tget_size(t);
    if (t >= 0) H5Tclose(t);
    static const char *CLS[] = {"integer", "float", "time", "string", "bitfield", "opaque", "compound", "reference",
                                "enum", "variable-length", "array"};
    if (got != cls || (size && gsize != size)) {
        char what[96];
        snprintf(what, sizeof what, "%s of %zu bytes", got >= 0 && got <= 10 ? CLS[got] : "unknown", gsize);
        *st = err(c, LOOM_EFORMAT, name, " has type %s, expected something else for this field (see the layout in the README)", what);
        H5Dclose(ds);
        return -1;
    }
    hid_t sp = H5Dget_space(ds);
    if (sp >= 0 && H5Sget_simple_extent_type(sp) == H5S_NULL) { /* reads nothing, leaving the buffer as it was */
        H5Sclose(sp);
        H5Dclose(ds);
        *st = err(c, LOOM_EFORMAT, name, " has no data (an empty dataspace)%s", "");
        return -1;
    }
    int grank = sp < 0 ? -1 : H5Sget_simple_extent_ndims(sp);
    hsize_t gd[8] = {0};
    if (grank > 0 && grank <= 8) H5Sget_simple_extent_dims(sp, gd, NULL);
    if (sp >= 0) H5Sclose(sp);
    int ok = grank == rank;
    for (int i = 0; ok && i < rank; i++) ok = gd[i] == dims[i];
    if (!ok) {
        char got_s[96] = "", want_s[96] = "";
        for (int i = 0; i < grank && i < 8; i++)
            snprintf(got_s + strlen(got_s), sizeof got_s - strlen(got_s), "%s%llu", i ? " x " : "", (unsigned long long)gd[i]);
        for (int i = 0; i < rank; i++)
            snprintf(want_s + strlen(want_s), sizeof want_s - strlen(want_s), "%s%llu", i ? " x " : "", (unsigned long long)dims[i]);
        char msg[256];
        snprintf(msg, sizeof msg, " has shape [%s], expected [%s]: another architecture or size?", grank == 0 ? "scalar" : got_s,
                 rank == 0 ? "scalar" : want_s);
        *st = err(c, LOOM_EFORMAT, name, "%s", msg);
        H5Dclose(ds);
        return -1;
    }
    return ds;
}

static loom_status read_ds(loom_ckpt *c, hid_t ds, const char *name, hid_t mem_type, void *x)
{
    herr_t r = H5Dread(ds, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, x);
    H5Dclose(ds);
    return r < 0 ? err(c, LOOM_EFORMAT, name, " cannot be read (%s)", "corrupt data or checksum mismatch") : LOOM_OK;
}

loom_status loom_ckpt_read_floats(loom_ckpt *c, const char *name, float *x, int rows, int cols)
{
    loom_status st = loom_ckpt_readable(c, "ckpt_read_floats", name, "name");
    if (st != LOOM_OK) return st;
    if (rows < 0 || cols < 0)
        return loom_error_set(LOOM_EARG, "ckpt_read_floats: %s: shape [%d x %d] is negative", name, rows, cols);
    if (!x && cols > 0) return LOOM_NULL_ARG("ckpt_read_floats", "data");
    hsize_t d2[2] = {(hsize_t)rows, (hsize_t)cols}, d1[1] = {(hsize_t)cols};
    hid_t ds;
    if (rows == 1 || rows == 0) { /* [1 x n] is stored 1-D, PyTorch's way; accept [1 x n] too */
        ds = open_ds(c, name, H5T_FLOAT, 0, 1, d1, &st);
        if (ds < 0 && rows == 1) {
            loom_status st2;
            char keep[512];
            snprintf(keep, sizeof keep, "%s", loom_error_message());
            ds = open_ds(c, name, H5T_FLOAT, 0, 2, d2, &st2);
            if (ds < 0) loom_error_set(st, "%s", keep);
            else st = LOOM_OK;
        }
    } else {
        ds = open_ds(c, name, H5T_FLOAT, 0, 2, d2, &st);
    }
    if (ds < 0) return st;
    if ((st = read_ds(c, ds, name, H5T_NATIVE_FLOAT, x)) != LOOM_OK) return st;
    size_t n = (size_t)(rows ? rows : 1) * cols;
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return err(c, LOOM_EFORMAT, name, " holds non-finite values%s", "");
    return LOOM_OK;
}

loom_status loom_ckpt_read_i64(loom_ckpt *c, const char *name, int64_t *x, size_t n)
{
    loom_status st = loom_ckpt_readable(c, "ckpt_read_i64", name, "name");
    if (st != LOOM_OK) return st;
    if (!x) return LOOM_NULL_ARG("ckpt_read_i64", "data"); /* n 0 reads a scalar into x[0] */
    hsize_t d[1] = {n};
    hid_t ds = open_ds(c, name, H5T_INTEGER, 0, n ? 1 : 0, d, &st);
    return ds < 0 ? st : read_ds(c, ds, name, H5T_NATIVE_INT64, x);
}

loom_status loom_ckpt_read_bytes(loom_ckpt *c, const char *name, unsigned char *x, size_t cap, size_t *n)
{
    loom_status st = loom_ckpt_readable(c, "ckpt_read_bytes", name, "name");
    if (st != LOOM_OK) return st;
    if (!x && cap) return LOOM_NULL_ARG("ckpt_read_bytes", "data");
    if (!n) return LOOM_NULL_ARG("ckpt_read_bytes", "count");
    if (!loom_ckpt_has(c, name)) return err(c, LOOM_EFORMAT, name, " is missing%s", "");
    hid_t ds = H5Dopen2(c->file, name, H5P_DEFAULT);
    hid_t sp = ds < 0 ? -1 : H5Dget_space(ds);
    hssize_t cnt = sp < 0 ? -1 : H5Sget_simple_extent_npoints(sp);
    if (sp >= 0) H5Sclose(sp);
    if (ds >= 0) H5Dclose(ds);
    if (cnt < 0 || (size_t)cnt > cap) return err(c, LOOM_EFORMAT, name, " has the wrong size (more than %s bytes, or unreadable)", "the expected");
    hsize_t d[1] = {(hsize_t)cnt};
    ds = open_ds(c, name, H5T_INTEGER, 1, 1, d, &st);
    if (ds < 0) return st;
    *n = (size_t)cnt;
    return read_ds(c, ds, name, H5T_NATIVE_UCHAR, x);
}

loom_status loom_ckpt_read_str(loom_ckpt *c, const char *name, char *buf, size_t cap)
{
    loom_status st = loom_ckpt_readable(c, "ckpt_read_str", name, "name");
    if (st != LOOM_OK) return st;
    if (!buf) return LOOM_NULL_ARG("ckpt_read_str", "buffer");
    hid_t ds = open_ds(c, name, H5T_STRING, 0, 0, NULL, &st);
    if (ds < 0) return st;
    hid_t ft = H5Dget_type(ds);
    int vlen = H5Tis_variable_str(ft) > 0;
    size_t size = H5Tget_size(ft);
    H5T_cset_t cset = H5Tget_cset(ft); /* h5py writes UTF-8; HDF5 will not convert between character sets */
    H5Tclose(ft);
    hid_t mt = H5Tcopy(H5T_C_S1);
    H5Tset_cset(mt, cset);
    if (vlen) {
        char *s = NULL;
        H5Tset_size(mt, H5T_VARIABLE);
        st = read_ds(c, ds, name, mt, &s);
        if (st == LOOM_OK) {
            if (!s || strlen(s) >= cap) st = err(c, LOOM_EFORMAT, name, " is too long%s", "");
            else strcpy(buf, s);
        }
        if (s) H5free_memory(s);
    } else if (size + 1 > cap || size == 0) {
        H5Dclose(ds);
        st = err(c, LOOM_EFORMAT, name, " is too long%s", "");
    } else {
        H5Tset_size(mt, size + 1);
        st = read_ds(c, ds, name, mt, buf);
    }
    H5Tclose(mt);
    if (st == LOOM_OK) { /* fixed strings written with padding: trim */
        size_t n = strlen(buf);
        while (n && buf[n - 1] == ' ') buf[--n] = '\0';
    }
    return st;
}

loom_status loom_ckpt_read_params(loom_ckpt *c, const char *group, loom_params *ps)
{
    loom_status st = loom_ckpt_readable(c, "ckpt_read_params", group, "group");
    if (st != LOOM_OK) return st;
    if (!ps) return LOOM_NULL_ARG("ckpt_read_params", "params");
    if (!loom_params_data(ps) && loom_params_size(ps))
        return loom_error_set(LOOM_ESTATE, "ckpt_read_params: %s: the parameters are not allocated", group);
    for (int i = 0; i < loom_params_count(ps); i++) {
        loom_tensor *v = loom_params_view(ps, i);
        char name[512];
        if (snprintf(name, sizeof name, "%s/%s", group, loom_params_name(ps, i)) >= (int)sizeof name)
            return loom_error_set(LOOM_EARG, "ckpt_read_params: %s/%s: the name is too long", group,
                                  loom_params_name(ps, i));
        st = loom_ckpt_read_floats(c, name, v->data, v->rows, v->cols);
        if (st != LOOM_OK) return st;
    }
    return LOOM_OK;
}

/* "group/leaf" into name (room checked by the callers' length test). */
static void child(char *name, size_t n, const char *group, const char *leaf) { snprintf(name, n, "%s/%s", group, leaf); }

loom_status loom_ckpt_read_optim_config(loom_ckpt *c, const char *group, loom_optim_config *cfg)
{
    char name[512], kind[32];
    float hyper[8];
    loom_status st = loom_ckpt_readable(c, "ckpt_read_optim_config", group, "group");
    if (st != LOOM_OK) return st;
    if (!cfg) return LOOM_NULL_ARG("ckpt_read_optim_config", "config");
    if (strlen(group) + 16 > sizeof name) /* room for "/hyper" and the like */
        return loom_error_set(LOOM_EARG, "ckpt_read_optim_config: group %s is too long", group);
    child(name, sizeof name, group, "kind");
    if ((st = loom_ckpt_read_str(c, name, kind, sizeof kind)) != LOOM_OK) return st;
    loom_optim_config k;
    if (loom_optim_parse(kind, &k.kind) != LOOM_OK) return err(c, LOOM_EFORMAT, name, " names an unknown optimizer '%s'", kind);
    child(name, sizeof name, group, "hyper");
    if ((st = loom_ckpt_read_floats(c, name, hyper, 0, 8)) != LOOM_OK) return st;
    k.lr = hyper[0], k.momentum = hyper[1], k.nesterov = hyper[2] != 0.0f, k.beta1 = hyper[3];
    k.beta2 = hyper[4], k.eps = hyper[5], k.alpha = hyper[6], k.weight_decay = hyper[7];
    if (loom_optim_check(k) != LOOM_OK) return err(c, LOOM_EFORMAT, name, ": %s", loom_error_message());
    *cfg = k;
    return LOOM_OK;
}

loom_status loom_ckpt_read_optim(loom_ckpt *c, const char *group, loom_optim *o)
{
    char name[512];
    int64_t step;
    loom_optim_config file;
    loom_status st = loom_ckpt_readable(c, "ckpt_read_optim", group, "group");
    if (st != LOOM_OK) return st;
    if (!o) return LOOM_NULL_ARG("ckpt_read_optim", "optimizer");
    if (o->n && (!o->m || !o->v))
        return loom_error_set(LOOM_ESTATE, "ckpt_read_optim: %s: the optimizer is not initialised (loom_optim_init)",
                              group);
    if (o->n > INT_MAX) /* a dataset's sizes are int */
        return loom_error_set(LOOM_EARG, "ckpt_read_optim: %s: %zu values do not fit one dataset (at most %d)", group, o->n,
                              INT_MAX);
    if ((st = loom_ckpt_read_optim_config(c, group, &file)) != LOOM_OK) return st;
    child(name, sizeof name, group, "kind");
    if (file.kind != o->cfg.kind) {
        char why[128];
        snprintf(why, sizeof why, "'%s', but the run uses %s: their states do not carry over", loom_optim_name(file.kind),
                 loom_optim_name(o->cfg.kind));
        return err(c, LOOM_EFORMAT, name, " is %s", why);
    }
    child(name, sizeof name, group, "step");
    if ((st = loom_ckpt_read_i64(c, name, &step, 0)) != LOOM_OK) return st;
    if (step < 0 || step > (int64_t)1 << 53) return err(c, LOOM_EFORMAT, name, " is %s", step < 0 ? "negative" : "beyond 2^53");
    child(name, sizeof name, group, "m");
    if ((st = loom_ckpt_read_floats(c, name, o->m, 0, (int)o->n)) != LOOM_OK) return st;
    child(name, sizeof name, group, "v");
    if ((st = loom_ckpt_read_floats(c, name, o->v, 0, (int)o->n)) != LOOM_OK) return st;
    o->step = (long)step;
    return LOOM_OK;
}

loom_status loom_ckpt_read_rng(loom_ckpt *c, const char *name, loom_rng *r)
{
    loom_status st = loom_ckpt_readable(c, "ckpt_read_rng", name, "name");
    if (st != LOOM_OK) return st;
    if (!r) return LOOM_NULL_ARG("ckpt_read_rng", "rng");
    hsize_t d[1] = {2};
    uint64_t s[2];
    hid_t ds = open_ds(c, name, H5T_INTEGER, 8, 1, d, &st);
    if (ds < 0 || (st = read_ds(c, ds, name, H5T_NATIVE_UINT64, s)) != LOOM_OK) return st;
    r->seed = s[0];
    r->counter = s[1];
    return LOOM_OK;
}
