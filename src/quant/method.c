#include "method.h"

#include <string.h>

const struct mq_method mq_method_rtn = {
	.name = "rtn",
	.needs = MQ_NEED_NONE,
	.row_units = 1,
};

static const struct mq_method *const rows[] = { &mq_method_rtn };

const struct mq_method *mq_method_find(const char *name)
{
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
		if (strcmp(rows[i]->name, name) == 0)
			return rows[i];
	return NULL;
}
