/*
 * config: the validated options of one run (struct mq_options), what the
 * pipeline is given. cli/options.c fills it from argv; the output-name rules,
 * the default exclusions and the options' provenance JSON live here because
 * the pipeline needs them as well.
 */
#ifndef MQ_CONFIG_H
#define MQ_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "clip.h"
#include "digest.h"
#include "gptq.h"
#include "method.h"
#include "observe.h"
#include "scheme.h"
#include "status.h"
#include "writer.h"

#define MQ_VERSION "0.1.0"

enum mq_command {
	MQ_CMD_RUN,
	MQ_CMD_INSPECT,
	MQ_CMD_HELP,
	MQ_CMD_VERSION,
};

/*
 * One scheme a mixed-precision run may give a weight (--candidates): a row of
 * the scheme table and, for a scheme of groups, its group size.
 */
struct mq_candidate {
	enum mq_scheme scheme;
	int group_size;          /* schemes of groups: 32, 64, 128 or MQ_GROUP_CHANNEL; others 0 */
};
#define MQ_MAX_CANDIDATES 8
/* --measure-every when not given: the candidates' errors from every 8th row of a weight */
#define MQ_MEASURE_EVERY_DEFAULT 8
/* The candidates when --candidates is not given: "int4-g128,int8,bf16". */
#define MQ_DEFAULT_CANDIDATES "int4-g128,int8,bf16"

struct mq_options {
	enum mq_command command;
	const char *input;       /* model path (argv storage) */
	char *output;            /* owned; -o, or NULL: the run takes mq_options_default_output() */
	enum mq_scheme scheme;
	int per_tensor;          /* 0: per output channel (or group) */
	int channel_given;       /* -g channel was given (on a scheme of groups: --group-size channel) */
	enum mq_clip clip;       /* --clip: the weights' range search (none: min/max) */
	enum mq_method_id method; /* --method: rtn or gptq */
	struct mq_gptq_opts gptq; /* --damp, --block-size, --actorder (and --clip mse for its scales) */
	int gptq_options;        /* one of them was given */
	int keep_unfit;          /* --keep-unfit: a weight the scheme cannot store loadably is kept, not refused */
	int group_size;          /* --group-size: 0 (the scheme's default), MQ_GROUP_CHANNEL, or 32, 64, 128 */
	int n_includes, n_excludes;
	const char **includes, **excludes; /* owned arrays of argv strings */
	int no_default_excludes;
	int force, dry_run, quiet, no_sync;
	int no_checksum;         /* skip the digests of the source data */
	enum mq_digest_algo digest; /* their algorithm (--digest; XXH3-128 by default) */
	/* calibration (--calib), and the statistics inspect shows for a calibration file */
	const char *calib;       /* HDF5 calibration file, or NULL */
	int calib_weights_only;  /* --calib-missing=weights-only */
	struct mq_observer observer;  /* default percentile:99.99 */
	int act_asymmetric;      /* --act int8-asym */
	int act_none;            /* --act none: no activation scales */
	int calib_options;       /* --observer, --act, --calib-samples or --calib-missing given */
	int verbose, json;       /* inspect of a model file: every metadata value in full; one JSON document */
	int plot;                /* inspect --plot: an SVG of the per-layer records */
	uint64_t calib_samples;  /* cap on calibration rows, 0: all */
	const char *report;      /* run report path, or NULL */
	const char *job;         /* --job FILE.json, or NULL */
	int groups;              /* --groups K (0: not given) */
	int job_mode;            /* set by the job runner: an up-to-date output is skipped, a stale one replaced */
	const char *out_format;  /* set once the output path is known: its writer's name ("safetensors", "pt") */
	int folder_output;       /* set with it: the output is a model folder (Linear weights only, by default) */
	uint64_t memory_budget;  /* bytes of tensor buffers per rank */
	uint64_t max_shard;      /* folder output: bytes of tensor data per shard at most */
	/* mixed precision (options_budget.c): each weight gets the candidate that fits a size budget best */
	double target_bpw;       /* --target-bpw: bits per quantized weight, scales included (0: not given) */
	uint64_t target_size;    /* --target-size: bytes of tensor data in the output (0: not given) */
	int n_candidates;        /* set with a target: --candidates, or MQ_DEFAULT_CANDIDATES */
	struct mq_candidate candidates[MQ_MAX_CANDIDATES];
	int scheme_given;        /* --scheme was given (a target picks the schemes itself) */
	int measure_every;       /* --measure-every: the candidates are measured on every N-th row (default 8) */
	int measure_given;       /* it was given (it needs a target) */
	double min_sqnr;         /* --min-sqnr: no weight gets a candidate below it (with a target; NAN: none) */
	double fail_below;       /* --fail-below: a quantized layer below it fails the run (NAN: none) */
};

/* A mixed-precision run: --target-bpw or --target-size was given. */
static inline int mq_options_mixed(const struct mq_options *o)
{
	return o->target_bpw > 0 || o->target_size > 0;
}
/* A candidate's name as --candidates spells it: "int8", "int4-g128", "w8a16-channel". */
void mq_candidate_name(const struct mq_candidate *c, char *out, size_t cap);
/* Parses one such name into *c: 0, or -1 for a name that is no scheme (or a group size it does not take). */
int mq_candidate_parse(const char *name, struct mq_candidate *c);

/*
 * Output formats are told by the output name's extension, case-sensitively
 * (the writer table, formats/writer.h): .safetensors, or a torch archive for
 * .pt, .pth and .bin (Hugging Face's name for torch checkpoints,
 * pytorch_model.bin). Any other name is refused: 0 if a writer takes path,
 * else MQ_ERR_USAGE with the fix.
 */
int mq_options_check_output_name(const char *path, struct mq_error *err);

/* Default exclusion patterns (POSIX extended regular expressions). */
extern const char *const mq_default_excludes[];
extern const int mq_n_default_excludes;

void mq_options_release(struct mq_options *o);

/*
 * The output path when -o is not given: for a model folder, the folder
 * beside it, DIR-SCHEME (plus -per-tensor, -channel or -gN where the
 * grouping is not the default); else beside the input, STEM.SCHEME.EXT,
 * where EXT is .safetensors, or for a torch checkpoint input .pt (.pth for a
 * .pth input).
 */
char *mq_options_default_output(const struct mq_options *o, int torch_input);

/* The options that shape the output, as a JSON object (for provenance). */
void mq_options_json(const struct mq_options *o, struct mq_buf *b);

#endif
