#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "codec/half.h"
#include "codec/metrics.h"

/* ones vs ones-with-one-1.5: ||e|| = 0.5, ||ref|| = sqrt(100) = 10 */
static void closed_form(void **state)
{
	(void)state;
	float ref[100], app[100];
	for (int i = 0; i < 100; i++)
		ref[i] = app[i] = 1.0f;
	app[37] = 1.5f;
	tcz_error e;
	assert_int_equal(tcz_error_f32(ref, app, 100, &e), 0);
	assert_true(fabs(e.rel_fro - 0.05) < 1e-15);
	assert_true(e.max_abs == 0.5);
}

static void accumulates_in_pieces(void **state)
{
	(void)state;
	/* ref = 3,4 (norm 5); approx differs by 0,1 then ref 0 approx 0 */
	float r1[2] = {3, 4}, a1[2] = {3, 5};
	float r2[1] = {0}, a2[1] = {0};
	tcz_error_acc acc;
	tcz_error_acc_init(&acc);
	tcz_error_acc_add_f32(&acc, r1, a1, 2);
	tcz_error_acc_add_f32(&acc, r2, a2, 1);
	tcz_error e;
	assert_int_equal(tcz_error_acc_finish(&acc, &e), 0);
	assert_true(fabs(e.rel_fro - 0.2) < 1e-15);
	assert_int_equal(acc.count, 3);
}

static void dtype_domain(void **state)
{
	(void)state;
	/* bf16 2.0 vs 2.015625 (next bf16 up): max_abs is one bf16 ulp, 2^-6 */
	uint16_t r[2] = {tcz_f32_to_bf16(2.0f), tcz_f32_to_bf16(-1.0f)};
	uint16_t a[2] = {(uint16_t)(r[0] + 1), r[1]};
	tcz_error_acc acc;
	tcz_error_acc_init(&acc);
	assert_int_equal(tcz_error_acc_add(&acc, TCZ_DT_BF16, r, a, 2), 0);
	tcz_error e;
	assert_int_equal(tcz_error_acc_finish(&acc, &e), 0);
	assert_true(e.max_abs == 0.015625);
	assert_true(fabs(e.rel_fro - 0.015625 / sqrt(5.0)) < 1e-15);
	assert_int_equal(tcz_error_acc_add(&acc, TCZ_DT_I32, r, a, 1),
			 -EINVAL);
}

static void zero_reference_and_nonfinite(void **state)
{
	(void)state;
	float z[3] = {0, 0, 0}, nz[3] = {0, 1e-3f, 0};
	tcz_error e;
	assert_int_equal(tcz_error_f32(z, z, 3, &e), 0);
	assert_true(e.rel_fro == 0.0);
	assert_int_equal(tcz_error_f32(z, nz, 3, &e), 0);
	assert_true(isinf(e.rel_fro));
	float n[2] = {1, NAN};
	assert_int_equal(tcz_error_f32(n, n, 2, &e), -EDOM);
	assert_true(isnan(e.rel_fro));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(closed_form),
		cmocka_unit_test(accumulates_in_pieces),
		cmocka_unit_test(dtype_domain),
		cmocka_unit_test(zero_reference_and_nonfinite),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
