#include "calib.h"

#include <errno.h>
#include <hdf5.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "buf.h"
#include "dtype.h"

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

#define BLOCK_BYTES (4u << 20) /* activations read at a time, rounded to whole chunks */
#define MAX_ALIGNED_BYTES (64u << 20) /* larger chunks are read a block at a time, not whole */
#define MAX_ROW_VALUES (1ull << 26)   /* 256 MiB of float32 per row */
#define DAMAGED "; the file is damaged or was not written whole: recapture it"

struct mq_calib {
	hid_t file;
	char *path;
	double bytes_read, read_s; /* activations read, and the time it took */
};

struct mq_calib_layer {
	struct mq_calib *c;
	char *name;
	hid_t dset, space, mem_type;
	struct mq_calib_shape shape;
	uint16_t *half;       /* staging for float16 rows */
	size_t half_cap;      /* values */
};

int mq_calib_is_hdf5(const char *path)
{
	static const unsigned char sig[8] = { 0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n' };
	unsigned char b[8];
	FILE *f = fopen(path, "rb");
	if (!f)
		return 0;
	size_t n = fread(b, 1, 8, f);
	fclose(f);
	return n == 8 && memcmp(b, sig, 8) == 0;
}

int mq_calib_open(const char *path, struct mq_calib **out, struct mq_error *err)
{
	*out = NULL;
	H5Eset_auto2(H5E_DEFAULT, NULL, NULL); /* errors are reported by us, once */
	FILE *f = fopen(path, "rb");
	if (!f)
		return mq_fail(err, MQ_ERR_INPUT, "cannot open calibration file '%s': %s", path, strerror(errno));
	fclose(f);
	if (!mq_calib_is_hdf5(path))
		return mq_fail(err, MQ_ERR_INPUT, "'%s' is not an HDF5 file (make one with scripts/capture_calibration.py)",
			       path);
	struct mq_calib *c = calloc(1, sizeof(*c));
	if (!c || !(c->path = strdup(path))) {
		free(c);
		return mq_fail(err, MQ_ERR_INTERNAL, "out of memory");
	}
	c->file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
	if (c->file < 0) {
		mq_fail(err, MQ_ERR_INPUT, "cannot open '%s' as HDF5 (damaged file?)", path);
		free(c->path);
		free(c);
		return err ? err->code : MQ_ERR_INPUT;
	}
	*out = c;
	return 0;
}

const char *mq_calib_path(const struct mq_calib *c)
{
	return c->path;
}

void mq_calib_io(const struct mq_calib *c, double *bytes, double *seconds)
{
	*bytes = c ? c->bytes_read : 0.0;
	*seconds = c ? c->read_s : 0.0;
}

static void read_pair(hid_t group, const char *name, int64_t out[2])
{
	if (H5Aexists(group, name) <= 0)
		return;
	hid_t a = H5Aopen(group, name, H5P_DEFAULT);
	hid_t sp = a >= 0 ? H5Aget_space(a) : -1;
	if (sp >= 0 && H5Sget_simple_extent_npoints(sp) == 2)
		H5Aread(a, H5T_NATIVE_INT64, out);
	else if (sp >= 0 && H5Sget_simple_extent_npoints(sp) == 1 && H5Aread(a, H5T_NATIVE_INT64, out) >= 0)
		out[1] = out[0];
	if (sp >= 0)
		H5Sclose(sp);
	if (a >= 0)
		H5Aclose(a);
}

int mq_calib_describe(struct mq_calib *c, const char *layer, struct mq_calib_info *info, struct mq_error *err)
{
	memset(info, 0, sizeof(*info));
	info->stride[0] = info->stride[1] = info->dilation[0] = info->dilation[1] = info->groups = 1;
	if (strchr(layer, '/') || H5Lexists(c->file, layer, H5P_DEFAULT) <= 0)
		return 0;
	struct mq_calib_layer *l;
	int rc = mq_calib_layer_open(c, layer, &l, &info->shape, err);
	if (rc)
		return rc;
	mq_calib_layer_close(l);
	info->present = 1;
	hid_t g = H5Gopen2(c->file, layer, H5P_DEFAULT);
	if (g >= 0) {
		int64_t groups[2] = { 1, 1 };
		read_pair(g, "stride", info->stride);
		read_pair(g, "padding", info->padding);
		read_pair(g, "dilation", info->dilation);
		read_pair(g, "groups", groups);
		info->groups = groups[0];
		H5Gclose(g);
	}
	return 0;
}

void mq_calib_close(struct mq_calib *c)
{
	if (!c)
		return;
	H5Fclose(c->file);
	free(c->path);
	free(c);
}

struct name_list {
	char **names;
	int n, cap;
	hid_t file;
};

static herr_t collect(hid_t group, const char *name, const H5L_info_t *info, void *data)
{
	(void)info;
	struct name_list *l = data;
	if (!H5Lexists(group, name, H5P_DEFAULT))
		return 0;
	H5O_info_t oi;
	if (H5Oget_info_by_name(group, name, &oi, H5P_DEFAULT) < 0)
		return -1; /* a damaged object is not skipped over in silence */
	if (oi.type != H5O_TYPE_GROUP)
		return 0;
	if (l->n == l->cap) {
		l->cap = l->cap ? 2 * l->cap : 32;
		char **p = realloc(l->names, (size_t)l->cap * sizeof(*p));
		if (!p)
			return -1;
		l->names = p;
	}
	if (!(l->names[l->n] = strdup(name)))
		return -1;
	l->n++;
	return 0;
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int mq_calib_layers(struct mq_calib *c, char ***names, int *n, struct mq_error *err)
{
	struct name_list l = { NULL, 0, 0, c->file };
	if (H5Literate(c->file, H5_INDEX_NAME, H5_ITER_INC, NULL, collect, &l) < 0) {
		mq_calib_free_names(l.names, l.n);
		return mq_fail(err, MQ_ERR_INPUT, "'%s': cannot list the layer groups (damaged file?)", c->path);
	}
	if (l.n > 1)
		qsort(l.names, (size_t)l.n, sizeof(*l.names), cmp_names);
	*names = l.names;
	*n = l.n;
	return 0;
}

void mq_calib_free_names(char **names, int n)
{
	for (int i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

static int layer_fail(struct mq_calib *c, const char *layer, struct mq_error *err, const char *what)
{
	return mq_fail(err, MQ_ERR_INPUT, "'%s': layer '%s': %s", c->path, layer, what);
}

/*
 * The file's float type must be IEEE binary32 (either byte order) or
 * little-endian binary16 bit for bit: HDF5 converts any float layout it is
 * described, so one damaged byte of the type (an exponent bias, a field
 * position) would turn the activations into other numbers, or zeros, silently.
 */
static int ieee_float(hid_t type, size_t tsize)
{
	if (tsize == 4)
		return H5Tequal(type, H5T_IEEE_F32LE) > 0 || H5Tequal(type, H5T_IEEE_F32BE) > 0;
	size_t spos, epos, esize, mpos, msize;
	H5T_pad_t lsb, msb;
	return H5Tget_order(type) == H5T_ORDER_LE && H5Tget_precision(type) == 16 && H5Tget_offset(type) == 0 &&
	       H5Tget_fields(type, &spos, &epos, &esize, &mpos, &msize) >= 0 && spos == 15 && epos == 10 &&
	       esize == 5 && mpos == 0 && msize == 10 && H5Tget_ebias(type) == 15 &&
	       H5Tget_norm(type) == H5T_NORM_IMPLIED && H5Tget_inpad(type) == H5T_PAD_ZERO &&
	       H5Tget_pad(type, &lsb, &msb) >= 0 && lsb == H5T_PAD_ZERO && msb == H5T_PAD_ZERO;
}

/* What check_extent() knows of a layer's dataset. */
struct extent {
	const struct mq_calib_layer *l;
	const hsize_t *dims;          /* its shape, ndim values */
	int ndim;
	size_t tsize;                 /* bytes per value */
	const hsize_t *cd;            /* the chunk shape (chunked layout) */
	hsize_t stored, file_size;    /* bytes of the dataset stored, and of the whole file */
	struct mq_error *err;
};

/* The message for a dataset whose declared shape is not what its file holds. */
static int extent_fail(const struct extent *x, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int extent_fail(const struct extent *x, const char *fmt, ...)
{
	char shape[160], what[320];
	size_t k = (size_t)snprintf(shape, sizeof(shape), "[");
	for (int d = 0; d < x->ndim && k < sizeof(shape); d++)
		k += (size_t)snprintf(shape + k, sizeof(shape) - k, d ? ", %llu" : "%llu",
				      (unsigned long long)x->dims[d]);
	if (k < sizeof(shape))
		snprintf(shape + k, sizeof(shape) - k, "]");
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	return mq_fail(x->err, MQ_ERR_INPUT,
		"'%s': layer '%s': 'inputs' of shape %s %s",
		x->l->c->path, x->l->name, shape, what);
}

/* The dataset's size in bytes (*bytes): no empty shape, at most 2^64 bytes, rows of at most MAX_ROW_VALUES values. */
static int check_size(const struct extent *x, uint64_t *bytes)
{
	uint64_t values = 1, row = 1;
	int ovf = 0;
	for (int d = 0; d < x->ndim; d++) {
		if (x->dims[d] == 0)
			return extent_fail(x, "holds no values; recapture it, or leave the layer out with --exclude");
		ovf |= x->dims[d] > UINT64_MAX / values;
		values = ovf ? values : values * x->dims[d];
		if (d)
			row = ovf ? row : row * x->dims[d];
	}
	if (ovf || values > UINT64_MAX / x->tsize)
		return extent_fail(x, "declares more than 2^64 bytes" DAMAGED);
	if (row > MAX_ROW_VALUES)
		return extent_fail(x, "has rows of %llu values, more than the %llu mq-dist reads per row",
				   (unsigned long long)row, (unsigned long long)MAX_ROW_VALUES);
	*bytes = values * x->tsize;
	return 0;
}

/* Each of the need chunks of the grid is found where it belongs, inside the file (a damaged key moves one). */
static int check_chunk_places(const struct extent *x, uint64_t need)
{
	hsize_t at[4] = { 0 };
	for (uint64_t k = 0; k < need; k++) {
		unsigned mask = 0;
		haddr_t addr = HADDR_UNDEF;
		hsize_t size = 0;
		if (H5Dget_chunk_info_by_coord(x->l->dset, at, &mask, &addr, &size) < 0 || addr == HADDR_UNDEF ||
		    addr > x->file_size || size > x->file_size - addr)
			return extent_fail(x, "has no stored chunk at row %llu" DAMAGED, (unsigned long long)at[0]);
		for (int d = x->ndim - 1; d >= 0; d--) {
			at[d] += x->cd[d];
			if (at[d] < x->dims[d])
				break;
			at[d] = 0;
		}
	}
	return 0;
}

/* A chunked dataset: every chunk its shape covers allocated (and no more), of the size its shape gives unfiltered. */
static int check_chunked(const struct extent *x, hid_t dcpl)
{
	uint64_t need = 1;
	for (int d = 0; d < x->ndim; d++) {
		uint64_t n = x->cd[d] ? x->dims[d] / x->cd[d] + (x->dims[d] % x->cd[d] != 0) : 0;
		if (!n || n > UINT64_MAX / need)
			return extent_fail(x, "has a chunk shape that does not fit it" DAMAGED);
		need *= n;
	}
	hsize_t have = 0;
	if (H5Dget_num_chunks(x->l->dset, x->l->space, &have) < 0)
		return extent_fail(x, "has an unreadable chunk index" DAMAGED);
	if (have != need)
		return extent_fail(x,
			"needs %llu chunks but %llu are stored (the missing rows would read as fill values)" DAMAGED,
			(unsigned long long)need, (unsigned long long)have);
	if (x->stored > x->file_size)
		return extent_fail(x, "has %llu bytes of chunks in a file of %llu bytes" DAMAGED,
				   (unsigned long long)x->stored, (unsigned long long)x->file_size);
	uint64_t chunk_bytes = x->tsize; /* below 4 GiB: HDF5's limit */
	for (int d = 0; d < x->ndim && chunk_bytes <= UINT32_MAX; d++)
		chunk_bytes *= x->cd[d];
	if (H5Pget_nfilters(dcpl) == 0 && (chunk_bytes > UINT32_MAX || x->stored != have * chunk_bytes))
		return extent_fail(x,
			"has %llu bytes in its %llu unfiltered chunks, which hold %llu bytes each" DAMAGED,
			(unsigned long long)x->stored, (unsigned long long)have, (unsigned long long)chunk_bytes);
	return check_chunk_places(x, need);
}

/* A contiguous dataset: all of its bytes stored, inside the file. */
static int check_contiguous(const struct extent *x, uint64_t bytes)
{
	haddr_t at = H5Dget_offset(x->l->dset);
	if (at == HADDR_UNDEF || x->stored < bytes)
		return extent_fail(x, "has only %llu of its %llu bytes stored" DAMAGED,
				   (unsigned long long)(at == HADDR_UNDEF ? 0 : x->stored), (unsigned long long)bytes);
	if (at > x->file_size || bytes > x->file_size - at)
		return extent_fail(x, "lies past the end of the file (%llu bytes)" DAMAGED,
				   (unsigned long long)x->file_size);
	return 0;
}

/*
 * Every row a dataset declares must be backed by stored data, so that a
 * damaged or hostile header cannot make the ranks read fill values for ever
 * (README, "Calibration"): no empty shape, a size that fits 64 bits, rows of
 * at most MAX_ROW_VALUES values, every chunk the shape covers allocated (and
 * no more), and contiguous data inside the file.
 */
static int check_extent(struct mq_calib_layer *l, const hsize_t *dims, int ndim, size_t tsize, hid_t dcpl,
			const hsize_t *cd, struct mq_error *err)
{
	struct extent x = { .l = l, .dims = dims, .ndim = ndim, .tsize = tsize, .cd = cd, .err = err };
	uint64_t bytes = 0;
	int rc = check_size(&x, &bytes);
	if (rc)
		return rc;
	x.stored = H5Dget_storage_size(l->dset);
	H5Fget_filesize(l->c->file, &x.file_size);
	if (H5Pget_external_count(dcpl) > 0)
		return extent_fail(&x, "is stored in external files, which mq-dist does not read");
	switch (H5Pget_layout(dcpl)) {
	case H5D_CHUNKED:
		return check_chunked(&x, dcpl);
	case H5D_CONTIGUOUS:
		return check_contiguous(&x, bytes);
	case H5D_COMPACT:
		if (x.stored < bytes)
			return extent_fail(&x, "has only %llu of its %llu bytes stored" DAMAGED,
					   (unsigned long long)x.stored, (unsigned long long)bytes);
		return 0;
	default:
		return extent_fail(&x, "has a storage layout mq-dist does not read (virtual?)");
	}
}

/* The path of a layer's dataset, "/<layer>/inputs" (*path, malloc'd), once the group and the dataset are found. */
static int inputs_path(struct mq_calib *c, const char *layer, char **path, struct mq_error *err)
{
	size_t n = strlen(layer) + 16;
	*path = malloc(n);
	if (!*path)
		return mq_fail(err, MQ_ERR_INTERNAL, "out of memory");
	snprintf(*path, n, "/%s/inputs", layer);
	/* the group name may hold dots but no slashes: look it up link by link */
	htri_t has_group = strchr(layer, '/') ? 0 : H5Lexists(c->file, layer, H5P_DEFAULT);
	htri_t has = has_group > 0 ? H5Lexists(c->file, *path, H5P_DEFAULT) : 0;
	if (has <= 0) {
		free(*path);
		*path = NULL;
		return layer_fail(c, layer, err, has_group > 0 ? "no dataset 'inputs' in the group"
							       : "no calibration group for this layer");
	}
	return 0;
}

/* The shape (dims, *ndim: 2-D or 4-D) and value type (*tsize: IEEE float32 or float16) of l's 'inputs'. */
static int check_type(struct mq_calib_layer *l, hid_t type, hsize_t dims[4], int *ndim, size_t *tsize,
		      struct mq_error *err)
{
	*ndim = H5Sget_simple_extent_ndims(l->space);
	if (*ndim != 2 && *ndim != 4)
		return layer_fail(l->c, l->name, err, "'inputs' must be 2-D [rows, in] or 4-D [n, in, h, w]");
	if (H5Sget_simple_extent_dims(l->space, dims, NULL) != *ndim)
		return layer_fail(l->c, l->name, err, "cannot read the shape of 'inputs'");
	*tsize = H5Tget_size(type);
	if (H5Tget_class(type) != H5T_FLOAT || (*tsize != 4 && *tsize != 2))
		return layer_fail(l->c, l->name, err, "'inputs' must hold float32 or float16 values");
	if (!ieee_float(type, *tsize))
		return layer_fail(l->c, l->name, err,
			"'inputs' has a float type that is not IEEE binary32 or binary16 (its bit layout, exponent bias or padding differ)" DAMAGED);
	return 0;
}

/* The storage layout of l's 'inputs': its rows per chunk into sh, then check_extent(). */
static int check_layout(struct mq_calib_layer *l, const hsize_t *dims, int ndim, size_t tsize,
			struct mq_calib_shape *sh, struct mq_error *err)
{
	hid_t dcpl = H5Dget_create_plist(l->dset);
	if (dcpl < 0)
		return layer_fail(l->c, l->name, err, "cannot read the storage layout of 'inputs'");
	hsize_t cd[4] = { 0 };
	if (H5Pget_layout(dcpl) == H5D_CHUNKED && H5Pget_chunk(dcpl, 4, cd) == ndim && cd[0] > 0)
		sh->chunk_rows = cd[0];
	int rc = check_extent(l, dims, ndim, tsize, dcpl, cd, err);
	H5Pclose(dcpl);
	return rc;
}

/* Checks the open dataset of l (its value type is `type`), fills sh, and sets the type rows are read as. */
static int read_shape(struct mq_calib_layer *l, hid_t type, struct mq_calib_shape *sh, struct mq_error *err)
{
	int ndim = 0;
	size_t tsize = 0;
	hsize_t dims[4] = { 0 };
	int rc = check_type(l, type, dims, &ndim, &tsize, err);
	if (rc)
		return rc;
	sh->ndim = ndim;
	sh->row_elems = 1;
	for (int d = 0; d < ndim; d++) {
		sh->shape[d] = dims[d];
		if (d)
			sh->row_elems *= dims[d];
	}
	sh->f16 = tsize == 2;
	sh->chunk_rows = 1;
	rc = check_layout(l, dims, ndim, tsize, sh, err);
	if (rc)
		return rc;
	/* float32 through HDF5's exact conversion; float16 as its raw bits (the file's own type), widened by us */
	l->mem_type = sh->f16 ? H5Tcopy(type) : H5Tcopy(H5T_NATIVE_FLOAT);
	if (sh->f16 && (H5Tget_order(type) != H5T_ORDER_LE))
		return layer_fail(l->c, l->name, err, "big-endian float16 is not supported");
	l->shape = *sh;
	return 0;
}

int mq_calib_layer_open(struct mq_calib *c, const char *layer, struct mq_calib_layer **out,
			struct mq_calib_shape *sh, struct mq_error *err)
{
	*out = NULL;
	memset(sh, 0, sizeof(*sh));
	char *path;
	int rc = inputs_path(c, layer, &path, err);
	if (rc)
		return rc;
	struct mq_calib_layer *l = calloc(1, sizeof(*l));
	if (!l || !(l->name = strdup(layer))) {
		free(l);
		free(path);
		return mq_fail(err, MQ_ERR_INTERNAL, "out of memory");
	}
	l->c = c;
	l->dset = H5Dopen2(c->file, path, H5P_DEFAULT);
	free(path);
	l->space = l->dset >= 0 ? H5Dget_space(l->dset) : -1;
	hid_t type = l->dset >= 0 ? H5Dget_type(l->dset) : -1;
	if (l->dset < 0 || l->space < 0 || type < 0)
		rc = layer_fail(c, layer, err, "cannot open dataset 'inputs'");
	else
		rc = read_shape(l, type, sh, err);
	if (type >= 0)
		H5Tclose(type);
	if (rc) {
		mq_calib_layer_close(l);
		return rc;
	}
	*out = l;
	return 0;
}

void mq_calib_layer_close(struct mq_calib_layer *l)
{
	if (!l)
		return;
	if (l->mem_type > 0)
		H5Tclose(l->mem_type);
	if (l->space >= 0)
		H5Sclose(l->space);
	if (l->dset >= 0)
		H5Dclose(l->dset);
	free(l->half);
	free(l->name);
	free(l);
}

int mq_calib_layer_read(struct mq_calib_layer *l, uint64_t r0, uint64_t n, float *out, struct mq_error *err)
{
	const struct mq_calib_shape *sh = &l->shape;
	hsize_t start[4] = { r0, 0, 0, 0 }, count[4] = { n, sh->shape[1], sh->shape[2], sh->shape[3] };
	size_t values = (size_t)(n * sh->row_elems);
	void *dst = out;
	if (sh->f16) {
		if (values > l->half_cap) {
			uint16_t *h = realloc(l->half, values * sizeof(uint16_t));
			if (!h)
				return mq_fail(err, MQ_ERR_INTERNAL, "out of memory");
			l->half = h;
			l->half_cap = values;
		}
		dst = l->half;
	}
	double t0 = now();
	hid_t mem = H5Screate_simple(sh->ndim, count, NULL);
	herr_t rc = mem < 0 ? -1 : H5Sselect_hyperslab(l->space, H5S_SELECT_SET, start, NULL, count, NULL);
	if (rc >= 0)
		rc = H5Dread(l->dset, l->mem_type, mem, l->space, H5P_DEFAULT, dst);
	if (mem >= 0)
		H5Sclose(mem);
	if (rc < 0)
		return mq_fail(err, MQ_ERR_INPUT, "'%s': layer '%s': cannot read rows %llu..%llu of 'inputs'",
			       l->c->path, l->name, (unsigned long long)r0, (unsigned long long)(r0 + n));
	l->c->read_s += now() - t0;
	l->c->bytes_read += (double)values * (sh->f16 ? 2.0 : 4.0);
	if (sh->f16)
		mq_dtype_widen(MQ_DTYPE_F16, l->half, out, values);
	return 0;
}

int mq_calib_layer_nonfinite(const struct mq_calib_layer *l, uint64_t r0, const float *x, size_t bad,
			     struct mq_error *err)
{
	uint64_t row_elems = l->shape.row_elems ? l->shape.row_elems : 1;
	return mq_fail(err, MQ_ERR_DATA,
		"'%s': layer '%s': %s in the activations at row %llu, element %llu; recapture the calibration data",
		l->c->path, l->name, x[bad] != x[bad] ? "NaN" : "Inf", (unsigned long long)(r0 + bad / row_elems),
		(unsigned long long)(bad % row_elems));
}

int mq_calib_observe(struct mq_calib *c, const char *layer, const struct mq_observer *obs, int symmetric,
		     uint64_t max_rows, struct mq_obs_result *res, uint64_t *rows_used, struct mq_error *err)
{
	struct mq_calib_layer *l;
	struct mq_calib_shape sh;
	int rc = mq_calib_layer_open(c, layer, &l, &sh, err);
	if (rc)
		return rc;
	uint64_t rows = max_rows && max_rows < sh.shape[0] ? max_rows : sh.shape[0];
	uint64_t row_bytes = sh.row_elems ? sh.row_elems * 4 : 1;
	uint64_t block = BLOCK_BYTES / row_bytes ? BLOCK_BYTES / row_bytes : 1;
	if (sh.chunk_rows <= MAX_ALIGNED_BYTES / row_bytes) /* whole chunks, unless they are huge */
		block = block < sh.chunk_rows ? sh.chunk_rows : block / sh.chunk_rows * sh.chunk_rows;
	float *buf = malloc((size_t)(block * sh.row_elems) * sizeof(float) + 1);
	struct mq_obs_state st;
	if (!buf || mq_obs_init(&st, obs, symmetric, rows * sh.row_elems)) {
		free(buf);
		mq_calib_layer_close(l);
		return mq_fail(err, MQ_ERR_INTERNAL, "out of memory");
	}
	int passes = mq_obs_passes(&st);
	for (int pass = 0; pass < passes && !rc; pass++) {
		for (uint64_t r = 0; r < rows && !rc; r += block) {
			uint64_t n = rows - r < block ? rows - r : block;
			size_t bad;
			rc = mq_calib_layer_read(l, r, n, buf, err);
			if (!rc && mq_obs_feed(&st, buf, (size_t)(n * sh.row_elems), &bad))
				rc = mq_calib_layer_nonfinite(l, r, buf, bad, err);
		}
		mq_obs_end_pass(&st);
	}
	if (!rc)
		mq_obs_result(&st, res);
	*rows_used = rows;
	mq_obs_release(&st);
	free(buf);
	mq_calib_layer_close(l);
	return rc;
}

static void print_attr(hid_t file, const char *name, FILE *out)
{
	if (H5Aexists(file, name) <= 0)
		return;
	hid_t a = H5Aopen(file, name, H5P_DEFAULT);
	hid_t t = a >= 0 ? H5Aget_type(a) : -1;
	if (t >= 0 && H5Tget_class(t) == H5T_INTEGER) {
		long long v = 0;
		if (H5Aread(a, H5T_NATIVE_LLONG, &v) >= 0)
			fprintf(out, "  %s: %lld\n", name, v);
	} else if (t >= 0 && H5Tget_class(t) == H5T_STRING) {
		if (H5Tis_variable_str(t) > 0) {
			char *s = NULL;
			hid_t mt = H5Tcopy(H5T_C_S1);
			H5Tset_size(mt, H5T_VARIABLE);
			H5Tset_cset(mt, H5Tget_cset(t)); /* h5py writes UTF-8 */
			if (H5Aread(a, mt, &s) >= 0 && s) {
				fprintf(out, "  %s: %s\n", name, s);
				H5free_memory(s);
			}
			H5Tclose(mt);
		} else {
			size_t n = H5Tget_size(t);
			char *s = calloc(1, n + 1);
			if (s && H5Aread(a, t, s) >= 0)
				fprintf(out, "  %s: %s\n", name, s);
			free(s);
		}
	}
	if (t >= 0)
		H5Tclose(t);
	if (a >= 0)
		H5Aclose(a);
}

int mq_calib_inspect(const char *path, const struct mq_observer *obs, int symmetric, uint64_t max_rows,
		     FILE *out, struct mq_error *err)
{
	struct mq_calib *c;
	int rc = mq_calib_open(path, &c, err);
	if (rc)
		return rc;
	char **names = NULL;
	int n = 0;
	char oname[48];
	mq_observer_name(obs, oname, sizeof(oname));
	rc = mq_calib_layers(c, &names, &n, err);
	if (!rc && n == 0)
		rc = mq_fail(err, MQ_ERR_INPUT,
			"'%s' holds no layer groups (a calibration file has one group per layer, each with a dataset 'inputs'; see scripts/capture_calibration.py)",
			path);
	if (!rc) {
		fprintf(out, "calibration file %s: %d layers\n", path, n);
		static const char *const attrs[] = { "model", "dataset", "num_samples", "mq_calib_version" };
		for (size_t k = 0; k < sizeof(attrs) / sizeof(attrs[0]); k++)
			print_attr(c->file, attrs[k], out);
	}
	for (int i = 0; i < n && !rc; i++) {
		struct mq_obs_result r;
		uint64_t rows = 0;
		struct mq_calib_layer *l;
		struct mq_calib_shape sh;
		rc = mq_calib_layer_open(c, names[i], &l, &sh, err);
		if (rc)
			break;
		mq_calib_layer_close(l);
		rc = mq_calib_observe(c, names[i], obs, symmetric, max_rows, &r, &rows, err);
		if (rc)
			break;
		struct mq_buf name = MQ_BUF_INIT; /* one line whatever the group's name holds */
		mq_buf_add_escaped(&name, names[i], strlen(names[i]));
		fprintf(out, "layer %s rows %llu cols %llu dtype %s shape [", mq_buf_ok(&name) ? name.data : "?",
			(unsigned long long)rows, (unsigned long long)sh.row_elems, sh.f16 ? "F16" : "F32");
		mq_buf_release(&name);
		for (int d = 0; d < sh.ndim; d++)
			fprintf(out, d ? ", %llu" : "%llu", (unsigned long long)sh.shape[d]);
		fprintf(out, "] min %.9g max %.9g ", (double)r.min, (double)r.max);
		if (symmetric)
			fprintf(out, "threshold %.9g", (double)r.threshold);
		else
			fprintf(out, "lo %.9g hi %.9g", (double)r.lo, (double)r.hi);
		fprintf(out, " scale %.9g zero_point %d observer %s\n", (double)r.qp.scale, (int)r.qp.zero_point, oname);
	}
	mq_calib_free_names(names, n);
	mq_calib_close(c);
	return rc;
}
