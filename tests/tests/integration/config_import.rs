//! `apogee config import` run as a process on a sample RocketMQ broker.conf: the
//! TOML it prints carries the mapped values, `apogee-broker --check-config` accepts
//! it, `-o json` lists mapped and ignored keys, and a bad value exits 1 naming the
//! key and line.

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
    let mut c = Command::new(bins::bin(bins::BROKER));
    c.env_remove("RUST_LOG");
    for (k, _) in std::env::vars() {
        if k.starts_with("APOGEE_BROKER_") {
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
        "data_dir = \"./imported-store\"",
        "auto_create_topics = true",
        "max_body_bytes = 2097152",
        "[store]",
        "flush = \"sync\"",
        "segment_bytes = 1048576",
        "retention_hours = 48",
    ] {
        assert!(toml.lines().any(|l| l == line), "{line:?} missing:\n{out}");
    }
    assert!(toml.contains("\"127.0.0.1:9876\"") && toml.contains("\"127.0.0.1:9877\""));
    for ignored in ["deleteWhen", "brokerIP1"] {
        assert!(out.stderr.contains(ignored), "{ignored} not listed:\n{out}");
    }
    assert!(out.stderr.contains("not at a set hour"), "{out}");

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
    assert_eq!(mapped.len(), 12, "{json}");
    assert_eq!(mapped[0], "brokerClusterName");
    assert!(mapped.contains(&"namesrvAddr"));
    let ignored = json["ignored"].as_array().unwrap();
    let keys: Vec<&str> = ignored.iter().map(|i| i["key"].as_str().unwrap()).collect();
    assert_eq!(keys, vec!["deleteWhen", "brokerIP1"]);
    assert!(mapped.contains(&"fileReservedTime"));
    assert_eq!(ignored[1]["reason"].as_str(), Some("no Apogee equivalent"));
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
