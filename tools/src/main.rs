//! The `apogee` binary: parses arguments, runs the command, prints
//! `error: ...` on failure and exits 1 (2 for usage errors, from clap).

/// mimalloc: the glibc allocator was a sixth of the CPU profile of the send path
/// (docs/PERFORMANCE.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(apogee_tools::cli::main_with_args(std::env::args_os()))
}
