/*
 * spawn_latency: how long a plugin takes from spawn to its go-plugin
 * handshake line, measured the way a host sees it.
 *
 *   spawn_latency [-n RUNS] [-r RSS_DELAY_MS] [-e NAME=VALUE]...
 *                 -- CMD [ARGS...] [-- CMD2 [ARGS...]] [--any CMD3 [ARGS...]]
 *
 * Each run of a command: posix_spawn it with stdout on a pipe (stdin, stderr
 * on /dev/null) and the current environment plus the -e variables; the clock
 * runs from just before posix_spawn until the whole first line has been read
 * from the pipe. The line must look like "1|2|<net>|<addr>|grpc|". Then the
 * child gets SIGTERM and is reaped; its exit status must be 0. Commands after
 * --any are references (e.g. /bin/echo of a handshake line: the cost of
 * exec itself): their exit status is not checked. The commands' runs are
 * interleaved so drifts of the machine affect all of them alike.
 *
 * With -r, one more spawn of each checked command waits RSS_DELAY_MS after
 * the handshake and reads VmRSS / VmHWM from /proc/<pid>/status.
 *
 * Output, one line per command (idx = position on the command line):
 *   spawn idx=0 runs=50 median_ms=… p90_ms=… min_ms=… max_ms=… bad_exits=0 failed=0 cmd=…
 *   idle_rss idx=0 rss_kib=… hwm_kib=…
 * Exit status 1 when any run failed (no/odd handshake, timeout, bad exit).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define HANDSHAKE_TIMEOUT_MS 5000
#define MAX_EXTRA_ENV 32
#define MAX_COMMANDS 8

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static char **build_env(char **extra, int nextra) {
    int n = 0;
    while (environ[n]) n++;
    char **env = calloc((size_t)(n + nextra + 1), sizeof *env);
    if (!env) return NULL;
    int k = 0;
    for (int i = 0; i < n; i++) {
        /* -e overrides an inherited variable of the same name */
        int dup = 0;
        for (int j = 0; j < nextra; j++) {
            size_t nl = strcspn(extra[j], "=");
            if (strncmp(environ[i], extra[j], nl) == 0 && environ[i][nl] == '=') dup = 1;
        }
        if (!dup) env[k++] = environ[i];
    }
    for (int j = 0; j < nextra; j++) env[k++] = extra[j];
    env[k] = NULL;
    return env;
}

static long proc_status_kib(pid_t pid, const char *key) {
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    long v = -1;
    size_t kl = strlen(key);
    while (fgets(line, sizeof line, f))
        if (strncmp(line, key, kl) == 0 && line[kl] == ':') {
            v = strtol(line + kl + 1, NULL, 10);
            break;
        }
    fclose(f);
    return v;
}

/* One spawn. Returns the latency in ms (or -1), and the child's pid in *out_pid
 * still running when keep is set. */
static double spawn_once(char **argv, char **env, char *line, size_t linecap, pid_t *out_pid) {
    int pfd[2];
    if (pipe2(pfd, O_CLOEXEC) != 0) return -1;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, pfd[1], 1);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    pid_t pid;
    double t0 = now_ms();
    int r = posix_spawn(&pid, argv[0], &fa, NULL, argv, env);
    posix_spawn_file_actions_destroy(&fa);
    close(pfd[1]);
    if (r != 0) {
        fprintf(stderr, "spawn_latency: cannot spawn %s: %s\n", argv[0], strerror(r));
        close(pfd[0]);
        return -1;
    }
    size_t have = 0;
    double t1 = -1;
    while (have + 1 < linecap) {
        int left = HANDSHAKE_TIMEOUT_MS - (int)(now_ms() - t0);
        struct pollfd p = {.fd = pfd[0], .events = POLLIN};
        if (left <= 0 || poll(&p, 1, left) <= 0) {
            if (errno == EINTR) continue;
            fprintf(stderr, "spawn_latency: no handshake within %d ms\n", HANDSHAKE_TIMEOUT_MS);
            break;
        }
        ssize_t n = read(pfd[0], line + have, linecap - 1 - have);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            fprintf(stderr, "spawn_latency: stdout closed before the handshake line\n");
            break;
        }
        have += (size_t)n;
        if (memchr(line, '\n', have)) {
            t1 = now_ms();
            break;
        }
    }
    line[have] = '\0';
    close(pfd[0]);
    *out_pid = pid;
    if (t1 < 0) return -1;
    char *nl = strchr(line, '\n');
    if (nl) *nl = '\0';
    size_t ll = strlen(line);
    if (strncmp(line, "1|2|", 4) != 0 || ll < 10 || strcmp(line + ll - 6, "|grpc|") != 0) {
        fprintf(stderr, "spawn_latency: unexpected handshake line: %s\n", line);
        return -1;
    }
    return t1 - t0;
}

static int stop_child(pid_t pid) {
    kill(pid, SIGTERM);
    int st;
    double t0 = now_ms();
    for (;;) {
        pid_t w = waitpid(pid, &st, WNOHANG);
        if (w == pid) break;
        if (w < 0 && errno != EINTR) return -1;
        if (now_ms() - t0 > 5000) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            fprintf(stderr, "spawn_latency: child ignored SIGTERM for 5 s\n");
            return -1;
        }
        usleep(200);
    }
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fprintf(stderr, "spawn_latency: child ended with %s %d after SIGTERM\n",
                WIFEXITED(st) ? "exit status" : "signal", WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
        return -1;
    }
    return 0;
}

typedef struct {
    char **argv;
    int lenient; /* --any: exit status not checked, no RSS probe */
    double *ms;
    int bad, failed;
    long rss, hwm;
} command;

int main(int argc, char **argv) {
    int runs = 50, rss_delay = -1, nextra = 0, ncmd = 0;
    char *extra[MAX_EXTRA_ENV];
    command cmds[MAX_COMMANDS];
    int i = 1;
    for (; i < argc; i++) {
        if (!strcmp(argv[i], "--") || !strcmp(argv[i], "--any")) break;
        if (!strcmp(argv[i], "-n") && i + 1 < argc) runs = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-r") && i + 1 < argc) rss_delay = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-e") && i + 1 < argc && nextra < MAX_EXTRA_ENV) extra[nextra++] = argv[++i];
        else { ncmd = -1; break; }
    }
    /* Split the rest at the markers: each command is NULL-terminated in place. */
    while (ncmd >= 0 && i < argc && ncmd < MAX_COMMANDS) {
        int lenient = !strcmp(argv[i], "--any");
        argv[i] = NULL; /* terminates the previous command's argv */
        if (i + 1 >= argc || !strcmp(argv[i + 1], "--") || !strcmp(argv[i + 1], "--any")) { ncmd = -1; break; }
        memset(&cmds[ncmd], 0, sizeof cmds[ncmd]);
        cmds[ncmd].argv = argv + i + 1;
        cmds[ncmd].lenient = lenient;
        ncmd++;
        for (i++; i < argc && strcmp(argv[i], "--") && strcmp(argv[i], "--any"); i++) {}
    }
    if (ncmd <= 0 || runs < 1) {
        fprintf(stderr,
                "usage: %s [-n RUNS] [-r RSS_DELAY_MS] [-e NAME=VALUE]... -- CMD [ARGS...] [--|--any CMD [ARGS...]]...\n",
                argv[0]);
        return 2;
    }
    char **env = build_env(extra, nextra);
    if (!env) return 1;
    signal(SIGPIPE, SIG_IGN);

    char line[512];
    for (int c = 0; c < ncmd; c++) cmds[c].ms = calloc((size_t)runs, sizeof(double));
    /* Interleaved, so slow drifts of the machine hit every command alike. */
    for (int k = 0; k < runs; k++) {
        for (int c = 0; c < ncmd; c++) {
            command *cm = &cmds[c];
            pid_t pid = -1;
            double t = spawn_once(cm->argv, env, line, sizeof line, &pid);
            if (pid > 0) {
                if (cm->lenient) {
                    kill(pid, SIGTERM);
                    waitpid(pid, NULL, 0);
                } else if (stop_child(pid) != 0) {
                    cm->bad++;
                }
            }
            if (t < 0) {
                cm->failed++;
                t = 1e9;
            }
            cm->ms[k] = t;
        }
    }
    int failed = 0;
    for (int c = 0; c < ncmd; c++) {
        command *cm = &cmds[c];
        cm->rss = cm->hwm = -1;
        if (rss_delay >= 0 && !cm->lenient) {
            pid_t pid = -1;
            double t = spawn_once(cm->argv, env, line, sizeof line, &pid);
            if (t >= 0) {
                usleep((useconds_t)rss_delay * 1000);
                cm->rss = proc_status_kib(pid, "VmRSS");
                cm->hwm = proc_status_kib(pid, "VmHWM");
            }
            if (pid > 0 && stop_child(pid) != 0) cm->bad++;
            if (cm->rss < 0) cm->failed++;
        }
        double *ms = cm->ms;
        qsort(ms, (size_t)runs, sizeof *ms, cmp_double);
        int p90 = (runs * 9 + 9) / 10 - 1; /* nearest rank */
        printf("spawn idx=%d runs=%d median_ms=%.3f p90_ms=%.3f min_ms=%.3f max_ms=%.3f bad_exits=%d failed=%d cmd=%s\n",
               c, runs, runs % 2 ? ms[runs / 2] : (ms[runs / 2 - 1] + ms[runs / 2]) / 2, ms[p90], ms[0],
               ms[runs - 1], cm->bad, cm->failed, cm->argv[0]);
        if (rss_delay >= 0 && !cm->lenient) printf("idle_rss idx=%d rss_kib=%ld hwm_kib=%ld\n", c, cm->rss, cm->hwm);
        if (cm->bad || cm->failed) failed = 1;
        free(ms);
    }
    free(env);
    return failed;
}
