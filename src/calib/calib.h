/*
 * calib: calibration activations from HDF5. The only module that includes
 * hdf5.h. Each rank opens the file read-only by itself (no MPI-IO, no
 * collective calls) and reads only the layers it needs, in blocks of whole
 * chunks of rows (hyperslabs), so memory stays bounded whatever the number
 * of calibration rows.
 *
 * File layout (README, "Calibration file"): one group per layer, named by the
 * layer's module path, holding a dataset "inputs" of shape [rows, in] (Linear)
 * or [n, in, h, w] (Conv), float32 or float16, chunked by rows; root
 * attributes model, dataset, num_samples.
 */
#ifndef MQ_CALIB_H
#define MQ_CALIB_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "observe.h"
#include "status.h"

struct mq_calib;        /* an open file */
struct mq_calib_layer;  /* an open "inputs" dataset */

struct mq_calib_shape {
	int ndim;              /* 2 (Linear) or 4 (Conv) */
	uint64_t shape[4];
	int f16;               /* stored as float16 (else float32) */
	uint64_t chunk_rows;   /* rows per HDF5 chunk (1 when contiguous) */
	uint64_t row_elems;    /* values per row: prod(shape[1:]) */
};

/* What the file holds for one layer (plan time): shape, and the Conv attributes. */
struct mq_calib_info {
	int present;               /* 0: the file has no group for this layer */
	struct mq_calib_shape shape;
	int64_t stride[2], padding[2], dilation[2], groups; /* Conv; defaults 1, 0, 1, 1 */
};

int mq_calib_open(const char *path, struct mq_calib **c, struct mq_error *err);
/* Fills info; a missing group is not an error (present = 0), a malformed one is. */
int mq_calib_describe(struct mq_calib *c, const char *layer, struct mq_calib_info *info, struct mq_error *err);
const char *mq_calib_path(const struct mq_calib *c);
/* Bytes of activations read through this handle (as stored), and the seconds spent reading them. */
void mq_calib_io(const struct mq_calib *c, double *bytes, double *seconds);
void mq_calib_close(struct mq_calib *c);

/* The groups of the file that hold "inputs", sorted by name (malloc'd array of malloc'd names). */
int mq_calib_layers(struct mq_calib *c, char ***names, int *n, struct mq_error *err);
void mq_calib_free_names(char **names, int n);

int mq_calib_layer_open(struct mq_calib *c, const char *layer, struct mq_calib_layer **l,
			struct mq_calib_shape *shape, struct mq_error *err);
/* Reads rows [r0, r0 + n) as float32 into out (n * row_elems values). */
int mq_calib_layer_read(struct mq_calib_layer *l, uint64_t r0, uint64_t n, float *out, struct mq_error *err);
void mq_calib_layer_close(struct mq_calib_layer *l);
/*
 * The error for a NaN or Inf found at index bad of rows read from row r0 on:
 * names the file, the layer and the position. Returns MQ_ERR_DATA.
 */
int mq_calib_layer_nonfinite(const struct mq_calib_layer *l, uint64_t r0, const float *x, size_t bad,
			     struct mq_error *err);

/*
 * Runs an observer over the first min(rows, max_rows) rows of a layer
 * (max_rows 0: all), in chunk-aligned blocks of about 4 MiB.
 */
int mq_calib_observe(struct mq_calib *c, const char *layer, const struct mq_observer *obs, int symmetric,
		     uint64_t max_rows, struct mq_obs_result *res, uint64_t *rows_used, struct mq_error *err);

/* inspect for calibration files: attributes, then one line per layer. */
int mq_calib_inspect(const char *path, const struct mq_observer *obs, int symmetric, uint64_t max_rows,
		     FILE *out, struct mq_error *err);

/* 1 when the file starts with the HDF5 signature. */
int mq_calib_is_hdf5(const char *path);

#endif
