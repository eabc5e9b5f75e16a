/* HDF5 checkpoints: round trip, every kind of bad file, and a fuzz of a real one. */
#define _DEFAULT_SOURCE
#include <hdf5.h>
#include <string.h>
#include <unistd.h>

#include "helpers.h"
#include "loom_io.h"

typedef struct small {
    loom_params *ps;
    loom_seq seq;
    loom_optim opt;
} small;

static void small_init(small *s, int hidden, uint64_t seed)
{
    loom_cell c;
    loom_lstm_init(&c, 3, hidden, 0.0f);
    s->ps = loom_params_new();
    cr_assert_eq(loom_seq_init(&s->seq, &c, 1, 0.0f), LOOM_OK);
    cr_assert_eq(loom_seq_declare(&s->seq, s->ps, "lstm"), LOOM_OK);
    loom_rng r = loom_rng_init(seed);
    cr_assert_eq(loom_params_alloc(s->ps, &r), LOOM_OK);
    cr_assert_eq(loom_optim_init(&s->opt, loom_optim_defaults(LOOM_ADAM), loom_params_size(s->ps)), LOOM_OK);
    for (size_t i = 0; i < s->opt.n; i++) s->opt.m[i] = 0.001f * (float)i, s->opt.v[i] = 0.5f;
    s->opt.step = 7;
}

static void small_free(small *s)
{
    loom_optim_free(&s->opt);
    loom_params_free(s->ps);
}

static void save(small *s, const char *path)
{
    loom_ckpt *c = loom_ckpt_create(path);
    cr_assert_not_null(c, "%s", loom_error_message());
    loom_rng r = {42, 99};
    int64_t step = 7;
    cr_assert_eq(loom_ckpt_write_params(c, "/model", s->ps), LOOM_OK, "%s", loom_error_message());
    cr_assert_eq(loom_ckpt_write_optim(c, "/optimizer", &s->opt), LOOM_OK);
    cr_assert_eq(loom_ckpt_write_rng(c, "/rng/data", &r), LOOM_OK);
    cr_assert_eq(loom_ckpt_write_i64(c, "/train/step", &step, 0), LOOM_OK);
    cr_assert_eq(loom_ckpt_write_str(c, "/config/cell", "lstm"), LOOM_OK);
    cr_assert_eq(loom_ckpt_commit(c), LOOM_OK, "%s", loom_error_message());
}

/* Loads everything; returns the status (and checks the values when it succeeds). */
static loom_status load(const char *path, int hidden)
{
    small s;
    small_init(&s, hidden, 1234); /* different initial values */
    loom_ckpt *c = loom_ckpt_open(path);
    loom_status st = c ? LOOM_OK : LOOM_EFORMAT;
    loom_rng r;
    char cell[16];
    if (st == LOOM_OK) st = loom_ckpt_read_params(c, "/model", s.ps);
    if (st == LOOM_OK) st = loom_ckpt_read_optim(c, "/optimizer", &s.opt);
    if (st == LOOM_OK) st = loom_ckpt_read_rng(c, "/rng/data", &r);
    if (st == LOOM_OK) st = loom_ckpt_read_str(c, "/config/cell", cell, sizeof cell);
    loom_ckpt_close(c);
    if (st == LOOM_OK) {
        /* A load that succeeds gives finite values of the right shapes. */
        for (size_t i = 0; i < loom_params_size(s.ps); i++) cr_assert(isfinite(loom_params_data(s.ps)[i]));
    }
    small_free(&s);
    return st;
}

static char dir[256];
static const char *tmp(const char *name)
{
    static char buf[8][512];
    static int k;
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "/tmp/loom_ckpt_XXXXXX");
        cr_assert_not_null(mkdtemp(dir));
    }
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
}

Test(ckpt, round_trip_is_exact)
{
    small a, b;
    small_init(&a, 5, 1);
    small_init(&b, 5, 2);
    const char *p = tmp("rt.h5");
    save(&a, p);
    loom_ckpt *c = loom_ckpt_open(p);
    cr_assert_not_null(c, "%s", loom_error_message());
    cr_assert_eq(loom_ckpt_read_params(c, "/model", b.ps), LOOM_OK, "%s", loom_error_message());
    cr_assert_eq(loom_ckpt_read_optim(c, "/optimizer", &b.opt), LOOM_OK, "%s", loom_error_message());
    loom_rng r;
    cr_assert_eq(loom_ckpt_read_rng(c, "/rng/data", &r), LOOM_OK);
    int fmt, world, threads;
    loom_ckpt_info(c, &fmt, &world, &threads);
    loom_ckpt_close(c);
    cr_expect_eq(memcmp(loom_params_data(a.ps), loom_params_data(b.ps), loom_params_size(a.ps) * 4), 0);
    cr_expect_eq(memcmp(a.opt.m, b.opt.m, a.opt.n * 4), 0);
    cr_expect_eq(memcmp(a.opt.v, b.opt.v, a.opt.n * 4), 0);
    cr_expect_eq(b.opt.step, 7);
    cr_expect(r.seed == 42 && r.counter == 99);
    cr_expect(fmt == LOOM_CKPT_FORMAT && world == 1 && threads >= 1);
    cr_expect_eq(access(p, F_OK), 0);
    small_free(&a);
    small_free(&b);
}

#define EXPECT_ERR(st, needle)                                                                                     \
    do {                                                                                                           \
        cr_expect_neq(st, LOOM_OK);                                                                                \
        cr_expect(strstr(loom_error_message(), needle) != NULL, "message '%s' lacks '%s'", loom_error_message(), needle); \
    } while (0)

Test(ckpt, missing_file)
{
    EXPECT_ERR(load(tmp("nope.h5"), 5), "nope.h5: No such file");
}

Test(ckpt, not_hdf5)
{
    const char *p = tmp("text.h5");
    FILE *f = fopen(p, "w");
    fputs("this is not an HDF5 file\n", f);
    fclose(f);
    EXPECT_ERR(load(p, 5), "not an HDF5 file");
}

static void truncate_copy(const char *src, const char *dst, long keep)
{
    FILE *in = fopen(src, "rb"), *out = fopen(dst, "wb");
    for (long i = 0; i < keep; i++) {
        int ch = fgetc(in);
        if (ch == EOF) break;
        fputc(ch, out);
    }
    fclose(in);
    fclose(out);
}

Test(ckpt, truncated)
{
    small a;
    small_init(&a, 5, 1);
    const char *p = tmp("full.h5"), *q = tmp("trunc.h5");
    save(&a, p);
    FILE *f = fopen(p, "rb");
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fclose(f);
    truncate_copy(p, q, size / 2);
    loom_status st = load(q, 5);
    cr_expect_neq(st, LOOM_OK);
    cr_expect(strstr(loom_error_message(), "trunc.h5") != NULL, "%s", loom_error_message());
    small_free(&a);
}

Test(ckpt, other_architecture_size)
{
    small a;
    small_init(&a, 5, 1);
    const char *p = tmp("h5.h5");
    save(&a, p);
    EXPECT_ERR(load(p, 6), "/model/lstm.weight_ih_l0 has shape [20 x 3], expected [24 x 3]");
    small_free(&a);
}

/* Writes a file with loom's root attribute and one odd dataset, via HDF5 directly. */
static void write_odd(const char *path, int format, const char *ds_name, hid_t type, int rank, const hsize_t *dims)
{
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(f, "format_version", H5T_STD_I32LE, sp, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, H5T_NATIVE_INT, &format);
    H5Aclose(a);
    H5Sclose(sp);
    if (ds_name) {
        hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
        H5Pset_create_intermediate_group(lcpl, 1);
        hid_t s2 = H5Screate_simple(rank, dims, NULL);
        hid_t d = H5Dcreate2(f, ds_name, type, s2, lcpl, H5P_DEFAULT, H5P_DEFAULT);
        H5Dclose(d);
        H5Sclose(s2);
        H5Pclose(lcpl);
    }
    H5Fclose(f);
}

Test(ckpt, missing_dataset)
{
    hsize_t d[2] = {20, 3};
    const char *p = tmp("missing.h5");
    write_odd(p, 1, "/model/lstm.weight_ih_l0", H5T_IEEE_F32LE, 2, d);
    EXPECT_ERR(load(p, 5), "dataset /model/lstm.weight_hh_l0 is missing");
}

Test(ckpt, wrong_dtype)
{
    hsize_t d[2] = {20, 3};
    const char *p = tmp("dtype.h5");
    write_odd(p, 1, "/model/lstm.weight_ih_l0", H5T_STD_I32LE, 2, d);
    EXPECT_ERR(load(p, 5), "/model/lstm.weight_ih_l0 has type integer of 4 bytes");
}

Test(ckpt, wrong_shape)
{
    hsize_t d[3] = {20, 3, 1};
    const char *p = tmp("shape.h5");
    write_odd(p, 1, "/model/lstm.weight_ih_l0", H5T_IEEE_F32LE, 3, d);
    EXPECT_ERR(load(p, 5), "has shape [20 x 3 x 1], expected [20 x 3]");
}

Test(ckpt, newer_format_version)
{
    const char *p = tmp("newer.h5");
    write_odd(p, LOOM_CKPT_FORMAT + 1, NULL, 0, 0, NULL);
    EXPECT_ERR(load(p, 5), "format version 2; this loom reads versions 1 to 1 (written by a newer loom)");
}

Test(ckpt, not_a_loom_file)
{
    const char *p = tmp("plain.h5");
    hid_t f = H5Fcreate(p, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    H5Fclose(f);
    EXPECT_ERR(load(p, 5), "no readable format_version attribute");
}

Test(ckpt, unwritable_directory_fails_fast)
{
    cr_expect_null(loom_ckpt_create("/nonexistent/dir/ck.h5"));
    cr_expect(strstr(loom_error_message(), "directory /nonexistent/dir is not writable") != NULL, "%s", loom_error_message());
    cr_expect_null(loom_ckpt_create("/proc/loom_ck.h5"));
    cr_expect(strstr(loom_error_message(), "/proc/loom_ck.h5") != NULL, "%s", loom_error_message());
}

Test(ckpt, failed_save_keeps_the_old_file)
{
    small a;
    small_init(&a, 5, 1);
    const char *p = tmp("keep.h5");
    save(&a, p);
    loom_ckpt *c = loom_ckpt_create(p);
    cr_assert_not_null(c);
    loom_ckpt_write_params(c, "/model", a.ps);
    loom_ckpt_abort(c); /* as if the writer died before commit */
    cr_expect_eq(load(p, 5), LOOM_OK, "the previous checkpoint still loads: %s", loom_error_message());
    small_free(&a);
}

Test(ckpt, fuzz_flips_and_truncations_give_error_or_valid_model)
{
    small a;
    small_init(&a, 5, 1);
    const char *p = tmp("fuzz_src.h5"), *q = tmp("fuzz.h5");
    save(&a, p);
    FILE *f = fopen(p, "rb");
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    rewind(f);
    unsigned char *orig = malloc((size_t)size), *buf = malloc((size_t)size);
    cr_assert_eq(fread(orig, 1, (size_t)size, f), (size_t)size);
    fclose(f);
    loom_rng r = loom_rng_init(2024);
    int errors = 0, loaded = 0;
    for (int it = 0; it < 400; it++) {
        memcpy(buf, orig, (size_t)size);
        long len = size;
        int kind = (int)loom_rng_below(&r, 3);
        if (kind == 0) { /* truncate */
            len = (long)loom_rng_below(&r, (uint32_t)size);
        } else { /* flip 1 to 8 random bytes */
            int n = 1 + (int)loom_rng_below(&r, 8);
            for (int k = 0; k < n; k++) buf[loom_rng_below(&r, (uint32_t)size)] ^= (unsigned char)(1u + loom_rng_below(&r, 255));
        }
        FILE *o = fopen(q, "wb");
        fwrite(buf, 1, (size_t)len, o);
        fclose(o);
        loom_status st = load(q, 5);
        if (st == LOOM_OK) loaded++;
        else {
            errors++;
            cr_assert(loom_error_message()[0] != '\0', "an error without a message");
        }
    }
    cr_log_info("fuzz: %d errors, %d loads", errors, loaded);
    cr_expect_gt(errors, 200, "most damage must be detected (%d errors of 400)", errors);
    free(orig);
    free(buf);
    small_free(&a);
}
