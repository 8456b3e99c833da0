/* Access-driven tiers (SPEC section 7), shared by model files and streams. */
#ifndef TCZ_TIER_H
#define TCZ_TIER_H

#include <stdint.h>

/* Stored in records: never renumber. */
typedef enum tcz_tier {
	TCZ_TIER_HOT = 0,
	TCZ_TIER_WARM = 1,
	TCZ_TIER_COLD = 2,
} tcz_tier;

typedef struct tcz_tier_thresholds {
	uint64_t hot_min;  /* score >= hot_min is hot (default 512) */
	uint64_t warm_min; /* score >= warm_min is warm (default 64) */
} tcz_tier_thresholds;

#define TCZ_TIER_THRESHOLDS_DEFAULT ((tcz_tier_thresholds){512, 64})

/* score = access_count * 1024 / (now - last_access + 1), seconds; a
 * last_access in the future counts as now. Saturates instead of wrapping. */
uint64_t tcz_tier_score(uint64_t access_count, uint64_t last_access,
			uint64_t now);

tcz_tier tcz_tier_of_score(uint64_t score, const tcz_tier_thresholds *t);

/* "hot", "warm", "cold"; NULL for an invalid value. */
const char *tcz_tier_name(tcz_tier t);

/* Errors: -EINVAL for anything but the three names. */
int tcz_tier_parse(const char *name, tcz_tier *out);

#endif
