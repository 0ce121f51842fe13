//! The `coregate` binary: global allocator and hand-off to the CLI; nothing else.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    coregate::cli::main()
}
