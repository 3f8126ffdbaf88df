/* sd-notify: send sd_notify datagrams to $NOTIFY_SOCKET from inside a test container.
 * Built statically at test time (busybox has no notify client).
 *
 *   sd-notify LINE...            one datagram, the LINEs joined by newlines
 *   sd-notify --stdin            one datagram, raw bytes from stdin (binary junk allowed)
 *   sd-notify --flood N LINE...  N datagrams as fast as possible (ENOBUFS/EAGAIN retried)
 *   sd-notify --child LINE...    send from a forked child process, not from this one
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

static int send_one(int fd, const struct sockaddr_un *addr, socklen_t len, const char *buf,
                    size_t n) {
    for (;;) {
        if (sendto(fd, buf, n, 0, (const struct sockaddr *)addr, len) >= 0)
            return 0;
        if (errno != EAGAIN && errno != ENOBUFS && errno != EINTR) {
            perror("sd-notify: sendto");
            return -1;
        }
        usleep(1000);
    }
}

int main(int argc, char **argv) {
    const char *path = getenv("NOTIFY_SOCKET");
    long count = 1;
    int from_stdin = 0, from_child = 0, i = 1;
    static char buf[1 << 20];
    size_t n = 0;

    if (!path || !*path) {
        fprintf(stderr, "sd-notify: NOTIFY_SOCKET is not set\n");
        return 2;
    }
    for (; i < argc; i++) {
        if (!strcmp(argv[i], "--stdin")) from_stdin = 1;
        else if (!strcmp(argv[i], "--child")) from_child = 1;
        else if (!strcmp(argv[i], "--flood") && i + 1 < argc) count = atol(argv[++i]);
        else break;
    }
    if (from_stdin) {
        ssize_t r;
        while (n < sizeof buf && (r = read(0, buf + n, sizeof buf - n)) > 0)
            n += (size_t)r;
    } else {
        for (; i < argc; i++) {
            size_t l = strlen(argv[i]);
            if (n + l + 1 >= sizeof buf) break;
            if (n) buf[n++] = '\n';
            memcpy(buf + n, argv[i], l);
            n += l;
        }
    }
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    strncpy(addr.sun_path, path, sizeof addr.sun_path - 1);
    if (addr.sun_path[0] == '@') addr.sun_path[0] = 0;
    socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(path));
    if (from_child) {
        pid_t pid = fork();
        if (pid > 0) {
            int st;
            waitpid(pid, &st, 0);
            return WIFEXITED(st) ? WEXITSTATUS(st) : 1;
        }
    }
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) { perror("sd-notify: socket"); return 1; }
    for (long k = 0; k < count; k++)
        if (send_one(fd, &addr, len, buf, n) < 0) return 1;
    return 0;
}
