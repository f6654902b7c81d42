/*
** c_example.c: tune a function from C with libhpoclient.
**
**   cc c_example.c $(pkg-config --cflags --libs hpoclient) -lm -o c_example
**   HPOD_URL=http://127.0.0.1:8080 ./c_example 30
**
** The "training" is a few steps of a fake learning curve whose floor depends
** on the params; each step is reported, and a trial the pruner stops is told
** pruned. Errors print the API's code, message and field.
*/
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include <hpo/client.h>

static const char spec[] =
        "{\"name\": \"c-example\", \"direction\": \"minimize\","
        " \"params\": ["
        "  {\"name\": \"lr\", \"type\": \"float\", \"low\": 1e-4, \"high\": 1, \"log\": true},"
        "  {\"name\": \"layers\", \"type\": \"int\", \"low\": 1, \"high\": 6},"
        "  {\"name\": \"act\", \"type\": \"categorical\", \"choices\": [\"relu\", \"tanh\"]}],"
        " \"sampler\": {\"type\": \"tpe\", \"n_startup_trials\": 5, \"seed\": 3},"
        " \"pruner\": {\"type\": \"median\", \"n_startup_trials\": 3, \"n_warmup_steps\": 1}}";

static void die(const char *what, const struct hpo_client_error *err)
{
    fprintf(stderr, "c_example: %s: %s: %s%s%s\n", what, hpo_client_code_name(err->code),
            err->message, err->field[0] ? " field " : "", err->field);
    exit(1);
}

/* The fake loss after `step` steps: it decays towards a floor set by the params. */
static double loss_at(double lr, long long layers, int tanh_act, int step)
{
    double floor = pow(log10(lr) + 2.0, 2) + 0.1 * (double)((layers - 3) * (layers - 3)) +
                   (tanh_act ? 0.2 : 0.0);
    return floor + 2.0 * exp(-0.7 * step);
}

int main(int argc, char **argv)
{
    struct hpo_client_error err;
    struct hpo_client *c;
    struct hpo_trial *best;
    int n_trials = argc > 1 ? (int)strtol(argv[1], NULL, 10) : 20;

    if (hpo_client_create(getenv("HPOD_URL"), getenv("HPOD_TOKEN"), &c, &err) < 0) {
        die("create", &err);
    }
    if (hpo_client_study_create(c, spec, NULL, NULL, &err) < 0) {
        die("study create", &err);
    }
    for (int i = 0; i < n_trials; i++) {
        struct hpo_trial *t;
        double lr = 0;
        int64_t layers = 0;
        const char *act = "relu";
        double loss = 0;
        bool pruned = false;

        if (hpo_client_ask(c, "c-example", &t, &err) < 0) {
            if (err.code == HPO_CLIENT_EXHAUSTED) {
                break;
            }
            die("ask", &err);
        }
        if (hpo_trial_param_double(t, "lr", &lr) < 0 ||
                hpo_trial_param_int(t, "layers", &layers) < 0 ||
                hpo_trial_param_string(t, "act", &act) < 0) {
            fprintf(stderr, "c_example: unexpected params %s\n", hpo_trial_json(t));
            return 1;
        }
        for (int step = 0; step < 8 && !pruned; step++) {
            loss = loss_at(lr, (long long)layers, act[0] == 't', step);
            if (hpo_client_report(c, "c-example", hpo_trial_number(t), step, loss, &pruned,
                        &err) < 0) {
                die("report", &err);
            }
        }
        if (pruned) {
            if (hpo_client_tell_pruned(c, "c-example", hpo_trial_number(t), &err) < 0) {
                die("tell", &err);
            }
            printf("trial %lld pruned\n", (long long)hpo_trial_number(t));
        } else {
            if (hpo_client_tell(c, "c-example", hpo_trial_number(t), loss, &err) < 0) {
                die("tell", &err);
            }
            printf("trial %lld: lr=%g layers=%lld act=%s loss=%.6f\n",
                    (long long)hpo_trial_number(t), lr, (long long)layers, act, loss);
        }
        hpo_trial_free(t);
    }
    if (hpo_client_best(c, "c-example", &best, &err) < 0) {
        die("best", &err);
    }
    printf("best: %s\n", hpo_trial_json(best));
    hpo_trial_free(best);
    hpo_client_destroy(c);
    return 0;
}
