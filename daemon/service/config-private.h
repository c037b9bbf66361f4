/*
 * config-private.h - what the files of the configuration share and nobody
 * else sees: the lane settings' table (config-lane.c), the value parsers and
 * the message a bad value gets (config-values.c), the INI reader
 * (config-file.c) and the [fleet] keys' variables (config.c).
 */
#ifndef LLMQ_CONFIG_PRIVATE_H
#define LLMQ_CONFIG_PRIVATE_H

#include "service/config.h"

#include <stddef.h>
#include <stdint.h>

enum kind { K_STR, K_URL, K_INT, K_FRAC, K_MS, K_BOOL, K_MODELS, K_WINDOW, K_SHARE };

struct setting {
	const char *key;  /* INI key in a [lane NAME] section */
	const char *env;  /* environment variable (implicit lane only), or NULL */
	const char *flag; /* long option, or NULL */
	enum kind kind;
	size_t off;
	size_t size;
	double min, max;
};

#define LC(field) offsetof(struct lane_config, field), sizeof(((struct lane_config *)0)->field)

/* Entries of config_lane_settings[], its NULL key included. */
#define CONFIG_LANE_N_SETTINGS 30

/* One entry a lane setting: its INI key, variable, flag, kind and range. */
extern const struct setting config_lane_settings[CONFIG_LANE_N_SETTINGS];

/* A lane's built-in defaults (the prototype's), named name. */
void config_lane_defaults(struct lane_config *l, const char *name);

/* Set setting s of lane l from value, checked; -EINVAL with err. */
int config_lane_apply(struct lane_config *l, const struct setting *s, const char *value,
                      const char *where, const char *shown, char *err, size_t errlen);

/* err = "WHERE: KEY = "VALUE": WHY"; returns -EINVAL. */
int config_bad(char *err, size_t errlen, const char *where, const char *key, const char *value,
               const char *why);

int config_parse_client_timeout(const char *v, int64_t *ret);
int config_parse_mb(const char *v, int64_t *ret);
int config_parse_bytes(const char *v, int64_t *ret);
int config_parse_big_count(const char *v, int64_t *ret);
int config_parse_count(const char *v, int lo, int hi, int *ret);
int config_parse_bool(const char *v, int *ret);
/* "builtin" (0) or "curl" (1): who sends plain http to an address. */
int config_parse_upstream_client(const char *v, int *ret_curl);

/* One [fleet] setting, checked (a URL that may hold a password is never echoed). */
int config_fleet_set(struct fleet_config *f, const char *key, const char *value, const char *where,
                     const char *shown, char *err, size_t errlen);

/* The variable that overrides [fleet] key, or NULL. */
const char *config_fleet_env(const char *key);

/*
 * Read cfg->config_file into cfg (a missing file is no error unless
 * required: then config_file becomes ""); -EINVAL with err.
 */
int config_file_load(struct config *cfg, int required, char *err, size_t errlen);

/* Read cfg->prices_file's [prices], when set; -EINVAL with err. */
int config_file_load_prices(struct config *cfg, char *err, size_t errlen);

#endif
