// Unit tests for admin/ (cmd.c, vol.c, status.c, output.c, ctl.c, registry.c): argument errors, command output against a
// real pool on sparse files, JSON well-formedness, and the control socket
// (a forked server answering vd_ctl_call, malformed requests, stale
// sockets, peer credentials).
#include <gtest/gtest.h>

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <time.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "replica/vdreplica.h"
#include "admin/vdadmin.h"

namespace {

// Minimal JSON validator (RFC 8259 grammar, no semantic checks).
struct Json {
    const char *p;
    void ws() { while (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r') p++; }
    bool lit(const char *s)
    {
        size_t n = strlen(s);
        if (strncmp(p, s, n))
            return false;
        p += n;
        return true;
    }
    bool str()
    {
        if (*p++ != '"')
            return false;
        while (*p && *p != '"') {
            if ((unsigned char)*p < 0x20)
                return false;
            if (*p == '\\') {
                p++;
                if (*p == 'u') {
                    for (int i = 1; i <= 4; i++)
                        if (!isxdigit((unsigned char)p[i]))
                            return false;
                    p += 5;
                    continue;
                }
                if (!strchr("\"\\/bfnrt", *p) || !*p)
                    return false;
            }
            p++;
        }
        return *p++ == '"';
    }
    bool num()
    {
        const char *s = p;
        if (*p == '-')
            p++;
        while (isdigit((unsigned char)*p) || *p == '.' || *p == 'e' ||
               *p == 'E' || *p == '+' || *p == '-')
            p++;
        return p > s;
    }
    bool val()
    {
        ws();
        bool ok;
        if (*p == '{') {
            p++;
            ws();
            if (*p == '}') {
                p++;
                return true;
            }
            do {
                ws();
                if (!str())
                    return false;
                ws();
                if (*p++ != ':' || !val())
                    return false;
                ws();
            } while (*p == ',' && p++);
            return *p++ == '}';
        }
        if (*p == '[') {
            p++;
            ws();
            if (*p == ']') {
                p++;
                return true;
            }
            do {
                if (!val())
                    return false;
                ws();
            } while (*p == ',' && p++);
            return *p++ == ']';
        }
        if (*p == '"')
            ok = str();
        else if (*p == 't' || *p == 'f' || *p == 'n')
            ok = lit("true") || lit("false") || lit("null");
        else
            ok = num();
        return ok;
    }
    static bool Valid(const std::string &s)
    {
        Json j{ s.c_str() };
        if (!j.val())
            return false;
        j.ws();
        return *j.p == 0;
    }
};

// Captures what a command writes to out and err.
struct Output {
    char *obuf = nullptr, *ebuf = nullptr;
    size_t olen = 0, elen = 0;
    FILE *out, *err;
    Output()
    {
        out = open_memstream(&obuf, &olen);
        err = open_memstream(&ebuf, &elen);
    }
    ~Output()
    {
        Close();
        free(obuf);
        free(ebuf);
    }
    void Close()
    {
        if (out)
            fclose(out);
        if (err)
            fclose(err);
        out = err = nullptr;
    }
    std::string Out() { fflush(out); return std::string(obuf, olen); }
    std::string Err() { fflush(err); return std::string(ebuf, elen); }
};

struct Argv {
    std::vector<std::string> s;
    std::vector<char *> v;
    Argv(std::initializer_list<const char *> a)
    {
        for (auto x : a)
            s.push_back(x);
        for (auto &x : s)
            v.push_back(&x[0]);
        v.push_back(nullptr);
    }
    int argc() const { return (int)s.size(); }
    char **argv() { return v.data(); }
};

static int Parse(std::initializer_list<const char *> a, std::string *pool,
                 std::string *out, std::string *err)
{
    Argv av(a);
    Output o;
    char name[VD_NAME_MAX + 1] = "?";
    int rc = vd_admin_parse(av.argc(), av.argv(), name, sizeof(name), o.out,
                            o.err);
    if (pool)
        *pool = name;
    if (out)
        *out = o.Out();
    if (err)
        *err = o.Err();
    return rc;
}

TEST(AdminParse, BadUsage_Exit2WithMessage)
{
    struct {
        std::initializer_list<const char *> argv;
        const char *needle;
    } cases[] = {
        { { "vol" }, "no command given" },
        { { "vol", "frob" }, "unknown command 'frob'" },
        { { "frob" }, "unknown command 'frob'" },
        { { "vol", "create", "pool0/v" }, "missing --size" },
        { { "vol", "create", "pool0", "--size", "1G" }, "names no volume" },
        { { "vol", "create", "pool0/v", "--size", "abc" }, "not a size" },
        { { "vol", "create", "pool0/v", "--size", "0" }, "not a size" },
        { { "vol", "create", "pool0/v", "--size" }, "needs a value" },
        { { "vol", "create", "pool0/v", "--size", "1M", "--size", "2M" },
          "given twice" },
        { { "vol", "create", "pool0/v", "--size", "1M", "--copies", "2" },
          "applies to --layout mirror" },
        { { "vol", "create", "pool0/v", "--size", "1M", "--layout", "mirror",
            "--copies", "4" }, "not 2 or 3" },
        { { "vol", "create", "pool0/v", "--size", "1M", "--layout", "raid5" },
          "unknown; use linear or mirror" },
        { { "vol", "create", "pool0/v", "--size", "1M", "--json" },
          "unknown option '--json'" },
        { { "vol", "create", "bad name/v", "--size", "1M" }, "not a pool name" },
        { { "vol", "create", "pool0/", "--size", "1M" }, "not a volume name" },
        { { "vol", "list" }, "missing POOL" },
        { { "vol", "list", "pool0/v" }, "give a pool" },
        { { "vol", "list", "pool0", "extra" }, "unexpected argument 'extra'" },
        { { "vol", "remove", "pool0/v", "--force" }, "unknown option" },
        { { "vol", "extend", "pool0/v" }, "missing --size" },
        { { "status", "--json=1" }, "takes no value" },
        { { "vol", "repair", "pool0/v", "--replace", "d0", "--with", "d0" },
          "same device" },
        { { "pool", "create", "x.yaml" }, "unknown command 'create'" },
    };
    for (auto &c : cases) {
        std::string out, err;
        EXPECT_EQ(Parse(c.argv, nullptr, &out, &err), VD_EXIT_USAGE)
            << *c.argv.begin();
        EXPECT_NE(err.find(c.needle), std::string::npos) << err;
        EXPECT_EQ(err.rfind("vdlvm: ", 0), 0u) << err;
        EXPECT_EQ(out, "");
    }
}

TEST(AdminParse, Help_Exit0OnOut)
{
    std::string out, err;
    EXPECT_EQ(Parse({ "vol", "create", "--help" }, nullptr, &out, &err), 0);
    EXPECT_NE(out.find("Usage: vdlvm [-c FILE] vol create POOL/VOL --size"),
              std::string::npos);
    EXPECT_EQ(err, "");
    // Help wins over otherwise bad arguments.
    EXPECT_EQ(Parse({ "vol", "extend", "bad/name/x", "-h" }, nullptr, &out,
                    &err), 0);
    EXPECT_EQ(Parse({ "vol", "--help" }, nullptr, &out, &err), 0);
    EXPECT_NE(out.find("vol list POOL"), std::string::npos);
    EXPECT_EQ(Parse({ "status", "-h" }, nullptr, &out, &err), 0);
}

TEST(AdminParse, WellFormed_ReturnsPoolName)
{
    std::string pool;
    EXPECT_EQ(Parse({ "vol", "create", "p1/v", "--size=8MiB" }, &pool, nullptr,
                    nullptr), -1);
    EXPECT_EQ(pool, "p1");
    EXPECT_EQ(Parse({ "vol", "extend", "p2/v", "--size", "+1G" }, &pool,
                    nullptr, nullptr), -1);
    EXPECT_EQ(pool, "p2");
    EXPECT_EQ(Parse({ "status", "--json" }, &pool, nullptr, nullptr), -1);
    EXPECT_EQ(pool, "");
    EXPECT_EQ(Parse({ "status", "p3/v", "--json" }, &pool, nullptr, nullptr), -1);
    EXPECT_EQ(pool, "p3");
    EXPECT_EQ(Parse({ "vol", "create", "p4/v", "--size", "4M", "--layout",
                      "mirror", "--allow-same-node" }, &pool, nullptr, nullptr),
              -1);
}

// A real pool on sparse files in a temporary directory.
class AdminPool : public ::testing::Test {
  protected:
    std::string dir;
    struct vd_conf_pool conf {};
    std::vector<struct vd_conf_dev> devs;
    std::vector<std::string> paths, names;

    void SetUp() override
    {
        char tmpl[] = "/tmp/vdlvm-admin-test.XXXXXX";
        ASSERT_NE(mkdtemp(tmpl), nullptr);
        dir = tmpl;
        setenv("VDLVM_RUNDIR", (dir + "/run").c_str(), 1);
        vd_admin_log_init(nullptr);
        Define({ "d0.img", "d1.img" });
    }
    void TearDown() override
    {
        std::string cmd = "rm -rf '" + dir + "'";
        ASSERT_EQ(system(cmd.c_str()), 0);
    }
    void Define(std::vector<std::string> files)
    {
        int n = (int)files.size();
        devs.assign(n, {});
        paths.clear();
        names.clear();
        for (int i = 0; i < n; i++) {
            paths.push_back(dir + "/" + files[i]);
            names.push_back("d" + std::to_string(i));
        }
        for (int i = 0; i < n; i++) {
            devs[i].name = (char *)names[i].c_str();
            devs[i].path = (char *)paths[i].c_str();
            devs[i].size = 64ull << 20;
            devs[i].node = (char *)"nodea";
        }
        conf.file = (char *)"test.yaml";
        conf.name = (char *)"pool0";
        conf.extent_size = 4ull << 20;
        conf.ndevs = n;
        conf.devs = devs.data();
    }
    vd_pool *CreateOpen()
    {
        vd_pool *p = nullptr;
        EXPECT_EQ(vd_pool_create(&conf, 0), 0);
        EXPECT_EQ(vd_pool_open(&conf, &p), 0);
        return p;
    }
    static int Exec(vd_pool *p, std::initializer_list<const char *> a,
                    std::string *out = nullptr, std::string *err = nullptr)
    {
        Argv av(a);
        Output o;
        int rc = vd_admin_exec(p, av.argc(), av.argv(), o.out, o.err);
        if (out)
            *out = o.Out();
        if (err)
            *err = o.Err();
        return rc;
    }
};

TEST_F(AdminPool, VolLifecycle_OutputsAndExitCodes)
{
    vd_pool *p = CreateOpen();
    ASSERT_NE(p, nullptr);
    std::string out, err;

    EXPECT_EQ(Exec(p, { "vol", "create", "pool0/vol0", "--size", "80MiB" },
                   &out, &err), 0) << err;
    EXPECT_EQ(out, "volume 'pool0/vol0': created, 80MiB (20 extents of 4MiB), "
                   "linear\n");
    EXPECT_EQ(Exec(p, { "vol", "list", "pool0" }, &out, &err), 0);
    EXPECT_NE(out.find("pool0/vol0  80MiB"), std::string::npos) << out;

    EXPECT_EQ(Exec(p, { "vol", "extend", "pool0/vol0", "--size", "+8M" }, &out,
                   &err), 0) << err;
    EXPECT_EQ(out, "volume 'pool0/vol0': extended from 80MiB to 88MiB\n");
    struct vd_vol_info vi;
    ASSERT_EQ(vd_vol_get_info(p, "vol0", &vi), 0);
    EXPECT_EQ(vi.size, 88ull << 20);

    // Shrinking is bad input: exit 2, size unchanged.
    EXPECT_EQ(Exec(p, { "vol", "extend", "pool0/vol0", "--size", "4M" }, &out,
                   &err), VD_EXIT_USAGE);
    EXPECT_NE(err.find("volumes only grow"), std::string::npos) << err;
    ASSERT_EQ(vd_vol_get_info(p, "vol0", &vi), 0);
    EXPECT_EQ(vi.size, 88ull << 20);

    // Too big: runtime failure naming the free space; nothing created.
    EXPECT_EQ(Exec(p, { "vol", "create", "pool0/big", "--size", "1GiB" }, &out,
                   &err), VD_EXIT_FAIL);
    EXPECT_NE(err.find("volume 'pool0/big'"), std::string::npos) << err;
    EXPECT_EQ(vd_vol_get_info(p, "big", &vi), -ENOENT);

    EXPECT_EQ(Exec(p, { "vol", "remove", "pool0/vol9" }, &out, &err),
              VD_EXIT_FAIL);
    EXPECT_EQ(err, "vdlvm: volume 'pool0/vol9': not found; list volumes with "
                   "'vdlvm vol list pool0'\n");
    EXPECT_EQ(Exec(p, { "vol", "remove", "pool0/vol0" }, &out, &err), 0);
    EXPECT_EQ(out, "volume 'pool0/vol0': removed\n");
    EXPECT_EQ(vd_pool_vol_count(p), 0);

    // Another pool's name is refused.
    EXPECT_EQ(Exec(p, { "vol", "list", "other" }, &out, &err), VD_EXIT_USAGE);
    EXPECT_NE(err.find("pool 'other': not served here"), std::string::npos);
    vd_pool_close(p);
}

static void ElsewhereLog(int, const char *) {}

TEST_F(AdminPool, LibraryLogElsewhere_OwnMessagesStillClear)
{
    // As inside a tgtd whose module sends library messages to its own log.
    vd_pool *p = CreateOpen();
    ASSERT_NE(p, nullptr);
    std::string out, err;
    ASSERT_EQ(Exec(p, { "vol", "create", "pool0/vol0", "--size", "8M" }), 0);
    vd_vol *v = vd_vol_open(p, "vol0");
    ASSERT_NE(v, nullptr);
    vd_log_set_fn(ElsewhereLog);
    EXPECT_EQ(Exec(p, { "vol", "remove", "pool0/vol0" }, &out, &err),
              VD_EXIT_BUSY);
    EXPECT_EQ(err, "vdlvm: volume 'pool0/vol0': in use (exported); delete its "
                   "LUN first\n");
    EXPECT_EQ(Exec(p, { "vol", "extend", "pool0/nope", "--size", "1G" }, &out,
                   &err), VD_EXIT_FAIL);
    EXPECT_EQ(err, "vdlvm: volume 'pool0/nope': not found; list volumes with "
                   "'vdlvm vol list pool0'\n");
    EXPECT_EQ(Exec(p, { "vol", "create", "pool0/big", "--size", "1T" }, &out,
                   &err), VD_EXIT_FAIL);
    EXPECT_NE(err.find("not enough free space"), std::string::npos) << err;
    vd_admin_log_init(nullptr);
    vd_vol_close(v);
    vd_pool_close(p);
}

TEST_F(AdminPool, Status_HumanRunsAndWellFormedJson)
{
    // A path with a quote, a backslash and a non-UTF-8 byte.
    Define({ "d\"0\\x.img", "d1\xff.img" });
    vd_pool *p = CreateOpen();
    ASSERT_NE(p, nullptr);
    std::string out, err;

    ASSERT_EQ(Exec(p, { "vol", "create", "pool0/vol0", "--size", "100M" }), 0);
    ASSERT_EQ(Exec(p, { "status", "pool0" }, &out, &err), 0) << err;
    EXPECT_NE(out.find("le 0-"), std::string::npos) << out;
    EXPECT_NE(out.find("-> d1 pe 0-"), std::string::npos) << out;

    ASSERT_EQ(Exec(p, { "status", "--json" }, &out, &err), 0) << err;
    EXPECT_TRUE(Json::Valid(out)) << out;
    EXPECT_NE(out.find("d\\\"0\\\\x.img"), std::string::npos) << out;
    EXPECT_NE(out.find("d1\\ufffd.img"), std::string::npos) << out;
    EXPECT_NE(out.find("\"volume\":\"pool0/vol0\""), std::string::npos) << out;

    ASSERT_EQ(Exec(p, { "status", "pool0/vol0", "--json" }, &out, &err), 0);
    EXPECT_TRUE(Json::Valid(out)) << out;
    EXPECT_EQ(out.rfind("{\"volume\":\"pool0/vol0\"", 0), 0u) << out;

    ASSERT_EQ(Exec(p, { "vol", "list", "pool0", "--json" }, &out, &err), 0);
    EXPECT_TRUE(Json::Valid(out)) << out;

    EXPECT_EQ(Exec(p, { "status", "pool0/nope" }, &out, &err), VD_EXIT_FAIL);
    EXPECT_NE(err.find("not found"), std::string::npos);
    vd_pool_close(p);
}

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

TEST_F(AdminPool, Mirror_VerifyResyncAndLinearRefusals)
{
    Define({ "a.img", "b.img", "c.img" });
    vd_pool *p = CreateOpen();
    ASSERT_NE(p, nullptr);
    std::string out, err;
    ASSERT_EQ(Exec(p, { "vol", "create", "pool0/m", "--size", "8M", "--layout",
                        "mirror", "--allow-same-node", "--region-size",
                        "256KiB" }, &out, &err), 0) << err;
    EXPECT_EQ(out, "volume 'pool0/m': created, 8MiB (2 extents of 4MiB), "
                   "mirror, 2 copies\n");
    ASSERT_EQ(Exec(p, { "vol", "create", "pool0/l", "--size", "4M" }), 0);

    EXPECT_EQ(Exec(p, { "verify", "pool0/m" }, &out, &err), 0) << err;
    EXPECT_EQ(out, "volume 'pool0/m': legs equal (32 regions of 256KiB "
                   "compared)\n");
    EXPECT_EQ(Exec(p, { "resync", "pool0/m", "--rate", "0", "--wait" }, &out,
                   &err), 0) << err;
    EXPECT_EQ(out, "volume 'pool0/m': resync done, legs in-sync\n");
    EXPECT_EQ(Exec(p, { "verify", "pool0/l" }, &out, &err), VD_EXIT_FAIL);
    EXPECT_EQ(err, "vdlvm: volume 'pool0/l': verify applies to mirrored "
                   "volumes; this one is linear\n");

    ASSERT_EQ(Exec(p, { "status", "pool0/m", "--json" }, &out, &err), 0);
    EXPECT_TRUE(Json::Valid(out)) << out;
    EXPECT_NE(out.find("\"legs\":[{\"leg\":0,"), std::string::npos) << out;
    EXPECT_NE(out.find("\"state\":\"in-sync\""), std::string::npos) << out;
    EXPECT_NE(out.find("\"resync\":{\"state\":\"idle\""), std::string::npos);
    ASSERT_EQ(Exec(p, { "status", "--json" }, &out, &err), 0);
    EXPECT_TRUE(Json::Valid(out)) << out;
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

// The one exit-code table: the same kind of failure, the same code.
TEST(AdminExit, ExitCodes_OneTable)
{
    EXPECT_EQ(vd_exit_code(0), VD_EXIT_OK);
    EXPECT_EQ(vd_exit_code(-EINVAL), VD_EXIT_USAGE);
    EXPECT_EQ(vd_exit_code(-EBUSY), VD_EXIT_BUSY);
    EXPECT_EQ(vd_exit_code(-ENOSPC), VD_EXIT_FAIL);
    EXPECT_EQ(vd_exit_code(-ENOENT), VD_EXIT_FAIL);
    EXPECT_EQ(vd_exit_code(-EIO), VD_EXIT_FAIL);
    std::string help = VD_EXIT_HELP;
    for (const char *l : { "  0  success", "  1  the command failed",
                           "  2  bad usage", "  3  verify", "  4  in use" })
        EXPECT_NE(help.find(l), std::string::npos) << l;
}

TEST_F(AdminPool, Registry_RemembersAbsolutePathAndForgets)
{
    setenv("VDLVM_STATEDIR", (dir + "/state").c_str(), 1);
    std::string def = dir + "/p.yaml";
    FILE *f = fopen(def.c_str(), "w");
    ASSERT_NE(f, nullptr);
    fclose(f);
    char cwd[4096];
    ASSERT_NE(getcwd(cwd, sizeof(cwd)), nullptr);
    ASSERT_EQ(chdir(dir.c_str()), 0);
    EXPECT_EQ(vd_registry_add("pool0", "p.yaml"), 0);  // relative
    ASSERT_EQ(chdir(cwd), 0);
    char buf[4096];
    ASSERT_EQ(vd_registry_get("pool0", buf, sizeof(buf)), 0);
    char real[4096];
    ASSERT_NE(realpath(def.c_str(), real), nullptr);
    EXPECT_STREQ(buf, real);
    EXPECT_EQ(vd_registry_add("pool0", def.c_str()), 0);  // replaces
    EXPECT_EQ(vd_registry_get("nope", buf, sizeof(buf)), -ENOENT);
    EXPECT_EQ(vd_registry_add("bad/name", def.c_str()), -EINVAL);
    EXPECT_EQ(vd_registry_add("pool1", (dir + "/missing.yaml").c_str()),
              -ENOENT);
    EXPECT_EQ(vd_registry_remove("pool0"), 0);
    EXPECT_EQ(vd_registry_get("pool0", buf, sizeof(buf)), -ENOENT);
    EXPECT_EQ(vd_registry_remove("pool0"), -ENOENT);
    unsetenv("VDLVM_STATEDIR");
}

TEST_F(AdminPool, VolCreate_RoundingStatedJsonHasExportedAndState)
{
    vd_pool *p = CreateOpen();
    ASSERT_NE(p, nullptr);
    std::string out, err;
    ASSERT_EQ(Exec(p, { "vol", "create", "pool0/v", "--size", "4096" }, &out,
                   &err), 0) << err;
    EXPECT_EQ(out, "volume 'pool0/v': created, 4MiB (1 extent of 4MiB), "
                   "linear\n  note: 4096 bytes (4KiB) asked, rounded up to "
                   "whole extents of 4MiB\n");
    ASSERT_EQ(Exec(p, { "vol", "create", "pool0/w", "--size", "8MiB" }, &out,
                   &err), 0) << err;
    EXPECT_EQ(out.find("note"), std::string::npos) << out;
    ASSERT_EQ(Exec(p, { "status", "pool0/v", "--json" }, &out, &err), 0);
    EXPECT_TRUE(Json::Valid(out)) << out;
    EXPECT_NE(out.find("\"exported\":false,\"state\":\"ok\""),
              std::string::npos) << out;
    vd_pool_close(p);
}

TEST_F(AdminPool, MirrorSameNode_Warned)
{
    Define({ "a.img", "b.img" });
    vd_pool *p = CreateOpen();
    ASSERT_NE(p, nullptr);
    std::string out, err;
    ASSERT_EQ(Exec(p, { "vol", "create", "pool0/m", "--size", "4M", "--layout",
                        "mirror", "--allow-same-node" }, &out, &err), 0) << err;
    EXPECT_NE(err.find("warning: volume 'pool0/m': every leg is on node "
                       "'nodea'"), std::string::npos) << err;
    ASSERT_EQ(Exec(p, { "resync", "pool0/m", "--rate", "1MiB" }, &out, &err),
              0) << err;
    EXPECT_NE(out.find("nothing to resync (no region marked); rate limit "
                       "1MiB/s"), std::string::npos) << out;
    vd_pool_close(p);
}

// The same kind of failure, the same exit code: vol repair refused by the
// pool's state (the new device holds another leg, or has too few free
// extents) is 1, as too little free space is for vol create.
TEST_F(AdminPool, VolRepairRefusals_Exit1)
{
    Define({ "a.img", "b.img", "c.img" });
    vd_pool *p = CreateOpen();
    ASSERT_NE(p, nullptr);
    std::string out, err;
    ASSERT_EQ(Exec(p, { "vol", "create", "pool0/m", "--size", "8M", "--layout",
                        "mirror", "--allow-same-node" }, &out, &err), 0) << err;
    struct vd_mirror_info mi;
    ASSERT_EQ(vd_mirror_get_info(p, "m", &mi), 0);
    std::string l0 = mi.legs[0].device, l1 = mi.legs[1].device;
    EXPECT_EQ(Exec(p, { "vol", "repair", "pool0/m", "--replace", l0.c_str(),
                        "--with", l1.c_str() }, &out, &err), VD_EXIT_FAIL);
    EXPECT_NE(err.find("already holds"), std::string::npos) << err;
    // Fill the third device, then ask for it.
    std::string third;
    for (const char *d : { "d0", "d1", "d2" })
        if (l0 != d && l1 != d)
            third = d;
    ASSERT_EQ(Exec(p, { "vol", "create", "pool0/fill", "--size", "144M" },
                   &out, &err), 0) << err;
    EXPECT_EQ(Exec(p, { "vol", "repair", "pool0/m", "--replace", l0.c_str(),
                        "--with", third.c_str() }, &out, &err), VD_EXIT_FAIL)
        << err;
    vd_pool_close(p);
}

}  // namespace
