//! Parser tests of `apogee send` and `apogee consume`'s arguments.

use crate::cli::tests::parse;
use crate::cli::Command;
use std::time::Duration;

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
            assert_eq!(
                (a.max, a.wait, a.invisible, a.nack),
                (32, Duration::from_secs(5), Duration::from_secs(30), false)
            );
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
