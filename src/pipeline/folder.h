/*
 * folder: a Hugging Face model folder in and out. The input folder's scan
 * (config.json, the weights, the files to copy); the output folder's files
 * besides the shards: config.json with the scheme's quantization_config,
 * the shard index and the input's other files, byte for byte; and the
 * rules that keep the folder loadable (Linear weights only, fused
 * projections together, -o never inside the input).
 */
#ifndef MQ_FOLDER_H
#define MQ_FOLDER_H

#include "state.h"

/* Whether path names a folder (a model folder input). */
int folder_is_dir(const char *path);
/* Rank 0: scans the input folder into r->hf and sets *weights to the manifest to load (malloc'd). */
int folder_scan_input(struct run *r, char **weights);
/* Rank 0, before any work: a folder output needs a folder input, and lies outside it. */
int folder_check_output(struct run *r);
/*
 * Every rank, after the plan: the scheme and options load in vLLM, and q/k/v
 * and gate/up (which vLLM fuses) share one fate.
 */
int folder_check_plan(struct run *r);
/*
 * The first tensor of the manifest's tensors that vLLM fuses with tensor i
 * into one layer (q/k/v into qkv_proj, gate/up into gate_up_proj): the
 * first of q_proj, k_proj, v_proj (gate_proj, up_proj) the manifest holds
 * beside it, or i itself.
 */
int folder_fused_leader(const struct mq_manifest *m, int i);
/* Rank 0, after the shards: config.json, the index and the copied files, into the partial folder. */
int output_folder_finish(struct run *r);

#endif
