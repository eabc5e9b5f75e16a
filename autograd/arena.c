/* Bump arena: chunks while warming up, one merged chunk in steady state. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define ARENA_ALIGN 64
#define ARENA_DEFAULT (16u << 20)

typedef struct chunk {
    struct chunk *next;
    size_t cap, used;
    unsigned char *mem;
} chunk;

struct loom_arena {
    chunk *head;       /* current chunk; older ones follow via next */
    size_t capacity;   /* bytes over all chunks */
    size_t used_total; /* bytes handed out since reset, over all chunks */
    size_t high;       /* the most used_total has reached between two resets */
};

static chunk *chunk_new(size_t cap)
{
    chunk *c = loom_malloc(sizeof *c);
    if (!c) return NULL;
    c->mem = aligned_alloc(ARENA_ALIGN, (cap + ARENA_ALIGN - 1) / ARENA_ALIGN * ARENA_ALIGN);
    if (!c->mem) {
        loom_free(c);
        loom_error_set(LOOM_ENOMEM, "arena: out of memory reserving %zu bytes", cap);
        return NULL;
    }
    c->cap = cap;
    c->used = 0;
    c->next = NULL;
    return c;
}

static void chunk_free_all(chunk *c)
{
    while (c) {
        chunk *n = c->next;
        free(c->mem);
        loom_free(c);
        c = n;
    }
}

loom_arena *loom_arena_new(size_t bytes)
{
    loom_arena *a = loom_calloc(1, sizeof *a);
    if (!a) return NULL;
    a->head = chunk_new(bytes ? bytes : ARENA_DEFAULT);
    if (!a->head) {
        loom_free(a);
        return NULL;
    }
    a->capacity = a->head->cap;
    return a;
}

void loom_arena_free(loom_arena *a)
{
    if (!a) return;
    chunk_free_all(a->head);
    loom_free(a);
}

void *loom_arena_alloc(loom_arena *a, size_t bytes)
{
    if (!a) return LOOM_NULL_ARG("arena_alloc", "arena"), NULL;
    size_t need = (bytes + ARENA_ALIGN - 1) / ARENA_ALIGN * ARENA_ALIGN;
    if (need == 0) need = ARENA_ALIGN;
    chunk *c = a->head;
    if (c->used + need > c->cap) {
        size_t cap = c->cap * 2 > need ? c->cap * 2 : need;
        chunk *n = chunk_new(cap);
        if (!n) return NULL;
        n->next = c;
        a->head = n;
        a->capacity += cap;
        c = n;
    }
    void *p = c->mem + c->used;
    c->used += need;
    a->used_total += need;
    return p;
}

void loom_arena_reset(loom_arena *a)
{
    if (!a) {
        LOOM_NULL_ARG("arena_reset", "arena");
        return;
    }
    if (a->used_total > a->high) a->high = a->used_total;
    if (a->head->next) {
        /* Several chunks means the step outgrew the arena: merge into one that holds what the
         * step used, plus 1/16 for steps that vary a little (not the chunks' sum, which the
         * doubling growth leaves up to twice as large). */
        size_t cap = a->used_total + a->used_total / 16;
        chunk *merged = chunk_new(cap);
        if (merged) {
            chunk_free_all(a->head);
            a->head = merged;
            a->capacity = cap;
        } else {
            for (chunk *c = a->head; c; c = c->next) c->used = 0;
        }
    }
    a->head->used = 0;
    a->used_total = 0;
}

size_t loom_arena_used(const loom_arena *a)
{
    if (!a) return LOOM_NULL_ARG("arena_used", "arena"), 0;
    return a->used_total;
}

size_t loom_arena_high_water(const loom_arena *a)
{
    if (!a) return LOOM_NULL_ARG("arena_high_water", "arena"), 0;
    return a->used_total > a->high ? a->used_total : a->high;
}

size_t loom_arena_capacity(const loom_arena *a)
{
    if (!a) return LOOM_NULL_ARG("arena_capacity", "arena"), 0;
    return a->capacity;
}
