/* LD_PRELOAD shim for the private test Tor network (scripts/tor-net.py): turn Nagle off on
 * every TCP socket tor connects or accepts. tor never sets TCP_NODELAY itself, and on a
 * loopback network of four relays one round trip crosses the same links several times, so
 * Nagle plus the 40 ms delayed ACK turn a sub-millisecond echo into ~90 ms.
 *
 * Built at run time by tor-net.py:  gcc -shared -fPIC -O2 -o tor-nodelay.so tor-nodelay.c -ldl
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

static void nodelay(int fd)
{
    int saved = errno; /* the caller must see the errno of the real call */
    int type = 0;
    socklen_t len = sizeof type;
    if (fd >= 0 && getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0
        && type == SOCK_STREAM) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one); /* fails harmlessly on AF_UNIX */
    }
    errno = saved;
}

int connect(int fd, const struct sockaddr *addr, socklen_t len)
{
    static int (*real)(int, const struct sockaddr *, socklen_t);
    if (!real)
        real = (int (*)(int, const struct sockaddr *, socklen_t))dlsym(RTLD_NEXT, "connect");
    if (addr && (addr->sa_family == AF_INET || addr->sa_family == AF_INET6))
        nodelay(fd); /* before the call: tor's sockets are non-blocking (EINPROGRESS) */
    return real(fd, addr, len);
}

int accept(int fd, struct sockaddr *addr, socklen_t *len)
{
    static int (*real)(int, struct sockaddr *, socklen_t *);
    if (!real)
        real = (int (*)(int, struct sockaddr *, socklen_t *))dlsym(RTLD_NEXT, "accept");
    int s = real(fd, addr, len);
    nodelay(s);
    return s;
}

int accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags)
{
    static int (*real)(int, struct sockaddr *, socklen_t *, int);
    if (!real)
        real = (int (*)(int, struct sockaddr *, socklen_t *, int))dlsym(RTLD_NEXT, "accept4");
    int s = real(fd, addr, len, flags);
    nodelay(s);
    return s;
}
