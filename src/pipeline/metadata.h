/*
 * metadata: per-tensor results, aggregate metrics, and the output header
 * (tensor entries plus __metadata__) as JSON text.
 *
 * The header must be sized before any tensor data is placed, because
 * safetensors offsets count from its end. mq_metadata_header() therefore has
 * a reservation form (results == NULL) in which every figure that is only
 * known after the run takes its widest printed form (16 characters for a
 * %.9g double); the final header is never longer, and is padded with spaces
 * to the reserved length, itself a multiple of 8. Both forms depend only on
 * the manifest, the plan and the options, never on the rank count.
 */
#ifndef MQ_METADATA_H
#define MQ_METADATA_H

#include <stdint.h>

#include "buf.h"
#include "digest.h"
#include "manifest.h"
#include "config.h"
#include "plan.h"

struct mq_tensor_result {
	double signal;    /* sum x^2 over the tensor */
	double noise;     /* sum (x - dequant)^2 */
	double max_abs;   /* max |x - dequant| */
	uint8_t sha256[MQ_DIGEST_MAX]; /* tree digest of the source data (--digest; the name is historical) */
	/* calibrated layers: output-space sums over the calibration rows, Y = X W^T */
	double out_signal;  /* sum Y^2 */
	double out_noise_w; /* sum (Y - X What^T)^2: weights quantized */
	double out_noise_wa; /* sum (Y - Xhat What^T)^2: weights and activations quantized */
	double act_threshold, act_scale, act_zero_point; /* the observer's result */
	/* GPTQ layers */
	double out_noise_rtn;  /* sum (Y - X Wrtn^T)^2: round to nearest, for comparison */
	double gptq_loss;      /* ½ Σ (w − q)² / d² */
	double gptq_damp;      /* dampening fraction used */
	double gptq_seconds;   /* this run's time on it (the run report's, never the file's) */
	int gptq;              /* 1: GPTQ, 2: fell back to round to nearest, 3: so, its Hessian overflowed */
	int gptq_raised;       /* times the dampening was raised */
	uint64_t gptq_dead;    /* input columns always zero in the calibration rows */
};

/* 10 log10(signal / noise); +Inf when noise is 0 (printed as null). */
double mq_sqnr_db(double signal, double noise);

/* Aggregate SQNR over the quantized tensors. */
double mq_metadata_aggregate_sqnr(const struct mq_plan *p, const struct mq_tensor_result *res);

/* The digest (algorithm a) of the tensor digests in name order. */
void mq_metadata_source_digest(const struct mq_plan *p, const struct mq_tensor_result *res,
			       enum mq_digest_algo a, uint8_t out[MQ_DIGEST_MAX]);

/*
 * The header JSON. res == NULL builds the reservation form. pad_to > 0 pads
 * the result with spaces to exactly that length (fails if it is longer).
 */
/* calib_digest: hex digest of the calibration file, --digest's algorithm (NULL: unknown yet, or not computed). */
int mq_metadata_header(const struct mq_manifest *m, const struct mq_plan *p, const struct mq_options *o,
		       const struct mq_tensor_result *res, const char *calib_digest, uint64_t pad_to,
		       struct mq_buf *out, struct mq_error *err);

/*
 * The fingerprint of a run's inputs: SHA-256 over the tool version, the
 * output format, the options that shape the output, the calibration file's
 * digest and the source data's (source_sha256 or source_xxh3_128, as
 * --digest chose; the options name it too). "none" with --no-checksum;
 * 64 zeros in the reservation form (res == NULL). A job skips a model whose
 * output records the fingerprint its inputs have now.
 */
void mq_metadata_fingerprint(const struct mq_plan *p, const struct mq_options *o, const struct mq_tensor_result *res,
			     const char *calib_digest, char hex[2 * MQ_SHA256_LEN + 1]);

/* The __metadata__ object alone ({"key": "string", ...}): the metadata record of a .pt output. */
int mq_metadata_object(const struct mq_manifest *m, const struct mq_plan *p, const struct mq_options *o,
		       const struct mq_tensor_result *res, const char *calib_digest, uint64_t pad_to,
		       struct mq_buf *out, struct mq_error *err);

/*
 * Aggregate output-space SQNR over calibrated layers: weights only, or
 * (with_act) as each layer runs, its activations quantized where it
 * quantizes them.
 */
double mq_metadata_output_sqnr(const struct mq_plan *p, const struct mq_tensor_result *res, int with_act);
/* A calibrated layer's output noise, the same way: Σ(Y - Ŷ)² of its weights, or as it runs. */
double mq_metadata_output_noise(const struct mq_plan_tensor *pt, const struct mq_tensor_result *r, int with_act);

/*
 * Length of the reserved header (object_only: of the metadata object alone):
 * the reservation form rounded up to a multiple of 8.
 */
int mq_metadata_reserve(const struct mq_manifest *m, const struct mq_plan *p, const struct mq_options *o,
			int object_only, uint64_t *len, struct mq_error *err);

#endif
