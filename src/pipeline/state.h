/*
 * state: what the pipeline's files share during one model's run (struct run),
 * and the record a unit's result travels in. Private to src/pipeline: the
 * rest of the program knows a run only through run.h.
 */
#ifndef MQ_STATE_H
#define MQ_STATE_H

#include <stdint.h>

#include "calib.h"
#include "comm.h"
#include "config.h"
#include "digest.h"
#include "gather.h"
#include "linalg.h"
#include "manifest.h"
#include "method.h"
#include "plan.h"
#include "report.h"
#include "writer.h"

struct mq_hf_folder;
struct gptq_cache;

/* A unit's output tensors, each with its CRC: the data, the scale and the zero point (see unit_outputs). */
#define UNIT_OUTPUTS 3

/* A unit's result as sent to rank 0; followed by n_digests SHA-256 digests. */
struct unit_record {
	int32_t unit;
	int32_t failed;      /* 1: failed or skipped (the error travels by agreement); 2: not started, interrupted */
	double signal, noise, max_abs;
	double out_signal, out_noise_w, out_noise_wa; /* calibrated layers */
	uint64_t crc_len[UNIT_OUTPUTS]; /* bytes written to the data, scale and zero-point tensors */
	uint32_t crc[UNIT_OUTPUTS];     /* and their CRC-32 (a .pt needs them; a resume checks them) */
	uint32_t n_digests;
	/* GPTQ layers */
	double out_noise_rtn;  /* round to nearest's output-space noise, for comparison */
	double gptq_loss;      /* ½ Σ (w − q)² / d² over the unit's rows */
	double gptq_damp;      /* the dampening fraction the layer's factor used */
	double gptq_seconds;   /* the factor (on the layer's first unit this run) and the sweep: the run report's */
	int32_t gptq;          /* 0: not GPTQ, 1: GPTQ, 2: fell back to round to nearest, 3: so, its H overflowed */
	int32_t gptq_raised;   /* times the dampening was raised */
	uint64_t gptq_dead;    /* the layer's input columns that are always zero */
};
/* Sent as bytes between ranks and journaled raw: its layout is part of the journal format. */
_Static_assert(sizeof(struct unit_record) == 144, "unit_record is sent and journaled as bytes: keep its layout");

/* What a layer's owner rank prepares before its units run (prepare.c), as doubles. */
struct mq_layer_state {
	double act_threshold, act_scale, act_zero_point; /* static activation parameters, with --calib */
};

/*
 * One model's run. The fields are grouped by the file that owns them (sets
 * them up and releases them); the others only read them.
 */
struct run {
	/* run.c: the run as a whole */
	struct mq_comm *comm;
	int rank, size;
	struct mq_options *opt;       /* the caller's; the run sets only its out_format */
	struct mq_manifest man;
	struct mq_plan plan;
	struct mq_plan_choice *mix;   /* choose.c: a mixed-precision run's choice (the plan points at it) */
	double stats[MQ_STAT_COUNT];
	struct mq_error err;
	int skipped;                  /* job mode: the output was up to date */
	/* run.c: calibration */
	struct mq_calib *calib;       /* open on every rank with --calib */
	struct mq_calib_info *cinfo;  /* per manifest tensor */
	const struct mq_method *method; /* how the weights are quantized (--method: round to nearest, GPTQ) */
	struct mq_layer_state *layers; /* prepare.c: per plan tensor, what its owner rank prepared */
	char calib_digest[2 * MQ_SHA256_LEN + 1]; /* rank 0 */
	/* output.c: the output file and its layout */
	const struct mq_writer *writer; /* the output's format (by the output name) */
	struct mq_out_files files;    /* where the writer put every output tensor */
	uint64_t header_len;          /* files.meta_reserve: the safetensors header, or the .pt metadata record */
	uint64_t *out_pos;            /* files.pos: per output tensor, file offset of its first byte */
	uint64_t out_size;            /* of the whole output (all its files) */
	char *output, *tmp;           /* final and partial output paths (all ranks) */
	struct mq_comm_file **fh;     /* the partial output's files, open on every rank during the work */
	struct mq_hf_folder *hf;      /* rank 0, folder.c: the input model folder's scan, NULL for a file */
	char existing_fp[2 * MQ_SHA256_LEN + 1]; /* rank 0, job mode: the existing output's fingerprint */
	/* resume.c: the journal, resuming and the up-to-date check */
	char *journal_path;           /* rank 0: the journal beside the partial output */
	int journal_fd;               /* rank 0, -1 if none */
	int lock_fd;                  /* rank 0: holds the journal's flock for the run */
	uint8_t identity[MQ_SHA256_LEN]; /* rank 0: what the journal must match to be resumed */
	unsigned char *done;          /* per unit: finished by an earlier run (all ranks) */
	int resuming;                 /* rank 0: an interrupted run's journal matched */
	void **pending;               /* rank 0, per unit: a journaled record whose output bytes check out */
	size_t *pending_len;
	int hash_only;                /* the up-to-date check: read and hash the sources, write nothing */
	/* unit.c: this rank's work */
	int *fds;                     /* per input file, opened on first use */
	struct mq_gather *gather;     /* reads of strided views */
	unsigned char *arena;         /* tensor buffers, plan.arena_bytes */
	uint32_t ucrc[UNIT_OUTPUTS];  /* the unit in progress: CRC-32 per data/scale/zero-point tensor */
	uint64_t ucrc_len[UNIT_OUTPUTS];
	int ucrc_out[UNIT_OUTPUTS];   /* its output tensors, -1 if none */
	unsigned char *stage;         /* its bytes per output tensor, UNIT_STAGE each, gathered into large writes */
	size_t stage_len[UNIT_OUTPUTS];
	uint64_t stage_pos[UNIT_OUTPUTS]; /* where the staged bytes go in their file */
	int interrupted;              /* this rank stopped taking units on SIGUSR1 */
	int unit_failed;              /* a unit of this rank failed (or its buffers could not be had) */
	struct unit_record *unit_full; /* the record of the unit in progress, with room for its digests */
	struct gptq_cache *gptq;      /* gptq.c: the factor of the GPTQ layer in hand */
	/* collect.c: what has come in (rank 0), and whether to stop (every rank) */
	struct mq_tensor_result *res; /* per tensor */
	double *u_signal, *u_noise, *u_max; /* per unit */
	struct mq_out_sums *u_out;    /* per unit: output-space sums, with --calib */
	struct unit_record *u_gptq;   /* per unit of a GPTQ layer: its record's GPTQ fields (others unused) */
	uint32_t *u_crc;              /* per unit: UNIT_OUTPUTS CRC-32s of its data, scale, zero-point bytes */
	uint64_t *u_crc_len;          /* and their lengths */
	uint32_t *out_crc;            /* per output tensor (.pt) */
	uint8_t *chunk_digests;       /* 32 bytes per chunk of every tensor */
	uint64_t *chunk_base;         /* per tensor: index of its first chunk */
	int *units_left;              /* per tensor */
	int tensors_done, records_left;
	int units_taken;              /* finished units whose records arrived (or were resumed) */
	int units_appended;           /* records this run appended to the journal */
	int replaying;                /* taking journaled records (not appended again) */
	int cancel_sent;              /* told the others to stop */
	int cancelled;                /* stop working: a unit failed somewhere */
};

/* The output tensors of plan tensor pt that its units write, in the order of the record's CRC slots. */
static inline void unit_outputs(const struct mq_plan_tensor *pt, int outs[UNIT_OUTPUTS])
{
	outs[0] = pt->out_data;
	outs[1] = pt->out_scale;
	outs[2] = pt->out_zero_point;
}

#endif
