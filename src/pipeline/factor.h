/*
 * factor: the GPTQ factor of the layer in hand. The rank that owns a GPTQ layer
 * (plan: gptq_rank, all of the layer's units) builds its Hessian from the
 * calibration inputs once, on its first unit, keeps the factor while it
 * works through the layer's units, and frees it before the next layer: one
 * layer's state at a time (plan: gptq_bytes). The arithmetic is calib/gptq.c.
 */
#ifndef MQ_FACTOR_H
#define MQ_FACTOR_H

#include "state.h"

/* The factor of plan tensor t, built now unless it is the one in hand; NULL on error (r->err). Adds its time to *seconds. */
const struct mq_gptq_layer *gptq_layer(struct run *r, int t, double *seconds);

/* Frees the factor in hand (end of the run, or of a failure). */
void gptq_release(struct run *r);

#endif
