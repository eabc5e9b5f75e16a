/* Writing checkpoints: checksummed datasets built in memory, written to a temporary file,
 * then an atomic rename with fsyncs around it; stale temporaries of dead processes removed. */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <omp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
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

/* Why the HDF5 call that just failed failed: an errno recorded in HDF5's error stack (its
 * file drivers write "..., errno = 28, error message = '...'", which later cleanup inside
 * HDF5 cannot overwrite); failing that, errno as the call left it (callers zero it first,
 * and the in-memory file's allocations set ENOMEM); failing that, the innermost HDF5
 * message. Call it before any other HDF5 call, which clears the stack. */
typedef struct h5_cause {
    int err;
    char msg[256];
} h5_cause;

static herr_t cause_walk(unsigned n, const H5E_error2_t *e, void *data)
{
    h5_cause *c = data;
    if (!e->desc) return 0;
    if (n == 0) snprintf(c->msg, sizeof c->msg, "%s", e->desc); /* upward: 0 is the innermost */
    const char *p = NULL;
    for (const char *q = e->desc; (q = strstr(q, "errno = ")) != NULL; q++) p = q; /* the last one */
    if (p && !c->err) {
        long v = strtol(p + 8, NULL, 10);
        if (v > 0 && v < INT_MAX) c->err = (int)v;
    }
    return 0;
}

static const char *h5_why(char *buf, size_t n)
{
    int saved = errno;
    h5_cause c = {0, ""};
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, cause_walk, &c);
    if (!c.err) c.err = saved;
    if (c.err) snprintf(buf, n, "%s", strerror(c.err));
    else snprintf(buf, n, "HDF5: %s", c.msg[0] ? c.msg : "unknown error");
    errno = saved;
    return buf;
}

/* The error of a failed write, flush or close of the temporary file: it names the
 * checkpoint, what failed, the temporary file and the cause; the file is removed by
 * commit or abort. */
static loom_status write_fail(loom_ckpt *c, const char *what, const char *name)
{
    char why[300];
    h5_why(why, sizeof why);
    return loom_error_set(LOOM_EIO, "checkpoint %s: %s%s%s%s %s failed: %s (%s is left as it was)", c->path, what,
                          name ? " " : "", name ? name : "", name ? " in" : "", c->tmp, why, c->path);
}

/* The error of a failed system call on the temporary file or the directory (errno e). */
static loom_status sys_fail(loom_ckpt *c, const char *what, const char *file, const char *after, int e, int kept)
{
    return loom_error_set(LOOM_EIO, "checkpoint %s: %s %s%s failed: %s%s%s%s", c->path, what, file, after, strerror(e),
                          kept ? " (" : "", kept ? c->path : "", kept ? " is left as it was)" : "");
}

/* Removes path.tmp.<pid> files in path's directory whose process no longer exists: saves
 * killed mid-write. The file of a live process (another job or rank writing now, or a pid
 * reused since) stays, as does every other file. Only this host's processes are visible, so a
 * directory written from several hosts at once under one name is not supported anyway. */
static void remove_stale_tmps(const char *path)
{
    char dirbuf[4096], basebuf[4096], prefix[4200];
    snprintf(dirbuf, sizeof dirbuf, "%s", path);
    snprintf(basebuf, sizeof basebuf, "%s", path);
    const char *dir = dirname(dirbuf), *base = basename(basebuf);
    size_t pl = (size_t)snprintf(prefix, sizeof prefix, "%s.tmp.", base);
    if (pl >= sizeof prefix) return;
    int saved = errno;
    DIR *d = opendir(dir);
    if (!d) {
        errno = saved;
        return;
    }
    long self = (long)getpid();
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        const char *s = e->d_name + pl, *p = s;
        if (strncmp(e->d_name, prefix, pl) != 0 || !*s || *s == '0') continue;
        while (*p >= '0' && *p <= '9') p++;
        if (*p || p - s > 9) continue; /* digits only, a pid's worth */
        long pid = strtol(s, NULL, 10);
        if (pid == self) continue;
        if (kill((pid_t)pid, 0) == -1 && errno == ESRCH) unlinkat(dirfd(d), e->d_name, 0);
    }
    closedir(d);
    errno = saved;
}

/* HDF5 writes the checkpoint into memory (the core driver, no backing store), and commit
 * writes that image to the temporary file with plain write(2)s. A write that fails (full disk,
 * quota, size limit, I/O error) is then one system call with its errno, and never an HDF5
 * file that cannot be closed: HDF5 1.10 keeps a file whose close failed and crashes closing
 * it again at exit. The file image callbacks let loom own the buffer: at close, once HDF5 has
 * written the final superblock and metadata into it, it is kept rather than freed. */
typedef struct image_cap {
    void *mem;  /* the core driver's buffer */
    size_t cap; /* its size (at least the file's end of address) */
    int closed; /* HDF5 has closed the file and handed the buffer over */
    int fd;     /* the temporary file, created at once so a directory that takes no file fails fast */
} image_cap;

static void *image_malloc(size_t n, H5FD_file_image_op_t op, void *udata)
{
    image_cap *k = udata;
    void *p = malloc(n ? n : 1);
    if (p && (op == H5FD_FILE_IMAGE_OP_FILE_OPEN || op == H5FD_FILE_IMAGE_OP_FILE_RESIZE)) k->mem = p, k->cap = n;
    return p;
}

static void *image_memcpy(void *dst, const void *src, size_t n, H5FD_file_image_op_t op, void *udata)
{
    (void)op, (void)udata;
    return memcpy(dst, src, n);
}

static void *image_realloc(void *p, size_t n, H5FD_file_image_op_t op, void *udata)
{
    image_cap *k = udata;
    void *q = realloc(p, n ? n : 1);
    if (q && (p == k->mem || !k->mem) && op == H5FD_FILE_IMAGE_OP_FILE_RESIZE) k->mem = q, k->cap = n;
    return q;
}

static herr_t image_free(void *p, H5FD_file_image_op_t op, void *udata)
{
    image_cap *k = udata;
    if (p && p == k->mem && op == H5FD_FILE_IMAGE_OP_FILE_CLOSE) {
        k->closed = 1; /* ours now */
        return 0;
    }
    if (p && p == k->mem) k->mem = NULL, k->cap = 0;
    free(p);
    return 0;
}

/* One image_cap per checkpoint, owned by loom: property-list copies share it. */
static void *image_udata_copy(void *udata) { return udata; }
static herr_t image_udata_free(void *udata)
{
    (void)udata;
    return 0;
}

/* Takes the image of a checkpoint being written (NULL if there is none). */
static image_cap *image_take(loom_ckpt *c)
{
    image_cap *k = c->image;
    c->image = NULL;
    return k;
}

/* Writes n bytes of buf to fd (short writes continued); 0, or -1 with errno set. */
static int write_all(int fd, const unsigned char *buf, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, buf, n > ((size_t)1 << 30) ? (size_t)1 << 30 : n);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) return -1;
        if (w == 0) return errno = EIO, -1;
        buf += w;
        n -= (size_t)w;
    }
    return 0;
}

/* The file's length: the end-of-address field of the superblock (version 2 or 3, which the
 * latest format writes: 8-byte signature, version, offset and length sizes, flags, then the
 * base, extension and end-of-file addresses), or all of the buffer if it is not that. HDF5's
 * own POSIX driver sets a file to this length when it closes it. */
static uint64_t image_length(const image_cap *k)
{
    const unsigned char *m = k->mem;
    static const unsigned char sig[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
    if (k->cap < 48 || memcmp(m, sig, 8) != 0 || (m[8] != 2 && m[8] != 3) || m[9] != 8) return k->cap;
    uint64_t eoa = 0;
    for (int i = 7; i >= 0; i--) eoa = eoa << 8 | m[12 + 2 * 8 + i]; /* little-endian */
    return eoa >= 48 && eoa < ((uint64_t)1 << 62) ? eoa : k->cap;
}

/* Writes the image to the temporary file: its bytes, then zeros (a hole) up to the end of
 * address if HDF5 allocated space there that it never wrote. 0, or -1 with errno set. */
static int image_write(const image_cap *k)
{
    uint64_t n = image_length(k);
    if (write_all(k->fd, k->mem, n < k->cap ? (size_t)n : k->cap) != 0) return -1;
    if (n > k->cap && ftruncate(k->fd, (off_t)n) != 0) return -1;
    return 0;
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
    remove_stale_tmps(path);
    loom_ckpt *c = loom_calloc(1, sizeof *c);
    if (!c) return NULL;
    c->writing = 1;
    c->world_size = 1;
    c->threads = omp_get_max_threads();
    snprintf(c->path, sizeof c->path, "%s", path);
    snprintf(c->tmp, sizeof c->tmp, "%s.tmp.%ld", path, (long)getpid());
    /* The newest file format checksums its metadata, so corruption is detected, not trusted.
     * HDF5 builds the file in memory (see image_cap) and commit writes it out. */
    image_cap *cap = loom_calloc(1, sizeof *cap);
    if (!cap) {
        loom_free(c);
        return NULL;
    }
    cap->fd = open(c->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (cap->fd < 0) {
        loom_error_set(LOOM_EIO, "checkpoint %s: cannot create temporary file %s: %s", path, c->tmp, strerror(errno));
        loom_free(cap);
        loom_free(c);
        return NULL;
    }
    H5FD_file_image_callbacks_t cb = {image_malloc, image_memcpy, image_realloc, image_free, image_udata_copy,
                                      image_udata_free, cap};
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    H5Pset_libver_bounds(fapl, H5F_LIBVER_LATEST, H5F_LIBVER_LATEST);
    errno = 0;
    if (fapl < 0 || H5Pset_fapl_core(fapl, (size_t)1 << 20, 0) < 0 || H5Pset_file_image_callbacks(fapl, &cb) < 0)
        c->file = -1;
    else
        c->file = H5Fcreate(c->tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    if (c->file < 0) {
        char why[300];
        h5_why(why, sizeof why);
        if (fapl >= 0) H5Pclose(fapl);
        close(cap->fd);
        unlink(c->tmp);
        if (cap->closed) free(cap->mem);
        loom_free(cap);
        loom_error_set(LOOM_EIO, "checkpoint %s: cannot create temporary file %s: %s", path, c->tmp, why);
        loom_free(c);
        return NULL;
    }
    H5Pclose(fapl);
    c->image = cap;
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
    /* Each call that can write is checked, and the cause taken before the next HDF5 call
     * clears it: H5Dclose writes the chunk that H5Dwrite left in the chunk cache. */
    loom_status st = LOOM_OK;
    errno = 0;
    hid_t ds = H5Dcreate2(c->file, name, file_type, space, lcpl, dcpl, H5P_DEFAULT);
    if (ds < 0) st = write_fail(c, "creating dataset", name);
    errno = 0;
    if (st == LOOM_OK && !empty && H5Dwrite(ds, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0)
        st = write_fail(c, "writing dataset", name);
    errno = 0;
    if (ds >= 0 && H5Dclose(ds) < 0 && st == LOOM_OK) st = write_fail(c, "writing dataset", name);
    H5Pclose(dcpl);
    H5Pclose(lcpl);
    H5Sclose(space);
    return st;
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
    if (o->n > INT_MAX) /* a dataset's sizes are int */
        return loom_error_set(LOOM_EARG, "ckpt_write_optim: %s: %zu values do not fit one dataset (at most %d)", group, o->n,
                              INT_MAX);
    const loom_optim_config *k = &o->cfg;
    float hyper[8] = {k->lr, k->momentum, (float)k->nesterov, k->beta1, k->beta2, k->eps, k->alpha, k->weight_decay};
    int64_t step = o->step;
    snprintf(name, sizeof name, "%s/kind", group);
    if ((st = loom_ckpt_write_str(c, name, loom_optim_name(k->kind))) != LOOM_OK) return st;
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
    if (a >= 0 && H5Aclose(a) < 0) st = -1;
    H5Sclose(space);
    return st;
}

void loom_ckpt_abort(loom_ckpt *c)
{
    if (!c) return;
    int saved = errno; /* a caller reporting the failure that led here still has its errno */
    image_cap *k = image_take(c);
    if (c->file >= 0) H5Fclose(c->file);
    if (c->writing) unlink(c->tmp); /* one opened for reading has no temporary file */
    if (k) {
        close(k->fd);
        if (k->closed) free(k->mem);
        loom_free(k);
    }
    loom_free(c);
    errno = saved;
}

loom_status loom_ckpt_commit(loom_ckpt *c)
{
    if (!c) return LOOM_NULL_ARG("ckpt_commit", "checkpoint");
    if (!c->writing) /* left open: the caller still owns it and closes it */
        return loom_error_set(LOOM_ESTATE, "ckpt_commit: checkpoint %s is open for reading: close it (loom_ckpt_close)",
                              c->path);
    /* HDF5 completes the file in memory at close; the image goes to the temporary file with
     * plain writes, then fsync, rename and an fsync of the directory. Every step that can meet
     * a full disk, a quota, a size limit or an I/O error is checked and named with its cause;
     * until the rename, path keeps the previous checkpoint, and on any failure the temporary
     * file is removed. */
    loom_status st = LOOM_OK;
    image_cap *k = image_take(c);
    errno = 0;
    if (write_attr_int(c->file, "format_version", LOOM_CKPT_FORMAT) < 0 || write_attr_int(c->file, "world_size", c->world_size) < 0 ||
        write_attr_int(c->file, "threads", c->threads) < 0)
        st = write_fail(c, "writing", "the root attributes");
    errno = 0;
    if (st == LOOM_OK && H5Fflush(c->file, H5F_SCOPE_GLOBAL) < 0) st = write_fail(c, "flushing", NULL);
    errno = 0;
    herr_t closed = H5Fclose(c->file); /* in memory: finishes the image, writes no file */
    c->file = -1;
    if (st == LOOM_OK && closed < 0) st = write_fail(c, "closing", NULL);
    if (st == LOOM_OK && (!k || !k->closed || !k->mem))
        st = loom_error_set(LOOM_EIO, "checkpoint %s: HDF5 did not hand over the image of %s (%s is left as it was)", c->path,
                            c->tmp, c->path);
    /* Data on disk before the name points at it; the name on disk before we return. */
    if (st == LOOM_OK && image_write(k) != 0) st = sys_fail(c, "writing", c->tmp, "", errno, 1);
    if (st == LOOM_OK && fsync(k->fd) != 0) st = sys_fail(c, "fsync of", c->tmp, "", errno, 1);
    if (k) {
        if (close(k->fd) != 0 && st == LOOM_OK) st = sys_fail(c, "closing", c->tmp, "", errno, 1);
        if (k->closed) free(k->mem);
        loom_free(k);
    }
    if (st == LOOM_OK && rename(c->tmp, c->path) != 0) st = sys_fail(c, "renaming", c->tmp, " over it", errno, 1);
    if (st == LOOM_OK) {
        /* Renamed: path is the new checkpoint, but the rename may not survive a power cut. */
        char dir[4096];
        dir_of(c->path, dir, sizeof dir);
        int fd = open(dir, O_RDONLY | O_DIRECTORY);
        if (fd < 0 || fsync(fd) != 0) st = sys_fail(c, "fsync of directory", dir, "", errno, 0);
        if (fd >= 0) close(fd);
    }
    if (st != LOOM_OK) unlink(c->tmp);
    loom_free(c);
    return st;
}
