//! The `cntlm` binary: arguments -> config -> (daemon) -> runtime -> run -> exit code.

fn main() -> std::process::ExitCode {
    std::process::ExitCode::SUCCESS
}
