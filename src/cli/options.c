#include "options.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buf.h"
#include "options_budget.h"
#include "options_method.h"
#include "options_regex.h"


enum opt_id {
	OPT_OUTPUT, OPT_SCHEME, OPT_GRANULARITY, OPT_GROUP_SIZE, OPT_CLIP, OPT_METHOD, OPT_DAMP, OPT_BLOCK_SIZE, OPT_ACTORDER, OPT_GPTQ_SCALES, OPT_KEEP_UNFIT, OPT_MAX_SHARD, OPT_TARGET_BPW, OPT_TARGET_SIZE, OPT_CANDIDATES, OPT_MIN_SQNR, OPT_FAIL_BELOW, OPT_MEASURE_EVERY, OPT_INCLUDE, OPT_EXCLUDE, OPT_NO_DEFAULT_EXCLUDES,
	OPT_FORCE, OPT_DRY_RUN, OPT_REPORT, OPT_BUDGET, OPT_NO_SYNC, OPT_NO_CHECKSUM, OPT_DIGEST, OPT_OBSERVER, OPT_ACT, OPT_CALIB_SAMPLES, OPT_CALIB, OPT_CALIB_MISSING, OPT_JOB, OPT_GROUPS, OPT_VERBOSE, OPT_JSON, OPT_PLOT, OPT_QUIET, OPT_HELP, OPT_VERSION,
};

/* Where an option applies besides quantizing: inspect of a model file, of a calibration file. */
enum { FOR_RUN = 1, FOR_INSPECT_MODEL = 2, FOR_INSPECT_CALIB = 4, FOR_ALL = 7 };

static const struct opt {
	enum opt_id id;
	char short_name;
	const char *long_name;
	const char *arg;  /* NULL: a flag */
	int applies;      /* FOR_* bits */
	const char *help;
} opts[] = {
	{ OPT_OUTPUT, 'o', "output", "PATH", FOR_RUN,
	  "output file: NAME.safetensors, or a torch archive NAME.pt, NAME.pth or NAME.bin (extensions are "
	  "case-sensitive; others are refused). Default: beside the input, STEM.SCHEME.safetensors, STEM being "
	  "the input's name without .safetensors, .safetensors.index.json, .index.json, .json, .pt, .pth or "
	  ".bin, and SCHEME the scheme's name, plus -per-tensor with -g tensor; a torch input gives "
	  "STEM.SCHEME.pt (.pth for a .pth input)" },
	{ OPT_SCHEME, 's', "scheme", "NAME", FOR_RUN, NULL /* the scheme table's list (mq_scheme_help) */ },
	{ OPT_GRANULARITY, 'g', "granularity", "G", FOR_RUN,
	  "channel (one scale per output channel, default) or tensor" },
	{ OPT_GROUP_SIZE, 0, "group-size", "N", FOR_RUN,
	  "values per scale of the schemes that store groups (int4, w8a16 and their -asym rows): 32, 64, 128 "
	  "(default) or channel (one scale per output channel)" },
	{ OPT_CLIP, 0, "clip", "HOW", FOR_RUN,
	  "the weights' range: minmax (default) or mse (per group or channel, the shrunk range with the least "
	  "|error|^2.4 of 20 steps down to 0.81, kept only where it lowers the squared error)" },
	{ OPT_METHOD, 0, "method", "NAME", FOR_RUN,
	  "how the weights are rounded: rtn (to nearest, default) or gptq (GPTQ: each column's rounding error "
	  "spread over the columns not yet quantized, by the inverse Hessian of the layer's calibration inputs; "
	  "needs --calib, and a weight-only scheme: int4, int4-asym, w8a16, w8a16-asym, or int8 with --act none)" },
	{ OPT_DAMP, 0, "damp", "F", FOR_RUN,
	  "gptq: dampening, a fraction of the Hessian's mean diagonal added to it (default 0.01, 0 to 0.99); "
	  "where its Cholesky fails it is raised by 0.01 at a time below 1, then the layer is rounded to nearest" },
	{ OPT_BLOCK_SIZE, 0, "block-size", "N", FOR_RUN,
	  "gptq: columns updated together (default 128, 1 to 4096); the result does not depend on it beyond "
	  "float rounding" },
	{ OPT_ACTORDER, 0, "actorder", "HOW", FOR_RUN,
	  "gptq: column order, static (default: largest Hessian diagonal first, groups and scales kept in the "
	  "original order, so no g_idx is written) or none" },
	{ OPT_GPTQ_SCALES, 0, "gptq-scales", "FROM", FOR_RUN,
	  "gptq: the groups' scales from the original weights (original, default, as llm-compressor) or, with "
	  "--actorder none, from the weights updated so far at each group's first column (updated, as the GPTQ "
	  "paper's code)" },
	{ OPT_MAX_SHARD, 0, "max-shard-size", "SIZE", FOR_RUN,
	  "folder output: at most SIZE bytes of tensors per shard (a larger tensor gets a shard alone): a "
	  "number of bytes, or with kB, MB, GB (powers of 1000) or KiB, MiB, GiB (of 1024); default 5GB" },
	{ OPT_TARGET_BPW, 0, "target-bpw", "B", FOR_RUN,
	  "mixed precision: give each quantized weight one of --candidates so that they take at most B bits per "
	  "weight on average (scales and zero points included) with the least total squared error, measured on "
	  "the weights in a first pass (see README, \"Mixed precision\")" },
	{ OPT_TARGET_SIZE, 0, "target-size", "SIZE", FOR_RUN,
	  "mixed precision as --target-bpw, to at most SIZE bytes of tensor data in the output (5GB, 800MiB)" },
	{ OPT_CANDIDATES, 0, "candidates", "LIST", FOR_RUN,
	  "with a target: the schemes a weight may get, separated by commas (default " MQ_DEFAULT_CANDIDATES
	  "); a scheme of groups takes -g32, -g64, -g128 or -channel; fused projections (q/k/v, gate/up) get one "
	  "scheme together" },
	{ OPT_MEASURE_EVERY, 0, "measure-every", "N", FOR_RUN,
	  "with a target: measure the candidates on every N-th row of each weight (default 8; 1: every row), "
	  "or fewer so that at least 512 rows are measured (a smaller weight whole), the sums scaled to the whole "
	  "weight" },
	{ OPT_MIN_SQNR, 0, "min-sqnr", "DB", FOR_RUN,
	  "with a target: no weight gets a candidate whose measured SQNR is below DB: it takes the smallest one "
	  "that reaches DB, or, if none does, stays as it is; each such weight is recorded as promoted" },
	{ OPT_FAIL_BELOW, 0, "fail-below", "DB", FOR_RUN,
	  "end the run with exit code 9, writing nothing, if a quantized layer's SQNR is below DB (the layers "
	  "are listed)" },
	{ OPT_KEEP_UNFIT, 0, "keep-unfit", NULL, FOR_RUN,
	  "keep a weight whose shape the scheme cannot store as vLLM loads it (in not divisible by the group "
	  "size or by 8, out not by 8 with zero points) unquantized, instead of stopping with an error" },
	{ OPT_INCLUDE, 'i', "include", "REGEX", FOR_RUN,
	  "quantize only weights whose name matches (repeatable; overrides the default exclusions)" },
	{ OPT_EXCLUDE, 'x', "exclude", "REGEX", FOR_RUN,
	  "keep weights whose name matches unchanged (repeatable; adds to the default exclusions)" },
	{ OPT_NO_DEFAULT_EXCLUDES, 0, "no-default-excludes", NULL, FOR_RUN,
	  "do not apply the default exclusions listed below" },
	{ OPT_FORCE, 'f', "force", NULL, FOR_RUN, "overwrite an existing output file" },
	{ OPT_DRY_RUN, 0, "dry-run", NULL, FOR_RUN,
	  "print the plan (ranks, bytes, memory, sizes) and write nothing (no short form: -n belongs to mpirun)" },
	{ OPT_REPORT, 'r', "report", "FILE.json", FOR_RUN, "write the run report (timings, bytes, memory per rank)" },
	{ OPT_BUDGET, 'm', "memory-budget", "MIB", FOR_RUN,
	  "tensor buffer budget per rank in MiB (default 256, 4 to 65536), GPTQ's per-layer Hessian included" },
	{ OPT_NO_SYNC, 0, "no-sync", NULL, FOR_RUN, "do not flush the output to stable storage before renaming it" },
	{ OPT_NO_CHECKSUM, 0, "no-checksum", NULL, FOR_RUN,
	  "skip the digests of the source tensors (provenance, resume checks and job skips then have none)" },
	{ OPT_DIGEST, 0, "digest", "ALGO", FOR_RUN, "the source data's digests: xxh3 (XXH3-128, default) or sha256" },
	{ OPT_CALIB, 'c', "calib", "FILE.h5", FOR_RUN,
	  "calibration activations: static input scales and output-space SQNR per layer" },
	{ OPT_CALIB_SAMPLES, 0, "calib-samples", "N", FOR_RUN | FOR_INSPECT_CALIB,
	  "use at most N calibration rows per layer" },
	{ OPT_OBSERVER, 0, "observer", "NAME", FOR_RUN | FOR_INSPECT_CALIB,
	  "activation observer: minmax, percentile[:P] (default, P 99.99), mse or entropy" },
	{ OPT_ACT, 0, "act", "TYPE", FOR_RUN | FOR_INSPECT_CALIB,
	  "activation quantization: int8 (default), int8-asym or none (inspect: int8 or int8-asym)" },
	{ OPT_CALIB_MISSING, 0, "calib-missing", "WHAT", FOR_RUN,
	  "what to do with a selected layer the calibration file lacks: error (the default: the run stops "
	  "and lists them) or weights-only (quantize its weights without activation scales)" },
	{ OPT_JOB, 'j', "job", "FILE.json", FOR_RUN,
	  "run the models of a job file one after another (see README, \"Job files\"); options given here "
	  "apply to all" },
	{ OPT_GROUPS, 0, "groups", "K", FOR_RUN, "with --job: split the ranks into K groups that take models side by side" },
	{ OPT_VERBOSE, 0, "verbose", NULL, FOR_INSPECT_MODEL,
	  "inspect: also print every metadata value in full (the per-layer records)" },
	{ OPT_JSON, 0, "json", NULL, FOR_INSPECT_MODEL,
	  "inspect: print one JSON document (summary, metadata, tensors) for scripts" },
	{ OPT_PLOT, 0, "plot", NULL, FOR_INSPECT_MODEL,
	  "inspect: print an SVG picture of a file mq-dist wrote: each quantized layer's SQNR and bits per weight "
	  "along the model's depth (redirect it to a .svg file)" },
	{ OPT_QUIET, 'q', "quiet", NULL, FOR_ALL, "print errors only" },
	{ OPT_HELP, 'h', "help", NULL, FOR_ALL, "show this help" },
	{ OPT_VERSION, 'V', "version", NULL, FOR_ALL, "show the version" },
};
#define N_OPTS ((int)(sizeof(opts) / sizeof(opts[0])))

/* --scheme when none is given; --help marks it */
static const enum mq_scheme default_scheme = MQ_SCHEME_INT8;

/* --help fits a terminal of MQ_HELP_COLUMNS: option names in the first HELP_LEFT columns, wrapped text after. */
#define MQ_HELP_COLUMNS 80
#define HELP_LEFT 30

/*
 * Prints the words of text from column col on, wrapping before column
 * MQ_HELP_COLUMNS to column indent; a word that starts a line at column 0 has
 * no space before it.
 */
static void print_words(FILE *fp, int col, int indent, const char *text)
{
	const char *p = text;
	while (*p == ' ')
		p++;
	while (*p) {
		int w = (int)strcspn(p, " ");
		if (col > indent && col + 1 + w >= MQ_HELP_COLUMNS) {
			fprintf(fp, "\n%*s", indent, "");
			col = indent;
		}
		col += fprintf(fp, "%s%.*s", col ? " " : "", w, p);
		p += w;
		while (*p == ' ')
			p++;
	}
	fputc('\n', fp);
}

void mq_options_print_help(FILE *fp)
{
	fprintf(fp,
		"usage: mpirun -n N mq-dist [options] MODEL\n"
		"       mpirun -n N mq-dist [options] --job JOB.json [--groups K]\n"
		"       mq-dist inspect [--verbose | --json | --plot] MODEL\n"
		"       mq-dist inspect [--observer NAME] [--act TYPE] [--calib-samples N]\n"
		"                       FILE.h5\n\n");
	print_words(fp, 0, 0, "Quantizes the weights of a model (MODEL is a .safetensors file, a sharded model's "
		    "model.safetensors.index.json, or a torch.save checkpoint .pt/.pth/.bin, read without running any "
		    "code from it) across the MPI ranks and writes one .safetensors file or torch archive with the "
		    "scales, per-layer metrics and provenance. inspect lists a model file's tensors and metadata, or a "
		    "calibration file's activation statistics.");
	fprintf(fp, "\noptions:\n");
	for (int i = 0; i < N_OPTS; i++) {
		char left[64];
		if (opts[i].short_name)
			snprintf(left, sizeof(left), "-%c, --%s%s%s", opts[i].short_name, opts[i].long_name,
				 opts[i].arg ? " " : "", opts[i].arg ? opts[i].arg : "");
		else
			snprintf(left, sizeof(left), "    --%s%s%s", opts[i].long_name, opts[i].arg ? " " : "",
				 opts[i].arg ? opts[i].arg : "");
		fprintf(fp, "  %-*s", HELP_LEFT - 3, left);
		struct mq_buf gen = MQ_BUF_INIT;
		const char *help = opts[i].help;
		if (opts[i].id == OPT_SCHEME) {
			mq_scheme_help(&gen, default_scheme);
			help = mq_buf_ok(&gen) && gen.data ? gen.data : "";
		}
		print_words(fp, HELP_LEFT - 1, HELP_LEFT - 1, help);
		mq_buf_release(&gen);
	}
	fputc('\n', fp);
	print_words(fp, 0, 0, "Quantized by default: 2-D [out, in] and 4-D [out, in, kh, kw] F32/F16/BF16 tensors "
		    "whose name ends in \".weight\". Kept unchanged: everything else, and names matching a default "
		    "exclusion (POSIX extended regex, searched anywhere):");
	for (int i = 0; i < mq_n_default_excludes; i++)
		fprintf(fp, "  %s\n", mq_default_excludes[i]);
	fputc('\n', fp);
	print_words(fp, 0, 0, "The fp16 and bf16 casts instead convert every F32/F64/F16/BF16 tensor, as "
		    "model.to(dtype) does, except those --exclude keeps: the default exclusions do not apply to them.");
	fputc('\n', fp);
	print_words(fp, 0, 0, "exit codes: 0 success, 2 usage error, 3 bad input file, 4 bad tensor data (NaN, Inf, "
		    "overflow), 5 output problem, 6 internal or MPI error, 7 interrupted by SIGUSR1 (rerun to resume), "
		    "8 some models of a job failed, 9 a layer below --fail-below");
}

static int push(const char ***arr, int *n, const char *v, struct mq_error *err)
{
	const char **a = realloc(*arr, (size_t)(*n + 1) * sizeof(*a));
	if (!a)
		return mq_fail(err, MQ_ERR_INTERNAL, "out of memory");
	a[(*n)++] = v;
	*arr = a;
	return 0;
}

/* A whole decimal number, no sign or spaces. 0, or -1. */
static int parse_whole(const char *val, unsigned long long *v)
{
	char *end;
	if (*val < '0' || *val > '9')
		return -1;
	errno = 0;
	*v = strtoull(val, &end, 10);
	return *end || errno ? -1 : 0;
}

/* "--scheme 'x': unknown scheme (use int8, ...)", the names from the scheme table. */
static int unknown_scheme(const char *val, struct mq_error *err)
{
	struct mq_buf names = MQ_BUF_INIT;
	mq_scheme_names(&names);
	int rc = mq_fail(err, MQ_ERR_USAGE, "--scheme '%s': unknown scheme (use %s)", val,
			 mq_buf_ok(&names) && names.data ? names.data : "a scheme --help lists");
	mq_buf_release(&names);
	return rc;
}

static int apply_output(struct mq_options *o, const char *val, struct mq_error *err)
{
	free(o->output);
	o->output = malloc(strlen(val) + 1);
	if (!o->output)
		return mq_fail(err, MQ_ERR_INTERNAL, "out of memory");
	strcpy(o->output, val);
	if (!*val)
		return mq_fail(err, MQ_ERR_USAGE, "--output: empty path");
	return mq_options_check_output_name(val, err);
}

static int apply_scheme(struct mq_options *o, const char *val, struct mq_error *err)
{
	if (strcmp(val, "uint8") == 0)
		return mq_fail(err, MQ_ERR_USAGE,
			"--scheme 'uint8' is no longer accepted: it wrote unsigned (U8) codes and zero points, which compressed-tensors and vLLM read as signed; use int8-asym (the same values, as I8 codes and zero points)");
	return mq_scheme_parse(val, &o->scheme) ? unknown_scheme(val, err) : 0;
}

static int apply_granularity(struct mq_options *o, const char *val, struct mq_error *err)
{
	if (strcmp(val, "channel") == 0) {
		o->per_tensor = 0;
		o->channel_given = 1;
	} else if (strcmp(val, "tensor") == 0) {
		o->per_tensor = 1;
	} else {
		return mq_fail(err, MQ_ERR_USAGE, "--granularity '%s': use channel or tensor", val);
	}
	return 0;
}

/* A whole number in [lo, hi] into *v, or "--OPT 'VAL': FIX". */
static int whole_in(const char *val, unsigned long long lo, unsigned long long hi, unsigned long long *v,
		    const char *opt, const char *fix, struct mq_error *err)
{
	if (parse_whole(val, v) || *v < lo || *v > hi)
		return mq_fail(err, MQ_ERR_USAGE, "--%s '%s': %s", opt, val, fix);
	return 0;
}

static int apply_act(struct mq_options *o, const char *val, struct mq_error *err)
{
	o->act_asymmetric = o->act_none = 0;
	if (strcmp(val, "int8-asym") == 0)
		o->act_asymmetric = 1;
	else if (strcmp(val, "none") == 0)
		o->act_none = 1;
	else if (strcmp(val, "uint8") == 0)
		return mq_fail(err, MQ_ERR_USAGE,
			"--act 'uint8' is no longer accepted: it wrote an unsigned (U8) input_zero_point, which compressed-tensors and vLLM read as signed; use int8-asym (the same values, as an I8 zero point)");
	else if (strcmp(val, "int8") != 0)
		return mq_fail(err, MQ_ERR_USAGE, "--act '%s': use int8, int8-asym or none", val);
	return 0;
}

/* The options of calibration (--observer, --act, --calib-missing, --calib-samples). */
static int apply_calib(struct mq_options *o, enum opt_id id, const char *val, struct mq_error *err)
{
	unsigned long long v = 0;
	o->calib_options = 1;
	switch (id) {
	case OPT_OBSERVER:
		if (mq_observer_parse(val, &o->observer))
			return mq_fail(err, MQ_ERR_USAGE,
				"--observer '%s': use minmax, percentile, percentile:P with 0 < P <= 100, mse or entropy", val);
		return 0;
	case OPT_ACT:
		return apply_act(o, val, err);
	case OPT_CALIB_MISSING:
		if (strcmp(val, "weights-only") != 0 && strcmp(val, "error") != 0)
			return mq_fail(err, MQ_ERR_USAGE, "--calib-missing '%s': use error or weights-only", val);
		o->calib_weights_only = strcmp(val, "weights-only") == 0;
		return 0;
	default: /* OPT_CALIB_SAMPLES */
		if (whole_in(val, 1, ULLONG_MAX, &v, "calib-samples", "give a positive whole number", err))
			return err->code;
		o->calib_samples = v;
		return 0;
	}
}

/* --max-shard-size: bytes, or a number with a decimal (kB, MB, GB) or binary (KiB, MiB, GiB) unit. */
static int apply_shard_size(struct mq_options *o, const char *val, struct mq_error *err)
{
	if (mq_options_parse_size(val, &o->max_shard))
		return mq_fail(err, MQ_ERR_USAGE, "--max-shard-size '%s': give a positive size such as 5GB, 500MB or 2GiB", val);
	return 0;
}

/* One option's value into o (the table's switch: one case per option). */
static int apply(struct mq_options *o, const struct opt *op, const char *val, struct mq_error *err)
{
	unsigned long long v = 0;
	switch (op->id) {
	case OPT_OUTPUT: return apply_output(o, val, err);
	case OPT_SCHEME: o->scheme_given = 1; return apply_scheme(o, val, err);
	case OPT_GRANULARITY: return apply_granularity(o, val, err);
	case OPT_GROUP_SIZE:
		if (strcmp(val, "channel") == 0) {
			o->group_size = MQ_GROUP_CHANNEL;
			return 0;
		}
		if (whole_in(val, 32, 128, &v, "group-size", "use 32, 64, 128 or channel (the group sizes vLLM's kernels take)", err))
			return err->code;
		if (v != 32 && v != 64 && v != 128)
			return mq_fail(err, MQ_ERR_USAGE, "--group-size '%s': use 32, 64, 128 or channel (the group sizes vLLM's kernels take)", val);
		o->group_size = (int)v;
		return 0;
	case OPT_KEEP_UNFIT: o->keep_unfit = 1; return 0;
	case OPT_METHOD: case OPT_DAMP: case OPT_GPTQ_SCALES: case OPT_BLOCK_SIZE: case OPT_ACTORDER:
		return mq_options_apply_method(o, op->long_name, val, err);
	case OPT_MAX_SHARD: return apply_shard_size(o, val, err);
	case OPT_TARGET_BPW: case OPT_TARGET_SIZE: case OPT_CANDIDATES: case OPT_MIN_SQNR: case OPT_FAIL_BELOW: case OPT_MEASURE_EVERY:
		return mq_options_apply_budget(o, op->long_name, val, err);
	case OPT_CLIP:
		if (strcmp(val, "minmax") == 0) {
			o->clip = MQ_CLIP_NONE;
			return 0;
		}
		if (mq_clip_parse(val, &o->clip))
			return mq_fail(err, MQ_ERR_USAGE, "--clip '%s': use minmax or mse", val);
		return 0;
	case OPT_INCLUDE:
		return mq_options_check_regex(val, "include", err) ? err->code : push(&o->includes, &o->n_includes, val, err);
	case OPT_EXCLUDE:
		return mq_options_check_regex(val, "exclude", err) ? err->code : push(&o->excludes, &o->n_excludes, val, err);
	case OPT_NO_DEFAULT_EXCLUDES: o->no_default_excludes = 1; return 0;
	case OPT_FORCE: o->force = 1; return 0;
	case OPT_DRY_RUN: o->dry_run = 1; return 0;
	case OPT_REPORT: o->report = val; return 0;
	case OPT_BUDGET:
		if (whole_in(val, 4, 65536, &v, "memory-budget", "give a whole number of MiB from 4 to 65536", err))
			return err->code;
		o->memory_budget = (uint64_t)v << 20;
		return 0;
	case OPT_NO_SYNC: o->no_sync = 1; return 0;
	case OPT_NO_CHECKSUM: o->no_checksum = 1; return 0;
	case OPT_DIGEST:
		if (mq_digest_parse(val, &o->digest))
			return mq_fail(err, MQ_ERR_USAGE, "--digest '%s': give xxh3 (the default) or sha256", val);
		return 0;
	case OPT_OBSERVER: case OPT_ACT: case OPT_CALIB_MISSING: case OPT_CALIB_SAMPLES:
		return apply_calib(o, op->id, val, err);
	case OPT_CALIB: o->calib = val; return 0;
	case OPT_JOB: o->job = val; return 0;
	case OPT_GROUPS:
		if (whole_in(val, 1, 100000, &v, "groups", "give a positive whole number", err))
			return err->code;
		o->groups = (int)v;
		return 0;
	case OPT_VERBOSE: o->verbose = 1; return 0;
	case OPT_JSON: o->json = 1; return 0;
	case OPT_PLOT: o->plot = 1; return 0;
	case OPT_QUIET: o->quiet = 1; return 0;
	case OPT_HELP: o->command = MQ_CMD_HELP; return 0;
	case OPT_VERSION: o->command = MQ_CMD_VERSION; return 0;
	}
	return 0;
}

static const struct opt *find_long(const char *name, size_t len)
{
	for (int j = 0; j < N_OPTS; j++)
		if (strlen(opts[j].long_name) == len && strncmp(opts[j].long_name, name, len) == 0)
			return &opts[j];
	return NULL;
}

/* The options that depend on the scheme: calibration, activations, granularity and groups. */
static int check_scheme_options(struct mq_options *o, struct mq_error *err)
{
	const struct mq_scheme_traits *si = mq_scheme_get(o->scheme);
	if (o->calib && !si->granularities) /* casts have no scales to calibrate */
		return mq_fail(err, MQ_ERR_USAGE, "--calib applies to the schemes with scales, not to %s casts", si->name);
	if (o->act_asymmetric && si->acts != MQ_ACTS_INT8)
		return mq_fail(err, MQ_ERR_USAGE, "--act int8-asym applies to int8 activations, not to the %s scheme's%s",
			       si->name, si->acts == MQ_ACTS_NONE ? " (weight-only: its activations stay 16-bit)" : "");
	if (o->act_asymmetric && (o->observer.kind == MQ_OBS_MSE || o->observer.kind == MQ_OBS_ENTROPY))
		return mq_fail(err, MQ_ERR_USAGE, "--act int8-asym works with the minmax and percentile observers only");
	if (o->per_tensor && !(si->granularities & MQ_GRAN_BIT(MQ_GRAN_TENSOR)))
		return mq_fail(err, MQ_ERR_USAGE, "--granularity tensor does not apply to the %s scheme%s", si->name,
			       si->granularities ? " (it takes --group-size N or channel)" : "");
	if (o->clip != MQ_CLIP_NONE && (!si->granularities || o->per_tensor))
		return mq_fail(err, MQ_ERR_USAGE, "--clip %s searches the range of each group or channel: not for %s%s",
			       mq_clip_name(o->clip), si->name, o->per_tensor ? " per tensor" : " casts");
	if (mq_options_check_method(o, err))
		return err->code;
	if (o->channel_given && !o->group_size && (si->granularities & MQ_GRAN_BIT(MQ_GRAN_GROUP)))
		o->group_size = MQ_GROUP_CHANNEL; /* -g channel on a scheme of groups: one group per row */
	if (o->group_size && !(si->granularities & MQ_GRAN_BIT(MQ_GRAN_GROUP))) {
		struct mq_buf names = MQ_BUF_INIT;
		mq_scheme_names_with(&names, MQ_GRAN_BIT(MQ_GRAN_GROUP));
		mq_fail(err, MQ_ERR_USAGE, "--group-size applies to the schemes that store groups (%s), not to %s",
			names.data ? names.data : "", si->name);
		mq_buf_release(&names);
		return err->code;
	}
	return 0;
}

int mq_options_parse(int argc, char **argv, struct mq_options *o, struct mq_error *err)
{
	memset(o, 0, sizeof(*o));
	o->scheme = default_scheme;
	o->memory_budget = 256ull << 20;
	o->max_shard = 5000000000ull; /* 5GB, as transformers' save_pretrained */
	o->min_sqnr = o->fail_below = (double)NAN;
	o->measure_every = MQ_MEASURE_EVERY_DEFAULT;
	o->gptq = (struct mq_gptq_opts){ .damp = 0.01, .block = MQ_GPTQ_BLOCK_DEFAULT, .actorder = MQ_ACTORDER_STATIC,
					 .scales = MQ_GPTQ_SCALES_ORIGINAL };
	o->command = MQ_CMD_RUN;
	mq_observer_parse("percentile", &o->observer);
	int first = 1, n = 0, rc = 0;
	if (argc > 1 && strcmp(argv[1], "inspect") == 0) {
		o->command = MQ_CMD_INSPECT;
		first = 2;
	}
	struct mq_optarg *a = NULL;
	if ((rc = mq_options_split(argc, argv, first, &a, &n, err)))
		return rc;
	for (int k = 0; k < n && !rc; k++) {
		if (!a[k].name) {
			if (o->input)
				rc = mq_fail(err, MQ_ERR_USAGE, "more than one model given ('%s' and '%s')", o->input, a[k].value);
			o->input = a[k].value;
			continue;
		}
		const struct opt *op = find_long(a[k].name, strlen(a[k].name));
		if (op->applies & (o->command == MQ_CMD_INSPECT ? FOR_INSPECT_MODEL | FOR_INSPECT_CALIB : FOR_RUN))
			rc = apply(o, op, a[k].value, err);
		else if (o->command == MQ_CMD_INSPECT)
			rc = mq_fail(err, MQ_ERR_USAGE, "inspect does not take --%s (it takes --verbose, --json or --plot for a "
				     "model file, and --observer, --act and --calib-samples for a calibration file)", op->long_name);
		else
			rc = mq_fail(err, MQ_ERR_USAGE, "--%s applies to inspect only: mq-dist inspect --%s MODEL", op->long_name,
				     op->long_name);
	}
	free(a);
	if (rc)
		return rc;
	if (o->command == MQ_CMD_HELP || o->command == MQ_CMD_VERSION)
		return 0;
	if (o->groups && !o->job)
		return mq_fail(err, MQ_ERR_USAGE, "--groups needs --job FILE.json");
	if (o->command == MQ_CMD_INSPECT) {
		if (!o->input)
			return mq_fail(err, MQ_ERR_USAGE, "inspect: no file given");
		if (o->verbose + o->json + o->plot > 1)
			return mq_fail(err, MQ_ERR_USAGE, "inspect: give one of --verbose, --json and --plot (--json holds everything)");
		if (o->act_none)
			return mq_fail(err, MQ_ERR_USAGE, "inspect --act none: inspect shows int8 or int8-asym parameters; use one");
		return 0;
	}
	if (o->job) {
		if (o->input)
			return mq_fail(err, MQ_ERR_USAGE, "give either a model or --job, not both ('%s')", o->input);
		if (o->output || o->calib)
			return mq_fail(err, MQ_ERR_USAGE, "--output and --calib belong in the job file's model entries");
		return 0;
	}
	if (!o->input)
		return mq_fail(err, MQ_ERR_USAGE, "no model given (see --help)");
	if (o->calib_options && !o->calib)
		return mq_fail(err, MQ_ERR_USAGE, "--observer, --act, --calib-samples and --calib-missing need --calib FILE.h5");
	if (mq_options_check_budget(o, err))
		return err->code;
	return mq_options_mixed(o) ? 0 : check_scheme_options(o, err);
}

int mq_options_split(int argc, char **argv, int first, struct mq_optarg **out, int *n, struct mq_error *err)
{
	struct mq_optarg *a = calloc((size_t)argc + 1, sizeof(*a));
	int k = 0, no_more_opts = 0, rc = 0;
	if (!a)
		return mq_fail(err, MQ_ERR_INTERNAL, "out of memory");
	for (int i = first; i < argc && !rc; i++) {
		const char *s = argv[i];
		if (no_more_opts || s[0] != '-' || s[1] == '\0') {
			a[k++] = (struct mq_optarg){ NULL, s };
			continue;
		}
		if (strcmp(s, "--") == 0) {
			no_more_opts = 1;
			continue;
		}
		const struct opt *op = NULL;
		const char *val = NULL;
		if (s[1] == '-') {
			const char *name = s + 2, *eq = strchr(name, '=');
			op = find_long(name, eq ? (size_t)(eq - name) : strlen(name));
			if (op && eq && !op->arg) {
				rc = mq_fail(err, MQ_ERR_USAGE, "option '--%s' takes no value", op->long_name);
				break;
			}
			if (op && eq)
				val = eq + 1;
		} else {
			for (int j = 0; j < N_OPTS && !op; j++)
				if (opts[j].short_name == s[1])
					op = &opts[j];
			if (op && s[2] && !op->arg)
				op = NULL; /* "-fx": no such option */
			if (op && s[2])
				val = s + 2;
		}
		if (!op && s[1] == 'n')
			rc = mq_fail(err, MQ_ERR_USAGE, "%s is not an mq-dist option: --dry-run prints the plan; the rank count "
				     "goes to mpirun -n (mpirun -n N mq-dist MODEL)", s);
		else if (!op)
			rc = mq_fail(err, MQ_ERR_USAGE, "unknown option '%s' (see --help)", s);
		else if (op->arg && !val && i + 1 >= argc)
			rc = mq_fail(err, MQ_ERR_USAGE, "option '--%s' needs a value (%s)", op->long_name, op->arg);
		else
			a[k++] = (struct mq_optarg){ op->long_name, op->arg && !val ? argv[++i] : val };
	}
	if (rc) {
		free(a);
		return rc;
	}
	*out = a;
	*n = k;
	return 0;
}

int mq_options_lookup(const char *long_name, int *takes_value, int *repeatable)
{
	for (int j = 0; j < N_OPTS; j++) {
		if (strcmp(opts[j].long_name, long_name) != 0)
			continue;
		*takes_value = opts[j].arg != NULL;
		*repeatable = opts[j].id == OPT_INCLUDE || opts[j].id == OPT_EXCLUDE;
		return 0;
	}
	return -1;
}

const char *mq_options_name(int i)
{
	return i >= 0 && i < N_OPTS ? opts[i].long_name : NULL;
}

