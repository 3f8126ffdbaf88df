/* A socket-activated test server: serves every socket passed as fds 3.. (LISTEN_FDS), so tests
 * can check what reached the container. A stream client sends one line and gets back
 *   ECHO <line>
 *   LISTEN_FDS=<env> LISTEN_PID=<env> PID=<getpid()>
 *   FD <n> <readlink /proc/self/fd/n>      (one line per open fd)
 * and the connection is closed. A datagram gets the same reply as one datagram. No socket is
 * ever created here: a container without a network can only serve what systemd passed. */
#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static size_t report(char *out, size_t cap, const char *line, size_t len) {
    const char *fds = getenv("LISTEN_FDS"), *pid = getenv("LISTEN_PID");
    size_t n = (size_t)snprintf(out, cap, "ECHO %.*s\nLISTEN_FDS=%s LISTEN_PID=%s PID=%d\n", (int)len, line,
                                fds ? fds : "-", pid ? pid : "-", (int)getpid());
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return n;
    struct dirent *e;
    while ((e = readdir(d)) && n < cap) {
        if (e->d_name[0] == '.' || atoi(e->d_name) == dirfd(d))
            continue;
        char path[300], target[256];
        snprintf(path, sizeof path, "/proc/self/fd/%s", e->d_name);
        ssize_t t = readlink(path, target, sizeof target - 1);
        target[t < 0 ? 0 : t] = 0;
        n += (size_t)snprintf(out + n, cap - n, "FD %s %s\n", e->d_name, target);
    }
    closedir(d);
    return n < cap ? n : cap;
}

int main(void) {
    const char *env = getenv("LISTEN_FDS");
    int count = env ? atoi(env) : 0;
    if (count < 1 || count > 16) {
        fprintf(stderr, "listen-serve: LISTEN_FDS=%s: no sockets passed\n", env ? env : "(unset)");
        return 2;
    }
    printf("listen-serve: LISTEN_FDS=%s LISTEN_PID=%s\n", env, getenv("LISTEN_PID") ? getenv("LISTEN_PID") : "-");
    fflush(stdout);
    struct pollfd p[16];
    int types[16];
    for (int i = 0; i < count; i++) {
        socklen_t l = sizeof types[i];
        if (getsockopt(3 + i, SOL_SOCKET, SO_TYPE, &types[i], &l) < 0) {
            fprintf(stderr, "listen-serve: fd %d is not a socket: %s\n", 3 + i, strerror(errno));
            return 2;
        }
        p[i].fd = 3 + i;
        p[i].events = POLLIN;
    }
    static char in[4096], out[16384];
    for (;;) {
        if (poll(p, (nfds_t)count, -1) < 0 && errno != EINTR)
            return 1;
        for (int i = 0; i < count; i++) {
            if (!(p[i].revents & POLLIN))
                continue;
            if (types[i] == SOCK_DGRAM) {
                struct sockaddr_storage from;
                socklen_t fl = sizeof from;
                ssize_t r = recvfrom(p[i].fd, in, sizeof in, 0, (struct sockaddr *)&from, &fl);
                if (r < 0)
                    continue;
                size_t n = report(out, sizeof out, in, r > 0 && in[r - 1] == '\n' ? (size_t)r - 1 : (size_t)r);
                sendto(p[i].fd, out, n, 0, (struct sockaddr *)&from, fl);
                continue;
            }
            int c = accept(p[i].fd, NULL, NULL);
            if (c < 0)
                continue;
            size_t got = 0;
            while (got < sizeof in) {
                ssize_t r = read(c, in + got, sizeof in - got);
                if (r <= 0)
                    break;
                got += (size_t)r;
                if (memchr(in, '\n', got))
                    break;
            }
            char *nl = memchr(in, '\n', got);
            size_t n = report(out, sizeof out, in, nl ? (size_t)(nl - in) : got);
            for (size_t off = 0; off < n;) {
                ssize_t w = write(c, out + off, n - off);
                if (w <= 0)
                    break;
                off += (size_t)w;
            }
            close(c);
        }
    }
}
