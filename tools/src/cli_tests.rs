//! Parser and dispatch tests of the `apogee` command line.

use super::*;
use crate::messaging::TxnEnd;
use crate::schedule::Delivery;
use clap::error::ErrorKind;

/// The command line `apogee ARGS...` parsed.
pub(crate) fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
    Cli::try_parse_from(std::iter::once("apogee").chain(args.iter().copied()))
}

#[test]
fn topic_create_defaults_and_repeats() {
    let cli = parse(&[
        "topic", "create", "T", "--broker", "b1", "--broker", "b2", "--type", "fifo",
    ])
    .unwrap();
    assert_eq!(cli.output, Format::Table);
    assert_eq!(cli.timeout, Duration::from_secs(5));
    match cli.command {
        Command::Topic(TopicCommand::Create {
            name,
            queues,
            brokers,
            types,
            lite_expire: None,
            update_if_exists: false,
        }) => {
            assert_eq!(name, "T");
            assert_eq!(queues, 8);
            assert_eq!(brokers, vec!["b1", "b2"]);
            assert_eq!(types, vec![TopicType::Fifo]);
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn lite_and_priority_flags_parse() {
    let cli = parse(&[
        "topic",
        "create",
        "chat",
        "--type",
        "lite",
        "--lite-expire",
        "10m",
        "--broker",
        "b1",
    ])
    .unwrap();
    match cli.command {
        Command::Topic(TopicCommand::Create {
            types, lite_expire, ..
        }) => {
            assert_eq!(types, vec![TopicType::Lite]);
            assert_eq!(lite_expire, Some(Duration::from_secs(600)));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(
        TopicType::Priority.to_proto(),
        &[apogee_proto::v2::MessageType::Priority]
    );
    let cli = parse(&["send", "--topic", "T", "--body", "b", "--priority", "7"]).unwrap();
    match cli.command {
        Command::Send(a) => assert_eq!((a.priority, a.lite_topic), (Some(7), None)),
        other => panic!("unexpected {other:?}"),
    }
    let cli = parse(&["send", "--topic", "T", "--body", "b", "--lite-topic", "s-1"]).unwrap();
    match cli.command {
        Command::Send(a) => assert_eq!(a.lite_topic.as_deref(), Some("s-1")),
        other => panic!("unexpected {other:?}"),
    }
    let cli = parse(&[
        "send",
        "--topic",
        "T",
        "--body",
        "b",
        "--message-group",
        "g",
    ])
    .unwrap();
    match cli.command {
        Command::Send(a) => assert_eq!(a.message_group.as_deref(), Some("g")),
        other => panic!("unexpected {other:?}"),
    }
    for conflicting in [
        &["--priority", "1", "--lite-topic", "x"][..],
        &["--priority", "1", "--delay", "5s"][..],
        &["--lite-topic", "x", "--transaction", "commit"][..],
        &["--message-group", "g", "--priority", "1"][..],
        &["--message-group", "g", "--delay", "5s"][..],
    ] {
        let mut args = vec!["send", "--topic", "T", "--body", "b"];
        args.extend_from_slice(conflicting);
        assert_eq!(
            parse(&args).unwrap_err().kind(),
            ErrorKind::ArgumentConflict,
            "{conflicting:?}"
        );
    }
    let cli = parse(&[
        "group",
        "create",
        "g",
        "--lite-bind",
        "chat",
        "--lite-mode",
        "exclusive",
        "--lite-quota",
        "50",
        "--priority-off",
    ])
    .unwrap();
    match cli.command {
        Command::Group(crate::cli_group::GroupCommand::Create { settings, .. }) => {
            assert_eq!(settings.lite_bind.as_deref(), Some("chat"));
            assert_eq!(
                settings.lite_mode,
                Some(crate::group::LiteModeArg::Exclusive)
            );
            assert_eq!(settings.lite_quota, Some(50));
            assert_eq!(settings.priority_off, Some(true));
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn global_options_work_after_the_subcommand() {
    let cli = parse(&[
        "topic",
        "list",
        "--system",
        "-o",
        "json",
        "--nameserver",
        "h:1",
    ])
    .unwrap();
    assert_eq!(cli.output, Format::Json);
    assert_eq!(cli.nameserver, "h:1");
    assert!(matches!(
        cli.command,
        Command::Topic(TopicCommand::List { system: true })
    ));
}

#[test]
fn update_needs_a_change_and_valid_values() {
    let e = parse(&["topic", "update", "T"]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::MissingRequiredArgument);
    assert_eq!(e.exit_code(), 2);
    let cli = parse(&["topic", "update", "T", "--perm", "r"]).unwrap();
    assert!(matches!(
        cli.command,
        Command::Topic(TopicCommand::Update {
            queues: None,
            perm: Some(Perm::R),
            ..
        })
    ));
    assert!(parse(&["topic", "update", "T", "--perm", "x"]).is_err());
    assert!(parse(&["topic", "update", "T", "--queues", "0"]).is_err());
    assert!(parse(&["topic", "create", "T", "--queues", "2000"]).is_err());
    assert!(parse(&["topic", "create", "T", "--type", "sideways"]).is_err());
}

#[test]
fn bench_defaults() {
    let cli = parse(&["bench", "produce", "--topic", "T", "-o", "json"]).unwrap();
    match cli.command {
        Command::Bench(BenchCommand::Produce(a)) => {
            assert_eq!(
                (a.connections, a.inflight, a.size, a.batch, a.duration),
                (4, 16, 1024, 1, None)
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(parse(&["bench", "produce", "--topic", "T", "--batch", "0"]).is_err());
}

/// The bench's runtime turns off the LIFO slot by how many requests a workload keeps in
/// flight: connections x in-flight for sends, one receive per consumer.
#[test]
fn bench_requests_in_flight() {
    let in_flight = |args: &[&str]| match parse(args).unwrap().command {
        Command::Bench(b) => b.requests_in_flight(),
        other => panic!("unexpected {other:?}"),
    };
    let produce = ["bench", "produce", "--topic", "T"];
    assert_eq!(in_flight(&produce), 64);
    let one = [&produce[..], &["--connections", "1", "--inflight", "1"]].concat();
    assert_eq!(in_flight(&one), 1);
    let e2e = [
        "bench",
        "e2e",
        "--topic",
        "T",
        "--rate",
        "10",
        "--connections",
        "2",
        "--inflight",
        "3",
    ];
    // Six sends and the receiving consumers (two by default): never a single loop.
    assert_eq!(in_flight(&e2e), 8);
    let consume = [
        "bench",
        "consume",
        "--topic",
        "T",
        "--group",
        "G",
        "--consumers",
        "5",
    ];
    assert_eq!(in_flight(&consume), 5);
}

#[test]
fn a_bench_with_one_request_in_flight_runs_on_one_thread() {
    let flavor = |args: &[&str]| {
        let cli = parse(args).unwrap();
        let runtime = runtime_for(&cli.command).build().unwrap();
        runtime.handle().runtime_flavor()
    };
    let produce = ["bench", "produce", "--topic", "T"];
    let one = [&produce[..], &["--connections", "1", "--inflight", "1"]].concat();
    assert_eq!(flavor(&one), tokio::runtime::RuntimeFlavor::CurrentThread);
    assert_eq!(flavor(&produce), tokio::runtime::RuntimeFlavor::MultiThread);
    assert_eq!(
        flavor(&["topic", "list"]),
        tokio::runtime::RuntimeFlavor::MultiThread
    );
}

#[test]
fn txn_commands_parse() {
    let cli = parse(&[
        "txn",
        "list",
        "--pending",
        "--topic",
        "T",
        "--limit",
        "5",
        "-o",
        "json",
    ])
    .unwrap();
    assert_eq!(cli.output, Format::Json);
    match cli.command {
        Command::Txn(TxnCommand::List {
            pending,
            topic,
            limit,
        }) => assert_eq!(
            (pending, topic.as_deref(), limit),
            (true, Some("T"), Some(5))
        ),
        other => panic!("unexpected {other:?}"),
    }
    let cli = parse(&["txn", "list"]).unwrap();
    assert!(matches!(
        cli.command,
        Command::Txn(TxnCommand::List {
            pending: false,
            topic: None,
            limit: None
        })
    ));
    let cli = parse(&["txn", "commit", "X1"]).unwrap();
    assert!(matches!(cli.command, Command::Txn(TxnCommand::Commit { id }) if id == "X1"));
    let cli = parse(&["txn", "rollback", "X2"]).unwrap();
    assert!(matches!(cli.command, Command::Txn(TxnCommand::Rollback { id }) if id == "X2"));
    assert!(parse(&["txn", "commit"]).is_err());
    assert!(parse(&["txn", "list", "--limit", "0"]).is_err());
}

#[test]
fn transactional_send_bench_and_mixed_topics_parse() {
    let cli = parse(&[
        "send",
        "--topic",
        "T",
        "--body",
        "b",
        "--transaction",
        "open",
    ])
    .unwrap();
    match cli.command {
        Command::Send(a) => assert_eq!(a.transaction, Some(TxnEnd::Open)),
        other => panic!("unexpected {other:?}"),
    }
    let cli = parse(&["send", "--topic", "T", "--body", "b"]).unwrap();
    assert!(matches!(
        cli.command,
        Command::Send(SendArgs {
            transaction: None,
            ..
        })
    ));
    assert!(parse(&[
        "send",
        "--topic",
        "T",
        "--body",
        "b",
        "--transaction",
        "maybe"
    ])
    .is_err());
    let cli = parse(&["bench", "produce", "--topic", "T", "--transaction"]).unwrap();
    assert!(matches!(
        cli.command,
        Command::Bench(BenchCommand::Produce(BenchProduceArgs {
            transaction: true,
            ..
        }))
    ));
    let cli = parse(&["send", "--topic", "T", "--body", "b", "--delay", "30s"]).unwrap();
    match cli.command {
        Command::Send(a) => {
            assert_eq!(a.delivery(), Some(Delivery::After(Duration::from_secs(30))))
        }
        other => panic!("unexpected {other:?}"),
    }
    let cli = parse(&["send", "--topic", "T", "--body", "b", "--delay-level", "3"]).unwrap();
    assert!(matches!(cli.command, Command::Send(a) if a.delivery() == Some(Delivery::Level(3))));
    let both = [
        "send",
        "--topic",
        "T",
        "--body",
        "b",
        "--delay",
        "1s",
        "--delay-level",
        "3",
    ];
    assert!(parse(&both).is_err());
    let txn = [
        "send",
        "--topic",
        "T",
        "--body",
        "b",
        "--delay",
        "1s",
        "--transaction",
        "commit",
    ];
    assert!(parse(&txn).is_err());
    assert!(parse(&["send", "--topic", "T", "--body", "b", "--delay-level", "19"]).is_err());
    let cli = parse(&["message", "recall", "--topic", "T", "R1-x"]).unwrap();
    assert!(matches!(
        cli.command,
        Command::Message(MessageCommand::Recall { topic, handle }) if topic == "T" && handle == "R1-x"
    ));
    let cli = parse(&["schedule", "list", "--topic", "T"]).unwrap();
    assert!(matches!(
        cli.command,
        Command::Schedule(ScheduleCommand::List { topic: Some(t), limit: None }) if t == "T"
    ));
    let cli = parse(&["topic", "create", "T", "--type", "mixed"]).unwrap();
    assert!(matches!(
        cli.command,
        Command::Topic(TopicCommand::Create { types, .. }) if types == vec![TopicType::Mixed]
    ));
}

#[tokio::test]
async fn transactional_bench_needs_single_message_batches() {
    let cli = parse(&[
        "--nameserver",
        "127.0.0.1:1",
        "bench",
        "produce",
        "--topic",
        "T",
        "--transaction",
        "--batch",
        "2",
    ])
    .unwrap();
    let e = run(cli, &mut Vec::new()).await.unwrap_err();
    assert_eq!(e.exit_code(), 2, "{e}");
}

#[test]
fn nameserver_comes_from_the_environment() {
    // Only this test touches the variable.
    std::env::set_var("APOGEE_NAMESERVER", "env-host:9876");
    let cli = parse(&["cluster", "list"]);
    std::env::remove_var("APOGEE_NAMESERVER");
    assert_eq!(cli.unwrap().nameserver, "env-host:9876");
}

#[test]
fn unknown_commands_are_usage_errors() {
    let e = parse(&["frobnicate"]).unwrap_err();
    assert_eq!(e.exit_code(), 2);
    // Bad names are usage errors alike, for topics and for groups.
    for args in [
        ["consume", "--topic", "bad topic", "--group", "g"],
        ["consume", "--topic", "t", "--group", "bad group"],
    ] {
        let e = parse(&args).unwrap_err();
        assert_eq!(e.exit_code(), 2, "{args:?}");
    }
    let e = parse(&["-o", "xml", "cluster", "list"]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidValue);
}

#[tokio::test]
async fn unreachable_nameserver_is_a_runtime_error() {
    let cli = parse(&[
        "--nameserver",
        "127.0.0.1:1",
        "--timeout",
        "2",
        "cluster",
        "list",
    ])
    .unwrap();
    let mut out = Vec::new();
    let e = run(cli, &mut out).await.unwrap_err();
    assert_eq!(e.exit_code(), 1);
    assert!(e.to_string().contains("127.0.0.1:1"), "{e}");
}

#[tokio::test]
async fn broker_status_takes_a_broker_address() {
    let cli = parse(&["broker", "status", "127.0.0.1:1", "-o", "json"]).unwrap();
    assert_eq!(cli.output, Format::Json);
    let Command::Broker(crate::cli_cluster::BrokerCommand::Status { addr }) = &cli.command else {
        panic!("not broker status: {:?}", cli.command)
    };
    assert_eq!(addr, "127.0.0.1:1");
    // A broker that does not answer is a runtime error naming it.
    let e = run(cli, &mut Vec::new()).await.unwrap_err();
    assert_eq!(e.exit_code(), 1);
    assert!(e.to_string().contains("127.0.0.1:1"), "{e}");
    // The broker is required: host:port or a broker name.
    for args in [
        &["broker", "status"][..],
        &["broker", "status", "h:0"],
        &["broker", "config", "get", "two words"],
    ] {
        assert_eq!(parse(args).unwrap_err().exit_code(), 2, "{args:?}");
    }
    let cli = parse(&["broker", "config", "get", "broker-a"]).unwrap();
    let Command::Broker(crate::cli_cluster::BrokerCommand::Config(
        crate::broker_config::ConfigCommand::Get { addr, .. },
    )) = &cli.command
    else {
        panic!("not broker config get: {:?}", cli.command)
    };
    assert_eq!(addr, "broker-a");
}

#[test]
fn every_duration_flag_takes_units_and_bare_seconds() {
    let cli = parse(&[
        "--timeout",
        "1500ms",
        "consume",
        "--topic",
        "T",
        "--group",
        "G",
        "--wait",
        "2s",
        "--invisible",
        "2m",
        "--nack",
    ])
    .unwrap();
    assert_eq!(cli.timeout, Duration::from_millis(1500));
    let Command::Consume(a) = cli.command else {
        panic!("not consume")
    };
    assert_eq!(
        (a.wait, a.invisible, a.nack),
        (Duration::from_secs(2), Duration::from_secs(120), true)
    );
    let cli = parse(&[
        "--timeout",
        "7",
        "send",
        "--topic",
        "T",
        "--body",
        "b",
        "--delay",
        "30",
    ])
    .unwrap();
    assert_eq!(cli.timeout, Duration::from_secs(7));
    let Command::Send(a) = cli.command else {
        panic!("not send")
    };
    assert_eq!(a.delay, Some(Duration::from_secs(30)));
    let bench = parse(&[
        "bench",
        "consume",
        "--topic",
        "T",
        "--group",
        "G",
        "--wait",
        "3",
        "--invisible",
        "1m",
        "--idle",
        "500ms",
    ])
    .unwrap();
    let Command::Bench(BenchCommand::Consume(b)) = bench.command else {
        panic!("not bench consume")
    };
    assert_eq!(
        (b.wait, b.invisible, b.idle),
        (
            Duration::from_secs(3),
            Duration::from_secs(60),
            Duration::from_millis(500)
        )
    );
    for bad in [
        &["--timeout", "0", "topic", "list"][..],
        &[
            "consume",
            "--topic",
            "T",
            "--group",
            "G",
            "--invisible",
            "500ms",
        ],
        &["consume", "--topic", "T", "--group", "G", "--wait", "2w"],
    ] {
        assert_eq!(parse(bad).unwrap_err().exit_code(), 2, "{bad:?}");
    }
}

#[test]
fn update_if_exists_is_mqadmins_update_topic() {
    let cli = parse(&["topic", "create", "T", "--update-if-exists"]).unwrap();
    assert!(matches!(
        cli.command,
        Command::Topic(TopicCommand::Create {
            update_if_exists: true,
            ..
        })
    ));
    assert_eq!(
        expanded(&["apogee", "updateTopic", "T", "--queues", "4"]),
        [
            "apogee",
            "topic",
            "create",
            "--update-if-exists",
            "T",
            "--queues",
            "4"
        ]
    );
}

/// Every argument of every command, with the command's path.
fn all_arguments() -> Vec<(String, clap::Arg)> {
    fn walk(cmd: &clap::Command, path: String, out: &mut Vec<(String, clap::Arg)>) {
        for arg in cmd.get_arguments() {
            out.push((path.clone(), arg.clone()));
        }
        for sub in cmd.get_subcommands() {
            walk(sub, format!("{path} {}", sub.get_name()), out);
        }
    }
    let mut command = <Cli as clap::CommandFactory>::command();
    command.build();
    let mut out = Vec::new();
    walk(&command, "apogee".into(), &mut out);
    out
}

#[test]
fn every_argument_of_every_command_has_a_description() {
    let missing: Vec<String> = all_arguments()
        .into_iter()
        .filter(|(_, arg)| !matches!(arg.get_id().as_str(), "help" | "version"))
        .filter(|(_, arg)| {
            arg.get_help()
                .is_none_or(|h| h.to_string().trim().is_empty())
        })
        .map(|(path, arg)| format!("{path}: {}", arg.get_id()))
        .collect();
    assert!(missing.is_empty(), "arguments without help: {missing:#?}");
}

#[test]
fn global_options_are_listed_once_in_apogee_help_and_not_in_each_command() {
    let mut command = super::command();
    let top = command.render_long_help().to_string();
    let heading = top
        .find(&format!("{GLOBAL_OPTIONS}:"))
        .unwrap_or_else(|| panic!("no global section:\n{top}"));
    for flag in [
        "--nameserver",
        "--output",
        "--timeout",
        "--access-key",
        "--tls",
    ] {
        assert!(
            top[heading..].contains(flag),
            "apogee --help lacks {flag}:\n{top}"
        );
    }
    // Each way of asking for a command's help, as typed.
    for (path, asked) in [
        (&["topic", "create"][..], &["topic", "create", "--help"][..]),
        (&["consume"], &["consume", "-h"]),
        (&["send"], &["help", "send"]),
        (
            &["group", "list"],
            &["--nameserver", "127.0.0.1:1", "group", "list", "--help"],
        ),
        (
            &["broker", "config", "set"],
            &["broker", "config", "set", "--help"],
        ),
        (&["topic"], &["topic"]),
    ] {
        let mut cmd = command.clone();
        for name in path {
            cmd = cmd.find_subcommand(name).unwrap().clone();
        }
        let argv: Vec<std::ffi::OsString> = std::iter::once("apogee")
            .chain(asked.iter().copied())
            .map(Into::into)
            .collect();
        let help = super::help_for(&argv);
        let usage = format!("Usage: apogee {}", path.join(" "));
        assert!(help.contains(&usage), "{asked:?} lacks {usage:?}:\n{help}");
        assert!(
            !help.contains("--nameserver <ADDR>")
                && !help.contains("--tls-ca-file")
                && !help.contains(&format!("{GLOBAL_OPTIONS}:")),
            "{path:?} repeats the global options:\n{help}"
        );
        assert!(help.contains(GLOBAL_OPTIONS_NOTE), "{path:?}:\n{help}");
        // Its own options are there.
        let own = cmd
            .get_arguments()
            .find(|a| a.get_long().is_some() && !a.is_global_set() && a.get_id() != "help")
            .and_then(|a| a.get_long());
        if let Some(own) = own {
            assert!(help.contains(&format!("--{own}")), "{path:?}:\n{help}");
        }
    }
}

#[tokio::test]
async fn completions_cover_every_command_for_each_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let cli = parse(&["completions", shell]).unwrap();
        let mut out = Vec::new();
        run(cli, &mut out).await.unwrap();
        let script = String::from_utf8(out).unwrap();
        for word in ["apogee", "cluster", "broker", "dlq", "completions"] {
            assert!(script.contains(word), "{shell} script lacks {word}");
        }
    }
    assert_eq!(parse(&["completions", "tcsh"]).unwrap_err().exit_code(), 2);
}

fn expanded(args: &[&str]) -> Vec<String> {
    super::expand_mqadmin_alias(args.iter().map(Into::into).collect())
        .unwrap()
        .into_iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect()
}

#[test]
fn mqadmin_names_stand_for_apogee_commands_only_where_the_command_goes() {
    assert_eq!(
        expanded(&["apogee", "topicList"]),
        ["apogee", "topic", "list"]
    );
    assert_eq!(
        expanded(&[
            "apogee",
            "--nameserver",
            "ns:9876",
            "-o",
            "json",
            "resetOffsetByTime",
            "g"
        ]),
        [
            "apogee",
            "--nameserver",
            "ns:9876",
            "-o",
            "json",
            "group",
            "reset-offset",
            "g"
        ]
    );
    // A topic that happens to be named like an mqadmin command stays a topic.
    assert_eq!(
        expanded(&["apogee", "topic", "create", "topicList"]),
        ["apogee", "topic", "create", "topicList"]
    );
    // So does an option's value.
    assert_eq!(
        expanded(&["apogee", "--nameserver", "clusterList", "topic", "list"]),
        ["apogee", "--nameserver", "clusterList", "topic", "list"]
    );
    // Every alias names a command the CLI has.
    for alias in &crate::mqadmin::ALIASES {
        let name = alias.name;
        let mut args = vec!["apogee"];
        args.extend(alias.apogee.iter().copied());
        args.push("--help");
        let err = Cli::try_parse_from(&args).unwrap_err();
        assert_eq!(
            err.kind(),
            clap::error::ErrorKind::DisplayHelp,
            "{name}: {err}"
        );
    }
}

#[test]
fn controller_status_and_broker_elect_parse() {
    let cli = parse(&["controller", "status", "-o", "json"]).unwrap();
    assert!(matches!(
        cli.command,
        Command::Controller(crate::cli_cluster::ControllerCommand::Status)
    ));
    use crate::cli_cluster::BrokerCommand::Elect;
    let cli = parse(&["broker", "elect", "broker-a", "--member", "3"]).unwrap();
    let Command::Broker(Elect { broker, member }) = &cli.command else {
        panic!("not broker elect: {:?}", cli.command)
    };
    assert_eq!((broker.as_str(), *member), ("broker-a", Some(3)));
    let cli = parse(&["broker", "elect", "broker-a"]).unwrap();
    assert!(matches!(
        &cli.command,
        Command::Broker(Elect { member: None, .. })
    ));
    for bad in [
        &["broker", "elect", "broker-a", "--member", "0"][..],
        &["broker", "elect", "h:10911"],
        &["broker", "elect"],
    ] {
        let e = parse(bad).unwrap_err();
        assert_eq!(e.exit_code(), 2, "{bad:?}: {e}");
    }
}
