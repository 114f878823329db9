/*
 * prepare: the per-layer preparation phase, between the plan and the units.
 * Each layer that needs state before its rows are quantized gets it from one
 * owner rank (the plan's act_rank, longest layers first), and every rank then
 * holds every layer's state. Today that state is the layer's static
 * activation parameters (the observer's threshold, scale and zero point over
 * the calibration rows); the layer's method (quant/method.h) says what more
 * it needs (round to nearest: nothing).
 */
#ifndef MQ_PREPARE_H
#define MQ_PREPARE_H

#include "state.h"

/* Collective: r->layers for every plan tensor (zeros where nothing was prepared), unless the choice of schemes set it. */
int prepare_layers(struct run *r);

/*
 * Tensor i's static activation parameters on the activations' grid of
 * weight scheme si: the observer over its calibration rows.
 */
int prepare_observe(struct run *r, int i, const struct mq_scheme_traits *si, struct mq_layer_state *out);

#endif
