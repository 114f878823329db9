/*
 * inspect of a Hugging Face model folder: what config.json's
 * quantization_config says (format, scheme, groups, ignored modules), and a
 * check that every Linear weight has exactly the tensors that config implies,
 * with their dtypes and shapes (LOWBIT.md A.3-A.5), and for packed weights
 * the tensor-parallel sizes vLLM's Marlin kernels take.
 */
#include "inspect_folder.h"

#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "buf.h"
#include "fileio.h"

#define MAX_PROBLEMS 20
#define MAX_GROUPS 16

/* One config group (a mixed-precision config has one per scheme, each naming its modules). */
struct qc {
	const char *name, *format, *strategy;
	int bits, symmetric, group_size, is_float;
	int input;                      /* 0 none, 1 dynamic, 2 static */
	const cJSON *ignore;            /* the config's */
	const cJSON *targets;
	int n_modules;                  /* Linear modules it took in the check */
};

static const cJSON *get(const cJSON *o, const char *k)
{
	return cJSON_GetObjectItemCaseSensitive(o, k);
}

static int ignored(const struct qc *q, const char *module)
{
	const cJSON *e;
	cJSON_ArrayForEach(e, q->ignore)
		if (cJSON_IsString(e) && strcmp(e->valuestring, module) == 0)
			return 1;
	return 0;
}

/* One config group g into q; 0, or -1 where it is not one mq-dist can check. */
static int read_group(const cJSON *qc, const cJSON *g, struct qc *q)
{
	const cJSON *w = get(g, "weights"), *in = get(g, "input_activations");
	memset(q, 0, sizeof(*q));
	if (!cJSON_IsObject(w))
		return -1;
	q->name = g->string;
	q->format = cJSON_GetStringValue(get(g, "format"));
	q->format = q->format ? q->format : cJSON_GetStringValue(get(qc, "format"));
	q->strategy = cJSON_GetStringValue(get(w, "strategy"));
	q->bits = cJSON_IsNumber(get(w, "num_bits")) ? get(w, "num_bits")->valueint : 0;
	q->symmetric = cJSON_IsTrue(get(w, "symmetric"));
	q->group_size = cJSON_IsNumber(get(w, "group_size")) ? get(w, "group_size")->valueint : 0;
	const char *type = cJSON_GetStringValue(get(w, "type"));
	q->is_float = type && strcmp(type, "float") == 0;
	q->input = !cJSON_IsObject(in) ? 0 : cJSON_IsTrue(get(in, "dynamic")) ? 1 : 2;
	q->ignore = get(qc, "ignore");
	q->targets = get(g, "targets");
	return q->format && q->strategy && q->bits && cJSON_IsArray(q->targets) ? 0 : -1;
}

/* quantization_config's groups into q (room for MAX_GROUPS); their number, or -1 where one cannot be checked. */
static int read_qc(const cJSON *cfg, struct qc *q)
{
	const cJSON *qc = get(cfg, "quantization_config"), *g;
	int n = 0;
	cJSON_ArrayForEach(g, get(qc, "config_groups"))
		if (n == MAX_GROUPS || read_group(qc, g, &q[n++]))
			return -1;
	return n ? n : -1;
}

/* The group of a module: the one that names it, else one that targets the Linear class; NULL if none. */
static struct qc *group_of(struct qc *q, int n, const char *module)
{
	struct qc *linear = NULL;
	for (int k = 0; k < n; k++) {
		const cJSON *e;
		cJSON_ArrayForEach(e, q[k].targets) {
			if (!cJSON_IsString(e))
				continue;
			if (strcmp(e->valuestring, module) == 0)
				return &q[k];
			if (strcmp(e->valuestring, "Linear") == 0 && !linear)
				linear = &q[k];
		}
	}
	return linear;
}

/* One expected tensor: present, with the dtype (or either of two) and shape. */
static void expect(const struct mq_manifest *m, const char *module, const char *suffix, enum mq_dtype d1,
		   enum mq_dtype d2, int ndim, const uint64_t *shape, struct mq_buf *problems, int *n)
{
	struct mq_buf name = MQ_BUF_INIT;
	mq_buf_addf(&name, "%s.%s", module, suffix);
	int i = mq_buf_ok(&name) ? mq_manifest_find(m, name.data) : -1;
	const struct mq_tensor *t = i >= 0 ? &m->tensors[i] : NULL;
	int ok = t && (t->dtype == d1 || t->dtype == d2) && t->ndim == ndim &&
		 memcmp(t->shape, shape, (size_t)ndim * sizeof(*shape)) == 0;
	if (!ok && (*n)++ < MAX_PROBLEMS) {
		mq_buf_addf(problems, "    %s: ", name.data ? name.data : suffix);
		if (!t) {
			mq_buf_adds(problems, "missing\n");
		} else {
			mq_buf_addf(problems, "%s [", mq_dtype_name(t->dtype));
			for (int k = 0; k < t->ndim; k++)
				mq_buf_addf(problems, k ? ", %llu" : "%llu", (unsigned long long)t->shape[k]);
			mq_buf_addf(problems, "], expected %s [", mq_dtype_name(d1));
			for (int k = 0; k < ndim; k++)
				mq_buf_addf(problems, k ? ", %llu" : "%llu", (unsigned long long)shape[k]);
			mq_buf_adds(problems, "]\n");
		}
	}
	mq_buf_release(&name);
}

/* The tensors a quantized Linear [out, in] of model dtype md must have under q. */
static void check_module(const struct mq_manifest *m, const struct qc *q, const char *module, uint64_t out,
			 uint64_t in, enum mq_dtype md, struct mq_buf *problems, int *n)
{
	uint64_t groups = strcmp(q->strategy, "group") == 0 && q->group_size > 0 ? in / (uint64_t)q->group_size : 1;
	uint64_t scale[2] = { out, groups }, one[1] = { 1 }, two[1] = { 2 };
	int tensor = strcmp(q->strategy, "tensor") == 0;
	if (strcmp(q->format, "pack-quantized") == 0) {
		uint64_t per = 32 / (uint64_t)q->bits, packed[2] = { out, in / per }, zp[2] = { (out + per - 1) / per, groups };
		expect(m, module, "weight_packed", MQ_DTYPE_I32, MQ_DTYPE_I32, 2, packed, problems, n);
		expect(m, module, "weight_scale", md, MQ_DTYPE_F32, 2, scale, problems, n);
		expect(m, module, "weight_shape", MQ_DTYPE_I64, MQ_DTYPE_I64, 1, two, problems, n);
		if (!q->symmetric)
			expect(m, module, "weight_zero_point", MQ_DTYPE_I32, MQ_DTYPE_I32, 2, zp, problems, n);
		return;
	}
	uint64_t w[2] = { out, in };
	enum mq_dtype wd = q->is_float ? MQ_DTYPE_F8_E4M3 : MQ_DTYPE_I8;
	expect(m, module, "weight", wd, wd, 2, w, problems, n);
	expect(m, module, "weight_scale", MQ_DTYPE_F32, md, tensor ? 1 : 2, tensor ? one : scale, problems, n);
	if (q->input == 2)
		expect(m, module, "input_scale", MQ_DTYPE_F32, md, 1, one, problems, n);
}

/*
 * The module of a Linear's tensor ("P.weight", "P.weight_packed" -> "P"),
 * or NULL; its group into *q (NULL if none takes it), its shape via *out, *in.
 */
static char *linear_module(const struct mq_manifest *m, const struct mq_tensor *t, struct qc *groups, int n_groups,
			   struct qc **qp, uint64_t *out, uint64_t *in, enum mq_dtype *md)
{
	size_t n = strlen(t->name);
	int packed = n > 14 && strcmp(t->name + n - 14, ".weight_packed") == 0;
	int plain = n > 7 && strcmp(t->name + n - 7, ".weight") == 0 && t->ndim == 2;
	if (!packed && !plain)
		return NULL;
	size_t stem = n - (packed ? 14 : 7);
	char *module = strndup(t->name, stem);
	const struct qc *q = *qp = module ? group_of(groups, n_groups, module) : NULL;
	*out = t->shape[0];
	*in = packed ? t->shape[1] * (uint64_t)(32 / (q && q->bits ? q->bits : 4)) : t->shape[1];
	*md = t->dtype;
	if (module && packed) { /* the model's dtype: its scale's */
		struct mq_buf s = MQ_BUF_INIT;
		mq_buf_addf(&s, "%s.weight_scale", module);
		int k = mq_buf_ok(&s) ? mq_manifest_find(m, s.data) : -1;
		*md = k >= 0 ? m->tensors[k].dtype : MQ_DTYPE_BF16;
		mq_buf_release(&s);
	}
	return module;
}

/* Tensor-parallel sizes vLLM's Marlin kernels take for a packed Linear (LOWBIT.md A.3). */
static unsigned tp_sizes(const char *module, uint64_t out, uint64_t in, int group)
{
	size_t n = strlen(module);
	int row_parallel = (n >= 6 && strcmp(module + n - 6, "o_proj") == 0) ||
			   (n >= 9 && strcmp(module + n - 9, "down_proj") == 0);
	unsigned ok = 0;
	for (unsigned tp = 1; tp <= 8; tp *= 2) {
		uint64_t o = row_parallel ? out : out / tp, i = row_parallel ? in / tp : in;
		int fits = (row_parallel ? in % tp : out % tp) == 0 && o % 64 == 0 && i % 128 == 0 &&
			   (group <= 0 || i % (uint64_t)group == 0);
		ok |= fits ? tp : 0;
	}
	return ok;
}

static void print_group(const struct qc *q, FILE *out, const char *lead)
{
	fprintf(out, "%s%s, weights %s %d-bit %s, %s", lead, q->format, q->is_float ? "float" : "int",
		q->bits, q->symmetric ? "symmetric" : "asymmetric", q->strategy);
	if (q->group_size > 0)
		fprintf(out, " of %d", q->group_size);
	fprintf(out, ", input activations %s\n", q->input == 0 ? "not quantized" : q->input == 1 ? "dynamic per token"
										      : "static per tensor");
}

static void print_config(const struct qc *q, int n, const char *format, FILE *out)
{
	if (n == 1) {
		print_group(q, out, "  quantization_config: ");
	} else {
		fprintf(out, "  quantization_config: %s, %d groups:\n", format ? format : "?", n);
		for (int k = 0; k < n; k++) {
			char lead[96];
			snprintf(lead, sizeof(lead), "    %s (%d modules): ", q[k].name ? q[k].name : "?",
				 cJSON_GetArraySize(q[k].targets));
			print_group(&q[k], out, lead);
		}
	}
	fprintf(out, "  ignored (kept unquantized):");
	const cJSON *e;
	int k = 0;
	cJSON_ArrayForEach(e, q->ignore)
		fprintf(out, "%s %s", k++ ? "," : "", cJSON_IsString(e) ? e->valuestring : "?");
	fprintf(out, "%s\n", k ? "" : " none");
}

int mq_inspect_folder(const struct mq_hf_folder *f, const struct mq_manifest *m, const char *config, size_t len,
		      FILE *out, struct mq_error *err)
{
	cJSON *cfg = cJSON_ParseWithLength(config, len);
	fprintf(out, "\nmodel folder %s: %zu weight file%s, %zu other file%s\n", f->dir, f->n_shards,
		f->n_shards == 1 ? "" : "s", f->n_copy, f->n_copy == 1 ? "" : "s");
	for (size_t i = 0; i < f->n_skipped; i++)
		fprintf(out, "  not part of the model: %s (%s)\n", f->skipped[i].path, f->skipped[i].why);
	struct qc groups[MAX_GROUPS];
	const int n_groups = cfg ? read_qc(cfg, groups) : -1;
	if (n_groups < 1) {
		fprintf(out, "  config.json: %s\n", cfg ? "no quantization_config mq-dist can read (not quantized, or another format)"
							: "not valid JSON");
		cJSON_Delete(cfg);
		return 0;
	}
	print_config(groups, n_groups, cJSON_GetStringValue(get(get(cfg, "quantization_config"), "format")), out);
	const struct qc *q0 = &groups[0];
	struct mq_buf problems = MQ_BUF_INIT;
	int n_problems = 0, n_quant = 0, n_ign = 0;
	unsigned tp = 1 | 2 | 4 | 8;
	for (int i = 0; i < m->n_tensors; i++) {
		uint64_t o = 0, in = 0;
		enum mq_dtype md;
		struct qc *q = NULL;
		char *module = linear_module(m, &m->tensors[i], groups, n_groups, &q, &o, &in, &md);
		if (!module)
			continue;
		if (ignored(q0, module)) {
			n_ign++;
			if (mq_manifest_find(m, m->tensors[i].name) >= 0 && strstr(m->tensors[i].name, ".weight_packed"))
				n_problems++, mq_buf_addf(&problems, "    %s is in ignore but quantized\n", module);
		} else if (strstr(m->tensors[i].name, "embed") == NULL && !q) {
			if (n_problems++ < MAX_PROBLEMS)
				mq_buf_addf(&problems, "    %s: in no config group's targets, nor in ignore\n", module);
		} else if (strstr(m->tensors[i].name, "embed") == NULL) {
			n_quant++;
			q->n_modules++;
			check_module(m, q, module, o, in, md, &problems, &n_problems);
			if (strcmp(q->format, "pack-quantized") == 0)
				tp &= tp_sizes(module, o, in, q->group_size);
		}
		free(module);
	}
	fprintf(out, "  check: %d quantized Linear layer%s, %d ignored: %s\n", n_quant, n_quant == 1 ? "" : "s", n_ign,
		n_problems ? "PROBLEMS" : "every tensor the config implies is present, with its dtype and shape");
	if (n_problems)
		fprintf(out, "%s%s", problems.data ? problems.data : "",
			n_problems > MAX_PROBLEMS ? "    (more not shown)\n" : "");
	int packs = 0;
	for (int k = 0; k < n_groups; k++)
		packs += strcmp(groups[k].format, "pack-quantized") == 0 && groups[k].n_modules;
	if (packs) {
		fprintf(out, "  tensor-parallel sizes vLLM's Marlin kernels take%s:", n_groups > 1 ? " (the packed layers)" : "");
		for (unsigned t = 1; t <= 8; t *= 2)
			if (tp & t)
				fprintf(out, " %u", t);
		fprintf(out, "%s\n", tp ? "" : " none (a shape is not a multiple of 64 outputs and 128 inputs)");
	}
	mq_buf_release(&problems);
	cJSON_Delete(cfg);
	return n_problems ? mq_fail(err, MQ_ERR_INPUT,
				    "'%s': %d tensor%s missing or wrong for its quantization_config (listed above)", f->dir,
				    n_problems, n_problems == 1 ? " is" : "s are")
			  : 0;
}
