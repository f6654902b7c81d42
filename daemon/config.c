/*
** config.c: parsing and validating the daemon's configuration.
*/
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/log.h"
#include "../core/util.h"
#include "config.h"

static int set_listen(struct hpo_config *cfg, const char *value, char *msg, size_t len)
{
    const char *colon = strrchr(value, ':');
    const char *host = value;
    char addr[sizeof(cfg->host)];
    size_t hlen;
    unsigned long port;
    char *end;

    if (colon == NULL) {
        return hpo_fail(msg, len, -EINVAL, "listen: '%s' must be HOST:PORT", value);
    }
    hlen = (size_t)(colon - value);
    if (hlen >= 2 && value[0] == '[' && value[hlen - 1] == ']') {
        host = value + 1;
        hlen -= 2;
    }
    if (hlen == 0 || hlen >= sizeof(cfg->host)) {
        return hpo_fail(msg, len, -EINVAL, "listen: '%s' has no valid host", value);
    }
    errno = 0;
    port = strtoul(colon + 1, &end, 10);
    if (errno != 0 || *end != '\0' || colon[1] == '\0' || port > 65535) {
        return hpo_fail(msg, len, -EINVAL, "listen: '%s' has no valid port (0-65535)", value);
    }
    /* Checked in a copy: a refused value leaves the setting as it was. */
    memcpy(addr, host, hlen);
    addr[hlen] = '\0';
    if (strcmp(addr, "localhost") == 0) {
        snprintf(addr, sizeof(addr), "127.0.0.1");
    }
    /* The daemon binds the address without resolving names (api/http.c). */
    {
        struct in6_addr a;
        int family = strchr(addr, ':') != NULL ? AF_INET6 : AF_INET;
        if (inet_pton(family, addr, &a) != 1) {
            return hpo_fail(msg, len, -EINVAL, "listen: '%s': '%s' is not a numeric %s address",
                    value, addr, family == AF_INET6 ? "IPv6" : "IPv4");
        }
    }
    snprintf(cfg->host, sizeof(cfg->host), "%s", addr);
    cfg->port = (unsigned)port;
    return 0;
}

/* A byte count with an optional K, M, G or T suffix (powers of 1024), or "unlimited". */
static int set_bytes(uint64_t *out, const char *key, const char *value, char *msg, size_t len)
{
    unsigned long long n;
    unsigned shift = 0;
    char *end;

    if (strcmp(value, "unlimited") == 0) {
        *out = UINT64_MAX;
        return 0;
    }
    errno = 0;
    n = isdigit((unsigned char)value[0]) ? strtoull(value, &end, 10) : 0;
    if (!isdigit((unsigned char)value[0]) || errno != 0) {
        end = NULL;
    } else if (*end != '\0') {
        const char *units = "KMGT";
        const char *u = strchr(units, toupper((unsigned char)*end));
        shift = u != NULL ? 10 * (unsigned)(u - units + 1) : 0;
        if (u == NULL || (strcmp(end + 1, "") != 0 && strcmp(end + 1, "iB") != 0 &&
                                 strcmp(end + 1, "B") != 0)) {
            end = NULL;
        }
    }
    if (end == NULL || n == 0 || n > (UINT64_MAX >> shift)) {
        return hpo_fail(msg, len, -EINVAL,
                "%s: '%s' must be a positive size in bytes (suffix K, M, G or T) or unlimited",
                key, value);
    }
    *out = (uint64_t)n << shift;
    return 0;
}

/* hpo_config_set, but -ENOENT for a key that is no setting (an unknown flag). */
static int config_set(struct hpo_config *cfg, const char *key, const char *value, char *msg,
        size_t len)
{
    if (strcmp(key, "listen") == 0) {
        return set_listen(cfg, value, msg, len);
    }
    if (strcmp(key, "db") == 0) {
        if (value[0] == '\0' || strlen(value) >= sizeof(cfg->db)) {
            return hpo_fail(msg, len, -EINVAL, "db: '%s' is not a usable path", value);
        }
        snprintf(cfg->db, sizeof(cfg->db), "%s", value);
        return 0;
    }
    if (strcmp(key, "synchronous") == 0) {
        if (strcmp(value, "normal") == 0 || strcmp(value, "full") == 0) {
            cfg->synchronous_full = strcmp(value, "full") == 0;
            return 0;
        }
        return hpo_fail(msg, len, -EINVAL, "synchronous: '%s' must be normal or full", value);
    }
    if (strcmp(key, "threads") == 0) {
        char *end;
        long n;
        errno = 0;
        n = strtol(value, &end, 10);
        if (errno != 0 || *end != '\0' || n < 1 || n > 1024) {
            return hpo_fail(msg, len, -EINVAL, "threads: '%s' must be an integer from 1 to 1024",
                    value);
        }
        cfg->threads = (int)n;
        return 0;
    }
    if (strcmp(key, "http-threads") == 0) {
        char *end;
        long n;
        errno = 0;
        n = strtol(value, &end, 10);
        if (errno != 0 || *end != '\0' || n < 0 || n > 64) {
            return hpo_fail(msg, len, -EINVAL,
                    "http-threads: '%s' must be an integer from 0 (automatic) to 64", value);
        }
        cfg->http_threads = (int)n;
        return 0;
    }
    if (strcmp(key, "log-level") == 0 || strcmp(key, "log_level") == 0) {
        int level = hpo_log_parse_level(value);
        if (level < 0) {
            return hpo_fail(msg, len, -EINVAL,
                    "log-level: '%s' must be err, warning, notice, info or debug",
                    value);
        }
        cfg->log_level = level;
        return 0;
    }
    if (strcmp(key, "slow-request-ms") == 0 || strcmp(key, "metrics-max-studies") == 0) {
        unsigned long n;
        char *end;
        errno = 0;
        n = strtoul(value, &end, 10);
        if (errno != 0 || *end != '\0' || value[0] < '0' || value[0] > '9' || n > 3600000) {
            return hpo_fail(msg, len, -EINVAL, "%s: '%s' must be an integer from 0 to 3600000", key,
                    value);
        }
        if (key[0] == 's') {
            cfg->slow_request_ms = (unsigned)n;
        } else {
            cfg->metrics_max_studies = (unsigned)n;
        }
        return 0;
    }
    if (strcmp(key, "advertise") == 0) {
        if ((strncmp(value, "http://", 7) != 0 && strncmp(value, "https://", 8) != 0) ||
                strlen(value) >= sizeof(cfg->advertise) || strpbrk(value, " \t\r\n") != NULL) {
            return hpo_fail(msg, len, -EINVAL,
                    "advertise: '%s' must be an http:// or https:// URL", value);
        }
        snprintf(cfg->advertise, sizeof(cfg->advertise), "%s", value);
        /* No trailing slash: request targets are appended as they are. */
        while (strlen(cfg->advertise) > 8 && cfg->advertise[strlen(cfg->advertise) - 1] == '/') {
            cfg->advertise[strlen(cfg->advertise) - 1] = '\0';
        }
        return 0;
    }
    if (strcmp(key, "cluster-token-file") == 0) {
        if (strlen(value) >= sizeof(cfg->cluster_token_file)) {
            return hpo_fail(msg, len, -EINVAL, "cluster-token-file: path too long");
        }
        snprintf(cfg->cluster_token_file, sizeof(cfg->cluster_token_file), "%s", value);
        return 0;
    }
    if (strcmp(key, "cluster-cacert") == 0) {
        if (strlen(value) >= sizeof(cfg->cluster_cacert)) {
            return hpo_fail(msg, len, -EINVAL, "cluster-cacert: path too long");
        }
        snprintf(cfg->cluster_cacert, sizeof(cfg->cluster_cacert), "%s", value);
        return 0;
    }
    if (strcmp(key, "lease-ms") == 0) {
        unsigned long n;
        char *end;
        errno = 0;
        n = strtoul(value, &end, 10);
        if (errno != 0 || *end != '\0' || value[0] < '0' || value[0] > '9' || n < 1000 ||
                n > 600000) {
            return hpo_fail(msg, len, -EINVAL,
                    "lease-ms: '%s' must be an integer from 1000 to 600000", value);
        }
        cfg->lease_ms = (unsigned)n;
        return 0;
    }
    if (strcmp(key, "max-vector-memory") == 0 || strcmp(key, "max_vector_memory") == 0) {
        return set_bytes(&cfg->max_vector_memory, "max-vector-memory", value, msg, len);
    }
    {
        int r = hpo_access_config_set(&cfg->access, key, value, msg, len);
        if (r <= 0) {
            return r;
        }
    }
    (void)hpo_fail(msg, len, -EINVAL, "unknown setting '%s'", key);
    return -ENOENT;
}

int hpo_config_set(struct hpo_config *cfg, const char *key, const char *value, char *msg,
        size_t len)
{
    return config_set(cfg, key, value, msg, len) < 0 ? -EINVAL : 0;
}

static int load_file(struct hpo_config *cfg, const char *path, char *msg, size_t len)
{
    bool optional = path[0] == '-';
    FILE *f;
    char line[8192];
    int lineno = 0;

    if (optional) {
        path++;
    }
    f = fopen(path, "re");
    if (f == NULL) {
        if (optional && errno == ENOENT) {
            return 0;
        }
        char eb[128];
        return hpo_fail(msg, len, -EINVAL, "config: cannot open '%s': %s", path,
                strerror_r(errno, eb, sizeof(eb)));
    }
    while (fgets(line, sizeof(line), f) != NULL) {
        char *p = line, *key, *value, *end;
        lineno++;
        while (*p == ' ' || *p == '\t') {
            p++;
        }
        if (*p == '#' || *p == '\n' || *p == '\0') {
            continue;
        }
        key = p;
        while (*p && *p != ' ' && *p != '\t' && *p != '\n') {
            p++;
        }
        if (*p == '\0' || *p == '\n') {
            *p = '\0';
            fclose(f);
            return hpo_fail(msg, len, -EINVAL, "config: '%s': setting '%s' has no value", path,
                    key);
        }
        *p++ = '\0';
        while (*p == ' ' || *p == '\t') {
            p++;
        }
        value = p;
        end = value + strlen(value);
        while (end > value && (end[-1] == '\n' || end[-1] == ' ' || end[-1] == '\t' ||
                                      end[-1] == '\r')) {
            *--end = '\0';
        }
        if (hpo_config_set(cfg, key, value, msg, len) < 0) {
            fclose(f);
            return -EINVAL;
        }
    }
    fclose(f);
    return 0;
}

void hpo_config_usage(const char *prog)
{
    printf("Usage: %s [OPTIONS]\n"
           "hpod: a hyperparameter-optimization daemon with a REST API.\n\n"
           "  --listen HOST:PORT     address to listen on (default 127.0.0.1:8080; port 0 picks\n"
           "                         a free port, which is logged and sent as systemd STATUS)\n"
           "  --db PATH|URI          SQLite database (default $STATE_DIRECTORY/hpod.db under\n"
           "                         systemd, else ./hpod.db), or a postgresql:// URI\n"
           "  --synchronous MODE     full (a reply only once its write is on disk: survives\n"
           "                         power loss; default) or normal (survives a daemon crash,\n"
           "                         a power cut may lose the last acknowledged writes)\n"
           "  --threads N            worker threads for storage and samplers (default 4)\n"
           "  --http-threads N       HTTP event-loop threads (default 0: one per two CPU\n"
           "                         cores on SQLite, one per core on PostgreSQL; 1 to 8)\n"
           "  --log-level LEVEL      err, warning, notice, info (default) or debug; every\n"
           "                         request is logged at debug, 5xx at err, 401/403 at\n"
           "                         warning, slow ones at notice\n"
           "  --slow-request-ms MS   log requests that took longer (default 500; 0: never)\n"
           "  --metrics-max-studies N  studies with their own hpod_study_trials series on\n"
           "                         /metrics (default 100; the rest are summed as \"(other)\")\n"
           "  --max-vector-memory SIZE  cap on memory for big vectors (K/M/G/T suffix, or\n"
           "                         unlimited; default half the physical memory): asks\n"
           "                         and uploads beyond it answer 503\n"
           "  --tokens FILE          API tokens (NAME ROLE SHA256HEX [PREFIX] lines); every /v1\n"
           "                         request then needs Authorization: Bearer <token>\n"
           "  --new-token NAME:ROLE[:PREFIX]  print a new token and its tokens-file line, exit\n"
           "  --allow-unauthenticated  listen on a non-loopback address without --tokens\n"
           "  --tls-cert FILE        PEM certificate chain: serve HTTPS (TLS 1.2+) only\n"
           "  --tls-key FILE         PEM private key of --tls-cert\n"
           "  --max-connections N    open connections at most (default 1024)\n"
           "  --max-connections-per-client N  from one address (default a quarter of the above)\n"
           "  --request-head-timeout SECONDS  to receive a request's head (default 10)\n"
           "  --connection-timeout SECONDS  idle connections are closed (default 30)\n"
           "  --advertise URL        several daemons on one PostgreSQL: how the others reach\n"
           "                         this one (default http(s)://HOST:PORT of --listen)\n"
           "  --cluster-token-file FILE  the secret daemons mark forwarded requests with\n"
           "  --cluster-cacert FILE  CA certificates (PEM) the other daemons' https://\n"
           "                         certificates are checked against (default: the system's)\n"
           "  --lease-ms MS          a daemon without a heartbeat this long loses its\n"
           "                         studies to the others (default 3000)\n"
           "  --config FILE          read `key value` lines with the names above; a leading\n"
           "                         '-' makes a missing file silently ignored\n"
           "  --check-config         validate the configuration (the address, whether the\n"
           "                         database can be opened or created, the tokens file and\n"
           "                         the TLS pair; takes no lock and creates nothing) and exit\n"
           "  --version              print the version and exit\n"
           "  --help                 print this text and exit\n\n"
           "Precedence: defaults < config file < HPOD_LISTEN, HPOD_DB, HPOD_SYNCHRONOUS,\n"
           "HPOD_THREADS, HPOD_HTTP_THREADS, HPOD_LOG_LEVEL, HPOD_SLOW_REQUEST_MS, HPOD_METRICS_MAX_STUDIES,\n"
           "HPOD_MAX_VECTOR_MEMORY < flags. Signals: SIGTERM/SIGINT drain and exit 0;\n"
           "SIGHUP re-reads the config file's log-level, the tokens file and the TLS pair.\n"
           "One daemon per database: it holds a lock on PATH.lock while it runs.\n",
            prog);
}

int hpo_config_load(struct hpo_config *cfg, int argc, char **argv, char *msg, size_t len)
{
    static const char *const env_keys[][2] = {
        { "HPOD_LISTEN", "listen" }, { "HPOD_DB", "db" }, { "HPOD_SYNCHRONOUS", "synchronous" },
        { "HPOD_THREADS", "threads" }, { "HPOD_HTTP_THREADS", "http-threads" },
        { "HPOD_LOG_LEVEL", "log-level" },
        { "HPOD_SLOW_REQUEST_MS", "slow-request-ms" },
        { "HPOD_METRICS_MAX_STUDIES", "metrics-max-studies" },
        { "HPOD_MAX_VECTOR_MEMORY", "max-vector-memory" },
        { "HPOD_ADVERTISE", "advertise" }, { "HPOD_CLUSTER_CACERT", "cluster-cacert" },
    };
    const char *state_dir = secure_getenv("STATE_DIRECTORY");
    int r;

    memset(cfg, 0, sizeof(*cfg));
    snprintf(cfg->host, sizeof(cfg->host), "127.0.0.1");
    cfg->port = 8080;
    cfg->threads = 4;
    cfg->synchronous_full = true;
    cfg->log_level = HPO_LOG_INFO;
    cfg->slow_request_ms = 500;
    cfg->metrics_max_studies = 100;
    cfg->lease_ms = 3000;
    cfg->json_limit = (size_t)1 << 20;
    cfg->binary_limit = (size_t)256 << 20;
    hpo_access_config_init(&cfg->access);
    if (state_dir != NULL && state_dir[0] != '\0') {
        /* systemd may list several directories separated by ':'; use the first. */
        size_t n = strcspn(state_dir, ":");
        snprintf(cfg->db, sizeof(cfg->db), "%.*s/hpod.db", (int)n, state_dir);
    } else {
        snprintf(cfg->db, sizeof(cfg->db), "./hpod.db");
    }
    /* First pass: the flags that are not settings, and --config. */
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            cfg->show_help = true;
        } else if (strcmp(argv[i], "--version") == 0) {
            cfg->show_version = true;
        } else if (strcmp(argv[i], "--check-config") == 0) {
            cfg->check_only = true;
        } else if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
            snprintf(cfg->config_file, sizeof(cfg->config_file), "%s", argv[++i]);
        } else if (strncmp(argv[i], "--config=", 9) == 0) {
            snprintf(cfg->config_file, sizeof(cfg->config_file), "%s", argv[i] + 9);
        }
    }
    if (cfg->show_help || cfg->show_version) {
        return 0;
    }
    if (cfg->config_file[0] != '\0') {
        r = load_file(cfg, cfg->config_file, msg, len);
        if (r < 0) {
            return r;
        }
    }
    for (size_t k = 0; k < sizeof(env_keys) / sizeof(env_keys[0]); k++) {
        const char *v = secure_getenv(env_keys[k][0]);
        if (v != NULL && hpo_config_set(cfg, env_keys[k][1], v, msg, len) < 0) {
            return -EINVAL;
        }
    }
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i], *eq;
        char key[64];
        const char *value;
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0 ||
                strcmp(arg, "--version") == 0 || strcmp(arg, "--check-config") == 0) {
            continue;
        }
        if (strcmp(arg, "--allow-unauthenticated") == 0) {
            cfg->access.allow_unauthenticated = true; /* a flag without a value */
            continue;
        }
        if (strncmp(arg, "--", 2) != 0) {
            return hpo_fail(msg, len, -EINVAL, "unexpected argument '%s'", arg);
        }
        eq = strchr(arg, '=');
        if (eq != NULL) {
            snprintf(key, sizeof(key), "%.*s", (int)(eq - arg - 2), arg + 2);
            value = eq + 1;
        } else {
            snprintf(key, sizeof(key), "%s", arg + 2);
            if (i + 1 >= argc) {
                /* An unknown option is named as such, not as one missing its value. */
                struct hpo_config scratch = *cfg;
                if (strcmp(key, "config") != 0 &&
                        config_set(&scratch, key, "", msg, len) == -ENOENT) {
                    return hpo_fail(msg, len, -EINVAL, "unknown option --%s", key);
                }
                return hpo_fail(msg, len, -EINVAL, "--%s needs a value", key);
            }
            value = argv[++i];
        }
        if (strcmp(key, "config") == 0) {
            continue;
        }
        r = config_set(cfg, key, value, msg, len);
        if (r == -ENOENT) {
            return hpo_fail(msg, len, -EINVAL, "unknown option --%s", key);
        }
        if (r < 0) {
            return -EINVAL;
        }
    }
    return 0;
}
