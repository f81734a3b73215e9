// Unit tests for admin/ctl.c: the control socket (a forked server answering
// vd_ctl_call, malformed requests, stale sockets, peer credentials,
// commands on threads of their own).
// Shared fixtures: tests/unit/admin_fixture.h.
#include "tests/unit/admin_fixture.h"

using namespace vdtest_admin;

namespace {

// ---- control socket ------------------------------------------------------

static std::string Path(const char *pool)
{
    char buf[256];
    EXPECT_EQ(vd_ctl_path(pool, buf, sizeof(buf)), 0);
    return buf;
}

static int RawConnect(const std::string &path)
{
    struct sockaddr_un sa = {};
    sa.sun_family = AF_UNIX;
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path.c_str());
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

// Reads a whole reply: returns its exit code and err text.
static int RawReply(int fd, std::string *err)
{
    std::string all;
    char buf[4096];
    ssize_t n;
    while ((n = read(fd, buf, sizeof(buf))) > 0)
        all.append(buf, n);
    if (all.size() < 12)
        return -1;
    auto u32 = [&](size_t off) {
        return (uint32_t)(uint8_t)all[off] | (uint32_t)(uint8_t)all[off + 1] << 8 |
               (uint32_t)(uint8_t)all[off + 2] << 16 |
               (uint32_t)(uint8_t)all[off + 3] << 24;
    };
    uint32_t olen = u32(4);
    uint32_t elen = u32(8 + olen);
    *err = all.substr(12 + olen, elen);
    return (int)u32(0);
}

static void PutU32(std::string &s, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        s.push_back((char)(v >> (8 * i)));
}

TEST_F(AdminPool, Socket_ForkedServerRunsCommands)
{
    {
        vd_pool *p = CreateOpen();
        ASSERT_NE(p, nullptr);
        vd_pool_close(p);
    }
    int ready[2];
    ASSERT_EQ(pipe(ready), 0);
    const int nreq = 6;
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        // The "tgtd": holds the pool, serves nreq requests, exits.
        vd_pool *p = nullptr;
        if (vd_pool_open(&conf, &p) < 0)
            _exit(10);
        int lfd = vd_ctl_listen("pool0");
        if (lfd < 0)
            _exit(11);
        if (write(ready[1], "x", 1) != 1)
            _exit(12);
        for (int i = 0; i < nreq; i++) {
            struct pollfd pf = { lfd, POLLIN, 0 };
            if (poll(&pf, 1, 10000) != 1)
                _exit(13);
            vd_ctl_serve_one(lfd, p, nullptr);
        }
        vd_ctl_unlisten("pool0", lfd);
        vd_pool_close(p);
        _exit(0);
    }
    close(ready[1]);
    char c;
    ASSERT_EQ(read(ready[0], &c, 1), 1);
    close(ready[0]);

    struct stat st;
    ASSERT_EQ(stat(Path("pool0").c_str(), &st), 0);
    EXPECT_TRUE(S_ISSOCK(st.st_mode));
    EXPECT_EQ(st.st_mode & 0777, 0600u);

    // The pool is held by the child: a local open must fail.
    vd_pool *p2 = nullptr;
    EXPECT_EQ(vd_pool_open(&conf, &p2), -EBUSY);

    int code = -1;
    {
        Argv a({ "vol", "create", "pool0/vol1", "--size", "8MiB" });
        Output o;
        ASSERT_EQ(vd_ctl_call("pool0", a.argc(), a.argv(), o.out, o.err,
                              &code), 0);
        EXPECT_EQ(code, 0) << o.Err();
        EXPECT_EQ(o.Out(), "volume 'pool0/vol1': created, 8MiB (2 extents of "
                           "4MiB), linear\n");
    }
    {
        // A library error message travels back on err.
        Argv a({ "vol", "remove", "pool0/vol9" });
        Output o;
        ASSERT_EQ(vd_ctl_call("pool0", a.argc(), a.argv(), o.out, o.err,
                              &code), 0);
        EXPECT_EQ(code, VD_EXIT_FAIL);
        EXPECT_EQ(o.Err(), "vdlvm: volume 'pool0/vol9': not found; list "
                           "volumes with 'vdlvm vol list pool0'\n");
        EXPECT_EQ(o.Out(), "");
    }
    {
        Argv a({ "status", "--json" });
        Output o;
        ASSERT_EQ(vd_ctl_call("pool0", a.argc(), a.argv(), o.out, o.err,
                              &code), 0);
        EXPECT_EQ(code, 0);
        EXPECT_TRUE(Json::Valid(o.Out())) << o.Out();
        EXPECT_NE(o.Out().find("\"name\":\"vol1\""), std::string::npos);
    }
    {
        // Bad magic.
        int fd = RawConnect(Path("pool0"));
        ASSERT_GE(fd, 0);
        std::string req;
        PutU32(req, 0xdeadbeef);
        PutU32(req, 1);
        PutU32(req, 2);
        req += "x";
        req.push_back(0);
        ASSERT_EQ(write(fd, req.data(), req.size()), (ssize_t)req.size());
        std::string err;
        EXPECT_EQ(RawReply(fd, &err), VD_EXIT_USAGE);
        EXPECT_NE(err.find("bad magic"), std::string::npos) << err;
        close(fd);
    }
    {
        // Oversized: refused from the header alone, without reading 1 GiB.
        int fd = RawConnect(Path("pool0"));
        ASSERT_GE(fd, 0);
        std::string req;
        PutU32(req, 0x31434456u);
        PutU32(req, 2);
        PutU32(req, 1u << 30);
        ASSERT_EQ(write(fd, req.data(), req.size()), (ssize_t)req.size());
        std::string err;
        EXPECT_EQ(RawReply(fd, &err), VD_EXIT_USAGE);
        EXPECT_NE(err.find("refused"), std::string::npos) << err;
        close(fd);
    }
    {
        // Argument count does not match the NULs.
        int fd = RawConnect(Path("pool0"));
        ASSERT_GE(fd, 0);
        std::string req;
        PutU32(req, 0x31434456u);
        PutU32(req, 3);
        PutU32(req, 7);
        req += "vol";
        req.push_back(0);
        req += "lis";
        ASSERT_EQ(write(fd, req.data(), req.size()), (ssize_t)req.size());
        std::string err;
        EXPECT_EQ(RawReply(fd, &err), VD_EXIT_USAGE);
        EXPECT_NE(err.find("garbled"), std::string::npos) << err;
        close(fd);
    }
    int status;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status), 0);

    // The server is gone and removed its socket: callers open the pool.
    Argv a({ "vol", "list", "pool0" });
    Output o;
    EXPECT_EQ(vd_ctl_call("pool0", a.argc(), a.argv(), o.out, o.err, &code),
              -ENOENT);
    vd_pool *p = nullptr;
    ASSERT_EQ(vd_pool_open(&conf, &p), 0);
    struct vd_vol_info vi;
    EXPECT_EQ(vd_vol_get_info(p, "vol1", &vi), 0);
    EXPECT_EQ(vi.size, 8ull << 20);
    vd_pool_close(p);
}

TEST_F(AdminPool, Socket_LongCommandRunsInThreadUnlistenWaits)
{
    Define({ "a.img", "b.img" });
    // The client is forked before the pool's threads exist.
    int go[2], res[2];
    ASSERT_EQ(pipe(go), 0);
    ASSERT_EQ(pipe(res), 0);
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        char c;
        close(go[1]);
        close(res[0]);
        if (read(go[0], &c, 1) != 1)
            _exit(20);
        Argv a({ "verify", "pool0/m" });
        Output o;
        int code = -1;
        int r = vd_ctl_call("pool0", a.argc(), a.argv(), o.out, o.err, &code);
        std::string msg = std::to_string(r) + " " + std::to_string(code) + " " +
                          o.Out() + o.Err();
        if (write(res[1], msg.data(), msg.size()) < 0)
            _exit(21);
        _exit(0);
    }
    close(go[0]);
    close(res[1]);
    vd_pool *p = CreateOpen();
    ASSERT_NE(p, nullptr);
    ASSERT_EQ(Exec(p, { "vol", "create", "pool0/m", "--size", "8M", "--layout",
                        "mirror", "--allow-same-node" }), 0);
    int lfd = vd_ctl_listen("pool0");
    ASSERT_GE(lfd, 0);
    ASSERT_EQ(write(go[1], "x", 1), 1);
    struct pollfd pf = { lfd, POLLIN, 0 };
    ASSERT_EQ(poll(&pf, 1, 10000), 1);
    EXPECT_EQ(vd_ctl_serve_one(lfd, p, nullptr), 0);
    vd_ctl_unlisten("pool0", lfd);  // returns once the verify has replied
    vd_pool_close(p);
    std::string got;
    char buf[1024];
    ssize_t n;
    while ((n = read(res[0], buf, sizeof(buf))) > 0)
        got.append(buf, n);
    close(res[0]);
    close(go[1]);
    int status;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    EXPECT_EQ(got, "0 0 volume 'pool0/m': legs equal (8 regions of 1MiB "
                   "compared)\n");
}

TEST_F(AdminPool, Listen_StaleSocketReplacedLiveOneKept)
{
    ASSERT_EQ(mkdir((dir + "/run").c_str(), 0700), 0);
    std::string path = Path("pool0");
    // A stale socket file: bound, never listening (its owner died).
    {
        struct sockaddr_un sa = {};
        sa.sun_family = AF_UNIX;
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path.c_str());
        int fd = socket(AF_UNIX, SOCK_STREAM, 0);
        ASSERT_EQ(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        close(fd);
    }
    Argv a({ "vol", "list", "pool0" });
    Output o;
    int code;
    EXPECT_EQ(vd_ctl_call("pool0", a.argc(), a.argv(), o.out, o.err, &code),
              -ECONNREFUSED);

    int fd = vd_ctl_listen("pool0");
    ASSERT_GE(fd, 0);
    EXPECT_EQ(vd_ctl_listen("pool0"), -EADDRINUSE);
    struct stat st;
    EXPECT_EQ(stat(path.c_str(), &st), 0);  // the live one is kept
    vd_ctl_unlisten("pool0", fd);
    EXPECT_EQ(stat(path.c_str(), &st), -1);

    // Not a socket: left alone.
    FILE *f = fopen(path.c_str(), "w");
    ASSERT_NE(f, nullptr);
    fclose(f);
    EXPECT_EQ(vd_ctl_listen("pool0"), -EEXIST);
    EXPECT_EQ(stat(path.c_str(), &st), 0);
    EXPECT_TRUE(S_ISREG(st.st_mode));

    EXPECT_EQ(vd_ctl_listen("bad/name"), -EINVAL);
}

TEST_F(AdminPool, Socket_OtherUidRefused)
{
    if (geteuid() != 0)
        GTEST_SKIP() << "needs root to switch to another uid";
    vd_pool *p = CreateOpen();
    ASSERT_NE(p, nullptr);
    int lfd = vd_ctl_listen("pool0");
    ASSERT_GE(lfd, 0);
    // Open the file permissions so that only the credential check stands.
    ASSERT_EQ(chmod((dir + "/run").c_str(), 0777), 0);
    ASSERT_EQ(chmod(dir.c_str(), 0777), 0);
    ASSERT_EQ(chmod(Path("pool0").c_str(), 0666), 0);

    int res[2];
    ASSERT_EQ(pipe(res), 0);
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        close(res[0]);
        if (setgid(65534) < 0 || setuid(65534) < 0)
            _exit(20);
        Argv a({ "vol", "create", "pool0/evil", "--size", "4M" });
        Output o;
        int code = -1;
        int r = vd_ctl_call("pool0", a.argc(), a.argv(), o.out, o.err, &code);
        std::string msg = std::to_string(r) + " " + std::to_string(code) + " " +
                          o.Err();
        if (write(res[1], msg.data(), msg.size()) < 0)
            _exit(21);
        _exit(0);
    }
    close(res[1]);
    struct pollfd pf = { lfd, POLLIN, 0 };
    ASSERT_EQ(poll(&pf, 1, 10000), 1);
    EXPECT_EQ(vd_ctl_serve_one(lfd, p, nullptr), 0);  // refused on its thread
    std::string got;
    char buf[1024];
    ssize_t n;
    while ((n = read(res[0], buf, sizeof(buf))) > 0)
        got.append(buf, n);
    close(res[0]);
    int status;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    EXPECT_EQ(got.rfind("0 1 vdlvm: pool 'pool0': uid 65534 may not "
                        "administer this pool", 0), 0u) << got;
    struct vd_vol_info vi;
    EXPECT_EQ(vd_vol_get_info(p, "evil", &vi), -ENOENT);
    vd_ctl_unlisten("pool0", lfd);
    vd_pool_close(p);
}

// A command that waits (here in the before hook, standing for a device or
// the admin lock held across a remote metadata commit) never holds the
// serving thread: vd_ctl_serve_one returns at once for every client, the
// other commands run meanwhile, and beyond VD_CTL_MAX_JOBS the client gets
// "busy" (exit 4) at once.
struct Gate {
    pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t c = PTHREAD_COND_INITIALIZER;
    bool open = false;
    int waiting = 0, ran = 0;
};
static void GateBefore(void *arg)
{
    Gate *g = (Gate *)arg;
    pthread_mutex_lock(&g->m);
    g->waiting++;
    pthread_cond_broadcast(&g->c);
    while (!g->open)
        pthread_cond_wait(&g->c, &g->m);
    g->ran++;
    pthread_mutex_unlock(&g->m);
}

static std::string Request(std::initializer_list<const char *> args)
{
    std::string body, req;
    for (auto a : args) {
        body += a;
        body.push_back(0);
    }
    PutU32(req, 0x31434456u);
    PutU32(req, (uint32_t)args.size());
    PutU32(req, (uint32_t)body.size());
    return req + body;
}

static int64_t NowMs()
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

TEST_F(AdminPool, Socket_WaitingCommandsNeverHoldServerBusyBeyondLimit)
{
    vd_pool *p = CreateOpen();
    ASSERT_NE(p, nullptr);
    int lfd = vd_ctl_listen("pool0");
    ASSERT_GE(lfd, 0);
    Gate g;
    struct vd_ctl_hooks hooks = { GateBefore, nullptr, &g };
    std::vector<int> fds;
    std::string req = Request({ "vol", "list", "pool0" });
    for (int i = 0; i < VD_CTL_MAX_JOBS + 1; i++) {
        int fd = RawConnect(Path("pool0"));
        ASSERT_GE(fd, 0);
        ASSERT_EQ(write(fd, req.data(), req.size()), (ssize_t)req.size());
        struct pollfd pf = { lfd, POLLIN, 0 };
        ASSERT_EQ(poll(&pf, 1, 10000), 1);
        int64_t t0 = NowMs();
        int r = vd_ctl_serve_one(lfd, p, &hooks);
        EXPECT_LT(NowMs() - t0, 1000) << "serve_one held the caller";
        EXPECT_EQ(r, i < VD_CTL_MAX_JOBS ? 0 : -EBUSY) << i;
        fds.push_back(fd);
        if (i < VD_CTL_MAX_JOBS) {
            // Wait until this one's thread is inside its command.
            pthread_mutex_lock(&g.m);
            while (g.waiting <= i)
                pthread_cond_wait(&g.c, &g.m);
            pthread_mutex_unlock(&g.m);
        }
    }
    // The one beyond the limit was answered at once.
    std::string err;
    EXPECT_EQ(RawReply(fds.back(), &err), VD_EXIT_BUSY);
    EXPECT_NE(err.find("pool 'pool0': busy"), std::string::npos) << err;
    close(fds.back());
    fds.pop_back();
    pthread_mutex_lock(&g.m);
    g.open = true;
    pthread_cond_broadcast(&g.c);
    pthread_mutex_unlock(&g.m);
    for (int fd : fds) {
        EXPECT_EQ(RawReply(fd, &err), 0) << err;
        close(fd);
    }
    vd_ctl_unlisten("pool0", lfd);
    EXPECT_EQ(g.ran, VD_CTL_MAX_JOBS);
    vd_pool_close(p);
}

}  // namespace
