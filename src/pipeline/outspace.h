/*
 * outspace: the output-space error of a calibrated layer. For n weight rows
 * w (and wh, the same rows dequantized) the sums of Y², (Y - Ŷw)² and, with
 * static activation parameters, (Y - Ŷwa)² over the layer's calibration rows,
 * where Y = X Wᵀ. The rows are read in fixed blocks whose size depends on the
 * shapes only, so the sums do not depend on the rank count.
 */
#ifndef MQ_OUTSPACE_H
#define MQ_OUTSPACE_H

#include <stdint.h>

#include "state.h"

/*
 * Tensor t's calibration rows [0, calib_rows) in blocks of xb rows (whole
 * HDF5 chunks): each block read into x (xb × the row's values), checked for
 * NaN and Inf (an error naming the file, layer and position), then given to
 * fn with its first row and its row count. The read time and the bytes are
 * counted; between blocks rank 0 takes records. Stops at fn's nonzero return.
 */
int outspace_blocks(struct run *r, int t, uint64_t xb, float *x,
		    int (*fn)(struct run *r, const float *x, uint64_t row, uint64_t n, void *ctx), void *ctx);

/* Rows [row, row + n) of tensor t's calibration inputs (open as l) into x, timed and checked as above. */
int outspace_read(struct run *r, struct mq_calib_layer *l, int t, uint64_t row, uint64_t n, float *x);

/* Adds the sums of tensor t's rows w / wh (n rows) into acc. */
int outspace_sums(struct run *r, int t, const float *w, const float *wh, uint64_t n, struct mq_out_sums *acc);

/* How a candidate quantizes a layer's activations: si NULL for not at all, else on si's grid with static parameters. */
struct outspace_act {
	const struct mq_scheme_traits *si;
	double scale, zero_point;
};

/*
 * Mixed precision: the output-space sums of n weight rows w against n_cand
 * candidates' dequantized rows wh[k] (NULL: not measured), over tensor t's
 * calibration rows in the same fixed blocks: *signal += the sum of Y², and
 * noise[k] += the sum of (Y - Ŷk)², Ŷk = act_k(X) wh[k]ᵀ.
 */
int outspace_candidates(struct run *r, int t, const float *w, const float *const *wh, const struct outspace_act *act,
			int n_cand, uint64_t n, double *signal, double *noise);

#endif
