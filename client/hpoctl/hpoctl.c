/*
** hpoctl.c: the command-line client of hpod: studies, trials and the `run`
** worker loop, as readable tables or (with --json) the API's own JSON.
** Built only on the public libhpoclient header.
*/
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hpo/client.h>
#include <jansson.h>

#include "hpoctl.h"

static const char usage_text[] =
        "Usage: hpoctl [--url URL] [--token TOKEN] [--json] COMMAND [ARGS]\n"
        "\n"
        "Commands:\n"
        "  studies                          list studies with their trial counts\n"
        "  study create -f SPEC.json [--objective NAME[:DIR]]... [--constraint NAME:BOUNDS]...\n"
        "                                   create a study (or get the identical one); -f - reads stdin\n"
        "  study show NAME                  show a study's definition and summary\n"
        "  study delete NAME                delete a study and its trials\n"
        "  ask STUDY                        start a trial and print its params\n"
        "  tell STUDY N VALUE|--failed|--pruned\n"
        "  tell STUDY N --value NAME=V... [--constraint NAME=V]...\n"
        "                                   finish trial N\n"
        "  report STUDY N STEP VALUE        report an intermediate value; prints prune or continue\n"
        "  trials STUDY [--state S] [--feasible B] [--csv]\n"
        "                                   list trials\n"
        "  best STUDY                       show the best trial (several objectives: the front)\n"
        "  pareto STUDY                     show the Pareto front and its hypervolume\n"
        "  enqueue STUDY -p NAME=VALUE...   queue a configuration to try next\n"
        "  attrs STUDY [N] [KEY=VALUE...] [--unset KEY]...\n"
        "                                   show or set user attrs of a study or trial N\n"
        "  run STUDY [-n N] [-j J] [--timeout S] -- CMD [ARGS...]\n"
        "                                   run CMD once per trial (see hpoctl(1))\n"
        "  backup FILE                      save an online backup of the daemon (admin token)\n"
        "  help [COMMAND]                   this text, or a command's (also COMMAND --help)\n"
        "\n"
        "Options:\n"
        "  --url URL      the daemon (default $HPOD_URL, else http://127.0.0.1:8080)\n"
        "  --token TOKEN  bearer token (default $HPOD_TOKEN)\n"
        "  --cacert FILE  CA file to verify an https daemon (default $HPOD_CACERT)\n"
        "  --json         print the API's JSON instead of tables\n"
        "  --help, --version\n"
        "\n"
        "Exit status: 0 ok, 1 API or connection error (message on stderr), 2 usage error,\n"
        "3 when `run` completed no trial, 130 when `run` was interrupted.\n";

static const char global_options_text[] =
        "\n"
        "Global options: --url URL, --token TOKEN, --cacert FILE, --json (see hpoctl --help).\n";

/* One command's --help. */
struct command_help {
    const char *name;
    const char *text;
};

static const struct command_help command_helps[] = {
    { "studies",
            "Usage: hpoctl studies\n"
            "\n"
            "List the studies, by name: direction, sampler, pruner, trial counts (total,\n"
            "waiting, running, complete, pruned, failed) and the best value.\n"
            "With --json, the daemon's answer ({\"studies\": [...]}).\n" },
    { "study",
            "Usage: hpoctl study create -f SPEC.json [--objective NAME[:minimize|maximize]]...\n"
            "                           [--constraint NAME:min=A[,max=B]]...\n"
            "       hpoctl study show NAME\n"
            "       hpoctl study delete NAME\n"
            "\n"
            "create  create the study defined in SPEC.json (-f - reads standard input);\n"
            "        the same definition again prints 'exists (identical)', another one\n"
            "        under the same name is a conflict error.\n"
            "        --objective NAME[:DIR]  an objective, in order (DIR minimize by default);\n"
            "                                sets the spec's \"objectives\"\n"
            "        --constraint NAME:BOUNDS  a constraint; BOUNDS is min=A, max=B or\n"
            "                                min=A,max=B; sets the spec's \"constraints\"\n"
            "        (the spec must not have the key a flag sets)\n"
            "show    the definition with every default filled in, trial counts, best\n"
            "        trial and a table of the params\n"
            "delete  delete the study and all its trials\n" },
    { "ask",
            "Usage: hpoctl ask STUDY\n"
            "\n"
            "Start a trial (the oldest waiting one, else a new suggestion) and print its\n"
            "number and params. Finish it with 'hpoctl tell'.\n" },
    { "tell",
            "Usage: hpoctl tell STUDY N VALUE\n"
            "       hpoctl tell STUDY N --value V [--constraint NAME=V]...\n"
            "       hpoctl tell STUDY N --value NAME=V... [--constraint NAME=V]...\n"
            "       hpoctl tell STUDY N --failed|--pruned\n"
            "\n"
            "Finish trial N: complete it with VALUE (negative numbers are fine), or mark\n"
            "it failed or pruned (a pruned trial's value is its last intermediate value).\n"
            "With several objectives give each as --value NAME=V; --constraint NAME=V\n"
            "tells a constraint's value (an untold constraint makes the trial infeasible).\n"
            "The same result again succeeds; another result is a conflict error.\n" },
    { "report",
            "Usage: hpoctl report STUDY N STEP VALUE\n"
            "\n"
            "Report an intermediate value of running trial N at STEP (an integer >= 0)\n"
            "and print the pruner's decision: 'prune' or 'continue' (exit status 0\n"
            "either way).\n" },
    { "trials",
            "Usage: hpoctl trials STUDY [--state STATE] [--feasible true|false] [--csv]\n"
            "\n"
            "List the trials in order of number: number, state, value (with several\n"
            "objectives one column each; with constraints one column each and FEASIBLE)\n"
            "and one column per param (floats rounded to 6 digits; --json and --csv are\n"
            "exact).\n"
            "--state STATE     only waiting, running, complete, pruned or failed trials\n"
            "--feasible true   only complete trials within every constraint; false: the others\n"
            "--csv             the daemon's CSV export\n" },
    { "best",
            "Usage: hpoctl best STUDY\n"
            "\n"
            "Print the best complete trial: number, value and params. With several\n"
            "objectives, the feasible Pareto front: a table of number, each objective,\n"
            "each constraint and FEASIBLE, in order of number.\n" },
    { "pareto",
            "Usage: hpoctl pareto STUDY\n"
            "\n"
            "Print the feasible Pareto front (as 'best' does for several objectives; one\n"
            "objective: every best trial), then its hypervolume and reference point.\n" },
    { "enqueue",
            "Usage: hpoctl enqueue STUDY -p NAME=VALUE [-p NAME=VALUE...] [--attr KEY=VALUE...]\n"
            "\n"
            "Queue a configuration to try next: a 'waiting' trial that the next ask\n"
            "hands out before any new suggestion. Params left out are suggested by the\n"
            "study's sampler then. VALUE is read by the param's type: a number, an\n"
            "integer, one of the choices, or comma-separated numbers for a vector.\n"
            "-p, --param NAME=VALUE  a param's value\n"
            "--attr KEY=VALUE        a user attr of the trial (VALUE as for 'attrs')\n" },
    { "attrs",
            "Usage: hpoctl attrs STUDY [N] [KEY=VALUE...] [--unset KEY...]\n"
            "\n"
            "Show the user attrs of a study (or of its trial N), or change them: each\n"
            "KEY=VALUE sets a key, each --unset KEY removes one, other keys are kept.\n"
            "VALUE is JSON when it parses as JSON (42, true, [1,2], {\"a\":1}, \"text\"),\n"
            "else plain text. Prints the attrs afterwards, one 'KEY = VALUE' per line\n"
            "(with --json, the study or trial as the daemon returns it).\n" },
    { "run",
            "Usage: hpoctl run STUDY [-n N] [-j J] [--timeout S] [--max-failures K]\n"
            "                  [--progress S] -- CMD [ARGS...]\n"
            "\n"
            "Ask for trials and run CMD once per trial, J at a time, until N trials ran\n"
            "or the study is exhausted. Params reach CMD as $HPO_PARAM_<NAME> and as\n"
            "{name} placeholders in ARGS ({trial} and {study} too); PYTHONUNBUFFERED=1\n"
            "is set. CMD prints 'hpo: report STEP VALUE' per step (pruned trials are\n"
            "killed) and 'hpo: value V' at the end; a non-zero exit fails the trial.\n"
            "With several objectives CMD prints 'hpo: value NAME V' for each (a trial\n"
            "missing one fails), and 'hpo: constraint NAME V' for constraints.\n"
            "-n N              stop after N trials (default: until exhausted)\n"
            "-j J              commands at once (default 1)\n"
            "--timeout S       fail a trial whose command runs longer than S seconds\n"
            "--max-failures K  stop asking after K failed trials in a row (default 10;\n"
            "                  0: never); a command that cannot be started stops at once\n"
            "--progress S      a progress line every S seconds when standard error is\n"
            "                  not a terminal (default 10; on a terminal one status line\n"
            "                  is redrawn); 0 turns progress off\n"
            "A summary ends the run. Exit status 0 when a trial completed, 3 when none\n"
            "did (or --max-failures stopped it), 1 on an API error, 130 when interrupted.\n" },
    { "backup",
            "Usage: hpoctl backup FILE\n"
            "\n"
            "Save a consistent snapshot of the daemon's database and the side files\n"
            "it references (GET /v1/admin/backup, a tar archive) as FILE, while the\n"
            "daemon keeps serving. Needs an admin token. The archive is streamed to\n"
            "FILE.tmp in FILE's directory, synced, then renamed to FILE, so FILE is\n"
            "either complete or untouched; FILE.tmp is removed on failure. Prints the\n"
            "size. Restore: tar xf FILE -C DIR && hpod --db DIR/hpod.db\n" },
    { "help",
            "Usage: hpoctl help [COMMAND]\n"
            "\n"
            "Print the general usage, or COMMAND's (the same as hpoctl COMMAND --help).\n" },
};

/* Print a command's help; false when there is no such command. */
static bool print_command_help(const char *name)
{
    for (size_t i = 0; i < sizeof(command_helps) / sizeof(command_helps[0]); i++) {
        if (strcmp(command_helps[i].name, name) == 0) {
            fputs(command_helps[i].text, stdout);
            fputs(global_options_text, stdout);
            return true;
        }
    }
    return false;
}

#define MAX_POS 64
#define MAX_LIST 256

/* Everything parsed from the command line. */
struct args {
    const char *url;
    const char *token;
    const char *cacert;
    bool json;
    bool csv;
    bool failed;
    bool pruned;
    bool help;
    const char *state;
    const char *file;
    const char *n;
    const char *j;
    const char *timeout;
    const char *max_failures;
    const char *progress;
    const char *pos[MAX_POS];
    int npos;
    const char *params[MAX_LIST]; /* -p NAME=VALUE */
    int nparams;
    const char *attrs[MAX_LIST]; /* --attr KEY=VALUE */
    int nattrs;
    const char *unset[MAX_LIST]; /* --unset KEY */
    int nunset;
    const char *values[MAX_LIST]; /* --value [NAME=]V */
    int nvalues;
    const char *constraints[MAX_LIST]; /* --constraint NAME=V (tell), NAME:BOUNDS (create) */
    int nconstraints;
    const char *objectives[MAX_LIST]; /* --objective NAME[:DIR] */
    int nobjectives;
    const char *feasible;
    char **cmd; /* after "--" */
    int ncmd;
};

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int parse_double(const char *s, double *ret);
static void print_front(const json_t *trials, bool state, bool params);

static int usage_error(const char *fmt, ...)
{
    va_list ap;

    fputs("hpoctl: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs("\nTry 'hpoctl --help'.\n", stderr);
    return HPOCTL_EXIT_USAGE;
}

const char *hpoctl_strerror(int errnum, char *buf, size_t size)
{
    /* _GNU_SOURCE gives the GNU strerror_r, which may return a static string instead. */
    return strerror_r(errnum, buf, size);
}

void hpoctl_print_error(const char *what, const struct hpo_client_error *err)
{
    fprintf(stderr, "hpoctl: %s: %s: %s", what, hpo_client_code_name(err->code), err->message);
    if (err->field[0] != '\0') {
        fprintf(stderr, " (field %s)", err->field);
    }
    fputc('\n', stderr);
    if (err->code == HPO_CLIENT_UNAUTHENTICATED) {
        fputs("hpoctl: the daemon needs a valid token: set HPOD_TOKEN or give --token\n", stderr);
    } else if (err->code == HPO_CLIENT_PERMISSION_DENIED) {
        fputs("hpoctl: the token's role or study prefix does not allow this\n", stderr);
    }
}

/* Whether `s` looks like a negative number, which is an argument, not an option. */
static bool is_number_arg(const char *s)
{
    return s[0] == '-' && ((s[1] >= '0' && s[1] <= '9') || s[1] == '.');
}

/* Match "--name VALUE" or "--name=VALUE"; advances *i past the value. */
static int option_value(int argc, char **argv, int *i, const char *name, const char **ret)
{
    const char *a = argv[*i];
    size_t n = strlen(name);

    if (strncmp(a, name, n) != 0) {
        return 0;
    }
    if (a[n] == '=') {
        *ret = a + n + 1;
        return 1;
    }
    if (a[n] != '\0') {
        return 0;
    }
    if (*i + 1 >= argc) {
        return -1;
    }
    *i += 1;
    *ret = argv[*i];
    return 1;
}

/* Append to a repeatable option's list. */
static int list_add(const char **list, int *n, const char *v, const char *opt)
{
    if (*n >= MAX_LIST) {
        return usage_error("too many '%s' options", opt);
    }
    list[(*n)++] = v;
    return 0;
}

static int parse_args(int argc, char **argv, struct args *a)
{
    static const char *const valued[] = { "--url", "--token", "--state", "-f", "--file", "-n",
        "-j", "--timeout", "--max-failures", "--progress", "-p", "--param", "--attr",
        "--unset", "--cacert", "--value", "--constraint", "--objective", "--feasible" };

    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        bool matched = false;

        if (strcmp(arg, "--") == 0) {
            a->cmd = argv + i + 1;
            a->ncmd = argc - i - 1;
            return 0;
        }
        if (arg[0] != '-' || arg[1] == '\0' || is_number_arg(arg)) {
            if (a->npos >= MAX_POS) {
                return usage_error("too many arguments");
            }
            a->pos[a->npos++] = arg;
            continue;
        }
        if (strcmp(arg, "--json") == 0) {
            a->json = true;
            continue;
        }
        if (strcmp(arg, "--csv") == 0) {
            a->csv = true;
            continue;
        }
        if (strcmp(arg, "--failed") == 0) {
            a->failed = true;
            continue;
        }
        if (strcmp(arg, "--pruned") == 0) {
            a->pruned = true;
            continue;
        }
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            a->help = true;
            continue;
        }
        for (size_t k = 0; k < sizeof(valued) / sizeof(valued[0]) && !matched; k++) {
            const char *v = NULL;
            int r = option_value(argc, argv, &i, valued[k], &v);
            const char **slot = NULL;

            if (r < 0) {
                return usage_error("option '%s' needs a value", valued[k]);
            }
            if (r == 0) {
                continue;
            }
            matched = true;
            switch (k) {
            case 0:
                slot = &a->url;
                break;
            case 1:
                slot = &a->token;
                break;
            case 2:
                slot = &a->state;
                break;
            case 3:
            case 4:
                slot = &a->file;
                break;
            case 5:
                slot = &a->n;
                break;
            case 6:
                slot = &a->j;
                break;
            case 7:
                slot = &a->timeout;
                break;
            case 8:
                slot = &a->max_failures;
                break;
            case 9:
                slot = &a->progress;
                break;
            case 10:
            case 11:
                r = list_add(a->params, &a->nparams, v, "--param");
                break;
            case 12:
                r = list_add(a->attrs, &a->nattrs, v, "--attr");
                break;
            case 13:
                r = list_add(a->unset, &a->nunset, v, "--unset");
                break;
            case 14:
                slot = &a->cacert;
                break;
            case 15:
                r = list_add(a->values, &a->nvalues, v, "--value");
                break;
            case 16:
                r = list_add(a->constraints, &a->nconstraints, v, "--constraint");
                break;
            case 17:
                r = list_add(a->objectives, &a->nobjectives, v, "--objective");
                break;
            default:
                slot = &a->feasible;
                break;
            }
            if (slot != NULL) {
                *slot = v;
            } else if (r != 0) {
                return r;
            }
        }
        if (!matched) {
            return usage_error("unknown option '%s'", arg);
        }
    }
    return 0;
}

/* Percent-escape a path segment into a new string (exits on OOM: a CLI). */
static char *escape(const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = strlen(s);
    char *out = malloc(3 * n + 1);
    char *p = out;

    if (out == NULL) {
        fputs("hpoctl: out of memory\n", stderr);
        exit(HPOCTL_EXIT_API);
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                ch == '-' || ch == '_' || ch == '.' || ch == '~') {
            *p++ = (char)ch;
        } else {
            *p++ = '%';
            *p++ = hex[ch >> 4];
            *p++ = hex[ch & 15];
        }
    }
    *p = '\0';
    return out;
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n);

    if (p == NULL) {
        fputs("hpoctl: out of memory\n", stderr);
        exit(HPOCTL_EXIT_API);
    }
    return p;
}

static char *xstrdup(const char *s)
{
    char *p = strdup(s);

    if (p == NULL) {
        fputs("hpoctl: out of memory\n", stderr);
        exit(HPOCTL_EXIT_API);
    }
    return p;
}

static char *xprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static char *xprintf(const char *fmt, ...)
{
    va_list ap;
    int n;
    char *out;

    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    out = xmalloc((size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(out, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return out;
}

/* Parse a response we know is JSON; NULL (and a message) if it is not. */
static json_t *parse_json(const char *text)
{
    json_error_t jerr;
    json_t *root = json_loads(text, 0, &jerr);

    if (root == NULL) {
        fprintf(stderr, "hpoctl: the daemon's answer is not JSON: %s\n", jerr.text);
    }
    return root;
}

static void print_json(const json_t *v)
{
    char *s = json_dumps(v, JSON_INDENT(2) | JSON_ENCODE_ANY);

    if (s != NULL) {
        puts(s);
        free(s);
    }
}

/* Shortest text that reads back as the same double. */
static void format_exact(char *buf, size_t size, double x)
{
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, size, "%.*g", prec, x);
        /* 10 is "10", not "1e+01": no exponent for magnitudes %f writes plainly. */
        if (strchr(buf, 'e') != NULL && fabs(x) >= 1e-4 && fabs(x) < 1e16 && prec < 17) {
            continue;
        }
        if (strtod(buf, NULL) == x) {
            return;
        }
    }
}

/*
** A JSON value as a table cell (new string): floats with 6 significant
** digits unless `exact`, vectors summarised unless `exact`.
*/
static char *cell(const json_t *v, bool exact)
{
    char buf[64];

    if (v == NULL || json_is_null(v)) {
        return xstrdup("-");
    }
    switch (json_typeof(v)) {
    case JSON_STRING:
        return xstrdup(json_string_value(v));
    case JSON_INTEGER:
        return xprintf("%" JSON_INTEGER_FORMAT, json_integer_value(v));
    case JSON_REAL:
        if (exact) {
            format_exact(buf, sizeof(buf), json_real_value(v));
        } else {
            snprintf(buf, sizeof(buf), "%.6g", json_real_value(v));
        }
        return xstrdup(buf);
    case JSON_TRUE:
        return xstrdup("true");
    case JSON_FALSE:
        return xstrdup("false");
    case JSON_ARRAY:
        if (!exact) {
            return xprintf("[%zu values]", json_array_size(v));
        }
        break;
    case JSON_OBJECT:
        if (json_is_integer(json_object_get(v, "size")) && json_object_get(v, "href")) {
            return xprintf("[%" JSON_INTEGER_FORMAT " values]",
                    json_integer_value(json_object_get(v, "size")));
        }
        break;
    default:
        break;
    }
    {
        char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        if (s == NULL) {
            return xstrdup("?");
        }
        return s;
    }
}

/* A table of owned strings, printed with aligned columns. */
struct table {
    size_t ncols;
    size_t ncells;
    size_t cap;
    char **cells;
};

static void table_add(struct table *t, char *owned)
{
    if (t->ncells == t->cap) {
        size_t ncap = t->cap ? t->cap * 2 : 64;
        char **grown = realloc(t->cells, ncap * sizeof(*grown));
        if (grown == NULL) {
            fputs("hpoctl: out of memory\n", stderr);
            exit(HPOCTL_EXIT_API);
        }
        t->cells = grown;
        t->cap = ncap;
    }
    t->cells[t->ncells++] = owned;
}

/* One cell per name in `names`: trial tr's `section` (params, values, constraints) entry. */
static void add_named_cells(struct table *t, const json_t *tr, const char *section,
        const json_t *names)
{
    size_t k;
    json_t *n;

    json_array_foreach(names, k, n) {
        table_add(t, cell(json_object_get(json_object_get(tr, section), json_string_value(n)),
                false));
    }
}

static void table_print(struct table *t, const char *indent)
{
    size_t *w = calloc(t->ncols, sizeof(*w));

    if (w == NULL) {
        return;
    }
    for (size_t i = 0; i < t->ncells; i++) {
        size_t len = strlen(t->cells[i]);
        if (len > w[i % t->ncols]) {
            w[i % t->ncols] = len;
        }
    }
    for (size_t i = 0; i < t->ncells; i++) {
        size_t col = i % t->ncols;
        if (col == 0) {
            fputs(indent, stdout);
        }
        if (col + 1 == t->ncols) {
            printf("%s\n", t->cells[i]);
        } else {
            printf("%-*s  ", (int)w[col], t->cells[i]);
        }
    }
    free(w);
}

static void table_free(struct table *t)
{
    for (size_t i = 0; i < t->ncells; i++) {
        free(t->cells[i]);
    }
    free(t->cells);
}

/* GET a path and parse it; returns NULL after printing the error. */
static json_t *get_json(struct hpo_client *c, const char *path, const char *what)
{
    struct hpo_client_error err;
    char *body = NULL;
    json_t *root;

    if (hpo_client_request(c, "GET", path, NULL, true, NULL, &body, &err) < 0) {
        hpoctl_print_error(what, &err);
        return NULL;
    }
    root = parse_json(body);
    hpo_client_free(body);
    return root;
}

static int cmd_studies(struct hpo_client *c, const struct args *a)
{
    json_t *root = get_json(c, "/v1/studies", "studies");
    json_t *studies;
    json_t *s;
    size_t i;
    struct table t = { .ncols = 11 };

    if (root == NULL) {
        return HPOCTL_EXIT_API;
    }
    if (a->json) {
        print_json(root);
        json_decref(root);
        return HPOCTL_EXIT_OK;
    }
    studies = json_object_get(root, "studies");
    const char *head[] = { "NAME", "DIRECTION", "SAMPLER", "PRUNER", "TRIALS", "WAITING",
        "RUNNING", "COMPLETE", "PRUNED", "FAILED", "BEST" };
    for (size_t k = 0; k < sizeof(head) / sizeof(head[0]); k++) {
        table_add(&t, xstrdup(head[k]));
    }
    json_array_foreach(studies, i, s) {
        json_t *trials = json_object_get(s, "trials");
        json_t *best = json_object_get(s, "best_trial");
        table_add(&t, cell(json_object_get(s, "name"), true));
        if (json_object_get(s, "direction") == NULL &&
                json_array_size(json_object_get(s, "objectives")) > 1) {
            table_add(&t, xprintf("%zu objectives",
                                  json_array_size(json_object_get(s, "objectives"))));
        } else {
            table_add(&t, cell(json_object_get(s, "direction"), true));
        }
        table_add(&t, cell(json_object_get(json_object_get(s, "sampler"), "type"), true));
        table_add(&t, cell(json_object_get(json_object_get(s, "pruner"), "type"), true));
        table_add(&t, cell(json_object_get(trials, "total"), true));
        table_add(&t, cell(json_object_get(trials, "waiting"), true));
        table_add(&t, cell(json_object_get(trials, "running"), true));
        table_add(&t, cell(json_object_get(trials, "complete"), true));
        table_add(&t, cell(json_object_get(trials, "pruned"), true));
        table_add(&t, cell(json_object_get(trials, "failed"), true));
        if (json_is_array(json_object_get(s, "best_trials"))) {
            table_add(&t, xprintf("front of %zu",
                                  json_array_size(json_object_get(s, "best_trials"))));
        } else {
            table_add(&t, cell(json_object_get(best, "value"), false));
        }
    }
    table_print(&t, "");
    table_free(&t);
    json_decref(root);
    return HPOCTL_EXIT_OK;
}

/* Read a whole file ("-" for stdin) into a new string. */
static char *read_file(const char *path)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    size_t cap = 4096;
    size_t len = 0;
    char *buf;

    if (f == NULL) {
        char ebuf[128];
        fprintf(stderr, "hpoctl: cannot open '%s': %s\n", path,
                hpoctl_strerror(errno, ebuf, sizeof(ebuf)));
        return NULL;
    }
    buf = xmalloc(cap);
    for (;;) {
        size_t n = fread(buf + len, 1, cap - len - 1, f);
        len += n;
        if (n == 0) {
            break;
        }
        if (cap - len - 1 == 0) {
            char *grown;
            if (cap > ((size_t)64 << 20)) {
                fprintf(stderr, "hpoctl: '%s' is too large\n", path);
                free(buf);
                buf = NULL;
                break;
            }
            grown = realloc(buf, cap * 2);
            if (grown == NULL) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = grown;
            cap *= 2;
        }
    }
    if (buf != NULL && ferror(f)) {
        fprintf(stderr, "hpoctl: cannot read '%s'\n", path);
        free(buf);
        buf = NULL;
    }
    if (f != stdin) {
        fclose(f);
    }
    if (buf != NULL) {
        buf[len] = '\0';
    }
    return buf;
}

/* One line per parameter: NAME TYPE DOMAIN. */
static void print_params_table(const json_t *params)
{
    struct table t = { .ncols = 3 };
    size_t i;
    json_t *p;

    table_add(&t, xstrdup("NAME"));
    table_add(&t, xstrdup("TYPE"));
    table_add(&t, xstrdup("DOMAIN"));
    json_array_foreach(params, i, p) {
        const char *type = json_string_value(json_object_get(p, "type"));
        const char *key;
        json_t *v;
        char *domain = xstrdup("");

        table_add(&t, cell(json_object_get(p, "name"), true));
        table_add(&t, xstrdup(type ? type : "?"));
        json_object_foreach((json_t *)p, key, v) {
            char *val;
            char *joined;
            if (strcmp(key, "name") == 0 || strcmp(key, "type") == 0 || json_is_null(v) ||
                    json_is_false(v)) {
                continue;
            }
            val = cell(v, true);
            joined = xprintf("%s%s%s=%s", domain, domain[0] ? " " : "", key, val);
            free(val);
            free(domain);
            domain = joined;
        }
        table_add(&t, domain);
    }
    table_print(&t, "  ");
    table_free(&t);
}

static void print_study(const json_t *s)
{
    const char *key;
    json_t *v;
    json_t *trials = json_object_get(s, "trials");
    json_t *best = json_object_get(s, "best_trial");

    printf("%-18s %s\n", "name:", json_string_value(json_object_get(s, "name")));
    json_object_foreach((json_t *)s, key, v) {
        char label[160];
        char *text;

        if (strcmp(key, "name") == 0 || strcmp(key, "params") == 0 ||
                strcmp(key, "trials") == 0 || strcmp(key, "best_trial") == 0) {
            continue;
        }
        snprintf(label, sizeof(label), "%s:", key);
        text = cell(v, true);
        printf("%-18s %s\n", label, text);
        free(text);
    }
    if (json_is_object(trials)) {
        printf("%-18s %" JSON_INTEGER_FORMAT " (waiting %" JSON_INTEGER_FORMAT
               ", running %" JSON_INTEGER_FORMAT ", complete %" JSON_INTEGER_FORMAT
               ", pruned %" JSON_INTEGER_FORMAT ", failed %" JSON_INTEGER_FORMAT ")\n",
                "trials:", json_integer_value(json_object_get(trials, "total")),
                json_integer_value(json_object_get(trials, "waiting")),
                json_integer_value(json_object_get(trials, "running")),
                json_integer_value(json_object_get(trials, "complete")),
                json_integer_value(json_object_get(trials, "pruned")),
                json_integer_value(json_object_get(trials, "failed")));
    }
    if (json_is_object(best)) {
        char *val = cell(json_object_get(best, "value"), true);
        printf("%-18s trial %" JSON_INTEGER_FORMAT ", value %s\n", "best:",
                json_integer_value(json_object_get(best, "number")), val);
        free(val);
    } else {
        printf("%-18s -\n", "best:");
    }
    if (json_is_array(json_object_get(s, "params"))) {
        printf("params:\n");
        print_params_table(json_object_get(s, "params"));
    }
}

/* "NAME[:minimize|maximize]" as {"name", "direction"}; NULL after a usage error. */
static json_t *objective_flag(const char *arg)
{
    const char *colon = strchr(arg, ':');
    const char *dir = colon ? colon + 1 : "minimize";
    size_t len = colon ? (size_t)(colon - arg) : strlen(arg);

    if (len == 0 || (strcmp(dir, "minimize") != 0 && strcmp(dir, "maximize") != 0)) {
        usage_error("--objective '%s': expected NAME or NAME:minimize or NAME:maximize", arg);
        return NULL;
    }
    return json_pack("{s:s%,s:s}", "name", arg, len, "direction", dir);
}

/* "NAME:min=A", "NAME:max=B" or "NAME:min=A,max=B" as {"name", "min", "max"}; NULL: usage error. */
static json_t *constraint_flag(const char *arg)
{
    const char *colon = strchr(arg, ':');
    json_t *o;
    char *bounds, *save = NULL;

    if (colon == NULL || colon == arg || colon[1] == '\0') {
        usage_error("--constraint '%s': expected NAME:min=A, NAME:max=B or NAME:min=A,max=B",
                arg);
        return NULL;
    }
    o = json_pack("{s:s%}", "name", arg, (size_t)(colon - arg));
    bounds = xstrdup(colon + 1);
    for (char *part = strtok_r(bounds, ",", &save); part != NULL;
            part = strtok_r(NULL, ",", &save)) {
        double x;
        bool is_min = strncmp(part, "min=", 4) == 0, is_max = strncmp(part, "max=", 4) == 0;

        if ((!is_min && !is_max) || parse_double(part + 4, &x) < 0 || !isfinite(x) ||
                json_object_get(o, is_min ? "min" : "max") != NULL) {
            usage_error("--constraint '%s': expected NAME:min=A, NAME:max=B or "
                        "NAME:min=A,max=B (finite numbers)", arg);
            free(bounds);
            json_decref(o);
            return NULL;
        }
        json_object_set_new(o, is_min ? "min" : "max", json_real(x));
    }
    free(bounds);
    return o;
}

/* Set root[key] to the list that `parse` makes of n flags (none: untouched); false: a bad flag. */
static bool flags_into(json_t *root, const char *key, const char *const *flags, int n,
        json_t *(*parse)(const char *))
{
    json_t *list;

    if (n <= 0) {
        return true;
    }
    list = json_array();
    for (int k = 0; k < n; k++) {
        json_t *o = parse(flags[k]);
        if (o == NULL) {
            json_decref(list);
            return false;
        }
        json_array_append_new(list, o);
    }
    json_object_set_new(root, key, list);
    return true;
}

/* `study create` flags: set the spec's "objectives" / "constraints" (text replaced). */
static int spec_with_flags(const struct args *a, char **spec)
{
    json_error_t jerr;
    json_t *root = json_loads(*spec, JSON_REJECT_DUPLICATES, &jerr);
    char *text;

    if (!json_is_object(root)) {
        json_decref(root);
        return usage_error("--objective/--constraint: %s is not a JSON object", a->file);
    }
    if ((a->nobjectives > 0 && json_object_get(root, "objectives") != NULL) ||
            (a->nconstraints > 0 && json_object_get(root, "constraints") != NULL)) {
        json_decref(root);
        return usage_error("%s already has the \"objectives\" or \"constraints\" that "
                           "--objective/--constraint would set", a->file);
    }
    if (!flags_into(root, "objectives", a->objectives, a->nobjectives, objective_flag) ||
            !flags_into(root, "constraints", a->constraints, a->nconstraints, constraint_flag)) {
        json_decref(root);
        return HPOCTL_EXIT_USAGE;
    }
    text = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    if (text == NULL) {
        fputs("hpoctl: out of memory\n", stderr);
        return HPOCTL_EXIT_API;
    }
    free(*spec);
    *spec = text;
    return 0;
}

static int cmd_study(struct hpo_client *c, const struct args *a)
{
    struct hpo_client_error err;
    const char *sub = a->npos > 1 ? a->pos[1] : NULL;
    char *body = NULL;
    json_t *root;

    if (sub == NULL) {
        return usage_error("'study' needs a subcommand: create, show or delete");
    }
    if (strcmp(sub, "create") == 0) {
        bool created = false;
        char *spec;
        int r;

        if (a->file == NULL || a->npos != 2) {
            return usage_error("usage: hpoctl study create -f SPEC.json [--objective NAME[:DIR]]..."
                               " [--constraint NAME:BOUNDS]...");
        }
        spec = read_file(a->file);
        if (spec == NULL) {
            return HPOCTL_EXIT_API;
        }
        if (a->nobjectives > 0 || a->nconstraints > 0) {
            r = spec_with_flags(a, &spec);
            if (r != 0) {
                free(spec);
                return r;
            }
        }
        r = hpo_client_study_create(c, spec, &created, &body, &err);
        free(spec);
        if (r < 0) {
            hpoctl_print_error("study create", &err);
            return HPOCTL_EXIT_API;
        }
        root = parse_json(body);
        hpo_client_free(body);
        if (root == NULL) {
            return HPOCTL_EXIT_API;
        }
        if (a->json) {
            print_json(root);
        } else {
            printf("%s study %s\n", created ? "created" : "exists (identical):",
                    json_string_value(json_object_get(root, "name")));
        }
        json_decref(root);
        return HPOCTL_EXIT_OK;
    }
    if ((a->nobjectives > 0 || a->nconstraints > 0) && strcmp(sub, "create") != 0) {
        return usage_error("--objective and --constraint belong to 'study create'");
    }
    if (strcmp(sub, "show") == 0 || strcmp(sub, "delete") == 0) {
        if (a->npos != 3) {
            return usage_error("usage: hpoctl study %s NAME", sub);
        }
        if (sub[0] == 'd') {
            if (hpo_client_study_delete(c, a->pos[2], &err) < 0) {
                hpoctl_print_error("study delete", &err);
                return HPOCTL_EXIT_API;
            }
            if (a->json) {
                puts("{}");
            } else {
                printf("deleted study %s\n", a->pos[2]);
            }
            return HPOCTL_EXIT_OK;
        }
        if (hpo_client_study_get(c, a->pos[2], &body, &err) < 0) {
            hpoctl_print_error("study show", &err);
            return HPOCTL_EXIT_API;
        }
        root = parse_json(body);
        hpo_client_free(body);
        if (root == NULL) {
            return HPOCTL_EXIT_API;
        }
        if (a->json) {
            print_json(root);
        } else {
            print_study(root);
        }
        json_decref(root);
        return HPOCTL_EXIT_OK;
    }
    return usage_error("unknown study subcommand '%s'", sub);
}

/* Print a trial as "trial N (state) value V" and one "  name = value" line per param. */
static void print_trial(const char *json_text, bool as_json)
{
    json_t *root = parse_json(json_text);
    json_t *params;
    const char *key;
    json_t *v;

    if (root == NULL) {
        return;
    }
    if (as_json) {
        print_json(root);
        json_decref(root);
        return;
    }
    printf("trial %" JSON_INTEGER_FORMAT " (%s)", json_integer_value(json_object_get(root, "number")),
            json_string_value(json_object_get(root, "state")));
    if (json_is_number(json_object_get(root, "value"))) {
        char *val = cell(json_object_get(root, "value"), true);
        printf(" value %s", val);
        free(val);
    } else if (json_object_size(json_object_get(root, "values")) > 0) {
        fputs(" values", stdout);
        json_object_foreach(json_object_get(root, "values"), key, v) {
            char *val = cell(v, true);
            printf(" %s=%s", key, val);
            free(val);
        }
    }
    if (json_object_size(json_object_get(root, "constraints")) > 0) {
        fputs(" constraints", stdout);
        json_object_foreach(json_object_get(root, "constraints"), key, v) {
            char *val = cell(v, true);
            printf(" %s=%s", key, val);
            free(val);
        }
    }
    if (json_is_false(json_object_get(root, "feasible")) &&
            strcmp(json_string_value(json_object_get(root, "state")), "complete") == 0) {
        fputs(" infeasible", stdout);
    }
    putchar('\n');
    params = json_object_get(root, "params");
    json_object_foreach(params, key, v) {
        char *val = cell(v, true);
        printf("  %s = %s\n", key, val);
        free(val);
    }
    json_decref(root);
}

static int parse_int64(const char *s, int64_t *ret)
{
    char *end;
    long long x;

    errno = 0;
    x = strtoll(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0') {
        return -EINVAL;
    }
    *ret = x;
    return 0;
}

static int parse_double(const char *s, double *ret)
{
    char *end;
    double x;

    errno = 0;
    x = strtod(s, &end);
    if (errno != 0 || end == s || *end != '\0') {
        return -EINVAL;
    }
    *ret = x;
    return 0;
}

/* `hpoctl ask|best STUDY`: one call that returns a trial, printed. */
static int trial_command(struct hpo_client *c, const struct args *a, const char *name,
        const char *usage,
        int (*call)(struct hpo_client *, const char *, struct hpo_trial **,
                struct hpo_client_error *))
{
    struct hpo_client_error err;
    struct hpo_trial *t;

    if (a->npos != 2) {
        return usage_error("%s", usage);
    }
    if (call(c, a->pos[1], &t, &err) < 0) {
        hpoctl_print_error(name, &err);
        return HPOCTL_EXIT_API;
    }
    print_trial(hpo_trial_json(t), a->json);
    hpo_trial_free(t);
    return HPOCTL_EXIT_OK;
}

static int cmd_ask(struct hpo_client *c, const struct args *a)
{
    return trial_command(c, a, "ask", "usage: hpoctl ask STUDY", hpo_client_ask);
}

/*
** Split "NAME=V" (V a finite number) into names[k] (new) and vals[k]; a bare
** "V" when `bare_ok` gives a NULL name. Returns 0 or a usage error's exit code.
*/
static int named_number_arg(const char *arg, const char *opt, bool bare_ok, char **ret_name,
        double *ret_value)
{
    const char *text = arg;
    char *name = NULL;
    const char *eq = strchr(arg, '=');

    if (eq != NULL) {
        name = xmalloc((size_t)(eq - arg) + 1);
        memcpy(name, arg, (size_t)(eq - arg));
        name[eq - arg] = '\0';
        text = eq + 1;
    }
    if (name == NULL && !bare_ok) {
        return usage_error("%s '%s': expected NAME=VALUE", opt, arg);
    }
    if ((name != NULL && name[0] == '\0') || parse_double(text, ret_value) < 0 ||
            !isfinite(*ret_value)) {
        free(name);
        return usage_error("%s '%s': expected %sa finite number", opt, arg,
                bare_ok ? "[NAME=]" : "NAME=");
    }
    *ret_name = name;
    return 0;
}

/* `tell --value ... --constraint ...`: objectives (named, or one bare value) and constraints. */
static int tell_values(struct hpo_client *c, const struct args *a, int64_t number,
        struct hpo_client_error *err, int *ret_rc)
{
    char *names[MAX_LIST] = { NULL }, *cnames[MAX_LIST] = { NULL };
    double vals[MAX_LIST], cvals[MAX_LIST];
    int nbare = 0, rc = 0, r = 0;

    for (int k = 0; k < a->nvalues && rc == 0; k++) {
        rc = named_number_arg(a->values[k], "--value", true, &names[k], &vals[k]);
        nbare += rc == 0 && names[k] == NULL;
    }
    if (rc == 0 && nbare > 0 && a->nvalues > 1) {
        rc = usage_error("--value V (no name) is the one-objective form: give it once, or "
                         "name every objective (--value NAME=V)");
    }
    for (int k = 0; k < a->nconstraints && rc == 0; k++) {
        rc = named_number_arg(a->constraints[k], "--constraint", false, &cnames[k], &cvals[k]);
    }
    if (rc == 0) {
        r = hpo_client_tell_values(c, a->pos[1], number,
                nbare > 0 ? NULL : (const char *const *)names, vals, (size_t)a->nvalues,
                (const char *const *)cnames, cvals, (size_t)a->nconstraints, err);
    }
    for (int k = 0; k < MAX_LIST; k++) {
        free(names[k]);
        free(cnames[k]);
    }
    *ret_rc = rc;
    return r;
}

static int cmd_tell(struct hpo_client *c, const struct args *a)
{
    struct hpo_client_error err;
    struct hpo_trial *t;
    int64_t number;
    double value = 0;
    int nres = (a->failed ? 1 : 0) + (a->pruned ? 1 : 0) + (a->npos == 4 ? 1 : 0) +
            (a->nvalues > 0 ? 1 : 0);
    int r;

    if (a->npos < 3 || a->npos > 4 || nres != 1 || (a->nconstraints > 0 && a->nvalues == 0)) {
        return usage_error("usage: hpoctl tell STUDY N VALUE|--failed|--pruned|"
                           "--value [NAME=]V... [--constraint NAME=V]...");
    }
    if (parse_int64(a->pos[2], &number) < 0 || number < 0) {
        return usage_error("trial number '%s' is not an integer >= 0", a->pos[2]);
    }
    if (a->npos == 4 && parse_double(a->pos[3], &value) < 0) {
        return usage_error("value '%s' is not a number", a->pos[3]);
    }
    if (a->nvalues > 0) {
        int rc = 0;

        r = tell_values(c, a, number, &err, &rc);
        if (rc != 0) {
            return rc;
        }
    } else if (a->failed) {
        r = hpo_client_tell_failed(c, a->pos[1], number, &err);
    } else if (a->pruned) {
        r = hpo_client_tell_pruned(c, a->pos[1], number, &err);
    } else {
        r = hpo_client_tell(c, a->pos[1], number, value, &err);
    }
    if (r < 0) {
        hpoctl_print_error("tell", &err);
        return err.code == HPO_CLIENT_USAGE ? HPOCTL_EXIT_USAGE : HPOCTL_EXIT_API;
    }
    /* The tell answer is the trial; fetch it again to print it (cheap, and exact). */
    if (hpo_client_trial_get(c, a->pos[1], number, &t, &err) < 0) {
        hpoctl_print_error("tell", &err);
        return HPOCTL_EXIT_API;
    }
    print_trial(hpo_trial_json(t), a->json);
    hpo_trial_free(t);
    return HPOCTL_EXIT_OK;
}

static int cmd_report(struct hpo_client *c, const struct args *a)
{
    struct hpo_client_error err;
    int64_t number;
    int64_t step;
    double value;
    bool prune = false;

    if (a->npos != 5) {
        return usage_error("usage: hpoctl report STUDY N STEP VALUE");
    }
    if (parse_int64(a->pos[2], &number) < 0 || number < 0) {
        return usage_error("trial number '%s' is not an integer >= 0", a->pos[2]);
    }
    if (parse_int64(a->pos[3], &step) < 0 || step < 0) {
        return usage_error("step '%s' is not an integer >= 0", a->pos[3]);
    }
    if (parse_double(a->pos[4], &value) < 0) {
        return usage_error("value '%s' is not a number", a->pos[4]);
    }
    if (hpo_client_report(c, a->pos[1], number, step, value, &prune, &err) < 0) {
        hpoctl_print_error("report", &err);
        return err.code == HPO_CLIENT_USAGE ? HPOCTL_EXIT_USAGE : HPOCTL_EXIT_API;
    }
    if (a->json) {
        printf("{\"prune\": %s}\n", prune ? "true" : "false");
    } else {
        puts(prune ? "prune" : "continue");
    }
    return HPOCTL_EXIT_OK;
}

static bool valid_state(const char *s)
{
    static const char *const states[] = { "waiting", "running", "complete", "pruned", "failed" };

    for (size_t i = 0; i < sizeof(states) / sizeof(states[0]); i++) {
        if (strcmp(s, states[i]) == 0) {
            return true;
        }
    }
    return false;
}

/* Whether trials carry several objectives or constraints (a table column each, not VALUE). */
static bool trials_have_results(const json_t *trials)
{
    size_t i;
    json_t *tr;

    json_array_foreach(trials, i, tr) {
        if (json_object_get(tr, "constraints") != NULL ||
                json_object_size(json_object_get(tr, "values")) > 1) {
            return true;
        }
    }
    return false;
}

static int cmd_trials(struct hpo_client *c, const struct args *a)
{
    const size_t page = 1000;
    char *study;
    char *filter;
    json_t *all;
    json_int_t total = 0;
    int rc = HPOCTL_EXIT_OK;

    if (a->npos != 2) {
        return usage_error("usage: hpoctl trials STUDY [--state S] [--csv]");
    }
    if (a->state != NULL && !valid_state(a->state)) {
        return usage_error("--state must be waiting, running, complete, pruned or failed");
    }
    if (a->feasible != NULL && strcmp(a->feasible, "true") != 0 &&
            strcmp(a->feasible, "false") != 0) {
        return usage_error("--feasible must be true or false");
    }
    if (a->csv && a->json) {
        return usage_error("--csv and --json exclude each other");
    }
    study = escape(a->pos[1]);
    filter = xprintf("%s%s%s%s", a->state ? "&state=" : "", a->state ? a->state : "",
            a->feasible ? "&feasible=" : "", a->feasible ? a->feasible : "");
    all = json_array();
    /* Page through in order of number; `total` says when we have them all. */
    for (size_t offset = 0;; offset += page) {
        char *path = xprintf("/v1/studies/%s/trials?limit=%zu&offset=%zu%s", study,
                a->csv ? (size_t)1 : page, offset, filter);
        json_t *root = get_json(c, path, "trials");
        json_t *list;
        size_t got;

        free(path);
        if (root == NULL) {
            rc = HPOCTL_EXIT_API;
            break;
        }
        total = json_integer_value(json_object_get(root, "total"));
        list = json_object_get(root, "trials");
        got = json_array_size(list);
        if (!a->csv) {
            json_array_extend(all, list);
        }
        json_decref(root);
        if (a->csv || json_array_size(all) >= (size_t)total || got == 0) {
            break;
        }
    }
    if (rc == HPOCTL_EXIT_OK && a->csv) {
        struct hpo_client_error err;
        char *path = xprintf("/v1/studies/%s/trials?format=csv&limit=%lld%s", study,
                (long long)(total > 0 ? total : 1), filter);
        char *body = NULL;

        if (hpo_client_request(c, "GET", path, NULL, true, NULL, &body, &err) < 0) {
            hpoctl_print_error("trials", &err);
            rc = HPOCTL_EXIT_API;
        } else {
            fputs(body, stdout);
            hpo_client_free(body);
        }
        free(path);
    } else if (rc == HPOCTL_EXIT_OK && a->json) {
        json_t *out = json_pack("{s:O,s:I}", "trials", all, "total", total);
        print_json(out);
        json_decref(out);
    } else if (rc == HPOCTL_EXIT_OK && trials_have_results(all)) {
        print_front(all, true, true);
    } else if (rc == HPOCTL_EXIT_OK) {
        /* Columns: number, state, value, then every param name seen, in order. */
        json_t *names = json_array();
        struct table t = { 0 };
        size_t i;
        json_t *tr;

        json_array_foreach(all, i, tr) {
            const char *key;
            json_t *v;
            json_object_foreach(json_object_get(tr, "params"), key, v) {
                size_t k;
                json_t *n;
                bool seen = false;
                json_array_foreach(names, k, n) {
                    if (strcmp(json_string_value(n), key) == 0) {
                        seen = true;
                        break;
                    }
                }
                if (!seen) {
                    json_array_append_new(names, json_string(key));
                }
            }
        }
        t.ncols = 3 + json_array_size(names);
        table_add(&t, xstrdup("NUMBER"));
        table_add(&t, xstrdup("STATE"));
        table_add(&t, xstrdup("VALUE"));
        json_array_foreach(names, i, tr) {
            table_add(&t, xstrdup(json_string_value(tr)));
        }
        json_array_foreach(all, i, tr) {
            table_add(&t, cell(json_object_get(tr, "number"), true));
            table_add(&t, cell(json_object_get(tr, "state"), true));
            table_add(&t, cell(json_object_get(tr, "value"), false));
            add_named_cells(&t, tr, "params", names);
        }
        table_print(&t, "");
        table_free(&t);
        json_decref(names);
    }
    json_decref(all);
    free(filter);
    free(study);
    return rc;
}

/* Stream GET /v1/admin/backup to FILE.tmp, fsync, rename to FILE. */
static int cmd_backup(struct hpo_client *c, const struct args *a)
{
    struct hpo_client_error err;
    const char *file;
    char *tmp;
    char ebuf[128];
    uint64_t bytes = 0;
    size_t n;
    int fd;
    int r;

    if (a->npos != 2 || a->pos[1][0] == '\0') {
        return usage_error("usage: hpoctl backup FILE");
    }
    file = a->pos[1];
    n = strlen(file) + sizeof(".tmp");
    tmp = malloc(n);
    if (tmp == NULL) {
        fputs("hpoctl: backup: out of memory\n", stderr);
        return HPOCTL_EXIT_API;
    }
    snprintf(tmp, n, "%s.tmp", file);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        fprintf(stderr, "hpoctl: backup: cannot create '%s': %s\n", tmp,
                hpoctl_strerror(errno, ebuf, sizeof(ebuf)));
        free(tmp);
        return HPOCTL_EXIT_API;
    }
    r = hpo_client_get_to_fd(c, "/v1/admin/backup", "application/x-tar", fd, &bytes, &err);
    if (r == 0 && fsync(fd) < 0) {
        r = -errno;
        fprintf(stderr, "hpoctl: backup: writing '%s': %s\n", tmp,
                hpoctl_strerror(-r, ebuf, sizeof(ebuf)));
    } else if (r < 0) {
        hpoctl_print_error("backup", &err);
        if (err.code == HPO_CLIENT_PERMISSION_DENIED) {
            fputs("hpoctl: backup needs a token with the admin role (and no study prefix)\n",
                    stderr);
        }
    }
    if (close(fd) < 0 && r == 0) {
        r = -errno;
        fprintf(stderr, "hpoctl: backup: writing '%s': %s\n", tmp,
                hpoctl_strerror(-r, ebuf, sizeof(ebuf)));
    }
    if (r == 0 && rename(tmp, file) < 0) {
        r = -errno;
        fprintf(stderr, "hpoctl: backup: renaming '%s' to '%s': %s\n", tmp, file,
                hpoctl_strerror(-r, ebuf, sizeof(ebuf)));
    }
    if (r < 0) {
        (void)unlink(tmp);
        free(tmp);
        return HPOCTL_EXIT_API;
    }
    free(tmp);
    printf("backup saved to %s (%llu bytes)\n", file, (unsigned long long)bytes);
    return HPOCTL_EXIT_OK;
}

/* Append the keys of trials[*].field (objects) to `names`, first seen first. */
static void collect_keys(const json_t *trials, const char *field, json_t *names)
{
    size_t i, k;
    json_t *tr, *n;

    json_array_foreach(trials, i, tr) {
        const char *key;
        json_t *v;

        json_object_foreach(json_object_get(tr, field), key, v) {
            bool seen = false;

            json_array_foreach(names, k, n) {
                seen = seen || strcmp(json_string_value(n), key) == 0;
            }
            if (!seen) {
                json_array_append_new(names, json_string(key));
            }
        }
    }
}

/*
** A table of trials with several objectives or constraints: NUMBER, [STATE],
** one column per objective (their "values"), per constraint, and FEASIBLE
** when the trials carry it; then the params when `params`.
*/
static void print_front(const json_t *trials, bool state, bool params)
{
    json_t *objs = json_array(), *cons = json_array(), *pnames = json_array();
    bool feasible = false;
    struct table t = { 0 };
    size_t i, k;
    json_t *tr, *n;

    collect_keys(trials, "values", objs);
    collect_keys(trials, "constraints", cons);
    if (params) {
        collect_keys(trials, "params", pnames);
    }
    json_array_foreach(trials, i, tr) {
        feasible = feasible || json_is_boolean(json_object_get(tr, "feasible"));
    }
    t.ncols = 1 + (state ? 1 : 0) + json_array_size(objs) + json_array_size(cons) +
            (feasible ? 1 : 0) + json_array_size(pnames);
    table_add(&t, xstrdup("NUMBER"));
    if (state) {
        table_add(&t, xstrdup("STATE"));
    }
    json_array_foreach(objs, k, n) {
        table_add(&t, xstrdup(json_string_value(n)));
    }
    json_array_foreach(cons, k, n) {
        table_add(&t, xstrdup(json_string_value(n)));
    }
    if (feasible) {
        table_add(&t, xstrdup("FEASIBLE"));
    }
    json_array_foreach(pnames, k, n) {
        table_add(&t, xstrdup(json_string_value(n)));
    }
    json_array_foreach(trials, i, tr) {
        table_add(&t, cell(json_object_get(tr, "number"), true));
        if (state) {
            table_add(&t, cell(json_object_get(tr, "state"), true));
        }
        add_named_cells(&t, tr, "values", objs);
        add_named_cells(&t, tr, "constraints", cons);
        if (feasible) {
            table_add(&t, cell(json_object_get(tr, "feasible"), true));
        }
        add_named_cells(&t, tr, "params", pnames);
    }
    table_print(&t, "");
    table_free(&t);
    json_decref(objs);
    json_decref(cons);
    json_decref(pnames);
}

/* GET .../best or .../pareto of the study named by pos[1]; NULL after printing the error. */
static json_t *get_study_json(struct hpo_client *c, const struct args *a, const char *what)
{
    char *study = escape(a->pos[1]);
    char *path = xprintf("/v1/studies/%s/%s", study, what);
    json_t *root = get_json(c, path, what);

    free(path);
    free(study);
    return root;
}

static int cmd_best(struct hpo_client *c, const struct args *a)
{
    json_t *root, *trials;

    if (a->npos != 2) {
        return usage_error("usage: hpoctl best STUDY");
    }
    root = get_study_json(c, a, "best");
    if (root == NULL) {
        return HPOCTL_EXIT_API;
    }
    trials = json_object_get(root, "trials");
    if (a->json) {
        print_json(root);
    } else if (!json_is_array(trials)) {
        /* One objective: the best trial, as before. */
        char *text = json_dumps(root, JSON_COMPACT);
        if (text != NULL) {
            print_trial(text, false);
            free(text);
        }
    } else if (json_array_size(trials) == 0) {
        puts("no feasible complete trial yet");
    } else {
        print_front(trials, false, false);
    }
    json_decref(root);
    return HPOCTL_EXIT_OK;
}

static int cmd_pareto(struct hpo_client *c, const struct args *a)
{
    json_t *root, *trials, *ref;
    char *hv;

    if (a->npos != 2) {
        return usage_error("usage: hpoctl pareto STUDY");
    }
    root = get_study_json(c, a, "pareto");
    if (root == NULL) {
        return HPOCTL_EXIT_API;
    }
    if (a->json) {
        print_json(root);
        json_decref(root);
        return HPOCTL_EXIT_OK;
    }
    trials = json_object_get(root, "trials");
    if (json_array_size(trials) == 0) {
        puts("no feasible complete trial yet");
    } else {
        print_front(trials, false, false);
    }
    hv = cell(json_object_get(root, "hypervolume"), true);
    printf("hypervolume: %s\n", hv);
    free(hv);
    ref = json_object_get(root, "reference_point");
    if (json_is_object(ref)) {
        const char *key;
        json_t *v;

        fputs("reference point:", stdout);
        json_object_foreach(ref, key, v) {
            char *text = cell(v, true);
            printf(" %s=%s", key, text);
            free(text);
        }
        putchar('\n');
    } else {
        puts("reference point: -");
    }
    json_decref(root);
    return HPOCTL_EXIT_OK;
}

/* Split "KEY=VALUE" into a new key and a borrowed value; NULL without '=' or key. */
static char *split_assignment(const char *arg, const char **ret_value)
{
    const char *eq = strchr(arg, '=');
    char *key;

    if (eq == NULL || eq == arg) {
        return NULL;
    }
    key = xmalloc((size_t)(eq - arg) + 1);
    memcpy(key, arg, (size_t)(eq - arg));
    key[eq - arg] = '\0';
    *ret_value = eq + 1;
    return key;
}

/* An attr's value: JSON when the text is JSON, else the text as a string. */
static json_t *attr_value(const char *text)
{
    json_t *v = json_loads(text, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, NULL);

    return v != NULL ? v : json_string(text);
}

/* Whether `text` is a number and its value; false otherwise. */
static bool number_text(const char *text, double *ret)
{
    return parse_double(text, ret) == 0 && isfinite(*ret);
}

/*
** A param's value from its text, read by the param's definition `def` (NULL
** when the study has no such param: then JSON, else a string, and the daemon
** judges). Returns NULL (after a message) when the text does not fit the type.
*/
static json_t *param_value(const json_t *def, const char *name, const char *text)
{
    const char *type = json_string_value(json_object_get(def, "type"));
    double x;

    if (def == NULL || type == NULL) {
        return attr_value(text);
    }
    if (strcmp(type, "categorical") == 0) {
        size_t i;
        json_t *choice;

        json_array_foreach(json_object_get(def, "choices"), i, choice) {
            if ((json_is_string(choice) && strcmp(json_string_value(choice), text) == 0) ||
                    (json_is_number(choice) && number_text(text, &x) &&
                            json_number_value(choice) == x) ||
                    (json_is_true(choice) && strcmp(text, "true") == 0) ||
                    (json_is_false(choice) && strcmp(text, "false") == 0) ||
                    (json_is_null(choice) && strcmp(text, "null") == 0)) {
                return json_deep_copy(choice);
            }
        }
        /* Not a choice: the daemon says so, with the field. */
        return json_string(text);
    }
    if (json_is_integer(json_object_get(def, "size"))) {
        json_t *arr = json_array();
        const char *p = text;

        for (;;) {
            char *end;
            errno = 0;
            x = strtod(p, &end);
            if (end == p || errno != 0 || !isfinite(x) || (*end != ',' && *end != '\0')) {
                json_decref(arr);
                fprintf(stderr, "hpoctl: param '%s' is a vector: give comma-separated numbers\n",
                        name);
                return NULL;
            }
            json_array_append_new(arr, json_real(x));
            if (*end == '\0') {
                return arr;
            }
            p = end + 1;
        }
    }
    if (strcmp(type, "int") == 0) {
        int64_t k;
        if (parse_int64(text, &k) == 0) {
            return json_integer((json_int_t)k);
        }
        if (number_text(text, &x) && x == floor(x) && fabs(x) < 9007199254740992.0) {
            return json_integer((json_int_t)x);
        }
        fprintf(stderr, "hpoctl: param '%s' is an int: '%s' is not an integer\n", name, text);
        return NULL;
    }
    if (!number_text(text, &x)) {
        fprintf(stderr, "hpoctl: param '%s' is a float: '%s' is not a number\n", name, text);
        return NULL;
    }
    return json_real(x);
}

/* The definition of param `name` in a study, or NULL. */
static const json_t *find_param(const json_t *study, const char *name)
{
    size_t i;
    json_t *p;

    json_array_foreach(json_object_get(study, "params"), i, p) {
        const char *n = json_string_value(json_object_get(p, "name"));
        if (n != NULL && strcmp(n, name) == 0) {
            return p;
        }
    }
    return NULL;
}

/* Build {"KEY": value, ...} from KEY=VALUE arguments; NULL after a usage message. */
static json_t *attrs_object(const char *const *list, int n, json_t *obj, const char *what)
{
    for (int i = 0; i < n; i++) {
        const char *value = NULL;
        char *key = split_assignment(list[i], &value);

        if (key == NULL) {
            usage_error("%s '%s' is not KEY=VALUE", what, list[i]);
            json_decref(obj);
            return NULL;
        }
        json_object_set_new(obj, key, attr_value(value));
        free(key);
    }
    return obj;
}

static int cmd_enqueue(struct hpo_client *c, const struct args *a)
{
    struct hpo_client_error err;
    struct hpo_trial *t = NULL;
    char *text = NULL;
    json_t *study;
    json_t *params;
    json_t *attrs = NULL;
    char *params_text;
    char *attrs_text = NULL;
    int r;

    if (a->npos != 2 || a->nparams == 0) {
        return usage_error("usage: hpoctl enqueue STUDY -p NAME=VALUE [-p NAME=VALUE...]");
    }
    for (int i = 0; i < a->nparams; i++) {
        if (strchr(a->params[i], '=') == NULL || a->params[i][0] == '=') {
            return usage_error("--param '%s' is not NAME=VALUE", a->params[i]);
        }
    }
    if (a->nattrs > 0) {
        attrs = attrs_object(a->attrs, a->nattrs, json_object(), "--attr");
        if (attrs == NULL) {
            return HPOCTL_EXIT_USAGE;
        }
    }
    /* The study's definition says how to read each value. */
    if (hpo_client_study_get(c, a->pos[1], &text, &err) < 0) {
        hpoctl_print_error("enqueue", &err);
        json_decref(attrs);
        return HPOCTL_EXIT_API;
    }
    study = parse_json(text);
    hpo_client_free(text);
    if (study == NULL) {
        json_decref(attrs);
        return HPOCTL_EXIT_API;
    }
    params = json_object();
    for (int i = 0; i < a->nparams; i++) {
        const char *value = NULL;
        char *name = split_assignment(a->params[i], &value);
        json_t *v = param_value(find_param(study, name), name, value);

        if (v == NULL) {
            free(name);
            json_decref(params);
            json_decref(attrs);
            json_decref(study);
            return HPOCTL_EXIT_USAGE;
        }
        json_object_set_new(params, name, v);
        free(name);
    }
    json_decref(study);
    params_text = json_dumps(params, JSON_COMPACT);
    json_decref(params);
    if (attrs != NULL) {
        attrs_text = json_dumps(attrs, JSON_COMPACT);
        json_decref(attrs);
    }
    if (params_text == NULL || (a->nattrs > 0 && attrs_text == NULL)) {
        fputs("hpoctl: out of memory\n", stderr);
        exit(HPOCTL_EXIT_API);
    }
    r = hpo_client_enqueue(c, a->pos[1], params_text, attrs_text, &t, &err);
    free(params_text);
    free(attrs_text);
    if (r < 0) {
        hpoctl_print_error("enqueue", &err);
        return HPOCTL_EXIT_API;
    }
    print_trial(hpo_trial_json(t), a->json);
    hpo_trial_free(t);
    return HPOCTL_EXIT_OK;
}

/* Print a study's or trial's user attrs, one "KEY = VALUE" per line (sorted). */
static void print_attrs(const json_t *root)
{
    json_t *attrs = json_object_get(root, "user_attrs");
    const char **keys;
    size_t n = 0;
    const char *key;
    json_t *v;

    keys = xmalloc((json_object_size(attrs) + 1) * sizeof(*keys));
    json_object_foreach(attrs, key, v) {
        keys[n++] = key;
    }
    /* Insertion sort: attrs are few. */
    for (size_t i = 1; i < n; i++) {
        for (size_t k = i; k > 0 && strcmp(keys[k - 1], keys[k]) > 0; k--) {
            const char *tmp = keys[k];
            keys[k] = keys[k - 1];
            keys[k - 1] = tmp;
        }
    }
    for (size_t i = 0; i < n; i++) {
        char *text = cell(json_object_get(attrs, keys[i]), true);
        printf("%s = %s\n", keys[i], text);
        free(text);
    }
    free(keys);
}

static int cmd_attrs(struct hpo_client *c, const struct args *a)
{
    struct hpo_client_error err;
    const char *study;
    int64_t number = -1;
    int first = 2;
    json_t *patch;
    char *patch_text;
    char *text = NULL;
    json_t *root;
    int r;

    if (a->npos < 2) {
        return usage_error("usage: hpoctl attrs STUDY [N] [KEY=VALUE...] [--unset KEY...]");
    }
    study = a->pos[1];
    if (a->npos > 2 && strchr(a->pos[2], '=') == NULL) {
        if (parse_int64(a->pos[2], &number) < 0 || number < 0) {
            return usage_error("trial number '%s' is not an integer >= 0", a->pos[2]);
        }
        first = 3;
    }
    patch = attrs_object(a->pos + first, a->npos - first, json_object(), "attr");
    if (patch == NULL) {
        return HPOCTL_EXIT_USAGE;
    }
    for (int i = 0; i < a->nunset; i++) {
        if (json_object_get(patch, a->unset[i]) != NULL) {
            json_decref(patch);
            return usage_error("'%s' is both set and unset", a->unset[i]);
        }
        json_object_set_new(patch, a->unset[i], json_null());
    }
    if (json_object_size(patch) == 0) {
        /* Nothing to change: show them. */
        json_decref(patch);
        if (number >= 0) {
            struct hpo_trial *t = NULL;
            r = hpo_client_trial_get(c, study, number, &t, &err);
            if (r == 0) {
                text = xstrdup(hpo_trial_json(t));
                hpo_trial_free(t);
            }
        } else {
            r = hpo_client_study_get(c, study, &text, &err);
        }
    } else {
        patch_text = json_dumps(patch, JSON_COMPACT);
        json_decref(patch);
        if (patch_text == NULL) {
            fputs("hpoctl: out of memory\n", stderr);
            exit(HPOCTL_EXIT_API);
        }
        if (number >= 0) {
            struct hpo_trial *t = NULL;
            r = hpo_client_trial_set_user_attrs(c, study, number, patch_text, &t, &err);
            if (r == 0) {
                text = xstrdup(hpo_trial_json(t));
                hpo_trial_free(t);
            }
        } else {
            r = hpo_client_study_set_user_attrs(c, study, patch_text, &text, &err);
        }
        free(patch_text);
    }
    if (r < 0) {
        hpoctl_print_error("attrs", &err);
        return HPOCTL_EXIT_API;
    }
    root = parse_json(text);
    free(text);
    if (root == NULL) {
        return HPOCTL_EXIT_API;
    }
    if (a->json) {
        print_json(root);
    } else {
        print_attrs(root);
    }
    json_decref(root);
    return HPOCTL_EXIT_OK;
}

static int cmd_run(struct hpo_client *c, const struct args *a)
{
    struct hpoctl_run_options o = { .n_trials = -1, .jobs = 1, .max_failures = 10,
        .progress_s = 10 };

    if (a->npos != 2 || a->ncmd < 1) {
        return usage_error("usage: hpoctl run STUDY [-n N] [-j J] [--timeout S] -- CMD [ARGS...]");
    }
    if (a->n != NULL && (parse_int64(a->n, &o.n_trials) < 0 || o.n_trials < 1)) {
        return usage_error("-n must be an integer >= 1");
    }
    if (a->j != NULL) {
        int64_t j;
        if (parse_int64(a->j, &j) < 0 || j < 1 || j > 1024) {
            return usage_error("-j must be an integer from 1 to 1024");
        }
        o.jobs = (int)j;
    }
    if (a->timeout != NULL && (parse_double(a->timeout, &o.timeout_s) < 0 || !(o.timeout_s > 0))) {
        return usage_error("--timeout must be a number of seconds > 0");
    }
    if (a->max_failures != NULL &&
            (parse_int64(a->max_failures, &o.max_failures) < 0 || o.max_failures < 0)) {
        return usage_error("--max-failures must be an integer >= 0");
    }
    if (a->progress != NULL && (parse_double(a->progress, &o.progress_s) < 0 ||
                                       !(o.progress_s >= 0) || o.progress_s > 1e6)) {
        return usage_error("--progress must be a number of seconds >= 0");
    }
    o.study = a->pos[1];
    o.argv = a->cmd;
    o.argc = a->ncmd;
    return hpoctl_run(c, &o);
}

int main(int argc, char **argv)
{
    struct args a = { 0 };
    struct hpo_client_error err;
    struct hpo_client *c = NULL;
    const char *cmd;
    int rc;

    for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++) {
        if (strcmp(argv[i], "--version") == 0) {
            printf("hpoctl %s\n", hpo_client_version());
            return HPOCTL_EXIT_OK;
        }
    }
    rc = parse_args(argc, argv, &a);
    if (rc != 0) {
        return rc;
    }
    /* "hpoctl --help", "hpoctl help [CMD]" and "hpoctl CMD --help". */
    if (a.npos > 0 && strcmp(a.pos[0], "help") == 0 && !a.help) {
        if (a.npos == 1) {
            fputs(usage_text, stdout);
            return HPOCTL_EXIT_OK;
        }
        return print_command_help(a.pos[1]) ? HPOCTL_EXIT_OK
                                             : usage_error("unknown command '%s'", a.pos[1]);
    }
    if (a.help) {
        if (a.npos == 0) {
            fputs(usage_text, stdout);
            return HPOCTL_EXIT_OK;
        }
        return print_command_help(a.pos[0]) ? HPOCTL_EXIT_OK
                                             : usage_error("unknown command '%s'", a.pos[0]);
    }
    if (a.npos == 0) {
        return usage_error("no command given");
    }
    cmd = a.pos[0];
    if (a.url == NULL) {
        a.url = getenv("HPOD_URL");
    }
    if (a.token == NULL) {
        a.token = getenv("HPOD_TOKEN");
    }
    /* Options that belong to one command only are usage errors elsewhere. */
    if ((a.csv || a.state || a.feasible) && strcmp(cmd, "trials") != 0) {
        return usage_error("--csv, --state and --feasible are options of 'trials'");
    }
    if (a.nvalues && strcmp(cmd, "tell") != 0) {
        return usage_error("--value belongs to 'tell'");
    }
    if (a.nconstraints && strcmp(cmd, "tell") != 0 && strcmp(cmd, "study") != 0) {
        return usage_error("--constraint belongs to 'tell' and 'study create'");
    }
    if (a.nobjectives && strcmp(cmd, "study") != 0) {
        return usage_error("--objective belongs to 'study create'");
    }
    if ((a.failed || a.pruned) && strcmp(cmd, "tell") != 0) {
        return usage_error("--failed and --pruned are options of 'tell'");
    }
    if ((a.n || a.j || a.timeout || a.max_failures || a.progress || a.cmd) &&
            strcmp(cmd, "run") != 0) {
        return usage_error(
                "-n, -j, --timeout, --max-failures, --progress and '--' belong to 'run'");
    }
    if (a.file && strcmp(cmd, "study") != 0) {
        return usage_error("-f belongs to 'study create'");
    }
    if ((a.nparams || a.nattrs) && strcmp(cmd, "enqueue") != 0) {
        return usage_error("--param and --attr belong to 'enqueue'");
    }
    if (a.nunset && strcmp(cmd, "attrs") != 0) {
        return usage_error("--unset belongs to 'attrs'");
    }
    json_object_seed(0);
    if (hpo_client_create(a.url, a.token, &c, &err) < 0) {
        hpoctl_print_error("--url", &err);
        return HPOCTL_EXIT_USAGE;
    }
    if (a.cacert != NULL && hpo_client_set_cacert(c, a.cacert) < 0) {
        hpo_client_destroy(c);
        return usage_error("--cacert: out of memory");
    }
    if (strcmp(cmd, "studies") == 0) {
        rc = a.npos == 1 ? cmd_studies(c, &a) : usage_error("usage: hpoctl studies");
    } else if (strcmp(cmd, "study") == 0) {
        rc = cmd_study(c, &a);
    } else if (strcmp(cmd, "ask") == 0) {
        rc = cmd_ask(c, &a);
    } else if (strcmp(cmd, "tell") == 0) {
        rc = cmd_tell(c, &a);
    } else if (strcmp(cmd, "report") == 0) {
        rc = cmd_report(c, &a);
    } else if (strcmp(cmd, "trials") == 0) {
        rc = cmd_trials(c, &a);
    } else if (strcmp(cmd, "best") == 0) {
        rc = cmd_best(c, &a);
    } else if (strcmp(cmd, "pareto") == 0) {
        rc = cmd_pareto(c, &a);
    } else if (strcmp(cmd, "enqueue") == 0) {
        rc = cmd_enqueue(c, &a);
    } else if (strcmp(cmd, "attrs") == 0) {
        rc = cmd_attrs(c, &a);
    } else if (strcmp(cmd, "run") == 0) {
        rc = cmd_run(c, &a);
    } else if (strcmp(cmd, "backup") == 0) {
        rc = cmd_backup(c, &a);
    } else {
        rc = usage_error("unknown command '%s'", cmd);
    }
    hpo_client_destroy(c);
    return rc;
}
