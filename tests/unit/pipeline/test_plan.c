/* Planning: selection, layout, rank-count independence of units, balance, determinism. */
#include "manifest_util.h"

#include "plan.h"

static const struct spec model[] = {
	{ "model.embed_tokens.weight", MQ_DTYPE_F32, 2, { 1000, 64 } },
	{ "model.layers.0.mlp.down_proj.weight", MQ_DTYPE_F32, 2, { 64, 256 } },
	{ "model.layers.0.mlp.up_proj.weight", MQ_DTYPE_BF16, 2, { 256, 64 } },
	{ "model.layers.0.mlp.gate.weight", MQ_DTYPE_F32, 2, { 8, 64 } },
	{ "model.layers.0.input_layernorm.weight", MQ_DTYPE_F32, 1, { 64 } },
	{ "model.layers.0.self_attn.q_proj.bias", MQ_DTYPE_F32, 1, { 64 } },
	{ "model.layers.0.self_attn.q_proj.weight", MQ_DTYPE_F16, 2, { 64, 64 } },
	{ "model.conv.weight", MQ_DTYPE_F32, 4, { 8, 4, 3, 3 } },
	{ "model.position_ids", MQ_DTYPE_I64, 1, { 16 } },
	{ "model.big.weight", MQ_DTYPE_F32, 2, { 20000, 1024 } }, /* 78 MiB: five chunks */
	{ "model.empty.weight", MQ_DTYPE_F32, 2, { 0, 16 } },
	{ "lm_head.weight", MQ_DTYPE_F32, 2, { 1000, 64 } },
};
#define N_MODEL ((int)(sizeof(model) / sizeof(model[0])))

static void default_options(struct mq_options *o)
{
	memset(o, 0, sizeof(*o));
	o->scheme = MQ_SCHEME_INT8;
	o->memory_budget = 256u << 20;
	o->input = "model.safetensors";
}

static const struct mq_plan_tensor *find(const struct mq_manifest *m, const struct mq_plan *p, const char *name)
{
	int i = mq_manifest_find(m, name);
	assert_true(i >= 0);
	return &p->tensors[i];
}

static void test_plan_selection_follows_the_rules(void **state)
{
	(void)state;
	struct mq_manifest m;
	struct mq_options o;
	struct mq_plan p;
	struct mq_error e = { 0 };
	make_manifest(&m, model, N_MODEL);
	default_options(&o);
	assert_int_equal(mq_plan_build(&m, &o, 1, NULL, &p, &e), 0);
	assert_int_equal(find(&m, &p, "model.layers.0.mlp.down_proj.weight")->action, MQ_ACT_QUANT);
	assert_int_equal(find(&m, &p, "model.layers.0.mlp.up_proj.weight")->action, MQ_ACT_QUANT);
	assert_int_equal(find(&m, &p, "model.conv.weight")->action, MQ_ACT_QUANT);
	assert_string_equal(find(&m, &p, "model.embed_tokens.weight")->reason, "default exclusion 'embed'");
	assert_string_equal(find(&m, &p, "lm_head.weight")->reason, "default exclusion '(^|\\.)lm_head\\.'");
	assert_int_equal(find(&m, &p, "model.layers.0.mlp.gate.weight")->action, MQ_ACT_KEEP);
	assert_string_equal(find(&m, &p, "model.layers.0.input_layernorm.weight")->reason, "1-D tensor");
	assert_string_equal(find(&m, &p, "model.position_ids")->reason, "dtype I64 is not quantized");
	assert_string_equal(find(&m, &p, "model.empty.weight")->reason, "empty tensor");
	assert_int_equal(p.n_quantized, 5);
	mq_plan_release(&p);

	/* --include overrides the default exclusions, --exclude beats --include */
	const char *inc[] = { "lm_head", "proj" };
	const char *exc[] = { "down_proj" };
	o.includes = inc;
	o.n_includes = 2;
	o.excludes = exc;
	o.n_excludes = 1;
	assert_int_equal(mq_plan_build(&m, &o, 1, NULL, &p, &e), 0);
	assert_int_equal(find(&m, &p, "lm_head.weight")->action, MQ_ACT_QUANT);
	assert_string_equal(find(&m, &p, "model.layers.0.mlp.down_proj.weight")->reason, "--exclude 'down_proj'");
	assert_string_equal(find(&m, &p, "model.conv.weight")->reason, "no --include matches");
	mq_plan_release(&p);
	mq_manifest_release(&m);
}

/* A cast converts every floating-point tensor (model.to(dtype)): no default exclusions, any shape. */
static void test_plan_cast_selects_every_float_tensor(void **state)
{
	(void)state;
	struct mq_manifest m;
	struct mq_options o;
	struct mq_plan p;
	struct mq_error e = { 0 };
	make_manifest(&m, model, N_MODEL);
	default_options(&o);
	o.scheme = MQ_SCHEME_BF16;
	assert_int_equal(mq_plan_build(&m, &o, 2, NULL, &p, &e), 0);
	for (int i = 0; i < N_MODEL; i++) {
		const struct mq_plan_tensor *t = find(&m, &p, model[i].name);
		if (model[i].dtype == MQ_DTYPE_I64) {
			assert_int_equal(t->action, MQ_ACT_KEEP);
			assert_string_equal(t->reason, "dtype I64 is not a floating-point type");
		} else {
			assert_int_equal(t->action, MQ_ACT_QUANT);
			assert_string_equal(t->reason, "floating-point tensor (cast)");
			assert_int_equal(p.out[t->out_data].dtype, MQ_DTYPE_BF16);
		}
	}
	assert_int_equal(p.n_quantized, N_MODEL - 1);
	for (int k = 0; k < p.n_out; k++)
		assert_true(p.out[k].role == MQ_ROLE_WEIGHT || p.out[k].role == MQ_ROLE_COPY); /* no scales */
	/* a norm's one-element rows are read in blocks that stay small */
	assert_true(p.arena_bytes <= 8u << 20);
	mq_plan_release(&p);

	/* --exclude keeps a tensor in its dtype; --include picks tensors, as for the integer schemes */
	const char *exc[] = { "lm_head", "norm" };
	o.scheme = MQ_SCHEME_FP16;
	o.excludes = exc;
	o.n_excludes = 2;
	assert_int_equal(mq_plan_build(&m, &o, 1, NULL, &p, &e), 0);
	assert_string_equal(find(&m, &p, "lm_head.weight")->reason, "--exclude 'lm_head'");
	assert_string_equal(find(&m, &p, "model.layers.0.input_layernorm.weight")->reason, "--exclude 'norm'");
	assert_int_equal(p.out[find(&m, &p, "lm_head.weight")->out_data].dtype, MQ_DTYPE_F32);
	assert_int_equal(find(&m, &p, "model.embed_tokens.weight")->action, MQ_ACT_QUANT);
	assert_int_equal(find(&m, &p, "model.layers.0.self_attn.q_proj.bias")->action, MQ_ACT_QUANT);
	mq_plan_release(&p);
	const char *inc[] = { "bias" };
	o.includes = inc;
	o.n_includes = 1;
	o.n_excludes = 0;
	assert_int_equal(mq_plan_build(&m, &o, 1, NULL, &p, &e), 0);
	assert_int_equal(p.n_quantized, 1);
	assert_string_equal(find(&m, &p, "model.conv.weight")->reason, "no --include matches");
	mq_plan_release(&p);
	mq_manifest_release(&m);
}

static void test_plan_layout_is_contiguous_and_sorted(void **state)
{
	(void)state;
	struct mq_manifest m;
	struct mq_options o;
	struct mq_plan p;
	struct mq_error e = { 0 };
	make_manifest(&m, model, N_MODEL);
	default_options(&o);
	o.scheme = MQ_SCHEME_INT8_ASYM;
	assert_int_equal(mq_plan_build(&m, &o, 3, NULL, &p, &e), 0);
	uint64_t off = 0;
	for (int k = 0; k < p.n_out; k++) {
		assert_int_equal(p.out[k].begin, off);
		off = p.out[k].end;
		if (k)
			assert_true(mq_dtype_size(p.out[k - 1].dtype) >= mq_dtype_size(p.out[k].dtype));
	}
	assert_int_equal(off, p.bytes_out);
	/* a quantized weight has I8 data, F32 scale [out,1] and an I8 zero point */
	const struct mq_plan_tensor *t = find(&m, &p, "model.layers.0.mlp.down_proj.weight");
	assert_string_equal(p.out[t->out_scale].name, "model.layers.0.mlp.down_proj.weight_scale");
	assert_int_equal(p.out[t->out_scale].dtype, MQ_DTYPE_F32);
	assert_int_equal(p.out[t->out_scale].shape[0], 64);
	assert_int_equal(p.out[t->out_scale].shape[1], 1);
	assert_string_equal(p.out[t->out_zero_point].name, "model.layers.0.mlp.down_proj.weight_zero_point");
	assert_int_equal(p.out[t->out_data].dtype, MQ_DTYPE_I8);
	assert_int_equal(p.out[t->out_zero_point].dtype, MQ_DTYPE_I8);
	assert_int_equal(t->bytes_out, 64 * 256 + 64 * 4 + 64);
	mq_plan_release(&p);
	mq_manifest_release(&m);
}

/* Units are the same whatever the rank count; only their owners change. */
static void test_plan_units_do_not_depend_on_rank_count(void **state)
{
	(void)state;
	struct mq_manifest m;
	struct mq_options o;
	struct mq_plan p1, p4;
	struct mq_error e = { 0 };
	make_manifest(&m, model, N_MODEL);
	default_options(&o);
	assert_int_equal(mq_plan_build(&m, &o, 1, NULL, &p1, &e), 0);
	assert_int_equal(mq_plan_build(&m, &o, 4, NULL, &p4, &e), 0);
	assert_int_equal(p1.n_units, p4.n_units);
	for (int u = 0; u < p1.n_units; u++) {
		assert_int_equal(p1.units[u].tensor, p4.units[u].tensor);
		assert_int_equal(p1.units[u].row_begin, p4.units[u].row_begin);
		assert_int_equal(p1.units[u].row_end, p4.units[u].row_end);
		assert_int_equal(p1.units[u].rank, 0);
	}
	assert_int_equal(p1.n_out, p4.n_out);
	for (int k = 0; k < p1.n_out; k++)
		assert_int_equal(p1.out[k].begin, p4.out[k].begin);
	/* the big tensor is split into 16 MiB chunks of whole rows */
	const struct mq_plan_tensor *big = find(&m, &p4, "model.big.weight");
	assert_int_equal(big->chunk_rows, 4096);
	assert_int_equal(big->n_units, 5);
	assert_int_equal(p4.units[big->first_unit + 4].row_end, 20000);
	mq_plan_release(&p1);
	mq_plan_release(&p4);
	mq_manifest_release(&m);
}

static void test_plan_is_deterministic_and_balanced(void **state)
{
	(void)state;
	struct spec many[40];
	char names[40][32];
	for (int i = 0; i < 40; i++) {
		snprintf(names[i], sizeof(names[i]), "l%02d.weight", i);
		many[i] = (struct spec){ names[i], MQ_DTYPE_F32, 2, { (uint64_t)(512 + 64 * (i % 7)), 1024 } };
	}
	struct mq_manifest m;
	struct mq_options o;
	struct mq_plan a, b;
	struct mq_error e = { 0 };
	make_manifest(&m, many, 40);
	default_options(&o);
	assert_int_equal(mq_plan_build(&m, &o, 4, NULL, &a, &e), 0);
	assert_int_equal(mq_plan_build(&m, &o, 4, NULL, &b, &e), 0);
	for (int u = 0; u < a.n_units; u++)
		assert_int_equal(a.units[u].rank, b.units[u].rank);
	uint64_t mx = 0, sum = 0, largest = 0;
	for (int r = 0; r < 4; r++) {
		mx = a.ranks[r].cost > mx ? a.ranks[r].cost : mx;
		sum += a.ranks[r].cost;
		assert_true(a.ranks[r].n_units > 0);
	}
	for (int u = 0; u < a.n_units; u++)
		largest = a.units[u].cost > largest ? a.units[u].cost : largest;
	/* LPT: no rank exceeds the mean by more than one unit */
	assert_true(mx <= sum / 4 + largest);
	mq_plan_release(&a);
	mq_plan_release(&b);
	mq_manifest_release(&m);
}

static void test_plan_per_tensor_keeps_tensors_whole(void **state)
{
	(void)state;
	struct mq_manifest m;
	struct mq_options o;
	struct mq_plan p;
	struct mq_error e = { 0 };
	make_manifest(&m, model, N_MODEL);
	default_options(&o);
	o.per_tensor = 1;
	assert_int_equal(mq_plan_build(&m, &o, 2, NULL, &p, &e), 0);
	const struct mq_plan_tensor *big = find(&m, &p, "model.big.weight");
	assert_int_equal(big->n_units, 1);
	assert_int_equal(p.units[big->first_unit].chunk_end, 5);
	assert_int_equal(p.out[big->out_scale].ndim, 1);
	assert_int_equal(p.out[big->out_scale].shape[0], 1);
	/* memory stays within the budget however large the tensor */
	assert_true(p.arena_bytes <= o.memory_budget);
	mq_plan_release(&p);
	mq_manifest_release(&m);
}

static void test_plan_refuses_rows_over_budget_and_name_clashes(void **state)
{
	(void)state;
	struct spec wide[] = { { "w.weight", MQ_DTYPE_F32, 2, { 2, 1u << 20 } } };
	struct mq_manifest m;
	struct mq_options o;
	struct mq_plan p;
	struct mq_error e = { 0 };
	make_manifest(&m, wide, 1);
	default_options(&o);
	o.memory_budget = 4u << 20;
	assert_int_equal(mq_plan_build(&m, &o, 1, NULL, &p, &e), MQ_ERR_USAGE);
	assert_non_null(strstr(e.msg, "raise --memory-budget"));
	mq_plan_release(&p);
	mq_manifest_release(&m);

	struct spec clash[] = { { "a.weight", MQ_DTYPE_F32, 2, { 4, 4 } }, { "a.weight_scale", MQ_DTYPE_F32, 2, { 4, 1 } } };
	make_manifest(&m, clash, 2);
	default_options(&o);
	memset(&e, 0, sizeof(e));
	assert_int_equal(mq_plan_build(&m, &o, 1, NULL, &p, &e), MQ_ERR_INPUT);
	assert_non_null(strstr(e.msg, "already quantized"));
	mq_plan_release(&p);
	mq_manifest_release(&m);
}

/* Tensors that each fit but together pass 2^62 bytes (the third one): refused by a checked sum, not wrapped. */
static void test_plan_refuses_input_sums_past_2e62(void **state)
{
	(void)state;
	static const struct spec huge[] = {
		{ "a.bias", MQ_DTYPE_F32, 2, { 1ull << 30, 1ull << 29 } }, /* 2^61 bytes each, kept */
		{ "b.bias", MQ_DTYPE_F32, 2, { 1ull << 30, 1ull << 29 } },
		{ "c.bias", MQ_DTYPE_F32, 2, { 1ull << 30, 1ull << 29 } },
	};
	struct mq_manifest m;
	struct mq_options o;
	struct mq_plan p;
	struct mq_error e = { 0 };
	make_manifest(&m, huge, 3);
	default_options(&o);
	assert_int_equal(mq_plan_build(&m, &o, 2, NULL, &p, &e), MQ_ERR_INPUT);
	if (!strstr(e.msg, "more than 4611686018427387904 bytes (2^62) of data, at tensor 'c.bias'"))
		fail_msg("message: %s", e.msg);
	mq_plan_release(&p);
	mq_manifest_release(&m);
}

/* A calibration entry for every quantized weight of m: `rows` Linear rows, chunked by 64. */
/*
 * Mixed precision: before the choice, the measuring plan takes the weights
 * any candidate may (conv included) and chunks them as a uniform plan does;
 * with a choice, each tensor gets its candidate's spec, its bytes_out is
 * what mq_plan_spec_bytes said, and a tensor without one is kept.
 */
static void test_plan_mixed_takes_each_tensors_choice(void **state)
{
	(void)state;
	struct mq_manifest m;
	struct mq_options o;
	struct mq_plan p, u;
	struct mq_error e = { 0 };
	make_manifest(&m, model, N_MODEL);
	default_options(&o);
	assert_int_equal(mq_plan_build(&m, &o, 1, NULL, &u, &e), 0); /* uniform int8, for the units */
	o.target_bpw = 6;
	o.n_candidates = 2;
	o.candidates[0] = (struct mq_candidate){ MQ_SCHEME_INT4, 64 };
	o.candidates[1] = (struct mq_candidate){ MQ_SCHEME_INT8, 0 };
	assert_int_equal(mq_plan_build_mixed(&m, &o, 3, NULL, NULL, &p, &e), 0);
	assert_null(p.mix);
	assert_int_equal(p.n_quantized, u.n_quantized);
	assert_int_equal(p.n_units, u.n_units);
	for (int k = 0; k < p.n_units; k++)
		assert_true(p.units[k].row_begin == u.units[k].row_begin && p.units[k].row_end == u.units[k].row_end);
	const int conv = mq_manifest_find(&m, "model.conv.weight"), down = mq_manifest_find(&m, "model.layers.0.mlp.down_proj.weight");
	const struct mq_spec i4 = { MQ_SCHEME_INT4, 0, MQ_GRAN_GROUP, 64 }, i8 = { MQ_SCHEME_INT8, 0, MQ_GRAN_CHANNEL, 0 };
	assert_false(mq_plan_spec_fits(&p.tensors[conv], &m.tensors[conv], &i4)); /* int4 takes Linear weights only */
	assert_true(mq_plan_spec_fits(&p.tensors[conv], &m.tensors[conv], &i8));
	assert_true(mq_plan_spec_fits(&p.tensors[down], &m.tensors[down], &i4));
	assert_int_equal(mq_plan_spec_bytes(&m.tensors[down], &i4), 64 * 256 / 2 + 64 * 4 * 4 + 16); /* codes, F32 scales, shape */
	mq_plan_release(&p);

	struct mq_plan_choice mix;
	memset(&mix, 0, sizeof(mix));
	int chosen[N_MODEL];
	unsigned char gate[N_MODEL] = { 0 };
	for (int i = 0; i < N_MODEL; i++)
		chosen[i] = u.tensors[i].action == MQ_ACT_QUANT ? (i == conv ? 1 : 0) : -1;
	const int q = mq_manifest_find(&m, "model.layers.0.self_attn.q_proj.weight");
	chosen[q] = -1; /* no candidate: kept */
	mix.n_candidates = 2;
	mix.spec[0] = i4;
	mix.spec[1] = i8;
	mix.chosen = chosen;
	mix.gate = gate;
	mix.floor = (double)NAN;
	assert_int_equal(mq_plan_build_mixed(&m, &o, 2, NULL, &mix, &p, &e), 0);
	assert_ptr_equal(p.mix, &mix);
	assert_int_equal(p.n_quantized, u.n_quantized - 1);
	assert_int_equal(p.tensors[down].q.scheme, MQ_SCHEME_INT4);
	assert_int_equal(p.tensors[down].q.group_size, 64);
	assert_int_equal(p.tensors[down].row_groups, 4);
	assert_int_equal(p.tensors[down].bytes_out, mq_plan_spec_bytes(&m.tensors[down], &i4));
	assert_int_equal(p.tensors[conv].q.scheme, MQ_SCHEME_INT8);
	assert_int_equal(p.tensors[conv].bytes_out, mq_plan_spec_bytes(&m.tensors[conv], &i8));
	assert_int_equal(p.tensors[q].action, MQ_ACT_KEEP);
	assert_string_equal(p.tensors[q].reason, "none of --candidates can store it as vLLM loads it");
	mq_plan_release(&p);
	mq_plan_release(&u);
	mq_manifest_release(&m);
}

static struct mq_calib_info *calib_all(const struct mq_manifest *m, uint64_t rows)
{
	struct mq_calib_info *ci = calloc((size_t)m->n_tensors + 1, sizeof(*ci));
	for (int i = 0; i < m->n_tensors; i++) {
		const struct mq_tensor *t = &m->tensors[i];
		if (t->ndim != 2)
			continue;
		ci[i].present = 1;
		ci[i].shape = (struct mq_calib_shape){ 2, { rows, t->shape[1] }, 0, 64, t->shape[1] };
		ci[i].stride[0] = ci[i].stride[1] = ci[i].dilation[0] = ci[i].dilation[1] = ci[i].groups = 1;
	}
	return ci;
}

/*
 * GPTQ layers: one owner each, longest factor first; an owner's k-th layer in
 * wave k; unit j of a layer on rank owner + j; every layer once in the sweep
 * order, wave by wave; every rank in one Hessian group per wave; and a layer
 * whose Hessian cannot fit the budget is an error naming it.
 */
static void test_plan_gptq_owners_waves_and_budget(void **state)
{
	(void)state;
	static const struct spec layers[] = {
		{ "model.layers.0.mlp.down_proj.weight", MQ_DTYPE_F32, 2, { 512, 2048 } },
		{ "model.layers.0.mlp.up_proj.weight", MQ_DTYPE_F32, 2, { 8192, 512 } }, /* 16 MiB: 1 unit */
		{ "model.layers.0.self_attn.q_proj.weight", MQ_DTYPE_F32, 2, { 512, 512 } },
		{ "model.layers.0.self_attn.k_proj.weight", MQ_DTYPE_F32, 2, { 512, 512 } },
		{ "model.layers.1.mlp.up_proj.weight", MQ_DTYPE_F32, 2, { 24576, 512 } }, /* 3 units */
		{ "lm_head.weight", MQ_DTYPE_F32, 2, { 1000, 512 } },
	};
	struct mq_manifest m;
	struct mq_options o;
	struct mq_error e = { 0 };
	make_manifest(&m, layers, 6);
	default_options(&o);
	o.scheme = MQ_SCHEME_INT4;
	o.calib = "calib.h5";
	o.method = MQ_METHOD_GPTQ;
	o.gptq = (struct mq_gptq_opts){ 0.01, 128, MQ_ACTORDER_STATIC, MQ_GPTQ_SCALES_ORIGINAL, 0 };
	struct mq_calib_info *ci = calib_all(&m, 256);
	for (int ranks = 1; ranks <= 4; ranks++) {
		struct mq_plan p;
		assert_int_equal(mq_plan_build(&m, &o, ranks, ci, &p, &e), 0);
		assert_int_equal(p.n_gptq, 5);
		int seen[8] = { 0 }, last_wave = 0;
		for (int k = 0; k < p.n_gptq; k++) {
			const struct mq_plan_tensor *pt = &p.tensors[p.gptq_order[k]];
			assert_true(pt->gptq && pt->gptq_rank >= 0 && pt->gptq_rank < ranks);
			assert_true(pt->gptq_wave >= last_wave); /* wave by wave */
			last_wave = pt->gptq_wave;
			seen[p.gptq_order[k]]++;
			for (int j = 0; j < pt->n_units; j++)
				assert_int_equal(p.units[pt->first_unit + j].rank, (pt->gptq_rank + j) % ranks);
			/* the k-th layer of an owner is in its wave k */
			int before = 0;
			for (int q = 0; q < k; q++)
				before += p.tensors[p.gptq_order[q]].gptq_rank == pt->gptq_rank;
			assert_int_equal(pt->gptq_wave, before);
		}
		for (int i = 0; i < m.n_tensors; i++)
			assert_int_equal(seen[i], p.tensors[i].gptq ? 1 : 0);
		/* the widest factor (in 2048) first, on rank 0 */
		assert_int_equal(p.gptq_order[0], mq_manifest_find(&m, "model.layers.0.mlp.down_proj.weight"));
		assert_int_equal(p.tensors[p.gptq_order[0]].gptq_rank, 0);
		assert_int_equal(find(&m, &p, "model.layers.1.mlp.up_proj.weight")->n_units, 3);
		assert_false(find(&m, &p, "lm_head.weight")->gptq);
		/* Hessian groups: every rank in exactly one group per wave, the owner first */
		for (int w = 0; w <= last_wave; w++) {
			int in_group[4] = { 0 }, members[4];
			for (int k = 0; k < p.n_gptq; k++) {
				const int t = p.gptq_order[k];
				if (p.tensors[t].gptq_wave != w)
					continue;
				int n = mq_plan_gptq_group(&p, t, members);
				assert_int_equal(members[0], p.tensors[t].gptq_rank);
				for (int j = 0; j < n; j++)
					in_group[members[j]]++;
			}
			for (int r = 0; r < ranks; r++)
				assert_int_equal(in_group[r], 1);
		}
		if (ranks == 4) { /* 5 layers: the last wave's one layer is built by all four ranks */
			int members[4];
			assert_int_equal(mq_plan_gptq_group(&p, p.gptq_order[4], members), 4);
		}
		mq_plan_release(&p);
	}
	/* 16 MiB for the 2048-wide Hessian alone (and another layer's factor received on 2 ranks) */
	o.memory_budget = 16u << 20;
	struct mq_plan p;
	assert_int_equal(mq_plan_build(&m, &o, 2, ci, &p, &e), MQ_ERR_USAGE);
	if (!strstr(e.msg, "GPTQ layer 'model.layers.0.mlp.down_proj.weight' needs") || !strstr(e.msg, "2048 x 2048"))
		fail_msg("message: %s", e.msg);
	mq_plan_release(&p);
	free(ci);
	mq_manifest_release(&m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plan_refuses_input_sums_past_2e62),
		cmocka_unit_test(test_plan_selection_follows_the_rules),
		cmocka_unit_test(test_plan_cast_selects_every_float_tensor),
		cmocka_unit_test(test_plan_layout_is_contiguous_and_sorted),
		cmocka_unit_test(test_plan_units_do_not_depend_on_rank_count),
		cmocka_unit_test(test_plan_is_deterministic_and_balanced),
		cmocka_unit_test(test_plan_per_tensor_keeps_tensors_whole),
		cmocka_unit_test(test_plan_refuses_rows_over_budget_and_name_clashes),
		cmocka_unit_test(test_plan_gptq_owners_waves_and_budget),
		cmocka_unit_test(test_plan_mixed_takes_each_tensors_choice),
	};
	return cmocka_run_group_tests_name("plan", tests, NULL, NULL);
}
