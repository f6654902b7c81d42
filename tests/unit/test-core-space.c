/*
** test-core-space.c: the search space (core/space.c): every validation rule
** of docs/REFERENCE.md "Search space" with the exact field it names, the defaults echoed
** by hpo_space_to_json, the unit-cube transforms of docs/ALGORITHMS.md §0,
** conditional decoding and user values parsed from JSON.
*/
#include <errno.h>
#include <float.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "rng.h"
#include "space.h"

/* JSON text with ' for " (so specs read without escapes); new reference. */
static json_t *load_at(const char *text, const char *file, int line)
{
    size_t n = strlen(text);
    char *buf = malloc(n + 1);
    json_error_t jerr;
    json_t *j;

    assert_non_null(buf);
    for (size_t i = 0; i <= n; i++) {
        buf[i] = text[i] == '\'' ? '"' : text[i];
    }
    j = json_loads(buf, JSON_DECODE_ANY, &jerr);
    if (j == NULL) {
        print_error("bad JSON in test at %s:%d: %s: %s\n", file, line, jerr.text, buf);
    }
    free(buf);
    _assert_true(j != NULL, "json_loads", file, line);
    return j;
}
#define load(text) load_at(text, __FILE__, __LINE__)

static struct hpo_space *parse_ok_at(const char *text, const char *file, int line)
{
    json_t *j = load_at(text, file, line);
    struct hpo_space *space = NULL;
    struct hpo_error err = { 0 };
    int r = hpo_space_parse(j, &space, &err);

    json_decref(j);
    if (r != 0) {
        print_error("%s:%d: rejected (%s: %s): %s\n", file, line, err.field, err.message, text);
    }
    _assert_int_equal(r, 0, file, line);
    return space;
}
#define parse_ok(text) parse_ok_at(text, __FILE__, __LINE__)

/* Parse a json_t spec and expect invalid_argument naming `field`. */
static void expect_invalid_json_at(const json_t *j, const char *field, const char *text,
        const char *file, int line)
{
    struct hpo_space *space = NULL;
    struct hpo_error err = { 0 };
    int r = hpo_space_parse(j, &space, &err);

    if (r != -EINVAL || strcmp(err.field, field) != 0) {
        print_error("%s:%d: r=%d field '%s' (want '%s'), message '%s': %s\n", file, line, r,
                err.field, field, err.message, text ? text : "(built)");
    }
    _assert_int_equal(r, -EINVAL, file, line);
    _assert_true(space == NULL, "space untouched", file, line);
    _assert_int_equal(err.code, HPO_INVALID_ARGUMENT, file, line);
    _assert_string_equal(err.field, field, file, line);
    /* Every message names the field it is about, or the limit it broke. */
    _assert_true(err.message[0] != '\0', "message set", file, line);
}

static void expect_invalid_at(const char *text, const char *field, const char *file, int line)
{
    json_t *j = load_at(text, file, line);

    expect_invalid_json_at(j, field, text, file, line);
    json_decref(j);
}
#define expect_invalid(text, field) expect_invalid_at(text, field, __FILE__, __LINE__)

static void expect_valid_at(const char *text, const char *file, int line)
{
    hpo_space_destroy(parse_ok_at(text, file, line));
}
#define expect_valid(text) expect_valid_at(text, __FILE__, __LINE__)

/* Parse a one-param spec whose text is the param object. */
static struct hpo_space *parse1(const char *param_text)
{
    char buf[1024];

    snprintf(buf, sizeof(buf), "[%s]", param_text);
    return parse_ok(buf);
}

#define F01 "'type':'float','low':0,'high':1"

/* ---- validation: the params array and param objects ---- */

static void test_params_array(void **unused)
{
    expect_invalid("{}", "params");
    expect_invalid("[]", "params");
    expect_invalid("'params'", "params");
    expect_invalid("null", "params");
    expect_invalid("[1]", "params[0]");
    expect_invalid("[{'name':'a'," F01 "},'x']", "params[1]");
    expect_invalid("[{'name':'a'," F01 "},[]]", "params[1]");
    expect_valid("[{'name':'a'," F01 "}]");
}

static void test_unknown_keys(void **unused)
{
    expect_invalid("[{'name':'a'," F01 ",'foo':1}]", "params[0].foo");
    expect_invalid("[{'name':'a'," F01 "},{'name':'b'," F01 ",'lowe':0}]", "params[1].lowe");
    /* Keys are case-sensitive. */
    expect_invalid("[{'Name':'a'," F01 "}]", "params[0].Name");
    expect_invalid("[{'name':'a'," F01 ",'default':0.5}]", "params[0].default");
}

/* ---- names ---- */

static void test_name_charset(void **unused)
{
    expect_valid("[{'name':'a'," F01 "}]");
    expect_valid("[{'name':'Az_09.-x'," F01 "}]");
    expect_valid("[{'name':'-'," F01 "}]");
    expect_valid("[{'name':'..'," F01 "}]");
    expect_valid("[{'name':'0'," F01 "}]");
    expect_invalid("[{" F01 "}]", "params[0].name");
    expect_invalid("[{'name':''," F01 "}]", "params[0].name");
    expect_invalid("[{'name':'a b'," F01 "}]", "params[0].name");
    expect_invalid("[{'name':'a/b'," F01 "}]", "params[0].name");
    expect_invalid("[{'name':'a:b'," F01 "}]", "params[0].name");
    expect_invalid("[{'name':'a+b'," F01 "}]", "params[0].name");
    expect_invalid("[{'name':'a\\tb'," F01 "}]", "params[0].name");
    expect_invalid("[{'name':'caf\xc3\xa9'," F01 "}]", "params[0].name");
    expect_invalid("[{'name':5," F01 "}]", "params[0].name");
    expect_invalid("[{'name':null," F01 "}]", "params[0].name");
    expect_invalid("[{'name':['a']," F01 "}]", "params[0].name");
    expect_invalid("[{'name':'a'," F01 "},{'name':'b '," F01 "}]", "params[1].name");
    assert_false(hpo_name_valid(NULL));
    assert_false(hpo_name_valid(""));
    assert_true(hpo_name_valid("lr"));
}

static void test_name_length(void **unused)
{
    char name[HPO_NAME_MAX + 2];
    json_t *j;
    struct hpo_space *space = NULL;
    struct hpo_error err = { 0 };

    memset(name, 'n', HPO_NAME_MAX);
    name[HPO_NAME_MAX] = '\0';
    assert_true(hpo_name_valid(name));
    j = json_pack("[{s:s,s:s,s:i,s:i}]", "name", name, "type", "int", "low", 0, "high", 3);
    assert_int_equal(hpo_space_parse(j, &space, &err), 0);
    assert_string_equal(space->params[0].name, name);
    assert_int_equal(hpo_space_find(space, name), 0);
    hpo_space_destroy(space);
    json_decref(j);

    name[HPO_NAME_MAX] = 'n';
    name[HPO_NAME_MAX + 1] = '\0';
    assert_false(hpo_name_valid(name));
    j = json_pack("[{s:s,s:s,s:i,s:i}]", "name", name, "type", "int", "low", 0, "high", 3);
    expect_invalid_json_at(j, "params[0].name", NULL, __FILE__, __LINE__);
    json_decref(j);
}

static void test_name_unique(void **unused)
{
    struct hpo_space *space;
    json_t *j = load("[{'name':'a'," F01 "},{'name':'b'," F01 "},{'name':'a'," F01 "}]");
    struct hpo_error err = { 0 };

    expect_invalid_json_at(j, "params[2].name", NULL, __FILE__, __LINE__);
    assert_int_equal(hpo_space_parse(j, &space, &err), -EINVAL);
    assert_string_equal(err.message, "params[2].name 'a' is already used by params[0]");
    json_decref(j);
    expect_invalid("[{'name':'x'," F01 "},{'name':'x','type':'categorical','choices':[1]}]",
            "params[1].name");
    /* Case-sensitive: a and A are two names. */
    space = parse_ok("[{'name':'a'," F01 "},{'name':'A'," F01 "}]");
    assert_int_equal(hpo_space_find(space, "a"), 0);
    assert_int_equal(hpo_space_find(space, "A"), 1);
    assert_int_equal(hpo_space_find(space, "b"), -1);
    hpo_space_destroy(space);
}

static void test_type(void **unused)
{
    expect_invalid("[{'name':'a','low':0,'high':1}]", "params[0].type");
    expect_invalid("[{'name':'a','type':'double','low':0,'high':1}]", "params[0].type");
    expect_invalid("[{'name':'a','type':'Float','low':0,'high':1}]", "params[0].type");
    expect_invalid("[{'name':'a','type':1,'low':0,'high':1}]", "params[0].type");
    expect_invalid("[{'name':'a','type':null,'low':0,'high':1}]", "params[0].type");
    /* Keys of other types. */
    expect_invalid("[{'name':'a','type':'float','low':0,'high':1,'choices':[1]}]",
            "params[0].choices");
    expect_invalid("[{'name':'a','type':'int','low':0,'high':1,'choices':[1]}]",
            "params[0].choices");
    expect_invalid("[{'name':'c','type':'categorical','choices':[1],'low':0}]", "params[0].low");
    expect_invalid("[{'name':'c','type':'categorical','choices':[1],'high':0}]",
            "params[0].high");
    expect_invalid("[{'name':'c','type':'categorical','choices':[1],'log':false}]",
            "params[0].log");
    expect_invalid("[{'name':'c','type':'categorical','choices':[1],'step':1}]",
            "params[0].step");
    expect_invalid("[{'name':'c','type':'categorical','choices':[1],'size':2}]",
            "params[0].size");
}

/* ---- float ---- */

static void test_float_bounds(void **unused)
{
    struct hpo_space *space;
    json_t *j;
    struct hpo_error err = { 0 };

    expect_valid("[{'name':'a','type':'float','low':-1e300,'high':1e300}]");
    expect_valid("[{'name':'a','type':'float','low':0.5,'high':0.50000000000000011}]");
    expect_invalid("[{'name':'a','type':'float','high':1}]", "params[0].low");
    expect_invalid("[{'name':'a','type':'float','low':0}]", "params[0].high");
    expect_invalid("[{'name':'a','type':'float','low':'0','high':1}]", "params[0].low");
    expect_invalid("[{'name':'a','type':'float','low':null,'high':1}]", "params[0].low");
    expect_invalid("[{'name':'a','type':'float','low':0,'high':true}]", "params[0].high");
    expect_invalid("[{'name':'a','type':'float','low':0,'high':[1]}]", "params[0].high");
    expect_invalid("[{'name':'a','type':'float','low':1,'high':1}]", "params[0].low");
    expect_invalid("[{'name':'a','type':'float','low':2,'high':1}]", "params[0].low");
    /* Finite bounds whose difference overflows. */
    expect_invalid("[{'name':'a','type':'float','low':-1e308,'high':1e308}]", "params[0].high");
    /* The message of docs/REFERENCE.md's example, for the second param. */
    j = load("[{'name':'a'," F01 "},{'name':'b','type':'float','low':1,'high':0}]");
    assert_int_equal(hpo_space_parse(j, &space, &err), -EINVAL);
    assert_string_equal(err.field, "params[1].low");
    assert_string_equal(err.message, "params[1].low must be < high");
    json_decref(j);
}

static void test_float_log(void **unused)
{
    struct hpo_space *space;

    space = parse1("{'name':'a','type':'float','low':1e-5,'high':0.1,'log':true}");
    assert_true(space->params[0].log);
    assert_true(space->params[0].ulow == log(1e-5));
    assert_true(space->params[0].uhigh == log(0.1));
    hpo_space_destroy(space);
    expect_valid("[{'name':'a','type':'float','low':5e-324,'high':1,'log':true}]");
    expect_valid("[{'name':'a','type':'float','low':-1,'high':1,'log':false}]");
    expect_invalid("[{'name':'a','type':'float','low':0,'high':1,'log':true}]", "params[0].low");
    expect_invalid("[{'name':'a','type':'float','low':-1,'high':1,'log':true}]",
            "params[0].low");
    expect_invalid("[{'name':'a','type':'float','low':1,'high':2,'log':'true'}]",
            "params[0].log");
    expect_invalid("[{'name':'a','type':'float','low':1,'high':2,'log':1}]", "params[0].log");
    expect_invalid("[{'name':'a','type':'float','low':1,'high':2,'log':null}]", "params[0].log");
}

static void test_float_step(void **unused)
{
    struct hpo_space *space;

    space = parse1("{'name':'a','type':'float','low':0,'high':0.5,'step':0.05}");
    assert_true(space->params[0].step == 0.05);
    assert_true(space->params[0].n_grid == 11.0);
    hpo_space_destroy(space);
    /* A step wider than the range: the grid is {low}. */
    space = parse1("{'name':'a','type':'float','low':0,'high':1,'step':5}");
    assert_true(space->params[0].n_grid == 1.0);
    assert_true(hpo_param_from_unit(&space->params[0], 1.0) == 0.0);
    hpo_space_destroy(space);
    expect_invalid("[{'name':'a','type':'float','low':0,'high':1,'step':0}]", "params[0].step");
    expect_invalid("[{'name':'a','type':'float','low':0,'high':1,'step':-0.1}]",
            "params[0].step");
    expect_invalid("[{'name':'a','type':'float','low':0,'high':1,'step':'0.1'}]",
            "params[0].step");
    expect_invalid("[{'name':'a','type':'float','low':0,'high':1,'step':true}]",
            "params[0].step");
    /* log and step exclude each other, whichever is written first. */
    expect_invalid("[{'name':'a','type':'float','low':1,'high':2,'log':true,'step':0.1}]",
            "params[0].step");
    expect_invalid("[{'name':'a','type':'float','step':0.1,'low':1,'high':2,'log':true}]",
            "params[0].step");
    /* log: false with a step is fine. */
    expect_valid("[{'name':'a','type':'float','low':1,'high':2,'log':false,'step':0.1}]");
    /* More than 1e15 grid values. */
    expect_invalid("[{'name':'a','type':'float','low':0,'high':1,'step':1e-16}]",
            "params[0].step");
    expect_valid("[{'name':'a','type':'float','low':0,'high':1,'step':1e-6}]");
}

static void test_size(void **unused)
{
    struct hpo_space *space;

    space = parse_ok("[{'name':'a','type':'int','low':0,'high':3},"
                     "{'name':'v','type':'float','low':-1,'high':1,'size':5},"
                     "{'name':'b','type':'float','low':0,'high':1,'size':1}]");
    assert_int_equal(space->dim, 7);
    assert_true(space->has_vectors);
    assert_false(space->conditional);
    assert_int_equal(space->params[1].offset, 1);
    assert_int_equal(space->params[1].width, 5);
    assert_int_equal(space->params[1].size, 5);
    assert_int_equal(space->params[2].offset, 6);
    assert_int_equal(space->params[2].width, 1);
    assert_int_equal(space->params[2].size, 1);
    hpo_space_destroy(space);
    expect_valid("[{'name':'v','type':'float','low':1e-8,'high':1,'log':true,'size':3}]");
    expect_valid("[{'name':'v','type':'float','low':0,'high':1,'step':0.5,'size':3}]");
    expect_invalid("[{'name':'v'," F01 ",'size':0}]", "params[0].size");
    expect_invalid("[{'name':'v'," F01 ",'size':-1}]", "params[0].size");
    expect_invalid("[{'name':'v'," F01 ",'size':1.5}]", "params[0].size");
    expect_invalid("[{'name':'v'," F01 ",'size':2.0}]", "params[0].size");
    expect_invalid("[{'name':'v'," F01 ",'size':'3'}]", "params[0].size");
    expect_invalid("[{'name':'v'," F01 ",'size':33554433}]", "params[0].size");
    expect_invalid("[{'name':'v','type':'int','low':0,'high':1,'size':2}]", "params[0].size");
}

/* ---- int ---- */

static void test_int_rules(void **unused)
{
    struct hpo_space *space;

    space = parse1("{'name':'n','type':'int','low':-3,'high':-3}");
    assert_true(space->params[0].n_grid == 1.0);
    assert_true(space->params[0].step == 1.0);
    assert_true(hpo_param_from_unit(&space->params[0], 0.0) == -3.0);
    assert_true(hpo_param_from_unit(&space->params[0], 1.0) == -3.0);
    hpo_space_destroy(space);
    expect_valid("[{'name':'n','type':'int','low':0,'high':10,'step':3}]");
    expect_valid("[{'name':'n','type':'int','low':1,'high':1000,'log':true,'step':1}]");
    expect_valid("[{'name':'n','type':'int','low':1,'high':1,'log':true}]");
    expect_valid("[{'name':'n','type':'int','low':-1000000000000000,'high':-999999999999990}]");
    expect_valid("[{'name':'n','type':'int','low':999999999999990,'high':1000000000000000}]");
    expect_invalid("[{'name':'n','type':'int','low':0.5,'high':3}]", "params[0].low");
    expect_invalid("[{'name':'n','type':'int','low':1.0,'high':3}]", "params[0].low");
    expect_invalid("[{'name':'n','type':'int','low':'1','high':3}]", "params[0].low");
    expect_invalid("[{'name':'n','type':'int','high':3}]", "params[0].low");
    expect_invalid("[{'name':'n','type':'int','low':1}]", "params[0].high");
    expect_invalid("[{'name':'n','type':'int','low':1,'high':2.5}]", "params[0].high");
    expect_invalid("[{'name':'n','type':'int','low':1,'high':3.0}]", "params[0].high");
    expect_invalid("[{'name':'n','type':'int','low':5,'high':4}]", "params[0].low");
    expect_invalid("[{'name':'n','type':'int','low':0,'high':4,'step':0}]", "params[0].step");
    expect_invalid("[{'name':'n','type':'int','low':0,'high':4,'step':-1}]", "params[0].step");
    expect_invalid("[{'name':'n','type':'int','low':0,'high':4,'step':1.5}]", "params[0].step");
    expect_invalid("[{'name':'n','type':'int','low':0,'high':4,'step':2.0}]", "params[0].step");
    expect_invalid("[{'name':'n','type':'int','low':0,'high':4,'step':null}]", "params[0].step");
    expect_invalid("[{'name':'n','type':'int','low':0,'high':4,'log':true}]", "params[0].low");
    expect_invalid("[{'name':'n','type':'int','low':-3,'high':4,'log':true}]", "params[0].low");
    expect_invalid("[{'name':'n','type':'int','low':1,'high':9,'log':true,'step':2}]",
            "params[0].step");
    expect_invalid("[{'name':'n','type':'int','low':1,'high':9,'log':'yes'}]", "params[0].log");
    /*
    ** Bounds within +-1e15, so every int round-trips through the unit cube;
    ** 2^53 + 1 (which rounds to 2^53 as a double) is caught too.
    */
    expect_invalid("[{'name':'n','type':'int','low':-9007199254740993,'high':0}]",
            "params[0].low");
    expect_invalid("[{'name':'n','type':'int','low':-1000000000000001,'high':0}]",
            "params[0].low");
    expect_invalid("[{'name':'n','type':'int','low':999999999999999,'high':1000000000000001}]",
            "params[0].high");
    expect_invalid("[{'name':'n','type':'int','low':-9007199254740982,'high':-9007199254740982}]",
            "params[0].low");
    /* Log ints: bins narrow as 1/v, so high is at most 1e12. */
    expect_valid("[{'name':'n','type':'int','low':1,'high':1000000000000,'log':true}]");
    expect_invalid("[{'name':'n','type':'int','low':1,'high':1000000000001,'log':true}]",
            "params[0].high");
    /* At most 1e15 + 1 values. */
    expect_invalid("[{'name':'n','type':'int','low':0,'high':1000000000000001}]",
            "params[0].high");
    expect_valid("[{'name':'n','type':'int','low':0,'high':1000000000000000}]");
}

/* ---- categorical ---- */

static void test_categorical_rules(void **unused)
{
    struct hpo_space *space;

    space = parse1("{'name':'c','type':'categorical','choices':['a',1,2.5,true,false,'1']}");
    assert_int_equal(space->params[0].n_choices, 6);
    assert_true(space->params[0].n_grid == 6.0);
    hpo_space_destroy(space);
    expect_valid("[{'name':'c','type':'categorical','choices':['only']}]");
    expect_valid("[{'name':'c','type':'categorical','choices':['', ' ']}]");
    expect_invalid("[{'name':'c','type':'categorical'}]", "params[0].choices");
    expect_invalid("[{'name':'c','type':'categorical','choices':[]}]", "params[0].choices");
    expect_invalid("[{'name':'c','type':'categorical','choices':'a'}]", "params[0].choices");
    expect_invalid("[{'name':'c','type':'categorical','choices':{'a':1}}]",
            "params[0].choices");
    expect_invalid("[{'name':'c','type':'categorical','choices':null}]", "params[0].choices");
    expect_invalid("[{'name':'c','type':'categorical','choices':[null]}]",
            "params[0].choices[0]");
    expect_invalid("[{'name':'c','type':'categorical','choices':['a',[1]]}]",
            "params[0].choices[1]");
    expect_invalid("[{'name':'c','type':'categorical','choices':['a','b',{}]}]",
            "params[0].choices[2]");
    /* Distinct: the earliest repeat is named. */
    expect_invalid("[{'name':'c','type':'categorical','choices':['a','b','a']}]",
            "params[0].choices[2]");
    expect_invalid("[{'name':'c','type':'categorical','choices':['x','y','y','x']}]",
            "params[0].choices[2]");
    expect_invalid("[{'name':'c','type':'categorical','choices':[true,false,true]}]",
            "params[0].choices[2]");
    expect_invalid("[{'name':'c','type':'categorical','choices':[3,1,2,1]}]",
            "params[0].choices[3]");
    /* 1 and 1.0 are the same JSON number, so the same choice. */
    expect_invalid("[{'name':'c','type':'categorical','choices':[1,2,1.0]}]",
            "params[0].choices[2]");
    expect_invalid("[{'name':'c','type':'categorical','choices':[0.5,'a',5e-1]}]",
            "params[0].choices[2]");
    /* But a string, a number and a boolean never clash. */
    expect_valid("[{'name':'c','type':'categorical','choices':['1',1,true]}]");
    expect_valid("[{'name':'c','type':'categorical','choices':['0',0,false]}]");
}

static void test_categorical_many_choices(void **unused)
{
    json_t *choices = json_array();
    json_t *spec;
    struct hpo_space *space = NULL;
    struct hpo_error err = { 0 };
    char buf[32];

    for (int i = 0; i < HPO_MAX_CHOICES; i++) {
        snprintf(buf, sizeof(buf), "c%d", i);
        json_array_append_new(choices, json_string(buf));
    }
    spec = json_pack("[{s:s,s:s,s:O}]", "name", "c", "type", "categorical", "choices", choices);
    assert_int_equal(hpo_space_parse(spec, &space, &err), 0);
    assert_int_equal(space->params[0].n_choices, HPO_MAX_CHOICES);
    hpo_space_destroy(space);
    json_decref(spec);
    /* A repeat far past the first few thousand choices is still found. */
    json_array_set_new(choices, HPO_MAX_CHOICES - 1, json_string("c70000"));
    spec = json_pack("[{s:s,s:s,s:O}]", "name", "c", "type", "categorical", "choices", choices);
    expect_invalid_json_at(spec, "params[0].choices[99999]", NULL, __FILE__, __LINE__);
    assert_int_equal(hpo_space_parse(spec, &space, &err), -EINVAL);
    assert_string_equal(err.message, "params[0].choices[99999] repeats choices[70000]");
    json_decref(spec);
    json_array_set_new(choices, HPO_MAX_CHOICES - 1, json_string("c99999"));
    json_array_append_new(choices, json_string("one too many"));
    spec = json_pack("[{s:s,s:s,s:O}]", "name", "c", "type", "categorical", "choices", choices);
    expect_invalid_json_at(spec, "params[0].choices", NULL, __FILE__, __LINE__);
    json_decref(spec);
    json_decref(choices);
}

/* ---- when ---- */

/* Three possible parents: a categorical, an int, a float; the tested param is params[3]. */
#define PARENTS                                                                            \
    "{'name':'optimizer','type':'categorical','choices':['adam','sgd','rmsprop']},"       \
    "{'name':'layers','type':'int','low':1,'high':8},"                                     \
    "{'name':'lr','type':'float','low':0.001,'high':1,'log':true},"

static void test_when_rules(void **unused)
{
    struct hpo_space *space;

    space = parse_ok("[" PARENTS "{'name':'m'," F01 ",'when':{'optimizer':['sgd','rmsprop']}}]");
    assert_true(space->conditional);
    assert_int_equal(space->params[3].n_conditions, 1);
    assert_int_equal(space->params[3].conditions[0].parent, 0);
    assert_int_equal(space->params[3].conditions[0].n_values, 2);
    assert_true(space->params[3].conditions[0].values[0] == 1.0);
    assert_true(space->params[3].conditions[0].values[1] == 2.0);
    hpo_space_destroy(space);
    space = parse_ok("[" PARENTS "{'name':'m'," F01 ",'when':{'optimizer':['adam'],"
                     "'layers':[2,8]}}]");
    assert_int_equal(space->params[3].n_conditions, 2);
    hpo_space_destroy(space);
    /* The example of the brief: the categorical at params[2]. */
    expect_invalid("[{'name':'a'," F01 "},"
                   "{'name':'optimizer','type':'categorical','choices':['adam','sgd']},"
                   "{'name':'m'," F01 ",'when':{'optimizer':['lbfgs']}}]",
            "params[2].when.optimizer");
    expect_invalid("[" PARENTS "{'name':'m'," F01 ",'when':'optimizer'}]", "params[3].when");
    expect_invalid("[" PARENTS "{'name':'m'," F01 ",'when':{}}]", "params[3].when");
    expect_invalid("[" PARENTS "{'name':'m'," F01 ",'when':[]}]", "params[3].when");
    expect_invalid("[" PARENTS "{'name':'m'," F01 ",'when':null}]", "params[3].when");
    expect_invalid("[" PARENTS "{'name':'m'," F01 ",'when':{'nope':['a']}}]",
            "params[3].when.nope");
    expect_invalid("[" PARENTS "{'name':'m'," F01 ",'when':{'optimizer':'sgd'}}]",
            "params[3].when.optimizer");
    expect_invalid("[" PARENTS "{'name':'m'," F01 ",'when':{'optimizer':[]}}]",
            "params[3].when.optimizer");
    expect_invalid("[" PARENTS "{'name':'m'," F01 ",'when':{'optimizer':['sgd','lbfgs']}}]",
            "params[3].when.optimizer");
    expect_invalid("[" PARENTS "{'name':'m'," F01 ",'when':{'optimizer':[1]}}]",
            "params[3].when.optimizer");
    expect_invalid("[" PARENTS "{'name':'m'," F01 ",'when':{'optimizer':[null]}}]",
            "params[3].when.optimizer");
    /* A float parent is not allowed, whatever the value. */
    expect_invalid("[" PARENTS "{'name':'m'," F01 ",'when':{'lr':[0.01]}}]",
            "params[3].when.lr");
    /* Int parents: JSON integers that are values of the param. */
    expect_valid("[" PARENTS "{'name':'m'," F01 ",'when':{'layers':[1,8]}}]");
    expect_invalid("[" PARENTS "{'name':'m'," F01 ",'when':{'layers':[9]}}]",
            "params[3].when.layers");
    expect_invalid("[" PARENTS "{'name':'m'," F01 ",'when':{'layers':[0]}}]",
            "params[3].when.layers");
    expect_invalid("[" PARENTS "{'name':'m'," F01 ",'when':{'layers':[2.0]}}]",
            "params[3].when.layers");
    expect_invalid("[" PARENTS "{'name':'m'," F01 ",'when':{'layers':['2']}}]",
            "params[3].when.layers");
    expect_invalid("[" PARENTS "{'name':'m'," F01 ",'when':{'layers':[true]}}]",
            "params[3].when.layers");
    expect_valid("[{'name':'k','type':'int','low':0,'high':10,'step':5},"
                 "{'name':'m'," F01 ",'when':{'k':[0,10]}}]");
    expect_invalid("[{'name':'k','type':'int','low':0,'high':10,'step':5},"
                   "{'name':'m'," F01 ",'when':{'k':[3]}}]",
            "params[1].when.k");
    /* Only earlier params: not a later one, not itself. */
    expect_invalid("[{'name':'m'," F01 ",'when':{'c':['a']}},"
                   "{'name':'c','type':'categorical','choices':['a']}]",
            "params[0].when.c");
    expect_invalid("[{'name':'c','type':'categorical','choices':['a'],'when':{'c':['a']}}]",
            "params[0].when.c");
    /* A vector (necessarily float) parent. */
    expect_invalid("[{'name':'v'," F01 ",'size':2},{'name':'m'," F01 ",'when':{'v':[0]}}]",
            "params[1].when.v");
    /* Categorical choices given as numbers and booleans match as JSON values. */
    space = parse_ok("[{'name':'c','type':'categorical','choices':[1,2.5,true,'x']},"
                     "{'name':'m'," F01 ",'when':{'c':[1.0,true,'x']}}]");
    assert_true(space->params[1].conditions[0].values[0] == 0.0);
    assert_true(space->params[1].conditions[0].values[1] == 2.0);
    assert_true(space->params[1].conditions[0].values[2] == 3.0);
    hpo_space_destroy(space);
    expect_invalid("[{'name':'c','type':'categorical','choices':[1,2.5,true,'x']},"
                   "{'name':'m'," F01 ",'when':{'c':['1']}}]",
            "params[1].when.c");
    expect_invalid("[{'name':'c','type':'categorical','choices':[1,2.5,true,'x']},"
                   "{'name':'m'," F01 ",'when':{'c':[false]}}]",
            "params[1].when.c");
    /* A conditional param may itself be a parent. */
    expect_valid("[" PARENTS "{'name':'m','type':'categorical','choices':['p','q'],"
                 "'when':{'optimizer':['sgd']}},{'name':'z'," F01 ",'when':{'m':['q']}}]");
}

/* ---- limits ---- */

static void test_space_limits(void **unused)
{
    json_t *params = json_array();
    struct hpo_space *space = NULL;
    struct hpo_error err = { 0 };
    char name[32];

    for (int i = 0; i < HPO_MAX_PARAMS; i++) {
        snprintf(name, sizeof(name), "p%d", i);
        json_array_append_new(params, json_pack("{s:s,s:s,s:i,s:i}", "name", name, "type", "int",
                                              "low", 0, "high", i));
    }
    assert_int_equal(hpo_space_parse(params, &space, &err), 0);
    assert_int_equal(space->n_params, HPO_MAX_PARAMS);
    assert_int_equal(space->dim, HPO_MAX_PARAMS);
    hpo_space_destroy(space);
    json_array_append_new(params, json_pack("{s:s,s:s,s:i,s:i}", "name", "last", "type", "int",
                                          "low", 0, "high", 1));
    expect_invalid_json_at(params, "params", NULL, __FILE__, __LINE__);
    json_decref(params);

    /* The largest vector alone fits; three of them exceed the space's coordinates. */
    space = parse1("{'name':'v'," F01 ",'size':33554432}");
    assert_int_equal(space->dim, HPO_MAX_VECTOR);
    hpo_space_destroy(space);
    expect_invalid("[{'name':'a'," F01 ",'size':33554432},{'name':'b'," F01 ",'size':33554432},"
                   "{'name':'c'," F01 ",'size':33554432}]",
            "params[2].size");
}

/* ---- hpo_space_to_json ---- */

static void test_to_json_defaults(void **unused)
{
    struct hpo_space *space, *again;
    struct hpo_error err = { 0 };
    json_t *out, *out2, *expect;
    char *dump;

    space = parse_ok("["
        "{'name':'lr','type':'float','low':1e-5,'high':0.1,'log':true},"
        "{'name':'dropout','type':'float','low':0,'high':0.5,'step':0.05},"
        "{'name':'layers','type':'int','low':1,'high':8},"
        "{'name':'units','type':'int','low':16,'high':512,'log':true},"
        "{'name':'opt','type':'categorical','choices':['adam','sgd',1,true]},"
        "{'name':'momentum','type':'float','low':0.5,'high':0.99,'when':{'opt':['sgd',1.0]}},"
        "{'name':'wd','type':'float','low':1e-8,'high':1,'log':true,'size':3},"
        "{'name':'k','type':'int','low':0,'high':10,'step':5,'when':{'layers':[2,3],"
        "'opt':[true]}}]");
    out = hpo_space_to_json(space);
    expect = load("["
        "{'name':'lr','type':'float','low':1e-5,'high':0.1,'log':true},"
        "{'name':'dropout','type':'float','low':0.0,'high':0.5,'log':false,'step':0.05},"
        "{'name':'layers','type':'int','low':1,'high':8,'step':1,'log':false},"
        "{'name':'units','type':'int','low':16,'high':512,'step':1,'log':true},"
        "{'name':'opt','type':'categorical','choices':['adam','sgd',1,true]},"
        "{'name':'momentum','type':'float','low':0.5,'high':0.99,'log':false,"
        "'when':{'opt':['sgd',1]}},"
        "{'name':'wd','type':'float','low':1e-8,'high':1.0,'log':true,'size':3},"
        "{'name':'k','type':'int','low':0,'high':10,'step':5,'log':false,"
        "'when':{'layers':[2,3],'opt':[true]}}]");
    if (!json_equal(out, expect)) {
        dump = json_dumps(out, JSON_COMPACT);
        print_error("got %s\n", dump);
        free(dump);
    }
    assert_true(json_equal(out, expect));
    /* The echo parses to a space that echoes the same: defaults are stable. */
    assert_int_equal(hpo_space_parse(out, &again, &err), 0);
    out2 = hpo_space_to_json(again);
    assert_true(json_equal(out, out2));
    assert_int_equal(again->dim, space->dim);
    json_decref(out2);
    hpo_space_destroy(again);
    json_decref(expect);
    json_decref(out);
    /* Scalars take the first coordinates in param order, vectors follow. */
    assert_int_equal(space->dim, 10);
    assert_int_equal(space->scalar_dim, 7);
    assert_int_equal(space->params[5].offset, 5);
    assert_int_equal(space->params[7].offset, 6);
    assert_int_equal(space->params[6].offset, 7);
    assert_int_equal(hpo_space_find(space, "k"), 7);
    assert_int_equal(hpo_space_find(space, "K"), -1);
    hpo_space_destroy(space);
}

/* ---- transforms ---- */

/* Check one int/stepped param over its whole grid: round trips and bins. */
static void check_grid(const struct hpo_param *p, const double *expect, size_t n)
{
    double prev_hi = 0.0;

    assert_true(p->n_grid == (double)n);
    assert_true(hpo_param_from_unit(p, 0.0) == expect[0]);
    assert_true(hpo_param_from_unit(p, 1.0) == expect[n - 1]);
    assert_true(hpo_param_from_unit(p, -3.0) == expect[0]);
    assert_true(hpo_param_from_unit(p, 7.0) == expect[n - 1]);
    if (p->type != HPO_PARAM_CATEGORICAL) {
        assert_true(expect[n - 1] <= p->high);
    }
    for (size_t k = 0; k < n; k++) {
        double v = expect[k], lo, hi, u = hpo_param_to_unit(p, v);
        if (hpo_param_from_unit(p, u) != v || !hpo_param_valid(p, v)) {
            print_error("%s: grid value %zu = %.17g: decode(encode) %.17g\n", p->name, k, v,
                    hpo_param_from_unit(p, u));
        }
        assert_true(hpo_param_from_unit(p, u) == v);
        assert_true(hpo_param_valid(p, v));
        assert_true(hpo_param_snap(p, v) == v);
        hpo_param_bin(p, v, &lo, &hi);
        /* Bins tile [0,1] in order; the encoding sits inside its own bin. */
        assert_true(fabs(lo - prev_hi) < 1e-12);
        assert_true(lo < u && u < hi);
        if (!p->log) {
            /* Linear grids: equal bins, the encoding at the centre. */
            assert_true(fabs((hi - lo) - 1.0 / (double)n) < 1e-12);
            assert_true(fabs(u - (lo + hi) / 2.0) < 1e-12);
        }
        /* Just inside either edge of the bin still decodes to v. */
        assert_true(hpo_param_from_unit(p, lo + (hi - lo) * 1e-6) == v);
        assert_true(hpo_param_from_unit(p, hi - (hi - lo) * 1e-6) == v);
        prev_hi = hi;
    }
    assert_true(fabs(prev_hi - 1.0) < 1e-12);
}

static void check_int_range(const char *spec, double low, double step, size_t n)
{
    struct hpo_space *space = parse1(spec);
    double *expect = malloc(n * sizeof(*expect));

    assert_non_null(expect);
    for (size_t k = 0; k < n; k++) {
        expect[k] = low + (double)k * step;
    }
    check_grid(&space->params[0], expect, n);
    /* Off the grid and out of range. */
    assert_false(hpo_param_valid(&space->params[0], low - step));
    assert_false(hpo_param_valid(&space->params[0], expect[n - 1] + step));
    assert_false(hpo_param_valid(&space->params[0], low + 0.5));
    assert_false(hpo_param_valid(&space->params[0], NAN));
    if (step > 1.0) {
        assert_false(hpo_param_valid(&space->params[0], low + 1.0));
    }
    free(expect);
    hpo_space_destroy(space);
}

static void test_int_round_trip(void **unused)
{
    check_int_range("{'name':'n','type':'int','low':-5,'high':7}", -5, 1, 13);
    check_int_range("{'name':'n','type':'int','low':-10,'high':10,'step':3}", -10, 3, 7);
    check_int_range("{'name':'n','type':'int','low':-1000,'high':-990,'step':2}", -1000, 2, 6);
    check_int_range("{'name':'n','type':'int','low':0,'high':9,'step':3}", 0, 3, 4);
    check_int_range("{'name':'n','type':'int','low':42,'high':42}", 42, 1, 1);
    check_int_range("{'name':'n','type':'int','low':0,'high':1}", 0, 1, 2);
    check_int_range("{'name':'n','type':'int','low':-50000,'high':49999}", -50000, 1, 100000);
}

static void test_log_int_round_trip(void **unused)
{
    struct hpo_space *space = parse1("{'name':'n','type':'int','low':1,'high':1000,'log':true}");
    const struct hpo_param *p = &space->params[0];
    double expect[1000], prev_width = 2.0;

    for (int v = 1; v <= 1000; v++) {
        expect[v - 1] = v;
    }
    check_grid(p, expect, 1000);
    for (int v = 1; v <= 1000; v++) {
        double lo, hi, nlo, nhi;
        hpo_param_bin(p, v, &lo, &hi);
        /* Bins narrow as v grows: [ln(v - 1/2), ln(v + 1/2)] over ln(1000.5/0.5). */
        assert_true(hi - lo < prev_width);
        assert_true(fabs((hi - lo) - log((v + 0.5) / (v - 0.5)) / log(1000.5 / 0.5)) < 1e-12);
        prev_width = hi - lo;
        if (v < 1000) {
            hpo_param_bin(p, v + 1, &nlo, &nhi);
            assert_true(nlo == hi);
        }
    }
    hpo_space_destroy(space);

    space = parse1("{'name':'n','type':'int','low':16,'high':512,'log':true}");
    {
        double e[497];
        for (int v = 16; v <= 512; v++) {
            e[v - 16] = v;
        }
        check_grid(&space->params[0], e, 497);
    }
    hpo_space_destroy(space);
    space = parse1("{'name':'n','type':'int','low':7,'high':7,'log':true}");
    {
        double e[1] = { 7 };
        check_grid(&space->params[0], e, 1);
    }
    hpo_space_destroy(space);
}

static void test_stepped_float_grid(void **unused)
{
    static const double g1[] = { 0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5 };
    static const double g2[] = { 0, 0.1, 0.2, 0.3 };
    static const double g3[] = { -0.3, -0.2, -0.1, 0, 0.1, 0.2, 0.3 };
    static const double g4[] = { 0.1, 0.35, 0.6, 0.85 };
    static const double g5[] = { 1.5, 2, 2.5, 3 };
    static const double g6[] = { -1, -0.7, -0.4, -0.1, 0.2 };
    static const double g7[] = { -0.3, -0.2, -0.1, 0 };
    struct {
        const char *spec;
        const double *grid;
        size_t n;
    } cases[] = {
        { "{'name':'f','type':'float','low':0,'high':0.5,'step':0.05}", g1, 11 },
        /* 0 + 3 * 0.1 rounds to 0.30000000000000004 > 0.3: the grid must keep 0.3. */
        { "{'name':'f','type':'float','low':0,'high':0.3,'step':0.1}", g2, 4 },
        /* -0.3 + 3 * 0.1 cancels to 5.6e-17: the grid value is 0. */
        { "{'name':'f','type':'float','low':-0.3,'high':0.3,'step':0.1}", g3, 7 },
        /* high off the grid: the last value is the largest low + k*step <= high. */
        { "{'name':'f','type':'float','low':0.1,'high':1.0,'step':0.25}", g4, 4 },
        { "{'name':'f','type':'float','low':1.5,'high':3,'step':0.5}", g5, 4 },
        { "{'name':'f','type':'float','low':-1,'high':0.45,'step':0.3}", g6, 5 },
        { "{'name':'f','type':'float','low':-0.3,'high':0,'step':0.1}", g7, 4 },
    };

    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        struct hpo_space *space = parse1(cases[c].spec);
        const struct hpo_param *p = &space->params[0];
        check_grid(p, cases[c].grid, cases[c].n);
        /* Between two grid values is not valid. */
        assert_false(hpo_param_valid(p, (cases[c].grid[0] + cases[c].grid[1]) / 2.0));
        hpo_space_destroy(space);
    }
}

static void test_stepped_float_odd_low(void **unused)
{
    /*
    ** A low with 17 significant digits: grid value 0 is low exactly (tidying
    ** it to 15 digits would put it below low, found by fuzz-space), and the
    ** others stay within the grid tolerance of low + k * step.
    */
    struct hpo_space *space = parse1("{'name':'f','type':'float','low':0.09007199254740993,"
                                     "'high':0.5,'step':0.05}");
    const struct hpo_param *p = &space->params[0];
    double expect[9];

    for (int k = 0; k < 9; k++) {
        expect[k] = hpo_param_from_unit(p, (k + 0.5) / 9.0);
        assert_true(fabs(expect[k] - (p->low + k * 0.05)) <= 1e-9 * 0.05);
    }
    assert_true(expect[0] == 0.09007199254740993);
    check_grid(p, expect, 9);
    hpo_space_destroy(space);
}

static void test_categorical_transform(void **unused)
{
    struct hpo_space *space = parse1("{'name':'c','type':'categorical','choices':['a','b','c']}");
    const struct hpo_param *p = &space->params[0];
    double expect[3] = { 0, 1, 2 };

    check_grid(p, expect, 3);
    for (int i = 0; i < 3; i++) {
        double lo, hi;
        assert_true(hpo_param_to_unit(p, i) == (i + 0.5) / 3.0);
        hpo_param_bin(p, i, &lo, &hi);
        assert_true(lo == i / 3.0);
        assert_true(hi == (i + 1) / 3.0);
    }
    assert_true(hpo_param_from_unit(p, 0.3333) == 0.0);
    assert_true(hpo_param_from_unit(p, 0.3334) == 1.0);
    assert_true(hpo_param_from_unit(p, 0.9999999) == 2.0);
    assert_false(hpo_param_valid(p, 3.0));
    assert_false(hpo_param_valid(p, -1.0));
    assert_false(hpo_param_valid(p, 0.5));
    hpo_space_destroy(space);

    space = parse1("{'name':'c','type':'categorical','choices':[true]}");
    assert_true(hpo_param_from_unit(&space->params[0], 0.0) == 0.0);
    assert_true(hpo_param_from_unit(&space->params[0], 1.0) == 0.0);
    assert_true(hpo_param_to_unit(&space->params[0], 0.0) == 0.5);
    hpo_space_destroy(space);
}

static void test_continuous_round_trip(void **unused)
{
    static const struct {
        double low, high;
        bool log;
    } cases[] = {
        { -2, 3, false }, { 0.1, 0.7, false }, { -1e-3, 1e6, false }, { 0.5, 0.99, false },
        { -1e300, 1e300, false }, { 3.3, 77.7, false }, { 1e-5, 0.1, true },
        { 0.001, 0.123, true }, { 3.3, 77.7, true }, { 1e-8, 1, true }, { 0.1, 0.7, true },
        { 1e-300, 1e300, true }, { 2, 2.0000001, true },
    };
    struct hpo_rng rng;

    hpo_rng_seed(&rng, 4242);
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        char spec[256];
        struct hpo_space *space;
        const struct hpo_param *p;
        double scale, prev_v = -INFINITY, prev_u = -1.0;

        snprintf(spec, sizeof(spec),
                "{'name':'f','type':'float','low':%.17g,'high':%.17g,'log':%s}", cases[c].low,
                cases[c].high, cases[c].log ? "true" : "false");
        space = parse1(spec);
        p = &space->params[0];
        assert_true(p->n_grid == 0.0);
        /* The bounds map to 0 and 1 exactly, and back. */
        assert_true(hpo_param_to_unit(p, p->low) == 0.0);
        assert_true(hpo_param_to_unit(p, p->high) == 1.0);
        if (hpo_param_from_unit(p, 0.0) != p->low || hpo_param_from_unit(p, 1.0) != p->high) {
            print_error("%s: decode(0) %.17g decode(1) %.17g\n", spec,
                    hpo_param_from_unit(p, 0.0), hpo_param_from_unit(p, 1.0));
        }
        assert_true(hpo_param_from_unit(p, 0.0) == p->low);
        assert_true(hpo_param_from_unit(p, 1.0) == p->high);
        assert_true(hpo_param_from_unit(p, -0.5) == p->low);
        assert_true(hpo_param_from_unit(p, 1.5) == p->high);
        assert_true(isnan(hpo_param_from_unit(p, NAN)));
        assert_true(isnan(hpo_param_to_unit(p, NAN)));
        assert_true(hpo_param_valid(p, p->low));
        assert_true(hpo_param_valid(p, p->high));
        assert_false(hpo_param_valid(p, nextafter(p->high, INFINITY)));
        assert_false(hpo_param_valid(p, nextafter(p->low, -INFINITY)));
        /*
        ** decode(encode(v)) within a few ulps: the error of ulow + u * range
        ** is a few ulps of max(|ulow|, |uhigh|); for log params that is a
        ** relative error of v of the same size.
        */
        scale = fmax(fabs(p->ulow), fabs(p->uhigh));
        for (int i = 0; i < 2000; i++) {
            double x = hpo_rng_uniform(&rng);
            double v = hpo_param_from_unit(p, x), u, back;
            assert_true(v >= p->low && v <= p->high);
            assert_true(hpo_param_valid(p, v));
            u = hpo_param_to_unit(p, v);
            assert_true(u >= 0.0 && u <= 1.0);
            back = hpo_param_from_unit(p, u);
            if (cases[c].log) {
                assert_true(fabs(back - v) <= 4.0 * DBL_EPSILON * scale * v);
            } else {
                assert_true(fabs(back - v) <= 4.0 * DBL_EPSILON * scale);
            }
        }
        /* Monotone both ways on an increasing sweep. */
        for (int i = 0; i <= 1000; i++) {
            double v = hpo_param_from_unit(p, i / 1000.0);
            double u = hpo_param_to_unit(p, v);
            assert_true(v >= prev_v);
            assert_true(u >= prev_u);
            prev_v = v;
            prev_u = u;
        }
        /* The largest uniform draw still decodes inside the bounds. */
        assert_true(hpo_param_from_unit(p, 1.0 - 0x1.0p-53) <= p->high);
        hpo_space_destroy(space);
    }
}

static void test_vector_transform(void **unused)
{
    struct hpo_space *space = parse_ok("[{'name':'c','type':'categorical','choices':['a','b']},"
            "{'name':'v','type':'float','low':1e-4,'high':1,'log':true,'size':4},"
            "{'name':'s','type':'float','low':0,'high':1,'step':0.25,'size':2}]");
    double unit[7] = { 0.9, 0.0, 0.5, 1.0, 0.25, 0.55, 0.99 };
    double values[7], again[7];

    hpo_space_decode(space, unit, values);
    assert_true(values[0] == 1.0);
    assert_true(unit[0] == 0.75);
    assert_true(values[1] == 1e-4);
    assert_true(fabs(values[2] - 1e-2) < 1e-15);
    assert_true(values[3] == 1.0);
    assert_true(fabs(values[4] - 1e-3) < 1e-16);
    assert_true(values[5] == 0.5);
    assert_true(values[6] == 1.0);
    /* Decoding the canonical unit point gives the same values. */
    hpo_space_decode(space, unit, again);
    assert_memory_equal(values, again, sizeof(values));
    hpo_space_encode(space, values, again);
    assert_memory_equal(unit, again, sizeof(unit));
    hpo_space_destroy(space);
}

static void test_layout_vectors_last(void **unused)
{
    /* A vector declared first still follows every scalar; conditions see the right parent. */
    struct hpo_space *space = parse_ok("[{'name':'v','type':'float','low':0,'high':1,'size':3},"
            "{'name':'c','type':'categorical','choices':['a','b']},"
            "{'name':'w','type':'float','low':0,'high':1,'size':2,'when':{'c':['b']}},"
            "{'name':'m','type':'float','low':-1,'high':1,'when':{'c':['a']}}]");
    double unit[7] = { 0.9, 0.5, 0.25, 0.5, 0.75, 0.1, 0.2 };
    double values[7];

    assert_int_equal(space->dim, 7);
    assert_int_equal(space->scalar_dim, 2);
    assert_int_equal(space->params[1].offset, 0);
    assert_int_equal(space->params[3].offset, 1);
    assert_int_equal(space->params[0].offset, 2);
    assert_int_equal(space->params[2].offset, 5);
    /* c = b: w active, m inactive. */
    hpo_space_decode(space, unit, values);
    assert_true(values[0] == 1.0);
    assert_true(isnan(values[1]) && isnan(unit[1]));
    assert_true(values[2] == 0.25 && values[3] == 0.5 && values[4] == 0.75);
    assert_true(values[5] == 0.1 && values[6] == 0.2);
    hpo_space_destroy(space);
}

/* ---- conditional decoding ---- */

static void test_decode_conditional(void **unused)
{
    struct hpo_space *space = parse_ok("["
        "{'name':'opt','type':'categorical','choices':['adam','sgd','rmsprop']},"
        "{'name':'momentum','type':'float','low':0.5,'high':0.99,"
        "'when':{'opt':['sgd','rmsprop']}},"
        "{'name':'n','type':'int','low':1,'high':4},"
        "{'name':'k','type':'int','low':0,'high':9,'when':{'n':[2,3],'opt':['adam']}},"
        "{'name':'c','type':'categorical','choices':['x','y'],'when':{'k':[0,1,2,3,4]}},"
        "{'name':'v','type':'float','low':0,'high':1,'size':2,'when':{'opt':['adam']}}]");
    double unit[7], values[7], enc[7];

    /* adam (u < 1/3): momentum off; n = 2 (u in [1/4, 1/2)): k on; k = 2: c on; v on. */
    {
        double u[7] = { 0.1, 0.7, 0.3, 0.25, 0.9, 0.2, 0.4 };
        memcpy(unit, u, sizeof(unit));
    }
    hpo_space_decode(space, unit, values);
    assert_true(values[0] == 0.0);
    assert_true(isnan(values[1]) && isnan(unit[1]));
    assert_true(values[2] == 2.0);
    assert_true(values[3] == 2.0);
    assert_true(values[4] == 1.0);
    assert_true(values[5] == 0.2 && values[6] == 0.4);
    for (size_t i = 0; i < space->n_params; i++) {
        assert_true(hpo_space_active(space, i, values) == (i != 1));
    }
    hpo_space_encode(space, values, enc);
    assert_true(isnan(enc[1]));
    assert_true(enc[0] == unit[0] && enc[2] == unit[2] && enc[3] == unit[3]);
    assert_true(enc[0] == 1.0 / 6.0);

    /* sgd: momentum on; k off by opt although n = 3; so c off (its parent is NaN); v off. */
    {
        double u[7] = { 0.5, 0.0, 0.6, 0.25, 0.9, 0.2, 0.4 };
        memcpy(unit, u, sizeof(unit));
    }
    hpo_space_decode(space, unit, values);
    assert_true(values[0] == 1.0);
    assert_true(values[1] == 0.5);
    assert_true(values[2] == 3.0);
    assert_true(isnan(values[3]) && isnan(unit[3]));
    assert_true(isnan(values[4]) && isnan(unit[4]));
    assert_true(isnan(values[5]) && isnan(values[6]) && isnan(unit[5]) && isnan(unit[6]));

    /* adam, n = 4: k off, so c off. */
    {
        double u[7] = { 0.0, 0.5, 1.0, 0.25, 0.1, 0.0, 1.0 };
        memcpy(unit, u, sizeof(unit));
    }
    hpo_space_decode(space, unit, values);
    assert_true(values[2] == 4.0);
    assert_true(isnan(values[1]) && isnan(values[3]) && isnan(values[4]));
    assert_true(values[5] == 0.0 && values[6] == 1.0);

    /* adam, n = 2, k = 7: c off by value. */
    {
        double u[7] = { 0.0, 0.5, 0.3, 0.75, 0.1, 0.5, 0.5 };
        memcpy(unit, u, sizeof(unit));
    }
    hpo_space_decode(space, unit, values);
    assert_true(values[3] == 7.0);
    assert_true(isnan(values[4]));
    hpo_space_destroy(space);
}

/* ---- user values from JSON ---- */

#define EXAMPLE_SPACE                                                                       \
    "[{'name':'lr','type':'float','low':1e-5,'high':0.1,'log':true},"                       \
    "{'name':'dropout','type':'float','low':0.0,'high':0.5,'step':0.05},"                   \
    "{'name':'layers','type':'int','low':1,'high':8},"                                      \
    "{'name':'units','type':'int','low':16,'high':512,'log':true},"                         \
    "{'name':'optimizer','type':'categorical','choices':['adam','sgd','rmsprop']},"         \
    "{'name':'momentum','type':'float','low':0.5,'high':0.99,"                              \
    "'when':{'optimizer':['sgd','rmsprop']}},"                                              \
    "{'name':'wd','type':'float','low':1e-8,'high':1.0,'log':true,'size':3}]"

#define FULL_SGD                                                                            \
    "'lr':0.001,'dropout':0.15,'layers':3,'units':64,'optimizer':'sgd','momentum':0.9,"    \
    "'wd':[1e-8,0.5,1]"

static void values_invalid_at(const struct hpo_space *space, const char *text, bool partial,
        const char *field, const char *file, int line)
{
    json_t *j = load_at(text, file, line);
    double values[16];
    struct hpo_error err = { 0 };
    int r = hpo_space_values_from_json(space, j, partial, values, &err);

    if (r != -EINVAL || strcmp(err.field, field) != 0) {
        print_error("%s:%d: r=%d field '%s' (want '%s'): %s\n", file, line, r, err.field, field,
                err.message);
    }
    _assert_int_equal(r, -EINVAL, file, line);
    _assert_int_equal(err.code, HPO_INVALID_ARGUMENT, file, line);
    _assert_string_equal(err.field, field, file, line);
    json_decref(j);
}
#define values_invalid(space, text, partial, field) \
    values_invalid_at(space, text, partial, field, __FILE__, __LINE__)

static void values_ok_at(const struct hpo_space *space, const char *text, bool partial,
        double *values, const char *file, int line)
{
    json_t *j = load_at(text, file, line);
    struct hpo_error err = { 0 };
    int r = hpo_space_values_from_json(space, j, partial, values, &err);

    if (r != 0) {
        print_error("%s:%d: rejected: %s: %s\n", file, line, err.field, err.message);
    }
    _assert_int_equal(r, 0, file, line);
    json_decref(j);
}
#define values_ok(space, text, partial, values) \
    values_ok_at(space, text, partial, values, __FILE__, __LINE__)

static void test_values_from_json(void **unused)
{
    struct hpo_space *space = parse_ok(EXAMPLE_SPACE);
    double v[9], back[9];
    json_t *out;

    assert_int_equal(space->dim, 9);
    values_ok(space, "{" FULL_SGD "}", false, v);
    assert_true(v[0] == 0.001);
    assert_true(v[1] == 0.15);
    assert_true(v[2] == 3.0);
    assert_true(v[3] == 64.0);
    assert_true(v[4] == 1.0);
    assert_true(v[5] == 0.9);
    assert_true(v[6] == 1e-8 && v[7] == 0.5 && v[8] == 1.0);
    /* And back: the JSON of the values parses to the same doubles. */
    out = hpo_space_values_to_json(space, v, NULL, 0);
    {
        json_t *expect = load("{" FULL_SGD "}");
        /* Ints stay JSON integers, the categorical its choice, vectors arrays of reals. */
        assert_true(json_is_integer(json_object_get(out, "layers")));
        assert_string_equal(json_string_value(json_object_get(out, "optimizer")), "sgd");
        assert_int_equal(json_object_size(out), json_object_size(expect));
        json_decref(expect);
    }
    {
        struct hpo_error err = { 0 };
        assert_int_equal(hpo_space_values_from_json(space, out, false, back, &err), 0);
        assert_memory_equal(v, back, sizeof(v));
    }
    json_decref(out);
    /* A long vector becomes a link. */
    out = hpo_space_values_to_json(space, v, "/v1/studies/s/trials/3/params", 2);
    {
        json_t *expect = load("{'size':3,'href':'/v1/studies/s/trials/3/params/wd'}");
        assert_true(json_equal(json_object_get(out, "wd"), expect));
        json_decref(expect);
    }
    json_decref(out);

    /* adam: momentum inactive, so absent; present is an error. */
    values_ok(space,
            "{'lr':0.1,'dropout':0,'layers':8,'units':512,'optimizer':'adam',"
            "'wd':[1e-8,1e-8,1e-8]}",
            false, v);
    assert_true(v[4] == 0.0);
    assert_true(isnan(v[5]));
    out = hpo_space_values_to_json(space, v, NULL, 0);
    assert_null(json_object_get(out, "momentum"));
    assert_int_equal(json_object_size(out), 6);
    json_decref(out);
    values_invalid(space,
            "{'lr':0.1,'dropout':0,'layers':8,'units':512,'optimizer':'adam','momentum':0.9,"
            "'wd':[1e-8,1e-8,1e-8]}",
            false, "params.momentum");
    values_invalid(space,
            "{'lr':0.1,'dropout':0,'layers':8,'units':512,'optimizer':'adam','momentum':0.9,"
            "'wd':[1e-8,1e-8,1e-8]}",
            true, "params.momentum");

    /* Required unless partial. */
    values_invalid(space, "{'lr':0.001,'dropout':0.15,'units':64,'optimizer':'sgd',"
                          "'momentum':0.9,'wd':[1e-8,0.5,1]}", false, "params.layers");
    values_invalid(space, "{'lr':0.001,'dropout':0.15,'layers':3,'units':64,'optimizer':'sgd',"
                          "'wd':[1e-8,0.5,1]}", false, "params.momentum");
    values_invalid(space, "{}", false, "params.lr");
    values_ok(space, "{'layers':3}", true, v);
    assert_true(v[2] == 3.0);
    for (int j = 0; j < 9; j++) {
        assert_true(j == 2 || isnan(v[j]));
    }
    values_ok(space, "{}", true, v);
    for (int j = 0; j < 9; j++) {
        assert_true(isnan(v[j]));
    }
    /* With the parent unset, a conditional child cannot be known to be active. */
    values_invalid(space, "{'momentum':0.9}", true, "params.momentum");
    values_ok(space, "{'optimizer':'rmsprop','momentum':0.5}", true, v);
    assert_true(v[4] == 2.0 && v[5] == 0.5);

    /* Unknown names and a non-object. */
    values_invalid(space, "{" FULL_SGD ",'bogus':1}", false, "params.bogus");
    values_invalid(space, "{'LR':1}", true, "params.LR");
    values_invalid(space, "[]", false, "params");
    values_invalid(space, "null", true, "params");

    /* Types, ranges and grids. */
    values_invalid(space, "{'lr':'0.1'}", true, "params.lr");
    values_invalid(space, "{'lr':null}", true, "params.lr");
    values_invalid(space, "{'lr':0.2}", true, "params.lr");
    values_invalid(space, "{'lr':0}", true, "params.lr");
    values_ok(space, "{'lr':1e-5}", true, v);
    assert_true(v[0] == 1e-5);
    values_invalid(space, "{'dropout':0.12}", true, "params.dropout");
    values_invalid(space, "{'dropout':0.55}", true, "params.dropout");
    values_invalid(space, "{'dropout':-0.05}", true, "params.dropout");
    /* A rounding error off the grid is taken as the grid value. */
    values_ok(space, "{'dropout':0.15000000000000002}", true, v);
    assert_true(v[1] == 0.15);
    values_ok(space, "{'dropout':0.5}", true, v);
    assert_true(v[1] == 0.5);
    values_invalid(space, "{'layers':2.5}", true, "params.layers");
    values_invalid(space, "{'layers':9}", true, "params.layers");
    values_invalid(space, "{'layers':0}", true, "params.layers");
    values_invalid(space, "{'layers':'3'}", true, "params.layers");
    values_invalid(space, "{'layers':true}", true, "params.layers");
    values_invalid(space, "{'units':15}", true, "params.units");
    values_invalid(space, "{'units':513}", true, "params.units");
    values_ok(space, "{'units':511}", true, v);
    assert_true(v[3] == 511.0);
    values_invalid(space, "{'optimizer':'lbfgs'}", true, "params.optimizer");
    values_invalid(space, "{'optimizer':0}", true, "params.optimizer");
    values_invalid(space, "{'optimizer':'Adam'}", true, "params.optimizer");
    values_invalid(space, "{'optimizer':['adam']}", true, "params.optimizer");

    /* Vectors: an array of exactly `size` valid numbers. */
    values_invalid(space, "{'wd':[1e-8,0.5]}", true, "params.wd");
    values_invalid(space, "{'wd':[1e-8,0.5,1,1]}", true, "params.wd");
    values_invalid(space, "{'wd':[]}", true, "params.wd");
    values_invalid(space, "{'wd':0.5}", true, "params.wd");
    values_invalid(space, "{'wd':{'size':3}}", true, "params.wd");
    values_invalid(space, "{'wd':[1e-8,'x',1]}", true, "params.wd[1]");
    values_invalid(space, "{'wd':[1e-8,0.5,2]}", true, "params.wd[2]");
    values_invalid(space, "{'wd':[0,0.5,1]}", true, "params.wd[0]");
    hpo_space_destroy(space);
}

static void test_values_categorical_kinds(void **unused)
{
    struct hpo_space *space = parse1("{'name':'c','type':'categorical',"
                                     "'choices':[1,2.5,true,'x',0]}");
    double v[1];
    json_t *out;

    values_ok(space, "{'c':1}", false, v);
    assert_true(v[0] == 0.0);
    values_ok(space, "{'c':1.0}", false, v);
    assert_true(v[0] == 0.0);
    values_ok(space, "{'c':2.5}", false, v);
    assert_true(v[0] == 1.0);
    values_ok(space, "{'c':true}", false, v);
    assert_true(v[0] == 2.0);
    values_ok(space, "{'c':'x'}", false, v);
    assert_true(v[0] == 3.0);
    values_ok(space, "{'c':0}", false, v);
    assert_true(v[0] == 4.0);
    /* The value given back is the choice as declared. */
    v[0] = 0.0;
    out = hpo_space_values_to_json(space, v, NULL, 0);
    assert_true(json_is_integer(json_object_get(out, "c")));
    assert_int_equal(json_integer_value(json_object_get(out, "c")), 1);
    json_decref(out);
    /* Booleans are not numbers, strings are not numbers. */
    values_invalid(space, "{'c':false}", false, "params.c");
    values_invalid(space, "{'c':'1'}", false, "params.c");
    values_invalid(space, "{'c':2}", false, "params.c");
    values_invalid(space, "{'c':null}", false, "params.c");
    hpo_space_destroy(space);
}

static void test_values_stepped_edges(void **unused)
{
    struct hpo_space *space = parse_ok("[{'name':'a','type':'float','low':0,'high':0.3,"
                                       "'step':0.1},{'name':'b','type':'float','low':-0.3,"
                                       "'high':0.3,'step':0.1},{'name':'k','type':'int',"
                                       "'low':-10,'high':10,'step':3}]");
    double v[3];

    values_ok(space, "{'a':0.3,'b':0,'k':8}", false, v);
    assert_true(v[0] == 0.3);
    assert_true(v[1] == 0.0);
    assert_true(v[2] == 8.0);
    values_ok(space, "{'a':0.30000000000000004,'b':5.551115123125783e-17,'k':-10}", false, v);
    assert_true(v[0] == 0.3);
    assert_true(v[1] == 0.0);
    values_invalid(space, "{'a':0.3,'b':0,'k':10}", false, "params.k");
    values_invalid(space, "{'a':0.3,'b':0,'k':0}", false, "params.k");
    values_invalid(space, "{'a':0.4,'b':0,'k':-1}", false, "params.a");
    hpo_space_destroy(space);
}

/* The vector decode gives bit for bit what decoding one coordinate at a time gives. */
static void test_from_unit_n_matches(void **unused)
{
    static const char *const params[] = {
        "{'name':'a','type':'float','low':1e-3,'high':1e3,'log':true,'size':64}",
        "{'name':'a','type':'float','low':-2.5,'high':7,'size':64}",
        "{'name':'a','type':'float','low':0,'high':1,'step':0.1,'size':64}",
        "{'name':'a','type':'int','low':1,'high':1000,'log':true}",
    };
    double unit[64], one[64], many[64];
    uint64_t x = 88172645463325252ull;

    (void)unused;
    for (size_t k = 0; k < sizeof(params) / sizeof(params[0]); k++) {
        struct hpo_space *space = parse1(params[k]);
        const struct hpo_param *p = &space->params[0];
        for (size_t i = 0; i < 64; i++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            unit[i] = (double)(x >> 11) * 0x1.0p-53;
        }
        /* Edges and outside values: clamped, and NaN stays NaN. */
        unit[0] = 0.0;
        unit[1] = 1.0;
        unit[2] = -0.0;
        unit[3] = -0.25;
        unit[4] = 1.5;
        unit[5] = NAN;
        unit[6] = 0x1.0p-60;
        unit[7] = 1.0 - 0x1.0p-53;
        for (size_t i = 0; i < 64; i++) {
            one[i] = hpo_param_from_unit(p, unit[i]);
        }
        hpo_param_from_unit_n(p, unit, many, 64);
        assert_memory_equal(one, many, sizeof(one));
        assert_true(isnan(many[5]));
        assert_true(many[0] == p->low && many[1] == p->high && many[3] == p->low &&
                many[4] == p->high);
        hpo_space_destroy(space);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_params_array),
        cmocka_unit_test(test_unknown_keys),
        cmocka_unit_test(test_name_charset),
        cmocka_unit_test(test_name_length),
        cmocka_unit_test(test_name_unique),
        cmocka_unit_test(test_type),
        cmocka_unit_test(test_float_bounds),
        cmocka_unit_test(test_float_log),
        cmocka_unit_test(test_float_step),
        cmocka_unit_test(test_size),
        cmocka_unit_test(test_int_rules),
        cmocka_unit_test(test_categorical_rules),
        cmocka_unit_test(test_categorical_many_choices),
        cmocka_unit_test(test_when_rules),
        cmocka_unit_test(test_space_limits),
        cmocka_unit_test(test_to_json_defaults),
        cmocka_unit_test(test_int_round_trip),
        cmocka_unit_test(test_log_int_round_trip),
        cmocka_unit_test(test_stepped_float_grid),
        cmocka_unit_test(test_stepped_float_odd_low),
        cmocka_unit_test(test_categorical_transform),
        cmocka_unit_test(test_continuous_round_trip),
        cmocka_unit_test(test_vector_transform),
        cmocka_unit_test(test_layout_vectors_last),
        cmocka_unit_test(test_decode_conditional),
        cmocka_unit_test(test_values_from_json),
        cmocka_unit_test(test_values_categorical_kinds),
        cmocka_unit_test(test_values_stepped_edges),
        cmocka_unit_test(test_from_unit_n_matches),
    };
    return cmocka_run_group_tests_name("core-space", tests, NULL, NULL);
}
