/*
 * observe: activation observers for static quantization. Pure: they see the
 * calibration values in passes over the data (the caller streams the rows,
 * in any block size, once per pass) and keep only fixed-size state, so
 * memory stays bounded whatever the number of rows. Exact where the spec is
 * exact: min/max and percentiles (a two-pass radix select on the float bits);
 * mse and entropy work on a 2048-bin histogram of |x| over [0, max|x|].
 * The algorithms are written out in README, "Calibration".
 */
#ifndef MQ_OBSERVE_H
#define MQ_OBSERVE_H

#include <stddef.h>
#include <stdint.h>

#include "quant.h"

enum mq_observer_kind { MQ_OBS_MINMAX, MQ_OBS_PERCENTILE, MQ_OBS_MSE, MQ_OBS_ENTROPY };

struct mq_observer {
	enum mq_observer_kind kind;
	double percentile;    /* (0, 100], for MQ_OBS_PERCENTILE */
};

#define MQ_OBS_BINS 2048
#define MQ_OBS_LEVELS 128

/* "minmax", "percentile", "percentile:P", "mse" or "entropy". Returns 0, or -1. */
int mq_observer_parse(const char *s, struct mq_observer *o);
/* Canonical name, e.g. "percentile:99.99", into buf. */
void mq_observer_name(const struct mq_observer *o, char *buf, size_t n);

struct mq_obs_state {
	struct mq_observer obs;
	int symmetric;        /* 1: a threshold on |x|; 0: a range [lo, hi] */
	int pass;             /* current pass, from 0 */
	uint64_t n_values;    /* values the caller will feed in every pass */
	uint32_t absmax_bits; /* pass 0: max |x| */
	int32_t min_key, max_key;
	/* percentile: radix select, targets k[0] (and k[1] for the range) */
	uint64_t k[2];
	uint32_t hi_bucket[2], lo_bits[2];
	uint64_t *hist;       /* 65536 (radix) or MQ_OBS_BINS (histogram) counters, owned */
	uint64_t *hist2;      /* the second target's low histogram (range percentile) */
	double bin_width;
};

/* Prepares the state; n_values is the total count fed in each pass. 0, or -1 out of memory. */
int mq_obs_init(struct mq_obs_state *s, const struct mq_observer *o, int symmetric, uint64_t n_values);
void mq_obs_release(struct mq_obs_state *s);
/* Number of passes over the data the observer needs (1 or 2). */
int mq_obs_passes(const struct mq_obs_state *s);
/* Feeds values of the current pass. Pass 0 returns -1 at a NaN or Inf, its index in *bad. */
int mq_obs_feed(struct mq_obs_state *s, const float *x, size_t n, size_t *bad);
/* Ends the current pass (computes what the next pass needs). */
void mq_obs_end_pass(struct mq_obs_state *s);

struct mq_obs_result {
	float threshold;      /* symmetric: T */
	float lo, hi;         /* asymmetric: the range, with lo <= 0 <= hi */
	float min, max;       /* the exact extremes */
	struct mq_qparams qp; /* scale and zero point */
};

/*
 * The integer grid the activations are quantized to: the int8 row of the
 * scheme table (--act int8, symmetric) or the int8-asym row's.
 */
struct mq_scheme_traits;
const struct mq_scheme_traits *mq_obs_grid(int symmetric);

/* After the last pass: the threshold or range, and the parameters on that grid. */
void mq_obs_result(const struct mq_obs_state *s, struct mq_obs_result *r);

/* The histogram choices, exposed for tests: bin counts in, chosen bin count out. */
int mq_obs_mse_choice(const uint64_t *hist, double width);     /* candidate i: T = (i+1) w */
int mq_obs_entropy_choice(const uint64_t *hist);                /* bins kept i: T = i w */

#endif
