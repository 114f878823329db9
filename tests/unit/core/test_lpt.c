/* The balancer: longest first to the least loaded bin, ties broken the same way from any input order. */
#include "test_util.h"

#include "lpt.h"

static void test_lpt_longest_first_to_least_loaded(void **state)
{
	(void)state;
	struct mq_lpt_item it[5];
	const uint64_t cost[5] = { 4, 7, 3, 6, 5 };
	for (int i = 0; i < 5; i++)
		it[i] = (struct mq_lpt_item){ cost[i], cost[i], NULL, 0, i, -1 };
	uint64_t load[2] = { 0, 0 };
	mq_lpt_assign(it, 5, 2, load);
	/* 7 -> 0, 6 -> 1, 5 -> 1 (6 < 7), 4 -> 0 (7 < 11), 3 -> 0 (11 = 11: the lower bin) */
	const int want_bin[5] = { 0, 0, 0, 1, 1 }; /* by index: costs 4, 7, 3, 6, 5 */
	for (int k = 0; k < 5; k++)
		assert_int_equal(it[k].bin, want_bin[it[k].index]);
	assert_int_equal(load[0], 14);
	assert_int_equal(load[1], 11);
	for (int k = 1; k < 5; k++)
		assert_true(it[k - 1].cost >= it[k].cost);
}

/* Equal costs: by name, then key, then index, so every permutation of the input gives the same bins. */
static void test_lpt_ties_do_not_depend_on_input_order(void **state)
{
	(void)state;
	const char *names[6] = { "b", "a", "b", "c", "a", NULL };
	const uint64_t keys[6] = { 1, 0, 0, 0, 1, 0 };
	int ref[6] = { 0 };
	for (int rot = 0; rot < 6; rot++) {
		struct mq_lpt_item it[6];
		for (int i = 0; i < 6; i++) {
			int j = (i + rot) % 6;
			it[i] = (struct mq_lpt_item){ 10, 10 + (uint64_t)j, names[j], keys[j], j, -1 };
		}
		uint64_t load[3] = { 0, 0, 0 };
		mq_lpt_assign(it, 6, 3, load);
		int bin_of[6];
		for (int k = 0; k < 6; k++)
			bin_of[it[k].index] = it[k].bin;
		if (rot == 0)
			memcpy(ref, bin_of, sizeof(ref));
		assert_memory_equal(ref, bin_of, sizeof(ref));
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_lpt_longest_first_to_least_loaded),
		cmocka_unit_test(test_lpt_ties_do_not_depend_on_input_order),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
