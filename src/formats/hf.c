/*
 * hf: the compressed-tensors quantization_config of a scheme, shard names
 * and the shard index (hf.h).
 */
#include "hf.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The compressed-tensors version the config claims: the newest one without scale_dtype/zp_dtype (LOWBIT.md B.2). */
#define CT_VERSION "0.12.2"

static int is_one_of(const char *s, const char *const *names)
{
	for (; s && *names; names++)
		if (strcmp(s, *names) == 0)
			return 1;
	return 0;
}

static int bad_quant(struct mq_error *err, const char *what)
{
	return mq_fail(err, MQ_ERR_INTERNAL, "quantization_config: %s", what);
}

/* type, num_bits and symmetric of one args block; int8_only: int must be 8 bits. */
static int check_type(const struct mq_hf_args *a, int int8_only, struct mq_error *err)
{
	static const char *const types[] = { "int", "float", NULL };
	if (!is_one_of(a->type, types))
		return bad_quant(err, "type is not \"int\" or \"float\"");
	if (strcmp(a->type, "float") == 0 && (a->num_bits != 8 || !a->symmetric))
		return bad_quant(err, "float (FP8 e4m3) takes num_bits 8 and symmetric");
	if (strcmp(a->type, "int") == 0 && (a->num_bits < 1 || a->num_bits > 8 || (int8_only && a->num_bits != 8)))
		return bad_quant(err, int8_only ? "int input activations and int-quantized weights take num_bits 8"
						: "int weights take num_bits 1..8");
	return 0;
}

static int check_weights(const struct mq_hf_quant *q, struct mq_error *err)
{
	static const char *const strategies[] = { "tensor", "channel", "group", NULL };
	const struct mq_hf_args *w = &q->weights;
	int rc = check_type(w, strcmp(q->format, "int-quantized") == 0, err);
	if (rc)
		return rc;
	if (!is_one_of(w->strategy, strategies))
		return bad_quant(err, "weights strategy is not \"tensor\", \"channel\" or \"group\"");
	if ((strcmp(w->strategy, "group") == 0) != (w->group_size > 0) || w->group_size < 0)
		return bad_quant(err, "weights group_size must be > 0 with strategy \"group\" and 0 (null) otherwise");
	return 0;
}

static int check_input(const struct mq_hf_quant *q, struct mq_error *err)
{
	if (q->input == MQ_HF_INPUT_NONE)
		return 0;
	if (q->input != MQ_HF_INPUT_DYNAMIC_TOKEN && q->input != MQ_HF_INPUT_STATIC_TENSOR)
		return bad_quant(err, "unknown input activations kind");
	int rc = check_type(&q->input_args, 1, err);
	if (rc)
		return rc;
	if (q->input == MQ_HF_INPUT_DYNAMIC_TOKEN && q->input_args.observer)
		return bad_quant(err, "dynamic input activations take no observer");
	return 0;
}

/* The format against the weights' type and the input (LOWBIT.md A.1), then each block. */
static int check_quant(const struct mq_hf_quant *q, struct mq_error *err)
{
	static const char *const formats[] = { "pack-quantized", "int-quantized", "float-quantized",
					       "naive-quantized", NULL };
	if (!is_one_of(q->format, formats))
		return bad_quant(err, "format is not pack-, int-, float- or naive-quantized");
	int has_input = q->input != MQ_HF_INPUT_NONE;
	const char *want = has_input ? (strcmp(q->format, "int-quantized") == 0 ? "int" : "float")
				     : (strcmp(q->format, "pack-quantized") == 0 ? "int" : "float");
	int act_format = strcmp(q->format, "int-quantized") == 0 || strcmp(q->format, "float-quantized") == 0;
	if (has_input != act_format)
		return bad_quant(err, has_input ? "input activations need format int-quantized or float-quantized"
						: "int-quantized and float-quantized need input activations");
	if (!q->weights.type || strcmp(q->weights.type, want) != 0 ||
	    (has_input && (!q->input_args.type || strcmp(q->input_args.type, want) != 0)))
		return bad_quant(err, "pack-quantized takes int weights, naive-quantized float weights, "
				      "int-quantized int weights and input, float-quantized float weights and input");
	int rc = check_weights(q, err);
	if (!rc)
		rc = check_input(q, err);
	for (size_t i = 0; i < q->n_ignore && !rc; i++)
		if (!q->ignore[i] || !*q->ignore[i])
			rc = bad_quant(err, "an ignore entry is empty");
	return rc;
}

/* One QuantizationArgs object, keys in sorted order. */
static cJSON *args_json(const struct mq_hf_args *a, const char *strategy, int group_size, int dynamic,
			const char *observer)
{
	cJSON *o = cJSON_CreateObject();
	if (!o)
		return NULL;
	cJSON_AddNullToObject(o, "actorder");
	cJSON_AddNullToObject(o, "block_structure");
	cJSON_AddBoolToObject(o, "dynamic", dynamic);
	if (group_size > 0)
		cJSON_AddNumberToObject(o, "group_size", group_size);
	else
		cJSON_AddNullToObject(o, "group_size");
	cJSON_AddNumberToObject(o, "num_bits", a->num_bits);
	if (observer)
		cJSON_AddStringToObject(o, "observer", observer);
	else
		cJSON_AddNullToObject(o, "observer");
	cJSON_AddObjectToObject(o, "observer_kwargs");
	cJSON_AddStringToObject(o, "strategy", strategy);
	cJSON_AddBoolToObject(o, "symmetric", a->symmetric);
	cJSON_AddStringToObject(o, "type", a->type);
	return o;
}

/* cJSON_AddItemToObject, which leaves the item to the caller when it fails: deleted here. */
static void add(cJSON *o, const char *key, cJSON *item)
{
	if (!cJSON_AddItemToObject(o, key, item))
		cJSON_Delete(item);
}

static cJSON *input_json(const struct mq_hf_quant *q)
{
	const struct mq_hf_args *a = &q->input_args;
	if (q->input == MQ_HF_INPUT_DYNAMIC_TOKEN)
		return args_json(a, "token", 0, 1, NULL);
	if (q->input == MQ_HF_INPUT_STATIC_TENSOR)
		return args_json(a, "tensor", 0, 0, a->observer ? a->observer : "static_minmax");
	return cJSON_CreateNull();
}

/* config_groups.group_0. */
static cJSON *group_json(const struct mq_hf_quant *q)
{
	const struct mq_hf_args *w = &q->weights;
	cJSON *g = cJSON_CreateObject();
	if (!g)
		return NULL;
	cJSON_AddStringToObject(g, "format", q->format);
	add(g, "input_activations", input_json(q));
	cJSON_AddNullToObject(g, "output_activations");
	const char *linear = "Linear";
	add(g, "targets", q->targets ? cJSON_CreateStringArray(q->targets, (int)q->n_targets)
				     : cJSON_CreateStringArray(&linear, 1));
	add(g, "weights", args_json(w, w->strategy, w->group_size, 0, w->observer ? w->observer : "minmax"));
	return g;
}

/* cJSON's adders fail quietly when out of memory: the tree must hold every key it was given. */
static int complete(const cJSON *o, int n_keys)
{
	return cJSON_GetArraySize(o) == n_keys;
}

int mq_hf_quant_config(const struct mq_hf_quant *q, cJSON **out, struct mq_error *err)
{
	return mq_hf_quant_config_groups(q, 1, out, err);
}

int mq_hf_quant_config_groups(const struct mq_hf_quant *q, size_t n, cJSON **out, struct mq_error *err)
{
	*out = NULL;
	int rc = n ? 0 : bad_quant(err, "no config group");
	for (size_t k = 0; k < n && !rc; k++) {
		rc = check_quant(&q[k], err);
		for (size_t t = 0; !rc && q[k].targets && t < q[k].n_targets; t++)
			if (!q[k].targets[t] || !*q[k].targets[t])
				rc = bad_quant(err, "a target is empty");
		if (!rc && n > 1 && (!q[k].targets || !q[k].n_targets))
			rc = bad_quant(err, "groups of a mixed-precision config name their modules");
	}
	if (rc)
		return rc;
	const char *format = q[0].format;
	for (size_t k = 1; k < n; k++)
		if (strcmp(q[k].format, format) != 0)
			format = "mixed-precision";
	cJSON *o = cJSON_CreateObject(), *groups = cJSON_AddObjectToObject(o, "config_groups");
	int whole = 1;
	for (size_t k = 0; k < n; k++) {
		char name[32];
		snprintf(name, sizeof(name), "group_%zu", k);
		add(groups, name, group_json(&q[k]));
		const cJSON *g = cJSON_GetObjectItemCaseSensitive(groups, name);
		whole = whole && g && complete(g, 5) && complete(cJSON_GetObjectItemCaseSensitive(g, "weights"), 10) &&
			(!q[k].input || complete(cJSON_GetObjectItemCaseSensitive(g, "input_activations"), 10)) &&
			(size_t)cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(g, "targets")) ==
				(q[k].targets ? q[k].n_targets : 1);
	}
	cJSON_AddStringToObject(o, "format", format);
	cJSON_AddNullToObject(o, "global_compression_ratio");
	cJSON *ign = cJSON_AddArrayToObject(o, "ignore");
	for (size_t i = 0; i < q[0].n_ignore; i++) {
		cJSON *s = cJSON_CreateString(q[0].ignore[i]);
		if (!cJSON_AddItemToArray(ign, s))
			cJSON_Delete(s);
	}
	cJSON_AddNullToObject(o, "kv_cache_scheme");
	cJSON_AddStringToObject(o, "quant_method", "compressed-tensors");
	cJSON_AddStringToObject(o, "quantization_status", "compressed");
	cJSON_AddObjectToObject(o, "sparsity_config");
	cJSON_AddObjectToObject(o, "transform_config");
	cJSON_AddStringToObject(o, "version", CT_VERSION);
	if (!whole || !complete(o, 10) || !complete(groups, (int)n) || (size_t)cJSON_GetArraySize(ign) != q[0].n_ignore) {
		cJSON_Delete(o);
		return mq_fail(err, MQ_ERR_INTERNAL, "out of memory");
	}
	*out = o;
	return 0;
}

void mq_hf_shard_name(int i, int n, char *buf, size_t cap)
{
	MQ_ASSERT(n >= 1 && i >= 0 && i < n && cap >= MQ_HF_SHARD_NAME_MAX);
	if (n == 1)
		snprintf(buf, cap, "model.safetensors");
	else
		snprintf(buf, cap, "model-%05d-of-%05d.safetensors", i + 1, n);
}

static int cmp_weight_ptr(const void *a, const void *b)
{
	const struct mq_hf_weight *x = *(const struct mq_hf_weight *const *)a;
	const struct mq_hf_weight *y = *(const struct mq_hf_weight *const *)b;
	return strcmp(x->tensor, y->tensor);
}

/* The entries sorted by tensor name (a malloc'd array of pointers into w), each checked. */
static int sorted_weights(const struct mq_hf_weight *w, size_t n, const struct mq_hf_weight ***out,
			  struct mq_error *err)
{
	if (n == 0)
		return mq_fail(err, MQ_ERR_INTERNAL, "shard index: no tensor");
	for (size_t i = 0; i < n; i++) {
		if (!w[i].tensor || !*w[i].tensor || !w[i].shard || !*w[i].shard)
			return mq_fail(err, MQ_ERR_INTERNAL, "shard index: entry %zu has no tensor or shard name", i);
		if (strchr(w[i].shard, '/'))
			return mq_fail(err, MQ_ERR_INTERNAL, "shard index: shard '%s' is not a file name", w[i].shard);
	}
	const struct mq_hf_weight **s = malloc(n * sizeof(*s));
	if (!s)
		return mq_fail(err, MQ_ERR_INTERNAL, "out of memory");
	for (size_t i = 0; i < n; i++)
		s[i] = &w[i];
	qsort(s, n, sizeof(*s), cmp_weight_ptr);
	for (size_t i = 1; i < n; i++) {
		if (strcmp(s[i - 1]->tensor, s[i]->tensor) == 0) {
			int rc = mq_fail(err, MQ_ERR_INTERNAL, "shard index: tensor '%s' is listed twice ('%s' and '%s')",
					 s[i]->tensor, s[i - 1]->shard, s[i]->shard);
			free(s);
			return rc;
		}
	}
	*out = s;
	return 0;
}

int mq_hf_index_json(const struct mq_hf_weight *w, size_t n, uint64_t total_size, struct mq_buf *out,
		     struct mq_error *err)
{
	const struct mq_hf_weight **s = NULL;
	int rc = sorted_weights(w, n, &s, err);
	if (rc)
		return rc;
	char size[24];
	snprintf(size, sizeof(size), "%" PRIu64, total_size);
	cJSON *o = cJSON_CreateObject(), *meta = cJSON_AddObjectToObject(o, "metadata");
	cJSON_AddRawToObject(meta, "total_size", size);
	cJSON *map = cJSON_AddObjectToObject(o, "weight_map");
	size_t k = 0;
	for (; map && k < n; k++)
		if (!cJSON_AddStringToObject(map, s[k]->tensor, s[k]->shard))
			break;
	free(s);
	if (!complete(o, 2) || !complete(meta, 1) || k < n)
		rc = mq_fail(err, MQ_ERR_INTERNAL, "out of memory");
	else
		rc = mq_hf_json_print(o, out, err);
	cJSON_Delete(o);
	return rc;
}
