#include "folder.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "fileio.h"
#include "hf.h"
#include "output.h"

int folder_is_dir(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int folder_scan_input(struct run *r, char **weights)
{
	*weights = NULL;
	r->hf = calloc(1, sizeof(*r->hf));
	if (!r->hf)
		return mq_fail(&r->err, MQ_ERR_INTERNAL, "out of memory");
	if (mq_hf_folder_scan(r->opt->input, r->hf, &r->err))
		return r->err.code;
	struct mq_buf b = MQ_BUF_INIT;
	mq_buf_addf(&b, "%s/%s", r->hf->dir, r->hf->index ? r->hf->index : r->hf->shards[0]);
	if (!mq_buf_ok(&b))
		return mq_fail(&r->err, MQ_ERR_INTERNAL, "out of memory");
	*weights = mq_buf_detach(&b, NULL);
	return 0;
}

int folder_check_output(struct run *r)
{
	if (!r->writer->folder)
		return 0;
	if (!r->hf)
		return mq_fail(&r->err, MQ_ERR_USAGE,
			"output '%s' is a model folder, which needs a Hugging Face model folder as input (its config.json and tokenizer go with the weights); give the folder, or an output file name such as OUT.safetensors",
			r->output);
	if (mq_hf_path_inside(r->hf->dir, r->output) != 0) /* inside, or cannot tell */
		return mq_fail(&r->err, MQ_ERR_USAGE,
			"output '%s' lies inside the input folder '%s'; choose a folder beside it (the default is '%s-SCHEME')",
			r->output, r->hf->dir, r->hf->dir);
	/* an existing output is replaced whole: it must not hold the input, nor be anything but a model folder */
	if (folder_is_dir(r->output) && mq_hf_path_inside(r->output, r->hf->dir) != 0)
		return mq_fail(&r->err, MQ_ERR_USAGE,
			"the input folder '%s' lies inside the output '%s', which would be replaced; choose another -o",
			r->hf->dir, r->output);
	return 0;
}

/* The weights vLLM fuses into one layer, by family: q/k/v into qkv_proj, gate/up into gate_up_proj. */
static const char *const fused[][3] = { { "q_proj.weight", "k_proj.weight", "v_proj.weight" },
					{ "gate_proj.weight", "up_proj.weight", NULL } };
#define N_FUSED ((int)(sizeof(fused) / sizeof(fused[0])))

/* The family of a weight ("P.k_proj.weight": 0, with the length of "P." in *stem), or -1. */
static int fused_family(const char *name, size_t *stem)
{
	size_t n = strlen(name);
	for (int f = 0; f < N_FUSED; f++)
		for (int k = 0; k < 3 && fused[f][k]; k++) {
			size_t m = strlen(fused[f][k]);
			if (n >= m && strcmp(name + n - m, fused[f][k]) == 0 && (n == m || name[n - m - 1] == '.')) {
				*stem = n - m;
				return f;
			}
		}
	return -1;
}

/* Tensor i's fused siblings (itself included) in the family's order: their manifest indices into sib (-1: absent). */
static int siblings(const struct mq_manifest *m, int i, int sib[3])
{
	size_t stem;
	int f = fused_family(m->tensors[i].name, &stem), n = 0;
	for (int k = 0; f >= 0 && k < 3 && fused[f][k]; k++) {
		struct mq_buf b = MQ_BUF_INIT;
		mq_buf_add(&b, m->tensors[i].name, stem);
		mq_buf_adds(&b, fused[f][k]);
		sib[n++] = mq_buf_ok(&b) ? mq_manifest_find(m, b.data) : -1;
		mq_buf_release(&b);
	}
	return n;
}

int folder_fused_leader(const struct mq_manifest *m, int i)
{
	int sib[3], n = siblings(m, i, sib);
	for (int k = 0; k < n; k++)
		if (sib[k] >= 0)
			return sib[k];
	return i;
}

/* The first sibling of weight i (a later tensor of its family, by name lookup) whose fate differs, or -1. */
static int split_sibling(const struct run *r, int i)
{
	int sib[3], n = siblings(&r->man, i, sib);
	for (int k = 0; k < n; k++)
		if (sib[k] > i && r->plan.tensors[sib[k]].action != r->plan.tensors[i].action)
			return sib[k];
	return -1;
}

/* A scheme and options whose folder vLLM would refuse or misread (LOWBIT.md A.1, A.4). */
static int check_loadable(const struct run *r, const struct mq_scheme_traits *si, struct mq_error *err)
{
	if (si->acts == MQ_ACTS_INT8 && !si->symmetric)
		return mq_fail(err, MQ_ERR_USAGE,
			"a model folder of %s would not load: vLLM's int8 W8A8 layers take symmetric weights only; use int8, or w8a16-asym for 8-bit weights with zero points",
			si->name);
	if (si->acts == MQ_ACTS_INT8 && r->opt->act_none)
		return mq_fail(err, MQ_ERR_USAGE,
			"a model folder of %s with --act none would not load (int-quantized needs input activations); use w8a16 for int8 weight-only",
			si->name);
	if (r->plan.n_calibrated && r->plan.n_weights_only && si->acts != MQ_ACTS_NONE && !r->opt->act_none)
		return mq_fail(err, MQ_ERR_USAGE,
			"%d layers have static input scales and %d none (--calib-missing=weights-only): one model folder config group cannot say both; capture calibration for every layer, or exclude those without",
			r->plan.n_calibrated, r->plan.n_weights_only);
	return 0;
}

static int quant_config(struct run *r, cJSON **qc, char ***names);
static void release_names(char **names);
static int has_groups(const struct run *r);

int folder_check_plan(struct run *r)
{
	struct mq_error *err = &r->err;
	const struct mq_manifest *m = &r->man;
	for (int k = 0; k < (r->plan.mix ? r->plan.mix->n_candidates : 1); k++) /* mixed precision: each candidate */
		if (check_loadable(r, mq_scheme_get(r->plan.mix ? r->plan.mix->spec[k].scheme : r->plan.q.scheme), err))
			return err->code;
	if (has_groups(r)) { /* the config the folder will get, built before any work */
		cJSON *qc = NULL;
		char **names = NULL;
		quant_config(r, &qc, &names);
		cJSON_Delete(qc);
		release_names(names);
		if (err->code)
			return err->code;
	}
	for (int i = 0; i < m->n_tensors; i++) {
		int j = split_sibling(r, i);
		if (j < 0)
			continue;
		const struct mq_plan_tensor *a = &r->plan.tensors[i], *b = &r->plan.tensors[j];
		return mq_fail(err, MQ_ERR_USAGE,
			"'%s' is %s but '%s' is %s (%s): vLLM fuses them into one layer, which takes one scheme; quantize both or neither (check --include, --exclude and --keep-unfit)",
			m->tensors[i].name, a->action == MQ_ACT_QUANT ? "quantized" : "kept", m->tensors[j].name,
			b->action == MQ_ACT_QUANT ? "quantized" : "kept", a->action == MQ_ACT_QUANT ? b->reason : a->reason);
	}
	return 0;
}

/* Writes the file name (no folder) of the partial folder from memory, fsync'd unless --no-sync. */
static int write_new(struct run *r, const char *name, const char *p, size_t n)
{
	struct mq_buf to = MQ_BUF_INIT;
	mq_buf_addf(&to, "%s/%s", r->tmp, name);
	if (!mq_buf_ok(&to))
		return mq_fail(&r->err, MQ_ERR_INTERNAL, "out of memory");
	int fd = open(to.data, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644), bad = fd < 0;
	while (!bad && n > 0) {
		ssize_t w = write(fd, p, n);
		bad = w <= 0 && !(w < 0 && errno == EINTR);
		if (w > 0) {
			p += w;
			n -= (size_t)w;
		}
	}
	bad = bad || (!r->opt->no_sync && fsync(fd) != 0);
	int e = errno;
	if (fd >= 0 && close(fd) != 0 && !bad) {
		bad = 1;
		e = errno;
	}
	if (bad)
		mq_fail(&r->err, MQ_ERR_OUTPUT, "cannot write '%s': %s", to.data, strerror(e));
	mq_buf_release(&to);
	return r->err.code;
}

/* Copies file rel of the input folder into the partial folder, byte for byte. */
static int copy_file(struct run *r, const char *rel)
{
	struct mq_buf from = MQ_BUF_INIT, to = MQ_BUF_INIT;
	mq_buf_addf(&from, "%s/%s", r->hf->dir, rel);
	mq_buf_addf(&to, "%s/%s", r->tmp, rel);
	if (!mq_buf_ok(&from) || !mq_buf_ok(&to))
		mq_fail(&r->err, MQ_ERR_INTERNAL, "out of memory");
	else
		mq_hf_copy_file(from.data, to.data, r->opt->no_sync ? 0 : MQ_HF_COPY_FSYNC, &r->err);
	mq_buf_release(&from);
	mq_buf_release(&to);
	return r->err.code;
}

/* Whether a kept 2-D weight is a Linear layer's (embeddings are not: compressed-tensors ignores only Linear). */
static int kept_linear(const struct mq_tensor *t, const struct mq_plan_tensor *pt)
{
	size_t n = strlen(t->name);
	return pt->action == MQ_ACT_KEEP && t->ndim == 2 && n > 7 && strcmp(t->name + n - 7, ".weight") == 0 &&
	       mq_dtype_is_float(t->dtype) && !strstr(t->name, "embed") && !strstr(t->name, "wte.") &&
	       !strstr(t->name, "wpe.");
}

static void release_names(char **names)
{
	for (int i = 0; names && names[i]; i++)
		free(names[i]);
	free(names);
}

/* One scheme's config group (spec q), without its ignore and targets. */
static void quant_group(const struct run *r, const struct mq_spec *spec, struct mq_hf_quant *q)
{
	const struct mq_plan *p = &r->plan;
	const struct mq_scheme_traits *si = mq_scheme_get(spec->scheme);
	static const char *const strategy[] = { [MQ_GRAN_NONE] = "tensor", [MQ_GRAN_TENSOR] = "tensor",
						[MQ_GRAN_CHANNEL] = "channel", [MQ_GRAN_GROUP] = "group" };
	memset(q, 0, sizeof(*q));
	/* fp8 without activations is compressed-tensors' naive-quantized (float-quantized needs them) */
	q->format = si->acts == MQ_ACTS_FP8 && r->opt->act_none ? "naive-quantized" : si->ct_format;
	q->weights = (struct mq_hf_args){ si->ct_type, si->bits, si->symmetric, strategy[spec->granularity],
					  (int)spec->group_size, NULL };
	if (si->acts != MQ_ACTS_NONE && !r->opt->act_none) {
		q->input = p->n_calibrated ? MQ_HF_INPUT_STATIC_TENSOR : MQ_HF_INPUT_DYNAMIC_TOKEN;
		q->input_args = (struct mq_hf_args){ si->ct_type, 8, !p->act_asymmetric, NULL, 0, NULL };
	}
}

/* A Linear weight stored unquantized: kept, or (mixed precision) cast. */
static int plain_linear(const struct mq_tensor *t, const struct mq_plan_tensor *pt)
{
	struct mq_plan_tensor kept = *pt;
	kept.action = pt->action == MQ_ACT_QUANT && !mq_scheme_get(pt->q.scheme)->granularities ? MQ_ACT_KEEP : pt->action;
	return kept_linear(t, &kept);
}

/* Whether the folder's config.json gets a quantization_config: some weight is stored with scales. */
static int has_groups(const struct run *r)
{
	for (int i = 0; i < r->plan.n_tensors; i++)
		if (r->plan.tensors[i].action == MQ_ACT_QUANT && mq_scheme_get(r->plan.tensors[i].q.scheme)->granularities)
			return 1;
	return 0;
}

/*
 * The quantization_config, with `ignore` the Linear modules stored
 * unquantized (names in *names, to free): one group targeting Linear, or for
 * mixed precision one per chosen candidate with scales, its modules named.
 */
static int quant_config(struct run *r, cJSON **qc, char ***names)
{
	const struct mq_plan *p = &r->plan;
	const int K = p->mix ? p->mix->n_candidates : 1;
	struct mq_hf_quant q[MQ_MAX_CANDIDATES];
	size_t n = 0, at = 0;
	*names = calloc((size_t)p->n_tensors * 2 + 1, sizeof(char *)); /* the ignored, then each group's targets */
	if (!*names)
		return mq_fail(&r->err, MQ_ERR_INTERNAL, "out of memory");
	for (int i = 0; i < p->n_tensors; i++)
		if (plain_linear(&r->man.tensors[i], &p->tensors[i]) &&
		    !((*names)[at++] = mq_plan_layer_name(r->man.tensors[i].name)))
			return mq_fail(&r->err, MQ_ERR_INTERNAL, "out of memory");
	const size_t n_ignore = at;
	for (int k = 0; k < K; k++) {
		const struct mq_spec *spec = p->mix ? &p->mix->spec[k] : &p->q;
		if (!mq_scheme_get(spec->scheme)->granularities)
			continue;
		quant_group(r, spec, &q[n]);
		q[n].targets = p->mix ? (const char *const *)*names + at : NULL;
		for (int i = 0; p->mix && i < p->n_tensors; i++)
			if (p->mix->chosen[i] == k && !((*names)[at++] = mq_plan_layer_name(r->man.tensors[i].name)))
				return mq_fail(&r->err, MQ_ERR_INTERNAL, "out of memory");
		q[n].n_targets = p->mix ? (size_t)((const char *const *)*names + at - q[n].targets) : 0;
		n += !p->mix || q[n].n_targets;
	}
	if (!n)
		return mq_fail(&r->err, MQ_ERR_INTERNAL, "quantization_config: no weight has scales");
	q[0].ignore = (const char *const *)*names;
	q[0].n_ignore = n_ignore;
	return mq_hf_quant_config_groups(q, n, qc, &r->err);
}

/* config.json: the input's, with the scheme's quantization_config (a cast's is copied as it is). */
static int write_config(struct run *r)
{
	if (!has_groups(r))
		return copy_file(r, "config.json");
	struct mq_buf out = MQ_BUF_INIT, path = MQ_BUF_INIT;
	cJSON *qc = NULL;
	char **names = NULL, *in = NULL;
	size_t len = 0;
	mq_buf_addf(&path, "%s/config.json", r->hf->dir);
	if (!mq_buf_ok(&path))
		mq_fail(&r->err, MQ_ERR_INTERNAL, "out of memory");
	else if (mq_read_small(path.data, MQ_MAX_HEADER_BYTES, &in, &len))
		mq_fail(&r->err, errno == ENOMEM ? MQ_ERR_INTERNAL : MQ_ERR_INPUT, "cannot read '%s': %s", path.data,
			errno == EFBIG ? "larger than 1 GiB, not a model's config" : errno ? strerror(errno) : "it ended early");
	if (!r->err.code && !quant_config(r, &qc, &names) && !mq_hf_config_rewrite(in, len, qc, &out, &r->err))
		write_new(r, "config.json", out.data, out.len);
	cJSON_Delete(qc);
	release_names(names);
	free(in);
	mq_buf_release(&out);
	mq_buf_release(&path);
	return r->err.code;
}

/* model.safetensors.index.json, for more than one shard. */
static int write_index(struct run *r)
{
	const struct mq_plan *p = &r->plan;
	if (r->files.n_files < 2)
		return 0;
	struct mq_hf_weight *w = calloc((size_t)p->n_out + 1, sizeof(*w));
	struct mq_buf b = MQ_BUF_INIT;
	if (!w)
		return mq_fail(&r->err, MQ_ERR_INTERNAL, "out of memory");
	for (int k = 0; k < p->n_out; k++)
		w[k] = (struct mq_hf_weight){ p->out[k].name, r->files.names[r->files.file_of[k]] };
	if (!mq_hf_index_json(w, (size_t)p->n_out, p->bytes_out, &b, &r->err))
		write_new(r, "model.safetensors.index.json", b.data, b.len);
	free(w);
	mq_buf_release(&b);
	return r->err.code;
}

int output_folder_finish(struct run *r)
{
	if (!write_config(r) && !write_index(r))
		for (size_t i = 0; i < r->hf->n_copy && !r->err.code; i++)
			copy_file(r, r->hf->copy[i]);
	return r->err.code;
}
