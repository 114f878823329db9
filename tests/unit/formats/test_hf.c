/*
 * hf: the quantization_config of each kind of scheme against the text
 * llm-compressor's json.dump(indent=2, sort_keys=True) gives for it
 * (LOWBIT.md B.3); config.json rewritten as Python rewrites it; the shard
 * index and shard names; the input folder scan (nested files, hidden ones,
 * a folder of symbolic links as in a Hugging Face cache); copies; and
 * whether a path lies inside a folder.
 */
#include "test_util.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hf.h"

/* ---- quantization_config ---------------------------------------------- */

/* LOWBIT.md B.3's W4A16 example as the document shows it (lists on one line). */
static const char b3_text[] =
	"\"quantization_config\": {\n"
	"  \"config_groups\": {\n"
	"    \"group_0\": {\n"
	"      \"format\": \"pack-quantized\",\n"
	"      \"input_activations\": null,\n"
	"      \"output_activations\": null,\n"
	"      \"targets\": [\"Linear\"],\n"
	"      \"weights\": {\n"
	"        \"actorder\": null,\n"
	"        \"block_structure\": null,\n"
	"        \"dynamic\": false,\n"
	"        \"group_size\": 128,\n"
	"        \"num_bits\": 4,\n"
	"        \"observer\": \"minmax\",\n"
	"        \"observer_kwargs\": {},\n"
	"        \"strategy\": \"group\",\n"
	"        \"symmetric\": true,\n"
	"        \"type\": \"int\"\n"
	"      }\n"
	"    }\n"
	"  },\n"
	"  \"format\": \"pack-quantized\",\n"
	"  \"global_compression_ratio\": null,\n"
	"  \"ignore\": [\"lm_head\"],\n"
	"  \"kv_cache_scheme\": null,\n"
	"  \"quant_method\": \"compressed-tensors\",\n"
	"  \"quantization_status\": \"compressed\",\n"
	"  \"sparsity_config\": {},\n"
	"  \"transform_config\": {},\n"
	"  \"version\": \"0.12.2\"\n"
	"}";

/* The same object as json.dump(indent=2, sort_keys=True) writes it: lists one item a line. */
static const char w4a16_text[] =
	"{\n"
	"  \"config_groups\": {\n"
	"    \"group_0\": {\n"
	"      \"format\": \"pack-quantized\",\n"
	"      \"input_activations\": null,\n"
	"      \"output_activations\": null,\n"
	"      \"targets\": [\n"
	"        \"Linear\"\n"
	"      ],\n"
	"      \"weights\": {\n"
	"        \"actorder\": null,\n"
	"        \"block_structure\": null,\n"
	"        \"dynamic\": false,\n"
	"        \"group_size\": 128,\n"
	"        \"num_bits\": 4,\n"
	"        \"observer\": \"minmax\",\n"
	"        \"observer_kwargs\": {},\n"
	"        \"strategy\": \"group\",\n"
	"        \"symmetric\": true,\n"
	"        \"type\": \"int\"\n"
	"      }\n"
	"    }\n"
	"  },\n"
	"  \"format\": \"pack-quantized\",\n"
	"  \"global_compression_ratio\": null,\n"
	"  \"ignore\": [\n"
	"    \"lm_head\"\n"
	"  ],\n"
	"  \"kv_cache_scheme\": null,\n"
	"  \"quant_method\": \"compressed-tensors\",\n"
	"  \"quantization_status\": \"compressed\",\n"
	"  \"sparsity_config\": {},\n"
	"  \"transform_config\": {},\n"
	"  \"version\": \"0.12.2\"\n"
	"}";

static const char w4a16_asym_text[] =
	"{\n"
	"  \"config_groups\": {\n"
	"    \"group_0\": {\n"
	"      \"format\": \"pack-quantized\",\n"
	"      \"input_activations\": null,\n"
	"      \"output_activations\": null,\n"
	"      \"targets\": [\n"
	"        \"Linear\"\n"
	"      ],\n"
	"      \"weights\": {\n"
	"        \"actorder\": null,\n"
	"        \"block_structure\": null,\n"
	"        \"dynamic\": false,\n"
	"        \"group_size\": 32,\n"
	"        \"num_bits\": 4,\n"
	"        \"observer\": \"mse\",\n"
	"        \"observer_kwargs\": {},\n"
	"        \"strategy\": \"group\",\n"
	"        \"symmetric\": false,\n"
	"        \"type\": \"int\"\n"
	"      }\n"
	"    }\n"
	"  },\n"
	"  \"format\": \"pack-quantized\",\n"
	"  \"global_compression_ratio\": null,\n"
	"  \"ignore\": [\n"
	"    \"lm_head\",\n"
	"    \"model.layers.0.mlp.gate\"\n"
	"  ],\n"
	"  \"kv_cache_scheme\": null,\n"
	"  \"quant_method\": \"compressed-tensors\",\n"
	"  \"quantization_status\": \"compressed\",\n"
	"  \"sparsity_config\": {},\n"
	"  \"transform_config\": {},\n"
	"  \"version\": \"0.12.2\"\n"
	"}";

static const char w8a8_text[] =
	"{\n"
	"  \"config_groups\": {\n"
	"    \"group_0\": {\n"
	"      \"format\": \"int-quantized\",\n"
	"      \"input_activations\": {\n"
	"        \"actorder\": null,\n"
	"        \"block_structure\": null,\n"
	"        \"dynamic\": true,\n"
	"        \"group_size\": null,\n"
	"        \"num_bits\": 8,\n"
	"        \"observer\": null,\n"
	"        \"observer_kwargs\": {},\n"
	"        \"strategy\": \"token\",\n"
	"        \"symmetric\": true,\n"
	"        \"type\": \"int\"\n"
	"      },\n"
	"      \"output_activations\": null,\n"
	"      \"targets\": [\n"
	"        \"Linear\"\n"
	"      ],\n"
	"      \"weights\": {\n"
	"        \"actorder\": null,\n"
	"        \"block_structure\": null,\n"
	"        \"dynamic\": false,\n"
	"        \"group_size\": null,\n"
	"        \"num_bits\": 8,\n"
	"        \"observer\": \"minmax\",\n"
	"        \"observer_kwargs\": {},\n"
	"        \"strategy\": \"channel\",\n"
	"        \"symmetric\": true,\n"
	"        \"type\": \"int\"\n"
	"      }\n"
	"    }\n"
	"  },\n"
	"  \"format\": \"int-quantized\",\n"
	"  \"global_compression_ratio\": null,\n"
	"  \"ignore\": [\n"
	"    \"lm_head\"\n"
	"  ],\n"
	"  \"kv_cache_scheme\": null,\n"
	"  \"quant_method\": \"compressed-tensors\",\n"
	"  \"quantization_status\": \"compressed\",\n"
	"  \"sparsity_config\": {},\n"
	"  \"transform_config\": {},\n"
	"  \"version\": \"0.12.2\"\n"
	"}";

static const char fp8_static_text[] =
	"{\n"
	"  \"config_groups\": {\n"
	"    \"group_0\": {\n"
	"      \"format\": \"float-quantized\",\n"
	"      \"input_activations\": {\n"
	"        \"actorder\": null,\n"
	"        \"block_structure\": null,\n"
	"        \"dynamic\": false,\n"
	"        \"group_size\": null,\n"
	"        \"num_bits\": 8,\n"
	"        \"observer\": \"static_minmax\",\n"
	"        \"observer_kwargs\": {},\n"
	"        \"strategy\": \"tensor\",\n"
	"        \"symmetric\": true,\n"
	"        \"type\": \"float\"\n"
	"      },\n"
	"      \"output_activations\": null,\n"
	"      \"targets\": [\n"
	"        \"Linear\"\n"
	"      ],\n"
	"      \"weights\": {\n"
	"        \"actorder\": null,\n"
	"        \"block_structure\": null,\n"
	"        \"dynamic\": false,\n"
	"        \"group_size\": null,\n"
	"        \"num_bits\": 8,\n"
	"        \"observer\": \"minmax\",\n"
	"        \"observer_kwargs\": {},\n"
	"        \"strategy\": \"tensor\",\n"
	"        \"symmetric\": true,\n"
	"        \"type\": \"float\"\n"
	"      }\n"
	"    }\n"
	"  },\n"
	"  \"format\": \"float-quantized\",\n"
	"  \"global_compression_ratio\": null,\n"
	"  \"ignore\": [\n"
	"    \"lm_head\"\n"
	"  ],\n"
	"  \"kv_cache_scheme\": null,\n"
	"  \"quant_method\": \"compressed-tensors\",\n"
	"  \"quantization_status\": \"compressed\",\n"
	"  \"sparsity_config\": {},\n"
	"  \"transform_config\": {},\n"
	"  \"version\": \"0.12.2\"\n"
	"}";

static const char fp8_dynamic_text[] =
	"{\n"
	"  \"config_groups\": {\n"
	"    \"group_0\": {\n"
	"      \"format\": \"float-quantized\",\n"
	"      \"input_activations\": {\n"
	"        \"actorder\": null,\n"
	"        \"block_structure\": null,\n"
	"        \"dynamic\": true,\n"
	"        \"group_size\": null,\n"
	"        \"num_bits\": 8,\n"
	"        \"observer\": null,\n"
	"        \"observer_kwargs\": {},\n"
	"        \"strategy\": \"token\",\n"
	"        \"symmetric\": true,\n"
	"        \"type\": \"float\"\n"
	"      },\n"
	"      \"output_activations\": null,\n"
	"      \"targets\": [\n"
	"        \"Linear\"\n"
	"      ],\n"
	"      \"weights\": {\n"
	"        \"actorder\": null,\n"
	"        \"block_structure\": null,\n"
	"        \"dynamic\": false,\n"
	"        \"group_size\": null,\n"
	"        \"num_bits\": 8,\n"
	"        \"observer\": \"minmax\",\n"
	"        \"observer_kwargs\": {},\n"
	"        \"strategy\": \"channel\",\n"
	"        \"symmetric\": true,\n"
	"        \"type\": \"float\"\n"
	"      }\n"
	"    }\n"
	"  },\n"
	"  \"format\": \"float-quantized\",\n"
	"  \"global_compression_ratio\": null,\n"
	"  \"ignore\": [],\n"
	"  \"kv_cache_scheme\": null,\n"
	"  \"quant_method\": \"compressed-tensors\",\n"
	"  \"quantization_status\": \"compressed\",\n"
	"  \"sparsity_config\": {},\n"
	"  \"transform_config\": {},\n"
	"  \"version\": \"0.12.2\"\n"
	"}";


static const char *const lm_head[] = { "lm_head" };

static const struct mq_hf_quant w4a16 = {
	.format = "pack-quantized",
	.weights = { .type = "int", .num_bits = 4, .symmetric = 1, .strategy = "group", .group_size = 128 },
	.ignore = lm_head,
	.n_ignore = 1,
};

/* The printed text of q's config (malloc'd), or NULL with e holding why. */
static char *quant_text(const struct mq_hf_quant *q, struct mq_error *e)
{
	cJSON *qc = NULL;
	if (mq_hf_quant_config(q, &qc, e))
		return NULL;
	struct mq_buf b = MQ_BUF_INIT;
	assert_int_equal(mq_hf_json_print(qc, &b, e), 0);
	cJSON_Delete(qc);
	return mq_buf_detach(&b, NULL);
}

static void assert_quant_text(const struct mq_hf_quant *q, const char *want)
{
	struct mq_error e = { 0 };
	char *got = quant_text(q, &e);
	if (!got)
		fail_msg("%s", e.msg);
	assert_string_equal(got, want);
	free(got);
}

/* s without the white space outside string literals. */
static char *squeeze(const char *s)
{
	char *o = malloc(strlen(s) + 1), *p = o;
	int in_str = 0;
	for (; *s; s++) {
		if (in_str && *s == '\\' && s[1]) {
			*p++ = *s++;
		} else if (*s == '"') {
			in_str = !in_str;
		} else if (!in_str && strchr(" \n", *s)) {
			continue;
		}
		*p++ = *s;
	}
	*p = '\0';
	return o;
}

static void test_hf_w4a16_is_lowbit_b3_as_python_writes_it(void **state)
{
	(void)state;
	assert_quant_text(&w4a16, w4a16_text);
	/* The document's text, its layout aside: "quantization_config": and the object. */
	char *doc = squeeze(b3_text), *ours = squeeze(w4a16_text);
	const char *prefix = "\"quantization_config\":";
	assert_memory_equal(doc, prefix, strlen(prefix));
	assert_string_equal(doc + strlen(prefix), ours);
	free(doc);
	free(ours);
}

static void test_hf_asym_group_32_with_observer_and_two_ignores(void **state)
{
	(void)state;
	static const char *const ignore[] = { "lm_head", "model.layers.0.mlp.gate" };
	struct mq_hf_quant q = w4a16;
	q.weights.symmetric = 0;
	q.weights.group_size = 32;
	q.weights.observer = "mse";
	q.ignore = ignore;
	q.n_ignore = 2;
	assert_quant_text(&q, w4a16_asym_text);
}

static void test_hf_w8a8_int8_dynamic_input(void **state)
{
	(void)state;
	const struct mq_hf_quant q = {
		.format = "int-quantized",
		.weights = { .type = "int", .num_bits = 8, .symmetric = 1, .strategy = "channel" },
		.input = MQ_HF_INPUT_DYNAMIC_TOKEN,
		.input_args = { .type = "int", .num_bits = 8, .symmetric = 1 },
		.ignore = lm_head,
		.n_ignore = 1,
	};
	assert_quant_text(&q, w8a8_text);
}

static void test_hf_fp8_static_and_dynamic_input(void **state)
{
	(void)state;
	struct mq_hf_quant q = {
		.format = "float-quantized",
		.weights = { .type = "float", .num_bits = 8, .symmetric = 1, .strategy = "tensor" },
		.input = MQ_HF_INPUT_STATIC_TENSOR,
		.input_args = { .type = "float", .num_bits = 8, .symmetric = 1 },
		.ignore = lm_head,
		.n_ignore = 1,
	};
	assert_quant_text(&q, fp8_static_text);
	q.weights.strategy = "channel";
	q.input = MQ_HF_INPUT_DYNAMIC_TOKEN;
	q.n_ignore = 0;
	assert_quant_text(&q, fp8_dynamic_text);
}

/* Pairings vLLM or compressed-tensors refuse are the caller's bug, named. */
static void test_hf_quant_config_refuses_what_loaders_refuse(void **state)
{
	(void)state;
	const struct mq_hf_args int4 = w4a16.weights, int8 = { "int", 8, 1, "channel", 0, NULL };
	const struct mq_hf_args fp8 = { "float", 8, 1, "tensor", 0, NULL };
	static const char *const empty[] = { "" };
	const enum mq_hf_input dyn = MQ_HF_INPUT_DYNAMIC_TOKEN;
	const struct {
		struct mq_hf_quant q;
		const char *msg;
	} cases[] = {
		{ { "dense", int4, 0, { 0 }, NULL, 0, NULL, 0 }, "format is not" },
		{ { "int-quantized", int8, 0, { 0 }, NULL, 0, NULL, 0 }, "need input activations" },
		{ { "pack-quantized", int4, dyn, int8, NULL, 0, NULL, 0 }, "input activations need format" },
		{ { "naive-quantized", int4, 0, { 0 }, NULL, 0, NULL, 0 }, "naive-quantized float weights" },
		{ { "float-quantized", int8, dyn, fp8, NULL, 0, NULL, 0 }, "float-quantized float weights" },
		{ { "int-quantized", int8, dyn, fp8, NULL, 0, NULL, 0 }, "int-quantized int weights and input" },
		{ { "pack-quantized", { "int", 4, 1, "group", 0, NULL }, 0, { 0 }, NULL, 0, NULL, 0 }, "group_size must be > 0" },
		{ { "pack-quantized", { "int", 8, 1, "channel", 128, NULL }, 0, { 0 }, NULL, 0, NULL, 0 }, "group_size must be > 0" },
		{ { "pack-quantized", { "int", 4, 1, "block", 0, NULL }, 0, { 0 }, NULL, 0, NULL, 0 }, "weights strategy" },
		{ { "pack-quantized", { "int", 9, 1, "channel", 0, NULL }, 0, { 0 }, NULL, 0, NULL, 0 }, "num_bits 1..8" },
		{ { "naive-quantized", { "float", 4, 1, "channel", 0, NULL }, 0, { 0 }, NULL, 0, NULL, 0 }, "takes num_bits 8" },
		{ { "naive-quantized", { "float", 8, 0, "channel", 0, NULL }, 0, { 0 }, NULL, 0, NULL, 0 }, "and symmetric" },
		{ { "int-quantized", int4, dyn, int8, NULL, 0, NULL, 0 }, "take num_bits 8" },
		{ { "int-quantized", int8, dyn, { "int", 8, 1, NULL, 0, "minmax" }, NULL, 0, NULL, 0 }, "take no observer" },
		{ { "int-quantized", int8, 7, int8, NULL, 0, NULL, 0 }, "unknown input" },
		{ { "pack-quantized", int4, 0, { 0 }, empty, 1, NULL, 0 }, "ignore entry is empty" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct mq_error e = { 0 };
		cJSON *qc = cJSON_CreateNull();
		cJSON *keep = qc;
		assert_int_equal(mq_hf_quant_config(&cases[i].q, &qc, &e), MQ_ERR_INTERNAL);
		assert_null(qc);
		cJSON_Delete(keep);
		if (!strstr(e.msg, cases[i].msg) || !strstr(e.msg, "quantization_config"))
			fail_msg("case %zu: %s", i, e.msg);
	}
}

/*
 * A mixed-precision config: a group per scheme with its modules named, the
 * top-level format "mixed-precision" where the groups' formats differ (the
 * group's own where they agree), ignore from the first; a group without
 * targets is refused where there are several.
 */
static void test_hf_mixed_groups_name_their_modules(void **state)
{
	(void)state;
	static const char *const t4[] = { "model.layers.0.mlp.down_proj", "model.layers.1.mlp.down_proj" };
	static const char *const t8[] = { "model.layers.0.self_attn.q_proj" };
	struct mq_hf_quant q[2] = { w4a16, { "int-quantized", { "int", 8, 1, "channel", 0, NULL }, MQ_HF_INPUT_DYNAMIC_TOKEN,
					     { "int", 8, 1, NULL, 0, NULL }, NULL, 0, t8, 1 } };
	q[0].targets = t4;
	q[0].n_targets = 2;
	struct mq_error e = { 0 };
	cJSON *qc = NULL;
	assert_int_equal(mq_hf_quant_config_groups(q, 2, &qc, &e), 0);
	const cJSON *groups = cJSON_GetObjectItemCaseSensitive(qc, "config_groups");
	assert_int_equal(cJSON_GetArraySize(groups), 2);
	assert_string_equal(cJSON_GetObjectItemCaseSensitive(qc, "format")->valuestring, "mixed-precision");
	const cJSON *g0 = cJSON_GetObjectItemCaseSensitive(groups, "group_0"), *g1 = cJSON_GetObjectItemCaseSensitive(groups, "group_1");
	assert_string_equal(cJSON_GetObjectItemCaseSensitive(g0, "format")->valuestring, "pack-quantized");
	assert_string_equal(cJSON_GetObjectItemCaseSensitive(g1, "format")->valuestring, "int-quantized");
	const cJSON *targets = cJSON_GetObjectItemCaseSensitive(g0, "targets");
	assert_int_equal(cJSON_GetArraySize(targets), 2);
	assert_string_equal(cJSON_GetArrayItem(targets, 1)->valuestring, t4[1]);
	assert_int_equal(cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(g0, "weights"), "num_bits")->valueint, 4);
	assert_int_equal(cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(g1, "weights"), "num_bits")->valueint, 8);
	assert_true(cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(g1, "input_activations")));
	assert_string_equal(cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(qc, "ignore"), 0)->valuestring, "lm_head");
	cJSON_Delete(qc);
	/* two groups of one format keep it at the top */
	struct mq_hf_quant same[2] = { q[0], q[0] };
	same[1].targets = t8;
	same[1].n_targets = 1;
	same[1].weights.group_size = 64;
	assert_int_equal(mq_hf_quant_config_groups(same, 2, &qc, &e), 0);
	assert_string_equal(cJSON_GetObjectItemCaseSensitive(qc, "format")->valuestring, "pack-quantized");
	cJSON_Delete(qc);
	qc = NULL;
	q[1].targets = NULL;
	assert_int_equal(mq_hf_quant_config_groups(q, 2, &qc, &e), MQ_ERR_INTERNAL);
	assert_null(qc);
	assert_non_null(strstr(e.msg, "name their modules"));
}

/* ---- the printer ---------------------------------------------------------- */

/*
 * A tree of every kind of value (cJSON's parser builds it: numbers become
 * doubles) printed as Python 3.11 prints the same values: whole numbers as
 * integers, the rest as repr() (7.12...e-307 is a power of two, where the
 * shortest decimal is not the nearest one of its length), keys in code point
 * order, the last of a repeated key, ensure_ascii escapes.
 */
static void test_hf_json_print_writes_what_python_writes(void **state)
{
	(void)state;
	static const char in[] =
		"{\"b\":[1,2.5,{\"x\":[]}],\"a\":{},\"s\":\"h\\u00e9\\ud83d\\ude00\\u007f\\u0001/\\\"\\\\\\b\\f\\n\\r\\t~\","
		"\"n\":null,\"t\":true,\"f\":false,\"dup\":1,"
		"\"nums\":[1e-05,500000.5,0.02,1e16,0.0001,-0.5,1.5e-07,1e22,5e-324,2.2250738585072014e-308,"
		"7.120236347223045e-307,123456789.125,-3,1000000000000000,0,1.7976931348623157e308],"
		"\"dup\":2,\"\":\"empty key\",\"\\u00e9\":\"after ascii\",\"z\\ud83d\\ude00\":\"astral key\"}";
	static const char want[] =
		"{\n"
		"  \"\": \"empty key\",\n"
		"  \"a\": {},\n"
		"  \"b\": [\n"
		"    1,\n"
		"    2.5,\n"
		"    {\n"
		"      \"x\": []\n"
		"    }\n"
		"  ],\n"
		"  \"dup\": 2,\n"
		"  \"f\": false,\n"
		"  \"n\": null,\n"
		"  \"nums\": [\n"
		"    1e-05,\n"
		"    500000.5,\n"
		"    0.02,\n"
		"    1e+16,\n"
		"    0.0001,\n"
		"    -0.5,\n"
		"    1.5e-07,\n"
		"    1e+22,\n"
		"    5e-324,\n"
		"    2.2250738585072014e-308,\n"
		"    7.120236347223045e-307,\n"
		"    123456789.125,\n"
		"    -3,\n"
		"    1000000000000000,\n"
		"    0,\n"
		"    1.7976931348623157e+308\n"
		"  ],\n"
		"  \"s\": \"h\\u00e9\\ud83d\\ude00\\u007f\\u0001/\\\"\\\\\\b\\f\\n\\r\\t~\",\n"
		"  \"t\": true,\n"
		"  \"z\\ud83d\\ude00\": \"astral key\",\n"
		"  \"\\u00e9\": \"after ascii\"\n"
		"}";
	cJSON *v = cJSON_Parse(in);
	assert_non_null(v);
	struct mq_buf b = MQ_BUF_INIT;
	struct mq_error e = { 0 };
	assert_int_equal(mq_hf_json_print(v, &b, &e), 0);
	assert_string_equal(b.data, want);
	mq_buf_release(&b);
	/* A string that is not UTF-8 cannot be written as Python would. */
	cJSON_AddStringToObject(v, "bad", "\xff");
	assert_int_equal(mq_hf_json_print(v, &b, &e), MQ_ERR_INTERNAL);
	assert_non_null(strstr(e.msg, "not valid UTF-8"));
	mq_buf_release(&b);
	cJSON_Delete(v);
}

/* ---- config.json ------------------------------------------------------------ */

/* The W4A16 config (the caller's, to cJSON_Delete). */
static cJSON *w4a16_config(void)
{
	cJSON *qc = NULL;
	struct mq_error e = { 0 };
	assert_int_equal(mq_hf_quant_config(&w4a16, &qc, &e), 0);
	return qc;
}

/* The rewrite of text (malloc'd), or NULL with e holding why. */
static char *rewrite(const char *text, struct mq_error *e)
{
	cJSON *qc = w4a16_config();
	struct mq_buf b = MQ_BUF_INIT;
	int rc = mq_hf_config_rewrite(text, strlen(text), qc, &b, e);
	cJSON_Delete(qc);
	if (rc) {
		assert_true(rc < 0 && e->code == rc);
		mq_buf_release(&b);
		return NULL;
	}
	return mq_buf_detach(&b, NULL);
}

/*
 * A Llama 3.1 config.json, its keys out of order, with numbers written in
 * other ways than Python writes them (1E-5, 0.10, -0, 1.0e4, 1e400, NaN), a
 * non-ASCII name, null, booleans, nested and empty containers. The expected
 * bytes are what Python 3.11 wrote for it: json.load, set
 * "quantization_config" to the W4A16 object, json.dump(indent=2, sort_keys=True).
 */
static void test_hf_config_rewrite_matches_python_for_a_llama_config(void **state)
{
	(void)state;
	static const char in[] =
		"{\n"
		"  \"architectures\": [\"LlamaForCausalLM\"],\n"
		"  \"vocab_size\": 128256,\n"
		"  \"attention_bias\": false,\n"
		"  \"attention_dropout\": 0.0,\n"
		"  \"bos_token_id\": 128000,\n"
		"  \"eos_token_id\": [128001, 128008, 128009],\n"
		"  \"head_dim\": 128,\n"
		"  \"hidden_act\": \"silu\",\n"
		"  \"hidden_size\": 4096,\n"
		"  \"initializer_range\": 0.02,\n"
		"  \"intermediate_size\": 14336,\n"
		"  \"max_position_embeddings\": 131072,\n"
		"  \"mlp_bias\": false,\n"
		"  \"model_type\": \"llama\",\n"
		"  \"num_attention_heads\": 32,\n"
		"  \"num_hidden_layers\": 32,\n"
		"  \"num_key_value_heads\": 8,\n"
		"  \"pad_token_id\": null,\n"
		"  \"pretraining_tp\": 1,\n"
		"  \"rms_norm_eps\": 1e-05,\n"
		"  \"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8.0, \"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0,\n"
		"                   \"original_max_position_embeddings\": 8192},\n"
		"  \"rope_theta\": 500000.0,\n"
		"  \"tie_word_embeddings\": false,\n"
		"  \"torch_dtype\": \"bfloat16\",\n"
		"  \"transformers_version\": \"4.43.0.dev0\",\n"
		"  \"use_cache\": true,\n"
		"  \"_name_or_path\": \"Modèle-Llama 😀 \\\"8B\\\"\\tv1\",\n"
		"  \"numbers_as_written\": [1E-5, 0.10, -0, 1.0e4, 5e5, 123456789012345678901234567890, -2.5E+3, 1e400, 0.1e-6, NaN, -Infinity],\n"
		"  \"empty\": {\"list\": [], \"map\": {}}\n"
		"}";
	static const char want[] =
		"{\n"
		"  \"_name_or_path\": \"Mod\\u00e8le-Llama \\ud83d\\ude00 \\\"8B\\\"\\tv1\",\n"
		"  \"architectures\": [\n"
		"    \"LlamaForCausalLM\"\n"
		"  ],\n"
		"  \"attention_bias\": false,\n"
		"  \"attention_dropout\": 0.0,\n"
		"  \"bos_token_id\": 128000,\n"
		"  \"empty\": {\n"
		"    \"list\": [],\n"
		"    \"map\": {}\n"
		"  },\n"
		"  \"eos_token_id\": [\n"
		"    128001,\n"
		"    128008,\n"
		"    128009\n"
		"  ],\n"
		"  \"head_dim\": 128,\n"
		"  \"hidden_act\": \"silu\",\n"
		"  \"hidden_size\": 4096,\n"
		"  \"initializer_range\": 0.02,\n"
		"  \"intermediate_size\": 14336,\n"
		"  \"max_position_embeddings\": 131072,\n"
		"  \"mlp_bias\": false,\n"
		"  \"model_type\": \"llama\",\n"
		"  \"num_attention_heads\": 32,\n"
		"  \"num_hidden_layers\": 32,\n"
		"  \"num_key_value_heads\": 8,\n"
		"  \"numbers_as_written\": [\n"
		"    1e-05,\n"
		"    0.1,\n"
		"    0,\n"
		"    10000.0,\n"
		"    500000.0,\n"
		"    123456789012345678901234567890,\n"
		"    -2500.0,\n"
		"    Infinity,\n"
		"    1e-07,\n"
		"    NaN,\n"
		"    -Infinity\n"
		"  ],\n"
		"  \"pad_token_id\": null,\n"
		"  \"pretraining_tp\": 1,\n"
		"  \"quantization_config\": {\n"
		"    \"config_groups\": {\n"
		"      \"group_0\": {\n"
		"        \"format\": \"pack-quantized\",\n"
		"        \"input_activations\": null,\n"
		"        \"output_activations\": null,\n"
		"        \"targets\": [\n"
		"          \"Linear\"\n"
		"        ],\n"
		"        \"weights\": {\n"
		"          \"actorder\": null,\n"
		"          \"block_structure\": null,\n"
		"          \"dynamic\": false,\n"
		"          \"group_size\": 128,\n"
		"          \"num_bits\": 4,\n"
		"          \"observer\": \"minmax\",\n"
		"          \"observer_kwargs\": {},\n"
		"          \"strategy\": \"group\",\n"
		"          \"symmetric\": true,\n"
		"          \"type\": \"int\"\n"
		"        }\n"
		"      }\n"
		"    },\n"
		"    \"format\": \"pack-quantized\",\n"
		"    \"global_compression_ratio\": null,\n"
		"    \"ignore\": [\n"
		"      \"lm_head\"\n"
		"    ],\n"
		"    \"kv_cache_scheme\": null,\n"
		"    \"quant_method\": \"compressed-tensors\",\n"
		"    \"quantization_status\": \"compressed\",\n"
		"    \"sparsity_config\": {},\n"
		"    \"transform_config\": {},\n"
		"    \"version\": \"0.12.2\"\n"
		"  },\n"
		"  \"rms_norm_eps\": 1e-05,\n"
		"  \"rope_scaling\": {\n"
		"    \"factor\": 8.0,\n"
		"    \"high_freq_factor\": 4.0,\n"
		"    \"low_freq_factor\": 1.0,\n"
		"    \"original_max_position_embeddings\": 8192,\n"
		"    \"rope_type\": \"llama3\"\n"
		"  },\n"
		"  \"rope_theta\": 500000.0,\n"
		"  \"tie_word_embeddings\": false,\n"
		"  \"torch_dtype\": \"bfloat16\",\n"
		"  \"transformers_version\": \"4.43.0.dev0\",\n"
		"  \"use_cache\": true,\n"
		"  \"vocab_size\": 128256\n"
		"}";
	struct mq_error e = { 0 };
	char *got = rewrite(in, &e);
	if (!got)
		fail_msg("%s", e.msg);
	assert_string_equal(got, want);
	free(got);
}

/* A null or empty quantization_config is replaced, and so is every member of the name. */
static void test_hf_config_rewrite_replaces_an_empty_quantization_config(void **state)
{
	(void)state;
	static const char *const ins[] = {
		"{\"b\": 1, \"quantization_config\": null, \"a\": [true, false]}",
		"{\"quantization_config\": {}, \"b\": 1, \"a\": [true, false]}",
		/* json.load keeps the last of a repeated key: null, so not quantized */
		"{\"quantization_config\": {\"quant_method\": \"gptq\"}, \"a\": [true, false], \"b\": 1,"
		" \"quantization_config\": null}",
	};
	for (size_t i = 0; i < sizeof(ins) / sizeof(ins[0]); i++) {
		struct mq_error e = { 0 };
		char *got = rewrite(ins[i], &e);
		if (!got)
			fail_msg("case %zu: %s", i, e.msg);
		const char *want = "{\n  \"a\": [\n    true,\n    false\n  ],\n  \"b\": 1,\n  \"quantization_config\": {\n";
		assert_memory_equal(got, want, strlen(want));
		const char *qc = strstr(got, "\"quantization_config\"");
		assert_null(strstr(qc + 1, "\"quantization_config\""));
		assert_null(strstr(got, "gptq"));
		free(got);
	}
}

/* What cannot be a model's config.json, or is one of a quantized model: named, with what to do. */
static void test_hf_config_rewrite_refuses_with_the_file_named(void **state)
{
	(void)state;
	static const struct {
		const char *text, *msg;
	} cases[] = {
		{ "[1, 2]", "holds an array, not a JSON object" },
		{ "\"llama\"", "holds a string, not a JSON object" },
		{ "{\"a\": 1,}", "malformed model config at byte 8 of the JSON: expected '\"'" },
		{ "{\"a\": 1 \"b\": 2}", "at byte 8 of the JSON: expected ',' or '}'" },
		{ "{\"a\": [1 2]}", "expected ',' or ']'" },
		{ "{\"a\": 01}", "expected ',' or '}'" },
		{ "{\"a\": 1.}", "no digit after the decimal point" },
		{ "{\"a\": -}", "a number without digits" },
		{ "{\"a\": 1e}", "no digit in the exponent" },
		{ "{\"a\": tru}", "unexpected character" },
		{ "{\"a\": ", "the text ends where a value belongs" },
		{ "{} {}", "more text after the JSON value" },
		{ "", "the text ends where a value belongs" },
		{ "{\"a\": \"\\ud800\"}", "unpaired surrogate" },
		{ "{\"a\": \"\\u0000\"}", "NUL character" },
		{ "{\"a\": \"\xff\"}", "is not UTF-8 text (byte 7)" },
		{ "\xef\xbb\xbf{}", "byte order mark" },
		{ "{\"quantization_config\": {\"quant_method\": \"gptq\", \"bits\": 4}}",
		  "has a quantization_config (quant_method \"gptq\"): the model is quantized already; quantize the original" },
		{ "{\"quantization_config\": {\"config_groups\": {}}}", "(it lists config_groups)" },
		{ "{\"quantization_config\": \"fp8\"}", "\"quantization_config\" is a string, not an object" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct mq_error e = { 0 };
		assert_null(rewrite(cases[i].text, &e));
		assert_int_equal(e.code, MQ_ERR_INPUT);
		if (!strstr(e.msg, cases[i].msg) || !strstr(e.msg, "config.json"))
			fail_msg("case %zu: %s", i, e.msg);
	}
	/* Nesting: 64 levels below the top object are read, 65 are not. */
	char deep[200] = "";
	for (int d = 0; d < 2; d++) {
		int n = 64 + d;
		memset(deep, '[', (size_t)n);
		memset(deep + n, ']', (size_t)n);
		deep[2 * n] = '\0';
		char doc[256];
		snprintf(doc, sizeof(doc), "{\"a\": %s}", deep);
		struct mq_error e = { 0 };
		char *got = rewrite(doc, &e);
		if (d == 0 && !got)
			fail_msg("%s", e.msg);
		if (d == 1)
			assert_non_null(strstr(e.msg, "nested more than 64 levels"));
		free(got);
	}
	/* The config to put in must be an object. */
	cJSON *arr = cJSON_CreateArray();
	struct mq_buf b = MQ_BUF_INIT;
	struct mq_error e = { 0 };
	assert_int_equal(mq_hf_config_rewrite("{}", 2, arr, &b, &e), MQ_ERR_INTERNAL);
	assert_int_equal(mq_hf_config_rewrite("{}", 2, arr, &b, NULL), MQ_ERR_INTERNAL);
	cJSON_Delete(arr);
	assert_null(b.data);
}

/* ---- shards and their index ---------------------------------------------- */

static void test_hf_shard_names_follow_transformers(void **state)
{
	(void)state;
	char name[MQ_HF_SHARD_NAME_MAX];
	mq_hf_shard_name(0, 1, name, sizeof(name));
	assert_string_equal(name, "model.safetensors");
	mq_hf_shard_name(0, 3, name, sizeof(name));
	assert_string_equal(name, "model-00001-of-00003.safetensors");
	mq_hf_shard_name(2, 3, name, sizeof(name));
	assert_string_equal(name, "model-00003-of-00003.safetensors");
	/* Python's {:05d} widens past five digits. */
	mq_hf_shard_name(99999, 100000, name, sizeof(name));
	assert_string_equal(name, "model-100000-of-100000.safetensors");
	mq_hf_shard_name(2147483646, 2147483647, name, sizeof(name));
	assert_string_equal(name, "model-2147483647-of-2147483647.safetensors");
}

/* Sorted by name as Python sorts strings (layers.10 before layers.2), total_size exact past 2^53. */
static void test_hf_index_json_sorted_with_total_size(void **state)
{
	(void)state;
	static const struct mq_hf_weight w[] = {
		{ "model.layers.2.mlp.down_proj.weight", "model-00002-of-00002.safetensors" },
		{ "lm_head.weight", "model-00002-of-00002.safetensors" },
		{ "model.layers.10.mlp.down_proj.weight_scale", "model-00001-of-00002.safetensors" },
		{ "model.embed_tokens.weight", "model-00001-of-00002.safetensors" },
		{ "model.layers.10.mlp.down_proj.weight_packed", "model-00001-of-00002.safetensors" },
	};
	static const char want[] =
		"{\n"
		"  \"metadata\": {\n"
		"    \"total_size\": 9007199254740993\n"
		"  },\n"
		"  \"weight_map\": {\n"
		"    \"lm_head.weight\": \"model-00002-of-00002.safetensors\",\n"
		"    \"model.embed_tokens.weight\": \"model-00001-of-00002.safetensors\",\n"
		"    \"model.layers.10.mlp.down_proj.weight_packed\": \"model-00001-of-00002.safetensors\",\n"
		"    \"model.layers.10.mlp.down_proj.weight_scale\": \"model-00001-of-00002.safetensors\",\n"
		"    \"model.layers.2.mlp.down_proj.weight\": \"model-00002-of-00002.safetensors\"\n"
		"  }\n"
		"}";
	struct mq_buf b = MQ_BUF_INIT;
	struct mq_error e = { 0 };
	assert_int_equal(mq_hf_index_json(w, 5, 9007199254740993ull, &b, &e), 0);
	assert_string_equal(b.data, want);
	mq_buf_release(&b);
}

static void test_hf_index_json_refuses_what_no_index_holds(void **state)
{
	(void)state;
	static const struct {
		struct mq_hf_weight w[2];
		size_t n;
		const char *msg;
	} cases[] = {
		{ { { "a", "s1" } }, 0, "no tensor" },
		{ { { "a", "s1" }, { "", "s2" } }, 2, "entry 1 has no tensor or shard name" },
		{ { { "a", NULL } }, 1, "entry 0 has no tensor or shard name" },
		{ { { "a", "s1" }, { "a", "s2" } }, 2, "tensor 'a' is listed twice" },
		{ { { "a", "sub/s1" } }, 1, "shard 'sub/s1' is not a file name" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct mq_buf b = MQ_BUF_INIT;
		struct mq_error e = { 0 };
		assert_int_equal(mq_hf_index_json(cases[i].w, cases[i].n, 1, &b, &e), MQ_ERR_INTERNAL);
		if (!strstr(e.msg, cases[i].msg))
			fail_msg("case %zu: %s", i, e.msg);
		assert_null(b.data);
	}
}

/* ---- the input folder ------------------------------------------------------- */

/* A new folder for one test's files, under TMPDIR (path: at least 512 bytes). */
static void tmp_dir(char *path)
{
	const char *tmp = getenv("TMPDIR");
	snprintf(path, 512, "%s/mq-test-hf.XXXXXX", tmp && *tmp ? tmp : "/tmp");
	assert_non_null(mkdtemp(path));
}

/* Removes path and everything below it; links are removed, never followed. */
static void rm_tree(const char *path)
{
	struct stat st;
	if (lstat(path, &st))
		return;
	if (S_ISDIR(st.st_mode)) {
		DIR *d = opendir(path);
		assert_non_null(d);
		for (struct dirent *e; (e = readdir(d));) {
			if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
				continue;
			char child[1024];
			snprintf(child, sizeof(child), "%s/%s", path, e->d_name);
			rm_tree(child);
		}
		closedir(d);
		assert_int_equal(rmdir(path), 0);
	} else {
		assert_int_equal(unlink(path), 0);
	}
}

/* The folders of dir/rel up to its last '/'. */
static void make_parents(const char *dir, const char *rel)
{
	char p[1024];
	snprintf(p, sizeof(p), "%s/%s", dir, rel);
	for (char *s = p + strlen(dir) + 1; (s = strchr(s, '/')); s++) {
		*s = '\0';
		assert_true(mkdir(p, 0755) == 0 || errno == EEXIST);
		*s = '/';
	}
}

/* Writes text to dir/rel, making its folders. */
static void put(const char *dir, const char *rel, const char *text)
{
	make_parents(dir, rel);
	char p[1024];
	snprintf(p, sizeof(p), "%s/%s", dir, rel);
	FILE *f = fopen(p, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
	assert_int_equal(fclose(f), 0);
}

/* dir/rel as a symbolic link to target (as written, relative to the link's folder). */
static void link_to(const char *target, const char *dir, const char *rel)
{
	make_parents(dir, rel);
	char p[1024];
	snprintf(p, sizeof(p), "%s/%s", dir, rel);
	assert_int_equal(symlink(target, p), 0);
}

/* The n strings of got against want, in order. */
static void assert_list(char **got, size_t n, const char *const *want, size_t n_want)
{
	for (size_t i = 0; i < n && i < n_want; i++)
		assert_string_equal(got[i], want[i]);
	assert_int_equal(n, n_want);
}

#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

/* A folder of plain files: what is copied, what is the output's own, what is hidden or left out. */
static void test_hf_folder_scan_lists_the_files_to_copy(void **state)
{
	(void)state;
	char dir[512], arg[600];
	tmp_dir(dir);
	static const char *const files[] = {
		"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
		"generation_config.json", "chat_template.jinja", "modeling_custom.py", "sub/nested/extra.txt",
		".gitattributes", ".cache/huggingface/download/model.safetensors.lock", "sub/.hidden",
		"pytorch_model.bin", "pytorch_model.bin.index.json", "original/consolidated.00.pth",
		"original/params.json", "consolidated.safetensors", "sub/config.json",
	};
	for (size_t i = 0; i < N_OF(files); i++)
		put(dir, files[i], "x");
	char fifo[600];
	snprintf(fifo, sizeof(fifo), "%s/fifo", dir);
	assert_int_equal(mkfifo(fifo, 0600), 0);
	snprintf(arg, sizeof(arg), "%s//", dir);
	struct mq_hf_folder f;
	struct mq_error e = { 0 };
	if (mq_hf_folder_scan(arg, &f, &e))
		fail_msg("%s", e.msg);
	assert_string_equal(f.dir, dir);
	assert_null(f.index);
	static const char *const shards[] = { "model.safetensors" };
	assert_list(f.shards, f.n_shards, shards, N_OF(shards));
	static const char *const copy[] = {
		"chat_template.jinja", "generation_config.json", "modeling_custom.py", "original/params.json",
		"sub/config.json", "sub/nested/extra.txt", "tokenizer.json", "tokenizer_config.json",
	};
	assert_list(f.copy, f.n_copy, copy, N_OF(copy));
	static const char *const skipped[] = {
		"consolidated.safetensors", "fifo", "original/consolidated.00.pth", "pytorch_model.bin",
		"pytorch_model.bin.index.json",
	};
	assert_int_equal(f.n_skipped, N_OF(skipped));
	for (size_t i = 0; i < N_OF(skipped); i++) {
		assert_string_equal(f.skipped[i].path, skipped[i]);
		assert_non_null(strstr(f.skipped[i].why, i == 1 ? "not a regular file" : "weights"));
	}
	mq_hf_folder_release(&f);
	mq_hf_folder_release(&f);
	rm_tree(dir);
}

/*
 * A Hugging Face cache: the snapshot is all links into ../../blobs (and one
 * into a folder elsewhere), the index names two shards, and a stray
 * model.safetensors beside them is left out.
 */
static void test_hf_folder_scan_follows_a_cache_of_links(void **state)
{
	(void)state;
	char root[512], snap[600];
	tmp_dir(root);
	put(root, "blobs/b1", "{}");
	put(root, "blobs/b2",
	    "{\"metadata\": {\"total_size\": 8}, \"weight_map\": {\"a\": \"model-00001-of-00002.safetensors\","
	    " \"b\": \"model-00002-of-00002.safetensors\", \"c\": \"model-00001-of-00002.safetensors\"}}");
	put(root, "blobs/b3", "x");
	put(root, "blobs/b4", "x");
	put(root, "blobs/b5", "tok");
	put(root, "blobs/b6", "special");
	put(root, "elsewhere/a.txt", "a");
	link_to("../../blobs/b1", root, "snapshots/rev/config.json");
	link_to("../../blobs/b2", root, "snapshots/rev/model.safetensors.index.json");
	link_to("../../blobs/b3", root, "snapshots/rev/model-00001-of-00002.safetensors");
	link_to("../../blobs/b4", root, "snapshots/rev/model-00002-of-00002.safetensors");
	link_to("../../blobs/b3", root, "snapshots/rev/model.safetensors");
	link_to("../../blobs/b5", root, "snapshots/rev/tokenizer.json");
	link_to("../../../blobs/b6", root, "snapshots/rev/tok/special.json");
	link_to("../../elsewhere", root, "snapshots/rev/extra");
	snprintf(snap, sizeof(snap), "%s/snapshots/rev", root);
	struct mq_hf_folder f;
	struct mq_error e = { 0 };
	if (mq_hf_folder_scan(snap, &f, &e))
		fail_msg("%s", e.msg);
	assert_string_equal(f.index, "model.safetensors.index.json");
	static const char *const shards[] = { "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors" };
	assert_list(f.shards, f.n_shards, shards, N_OF(shards));
	static const char *const copy[] = { "extra/a.txt", "tok/special.json", "tokenizer.json" };
	assert_list(f.copy, f.n_copy, copy, N_OF(copy));
	assert_int_equal(f.n_skipped, 1);
	assert_string_equal(f.skipped[0].path, "model.safetensors");
	mq_hf_folder_release(&f);
	rm_tree(root);
}

/* Scans dir and expects MQ_ERR_INPUT with each of the texts in the message. */
static void assert_scan_fails(const char *dir, const char *want1, const char *want2)
{
	struct mq_hf_folder f;
	struct mq_error e = { 0 };
	assert_int_equal(mq_hf_folder_scan(dir, &f, &e), MQ_ERR_INPUT);
	if (!strstr(e.msg, want1) || (want2 && !strstr(e.msg, want2)))
		fail_msg("message: %s", e.msg);
	assert_null(f.dir);
	assert_int_equal(f.n_copy + f.n_shards + f.n_skipped, 0);
	mq_hf_folder_release(&f);
}

static void test_hf_folder_scan_errors_name_the_file(void **state)
{
	(void)state;
	char dir[512], p[700];
	tmp_dir(dir);
	snprintf(p, sizeof(p), "%s/none", dir);
	assert_scan_fails(p, "cannot open the model folder", "/none");
	put(dir, "tokenizer.json", "{}");
	assert_scan_fails(dir, "has no config.json: a Hugging Face model folder holds config.json", dir);
	snprintf(p, sizeof(p), "%s/tokenizer.json", dir);
	assert_scan_fails(p, "is not a folder", "tokenizer.json");
	link_to("../blobs/gone", dir, "config.json");
	assert_scan_fails(dir, "config.json' is a symbolic link to '../blobs/gone', which does not exist", NULL);
	snprintf(p, sizeof(p), "%s/config.json", dir);
	assert_int_equal(unlink(p), 0);
	put(dir, "config.json", "{}");
	put(dir, "pytorch_model.bin", "x");
	put(dir, ".git/HEAD", "x");
	assert_scan_fails(dir, "no safetensors weights",
			  "(it holds: config.json, pytorch_model.bin, tokenizer.json)");
	put(dir, "model.safetensors.index.json", "{\"weight_map\": {\"a\": \"model-00001-of-00002.safetensors\"}}");
	assert_scan_fails(dir, "names the shard 'model-00001-of-00002.safetensors', which is not in", NULL);
	put(dir, "model.safetensors.index.json", "{\"weight_map\": {\"a\": \"../model.safetensors\"}}");
	assert_scan_fails(dir, "the shard of tensor 'a' is not a file name beside the index", NULL);
	put(dir, "model.safetensors.index.json", "[]");
	assert_scan_fails(dir, "model.safetensors.index.json' is not a shard index", NULL);
	snprintf(p, sizeof(p), "%s/model.safetensors.index.json", dir);
	assert_int_equal(unlink(p), 0);
	put(dir, "model.safetensors", "x");
	link_to("nowhere", dir, "sub/broken");
	assert_scan_fails(dir, "sub/broken' is a symbolic link to 'nowhere', which does not exist", NULL);
	snprintf(p, sizeof(p), "%s/sub/broken", dir);
	assert_int_equal(unlink(p), 0);
	link_to("..", dir, "sub/loop");
	assert_scan_fails(dir, "sub/loop' leads back to a folder that contains it", NULL);
	rm_tree(dir);
}

/* ---- files ------------------------------------------------------------------ */

/* The bytes of path (malloc'd, *n of them). */
static unsigned char *slurp(const char *path, size_t *n)
{
	FILE *f = fopen(path, "rb");
	assert_non_null(f);
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	long size = ftell(f);
	assert_true(size >= 0);
	rewind(f);
	unsigned char *p = malloc((size_t)size + 1);
	assert_int_equal(fread(p, 1, (size_t)size, f), (size_t)size);
	fclose(f);
	*n = (size_t)size;
	return p;
}

static int count_entries(const char *dir)
{
	DIR *d = opendir(dir);
	assert_non_null(d);
	int n = 0;
	for (struct dirent *e; (e = readdir(d));)
		n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
	closedir(d);
	return n;
}

/* Every byte value, more than one read's worth, through a link, into folders that do not exist yet. */
static void test_hf_copy_file_is_byte_for_byte(void **state)
{
	(void)state;
	char dir[512], src[600], link[600], dst[600], leaf[600];
	tmp_dir(dir);
	snprintf(src, sizeof(src), "%s/blob", dir);
	snprintf(link, sizeof(link), "%s/in/tokenizer.model", dir);
	snprintf(dst, sizeof(dst), "%s/out/a//b/tokenizer.model", dir);
	snprintf(leaf, sizeof(leaf), "%s/out/a/b", dir);
	size_t n = (3u << 19) + 3;
	unsigned char *data = malloc(n);
	for (size_t i = 0; i < n; i++)
		data[i] = (unsigned char)(i * 7 + i / 256);
	FILE *f = fopen(src, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(data, 1, n, f), n);
	assert_int_equal(fclose(f), 0);
	assert_int_equal(chmod(src, 0640), 0);
	link_to("../blob", dir, "in/tokenizer.model");
	struct mq_error e = { 0 };
	for (unsigned flags = 0; flags < 2; flags++) {
		if (mq_hf_copy_file(link, dst, flags ? MQ_HF_COPY_FSYNC : 0, &e))
			fail_msg("%s", e.msg);
		size_t got_n = 0;
		unsigned char *got = slurp(dst, &got_n);
		assert_int_equal(got_n, n);
		assert_memory_equal(got, data, n);
		free(got);
		struct stat st;
		assert_int_equal(lstat(dst, &st), 0);
		assert_true(S_ISREG(st.st_mode));
		assert_int_equal(st.st_mode & 0777, 0640);
		assert_int_equal(count_entries(leaf), 1);
	}
	/* A shorter file replaces a longer one whole. */
	put(dir, "short", "tiny");
	snprintf(src, sizeof(src), "%s/short", dir);
	assert_int_equal(mq_hf_copy_file(src, dst, 0, &e), 0);
	size_t got_n = 0;
	unsigned char *got = slurp(dst, &got_n);
	assert_int_equal(got_n, 4);
	assert_memory_equal(got, "tiny", 4);
	free(got);
	free(data);
	rm_tree(dir);
}

/* Copies that cannot be made: both paths named, the side at fault in the code, nothing left behind. */
static void test_hf_copy_file_errors_name_both_paths(void **state)
{
	(void)state;
	char dir[512], src[600], dst[600], p[600];
	tmp_dir(dir);
	put(dir, "a.json", "{}");
	put(dir, "file", "x");
	snprintf(src, sizeof(src), "%s/missing.json", dir);
	snprintf(dst, sizeof(dst), "%s/out/a.json", dir);
	struct mq_error e = { 0 };
	assert_int_equal(mq_hf_copy_file(src, dst, 0, &e), MQ_ERR_INPUT);
	if (!strstr(e.msg, "missing.json") || !strstr(e.msg, "out/a.json") || !strstr(e.msg, "No such file"))
		fail_msg("%s", e.msg);
	memset(&e, 0, sizeof(e));
	assert_int_equal(mq_hf_copy_file(dir, dst, 0, &e), MQ_ERR_INPUT);
	assert_non_null(strstr(e.msg, "it is not a regular file"));
	snprintf(src, sizeof(src), "%s/a.json", dir);
	snprintf(p, sizeof(p), "%s/file/a.json", dir);
	memset(&e, 0, sizeof(e));
	assert_int_equal(mq_hf_copy_file(src, p, 0, &e), MQ_ERR_OUTPUT);
	if (!strstr(e.msg, "a.json' to '") || !strstr(e.msg, "file/a.json") || !strstr(e.msg, "Not a directory"))
		fail_msg("%s", e.msg);
	/* A folder where the file goes: the rename fails and the temporary file goes. */
	put(dir, "out/a.json/inside", "x");
	memset(&e, 0, sizeof(e));
	assert_int_equal(mq_hf_copy_file(src, dst, 0, &e), MQ_ERR_OUTPUT);
	assert_non_null(strstr(e.msg, "renaming the copy into place"));
	snprintf(p, sizeof(p), "%s/out", dir);
	assert_int_equal(count_entries(p), 1);
	rm_tree(dir);
}

/* Through links, "..", paths not made yet, and a folder whose name starts another's. */
static void test_hf_path_inside_resolves_links_and_dots(void **state)
{
	(void)state;
	char t[512], in[600], p[800];
	tmp_dir(t);
	snprintf(in, sizeof(in), "%s/model", t);
	put(t, "model/sub/x.json", "{}");
	put(t, "model2/y", "y");
	link_to("model", t, "alias");
	link_to("../model/sub", t, "elsewhere/into");
	link_to("nowhere", t, "dangling");
	link_to("model/ghost", t, "to_ghost");
	static const struct {
		const char *rel;
		int want;
	} cases[] = {
		{ "model", 1 },
		{ "model/", 1 },
		{ "model/sub/x.json", 1 },
		{ "model/new/deeper", 1 },          /* not made yet */
		{ "model/./new/../other", 1 },
		{ "model/..", 0 },
		{ "model/sub/../../model2", 0 },
		{ "model2", 0 },                    /* "model2" starts with "model" */
		{ "model2/out", 0 },
		{ "model/new/../../model2/out", 0 }, /* ".." past a folder not made yet */
		{ "model/new/../../model/out", 1 },
		{ "alias/out", 1 },                 /* a link to the folder */
		{ "elsewhere/into/out", 1 },        /* a link into it from elsewhere */
		{ "elsewhere/into/../..", 0 },      /* ".." after a link: the target's parent */
		{ "elsewhere", 0 },
		{ "dangling/out", -1 },
		{ "to_ghost", -1 },                 /* would create model/ghost: cannot tell */
		{ "model/sub/x.json/out", -1 },     /* a file where a folder belongs */
	};
	for (size_t i = 0; i < N_OF(cases); i++) {
		snprintf(p, sizeof(p), "%s/%s", t, cases[i].rel);
		int got = mq_hf_path_inside(in, p);
		if (got != cases[i].want)
			fail_msg("'%s': %d, not %d", cases[i].rel, got, cases[i].want);
	}
	snprintf(p, sizeof(p), "%s/alias", t);
	snprintf(in, sizeof(in), "%s/model/sub/new", t);
	assert_int_equal(mq_hf_path_inside(p, in), 1);   /* the folder given as a link */
	snprintf(p, sizeof(p), "%s/no-such-folder", t);
	assert_int_equal(mq_hf_path_inside(p, in), -1);
	assert_int_equal(mq_hf_path_inside(".", "not-made-yet/out"), 1); /* relative: from the current folder */
	assert_int_equal(mq_hf_path_inside(".", ".."), 0);
	assert_int_equal(mq_hf_path_inside(".", ""), -1);
	assert_int_equal(mq_hf_path_inside("/", t), 1);
	rm_tree(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hf_w4a16_is_lowbit_b3_as_python_writes_it),
		cmocka_unit_test(test_hf_asym_group_32_with_observer_and_two_ignores),
		cmocka_unit_test(test_hf_w8a8_int8_dynamic_input),
		cmocka_unit_test(test_hf_fp8_static_and_dynamic_input),
		cmocka_unit_test(test_hf_quant_config_refuses_what_loaders_refuse),
		cmocka_unit_test(test_hf_mixed_groups_name_their_modules),
		cmocka_unit_test(test_hf_json_print_writes_what_python_writes),
		cmocka_unit_test(test_hf_config_rewrite_matches_python_for_a_llama_config),
		cmocka_unit_test(test_hf_config_rewrite_replaces_an_empty_quantization_config),
		cmocka_unit_test(test_hf_config_rewrite_refuses_with_the_file_named),
		cmocka_unit_test(test_hf_shard_names_follow_transformers),
		cmocka_unit_test(test_hf_index_json_sorted_with_total_size),
		cmocka_unit_test(test_hf_index_json_refuses_what_no_index_holds),
		cmocka_unit_test(test_hf_folder_scan_lists_the_files_to_copy),
		cmocka_unit_test(test_hf_folder_scan_follows_a_cache_of_links),
		cmocka_unit_test(test_hf_folder_scan_errors_name_the_file),
		cmocka_unit_test(test_hf_copy_file_is_byte_for_byte),
		cmocka_unit_test(test_hf_copy_file_errors_name_both_paths),
		cmocka_unit_test(test_hf_path_inside_resolves_links_and_dots),
	};
	return cmocka_run_group_tests_name("hf", tests, NULL, NULL);
}
