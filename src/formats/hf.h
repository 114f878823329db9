/*
 * hf: the pieces of a Hugging Face model folder (config.json, shards, the
 * shard index, tokenizer and other files) that mq-dist reads and writes.
 * No MPI: rank 0 calls them, and any rank may. LOWBIT.md B and FORMATS.md
 * 1.5 are the facts they follow.
 *
 *   mq_hf_quant_config()    the compressed-tensors quantization_config of one
 *                           scheme (LOWBIT.md B.3), a cJSON tree
 *   mq_hf_json_print()      any cJSON tree as Python's json.dump(indent=2,
 *                           sort_keys=True) writes it
 *   mq_hf_config_rewrite()  config.json with that object put in, written as
 *                           llm-compressor rewrites it
 *   mq_hf_shard_name()      model-00001-of-00003.safetensors, or
 *                           model.safetensors for a single file
 *   mq_hf_index_json()      model.safetensors.index.json (FORMATS.md 1.5)
 *   mq_hf_folder_scan()     what an input folder holds: config.json, the
 *                           weights, and the other files to copy
 *   mq_hf_copy_file()       one of those files into the output folder
 *   mq_hf_path_inside()     whether a path lies in a folder (to refuse an
 *                           output inside the input)
 *
 * JSON text is written the way llm-compressor writes config.json and the
 * index (json.dump(obj, f, indent=2, sort_keys=True)): 2-space indentation,
 * "," at line ends and ": " after keys, keys sorted by code point, every
 * non-ASCII character escaped as \uXXXX (a surrogate pair above U+FFFF, hex
 * in lower case), empty containers as {} and [], and no newline at the end.
 *
 * Ownership: cJSON trees returned belong to the caller (cJSON_Delete);
 * functions append to a caller's struct mq_buf and never reset it.
 */
#ifndef MQ_HF_H
#define MQ_HF_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "buf.h"
#include "status.h"

/* ---- quantization_config ---------------------------------------------- */

/* One QuantizationArgs block: the weights', or the input activations'. */
struct mq_hf_args {
	const char *type;      /* "int" or "float" */
	int num_bits;          /* int: 1..8 (8 for int-quantized and any input); float: 8 (FP8 e4m3) */
	int symmetric;         /* 1: no zero point (float: always 1) */
	const char *strategy;  /* weights only: "tensor", "channel" or "group" */
	int group_size;        /* weights only: columns per group (> 0) with "group", else 0 (written null) */
	const char *observer;  /* NULL: the default (weights "minmax", static input "static_minmax");
				  informational, no loader reads it; dynamic input takes none */
};

/* The input activations of a scheme. */
enum mq_hf_input {
	MQ_HF_INPUT_NONE = 0,      /* weight-only: "input_activations": null */
	MQ_HF_INPUT_DYNAMIC_TOKEN, /* scales per token at run time: strategy "token", dynamic true, observer null */
	MQ_HF_INPUT_STATIC_TENSOR, /* one calibrated input_scale per layer: strategy "tensor", dynamic false */
};

/*
 * One scheme's compressed-tensors config. Strings are not owned. Which
 * format a scheme gets (LOWBIT.md A.1; vLLM asserts on the other pairings):
 *   "pack-quantized"   int weights, no input quantization (W4A16, W8A16)
 *   "int-quantized"    int8 weights, int8 input (W8A8)
 *   "float-quantized"  FP8 weights, FP8 input
 *   "naive-quantized"  FP8 weights, no input quantization
 */
struct mq_hf_quant {
	const char *format;
	struct mq_hf_args weights;
	enum mq_hf_input input;
	struct mq_hf_args input_args;  /* type, num_bits, symmetric, observer; used when input != NONE */
	const char *const *ignore;     /* exact module names kept unquantized ("lm_head"), written in this order */
	size_t n_ignore;
	const char *const *targets;    /* the group's targets: exact module names, in this order; NULL: ["Linear"] */
	size_t n_targets;
};

/*
 * Builds the "quantization_config" object of q into *out (the caller's, to
 * cJSON_Delete): one group "group_0" targeting ["Linear"], "actorder" and
 * "block_structure" null, weights "dynamic" false, "format" both in the group
 * and at the top, "global_compression_ratio" and "kv_cache_scheme" null,
 * "quant_method" "compressed-tensors", "quantization_status" "compressed",
 * "sparsity_config" and "transform_config" {}, "version" "0.12.2". It never
 * writes "scale_dtype" or "zp_dtype" (loaders with compressed-tensors <= 0.12
 * refuse them, LOWBIT.md G.1). A q that breaks the rules above (or a rule of
 * compressed-tensors: group_size > 0 exactly with "group") is a bug of the
 * caller: MQ_ERR_INTERNAL, naming the field.
 */
int mq_hf_quant_config(const struct mq_hf_quant *q, cJSON **out, struct mq_error *err);
/*
 * The same for a mixed-precision model: one group per q[k] ("group_0" ...,
 * each with its own format and targets, which must be explicit module
 * names), "ignore" from q[0], and the top-level "format" the groups' one
 * if they agree, else "mixed-precision" (vLLM then reads each group's).
 */
int mq_hf_quant_config_groups(const struct mq_hf_quant *q, size_t n, cJSON **out, struct mq_error *err);

/* ---- JSON as Python writes it -------------------------------------------- */

/*
 * Appends v as json.dump(v, indent=2, sort_keys=True) would (see the top of
 * this file). Of keys repeated in one object the last one is written (as
 * json.load keeps it). Numbers: a cJSON_Raw item is written as its text (the
 * config.json reader keeps numbers so); a cJSON_Number that is a whole number
 * below 2^53 in magnitude as an integer, any other as Python's repr() of the
 * double (1e-05, 500000.0, 1e+16). Strings must be valid UTF-8
 * (MQ_ERR_INTERNAL otherwise); nesting to 64 levels below the top.
 */
int mq_hf_json_print(const cJSON *v, struct mq_buf *out, struct mq_error *err);

/*
 * Appends config.json's text json[0..len) with "quantization_config" set to
 * a copy of qc (every member of that name replaced), the whole document
 * written as mq_hf_json_print() writes it: what llm-compressor's
 * update_config writes (json.load, set the key, json.dump(indent=2,
 * sort_keys=True)). Numbers keep their value exactly: an integer is written
 * as it was ("-0" as 0, more digits than 64 bits hold kept), any number with
 * a fraction or an exponent as Python's repr() of its double (1e-05,
 * 500000.0 and 0.02 come out as they went in; 1E-5 becomes 1e-05 and 0.10
 * 0.1, as in Python). NaN, Infinity and -Infinity are read and written as
 * Python's json does.
 *
 * MQ_ERR_INPUT, naming "config.json" and what to do, when the text is not
 * UTF-8 or not JSON (the byte is given), is not an object, or has a
 * quantization_config that says the model is quantized already (one with a
 * quant_method or config_groups; null and {} are replaced). Unlike Python,
 * it refuses a string holding \u0000 or a lone surrogate, and nesting
 * more than 64 levels below the top. qc not an object: MQ_ERR_INTERNAL.
 */
int mq_hf_config_rewrite(const char *json, size_t len, const cJSON *qc, struct mq_buf *out, struct mq_error *err);

/* ---- shards and their index ---------------------------------------------- */

/* Room for any shard name mq_hf_shard_name() writes, NUL included. */
#define MQ_HF_SHARD_NAME_MAX 48

/*
 * The file name of shard i (0-based, 0 <= i < n) of n, as transformers and
 * llm-compressor name them: "model-%05d-of-%05d.safetensors" numbered from 1
 * (i = 0 of 3 is model-00001-of-00003.safetensors), except that a model of
 * one file is "model.safetensors" and has no index, as transformers'
 * save_pretrained writes it (and as loaders look for it). cap must be at
 * least MQ_HF_SHARD_NAME_MAX; bad arguments are a bug (MQ_ASSERT).
 */
void mq_hf_shard_name(int i, int n, char *buf, size_t cap);

/* One tensor in the shard index: its name and the shard file that holds it (not owned). */
struct mq_hf_weight {
	const char *tensor;
	const char *shard;  /* a file name beside the index, e.g. from mq_hf_shard_name() */
};

/*
 * Appends model.safetensors.index.json for the n tensors of w (any order):
 * {"metadata": {"total_size": total_size}, "weight_map": {tensor: shard}},
 * tensors sorted, as json.dump(indent=2, sort_keys=True) writes it (what
 * llm-compressor's update_safetensors_index writes). total_size is the sum of
 * the tensors' data bytes, not of the file sizes (FORMATS.md 1.5). Only a
 * model of more than one shard has an index (see mq_hf_shard_name). No
 * tensor, an empty name, a tensor listed twice or a shard name with a '/' is
 * a bug of the caller: MQ_ERR_INTERNAL, naming it.
 */
int mq_hf_index_json(const struct mq_hf_weight *w, size_t n, uint64_t total_size, struct mq_buf *out,
		     struct mq_error *err);

/* ---- the input folder ------------------------------------------------------- */

/* A file of the input folder that is left out of the output on purpose. */
struct mq_hf_skip {
	char *path;       /* relative to the folder ("original/consolidated.00.pth"), owned */
	const char *why;  /* static text, for a warning */
};

/* What a model folder holds (mq_hf_folder_scan). Paths are relative to dir, '/'-separated. */
struct mq_hf_folder {
	char *dir;                  /* the folder as given, trailing '/' removed (owned) */
	char *index;                /* "model.safetensors.index.json", or NULL: the one file "model.safetensors" */
	char **shards;              /* the weight files the index names (or model.safetensors), sorted, each once */
	size_t n_shards;
	char **copy;                /* every other file, at any depth, to copy byte for byte; sorted */
	size_t n_copy;
	struct mq_hf_skip *skipped; /* files neither read nor copied, sorted by path */
	size_t n_skipped;
};

/*
 * Scans the model folder dir into *f (the caller's storage; released on
 * failure too, and mq_hf_folder_release() afterwards either way):
 *  - config.json must be there (MQ_ERR_INPUT naming the folder and what a
 *    model folder holds otherwise);
 *  - the weights: model.safetensors.index.json, preferred, and every shard
 *    it names (file names beside it, each present), else model.safetensors;
 *    neither is an error that lists what the folder holds;
 *  - copy: every other regular file at any depth (tokenizer.json,
 *    tokenizer_config.json, generation_config.json, chat templates, custom
 *    *.py, files in subfolders), but config.json, the index and its shards
 *    (the output has its own) and anything hidden (a name starting with '.',
 *    such as .git, .cache or .gitattributes, at any depth);
 *  - skipped: files that hold the model's weights in some other form, at any
 *    depth (*.safetensors the index does not name, *.bin, *.pt, *.pth,
 *    *.ckpt, *.h5, *.msgpack, *.gguf, *.onnx, and their *.index.json):
 *    copied, they would put the unquantized model beside the quantized one
 *    (a loader that globs *.safetensors, as vLLM does for a folder without
 *    an index, would read both); and whatever is not a regular file (FIFO,
 *    socket, device).
 * Symbolic links are followed, to files and to folders (a Hugging Face cache
 * snapshot is all links into ../../blobs); a dangling link, or a link back
 * to a folder that contains it, is an error naming it. Lists are sorted by
 * byte value, so a scan is the same on every run and every rank. At most
 * MQ_FOLDER_MAX_ENTRIES entries and MQ_FOLDER_MAX_DEPTH levels (bounds.h).
 */
int mq_hf_folder_scan(const char *dir, struct mq_hf_folder *f, struct mq_error *err);
void mq_hf_folder_release(struct mq_hf_folder *f);

/* ---- files ------------------------------------------------------------------ */

/* mq_hf_copy_file() flags. */
#define MQ_HF_COPY_FSYNC 1u  /* the copy and its folder on disk (fsync) before it returns */

/*
 * Copies the file src (links followed) to dst byte for byte, making the
 * folders above dst that are missing (mode 0777 less the umask). The bytes
 * go to a hidden file beside dst (".<name>.mq-XXXXXX"), renamed to dst once
 * complete: dst is never seen half-written, and one that exists is
 * replaced. The copy keeps src's permission bits. Errors name both paths:
 * MQ_ERR_INPUT when src cannot be read or is not a regular file,
 * MQ_ERR_OUTPUT when dst cannot be written (disk full, a file where a folder
 * belongs, ...); nothing is left behind but the folders made.
 */
int mq_hf_copy_file(const char *src, const char *dst, unsigned flags, struct mq_error *err);

/*
 * Whether path is the folder dir or lies inside it, both resolved as the
 * kernel resolves them (realpath(): links and ".." followed, relative paths
 * from the current folder): 1 yes, 0 no, -1 when it cannot tell (dir does
 * not resolve, a part of path cannot be read, or path runs through a
 * dangling link; errno says why). A caller refusing an output inside its
 * input refuses on -1 too. A path that does not exist yet is resolved
 * through its nearest existing parent and the rest taken as mkdir -p would
 * make it ("." dropped, ".." the folder above). For the other way round (the
 * input inside the output), swap the arguments.
 */
int mq_hf_path_inside(const char *dir, const char *path);

#endif
