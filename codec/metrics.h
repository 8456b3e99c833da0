/* Error of an approximation against a reference, in double precision.
 * Accumulates over pieces so chunked codecs can measure a whole tensor. */
#ifndef TCZ_METRICS_H
#define TCZ_METRICS_H

#include <stddef.h>

#include "codec/dtype.h"

typedef struct tcz_error_acc {
	double ref_sq;  /* sum of ref^2 */
	double err_sq;  /* sum of (ref - approx)^2 */
	double max_abs; /* max |ref - approx| */
	size_t count;
	int nonfinite; /* a NaN/inf made the figures meaningless */
} tcz_error_acc;

typedef struct tcz_error {
	double rel_fro; /* ||ref - approx||_F / ||ref||_F (0 when both 0) */
	double max_abs;
} tcz_error;

void tcz_error_acc_init(tcz_error_acc *acc);

/* Adds n f32 pairs. */
void tcz_error_acc_add_f32(tcz_error_acc *acc, const float *ref,
			   const float *approx, size_t n);

/* Adds n pairs of elements of float dtype dt (unaligned ok).
 * Errors: -EINVAL when dt is not a float dtype. */
int tcz_error_acc_add(tcz_error_acc *acc, tcz_dtype dt, const void *ref,
		      const void *approx, size_t n);

/* Folds another accumulator into acc (for parallel measurement). */
void tcz_error_acc_merge(tcz_error_acc *acc, const tcz_error_acc *other);

/* Final figures. A reference of norm 0 gives rel_fro 0 when the
 * approximation is exact and +inf otherwise. Non-finite inputs give
 * rel_fro = max_abs = NaN.
 * Errors: none (returns 0); -EDOM when the inputs held NaN/inf. */
int tcz_error_acc_finish(const tcz_error_acc *acc, tcz_error *out);

/* One-shot helper over n f32 pairs; errors as tcz_error_acc_finish. */
int tcz_error_f32(const float *ref, const float *approx, size_t n,
		  tcz_error *out);

#endif
