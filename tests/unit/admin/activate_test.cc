// Unit tests for admin/activate.c and admin/export.c: activation paths
// (what bs_vdlvm.so accepts), activate/deactivate, export/unexport files.
// The pool is a fake: the run callback answers `vol list POOL` with the
// volumes a test sets.
#include <gtest/gtest.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "admin/vdadmin.h"
// The host-command API is also declared in vdadmin.h; host_int.h repeats it
// (and is all the admin files need) until then.
extern "C" {
#include "admin/host_int.h"
}

namespace {

std::vector<std::string> g_vols; // the fake pool's volumes
int g_runs;

int fake_run(const char *pool, const char *conf_opt, int argc, char **argv,
             FILE *out)
{
    g_runs++;
    if (argc != 3 || strcmp(argv[0], "vol") || strcmp(argv[1], "list"))
        return VD_EXIT_USAGE;
    if (strcmp(pool, "p0"))
        return VD_EXIT_FAIL; // no such pool
    fprintf(out, "VOLUME  SIZE  LAYOUT  COPIES  EXPORTED\n");
    for (auto &v : g_vols)
        fprintf(out, "p0/%s  16MiB  linear  1  no\n", v.c_str());
    return VD_EXIT_OK;
}

std::string slurp(const std::string &path)
{
    std::ifstream f(path);
    std::stringstream s;
    s << f.rdbuf();
    return s.str();
}

bool exists(const std::string &p)
{
    struct stat st;
    return stat(p.c_str(), &st) == 0;
}

class Activate : public ::testing::Test {
  protected:
    char dir[64] = "/tmp/vdlvm-activate-test.XXXXXX";
    std::string run, conf;
    void SetUp() override
    {
        ASSERT_NE(mkdtemp(dir), nullptr);
        run = std::string(dir) + "/run";
        conf = std::string(dir) + "/conf.d";
        mkdir(conf.c_str(), 0755);
        // the definition is CONFDIR/p0.yaml: export writes no bsopts
        std::ofstream(std::string(dir) + "/p0.yaml") << "pool: p0\n";
        setenv("VDLVM_RUNDIR", run.c_str(), 1);
        setenv("VDLVM_CONFDIR", dir, 1);
        setenv("VDLVM_STATEDIR", (std::string(dir) + "/state").c_str(), 1);
        g_vols = { "v0", "v1" };
        g_runs = 0;
    }
    void TearDown() override
    {
        std::string cmd = std::string("rm -rf ") + dir;
        ASSERT_EQ(system(cmd.c_str()), 0);
    }
    // Runs a host command; its output and messages in out/err.
    int host(std::vector<std::string> args, const char *conf_opt = nullptr)
    {
        std::vector<char *> argv;
        for (auto &a : args)
            argv.push_back(&a[0]);
        char *o = nullptr, *e = nullptr;
        size_t ol = 0, el = 0;
        FILE *fo = open_memstream(&o, &ol), *fe = open_memstream(&e, &el);
        int r = vd_admin_host_cmd(conf_opt, (int)argv.size(), argv.data(),
                                  fake_run, fo, fe);
        fclose(fo);
        fclose(fe);
        out = o;
        err = e;
        free(o);
        free(e);
        return r;
    }
    std::string out, err;
};

TEST_F(Activate, ParsePath_OnlyActivatedFilesUnderRundir)
{
    char path[4096], name[160];
    ASSERT_EQ(vd_activation_path("p0", "v0", path, sizeof(path)), 0);
    EXPECT_EQ(std::string(path), run + "/vol/p0/v0");
    EXPECT_EQ(vd_activation_path("p0", "../x", path, sizeof(path)), -EINVAL);

    EXPECT_EQ(vd_activation_parse("p0/v0", name, sizeof(name)), 0);
    EXPECT_EQ(vd_activation_parse((run + "/vol/p0/v0").c_str(), name,
                                  sizeof(name)),
              -ENOENT); // not activated
    EXPECT_EQ(vd_activation_parse("/elsewhere/vol/p0/v0", name, sizeof(name)),
              -EINVAL);
    EXPECT_EQ(vd_activation_parse((run + "/vol/p0/../v0").c_str(), name,
                                  sizeof(name)),
              -EINVAL);
    EXPECT_EQ(vd_activation_parse((run + "/vol/p0/v0/x").c_str(), name,
                                  sizeof(name)),
              -EINVAL);

    ASSERT_EQ(host({ "activate", "p0" }), VD_EXIT_OK) << err;
    EXPECT_EQ(vd_activation_parse((run + "/vol/p0/v0").c_str(), name,
                                  sizeof(name)),
              1);
    EXPECT_STREQ(name, "p0/v0");
    EXPECT_EQ(vd_activation_parse((run + "/vol/p0").c_str(), name,
                                  sizeof(name)),
              -EINVAL); // a folder names no volume
}

TEST_F(Activate, ActivatePool_FollowsVolumesDeactivateRemovesAll)
{
    ASSERT_EQ(host({ "activate", "p0" }), VD_EXIT_OK) << err;
    EXPECT_TRUE(exists(run + "/vol/p0/v0"));
    EXPECT_TRUE(exists(run + "/vol/p0/v1"));
    g_vols = { "v1", "v2" }; // v0 removed, v2 created
    ASSERT_EQ(host({ "activate", "p0" }), VD_EXIT_OK) << err;
    EXPECT_FALSE(exists(run + "/vol/p0/v0"));
    EXPECT_TRUE(exists(run + "/vol/p0/v2"));
    // one volume only; an unknown one is an error
    EXPECT_EQ(host({ "activate", "p0/nope" }), VD_EXIT_FAIL);
    EXPECT_NE(err.find("not found"), std::string::npos) << err;
    EXPECT_EQ(host({ "activate", "q9" }), VD_EXIT_FAIL); // pool unknown
    EXPECT_EQ(host({ "deactivate", "p0/v1" }), VD_EXIT_OK) << err;
    EXPECT_FALSE(exists(run + "/vol/p0/v1"));
    EXPECT_TRUE(exists(run + "/vol/p0/v2"));
    int runs = g_runs;
    EXPECT_EQ(host({ "deactivate" }), VD_EXIT_OK) << err;
    EXPECT_EQ(g_runs, runs); // deactivate opens no pool
    EXPECT_FALSE(exists(run + "/vol"));
}

TEST_F(Activate, BadUsage_Exit2NoCommandMinus1)
{
    EXPECT_EQ(host({ "activate", "--bogus" }), VD_EXIT_USAGE);
    EXPECT_EQ(host({ "activate", "p0", "p1" }), VD_EXIT_USAGE);
    EXPECT_EQ(host({ "export", "p0/v0" }), VD_EXIT_USAGE); // no --target
    EXPECT_NE(err.find("--target"), std::string::npos) << err;
    EXPECT_EQ(host({ "export", "p0/v0", "--target", "x y" }), VD_EXIT_USAGE);
    EXPECT_EQ(host({ "export", "p0/v0", "--target", "iqn.2024-01.a:b",
                     "--lun", "0" }),
              VD_EXIT_USAGE);
    EXPECT_EQ(host({ "unexport" }), VD_EXIT_USAGE);
    EXPECT_EQ(host({ "status" }), -1); // not a host command
    EXPECT_EQ(host({ "export", "--help" }), VD_EXIT_OK);
    EXPECT_EQ(out.rfind("Usage: ", 0), 0u) << out;
}

TEST_F(Activate, Export_WritesOwnFileUnexportRemovesOnlyIt)
{
    std::string a = conf + "/vdlvm-p0-v0.conf", b = conf + "/b.conf";
    ASSERT_EQ(host({ "export", "p0/v0", "--target", "iqn.2024-01.org.x:t",
                     "--conf", a }),
              VD_EXIT_OK)
        << err;
    std::string text = slurp(a);
    EXPECT_EQ(text.rfind("# vdlvm export p0/v0: target iqn.2024-01.org.x:t "
                         "lun 1\n",
                         0),
              0u)
        << text;
    EXPECT_NE(text.find("<backing-store " + run + "/vol/p0/v0>"),
              std::string::npos)
        << text;
    EXPECT_NE(text.find("bs-type vdlvm"), std::string::npos);
    EXPECT_EQ(text.find("bsopts"), std::string::npos) << text;
    EXPECT_TRUE(exists(run + "/vol/p0/v0")); // activated
    EXPECT_NE(out.find("tgt-admin --update iqn.2024-01.org.x:t"),
              std::string::npos)
        << out;
    // same target: the next free LUN; a taken one is refused
    ASSERT_EQ(host({ "export", "p0/v1", "--target", "iqn.2024-01.org.x:t",
                     "--conf", b, "--initiator-address", "192.0.2.7" }),
              VD_EXIT_OK)
        << err;
    EXPECT_NE(slurp(b).find("lun 2\n"), std::string::npos) << slurp(b);
    EXPECT_NE(slurp(b).find("initiator-address 192.0.2.7"), std::string::npos);
    EXPECT_EQ(host({ "export", "p0/v1", "--target", "iqn.2024-01.org.x:t",
                     "--conf", b, "--lun", "1" }),
              VD_EXIT_FAIL);
    EXPECT_NE(err.find("already used"), std::string::npos) << err;
    // re-export rewrites its own file; a foreign file is left alone
    EXPECT_EQ(host({ "export", "p0/v0", "--target", "iqn.2024-01.org.x:u",
                     "--conf", a }),
              VD_EXIT_OK)
        << err;
    EXPECT_EQ(host({ "export", "p0/v0", "--target", "iqn.2024-01.org.x:u",
                     "--conf", b }),
              VD_EXIT_FAIL); // b is p0/v1's
    EXPECT_EQ(host({ "unexport", "p0/v0", "--conf", b }), VD_EXIT_FAIL);
    EXPECT_TRUE(exists(b));
    EXPECT_EQ(host({ "unexport", "p0/v1", "--conf", b }), VD_EXIT_OK) << err;
    EXPECT_FALSE(exists(b));
    EXPECT_EQ(host({ "unexport", "p0/v1", "--conf", b }), VD_EXIT_FAIL);
    // a volume the pool does not have: nothing written
    EXPECT_EQ(host({ "export", "p0/nope", "--target", "iqn.2024-01.org.x:t",
                     "--conf", conf + "/c.conf" }),
              VD_EXIT_FAIL);
    EXPECT_FALSE(exists(conf + "/c.conf"));
}

} // namespace
