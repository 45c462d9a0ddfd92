//! Parser and dispatch tests of the `apogee` command line.

use super::*;
use clap::error::ErrorKind;

fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
    Cli::try_parse_from(std::iter::once("apogee").chain(args.iter().copied()))
}

#[test]
fn topic_create_defaults_and_repeats() {
    let cli = parse(&[
        "topic", "create", "T", "--broker", "b1", "--broker", "b2", "--type", "fifo",
    ])
    .unwrap();
    assert_eq!(cli.output, Format::Table);
    assert_eq!(cli.timeout, 5);
    match cli.command {
        Command::Topic(TopicCommand::Create {
            name,
            queues,
            brokers,
            types,
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
    assert!(parse(&["topic", "create", "T", "--type", "lite"]).is_err());
}

#[test]
fn send_and_consume_defaults() {
    let cli = parse(&[
        "send", "--topic", "T", "--body", "hi", "--key", "a", "--key", "b",
    ])
    .unwrap();
    match cli.command {
        Command::Send(a) => {
            assert_eq!(
                (a.count, a.tag, a.keys),
                (1, None, vec!["a".into(), "b".into()])
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    let cli = parse(&["consume", "--topic", "T", "--group", "G"]).unwrap();
    match cli.command {
        Command::Consume(a) => {
            assert_eq!((a.max, a.wait, a.invisible), (32, 5, 30));
            assert_eq!((a.tag, a.sql), (None, None));
        }
        other => panic!("unexpected {other:?}"),
    }
    let cli = parse(&["consume", "--topic", "T", "--group", "G", "--sql", "a > 1"]).unwrap();
    match cli.command {
        Command::Consume(a) => assert_eq!(a.sql.as_deref(), Some("a > 1")),
        other => panic!("unexpected {other:?}"),
    }
    let both = [
        "consume", "--topic", "T", "--group", "G", "--sql", "a > 1", "--tag", "A",
    ];
    assert!(parse(&both).is_err(), "--tag and --sql exclude each other");
    assert!(parse(&["consume", "--topic", "T"]).is_err());
    assert!(parse(&[
        "consume",
        "--topic",
        "T",
        "--group",
        "G",
        "--invisible",
        "0"
    ])
    .is_err());
    assert!(parse(&["send", "--topic", "T"]).is_err());
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
fn send_takes_properties_and_a_body_file() {
    let path = std::env::temp_dir().join(format!("apogee-body-{}.bin", std::process::id()));
    std::fs::write(&path, [0u8, 159, 146, 150]).unwrap();
    let cli = parse(&[
        "send",
        "--topic",
        "t",
        "--body-file",
        path.to_str().unwrap(),
        "--property",
        "region=eu",
        "--property",
        "expr=a=b",
    ])
    .unwrap();
    let Command::Send(a) = cli.command else {
        panic!("not a send")
    };
    assert_eq!(a.body_bytes().unwrap(), vec![0u8, 159, 146, 150]);
    std::fs::remove_file(&path).unwrap();
    assert_eq!(
        a.properties,
        vec![
            ("region".into(), "eu".into()),
            ("expr".into(), "a=b".into())
        ]
    );
    // One body source, exactly.
    assert!(parse(&["send", "--topic", "t"]).is_err());
    assert!(parse(&["send", "--topic", "t", "--body", "x", "--body-file", "f"]).is_err());
    assert!(parse(&["send", "--topic", "t", "--body", "x", "--property", "=v"]).is_err());
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
    let Command::Broker(crate::broker_status::BrokerCommand::Status { addr }) = &cli.command else {
        panic!("not broker status: {:?}", cli.command)
    };
    assert_eq!(addr, "127.0.0.1:1");
    // A broker that does not answer is a runtime error naming it.
    let e = run(cli, &mut Vec::new()).await.unwrap_err();
    assert_eq!(e.exit_code(), 1);
    assert!(e.to_string().contains("127.0.0.1:1"), "{e}");
    // The address is required and must be host:port.
    for args in [&["broker", "status"][..], &["broker", "status", "nohost"]] {
        assert_eq!(parse(args).unwrap_err().exit_code(), 2, "{args:?}");
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
    for (name, with) in super::MQADMIN_ALIASES {
        let mut args = vec!["apogee"];
        args.extend(with.iter().copied());
        args.push("--help");
        let err = Cli::try_parse_from(&args).unwrap_err();
        assert_eq!(
            err.kind(),
            clap::error::ErrorKind::DisplayHelp,
            "{name}: {err}"
        );
    }
}
