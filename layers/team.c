/* How a row team divides its batch rows: in proportion to each thread's measured speed.
 * On a virtual machine one vCPU can run 6-13% slower than the other for minutes (a busy
 * neighbour on the host), and an even split then waits on it at every region's end. Each
 * team region reports its threads' busy times; the next region gives a slow thread fewer
 * rows. Only where every row's result is the same whoever computes it (the packed kernel,
 * the cells' row kernels), so the split moves no bit: see loom_layer_fused.
 *
 * The speeds are per calling thread (the team's master), in thread-local storage: they
 * describe the threads that master's teams run on, and need no lock. They are kept by
 * OpenMP thread number; a thread the OS moves to another CPU is relearned in a few regions. */
#include "internal.h"

/* Relative time per row of team slot q (mean 1; 0: not yet measured, taken as 1). */
static _Thread_local float slot_time[LOOM_TEAM_MAX];

/* A new measurement counts a quarter, and within 0.8 to 1.25 of the slot's time so far:
 * one region's noise (a preempted thread) moves it by 6% at most, a lasting difference
 * takes a few regions. */
#define LEARN_RATE 0.25f
#define STEP_MIN 0.8
#define STEP_MAX 1.25
/* Times per row stay within 0.5 to 2 before the mean is taken out: two slots' shares
 * differ by 4 times at most. */
#define TIME_MIN 0.5f
#define TIME_MAX 2.0f

static float time_of(int q) { return slot_time[q] > 0.0f ? slot_time[q] : 1.0f; }

void loom_team_rows(int team, int B, int adapt, int *rows)
{
    double total = 0.0, cum = 0.0;
    adapt = adapt && team <= LOOM_TEAM_MAX;
    for (int q = 0; adapt && q < team; q++) total += 1.0 / time_of(q);
    for (int q = 0; q <= team; q++) {
        rows[q] = adapt ? (int)(B * (cum / total) + 0.5) : (int)((long)q * B / team);
        if (adapt && q < team) cum += 1.0 / time_of(q);
    }
    rows[team] = B; /* exact, whatever the rounding */
}

void loom_team_learn(int team, const int *rows, const double *busy)
{
    if (team < 2 || team > LOOM_TEAM_MAX) return;
    double per[LOOM_TEAM_MAX], mean = 0.0;
    int n = 0;
    for (int q = 0; q < team; q++) {
        int r = rows[q + 1] - rows[q];
        per[q] = r > 0 && busy[q] > 0.0 ? busy[q] / r : 0.0;
        if (per[q] > 0.0) mean += per[q], n++;
    }
    if (n < team) return; /* a slot without rows or time says nothing about its speed */
    mean /= n;
    float sum = 0.0f;
    for (int q = 0; q < team; q++) {
        double m = per[q] / mean, lo = STEP_MIN * time_of(q), hi = STEP_MAX * time_of(q);
        float t = (1.0f - LEARN_RATE) * time_of(q) + LEARN_RATE * (float)(m < lo ? lo : m > hi ? hi : m);
        slot_time[q] = t < TIME_MIN ? TIME_MIN : t > TIME_MAX ? TIME_MAX : t;
        sum += slot_time[q];
    }
    for (int q = 0; q < team; q++) slot_time[q] *= (float)team / sum; /* mean 1: no drift */
}

void loom_team_set_times(const float *times, int n)
{
    for (int q = 0; q < LOOM_TEAM_MAX; q++) slot_time[q] = times && q < n ? times[q] : 0.0f;
}

void loom_team_get_times(float *times, int n)
{
    for (int q = 0; q < n && q < LOOM_TEAM_MAX; q++) times[q] = time_of(q);
}
