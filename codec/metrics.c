#include "codec/metrics.h"

#include <errno.h>
#include <math.h>

void tcz_error_acc_init(tcz_error_acc *acc)
{
	*acc = (tcz_error_acc){0};
}

static inline void add_pair(tcz_error_acc *acc, double r, double a)
{
	double e = r - a;
	acc->count++;
	if (!isfinite(r) || !isfinite(a)) {
		acc->nonfinite = 1;
		return;
	}
	acc->ref_sq += r * r;
	acc->err_sq += e * e;
	if (fabs(e) > acc->max_abs)
		acc->max_abs = fabs(e);
}

void tcz_error_acc_add_f32(tcz_error_acc *acc, const float *ref,
			   const float *approx, size_t n)
{
	/* Blocks of partial sums keep rounding error of long sums small. */
	for (size_t i = 0; i < n;) {
		size_t end = i + 4096 < n ? i + 4096 : n;
		tcz_error_acc part = {0};
		for (; i < end; i++)
			add_pair(&part, ref[i], approx[i]);
		tcz_error_acc_merge(acc, &part);
	}
}

int tcz_error_acc_add(tcz_error_acc *acc, tcz_dtype dt, const void *ref,
		      const void *approx, size_t n)
{
	if (!tcz_dtype_is_float(dt))
		return -EINVAL;
	size_t es = tcz_dtype_size(dt);
	const unsigned char *r = ref, *a = approx;
	for (size_t i = 0; i < n;) {
		size_t end = i + 4096 < n ? i + 4096 : n;
		tcz_error_acc part = {0};
		for (; i < end; i++)
			add_pair(&part, tcz_dtype_get_f64(dt, r + i * es),
				 tcz_dtype_get_f64(dt, a + i * es));
		tcz_error_acc_merge(acc, &part);
	}
	return 0;
}

void tcz_error_acc_merge(tcz_error_acc *acc, const tcz_error_acc *other)
{
	acc->ref_sq += other->ref_sq;
	acc->err_sq += other->err_sq;
	if (other->max_abs > acc->max_abs)
		acc->max_abs = other->max_abs;
	acc->count += other->count;
	acc->nonfinite |= other->nonfinite;
}

int tcz_error_acc_finish(const tcz_error_acc *acc, tcz_error *out)
{
	if (acc->nonfinite) {
		out->rel_fro = NAN;
		out->max_abs = NAN;
		return -EDOM;
	}
	out->max_abs = acc->max_abs;
	if (acc->ref_sq > 0)
		out->rel_fro = sqrt(acc->err_sq) / sqrt(acc->ref_sq);
	else
		out->rel_fro = acc->err_sq > 0 ? INFINITY : 0.0;
	return 0;
}

int tcz_error_f32(const float *ref, const float *approx, size_t n,
		  tcz_error *out)
{
	tcz_error_acc acc;
	tcz_error_acc_init(&acc);
	tcz_error_acc_add_f32(&acc, ref, approx, n);
	return tcz_error_acc_finish(&acc, out);
}
