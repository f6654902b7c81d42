/*
** space.h: the search space of a study, its validation, and the maps
** between parameter values and the unit cube (docs/ALGORITHMS.md §0).
**
** A point is held two ways, both arrays of `space->dim` doubles:
**  - values: float and int params as their value (ints exactly), a
**    categorical as its choice index; NaN where the param is inactive.
**  - unit: each coordinate in [0,1] (log, half-step padding, log ints);
**    a categorical as (index + 0.5) / n_choices; NaN where inactive.
** A vector param (`size`) takes `size` consecutive coordinates from `offset`;
** a scalar takes one. Scalars come first (in param order), vectors after.
*/
#ifndef HPO_CORE_SPACE_H
#define HPO_CORE_SPACE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "error.h"

#define HPO_NAME_MAX      128
#define HPO_MAX_PARAMS    10000
#define HPO_MAX_CHOICES   100000
#define HPO_MAX_VECTOR    (32 * 1024 * 1024) /* 256 MiB of float64: the binary body cap */
#define HPO_MAX_SPACE_DIM (64 * 1024 * 1024)

enum hpo_param_type { HPO_PARAM_FLOAT, HPO_PARAM_INT, HPO_PARAM_CATEGORICAL };

/* One `when` condition: param `parent` must take one of `values` (values form). */
struct hpo_condition {
    size_t parent;
    size_t n_values;
    double *values;
};

struct hpo_param {
    char name[HPO_NAME_MAX + 1];
    enum hpo_param_type type;
    bool log;
    double low, high; /* float/int bounds (ints exact in a double) */
    double step;      /* float: 0 = continuous; int: >= 1 */
    json_t *choices;  /* categorical: the array of choices, as given (owned) */
    size_t n_choices;
    size_t size;   /* 0 for a scalar, else the vector length */
    size_t offset; /* first coordinate of this param in a point */
    size_t width;  /* coordinates it takes: 1, or size */
    size_t n_conditions;
    struct hpo_condition *conditions;
    /* Unit-cube transform: u = (t(v) - ulow) / (uhigh - ulow), t = id or ln. */
    double ulow, uhigh;
    double n_grid; /* number of grid values for int/stepped floats, else 0 */
};

struct hpo_space {
    size_t n_params;
    struct hpo_param *params;
    size_t dim;       /* total coordinates */
    size_t scalar_dim; /* coordinates of scalar params: 0..scalar_dim-1; vectors follow */
    bool has_vectors; /* any param with `size` */
    bool conditional; /* any param with `when` */
};

/*
** Parse and validate a JSON array of param definitions
** (docs/REFERENCE.md "Search space"). On success *ret_space is a new space (free with
** hpo_space_destroy). On failure returns -EINVAL and fills `err` with
** invalid_argument naming the field, e.g. "params[1].low".
*/
int hpo_space_parse(const json_t *params, struct hpo_space **ret_space, struct hpo_error *err);

/* Free a space; accepts NULL. */
void hpo_space_destroy(struct hpo_space *space);

/* The definition with every default filled in (new reference), for echoing and comparing. */
json_t *hpo_space_to_json(const struct hpo_space *space);

/* Index of the param named `name`, or -1. */
long hpo_space_find(const struct hpo_space *space, const char *name);

/* Value -> unit coordinate for one scalar coordinate of `p`. */
double hpo_param_to_unit(const struct hpo_param *p, double value);

/* Unit coordinate -> valid value (grid snapped, clipped; categorical index). */
double hpo_param_from_unit(const struct hpo_param *p, double u);

/* hpo_param_from_unit() of n coordinates (a vector's), bit for bit the same, faster. */
void hpo_param_from_unit_n(const struct hpo_param *p, const double *unit, double *out, size_t n);

/*
** How a sampler's suggestions are decoded where the values must be
** recomputed bit for bit later (docs/DESIGN.md "Storage and side files",
** decode versions): a continuous log param's e^w by the C library's exp
** (LIBM: what every study stored before decode versions used) or by
** core/hexp.c's hpo_exp (HEXP: the same bits in every build, vectorized).
** Everything else is the same.
*/
enum hpo_decode { HPO_DECODE_LIBM, HPO_DECODE_HEXP };

/* hpo_param_from_unit_n() with `how`'s exp (LIBM: the same bits as it). */
void hpo_param_decode_n(const struct hpo_param *p, const double *unit, double *out, size_t n,
        enum hpo_decode how);

/* Snap an arbitrary value onto the param's grid and bounds (ints and steps). */
double hpo_param_snap(const struct hpo_param *p, double value);

/* Whether a value (values form) is a valid value of the param: in range, on grid. */
bool hpo_param_valid(const struct hpo_param *p, double value);

/* Unit-cube bin edges of grid value `value` of an int/stepped param. */
void hpo_param_bin(const struct hpo_param *p, double value, double *ret_lo, double *ret_hi);

/*
** Whether param `i` is active given the values of earlier params (values
** form; NaN = inactive).
*/
bool hpo_space_active(const struct hpo_space *space, size_t i, const double *values);

/*
** Turn a unit point (as a sampler produced it) into values, in place order:
** decode each coordinate, then mark params inactive under `when` as NaN.
** `unit` is rewritten to the canonical encoding of the decoded values.
*/
void hpo_space_decode(const struct hpo_space *space, double *unit, double *ret_values);

/* Encode values into unit coordinates (NaN stays NaN). */
void hpo_space_encode(const struct hpo_space *space, const double *values, double *ret_unit);

/*
** Parse a params object given by a user into values. With `partial` true,
** missing active params are allowed and left NaN (an enqueued trial is
** completed by the sampler at ask); otherwise every active param must be
** present. Inactive params must be absent. Errors name "params.<name>".
*/
int hpo_space_values_from_json(const struct hpo_space *space, const json_t *obj, bool partial,
        double *ret_values, struct hpo_error *err);

/*
** The params object for values (new reference). Vector params longer than
** `href_over` elements are given as {"size": N, "href": "<href_base>/<name>"}
** when href_base is non-NULL.
*/
json_t *hpo_space_values_to_json(const struct hpo_space *space, const double *values,
        const char *href_base, size_t href_over);

/*
** As hpo_space_values_to_json; with `thin`, `values` holds only the first
** scalar_dim coordinates and every vector param must be shown as an href
** (its size over href_over), its presence decided by its `when` conditions.
*/
json_t *hpo_space_values_to_json_thin(const struct hpo_space *space, const double *values,
        const char *href_base, size_t href_over, bool thin);

/* The JSON value of one scalar coordinate of param p (new reference). */
json_t *hpo_param_value_json(const struct hpo_param *p, double value);

/* Validate a name: 1-128 chars of A-Z a-z 0-9 _ . - */
bool hpo_name_valid(const char *name);

#endif
