//! The `apogee` binary: parses arguments, runs the command, prints
//! `error: ...` on failure and exits 1 (2 for usage errors, from clap; 3 for a
//! send stored on the master but not replicated; 130 after Ctrl-C: see
//! `apogee_tools::error`).

/// mimalloc: the glibc allocator was a sixth of the CPU profile of the send path
/// (docs/PERFORMANCE.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(apogee_tools::cli::main_with_args(std::env::args_os()))
}
