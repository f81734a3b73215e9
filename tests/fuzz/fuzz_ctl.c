/* vdlvm fuzzing: the control socket (admin/ctl.c) as tgtd serves it: the
 * input is sent as is on a connection to RUNDIR/fz.sock, the real
 * vd_ctl_serve_one accepts it and runs it on a job thread, the reply is
 * read to its end and the job waited for (docs/fuzz.md).
 * Input: the bytes a client sends (u32 magic "VDC1", argc, len, then len
 * bytes of NUL-terminated arguments). */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "fuzz_admin.h"

static int g_lfd = -1;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    admin_pool_open();
    g_lfd = vd_ctl_listen("fz");
    if (g_lfd < 0)
        abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    int fd = socket(AF_UNIX, SOCK_STREAM, 0), sb = 1 << 20;
    char buf[65536];

    if (fd < 0)
        abort();
    if (vd_ctl_path("fz", sa.sun_path, sizeof(sa.sun_path)) < 0 ||
        connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
        abort();
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sb, sizeof(sb));
    /* The request is in the socket before the server reads it; the end of
     * the input is the end of the stream (a short request fails at once
     * instead of after the server's read timeout). */
    for (size_t off = 0; off < size;) {
        ssize_t n = write(fd, data + off, size - off);
        if (n <= 0)
            break;
        off += n;
    }
    shutdown(fd, SHUT_WR);
    vd_ctl_serve_one(g_lfd, g_pool, NULL);
    while (read(fd, buf, sizeof(buf)) > 0)
        ;
    vd_ctl_wait("fz");
    close(fd);
    admin_pool_reset();
    return 0;
}
