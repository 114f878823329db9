/*
 * job: a JSON job file, the models of a zoo and their options, turned into
 * one command line per model.
 *
 *   {
 *     "report": "reports/nightly",              (optional: where the zoo report goes)
 *     "defaults": { "scheme": "int8", "exclude": ["lm_head"] },
 *     "models": [
 *       { "name": "tiny", "input": "models/tiny.safetensors",
 *         "output": "out/tiny.int8.safetensors", "calib": "calib/tiny.h5",
 *         "options": { "granularity": "tensor" } }
 *     ]
 *   }
 *
 * Option keys are the long command-line names ("memory-budget"; '_' may stand
 * for '-'). Values: true/false for flags, a string or number for the others,
 * and a string or an array of strings for include and exclude. An option is
 * taken whole from the first of these that sets it: the command line, the
 * model's entry, the job's defaults; otherwise its built-in default applies.
 * Relative paths count from the job file's folder. Everything is validated
 * before any model runs, and an error names the file, the entry and the key.
 * Across models: names are distinct, outputs are distinct files, and no
 * output is an input of the job; paths are compared as the file system
 * resolves them (the real path of an existing folder, else lexically), in
 * O(n log n). mq_job_parse reads no file, but resolves those folders
 * (realpath), so every rank of a shared file system parses the same text to
 * the same job (jobrun.c agrees on the outcome anyway).
 */
#ifndef MQ_JOB_H
#define MQ_JOB_H

#include <stddef.h>

#include "status.h"

struct mq_job_model {
	char *name;
	char *input, *output;    /* resolved */
	int argc;
	char **argv;             /* "mq-dist", the merged options, the input; NULL-terminated */
};

struct mq_job {
	char *report;            /* path prefix of the zoo report (.json and .md) */
	int n_models;
	struct mq_job_model *models;
};

/* text: the job file's contents; cli: the command line (argv[1..]) minus nothing: --job and --groups are dropped. */
int mq_job_parse(const char *path, const char *text, size_t len, int argc, char **argv, struct mq_job *job,
		 struct mq_error *err);
void mq_job_release(struct mq_job *job);

#endif
