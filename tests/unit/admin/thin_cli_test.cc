// Unit tests for the thin-volume front end of admin/ (cmd.c, vol.c,
// status.c, output.c): `vol create --thin [--chunk-size]` usage errors and
// help, and, against a real pool on sparse files, what `vol create`, `vol
// list` and `status` (text and JSON) say about thin volumes and the pool's
// provisioned / allocated space.
#include <gtest/gtest.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "admin/vdadmin.h"

namespace {

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
        fclose(out);
        fclose(err);
        free(obuf);
        free(ebuf);
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

int Parse(std::initializer_list<const char *> a, std::string *out,
          std::string *err)
{
    Argv av(a);
    Output o;
    char name[VD_NAME_MAX + 1] = "";
    int rc = vd_admin_parse(av.argc(), av.argv(), name, sizeof(name), o.out,
                            o.err);
    *out = o.Out();
    *err = o.Err();
    return rc;
}

TEST(ThinCliParse, BadChunkOrMissingThin_Exit2WithMessage)
{
    struct {
        std::initializer_list<const char *> argv;
        const char *needle;
    } cases[] = {
        { { "vol", "create", "p/v", "--size", "10GiB", "--chunk-size", "64KiB" },
          "vol create: --chunk-size applies to thin volumes; add --thin" },
        { { "vol", "create", "p/v", "--size", "1G", "--thin", "--chunk-size",
            "96KiB" },
          "vol create: --chunk-size '96KiB' is not a power of two of at least "
          "4KiB; use e.g. 64KiB (at most the extent size)" },
        { { "vol", "create", "p/v", "--size", "1G", "--thin", "--chunk-size",
            "2KiB" },
          "not a power of two of at least 4KiB" },
        { { "vol", "create", "p/v", "--size", "1G", "--thin", "--chunk-size",
            "0" },
          "not a power of two of at least 4KiB" },
        { { "vol", "create", "p/v", "--size", "1G", "--thin", "--chunk-size",
            "64kb" },
          "vol create: --chunk-size '64kb' is not a size; use" },
        { { "vol", "create", "p/v", "--size", "1G", "--thin", "--chunk-size" },
          "option '--chunk-size' needs a value" },
        { { "vol", "create", "p/v", "--size", "1G", "--thin", "--thin" },
          "option '--thin' given twice" },
        { { "vol", "create", "p/v", "--size", "1G", "--thin=yes" },
          "option '--thin' takes no value" },
        { { "vol", "extend", "p/v", "--size", "1G", "--thin" },
          "unknown option '--thin'" },
        { { "vol", "create", "p/v", "--thin" }, "missing --size" },
    };
    for (auto &c : cases) {
        std::string out, err;
        EXPECT_EQ(Parse(c.argv, &out, &err), VD_EXIT_USAGE) << c.needle;
        EXPECT_NE(err.find(c.needle), std::string::npos)
            << "want '" << c.needle << "' in '" << err << "'";
        EXPECT_EQ(err.rfind("vdlvm: ", 0), 0u) << err;
        EXPECT_EQ(out, "");
    }
}

TEST(ThinCliParse, WellFormed_ReturnsMinusOne)
{
    std::string out, err;
    EXPECT_EQ(Parse({ "vol", "create", "p/v", "--size", "10GiB", "--thin" },
                    &out, &err), -1) << err;
    EXPECT_EQ(Parse({ "vol", "create", "p/v", "--size", "10GiB", "--thin",
                      "--chunk-size", "4KiB" }, &out, &err), -1) << err;
    EXPECT_EQ(Parse({ "vol", "create", "p/v", "--size", "10GiB",
                      "--chunk-size=1MiB", "--thin", "--layout", "mirror",
                      "--copies", "2" }, &out, &err), -1) << err;
}

TEST(ThinCliParse, Help_NamesThinAndChunkSize)
{
    std::string out, err;
    EXPECT_EQ(Parse({ "vol", "create", "--help" }, &out, &err), 0);
    EXPECT_NE(out.find("[--thin [--chunk-size SIZE]]"), std::string::npos)
        << out;
    EXPECT_NE(out.find("--chunk-size SIZE    thin: the unit of allocation"),
              std::string::npos) << out;
    EXPECT_NE(out.find("SPACE ALLOCATION FAILED"), std::string::npos) << out;
    EXPECT_EQ(Parse({ "status", "--help" }, &out, &err), 0);
    EXPECT_NE(out.find("provisioned (overcommit)"), std::string::npos) << out;
}

// A real pool on sparse files (two 64 MiB devices, 4 MiB extents).
class ThinCliPool : public ::testing::Test {
  protected:
    std::string dir;
    struct vd_conf_pool conf {};
    std::vector<struct vd_conf_dev> devs;
    std::vector<std::string> paths, names;

    void SetUp() override
    {
        char tmpl[] = "/tmp/vdlvm-thincli-test.XXXXXX";
        ASSERT_NE(mkdtemp(tmpl), nullptr);
        dir = tmpl;
        setenv("VDLVM_RUNDIR", (dir + "/run").c_str(), 1);
        vd_admin_log_init(nullptr);
        devs.assign(2, {});
        for (int i = 0; i < 2; i++) {
            paths.push_back(dir + "/d" + std::to_string(i) + ".img");
            names.push_back("d" + std::to_string(i));
        }
        for (int i = 0; i < 2; i++) {
            devs[i].name = (char *)names[i].c_str();
            devs[i].path = (char *)paths[i].c_str();
            devs[i].size = 64ull << 20;
            devs[i].node = (char *)(i ? "nodeb" : "nodea");
        }
        conf.file = (char *)"test.yaml";
        conf.name = (char *)"pool0";
        conf.extent_size = 4ull << 20;
        conf.chunk_size = 64ull << 10;
        conf.ndevs = 2;
        conf.devs = devs.data();
    }
    void TearDown() override
    {
        std::string cmd = "rm -rf '" + dir + "'";
        ASSERT_EQ(system(cmd.c_str()), 0);
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

TEST_F(ThinCliPool, ChunkLargerThanExtent_Exit2NothingCreated)
{
    vd_pool *p = CreateOpen();
    ASSERT_NE(p, nullptr);
    std::string out, err;
    EXPECT_EQ(Exec(p, { "vol", "create", "pool0/t", "--size", "1GiB", "--thin",
                        "--chunk-size", "8MiB" }, &out, &err), VD_EXIT_USAGE);
    EXPECT_EQ(err, "vdlvm: vol create: --chunk-size 8MiB is larger than the "
                   "extent size of pool 'pool0' (4MiB); use a power of two "
                   "from 4KiB to 4MiB\n");
    EXPECT_EQ(vd_pool_vol_count(p), 0);
    vd_pool_close(p);
}

TEST_F(ThinCliPool, ThickVolume_ListAndStatusShowThickAllocated)
{
    vd_pool *p = CreateOpen();
    ASSERT_NE(p, nullptr);
    std::string out, err;
    ASSERT_EQ(Exec(p, { "vol", "create", "pool0/k", "--size", "8MiB" }), 0);
    ASSERT_EQ(Exec(p, { "vol", "list", "pool0" }, &out, &err), 0) << err;
    EXPECT_NE(out.find("PROVISIONING  ALLOCATED"), std::string::npos) << out;
    EXPECT_NE(out.find("thick         8MiB (100.0%)  -"), std::string::npos)
        << out;
    ASSERT_EQ(Exec(p, { "vol", "list", "pool0", "--json" }, &out, &err), 0);
    EXPECT_NE(out.find("\"thin\":false,\"chunk_size\":0,\"provisioned\":"
                       "8388608,\"allocated\":8388608"),
              std::string::npos) << out;
    ASSERT_EQ(Exec(p, { "status", "pool0/k" }, &out, &err), 0) << err;
    EXPECT_NE(out.find("  allocated 8MiB (100.0%)\n"), std::string::npos)
        << out;
    EXPECT_EQ(out.find("  thin "), std::string::npos) << out;
    vd_pool_close(p);
}

// Needs the thin layout (pool/): a 10 GiB thin volume on a 128 MiB pool.
TEST_F(ThinCliPool, ThinVolume_CreateListStatusShowProvisionedAndAllocated)
{
    vd_pool *p = CreateOpen();
    ASSERT_NE(p, nullptr);
    std::string out, err;
    int rc = Exec(p, { "vol", "create", "pool0/t", "--size", "10GiB", "--thin",
                       "--chunk-size", "128KiB" }, &out, &err);
    if (rc == VD_EXIT_FAIL &&
        err.find("not supported by this build") != std::string::npos) {
        vd_pool_close(p);
        GTEST_SKIP() << "no thin layout in this build: " << err;
    }
    ASSERT_EQ(rc, 0) << err;
    EXPECT_EQ(out.rfind("volume 'pool0/t': created, 10GiB thin (chunks of "
                        "128KiB allocated on first write), linear\n", 0),
              0u) << out;
    EXPECT_NE(out.find("note: pool 'pool0' is overcommitted: 10GiB "
                       "provisioned on "),
              std::string::npos) << out;

    // the pool's default chunk
    ASSERT_EQ(Exec(p, { "vol", "create", "pool0/t2", "--size", "1GiB",
                        "--thin" }, &out, &err), 0) << err;
    EXPECT_NE(out.find("chunks of 64KiB"), std::string::npos) << out;

    // one 4 KiB write allocates one chunk
    vd_vol *v = vd_vol_open(p, "t");
    ASSERT_NE(v, nullptr);
    std::vector<char> buf(4096, 'x');
    ASSERT_EQ(vd_vol_pwrite(v, buf.data(), buf.size(), 5ull << 30, 0), 0);
    vd_vol_close(v);

    ASSERT_EQ(Exec(p, { "vol", "list", "pool0" }, &out, &err), 0) << err;
    EXPECT_NE(out.find("thin          128KiB (0.0%)  128KiB"),
              std::string::npos) << out;
    ASSERT_EQ(Exec(p, { "status", "pool0/t" }, &out, &err), 0) << err;
    EXPECT_NE(out.find("  thin      chunks of 128KiB, allocated on first "
                       "write\n  allocated 128KiB (0.0%)\n"),
              std::string::npos) << out;
    ASSERT_EQ(Exec(p, { "status", "pool0/t", "--json" }, &out, &err), 0);
    EXPECT_NE(out.find("\"thin\":true,\"chunk_size\":131072,\"provisioned\":"
                       "10737418240,\"allocated\":131072"),
              std::string::npos) << out;

    ASSERT_EQ(Exec(p, { "status", "pool0" }, &out, &err), 0) << err;
    EXPECT_NE(out.find("  provisioned 11GiB (overcommit "), std::string::npos)
        << out;
    ASSERT_EQ(Exec(p, { "status", "pool0", "--json" }, &out, &err), 0);
    EXPECT_NE(out.find("\"provisioned\":11811160064,\"overcommit\":"),
              std::string::npos) << out;
    EXPECT_NE(out.find("\"thresholds_crossed\":[]"), std::string::npos) << out;
    vd_pool_close(p);
}

}  // namespace
