// roost_spawn: starts a child process the way a host of many services needs, in one step.
//
// libuv's uv_spawn forks the whole host (its page tables are copied, per spawn) and offers no
// hook between fork and exec; roost_spawn clones with CLONE_VM | CLONE_VFORK (as posix_spawn
// does: nothing is copied, the caller's thread waits until the child has exec'd or failed) and
// does, in the child, everything a supervised service needs before its program runs: a new
// session, its standard descriptors, its folder, rlimits, its user, death with the host, a clean
// signal state and no leaked descriptors. It returns a pidfd for the child, so the caller learns
// of the exit by polling that descriptor (no SIGCHLD handler, no scan of every child), unless
// asked not to (a caller that mostly learns of the exit otherwise opens one when it needs it,
// with roost_pidfd_open).
#ifndef ROOST_SPAWN_H
#define ROOST_SPAWN_H

#include <sys/types.h>

#define ROOST_SPAWN_MAX_LIMITS 8

struct roost_spawn_limit {
    int resource;            // RLIMIT_NOFILE, RLIMIT_AS, RLIMIT_CPU...
    unsigned long long value;  // set as both the soft and the hard limit
};

struct roost_spawn_request {
    const char *file;        // the program; without a '/', looked up in `search_path`
    const char *search_path; // PATH-style list for `file` without a '/'; NULL: "/usr/local/bin:/usr/bin:/bin"
    char *const *argv;       // NULL-terminated
    char *const *envp;       // NULL-terminated; NULL: the caller's environment
    const char *cwd;         // NULL: the caller's
    int stdio[3];            // descriptor to become 0, 1, 2; -1: /dev/null
    int grouping;            // ROOST_SPAWN_HOST_GROUP, _NEW_GROUP (setpgid) or _NEW_SESSION (setsid)
    int set_ids;             // change to uid/gid (dropping supplementary groups)
    uid_t uid;
    gid_t gid;
    int die_with_parent;     // SIGKILL when the calling thread's process goes (PR_SET_PDEATHSIG)
    int without_pidfd;       // no pidfd in the result (-1 there)
    int limit_count;
    struct roost_spawn_limit limits[ROOST_SPAWN_MAX_LIMITS];
};

// Where the child stands: in the host's process group, leading a new process group in the host's
// session, or leading a new session (and its process group).
enum roost_spawn_grouping {
    ROOST_SPAWN_HOST_GROUP = 0,
    ROOST_SPAWN_NEW_GROUP = 1,
    ROOST_SPAWN_NEW_SESSION = 2,
};

// The step of the child's setup that failed, for the error message.
enum roost_spawn_step {
    ROOST_SPAWN_STEP_NONE = 0,
    ROOST_SPAWN_STEP_CLONE,
    ROOST_SPAWN_STEP_SESSION,
    ROOST_SPAWN_STEP_STDIO,
    ROOST_SPAWN_STEP_CWD,
    ROOST_SPAWN_STEP_LIMIT,
    ROOST_SPAWN_STEP_USER,
    ROOST_SPAWN_STEP_PARENT,
    ROOST_SPAWN_STEP_EXEC,
};

struct roost_spawn_result {
    pid_t pid;
    int pidfd;               // close-on-exec; readable once the child has exited (-1 if not asked for)
    int error;               // 0, or the errno of the step that failed (nothing is left running then)
    int step;                // enum roost_spawn_step
};

// Starts the child. On failure `error` and `step` say why; the child (if one was made) has been
// reaped and no descriptor is left open. Thread-safe; blocks only until the child exec'd. Each
// calling thread keeps a 68 KiB stack for its children's first moments: call it from a few
// long-lived threads.
void roost_spawn(const struct roost_spawn_request *request, struct roost_spawn_result *result);

// Reserves the calling thread's three descriptor slots (and a /dev/null) for its spawns: call it
// when a spawning thread starts, before the host opens many descriptors, so their numbers are low
// (roost_spawn reserves them itself on first use otherwise). Also unblocks SIGCHLD in the thread,
// so that, with no handler installed, each child's exit signal is dropped by the kernel instead of
// waking another thread. Returns 0, or -errno.
int roost_spawn_prepare_thread(void);

// Tells roost_spawn that the host's signal dispositions changed (a signal was ignored, or no
// longer is). Where the kernel clears the host's signal handlers in the child at the clone
// (clone3, Linux 5.5), the child only sets back to default the signals the host ignores, which
// roost_spawn reads once and keeps until this is called.
void roost_spawn_signals_changed(void);

// 0: every spawn from now on uses clone (the child resets each signal itself), as where clone3
// is missing; 1: clone3 again where it works. For tests of both ways.
void roost_spawn_use_clone3(int use);

// A connected pair of unix stream sockets, both close-on-exec (no other child inherits them), to
// serve as a child's standard stream: unlike a pipe, the host's end can be shut down for writing
// (the child then reads end-of-file). Returns 0, or -errno.
int roost_stdio_pair(int fds[2]);

// A pipe for a child's output, both ends close-on-exec: fds[0] (read) is the host's, fds[1] the
// child's. Cheaper to make and to move bytes through than a socket pair. Returns 0, or -errno.
int roost_output_pipe(int fds[2]);
// The same, with the host's end (fds[0]) non-blocking too, for a reader that polls it itself.
int roost_output_pipe_nonblocking(int fds[2]);

// Names the calling thread (at most 15 bytes are kept), as `top -H` and /proc show it.
void roost_set_thread_name(const char *name);

// Makes every thread allocate from one malloc arena (mallopt M_ARENA_MAX): glibc's <malloc.h>
// is not part of Swift's Glibc module. Call before threads allocate; returns mallopt's result.
int roost_single_malloc_arena(void);

// Gives the free memory of the malloc heap back to the system (malloc_trim(0)): whole free pages
// inside the heap too, not only at its top. Returns 1 when some was given back.
int roost_trim_memory(void);

// Bytes written to the socket `fd` that its peer has not taken yet (SIOCOUTQ: for TCP, not yet
// acknowledged; for a unix socket, not yet read), or -errno. ioctl is variadic, which Swift cannot call.
int roost_socket_unsent(int fd);

// An epoll set for the descriptors of brief children (Core's DescriptorWatch), each registered
// for readability with a 64-bit tag. Each returns 0 (or the count), or -errno.
#include <stdint.h>
int roost_watch_create(void);
int roost_watch_add(int watch, int fd, uint64_t tag);
int roost_watch_remove(int watch, int fd);
// Without waiting: up to `capacity` tags of ready descriptors into `tags`; returns their count.
int roost_watch_ready(int watch, uint64_t *tags, int capacity);

// A pidfd (close-on-exec) for `pid`, which must be an unreaped child of the caller (its pid
// cannot be reused before the caller reaps it). Returns the descriptor, or -errno.
int roost_pidfd_open(pid_t pid);

#endif
