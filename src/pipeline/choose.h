/*
 * choose: mixed precision (--target-bpw, --target-size). Before any output
 * exists, a first pass over the weights measures every candidate on every
 * quantized tensor: each rank takes its units of the plan (the same units,
 * so the same rows, whatever the rank count), sees each row once, and runs
 * each candidate's kernel on it while it is in cache, keeping only the
 * error sums. The sums travel as one array per unit (a unit's values come
 * from its one rank, so their sum over ranks is exact) and rank 0 adds them
 * per tensor in unit order. Rank 0 then solves the knapsack (core/budget.h)
 * over the items (a weight, or the fused projections q/k/v and gate/up that
 * vLLM loads as one layer and so take one scheme), and every rank gets the
 * choice. The run's plan is then rebuilt with each tensor's chosen spec and
 * goes on as any plan: the output is a function of the input and the
 * options alone.
 */
#ifndef MQ_CHOOSE_H
#define MQ_CHOOSE_H

#include "state.h"

/* Every rank: measures the candidates, solves, and rebuilds r->plan with the choice (r->mix). */
int choose_schemes(struct run *r);
void choose_release(struct run *r);

#endif
