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

/* Adds the sums of tensor t's rows w / wh (n rows) into acc. */
int outspace_sums(struct run *r, int t, const float *w, const float *wh, uint64_t n, struct mq_out_sums *acc);

#endif
