/* Writing checkpoints: a temporary file, checksummed datasets, then an atomic
 * rename with fsyncs around it. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <omp.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

void loom_io_quiet(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

static void dir_of(const char *path, char *dir, size_t n)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s", path);
    snprintf(dir, n, "%s", dirname(tmp));
}

loom_ckpt *loom_ckpt_create(const char *path)
{
    if (!path) return LOOM_NULL_ARG("ckpt_create", "path"), NULL;
    if (!path[0]) return loom_error_set(LOOM_EARG, "ckpt_create: path is empty"), NULL;
    if (strlen(path) + 32 > sizeof ((loom_ckpt *)0)->tmp) /* room for ".tmp.<pid>" */
        return loom_error_set(LOOM_EARG, "ckpt_create: path of %zu characters is too long", strlen(path)), NULL;
    loom_io_quiet();
    char dir[4096];
    dir_of(path, dir, sizeof dir);
    if (access(dir, W_OK) != 0) {
        loom_error_set(LOOM_EIO, "checkpoint %s: directory %s is not writable: %s", path, dir, strerror(errno));
        return NULL;
    }
    loom_ckpt *c = loom_calloc(1, sizeof *c);
    if (!c) return NULL;
    c->writing = 1;
    c->world_size = 1;
    c->threads = omp_get_max_threads();
    snprintf(c->path, sizeof c->path, "%s", path);
    snprintf(c->tmp, sizeof c->tmp, "%s.tmp.%ld", path, (long)getpid());
    /* The newest file format checksums its metadata, so corruption is detected, not trusted. */
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    H5Pset_libver_bounds(fapl, H5F_LIBVER_LATEST, H5F_LIBVER_LATEST);
    c->file = H5Fcreate(c->tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    H5Pclose(fapl);
    if (c->file < 0) {
        loom_error_set(LOOM_EIO, "checkpoint %s: cannot create temporary file %s: %s", path, c->tmp,
                       errno ? strerror(errno) : "HDF5 error");
        loom_free(c);
        return NULL;
    }
    return c;
}

void loom_ckpt_set_world(loom_ckpt *c, int world_size, int threads)
{
    if (!c || world_size < 1 || threads < 0) { /* void: the message is all it can leave */
        if (!c) LOOM_NULL_ARG("ckpt_set_world", "checkpoint");
        else loom_error_set(LOOM_EARG, "ckpt_set_world: world size %d or threads %d out of range", world_size, threads);
        return;
    }
    c->world_size = world_size;
    c->threads = threads;
}

loom_status loom_ckpt_writable(loom_ckpt *c, const char *fn, const char *name, const char *label)
{
    if (!c) return loom_error_set(LOOM_EARG, "%s: checkpoint is NULL", fn);
    if (!c->writing)
        return loom_error_set(LOOM_ESTATE, "%s: checkpoint %s is open for reading, not writing", fn, c->path);
    if (!name) return loom_error_set(LOOM_EARG, "%s: %s is NULL", fn, label);
    return LOOM_OK;
}

static loom_status fail(loom_ckpt *c, const char *name, const char *what)
{
    return loom_error_set(LOOM_EIO, "checkpoint %s: %s %s failed", c->path, what, name);
}

/* Creates a dataset of type `file_type` and shape dims (rank 0: scalar), checksummed when not scalar. */
static loom_status write_ds(loom_ckpt *c, const char *name, hid_t file_type, hid_t mem_type, int rank,
                            const hsize_t *dims, const void *data)
{
    hid_t space = rank ? H5Screate_simple(rank, dims, NULL) : H5Screate(H5S_SCALAR);
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE), dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    int empty = 0;
    for (int i = 0; i < rank; i++) empty |= dims[i] == 0;
    if (rank && !empty) {
        H5Pset_chunk(dcpl, rank, dims);
        H5Pset_fletcher32(dcpl);
    }
    hid_t ds = H5Dcreate2(c->file, name, file_type, space, lcpl, dcpl, H5P_DEFAULT);
    herr_t st = ds < 0 ? -1 : empty ? 0 : H5Dwrite(ds, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data);
    if (ds >= 0) H5Dclose(ds);
    H5Pclose(dcpl);
    H5Pclose(lcpl);
    H5Sclose(space);
    return st < 0 ? fail(c, name, "writing dataset") : LOOM_OK;
}

loom_status loom_ckpt_write_floats(loom_ckpt *c, const char *name, const float *x, int rows, int cols)
{
    loom_status st = loom_ckpt_writable(c, "ckpt_write_floats", name, "name");
    if (st != LOOM_OK) return st;
    if (rows < 0 || cols < 0)
        return loom_error_set(LOOM_EARG, "ckpt_write_floats: %s: shape [%d x %d] is negative", name, rows, cols);
    if (!x && cols > 0) return LOOM_NULL_ARG("ckpt_write_floats", "data"); /* no values: NULL is fine */
    hsize_t dims[2] = {(hsize_t)(rows ? rows : cols), (hsize_t)cols};
    return write_ds(c, name, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, rows ? 2 : 1, dims, x);
}

loom_status loom_ckpt_write_i64(loom_ckpt *c, const char *name, const int64_t *x, size_t n)
{
    loom_status st = loom_ckpt_writable(c, "ckpt_write_i64", name, "name");
    if (st != LOOM_OK) return st;
    if (!x) return LOOM_NULL_ARG("ckpt_write_i64", "data"); /* n 0 reads x[0] */
    hsize_t dims[1] = {n};
    return write_ds(c, name, H5T_STD_I64LE, H5T_NATIVE_INT64, n ? 1 : 0, dims, x);
}

loom_status loom_ckpt_write_bytes(loom_ckpt *c, const char *name, const unsigned char *x, size_t n)
{
    loom_status st = loom_ckpt_writable(c, "ckpt_write_bytes", name, "name");
    if (st != LOOM_OK) return st;
    if (!x && n) return LOOM_NULL_ARG("ckpt_write_bytes", "data");
    hsize_t dims[1] = {n};
    return write_ds(c, name, H5T_STD_U8LE, H5T_NATIVE_UCHAR, 1, dims, x);
}

loom_status loom_ckpt_write_str(loom_ckpt *c, const char *name, const char *s)
{
    loom_status ok = loom_ckpt_writable(c, "ckpt_write_str", name, "name");
    if (ok != LOOM_OK) return ok;
    if (!s) return LOOM_NULL_ARG("ckpt_write_str", "string");
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, strlen(s) ? strlen(s) : 1);
    H5Tset_strpad(t, H5T_STR_NULLPAD);
    loom_status st = write_ds(c, name, t, t, 0, NULL, strlen(s) ? s : " ");
    H5Tclose(t);
    return st;
}

loom_status loom_ckpt_write_params(loom_ckpt *c, const char *group, loom_params *ps)
{
    loom_status st = loom_ckpt_writable(c, "ckpt_write_params", group, "group");
    if (st != LOOM_OK) return st;
    if (!ps) return LOOM_NULL_ARG("ckpt_write_params", "params");
    if (!loom_params_data(ps) && loom_params_size(ps))
        return loom_error_set(LOOM_ESTATE, "ckpt_write_params: %s: the parameters are not allocated", group);
    for (int i = 0; i < loom_params_count(ps); i++) {
        loom_tensor *v = loom_params_view(ps, i);
        char name[512];
        if (snprintf(name, sizeof name, "%s/%s", group, loom_params_name(ps, i)) >= (int)sizeof name)
            return loom_error_set(LOOM_EARG, "ckpt_write_params: %s/%s: the name is too long", group,
                                  loom_params_name(ps, i));
        st = loom_ckpt_write_floats(c, name, v->data, v->rows == 1 ? 0 : v->rows, v->cols);
        if (st != LOOM_OK) return st;
    }
    return LOOM_OK;
}

static const char *OPTIM_NAMES[] = {"sgd", "adam", "adamw", "rmsprop", "adagrad"};

loom_status loom_ckpt_write_optim(loom_ckpt *c, const char *group, const loom_optim *o)
{
    loom_status st = loom_ckpt_writable(c, "ckpt_write_optim", group, "group");
    if (st != LOOM_OK) return st;
    if (!o) return LOOM_NULL_ARG("ckpt_write_optim", "optimizer");
    if ((unsigned)o->cfg.kind > LOOM_ADAGRAD || (o->n && (!o->m || !o->v)))
        return loom_error_set(LOOM_ESTATE, "ckpt_write_optim: %s: the optimizer is not initialised (loom_optim_init)",
                              group);
    char name[512];
    if (strlen(group) + 16 > sizeof name) /* room for "/hyper" and the like */
        return loom_error_set(LOOM_EARG, "ckpt_write_optim: group %s is too long", group);
    const loom_optim_config *k = &o->cfg;
    float hyper[8] = {k->lr, k->momentum, (float)k->nesterov, k->beta1, k->beta2, k->eps, k->alpha, k->weight_decay};
    int64_t step = o->step;
    snprintf(name, sizeof name, "%s/kind", group);
    if ((st = loom_ckpt_write_str(c, name, OPTIM_NAMES[k->kind])) != LOOM_OK) return st;
    snprintf(name, sizeof name, "%s/hyper", group); /* lr momentum nesterov beta1 beta2 eps alpha weight_decay */
    if ((st = loom_ckpt_write_floats(c, name, hyper, 0, 8)) != LOOM_OK) return st;
    snprintf(name, sizeof name, "%s/step", group);
    if ((st = loom_ckpt_write_i64(c, name, &step, 0)) != LOOM_OK) return st;
    snprintf(name, sizeof name, "%s/m", group);
    if ((st = loom_ckpt_write_floats(c, name, o->m, 0, (int)o->n)) != LOOM_OK) return st;
    snprintf(name, sizeof name, "%s/v", group);
    return loom_ckpt_write_floats(c, name, o->v, 0, (int)o->n);
}

loom_status loom_ckpt_write_rng(loom_ckpt *c, const char *name, const loom_rng *r)
{
    loom_status st = loom_ckpt_writable(c, "ckpt_write_rng", name, "name");
    if (st != LOOM_OK) return st;
    if (!r) return LOOM_NULL_ARG("ckpt_write_rng", "rng");
    uint64_t s[2] = {r->seed, r->counter};
    hsize_t dims[1] = {2};
    return write_ds(c, name, H5T_STD_U64LE, H5T_NATIVE_UINT64, 1, dims, s);
}

static herr_t write_attr_int(hid_t obj, const char *name, int v)
{
    hid_t space = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(obj, name, H5T_STD_I32LE, space, H5P_DEFAULT, H5P_DEFAULT);
    herr_t st = a < 0 ? -1 : H5Awrite(a, H5T_NATIVE_INT, &v);
    if (a >= 0) H5Aclose(a);
    H5Sclose(space);
    return st;
}

void loom_ckpt_abort(loom_ckpt *c)
{
    if (!c) return;
    if (c->file >= 0) H5Fclose(c->file);
    if (c->writing) unlink(c->tmp); /* one opened for reading has no temporary file */
    loom_free(c);
}

loom_status loom_ckpt_commit(loom_ckpt *c)
{
    if (!c) return LOOM_NULL_ARG("ckpt_commit", "checkpoint");
    if (!c->writing) /* left open: the caller still owns it and closes it */
        return loom_error_set(LOOM_ESTATE, "ckpt_commit: checkpoint %s is open for reading: close it (loom_ckpt_close)",
                              c->path);
    loom_status st = LOOM_OK;
    if (write_attr_int(c->file, "format_version", LOOM_CKPT_FORMAT) < 0 || write_attr_int(c->file, "world_size", c->world_size) < 0 ||
        write_attr_int(c->file, "threads", c->threads) < 0)
        st = fail(c, "root attributes", "writing");
    if (st == LOOM_OK && H5Fflush(c->file, H5F_SCOPE_GLOBAL) < 0) st = fail(c, c->tmp, "flushing");
    herr_t closed = H5Fclose(c->file);
    c->file = -1;
    if (st == LOOM_OK && closed < 0) st = fail(c, c->tmp, "closing");
    if (st == LOOM_OK) {
        /* Data on disk before the name points at it; the name on disk before we return. */
        int fd = open(c->tmp, O_RDONLY);
        if (fd < 0 || fsync(fd) != 0) st = loom_error_set(LOOM_EIO, "checkpoint %s: fsync of %s failed: %s", c->path, c->tmp, strerror(errno));
        if (fd >= 0) close(fd);
    }
    if (st == LOOM_OK && rename(c->tmp, c->path) != 0)
        st = loom_error_set(LOOM_EIO, "checkpoint %s: renaming %s over it failed: %s", c->path, c->tmp, strerror(errno));
    if (st == LOOM_OK) {
        char dir[4096];
        dir_of(c->path, dir, sizeof dir);
        int fd = open(dir, O_RDONLY | O_DIRECTORY);
        if (fd < 0 || fsync(fd) != 0) st = loom_error_set(LOOM_EIO, "checkpoint %s: fsync of directory %s failed: %s", c->path, dir, strerror(errno));
        if (fd >= 0) close(fd);
    }
    if (st != LOOM_OK) unlink(c->tmp);
    loom_free(c);
    return st;
}
