#include "method.h"

#include <string.h>

const struct mq_method mq_method_rtn = {
	.name = "rtn",
	.needs = MQ_NEED_NONE,
	.row_units = 1,
};

const struct mq_method mq_method_gptq = {
	.name = "gptq",
	.needs = MQ_NEED_XTX | MQ_NEED_OUT_SUMS,
	.row_units = 1, /* once the factor is known, each row is swept on its own */
};

static const struct mq_method *const rows[] = { [MQ_METHOD_RTN] = &mq_method_rtn, [MQ_METHOD_GPTQ] = &mq_method_gptq };

const struct mq_method *mq_method_get(enum mq_method_id id)
{
	return rows[id];
}

const struct mq_method *mq_method_find(const char *name)
{
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
		if (strcmp(rows[i]->name, name) == 0)
			return rows[i];
	return NULL;
}
