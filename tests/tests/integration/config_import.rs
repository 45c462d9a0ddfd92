//! `apogee config import` run as a process on a sample RocketMQ broker.conf: the
//! TOML it prints carries the mapped values, `apogee-broker --check-config` accepts
//! it, `-o json` lists mapped and ignored keys, and a bad value exits 1 naming the
//! key and line. A broker.conf with ACLs on gives a config with authentication on (never
//! `allow_anonymous`), the steps to make its secret files and recreate plain_acl.yml's
//! accounts, and `--check-config` accepts it once those files exist, as a NameServer accepts
//! the NameServers' config written beside it. RocketMQ's store directory is not taken as the
//! data directory: a fresh one beside it, and the step that moves the store's state.

use apogee_tests::bins;
use apogee_tests::cli::run;
use std::path::Path;
use std::process::Command;

const BROKER_CONF: &str = "\
# A RocketMQ 4.x/5.x broker.conf
brokerClusterName = ImportedCluster
brokerName=broker-imported
brokerId=0
brokerRole=SYNC_MASTER
flushDiskType=SYNC_FLUSH
listenPort:30911
namesrvAddr=127.0.0.1:9876;127.0.0.1:9877
storePathRootDir=./imported-store
mappedFileSizeCommitLog=1048576
maxMessageSize=2097152
autoCreateTopicEnable=true
autoCreateSubscriptionGroup=false
deleteWhen=04
fileReservedTime=48
brokerIP1=10.0.0.1
";

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

/// `apogee-broker --check-config --config <file>`, free of environment overrides.
fn check_config(file: &str) -> std::process::Output {
    check_config_of(bins::BROKER, file)
}

/// `<server> --check-config --config <file>`, free of environment overrides.
fn check_config_of(server: &str, file: &str) -> std::process::Output {
    let mut c = Command::new(bins::bin(server));
    c.env_remove("RUST_LOG");
    for (k, _) in std::env::vars() {
        if k.starts_with("APOGEE_") {
            c.env_remove(k);
        }
    }
    c.args(["--check-config", "--config", file])
        .output()
        .unwrap()
}

#[test]
fn imported_broker_conf_passes_check_config() {
    let dir = tempfile::tempdir().unwrap();
    let conf = write(dir.path(), "broker.conf", BROKER_CONF);
    let out = run(&["config", "import", &conf]).success();
    let toml = &out.stdout;
    assert!(toml.starts_with("# Imported by `apogee config import` from broker.conf"));
    for line in [
        "cluster_name = \"ImportedCluster\"",
        "broker_name = \"broker-imported\"",
        "broker_id = 0",
        "role = \"sync_master\"",
        "listen = \"0.0.0.0:30911\"",
        "advertise = \"10.0.0.1:30911\"",
        // RocketMQ's store is not opened: a fresh directory beside it.
        "data_dir = \"./imported-store-apogee\"",
        "auto_create_topics = true",
        "max_body_bytes = 2097152",
        "[store]",
        "flush = \"sync\"",
        "segment_bytes = 1048576",
        "retention_hours = 48",
        "[consume]",
        "auto_create_groups = false",
        "allow_anonymous = true",
    ] {
        assert!(toml.lines().any(|l| l == line), "{line:?} missing:\n{out}");
    }
    assert!(toml.contains("\"127.0.0.1:9876\"") && toml.contains("\"127.0.0.1:9877\""));
    assert!(
        out.stderr.contains("deleteWhen"),
        "deleteWhen not listed:\n{out}"
    );
    assert!(out.stderr.contains("not at a set hour"), "{out}");
    // How the store's state moves.
    assert!(
        out.stderr
            .contains("apogee config import-state ./imported-store/config")
            && toml.contains("#   apogee config import-state ./imported-store/config"),
        "{out}"
    );

    let file = write(dir.path(), "broker.toml", toml);
    let checked = check_config(&file);
    let stdout = String::from_utf8_lossy(&checked.stdout);
    assert!(
        checked.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&checked.stderr)
    );
    assert!(stdout.contains("config OK"), "{stdout}");
    assert!(stdout.contains("role = \"sync_master\""), "{stdout}");
    assert!(stdout.contains("segment_bytes = 1048576"), "{stdout}");
    assert!(
        stdout.contains("advertise = \"10.0.0.1:30911\""),
        "{stdout}"
    );
    assert!(stdout.contains("auto_create_groups = false"), "{stdout}");
    // Keys the import left out keep their defaults.
    assert!(stdout.contains("default_queue_count = 8"), "{stdout}");
}

#[test]
fn json_form_and_out_file() {
    let dir = tempfile::tempdir().unwrap();
    let conf = write(dir.path(), "broker.conf", BROKER_CONF);
    let dest = dir.path().join("imported.toml");
    let out = run(&[
        "-o",
        "json",
        "config",
        "import",
        &conf,
        "--out",
        dest.to_str().unwrap(),
    ])
    .success();
    let json = out.json();
    let written = std::fs::read_to_string(&dest).unwrap();
    assert_eq!(json["toml"].as_str(), Some(written.as_str()));
    let mapped: Vec<&str> = json["mapped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(mapped.len(), 14, "{json}");
    assert_eq!(mapped[0], "brokerClusterName");
    assert!(mapped.contains(&"namesrvAddr"));
    let ignored = json["ignored"].as_array().unwrap();
    let keys: Vec<&str> = ignored.iter().map(|i| i["key"].as_str().unwrap()).collect();
    assert_eq!(keys, vec!["deleteWhen"]);
    for key in [
        "fileReservedTime",
        "brokerIP1",
        "autoCreateSubscriptionGroup",
    ] {
        assert!(mapped.contains(&key), "{key}: {json}");
    }
    // RocketMQ's store is not Apogee's data dir: the steps name a fresh one and how the
    // store's state moves (`config import-state`).
    let steps: Vec<&str> = json["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        steps[0].contains("data_dir is the fresh directory ./imported-store-apogee"),
        "{json}"
    );
    assert!(
        steps.contains(&"apogee config import-state ./imported-store/config"),
        "{json}"
    );
    assert!(
        written.contains("data_dir = \"./imported-store-apogee\""),
        "{written}"
    );
    assert!(
        json["nameserver_toml"]
            .as_str()
            .is_some_and(|t| t.contains("[security]")),
        "{json}"
    );
    assert!(check_config(dest.to_str().unwrap()).status.success());
}

#[test]
fn invalid_value_exits_1_naming_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let conf = write(
        dir.path(),
        "broker.conf",
        "brokerName=b\n# comment\nbrokerRole=FOO\n",
    );
    let out = run(&["config", "import", &conf]);
    assert_eq!(out.code, 1, "{out}");
    assert!(out.stdout.is_empty(), "{out}");
    assert!(out.stderr.contains("line 3: brokerRole = \"FOO\""), "{out}");
    let conf = write(dir.path(), "port.conf", "listenPort=abc\n");
    let out = run(&["config", "import", &conf]);
    assert_eq!(out.code, 1, "{out}");
    assert!(out.stderr.contains("line 1: listenPort"), "{out}");
    let out = run(&[
        "config",
        "import",
        &dir.path().join("missing.conf").to_string_lossy(),
    ]);
    assert_eq!(out.code, 1, "{out}");
    assert!(out.stderr.contains("cannot read"), "{out}");
}

/// RocketMQ 4's plain_acl.yml as shipped, in substance: a user and an admin.
const PLAIN_ACL: &str = "\
globalWhiteRemoteAddresses:
  - 10.10.103.*
accounts:
  - accessKey: RocketMQ
    secretKey: 12345678
    admin: false
    defaultTopicPerm: DENY
    defaultGroupPerm: SUB
    topicPerms:
      - topicA=DENY
      - topicB=PUB|SUB
  - accessKey: rocketmq2
    secretKey: 87654321
    admin: true
";

#[test]
fn acls_on_give_authentication_and_the_steps_to_set_it_up() {
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("secrets");
    std::fs::create_dir(&secrets).unwrap();
    let conf = write(
        dir.path(),
        "broker.conf",
        "brokerName=broker-acl\nlistenPort=30911\naclEnable=true\nmapedFileSizeCommitLog=2097152\n",
    );
    // plain_acl.yml beside broker.conf is read without being named.
    write(dir.path(), "plain_acl.yml", PLAIN_ACL);
    let dest = dir.path().join("broker.toml");
    let ns_dest = dir.path().join("nameserver.toml");
    let out = run(&[
        "-o",
        "json",
        "config",
        "import",
        &conf,
        "--secrets-dir",
        secrets.to_str().unwrap(),
        "--out",
        dest.to_str().unwrap(),
        "--nameserver-out",
        ns_dest.to_str().unwrap(),
    ])
    .success();
    let json = out.json();
    let toml = std::fs::read_to_string(&dest).unwrap();
    assert!(!toml.contains("allow_anonymous"), "{toml}");
    let cluster_secret = secrets.join("cluster.secret").display().to_string();
    let admin_secret = secrets.join("admin.secret").display().to_string();
    for line in [
        "[security]".to_string(),
        "authentication = true".into(),
        format!("cluster_secret_file = \"{cluster_secret}\""),
        "admin_access_key = \"rocketmq2\"".into(),
        format!("admin_secret_file = \"{admin_secret}\""),
        "segment_bytes = 2097152".into(),
    ] {
        assert!(toml.lines().any(|l| l == line), "{line:?} missing:\n{toml}");
    }
    let steps: Vec<&str> = json["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    for step in [
        "apogee user create RocketMQ --secret-file RocketMQ.secret",
        "apogee acl grant --user RocketMQ --topic topicA --actions pub,sub --deny",
        "apogee acl grant --user RocketMQ --topic topicB --actions pub,sub",
        "apogee acl grant --user RocketMQ --group '*' --actions sub",
    ] {
        assert!(steps.contains(&step), "{step:?} missing: {steps:#?}");
    }
    assert!(
        steps
            .iter()
            .any(|s| s.contains("rocketmq2: put its secretKey")),
        "{steps:#?}"
    );
    // Without the secret files the config is refused; made as the steps say, it passes.
    assert!(!check_config(dest.to_str().unwrap()).status.success());
    let cluster_step = steps
        .iter()
        .find(|s| s.starts_with("head -c 32"))
        .expect("the cluster secret step");
    let made = Command::new("sh")
        .args(["-c", cluster_step])
        .status()
        .unwrap();
    assert!(made.success(), "{cluster_step}");
    std::fs::write(&admin_secret, "87654321-the-admin-secret\n").unwrap();
    let checked = check_config(dest.to_str().unwrap());
    let stdout = String::from_utf8_lossy(&checked.stdout);
    assert!(
        checked.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&checked.stderr)
    );
    assert!(stdout.contains("authentication = true"), "{stdout}");
    // The NameServers' config the steps name carries the same [security] section, and a
    // NameServer accepts it.
    let ns_toml = std::fs::read_to_string(&ns_dest).unwrap();
    assert_eq!(json["nameserver_toml"].as_str(), Some(ns_toml.as_str()));
    assert!(
        ns_toml.lines().any(|l| l == "authentication = true")
            && ns_toml.contains(&format!("cluster_secret_file = \"{cluster_secret}\""))
            && ns_toml.contains("admin_access_key = \"rocketmq2\""),
        "{ns_toml}"
    );
    let checked = check_config_of(bins::NAMESERVER, ns_dest.to_str().unwrap());
    assert!(
        checked.status.success(),
        "{}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
    assert!(
        steps.iter().any(|s| s.contains("--nameserver-out")),
        "{steps:#?}"
    );

    // The table form prints the steps on stderr, and the TOML's header carries them.
    let out = run(&[
        "config",
        "import",
        &conf,
        "--secrets-dir",
        secrets.to_str().unwrap(),
    ])
    .success();
    assert!(out.stderr.contains("authentication is on"), "{out}");
    assert!(
        out.stderr
            .contains("apogee user create RocketMQ --secret-file RocketMQ.secret"),
        "{out}"
    );
    assert!(
        out.stdout.contains("# aclEnable: authentication is on"),
        "{out}"
    );
}
