// See roost_spawn.h. The child below shares the caller's memory until it execs, so it only makes
// system calls: no malloc, no locks, no stdio, nothing that could leave the parent's state torn.
#define _GNU_SOURCE
#include "roost_spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <malloc.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x00001000
#endif
#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

extern char **environ;

struct child_state {
    const struct roost_spawn_request *request;
    pid_t parent;
    sigset_t parent_mask;
    // Written by the child before it gives up; read by the parent once clone has returned.
    volatile int error;
    volatile int step;
};

static int child_fail(struct child_state *state, int step) {
    state->error = errno ? errno : EINVAL;
    state->step = step;
    _exit(127);
}

// The first free descriptor at or above 3, for a standard descriptor that must move out of the way.
static int move_up(int fd) {
    return (int)syscall(SYS_fcntl, fd, F_DUPFD_CLOEXEC, 3);
}

static void exec_program(const struct roost_spawn_request *request, char *const *envp) {
    const char *file = request->file;
    if (strchr(file, '/')) {
        execve(file, request->argv, envp);
        return;
    }
    const char *path = request->search_path ? request->search_path : "/usr/local/bin:/usr/bin:/bin";
    size_t file_length = strlen(file);
    int saw_eacces = 0;
    char buffer[PATH_MAX];
    for (const char *p = path;; ) {
        const char *end = strchrnul(p, ':');
        size_t length = (size_t)(end - p);
        if (length + 1 + file_length + 1 <= sizeof buffer) {
            if (length == 0) {
                buffer[0] = '.';
                length = 1;
            } else {
                memcpy(buffer, p, length);
            }
            buffer[length] = '/';
            memcpy(buffer + length + 1, file, file_length + 1);
            execve(buffer, request->argv, envp);
            if (errno == EACCES) saw_eacces = 1;
            else if (errno != ENOENT && errno != ENOTDIR) return;
        }
        if (*end == '\0') break;
        p = end + 1;
    }
    errno = saw_eacces ? EACCES : ENOENT;
}

static int child_main(void *argument) {
    struct child_state *state = argument;
    const struct roost_spawn_request *request = state->request;

    // Every signal back to its default: handlers of the host must never run here (this memory is
    // the host's), and ignored ones (SIGPIPE) must not stay ignored for the service. The raw call
    // reaches the C library's own real-time signals too, which its sigaction() refuses; an
    // all-zero kernel sigaction is SIG_DFL with no flags and no mask on every layout.
    for (int signal_number = 1; signal_number < _NSIG; signal_number++) {
        if (signal_number == SIGKILL || signal_number == SIGSTOP) continue;
        unsigned long default_action[4] = {0, 0, 0, 0};
        syscall(SYS_rt_sigaction, signal_number, default_action, NULL, sizeof(unsigned long));
    }

    if (request->new_session && setsid() < 0) child_fail(state, ROOST_SPAWN_STEP_SESSION);

    // Standard descriptors: first move any source that sits on a standard number other than its
    // target out of the way, so that no dup2 below overwrites a source still needed.
    int sources[3];
    for (int i = 0; i < 3; i++) {
        int fd = request->stdio[i];
        if (fd < 0) {
            fd = open("/dev/null", O_RDWR | O_CLOEXEC);
            if (fd < 0) child_fail(state, ROOST_SPAWN_STEP_STDIO);
        } else if (fd < 3 && fd != i) {
            fd = move_up(fd);
            if (fd < 0) child_fail(state, ROOST_SPAWN_STEP_STDIO);
        }
        sources[i] = fd;
    }
    for (int i = 0; i < 3; i++) {
        if (sources[i] == i) {
            int flags = fcntl(i, F_GETFD);
            if (flags < 0 || fcntl(i, F_SETFD, flags & ~FD_CLOEXEC) < 0) child_fail(state, ROOST_SPAWN_STEP_STDIO);
        } else if (dup2(sources[i], i) < 0) {
            child_fail(state, ROOST_SPAWN_STEP_STDIO);
        }
    }
    // Nothing else of the host's reaches the program, whether or not it was opened close-on-exec.
    syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC);

    if (request->cwd && chdir(request->cwd) < 0) child_fail(state, ROOST_SPAWN_STEP_CWD);

    // Limits before the user change: raising a hard limit needs the host's privilege.
    for (int i = 0; i < request->limit_count && i < ROOST_SPAWN_MAX_LIMITS; i++) {
        struct rlimit limit = {.rlim_cur = request->limits[i].value, .rlim_max = request->limits[i].value};
        if (syscall(SYS_prlimit64, 0, request->limits[i].resource, &limit, NULL) < 0) {
            child_fail(state, ROOST_SPAWN_STEP_LIMIT);
        }
    }

    // Raw system calls: the C library's setuid would try to change every thread of the host.
    if (request->set_ids) {
        if (syscall(SYS_setgroups, 0, NULL) < 0 && errno != EPERM) child_fail(state, ROOST_SPAWN_STEP_USER);
        if (syscall(SYS_setgid, request->gid) < 0) child_fail(state, ROOST_SPAWN_STEP_USER);
        if (syscall(SYS_setuid, request->uid) < 0) child_fail(state, ROOST_SPAWN_STEP_USER);
    }

    // After the user change, which clears the parent-death signal.
    if (request->die_with_parent) {
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0) child_fail(state, ROOST_SPAWN_STEP_PARENT);
        // The host may have died before the request: nobody would ever kill this process then.
        if (getppid() != state->parent) {
            errno = ESRCH;
            child_fail(state, ROOST_SPAWN_STEP_PARENT);
        }
    }

    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);

    exec_program(request, request->envp ? request->envp : environ);
    child_fail(state, ROOST_SPAWN_STEP_EXEC);
    return 127;
}

void roost_spawn(const struct roost_spawn_request *request, struct roost_spawn_result *result) {
    result->pid = -1;
    result->pidfd = -1;
    result->error = 0;
    result->step = ROOST_SPAWN_STEP_NONE;

    // The child runs on its own stack in the caller's memory until it execs. The caller waits
    // for that (CLONE_VFORK), so one stack per calling thread serves every spawn it makes; it is
    // kept for the thread's life (unmapping it each time would cost every core a TLB flush).
    static __thread void *stack = NULL;
    const size_t stack_size = 64 * 1024 + PATH_MAX;
    if (stack == NULL) {
        void *mapped = mmap(NULL, stack_size, PROT_READ | PROT_WRITE,
                            MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
        if (mapped == MAP_FAILED) {
            result->error = errno;
            result->step = ROOST_SPAWN_STEP_CLONE;
            return;
        }
        stack = mapped;
    }

    struct child_state state = {.request = request, .parent = getpid(), .error = 0, .step = 0};
    // No signal handler of the host may run in the child before it has reset them.
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &state.parent_mask);

    int pidfd = -1;
    pid_t pid = clone(child_main, (char *)stack + stack_size,
                      CLONE_VM | CLONE_VFORK | CLONE_PIDFD | SIGCHLD, &state, (pid_t *)&pidfd);
    int clone_error = errno;

    pthread_sigmask(SIG_SETMASK, &state.parent_mask, NULL);

    if (pid < 0) {
        result->error = clone_error;
        result->step = ROOST_SPAWN_STEP_CLONE;
        return;
    }
    if (state.error != 0) {
        // The child gave up before its program ran: reap it, so nothing is left behind.
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {}
        if (pidfd >= 0) close(pidfd);
        result->error = state.error;
        result->step = state.step;
        return;
    }
    result->pid = pid;
    result->pidfd = pidfd;
}

int roost_stdio_pair(int fds[2]) {
    return socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0 ? 0 : -errno;
}

void roost_set_thread_name(const char *name) {
    prctl(PR_SET_NAME, name, 0, 0, 0);
}

int roost_single_malloc_arena(void) {
    return mallopt(M_ARENA_MAX, 1);
}
