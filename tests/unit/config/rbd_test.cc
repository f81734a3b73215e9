// Unit tests for RBD devices in the pool definition (config/config.c):
// `rbd: {pool, image, conf, id}`, defaults (conf /etc/ceph/ceph.conf, id
// admin, timeout 30 s, node = the fsid of the conf file), and bad inputs
// refused with FILE:LINE:COL and nothing returned.
#include <gtest/gtest.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <string>

#include "config/vdconfig.h"

namespace
{

const char kFsid[] = "6f1c2a52-2b3e-4a8c-9d5e-0123456789ab";

class RbdConfTest : public ::testing::Test
{
  protected:
    void SetUp() override
    {
        char d[] = "/tmp/vdlvm-rbdconf.XXXXXX";
        ASSERT_NE(mkdtemp(d), nullptr);
        dir_ = d;
        conf_ = dir_ + "/ceph.conf";
        nofsid_ = dir_ + "/nofsid.conf";
        FILE *f = fopen(conf_.c_str(), "w");
        ASSERT_NE(f, nullptr);
        // fsid of [global] only; another section's fsid-like key is ignored
        fprintf(f,
                "[global]\n  mon host = 127.0.0.1:3300\n\tfsid = %s\n"
                "[client]\nfsid = not-this-one\n",
                kFsid);
        fclose(f);
        f = fopen(nofsid_.c_str(), "w");
        ASSERT_NE(f, nullptr);
        fprintf(f, "[global]\nmon host = 127.0.0.1\n[osd]\nfsid = %s\n", kFsid);
        fclose(f);
    }
    void TearDown() override
    {
        unlink(conf_.c_str());
        unlink(nofsid_.c_str());
        rmdir(dir_.c_str());
    }

    int Parse(const std::string &yaml, vd_conf_pool **out, std::string *err)
    {
        char buf[1024] = "";
        int rc = vd_conf_parse("t.yaml", yaml.data(), yaml.size(), out, buf,
                               sizeof(buf));
        *err = buf;
        return rc;
    }

    // A pool of one local file and one RBD device given by rbd_lines
    // (the lines after "  - name: r0\n", indented by 4).
    std::string Yaml(const std::string &rbd_lines)
    {
        return "pool: p\ndevices:\n  - name: d0\n    path: /tmp/vdlvm-rbdconf-d0.img\n"
               "    size: 64MiB\n  - name: r0\n" +
               rbd_lines;
    }

    ::testing::AssertionResult Fails(const std::string &yaml,
                                     const std::string &prefix,
                                     const std::string &what)
    {
        vd_conf_pool sentinel{};
        vd_conf_pool *conf = &sentinel;
        std::string e;
        int rc = Parse(yaml, &conf, &e);
        if (rc >= 0)
            return ::testing::AssertionFailure() << "accepted";
        if (conf != &sentinel)
            return ::testing::AssertionFailure() << "*out was changed on error";
        if (e.rfind(prefix, 0) != 0)
            return ::testing::AssertionFailure()
                   << "'" << e << "' does not start with '" << prefix << "'";
        if (e.find(what) == std::string::npos)
            return ::testing::AssertionFailure()
                   << "'" << e << "' does not contain '" << what << "'";
        return ::testing::AssertionSuccess();
    }

    std::string dir_, conf_, nofsid_;
};

TEST_F(RbdConfTest, FullMapping_AllFieldsSet)
{
    vd_conf_pool *conf = nullptr;
    std::string e;
    ASSERT_EQ(Parse(Yaml("    rbd: {pool: rbd, image: img1, conf: " + conf_ +
                         ", id: vdlvm}\n    timeout: 7s\n"),
                    &conf, &e),
              0)
        << e;
    ASSERT_EQ(conf->ndevs, 2u);
    const vd_conf_dev &d = conf->devs[1];
    EXPECT_EQ(d.path, nullptr);
    EXPECT_EQ(d.iscsi_url, nullptr);
    EXPECT_STREQ(d.rbd_pool, "rbd");
    EXPECT_STREQ(d.rbd_image, "img1");
    EXPECT_STREQ(d.rbd_conf, conf_.c_str());
    EXPECT_STREQ(d.rbd_id, "vdlvm");
    EXPECT_EQ(d.timeout_ms, 7000u);
    EXPECT_STREQ(d.node, kFsid); // the cluster, not this host
    EXPECT_STRNE(conf->devs[0].node, kFsid);
    // the local device has no rbd fields
    EXPECT_EQ(conf->devs[0].rbd_image, nullptr);
    vd_conf_free(conf);
}

TEST_F(RbdConfTest, BlockMapping_DefaultsIdTimeoutAndGivenNode)
{
    vd_conf_pool *conf = nullptr;
    std::string e;
    ASSERT_EQ(Parse(Yaml("    node: ceph-east\n    rbd:\n      pool: tank\n"
                         "      image: vol.a_1-x\n"),
                    &conf, &e),
              0)
        << e;
    const vd_conf_dev &d = conf->devs[1];
    EXPECT_STREQ(d.rbd_conf, "/etc/ceph/ceph.conf");
    EXPECT_STREQ(d.rbd_id, "admin");
    EXPECT_EQ(d.timeout_ms, 30000u);
    EXPECT_STREQ(d.node, "ceph-east");
    EXPECT_STREQ(d.rbd_image, "vol.a_1-x");
    vd_conf_free(conf);
}

TEST_F(RbdConfTest, TwoImagesOfOneCluster_ShareTheNode)
{
    vd_conf_pool *conf = nullptr;
    std::string e;
    std::string y =
        "pool: p\ndevices:\n  - name: r0\n    rbd: {pool: rbd, "
        "image: a, conf: " +
        conf_ +
        "}\n  - name: r1\n    rbd: {pool: rbd, image: b, conf: " + conf_ +
        "}\n";
    ASSERT_EQ(Parse(y, &conf, &e), 0) << e;
    EXPECT_STREQ(conf->devs[0].node, conf->devs[1].node);
    vd_conf_free(conf);
}

TEST_F(RbdConfTest, BadInputs_RefusedWithFileLine)
{
    const std::string c = ", conf: " + conf_;
    EXPECT_TRUE(Fails(Yaml("    rbd: rbd/img1\n"),
                      "t.yaml:7:10:", "rbd must be a mapping"));
    EXPECT_TRUE(Fails(Yaml("    rbd:\n"),
                      "t.yaml:7:5:", "rbd must be a mapping, not empty"));
    EXPECT_TRUE(Fails(Yaml("    rbd: {image: img1" + c + "}\n"),
                      "t.yaml:7:10:", "missing required key 'pool'"));
    EXPECT_TRUE(Fails(Yaml("    rbd: {pool: rbd" + c + "}\n"),
                      "t.yaml:7:10:", "missing required key 'image'"));
    EXPECT_TRUE(Fails(Yaml("    rbd: {pool: rbd, image: a/b" + c + "}\n"),
                      "t.yaml:7:", "is not an RBD name"));
    EXPECT_TRUE(Fails(Yaml("    rbd: {pool: rbd, image: 'a@snap'" + c + "}\n"),
                      "t.yaml:7:", "is not an RBD name"));
    EXPECT_TRUE(Fails(Yaml("    rbd: {pool: '', image: a" + c + "}\n"),
                      "t.yaml:7:", "is not an RBD name"));
    EXPECT_TRUE(Fails(Yaml("    rbd: {pool: rbd, image: a, conf: ceph.conf}\n"),
                      "t.yaml:7:", "is not an absolute path"));
    EXPECT_TRUE(Fails(
        Yaml("    rbd: {pool: rbd, image: a, id: client.admin" + c + "}\n"),
        "t.yaml:7:", "give id: admin"));
    EXPECT_TRUE(
        Fails(Yaml("    rbd: {pool: rbd, image: a, user: x" + c + "}\n"),
              "t.yaml:7:", "user"));
    EXPECT_TRUE(Fails(
        Yaml("    path: /tmp/x.img\n    rbd: {pool: rbd, image: a" + c + "}\n"),
        "t.yaml:8:5:", "has both path and rbd"));
    EXPECT_TRUE(
        Fails(Yaml("    rbd: {pool: rbd, image: a" + c + "}\n    size: 1GiB\n"),
              "t.yaml:8:5:", "size of an RBD image is read"));
    EXPECT_TRUE(Fails(Yaml("    rbd: {pool: rbd, image: a" + c +
                           "}\n    chap: {user: u, secret_file: /s}\n"),
                      "t.yaml:8:5:", "chap is only valid for an iscsi device"));
    EXPECT_TRUE(
        Fails(Yaml("    rbd: {pool: rbd, image: a" + c + "}\n    timeout: 0\n"),
              "t.yaml:8:", "timeout must be greater than 0"));
    // the node default needs an fsid in [global]
    EXPECT_TRUE(
        Fails(Yaml("    rbd: {pool: rbd, image: a, conf: " + nofsid_ + "}\n"),
              "t.yaml:7:10:", "no fsid found"));
    EXPECT_TRUE(Fails(Yaml("    rbd: {pool: rbd, image: a, conf: " + dir_ +
                           "/missing.conf}\n"),
                      "t.yaml:7:10:", "add node: NAME"));
}

TEST_F(RbdConfTest, SameImageTwice_Refused)
{
    std::string y =
        "pool: p\ndevices:\n  - name: r0\n    rbd: {pool: rbd, "
        "image: a, conf: " +
        conf_ +
        "}\n  - name: r1\n    rbd: {pool: rbd, image: a, conf: " + conf_ +
        "}\n";
    EXPECT_TRUE(Fails(y, "t.yaml:6:10:", "same device as device 'r0'"));
}

TEST_F(RbdConfTest, KeyringNeverInTheDefinition)
{
    // a keyring key is unknown: the keyring comes from conf and id only
    EXPECT_TRUE(Fails(
        Yaml("    rbd: {pool: rbd, image: a, keyring: /k, conf: " + conf_ +
             "}\n"),
        "t.yaml:7:", "keyring"));
}

} // namespace
