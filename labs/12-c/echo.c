/* Lab 12: the calibration row. A level-triggered epoll echo loop as a C programmer writes it:
 * non-blocking accept4 until EAGAIN, one read per EPOLLIN into the connection's buffer, write
 * it back at once, and EPOLLOUT only while a write is partial (no read meanwhile, so a client
 * that never reads holds one buffer). The Rust side (main.rs) binds the listener and the
 * signal self-pipe and prints the lines every netlab server prints; the loop is all here. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct netlab_c_counters { uint64_t connections, bytes, refused, errors; };

struct conn {
    char *buf;          /* NULL: no connection on this fd */
    size_t len, sent;   /* buf[sent..len] is still to be written back */
};

static struct conn *conns; /* indexed by fd, so read(7, ...) in strace is conns[7] */
static int nconns;
static long long paused_until; /* after EMFILE: the listener is left out until then (ms) */

static long long now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000LL + t.tv_nsec / 1000000;
}

static void watch(int ep, int op, int fd, uint32_t events) {
    struct epoll_event ev = { .events = events, .data.fd = fd };
    epoll_ctl(ep, op, fd, &ev);
}

static void drop_conn(int fd, struct netlab_c_counters *c, int failed) {
    free(conns[fd].buf);
    conns[fd] = (struct conn){0}; /* the next connection on this fd starts empty */
    close(fd); /* also leaves the epoll interest list */
    c->errors += failed;
    if (paused_until) paused_until = 1; /* an fd is free: accept again now */
}

/* Write what is pending. Returns -1 on an error (EPIPE, ECONNRESET), else the bytes left. */
static ssize_t flush(int fd, struct netlab_c_counters *c) {
    struct conn *k = &conns[fd];
    while (k->sent < k->len) {
        ssize_t n = send(fd, k->buf + k->sent, k->len - k->sent, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return errno == EAGAIN ? (ssize_t)(k->len - k->sent) : -1;
        k->sent += n;
        c->bytes += n;
    }
    k->len = k->sent = 0;
    return 0;
}

/* Runs until on_signal() returns non-zero; returns 0, or -1 with errno set on a fatal error. */
int netlab_c_echo(int listen_fd, int signal_fd, size_t buf_size,
                  struct netlab_c_counters *out,
                  int (*on_signal)(struct netlab_c_counters)) {
    struct netlab_c_counters c = {0};
    struct epoll_event events[1024];
    int ep = epoll_create1(EPOLL_CLOEXEC), warned = 0, stop = 0;
    if (ep < 0) return -1;
    watch(ep, EPOLL_CTL_ADD, listen_fd, EPOLLIN);
    watch(ep, EPOLL_CTL_ADD, signal_fd, EPOLLIN);
    while (!stop) {
        if (paused_until && now_ms() >= paused_until) { /* accept again: fds may be free */
            watch(ep, EPOLL_CTL_MOD, listen_fd, EPOLLIN);
            paused_until = 0;
        }
        int n = epoll_wait(ep, events, 1024, paused_until ? 100 : -1);
        if (n < 0 && errno == EINTR) continue; /* epoll_wait is never restarted */
        if (n < 0) return -1;
        for (int i = 0; i < n; i++) {
            int fd = events[i].data.fd;
            if (fd == signal_fd) {
                stop = on_signal(c); /* drains the pipe; SIGUSR1 prints the counters */
            } else if (fd == listen_fd) {
                int s;
                while ((s = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
                    if (s >= nconns) { /* grow the table to cover the new fd */
                        int more = s * 2 + 64;
                        struct conn *grown = realloc(conns, more * sizeof *conns);
                        if (!grown) { close(s); c.errors++; continue; }
                        memset(grown + nconns, 0, (more - nconns) * sizeof *conns);
                        conns = grown;
                        nconns = more;
                    }
                    if (!(conns[s].buf = malloc(buf_size))) { close(s); c.errors++; continue; }
                    watch(ep, EPOLL_CTL_ADD, s, EPOLLIN);
                    c.connections++;
                    warned = 0;
                }
                if (errno == EMFILE || errno == ENFILE) {
                    /* The connection stays queued and the listener readable: stop watching it. */
                    if (!warned++) perror("echo-c: accept4; retrying in 100 ms");
                    watch(ep, EPOLL_CTL_MOD, listen_fd, 0);
                    paused_until = now_ms() + 100;
                } else if (errno != EAGAIN) {
                    perror("echo-c: accept4"); /* ECONNABORTED: that one is gone */
                }
            } else if (fd >= nconns || !conns[fd].buf) {
                continue; /* not a connection (any more) */
            } else if (conns[fd].len > 0) { /* EPOLLOUT (or an error) while a write was partial */
                ssize_t left = flush(fd, &c);
                if (left < 0) drop_conn(fd, &c, 1);
                else if (left == 0) watch(ep, EPOLL_CTL_MOD, fd, EPOLLIN);
            } else { /* EPOLLIN, EPOLLHUP or EPOLLERR: one read tells which */
                ssize_t got = read(fd, conns[fd].buf, buf_size);
                if (got < 0 && (errno == EAGAIN || errno == EINTR)) continue;
                if (got <= 0) { /* end of file, or ECONNRESET */
                    drop_conn(fd, &c, got < 0);
                    continue;
                }
                conns[fd].len = got;
                ssize_t left = flush(fd, &c);
                if (left < 0) drop_conn(fd, &c, 1);
                else if (left > 0) watch(ep, EPOLL_CTL_MOD, fd, EPOLLOUT);
            }
        }
    }
    for (int fd = 0; fd < nconns; fd++)
        if (conns[fd].buf) drop_conn(fd, &c, 0);
    close(ep);
    *out = c;
    return 0;
}
