/* The shard index: limits on its size and on the tensors it maps. */
#include "manifest_util.h"

#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"
#include "manifest.h"

static char dir[64], index_path[128];

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "mq-test-manifest-%d", (int)getpid());
	snprintf(index_path, sizeof(index_path), "%s/model.safetensors.index.json", dir);
	return mkdir(dir, 0700);
}

static int teardown(void **state)
{
	(void)state;
	unlink(index_path);
	return rmdir(dir);
}

static void expect_bad(const char *needle)
{
	struct mq_manifest m;
	struct mq_error e = { 0 };
	assert_int_equal(mq_manifest_load(index_path, &m, &e), MQ_ERR_INPUT);
	mq_manifest_release(&m);
	if (!strstr(e.msg, needle) || !strstr(e.msg, index_path))
		fail_msg("message '%s' lacks '%s'", e.msg, needle);
}

/* A weight_map of more than MQ_MAX_TENSORS tensors is refused before any shard is opened. */
static void test_manifest_index_of_too_many_tensors_is_refused(void **state)
{
	(void)state;
	FILE *f = fopen(index_path, "w");
	assert_non_null(f);
	fputs("{\"metadata\": {}, \"weight_map\": {", f);
	for (int i = 0; i <= MQ_MAX_TENSORS; i++)
		fprintf(f, "%s\"%x\":\"m\"", i ? "," : "", i);
	fputs("}}", f);
	fclose(f);
	expect_bad("weight_map lists 524289 tensors");
}

/* An index beyond MQ_INDEX_MAX_BYTES is refused after reading at most that much. */
static void test_manifest_index_larger_than_the_limit_is_refused(void **state)
{
	(void)state;
	FILE *f = fopen(index_path, "w");
	assert_non_null(f);
	fputs("{\"weight_map\": {}, \"pad\": \"", f);
	fclose(f);
	assert_int_equal(truncate(index_path, (off_t)MQ_INDEX_MAX_BYTES + 1), 0); /* sparse */
	expect_bad("larger than 128 MiB");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_manifest_index_of_too_many_tensors_is_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_manifest_index_larger_than_the_limit_is_refused, setup, teardown),
	};
	return cmocka_run_group_tests_name("manifest", tests, NULL, NULL);
}
