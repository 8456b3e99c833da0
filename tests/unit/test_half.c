/* f16/bf16 conversions against independent references: the compiler's
 * _Float16 (libgcc/F16C rounding) and a round-to-nearest-even rule written
 * out in double arithmetic for bf16. TCZ_EXHAUSTIVE=1 checks all 2^32 f32. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "codec/half.h"

static uint32_t fbits(float f)
{
	uint32_t x;
	memcpy(&x, &f, 4);
	return x;
}

static float bitsf(uint32_t x)
{
	float f;
	memcpy(&f, &x, 4);
	return f;
}

static int exhaustive(void)
{
	const char *e = getenv("TCZ_EXHAUSTIVE");
	return e && *e == '1';
}

static void f16_round_trip_all(void **state)
{
	(void)state;
	for (uint32_t h = 0; h < 65536; h++) {
		float f = tcz_f16_to_f32((uint16_t)h);
		assert_int_equal(tcz_f32_to_f16(f), h);
	}
}

static void bf16_round_trip_all(void **state)
{
	(void)state;
	for (uint32_t h = 0; h < 65536; h++) {
		float f = tcz_bf16_to_f32((uint16_t)h);
		assert_int_equal(fbits(f), h << 16);
		assert_int_equal(tcz_f32_to_bf16(f), h);
	}
}

/* bf16 reference: pick the nearer of the two bf16 neighbours of x, in
 * double; ties to the even pattern. The pattern 0x7f80 counts as 2^128
 * there so that rounding past the largest finite value gives infinity. */
static uint16_t bf16_ref(float f)
{
	uint32_t x = fbits(f);
	if (isnan(f))
		return 0; /* not compared */
	uint32_t sign = x & 0x80000000u, ax = x & 0x7fffffffu;
	if (ax == 0x7f800000u)
		return (uint16_t)(x >> 16);
	uint32_t lo = ax & 0xffff0000u, hi = lo + 0x10000u;
	double v = bitsf(ax);
	double dlo = bitsf(lo);
	double dhi = hi == 0x7f800000u ? ldexp(1.0, 128) : (double)bitsf(hi);
	uint32_t pick;
	if (v - dlo < dhi - v)
		pick = lo;
	else if (v - dlo > dhi - v)
		pick = hi;
	else
		pick = ((lo >> 16) & 1) ? hi : lo;
	return (uint16_t)((sign | pick) >> 16);
}

#if defined(__FLT16_MAX__)
__extension__ typedef _Float16 ref_f16;

static uint16_t f16_ref(float f)
{
	ref_f16 h = (ref_f16)f;
	uint16_t b;
	memcpy(&b, &h, 2);
	return b;
}

static void f16_widen_matches_compiler(void **state)
{
	(void)state;
	for (uint32_t h = 0; h < 65536; h++) {
		ref_f16 r;
		uint16_t b = (uint16_t)h;
		memcpy(&r, &b, 2);
		float want = (float)r, got = tcz_f16_to_f32(b);
		if (isnan(want)) {
			assert_true(isnan(got));
			assert_int_equal(signbit(want) != 0, signbit(got) != 0);
		} else {
			assert_int_equal(fbits(got), fbits(want));
		}
	}
}

static void check_f16(uint32_t x)
{
	float f = bitsf(x);
	if (isnan(f)) {
		uint16_t h = tcz_f32_to_f16(f);
		assert_true((h & 0x7c00) == 0x7c00 && (h & 0x3ff) != 0);
		return;
	}
	uint16_t got = tcz_f32_to_f16(f), want = f16_ref(f);
	if (got != want)
		fail_msg("f32 %08x -> f16 %04x, want %04x", x, got, want);
}

/* Every f16 rounding boundary: the midpoint between each pair of adjacent
 * f16 values and its f32 neighbours, plus a stride over all of f32. */
static void f16_narrow_matches_compiler(void **state)
{
	(void)state;
	for (uint32_t h = 0; h < 0x7c00; h++) {
		double a = tcz_f16_to_f32((uint16_t)h);
		double b = h + 1 == 0x7c00 ? 65536.0
					   : tcz_f16_to_f32((uint16_t)(h + 1));
		uint32_t mid = fbits((float)((a + b) / 2));
		for (uint32_t d = 0; d < 3; d++) {
			check_f16(mid - 1 + d);
			check_f16((mid - 1 + d) | 0x80000000u);
		}
		check_f16(fbits((float)a));
	}
	uint64_t step = exhaustive() ? 1 : 4099;
	for (uint64_t x = 0; x <= 0xffffffffu; x += step)
		check_f16((uint32_t)x);
}
#endif

static void bf16_narrow_matches_reference(void **state)
{
	(void)state;
	uint64_t step = exhaustive() ? 1 : 3001;
	for (uint64_t x = 0; x <= 0xffffffffu; x += step) {
		float f = bitsf((uint32_t)x);
		uint16_t got = tcz_f32_to_bf16(f);
		if (isnan(f)) {
			assert_true((got & 0x7f80) == 0x7f80 && (got & 0x7f));
			continue;
		}
		uint16_t want = bf16_ref(f);
		if (got != want)
			fail_msg("f32 %08x -> bf16 %04x, want %04x",
				 (uint32_t)x, got, want);
	}
	/* exact ties: low half 0x8000 rounds to even */
	assert_int_equal(tcz_f32_to_bf16(bitsf(0x3f808000u)), 0x3f80);
	assert_int_equal(tcz_f32_to_bf16(bitsf(0x3f818000u)), 0x3f82);
	assert_int_equal(tcz_f32_to_bf16(bitsf(0x7f7fffffu)), 0x7f80);
	assert_int_equal(tcz_f32_to_bf16(bitsf(0x00008000u)), 0x0000);
	assert_int_equal(tcz_f32_to_bf16(bitsf(0x00018000u)), 0x0002);
}

static void f16_known_values(void **state)
{
	(void)state;
	assert_int_equal(tcz_f32_to_f16(1.0f), 0x3c00);
	assert_int_equal(tcz_f32_to_f16(-2.0f), 0xc000);
	assert_int_equal(tcz_f32_to_f16(65504.0f), 0x7bff);
	assert_int_equal(tcz_f32_to_f16(65519.99f), 0x7bff);
	assert_int_equal(tcz_f32_to_f16(65520.0f), 0x7c00);
	assert_int_equal(tcz_f32_to_f16(0x1p-24f), 0x0001);
	assert_int_equal(tcz_f32_to_f16(0x1p-25f), 0x0000); /* tie -> even */
	assert_int_equal(tcz_f32_to_f16(0x1.8p-24f), 0x0002); /* tie -> even */
	assert_int_equal(tcz_f32_to_f16(0x1p-14f), 0x0400);
	assert_int_equal(tcz_f32_to_f16(INFINITY), 0x7c00);
	assert_int_equal(tcz_f32_to_f16(-0.0f), 0x8000);
	assert_true(tcz_f16_to_f32(0x0001) == 0x1p-24f);
	assert_true(tcz_f16_to_f32(0x7bff) == 65504.0f);
}

/* The bulk paths agree with the scalar ones, at odd lengths and offsets. */
static void bulk_matches_scalar(void **state)
{
	(void)state;
	enum { N = 65536 + 13 };
	unsigned char *h = malloc(2 * N + 1), *o = malloc(2 * N + 1);
	float *f = malloc(sizeof(float) * N);
	assert_non_null(h);
	assert_non_null(o);
	assert_non_null(f);
	for (uint32_t i = 0; i < N; i++) {
		h[1 + 2 * i] = (unsigned char)(i & 0xff);
		h[2 + 2 * i] = (unsigned char)((i >> 8) & 0xff);
	}
	for (int which = 0; which < 2; which++) {
		if (which == 0)
			tcz_f16_to_f32_n(h + 1, f, N);
		else
			tcz_bf16_to_f32_n(h + 1, f, N);
		for (uint32_t i = 0; i < N; i++) {
			uint16_t b = (uint16_t)(i & 0xffff);
			float want = which == 0 ? tcz_f16_to_f32(b)
						: tcz_bf16_to_f32(b);
			if (isnan(want))
				assert_true(isnan(f[i]));
			else
				assert_int_equal(fbits(f[i]), fbits(want));
		}
	}
	/* narrowing: a spread of f32 patterns */
	for (uint32_t i = 0; i < N; i++)
		f[i] = bitsf((uint32_t)(i * 2654435761u));
	for (int which = 0; which < 2; which++) {
		if (which == 0)
			tcz_f32_to_f16_n(f, o + 1, N);
		else
			tcz_f32_to_bf16_n(f, o + 1, N);
		for (uint32_t i = 0; i < N; i++) {
			uint16_t got = (uint16_t)(o[1 + 2 * i] |
						  (o[2 + 2 * i] << 8));
			uint16_t want = which == 0 ? tcz_f32_to_f16(f[i])
						   : tcz_f32_to_bf16(f[i]);
			if (isnan(f[i]))
				assert_int_equal(got & 0x8000, want & 0x8000);
			else
				assert_int_equal(got, want);
		}
	}
	free(h);
	free(o);
	free(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(f16_round_trip_all),
		cmocka_unit_test(bf16_round_trip_all),
		cmocka_unit_test(f16_known_values),
#if defined(__FLT16_MAX__)
		cmocka_unit_test(f16_widen_matches_compiler),
		cmocka_unit_test(f16_narrow_matches_compiler),
#endif
		cmocka_unit_test(bf16_narrow_matches_reference),
		cmocka_unit_test(bulk_matches_scalar),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
