#include "codec/tier.h"

#include <errno.h>
#include <string.h>

uint64_t tcz_tier_score(uint64_t access_count, uint64_t last_access,
			uint64_t now)
{
	uint64_t age = now > last_access ? now - last_access : 0;
	uint64_t num = access_count > UINT64_MAX / 1024 ? UINT64_MAX
							 : access_count * 1024;
	return num / (age + 1);
}

tcz_tier tcz_tier_of_score(uint64_t score, const tcz_tier_thresholds *t)
{
	if (score >= t->hot_min)
		return TCZ_TIER_HOT;
	if (score >= t->warm_min)
		return TCZ_TIER_WARM;
	return TCZ_TIER_COLD;
}

static const char *const names[] = {"hot", "warm", "cold"};

const char *tcz_tier_name(tcz_tier t)
{
	return (unsigned)t < 3 ? names[t] : NULL;
}

int tcz_tier_parse(const char *name, tcz_tier *out)
{
	for (int i = 0; i < 3; i++) {
		if (strcmp(name, names[i]) == 0) {
			*out = (tcz_tier)i;
			return 0;
		}
	}
	return -EINVAL;
}
