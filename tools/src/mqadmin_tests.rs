//! mqadmin command lines rewritten into Apogee's, and parsed by the CLI.

use super::*;
use crate::cli::{Cli, Command, TopicCommand};
use clap::Parser;

fn commands() -> Vec<String> {
    <Cli as clap::CommandFactory>::command()
        .get_subcommands()
        .map(|c| c.get_name().to_string())
        .collect()
}

fn rewrite(args: &[&str]) -> Result<Vec<String>, String> {
    let args = std::iter::once("apogee")
        .chain(args.iter().copied())
        .map(OsString::from)
        .collect();
    Ok(expand(args, &commands())?
        .into_iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect())
}

/// The mqadmin command line rewritten and parsed.
fn parse(args: &[&str]) -> Cli {
    let args = rewrite(args).unwrap();
    Cli::try_parse_from(&args).unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

#[test]
fn update_topic_takes_mqadmins_letters() {
    let cli = parse(&[
        "updateTopic",
        "-n",
        "ns:9876",
        "-t",
        "orders",
        "-c",
        "DefaultCluster",
        "-r",
        "8",
        "-w",
        "8",
        "-p",
        "6",
        "-o",
        "true",
    ]);
    assert_eq!(cli.nameserver, "ns:9876");
    assert_eq!(cli.mqadmin_cluster.as_deref(), Some("DefaultCluster"));
    let Command::Topic(TopicCommand::Create {
        name,
        queues,
        types,
        update_if_exists,
        brokers,
        ..
    }) = cli.command
    else {
        panic!("not topic create: {:?}", cli.command)
    };
    assert_eq!(name, "orders");
    assert_eq!(queues, 8);
    assert_eq!(types, [TopicType::Fifo]);
    assert!(update_if_exists);
    assert!(brokers.is_empty());

    let cli = parse(&[
        "updateTopic",
        "-b",
        "10.0.0.1:10911",
        "-t",
        "t2",
        "-a",
        "+message.type=DELAY",
    ]);
    let Command::Topic(TopicCommand::Create { brokers, types, .. }) = cli.command else {
        panic!("not topic create")
    };
    assert_eq!(brokers, ["10.0.0.1:10911"]);
    assert_eq!(types, [TopicType::Delay]);
}

#[test]
fn letters_apogee_cannot_honour_are_refused_naming_them() {
    for (args, expect) in [
        (
            &["updateTopic", "-t", "a", "-r", "8", "-w", "4"][..],
            "-r 8 and -w 4 differ",
        ),
        (&["updateTopic", "-t", "a", "-p", "4"], "--perm ro"),
        (&["updateTopic", "-t", "a", "-u", "true"], "updateTopic -u"),
        (&["updateTopic", "-t", "a", "-a", "+x=1"], "+message.type"),
        (&["updateTopic", "-t"], "updateTopic -t: needs a value"),
        (
            &["updateBrokerConfig", "-b", "h:1", "-v", "v"],
            "argument 2 missing",
        ),
        (&["updateSubGroup", "-g", "g", "-d", "true"], "broadcast"),
        (
            &["updateSubGroup", "-g", "g", "-m", "true"],
            "consume.auto_create_start",
        ),
        (&["deleteSubGroup", "-g", "g", "-r", "false"], "offsets too"),
        (&["brokerStatus", "-c", "C"], "name it with -b"),
        (
            &["consumeMessage", "-t", "t", "-o", "5"],
            "consumeMessage -o",
        ),
        (
            &["resetOffsetByTime", "-g", "g", "-s", "yesterday"],
            "yesterday",
        ),
    ] {
        let e = rewrite(args).unwrap_err();
        assert!(e.contains(expect), "{args:?}: {e}");
    }
}

#[test]
fn every_alias_takes_its_letters() {
    let cases: [(&[&str], &[&str]); 15] = [
        (
            &["deleteTopic", "-t", "t", "-c", "C"],
            &["--mqadmin-cluster", "C", "topic", "delete", "t"],
        ),
        (&["topicRoute", "-t", "t", "-l"], &["topic", "route", "t"]),
        (&["topicList", "-c"], &["topic", "list"]),
        (
            &["getBrokerConfig", "-b", "h:1"],
            &["broker", "config", "get", "h:1"],
        ),
        (
            &["updateBrokerConfig", "-k", "k", "-v", "v", "-b", "h:1"],
            &["broker", "config", "set", "h:1", "k", "v"],
        ),
        (
            &["updateSubGroup", "-g", "g", "-r", "3", "-o", "true"],
            &[
                "group",
                "create",
                "--update-if-exists",
                "g",
                "--max-attempts",
                "4",
                "--fifo",
                "true",
            ],
        ),
        (
            // RocketMQ's defaults, as Apache RocketMQ's e2e suite (its Go FIFO test) sends
            // them: nothing to add.
            &[
                "updateSubGroup",
                "-g",
                "g",
                "-s",
                "true",
                "-o",
                "true",
                "-m",
                "false",
                "-d",
                "false",
            ],
            &[
                "group",
                "create",
                "--update-if-exists",
                "g",
                "--fifo",
                "true",
            ],
        ),
        (
            &["deleteSubGroup", "-g", "g", "-r", "true"],
            &["group", "delete", "g"],
        ),
        (
            &["consumerProgress", "-g", "g"],
            &["group", "describe", "g"],
        ),
        (
            &["consumerConnection", "-g", "g"],
            &["clients", "list", "--group", "g"],
        ),
        (&["queryMsgById", "-i", "ID"], &["message", "get", "ID"]),
        (
            &["queryMsgByKey", "-t", "t", "-k", "k", "-m", "5"],
            &[
                "message", "find", "--topic", "t", "--key", "k", "--limit", "5",
            ],
        ),
        (
            &[
                "queryMsgByOffset",
                "-t",
                "t",
                "-b",
                "b",
                "-i",
                "1",
                "-o",
                "7",
            ],
            &[
                "message", "print", "--topic", "t", "--broker", "b", "--queue", "1", "--from", "7",
            ],
        ),
        (
            &[
                "sendMessage",
                "-t",
                "t",
                "-p",
                "hi",
                "-c",
                "TagA",
                "-k",
                "k1",
            ],
            &[
                "send", "--topic", "t", "--body", "hi", "--tag", "TagA", "--key", "k1",
            ],
        ),
        (
            &["consumeMessage", "-t", "t", "-g", "g", "-c", "3"],
            &["consume", "--topic", "t", "--group", "g", "--max", "3"],
        ),
    ];
    for (mqadmin, apogee) in cases {
        let got = rewrite(mqadmin).unwrap();
        assert_eq!(got[1..], *apogee, "{mqadmin:?}");
        Cli::try_parse_from(&got).unwrap_or_else(|e| panic!("{got:?}: {e}"));
    }
    // Every alias is covered above or in the tests before.
    let tested = [
        "updateTopic",
        "deleteTopic",
        "topicList",
        "topicRoute",
        "topicStatus",
        "clusterList",
        "brokerStatus",
        "getBrokerConfig",
        "updateBrokerConfig",
        "updateSubGroup",
        "deleteSubGroup",
        "consumerProgress",
        "resetOffsetByTime",
        "consumerConnection",
        "producerConnection",
        "queryMsgById",
        "queryMsgByKey",
        "queryMsgByOffset",
        "sendMessage",
        "consumeMessage",
    ];
    assert_eq!(ALIASES.map(|a| a.name), tested);
    assert_eq!(
        rewrite(&["topicStatus", "-t", "t"]).unwrap()[1..],
        ["topic", "status", "t"]
    );
    assert_eq!(
        rewrite(&["clusterList", "-m"]).unwrap()[1..],
        ["cluster", "list"]
    );
    assert_eq!(
        rewrite(&["brokerStatus", "-b", "h:1"]).unwrap()[1..],
        ["broker", "status", "h:1"]
    );
    assert_eq!(
        rewrite(&["producerConnection", "-t", "t"]).unwrap()[1..],
        ["clients", "list", "--topic", "t"]
    );
}

#[test]
fn reset_offset_by_time_takes_mqadmins_time_forms() {
    let at = |s: &str| {
        let got = rewrite(&["resetOffsetByTime", "-g", "g", "-t", "t", "-s", s]).unwrap();
        assert_eq!(
            got[1..7],
            ["group", "reset-offset", "g", "--topic", "t", "--to-time"]
        );
        chrono::DateTime::parse_from_rfc3339(&got[7])
            .unwrap_or_else(|e| panic!("{got:?}: {e}"))
            .timestamp_millis()
    };
    assert_eq!(at("1700000000123"), 1_700_000_000_123);
    let local = chrono::NaiveDate::from_ymd_opt(2026, 11, 22)
        .unwrap()
        .and_hms_milli_opt(9, 30, 0, 250)
        .unwrap();
    let expect = chrono::TimeZone::from_local_datetime(&chrono::Local, &local)
        .earliest()
        .unwrap()
        .timestamp_millis();
    assert_eq!(at("2026-11-22#09:30:00:250"), expect);
    assert!(at("now") > 1_700_000_000_000);
}

#[test]
fn apogee_flags_and_global_options_pass_unchanged() {
    // Apogee's flags after an mqadmin name, and global options before it.
    assert_eq!(
        rewrite(&["-o", "json", "updateTopic", "-t", "t", "--queues", "4"]).unwrap()[1..],
        [
            "-o",
            "json",
            "topic",
            "create",
            "--update-if-exists",
            "t",
            "--queues",
            "4"
        ]
    );
    // A command name as a value, or after an Apogee command, is no alias.
    assert_eq!(
        rewrite(&["topic", "create", "updateTopic"]).unwrap()[1..],
        ["topic", "create", "updateTopic"]
    );
    // An mqadmin letter the command has no meaning for stays (clap judges it).
    assert_eq!(
        rewrite(&["topicList", "-o", "json"]).unwrap()[1..],
        ["topic", "list", "-o", "json"]
    );
}
