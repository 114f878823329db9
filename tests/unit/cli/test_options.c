/* Options: parsing, validation, default output names. */
#include "test_util.h"

#include <stdio.h>
#include <time.h>

#include "options.h"
#include "options_regex.h"

static int parse(struct mq_options *o, struct mq_error *e, int argc, const char **argv)
{
	memset(e, 0, sizeof(*e));
	return mq_options_parse(argc, (char **)argv, o, e);
}

static void test_options_defaults_and_values(void **state)
{
	(void)state;
	struct mq_options o;
	struct mq_error e;
	const char *a[] = { "mq-dist", "m.safetensors" };
	assert_int_equal(parse(&o, &e, 2, a), 0);
	assert_int_equal(o.command, MQ_CMD_RUN);
	assert_int_equal(o.scheme, MQ_SCHEME_INT8);
	assert_int_equal(o.per_tensor, 0);
	assert_int_equal(o.memory_budget, 256u << 20);
	char *out = mq_options_default_output(&o, 0);
	assert_string_equal(out, "m.int8.safetensors");
	free(out);
	mq_options_release(&o);

	const char *b[] = { "mq-dist", "--scheme=int8-asym", "-g", "tensor", "-o", "x.safetensors", "--include", "a.*",
			    "-x", "b", "--exclude=c", "--force", "--dry-run", "-m", "16", "dir/model.safetensors.index.json" };
	assert_int_equal(parse(&o, &e, 16, b), 0);
	assert_int_equal(o.scheme, MQ_SCHEME_INT8_ASYM);
	assert_int_equal(o.per_tensor, 1);
	assert_string_equal(o.output, "x.safetensors");
	assert_int_equal(o.n_includes, 1);
	assert_int_equal(o.n_excludes, 2);
	assert_string_equal(o.excludes[1], "c");
	assert_true(o.force && o.dry_run);
	assert_int_equal(o.memory_budget, 16u << 20);
	out = mq_options_default_output(&o, 0);
	assert_string_equal(out, "dir/model.int8-asym-per-tensor.safetensors");
	free(out);
	mq_options_release(&o);

	const char *c[] = { "mq-dist", "inspect", "f.safetensors" };
	assert_int_equal(parse(&o, &e, 3, c), 0);
	assert_int_equal(o.command, MQ_CMD_INSPECT);
	mq_options_release(&o);
}

static void expect_usage(int argc, const char **argv, const char *needle)
{
	struct mq_options o;
	struct mq_error e;
	assert_int_equal(parse(&o, &e, argc, argv), MQ_ERR_USAGE);
	if (!strstr(e.msg, needle))
		fail_msg("message '%s' lacks '%s'", e.msg, needle);
	mq_options_release(&o);
}

static void test_options_errors_name_the_option(void **state)
{
	(void)state;
	expect_usage(1, (const char *[]){ "mq-dist" }, "no model given");
	expect_usage(3, (const char *[]){ "mq-dist", "--scheme", "int3" }, "--scheme 'int3'");
	/* uint8 wrote U8 codes and zero points; the name is refused, pointing to int8-asym */
	expect_usage(3, (const char *[]){ "mq-dist", "--scheme=uint8", "m" }, "use int8-asym");
	expect_usage(5, (const char *[]){ "mq-dist", "--calib", "c.h5", "--act=uint8", "m" }, "use int8-asym");
	expect_usage(3, (const char *[]){ "mq-dist", "--granularity=row", "m" }, "--granularity 'row'");
	expect_usage(3, (const char *[]){ "mq-dist", "--include", "(" }, "invalid regular expression");
	expect_usage(3, (const char *[]){ "mq-dist", "--bogus", "m" }, "unknown option '--bogus'");
	expect_usage(2, (const char *[]){ "mq-dist", "-o" }, "needs a value");
	expect_usage(3, (const char *[]){ "mq-dist", "a", "b" }, "more than one model");
	expect_usage(4, (const char *[]){ "mq-dist", "-m", "2", "m" }, "--memory-budget '2'");
	expect_usage(4, (const char *[]){ "mq-dist", "--scheme=fp16", "--granularity=tensor", "m" }, "does not apply");
	expect_usage(3, (const char *[]){ "mq-dist", "--force=1", "m" }, "takes no value");
}

/* Mixed precision's options: the budget, the candidates' names, the gates, and what goes with what. */
static void test_options_mixed_precision(void **state)
{
	(void)state;
	struct mq_options o;
	struct mq_error e;
	const char *a[] = { "mq-dist", "--target-bpw", "4.5", "m.safetensors" };
	assert_int_equal(parse(&o, &e, 4, a), 0);
	assert_true(mq_options_mixed(&o));
	assert_true(o.target_bpw == 4.5 && o.target_size == 0);
	assert_int_equal(o.n_candidates, 3); /* the default list */
	char name[48];
	const char *want[] = { "int4-g128", "int8", "bf16" };
	for (int k = 0; k < 3; k++) {
		mq_candidate_name(&o.candidates[k], name, sizeof(name));
		assert_string_equal(name, want[k]);
	}
	assert_true(o.min_sqnr != o.min_sqnr && o.fail_below != o.fail_below); /* NAN: not given */
	char *out = mq_options_default_output(&o, 0);
	assert_string_equal(out, "m.mixed.safetensors");
	free(out);
	struct mq_buf j = MQ_BUF_INIT;
	mq_options_json(&o, &j);
	assert_non_null(strstr(j.data, "\"scheme\":\"mixed\""));
	assert_non_null(strstr(j.data, "\"target_bpw\":4.5,\"candidates\":[\"int4-g128\",\"int8\",\"bf16\"]"));
	mq_buf_release(&j);
	mq_options_release(&o);

	const char *b[] = { "mq-dist", "--target-size", "2GiB", "--candidates", "int4-g64,w8a16-channel,int4,fp8",
			    "--min-sqnr", "12.5", "--fail-below=8", "m.safetensors" };
	assert_int_equal(parse(&o, &e, 9, b), 0);
	assert_true(o.target_size == 2ull << 30);
	assert_int_equal(o.n_candidates, 4);
	assert_int_equal(o.candidates[0].group_size, 64);
	assert_int_equal(o.candidates[1].group_size, MQ_GROUP_CHANNEL);
	assert_int_equal(o.candidates[2].group_size, 128); /* int4 alone is int4-g128, as --scheme int4 */
	assert_int_equal(o.candidates[3].scheme, MQ_SCHEME_FP8);
	assert_true(o.min_sqnr == 12.5 && o.fail_below == 8);
	mq_options_release(&o);

	const char *cal[] = { "mq-dist", "--target-bpw", "5", "--calib", "c.h5", "m.safetensors" }; /* output space */
	assert_int_equal(parse(&o, &e, 6, cal), 0);
	assert_true(mq_options_mixed(&o) && o.calib && strcmp(o.calib, "c.h5") == 0);
	mq_options_release(&o);

	const char *c[] = { "mq-dist", "-s", "int4", "--fail-below", "10", "m.safetensors" }; /* a uniform run's gate */
	assert_int_equal(parse(&o, &e, 6, c), 0);
	assert_false(mq_options_mixed(&o));
	assert_true(o.fail_below == 10);
	mq_options_release(&o);

	const char *d1[] = { "mq-dist", "--target-bpw", "0", "m" };
	expect_usage(4, d1, "--target-bpw '0'");
	const char *d2[] = { "mq-dist", "--target-bpw", "4", "--target-size", "1GB", "m" };
	expect_usage(6, d2, "one of --target-bpw and --target-size");
	const char *d3[] = { "mq-dist", "--candidates", "int8", "m" };
	expect_usage(4, d3, "--candidates needs a budget");
	const char *d4[] = { "mq-dist", "--target-bpw", "4", "--candidates", "int8-g64", "m" };
	expect_usage(6, d4, "'int8-g64' is not a scheme");
	const char *d5[] = { "mq-dist", "--target-bpw", "4", "--candidates", "int8,int4,int8", "m" };
	expect_usage(6, d5, "'int8' is given twice");
	const char *d6[] = { "mq-dist", "--target-bpw", "4", "-s", "int8", "m" };
	expect_usage(6, d6, "--scheme gives every weight one scheme");
	const char *d7[] = { "mq-dist", "--target-bpw", "4", "--group-size", "64", "m" };
	expect_usage(6, d7, "each candidate names its grouping");
	const char *d8[] = { "mq-dist", "--min-sqnr", "12", "m" };
	expect_usage(4, d8, "--min-sqnr chooses among candidates");
	const char *d9[] = { "mq-dist", "--target-size", "5XB", "m" };
	expect_usage(4, d9, "--target-size '5XB'");
	const char *d10[] = { "mq-dist", "--target-bpw", "4", "--method", "gptq", "--calib", "c.h5", "m" };
	expect_usage(8, d10, "--method gptq does not go with --target-bpw");
	const char *d12[] = { "mq-dist", "--target-bpw", "4", "--calib", "c.h5", "--calib-missing", "weights-only", "m" };
	expect_usage(8, d12, "--calib-missing=weights-only does not go with a target");
	const char *d11[] = { "mq-dist", "--fail-below", "x", "m" };
	expect_usage(4, d11, "--fail-below 'x'");
}

static void test_options_output_name_picks_the_format(void **state)
{
	(void)state;
	assert_ptr_equal(mq_writer_select("o/m.int8.safetensors"), &mq_writer_safetensors);
	assert_ptr_equal(mq_writer_select("m.pt"), &mq_writer_torch);
	assert_ptr_equal(mq_writer_select("d.x/m.pth"), &mq_writer_torch);
	assert_ptr_equal(mq_writer_select("hf/pytorch_model.bin"), &mq_writer_torch);
	assert_ptr_equal(mq_writer_select("m.gguf"), NULL);
	assert_ptr_equal(mq_writer_select("m.PT"), NULL);            /* case matters */
	assert_ptr_equal(mq_writer_select("m.Safetensors"), NULL);
	assert_ptr_equal(mq_writer_select("model"), &mq_writer_hf);  /* no extension: a model folder */
	assert_ptr_equal(mq_writer_select("out/"), &mq_writer_hf);
	assert_ptr_equal(mq_writer_select("d.pt/model"), &mq_writer_hf); /* a dot in the folder only */
	assert_ptr_equal(mq_writer_select(".pt"), &mq_writer_hf);    /* a hidden name, no extension */
	assert_ptr_equal(mq_writer_select("m.pt.tmp"), NULL);
	/* every default name is one mq-dist writes */
	struct mq_options o;
	struct mq_error e;
	const char *a[] = { "mq-dist", "-g", "tensor", "hf/pytorch_model.bin" };
	assert_int_equal(parse(&o, &e, 4, a), 0);
	char *out = mq_options_default_output(&o, 1);
	assert_string_equal(out, "hf/pytorch_model.int8-per-tensor.pt");
	assert_ptr_equal(mq_writer_select(out), &mq_writer_torch);
	free(out);
	mq_options_release(&o);
	const char *b[] = { "mq-dist", "-o", "hf/pytorch_model.bin", "m.safetensors" };
	assert_int_equal(parse(&o, &e, 4, b), 0);
	assert_string_equal(o.output, "hf/pytorch_model.bin");
	mq_options_release(&o);
}

static void test_options_unwritable_output_names_refused(void **state)
{
	(void)state;
	expect_usage(4, (const char *[]){ "mq-dist", "-o", "m.gguf", "m" }, "--output 'm.gguf': mq-dist does not write '.gguf'");
	expect_usage(4, (const char *[]){ "mq-dist", "-o", "m.gguf", "m" }, ".safetensors, or in .pt, .pth or .bin");
	expect_usage(4, (const char *[]){ "mq-dist", "-o", "m.PT", "m" }, "case-sensitive: '.PT' is not '.pt'");
	expect_usage(3, (const char *[]){ "mq-dist", "--output=out/m.gguf", "m" }, "or give a folder name");
	expect_usage(4, (const char *[]){ "mq-dist", "-o", "m.Safetensors", "m" }, "'.Safetensors' is not '.safetensors'");
}

static void test_options_dash_n_explained(void **state)
{
	(void)state;
	expect_usage(4, (const char *[]){ "mq-dist", "-n", "3", "m" }, "-n is not an mq-dist option: --dry-run prints the plan");
	expect_usage(4, (const char *[]){ "mq-dist", "-n", "3", "m" }, "mpirun -n");
	expect_usage(3, (const char *[]){ "mq-dist", "-n3", "m" }, "-n3 is not an mq-dist option");
	struct mq_options o;
	struct mq_error e;
	const char *a[] = { "mq-dist", "--dry-run", "m" };
	assert_int_equal(parse(&o, &e, 3, a), 0);
	assert_true(o.dry_run);
	mq_options_release(&o);
}

static void test_options_inspect_takes_its_own_options(void **state)
{
	(void)state;
	struct mq_options o;
	struct mq_error e;
	const char *a[] = { "mq-dist", "inspect", "--json", "m.safetensors" };
	assert_int_equal(parse(&o, &e, 4, a), 0);
	assert_true(o.json && !o.verbose);
	mq_options_release(&o);
	const char *b[] = { "mq-dist", "inspect", "c.h5", "--observer", "mse", "--act", "int8", "--calib-samples", "9" };
	assert_int_equal(parse(&o, &e, 9, b), 0);
	assert_true(o.calib_options);
	assert_int_equal(o.calib_samples, 9);
	mq_options_release(&o);
	expect_usage(5, (const char *[]){ "mq-dist", "inspect", "-s", "uint8", "m" }, "inspect does not take --scheme");
	expect_usage(5, (const char *[]){ "mq-dist", "inspect", "-o", "x.pt", "m" }, "inspect does not take --output");
	expect_usage(4, (const char *[]){ "mq-dist", "inspect", "--calib-missing=error", "m" }, "inspect does not take --calib-missing");
	expect_usage(5, (const char *[]){ "mq-dist", "inspect", "--job", "j.json", "m" }, "inspect does not take --job");
	expect_usage(5, (const char *[]){ "mq-dist", "inspect", "--verbose", "--json", "m" }, "give one of --verbose, --json and --plot");
	expect_usage(5, (const char *[]){ "mq-dist", "inspect", "--plot", "--json", "m" }, "give one of");
	expect_usage(5, (const char *[]){ "mq-dist", "inspect", "--act", "none", "c.h5" }, "inspect --act none");
	expect_usage(2, (const char *[]){ "mq-dist", "inspect" }, "inspect: no file given");
	expect_usage(3, (const char *[]){ "mq-dist", "--verbose", "m" }, "--verbose applies to inspect only");
	expect_usage(3, (const char *[]){ "mq-dist", "--json", "m" }, "--json applies to inspect only");
}

/* Every line of --help fits 80 columns, and the lines the issue found wanting say what the code does. */
static void test_options_help_fits_and_says_it_all(void **state)
{
	(void)state;
	char *text = NULL;
	size_t len = 0;
	FILE *fp = open_memstream(&text, &len);
	assert_non_null(fp);
	mq_options_print_help(fp);
	assert_int_equal(fclose(fp), 0);
	for (const char *line = text; *line;) {
		size_t n = strcspn(line, "\n");
		if (n >= 80)
			fail_msg("help line of %zu columns: '%.*s'", n, (int)n, line);
		line += n + (line[n] == '\n');
	}
	/* the words, whatever the wrapping */
	char *flat = strdup(text);
	size_t k = 0;
	for (size_t i = 0; flat[i]; i++) {
		if (flat[i] == '\n' || flat[i] == ' ') {
			if (k && flat[k - 1] != ' ')
				flat[k++] = ' ';
		} else {
			flat[k++] = flat[i];
		}
	}
	flat[k] = '\0';
	static const char *const needles[] = {
		"mq-dist inspect [--verbose | --json | --plot] MODEL",
		"mq-dist inspect [--observer NAME] [--act TYPE] [--calib-samples N] FILE.h5",
		"weights-only (quantize its weights without activation scales)",
		"STEM.SCHEME.safetensors, STEM being the input's name without .safetensors",
		"a torch input gives STEM.SCHEME.pt (.pth for a .pth input)",
		"NAME.pt, NAME.pth or NAME.bin",
		"--dry-run print the plan",
		"-n belongs to mpirun",
	};
	for (size_t i = 0; i < sizeof(needles) / sizeof(needles[0]); i++)
		if (!strstr(flat, needles[i]))
			fail_msg("--help lacks '%s'", needles[i]);
	assert_null(strstr(flat, "-n, --dry-run"));
	free(flat);
	free(text);
}

/* CPU seconds of one parse of "--include PATTERN m". */
static double include_parse(const char *pattern, int *rc, char *msg, size_t cap)
{
	struct mq_options o;
	struct mq_error e;
	const char *a[] = { "mq-dist", "--include", pattern, "m" };
	clock_t t0 = clock();
	*rc = parse(&o, &e, 4, a);
	double s = (double)(clock() - t0) / CLOCKS_PER_SEC;
	snprintf(msg, cap, "%s", e.msg);
	mq_options_release(&o);
	return s;
}

static char *repeat(const char *head, const char *unit, int n, const char *tail)
{
	size_t k = strlen(head), u = strlen(unit);
	char *p = malloc(k + u * (size_t)n + strlen(tail) + 1);
	memcpy(p, head, k);
	for (int i = 0; i < n; i++, k += u)
		memcpy(p + k, unit, u);
	strcpy(p + k, tail);
	return p;
}

/* Patterns that make glibc's regcomp take gigabytes or seconds are refused at once, with what to change. */
static void test_options_exploding_regex_refused_fast(void **state)
{
	(void)state;
	char *open = repeat("", "(", 12, "a");
	char *nested = repeat(open, ")+", 12, ""); /* 12 nested repeated groups: 4096 copies */
	free(open);
	struct {
		char *re;
		const char *needle;
	} bad[] = {
		{ repeat("a", "+", 24, ""), "stacked quantifiers ('+' right after '+')" },  /* the issue's pattern */
		{ strdup("a**"), "stacked quantifiers ('*' right after '*')" },
		{ strdup("x+{2}"), "stacked quantifiers ('{2}' right after '+')" },
		{ strdup("a{1,255}{1,255}"), "stacked quantifiers" },
		{ strdup("a{1,32767}"), "the repetition bound 32767 is more than the limit of 255" },
		{ strdup("a{256}"), "bound 256" },
		{ strdup("a{,32767}"), "bound 32767" },  /* glibc reads {,m} as {0,m} */
		{ strdup("a{999999999999,}"), "more than the limit of 255" },
		{ nested, "more than 2048 copies" },
		{ strdup("(a{1,64}){1,64}"), "more than 2048 copies" },
		{ strdup("(((a?){0,16}){0,16}){0,16}"), "more than 2048 copies" },
		{ strdup("(a)\\1"), "back-references ('\\1')" },
		{ repeat("", "a", MQ_REGEX_MAX_LEN + 1, ""), "more than the limit of 1024" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int rc;
		char msg[MQ_ERROR_MAX];
		double s = include_parse(bad[i].re, &rc, msg, sizeof(msg));
		if (rc != MQ_ERR_USAGE || !strstr(msg, bad[i].needle) || !strstr(msg, "--include"))
			fail_msg("'%.60s': rc %d, message '%s' lacks '%s'", bad[i].re, rc, msg, bad[i].needle);
		if (s > 0.2) /* compiled, these take from 0.1 s to many seconds of CPU */
			fail_msg("'%.60s' took %.3f s of CPU to refuse", bad[i].re, s);
		free(bad[i].re);
	}
}

static void test_options_ordinary_regex_accepted(void **state)
{
	(void)state;
	char *at_copies = repeat("", "a", MQ_REGEX_MAX_COPIES / 2, "");
	char *at_len = repeat("", "b", MQ_REGEX_MAX_LEN, "");
	char *open = repeat("", "(", 11, "a"), *nested = repeat(open, ")+", 11, ""); /* 2048 copies */
	const char *good[] = {
		"embed", "(^|\\.)lm_head\\.", "(^|\\.)(mlp\\.gate|router)\\.", "layers\\.[0-9]+\\.mlp",
		"^model\\.layers\\.(1[0-9]|2[0-3])\\.", "(q|k|v)_proj", "[[:digit:]]{2,3}", "[]a]+", "[^]x]*y",
		"a{2}", "x{0,255}", "y{,3}", "z{4,}", "(a+)+b", "(layers\\.[0-9]+\\.)+", "\\(", "a|b*|c?", "(a{1,64}){1,32}",
		"[[:alpha:]_]+\\.weight$", at_copies, at_len, nested,
	};
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		int rc;
		char msg[MQ_ERROR_MAX];
		include_parse(good[i], &rc, msg, sizeof(msg));
		if (rc)
			fail_msg("'%.60s' refused: %s", good[i], msg);
	}
	for (int i = 0; i < mq_n_default_excludes; i++) {
		int rc;
		char msg[MQ_ERROR_MAX];
		include_parse(mq_default_excludes[i], &rc, msg, sizeof(msg));
		assert_int_equal(rc, 0);
	}
	free(at_copies);
	free(at_len);
	free(open);
	free(nested);
	/* a bad pattern is still regcomp's to judge */
	expect_usage(3, (const char *[]){ "mq-dist", "--exclude=[a", "m" }, "invalid regular expression");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_options_defaults_and_values),
		cmocka_unit_test(test_options_errors_name_the_option),
		cmocka_unit_test(test_options_mixed_precision),
		cmocka_unit_test(test_options_output_name_picks_the_format),
		cmocka_unit_test(test_options_unwritable_output_names_refused),
		cmocka_unit_test(test_options_dash_n_explained),
		cmocka_unit_test(test_options_inspect_takes_its_own_options),
		cmocka_unit_test(test_options_help_fits_and_says_it_all),
		cmocka_unit_test(test_options_exploding_regex_refused_fast),
		cmocka_unit_test(test_options_ordinary_regex_accepted),
	};
	return cmocka_run_group_tests_name("options", tests, NULL, NULL);
}
