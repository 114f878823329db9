/*
 * write: rank 0's last bytes of the output once every unit is in: the static
 * activation parameters, then the safetensors header (padded to its
 * reservation) or the rest of a torch archive (local headers with the CRCs
 * the units sent, data.pkl, the metadata record and the directory).
 */
#ifndef MQ_WRITE_H
#define MQ_WRITE_H

#include "state.h"

int writer_finish(struct run *r);

#endif
