/*
** runutil.h: the pure parts of `hpoctl run`: environment names, {name}
** placeholders and the `hpo:` lines a command prints. No I/O, unit-tested.
*/
#ifndef HPOCTL_RUNUTIL_H
#define HPOCTL_RUNUTIL_H

#include <stddef.h>
#include <stdint.h>

/*
** The environment variable of a param: "HPO_PARAM_" followed by the name
** upper-cased, each character outside [A-Za-z0-9] replaced by '_'
** ("learning-rate" gives HPO_PARAM_LEARNING_RATE). New string, NULL on OOM.
*/
char *hpoctl_env_name(const char *param);

/*
** Looks up placeholder `name` (`len` bytes, not NUL-terminated): returns the
** text to put in its place (borrowed), or NULL to leave "{name}" as it is.
*/
typedef const char *(*hpoctl_lookup_fn)(void *userdata, const char *name, size_t len);

/*
** Replace every "{name}" in `arg` for which `lookup` has a value. A "{" with
** no "}" after it, or an unknown name, stays as written. New string, NULL on
** OOM.
*/
char *hpoctl_substitute(const char *arg, hpoctl_lookup_fn lookup, void *userdata);

enum hpoctl_line_kind {
    HPOCTL_LINE_OTHER,  /* not for us: forward it */
    HPOCTL_LINE_REPORT, /* "hpo: report STEP VALUE": *ret_step, *ret_value set */
    HPOCTL_LINE_VALUE,  /* "hpo: value V": *ret_value set */
    HPOCTL_LINE_BAD,    /* starts with "hpo:" but is malformed, or a value is not finite */
    HPOCTL_LINE_NAMED_VALUE, /* "hpo: value NAME V": *ret_name, *ret_name_len, *ret_value set */
    HPOCTL_LINE_CONSTRAINT,  /* "hpo: constraint NAME V": the same */
};

/*
** Classify one line of a command's output (without its newline; a trailing
** '\r' and blanks are ignored). STEP is an integer >= 0, VALUE a finite
** number as strtod reads it. The out-parameters are set only for REPORT and
** VALUE.
*/
enum hpoctl_line_kind hpoctl_parse_line(const char *line, int64_t *ret_step, double *ret_value);

/*
** The same, also reading "hpo: value NAME V" (an objective of a study with
** objectives) and "hpo: constraint NAME V": NAME is the next run of
** non-blank characters that is not a number; *ret_name points into `line` (not NUL-terminated,
** *ret_name_len bytes). hpoctl_parse_line answers these kinds too, without
** the name.
*/
enum hpoctl_line_kind hpoctl_parse_line_named(const char *line, int64_t *ret_step,
        double *ret_value, const char **ret_name, size_t *ret_name_len);

#endif
