//! `drctl`: the command-line front of the orchestrator. Thin glue: parse
//! flags, call the library crates, print, and map outcomes to drctl's
//! exit codes (0 done, 1 failed at run time, 2 bad input, 3 objective
//! missed; docs/reference/exit-and-error-codes.md).

mod bench;
mod commands;
mod context;
mod erasure;
mod execute;
mod flags;
mod help;
mod lab;
mod live;
mod man;
mod readiness;
mod restore;
mod serve;
mod text;

use clap::Parser;
use std::process::ExitCode;

/// mimalloc rather than glibc's allocator: loading a large topology is
/// millions of small allocations, and glibc's arenas made the same load
/// 40% slower after an earlier large one had been freed (docs/numbers.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A failure and the exit code it deserves.
#[derive(Debug)]
pub enum Failure {
    /// Bad input: a file or a flag (exit 2). Already printed when `printed`.
    BadInput { message: String, printed: bool },
    /// A request refused for what it asks (exit 2), with its stable code.
    Refused(drctl_control::Request),
    /// Something went wrong at run time (exit 1).
    Runtime(anyhow::Error),
}

impl Failure {
    pub fn bad_input(message: impl Into<String>) -> Self {
        Failure::BadInput { message: message.into(), printed: false }
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Runtime(e)
    }
}

/// What a command reports when it ran: done, or ran but an objective is missed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Done,
    ObjectiveMissed,
    /// Ran to the end, but part of the work failed (exit 1; already reported).
    Failed,
    /// The commander detached with a second Ctrl-C (exit 130, as for SIGINT).
    Interrupted,
}

fn main() -> ExitCode {
    let args = flags::Cli::parse();
    end_quietly_when_the_reader_leaves(&args.command);
    logging(args.log_format);
    match commands::run(args) {
        Ok(Outcome::Done) => ExitCode::SUCCESS,
        Ok(Outcome::ObjectiveMissed) => ExitCode::from(3),
        Ok(Outcome::Failed) => ExitCode::from(1),
        Ok(Outcome::Interrupted) => ExitCode::from(130),
        Err(Failure::BadInput { message, printed }) => {
            if !printed {
                eprintln!("error: {}", drctl_core::redact::text(&message));
            }
            ExitCode::from(2)
        }
        Err(Failure::Refused(r)) => {
            let code = r.code();
            eprintln!("error[{}]: {}", code.as_str(), drctl_core::redact::text(&r.to_string()));
            if let Some(hint) = code.hint() {
                eprintln!("  hint: {hint}");
            }
            ExitCode::from(2)
        }
        Err(Failure::Runtime(e)) => {
            eprintln!("error: {}", drctl_core::redact::text(&format!("{e:#}")));
            ExitCode::from(1)
        }
    }
}

/// `drctl plan --output json | head` must end quietly when `head` has read
/// enough, as `cat` would, not panic with "failed printing to stdout". Rust
/// ignores SIGPIPE so that a write to a closed pipe is an error; for the
/// commands that only print (and change nothing), the default signal is
/// the right end. Long-running commands (`serve`, `declare`, drills) keep
/// the error: their sockets and children's pipes must never kill them.
fn end_quietly_when_the_reader_leaves(command: &flags::Command) {
    use flags::Command::*;
    if matches!(
        command,
        Validate { .. } | Plan { .. } | Graph { .. } | IamPolicy { .. } | Schema | Executions { .. } | Show { .. }
    ) {
        // SAFETY: called once at start, before any thread is spawned.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
}

/// stderr for log lines, through the one redaction: an event's fields may
/// hold a URL with a password or a webhook's secret path, from any crate.
struct RedactedStderr;

impl std::io::Write for RedactedStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // The formatter writes each event whole, in one call.
        let line = drctl_core::redact::text(&String::from_utf8_lossy(buf));
        std::io::stderr().write_all(line.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// One subscriber for every crate's events, on stderr. Quiet by default:
/// drctl's own warnings and errors only (the commands' progress lines are
/// the human interface, and the AWS SDK's and the lab servers' chatter is
/// not the operator's business unless asked for); `RUST_LOG=drctl=info`
/// follows a failover step by step, `RUST_LOG=debug` shows everything.
fn logging(format: flags::LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("drctl=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(|| RedactedStderr);
    let _ = match format {
        flags::LogFormat::Text => builder.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).try_init(),
        flags::LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).try_init(),
    };
}
