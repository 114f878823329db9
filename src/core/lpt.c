#include "lpt.h"

#include <stdlib.h>
#include <string.h>

static int longest_first(const void *a, const void *b)
{
	const struct mq_lpt_item *x = a, *y = b;
	if (x->cost != y->cost)
		return x->cost > y->cost ? -1 : 1;
	int c = x->name && y->name ? strcmp(x->name, y->name) : (x->name != NULL) - (y->name != NULL); /* NULL first */
	if (c)
		return c;
	if (x->key != y->key)
		return x->key < y->key ? -1 : 1;
	return (x->index > y->index) - (x->index < y->index);
}

void mq_lpt_assign(struct mq_lpt_item *items, int n, int n_bins, uint64_t *load)
{
	qsort(items, (size_t)n, sizeof(*items), longest_first);
	for (int k = 0; k < n; k++) {
		int best = 0;
		for (int b = 1; b < n_bins; b++)
			if (load[b] < load[best])
				best = b;
		items[k].bin = best;
		load[best] += items[k].weight;
	}
}
