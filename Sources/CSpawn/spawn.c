// See roost_spawn.h. The child below shares the caller's memory until it execs, so it only makes
// system calls: no malloc, no locks, no stdio, nothing that could leave the parent's state torn.
#define _GNU_SOURCE
#include "roost_spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <malloc.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <linux/sockios.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <linux/sched.h>
#include <stdatomic.h>
#include <stdint.h>

#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x00001000
#endif
#ifndef CLONE_CLEAR_SIGHAND
#define CLONE_CLEAR_SIGHAND 0x100000000ULL
#endif
#ifndef SYS_clone3
#define SYS_clone3 435
#endif
#ifndef CLOSE_RANGE_UNSHARE
#define CLOSE_RANGE_UNSHARE (1U << 1)
#endif

extern char **environ;

// Three descriptors per spawning thread, reserved when it starts (while their numbers are low)
// and kept open on /dev/null between spawns. Before each clone the child's standard streams are
// placed there; the child then leaves the host's descriptor table behind except for the numbers
// up to these (see child_main), however many descriptors the host has open. Without that, every
// exec closed each of the host's descriptors, a few thousand with a thousand services, and that
// was a fifth of all the CPU it took to start them.
static __thread int slots[3] = {-1, -1, -1};
static __thread int null_fd = -1;

int roost_spawn_prepare_thread(void) {
    if (null_fd >= 0) return 0;
    // A child's exit sends its parent, this very thread, a SIGCHLD (an exec makes it so, whatever
    // exit signal the clone asked for). The host has no handler for it, so the kernel drops it
    // at once, unless this thread blocks it: then it is queued for the whole process and wakes
    // some other thread (the main thread's sigsuspend) only to be discarded there, a context switch
    // per child, thousands a second under CGI load. The pidfd reports the exit.
    sigset_t child_signal;
    sigemptyset(&child_signal);
    sigaddset(&child_signal, SIGCHLD);
    pthread_sigmask(SIG_UNBLOCK, &child_signal, NULL);
    int fds[4];
    for (int i = 0; i < 4; i++) {
        fds[i] = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (fds[i] < 0) {
            int error = errno;
            while (i-- > 0) close(fds[i]);
            return -error;
        }
    }
    null_fd = fds[0];
    for (int i = 0; i < 3; i++) slots[i] = fds[i + 1];
    return 0;
}

// clone3 on a stack of the caller's choosing: the child starts on that stack with the caller's
// registers, so it cannot return through C code; this calls fn(arg) there and exits with its
// result. Returns the child's pid to the parent, or -errno. (glibc has such a function but does
// not export it.)
#if defined(__x86_64__) || defined(__aarch64__)
#define ROOST_HAVE_CLONE3 1
long roost_clone3(struct clone_args *args, size_t size, int (*fn)(void *), void *arg);
#define CLONE3_BEGIN(type) ".pushsection .text\n.globl roost_clone3\n.hidden roost_clone3\n.type roost_clone3, " type "\nroost_clone3:\n"
#define CLONE3_END ".size roost_clone3, .-roost_clone3\n.popsection\n"
#else
#define ROOST_HAVE_CLONE3 0
#endif
#if defined(__x86_64__)
__asm__(CLONE3_BEGIN("@function")
    "    mov %rcx, %r8\n"          // arg: rdx and r8 survive the syscall, rcx does not
    "    mov $435, %eax\n"         // SYS_clone3
    "    syscall\n"
    "    test %rax, %rax\n"
    "    jz 1f\n"
    "    ret\n"
    "1:  xor %ebp, %ebp\n"        // the outermost frame
    "    and $-16, %rsp\n"
    "    mov %r8, %rdi\n"
    "    call *%rdx\n"
    "    mov %eax, %edi\n"
    "    mov $60, %eax\n"          // SYS_exit
    "    syscall\n"
    "    hlt\n"
    CLONE3_END);
#elif defined(__aarch64__)
__asm__(CLONE3_BEGIN("%function")
    "    mov x8, #435\n"           // SYS_clone3; every register but x0 survives it
    "    svc #0\n"
    "    cbz x0, 1f\n"
    "    ret\n"
    "1:  mov x29, #0\n"
    "    mov x30, #0\n"
    "    mov x0, x3\n"
    "    blr x2\n"
    "    mov x8, #93\n"            // SYS_exit
    "    svc #0\n"
    "    brk #0\n"
    CLONE3_END);
#endif

// Whether clone3 with CLONE_CLEAR_SIGHAND works here (Linux 5.5 and later, and no seccomp filter
// refusing it): 1 yes, 0 not known yet, -1 no (then clone, and the child resets every signal).
static atomic_int clone3_usable = 0;

// The signals the host ignores, bit n-1 for signal n, as read when the dispositions were at
// `ignored_generation`. A cleared handler leaves an ignored signal ignored, so the child sets
// these to their default itself. roost_spawn_signals_changed moves `signals_generation` on; a
// read that raced with a change is used for its own spawn only, never kept.
static pthread_mutex_t ignored_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t ignored_signals = 0;
static unsigned long ignored_generation = (unsigned long)-1;
static atomic_ulong signals_generation = 0;

void roost_spawn_use_clone3(int use) {
    atomic_store(&clone3_usable, use ? 0 : -1);
}

void roost_spawn_signals_changed(void) {
    atomic_fetch_add(&signals_generation, 1);
}

static uint64_t host_ignored_signals(void) {
    unsigned long generation = atomic_load(&signals_generation);
    pthread_mutex_lock(&ignored_lock);
    int known = ignored_generation == generation;
    uint64_t ignored = ignored_signals;
    pthread_mutex_unlock(&ignored_lock);
    if (known) return ignored;
    ignored = 0;
    for (int signal_number = 1; signal_number < _NSIG && signal_number <= 64; signal_number++) {
        // The raw call: the C library's sigaction() refuses its own real-time signals.
        unsigned long action[4] = {0, 0, 0, 0};
        if (syscall(SYS_rt_sigaction, signal_number, NULL, action, sizeof(unsigned long)) == 0
            && action[0] == (unsigned long)SIG_IGN) {
            ignored |= (uint64_t)1 << (signal_number - 1);
        }
    }
    pthread_mutex_lock(&ignored_lock);
    if (atomic_load(&signals_generation) == generation) {
        ignored_signals = ignored;
        ignored_generation = generation;
    }
    pthread_mutex_unlock(&ignored_lock);
    return ignored;
}

struct child_state {
    const struct roost_spawn_request *request;
    // The clone cleared the host's handlers: only these ignored signals need their default back.
    int handlers_cleared;
    uint64_t ignored;
    int slots[3];
    int last_slot;
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
    // the host's), and ignored ones (SIGPIPE) must not stay ignored for the service. After a
    // clone3 that cleared the handlers, only the ignored ones are left to do; otherwise all of
    // them, a system call each. The raw call reaches the C library's own real-time signals too,
    // which its sigaction() refuses; an all-zero kernel sigaction is SIG_DFL with no flags and no
    // mask on every layout.
    for (int signal_number = 1; signal_number < _NSIG; signal_number++) {
        if (signal_number == SIGKILL || signal_number == SIGSTOP) continue;
        if (state->handlers_cleared
            && (signal_number > 64 || !(state->ignored & ((uint64_t)1 << (signal_number - 1))))) {
            continue;
        }
        unsigned long default_action[4] = {0, 0, 0, 0};
        syscall(SYS_rt_sigaction, signal_number, default_action, NULL, sizeof(unsigned long));
    }

    if (request->grouping == ROOST_SPAWN_NEW_SESSION && setsid() < 0) child_fail(state, ROOST_SPAWN_STEP_SESSION);
    if (request->grouping == ROOST_SPAWN_NEW_GROUP && setpgid(0, 0) < 0) child_fail(state, ROOST_SPAWN_STEP_SESSION);

    // The descriptor table is shared with the host until here (CLONE_FILES: nothing was copied
    // at the clone). Take a private copy of the numbers up to the last slot only; the host's other
    // descriptors never reach this process, so its exec has none to close.
    if (syscall(SYS_close_range, (unsigned)state->last_slot + 1, ~0U, CLOSE_RANGE_UNSHARE) < 0) {
        // Kernels before 5.9: copy the whole table, then close what lies above the slots.
        if (unshare(CLONE_FILES) < 0) child_fail(state, ROOST_SPAWN_STEP_STDIO);
        int top = (int)sysconf(_SC_OPEN_MAX);
        for (int fd = state->last_slot + 1; fd < top; fd++) close(fd);
    }
    for (int i = 0; i < 3; i++) {
        if (dup2(state->slots[i], i) < 0) child_fail(state, ROOST_SPAWN_STEP_STDIO);  // clears close-on-exec
    }
    // The slots and whatever else of the host's sits below them.
    syscall(SYS_close_range, 3U, ~0U, 0U);

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

// Points the slots back at /dev/null.
static void reset_slots(void) {
    for (int i = 0; i < 3; i++) dup3(null_fd, slots[i], O_CLOEXEC);
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

    int prepared = roost_spawn_prepare_thread();
    if (prepared < 0) {
        result->error = -prepared;
        result->step = ROOST_SPAWN_STEP_STDIO;
        return;
    }
    // The child's standard streams into this thread's slots (/dev/null where none is given).
    int last_slot = 0;
    for (int i = 0; i < 3; i++) {
        int source = request->stdio[i] >= 0 ? request->stdio[i] : null_fd;
        if (dup3(source, slots[i], O_CLOEXEC) < 0) {
            result->error = errno;
            result->step = ROOST_SPAWN_STEP_STDIO;
            reset_slots();
            return;
        }
        if (slots[i] > last_slot) last_slot = slots[i];
    }

    struct child_state state = {.request = request, .slots = {slots[0], slots[1], slots[2]}, .last_slot = last_slot,
                                .parent = getpid(), .error = 0, .step = 0};
    // No signal handler of the host may run in the child before it has reset them. SIGCHLD stays
    // unblocked while the host has no handler for it (see roost_spawn_prepare_thread): this thread
    // waits here for each child's exec, and an earlier child's exit signal arriving meanwhile
    // would otherwise be queued for the process and wake another thread.
    sigset_t all;
    sigfillset(&all);
    struct sigaction child_action;
    if (sigaction(SIGCHLD, NULL, &child_action) == 0 && !(child_action.sa_flags & SA_SIGINFO)
        && (child_action.sa_handler == SIG_DFL || child_action.sa_handler == SIG_IGN)) {
        sigdelset(&all, SIGCHLD);
    }
    pthread_sigmask(SIG_BLOCK, &all, &state.parent_mask);

    int pidfd = -1;
    // A pidfd costs the kernel a file and its inode at the clone and again at the close.
    const unsigned long pidfd_flag = request->without_pidfd ? 0 : CLONE_PIDFD;
    pid_t pid = -1;
    int clone_error = 0;
    int cloned = 0;
#if ROOST_HAVE_CLONE3
    if (atomic_load(&clone3_usable) >= 0) {
        state.handlers_cleared = 1;
        state.ignored = host_ignored_signals();
        struct clone_args args = {
            .flags = CLONE_VM | CLONE_VFORK | CLONE_FILES | CLONE_CLEAR_SIGHAND | pidfd_flag,
            .pidfd = request->without_pidfd ? 0 : (uint64_t)(uintptr_t)&pidfd,
            .exit_signal = SIGCHLD,
            .stack = (uint64_t)(uintptr_t)stack,
            .stack_size = stack_size,
        };
        long rc = roost_clone3(&args, sizeof args, child_main, &state);
        if (rc >= 0) {
            pid = (pid_t)rc;
            cloned = 1;
            atomic_store(&clone3_usable, 1);
        } else if ((rc == -ENOSYS || rc == -EINVAL || rc == -EPERM) && atomic_load(&clone3_usable) == 0) {
            // An older kernel, or a filter that refuses clone3: clone from now on.
            atomic_store(&clone3_usable, -1);
        } else {
            clone_error = (int)-rc;
            cloned = 1;
        }
    }
#endif
    if (!cloned) {
        state.handlers_cleared = 0;
        pid = clone(child_main, (char *)stack + stack_size,
                    CLONE_VM | CLONE_VFORK | CLONE_FILES | pidfd_flag | SIGCHLD, &state,
                    request->without_pidfd ? NULL : (pid_t *)&pidfd);
        clone_error = errno;
    }
    // The host must not keep the child's ends of its pipes open (it would never see their end).
    reset_slots();

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

int roost_pidfd_open(pid_t pid) {
    long fd = syscall(SYS_pidfd_open, pid, 0);
    return fd >= 0 ? (int)fd : -errno;
}

int roost_stdio_pair(int fds[2]) {
    return socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0 ? 0 : -errno;
}

int roost_output_pipe(int fds[2]) {
    return pipe2(fds, O_CLOEXEC) == 0 ? 0 : -errno;
}

int roost_output_pipe_nonblocking(int fds[2]) {
    if (pipe2(fds, O_CLOEXEC) != 0) return -errno;
    // Only the host's end: the child's stays blocking, as programs expect of their stdout.
    if (fcntl(fds[0], F_SETFL, O_NONBLOCK) != 0) {
        int error = errno;
        close(fds[0]);
        close(fds[1]);
        return -error;
    }
    return 0;
}

void roost_set_thread_name(const char *name) {
    prctl(PR_SET_NAME, name, 0, 0, 0);
}

int roost_single_malloc_arena(void) {
    return mallopt(M_ARENA_MAX, 1);
}

int roost_trim_memory(void) {
    return malloc_trim(0);
}

int roost_socket_unsent(int fd) {
    int unsent = 0;
    return ioctl(fd, SIOCOUTQ, &unsent) == 0 ? unsent : -errno;
}

int roost_watch_create(void) {
    int fd = epoll_create1(EPOLL_CLOEXEC);
    return fd >= 0 ? fd : -errno;
}

int roost_watch_add(int watch, int fd, uint64_t tag) {
    struct epoll_event event = {.events = EPOLLIN, .data.u64 = tag};
    return epoll_ctl(watch, EPOLL_CTL_ADD, fd, &event) == 0 ? 0 : -errno;
}

int roost_watch_remove(int watch, int fd) {
    return epoll_ctl(watch, EPOLL_CTL_DEL, fd, NULL) == 0 ? 0 : -errno;
}

int roost_watch_ready(int watch, uint64_t *tags, int capacity) {
    struct epoll_event events[64];
    if (capacity > 64) capacity = 64;
    int count = epoll_wait(watch, events, capacity, 0);
    if (count < 0) return -errno;
    for (int i = 0; i < count; i++) tags[i] = events[i].data.u64;
    return count;
}
