/*
** tpe.h: the kernel math of the TPE sampler (docs/ALGORITHMS.md §3.3-3.4),
** exposed so unit tests can check it against independently computed values.
** The sampler itself is hpo_sampler_tpe (sampler.h).
*/
#ifndef HPO_SAMPLER_TPE_H
#define HPO_SAMPLER_TPE_H

#include <stddef.h>

/* log Phi(x) of the standard normal CDF, accurate far into the lower tail (x < -30). */
double hpo_tpe_log_ndtr(double x);

/*
** log(Phi(b) - Phi(a)) for a < b: the standard normal mass of [a, b],
** computed without cancellation when both ends lie in the same tail.
*/
double hpo_tpe_log_gauss_mass(double a, double b);

/* log density at x (low <= x <= high) of N(mu, sigma^2) truncated to [low, high]. */
double hpo_tpe_trunc_logpdf(double x, double mu, double sigma, double low, double high);

/*
** log probability of the bin [lo, hi] (inside [low, high]) under N(mu,
** sigma^2) truncated to [low, high]: what a kernel gives a grid value.
*/
double hpo_tpe_trunc_logmass(double lo, double hi, double mu, double sigma, double low,
        double high);

/* gamma(n) = min(ceil(0.1 n), 25): the size of the "below" group among n finished trials. */
size_t hpo_tpe_gamma(size_t n);

/*
** Optuna's default_weights(m) (unnormalized) into ret[0..m-1], oldest
** observation first: all 1 when m < 25, else linspace(1/m, 1, m - 25)
** followed by 25 ones.
*/
void hpo_tpe_default_weights(size_t m, double *ret);

#endif
