/* seq2seq's model: encoder, attention decoder, loss, greedy and beam-search decoding. */
#include "s2s_model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A stack of `layers` cells under "<prefix>.<cell>" (PyTorch's names inside a module). */
static loom_status declare_stack(loom_seq *s, loom_params *ps, const char *prefix, const char *cell, int input,
                                 int hidden, int layers, float dropout, float forget_bias, int bidir)
{
    loom_cell *cells = calloc((size_t)layers, sizeof *cells);
    if (!cells) return loom_error_set(LOOM_ENOMEM, "out of memory for %d layers", layers);
    loom_status st = LOOM_OK;
    for (int l = 0; l < layers && st == LOOM_OK; l++) {
        st = loom_cell_init_kind(&cells[l], cell, l ? hidden : input, hidden);
        cells[l].forget_bias = forget_bias;
    }
    if (st == LOOM_OK) st = loom_seq_init(s, cells, layers, dropout);
    free(cells);
    if (st == LOOM_OK && bidir) st = loom_seq_set_bidirectional(s, 1);
    char name[64];
    snprintf(name, sizeof name, "%s.%s", prefix, strncmp(cell, "rnn", 3) == 0 ? "rnn" : cell);
    return st == LOOM_OK ? loom_seq_declare(s, ps, name) : st;
}

loom_status s2s_declare(s2s_model *m, const char *cell, float forget_bias)
{
    int H = m->hidden, He = m->bidir ? H / 2 : H, V = m->nphones + 1;
    if (m->bidir && H % 2)
        return loom_error_set(LOOM_EARG, "a bidirectional encoder needs an even --hidden (each direction has half), not %d", H);
    loom_init emb = {LOOM_INIT_UNIFORM, -0.1f, 0.1f}, lin = {LOOM_INIT_UNIFORM, -1.0f / sqrtf((float)H), 1.0f / sqrtf((float)H)};
    loom_linear comb, head;
    loom_status st = (m->ps = loom_params_new()) ? LOOM_OK : LOOM_ENOMEM;
    if (st == LOOM_OK)
        st = (m->letter_emb = loom_params_add(m->ps, "embedding.letters.weight", m->nletters + 1, m->embed, emb)) ? LOOM_OK : LOOM_EARG;
    if (st == LOOM_OK)
        st = declare_stack(&m->enc, m->ps, "encoder", cell, m->embed, He, m->layers, m->dropout, forget_bias, m->bidir);
    if (st == LOOM_OK)
        st = (m->phone_emb = loom_params_add(m->ps, "embedding.phones.weight", V, m->embed, emb)) ? LOOM_OK : LOOM_EARG;
    if (st == LOOM_OK)
        st = declare_stack(&m->dec, m->ps, "decoder", cell, m->embed + H, H, m->layers, m->dropout, forget_bias, 0);
    if (st == LOOM_OK) st = (m->attn_w = loom_params_add(m->ps, "attention.weight", H, H, lin)) ? LOOM_OK : LOOM_EARG;
    if (st == LOOM_OK) st = loom_linear_declare(&comb, m->ps, "combine", 2 * H, H);
    if (st == LOOM_OK) st = loom_linear_declare(&head, m->ps, "head", H, V);
    if (st == LOOM_OK) {
        m->comb_w = comb.weight, m->comb_b = comb.bias;
        m->out_w = head.weight, m->out_b = head.bias;
    }
    return st;
}

void s2s_apply_init(s2s_model *m)
{
    loom_seq_apply_init(&m->enc);
    loom_seq_apply_init(&m->dec);
}

void s2s_free(s2s_model *m)
{
    loom_seq_free(&m->enc);
    loom_seq_free(&m->dec);
    loom_params_free(m->ps);
    m->ps = NULL;
}

loom_status s2s_batch_new(s2s_batch *b, int cap)
{
    memset(b, 0, sizeof *b);
    size_t n = (size_t)cap * (S2S_MAX_LEN + 1);
    b->cap = cap;
    b->x = malloc(n * sizeof(int));
    b->xlen = malloc((size_t)cap * sizeof(int));
    b->mask = malloc(n);
    b->yin = malloc(n * sizeof(int));
    b->yout = malloc(n * sizeof(int));
    b->w = malloc(n * sizeof(float));
    if (!b->x || !b->xlen || !b->mask || !b->yin || !b->yout || !b->w) {
        s2s_batch_free(b);
        return loom_error_set(LOOM_ENOMEM, "out of memory for a batch of %d words", cap);
    }
    return LOOM_OK;
}

void s2s_batch_free(s2s_batch *b)
{
    free(b->x), free(b->xlen), free(b->mask), free(b->yin), free(b->yout), free(b->w);
    memset(b, 0, sizeof *b);
}

loom_status s2s_batch_fill(s2s_batch *b, int n, const char *const *words, const int *const *ph, const int *phlen,
                           const int *letter_id, int nphones, int Tx, int Ty)
{
    if (n < 1 || n > b->cap) return loom_error_set(LOOM_EARG, "batch of %d words: expected 1 to %d", n, b->cap);
    int mx = 1, my = 1;
    for (int i = 0; i < n; i++) {
        int L = (int)strlen(words[i]);
        if (L < 1 || L > S2S_MAX_LEN) return loom_error_set(LOOM_EARG, "'%s': words of 1 to %d letters only", words[i], S2S_MAX_LEN);
        if (ph && (phlen[i] < 0 || phlen[i] > S2S_MAX_LEN))
            return loom_error_set(LOOM_EARG, "'%s': %d phones; at most %d", words[i], phlen[i], S2S_MAX_LEN);
        mx = L > mx ? L : mx;
        if (ph) my = phlen[i] + 1 > my ? phlen[i] + 1 : my;
    }
    b->B = n;
    b->Tx = Tx > 0 ? Tx : mx;
    b->Ty = Ty > 0 ? Ty : my;
    if (b->Tx < mx || b->Ty < my || b->Tx > S2S_MAX_LEN + 1 || b->Ty > S2S_MAX_LEN + 1)
        return loom_error_set(LOOM_EARG, "batch padded to %d letters and %d steps holds words of %d and %d", b->Tx, b->Ty, mx, my);
    for (int i = 0; i < n; i++) {
        const unsigned char *s = (const unsigned char *)words[i];
        int L = (int)strlen(words[i]);
        b->xlen[i] = L;
        for (int t = 0; t < b->Tx; t++) {
            int id = t < L ? letter_id[s[t]] : 0;
            if (t < L && id <= 0) return loom_error_set(LOOM_EARG, "'%s': letter '%c' is not in the alphabet", words[i], s[t]);
            b->x[t * n + i] = id;
            b->mask[i * b->Tx + t] = t < L;
        }
        for (int t = 0; t < b->Ty; t++) {
            int len = ph ? phlen[i] : 0;
            b->yin[t * n + i] = t == 0 ? nphones : t <= len ? ph[i][t - 1] : 0;
            b->yout[t * n + i] = t < len ? ph[i][t] : t == len ? nphones : 0;
            b->w[t * n + i] = ph && t <= len;
        }
    }
    return LOOM_OK;
}

/* What the decoder attends to and starts from. */
typedef struct memory {
    int B, T;
    loom_tensor *keys, *values; /* [B*T x H] batch-major: keys W_a-projected, values the encoder's states */
    const unsigned char *mask;  /* [B*T] */
    loom_tensor **state;        /* the decoder's initial state parts */
} memory;

static loom_status encode(s2s_model *m, loom_tape *t, const s2s_batch *b, int train, loom_rng *rng, memory *mem)
{
    int B = b->B, T = b->Tx, ns = m->dec.cells[0].n_state, P = loom_seq_state_count(&m->dec);
    loom_seq_out o;
    loom_tensor *x = loom_op_embedding(t, m->letter_emb, b->x, T * B);
    if (!x || loom_seq_forward(&m->enc, t, x, T, B, b->xlen, train, NULL, rng, &o) != LOOM_OK) return loom_tape_status(t);
    mem->B = B, mem->T = T, mem->mask = b->mask;
    mem->keys = loom_op_transpose_blocks(t, loom_op_matmul(t, o.y, m->attn_w, 0, 1), T);
    mem->values = loom_op_transpose_blocks(t, o.y, T);
    if (!(mem->state = loom_arena_alloc(loom_tape_arena(t), sizeof(loom_tensor *) * (size_t)P)))
        return loom_error_set(LOOM_ENOMEM, "out of memory");
    /* Decoder layer l starts from encoder layer l's final state, both directions side by side. */
    for (int l = 0; l < m->layers; l++)
        for (int k = 0; k < ns; k++) {
            loom_tensor *fwd = o.last[loom_seq_state_index(&m->enc, l, k)];
            loom_tensor *both[2] = {fwd, m->bidir ? o.last[loom_seq_state_index(&m->enc, l, ns + k)] : NULL};
            mem->state[loom_seq_state_index(&m->dec, l, k)] = m->bidir ? loom_op_concat(t, both, 2) : fwd;
        }
    return loom_tape_status(t); /* a failed op above has marked it */
}

/* One decoder step for B rows: input tokens and the previous attentional state `feed`; the
 * state parts are replaced by the next ones. Returns the attentional state [B x H]. */
static loom_tensor *dec_step(s2s_model *m, loom_tape *t, const memory *mem, const int *tokens, loom_tensor *feed,
                             loom_tensor **state, int train, loom_rng *rng)
{
    int B = mem->B;
    loom_tensor *in[2] = {loom_op_embedding(t, m->phone_emb, tokens, B), feed};
    loom_tensor *x = loom_op_concat(t, in, 2);
    loom_seq_out o;
    if (!x || loom_seq_forward_from(&m->dec, t, x, 1, B, NULL, train, state, rng, &o) != LOOM_OK) return NULL;
    memcpy(state, o.last, sizeof(loom_tensor *) * (size_t)o.n_last);
    loom_tensor *h = o.y;
    loom_tensor *alpha = loom_op_masked_softmax(t, loom_op_bmm(t, h, mem->keys, B, 0, 1), mem->mask); /* [B x T] */
    loom_tensor *both[2] = {loom_op_bmm(t, alpha, mem->values, B, 0, 0), h};                        /* context, h */
    return loom_op_tanh(t, loom_linear_apply(t, loom_op_concat(t, both, 2), m->comb_w, m->comb_b));
}

loom_tensor *s2s_loss(s2s_model *m, loom_tape *t, const s2s_batch *b, int train, loom_rng *rng)
{
    memory mem;
    int B = b->B, T = b->Ty;
    float p = train ? m->dropout : 0.0f;
    if (encode(m, t, b, train, rng, &mem) != LOOM_OK) return NULL;
    loom_tensor **outs = loom_arena_alloc(loom_tape_arena(t), sizeof(loom_tensor *) * (size_t)T);
    loom_tensor *feed = loom_tape_zeros(t, B, m->hidden);
    if (!outs || !feed) return NULL;
    for (int s = 0; s < T; s++) {
        loom_tensor *ht = dec_step(m, t, &mem, b->yin + (size_t)s * B, feed, mem.state, train, rng);
        if (!ht) return NULL;
        outs[s] = p > 0 ? loom_op_dropout_shard(t, ht, p, rng, B, m->global_batch, m->row0) : ht;
        feed = ht;
    }
    loom_tensor *logits = loom_linear_apply(t, loom_op_vstack(t, outs, T), m->out_w, m->out_b);
    return loom_op_softmax_ce_smooth(t, logits, b->yout, b->w, train ? m->label_smoothing : 0.0f);
}

/* Row i's length limit: maxlen, and at most 2 phones per letter plus 5 (CMUdict's most for
 * its letters is "kwh", 11 phones), so an untrained or looping decoder stops early. */
static int cap_of(const s2s_batch *b, int i, int maxlen)
{
    int c = 2 * b->xlen[i] + 5;
    return c < maxlen ? c : maxlen;
}

/* log softmax of a row of V logits, in double. */
static void log_softmax(const float *x, int V, double *out)
{
    double mx = x[0], z = 0;
    for (int v = 1; v < V; v++) mx = x[v] > mx ? x[v] : mx;
    for (int v = 0; v < V; v++) z += exp(x[v] - mx);
    double lz = mx + log(z);
    for (int v = 0; v < V; v++) out[v] = x[v] - lz;
}

loom_status s2s_greedy(s2s_model *m, loom_tape *t, const s2s_batch *b, int maxlen, s2s_hyp *out)
{
    int B = b->B, V = m->nphones + 1, END = m->nphones, was = loom_tape_set_nograd(t, 1), left = B;
    int *tok = malloc(sizeof(int) * (size_t)B);
    double *lp = malloc(sizeof(double) * (size_t)V), *sum = calloc((size_t)B, sizeof(double));
    unsigned char *done = calloc((size_t)B, 1);
    memory mem;
    loom_tape_reset(t);
    loom_status st = tok && lp && sum && done ? encode(m, t, b, 0, NULL, &mem) : loom_error_set(LOOM_ENOMEM, "out of memory");
    loom_tensor *feed = st == LOOM_OK ? loom_tape_zeros(t, B, m->hidden) : NULL;
    for (int i = 0; i < B; i++) tok[i] = END, out[i].len = 0, out[i].ended = 0, out[i].score = 0;
    for (int s = 0; s <= maxlen && feed && left > 0; s++) {
        loom_tensor *ht = dec_step(m, t, &mem, tok, feed, mem.state, 0, NULL);
        loom_tensor *lg = loom_linear_apply(t, ht, m->out_w, m->out_b);
        if (!lg) break;
        for (int i = 0; i < B; i++) {
            if (done[i]) continue;
            log_softmax(lg->data + (size_t)i * V, V, lp);
            int best = 0;
            for (int v = 1; v < V; v++)
                if (lp[v] > lp[best]) best = v;
            if (best == END || s == cap_of(b, i, maxlen)) { /* the end, or no room left: cut */
                out[i].ended = best == END;
                if (out[i].ended) sum[i] += lp[best];
                int n = out[i].len + out[i].ended;
                out[i].score = (float)(sum[i] / pow(n > 0 ? n : 1, m->len_norm));
                done[i] = 1;
                left--;
            } else {
                sum[i] += lp[best];
                out[i].ph[out[i].len++] = best;
            }
            tok[i] = best;
        }
        feed = ht;
    }
    if (st == LOOM_OK) st = loom_tape_status(t);
    loom_tape_set_nograd(t, was);
    free(tok), free(lp), free(sum), free(done);
    return st;
}

/* Candidates of one word's step: the best `want` (beam, phone) extensions, best first. */
static int top_candidates(const double *score, const double *lp, const unsigned char *live, int K, int V, int want,
                          int *cand_r, int *cand_v, double *cand_s)
{
    int n = 0;
    for (int k = 0; k < K; k++) {
        if (!live[k]) continue;
        for (int v = 0; v < V; v++) {
            double s = score[k] + lp[(size_t)k * V + v];
            if (n == want && s <= cand_s[n - 1]) continue;
            int j = n < want ? n++ : n - 1; /* insertion into the sorted list */
            while (j > 0 && cand_s[j - 1] < s) {
                cand_s[j] = cand_s[j - 1], cand_r[j] = cand_r[j - 1], cand_v[j] = cand_v[j - 1];
                j--;
            }
            cand_s[j] = s, cand_r[j] = k, cand_v[j] = v;
        }
    }
    return n;
}

/* Adds a finished hypothesis to word w's list (room for K), keeping it sorted by score. */
static void add_final(s2s_hyp *fin, int *nfin, int K, const int *ph, int len, int ended, double sum, float alpha)
{
    int n = len + ended;
    float sc = (float)(sum / pow(n > 0 ? n : 1, alpha));
    if (*nfin == K && fin[K - 1].score >= sc) return;
    int j = *nfin < K ? (*nfin)++ : K - 1;
    while (j > 0 && fin[j - 1].score < sc) fin[j] = fin[j - 1], j--;
    fin[j].len = len, fin[j].ended = ended, fin[j].score = sc;
    memcpy(fin[j].ph, ph, sizeof(int) * (size_t)len);
}

loom_status s2s_beam(s2s_model *m, loom_tape *t, const s2s_batch *b, int K, int maxlen, s2s_hyp *out)
{
    if (K < 1 || K > S2S_MAX_BEAM) return loom_error_set(LOOM_EARG, "beam: %d beams; 1 to %d", K, S2S_MAX_BEAM);
    int B = b->B, R = B * K, T = b->Tx, V = m->nphones + 1, END = m->nphones, H1 = S2S_MAX_LEN + 1;
    int P = loom_seq_state_count(&m->dec), was = loom_tape_set_nograd(t, 1), left = B, want = 2 * K;
    int *tok = malloc(sizeof(int) * (size_t)R), *par = malloc(sizeof(int) * (size_t)R), *len = calloc((size_t)R, sizeof(int));
    int *hist = malloc(sizeof(int) * (size_t)R * H1), *nhist = malloc(sizeof(int) * (size_t)R * H1);
    int *gidx = malloc(sizeof(int) * (size_t)R * T), *nfin = calloc((size_t)B, sizeof(int));
    int *cr = malloc(sizeof(int) * (size_t)want), *cv = malloc(sizeof(int) * (size_t)want);
    double *lp = malloc(sizeof(double) * (size_t)R * V), *score = malloc(sizeof(double) * (size_t)R);
    double *nscore = malloc(sizeof(double) * (size_t)R), *cs = malloc(sizeof(double) * (size_t)want);
    unsigned char *live = calloc((size_t)R, 1), *mask = malloc((size_t)R * T), *done = calloc((size_t)B, 1);
    memory mem, big;
    loom_tape_reset(t);
    loom_status st = tok && par && len && hist && nhist && gidx && nfin && cr && cv && lp && score && nscore && cs && live &&
                             mask && done ? encode(m, t, b, 0, NULL, &mem) : loom_error_set(LOOM_ENOMEM, "out of memory");
    for (int i = 0; i < R; i++) out[i].len = -1;
    /* Every word's memory repeated for its K beams: row r = w*K + k reads word w's. */
    loom_tensor **state = st == LOOM_OK ? loom_arena_alloc(loom_tape_arena(t), sizeof(loom_tensor *) * (size_t)P) : NULL;
    loom_tensor *feed = NULL;
    if (state) {
        for (int r = 0; r < R; r++)
            for (int s = 0; s < T; s++) gidx[r * T + s] = (r / K) * T + s, mask[r * T + s] = b->mask[(r / K) * T + s];
        big = (memory){R, T, loom_op_embedding(t, mem.keys, gidx, R * T), loom_op_embedding(t, mem.values, gidx, R * T), mask, state};
        for (int r = 0; r < R; r++) par[r] = r / K, tok[r] = END, live[r] = r % K == 0, score[r] = 0;
        for (int i = 0; i < P; i++) state[i] = loom_op_embedding(t, mem.state[i], par, R);
        feed = loom_tape_zeros(t, R, m->hidden);
    }
    for (int s = 0; s <= maxlen && feed && left > 0; s++) {
        loom_tensor *ht = dec_step(m, t, &big, tok, feed, state, 0, NULL);
        loom_tensor *lg = loom_linear_apply(t, ht, m->out_w, m->out_b);
        if (!lg) break;
        for (int r = 0; r < R; r++)
            if (live[r]) log_softmax(lg->data + (size_t)r * V, V, lp + (size_t)r * V);
        for (int w = 0; w < B; w++) {
            int r0 = w * K, nb = 0;
            if (!done[w]) {
                int n = top_candidates(score + r0, lp + (size_t)r0 * V, live + r0, K, V, want, cr, cv, cs), cap = cap_of(b, w, maxlen);
                unsigned long long cut = 0; /* at the length limit: the beams already cut (bit k) */
                for (int c = 0; c < n && nb < K && nfin[w] < K; c++) {
                    int r = r0 + cr[c];
                    if (cv[c] == END) add_final(out + r0, &nfin[w], K, hist + (size_t)r * H1, len[r], 1, cs[c], m->len_norm);
                    else if (s < cap) { /* a new beam, from row r */
                        int q = r0 + nb++;
                        par[q] = r, tok[q] = cv[c], nscore[q] = cs[c];
                        memcpy(nhist + (size_t)q * H1, hist + (size_t)r * H1, sizeof(int) * (size_t)len[r]);
                        nhist[(size_t)q * H1 + len[r]] = cv[c];
                    } else { /* no room for it: its beam ends here, cut, as greedy decoding's does */
                        nb++;
                        if (!(cut >> cr[c] & 1ull)) add_final(out + r0, &nfin[w], K, hist + (size_t)r * H1, len[r], 0, score[r], m->len_norm);
                        cut |= 1ull << cr[c];
                    }
                }
                if (nfin[w] >= K || nb == 0 || s == cap) done[w] = 1, left--;
            }
            for (int k = nb; k < K; k++) par[r0 + k] = r0 + k, tok[r0 + k] = END; /* dead rows */
            for (int k = 0; k < K; k++) live[r0 + k] = !done[w] && k < nb;
        }
        /* The beams' histories, lengths and scores follow their parents. */
        for (int r = 0; r < R; r++)
            if (live[r]) {
                int l = len[par[r]] + 1;
                memcpy(hist + (size_t)r * H1, nhist + (size_t)r * H1, sizeof(int) * (size_t)l);
            }
        for (int r = 0; r < R; r++)
            if (!live[r]) nscore[r] = -INFINITY;
        int *nl = gidx; /* scratch for the new lengths (gidx's work was done at the start) */
        for (int r = 0; r < R; r++) nl[r] = live[r] ? len[par[r]] + 1 : 0;
        memcpy(len, nl, sizeof(int) * (size_t)R);
        memcpy(score, nscore, sizeof(double) * (size_t)R);
        for (int i = 0; i < P; i++) state[i] = loom_op_embedding(t, state[i], par, R);
        feed = loom_op_embedding(t, ht, par, R);
    }
    if (st == LOOM_OK) st = loom_tape_status(t);
    loom_tape_set_nograd(t, was);
    free(tok), free(par), free(len), free(hist), free(nhist), free(gidx), free(nfin), free(cr), free(cv);
    free(lp), free(score), free(nscore), free(cs), free(live), free(mask), free(done);
    return st;
}
