/*
 * budget: one choice per item among its candidates, each candidate a size in
 * bytes and an error, so that the total size stays within a budget and the
 * total error is as small as this finds. It is a multiple-choice knapsack:
 * for a model, an item is a weight (or the weights that must share a scheme,
 * such as fused projections, their sizes and errors added up) and its
 * candidates the schemes it may get.
 *
 * The method, deterministic:
 *   1. Each item's candidates are reduced to its efficient frontier (the
 *      lower convex hull of (bytes, error)): the steps up that hull give less
 *      and less error per extra byte.
 *   2. Every item starts on its smallest candidate; then steps are taken in
 *      order of error saved per byte, largest first (ties: the lower item,
 *      then the lower step), each where it still fits. Up to the first step
 *      that does not fit, this is the optimum of the linear relaxation, in
 *      which one item may take a fraction of a step: that optimum is a lower
 *      bound on any choice's error, and it is reported.
 *   3. Single changes of one item to any candidate, frontier or not, are then
 *      made while one lowers the error and fits (the largest saving first, at
 *      most 256 changes). Steps 1-3 take O(N k log(N k)) for N items of at
 *      most k candidates.
 *   4. Where a table of N x U cells fits in 4 MiB with U >= 1024, a dynamic
 *      programme over the budget in U units (each size rounded up to whole
 *      units, so its choice fits in bytes) finds the least error of that
 *      coarser problem in O(N U k); followed by single changes, it replaces
 *      the greedy choice if it has less error. With units of one byte (a
 *      budget of at most U bytes) it is the exact optimum, and the bound is
 *      raised to it.
 * The greedy result is within the error of one step of the bound (the step
 * that did not fit); the programme mends what one step cannot (a large step
 * that no longer fits after small ones took the room). `gap` says how far
 * above the bound the result ended.
 */
#ifndef MQ_BUDGET_H
#define MQ_BUDGET_H

#include <stddef.h>
#include <stdint.h>

struct mq_budget_item {
	int n;                /* candidates, at least 1 */
	const uint64_t *bytes; /* n sizes */
	const double *error;   /* n errors (finite, >= 0) */
};

struct mq_budget_result {
	uint64_t bytes;       /* the choice's total size */
	double error;         /* its total error */
	double lower_bound;   /* no choice within the budget has less error */
	double gap;           /* error - lower_bound (0: proven optimal) */
	uint64_t min_bytes;   /* the smallest total size any choice has */
};

/*
 * Fills choice[i] (an index into item i's candidates) and *res. Returns 0, or
 * -1 where even the smallest candidates exceed the budget (res->min_bytes says
 * by how much), or -2 out of memory or on a malformed item (n < 1, an error
 * that is not a finite number >= 0).
 */
int mq_budget_solve(const struct mq_budget_item *items, int n_items, uint64_t budget, int *choice,
		    struct mq_budget_result *res);

#endif
