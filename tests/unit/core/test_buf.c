/* Escaping of file-supplied text for messages: control characters, C1 controls, invalid UTF-8. */
#include "test_util.h"

#include <stdio.h>

#include "buf.h"
#include "status.h"

static void expect_escaped(const char *in, size_t n, const char *want)
{
	struct mq_buf b = MQ_BUF_INIT;
	mq_buf_add_escaped(&b, in, n);
	assert_true(mq_buf_ok(&b));
	assert_string_equal(b.data, want);
	mq_buf_release(&b);
}

/* A literal's bytes, embedded NULs included. */
#define EXPECT(in, want) expect_escaped(in, sizeof(in) - 1, want)

static void test_buf_escaped_controls_become_escapes(void **state)
{
	(void)state;
	EXPECT("plain.weight", "plain.weight");
	EXPECT("", "");
	EXPECT("a\x1b[31m\nb\tc\rd", "a\\x1b[31m\\nb\\tc\\rd");
	EXPECT("x\x7f\x01", "x\\x7f\\x01");
	EXPECT("nul\0after", "nul\\x00after");
	EXPECT("back\\slash 'quoted'", "back\\slash 'quoted'");
}

static void test_buf_escaped_utf8_kept_invalid_escaped(void **state)
{
	(void)state;
	EXPECT("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
	EXPECT("\xc2\x85\xc2\x9b", "\\xc2\\x85\\xc2\\x9b");  /* C1 controls (NEL, CSI) */
	EXPECT("\xc2\xa0", "\xc2\xa0");                     /* U+00A0 is not a control */
	EXPECT("\xc0\xaf", "\\xc0\\xaf");                   /* overlong '/' */
	EXPECT("\xed\xa0\x80", "\\xed\\xa0\\x80");          /* a surrogate */
	EXPECT("\xf4\x90\x80\x80", "\\xf4\\x90\\x80\\x80"); /* past U+10FFFF */
	EXPECT("cut\xe2\x82", "cut\\xe2\\x82");             /* truncated at the end */
	EXPECT("\xff\xfe", "\\xff\\xfe");
}

static void test_buf_print_keeps_only_the_format_newline(void **state)
{
	(void)state;
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	assert_non_null(f);
	mq_print(f, "[%d] %s done\n", 1, "evil\n\x1b[2J.weight");
	mq_print(f, "%s", "ends in a newline\n");
	fclose(f);
	assert_string_equal(text, "[1] evil\\n\\x1b[2J.weight done\nends in a newline\\n");
	free(text);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_buf_escaped_controls_become_escapes),
		cmocka_unit_test(test_buf_escaped_utf8_kept_invalid_escaped),
		cmocka_unit_test(test_buf_print_keeps_only_the_format_newline),
	};
	return cmocka_run_group_tests_name("buf", tests, NULL, NULL);
}
