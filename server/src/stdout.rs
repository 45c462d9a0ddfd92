//! Printing to standard output from the servers' one-shot modes (`--check-config`), where a
//! reader that closes early (`apogee-broker --check-config | head -1`) is normal: `println!`
//! panics when the pipe is gone; [`print`] stops quietly instead.

use std::io::{ErrorKind, Write};

/// Writes `text` to standard output and flushes it. A reader that went away (EPIPE) is not
/// an error: the rest is not wanted. Other write errors are returned.
pub fn print(text: &str) -> std::io::Result<()> {
    write_to(&mut std::io::stdout().lock(), text)
}

fn write_to(out: &mut impl Write, text: &str) -> std::io::Result<()> {
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Closed(ErrorKind);

    impl Write for Closed {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(self.0.into())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_closed_pipe_is_not_an_error_and_other_failures_are() {
        assert!(write_to(&mut Closed(ErrorKind::BrokenPipe), "config OK\n").is_ok());
        assert!(write_to(&mut Closed(ErrorKind::StorageFull), "config OK\n").is_err());
        let mut buf = Vec::new();
        write_to(&mut buf, "config OK\n").unwrap();
        assert_eq!(buf, b"config OK\n");
    }
}
