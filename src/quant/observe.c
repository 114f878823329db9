#include "observe.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "scheme.h"

const struct mq_scheme_traits *mq_obs_grid(int symmetric)
{
	return mq_scheme_get(symmetric ? MQ_SCHEME_INT8 : MQ_SCHEME_INT8_ASYM);
}

int mq_observer_parse(const char *s, struct mq_observer *o)
{
	memset(o, 0, sizeof(*o));
	if (strcmp(s, "minmax") == 0) {
		o->kind = MQ_OBS_MINMAX;
	} else if (strcmp(s, "mse") == 0) {
		o->kind = MQ_OBS_MSE;
	} else if (strcmp(s, "entropy") == 0) {
		o->kind = MQ_OBS_ENTROPY;
	} else if (strncmp(s, "percentile", 10) == 0) {
		o->kind = MQ_OBS_PERCENTILE;
		o->percentile = 99.99;
		if (s[10] == ':') {
			char *end;
			o->percentile = strtod(s + 11, &end);
			if (end == s + 11 || *end || !(o->percentile > 0.0 && o->percentile <= 100.0))
				return -1;
		} else if (s[10]) {
			return -1;
		}
	} else {
		return -1;
	}
	return 0;
}

void mq_observer_name(const struct mq_observer *o, char *buf, size_t n)
{
	static const char *const names[] = { "minmax", "percentile", "mse", "entropy" };
	if (o->kind == MQ_OBS_PERCENTILE)
		snprintf(buf, n, "percentile:%.10g", o->percentile);
	else
		snprintf(buf, n, "%s", names[o->kind]);
}

/* Order-preserving unsigned keys: of |x| (symmetric) or of x (asymmetric). */
static inline uint32_t key_of(uint32_t bits, int symmetric)
{
	if (symmetric)
		return bits & 0x7fffffffu;
	return bits ^ ((bits >> 31) ? 0xffffffffu : 0x80000000u);
}

static inline float float_of(uint32_t key, int symmetric)
{
	uint32_t bits = symmetric ? key : (key & 0x80000000u) ? key ^ 0x80000000u : ~key;
	return mq_f32_from_bits(bits);
}

static uint64_t rank_of(double p, uint64_t n)
{
	double c = ceil(p / 100.0 * (double)n);
	if (c < 1.0)
		return 0;
	uint64_t k = (uint64_t)c - 1;
	return k < n ? k : n - 1;
}

int mq_obs_init(struct mq_obs_state *s, const struct mq_observer *o, int symmetric, uint64_t n_values)
{
	memset(s, 0, sizeof(*s));
	s->obs = *o;
	s->symmetric = symmetric;
	s->n_values = n_values;
	s->absmax_bits = 0;
	s->min_key = INT32_MAX;
	s->max_key = INT32_MIN;
	size_t bins = 0;
	if (o->kind == MQ_OBS_PERCENTILE) {
		bins = 65536;
		s->k[0] = rank_of(symmetric ? o->percentile : 100.0 - o->percentile, n_values);
		s->k[1] = rank_of(o->percentile, n_values);
		s->hist2 = calloc(65536, sizeof(uint64_t));
		if (!s->hist2)
			return -1;
	} else if (o->kind == MQ_OBS_MSE || o->kind == MQ_OBS_ENTROPY) {
		bins = MQ_OBS_BINS;
	}
	if (bins && !(s->hist = calloc(bins, sizeof(uint64_t)))) {
		mq_obs_release(s);
		return -1;
	}
	return 0;
}

void mq_obs_release(struct mq_obs_state *s)
{
	free(s->hist);
	free(s->hist2);
	s->hist = s->hist2 = NULL;
}

int mq_obs_passes(const struct mq_obs_state *s)
{
	return s->obs.kind == MQ_OBS_MINMAX ? 1 : 2;
}

int mq_obs_feed(struct mq_obs_state *s, const float *x, size_t n, size_t *bad)
{
	const uint32_t *u = (const uint32_t *)(const void *)x;
	if (s->pass == 0) {
		struct mq_range r = { s->absmax_bits, s->min_key, s->max_key, 0 };
		if (mq_range_update(&r, x, n, bad))
			return -1;
		s->absmax_bits = r.absmax_bits;
		s->min_key = r.min_key;
		s->max_key = r.max_key;
		if (s->obs.kind == MQ_OBS_PERCENTILE)
			for (size_t i = 0; i < n; i++)
				s->hist[key_of(u[i], s->symmetric) >> 16]++;
		return 0;
	}
	if (s->obs.kind == MQ_OBS_PERCENTILE) {
		for (size_t i = 0; i < n; i++) {
			uint32_t k = key_of(u[i], s->symmetric);
			if (k >> 16 == s->hi_bucket[0])
				s->hist[k & 0xffffu]++;
			if (!s->symmetric && k >> 16 == s->hi_bucket[1])
				s->hist2[k & 0xffffu]++;
		}
	} else if (s->bin_width > 0.0) {
		for (size_t i = 0; i < n; i++) {
			double b = (double)fabsf(x[i]) / s->bin_width;
			size_t idx = b >= (double)(MQ_OBS_BINS - 1) ? MQ_OBS_BINS - 1 : (size_t)b;
			s->hist[idx]++;
		}
	}
	return 0;
}

/* The bucket holding the k-th smallest key, and the rank of k inside it. */
static uint32_t select_bucket(const uint64_t *hist, uint64_t *k)
{
	uint64_t before = 0;
	for (uint32_t b = 0; b < 65536; b++) {
		if (before + hist[b] > *k) {
			*k -= before;
			return b;
		}
		before += hist[b];
	}
	return 65535;
}

void mq_obs_end_pass(struct mq_obs_state *s)
{
	if (s->pass == 0) {
		if (s->obs.kind == MQ_OBS_PERCENTILE) {
			int n_targets = s->symmetric ? 1 : 2;
			for (int t = 0; t < n_targets; t++) {
				uint64_t k = s->k[t];
				s->hi_bucket[t] = select_bucket(s->hist, &k);
				s->k[t] = k; /* now the rank inside the bucket */
			}
			memset(s->hist, 0, 65536 * sizeof(uint64_t));
		} else if (s->obs.kind != MQ_OBS_MINMAX) {
			s->bin_width = (double)mq_f32_from_bits(s->absmax_bits) / MQ_OBS_BINS;
		}
	} else if (s->pass == 1 && s->obs.kind == MQ_OBS_PERCENTILE) {
		int n_targets = s->symmetric ? 1 : 2;
		for (int t = 0; t < n_targets; t++) {
			uint64_t k = s->k[t];
			uint32_t lo = select_bucket(t == 0 ? s->hist : s->hist2, &k);
			s->lo_bits[t] = lo;
		}
	}
	s->pass++;
}

int mq_obs_mse_choice(const uint64_t *hist, double w)
{
	int best = 0;
	double best_err = (double)INFINITY;
	const double half_steps = (double)mq_grid_half_steps(mq_obs_grid(1)->qmin, mq_obs_grid(1)->qmax);
	for (int i = 0; i < MQ_OBS_BINS; i++) {
		double t = (double)(i + 1) * w, sc = t / half_steps, round_err = sc * sc / 12.0, err = 0.0;
		for (int b = 0; b < MQ_OBS_BINS; b++) {
			double c = ((double)b + 0.5) * w;
			double e = c > t ? (c - t) * (c - t) : round_err;
			err += (double)hist[b] * e;
		}
		if (err < best_err) {
			best_err = err;
			best = i;
		}
	}
	return best;
}

/* Replaces zeros by eps and takes as much from the non-zero entries (MXNet's smoothing). 0: all zero. */
static int smooth(double *v, int n)
{
	const double eps = 1e-4;
	int zeros = 0;
	for (int b = 0; b < n; b++)
		zeros += v[b] == 0.0;
	if (zeros == n)
		return 0;
	double take = eps * (double)zeros / (double)(n - zeros);
	for (int b = 0; b < n; b++)
		v[b] = v[b] == 0.0 ? eps : v[b] - take;
	return 1;
}

int mq_obs_entropy_choice(const uint64_t *hist)
{
	double P[MQ_OBS_BINS], Q[MQ_OBS_BINS], suffix[MQ_OBS_BINS + 1];
	suffix[MQ_OBS_BINS] = 0.0;
	for (int b = MQ_OBS_BINS - 1; b >= 0; b--)
		suffix[b] = suffix[b + 1] + (double)hist[b];
	int best = MQ_OBS_BINS;
	double best_kl = (double)INFINITY;
	for (int i = MQ_OBS_LEVELS; i <= MQ_OBS_BINS; i++) {
		for (int b = 0; b < i; b++)
			P[b] = (double)hist[b];
		P[i - 1] += suffix[i]; /* the clipped values land in the last kept bin */
		/* Q: the unclipped bins merged into 128 levels, spread over P's non-empty bins */
		for (int j = 0; j < MQ_OBS_LEVELS; j++) {
			int b0 = j * i / MQ_OBS_LEVELS, b1 = (j + 1) * i / MQ_OBS_LEVELS, nz = 0;
			double total = 0.0;
			for (int b = b0; b < b1; b++) {
				total += (double)hist[b];
				nz += P[b] > 0.0;
			}
			for (int b = b0; b < b1; b++)
				Q[b] = P[b] > 0.0 ? total / nz : 0.0;
		}
		if (!smooth(P, i) || !smooth(Q, i))
			continue;
		double sum_p = 0.0, sum_q = 0.0, kl = 0.0;
		for (int b = 0; b < i; b++) {
			sum_p += P[b];
			sum_q += Q[b];
		}
		for (int b = 0; b < i; b++) {
			double p = P[b] / sum_p, q = Q[b] / sum_q;
			kl += p * log(p / q);
		}
		if (kl < best_kl) {
			best_kl = kl;
			best = i;
		}
	}
	return best;
}

void mq_obs_result(const struct mq_obs_state *s, struct mq_obs_result *r)
{
	memset(r, 0, sizeof(*r));
	int empty = s->min_key > s->max_key;
	r->min = empty ? 0.0f : mq_key_float(s->min_key);
	r->max = empty ? 0.0f : mq_key_float(s->max_key);
	float amax = mq_f32_from_bits(s->absmax_bits);
	double w = s->bin_width;
	switch (s->obs.kind) {
	case MQ_OBS_MINMAX:
		r->threshold = amax;
		r->lo = r->min;
		r->hi = r->max;
		break;
	case MQ_OBS_PERCENTILE:
		if (s->n_values == 0)
			break;
		if (s->symmetric) {
			r->threshold = float_of((s->hi_bucket[0] << 16) | s->lo_bits[0], 1);
		} else {
			r->lo = float_of((s->hi_bucket[0] << 16) | s->lo_bits[0], 0);
			r->hi = float_of((s->hi_bucket[1] << 16) | s->lo_bits[1], 0);
		}
		break;
	case MQ_OBS_MSE:
		r->threshold = w > 0.0 ? (float)((double)(mq_obs_mse_choice(s->hist, w) + 1) * w) : 0.0f;
		break;
	case MQ_OBS_ENTROPY:
		r->threshold = w > 0.0 ? (float)((double)mq_obs_entropy_choice(s->hist) * w) : 0.0f;
		break;
	}
	r->lo = r->lo < 0.0f ? r->lo : 0.0f;
	r->hi = r->hi > 0.0f ? r->hi : 0.0f;
	const struct mq_scheme_traits *g = mq_obs_grid(s->symmetric);
	r->qp = mq_grid_qparams(s->symmetric, r->threshold, r->lo, r->hi, g->qmin, g->qmax, MQ_DTYPE_F32);
}
