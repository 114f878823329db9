/* Job files: option priority, paths, and errors that name the entry and the key. */
#include "test_util.h"

#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"

#include "job.h"
#include "options.h"

static int parse(const char *text, int argc, char **argv, struct mq_job *job, struct mq_error *e)
{
	memset(e, 0, sizeof(*e));
	return mq_job_parse("jobs/zoo.json", text, strlen(text), argc, argv, job, e);
}

/* The options one model ends up with. */
static void model_options(const struct mq_job *job, int i, struct mq_options *o)
{
	struct mq_error e = { 0 };
	assert_int_equal(mq_options_parse(job->models[i].argc, job->models[i].argv, o, &e), 0);
}

static void test_job_priority_is_cli_then_model_then_defaults(void **state)
{
	(void)state;
	const char *text = "{\"defaults\": {\"scheme\": \"int8-asym\", \"exclude\": [\"a\", \"b\"], \"memory_budget\": 64,"
			   " \"no-checksum\": true},"
			   " \"models\": ["
			   "  {\"name\": \"one\", \"input\": \"m/one.safetensors\", \"options\": {\"exclude\": \"c\", \"no-checksum\": false}},"
			   "  {\"input\": \"/abs/two.pt\", \"output\": \"out/two.pt\", \"options\": {\"granularity\": \"tensor\"}}"
			   " ]}";
	char *argv[] = { "mq-dist", "--job", "jobs/zoo.json", "-g", "channel", "--groups", "2", NULL };
	struct mq_job job;
	struct mq_error e;
	assert_int_equal(parse(text, 7, argv, &job, &e), 0);
	assert_int_equal(job.n_models, 2);
	struct mq_options o;
	model_options(&job, 0, &o);
	assert_int_equal(o.scheme, MQ_SCHEME_INT8_ASYM);        /* from the defaults */
	assert_int_equal(o.n_excludes, 1);                  /* the model's list replaces the defaults' */
	assert_string_equal(o.excludes[0], "c");
	assert_int_equal(o.no_checksum, 0);                 /* the model turns a default flag off */
	assert_int_equal(o.memory_budget, 64ull << 20);     /* '_' stands for '-' */
	assert_string_equal(o.input, "jobs/m/one.safetensors"); /* relative to the job file */
	assert_string_equal(job.models[0].name, "one");
	mq_options_release(&o);
	model_options(&job, 1, &o);
	assert_int_equal(o.per_tensor, 0);                  /* the command line wins over the model */
	assert_int_equal(o.no_checksum, 1);
	assert_int_equal(o.n_excludes, 2);
	assert_string_equal(o.output, "jobs/out/two.pt");
	assert_string_equal(o.input, "/abs/two.pt");
	assert_string_equal(job.models[1].name, "two");     /* the input's stem */
	mq_options_release(&o);
	assert_string_equal(job.report, "jobs/zoo-report");
	mq_job_release(&job);
}

static void expect_bad(const char *text, const char *needle1, const char *needle2)
{
	char *argv[] = { "mq-dist", "--job", "jobs/zoo.json", NULL };
	struct mq_job job;
	struct mq_error e;
	assert_int_equal(parse(text, 3, argv, &job, &e), MQ_ERR_USAGE);
	if (!strstr(e.msg, needle1) || !strstr(e.msg, needle2) || !strstr(e.msg, "jobs/zoo.json"))
		fail_msg("message '%s' lacks '%s' or '%s'", e.msg, needle1, needle2);
}

static void test_job_errors_name_the_entry_and_the_key(void **state)
{
	(void)state;
	expect_bad("{\"models\": [{\"input\": \"x\", \"optons\": {}}]}", "models[0]", "optons");
	expect_bad("{\"defaults\": {\"schem\": \"int8\"}, \"models\": [{\"input\": \"x\"}]}", "defaults", "schem");
	expect_bad("{\"models\": [{\"input\": \"x\"}, {\"name\": \"b\", \"input\": \"y\", \"options\": {\"scheme\": \"int3\"}}]}",
		   "models[1] ('b')", "int4");
	/* the old unsigned scheme is refused in job files too, pointing to its signed name */
	expect_bad("{\"defaults\": {\"scheme\": \"uint8\"}, \"models\": [{\"input\": \"x\"}]}", "models[0]", "use int8-asym");
	expect_bad("{\"models\": [{\"input\": \"x\", \"options\": {\"force\": \"yes\"}}]}", "force", "true or false");
	expect_bad("{\"models\": [{\"input\": \"x\", \"options\": {\"job\": \"y.json\"}}]}", "job", "cannot be set");
	expect_bad("{\"models\": [{\"input\": \"a/m.safetensors\"}, {\"input\": \"b/m.safetensors\"}]}", "both named", "'m'");
	expect_bad("{\"models\": [{\"name\": \"a\", \"input\": \"x\", \"output\": \"o.pt\"},"
		   " {\"name\": \"b\", \"input\": \"y\", \"output\": \"o.pt\"}]}", "same output", "o.pt");
	expect_bad("{\"models\": []}", "models", "non-empty");
	expect_bad("{\"modles\": []}", "top level", "modles");
	expect_bad("[1, 2]", "not a valid JSON object", "zoo");
	expect_bad("{\"models\": [{\"input\": \"x\", \"options\": {\"observer\": \"mse\"}}]}", "models[0]", "--calib");
	expect_bad("{\"models\": [{\"input\": \"x\", \"calib\": \"c.h5\", \"options\": {\"calib\": \"d.h5\"}}]}", "models[0]",
		   "given twice");
}

/* Two names for one output file, and outputs that are inputs: refused, naming both entries. */
static void test_job_outputs_compared_as_files(void **state)
{
	(void)state;
	static const char *const same[] = { "o/./t.safetensors", "o//t.safetensors", "o/../o/t.safetensors",
					    "o/x/../t.safetensors", "./o/t.safetensors" };
	for (size_t i = 0; i < sizeof(same) / sizeof(same[0]); i++) {
		char text[512];
		snprintf(text, sizeof(text), "{\"models\": [{\"input\": \"a.safetensors\", \"output\": \"o/t.safetensors\"},"
			 " {\"input\": \"b.safetensors\", \"output\": \"%s\"}]}", same[i]);
		expect_bad(text, "models[0] ('a') and models[1] ('b') write the same output", same[i]);
	}
	expect_bad("{\"models\": [{\"input\": \"a.safetensors\", \"output\": \"o/t.safetensors\"},"
		   " {\"input\": \"o/./t.safetensors\", \"output\": \"o/u.safetensors\"}]}",
		   "models[1] ('t') reads 'jobs/o/./t.safetensors', which models[0] ('a') writes", "own outputs");
	expect_bad("{\"models\": [{\"input\": \"b.safetensors\"}, {\"input\": \"x.pt\", \"output\": \"./x.pt\"}]}",
		   "models[1] ('x'): its output 'jobs/./x.pt' is its own input", "models[1]");
	/* the default output of one model is the input of the next */
	expect_bad("{\"models\": [{\"input\": \"a.safetensors\"}, {\"input\": \"a.int8.safetensors\", \"output\": \"z.pt\"}]}",
		   "models[1] ('a.int8') reads", "which models[0] ('a') writes");
	/* the command line's --force changes nothing */
	char *argv[] = { "mq-dist", "--job", "jobs/zoo.json", "--force", NULL };
	struct mq_job job;
	struct mq_error e;
	const char *text = "{\"models\": [{\"input\": \"a.safetensors\", \"output\": \"o/t.safetensors\"},"
			   " {\"input\": \"o/t.safetensors\", \"output\": \"o/u.safetensors\"}]}";
	assert_int_equal(parse(text, 4, argv, &job, &e), MQ_ERR_USAGE);
	assert_non_null(strstr(e.msg, "which models[0] ('a') writes"));
	/* distinct outputs in one folder are fine */
	text = "{\"models\": [{\"input\": \"a.safetensors\", \"output\": \"o/t.safetensors\"},"
	       " {\"input\": \"b.safetensors\", \"output\": \"o/./u.safetensors\"}]}";
	assert_int_equal(parse(text, 3, argv, &job, &e), 0);
	mq_job_release(&job);
}

/* A symbolic link to a folder names the same files as the folder. */
static void test_job_outputs_through_a_linked_folder(void **state)
{
	(void)state;
	char dir[512], real[600], link[600], jobpath[600];
	const char *tmp = getenv("TMPDIR");
	snprintf(dir, sizeof(dir), "%s/mq-test-job.XXXXXX", tmp && *tmp ? tmp : "/tmp");
	assert_non_null(mkdtemp(dir));
	snprintf(real, sizeof(real), "%s/real", dir);
	snprintf(link, sizeof(link), "%s/link", dir);
	snprintf(jobpath, sizeof(jobpath), "%s/zoo.json", dir);
	assert_int_equal(mkdir(real, 0700), 0);
	assert_int_equal(symlink("real", link), 0);
	const char *text = "{\"models\": [{\"input\": \"a.safetensors\", \"output\": \"real/t.safetensors\"},"
			   " {\"input\": \"b.safetensors\", \"output\": \"link/t.safetensors\"}]}";
	char *argv[] = { "mq-dist", "--job", jobpath, NULL };
	struct mq_job job;
	struct mq_error e = { 0 };
	assert_int_equal(mq_job_parse(jobpath, text, strlen(text), 3, argv, &job, &e), MQ_ERR_USAGE);
	if (!strstr(e.msg, "models[0] ('a') and models[1] ('b') write the same output") || !strstr(e.msg, "link/t.safetensors"))
		fail_msg("message: %s", e.msg);
	text = "{\"models\": [{\"input\": \"a.safetensors\", \"output\": \"real/t.safetensors\"},"
	       " {\"input\": \"link/../real/t.safetensors\", \"output\": \"u.pt\"}]}";
	memset(&e, 0, sizeof(e));
	assert_int_equal(mq_job_parse(jobpath, text, strlen(text), 3, argv, &job, &e), MQ_ERR_USAGE);
	if (!strstr(e.msg, "which models[0] ('a') writes"))
		fail_msg("message: %s", e.msg);
	unlink(link);
	rmdir(real);
	rmdir(dir);
}

/* \u0000 in any string (value or key) is refused, naming the entry and the key; an escaped backslash is not one. */
static void test_job_nul_in_strings_refused(void **state)
{
	(void)state;
	expect_bad("{\"models\": [{\"name\": \"nul\", \"input\": \"a.safetensors\", \"output\": \"o/nul\\u0000.pt\"}]}",
		   "models[0] ('nul'): the value of 'output' holds \\u0000", "remove it");
	expect_bad("{\"models\": [{\"input\": \"a.safetensors\"}, {\"input\": \"b.safetensors\","
		   " \"options\": {\"include\": [\"q\", \"k\\u0000x\"]}}]}",
		   "models[1] ('b'): the value of 'options.include[1]'", "NUL");
	expect_bad("{\"models\": [{\"input\": \"a\\u0000.safetensors\"}]}", "models[0] ('a')", "'input' holds");
	expect_bad("{\"defaults\": {\"exclude\": \"x\\u0000\"}, \"models\": [{\"input\": \"a.safetensors\"}]}",
		   "top level: the value of 'defaults.exclude'", "NUL");
	expect_bad("{\"models\": [{\"input\": \"a.safetensors\", \"out\\u0000put\": \"x.pt\"}]}",
		   "models[0] ('a'): the key at 'out'", "NUL");
	expect_bad("{\"report\": \"r\\u0000\", \"models\": [{\"input\": \"a.safetensors\"}]}", "'report'", "NUL");
	char *argv[] = { "mq-dist", "--job", "jobs/zoo.json", NULL };
	struct mq_job job;
	struct mq_error e;
	const char *text = "{\"models\": [{\"input\": \"a\\\\u0000.safetensors\", \"output\": \"o/\\u0041.pt\"}]}";
	assert_int_equal(parse(text, 3, argv, &job, &e), 0);
	assert_string_equal(job.models[0].input, "jobs/a\\u0000.safetensors");
	assert_string_equal(job.models[0].output, "jobs/o/A.pt");
	mq_job_release(&job);
}

/* Many models: the cross-model checks still find a clash between the first and the last entry. */
static void test_job_many_models(void **state)
{
	(void)state;
	enum { N = 5000 };
	struct mq_buf b = MQ_BUF_INIT;
	mq_buf_adds(&b, "{\"models\": [");
	for (int i = 0; i < N; i++)
		mq_buf_addf(&b, "%s{\"input\": \"in/m%d.safetensors\", \"output\": \"out/m%d.pt\"}", i ? ", " : "", i,
			    i == N - 1 ? 1 : i);
	mq_buf_adds(&b, "]}");
	assert_true(mq_buf_ok(&b));
	char *argv[] = { "mq-dist", "--job", "jobs/zoo.json", NULL };
	struct mq_job job;
	struct mq_error e;
	assert_int_equal(parse(b.data, 3, argv, &job, &e), MQ_ERR_USAGE);
	if (!strstr(e.msg, "models[1] ('m1') and models[4999] ('m4999') write the same output 'jobs/out/m1.pt'"))
		fail_msg("message: %s", e.msg);
	mq_buf_release(&b);
}

/*
 * Found by fuzz_job: the message for invalid JSON quoted the text after the
 * error with %.40s, reading past the end of a text that ends without a NUL,
 * as it does on every rank but 0.
 */
static void test_job_invalid_json_without_a_nul_is_quoted_within_its_length(void **state)
{
	(void)state;
	static const char *const texts[] = { "", "{", "{\"models\": [", "{\"models\": [{\"input\": \"x\"}]",
					     "nul" };
	char *argv[] = { "mq-dist", "--job", "jobs/zoo.json", NULL };
	for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
		size_t n = strlen(texts[i]);
		char *text = malloc(n ? n : 1); /* exactly n bytes, no NUL */
		memcpy(text, texts[i], n);
		struct mq_job job;
		struct mq_error e = { 0 };
		assert_int_equal(mq_job_parse("jobs/zoo.json", text, n, 3, argv, &job, &e), MQ_ERR_USAGE);
		if (!strstr(e.msg, "not a valid JSON object") || !strstr(e.msg, "jobs/zoo.json"))
			fail_msg("message '%s' for '%s'", e.msg, texts[i]);
		free(text);
	}
	/* and nothing but white space after the object */
	expect_bad("{\"models\": [{\"input\": \"x\"}]} trailing", "text after the JSON object", "at byte 29");
	expect_bad("{\"models\": [{\"input\": \"x\"}]}{}", "text after the JSON object", "remove it");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_job_priority_is_cli_then_model_then_defaults),
		cmocka_unit_test(test_job_errors_name_the_entry_and_the_key),
		cmocka_unit_test(test_job_outputs_compared_as_files),
		cmocka_unit_test(test_job_outputs_through_a_linked_folder),
		cmocka_unit_test(test_job_nul_in_strings_refused),
		cmocka_unit_test(test_job_many_models),
		cmocka_unit_test(test_job_invalid_json_without_a_nul_is_quoted_within_its_length),
	};
	return cmocka_run_group_tests_name("job", tests, NULL, NULL);
}
