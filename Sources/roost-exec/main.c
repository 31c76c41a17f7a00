// roost-exec: the last step between the host and a service's program.
//
//   roost-exec [-u UID:GID] [-n OPEN_FILES] [-m MEMORY_BYTES] [-c CPU_SECONDS] -- PROGRAM [ARGS...]
//
// The host starts every supervised process through it, because libuv's spawn offers no hook
// between fork and exec. In this order it drops to the service's user (when given), asks the
// kernel for SIGKILL when the host dies (PR_SET_PDEATHSIG; set after the user change, which would
// clear it), gives up if the host is already gone, applies the rlimits, and execs PROGRAM (an
// absolute path: the host resolved it). Any failure is one line on stderr and exit code 127,
// which the supervisor reports like a program that failed to start.
#define _GNU_SOURCE
#include <errno.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

static void fail(const char *what, const char *detail) {
    fprintf(stderr, "roost-exec: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
    _exit(127);
}

static unsigned long long number(const char *text, const char *option) {
    char *end = NULL;
    errno = 0;
    unsigned long long value = strtoull(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0') fail("bad number for option", option);
    return value;
}

static void limit(int resource, unsigned long long value, const char *name) {
    struct rlimit rl = {.rlim_cur = value, .rlim_max = value};
    if (setrlimit(resource, &rl) != 0) fail(name, strerror(errno));
}

int main(int argc, char **argv) {
    const char *user = NULL, *files = NULL, *memory = NULL, *cpu = NULL;
    int opt;
    while ((opt = getopt(argc, argv, "+u:n:m:c:")) != -1) {
        switch (opt) {
        case 'u': user = optarg; break;
        case 'n': files = optarg; break;
        case 'm': memory = optarg; break;
        case 'c': cpu = optarg; break;
        default: fail("usage: roost-exec [-u UID:GID] [-n FILES] [-m BYTES] [-c SECONDS] -- PROGRAM [ARGS...]", NULL);
        }
    }
    if (optind >= argc) fail("no program given", NULL);
    pid_t host = getppid();

    if (user) {
        char *colon = strchr(user, ':');
        if (!colon) fail("-u needs UID:GID", user);
        *colon = '\0';
        gid_t gid = (gid_t)number(colon + 1, "-u");
        uid_t uid = (uid_t)number(user, "-u");
        if (setgroups(0, NULL) != 0 && errno != EPERM) fail("setgroups", strerror(errno));
        if (setgid(gid) != 0) fail("setgid", strerror(errno));
        if (setuid(uid) != 0) fail("setuid", strerror(errno));
    }
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) fail("prctl(PR_SET_PDEATHSIG)", strerror(errno));
    // The host may have died before the request above: then nobody would ever kill this process.
    if (getppid() != host) _exit(127);
    if (files) limit(RLIMIT_NOFILE, number(files, "-n"), "open files limit");
    if (memory) limit(RLIMIT_AS, number(memory, "-m"), "memory limit");
    if (cpu) limit(RLIMIT_CPU, number(cpu, "-c"), "cpu limit");

    execv(argv[optind], &argv[optind]);
    fail(argv[optind], strerror(errno));
    return 127;
}
