#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <strings.h>

const char *const mq_default_excludes[] = {
	"embed",                      /* token, position and patch embeddings */
	"(^|\\.)lm_head\\.",          /* output projection */
	"(^|\\.)(wte|wpe)\\.",        /* GPT-2 style embeddings */
	"(^|\\.)(mlp\\.gate|router)\\.", /* mixture-of-experts routers */
};
const int mq_n_default_excludes = sizeof(mq_default_excludes) / sizeof(mq_default_excludes[0]);

int mq_options_check_output_name(const char *val, struct mq_error *err)
{
	if (mq_writer_select(val))
		return 0;
	const char *ext = mq_path_extension(val);
	char accepted[160];
	mq_writer_extensions(accepted, sizeof(accepted));
	const struct mq_writer *w;
	for (int i = 0; (w = mq_writer_get(i)); i++)
		for (const char *const *e = w->extensions; *e; e++)
			if (strcasecmp(ext, *e) == 0)
				return mq_fail(err, MQ_ERR_USAGE, "--output '%s': extensions are case-sensitive: '%s' is not "
					       "'%s' (accepted: %s)", val, ext, *e, accepted);
	return mq_fail(err, MQ_ERR_USAGE, "--output '%s': mq-dist does not write '%s' files: end the name in "
		       ".safetensors, or in .pt, .pth or .bin for a torch archive, or give a folder name (no extension, "
		       "or ending in /) for a Hugging Face model folder", val, ext);
}

void mq_options_release(struct mq_options *o)
{
	free(o->output);
	free(o->includes);
	free(o->excludes);
	memset(o, 0, sizeof(*o));
}

static int has_suffix(const char *s, size_t n, const char *suf)
{
	size_t k = strlen(suf);
	return n >= k && memcmp(s + n - k, suf, k) == 0;
}

/* A folder input's default output: the folder's path, "-", the scheme and its non-default grouping. */
static char *default_folder(const struct mq_options *o)
{
	size_t n = strlen(o->input);
	while (n > 1 && o->input[n - 1] == '/')
		n--;
	struct mq_buf b = MQ_BUF_INIT;
	mq_buf_add(&b, o->input, n);
	mq_buf_addf(&b, "-%s", mq_options_mixed(o) ? "mixed" : mq_scheme_get(o->scheme)->name);
	if (mq_options_mixed(o))
		;
	else if (o->per_tensor)
		mq_buf_adds(&b, "-per-tensor");
	if (o->group_size == MQ_GROUP_CHANNEL)
		mq_buf_adds(&b, "-channel");
	else if (o->group_size > 0 && o->group_size != MQ_GROUP_DEFAULT)
		mq_buf_addf(&b, "-g%d", o->group_size);
	return mq_buf_ok(&b) ? mq_buf_detach(&b, NULL) : NULL;
}

char *mq_options_default_output(const struct mq_options *o, int torch_input)
{
	const char *in = o->input;
	size_t n = strlen(in);
	struct stat st;
	if (stat(in, &st) == 0 && S_ISDIR(st.st_mode))
		return default_folder(o);
	static const char *const sufs[] = { ".safetensors.index.json", ".index.json", ".safetensors", ".json",
					    ".pth", ".pt", ".bin" };
	const char *ext = ".safetensors";
	for (size_t k = 0; k < sizeof(sufs) / sizeof(sufs[0]); k++) {
		if (has_suffix(in, n, sufs[k]) && n > strlen(sufs[k])) {
			n -= strlen(sufs[k]);
			break;
		}
	}
	if (torch_input) /* keep the user's format: .pth stays .pth, other torch files become .pt */
		ext = has_suffix(in, strlen(in), ".pth") ? ".pth" : ".pt";
	const struct mq_scheme_traits *si = mq_scheme_get(o->scheme);
	struct mq_buf b = MQ_BUF_INIT;
	mq_buf_add(&b, in, n);
	mq_buf_addf(&b, ".%s%s%s", mq_options_mixed(o) ? "mixed" : si->name, o->per_tensor ? "-per-tensor" : "", ext);
	if (!mq_buf_ok(&b)) {
		mq_buf_release(&b);
		return NULL;
	}
	return mq_buf_detach(&b, NULL);
}

static void json_str_array(struct mq_buf *b, const char *const *a, int n)
{
	mq_buf_adds(b, "[");
	for (int i = 0; i < n; i++) {
		if (i)
			mq_buf_adds(b, ",");
		mq_buf_add_json_str(b, a[i]);
	}
	mq_buf_adds(b, "]");
}

void mq_options_json(const struct mq_options *o, struct mq_buf *b)
{
	const struct mq_scheme_traits *si = mq_scheme_get(o->scheme);
	mq_buf_adds(b, "{\"scheme\":");
	mq_buf_add_json_str(b, mq_options_mixed(o) ? "mixed" : si->name);
	enum mq_granularity g = mq_scheme_granularity(si, o->per_tensor, o->group_size);
	if (mq_options_mixed(o))
		g = MQ_GRAN_NONE; /* each candidate names its own */
	else
		mq_buf_addf(b, ",\"granularity\":\"%s\"", mq_granularity_name(g));
	if (g == MQ_GRAN_GROUP) /* only here: the options of the other schemes keep their bytes */
		mq_buf_addf(b, ",\"group_size\":%d", o->group_size > 0 ? o->group_size : MQ_GROUP_DEFAULT);
	if (o->clip != MQ_CLIP_NONE)
		mq_buf_addf(b, ",\"clip\":\"%s\"", mq_clip_name(o->clip));
	if (mq_options_mixed(o)) { /* only here: a uniform run's options keep their bytes */
		if (o->target_bpw > 0)
			mq_buf_addf(b, ",\"target_bpw\":%.17g", o->target_bpw);
		else
			mq_buf_addf(b, ",\"target_size\":%llu", (unsigned long long)o->target_size);
		mq_buf_adds(b, ",\"candidates\":[");
		for (int k = 0; k < o->n_candidates; k++) {
			char name[48];
			mq_candidate_name(&o->candidates[k], name, sizeof(name));
			mq_buf_addf(b, "%s\"%s\"", k ? "," : "", name);
		}
		mq_buf_adds(b, "]");
		mq_buf_addf(b, ",\"measure_every\":%d", o->measure_every);
		if (o->min_sqnr == o->min_sqnr)
			mq_buf_addf(b, ",\"min_sqnr\":%.17g", o->min_sqnr);
	}
	if (o->method == MQ_METHOD_GPTQ) /* only here, as group_size */
		mq_buf_addf(b, ",\"method\":\"gptq\",\"damp\":%.17g,\"block_size\":%llu,\"actorder\":\"%s\",\"gptq_scales\":\"%s\"",
			    o->gptq.damp, (unsigned long long)o->gptq.block,
			    o->gptq.actorder == MQ_ACTORDER_STATIC ? "static" : "none",
			    o->gptq.scales == MQ_GPTQ_SCALES_ORIGINAL ? "original" : "updated");
	mq_buf_adds(b, ",\"include\":");
	json_str_array(b, o->includes, o->n_includes);
	mq_buf_adds(b, ",\"exclude\":");
	json_str_array(b, o->excludes, o->n_excludes);
	mq_buf_adds(b, ",\"default_excludes\":");
	json_str_array(b, mq_default_excludes, o->no_default_excludes ? 0 : mq_n_default_excludes);
	mq_buf_addf(b, ",\"checksum\":\"%s\"", o->no_checksum ? "none" : mq_digest_name(o->digest));
	if (o->calib) {
		char obs[48];
		mq_observer_name(&o->observer, obs, sizeof(obs));
		const enum mq_acts acts = o->act_none ? MQ_ACTS_NONE : si->acts; /* what the activations become */
		mq_buf_addf(b, ",\"observer\":\"%s\",\"act\":\"%s\",\"calib_samples\":%llu,\"calib_missing\":\"%s\"", obs,
			    acts == MQ_ACTS_NONE ? "none" : acts == MQ_ACTS_FP8 ? "fp8" : o->act_asymmetric ? "int8-asym" : "int8",
			    (unsigned long long)o->calib_samples, o->calib_weights_only ? "weights-only" : "error");
	}
	mq_buf_adds(b, "}");
}

void mq_candidate_name(const struct mq_candidate *c, char *out, size_t cap)
{
	const char *name = mq_scheme_get(c->scheme)->name;
	if (c->group_size == MQ_GROUP_CHANNEL)
		snprintf(out, cap, "%s-channel", name);
	else if (c->group_size > 0)
		snprintf(out, cap, "%s-g%d", name, c->group_size);
	else
		snprintf(out, cap, "%s", name);
}

int mq_candidate_parse(const char *name, struct mq_candidate *c)
{
	char base[48];
	size_t n = strlen(name);
	if (n == 0 || n >= sizeof(base))
		return -1;
	memcpy(base, name, n + 1);
	c->group_size = 0;
	char *dash = strrchr(base, '-');
	if (dash && strcmp(dash, "-channel") == 0) {
		c->group_size = MQ_GROUP_CHANNEL;
		*dash = '\0';
	} else if (dash && (strcmp(dash, "-g32") == 0 || strcmp(dash, "-g64") == 0 || strcmp(dash, "-g128") == 0)) {
		c->group_size = atoi(dash + 2);
		*dash = '\0';
	}
	if (mq_scheme_parse(base, &c->scheme))
		return -1;
	const struct mq_scheme_traits *si = mq_scheme_get(c->scheme);
	const int groups = (si->granularities & MQ_GRAN_BIT(MQ_GRAN_GROUP)) != 0;
	if (c->group_size && !groups)
		return -1; /* "int8-g128": int8 takes no groups */
	if (groups && !c->group_size)
		c->group_size = MQ_GROUP_DEFAULT; /* "int4" is int4-g128, as --scheme int4 */
	return 0;
}
