/*
 * lpt: one deterministic longest-processing-time-first balancer, for work
 * units to ranks, calibrated layers to their owner ranks and a job's models
 * to rank groups. Items are taken longest first (ties: by name, then key,
 * then index, so the order is total and the same on every rank) and each
 * goes to the least loaded bin so far (the lowest bin on ties).
 */
#ifndef MQ_LPT_H
#define MQ_LPT_H

#include <stdint.h>

struct mq_lpt_item {
	uint64_t cost;        /* the sort key: longest first */
	uint64_t weight;      /* what it adds to its bin's load */
	const char *name;     /* ties, or NULL (before any name) */
	uint64_t key;         /* ties after the name (a chunk index) */
	int index;            /* the caller's item; last tie */
	int bin;              /* out */
};

/* Sorts items (in place) and fills each one's bin; load[n_bins] must start as the bins' loads (zeros). */
void mq_lpt_assign(struct mq_lpt_item *items, int n, int n_bins, uint64_t *load);

#endif
