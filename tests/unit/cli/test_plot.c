/* The layer pictures: records read in depth order, bits per weight, tooltips, refusals, the same bytes twice. */
#include "test_util.h"

#include <math.h>
#include <string.h>

#include "plot.h"

static const char *records =
	"{\"m.layers.10.q.weight\":{\"action\":\"quantized\",\"shape\":[4,8],\"bytes_out\":48,\"sqnr_db\":30.5},"
	"\"m.layers.2.q.weight\":{\"action\":\"quantized\",\"shape\":[4,8],\"bytes_out\":20,\"sqnr_db\":12.25},"
	"\"m.embed.weight\":{\"action\":\"kept\",\"shape\":[4,8],\"bytes_out\":64,\"sqnr_db\":null},"
	"\"m.layers.02.k.weight\":{\"action\":\"quantized\",\"shape\":[2,2,2],\"bytes_out\":8,\"sqnr_db\":null},"
	"\"m.layers.9.q.weight\":{\"action\":\"quantized\",\"shape\":[4,8],\"bytes_out\":32,\"sqnr_db\":40}}";

static void test_plot_depth_order_and_bits(void **state)
{
	(void)state;
	struct mq_plot p;
	struct mq_error e = { 0 };
	assert_int_equal(mq_plot_from_records(records, "f.safetensors", &p, &e), 0);
	assert_int_equal(p.n, 4); /* the kept tensor is left out */
	const char *want[4] = { "m.layers.02.k.weight", "m.layers.2.q.weight", "m.layers.9.q.weight", "m.layers.10.q.weight" };
	const double bpw[4] = { 8, 5, 8, 12 }; /* bytes_out * 8 / elements */
	for (int i = 0; i < 4; i++) {
		assert_string_equal(p.layers[i].name, want[i]);
		assert_true(p.layers[i].bpw == bpw[i]);
	}
	assert_true(isnan(p.layers[0].sqnr_db));
	assert_true(p.layers[1].sqnr_db == 12.25);
	struct mq_buf a = MQ_BUF_INIT, b = MQ_BUF_INIT;
	mq_plot_svg(&a, &p, "f <1>", "int8");
	mq_plot_svg(&b, &p, "f <1>", "int8");
	assert_true(mq_buf_ok(&a) && a.len == b.len && memcmp(a.data, b.data, a.len) == 0);
	assert_non_null(strstr(a.data, "<title>m.layers.2.q.weight: 12.25 dB, 5.000 bits per weight</title>"));
	assert_non_null(strstr(a.data, "<title>m.layers.02.k.weight: no error, 8.000 bits per weight</title>"));
	assert_non_null(strstr(a.data, "f &lt;1&gt;")); /* the title is escaped */
	assert_null(strstr(a.data, "f <1>"));
	int circles = 0, rects = 0;
	for (const char *s = a.data; (s = strstr(s, "class=\"layer\"")); s++)
		circles++;
	for (const char *s = a.data; (s = strstr(s, "class=\"bits\"")); s++)
		rects++;
	assert_int_equal(circles, 3); /* one per layer with a figure */
	assert_int_equal(rects, 4);
	mq_buf_release(&a);
	mq_buf_release(&b);
	mq_plot_sparkline(&a, &p);
	assert_true(mq_buf_ok(&a) && strncmp(a.data, "<svg", 4) == 0);
	assert_non_null(strstr(a.data, "<title>m.layers.2.q.weight: 12.25 dB")); /* the weakest layer is marked */
	mq_buf_release(&a);
	mq_plot_release(&p);
}

static void test_plot_refusals(void **state)
{
	(void)state;
	struct mq_plot p;
	struct mq_error e = { 0 };
	assert_int_equal(mq_plot_from_records(NULL, "x.safetensors", &p, &e), MQ_ERR_INPUT);
	assert_non_null(strstr(e.msg, "'x.safetensors': its metadata has no per-layer records"));
	e.code = 0;
	assert_int_equal(mq_plot_from_records("[1]", "x.safetensors", &p, &e), MQ_ERR_INPUT);
	e.code = 0;
	assert_int_equal(mq_plot_from_records("{\"a.weight\":{\"action\":\"quantized\",\"bytes_out\":4}}", "y.pt", &p, &e),
			 MQ_ERR_INPUT);
	assert_non_null(strstr(e.msg, "'y.pt': the record of layer 'a.weight' lacks its shape or bytes_out"));
	assert_int_equal(p.n, 0);
	assert_null(p.layers);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plot_depth_order_and_bits),
		cmocka_unit_test(test_plot_refusals),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
