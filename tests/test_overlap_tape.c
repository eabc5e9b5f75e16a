/* The tape's backward hook (loom_tape_set_hook, loom_tape_poll, loom_tape_node), which the
 * trainer uses to start each gradient bucket's all-reduce during backward: the hook's
 * `done` counts down, and a parameter's gradient is final once `done` has passed the
 * first node reading it, fused layers (which poll mid-node) and unrolled ones alike. */
#include "helpers.h"
#include "overlap_model.h"

#define MAX_CALLS 4096

/* What the hook saw: every `done`, and each parameter's gradient when it was declared final. */
typedef struct seen {
    int calls, done[MAX_CALLS];
    loom_params *ps;
    int np, first[16];
    float *snap[16];
    int fail_after; /* > 0: fail on that call */
} seen;

static loom_status record(void *ctx, int done)
{
    seen *s = ctx;
    if (s->calls < MAX_CALLS) s->done[s->calls] = done;
    s->calls++;
    for (int i = 0; i < s->np; i++)
        if (!s->snap[i] && done <= s->first[i]) { /* final from now on, so copy it now */
            loom_tensor *v = loom_params_view(s->ps, i);
            s->snap[i] = malloc(loom_tensor_size(v) * sizeof(float));
            memcpy(s->snap[i], v->grad, loom_tensor_size(v) * sizeof(float));
        }
    if (s->fail_after && s->calls == s->fail_after) return loom_error_set(LOOM_EIO, "hook: the network went away");
    return LOOM_OK;
}

/* The first node with an input whose values lie inside parameter view v (length: none). */
static int first_reader(loom_tape *t, const loom_tensor *v)
{
    int n = loom_tape_length(t);
    for (int k = 0; k < n; k++) {
        const loom_node *nd = loom_tape_node(t, k);
        cr_assert_not_null(nd);
        for (int j = 0; j < nd->n_in; j++)
            if (nd->in[j]->data >= v->data && nd->in[j]->data < v->data + loom_tensor_size(v)) return k;
    }
    return n;
}

static void final_when_hook_says(int fused)
{
    om_model m;
    cr_assert_eq(om_init(&m, fused, 9, 3, 0), LOOM_OK, "%s", loom_error_message());
    loom_tape *t = loom_tape_new(0);
    seen *s = calloc(1, sizeof *s);
    s->ps = m.ps, s->np = loom_params_count(m.ps);
    cr_assert_leq(s->np, 16);
    loom_params_zero_grad(m.ps);
    loom_tensor *loss = om_forward(&m, t);
    cr_assert_not_null(loss, "%s", loom_error_message());
    int n = loom_tape_length(t);
    for (int i = 0; i < s->np; i++) s->first[i] = first_reader(t, loom_params_view(m.ps, i));
    loom_tape_set_hook(t, record, s);
    cr_assert_eq(loom_tape_backward(t, loss), LOOM_OK, "%s", loom_error_message());
    /* after each node, and in between from polls: never rising, ending at 0 */
    cr_expect_geq(s->calls, n);
    if (fused) cr_expect_gt(s->calls, n, "the fused layers never polled");
    else cr_expect_eq(s->calls, n, "plain nodes do not poll");
    for (int c = 1; c < s->calls && c < MAX_CALLS; c++) cr_expect_leq(s->done[c], s->done[c - 1]);
    cr_expect_eq(s->done[0] >= n - 1, 1);
    cr_expect_eq(s->done[(s->calls < MAX_CALLS ? s->calls : MAX_CALLS) - 1], 0);
    /* the head's first reader is late in the tape: its gradient was final long before the end */
    int head = s->np - 1;
    cr_expect_gt(s->first[head], n / 2, "head read at node %d of %d", s->first[head], n);
    for (int i = 0; i < s->np; i++) {
        loom_tensor *v = loom_params_view(m.ps, i);
        cr_assert_not_null(s->snap[i], "%s: never final", loom_params_name(m.ps, i));
        cr_expect_eq(memcmp(s->snap[i], v->grad, loom_tensor_size(v) * sizeof(float)), 0,
                     "%s changed after the hook called it final (first read by node %d)", loom_params_name(m.ps, i),
                     s->first[i]);
        free(s->snap[i]);
    }
    /* unset, the hook is not called */
    int calls = s->calls;
    loom_tape_set_hook(t, NULL, NULL);
    loom_tape_reset(t);
    loom_params_zero_grad(m.ps);
    cr_assert_eq(loom_tape_backward(t, om_forward(&m, t)), LOOM_OK, "%s", loom_error_message());
    cr_expect_eq(s->calls, calls);
    free(s);
    loom_tape_free(t);
    om_free(&m);
}

Test(tape_hook, gradients_final_when_the_hook_says_fused) { final_when_hook_says(1); }
Test(tape_hook, gradients_final_when_the_hook_says_unrolled) { final_when_hook_says(0); }

Test(tape_hook, a_failing_hook_stops_backward)
{
    om_model m;
    cr_assert_eq(om_init(&m, 0, 5, 2, 0), LOOM_OK, "%s", loom_error_message());
    loom_tape *t = loom_tape_new(0);
    seen *s = calloc(1, sizeof *s);
    s->fail_after = 3;
    loom_tensor *loss = om_forward(&m, t);
    loom_tape_set_hook(t, record, s);
    cr_expect_eq(loom_tape_backward(t, loss), LOOM_EIO);
    cr_expect_eq(s->calls, 3, "the walk went on after the hook failed");
    cr_expect_eq(loom_tape_status(t), LOOM_EIO);
    cr_expect(strstr(loom_error_message(), "the network went away"), "%s", loom_error_message());
    free(s);
    loom_tape_free(t);
    om_free(&m);
}

Test(tape_hook, poll_outside_backward_and_nodes_out_of_range)
{
    loom_tape *t = loom_tape_new(0);
    seen *s = calloc(1, sizeof *s);
    loom_tape_set_hook(t, record, s);
    loom_tape_poll(t);
    cr_expect_eq(s->calls, 0, "poll called the hook outside backward");
    cr_expect_null(loom_tape_node(t, 0));
    cr_expect(strstr(loom_error_message(), "tape_node: node 0 of 0"), "%s", loom_error_message());
    cr_expect_null(loom_tape_node(t, -1));
    free(s);
    loom_tape_free(t);
}
