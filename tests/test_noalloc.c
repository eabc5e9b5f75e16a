/* A steady-state training step makes no heap allocation at all. */
#include <stdatomic.h>
#include <string.h>

#include "helpers.h"

static atomic_int counting;
static atomic_long mallocs;

#ifdef LOOM_TEST_ASAN_HOOKS
/* From the sanitizer runtime's allocator interface (its header is not always installed). */
int __sanitizer_install_malloc_and_free_hooks(void (*)(const volatile void *, size_t), void (*)(const volatile void *));
static void on_malloc(const volatile void *p, size_t n)
{
    (void)p, (void)n;
    if (atomic_load(&counting)) atomic_fetch_add(&mallocs, 1);
}
static void on_free(const volatile void *p) { (void)p; }
static void install(void) { __sanitizer_install_malloc_and_free_hooks(on_malloc, on_free); }
#else
/* Interpose the C allocator for this executable; forward to glibc's own. */
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void __libc_free(void *);
#define COUNT() (atomic_load(&counting) ? (void)atomic_fetch_add(&mallocs, 1) : (void)0)
void *malloc(size_t n) { COUNT(); return __libc_malloc(n); }
void *calloc(size_t n, size_t s) { COUNT(); return __libc_calloc(n, s); }
void *realloc(void *p, size_t n) { COUNT(); return __libc_realloc(p, n); }
void *aligned_alloc(size_t a, size_t n) { COUNT(); return __libc_memalign(a, n); }
void *memalign(size_t a, size_t n) { COUNT(); return __libc_memalign(a, n); }
int posix_memalign(void **p, size_t a, size_t n)
{
    COUNT();
    *p = __libc_memalign(a, n);
    return *p ? 0 : 12;
}
void free(void *p) { __libc_free(p); }
static void install(void) {}
#endif

/* One SGD step of a small tanh recurrence over 20 steps, all through the tape. */
static float train_step(loom_tape *t, loom_params *ps, loom_tensor *W, loom_tensor *U, loom_tensor *b,
                        loom_tensor *V, const int *targets, loom_rng *rng)
{
    loom_tape_reset(t);
    loom_params_zero_grad(ps);
    loom_tensor *h = loom_tape_zeros(t, 16, 64);
    loom_tensor *logits[20];
    for (int s = 0; s < 20; s++) {
        loom_tensor *x = loom_tape_tensor(t, 16, 32);
        loom_rng_fill_uniform(rng, x->data, 16 * 32, -1, 1);
        h = loom_op_tanh(t, loom_op_add(t, loom_op_add(t, loom_op_matmul(t, x, W, 0, 0), loom_op_matmul(t, h, U, 0, 0)), b));
        logits[s] = loom_op_matmul(t, loom_op_dropout(t, h, 0.1f, rng), V, 0, 0);
    }
    loom_tensor *all = loom_op_concat(t, logits, 20); /* [16 x 20*10] */
    loom_tensor *loss = loom_op_softmax_ce(t, loom_op_slice(t, all, 0, 10), targets, NULL);
    cr_assert_not_null(loss, "%s", loom_error_message());
    cr_assert_eq(loom_tape_backward(t, loss), LOOM_OK, "%s", loom_error_message());
    float *p = loom_params_data(ps), *g = loom_params_grad(ps);
    for (size_t i = 0; i < loom_params_size(ps); i++) p[i] -= 0.1f * g[i];
    return loom_tensor_size(loss) ? loss->data[0] : 0;
}

Test(memory, steady_state_step_allocates_nothing)
{
    install();
    loom_params *ps = loom_params_new();
    loom_init u = {LOOM_INIT_UNIFORM, -0.1f, 0.1f};
    loom_tensor *W = loom_params_add(ps, "W", 32, 64, u), *U = loom_params_add(ps, "U", 64, 64, u);
    loom_tensor *b = loom_params_add(ps, "b", 1, 64, u), *V = loom_params_add(ps, "V", 64, 10, u);
    loom_rng rng = loom_rng_init(1);
    cr_assert_eq(loom_params_alloc(ps, &rng), LOOM_OK);
    loom_tape *t = loom_tape_new(4096); /* deliberately small: it must grow, then settle */
    int targets[16];
    for (int i = 0; i < 16; i++) targets[i] = i % 10;
    for (int s = 0; s < 3; s++) train_step(t, ps, W, U, b, V, targets, &rng);
    uint64_t loom_before = loom_alloc_count();
    atomic_store(&mallocs, 0);
    atomic_store(&counting, 1);
    float first = 0, last = 0;
    for (int s = 0; s < 10; s++) {
        float l = train_step(t, ps, W, U, b, V, targets, &rng);
        if (s == 0) first = l;
        last = l;
    }
    atomic_store(&counting, 0);
    cr_expect_eq(atomic_load(&mallocs), 0, "%ld heap allocations in 10 steady-state steps", atomic_load(&mallocs));
    cr_expect_eq(loom_alloc_count(), loom_before, "loom's own allocator was called");
    cr_expect_lt(last, first, "the loss falls (%g -> %g)", first, last);
    loom_tape_free(t);
    loom_params_free(ps);
}

#include "loom_layers.h"

Test(memory, steady_state_lstm_adam_step_allocates_nothing)
{
    /* The whole training step of the examples: embedding, 2-layer fused LSTM with
     * dropout and carried state, linear head, softmax CE, backward, clip, Adam. */
    install();
    enum { V = 20, E = 8, H = 32, T = 12, B = 4 };
    loom_cell cells[2];
    loom_lstm_init(&cells[0], E, H, 1.0f);
    loom_lstm_init(&cells[1], H, H, 1.0f);
    loom_seq seq;
    loom_params *ps = loom_params_new();
    loom_embedding emb;
    loom_linear head;
    loom_optim opt;
    loom_rng rng = loom_rng_init(3);
    cr_assert_eq(loom_seq_init(&seq, cells, 2, 0.2f), LOOM_OK);
    cr_assert_eq(loom_embedding_declare(&emb, ps, "embedding", V, E), LOOM_OK);
    cr_assert_eq(loom_seq_declare(&seq, ps, "lstm"), LOOM_OK);
    cr_assert_eq(loom_linear_declare(&head, ps, "head", H, V), LOOM_OK);
    cr_assert_eq(loom_params_alloc(ps, &rng), LOOM_OK);
    loom_state *carry = loom_state_new(&seq, B);
    cr_assert_not_null(carry);
    cr_assert_eq(loom_optim_init(&opt, loom_optim_defaults(LOOM_ADAM), loom_params_size(ps)), LOOM_OK);
    int idx[T * B], tgt[T * B];
    for (int i = 0; i < T * B; i++) idx[i] = i % V, tgt[i] = (i + 1) % V;
    loom_tape *t = loom_tape_new(1024);
    float first = 0, last = 0;
    for (int s = 0; s < 13; s++) {
        if (s == 3) {
            atomic_store(&mallocs, 0);
            atomic_store(&counting, 1);
        }
        loom_tape_reset(t);
        loom_params_zero_grad(ps);
        loom_seq_out o;
        loom_tensor *x = loom_op_embedding(t, emb.weight, idx, T * B);
        cr_assert_eq(loom_seq_forward(&seq, t, x, T, B, NULL, 1, carry, &rng, &o), LOOM_OK);
        loom_tensor *loss = loom_op_softmax_ce(t, loom_linear_apply(t, o.y, head.weight, head.bias), tgt, NULL);
        cr_assert_eq(loom_tape_backward(t, loss), LOOM_OK);
        loom_clip_grad_norm(loom_params_grad(ps), loom_params_size(ps), 1.0f);
        loom_optim_step(&opt, loom_params_data(ps), loom_params_grad(ps), 1e-2f);
        cr_assert_eq(loom_state_store(carry, &o), LOOM_OK);
        if (s == 3) first = loss->data[0];
        last = loss->data[0];
    }
    atomic_store(&counting, 0);
    cr_expect_eq(atomic_load(&mallocs), 0, "%ld heap allocations in 10 steady-state LSTM steps", atomic_load(&mallocs));
    cr_expect_lt(last, first, "the loss falls (%g -> %g)", first, last);
    loom_tape_free(t);
    loom_optim_free(&opt);
    loom_state_free(carry);
    loom_seq_free(&seq);
    loom_params_free(ps);
}

/* Recomputation (loom_seq_set_recompute): a fused LSTM stack and an unfused one, which
 * recomputes on the stack's scratch tape; once warm, neither allocates. */
static void recompute_steps_allocate_nothing(int fused)
{
    enum { I = 6, H = 16, T = 30, B = 3 };
    loom_cell cells[2];
    loom_lstm_init(&cells[0], I, H, 1.0f);
    loom_lstm_init(&cells[1], H, H, 1.0f);
    loom_seq seq;
    loom_params *ps = loom_params_new();
    loom_rng rng = loom_rng_init(4);
    cr_assert_eq(loom_seq_init(&seq, cells, 2, 0.2f), LOOM_OK);
    seq.fused = fused;
    cr_assert_eq(loom_seq_set_bidirectional(&seq, 1), LOOM_OK);
    cr_assert_eq(loom_seq_set_recompute(&seq, 5), LOOM_OK);
    cr_assert_eq(loom_seq_declare(&seq, ps, "lstm"), LOOM_OK);
    cr_assert_eq(loom_params_alloc(ps, &rng), LOOM_OK);
    loom_state *carry = loom_state_new(&seq, B);
    cr_assert_not_null(carry);
    int lengths[B] = {T, 17, 4};
    float xs[T * B * I];
    loom_rng_fill_uniform(&rng, xs, T * B * I, -1, 1);
    loom_tape *t = loom_tape_new(1024);
    for (int s = 0; s < 8; s++) {
        if (s == 3) {
            atomic_store(&mallocs, 0);
            atomic_store(&counting, 1);
        }
        loom_tape_reset(t);
        loom_params_zero_grad(ps);
        loom_seq_out o;
        loom_tensor *x = loom_tape_from(t, T * B, I, xs);
        cr_assert_eq(loom_seq_forward(&seq, t, x, T, B, lengths, 1, carry, &rng, &o), LOOM_OK, "%s", loom_error_message());
        cr_assert_eq(loom_tape_backward(t, loom_op_mean(t, loom_op_mul(t, o.y, o.y))), LOOM_OK, "%s", loom_error_message());
        float *p = loom_params_data(ps), *g = loom_params_grad(ps);
        for (size_t i = 0; i < loom_params_size(ps); i++) p[i] -= 0.1f * g[i];
        cr_assert_eq(loom_state_store(carry, &o), LOOM_OK);
    }
    atomic_store(&counting, 0);
    cr_expect_eq(atomic_load(&mallocs), 0, "%ld heap allocations in 5 steady-state %s recompute steps", atomic_load(&mallocs),
                 fused ? "fused" : "unfused");
    cr_expect_eq(!!seq.scratch, !fused, "only the unfused stack has a scratch tape");
    loom_tape_free(t);
    loom_state_free(carry);
    loom_seq_free(&seq);
    loom_params_free(ps);
}

Test(memory, steady_state_recompute_step_allocates_nothing)
{
    install();
    recompute_steps_allocate_nothing(1);
    recompute_steps_allocate_nothing(0);
}

#include "loom_dist.h"

typedef struct lm_task {
    loom_seq seq;
    loom_embedding emb;
    loom_linear head;
    loom_rng rng;
    loom_state *carry;
    loom_seq_out out;
    int idx[48], tgt[48];
} lm_task;

static loom_tensor *lm_forward(void *ctx, loom_tape *t, loom_batch *b)
{
    lm_task *k = ctx;
    loom_seq_out *o = &k->out;
    loom_tensor *x = loom_op_embedding(t, k->emb.weight, k->idx, 12 * b->rows);
    b->count = 12.0 * b->rows;
    b->tokens = 12L * b->rows;
    if (loom_seq_forward(&k->seq, t, x, 12, b->rows, NULL, 1, k->carry, &k->rng, o) != LOOM_OK) return NULL;
    return loom_op_softmax_ce(t, loom_linear_apply(t, o->y, k->head.weight, k->head.bias), k->tgt, NULL);
}

static loom_status lm_commit(void *ctx)
{
    lm_task *k = ctx;
    return loom_state_store(k->carry, &k->out);
}

Test(memory, steady_state_trainer_step_allocates_nothing)
{
    /* The library trainer's whole step, all ten phases, log included, in a world of one. */
    install();
    enum { V = 20, E = 8, H = 32, B = 4 };
    static lm_task k;
    loom_cell cells[2];
    loom_lstm_init(&cells[0], E, H, 1.0f);
    loom_lstm_init(&cells[1], H, H, 1.0f);
    loom_params *ps = loom_params_new();
    k.rng = loom_rng_init(3);
    for (int i = 0; i < 48; i++) k.idx[i] = i % V, k.tgt[i] = (i + 1) % V;
    cr_assert_eq(loom_seq_init(&k.seq, cells, 2, 0.2f), LOOM_OK);
    cr_assert_eq(loom_embedding_declare(&k.emb, ps, "embedding", V, E), LOOM_OK);
    cr_assert_eq(loom_seq_declare(&k.seq, ps, "lstm"), LOOM_OK);
    cr_assert_eq(loom_linear_declare(&k.head, ps, "head", H, V), LOOM_OK);
    cr_assert_eq(loom_params_alloc(ps, &k.rng), LOOM_OK);
    cr_assert_not_null(k.carry = loom_state_new(&k.seq, B));
    loom_dist d;
    cr_assert_eq(loom_dist_init(&d, NULL, NULL), LOOM_OK);
    cr_assert_eq(d.size, 1);
    loom_train_config c = loom_train_defaults("test");
    c.steps = 13, c.log_every = 1, c.progress = 0, c.clip = 1.0f, c.log_path = "/dev/null";
    loom_trainer tr;
    loom_optim_config oc = loom_optim_defaults(LOOM_ADAM);
    oc.lr = 1e-2f;
    cr_assert_eq(loom_trainer_init(&tr, &c, &d, ps, oc, (loom_sched){LOOM_SCHED_CONSTANT, 1e-2f, 0, 1, 1, 13, 0}, B),
                 LOOM_OK);
    loom_task task = {&k, lm_forward, NULL, NULL, NULL, lm_commit};
    float first = 0;
    for (int s = 0; s < 13; s++) {
        if (s == 3) {
            atomic_store(&mallocs, 0);
            atomic_store(&counting, 1);
        }
        cr_assert_eq(loom_trainer_step(&tr, &task), LOOM_OK, "%s", loom_error_message());
        if (s == 3) first = (float)tr.last_loss;
    }
    atomic_store(&counting, 0);
    cr_expect_eq(atomic_load(&mallocs), 0, "%ld heap allocations in 10 steady-state trainer steps", atomic_load(&mallocs));
    cr_expect_lt(tr.last_loss, first, "the loss falls (%g -> %g)", first, tr.last_loss);
    loom_trainer_free(&tr);
    loom_state_free(k.carry);
    loom_seq_free(&k.seq);
    loom_params_free(ps);
    loom_dist_finish(&d, 0);
}
