/*
 * factor: GPTQ layers' factors in the run, in waves (plan: gptq_order,
 * gptq_wave). In a wave every owner rank builds one layer's Hessian and
 * factor from the calibration inputs at the same time; the wave's layers are
 * then taken one after another: the owner sends the factor to the ranks that
 * have units of the layer (plan: unit j on rank owner + j), and every rank
 * sweeps its units of it. A rank so holds its own layer's state and at most
 * one received factor at a time. The arithmetic is calib/gptq.c.
 *
 * Every rank goes through the same sequence of layers whatever happens: an
 * owner that cannot build (a failure, a cancel, SIGUSR1) still sends the
 * layer's header, saying so, and the others report their units of it as
 * skipped or not started, so nobody waits for a factor that never comes.
 */
#ifndef MQ_FACTOR_H
#define MQ_FACTOR_H

#include "state.h"

/* The factor of plan tensor t, which the wave in progress holds; adds its build time once to *seconds. */
const struct mq_gptq_layer *gptq_layer(struct run *r, int t, double *seconds);

/* This rank's part of every GPTQ layer's units (unit.c's unit_take for each of its units). */
int gptq_waves(struct run *r);

/* Frees whatever factor is still held (end of the run, or of a failure). */
void gptq_release(struct run *r);

#endif
