/* The C baseline for benches/uring-vs-c.sh: a minimal level-triggered epoll echo server
 * (accept4, recv, send; no buffering of unsent bytes, as the load is one small message in
 * flight per connection). usage: epoll_echo [PORT]   (0 or none: any free port)
 * Prints "listening on 127.0.0.1:PORT pid=PID model=c-epoll", like the lab servers. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <sys/epoll.h>
#include <sys/socket.h>
int main(int argc, char **argv) {
    int port = argc > 1 ? atoi(argv[1]) : 0, one = 1;
    int l = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(l, (void *)&a, sizeof a) || listen(l, 4096)) { perror("listen"); return 1; }
    socklen_t len = sizeof a; getsockname(l, (void *)&a, &len);
    printf("listening on 127.0.0.1:%d pid=%d model=c-epoll\n", ntohs(a.sin_port), getpid()); fflush(stdout);
    int ep = epoll_create1(0); struct epoll_event ev = {.events = EPOLLIN, .data.fd = l}, evs[256];
    epoll_ctl(ep, EPOLL_CTL_ADD, l, &ev);
    static char buf[65536];
    for (;;) {
        int n = epoll_wait(ep, evs, 256, -1);
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == l) { int c; while ((c = accept4(l, 0, 0, SOCK_NONBLOCK)) >= 0) { ev.data.fd = c; epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev); } continue; }
            ssize_t r = recv(fd, buf, sizeof buf, 0);
            if (r <= 0) { close(fd); continue; }
            send(fd, buf, r, MSG_NOSIGNAL); /* the load is one small message in flight per connection */
        }
    }
}
