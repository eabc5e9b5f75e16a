/* NULL and misuse at the public API of layers, io and dist: an error, never a crash.
 * One test per row, so Criterion names the row whose call crashed (each runs alone). */
#define _DEFAULT_SOURCE
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "loom_dist.h"

enum { I = 3, H = 4, T = 2, B = 2 };

/* Valid objects for every argument but the one a row makes NULL. */
typedef struct fixture {
    loom_cell cell, scratch;
    loom_seq seq, spare, zeroed;
    loom_params *ps, *fresh; /* ps: allocated, the stack's; fresh: one parameter declared, not allocated */
    loom_tape *tape;
    loom_tensor *x;
    loom_seq_out out;
    loom_state *state;
    loom_optim optim;
    loom_sched sched;
    loom_rng rng;
    loom_linear lin;
    loom_embedding emb;
    loom_optim_kind okind;
    loom_sched_kind skind;
    float xdata[T * B * I], buf[16], rows[B * H];
    int64_t i64[2];
    unsigned char bytes[4];
    char str[32];
    size_t n;
    int a, b, c;
    char dir[64], wpath[96], rpath[96];
    loom_ckpt *w, *r; /* w: being written; r: a full one opened for reading */
    loom_dist dist, dist0;
    loom_train_config cfg;
    loom_trainer tr, tr0;
    loom_task task, no_forward;
} fixture;

static fixture F;

static loom_tensor *forward(void *ctx, loom_tape *t, loom_batch *b)
{
    fixture *f = ctx;
    loom_seq_out o;
    b->count = 1, b->tokens = T * B;
    loom_tensor *x = loom_tape_from(t, T * B, I, f->xdata);
    if (loom_seq_forward(&f->seq, t, x, T, B, NULL, 1, NULL, NULL, &o) != LOOM_OK) return NULL;
    return loom_op_mean(t, loom_op_mul(t, o.y, o.y));
}

static void setup(void)
{
    memset(&F, 0, sizeof F);
    for (int i = 0; i < T * B * I; i++) F.xdata[i] = 0.1f * (float)(i % 7) - 0.3f;
    loom_lstm_init(&F.cell, I, H, 1.0f);
    F.ps = loom_params_new(), F.fresh = loom_params_new();
    cr_assert(F.ps && F.fresh);
    cr_assert_eq(loom_seq_init(&F.seq, &F.cell, 1, 0.0f), LOOM_OK, "%s", loom_error_message());
    cr_assert_eq(loom_seq_declare(&F.seq, F.ps, "lstm"), LOOM_OK, "%s", loom_error_message());
    cr_assert_not_null(loom_params_add(F.fresh, "w", 2, 2, (loom_init){LOOM_INIT_ZERO, 0, 0}));
    F.rng = loom_rng_init(7);
    cr_assert_eq(loom_params_alloc(F.ps, &F.rng), LOOM_OK);
    cr_assert_not_null(F.state = loom_state_new(&F.seq, B));
    cr_assert_eq(loom_optim_init(&F.optim, loom_optim_defaults(LOOM_ADAM), loom_params_size(F.ps)), LOOM_OK);
    F.sched = (loom_sched){LOOM_SCHED_CONSTANT, 0.1f, 0, 1, 1.0f, 10, 0.0f};
    /* A checkpoint with one dataset of every kind, to read; another left open for writing. */
    snprintf(F.dir, sizeof F.dir, "/tmp/loom_null_XXXXXX");
    cr_assert_not_null(mkdtemp(F.dir));
    snprintf(F.wpath, sizeof F.wpath, "%s/w.h5", F.dir);
    snprintf(F.rpath, sizeof F.rpath, "%s/r.h5", F.dir);
    loom_ckpt *c = loom_ckpt_create(F.rpath);
    cr_assert_not_null(c, "%s", loom_error_message());
    cr_assert_eq(loom_ckpt_write_params(c, "/model", F.ps), LOOM_OK, "%s", loom_error_message());
    cr_assert_eq(loom_ckpt_write_optim(c, "/optimizer", &F.optim), LOOM_OK, "%s", loom_error_message());
    cr_assert_eq(loom_ckpt_write_rng(c, "/rng", &F.rng), LOOM_OK);
    cr_assert_eq(loom_ckpt_write_i64(c, "/i64", F.i64, 2), LOOM_OK);
    cr_assert_eq(loom_ckpt_write_str(c, "/str", "lstm"), LOOM_OK);
    cr_assert_eq(loom_ckpt_write_bytes(c, "/bytes", F.bytes, 4), LOOM_OK);
    cr_assert_eq(loom_ckpt_write_floats(c, "/floats", F.buf, 2, 2), LOOM_OK);
    cr_assert_eq(loom_ckpt_commit(c), LOOM_OK, "%s", loom_error_message());
    cr_assert_not_null(F.r = loom_ckpt_open(F.rpath), "%s", loom_error_message());
    cr_assert_not_null(F.w = loom_ckpt_create(F.wpath), "%s", loom_error_message());
    /* A world of one and a trainer on it. */
    cr_assert_eq(loom_dist_init(&F.dist, NULL, NULL), LOOM_OK, "%s", loom_error_message());
    F.cfg = loom_train_defaults("test_null");
    F.cfg.progress = 0, F.cfg.log_every = 0;
    cr_assert_eq(loom_trainer_init(&F.tr, &F.cfg, &F.dist, F.ps, loom_optim_defaults(LOOM_ADAM), F.sched, B), LOOM_OK,
                 "%s", loom_error_message());
    F.task = (loom_task){&F, forward, NULL, NULL, NULL, NULL};
    F.no_forward = (loom_task){&F, NULL, NULL, NULL, NULL, NULL};
    /* Last, on a fresh tape: a failure before its reset would be taken for the cause of a NULL input. */
    cr_assert_not_null(F.tape = loom_tape_new(0));
    cr_assert_not_null(F.x = loom_tape_from(F.tape, T * B, I, F.xdata));
    cr_assert_eq(loom_seq_forward(&F.seq, F.tape, F.x, T, B, NULL, 0, NULL, NULL, &F.out), LOOM_OK, "%s",
                 loom_error_message());
    loom_error_clear();
}

static void teardown(void)
{
    loom_trainer_free(&F.tr);
    loom_dist_finish(&F.dist, 0);
    loom_ckpt_abort(F.w);
    loom_ckpt_close(F.r);
    unlink(F.rpath);
    rmdir(F.dir);
    loom_optim_free(&F.optim);
    loom_state_free(F.state);
    loom_tape_free(F.tape);
    loom_seq_free(&F.seq);
    loom_seq_free(&F.spare);
    loom_free(F.scratch.w);
    loom_free(F.cell.w);
    loom_params_free(F.ps);
    loom_params_free(F.fresh);
}

TestSuite(layers, .init = setup, .fini = teardown);
TestSuite(io, .init = setup, .fini = teardown);
TestSuite(dist, .init = setup, .fini = teardown);

/* The message names the call's family (its name up to the first '_', e.g. "ckpt") and the word. */
static void expect_names(const char *fn, const char *word)
{
    const char *msg = loom_error_message();
    char family[32];
    snprintf(family, sizeof family, "%.*s", (int)strcspn(fn, "_"), fn);
    cr_expect(strstr(msg, family) && strstr(msg, word), "%s: the message '%s' should name '%s' and '%s'", fn, msg,
              family, word);
}

#include "null_rows.h"

/* ---------------------------------------------------------------- loom_layers.h */

/*  suite   function            NULL argument   call */
PT(layers, cell_param,          cell,     loom_cell_param(NULL, F.fresh, "p", "v", 0, 2, 2, (loom_init){0}))
PT(layers, cell_param,          params,   loom_cell_param(&F.scratch, NULL, "p", "v", 0, 2, 2, (loom_init){0}))
PT(layers, cell_param,          prefix,   loom_cell_param(&F.scratch, F.fresh, NULL, "v", 0, 2, 2, (loom_init){0}))
PT(layers, cell_param,          name,     loom_cell_param(&F.scratch, F.fresh, "p", NULL, 0, 2, 2, (loom_init){0}))
ST(layers, cell_declare_gates,  cell,     loom_cell_declare_gates(NULL, F.fresh, "p", 0, 4))
ST(layers, cell_declare_gates,  params,   loom_cell_declare_gates(&F.scratch, NULL, "p", 0, 4))
ST(layers, cell_declare_gates,  prefix,   loom_cell_declare_gates(&F.scratch, F.fresh, NULL, 0, 4))
PT(layers, cell_find,           cell,     loom_cell_find(NULL, F.ps, "weight_hh"))
PT(layers, cell_find,           params,   loom_cell_find(&F.seq.cells[0], NULL, "weight_hh"))
PT(layers, cell_find,           name,     loom_cell_find(&F.seq.cells[0], F.ps, NULL))
VD(layers, lstm_init,           cell,     loom_lstm_init(NULL, I, H, 0.0f))
VD(layers, gru_init,            cell,     loom_gru_init(NULL, I, H))
VD(layers, rnn_init,            cell,     loom_rnn_init(NULL, I, H, 0))
ST(layers, cell_init_kind,      cell,     loom_cell_init_kind(NULL, "gru", I, H))
ST(layers, cell_init_kind,      kind,     loom_cell_init_kind(&F.scratch, NULL, I, H))
ST(layers, seq_init,            stack,    loom_seq_init(NULL, &F.cell, 1, 0.0f))
ST(layers, seq_init,            cells,    loom_seq_init(&F.spare, NULL, 1, 0.0f))
ST(layers, seq_declare,         stack,    loom_seq_declare(NULL, F.fresh, "p"))
ST(layers, seq_declare,         params,   loom_seq_declare(&F.seq, NULL, "p"))
ST(layers, seq_declare,         prefix,   loom_seq_declare(&F.seq, F.fresh, NULL))
VD(layers, seq_apply_init,      stack,    loom_seq_apply_init(NULL))
FR(layers, seq_free,                      loom_seq_free(NULL))
VD(layers, seq_set_shard,       stack,    loom_seq_set_shard(NULL, 0, B))
ST(layers, seq_set_bidirectional, stack,  loom_seq_set_bidirectional(NULL, 1))
ST(layers, seq_set_recompute,   stack,    loom_seq_set_recompute(NULL, 4))
ST(layers, seq_set_row_teams,   stack,    loom_seq_set_row_teams(NULL, 1))
IN(layers, seq_state_index,     stack, -1, loom_seq_state_index(NULL, 0, 0))
IN(layers, seq_state_count,     stack, 0, loom_seq_state_count(NULL))
ST(layers, seq_forward,         stack,    loom_seq_forward(NULL, F.tape, F.x, T, B, NULL, 0, NULL, NULL, &F.out))
ST(layers, seq_forward,         tape,     loom_seq_forward(&F.seq, NULL, F.x, T, B, NULL, 0, NULL, NULL, &F.out))
ST(layers, seq_forward,         input,    loom_seq_forward(&F.seq, F.tape, NULL, T, B, NULL, 0, NULL, NULL, &F.out))
ST(layers, seq_forward,         out,      loom_seq_forward(&F.seq, F.tape, F.x, T, B, NULL, 0, NULL, NULL, NULL))
ST(layers, seq_forward_from,    stack,    loom_seq_forward_from(NULL, F.tape, F.x, T, B, NULL, 0, NULL, NULL, &F.out))
ST(layers, seq_forward_from,    tape,     loom_seq_forward_from(&F.seq, NULL, F.x, T, B, NULL, 0, NULL, NULL, &F.out))
ST(layers, seq_forward_from,    input,    loom_seq_forward_from(&F.seq, F.tape, NULL, T, B, NULL, 0, NULL, NULL, &F.out))
ST(layers, seq_forward_from,    out,      loom_seq_forward_from(&F.seq, F.tape, F.x, T, B, NULL, 0, NULL, NULL, NULL))
VD(layers, seq_length_weights,  weights,  loom_seq_length_weights(NULL, T, B, NULL))
PT(layers, state_new,           stack,    loom_state_new(NULL, B))
FR(layers, state_free,                    loom_state_free(NULL))
VD(layers, state_zero,          state,    loom_state_zero(NULL))
IN(layers, state_batch,         state, 0, loom_state_batch(NULL))
PT(layers, state_part,          state,    loom_state_part(NULL, 0, 0))
PT(layers, state_data,          state,    loom_state_data(NULL, &F.n))
ST(layers, state_copy,          destination, loom_state_copy(NULL, F.state))
ST(layers, state_copy,          source,   loom_state_copy(F.state, NULL))
ST(layers, state_store,         state,    loom_state_store(NULL, &F.out))
ST(layers, state_store,         out,      loom_state_store(F.state, NULL))
PT(layers, linear_apply,        tape,     loom_linear_apply(NULL, F.x, F.seq.cells[0].w[0], NULL))
PT(layers, linear_apply,        input,    loom_linear_apply(F.tape, NULL, F.seq.cells[0].w[0], NULL))
PT(layers, linear_apply,        weight,   loom_linear_apply(F.tape, F.x, NULL, NULL))
ST(layers, linear_declare,      layer,    loom_linear_declare(NULL, F.fresh, "fc", H, 2))
ST(layers, linear_declare,      params,   loom_linear_declare(&F.lin, NULL, "fc", H, 2))
ST(layers, linear_declare,      prefix,   loom_linear_declare(&F.lin, F.fresh, NULL, H, 2))
ST(layers, embedding_declare,   layer,    loom_embedding_declare(NULL, F.fresh, "emb", 5, I))
ST(layers, embedding_declare,   params,   loom_embedding_declare(&F.emb, NULL, "emb", 5, I))
ST(layers, embedding_declare,   prefix,   loom_embedding_declare(&F.emb, F.fresh, NULL, 5, I))
ST(layers, optim_parse,         name,     loom_optim_parse(NULL, &F.okind))
ST(layers, optim_parse,         kind,     loom_optim_parse("adam", NULL))
ST(layers, optim_init,          optimizer, loom_optim_init(NULL, loom_optim_defaults(LOOM_SGD), 4))
FR(layers, optim_free,                    loom_optim_free(NULL))
VD(layers, optim_step,          optimizer, loom_optim_step(NULL, loom_params_data(F.ps), loom_params_grad(F.ps), 0.1f))
VD(layers, optim_step,          params,   loom_optim_step(&F.optim, NULL, loom_params_grad(F.ps), 0.1f))
VD(layers, optim_step,          grads,    loom_optim_step(&F.optim, loom_params_data(F.ps), NULL, 0.1f))
ST(layers, optim_step_params,   optimizer, loom_optim_step_params(NULL, F.ps, 0.1f))
ST(layers, optim_step_params,   params,   loom_optim_step_params(&F.optim, NULL, 0.1f))
FL(layers, clip_grad_norm,      grads,    loom_clip_grad_norm(NULL, 4, 1.0f))
FL(layers, grad_norm,           grads,    loom_grad_norm(NULL, 4))
VD(layers, clip_grad_scale,     grads,    loom_clip_grad_scale(NULL, 4, 2.0f, 1.0f))
FL(layers, sched_lr,            schedule, loom_sched_lr(NULL, 0))
ST(layers, sched_parse,         name,     loom_sched_parse(NULL, &F.skind))
ST(layers, sched_parse,         kind,     loom_sched_parse("cosine", NULL))

/* Optional pointers stay optional; misuse is an error. */
IS(layers, seq_forward_lengths_init_rng_optional, "",
   loom_seq_forward(&F.seq, F.tape, F.x, T, B, NULL, 1, NULL, NULL, &F.out) == LOOM_OK)
IS(layers, seq_forward_from_init_optional, "",
   loom_seq_forward_from(&F.seq, F.tape, F.x, T, B, (int[]){1, 2}, 0, NULL, NULL, &F.out) == LOOM_OK)
IS(layers, linear_apply_bias_optional,     "", loom_linear_apply(F.tape, F.x, F.seq.cells[0].w[0], NULL) != NULL)
IS(layers, state_data_size_optional,       "", loom_state_data(F.state, NULL) != NULL)
IS(layers, length_weights_lengths_optional, "", (loom_seq_length_weights(NULL, T, B, F.buf), F.buf[T * B - 1] == 1.0f))
IS(layers, grad_norm_of_nothing,           "", loom_grad_norm(NULL, 0) == 0.0f)
IS(layers, seq_declare_zeroed_stack,       "not initialised", loom_seq_declare(&F.zeroed, F.fresh, "p") == LOOM_ESTATE)
IS(layers, seq_forward_zeroed_stack,       "not initialised",
   loom_seq_forward(&F.zeroed, F.tape, F.x, T, B, NULL, 0, NULL, NULL, &F.out) == LOOM_ESTATE)
IS(layers, seq_forward_freed_stack,        "not initialised",
   (loom_seq_free(&F.seq), loom_seq_forward(&F.seq, F.tape, F.x, T, B, NULL, 0, NULL, NULL, &F.out)) == LOOM_ESTATE)
IS(layers, state_new_zeroed_stack,         "not initialised", loom_state_new(&F.zeroed, B) == NULL)
IS(layers, state_new_zero_batch,           "batch 0", loom_state_new(&F.seq, 0) == NULL)
IS(layers, state_part_no_such_layer,       "layer 1", loom_state_part(F.state, 1, 0) == NULL)
IS(layers, state_part_no_such_part,        "part 2", loom_state_part(F.state, 0, 2) == NULL)
IS(layers, seq_state_index_no_such_layer,  "layer -1", loom_seq_state_index(&F.seq, -1, 0) == -1)
IS(layers, seq_apply_init_before_alloc,    "not allocated",
   (loom_seq_init(&F.spare, &F.cell, 1, 0.0f), loom_seq_declare(&F.spare, F.fresh, "s"), loom_seq_apply_init(&F.spare), 1))
IS(layers, seq_set_recompute_negative,     "negative", loom_seq_set_recompute(&F.seq, -1) == LOOM_EARG && F.seq.recompute == 0)
IS(layers, seq_set_recompute_zeroed_stack, "not initialised", loom_seq_set_recompute(&F.zeroed, 4) == LOOM_ESTATE)
IS(layers, seq_set_row_teams_not_a_flag,   "1 or 0", loom_seq_set_row_teams(&F.seq, 2) == LOOM_EARG && F.seq.row_teams == 1)
IS(layers, seq_set_shard_negative,         "negative", (loom_seq_set_shard(&F.seq, -1, B), F.seq.shard_batch == 0))
IS(layers, linear_declare_negative_size,   "positive", loom_linear_declare(&F.lin, F.fresh, "fc", -1, 2) == LOOM_EARG)
IS(layers, embedding_declare_zero_size,    "positive", loom_embedding_declare(&F.emb, F.fresh, "emb", 0, 2) == LOOM_EARG)
IS(layers, optim_init_unknown_kind,        "kind 42",
   loom_optim_init(&(loom_optim){0}, (loom_optim_config){.kind = (loom_optim_kind)42}, 4) == LOOM_EARG)
IS(layers, sched_lr_negative_step,         "negative", isnan(loom_sched_lr(&F.sched, -1)))

/* ---------------------------------------------------------------- loom_io.h */

/*  suite   function            NULL argument   call */
PT(io, ckpt_create,             path,       loom_ckpt_create(NULL))
ST(io, ckpt_commit,             checkpoint, loom_ckpt_commit(NULL))
FR(io, ckpt_abort,                          loom_ckpt_abort(NULL))
ST(io, ckpt_write_floats,       checkpoint, loom_ckpt_write_floats(NULL, "/x", F.buf, 2, 2))
ST(io, ckpt_write_floats,       name,       loom_ckpt_write_floats(F.w, NULL, F.buf, 2, 2))
ST(io, ckpt_write_floats,       data,       loom_ckpt_write_floats(F.w, "/x", NULL, 2, 2))
ST(io, ckpt_write_i64,          checkpoint, loom_ckpt_write_i64(NULL, "/x", F.i64, 2))
ST(io, ckpt_write_i64,          name,       loom_ckpt_write_i64(F.w, NULL, F.i64, 2))
ST(io, ckpt_write_i64,          data,       loom_ckpt_write_i64(F.w, "/x", NULL, 0))
ST(io, ckpt_write_bytes,        checkpoint, loom_ckpt_write_bytes(NULL, "/x", F.bytes, 4))
ST(io, ckpt_write_bytes,        name,       loom_ckpt_write_bytes(F.w, NULL, F.bytes, 4))
ST(io, ckpt_write_bytes,        data,       loom_ckpt_write_bytes(F.w, "/x", NULL, 4))
ST(io, ckpt_write_str,          checkpoint, loom_ckpt_write_str(NULL, "/x", "s"))
ST(io, ckpt_write_str,          name,       loom_ckpt_write_str(F.w, NULL, "s"))
ST(io, ckpt_write_str,          string,     loom_ckpt_write_str(F.w, "/x", NULL))
ST(io, ckpt_write_params,       checkpoint, loom_ckpt_write_params(NULL, "/model", F.ps))
ST(io, ckpt_write_params,       group,      loom_ckpt_write_params(F.w, NULL, F.ps))
ST(io, ckpt_write_params,       params,     loom_ckpt_write_params(F.w, "/model", NULL))
ST(io, ckpt_write_optim,        checkpoint, loom_ckpt_write_optim(NULL, "/optimizer", &F.optim))
ST(io, ckpt_write_optim,        group,      loom_ckpt_write_optim(F.w, NULL, &F.optim))
ST(io, ckpt_write_optim,        optimizer,  loom_ckpt_write_optim(F.w, "/optimizer", NULL))
ST(io, ckpt_write_rng,          checkpoint, loom_ckpt_write_rng(NULL, "/rng", &F.rng))
ST(io, ckpt_write_rng,          name,       loom_ckpt_write_rng(F.w, NULL, &F.rng))
ST(io, ckpt_write_rng,          rng,        loom_ckpt_write_rng(F.w, "/rng", NULL))
PT(io, ckpt_open,               path,       loom_ckpt_open(NULL))
FR(io, ckpt_close,                          loom_ckpt_close(NULL))
IN(io, ckpt_has,                checkpoint, 0, loom_ckpt_has(NULL, "/model"))
IN(io, ckpt_has,                name,       0, loom_ckpt_has(F.r, NULL))
ST(io, ckpt_read_floats,        checkpoint, loom_ckpt_read_floats(NULL, "/floats", F.buf, 2, 2))
ST(io, ckpt_read_floats,        name,       loom_ckpt_read_floats(F.r, NULL, F.buf, 2, 2))
ST(io, ckpt_read_floats,        data,       loom_ckpt_read_floats(F.r, "/floats", NULL, 2, 2))
ST(io, ckpt_read_i64,           checkpoint, loom_ckpt_read_i64(NULL, "/i64", F.i64, 2))
ST(io, ckpt_read_i64,           name,       loom_ckpt_read_i64(F.r, NULL, F.i64, 2))
ST(io, ckpt_read_i64,           data,       loom_ckpt_read_i64(F.r, "/i64", NULL, 2))
ST(io, ckpt_read_bytes,         checkpoint, loom_ckpt_read_bytes(NULL, "/bytes", F.bytes, 4, &F.n))
ST(io, ckpt_read_bytes,         name,       loom_ckpt_read_bytes(F.r, NULL, F.bytes, 4, &F.n))
ST(io, ckpt_read_bytes,         data,       loom_ckpt_read_bytes(F.r, "/bytes", NULL, 4, &F.n))
ST(io, ckpt_read_bytes,         count,      loom_ckpt_read_bytes(F.r, "/bytes", F.bytes, 4, NULL))
ST(io, ckpt_read_str,           checkpoint, loom_ckpt_read_str(NULL, "/str", F.str, sizeof F.str))
ST(io, ckpt_read_str,           name,       loom_ckpt_read_str(F.r, NULL, F.str, sizeof F.str))
ST(io, ckpt_read_str,           buffer,     loom_ckpt_read_str(F.r, "/str", NULL, sizeof F.str))
ST(io, ckpt_read_params,        checkpoint, loom_ckpt_read_params(NULL, "/model", F.ps))
ST(io, ckpt_read_params,        group,      loom_ckpt_read_params(F.r, NULL, F.ps))
ST(io, ckpt_read_params,        params,     loom_ckpt_read_params(F.r, "/model", NULL))
ST(io, ckpt_read_optim,         checkpoint, loom_ckpt_read_optim(NULL, "/optimizer", &F.optim))
ST(io, ckpt_read_optim,         group,      loom_ckpt_read_optim(F.r, NULL, &F.optim))
ST(io, ckpt_read_optim,         optimizer,  loom_ckpt_read_optim(F.r, "/optimizer", NULL))
ST(io, ckpt_read_rng,           checkpoint, loom_ckpt_read_rng(NULL, "/rng", &F.rng))
ST(io, ckpt_read_rng,           name,       loom_ckpt_read_rng(F.r, NULL, &F.rng))
ST(io, ckpt_read_rng,           rng,        loom_ckpt_read_rng(F.r, "/rng", NULL))
ST(io, ckpt_info,               checkpoint, loom_ckpt_info(NULL, &F.a, &F.b, &F.c))
PT(io, ckpt_path,               checkpoint, loom_ckpt_path(NULL))
VD(io, ckpt_set_world,          checkpoint, loom_ckpt_set_world(NULL, 2, 1))

/* The cases, optional pointers, and misuse. */
IS(io, commit_after_failed_create,  "checkpoint is NULL",
   loom_ckpt_commit(loom_ckpt_create("/nonexistent/dir/ck.h5")) == LOOM_EARG)
IS(io, write_after_failed_create,   "checkpoint is NULL",
   loom_ckpt_write_floats(loom_ckpt_create("/nonexistent/dir/ck.h5"), "/x", F.buf, 0, 4) == LOOM_EARG)
IS(io, read_after_failed_open,      "checkpoint is NULL",
   loom_ckpt_read_params(loom_ckpt_open("/nonexistent.h5"), "/model", F.ps) == LOOM_EARG)
IS(io, create_empty_path,           "empty", loom_ckpt_create("") == NULL)
IS(io, write_to_a_reader,           "open for reading", loom_ckpt_write_floats(F.r, "/x", F.buf, 0, 4) == LOOM_ESTATE)
IS(io, write_params_to_a_reader,    "open for reading", loom_ckpt_write_params(F.r, "/model", F.ps) == LOOM_ESTATE)
IS(io, commit_a_reader_leaves_it,   "open for reading", loom_ckpt_commit(F.r) == LOOM_ESTATE && loom_ckpt_has(F.r, "/model"))
IS(io, write_floats_negative_shape, "negative", loom_ckpt_write_floats(F.w, "/x", F.buf, -1, 4) == LOOM_EARG)
IS(io, read_floats_negative_shape,  "negative", loom_ckpt_read_floats(F.r, "/floats", F.buf, 2, -2) == LOOM_EARG)
IS(io, write_unallocated_params,    "not allocated", loom_ckpt_write_params(F.w, "/model", F.fresh) == LOOM_ESTATE)
IS(io, read_unallocated_params,     "not allocated", loom_ckpt_read_params(F.r, "/model", F.fresh) == LOOM_ESTATE)
IS(io, write_optim_unknown_kind,    "not initialised",
   loom_ckpt_write_optim(F.w, "/o", &(loom_optim){.cfg.kind = (loom_optim_kind)9}) == LOOM_ESTATE)
IS(io, set_world_out_of_range,      "out of range", (loom_ckpt_set_world(F.w, 0, 1), 1))
IS(io, write_floats_no_values,      "", loom_ckpt_write_floats(F.w, "/empty", NULL, 0, 0) == LOOM_OK)
IS(io, info_outputs_optional,       "", loom_ckpt_info(F.r, NULL, NULL, NULL) == LOOM_OK)

/* Closing a checkpoint being written gives it up: its temporary file goes. */
Test(io, close_a_writer_removes_its_temporary)
{
    char tmp[128];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", F.wpath, (long)getpid());
    cr_assert_eq(access(tmp, F_OK), 0, "the writer's temporary %s exists", tmp);
    loom_ckpt_close(F.w);
    F.w = NULL;
    cr_expect_neq(access(tmp, F_OK), 0, "%s is gone", tmp);
}

/* ---------------------------------------------------------------- loom_dist.h */

/*  suite   function                NULL argument   call */
ST(dist, dist_init,                 dist,       loom_dist_init(NULL, NULL, NULL))
ST(dist, dist_shard,                dist,       loom_dist_shard(NULL, B, &F.a, &F.b))
ST(dist, dist_shard,                row0,       loom_dist_shard(&F.dist, B, NULL, &F.b))
ST(dist, dist_shard,                rows,       loom_dist_shard(&F.dist, B, &F.a, NULL))
ST(dist, dist_allreduce_sum,        dist,       loom_dist_allreduce_sum(NULL, F.buf, 4))
ST(dist, dist_allreduce_sum,        buffer,     loom_dist_allreduce_sum(&F.dist, NULL, 4))
ST(dist, dist_allreduce_sum_f64,    dist,       loom_dist_allreduce_sum_f64(NULL, (double[2]){0}, 2))
ST(dist, dist_allreduce_sum_f64,    buffer,     loom_dist_allreduce_sum_f64(&F.dist, NULL, 2))
ST(dist, dist_allreduce_mean,       dist,       loom_dist_allreduce_mean(NULL, F.buf, 4))
ST(dist, dist_allreduce_mean,       buffer,     loom_dist_allreduce_mean(&F.dist, NULL, 4))
ST(dist, dist_broadcast,            dist,       loom_dist_broadcast(NULL, F.buf, 4))
ST(dist, dist_broadcast,            buffer,     loom_dist_broadcast(&F.dist, NULL, 4))
ST(dist, dist_broadcast_f64,        dist,       loom_dist_broadcast_f64(NULL, (double[2]){0}, 2))
ST(dist, dist_broadcast_f64,        buffer,     loom_dist_broadcast_f64(&F.dist, NULL, 2))
ST(dist, dist_wait_root,            dist,       loom_dist_wait_root(NULL))
ST(dist, dist_gather_rows,          dist,       loom_dist_gather_rows(NULL, F.buf, F.rows, 1, 2, 2))
ST(dist, dist_gather_rows,          local,      loom_dist_gather_rows(&F.dist, NULL, F.rows, 1, 2, 2))
ST(dist, dist_gather_rows,          global,     loom_dist_gather_rows(&F.dist, F.buf, NULL, 1, 2, 2))
FR(dist, dist_finish,                           cr_expect_eq(loom_dist_finish(NULL, 3), 3))
FR(dist, dist_finalize,                         loom_dist_finalize(NULL))
ST(dist, trainer_init,              trainer,    loom_trainer_init(NULL, &F.cfg, &F.dist, F.ps, loom_optim_defaults(LOOM_SGD), F.sched, B))
ST(dist, trainer_init,              config,     loom_trainer_init(&F.tr0, NULL, &F.dist, F.ps, loom_optim_defaults(LOOM_SGD), F.sched, B))
ST(dist, trainer_init,              dist,       loom_trainer_init(&F.tr0, &F.cfg, NULL, F.ps, loom_optim_defaults(LOOM_SGD), F.sched, B))
ST(dist, trainer_init,              params,     loom_trainer_init(&F.tr0, &F.cfg, &F.dist, NULL, loom_optim_defaults(LOOM_SGD), F.sched, B))
ST(dist, trainer_track_rows,        trainer,    loom_trainer_track_rows(NULL, "/state/carry", F.rows, 1, H))
ST(dist, trainer_track_rows,        name,       loom_trainer_track_rows(&F.tr, NULL, F.rows, 1, H))
ST(dist, trainer_track_rows,        local,      loom_trainer_track_rows(&F.tr, "/state/carry", NULL, 1, H))
ST(dist, trainer_restore,           trainer,    loom_trainer_restore(NULL, &F.task, F.r))
ST(dist, trainer_restore,           task,       loom_trainer_restore(&F.tr, NULL, F.r))
ST(dist, trainer_restore,           checkpoint, loom_trainer_restore(&F.tr, &F.task, NULL))
ST(dist, trainer_sync,              trainer,    loom_trainer_sync(NULL))
ST(dist, trainer_step,              trainer,    loom_trainer_step(NULL, &F.task))
ST(dist, trainer_step,              task,       loom_trainer_step(&F.tr, NULL))
ST(dist, trainer_step,              forward,    loom_trainer_step(&F.tr, &F.no_forward))
ST(dist, trainer_run,               trainer,    loom_trainer_run(NULL, &F.task))
ST(dist, trainer_run,               task,       loom_trainer_run(&F.tr, NULL))
ST(dist, trainer_run,               forward,    loom_trainer_run(&F.tr, &F.no_forward))
ST(dist, trainer_save,              trainer,    loom_trainer_save(NULL, &F.task, F.wpath))
ST(dist, trainer_save,              task,       loom_trainer_save(&F.tr, NULL, F.wpath))
ST(dist, trainer_save,              path,       loom_trainer_save(&F.tr, &F.task, NULL))
FR(dist, trainer_free,                          loom_trainer_free(NULL))

/* Optional pointers stay optional; a world or trainer not ready is an error. */
IS(dist, perror_both_optional,      "", (loom_dist_perror(NULL, NULL), 1))
IS(dist, train_defaults_prog_optional, "", strcmp(loom_train_defaults(NULL).prog, "loom") == 0)
IS(dist, collective_of_nothing,     "", loom_dist_allreduce_sum(&F.dist, NULL, 0) == LOOM_OK)
IS(dist, step_with_optional_hooks,  "", loom_trainer_step(&F.tr, &F.task) == LOOM_OK)
IS(dist, shard_on_zeroed_dist,      "not initialised", loom_dist_shard(&F.dist0, B, &F.a, &F.b) == LOOM_ESTATE)
IS(dist, allreduce_on_zeroed_dist,  "not initialised", loom_dist_allreduce_sum(&F.dist0, F.buf, 4) == LOOM_ESTATE)
IS(dist, trainer_init_zeroed_dist,  "not initialised",
   loom_trainer_init(&F.tr0, &F.cfg, &F.dist0, F.ps, loom_optim_defaults(LOOM_SGD), F.sched, B) == LOOM_ESTATE)
IS(dist, f64_negative_count,        "negative", loom_dist_broadcast_f64(&F.dist, (double[2]){0}, -2) == LOOM_EARG)
IS(dist, step_before_init,          "not initialised", loom_trainer_step(&F.tr0, &F.task) == LOOM_ESTATE)
IS(dist, save_before_init,          "not initialised", loom_trainer_save(&F.tr0, &F.task, F.wpath) == LOOM_ESTATE)
IS(dist, restore_before_init,       "not initialised", loom_trainer_restore(&F.tr0, &F.task, F.r) == LOOM_ESTATE)
IS(dist, track_rows_before_init,    "not initialised", loom_trainer_track_rows(&F.tr0, "/s", F.rows, 1, H) == LOOM_ESTATE)
IS(dist, step_after_free,           "freed", (loom_trainer_free(&F.tr), loom_trainer_step(&F.tr, &F.task)) == LOOM_ESTATE)
IS(dist, run_after_free,            "freed", (loom_trainer_free(&F.tr), loom_trainer_run(&F.tr, &F.task)) == LOOM_ESTATE)
IS(dist, sync_after_free,           "freed", (loom_trainer_free(&F.tr), loom_trainer_sync(&F.tr)) == LOOM_ESTATE)
IS(dist, free_twice,                "", (loom_trainer_free(&F.tr), loom_trainer_free(&F.tr), 1))
IS(dist, step_after_failed_init,    "not initialised",
   (loom_trainer_init(&F.tr0, &F.cfg, &F.dist, F.ps, loom_optim_defaults(LOOM_SGD), F.sched, 0),
    loom_trainer_step(&F.tr0, &F.task)) == LOOM_ESTATE)
