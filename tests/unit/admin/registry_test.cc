// Unit tests for admin/registry.c: pool definitions remembered outside
// CONFDIR.
// Shared fixtures: tests/unit/admin_fixture.h.
#include "tests/unit/admin_fixture.h"

using namespace vdtest_admin;

namespace {

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

}  // namespace
