//! Unit tests of `apogee config import` (tools/src/config_import.rs): the properties reader,
//! each key mapping, the security section and the steps printed with it.

use super::*;

const SAMPLE: &str = "\
# RocketMQ broker config
! another comment style
brokerClusterName = ProdCluster
brokerName=broker-x
brokerId : 0
brokerRole=SYNC_MASTER
flushDiskType = SYNC_FLUSH
listenPort=30911
namesrvAddr=ns1:9876; ns2:9876
storePathRootDir=/data/rocketmq/store
mappedFileSizeCommitLog=1048576
maxMessageSize=1048576
autoCreateTopicEnable=true
deleteWhen=04
fileReservedTime=48
diskMaxUsedSpaceRatio=88
sendMessageThreadPoolNums=16
";

fn toml_of(text: &str) -> toml::Table {
    let imported = import(text, "broker.conf").unwrap();
    toml::from_str(&imported.toml).unwrap()
}

fn err_of(text: &str) -> ImportError {
    import(text, "broker.conf").unwrap_err()
}

#[test]
fn properties_separators_comments_and_whitespace() {
    let props =
        parse_properties("# c\n  ! c2\n\na=1\n b : 2 \nc 3\nd=x=y\ne:\nf = a:b\n\tg\t=\tv\n");
    let kv: Vec<(usize, &str, &str)> = props
        .iter()
        .map(|p| (p.line, p.key.as_str(), p.value.as_str()))
        .collect();
    assert_eq!(
        kv,
        vec![
            (4, "a", "1"),
            (5, "b", "2 "),
            (6, "c", "3"),
            (7, "d", "x=y"),
            (8, "e", ""),
            (9, "f", "a:b"),
            (10, "g", "v"),
        ]
    );
}

#[test]
fn properties_continuations_and_escapes() {
    let props = parse_properties("a=one\\\n    two\nb\\:c=d\\te\\u0041\nc=x\\\\\n");
    let kv: Vec<(&str, &str)> = props
        .iter()
        .map(|p| (p.key.as_str(), p.value.as_str()))
        .collect();
    assert_eq!(kv, vec![("a", "onetwo"), ("b:c", "d\teA"), ("c", "x\\")]);
    assert_eq!(props[1].line, 3);
}

#[test]
fn every_mapped_key_lands_in_its_apogee_key() {
    let t = toml_of(SAMPLE);
    assert_eq!(t["cluster_name"].as_str(), Some("ProdCluster"));
    assert_eq!(t["broker_name"].as_str(), Some("broker-x"));
    assert_eq!(t["broker_id"].as_integer(), Some(0));
    assert_eq!(t["role"].as_str(), Some("sync_master"));
    assert_eq!(t["listen"].as_str(), Some("0.0.0.0:30911"));
    assert_eq!(t["security"]["allow_anonymous"].as_bool(), Some(true));
    let ns: Vec<&str> = t["nameservers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(ns, vec!["ns1:9876", "ns2:9876"]);
    assert_eq!(t["data_dir"].as_str(), Some("/data/rocketmq/store-apogee"));
    assert_eq!(t["max_body_bytes"].as_integer(), Some(1048576));
    assert_eq!(t["auto_create_topics"].as_bool(), Some(true));
    let store = t["store"].as_table().unwrap();
    assert_eq!(store["flush"].as_str(), Some("sync"));
    assert_eq!(store["segment_bytes"].as_integer(), Some(1048576));
    assert_eq!(store["retention_hours"].as_integer(), Some(48));
    assert_eq!(store["disk_clean_ratio"].as_float(), Some(0.88));
    assert_eq!(store.len(), 4, "only mapped keys: {store:?}");
    // The mapped keys, and the security section listenPort brings.
    assert_eq!(t.len(), 11, "only mapped keys: {t:?}");
}

#[test]
fn header_names_the_source_and_mapped_keys() {
    let imported = import(SAMPLE, "broker.conf").unwrap();
    let header: Vec<&str> = imported
        .toml
        .lines()
        .take_while(|l| l.starts_with('#'))
        .collect();
    assert!(header[0].contains("apogee config import") && header[0].contains("broker.conf"));
    assert!(header[1].contains("brokerClusterName") && header[1].contains("autoCreateTopicEnable"));
    assert_eq!(imported.mapped.len(), 13);
    assert_eq!(imported.mapped[0], "brokerClusterName");
}

#[test]
fn other_roles_and_flush_types() {
    let t = toml_of("brokerRole=ASYNC_MASTER\nflushDiskType=ASYNC_FLUSH\n");
    assert_eq!(t["role"].as_str(), Some("async_master"));
    assert_eq!(t["store"]["flush"].as_str(), Some("async"));
    let t = toml_of("brokerRole=SLAVE\nbrokerId=2\nautoCreateTopicEnable=false\n");
    assert_eq!(t["role"].as_str(), Some("slave"));
    assert_eq!(t["broker_id"].as_integer(), Some(2));
    assert_eq!(t["auto_create_topics"].as_bool(), Some(false));
}

#[test]
fn unknown_keys_are_ignored_with_reasons_and_retention_keys_mapped() {
    let imported = import(SAMPLE, "broker.conf").unwrap();
    let reasons: Vec<(&str, &str)> = imported
        .ignored
        .iter()
        .map(|i| (i.key.as_str(), i.reason.as_str()))
        .collect();
    assert_eq!(
        reasons,
        vec![
            ("deleteWhen", NO_DELETE_HOUR),
            ("sendMessageThreadPoolNums", NO_EQUIVALENT),
        ]
    );
    let t: toml::Table = toml::from_str(&imported.toml).unwrap();
    assert_eq!(t["store"]["retention_hours"].as_integer(), Some(48));
    assert_eq!(t["store"]["disk_clean_ratio"].as_float(), Some(0.88));
    assert!(!imported.toml.contains("sendMessageThreadPoolNums = "));
    assert!(t.get("sendMessageThreadPoolNums").is_none());
}

#[test]
fn empty_input_gives_an_all_default_config() {
    let imported = import("# nothing\n", "b.conf").unwrap();
    assert!(imported.mapped.is_empty() && imported.ignored.is_empty());
    assert!(toml_of("").is_empty());
}

#[test]
fn repeated_keys_take_the_last_value() {
    let imported = import("brokerName=a\nbrokerName=b\nx=1\nx=2\n", "b.conf").unwrap();
    assert_eq!(imported.mapped, vec!["brokerName"]);
    assert_eq!(imported.ignored.len(), 1);
    assert_eq!(
        toml_of("brokerName=a\nbrokerName=b\n")["broker_name"].as_str(),
        Some("b")
    );
}

#[test]
fn invalid_values_name_the_key_and_line() {
    let e = err_of("brokerName=a\nbrokerRole=FOO\n");
    assert_eq!(
        (e.line, e.key.as_str(), e.value.as_str()),
        (2, "brokerRole", "FOO")
    );
    assert!(
        e.to_string().starts_with("line 2: brokerRole = \"FOO\""),
        "{e}"
    );
    let cases = [
        ("listenPort=abc", "listenPort"),
        ("listenPort=0", "listenPort"),
        ("listenPort=70000", "listenPort"),
        ("brokerId=-1", "brokerId"),
        ("brokerId=x", "brokerId"),
        ("flushDiskType=SOMETIMES", "flushDiskType"),
        ("autoCreateTopicEnable=yes", "autoCreateTopicEnable"),
        ("mappedFileSizeCommitLog=1024", "mappedFileSizeCommitLog"),
        ("maxMessageSize=0", "maxMessageSize"),
        ("maxMessageSize=big", "maxMessageSize"),
        ("namesrvAddr=;", "namesrvAddr"),
        ("namesrvAddr=ns1", "namesrvAddr"),
        ("namesrvAddr=ns1:9876;ns2:port", "namesrvAddr"),
        ("brokerName=", "brokerName"),
    ];
    for (text, key) in cases {
        let e = err_of(text);
        assert_eq!((e.line, e.key.as_str()), (1, key), "{text}: {e}");
    }
}

#[test]
fn acls_on_turn_authentication_on_never_anonymous() {
    for key in ["aclEnable", "authenticationEnabled", "authorizationEnabled"] {
        let text = format!("listenPort=10911\n{key}=true\n");
        let imported = import(&text, "broker.conf").unwrap();
        let t: toml::Table = toml::from_str(&imported.toml).unwrap();
        let sec = t["security"].as_table().unwrap();
        assert_eq!(sec["authentication"].as_bool(), Some(true), "{key}");
        assert!(sec.get("allow_anonymous").is_none(), "{key}: {sec:?}");
        assert_eq!(
            sec["cluster_secret_file"].as_str(),
            Some("/etc/apogee/cluster.secret")
        );
        assert_eq!(sec["admin_access_key"].as_str(), Some(DEFAULT_ADMIN));
        assert_eq!(
            sec["admin_secret_file"].as_str(),
            Some("/etc/apogee/admin.secret")
        );
        assert!(imported.mapped.contains(&key.to_string()));
        // The files to make and what to do about the users, in the header too.
        let cmds: Vec<&String> = imported
            .steps
            .iter()
            .filter(|s| !s.starts_with('#'))
            .collect();
        assert_eq!(
            cmds,
            vec![
                "head -c 32 /dev/urandom | base64 > /etc/apogee/cluster.secret",
                "head -c 24 /dev/urandom | base64 > /etc/apogee/admin.secret",
            ]
        );
        let notes = imported.steps.join("\n");
        assert!(
            notes.contains("no plain_acl.yml was found beside broker.conf"),
            "{notes}"
        );
        assert!(notes.contains("apogee user create <accessKey>"), "{notes}");
        assert!(imported
            .toml
            .contains(&format!("# {key}: authentication is on")));
        assert!(imported
            .toml
            .contains("#   head -c 32 /dev/urandom | base64 > /etc/apogee/cluster.secret"));
    }
    // Switched off (the last value wins): as before, anyone on the listen address.
    let t = toml_of("aclEnable=true\nlistenPort=10911\naclEnable=false\n");
    assert_eq!(t["security"]["allow_anonymous"].as_bool(), Some(true));
    assert!(import("aclEnable=false\n", "b").unwrap().steps.is_empty());
    assert_eq!(err_of("aclEnable=yes\n").key, "aclEnable");
}

#[test]
fn plain_acl_accounts_become_users_and_entries() {
    let opts = ImportOptions {
        acl_file: Some((
            "accounts:\n  - accessKey: app\n    secretKey: s1\n    defaultTopicPerm: PUB\n\
             \x20 - accessKey: ops\n    secretKey: s2\n    admin: true\n    \
             whiteRemoteAddress: 10.0.0.*\n"
                .into(),
            "conf/plain_acl.yml".into(),
        )),
        secrets_dir: "/srv/apogee secrets".into(),
    };
    let imported = import_with("aclEnable=true\n", "broker.conf", &opts).unwrap();
    let t: toml::Table = toml::from_str(&imported.toml).unwrap();
    assert_eq!(t["security"]["admin_access_key"].as_str(), Some("ops"));
    assert_eq!(
        t["security"]["cluster_secret_file"].as_str(),
        Some("/srv/apogee secrets/cluster.secret")
    );
    let steps = &imported.steps;
    assert!(
        steps.contains(
            &"head -c 32 /dev/urandom | base64 > '/srv/apogee secrets/cluster.secret'".to_string()
        ),
        "{steps:?}"
    );
    assert!(
        steps
            .iter()
            .any(|s| s.contains("admin ops: put its secretKey")),
        "{steps:?}"
    );
    assert!(steps.contains(&"apogee user create app --secret-file app.secret".to_string()));
    assert!(steps.contains(&"apogee acl grant --user app --topic '*' --actions pub".to_string()));
    assert!(steps.contains(&"# ops: the bootstrap admin of the config".to_string()));
    assert!(steps.last().unwrap().contains("a firewall"), "{steps:?}");
    // A file that cannot be read is named, and the manual steps given.
    let opts = ImportOptions {
        acl_file: Some(("accounts: [x]\n".into(), "plain_acl.yml".into())),
        ..ImportOptions::default()
    };
    let imported = import_with("aclEnable=true\n", "broker.conf", &opts).unwrap();
    let notes = imported.steps.join("\n");
    assert!(
        notes.contains("plain_acl.yml could not be read (line 1"),
        "{notes}"
    );
    assert!(
        notes.contains("apogee acl grant --user <accessKey>"),
        "{notes}"
    );
}

#[test]
fn broker_ip1_is_advertised_with_the_listen_port() {
    let t = toml_of("brokerIP1=10.0.0.7\nlistenPort=30911\n");
    assert_eq!(t["advertise"].as_str(), Some("10.0.0.7:30911"));
    assert_eq!(t["listen"].as_str(), Some("0.0.0.0:30911"));
    // RocketMQ's default port, listening on every address as RocketMQ does.
    let t = toml_of("brokerIP1=10.0.0.7\n");
    assert_eq!(t["advertise"].as_str(), Some("10.0.0.7:10911"));
    assert_eq!(t["listen"].as_str(), Some("0.0.0.0:10911"));
    assert_eq!(t["security"]["allow_anonymous"].as_bool(), Some(true));
    let t = toml_of("brokerIP1=fd00::7\n");
    assert_eq!(t["advertise"].as_str(), Some("[fd00::7]:10911"));
    assert_eq!(t["listen"].as_str(), Some("[::]:10911"));
    for bad in ["brokerIP1=broker-a.example", "brokerIP1=10.0.0.7:10911"] {
        assert_eq!(err_of(bad).key, "brokerIP1", "{bad}");
    }
}

#[test]
fn group_auto_creation_and_the_old_segment_size_spelling() {
    let t = toml_of("autoCreateSubscriptionGroup=false\n");
    assert_eq!(t["consume"]["auto_create_groups"].as_bool(), Some(false));
    let t = toml_of("autoCreateSubscriptionGroup=TRUE\n");
    assert_eq!(t["consume"]["auto_create_groups"].as_bool(), Some(true));
    assert_eq!(
        err_of("autoCreateSubscriptionGroup=1\n").key,
        "autoCreateSubscriptionGroup"
    );
    let imported = import("mapedFileSizeCommitLog=2097152\n", "b").unwrap();
    assert_eq!(imported.mapped, vec!["mapedFileSizeCommitLog"]);
    let t: toml::Table = toml::from_str(&imported.toml).unwrap();
    assert_eq!(t["store"]["segment_bytes"].as_integer(), Some(2097152));
    assert_eq!(
        err_of("mapedFileSizeCommitLog=10\n").key,
        "mapedFileSizeCommitLog"
    );
}

#[test]
fn nameserver_lists_take_semicolons_and_commas() {
    let t = toml_of("namesrvAddr=ns1:9876,ns2:9876;ns3:9876\n");
    let ns: Vec<&str> = t["nameservers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(ns, vec!["ns1:9876", "ns2:9876", "ns3:9876"]);
    let e = err_of("namesrvAddr=ns1:9876;ns2:70000\n");
    assert!(e.message.contains("\"ns2:70000\""), "{e}");
}

#[test]
fn role_and_broker_id_must_agree() {
    let e = err_of("brokerRole=SLAVE\n");
    assert_eq!((e.line, e.key.as_str()), (1, "brokerRole"));
    let e = err_of("brokerRole=SYNC_MASTER\nbrokerId=3\n");
    assert_eq!((e.line, e.key.as_str()), (2, "brokerId"));
    let e = err_of("brokerId=1\n");
    assert_eq!((e.line, e.key.as_str()), (1, "brokerId"));
    assert!(e.message.contains("slave brokerId > 0"), "{e}");
}

#[test]
fn table_summary_lists_ignored_keys() {
    let imported = import(SAMPLE, "broker.conf").unwrap();
    let s = summary(&imported, Some(&PathBuf::from("out.toml")));
    assert!(s.starts_with("IGNORED KEY"), "{s}");
    assert!(
        s.contains("sendMessageThreadPoolNums  no Apogee equivalent\n"),
        "{s}"
    );
    assert!(
        s.ends_with("wrote out.toml: 13 keys mapped, 2 ignored\n"),
        "{s}"
    );
}

#[test]
fn rocketmq_store_becomes_a_fresh_data_dir_and_the_step_that_moves_its_state() {
    let imported = import(SAMPLE, "broker.conf").unwrap();
    assert!(
        imported
            .steps
            .contains(&"apogee config import-state /data/rocketmq/store/config".to_string()),
        "{:#?}",
        imported.steps
    );
    assert!(
        imported
            .steps
            .iter()
            .any(|s| s.contains("/data/rocketmq/store-apogee") && s.contains("does not open")),
        "{:#?}",
        imported.steps
    );
    // In the TOML's header too.
    assert!(imported
        .toml
        .contains("#   apogee config import-state /data/rocketmq/store/config"));
    // Without storePathRootDir: no data step.
    let plain = import("brokerName=b\n", "broker.conf").unwrap();
    assert!(plain.steps.is_empty(), "{:#?}", plain.steps);
}

#[test]
fn a_cleaning_point_above_the_refusal_point_raises_the_refusal_point() {
    let t = toml_of("diskMaxUsedSpaceRatio=95\n");
    assert_eq!(t["store"]["disk_clean_ratio"].as_float(), Some(0.95));
    assert_eq!(t["store"]["disk_refuse_ratio"].as_float(), Some(0.95));
    let t = toml_of("diskMaxUsedSpaceRatio=80\n");
    assert!(t["store"].get("disk_refuse_ratio").is_none());
}

#[test]
fn the_nameservers_config_goes_with_the_broker() {
    let imported = import(SAMPLE, "broker.conf").unwrap();
    let ns: toml::Table = toml::from_str(&imported.nameserver_toml).unwrap();
    // The broker listens everywhere: so do the NameServers, at namesrvAddr's port, and
    // they take anyone as the broker does.
    assert_eq!(ns["listen"].as_str(), Some("0.0.0.0:9876"));
    assert_eq!(ns["security"]["allow_anonymous"].as_bool(), Some(true));
    assert!(imported
        .nameserver_toml
        .starts_with("# The NameServers' config"));
    let quiet = import("brokerName=b\n", "broker.conf").unwrap();
    assert!(quiet
        .nameserver_toml
        .contains("Nothing differs from the defaults"));
}
